//! The `podgate` binary: parse arguments, read files, build the library's inputs, run.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use podgate::cli::{Cli, Command, DevclusterArgs};
use podgate::devcluster::{self, DevclusterError, Fixture};

/// sysexits.h EX_USAGE: the command line was wrong.
const EX_USAGE: u8 = 64;

fn main() -> ExitCode {
    let cli = Cli::parse();
    podgate::telemetry::init(std::env::var("PODGATE_LOG_FORMAT").is_ok_and(|v| v == "json"));
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("podgate: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Devcluster(args) => run_devcluster(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("podgate: {e:#}");
            if matches!(
                e.downcast_ref::<DevclusterError>(),
                Some(DevclusterError::NotLoopback(_))
            ) {
                ExitCode::from(EX_USAGE)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

async fn run_devcluster(args: DevclusterArgs) -> Result<()> {
    devcluster::check_loopback(args.listen)?;
    let fixture = match &args.fixture {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the fixture {}", path.display()))?;
            Fixture::parse(&path.display().to_string(), &text)?
        }
        None => Fixture::demo()?,
    };
    let mut rbac_files = Vec::new();
    for path in &args.rbac {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the RBAC file {}", path.display()))?;
        rbac_files.push((path.display().to_string(), text));
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    let shutdown = podgate::shutdown::on_signal();
    let opts = devcluster::Options {
        state_dir: args.state.clone(),
        fixture,
        rbac_files,
        audit_log: args.audit_log.clone(),
        kubeconfig_out: args.kubeconfig_out.clone(),
    };
    let prepared = devcluster::prepare(opts, addr, shutdown)?;
    println!("podgate devcluster: serving {}", prepared.url);
    if let Some(k) = &args.kubeconfig_out {
        println!("kubeconfig: {} (contexts: admin, gateway)", k.display());
        println!("try: kubectl --kubeconfig {} get pods -A", k.display());
    }
    devcluster::serve(listener, prepared).await;
    Ok(())
}
