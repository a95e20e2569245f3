//! P6, port-forward throughput: the TCP source the pod port stands for, and the three ways
//! to reach it: `ssh -N -L` through the gateway (→ `pods/portforward` on the devcluster →
//! the source), kube-rs's own port-forward straight to the devcluster, and `ssh -N -L`
//! through sshd straight to the source.
//!
//! The source writes the payload to every accepted connection and closes it. A forward's
//! time runs from the local connect (or, for kube-rs, the port-forward request) to the
//! payload's last byte; how long the close then takes to arrive is reported separately
//! (`eof_lag`), so that a slow close is visible without being mistaken for throughput.
//!
//! Readiness of `ssh -L` is read from `/proc/net/tcp` (a listening socket on the local
//! port) instead of a probing connect: through a forward, a probe is itself a forwarded
//! connection, and the source would stream a whole payload into it during the measurement.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Pod;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::Command;

use super::payload::{Payload, receive};
use super::procs::within;
use super::setup::{NAMESPACE, POD, POD_PORT};

/// The service behind the pod's port 9000: writes the payload to each connection, closes.
pub struct Source {
    pub port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Source {
    pub async fn start(payload: &Path, limit: Duration) -> Result<Source> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the port-forward source")?;
        let port = listener.local_addr()?.port();
        let path: PathBuf = payload.to_owned();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        let path = path.clone();
                        // A connection that stops reading is abandoned after `limit`; the
                        // reader's own check then reports the short transfer.
                        conns.spawn(async move {
                            let _ = tokio::time::timeout(limit, serve(stream, &path)).await;
                        });
                    }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        });
        Ok(Source { port, task })
    }
}

impl Drop for Source {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut stream: TcpStream, path: &Path) -> std::io::Result<()> {
    let file = tokio::fs::File::open(path).await?;
    let mut reader = tokio::io::BufReader::with_capacity(256 * 1024, file);
    loop {
        let buf = reader.fill_buf().await?;
        if buf.is_empty() {
            break;
        }
        let n = buf.len();
        stream.write_all(buf).await?;
        reader.consume(n);
    }
    stream.shutdown().await
}

/// One forward's figures.
pub struct Forwarded {
    /// Connect (or port-forward request) to the last byte.
    pub secs: f64,
    /// Last byte to the close.
    pub eof_lag: f64,
}

/// A free local port: bound and released (the gap before ssh binds it is the usual race
/// of this pattern; a loss shows as ssh's `ExitOnForwardFailure` error).
fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free local port")?;
    Ok(l.local_addr()?.port())
}

/// Whether something listens on 127.0.0.1:`port` (IPv4 table of the current namespace).
fn listening(port: u16) -> bool {
    let want = format!("0100007F:{port:04X}");
    std::fs::read_to_string("/proc/net/tcp")
        .map(|t| {
            t.lines().skip(1).any(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.get(1) == Some(&want.as_str()) && f.get(3) == Some(&"0A")
            })
        })
        .unwrap_or(false)
}

async fn download(
    connect: impl std::future::Future<Output = Result<TcpStream>>,
    payload: &Payload,
    limit: Duration,
    what: &str,
) -> Result<Forwarded> {
    let mut check = payload.check();
    let start = Instant::now();
    let stream = within(Duration::from_secs(30), what, connect).await??;
    let full = within(limit, what, receive(stream, &mut check))
        .await?
        .with_context(|| format!("{what}: reading"))?;
    let end = Instant::now();
    check.finish(what)?;
    let full = full.unwrap_or(end);
    Ok(Forwarded {
        secs: (full - start).as_secs_f64(),
        eof_lag: (end - full).as_secs_f64(),
    })
}

/// `ssh -N -L 127.0.0.1:LPORT:TARGET` (`ssh` built by the caller without the `-L`), then
/// one download through it. The ssh process is killed and reaped afterwards.
pub async fn via_ssh(
    mut make_ssh: impl FnMut(&[String]) -> Command,
    target: &str,
    payload: &Payload,
    limit: Duration,
    what: &str,
) -> Result<Forwarded> {
    let lport = free_port()?;
    let opts = [
        "-N".to_owned(),
        "-o".to_owned(),
        "ExitOnForwardFailure=yes".to_owned(),
        "-L".to_owned(),
        format!("127.0.0.1:{lport}:{target}"),
    ];
    let mut cmd = make_ssh(&opts);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut ssh = cmd
        .spawn()
        .with_context(|| format!("starting ssh for {what}"))?;
    let ready = Instant::now();
    while !listening(lport) {
        if let Some(status) = ssh.try_wait()? {
            let mut err = String::new();
            if let Some(mut e) = ssh.stderr.take() {
                use tokio::io::AsyncReadExt;
                let _ = within(
                    Duration::from_secs(5),
                    "ssh stderr",
                    e.read_to_string(&mut err),
                )
                .await;
            }
            bail!("{what}: ssh exited before forwarding ({status}): {err}");
        }
        if ready.elapsed() > Duration::from_secs(30) {
            bail!("{what}: ssh did not listen on 127.0.0.1:{lport} within 30 s");
        }
        // Bounded polling for a port, not a synchronisation sleep.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let result = download(
        async {
            TcpStream::connect(("127.0.0.1", lport))
                .await
                .with_context(|| format!("{what}: connecting to 127.0.0.1:{lport}"))
        },
        payload,
        limit,
        what,
    )
    .await;
    let _ = ssh.start_kill();
    within(Duration::from_secs(10), "the killed ssh -L", ssh.wait()).await??;
    result
}

/// kube-rs's port-forward to the pod, straight to the devcluster as its admin.
pub async fn via_kube(
    client: &kube::Client,
    payload: &Payload,
    limit: Duration,
) -> Result<Forwarded> {
    let what = "kube-rs port-forward";
    let api: kube::Api<Pod> = kube::Api::namespaced(client.clone(), NAMESPACE);
    let mut check = payload.check();
    let start = Instant::now();
    let mut pf = within(
        Duration::from_secs(30),
        what,
        api.portforward(POD, &[POD_PORT]),
    )
    .await?
    .with_context(|| format!("{what}: request"))?;
    let stream = pf
        .take_stream(POD_PORT)
        .with_context(|| format!("{what}: no stream for port {POD_PORT}"))?;
    let full = within(limit, what, receive(stream, &mut check))
        .await?
        .with_context(|| format!("{what}: reading"))?;
    let end = Instant::now();
    check.finish(what)?;
    // Bounded wait for the forwarder task. Its result is not checked: when the server
    // closes the websocket first (the pod's connection ended), kube-rs's forwarder still
    // tries to send and ends with "Sending after closing is not allowed", after every byte
    // has arrived and been checked above.
    let _ = within(
        Duration::from_secs(10),
        "the kube-rs forwarder to end",
        pf.join(),
    )
    .await?;
    let full = full.unwrap_or(end);
    Ok(Forwarded {
        secs: (full - start).as_secs_f64(),
        eof_lag: (end - full).as_secs_f64(),
    })
}

/// The kube-rs client of the devcluster's `admin` context.
pub async fn kube_client(kubeconfig: &Path) -> Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("reading {}", kubeconfig.display()))?;
    let opts = kube::config::KubeConfigOptions {
        context: Some("admin".into()),
        ..Default::default()
    };
    let config = within(
        Duration::from_secs(30),
        "loading the kubeconfig",
        kube::Config::from_custom_kubeconfig(kc, &opts),
    )
    .await?
    .context("building the kube-rs configuration")?;
    kube::Client::try_from(config).context("building the kube-rs client")
}
