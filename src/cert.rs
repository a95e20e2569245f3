//! `podgate cert issue`: sign a scoped, short-lived OpenSSH user certificate.
//!
//! The result is an ordinary OpenSSH certificate, the same as `ssh-keygen -s CA -I KEY_ID
//! -n PRINCIPALS -z SERIAL -V FROM:TO -O critical:NAME=VALUE -O extension:NAME=VALUE` would
//! make: critical options and extensions are encoded sorted by name (ssh-key keeps them in a
//! `BTreeMap`, which is byte order, as OpenSSH requires), and RSA CAs sign with
//! `rsa-sha2-512`.
//!
//! Guarantees: [`issue`] refuses what the gateway would refuse for reasons visible at
//! signing time (serial 0, no principals, empty or unprintable key id, an empty or too long
//! validity window, unknown or malformed critical options, malformed podgate extensions, a CA
//! whose signatures OpenSSH does not accept), by running the same checks as
//! [`crate::auth`]. Not checked here: whether the CA is trusted by a gateway, cluster or
//! incident names matching a gateway, the clock. The only side effect is reading the RNG
//! (nonce, [`random_serial`]); files are the caller's business.

use std::collections::BTreeMap;
use std::time::Duration;

use russh::keys::ssh_key::certificate::{Builder, CertType, OptionsMap};
use russh::keys::{Certificate, PrivateKey, PublicKey};

use crate::auth::{self, Rejection};

/// What to put in the certificate.
#[derive(Debug, Clone, Default)]
pub struct IssueRequest {
    /// The identity, e.g. `alice@corp.example`.
    pub key_id: String,
    /// SSH login names the certificate is valid for.
    pub principals: Vec<String>,
    pub serial: u64,
    /// Unix seconds.
    pub valid_after: u64,
    /// Unix seconds.
    pub valid_before: u64,
    /// `cluster@podgate`, `incident@podgate`, `namespaces@podgate`, `pods@podgate`,
    /// `actions@podgate`, `source-address`, `force-command`; any order.
    pub critical_options: Vec<(String, String)>,
    /// `groups@podgate`, `reason@podgate`, `permit-pty`, `permit-port-forwarding` (value "").
    pub extensions: Vec<(String, String)>,
    pub comment: String,
}

/// Why no certificate was issued.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error("serial 0 cannot be revoked by serial; use a non-zero serial")]
    SerialZero,
    #[error("no principals: a certificate needs at least one login name")]
    NoPrincipals,
    #[error("empty key id: the key id is the identity (e.g. alice@corp.example)")]
    EmptyKeyId,
    #[error("valid_before ({valid_before}) must be after valid_after ({valid_after})")]
    EmptyValidity { valid_after: u64, valid_before: u64 },
    #[error("lifetime {} exceeds the maximum {}", humantime::format_duration(*.lifetime), humantime::format_duration(*.max))]
    LifetimeTooLong { lifetime: Duration, max: Duration },
    #[error("{kind} {name:?} given twice")]
    Duplicate { kind: &'static str, name: String },
    #[error("podgate would refuse this certificate: {0}")]
    WouldBeRefused(Rejection),
    #[error("the user key is a certificate; sign the plain public key")]
    UserKeyIsCertificate,
    #[error("CA key type {0} makes signatures OpenSSH does not accept (use Ed25519, ECDSA or RSA)")]
    UnsupportedCa(String),
    #[error("signing failed: {0}")]
    Signing(#[from] russh::keys::ssh_key::Error),
    #[error("serial counter file does not hold a serial number: {0:?}")]
    BadCounter(String),
    #[error("serial counter is exhausted")]
    CounterExhausted,
}

/// Sign `user_key` with `ca`. Refuses serial 0, no principals, an empty key id,
/// `valid_before <= valid_after`, a lifetime over `max_lifetime`, and anything else
/// [`auth::verify`] would refuse regardless of gateway (see the module doc).
pub fn issue(
    ca: &PrivateKey,
    user_key: &PublicKey,
    req: &IssueRequest,
    max_lifetime: Duration,
) -> Result<Certificate, IssueError> {
    if req.serial == 0 {
        return Err(IssueError::SerialZero);
    }
    if req.key_id.is_empty() {
        return Err(IssueError::EmptyKeyId);
    }
    let Some(first_principal) = req.principals.first() else {
        return Err(IssueError::NoPrincipals);
    };
    if req.valid_before <= req.valid_after {
        return Err(IssueError::EmptyValidity {
            valid_after: req.valid_after,
            valid_before: req.valid_before,
        });
    }
    let lifetime = Duration::from_secs(req.valid_before.saturating_sub(req.valid_after));
    if lifetime.as_secs() > max_lifetime.as_secs() {
        return Err(IssueError::LifetimeTooLong {
            lifetime,
            max: max_lifetime,
        });
    }
    if user_key.key_data().is_certificate() {
        return Err(IssueError::UserKeyIsCertificate);
    }

    // The gateway's own bounds, so this signer never makes a certificate podgate refuses.
    auth::check_key_id(&req.key_id).map_err(IssueError::WouldBeRefused)?;
    auth::check_principals(&req.principals, first_principal).map_err(IssueError::WouldBeRefused)?;
    let critical = options_map("critical option", &req.critical_options)?;
    let extensions = options_map("extension", &req.extensions)?;
    auth::CriticalOptions::parse(&critical).map_err(IssueError::WouldBeRefused)?;
    auth::Extensions::parse(&extensions).map_err(IssueError::WouldBeRefused)?;

    let nonce: [u8; 32] = rand::random();
    let mut builder = Builder::new(nonce.to_vec(), user_key, req.valid_after, req.valid_before)?;
    builder.serial(req.serial)?;
    builder.cert_type(CertType::User)?;
    builder.key_id(req.key_id.as_str())?;
    for principal in &req.principals {
        builder.valid_principal(principal.as_str())?;
    }
    for (name, value) in critical.iter() {
        builder.critical_option(name.as_str(), value.as_str())?;
    }
    for (name, value) in extensions.iter() {
        builder.extension(name.as_str(), value.as_str())?;
    }
    builder.comment(req.comment.as_str())?;
    let cert = builder.sign(ca)?;

    let algorithm = cert.signature().algorithm();
    if !auth::ca_signature_algorithm_allowed(&algorithm) {
        return Err(IssueError::UnsupportedCa(algorithm.as_str().to_owned()));
    }
    Ok(cert)
}

/// Collect name/value pairs into the sorted map certificates are encoded from.
fn options_map(kind: &'static str, pairs: &[(String, String)]) -> Result<OptionsMap, IssueError> {
    let mut map = BTreeMap::new();
    for (name, value) in pairs {
        if map.insert(name.clone(), value.clone()).is_some() {
            return Err(IssueError::Duplicate {
                kind,
                name: name.clone(),
            });
        }
    }
    Ok(OptionsMap::from(map))
}

/// A random non-zero serial below 2^53, so that it survives JSON consumers that read numbers
/// A new Ed25519 key pair (user or host key), from the operating system's RNG.
pub fn new_ed25519() -> PrivateKey {
    use rand::RngCore;
    let mut seed = [0u8; 32];
    rand::rng().fill_bytes(&mut seed);
    PrivateKey::from(russh::keys::ssh_key::private::Ed25519Keypair::from_seed(
        &seed,
    ))
}

/// as doubles (jq, JavaScript) unchanged; 53 bits keep collisions negligible.
pub fn random_serial() -> u64 {
    rand::random_range(1..(1u64 << 53))
}

/// The next serial from a counter file's text, which holds the last serial issued.
/// Missing or blank text starts at 1. Returns the serial and the file's new text.
pub fn next_serial(counter_text: Option<&str>) -> Result<(u64, String), IssueError> {
    let last = match counter_text.map(str::trim) {
        None | Some("") => 0,
        Some(text) => text
            .parse::<u64>()
            .map_err(|_| IssueError::BadCounter(text.chars().take(40).collect()))?,
    };
    let next = last.checked_add(1).ok_or(IssueError::CounterExhausted)?;
    Ok((next, format!("{next}\n")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Settings, TrustedCas};
    use russh::keys::ssh_key::private::Ed25519Keypair;
    use std::process::Command;

    const NOW: u64 = 1_800_000_000;

    fn key(seed: u8) -> PrivateKey {
        PrivateKey::from(Ed25519Keypair::from_seed(&[seed; 32]))
    }

    fn request() -> IssueRequest {
        IssueRequest {
            key_id: "alice@corp.example".into(),
            principals: vec!["alice".into()],
            serial: 42,
            valid_after: NOW - 60,
            valid_before: NOW + 3600,
            critical_options: vec![
                ("pods@podgate".into(), "payments-*".into()),
                ("namespaces@podgate".into(), "payments".into()),
                ("cluster@podgate".into(), "prod-eu-1".into()),
                ("actions@podgate".into(), "logs,exec".into()),
            ],
            extensions: vec![
                ("groups@podgate".into(), "oncall-payments,sre".into()),
                ("permit-pty".into(), String::new()),
                ("reason@podgate".into(), "INC-1234 checkout errors".into()),
            ],
            comment: "alice".into(),
        }
    }

    fn settings(ca: &PrivateKey) -> Settings {
        let line = ca.public_key().to_openssh().unwrap();
        Settings {
            cas: TrustedCas::parse("ca.pub", &line).unwrap(),
            cluster: "prod-eu-1".into(),
            incident: None,
            max_cert_lifetime: Duration::from_secs(12 * 3600),
            clock_skew: Duration::from_secs(60),
        }
    }

    #[test]
    fn issued_certificate_verifies() {
        let (ca, user) = (key(1), key(2));
        let cert = issue(
            &ca,
            user.public_key(),
            &request(),
            Duration::from_secs(12 * 3600),
        )
        .unwrap();
        let id = auth::verify(
            &cert,
            "alice",
            None,
            NOW,
            &settings(&ca),
            &auth::Revocations::NotConfigured,
        )
        .unwrap();
        assert_eq!(id.key_id, "alice@corp.example");
        assert_eq!(id.serial, 42);
        assert_eq!(id.groups, ["oncall-payments", "sre"]);
        assert!(id.permit_pty && !id.permit_port_forwarding);
        assert_eq!(id.reason.as_deref(), Some("INC-1234 checkout errors"));
        assert!(
            id.scope
                .check(crate::action::Action::Exec, "payments", "payments-api-0")
                .is_ok()
        );
        assert!(
            id.scope
                .check(crate::action::Action::Shell, "payments", "payments-api-0")
                .is_err()
        );
        assert_eq!(cert.comment(), "alice");
    }

    #[test]
    fn ssh_keygen_lists_issued_certificate() {
        let (ca, user) = (key(3), key(4));
        let cert = issue(
            &ca,
            user.public_key(),
            &request(),
            Duration::from_secs(12 * 3600),
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id-cert.pub");
        std::fs::write(&path, cert.to_openssh().unwrap()).unwrap();
        let out = Command::new("ssh-keygen")
            .arg("-L")
            .arg("-f")
            .arg(&path)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{text} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // ssh-keygen shows options it does not know as the hex of their encoded data (a
        // string inside a string), exactly as for the ones it makes itself with -O.
        let listed = |name: &str, value: &str| {
            let data: Vec<u8> =
                [&(value.len() as u32).to_be_bytes()[..], value.as_bytes()].concat();
            let hex: String = data.iter().map(|b| format!("{b:02x}")).collect();
            format!("{name} UNKNOWN OPTION: {hex} (len {})", data.len())
        };
        let needles = [
            "Type: ssh-ed25519-cert-v01@openssh.com user certificate".to_owned(),
            "Key ID: \"alice@corp.example\"".to_owned(),
            "Serial: 42".to_owned(),
            listed("actions@podgate", "logs,exec"),
            listed("cluster@podgate", "prod-eu-1"),
            listed("namespaces@podgate", "payments"),
            listed("pods@podgate", "payments-*"),
            listed("groups@podgate", "oncall-payments,sre"),
            "permit-pty".to_owned(),
        ];
        for needle in &needles {
            assert!(
                text.contains(needle.as_str()),
                "missing {needle:?} in:\n{text}"
            );
        }
        // Sorted: actions < cluster < namespaces < pods.
        let pos = |s: &str| text.find(s).unwrap();
        assert!(pos("actions@podgate") < pos("cluster@podgate"));
        assert!(pos("namespaces@podgate") < pos("pods@podgate"));
    }

    #[test]
    fn refusals() {
        let (ca, user) = (key(5), key(6));
        let max = Duration::from_secs(12 * 3600);
        let run = |edit: &dyn Fn(&mut IssueRequest)| {
            let mut req = request();
            edit(&mut req);
            issue(&ca, user.public_key(), &req, max).unwrap_err()
        };
        assert!(matches!(run(&|r| r.serial = 0), IssueError::SerialZero));
        assert!(matches!(
            run(&|r| r.principals.clear()),
            IssueError::NoPrincipals
        ));
        assert!(matches!(run(&|r| r.key_id.clear()), IssueError::EmptyKeyId));
        assert!(matches!(
            run(&|r| r.valid_before = r.valid_after),
            IssueError::EmptyValidity { .. }
        ));
        assert!(matches!(
            run(&|r| r.valid_before = u64::MAX),
            IssueError::LifetimeTooLong { .. }
        ));
        assert!(matches!(
            run(&|r| r.valid_before = r.valid_after + 12 * 3600 + 1),
            IssueError::LifetimeTooLong { .. }
        ));
        let dup = run(&|r| r.extensions.push(("permit-pty".into(), String::new())));
        assert!(matches!(
            dup,
            IssueError::Duplicate {
                kind: "extension",
                ..
            }
        ));
        let unknown = run(&|r| {
            r.critical_options
                .push(("verify-required".into(), String::new()))
        });
        assert!(matches!(
            unknown,
            IssueError::WouldBeRefused(Rejection::UnknownCriticalOption { .. })
        ));
        let bad_action = run(&|r| r.critical_options[3].1 = "logs,rm".into());
        assert!(matches!(
            bad_action,
            IssueError::WouldBeRefused(Rejection::BadCriticalOption { .. })
        ));
        let bad_id = run(&|r| r.key_id = "alice\nadmin".into());
        assert!(matches!(
            bad_id,
            IssueError::WouldBeRefused(Rejection::BadKeyId { .. })
        ));
        // Exactly the maximum is fine.
        let mut req = request();
        req.valid_before = req.valid_after + 12 * 3600;
        assert!(issue(&ca, user.public_key(), &req, max).is_ok());
    }

    #[test]
    fn serials() {
        for _ in 0..1000 {
            let s = random_serial();
            assert!(s != 0 && s < 1 << 53);
        }
        assert_eq!(next_serial(None).unwrap(), (1, "1\n".to_owned()));
        assert_eq!(next_serial(Some("")).unwrap(), (1, "1\n".to_owned()));
        assert_eq!(next_serial(Some(" 41\n")).unwrap(), (42, "42\n".to_owned()));
        assert!(matches!(
            next_serial(Some("forty")),
            Err(IssueError::BadCounter(_))
        ));
        assert!(matches!(
            next_serial(Some("-1")),
            Err(IssueError::BadCounter(_))
        ));
        let max = u64::MAX.to_string();
        assert!(matches!(
            next_serial(Some(&max)),
            Err(IssueError::CounterExhausted)
        ));
    }
}
