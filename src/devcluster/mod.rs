//! `podgate devcluster`: a local stand-in for the Kubernetes API server, faithful enough
//! that real kubectl and kube-rs work against it unchanged (DESIGN.md §8).
//!
//! It serves, over HTTPS with a CA of its own, on loopback only: discovery, namespaces,
//! pods (from a fixture) with realistic status, `pods/log` (follow, tail, since,
//! timestamps, previous), `pods/exec` over websocket v5/v4 (local processes in a per-pod
//! sandbox directory, with a real PTY when asked), `pods/portforward` over websocket v4,
//! generic create/get/list/update/delete for the other types it knows, bearer-token
//! authentication, impersonation, RBAC with Kubernetes semantics, and an audit log in
//! the `audit.k8s.io/v1` Event shape.
//!
//! It is a test double, not a sandbox: exec'd commands run as the user running the
//! devcluster, in a working directory of their own, and nothing isolates them further.
//! Not served: SPDY (kubectl's fallback, and kubectl port-forward, which tunnels SPDY
//! inside its websocket), watch events after the initial list, admission, OpenAPI.
//!
//! This module imports nothing from the gateway side of the crate (DESIGN.md §10).

mod audit;
mod authn;
mod channel;
mod discovery;
mod exec;
mod exec_process;
mod exec_pty;
mod fixture;
mod handler;
mod identity;
mod kubeconfig;
mod logs;
mod object;
mod portforward;
mod rbac;
mod request;
mod selector;
mod status;
mod store;
mod streams;
mod table;
mod tls;

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

pub use authn::{ADMIN_USER, GATEWAY_USER};
pub use fixture::{Fixture, FixtureError};

/// Connections served at once; more wait in the kernel's accept queue.
const MAX_CONNECTIONS: usize = 1024;
/// A client must finish its TLS handshake and send request headers within this time.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum DevclusterError {
    #[error(
        "refusing to listen on {0}: the devcluster binds to loopback addresses only \
         (127.0.0.0/8 or ::1), e.g. --listen 127.0.0.1:6443"
    )]
    NotLoopback(SocketAddr),
    #[error("state directory {path}: {source}")]
    State {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error(transparent)]
    Rbac(#[from] rbac::RbacError),
    #[error("audit log {path}: {source}")]
    Audit {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing the kubeconfig {path}: {message}")]
    Kubeconfig { path: PathBuf, message: String },
}

/// Everything the devcluster is built from (read by `main` from flags and files).
pub struct Options {
    /// Keeps the CA, the tokens and the exec sandboxes.
    pub state_dir: PathBuf,
    pub fixture: Fixture,
    /// `(file name, YAML text)` of each `--rbac` file; empty: the built-in demo RBAC.
    pub rbac_files: Vec<(String, String)>,
    pub audit_log: Option<PathBuf>,
    pub kubeconfig_out: Option<PathBuf>,
}

/// Whether an address is one the devcluster may bind to.
pub fn check_loopback(addr: SocketAddr) -> Result<(), DevclusterError> {
    if addr.ip().is_loopback() {
        Ok(())
    } else {
        Err(DevclusterError::NotLoopback(addr))
    }
}

/// Shared state of a running devcluster.
pub struct Cluster {
    store: store::Store,
    rbac: RwLock<Arc<rbac::Rbac>>,
    rbac_files: Vec<(String, String)>,
    tokens: authn::Tokens,
    audit: audit::AuditLog,
    sandbox_root: PathBuf,
    server_address: String,
    shutdown: CancellationToken,
}

impl Cluster {
    fn rbac(&self) -> Arc<rbac::Rbac> {
        self.rbac
            .read()
            .map(|r| r.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }

    /// RBAC objects created through the API take effect like in a real cluster: rebuild
    /// the authorizer from the files plus the stored objects.
    fn objects_changed(&self, rt: &discovery::ResourceType) {
        if rt.group != "rbac.authorization.k8s.io" {
            return;
        }
        let mut sources = self.rbac_files.clone();
        let none = selector::Selector::default();
        for resource in [
            "roles",
            "clusterroles",
            "rolebindings",
            "clusterrolebindings",
        ] {
            if let Some(t) = discovery::lookup("rbac.authorization.k8s.io", "v1", resource) {
                let (items, _) = self.store.list(t, "", &none, &none);
                for item in items {
                    sources.push((format!("API object {resource}"), item.to_string()));
                }
            }
        }
        match rbac::Rbac::from_yaml(&sources) {
            Ok(r) => {
                let mut guard = self.rbac.write().unwrap_or_else(|e| e.into_inner());
                *guard = Arc::new(r);
            }
            Err(e) => tracing::warn!(error = %e, "RBAC objects from the API were not applied"),
        }
    }
}

/// A devcluster ready to serve on a bound listener.
pub struct Prepared {
    pub cluster: Arc<Cluster>,
    tls: Arc<rustls::ServerConfig>,
    /// `https://127.0.0.1:PORT`
    pub url: String,
    /// The kubeconfig text (also written to `kubeconfig_out` if set).
    pub kubeconfig: String,
}

/// Build the cluster for a listener bound at `addr`: state directory, CA and server
/// certificate, tokens, RBAC, audit log, kubeconfig.
pub fn prepare(
    opts: Options,
    addr: SocketAddr,
    shutdown: CancellationToken,
) -> Result<Prepared, DevclusterError> {
    check_loopback(addr)?;
    let state = |path: &Path| {
        let path = path.to_owned();
        move |source| DevclusterError::State { path, source }
    };
    std::fs::create_dir_all(&opts.state_dir).map_err(state(&opts.state_dir))?;
    let material = tls::prepare(&opts.state_dir, &[addr.ip()])?;
    let tokens = load_tokens(&opts.state_dir)?;
    let rbac_sources = if opts.rbac_files.is_empty() {
        vec![(
            "built-in demo RBAC".to_owned(),
            rbac::DEMO_RBAC_YAML.to_owned(),
        )]
    } else {
        opts.rbac_files
    };
    let rbac = rbac::Rbac::from_yaml(&rbac_sources)?;
    tracing::info!(rbac = %rbac.summary(), "RBAC loaded");
    let audit = match &opts.audit_log {
        Some(p) => audit::AuditLog::open(p).map_err(|source| DevclusterError::Audit {
            path: p.clone(),
            source,
        })?,
        None => audit::AuditLog::disabled(),
    };
    let url = match addr {
        SocketAddr::V4(a) => format!("https://{a}"),
        SocketAddr::V6(a) => format!("https://[{}]:{}", a.ip(), a.port()),
    };
    let kubeconfig = kubeconfig::render(&url, &material.ca_pem, &tokens).map_err(|e| {
        DevclusterError::Kubeconfig {
            path: opts.kubeconfig_out.clone().unwrap_or_default(),
            message: e.to_string(),
        }
    })?;
    if let Some(path) = &opts.kubeconfig_out {
        write_file_atomic(path, kubeconfig.as_bytes(), 0o600).map_err(|e| {
            DevclusterError::Kubeconfig {
                path: path.clone(),
                message: e.to_string(),
            }
        })?;
    }
    let cluster = Arc::new(Cluster {
        store: store::Store::new(&opts.fixture, shutdown.clone()),
        rbac: RwLock::new(Arc::new(rbac)),
        rbac_files: rbac_sources,
        tokens,
        audit,
        sandbox_root: opts.state_dir.join("sandbox"),
        server_address: addr.to_string(),
        shutdown,
    });
    Ok(Prepared {
        cluster,
        tls: material.server_config,
        url,
        kubeconfig,
    })
}

fn load_tokens(dir: &Path) -> Result<authn::Tokens, DevclusterError> {
    let path = dir.join("tokens.json");
    let err = |source| DevclusterError::State {
        path: path.clone(),
        source,
    };
    if let Ok(text) = std::fs::read_to_string(&path) {
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        if let (Some(a), Some(g)) = (v["admin"].as_str(), v["gateway"].as_str())
            && !a.is_empty()
            && !g.is_empty()
        {
            return Ok(authn::Tokens {
                admin: a.to_owned(),
                gateway: g.to_owned(),
            });
        }
    }
    let t = authn::Tokens::generate();
    let text = serde_json::json!({"admin": t.admin, "gateway": t.gateway}).to_string();
    write_file_atomic(&path, text.as_bytes(), 0o600).map_err(err)?;
    Ok(t)
}

/// Write a file by renaming a fully written temporary file over it, with `mode`.
pub fn write_file_atomic(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Serve until `shutdown` fires (the token given to `prepare`), then stop accepting,
/// end every stream and return once connections have closed (bounded wait).
pub async fn serve(listener: TcpListener, prepared: Prepared) {
    let Prepared { cluster, tls, .. } = prepared;
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let tracker = tokio_util::task::TaskTracker::new();
    loop {
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = cluster.shutdown.cancelled() => break,
        };
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = cluster.shutdown.cancelled() => break,
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let cluster = cluster.clone();
        tracker.spawn(async move {
            let _permit = permit;
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let stop = cluster.shutdown.clone();
            let svc =
                hyper::service::service_fn(move |req| handler::handle(cluster.clone(), peer, req));
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(HANDSHAKE_TIMEOUT);
            let conn = builder
                .serve_connection(TokioIo::new(tls), svc)
                .with_upgrades();
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r { tracing::debug!(%peer, error = %e, "connection ended"); }
                }
                _ = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
                }
            }
        });
    }
    tracker.close();
    let _ = tokio::time::timeout(Duration::from_secs(10), tracker.wait()).await;
}
