//! Many SSH connections to the gateway at once, driven in process by a russh client: P4 of
//! the harness (gateway memory with N concurrent PTY sessions, and with N authenticated
//! idle connections).
//!
//! Every connection logs in with the same OpenSSH user certificate. `pty_sessions` also
//! opens one session channel per connection, asks for a PTY, sends `exec`, and counts the
//! session as running once its first byte of command output arrives; `idle_connections`
//! opens no channel. Everything stays open until [`Crowd::close`] (or drop).
//!
//! Guarantees: at most `concurrency` logins are in flight; every step that waits on the
//! gateway has a timeout, so a stuck gateway turns into an `Err`, never a hang; on any
//! failure the connections already opened are closed before the `Err` is returned, and the
//! message says how many succeeded and what the first failure was (with the text the
//! gateway sent, e.g. `podgate: denied: ...`). Not guaranteed: that the gateway keeps the
//! sessions alive afterwards (nothing here watches them), and host key authentication
//! beyond pinning (see [`Client`]).

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use russh::client::{self, Handle};
use russh::keys::{Certificate, PrivateKey, PublicKey, PublicKeyOrCertificate};
use russh::{ChannelMsg, Disconnect, kex};
use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, timeout, timeout_at};

/// Each step of one login (TCP connect and key exchange, authentication, channel open).
const STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// From `exec` to the session's first output byte: the pod's process has to start.
const FIRST_OUTPUT_TIMEOUT: Duration = Duration::from_secs(30);
/// `Crowd::close` in total, however many connections there are.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);
/// File descriptors kept free for everything else in the process (the gateway when it runs
/// in the same process, log files, the runtime).
const FD_HEADROOM: libc::rlim_t = 256;
/// Plain curve25519 rather than the post-quantum hybrid first in russh's list: 10,000 key
/// exchanges on a shared 2-core machine add up, and P4 measures the gateway's memory, not
/// its key exchange. The two extension names keep strict kex and `server-sig-algs`.
const KEX: &[kex::Name] = &[
    kex::CURVE25519,
    kex::EXTENSION_SUPPORT_AS_CLIENT,
    kex::EXTENSION_OPENSSH_STRICT_KEX_AS_CLIENT,
];
/// How much of what the gateway said (stderr, `podgate:` lines) goes into an error.
const SAID_CAP: usize = 512;

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
    conns: Vec<Conn>,
}

/// One logged-in connection. Kept small: the harness holds thousands of them and its own
/// memory is not what P4 measures, but it shares the machine with the gateway.
struct Conn {
    handle: Handle<Client>,
    /// The task that owns the session channel and discards what arrives on it (none for
    /// an idle connection).
    drain: Option<JoinHandle<()>>,
}

impl Crowd {
    /// How many connections are open.
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    /// Close every connection (bounded wait).
    pub async fn close(mut self) {
        let conns = std::mem::take(&mut self.conns);
        let deadline = Instant::now() + CLOSE_TIMEOUT;
        // Ask all first, then wait: the gateway tears the connections down in parallel.
        for c in &conns {
            let bye = c.handle.disconnect(Disconnect::ByApplication, "", "en");
            if timeout_at(deadline, bye).await.is_err() {
                break;
            }
        }
        for mut c in conns {
            // A connection's task ends once its DISCONNECT is written; the drain task
            // ends when the channel's sender goes with it.
            let _ = timeout_at(deadline, &mut c.handle).await;
            if let Some(drain) = c.drain {
                drain.abort();
            }
        }
    }
}

impl Drop for Crowd {
    fn drop(&mut self) {
        // A drain task keeps its channel, and so its connection, alive: without this a
        // dropped crowd would leave its sessions running.
        for c in &self.conns {
            if let Some(drain) = &c.drain {
                drain.abort();
            }
        }
    }
}

/// Open `n` connections, each logged in with `login`, each with one session channel that
/// asked for a PTY (80x24, `xterm`) and sent `exec` with `command` (e.g.
/// `exec payments/payments-api-0 -- sh -c 'echo ready; exec sleep 3600'`); returns once
/// every session has produced its first output byte. At most `concurrency` logins are in
/// flight at once. Fails with a message if any fails.
///
/// Output is the only sign that the pod's process runs, so `command` must print something
/// at once (`sleep 3600` alone would time out after 30 s). With a PTY the gateway's own
/// messages (`podgate: denied: ...`) arrive as output too, so output that starts with
/// `podgate: ` does not count.
pub async fn pty_sessions(
    login: &Login,
    n: usize,
    command: &str,
    concurrency: usize,
) -> Result<Crowd, String> {
    let command: Arc<str> = Arc::from(command);
    open_crowd(login, n, concurrency, "PTY sessions", move |setup| {
        let command = command.clone();
        async move { open_session(&setup, &command).await }
    })
    .await
}

/// Open `n` connections, each logged in with `login` and then left idle (no channel).
pub async fn idle_connections(
    login: &Login,
    n: usize,
    concurrency: usize,
) -> Result<Crowd, String> {
    open_crowd(
        login,
        n,
        concurrency,
        "idle connections",
        |setup| async move {
            let handle = log_in(&setup).await?;
            Ok(Conn {
                handle,
                drain: None,
            })
        },
    )
    .await
}

/// What every connection of one crowd shares.
struct Setup {
    addr: SocketAddr,
    user: String,
    key: Arc<PrivateKey>,
    cert: Certificate,
    config: Arc<client::Config>,
    host_key: Arc<OnceLock<PublicKey>>,
}

impl Setup {
    fn load(login: &Login) -> Result<Setup, String> {
        let key = russh::keys::load_secret_key(&login.key, None)
            .map_err(|e| format!("{}: {e}", login.key.display()))?;
        let cert = russh::keys::load_openssh_certificate(&login.cert)
            .map_err(|e| format!("{}: {e}", login.cert.display()))?;
        let config = client::Config {
            nodelay: true,
            // Idle is the point of an idle connection; the gateway's keepalives (answered
            // by russh) are what keeps it honest, so the client sends none of its own.
            inactivity_timeout: None,
            keepalive_interval: None,
            preferred: russh::Preferred {
                kex: std::borrow::Cow::Borrowed(KEX),
                ..russh::Preferred::default()
            },
            ..client::Config::default()
        };
        Ok(Setup {
            addr: login.addr,
            user: login.user.clone(),
            key: Arc::new(key),
            cert,
            config: Arc::new(config),
            host_key: Arc::new(OnceLock::new()),
        })
    }
}

/// The client side of one connection.
///
/// Host key: the gateway is a loopback process started by the harness itself, whose key
/// the harness does not pass in, so the first key seen is trusted and every other
/// connection of the crowd must present the same one (all of them reach one gateway).
struct Client {
    host_key: Arc<OnceLock<PublicKey>>,
}

impl client::Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        // No host certificate algorithm is offered, so a certificate here is unexpected.
        let PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            return Ok(false);
        };
        Ok(self.host_key.get_or_init(|| key.clone()) == key)
    }
}

/// Raise the soft open-file limit to the hard one, and check that `n` connections fit.
fn raise_nofile(n: usize) -> Result<(), String> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read or write the struct passed by pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(format!(
            "getrlimit(RLIMIT_NOFILE): {}",
            std::io::Error::last_os_error()
        ));
    }
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            return Err(format!(
                "setrlimit(RLIMIT_NOFILE, {}): {}",
                lim.rlim_max,
                std::io::Error::last_os_error()
            ));
        }
    }
    let need = (n as libc::rlim_t).saturating_add(FD_HEADROOM);
    if lim.rlim_cur < need {
        return Err(format!(
            "{n} connections need about {need} open files, but RLIMIT_NOFILE's hard limit is {} \
             (raise it, e.g. `ulimit -Hn {need}` as root, or run fewer)",
            lim.rlim_cur
        ));
    }
    Ok(())
}

/// Open `n` connections with `open`, at most `concurrency` at once; on the first failure
/// stop, close what was opened and say so.
async fn open_crowd<F, Fut>(
    login: &Login,
    n: usize,
    concurrency: usize,
    what: &str,
    open: F,
) -> Result<Crowd, String>
where
    F: Fn(Arc<Setup>) -> Fut,
    Fut: Future<Output = Result<Conn, String>> + Send + 'static,
{
    if concurrency == 0 {
        return Err("crowd: concurrency must be at least 1".into());
    }
    raise_nofile(n)?;
    let setup = Arc::new(Setup::load(login)?);
    let permits = Arc::new(Semaphore::new(concurrency));
    let mut tasks = JoinSet::new();
    let mut crowd = Crowd {
        conns: Vec::with_capacity(n),
    };
    let mut first_failure: Option<String> = None;
    let mut launched = 0;
    let started = std::time::Instant::now();
    loop {
        let launching = launched < n && first_failure.is_none();
        if !launching && tasks.is_empty() {
            break;
        }
        tokio::select! {
            permit = permits.clone().acquire_owned(), if launching => {
                let permit = permit.map_err(|e| format!("crowd: {e}"))?;
                let index = launched;
                let opening = open(setup.clone());
                tasks.spawn(async move {
                    let result = opening.await;
                    drop(permit);
                    (index, result)
                });
                launched += 1;
            }
            Some(joined) = tasks.join_next() => match joined {
                Ok((_, Ok(conn))) => {
                    crowd.conns.push(conn);
                    if crowd.conns.len().is_multiple_of(1000) {
                        eprintln!(
                            "crowd: {} of {n} {what} open ({:.1} s)",
                            crowd.conns.len(),
                            started.elapsed().as_secs_f64()
                        );
                    }
                }
                Ok((index, Err(e))) => {
                    if first_failure.is_none() {
                        first_failure = Some(format!("connection #{index}: {e}"));
                        // Dropping a login in flight closes its connection.
                        tasks.abort_all();
                    }
                }
                Err(e) if e.is_cancelled() => {}
                Err(e) => {
                    first_failure.get_or_insert_with(|| format!("a login task failed: {e}"));
                    tasks.abort_all();
                }
            },
        }
    }
    match first_failure {
        None => Ok(crowd),
        Some(failure) => {
            let opened = crowd.len();
            crowd.close().await;
            Err(format!(
                "crowd: {opened} of {n} {what} opened, then {failure}"
            ))
        }
    }
}

/// TCP connect, key exchange and certificate authentication.
async fn log_in(setup: &Setup) -> Result<Handle<Client>, String> {
    let client = Client {
        host_key: setup.host_key.clone(),
    };
    let connecting = client::connect(setup.config.clone(), setup.addr, client);
    let mut handle = timeout(STEP_TIMEOUT, connecting)
        .await
        .map_err(|_| format!("no SSH handshake within {STEP_TIMEOUT:?}"))?
        .map_err(|e| match e {
            russh::Error::UnknownKey => {
                "the gateway's host key differs from the first connection's".to_string()
            }
            // The gateway closes a connection over its limits right after accepting it,
            // before any SSH message: all the client sees is a reset or an early EOF.
            e @ (russh::Error::IO(_) | russh::Error::Disconnect) => format!(
                "connect and key exchange: {e} (the gateway closes connections over \
                 limits.max_connections or max_unauthenticated_per_source, or from a \
                 source penalised for failed logins, as soon as it accepts them)"
            ),
            e => format!("connect and key exchange: {e}"),
        })?;
    let auth = handle.authenticate_openssh_cert(
        setup.user.as_str(),
        setup.key.clone(),
        setup.cert.clone(),
    );
    let auth = timeout(STEP_TIMEOUT, auth)
        .await
        .map_err(|_| format!("no authentication answer within {STEP_TIMEOUT:?}"))?
        .map_err(|e| format!("authentication: {e}"))?;
    if !auth.success() {
        return Err(format!(
            "the gateway refused the certificate for user {:?}",
            setup.user
        ));
    }
    Ok(handle)
}

/// Log in, open a session channel with a PTY, `exec` the command and wait for its first
/// output; then leave the channel to a task that discards the rest.
async fn open_session(setup: &Setup, command: &str) -> Result<Conn, String> {
    let handle = log_in(setup).await?;
    let mut channel = timeout(STEP_TIMEOUT, handle.channel_open_session())
        .await
        .map_err(|_| format!("no answer to the channel open within {STEP_TIMEOUT:?}"))?
        .map_err(|e| format!("session channel refused: {e}"))?;
    let deadline = Instant::now() + FIRST_OUTPUT_TIMEOUT;
    // The requests go through the connection's bounded queue: bounded waits too.
    let pty = channel.request_pty(false, "xterm", 80, 24, 0, 0, &[]);
    timeout_at(deadline, pty)
        .await
        .map_err(|_| "the PTY request could not be sent".to_string())?
        .map_err(|e| format!("PTY request: {e}"))?;
    timeout_at(deadline, channel.exec(true, command))
        .await
        .map_err(|_| "the exec request could not be sent".to_string())?
        .map_err(|e| format!("exec request: {e}"))?;
    first_output(&mut channel, deadline).await?;
    // The session loop awaits room in the channel's bounded queue (about 100 messages),
    // so a channel nobody reads would stall its connection once output piles up.
    let drain = tokio::spawn(async move { while channel.wait().await.is_some() {} });
    Ok(Conn {
        handle,
        drain: Some(drain),
    })
}

/// Wait until the command has written something; fail if the session ends first, with
/// what the gateway said.
async fn first_output(
    channel: &mut russh::Channel<client::Msg>,
    deadline: Instant,
) -> Result<(), String> {
    let mut said = String::new();
    let mut exit: Option<String> = None;
    loop {
        let msg = match timeout_at(deadline, channel.wait()).await {
            Ok(Some(msg)) => msg,
            Ok(None) => return Err(ended("the connection closed", &exit, &said)),
            Err(_) => {
                let what = format!("no command output within {FIRST_OUTPUT_TIMEOUT:?}");
                return Err(ended(&what, &exit, &said));
            }
        };
        match msg {
            ChannelMsg::Data { data } => {
                // With a PTY the gateway's messages share the output stream; they are
                // not the command running.
                if !data.trim_ascii_start().starts_with(b"podgate: ") {
                    return Ok(());
                }
                keep(&mut said, &data);
            }
            ChannelMsg::ExtendedData { data, .. } => keep(&mut said, &data),
            ChannelMsg::Failure => return Err(ended("exec request refused", &exit, &said)),
            ChannelMsg::ExitStatus { exit_status } => {
                exit = Some(format!("exit status {exit_status}"));
            }
            ChannelMsg::ExitSignal { signal_name, .. } => {
                exit = Some(format!("signal {signal_name:?}"));
            }
            // The gateway ends a session with exit status, EOF, close: by EOF it has
            // said all it will.
            ChannelMsg::Eof | ChannelMsg::Close => {
                return Err(ended("the session ended before any output", &exit, &said));
            }
            _ => {}
        }
    }
}

fn keep(said: &mut String, data: &[u8]) {
    if said.len() < SAID_CAP {
        let room = SAID_CAP - said.len();
        said.push_str(&String::from_utf8_lossy(&data[..data.len().min(room)]));
    }
}

fn ended(what: &str, exit: &Option<String>, said: &str) -> String {
    let mut msg = what.to_string();
    if let Some(exit) = exit {
        msg.push_str(&format!(" ({exit})"));
    }
    let said = said.split_whitespace().collect::<Vec<_>>().join(" ");
    if !said.is_empty() {
        msg.push_str(&format!("; the gateway said: {said}"));
    }
    msg
}
