//! Where things go in the bucket. Keys are relative to the configured prefix and mirror the
//! spool, so a bucket downloaded key by key is a recordings directory the offline tools
//! read as they are:
//!
//! ```text
//! DATE/SESSION.json                    metadata: uploaded when the session starts, again
//!                                      whenever it changes while live, and finally
//! DATE/SESSION.cast                    the whole transcript, once the session ended:
//!                                      byte-identical to the spool's file
//! DATE/SESSION.cast.parts/OFFSET       bytes OFFSET.. of a live session's transcript,
//!                                      whole lines, one object per shipping round;
//!                                      deleted once the whole `.cast` is verified
//! audit/GATEWAY/OFFSET.jsonl           bytes OFFSET.. of one spool's audit.jsonl, whole
//!                                      lines; concatenated in order they are that
//!                                      gateway's chain
//! ```
//!
//! OFFSET is a byte offset in 20 decimal digits, so keys sort in file order. GATEWAY is the
//! spool's id (32 hex digits, generated once per spool and kept in it): a pod restarted on
//! the same volume continues its chain, a new spool starts a new one. DATE is
//! `YYYY-MM-DD` and SESSION 32 hex digits, as in the spool.

use crate::recording::meta::{is_date_dir, is_session_id};

/// Digits of an offset in a key.
const OFFSET_DIGITS: usize = 20;

pub fn session_json(date: &str, session: &str) -> String {
    format!("{date}/{session}.json")
}

pub fn session_cast(date: &str, session: &str) -> String {
    format!("{date}/{session}.cast")
}

/// The directory-like prefix of a session's live parts (with the trailing `/`).
pub fn parts_prefix(date: &str, session: &str) -> String {
    format!("{date}/{session}.cast.parts/")
}

pub fn part(date: &str, session: &str, offset: u64) -> String {
    format!("{}{offset:0OFFSET_DIGITS$}", parts_prefix(date, session))
}

/// The directory-like prefix of a gateway's audit segments (with the trailing `/`).
pub fn audit_prefix(gateway: &str) -> String {
    format!("audit/{gateway}/")
}

pub fn audit_segment(gateway: &str, offset: u64) -> String {
    format!("{}{offset:0OFFSET_DIGITS$}.jsonl", audit_prefix(gateway))
}

/// What a key in the bucket is; `Other` for anything podgate does not write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    Json {
        date: String,
        session: String,
    },
    Cast {
        date: String,
        session: String,
    },
    Part {
        date: String,
        session: String,
        offset: u64,
    },
    Audit {
        gateway: String,
        offset: u64,
    },
    Other,
}

fn offset(digits: &str) -> Option<u64> {
    if digits.len() != OFFSET_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Classify a key relative to the prefix.
pub fn parse(rel: &str) -> Key {
    let parts: Vec<&str> = rel.split('/').collect();
    match parts.as_slice() {
        ["audit", gateway, file] if is_session_id(gateway) => {
            match file.strip_suffix(".jsonl").and_then(offset) {
                Some(offset) => Key::Audit {
                    gateway: (*gateway).to_owned(),
                    offset,
                },
                None => Key::Other,
            }
        }
        [date, file] if is_date_dir(date) => {
            let session = |ext: &str| {
                file.strip_suffix(ext)
                    .filter(|s| is_session_id(s))
                    .map(str::to_owned)
            };
            let date = (*date).to_owned();
            if let Some(session) = session(".json") {
                Key::Json { date, session }
            } else if let Some(session) = session(".cast") {
                Key::Cast { date, session }
            } else {
                Key::Other
            }
        }
        [date, dir, file] if is_date_dir(date) => {
            match (dir.strip_suffix(".cast.parts"), offset(file)) {
                (Some(session), Some(offset)) if is_session_id(session) => Key::Part {
                    date: (*date).to_owned(),
                    session: session.to_owned(),
                    offset,
                },
                _ => Key::Other,
            }
        }
        _ => Key::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn keys_round_trip_and_strangers_are_other() {
        let d = "2026-12-02";
        let cases = [
            (
                session_json(d, S),
                Key::Json {
                    date: d.into(),
                    session: S.into(),
                },
            ),
            (
                session_cast(d, S),
                Key::Cast {
                    date: d.into(),
                    session: S.into(),
                },
            ),
            (
                part(d, S, 4096),
                Key::Part {
                    date: d.into(),
                    session: S.into(),
                    offset: 4096,
                },
            ),
            (
                audit_segment(S, 0),
                Key::Audit {
                    gateway: S.into(),
                    offset: 0,
                },
            ),
        ];
        for (key, want) in cases {
            assert_eq!(parse(&key), want, "{key}");
        }
        assert_eq!(
            part(d, S, 7),
            format!("{d}/{S}.cast.parts/00000000000000000007")
        );
        for other in [
            "README",
            "2026-12-02/x.cast",
            "2026-1x-02/0123456789abcdef0123456789abcdef.cast",
            "audit/nothex/00000000000000000000.jsonl",
            "audit/0123456789abcdef0123456789abcdef/12.jsonl",
            "2026-12-02/0123456789abcdef0123456789abcdef.cast.parts/1",
            "2026-12-02/0123456789abcdef0123456789abcdef.cast.tmp",
        ] {
            assert_eq!(parse(other), Key::Other, "{other}");
        }
    }
}
