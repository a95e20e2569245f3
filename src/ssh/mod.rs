//! The russh `Handler`: a thin adapter that turns SSH callbacks into calls on the pure
//! modules (`auth`, `request`, `policy`) and hands each started channel to a session task.
//!
//! It accepts public-key authentication with OpenSSH user certificates only, session
//! channels (bounded per connection), PTY and window-change requests, `exec` and `shell`.
//! It explicitly refuses, with a failure reply so the client does not hang: environment
//! variables (LD_PRELOAD and friends never reach a pod), agent and X11 forwarding,
//! subsystems and remote forwards. Local forwards (`direct-tcpip`) go to `forward`.
//!
//! After login a watcher per connection disconnects the client shortly after its
//! certificate expires.

mod approvals;
mod forward;
pub mod io;
pub mod lifetime;
mod observing;
pub mod prechecks;
mod prompt;
mod recorded;
mod session;
mod text;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use russh::keys::Certificate;
use russh::server::{Auth, ChannelOpenHandle, Msg, Session};
use russh::{Channel, ChannelId, ChannelOpenFailure};
use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{self, Identity};
use crate::gateway::Shared;
use crate::recording::meta::end_reason;
use io::{Input, InputSender, PtySize};

/// Errors that end a connection (russh's own; our refusals are replies, not errors).
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error(transparent)]
    Russh(#[from] russh::Error),
}

#[derive(Default)]
struct Slot {
    pty: Option<PtySize>,
    input: Option<InputSender>,
}

/// One client connection.
pub struct Connection {
    gateway: Shared,
    peer: Option<SocketAddr>,
    id: String,
    identity: Option<Arc<Identity>>,
    channels: HashMap<ChannelId, Slot>,
    tasks: TaskTracker,
    /// For audit events of refusals russh makes itself (see `prechecks`).
    trace: Arc<prechecks::ConnectionTrace>,
    registered: Option<tokio::task::Id>,
    /// The certificate this connection logged in with (checked again on revocation).
    certificate: Option<Arc<Certificate>>,
    /// An end decided for every channel of this connection (revocation, expiry).
    ending: watch::Sender<Option<&'static str>>,
    /// Cancelled when the connection is gone (stops its watcher).
    gone: CancellationToken,
    /// Forwarded connections open now, and the port-forward sessions they belong to.
    forwards: forward::Forwards,
    /// Its admission (see `server::gate`): told about logins and refusals, and released
    /// when the connection goes.
    pass: Option<crate::server::gate::Pass>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.gone.cancel();

        if let Some(id) = self.registered.take() {
            prechecks::unregister(id);
        }
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Connection {
    pub fn new(gateway: Shared, peer: Option<SocketAddr>, tasks: TaskTracker) -> Connection {
        let id = uuid::Uuid::new_v4().simple().to_string();
        Connection {
            trace: Arc::new(prechecks::ConnectionTrace {
                gateway: gateway.clone(),
                id: id.clone(),
                client: peer.map(|p| p.to_string()).unwrap_or_default(),
            }),
            registered: None,
            gateway,
            peer,
            id,
            identity: None,
            channels: HashMap::new(),
            tasks,
            certificate: None,
            ending: watch::channel(None).0,
            gone: CancellationToken::new(),
            forwards: forward::Forwards::default(),
            pass: None,
        }
    }

    /// Attach the connection's admission pass.
    pub fn with_pass(mut self, pass: crate::server::gate::Pass) -> Connection {
        self.pass = Some(pass);
        self
    }

    /// A key or certificate was refused (counts towards the source's penalty).
    fn refused(&self) {
        if let Some(p) = &self.pass {
            p.failed_auth();
        }
    }

    fn ctx(&self, identity: Arc<Identity>) -> session::Ctx {
        session::Ctx {
            gateway: self.gateway.clone(),
            identity,
            client: self.client(),
            connection: self.id.clone(),
            ending: self.ending.subscribe(),
        }
    }

    /// Called from the first authentication callbacks, which run in russh's task for this
    /// connection.
    fn register(&mut self) {
        if self.registered.is_none() {
            self.registered = prechecks::register(&self.trace);
        }
    }

    fn client(&self) -> String {
        self.peer.map(|p| p.to_string()).unwrap_or_default()
    }

    /// Write an audit event; false if it could not be recorded (the caller refuses).
    fn audit(&self, event: &str, fields: serde_json::Value) -> bool {
        match self.gateway.record(event, fields) {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(error = %e, event, "audit log write failed; refusing");
                false
            }
        }
    }

    fn start(
        &mut self,
        channel: ChannelId,
        command: Option<Vec<u8>>,
        session: &mut Session,
    ) -> Result<(), russh::Error> {
        let Some(identity) = self.identity.clone() else {
            return session.channel_failure(channel);
        };
        let Some(slot) = self.channels.get_mut(&channel) else {
            return session.channel_failure(channel);
        };
        if slot.input.is_some() {
            // One command per channel (RFC 4254 §6.5).
            return session.channel_failure(channel);
        }
        let life = lifetime::Lifetime::new();
        let (tx, rx) = InputSender::new(life.clone());
        slot.input = Some(tx);
        let io = io::ChannelIo {
            handle: session.handle(),
            id: channel,
            input: rx,
            pty: slot.pty,
            eof: false,
            closed: false,
            recorder: None,
            live: None,
            lifetime: life,
        };
        let ctx = self.ctx(identity);
        session.channel_success(channel)?;
        self.tasks.spawn(session::run(ctx, command, io));
        Ok(())
    }
}

impl russh::server::Handler for Connection {
    type Error = SshError;

    async fn authentication_banner(&mut self) -> Result<Option<String>, Self::Error> {
        self.register();
        Ok(None)
    }

    async fn auth_none(&mut self, _user: &str) -> Result<Auth, Self::Error> {
        self.register();
        Ok(Auth::reject())
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: russh::server::VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        let fp = key
            .public_key
            .fingerprint(russh::keys::HashAlg::Sha256)
            .to_string();
        self.refused();
        self.audit(
            "auth.rejected",
            json!({
                "connection": self.id, "client": self.client(), "principal": user,
                "code": "not_a_certificate", "key_fingerprint": fp,
                "reason": "a plain public key is not accepted; log in with a certificate signed by the user CA",
            }),
        );
        Ok(Auth::reject())
    }

    async fn auth_openssh_certificate(
        &mut self,
        user: &str,
        certificate: &Certificate,
    ) -> Result<Auth, Self::Error> {
        let peer_ip = self.peer.map(|p| p.ip());
        let revocations = self.gateway.revocations.borrow().clone();
        let settings = &self.gateway.auth;
        match auth::verify(certificate, user, peer_ip, now(), settings, &revocations) {
            Ok(identity) => {
                let recorded = self.audit(
                    "auth.accepted",
                    json!({
                        "connection": self.id, "client": self.client(), "principal": identity.principal,
                        "key_id": identity.key_id, "serial": identity.serial, "ca": identity.ca_fingerprint,
                        "groups": identity.groups, "valid_before": identity.valid_before,
                    }),
                );
                if !recorded {
                    return Ok(Auth::reject());
                }
                tracing::info!(key_id = %identity.key_id, serial = identity.serial, client = %self.client(), "auth.accepted");
                self.identity = Some(Arc::new(identity));
                self.certificate = Some(Arc::new(certificate.clone()));
                Ok(Auth::Accept)
            }
            Err(rejection) => {
                self.refused();
                tracing::info!(code = rejection.code(), reason = %rejection, client = %self.client(), "auth.rejected");
                self.audit(
                    "auth.rejected",
                    json!({
                        "connection": self.id, "client": self.client(), "principal": user,
                        "key_id": certificate.key_id(), "serial": certificate.serial(),
                        "code": rejection.code(), "reason": rejection.to_string(),
                    }),
                );
                Ok(Auth::reject())
            }
        }
    }

    async fn auth_succeeded(&mut self, session: &mut Session) -> Result<(), Self::Error> {
        if let Some(p) = &self.pass {
            p.authenticated();
        }
        if let (Some(identity), Some(cert)) = (&self.identity, &self.certificate) {
            let watcher = Watcher {
                gateway: self.gateway.clone(),
                connection: self.id.clone(),
                certificate: cert.clone(),
                key_id: identity.key_id.clone(),
                revocations: self.gateway.revocations.clone(),
                valid_before: identity.valid_before,
                ending: self.ending.clone(),
                gone: self.gone.clone(),
                handle: session.handle(),
            };
            self.tasks.spawn(watcher.run());
        }
        Ok(())
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        // Dropping `channel` keeps russh from queueing every message for it too (we take
        // them from the callbacks).
        let id = channel.id();
        drop(channel);
        if self.identity.is_none() {
            reply
                .reject(ChannelOpenFailure::AdministrativelyProhibited)
                .await;
        } else if self.channels.len() >= self.gateway.limits.max_channels {
            reply.reject(ChannelOpenFailure::ResourceShortage).await;
        } else {
            self.channels.insert(id, Slot::default());
            reply.accept().await;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn channel_open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        host_to_connect: &str,
        port_to_connect: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(identity) = self.identity.clone() else {
            drop(channel);
            reply
                .reject(ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        };
        let ctx = self.ctx(identity);
        let opened = forward::open(&ctx, &mut self.forwards, host_to_connect, port_to_connect);
        match opened {
            Ok(start) => {
                self.tasks.spawn(forward::run(ctx, start, channel, reply));
            }
            Err(refusal) => {
                drop(channel);
                reply.reject(refusal).await;
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        col_width: u32,
        row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let permitted = self.identity.as_ref().is_some_and(|i| i.permit_pty);
        match self.channels.get_mut(&channel) {
            Some(slot) if permitted && slot.input.is_none() => {
                slot.pty = Some(PtySize::from_request(col_width, row_height));
                session.channel_success(channel)?;
            }
            _ => session.channel_failure(channel)?,
        }
        Ok(())
    }

    async fn window_change_request(
        &mut self,
        channel: ChannelId,
        col_width: u32,
        row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(slot) = self.channels.get_mut(&channel) {
            let size = PtySize::from_request(col_width, row_height);
            if slot.pty.is_some() {
                slot.pty = Some(size);
            }
            if let Some(tx) = &slot.input {
                tx.send(Input::Resize {
                    cols: size.cols,
                    rows: size.rows,
                });
            }
        }
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.start(channel, Some(data.to_vec()), session)?;
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.start(channel, None, session)?;
        Ok(())
    }

    async fn data(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(tx) = self.channels.get(&channel).and_then(|s| s.input.clone()) {
            tx.data(data).await;
        }
        Ok(())
    }

    async fn channel_eof(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(tx) = self.channels.get(&channel).and_then(|s| s.input.as_ref()) {
            tx.send(Input::Eof);
        }
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(slot) = self.channels.remove(&channel)
            && let Some(tx) = slot.input
        {
            tx.send(Input::Close);
        }
        Ok(())
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        _name: &str,
        _value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)?;
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        _name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)?;
        Ok(())
    }

    async fn x11_request(
        &mut self,
        channel: ChannelId,
        _single_connection: bool,
        _x11_auth_protocol: &str,
        _x11_auth_cookie: &str,
        _x11_screen_number: u32,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)?;
        Ok(())
    }

    async fn agent_request(
        &mut self,
        _channel: ChannelId,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        Ok(false)
    }

    async fn tcpip_forward(
        &mut self,
        _address: &str,
        _port: &mut u32,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        Ok(false)
    }
}

/// Ends a logged-in connection when its certificate expires or is revoked: its channels
/// end first (with the reason, see `lifetime`), then the client is disconnected. For expiry
/// the channels have ended at the expiry itself; this is the backstop a few seconds later.
/// For revocation, the list is checked again each time it changes (`revocation_watch`
/// polls it every second), so a revoked certificate's sessions end within about a second.
/// An unusable list refuses new logins but does not end live sessions. A gateway whose
/// drain time is over ends them the same way (`shutdown`).
struct Watcher {
    gateway: Shared,
    connection: String,
    certificate: Arc<Certificate>,
    key_id: String,
    revocations: watch::Receiver<auth::Revocations>,
    valid_before: u64,
    ending: watch::Sender<Option<&'static str>>,
    gone: CancellationToken,
    handle: russh::server::Handle,
}

/// Time for channels to send their exit status before the connection is cut.
pub const DISCONNECT_AFTER: std::time::Duration = std::time::Duration::from_secs(3);

impl Watcher {
    async fn run(mut self) {
        let expires = std::time::Duration::from_secs(self.valid_before.saturating_sub(now()));
        let expiry = tokio::time::sleep(expires + DISCONNECT_AFTER);
        tokio::pin!(expiry);
        let mut watching = true;
        let (reason, message) = loop {
            tokio::select! {
                _ = self.gone.cancelled() => return,
                _ = self.gateway.stopping.cancelled() => {
                    break (end_reason::GATEWAY_STOPPED, "podgate: the gateway is stopping");
                }
                _ = &mut expiry => {
                    tracing::info!(connection = %self.connection, serial = self.certificate.serial(), "certificate expired; disconnecting");
                    break (end_reason::EXPIRED, "podgate: your certificate expired");
                }
                changed = self.revocations.changed(), if watching => {
                    if changed.is_err() {
                        // No list configured (or the watcher is gone): nothing more to watch.
                        watching = false;
                        continue;
                    }
                    if let Some(why) = self.revoked() {
                        tracing::warn!(connection = %self.connection, key_id = %self.key_id, reason = %why, "certificate revoked; ending its sessions");
                        let _ = self.gateway.record(
                            "auth.revoked",
                            json!({
                                "connection": self.connection, "key_id": self.key_id,
                                "serial": self.certificate.serial(), "reason": why,
                            }),
                        );
                        break (end_reason::REVOKED, "podgate: your certificate was revoked");
                    }
                }
            }
        };
        self.ending.send_replace(Some(reason));
        tokio::select! {
            _ = self.gone.cancelled() => return,
            _ = tokio::time::sleep(DISCONNECT_AFTER) => {}
        }
        let _ = self
            .handle
            .disconnect(
                russh::Disconnect::ByApplication,
                message.into(),
                "en".into(),
            )
            .await;
    }

    /// Why the current list revokes this connection's certificate, if it does.
    fn revoked(&mut self) -> Option<String> {
        let current = self.revocations.borrow_and_update().clone();
        match current {
            auth::Revocations::List(list) => list.check(&self.certificate).map(|r| r.0),
            auth::Revocations::NotConfigured | auth::Revocations::Unavailable(_) => None,
        }
    }
}
