//! Prometheus metrics of a running gateway, and the HTTP endpoints that serve them with the
//! health checks (`serve`).
//!
//! Most figures are derived from the audit events the gateway writes anyway
//! ([`Metrics::observe`], called for every event by `Gateway::record`), so a metric and the
//! audit log cannot disagree about what happened: logins accepted and refused by code,
//! sessions started, running and ended by action and end reason, refusals, bytes (counted
//! when a session ends), recording failures. Kubernetes call latency and connection counts
//! are reported by the code that sees them.
//!
//! Guarantees: bounded label sets: every label value comes from a fixed vocabulary of the
//! gateway's own (actions, rejection codes, end reasons, call kinds), never from a client;
//! an unexpected value is reported as `other`. Nothing here blocks for long or does I/O.
//!
//! Not here: tracing/logging (`telemetry`).

pub mod serve;
pub mod store;

use std::sync::atomic::{AtomicI64, AtomicU64};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use serde_json::Value;

use crate::recording::meta::end_reason;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabel {
    action: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndLabels {
    action: &'static str,
    end_reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabel {
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabel {
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    call: &'static str,
    outcome: &'static str,
}

/// The gateway's metrics.
pub struct Metrics {
    registry: Registry,
    auth_accepted: Counter,
    auth_rejected: Family<CodeLabel, Counter>,
    revoked: Counter,
    sessions_started: Family<ActionLabel, Counter>,
    sessions_active: Family<ActionLabel, Gauge<i64, AtomicI64>>,
    sessions_ended: Family<EndLabels, Counter>,
    sessions_denied: Family<ActionLabel, Counter>,
    sessions_failed: Family<ActionLabel, Counter>,
    bytes: Family<DirectionLabel, Counter<u64, AtomicU64>>,
    recording_failures: Counter,
    kube_calls: Family<CallLabels, Histogram, fn() -> Histogram>,
    connections_active: Gauge<i64, AtomicI64>,
    connections_refused: Family<CodeLabel, Counter>,
    /// Shipping to the recordings store (set by `store::ship`).
    pub store: store::StoreMetrics,
}

fn latency_histogram() -> Histogram {
    // 1 ms … ~16 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// Every action's name, for bounding labels.
const ACTIONS: &[&str] = &["list", "logs", "exec", "shell", "port-forward"];
/// Every end reason the gateway writes (recording::meta::end_reason) and rejection codes
/// are bounded by [`known`]: anything else becomes `other`.
const END_REASONS: &[&str] = &[
    end_reason::EXITED,
    end_reason::CLIENT_CLOSED,
    end_reason::ERROR,
    end_reason::EXPIRED,
    end_reason::REVOKED,
    end_reason::IDLE,
    end_reason::MAX_SESSION,
    end_reason::GATEWAY_STOPPED,
    end_reason::WRITE_FAILED,
    end_reason::INCOMPLETE,
];
const REJECTION_CODES: &[&str] = &[
    "not_a_certificate",
    "unparsable_key",
    "host_certificate",
    "ca_is_certificate",
    "untrusted_ca",
    "weak_signature_algorithm",
    "bad_signature",
    "serial_zero",
    "invalid_validity",
    "not_yet_valid",
    "expired",
    "expired_or_not_yet_valid",
    "lifetime_too_long",
    "no_principals",
    "too_many_principals",
    "bad_principal",
    "principal_mismatch",
    "empty_key_id",
    "bad_key_id",
    "unknown_critical_option",
    "bad_critical_option",
    "no_peer_address",
    "source_address_mismatch",
    "cluster_mismatch",
    "incident_required",
    "incident_mismatch",
    "incident_not_allowed",
    "bad_extension",
    "revoked",
    "revocation_unavailable",
];

/// `value` if it is one of `known`, else `other` (labels stay a small fixed set).
fn known(value: Option<&str>, vocabulary: &[&'static str]) -> &'static str {
    value
        .and_then(|v| vocabulary.iter().find(|k| **k == v).copied())
        .unwrap_or("other")
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut m = Metrics {
            registry: Registry::with_prefix("podgate"),
            auth_accepted: Counter::default(),
            auth_rejected: Family::default(),
            revoked: Counter::default(),
            sessions_started: Family::default(),
            sessions_active: Family::default(),
            sessions_ended: Family::default(),
            sessions_denied: Family::default(),
            sessions_failed: Family::default(),
            bytes: Family::default(),
            recording_failures: Counter::default(),
            kube_calls: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            connections_active: Gauge::default(),
            connections_refused: Family::default(),
            store: store::StoreMetrics::default(),
        };
        let r = &mut m.registry;
        r.register(
            "auth_accepted",
            "Certificate logins accepted",
            m.auth_accepted.clone(),
        );
        r.register(
            "auth_rejected",
            "Keys and certificates refused, by code",
            m.auth_rejected.clone(),
        );
        r.register(
            "certificates_revoked",
            "Logged-in connections ended because their certificate was revoked",
            m.revoked.clone(),
        );
        r.register(
            "sessions_started",
            "Sessions started, by action",
            m.sessions_started.clone(),
        );
        r.register(
            "sessions_active",
            "Sessions running now, by action",
            m.sessions_active.clone(),
        );
        r.register(
            "sessions_ended",
            "Sessions ended, by action and end reason",
            m.sessions_ended.clone(),
        );
        r.register(
            "sessions_denied",
            "Requests refused by scope, policy or limits, by action",
            m.sessions_denied.clone(),
        );
        r.register(
            "sessions_failed",
            "Requests that failed before their session began (cluster unreachable, API error), by action",
            m.sessions_failed.clone(),
        );
        r.register(
            "session_bytes",
            "Bytes of ended sessions: stdin (to the pod), stdout and stderr (from it)",
            m.bytes.clone(),
        );
        r.register(
            "recording_failures",
            "Sessions ended because their recording could not be written",
            m.recording_failures.clone(),
        );
        r.register(
            "kube_call_duration_seconds",
            "Time to open a Kubernetes call (exec/log/portforward upgrade, pod list), by outcome",
            m.kube_calls.clone(),
        );
        r.register(
            "connections_active",
            "SSH connections open now",
            m.connections_active.clone(),
        );
        r.register(
            "connections_refused",
            "TCP connections closed on accept, by reason",
            m.connections_refused.clone(),
        );
        m
    }

    /// Register the recordings store's metrics (only a gateway with a store has them, so
    /// that `podgate_store_up 0` always means a store that is down).
    pub fn enable_store(&mut self) {
        self.store.register(&mut self.registry);
    }

    /// Update the metrics from one audit event (see the module comment).
    pub fn observe(&self, event: &str, fields: &Value) {
        let field = |name: &str| fields.get(name).and_then(Value::as_str);
        let action = || ActionLabel {
            action: known(field("action"), ACTIONS),
        };
        match event {
            "auth.accepted" => {
                self.auth_accepted.inc();
            }
            "auth.rejected" => {
                let code = known(field("code"), REJECTION_CODES);
                self.auth_rejected.get_or_create(&CodeLabel { code }).inc();
            }
            "auth.revoked" => {
                self.revoked.inc();
            }
            "session.started" => {
                self.sessions_started.get_or_create(&action()).inc();
                self.sessions_active.get_or_create(&action()).inc();
            }
            "session.denied" => {
                self.sessions_denied.get_or_create(&action()).inc();
            }
            "session.failed" => {
                self.sessions_failed.get_or_create(&action()).inc();
            }
            "session.ended" => {
                let labels = EndLabels {
                    action: action().action,
                    end_reason: known(field("end_reason"), END_REASONS),
                };
                if labels.end_reason == "write failed" {
                    self.recording_failures.inc();
                }
                self.sessions_active.get_or_create(&action()).dec();
                self.sessions_ended.get_or_create(&labels).inc();
                if let Some(bytes) = fields.get("bytes") {
                    for direction in ["stdin", "stdout", "stderr"] {
                        if let Some(n) = bytes.get(direction).and_then(Value::as_u64) {
                            self.bytes
                                .get_or_create(&DirectionLabel { direction })
                                .inc_by(n);
                        }
                    }
                }
            }
            _ => {}
        }
    }

    /// How long opening a Kubernetes call took (`call`: exec, logs, portforward, list).
    pub fn kube_call(&self, call: &'static str, took: Duration, ok: bool) {
        let outcome = if ok { "ok" } else { "error" };
        self.kube_calls
            .get_or_create(&CallLabels { call, outcome })
            .observe(took.as_secs_f64());
    }

    /// Await `call` (opening a Kubernetes call of kind `kind`) and record how long it took.
    pub async fn timed<T, E>(
        &self,
        kind: &'static str,
        call: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        let started = std::time::Instant::now();
        let result = call.await;
        self.kube_call(kind, started.elapsed(), result.is_ok());
        result
    }

    /// An SSH connection opened (`true`) or closed.
    pub fn connection(&self, opened: bool) {
        if opened {
            self.connections_active.inc();
        } else {
            self.connections_active.dec();
        }
    }

    /// A TCP connection closed on accept (`reason`: a fixed word of the caller's).
    pub fn connection_refused(&self, reason: &'static str) {
        self.connections_refused
            .get_or_create(&CodeLabel { code: reason })
            .inc();
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_become_bounded_metrics() {
        let m = Metrics::new();
        let events = [
            ("auth.accepted", json!({})),
            ("auth.rejected", json!({"code": "untrusted_ca"})),
            ("auth.rejected", json!({"code": "made-up by a client"})),
            ("session.started", json!({"action": "exec"})),
            ("session.started", json!({"action": "logs"})),
            (
                "session.ended",
                json!({"action": "exec", "end_reason": "exited",
                "bytes": {"stdin": 3, "stdout": 10, "stderr": 2}}),
            ),
            (
                "session.ended",
                json!({"action": "logs", "end_reason": "write failed"}),
            ),
            ("session.denied", json!({"action": "shell"})),
            ("auth.revoked", json!({})),
        ];
        for (event, fields) in &events {
            m.observe(event, fields);
        }
        m.kube_call("exec", Duration::from_millis(3), true);
        let text = m.encode();
        for want in [
            "podgate_auth_accepted_total 1",
            "podgate_auth_rejected_total{code=\"untrusted_ca\"} 1",
            "podgate_auth_rejected_total{code=\"other\"} 1",
            "podgate_sessions_started_total{action=\"exec\"} 1",
            "podgate_sessions_active{action=\"exec\"} 0",
            "podgate_sessions_active{action=\"logs\"} 0",
            "podgate_sessions_ended_total{action=\"exec\",end_reason=\"exited\"} 1",
            "podgate_sessions_denied_total{action=\"shell\"} 1",
            "podgate_session_bytes_total{direction=\"stdout\"} 10",
            "podgate_recording_failures_total 1",
            "podgate_certificates_revoked_total 1",
            "podgate_kube_call_duration_seconds_count{call=\"exec\",outcome=\"ok\"} 1",
        ] {
            assert!(text.contains(want), "{want} missing from\n{text}");
        }
        assert!(!text.contains("made-up"));
        assert!(text.ends_with("# EOF\n"));
    }
}
