//! `podgate dev`: the one-command demo. It keeps everything under a state directory
//! (default `.podgate-dev/`): a throwaway user CA, a host key, a user key with a fresh
//! 1-hour certificate, the devcluster's CA and kubeconfig, an `ssh_config` with a
//! `Host dev` entry, the policy it uses, and the recordings. Run again, it reuses the keys
//! and renews the certificate.
//!
//! Everything here is for a laptop: the devcluster runs commands as the local user, and
//! the CA key sits unencrypted in the state directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use russh::keys::ssh_key::LineEnding;
use russh::keys::{PrivateKey, PublicKey};

use crate::cert::{self, IssueRequest};

/// The example policies, written into the state directory on first use.
pub const EXAMPLE_POLICIES: &[(&str, &str)] = &[
    ("oncall.yaml", include_str!("../policy/oncall.yaml")),
    (
        "port-forward.yaml",
        include_str!("../policy/port-forward.yaml"),
    ),
    ("sre-shell.yaml", include_str!("../policy/sre-shell.yaml")),
];

/// The login name and identity of the demo certificate.
pub const DEV_PRINCIPAL: &str = "dev";
pub const DEV_CLUSTER: &str = "dev";
/// Groups on the demo certificate: every example policy grants something to one of them.
pub const DEV_GROUPS: &str = "oncall-payments,sre";
const CERT_LIFETIME: Duration = Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
pub enum DevError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("{0}")]
    Cert(String),
}

fn file_err(path: &Path, e: impl std::fmt::Display) -> DevError {
    DevError::File {
        path: path.to_owned(),
        message: e.to_string(),
    }
}

/// The files of a dev state directory.
#[derive(Debug, Clone)]
pub struct Paths {
    pub dir: PathBuf,
    pub user_ca: PathBuf,
    pub host_key: PathBuf,
    pub user_key: PathBuf,
    pub user_cert: PathBuf,
    pub serial: PathBuf,
    pub kubeconfig: PathBuf,
    pub cluster_state: PathBuf,
    pub cluster_audit: PathBuf,
    pub ssh_config: PathBuf,
    pub known_hosts: PathBuf,
    pub policy: PathBuf,
    pub recordings: PathBuf,
    pub config: PathBuf,
}

impl Paths {
    pub fn new(dir: &Path) -> Paths {
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_owned());
        Paths {
            user_ca: dir.join("user_ca"),
            host_key: dir.join("ssh_host_ed25519_key"),
            user_key: dir.join("id_ed25519"),
            user_cert: dir.join("id_ed25519-cert.pub"),
            serial: dir.join("serial"),
            kubeconfig: dir.join("kubeconfig.yaml"),
            cluster_state: dir.join("cluster"),
            cluster_audit: dir.join("cluster-audit.jsonl"),
            ssh_config: dir.join("ssh_config"),
            known_hosts: dir.join("known_hosts"),
            policy: dir.join("policy"),
            recordings: dir.join("recordings"),
            config: dir.join("config.yaml"),
            dir,
        }
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), DevError> {
    crate::devcluster::write_file_atomic(path, bytes, 0o600).map_err(|e| file_err(path, e))
}

/// Load an Ed25519 key, or make one.
fn key(path: &Path) -> Result<PrivateKey, DevError> {
    if path.exists() {
        return russh::keys::load_secret_key(path, None).map_err(|e| file_err(path, e));
    }
    let key = cert::new_ed25519();
    let text = key
        .to_openssh(LineEnding::LF)
        .map_err(|e| file_err(path, e))?;
    write_private(path, text.as_bytes())?;
    let public = key
        .public_key()
        .to_openssh()
        .map_err(|e| file_err(path, e))?;
    let pub_path = path.with_extension("pub");
    write_private(&pub_path, format!("{public}\n").as_bytes())?;
    Ok(key)
}

/// Prepare the state directory for a gateway listening on `gateway`: keys, a renewed
/// certificate, policy files (kept if already there), ssh_config and known_hosts.
/// Returns the gateway configuration text (written to `config.yaml`).
pub fn prepare(paths: &Paths, gateway: SocketAddr) -> Result<String, DevError> {
    std::fs::create_dir_all(&paths.dir).map_err(|e| file_err(&paths.dir, e))?;
    std::fs::create_dir_all(&paths.policy).map_err(|e| file_err(&paths.policy, e))?;
    let ca = key(&paths.user_ca)?;
    let host = key(&paths.host_key)?;
    let user = key(&paths.user_key)?;

    let counter = std::fs::read_to_string(&paths.serial).ok();
    let (serial, next) =
        cert::next_serial(counter.as_deref()).map_err(|e| DevError::Cert(e.to_string()))?;
    write_private(&paths.serial, next.as_bytes())?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let who = std::env::var("USER").unwrap_or_else(|_| "developer".into());
    let req = IssueRequest {
        key_id: format!("{who}@podgate-dev"),
        principals: vec![DEV_PRINCIPAL.to_owned()],
        serial,
        valid_after: now.saturating_sub(60),
        valid_before: now + CERT_LIFETIME.as_secs(),
        critical_options: vec![("cluster@podgate".into(), DEV_CLUSTER.into())],
        extensions: vec![
            ("groups@podgate".into(), DEV_GROUPS.into()),
            ("reason@podgate".into(), "podgate dev".into()),
            ("permit-pty".into(), String::new()),
            ("permit-port-forwarding".into(), String::new()),
        ],
        comment: "podgate dev".into(),
    };
    let certificate = cert::issue(
        &ca,
        user.public_key(),
        &req,
        CERT_LIFETIME + Duration::from_secs(120),
    )
    .map_err(|e| DevError::Cert(e.to_string()))?;
    let text = certificate
        .to_openssh()
        .map_err(|e| DevError::Cert(e.to_string()))?;
    write_private(&paths.user_cert, format!("{text}\n").as_bytes())?;

    for (name, text) in EXAMPLE_POLICIES {
        let p = paths.policy.join(name);
        if !p.exists() {
            write_private(&p, text.as_bytes())?;
        }
    }
    let host_pub: PublicKey = host.public_key().clone();
    let host_line = host_pub
        .to_openssh()
        .map_err(|e| file_err(&paths.host_key, e))?;
    let host_pattern = format!("[{}]:{}", gateway.ip(), gateway.port());
    write_private(
        &paths.known_hosts,
        format!("{host_pattern} {host_line}\n").as_bytes(),
    )?;
    let ssh_config = format!(
        "# Written by `podgate dev`. Use: ssh -F {cfg} dev help\n\
         Host dev\n  HostName {ip}\n  Port {port}\n  User {user}\n  IdentityFile {key}\n  CertificateFile {cert}\n  IdentitiesOnly yes\n  IdentityAgent none\n  UserKnownHostsFile {kh}\n  StrictHostKeyChecking yes\n  LogLevel ERROR\n  \
         # AES-GCM first: with AES instructions it costs both ends far less CPU per byte than\n  \
         # OpenSSH's default chacha20-poly1305 (docs/BENCHMARKS.md, P1/P2).\n  \
         Ciphers aes128-gcm@openssh.com,aes256-gcm@openssh.com,chacha20-poly1305@openssh.com\n",
        cfg = paths.ssh_config.display(),
        ip = gateway.ip(),
        port = gateway.port(),
        user = DEV_PRINCIPAL,
        key = paths.user_key.display(),
        cert = paths.user_cert.display(),
        kh = paths.known_hosts.display(),
    );
    write_private(&paths.ssh_config, ssh_config.as_bytes())?;
    let ca_pub = paths.user_ca.with_extension("pub");
    let config = format!(
        "# The gateway configuration `podgate dev` runs with (DESIGN.md §7).\n\
         listen: {gateway}\nhost_key: {hk}\ntrusted_user_ca_keys: [{ca}]\ncluster: {cluster}\npolicy: {policy}\n\
         recordings: {rec}\nkubeconfig: {kc}\nkube_context: gateway\nmax_cert_lifetime: 12h\nclock_skew: 60s\nidle_timeout: 15m\n",
        hk = paths.host_key.display(),
        ca = ca_pub.display(),
        cluster = DEV_CLUSTER,
        policy = paths.policy.display(),
        rec = paths.recordings.display(),
        kc = paths.kubeconfig.display(),
    );
    write_private(&paths.config, config.as_bytes())?;
    Ok(config)
}

/// The commands `podgate dev` prints; each works when pasted from the directory podgate
/// was started in.
pub fn commands(paths: &Paths) -> Vec<String> {
    let f = paths.ssh_config.display();
    vec![
        format!("ssh -F {f} dev whoami"),
        format!("ssh -F {f} dev pods"),
        format!("ssh -F {f} dev exec payments/payments-api-0 -- ps"),
        format!("ssh -F {f} dev logs --tail 5 payments/payments-api-0"),
        format!(
            "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | ssh -F {f} -W payments-api-0.payments:8080 dev"
        ),
        format!(
            "ssh -F {f} -N -L 8080:payments-api-0.payments:8080 dev   # then: curl localhost:8080"
        ),
        format!("ssh -F {f} -t dev shell payments/payments-api-0"),
        format!("ssh -F {f} -t dev"),
    ]
}
