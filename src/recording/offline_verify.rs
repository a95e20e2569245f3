//! `verify`: the audit chains, every metadata file against its recording, and the two
//! against each other. A recordings directory has one chain (`audit.jsonl`); a bucket read
//! by `store::fetch` has one per gateway, each made of segments, and may hold sessions
//! whose transcript exists only as the live parts of a gateway that was lost.
//!
//! Guarantees: nothing is written. Every problem found is reported, each naming the file or
//! object (and for a chain the line, counted within its segment) that is wrong. The audit
//! events are checked against the metadata over the union of all chains, so a session
//! recorded by one gateway and named by another's chain is not a problem.
//!
//! Not guaranteed: a chain is read into memory whole (as `audit::verify_chain` wants it);
//! transcripts are streamed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::OfflineError;
use crate::recording::audit;
use crate::recording::cast;
use crate::recording::meta::{self, MetaError, Metadata};

/// Actions whose sessions have metadata (and, but for port-forward, a recording).
const RECORDED_ACTIONS: [&str; 4] = ["exec", "shell", "logs", "port-forward"];

/// What `verify` found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Audit lines whose chain checks out (up to the first break of each chain).
    pub audit_lines: usize,
    /// Metadata files read.
    pub sessions: usize,
    /// `DATE/SESSION` of sessions not ended yet (live, or a crash not recovered yet): their
    /// recording is still growing, so it has no hash to check.
    pub in_progress: Vec<String>,
    /// Of those, the ones whose transcript exists only as live parts (read from a store),
    /// with the bytes of transcript the parts hold.
    pub from_parts: BTreeMap<String, u64>,
    /// Sessions whose files are gone from this directory because the audit log says they
    /// were shipped to a recordings store (`recording.shipped`) and the spool was cleaned:
    /// verify them in the store (`--store`).
    pub shipped_away: usize,
    /// One line per problem, naming the file (and line) at fault. Empty when all is well.
    pub problems: Vec<String>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// One audit chain: a file holding all of it, and the names of its lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    pub path: PathBuf,
    /// What the chain is called when it is one piece (`audit.jsonl`), or when it has none.
    pub name: String,
    /// Where each piece it was assembled from starts in the file, with the piece's name
    /// (`audit/GATEWAY/OFFSET.jsonl`), in file order. Empty: the file is one piece.
    pub pieces: Vec<(u64, String)>,
}

impl Chain {
    /// A function naming line N (1-based) of the chain whose bytes are `text`: `NAME line
    /// N`, or `PIECE line M` with M counted within the piece.
    fn namer(&self, text: &[u8]) -> impl Fn(usize) -> String + '_ {
        let mut first_lines = Vec::with_capacity(self.pieces.len());
        let (mut at, mut lines) = (0usize, 0usize);
        for (start, name) in &self.pieces {
            let start = usize::try_from(*start).unwrap_or(usize::MAX).max(at);
            let between = text.get(at..start.min(text.len())).unwrap_or_default();
            lines += between.iter().filter(|b| **b == b'\n').count();
            at = start.min(text.len());
            first_lines.push((lines + 1, name.as_str()));
        }
        move |line| match first_lines.iter().rev().find(|(first, _)| *first <= line) {
            Some((first, name)) => format!("{name} line {}", line + 1 - first),
            None => format!("{} line {line}", self.name),
        }
    }
}

/// What `verify` reads besides the date directories.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// The audit chains. None: no cross-check of audit events and metadata.
    pub chains: Vec<Chain>,
    /// `DATE/SESSION` whose `.cast` was assembled from live parts (no whole recording),
    /// with its size.
    pub from_parts: BTreeMap<String, u64>,
    /// Problems found while gathering the sources; reported first.
    pub problems: Vec<String>,
}

/// Where the recording of a session is.
#[derive(Clone, Copy)]
enum Recording {
    Missing,
    Whole,
    /// Assembled from live parts, this many bytes.
    Parts(u64),
}

/// What the audit chains say about one session: where, and what.
#[derive(Default)]
struct Audited {
    started: Option<(String, String)>,
    ended_sha: Option<(String, String)>,
    /// The store a `recording.shipped` event names.
    shipped_to: Option<String>,
}

/// Check the directory's audit chain (`ROOT/audit.jsonl`), every metadata file against its
/// recording, and the two against each other. See `VerifyReport`; the `Err` cases are only
/// an unreadable directory.
pub fn verify(root: &Path) -> Result<VerifyReport, OfflineError> {
    let chain = Chain {
        path: root.join("audit.jsonl"),
        name: "audit.jsonl".to_owned(),
        pieces: Vec::new(),
    };
    verify_from(
        root,
        &Sources {
            chains: vec![chain],
            ..Sources::default()
        },
    )
}

/// `verify` with the audit chains and the origin of recordings given by the caller.
pub fn verify_from(root: &Path, sources: &Sources) -> Result<VerifyReport, OfflineError> {
    let mut report = VerifyReport {
        problems: sources.problems.clone(),
        ..VerifyReport::default()
    };
    let mut audited = BTreeMap::new();
    let mut readable = !sources.chains.is_empty();
    for chain in &sources.chains {
        readable &= verify_audit(chain, &mut report, &mut audited)?;
    }
    // A chain that cannot be read as a whole: no cross-checks (its problem is reported).
    let audited = readable.then_some(audited);
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
            let recording = match (
                casts.remove(id),
                sources.from_parts.get(&format!("{date}/{id}")),
            ) {
                (false, _) => Recording::Missing,
                (true, None) => Recording::Whole,
                (true, Some(size)) => Recording::Parts(*size),
            };
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
            check_session(&date, &dir, id, &m, recording, audit_entry, &mut report)?;
        }
        for id in casts {
            let what = if sources.from_parts.contains_key(&format!("{date}/{id}")) {
                ".cast.parts/"
            } else {
                ".cast"
            };
            report.problems.push(format!(
                "{date}/{id}{what}: no metadata ({id}.json is missing)"
            ));
        }
    }
    if let Some(audited) = &audited {
        for (id, a) in audited {
            if let Some((place, action)) = &a.started
                && RECORDED_ACTIONS.contains(&action.as_str())
                && !with_metadata.contains(id)
            {
                if a.shipped_to.is_some() {
                    report.shipped_away += 1;
                    continue;
                }
                report.problems.push(format!(
                    "{place}: session {id} ({action}) has no metadata file"
                ));
            }
        }
    }
    Ok(report)
}

/// The reason of a metadata error without its (already known) path.
pub(crate) fn cause(e: &MetaError) -> String {
    match e {
        MetaError::Io { source, .. } => source.to_string(),
        MetaError::Json { source, .. } => format!("not valid metadata: {source}"),
        MetaError::Invalid { reason, .. } => reason.clone(),
    }
}

/// Check one chain and add what it says per session to `audited`. False when the chain
/// is missing or unreadable as a whole (reported).
fn verify_audit(
    chain: &Chain,
    report: &mut VerifyReport,
    audited: &mut BTreeMap<String, Audited>,
) -> Result<bool, OfflineError> {
    let bytes = match std::fs::read(&chain.path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            report.problems.push(format!("{}: missing", chain.name));
            return Ok(false);
        }
        Err(source) => {
            return Err(OfflineError::Io {
                path: chain.path.clone(),
                source,
            });
        }
    };
    let place = chain.namer(&bytes);
    let text = match std::str::from_utf8(&bytes) {
        Ok(t) => t,
        Err(e) => {
            let upto = bytes.get(..e.valid_up_to()).unwrap_or_default();
            let line = upto.iter().filter(|b| **b == b'\n').count() + 1;
            report.problems.push(format!("{}: not UTF-8", place(line)));
            report.audit_lines += line - 1;
            return Ok(false);
        }
    };
    match audit::verify_chain(text) {
        Ok(n) => report.audit_lines += n,
        Err((line, reason)) => {
            report.audit_lines += line.saturating_sub(1);
            report.problems.push(format!("{}: {reason}", place(line)));
        }
    }
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
                entry.started = Some((place(i + 1), field("action").unwrap_or_default()));
            }
            Some("session.ended") => {
                if let Some(sha) = field("cast_sha256") {
                    entry.ended_sha = Some((place(i + 1), sha));
                }
            }
            Some("recording.shipped") => entry.shipped_to = field("store"),
            _ => {}
        }
    }
    Ok(true)
}

fn check_session(
    date: &str,
    dir: &Path,
    id: &str,
    m: &Metadata,
    recording: Recording,
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
    let cast = format!("{date}/{id}.cast");
    let Some(info) = &m.cast else {
        if in_progress {
            report.in_progress.push(format!("{date}/{id}"));
            if let Recording::Parts(size) = recording {
                report.from_parts.insert(format!("{date}/{id}"), size);
            }
        } else if !matches!(recording, Recording::Missing) {
            problems.push(format!("{cast}: not described by its metadata (no sha256)"));
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
    match recording {
        Recording::Missing => {
            problems.push(format!("{json}: its recording {id}.cast is missing"));
            return Ok(());
        }
        Recording::Parts(size) => {
            problems.push(format!(
                "{cast}: missing, though its metadata says the session ended \
                 (only {size} bytes of live parts are there)"
            ));
            return Ok(());
        }
        Recording::Whole => {}
    }
    let path = dir.join(&info.file);
    let (sha, size) = cast::sha256_file(&path).map_err(|source| OfflineError::Io {
        path: path.clone(),
        source,
    })?;
    if size != info.size {
        problems.push(format!(
            "{cast}: size {size} differs from its metadata ({})",
            info.size
        ));
    }
    if sha != info.sha256 {
        problems.push(format!("{cast}: sha256 differs from its metadata"));
    }
    if let Some((place, audited_sha)) = audited.flatten().and_then(|a| a.ended_sha.as_ref())
        && *audited_sha != info.sha256
    {
        problems.push(format!(
            "{json}: sha256 differs from the session.ended audit event ({place})"
        ));
    }
    Ok(())
}
