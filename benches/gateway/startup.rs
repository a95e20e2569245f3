//! P7, start-up: from spawning `podgate serve --config C` (its own recordings directory,
//! the same devcluster) until its SSH port answers with the `SSH-2.0-` banner, killed and
//! reaped after each run; plus the size of the binary, as built and stripped.
//!
//! The port is `127.0.0.1:0`, so the harness learns it from the `podgate: serving on`
//! line, which the gateway prints right after binding; the banner read afterwards is the
//! proof that it accepts. The container image cannot be built here (no docker daemon), so
//! the stripped binary is reported as the floor of the image's size (the Dockerfile's
//! build is static musl with fat LTO, so its binary differs from this one somewhat; the
//! distroless base adds its own few MiB).

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use super::args::Options;
use super::procs::{Server, within};
use super::rig::{PODGATE, Rig, serve_command};

pub struct Startup {
    pub runs_ms: Vec<f64>,
    pub binary: u64,
    pub stripped: Result<u64, String>,
}

pub async fn measure(rig: &mut Rig, opts: &Options) -> Result<Startup> {
    let (config, _) = rig.setup.gateway_config("startup", &rig.capacity)?;
    let log = rig.setup.path("startup.stderr.log");
    let mut runs_ms = Vec::new();
    let total = opts.startup_runs + usize::from(opts.warmup);
    for i in 0..total {
        rig.ensure_running()?;
        let start = Instant::now();
        let server = Server::start(
            "start-up gateway",
            serve_command(&config),
            "podgate: serving on ",
            &log,
        )
        .await?;
        let mut stream = within(
            Duration::from_secs(10),
            "connecting to the new gateway",
            TcpStream::connect(server.addr),
        )
        .await?
        .context("connecting to the new gateway")?;
        let mut banner = [0u8; 8];
        within(
            Duration::from_secs(10),
            "the new gateway's banner",
            stream.read_exact(&mut banner),
        )
        .await?
        .context("reading the new gateway's banner")?;
        let ms = start.elapsed().as_secs_f64() * 1000.0;
        if &banner != b"SSH-2.0-" {
            bail!(
                "the new gateway sent {:?}, not an SSH banner",
                String::from_utf8_lossy(&banner)
            );
        }
        drop(stream);
        server.stop().await;
        if !(opts.warmup && i == 0) {
            runs_ms.push(ms);
        }
    }
    let binary = std::fs::metadata(PODGATE)
        .with_context(|| format!("reading {PODGATE}"))?
        .len();
    let stripped = strip_size(&rig.setup.path("podgate.stripped")).await;
    Ok(Startup {
        runs_ms,
        binary,
        stripped,
    })
}

async fn strip_size(out: &std::path::Path) -> Result<u64, String> {
    let mut cmd = tokio::process::Command::new("strip");
    cmd.arg("-o").arg(out).arg(PODGATE).kill_on_drop(true);
    match within(Duration::from_secs(60), "strip", cmd.output()).await {
        Ok(Ok(o)) if o.status.success() => {
            let size = std::fs::metadata(out)
                .map(|m| m.len())
                .map_err(|e| e.to_string());
            let _ = std::fs::remove_file(out);
            size
        }
        Ok(Ok(o)) => Err(format!(
            "strip failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Ok(Err(e)) => Err(format!("strip: {e}")),
        Err(e) => Err(format!("{e:#}")),
    }
}
