//! The recording side of one session: open the transcript and metadata before anything
//! runs (refusing the session if they cannot be opened), take the identity's session slot,
//! arm the rule's `max_session`, and at the end close the recording, write
//! `session.ended`, and tell the user why a session that had to end did (exit 124).
//!
//! Guarantees: nothing runs unrecorded; every started session gets exactly one
//! `session.ended` with the end reason of the recording's metadata.

use serde_json::json;

use super::io::{ChannelIo, PtySize};
use super::session::{Ctx, EXIT_DENIED, EXIT_ENDED, EXIT_UNAVAILABLE};
use crate::action::Action;
use crate::gateway::SessionSlot;
use crate::observe::LiveInfo;
use crate::policy::Grant;
use crate::recording::cast::CastHeader;
use crate::recording::meta::{ApprovalRecord, Metadata, Observer, end_reason};
use crate::recording::session::{FLUSH_EVERY, Recorder};

/// What a recorded session is, for its metadata and its `session.started` event.
pub struct Started<'a> {
    pub session: &'a str,
    pub action: Action,
    pub namespace: &'a str,
    pub pod: &'a str,
    pub container: &'a str,
    pub command: Option<&'a str>,
    pub tty: bool,
    pub grant: &'a Grant,
    /// Most transcript bytes to record (logs sessions).
    pub cap: Option<u64>,
    /// The approval it runs under, if its rule asked for one.
    pub approval: Option<ApprovalRecord>,
}

/// A recorded session in progress: its slot among the identity's sessions and the task
/// that flushes its transcript every second.
pub struct Running {
    session: String,
    ticker: tokio::task::JoinHandle<()>,
    _slot: SessionSlot,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.ticker.abort();
    }
}

/// Open the session's recording and announce it. If the recording cannot be opened the
/// session is refused (exit 69 with the reason): nothing runs unrecorded. Past the
/// identity's session limit it is refused (exit 77).
pub async fn begin(ctx: &Ctx, io: &mut ChannelIo, s: &Started<'_>) -> Result<Running, u32> {
    let id = &ctx.identity;
    let target = format!("{}/{}", s.namespace, s.pod);
    let slot = match ctx.gateway.session_slot(&id.key_id) {
        Ok(slot) => slot,
        Err(reason) => {
            ctx.audit(
                "session.denied",
                json!({"session": s.session, "action": s.action.as_str(), "target": target, "reason": reason}),
            );
            let _ = io.message(&format!("denied: {reason}")).await;
            return Err(EXIT_DENIED);
        }
    };
    let meta = Metadata {
        session: s.session.to_owned(),
        identity: id.key_id.clone(),
        principal: id.principal.clone(),
        groups: id.groups.clone(),
        cert_serial: id.serial,
        ca_fingerprint: id.ca_fingerprint.clone(),
        client: ctx.client.clone(),
        connection: ctx.connection.clone(),
        cluster: ctx.gateway.auth.cluster.clone(),
        incident: ctx.gateway.auth.incident.clone(),
        reason: id.reason.clone(),
        action: s.action.as_str().to_owned(),
        namespace: s.namespace.to_owned(),
        pod: s.pod.to_owned(),
        container: Some(s.container.to_owned()),
        command: s.command.map(str::to_owned),
        tty: s.tty,
        rule: s.grant.rule.clone(),
        record_input: s.grant.record_input,
        approval: s.approval.clone(),
        ..Default::default()
    };
    let size = io.pty.unwrap_or(PtySize { cols: 80, rows: 24 });
    let header = CastHeader {
        width: size.cols,
        height: size.rows,
        timestamp: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        command: s.command.map(str::to_owned),
        title: Some(format!(
            "{} {} {}/{}:{}",
            id.key_id, s.action, s.namespace, s.pod, s.container
        )),
        env: Default::default(),
    };
    let started = ctx
        .gateway
        .admit_recording()
        .map_err(|why| format!("the session cannot be recorded safely: {why}; refusing"))
        .and_then(|()| {
            Recorder::start(
                &ctx.gateway.recordings,
                ctx.gateway.recordings_min_free,
                meta,
                &header,
                s.cap,
            )
            .map_err(|e| format!("the session cannot be recorded ({e}); refusing"))
        });
    let recorder = match started {
        Ok(r) if ctx.gateway.transcripts == crate::gateway::Transcripts::Recorded => r,
        Ok(r) => r.discarding(),
        Err(reason) => {
            ctx.audit(
                "session.denied",
                json!({"session": s.session, "action": s.action.as_str(), "target": target, "reason": reason}),
            );
            let _ = io.message(&format!("error: {reason}")).await;
            return Err(EXIT_UNAVAILABLE);
        }
    };
    if !ctx.audit(
        "session.started",
        json!({
            "session": s.session, "action": s.action.as_str(), "namespace": s.namespace, "pod": s.pod,
            "container": s.container, "command": s.command, "tty": s.tty, "rule": s.grant.rule,
            "impersonate_groups": s.grant.impersonate_groups,
        }),
    ) {
        let _ = recorder.finish(end_reason::ERROR, None);
        let _ = io.message("error: the audit log cannot be written; refusing").await;
        return Err(EXIT_UNAVAILABLE);
    }
    let ticking = recorder.clone();
    let ticker = tokio::spawn(async move {
        let mut every = tokio::time::interval(FLUSH_EVERY);
        loop {
            every.tick().await;
            if ticking.tick().is_err() {
                break;
            }
        }
    });
    io.lifetime
        .session_started(s.grant.max_session, recorder.clone());
    io.recorder = Some(recorder);
    observable(ctx, io, s);
    Ok(Running {
        session: s.session.to_owned(),
        ticker,
        _slot: slot,
    })
}

/// Register the session for `watch`, and pass "X is watching" notices on to its user.
/// A session that cannot be registered (too many live sessions) runs unobservable.
fn observable(ctx: &Ctx, io: &mut ChannelIo, s: &Started<'_>) {
    let info = LiveInfo {
        session: s.session.to_owned(),
        identity: ctx.identity.key_id.clone(),
        action: s.action.as_str().to_owned(),
        namespace: s.namespace.to_owned(),
        pod: s.pod.to_owned(),
        container: Some(s.container.to_owned()),
        command: s.command.map(str::to_owned),
        started: std::time::SystemTime::now(),
        pty: io.pty.map(|p| (p.cols, p.rows)),
        observers: Vec::new(),
    };
    match ctx.gateway.hub.register(info) {
        Ok(live) => {
            if let Some(mut notices) = live.notices() {
                let notifier = io.notifier();
                tokio::spawn(async move {
                    while let Some(text) = notices.recv().await {
                        notifier.notice(&text).await;
                    }
                });
            }
            io.live = Some(std::sync::Arc::new(live));
        }
        Err(e) => tracing::warn!(error = %e, session = s.session, "session cannot be observed"),
    }
}

/// Close the recording, write `session.ended`, and tell the user why a session that had
/// to end did (exit 124) or that the recording failed (exit 69, reason `write failed`).
pub async fn end(
    ctx: &Ctx,
    io: &mut ChannelIo,
    running: Running,
    reason: &str,
    status: u32,
) -> u32 {
    let session = running.session.clone();
    drop(running);
    if let Some(live) = io.live.take() {
        // Ends every watch of it; who watched goes into the metadata.
        if let Some(r) = &io.recorder {
            for (identity, since) in live.observers_ever() {
                let _ = r.observer(Observer {
                    identity,
                    since: crate::recording::meta::rfc3339(since),
                });
            }
        }
    }
    io.lifetime.session_ended();
    let ending = io.lifetime.ending();
    if let Some(e) = &ending {
        // Said before the recording closes, so the transcript shows it too.
        let _ = io.message(&e.message).await;
        if let Some(r) = &io.recorder {
            let _ = r.marker(&format!("podgate: {}", e.message));
        }
        io.lifetime.mark_reported();
    }
    let Some(recorder) = io.recorder.take() else {
        return status;
    };
    let failed = recorder.failed();
    let (status, reason) = match (&failed, &ending) {
        (Some(_), _) => (EXIT_UNAVAILABLE, end_reason::WRITE_FAILED),
        (None, Some(e)) => (EXIT_ENDED, e.reason),
        (None, None) => (status, reason),
    };
    // `finish` fsyncs the transcript: off the async workers.
    let closing = recorder.clone();
    let reason_owned = reason.to_owned();
    let summary = match tokio::task::spawn_blocking(move || {
        closing.finish(&reason_owned, Some(status))
    })
    .await
    {
        Ok(result) => result,
        Err(e) => Err(crate::recording::session::RecordError::Failed(format!(
            "closing the recording failed: {e}"
        ))),
    };
    let mut fields = recorder.ended_fields();
    fields["session"] = json!(session);
    fields["end_reason"] = json!(reason);
    fields["exit_status"] = json!(status);
    fields["cast_sha256"] = json!(summary.as_ref().ok().map(|s| s.sha256.clone()));
    ctx.audit("session.ended", fields);
    if let Some(why) = failed.or_else(|| summary.err().map(|e| e.to_string())) {
        let _ = io
            .message(&format!(
                "error: the session recording failed ({why}); the session was ended"
            ))
            .await;
        return EXIT_UNAVAILABLE;
    }
    status
}
