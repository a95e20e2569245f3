//! A second person in the loop, on the SSH side (issue 11): a request whose grant asks for
//! approval waits here, and approvers decide with `requests`, `approve ID [--for DUR]` and
//! `deny ID --reason TEXT`. The state lives in the Kubernetes API (`approval::Approvals`,
//! the gateway's own identity), so any replica can decide what another is waiting on.
//!
//! Guarantees:
//! - A request that needs approval makes no Kubernetes call as the user until it is
//!   approved (the approval request itself is written with the gateway's identity).
//! - Fail closed: no approvals store, a store that cannot be written or read, a request
//!   that disappears, a denial, expiry or the user leaving all refuse (exit 77, or 69 when
//!   the store failed), each with a one-line reason and an audit event.
//! - Nobody approves their own request (`approval::may_decide`), and only members of the
//!   rule's approver groups decide.
//! - A standing approval (`--for`) covers only the same user, action, target and command.
//!
//! Not here: whether a request needs approval (the policy's `Grant::approval`).

use std::time::{Duration, SystemTime};

use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::io::{Absorbed, ChannelIo};
use super::session::{Ctx, EXIT_DENIED, EXIT_UNAVAILABLE};
use crate::action::Action;
use crate::approval::{self, ApprovalError, Decision, Request, State, Status, Stored};
use crate::policy::Grant;
use crate::recording::meta::{self, ApprovalRecord};
use crate::request::Target;

/// How often a waiting request is read back.
const POLL: Duration = Duration::from_secs(1);

/// What the request is, for the approval request and the messages.
pub(super) struct Asked<'a> {
    pub action: Action,
    pub target: &'a Target,
    pub command: Option<&'a str>,
    pub session: &'a str,
}

fn what(a: &Asked<'_>) -> String {
    let t = a.target;
    let target = crate::request::target_text(&t.namespace, &t.pod, t.container.as_deref());
    match a.command {
        Some(c) => format!("{} {target} -- {c}", a.action),
        None => format!("{} {target}", a.action),
    }
}

async fn refuse(ctx: &Ctx, io: &ChannelIo, a: &Asked<'_>, reason: &str, status: u32) -> u32 {
    ctx.audit(
        "session.denied",
        json!({"session": a.session, "action": a.action.as_str(), "target": what(a), "command": a.command, "reason": reason}),
    );
    let prefix = if status == EXIT_DENIED {
        "denied"
    } else {
        "error"
    };
    let _ = io.message(&format!("{prefix}: {reason}")).await;
    status
}

/// If `grant` asks for approval, wait for it. `Ok(None)`: no approval was needed;
/// `Ok(Some(record))`: approved (by a decision or a standing approval); `Err(status)`:
/// refused, already told to the user and audited.
pub(super) async fn gate(
    ctx: &Ctx,
    io: &mut ChannelIo,
    grant: &Grant,
    a: &Asked<'_>,
) -> Result<Option<ApprovalRecord>, u32> {
    let Some(need) = &grant.approval else {
        return Ok(None);
    };
    let Some(store) = ctx.gateway.approvals.clone() else {
        let reason = format!(
            "rule {:?} requires approval, and this gateway has no approvals store",
            grant.rule
        );
        return Err(refuse(ctx, io, a, &reason, EXIT_DENIED).await);
    };
    let id = &ctx.identity;
    let now = SystemTime::now();
    let request = Request {
        id: approval::new_id(),
        requester: id.key_id.clone(),
        principal: id.principal.clone(),
        serial: id.serial,
        action: a.action.as_str().to_owned(),
        namespace: a.target.namespace.clone(),
        pod: a.target.pod.clone(),
        container: a.target.container.clone(),
        command: a.command.map(str::to_owned),
        reason: id.reason.clone(),
        rule: grant.rule.clone(),
        approvers: need.approvers.clone(),
        created: now,
        expires: now + need.ttl,
        max_window: need.window_max,
        gateway: ctx.gateway.name.clone(),
        session: a.session.to_owned(),
    };
    match store.find_window(&request, now).await {
        Ok(Some(w)) => {
            ctx.audit(
                "approval.window_used",
                json!({"session": a.session, "request": w.id, "approved_by": w.approved_by,
                       "until": meta::rfc3339(w.until), "target": what(a)}),
            );
            return Ok(Some(ApprovalRecord {
                request: w.id,
                approved_by: w.approved_by,
                approved_at: meta::rfc3339(now),
                window_until: Some(meta::rfc3339(w.until)),
            }));
        }
        Ok(None) => {}
        Err(e) => {
            let reason = format!("approval required, but {e}");
            return Err(refuse(ctx, io, a, &reason, EXIT_UNAVAILABLE).await);
        }
    }
    if let Err(e) = store.create(&request).await {
        let reason = format!("approval required, but {e}");
        return Err(refuse(ctx, io, a, &reason, EXIT_UNAVAILABLE).await);
    }
    ctx.audit(
        "approval.requested",
        json!({"session": a.session, "request": request.id, "rule": request.rule, "target": what(a),
               "command": a.command, "reason": request.reason, "approvers": request.approvers,
               "expires": meta::rfc3339(request.expires)}),
    );
    let _ = io
        .message(&format!(
            "approval required by rule {:?}: request {} for {}",
            grant.rule,
            request.id,
            what(a)
        ))
        .await;
    let _ = io
        .message(&format!(
            "reason: {}; approvers: members of {}; an approver runs: ssh GATEWAY approve {}",
            request.reason.as_deref().unwrap_or("(none given)"),
            need.approvers.join(", "),
            request.id
        ))
        .await;
    let _ = io
        .message(&format!(
            "waiting up to {} for a decision{}",
            humantime::format_duration(need.ttl),
            if io.pty.is_some() {
                " (Ctrl-C to give up)"
            } else {
                ""
            }
        ))
        .await;
    let outcome = wait(ctx, io, &store, &request).await;
    if io.pty.is_some() {
        // The countdown line is overwritten in place; end it.
        let _ = io.out("\r\n").await;
    }
    let stored = match outcome {
        Ok(s) => s,
        Err(Waited::Left) => {
            let _ = store
                .decide(&request.id, Decision::Cancel, SystemTime::now())
                .await;
            ctx.audit(
                "approval.cancelled",
                json!({"session": a.session, "request": request.id}),
            );
            let reason = format!(
                "request {} cancelled: you left before a decision",
                request.id
            );
            return Err(refuse(ctx, io, a, &reason, EXIT_DENIED).await);
        }
        Err(Waited::Store(e)) => {
            let reason = format!("request {}: {e}", request.id);
            return Err(refuse(ctx, io, a, &reason, EXIT_UNAVAILABLE).await);
        }
    };
    match (stored.status(SystemTime::now()), &stored.state) {
        (
            Status::Approved,
            State::Approved {
                by,
                at,
                window_until,
            },
        ) => {
            let _ = io
                .message(&format!("request {} approved by {by}", request.id))
                .await;
            Ok(Some(ApprovalRecord {
                request: request.id.clone(),
                approved_by: by.clone(),
                approved_at: meta::rfc3339(*at),
                window_until: window_until.map(meta::rfc3339),
            }))
        }
        (Status::Denied, State::Denied { by, reason, .. }) => {
            let why = format!("request {} was denied by {by}: {reason}", request.id);
            Err(refuse(ctx, io, a, &why, EXIT_DENIED).await)
        }
        (Status::Expired, _) => {
            ctx.audit(
                "approval.expired",
                json!({"session": a.session, "request": request.id}),
            );
            let why = format!(
                "request {} expired after {} without a decision",
                request.id,
                humantime::format_duration(need.ttl)
            );
            Err(refuse(ctx, io, a, &why, EXIT_DENIED).await)
        }
        (status, _) => {
            let why = format!("request {} is {status:?}", request.id);
            Err(refuse(ctx, io, a, &why, EXIT_DENIED).await)
        }
    }
}

enum Waited {
    /// The user closed the channel, or pressed Ctrl-C on a PTY.
    Left,
    Store(ApprovalError),
}

/// Wait for the decision; on a PTY, a countdown line updated every second.
async fn wait(
    ctx: &Ctx,
    io: &mut ChannelIo,
    store: &approval::Approvals,
    request: &Request,
) -> Result<Stored, Waited> {
    let cancel = CancellationToken::new();
    let waiting = store.wait(&request.id, POLL, cancel.clone());
    tokio::pin!(waiting);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let pty = io.pty.is_some();
    let result = loop {
        tokio::select! {
            done = &mut waiting => break done.map_err(Waited::Store),
            _ = tick.tick(), if pty => {
                let left = request.expires.duration_since(SystemTime::now()).unwrap_or_default();
                let line = format!(
                    "\rpodgate: waiting for approval of {}: {} left ",
                    request.id,
                    clock(left)
                );
                if io.out(line).await.is_err() {
                    break Err(Waited::Left);
                }
            }
            // Without a PTY the input is the command's stdin: left queued for it (bounded
            // by the input budget), not read here.
            // Typed ahead while waiting is not passed on (it was not approved).
            input = io.input.recv(), if pty => match io.absorb(input) {
                Absorbed::Typed(bytes) if bytes.contains(&0x03) => break Err(Waited::Left),
                Absorbed::Closed => break Err(Waited::Left),
                Absorbed::Typed(_) | Absorbed::Noted => {}
            },
            () = ctx.gateway.stopping.cancelled() => break Err(Waited::Left),
        }
    };
    cancel.cancel();
    result
}

/// `m:ss`.
fn clock(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}:{:02}", s / 60, s % 60)
}

/// `requests`: pending requests the caller may decide, and the caller's own.
pub(super) async fn requests(ctx: &Ctx, io: &mut ChannelIo) -> u32 {
    let Some(store) = ctx.gateway.approvals.clone() else {
        let _ = io
            .message("error: this gateway has no approvals store")
            .await;
        return EXIT_UNAVAILABLE;
    };
    let all = match store.list().await {
        Ok(all) => all,
        Err(e) => {
            let _ = io.message(&format!("error: {e}")).await;
            return EXIT_UNAVAILABLE;
        }
    };
    let now = SystemTime::now();
    let id = &ctx.identity;
    let rows: Vec<(Stored, &'static str)> = all
        .into_iter()
        .filter(|s| s.status(now) == Status::Pending)
        .filter_map(|s| {
            if s.request.requester == id.key_id {
                Some((s, "yours"))
            } else if approval::may_decide(&id.key_id, &id.groups, &s.request).is_ok() {
                Some((s, "you may decide"))
            } else {
                None
            }
        })
        .collect();
    let _ = io.text(&super::text::request_table(&rows, now)).await;
    0
}

/// `approve ID [--for DUR]` and `deny ID --reason TEXT`.
pub(super) async fn decide(ctx: &Ctx, io: &mut ChannelIo, id: &str, decision: Decision) -> u32 {
    let Some(store) = ctx.gateway.approvals.clone() else {
        let _ = io
            .message("error: this gateway has no approvals store")
            .await;
        return EXIT_UNAVAILABLE;
    };
    let verb = match &decision {
        Decision::Approve { .. } => "approve",
        Decision::Deny { .. } => "deny",
        Decision::Cancel => "cancel",
    };
    let refused = |reason: String| {
        ctx.audit(
            "approval.refused",
            json!({"request": id, "decision": verb, "reason": reason}),
        );
        reason
    };
    let stored = match store.get(id).await {
        Ok(s) => s,
        Err(e @ ApprovalError::NotFound(_)) => {
            let _ = io
                .message(&format!("denied: {}", refused(e.to_string())))
                .await;
            return EXIT_DENIED;
        }
        Err(e) => {
            let _ = io.message(&format!("error: {e}")).await;
            return EXIT_UNAVAILABLE;
        }
    };
    let me = &ctx.identity;
    if let Err(why) = approval::may_decide(&me.key_id, &me.groups, &stored.request) {
        let _ = io.message(&format!("denied: {}", refused(why))).await;
        return EXIT_DENIED;
    }
    let decided = match store.decide(id, decision, SystemTime::now()).await {
        Ok(s) => s,
        Err(e @ ApprovalError::Api(_)) => {
            let _ = io.message(&format!("error: {e}")).await;
            return EXIT_UNAVAILABLE;
        }
        Err(e) => {
            let _ = io
                .message(&format!("denied: {}", refused(e.to_string())))
                .await;
            return EXIT_DENIED;
        }
    };
    let r = &decided.request;
    let target = crate::request::target_text(&r.namespace, &r.pod, r.container.as_deref());
    let mut fields = json!({"request": id, "requester": r.requester, "rule": r.rule,
        "action": r.action, "target": target, "command": r.command, "session": r.session});
    let (event, said) = match &decided.state {
        State::Approved { window_until, .. } => {
            let said = match window_until {
                Some(until) => format!(
                    "approved {id}: {} may run {} {target}{} until {}",
                    r.requester,
                    r.action,
                    r.command
                        .as_deref()
                        .map(|c| format!(" -- {c}"))
                        .unwrap_or_default(),
                    meta::rfc3339(*until)
                ),
                None => format!("approved {id} ({} {} {target})", r.requester, r.action),
            };
            fields["window_until"] = json!(window_until.map(meta::rfc3339));
            ("approval.approved", said)
        }
        State::Denied { reason, .. } => {
            fields["denial_reason"] = json!(reason);
            (
                "approval.denied",
                format!("denied {id} ({} {} {target})", r.requester, r.action),
            )
        }
        State::Pending | State::Cancelled { .. } => (
            "approval.cancelled",
            format!("{id} is {:?}", decided.status(SystemTime::now())),
        ),
    };
    ctx.audit(event, fields);
    let _ = io.text(&format!("{said}\n")).await;
    0
}
