//! What shipping to the recordings store costs: a finished session's transcript uploaded,
//! read back and compared (MiB/s of transcript), a live session's parts, and a round with
//! nothing to ship over a spool of shipped sessions (what every `ship_every` costs at rest).
//!
//! The store is `s3s-fs` (the server the e2e tests use) in this process on 127.0.0.1, with
//! SigV4 checked, its objects on the same file system as `target/`; the shipper is
//! podgate's own (`store::ship::Shipping::run`). Both share this process's runtime, so the
//! figures are for the pair, on loopback: a floor for what a real bucket over a network
//! would take, not a prediction of it.
//!
//! Run with `cargo bench --bench store`. Under `cargo test --all-targets` (no `--bench`
//! argument) it does one small round as a smoke test, so the harness cannot rot.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use podgate::config::StoreConfig;
use podgate::metrics::store::StoreMetrics;
use podgate::recording::cast::CastHeader;
use podgate::recording::meta::{self, Metadata};
use podgate::recording::session::{Recorder, Stream};
use podgate::store::Store;
use podgate::store::ship::{Outlet, Shipping};

const BUCKET: &str = "bench";
const ACCESS_KEY: &str = "podgate-bench-access";
const SECRET_KEY: &str = "podgate-bench-secret-key";
const CHUNK: usize = 64 * 1024;

#[derive(Default)]
struct Quiet {
    metrics: StoreMetrics,
}

impl Outlet for Quiet {
    fn event(&self, _: &str, _: serde_json::Value) {}
    fn metrics(&self) -> &StoreMetrics {
        &self.metrics
    }
}

async fn serve_s3(root: &Path) -> SocketAddr {
    std::fs::create_dir_all(root.join(BUCKET)).unwrap_or_else(|e| panic!("bucket dir: {e}"));
    let fs = s3s_fs::FileSystem::new(root).unwrap_or_else(|e| panic!("s3s-fs: {e:?}"));
    let mut builder = s3s::service::S3ServiceBuilder::new(fs);
    builder.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
    let service = builder.build();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("bind: {e}"));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("addr: {e}"));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let service = service.clone();
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    addr
}

/// Text like `seq` output, in whole lines.
fn text(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 16);
    let mut n = 1u64;
    while out.len() < len {
        out.extend_from_slice(n.to_string().as_bytes());
        out.push(b'\n');
        n += 1;
    }
    out
}

fn session(spool: &Path) -> Recorder {
    let meta = Metadata {
        session: meta::new_session_id(),
        identity: "bench".into(),
        action: "exec".into(),
        ..Default::default()
    };
    let header = CastHeader {
        width: 80,
        height: 24,
        ..Default::default()
    };
    Recorder::start(spool, 0, meta, &header, None).unwrap_or_else(|e| panic!("recorder: {e}"))
}

/// A finished session of about `len` bytes of output in `spool`; returns the `.cast` size.
fn finished(spool: &Path, data: &[u8]) -> u64 {
    let r = session(spool);
    for chunk in data.chunks(CHUNK) {
        r.output(Stream::Stdout, chunk)
            .unwrap_or_else(|e| panic!("output: {e}"));
    }
    r.finish("exited", Some(0))
        .unwrap_or_else(|e| panic!("finish: {e}"))
        .size
}

/// Ship everything in `spool` once (a round, and the last round `run` makes on stop).
async fn ship_all(spool: &Path, store: &Store, config: &StoreConfig) -> Duration {
    let shipping = Arc::new(
        Shipping::new(store.clone(), spool, config.clone())
            .unwrap_or_else(|e| panic!("shipping: {e}")),
    );
    let stop = tokio_util::sync::CancellationToken::new();
    stop.cancel();
    let (tx, _rx) = tokio::sync::oneshot::channel();
    let started = Instant::now();
    shipping.run(Arc::new(Quiet::default()), stop, tx).await;
    started.elapsed()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn mib_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / d.as_secs_f64().max(1e-9)
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let (len, rounds, idle_sessions) = if bench {
        (256 << 20, 5, 1000)
    } else {
        (1 << 20, 1, 20)
    };
    // SAFETY: set before the runtime and any other thread exist; the S3 client reads its
    // credentials from the environment only (the point of the design).
    unsafe {
        std::env::set_var("AWS_ACCESS_KEY_ID", ACCESS_KEY);
        std::env::set_var("AWS_SECRET_ACCESS_KEY", SECRET_KEY);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    runtime.block_on(async move {
        let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap_or_else(|e| panic!("tempdir: {e}"));
        let addr = serve_s3(&tmp.path().join("s3")).await;
        let mut config = StoreConfig::for_reading(
            &format!("s3://{BUCKET}/bench"),
            Some(format!("http://{addr}")),
            Some("us-east-1".into()),
            true,
            true,
        )
        .unwrap_or_else(|e| panic!("config: {e}"));
        config.keep_shipped = Duration::from_secs(3600);
        let store = Store::connect(&config).unwrap_or_else(|e| panic!("store: {e}"));
        let data = text(len);

        let mut times = Vec::new();
        let mut cast = 0;
        for i in 0..rounds {
            let spool = tmp.path().join(format!("spool-{i}"));
            std::fs::create_dir_all(&spool).unwrap_or_else(|e| panic!("spool: {e}"));
            cast = finished(&spool, &data);
            times.push(ship_all(&spool, &store, &config).await);
        }
        let t = median(times);
        println!(
            "finished session: {:.1} MiB .cast shipped (upload, read back, compare) in {:.3} s median of {rounds}: {:.0} MiB/s",
            cast as f64 / (1024.0 * 1024.0),
            t.as_secs_f64(),
            mib_s(cast, t)
        );

        // Idle rounds: a spool of shipped sessions kept for keep_shipped, nothing new.
        let spool = tmp.path().join("spool-idle");
        std::fs::create_dir_all(&spool).unwrap_or_else(|e| panic!("spool: {e}"));
        for _ in 0..idle_sessions {
            finished(&spool, b"hello\n");
        }
        ship_all(&spool, &store, &config).await;
        let idle: Vec<Duration> = {
            let mut v = Vec::new();
            for _ in 0..rounds {
                v.push(ship_all(&spool, &store, &config).await);
            }
            v
        };
        println!(
            "idle round over {idle_sessions} shipped sessions (scan, audit, cleanup check): {:.1} ms median of {rounds} (two rounds each)",
            median(idle).as_secs_f64() * 1000.0
        );
    });
}
