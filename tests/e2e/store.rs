//! Recordings shipped to a real S3-compatible server (s3s-fs, in-process): sessions land
//! in the bucket byte for byte as in the spool, with the audit log in segments, and the
//! offline tools read, verify and replay the bucket itself.

use super::gateway_commands::shell_line;
use super::store_support::{PREFIX, StoreGateway, session_file, sha256_hex};
use super::support::{podgate, run, text};

/// An exec and a PTY shell through the real `ssh` reach the bucket identical to the spool;
/// the audit log follows in segments that make up audit.jsonl; `recording.shipped` says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_land_in_the_bucket_byte_identical_to_the_spool() {
    let sg = StoreGateway::start(&[]).await;
    let (alice, sam) = (sg.gw.alice().await, sg.gw.sre().await);

    let args = [
        "exec",
        "payments/payments-api-0",
        "--",
        "echo",
        "to-the-bucket",
    ];
    let out = run(sg.ssh(&alice, "alice", &args), None).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "to-the-bucket\n");

    let ssh = sg.ssh(&sam, "sam", &["-tt", "shell", "payments/payments-api-0"]);
    let mut script = tokio::process::Command::new("script");
    script.args(["-qec", &shell_line(&ssh), "/dev/null"]);
    let out = run(script, Some(b"echo shell-$((6*7))\nexit 3\n")).await;
    assert!(
        text(&out.stdout).contains("shell-42"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stdout));

    let sessions = sg.sessions();
    assert_eq!(sessions.len(), 2, "{:?}", sg.events());
    for session in &sessions {
        sg.wait_shipped_identical(session).await;
        let cast = sg.spool_file(session, "cast").unwrap();
        let shipped = sg
            .events()
            .into_iter()
            .find(|e| e["event"] == "recording.shipped" && e["session"] == session.as_str())
            .unwrap_or_else(|| panic!("no recording.shipped for {session}"));
        let key = format!("{PREFIX}/{}", sg.rel(&cast));
        let listed = shipped["objects"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["key"].as_str().is_some_and(|k| key.ends_with(k)))
            .unwrap_or_else(|| panic!("recording.shipped does not name {key}: {shipped}"));
        assert_eq!(
            listed["sha256"],
            sha256_hex(&std::fs::read(&cast).unwrap()),
            "{shipped}"
        );
        // The event itself reaches the bucket, in a later segment of the audit log.
        sg.wait_audit_shipped("recording.shipped", session).await;
    }
    let played: Vec<String> = sessions
        .iter()
        .map(|s| {
            String::from_utf8(
                sg.s3
                    .object(PREFIX, &format!("{}.cast", sg.stem(s)))
                    .unwrap(),
            )
            .unwrap()
        })
        .collect();
    assert!(played[0].contains("to-the-bucket"), "{}", played[0]);
    assert!(played[1].contains("shell-42"), "{}", played[1]);
    let (up, body) = sg.metric("podgate_store_up").await;
    assert_eq!(up, Some(1.0), "{body}");
}

/// `recordings verify --store` accepts the bucket two gateways (one pod, then the next on a
/// new spool) filled, checking both audit chains, and catches one byte changed in a stored
/// transcript; `recordings list` and `replay` read the bucket as they read the spool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_offline_tools_read_and_verify_the_bucket() {
    let mut sg = StoreGateway::start(&[]).await;
    let alice = sg.gw.alice().await;
    let mut sessions = ship_sessions(&sg, &alice, &["first-session", "second-session"]).await;
    // Its last round is done: the bucket does not change under the tools. The next pod of
    // the incident starts on a spool of its own (another audit chain).
    sg.kill().await;
    let first_spool = sg.spool.clone();
    sg.new_spool("next-pod-recordings");
    sg.restart_gateway().await;
    sessions.extend(ship_sessions(&sg, &alice, &["third-session"]).await);
    sg.kill().await;
    let chains: std::collections::BTreeSet<String> = sg
        .s3
        .keys_under(PREFIX)
        .iter()
        .filter_map(|k| Some(k.strip_prefix("audit/")?.split('/').next()?.to_owned()))
        .collect();
    assert_eq!(chains.len(), 2, "{:?}", sg.s3.keys());

    sg.assert_store_verifies().await;

    let out = run(sg.offline(&["recordings", "list", "--json"]), None).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let listed: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut ids: Vec<&str> = listed
        .iter()
        .map(|m| m["session"].as_str().unwrap())
        .collect();
    ids.sort();
    let mut expected: Vec<&str> = sessions.iter().map(String::as_str).collect();
    expected.sort();
    assert_eq!(ids, expected, "{}", text(&out.stdout));

    // The review page reads the bucket: every session, each verified.
    let index = review_index(&sg).await;
    for s in &sessions {
        assert!(index.contains(&format!("/session/{s}")), "{s}: {index}");
    }
    assert_eq!(index.matches("badge ok").count(), 3, "{index}");

    let session = &sessions[1];
    let cast = session_file(&first_spool, session, "cast").unwrap();
    let rel = cast.strip_prefix(&first_spool).unwrap().to_str().unwrap();
    let spool = first_spool.to_str().unwrap();
    let out = run(sg.offline(&["replay", "--cat", session]), None).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "replay --store: {}",
        text(&out.stderr)
    );
    let local = run(
        podgate(&["replay", "--cat", "--recordings", spool, session]),
        None,
    )
    .await;
    assert_eq!(local.status.code(), Some(0), "{}", text(&local.stderr));
    assert!(
        text(&local.stdout).contains("second-session"),
        "{}",
        text(&local.stdout)
    );
    assert_eq!(text(&out.stdout), text(&local.stdout));

    // One byte of the stored transcript changed on the server's disk, size kept.
    let key = format!("{PREFIX}/{rel}");
    let path = sg.s3.object_path(&key);
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() - 3;
    bytes[at] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let out = run(sg.offline(&["recordings", "verify"]), None).await;
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains(rel), "{rel} is not named: {said}");
    let index = review_index(&sg).await;
    assert_eq!(index.matches("badge broken").count(), 1, "{index}");
    assert!(index.contains(rel), "{rel} is not named: {index}");
    // The spool still verifies: only the bucket's copy was altered.
    let out = super::support::recordings_verify(&first_spool).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// The index page of `podgate review --store` on this bucket.
async fn review_index(sg: &StoreGateway) -> String {
    let (mut review, url) =
        super::review_browser::start_review(sg.offline(&["review", "--listen", "127.0.0.1:0"]))
            .await;
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .unwrap();
    let (code, body) = super::gateway_process::get(addr, "/").await;
    assert_eq!(code, 200, "{body}");
    review.start_kill().unwrap();
    body
}

/// Run an `echo WORD` session per word as `cert`; wait until every session of the gateway
/// is shipped, with its `recording.shipped` event in the bucket's audit segments. Returns
/// the sessions.
async fn ship_sessions(sg: &StoreGateway, cert: &std::path::Path, words: &[&str]) -> Vec<String> {
    for word in words {
        let args = ["exec", "payments/payments-api-0", "--", "echo", word];
        let out = run(sg.ssh(cert, "alice", &args), None).await;
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        assert_eq!(text(&out.stdout), format!("{word}\n"));
    }
    let sessions = sg.sessions();
    assert_eq!(sessions.len(), words.len(), "{:?}", sg.events());
    for session in &sessions {
        sg.wait_shipped(session).await;
        sg.wait_audit_shipped("recording.shipped", session).await;
    }
    sessions
}
