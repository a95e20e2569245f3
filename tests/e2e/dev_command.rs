//! `podgate dev` as a newcomer runs it: started as the real binary, its printed commands
//! run verbatim.

use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};

use serde_json::json;

use super::review_browser::browse;
use super::support::{DEADLINE, run, text};

/// `podgate dev` on free loopback ports with `state`, its output piped.
fn dev(state: &std::path::Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_podgate"));
    cmd.args([
        "dev",
        "--listen",
        "127.0.0.1:0",
        "--review-listen",
        "127.0.0.1:0",
        "--state",
    ])
    .arg(state)
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .kill_on_drop(true);
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn printed_commands_work_when_pasted() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let mut cmd = dev(&state);
    cmd.current_dir(dir.path()).env("HOME", dir.path());
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut commands = Vec::new();
    let mut review = None;
    tokio::time::timeout(DEADLINE, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.starts_with("press Ctrl-C") {
                break;
            }
            if let Some(url) = line.strip_prefix("review the recordings in a browser: ") {
                review = Some(url.to_owned());
            }
            if let Some(c) = line.strip_prefix("  ") {
                commands.push(c.to_owned());
            }
        }
    })
    .await
    .expect("podgate dev did not start");
    assert!(
        commands.iter().any(|c| c.ends_with(" dev whoami")),
        "{commands:?}"
    );
    let mut ran = 0;
    // `-t` needs a terminal and `-N -L` runs until stopped; the rest finish on their own.
    for c in commands
        .iter()
        .filter(|c| !c.contains(" -t ") && !c.contains(" -N "))
    {
        let mut sh = tokio::process::Command::new("sh");
        sh.args(["-c", c])
            .env("HOME", dir.path())
            .current_dir(dir.path());
        let out = run(sh, None).await;
        assert_eq!(
            out.status.code(),
            Some(0),
            "{c}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        assert!(!out.stdout.is_empty(), "{c} printed nothing");
        ran += 1;
    }
    assert!(ran >= 4, "{commands:?}");

    // The review page it serves shows those sessions, verified, and plays them. (`ps`
    // lists every process of the machine; only its last screenful is on the player's
    // terminal, and every line of it has a TIME column.)
    let url = review.expect("podgate dev printed no review URL");
    let seen =
        browse(json!({"url": url, "filter": {"action": "exec"}, "expect": "00:00:00"})).await;
    assert_eq!(seen["played"], true, "{seen}");
    assert_eq!(seen["badges"], json!(["verified"]), "{seen}");

    // Run again with the same state: the CA is reused and the certificate renewed.
    let ca_before = std::fs::read(state.join("user_ca.pub")).unwrap();
    let cert_before = std::fs::read(state.join("id_ed25519-cert.pub")).unwrap();
    let pid = nix::unistd::Pid::from_raw(child.id().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(DEADLINE, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
    let mut child = dev(&state).spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(DEADLINE, lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(first.starts_with("podgate dev: gateway on"), "{first}");
    assert_eq!(std::fs::read(state.join("user_ca.pub")).unwrap(), ca_before);
    assert_ne!(
        std::fs::read(state.join("id_ed25519-cert.pub")).unwrap(),
        cert_before
    );
    child.start_kill().unwrap();
}
