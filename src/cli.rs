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
    /// A local, read-only web page for reviewing recordings
    Review(ReviewArgs),
    /// Per-incident gateway pods: open, list, close
    #[command(subcommand)]
    Incident(IncidentCommand),
}

#[derive(Debug, Subcommand)]
pub enum IncidentCommand {
    /// Create (or bring up to date) a gateway pod for an incident, with its Service,
    /// configuration, host key and RoleBindings; prints the SSH endpoint and host key
    Open(Box<OpenArgs>),
    /// Show open incidents with their age and time left
    List {
        #[command(flatten)]
        kube: KubeArgs,
    },
    /// Delete everything `incident open` made for an incident
    Close {
        /// The incident ID
        id: String,
        #[command(flatten)]
        kube: KubeArgs,
    },
}

/// The cluster, chosen as kubectl chooses it.
#[derive(Debug, clap::Args)]
pub struct KubeArgs {
    /// kubeconfig file (default: $KUBECONFIG, then ~/.kube/config)
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Context in the kubeconfig (default: its current context)
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
    /// Namespace the gateway pods live in
    #[arg(long, value_name = "NS", default_value = "podgate")]
    pub gateway_namespace: String,
}

#[derive(Debug, clap::Args)]
pub struct OpenArgs {
    /// The incident ID (certificates must carry incident@podgate=ID)
    pub id: String,
    /// Namespace the incident's responders may debug (repeat for several)
    #[arg(long = "namespace", short = 'n', value_name = "NS", required = true)]
    pub namespaces: Vec<String>,
    /// How long the gateway lives (the pod's activeDeadlineSeconds)
    #[arg(long, value_name = "DURATION", default_value = "2h", value_parser = humantime::parse_duration)]
    pub ttl: std::time::Duration,
    /// User CA public key file (default: user_ca.pub of the installed gateway's ConfigMap
    /// labelled podgate.dev/user-ca=true)
    #[arg(long, value_name = "FILE")]
    pub ca_pub: Option<PathBuf>,
    /// Policy file (default: holders of --group may list, logs, exec and shell in the
    /// incident's namespaces)
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Certificate group the default policy grants to
    #[arg(long, value_name = "GROUP", default_value = "incident-responders")]
    pub group: String,
    /// ClusterRole the incident's Kubernetes group gets in each namespace
    #[arg(long, value_name = "NAME", default_value = "podgate-debug")]
    pub role: String,
    /// How engineers reach the gateway
    #[arg(long, value_enum, default_value = "ClusterIP")]
    pub service_type: crate::incident::ServiceType,
    /// The gateway's cluster name (certificates' cluster@podgate; default: the kubeconfig
    /// context's cluster)
    #[arg(long, value_name = "NAME")]
    pub cluster: Option<String>,
    /// Gateway image
    #[arg(long, value_name = "IMAGE", default_value = concat!("ghcr.io/podgate/podgate:", env!("CARGO_PKG_VERSION")))]
    pub image: String,
    /// Print the objects as YAML instead of creating them (needs --ca-pub; no cluster call)
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub store: IncidentStoreArgs,
    #[command(flatten)]
    pub kube: KubeArgs,
}

/// Where an incident gateway ships its recordings (docs/RECORDINGS-STORE.md).
#[derive(Debug, clap::Args)]
pub struct IncidentStoreArgs {
    /// Ship recordings to this bucket: s3://BUCKET/PREFIX; the incident's go under
    /// PREFIX/ID. Credentials: --store-secret, else workload identity through the pod's
    /// ServiceAccount (see --service-account-annotation)
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
    #[command(flatten)]
    pub location: StoreLocation,
    /// Secret in the gateway namespace whose keys (AWS_ACCESS_KEY_ID,
    /// AWS_SECRET_ACCESS_KEY, optionally AWS_SESSION_TOKEN, AWS_REGION) become the pod's
    /// environment; the pod does not start without it. Without this flag the pod relies on
    /// workload identity through its ServiceAccount
    #[arg(long, value_name = "NAME", requires = "store")]
    pub store_secret: Option<String>,
    /// Annotation of the incident's ServiceAccount, e.g. for workload identity
    /// eks.amazonaws.com/role-arn=arn:aws:iam::123456789012:role/podgate (repeatable)
    #[arg(long = "service-account-annotation", value_name = "KEY=VALUE", value_parser = key_value)]
    pub service_account_annotations: Vec<(String, String)>,
}

fn key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))
}

#[derive(Debug, Subcommand)]
pub enum RecordingsCommand {
    /// List recorded sessions
    List(ListArgs),
    /// Check the audit chains and every recording against its metadata (exit 1 on a problem)
    Verify(VerifyArgs),
}

/// Where the recordings are: a directory (`--recordings`) or a bucket (`--store`).
#[derive(Debug, clap::Args)]
pub struct StoreArgs {
    /// Read the recordings from this bucket instead of a directory (s3://BUCKET/PREFIX);
    /// credentials from the AWS_* environment variables or instance metadata
    #[arg(long, value_name = "URL", conflicts_with = "recordings")]
    pub store: Option<String>,
    #[command(flatten)]
    pub location: StoreLocation,
}

/// How to reach the bucket of `--store`, for the offline tools and `incident open` alike.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct StoreLocation {
    /// S3-compatible server, e.g. https://minio.example:9000
    #[arg(long, value_name = "URL", requires = "store")]
    pub store_endpoint: Option<String>,
    /// Region of the bucket (default: AWS_REGION, AWS_DEFAULT_REGION, else us-east-1)
    #[arg(long, value_name = "REGION", requires = "store")]
    pub store_region: Option<String>,
    /// Path-style requests (ENDPOINT/BUCKET/KEY), for most S3-compatible servers
    #[arg(long, requires = "store")]
    pub store_path_style: bool,
    /// Allow a plain-HTTP --store-endpoint
    #[arg(long, requires = "store")]
    pub store_allow_http: bool,
}

impl StoreLocation {
    /// Whether any of the options was given.
    pub fn any(&self) -> bool {
        self.store_endpoint.is_some()
            || self.store_region.is_some()
            || self.store_path_style
            || self.store_allow_http
    }
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The recordings directory
    #[arg(long, value_name = "DIR", required_unless_present = "store")]
    pub recordings: Option<PathBuf>,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// The recordings directory
    #[arg(long, value_name = "DIR", required_unless_present = "store")]
    pub recordings: Option<PathBuf>,
    #[command(flatten)]
    pub store: StoreArgs,
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
pub struct ReviewArgs {
    /// The recordings directory (re-read as it changes)
    #[arg(long, value_name = "DIR", required_unless_present = "store")]
    pub recordings: Option<PathBuf>,
    #[command(flatten)]
    pub store: StoreArgs,
    /// Where to serve the page (loopback unless --allow-remote)
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,
    /// Serve on a non-loopback address (the recordings become readable from the network)
    #[arg(long)]
    pub allow_remote: bool,
}

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// Session id (or a unique prefix of it)
    pub session: String,
    /// The recordings directory
    #[arg(long, value_name = "DIR", required_unless_present = "store")]
    pub recordings: Option<PathBuf>,
    #[command(flatten)]
    pub store: StoreArgs,
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
    /// Where the review page of the recordings listens (loopback only)
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8088")]
    pub review_listen: SocketAddr,
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
