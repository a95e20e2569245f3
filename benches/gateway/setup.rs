//! The files every process of the benchmark is started with: keys and certificates made by
//! the real `ssh-keygen`, the devcluster fixture, the policy, the gateway configurations,
//! the sshd configuration, `known_hosts`; and the `ssh` and `kubectl` command lines, built
//! the same way for every path so that only the server differs.
//!
//! Everything lives in one temporary directory under `target/tmp` (a real disk, not tmpfs,
//! so that recordings cost what they cost in production), removed when `Setup` is dropped.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::process::Command;

use super::procs::within;
use super::sshd;

/// The SSH user (a principal of the certificate) the gateway paths log in as.
pub const GW_USER: &str = "bench";
pub const NAMESPACE: &str = "payments";
pub const POD: &str = "payments-api-0";
pub const POD_PORT: u16 = 9000;

pub struct Setup {
    pub dir: tempfile::TempDir,
    pub user_key: PathBuf,
    /// Carries `critical:cluster@podgate=bench`, which OpenSSH's sshd would reject as an
    /// unknown critical option; hence a second certificate for the baseline.
    pub cert_gw: PathBuf,
    pub cert_sshd: PathBuf,
    pub known_hosts: PathBuf,
    pub host_pub: String,
    pub kubeconfig: PathBuf,
    pub fixture: PathBuf,
    pub sshd_config: PathBuf,
    /// The local account the sshd baseline logs in as (the current user).
    pub local_user: String,
}

/// Bounds the gateways are configured with (P4 holds this many at once).
pub struct Capacity {
    pub sessions: usize,
    pub idle: usize,
}

async fn keygen(args: &[&str]) -> Result<()> {
    let mut cmd = Command::new("ssh-keygen");
    cmd.args(args).stdin(Stdio::null()).kill_on_drop(true);
    let out = within(Duration::from_secs(30), "ssh-keygen", cmd.output())
        .await?
        .context("running ssh-keygen")?;
    if !out.status.success() {
        bail!(
            "ssh-keygen {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn s(p: &Path) -> &str {
    p.to_str().expect("temporary paths are UTF-8")
}

async fn current_user() -> Result<String> {
    let mut cmd = Command::new("id");
    cmd.arg("-un").stdin(Stdio::null()).kill_on_drop(true);
    let out = within(Duration::from_secs(10), "id -un", cmd.output())
        .await?
        .context("running id -un")?;
    let name = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !out.status.success() || name.is_empty() {
        bail!("cannot tell the current user's name (id -un)");
    }
    Ok(name)
}

impl Setup {
    /// Keys, certificates, fixture (port 9000 served by the harness's source on
    /// `source_port`), policy and the sshd configuration.
    pub async fn create(source_port: u16) -> Result<Setup> {
        let tmp = env!("CARGO_TARGET_TMPDIR");
        std::fs::create_dir_all(tmp).with_context(|| format!("creating {tmp}"))?;
        let dir = tempfile::Builder::new()
            .prefix("bench-gateway-")
            .tempdir_in(tmp)
            .with_context(|| format!("creating a temporary directory in {tmp}"))?;
        let p = |n: &str| dir.path().join(n);
        for (name, comment) in [("ca", "user-ca"), ("host", "host"), ("user", "bench")] {
            keygen(&[
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                comment,
                "-f",
                s(&p(name)),
            ])
            .await?;
        }
        let local_user = current_user().await?;
        let principals = format!("{GW_USER},{local_user}");
        let ca = p("ca");
        let mut certs = Vec::new();
        for (name, serial, critical) in [
            ("gw", "1", Some("critical:cluster@podgate=bench")),
            ("sshd", "2", None),
        ] {
            let pub_path = p(&format!("{name}.pub"));
            std::fs::copy(p("user.pub"), &pub_path).context("copying the user key")?;
            let mut args = vec![
                "-q",
                "-s",
                s(&ca),
                "-I",
                "bench@podgate",
                "-n",
                principals.as_str(),
                "-V",
                "-5m:+3h",
                "-z",
                serial,
                "-O",
                "extension:groups@podgate=sre",
                "-O",
                "permit-pty",
                "-O",
                "permit-port-forwarding",
            ];
            if let Some(c) = critical {
                args.extend(["-O", c]);
            }
            args.push(s(&pub_path));
            keygen(&args).await?;
            certs.push(p(&format!("{name}-cert.pub")));
        }
        std::fs::create_dir(p("policy"))?;
        std::fs::write(
            p("policy").join("bench.yaml"),
            format!(
                "rules:\n  - name: bench\n    groups: [sre]\n    namespaces: [\"*\"]\n    \
                 actions: [list, logs, exec, shell, port-forward]\n    commands: ['.*']\n    \
                 ports: [{POD_PORT}]\n    impersonate_groups: [\"jit:debug\"]\n"
            ),
        )?;
        std::fs::write(
            p("fixture.yaml"),
            format!(
                "namespaces:\n  - name: {NAMESPACE}\n    pods:\n      - name: {POD}\n        \
                 containers:\n          - name: api\n            ports:\n              \
                 - {{port: {POD_PORT}, serve: \"127.0.0.1:{source_port}\"}}\n"
            ),
        )?;
        std::fs::write(p("principals"), format!("{GW_USER}\n{local_user}\n"))?;
        std::fs::write(
            p("sshd_config"),
            sshd::config_text(&p("host"), &p("ca.pub"), &p("principals")),
        )?;
        let host_pub = std::fs::read_to_string(p("host.pub"))?.trim().to_owned();
        std::fs::write(p("known_hosts"), "")?;
        Ok(Setup {
            user_key: p("user"),
            cert_gw: certs[0].clone(),
            cert_sshd: certs[1].clone(),
            known_hosts: p("known_hosts"),
            host_pub,
            kubeconfig: p("kubeconfig.yaml"),
            fixture: p("fixture.yaml"),
            sshd_config: p("sshd_config"),
            local_user,
            dir,
        })
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Write the configuration `NAME.yaml` of a gateway recording into `rec-NAME/`.
    /// Returns (configuration, recordings directory).
    pub fn gateway_config(&self, name: &str, cap: &Capacity) -> Result<(PathBuf, PathBuf)> {
        let config = self.path(&format!("{name}.yaml"));
        let recordings = self.path(&format!("rec-{name}"));
        let text = format!(
            "listen: 127.0.0.1:0\nhost_key: {host}\ntrusted_user_ca_keys: [{ca}]\ncluster: bench\n\
             policy: {policy}\nrecordings: {rec}\nkubeconfig: {kube}\nkube_context: gateway\n\
             limits:\n  max_connections: {conns}\n  max_unauthenticated: 1024\n  \
             max_unauthenticated_per_source: 1024\n  max_sessions_per_identity: {sessions}\n  \
             max_channels: 100\n",
            host = s(&self.path("host")),
            ca = s(&self.path("ca.pub")),
            policy = s(&self.path("policy")),
            rec = s(&recordings),
            kube = s(&self.kubeconfig),
            conns = cap.idle.max(cap.sessions) + 1024,
            sessions = cap.sessions + 1024,
        );
        std::fs::write(&config, text).with_context(|| format!("writing {}", config.display()))?;
        Ok((config, recordings))
    }

    /// Trust the common host key on 127.0.0.1:`port` (every server here uses it).
    pub fn trust(&self, port: u16) -> Result<()> {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.known_hosts)?;
        writeln!(f, "[127.0.0.1]:{port} {}", self.host_pub)?;
        Ok(())
    }

    /// `ssh` with the settings every path shares; `options` go before the destination,
    /// `remote` after it.
    pub fn ssh(
        &self,
        port: u16,
        gateway: bool,
        cipher: &str,
        options: &[String],
        remote: &[&str],
    ) -> Command {
        let (cert, user) = if gateway {
            (&self.cert_gw, GW_USER)
        } else {
            (&self.cert_sshd, self.local_user.as_str())
        };
        let mut cmd = Command::new("ssh");
        cmd.args(["-F", "/dev/null", "-i"])
            .arg(&self.user_key)
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
            .args([
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "ControlMaster=no",
                "-o",
                "KexAlgorithms=curve25519-sha256",
                "-c",
                cipher,
                "-p",
            ])
            .arg(port.to_string())
            .args(options)
            .arg(format!("{user}@127.0.0.1"))
            .args(remote)
            .env("HOME", self.dir.path())
            .kill_on_drop(true);
        cmd
    }

    /// `kubectl` against the devcluster as its admin.
    pub fn kubectl(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("kubectl");
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(["--context", "admin"])
            .args(args)
            .env("HOME", self.dir.path())
            .env_remove("KUBECONFIG")
            .kill_on_drop(true);
        cmd
    }
}
