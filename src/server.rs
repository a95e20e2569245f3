//! The accept loop: one russh session per TCP connection, a bound on connections served at
//! once, and a graceful stop (stop accepting, let sessions finish within the drain time,
//! then disconnect the rest).

use std::sync::Arc;
use std::time::Duration;

use russh::server::Config;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::gateway::Shared;
use crate::ssh::Connection;
use crate::ssh::prechecks;

/// Serve SSH on `listener` until `shutdown` fires, then drain.
pub async fn run(
    listener: TcpListener,
    gateway: Shared,
    ssh: Arc<Config>,
    shutdown: CancellationToken,
) {
    prechecks::install();
    let limit = Arc::new(Semaphore::new(gateway.limits.max_connections));
    let tracker = TaskTracker::new();
    let hard_stop = CancellationToken::new();
    loop {
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = shutdown.cancelled() => break,
        };
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    // EMFILE and friends: back off rather than spin.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let _ = tcp.set_nodelay(true);
        let handler = Connection::new(gateway.clone(), Some(peer), tracker.clone());
        let gateway = gateway.clone();
        let ssh = ssh.clone();
        let hard_stop = hard_stop.clone();
        tracker.spawn(async move {
            let _permit = permit;
            let session = match russh::server::run_stream(ssh, tcp, handler).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "SSH handshake failed");
                    return;
                }
            };
            let handle = session.handle();
            tokio::select! {
                r = session => if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "connection ended");
                    audit_unparsable(&gateway, peer, &e);
                },
                _ = hard_stop.cancelled() => {
                    let _ = handle
                        .disconnect(russh::Disconnect::ByApplication, "podgate is shutting down".into(), "en".into())
                        .await;
                }
            }
        });
    }
    drop(listener);
    tracker.close();
    tracing::info!(drain = ?gateway.limits.drain, "stopped accepting; draining sessions");
    if tokio::time::timeout(gateway.limits.drain, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("drain time over; ending the remaining sessions");
        // Sessions end themselves first (the user is told, recordings are completed), then
        // whatever is left is disconnected.
        gateway.stopping.cancel();
        let ending = crate::ssh::DISCONNECT_AFTER + Duration::from_secs(2);
        let _ = tokio::time::timeout(ending, tracker.wait()).await;
        hard_stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), tracker.wait()).await;
    }
}

/// russh drops the connection, without asking the handler, when the key or certificate a
/// client offers cannot be decoded (a duplicated or malformed certificate option, trailing
/// bytes): that refusal is audited here like any other.
fn audit_unparsable(gateway: &Shared, peer: std::net::SocketAddr, error: &crate::ssh::SshError) {
    let crate::ssh::SshError::Russh(russh::Error::SshKey(e)) = error else {
        return;
    };
    let fields = serde_json::json!({
        "client": peer.to_string(), "code": "unparsable_key",
        "reason": format!("the key or certificate offered cannot be parsed ({e}); connection closed"),
    });
    if let Err(e) = gateway.record("auth.rejected", fields) {
        tracing::error!(error = %e, "audit log write failed");
    }
}
