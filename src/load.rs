//! Start-up: read the files a configuration names (host key, user CA keys, policy, the
//! kubeconfig) and build the gateway and its SSH settings. Everything that can be wrong
//! with them is found here, before the first connection, with the file named.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use russh::keys::PrivateKey;
use russh::{MethodKind, MethodSet};

use crate::auth::{self, TrustedCas};
use crate::bridge::KubeBase;
use crate::config::Config;
use crate::gateway::{Gateway, SessionCounts};
use crate::policy::Policy;
use crate::recording::audit::AuditLog;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
}

fn file_err(path: &Path, e: impl std::fmt::Display) -> LoadError {
    LoadError::File {
        path: path.to_owned(),
        message: e.to_string(),
    }
}

/// The `(file name, text)` of a policy file, or of every `*.yaml`/`*.yml` file in a
/// directory, sorted by name (the order rules are considered in).
pub fn policy_sources(path: &Path) -> Result<Vec<(String, String)>, LoadError> {
    let meta = std::fs::metadata(path).map_err(|e| file_err(path, e))?;
    let files: Vec<PathBuf> = if meta.is_dir() {
        let mut v: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| file_err(path, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension()
                    .and_then(|x| x.to_str())
                    .is_some_and(|x| x == "yaml" || x == "yml")
            })
            .collect();
        v.sort();
        if v.is_empty() {
            return Err(file_err(path, "no *.yaml policy files in this directory"));
        }
        v
    } else {
        vec![path.to_owned()]
    };
    files
        .into_iter()
        .map(|f| {
            let text = std::fs::read_to_string(&f).map_err(|e| file_err(&f, e))?;
            Ok((f.display().to_string(), text))
        })
        .collect()
}

pub fn trusted_cas(paths: &[PathBuf]) -> Result<TrustedCas, LoadError> {
    let mut cas: Option<TrustedCas> = None;
    for p in paths {
        let text = std::fs::read_to_string(p).map_err(|e| file_err(p, e))?;
        let parsed =
            TrustedCas::parse(&p.display().to_string(), &text).map_err(|e| file_err(p, e))?;
        match cas.as_mut() {
            Some(c) => c.merge(parsed),
            None => cas = Some(parsed),
        }
    }
    match cas {
        Some(c) if !c.is_empty() => Ok(c),
        _ => Err(LoadError::Invalid(
            "trusted_user_ca_keys: the files hold no CA public key".into(),
        )),
    }
}

pub fn host_key(path: &Path) -> Result<PrivateKey, LoadError> {
    russh::keys::load_secret_key(path, None)
        .map_err(|e| file_err(path, format!("cannot read the host key: {e}")))
}

/// The SSH settings podgate runs with (see README "SSH settings").
pub fn ssh_config(host_key: PrivateKey, max_auth_attempts: usize) -> russh::server::Config {
    russh::server::Config {
        server_id: russh::SshId::Standard(
            format!("SSH-2.0-podgate_{}", env!("CARGO_PKG_VERSION")).into(),
        ),
        // Certificates only; OpenSSH probes with "none" first, which costs nothing here.
        methods: MethodSet::from(&[MethodKind::PublicKey][..]),
        auth_rejection_time: Duration::from_millis(300),
        auth_rejection_time_initial: Some(Duration::ZERO),
        max_auth_attempts,
        keys: vec![host_key],
        // Idle shells and `logs -f` are ended by podgate's own session rules, not by the
        // transport; keepalives notice dead peers.
        inactivity_timeout: None,
        keepalive_interval: Some(Duration::from_secs(30)),
        keepalive_max: 3,
        nodelay: true,
        preferred: preferred(),
        ..Default::default()
    }
}

/// Only what we mean to offer: hybrid post-quantum or X25519 key exchange (with strict-kex,
/// the Terrapin fix), AEAD ciphers only (so no separate MAC runs on the data path), and no
/// compression (nothing to decompress means no decompression bombs).
fn preferred() -> russh::Preferred {
    use russh::{cipher, compression, kex, mac};
    russh::Preferred {
        kex: std::borrow::Cow::Borrowed(&[
            kex::MLKEM768X25519_SHA256,
            kex::CURVE25519,
            kex::CURVE25519_PRE_RFC_8731,
            kex::EXTENSION_SUPPORT_AS_SERVER,
            kex::EXTENSION_OPENSSH_STRICT_KEX_AS_SERVER,
        ]),
        cipher: std::borrow::Cow::Borrowed(&[
            cipher::CHACHA20_POLY1305,
            cipher::AES_256_GCM,
            cipher::AES_128_GCM,
        ]),
        mac: std::borrow::Cow::Borrowed(&[mac::HMAC_SHA512_ETM, mac::HMAC_SHA256_ETM]),
        compression: std::borrow::Cow::Borrowed(&[compression::NONE]),
        ..russh::Preferred::DEFAULT
    }
}

/// Everything `serve` needs, built from `config`.
pub struct Loaded {
    pub gateway: Arc<Gateway>,
    pub ssh: Arc<russh::server::Config>,
}

pub async fn gateway(config: &Config) -> Result<Loaded, LoadError> {
    let cas = trusted_cas(&config.trusted_user_ca_keys)?;
    // An unusable list does not stop the gateway from starting: it refuses every login
    // (and says so in its log) until the file is fixed, like a list that breaks later.
    let revocations = match &config.revoked_keys {
        Some(path) => crate::revocation_watch::watch(path.clone()).await,
        None => crate::revocation_watch::not_configured(),
    };
    let policy = Policy::parse(&policy_sources(&config.policy)?)
        .map_err(|e| LoadError::Invalid(format!("policy: {e}")))?;
    let key = host_key(&config.host_key)?;
    let kube = match &config.kubeconfig {
        Some(p) => KubeBase::from_kubeconfig(p, config.kube_context.as_deref())
            .await
            .map_err(|e| LoadError::Invalid(e.to_string()))?,
        None => KubeBase::in_cluster().map_err(|e| LoadError::Invalid(e.to_string()))?,
    };
    std::fs::create_dir_all(&config.recordings).map_err(|e| file_err(&config.recordings, e))?;
    {
        use std::os::unix::fs::PermissionsExt;
        // Recordings are for reviewers, not for the gateway's other users.
        std::fs::set_permissions(&config.recordings, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| file_err(&config.recordings, e))?;
    }
    let audit = AuditLog::open(&config.recordings.join("audit.jsonl"))
        .map_err(|e| LoadError::Invalid(e.to_string()))?;
    // Recordings left by a crash are closed (torn tail cut, marked incomplete) before any
    // new session starts.
    let recovered = crate::recording::recover::recover(&config.recordings)
        .map_err(|e| LoadError::Invalid(e.to_string()))?;
    for session in recovered {
        tracing::warn!(%session, "recording of an interrupted session marked incomplete");
        audit
            .write(
                "session.recovered",
                serde_json::json!({"session": session, "end_reason": "incomplete"}),
            )
            .map_err(|e| LoadError::Invalid(e.to_string()))?;
    }
    let mut metrics = crate::metrics::Metrics::new();
    let shipping = match &config.recordings_store {
        Some(store_config) => {
            let store = crate::store::Store::connect(store_config)
                .map_err(|e| LoadError::Invalid(e.to_string()))?;
            let shipping =
                crate::store::ship::Shipping::new(store, &config.recordings, store_config.clone())
                    .map_err(|e| LoadError::Invalid(e.to_string()))?;
            metrics.enable_store();
            Some(Arc::new(shipping))
        }
        None => None,
    };
    let approvals_ns = config
        .approvals_namespace
        .clone()
        .or_else(|| {
            // In a pod: the service account's own namespace.
            std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
                .ok()
                .map(|s| s.trim().to_owned())
                .filter(|s| crate::request::is_dns_label(s))
        })
        .unwrap_or_else(|| "podgate".to_owned());
    let own = kube
        .own_client()
        .map_err(|e| LoadError::Invalid(e.to_string()))?;
    let approvals = Arc::new(crate::approval::Approvals::new(own, approvals_ns));
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "podgate".to_owned());
    let gateway = Gateway {
        auth: auth::Settings {
            cas,
            cluster: config.cluster.clone(),
            incident: config.incident.clone(),
            max_cert_lifetime: config.max_cert_lifetime,
            clock_skew: config.clock_skew,
        },
        policy,
        kube,
        audit,
        limits: config.limits.clone(),
        idle_timeout: config.idle_timeout,
        sessions: SessionCounts::default(),
        recordings: config.recordings.clone(),
        recordings_min_free: config.recordings_min_free,
        revocations,
        metrics,
        stopping: tokio_util::sync::CancellationToken::new(),
        transcripts: crate::gateway::Transcripts::Recorded,
        shipping,
        approvals: Some(approvals),
        hub: Arc::new(crate::observe::Hub::new()),
        name: format!("{host}:{}", std::process::id()),
    };
    Ok(Loaded {
        gateway: Arc::new(gateway),
        ssh: Arc::new(ssh_config(key, config.limits.max_auth_attempts)),
    })
}
