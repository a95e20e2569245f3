//! One session: a command line from an SSH channel (or the certificate's force-command),
//! parsed, checked against the certificate scope and the policy, then carried out on the
//! cluster as the certificate's holder. Every decision is an audit event.
//!
//! Order matters and is the guarantee: parse → scope → policy → (only then) Kubernetes.
//! A refused request makes no Kubernetes call. The one exception is documented at
//! `resolve_container`: when the user names no container and the policy restricts
//! containers, the pod is read (as the user) to learn its default container, and the
//! decision is taken again with it.

use std::sync::Arc;

use serde_json::json;

use super::approvals::{self, Asked};
use super::io::ChannelIo;
use super::lifetime::{self, ConnectionEnd};
use super::recorded::{self, Started};
use super::{observing, prompt, text};
use crate::action::Action;
use crate::approval::Decision;
use crate::auth::Identity;
use crate::bridge::exec::{ExecSpec, Outcome};
use crate::bridge::{self, BridgeError, Impersonation};
use crate::gateway::Shared;
use crate::policy::{self, Ask, Grant};
use crate::recording::meta::{self, end_reason};
use crate::request::{self, Command, LogOptions, Target};

/// Exit statuses of DESIGN.md §2.
pub const EXIT_USAGE: u32 = 64;
pub const EXIT_DENIED: u32 = 77;
pub const EXIT_UNAVAILABLE: u32 = 69;
/// Ended by certificate expiry, max session, idle timeout or revocation (as `timeout(1)`).
pub const EXIT_ENDED: u32 = 124;
/// How long a session's work may take to stop after it had to end, before it is dropped.
const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// What a session knows about its connection.
#[derive(Clone)]
pub struct Ctx {
    pub gateway: Shared,
    pub identity: Arc<Identity>,
    pub client: String,
    pub connection: String,
    /// An end decided for the whole connection (revocation).
    pub ending: ConnectionEnd,
}

impl Ctx {
    pub(super) fn audit(&self, event: &str, mut fields: serde_json::Value) -> bool {
        if let Some(obj) = fields.as_object_mut() {
            obj.insert("connection".into(), json!(self.connection));
            obj.insert("client".into(), json!(self.client));
            obj.insert("key_id".into(), json!(self.identity.key_id));
            obj.insert("serial".into(), json!(self.identity.serial));
        }
        match self.gateway.record(event, fields) {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(error = %e, event, "audit log write failed");
                false
            }
        }
    }
}

/// Run a channel to its end and close it with the exit status. The channel ends early,
/// with exit 124 and the reason, at its deadlines (see `lifetime`).
pub async fn run(ctx: Ctx, requested: Option<Vec<u8>>, mut io: ChannelIo) {
    let life = io.lifetime.clone();
    let notifier = io.notifier();
    let watcher = lifetime::watch(
        ctx.identity.valid_before,
        ctx.gateway.idle_timeout,
        &life,
        ctx.ending.clone(),
        |text| {
            let n = notifier.clone();
            tokio::spawn(async move { n.warn(&text).await });
        },
    );
    let status = {
        let serve = serve(&ctx, requested, &mut io);
        tokio::pin!(serve);
        tokio::select! {
            status = &mut serve => status,
            ending = watcher => {
                life.end(ending);
                // The running command sees the stop and ends its recording with the reason;
                // something stuck in a Kubernetes call is dropped after a grace.
                tokio::time::timeout(STOP_GRACE, &mut serve).await.unwrap_or(EXIT_ENDED)
            }
        }
    };
    let status = match life.ending() {
        Some(ending) if !life.reported() => {
            if let Some(recorder) = io.recorder.take() {
                // The session's work was dropped before it could close its recording.
                let _ = io.message(&ending.message).await;
                let _ = recorder.marker(&format!("podgate: {}", ending.message));
                let summary = recorder.finish(ending.reason, Some(EXIT_ENDED));
                let mut fields = recorder.ended_fields();
                fields["session"] = json!(recorder.session());
                fields["end_reason"] = json!(ending.reason);
                fields["exit_status"] = json!(EXIT_ENDED);
                fields["cast_sha256"] = json!(summary.ok().map(|s| s.sha256));
                ctx.audit("session.ended", fields);
                io.lifetime.session_ended();
            } else {
                let _ = io.message(&ending.message).await;
            }
            EXIT_ENDED
        }
        Some(_) => EXIT_ENDED,
        None => status,
    };
    if !io.closed {
        io.finish(status).await;
    }
}

async fn serve(ctx: &Ctx, requested: Option<Vec<u8>>, io: &mut ChannelIo) -> u32 {
    match (ctx.identity.force_command.clone(), requested) {
        (Some(forced), requested) => {
            // As in OpenSSH, the certificate's force-command replaces the request, which
            // is only logged.
            let asked = requested.map(|r| String::from_utf8_lossy(&r).into_owned());
            tracing::info!(key_id = %ctx.identity.key_id, requested = ?asked, forced = %forced, "force-command applied");
            run_line(ctx, forced.as_bytes(), io).await
        }
        (None, Some(line)) => run_line(ctx, &line, io).await,
        (None, None) if io.pty.is_some() => prompt::run(ctx, io).await,
        (None, None) => {
            let _ = io
                .message("no command given; try: ssh GATEWAY help (or ssh -t GATEWAY for a prompt)")
                .await;
            EXIT_USAGE
        }
    }
}

/// Parse and carry out one command line.
pub async fn run_line(ctx: &Ctx, line: &[u8], io: &mut ChannelIo) -> u32 {
    match request::parse(line) {
        Ok(cmd) => execute(ctx, cmd, io).await,
        Err(e) => {
            let _ = io.message(&e.to_string()).await;
            EXIT_USAGE
        }
    }
}

/// Carry out a parsed command; returns the exit status.
pub async fn execute(ctx: &Ctx, cmd: Command, io: &mut ChannelIo) -> u32 {
    match cmd {
        Command::Help => {
            let _ = io.text(request::HELP).await;
            0
        }
        Command::Whoami => {
            let _ = io.text(&text::whoami(&ctx.gateway, &ctx.identity)).await;
            0
        }
        Command::Pods { namespace } => pods(ctx, namespace, io).await,
        Command::Exec { target, argv } => {
            let tty = io.pty.is_some();
            run_exec(ctx, Action::Exec, target, argv, tty, io).await
        }
        Command::Shell { target } => {
            let tty = io.pty.is_some();
            run_exec(ctx, Action::Shell, target, Vec::new(), tty, io).await
        }
        Command::Logs { target, options } => logs(ctx, target, options, io).await,
        Command::Requests => approvals::requests(ctx, io).await,
        Command::Approve { id, window } => {
            let by = ctx.identity.key_id.clone();
            approvals::decide(ctx, io, &id, Decision::Approve { by, window }).await
        }
        Command::Deny { id, reason } => {
            let by = ctx.identity.key_id.clone();
            approvals::decide(ctx, io, &id, Decision::Deny { by, reason }).await
        }
        Command::Sessions => observing::sessions(ctx, io).await,
        Command::Watch { session } => observing::watch(ctx, io, &session).await,
    }
}

/// Certificate scope, then policy (`Policy::decide_within`).
fn decide(
    ctx: &Ctx,
    action: Action,
    target: &Target,
    container: Option<&str>,
    argv: Option<&[String]>,
) -> Result<Grant, String> {
    let ask = ask(ctx, action, &target.namespace, &target.pod, container, argv);
    ctx.gateway.policy.decide_within(&ctx.identity.scope, &ask)
}

/// The policy's answer for the certificate's groups (the scope is checked by the caller).
fn ask_policy(
    ctx: &Ctx,
    action: Action,
    namespace: &str,
    pod: &str,
    container: Option<&str>,
    argv: Option<&[String]>,
) -> Result<Grant, String> {
    match ctx
        .gateway
        .policy
        .decide(&ask(ctx, action, namespace, pod, container, argv))
    {
        policy::Decision::Allow(grant) => Ok(grant),
        policy::Decision::Deny(denial) => Err(denial.message),
    }
}

fn ask<'a>(
    ctx: &'a Ctx,
    action: Action,
    namespace: &'a str,
    pod: &'a str,
    container: Option<&'a str>,
    argv: Option<&'a [String]>,
) -> Ask<'a> {
    Ask {
        groups: &ctx.identity.groups,
        action,
        namespace,
        pod,
        container,
        argv,
        port: None,
    }
}

async fn deny(
    ctx: &Ctx,
    io: &ChannelIo,
    action: Action,
    target: &str,
    command: Option<&str>,
    reason: &str,
) -> u32 {
    ctx.audit(
        "session.denied",
        json!({"action": action.as_str(), "target": target, "command": command, "reason": reason}),
    );
    let _ = io.message(&format!("denied: {reason}")).await;
    EXIT_DENIED
}

async fn error(io: &ChannelIo, e: &BridgeError) -> u32 {
    let _ = io.message(&format!("error: {e}")).await;
    EXIT_UNAVAILABLE
}

/// A request that failed before its session began (the cluster unreachable, the pod not
/// found): the user is told, and the audit log says so (`session.failed`).
async fn failed(
    ctx: &Ctx,
    io: &ChannelIo,
    action: Action,
    target: &str,
    command: Option<&str>,
    e: &BridgeError,
) -> u32 {
    ctx.audit(
        "session.failed",
        json!({"action": action.as_str(), "target": target, "command": command, "reason": e.to_string()}),
    );
    error(io, e).await
}

fn target_text(t: &Target) -> String {
    crate::request::target_text(&t.namespace, &t.pod, t.container.as_deref())
}

fn client_for(ctx: &Ctx, grant: &Grant, session: &str) -> Result<kube::Client, BridgeError> {
    ctx.gateway.kube.client(&Impersonation {
        user: ctx.identity.key_id.clone(),
        groups: grant.impersonate_groups.clone(),
        session: session.to_owned(),
        serial: ctx.identity.serial,
        incident: ctx.gateway.auth.incident.clone(),
        reason: ctx.identity.reason.clone(),
    })
}

/// The container to use, and the grant for it. When the user named no container, the pod
/// is read to find its default and, if the allowing rule restricts containers, the
/// decision is taken again with the real name.
async fn resolve_container(
    ctx: &Ctx,
    client: &kube::Client,
    action: Action,
    target: &Target,
    argv: Option<&[String]>,
    grant: Grant,
) -> Result<(String, Grant), Result<String, BridgeError>> {
    if let Some(c) = &target.container {
        return Ok((c.clone(), grant));
    }
    let lookup = bridge::pods::get(client.clone(), &target.namespace, &target.pod);
    let pod = ctx
        .gateway
        .metrics
        .timed("get pod", lookup)
        .await
        .map_err(Err)?;
    let container = bridge::pods::default_container(&pod).ok_or_else(|| {
        Err(BridgeError::Stream(format!(
            "pod {} has no containers",
            target.pod
        )))
    })?;
    let grant = decide(ctx, action, target, Some(&container), argv).map_err(Ok)?;
    Ok((container, grant))
}

async fn run_exec(
    ctx: &Ctx,
    action: Action,
    target: Target,
    argv: Vec<String>,
    tty: bool,
    io: &mut ChannelIo,
) -> u32 {
    let what = target_text(&target);
    let line = (action == Action::Exec).then(|| request::command_line(&argv));
    let argv_ref = (action == Action::Exec).then_some(argv.as_slice());
    let grant = match decide(ctx, action, &target, target.container.as_deref(), argv_ref) {
        Ok(g) => g,
        Err(reason) => return deny(ctx, io, action, &what, line.as_deref(), &reason).await,
    };
    let session = meta::new_session_id();
    let asked = Asked {
        action,
        target: &target,
        command: line.as_deref(),
        session: &session,
    };
    let approval = match approvals::gate(ctx, io, &grant, &asked).await {
        Ok(a) => a,
        Err(status) => return status,
    };
    let client = match client_for(ctx, &grant, &session) {
        Ok(c) => c,
        Err(e) => return failed(ctx, io, action, &what, line.as_deref(), &e).await,
    };
    let (container, grant) =
        match resolve_container(ctx, &client, action, &target, argv_ref, grant).await {
            Ok(r) => r,
            Err(Ok(reason)) => return deny(ctx, io, action, &what, line.as_deref(), &reason).await,
            Err(Err(e)) => return failed(ctx, io, action, &what, line.as_deref(), &e).await,
        };
    if let Err(reason) = approval_still_covers(&grant, approval.as_ref()) {
        return deny(ctx, io, action, &what, line.as_deref(), &reason).await;
    }
    let argv = if action == Action::Shell {
        vec![grant.shell.clone()]
    } else {
        argv
    };
    let spec = ExecSpec {
        namespace: target.namespace.clone(),
        pod: target.pod.clone(),
        container: container.clone(),
        argv,
        tty,
    };
    let started = Started {
        session: &session,
        action,
        namespace: &spec.namespace,
        pod: &spec.pod,
        container: &container,
        command: line.as_deref(),
        tty,
        grant: &grant,
        cap: None,
        approval,
    };
    let running = match recorded::begin(ctx, io, &started).await {
        Ok(r) => r,
        Err(status) => return status,
    };
    let (status, reason) = match bridge::exec::run(client, &spec, io, &ctx.gateway.metrics).await {
        Ok(Outcome::Exited(code)) => (code, end_reason::EXITED),
        Ok(Outcome::ClientGone) => (255, end_reason::CLIENT_CLOSED),
        // `recorded::end` reports the reason from the channel's lifetime.
        Ok(Outcome::Stopped) => (EXIT_ENDED, end_reason::ERROR),
        Err(e) => (error(io, &e).await, end_reason::ERROR),
    };
    recorded::end(ctx, io, running, reason, status).await
}

/// After the container is known the decision may come from another rule: one that asks
/// for approval when none was given is refused (name the container to be asked for it).
fn approval_still_covers(
    grant: &Grant,
    approval: Option<&meta::ApprovalRecord>,
) -> Result<(), String> {
    match (&grant.approval, approval) {
        (Some(_), None) => Err(format!(
            "rule {:?} requires approval for this container; name the container \
             (NS/POD:CONTAINER) to ask for it",
            grant.rule
        )),
        _ => Ok(()),
    }
}

async fn logs(ctx: &Ctx, target: Target, options: LogOptions, io: &mut ChannelIo) -> u32 {
    let what = target_text(&target);
    let grant = match decide(
        ctx,
        Action::Logs,
        &target,
        target.container.as_deref(),
        None,
    ) {
        Ok(g) => g,
        Err(reason) => return deny(ctx, io, Action::Logs, &what, None, &reason).await,
    };
    let session = meta::new_session_id();
    let asked = Asked {
        action: Action::Logs,
        target: &target,
        command: None,
        session: &session,
    };
    let approval = match approvals::gate(ctx, io, &grant, &asked).await {
        Ok(a) => a,
        Err(status) => return status,
    };
    let client = match client_for(ctx, &grant, &session) {
        Ok(c) => c,
        Err(e) => return failed(ctx, io, Action::Logs, &what, None, &e).await,
    };
    let (container, grant) =
        match resolve_container(ctx, &client, Action::Logs, &target, None, grant).await {
            Ok(r) => r,
            Err(Ok(reason)) => return deny(ctx, io, Action::Logs, &what, None, &reason).await,
            Err(Err(e)) => return failed(ctx, io, Action::Logs, &what, None, &e).await,
        };
    if let Err(reason) = approval_still_covers(&grant, approval.as_ref()) {
        return deny(ctx, io, Action::Logs, &what, None, &reason).await;
    }
    let started = Started {
        session: &session,
        action: Action::Logs,
        namespace: &target.namespace,
        pod: &target.pod,
        container: &container,
        command: None,
        tty: io.pty.is_some(),
        grant: &grant,
        cap: Some(ctx.gateway.limits.logs_record_cap),
        approval,
    };
    let running = match recorded::begin(ctx, io, &started).await {
        Ok(r) => r,
        Err(status) => return status,
    };
    let (status, reason) = match bridge::logs::run(
        client,
        &target.namespace,
        &target.pod,
        &container,
        &options,
        io,
        &ctx.gateway.metrics,
    )
    .await
    {
        Ok(()) if io.closed => (0, end_reason::CLIENT_CLOSED),
        Ok(()) => (0, end_reason::EXITED),
        Err(e) => (error(io, &e).await, end_reason::ERROR),
    };
    recorded::end(ctx, io, running, reason, status).await
}

async fn pods(ctx: &Ctx, namespace: Option<String>, io: &mut ChannelIo) -> u32 {
    let namespaces = match &namespace {
        Some(ns) => vec![ns.clone()],
        None => text::listable_namespaces(&ctx.gateway, &ctx.identity),
    };
    if namespaces.is_empty() {
        let reason = "no policy rule lets your groups list pods in a namespace that can be enumerated; name one: pods NAMESPACE";
        return deny(ctx, io, Action::List, "", None, reason).await;
    }
    let session = meta::new_session_id();
    let mut rows = Vec::new();
    let mut denied = Vec::new();
    for ns in &namespaces {
        let ns_target = Target {
            namespace: ns.clone(),
            pod: String::new(),
            container: None,
        };
        let grant = match decide_namespace(ctx, ns) {
            Ok(g) => g,
            Err(reason) => {
                denied.push(reason);
                continue;
            }
        };
        let client = match client_for(ctx, &grant, &session) {
            Ok(c) => c,
            Err(e) => return failed(ctx, io, Action::List, ns, None, &e).await,
        };
        let listed = bridge::pods::list(client, ns);
        match ctx.gateway.metrics.timed("list pods", listed).await {
            Ok(found) => rows.extend(found.into_iter().filter(|row| {
                let t = Target {
                    pod: row.name.clone(),
                    ..ns_target.clone()
                };
                decide(ctx, Action::List, &t, None, None).is_ok()
            })),
            Err(e) => return failed(ctx, io, Action::List, ns, None, &e).await,
        }
    }
    if rows.is_empty() && !denied.is_empty() {
        let what = namespace.unwrap_or_default();
        return deny(ctx, io, Action::List, &what, None, &denied.join("; ")).await;
    }
    ctx.audit(
        "session.started",
        json!({"session": session, "action": "list", "namespaces": namespaces}),
    );
    let _ = io
        .text(&text::pod_table(&rows, std::time::SystemTime::now()))
        .await;
    ctx.audit(
        "session.ended",
        json!({"session": session, "action": "list", "end_reason": "exited", "exit_status": 0}),
    );
    0
}

/// `list` of a whole namespace: the scope must include the namespace and the action; the
/// policy is asked with an empty pod name (namespace-level).
fn decide_namespace(ctx: &Ctx, namespace: &str) -> Result<Grant, String> {
    let scope = &ctx.identity.scope;
    if !scope.allows_action(Action::List) {
        return Err("certificate scope does not include action \"list\"".into());
    }
    if !scope.allows_namespace(namespace) {
        return Err(format!(
            "certificate scope does not include namespace {namespace:?}"
        ));
    }
    ask_policy(ctx, Action::List, namespace, "", None, None)
}
