//! The shipper. Not written yet.
