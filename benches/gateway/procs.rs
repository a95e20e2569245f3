//! Child processes and what they cost: the long-running servers (devcluster, gateways),
//! bounded waiting, CPU time from `/proc/PID/stat` and `getrusage`, memory from
//! `/proc/PID/status` and `smaps_rollup`.
//!
//! Every child is spawned with `kill_on_drop`, so a run that fails half-way leaves nothing
//! behind; `Server::stop` also waits for it (bounded), so that nothing still writes into a
//! temporary directory that is about to be removed. A server that exits on its own is an
//! error the next time it is checked (`ensure_running`), with the end of its log.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use tokio::io::AsyncBufReadExt;
use tokio::process::{Child, Command};

/// Await `f`, or fail naming `what` after `limit`.
pub async fn within<T>(limit: Duration, what: &str, f: impl Future<Output = T>) -> Result<T> {
    tokio::time::timeout(limit, f)
        .await
        .map_err(|_| anyhow!("timed out after {limit:?}: {what}"))
}

/// The last `n` bytes of a log file, for error messages.
pub fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let start = text.len().saturating_sub(n);
    String::from_utf8_lossy(&text[start..]).into_owned()
}

/// A long-running child that announced its address on stdout.
pub struct Server {
    pub name: String,
    pub child: Child,
    pub pid: u32,
    pub addr: SocketAddr,
    pub log: PathBuf,
}

impl Server {
    /// Spawn `cmd` (stderr to `log`), read stdout until a line starting with `prefix`,
    /// parse the address after it (up to the first space, an `https://` removed), and keep
    /// reading and discarding stdout afterwards so the child never blocks on a full pipe.
    pub async fn start(name: &str, mut cmd: Command, prefix: &str, log: &Path) -> Result<Server> {
        let err = std::fs::File::create(log)
            .with_context(|| format!("creating the log {}", log.display()))?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(err)
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting the {name}"))?;
        let pid = child.id().context("the child has no pid")?;
        let stdout = child.stdout.take().context("no stdout pipe")?;
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let addr = within(
            Duration::from_secs(60),
            &format!("the {name} to start"),
            async {
                loop {
                    let line = lines.next_line().await?;
                    let Some(line) = line else {
                        bail!(
                            "the {name} exited before serving; its log ends:\n{}",
                            log_tail(log, 2000)
                        );
                    };
                    if let Some(rest) = line.strip_prefix(prefix) {
                        let rest = rest.trim().trim_start_matches("https://");
                        let word = rest.split_whitespace().next().unwrap_or(rest);
                        return word
                            .parse::<SocketAddr>()
                            .with_context(|| format!("the {name} printed a bad address: {line}"));
                    }
                }
            },
        )
        .await??;
        // Not awaited by anyone: it ends when the child's stdout closes.
        tokio::spawn(async move {
            let mut rest = lines.into_inner();
            let _ = tokio::io::copy(&mut rest, &mut tokio::io::sink()).await;
        });
        Ok(Server {
            name: name.to_owned(),
            child,
            pid,
            addr,
            log: log.to_owned(),
        })
    }

    /// Fail if the server has exited.
    pub fn ensure_running(&mut self) -> Result<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => bail!(
                "the {} exited unexpectedly ({status}); its log ends:\n{}",
                self.name,
                log_tail(&self.log, 2000)
            ),
            Err(e) => bail!("checking the {}: {e}", self.name),
        }
    }

    /// Kill and reap (bounded).
    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = within(Duration::from_secs(10), "a killed child", self.child.wait()).await;
    }
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// CPU seconds of `pid` itself (utime + stime) and of its reaped children (cutime +
/// cstime), from `/proc/PID/stat`.
pub fn proc_cpu(pid: u32) -> Result<(f64, f64)> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let rest = text
        .rsplit_once(')')
        .map(|(_, r)| r)
        .with_context(|| format!("{path}: unexpected format"))?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After ")": state is field 3 of proc(5), so field N is f[N - 3].
    let num = |n: usize| -> Result<f64> {
        f.get(n - 3)
            .and_then(|v| v.parse::<f64>().ok())
            .with_context(|| format!("{path}: field {n} missing"))
    };
    let tck = clock_ticks();
    Ok(((num(14)? + num(15)?) / tck, (num(16)? + num(17)?) / tck))
}

/// User + system CPU seconds of `who` (`RUSAGE_SELF` or `RUSAGE_CHILDREN`).
pub fn rusage(who: libc::c_int) -> f64 {
    // SAFETY: getrusage writes into the zeroed struct it is given.
    let mut r: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(who, &mut r) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(r.ru_utime) + tv(r.ru_stime)
}

/// CPU seconds by process, at one instant; subtract two to get a transfer's share.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuTimes {
    /// The gateway process of the path (`None` for paths without one).
    pub gateway: Option<f64>,
    pub devcluster: f64,
    /// The devcluster's reaped children: the pod commands (`cat`).
    pub pod: f64,
    /// The harness's reaped children: ssh, kubectl, and `sshd -i` with its session.
    pub clients: f64,
    /// The harness itself: reading and checking stdout, the port-forward source and the
    /// in-process kube-rs client.
    pub harness: f64,
}

impl CpuTimes {
    pub fn now(gateway: Option<u32>, devcluster: u32) -> Result<CpuTimes> {
        let (dc, pod) = proc_cpu(devcluster)?;
        Ok(CpuTimes {
            gateway: match gateway {
                Some(pid) => Some(proc_cpu(pid)?.0),
                None => None,
            },
            devcluster: dc,
            pod,
            clients: rusage(libc::RUSAGE_CHILDREN),
            harness: rusage(libc::RUSAGE_SELF),
        })
    }

    pub fn since(&self, before: &CpuTimes) -> CpuTimes {
        CpuTimes {
            gateway: self.gateway.zip(before.gateway).map(|(a, b)| a - b),
            devcluster: self.devcluster - before.devcluster,
            pod: self.pod - before.pod,
            clients: self.clients - before.clients,
            harness: self.harness - before.harness,
        }
    }
}

fn kib_field(path: &str, key: &str) -> Result<u64> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    text.lines()
        .find_map(|l| {
            l.strip_prefix(key)
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .with_context(|| format!("{path}: no {key} line"))
}

/// Resident set size of `pid`, KiB.
pub fn rss_kib(pid: u32) -> Result<u64> {
    kib_field(&format!("/proc/{pid}/status"), "VmRSS:")
}

/// Proportional set size of `pid`, KiB (shared pages divided among their users).
pub fn pss_kib(pid: u32) -> Result<u64> {
    kib_field(&format!("/proc/{pid}/smaps_rollup"), "Pss:")
}

/// Raise RLIMIT_NOFILE's soft limit to the hard limit (children inherit it). Returns the
/// limit now in force.
pub fn raise_nofile() -> u64 {
    // SAFETY: getrlimit/setrlimit read and write the struct they are given.
    unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return 1024;
        }
        if r.rlim_cur < r.rlim_max {
            let wanted = libc::rlimit {
                rlim_cur: r.rlim_max,
                rlim_max: r.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) == 0 {
                return r.rlim_max;
            }
        }
        r.rlim_cur
    }
}

/// Run a short command and return its trimmed stdout (or stderr, where tools such as
/// `ssh -V` print their version), or `unknown (...)`.
pub async fn version_of(program: &str, args: &[&str]) -> String {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    match within(Duration::from_secs(20), program, cmd.output()).await {
        Ok(Ok(out)) => {
            let text = if out.stdout.is_empty() {
                out.stderr
            } else {
                out.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_owned()
        }
        Ok(Err(e)) => format!("unknown ({program}: {e})"),
        Err(e) => format!("unknown ({e})"),
    }
}
