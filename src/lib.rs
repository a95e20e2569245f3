//! podgate: an SSH front door for just-in-time Kubernetes debugging.
//!
//! An engineer with a short-lived OpenSSH user certificate runs the stock `ssh` client;
//! podgate checks the certificate and a reviewed policy, then acts on the Kubernetes API
//! as that engineer (impersonation) and records the session. The contract is DESIGN.md;
//! README.md and docs/ describe what is built.
//!
//! # Layout
//! * `cli`: command-line arguments (clap), unvalidated.
//! * `telemetry`: logging setup.
//! * `shutdown`: SIGINT/SIGTERM as a future and a cancellation token.
//! * `devcluster`: the local Kubernetes API used by `podgate dev` and the tests; it
//!   imports nothing from the gateway modules.

pub mod cli;
pub mod devcluster;
pub mod shutdown;
pub mod telemetry;
