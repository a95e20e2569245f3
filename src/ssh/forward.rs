//! Local port-forwards: `ssh -L LOCAL:POD.NAMESPACE:PORT` opens a `direct-tcpip` channel per
//! TCP connection, which becomes one `pods/portforward` websocket to PORT, as the
//! certificate's holder.
//!
//! Order, as for every session: parse → certificate (`permit-port-forwarding`, scope) →
//! policy (action `port-forward`, the port listed in the rule) → limits → record → only then
//! Kubernetes. A refusal is a channel-open failure whose text names the reason (OpenSSH
//! prints it), plus a `session.denied` event.
//!
//! Recording (DESIGN.md §6): metadata only. One port-forward session per SSH connection
//! and pod port collects all its TCP connections (count, bytes each way, duration); it
//! starts with the first and is completed when the last one ends and the SSH connection
//! has no use for it any more (the record is dropped).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use russh::server::{ChannelOpenHandle, Msg};
use russh::{Channel, ChannelOpenFailure};
use serde_json::json;

use super::lifetime::{self, Lifetime};
use super::session::Ctx;
use crate::action::Action;
use crate::bridge::portforward::{self, Ended};
use crate::bridge::{BridgeError, Impersonation};
use crate::gateway::SessionSlot;
use crate::policy::{Ask, Decision, Grant};
use crate::recording::forward::ForwardRecord;
use crate::recording::meta::{self, Metadata, end_reason};
use crate::request::{self, Target};

/// The port-forward sessions and open forwarded connections of one SSH connection.
#[derive(Default)]
pub struct Forwards {
    /// Held until the SSH connection ends, so that sequential TCP connections of one
    /// `ssh -L` share one session; at most `limits.max_forwards` targets.
    sessions: HashMap<(String, String, u16), Arc<ForwardSession>>,
    open: Arc<()>,
}

impl Forwards {
    /// Forwarded connections open now on this SSH connection.
    fn open_now(&self) -> usize {
        Arc::strong_count(&self.open).saturating_sub(1)
    }
}

/// One port-forward session (see the module doc); completed on drop.
pub struct ForwardSession {
    id: String,
    ctx: Ctx,
    target: Target,
    port: u16,
    grant: Grant,
    started: Instant,
    record: ForwardRecord,
    /// The end reason when something other than the client ended it.
    reason: std::sync::Mutex<Option<&'static str>>,
}

impl ForwardSession {
    fn set_reason(&self, reason: &'static str) {
        let mut r = self.reason.lock().unwrap_or_else(|e| e.into_inner());
        r.get_or_insert(reason);
    }
}

impl Drop for ForwardSession {
    fn drop(&mut self) {
        let reason = self
            .reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .unwrap_or(end_reason::CLIENT_CLOSED);
        match self.record.finish(reason) {
            Ok(Some(m)) => {
                self.ctx.audit(
                    "session.ended",
                    json!({"session": self.id, "action": Action::PortForward.as_str(), "end_reason": reason,
                           "connections": m.connections, "bytes": m.bytes}),
                );
            }
            Ok(None) => {}
            Err(e) => {
                tracing::error!(session = %self.id, error = %e, "completing a port-forward record failed");
                self.ctx.audit(
                    "session.ended",
                    json!({"session": self.id, "action": Action::PortForward.as_str(),
                           "end_reason": end_reason::WRITE_FAILED, "error": e.to_string()}),
                );
            }
        }
    }
}

/// What `open` decided; carried into the task that connects.
pub struct Start {
    session: Arc<ForwardSession>,
    _slot: SessionSlot,
    _open: Arc<()>,
}

fn refuse(
    ctx: &Ctx,
    target: &str,
    reason: &str,
    failure: fn(String) -> ChannelOpenFailure,
) -> ChannelOpenFailure {
    ctx.audit(
        "session.denied",
        json!({"action": Action::PortForward.as_str(), "target": target, "reason": reason}),
    );
    failure(format!("podgate: denied: {reason}"))
}

fn prohibited(reason: String) -> ChannelOpenFailure {
    ChannelOpenFailure::Other {
        code: 1, // SSH_OPEN_ADMINISTRATIVELY_PROHIBITED (RFC 4254 §5.1)
        reason,
    }
}

fn shortage(reason: String) -> ChannelOpenFailure {
    ChannelOpenFailure::Other {
        code: 4, // SSH_OPEN_RESOURCE_SHORTAGE
        reason,
    }
}

/// Decide a `direct-tcpip` request. Synchronous and free of Kubernetes calls.
pub fn open(
    ctx: &Ctx,
    forwards: &mut Forwards,
    host: &str,
    port: u32,
) -> Result<Start, ChannelOpenFailure> {
    let shown = format!("{}:{port}", host.escape_default());
    let (target, port) = match request::parse_forward(host, port) {
        Ok(t) => t,
        Err(e) => return Err(refuse(ctx, &shown, &e.to_string(), prohibited)),
    };
    let what = format!("{}/{}:{port}", target.namespace, target.pod);
    let identity = &ctx.identity;
    if !identity.permit_port_forwarding {
        let reason = "the certificate does not permit port forwarding (permit-port-forwarding)";
        return Err(refuse(ctx, &what, reason, prohibited));
    }
    if let Err(reason) = identity
        .scope
        .check(Action::PortForward, &target.namespace, &target.pod)
    {
        return Err(refuse(ctx, &what, &reason, prohibited));
    }
    let ask = Ask {
        groups: &identity.groups,
        action: Action::PortForward,
        namespace: &target.namespace,
        pod: &target.pod,
        container: None,
        argv: None,
        port: Some(port),
    };
    let grant = match ctx.gateway.policy.decide(&ask) {
        Decision::Allow(grant) => grant,
        Decision::Deny(denial) => return Err(refuse(ctx, &what, &denial.message, prohibited)),
    };
    if grant.approval.is_some() {
        // A channel open has no terminal to show a request and wait on (docs/APPROVALS.md).
        let reason = format!(
            "rule {:?} requires approval, which a port-forward cannot wait for",
            grant.rule
        );
        return Err(refuse(ctx, &what, &reason, prohibited));
    }
    let max = ctx.gateway.limits.max_forwards;
    if forwards.open_now() >= max {
        let reason = format!(
            "{max} forwarded connections are open on this SSH connection (limits.max_forwards)"
        );
        return Err(refuse(ctx, &what, &reason, shortage));
    }
    let slot = match ctx.gateway.session_slot(&identity.key_id) {
        Ok(slot) => slot,
        Err(reason) => return Err(refuse(ctx, &what, &reason, shortage)),
    };
    let key = (target.namespace.clone(), target.pod.clone(), port);
    let existing = forwards.sessions.get(&key).cloned();
    if existing.is_none() && forwards.sessions.len() >= max {
        let reason = format!(
            "{max} pod ports have been forwarded on this SSH connection (limits.max_forwards)"
        );
        return Err(refuse(ctx, &what, &reason, shortage));
    }
    let session = match existing {
        // A later rule change cannot widen a running session: the grant is re-decided
        // above for every connection, and a different rule starts a new session.
        Some(s) if s.grant.rule == grant.rule => s,
        _ => {
            let s = Arc::new(start_session(ctx, target, port, grant).map_err(|reason| {
                refuse(ctx, &what, &reason, |r| ChannelOpenFailure::Other {
                    code: 2,
                    reason: r,
                })
            })?);
            // A session of an older rule ends when its last connection does.
            forwards.sessions.insert(key, s.clone());
            s
        }
    };
    Ok(Start {
        session,
        _slot: slot,
        _open: forwards.open.clone(),
    })
}

fn start_session(
    ctx: &Ctx,
    target: Target,
    port: u16,
    grant: Grant,
) -> Result<ForwardSession, String> {
    let id = meta::new_session_id();
    let identity = &ctx.identity;
    let m = Metadata {
        session: id.clone(),
        identity: identity.key_id.clone(),
        principal: identity.principal.clone(),
        groups: identity.groups.clone(),
        cert_serial: identity.serial,
        ca_fingerprint: identity.ca_fingerprint.clone(),
        client: ctx.client.clone(),
        connection: ctx.connection.clone(),
        cluster: ctx.gateway.auth.cluster.clone(),
        incident: ctx.gateway.auth.incident.clone(),
        reason: identity.reason.clone(),
        action: Action::PortForward.as_str().to_owned(),
        namespace: target.namespace.clone(),
        pod: target.pod.clone(),
        rule: grant.rule.clone(),
        ports: vec![port],
        ..Default::default()
    };
    ctx.gateway
        .admit_recording()
        .map_err(|why| format!("the session cannot be recorded safely: {why}; refusing"))?;
    let record = ForwardRecord::start(&ctx.gateway.recordings, ctx.gateway.recordings_min_free, m)
        .map_err(|e| format!("the session cannot be recorded ({e}); refusing"))?;
    let started = ctx.audit(
        "session.started",
        json!({"session": id, "action": Action::PortForward.as_str(), "namespace": target.namespace,
               "pod": target.pod, "port": port, "rule": grant.rule,
               "impersonate_groups": grant.impersonate_groups}),
    );
    if !started {
        let _ = record.finish(end_reason::ERROR);
        return Err("the audit log cannot be written; refusing".into());
    }
    Ok(ForwardSession {
        id,
        ctx: ctx.clone(),
        target,
        port,
        grant,
        started: Instant::now(),
        record,
        reason: std::sync::Mutex::new(None),
    })
}

/// Connect to the pod, confirm the channel, and copy until the forwarded connection ends.
pub async fn run(ctx: Ctx, start: Start, channel: Channel<Msg>, reply: ChannelOpenHandle) {
    let s = start.session.clone();
    let connected = connect(&ctx, &s).await;
    let forwarder = match connected {
        Ok(f) => f,
        Err(e) => {
            tracing::info!(session = %s.id, error = %e, "port-forward failed");
            ctx.audit(
                "forward.failed",
                json!({"session": s.id, "port": s.port, "error": e.to_string()}),
            );
            reply
                .reject(ChannelOpenFailure::Other {
                    code: 2, // SSH_OPEN_CONNECT_FAILED
                    reason: format!("podgate: error: {e}"),
                })
                .await;
            return;
        }
    };
    reply.accept().await;
    s.record.connection();
    let life = Lifetime::new();
    if let Some(max) = s.grant.max_session {
        // `max_session` counts from the start of the port-forward session.
        life.set_deadline(s.started + max, max);
    }
    let watcher = lifetime::watch(
        ctx.identity.valid_before,
        ctx.gateway.idle_timeout,
        &life,
        ctx.ending.clone(),
        |_| {},
    );
    let stopped = async {
        let ending = watcher.await;
        life.end(ending);
    };
    let touch = || life.touch();
    let ended = portforward::run(
        forwarder,
        s.port,
        channel.into_stream(),
        &s.record,
        &touch,
        stopped,
    )
    .await;
    match ended {
        Ended::Stopped => {
            if let Some(e) = life.ending() {
                s.set_reason(e.reason);
                tracing::info!(session = %s.id, reason = e.reason, "port-forward ended");
            }
        }
        Ended::PodError(message) | Ended::Failed(message) => {
            tracing::info!(session = %s.id, %message, "forwarded connection failed");
            ctx.audit(
                "forward.failed",
                json!({"session": s.id, "port": s.port, "error": message}),
            );
        }
        Ended::Done | Ended::ClientClosed => {}
    }
    drop(start);
}

async fn connect(ctx: &Ctx, s: &ForwardSession) -> Result<kube::api::Portforwarder, BridgeError> {
    let client = ctx.gateway.kube.client(&Impersonation {
        user: ctx.identity.key_id.clone(),
        groups: s.grant.impersonate_groups.clone(),
        session: s.id.clone(),
        serial: ctx.identity.serial,
        incident: ctx.gateway.auth.incident.clone(),
        reason: ctx.identity.reason.clone(),
    })?;
    let opening = portforward::open(client, &s.target.namespace, &s.target.pod, s.port);
    ctx.gateway.metrics.timed("portforward", opening).await
}
