//! The Kubernetes calls of `podgate incident open|list|close`, with the operator's own
//! credentials (the kubeconfig chosen the kubectl way, read by `main.rs`).
//!
//! `open` is idempotent: an object that exists is brought to what this run built (a JSON
//! merge patch), except the pod (pods are immutable where it matters; it is left running)
//! and the host key (kept, so the fingerprint users trust does not change). An object of
//! the same name that belongs to another incident or to nobody is an error, never
//! overwritten. `close` deletes by the incident's label, in every namespace, and reports
//! what it deleted; closing twice deletes nothing the second time.

use std::fmt::Debug;
use std::time::SystemTime;

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::rbac::v1 as rbac;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{
    CA_FILE, EXPIRES_ANNOTATION, HOST_KEY_FILE, INCIDENT_LABEL, IncidentError, Listed,
    NAMESPACES_ANNOTATION, Objects, SERVICE_PORT, base_name, selector,
};

/// The label that marks the installed gateway's ConfigMap holding `user_ca.pub` (deploy/).
pub const USER_CA_LABEL: &str = "podgate.dev/user-ca";

fn kube_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> IncidentError {
    let what = what.into();
    move |e| IncidentError::Kube {
        what,
        message: match e {
            kube::Error::Api(s) => format!("{} ({})", s.message, s.code),
            other => other.to_string(),
        },
    }
}

fn not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// The host key of an incident opened before, so re-running `open` keeps it.
pub async fn existing_host_key(
    client: &Client,
    namespace: &str,
    id: &str,
) -> Result<Option<String>, IncidentError> {
    let name = format!("{}-host-key", base_name(id));
    let api: Api<core::Secret> = Api::namespaced(client.clone(), namespace);
    let secret = match api.get(&name).await {
        Ok(s) => s,
        Err(e) if not_found(&e) => return Ok(None),
        Err(e) => return Err(kube_err(format!("reading secret {namespace}/{name}"))(e)),
    };
    owned_by(&secret, id, "secret")?;
    let key = secret
        .data
        .as_ref()
        .and_then(|d| d.get(HOST_KEY_FILE))
        .and_then(|b| String::from_utf8(b.0.clone()).ok());
    Ok(key)
}

/// The user CA keys of the installed gateway: `user_ca.pub` of the ConfigMap labelled
/// `podgate.dev/user-ca=true` in the gateway namespace.
pub async fn installed_ca_keys(
    client: &Client,
    namespace: &str,
) -> Result<Option<String>, IncidentError> {
    let api: Api<core::ConfigMap> = Api::namespaced(client.clone(), namespace);
    let params = ListParams::default().labels(&format!("{USER_CA_LABEL}=true"));
    let list = api
        .list(&params)
        .await
        .map_err(kube_err(format!("listing configmaps in {namespace}")))?;
    Ok(list
        .items
        .into_iter()
        .find_map(|cm| cm.data.and_then(|mut d| d.remove(CA_FILE))))
}

/// Refuse to touch an object of the same name that is not this incident's.
fn owned_by<K: Resource>(obj: &K, id: &str, kind: &str) -> Result<(), IncidentError> {
    let owner = obj
        .meta()
        .labels
        .as_ref()
        .and_then(|l| l.get(INCIDENT_LABEL));
    if owner.map(String::as_str) == Some(id) {
        return Ok(());
    }
    let name = obj.meta().name.clone().unwrap_or_default();
    Err(IncidentError::Invalid(match owner {
        Some(other) => format!("{kind} {name} belongs to incident {other}, not {id}"),
        None => format!("{kind} {name} exists and was not made by `podgate incident open`"),
    }))
}

/// Create `obj`, or bring the existing one to it (`update`), or leave it.
async fn ensure<K>(
    api: Api<K>,
    obj: &K,
    id: &str,
    kind: &str,
    update: bool,
) -> Result<String, IncidentError>
where
    K: Resource + Clone + DeserializeOwned + Serialize + Debug,
{
    let name = obj.meta().name.clone().unwrap_or_default();
    let label = match &obj.meta().namespace {
        Some(ns) => format!("{kind}/{name} (namespace {ns})"),
        None => format!("{kind}/{name}"),
    };
    match api.create(&PostParams::default(), obj).await {
        Ok(_) => return Ok(format!("{label} created")),
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => return Err(kube_err(format!("creating {label}"))(e)),
    }
    let existing = api
        .get(&name)
        .await
        .map_err(kube_err(format!("reading {label}")))?;
    owned_by(&existing, id, kind)?;
    if !update {
        return Ok(format!("{label} unchanged"));
    }
    api.patch(&name, &PatchParams::default(), &Patch::Merge(obj))
        .await
        .map_err(kube_err(format!("updating {label}")))?;
    Ok(format!("{label} configured"))
}

/// Create (or bring up to date) every object of an incident; one line per object.
pub async fn open(client: &Client, id: &str, o: &Objects) -> Result<Vec<String>, IncidentError> {
    let gw = o.pod.metadata.namespace.clone().unwrap_or_default();
    let c = client.clone();
    // Every namespace must exist before anything is made, so a typo leaves nothing behind.
    let namespaces: Api<core::Namespace> = Api::all(c.clone());
    let wanted = o
        .role_bindings
        .iter()
        .filter_map(|rb| rb.metadata.namespace.clone());
    for ns in std::iter::once(gw.clone()).chain(wanted) {
        namespaces
            .get(&ns)
            .await
            .map_err(kube_err(format!("namespace {ns}")))?;
    }
    // So must the store's Secret: without it the pod would never start.
    let secrets: Api<core::Secret> = Api::namespaced(c.clone(), &gw);
    for name in store_secrets(&o.pod) {
        secrets
            .get_metadata(&name)
            .await
            .map_err(kube_err(format!("secret {gw}/{name} (--store-secret)")))?;
    }
    let mut done = Vec::new();
    macro_rules! make {
        ($api:expr, $obj:expr, $kind:expr, $update:expr) => {
            done.push(ensure($api, $obj, id, $kind, $update).await?)
        };
    }
    make!(
        Api::namespaced(c.clone(), &gw),
        &o.service_account,
        "serviceaccount",
        true
    );
    make!(Api::all(c.clone()), &o.cluster_role, "clusterrole", true);
    make!(
        Api::all(c.clone()),
        &o.cluster_role_binding,
        "clusterrolebinding",
        true
    );
    for rb in &o.role_bindings {
        let target = rb.metadata.namespace.clone().unwrap_or_default();
        make!(Api::namespaced(c.clone(), &target), rb, "rolebinding", true);
    }
    make!(
        Api::namespaced(c.clone(), &gw),
        &o.approvals_binding,
        "rolebinding",
        true
    );
    make!(Api::namespaced(c.clone(), &gw), &o.secret, "secret", true);
    make!(
        Api::namespaced(c.clone(), &gw),
        &o.config_map,
        "configmap",
        true
    );
    make!(Api::namespaced(c.clone(), &gw), &o.service, "service", true);
    // Pods are immutable where it matters: a running gateway is left as it is.
    make!(Api::namespaced(c.clone(), &gw), &o.pod, "pod", false);
    Ok(done)
}

/// The Secrets the pod's containers take their environment from.
fn store_secrets(pod: &core::Pod) -> Vec<String> {
    pod.spec
        .iter()
        .flat_map(|s| &s.containers)
        .flat_map(|c| c.env_from.iter().flatten())
        .filter_map(|e| e.secret_ref.as_ref().map(|r| r.name.clone()))
        .collect()
}

/// Where engineers reach the gateway, as far as the Service tells.
pub async fn endpoint(client: &Client, o: &Objects) -> Result<String, IncidentError> {
    let gw = o.service.metadata.namespace.clone().unwrap_or_default();
    let name = o.service.metadata.name.clone().unwrap_or_default();
    let api: Api<core::Service> = Api::namespaced(client.clone(), &gw);
    let svc = api
        .get(&name)
        .await
        .map_err(kube_err(format!("reading service {gw}/{name}")))?;
    let spec = svc.spec.unwrap_or_default();
    let in_cluster = format!("{name}.{gw}.svc:{SERVICE_PORT} (from inside the cluster)");
    Ok(match spec.type_.as_deref() {
        Some("LoadBalancer") => {
            let ingress = svc
                .status
                .and_then(|s| s.load_balancer)
                .and_then(|lb| lb.ingress)
                .and_then(|i| i.into_iter().next())
                .and_then(|i| i.ip.or(i.hostname));
            match ingress {
                Some(host) => format!("{host}:{SERVICE_PORT}"),
                None => format!(
                    "load balancer address pending (kubectl -n {gw} get service {name}); \
                     meanwhile {in_cluster}"
                ),
            }
        }
        Some("NodePort") => {
            let node_port = spec
                .ports
                .unwrap_or_default()
                .into_iter()
                .find_map(|p| p.node_port);
            match node_port {
                Some(p) => format!("any node's address, port {p}"),
                None => format!("node port not assigned yet; meanwhile {in_cluster}"),
            }
        }
        _ => in_cluster,
    })
}

/// Every open incident in the gateway namespace (by their ConfigMaps, which outlive an
/// expired pod), with its pod's status.
pub async fn list(client: &Client, namespace: &str) -> Result<Vec<Listed>, IncidentError> {
    let params =
        ListParams::default().labels(&format!("{}={}", super::COMPONENT_LABEL, super::COMPONENT));
    let maps: Api<core::ConfigMap> = Api::namespaced(client.clone(), namespace);
    let pods: Api<core::Pod> = Api::namespaced(client.clone(), namespace);
    let maps = maps
        .list(&params)
        .await
        .map_err(kube_err(format!("listing configmaps in {namespace}")))?;
    let pods = pods
        .list(&params)
        .await
        .map_err(kube_err(format!("listing pods in {namespace}")))?;
    let mut rows: Vec<Listed> = maps
        .items
        .iter()
        .filter_map(|cm| {
            let id = cm.labels().get(INCIDENT_LABEL)?.clone();
            let pod = pods
                .items
                .iter()
                .find(|p| p.labels().get(INCIDENT_LABEL) == Some(&id));
            let annotation = |k: &str| cm.annotations().get(k).cloned();
            // The pod's deadline counts from its creation (a re-run `open` leaves the pod).
            let pod_deadline = pod.and_then(|p| {
                let created = SystemTime::from(p.creation_timestamp()?.0);
                let seconds = p.spec.as_ref()?.active_deadline_seconds?;
                Some(created + std::time::Duration::from_secs(u64::try_from(seconds).ok()?))
            });
            let status = match pod {
                None => "gone".to_owned(),
                Some(p) => p
                    .status
                    .as_ref()
                    .and_then(|s| s.reason.clone().or(s.phase.clone()))
                    .unwrap_or_else(|| "Pending".to_owned()),
            };
            Some(Listed {
                namespaces: annotation(NAMESPACES_ANNOTATION).unwrap_or_default(),
                created: cm.creation_timestamp().map(|t| SystemTime::from(t.0)),
                expires: pod_deadline.or_else(|| {
                    annotation(EXPIRES_ANNOTATION).and_then(|e| humantime::parse_rfc3339(&e).ok())
                }),
                status,
                id,
            })
        })
        .collect();
    rows.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(rows)
}

/// Delete every object of incident `id` (found by its label, in every namespace).
pub async fn close(client: &Client, id: &str) -> Result<Vec<String>, IncidentError> {
    let params = ListParams::default().labels(&selector(id));
    let c = client;
    let mut out = Vec::new();
    macro_rules! namespaced {
        ($kind:ty, $name:expr) => {
            delete_all::<$kind>(c, &params, $name, &mut out, |ns| {
                Api::namespaced(c.clone(), ns)
            })
            .await?
        };
    }
    macro_rules! cluster_wide {
        ($kind:ty, $name:expr) => {
            delete_all::<$kind>(c, &params, $name, &mut out, |_| Api::all(c.clone())).await?
        };
    }
    // The pod first, so nobody logs in while the rest goes.
    namespaced!(core::Pod, "pod");
    namespaced!(core::Service, "service");
    namespaced!(core::ConfigMap, "configmap");
    namespaced!(core::Secret, "secret");
    namespaced!(rbac::RoleBinding, "rolebinding");
    namespaced!(core::ServiceAccount, "serviceaccount");
    cluster_wide!(rbac::ClusterRoleBinding, "clusterrolebinding");
    cluster_wide!(rbac::ClusterRole, "clusterrole");
    Ok(out)
}

/// Delete what a cluster-wide list with `params` finds, each through `api_in(namespace)`.
async fn delete_all<K>(
    client: &Client,
    params: &ListParams,
    kind: &str,
    deleted: &mut Vec<String>,
    api_in: impl Fn(&str) -> Api<K>,
) -> Result<(), IncidentError>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    let items = Api::<K>::all(client.clone())
        .list(params)
        .await
        .map_err(kube_err(format!("listing {kind}s")))?;
    for obj in items.items {
        let name = obj.name_any();
        let ns = obj.namespace().unwrap_or_default();
        let label = if ns.is_empty() {
            format!("{kind}/{name}")
        } else {
            format!("{kind}/{name} (namespace {ns})")
        };
        match api_in(&ns).delete(&name, &DeleteParams::default()).await {
            Ok(_) => deleted.push(format!("{label} deleted")),
            Err(e) if not_found(&e) => {}
            Err(e) => return Err(kube_err(format!("deleting {label}"))(e)),
        }
    }
    Ok(())
}
