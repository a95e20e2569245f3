//! `podgate incident open|list|close` against the devcluster (or the cluster `KUBECONFIG`
//! names), checked with real kubectl: the objects and their hardening, the RBAC they
//! grant (and do not grant), idempotent re-runs that keep the host key, the list, a close
//! that leaves nothing behind, names that belong to someone else left alone, and the
//! `--dry-run` YAML passing `kubernetes-validate --strict`, with and without a recordings
//! store, whose Secret must exist and whose URL is checked before any cluster call.

use serde_json::Value;

use super::support::{TestCluster, podgate, run, text};

const CA: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl ca\n";

fn incident(cluster: &TestCluster, args: &[&str]) -> tokio::process::Command {
    let mut cmd = podgate(&["incident"]);
    cmd.args(args)
        .arg("--kubeconfig")
        .arg(&cluster.kubeconfig)
        .env_remove("KUBECONFIG");
    cmd
}

async fn kubectl_json(cluster: &TestCluster, args: &[&str]) -> Value {
    let mut cmd = cluster.kubectl();
    cmd.args(args).args(["-o", "json"]);
    let out = run(cmd, None).await;
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        text(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `kubectl auth`-style check by doing: may `--as USER --as-group GROUP` run `args`?
async fn allowed(cluster: &TestCluster, group: &str, args: &[&str]) -> bool {
    let mut cmd = cluster.kubectl();
    cmd.args(["--as", "alice@corp.example", "--as-group", group])
        .args(args);
    let out = run(cmd, None).await;
    let err = text(&out.stderr);
    assert!(
        out.status.success() || err.contains("Forbidden"),
        "{args:?}: {err}"
    );
    out.status.success()
}

fn fingerprint(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("host key: "))
        .unwrap_or_else(|| panic!("no host key line: {stdout}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_list_close_against_the_cluster() {
    let cluster = TestCluster::start().await;
    let ca = cluster.dir.path().join("user_ca.pub");
    std::fs::write(&ca, CA).unwrap();
    let ca = ca.to_str().unwrap();
    let open = [
        "open",
        "INC-7",
        "--namespace",
        "payments",
        "--ttl",
        "90m",
        "--ca-pub",
        ca,
    ];

    let out = run(incident(&cluster, &open), None).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert_eq!(stdout.matches(" created\n").count(), 9, "{stdout}");
    assert!(
        stdout.contains("ssh endpoint: podgate-inc-inc-7.podgate.svc:22"),
        "{stdout}"
    );
    assert!(
        stdout.contains("-O critical:incident@podgate=INC-7"),
        "{stdout}"
    );
    let first_key = fingerprint(&stdout);
    assert!(first_key.starts_with("SHA256:"), "{first_key}");

    // The pod: its deadline is the TTL, its own service account, hardened.
    let pod = kubectl_json(
        &cluster,
        &["-n", "podgate", "get", "pod", "podgate-inc-inc-7"],
    )
    .await;
    assert_eq!(pod["spec"]["activeDeadlineSeconds"], 5400);
    assert_eq!(pod["spec"]["serviceAccountName"], "podgate-inc-inc-7");
    assert_eq!(pod["spec"]["securityContext"]["runAsNonRoot"], true);
    let container = &pod["spec"]["containers"][0];
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(
        container["securityContext"]["capabilities"]["drop"][0],
        "ALL"
    );
    assert_eq!(pod["metadata"]["labels"]["podgate.dev/incident"], "INC-7");
    let config = kubectl_json(
        &cluster,
        &["-n", "podgate", "get", "configmap", "podgate-inc-inc-7"],
    )
    .await;
    let config_text = config["data"]["config.yaml"].as_str().unwrap();
    assert!(config_text.contains("\nincident: INC-7\n"), "{config_text}");
    assert_eq!(config["data"]["user_ca.pub"], CA);

    // RBAC: the incident group may debug in payments only.
    let group = "jit:incident:INC-7";
    assert!(allowed(&cluster, group, &["-n", "payments", "get", "pods"]).await);
    assert!(!allowed(&cluster, group, &["-n", "checkout", "get", "pods"]).await);
    assert!(!allowed(&cluster, group, &["-n", "payments", "get", "secrets"]).await);
    // The incident's service account may impersonate the incident group and nothing else.
    let sa = "system:serviceaccount:podgate:podgate-inc-inc-7";
    let role = kubectl_json(
        &cluster,
        &["get", "clusterrole", "podgate-inc-inc-7-impersonator"],
    )
    .await;
    assert_eq!(
        role["rules"][1]["resourceNames"],
        serde_json::json!([group])
    );
    let mut cmd = cluster.kubectl();
    cmd.args(["--as", sa, "-n", "payments", "get", "pods"]);
    let out = run(cmd, None).await;
    assert!(
        !out.status.success(),
        "the incident service account read pods itself"
    );

    // Again: idempotent, same host key, nothing new.
    let out = run(incident(&cluster, &open), None).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert_eq!(stdout.matches(" created\n").count(), 0, "{stdout}");
    assert!(
        stdout.contains("pod/podgate-inc-inc-7 (namespace podgate) unchanged"),
        "{stdout}"
    );
    assert_eq!(fingerprint(&stdout), first_key);

    let out = run(incident(&cluster, &["list"]), None).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let list = text(&out.stdout);
    let row = list
        .lines()
        .find(|l| l.starts_with("INC-7 "))
        .unwrap_or_else(|| panic!("{list}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells[1], "payments", "{list}");
    assert!(cells[3] == "90m" || cells[3] == "89m", "{list}");
    assert_eq!(cells[4], "Running", "{list}");

    let out = run(incident(&cluster, &["close", "INC-7"]), None).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).matches(" deleted\n").count(),
        9,
        "{}",
        text(&out.stdout)
    );
    for kind in [
        "pods,services,configmaps,secrets,serviceaccounts,rolebindings",
        "clusterroles,clusterrolebindings",
    ] {
        let left = kubectl_json(
            &cluster,
            &["get", kind, "-A", "-l", "podgate.dev/incident=INC-7"],
        )
        .await;
        assert_eq!(left["items"], serde_json::json!([]), "{kind}");
    }
    let out = run(incident(&cluster, &["close", "INC-7"]), None).await;
    assert!(out.status.success());
    assert_eq!(text(&out.stdout), "incident INC-7: nothing to delete\n");
    let out = run(incident(&cluster, &["list"]), None).await;
    assert!(!text(&out.stdout).contains("INC-7"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_refuses_what_is_not_its_own_and_missing_namespaces() {
    let cluster = TestCluster::start().await;
    let ca = cluster.dir.path().join("user_ca.pub");
    std::fs::write(&ca, CA).unwrap();
    let ca = ca.to_str().unwrap();
    // A ConfigMap of that name that nobody labelled.
    let mut cmd = cluster.kubectl();
    cmd.args(["create", "--validate=false", "-f", "-"]);
    let manifest = br#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "podgate-inc-inc-8", "namespace": "podgate"}}"#;
    let out = run(cmd, Some(manifest)).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = run(
        incident(
            &cluster,
            &["open", "INC-8", "-n", "payments", "--ca-pub", ca],
        ),
        None,
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("was not made by `podgate incident open`"),
        "{}",
        text(&out.stderr)
    );
    let cm = kubectl_json(
        &cluster,
        &["-n", "podgate", "get", "configmap", "podgate-inc-inc-8"],
    )
    .await;
    assert!(
        cm.get("data").is_none() || cm["data"].is_null(),
        "overwritten: {cm}"
    );

    // A namespace that does not exist: nothing is made.
    let out = run(
        incident(
            &cluster,
            &["open", "INC-9", "-n", "nowhere", "--ca-pub", ca],
        ),
        None,
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("namespaces \"nowhere\" not found"),
        "{}",
        text(&out.stderr)
    );
    let left = kubectl_json(
        &cluster,
        &[
            "get",
            "serviceaccounts,clusterroles",
            "-A",
            "-l",
            "podgate.dev/incident=INC-9",
        ],
    )
    .await;
    assert_eq!(left["items"], serde_json::json!([]));

    // No --ca-pub and no installed gateway to take it from.
    let out = run(
        incident(&cluster, &["open", "INC-9", "-n", "payments"]),
        None,
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no --ca-pub given"),
        "{}",
        text(&out.stderr)
    );
    // A --store-secret that does not exist: the pod could never start, nothing is made.
    let store = [
        "open",
        "INC-9",
        "-n",
        "payments",
        "--ca-pub",
        ca,
        "--store",
        "s3://rec/incidents",
        "--store-secret",
        "nope",
    ];
    let out = run(incident(&cluster, &store), None).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("secret podgate/nope (--store-secret)"),
        "{}",
        text(&out.stderr)
    );
    let left = kubectl_json(
        &cluster,
        &[
            "get",
            "serviceaccounts",
            "-A",
            "-l",
            "podgate.dev/incident=INC-9",
        ],
    )
    .await;
    assert_eq!(left["items"], serde_json::json!([]));
    // Once the Secret exists, the pod takes its environment from it.
    let mut cmd = cluster.kubectl();
    cmd.args(["create", "--validate=false", "-f", "-"]);
    let manifest = br#"{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "nope", "namespace": "podgate"}, "data": {"AWS_ACCESS_KEY_ID": "aw==", "AWS_SECRET_ACCESS_KEY": "cw=="}}"#;
    let out = run(cmd, Some(manifest)).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = run(incident(&cluster, &store), None).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout)
            .contains("recordings: s3://rec/incidents/INC-9 (credentials: Secret podgate/nope)"),
        "{}",
        text(&out.stdout)
    );
    let pod = kubectl_json(
        &cluster,
        &["-n", "podgate", "get", "pod", "podgate-inc-inc-9"],
    )
    .await;
    assert_eq!(
        pod["spec"]["containers"][0]["envFrom"],
        serde_json::json!([{"secretRef": {"name": "nope", "optional": false}}])
    );
    let out = run(incident(&cluster, &["close", "INC-9"]), None).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    // A bad store URL is refused before the kubeconfig is even read.
    let mut cmd = podgate(&[
        "incident",
        "open",
        "INC-9",
        "-n",
        "payments",
        "--store",
        "gs://rec/incidents",
        "--kubeconfig",
        "/nonexistent/kubeconfig",
    ]);
    cmd.env_remove("KUBECONFIG");
    let out = run(cmd, None).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "podgate: --store: recordings_store \"gs://rec/incidents\" must start with s3://\n"
    );
    // Not an incident ID.
    let out = run(
        incident(
            &cluster,
            &["open", "INC 9", "-n", "payments", "--ca-pub", ca],
        ),
        None,
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("incident ID"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test]
async fn dry_run_yaml_passes_strict_validation() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("user_ca.pub");
    std::fs::write(&ca, CA).unwrap();
    let yaml = dir.path().join("incident.yaml");
    let with_store: &[&str] = &[
        "--store",
        "s3://rec/incidents",
        "--store-endpoint",
        "http://minio.minio.svc:9000",
        "--store-path-style",
        "--store-allow-http",
        "--store-secret",
        "podgate-recordings-store",
        "--service-account-annotation",
        "eks.amazonaws.com/role-arn=arn:aws:iam::123456789012:role/podgate",
    ];
    let mut out = None;
    for extra in [&[][..], with_store] {
        let mut cmd = podgate(&[
            "incident",
            "open",
            "INC-10",
            "-n",
            "payments",
            "-n",
            "y",
            "--ca-pub",
            ca.to_str().unwrap(),
            "--cluster",
            "prod",
            "--service-type",
            "LoadBalancer",
            "--dry-run",
        ]);
        cmd.args(extra).env_remove("KUBECONFIG");
        let printed = run(cmd, None).await;
        assert!(printed.status.success(), "{}", text(&printed.stderr));
        let stdout = text(&printed.stdout);
        assert_eq!(
            stdout.contains("\"envFrom\""),
            !extra.is_empty(),
            "{extra:?}: {stdout}"
        );
        assert_eq!(
            stdout.contains(r#"url: \"s3://rec/incidents/INC-10\""#),
            !extra.is_empty(),
            "{extra:?}: {stdout}"
        );
        std::fs::write(&yaml, &printed.stdout).unwrap();
        let mut validate = tokio::process::Command::new("kubernetes-validate");
        validate.args(["--strict", "-k", "1.33.0"]).arg(&yaml);
        let checked = run(validate, None).await;
        let report = text(&checked.stdout) + &text(&checked.stderr);
        assert!(checked.status.success(), "{extra:?}: {report}");
        assert_eq!(
            report.matches(" passed ").count(),
            10,
            "{extra:?}: {report}"
        );
        out = Some(printed);
    }
    let out = out.unwrap();

    // The validator is not a rubber stamp: an unknown field fails.
    let bad = text(&out.stdout).replacen("\"activeDeadlineSeconds\"", "\"activeDeadlineSecs\"", 1);
    std::fs::write(&yaml, bad).unwrap();
    let mut validate = tokio::process::Command::new("kubernetes-validate");
    validate.args(["--strict", "-k", "1.33.0"]).arg(&yaml);
    assert!(!run(validate, None).await.status.success());
}
