//! kube-rs (the client podgate itself uses) against the devcluster: exec with and without
//! a TTY, port-forward, followed logs, and impersonation set in the client config.

use futures::{AsyncBufReadExt, SinkExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, AttachParams, LogParams, TerminalSize};
use rand::RngCore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::support::{DEADLINE, TestCluster};

async fn within<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, f).await.expect("timed out")
}

/// Non-TTY exec: stdin streamed with EOF passed on, stdout and stderr kept apart, status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_without_tty_keeps_streams_apart() {
    let c = TestCluster::start().await;
    let pods: Api<Pod> = Api::namespaced(c.kube_client("admin").await, "payments");
    let ap = AttachParams::default()
        .stdin(true)
        .stdout(true)
        .stderr(true);
    let mut p = within(pods.exec(
        "payments-api-0",
        ["sh", "-c", "cat; echo done >&2; exit 5"],
        &ap,
    ))
    .await
    .unwrap();
    let mut stdin = p.stdin().unwrap();
    let mut stdout = p.stdout().unwrap();
    let mut stderr = p.stderr().unwrap();
    let status = p.take_status().unwrap();
    within(stdin.write_all(b"through cat\n")).await.unwrap();
    within(stdin.shutdown()).await.unwrap();
    drop(stdin);
    let mut out = String::new();
    within(stdout.read_to_string(&mut out)).await.unwrap();
    let mut err = String::new();
    within(stderr.read_to_string(&mut err)).await.unwrap();
    assert_eq!(out, "through cat\n");
    assert_eq!(err, "done\n");
    let st = within(status).await.unwrap();
    assert_eq!(st.reason.as_deref(), Some("NonZeroExitCode"));
    let cause = &st.details.unwrap().causes.unwrap()[0];
    assert_eq!(cause.reason.as_deref(), Some("ExitCode"));
    assert_eq!(cause.message.as_deref(), Some("5"));
    within(p.join()).await.unwrap();
}

/// TTY exec: a resize sent by the client is what `stty size` reports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_with_tty_observes_resize() {
    let c = TestCluster::start().await;
    let pods: Api<Pod> = Api::namespaced(c.kube_client("admin").await, "payments");
    let ap = AttachParams::interactive_tty();
    let mut p = within(pods.exec(
        "payments-api-0",
        ["sh", "-c", "stty -echo; while read x; do stty size; done"],
        &ap,
    ))
    .await
    .unwrap();
    let mut sizes = p.terminal_size().unwrap();
    let mut stdin = p.stdin().unwrap();
    let mut stdout = p.stdout().unwrap();
    within(sizes.send(TerminalSize {
        width: 100,
        height: 40,
    }))
    .await
    .unwrap();
    // The resize and the stdin line travel separately inside kube-rs; ask until the size
    // the shell reports is the new one (each ask waits for its own answer).
    let mut seen = String::new();
    for _ in 0..50 {
        within(stdin.write_all(b"size?\n")).await.unwrap();
        let mut buf = [0u8; 256];
        let n = within(stdout.read(&mut buf)).await.unwrap();
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        if seen.contains("40 100") {
            break;
        }
    }
    assert!(seen.contains("40 100"), "{seen:?}");
    p.abort();
}

/// Port-forward: 1 MiB of random bytes echoed back byte-exact, and the http server answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portforward_echo_and_http() {
    let c = TestCluster::start().await;
    let pods: Api<Pod> = Api::namespaced(c.kube_client("admin").await, "payments");

    let mut pf = within(pods.portforward("payments-api-0", &[9000]))
        .await
        .unwrap();
    let stream = pf.take_stream(9000).unwrap();
    let (mut r, mut w) = tokio::io::split(stream);
    let mut data = vec![0u8; 1 << 20];
    rand::rng().fill_bytes(&mut data);
    let sent = data.clone();
    let writer = tokio::spawn(async move {
        w.write_all(&sent).await.unwrap();
        w
    });
    let mut back = vec![0u8; data.len()];
    within(r.read_exact(&mut back)).await.unwrap();
    assert!(back == data, "echoed bytes differ");
    let w = within(writer).await.unwrap();
    drop((r, w));
    pf.abort();

    let mut pf = within(pods.portforward("payments-api-0", &[8080]))
        .await
        .unwrap();
    let mut s = pf.take_stream(8080).unwrap();
    within(s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
        .await
        .unwrap();
    let mut resp = Vec::new();
    within(s.read_to_end(&mut resp)).await.unwrap();
    let resp = String::from_utf8(resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "{resp}");
    assert!(
        resp.ends_with("hello from payments/payments-api-0 port 8080\n"),
        "{resp}"
    );
    drop(s);
    let _ = within(pf.join()).await;

    // A port nothing listens on reports the kubelet's error on the error channel.
    let mut pf = within(pods.portforward("payments-api-0", &[7777]))
        .await
        .unwrap();
    let err = pf.take_error(7777).unwrap();
    let msg = within(err).await.unwrap_or_default();
    assert!(msg.contains("error forwarding port 7777"), "{msg}");
    pf.abort();
}

/// Followed logs arrive line by line as heartbeats are written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_stream_follows() {
    let c = TestCluster::start().await;
    let pods: Api<Pod> = Api::namespaced(c.kube_client("admin").await, "payments");
    let lp = LogParams {
        follow: true,
        ..Default::default()
    };
    let stream = within(pods.log_stream("payments-api-0", &lp))
        .await
        .unwrap();
    let mut lines = stream.lines();
    let mut seen = Vec::new();
    while seen
        .iter()
        .filter(|l: &&String| l.starts_with("heartbeat"))
        .count()
        < 2
    {
        let line = within(lines.try_next()).await.unwrap().unwrap();
        seen.push(line);
    }
    assert_eq!(&seen[..2], ["starting payments-api", "listening on :8080"]);
}

/// Impersonation configured on the client, as the gateway will: allowed for the group
/// with a RoleBinding, forbidden (403 Status, no fallback) otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impersonation_in_the_client_config() {
    let c = TestCluster::start().await;
    let kc = kube::config::Kubeconfig::read_from(&c.kubeconfig).unwrap();
    let opts = kube::config::KubeConfigOptions {
        context: Some("gateway".into()),
        ..Default::default()
    };
    let as_user = |groups: &[&str]| {
        let kc = kc.clone();
        let opts = opts.clone();
        let groups: Vec<String> = groups.iter().map(|g| (*g).to_owned()).collect();
        async move {
            let mut config = kube::Config::from_custom_kubeconfig(kc, &opts)
                .await
                .unwrap();
            config.auth_info.impersonate = Some("alice@corp.example".into());
            config.auth_info.impersonate_groups = Some(groups);
            kube::Client::try_from(config).unwrap()
        }
    };
    let pods: Api<Pod> = Api::namespaced(as_user(&["jit:oncall:payments"]).await, "payments");
    let mut p = within(pods.exec("payments-api-0", ["echo", "ok"], &AttachParams::default()))
        .await
        .unwrap();
    let mut out = String::new();
    within(p.stdout().unwrap().read_to_string(&mut out))
        .await
        .unwrap();
    assert_eq!(out, "ok\n");

    let pods: Api<Pod> = Api::namespaced(as_user(&["jit:readonly"]).await, "payments");
    let err = within(pods.exec("payments-api-0", ["echo", "no"], &AttachParams::default()))
        .await
        .err()
        .expect("exec must be refused");
    match err {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 403);
            assert!(
                s.message.contains("cannot get resource \"pods/exec\""),
                "{}",
                s.message
            );
        }
        other => panic!("unexpected error {other:?}"),
    }
    let names: Vec<String> = within(pods.list(&Default::default()))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    assert!(names.contains(&"payments-api-0".to_owned()));
}
