//! The record of a port-forward session: metadata only (DESIGN.md §6), no transcript.
//! One record covers every TCP connection one SSH connection forwards to one pod port;
//! it counts connections and bytes each way and is completed when the last of them ends.
//!
//! Guarantees: the metadata exists (`complete: false`) before the first byte is forwarded,
//! or the forward is refused; `finish` is idempotent and writes the final counts, the end
//! reason and `complete: true`. Counting is lock-free on the data path.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use super::meta::{self, Metadata};
use super::session::{RecordError, begin_metadata};

/// A port-forward session's record.
pub struct ForwardRecord {
    meta: Mutex<Option<Metadata>>,
    json: PathBuf,
    to_pod: AtomicU64,
    from_pod: AtomicU64,
    connections: AtomicU64,
}

impl ForwardRecord {
    /// Write the metadata of a new port-forward session under `root`.
    pub fn start(
        root: &Path,
        min_free: u64,
        mut m: Metadata,
    ) -> Result<ForwardRecord, RecordError> {
        m.cast = None;
        let (_cast, json) = begin_metadata(root, min_free, &mut m)?;
        Ok(ForwardRecord {
            meta: Mutex::new(Some(m)),
            json,
            to_pod: AtomicU64::new(0),
            from_pod: AtomicU64::new(0),
            connections: AtomicU64::new(0),
        })
    }

    pub fn connection(&self) {
        self.connections.fetch_add(1, Ordering::Relaxed);
    }

    pub fn to_pod(&self, n: usize) {
        self.to_pod.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn from_pod(&self, n: usize) {
        self.from_pod.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Complete the metadata; later calls do nothing and return `Ok(None)`.
    pub fn finish(&self, end_reason: &str) -> Result<Option<Metadata>, RecordError> {
        let mut guard = self.meta.lock().unwrap_or_else(|e| e.into_inner());
        let Some(mut m) = guard.take() else {
            return Ok(None);
        };
        m.end = Some(meta::rfc3339(SystemTime::now()));
        m.end_reason = Some(end_reason.to_owned());
        m.connections = self.connections.load(Ordering::Relaxed);
        m.bytes.stdin = self.to_pod.load(Ordering::Relaxed);
        m.bytes.stdout = self.from_pod.load(Ordering::Relaxed);
        m.complete = true;
        meta::write(&self.json, &m)?;
        Ok(Some(m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forward_record_counts_and_completes_once() {
        let dir = tempfile::tempdir().unwrap();
        let m = Metadata {
            session: meta::new_session_id(),
            action: "port-forward".into(),
            ports: vec![8080],
            ..Default::default()
        };
        let r = ForwardRecord::start(dir.path(), 0, m.clone()).unwrap();
        let (found, _) = meta::session_jsons(dir.path())
            .unwrap()
            .into_iter()
            .map(|p| (meta::read(&p).unwrap(), p))
            .next()
            .unwrap();
        assert!(!found.complete && found.end_reason.is_none());
        r.connection();
        r.connection();
        r.to_pod(10);
        r.from_pod(7);
        let done = r.finish("client closed").unwrap().unwrap();
        assert!(r.finish("expired").unwrap().is_none());
        let read = meta::read(&meta::session_jsons(dir.path()).unwrap()[0]).unwrap();
        assert_eq!(read, done);
        assert_eq!(
            (read.connections, read.bytes.stdin, read.bytes.stdout),
            (2, 10, 7)
        );
        assert_eq!(read.ports, vec![8080]);
        assert_eq!(read.end_reason.as_deref(), Some("client closed"));
        assert!(read.complete && read.cast.is_none());
    }
}
