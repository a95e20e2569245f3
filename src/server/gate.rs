//! The accept loop's door: which new TCP connections are served, and the pass each served
//! connection carries until it closes.
//!
//! It combines the connection cap (`limits.max_connections`, counted here) with the
//! admission rules of `crate::admission` (unauthenticated slots in total and per source,
//! eviction of the oldest waiting connection of the biggest source, penalties for sources
//! that keep failing). A [`Pass`] is held by the connection's handler: it reports the
//! login (`authenticated`) and, when dropped, the close with whether authentication
//! failed, so every admitted connection is accounted for exactly once.
//!
//! Guarantees: the locks are never held across an await; every map is bounded by the
//! admission limits. Not here: closing sockets or timing logins (the accept loop does,
//! with [`Pass::evicted`] and `limits.login_grace`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::admission::{Admission, AdmissionLimits, Admit, Refusal, Ticket};
use crate::config::Limits;

/// See the module documentation.
pub struct Gate {
    admission: Mutex<Admission>,
    /// Eviction tokens of the connections that have not logged in yet.
    waiting: Mutex<HashMap<Ticket, CancellationToken>>,
    open: AtomicUsize,
    max_connections: usize,
}

/// Why a connection was closed on accept: a fixed word for metrics, and the reason.
pub struct Turned {
    pub code: &'static str,
    pub reason: String,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Gate {
    pub fn new(limits: &Limits) -> Arc<Gate> {
        let admission = Admission::new(AdmissionLimits {
            max_unauthenticated: limits.max_unauthenticated,
            max_unauthenticated_per_source: limits.max_unauthenticated_per_source,
            penalty_per_failure: limits.penalty_per_failure,
            penalty_max: limits.penalty_max,
            penalty_threshold: limits.penalty_threshold,
            exempt: limits.penalty_exempt.clone(),
            ..AdmissionLimits::default()
        });
        Arc::new(Gate {
            admission: Mutex::new(admission),
            waiting: Mutex::new(HashMap::new()),
            open: AtomicUsize::new(0),
            max_connections: limits.max_connections,
        })
    }

    /// Decide about a connection from `ip`: a pass, or why not.
    pub fn enter(self: &Arc<Self>, ip: IpAddr) -> Result<Pass, Turned> {
        if self.open.load(Ordering::Relaxed) >= self.max_connections {
            return Err(Turned {
                code: "max_connections",
                reason: format!(
                    "{} connections open (limits.max_connections)",
                    self.max_connections
                ),
            });
        }
        let admit = lock(&self.admission).connect(ip, Instant::now());
        let (ticket, evict) = match admit {
            Admit::Accept { ticket, evict } => (ticket, evict),
            Admit::Refuse(refusal) => {
                let code = match refusal {
                    Refusal::PerSource { .. } => "per_source",
                    Refusal::Penalised { .. } => "penalised",
                };
                return Err(Turned {
                    code,
                    reason: refusal.to_string(),
                });
            }
        };
        let evicted = CancellationToken::new();
        {
            let mut waiting = lock(&self.waiting);
            if let Some(old) = evict.and_then(|t| waiting.remove(&t)) {
                old.cancel();
            }
            waiting.insert(ticket, evicted.clone());
        }
        self.open.fetch_add(1, Ordering::Relaxed);
        Ok(Pass {
            gate: self.clone(),
            ticket,
            evicted,
            logged_in: watch::channel(false).0,
            failed_auth: AtomicBool::new(false),
        })
    }

    /// Connections waiting to log in (for tests and metrics).
    pub fn unauthenticated(&self) -> usize {
        lock(&self.admission).unauthenticated()
    }
}

/// One admitted connection, held by its handler.
pub struct Pass {
    gate: Arc<Gate>,
    ticket: Ticket,
    evicted: CancellationToken,
    logged_in: watch::Sender<bool>,
    failed_auth: AtomicBool,
}

impl Pass {
    /// Cancelled when a newer connection took this one's unauthenticated slot.
    pub fn evicted(&self) -> CancellationToken {
        self.evicted.clone()
    }

    /// Becomes true when the connection has logged in.
    pub fn logged_in(&self) -> watch::Receiver<bool> {
        self.logged_in.subscribe()
    }

    /// The connection logged in: it no longer holds an unauthenticated slot.
    pub fn authenticated(&self) {
        lock(&self.gate.admission).authenticated(self.ticket);
        lock(&self.gate.waiting).remove(&self.ticket);
        self.logged_in.send_replace(true);
    }

    /// A key or certificate was refused on this connection (a close then counts against
    /// its source unless it logged in after all).
    pub fn failed_auth(&self) {
        self.failed_auth.store(true, Ordering::Relaxed);
    }
}

impl Drop for Pass {
    fn drop(&mut self) {
        let failed = self.failed_auth.load(Ordering::Relaxed);
        lock(&self.gate.admission).closed(self.ticket, failed, Instant::now());
        lock(&self.gate.waiting).remove(&self.ticket);
        self.gate.open.fetch_sub(1, Ordering::Relaxed);
    }
}
