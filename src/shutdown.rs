//! The stop signal: SIGINT (Ctrl-C) or SIGTERM (what Kubernetes sends a pod), as one
//! future, and a token that every long-running part of the program watches.

use tokio_util::sync::CancellationToken;

/// Resolve on the first SIGINT or SIGTERM. If the handlers cannot be installed, the
/// future never resolves (the process then stops only by being killed), and the reason is
/// logged.
pub async fn signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (mut int, mut term) = match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(i), Ok(t)) => (i, t),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(error = %e, "cannot install signal handlers");
            return std::future::pending().await;
        }
    };
    tokio::select! {
        _ = int.recv() => tracing::info!("SIGINT received, stopping"),
        _ = term.recv() => tracing::info!("SIGTERM received, stopping"),
    }
}

/// A token cancelled when `signal()` resolves.
pub fn on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        signal().await;
        t.cancel();
    });
    token
}
