//! Certificate checks: an OpenSSH user certificate presented at login becomes an
//! [`Identity`], or a [`Rejection`] saying why not (DESIGN.md §3).
//!
//! [`verify`] runs the checks in this order and stops at the first failure:
//!
//! 1. **Signer.** A *user* certificate (host certificates are refused); its CA key is a plain
//!    key (not itself a certificate), is one of the [`TrustedCas`] (compared by key, never by
//!    anything else the certificate claims); the CA signature algorithm is one OpenSSH accepts
//!    by default (`CASignatureAlgorithms`: no `ssh-rsa`/SHA-1, no `ssh-dss`); the signature
//!    verifies; the serial is not 0 (serial 0 cannot be revoked by serial).
//! 2. **Time.** `valid_after - clock_skew <= now < valid_before` (skew on the start only), and
//!    `valid_before - valid_after <= max_cert_lifetime`, so a "forever" certificate fails.
//! 3. **Who.** The principal list is not empty (an empty list means "anyone" to ssh-key:
//!    CVE-2024-7594), `user` equals one principal exactly, the key id is not empty; every
//!    principal and the key id are bounded printable ASCII, because they end up in logs and in
//!    HTTP headers (`Impersonate-User`).
//! 4. **Revocation.** Not done here yet (see the marked place in [`verify`]).
//! 5. **Critical options.** Every one must be known (OpenSSH semantics); values are printable
//!    ASCII and parsed strictly; `source-address`, `cluster@podgate`, `incident@podgate` are
//!    enforced here, the `*@podgate` scope lists become a [`Scope`].
//! 6. **Extensions.** `groups@podgate`, `reason@podgate`, `permit-pty`,
//!    `permit-port-forwarding` are read and bounded; unknown extensions are ignored (OpenSSH).
//!
//! Guarantees: an `Ok(Identity)` means every check above passed for this `user`, `peer` and
//! `now`; every string in it is printable ASCII and bounded.
//! Not done here: proof of possession of the user's private key (russh checks the login
//! signature before calling the handler), revocation, policy, I/O of any kind, reading the
//! clock (`now` is a parameter), and constant-time rejection (the SSH layer must delay
//! rejections uniformly so timing does not reveal the reason).

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::{Duration, UNIX_EPOCH};

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use ipnet::IpNet;
use russh::keys::ssh_key::certificate::OptionsMap;
use russh::keys::ssh_key::public::KeyData;
use russh::keys::{Algorithm, Certificate, HashAlg, PublicKey};

use crate::action::Action;

/// Most principals a certificate may carry.
pub const MAX_PRINCIPALS: usize = 256;
/// Longest principal or key id, in bytes.
pub const MAX_NAME_LEN: usize = 256;
/// Most groups in `groups@podgate`.
pub const MAX_GROUPS: usize = 64;
/// Longest `force-command` (and any other critical option value), in bytes.
pub const MAX_OPTION_LEN: usize = 4096;
/// Longest `reason@podgate`, in bytes.
pub const MAX_REASON_LEN: usize = 1024;
/// Most entries in a `namespaces@podgate` / `pods@podgate` list.
const MAX_GLOBS: usize = 256;
/// The critical options podgate understands (DESIGN.md §3).
pub const KNOWN_CRITICAL_OPTIONS: [&str; 7] = [
    "source-address",
    "force-command",
    "cluster@podgate",
    "incident@podgate",
    "namespaces@podgate",
    "pods@podgate",
    "actions@podgate",
];

mod cas;
mod rejection;
pub mod revocation;
mod scope;

pub use cas::{CaError, TrustedCas};
pub use rejection::Rejection;
use rejection::shown;
pub use revocation::{RevocationList, Revocations};
pub use scope::Scope;
use scope::{GlobList, parse_actions};

/// What the gateway checks certificates against.
#[derive(Debug, Clone)]
pub struct Settings {
    pub cas: TrustedCas,
    pub cluster: String,
    pub incident: Option<String>,
    pub max_cert_lifetime: Duration,
    pub clock_skew: Duration,
}

/// Who a verified certificate says the user is.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The identity, e.g. `alice@corp.example` (becomes `Impersonate-User`).
    pub key_id: String,
    /// The SSH login name that matched a principal.
    pub principal: String,
    pub serial: u64,
    /// `SHA256:...` of the signing CA.
    pub ca_fingerprint: String,
    /// `SHA256:...` of the user's key inside the certificate.
    pub key_fingerprint: String,
    /// Extension `groups@podgate`: trimmed, empty entries and duplicates dropped.
    pub groups: Vec<String>,
    /// Extension `reason@podgate` (a blank value counts as none).
    pub reason: Option<String>,
    /// Unix seconds.
    pub valid_after: u64,
    /// Unix seconds; sessions must end by then.
    pub valid_before: u64,
    pub force_command: Option<String>,
    pub scope: Scope,
    pub permit_pty: bool,
    pub permit_port_forwarding: bool,
}

/// Bytes 0x20..=0x7e only: no control characters (CR/LF would split log lines and HTTP
/// headers), no DEL, no non-ASCII (look-alike and bidi characters).
pub(crate) fn is_printable_ascii(s: &str) -> bool {
    s.bytes().all(|b| (0x20..=0x7e).contains(&b))
}

/// Why `value` is not non-empty printable ASCII of at most `max` bytes, if it is not.
fn text_problem(value: &str, max: usize) -> Option<String> {
    if value.is_empty() {
        Some("is empty".to_owned())
    } else if value.len() > max {
        Some(format!("is longer than {max} bytes"))
    } else if !is_printable_ascii(value) {
        Some(format!(
            "{} contains control or non-ASCII characters",
            shown(value)
        ))
    } else {
        None
    }
}

/// CA signature algorithms OpenSSH accepts by default (`CASignatureAlgorithms`, sshd_config(5)):
/// Ed25519, ECDSA, their FIDO variants, and RSA with SHA-2. `ssh-rsa` (SHA-1) verifies in
/// ssh-key but OpenSSH refuses it since 8.2; `ssh-dss` is gone entirely.
pub(crate) fn ca_signature_algorithm_allowed(algorithm: &Algorithm) -> bool {
    match algorithm {
        Algorithm::Ed25519 | Algorithm::Ecdsa { .. } => true,
        Algorithm::SkEd25519 | Algorithm::SkEcdsaSha2NistP256 => true,
        Algorithm::Rsa { hash } => matches!(hash, Some(HashAlg::Sha256 | HashAlg::Sha512)),
        _ => false,
    }
}

/// Check a certificate presented for login `user` from `peer` at unix time `now`.
pub fn verify(
    cert: &Certificate,
    user: &str,
    peer: Option<IpAddr>,
    now: u64,
    settings: &Settings,
    revocations: &Revocations,
) -> Result<Identity, Rejection> {
    // 1. Signer. russh only verified the signature against the key embedded in the
    // certificate; trust, type and algorithm are ours to check. Cheap checks come first.
    if !cert.cert_type().is_user() {
        return Err(Rejection::HostCertificate);
    }
    let ca_key = cert.signature_key();
    if ca_key.is_certificate() {
        return Err(Rejection::CaIsCertificate);
    }
    let Some(ca_fingerprint) = settings.cas.find(ca_key) else {
        let fingerprint = ca_key.fingerprint(HashAlg::Sha256).to_string();
        return Err(Rejection::UntrustedCa(fingerprint));
    };
    let algorithm = cert.signature().algorithm();
    if !ca_signature_algorithm_allowed(&algorithm) {
        let algorithm = algorithm.as_str().to_owned();
        return Err(Rejection::WeakSignatureAlgorithm(algorithm));
    }
    cert.verify_signature()
        .map_err(|_| Rejection::BadSignature)?;
    if cert.serial() == 0 {
        return Err(Rejection::SerialZero);
    }

    // 2. Time.
    check_validity(cert.valid_after(), cert.valid_before(), now, settings)?;

    // 3. Who.
    let principal = check_principals(cert.valid_principals(), user)?;
    check_key_id(cert.key_id())?;

    // 4. Revocation (by serial, key id, key, CA): once the certificate is known to be
    // authentic, so that a forged one cannot probe the list.
    revocations.check(cert)?;

    // 5. Critical options.
    let options = CriticalOptions::parse(cert.critical_options())?;
    options.enforce(peer, settings)?;

    // 6. Extensions.
    let extensions = Extensions::parse(cert.extensions())?;

    Ok(Identity {
        key_id: cert.key_id().to_owned(),
        principal: principal.to_owned(),
        serial: cert.serial(),
        ca_fingerprint: ca_fingerprint.to_owned(),
        key_fingerprint: cert.public_key().fingerprint(HashAlg::Sha256).to_string(),
        groups: extensions.groups,
        reason: extensions.reason,
        valid_after: cert.valid_after(),
        valid_before: cert.valid_before(),
        force_command: options.force_command,
        scope: options.scope,
        permit_pty: extensions.permit_pty,
        permit_port_forwarding: extensions.permit_port_forwarding,
    })
}

fn check_validity(after: u64, before: u64, now: u64, settings: &Settings) -> Result<(), Rejection> {
    // An empty window would otherwise be accepted inside the skew allowance.
    if before <= after {
        return Err(Rejection::InvalidValidity {
            valid_after: after,
            valid_before: before,
        });
    }
    if after.saturating_sub(settings.clock_skew.as_secs()) > now {
        return Err(Rejection::NotYetValid(after));
    }
    // Exclusive end (PROTOCOL.certkeys: valid after <= now < valid before).
    if now >= before {
        return Err(Rejection::Expired(before));
    }
    let max_secs = settings.max_cert_lifetime.as_secs();
    if before.saturating_sub(after) > max_secs {
        return Err(Rejection::LifetimeTooLong {
            valid_after: after,
            valid_before: before,
            max_secs,
        });
    }
    Ok(())
}

/// Principals are opaque: `user` must equal one exactly, a comma never splits one
/// (CVE-2026-35414). Every principal must be bounded printable ASCII. Returns the match.
pub(crate) fn check_principals<'a>(list: &'a [String], user: &str) -> Result<&'a str, Rejection> {
    if list.is_empty() {
        return Err(Rejection::NoPrincipals);
    }
    if list.len() > MAX_PRINCIPALS {
        return Err(Rejection::TooManyPrincipals(list.len()));
    }
    if let Some(reason) = list.iter().find_map(|p| text_problem(p, MAX_NAME_LEN)) {
        return Err(Rejection::BadPrincipal(reason));
    }
    let found = list.iter().find(|p| p.as_str() == user).map(String::as_str);
    found.ok_or_else(|| Rejection::PrincipalMismatch(user.to_owned()))
}

/// The key id becomes `Impersonate-User`: printable ASCII and no comma (header list syntax).
pub(crate) fn check_key_id(key_id: &str) -> Result<(), Rejection> {
    if key_id.is_empty() {
        return Err(Rejection::EmptyKeyId);
    }
    if let Some(reason) = text_problem(key_id, MAX_NAME_LEN) {
        return Err(Rejection::BadKeyId(reason));
    }
    if key_id.contains(',') {
        let reason = format!("{} contains a comma", shown(key_id));
        return Err(Rejection::BadKeyId(reason));
    }
    Ok(())
}

/// The critical options of a certificate, parsed but not yet compared with the gateway.
#[derive(Debug, Default)]
pub(crate) struct CriticalOptions {
    source_address: Option<Vec<IpNet>>,
    force_command: Option<String>,
    cluster: Option<String>,
    incident: Option<String>,
    scope: Scope,
}

impl CriticalOptions {
    /// Every option must be known (OpenSSH refuses a certificate with an unknown critical
    /// option, e.g. `verify-required` on a server that cannot enforce it).
    pub(crate) fn parse(map: &OptionsMap) -> Result<CriticalOptions, Rejection> {
        let mut out = CriticalOptions::default();
        for (name, value) in map.iter() {
            if !KNOWN_CRITICAL_OPTIONS.contains(&name.as_str()) {
                return Err(Rejection::UnknownCriticalOption(name.clone()));
            }
            let bad = |reason: String| Rejection::BadCriticalOption {
                name: name.clone(),
                reason,
            };
            if let Some(problem) = text_problem(value, MAX_OPTION_LEN) {
                return Err(bad(format!("value {problem}")));
            }
            let scope = &mut out.scope;
            match name.as_str() {
                "source-address" => {
                    out.source_address = Some(parse_source_address(value).map_err(bad)?);
                }
                "force-command" => out.force_command = Some(value.clone()),
                "cluster@podgate" => out.cluster = Some(value.clone()),
                "incident@podgate" => out.incident = Some(value.clone()),
                "namespaces@podgate" => {
                    scope.namespaces = Some(GlobList::parse(value).map_err(bad)?)
                }
                "pods@podgate" => scope.pods = Some(GlobList::parse(value).map_err(bad)?),
                "actions@podgate" => scope.actions = Some(parse_actions(value).map_err(bad)?),
                _ => return Err(Rejection::UnknownCriticalOption(name.clone())),
            }
        }
        Ok(out)
    }

    /// Compare with this connection and this gateway.
    fn enforce(&self, peer: Option<IpAddr>, settings: &Settings) -> Result<(), Rejection> {
        if let Some(nets) = &self.source_address {
            // sshd compares IPv4-mapped IPv6 peers as IPv4 (ipv64_normalise_mapped).
            let peer = peer.ok_or(Rejection::NoPeerAddress)?.to_canonical();
            if !nets.iter().any(|net| net.contains(&peer)) {
                return Err(Rejection::SourceAddressMismatch(peer));
            }
        }
        if let Some(got) = &self.cluster
            && got != &settings.cluster
        {
            let expected = settings.cluster.clone();
            return Err(Rejection::ClusterMismatch {
                expected,
                got: got.clone(),
            });
        }
        // An incident gateway requires its incident. A general gateway refuses incident
        // certificates: the CA meant them for that incident's gateway only.
        match (&settings.incident, &self.incident) {
            (Some(expected), None) => Err(Rejection::IncidentRequired(expected.clone())),
            (Some(expected), Some(got)) if got != expected => {
                let (expected, got) = (expected.clone(), got.clone());
                Err(Rejection::IncidentMismatch { expected, got })
            }
            (None, Some(got)) => Err(Rejection::IncidentNotAllowed(got.clone())),
            _ => Ok(()),
        }
    }
}

/// OpenSSH `addr_match_cidr_list`: comma list of CIDRs or bare addresses, no spaces, no
/// empty entries, only hex digits, `.`, `:`, `/`, and no host bits set below the mask
/// ("inconsistent mask length"). Anything else fails, so the certificate is refused.
fn parse_source_address(value: &str) -> Result<Vec<IpNet>, String> {
    const MAX_ENTRY_LEN: usize = 46 + 3; // INET6_ADDRSTRLEN + "/nn"
    let mut nets = Vec::new();
    for entry in value.split(',') {
        let invalid = || format!("invalid address {}", shown(entry));
        let cidr_char = |b: u8| b.is_ascii_hexdigit() || matches!(b, b'.' | b':' | b'/');
        if entry.is_empty() || entry.len() > MAX_ENTRY_LEN || !entry.bytes().all(cidr_char) {
            return Err(invalid());
        }
        let net = if entry.contains('/') {
            IpNet::from_str(entry).map_err(|_| invalid())?
        } else {
            IpNet::from(IpAddr::from_str(entry).map_err(|_| invalid())?)
        };
        if net.trunc() != net {
            return Err(format!("network {} has host bits set", shown(entry)));
        }
        nets.push(net);
    }
    Ok(nets)
}

/// The extensions podgate reads; others are ignored, as OpenSSH does.
#[derive(Debug, Default)]
pub(crate) struct Extensions {
    groups: Vec<String>,
    reason: Option<String>,
    permit_pty: bool,
    permit_port_forwarding: bool,
}

impl Extensions {
    pub(crate) fn parse(map: &OptionsMap) -> Result<Extensions, Rejection> {
        let bad = |name: &str, reason: String| Rejection::BadExtension {
            name: name.into(),
            reason,
        };
        let mut out = Extensions {
            permit_pty: map.contains_key("permit-pty"),
            permit_port_forwarding: map.contains_key("permit-port-forwarding"),
            ..Extensions::default()
        };
        // Groups become Impersonate-Group headers: printable ASCII, commas only as separators.
        if let Some(value) = map.get("groups@podgate") {
            if !is_printable_ascii(value) {
                let problem = format!("{} contains control or non-ASCII characters", shown(value));
                return Err(bad("groups@podgate", problem));
            }
            for group in value.split(',').map(str::trim).filter(|g| !g.is_empty()) {
                if group.len() > MAX_NAME_LEN {
                    return Err(bad(
                        "groups@podgate",
                        format!("group over {MAX_NAME_LEN} bytes"),
                    ));
                }
                if !out.groups.iter().any(|g| g == group) {
                    out.groups.push(group.to_owned());
                }
                // Checked inside the loop so a huge list costs no more than MAX_GROUPS entries.
                if out.groups.len() > MAX_GROUPS {
                    return Err(bad(
                        "groups@podgate",
                        format!("more than {MAX_GROUPS} groups"),
                    ));
                }
            }
        }
        // The reason goes to recordings and an Impersonate-Extra header.
        if let Some(value) = map.get("reason@podgate").filter(|v| !v.is_empty()) {
            if let Some(problem) = text_problem(value, MAX_REASON_LEN) {
                return Err(bad("reason@podgate", problem));
            }
            out.reason = Some(value.clone()).filter(|v| !v.trim().is_empty());
        }
        Ok(out)
    }
}

#[cfg(test)]
#[path = "auth_tests.rs"]
mod tests;
#[cfg(test)]
#[path = "auth_tests_more.rs"]
mod tests_more;
