//! `channel.k8s.io` framing shared by `pods/exec` and `pods/portforward`.
//!
//! After the HTTP 101 upgrade both subresources speak the same websocket dialect
//! (client-go `wsstream`, kubelet `cri/streaming`): every message is a *binary*
//! frame whose first byte is a stream id and whose remaining bytes are that
//! stream's payload. This module holds the stream ids, the subprotocol names,
//! the `metav1.Status` documents the kubelet writes on the error stream, and the
//! small websocket plumbing both handlers share (one writer task per socket fed
//! by a bounded queue, the normal close frame).
//!
//! Guarantees: the Status builders produce the same fields and texts as the
//! kubelet (`remotecommand.ServeExec`, `apierrors.NewInternalError`); the writer
//! queue is bounded, so a client that stops reading stops its producers.
//!
//! Not guaranteed: the key *order* of the Status JSON. The builders return a
//! `serde_json::Value`, whose keys serialize sorted unless the `preserve_order`
//! feature of `serde_json` is on; kubectl and kube-rs decode JSON, so only the
//! fields matter. The base64 variants (`v4.base64.channel.k8s.io`) are not
//! spoken.

use futures::SinkExt;
use futures::stream::SplitSink;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_util::task::AbortOnDropHandle;

/// Client → server: bytes for the process's stdin.
pub const STDIN: u8 = 0;
/// Server → client: the process's stdout (or the whole PTY output with a tty).
pub const STDOUT: u8 = 1;
/// Server → client: the process's stderr (never used with a tty).
pub const STDERR: u8 = 2;
/// Server → client: one `metav1.Status` JSON document when the command ended.
pub const ERROR: u8 = 3;
/// Client → server: terminal size as JSON `{"Width":W,"Height":H}`.
pub const RESIZE: u8 = 4;
/// Client → server, v5 only: `[255, stream]` means "this stream is closed".
pub const CLOSE: u8 = 255;

/// Largest payload this crate puts in one outgoing data frame. The kubelet
/// copies with 32 KiB buffers too; it keeps frames well under any client limit.
pub const MAX_DATA_FRAME: usize = 32 * 1024;

/// The negotiated `Sec-WebSocket-Protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `v4.channel.k8s.io`: no close stream; a client signals stdin EOF by
    /// closing the whole websocket.
    V4,
    /// `v5.channel.k8s.io`: adds the close stream (id 255), so stdin can end
    /// while output keeps flowing.
    V5,
}

impl Protocol {
    /// The subprotocol token, as echoed in the 101 response.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::V4 => "v4.channel.k8s.io",
            Protocol::V5 => "v5.channel.k8s.io",
        }
    }

    /// Parses one subprotocol token (surrounding whitespace allowed, since
    /// clients send a comma separated list). Other tokens give `None`.
    pub fn from_name(s: &str) -> Option<Self> {
        match s.trim() {
            "v4.channel.k8s.io" => Some(Protocol::V4),
            "v5.channel.k8s.io" => Some(Protocol::V5),
            _ => None,
        }
    }
}

/// `{"metadata":{},"status":"Success"}`: what the kubelet writes when the
/// command exited with 0.
pub fn status_success() -> Value {
    json!({"metadata": {}, "status": "Success"})
}

/// The kubelet's `NonZeroExitCode` Status for exit `code`, with a message that
/// names no command; [`status_exit_code_for`] adds containerd's full text.
///
/// client-go reads the exit code from the `ExitCode` cause with
/// `strconv.ParseUint(msg, 10, 8)`, so the code is clamped to 0..=255.
pub fn status_exit_code(code: i32) -> Value {
    let code = code.clamp(0, 255);
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!("command terminated with non-zero exit code: exit code {code}"),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
    })
}

/// The kubelet's `NonZeroExitCode` Status for `command`, with containerd's
/// error text: `command terminated with non-zero exit code: error executing
/// command [sh -c exit 3], exit code 3` (Go's `%v` of a string slice).
pub fn status_exit_code_for(command: &[String], code: i32) -> Value {
    let code = code.clamp(0, 255);
    let mut status = status_exit_code(code);
    if let Some(fields) = status.as_object_mut() {
        let argv = command.join(" ");
        let message = format!(
            "command terminated with non-zero exit code: error executing command [{argv}], exit code {code}"
        );
        fields.insert("message".to_owned(), Value::String(message));
    }
    status
}

/// `apierrors.NewInternalError(err)` as the kubelet writes it when the command
/// could not be run at all; kubectl prints `error: Internal error occurred: <m>`.
pub fn status_internal_error(message: &str) -> Value {
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!("Internal error occurred: {message}"),
        "reason": "InternalError",
        "details": {"causes": [{"message": message}]},
        "code": 500,
    })
}

/// A binary frame payload: `[channel] + payload`.
pub fn frame(channel: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len().saturating_add(1));
    out.push(channel);
    out.extend_from_slice(payload);
    out
}

/// A binary websocket message carrying `frame(channel, payload)`.
pub(super) fn binary(channel: u8, payload: &[u8]) -> Message {
    Message::Binary(frame(channel, payload).into())
}

/// The Status document as the binary message for the error stream.
pub(super) fn status_message(status: &Value) -> Message {
    // Serializing a Value cannot fail (all keys are strings).
    let json = serde_json::to_vec(status).unwrap_or_default();
    binary(ERROR, &json)
}

/// A close frame with `code`. kubectl needs one with 1000 (Normal) after the
/// status: without it, it reports `close 1006 (abnormal closure)` and exits 1.
pub(super) fn close_message(code: CloseCode) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: "".into(),
    }))
}

/// On shutdown: queue a close frame with 1001 (Going Away) and give the writer
/// a moment to send it, without waiting on a client that does not read.
pub(super) async fn close_going_away(outbox: &mpsc::Sender<Message>, writer: &mut Task) {
    if outbox.try_send(close_message(CloseCode::Away)).is_ok() {
        let _ = tokio::time::timeout(SHUTDOWN_CLOSE_GRACE, writer.join()).await;
    }
}

/// How long a shutdown waits for the going-away close frame to be sent.
const SHUTDOWN_CLOSE_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

/// The websocket's outgoing half, driven by one task that owns the sink.
pub(super) type WsSink<S> = SplitSink<WebSocketStream<S>, Message>;

/// Spawns the single writer of a websocket: it sends queued messages in order
/// and ends after sending a close frame, when every sender is dropped, or when
/// a send fails (the client is gone). The queue holds at most `depth`
/// messages, so producers wait while the client is slow to read.
pub(super) fn spawn_writer<S>(mut sink: WsSink<S>, depth: usize) -> (mpsc::Sender<Message>, Task)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (tx, mut rx) = mpsc::channel::<Message>(depth.max(1));
    let task = Task::spawn(async move {
        while let Some(message) = rx.recv().await {
            let is_close = message.is_close();
            if let Err(error) = sink.send(message).await {
                tracing::debug!(%error, "websocket send failed; client gone");
                return;
            }
            if is_close {
                return;
            }
        }
    });
    (tx, task)
}

/// How long a finished stream waits for the client's close frame.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// End a stream normally: send `last` (e.g. the exec status) if any, then a Normal close
/// frame, wait for the writer to drain, then wait briefly for the client's close frame so
/// the closing handshake completes. Shutdown cuts the wait short.
pub(super) async fn close_normally(
    outbox: mpsc::Sender<Message>,
    mut writer: Task,
    mut reader: Task,
    last: Option<Message>,
    shutdown: &tokio_util::sync::CancellationToken,
) {
    let sent = async {
        let delivered = match last {
            Some(m) => outbox.send(m).await.is_ok(),
            None => true,
        };
        if delivered {
            let _ = outbox.send(close_message(CloseCode::Normal)).await;
        }
        drop(outbox);
        writer.join().await;
    };
    tokio::select! {
        biased;
        () = shutdown.cancelled() => return,
        () = sent => {}
    }
    if tokio::time::timeout(CLOSE_GRACE, reader.join())
        .await
        .is_err()
    {
        tracing::debug!("client did not answer the close frame");
    }
}

/// An OS error in Go's spelling: lower case, without Rust's "(os error N)".
pub(super) fn go_error_text(error: &std::io::Error) -> String {
    let text = match error.raw_os_error() {
        Some(code) => nix::errno::Errno::from_raw(code).desc().to_owned(),
        None => error.to_string(),
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => text,
    }
}

/// A spawned task that is aborted when this handle is dropped (so nothing a
/// session started outlives it, even if the caller drops `serve`'s future), and
/// that can be waited for from several `select!`s.
pub(super) struct Task(Option<AbortOnDropHandle<()>>);

impl Task {
    pub(super) fn spawn<F>(future: F) -> Self
    where
        F: Future<Output = ()> + Send + 'static,
    {
        Task(Some(AbortOnDropHandle::new(tokio::spawn(future))))
    }

    /// Waits until the task has ended; returns at once if it already has.
    /// Cancel safe: dropping this future leaves the task running.
    pub(super) async fn join(&mut self) {
        if let Some(handle) = self.0.as_mut() {
            if let Err(error) = handle.await
                && error.is_panic()
            {
                tracing::error!(%error, "session task panicked");
            }
            self.0 = None;
        }
    }
}

/// Websocket plumbing for the tests of `exec` and `portforward`.
#[cfg(test)]
pub(super) mod test_support {
    use std::time::Duration;

    use futures::{SinkExt, StreamExt};
    use tokio::io::DuplexStream;
    use tokio::task::JoinHandle;
    use tokio_tungstenite::WebSocketStream;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::Role;

    /// Upper bound for every await in the tests.
    pub(in super::super) const LIMIT: Duration = Duration::from_secs(20);

    pub(in super::super) type Socket = WebSocketStream<DuplexStream>;

    /// (server end, client end) of a websocket over an in-memory pipe.
    pub(in super::super) async fn socket_pair() -> (Socket, Socket) {
        let (server, client) = tokio::io::duplex(64 * 1024);
        let server = WebSocketStream::from_raw_socket(server, Role::Server, None).await;
        let client = WebSocketStream::from_raw_socket(client, Role::Client, None).await;
        (server, client)
    }

    /// The next message, `None` once the stream ended (or failed).
    pub(in super::super) async fn next_message(client: &mut Socket) -> Option<Message> {
        tokio::time::timeout(LIMIT, client.next())
            .await
            .expect("server went silent")?
            .ok()
    }

    pub(in super::super) async fn send_binary(client: &mut Socket, bytes: &[u8]) {
        tokio::time::timeout(LIMIT, client.send(Message::binary(bytes.to_vec())))
            .await
            .expect("send timed out")
            .expect("send failed");
    }

    pub(in super::super) async fn joined(task: JoinHandle<()>) {
        tokio::time::timeout(LIMIT, task)
            .await
            .expect("serve did not return")
            .expect("serve panicked");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_names_round_trip() {
        for protocol in [Protocol::V4, Protocol::V5] {
            assert_eq!(Protocol::from_name(protocol.name()), Some(protocol));
        }
        assert_eq!(
            Protocol::from_name(" v5.channel.k8s.io "),
            Some(Protocol::V5)
        );
        assert_eq!(Protocol::from_name("v4.base64.channel.k8s.io"), None);
        assert_eq!(Protocol::from_name(""), None);
    }

    #[test]
    fn success_status_is_the_kubelet_document() {
        assert_eq!(
            serde_json::to_string(&status_success()).unwrap(),
            r#"{"metadata":{},"status":"Success"}"#
        );
    }

    #[test]
    fn exit_code_status_carries_the_command_and_the_code_cause() {
        let argv: Vec<String> = ["sh", "-c", "exit 3"].map(String::from).to_vec();
        let status = status_exit_code_for(&argv, 3);
        assert_eq!(
            status,
            json!({
                "metadata": {},
                "status": "Failure",
                "message": "command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3",
                "reason": "NonZeroExitCode",
                "details": {"causes": [{"reason": "ExitCode", "message": "3"}]},
            })
        );
    }

    #[test]
    fn exit_codes_are_clamped_to_a_byte() {
        assert_eq!(
            status_exit_code(300)["details"]["causes"][0]["message"],
            "255"
        );
        assert_eq!(status_exit_code(-1)["details"]["causes"][0]["message"], "0");
        assert_eq!(status_exit_code(3)["reason"], "NonZeroExitCode");
    }

    #[test]
    fn internal_error_status_matches_new_internal_error() {
        assert_eq!(
            status_internal_error("boom"),
            json!({
                "metadata": {},
                "status": "Failure",
                "message": "Internal error occurred: boom",
                "reason": "InternalError",
                "details": {"causes": [{"message": "boom"}]},
                "code": 500,
            })
        );
    }

    #[test]
    fn go_error_text_is_lower_case_without_the_os_error_suffix() {
        let refused = std::io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert_eq!(go_error_text(&refused), "connection refused");
        assert_eq!(go_error_text(&std::io::Error::other("Boom")), "boom");
    }

    #[test]
    fn frames_prefix_the_channel() {
        assert_eq!(frame(STDOUT, b"hi"), vec![1, b'h', b'i']);
        assert_eq!(frame(CLOSE, b""), vec![255]);
    }
}
