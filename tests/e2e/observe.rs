//! Live observation through the real `ssh`: `sessions` lists what the caller may watch,
//! `watch` shows a live session's output from what is on it now onward, the watched user
//! is told, a caller without the `observe` action is refused, and the observer is in the
//! session's metadata and the audit log.

use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use super::approvals::{APPROVAL_POLICY, person};
use super::gateway_support::TestGateway;
use super::support::{DEADLINE, run, text};

/// Read `from` into `seen` until it contains `want`.
async fn read_until(from: &mut (impl AsyncReadExt + Unpin), seen: &mut Vec<u8>, want: &str) {
    tokio::time::timeout(DEADLINE, async {
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(seen).contains(want) {
            let n = from.read(&mut buf).await.unwrap();
            assert!(
                n > 0,
                "ended before {want:?}: {}",
                String::from_utf8_lossy(seen)
            );
            seen.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {want:?} in time: {}", String::from_utf8_lossy(seen)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_observer_watches_a_live_session_read_only() {
    let gw = TestGateway::start_with(APPROVAL_POLICY, "approvals_namespace: podgate\n").await;
    let alice = gw.alice().await;
    let lee = person(&gw, "lee", "sre-leads", 21).await;
    let sam = gw.sre().await;

    // alice's session: `cat`, fed by the test.
    let mut cmd = gw.ssh(
        &alice,
        "alice",
        &["exec", "payments/payments-api-0", "--", "cat"],
    );
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut watched = cmd.spawn().unwrap();
    let mut stdin = watched.stdin.take().unwrap();
    let mut out = watched.stdout.take().unwrap();
    let mut err = BufReader::new(watched.stderr.take().unwrap()).lines();
    stdin.write_all(b"first line\n").await.unwrap();
    let mut alice_saw = Vec::new();
    read_until(&mut out, &mut alice_saw, "first line\n").await;

    // lee may watch it; sam (no `observe`) sees nothing and is refused.
    let listed = run(gw.ssh(&lee, "lee", &["sessions"]), None).await;
    assert_eq!(listed.status.code(), Some(0), "{}", text(&listed.stderr));
    let listed = text(&listed.stdout);
    let row = listed
        .lines()
        .find(|l| l.contains("alice@corp.example"))
        .unwrap_or_else(|| panic!("{listed}"));
    assert!(row.contains("exec payments/payments-api-0:api"), "{row}");
    let id = row.split_whitespace().next().unwrap().to_owned();
    let theirs = run(gw.ssh(&sam, "sam", &["sessions"]), None).await;
    assert!(
        !text(&theirs.stdout).contains("alice"),
        "{}",
        text(&theirs.stdout)
    );
    let refused = run(gw.ssh(&sam, "sam", &["watch", &id]), None).await;
    assert_eq!(refused.status.code(), Some(77), "{}", text(&refused.stderr));

    // lee watches: what was on it already, then what comes.
    let mut w = gw.ssh(&lee, "lee", &["watch", &id]);
    w.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut watcher = w.spawn().unwrap();
    let mut seen = Vec::new();
    let mut watch_out = watcher.stdout.take().unwrap();
    read_until(&mut watch_out, &mut seen, "first line").await;
    let notice = tokio::time::timeout(DEADLINE, err.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap_or_default();
    assert!(
        notice.contains("lee@corp.example") && notice.contains("watching"),
        "{notice}"
    );

    stdin.write_all(b"second line\n").await.unwrap();
    read_until(&mut out, &mut alice_saw, "second line\n").await;
    read_until(&mut watch_out, &mut seen, "second line").await;

    // alice ends her session; the watch ends with it.
    drop(stdin);
    let status = tokio::time::timeout(DEADLINE, watched.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let status = tokio::time::timeout(DEADLINE, watcher.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let mut watch_err = String::new();
    watcher
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut watch_err)
        .await
        .unwrap();
    assert!(
        watch_err.contains("the watched session ended"),
        "{watch_err}"
    );

    let ev = gw.events();
    let started: Vec<_> = ev
        .iter()
        .filter(|e| e["event"] == "observe.started")
        .collect();
    assert_eq!(started.len(), 1, "{ev:?}");
    assert_eq!(started[0]["key_id"], "lee@corp.example");
    assert_eq!(started[0]["observed_identity"], "alice@corp.example");
    let session = started[0]["observed"].as_str().unwrap().to_owned();
    assert!(session.starts_with(&id));
    assert!(
        ev.iter()
            .any(|e| e["event"] == "observe.ended" && e["observed"] == session.as_str())
    );
    let meta_path =
        super::store_support::session_file(&gw.dir.path().join("recordings"), &session, "json")
            .unwrap();
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(meta_path).unwrap()).unwrap();
    assert_eq!(
        meta["observers"][0]["identity"], "lee@corp.example",
        "{meta}"
    );
}

/// With a PTY the observer starts from the session's current screen: what was cleared
/// before the watch began is not shown, what is on the screen is, and `q` ends the watch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pty_watch_starts_from_the_current_screen() {
    let gw = TestGateway::start_with(APPROVAL_POLICY, "approvals_namespace: podgate\n").await;
    let alice = gw.alice().await;
    let lee = person(&gw, "lee", "sre-leads", 21).await;

    let mut cmd = gw.ssh(
        &alice,
        "alice",
        &["-tt", "exec", "payments/payments-api-0", "--", "cat"],
    );
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut watched = cmd.spawn().unwrap();
    let mut stdin = watched.stdin.take().unwrap();
    let mut out = watched.stdout.take().unwrap();
    let mut alice_saw = Vec::new();
    stdin.write_all(b"old-line\r").await.unwrap();
    read_until(&mut out, &mut alice_saw, "old-line\r\nold-line").await;
    // cat prints the escape sequences it is given: the screen is cleared, then redrawn.
    stdin
        .write_all(b"\x1b[2J\x1b[Hfresh-screen\r")
        .await
        .unwrap();
    read_until(&mut out, &mut alice_saw, "fresh-screen\r\n").await;

    let listed = run(gw.ssh(&lee, "lee", &["sessions"]), None).await;
    let listed = text(&listed.stdout);
    let row = listed
        .lines()
        .find(|l| l.contains("alice@"))
        .unwrap_or_else(|| panic!("{listed}"));
    assert!(row.split_whitespace().any(|w| w == "pty"), "{row}");
    let id = row.split_whitespace().next().unwrap().to_owned();

    let mut w = gw.ssh(&lee, "lee", &["-tt", "watch", &id]);
    w.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut watcher = w.spawn().unwrap();
    let mut watcher_in = watcher.stdin.take().unwrap();
    let mut watch_out = watcher.stdout.take().unwrap();
    let mut seen = Vec::new();
    read_until(&mut watch_out, &mut seen, "fresh-screen").await;
    assert!(
        !String::from_utf8_lossy(&seen).contains("old-line"),
        "the cleared line was shown: {}",
        String::from_utf8_lossy(&seen)
    );

    stdin.write_all(b"live-line\r").await.unwrap();
    read_until(&mut watch_out, &mut seen, "live-line").await;
    // The observer's keys never reach the session; `q` ends the watch.
    watcher_in.write_all(b"echo nope\rq").await.unwrap();
    let status = tokio::time::timeout(DEADLINE, watcher.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    stdin.write_all(b"\x04").await.unwrap();
    let status = tokio::time::timeout(DEADLINE, watched.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(DEADLINE, out.read_to_end(&mut rest)).await;
    alice_saw.extend_from_slice(&rest);
    assert!(!String::from_utf8_lossy(&alice_saw).contains("nope"));
}
