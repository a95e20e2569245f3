//! Reading a bucket as a recordings directory (for `recordings list|verify` and `replay`
//! with `--store`). Not written yet.
