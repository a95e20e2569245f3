//! Sessions end on time: at certificate expiry and after `idle_timeout` without traffic,
//! with exit 124, the reason on the terminal, in the recording and in the audit log.

use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::AsyncReadExt;

use super::gateway_support::{TEST_POLICY, TestGateway};
use super::support::text;

/// Spawn `cmd` with stdin held open; return its exit code, output and when it ended.
pub(super) async fn until_it_ends(
    mut cmd: tokio::process::Command,
) -> (Option<i32>, String, SystemTime) {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let _stdin = child.stdin.take();
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let (status, _, _) = tokio::time::timeout(Duration::from_secs(60), async {
        tokio::join!(
            child.wait(),
            stdout.read_to_end(&mut out),
            stderr.read_to_end(&mut err)
        )
    })
    .await
    .expect("the session ended in time");
    let ended = SystemTime::now();
    let all = format!("{}{}", text(&out), text(&err));
    (status.unwrap().code(), all, ended)
}

fn ended_events(gw: &TestGateway, reason: &str) -> usize {
    gw.events()
        .iter()
        .filter(|e| e["event"] == "session.ended" && e["end_reason"] == reason)
        .count()
}

#[tokio::test]
async fn a_certificate_that_expires_ends_a_shell_and_a_followed_log_within_two_seconds() {
    let gw = TestGateway::start().await;
    let cert = gw
        .sign(
            "short",
            &[
                "-I",
                "sam@corp.example",
                "-n",
                "sam",
                "-V",
                "-1m:+15s",
                "-z",
                "21",
                "-O",
                "extension:groups@podgate=sre",
                "-O",
                "critical:cluster@podgate=test",
            ],
        )
        .await;
    let valid_before = russh::keys::Certificate::read_file(&cert)
        .unwrap()
        .valid_before();
    let shell = gw.ssh(&cert, "sam", &["-tt", "shell", "payments/payments-api-0"]);
    let logs = gw.ssh(&cert, "sam", &["logs", "-f", "payments/payments-api-0"]);
    let ((shell_code, shell_out, shell_end), (logs_code, logs_out, logs_end)) =
        tokio::join!(until_it_ends(shell), until_it_ends(logs));
    let expiry = UNIX_EPOCH + Duration::from_secs(valid_before);
    for (what, code, out, end) in [
        ("shell", shell_code, shell_out, shell_end),
        ("logs -f", logs_code, logs_out, logs_end),
    ] {
        assert_eq!(code, Some(124), "{what}: {out}");
        assert!(
            out.contains("podgate: session ended: your certificate expired"),
            "{what}: {out}"
        );
        let late = end.duration_since(expiry).unwrap_or_default();
        assert!(
            late <= Duration::from_secs(2),
            "{what} ended {late:?} after expiry"
        );
        assert!(end >= expiry - Duration::from_secs(1), "{what} ended early");
    }
    assert_eq!(ended_events(&gw, "expired"), 2);
    // The PTY user was warned (less than 60 s were left from the start).
    let casts = super::support::casts(&gw.dir.path().join("recordings"));
    let texts: Vec<String> = casts
        .iter()
        .map(|c| std::fs::read_to_string(c).unwrap())
        .collect();
    assert!(
        texts
            .iter()
            .any(|t| t.contains("your certificate expires in")),
        "no warning recorded"
    );
    assert!(
        texts
            .iter()
            .filter(|t| t.contains("session ended: your certificate expired"))
            .count()
            == 2,
        "the end is not in both recordings"
    );
}

#[tokio::test]
async fn sessions_without_traffic_end_after_the_idle_timeout() {
    let gw = TestGateway::start_with(TEST_POLICY, "idle_timeout: 2s\n").await;
    let (alice, sam) = (gw.alice().await, gw.sre().await);
    // `cat` with stdin open and nothing typed; a shell nobody types into.
    let exec = gw.ssh(
        &alice,
        "alice",
        &["exec", "payments/payments-api-0", "--", "cat"],
    );
    let shell = gw.ssh(&sam, "sam", &["-tt", "shell", "payments/payments-api-0"]);
    // A followed log that gets no new lines.
    let logs = gw.ssh(
        &alice,
        "alice",
        &["logs", "-f", "payments/payments-batch-0"],
    );
    let ((exec_code, exec_out, _), (shell_code, shell_out, _), (logs_code, logs_out, _)) = tokio::join!(
        until_it_ends(exec),
        until_it_ends(shell),
        until_it_ends(logs)
    );
    for (what, code, out) in [
        ("exec", exec_code, exec_out),
        ("shell", shell_code, shell_out),
        ("logs -f", logs_code, logs_out),
    ] {
        assert_eq!(code, Some(124), "{what}: {out}");
        assert!(
            out.contains("podgate: session ended: no traffic for 2s"),
            "{what}: {out}"
        );
    }
    assert_eq!(ended_events(&gw, "idle"), 3);
}
