//! The `limits:` section of the configuration: every bound that keeps one client, one
//! source address or one identity from taking the gateway down (issue 5). Each key has a
//! safe default, so the section is optional; unknown keys are errors like everywhere else.
//!
//! The defaults follow OpenSSH where it has an equivalent (`MaxAuthTries` 6, `MaxSessions`
//! 10, `PerSourcePenalties` authfail 5s / max 600s / min 15s) and are tighter where podgate
//! can afford it (`LoginGraceTime` is 120 s in OpenSSH, 30 s here: a certificate login is
//! one round trip, never a typed password).

use std::time::Duration;

use serde::Deserialize;

/// Bounds of a running gateway.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// TCP connections served at once, logged in or not; more are closed on accept.
    pub max_connections: usize,
    /// Connections that have not logged in yet, in total. When full, a new connection
    /// evicts the oldest one of the source holding the most (a flood cannot lock out a
    /// real user).
    pub max_unauthenticated: usize,
    /// Connections not yet logged in from one source (an IPv4 address or an IPv6 /64).
    pub max_unauthenticated_per_source: usize,
    /// A connection that has not logged in by then is closed.
    #[serde(with = "super::duration")]
    pub login_grace: Duration,
    /// Authentication requests per connection (OpenSSH `MaxAuthTries`).
    pub max_auth_attempts: usize,
    /// Added to a source's penalty for each connection that failed authentication.
    #[serde(with = "super::duration")]
    pub penalty_per_failure: Duration,
    /// The most penalty a source can accrue.
    #[serde(with = "super::duration")]
    pub penalty_max: Duration,
    /// New connections from a source are refused while its penalty exceeds this.
    #[serde(with = "super::duration")]
    pub penalty_threshold: Duration,
    /// Sources never penalised (CIDRs), e.g. a load balancer's health checker.
    pub penalty_exempt: Vec<ipnet::IpNet>,
    /// Session channels open at once on one connection (OpenSSH `MaxSessions`).
    pub max_channels: usize,
    /// Port-forward (`direct-tcpip`) channels open at once on one connection.
    pub max_forwards: usize,
    /// Sessions and forwarded connections running at once for one identity (key id),
    /// across all its connections.
    pub max_sessions_per_identity: usize,
    /// How long a stopping gateway lets running sessions finish.
    #[serde(with = "super::duration")]
    pub drain: Duration,
    /// Transcript bytes recorded per `logs` session; the rest is marked as not recorded.
    #[serde(with = "super::size")]
    pub logs_record_cap: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 4096,
            max_unauthenticated: 512,
            max_unauthenticated_per_source: 32,
            login_grace: Duration::from_secs(30),
            max_auth_attempts: 6,
            penalty_per_failure: Duration::from_secs(5),
            penalty_max: Duration::from_secs(600),
            penalty_threshold: Duration::from_secs(15),
            penalty_exempt: Vec::new(),
            max_channels: 10,
            max_forwards: 64,
            max_sessions_per_identity: 32,
            // Under Kubernetes' default terminationGracePeriodSeconds (30 s).
            drain: Duration::from_secs(25),
            logs_record_cap: 64 * 1024 * 1024,
        }
    }
}

impl Limits {
    /// Zero for a count would lock everyone out, and a zero grace or drain is never meant.
    pub fn check(&self) -> Result<(), String> {
        let counts = [
            ("max_connections", self.max_connections),
            ("max_unauthenticated", self.max_unauthenticated),
            (
                "max_unauthenticated_per_source",
                self.max_unauthenticated_per_source,
            ),
            ("max_auth_attempts", self.max_auth_attempts),
            ("max_channels", self.max_channels),
            ("max_forwards", self.max_forwards),
            ("max_sessions_per_identity", self.max_sessions_per_identity),
        ];
        if let Some((name, _)) = counts.iter().find(|(_, v)| *v == 0) {
            return Err(format!("limits.{name} must be at least 1"));
        }
        if self.login_grace.is_zero() {
            return Err("limits.login_grace must be positive".into());
        }
        if self.penalty_max < self.penalty_per_failure {
            return Err("limits.penalty_max must be at least limits.penalty_per_failure".into());
        }
        Ok(())
    }
}
