//! Keeps the gateway's revocation list current: reads the configured file (an OpenSSH KRL
//! or a text list, see `auth::revocation`) at start and whenever it changes, and publishes
//! the result on a `watch` channel that logins and logged-in connections read.
//!
//! Guarantees:
//! - what is published is always a whole list or `Unavailable`, never part of one: the new
//!   file is read and parsed first, then swapped in with one `send_replace`;
//! - a file that is missing, unreadable, larger than [`MAX_BYTES`] or corrupt publishes
//!   `Unavailable`, which refuses every login (fail closed), logged at error level whenever
//!   the state changes; a good file read later lifts it;
//! - changes are noticed within [`POLL`]: the file's device, inode, size, mtime and ctime
//!   (following symlinks) are compared every second. That catches in-place rewrites
//!   (`ssh-keygen -k -u`), renames over the file, and Kubernetes ConfigMap/Secret volume
//!   updates (an atomic swap of the `..data` symlink). A torn read of a file being rewritten
//!   in place is followed by another read as soon as the writer's last write changes the
//!   stamp.
//!
//! Not done here: what a newly revoked certificate means for a live connection (the SSH
//! layer ends its sessions), and KRL signatures (not verified, see `auth::revocation`).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::auth::{RevocationList, Revocations};

/// How often the file's metadata is compared.
pub const POLL: Duration = Duration::from_secs(1);

/// A bigger file is refused rather than read (a KRL of a million serials is ~8 MB).
pub const MAX_BYTES: u64 = 64 * 1024 * 1024;

/// What identifies one version of the file, or why it could not be looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Stamp {
    File {
        dev: u64,
        ino: u64,
        size: u64,
        mtime: (i64, i64),
        ctime: (i64, i64),
    },
    Unreadable(String),
}

async fn stamp(path: &Path) -> Stamp {
    match tokio::fs::metadata(path).await {
        Ok(m) => Stamp::File {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        },
        Err(e) => Stamp::Unreadable(e.to_string()),
    }
}

/// Read and parse the list at `path` once.
pub async fn read(path: &Path) -> Revocations {
    match read_list(path).await {
        Ok(list) => Revocations::List(Arc::new(list)),
        Err(why) => Revocations::Unavailable(why.into()),
    }
}

async fn read_list(path: &Path) -> Result<RevocationList, String> {
    let shown = path.display();
    let meta = tokio::fs::metadata(path)
        .await
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{shown} is not a file"));
    }
    if meta.len() > MAX_BYTES {
        return Err(format!("{shown} is larger than {MAX_BYTES} bytes"));
    }
    let bytes = tokio::fs::read(path)
        .await
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    if bytes.len() as u64 > MAX_BYTES {
        return Err(format!("{shown} is larger than {MAX_BYTES} bytes"));
    }
    RevocationList::parse(&bytes).map_err(|e| format!("{shown}: {e}"))
}

fn report(path: &Path, state: &Revocations) {
    let shown = path.display();
    match state {
        Revocations::List(list) => {
            tracing::info!(file = %shown, list = %list.summary(), "revocation list loaded")
        }
        Revocations::Unavailable(why) => tracing::error!(
            file = %shown,
            error = %why,
            "revocation list unusable: REFUSING EVERY LOGIN until it is fixed"
        ),
        Revocations::NotConfigured => {}
    }
}

/// Read the list at `path` now, then keep it current in a background task that ends when
/// every receiver is gone. Must be called within a Tokio runtime.
pub async fn watch(path: PathBuf) -> watch::Receiver<Revocations> {
    let mut last = stamp(&path).await;
    let first = read(&path).await;
    report(&path, &first);
    let (tx, rx) = watch::channel(first);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tx.closed() => return,
                _ = tokio::time::sleep(POLL) => {}
            }
            let now = stamp(&path).await;
            if now == last {
                continue;
            }
            // The stamp is taken before the read: if the file changes during the read, the
            // next poll sees a new stamp and reads it again.
            last = now;
            let next = read(&path).await;
            report(&path, &next);
            tx.send_replace(next);
        }
    });
    rx
}

/// For a gateway without a configured list.
pub fn not_configured() -> watch::Receiver<Revocations> {
    watch::channel(Revocations::NotConfigured).1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unavailable(r: &Revocations) -> Option<String> {
        match r {
            Revocations::Unavailable(why) => Some(why.to_string()),
            _ => None,
        }
    }

    #[tokio::test]
    async fn missing_corrupt_and_good_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("revoked");
        // (name, contents or missing, expected error text or none)
        type Case<'a> = (&'a str, Option<&'a [u8]>, Option<&'a str>);
        let cases: Vec<Case> = vec![
            ("missing", None, Some("cannot read")),
            ("text list", Some(b"# nothing yet\nserial: 5\n"), None),
            ("empty", Some(b""), None),
            ("bad magic", Some(b"SSHKRL\n\x01junk"), Some("bad magic")),
            ("truncated KRL", Some(b"SSHKRL\n\0\0\0"), Some("truncated")),
            ("bad text", Some(b"serial: zero\n"), Some("line 1")),
        ];
        for (name, contents, want) in cases {
            match contents {
                Some(c) => std::fs::write(&path, c).unwrap(),
                None => {
                    let _ = std::fs::remove_file(&path);
                }
            }
            let got = unavailable(&read(&path).await);
            match (want, got) {
                (None, None) => {}
                (Some(w), Some(g)) => assert!(g.contains(w), "{name}: {g}"),
                (w, g) => panic!("{name}: want {w:?}, got {g:?}"),
            }
        }
        assert!(
            unavailable(&read(dir.path()).await).is_some(),
            "a directory"
        );
    }

    #[tokio::test]
    async fn a_change_is_published_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("revoked");
        std::fs::write(&path, "serial: 5\n").unwrap();
        let mut rx = watch(path.clone()).await;
        assert!(matches!(&*rx.borrow_and_update(), Revocations::List(_)));
        std::fs::write(&path, "serial: nonsense\n").unwrap();
        tokio::time::timeout(Duration::from_secs(5), rx.changed())
            .await
            .unwrap()
            .unwrap();
        assert!(unavailable(&rx.borrow_and_update()).is_some());
        // Replaced by rename, as editors and ConfigMap volumes do.
        let next = dir.path().join("revoked.new");
        std::fs::write(&next, "serial: 6\n").unwrap();
        std::fs::rename(&next, &path).unwrap();
        tokio::time::timeout(Duration::from_secs(5), rx.changed())
            .await
            .unwrap()
            .unwrap();
        match &*rx.borrow() {
            Revocations::List(list) => {
                assert!(list.summary().contains("1 serial,"), "{}", list.summary())
            }
            other => panic!("{other:?}"),
        };
    }
}
