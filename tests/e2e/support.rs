//! Shared test fixtures: an in-process devcluster on 127.0.0.1:0, and helpers to run
//! commands with a deadline.

use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::time::Duration;

use podgate::devcluster::{self, Fixture, Options};
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

/// The deadline of any single command or wait in these tests.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// A fixture with fast heartbeats so that `logs -f` tests finish quickly.
pub const TEST_FIXTURE: &str = r#"
namespaces:
  - name: payments
    pods:
      - name: payments-api-0
        labels: {app: payments-api}
        containers:
          - name: api
            ports:
              - {port: 8080, serve: http}
              - {port: 9000, serve: echo}
            logs: ["starting payments-api", "listening on :8080"]
            log_every: 150ms
      - name: payments-batch-0
        labels: {app: payments-batch}
        containers:
          - name: batch
            logs: ["one", "two", "three", "four"]
      - name: payments-worker-0
        labels: {app: payments-worker}
        annotations: {kubectl.kubernetes.io/default-container: worker}
        containers:
          - name: worker
            logs: ["worker up"]
          - name: metrics
            logs: ["metrics up"]
  - name: checkout
    pods:
      - name: checkout-web-0
        labels: {app: checkout-web}
        containers:
          - name: web
            logs: ["web up"]
  - name: podgate
"#;

pub struct TestCluster {
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
    pub audit_log: PathBuf,
    shutdown: CancellationToken,
}

impl TestCluster {
    /// Start a devcluster with the test fixture and the built-in demo RBAC.
    pub async fn start() -> TestCluster {
        Self::start_serving(Vec::new()).await
    }

    /// Start a devcluster with the test fixture and the RBAC objects of `paths` (read as
    /// they are, like `podgate devcluster --rbac FILE`) instead of the demo RBAC.
    pub async fn start_with_rbac(paths: &[PathBuf]) -> TestCluster {
        let rbac_files = paths
            .iter()
            .map(|p| {
                let text = std::fs::read_to_string(p)
                    .unwrap_or_else(|e| panic!("reading {}: {e}", p.display()));
                (p.display().to_string(), text)
            })
            .collect();
        Self::start_serving(rbac_files).await
    }

    /// `rbac_files` empty: the built-in demo RBAC.
    async fn start_serving(rbac_files: Vec<(String, String)>) -> TestCluster {
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig.yaml");
        let audit_log = dir.path().join("audit.jsonl");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let opts = Options {
            state_dir: dir.path().join("state"),
            fixture: Fixture::parse("test fixture", TEST_FIXTURE).unwrap(),
            rbac_files,
            audit_log: Some(audit_log.clone()),
            kubeconfig_out: Some(kubeconfig.clone()),
        };
        let prepared = devcluster::prepare(opts, addr, shutdown.clone())
            .unwrap_or_else(|e| panic!("the devcluster refused its fixture or RBAC files: {e}"));
        tokio::spawn(devcluster::serve(listener, prepared));
        TestCluster {
            dir,
            kubeconfig,
            audit_log,
            shutdown,
        }
    }

    /// `kubectl --kubeconfig K` with a discovery cache and HOME of this test's own.
    pub fn kubectl(&self) -> tokio::process::Command {
        let mut c = tokio::process::Command::new("kubectl");
        c.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.dir.path().join("kube-cache"))
            .env("HOME", self.dir.path())
            .env_remove("KUBECONFIG")
            .env_remove("KUBECTL_REMOTE_COMMAND_WEBSOCKETS")
            .kill_on_drop(true);
        c
    }

    /// Every audit event written so far.
    pub fn audit_events(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.audit_log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// A kube-rs client for a context of the kubeconfig (`admin` or `gateway`).
    pub async fn kube_client(&self, context: &str) -> kube::Client {
        let kc = kube::config::Kubeconfig::read_from(&self.kubeconfig).unwrap();
        let opts = kube::config::KubeConfigOptions {
            context: Some(context.to_owned()),
            ..Default::default()
        };
        let config = kube::Config::from_custom_kubeconfig(kc, &opts)
            .await
            .unwrap();
        kube::Client::try_from(config).unwrap()
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Run a command to completion with optional stdin, under the test deadline.
pub async fn run(mut cmd: tokio::process::Command, stdin: Option<&[u8]>) -> Output {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    let mut child = cmd.spawn().expect("spawn");
    // Stdin is written while the output is read: a command that echoes (a forwarded echo
    // port) would otherwise fill its output pipe and stop reading its input.
    let writer = child.stdin.take();
    let input = stdin.map(<[u8]>::to_vec);
    let feed = tokio::spawn(async move {
        if let (Some(mut w), Some(input)) = (writer, input) {
            let _ = w.write_all(&input).await;
        }
    });
    let out = tokio::time::timeout(DEADLINE, child.wait_with_output())
        .await
        .expect("command timed out")
        .expect("command failed to run");
    feed.abort();
    out
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The podgate binary under test, with `args`.
pub fn podgate(args: &[&str]) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_podgate"));
    c.args(args).kill_on_drop(true);
    c
}

/// `asciinema cat FILE` under a pseudo-terminal (Debian's asciinema insists on one):
/// Ok(its stdout) if it read the file, Err(what it printed) if not. Blocking, so that it
/// also works from a `Drop`.
pub fn asciinema_cat(cast: &std::path::Path) -> Result<String, String> {
    let out = std::process::Command::new("script")
        .args([
            "-qec",
            &format!("asciinema cat {}", cast.display()),
            "/dev/null",
        ])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run script/asciinema: {e}"))?;
    if out.status.success() {
        Ok(text(&out.stdout))
    } else {
        Err(format!("{}{}", text(&out.stdout), text(&out.stderr)))
    }
}

/// Every `.cast` under a recordings directory.
pub fn casts(root: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for day in std::fs::read_dir(root).into_iter().flatten().flatten() {
        for f in std::fs::read_dir(day.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if f.path().extension().is_some_and(|e| e == "cast") {
                out.push(f.path());
            }
        }
    }
    out
}

/// `podgate recordings verify --recordings ROOT`.
pub async fn recordings_verify(root: &std::path::Path) -> Output {
    let root = root.to_str().unwrap();
    run(
        podgate(&["recordings", "verify", "--recordings", root]),
        None,
    )
    .await
}

/// The resident set size of process `pid`, in bytes (from /proc).
pub fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}
