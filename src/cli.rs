//! Command-line arguments, as parsed by clap: raw values, validated by `main` when it
//! builds the library's inputs.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "podgate",
    version,
    about = "SSH front door for just-in-time Kubernetes debugging",
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the local Kubernetes API emulator (for tests, demos and kubectl)
    Devcluster(DevclusterArgs),
}

#[derive(Debug, clap::Args)]
pub struct DevclusterArgs {
    /// Address to listen on; loopback only (127.0.0.0/8 or ::1). Port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:6443")]
    pub listen: SocketAddr,
    /// Namespaces and pods to serve (YAML); default: the built-in demo cluster
    #[arg(long, value_name = "FILE")]
    pub fixture: Option<PathBuf>,
    /// Role/ClusterRole/RoleBinding/ClusterRoleBinding YAML (repeatable); default: the
    /// built-in demo RBAC
    #[arg(long, value_name = "FILE")]
    pub rbac: Vec<PathBuf>,
    /// Write a kubeconfig with contexts `admin` (current) and `gateway` here
    #[arg(long, value_name = "FILE")]
    pub kubeconfig_out: Option<PathBuf>,
    /// Append one audit.k8s.io/v1 Event per request to this file
    #[arg(long, value_name = "FILE")]
    pub audit_log: Option<PathBuf>,
    /// Directory for the CA, tokens and exec sandboxes (kept across restarts)
    #[arg(long, value_name = "DIR", default_value = ".podgate-devcluster")]
    pub state: PathBuf,
}
