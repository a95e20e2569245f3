//! Many SSH connections to the gateway at once, driven in process by a russh client: P4 of
//! the harness (gateway memory with N concurrent PTY sessions, and with N authenticated
//! idle connections).
//!
//! Interface stub: the implementation replaces the bodies, not the signatures.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Who logs in, and where.
#[derive(Debug, Clone)]
pub struct Login {
    pub addr: SocketAddr,
    /// The user's private key (OpenSSH format, ed25519, no passphrase).
    pub key: PathBuf,
    /// Its certificate (`KEY-cert.pub`), signed by the gateway's user CA.
    pub cert: PathBuf,
    /// The SSH user name (a principal of the certificate).
    pub user: String,
}

/// Connections held open until `close` (or drop).
pub struct Crowd {
    _private: (),
}

impl Crowd {
    /// How many connections are open.
    pub fn len(&self) -> usize {
        0
    }

    /// Close every connection (bounded wait).
    pub async fn close(self) {}
}

/// Open `n` connections, each logged in with `login`, each with one session channel that
/// asked for a PTY (80x24, `xterm`) and sent `exec` with `command` (e.g.
/// `exec payments/payments-api-0 -- sleep 3600`); returns once every session has produced
/// its first output byte or `command`'s session is known to be running. At most
/// `concurrency` logins are in flight at once. Fails with a message if any fails.
pub async fn pty_sessions(
    _login: &Login,
    _n: usize,
    _command: &str,
    _concurrency: usize,
) -> Result<Crowd, String> {
    Err("crowd::pty_sessions is not implemented yet".into())
}

/// Open `n` connections, each logged in with `login` and then left idle (no channel).
pub async fn idle_connections(
    _login: &Login,
    _n: usize,
    _concurrency: usize,
) -> Result<Crowd, String> {
    Err("crowd::idle_connections is not implemented yet".into())
}
