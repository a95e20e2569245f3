//! Reading a bucket as a recordings directory, for `podgate recordings list|verify` and
//! `podgate replay` with `--store`: what is asked for is downloaded into a private
//! temporary directory in the spool layout, and the offline functions read it there.
//!
//! - `list`: only the `DATE/SESSION.json` objects (each at most `MAX_JSON` bytes);
//! - `session` (replay): the metadata matching the id prefix, then that one session's
//!   `.cast`, or when there is none, its live parts concatenated in offset order;
//! - `verify`: everything: metadata, recordings (parts assembled where there is no whole
//!   `.cast`), and the audit segments of each gateway concatenated into that gateway's
//!   chain.
//!
//! Guarantees: downloads are streamed into files (only metadata is held in memory, bounded);
//! pieces (parts, audit segments) must follow each other exactly: each starts where the
//! one before ended, the first at 0. For `session` a gap or overlap is an error, for
//! `verify` a problem, naming the keys. The temporary directory is mode 0700, has a random
//! name, and is removed when the result is dropped. Objects podgate does not write are
//! ignored. Messages name keys and the store's URL, not the temporary directory (but for
//! errors of local I/O).
//!
//! Not guaranteed: a consistent snapshot. The bucket is read while gateways write to it,
//! so a session that ends meanwhile may be seen half old, half new; verify again.

use std::collections::BTreeMap;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use super::keys::{self, Key};
use super::{Store, StoreError};
use crate::recording::meta::{self, Metadata};
use crate::recording::offline::{self, Chain, Filter, OfflineError, Sources, VerifyReport};

/// Largest metadata object read.
pub const MAX_JSON: u64 = 1 << 20;
/// Objects downloaded at once.
const PARALLEL: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{url}: {error}")]
    Store { url: String, error: StoreError },
    /// The live parts of the session to replay do not join up.
    #[error("{url}: the recording's parts do not join up: {}", problems.join("; "))]
    Gap { url: String, problems: Vec<String> },
    #[error("{url}: {error}")]
    Offline { url: String, error: OfflineError },
    #[error("{path}: {error}")]
    Local {
        path: PathBuf,
        error: std::io::Error,
    },
}

/// A private temporary directory, removed on drop.
struct Scratch {
    path: PathBuf,
}

impl Scratch {
    fn new() -> Result<Scratch, FetchError> {
        let path = std::env::temp_dir().join(format!("podgate-store-{}", meta::new_session_id()));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(|error| FetchError::Local {
                path: path.clone(),
                error,
            })?;
        Ok(Scratch { path })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// One object of a sequence that is read as one file (a live part, an audit segment).
#[derive(Debug, Clone)]
struct Piece {
    key: String,
    offset: u64,
    size: u64,
}

/// The podgate objects in the bucket, by kind.
#[derive(Default)]
struct Index {
    /// `(date, session)` → key and size.
    jsons: BTreeMap<(String, String), (String, u64)>,
    casts: BTreeMap<(String, String), String>,
    parts: BTreeMap<(String, String), Vec<Piece>>,
    audit: BTreeMap<String, Vec<Piece>>,
}

/// A bucket read for one purpose: the directory and the store it came from.
struct Reader<'a> {
    store: &'a Store,
    dir: Scratch,
}

impl<'a> Reader<'a> {
    fn new(store: &'a Store) -> Result<Reader<'a>, FetchError> {
        Ok(Reader {
            store,
            dir: Scratch::new()?,
        })
    }

    fn root(&self) -> &Path {
        &self.dir.path
    }

    fn store_err(&self, error: StoreError) -> FetchError {
        FetchError::Store {
            url: self.store.url().to_owned(),
            error,
        }
    }

    /// The offline error with paths in the directory named by their keys in the store.
    fn relabel(&self, e: OfflineError) -> FetchError {
        FetchError::Offline {
            url: self.store.url().to_owned(),
            error: relabel(self.root(), self.store.url(), e),
        }
    }

    async fn index(&self) -> Result<Index, FetchError> {
        let mut index = Index::default();
        let listed = self.store.list("").await.map_err(|e| self.store_err(e))?;
        for (key, size) in listed {
            let piece = |offset| Piece {
                key: key.clone(),
                offset,
                size,
            };
            match keys::parse(&key) {
                Key::Json { date, session } => {
                    index.jsons.insert((date, session), (key, size));
                }
                Key::Cast { date, session } => {
                    index.casts.insert((date, session), key);
                }
                Key::Part {
                    date,
                    session,
                    offset,
                } => {
                    let p = piece(offset);
                    index.parts.entry((date, session)).or_default().push(p);
                }
                Key::Audit { gateway, offset } => {
                    let p = piece(offset);
                    index.audit.entry(gateway).or_default().push(p);
                }
                Key::Other => {}
            }
        }
        for pieces in index.parts.values_mut().chain(index.audit.values_mut()) {
            pieces.sort_by_key(|p| p.offset);
        }
        Ok(index)
    }

    /// The local path of a key.
    fn local(&self, key: &str) -> PathBuf {
        self.root().join(key)
    }

    fn mkdir(&self, date: &str) -> Result<(), FetchError> {
        let dir = self.root().join(date);
        meta::create_dir(&dir).map_err(|e| match e {
            meta::MetaError::Io { path, source } => FetchError::Local {
                path,
                error: source,
            },
            other => FetchError::Local {
                path: dir,
                error: std::io::Error::other(other.to_string()),
            },
        })
    }

    /// Download metadata objects (each at most `MAX_JSON`); returns the keys refused as
    /// too large, other failures are errors.
    async fn jsons<'k>(
        &self,
        jsons: impl Iterator<Item = (&'k (String, String), &'k (String, u64))>,
    ) -> Result<Vec<String>, FetchError> {
        let mut todo = Vec::new();
        let mut too_large = Vec::new();
        for ((date, _), (key, size)) in jsons {
            self.mkdir(date)?;
            if *size > MAX_JSON {
                too_large.push(key.clone());
            } else {
                todo.push(key.clone());
            }
        }
        let results: Vec<Result<Option<String>, FetchError>> = futures::stream::iter(todo)
            .map(|key| async move {
                let bytes = match self.store.get_bytes(&key, MAX_JSON).await {
                    Ok(b) => b,
                    Err(StoreError::TooLarge { .. }) => return Ok(Some(key)),
                    Err(e) => return Err(self.store_err(e)),
                };
                write_private(&self.local(&key), &bytes).await?;
                Ok(None)
            })
            .buffer_unordered(PARALLEL)
            .collect()
            .await;
        for r in results {
            too_large.extend(r?);
        }
        too_large.sort();
        Ok(too_large)
    }

    /// Download whole objects to their places.
    async fn whole<'k>(&self, keys: impl Iterator<Item = &'k String>) -> Result<(), FetchError> {
        let results: Vec<Result<(), FetchError>> = futures::stream::iter(keys)
            .map(|key| async move {
                self.store
                    .get_to_file(key, &self.local(key))
                    .await
                    .map(drop)
                    .map_err(|e| self.store_err(e))
            })
            .buffer_unordered(PARALLEL)
            .collect()
            .await;
        results.into_iter().collect()
    }

    /// Download `pieces` in order into one file at `dest`. Sizes are updated to what was
    /// read; returns where each piece starts in `dest`.
    async fn assemble(&self, pieces: &mut [Piece], dest: &Path) -> Result<Vec<u64>, FetchError> {
        let local = |path: &Path| {
            let path = path.to_owned();
            move |error| FetchError::Local { path, error }
        };
        if let Some(dir) = dest.parent() {
            tokio::fs::create_dir_all(dir).await.map_err(local(dir))?;
        }
        let mut out = create_private(dest).await?;
        let mut starts = Vec::with_capacity(pieces.len());
        let mut at = 0u64;
        for piece in pieces.iter_mut() {
            let got = self
                .store
                .append_to(&piece.key, &mut out)
                .await
                .map_err(|e| self.store_err(e))?;
            piece.size = got.size;
            starts.push(at);
            at += got.size;
        }
        out.flush().await.map_err(local(dest))?;
        Ok(starts)
    }
}

/// `URL/KEY` for a path under `root` (the layout mirrors the keys), else the path.
fn object_name(root: &Path, url: &str, path: &Path) -> PathBuf {
    match path.strip_prefix(root) {
        Ok(rel) => PathBuf::from(format!("{url}/{}", rel.display())),
        Err(_) => path.to_owned(),
    }
}

/// An offline error about a file under `root` naming the object instead; errors of local
/// I/O keep their path.
fn relabel(root: &Path, url: &str, e: OfflineError) -> OfflineError {
    let name = |path: &Path| object_name(root, url, path);
    match e {
        OfflineError::Format { path, line, reason } => OfflineError::Format {
            path: name(&path),
            line,
            reason,
        },
        OfflineError::Meta(meta::MetaError::Json { path, source }) => {
            OfflineError::Meta(meta::MetaError::Json {
                path: name(&path),
                source,
            })
        }
        OfflineError::Meta(meta::MetaError::Invalid { path, reason }) => {
            OfflineError::Meta(meta::MetaError::Invalid {
                path: name(&path),
                reason,
            })
        }
        other => other,
    }
}

/// Create (or truncate) a file only its owner can read.
async fn create_private(path: &Path) -> Result<tokio::fs::File, FetchError> {
    tokio::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .await
        .map_err(|error| FetchError::Local {
            path: path.to_owned(),
            error,
        })
}

async fn write_private(path: &Path, bytes: &[u8]) -> Result<(), FetchError> {
    let mut file = create_private(path).await?;
    let local = |error| FetchError::Local {
        path: path.to_owned(),
        error,
    };
    file.write_all(bytes).await.map_err(local)?;
    file.flush().await.map_err(local)
}

/// Where pieces that should follow each other do not: each must start where the one
/// before it ended, the first at 0. One line per break, naming the keys.
fn breaks(pieces: &[Piece]) -> Vec<String> {
    let mut out = Vec::new();
    let mut end = 0u64;
    let mut before: Option<&str> = None;
    for p in pieces {
        if p.offset != end {
            let what = if p.offset > end { "gap" } else { "overlap" };
            out.push(match before {
                None => format!(
                    "{}: the first piece starts at byte {}, not 0",
                    p.key, p.offset
                ),
                Some(prev) => format!(
                    "{prev} ends at byte {end} but {} starts at byte {} ({what} of {} bytes)",
                    p.key,
                    p.offset,
                    p.offset.abs_diff(end)
                ),
            });
        }
        end = p.offset.saturating_add(p.size);
        before = Some(&p.key);
    }
    out
}

/// The sessions in the store that match `filter`, oldest first, as `offline::list` gives
/// them for a directory. Metadata objects larger than `MAX_JSON` are refused (an error);
/// unreadable ones are skipped and logged by key.
pub async fn list(store: &Store, filter: &Filter) -> Result<Vec<Metadata>, FetchError> {
    let reader = Reader::new(store)?;
    let index = reader.index().await?;
    let too_large = reader.jsons(index.jsons.iter()).await?;
    if let Some(key) = too_large.into_iter().next() {
        return Err(reader.store_err(StoreError::TooLarge { key, max: MAX_JSON }));
    }
    for (key, _) in index.jsons.values() {
        if let Err(e) = meta::read(&reader.local(key)) {
            tracing::warn!(key = %key, store = %store.url(), error = %offline::cause(&e), "metadata skipped");
            let _ = std::fs::remove_file(reader.local(key));
        }
    }
    offline::list(reader.root(), filter).map_err(|e| reader.relabel(e))
}

/// A session downloaded for replay. The recording is removed when this is dropped.
pub struct Replay {
    pub meta: Metadata,
    /// The transcript (a temporary file).
    pub cast: PathBuf,
    /// The transcript was assembled from live parts (the session did not end cleanly).
    pub from_parts: bool,
    url: String,
    dir: Scratch,
}

impl Replay {
    /// An error of `offline::cat` or `offline::play` on `cast`, naming the object instead.
    pub fn relabel(&self, e: OfflineError) -> OfflineError {
        relabel(&self.dir.path, &self.url, e)
    }
}

/// The session whose id starts with `session_prefix`, as `offline::find` finds it, with its
/// recording: the whole `.cast`, or its live parts joined (a gap between them is an error).
pub async fn session(store: &Store, session_prefix: &str) -> Result<Replay, FetchError> {
    let reader = Reader::new(store)?;
    let index = reader.index().await?;
    let prefix = offline::session_prefix_of(session_prefix);
    let matching: Vec<_> = index
        .jsons
        .iter()
        .filter(|((_, id), _)| prefix.as_deref().is_some_and(|p| id.starts_with(p)))
        .collect();
    if matching.len() > 1 {
        // Named by their keys alone, as `offline::find` names them: nothing to download.
        return Err(reader.relabel(OfflineError::Ambiguous {
            prefix: session_prefix.to_owned(),
            matches: matching.iter().map(|((_, id), _)| id.clone()).collect(),
        }));
    }
    let too_large = reader.jsons(matching.iter().copied()).await?;
    if let Some(key) = too_large.into_iter().next() {
        return Err(reader.store_err(StoreError::TooLarge { key, max: MAX_JSON }));
    }
    let mut from_parts = false;
    if let [(id, _)] = matching.as_slice() {
        let (date, session) = id;
        if let Some(cast) = index.casts.get(id) {
            reader.whole(std::iter::once(cast)).await?;
        } else if let Some(parts) = index.parts.get(id) {
            let mut parts = parts.clone();
            reader
                .assemble(
                    &mut parts,
                    &reader.local(&keys::session_cast(date, session)),
                )
                .await?;
            let problems = breaks(&parts);
            if !problems.is_empty() {
                return Err(FetchError::Gap {
                    url: store.url().to_owned(),
                    problems,
                });
            }
            from_parts = true;
        }
    }
    let (meta, cast) =
        offline::find(reader.root(), session_prefix).map_err(|e| reader.relabel(e))?;
    Ok(Replay {
        meta,
        cast,
        from_parts,
        url: store.url().to_owned(),
        dir: reader.dir,
    })
}

/// Verify the whole store: each gateway's audit chain across its segments, every recording
/// against its metadata, and the audit events against the metadata across all gateways.
pub async fn verify(store: &Store) -> Result<VerifyReport, FetchError> {
    snapshot(store).await.map(|s| s.report)
}

/// The whole store downloaded into a temporary directory (removed on drop), with the
/// verification of it: what `podgate review --store` serves.
pub struct Snapshot {
    pub report: VerifyReport,
    dir: Scratch,
}

impl Snapshot {
    /// The directory, in the spool's layout: `DATE/SESSION.{json,cast}` (a cast joined
    /// from live parts where there is no whole one) and `audit/GATEWAY.jsonl`.
    pub fn root(&self) -> &Path {
        &self.dir.path
    }
}

/// Download everything `verify` reads, verify it, and keep it.
pub async fn snapshot(store: &Store) -> Result<Snapshot, FetchError> {
    let reader = Reader::new(store)?;
    let mut index = reader.index().await?;
    let mut sources = Sources::default();
    for key in reader.jsons(index.jsons.iter()).await? {
        sources
            .problems
            .push(format!("{key}: larger than {MAX_JSON} bytes, not read"));
    }
    for (date, _) in index.casts.keys().chain(index.parts.keys()) {
        reader.mkdir(date)?;
    }
    reader.whole(index.casts.values()).await?;
    for ((date, session), parts) in &mut index.parts {
        if index.casts.contains_key(&(date.clone(), session.clone())) {
            continue;
        }
        reader
            .assemble(parts, &reader.local(&keys::session_cast(date, session)))
            .await?;
        sources.problems.extend(breaks(parts));
        let size = parts.iter().map(|p| p.size).sum();
        sources.from_parts.insert(format!("{date}/{session}"), size);
    }
    if index.audit.is_empty() {
        sources
            .problems
            .push("audit/: missing (no audit segments in the store)".to_owned());
    }
    for (gateway, segments) in &mut index.audit {
        let path = reader.root().join("audit").join(format!("{gateway}.jsonl"));
        let starts = reader.assemble(segments, &path).await?;
        sources.problems.extend(breaks(segments));
        sources.chains.push(Chain {
            path,
            name: keys::audit_prefix(gateway),
            pieces: starts
                .into_iter()
                .zip(segments.iter().map(|s| s.key.clone()))
                .collect(),
        });
    }
    let report = offline::verify_from(reader.root(), &sources).map_err(|e| reader.relabel(e))?;
    Ok(Snapshot {
        report,
        dir: reader.dir,
    })
}

#[cfg(test)]
#[path = "fetch_tests.rs"]
mod tests;
