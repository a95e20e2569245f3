//! A gateway for the tests: in-process, on 127.0.0.1:0, against a devcluster (or the real
//! cluster named by `PODGATE_E2E_KUBECONFIG`, in which case the devcluster audit
//! assertions are skipped), with a user CA, keys and certificates made by the real
//! `ssh-keygen`, and the real `ssh` client to talk to it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Output;

use podgate::{config, load, server};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::support::{TestCluster, asciinema_cat, casts, run, text};

/// The policy most gateway tests run with.
pub const TEST_POLICY: &str = r#"
rules:
  - name: payments-oncall
    groups: [oncall-payments]
    namespaces: [payments]
    pods: ["payments-*"]
    actions: [list, logs, exec]
    commands:
      - 'echo( [-a-zA-Z0-9_.]+)*'
      - 'wc -l'
      - 'cat'
      - 'ls( [-/a-z]+)*'
      - 'tty'
      - 'stty size'
      - 'true'
    deny_commands: ['.*\.\..*']
    impersonate_groups: ["jit:oncall:payments"]
    max_session: 30m
  - name: sre-shell
    groups: [sre]
    namespaces: ["*"]
    actions: [list, logs, exec, shell]
    commands: ['.*']
    shell: /bin/sh
    impersonate_groups: ["jit:debug"]
"#;

pub struct TestGateway {
    pub cluster: TestCluster,
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
    pub ca: PathBuf,
    pub key: PathBuf,
    pub known_hosts: PathBuf,
    pub audit: PathBuf,
    shutdown: CancellationToken,
}

/// Run `ssh-keygen` with `args`, asserting success.
pub async fn keygen(args: &[&str]) -> Output {
    let mut cmd = tokio::process::Command::new("ssh-keygen");
    cmd.args(args);
    let out = run(cmd, None).await;
    assert!(
        out.status.success(),
        "ssh-keygen {args:?}: {}",
        text(&out.stderr)
    );
    out
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

impl TestGateway {
    pub async fn start() -> TestGateway {
        Self::start_with(TEST_POLICY, "").await
    }

    /// A gateway with `policy` and extra configuration lines.
    pub async fn start_with(policy: &str, extra_config: &str) -> TestGateway {
        let cluster = TestCluster::start().await;
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        keygen(&[
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "user-ca",
            "-f",
            s(&p("ca")),
        ])
        .await;
        keygen(&[
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "host",
            "-f",
            s(&p("host")),
        ])
        .await;
        keygen(&[
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "alice",
            "-f",
            s(&p("user")),
        ])
        .await;
        std::fs::create_dir(p("policy")).unwrap();
        std::fs::write(p("policy").join("test.yaml"), policy).unwrap();
        let kubeconfig = std::env::var("PODGATE_E2E_KUBECONFIG")
            .unwrap_or_else(|_| s(&cluster.kubeconfig).to_owned());
        let config_text = format!(
            "listen: 127.0.0.1:0\nhost_key: host\ntrusted_user_ca_keys: [ca.pub]\ncluster: test\npolicy: policy\n\
             recordings: recordings\nkubeconfig: {kubeconfig}\nkube_context: gateway\n{extra_config}"
        );
        let config_path = p("config.yaml");
        std::fs::write(&config_path, &config_text).unwrap();
        let config = config::Config::parse(&config_path, &config_text).unwrap();
        let loaded = load::gateway(&config).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let host_pub = std::fs::read_to_string(p("host.pub")).unwrap();
        std::fs::write(
            p("known_hosts"),
            format!("[127.0.0.1]:{} {host_pub}", addr.port()),
        )
        .unwrap();
        let shutdown = CancellationToken::new();
        tokio::spawn(server::run(
            listener,
            loaded.gateway,
            loaded.ssh,
            shutdown.clone(),
        ));
        TestGateway {
            cluster,
            addr,
            ca: p("ca"),
            key: p("user"),
            known_hosts: p("known_hosts"),
            audit: p("recordings").join("audit.jsonl"),
            dir,
            shutdown,
        }
    }

    /// Sign a certificate for the test user key with `ssh-keygen -s` and `args`
    /// (e.g. `-I alice -n alice -V +1h -z 7 -O extension:groups@podgate=...`).
    /// Returns the certificate path.
    pub async fn sign(&self, name: &str, args: &[&str]) -> PathBuf {
        let pub_path = self.dir.path().join(format!("{name}.pub"));
        std::fs::copy(self.key.with_extension("pub"), &pub_path).unwrap();
        let mut all: Vec<&str> = vec!["-q", "-s", s(&self.ca)];
        all.extend_from_slice(args);
        all.push(s(&pub_path));
        keygen(&all).await;
        self.dir.path().join(format!("{name}-cert.pub"))
    }

    /// The usual certificate: alice, groups oncall-payments, cluster test, 1 hour.
    pub async fn alice(&self) -> PathBuf {
        self.sign(
            "alice",
            &[
                "-I",
                "alice@corp.example",
                "-n",
                "alice",
                "-V",
                "-1m:+1h",
                "-z",
                "7",
                "-O",
                "extension:groups@podgate=oncall-payments",
                "-O",
                "critical:cluster@podgate=test",
            ],
        )
        .await
    }

    /// An SRE certificate: sam, group sre (the policy's shell rule), cluster test, 1 hour.
    pub async fn sre(&self) -> PathBuf {
        self.sign(
            "sre",
            &[
                "-I",
                "sam@corp.example",
                "-n",
                "sam",
                "-V",
                "-1m:+1h",
                "-z",
                "9",
                "-O",
                "extension:groups@podgate=sre",
                "-O",
                "critical:cluster@podgate=test",
            ],
        )
        .await
    }

    /// `ssh` to the gateway as `login` with certificate `cert`, running `args`.
    pub fn ssh(&self, cert: &Path, login: &str, args: &[&str]) -> tokio::process::Command {
        self.ssh_to(self.addr.port(), cert, login, args)
    }

    /// `ssh` as [`Self::ssh`], to another gateway on `port` with the same host key (see
    /// [`Self::trust_port`]).
    pub fn ssh_to(
        &self,
        port: u16,
        cert: &Path,
        login: &str,
        args: &[&str],
    ) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new("ssh");
        cmd.args(["-F", "/dev/null", "-p"])
            .arg(port.to_string())
            .arg("-i")
            .arg(&self.key)
            .arg("-o")
            .arg(format!("CertificateFile={}", cert.display()))
            .args([
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "IdentityAgent=none",
                "-o",
                "BatchMode=yes",
                "-o",
                "LogLevel=ERROR",
            ])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", self.known_hosts.display()))
            .args(["-o", "StrictHostKeyChecking=yes"])
            .arg(format!("{login}@127.0.0.1"))
            .args(args)
            .env("HOME", self.dir.path())
            .kill_on_drop(true);
        cmd
    }

    /// Trust this gateway's host key on `port` too (for a second gateway process).
    pub fn trust_port(&self, port: u16) {
        use std::io::Write;
        let host_pub = std::fs::read_to_string(self.dir.path().join("host.pub")).unwrap();
        let mut known = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.known_hosts)
            .unwrap();
        write!(known, "[127.0.0.1]:{port} {host_pub}").unwrap();
    }

    /// The gateway's audit events.
    pub fn events(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.audit)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// devcluster audit events that reached a pod (exec, log, portforward), or None when
    /// running against an external cluster.
    pub fn pod_calls(&self) -> Option<Vec<Value>> {
        if std::env::var("PODGATE_E2E_KUBECONFIG").is_ok() {
            return None;
        }
        Some(
            self.cluster
                .audit_events()
                .into_iter()
                .filter(|e| {
                    matches!(
                        e["objectRef"]["subresource"].as_str(),
                        Some("exec" | "log" | "portforward")
                    )
                })
                .collect(),
        )
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if std::thread::panicking() {
            return;
        }
        // Every recording a test produced must play in the real asciinema.
        for cast in casts(&self.dir.path().join("recordings")) {
            if let Err(why) = asciinema_cat(&cast) {
                panic!("asciinema cannot read {}: {why}", cast.display());
            }
        }
    }
}

/// The real `podgate serve` binary running `config`, with the addresses it printed.
pub struct ServeProcess {
    pub child: tokio::process::Child,
    pub ssh_port: u16,
    /// `metrics_listen`'s bound address, when the configuration has one.
    pub metrics: Option<SocketAddr>,
    /// What the process wrote to stderr (its log).
    pub stderr_log: PathBuf,
}

impl ServeProcess {
    /// Start `podgate serve --config CONFIG` and wait (bounded) until it serves; with
    /// `metrics`, also until it prints its metrics address.
    pub async fn start(config: &Path, metrics: bool) -> ServeProcess {
        Self::spawn(config, metrics, None, |_| {}).await
    }

    /// As [`Self::start`], with `setup` applied to the command first (its environment).
    pub async fn start_with(
        config: &Path,
        metrics: bool,
        setup: impl FnOnce(&mut tokio::process::Command),
    ) -> ServeProcess {
        Self::spawn(config, metrics, None, setup).await
    }

    /// As [`Self::start`], with every file the process writes limited to `max_file_size`
    /// bytes (RLIMIT_FSIZE; SIGXFSZ ignored, so a write past it fails with EFBIG as on a
    /// full disk).
    pub async fn start_limited(config: &Path, metrics: bool, max_file_size: u64) -> ServeProcess {
        Self::spawn(config, metrics, Some(max_file_size), |_| {}).await
    }

    async fn spawn(
        config: &Path,
        metrics: bool,
        max_file_size: Option<u64>,
        setup: impl FnOnce(&mut tokio::process::Command),
    ) -> ServeProcess {
        use tokio::io::AsyncBufReadExt;
        let mut cmd = super::support::podgate(&["serve", "--config", s(config)]);
        setup(&mut cmd);
        // Its log goes to a file beside the configuration, for tests to look into.
        let stderr_log = config.with_extension("stderr.log");
        let log = std::fs::File::create(&stderr_log).unwrap();
        cmd.stdout(std::process::Stdio::piped()).stderr(log);
        if let Some(limit) = max_file_size {
            // SAFETY: between fork and exec only async-signal-safe calls are made.
            unsafe {
                cmd.pre_exec(move || {
                    libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                    let rlimit = libc::rlimit {
                        rlim_cur: limit,
                        rlim_max: limit,
                    };
                    if libc::setrlimit(libc::RLIMIT_FSIZE, &rlimit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = cmd.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let mut addrs = Vec::new();
        let wanted = if metrics { 2 } else { 1 };
        let prefixes = ["podgate: serving on ", "podgate: metrics on "];
        while addrs.len() < wanted {
            let line = tokio::time::timeout(super::support::DEADLINE, lines.next_line())
                .await
                .expect("the gateway printed its address in time")
                .unwrap()
                .expect("the gateway exited before serving");
            if let Some(addr) = line.strip_prefix(prefixes[addrs.len()]) {
                addrs.push(addr.parse::<SocketAddr>().unwrap());
            }
        }
        let ssh_port = addrs[0].port();
        let metrics = addrs.get(1).copied();
        ServeProcess {
            child,
            ssh_port,
            metrics,
            stderr_log,
        }
    }
}
