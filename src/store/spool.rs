//! The local side of shipping: what in the recordings directory (the spool) is shipped,
//! what is not, and the decisions made from that. No network I/O here.
//!
//! Files it keeps beside the recordings (ignored by the offline tools):
//! `spool.id` (this spool's id, the GATEWAY of `audit/GATEWAY/…` keys, made once),
//! `audit.shipped` (`{"offset": N}`: the bytes of audit.jsonl shipped and verified) and
//! `DATE/SESSION.shipped` (the marker written once a session's objects were uploaded and
//! read back identical). Each is replaced atomically (`meta::write_atomic`), so a
//! crash leaves the old or the new state; the old state only means shipping again what
//! was shipped, which overwrites identical objects.
//!
//! Decisions: [`over_limit`] (whether new sessions meet `when_spool_full`) and [`backoff`]
//! (retry delays) are pure functions with table tests.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::recording::meta::{self, Metadata};

pub const SPOOL_ID: &str = "spool.id";
pub const AUDIT_SHIPPED: &str = "audit.shipped";
pub const AUDIT_LOG: &str = "audit.jsonl";
/// Largest state file read back (they are a few hundred bytes).
const STATE_MAX: u64 = 1 << 20;

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_owned(),
        source,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error(transparent)]
    Meta(#[from] meta::MetaError),
}

fn read_small(path: &Path) -> Result<Option<Vec<u8>>, SpoolError> {
    use std::io::Read;
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path)(e)),
    };
    let mut buf = Vec::new();
    file.take(STATE_MAX + 1)
        .read_to_end(&mut buf)
        .map_err(io_err(path))?;
    if buf.len() as u64 > STATE_MAX {
        return Err(SpoolError::Invalid {
            path: path.to_owned(),
            reason: "larger than a state file can be".into(),
        });
    }
    Ok(Some(buf))
}

/// This spool's id: read from `spool.id`, or made (32 hex digits) and kept there.
pub fn spool_id(root: &Path) -> Result<String, SpoolError> {
    let path = root.join(SPOOL_ID);
    if let Some(bytes) = read_small(&path)? {
        let id = String::from_utf8_lossy(&bytes).trim().to_owned();
        if meta::is_session_id(&id) {
            return Ok(id);
        }
        return Err(SpoolError::Invalid {
            path,
            reason: "not a spool id (32 hex digits)".into(),
        });
    }
    new_spool_id(root)
}

/// Make and keep a new spool id (a new audit chain in the bucket).
pub fn new_spool_id(root: &Path) -> Result<String, SpoolError> {
    let id = meta::new_session_id();
    meta::write_atomic(&root.join(SPOOL_ID), format!("{id}\n").as_bytes())?;
    Ok(id)
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
struct AuditState {
    offset: u64,
}

/// Bytes of audit.jsonl shipped so far (0 when nothing was).
pub fn audit_shipped(root: &Path) -> Result<u64, SpoolError> {
    let path = root.join(AUDIT_SHIPPED);
    match read_small(&path)? {
        None => Ok(0),
        Some(bytes) => serde_json::from_slice::<AuditState>(&bytes)
            .map(|s| s.offset)
            .map_err(|e| SpoolError::Invalid {
                path,
                reason: e.to_string(),
            }),
    }
}

pub fn set_audit_shipped(root: &Path, offset: u64) -> Result<(), SpoolError> {
    let bytes = serde_json::to_vec(&AuditState { offset }).unwrap_or_default();
    Ok(meta::write_atomic(&root.join(AUDIT_SHIPPED), &bytes)?)
}

/// One object as shipped.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Shipped {
    pub key: String,
    pub size: u64,
    pub sha256: String,
}

/// `DATE/SESSION.shipped`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Marker {
    pub shipped_at: String,
    pub objects: Vec<Shipped>,
    /// Set when the spool's `.cast` did not match its metadata's SHA-256: it was shipped
    /// as it is (evidence is never held back), and `verify` will report it.
    pub problem: Option<String>,
}

pub fn marker_path(json: &Path) -> PathBuf {
    json.with_extension("shipped")
}

pub fn read_marker(json: &Path) -> Result<Option<Marker>, SpoolError> {
    let path = marker_path(json);
    match read_small(&path)? {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| SpoolError::Invalid {
                path,
                reason: e.to_string(),
            }),
    }
}

pub fn write_marker(json: &Path, marker: &Marker) -> Result<(), SpoolError> {
    let bytes = serde_json::to_vec_pretty(marker).unwrap_or_default();
    Ok(meta::write_atomic(&marker_path(json), &bytes)?)
}

/// A session found in the spool.
#[derive(Debug, Clone)]
pub struct Entry {
    /// `YYYY-MM-DD`.
    pub date: String,
    pub session: String,
    pub json: PathBuf,
    pub cast: PathBuf,
    pub meta: Metadata,
    pub marker: Option<Marker>,
}

impl Entry {
    /// The gateway has ended the session (or `recover` closed it): its files are final.
    pub fn ended(&self) -> bool {
        self.meta.end_reason.is_some()
    }
}

/// Every session in the spool, oldest date first. A session whose metadata cannot be read
/// is returned in `unreadable` (it cannot be shipped safely and counts as unshipped).
/// Markers whose session's files are gone (a cleanup cut short) are removed.
pub fn scan(root: &Path) -> Result<(Vec<Entry>, Vec<PathBuf>), SpoolError> {
    let mut entries = Vec::new();
    let mut unreadable = Vec::new();
    for (date, dir) in meta::date_dirs(root)? {
        let names = meta::file_names(&dir)?;
        for name in &names {
            if let Some(session) = name.strip_suffix(".shipped")
                && meta::is_session_id(session)
                && !names.contains(&format!("{session}.json"))
            {
                let _ = std::fs::remove_file(dir.join(name));
            }
            let Some(session) = name
                .strip_suffix(".json")
                .filter(|s| meta::is_session_id(s))
            else {
                continue;
            };
            let json = dir.join(name);
            let parsed = meta::read(&json)
                .map_err(SpoolError::from)
                .and_then(|m| Ok((m, read_marker(&json)?)));
            match parsed {
                Ok((m, marker)) if m.session == session => entries.push(Entry {
                    date: date.clone(),
                    session: session.to_owned(),
                    cast: dir.join(format!("{session}.cast")),
                    json,
                    meta: m,
                    marker,
                }),
                Ok(_) | Err(_) => unreadable.push(json),
            }
        }
    }
    Ok((entries, unreadable))
}

/// Delete a shipped session's files from the spool (the bucket holds them): the `.cast`,
/// the `.json`, then the marker, so that an interrupted cleanup is finished by the next
/// (see `scan`). The date directory goes when it is empty.
pub fn remove_shipped(entry: &Entry) -> Result<(), SpoolError> {
    for path in [&entry.cast, &entry.json, &marker_path(&entry.json)] {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(path)(e)),
        }
    }
    if let Some(dir) = entry.json.parent() {
        // Fails while other sessions are in it; that is fine.
        let _ = std::fs::remove_dir(dir);
    }
    Ok(())
}

/// What is waiting to be shipped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backlog {
    pub bytes: u64,
    /// When the oldest data still unshipped was first seen unshipped.
    pub oldest: Option<SystemTime>,
}

/// Why new sessions meet `when_spool_full`, if they do.
pub fn over_limit(
    backlog: &Backlog,
    max_size: u64,
    max_age: Duration,
    now: SystemTime,
) -> Option<String> {
    if backlog.bytes > max_size {
        return Some(format!(
            "the spool holds {} bytes not shipped (spool_max_size {max_size})",
            backlog.bytes
        ));
    }
    let age = backlog
        .oldest
        .and_then(|t| now.duration_since(t).ok())
        .unwrap_or_default();
    if age > max_age {
        return Some(format!(
            "data in the spool has waited {} to be shipped (spool_max_age {})",
            humantime::format_duration(Duration::from_secs(age.as_secs())),
            humantime::format_duration(max_age)
        ));
    }
    None
}

/// The delay before retry number `attempt` (1 for the first retry): `first` doubling up to
/// `cap`, times `jitter` (0.5 … 1.5, drawn by the caller) so that gateways that lost the
/// store together do not retry together.
pub fn backoff(attempt: u32, first: Duration, cap: Duration, jitter: f64) -> Duration {
    let doublings = attempt.saturating_sub(1).min(16);
    let base = first
        .saturating_mul(1u32 << doublings)
        .min(cap)
        .max(Duration::from_millis(1));
    base.mul_f64(jitter.clamp(0.5, 1.5))
}

/// End of the last whole line in `path` between `from` and `len` (`from` when there is
/// none): what of a growing file can be shipped now.
pub fn last_line_end(path: &Path, from: u64, len: u64) -> Result<u64, SpoolError> {
    use std::io::{Read, Seek, SeekFrom};
    const BLOCK: u64 = 64 << 10;
    let mut file = std::fs::File::open(path).map_err(io_err(path))?;
    let mut end = len;
    let mut buf = vec![0u8; BLOCK as usize];
    while end > from {
        let start = end.saturating_sub(BLOCK).max(from);
        let n = (end - start) as usize;
        let chunk = buf.get_mut(..n).unwrap_or_default();
        file.seek(SeekFrom::Start(start)).map_err(io_err(path))?;
        file.read_exact(chunk).map_err(io_err(path))?;
        if let Some(i) = chunk.iter().rposition(|b| *b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_refuse_by_size_or_age() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(10_000);
        let ago = |s| Some(now - Duration::from_secs(s));
        let hour = Duration::from_secs(3600);
        let cases = [
            (Backlog::default(), None),
            (
                Backlog {
                    bytes: 100,
                    oldest: ago(10),
                },
                None,
            ),
            (
                Backlog {
                    bytes: 101,
                    oldest: ago(10),
                },
                Some("101 bytes not shipped (spool_max_size 100)"),
            ),
            (
                Backlog {
                    bytes: 1,
                    oldest: ago(3601),
                },
                Some("waited 1h 1s to be shipped (spool_max_age 1h)"),
            ),
            (
                Backlog {
                    bytes: 1,
                    oldest: Some(now + Duration::from_secs(5)),
                },
                None,
            ),
        ];
        for (backlog, want) in cases {
            let got = over_limit(&backlog, 100, hour, now);
            match (got, want) {
                (None, None) => {}
                (Some(g), Some(w)) => assert!(g.contains(w), "{g}"),
                (g, w) => panic!("{backlog:?}: {g:?}, want {w:?}"),
            }
        }
    }

    #[test]
    fn backoff_doubles_to_the_cap_with_jitter() {
        let s = Duration::from_secs;
        let cases = [
            (1, 1.0, s(1)),
            (2, 1.0, s(2)),
            (4, 1.0, s(8)),
            (7, 1.0, s(60)),
            (400, 1.0, s(60)),
            (1, 0.5, Duration::from_millis(500)),
            (3, 1.5, s(6)),
            (3, 9.0, s(6)),
        ];
        for (attempt, jitter, want) in cases {
            assert_eq!(backoff(attempt, s(1), s(60), jitter), want, "{attempt}");
        }
    }

    #[test]
    fn state_files_round_trip_and_lines_end_where_they_end() {
        let dir = tempfile::tempdir().unwrap();
        let id = spool_id(dir.path()).unwrap();
        assert_eq!(spool_id(dir.path()).unwrap(), id);
        assert_eq!(audit_shipped(dir.path()).unwrap(), 0);
        set_audit_shipped(dir.path(), 77).unwrap();
        assert_eq!(audit_shipped(dir.path()).unwrap(), 77);
        std::fs::write(dir.path().join(SPOOL_ID), "../etc\n").unwrap();
        assert!(spool_id(dir.path()).is_err());

        let f = dir.path().join("f");
        let mut text = b"a\nbb\n".to_vec();
        text.extend(std::iter::repeat_n(b'x', 200_000));
        std::fs::write(&f, &text).unwrap();
        let len = text.len() as u64;
        let cases = [(0, len, 5), (0, 4, 2), (2, 4, 2), (5, len, 5), (0, 1, 0)];
        for (from, to, want) in cases {
            assert_eq!(last_line_end(&f, from, to).unwrap(), want, "{from}..{to}");
        }
    }
}
