//! Faults around a live session, against the real `podgate serve` process: the exec
//! websocket cut mid-session, the cluster gone and back, a 403 followed by stray bytes on
//! an upgrade, the devcluster process killed and restarted, and a recordings disk that
//! fills up (RLIMIT_FSIZE). Each must give the user a clear end, write an audit event,
//! and leave a recording `asciinema` reads.
//! (SIGTERM and SIGKILL of the gateway mid-session: tests/e2e/gateway_process.rs and
//! tests/e2e/recordings.rs.)

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::gateway_process::process_config;
use super::gateway_support::{ServeProcess, TEST_POLICY, TestGateway};
use super::support::{DEADLINE, asciinema_cat, casts, recordings_verify, run, text};

/// A TCP proxy in front of the devcluster that a test can cut (every open connection
/// dropped) or close (new connections refused), as a dead node or API server would.
struct Proxy {
    addr: SocketAddr,
    cut: Arc<Mutex<CancellationToken>>,
    down: Arc<std::sync::atomic::AtomicBool>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(Mutex::new(CancellationToken::new()));
        let down = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (c, d) = (cut.clone(), down.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if d.load(std::sync::atomic::Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let token = c.lock().unwrap().clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = token.cancelled() => {}
                    }
                });
            }
        });
        Proxy { addr, cut, down }
    }

    /// Drop every connection open now.
    fn cut(&self) {
        let mut token = self.cut.lock().unwrap();
        token.cancel();
        *token = CancellationToken::new();
    }

    /// Refuse (`true`) or pass (`false`) new connections.
    fn set_down(&self, down: bool) {
        self.down.store(down, std::sync::atomic::Ordering::SeqCst);
        if down {
            self.cut();
        }
    }
}

/// The devcluster's address, from its kubeconfig.
fn server_of(kubeconfig: &Path) -> SocketAddr {
    let text = std::fs::read_to_string(kubeconfig).unwrap();
    let url = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: "))
        .unwrap()
        .trim_matches('"');
    url.trim_start_matches("https://")
        .trim_start_matches("http://")
        .parse()
        .unwrap()
}

/// A copy of the devcluster's kubeconfig whose server is `server` (a URL).
fn kubeconfig_to(gw: &TestGateway, server: &str) -> PathBuf {
    let original = std::fs::read_to_string(&gw.cluster.kubeconfig).unwrap();
    let text: String = original
        .lines()
        .map(|l| match l.trim().strip_prefix("server: ") {
            Some(_) => format!("    server: {server}\n"),
            None => format!("{l}\n"),
        })
        .collect();
    let path = gw.dir.path().join("kubeconfig-faults.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A gateway process whose cluster is reached through `kubeconfig`.
async fn gateway_via(gw: &TestGateway, kubeconfig: &Path, extra: &str) -> ServeProcess {
    let config = process_config(gw, extra);
    let text = std::fs::read_to_string(&config).unwrap();
    let text: String = text
        .lines()
        .map(|l| match l.starts_with("kubeconfig: ") {
            true => format!("kubeconfig: {}\n", kubeconfig.display()),
            false => format!("{l}\n"),
        })
        .collect();
    std::fs::write(&config, text).unwrap();
    let process = ServeProcess::start(&config, true).await;
    gw.trust_port(process.ssh_port);
    process
}

/// The audit events of the gateway process (its own recordings directory).
fn process_events(gw: &TestGateway) -> Vec<Value> {
    super::gateway_process::events(&gw.dir.path().join("process-recordings"))
}

/// A live `exec … -- cat` session: started, echoing, then `fault` runs; the session's
/// exit code and everything it printed.
async fn cat_session_through(
    gw: &TestGateway,
    port: u16,
    fault: impl FnOnce(),
) -> (Option<i32>, String) {
    let alice = gw.alice().await;
    let mut cmd = gw.ssh_to(
        port,
        &alice,
        "alice",
        &["exec", "payments/payments-api-0", "--", "cat"],
    );
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap());
    let mut stderr = child.stderr.take().unwrap();
    stdin.write_all(b"before the fault\n").await.unwrap();
    let mut line = String::new();
    tokio::time::timeout(DEADLINE, stdout.read_line(&mut line))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(line, "before the fault\n");
    fault();
    let (mut out, mut err) = (String::new(), String::new());
    let (status, _, _) = tokio::time::timeout(DEADLINE, async {
        tokio::join!(
            child.wait(),
            stdout.read_to_string(&mut out),
            stderr.read_to_string(&mut err)
        )
    })
    .await
    .expect("the session ended after the fault");
    drop(stdin);
    (status.unwrap().code(), out + &err)
}

/// The one session's recording plays and the recordings verify.
async fn recording_is_readable(gw: &TestGateway) {
    let root = gw.dir.path().join("process-recordings");
    for cast in casts(&root) {
        asciinema_cat(&cast).unwrap_or_else(|e| panic!("{}: {e}", cast.display()));
    }
    let out = recordings_verify(&root).await;
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

fn ended(gw: &TestGateway) -> Vec<Value> {
    process_events(gw)
        .into_iter()
        .filter(|e| e["event"] == "session.ended")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exec_stream_cut_mid_session() {
    let gw = TestGateway::start_with(TEST_POLICY, "").await;
    let proxy = Proxy::start(server_of(&gw.cluster.kubeconfig)).await;
    let kubeconfig = kubeconfig_to(&gw, &format!("https://{}", proxy.addr));
    let mut process = gateway_via(&gw, &kubeconfig, "").await;

    let (code, output) = cat_session_through(&gw, process.ssh_port, || proxy.cut()).await;
    assert_eq!(code, Some(69), "{output}");
    assert!(output.contains("podgate: error: "), "{output}");
    let ended = ended(&gw);
    assert_eq!(ended.len(), 1, "{ended:?}");
    assert_eq!(ended[0]["end_reason"], "error", "{ended:?}");
    assert_eq!(ended[0]["exit_status"], 69, "{ended:?}");
    recording_is_readable(&gw).await;
    process.child.start_kill().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_gone_and_back() {
    let gw = TestGateway::start_with(TEST_POLICY, "").await;
    let proxy = Proxy::start(server_of(&gw.cluster.kubeconfig)).await;
    let kubeconfig = kubeconfig_to(&gw, &format!("https://{}", proxy.addr));
    let mut process = gateway_via(&gw, &kubeconfig, "").await;
    let alice = gw.alice().await;
    let args = ["exec", "payments/payments-api-0", "--", "echo", "up"];

    // Gone in the middle of a session, and for the next one.
    let (code, output) = cat_session_through(&gw, process.ssh_port, || proxy.set_down(true)).await;
    assert_eq!(code, Some(69), "{output}");
    let out = run(gw.ssh_to(process.ssh_port, &alice, "alice", &args), None).await;
    assert_eq!(out.status.code(), Some(69), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.starts_with("podgate: error: ") && err.lines().count() == 1,
        "{err}"
    );
    // Back: the next session works, nothing to restart.
    proxy.set_down(false);
    let out = run(gw.ssh_to(process.ssh_port, &alice, "alice", &args), None).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "up\n");
    let events = process_events(&gw);
    let kinds: Vec<&str> = events
        .iter()
        .filter_map(|e| e["event"].as_str())
        .filter(|e| *e != "auth.accepted")
        .collect();
    // The cut session ended; the one tried while the cluster was gone failed before it
    // began; the last ran.
    let expected = [
        "session.started",
        "session.ended",
        "session.failed",
        "session.started",
        "session.ended",
    ];
    assert_eq!(kinds, expected);
    let failure = events
        .iter()
        .find(|e| e["event"] == "session.failed")
        .unwrap();
    assert_eq!(failure["target"], "payments/payments-api-0", "{failure}");
    recording_is_readable(&gw).await;
    process.child.start_kill().unwrap();
}

/// An HTTP server that answers every request with 403 and then stray bytes (the start of
/// a websocket frame) on the same connection, as a confused proxy might.
async fn forbidding_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 8192];
                let _ = tcp.read(&mut buf).await;
                let body = r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"pods \"payments-api-0\" is forbidden: nobody may","reason":"Forbidden","code":403}"#;
                let response = format!(
                    "HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                let _ = tcp.write_all(response.as_bytes()).await;
                let _ = tcp
                    .write_all(b"\x82\x7f\xff\xff\xff\xff\xff\xff\xff\xffjunk")
                    .await;
                let _ = tcp.read(&mut buf).await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_403_with_stray_bytes_on_the_upgrade() {
    let gw = TestGateway::start_with(TEST_POLICY, "").await;
    let server = forbidding_server().await;
    let kubeconfig = kubeconfig_to(&gw, &format!("http://{server}"));
    let mut process = gateway_via(&gw, &kubeconfig, "").await;
    let alice = gw.alice().await;
    let args = ["exec", "payments/payments-api-0:api", "--", "echo", "hi"];
    let out = run(gw.ssh_to(process.ssh_port, &alice, "alice", &args), None).await;
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(69), "{err}");
    assert!(err.contains("forbidden"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(text(&out.stdout).is_empty());
    let events = process_events(&gw);
    assert!(
        events.iter().any(|e| e["event"] == "session.ended"),
        "{events:?}"
    );
    recording_is_readable(&gw).await;
    process.child.start_kill().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recordings_disk_that_fills_up() {
    let gw = TestGateway::start_with(TEST_POLICY, "").await;
    let config = process_config(&gw, "");
    // Every file the gateway writes may grow to 1 MiB; past that a write fails with EFBIG
    // as on a full disk (SIGXFSZ ignored, so the process is not killed for it).
    let mut process = ServeProcess::start_limited(&config, true, 1 << 20).await;
    gw.trust_port(process.ssh_port);
    let sam = gw.sre().await;
    let args = [
        "exec",
        "payments/payments-api-0",
        "--",
        "head",
        "-c",
        "4000000",
        "/dev/urandom",
    ];
    let out = run(gw.ssh_to(process.ssh_port, &sam, "sam", &args), None).await;
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(69), "{err}");
    assert!(err.contains("the session recording failed"), "{err}");
    // What reached the user is bounded by what could be recorded.
    assert!(out.stdout.len() < 4_000_000, "{} bytes", out.stdout.len());
    let ended = ended(&gw);
    assert_eq!(ended.len(), 1, "{ended:?}");
    assert_eq!(ended[0]["end_reason"], "write failed", "{ended:?}");
    let root = gw.dir.path().join("process-recordings");
    let cast = casts(&root);
    assert_eq!(cast.len(), 1);
    let played = asciinema_cat(&cast[0]).unwrap_or_else(|e| panic!("{e}"));
    assert!(!played.is_empty());
    // The gateway goes on: a small session still works.
    let small = [
        "exec",
        "payments/payments-api-0",
        "--",
        "echo",
        "still",
        "here",
    ];
    let out = run(gw.ssh_to(process.ssh_port, &sam, "sam", &small), None).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    process.child.start_kill().unwrap();
}

/// `podgate devcluster` as its own process, on `listen`, keeping its state (CA, tokens) in
/// `state`, so that a restart on the same address serves the same kubeconfig.
async fn devcluster_process(
    listen: &str,
    state: &Path,
    kubeconfig: &Path,
) -> (tokio::process::Child, SocketAddr) {
    let mut cmd = super::support::podgate(&["devcluster", "--listen", listen]);
    cmd.arg("--state")
        .arg(state)
        .arg("--kubeconfig-out")
        .arg(kubeconfig)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(DEADLINE, lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let addr = first
        .strip_prefix("podgate devcluster: serving https://")
        .unwrap_or_else(|| panic!("{first}"))
        .parse()
        .unwrap();
    (child, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_devcluster_killed_mid_session_and_restarted() {
    let gw = TestGateway::start_with(TEST_POLICY, "").await;
    let state = gw.dir.path().join("devcluster-state");
    let kubeconfig = gw.dir.path().join("devcluster-kubeconfig.yaml");
    let (cluster, addr) = devcluster_process("127.0.0.1:0", &state, &kubeconfig).await;
    let mut process = gateway_via(&gw, &kubeconfig, "").await;
    let pid = cluster.id().unwrap() as i32;

    let (code, output) = cat_session_through(&gw, process.ssh_port, || {
        // SAFETY: signalling our own child process.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    })
    .await;
    assert_eq!(code, Some(69), "{output}");
    assert!(output.contains("podgate: error: "), "{output}");
    drop(cluster);

    // Back on the same address with the same state: the gateway carries on by itself.
    let (mut cluster, _) = devcluster_process(&addr.to_string(), &state, &kubeconfig).await;
    let alice = gw.alice().await;
    let args = ["exec", "payments/payments-api-0", "--", "echo", "back"];
    let out = run(gw.ssh_to(process.ssh_port, &alice, "alice", &args), None).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "back\n");
    let ended = ended(&gw);
    assert_eq!(ended.len(), 2, "{ended:?}");
    assert_eq!(ended[0]["end_reason"], "error", "{ended:?}");
    assert_eq!(ended[1]["end_reason"], "exited", "{ended:?}");
    recording_is_readable(&gw).await;
    process.child.start_kill().unwrap();
    cluster.start_kill().unwrap();
}
