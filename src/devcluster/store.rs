//! The cluster's objects: namespaces and pods (from the fixture, with their runtime
//! behaviour) and any other served type, stored as JSON and given the metadata a real API
//! server adds (uid, resourceVersion, creationTimestamp).
//!
//! Everything lives in memory behind one mutex; nothing here does I/O. Deleting a pod or
//! its namespace cancels the pod's token, which ends its exec, log and port-forward
//! streams, as a deleted pod would.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::discovery::{self, ResourceType};
use super::fixture::{Fixture, Phase, Serve};
pub use super::object::{SUPPORTED_FIELDS, str_at};
use super::object::{
    check_kind, fields_of, find_container, fold_string_data, labels_of, merge_patch, object_name,
};
use super::selector::Selector;
use super::status::ApiError;

/// Namespaces every cluster has.
const SYSTEM_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];
/// The node every pod runs on.
pub const NODE_NAME: &str = "devcluster";
/// Upper bound on stored objects, so a runaway client cannot exhaust memory.
const MAX_OBJECTS: usize = 10_000;

/// What a container does besides existing: its log and its ports.
#[derive(Debug, Clone)]
pub struct ContainerRuntime {
    pub name: String,
    pub logs: Vec<String>,
    pub log_every: Option<Duration>,
    pub previous_logs: Option<Vec<String>>,
    pub ports: Vec<(u16, Serve)>,
}

/// A pod's behaviour, shared with the streams that serve it.
#[derive(Debug)]
pub struct PodRuntime {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub phase: Phase,
    pub started: SystemTime,
    pub containers: Vec<ContainerRuntime>,
    /// Cancelled when the pod is deleted.
    pub deleted: CancellationToken,
}

impl PodRuntime {
    /// The container a request names, or the only one; the API server does not read the
    /// `default-container` annotation (kubectl does, client-side), so neither do we.
    pub fn container(&self, requested: &str) -> Result<&ContainerRuntime, ApiError> {
        if requested.is_empty() {
            return match self.containers.as_slice() {
                [only] => Ok(only),
                many => Err(ApiError::bad_request(format!(
                    "a container name must be specified for pod {}, choose one of: [{}]",
                    self.name,
                    many.iter()
                        .map(|c| c.name.as_str())
                        .collect::<Vec<_>>()
                        .join(" ")
                ))),
            };
        }
        self.containers
            .iter()
            .find(|c| c.name == requested)
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "container {requested} is not valid for pod {}",
                    self.name
                ))
            })
    }
}

type Key = (String, String);

#[derive(Default)]
struct Inner {
    /// resource type index (into `discovery::RESOURCES`) -> (namespace, name) -> object
    objects: BTreeMap<usize, BTreeMap<Key, Value>>,
    pods: BTreeMap<Key, Arc<PodRuntime>>,
    resource_version: u64,
    next_pod_ip: u32,
}

/// The object store.
pub struct Store {
    inner: Mutex<Inner>,
    shutdown: CancellationToken,
}

fn type_index(rt: &ResourceType) -> usize {
    discovery::RESOURCES
        .iter()
        .position(|r| r == rt)
        .unwrap_or(usize::MAX)
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

fn core(resource: &str) -> &'static ResourceType {
    // The table always holds the core types; the fallback keeps this total.
    discovery::lookup("", "v1", resource).unwrap_or(&discovery::RESOURCES[0])
}

impl Store {
    /// A store holding the system namespaces and everything the fixture declares.
    pub fn new(fixture: &Fixture, shutdown: CancellationToken) -> Store {
        let store = Store {
            inner: Mutex::new(Inner::default()),
            shutdown,
        };
        let now = SystemTime::now();
        {
            let mut inner = store.lock();
            for ns in SYSTEM_NAMESPACES {
                insert_namespace(&mut inner, ns, &BTreeMap::new(), now);
            }
            for ns in &fixture.namespaces {
                insert_namespace(&mut inner, &ns.name, &ns.labels, now);
                for pod in &ns.pods {
                    let containers = pod
                        .containers
                        .iter()
                        .map(|c| ContainerRuntime {
                            name: c.name.clone(),
                            logs: c.logs.clone(),
                            log_every: c.log_every,
                            previous_logs: c.previous_logs.clone(),
                            ports: c.ports.iter().map(|p| (p.port, p.serve.clone())).collect(),
                        })
                        .collect();
                    let spec = json!({
                        "containers": pod.containers.iter().map(|c| json!({
                            "name": c.name,
                            "image": c.image.clone().unwrap_or_else(|| format!("registry.local/{}:dev", c.name)),
                            "ports": c.ports.iter().map(|p| json!({"containerPort": p.port, "protocol": "TCP"})).collect::<Vec<_>>(),
                        })).collect::<Vec<_>>(),
                    });
                    let metadata = json!({
                        "name": pod.name,
                        "namespace": ns.name,
                        "labels": pod.labels,
                        "annotations": pod.annotations,
                    });
                    let object = json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec});
                    store.insert_pod(&mut inner, object, pod.phase, containers, now);
                }
            }
        }
        store
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that
        // matters for a dev server; keep serving rather than poisoning every request.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn insert_pod(
        &self,
        inner: &mut Inner,
        mut object: Value,
        phase: Phase,
        containers: Vec<ContainerRuntime>,
        now: SystemTime,
    ) -> Value {
        inner.next_pod_ip += 1;
        let ip = format!(
            "10.244.{}.{}",
            (inner.next_pod_ip / 250) % 250,
            inner.next_pod_ip % 250 + 2
        );
        let uid = uuid::Uuid::new_v4().to_string();
        inner.resource_version += 1;
        let rv = inner.resource_version.to_string();
        let namespace = str_at(&object, &["metadata", "namespace"]).to_owned();
        let name = str_at(&object, &["metadata", "name"]).to_owned();
        let restarts = |c: &ContainerRuntime| u32::from(c.previous_logs.is_some());
        let statuses: Vec<Value> = containers
            .iter()
            .map(|c| {
                let image = find_container(&object, &c.name)
                    .and_then(|s| s.get("image"))
                    .cloned()
                    .unwrap_or(Value::Null);
                let running = phase == Phase::Running;
                let state = match phase {
                    Phase::Running => json!({"running": {"startedAt": rfc3339(now)}}),
                    Phase::Pending => json!({"waiting": {"reason": "ContainerCreating"}}),
                    Phase::Succeeded => json!({"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": rfc3339(now), "finishedAt": rfc3339(now)}}),
                    Phase::Failed => json!({"terminated": {"exitCode": 1, "reason": "Error", "startedAt": rfc3339(now), "finishedAt": rfc3339(now)}}),
                };
                let mut s = json!({
                    "name": c.name,
                    "ready": running,
                    "started": running,
                    "restartCount": restarts(c),
                    "image": image,
                    "imageID": format!("{}@sha256:{}", image.as_str().unwrap_or(""), "0".repeat(64)),
                    "containerID": format!("containerd://{}", uid.replace('-', "")),
                    "state": state,
                    "lastState": {},
                });
                if c.previous_logs.is_some() {
                    s["lastState"] = json!({"terminated": {"exitCode": 2, "reason": "Error", "startedAt": rfc3339(now), "finishedAt": rfc3339(now)}});
                }
                s
            })
            .collect();
        let ready = if phase == Phase::Running {
            "True"
        } else {
            "False"
        };
        let status = json!({
            "phase": phase.as_str(),
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": rfc3339(now)},
                {"type": "Initialized", "status": "True", "lastTransitionTime": rfc3339(now)},
                {"type": "ContainersReady", "status": ready, "lastTransitionTime": rfc3339(now)},
                {"type": "Ready", "status": ready, "lastTransitionTime": rfc3339(now)},
            ],
            "hostIP": "127.0.0.1",
            "hostIPs": [{"ip": "127.0.0.1"}],
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "startTime": rfc3339(now),
            "containerStatuses": statuses,
            "qosClass": "BestEffort",
        });
        if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("uid".into(), json!(uid));
            meta.insert("resourceVersion".into(), json!(rv));
            meta.insert("creationTimestamp".into(), json!(rfc3339(now)));
        }
        if let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) {
            spec.insert("nodeName".into(), json!(NODE_NAME));
            spec.entry("restartPolicy").or_insert(json!("Always"));
            spec.entry("serviceAccountName").or_insert(json!("default"));
            spec.entry("dnsPolicy").or_insert(json!("ClusterFirst"));
            spec.entry("schedulerName")
                .or_insert(json!("default-scheduler"));
        }
        if let Some(obj) = object.as_object_mut() {
            obj.insert("status".into(), status);
        }
        let runtime = Arc::new(PodRuntime {
            namespace: namespace.clone(),
            name: name.clone(),
            uid,
            phase,
            started: now,
            containers,
            deleted: self.shutdown.child_token(),
        });
        let key = (namespace, name);
        inner.pods.insert(key.clone(), runtime);
        inner
            .objects
            .entry(type_index(core("pods")))
            .or_default()
            .insert(key, object.clone());
        object
    }

    /// The runtime of a pod, if it exists.
    pub fn pod(&self, namespace: &str, name: &str) -> Option<Arc<PodRuntime>> {
        self.lock()
            .pods
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    pub fn namespace_exists(&self, namespace: &str) -> bool {
        self.lock()
            .objects
            .get(&type_index(core("namespaces")))
            .is_some_and(|m| m.contains_key(&(String::new(), namespace.to_owned())))
    }

    pub fn get(&self, rt: &ResourceType, namespace: &str, name: &str) -> Result<Value, ApiError> {
        self.lock()
            .objects
            .get(&type_index(rt))
            .and_then(|m| m.get(&(namespace.to_owned(), name.to_owned())))
            .cloned()
            .ok_or_else(|| ApiError::not_found(rt.group, rt.resource, name))
    }

    /// List objects of a type in a namespace (or all, with `namespace == ""`), filtered by
    /// label and field selectors. Returns the items and the list's resourceVersion.
    pub fn list(
        &self,
        rt: &ResourceType,
        namespace: &str,
        labels: &Selector,
        fields: &Selector,
    ) -> (Vec<Value>, String) {
        let inner = self.lock();
        let items = inner
            .objects
            .get(&type_index(rt))
            .map(|m| {
                m.iter()
                    .filter(|((ns, _), _)| namespace.is_empty() || ns == namespace)
                    .filter(|(_, v)| labels.matches(&labels_of(v)))
                    .filter(|(_, v)| fields.matches(&fields_of(v)))
                    .map(|(_, v)| v.clone())
                    .collect()
            })
            .unwrap_or_default();
        (items, inner.resource_version.to_string())
    }

    /// Create an object from a request body. `namespace` is the one in the URL ("" for
    /// cluster-scoped types).
    pub fn create(
        &self,
        rt: &ResourceType,
        namespace: &str,
        mut body: Value,
    ) -> Result<Value, ApiError> {
        check_kind(rt, &body)?;
        let name = object_name(&mut body)?;
        let obj_ns = str_at(&body, &["metadata", "namespace"]).to_owned();
        if rt.namespaced && !obj_ns.is_empty() && obj_ns != namespace {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        if rt.namespaced && !self.namespace_exists(namespace) {
            return Err(ApiError::not_found("", "namespaces", namespace));
        }
        let now = SystemTime::now();
        let mut inner = self.lock();
        let total: usize = inner.objects.values().map(BTreeMap::len).sum();
        if total >= MAX_OBJECTS {
            return Err(ApiError::internal(format!(
                "the devcluster holds at most {MAX_OBJECTS} objects"
            )));
        }
        let key_ns = if rt.namespaced { namespace } else { "" };
        let key = (key_ns.to_owned(), name.clone());
        if inner
            .objects
            .get(&type_index(rt))
            .is_some_and(|m| m.contains_key(&key))
        {
            return Err(ApiError::already_exists(rt.group, rt.resource, &name));
        }
        if let Some(meta) = body.get_mut("metadata").and_then(Value::as_object_mut) {
            if rt.namespaced {
                meta.insert("namespace".into(), json!(namespace));
            }
            meta.remove("generateName");
        }
        if let Some(obj) = body.as_object_mut() {
            obj.insert("apiVersion".into(), json!(rt.api_version()));
            obj.insert("kind".into(), json!(rt.kind));
        }
        if rt.resource == "secrets" {
            fold_string_data(&mut body);
        }
        if rt.resource == "pods" {
            let containers = containers_of(&body)?;
            return Ok(self.insert_pod(&mut inner, body, Phase::Running, containers, now));
        }
        if rt.resource == "namespaces" {
            let labels = labels_of(&body);
            return Ok(insert_namespace(&mut inner, &name, &labels, now));
        }
        inner.resource_version += 1;
        let rv = inner.resource_version.to_string();
        if let Some(meta) = body.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
            meta.insert("resourceVersion".into(), json!(rv));
            meta.insert("creationTimestamp".into(), json!(rfc3339(now)));
        }
        inner
            .objects
            .entry(type_index(rt))
            .or_default()
            .insert(key, body.clone());
        Ok(body)
    }

    /// Replace (PUT) or merge-patch (PATCH) an existing object. Pod status and runtime are
    /// not changed by either; metadata the server owns is kept.
    pub fn update(
        &self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        body: Value,
        patch: bool,
    ) -> Result<Value, ApiError> {
        let mut inner = self.lock();
        let key = (namespace.to_owned(), name.to_owned());
        let current = inner
            .objects
            .get(&type_index(rt))
            .and_then(|m| m.get(&key))
            .cloned()
            .ok_or_else(|| ApiError::not_found(rt.group, rt.resource, name))?;
        let mut next = if patch {
            let mut n = current.clone();
            merge_patch(&mut n, &body);
            n
        } else {
            check_kind(rt, &body)?;
            let sent_rv = str_at(&body, &["metadata", "resourceVersion"]);
            let have_rv = str_at(&current, &["metadata", "resourceVersion"]);
            if !sent_rv.is_empty() && sent_rv != have_rv {
                return Err(ApiError {
                    code: 409,
                    reason: "Conflict",
                    message: format!(
                        "Operation cannot be fulfilled on {} {name:?}: the object has been modified; please apply your changes to the latest version and try again",
                        super::status::qualified(rt.group, rt.resource)
                    ),
                    details: None,
                });
            }
            body
        };
        if rt.resource == "secrets" {
            fold_string_data(&mut next);
        }
        if str_at(&next, &["metadata", "name"]) != name {
            return Err(ApiError::bad_request(
                "the name of the object does not match the name on the URL",
            ));
        }
        inner.resource_version += 1;
        let rv = inner.resource_version.to_string();
        if let Some(meta) = next.get_mut("metadata").and_then(Value::as_object_mut) {
            for keep in ["uid", "creationTimestamp", "namespace"] {
                if let Some(v) = current.get("metadata").and_then(|m| m.get(keep)) {
                    meta.insert(keep.into(), v.clone());
                }
            }
            meta.insert("resourceVersion".into(), json!(rv));
        }
        if let Some(obj) = next.as_object_mut() {
            obj.insert("apiVersion".into(), json!(rt.api_version()));
            obj.insert("kind".into(), json!(rt.kind));
            if rt.resource == "pods"
                && let Some(status) = current.get("status")
            {
                obj.insert("status".into(), status.clone());
            }
        }
        inner
            .objects
            .entry(type_index(rt))
            .or_default()
            .insert(key, next.clone());
        Ok(next)
    }

    /// Delete an object; deleting a namespace deletes everything in it.
    pub fn delete(
        &self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
    ) -> Result<Value, ApiError> {
        let mut inner = self.lock();
        let key = (namespace.to_owned(), name.to_owned());
        let removed = inner
            .objects
            .get_mut(&type_index(rt))
            .and_then(|m| m.remove(&key))
            .ok_or_else(|| ApiError::not_found(rt.group, rt.resource, name))?;
        if rt.resource == "pods"
            && let Some(p) = inner.pods.remove(&key)
        {
            p.deleted.cancel();
        }
        if rt.resource == "namespaces" {
            for m in inner.objects.values_mut() {
                m.retain(|(ns, _), _| ns != name);
            }
            let gone: Vec<Key> = inner
                .pods
                .keys()
                .filter(|(ns, _)| ns == name)
                .cloned()
                .collect();
            for k in gone {
                if let Some(p) = inner.pods.remove(&k) {
                    p.deleted.cancel();
                }
            }
        }
        inner.resource_version += 1;
        Ok(removed)
    }
}

fn insert_namespace(
    inner: &mut Inner,
    name: &str,
    labels: &BTreeMap<String, String>,
    now: SystemTime,
) -> Value {
    inner.resource_version += 1;
    let mut labels = labels.clone();
    labels.insert("kubernetes.io/metadata.name".into(), name.to_owned());
    let object = json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": name,
            "uid": uuid::Uuid::new_v4().to_string(),
            "resourceVersion": inner.resource_version.to_string(),
            "creationTimestamp": rfc3339(now),
            "labels": labels,
        },
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    });
    inner
        .objects
        .entry(type_index(core("namespaces")))
        .or_default()
        .insert((String::new(), name.to_owned()), object.clone());
    object
}

fn containers_of(pod: &Value) -> Result<Vec<ContainerRuntime>, ApiError> {
    let list = pod
        .get("spec")
        .and_then(|s| s.get("containers"))
        .and_then(Value::as_array)
        .filter(|l| !l.is_empty())
        .ok_or_else(|| ApiError::invalid("spec.containers: Required value"))?;
    list.iter()
        .map(|c| {
            let name = c.get("name").and_then(Value::as_str).unwrap_or("");
            if name.is_empty() {
                return Err(ApiError::invalid("spec.containers[].name: Required value"));
            }
            Ok(ContainerRuntime {
                name: name.to_owned(),
                logs: Vec::new(),
                log_every: None,
                previous_logs: None,
                ports: Vec::new(),
            })
        })
        .collect()
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
