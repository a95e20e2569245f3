//! P3, the cost of one short command: a fresh `ssh` process running
//! `exec payments/payments-api-0 -- true` through the gateway, against a fresh `ssh`
//! running `true` through sshd, alternating (which side goes first alternates too), from
//! spawn to exit. What is timed is everything a user waits for: TCP connect, key exchange,
//! certificate login, the channel, and for the gateway the policy decision, the recording's
//! creation and the devcluster's exec round trip.
//!
//! Every run must exit 0 with empty output; anything else ends the run with an error.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::process::Command;

use super::args::Options;
use super::procs::within;
use super::rig::Rig;
use super::setup::{NAMESPACE, POD};
use super::transfer::Cipher;

/// OpenSSH's default cipher, what a user gets without `-c`.
pub const CIPHER: Cipher = Cipher::Chacha;

pub struct Latency {
    pub gateway_ms: Vec<f64>,
    pub sshd_ms: Vec<f64>,
}

pub async fn measure(rig: &mut Rig, opts: &Options) -> Result<Latency> {
    let mut out = Latency {
        gateway_ms: Vec::new(),
        sshd_ms: Vec::new(),
    };
    let total = opts.latency_runs + usize::from(opts.warmup);
    let target = format!("{NAMESPACE}/{POD}");
    for i in 0..total {
        let warm = opts.warmup && i == 0;
        let order = if i % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for gateway in order {
            rig.ensure_running()?;
            let (cmd, what) = if gateway {
                let port = rig.serve.server.addr.port();
                let cmd = rig.setup.ssh(
                    port,
                    true,
                    CIPHER.name(),
                    &[],
                    &["exec", &target, "--", "true"],
                );
                (cmd, "ssh gateway exec true")
            } else {
                let cmd = rig
                    .setup
                    .ssh(rig.sshd.port, false, CIPHER.name(), &[], &["true"]);
                (cmd, "ssh sshd true")
            };
            let ms = once(cmd, what).await?;
            if !gateway {
                // Reap the sshd -i before the next run (outside the timed window).
                rig.sshd.wait_idle(Duration::from_secs(30)).await?;
            }
            if !warm {
                if gateway {
                    out.gateway_ms.push(ms);
                } else {
                    out.sshd_ms.push(ms);
                }
            }
        }
        let done = i + 1;
        if done % 50 == 0 || done == total {
            eprintln!("  latency: {done}/{total} pairs");
        }
    }
    Ok(out)
}

async fn once(mut cmd: Command, what: &str) -> Result<f64> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let child = cmd.spawn().with_context(|| format!("starting {what}"))?;
    let out = within(Duration::from_secs(30), what, child.wait_with_output())
        .await?
        .with_context(|| format!("{what}: waiting"))?;
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    if !out.status.success() || !out.stdout.is_empty() {
        bail!(
            "{what}: exit {}, {} bytes of output (expected none): {}",
            out.status,
            out.stdout.len(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(ms)
}
