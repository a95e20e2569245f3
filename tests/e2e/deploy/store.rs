//! deploy/'s recordings store, switched on the way docs/RECORDINGS-STORE.md says: the commented
//! `recordings_store` block of config.yaml parses once uncommented, states the parser's
//! own defaults and keeps the spool within the claim; the Deployment takes the optional
//! Secret as its environment; and with the commented Secret generator enabled, kustomize
//! wires the generated Secret into the Deployment and the output passes strict validation.

use super::*;

/// `text` with one commented block enabled: the line `start` and the lines right after it
/// that begin with `cont`, each with its first `from` replaced by `to`.
fn uncomment(text: &str, start: &str, cont: &str, (from, to): (&str, &str)) -> String {
    let mut out = String::new();
    let mut inside = false;
    let mut found = false;
    for line in text.lines() {
        inside = line == start || (inside && line.starts_with(cont));
        found |= inside;
        out.push_str(&if inside {
            line.replacen(from, to, 1)
        } else {
            line.to_owned()
        });
        out.push('\n');
    }
    assert!(found, "no block {start:?}");
    out
}

/// The object kustomize generated from generator `name` (its name with the hash).
fn generated<'a>(objs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    let hashed = format!("{name}-");
    objs.iter()
        .find(|o| {
            o["kind"] == kind
                && o["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with(&hashed))
        })
        .unwrap_or_else(|| panic!("no generated {kind} {name}"))
}

fn config_with_store(text: &str) -> String {
    uncomment(text, "#recordings_store:", "#  ", ("#", ""))
}

fn kustomization_with_store_secret(text: &str) -> String {
    uncomment(
        text,
        "  # - name: podgate-recordings-store",
        "  #   ",
        ("  # ", "  "),
    )
}

#[test]
fn the_commented_store_is_ready_to_use() {
    let path = Path::new("/etc/podgate/config.yaml");
    let shipped = read(&deploy_dir().join("files/config.yaml"));
    let off = podgate::config::Config::parse(path, &shipped).unwrap();
    assert!(
        off.recordings_store.is_none(),
        "deploy/ must work without a bucket"
    );

    let on = podgate::config::Config::parse(path, &config_with_store(&shipped))
        .unwrap_or_else(|e| panic!("config.yaml with recordings_store: {e}"));
    let store = on.recordings_store.unwrap();
    assert_eq!(store.bucket, "podgate-recordings");
    assert_eq!(
        store.prefix, on.cluster,
        "one prefix per gateway: its cluster"
    );
    assert_eq!(store.region.as_deref(), Some("eu-west-1"));
    // Every other value shown is the parser's default, so the comments do not lie.
    let short = format!("{shipped}recordings_store: {}\n", store.url);
    let defaults = podgate::config::Config::parse(path, &short)
        .unwrap()
        .recordings_store
        .unwrap();
    assert_eq!(
        podgate::config::StoreConfig {
            region: None,
            ..store.clone()
        },
        defaults
    );
    // The spool must refuse new sessions before the claim is full.
    let pvc = objects(&read(&deploy_dir().join("pvc.yaml"))).remove(0);
    let size = pvc["spec"]["resources"]["requests"]["storage"]
        .as_str()
        .unwrap();
    let gib: u64 = size.strip_suffix("Gi").unwrap().parse().unwrap();
    assert!(
        store.spool_max_size + on.recordings_min_free < gib << 30,
        "spool_max_size {} does not fit the claim ({size})",
        store.spool_max_size
    );

    // The credentials: an optional Secret as environment, and nothing else of AWS.
    let d = deployment();
    let container = &d["spec"]["template"]["spec"]["containers"][0];
    let env_from: Value =
        serde_yaml::from_str("[{secretRef: {name: podgate-recordings-store, optional: true}}]")
            .unwrap();
    assert_eq!(container["envFrom"], env_from);
    let env = container["env"].as_sequence().unwrap();
    assert!(
        env.iter()
            .all(|e| !e["name"].as_str().unwrap().starts_with("AWS_")),
        "{env:?}"
    );
}

/// With the store switched on and its Secret generated, as an operator would do it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kustomize_wires_the_store_secret_into_the_deployment() {
    let dir = operator_copy().await;
    let at = |n: &str| dir.path().join(n);
    let config = config_with_store(&read(&at("files/config.yaml")));
    std::fs::write(at("files/config.yaml"), config).unwrap();
    let k = kustomization_with_store_secret(&read(&at("kustomization.yaml")));
    std::fs::write(at("kustomization.yaml"), k).unwrap();
    std::fs::write(
        at("recordings-store.env"),
        "AWS_ACCESS_KEY_ID=AKIAEXAMPLE\nAWS_SECRET_ACCESS_KEY=example\nAWS_REGION=eu-west-1\n",
    )
    .unwrap();

    let mut cmd = tokio::process::Command::new("kubectl");
    cmd.arg("kustomize").arg(dir.path()).env("HOME", dir.path());
    let out = run(cmd, None).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let built = text(&out.stdout);
    let rendered = at("rendered.yaml");
    std::fs::write(&rendered, &built).unwrap();
    if let Err(why) = kubernetes_validate(std::slice::from_ref(&rendered)).await {
        panic!("{why}");
    }
    let objs = objects(&built);
    let secret = generated(&objs, "Secret", "podgate-recordings-store");
    assert_eq!(secret["metadata"]["namespace"], "podgate");
    for key in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"] {
        assert!(secret["data"][key].is_string(), "{key}: {secret:?}");
    }
    let deployment = objs
        .iter()
        .find(|o| o["kind"] == "Deployment")
        .expect("the Deployment");
    let secret_ref =
        &deployment["spec"]["template"]["spec"]["containers"][0]["envFrom"][0]["secretRef"];
    assert_eq!(secret_ref["name"], secret["metadata"]["name"]);
    let config_map = generated(&objs, "ConfigMap", "podgate-config");
    let text = config_map["data"]["config.yaml"].as_str().unwrap();
    let config = podgate::config::Config::parse(Path::new("/etc/podgate/config.yaml"), text)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(config.recordings_store.is_some());
}
