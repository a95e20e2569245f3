//! deploy/ and the Dockerfile as a cluster, a linter and an operator see them: every
//! manifest and the kustomize output pass `kubernetes-validate --strict`, the Dockerfile
//! passes `hadolint` (and both tools are shown to reject a broken input), the shipped
//! configuration parses and matches the Deployment's mounts, ports and grace period, and
//! the image's build context holds what the build reads. The cluster side (RBAC in the
//! devcluster, the real gateway through it) is in `deploy/cluster.rs`; the recordings
//! store, switched on as the docs say, in `deploy/store.rs`.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use serde_yaml::Value;

use super::gateway_support::keygen;
use super::support::{run, text};

mod cluster;
mod store;

/// The Kubernetes version the manifests are validated against (the devcluster's too).
const KUBERNETES_VERSION: &str = "1.33.0";

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The Kubernetes manifests of deploy/: every `*.yaml` at its top level except
/// `kustomization.yaml` (kustomize's own file, not an object the API server knows).
fn manifests() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(deploy_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .filter(|p| p.file_name().unwrap() != "kustomization.yaml")
        .collect();
    v.sort();
    v
}

/// The objects (YAML documents that are not empty) of a manifest text.
fn objects(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| <Value as serde::Deserialize>::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// `kubernetes-validate --strict` on `files`: Ok when it exits 0 and reports every object
/// of the files as passed, with no warning. A warning counts as a failure because the tool
/// exits 0 on an object it has no schema for (a mistyped apiVersion or kind), which would
/// otherwise pass unvalidated.
async fn kubernetes_validate(files: &[PathBuf]) -> Result<(), String> {
    let mut cmd = tokio::process::Command::new("kubernetes-validate");
    cmd.args(["--strict", "--kubernetes-version", KUBERNETES_VERSION])
        .args(files);
    let out = run(cmd, None).await;
    let report = format!("{}{}", text(&out.stdout), text(&out.stderr));
    let expected: usize = files.iter().map(|f| objects(&read(f)).len()).sum();
    let passed = report.matches(" passed for resource ").count();
    if !out.status.success() {
        return Err(format!("exit {:?}: {report}", out.status.code()));
    }
    if report.contains("WARN") || report.contains("ERROR") || passed != expected {
        return Err(format!(
            "{passed} of {expected} objects passed, or a warning: {report}"
        ));
    }
    Ok(())
}

/// Each top-level manifest in deploy/ passes strict schema validation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_manifest_passes_kubernetes_validate_strict() {
    let mut files = manifests();
    assert!(files.len() >= 8, "deploy/ manifests: {files:?}");
    files.push(deploy_dir().join("tools/recordings-reader.yaml"));
    if let Err(why) = kubernetes_validate(&files).await {
        panic!("{why}");
    }
}

/// The validator rejects what it should (so a validator that passes everything is
/// caught): an unknown field under --strict, and an apiVersion it has no schema for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_validate_rejects_broken_manifests() {
    let dir = tempfile::tempdir().unwrap();
    let deployment = read(&deploy_dir().join("deployment.yaml"));
    let cases = [
        (
            "unknown field",
            deployment.replacen("  replicas: 1\n", "  replicas: 1\n  replica: 1\n", 1),
        ),
        (
            "misspelt apiVersion",
            deployment.replacen("apiVersion: apps/v1\n", "apiVersion: apps/v2\n", 1),
        ),
        (
            "wrong type",
            deployment.replacen("  replicas: 1\n", "  replicas: one\n", 1),
        ),
    ];
    for (name, broken) in cases {
        assert_ne!(broken, deployment, "{name}: the edit did not apply");
        let path = dir.path().join("broken.yaml");
        std::fs::write(&path, broken).unwrap();
        let verdict = kubernetes_validate(std::slice::from_ref(&path)).await;
        assert!(verdict.is_err(), "{name}: accepted");
    }
}

/// A copy of deploy/ with the two files an operator provides, made as the docs say.
async fn operator_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&deploy_dir(), dir.path());
    let at = |n: &str| dir.path().join(n);
    for leftover in [
        "ssh_host_ed25519_key",
        "ssh_host_ed25519_key.pub",
        "user_ca.pub",
    ] {
        let _ = std::fs::remove_file(at(leftover));
    }
    keygen(&[
        "-q",
        "-t",
        "ed25519",
        "-N",
        "",
        "-f",
        s(&at("ssh_host_ed25519_key")),
    ])
    .await;
    let ca = dir.path().join("ca");
    std::fs::create_dir(&ca).unwrap();
    keygen(&[
        "-q",
        "-t",
        "ed25519",
        "-N",
        "",
        "-f",
        s(&ca.join("user_ca")),
    ])
    .await;
    std::fs::copy(ca.join("user_ca.pub"), at("user_ca.pub")).unwrap();
    dir
}

fn copy_tree(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// `kubectl kustomize` builds deploy/ (with the operator's files) into objects that pass
/// strict validation, with the generated ConfigMaps and Secret wired into the Deployment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kustomize_output_passes_kubernetes_validate_strict() {
    // Every manifest is deployed: kustomization.yaml lists exactly the top-level files.
    let k: Value = serde_yaml::from_str(&read(&deploy_dir().join("kustomization.yaml"))).unwrap();
    let mut listed: Vec<&str> = k["resources"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    listed.sort();
    let files = manifests();
    let present: Vec<&str> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_str().unwrap())
        .collect();
    assert_eq!(listed, present, "kustomization.yaml resources");

    let dir = operator_copy().await;
    let mut cmd = tokio::process::Command::new("kubectl");
    cmd.arg("kustomize").arg(dir.path()).env("HOME", dir.path());
    let out = run(cmd, None).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let built = text(&out.stdout);
    let rendered = dir.path().join("rendered.yaml");
    std::fs::write(&rendered, &built).unwrap();
    if let Err(why) = kubernetes_validate(std::slice::from_ref(&rendered)).await {
        panic!("{why}");
    }

    let objs = objects(&built);
    let find = |kind: &str, name: &str| {
        objs.iter()
            .find(|o| {
                o["kind"] == kind
                    && o["metadata"]["name"]
                        .as_str()
                        .is_some_and(|n| n == name || n.starts_with(&format!("{name}-")))
            })
            .unwrap_or_else(|| panic!("no {kind} {name} in the output"))
    };
    let secret = find("Secret", "podgate-host-key");
    assert_eq!(secret["metadata"]["namespace"], "podgate");
    assert!(secret["data"]["ssh_host_ed25519_key"].is_string());
    let ca = find("ConfigMap", "podgate-user-ca");
    assert!(
        ca["data"]["user_ca.pub"]
            .as_str()
            .unwrap()
            .starts_with("ssh-ed25519 ")
    );
    // The revocation list keeps its name so that it can be updated in place.
    assert_eq!(
        find("ConfigMap", "podgate-revoked")["metadata"]["name"],
        "podgate-revoked"
    );
    // Every volume of the Deployment names an object of the output (the hashed names).
    let deployment = find("Deployment", "podgate");
    for volume in deployment["spec"]["template"]["spec"]["volumes"]
        .as_sequence()
        .unwrap()
    {
        let (kind, name) = if let Some(n) = volume["configMap"]["name"].as_str() {
            ("ConfigMap", n)
        } else if let Some(n) = volume["secret"]["secretName"].as_str() {
            ("Secret", n)
        } else {
            let n = volume["persistentVolumeClaim"]["claimName"]
                .as_str()
                .unwrap();
            ("PersistentVolumeClaim", n)
        };
        assert!(
            objs.iter()
                .any(|o| o["kind"] == kind && o["metadata"]["name"] == name),
            "volume {volume:?} names no object of the output"
        );
    }
    // The example RoleBindings stay in the namespaces they grant access to.
    let bindings: Vec<(&str, &str)> = objs
        .iter()
        .filter(|o| o["kind"] == "RoleBinding")
        .map(|o| {
            (
                o["metadata"]["namespace"].as_str().unwrap(),
                o["metadata"]["name"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(
        bindings.contains(&("payments", "podgate-oncall")),
        "{bindings:?}"
    );
    assert!(
        bindings.contains(&("checkout", "podgate-debug")),
        "{bindings:?}"
    );
}

/// `hadolint` on a Dockerfile: its exit status and report.
async fn hadolint(dockerfile: &Path) -> Output {
    let mut cmd = tokio::process::Command::new("hadolint");
    cmd.arg(dockerfile);
    run(cmd, None).await
}

/// The Dockerfile passes hadolint with no warning; a bad one is rejected by the same run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dockerfile_passes_hadolint() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = hadolint(&root.join("Dockerfile")).await;
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("Dockerfile");
    std::fs::write(
        &bad,
        "FROM debian\nRUN apt-get update && apt-get install -y curl\nENTRYPOINT podgate\n",
    )
    .unwrap();
    let out = hadolint(&bad).await;
    let report = text(&out.stdout);
    assert!(!out.status.success(), "hadolint accepted: {report}");
    for rule in ["DL3006", "DL3008", "DL3025"] {
        assert!(report.contains(rule), "{rule} not reported: {report}");
    }
}

/// The mount of the container that holds `path`: (volume name, path inside the volume).
fn mount_of<'a>(container: &'a Value, path: &'a str) -> (&'a str, &'a str) {
    container["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|m| {
            let at = m["mountPath"].as_str().unwrap();
            let rest = if path == at {
                m["subPath"].as_str().unwrap_or("")
            } else {
                path.strip_prefix(at)?.strip_prefix('/')?
            };
            Some((m["name"].as_str().unwrap(), rest))
        })
        .next()
        .unwrap_or_else(|| panic!("{path} is on no volume of the container"))
}

/// The keys a kustomize generator (`configMapGenerator` or `secretGenerator`) of
/// deploy/kustomization.yaml makes, by the generator's name.
fn generated_keys(name: &str) -> Vec<String> {
    let k: Value = serde_yaml::from_str(&read(&deploy_dir().join("kustomization.yaml"))).unwrap();
    let generators = ["configMapGenerator", "secretGenerator"];
    let generator = generators
        .iter()
        .flat_map(|g| k[g].as_sequence().cloned().unwrap_or_default())
        .find(|g| g["name"] == name)
        .unwrap_or_else(|| panic!("no generator {name}"));
    generator["files"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|f| {
            let f = f.as_str().unwrap();
            match f.split_once('=') {
                Some((key, _)) => key.to_owned(),
                None => f.rsplit('/').next().unwrap().to_owned(),
            }
        })
        .collect()
}

/// The generator a Deployment volume is made from (ConfigMap and Secret names are the
/// generators' names before kustomize adds the hash).
fn volume_source(pod: &Value, volume: &str) -> String {
    let v = pod["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| v["name"] == volume)
        .unwrap_or_else(|| panic!("no volume {volume}"));
    let name = v["configMap"]["name"]
        .as_str()
        .or(v["secret"]["secretName"].as_str())
        .unwrap_or_else(|| panic!("volume {volume} is not a ConfigMap or Secret"));
    name.to_owned()
}

fn deployment() -> Value {
    objects(&read(&deploy_dir().join("deployment.yaml"))).remove(0)
}

/// The shipped config.yaml parses with the gateway's own parser, and every file it names
/// is where the Deployment mounts a generated ConfigMap or Secret key of that name; the
/// ports match the container's, and the drain fits in the termination grace period.
#[test]
fn shipped_config_parses_and_matches_the_deployment() {
    let d = deployment();
    let pod = &d["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let args: Vec<&str> = container["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(args, ["serve", "--config", "/etc/podgate/config.yaml"]);
    let config_path = Path::new(args[2]);

    let text = read(&deploy_dir().join("files/config.yaml"));
    let config = podgate::config::Config::parse(config_path, &text)
        .unwrap_or_else(|e| panic!("deploy/files/config.yaml: {e}"));

    // File -> (volume, key) -> generator that makes that key.
    let mut files = vec![(config_path.to_path_buf(), "config")];
    files.push((config.host_key.clone(), "host key"));
    files.extend(
        config
            .trusted_user_ca_keys
            .iter()
            .map(|p| (p.clone(), "CA")),
    );
    files.push((config.revoked_keys.clone().unwrap(), "revocation list"));
    for (file, what) in &files {
        let (volume, key) = mount_of(container, s(file));
        let generator = volume_source(pod, volume);
        assert!(
            generated_keys(&generator).iter().any(|k| k == key),
            "{what} {} is key {key:?} of {generator}, which kustomization.yaml does not make",
            file.display()
        );
    }
    // The policy directory is the whole policy ConfigMap.
    let (volume, rest) = mount_of(container, s(&config.policy));
    assert_eq!(
        (volume_source(pod, volume).as_str(), rest),
        ("podgate-policy", "")
    );
    // Recordings live in a directory podgate creates on the persistent volume.
    let (volume, rest) = mount_of(container, s(&config.recordings));
    assert_eq!(rest, "recordings");
    let data = pod["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| v["name"] == volume)
        .unwrap();
    assert_eq!(
        data["persistentVolumeClaim"]["claimName"], "podgate-recordings",
        "recordings must outlive the pod"
    );

    let port = |name: &str| {
        container["ports"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .and_then(|p| p["containerPort"].as_u64())
            .unwrap_or_else(|| panic!("no container port {name}"))
    };
    assert_eq!(u64::from(config.listen.port()), port("ssh"));
    assert_eq!(
        config.metrics_listen.map(|a| u64::from(a.port())),
        Some(port("metrics"))
    );
    assert!(config.kubeconfig.is_none(), "in-cluster configuration");
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    assert_eq!(config.limits.drain, Duration::from_secs(25));
    assert!(
        config.limits.drain + Duration::from_secs(5) <= Duration::from_secs(grace),
        "drain {:?} must end 5 s before the grace period ({grace}s)",
        config.limits.drain
    );
}

/// deploy/files/policy/ is the repository's policy/, file for file, every file is in the
/// policy ConfigMap, and every `impersonate_groups` entry of it may be impersonated.
#[test]
fn deployed_policy_is_the_repository_policy_and_its_groups_are_impersonable() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let names = |dir: &Path| {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    };
    let shipped = names(&deploy_dir().join("files/policy"));
    assert_eq!(shipped, names(&root.join("policy")));
    let mut generated = generated_keys("podgate-policy");
    generated.sort();
    assert_eq!(
        generated, shipped,
        "kustomization.yaml's podgate-policy files"
    );

    let rbac = objects(&read(&deploy_dir().join("rbac-impersonator.yaml")));
    let role = rbac.iter().find(|o| o["kind"] == "ClusterRole").unwrap();
    let group_rule = role["rules"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|r| r["resources"][0] == "groups")
        .unwrap();
    let allowed: Vec<&str> = group_rule["resourceNames"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|g| g.as_str().unwrap())
        .collect();
    for name in &shipped {
        let text = read(&deploy_dir().join("files/policy").join(name));
        assert_eq!(
            text,
            read(&root.join("policy").join(name)),
            "{name} differs"
        );
        let policy: Value = serde_yaml::from_str(&text).unwrap();
        for rule in policy["rules"].as_sequence().unwrap() {
            for group in rule["impersonate_groups"].as_sequence().unwrap() {
                let group = group.as_str().unwrap();
                assert!(
                    allowed.contains(&group),
                    "{name}: rule {:?} impersonates {group}, which podgate-impersonator does not allow",
                    rule["name"]
                );
            }
        }
    }
}

/// Every file `cargo build` reads is in the image's build context: Cargo.toml, Cargo.lock,
/// src/, whatever src/ embeds with include_str!/include_bytes! (the example policies),
/// build.rs and the files it reads (its `rerun-if-changed` lines) is both copied by the
/// Dockerfile and let through by .dockerignore.
#[test]
fn docker_build_context_has_everything_the_build_reads() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dockerfile = read(&root.join("Dockerfile"));
    let copied: Vec<&str> = dockerfile
        .lines()
        .filter_map(|l| l.strip_prefix("COPY "))
        .filter(|l| !l.starts_with("--from"))
        .flat_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            words[..words.len() - 1].to_vec()
        })
        .map(|p| p.trim_end_matches('/'))
        .collect();
    let ignore = read(&root.join(".dockerignore"));
    assert!(
        ignore.lines().any(|l| l == "*"),
        ".dockerignore is an allowlist"
    );
    let let_through: Vec<&str> = ignore
        .lines()
        .filter_map(|l| l.strip_prefix('!'))
        .map(|p| p.trim_end_matches('/'))
        .collect();

    let mut needed = vec![
        "Cargo.toml".to_owned(),
        "Cargo.lock".to_owned(),
        "src".to_owned(),
        "build.rs".to_owned(),
    ];
    needed.extend(
        read(&root.join("build.rs"))
            .lines()
            .filter_map(|l| l.split("cargo:rerun-if-changed=").nth(1))
            .map(|rest| rest.trim_end_matches("\");").to_owned())
            // Formatted ones name files the build made itself (the installed player).
            .filter(|path| !path.contains('{')),
    );
    let mut stack = vec![root.join("src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let source = read(&path);
            for macro_name in ["include_str!(\"", "include_bytes!(\""] {
                for (at, _) in source.match_indices(macro_name) {
                    let rest = &source[at + macro_name.len()..];
                    let included = dir.join(&rest[..rest.find('"').unwrap()]);
                    let included = included.canonicalize().unwrap_or_else(|e| {
                        panic!("{}: {}: {e}", path.display(), included.display())
                    });
                    let relative = included.strip_prefix(root.canonicalize().unwrap()).unwrap();
                    let top = relative.components().next().unwrap();
                    needed.push(top.as_os_str().to_str().unwrap().to_owned());
                }
            }
        }
    }
    needed.sort();
    needed.dedup();
    for top in &needed {
        assert!(
            copied.contains(&top.as_str()),
            "the Dockerfile does not COPY {top}"
        );
        assert!(
            let_through.contains(&top.as_str()),
            ".dockerignore leaves out {top}"
        );
    }
}
