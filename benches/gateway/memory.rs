//! P4, memory held per session: `podgate serve`'s RSS and PSS (and the devcluster's RSS)
//! before, and while, N PTY sessions (`sh -c 'echo ready; exec sleep 3600'`) are open, then
//! the same with N logged-in idle connections. The connections are opened in process by
//! `crowd` (a russh client), not by N `ssh` processes.
//!
//! A crowd that cannot be opened (including `crowd` not being implemented yet, or a
//! timeout) is reported as "not available: <why>" and does not fail the run; a gateway or
//! devcluster that dies meanwhile does. When RLIMIT_NOFILE's hard limit is too low for N,
//! N is scaled down and the report says so.

use std::time::{Duration, Instant};

use anyhow::Result;

use super::args::Options;
use super::crowd::{self, Login};
use super::procs::{pss_kib, rss_kib, within};
use super::rig::Rig;
use super::setup::{GW_USER, NAMESPACE, POD};

pub struct Held {
    pub what: &'static str,
    pub requested: usize,
    pub n: usize,
    /// Why `n` is below `requested`.
    pub scaled: Option<String>,
    pub result: Result<Figures, String>,
}

pub struct Figures {
    pub held: usize,
    pub open_secs: f64,
    pub gw_rss_before: u64,
    pub gw_pss_before: u64,
    pub gw_rss_held: u64,
    pub gw_pss_held: u64,
    pub dc_rss_before: u64,
    pub dc_rss_held: u64,
}

impl Figures {
    /// PSS growth per connection, KiB.
    pub fn per_conn_kib(&self) -> f64 {
        (self.gw_pss_held as f64 - self.gw_pss_before as f64) / self.held.max(1) as f64
    }
}

/// File descriptors needed per connection by the busiest process, and a margin for the
/// rest: a PTY session costs the devcluster a TLS socket, the PTY and the child's pipes.
const FDS_PER_SESSION: u64 = 4;
const FDS_PER_IDLE: u64 = 1;
const FD_MARGIN: u64 = 512;

fn scale(requested: usize, per: u64, nofile: u64) -> (usize, Option<String>) {
    let fits = (nofile.saturating_sub(FD_MARGIN) / per) as usize;
    if requested <= fits {
        (requested, None)
    } else {
        (
            fits,
            Some(format!(
                "scaled down from {requested}: RLIMIT_NOFILE hard limit is {nofile}"
            )),
        )
    }
}

pub async fn measure(rig: &mut Rig, opts: &Options, nofile: u64) -> Result<Vec<Held>> {
    let login = Login {
        addr: rig.serve.server.addr,
        key: rig.setup.user_key.clone(),
        cert: rig.setup.cert_gw.clone(),
        user: GW_USER.to_owned(),
    };
    let command = format!("exec {NAMESPACE}/{POD} -- sh -c 'echo ready; exec sleep 3600'");
    let mut out = Vec::new();
    for what in ["PTY sessions", "idle connections"] {
        rig.ensure_running()?;
        let pty = what == "PTY sessions";
        let requested = if pty { opts.sessions } else { opts.idle };
        let (n, scaled) = scale(
            requested,
            if pty { FDS_PER_SESSION } else { FDS_PER_IDLE },
            nofile,
        );
        let gw = rig.serve.server.pid;
        let dc = rig.devcluster.pid;
        let (gw_rss_before, gw_pss_before, dc_rss_before) =
            (rss_kib(gw)?, pss_kib(gw)?, rss_kib(dc)?);
        let started = Instant::now();
        let limit =
            Duration::from_secs(120) + Duration::from_millis(if pty { 100 } else { 20 }) * n as u32;
        let opened = if pty {
            within(
                limit,
                "opening the PTY sessions",
                crowd::pty_sessions(&login, n, &command, 32),
            )
            .await
        } else {
            within(
                limit,
                "opening the idle connections",
                crowd::idle_connections(&login, n, 64),
            )
            .await
        };
        let result = match opened {
            Err(e) => Err(format!("{e:#}")),
            Ok(Err(e)) => Err(e),
            Ok(Ok(crowd)) => {
                let open_secs = started.elapsed().as_secs_f64();
                let figures = Figures {
                    held: crowd.len(),
                    open_secs,
                    gw_rss_before,
                    gw_pss_before,
                    gw_rss_held: rss_kib(gw)?,
                    gw_pss_held: pss_kib(gw)?,
                    dc_rss_before,
                    dc_rss_held: rss_kib(dc)?,
                };
                within(Duration::from_secs(120), "closing the crowd", crowd.close()).await?;
                Ok(figures)
            }
        };
        match &result {
            Ok(f) => eprintln!(
                "  P4 {what}: {} held, gateway PSS {} -> {} KiB",
                f.held, f.gw_pss_before, f.gw_pss_held
            ),
            Err(e) => eprintln!("  P4 {what}: not available: {e}"),
        }
        out.push(Held {
            what,
            requested,
            n,
            scaled,
            result,
        });
    }
    rig.ensure_running()?;
    Ok(out)
}
