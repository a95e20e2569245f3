//! Recordings made by real sessions: read by the real asciinema, verified and listed by the
//! offline tools, refused when they cannot be written, and recovered after a SIGKILL.

use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};

use super::gateway_support::{ServeProcess, TEST_POLICY, TestGateway};
use super::support::{DEADLINE, asciinema_cat, casts, podgate, recordings_verify, run, text};

/// Sessions leave transcripts asciinema plays, metadata the tools list, and a chain that verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_recorded_and_verifiable() {
    let gw = TestGateway::start().await;
    let cert = gw.sre().await;
    let hostile = r"exec payments/payments-api-0 -- printf 'osc52:\033]52;c;aGVsbG8=\007 title:\033]0;pwned\007 utf8:\303\251\n'";
    let out = run(gw.ssh(&cert, "sam", &[hostile]), None).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("utf8:\u{e9}"),
        "{}",
        text(&out.stdout)
    );
    let printed = out.stdout.len() as u64;
    let out = run(
        gw.ssh(&cert, "sam", &["logs", "payments/payments-batch-0"]),
        None,
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    let root = gw.dir.path().join("recordings");
    let files = casts(&root);
    assert_eq!(files.len(), 2, "{files:?}");
    let mut played = String::new();
    for f in &files {
        played.push_str(&asciinema_cat(f).unwrap());
    }
    assert!(played.contains("utf8:é"), "{played:?}");
    assert!(
        played.contains("one") && played.contains("four"),
        "{played:?}"
    );

    let out = recordings_verify(&root).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let out = run(
        podgate(&[
            "recordings",
            "list",
            "--json",
            "--recordings",
            root.to_str().unwrap(),
            "--action",
            "exec",
        ]),
        None,
    )
    .await;
    assert_eq!(out.status.code(), Some(0));
    let listed: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(listed.len(), 1);
    let m = &listed[0];
    assert_eq!(m["identity"], "sam@corp.example");
    assert_eq!(m["rule"], "sre-shell");
    assert_eq!(m["exit_status"], 0);
    assert_eq!(m["bytes"]["stdout"].as_u64(), Some(printed));
    assert_eq!(m["complete"], true);
    let session = m["session"].as_str().unwrap();
    let out = run(
        podgate(&[
            "replay",
            &session[..8],
            "--cat",
            "--recordings",
            root.to_str().unwrap(),
        ]),
        None,
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("utf8:\u{e9}"));
    let ended = gw
        .events()
        .into_iter()
        .find(|e| e["event"] == "session.ended" && e["session"] == session)
        .unwrap();
    assert_eq!(ended["cast_sha256"], m["cast"]["sha256"]);

    // A flipped byte in a transcript is caught.
    let cast = files
        .iter()
        .find(|f| f.to_string_lossy().contains(session))
        .unwrap();
    let original = std::fs::read(cast).unwrap();
    let mut bytes = original.clone();
    let last = bytes.len() - 3;
    bytes[last] ^= 1;
    std::fs::write(cast, bytes).unwrap();
    let out = recordings_verify(&root).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains(session), "{}", text(&out.stderr));
    // Put it back: every transcript a test leaves must still play (see TestGateway).
    std::fs::write(cast, original).unwrap();
}

/// When the recording cannot be opened, or space is short, the session is refused (69).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unrecordable_sessions_are_refused() {
    let gw = TestGateway::start_with(TEST_POLICY, "recordings_min_free: 1000TiB\n").await;
    let cert = gw.alice().await;
    let out = run(
        gw.ssh(
            &cert,
            "alice",
            &["exec", "payments/payments-api-0", "--", "echo", "hi"],
        ),
        None,
    )
    .await;
    assert_eq!(out.status.code(), Some(69), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("cannot be recorded"),
        "{}",
        text(&out.stderr)
    );
    assert!(out.stdout.is_empty());
    if let Some(calls) = gw.pod_calls() {
        assert!(
            calls
                .iter()
                .all(|e| e["objectRef"]["subresource"] != "exec"),
            "nothing ran: {calls:?}"
        );
    }

    let gw = TestGateway::start().await;
    let cert = gw.alice().await;
    // Today's directory is a file: the recording cannot be created.
    let day = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    std::fs::write(
        gw.dir.path().join("recordings").join(&day[..10]),
        b"in the way",
    )
    .unwrap();
    let out = run(
        gw.ssh(
            &cert,
            "alice",
            &["exec", "payments/payments-api-0", "--", "echo", "hi"],
        ),
        None,
    )
    .await;
    assert_eq!(out.status.code(), Some(69), "{}", text(&out.stderr));
    assert!(gw.events().iter().any(|e| e["event"] == "session.denied"));
}

/// A gateway killed with SIGKILL mid-session leaves a transcript that, after the next
/// start, asciinema plays and `verify` accepts, marked incomplete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_gateway_leaves_a_playable_recording() {
    let gw = TestGateway::start().await;
    let cert = gw.sre().await;
    // A second gateway, the real binary, on the same configuration and recordings.
    let config = gw.dir.path().join("config.yaml");
    let mut child = ServeProcess::start(&config, false).await;
    gw.trust_port(child.ssh_port);
    let mut ssh = gw.ssh_to(
        child.ssh_port,
        &cert,
        "sam",
        &[
            "exec",
            "payments/payments-api-0",
            "--",
            "sh",
            "-c",
            "'echo started; sleep 60'",
        ],
    );
    ssh.stdout(Stdio::piped()).stderr(Stdio::null());
    let mut session = ssh.spawn().unwrap();
    let mut out = BufReader::new(session.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(DEADLINE, out.next_line())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.as_deref(), Some("started"));
    // Recordings are flushed at least every second: wait (bounded) until the line is on
    // disk, so that what SIGKILL leaves behind is known.
    let root = gw.dir.path().join("recordings");
    tokio::time::timeout(DEADLINE, async {
        loop {
            let on_disk = casts(&root)
                .first()
                .map(|f| {
                    std::fs::read_to_string(f)
                        .unwrap_or_default()
                        .contains(r#""o","started"#)
                })
                .unwrap_or(false);
            if on_disk {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the transcript was not flushed within the deadline");
    child.child.start_kill().unwrap();
    let _ = tokio::time::timeout(DEADLINE, child.child.wait())
        .await
        .unwrap();
    let _ = session.kill().await;

    let mut child = ServeProcess::start(&config, false).await;
    let files = casts(&root);
    assert_eq!(files.len(), 1);
    let played = asciinema_cat(&files[0]).unwrap();
    assert!(
        played.contains("started"),
        "{played:?} from {:?}",
        std::fs::read_to_string(&files[0])
    );
    let out = run(
        podgate(&[
            "recordings",
            "list",
            "--json",
            "--recordings",
            root.to_str().unwrap(),
            "--end-reason",
            "incomplete",
        ]),
        None,
    )
    .await;
    assert_eq!(
        text(&out.stdout).lines().count(),
        1,
        "{}",
        text(&out.stdout)
    );
    let out = recordings_verify(&root).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    child.child.start_kill().unwrap();
}
