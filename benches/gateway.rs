//! The side-by-side benchmark harness (placeholder until it lands).

fn main() {}
