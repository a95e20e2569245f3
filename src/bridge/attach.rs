//! `pods/exec` over a websocket podgate opens itself, with the same interface as kube-rs's
//! `AttachedProcess` (stdin/stdout/stderr pipes, the status, terminal resizes).
//!
//! Why not `Api::exec`: kube-client 5.0 opens the websocket with tungstenite's default
//! configuration and no way to change it, and tungstenite zero-fills its whole read buffer
//! (128 KiB by default) before every read. That kept 128 KiB resident per running session
//! (half of a session's memory) and cost a memset of up to 128 KiB per read on the bulk
//! path (docs/BENCHMARKS.md, P4). Here the read buffer is 16 KiB. The request still goes
//! through the session's own `kube::Client` (`Client::send`), so authentication,
//! impersonation and TLS are exactly kube-rs's; only the upgrade and the framing are here.
//!
//! The message loop follows kube-client 5.0's `remote_command.rs` (Apache-2.0), channel
//! numbers from Kubernetes' `remotecommand/constants.go`: 0 stdin, 1 stdout, 2 stderr,
//! 3 status (a `Status` object when the command ends), 4 resize, 255 close (v5 only, to
//! send stdin's EOF). One difference: the output pipes are shut down whenever the loop
//! ends, also on a websocket error (kube-rs leaves them open, see `exec.rs`).
//!
//! Guarantees: the pipes and queues are bounded (the sizes in `AttachParams`, 10 resizes),
//! and so is what one message from the API server may make us buffer (`MAX_MESSAGE`);
//! dropping `Attached` or calling `abort` stops the loop and closes the websocket.

use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::header::{self, HeaderValue};
use http_body_util::BodyExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use kube::api::{AttachParams, TerminalSize};
use tokio::io::{AsyncWriteExt, ReadHalf, SimplexStream, WriteHalf};
use tokio::sync::oneshot;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::{self as ws, protocol::Role, protocol::WebSocketConfig};

use super::BridgeError;

const STDIN_CHANNEL: u8 = 0;
const STDOUT_CHANNEL: u8 = 1;
const STDERR_CHANNEL: u8 = 2;
const STATUS_CHANNEL: u8 = 3;
const RESIZE_CHANNEL: u8 = 4;
const CLOSE_CHANNEL: u8 = 255;

const V5: &str = "v5.channel.k8s.io";
const V4: &str = "v4.channel.k8s.io";

/// tungstenite's read buffer (see the module comment).
const READ_BUFFER: usize = 16 * 1024;
/// The largest message and frame taken from the API server: output arrives in chunks of
/// tens of KiB, a status is small; tungstenite's defaults (64 and 16 MiB) would let one
/// session's peer make the gateway buffer that much.
const MAX_MESSAGE: usize = 8 * 1024 * 1024;
/// kube-rs's default pipe size, for parameters that give none.
const DEFAULT_PIPE: usize = 1024;
/// An idle exec is kept alive with a ping this often (as kube-rs does).
const PING_EVERY: Duration = Duration::from_secs(60);

pub type TerminalSizeSender = futures::channel::mpsc::Sender<TerminalSize>;

/// A command running in a pod.
pub struct Attached {
    stdin: Option<WriteHalf<SimplexStream>>,
    stdout: Option<ReadHalf<SimplexStream>>,
    stderr: Option<ReadHalf<SimplexStream>>,
    status: Option<oneshot::Receiver<Status>>,
    resize: Option<TerminalSizeSender>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Attached {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Attached {
    pub fn stdin(&mut self) -> Option<WriteHalf<SimplexStream>> {
        self.stdin.take()
    }

    pub fn stdout(&mut self) -> Option<ReadHalf<SimplexStream>> {
        self.stdout.take()
    }

    pub fn stderr(&mut self) -> Option<ReadHalf<SimplexStream>> {
        self.stderr.take()
    }

    /// Resolves with the command's status, or `None` when the stream ended without one.
    pub fn take_status(&mut self) -> Option<impl Future<Output = Option<Status>> + use<>> {
        self.status.take().map(|rx| async move { rx.await.ok() })
    }

    pub fn terminal_size(&mut self) -> Option<TerminalSizeSender> {
        self.resize.take()
    }

    /// Stop at once; the remote command loses its streams.
    pub fn abort(&self) {
        self.task.abort();
    }

    /// Wait for the loop to end (after dropping this side's pipes, so it cannot block on
    /// a full one).
    pub async fn join(mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.shutdown().await;
        }
        self.stdout = None;
        self.stderr = None;
        self.status = None;
        self.resize = None;
        let _ = (&mut self.task).await;
    }
}

/// Start `command` in `pod` through `client` (the session's impersonating client).
pub async fn exec(
    client: &kube::Client,
    namespace: &str,
    pod: &str,
    command: Vec<String>,
    ap: &AttachParams,
) -> Result<Attached, BridgeError> {
    let url = format!("/api/v1/namespaces/{namespace}/pods");
    let mut req = kube::core::Request::new(url)
        .exec(pod, command, ap)
        .map_err(|e| BridgeError::from_kube(kube::Error::BuildRequest(e)))?;
    req.extensions_mut().insert("exec");
    let key = ws::handshake::client::generate_key();
    let headers = req.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(
        header::SEC_WEBSOCKET_VERSION,
        HeaderValue::from_static("13"),
    );
    headers.insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static("v5.channel.k8s.io, v4.channel.k8s.io"),
    );
    let key_value = HeaderValue::from_str(&key)
        .map_err(|e| BridgeError::request_failed(format!("websocket key: {e}")))?;
    headers.insert(header::SEC_WEBSOCKET_KEY, key_value);
    let req = req.map(kube::client::Body::from);
    let res = client.send(req).await.map_err(BridgeError::from_kube)?;
    let code = res.status();
    if code.is_client_error() || code.is_server_error() {
        return Err(api_error(code, res.into_body()).await);
    }
    let v5 = verify_upgrade(&res, &key)?;
    let upgraded = hyper::upgrade::on(res)
        .await
        .map_err(|e| BridgeError::request_failed(format!("websocket upgrade failed: {e}")))?;
    let mut config = WebSocketConfig::default();
    config.read_buffer_size = READ_BUFFER;
    config.max_message_size = Some(MAX_MESSAGE);
    config.max_frame_size = Some(MAX_MESSAGE);
    let stream = WebSocketStream::from_raw_socket(
        hyper_util::rt::TokioIo::new(upgraded),
        Role::Client,
        Some(config),
    )
    .await;

    let pipe = |size: Option<usize>| tokio::io::simplex(size.unwrap_or(DEFAULT_PIPE));
    let (stdin_reader, stdin_writer) = pipe(ap.max_stdin_buf_size);
    let (stdout_reader, stdout_writer) = if ap.stdout {
        let (r, w) = pipe(ap.max_stdout_buf_size);
        (Some(r), Some(w))
    } else {
        (None, None)
    };
    let (stderr_reader, stderr_writer) = if ap.stderr {
        let (r, w) = pipe(ap.max_stderr_buf_size);
        (Some(r), Some(w))
    } else {
        (None, None)
    };
    let (status_tx, status_rx) = oneshot::channel();
    let (resize_tx, resize_rx) = if ap.tty {
        let (tx, rx) = futures::channel::mpsc::channel(10);
        (Some(tx), Some(rx))
    } else {
        (None, None)
    };
    let task = tokio::spawn(message_loop(
        stream,
        v5,
        stdin_reader,
        Outputs {
            stdout: stdout_writer,
            stderr: stderr_writer,
        },
        status_tx,
        resize_rx,
    ));
    Ok(Attached {
        stdin: ap.stdin.then_some(stdin_writer),
        stdout: stdout_reader,
        stderr: stderr_reader,
        status: Some(status_rx),
        resize: resize_tx,
        task,
    })
}

/// A refused upgrade's body: a `Status` (as the API server sends), or text.
async fn api_error(code: http::StatusCode, body: kube::client::Body) -> BridgeError {
    let bytes = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return BridgeError::from_kube(e),
    };
    let text = String::from_utf8_lossy(&bytes);
    match serde_json::from_str::<kube::core::Status>(&text) {
        Ok(status) => BridgeError::Api {
            code: status.code,
            message: status.message,
        },
        Err(_) => BridgeError::Api {
            code: code.as_u16(),
            message: text.trim().to_owned(),
        },
    }
}

/// RFC 6455 §4.1: 101, `Upgrade: websocket`, `Connection: Upgrade`, the accept key; and a
/// subprotocol we offered. Returns whether it is v5 (which can signal stdin's EOF).
fn verify_upgrade<B>(res: &http::Response<B>, key: &str) -> Result<bool, BridgeError> {
    let fail = |what: &str| {
        Err(BridgeError::request_failed(format!(
            "the exec upgrade failed ({what})"
        )))
    };
    if res.status() != http::StatusCode::SWITCHING_PROTOCOLS {
        return fail(&format!("status {}", res.status()));
    }
    let h = res.headers();
    let is = |name: header::HeaderName, value: &str| {
        h.get(name)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case(value))
    };
    if !is(header::UPGRADE, "websocket") || !is(header::CONNECTION, "upgrade") {
        return fail("no websocket upgrade headers");
    }
    let accept = ws::handshake::derive_accept_key(key.as_bytes());
    if h.get(header::SEC_WEBSOCKET_ACCEPT)
        .is_none_or(|v| v.as_bytes() != accept.as_bytes())
    {
        return fail("wrong Sec-WebSocket-Accept");
    }
    match h
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
    {
        Some(V5) => Ok(true),
        Some(V4) => Ok(false),
        _ => fail("no subprotocol we offered"),
    }
}

struct Outputs {
    stdout: Option<WriteHalf<SimplexStream>>,
    stderr: Option<WriteHalf<SimplexStream>>,
}

async fn message_loop(
    stream: WebSocketStream<hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>>,
    v5: bool,
    stdin: ReadHalf<SimplexStream>,
    mut out: Outputs,
    status_tx: oneshot::Sender<Status>,
    mut resize_rx: Option<futures::channel::mpsc::Receiver<TerminalSize>>,
) {
    let (mut send, mut recv) = stream.split();
    let mut stdin = tokio_util::io::ReaderStream::new(stdin);
    let mut stdin_open = true;
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.reset();
    let mut status_tx = Some(status_tx);
    loop {
        let resize_next = async {
            match resize_rx.as_mut() {
                Some(rx) => rx.next().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = ping.tick() => {
                if send.send(ws::Message::Ping(Bytes::new())).await.is_err() {
                    break;
                }
            }
            message = recv.next() => match message {
                Some(Ok(ws::Message::Binary(bin))) => {
                    let (Some(&channel), Some(data)) = (bin.first(), bin.get(1..)) else {
                        continue;
                    };
                    if data.is_empty() {
                        // The channel-number-only frames sent at the start.
                        continue;
                    }
                    let pipe = match channel {
                        STDOUT_CHANNEL => out.stdout.as_mut(),
                        STDERR_CHANNEL => out.stderr.as_mut(),
                        STATUS_CHANNEL => {
                            if let (Ok(status), Some(tx)) =
                                (serde_json::from_slice::<Status>(data), status_tx.take())
                            {
                                let _ = tx.send(status);
                            }
                            break;
                        }
                        _ => None,
                    };
                    if let Some(pipe) = pipe
                        && pipe.write_all(data).await.is_err()
                    {
                        // Our reader is gone: nothing more to deliver.
                        break;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            },
            chunk = stdin.next(), if stdin_open => match chunk {
                Some(Ok(bytes)) if !bytes.is_empty() => {
                    let mut frame = Vec::with_capacity(bytes.len() + 1);
                    frame.push(STDIN_CHANNEL);
                    frame.extend_from_slice(&bytes);
                    if send.send(ws::Message::binary(frame)).await.is_err() {
                        break;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => {
                    stdin_open = false;
                    // v5 signals stdin's EOF; v4 can only close the whole websocket.
                    let sent = if v5 {
                        send.send(ws::Message::binary(vec![CLOSE_CHANNEL, STDIN_CHANNEL])).await
                    } else {
                        send.close().await
                    };
                    if sent.is_err() {
                        break;
                    }
                }
            },
            size = resize_next => match size {
                Some(size) => {
                    let Ok(json) = serde_json::to_vec(&size) else { continue };
                    let mut frame = Vec::with_capacity(json.len() + 1);
                    frame.push(RESIZE_CHANNEL);
                    frame.extend_from_slice(&json);
                    if send.send(ws::Message::binary(frame)).await.is_err() {
                        break;
                    }
                }
                None => resize_rx = None,
            },
        }
    }
    // Always, so that readers see EOF after what was delivered.
    if let Some(mut w) = out.stdout.take() {
        let _ = w.shutdown().await;
    }
    if let Some(mut w) = out.stderr.take() {
        let _ = w.shutdown().await;
    }
}
