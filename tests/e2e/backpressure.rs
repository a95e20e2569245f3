//! Bounded buffers both ways, against the real gateway process: a client that stops
//! reading stops the pod's output, and a pod that stops reading stops the client's input;
//! neither grows the gateway's memory (its RSS, read from /proc).

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::gateway_support::{ServeProcess, TEST_POLICY, TestGateway};
use super::support::rss;

/// Room the gateway may use for one stalled stream: SSH window (2 MiB), the input budget
/// (8 MiB), kube-rs pipes and socket buffers, with a wide margin. Unbounded buffering of
/// the 128 MiB sent would blow far past it.
const BOUND: u64 = 48 * 1024 * 1024;
const TOTAL: u64 = 128 * 1024 * 1024;

/// Wait (bounded) until `progress` has not moved for a second: the stream is stalled.
/// Returns its value then.
async fn stalled(progress: impl Fn() -> u64) -> u64 {
    tokio::time::timeout(Duration::from_secs(60), async {
        let (mut last, mut still) = (progress(), 0);
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let now = progress();
            still = if now == last { still + 1 } else { 0 };
            last = now;
            if still >= 10 {
                return now;
            }
        }
    })
    .await
    .expect("the stream stalled")
}

/// Bytes written so far by the process whose command line is exactly `argv`.
fn written_by(argv: &[&str]) -> Option<u64> {
    let wanted = argv.join("\0") + "\0";
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if cmdline == wanted.as_bytes() {
            let io = std::fs::read_to_string(entry.path().join("io")).ok()?;
            return io
                .lines()
                .find_map(|l| l.strip_prefix("wchar: "))
                .and_then(|v| v.trim().parse().ok());
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_stops_the_pod_without_growing_gateway_memory() {
    let gw = TestGateway::start_with(TEST_POLICY, "").await;
    let mut process = ServeProcess::start(&gw.dir.path().join("config.yaml"), false).await;
    gw.trust_port(process.ssh_port);
    let pid = process.child.id().unwrap();
    let sam = gw.sre().await;
    let size = TOTAL.to_string();
    // A size no other process uses, to find the pod's process by its command line.
    let argv = ["head", "-c", size.as_str(), "/dev/zero"];
    let mut args = vec!["exec", "payments/payments-api-0", "--"];
    args.extend(argv);
    let mut ssh = gw.ssh_to(process.ssh_port, &sam, "sam", &args);
    ssh.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut client = ssh.spawn().unwrap();
    let mut stdout = client.stdout.take().unwrap();
    let before = rss(pid);

    // Nobody reads ssh's stdout: the pod must stop, well short of the total.
    let produced = stalled(|| written_by(&argv).unwrap_or(0)).await;
    let grown = rss(pid).saturating_sub(before);
    eprintln!("stalled after the pod wrote {produced} bytes; gateway RSS grew {grown} bytes");
    assert!(produced > 0, "the pod never started");
    assert!(
        produced < TOTAL / 2,
        "the pod was not held back: {produced}"
    );
    assert!(grown < BOUND, "gateway RSS grew {grown} bytes");

    // Reading again drains everything, byte-exact.
    let mut received = 0u64;
    let mut buf = vec![0u8; 1 << 16];
    tokio::time::timeout(Duration::from_secs(120), async {
        loop {
            let n = stdout.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            assert!(buf[..n].iter().all(|b| *b == 0));
            received += n as u64;
        }
    })
    .await
    .expect("the rest arrived");
    assert_eq!(received, TOTAL);
    let status = client.wait().await.unwrap();
    assert!(status.success());
    process.child.start_kill().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_that_stops_reading_stops_the_client_without_growing_gateway_memory() {
    let gw = TestGateway::start_with(TEST_POLICY, "").await;
    let mut process = ServeProcess::start(&gw.dir.path().join("config.yaml"), false).await;
    gw.trust_port(process.ssh_port);
    let pid = process.child.id().unwrap();
    let sam = gw.sre().await;
    // The pod's command never reads its stdin.
    let args = ["exec", "payments/payments-api-0", "--", "sleep", "300"];
    let mut ssh = gw.ssh_to(process.ssh_port, &sam, "sam", &args);
    ssh.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut client = ssh.spawn().unwrap();
    let mut stdin = client.stdin.take().unwrap();
    let before = rss(pid);

    let sent = Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    let writer = tokio::spawn(async move {
        let chunk = vec![b'x'; 1 << 16];
        while counter.load(Ordering::Relaxed) < TOTAL {
            if stdin.write_all(&chunk).await.is_err() {
                return;
            }
            counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        }
    });
    let accepted = stalled(|| sent.load(Ordering::Relaxed)).await;
    let grown = rss(pid).saturating_sub(before);
    eprintln!("client stalled after {accepted} bytes; gateway RSS grew {grown} bytes");
    assert!(accepted > 0);
    assert!(
        accepted < TOTAL / 2,
        "the client was not held back: {accepted}"
    );
    assert!(grown < BOUND, "gateway RSS grew {grown} bytes");
    writer.abort();
    let _ = client.start_kill();
    process.child.start_kill().unwrap();
}
