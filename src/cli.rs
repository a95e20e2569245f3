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
    /// Run the gateway
    Serve {
        /// The gateway configuration (YAML)
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// One-command demo: local cluster + gateway + CA + a certificate for you
    Dev(DevArgs),
    /// Serve the local Kubernetes API emulator (for tests, demos and kubectl)
    Devcluster(DevclusterArgs),
    /// Certificates
    #[command(subcommand)]
    Cert(Box<CertCommand>),
    /// Policies
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Session recordings, offline (no server needed)
    #[command(subcommand)]
    Recordings(RecordingsCommand),
    /// Replay a recorded session in the terminal
    Replay(ReplayArgs),
}

#[derive(Debug, Subcommand)]
pub enum RecordingsCommand {
    /// List recorded sessions
    List(ListArgs),
    /// Check the audit chain and every recording against its metadata (exit 1 on a problem)
    Verify {
        /// The recordings directory
        #[arg(long, value_name = "DIR")]
        recordings: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// The recordings directory
    #[arg(long, value_name = "DIR")]
    pub recordings: PathBuf,
    /// Only this identity (certificate key id)
    #[arg(long)]
    pub identity: Option<String>,
    /// Only this NAMESPACE or NAMESPACE/POD
    #[arg(long)]
    pub target: Option<String>,
    /// Only this action (exec, shell, logs, port-forward)
    #[arg(long)]
    pub action: Option<String>,
    /// Only sessions started within this long ago (e.g. 2h) or since an RFC 3339 time
    #[arg(long)]
    pub since: Option<String>,
    #[arg(long)]
    pub incident: Option<String>,
    /// Only sessions that ended for this reason (exited, client closed, incomplete, ...)
    #[arg(long)]
    pub end_reason: Option<String>,
    /// JSON (one metadata object per line) instead of a table
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// Session id (or a unique prefix of it)
    pub session: String,
    /// The recordings directory
    #[arg(long, value_name = "DIR")]
    pub recordings: PathBuf,
    /// Playback speed
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
    /// Longest pause kept, e.g. 2s
    #[arg(long)]
    pub idle_limit: Option<humantime::Duration>,
    /// Print the output without timing
    #[arg(long)]
    pub cat: bool,
}

#[derive(Debug, clap::Args)]
pub struct DevArgs {
    /// Where the gateway listens (loopback only)
    #[arg(long, default_value = "127.0.0.1:2222")]
    pub listen: SocketAddr,
    /// State directory (CA, keys, certificate, kubeconfig, ssh_config, policy, recordings)
    #[arg(long, value_name = "DIR", default_value = ".podgate-dev")]
    pub state: PathBuf,
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

#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// Sign a scoped, short-lived OpenSSH user certificate
    Issue(IssueArgs),
}

#[derive(Debug, clap::Args)]
pub struct IssueArgs {
    /// The CA private key (OpenSSH format)
    #[arg(long, value_name = "FILE")]
    pub ca: PathBuf,
    /// The user's public key; the certificate is written beside it as NAME-cert.pub
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// Identity (key id), e.g. alice@corp.example
    #[arg(long)]
    pub identity: String,
    /// Login name(s) the certificate is valid for (repeatable)
    #[arg(long = "principal", required = true)]
    pub principals: Vec<String>,
    /// Lifetime, e.g. 1h
    #[arg(long, default_value = "1h")]
    pub validity: humantime::Duration,
    /// Longest lifetime this command will sign
    #[arg(long, default_value = "12h")]
    pub max_lifetime: humantime::Duration,
    /// Serial number (default: from --serial-file, else random)
    #[arg(long)]
    pub serial: Option<u64>,
    /// Counter file holding the last serial issued
    #[arg(long, value_name = "FILE")]
    pub serial_file: Option<PathBuf>,
    #[arg(long)]
    pub cluster: Option<String>,
    #[arg(long)]
    pub incident: Option<String>,
    /// Comma list of namespace globs
    #[arg(long)]
    pub namespaces: Option<String>,
    /// Comma list of pod-name globs
    #[arg(long)]
    pub pods: Option<String>,
    /// Comma list from list,logs,exec,shell,port-forward
    #[arg(long)]
    pub actions: Option<String>,
    /// Comma list of CIDRs the client must connect from
    #[arg(long)]
    pub source_address: Option<String>,
    /// A podgate command line that replaces whatever the client asks for
    #[arg(long)]
    pub force_command: Option<String>,
    /// Comma list of groups (policy rules grant to groups)
    #[arg(long)]
    pub groups: Option<String>,
    /// Why access is granted (ticket, incident)
    #[arg(long)]
    pub reason: Option<String>,
    /// Do not permit a PTY
    #[arg(long)]
    pub no_pty: bool,
    /// Do not permit port forwarding
    #[arg(long)]
    pub no_port_forwarding: bool,
    /// Write the certificate here instead of beside the key
    #[arg(long, short = 'o', value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate policy files or directories (exit 1 on any error)
    Check {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Would this request be allowed, and by which rule?
    Explain(ExplainArgs),
}

#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    /// Policy file or directory
    #[arg(long, value_name = "PATH")]
    pub policy: PathBuf,
    /// Comma list of the requester's groups
    #[arg(long, default_value = "")]
    pub groups: String,
    /// The command as typed after `ssh GATEWAY`, e.g. exec payments/api-0 -- ps aux
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}
