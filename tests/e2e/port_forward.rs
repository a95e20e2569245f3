//! Port-forward through the gateway with the real OpenSSH client: `ssh -W` (a
//! `direct-tcpip` channel on stdio, byte-exact checks) and `ssh -N -L` (a local listener).

use std::time::Duration;

use rand::RngCore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::gateway_support::{TEST_POLICY, TestGateway};
use super::support::{run, text};

pub(super) fn forward_policy() -> String {
    format!(
        "{TEST_POLICY}  - name: payments-port-forward\n    groups: [oncall-payments]\n    namespaces: [payments]\n    pods: [\"payments-*\"]\n    actions: [port-forward]\n    ports: [8080, 9000]\n    impersonate_groups: [\"jit:oncall:payments\"]\n"
    )
}

/// Alice with `permit-port-forwarding` (ssh-keygen's default extensions) or without.
async fn alice(gw: &TestGateway, name: &str, forwarding: bool) -> std::path::PathBuf {
    let mut args = vec![
        "-I",
        "alice@corp.example",
        "-n",
        "alice",
        "-V",
        "-1m:+1h",
        "-z",
        "11",
        "-O",
        "extension:groups@podgate=oncall-payments",
        "-O",
        "critical:cluster@podgate=test",
    ];
    if !forwarding {
        args.extend(["-O", "no-port-forwarding"]);
    }
    gw.sign(name, &args).await
}

#[tokio::test]
async fn eight_mebibytes_of_random_bytes_come_back_byte_exact_through_the_echo_port() {
    let gw = TestGateway::start_with(&forward_policy(), "").await;
    let cert = alice(&gw, "fwd", true).await;
    let mut data = vec![0u8; 8 * 1024 * 1024];
    rand::rng().fill_bytes(&mut data);
    let cmd = gw.ssh(&cert, "alice", &["-W", "payments-api-0.payments:9000"]);
    let out = tokio::time::timeout(Duration::from_secs(120), run(cmd, Some(&data)))
        .await
        .expect("ssh -W finished");
    assert!(out.status.success(), "ssh -W: {}", text(&out.stderr));
    assert_eq!(out.stdout.len(), data.len());
    assert!(out.stdout == data, "echoed bytes differ");
    let events = gw.events();
    let started = events
        .iter()
        .find(|e| e["event"] == "session.started" && e["action"] == "port-forward")
        .expect("session.started for the forward");
    assert_eq!(started["port"], 9000);
    assert_eq!(started["rule"], "payments-port-forward");
    if let Some(calls) = gw.pod_calls() {
        assert!(
            calls.iter().any(|c| c["requestURI"]
                .as_str()
                .is_some_and(|u| u.contains("/portforward"))
                && c["impersonatedUser"]["username"] == "alice@corp.example"),
            "{calls:?}"
        );
    }
}

#[tokio::test]
async fn an_http_request_goes_through_ssh_dash_l() {
    let gw = TestGateway::start_with(&forward_policy(), "").await;
    let cert = alice(&gw, "fwd", true).await;
    // A free local port for ssh to listen on (ssh cannot be handed a listener).
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let spec = format!("127.0.0.1:{port}:payments-api-0.payments:8080");
    let mut cmd = gw.ssh(
        &cert,
        "alice",
        &["-N", "-o", "ExitOnForwardFailure=yes", "-L", &spec],
    );
    cmd.stdin(std::process::Stdio::null());
    let mut child = cmd.spawn().unwrap();
    // Wait until ssh listens: connect until it accepts (bounded).
    let mut stream = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                Ok(s) => break s,
                Err(_) => tokio::task::yield_now().await,
            }
        }
    })
    .await
    .expect("ssh -L listening");
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut reply))
        .await
        .expect("reply in time")
        .unwrap();
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains("payments-api-0"), "{reply}");
    child.kill().await.unwrap();
}

#[tokio::test]
async fn forwards_to_unlisted_ports_and_without_permit_port_forwarding_are_refused() {
    let gw = TestGateway::start_with(&forward_policy(), "").await;
    let allowed = alice(&gw, "fwd", true).await;
    let no_fwd = alice(&gw, "nofwd", false).await;
    let cases = [
        (
            &allowed,
            "payments-api-0.payments:5432",
            "port 5432 is not listed in rule",
        ),
        (
            &allowed,
            "checkout-web-0.checkout:8080",
            "in namespace \"checkout\"",
        ),
        (&allowed, "not-a-target:8080", "POD.NAMESPACE"),
        (
            &no_fwd,
            "payments-api-0.payments:9000",
            "permit-port-forwarding",
        ),
    ];
    for (cert, target, want) in cases {
        let cmd = gw.ssh(cert, "alice", &["-W", target]);
        let out = tokio::time::timeout(Duration::from_secs(30), run(cmd, Some(b"hello")))
            .await
            .expect("ssh -W finished");
        assert!(!out.status.success(), "{target} was allowed");
        assert!(out.stdout.is_empty(), "{target}: bytes came back");
        // ssh -W prints only "stdio forwarding failed"; the reason is in the audit log
        // (and `ssh -L` prints it: "open failed: administratively prohibited: podgate: ...").
        let events = gw.events();
        let denial = events
            .iter()
            .rev()
            .find(|e| e["event"] == "session.denied" && e["action"] == "port-forward")
            .unwrap_or_else(|| panic!("{target}: no session.denied; {}", text(&out.stderr)));
        let reason = denial["reason"].as_str().unwrap_or_default();
        assert!(reason.contains(want), "{target}: {reason}");
    }
    let denied = gw
        .events()
        .into_iter()
        .filter(|e| e["event"] == "session.denied" && e["action"] == "port-forward")
        .count();
    assert_eq!(denied, 4);
    if let Some(calls) = gw.pod_calls() {
        assert!(
            !calls.iter().any(|c| c["requestURI"]
                .as_str()
                .is_some_and(|u| u.contains("/portforward"))),
            "a refused forward reached the cluster: {calls:?}"
        );
    }
}
