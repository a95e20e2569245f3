//! Reading pods as the session's user: one pod (to find its default container) and the
//! pods of a namespace (for the `pods` command).

use std::time::SystemTime;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};

use super::BridgeError;

/// kubectl's annotation naming the container to use when none is given.
pub const DEFAULT_CONTAINER_ANNOTATION: &str = "kubectl.kubernetes.io/default-container";

/// One row of the `pods` listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRow {
    pub namespace: String,
    pub name: String,
    pub status: String,
    pub containers: Vec<String>,
    pub created: Option<SystemTime>,
}

/// The container a request means: the one named, else the pod's
/// `kubectl.kubernetes.io/default-container`, else its first (DESIGN.md §2).
pub fn default_container(pod: &Pod) -> Option<String> {
    let names: Vec<&str> = pod
        .spec
        .as_ref()
        .map(|s| s.containers.iter().map(|c| c.name.as_str()).collect())
        .unwrap_or_default();
    let annotated = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DEFAULT_CONTAINER_ANNOTATION))
        .filter(|n| names.contains(&n.as_str()));
    annotated
        .cloned()
        .or_else(|| names.first().map(|n| (*n).to_owned()))
}

pub async fn get(client: kube::Client, namespace: &str, name: &str) -> Result<Pod, BridgeError> {
    let pods: Api<Pod> = Api::namespaced(client, namespace);
    pods.get(name).await.map_err(BridgeError::from_kube)
}

pub async fn list(client: kube::Client, namespace: &str) -> Result<Vec<PodRow>, BridgeError> {
    let pods: Api<Pod> = Api::namespaced(client, namespace);
    let list = pods
        .list(&ListParams::default())
        .await
        .map_err(BridgeError::from_kube)?;
    Ok(list.items.iter().map(row).collect())
}

fn row(pod: &Pod) -> PodRow {
    let status = pod.status.as_ref();
    let mut state = status
        .and_then(|s| s.phase.clone())
        .unwrap_or_else(|| "Unknown".into());
    // As kubectl prints it: a waiting or terminated container's reason wins.
    for cs in status
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
    {
        let reason = cs.state.as_ref().and_then(|st| {
            st.waiting
                .as_ref()
                .and_then(|w| w.reason.clone())
                .or_else(|| st.terminated.as_ref().and_then(|t| t.reason.clone()))
        });
        if let Some(r) = reason {
            state = r;
        }
    }
    PodRow {
        namespace: pod.metadata.namespace.clone().unwrap_or_default(),
        name: pod.metadata.name.clone().unwrap_or_default(),
        status: state,
        containers: pod
            .spec
            .as_ref()
            .map(|s| s.containers.iter().map(|c| c.name.clone()).collect())
            .unwrap_or_default(),
        created: pod
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| SystemTime::from(t.0)),
    }
}
