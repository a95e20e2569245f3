//! The real `podgate serve` process as operators run it: `/metrics` after real sessions,
//! `/healthz` and `/readyz`, and SIGTERM during a live session (drain, then a clean end
//! with a complete recording).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::gateway_support::{ServeProcess, TEST_POLICY, TestGateway};
use super::lifetime::until_it_ends;
use super::support::{DEADLINE, asciinema_cat, casts, recordings_verify, run, text};

/// `GET path` over HTTP/1.0; the status code and the body.
pub(super) async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let exchange = async {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.0\r\nHost: podgate\r\n\r\n");
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        tcp.read_to_string(&mut response).await.unwrap();
        response
    };
    let response = tokio::time::timeout(DEADLINE, exchange).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let code = head.split(' ').nth(1).unwrap().parse().unwrap();
    (code, body.to_owned())
}

/// Parse the OpenMetrics text exposition strictly enough to fail on a malformed line:
/// `name{labels} value` samples, `#` comments, and the closing `# EOF`.
pub(super) fn parse_metrics(body: &str) -> HashMap<String, f64> {
    assert!(body.ends_with("# EOF\n"), "no # EOF: {body}");
    let mut samples = HashMap::new();
    for line in body.lines() {
        if line.starts_with('#') {
            let kind = line.split(' ').nth(1).unwrap();
            assert!(["HELP", "TYPE", "UNIT", "EOF"].contains(&kind), "{line}");
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap();
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value: {line}"));
        let name = series.split('{').next().unwrap();
        assert!(
            name.starts_with("podgate_")
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{line}"
        );
        if let Some(labels) = series.strip_prefix(name) {
            assert!(
                labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')),
                "{line}"
            );
        }
        samples.insert(series.to_owned(), value);
    }
    samples
}

/// A second configuration for a gateway process beside the in-process one: its own
/// recordings, a metrics address, and `extra` lines.
pub(super) fn process_config(gw: &TestGateway, extra: &str) -> PathBuf {
    let dir = gw.dir.path();
    let base = std::fs::read_to_string(dir.join("config.yaml")).unwrap();
    let text = base.replace(
        "recordings: recordings\n",
        "recordings: process-recordings\n",
    ) + "metrics_listen: 127.0.0.1:0\n"
        + extra;
    let path = dir.join("process.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

pub(super) fn events(root: &Path) -> Vec<Value> {
    std::fs::read_to_string(root.join("audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn metrics_count_what_the_audit_log_says_and_health_endpoints_answer() {
    let gw = TestGateway::start_with(TEST_POLICY, "").await;
    let config = process_config(&gw, "");
    let mut process = ServeProcess::start(&config, true).await;
    let metrics = process.metrics.unwrap();
    gw.trust_port(process.ssh_port);

    assert_eq!(get(metrics, "/healthz").await, (200, "ok\n".to_owned()));
    assert_eq!(get(metrics, "/readyz").await, (200, "ok\n".to_owned()));
    assert_eq!(get(metrics, "/nothing").await.0, 404);

    let alice = gw.alice().await;
    let args = ["exec", "payments/payments-api-0", "--", "echo", "hello"];
    let out = run(gw.ssh_to(process.ssh_port, &alice, "alice", &args), None).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hello\n");
    // Refused: a command outside the allowlist, and a certificate for another cluster.
    let args = ["exec", "payments/payments-api-0", "--", "rm", "-rf", "/"];
    let out = run(gw.ssh_to(process.ssh_port, &alice, "alice", &args), None).await;
    assert_eq!(out.status.code(), Some(77), "{}", text(&out.stderr));
    let elsewhere = gw
        .sign(
            "elsewhere",
            &[
                "-I",
                "alice@corp.example",
                "-n",
                "alice",
                "-V",
                "-1m:+1h",
                "-z",
                "8",
                "-O",
                "extension:groups@podgate=oncall-payments",
                "-O",
                "critical:cluster@podgate=other",
            ],
        )
        .await;
    let args = ["exec", "payments/payments-api-0", "--", "true"];
    let out = run(
        gw.ssh_to(process.ssh_port, &elsewhere, "alice", &args),
        None,
    )
    .await;
    assert_eq!(out.status.code(), Some(255));

    let (code, body) = get(metrics, "/metrics").await;
    assert_eq!(code, 200);
    let m = parse_metrics(&body);
    let value = |series: &str| {
        m.get(series)
            .copied()
            .unwrap_or_else(|| panic!("{series} missing:\n{body}"))
    };
    assert_eq!(value("podgate_auth_accepted_total"), 2.0);
    assert_eq!(
        value("podgate_auth_rejected_total{code=\"cluster_mismatch\"}"),
        1.0
    );
    assert_eq!(
        value("podgate_sessions_started_total{action=\"exec\"}"),
        1.0
    );
    assert_eq!(value("podgate_sessions_active{action=\"exec\"}"), 0.0);
    assert_eq!(
        value("podgate_sessions_ended_total{action=\"exec\",end_reason=\"exited\"}"),
        1.0
    );
    assert_eq!(value("podgate_sessions_denied_total{action=\"exec\"}"), 1.0);
    assert_eq!(
        value("podgate_session_bytes_total{direction=\"stdout\"}"),
        6.0
    );
    assert_eq!(
        value("podgate_kube_call_duration_seconds_count{call=\"exec\",outcome=\"ok\"}"),
        1.0
    );
    // The figures agree with the audit log.
    let audit = events(&gw.dir.path().join("process-recordings"));
    let count = |event: &str| audit.iter().filter(|e| e["event"] == event).count() as f64;
    assert_eq!(count("auth.accepted"), value("podgate_auth_accepted_total"));
    assert_eq!(count("session.started"), 1.0);
    process.child.start_kill().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_then_ends_a_live_session_cleanly_with_a_complete_recording() {
    let gw = TestGateway::start_with(TEST_POLICY, "").await;
    let config = process_config(&gw, "limits:\n  drain: 2s\n");
    let mut process = ServeProcess::start(&config, true).await;
    let metrics = process.metrics.unwrap();
    gw.trust_port(process.ssh_port);
    let root = gw.dir.path().join("process-recordings");

    // `cat` waiting on stdin runs until something ends it.
    let alice = gw.alice().await;
    let args = ["exec", "payments/payments-api-0", "--", "cat"];
    let session = tokio::spawn(until_it_ends(gw.ssh_to(
        process.ssh_port,
        &alice,
        "alice",
        &args,
    )));
    tokio::time::timeout(DEADLINE, async {
        while !events(&root)
            .iter()
            .any(|e| e["event"] == "session.started")
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the session started");

    let pid = nix::unistd::Pid::from_raw(process.child.id().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    // Draining: not ready any more, still alive and answering.
    tokio::time::timeout(DEADLINE, async {
        while get(metrics, "/readyz").await.0 != 503 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("/readyz failed while draining");
    let (code, body) = get(metrics, "/readyz").await;
    assert_eq!(code, 503);
    assert!(body.contains("draining"), "{body}");

    let (status, out, _) = tokio::time::timeout(Duration::from_secs(30), session)
        .await
        .expect("the session ended after the drain")
        .unwrap();
    assert_eq!(status, Some(124), "{out}");
    assert!(
        out.contains("podgate: session ended: the gateway is stopping"),
        "{out}"
    );
    let exit = tokio::time::timeout(Duration::from_secs(30), process.child.wait())
        .await
        .expect("the gateway exited")
        .unwrap();
    assert_eq!(exit.code(), Some(0));

    let ended: Vec<Value> = events(&root)
        .into_iter()
        .filter(|e| e["event"] == "session.ended")
        .collect();
    assert_eq!(ended.len(), 1, "{ended:?}");
    assert_eq!(ended[0]["end_reason"], "shutdown");
    assert_eq!(ended[0]["exit_status"], 124);
    let cast = casts(&root).pop().expect("a recording");
    let meta: Value =
        serde_json::from_str(&std::fs::read_to_string(cast.with_extension("json")).unwrap())
            .unwrap();
    assert_eq!(meta["complete"], true, "{meta}");
    assert_eq!(meta["end_reason"], "shutdown");
    let played = asciinema_cat(&cast).unwrap();
    assert!(played.contains("the gateway is stopping"), "{played:?}");
    let verify = recordings_verify(&root).await;
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify.stdout));
}
