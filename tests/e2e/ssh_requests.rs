//! SSH requests podgate refuses outright, seen from the real OpenSSH client: environment
//! variables never reach the pod, and subsystem, X11 and remote-forward requests fail
//! instead of hanging.

use std::time::Duration;

use super::gateway_support::TestGateway;
use super::support::{run, text};

#[tokio::test]
async fn env_subsystem_x11_and_remote_forward_requests_are_refused() {
    let gw = TestGateway::start().await;
    let sam = gw.sre().await;
    let limit = Duration::from_secs(30);

    // `SetEnv` sends `env` requests; the command runs without them.
    let cmd = gw.ssh(
        &sam,
        "sam",
        &[
            "-o",
            "SetEnv=PODGATE_PROBE=leaked",
            "exec",
            "payments/payments-api-0",
            "--",
            "printenv",
            "PODGATE_PROBE",
        ],
    );
    let out = tokio::time::timeout(limit, run(cmd, None)).await.unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(!text(&out.stdout).contains("leaked"));

    // A subsystem (sftp) is refused; ssh says so and fails.
    let cmd = gw.ssh(&sam, "sam", &["-s", "sftp"]);
    let out = tokio::time::timeout(limit, run(cmd, None)).await.unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains("subsystem request failed"),
        "{}",
        text(&out.stderr)
    );

    // X11 forwarding is refused; the command itself still runs.
    let x11 = [
        "-o",
        "ForwardX11=yes",
        "-o",
        "ForwardX11Trusted=yes",
        "-o",
        "LogLevel=INFO",
        "exec",
        "payments/payments-api-0",
        "--",
        "true",
    ];
    let mut cmd = gw.ssh(&sam, "sam", &x11);
    cmd.env("DISPLAY", "127.0.0.1:99");
    let out = tokio::time::timeout(limit, run(cmd, None)).await.unwrap();
    assert!(
        text(&out.stderr).contains("X11 forwarding request failed"),
        "{}",
        text(&out.stderr)
    );

    // A remote forward (`-R`) is refused, and with ExitOnForwardFailure ssh gives up.
    let remote = [
        "-o",
        "ExitOnForwardFailure=yes",
        "-N",
        "-R",
        "127.0.0.1:0:127.0.0.1:9",
    ];
    let cmd = gw.ssh(&sam, "sam", &remote);
    let out = tokio::time::timeout(limit, run(cmd, None)).await.unwrap();
    assert_eq!(out.status.code(), Some(255), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("remote port forwarding failed"),
        "{}",
        text(&out.stderr)
    );
}
