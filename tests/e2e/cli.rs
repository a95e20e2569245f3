//! The other commands of the binary: `serve` refusing bad configurations, `cert issue`,
//! `policy check` and `policy explain`.

use super::gateway_support::keygen;
use super::support::{podgate, run, text};

fn policy_dir() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/policy").to_owned()
}

/// `serve` names the file and line of an unknown key, and the missing host key.
#[tokio::test]
async fn serve_refuses_bad_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.yaml");
    let base = format!(
        "listen: 127.0.0.1:0\nhost_key: missing_host_key\ntrusted_user_ca_keys: [ca.pub]\ncluster: c\npolicy: {}\nrecordings: rec\nkubeconfig: kc.yaml\n",
        policy_dir()
    );
    std::fs::write(&cfg, format!("{base}colour: blue\n")).unwrap();
    let out = run(podgate(&["serve", "--config", cfg.to_str().unwrap()]), None).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("config.yaml:8:1: unknown field `colour`"),
        "{stderr}"
    );

    keygen(&[
        "-q",
        "-t",
        "ed25519",
        "-N",
        "",
        "-f",
        dir.path().join("ca").to_str().unwrap(),
    ])
    .await;
    std::fs::write(&cfg, &base).unwrap();
    let out = run(podgate(&["serve", "--config", cfg.to_str().unwrap()]), None).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("missing_host_key") && stderr.contains("host key"),
        "{stderr}"
    );

    // A recordings store never takes credentials from the file.
    std::fs::write(
        &cfg,
        format!("{base}recordings_store: {{url: 's3://bucket/prefix', secret_access_key: x}}\n"),
    )
    .unwrap();
    let out = run(podgate(&["serve", "--config", cfg.to_str().unwrap()]), None).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("recordings_store: unknown field `secret_access_key`"),
        "{}",
        text(&out.stderr)
    );
}

/// `cert issue` signs what `ssh-keygen -L` reads back, and refuses over-long lifetimes.
#[tokio::test]
async fn cert_issue_signs_a_scoped_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_owned();
    keygen(&["-q", "-t", "ed25519", "-N", "", "-f", &p("ca")]).await;
    keygen(&["-q", "-t", "ed25519", "-N", "", "-f", &p("alice")]).await;
    let out = run(
        podgate(&[
            "cert",
            "issue",
            "--ca",
            &p("ca"),
            "--key",
            &p("alice.pub"),
            "--identity",
            "alice@corp.example",
            "--principal",
            "alice",
            "--validity",
            "2h",
            "--serial-file",
            &p("serial"),
            "--cluster",
            "prod-eu-1",
            "--namespaces",
            "payments,payments-*",
            "--actions",
            "list,logs,exec",
            "--groups",
            "oncall-payments",
            "--reason",
            "INC-42 checkout errors",
            "--no-port-forwarding",
        ]),
        None,
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_to_string(p("serial")).unwrap().trim(), "1");
    let listed = keygen(&["-L", "-f", &p("alice-cert.pub")]).await;
    let listed = text(&listed.stdout);
    for want in [
        "Type: ssh-ed25519-cert-v01@openssh.com user certificate",
        "Key ID: \"alice@corp.example\"",
        "Serial: 1",
        "alice",
        "cluster@podgate",
        "permit-pty",
    ] {
        assert!(listed.contains(want), "{want} missing from {listed}");
    }
    assert!(!listed.contains("permit-port-forwarding"), "{listed}");

    let out = run(
        podgate(&[
            "cert",
            "issue",
            "--ca",
            &p("ca"),
            "--key",
            &p("alice.pub"),
            "--identity",
            "a",
            "--principal",
            "a",
            "--validity",
            "13h",
            "--serial",
            "5",
        ]),
        None,
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("lifetime"),
        "{}",
        text(&out.stderr)
    );
}

/// `policy check` accepts the examples and reports errors as FILE:LINE; `explain` names the rule.
#[tokio::test]
async fn policy_check_and_explain() {
    let out = run(podgate(&["policy", "check", &policy_dir()]), None).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "rules:\n  - name: x\n    groups: [g]\n    namespaces: [a]\n    actions: [exec]\n    commands: ['ls(']\n    impersonate_groups: [j]\n").unwrap();
    let out = run(podgate(&["policy", "check", bad.to_str().unwrap()]), None).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("bad.yaml:6"), "{stderr}");

    let out = run(
        podgate(&[
            "policy",
            "explain",
            "--policy",
            &policy_dir(),
            "--groups",
            "oncall-payments",
            "exec",
            "payments/payments-api-0",
            "--",
            "ps",
            "aux",
        ]),
        None,
    )
    .await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("allowed by rule payments-oncall"),
        "{stdout}"
    );

    let out = run(
        podgate(&[
            "policy",
            "explain",
            "--policy",
            &policy_dir(),
            "--groups",
            "oncall-payments",
            "exec",
            "payments/payments-api-0",
            "--",
            "rm",
            "-rf",
            "/",
        ]),
        None,
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("denied: "),
        "{}",
        text(&out.stdout)
    );
}
