//! One session's recorder, shared by the tasks of that session: the `.cast` transcript and
//! its metadata sidecar, written in the order the rest of the gateway relies on.
//!
//! Guarantees: a recorder exists only if its metadata and `.cast` were created (else the
//! session is refused); output is handed to the recorder *before* the user sees it (the
//! caller's order, see `ssh::io`); the transcript is flushed at least every second while
//! data flows (and by `tick`), and at the end; a write failure is remembered, every later
//! write fails, and the session must end with reason `write failed`. `logs` sessions stop
//! recording after a byte cap, with a marker saying so.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use super::cast::{CastError, CastHeader, CastSummary, CastWriter};
use super::meta::{self, CastInfo, MetaError, Metadata};

/// How often the transcript is flushed at the latest.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("the recordings file system has {free} bytes free, below the {min} bytes required")]
    LowSpace { free: u64, min: u64 },
    #[error("cannot check free space of {path}: {message}")]
    Statvfs { path: PathBuf, message: String },
    #[error(transparent)]
    Cast(#[from] CastError),
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error("{0}")]
    Failed(String),
}

/// Which output stream bytes came from (both go to the transcript's `o` events; the split
/// is kept in the metadata byte counts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

struct Inner {
    cast: Option<CastWriter>,
    meta: Metadata,
    json: PathBuf,
    cap: Option<u64>,
    capped: bool,
    failed: Option<String>,
    /// Output and input events are counted, not written (benchmarks only; see
    /// `gateway::Transcripts`).
    discard: bool,
}

/// A session's recorder; clones share it.
#[derive(Clone)]
pub struct Recorder {
    inner: Arc<Mutex<Inner>>,
}

fn free_space(path: &Path) -> Result<u64, RecordError> {
    let st = nix::sys::statvfs::statvfs(path).map_err(|e| RecordError::Statvfs {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    Ok(st.blocks_available().saturating_mul(st.fragment_size()))
}

/// The free bytes of `root`'s file system, or an error when it has less than `min_free`
/// (new sessions are refused then; readiness reports it).
pub fn check_space(root: &Path, min_free: u64) -> Result<u64, RecordError> {
    let free = free_space(root)?;
    if free < min_free {
        return Err(RecordError::LowSpace {
            free,
            min: min_free,
        });
    }
    Ok(free)
}

/// Check free space, then write the incomplete metadata of a new session under `root`.
/// Returns the paths of its `.cast` and `.json`.
pub(super) fn begin_metadata(
    root: &Path,
    min_free: u64,
    meta: &mut Metadata,
) -> Result<(PathBuf, PathBuf), RecordError> {
    check_space(root, min_free)?;
    let now = SystemTime::now();
    let (dir, cast_path, json) = meta::paths(root, &meta.session, now);
    meta::create_dir(&dir)?;
    meta.version = meta::VERSION;
    meta.start = meta::rfc3339(now);
    meta.complete = false;
    meta::write(&json, meta)?;
    Ok((cast_path, json))
}

impl Recorder {
    /// Create the metadata (incomplete) and the transcript for `meta.session` under `root`.
    /// Refuses when the file system has less than `min_free` bytes free.
    pub fn start(
        root: &Path,
        min_free: u64,
        mut meta: Metadata,
        header: &CastHeader,
        cap: Option<u64>,
    ) -> Result<Recorder, RecordError> {
        let (cast_path, json) = begin_metadata(root, min_free, &mut meta)?;
        let cast = CastWriter::create(&cast_path, header)?;
        Ok(Recorder {
            inner: Arc::new(Mutex::new(Inner {
                cast: Some(cast),
                meta,
                json,
                cap,
                capped: false,
                failed: None,
                discard: false,
            })),
        })
    }

    /// As [`Recorder::start`], for a gateway built with
    /// `Transcripts::DiscardedForBenchmarks`: output and input are counted, not written.
    #[doc(hidden)]
    pub fn discarding(self) -> Recorder {
        self.lock().discard = true;
        self
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Run `f` on the writer; a failure is remembered and reported.
    fn with<F>(inner: &mut Inner, f: F) -> Result<(), RecordError>
    where
        F: FnOnce(&mut CastWriter) -> Result<(), CastError>,
    {
        if let Some(why) = &inner.failed {
            return Err(RecordError::Failed(why.clone()));
        }
        let Some(cast) = inner.cast.as_mut() else {
            return Err(RecordError::Failed("the recording is closed".into()));
        };
        match f(cast).and_then(|()| cast.flush_if_due(FLUSH_EVERY)) {
            Ok(()) => Ok(()),
            Err(e) => {
                inner.failed = Some(e.to_string());
                Err(e.into())
            }
        }
    }

    /// Record output; call before the bytes go to the user.
    pub fn output(&self, stream: Stream, bytes: &[u8]) -> Result<(), RecordError> {
        let mut inner = self.lock();
        let n = bytes.len() as u64;
        match stream {
            Stream::Stdout => inner.meta.bytes.stdout += n,
            Stream::Stderr => inner.meta.bytes.stderr += n,
        }
        if inner.capped || inner.discard {
            return match &inner.failed {
                Some(why) => Err(RecordError::Failed(why.clone())),
                None => Ok(()),
            };
        }
        let over = match (inner.cap, inner.cast.as_ref()) {
            (Some(cap), Some(c)) => c.bytes_written().saturating_add(n) > cap,
            _ => false,
        };
        if over {
            inner.capped = true;
            let cap = inner.cap.unwrap_or(0);
            let text =
                format!("output after {cap} bytes of recording was not recorded (per-session cap)");
            return Self::with(&mut inner, |c| c.marker(&text));
        }
        Self::with(&mut inner, |c| c.output(bytes))
    }

    /// Record client input (the `i` stream only when the rule says `record_input`).
    pub fn input(&self, bytes: &[u8]) -> Result<(), RecordError> {
        let mut inner = self.lock();
        inner.meta.bytes.stdin += bytes.len() as u64;
        if !inner.meta.record_input || inner.capped || inner.discard {
            return Ok(());
        }
        Self::with(&mut inner, |c| c.input(bytes))
    }

    pub fn resize(&self, cols: u16, rows: u16) -> Result<(), RecordError> {
        Self::with(&mut self.lock(), |c| c.resize(cols, rows))
    }

    pub fn marker(&self, text: &str) -> Result<(), RecordError> {
        Self::with(&mut self.lock(), |c| c.marker(text))
    }

    /// Someone started watching the session live: kept in the metadata, which is written
    /// at once (so a gateway that dies still leaves it). At most `MAX_OBSERVERS` are kept.
    pub fn observer(&self, who: meta::Observer) -> Result<(), RecordError> {
        const MAX_OBSERVERS: usize = 64;
        let mut inner = self.lock();
        if inner.meta.observers.len() >= MAX_OBSERVERS {
            return Ok(());
        }
        inner.meta.observers.push(who);
        let json = inner.json.clone();
        Ok(meta::write(&json, &inner.meta)?)
    }

    /// Flush if a second has passed since the last flush (called by a timer).
    pub fn tick(&self) -> Result<(), RecordError> {
        Self::with(&mut self.lock(), |_| Ok(()))
    }

    /// Why the recording failed, if it did.
    pub fn failed(&self) -> Option<String> {
        self.lock().failed.clone()
    }

    /// The session id.
    pub fn session(&self) -> String {
        self.lock().meta.session.clone()
    }

    /// What `session.ended` says besides the end: the action and the bytes each way.
    pub fn ended_fields(&self) -> serde_json::Value {
        let inner = self.lock();
        serde_json::json!({"action": inner.meta.action, "bytes": inner.meta.bytes})
    }

    /// Close the transcript and complete the metadata. Returns the transcript's summary.
    pub fn finish(
        &self,
        end_reason: &str,
        exit_status: Option<u32>,
    ) -> Result<CastSummary, RecordError> {
        let mut inner = self.lock();
        let cast = inner.cast.take();
        let summary = match (cast, inner.failed.clone()) {
            (Some(c), None) => match c.finish() {
                Ok(s) => Some(s),
                Err(e) => {
                    inner.failed = Some(e.to_string());
                    None
                }
            },
            _ => None,
        };
        let failed = inner.failed.clone();
        inner.meta.end = Some(meta::rfc3339(SystemTime::now()));
        inner.meta.end_reason = Some(if failed.is_some() {
            meta::end_reason::WRITE_FAILED.to_owned()
        } else {
            end_reason.to_owned()
        });
        inner.meta.exit_status = exit_status;
        if let Some(s) = &summary {
            let file = format!("{}.cast", inner.meta.session);
            inner.meta.cast = Some(CastInfo {
                file,
                sha256: s.sha256.clone(),
                size: s.size,
            });
        }
        inner.meta.complete = summary.is_some();
        let json = inner.json.clone();
        meta::write(&json, &inner.meta)?;
        if failed.is_some() {
            // The failed write may have torn the last line (a full disk takes part of it):
            // trim it and mark the end now, so the transcript plays and verifies. On a disk
            // that is still full the marker may not fit; the next start tries again.
            drop(inner);
            if let Err(e) = super::recover::recover_one(&json) {
                tracing::warn!(error = %e, "a failed recording could not be repaired yet");
            }
        }
        match (summary, failed) {
            (Some(s), None) => Ok(s),
            (_, Some(why)) => Err(RecordError::Failed(why)),
            (None, None) => Err(RecordError::Failed(
                "the recording was already closed".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(session: &str) -> Metadata {
        Metadata {
            session: session.to_owned(),
            identity: "alice@corp.example".into(),
            action: "logs".into(),
            record_input: true,
            ..Default::default()
        }
    }

    #[test]
    fn a_session_leaves_a_complete_verifiable_recording() {
        let dir = tempfile::tempdir().unwrap();
        let id = meta::new_session_id();
        let header = CastHeader {
            width: 80,
            height: 24,
            ..Default::default()
        };
        let r = Recorder::start(dir.path(), 0, meta(&id), &header, None).unwrap();
        r.output(Stream::Stdout, b"hello ").unwrap();
        r.output(Stream::Stderr, b"world\n").unwrap();
        r.input(b"ls\n").unwrap();
        r.resize(100, 40).unwrap();
        let s = r.finish("exited", Some(0)).unwrap();
        let (m, cast) = super::super::offline::find(dir.path(), &id).unwrap();
        assert_eq!(m.bytes.stdout, 6);
        assert_eq!(m.bytes.stderr, 6);
        assert_eq!(m.bytes.stdin, 3);
        assert!(m.complete);
        assert_eq!(m.cast.unwrap().sha256, s.sha256);
        let mut out = Vec::new();
        super::super::offline::cat(&cast, &mut out).unwrap();
        assert_eq!(out, b"hello world\n");
    }

    #[test]
    fn the_cap_stops_recording_with_a_marker_and_low_space_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let header = CastHeader {
            width: 80,
            height: 24,
            ..Default::default()
        };
        let r = Recorder::start(
            dir.path(),
            0,
            meta(&meta::new_session_id()),
            &header,
            Some(400),
        )
        .unwrap();
        for _ in 0..50 {
            r.output(Stream::Stdout, b"0123456789\n").unwrap();
        }
        let s = r.finish("exited", Some(0)).unwrap();
        assert!(s.size < 1000, "{s:?}");
        let err = Recorder::start(
            dir.path(),
            u64::MAX,
            meta(&meta::new_session_id()),
            &header,
            None,
        )
        .err()
        .unwrap();
        assert!(matches!(err, RecordError::LowSpace { .. }));
    }
}
