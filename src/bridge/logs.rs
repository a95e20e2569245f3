//! `pods/log` to an SSH channel: the log bytes as the API serves them, until the stream
//! ends (or, with `-f`, until the client closes the channel).

use futures::AsyncReadExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, LogParams};

use super::BridgeError;
use crate::metrics::Metrics;
use crate::request::LogOptions;
use crate::ssh::io::{Absorbed, ChannelIo, lf_to_crlf};

const CHUNK: usize = 32 * 1024;

/// Stream the log of `container` to `io`. Returns when the log ends or the client left.
pub async fn run(
    client: kube::Client,
    namespace: &str,
    pod: &str,
    container: &str,
    options: &LogOptions,
    io: &mut ChannelIo,
    metrics: &Metrics,
) -> Result<(), BridgeError> {
    let pods: Api<Pod> = Api::namespaced(client, namespace);
    let params = LogParams {
        container: Some(container.to_owned()),
        follow: options.follow,
        previous: options.previous,
        timestamps: options.timestamps,
        tail_lines: options.tail,
        since_seconds: options
            .since
            .map(|d| i64::try_from(d.as_secs().max(1)).unwrap_or(i64::MAX)),
        ..Default::default()
    };
    let stream = metrics
        .timed("logs", pods.log_stream(pod, &params))
        .await
        .map_err(BridgeError::from_kube)?;
    let mut stream = Box::pin(stream);
    let mut buf = vec![0u8; CHUNK];
    let lifetime = io.lifetime.clone();
    loop {
        tokio::select! {
            // The session must end (expiry, idle, revocation); the caller says why.
            _ = lifetime.stopped() => return Ok(()),
            n = stream.read(&mut buf) => match n {
                Ok(0) => return Ok(()),
                Ok(n) => {
                    let text = buf.get(..n).unwrap_or_default();
                    let bytes = if io.pty.is_some() {
                        bytes::Bytes::from(lf_to_crlf(text))
                    } else {
                        bytes::Bytes::copy_from_slice(text)
                    };
                    if io.out(bytes).await.is_err() {
                        return Ok(());
                    }
                }
                Err(e) => return Err(BridgeError::Stream(format!("reading the log stream: {e}"))),
            },
            input = io.input.recv() => {
                // Stdin is not used by logs; only a closed channel ends a follow.
                if let Absorbed::Closed = io.absorb(input) {
                    return Ok(());
                }
            }
        }
    }
}
