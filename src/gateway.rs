//! Everything a running gateway decides with, built once at start by `main` from the
//! configuration and the files it names, and shared by every connection.

use std::sync::Arc;

use crate::auth;
use crate::bridge::KubeBase;
use crate::policy::Policy;
use crate::recording::audit::AuditLog;

/// The gateway's shared state.
pub struct Gateway {
    pub auth: auth::Settings,
    pub policy: Policy,
    pub kube: KubeBase,
    pub audit: AuditLog,
    pub limits: Limits,
    /// Where session recordings go (`RECORDINGS/YYYY-MM-DD/SESSION.{cast,json}`).
    pub recordings: std::path::PathBuf,
    /// New sessions are refused below this much free space there.
    pub recordings_min_free: u64,
}

/// Bounds that keep one client from taking the gateway down.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once; further ones wait in the listen backlog.
    pub max_connections: usize,
    /// Session channels open at once on one connection (OpenSSH MaxSessions is 10).
    pub max_channels: usize,
    /// How long a stopping gateway lets running sessions finish.
    pub drain: std::time::Duration,
    /// Transcript bytes recorded per `logs` session; the rest is marked as not recorded.
    pub logs_record_cap: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 1024,
            max_channels: 10,
            // Under Kubernetes' default terminationGracePeriodSeconds (30 s).
            drain: std::time::Duration::from_secs(25),
            logs_record_cap: 64 * 1024 * 1024,
        }
    }
}

pub type Shared = Arc<Gateway>;
