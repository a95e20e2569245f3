//! Refusals russh makes before podgate sees a certificate, turned into audit events.
//!
//! russh 0.65 refuses a certificate outside its validity window, or whose signature does
//! not verify against the key embedded in it, before calling the handler
//! (server/encrypted.rs, `server_read_auth_request_pk`), and reports it only through the
//! `log` crate. Every refusal must be an `auth.rejected` event, so podgate installs a `log`
//! logger that recognises those two messages and writes the event for the connection
//! being served. russh runs each connection's loop in a task of its own, and the handler's
//! callbacks run in that task, so the handler registers the task's id when
//! authentication starts (`register`) and the logger looks the connection up by the id of
//! the task it is called from. All records are then passed on to `tracing`.
//!
//! Limits: the record names no key id or serial (russh does not log them), and a russh
//! upgrade that rewords the messages would silently stop the events; the end-to-end
//! refusal tests fail if that happens.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Once};

use serde_json::json;

use crate::gateway::Shared;

/// The connection whose future is being polled.
pub struct ConnectionTrace {
    pub gateway: Shared,
    pub id: String,
    pub client: String,
}

/// Live connections by the id of the task running their SSH loop. Bounded by the number of
/// connections served at once; entries leave when the connection's handler is dropped.
static TASKS: Mutex<Option<HashMap<tokio::task::Id, Arc<ConnectionTrace>>>> = Mutex::new(None);

fn tasks<T>(f: impl FnOnce(&mut HashMap<tokio::task::Id, Arc<ConnectionTrace>>) -> T) -> T {
    let mut guard = TASKS.lock().unwrap_or_else(|e| e.into_inner());
    f(guard.get_or_insert_with(HashMap::new))
}

/// Remember that the current task serves `trace`; returns the task id to `unregister`.
pub fn register(trace: &Arc<ConnectionTrace>) -> Option<tokio::task::Id> {
    let id = tokio::task::try_id()?;
    tasks(|t| t.insert(id, trace.clone()));
    Some(id)
}

pub fn unregister(id: tokio::task::Id) {
    tasks(|t| t.remove(&id));
}

/// What russh logs when it refuses a certificate itself, and how podgate names it.
const KNOWN: &[(&str, &str, &str)] = &[
    (
        "Certificate is expired or not yet valid",
        "expired_or_not_yet_valid",
        "certificate is expired or not yet valid (refused by the SSH layer before podgate's checks)",
    ),
    (
        "Certificate signature is invalid",
        "bad_signature",
        "certificate signature does not verify (refused by the SSH layer before podgate's checks)",
    ),
];

struct Bridge {
    next: tracing_log::LogTracer,
}

impl log::Log for Bridge {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.target().starts_with("russh") || self.next.enabled(metadata)
    }

    fn log(&self, record: &log::Record<'_>) {
        if record.target().starts_with("russh::server") {
            let message = record.args().to_string();
            if let Some((_, code, reason)) = KNOWN.iter().find(|(m, _, _)| message == *m) {
                let conn = tokio::task::try_id().and_then(|id| tasks(|t| t.get(&id).cloned()));
                if let Some(c) = conn {
                    let fields = json!({"connection": c.id, "client": c.client, "code": code, "reason": reason});
                    if let Err(e) = c.gateway.record("auth.rejected", fields) {
                        tracing::error!(error = %e, "audit log write failed");
                    }
                }
            }
        }
        self.next.log(record);
    }

    fn flush(&self) {
        self.next.flush();
    }
}

/// Install the bridge as the process's `log` logger (once; later calls do nothing). If
/// another logger was installed first, the events are not written and this is logged.
pub fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let bridge = Bridge {
            next: tracing_log::LogTracer::new(),
        };
        match log::set_boxed_logger(Box::new(bridge)) {
            Ok(()) => log::set_max_level(log::LevelFilter::Warn),
            Err(_) => tracing::warn!("another log logger is installed; russh's own certificate refusals will not be audited"),
        }
    });
}
