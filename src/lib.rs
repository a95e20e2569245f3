//! podgate: an SSH front door for just-in-time Kubernetes debugging.
//!
//! An engineer with a short-lived OpenSSH user certificate runs the stock `ssh` client;
//! podgate checks the certificate and a reviewed policy, then acts on the Kubernetes API
//! as that engineer (impersonation) and records the session. The contract is DESIGN.md;
//! README.md and docs/ describe what is built.
//!
//! # Layout
//! * Pure decisions, no network I/O: `action` (what can be granted), `auth` (certificate
//!   → `Identity` or `Rejection`), `request` (the SSH command grammar), `policy` (rules →
//!   `Decision`), `cert` (signing), `config` (the configuration file), `observe` (live
//!   sessions for `watch`).
//! * Adapters: `ssh` (the russh handler, sessions, the prompt), `bridge` (kube-rs: exec,
//!   logs, pods, impersonation), `recording` (the audit chain), `approval` (approval
//!   requests kept as ConfigMaps), `review` (the review page), `store` (object storage).
//! * Wiring: `load` (read what the configuration names), `gateway` (shared state),
//!   `revocation_watch` (keeps the revocation list current), `metrics` (Prometheus
//!   metrics derived from audit events, `/metrics`, `/healthz`, `/readyz`),
//!   `server` (accept loop, limits, drain), `admission` (which connections are served),
//!   `dev` (the `podgate dev` demo), `incident` (per-incident gateway pods), `cli`,
//!   `telemetry`, `shutdown`.
//! * `devcluster`: the local Kubernetes API used by `podgate dev` and the tests; it
//!   imports nothing from the gateway modules.

pub mod action;
pub mod admission;
pub mod approval;
pub mod auth;
pub mod bridge;
pub mod cert;
pub mod cli;
pub mod config;
pub mod dev;
pub mod devcluster;
pub mod gateway;
pub mod incident;
pub mod load;
pub mod metrics;
pub mod observe;
pub mod policy;
pub mod recording;
pub mod request;
pub mod review;
pub mod revocation_watch;
pub mod server;
pub mod shutdown;
pub mod ssh;
pub mod store;
pub mod telemetry;
