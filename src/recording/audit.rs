//! `RECORDINGS/audit.jsonl`: one JSON object per line (`auth.accepted`, `auth.rejected`,
//! `session.denied`, `session.started`, `session.ended`, ...), each carrying in `prev` the
//! SHA-256 of the line before it, so that a deleted, altered or reordered line breaks the
//! chain (tamper evidence, not tamper proofing: whoever can rewrite the whole file can
//! rewrite the chain).
//!
//! Guarantees: each event is written with one `write` call on an `O_APPEND` file and
//! flushed before `write` returns, so a line is whole or absent; a failed write is an error
//! the caller must act on (the gateway refuses what it cannot record). The chain continues
//! across restarts from the file's last complete line.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// The `prev` of the first line of a chain.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// How much of the file's end is read at open to find the last line.
const TAIL: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit log {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

struct Inner {
    file: File,
    prev: String,
}

/// The append-only, hash-chained audit log.
pub struct AuditLog {
    path: PathBuf,
    inner: Mutex<Inner>,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

impl AuditLog {
    /// Open (or create, mode 0600) the log at `path` and continue its chain.
    pub fn open(path: &Path) -> Result<AuditLog, AuditError> {
        let err = |source| AuditError::Io {
            path: path.to_owned(),
            source,
        };
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .mode(0o600)
            .open(path)
            .map_err(err)?;
        let prev = last_line_hash(&mut file).map_err(err)?;
        Ok(AuditLog {
            path: path.to_owned(),
            inner: Mutex::new(Inner { file, prev }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append an event: `fields` (a JSON object) plus `time`, `event` and `prev`.
    pub fn write(&self, event: &str, fields: Value) -> Result<(), AuditError> {
        let mut obj = match fields {
            Value::Object(m) => m,
            other => {
                let mut m = Map::new();
                m.insert("data".into(), other);
                m
            }
        };
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut line = Map::new();
        line.insert(
            "time".into(),
            Value::String(humantime::format_rfc3339_micros(SystemTime::now()).to_string()),
        );
        line.insert("event".into(), Value::String(event.to_owned()));
        line.append(&mut obj);
        line.insert("prev".into(), Value::String(inner.prev.clone()));
        let mut bytes = serde_json::to_vec(&Value::Object(line)).unwrap_or_default();
        let hash = sha256_hex(&bytes);
        bytes.push(b'\n');
        let result = inner
            .file
            .write_all(&bytes)
            .and_then(|()| inner.file.flush());
        result.map_err(|source| AuditError::Io {
            path: self.path.clone(),
            source,
        })?;
        inner.prev = hash;
        Ok(())
    }
}

/// SHA-256 of the last complete line (without its newline), or GENESIS for an empty file.
/// A torn last line (no newline: a crash mid-write, never acknowledged as written) is cut
/// off, so that the next event starts on a line of its own and the chain stays verifiable.
fn last_line_hash(file: &mut File) -> std::io::Result<String> {
    let len = file.seek(SeekFrom::End(0))?;
    let start = len.saturating_sub(TAIL);
    file.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::new();
    file.read_to_end(&mut buf)?;
    let complete = match buf.iter().rposition(|b| *b == b'\n') {
        Some(end) => {
            let keep = start + end as u64 + 1;
            if keep < len {
                file.set_len(keep)?;
            }
            buf.get(..end).unwrap_or(&[])
        }
        None => {
            if len > 0 && len <= TAIL {
                file.set_len(0)?;
            }
            return Ok(GENESIS.to_owned());
        }
    };
    let last = match complete.iter().rposition(|b| *b == b'\n') {
        Some(i) => complete.get(i + 1..).unwrap_or(&[]),
        None => complete,
    };
    if last.is_empty() {
        return Ok(GENESIS.to_owned());
    }
    Ok(sha256_hex(last))
}

/// Check a whole log: every line parses and its `prev` is the hash of the line before.
/// Returns the number of lines, or the 1-based number and reason of the first bad line.
pub fn verify_chain(text: &str) -> Result<usize, (usize, String)> {
    let mut prev = GENESIS.to_owned();
    let mut count = 0;
    for (i, line) in text.split_terminator('\n').enumerate() {
        let v: Value = serde_json::from_str(line).map_err(|e| (i + 1, format!("not JSON: {e}")))?;
        let got = v.get("prev").and_then(Value::as_str).unwrap_or("");
        if got != prev {
            return Err((i + 1, "prev does not match the line before".into()));
        }
        prev = sha256_hex(line.as_bytes());
        count += 1;
    }
    if !text.is_empty() && !text.ends_with('\n') {
        return Err((count, "last line is incomplete".into()));
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_chain_links_lines_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(&path).unwrap();
        log.write("auth.rejected", json!({"reason": "expired"}))
            .unwrap();
        log.write("auth.accepted", json!({"key_id": "alice"}))
            .unwrap();
        drop(log);
        let log = AuditLog::open(&path).unwrap();
        log.write("session.started", json!({"session": "s1"}))
            .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(verify_chain(&text), Ok(3));
        let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(first["prev"], GENESIS);
        assert_eq!(first["event"], "auth.rejected");
    }

    #[test]
    fn tampering_breaks_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(&path).unwrap();
        for i in 0..4 {
            log.write("e", json!({"i": i})).unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let deleted = format!("{}\n{}\n{}\n", lines[0], lines[2], lines[3]);
        assert_eq!(verify_chain(&deleted).unwrap_err().0, 2);
        let swapped = format!("{}\n{}\n{}\n{}\n", lines[0], lines[2], lines[1], lines[3]);
        assert_eq!(verify_chain(&swapped).unwrap_err().0, 2);
        let edited = text.replace("\"i\":1", "\"i\":7");
        assert_eq!(verify_chain(&edited).unwrap_err().0, 3);
        assert!(verify_chain(&text[..text.len() - 3]).is_err());
    }

    #[test]
    fn a_torn_last_line_is_skipped_when_continuing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(&path).unwrap();
        log.write("e", json!({})).unwrap();
        drop(log);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"torn").unwrap();
        drop(f);
        let log = AuditLog::open(&path).unwrap();
        log.write("after", json!({})).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("torn"));
        assert_eq!(verify_chain(&text), Ok(2));
    }
}
