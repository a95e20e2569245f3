//! Why a certificate was refused, with a stable code for logs and a one-line message.

use super::*;

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
    /// Why the revocation list revokes it (e.g. `serial 5 (CA SHA256:…)`).
    Revoked(String),
    /// Why the revocation list cannot be used; every certificate is refused meanwhile.
    RevocationUnavailable(String),
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
            Self::Revoked(_) => "revoked",
            Self::RevocationUnavailable(_) => "revocation_unavailable",
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
            Self::Revoked(why) => write!(f, "{cert} is revoked: {why}"),
            Self::RevocationUnavailable(why) => write!(
                f,
                "the revocation list is unusable, so no {cert} is accepted: {why}"
            ),
        }
    }
}

/// Quote and escape untrusted text for messages and logs: ASCII only, at most 64 characters.
pub(super) fn shown(s: &str) -> String {
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
pub(super) fn time_text(secs: u64) -> String {
    const YEAR_10000: u64 = 253_402_300_800;
    match UNIX_EPOCH.checked_add(Duration::from_secs(secs)) {
        Some(t) if secs < YEAR_10000 => humantime::format_rfc3339_seconds(t).to_string(),
        _ => format!("unix time {secs}"),
    }
}
