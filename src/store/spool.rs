//! Spool bookkeeping. Not written yet.
