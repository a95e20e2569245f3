//! `SESSION.json`: the metadata sidecar of a recording (who, what, where, when, how it
//! ended, and the SHA-256 of the `.cast`), and where both files live:
//! `RECORDINGS/YYYY-MM-DD/SESSION.{cast,json}`, the date being the UTC date of the start.
//!
//! Guarantees: `write` replaces the file atomically (a temporary file in the same directory,
//! mode 0600, fsync'd, renamed over the old one, then the directory fsync'd), so a reader or
//! a crash sees the old or the new metadata, never a mix. Session ids are generated here
//! (`new_session_id`, 32 hex digits), never taken from a user, so a path can be built from
//! them safely. Field names are stable snake_case; unknown fields are ignored and missing
//! ones take their defaults, so older and newer gateways can read each other's files.
//!
//! Not guaranteed: the sidecar is not protected against a writer of the directory (the
//! audit log's hash chain is the tamper evidence). A crash between creating the temporary
//! file and the rename can leave a `.SESSION.json.tmp-*` file behind; readers skip it.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// The current `version` of the metadata format.
pub const VERSION: u32 = 1;

/// `end_reason` values the gateway writes (the field is free text for what comes later).
pub mod end_reason {
    pub const EXITED: &str = "exited";
    pub const CLIENT_CLOSED: &str = "client closed";
    pub const ERROR: &str = "error";
    pub const EXPIRED: &str = "expired";
    pub const REVOKED: &str = "revoked";
    pub const IDLE: &str = "idle";
    pub const MAX_SESSION: &str = "max session";
    pub const GATEWAY_STOPPED: &str = "shutdown";
    pub const WRITE_FAILED: &str = "write failed";
    /// Set by `recover` for a session the gateway never ended.
    pub const INCOMPLETE: &str = "incomplete";
}

/// Byte counts per stream, as received (before UTF-8 decoding).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Bytes {
    pub stdout: u64,
    pub stderr: u64,
    pub stdin: u64,
}

/// The recording this metadata describes.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct CastInfo {
    /// File name relative to the directory of the `.json` (never a path).
    pub file: String,
    pub sha256: String,
    pub size: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Metadata {
    /// `VERSION` when written; 0 when the field is missing.
    pub version: u32,
    pub session: String,
    /// The certificate's key id.
    pub identity: String,
    pub principal: String,
    pub groups: Vec<String>,
    pub cert_serial: u64,
    pub ca_fingerprint: String,
    /// `ip:port` of the SSH client.
    pub client: String,
    /// The SSH connection this session (channel) belongs to.
    pub connection: String,
    pub cluster: String,
    pub incident: Option<String>,
    pub reason: Option<String>,
    /// `exec`, `shell`, `logs` or `port-forward`.
    pub action: String,
    pub namespace: String,
    pub pod: String,
    pub container: Option<String>,
    pub command: Option<String>,
    pub tty: bool,
    pub rule: String,
    pub record_input: bool,
    /// RFC 3339, UTC, microseconds (`rfc3339`).
    pub start: String,
    pub end: Option<String>,
    /// One of `end_reason::*`; `None` while the session runs.
    pub end_reason: Option<String>,
    pub exit_status: Option<u32>,
    pub bytes: Bytes,
    /// Set when the recording is finished (or recovered); `None` while it is written and for
    /// metadata-only sessions (port-forward).
    pub cast: Option<CastInfo>,
    /// True only when the gateway ended the session and finished the recording itself.
    pub complete: bool,
    /// Port-forward sessions: the pod port forwarded to.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<u16>,
    /// Port-forward sessions: TCP connections forwarded (`bytes.stdin` went to the pod,
    /// `bytes.stdout` came from it).
    #[serde(skip_serializing_if = "is_zero")]
    pub connections: u64,
    /// The approval the session ran under, when its rule asked for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalRecord>,
    /// Who watched the session live (`watch`), and from when.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub observers: Vec<Observer>,
}

/// Who approved a session, when, and whether through a standing approval (`--for`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalRecord {
    /// The approval request's id.
    pub request: String,
    pub approved_by: String,
    /// RFC 3339: when the request was approved (or the standing approval was used).
    pub approved_at: String,
    /// Set when the session ran under a standing approval, which lasts until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_until: Option<String>,
}

/// One observer of a live session.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observer {
    pub identity: String,
    /// RFC 3339: when they started watching.
    pub since: String,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("metadata {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("metadata {path}: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("metadata {path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

/// A new session id: a random UUID as 32 lower-case hex digits.
pub fn new_session_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Whether `s` has the shape of a session id podgate generates (32 lower-case hex digits).
pub fn is_session_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Whether `s` names a date directory (`YYYY-MM-DD`).
pub fn is_date_dir(s: &str) -> bool {
    s.len() == 10
        && s.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        })
}

/// RFC 3339 in UTC with microseconds. Times outside 1970..9999 are clamped (the formatter
/// cannot print them, and no real session has them).
pub fn rfc3339(t: SystemTime) -> String {
    // 9999-12-31T23:59:59.999999Z
    let max = UNIX_EPOCH + Duration::from_micros(253_402_300_799_999_999);
    let t = t.clamp(UNIX_EPOCH, max);
    humantime::format_rfc3339_micros(t).to_string()
}

/// Parse a time written by `rfc3339` (any RFC 3339 UTC time).
pub fn parse_time(s: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(s).ok()
}

/// The directory, `.cast` and `.json` of a session. `session` must be a generated id
/// (`is_session_id`): it becomes a file name as is.
pub fn paths(root: &Path, session: &str, start: SystemTime) -> (PathBuf, PathBuf, PathBuf) {
    let stamp = rfc3339(start);
    let date = stamp.get(..10).unwrap_or("1970-01-01");
    let dir = root.join(date);
    let cast = dir.join(format!("{session}.cast"));
    let json = dir.join(format!("{session}.json"));
    (dir, cast, json)
}

/// Create `dir` and its missing parents with mode 0700 (existing ones are left as they are).
pub fn create_dir(dir: &Path) -> Result<(), MetaError> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| MetaError::Io {
            path: dir.to_owned(),
            source,
        })
}

/// The date directories (`YYYY-MM-DD`) under `root`, sorted; other entries are ignored.
pub fn date_dirs(root: &Path) -> Result<Vec<(String, PathBuf)>, MetaError> {
    Ok(file_names(root)?
        .into_iter()
        .filter(|name| is_date_dir(name))
        .map(|name| {
            let path = root.join(&name);
            (name, path)
        })
        .filter(|(_, path)| path.is_dir())
        .collect())
}

/// The names in `dir`, sorted (UTF-8 ones only: podgate writes no others).
pub fn file_names(dir: &Path) -> Result<Vec<String>, MetaError> {
    let err = |source| MetaError::Io {
        path: dir.to_owned(),
        source,
    };
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(err)? {
        if let Ok(name) = entry.map_err(err)?.file_name().into_string() {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// Every `root/YYYY-MM-DD/SESSION.json` (SESSION a session id), sorted.
pub fn session_jsons(root: &Path) -> Result<Vec<PathBuf>, MetaError> {
    let mut out = Vec::new();
    for (_, dir) in date_dirs(root)? {
        for name in file_names(&dir)? {
            if name.strip_suffix(".json").is_some_and(is_session_id) {
                out.push(dir.join(name));
            }
        }
    }
    Ok(out)
}

/// Write `meta` to `path` atomically (see the module docs).
pub fn write(path: &Path, meta: &Metadata) -> Result<(), MetaError> {
    let mut bytes = serde_json::to_vec_pretty(meta).map_err(|source| MetaError::Json {
        path: path.to_owned(),
        source,
    })?;
    bytes.push(b'\n');
    write_atomic(path, &bytes)
}

/// Replace `path` with `bytes` atomically: a temporary file in the same directory (mode
/// 0600), fsync'd, renamed over `path`, then the directory fsync'd. A reader or a crash
/// sees the old or the new content, never a mix; a crash may leave a `.NAME.tmp-*` file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), MetaError> {
    let err = |p: &Path| {
        let p = p.to_owned();
        move |source| MetaError::Io { path: p, source }
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| MetaError::Invalid {
            path: path.to_owned(),
            reason: "not a file name".into(),
        })?;
    let tmp = dir.join(format!(".{name}.tmp-{}", new_session_id()));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(err(path)(e));
    }
    // The rename is durable only once the directory is.
    File::open(dir).and_then(|d| d.sync_all()).map_err(err(dir))
}

/// Read a sidecar. It must at least name its session and start.
pub fn read(path: &Path) -> Result<Metadata, MetaError> {
    let bytes = std::fs::read(path).map_err(|source| MetaError::Io {
        path: path.to_owned(),
        source,
    })?;
    let meta: Metadata = serde_json::from_slice(&bytes).map_err(|source| MetaError::Json {
        path: path.to_owned(),
        source,
    })?;
    let invalid = |reason: &str| MetaError::Invalid {
        path: path.to_owned(),
        reason: reason.into(),
    };
    if !is_session_id(&meta.session) {
        return Err(invalid("\"session\" is not a session id"));
    }
    if meta.start.is_empty() {
        return Err(invalid("\"start\" is missing"));
    }
    if let Some(cast) = &meta.cast
        && !is_plain_name(&cast.file)
    {
        return Err(invalid("\"cast.file\" is not a plain file name"));
    }
    Ok(meta)
}

/// A name that stays in its directory: no separator, not `.` or `..`, not empty.
fn is_plain_name(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && !s.contains('/') && !s.contains('\0')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Metadata {
        Metadata {
            version: VERSION,
            session: new_session_id(),
            identity: "alice@example".into(),
            principal: "alice".into(),
            groups: vec!["sre".into()],
            cert_serial: 7,
            ca_fingerprint: "SHA256:abc".into(),
            client: "127.0.0.1:5555".into(),
            connection: "c1".into(),
            cluster: "prod".into(),
            incident: Some("INC-1".into()),
            action: "exec".into(),
            namespace: "shop".into(),
            pod: "web-0".into(),
            tty: true,
            start: rfc3339(SystemTime::now()),
            ..Metadata::default()
        }
    }

    #[test]
    fn write_then_read_round_trips_with_private_modes() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let m = sample();
        let (d, cast, json) = paths(dir.path(), &m.session, SystemTime::now());
        create_dir(&d).unwrap();
        assert_eq!(
            std::fs::metadata(&d).unwrap().permissions().mode() & 0o777,
            0o700
        );
        write(&json, &m).unwrap();
        assert_eq!(read(&json).unwrap(), m);
        assert_eq!(
            std::fs::metadata(&json).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let mut m2 = m.clone();
        m2.complete = true;
        m2.end_reason = Some(end_reason::EXITED.into());
        write(&json, &m2).unwrap();
        assert_eq!(read(&json).unwrap(), m2);
        // No temporary file left behind.
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 1);
        assert_eq!(cast.parent(), Some(d.as_path()));
        assert!(
            cast.to_str()
                .unwrap()
                .ends_with(&format!("{}.cast", m.session))
        );
    }

    #[test]
    fn paths_use_the_utc_date_and_clamp_impossible_times() {
        let root = Path::new("/r");
        // 2026-11-22T23:59:59Z
        let t = UNIX_EPOCH + Duration::from_secs(1_795_391_999);
        let (d, c, j) = paths(root, "ab", t);
        assert_eq!(d, Path::new("/r/2026-11-22"));
        assert_eq!(c, Path::new("/r/2026-11-22/ab.cast"));
        assert_eq!(j, Path::new("/r/2026-11-22/ab.json"));
        let (d, _, _) = paths(root, "ab", t + Duration::from_secs(1));
        assert_eq!(d, Path::new("/r/2026-11-23"));
        let (d, _, _) = paths(root, "ab", UNIX_EPOCH - Duration::from_secs(5));
        assert_eq!(d, Path::new("/r/1970-01-01"));
        let far = UNIX_EPOCH + Duration::from_secs(400_000_000_000);
        assert_eq!(paths(root, "ab", far).0, Path::new("/r/9999-12-31"));
        assert!(is_date_dir("2026-11-22"));
        assert!(!is_date_dir("2026-11-2x") && !is_date_dir("audit.jsonl"));
    }

    #[test]
    fn readers_cope_with_missing_and_unknown_fields_but_not_bad_ids() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.json");
        let id = new_session_id();
        std::fs::write(
            &p,
            format!(r#"{{"session":"{id}","start":"2026-01-01T00:00:00Z","future":1}}"#),
        )
        .unwrap();
        let m = read(&p).unwrap();
        assert_eq!(m.session, id);
        assert_eq!(m.version, 0);
        assert!(!m.complete && m.cast.is_none());
        std::fs::write(&p, r#"{"session":"../../etc","start":"x"}"#).unwrap();
        assert!(matches!(read(&p), Err(MetaError::Invalid { .. })));
        let bad_cast = format!(
            r#"{{"session":"{id}","start":"x","cast":{{"file":"../a.cast","sha256":"","size":0}}}}"#
        );
        std::fs::write(&p, bad_cast).unwrap();
        assert!(matches!(read(&p), Err(MetaError::Invalid { .. })));
    }
}
