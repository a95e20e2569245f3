//! `--gateway-child CONFIG --transcripts recorded|discarded`: the harness re-executed as a
//! gateway, for P5. It builds the gateway with the library exactly as `podgate serve` does
//! (`Config::parse`, `load::gateway`, `server::run`), the one difference being, for
//! `discarded`, `Transcripts::DiscardedForBenchmarks`: session output is counted but not
//! written to the `.cast`. Recording cannot be switched off in `podgate serve` (it fails
//! closed), so this is the only way to measure what it costs end to end.
//!
//! Both modes run the same code, so "recorded" here should match `podgate serve`; the
//! report shows both. It prints `podgate: serving on ADDR` like `serve` and runs until
//! killed (or SIGINT/SIGTERM). No metrics listener: the configuration has none.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use podgate::gateway::Transcripts;

pub const FLAG: &str = "--gateway-child";

/// `args`: what follows `--gateway-child`.
pub fn main(args: &[String]) -> ExitCode {
    let parsed = match args {
        [config, flag, mode] if flag == "--transcripts" => match mode.as_str() {
            "recorded" => Ok((config.clone(), Transcripts::Recorded)),
            "discarded" => Ok((config.clone(), Transcripts::DiscardedForBenchmarks)),
            other => Err(format!(
                "--transcripts {other:?}: expected recorded or discarded"
            )),
        },
        _ => Err("usage: --gateway-child CONFIG --transcripts recorded|discarded".into()),
    };
    let (config, transcripts) = match parsed {
        Ok(p) => p,
        Err(e) => {
            eprintln!("bench gateway child: {e}");
            return ExitCode::from(64);
        }
    };
    podgate::telemetry::init(false);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("bench gateway child: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(std::path::Path::new(&config), transcripts)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench gateway child: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(path: &std::path::Path, transcripts: Transcripts) -> Result<()> {
    use std::io::Write;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let config = podgate::config::Config::parse(path, &text)?;
    let mut loaded = podgate::load::gateway(&config).await?;
    let Some(gateway) = Arc::get_mut(&mut loaded.gateway) else {
        bail!("the freshly loaded gateway is already shared; cannot set its transcripts");
    };
    gateway.transcripts = transcripts;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let bound = listener.local_addr()?;
    tracing::info!(listen = %bound, ?transcripts, "bench gateway child serving");
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "podgate: serving on {bound}");
        let _ = out.flush();
    }
    let shutdown = podgate::shutdown::on_signal();
    podgate::server::run(listener, loaded.gateway, loaded.ssh, shutdown).await;
    Ok(())
}
