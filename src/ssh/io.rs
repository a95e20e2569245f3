//! One SSH session channel as the session code sees it: input events from the client
//! (data, EOF, window changes, close) and output back to it.
//!
//! Input is delivered without ever blocking the SSH connection's loop for long: the
//! handler forwards each data packet on an unbounded queue, but a byte budget (a semaphore
//! of `INPUT_BUDGET` bytes, released when the bytes are consumed) bounds what can be
//! queued. Only when a client has more than that outstanding does the handler wait, which
//! pushes back on its TCP connection (see the russh notes: the loop also carries our
//! output, so waiting there is the last resort, not the first).

use std::sync::Arc;

use bytes::Bytes;
use russh::ChannelId;
use russh::server::Handle;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use super::lifetime::Lifetime;
use crate::recording::session::{Recorder, Stream};

/// Bytes of client input that may wait for the session to consume them.
pub const INPUT_BUDGET: usize = 8 * 1024 * 1024;

/// Something the client sent on the channel.
#[derive(Debug)]
pub enum Input {
    /// Stdin bytes; dropping the permit gives the bytes back to the budget.
    Data(Bytes, Option<OwnedSemaphorePermit>),
    Eof,
    Resize {
        cols: u16,
        rows: u16,
    },
    Close,
}

/// What an input event leaves for a reader that does not pass stdin on
/// ([`ChannelIo::absorb`]).
#[derive(Debug)]
pub enum Absorbed {
    /// Bytes the client typed.
    Typed(Bytes),
    /// The channel closed (or its sender went away).
    Closed,
    /// EOF or a window change, kept in the channel's state.
    Noted,
}

/// Each bare line feed as CR LF: what a terminal in raw mode needs (a PTY client's).
pub fn lf_to_crlf(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 16);
    let mut prev = 0u8;
    for &b in bytes {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
    out
}

/// The handler's end of a channel's input.
#[derive(Clone)]
pub struct InputSender {
    tx: mpsc::UnboundedSender<Input>,
    budget: Arc<Semaphore>,
    lifetime: Arc<Lifetime>,
}

impl InputSender {
    pub fn new(lifetime: Arc<Lifetime>) -> (InputSender, mpsc::UnboundedReceiver<Input>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let budget = Arc::new(Semaphore::new(INPUT_BUDGET));
        (
            InputSender {
                tx,
                budget,
                lifetime,
            },
            rx,
        )
    }

    /// Queue stdin bytes, waiting only if the budget is exhausted.
    pub async fn data(&self, bytes: &[u8]) {
        self.lifetime.touch();
        let n = u32::try_from(bytes.len().min(INPUT_BUDGET)).unwrap_or(u32::MAX);
        let permit = match self.budget.clone().try_acquire_many_owned(n) {
            Ok(p) => Some(p),
            Err(_) => self.budget.clone().acquire_many_owned(n).await.ok(),
        };
        let _ = self
            .tx
            .send(Input::Data(Bytes::copy_from_slice(bytes), permit));
    }

    pub fn send(&self, input: Input) {
        if let Input::Resize { .. } = input {
            self.lifetime.touch();
        }
        let _ = self.tx.send(input);
    }
}

/// The size of the client's terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PtySize {
    pub cols: u16,
    pub rows: u16,
}

impl PtySize {
    /// From the u32s of an SSH request, clamped to what a terminal can be.
    pub fn from_request(cols: u32, rows: u32) -> PtySize {
        let clamp = |v: u32, default: u16| match u16::try_from(v) {
            Ok(0) => default,
            Ok(v) => v.min(10_000),
            Err(_) => 10_000,
        };
        PtySize {
            cols: clamp(cols, 80),
            rows: clamp(rows, 24),
        }
    }
}

/// The output side failed: the client or the connection is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gone;

/// A session channel: input from the client, output to it.
pub struct ChannelIo {
    pub handle: Handle,
    pub id: ChannelId,
    pub input: mpsc::UnboundedReceiver<Input>,
    /// Set when the client asked for a PTY; updated by window changes seen here.
    pub pty: Option<PtySize>,
    /// The client closed its stdin (EOF) — remembered across commands at the prompt.
    pub eof: bool,
    /// The client closed the channel.
    pub closed: bool,
    /// The recorder of the session running on this channel, if any: output is handed to
    /// it before the client sees it.
    pub recorder: Option<Recorder>,
    /// The session as observers see it (`watch`), while it is registered.
    pub live: Option<Arc<crate::observe::Live>>,
    /// Traffic and deadlines of this channel.
    pub lifetime: Arc<Lifetime>,
}

/// Writes gateway notices to a channel while its session runs elsewhere (expiry
/// warnings): recorded as a marker and as output, shown only with a PTY.
#[derive(Clone)]
pub struct Notifier {
    handle: Handle,
    id: ChannelId,
    pty: bool,
    lifetime: Arc<Lifetime>,
}

impl Notifier {
    pub async fn warn(&self, text: &str) {
        let line = format!("\r\npodgate: {text}\r\n");
        let recorder = self.lifetime.recorder();
        if recorder.is_none() {
            self.lifetime.pending_notice(format!("podgate: {text}"));
        }
        if let Some(r) = &recorder {
            let _ = r.marker(&format!("podgate: {text}"));
            if self.pty && r.output(Stream::Stdout, line.as_bytes()).is_err() {
                return;
            }
        }
        if self.pty {
            let _ = self.handle.data(self.id, Bytes::from(line)).await;
        }
    }

    /// A notice the user must see even without a PTY (someone is watching the session):
    /// as `warn` on a PTY, else a `podgate: ...` line on stderr.
    pub async fn notice(&self, text: &str) {
        if self.pty {
            return self.warn(text).await;
        }
        if let Some(r) = self.lifetime.recorder() {
            let _ = r.marker(&format!("podgate: {text}"));
        }
        let line = format!("podgate: {text}\n");
        let _ = self
            .handle
            .extended_data(self.id, 1, Bytes::from(line))
            .await;
    }
}

impl ChannelIo {
    /// Output to the client, recorded first. A recording failure is reported as `Gone`;
    /// the session then finds the reason in its recorder.
    pub async fn out(&self, bytes: impl Into<Bytes>) -> Result<(), Gone> {
        let bytes = bytes.into();
        self.lifetime.touch();
        if let Some(r) = &self.recorder {
            r.output(Stream::Stdout, &bytes).map_err(|_| Gone)?;
        }
        if let Some(l) = &self.live {
            l.output(&bytes);
        }
        self.handle.data(self.id, bytes).await.map_err(|_| Gone)
    }

    pub async fn err(&self, bytes: impl Into<Bytes>) -> Result<(), Gone> {
        let bytes = bytes.into();
        self.lifetime.touch();
        if let Some(r) = &self.recorder {
            r.output(Stream::Stderr, &bytes).map_err(|_| Gone)?;
        }
        if let Some(l) = &self.live {
            l.output(&bytes);
        }
        self.handle
            .extended_data(self.id, 1, bytes)
            .await
            .map_err(|_| Gone)
    }

    pub fn notifier(&self) -> Notifier {
        Notifier {
            handle: self.handle.clone(),
            id: self.id,
            pty: self.pty.is_some(),
            lifetime: self.lifetime.clone(),
        }
    }

    /// Text written by the gateway itself: with a PTY the client's terminal is in raw
    /// mode, so line feeds become CR LF.
    pub async fn text(&self, text: &str) -> Result<(), Gone> {
        self.out(self.crlf(text)).await
    }

    /// A `podgate: ...` line on stderr (on the terminal when there is a PTY, which has
    /// only one output stream).
    pub async fn message(&self, line: &str) -> Result<(), Gone> {
        let text = format!("podgate: {line}\n");
        if self.pty.is_some() {
            self.out(self.crlf(&text)).await
        } else {
            self.err(text).await
        }
    }

    pub fn crlf(&self, text: &str) -> Bytes {
        if self.pty.is_some() {
            Bytes::from(lf_to_crlf(text.as_bytes()))
        } else {
            Bytes::copy_from_slice(text.as_bytes())
        }
    }

    /// Take in one input event while stdin is not being passed on (logs, an approval
    /// wait, a watch): EOF, close and the window size are kept in the channel's state,
    /// typed bytes are handed back.
    pub fn absorb(&mut self, input: Option<Input>) -> Absorbed {
        match input {
            Some(Input::Data(bytes, _permit)) => Absorbed::Typed(bytes),
            Some(Input::Close) | None => {
                self.closed = true;
                Absorbed::Closed
            }
            Some(Input::Eof) => {
                self.eof = true;
                Absorbed::Noted
            }
            Some(Input::Resize { cols, rows }) => {
                if let Some(p) = self.pty.as_mut() {
                    p.cols = cols;
                    p.rows = rows;
                }
                Absorbed::Noted
            }
        }
    }

    /// End the channel as RFC 4254 §6.10 orders it: exit status, EOF, close.
    pub async fn finish(&self, status: u32) {
        let _ = self.handle.exit_status_request(self.id, status).await;
        let _ = self.handle.eof(self.id).await;
        let _ = self.handle.close(self.id).await;
    }
}
