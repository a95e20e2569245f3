//! What the gateway keeps for incident review: the audit log of every authentication and
//! session event (`RECORDINGS/audit.jsonl`, hash-chained).
//!
//! Session transcripts (asciicast) and their metadata arrive with the recording work of
//! issue 4; the audit chain is here first because every refusal must leave a trace.

pub mod audit;
pub mod cast;
pub mod meta;
pub mod offline;
pub mod recover;
pub mod session;
