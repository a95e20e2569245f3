//! The side-by-side benchmark of the gateway (issue 8): real processes on loopback —
//! `podgate devcluster`, `podgate serve`, OpenSSH's sshd, the `ssh` and `kubectl` clients,
//! kube-rs — measured interleaved and repeated, medians and ratios reported against the
//! issue's goals (P1–P7), as a table on stdout and as Markdown in
//! `target/bench-gateway/report.md`.
//!
//! `cargo bench --bench gateway [-- OPTIONS]` runs the full sizes (see `args.rs`). Under
//! `cargo test --all-targets` (no `--bench` argument) the same code runs at smoke sizes in
//! a few seconds, so the harness cannot rot; it then fails only if something breaks (a
//! byte mismatch, a failed command, a child that dies, a timeout), never on a figure.
//!
//! Guarantees: only loopback addresses; every process started is a child killed on drop;
//! every wait is bounded; the payload in /dev/shm and the temporary directory under
//! `target/tmp` are removed on the way out (also on Ctrl-C). Not guaranteed: quiet
//! figures on a machine shared with other work (the report shows the load average).
//!
//! The harness re-executes itself as a library-built gateway for P5 (`child.rs`); that mode
//! is selected by its first argument.

#[path = "gateway/args.rs"]
mod args;
#[path = "gateway/child.rs"]
mod child;
#[path = "gateway/crowd.rs"]
mod crowd;
#[path = "gateway/forward.rs"]
mod forward;
#[path = "gateway/latency.rs"]
mod latency;
#[path = "gateway/memory.rs"]
mod memory;
#[path = "gateway/payload.rs"]
mod payload;
#[path = "gateway/procs.rs"]
mod procs;
#[path = "gateway/report.rs"]
mod report;
#[path = "gateway/rig.rs"]
mod rig;
#[path = "gateway/setup.rs"]
mod setup;
#[path = "gateway/sshd.rs"]
mod sshd;
#[path = "gateway/startup.rs"]
mod startup;
#[path = "gateway/table.rs"]
mod table;
#[path = "gateway/transfer.rs"]
mod transfer;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};

use args::Options;
use report::{Report, Results};
use rig::Rig;
use setup::Capacity;

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some(child::FLAG) {
        return child::main(&argv[2..]);
    }
    let opts = match args::parse(&argv[1..]) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(64);
        }
    };
    // Before any child starts, so that the gateway and the devcluster inherit it (P4).
    let nofile = procs::raise_nofile();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("bench gateway: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        tokio::select! {
            r = run(&opts, &argv, nofile) => r,
            // Dropping `run` kills the children and removes the files.
            _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench gateway: FAILED: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(opts: &Options, argv: &[String], nofile: u64) -> Result<()> {
    let started = Instant::now();
    let load_before = loadavg();
    eprintln!(
        "bench gateway: {} run, payload {} bytes, {} round(s){}",
        if opts.bench { "full" } else { "smoke" },
        opts.size,
        opts.rounds,
        if opts.warmup { " + 1 warm-up" } else { "" }
    );
    let capacity = Capacity {
        sessions: opts.sessions,
        idle: opts.idle,
    };
    let mut rig = Rig::start(opts, capacity).await?;
    let outcome = measure(&mut rig, opts, nofile).await;
    rig.stop().await;
    let results = outcome?;
    let (tables, notes) = results.tables(opts.size);
    let header = header(opts, argv, nofile, &load_before, started.elapsed()).await;
    let report = Report {
        header,
        tables,
        notes,
    };
    print!("{}", report.text());
    let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .map(|p| p.join("bench-gateway"))
        .context("locating target/")?;
    std::fs::create_dir_all(&target).with_context(|| format!("creating {}", target.display()))?;
    // A smoke run must not overwrite the figures of the last full run.
    let file = target.join(if opts.bench {
        "report.md"
    } else {
        "report-smoke.md"
    });
    std::fs::write(&file, report.markdown())
        .with_context(|| format!("writing {}", file.display()))?;
    // Every sample, for looking at distributions the medians hide.
    let raw = file.with_extension("json");
    let json = serde_json::to_string_pretty(&results.raw()).context("encoding the samples")?;
    std::fs::write(&raw, json).with_context(|| format!("writing {}", raw.display()))?;
    eprintln!(
        "bench gateway: report written to {} (samples in {})",
        file.display(),
        raw.display()
    );
    Ok(())
}

async fn measure(rig: &mut Rig, opts: &Options, nofile: u64) -> Result<Results> {
    let mut results = Results {
        transfers: Default::default(),
        latency: None,
        memory: None,
        startup: None,
    };
    if !transfer::routes(opts).is_empty() {
        eprintln!("transfers (P1, P2, P5, P6):");
        results.transfers = transfer::measure(rig, opts).await?;
    }
    if opts.wants("P3") {
        eprintln!("latency (P3):");
        results.latency = Some(latency::measure(rig, opts).await?);
    }
    if opts.wants("P4") {
        eprintln!("memory (P4):");
        results.memory = Some(memory::measure(rig, opts, nofile).await?);
    }
    if opts.wants("P7") {
        eprintln!("start-up (P7):");
        results.startup = Some(startup::measure(rig, opts).await?);
    }
    Ok(results)
}

/// The cargo command that ran this, and the binary with its exact arguments.
fn command_line(opts: &Options, argv: &[String]) -> String {
    let args: Vec<&str> = argv
        .iter()
        .skip(1)
        .map(String::as_str)
        .filter(|a| *a != "--bench")
        .collect();
    let cargo = if opts.bench {
        "cargo bench --bench gateway"
    } else {
        "cargo test --bench gateway"
    };
    let cargo = if args.is_empty() {
        cargo.to_owned()
    } else {
        format!("{cargo} -- {}", args.join(" "))
    };
    format!("{cargo} (ran: {})", argv.join(" "))
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |key: &str| {
        cpuinfo
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_owned())
    };
    let model = field("model name").unwrap_or_else(|| "unknown CPU".into());
    let flags = field("flags").unwrap_or_default();
    let has: Vec<&str> = ["aes", "avx2", "sha_ni"]
        .into_iter()
        .filter(|f| flags.split_whitespace().any(|x| x == *f))
        .collect();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map_or("unknown".into(), |kib| {
            format!("{:.1} GiB", kib / 1024.0 / 1024.0)
        });
    format!(
        "{model} (flags: {}), nproc {cores}, Linux {kernel}, memory {mem}",
        has.join(" ")
    )
}

async fn header(
    opts: &Options,
    argv: &[String],
    nofile: u64,
    load_before: &str,
    took: Duration,
) -> Vec<(String, String)> {
    let podgate = procs::version_of(rig::PODGATE, &["--version"]).await;
    let ssh = procs::version_of("ssh", &["-V"]).await;
    let kubectl = procs::version_of("kubectl", &["version", "--client"]).await;
    let rustc = procs::version_of("rustc", &["-V"]).await;
    let profile = if cfg!(debug_assertions) {
        "test profile (debug; dependencies at opt-level 1): smoke figures, not comparable"
    } else {
        "bench profile (release settings: opt-level 3, thin LTO, codegen-units 4)"
    };
    let mode = if opts.bench {
        "full (cargo bench --bench gateway)"
    } else {
        "smoke (no --bench: cargo test runs it; tiny sizes, figures mean nothing)"
    };
    let mut h = vec![
        ("machine".into(), machine()),
        (
            "load average".into(),
            format!(
                "{load_before} at start, {} at end (1/5/15 min; the machine is shared with other builds)",
                loadavg()
            ),
        ),
        (
            "versions".into(),
            format!("{podgate}; {ssh}; {kubectl}; {rustc}"),
        ),
        ("command".into(), command_line(opts, argv)),
        ("mode".into(), mode.into()),
        ("build".into(), profile.into()),
        (
            "sizes".into(),
            format!(
                "payload {} bytes ({:.1} MiB, base64 text lines) in /dev/shm; {} round(s){} of the transfers; {} latency runs per side; {} PTY sessions, {} idle connections; {} start-up runs",
                opts.size,
                opts.size as f64 / (1024.0 * 1024.0),
                opts.rounds,
                if opts.warmup {
                    " + 1 warm-up (dropped)"
                } else {
                    ""
                },
                opts.latency_runs,
                opts.sessions,
                opts.idle,
                opts.startup_runs,
            ),
        ),
        (
            "ciphers".into(),
            format!(
                "P1/P2 both; P3 {}; P5/P6 {}; key exchange curve25519-sha256, ed25519 keys",
                latency::CIPHER.short(),
                transfer::ONE_CIPHER.short()
            ),
        ),
        ("RLIMIT_NOFILE".into(), nofile.to_string()),
        ("took".into(), format!("{:.1} s", took.as_secs_f64())),
    ];
    if let Some(only) = &opts.only {
        h.push((
            "only".into(),
            only.iter().cloned().collect::<Vec<_>>().join(","),
        ));
    }
    if !opts.ignored.is_empty() {
        h.push(("ignored arguments".into(), opts.ignored.join(" ")));
    }
    h
}
