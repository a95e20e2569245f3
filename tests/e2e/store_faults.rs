//! Shipping recordings when things fail: the S3 server gone mid-session (the session goes
//! on into the spool, everything ships on recovery), the gateway killed mid-session (its
//! live parts and then the repaired whole transcript reach the bucket), and the spool over
//! its limit (new sessions refused with the reason until it drains).

use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use super::store_support::{PREFIX, StoreGateway, wait_for};
use super::support::{DEADLINE, asciinema_cat, run, text};

/// The concatenated live parts of `session` in the bucket, as text.
fn parts_text(sg: &StoreGateway, session: &str) -> String {
    sg.parts(session)
        .iter()
        .map(|k| String::from_utf8_lossy(&sg.s3.object(PREFIX, k).unwrap_or_default()).into_owned())
        .collect()
}

/// Wait until the gateway has a session started; return its id.
async fn started(sg: &StoreGateway) -> String {
    wait_for("a session.started event", || async move {
        sg.sessions()
            .pop()
            .ok_or_else(|| format!("{:?}", sg.events()))
    })
    .await
}

/// Wait until `session`'s live parts in the bucket contain `what`.
async fn wait_part_with(sg: &StoreGateway, session: &str, what: &str) {
    wait_for(
        &format!("a part of {session} with {what:?}"),
        || async move {
            let parts = parts_text(sg, session);
            if parts.contains(what) {
                Ok(())
            } else {
                Err(format!("{:?}", sg.s3.keys()))
            }
        },
    )
    .await
}

/// The S3 server stops mid-session (connections dropped, port closed): the session goes on
/// and ends normally, the gateway says the store is down but stays ready, and once the server
/// is back everything ships, identical to the spool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_outage_mid_session_loses_nothing() {
    let mut sg = StoreGateway::start(&[]).await;
    let alice = sg.gw.alice().await;
    let mut ssh = sg.ssh(
        &alice,
        "alice",
        &["exec", "payments/payments-api-0", "--", "cat"],
    );
    ssh.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = ssh.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stderr = child.stderr.take().unwrap();
    let mut echo = async |line: &str| {
        let typed = format!("{line}\n");
        let typed = stdin.write_all(typed.as_bytes());
        tokio::time::timeout(DEADLINE, typed)
            .await
            .unwrap()
            .unwrap();
        let got = tokio::time::timeout(DEADLINE, lines.next_line())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.as_deref(), Some(line));
    };
    echo("before the outage").await;
    let session = started(&sg).await;
    // Shipped live, while the server is up.
    wait_part_with(&sg, &session, "before the outage").await;

    sg.s3.stop().await;
    echo("during the outage").await;
    wait_for("store.unreachable and podgate_store_up 0", || {
        let sg = &sg;
        async move {
            let event = sg.event("store.unreachable", None).is_some();
            let (up, _) = sg.metric("podgate_store_up").await;
            if event && up == Some(0.0) {
                Ok(())
            } else {
                Err(format!("event: {event}, up: {up:?}"))
            }
        }
    })
    .await;
    // Within its limits the spool takes sessions: still ready.
    let (code, body) = sg.readyz().await;
    assert_eq!(code, 200, "{body}");
    echo("still during the outage").await;
    drop(stdin);
    let status = tokio::time::timeout(DEADLINE, child.wait())
        .await
        .unwrap()
        .unwrap();
    let mut err = String::new();
    tokio::time::timeout(DEADLINE, stderr.read_to_string(&mut err))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0), "{err}");
    assert_eq!(
        tokio::time::timeout(DEADLINE, lines.next_line())
            .await
            .unwrap()
            .unwrap(),
        None
    );
    let ended = sg
        .wait_event("session.ended", Some(("session", &session)))
        .await;
    assert_eq!(ended["exit_status"], 0, "{ended}");
    assert!(
        sg.spool_file(&session, "shipped").is_none(),
        "shipped with the server down?"
    );

    sg.s3.restart().await;
    sg.wait_shipped_identical(&session).await;
    let cast = sg
        .s3
        .object(PREFIX, &format!("{}.cast", sg.stem(&session)))
        .unwrap();
    let cast = String::from_utf8(cast).unwrap();
    for line in [
        "before the outage",
        "during the outage",
        "still during the outage",
    ] {
        assert!(cast.contains(line), "{line:?} missing from {cast}");
    }
    sg.wait_event("store.recovered", None).await;
    sg.wait_metric("podgate_store_up", 1.0).await;
    sg.wait_audit_shipped("recording.shipped", &session).await;
}

/// SIGKILL mid-session after a live part shipped; the gateway restarted on the same spool
/// repairs the recording and ships it whole (parts deleted), and asciinema plays it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_gateway_ships_the_repaired_recording_on_restart() {
    let mut sg = StoreGateway::start(&[]).await;
    let sam = sg.gw.sre().await;
    let args = [
        "exec",
        "payments/payments-api-0",
        "--",
        "sh",
        "-c",
        "'echo started-before-the-kill; read word; echo tail-$word; sleep 60'",
    ];
    let mut ssh = sg.ssh(&sam, "sam", &args);
    ssh.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut client = ssh.spawn().unwrap();
    let mut stdin = client.stdin.take().unwrap();
    let mut out = BufReader::new(client.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(DEADLINE, out.next_line())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.as_deref(), Some("started-before-the-kill"));
    let session = started(&sg).await;
    wait_part_with(&sg, &session, "started-before-the-kill").await;
    assert!(
        sg.s3
            .object(PREFIX, &format!("{}.cast", sg.stem(&session)))
            .is_none(),
        "a whole transcript of a live session"
    );
    // The tail: printed after that part, on the spool's disk (flushed every second), and
    // then the gateway dies, most likely before shipping it in a part.
    stdin.write_all(b"of-the-session\n").await.unwrap();
    let tail = tokio::time::timeout(DEADLINE, out.next_line())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(tail.as_deref(), Some("tail-of-the-session"));
    let spooled = sg.spool_file(&session, "cast").unwrap();
    wait_for("the tail in the spool's transcript", || async {
        let on_disk = std::fs::read_to_string(&spooled).unwrap();
        if on_disk.contains("tail-of-the-session") {
            Ok(())
        } else {
            Err(on_disk)
        }
    })
    .await;

    sg.kill().await;
    let _ = client.kill().await;
    sg.restart_gateway().await;
    sg.wait_shipped_identical(&session).await;
    let stem = sg.stem(&session);
    let meta: serde_json::Value =
        serde_json::from_slice(&sg.s3.object(PREFIX, &format!("{stem}.json")).unwrap()).unwrap();
    assert_eq!(meta["end_reason"], "incomplete", "{meta}");
    // As downloaded from the bucket, the transcript plays.
    let downloaded = sg.gw.dir.path().join("downloaded.cast");
    std::fs::write(
        &downloaded,
        sg.s3.object(PREFIX, &format!("{stem}.cast")).unwrap(),
    )
    .unwrap();
    let played = asciinema_cat(&downloaded).unwrap();
    for line in ["started-before-the-kill", "tail-of-the-session"] {
        assert!(played.contains(line), "{line:?} not played: {played:?}");
    }
    assert!(
        sg.s3
            .keys_under(PREFIX)
            .iter()
            .all(|k| !k.contains(".cast.parts/")),
        "parts left: {:?}",
        sg.s3.keys()
    );
    // The chain goes on across the restart (same spool, same audit chain): the bucket verifies.
    sg.wait_audit_shipped("recording.shipped", &session).await;
    sg.assert_store_verifies().await;
}

/// With the server down, a session fills the spool past `spool_max_size`: the next session
/// is refused (69) with the reason, /readyz fails; once the spool drains, sessions are back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_refuses_new_sessions_until_it_drains() {
    let mut sg = StoreGateway::start(&["spool_max_size: 64KiB"]).await;
    let (alice, sam) = (sg.gw.alice().await, sg.gw.sre().await);
    sg.wait_metric("podgate_store_up", 1.0).await;
    sg.s3.stop().await;

    // Accepted (the spool is within its limit) and recorded: well over 64 KiB.
    let args = ["exec", "payments/payments-api-0", "--", "seq", "1", "30000"];
    let out = run(sg.ssh(&sam, "sam", &args), None).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).ends_with("\n30000\n"));

    wait_for("/readyz 503 naming the recordings store", || async {
        match sg.readyz().await {
            (503, body) if body.contains("recordings store") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let echo = ["exec", "payments/payments-api-0", "--", "echo", "hello"];
    let out = run(sg.ssh(&alice, "alice", &echo), None).await;
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(69), "{err}");
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    assert!(
        err.contains("cannot be recorded") && err.contains("recordings store"),
        "{err}"
    );
    let denied = sg.wait_event("session.denied", None).await;
    let reason = denied["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("recordings store"), "{denied}");
    sg.wait_event("spool.over_limit", None).await;

    sg.s3.restart().await;
    wait_for("/readyz 200", || async {
        match sg.readyz().await {
            (200, _) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    sg.wait_event("spool.within_limit", None).await;
    let out = run(sg.ssh(&alice, "alice", &echo), None).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hello\n");
    let first = &sg.sessions()[0];
    sg.wait_shipped_identical(first).await;
}

/// `spool_max_age` with `when_spool_full: accept` (fail open, loudly): the spool goes over
/// its age limit while the store is down, the transition is audited with the setting, and
/// sessions are still accepted and recorded, `/readyz` staying 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_spool_fails_open_when_configured_to() {
    let mut sg = StoreGateway::start(&["spool_max_age: 1s", "when_spool_full: accept"]).await;
    let alice = sg.gw.alice().await;
    sg.wait_metric("podgate_store_up", 1.0).await;
    sg.s3.stop().await;

    let echo = ["exec", "payments/payments-api-0", "--", "echo", "hello"];
    let out = run(sg.ssh(&alice, "alice", &echo), None).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let over = sg
        .wait_event("spool.over_limit", Some(("when_spool_full", "accept")))
        .await;
    let reason = over["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("spool_max_age 1s"), "{over}");
    sg.wait_metric("podgate_spool_over_limit", 1.0).await;

    let out = run(sg.ssh(&alice, "alice", &echo), None).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hello\n");
    assert_eq!(sg.readyz().await.0, 200);
    assert!(sg.event("session.denied", None).is_none());

    sg.s3.restart().await;
    sg.wait_event("spool.within_limit", None).await;
    for session in sg.sessions() {
        sg.wait_shipped_identical(&session).await;
    }
}
