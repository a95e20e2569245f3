//! `pods/portforward` between one SSH `direct-tcpip` channel and one kube-rs
//! `Portforwarder` (one websocket per forwarded TCP connection, as the v4 protocol needs).
//!
//! Bytes are copied both ways at once (two loops joined, never one after the other: a
//! stalled direction must not stop the other, or an echo server deadlocks), with bounded
//! buffers: the SSH channel's own window and queue on one side, kube-rs's 1 MiB duplex on
//! the other. A stalled reader therefore stops its writer instead of growing memory.
//!
//! Half-close: the v4 port-forward protocol cannot carry a half-close to the pod (kube-rs
//! turns our EOF into closing the whole websocket and drops what the pod still sends). So
//! when the client sends EOF we keep relaying the pod's bytes and close only after the pod
//! has been quiet for `EOF_LINGER` (or closes itself). Nothing the pod sends in answer to
//! the last request is lost; a pod that waits for EOF before answering sees the close.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Portforwarder};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use super::BridgeError;
use crate::recording::forward::ForwardRecord;

/// After the client's EOF, how long the pod may stay quiet before the forward closes.
pub const EOF_LINGER: Duration = Duration::from_secs(2);
/// Copy buffer per direction (one SSH packet's worth is 32 KiB).
const CHUNK: usize = 32 * 1024;

/// Open the websocket for `port` of the pod (the API's answer, e.g. 403 or 404, is the
/// error).
pub async fn open(
    client: kube::Client,
    namespace: &str,
    pod: &str,
    port: u16,
) -> Result<Portforwarder, BridgeError> {
    let pods: Api<Pod> = Api::namespaced(client, namespace);
    pods.portforward(pod, &[port])
        .await
        .map_err(BridgeError::from_kube)
}

/// How a forwarded connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// The pod closed its end (or was quiet for `EOF_LINGER` after the client's EOF).
    Done,
    /// The client closed the channel.
    ClientClosed,
    /// The caller's `stop` completed (expiry, revocation, idle).
    Stopped,
    /// The pod side reported an error (e.g. nothing listens on the port).
    PodError(String),
    /// Copying failed.
    Failed(String),
}

/// Copy between `client` (the SSH channel) and the pod until one side is done or `stop`
/// completes. `touch` is called on traffic (idle tracking).
pub async fn run<C>(
    mut forwarder: Portforwarder,
    port: u16,
    client: C,
    counts: &ForwardRecord,
    touch: &(dyn Fn() + Send + Sync),
    stop: impl std::future::Future<Output = ()>,
) -> Ended
where
    C: AsyncRead + AsyncWrite + Send,
{
    let Some(pod) = forwarder.take_stream(port) else {
        return Ended::Failed(format!("no stream for port {port}"));
    };
    let pod_error = forwarder.take_error(port);
    let (mut pod_rx, mut pod_tx) = tokio::io::split(pod);
    let (mut client_rx, mut client_tx) = tokio::io::split(client);
    let (eof_tx, eof_rx) = watch::channel(false);

    let up = async {
        let mut buf = vec![0u8; CHUNK];
        loop {
            match client_rx.read(&mut buf).await {
                Ok(0) => {
                    let _ = eof_tx.send(true);
                    return None;
                }
                Ok(n) => {
                    touch();
                    counts.to_pod(n);
                    let chunk = buf.get(..n).unwrap_or_default();
                    if let Err(e) = pod_tx.write_all(chunk).await {
                        return Some(Ended::Failed(format!("writing to the pod: {e}")));
                    }
                }
                Err(_) => return Some(Ended::ClientClosed),
            }
        }
    };
    let down = async {
        let mut buf = vec![0u8; CHUNK];
        let mut eof_rx = eof_rx;
        loop {
            let lingering = *eof_rx.borrow();
            let read = async {
                if lingering {
                    tokio::time::timeout(EOF_LINGER, pod_rx.read(&mut buf))
                        .await
                        .ok()
                } else {
                    tokio::select! {
                        r = pod_rx.read(&mut buf) => Some(r),
                        // Re-arm with the linger once the client sent EOF.
                        _ = eof_rx.changed() => None,
                    }
                }
            };
            let n = match read.await {
                Some(Ok(0)) => break,
                Some(Ok(n)) => n,
                Some(Err(e)) => return Ended::Failed(format!("reading from the pod: {e}")),
                None if lingering => break,
                None => continue,
            };
            touch();
            counts.from_pod(n);
            if client_tx
                .write_all(buf.get(..n).unwrap_or_default())
                .await
                .is_err()
            {
                return Ended::ClientClosed;
            }
        }
        // RFC 4254 §5.3: EOF, then the caller's drop closes the channel.
        let _ = client_tx.shutdown().await;
        Ended::Done
    };
    let pod_error = async {
        match pod_error {
            Some(fut) => match fut.await {
                Some(message) => message,
                None => std::future::pending().await,
            },
            None => std::future::pending().await,
        }
    };
    tokio::pin!(up, down, pod_error, stop);
    let mut up_done = false;
    let ended = loop {
        tokio::select! {
            r = &mut up, if !up_done => match r {
                Some(ended) => break ended,
                None => up_done = true,
            },
            ended = &mut down => break ended,
            message = &mut pod_error => break Ended::PodError(message),
            _ = &mut stop => break Ended::Stopped,
        }
    };
    forwarder.abort();
    ended
}
