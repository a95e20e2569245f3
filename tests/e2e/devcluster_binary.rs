//! The `podgate devcluster` binary as a newcomer runs it (README): flags, the kubeconfig
//! it writes, and its refusal to listen beyond loopback.

use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};

use super::support::{DEADLINE, podgate, run, text};

/// A non-loopback --listen is refused with a clear message and EX_USAGE.
#[tokio::test]
async fn non_loopback_listen_is_refused() {
    for addr in ["0.0.0.0:0", "[::]:0", "192.0.2.1:6443"] {
        let mut cmd = podgate(&[]);
        cmd.args(["devcluster", "--listen", addr]);
        let out = run(cmd, None).await;
        assert_eq!(out.status.code(), Some(64), "{addr}");
        let stderr = text(&out.stderr);
        assert!(stderr.contains("loopback"), "{addr}: {stderr}");
    }
}

/// `podgate devcluster --kubeconfig-out k.yaml`, then `kubectl --kubeconfig k.yaml get pods -A`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_quick_start_works() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("k.yaml");
    let mut cmd = podgate(&[]);
    cmd.args(["devcluster", "--listen", "127.0.0.1:0", "--kubeconfig-out"])
        .arg(&kubeconfig)
        .arg("--state")
        .arg(dir.path().join("state"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(DEADLINE, lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        first.starts_with("podgate devcluster: serving https://127.0.0.1:"),
        "{first}"
    );

    let mut kubectl = tokio::process::Command::new("kubectl");
    kubectl
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["get", "pods", "-A"])
        .env("HOME", dir.path());
    let out = run(kubectl, None).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    for pod in ["payments-api-0", "payments-worker-0", "checkout-web-0"] {
        assert!(stdout.contains(pod), "{pod} missing: {stdout}");
    }
    // The built-in demo cluster includes a completed pod.
    assert!(stdout.contains("Completed"), "{stdout}");
    // SIGTERM (what Kubernetes sends) stops it cleanly.
    let pid = nix::unistd::Pid::from_raw(child.id().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(DEADLINE, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
}
