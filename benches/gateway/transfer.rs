//! The throughput measurements (P1, P2, P5, P6): every route moves the same payload, one
//! route after the other in each round (the starting route rotates from round to round, so
//! no route always runs right after the same neighbour), for every round; the warm-up
//! round is measured and dropped.
//!
//! Each transfer is checked (byte count, first and last 64 KiB, exit status; for gateway
//! exec routes also the session's recording metadata: ended, exit status 0, stdout byte
//! count equal to the payload). Any failure ends the run with an error.
//!
//! CPU time is taken around each transfer for the gateway process of the route, the
//! devcluster, the devcluster's children (the pod's `cat`), the harness's reaped children
//! (ssh, kubectl, sshd -i) and the harness itself. For gateway routes the "after" figure is
//! read once the session's recording is finished, so the gateway's closing work counts.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use podgate::recording::meta::Metadata;
use tokio::io::AsyncReadExt;
use tokio::process::Command;

use super::args::Options;
use super::forward;
use super::payload::{Payload, receive};
use super::procs::{CpuTimes, within};
use super::rig::{Rig, transfer_limit};
use super::setup::{NAMESPACE, POD, POD_PORT};

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum Cipher {
    Chacha,
    Aes128,
}

impl Cipher {
    pub fn name(self) -> &'static str {
        match self {
            Cipher::Chacha => "chacha20-poly1305@openssh.com",
            Cipher::Aes128 => "aes128-gcm@openssh.com",
        }
    }

    pub fn short(self) -> &'static str {
        match self {
            Cipher::Chacha => "chacha20-poly1305",
            Cipher::Aes128 => "aes128-gcm",
        }
    }
}

/// P5 and P6 run with one cipher: AES-GCM, the faster one on a CPU with AES-NI, so that
/// what the gateway itself costs is the largest share of the time.
pub const ONE_CIPHER: Cipher = Cipher::Aes128;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum Route {
    /// ssh → `podgate serve` → devcluster exec `cat`.
    Gateway(Cipher),
    /// kubectl exec `cat` straight to the devcluster.
    Kubectl,
    /// ssh → sshd → `cat`.
    Sshd(Cipher),
    /// ssh → library-built gateway recording transcripts (P5 on).
    Recorded,
    /// ssh → library-built gateway discarding transcripts (P5 off).
    Discarded,
    /// ssh -L → gateway → devcluster port-forward → source.
    ForwardGateway,
    /// kube-rs port-forward → devcluster → source.
    ForwardKube,
    /// ssh -L → sshd → source.
    ForwardSshd,
}

impl Route {
    pub fn label(self) -> String {
        match self {
            Route::Gateway(c) => format!("ssh gateway exec cat ({})", c.short()),
            Route::Kubectl => "kubectl exec cat".into(),
            Route::Sshd(c) => format!("ssh sshd cat ({})", c.short()),
            Route::Recorded => format!("ssh child gateway, recording ({})", ONE_CIPHER.short()),
            Route::Discarded => format!("ssh child gateway, discarding ({})", ONE_CIPHER.short()),
            Route::ForwardGateway => format!("ssh -L via gateway ({})", ONE_CIPHER.short()),
            Route::ForwardKube => "kube-rs port-forward".into(),
            Route::ForwardSshd => format!("ssh -L via sshd ({})", ONE_CIPHER.short()),
        }
    }
}

/// The routes the selected measurements need, each once.
pub fn routes(opts: &Options) -> Vec<Route> {
    let mut set = BTreeSet::new();
    let ciphers = [Cipher::Chacha, Cipher::Aes128];
    if opts.wants("P1") {
        set.extend(ciphers.map(Route::Gateway));
        set.insert(Route::Kubectl);
    }
    if opts.wants("P2") {
        set.extend(ciphers.map(Route::Gateway));
        set.extend(ciphers.map(Route::Sshd));
    }
    if opts.wants("P5") {
        set.extend([Route::Recorded, Route::Discarded]);
    }
    if opts.wants("P6") {
        set.extend([
            Route::ForwardGateway,
            Route::ForwardKube,
            Route::ForwardSshd,
        ]);
    }
    set.into_iter().collect()
}

/// One transfer's figures.
#[derive(Debug, Clone)]
pub struct Sample {
    pub secs: f64,
    pub cpu: CpuTimes,
    /// Port-forwards: last byte to close.
    pub eof_lag: Option<f64>,
    /// Recording gateway: `.cast` bytes per payload byte.
    pub cast_per_byte: Option<f64>,
}

/// Run every route, `rounds` (+ warm-up) times, interleaved. Progress goes to stderr.
pub async fn measure(rig: &mut Rig, opts: &Options) -> Result<BTreeMap<Route, Vec<Sample>>> {
    let mut order = routes(opts);
    let mut samples: BTreeMap<Route, Vec<Sample>> = BTreeMap::new();
    let total = opts.rounds + usize::from(opts.warmup);
    for round in 0..total {
        let warm = opts.warmup && round == 0;
        if round > 0 {
            order.rotate_left(1);
        }
        for &route in &order {
            let s = run(rig, route).await?;
            let when = if warm {
                "warm-up".to_owned()
            } else {
                format!(
                    "round {}/{}",
                    round + 1 - usize::from(opts.warmup),
                    opts.rounds
                )
            };
            eprintln!(
                "  {when:<11} {:<44} {:>8.1} MiB/s",
                route.label(),
                rig.payload.mib() / s.secs
            );
            if !warm {
                samples.entry(route).or_default().push(s);
            }
        }
    }
    Ok(samples)
}

/// One transfer over `route`.
pub async fn run(rig: &mut Rig, route: Route) -> Result<Sample> {
    rig.ensure_running()?;
    let file = rig
        .payload
        .path
        .to_str()
        .context("payload path")?
        .to_owned();
    let exec_args = ["exec", &format!("{NAMESPACE}/{POD}"), "--", "cat", &file].map(String::from);
    let exec_args: Vec<&str> = exec_args.iter().map(String::as_str).collect();
    let limit = transfer_limit(rig.payload.size);
    let gateway = match route {
        Route::Gateway(_) | Route::ForwardGateway => Some(&rig.serve),
        Route::Recorded => rig.recorded.as_ref(),
        Route::Discarded => rig.discarded.as_ref(),
        _ => None,
    };
    let gw_pid = gateway.map(|g| g.server.pid);
    let gw_port = gateway.map(|g| g.server.addr.port()).unwrap_or(0);
    // Sessions of exec routes, to find the one this transfer makes.
    let recordings = match route {
        Route::Gateway(_) | Route::Recorded | Route::Discarded => {
            gateway.map(|g| g.recordings.clone())
        }
        _ => None,
    };
    let before_sessions = recordings.as_deref().map(session_files).unwrap_or_default();
    let before = CpuTimes::now(gw_pid, rig.devcluster.pid)?;
    let what = route.label();
    let setup = &rig.setup;
    let payload = &rig.payload;
    let (secs, eof_lag) = match route {
        Route::Gateway(c) => {
            let cmd = setup.ssh(gw_port, true, c.name(), &[], &exec_args);
            (exec(cmd, payload, limit, &what).await?, None)
        }
        Route::Recorded | Route::Discarded => {
            let cmd = setup.ssh(gw_port, true, ONE_CIPHER.name(), &[], &exec_args);
            (exec(cmd, payload, limit, &what).await?, None)
        }
        Route::Kubectl => {
            let cmd = setup.kubectl(&["exec", "-n", NAMESPACE, POD, "--", "cat", &file]);
            (exec(cmd, payload, limit, &what).await?, None)
        }
        Route::Sshd(c) => {
            let cmd = setup.ssh(rig.sshd.port, false, c.name(), &[], &["cat", &file]);
            (exec(cmd, payload, limit, &what).await?, None)
        }
        Route::ForwardGateway => {
            let f = forward::via_ssh(
                |o| setup.ssh(gw_port, true, ONE_CIPHER.name(), o, &[]),
                &format!("{POD}.{NAMESPACE}:{POD_PORT}"),
                payload,
                limit,
                &what,
            )
            .await?;
            (f.secs, Some(f.eof_lag))
        }
        Route::ForwardSshd => {
            let sshd_port = rig.sshd.port;
            let f = forward::via_ssh(
                |o| setup.ssh(sshd_port, false, ONE_CIPHER.name(), o, &[]),
                &format!("127.0.0.1:{}", rig.source.port),
                payload,
                limit,
                &what,
            )
            .await?;
            (f.secs, Some(f.eof_lag))
        }
        Route::ForwardKube => {
            let client = rig.kube.as_ref().context("no kube-rs client")?;
            let f = forward::via_kube(client, payload, limit).await?;
            (f.secs, Some(f.eof_lag))
        }
    };
    if matches!(route, Route::Sshd(_) | Route::ForwardSshd) {
        rig.sshd.wait_idle(Duration::from_secs(30)).await?;
    }
    let mut cast_per_byte = None;
    let mut finished_cast = None;
    if let Some(dir) = &recordings {
        let (meta, cast) = finished_session(dir, &before_sessions, rig.payload.size, &what).await?;
        if route == Route::Recorded {
            let info = meta
                .cast
                .as_ref()
                .with_context(|| format!("{what}: the session's metadata names no .cast"))?;
            cast_per_byte = Some(info.size as f64 / rig.payload.size as f64);
        }
        finished_cast = Some(cast);
    }
    let after = CpuTimes::now(gw_pid, rig.devcluster.pid)?;
    // The transcript has been measured; keeping hundreds of MiB of them per round would
    // only fill the disk and leave write-back work for the next transfers.
    if let Some(cast) = finished_cast {
        let _ = std::fs::remove_file(cast);
    }
    Ok(Sample {
        secs,
        cpu: after.since(&before),
        eof_lag,
        cast_per_byte,
    })
}

/// Run `cmd` (stdout = the payload), check every byte and the exit status; the time from
/// spawn to exit.
async fn exec(mut cmd: Command, payload: &Payload, limit: Duration, what: &str) -> Result<f64> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd.spawn().with_context(|| format!("starting {what}"))?;
    let stdout = child.stdout.take().context("no stdout pipe")?;
    let stderr = child.stderr.take().context("no stderr pipe")?;
    let errors = tokio::spawn(async move {
        let mut buf = Vec::new();
        let _ = stderr.take(64 * 1024).read_to_end(&mut buf).await;
        String::from_utf8_lossy(&buf).into_owned()
    });
    let mut check = payload.check();
    let status = within(limit, what, async {
        receive(stdout, &mut check).await?;
        child.wait().await
    })
    .await?
    .with_context(|| format!("{what}: reading its output"))?;
    let secs = start.elapsed().as_secs_f64();
    let err = within(Duration::from_secs(10), "stderr", errors)
        .await
        .ok()
        .and_then(|r| r.ok())
        .unwrap_or_default();
    if !status.success() {
        bail!("{what} failed ({status}): {}", err.trim());
    }
    check.finish(what)?;
    Ok(secs)
}

/// Every session metadata file under a recordings directory (`DATE/SESSION.json`).
fn session_files(dir: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    for day in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if !day.path().is_dir() {
            continue;
        }
        for f in std::fs::read_dir(day.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let p = f.path();
            if p.extension().is_some_and(|e| e == "json") {
                out.insert(p);
            }
        }
    }
    out
}

/// Wait (bounded) for the exec session this transfer made to be finished, and check its
/// metadata. Returns it and the path of its `.cast`.
async fn finished_session(
    dir: &Path,
    before: &BTreeSet<PathBuf>,
    size: u64,
    what: &str,
) -> Result<(Metadata, PathBuf)> {
    let started = Instant::now();
    loop {
        let mut ended = Vec::new();
        for path in session_files(dir).difference(before) {
            let Ok(text) = std::fs::read_to_string(path) else {
                continue;
            };
            // A metadata file being replaced may be read half-written: try again later.
            let Ok(meta) = serde_json::from_str::<Metadata>(&text) else {
                continue;
            };
            if meta.action == "exec" && meta.end_reason.is_some() {
                ended.push((meta, path.with_extension("cast")));
            }
        }
        if ended.len() > 1 {
            bail!("{what}: {} new exec sessions, expected one", ended.len());
        }
        if let Some((meta, cast)) = ended.pop() {
            if meta.exit_status != Some(0) || meta.bytes.stdout != size {
                bail!(
                    "{what}: the recording says exit status {:?}, {} stdout bytes (end reason {:?}); expected 0 and {size}",
                    meta.exit_status,
                    meta.bytes.stdout,
                    meta.end_reason
                );
            }
            return Ok((meta, cast));
        }
        if started.elapsed() > Duration::from_secs(30) {
            bail!(
                "{what}: no finished exec session in {} after 30 s",
                dir.display()
            );
        }
        // Bounded polling of a file the gateway writes when the session ends.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
