//! What the gateway refuses: a table of certificate and policy cases through the real
//! `ssh` client, each asserting the exit status (or the authentication failure), the
//! message, the gateway's audit event, and that nothing reached a pod.

use super::gateway_support::{TEST_POLICY, TestGateway};
use super::support::{run, text};

/// How a case must end.
enum Expect {
    /// Authentication fails (ssh exits 255); the audit log has auth.rejected with `code`.
    AuthRejected(&'static str),
    /// The command is refused with this exit status and stderr containing the text.
    Exit(i32, &'static str),
}

struct Case {
    name: &'static str,
    /// ssh-keygen -s arguments (None: use a plain key, no certificate).
    cert: Option<&'static [&'static str]>,
    login: &'static str,
    command: &'static [&'static str],
    expect: Expect,
}

const OK_CERT: &[&str] = &[
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
const EXEC_ECHO: &[&str] = &["exec", "payments/payments-api-0", "--", "echo", "hi"];

fn cases() -> Vec<Case> {
    use Expect::*;
    let c = |name, cert, login, command, expect| Case {
        name,
        cert,
        login,
        command,
        expect,
    };
    vec![
        c(
            "plain key without a certificate",
            None,
            "alice",
            EXEC_ECHO,
            AuthRejected("not_a_certificate"),
        ),
        c(
            "expired certificate",
            Some(&[
                "-I",
                "alice@corp.example",
                "-n",
                "alice",
                "-V",
                "20200101:20200102",
                "-z",
                "1",
                "-O",
                "critical:cluster@podgate=test",
            ]),
            "alice",
            EXEC_ECHO,
            AuthRejected("expired_or_not_yet_valid"),
        ),
        c(
            "not yet valid",
            Some(&[
                "-I",
                "alice@corp.example",
                "-n",
                "alice",
                "-V",
                "+1d:+2d",
                "-z",
                "1",
                "-O",
                "critical:cluster@podgate=test",
            ]),
            "alice",
            EXEC_ECHO,
            AuthRejected("expired_or_not_yet_valid"),
        ),
        c(
            "lifetime over max_cert_lifetime",
            Some(&[
                "-I",
                "alice@corp.example",
                "-n",
                "alice",
                "-V",
                "-1m:+2d",
                "-z",
                "1",
                "-O",
                "critical:cluster@podgate=test",
            ]),
            "alice",
            EXEC_ECHO,
            AuthRejected("lifetime_too_long"),
        ),
        c(
            "login is not a principal",
            Some(OK_CERT),
            "bob",
            EXEC_ECHO,
            AuthRejected("principal_mismatch"),
        ),
        c(
            "no principals (valid for anyone)",
            Some(&[
                "-I",
                "alice@corp.example",
                "-V",
                "-1m:+1h",
                "-z",
                "1",
                "-O",
                "critical:cluster@podgate=test",
            ]),
            "alice",
            EXEC_ECHO,
            AuthRejected("no_principals"),
        ),
        c(
            "serial 0",
            Some(&[
                "-I",
                "alice@corp.example",
                "-n",
                "alice",
                "-V",
                "-1m:+1h",
                "-O",
                "critical:cluster@podgate=test",
            ]),
            "alice",
            EXEC_ECHO,
            AuthRejected("serial_zero"),
        ),
        // OpenSSH does not offer a host certificate for user authentication, so only its
        // plain key arrives; hand-built host certificates are refused in auth's unit tests.
        c(
            "host certificate",
            Some(&[
                "-h", "-I", "host", "-n", "alice", "-V", "-1m:+1h", "-z", "1",
            ]),
            "alice",
            EXEC_ECHO,
            AuthRejected("not_a_certificate"),
        ),
        c(
            "other cluster",
            Some(&[
                "-I",
                "alice@corp.example",
                "-n",
                "alice",
                "-V",
                "-1m:+1h",
                "-z",
                "1",
                "-O",
                "critical:cluster@podgate=prod",
            ]),
            "alice",
            EXEC_ECHO,
            AuthRejected("cluster_mismatch"),
        ),
        c(
            "incident on a general gateway",
            Some(&[
                "-I",
                "alice@corp.example",
                "-n",
                "alice",
                "-V",
                "-1m:+1h",
                "-z",
                "1",
                "-O",
                "critical:cluster@podgate=test",
                "-O",
                "critical:incident@podgate=INC-1",
            ]),
            "alice",
            EXEC_ECHO,
            AuthRejected("incident_not_allowed"),
        ),
        c(
            "unknown critical option",
            Some(&[
                "-I",
                "alice@corp.example",
                "-n",
                "alice",
                "-V",
                "-1m:+1h",
                "-z",
                "1",
                "-O",
                "critical:cluster@podgate=test",
                "-O",
                "critical:frobnicate@example.com=1",
            ]),
            "alice",
            EXEC_ECHO,
            AuthRejected("unknown_critical_option"),
        ),
        c(
            "source-address excludes the client",
            Some(&[
                "-I",
                "alice@corp.example",
                "-n",
                "alice",
                "-V",
                "-1m:+1h",
                "-z",
                "1",
                "-O",
                "critical:cluster@podgate=test",
                "-O",
                "source-address=10.9.8.0/24",
            ]),
            "alice",
            EXEC_ECHO,
            AuthRejected("source_address_mismatch"),
        ),
        c(
            "empty key id",
            Some(&[
                "-I",
                "",
                "-n",
                "alice",
                "-V",
                "-1m:+1h",
                "-z",
                "1",
                "-O",
                "critical:cluster@podgate=test",
            ]),
            "alice",
            EXEC_ECHO,
            AuthRejected("empty_key_id"),
        ),
        c(
            "bad actions option",
            Some(&[
                "-I",
                "alice@corp.example",
                "-n",
                "alice",
                "-V",
                "-1m:+1h",
                "-z",
                "1",
                "-O",
                "critical:cluster@podgate=test",
                "-O",
                "critical:actions@podgate=exec,delete",
            ]),
            "alice",
            EXEC_ECHO,
            AuthRejected("bad_critical_option"),
        ),
        c(
            "namespace outside the policy",
            Some(OK_CERT),
            "alice",
            &["exec", "checkout/checkout-web-0", "--", "echo", "hi"],
            Exit(77, "podgate: denied: "),
        ),
        c(
            "pod outside the policy glob",
            Some(OK_CERT),
            "alice",
            &["exec", "payments/other-0", "--", "echo", "hi"],
            Exit(77, "podgate: denied: "),
        ),
        c(
            "command not in the allowlist",
            Some(OK_CERT),
            "alice",
            &["exec", "payments/payments-api-0", "--", "rm", "-rf", "/"],
            Exit(77, "allowlist"),
        ),
        c(
            "allowlist is anchored",
            Some(OK_CERT),
            "alice",
            &["exec", "payments/payments-api-0", "--", "true;", "rm", "x"],
            Exit(77, "podgate: denied: "),
        ),
        c(
            "interpreter not implied",
            Some(OK_CERT),
            "alice",
            &[
                "exec",
                "payments/payments-api-0",
                "--",
                "sh",
                "-c",
                "echo hi",
            ],
            Exit(77, "podgate: denied: "),
        ),
        c(
            "deny_commands wins",
            Some(OK_CERT),
            "alice",
            &["exec", "payments/payments-api-0", "--", "echo", "a..b"],
            Exit(77, "deny_commands"),
        ),
        c(
            "shell not granted",
            Some(OK_CERT),
            "alice",
            &["shell", "payments/payments-api-0"],
            Exit(77, "podgate: denied: "),
        ),
        c(
            "certificate scope: namespaces",
            Some(&[
                "-I",
                "alice@corp.example",
                "-n",
                "alice",
                "-V",
                "-1m:+1h",
                "-z",
                "1",
                "-O",
                "extension:groups@podgate=oncall-payments",
                "-O",
                "critical:cluster@podgate=test",
                "-O",
                "critical:namespaces@podgate=checkout",
            ]),
            "alice",
            EXEC_ECHO,
            Exit(77, "namespace"),
        ),
        c(
            "certificate scope: actions",
            Some(&[
                "-I",
                "alice@corp.example",
                "-n",
                "alice",
                "-V",
                "-1m:+1h",
                "-z",
                "1",
                "-O",
                "extension:groups@podgate=oncall-payments",
                "-O",
                "critical:cluster@podgate=test",
                "-O",
                "critical:actions@podgate=logs",
            ]),
            "alice",
            EXEC_ECHO,
            Exit(77, "exec"),
        ),
        c(
            "certificate scope: pods",
            Some(&[
                "-I",
                "alice@corp.example",
                "-n",
                "alice",
                "-V",
                "-1m:+1h",
                "-z",
                "1",
                "-O",
                "extension:groups@podgate=oncall-payments",
                "-O",
                "critical:cluster@podgate=test",
                "-O",
                "critical:pods@podgate=payments-worker-*",
            ]),
            "alice",
            EXEC_ECHO,
            Exit(77, "pod"),
        ),
        c(
            "no groups",
            Some(&[
                "-I",
                "alice@corp.example",
                "-n",
                "alice",
                "-V",
                "-1m:+1h",
                "-z",
                "1",
                "-O",
                "critical:cluster@podgate=test",
            ]),
            "alice",
            EXEC_ECHO,
            Exit(77, "podgate: denied: "),
        ),
        c(
            "force-command replaces the request",
            Some(&[
                "-I",
                "alice@corp.example",
                "-n",
                "alice",
                "-V",
                "-1m:+1h",
                "-z",
                "1",
                "-O",
                "extension:groups@podgate=oncall-payments",
                "-O",
                "critical:cluster@podgate=test",
                "-O",
                "force-command=logs payments/checkout-x",
            ]),
            "alice",
            EXEC_ECHO,
            Exit(77, "podgate: denied: "),
        ),
        c(
            "unknown command",
            Some(OK_CERT),
            "alice",
            &["rm", "-rf", "/"],
            Exit(64, "unknown command"),
        ),
        c(
            "exec without --",
            Some(OK_CERT),
            "alice",
            &["exec", "payments/payments-api-0", "echo", "hi"],
            Exit(64, "podgate: "),
        ),
        c(
            "control character in the command",
            Some(OK_CERT),
            "alice",
            &["exec payments/payments-api-0 -- echo a\x1bb"],
            Exit(64, "podgate: "),
        ),
        c(
            "no command without a PTY",
            Some(OK_CERT),
            "alice",
            &[],
            Exit(64, "no command given"),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_table() {
    // Every refused case comes from 127.0.0.1: exempt it from source penalties, which
    // tests/e2e/limits.rs covers on their own.
    let gw =
        TestGateway::start_with(TEST_POLICY, "limits:\n  penalty_exempt: [127.0.0.1/32]\n").await;
    let before = gw.pod_calls();
    let mut failures = Vec::new();
    for (i, case) in cases().into_iter().enumerate() {
        let cert = match case.cert {
            Some(args) => gw.sign(&format!("case{i}"), args).await,
            // A certificate file that does not exist: ssh offers only the plain key.
            None => gw.dir.path().join("no-such-cert.pub"),
        };
        let events_before = gw.events().len();
        let out = run(gw.ssh(&cert, case.login, case.command), None).await;
        let stderr = text(&out.stderr);
        let new_events: Vec<_> = gw.events().into_iter().skip(events_before).collect();
        match case.expect {
            Expect::AuthRejected(code) => {
                if out.status.code() != Some(255) || !stderr.contains("Permission denied") {
                    failures.push(format!(
                        "{}: expected auth failure, got {:?}: {stderr}",
                        case.name,
                        out.status.code()
                    ));
                }
                if !new_events
                    .iter()
                    .any(|e| e["event"] == "auth.rejected" && e["code"] == code)
                {
                    failures.push(format!(
                        "{}: no auth.rejected with code {code} in {new_events:?}",
                        case.name
                    ));
                }
                if new_events.iter().any(|e| e["event"] == "auth.accepted") {
                    failures.push(format!("{}: was accepted", case.name));
                }
            }
            Expect::Exit(status, message) => {
                if out.status.code() != Some(status) || !stderr.contains(message) {
                    failures.push(format!(
                        "{}: expected exit {status} with {message:?}, got {:?}: {stderr}",
                        case.name,
                        out.status.code()
                    ));
                }
                if status == 77 && !new_events.iter().any(|e| e["event"] == "session.denied") {
                    failures.push(format!(
                        "{}: no session.denied event in {new_events:?}",
                        case.name
                    ));
                }
                if new_events.iter().any(|e| e["event"] == "session.started") {
                    failures.push(format!("{}: a session was started", case.name));
                }
            }
        }
    }
    assert!(cases().len() >= 25);
    if let (Some(before), Some(after)) = (before, gw.pod_calls()) {
        assert_eq!(
            before.len(),
            after.len(),
            "refused requests reached a pod: {:?}",
            &after[before.len()..]
        );
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
