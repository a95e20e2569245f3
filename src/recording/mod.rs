//! What the gateway keeps for incident review (DESIGN.md §6): per session an asciicast v2
//! transcript and a metadata sidecar, and for the whole gateway the hash-chained audit log
//! of every authentication and session event (`RECORDINGS/audit.jsonl`).
//!
//! `cast` writes transcripts (`json_text` escapes their text), `meta` the sidecars, `session` ties both to one session, `forward` keeps
//! the metadata-only record of a port-forward,
//! `audit` keeps the chain, `recover` repairs what a crash left, and `offline` is what
//! `podgate recordings list|verify` and `podgate replay` use with no server running.

pub mod audit;
pub mod cast;
mod cast_sink;
pub mod forward;
pub mod json_text;
pub mod meta;
pub mod offline;
pub mod recover;
pub mod session;
