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
//!
//! `verify` lives in `offline_verify.rs`; `store::fetch` materializes a bucket into a
//! directory these functions read.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWrite, AsyncWriteExt};

use super::meta::{self, MetaError, Metadata};

#[path = "offline_verify.rs"]
mod verify;
pub(crate) use verify::cause;
pub use verify::{Chain, Sources, VerifyReport, verify, verify_from};

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

/// `--since` (and the review page's `since`): a duration back from `now` (`2h`) or an
/// RFC 3339 time.
pub fn parse_since(text: &str, now: SystemTime) -> Result<SystemTime, String> {
    match humantime::parse_duration(text) {
        Ok(d) => now
            .checked_sub(d)
            .ok_or_else(|| format!("since {text:?} is too far back")),
        Err(_) => humantime::parse_rfc3339_weak(text)
            .map_err(|_| format!("since {text:?}: a duration (2h) or an RFC 3339 time")),
    }
}

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

/// A session id prefix as `find` matches it (lower case), if it can match anything.
pub fn session_prefix_of(text: &str) -> Option<String> {
    let prefix = text.to_ascii_lowercase();
    (!prefix.is_empty() && prefix.bytes().all(|b| b.is_ascii_hexdigit())).then_some(prefix)
}

/// The session whose id starts with `session_prefix` (case-insensitive), and its recording.
pub fn find(root: &Path, session_prefix: &str) -> Result<(Metadata, PathBuf), OfflineError> {
    let Some(prefix) = session_prefix_of(session_prefix) else {
        return Err(OfflineError::NotFound(session_prefix.to_owned()));
    };
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
pub(crate) mod tests;
