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
/// Smallest RSA CA key accepted.
const MIN_RSA_BITS: u32 = 2048;

/// Trusted user CA keys (several, for rotation).
#[derive(Debug, Clone, Default)]
pub struct TrustedCas {
    keys: Vec<(PublicKey, String)>,
}

/// A trusted-CA file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// A line that is not a usable CA key; `line` counts from 1.
    #[error("{source_name} line {line}: {problem}")]
    BadLine {
        source_name: String,
        line: usize,
        problem: String,
    },
    #[error("{source_name}: no public keys found")]
    NoKeys { source_name: String },
}

impl TrustedCas {
    /// Parse OpenSSH public key lines (blank lines and `#` comments skipped; an optional
    /// comment may follow the key). `source` names the file in errors. Certificates, `ssh-dss`
    /// (which OpenSSH no longer accepts), unknown key types, RSA keys under 2048 bits and a
    /// text with no key at all are errors: a CA file that trusts nothing is a mistake.
    pub fn parse(source: &str, text: &str) -> Result<TrustedCas, CaError> {
        let mut cas = TrustedCas::default();
        for (index, raw) in text.lines().enumerate() {
            let line = index.saturating_add(1);
            let bad = |problem| CaError::BadLine {
                source_name: source.to_owned(),
                line,
                problem,
            };
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            if trimmed
                .split_whitespace()
                .next()
                .is_some_and(|t| t.ends_with("-cert-v01@openssh.com"))
            {
                return Err(bad(
                    "a certificate, but a CA must be a plain public key".into()
                ));
            }
            let key = PublicKey::from_openssh(trimmed)
                .map_err(|e| bad(format!("not an OpenSSH public key: {e}")))?;
            match key.key_data() {
                KeyData::Rsa(rsa) if rsa.key_size() < MIN_RSA_BITS => {
                    let bits = rsa.key_size();
                    return Err(bad(format!(
                        "RSA CA key of {bits} bits (minimum {MIN_RSA_BITS})"
                    )));
                }
                KeyData::Dsa(_) | KeyData::Other(_) | KeyData::Certificate(_) => {
                    let name = key.algorithm().as_str().to_owned();
                    return Err(bad(format!("CA key type {name} is not accepted")));
                }
                _ => cas.add(key),
            }
        }
        if cas.is_empty() {
            return Err(CaError::NoKeys {
                source_name: source.to_owned(),
            });
        }
        Ok(cas)
    }

    fn add(&mut self, key: PublicKey) {
        if self
            .keys
            .iter()
            .any(|(k, _)| k.key_data() == key.key_data())
        {
            return;
        }
        let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
        self.keys.push((key, fingerprint));
    }

    /// Add the keys of `other` (duplicates are kept once).
    pub fn merge(&mut self, other: TrustedCas) {
        for (key, _) in other.keys {
            self.add(key);
        }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// `SHA256:...` fingerprints, in file order.
    pub fn fingerprints(&self) -> Vec<String> {
        self.keys.iter().map(|(_, fp)| fp.clone()).collect()
    }

    /// The fingerprint of `key` if it is trusted. Compares the whole key, not a hash of it.
    fn find(&self, key: &KeyData) -> Option<&str> {
        self.keys
            .iter()
            .find(|(k, _)| k.key_data() == key)
            .map(|(_, fp)| fp.as_str())
    }
}

/// What the gateway checks certificates against.
#[derive(Debug, Clone)]
pub struct Settings {
    pub cas: TrustedCas,
    pub cluster: String,
    pub incident: Option<String>,
    pub max_cert_lifetime: Duration,
    pub clock_skew: Duration,
}

/// A comma list of globs from a certificate, compiled.
#[derive(Debug, Clone)]
struct GlobList {
    patterns: Vec<String>,
    set: GlobSet,
}

impl GlobList {
    /// Entries are trimmed; an empty entry, an empty list or an invalid glob is an error.
    /// Braces cannot be used for alternation: the comma separates entries first.
    fn parse(value: &str) -> Result<GlobList, String> {
        let mut patterns = Vec::new();
        let mut builder = GlobSetBuilder::new();
        for entry in value.split(',').map(str::trim) {
            if entry.is_empty() {
                return Err("empty entry in list".to_owned());
            }
            let glob = GlobBuilder::new(entry).literal_separator(false).build();
            builder.add(glob.map_err(|e| format!("invalid glob {}: {}", shown(entry), e.kind()))?);
            patterns.push(entry.to_owned());
        }
        if patterns.len() > MAX_GLOBS {
            return Err(format!("more than {MAX_GLOBS} entries"));
        }
        let set = builder
            .build()
            .map_err(|e| format!("invalid glob list: {e}"))?;
        Ok(GlobList { patterns, set })
    }
}

/// What a certificate scope allows (critical options `namespaces@podgate`, `pods@podgate`,
/// `actions@podgate`). `None` = no limit from the certificate; the policy still applies.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    namespaces: Option<GlobList>,
    pods: Option<GlobList>,
    actions: Option<BTreeSet<Action>>,
}

impl Scope {
    /// Build a scope from critical option values as they appear in a certificate.
    pub fn from_cert_values(
        namespaces: Option<&str>,
        pods: Option<&str>,
        actions: Option<&str>,
    ) -> Result<Scope, String> {
        Ok(Scope {
            namespaces: namespaces.map(GlobList::parse).transpose()?,
            pods: pods.map(GlobList::parse).transpose()?,
            actions: actions.map(parse_actions).transpose()?,
        })
    }

    /// `Err` names what the certificate does not allow. Checks action, namespace, then pod;
    /// for namespace-wide requests (listing pods) use the `allows_*` methods instead.
    pub fn check(&self, action: Action, namespace: &str, pod: &str) -> Result<(), String> {
        let missing = |what: String, allows: String| {
            Err(format!(
                "certificate scope does not include {what} (allows: {allows})"
            ))
        };
        if !self.allows_action(action) {
            return missing(format!("action \"{action}\""), self.actions_text());
        }
        if !self.allows_namespace(namespace) {
            return missing(
                format!("namespace {}", shown(namespace)),
                globs_text(&self.namespaces),
            );
        }
        if !self.allows_pod(pod) {
            return missing(format!("pod {}", shown(pod)), globs_text(&self.pods));
        }
        Ok(())
    }

    pub fn allows_namespace(&self, ns: &str) -> bool {
        self.namespaces.as_ref().is_none_or(|g| g.set.is_match(ns))
    }

    pub fn allows_pod(&self, pod: &str) -> bool {
        self.pods.as_ref().is_none_or(|g| g.set.is_match(pod))
    }

    pub fn allows_action(&self, a: Action) -> bool {
        self.actions.as_ref().is_none_or(|set| set.contains(&a))
    }

    /// Human lines for `whoami`, e.g. `namespaces: payments, payments-*` or `pods: any`.
    pub fn describe(&self) -> Vec<String> {
        vec![
            format!("namespaces: {}", globs_text(&self.namespaces)),
            format!("pods: {}", globs_text(&self.pods)),
            format!("actions: {}", self.actions_text()),
        ]
    }

    fn actions_text(&self) -> String {
        let names = self
            .actions
            .as_ref()
            .map(|set| set.iter().map(|a| a.as_str()).collect());
        names.map_or_else(|| "any".to_owned(), |names: Vec<&str>| names.join(", "))
    }
}

/// A comma list of action names (entries trimmed); unknown or empty names are an error.
fn parse_actions(value: &str) -> Result<BTreeSet<Action>, String> {
    let parse = |name: &str| Action::from_str(name.trim()).map_err(|e| e.to_string());
    value.split(',').map(parse).collect()
}

fn globs_text(globs: &Option<GlobList>) -> String {
    globs
        .as_ref()
        .map_or_else(|| "any".to_owned(), |g| g.patterns.join(", "))
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

/// Why a certificate was refused. A value, not an error: the SSH layer logs it
/// (`auth.rejected`) and lets the client try another key. Strings inside are raw certificate
/// or client data, except `reason`s, which are already escaped; `Display` escapes the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    HostCertificate,
    CaIsCertificate,
    /// The CA key's `SHA256:` fingerprint.
    UntrustedCa(String),
    /// The CA signature algorithm, e.g. `ssh-rsa`.
    WeakSignatureAlgorithm(String),
    BadSignature,
    SerialZero,
    /// `valid_before <= valid_after`.
    InvalidValidity {
        valid_after: u64,
        valid_before: u64,
    },
    /// `valid_after`, more than the clock skew ahead of now.
    NotYetValid(u64),
    /// `valid_before`, at or before now.
    Expired(u64),
    LifetimeTooLong {
        valid_after: u64,
        valid_before: u64,
        max_secs: u64,
    },
    NoPrincipals,
    /// How many principals there are.
    TooManyPrincipals(usize),
    /// What is wrong with a principal.
    BadPrincipal(String),
    /// The login name that matched no principal.
    PrincipalMismatch(String),
    EmptyKeyId,
    /// What is wrong with the key id.
    BadKeyId(String),
    /// The option's name.
    UnknownCriticalOption(String),
    BadCriticalOption {
        name: String,
        reason: String,
    },
    /// The certificate has `source-address` but the client address is not known.
    NoPeerAddress,
    /// The client address (IPv4-mapped addresses as IPv4).
    SourceAddressMismatch(IpAddr),
    ClusterMismatch {
        expected: String,
        got: String,
    },
    /// The gateway's incident, absent from the certificate.
    IncidentRequired(String),
    IncidentMismatch {
        expected: String,
        got: String,
    },
    /// The certificate's incident; this gateway serves none.
    IncidentNotAllowed(String),
    BadExtension {
        name: String,
        reason: String,
    },
}

impl Rejection {
    /// Stable short code for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Self::HostCertificate => "host_certificate",
            Self::CaIsCertificate => "ca_is_certificate",
            Self::UntrustedCa(_) => "untrusted_ca",
            Self::WeakSignatureAlgorithm(_) => "weak_signature_algorithm",
            Self::BadSignature => "bad_signature",
            Self::SerialZero => "serial_zero",
            Self::InvalidValidity { .. } => "invalid_validity",
            Self::NotYetValid(_) => "not_yet_valid",
            Self::Expired(_) => "expired",
            Self::LifetimeTooLong { .. } => "lifetime_too_long",
            Self::NoPrincipals => "no_principals",
            Self::TooManyPrincipals(_) => "too_many_principals",
            Self::BadPrincipal(_) => "bad_principal",
            Self::PrincipalMismatch(_) => "principal_mismatch",
            Self::EmptyKeyId => "empty_key_id",
            Self::BadKeyId(_) => "bad_key_id",
            Self::UnknownCriticalOption(_) => "unknown_critical_option",
            Self::BadCriticalOption { .. } => "bad_critical_option",
            Self::NoPeerAddress => "no_peer_address",
            Self::SourceAddressMismatch(_) => "source_address_mismatch",
            Self::ClusterMismatch { .. } => "cluster_mismatch",
            Self::IncidentRequired(_) => "incident_required",
            Self::IncidentMismatch { .. } => "incident_mismatch",
            Self::IncidentNotAllowed(_) => "incident_not_allowed",
            Self::BadExtension { .. } => "bad_extension",
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cert = "certificate";
        match self {
            Self::HostCertificate => write!(f, "host {cert} (a user {cert} is required)"),
            Self::CaIsCertificate => write!(f, "{cert} signed by a {cert}, not by a CA key"),
            Self::UntrustedCa(fp) => write!(f, "{cert} signed by an untrusted CA ({fp})"),
            Self::WeakSignatureAlgorithm(alg) => {
                write!(f, "CA signature algorithm {} is not accepted", shown(alg))
            }
            Self::BadSignature => write!(f, "{cert} signature does not verify"),
            Self::SerialZero => write!(
                f,
                "{cert} serial is 0 (serial 0 cannot be revoked; sign with ssh-keygen -z SERIAL)"
            ),
            Self::InvalidValidity {
                valid_after: a,
                valid_before: b,
            } => {
                let (a, b) = (time_text(*a), time_text(*b));
                write!(f, "{cert} validity is empty (valid after {a}, before {b})")
            }
            Self::NotYetValid(t) => write!(f, "{cert} not valid before {}", time_text(*t)),
            Self::Expired(t) => write!(f, "{cert} expired at {}", time_text(*t)),
            Self::LifetimeTooLong {
                valid_after,
                valid_before,
                max_secs,
            } => {
                let max = humantime::format_duration(Duration::from_secs(*max_secs));
                if *valid_before == u64::MAX {
                    return write!(f, "{cert} never expires (maximum lifetime is {max})");
                }
                let life = Duration::from_secs(valid_before.saturating_sub(*valid_after));
                let life = humantime::format_duration(life);
                write!(f, "{cert} lifetime {life} exceeds the maximum {max}")
            }
            Self::NoPrincipals => write!(f, "{cert} has no principals (CVE-2024-7594)"),
            Self::TooManyPrincipals(n) => {
                write!(f, "{cert} has {n} principals (at most {MAX_PRINCIPALS})")
            }
            Self::BadPrincipal(reason) => write!(f, "{cert} principal {reason}"),
            Self::PrincipalMismatch(user) => {
                write!(f, "login name {} is not a {cert} principal", shown(user))
            }
            Self::EmptyKeyId => write!(f, "{cert} key id is empty (sign with -I IDENTITY)"),
            Self::BadKeyId(reason) => write!(f, "{cert} key id {reason}"),
            Self::UnknownCriticalOption(name) => {
                write!(f, "unknown critical option {}", shown(name))
            }
            Self::BadCriticalOption { name, reason } => {
                write!(f, "critical option {}: {reason}", shown(name))
            }
            Self::NoPeerAddress => write!(f, "{cert} has source-address, client address unknown"),
            Self::SourceAddressMismatch(peer) => {
                write!(
                    f,
                    "client address {peer} is not in the {cert}'s source-address"
                )
            }
            Self::ClusterMismatch { expected, got } => {
                let (got, expected) = (shown(got), shown(expected));
                write!(
                    f,
                    "{cert} is for cluster {got}, this gateway serves {expected}"
                )
            }
            Self::IncidentRequired(expected) => {
                let expected = shown(expected);
                write!(
                    f,
                    "{cert} has no incident@podgate, this gateway serves {expected}"
                )
            }
            Self::IncidentMismatch { expected, got } => {
                let (got, expected) = (shown(got), shown(expected));
                write!(
                    f,
                    "{cert} is for incident {got}, this gateway serves {expected}"
                )
            }
            Self::IncidentNotAllowed(got) => {
                let got = shown(got);
                write!(
                    f,
                    "{cert} is for incident {got}, this gateway serves no incident"
                )
            }
            Self::BadExtension { name, reason } => write!(f, "extension {}: {reason}", shown(name)),
        }
    }
}

/// Quote and escape untrusted text for messages and logs: ASCII only, at most 64 characters.
fn shown(s: &str) -> String {
    let escaped: String = s.chars().take(64).flat_map(char::escape_default).collect();
    let more = if s.chars().nth(64).is_some() {
        "..."
    } else {
        ""
    };
    format!("\"{escaped}{more}\"")
}

/// RFC 3339 UTC. humantime returns `fmt::Error` past year 9999 (which would panic in
/// `to_string`), so such times are shown as raw seconds.
fn time_text(secs: u64) -> String {
    const YEAR_10000: u64 = 253_402_300_800;
    match UNIX_EPOCH.checked_add(Duration::from_secs(secs)) {
        Some(t) if secs < YEAR_10000 => humantime::format_rfc3339_seconds(t).to_string(),
        _ => format!("unix time {secs}"),
    }
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

    // 4. Revocation (by serial, key id, key, CA) belongs here: after the certificate is known
    // to be authentic, before any option is acted on. Not implemented in this module yet.

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
