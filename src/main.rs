//! The `podgate` binary: parse arguments, read files, build the library's inputs, run.

use std::path::Path;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::Parser;
use podgate::cli::{
    CertCommand, Cli, Command, DevArgs, DevclusterArgs, ExplainArgs, IssueArgs, ListArgs,
    PolicyCommand, RecordingsCommand, ReplayArgs, ReviewArgs, StoreArgs,
};
use podgate::devcluster::{self, DevclusterError, Fixture};
use podgate::policy::{Ask, Decision, Policy, Severity};
use podgate::recording::meta::Metadata;
use podgate::recording::offline;
use podgate::store::{Store, StoreConfig, fetch};
use podgate::{cert, config, dev, load, request, server};

/// `println!` for the servers (`serve`, `dev`, `devcluster`): a reader that went away
/// (`| head -1`, a test that read the address it needed) must not stop a server, so a
/// failed write is ignored rather than a panic.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, $($arg)*);
        let _ = out.flush();
    }};
}

#[path = "main_incident.rs"]
mod incident_cmd;

/// sysexits.h EX_USAGE: the command line was wrong.
const EX_USAGE: u8 = 64;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(
        cli.command,
        Command::Serve { .. } | Command::Dev(_) | Command::Devcluster(_)
    ) {
        // A command whose output goes into `| head` ends quietly when the pipe closes, as
        // other Unix tools do (Rust ignores SIGPIPE, so `println!` would panic). The
        // servers keep ignoring it: a closed socket is an error value there.
        // SAFETY: called before any thread is started; SIG_DFL is a valid disposition.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
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
            Command::Serve { config } => serve(&config).await,
            Command::Dev(args) => run_dev(args).await,
            Command::Devcluster(args) => run_devcluster(args).await,
            Command::Cert(cert) => match *cert {
                CertCommand::Issue(args) => issue(args),
            },
            Command::Policy(PolicyCommand::Check { paths }) => policy_check(&paths),
            Command::Policy(PolicyCommand::Explain(args)) => policy_explain(args),
            Command::Recordings(RecordingsCommand::List(args)) => recordings_list(args).await,
            Command::Recordings(RecordingsCommand::Verify(args)) => {
                recordings_verify(args.recordings, &args.store).await
            }
            Command::Replay(args) => replay(args).await,
            Command::Review(args) => review(args).await,
            Command::Incident(command) => incident_cmd::run(command).await,
        }
    });
    match result {
        Ok(code) => ExitCode::from(code),
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

async fn serve(path: &Path) -> Result<u8> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let config = config::Config::parse(path, &text)?;
    let loaded = load::gateway(&config).await?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let bound = listener.local_addr().context("reading the bound address")?;
    tracing::info!(listen = %bound, cluster = %config.cluster, kube = %loaded.gateway.kube.url(), "podgate serving");
    say!("podgate: serving on {bound}");
    let shutdown = podgate::shutdown::on_signal();
    if let Some(addr) = config.metrics_listen {
        let metrics = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening on {addr} (metrics_listen)"))?;
        let bound = metrics.local_addr().context("reading the bound address")?;
        tracing::info!(metrics = %bound, "serving /metrics, /healthz, /readyz");
        say!("podgate: metrics on {bound}");
        let gateway = loaded.gateway.clone();
        tokio::spawn(podgate::metrics::serve::run(
            metrics,
            gateway,
            shutdown.clone(),
        ));
    }
    server::run(listener, loaded.gateway, loaded.ssh, shutdown).await;
    Ok(0)
}

async fn run_dev(args: DevArgs) -> Result<u8> {
    devcluster::check_loopback(args.listen)?;
    devcluster::check_loopback(args.review_listen)?;
    let paths = dev::Paths::new(&args.state);
    let shutdown = podgate::shutdown::on_signal();
    let gw_listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| {
            format!(
                "listening on {} (is another podgate dev running? try --listen 127.0.0.1:0)",
                args.listen
            )
        })?;
    let gw_addr = gw_listener.local_addr()?;
    let review_listener = tokio::net::TcpListener::bind(args.review_listen)
        .await
        .with_context(|| {
            format!(
                "listening on {} for the review page (try --review-listen 127.0.0.1:0)",
                args.review_listen
            )
        })?;
    let review_addr = review_listener.local_addr()?;
    let kube_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let kube_addr = kube_listener.local_addr()?;
    let cluster = devcluster::prepare(
        devcluster::Options {
            state_dir: paths.cluster_state.clone(),
            fixture: Fixture::demo()?,
            rbac_files: Vec::new(),
            audit_log: Some(paths.cluster_audit.clone()),
            kubeconfig_out: Some(paths.kubeconfig.clone()),
        },
        kube_addr,
        shutdown.clone(),
    )?;
    let cluster_url = cluster.url.clone();
    let cluster_task = tokio::spawn(devcluster::serve(kube_listener, cluster));
    let config_text = dev::prepare(&paths, gw_addr)?;
    let config = config::Config::parse(&paths.config, &config_text)?;
    let loaded = load::gateway(&config).await?;
    say!("podgate dev: gateway on {gw_addr}, local cluster on {cluster_url}");
    say!(
        "state: {} (certificate valid for 1 hour; run again to renew)",
        paths.dir.display()
    );
    say!("try:");
    for c in dev::commands(&paths) {
        say!("  {c}");
    }
    say!(
        "  kubectl --kubeconfig {} get pods -A",
        paths.kubeconfig.display()
    );
    say!("review the recordings in a browser: http://{review_addr}/");
    say!("press Ctrl-C to stop");
    let review = std::sync::Arc::new(podgate::review::serve::Review::new(&paths.recordings));
    let review_task = tokio::spawn(podgate::review::http::run(
        review_listener,
        review,
        shutdown.clone(),
    ));
    server::run(gw_listener, loaded.gateway, loaded.ssh, shutdown).await;
    let _ = cluster_task.await;
    let _ = review_task.await;
    Ok(0)
}

async fn run_devcluster(args: DevclusterArgs) -> Result<u8> {
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
    say!("podgate devcluster: serving {}", prepared.url);
    if let Some(k) = &args.kubeconfig_out {
        say!("kubeconfig: {} (contexts: admin, gateway)", k.display());
        say!("try: kubectl --kubeconfig {} get pods -A", k.display());
    }
    devcluster::serve(listener, prepared).await;
    Ok(0)
}

fn issue(args: IssueArgs) -> Result<u8> {
    let ca = russh::keys::load_secret_key(&args.ca, None)
        .with_context(|| format!("reading the CA key {}", args.ca.display()))?;
    let key_text = std::fs::read_to_string(&args.key)
        .with_context(|| format!("reading {}", args.key.display()))?;
    let user_key = russh::keys::PublicKey::from_openssh(key_text.trim())
        .with_context(|| format!("{}: not an OpenSSH public key", args.key.display()))?;
    let serial = match (args.serial, &args.serial_file) {
        (Some(s), _) => s,
        (None, Some(file)) => {
            let current = std::fs::read_to_string(file).ok();
            let (serial, next) = cert::next_serial(current.as_deref())?;
            devcluster::write_file_atomic(file, next.as_bytes(), 0o600)
                .with_context(|| format!("writing the serial file {}", file.display()))?;
            serial
        }
        (None, None) => cert::random_serial(),
    };
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let mut critical = Vec::new();
    let mut extensions = Vec::new();
    for (name, value) in [
        ("cluster@podgate", &args.cluster),
        ("incident@podgate", &args.incident),
        ("namespaces@podgate", &args.namespaces),
        ("pods@podgate", &args.pods),
        ("actions@podgate", &args.actions),
        ("source-address", &args.source_address),
        ("force-command", &args.force_command),
    ] {
        if let Some(v) = value {
            critical.push((name.to_owned(), v.clone()));
        }
    }
    for (name, value) in [
        ("groups@podgate", &args.groups),
        ("reason@podgate", &args.reason),
    ] {
        if let Some(v) = value {
            extensions.push((name.to_owned(), v.clone()));
        }
    }
    if !args.no_pty {
        extensions.push(("permit-pty".into(), String::new()));
    }
    if !args.no_port_forwarding {
        extensions.push(("permit-port-forwarding".into(), String::new()));
    }
    let req = cert::IssueRequest {
        key_id: args.identity.clone(),
        principals: args.principals.clone(),
        serial,
        // A minute of back-dating absorbs clock skew between signer and gateway.
        valid_after: now.saturating_sub(60),
        valid_before: now + args.validity.as_secs(),
        critical_options: critical,
        extensions,
        comment: args.identity.clone(),
    };
    let certificate = cert::issue(
        &ca,
        &user_key,
        &req,
        *args.max_lifetime + std::time::Duration::from_secs(60),
    )?;
    let out = args.out.clone().unwrap_or_else(|| {
        let stem = args.key.to_string_lossy();
        let stem = stem.strip_suffix(".pub").unwrap_or(&stem).to_owned();
        format!("{stem}-cert.pub").into()
    });
    let text = certificate.to_openssh()?;
    std::fs::write(&out, format!("{text}\n"))
        .with_context(|| format!("writing {}", out.display()))?;
    println!(
        "{}: serial {serial}, identity {}, valid until {}",
        out.display(),
        args.identity,
        humantime::format_rfc3339_seconds(
            UNIX_EPOCH + std::time::Duration::from_secs(req.valid_before)
        )
    );
    Ok(0)
}

fn policy_check(paths: &[std::path::PathBuf]) -> Result<u8> {
    let mut sources = Vec::new();
    for p in paths {
        sources.extend(load::policy_sources(p)?);
    }
    let diagnostics = Policy::check(&sources);
    let errors = diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    for d in &diagnostics {
        eprintln!("{d}");
    }
    if errors > 0 {
        eprintln!("podgate: {errors} error(s) in {} file(s)", sources.len());
        return Ok(1);
    }
    println!(
        "ok: {} file(s), {} warning(s)",
        sources.len(),
        diagnostics.len()
    );
    Ok(0)
}

fn policy_explain(args: ExplainArgs) -> Result<u8> {
    let policy = Policy::parse(&load::policy_sources(&args.policy)?)?;
    let groups: Vec<String> = args
        .groups
        .split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .map(str::to_owned)
        .collect();
    let line = shell_words::join(&args.command);
    let cmd = match request::parse(line.as_bytes()) {
        Ok(c) => c,
        Err(e) => bail!("{e}"),
    };
    let Some(action) = cmd.action() else {
        println!("{}: needs no policy", cmd.name());
        return Ok(0);
    };
    let (namespace, pod, container, argv) = match &cmd {
        request::Command::Exec { target, argv } => (
            target.namespace.clone(),
            target.pod.clone(),
            target.container.clone(),
            Some(argv.clone()),
        ),
        request::Command::Shell { target } | request::Command::Logs { target, .. } => (
            target.namespace.clone(),
            target.pod.clone(),
            target.container.clone(),
            None,
        ),
        request::Command::Pods { namespace } => (
            namespace.clone().unwrap_or_default(),
            String::new(),
            None,
            None,
        ),
        _ => (String::new(), String::new(), None, None),
    };
    let ask = Ask {
        groups: &groups,
        action,
        namespace: &namespace,
        pod: &pod,
        container: container.as_deref(),
        argv: argv.as_deref(),
        port: None,
    };
    for v in policy.explain(&ask) {
        println!(
            "rule {}: {}{}",
            v.rule,
            if v.allowed {
                "allows"
            } else {
                "does not allow"
            },
            if v.reason.is_empty() {
                String::new()
            } else {
                format!(" ({})", v.reason)
            }
        );
    }
    match policy.decide(&ask) {
        Decision::Allow(g) => {
            println!(
                "allowed by rule {} (impersonating groups {})",
                g.rule,
                g.impersonate_groups.join(", ")
            );
            Ok(0)
        }
        Decision::Deny(d) => {
            println!("denied: {}", d.message);
            Ok(1)
        }
    }
}

/// Where the offline commands read recordings.
enum Recordings {
    Dir(std::path::PathBuf),
    Store(Store),
}

/// The directory or the bucket (clap has checked that exactly one is given).
fn recordings(dir: Option<std::path::PathBuf>, args: &StoreArgs) -> Result<Recordings> {
    let Some(url) = &args.store else {
        if args.location.any() {
            bail!("the --store-* options need --store URL");
        }
        return dir
            .map(Recordings::Dir)
            .context("either --recordings DIR or --store URL is required");
    };
    let l = &args.location;
    let config = StoreConfig::for_reading(
        url,
        l.store_endpoint.clone(),
        l.store_region.clone(),
        l.store_path_style,
        l.store_allow_http,
    )
    .map_err(|e| anyhow::anyhow!("--store {url}: {e}"))?;
    Ok(Recordings::Store(Store::connect(&config)?))
}

async fn recordings_list(args: ListArgs) -> Result<u8> {
    let since = match &args.since {
        None => None,
        Some(text) => Some(
            offline::parse_since(text, SystemTime::now()).map_err(|e| anyhow::anyhow!("--{e}"))?,
        ),
    };
    let filter = offline::Filter {
        identity: args.identity,
        target: args.target,
        action: args.action,
        since,
        incident: args.incident,
        end_reason: args.end_reason,
    };
    let items = match recordings(args.recordings, &args.store)? {
        Recordings::Dir(root) => offline::list(&root, &filter)?,
        Recordings::Store(store) => fetch::list(&store, &filter).await?,
    };
    if args.json {
        for m in &items {
            println!("{}", serde_json::to_string(m)?);
        }
    } else {
        print!("{}", offline::table(&items));
    }
    Ok(0)
}

async fn recordings_verify(dir: Option<std::path::PathBuf>, args: &StoreArgs) -> Result<u8> {
    let report = match recordings(dir, args)? {
        Recordings::Dir(root) => offline::verify(&root)?,
        Recordings::Store(store) => fetch::verify(&store).await?,
    };
    for p in &report.problems {
        eprintln!("podgate: {p}");
    }
    for s in &report.in_progress {
        match report.from_parts.get(s) {
            Some(bytes) => eprintln!(
                "podgate: not ended (live, or its gateway was lost): {s}, \
                 {bytes} bytes of transcript in live parts"
            ),
            None => eprintln!("podgate: still recording (or not recovered yet): {s}"),
        }
    }
    if report.shipped_away > 0 {
        eprintln!(
            "podgate: {} session(s) shipped to the recordings store and removed from this spool; verify them with --store",
            report.shipped_away
        );
    }
    println!(
        "{}: {} audit lines, {} sessions, {} problem(s)",
        if report.ok() { "ok" } else { "BROKEN" },
        report.audit_lines,
        report.sessions,
        report.problems.len()
    );
    Ok(if report.ok() { 0 } else { 1 })
}

async fn review(args: ReviewArgs) -> Result<u8> {
    use podgate::review::{http, serve::Review};
    http::check_listen(args.listen, args.allow_remote).map_err(|e| anyhow::anyhow!(e))?;
    // A bucket is read once, before the page is served: the page then shows that moment.
    let (state, _snapshot) = match recordings(args.recordings, &args.store)? {
        Recordings::Dir(root) => {
            anyhow::ensure!(
                root.is_dir(),
                "--recordings {}: not a directory",
                root.display()
            );
            (Review::new(&root), None)
        }
        Recordings::Store(store) => {
            say!("podgate: reading {} ...", store.url());
            let snapshot = fetch::snapshot(&store).await?;
            (
                Review::fixed(snapshot.root(), snapshot.report.clone()),
                Some(snapshot),
            )
        }
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let bound = listener.local_addr().context("reading the bound address")?;
    say!("podgate: review on http://{bound}/ (read-only; Ctrl-C to stop)");
    let shutdown = podgate::shutdown::on_signal();
    http::run(listener, std::sync::Arc::new(state), shutdown).await;
    Ok(0)
}

async fn replay(args: ReplayArgs) -> Result<u8> {
    match recordings(args.recordings.clone(), &args.store)? {
        Recordings::Dir(root) => {
            let (meta, cast) = offline::find(&root, &args.session)?;
            play_recording(&args, &meta, &cast).await?;
        }
        Recordings::Store(store) => {
            let found = fetch::session(&store, &args.session).await?;
            if found.from_parts {
                eprintln!(
                    "podgate: {} has no whole recording in {}: playing its live parts",
                    found.meta.session,
                    store.url()
                );
            }
            play_recording(&args, &found.meta, &found.cast)
                .await
                .map_err(|e| found.relabel(e))?;
        }
    }
    Ok(0)
}

async fn play_recording(
    args: &ReplayArgs,
    meta: &Metadata,
    cast: &Path,
) -> Result<(), offline::OfflineError> {
    if args.cat {
        let mut out = std::io::stdout().lock();
        return offline::cat(cast, &mut out);
    }
    eprintln!(
        "podgate: replaying {} ({} {} {}/{}), Ctrl-C to stop",
        meta.session, meta.identity, meta.action, meta.namespace, meta.pod
    );
    offline::play(
        cast,
        args.speed,
        args.idle_limit.map(Into::into),
        tokio::io::stdout(),
    )
    .await
}
