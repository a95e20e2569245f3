//! `podgate review` in a real browser: Debian's headless Chromium driven by playwright-core
//! (`tests/browser/review.mjs`, installed by scripts/test.sh), over recordings of real
//! sessions. The browser filters the index, opens a session, plays it in asciinema-player
//! (installed from npm by the build), seeks to a marker, searches the transcript, and
//! takes the screenshot docs/REVIEW.md shows (`PODGATE_REVIEW_SCREENSHOT=docs/images/
//! review-session.png` writes it there; otherwise into a temporary directory).

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use super::gateway_commands::shell_line;
use super::gateway_support::{TEST_POLICY, TestGateway};
use super::support::{DEADLINE, podgate, run, text};

/// `podgate review` on `root`, on a free loopback port: the process and the page's URL.
pub async fn review_server(root: &Path) -> (tokio::process::Child, String) {
    let mut cmd = podgate(&["review", "--listen", "127.0.0.1:0", "--recordings"]);
    cmd.arg(root);
    start_review(cmd).await
}

/// Start `cmd` (a `podgate review`) and read the page's URL from what it prints.
pub async fn start_review(mut cmd: tokio::process::Command) -> (tokio::process::Child, String) {
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = tokio::time::timeout(DEADLINE, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(url) = line.split_whitespace().find(|w| w.starts_with("http://")) {
                return url.to_owned();
            }
        }
        panic!("podgate review ended without serving");
    })
    .await
    .expect("podgate review did not start");
    (child, url)
}

/// Run tests/browser/review.mjs with `spec`; what it saw.
pub async fn browse(spec: Value) -> Value {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        dir.join("node_modules/playwright-core").is_dir()
            && Path::new("/usr/bin/chromium").exists(),
        "the browser test needs Chromium and playwright-core: run ./scripts/test.sh, \
         which installs both"
    );
    let mut node = tokio::process::Command::new("node");
    node.arg(dir.join("review.mjs"))
        .arg(spec.to_string())
        .current_dir(&dir);
    let out = run(node, None).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let last = text(&out.stdout);
    serde_json::from_str(last.lines().last().unwrap_or("")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reviewer_filters_plays_seeks_and_searches_in_chromium() {
    // A tiny cap on recorded logs, so the logs session carries a truncation marker.
    let gw = TestGateway::start_with(TEST_POLICY, "limits:\n  logs_record_cap: 8B\n").await;
    let cert = gw.sre().await;
    let out = run(
        gw.ssh(
            &cert,
            "sam",
            &["exec payments/payments-api-0 -- echo podgate-exec-e2e"],
        ),
        None,
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = run(
        gw.ssh(&cert, "sam", &["logs", "payments/payments-batch-0"]),
        None,
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let ssh = gw.ssh(&cert, "sam", &["-tt", "shell", "payments/payments-api-0"]);
    let mut script = tokio::process::Command::new("script");
    script.args(["-qec", &shell_line(&ssh), "/dev/null"]);
    let out = run(
        script,
        Some(b"echo review-$((6*7)); ls /\nuname -s\nexit\n"),
    )
    .await;
    assert!(
        text(&out.stdout).contains("review-42"),
        "{}",
        text(&out.stdout)
    );

    let root = gw.dir.path().join("recordings");
    let (_review, url) = review_server(&root).await;
    let shots = tempfile::tempdir().unwrap();
    let screenshot = std::env::var("PODGATE_REVIEW_SCREENSHOT")
        .map(PathBuf::from)
        .unwrap_or_else(|_| shots.path().join("review-session.png"));

    // The shell session: played, searched, photographed.
    let seen = browse(json!({
        "url": url,
        "filter": {"action": "shell"},
        "expect": "review-42",
        "screenshot": screenshot,
    }))
    .await;
    assert_eq!(seen["all"], 3, "{seen}");
    assert_eq!(seen["filtered"], 1, "{seen}");
    assert_eq!(seen["badges"], json!(["verified"]), "{seen}");
    assert_eq!(seen["played"], true, "{seen}");
    assert!(seen["matches"].as_u64() >= Some(1), "{seen}");
    let png = std::fs::read(&screenshot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{}",
        png.len()
    );

    // The logs session: its truncation marker is on the page and seeks the player.
    let seen = browse(json!({
        "url": url,
        "filter": {"action": "logs", "identity": "sam@corp.example"},
        "markers": 1,
    }))
    .await;
    assert_eq!(seen["filtered"], 1, "{seen}");
    assert_eq!(seen["markers"], 1, "{seen}");
    assert!(
        seen["marker_labels"][0]
            .as_str()
            .is_some_and(|l| l.contains("bytes of recording was not recorded")),
        "{seen}"
    );
    assert_eq!(seen["sought"], true, "{seen}");
}
