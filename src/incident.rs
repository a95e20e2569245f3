//! Per-incident gateways (`podgate incident open|list|close`): the Kubernetes objects that
//! make one, built from an [`Spec`] as typed k8s-openapi values.
//!
//! An incident gateway is a bare Pod (its `activeDeadlineSeconds` is the TTL, so the
//! kubelet kills it when the incident's time is up), its Service, a ConfigMap with its
//! configuration (`incident: ID`, so every certificate must carry `incident@podgate=ID`),
//! policy and user CA keys, a Secret with its host key, and its own ServiceAccount whose
//! ClusterRole may impersonate only users, the groups its policy names and podgate's
//! user extras. RoleBindings grant the incident's Kubernetes group (`jit:incident:ID`) a
//! debug ClusterRole in the incident's namespaces, and one RoleBinding lets its
//! ServiceAccount keep approval requests with the gateway's own (the Role
//! `podgate-approvals` of deploy/rbac-approvals.yaml). Every object carries the label
//! `podgate.dev/incident=ID`, which is how `list` finds them and `close` deletes them all.
//! With a recordings store (`incident::store`), the configuration ships the recordings to
//! the incident's own prefix of the bucket, and the pod takes the store's credentials from
//! a Secret or from its ServiceAccount's workload identity.
//!
//! Guarantees: names are valid DNS-1123 labels derived from the ID; the configuration and
//! policy put in the ConfigMap have been parsed by the gateway's own parsers, so the pod
//! does not start with a file it would refuse; the pod is as hardened as deploy/'s
//! Deployment. Not here: any Kubernetes call (see `incident::cluster`), reading files or
//! the clock (`Spec::now` is given).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::rbac::v1 as rbac;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

#[path = "incident/cluster.rs"]
pub mod cluster;
#[path = "incident/pod.rs"]
mod pod;
#[path = "incident/store.rs"]
pub mod store;

pub use store::StoreSpec;

/// The label every object of an incident carries; its value is the incident ID.
pub const INCIDENT_LABEL: &str = "podgate.dev/incident";
/// Label of objects `incident open` made (with [`COMPONENT`]).
pub const COMPONENT_LABEL: &str = "app.kubernetes.io/component";
pub const COMPONENT: &str = "incident-gateway";
/// The expiry (RFC 3339) and namespaces, as annotations, for `incident list`.
pub const EXPIRES_ANNOTATION: &str = "podgate.dev/expires-at";
pub const NAMESPACES_ANNOTATION: &str = "podgate.dev/namespaces";
/// The key of the host key in the Secret, and of the files in the ConfigMap.
pub const HOST_KEY_FILE: &str = "ssh_host_ed25519_key";
pub const CONFIG_FILE: &str = "config.yaml";
pub const POLICY_FILE: &str = "policy.yaml";
pub const CA_FILE: &str = "user_ca.pub";
/// The SSH port inside the pod, and the Service's port.
pub const SSH_PORT: i32 = 2222;
pub const SERVICE_PORT: i32 = 22;
pub const METRICS_PORT: i32 = 9090;
/// Longest incident ID: names are `podgate-inc-<id>-host-key`, at most 63 characters.
const MAX_ID: usize = 40;

#[derive(Debug, thiserror::Error)]
pub enum IncidentError {
    #[error("{0}")]
    Invalid(String),
    #[error("{what}: {message}")]
    Kube { what: String, message: String },
}

/// How engineers reach the gateway (`--service-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ServiceType {
    #[value(name = "ClusterIP")]
    ClusterIp,
    #[value(name = "LoadBalancer")]
    LoadBalancer,
    #[value(name = "NodePort")]
    NodePort,
}

impl ServiceType {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceType::ClusterIp => "ClusterIP",
            ServiceType::LoadBalancer => "LoadBalancer",
            ServiceType::NodePort => "NodePort",
        }
    }
}

/// Everything an incident gateway is made from.
#[derive(Debug, Clone)]
pub struct Spec {
    pub id: String,
    /// Where the incident group gets the debug role (at least one).
    pub namespaces: Vec<String>,
    pub ttl: Duration,
    /// The user CA public keys (the text of an OpenSSH public key file).
    pub ca_keys: String,
    /// The policy's text; `None`: [`default_policy`].
    pub policy: Option<String>,
    /// Certificate group the default policy grants to.
    pub group: String,
    /// The ClusterRole the RoleBindings grant in each namespace.
    pub role: String,
    pub service_type: ServiceType,
    /// The gateway's `cluster` (certificates' `cluster@podgate`).
    pub cluster: String,
    pub image: String,
    /// Where the gateway's own objects live.
    pub gateway_namespace: String,
    /// The host key, OpenSSH private key text.
    pub host_key: String,
    /// Where recordings are shipped; `None`: they stay on the pod's volume.
    pub store: Option<StoreSpec>,
    /// Extra annotations of the ServiceAccount (workload identity, e.g.
    /// `eks.amazonaws.com/role-arn`).
    pub service_account_annotations: BTreeMap<String, String>,
    pub now: SystemTime,
}

/// The objects of one incident gateway.
#[derive(Debug, Clone)]
pub struct Objects {
    pub service_account: core::ServiceAccount,
    pub cluster_role: rbac::ClusterRole,
    pub cluster_role_binding: rbac::ClusterRoleBinding,
    pub role_bindings: Vec<rbac::RoleBinding>,
    /// Binds the incident's ServiceAccount to `APPROVALS_ROLE` in the gateway's namespace,
    /// so that approval requests made on the incident's pod are seen by every gateway.
    pub approvals_binding: rbac::RoleBinding,
    pub secret: core::Secret,
    pub config_map: core::ConfigMap,
    pub service: core::Service,
    pub pod: core::Pod,
}

/// An incident ID is a label value (1–40 of `A-Za-z0-9._-`, alphanumeric at both ends), so
/// it can be matched exactly by a label selector and carried in certificates and headers.
pub fn check_id(id: &str) -> Result<(), IncidentError> {
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    let ok = !id.is_empty()
        && id.len() <= MAX_ID
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && alnum(id.chars().next())
        && alnum(id.chars().last());
    if ok {
        Ok(())
    } else {
        Err(IncidentError::Invalid(format!(
            "incident ID {id:?} must be 1 to {MAX_ID} characters of A-Z a-z 0-9 . _ -, \
             starting and ending with a letter or digit"
        )))
    }
}

/// The base name of an incident's objects: `podgate-inc-<id in lower case, . and _ as ->`.
pub fn base_name(id: &str) -> String {
    let slug: String = id
        .chars()
        .map(|c| match c {
            '.' | '_' => '-',
            c => c.to_ascii_lowercase(),
        })
        .collect();
    format!("podgate-inc-{slug}")
}

/// The Kubernetes group an incident's users are impersonated with.
pub fn kube_group(id: &str) -> String {
    format!("jit:incident:{id}")
}

/// The policy of an incident gateway opened without `--policy`: holders of `group` may
/// list pods, read logs, run commands and open shells in the incident's namespaces, for
/// the incident's lifetime (each session at most the TTL), everything recorded.
pub fn default_policy(spec: &Spec) -> String {
    let namespaces = spec
        .namespaces
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "# Incident {id}: generated by `podgate incident open`.\n\
         # Holders of a certificate with incident@podgate={id} and group {group} may debug\n\
         # the incident's namespaces until the gateway expires. Every session is recorded.\n\
         rules:\n\
         \x20 - name: {rule}\n\
         \x20   groups: [\"{group}\"]\n\
         \x20   namespaces: [{namespaces}]\n\
         \x20   actions: [list, logs, exec, shell]\n\
         \x20   commands: ['.+']\n\
         \x20   impersonate_groups: [\"{kube_group}\"]\n\
         \x20   max_session: {ttl}\n\
         \x20   record_input: true\n",
        id = spec.id,
        rule = base_name(&spec.id).trim_start_matches("podgate-"),
        group = spec.group,
        kube_group = kube_group(&spec.id),
        ttl = humantime::format_duration(spec.ttl),
    )
}

/// The gateway's configuration file, as mounted in the pod.
pub fn config_text(spec: &Spec) -> Result<String, IncidentError> {
    let mut text = format!(
        "# Incident {id}: generated by `podgate incident open`.\n\
         listen: 0.0.0.0:{SSH_PORT}\n\
         host_key: /etc/podgate/host/{HOST_KEY_FILE}\n\
         trusted_user_ca_keys: [/etc/podgate/config/{CA_FILE}]\n\
         cluster: {cluster}\n\
         incident: {id}\n\
         policy: /etc/podgate/config/{POLICY_FILE}\n\
         recordings: /var/lib/podgate/recordings\n\
         metrics_listen: 0.0.0.0:{METRICS_PORT}\n\
         limits:\n\
         \x20 drain: 25s\n",
        id = spec.id,
        cluster = spec.cluster,
    );
    if let Some(s) = &spec.store {
        text.push_str(&store::config_text(s, &spec.id)?);
    }
    Ok(text)
}

/// The Role (deploy/rbac-approvals.yaml) that keeps approval requests, in the gateway's
/// namespace.
pub const APPROVALS_ROLE: &str = "podgate-approvals";

/// Check `spec` and build its objects.
pub fn build(spec: &Spec) -> Result<Objects, IncidentError> {
    check_id(&spec.id)?;
    if spec.namespaces.is_empty() {
        return Err(IncidentError::Invalid(
            "at least one --namespace is needed".into(),
        ));
    }
    for ns in spec.namespaces.iter().chain([&spec.gateway_namespace]) {
        if !dns_label(ns) {
            return Err(IncidentError::Invalid(format!(
                "namespace {ns:?} is not a valid Kubernetes namespace name"
            )));
        }
    }
    if spec.ttl < Duration::from_secs(60) || spec.ttl > Duration::from_secs(7 * 86_400) {
        return Err(IncidentError::Invalid(
            "--ttl must be between 1m and 7d".into(),
        ));
    }
    if let Some(s) = &spec.store {
        store::check(s, &spec.id)?;
    }
    store::check_annotations(&spec.service_account_annotations)?;
    let policy = spec.policy.clone().unwrap_or_else(|| default_policy(spec));
    let impersonate = checked_policy(&policy)?;
    let config = config_text(spec)?;
    crate::config::Config::parse(Path::new("/etc/podgate/config/config.yaml"), &config)
        .map_err(|e| IncidentError::Invalid(e.to_string()))?;
    check_ca_keys(&spec.ca_keys)?;

    let name = base_name(&spec.id);
    let ns = &spec.gateway_namespace;
    let meta = |name: &str, namespace: Option<&str>| ObjectMeta {
        name: Some(name.to_owned()),
        namespace: namespace.map(str::to_owned),
        labels: Some(labels(&spec.id)),
        annotations: Some(annotations(spec)),
        ..ObjectMeta::default()
    };
    let mut sa_meta = meta(&name, Some(ns));
    if let Some(a) = sa_meta.annotations.as_mut() {
        a.extend(spec.service_account_annotations.clone());
    }
    let service_account = core::ServiceAccount {
        metadata: sa_meta,
        automount_service_account_token: Some(false),
        ..Default::default()
    };
    let cluster_role = rbac::ClusterRole {
        metadata: meta(&format!("{name}-impersonator"), None),
        rules: Some(impersonation_rules(impersonate)),
        ..Default::default()
    };
    let cluster_role_binding = rbac::ClusterRoleBinding {
        metadata: meta(&format!("{name}-impersonator"), None),
        role_ref: role_ref("ClusterRole", &format!("{name}-impersonator")),
        subjects: Some(vec![rbac::Subject {
            kind: "ServiceAccount".into(),
            name: name.clone(),
            namespace: Some(ns.clone()),
            ..Default::default()
        }]),
    };
    let role_bindings = spec
        .namespaces
        .iter()
        .map(|target| rbac::RoleBinding {
            metadata: meta(&name, Some(target)),
            role_ref: role_ref("ClusterRole", &spec.role),
            subjects: Some(vec![rbac::Subject {
                kind: "Group".into(),
                name: kube_group(&spec.id),
                api_group: Some("rbac.authorization.k8s.io".into()),
                ..Default::default()
            }]),
        })
        .collect();
    let secret = core::Secret {
        metadata: meta(&format!("{name}-host-key"), Some(ns)),
        type_: Some("Opaque".into()),
        string_data: Some(BTreeMap::from([(
            HOST_KEY_FILE.to_owned(),
            spec.host_key.clone(),
        )])),
        ..Default::default()
    };
    let config_map = core::ConfigMap {
        metadata: meta(&name, Some(ns)),
        data: Some(BTreeMap::from([
            (CONFIG_FILE.to_owned(), config),
            (POLICY_FILE.to_owned(), policy),
            (CA_FILE.to_owned(), spec.ca_keys.clone()),
        ])),
        ..Default::default()
    };
    let service = core::Service {
        metadata: meta(&name, Some(ns)),
        spec: Some(core::ServiceSpec {
            type_: Some(spec.service_type.as_str().into()),
            selector: Some(BTreeMap::from([(
                INCIDENT_LABEL.to_owned(),
                spec.id.clone(),
            )])),
            ports: Some(vec![core::ServicePort {
                name: Some("ssh".into()),
                port: SERVICE_PORT,
                target_port: Some(IntOrString::String("ssh".into())),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let approvals_binding = rbac::RoleBinding {
        metadata: meta(&format!("{name}-approvals"), Some(ns)),
        role_ref: role_ref("Role", APPROVALS_ROLE),
        subjects: Some(vec![rbac::Subject {
            kind: "ServiceAccount".into(),
            name: name.clone(),
            namespace: Some(ns.clone()),
            ..Default::default()
        }]),
    };
    let pod = core::Pod {
        metadata: meta(&name, Some(ns)),
        spec: Some(pod::spec(spec, &name)),
        ..Default::default()
    };
    Ok(Objects {
        service_account,
        cluster_role,
        cluster_role_binding,
        role_bindings,
        approvals_binding,
        secret,
        config_map,
        service,
        pod,
    })
}

/// Every line of the CA file that is not blank or a comment must be an OpenSSH public key,
/// and there must be one.
fn check_ca_keys(text: &str) -> Result<(), IncidentError> {
    let keys: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    match keys
        .iter()
        .find(|l| russh::keys::PublicKey::from_openssh(l).is_err())
    {
        _ if keys.is_empty() => Err(IncidentError::Invalid(
            "the user CA file holds no OpenSSH public key".into(),
        )),
        Some(bad) => Err(IncidentError::Invalid(format!(
            "the user CA file has a line that is not an OpenSSH public key: {:.40}",
            bad
        ))),
        None => Ok(()),
    }
}

/// Parse the policy as the gateway will; its `impersonate_groups` (sorted, unique).
fn checked_policy(text: &str) -> Result<Vec<String>, IncidentError> {
    let sources = [(POLICY_FILE.to_owned(), text.to_owned())];
    let policy = crate::policy::Policy::parse(&sources)
        .map_err(|e| IncidentError::Invalid(format!("the policy is not valid: {e}")))?;
    let mut groups: Vec<String> = policy
        .rules()
        .iter()
        .flat_map(|r| r.impersonate_groups.iter().cloned())
        .collect();
    groups.sort();
    groups.dedup();
    Ok(groups)
}

/// Impersonation of users (the humans: any name), of `groups` only, and of podgate's user
/// extras only (DESIGN.md §5). Nothing else: the incident gateway reads nothing itself.
fn impersonation_rules(groups: Vec<String>) -> Vec<rbac::PolicyRule> {
    let rule = |api_group: &str, resources: &[&str], names: Option<Vec<String>>| rbac::PolicyRule {
        api_groups: Some(vec![api_group.to_owned()]),
        resources: Some(resources.iter().map(|r| r.to_string()).collect()),
        resource_names: names,
        verbs: vec!["impersonate".into()],
        ..Default::default()
    };
    vec![
        rule("", &["users"], None),
        rule("", &["groups"], Some(groups)),
        rule(
            "authentication.k8s.io",
            &[
                "userextras/podgate-session",
                "userextras/podgate-serial",
                "userextras/podgate-incident",
                "userextras/podgate-reason",
            ],
            None,
        ),
    ]
}

fn role_ref(kind: &str, name: &str) -> rbac::RoleRef {
    rbac::RoleRef {
        api_group: "rbac.authorization.k8s.io".into(),
        kind: kind.into(),
        name: name.into(),
    }
}

/// The labels of every object of incident `id`.
pub fn labels(id: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), "podgate".to_owned()),
        (COMPONENT_LABEL.to_owned(), COMPONENT.to_owned()),
        (
            "app.kubernetes.io/managed-by".to_owned(),
            "podgate".to_owned(),
        ),
        (INCIDENT_LABEL.to_owned(), id.to_owned()),
    ])
}

/// The label selector of incident `id`'s objects.
pub fn selector(id: &str) -> String {
    format!("{COMPONENT_LABEL}={COMPONENT},{INCIDENT_LABEL}={id}")
}

fn annotations(spec: &Spec) -> BTreeMap<String, String> {
    let expires = humantime::format_rfc3339_seconds(spec.now + spec.ttl).to_string();
    BTreeMap::from([
        (EXPIRES_ANNOTATION.to_owned(), expires),
        (NAMESPACES_ANNOTATION.to_owned(), spec.namespaces.join(",")),
    ])
}

/// RFC 1123 label: what namespace names must be.
fn dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// The objects as one multi-document YAML stream (`--dry-run`), in the order `open`
/// creates them, each document in JSON form. JSON is YAML, and it leaves no scalar to a
/// parser's reading: a YAML 1.1 reader would take an unquoted `2026-12-01T10:00:00Z`
/// for a timestamp and a namespace called `y` for a boolean.
pub fn to_yaml(objects: &Objects) -> Result<String, IncidentError> {
    fn doc<T: serde::Serialize>(out: &mut String, v: &T) -> Result<(), IncidentError> {
        let text = serde_json::to_string_pretty(v)
            .map_err(|e| IncidentError::Invalid(format!("cannot write an object: {e}")))?;
        out.push_str("---\n");
        out.push_str(&text);
        out.push('\n');
        Ok(())
    }
    let mut out = String::new();
    doc(&mut out, &objects.service_account)?;
    doc(&mut out, &objects.cluster_role)?;
    doc(&mut out, &objects.cluster_role_binding)?;
    for rb in &objects.role_bindings {
        doc(&mut out, rb)?;
    }
    doc(&mut out, &objects.approvals_binding)?;
    doc(&mut out, &objects.secret)?;
    doc(&mut out, &objects.config_map)?;
    doc(&mut out, &objects.service)?;
    doc(&mut out, &objects.pod)?;
    Ok(out)
}

/// One row of `incident list`.
#[derive(Debug, Clone, PartialEq)]
pub struct Listed {
    pub id: String,
    pub namespaces: String,
    pub created: Option<SystemTime>,
    pub expires: Option<SystemTime>,
    /// The pod's phase, or "gone" when it no longer exists.
    pub status: String,
}

/// `incident list`'s table, kubectl style.
pub fn render_list(rows: &[Listed], now: SystemTime) -> String {
    let short = |d: Duration| {
        let s = d.as_secs();
        match s {
            0..120 => format!("{s}s"),
            120..7200 => format!("{}m", s / 60),
            7200..172_800 => format!("{}h{}m", s / 3600, s % 3600 / 60),
            _ => format!("{}d", s / 86_400),
        }
    };
    let mut table = vec![[
        "INCIDENT".to_owned(),
        "NAMESPACES".to_owned(),
        "AGE".to_owned(),
        "TTL LEFT".to_owned(),
        "STATUS".to_owned(),
    ]];
    for r in rows {
        let age = r
            .created
            .and_then(|c| now.duration_since(c).ok())
            .map_or("?".to_owned(), short);
        let left = match r.expires.map(|e| e.duration_since(now)) {
            Some(Ok(d)) => short(d),
            Some(Err(_)) => "expired".to_owned(),
            None => "?".to_owned(),
        };
        table.push([
            r.id.clone(),
            r.namespaces.clone(),
            age,
            left,
            r.status.clone(),
        ]);
    }
    let widths: Vec<usize> = (0..5)
        .map(|i| table.iter().map(|row| row[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &table {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("   ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
#[path = "incident_tests.rs"]
mod tests;
