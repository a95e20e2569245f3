//! The system under measurement, started once and shared by every measurement: the payload,
//! the port-forward source, the devcluster, `podgate serve`, the two library-built gateways
//! of P5 (recording and discarding transcripts), the sshd baseline and a kube-rs client.
//!
//! Guarantees: every process is a child with `kill_on_drop`; `stop` kills and reaps them
//! before the temporary directory and the payload are removed (fields are also declared so
//! that a plain drop, after a panic, kills before it deletes). A server that dies during
//! the run fails the next measurement (`ensure_running`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::process::Command;

use super::args::Options;
use super::forward::{self, Source};
use super::payload::Payload;
use super::procs::Server;
use super::setup::{Capacity, Setup};
use super::sshd::Sshd;

pub const PODGATE: &str = env!("CARGO_BIN_EXE_podgate");

/// A gateway process and where it records.
pub struct Gw {
    pub server: Server,
    pub recordings: PathBuf,
}

pub struct Rig {
    // Declared (hence dropped) before `setup` and `payload`: processes die first.
    pub sshd: Sshd,
    pub serve: Gw,
    pub recorded: Option<Gw>,
    pub discarded: Option<Gw>,
    pub devcluster: Server,
    pub kube: Option<kube::Client>,
    pub source: Source,
    pub capacity: Capacity,
    pub setup: Setup,
    pub payload: Payload,
}

/// How long a transfer of `size` bytes may take before the run is declared hung: generous
/// (2 MiB/s plus a minute), since a debug build on a loaded machine is slow but not stuck.
pub fn transfer_limit(size: u64) -> Duration {
    Duration::from_secs(60) + Duration::from_secs_f64(size as f64 / (2.0 * 1024.0 * 1024.0))
}

/// `podgate serve --config CONFIG` (the release binary under `cargo bench`).
pub fn serve_command(config: &std::path::Path) -> Command {
    let mut cmd = Command::new(PODGATE);
    cmd.arg("serve").arg("--config").arg(config);
    cmd
}

async fn start_gateway(setup: &Setup, name: &str, cmd: Command, recordings: PathBuf) -> Result<Gw> {
    let log = setup.path(&format!("{name}.stderr.log"));
    let server = Server::start(name, cmd, "podgate: serving on ", &log).await?;
    setup.trust(server.addr.port())?;
    Ok(Gw { server, recordings })
}

impl Rig {
    pub async fn start(opts: &Options, capacity: Capacity) -> Result<Rig> {
        let payload = Payload::create(opts.size)?;
        let source = Source::start(&payload.path, transfer_limit(opts.size)).await?;
        let setup = Setup::create(source.port).await?;
        let mut cmd = Command::new(PODGATE);
        cmd.arg("devcluster")
            .args(["--listen", "127.0.0.1:0", "--fixture"])
            .arg(&setup.fixture)
            .arg("--kubeconfig-out")
            .arg(&setup.kubeconfig)
            .arg("--state")
            .arg(setup.path("cluster"));
        let devcluster = Server::start(
            "devcluster",
            cmd,
            "podgate devcluster: serving ",
            &setup.path("devcluster.stderr.log"),
        )
        .await?;

        let (config, recordings) = setup.gateway_config("serve", &capacity)?;
        let serve = start_gateway(&setup, "gateway", serve_command(&config), recordings).await?;

        let (mut recorded, mut discarded) = (None, None);
        if opts.wants("P5") {
            let exe = std::env::current_exe().context("locating the harness executable")?;
            for (name, mode) in [("recorded", "recorded"), ("discarded", "discarded")] {
                let (config, recordings) = setup.gateway_config(name, &capacity)?;
                let mut cmd = Command::new(&exe);
                cmd.arg("--gateway-child")
                    .arg(&config)
                    .args(["--transcripts", mode]);
                let gw = start_gateway(
                    &setup,
                    &format!("{name} gateway (library-built)"),
                    cmd,
                    recordings,
                )
                .await?;
                if mode == "recorded" {
                    recorded = Some(gw);
                } else {
                    discarded = Some(gw);
                }
            }
        }

        let sshd = Sshd::start(&setup.sshd_config, &setup.path("sshd.stderr.log")).await?;
        setup.trust(sshd.port)?;
        let kube = if opts.wants("P6") {
            Some(forward::kube_client(&setup.kubeconfig).await?)
        } else {
            None
        };
        Ok(Rig {
            sshd,
            serve,
            recorded,
            discarded,
            devcluster,
            kube,
            source,
            capacity,
            setup,
            payload,
        })
    }

    /// Fail if a server has exited.
    pub fn ensure_running(&mut self) -> Result<()> {
        self.devcluster.ensure_running()?;
        self.serve.server.ensure_running()?;
        for gw in [&mut self.recorded, &mut self.discarded]
            .into_iter()
            .flatten()
        {
            gw.server.ensure_running()?;
        }
        Ok(())
    }

    /// Kill and reap every process, then remove the files.
    pub async fn stop(self) {
        let Rig {
            sshd,
            serve,
            recorded,
            discarded,
            devcluster,
            kube,
            source,
            capacity: _,
            setup,
            payload,
        } = self;
        drop(sshd);
        drop(kube);
        for gw in [Some(serve), recorded, discarded].into_iter().flatten() {
            gw.server.stop().await;
        }
        devcluster.stop().await;
        drop(source);
        drop(setup);
        drop(payload);
    }
}
