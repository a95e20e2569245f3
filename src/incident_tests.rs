use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;

const CA: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl ca\n";

fn spec() -> Spec {
    Spec {
        id: "INC-1234".into(),
        namespaces: vec!["payments".into(), "checkout".into()],
        ttl: Duration::from_secs(7200),
        ca_keys: CA.into(),
        policy: None,
        group: "incident-responders".into(),
        role: "podgate-debug".into(),
        service_type: ServiceType::ClusterIp,
        cluster: "prod-eu-1".into(),
        image: "ghcr.io/podgate/podgate:0.1.0".into(),
        gateway_namespace: "podgate".into(),
        host_key: "unused".into(),
        store: None,
        service_account_annotations: BTreeMap::new(),
        now: UNIX_EPOCH + Duration::from_secs(1_800_000_000),
    }
}

#[test]
fn incident_ids() {
    let cases = [
        ("INC-1234", true),
        ("inc_1.a", true),
        ("1", true),
        (&"a".repeat(40), true),
        (&"a".repeat(41), false),
        ("", false),
        ("-INC", false),
        ("INC-", false),
        ("INC 1", false),
        ("INC,1", false),
        ("INC/1", false),
        ("INÇ", false),
        ("INC\n1", false),
    ];
    for (id, ok) in cases {
        assert_eq!(check_id(id).is_ok(), ok, "{id:?}");
    }
    assert_eq!(base_name("INC_1.A"), "podgate-inc-inc-1-a");
    // The longest name stays a DNS label.
    let long = format!("{}-host-key", base_name(&"A".repeat(40)));
    assert!(long.len() <= 63, "{long}");
}

#[test]
fn objects_are_labelled_scoped_and_hardened() {
    let o = build(&spec()).unwrap();
    let name = "podgate-inc-inc-1234";
    let metas = [
        &o.service_account.metadata,
        &o.cluster_role.metadata,
        &o.cluster_role_binding.metadata,
        &o.role_bindings[0].metadata,
        &o.role_bindings[1].metadata,
        &o.secret.metadata,
        &o.config_map.metadata,
        &o.service.metadata,
        &o.pod.metadata,
    ];
    for m in metas {
        let labels = m.labels.as_ref().unwrap();
        assert_eq!(labels[INCIDENT_LABEL], "INC-1234", "{m:?}");
        assert_eq!(labels[COMPONENT_LABEL], COMPONENT, "{m:?}");
        let annotations = m.annotations.as_ref().unwrap();
        assert_eq!(annotations[EXPIRES_ANNOTATION], "2027-01-15T10:00:00Z");
        assert_eq!(annotations[NAMESPACES_ANNOTATION], "payments,checkout");
    }
    assert_eq!(o.pod.metadata.name.as_deref(), Some(name));
    assert_eq!(o.pod.metadata.namespace.as_deref(), Some("podgate"));

    // RBAC: the incident group gets the debug role in each namespace, and the gateway
    // may impersonate users, that group only, and podgate's extras only.
    let namespaces: Vec<_> = o
        .role_bindings
        .iter()
        .map(|rb| rb.metadata.namespace.clone().unwrap())
        .collect();
    assert_eq!(namespaces, ["payments", "checkout"]);
    for rb in &o.role_bindings {
        assert_eq!(rb.role_ref.name, "podgate-debug");
        let subject = &rb.subjects.as_ref().unwrap()[0];
        assert_eq!(
            (subject.kind.as_str(), subject.name.as_str()),
            ("Group", "jit:incident:INC-1234")
        );
    }
    let rules = o.cluster_role.rules.as_ref().unwrap();
    assert!(
        rules.iter().all(|r| r.verbs == ["impersonate"]),
        "{rules:?}"
    );
    assert_eq!(
        rules[1].resource_names.as_deref(),
        Some(&["jit:incident:INC-1234".to_owned()][..])
    );
    assert!(
        rules[2]
            .resources
            .as_ref()
            .unwrap()
            .iter()
            .all(|r| r.starts_with("userextras/podgate-"))
    );
    let subject = &o.cluster_role_binding.subjects.as_ref().unwrap()[0];
    assert_eq!(
        (subject.kind.as_str(), subject.name.as_str()),
        ("ServiceAccount", name)
    );

    // The pod: the TTL as its deadline, its own service account, hardened.
    let pod = o.pod.spec.as_ref().unwrap();
    assert_eq!(pod.active_deadline_seconds, Some(7200));
    assert_eq!(pod.service_account_name.as_deref(), Some(name));
    assert_eq!(pod.termination_grace_period_seconds, Some(30));
    let psc = pod.security_context.as_ref().unwrap();
    assert_eq!(
        (psc.run_as_non_root, psc.run_as_user),
        (Some(true), Some(65532))
    );
    assert_eq!(
        psc.seccomp_profile.as_ref().unwrap().type_,
        "RuntimeDefault"
    );
    let c = &pod.containers[0];
    let csc = c.security_context.as_ref().unwrap();
    assert_eq!(csc.read_only_root_filesystem, Some(true));
    assert_eq!(csc.allow_privilege_escalation, Some(false));
    assert_eq!(
        csc.capabilities.as_ref().unwrap().drop.as_deref(),
        Some(&["ALL".to_owned()][..])
    );
    assert!(c.liveness_probe.is_some() && c.readiness_probe.is_some());
    assert!(c.resources.as_ref().unwrap().limits.is_some());
    assert_eq!(
        o.service.spec.as_ref().unwrap().type_.as_deref(),
        Some("ClusterIP")
    );
}

#[test]
fn configuration_and_default_policy_are_what_the_gateway_accepts() {
    let s = spec();
    let o = build(&s).unwrap();
    let data = o.config_map.data.as_ref().unwrap();
    let config =
        crate::config::Config::parse(std::path::Path::new("/c/config.yaml"), &data[CONFIG_FILE])
            .unwrap();
    assert_eq!(config.incident.as_deref(), Some("INC-1234"));
    assert_eq!(config.cluster, "prod-eu-1");
    assert_eq!(config.recordings_store, None);
    assert_eq!(data[CA_FILE], CA);
    let policy =
        crate::policy::Policy::parse(&[("p".to_owned(), data[POLICY_FILE].clone())]).unwrap();
    let rule = &policy.rules()[0];
    assert_eq!(rule.groups, ["incident-responders"]);
    assert_eq!(rule.namespaces, ["payments", "checkout"]);
    assert_eq!(rule.impersonate_groups, ["jit:incident:INC-1234"]);
    assert_eq!(rule.max_session, Some(Duration::from_secs(7200)));
    let secret = o.secret.string_data.as_ref().unwrap();
    assert_eq!(secret[HOST_KEY_FILE], "unused");
}

#[test]
fn a_given_policy_sets_the_groups_that_may_be_impersonated() {
    let mut s = spec();
    s.policy = Some(
        "rules:\n  - name: r\n    groups: [g]\n    namespaces: [payments]\n    actions: [list]\n    impersonate_groups: [\"jit:b\", \"jit:a\", \"jit:b\"]\n"
            .into(),
    );
    let o = build(&s).unwrap();
    let rules = o.cluster_role.rules.unwrap();
    assert_eq!(
        rules[1].resource_names.as_deref(),
        Some(&["jit:a".to_owned(), "jit:b".to_owned()][..])
    );
}

#[test]
fn refusals() {
    type Change = fn(&mut Spec);
    let cases: Vec<(Change, &str)> = vec![
        (|s| s.id = "bad id".into(), "incident ID"),
        (|s| s.namespaces.clear(), "at least one --namespace"),
        (
            |s| s.namespaces = vec!["Payments".into()],
            "not a valid Kubernetes namespace",
        ),
        (
            |s| s.gateway_namespace = "-x".into(),
            "not a valid Kubernetes namespace",
        ),
        (|s| s.ttl = Duration::from_secs(30), "--ttl"),
        (|s| s.ttl = Duration::from_secs(8 * 86_400), "--ttl"),
        (
            |s| s.ca_keys = "# nothing\n".into(),
            "no OpenSSH public key",
        ),
        (
            |s| s.ca_keys = format!("{CA}not a key\n"),
            "not an OpenSSH public key",
        ),
        (
            |s| s.policy = Some("rules: [".into()),
            "the policy is not valid",
        ),
        (|s| s.cluster = "a b".into(), "cluster"),
    ];
    for (i, (change, want)) in cases.into_iter().enumerate() {
        let mut s = spec();
        change(&mut s);
        let err = build(&s).unwrap_err().to_string();
        assert!(err.contains(want), "case {i}: {err}");
    }
}

fn store(url: &str) -> StoreSpec {
    StoreSpec {
        url: url.into(),
        endpoint: None,
        region: None,
        path_style: false,
        allow_http: false,
        secret: None,
    }
}

/// What `--store` makes: the configuration (parsed as the gateway parses it) ships to the
/// incident's own prefix, and the pod takes its environment from `--store-secret` only.
#[test]
fn a_store_is_configured_per_incident() {
    struct Case {
        store: StoreSpec,
        url: &'static str,
        endpoint: Option<&'static str>,
        region: Option<&'static str>,
        path_style: bool,
        secret: Option<&'static str>,
    }
    let cases = [
        Case {
            store: store("s3://rec/podgate/prod"),
            url: "s3://rec/podgate/prod/INC-1234",
            endpoint: None,
            region: None,
            path_style: false,
            secret: None,
        },
        Case {
            store: store("s3://rec/"),
            url: "s3://rec/INC-1234",
            endpoint: None,
            region: None,
            path_style: false,
            secret: None,
        },
        Case {
            store: StoreSpec {
                endpoint: Some("http://minio.minio.svc:9000".into()),
                region: Some("eu-west-1".into()),
                path_style: true,
                allow_http: true,
                secret: Some("podgate-recordings-store".into()),
                ..store("s3://rec/incidents")
            },
            url: "s3://rec/incidents/INC-1234",
            endpoint: Some("http://minio.minio.svc:9000"),
            region: Some("eu-west-1"),
            path_style: true,
            secret: Some("podgate-recordings-store"),
        },
    ];
    for (i, case) in cases.into_iter().enumerate() {
        let mut s = spec();
        s.store = Some(case.store);
        let o = build(&s).unwrap();
        let text = &o.config_map.data.as_ref().unwrap()[CONFIG_FILE];
        let config = crate::config::Config::parse(std::path::Path::new("/c/config.yaml"), text)
            .unwrap_or_else(|e| panic!("case {i}: {e}\n{text}"));
        let store = config.recordings_store.unwrap();
        assert_eq!(store.url, case.url, "case {i}");
        assert_eq!(store.endpoint.as_deref(), case.endpoint, "case {i}");
        assert_eq!(store.region.as_deref(), case.region, "case {i}");
        assert_eq!(store.path_style, case.path_style, "case {i}");
        assert_eq!(store.allow_http, case.path_style, "case {i}");
        // The spool is the pod's 2Gi emptyDir: refuse before the kubelet would evict.
        assert_eq!(store.spool_max_size, 1 << 30, "case {i}");
        assert_eq!(store.keep_shipped, Duration::ZERO, "case {i}");
        let container = &o.pod.spec.as_ref().unwrap().containers[0];
        let env_from: Vec<(String, Option<bool>)> = container
            .env_from
            .iter()
            .flatten()
            .map(|e| {
                let r = e.secret_ref.as_ref().unwrap();
                (r.name.clone(), r.optional)
            })
            .collect();
        let want: Vec<(String, Option<bool>)> = case
            .secret
            .map(|n| (n.to_owned(), Some(false)))
            .into_iter()
            .collect();
        assert_eq!(env_from, want, "case {i}");
        assert!(
            container.env.is_none(),
            "case {i}: no credential in the spec"
        );
    }
    // Without a store: no envFrom, nothing about a store in the configuration.
    let o = build(&spec()).unwrap();
    assert!(o.pod.spec.unwrap().containers[0].env_from.is_none());
    assert!(!o.config_map.data.unwrap()[CONFIG_FILE].contains("recordings_store"));
}

#[test]
fn service_account_annotations_carry_workload_identity() {
    let mut s = spec();
    let arn = "arn:aws:iam::123456789012:role/podgate-recordings";
    s.store = Some(store("s3://rec"));
    s.service_account_annotations =
        BTreeMap::from([("eks.amazonaws.com/role-arn".to_owned(), arn.to_owned())]);
    let o = build(&s).unwrap();
    let annotations = o.service_account.metadata.annotations.unwrap();
    assert_eq!(annotations["eks.amazonaws.com/role-arn"], arn);
    assert_eq!(annotations[NAMESPACES_ANNOTATION], "payments,checkout");
    // Only the ServiceAccount carries them.
    let pod_annotations = o.pod.metadata.annotations.unwrap();
    assert!(!pod_annotations.contains_key("eks.amazonaws.com/role-arn"));
}

#[test]
fn store_refusals() {
    type Change = fn(&mut Spec);
    let cases: Vec<(Change, &str)> = vec![
        (|s| s.store = Some(store("gs://rec/a")), "--store: "),
        (|s| s.store = Some(store("s3://Rec/a")), "bucket"),
        (|s| s.store = Some(store("s3://rec/a/../b")), "prefix"),
        (
            |s| {
                s.store = Some(StoreSpec {
                    endpoint: Some("http://minio:9000".into()),
                    ..store("s3://rec")
                })
            },
            "pass --store-allow-http",
        ),
        (
            |s| {
                s.store = Some(StoreSpec {
                    endpoint: Some("minio:9000".into()),
                    ..store("s3://rec")
                })
            },
            "--store-endpoint",
        ),
        (
            |s| {
                s.store = Some(StoreSpec {
                    region: Some("eu-west-1\nallow_http: true".into()),
                    ..store("s3://rec")
                })
            },
            "--store-region",
        ),
        (
            |s| {
                s.store = Some(StoreSpec {
                    secret: Some("Store_Creds".into()),
                    ..store("s3://rec")
                })
            },
            "--store-secret",
        ),
        (
            |s| {
                s.service_account_annotations =
                    BTreeMap::from([("a/b/c".to_owned(), "x".to_owned())])
            },
            "not a valid annotation key",
        ),
        (
            |s| {
                s.service_account_annotations =
                    BTreeMap::from([(EXPIRES_ANNOTATION.to_owned(), "never".to_owned())])
            },
            "podgate's own",
        ),
    ];
    for (i, (change, want)) in cases.into_iter().enumerate() {
        let mut s = spec();
        change(&mut s);
        let err = build(&s).unwrap_err().to_string();
        assert!(err.contains(want), "case {i}: {err}");
    }
}

#[test]
fn dry_run_yaml_holds_every_object() {
    let yaml = to_yaml(&build(&spec()).unwrap()).unwrap();
    let docs: Vec<serde_json::Value> = yaml
        .split("---\n")
        .skip(1)
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "RoleBinding",
            "RoleBinding",
            // The incident's ServiceAccount and the approvals Role, in the gateway's namespace.
            "RoleBinding",
            "Secret",
            "ConfigMap",
            "Service",
            "Pod"
        ]
    );
    assert_eq!(yaml.matches("---\n").count(), 10);
    let approvals = &docs[5];
    assert_eq!(approvals["roleRef"]["kind"], "Role");
    assert_eq!(
        approvals["roleRef"]["name"],
        crate::incident::APPROVALS_ROLE
    );
    assert_eq!(approvals["subjects"][0]["kind"], "ServiceAccount");
    assert_eq!(
        approvals["metadata"]["namespace"],
        docs[0]["metadata"]["namespace"]
    );
}

#[test]
fn list_table() {
    let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
    let at = |s: u64| Some(SystemTime::UNIX_EPOCH + Duration::from_secs(s));
    let rows = [
        Listed {
            id: "INC-1".into(),
            namespaces: "payments".into(),
            created: at(1_000_000 - 300),
            expires: at(1_000_000 + 6900),
            status: "Running".into(),
        },
        Listed {
            id: "INC-22".into(),
            namespaces: "a,b".into(),
            created: at(1_000_000 - 90_000),
            expires: at(1_000_000 - 1),
            status: "DeadlineExceeded".into(),
        },
    ];
    assert_eq!(
        render_list(&rows, now),
        "INCIDENT   NAMESPACES   AGE     TTL LEFT   STATUS\n\
         INC-1      payments     5m      115m       Running\n\
         INC-22     a,b          25h0m   expired    DeadlineExceeded\n"
    );
}
