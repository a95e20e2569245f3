//! The shipper: drains the spool (the local recordings directory) into the recordings
//! store, and tells the gateway whether new sessions may still start.
//!
//! A round (every `ship_every`, at once when a session ends, and once more when the
//! gateway stops):
//! 1. new whole lines of audit.jsonl become a segment `audit/GATEWAY/OFFSET.jsonl`;
//! 2. a live session's `.json` is uploaded when it changed, and the new whole lines of
//!    its `.cast` become a part `DATE/SESSION.cast.parts/OFFSET`: losing the pod loses at
//!    most `ship_every` (≤ 30 s) of a session;
//! 3. an ended session's `.cast` and then `.json` are uploaded, then the `.shipped` marker
//!    is written, a `recording.shipped` audit event too, and its parts are deleted;
//! 4. shipped sessions older than `keep_shipped` are deleted from the spool.
//!
//! Guarantees: an object counts as shipped only after it was read back from the store and
//! found identical (size and SHA-256) to what was sent; the `.cast` is also compared with
//! the SHA-256 its metadata recorded. Nothing is deleted from the spool before that. After
//! a failure the next round comes after a backoff (1 s doubling to 60 s, never more than
//! twice `ship_every`, ±50 % jitter). While the store is unreachable, sessions go on into
//! the spool; when the unshipped bytes or the age of the oldest unshipped data pass the
//! limits, [`Shipping::admit`] refuses new sessions (or, with `when_spool_full: accept`,
//! lets them in and logs an error for each).
//!
//! Not guaranteed: data written in the last `ship_every` before the pod vanished (with
//! its volume) is lost; a restart on the same volume ships it. The age of unshipped data
//! is counted from when a round first saw it unshipped.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde_json::json;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::health::Health;
use super::spool::{self, Backlog, Entry, Marker, Shipped};
use super::{Digest256, Store, StoreConfig, StoreError, keys, verified};
use crate::config::WhenSpoolFull;
use crate::gateway::Gateway;
use crate::metrics::store::{StoreMetrics, UploadKind};
use crate::recording::audit::sha256_hex;
use crate::recording::meta;

/// Largest audit segment uploaded at once.
const SEGMENT_MAX: u64 = 64 << 20;
/// Largest metadata file shipped (they are a few KiB).
const JSON_MAX: u64 = 1 << 20;
/// Longest pause between rounds after failures.
const BACKOFF_CAP: Duration = Duration::from_secs(60);

/// Where the shipper reports: audit events and metrics (the gateway; a recorder in tests).
pub trait Outlet: Send + Sync {
    fn event(&self, event: &str, fields: serde_json::Value);
    fn metrics(&self) -> &StoreMetrics;
}

impl Outlet for Gateway {
    fn event(&self, event: &str, fields: serde_json::Value) {
        if let Err(e) = self.record(event, fields) {
            tracing::error!(error = %e, event, "audit log write failed");
        }
    }

    fn metrics(&self) -> &StoreMetrics {
        &self.metrics.store
    }
}

/// What a live session has shipped so far (kept by the shipping task).
#[derive(Debug, Default)]
struct Live {
    json_sha: String,
    offset: u64,
}

/// The shipping of one gateway's spool, shared between the shipping task and the sessions.
pub struct Shipping {
    store: Store,
    root: PathBuf,
    config: StoreConfig,
    gateway_id: Mutex<String>,
    wake: Notify,
    health: Mutex<Health>,
}

fn now_rfc3339() -> String {
    meta::rfc3339(SystemTime::now())
}

/// Errors of the spool itself (not of the store) concern one item; the round goes on.
fn is_local(e: &StoreError) -> bool {
    matches!(e, StoreError::Local { .. } | StoreError::Spool(_))
}

impl Shipping {
    /// Shipping for the spool `root` (the gateway's recordings directory).
    pub fn new(store: Store, root: &Path, config: StoreConfig) -> Result<Shipping, StoreError> {
        let gateway_id = spool::spool_id(root)?;
        Ok(Shipping {
            store,
            root: root.to_owned(),
            config,
            gateway_id: Mutex::new(gateway_id),
            wake: Notify::new(),
            health: Mutex::new(Health::default()),
        })
    }

    fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `s3://bucket/prefix`.
    pub fn url(&self) -> &str {
        self.store.url()
    }

    pub fn ship_every(&self) -> Duration {
        self.config.ship_every
    }

    /// Ask for a round now (a session ended).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Whether a new session may start: `Err(reason)` when the spool is over its limits
    /// and `when_spool_full` is `refuse`.
    pub fn admit(&self) -> Result<(), String> {
        self.health().admit(self.url(), self.config.when_spool_full)
    }

    /// Why `/readyz` should fail, if it should: only when new sessions are refused.
    pub fn readiness(&self) -> Option<String> {
        match self.config.when_spool_full {
            WhenSpoolFull::Refuse => self.admit().err(),
            WhenSpoolFull::Accept => None,
        }
    }

    /// Ship until `stop` fires, then one last round. `first_round` is told when the first
    /// round (what a previous run left in the spool) is over.
    pub async fn run(
        self: Arc<Self>,
        gateway: Arc<dyn Outlet>,
        stop: CancellationToken,
        first_round: tokio::sync::oneshot::Sender<()>,
    ) {
        let mut state = RoundState::default();
        let mut failures: u32 = 0;
        let mut first_round = Some(first_round);
        let first = self.config.ship_every.min(Duration::from_secs(1));
        let cap = BACKOFF_CAP.min(self.config.ship_every.saturating_mul(2));
        loop {
            let ok = self.round(gateway.as_ref(), &mut state).await;
            if let Some(tx) = first_round.take() {
                let _ = tx.send(());
            }
            let pause = if ok {
                failures = 0;
                self.config.ship_every
            } else {
                failures = failures.saturating_add(1);
                spool::backoff(failures, first, cap, 0.5 + rand::random::<f64>())
            };
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = self.wake.notified(), if ok => {}
                () = stop.cancelled() => {
                    self.round(gateway.as_ref(), &mut state).await;
                    return;
                }
            }
        }
    }

    /// One round; returns whether the store took everything it was sent (a local problem
    /// with one item does not count: see `note`).
    async fn round(&self, gateway: &dyn Outlet, state: &mut RoundState) -> bool {
        let started = SystemTime::now();
        let mut pending: Vec<(String, u64)> = Vec::new();
        let mut error: Option<StoreError> = None;
        let mut store_down = false;
        // Only the store's own failures make it "down" (and the round a failure); a local
        // problem concerns one item, which stays pending, so its age counts towards the
        // spool's limits.
        let note = |e: StoreError, down: &mut bool, error: &mut Option<StoreError>| {
            tracing::warn!(error = %e, "shipping recordings");
            if !is_local(&e) {
                *down = true;
                error.get_or_insert(e);
            }
        };

        match self.ship_audit(gateway).await {
            Ok(left) => pending.push(("audit".into(), left)),
            Err((e, left)) => {
                note(e, &mut store_down, &mut error);
                pending.push(("audit".into(), left));
            }
        }

        let root = self.root.clone();
        let scanned = tokio::task::spawn_blocking(move || spool::scan(&root)).await;
        let (entries, unreadable) = match scanned {
            Ok(Ok(found)) => found,
            failed => {
                // Nothing can be said of what is waiting: count the spool as one pending
                // item, so that its age reaches spool_max_age if this lasts (fail closed).
                let why = match failed {
                    Ok(Err(e)) => e.to_string(),
                    Err(e) => e.to_string(),
                    Ok(Ok(_)) => String::new(),
                };
                tracing::error!(error = %why, "the spool cannot be read");
                pending.push(("spool".into(), 1));
                (Vec::new(), Vec::new())
            }
        };
        let mut seen = HashSet::with_capacity(entries.len());
        for entry in &entries {
            seen.insert(entry.session.clone());
            if let Some(marker) = &entry.marker {
                state.live.remove(&entry.session);
                self.clean_up(entry, marker, started);
                continue;
            }
            let live = state.live.entry(entry.session.clone()).or_default();
            let result = if store_down {
                Err(None)
            } else if entry.ended() {
                self.ship_ended(gateway, entry)
                    .await
                    .map(|()| 0)
                    .map_err(Some)
            } else {
                self.ship_live(gateway, entry, live).await.map_err(Some)
            };
            match result {
                Ok(left) => pending.push((entry.session.clone(), left)),
                Err(e) => {
                    if let Some(e) = e {
                        note(e, &mut store_down, &mut error);
                    }
                    pending.push((entry.session.clone(), unshipped(entry, live)));
                }
            }
        }
        state.live.retain(|session, _| seen.contains(session));
        for json in &unreadable {
            tracing::error!(file = %json.display(), "metadata unreadable: this recording cannot be shipped");
            let size = std::fs::metadata(json).map(|m| m.len()).unwrap_or(0);
            pending.push((json.display().to_string(), size.max(1)));
        }

        // The backlog: what is left, and since when each item has been waiting.
        state
            .since
            .retain(|item, _| pending.iter().any(|(i, left)| i == item && *left > 0));
        for (item, left) in &pending {
            if *left > 0 {
                state.since.entry(item.clone()).or_insert(started);
            }
        }
        let backlog = Backlog {
            bytes: pending.iter().map(|(_, left)| left).sum(),
            oldest: state.since.values().min().copied(),
        };
        let now = SystemTime::now();
        let over = spool::over_limit(
            &backlog,
            self.config.spool_max_size,
            self.config.spool_max_age,
            now,
        );
        let ok = error.is_none();
        self.report(
            gateway,
            ok,
            error.map(|e| e.to_string()),
            backlog,
            over,
            now,
        );
        ok
    }

    /// Store the round's outcome, update the metrics and audit the transitions.
    fn report(
        &self,
        gateway: &dyn Outlet,
        ok: bool,
        error: Option<String>,
        backlog: Backlog,
        over: Option<String>,
        now: SystemTime,
    ) {
        let oldest = backlog
            .oldest
            .and_then(|t| now.duration_since(t).ok())
            .map_or(0, |d| d.as_secs());
        gateway
            .metrics()
            .round(ok, backlog.bytes, oldest, over.is_some());
        let events = self.health().update(
            self.url(),
            self.config.when_spool_full,
            error,
            backlog,
            over,
        );
        for (event, fields) in events {
            gateway.event(event, fields);
        }
    }

    fn gateway_id(&self) -> String {
        self.gateway_id
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    async fn upload_range(
        &self,
        gateway: &dyn Outlet,
        kind: UploadKind,
        rel: &str,
        path: &Path,
        range: (u64, u64),
    ) -> Result<Digest256, StoreError> {
        let result = async {
            let sent = self
                .store
                .put_file_range(rel, path, range.0, range.1)
                .await?;
            verified(&self.store, rel, &sent).await?;
            Ok(sent)
        }
        .await;
        let bytes = result.as_ref().map_or(0, |d| d.size);
        gateway.metrics().upload(kind, result.is_ok(), bytes);
        result
    }

    /// Ship the audit log's new whole lines; on failure also say how much is left.
    async fn ship_audit(&self, gateway: &dyn Outlet) -> Result<u64, (StoreError, u64)> {
        let path = self.root.join(spool::AUDIT_LOG);
        let local = StoreError::Spool;
        let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let mut offset = spool::audit_shipped(&self.root).map_err(|e| (local(e), len))?;
        if len < offset {
            // The log was replaced: what follows is a new chain, under a new id, so that it
            // cannot overwrite or interleave with the old one in the bucket.
            tracing::warn!(
                shipped = offset,
                len,
                "audit.jsonl is shorter than what was shipped; starting a new chain in the store"
            );
            let id = spool::new_spool_id(&self.root).map_err(|e| (local(e), len))?;
            *self.gateway_id.lock().unwrap_or_else(|e| e.into_inner()) = id;
            spool::set_audit_shipped(&self.root, 0).map_err(|e| (local(e), len))?;
            offset = 0;
        }
        let end = spool::last_line_end(&path, offset, len).map_err(|e| (local(e), len))?;
        while offset < end {
            let mut seg_end =
                spool::last_line_end(&path, offset, end.min(offset.saturating_add(SEGMENT_MAX)))
                    .map_err(|e| (local(e), len - offset))?;
            if seg_end == offset {
                seg_end = end;
            }
            let rel = keys::audit_segment(&self.gateway_id(), offset);
            self.upload_range(gateway, UploadKind::Audit, &rel, &path, (offset, seg_end))
                .await
                .map_err(|e| (e, len - offset))?;
            spool::set_audit_shipped(&self.root, seg_end).map_err(|e| (local(e), len - offset))?;
            offset = seg_end;
        }
        Ok(len - offset)
    }

    async fn read_json(&self, path: &Path) -> Result<Vec<u8>, StoreError> {
        let local = |source| StoreError::Local {
            path: path.to_owned(),
            source,
        };
        let size = tokio::fs::metadata(path).await.map_err(local)?.len();
        if size > JSON_MAX {
            return Err(local(std::io::Error::other(format!(
                "metadata larger than {JSON_MAX} bytes"
            ))));
        }
        tokio::fs::read(path).await.map_err(local)
    }

    async fn upload_json(
        &self,
        gateway: &dyn Outlet,
        rel: &str,
        bytes: Vec<u8>,
    ) -> Result<Digest256, StoreError> {
        let result = async {
            let sent = self.store.put_bytes(rel, bytes).await?;
            verified(&self.store, rel, &sent).await?;
            Ok(sent)
        }
        .await;
        let size = result.as_ref().map_or(0, |d| d.size);
        gateway
            .metrics()
            .upload(UploadKind::Json, result.is_ok(), size);
        result
    }

    /// A live session: its metadata when it changed, and its transcript's new whole lines.
    /// Returns the bytes still unshipped.
    async fn ship_live(
        &self,
        gateway: &dyn Outlet,
        entry: &Entry,
        live: &mut Live,
    ) -> Result<u64, StoreError> {
        let json = self.read_json(&entry.json).await?;
        let sha = sha256_hex(&json);
        if sha != live.json_sha {
            let rel = keys::session_json(&entry.date, &entry.session);
            self.upload_json(gateway, &rel, json).await?;
            live.json_sha = sha;
        }
        let len = match std::fs::metadata(&entry.cast) {
            Ok(m) => m.len(),
            Err(_) => return Ok(0),
        };
        let end = spool::last_line_end(&entry.cast, live.offset, len)?;
        if end > live.offset {
            let rel = keys::part(&entry.date, &entry.session, live.offset);
            self.upload_range(
                gateway,
                UploadKind::Part,
                &rel,
                &entry.cast,
                (live.offset, end),
            )
            .await?;
            live.offset = end;
        }
        Ok(len.saturating_sub(live.offset))
    }

    /// An ended session: the whole `.cast`, then the `.json`, then the marker, then the
    /// audit event; then its parts are deleted.
    async fn ship_ended(&self, gateway: &dyn Outlet, entry: &Entry) -> Result<(), StoreError> {
        let mut objects = Vec::new();
        let mut problem = None;
        let cast_len = std::fs::metadata(&entry.cast).map(|m| m.len()).ok();
        if let Some(len) = cast_len {
            let rel = keys::session_cast(&entry.date, &entry.session);
            let sent = self
                .upload_range(gateway, UploadKind::Cast, &rel, &entry.cast, (0, len))
                .await?;
            if let Some(info) = &entry.meta.cast
                && (info.sha256 != sent.sha256 || info.size != sent.size)
            {
                let why = format!(
                    "the spool's transcript ({} bytes, SHA-256 {}) differs from its metadata ({} bytes, {}); shipped as it is",
                    sent.size, sent.sha256, info.size, info.sha256
                );
                tracing::error!(session = %entry.session, "{why}");
                problem = Some(why);
            }
            objects.push(Shipped {
                key: rel,
                size: sent.size,
                sha256: sent.sha256,
            });
        }
        let json = self.read_json(&entry.json).await?;
        let json_sha = sha256_hex(&json);
        let rel = keys::session_json(&entry.date, &entry.session);
        let sent = self.upload_json(gateway, &rel, json).await?;
        objects.push(Shipped {
            key: rel,
            size: sent.size,
            sha256: sent.sha256,
        });
        // A recording repaired while it was being shipped (a failed write is trimmed and
        // marked right after the session ends) is shipped again next round.
        let now_len = std::fs::metadata(&entry.cast).map(|m| m.len()).ok();
        let now_sha = self
            .read_json(&entry.json)
            .await
            .map(|j| sha256_hex(&j))
            .unwrap_or_default();
        if now_len != cast_len || now_sha != json_sha {
            return Err(StoreError::Local {
                path: entry.json.clone(),
                source: std::io::Error::other("changed while it was being shipped; shipping again"),
            });
        }
        let marker = Marker {
            shipped_at: now_rfc3339(),
            objects: objects.clone(),
            problem,
        };
        let json_path = entry.json.clone();
        tokio::task::spawn_blocking(move || spool::write_marker(&json_path, &marker))
            .await
            .map_err(|e| StoreError::Local {
                path: spool::marker_path(&entry.json),
                source: std::io::Error::other(e.to_string()),
            })??;
        gateway.event(
            "recording.shipped",
            json!({"session": entry.session, "store": self.url(), "objects": objects}),
        );
        // The whole transcript is in the store: its parts are redundant. Deleting them may
        // fail (object lock); a bucket lifecycle rule is the backstop.
        let parts = keys::parts_prefix(&entry.date, &entry.session);
        match self.store.list(&parts).await {
            Ok(found) => {
                for (rel, _) in found {
                    if let Err(e) = self.store.delete(&rel).await {
                        tracing::warn!(error = %e, "a shipped session's part could not be deleted");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "a shipped session's parts could not be listed"),
        }
        Ok(())
    }

    /// Delete a shipped session from the spool once `keep_shipped` has passed.
    fn clean_up(&self, entry: &Entry, marker: &Marker, now: SystemTime) {
        let shipped = meta::parse_time(&marker.shipped_at).unwrap_or(SystemTime::UNIX_EPOCH);
        let due = shipped
            .checked_add(self.config.keep_shipped)
            .is_some_and(|t| t <= now);
        if due && let Err(e) = spool::remove_shipped(entry) {
            tracing::warn!(error = %e, "a shipped recording could not be removed from the spool");
        }
    }
}

/// What a round keeps for the next.
#[derive(Default)]
struct RoundState {
    live: HashMap<String, Live>,
    /// Item (session id, `audit`, or an unreadable file) → when first seen unshipped.
    since: HashMap<String, SystemTime>,
}

/// Bytes of `entry` not in the store yet.
fn unshipped(entry: &Entry, live: &Live) -> u64 {
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let json = if live.json_sha.is_empty() || entry.ended() {
        size(&entry.json)
    } else {
        0
    };
    let cast = size(&entry.cast);
    let cast = if entry.ended() {
        cast
    } else {
        cast.saturating_sub(live.offset)
    };
    (json + cast).max(1)
}

#[cfg(test)]
#[path = "ship_tests.rs"]
mod tests;
