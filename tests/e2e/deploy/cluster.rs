//! deploy/'s RBAC in a cluster: loaded as-is into the devcluster, driven with real kubectl
//! and kube-rs as the gateway's ServiceAccount, and under the real `podgate serve` run
//! with the shipped configuration and policy.

use std::path::{Path, PathBuf};
use std::process::Output;

use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use serde_json::Value;

use super::super::gateway_process::get;
use super::super::gateway_support::{ServeProcess, keygen};
use super::super::support::{DEADLINE, TestCluster, run, text};
use super::{copy_tree, deploy_dir, deployment, manifests, read, s};

/// A devcluster whose only RBAC is deploy/'s manifests, loaded as they are (the
/// devcluster skips the kinds that are not RBAC, as `--rbac deploy/*.yaml` would).
async fn deploy_cluster() -> TestCluster {
    TestCluster::start_with_rbac(&manifests()).await
}

/// `kubectl --context gateway ARGS` (the ServiceAccount podgate/podgate); `args` is split
/// on spaces.
async fn as_gateway(c: &TestCluster, args: &str) -> Output {
    let mut cmd = c.kubectl();
    cmd.args(["--context", "gateway"]).args(args.split(' '));
    run(cmd, None).await
}

fn assert_ok(out: &Output) -> String {
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
}

fn assert_forbidden(out: &Output, wanted: &str) {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("(Forbidden)"), "{stderr}");
    assert!(stderr.contains(wanted), "wanted {wanted:?} in: {stderr}");
}

const GATEWAY_SA: &str = "system:serviceaccount:podgate:podgate";

/// With deploy/'s RBAC, real kubectl as the gateway's ServiceAccount: impersonating an
/// engineer with a listed JIT group works (exec, get, logs), in the bound namespaces only;
/// an unlisted group, a uid, a ServiceAccount and the account's own reads are forbidden,
/// but for the ConfigMaps of its own namespace (approval requests).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_rbac_lets_the_gateway_impersonate_and_keep_approvals_only() {
    let c = deploy_cluster().await;
    let alice = "--as alice@corp.example --as-group jit:oncall:payments -n payments";
    let out = as_gateway(&c, &format!("{alice} exec payments-api-0 -- echo hi")).await;
    assert_eq!(assert_ok(&out), "hi\n");
    let out = as_gateway(&c, &format!("{alice} get pods -o name")).await;
    assert!(assert_ok(&out).contains("pod/payments-api-0"));
    let out = as_gateway(&c, &format!("{alice} logs payments-batch-0")).await;
    assert!(assert_ok(&out).starts_with("one\ntwo\n"));
    // No secrets for the debug roles either.
    let out = as_gateway(&c, &format!("{alice} get secrets")).await;
    assert_forbidden(&out, r#"cannot list resource "secrets""#);

    // Namespace scoping: the on-call group is bound in payments only.
    let out = as_gateway(
        &c,
        "--as x --as-group jit:oncall:payments -n checkout get pods",
    )
    .await;
    assert_forbidden(
        &out,
        r#"User "x" cannot list resource "pods" in API group "" in the namespace "checkout""#,
    );

    // jit:debug: bound in payments and checkout, not elsewhere.
    let sam = "--as sam@corp.example --as-group jit:debug";
    let out = as_gateway(
        &c,
        &format!("{sam} -n checkout exec checkout-web-0 -- echo dbg"),
    )
    .await;
    assert_eq!(assert_ok(&out), "dbg\n");
    let out = as_gateway(&c, &format!("{sam} -n podgate get pods")).await;
    assert_forbidden(&out, r#"in the namespace "podgate""#);

    // Groups outside the list cannot be claimed, whatever the user.
    for group in ["system:masters", "jit:oncall:checkout"] {
        let args = format!("--as alice@corp.example --as-group {group} -n payments get pods");
        let out = as_gateway(&c, &args).await;
        let wanted = format!(
            r#"groups "{group}" is forbidden: User "{GATEWAY_SA}" cannot impersonate resource "groups""#
        );
        assert_forbidden(&out, &wanted);
    }
    // No uids, and no ServiceAccounts.
    let out = as_gateway(
        &c,
        "--as alice@corp.example --as-uid 1000 -n payments get pods",
    )
    .await;
    assert_forbidden(&out, r#"cannot impersonate resource "uids""#);
    let out = as_gateway(
        &c,
        "--as system:serviceaccount:kube-system:default get pods",
    )
    .await;
    assert_forbidden(&out, r#"cannot impersonate resource "serviceaccounts""#);

    // The account itself reads and runs nothing but its approval ConfigMaps.
    let out = as_gateway(&c, "-n podgate get configmaps").await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    for (ns, resource) in [
        ("podgate", "secrets"),
        ("payments", "pods"),
        ("payments", "configmaps"),
    ] {
        let out = as_gateway(&c, &format!("-n {ns} get {resource}")).await;
        let wanted = format!(r#"User "{GATEWAY_SA}" cannot list resource "{resource}""#);
        assert_forbidden(&out, &wanted);
    }
    let out = as_gateway(&c, "get namespaces").await;
    assert_forbidden(&out, r#"cannot list resource "namespaces""#);
    let out = as_gateway(&c, "-n payments exec payments-api-0 -- echo no").await;
    assert_forbidden(&out, &format!(r#"User "{GATEWAY_SA}" cannot"#));

    // The devcluster's audit log names both identities for the allowed exec.
    let exec = c
        .audit_events()
        .into_iter()
        .find(|e| e["objectRef"]["subresource"] == "exec" && e["responseStatus"]["code"] == 101)
        .expect("an allowed exec in the audit log");
    assert_eq!(exec["user"]["username"], GATEWAY_SA);
    assert_eq!(exec["impersonatedUser"]["username"], "alice@corp.example");
}

/// The user extras: the four podgate sends may be impersonated with any value, any other
/// key is refused (kubectl has no flag for extras, so this uses kube-rs, as podgate does).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_rbac_allows_exactly_podgates_user_extras() {
    let c = deploy_cluster().await;
    let kc = kube::config::Kubeconfig::read_from(&c.kubeconfig).unwrap();
    let opts = kube::config::KubeConfigOptions {
        context: Some("gateway".into()),
        ..Default::default()
    };
    let list = |extra: Vec<(&'static str, &'static str)>| {
        let (kc, opts) = (kc.clone(), opts.clone());
        async move {
            let mut config = kube::Config::from_custom_kubeconfig(kc, &opts)
                .await
                .unwrap();
            config.auth_info.impersonate = Some("alice@corp.example".into());
            config.auth_info.impersonate_groups = Some(vec!["jit:oncall:payments".into()]);
            let extra = extra
                .into_iter()
                .map(|(k, v)| (k.to_owned(), vec![v.to_owned()]))
                .collect();
            config.auth_info.impersonate_user_extra = Some(extra);
            let client = kube::Client::try_from(config).unwrap();
            let pods: Api<Pod> = Api::namespaced(client, "payments");
            tokio::time::timeout(DEADLINE, pods.list(&Default::default()))
                .await
                .expect("timed out")
        }
    };
    let sent = vec![
        ("podgate-session", "3f0c9a"),
        ("podgate-serial", "4711"),
        ("podgate-incident", "INC-1234"),
        ("podgate-reason", "checkout-500s"),
    ];
    assert!(!list(sent).await.unwrap().items.is_empty());
    for other in ["scopes", "podgate-other"] {
        match list(vec![("podgate-session", "s"), (other, "x")]).await {
            Err(kube::Error::Api(s)) => {
                assert_eq!(s.code, 403);
                let wanted = format!(r#"cannot impersonate resource "userextras/{other}""#);
                assert!(s.message.contains(&wanted), "{}", s.message);
            }
            result => panic!("extra {other}: {result:?}"),
        }
    }
}

/// What deploy/ puts in the pod, laid out under `root`: the shipped config.yaml (its
/// paths moved under `root`, loopback addresses, the devcluster's kubeconfig in place of
/// the in-cluster account), the shipped policy and revocation list, a host key (0400) and
/// a user CA (its private half at `root/user_ca`). Returns the configuration's path.
async fn pod_filesystem(root: &Path, cluster: &TestCluster) -> PathBuf {
    let etc = root.join("etc/podgate");
    for d in ["host-key", "ca", "policy", "revocation"] {
        std::fs::create_dir_all(etc.join(d)).unwrap();
    }
    copy_tree(&deploy_dir().join("files/policy"), &etc.join("policy"));
    std::fs::copy(
        deploy_dir().join("files/revoked"),
        etc.join("revocation/revoked"),
    )
    .unwrap();
    let host_key = etc.join("host-key/ssh_host_ed25519_key");
    keygen(&["-q", "-t", "ed25519", "-N", "", "-f", s(&host_key)]).await;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&host_key, std::fs::Permissions::from_mode(0o400)).unwrap();
    }
    keygen(&[
        "-q",
        "-t",
        "ed25519",
        "-N",
        "",
        "-f",
        s(&root.join("user_ca")),
    ])
    .await;
    std::fs::copy(root.join("user_ca.pub"), etc.join("ca/user_ca.pub")).unwrap();

    let mut config = read(&deploy_dir().join("files/config.yaml"));
    let kubeconfig = format!(
        "kubeconfig: {}\nkube_context: gateway",
        cluster.kubeconfig.display()
    );
    for (from, to) in [
        ("listen: 0.0.0.0:2222", "listen: 127.0.0.1:0"),
        (
            "metrics_listen: 0.0.0.0:9090",
            "metrics_listen: 127.0.0.1:0",
        ),
        ("kubeconfig: null", &kubeconfig),
    ] {
        assert_eq!(config.matches(from).count(), 1, "{from:?} in config.yaml");
        config = config.replace(from, to);
    }
    config = config
        .replace(" /etc/podgate/", &format!(" {}/", etc.display()))
        .replace(" /var/lib/podgate/", &format!(" {}/", root.display()));
    assert!(
        !config.contains(" /etc/") && !config.contains(" /var/"),
        "{config}"
    );
    let path = etc.join("config.yaml");
    std::fs::write(&path, config).unwrap();
    path
}

/// Sign `root/user.pub` with the CA at `root/user_ca`: key id `id`, principal `login`,
/// serial, groups, for `cluster`, valid for an hour. Returns the certificate's path.
async fn sign(
    root: &Path,
    id: &str,
    login: &str,
    serial: &str,
    groups: &str,
    cluster: &str,
) -> PathBuf {
    let public = root.join(format!("{login}.pub"));
    std::fs::copy(root.join("user.pub"), &public).unwrap();
    let groups = format!("extension:groups@podgate={groups}");
    let cluster = format!("critical:cluster@podgate={cluster}");
    let ca = root.join("user_ca");
    let mut args = vec![
        "-q",
        "-s",
        s(&ca),
        "-I",
        id,
        "-n",
        login,
        "-V",
        "-1m:+1h",
        "-z",
        serial,
    ];
    args.extend(["-O", &groups, "-O", &cluster, s(&public)]);
    keygen(&args).await;
    root.join(format!("{login}-cert.pub"))
}

/// `ssh` as `login` with certificate `cert` (key `root/user`) to the gateway on `port`,
/// whose host key `root/known_hosts` holds.
fn ssh(root: &Path, port: u16, cert: &Path, login: &str, args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new("ssh");
    cmd.args([
        "-F",
        "/dev/null",
        "-p",
        &port.to_string(),
        "-i",
        s(&root.join("user")),
    ])
    .arg("-o")
    .arg(format!("CertificateFile={}", cert.display()))
    .args([
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "IdentityAgent=none",
        "-o",
        "BatchMode=yes",
    ])
    .args(["-o", "LogLevel=ERROR", "-o", "StrictHostKeyChecking=yes"])
    .arg("-o")
    .arg(format!(
        "UserKnownHostsFile={}",
        root.join("known_hosts").display()
    ))
    .arg(format!("{login}@127.0.0.1"))
    .args(args)
    .env("HOME", root)
    .kill_on_drop(true);
    cmd
}

/// The real `podgate serve` with the shipped configuration, policy and revocation list,
/// against a devcluster with only deploy/'s RBAC: the probe paths of deployment.yaml
/// answer 200 (so the shipped revocation list is usable), an on-call engineer's exec and
/// an SRE's exec in another namespace go through as those engineers with podgate's
/// extras, and a namespace the roles do not bind is refused by Kubernetes (exit 69), not
/// by the policy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_serves_through_deploy_rbac_with_the_shipped_config() {
    let cluster = deploy_cluster().await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let config = pod_filesystem(root, &cluster).await;
    let gw = ServeProcess::start(&config, true).await;

    let d = deployment();
    let container = &d["spec"]["template"]["spec"]["containers"][0];
    for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
        let path = container[probe]["httpGet"]["path"].as_str().unwrap();
        assert_eq!(container[probe]["httpGet"]["port"], "metrics");
        let (code, body) = get(gw.metrics.unwrap(), path).await;
        assert_eq!(code, 200, "{probe} {path}: {body}");
    }

    keygen(&["-q", "-t", "ed25519", "-N", "", "-f", s(&root.join("user"))]).await;
    let name = podgate::config::Config::parse(&config, &read(&config))
        .unwrap()
        .cluster;
    let alice = sign(
        root,
        "alice@corp.example",
        "alice",
        "21",
        "oncall-payments",
        &name,
    )
    .await;
    let sam = sign(root, "sam@corp.example", "sam", "22", "sre", &name).await;
    let host_pub = read(&root.join("etc/podgate/host-key/ssh_host_ed25519_key.pub"));
    let known = format!("[127.0.0.1]:{} {host_pub}", gw.ssh_port);
    std::fs::write(root.join("known_hosts"), known).unwrap();
    let ssh = |cert: &Path, login: &str, args: &[&str]| ssh(root, gw.ssh_port, cert, login, args);

    // policy/oncall.yaml allows `id` in payments; jit:oncall:payments is bound there.
    let out = run(
        ssh(
            &alice,
            "alice",
            &["exec", "payments/payments-api-0", "--", "id"],
        ),
        None,
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("uid="),
        "{}",
        text(&out.stdout)
    );
    // policy/sre-shell.yaml allows any namespace; jit:debug is bound in checkout...
    let args = ["exec", "checkout/checkout-web-0", "--", "echo", "debug"];
    let out = run(ssh(&sam, "sam", &args), None).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "debug\n");
    // ... but not in podgate: Kubernetes refuses, podgate reports the API error.
    let out = run(ssh(&sam, "sam", &["pods", "podgate"]), None).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(69), "{stderr}");
    assert!(
        stderr.contains("podgate: error: ") && stderr.contains("forbidden"),
        "{stderr}"
    );

    // Kubernetes saw the engineers, with podgate's extras, through the ServiceAccount.
    let execs: Vec<Value> = cluster
        .audit_events()
        .into_iter()
        .filter(|e| e["objectRef"]["subresource"] == "exec" && e["responseStatus"]["code"] == 101)
        .collect();
    assert_eq!(execs.len(), 2, "{execs:?}");
    let expected = [
        ("alice@corp.example", "jit:oncall:payments", "payments"),
        ("sam@corp.example", "jit:debug", "checkout"),
    ];
    for (e, (who, group, ns)) in execs.iter().zip(expected) {
        assert_eq!(e["user"]["username"], GATEWAY_SA);
        assert_eq!(e["objectRef"]["namespace"], ns);
        let imp = &e["impersonatedUser"];
        assert_eq!(imp["username"], who);
        let groups = imp["groups"].as_array().unwrap();
        assert!(groups.iter().any(|g| g == group), "{e}");
        for key in ["podgate-session", "podgate-serial"] {
            assert!(imp["extra"][key].is_array(), "{key}: {e}");
        }
    }
}
