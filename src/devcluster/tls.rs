//! The devcluster's TLS: a CA kept in the state directory, and a fresh server certificate
//! for the loopback addresses signed by it at every start.
//!
//! Why a CA and a separate leaf: kubectl never sends a bearer token over plain HTTP, and
//! rustls (hence kube-rs) rejects a CA certificate used directly as the server's leaf.
//! Keeping the CA across restarts keeps existing kubeconfigs valid.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, date_time_ymd,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a usable PEM {what}")]
    Pem { path: PathBuf, what: &'static str },
    #[error("generating certificates: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("building the TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The CA and server certificate in use.
pub struct Material {
    /// PEM of the CA certificate (what kubeconfigs carry as `certificate-authority-data`).
    pub ca_pem: String,
    pub server_config: Arc<rustls::ServerConfig>,
}

const CA_CERT: &str = "ca.crt";
const CA_KEY: &str = "ca.key";
const CA_NAME: &str = "podgate-devcluster-ca";

fn ca_params() -> Result<CertificateParams, rcgen::Error> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.distinguished_name.push(DnType::CommonName, CA_NAME);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = date_time_ymd(2024, 1, 1);
    p.not_after = date_time_ymd(2099, 1, 1);
    Ok(p)
}

fn read(path: &Path) -> Result<String, TlsError> {
    std::fs::read_to_string(path).map_err(|source| TlsError::Io {
        path: path.to_owned(),
        source,
    })
}

fn write_private(path: &Path, text: &str) -> Result<(), TlsError> {
    super::write_file_atomic(path, text.as_bytes(), 0o600).map_err(|source| TlsError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Load the CA from `state_dir` (creating it on first use) and issue a server certificate
/// for `ips` plus `localhost`.
pub fn prepare(state_dir: &Path, ips: &[std::net::IpAddr]) -> Result<Material, TlsError> {
    let cert_path = state_dir.join(CA_CERT);
    let key_path = state_dir.join(CA_KEY);
    let (ca_pem, ca_key) = if cert_path.exists() && key_path.exists() {
        let key_pem = read(&key_path)?;
        let key = KeyPair::from_pem(&key_pem).map_err(|_| TlsError::Pem {
            path: key_path.clone(),
            what: "private key",
        })?;
        (read(&cert_path)?, key)
    } else {
        let key = KeyPair::generate()?;
        let cert = ca_params()?.self_signed(&key)?;
        write_private(&key_path, &key.serialize_pem())?;
        write_private(&cert_path, &cert.pem())?;
        (cert.pem(), key)
    };
    let ca_der = CertificateDer::from_pem_slice(ca_pem.as_bytes()).map_err(|_| TlsError::Pem {
        path: cert_path.clone(),
        what: "certificate",
    })?;

    let mut names: Vec<String> = ips.iter().map(ToString::to_string).collect();
    for fixed in ["127.0.0.1", "::1", "localhost"] {
        if !names.iter().any(|n| n == fixed) {
            names.push(fixed.to_owned());
        }
    }
    let mut leaf = CertificateParams::new(names)?;
    leaf.distinguished_name
        .push(DnType::CommonName, "podgate-devcluster");
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    leaf.not_before = date_time_ymd(2024, 1, 1);
    leaf.not_after = date_time_ymd(2099, 1, 1);
    let leaf_key = KeyPair::generate()?;
    let issuer = Issuer::new(ca_params()?, &ca_key);
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer)?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf_cert.der().clone(), ca_der],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        )?;
    // HTTP/1.1 only: websocket upgrades (exec, port-forward) need it, and client-go falls
    // back to it for everything when h2 is not offered.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Material {
        ca_pem,
        server_config: Arc::new(config),
    })
}
