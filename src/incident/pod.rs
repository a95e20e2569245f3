//! The incident gateway's pod spec: hardened as deploy/'s Deployment (non-root, read-only
//! root filesystem, no capabilities, RuntimeDefault seccomp, resources, probes on the
//! health endpoints), and bounded by `activeDeadlineSeconds` = the incident's TTL.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{CA_FILE, CONFIG_FILE, HOST_KEY_FILE, METRICS_PORT, POLICY_FILE, SSH_PORT, Spec};

/// The non-root user and group of the distroless image (`nonroot`).
const NONROOT: i64 = 65532;

pub(super) fn spec(spec: &Spec, name: &str) -> core::PodSpec {
    let probe = |path: &str, period: i32| core::Probe {
        http_get: Some(core::HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("metrics".into()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        ..Default::default()
    };
    let quantities = |cpu: &str, memory: &str| {
        BTreeMap::from([
            ("cpu".to_owned(), Quantity(cpu.into())),
            ("memory".to_owned(), Quantity(memory.into())),
        ])
    };
    let mount = |name: &str, path: &str, read_only: bool| core::VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: Some(read_only),
        ..Default::default()
    };
    let port = |name: &str, port: i32| core::ContainerPort {
        name: Some(name.into()),
        container_port: port,
        protocol: Some("TCP".into()),
        ..Default::default()
    };
    let container = core::Container {
        name: "podgate".into(),
        image: Some(spec.image.clone()),
        image_pull_policy: Some("IfNotPresent".into()),
        args: Some(vec![
            "serve".into(),
            "--config".into(),
            format!("/etc/podgate/config/{CONFIG_FILE}"),
        ]),
        // The recordings store's credentials, when a Secret holds them; otherwise the
        // ServiceAccount's workload identity (or the node's) is the credential chain.
        env_from: super::store::env_from(spec.store.as_ref()),
        ports: Some(vec![port("ssh", SSH_PORT), port("metrics", METRICS_PORT)]),
        liveness_probe: Some(probe("/livez", 10)),
        readiness_probe: Some(probe("/readyz", 5)),
        resources: Some(core::ResourceRequirements {
            requests: Some(quantities("100m", "64Mi")),
            limits: Some(quantities("1", "512Mi")),
            ..Default::default()
        }),
        security_context: Some(core::SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(core::Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Default::default()
            }),
            ..Default::default()
        }),
        volume_mounts: Some(vec![
            mount("config", "/etc/podgate/config", true),
            mount("host-key", "/etc/podgate/host", true),
            // One level above `recordings`: podgate makes that directory itself (mode
            // 0700), which it could not do to a volume's root owned by root.
            mount("recordings", "/var/lib/podgate", false),
        ]),
        ..Default::default()
    };
    let file = |key: &str| core::KeyToPath {
        key: key.into(),
        path: key.into(),
        ..Default::default()
    };
    let volumes = vec![
        core::Volume {
            name: "config".into(),
            config_map: Some(core::ConfigMapVolumeSource {
                name: name.into(),
                items: Some(vec![file(CONFIG_FILE), file(POLICY_FILE), file(CA_FILE)]),
                ..Default::default()
            }),
            ..Default::default()
        },
        core::Volume {
            name: "host-key".into(),
            secret: Some(core::SecretVolumeSource {
                secret_name: Some(format!("{name}-host-key")),
                items: Some(vec![file(HOST_KEY_FILE)]),
                // Owner and fsGroup may read; nobody else.
                default_mode: Some(0o440),
                ..Default::default()
            }),
            ..Default::default()
        },
        // The spool: with a recordings store it is shipped to the bucket as sessions go
        // (at most 30 s of a live session lost with the pod); without one, recordings
        // live as long as the pod (docs/OPERATIONS.md: how to keep them on a claim).
        core::Volume {
            name: "recordings".into(),
            empty_dir: Some(core::EmptyDirVolumeSource {
                size_limit: Some(Quantity("2Gi".into())),
                ..Default::default()
            }),
            ..Default::default()
        },
    ];
    core::PodSpec {
        service_account_name: Some(name.into()),
        // The one pod that gets the incident service account's token.
        automount_service_account_token: Some(true),
        // The incident's TTL: the kubelet ends the pod (phase Failed, DeadlineExceeded).
        active_deadline_seconds: Some(i64::try_from(spec.ttl.as_secs()).unwrap_or(i64::MAX)),
        restart_policy: Some("Always".into()),
        // Matched to the configuration's `limits.drain: 25s`.
        termination_grace_period_seconds: Some(30),
        enable_service_links: Some(false),
        security_context: Some(core::PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(NONROOT),
            run_as_group: Some(NONROOT),
            fs_group: Some(NONROOT),
            seccomp_profile: Some(core::SeccompProfile {
                type_: "RuntimeDefault".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        containers: vec![container],
        volumes: Some(volumes),
        ..Default::default()
    }
}
