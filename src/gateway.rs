//! Everything a running gateway decides with, built once at start by `main` from the
//! configuration and the files it names, and shared by every connection; plus the little
//! state that must be shared at run time: how many sessions each identity has running.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::auth;
use crate::bridge::KubeBase;
pub use crate::config::Limits;
use crate::metrics::Metrics;
use crate::policy::Policy;
use crate::recording::audit::{AuditError, AuditLog};

/// The gateway's shared state.
pub struct Gateway {
    pub auth: auth::Settings,
    pub policy: Policy,
    pub kube: KubeBase,
    pub audit: AuditLog,
    pub limits: Limits,
    /// A session without traffic either way for this long is ended.
    pub idle_timeout: Duration,
    /// Where session recordings go (`RECORDINGS/YYYY-MM-DD/SESSION.{cast,json}`).
    pub recordings: std::path::PathBuf,
    /// New sessions are refused below this much free space there.
    pub recordings_min_free: u64,
    /// Running sessions per identity (`limits.max_sessions_per_identity`).
    pub sessions: SessionCounts,
    /// The revocation list as last read (kept current by `revocation_watch`).
    pub revocations: tokio::sync::watch::Receiver<auth::Revocations>,
    pub metrics: Metrics,
    /// Cancelled when a stopping gateway's drain time is over: every session still running
    /// ends with `shutdown` (message, exit 124, complete recording) before the
    /// connections are cut.
    pub stopping: tokio_util::sync::CancellationToken,
    /// Whether session output reaches the `.cast` transcript. The `podgate` binary always
    /// records; only the benchmark harness (P5 of docs/BENCHMARKS.md) builds a gateway that
    /// discards, to measure what recording costs. No configuration key reaches this.
    pub transcripts: Transcripts,
    /// Shipping to the recordings store, when `recordings_store` is set (`recordings` is
    /// then the spool); started by `server::run`.
    pub shipping: Option<Arc<crate::store::ship::Shipping>>,
    /// Approval requests and standing approvals, shared by replicas through the
    /// Kubernetes API (`None` only in benchmarks and tests that need none).
    pub approvals: Option<Arc<crate::approval::Approvals>>,
    /// This process's live sessions, for `sessions` and `watch`.
    pub hub: Arc<crate::observe::Hub>,
    /// This gateway process (`HOST:PID`), in approval requests and messages.
    pub name: String,
}

/// See [`Gateway::transcripts`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transcripts {
    /// Output and input events are written to the session's `.cast` (always, in podgate).
    #[default]
    Recorded,
    /// Metadata, markers and the audit log are written as usual; output and input events
    /// are counted but not written. For measuring the recorder's cost only.
    DiscardedForBenchmarks,
}

/// Sessions running per identity, bounded.
#[derive(Default)]
pub struct SessionCounts {
    counts: Mutex<HashMap<String, usize>>,
}

/// Held while a session runs; dropping it frees the slot.
pub struct SessionSlot {
    owner: Arc<Gateway>,
    identity: String,
}

impl SessionCounts {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn running(&self, identity: &str) -> usize {
        self.lock().get(identity).copied().unwrap_or(0)
    }
}

impl Gateway {
    /// Write an audit event and count it in the metrics (which are derived from events).
    pub fn record(&self, event: &str, fields: serde_json::Value) -> Result<(), AuditError> {
        self.metrics.observe(event, &fields);
        let written = self.audit.write(event, fields);
        if event == "session.ended"
            && let Some(shipping) = &self.shipping
        {
            // Ship the finished recording now rather than at the next round.
            shipping.wake();
        }
        written
    }

    /// Whether a new session can be recorded safely as far as the recordings store is
    /// concerned (spool limits; see `store::ship`). Free space is checked by the recorder.
    pub fn admit_recording(&self) -> Result<(), String> {
        match &self.shipping {
            Some(shipping) => shipping.admit(),
            None => Ok(()),
        }
    }

    /// Take a session slot for `identity`, or say why not.
    pub fn session_slot(self: &Arc<Self>, identity: &str) -> Result<SessionSlot, String> {
        let max = self.limits.max_sessions_per_identity;
        let mut counts = self.sessions.lock();
        let n = counts.entry(identity.to_owned()).or_insert(0);
        if *n >= max {
            return Err(format!(
                "{identity} already has {max} sessions running (limits.max_sessions_per_identity)"
            ));
        }
        *n += 1;
        Ok(SessionSlot {
            owner: self.clone(),
            identity: identity.to_owned(),
        })
    }
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        let mut counts = self.owner.sessions.lock();
        if let Some(n) = counts.get_mut(&self.identity) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&self.identity);
            }
        }
    }
}

pub type Shared = Arc<Gateway>;
