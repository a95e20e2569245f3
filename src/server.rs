//! The accept loop: one russh session per TCP connection, admitted by the [`gate`]
//! (connection cap, unauthenticated slots in total and per source with eviction, source
//! penalties), a login grace deadline for connections that have not logged in, and a
//! graceful stop (stop accepting, let sessions finish within the drain time, end the rest
//! cleanly, then disconnect what is left).
//!
//! The listener never stalls: a connection over a limit is accepted and closed at once
//! (as OpenSSH's MaxStartups does), so the kernel's backlog cannot fill behind a flood.

pub mod gate;
mod killable;

use std::sync::Arc;
use std::time::Duration;

use russh::server::Config;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::gateway::Shared;
use crate::ssh::Connection;
use crate::ssh::prechecks;
use gate::{Gate, Pass};

/// Serve SSH on `listener` until `shutdown` fires, then drain.
/// How often ended approval requests and standing approvals are deleted, and how long
/// after their end (so a late `approve` is told "expired" rather than "not found").
const SWEEP_EVERY: Duration = Duration::from_secs(60);
const SWEEP_GRACE: Duration = Duration::from_secs(600);

/// Delete what ended in the approvals store, every minute; every replica does it, and a
/// failure is only logged (the next round tries again).
async fn sweep_approvals(approvals: Arc<crate::approval::Approvals>, stop: CancellationToken) {
    let mut every = tokio::time::interval(SWEEP_EVERY);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            () = stop.cancelled() => return,
        }
        match approvals
            .sweep(std::time::SystemTime::now(), SWEEP_GRACE)
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "ended approval requests deleted"),
            Err(e) => tracing::warn!(error = %e, "approvals sweep failed"),
        }
    }
}

pub async fn run(
    listener: TcpListener,
    gateway: Shared,
    ssh: Arc<Config>,
    shutdown: CancellationToken,
) {
    prechecks::install();
    let shipper = start_shipping(&gateway).await;
    let sweeper = gateway.approvals.clone().map(|approvals| {
        let stop = shutdown.clone();
        tokio::spawn(sweep_approvals(approvals, stop))
    });
    let gate = Gate::new(&gateway.limits);
    let tracker = TaskTracker::new();
    let hard_stop = CancellationToken::new();
    loop {
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
        let pass = match gate.enter(peer.ip()) {
            Ok(pass) => pass,
            Err(turned) => {
                // Not audited one by one: a flood must not fill the audit log.
                tracing::debug!(%peer, reason = %turned.reason, "connection refused");
                gateway.metrics.connection_refused(turned.code);
                drop(tcp);
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        tracker.spawn(serve(
            tcp,
            peer,
            pass,
            gateway.clone(),
            ssh.clone(),
            tracker.clone(),
            hard_stop.clone(),
        ));
    }
    drop(listener);
    if let Some(s) = sweeper {
        s.abort();
    }
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
    if let Some((stop, task)) = shipper {
        // One last round for what the drain finished; bounded like the drain. What is
        // left stays in the spool for the next start.
        stop.cancel();
        if tokio::time::timeout(gateway.limits.drain, task)
            .await
            .is_err()
        {
            tracing::warn!("recordings not all shipped before stopping; they wait in the spool");
        }
    }
}

/// Start shipping to the recordings store, if there is one, and give the first round
/// (what a previous run left in the spool) a head start of up to `ship_every` before
/// sessions are accepted. Sessions are not held back longer: an unreachable store must not
/// keep the gateway from serving while its spool has room.
async fn start_shipping(
    gateway: &Shared,
) -> Option<(CancellationToken, tokio::task::JoinHandle<()>)> {
    let shipping = gateway.shipping.clone()?;
    let stop = CancellationToken::new();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let head_start = shipping.ship_every();
    let outlet: Arc<dyn crate::store::ship::Outlet> = gateway.clone();
    let task = tokio::spawn(shipping.run(outlet, stop.clone(), tx));
    if tokio::time::timeout(head_start, rx).await.is_err() {
        tracing::info!("serving while recordings left in the spool are still being shipped");
    }
    Some((stop, task))
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

/// One connection, from the SSH handshake to its end. Until it logs in it is bounded by
/// `limits.login_grace` and may be evicted to make room for a newer connection.
async fn serve(
    tcp: TcpStream,
    peer: std::net::SocketAddr,
    pass: Pass,
    gateway: Shared,
    ssh: Arc<Config>,
    tracker: TaskTracker,
    hard_stop: CancellationToken,
) {
    let evicted = pass.evicted();
    let mut logged_in = pass.logged_in();
    let grace = tokio::time::sleep(gateway.limits.login_grace);
    tokio::pin!(grace);
    gateway.metrics.connection(true);
    let _open = scopeguard(|| gateway.metrics.connection(false));
    let handler = Connection::new(gateway.clone(), Some(peer), tracker).with_pass(pass);
    let kill = CancellationToken::new();
    let tcp = killable::Killable::new(tcp, kill.clone());
    // The SSH version exchange: a client that trickles or never sends its version line is
    // cut here.
    let session = tokio::select! {
        r = russh::server::run_stream(ssh, tcp, handler) => match r {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "SSH handshake failed");
                return;
            }
        },
        _ = &mut grace => {
            tracing::debug!(%peer, "login grace over before the SSH handshake");
            gateway.metrics.connection_refused("login_grace");
            return;
        }
        _ = evicted.cancelled() => {
            gateway.metrics.connection_refused("evicted");
            return;
        }
        _ = hard_stop.cancelled() => return,
    };
    let handle = session.handle();
    tokio::pin!(session);
    let mut waiting = true;
    let reason = loop {
        tokio::select! {
            r = &mut session => {
                if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "connection ended");
                    audit_unparsable(&gateway, peer, &e);
                }
                return;
            }
            changed = logged_in.changed(), if waiting => {
                if changed.is_err() || *logged_in.borrow() {
                    waiting = false;
                }
            }
            _ = &mut grace, if waiting => {
                gateway.metrics.connection_refused("login_grace");
                break "podgate: login grace time is over";
            }
            _ = evicted.cancelled(), if waiting => {
                gateway.metrics.connection_refused("evicted");
                break "podgate: too many connections are waiting to log in";
            }
            _ = hard_stop.cancelled() => break "podgate is shutting down",
        }
    };
    let bye = handle.disconnect(russh::Disconnect::ByApplication, reason.into(), "en".into());
    let _ = tokio::time::timeout(Duration::from_secs(1), bye).await;
    // A moment for the disconnect to go out; then the stream is cut, which ends russh's
    // session task (dropping `session` alone would not).
    if tokio::time::timeout(Duration::from_secs(1), &mut session)
        .await
        .is_err()
    {
        kill.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(1), &mut session).await;
    }
}

/// Run `f` when the returned value is dropped.
fn scopeguard<F: FnOnce()>(f: F) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}
