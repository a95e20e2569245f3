//! Live revocation: a KRL written by the real `ssh-keygen -k` ends the sessions and forwards
//! of a logged-in certificate within 5 s and refuses its next login; a corrupt list refuses
//! everyone.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::gateway_support::{TestGateway, keygen};
use super::lifetime::until_it_ends;
use super::port_forward::forward_policy;
use super::support::{run, text};

/// Wait (bounded) until the audit log holds `n` events matching `pred`.
async fn wait_for_events(gw: &TestGateway, n: usize, what: &str, pred: impl Fn(&Value) -> bool) {
    let waited = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if gw.events().iter().filter(|e| pred(e)).count() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "never saw {n} × {what}: {:?}", gw.events());
}

/// Replace the list at `path` atomically (write aside, rename over), as an operator would.
fn replace(path: &Path, bytes: &[u8]) {
    let aside = path.with_extension("new");
    std::fs::write(&aside, bytes).unwrap();
    std::fs::rename(&aside, path).unwrap();
}

/// The `auth.rejected` codes of `principal`'s certificate, in order (ssh goes on to offer
/// the plain key, refused as `not_a_certificate`, which is left out).
fn rejections(gw: &TestGateway, principal: &str) -> Vec<String> {
    gw.events()
        .iter()
        .filter(|e| e["event"] == "auth.rejected" && e["principal"] == principal)
        .filter(|e| e["serial"].is_number())
        .filter_map(|e| e["code"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn a_krl_from_ssh_keygen_ends_live_sessions_within_five_seconds_and_refuses_the_next_login() {
    let lists = tempfile::tempdir().unwrap();
    let list = lists.path().join("revoked");
    std::fs::write(&list, "# nothing revoked yet\n").unwrap();
    let gw = TestGateway::start_with(
        &forward_policy(),
        &format!("revoked_keys: {}\n", list.display()),
    )
    .await;
    let (alice, sam) = (gw.alice().await, gw.sre().await);

    // Alice (serial 7): a followed log, a command waiting on stdin, and a forward; Sam
    // (serial 9) a shell. Only Alice's are revoked.
    let logs = gw.ssh(
        &alice,
        "alice",
        &["logs", "-f", "payments/payments-batch-0"],
    );
    let exec = gw.ssh(
        &alice,
        "alice",
        &["exec", "payments/payments-api-0", "--", "cat"],
    );
    let forward = gw.ssh(&alice, "alice", &["-W", "payments-api-0.payments:9000"]);
    let shell = gw.ssh(&sam, "sam", &["-tt", "shell", "payments/payments-api-0"]);
    let running = tokio::spawn(async move {
        tokio::join!(
            until_it_ends(logs),
            until_it_ends(exec),
            until_it_ends(forward)
        )
    });
    let sam_running = tokio::spawn(until_it_ends(shell));
    wait_for_events(&gw, 4, "session.started", |e| {
        e["event"] == "session.started"
    })
    .await;

    let spec = lists.path().join("spec");
    std::fs::write(&spec, "serial: 7\n").unwrap();
    let krl = lists.path().join("made.krl");
    let ca_pub = gw.ca.with_extension("pub");
    keygen(&[
        "-q",
        "-k",
        "-f",
        krl.to_str().unwrap(),
        "-s",
        ca_pub.to_str().unwrap(),
        spec.to_str().unwrap(),
    ])
    .await;
    let bytes = std::fs::read(&krl).unwrap();
    assert!(bytes.starts_with(b"SSHKRL\n\0"), "ssh-keygen wrote a KRL");
    let revoked_at = Instant::now();
    replace(&list, &bytes);

    let ((logs, exec, forward), ended) = tokio::time::timeout(Duration::from_secs(30), async {
        let r = running.await.unwrap();
        (r, Instant::now())
    })
    .await
    .expect("the revoked sessions ended");
    let took = ended.duration_since(revoked_at);
    assert!(
        took <= Duration::from_secs(5),
        "ended {took:?} after the KRL was written"
    );
    for (what, (code, out, _)) in [("logs -f", logs), ("exec", exec)] {
        assert_eq!(code, Some(124), "{what}: {out}");
        assert!(
            out.contains("podgate: session ended: your certificate was revoked"),
            "{what}: {out}"
        );
    }
    // `ssh -W` has no exit status to carry; its forward closes (and the connection is cut).
    assert_ne!(forward.0, None, "ssh -W: {}", forward.1);
    let events = gw.events();
    let revoked: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "auth.revoked")
        .collect();
    assert!(!revoked.is_empty(), "auth.revoked");
    assert!(
        revoked
            .iter()
            .all(|e| e["serial"] == 7 && e["key_id"] == "alice@corp.example")
    );
    assert!(
        revoked
            .iter()
            .all(|e| e["reason"].as_str().unwrap().starts_with("serial 7")),
        "{revoked:?}"
    );
    wait_for_events(&gw, 3, "session.ended revoked", |e| {
        e["event"] == "session.ended" && e["end_reason"] == "revoked"
    })
    .await;
    let ended: Vec<Value> = gw
        .events()
        .into_iter()
        .filter(|e| e["event"] == "session.ended" && e["end_reason"] == "revoked")
        .collect();
    assert_eq!(ended.len(), 3, "{ended:?}");
    // The forward's metadata-only session is one of them.
    assert_eq!(
        ended.iter().filter(|e| e["connections"] == 1).count(),
        1,
        "{ended:?}"
    );

    // The next login with the revoked certificate is refused; Sam's shell goes on and Sam
    // can still log in.
    let again = gw.ssh(
        &alice,
        "alice",
        &["exec", "payments/payments-api-0", "--", "true"],
    );
    let out = run(again, None).await;
    assert_eq!(out.status.code(), Some(255), "{}", text(&out.stderr));
    assert_eq!(
        rejections(&gw, "alice").last().map(String::as_str),
        Some("revoked")
    );
    let sam_again = gw.ssh(
        &sam,
        "sam",
        &["exec", "payments/payments-api-0", "--", "true"],
    );
    let out = run(sam_again, None).await;
    assert!(out.status.success(), "sam: {}", text(&out.stderr));
    assert!(!sam_running.is_finished(), "sam's shell was ended");
    sam_running.abort();
}

#[tokio::test]
async fn a_corrupt_list_refuses_everyone_until_it_is_fixed() {
    let lists = tempfile::tempdir().unwrap();
    let list = lists.path().join("revoked");
    std::fs::write(&list, "serial: 1000\n").unwrap();
    let gw = TestGateway::start_with(
        &forward_policy(),
        &format!("revoked_keys: {}\n", list.display()),
    )
    .await;
    let (alice, sam) = (gw.alice().await, gw.sre().await);
    let login = |cert: &Path, who: &str| {
        let cmd = gw.ssh(
            cert,
            who,
            &["exec", "payments/payments-api-0", "--", "true"],
        );
        async move { run(cmd, None).await.status.code() }
    };
    assert_eq!(login(&alice, "alice").await, Some(0));

    // A KRL cut short: the magic and half a header.
    replace(&list, b"SSHKRL\n\0\0\0\0\x01\0\0");
    // The change is picked up within a second; poll (bounded) until logins are refused.
    let refused = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if login(&sam, "sam").await == Some(255) {
                return;
            }
        }
    })
    .await;
    assert!(refused.is_ok(), "sam was never refused: {:?}", gw.events());
    assert_eq!(login(&alice, "alice").await, Some(255));
    assert_eq!(
        rejections(&gw, "sam").last().map(String::as_str),
        Some("revocation_unavailable")
    );
    assert_eq!(
        rejections(&gw, "alice").last().map(String::as_str),
        Some("revocation_unavailable")
    );

    // Fixed: logins work again.
    replace(&list, b"serial: 1000\n");
    let back = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if login(&alice, "alice").await == Some(0) {
                return;
            }
        }
    })
    .await;
    assert!(back.is_ok(), "logins never came back");
}
