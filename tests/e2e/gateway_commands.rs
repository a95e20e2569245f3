//! The SSH command grammar through the real OpenSSH client: every command, exit statuses,
//! stdout/stderr separation, stdin EOF, PTY and window size, and what the cluster sees.

use super::gateway_support::TestGateway;
use super::support::{run, text};

/// `exec` runs argv, keeps stdout and stderr apart and passes the exit status back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_streams_and_exit_status() {
    let gw = TestGateway::start().await;
    let cert = gw.alice().await;

    let out = run(
        gw.ssh(
            &cert,
            "alice",
            &["exec", "payments/payments-api-0", "--", "echo", "hello"],
        ),
        None,
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hello\n");

    let out = run(
        gw.ssh(
            &cert,
            "alice",
            &["exec payments/payments-api-0 -- ls / /nonexistent-path"],
        ),
        None,
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "ls exit status passed through");
    assert!(text(&out.stdout).contains("bin"), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains("nonexistent-path"),
        "stderr separate: {}",
        text(&out.stderr)
    );
    assert!(!text(&out.stdout).contains("nonexistent-path"));

    // stdin is streamed and its EOF passed on.
    let out = run(
        gw.ssh(
            &cert,
            "alice",
            &["exec", "payments/payments-api-0", "--", "wc", "-l"],
        ),
        Some(b"a\nb\n"),
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "2");

    let data: Vec<u8> = (0..300_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let out = run(
        gw.ssh(
            &cert,
            "alice",
            &["exec", "payments/payments-api-0", "--", "cat"],
        ),
        Some(&data),
    )
    .await;
    assert_eq!(out.status.code(), Some(0));
    assert!(
        out.stdout == data,
        "cat echoed {} of {} bytes",
        out.stdout.len(),
        data.len()
    );

    // The cluster saw alice, with the rule's groups and the podgate extras.
    if let Some(calls) = gw.pod_calls() {
        let execs: Vec<_> = calls
            .iter()
            .filter(|e| e["objectRef"]["subresource"] == "exec")
            .collect();
        assert_eq!(execs.len(), 4, "{execs:?}");
        for e in execs {
            assert_eq!(
                e["user"]["username"],
                "system:serviceaccount:podgate:podgate"
            );
            let who = &e["impersonatedUser"];
            assert_eq!(who["username"], "alice@corp.example");
            assert!(
                who["groups"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|g| g == "jit:oncall:payments"),
                "{who}"
            );
            assert_eq!(who["extra"]["podgate-serial"][0], "7");
            assert!(who["extra"]["podgate-session"][0].as_str().unwrap().len() >= 16);
            assert_eq!(e["responseStatus"]["code"], 101);
        }
    }
    let events = gw.events();
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "auth.accepted" && e["key_id"] == "alice@corp.example")
    );
    let started: Vec<_> = events
        .iter()
        .filter(|e| e["event"] == "session.started")
        .collect();
    assert_eq!(started.len(), 4);
    assert!(started.iter().all(|e| e["rule"] == "payments-oncall"));
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "session.ended" && e["exit_status"] == 2)
    );
}

/// `logs --tail 3` and the `pods` listing limited to what the policy allows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_pods_whoami_help() {
    let gw = TestGateway::start().await;
    let cert = gw.alice().await;

    let out = run(
        gw.ssh(
            &cert,
            "alice",
            &["logs", "--tail", "3", "payments/payments-worker-0"],
        ),
        None,
    )
    .await;
    // worker-0's default container is annotated; policy pods glob payments-* allows it.
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "worker up\n");

    let out = run(
        gw.ssh(
            &cert,
            "alice",
            &["logs", "payments/payments-batch-0", "--tail=3"],
        ),
        None,
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "two\nthree\nfour\n");

    let out = run(gw.ssh(&cert, "alice", &["pods"]), None).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let listing = text(&out.stdout);
    assert!(listing.starts_with("NAMESPACE"), "{listing}");
    assert!(
        listing.contains("payments-api-0") && listing.contains("payments-worker-0"),
        "{listing}"
    );
    assert!(
        !listing.contains("checkout"),
        "other namespaces are not listed: {listing}"
    );

    let out = run(gw.ssh(&cert, "alice", &["pods", "checkout"]), None).await;
    assert_eq!(out.status.code(), Some(77), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).starts_with("podgate: denied: "),
        "{}",
        text(&out.stderr)
    );

    let out = run(gw.ssh(&cert, "alice", &["whoami"]), None).await;
    assert_eq!(out.status.code(), Some(0));
    let who = text(&out.stdout);
    for want in [
        "alice@corp.example",
        "oncall-payments",
        "serial 7",
        "payments-oncall",
    ] {
        assert!(who.contains(want), "{want} missing from {who}");
    }

    let out = run(gw.ssh(&cert, "alice", &["help"]), None).await;
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("exec"));
}

/// PTY exec: the remote command has a terminal of the client's size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pty_exec_and_shell() {
    let gw = TestGateway::start().await;
    let cert = gw.sre().await;
    let ssh = gw.ssh(
        &cert,
        "sam",
        &[
            "-tt",
            "exec",
            "payments/payments-api-0",
            "--",
            "sh",
            "-c",
            // The terminal size travels on the exec stream's resize channel, which may
            // arrive just after the process starts (as with kubectl and a real kubelet):
            // wait for it, bounded, instead of racing it.
            "'i=0; while [ \"$(stty size)\" = \"0 0\" ] || [ \"$(stty size)\" = \"24 80\" ]; do i=$((i+1)); [ $i -gt 100 ] && break; sleep 0.05; done; tty; stty size; exit 5'",
        ],
    );
    let line = format!("stty cols 97 rows 31; {}", shell_line(&ssh));
    let mut script = tokio::process::Command::new("script");
    script.args(["-qec", &line, "/dev/null"]);
    let out = run(script, None).await;
    let stdout = text(&out.stdout);
    assert!(stdout.contains("/dev/pts/"), "{stdout}");
    assert!(stdout.contains("31 97"), "{stdout}");
    assert_eq!(out.status.code(), Some(5), "{stdout}");

    // `shell` runs the rule's shell on a PTY; we type into it.
    let ssh = gw.ssh(&cert, "sam", &["-tt", "shell", "payments/payments-api-0"]);
    let mut script = tokio::process::Command::new("script");
    script.args(["-qec", &shell_line(&ssh), "/dev/null"]);
    let out = run(script, Some(b"echo shell-$((6*7))\nexit 3\n")).await;
    let stdout = text(&out.stdout);
    assert!(stdout.contains("shell-42"), "{stdout}");
    assert_eq!(out.status.code(), Some(3), "{stdout}");
}

/// The `podgate>` prompt: each line checked on its own, `exit` leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interactive_prompt() {
    let gw = TestGateway::start().await;
    let cert = gw.alice().await;
    let ssh = gw.ssh(&cert, "alice", &["-tt"]);
    let mut script = tokio::process::Command::new("script");
    script.args(["-qec", &shell_line(&ssh), "/dev/null"]);
    let input = b"whoami\nexec payments/payments-api-0 -- echo from-prompt\nexec payments/payments-api-0 -- rm -rf /\nbogus\nexit\n";
    let out = run(script, Some(input)).await;
    let stdout = text(&out.stdout);
    assert!(stdout.contains("podgate> "), "{stdout}");
    assert!(stdout.contains("alice@corp.example"));
    assert!(stdout.contains("from-prompt"), "{stdout}");
    assert!(stdout.contains("podgate: denied: "), "{stdout}");
    assert!(stdout.contains("unknown command"), "{stdout}");
    assert_eq!(out.status.code(), Some(0), "{stdout}");
}

/// The command line of a prepared `ssh` invocation, for `script -c`.
pub(super) fn shell_line(cmd: &tokio::process::Command) -> String {
    let std = cmd.as_std();
    let mut words = vec![std.get_program().to_string_lossy().into_owned()];
    words.extend(std.get_args().map(|a| a.to_string_lossy().into_owned()));
    let env: Vec<String> = std
        .get_envs()
        .filter_map(|(k, v)| Some(format!("{}={}", k.to_string_lossy(), v?.to_string_lossy())))
        .collect();
    format!(
        "env {} {}",
        shell_words::join(env),
        shell_words::join(words)
    )
}
