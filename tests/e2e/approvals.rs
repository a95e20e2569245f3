//! A second person in the loop, through the real `ssh`: a requester's command waits for an
//! approver with a certificate of their own, who approves, denies, or lets it expire;
//! nobody approves their own request; a standing approval (`--for`) is reused within its
//! time and not after; a request made on one gateway process is approved on another that
//! shares the cluster; and every decision is in the audit log.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

use super::gateway_process::{events, process_config};
use super::gateway_support::{ServeProcess, TestGateway};
use super::support::{DEADLINE, run, text};

pub const APPROVAL_POLICY: &str = r#"
rules:
  - name: break-glass
    groups: [sre]
    namespaces: [payments]
    actions: [list, logs, exec, shell]
    commands: ['.*']
    approval: required
    approvers: [sre-leads]
    approval_ttl: 2m
    approval_window_max: 1h
    impersonate_groups: ["jit:debug"]
  - name: break-glass-hurried
    groups: [sre]
    namespaces: [checkout]
    actions: [exec]
    commands: ['.*']
    approval: required
    approvers: [sre-leads]
    approval_ttl: 5s
    impersonate_groups: ["jit:debug"]
  - name: oncall
    groups: [oncall-payments]
    namespaces: [payments]
    actions: [exec]
    commands: ['cat', 'echo( [-a-z0-9]+)*']
    impersonate_groups: ["jit:oncall:payments"]
  - name: leads-watch
    groups: [sre-leads]
    namespaces: ["*"]
    actions: [observe]
    impersonate_groups: ["jit:readonly"]
"#;

/// A certificate for `login` (`login@corp.example`) with `groups`, serial `serial`.
pub async fn person(
    gw: &TestGateway,
    login: &str,
    groups: &str,
    serial: u32,
) -> std::path::PathBuf {
    let id = format!("{login}@corp.example");
    let g = format!("extension:groups@podgate={groups}");
    let z = serial.to_string();
    gw.sign(
        login,
        &[
            "-I",
            &id,
            "-n",
            login,
            "-V",
            "-1m:+1h",
            "-z",
            &z,
            "-O",
            &g,
            "-O",
            "critical:cluster@podgate=test",
        ],
    )
    .await
}

/// A command that waits for approval: the running `ssh`, the request id it was told, and
/// everything it printed on stderr until then.
pub struct Waiting {
    child: tokio::process::Child,
    pub id: String,
    pub said: String,
    rest: tokio::task::JoinHandle<String>,
}

impl Waiting {
    /// Start `cmd` and read its stderr until it names its request.
    pub async fn start(mut cmd: tokio::process::Command) -> Waiting {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut said = String::new();
        let id = tokio::time::timeout(DEADLINE, async {
            while let Some(line) = lines.next_line().await.unwrap() {
                said.push_str(&line);
                said.push('\n');
                if let Some(rest) = line.split(": request ").nth(1) {
                    return rest.split_whitespace().next().unwrap().to_owned();
                }
            }
            panic!("no request id in: {said}");
        })
        .await
        .expect("no approval request in time");
        let rest = tokio::spawn(async move {
            let mut more = String::new();
            while let Ok(Some(line)) = lines.next_line().await {
                more.push_str(&line);
                more.push('\n');
            }
            more
        });
        Waiting {
            child,
            id,
            said,
            rest,
        }
    }

    /// Wait for the command to end: exit status, stdout, all of stderr.
    pub async fn finish(mut self) -> (Option<i32>, String, String) {
        use tokio::io::AsyncReadExt;
        let mut out = String::new();
        let mut stdout = self.child.stdout.take().unwrap();
        let (status, _) = tokio::time::timeout(DEADLINE, async {
            tokio::join!(self.child.wait(), stdout.read_to_string(&mut out))
        })
        .await
        .expect("the waiting command did not end");
        let rest = tokio::time::timeout(DEADLINE, self.rest)
            .await
            .unwrap()
            .unwrap();
        (status.unwrap().code(), out, self.said + &rest)
    }
}

fn named<'a>(events: &'a [Value], name: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"] == name).collect()
}

/// The pod calls (exec, log, portforward) the cluster has seen.
fn pod_calls(gw: &TestGateway) -> usize {
    gw.pod_calls().map_or(0, |c| c.len())
}

fn session_meta(root: &Path, session: &str) -> Value {
    let found = super::store_support::session_file(root, session, "json").unwrap();
    serde_json::from_slice(&std::fs::read(found).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approver_approves_and_the_command_runs() {
    let gw = TestGateway::start_with(APPROVAL_POLICY, "approvals_namespace: podgate\n").await;
    let sam = gw.sre().await;
    let lee = person(&gw, "lee", "sre-leads", 21).await;
    let calls = pod_calls(&gw);

    let waiting = Waiting::start(gw.ssh(
        &sam,
        "sam",
        &[
            "exec",
            "payments/payments-api-0",
            "--",
            "echo",
            "approved-run",
        ],
    ))
    .await;
    assert!(
        waiting
            .said
            .contains("approval required by rule \"break-glass\""),
        "{}",
        waiting.said
    );
    // Nothing has run as sam yet.
    assert_eq!(pod_calls(&gw), calls);

    // The approver sees it, with who, what and why.
    let out = run(gw.ssh(&lee, "lee", &["requests"]), None).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let listed = text(&out.stdout);
    assert!(
        listed.contains(&waiting.id) && listed.contains("sam@corp.example"),
        "{listed}"
    );
    assert!(listed.contains("echo approved-run"), "{listed}");

    let out = run(gw.ssh(&lee, "lee", &["approve", &waiting.id]), None).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let id = waiting.id.clone();
    let (status, stdout, stderr) = waiting.finish().await;
    assert_eq!(status, Some(0), "{stderr}");
    assert_eq!(stdout, "approved-run\n");
    assert!(
        stderr.contains(&format!("request {id} approved by lee@corp.example")),
        "{stderr}"
    );

    let ev = gw.events();
    let requested = named(&ev, "approval.requested");
    assert_eq!(requested.len(), 1, "{ev:?}");
    assert_eq!(requested[0]["request"], id.as_str());
    assert_eq!(requested[0]["key_id"], "sam@corp.example");
    let approved = named(&ev, "approval.approved");
    assert_eq!(approved.len(), 1, "{ev:?}");
    assert_eq!(approved[0]["key_id"], "lee@corp.example");
    assert_eq!(approved[0]["requester"], "sam@corp.example");
    let started = named(&ev, "session.started");
    let session = started
        .iter()
        .find(|e| e["key_id"] == "sam@corp.example")
        .unwrap()["session"]
        .as_str()
        .unwrap()
        .to_owned();
    let meta = session_meta(&gw.dir.path().join("recordings"), &session);
    assert_eq!(meta["approval"]["request"], id.as_str());
    assert_eq!(meta["approval"]["approved_by"], "lee@corp.example");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denial_expiry_and_self_approval_refuse() {
    let gw = TestGateway::start_with(APPROVAL_POLICY, "approvals_namespace: podgate\n").await;
    let sam = gw.sre().await;
    let lee = person(&gw, "lee", "sre-leads", 21).await;
    let sue = person(&gw, "sue", "sre,sre-leads", 22).await;
    let calls = pod_calls(&gw);

    // Denied, with the reason passed on.
    let waiting = Waiting::start(gw.ssh(
        &sam,
        "sam",
        &["exec", "payments/payments-api-0", "--", "id"],
    ))
    .await;
    let out = run(
        gw.ssh(
            &lee,
            "lee",
            &[
                "deny",
                &waiting.id,
                "--reason",
                "not",
                "during",
                "the",
                "freeze",
            ],
        ),
        None,
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let id = waiting.id.clone();
    let (status, _, stderr) = waiting.finish().await;
    assert_eq!(status, Some(77), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "denied: request {id} was denied by lee@corp.example: not during the freeze"
        )),
        "{stderr}"
    );
    // A decided request cannot be decided again.
    let out = run(gw.ssh(&lee, "lee", &["approve", &id]), None).await;
    assert_eq!(out.status.code(), Some(77), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("already"),
        "{}",
        text(&out.stderr)
    );

    // Expired: the hurried rule waits 5 s.
    let waiting = Waiting::start(gw.ssh(
        &sam,
        "sam",
        &["exec", "checkout/checkout-web-0", "--", "id"],
    ))
    .await;
    let expired = waiting.id.clone();
    let (status, _, stderr) = waiting.finish().await;
    assert_eq!(status, Some(77), "{stderr}");
    assert!(
        stderr.contains(&format!("request {expired} expired")),
        "{stderr}"
    );

    // Self-approval: sue is both requester and approver; only someone else may decide.
    let waiting = Waiting::start(gw.ssh(
        &sue,
        "sue",
        &["exec", "payments/payments-api-0", "--", "echo", "sue-ran"],
    ))
    .await;
    let out = run(gw.ssh(&sue, "sue", &["approve", &waiting.id]), None).await;
    assert_eq!(out.status.code(), Some(77), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("cannot approve your own request"),
        "{}",
        text(&out.stderr)
    );
    // Someone outside the approver groups cannot either.
    let out = run(gw.ssh(&sam, "sam", &["approve", &waiting.id]), None).await;
    assert_eq!(out.status.code(), Some(77), "{}", text(&out.stderr));
    assert_eq!(pod_calls(&gw), calls, "nothing ran before an approval");
    let out = run(gw.ssh(&lee, "lee", &["approve", &waiting.id]), None).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let (status, stdout, stderr) = waiting.finish().await;
    assert_eq!(
        (status, stdout.as_str()),
        (Some(0), "sue-ran\n"),
        "{stderr}"
    );

    let ev = gw.events();
    assert_eq!(named(&ev, "approval.denied").len(), 1, "{ev:?}");
    assert_eq!(named(&ev, "approval.expired").len(), 1, "{ev:?}");
    let refused = named(&ev, "approval.refused");
    assert_eq!(refused.len(), 3, "{refused:?}");
    assert!(refused.iter().any(|e| e["key_id"] == "sue@corp.example"
        && e["reason"].as_str().unwrap().contains("own request")));
    let denied: Vec<&Value> = named(&ev, "session.denied")
        .into_iter()
        .filter(|e| e["key_id"] == "sam@corp.example")
        .collect();
    assert_eq!(denied.len(), 2, "{denied:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standing_approval_is_reused_within_its_time_and_not_after() {
    let gw = TestGateway::start_with(APPROVAL_POLICY, "approvals_namespace: podgate\n").await;
    let sam = gw.sre().await;
    let lee = person(&gw, "lee", "sre-leads", 21).await;
    let cmd = ["exec", "payments/payments-api-0", "--", "echo", "again"];

    let waiting = Waiting::start(gw.ssh(&sam, "sam", &cmd)).await;
    let out = run(
        gw.ssh(&lee, "lee", &["approve", &waiting.id, "--for", "4s"]),
        None,
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("until"), "{}", text(&out.stdout));
    let approved_at = tokio::time::Instant::now();
    let (status, stdout, _) = waiting.finish().await;
    assert_eq!((status, stdout.as_str()), (Some(0), "again\n"));

    // The same command again, at once: no new request.
    let out = run(gw.ssh(&sam, "sam", &cmd), None).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "again\n");
    assert!(
        !text(&out.stderr).contains("approval required"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(named(&gw.events(), "approval.window_used").len(), 1);

    // Another command is not covered.
    let other = Waiting::start(gw.ssh(
        &sam,
        "sam",
        &["exec", "payments/payments-api-0", "--", "echo", "other"],
    ))
    .await;
    let out = run(
        gw.ssh(&lee, "lee", &["deny", &other.id, "--reason", "no"]),
        None,
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(other.finish().await.0, Some(77));

    // Once the window is over, the same command asks again. (Waiting for time to pass is
    // what is tested here.)
    tokio::time::sleep_until(approved_at + Duration::from_secs(5)).await;
    let after = Waiting::start(gw.ssh(&sam, "sam", &cmd)).await;
    let out = run(
        gw.ssh(&lee, "lee", &["deny", &after.id, "--reason", "over"]),
        None,
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(after.finish().await.0, Some(77));
    assert_eq!(named(&gw.events(), "approval.window_used").len(), 1);
    assert_eq!(named(&gw.events(), "approval.requested").len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_made_on_one_gateway_is_approved_on_another() {
    let gw = TestGateway::start_with(APPROVAL_POLICY, "approvals_namespace: podgate\n").await;
    let config = process_config(&gw, "");
    let mut other = ServeProcess::start(&config, true).await;
    gw.trust_port(other.ssh_port);
    let sam = gw.sre().await;
    let lee = person(&gw, "lee", "sre-leads", 21).await;

    let waiting = Waiting::start(gw.ssh(
        &sam,
        "sam",
        &["exec", "payments/payments-api-0", "--", "echo", "across"],
    ))
    .await;
    let out = run(gw.ssh_to(other.ssh_port, &lee, "lee", &["requests"]), None).await;
    assert!(
        text(&out.stdout).contains(&waiting.id),
        "{}",
        text(&out.stdout)
    );
    let out = run(
        gw.ssh_to(other.ssh_port, &lee, "lee", &["approve", &waiting.id]),
        None,
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let id = waiting.id.clone();
    let (status, stdout, _) = waiting.finish().await;
    assert_eq!((status, stdout.as_str()), (Some(0), "across\n"));

    // Each gateway's audit log has its half: the request here, the decision there.
    assert_eq!(
        named(&gw.events(), "approval.requested")[0]["request"],
        id.as_str()
    );
    let there = events(&gw.dir.path().join("process-recordings"));
    let approved = named(&there, "approval.approved");
    assert_eq!(approved.len(), 1, "{there:?}");
    assert_eq!(approved[0]["request"], id.as_str());
    other.child.start_kill().unwrap();
}
