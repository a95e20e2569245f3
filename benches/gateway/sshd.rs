//! The OpenSSH baseline: `/usr/sbin/sshd` in inetd mode, one process per connection.
//!
//! The harness binds 127.0.0.1:0 itself and hands each accepted socket to
//! `sshd -i -e -f CONFIG` as stdin and stdout. A listening sshd forks and re-executes
//! itself for every connection anyway, so the per-connection work is the same; this way no
//! fixed port is needed and there is no race for one. Each `sshd -i` is a child of the
//! harness, so its CPU time (and that of the session it runs) shows up in
//! `RUSAGE_CHILDREN` once it is reaped: `wait_idle` waits for that, bounded.
//!
//! Not covered: sshd's own listener (accept, MaxStartups), which the gateway's figures do
//! include; it is a few system calls per connection.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::net::TcpListener;
use tokio::process::Command;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::procs::{log_tail, within};

pub const SSHD: &str = "/usr/sbin/sshd";

pub struct Sshd {
    pub port: u16,
    /// `sshd -i` processes not yet reaped.
    active: watch::Receiver<usize>,
    acceptor: tokio::task::JoinHandle<()>,
    pub log: PathBuf,
}

/// The sshd configuration of the baseline: the same user CA, ciphers and key exchange the
/// gateway offers, login as the current user with a certificate only.
///
/// `SetEnv SHLVL=1`: sshd runs commands through the login shell, and Debian's bash reads
/// `~/.bashrc` when sshd starts it as a top-level shell (`SHLVL` below 2). What that file
/// does is a cost of the account, not of sshd (on the development machine root's runs
/// `pyenv init`, about 160 ms), and the gateway path starts no shell at all.
pub fn config_text(host_key: &Path, ca_pub: &Path, principals: &Path) -> String {
    format!(
        "HostKey {}\nTrustedUserCAKeys {}\nAuthorizedPrincipalsFile {}\nAuthorizedKeysFile none\n\
         PermitRootLogin yes\nUsePAM no\nStrictModes no\nPidFile none\nAllowTcpForwarding yes\n\
         PubkeyAuthentication yes\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
         Ciphers chacha20-poly1305@openssh.com,aes128-gcm@openssh.com,aes256-gcm@openssh.com\n\
         KexAlgorithms curve25519-sha256,sntrup761x25519-sha512@openssh.com\n\
         MaxSessions 100\nSetEnv SHLVL=1\nLogLevel ERROR\n",
        host_key.display(),
        ca_pub.display(),
        principals.display()
    )
}

impl Sshd {
    pub async fn start(config: &Path, log: &Path) -> Result<Sshd> {
        // sshd refuses to run without its privilege separation directory; Debian's
        // packaging creates it only when the service starts, which a container never does.
        let run = Path::new("/run/sshd");
        if !run.is_dir() {
            std::fs::create_dir_all(run).context("creating /run/sshd for sshd")?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(run, std::fs::Permissions::from_mode(0o755))
                .context("chmod /run/sshd")?;
        }
        let mut test = Command::new(SSHD);
        test.arg("-t")
            .arg("-f")
            .arg(config)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let out = within(Duration::from_secs(20), "sshd -t", test.output())
            .await?
            .with_context(|| format!("running {SSHD} -t"))?;
        if !out.status.success() {
            bail!(
                "{SSHD} -t -f {} refused the configuration: {}",
                config.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the sshd baseline's port")?;
        let port = listener.local_addr()?.port();
        let (tx, active) = watch::channel(0usize);
        let config = config.to_owned();
        let log_path = log.to_owned();
        std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let acceptor = tokio::spawn(async move {
            // Owning the per-connection tasks here means aborting the acceptor drops them,
            // and with them (kill_on_drop) every sshd still running.
            let mut sessions = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        match spawn_sshd(stream, &config, &log_path) {
                            Ok(mut child) => {
                                tx.send_modify(|n| *n += 1);
                                let tx = tx.clone();
                                sessions.spawn(async move {
                                    let _ = child.wait().await;
                                    tx.send_modify(|n| *n -= 1);
                                });
                            }
                            Err(e) => {
                                use std::io::Write;
                                if let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(&log_path) {
                                    let _ = writeln!(f, "harness: cannot start sshd -i: {e:#}");
                                }
                            }
                        }
                    }
                    Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
                }
            }
        });
        Ok(Sshd {
            port,
            active,
            acceptor,
            log: log.to_owned(),
        })
    }

    /// Wait until every `sshd -i` has exited and been reaped.
    pub async fn wait_idle(&mut self, limit: Duration) -> Result<()> {
        let waited = within(
            limit,
            "the sshd -i processes to exit",
            self.active.wait_for(|n| *n == 0),
        )
        .await;
        match waited {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => bail!(
                "the sshd acceptor stopped; log:\n{}",
                log_tail(&self.log, 2000)
            ),
            Err(e) => Err(e),
        }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

fn spawn_sshd(
    stream: tokio::net::TcpStream,
    config: &Path,
    log: &Path,
) -> Result<tokio::process::Child> {
    let std = stream.into_std()?;
    // What inetd hands over: a blocking socket (the flag is shared by both descriptors).
    std.set_nonblocking(false)?;
    let out: OwnedFd = std.try_clone()?.into();
    let inp: OwnedFd = std.into();
    let err = std::fs::OpenOptions::new().append(true).open(log)?;
    let child = Command::new(SSHD)
        .arg("-i")
        .arg("-e")
        .arg("-f")
        .arg(config)
        .stdin(Stdio::from(inp))
        .stdout(Stdio::from(out))
        .stderr(err)
        .kill_on_drop(true)
        .spawn()?;
    Ok(child)
}
