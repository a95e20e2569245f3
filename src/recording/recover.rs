//! Repair after a crash: recordings whose session the gateway never ended.
//!
//! `recover(root)` looks at `root/YYYY-MM-DD/SESSION.json` (SESSION a generated id; any
//! other name is ignored) whose metadata is not `complete` and not yet repaired, and for
//! each:
//! 1. trims the `.cast` after its last whole, valid line (a crash can tear the last line,
//!    which the player rejects);
//! 2. appends the marker `[t, "m", "recording incomplete: ..."]`, `t` the time of the last
//!    event kept (0 when only the header is left), unless that marker is already last (a
//!    repair interrupted by another crash);
//! 3. records the file's SHA-256 and size in `cast`, and `end_reason: "incomplete"` unless
//!    the gateway had already written one (e.g. "write failed"). `complete` stays `false`:
//!    the transcript is known to miss its end, and `verify` can still check its hash.
//!
//! Guarantees: only a torn tail is cut. If a bad line is followed by valid events (damage
//! in the middle, not a crash), the file is left untouched and the session reported in the
//! log, so no evidence is destroyed; so is a file whose header line is gone (power loss
//! right after creation), which no player can open. A `.json` without a `.cast` (port-forward, or a crash
//! before the file existed) only gets its `end_reason`. Repairing twice changes nothing.
//!
//! Not guaranteed: the real end time and exit status are unknown and stay unset. Run it
//! before the gateway accepts sessions: a live session's files look exactly like a crashed
//! one's. It writes no audit event; the caller logs `session.recovered` for each id returned.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::cast;
use super::meta::{self, CastInfo, Metadata};

/// The marker appended to a repaired recording.
pub const INCOMPLETE_MARKER: &str =
    "recording incomplete: the gateway stopped before the session ended";

#[derive(Debug, thiserror::Error)]
pub enum RecoverError {
    #[error("recover {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("recover {path}: {reason}")]
    Damaged { path: PathBuf, reason: String },
    #[error(transparent)]
    Meta(#[from] meta::MetaError),
}

/// Repair every unfinished recording under `root`; returns the sessions repaired. A session
/// that cannot be repaired is logged (`tracing::warn`) and skipped, so one damaged file
/// does not keep the others unrepaired; only an unreadable `root` is an error.
pub fn recover(root: &Path) -> Result<Vec<String>, RecoverError> {
    let mut repaired = Vec::new();
    for json in meta::session_jsons(root)? {
        match recover_one(&json) {
            Ok(Some(session)) => repaired.push(session),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "recording left unrepaired"),
        }
    }
    Ok(repaired)
}

/// Repair one recording (see [`recover`]); also used at once when a recording fails, so a
/// write torn by a full disk does not wait for the next start to become playable.
pub(crate) fn recover_one(json: &Path) -> Result<Option<String>, RecoverError> {
    let mut m: Metadata = meta::read(json)?;
    if json.file_stem().and_then(|s| s.to_str()) != Some(m.session.as_str()) {
        // Repairing the recording it names would touch another session's files.
        return Err(RecoverError::Damaged {
            path: json.to_owned(),
            reason: format!(
                "describes session {}, not the one it is named after",
                m.session
            ),
        });
    }
    let cast_name = format!("{}.cast", m.session);
    let cast_path = json.with_file_name(&cast_name);
    let has_cast = cast_path.is_file();
    let needed = !m.complete && (m.end_reason.is_none() || (m.cast.is_none() && has_cast));
    if !needed {
        return Ok(None);
    }
    if has_cast {
        let marker = match m.end_reason.as_deref() {
            None => INCOMPLETE_MARKER.to_owned(),
            Some(reason) => format!("recording incomplete: {reason}"),
        };
        repair_cast(&cast_path, &marker)?;
        let (sha256, size) = cast::sha256_file(&cast_path).map_err(|source| RecoverError::Io {
            path: cast_path.clone(),
            source,
        })?;
        m.cast = Some(CastInfo {
            file: cast_name,
            sha256,
            size,
        });
    }
    if m.end_reason.is_none() {
        m.end_reason = Some(meta::end_reason::INCOMPLETE.to_owned());
    }
    meta::write(json, &m)?;
    tracing::info!(session = %m.session, "recording repaired after an unclean stop");
    Ok(Some(m.session))
}

/// What a scan of a `.cast` found.
struct Scan {
    /// Bytes up to the end of the last line to keep.
    keep: u64,
    /// Time of the last event kept (0 if none).
    last_time: f64,
    /// Whether the last line kept is a marker with this text.
    marker_last: bool,
}

/// Scan line by line: a header line, then events. Everything from the first bad line on is
/// the torn tail, provided no valid event follows it.
fn scan(path: &Path, marker: &str) -> Result<Scan, RecoverError> {
    let io = |source| RecoverError::Io {
        path: path.to_owned(),
        source,
    };
    let mut reader = BufReader::new(File::open(path).map_err(io)?);
    let mut line = Vec::new();
    let mut offset = 0u64;
    let mut lineno = 0usize;
    let mut result = Scan {
        keep: 0,
        last_time: 0.0,
        marker_last: false,
    };
    let mut bad_at: Option<usize> = None;
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line).map_err(io)?;
        if n == 0 {
            return Ok(result);
        }
        lineno += 1;
        offset += n as u64;
        let whole = line.last() == Some(&b'\n');
        let parsed = if whole {
            parse_line(&line, lineno == 1)
        } else {
            Err(())
        };
        match (parsed, bad_at) {
            (Ok(event), None) => {
                result.keep = offset;
                if let Some((time, code, data)) = event {
                    result.last_time = time;
                    result.marker_last = code == "m" && data == marker;
                }
            }
            (Ok(Some(_)), Some(bad)) => {
                return Err(RecoverError::Damaged {
                    path: path.to_owned(),
                    reason: format!(
                        "line {bad} is damaged but valid events follow it (line {lineno}); \
                         not a torn tail, left as is"
                    ),
                });
            }
            (Ok(None), Some(_)) | (Err(()), Some(_)) => {}
            (Err(()), None) => bad_at = Some(lineno),
        }
    }
}

/// `Ok(None)` for a valid header (line 1), `Ok(Some(event))` for a valid event.
fn parse_line(line: &[u8], header: bool) -> Result<Option<(f64, String, String)>, ()> {
    let v: Value = serde_json::from_slice(line).map_err(|_| ())?;
    if header {
        return match v.get("version").and_then(Value::as_u64) {
            Some(2) => Ok(None),
            _ => Err(()),
        };
    }
    let arr = v.as_array().ok_or(())?;
    let time = arr.first().and_then(Value::as_f64).ok_or(())?;
    let code = arr.get(1).and_then(Value::as_str).ok_or(())?;
    let data = arr.get(2).and_then(Value::as_str).unwrap_or_default();
    Ok(Some((time, code.to_owned(), data.to_owned())))
}

/// Trim the torn tail and append the marker; fsync.
fn repair_cast(path: &Path, marker: &str) -> Result<(), RecoverError> {
    let io = |source| RecoverError::Io {
        path: path.to_owned(),
        source,
    };
    let found = scan(path, marker)?;
    if found.keep == 0 {
        // Not even the header survived: the player cannot be given anything honest.
        return Err(RecoverError::Damaged {
            path: path.to_owned(),
            reason: "no valid asciicast v2 header".into(),
        });
    }
    let mut file = OpenOptions::new().write(true).open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    if found.keep < len {
        tracing::warn!(
            path = %path.display(),
            cut = len - found.keep,
            "trimming the torn end of a recording"
        );
        file.set_len(found.keep).map_err(io)?;
    }
    if !found.marker_last {
        let mut line = serde_json::to_vec(&(found.last_time, "m", marker)).map_err(|e| {
            RecoverError::Damaged {
                path: path.to_owned(),
                reason: e.to_string(),
            }
        })?;
        line.push(b'\n');
        // `set_len` does not move the cursor, which is still at 0: write at the new end.
        file.seek(SeekFrom::End(0)).map_err(io)?;
        file.write_all(&line).map_err(io)?;
    }
    file.sync_all().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::cast::tests::asciinema_cat;
    use crate::recording::cast::{CastHeader, CastWriter};
    use std::time::SystemTime;

    fn setup(root: &Path, end_reason: Option<&str>) -> (Metadata, PathBuf, PathBuf) {
        let id = meta::new_session_id();
        let (dir, cast_path, json) = meta::paths(root, &id, SystemTime::now());
        meta::create_dir(&dir).unwrap();
        let m = Metadata {
            version: meta::VERSION,
            session: id,
            action: "shell".into(),
            start: meta::rfc3339(SystemTime::now()),
            end_reason: end_reason.map(str::to_owned),
            ..Metadata::default()
        };
        meta::write(&json, &m).unwrap();
        (m, cast_path, json)
    }

    fn dir_of(p: &Path) -> &Path {
        p.parent().unwrap()
    }

    fn header() -> CastHeader {
        CastHeader {
            width: 80,
            height: 24,
            timestamp: 1_700_000_000,
            ..CastHeader::default()
        }
    }

    #[test]
    fn a_torn_recording_is_trimmed_marked_hashed_and_playable() {
        let root = tempfile::tempdir().unwrap();
        let (m, cast_path, json) = setup(root.path(), None);
        let mut w = CastWriter::create(&cast_path, &header()).unwrap();
        w.output(b"before the crash\r\n").unwrap();
        w.output("é and more\r\n".as_bytes()).unwrap();
        w.flush().unwrap();
        drop(w);
        // A crash in the middle of the next line.
        let mut f = OpenOptions::new().append(true).open(&cast_path).unwrap();
        f.write_all(b"[1.5, \"o\", \"half a li").unwrap();
        drop(f);
        // The real player refuses the torn file...
        assert!(asciinema_cat(&cast_path).is_err());

        assert_eq!(recover(root.path()).unwrap(), vec![m.session.clone()]);
        let text = std::fs::read_to_string(&cast_path).unwrap();
        assert!(!text.contains("half a li"));
        let last = text.lines().last().unwrap();
        let v: Value = serde_json::from_str(last).unwrap();
        assert_eq!(v[1], "m");
        assert_eq!(v[2], INCOMPLETE_MARKER);
        // ...and plays the repaired one.
        assert_eq!(
            asciinema_cat(&cast_path).unwrap(),
            "before the crash\r\né and more\r\n"
        );

        let after = meta::read(&json).unwrap();
        assert!(!after.complete);
        assert_eq!(after.end_reason.as_deref(), Some("incomplete"));
        let info = after.cast.unwrap();
        let (sha, size) = cast::sha256_file(&cast_path).unwrap();
        assert_eq!((info.sha256, info.size), (sha, size));
        assert_eq!(info.file, format!("{}.cast", m.session));

        // A second run changes nothing.
        assert!(recover(root.path()).unwrap().is_empty());
        assert_eq!(std::fs::read_to_string(&cast_path).unwrap(), text);
    }

    #[test]
    fn interrupted_repairs_do_not_duplicate_the_marker_and_header_only_files_play() {
        let root = tempfile::tempdir().unwrap();
        let (_, cast_path, json) = setup(root.path(), None);
        drop(CastWriter::create(&cast_path, &header()).unwrap());
        assert_eq!(recover(root.path()).unwrap().len(), 1);
        let once = std::fs::read_to_string(&cast_path).unwrap();
        assert!(once.ends_with(&format!("[0.0,\"m\",\"{INCOMPLETE_MARKER}\"]\n")));
        // As if the process died before the metadata was written.
        let mut m = meta::read(&json).unwrap();
        m.cast = None;
        m.end_reason = None;
        meta::write(&json, &m).unwrap();
        assert_eq!(recover(root.path()).unwrap().len(), 1);
        assert_eq!(std::fs::read_to_string(&cast_path).unwrap(), once);
        assert_eq!(asciinema_cat(&cast_path).unwrap(), "");
    }

    #[test]
    fn damage_before_valid_events_is_left_alone_and_other_names_are_ignored() {
        let root = tempfile::tempdir().unwrap();
        let (_, cast_path, json) = setup(root.path(), Some("write failed"));
        let body = "{\"version\":2,\"width\":80,\"height\":24}\n[0.1,\"o\",\"a\"]\nGARBAGE\n[0.3,\"o\",\"b\"]\n";
        std::fs::write(&cast_path, body).unwrap();
        assert!(recover(root.path()).unwrap().is_empty());
        assert_eq!(std::fs::read_to_string(&cast_path).unwrap(), body);
        assert!(meta::read(&json).unwrap().cast.is_none());

        // Metadata that names another session is not acted on.
        let (other, other_cast, _) = setup(root.path(), None);
        let stray = dir_of(&other_cast).join(format!("{}.json", "b".repeat(32)));
        std::fs::write(&stray, serde_json::to_vec(&other).unwrap()).unwrap();
        std::fs::write(&other_cast, "{\"version\":2,\"width\":1,\"height\":1}\n").unwrap();
        let fixed = recover(root.path()).unwrap();
        assert_eq!(fixed, [other.session]);
        assert!(meta::read(&stray).unwrap().end_reason.is_none());

        // Files podgate did not name are not touched.
        let dir = cast_path.parent().unwrap();
        std::fs::write(dir.join("notes.json"), "{}").unwrap();
        std::fs::create_dir(root.path().join("other")).unwrap();
        std::fs::write(
            root.path()
                .join("other")
                .join(format!("{}.json", "a".repeat(32))),
            "x",
        )
        .unwrap();
        assert!(recover(root.path()).unwrap().is_empty());

        // A session ended by a write failure keeps its reason but gets its hash and marker.
        let (m2, cast2, json2) = setup(root.path(), Some("write failed"));
        let mut w = CastWriter::create(&cast2, &header()).unwrap();
        w.output(b"x").unwrap();
        drop(w);
        assert_eq!(recover(root.path()).unwrap(), vec![m2.session]);
        let after = meta::read(&json2).unwrap();
        assert_eq!(after.end_reason.as_deref(), Some("write failed"));
        assert!(after.cast.is_some());
        assert!(
            std::fs::read_to_string(&cast2)
                .unwrap()
                .contains("recording incomplete: write failed")
        );
    }

    #[test]
    fn metadata_without_a_cast_only_gets_an_end_reason() {
        let root = tempfile::tempdir().unwrap();
        let (m, _, json) = setup(root.path(), None);
        assert_eq!(recover(root.path()).unwrap(), vec![m.session]);
        let after = meta::read(&json).unwrap();
        assert_eq!(after.end_reason.as_deref(), Some("incomplete"));
        assert!(after.cast.is_none());
        assert!(recover(root.path()).unwrap().is_empty());
    }
}
