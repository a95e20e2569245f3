//! Offline review of a recordings directory (the live one or a copy; no server needed):
//! `list` and `table` the sessions, `verify` the audit chain and every recording against
//! its metadata, `find` a session by id prefix, `cat` its output, `play` it with timing.
//!
//! Guarantees: nothing here writes to the directory. Only names podgate writes are looked
//! at (`YYYY-MM-DD/` directories, 32-hex session ids), and a metadata file cannot point
//! outside its directory. `verify` reports every problem it finds, each naming the file
//! (and for the audit log the line) that is wrong, instead of stopping at the first.
//!
//! Not guaranteed: `cat` and `play` reproduce the output as recorded, escape sequences
//! included (OSC 52 clipboard writes, title changes): replay hostile sessions into a
//! terminal that ignores them, or pipe them into a file. `verify` is tamper evidence only as
//! far as the audit chain reaches: whoever can rewrite the audit log, the metadata and the
//! recording together can forge a consistent set.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWrite, AsyncWriteExt};

use super::audit;
use super::cast;
use super::meta::{self, MetaError, Metadata};

/// Which sessions `list` returns; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Exact certificate key id.
    pub identity: Option<String>,
    /// `NAMESPACE` or `NAMESPACE/POD`.
    pub target: Option<String>,
    pub action: Option<String>,
    /// Sessions that started at or after this time.
    pub since: Option<SystemTime>,
    pub incident: Option<String>,
    pub end_reason: Option<String>,
}

/// What `verify` found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Audit lines whose chain checks out (up to the first break).
    pub audit_lines: usize,
    /// Metadata files read.
    pub sessions: usize,
    /// `DATE/SESSION` of sessions not ended yet (live, or a crash not recovered yet): their
    /// recording is still growing, so it has no hash to check.
    pub in_progress: Vec<String>,
    /// One line per problem, naming the file (and line) at fault. Empty when all is well.
    pub problems: Vec<String>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error("{path} line {line}: {reason}")]
    Format {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("no session starts with {0:?}")]
    NotFound(String),
    #[error("{prefix:?} matches several sessions: {}", matches.join(", "))]
    Ambiguous {
        prefix: String,
        matches: Vec<String>,
    },
    #[error("session {0} has no recording (metadata only)")]
    NoRecording(String),
    #[error("speed must be a positive number, not {0}")]
    BadSpeed(f64),
}

/// Actions whose sessions have metadata (and, but for port-forward, a recording).
const RECORDED_ACTIONS: [&str; 4] = ["exec", "shell", "logs", "port-forward"];

/// The sessions under `root` that match `filter`, oldest first. Unreadable metadata is
/// skipped (and logged); `verify` reports it.
pub fn list(root: &Path, filter: &Filter) -> Result<Vec<Metadata>, OfflineError> {
    let mut out = Vec::new();
    for json in meta::session_jsons(root)? {
        match meta::read(&json) {
            Ok(m) if matches(&m, filter) => out.push(m),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "metadata skipped"),
        }
    }
    out.sort_by_cached_key(|m| {
        (
            meta::parse_time(&m.start),
            m.start.clone(),
            m.session.clone(),
        )
    });
    Ok(out)
}

fn matches(m: &Metadata, f: &Filter) -> bool {
    let eq = |want: &Option<String>, have: Option<&str>| match want {
        Some(w) => have == Some(w.as_str()),
        None => true,
    };
    let target = match f.target.as_deref().map(|t| t.split_once('/')) {
        None => true,
        Some(Some((ns, pod))) => m.namespace == ns && m.pod == pod,
        Some(None) => f.target.as_deref() == Some(m.namespace.as_str()),
    };
    let since = match f.since {
        None => true,
        Some(since) => meta::parse_time(&m.start).is_some_and(|start| start >= since),
    };
    target
        && since
        && eq(&f.identity, Some(&m.identity))
        && eq(&f.action, Some(&m.action))
        && eq(&f.incident, m.incident.as_deref())
        && eq(&f.end_reason, m.end_reason.as_deref())
}

/// An aligned table: SESSION (first 12 digits) START IDENTITY ACTION TARGET DURATION END
/// EXIT. Text from users (identity, names) is cleaned of control and bidi characters so
/// that it cannot drive the terminal or disguise a row.
pub fn table(items: &[Metadata]) -> String {
    let head = [
        "SESSION", "START", "IDENTITY", "ACTION", "TARGET", "DURATION", "END", "EXIT",
    ];
    let mut rows = vec![head.map(str::to_owned)];
    for m in items {
        let start = meta::parse_time(&m.start);
        let end = m.end.as_deref().and_then(meta::parse_time);
        let duration = match (start, end) {
            (Some(s), Some(e)) => short_duration(e.duration_since(s).unwrap_or_default()),
            _ => "-".to_owned(),
        };
        let container = m.container.as_deref().map(|c| format!(":{c}"));
        rows.push(
            [
                m.session.chars().take(12).collect(),
                start.map_or_else(
                    || m.start.clone(),
                    |s| humantime::format_rfc3339_seconds(s).to_string(),
                ),
                m.identity.clone(),
                m.action.clone(),
                format!("{}/{}{}", m.namespace, m.pod, container.unwrap_or_default()),
                duration,
                m.end_reason.clone().unwrap_or_else(|| "-".to_owned()),
                m.exit_status
                    .map_or_else(|| "-".to_owned(), |s| s.to_string()),
            ]
            .map(|c| clean(&c)),
        );
    }
    let mut widths = [0usize; 8];
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in &rows {
        let mut line = String::new();
        for (i, (c, w)) in r.iter().zip(widths).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(c);
            line.extend(std::iter::repeat_n(
                ' ',
                w.saturating_sub(c.chars().count()),
            ));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `1h02m03s`, `2m03s`, `5s`: no spaces, so columns stay columns.
fn short_duration(d: Duration) -> String {
    let s = d.as_secs();
    let (h, m, s) = (s / 3600, s / 60 % 60, s % 60);
    if h > 0 {
        format!("{h}h{m:02}m{s:02}s")
    } else if m > 0 {
        format!("{m}m{s:02}s")
    } else {
        format!("{s}s")
    }
}

/// Control characters, bidi overrides and invisible ones shown as U+FFFD; spaces as `_`.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            ' ' => '_',
            '\u{061c}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' => '\u{fffd}',
            '\u{2066}'..='\u{2069}' | '\u{feff}' => '\u{fffd}',
            c if c.is_control() || c.is_whitespace() => '\u{fffd}',
            c => c,
        })
        .collect()
}

/// What the audit log says about one session.
#[derive(Default)]
struct Audited {
    started: Option<(usize, String)>,
    ended_sha: Option<(usize, String)>,
}

/// Check the audit chain, every metadata file against its recording, and the two against
/// each other. See `VerifyReport`; the `Err` cases are only an unreadable directory.
pub fn verify(root: &Path) -> Result<VerifyReport, OfflineError> {
    let mut report = VerifyReport::default();
    let audited = verify_audit(root, &mut report)?;
    let mut with_metadata = BTreeSet::new();
    for (date, dir) in meta::date_dirs(root)? {
        let names = meta::file_names(&dir)?;
        let mut casts: BTreeSet<&str> = names
            .iter()
            .filter_map(|n| n.strip_suffix(".cast"))
            .filter(|s| meta::is_session_id(s))
            .collect();
        for id in names.iter().filter_map(|n| n.strip_suffix(".json")) {
            if !meta::is_session_id(id) {
                continue;
            }
            let has_cast = casts.remove(id);
            let m = match meta::read(&dir.join(format!("{id}.json"))) {
                Ok(m) => m,
                Err(e) => {
                    report
                        .problems
                        .push(format!("{date}/{id}.json: {}", cause(&e)));
                    continue;
                }
            };
            report.sessions += 1;
            with_metadata.insert(id.to_owned());
            let audit_entry = audited.as_ref().map(|a| a.get(id));
            check_session(&date, &dir, id, &m, has_cast, audit_entry, &mut report)?;
        }
        for id in casts {
            report.problems.push(format!(
                "{date}/{id}.cast: no metadata ({id}.json is missing)"
            ));
        }
    }
    if let Some(audited) = &audited {
        for (id, a) in audited {
            if let Some((line, action)) = &a.started
                && RECORDED_ACTIONS.contains(&action.as_str())
                && !with_metadata.contains(id)
            {
                report.problems.push(format!(
                    "audit.jsonl line {line}: session {id} ({action}) has no metadata file"
                ));
            }
        }
    }
    Ok(report)
}

/// The reason of a metadata error without its (already known) path.
fn cause(e: &MetaError) -> String {
    match e {
        MetaError::Io { source, .. } => source.to_string(),
        MetaError::Json { source, .. } => format!("not valid metadata: {source}"),
        MetaError::Invalid { reason, .. } => reason.clone(),
    }
}

/// Check the chain and collect what it says per session; `None` when there is no log.
fn verify_audit(
    root: &Path,
    report: &mut VerifyReport,
) -> Result<Option<BTreeMap<String, Audited>>, OfflineError> {
    let path = root.join("audit.jsonl");
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            report.problems.push("audit.jsonl: missing".to_owned());
            return Ok(None);
        }
        Err(source) => return Err(OfflineError::Io { path, source }),
    };
    let text = match std::str::from_utf8(&bytes) {
        Ok(t) => t,
        Err(e) => {
            let upto = bytes.get(..e.valid_up_to()).unwrap_or_default();
            let line = upto.iter().filter(|b| **b == b'\n').count() + 1;
            report
                .problems
                .push(format!("audit.jsonl line {line}: not UTF-8"));
            report.audit_lines = line - 1;
            // Unreadable as a whole: no cross-checks against it (the problem is reported).
            return Ok(None);
        }
    };
    match audit::verify_chain(text) {
        Ok(n) => report.audit_lines = n,
        Err((line, reason)) => {
            report.audit_lines = line.saturating_sub(1);
            report
                .problems
                .push(format!("audit.jsonl line {line}: {reason}"));
        }
    }
    let mut audited: BTreeMap<String, Audited> = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let field = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        let Some(session) = field("session") else {
            continue;
        };
        let entry = audited.entry(session).or_default();
        match v.get("event").and_then(Value::as_str) {
            Some("session.started") => {
                entry.started = Some((i + 1, field("action").unwrap_or_default()));
            }
            Some("session.ended") => {
                if let Some(sha) = field("cast_sha256") {
                    entry.ended_sha = Some((i + 1, sha));
                }
            }
            _ => {}
        }
    }
    Ok(Some(audited))
}

fn check_session(
    date: &str,
    dir: &Path,
    id: &str,
    m: &Metadata,
    has_cast: bool,
    audited: Option<Option<&Audited>>,
    report: &mut VerifyReport,
) -> Result<(), OfflineError> {
    let problems = &mut report.problems;
    let json = format!("{date}/{id}.json");
    if m.session != id {
        problems.push(format!("{json}: describes session {}", m.session));
    }
    match meta::parse_time(&m.start) {
        Some(t) if meta::paths(Path::new(""), id, t).0 != Path::new(date) => {
            problems.push(format!(
                "{json}: starts {} but is filed under {date}",
                m.start
            ));
        }
        Some(_) => {}
        None => problems.push(format!("{json}: start {:?} is not a time", m.start)),
    }
    // `None`: no audit log at all (reported once); `Some(None)`: the log never names it.
    if let Some(entry) = audited
        && entry.and_then(|a| a.started.as_ref()).is_none()
    {
        problems.push(format!(
            "{json}: no session.started audit event names this session"
        ));
    }
    let in_progress = !m.complete && m.end_reason.is_none();
    let Some(info) = &m.cast else {
        if in_progress {
            report.in_progress.push(format!("{date}/{id}"));
        } else if has_cast {
            problems.push(format!(
                "{date}/{id}.cast: not described by its metadata (no sha256)"
            ));
        }
        return Ok(());
    };
    if info.file != format!("{id}.cast") {
        problems.push(format!(
            "{json}: names recording {:?}, not {id}.cast",
            info.file
        ));
        return Ok(());
    }
    if !has_cast {
        problems.push(format!("{json}: its recording {id}.cast is missing"));
        return Ok(());
    }
    let path = dir.join(&info.file);
    let (sha, size) = cast::sha256_file(&path).map_err(|source| OfflineError::Io {
        path: path.clone(),
        source,
    })?;
    let cast = format!("{date}/{id}.cast");
    if size != info.size {
        problems.push(format!(
            "{cast}: size {size} differs from its metadata ({})",
            info.size
        ));
    }
    if sha != info.sha256 {
        problems.push(format!("{cast}: sha256 differs from its metadata"));
    }
    if let Some((line, audited_sha)) = audited.flatten().and_then(|a| a.ended_sha.as_ref())
        && *audited_sha != info.sha256
    {
        problems.push(format!(
            "{json}: sha256 differs from the session.ended audit event (audit.jsonl line {line})"
        ));
    }
    Ok(())
}

/// The session whose id starts with `session_prefix` (case-insensitive), and its recording.
pub fn find(root: &Path, session_prefix: &str) -> Result<(Metadata, PathBuf), OfflineError> {
    let prefix = session_prefix.to_ascii_lowercase();
    if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(OfflineError::NotFound(session_prefix.to_owned()));
    }
    let found: Vec<PathBuf> = meta::session_jsons(root)?
        .into_iter()
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix))
        })
        .collect();
    let json = match found.as_slice() {
        [] => return Err(OfflineError::NotFound(session_prefix.to_owned())),
        [one] => one,
        many => {
            return Err(OfflineError::Ambiguous {
                prefix: session_prefix.to_owned(),
                matches: many
                    .iter()
                    .filter_map(|p| p.file_stem().and_then(|s| s.to_str()))
                    .map(str::to_owned)
                    .collect(),
            });
        }
    };
    let m = meta::read(json)?;
    let name = m
        .cast
        .as_ref()
        .map_or_else(|| format!("{}.cast", m.session), |c| c.file.clone());
    let cast = json.with_file_name(name);
    if !cast.is_file() {
        return Err(OfflineError::NoRecording(m.session));
    }
    Ok((m, cast))
}

/// One line of a `.cast`.
enum Step {
    Header {
        idle_time_limit: Option<f64>,
    },
    Event {
        time: f64,
        code: String,
        data: String,
    },
    /// A last line without its newline (a crash that was not recovered): the end.
    Torn,
}

fn parse_line(path: &Path, lineno: usize, line: &[u8]) -> Result<Step, OfflineError> {
    let bad = |reason: String| OfflineError::Format {
        path: path.to_owned(),
        line: lineno,
        reason,
    };
    let Some(body) = line.strip_suffix(b"\n") else {
        return Ok(Step::Torn);
    };
    let v: Value = serde_json::from_slice(body).map_err(|e| bad(format!("not JSON: {e}")))?;
    if lineno == 1 {
        if v.get("version").and_then(Value::as_u64) != Some(2) {
            return Err(bad("not an asciicast v2 header".into()));
        }
        let idle_time_limit = v.get("idle_time_limit").and_then(Value::as_f64);
        return Ok(Step::Header { idle_time_limit });
    }
    let (Some(time), Some(code)) = (
        v.get(0).and_then(Value::as_f64),
        v.get(1).and_then(Value::as_str),
    ) else {
        return Err(bad("not a [time, code, data] event".into()));
    };
    let data = match v.get(2) {
        Some(Value::String(s)) => s.clone(),
        _ if code != "o" => String::new(),
        _ => return Err(bad("output data is not a string".into())),
    };
    Ok(Step::Event {
        time,
        code: code.to_owned(),
        data,
    })
}

/// Write the output (`"o"`) stream of a recording, as `asciinema cat` does. A torn last
/// line (unrecovered crash) ends the output; any other bad line is an error.
pub fn cat(cast: &Path, out: &mut impl Write) -> Result<(), OfflineError> {
    let io = |source| OfflineError::Io {
        path: cast.to_owned(),
        source,
    };
    let mut reader = BufReader::new(File::open(cast).map_err(io)?);
    let mut line = Vec::new();
    let mut lineno = 0;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).map_err(io)? == 0 {
            break;
        }
        lineno += 1;
        match parse_line(cast, lineno, &line)? {
            Step::Event { code, data, .. } if code == "o" => {
                out.write_all(data.as_bytes()).map_err(io)?;
            }
            Step::Torn => break,
            _ => {}
        }
    }
    out.flush().map_err(io)
}

/// Replay the output stream with its timing: gaps are capped at `idle_limit` (or the
/// header's `idle_time_limit`), then divided by `speed`. Writes the same bytes as `cat`.
pub async fn play(
    cast: &Path,
    speed: f64,
    idle_limit: Option<Duration>,
    mut out: impl AsyncWrite + Unpin,
) -> Result<(), OfflineError> {
    if !(speed.is_finite() && speed > 0.0) {
        return Err(OfflineError::BadSpeed(speed));
    }
    let io = |source| OfflineError::Io {
        path: cast.to_owned(),
        source,
    };
    let file = tokio::fs::File::open(cast).await.map_err(io)?;
    let mut reader = tokio::io::BufReader::new(file);
    let mut limit = idle_limit.map(|d| d.as_secs_f64());
    let mut line = Vec::new();
    let mut lineno = 0;
    let mut prev = 0.0f64;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).await.map_err(io)? == 0 {
            break;
        }
        lineno += 1;
        match parse_line(cast, lineno, &line)? {
            Step::Header { idle_time_limit } => limit = limit.or(idle_time_limit),
            Step::Event { time, code, data } if code == "o" => {
                let mut gap = (time - prev).max(0.0);
                if let Some(l) = limit {
                    gap = gap.min(l);
                }
                prev = time;
                // Negative, NaN or absurd times are not worth waiting for.
                let wait = Duration::try_from_secs_f64(gap / speed).unwrap_or_default();
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
                out.write_all(data.as_bytes()).await.map_err(io)?;
                out.flush().await.map_err(io)?;
            }
            Step::Torn => break,
            Step::Event { .. } => {}
        }
    }
    out.flush().await.map_err(io)
}

#[cfg(test)]
#[path = "offline_tests.rs"]
mod tests;
