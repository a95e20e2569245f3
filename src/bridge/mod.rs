//! The Kubernetes side of a session: one kube client per session, impersonating that
//! session's human, and the copy loops between SSH channels and kube-rs streams
//! (`exec`, `logs`, `pods`).
//!
//! Guarantees: every request carries `Impersonate-User` = the certificate's key id, one
//! `Impersonate-Group` per group of the rule that allowed it, and the `podgate-*` extras;
//! the base configuration is built explicitly (never `Config::infer`, whose debug
//! environment overrides could change the URL or the impersonated identity), and any
//! impersonation the base kubeconfig carried is replaced, never merged. If the cluster
//! refuses the impersonation the request fails; nothing falls back to the gateway's own
//! identity.

mod attach;
pub mod exec;
pub mod logs;
pub mod pods;
pub mod portforward;

use std::collections::HashMap;
use std::path::Path;

/// Failures talking to the cluster, shown to the user as `podgate: error: ...` (exit 69).
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error("kubeconfig {path}: {message}")]
    Kubeconfig { path: String, message: String },
    #[error("in-cluster configuration: {0}")]
    InCluster(String),
    #[error("building the Kubernetes client: {0}")]
    Client(String),
    /// The API answered with an error Status.
    #[error("{message}")]
    Api { code: u16, message: String },
    #[error("{0}")]
    Stream(String),
}

impl BridgeError {
    pub fn from_kube(e: kube::Error) -> BridgeError {
        match e {
            kube::Error::Api(s) => BridgeError::Api {
                code: s.code,
                message: s.message,
            },
            other => BridgeError::request_failed(other),
        }
    }

    /// A request that got no usable answer (the connection, TLS, or the upgrade failed).
    pub fn request_failed(why: impl std::fmt::Display) -> BridgeError {
        BridgeError::Stream(format!("cluster unreachable or request failed: {why}"))
    }
}

/// The gateway's own connection settings, from which per-session clients are made.
#[derive(Clone)]
pub struct KubeBase {
    config: kube::Config,
}

/// Who a session's requests are made as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Impersonation {
    pub user: String,
    pub groups: Vec<String>,
    pub session: String,
    pub serial: u64,
    pub incident: Option<String>,
    pub reason: Option<String>,
}

impl KubeBase {
    /// From a kubeconfig file (and context), read without environment overrides.
    pub async fn from_kubeconfig(
        path: &Path,
        context: Option<&str>,
    ) -> Result<KubeBase, BridgeError> {
        let err = |message: String| BridgeError::Kubeconfig {
            path: path.display().to_string(),
            message,
        };
        let kc = kube::config::Kubeconfig::read_from(path).map_err(|e| err(e.to_string()))?;
        let opts = kube::config::KubeConfigOptions {
            context: context.map(str::to_owned),
            ..Default::default()
        };
        let config = kube::Config::from_custom_kubeconfig(kc, &opts)
            .await
            .map_err(|e| err(e.to_string()))?;
        Ok(KubeBase { config })
    }

    /// The pod's service account (KUBERNETES_SERVICE_HOST/PORT and the mounted token).
    pub fn in_cluster() -> Result<KubeBase, BridgeError> {
        let config =
            kube::Config::incluster().map_err(|e| BridgeError::InCluster(e.to_string()))?;
        Ok(KubeBase { config })
    }

    /// The cluster URL (for logs).
    pub fn url(&self) -> String {
        self.config.cluster_url.to_string()
    }

    /// A client that acts as the gateway itself (its own service account), for the state
    /// replicas share (approval requests); never for anything done for a user.
    pub fn own_client(&self) -> Result<kube::Client, BridgeError> {
        kube::Client::try_from(self.config.clone()).map_err(|e| BridgeError::Client(e.to_string()))
    }

    /// A client that acts as `who`. Values have been validated upstream (printable ASCII,
    /// no commas) because they become HTTP header values.
    pub fn client(&self, who: &Impersonation) -> Result<kube::Client, BridgeError> {
        let mut config = self.config.clone();
        let mut extra: HashMap<String, Vec<String>> = HashMap::new();
        extra.insert("podgate-session".into(), vec![who.session.clone()]);
        extra.insert("podgate-serial".into(), vec![who.serial.to_string()]);
        if let Some(i) = &who.incident {
            extra.insert("podgate-incident".into(), vec![i.clone()]);
        }
        if let Some(r) = &who.reason {
            extra.insert("podgate-reason".into(), vec![r.clone()]);
        }
        config.auth_info.impersonate = Some(who.user.clone());
        config.auth_info.impersonate_uid = None;
        config.auth_info.impersonate_groups = Some(who.groups.clone());
        config.auth_info.impersonate_user_extra = Some(extra);
        // Long-running streams (logs -f, shells) must not be cut by a client timeout; the
        // session's own lifetime rules end them.
        config.read_timeout = None;
        kube::Client::try_from(config).map_err(|e| BridgeError::Client(e.to_string()))
    }
}
