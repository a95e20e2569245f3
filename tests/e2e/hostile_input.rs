//! Hostile bytes on the SSH port, from a raw socket, against the real gateway process:
//! junk instead of a version line, an endless identification line, absurd packet lengths,
//! random bytes after a valid banner. Each connection must be closed by the gateway (not
//! left hanging), the process must survive with its memory flat, and a real user must
//! still log in afterwards. After login, raw SSH messages from a paramiko client
//! (tests/e2e/hostile_ssh.py) attack the channel layer, with the same expectations.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::gateway_support::{ServeProcess, TEST_POLICY, TestGateway};
use super::support::{rss, run, text};

/// Send `bytes` (keeping our side open) and wait until the gateway closes the connection;
/// returns what it sent meanwhile. Panics if it is still open after `limit`.
async fn closed_after(port: u16, bytes: &[u8], limit: Duration) -> Vec<u8> {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    // The gateway may close while we are still writing: that is a pass, not an error.
    let _ = tcp.write_all(bytes).await;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let read_all = async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    let closed = tokio::time::timeout(limit, read_all).await;
    assert!(
        closed.is_ok(),
        "still open after {limit:?} ({} bytes sent)",
        bytes.len()
    );
    got
}

/// A binary packet with `length` in its length field and `body` after it.
fn packet(length: u32, body: &[u8]) -> Vec<u8> {
    let mut v = b"SSH-2.0-hostile\r\n".to_vec();
    v.extend_from_slice(&length.to_be_bytes());
    v.extend_from_slice(body);
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_bytes_close_the_connection_and_nothing_else() {
    // A short login grace: a peer that never completes the handshake (an SSH-1 version, a
    // trickle) is cut by it rather than by a protocol error.
    let gw = TestGateway::start_with(TEST_POLICY, "limits:\n  login_grace: 3s\n").await;
    let mut process = ServeProcess::start(&gw.dir.path().join("config.yaml"), false).await;
    gw.trust_port(process.ssh_port);
    let (port, pid) = (process.ssh_port, process.child.id().unwrap());
    let limit = Duration::from_secs(10);
    let before = rss(pid);

    let mut endless = b"SSH-2.0-".to_vec();
    endless.extend(std::iter::repeat_n(b'A', 1 << 20));
    let mut junk_lines = Vec::new();
    for i in 0..2000 {
        junk_lines.extend_from_slice(format!("not a version line {i}\r\n").as_bytes());
    }
    let mut random = b"SSH-2.0-hostile\r\n".to_vec();
    random.extend((0..64 * 1024u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "HTTP instead of SSH",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
        ("an SSH-1 version", b"SSH-1.5-old\r\n".to_vec()),
        ("an endless identification line", endless),
        ("thousands of lines before the version", junk_lines),
        ("a NUL in the version line", b"SSH-2.0-a\0b\r\n".to_vec()),
        ("packet length 0xffffffff", packet(u32::MAX, &[0; 64])),
        ("packet length 0", packet(0, &[0; 64])),
        ("packet length 1 GiB", packet(1 << 30, &[0; 64])),
        (
            "padding longer than the packet",
            packet(12, &[200, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
        ),
        ("random bytes after the banner", random),
    ];
    for (name, bytes) in &cases {
        let reply = closed_after(port, bytes, limit).await;
        // Whatever it said, it said as an SSH server (its banner), nothing echoed back.
        assert!(
            reply.is_empty() || reply.starts_with(b"SSH-2.0-"),
            "{name}: {:?}",
            String::from_utf8_lossy(&reply[..reply.len().min(80)])
        );
    }
    // Many at once.
    let floods = (0..200).map(|_| closed_after(port, b"SSH-2.0-x\r\n\xff\xff\xff\xff", limit));
    futures::future::join_all(floods).await;

    assert!(
        process.child.try_wait().unwrap().is_none(),
        "the gateway died"
    );
    let grown = rss(pid).saturating_sub(before);
    eprintln!("gateway RSS grew {grown} bytes over the hostile connections");
    assert!(grown < 32 * 1024 * 1024, "gateway RSS grew {grown} bytes");
    let alice = gw.alice().await;
    let args = [
        "exec",
        "payments/payments-api-0",
        "--",
        "echo",
        "still here",
    ];
    let out = run(gw.ssh_to(port, &alice, "alice", &args), None).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "still here\n");
    process.child.start_kill().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_messages_after_login_are_survived() {
    // Raw SSH messages (paramiko's message interface) from a logged-in client: data and
    // requests on channels that do not exist or were never confirmed, window overflow,
    // absurd channel opens and request sizes, data past the window, and an answer to a
    // keyboard-interactive question never asked with a count of four billion.
    let gw = TestGateway::start_with(TEST_POLICY, "").await;
    let mut process = ServeProcess::start(&gw.dir.path().join("config.yaml"), false).await;
    gw.trust_port(process.ssh_port);
    let (port, pid) = (process.ssh_port, process.child.id().unwrap());
    let alice = gw.alice().await;
    let before = rss(pid);

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/hostile_ssh.py");
    let mut cmd = tokio::process::Command::new("python3");
    cmd.arg(script)
        .args(["127.0.0.1", &port.to_string(), "alice"])
        .arg(&gw.key)
        .arg(&alice)
        .kill_on_drop(true);
    let out = run(cmd, None).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let outcomes: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    eprintln!("hostile messages: {outcomes:?}");
    assert_eq!(outcomes.len(), 8, "{outcomes:?}");
    for o in &outcomes {
        let outcome = o["outcome"].as_str().unwrap();
        assert!(outcome == "alive" || outcome == "closed", "{o}");
    }

    assert!(
        process.child.try_wait().unwrap().is_none(),
        "the gateway died"
    );
    let log = std::fs::read_to_string(&process.stderr_log).unwrap();
    assert!(!log.contains("panicked"), "{log}");
    let grown = rss(pid).saturating_sub(before);
    eprintln!("gateway RSS grew {grown} bytes over the hostile messages");
    assert!(grown < 32 * 1024 * 1024, "gateway RSS grew {grown} bytes");
    let args = [
        "exec",
        "payments/payments-api-0",
        "--",
        "echo",
        "still",
        "here",
    ];
    let out = run(gw.ssh_to(port, &alice, "alice", &args), None).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "still here\n");
    process.child.start_kill().unwrap();
}
