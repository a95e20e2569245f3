//! `pods/portforward` after the websocket upgrade (`v4.channel.k8s.io`, as
//! kube-rs speaks it): bridge each requested port to its backend.
//!
//! Port index `i` uses data channel `2i` and error channel `2i+1`, as in the
//! kubelet's websocket port forwarding. Right after the upgrade each of the two
//! channels gets `[ch, port_lo, port_hi]` (kube-rs fails without both). Client
//! bytes on `2i` go to backend `i`; backend bytes come back on `2i` in frames of
//! at most 32 KiB; a failure is reported once on `2i+1` as the kubelet's text
//! `error forwarding port P to pod NS/POD, uid UID: <cause>`, with containerd's
//! cause (`failed to connect to localhost:P inside namespace ...: dial tcp ...`).
//!
//! Lifecycle: a port is done when its backend finished (HTTP answered, TCP peer
//! closed, error reported). When all ports are done the server sends a close
//! frame with code 1000. When the client closes the websocket (kube-rs does
//! when the user has shut down every stream; there is no per-port half-close
//! on the wire) or `shutdown` fires, every backend is dropped at once. After
//! our close, kube-rs's `Portforwarder::join()` returns `SendAfterClosing` if
//! the user shuts a stream down later; the kubelet's close has the same effect.
//!
//! Guarantees: bytes are copied exactly; queues are bounded, so a backend is
//! read only as fast as the websocket drains, and a client is read only as
//! fast as its backends accept; `Address` backends must be loopback. At most
//! 128 ports are served (the channel ids are one byte; kube-rs allows 128).
//!
//! Not guaranteed: `v4.base64` and SPDY (kubectl port-forward) are not spoken.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::SplitStream;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::channel::{self, Task};

/// What answers on one forwarded port.
#[derive(Debug, Clone)]
pub enum Backend {
    /// Answers any HTTP request with 200 and `hello from NAMESPACE/POD port
    /// PORT\n` (`Connection: close`), then finishes the port.
    Http { namespace: String, pod: String },
    /// Writes back every byte read; finishes when the client goes away.
    Echo,
    /// Connects to this loopback address and splices the bytes both ways.
    Address(SocketAddr),
    /// Nothing listens: reports "connection refused" like a kubelet would.
    Unavailable,
}

/// One portforward call, as parsed from the request by the HTTP layer.
pub struct PortForwardRequest {
    pub namespace: String,
    pub pod: String,
    pub uid: String,
    /// In the order of the `ports` query parameter: index i ↔ channels 2i, 2i+1.
    pub ports: Vec<(u16, Backend)>,
}

/// Channel ids are one byte: 128 ports use ids 0..=255.
const MAX_PORTS: usize = 128;
/// Frames queued for the websocket writer.
const OUTBOX_DEPTH: usize = 8;
/// Client frames queued per port.
const TO_BACKEND_DEPTH: usize = 8;
/// The most of an HTTP request head the `Http` backend reads.
const HTTP_HEAD_LIMIT: usize = 16 * 1024;
/// containerd's port forward: once one direction ended, the other gets one
/// second to finish (after socat).
const OTHER_DIRECTION_GRACE: Duration = Duration::from_secs(1);

/// Serve one portforward websocket until every port is done, the client went
/// away, or `shutdown` fired.
pub async fn serve<S>(ws: WebSocketStream<S>, req: PortForwardRequest, shutdown: CancellationToken)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sink, stream) = ws.split();
    let (outbox, mut writer) = channel::spawn_writer(sink, OUTBOX_DEPTH);
    let PortForwardRequest {
        namespace,
        pod,
        uid,
        mut ports,
    } = req;
    if ports.len() > MAX_PORTS {
        tracing::warn!(
            requested = ports.len(),
            "serving only the first {MAX_PORTS} ports"
        );
        ports.truncate(MAX_PORTS);
    }

    // Like the kubelet, every channel gets its initial frame before any
    // backend starts (kube-rs rejects a channel whose first frame is not it).
    let mut forwarded = Vec::with_capacity(ports.len());
    for (index, (number, backend)) in ports.into_iter().enumerate() {
        let Some(data) = index.checked_mul(2).and_then(|id| u8::try_from(id).ok()) else {
            break;
        };
        let error = data.saturating_add(1);
        let le = number.to_le_bytes();
        for message in [channel::binary(data, &le), channel::binary(error, &le)] {
            if outbox.send(message).await.is_err() {
                return;
            }
        }
        let (target, uid, outbox) = (format!("{namespace}/{pod}"), uid.clone(), outbox.clone());
        let port = Port {
            number,
            data,
            error,
            target,
            uid,
            outbox,
        };
        forwarded.push((port, backend));
    }
    let mut backends = JoinSet::new();
    let mut to_backends = Vec::with_capacity(forwarded.len());
    for (port, backend) in forwarded {
        let (tx, rx) = mpsc::channel(TO_BACKEND_DEPTH);
        to_backends.push(Some(tx));
        backends.spawn(forward(port, backend, rx));
    }
    let mut reader = Task::spawn(read_client(stream, to_backends));

    let all_done = tokio::select! {
        biased;
        () = shutdown.cancelled() => false,
        () = reader.join() => false,
        () = writer.join() => false,
        () = async { while backends.join_next().await.is_some() {} } => true,
    };
    if !all_done {
        // Aborting the backends drops (closes) their connections.
        backends.abort_all();
        if shutdown.is_cancelled() {
            channel::close_going_away(&outbox, &mut writer).await;
        }
        return;
    }
    channel::close_normally(outbox, writer, reader, None, &shutdown).await;
}

/// Routes client data frames to the port queues until the websocket ends.
async fn read_client<S>(
    mut stream: SplitStream<WebSocketStream<S>>,
    mut to_backends: Vec<Option<mpsc::Sender<Bytes>>>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    while let Some(message) = stream.next().await {
        let bytes = match message {
            Ok(Message::Binary(bytes)) => bytes,
            Ok(_) => continue,
            Err(error) => {
                tracing::debug!(%error, "portforward websocket read failed");
                return;
            }
        };
        let Some((&id, payload)) = bytes.split_first() else {
            continue;
        };
        // Error channels (odd ids) only flow server → client: ignore them.
        if payload.is_empty() || id % 2 == 1 {
            continue;
        }
        let Some(slot) = to_backends.get_mut(usize::from(id / 2)) else {
            tracing::trace!(id, "data for an unknown port");
            continue;
        };
        if let Some(tx) = slot
            && tx.send(bytes.slice(1..)).await.is_err()
        {
            // The port is done: drop what the client still sends.
            *slot = None;
        }
    }
}

/// One forwarded port: its number, channel ids and the shared outbox.
struct Port {
    number: u16,
    data: u8,
    error: u8,
    /// `NAMESPACE/POD`, as the error texts name the pod.
    target: String,
    uid: String,
    outbox: mpsc::Sender<Message>,
}

impl Port {
    /// Sends backend bytes in frames of at most 32 KiB; false if the client is gone.
    async fn send_data(&self, bytes: &[u8]) -> bool {
        for chunk in bytes.chunks(channel::MAX_DATA_FRAME) {
            if self
                .outbox
                .send(channel::binary(self.data, chunk))
                .await
                .is_err()
            {
                return false;
            }
        }
        true
    }

    /// Reports a failure on the error channel, in the kubelet's words.
    async fn send_error(&self, cause: &str) {
        let message = format!(
            "error forwarding port {} to pod {}, uid {}: {cause}",
            self.number, self.target, self.uid
        );
        tracing::debug!(%message, "portforward failed");
        let _ = self
            .outbox
            .send(channel::binary(self.error, message.as_bytes()))
            .await;
    }

    /// containerd's text for a failed dial of the pod's port.
    fn dial_failure(&self, dialed: &str, error: &io::Error) -> String {
        format!(
            "failed to connect to localhost:{} inside namespace {:?}: dial tcp {dialed}: connect: {}",
            self.number,
            self.target,
            channel::go_error_text(error)
        )
    }
}

async fn forward(port: Port, backend: Backend, from_client: mpsc::Receiver<Bytes>) {
    match backend {
        Backend::Http { namespace, pod } => answer_http(&port, &namespace, &pod, from_client).await,
        Backend::Echo => echo(&port, from_client).await,
        Backend::Address(address) => splice(&port, address, from_client).await,
        Backend::Unavailable => {
            let refused = io::Error::from_raw_os_error(libc::ECONNREFUSED);
            let dialed = format!("127.0.0.1:{}", port.number);
            port.send_error(&port.dial_failure(&dialed, &refused)).await;
        }
    }
}

async fn echo(port: &Port, mut from_client: mpsc::Receiver<Bytes>) {
    while let Some(bytes) = from_client.recv().await {
        if !port.send_data(&bytes).await {
            return;
        }
    }
}

async fn answer_http(
    port: &Port,
    namespace: &str,
    pod: &str,
    mut from_client: mpsc::Receiver<Bytes>,
) {
    let mut head = Vec::new();
    while !head.windows(4).any(|window| window == b"\r\n\r\n") && head.len() < HTTP_HEAD_LIMIT {
        let Some(bytes) = from_client.recv().await else {
            break;
        };
        let room = HTTP_HEAD_LIMIT.saturating_sub(head.len());
        head.extend_from_slice(bytes.get(..room.min(bytes.len())).unwrap_or_default());
    }
    let body = format!("hello from {namespace}/{pod} port {}\n", port.number);
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    port.send_data(response.as_bytes()).await;
}

async fn splice(port: &Port, address: SocketAddr, mut from_client: mpsc::Receiver<Bytes>) {
    // `to_canonical` also accepts ::ffff:127.0.0.1.
    if !address.ip().to_canonical().is_loopback() {
        port.send_error(&format!(
            "the devcluster only forwards to loopback addresses, not {address}"
        ))
        .await;
        return;
    }
    let stream = match TcpStream::connect(address).await {
        Ok(stream) => stream,
        Err(error) => {
            port.send_error(&port.dial_failure(&address.to_string(), &error))
                .await;
            return;
        }
    };
    let local = stream
        .local_addr()
        .map_or_else(|_| "?".to_owned(), |local| local.to_string());
    let (mut from_backend, mut to_backend) = stream.into_split();
    let upstream = async move {
        while let Some(bytes) = from_client.recv().await {
            to_backend
                .write_all(&bytes)
                .await
                .map_err(|error| ("write", error))?;
        }
        to_backend
            .shutdown()
            .await
            .map_err(|error| ("write", error))
    };
    let downstream = async {
        let mut buf = vec![0u8; channel::MAX_DATA_FRAME];
        loop {
            let len = from_backend
                .read(&mut buf)
                .await
                .map_err(|error| ("read", error))?;
            let Some(data) = buf.get(..len).filter(|data| !data.is_empty()) else {
                return Ok(());
            };
            if !port.send_data(data).await {
                return Ok(());
            }
        }
    };
    if let Err((op, error)) = first_then_grace(upstream, downstream).await {
        let cause = format!(
            "{op} tcp {local}->{address}: {op}: {}",
            channel::go_error_text(&error)
        );
        port.send_error(&cause).await;
    }
}

/// Runs both copy directions until one ends, then gives the other
/// `OTHER_DIRECTION_GRACE`; returns the first error (containerd's rule).
async fn first_then_grace<E>(
    upstream: impl Future<Output = Result<(), E>>,
    downstream: impl Future<Output = Result<(), E>>,
) -> Result<(), E> {
    let (mut upstream, mut downstream) = (pin!(upstream), pin!(downstream));
    let (first, second) = tokio::select! {
        first = &mut upstream => (first, tokio::time::timeout(OTHER_DIRECTION_GRACE, downstream).await),
        first = &mut downstream => (first, tokio::time::timeout(OTHER_DIRECTION_GRACE, upstream).await),
    };
    first.and(second.unwrap_or(Ok(())))
}

#[cfg(test)]
#[path = "portforward_tests.rs"]
mod tests;
