//! A TCP stream the accept loop can cut from outside.
//!
//! russh runs each session in a task of its own and gives no way to stop it: dropping the
//! `RunningSession` leaves the task (and the socket) alive, and a disconnect request is not
//! acted on before key exchange completes. So the stream handed to russh fails every read
//! and write once its token is cancelled; the session loop then ends and drops the socket.
//! That is how the login grace, eviction and the final stop close connections that never
//! finished (or never started) the handshake.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

pub struct Killable {
    inner: TcpStream,
    killed: Pin<Box<WaitForCancellationFutureOwned>>,
    /// Reads after which a pending ACK is sent at once (see `poll_read`).
    quick_acks: u8,
}

/// The first reads of a connection (version, key exchange, authentication) are
/// acknowledged at once. OpenSSH's client leaves Nagle's algorithm on for a command
/// without a terminal, so its KEX_ECDH_INIT, written right after its KEXINIT, waits for
/// our ACK of the KEXINIT; having already sent our own KEXINIT we have nothing to
/// piggyback it on, and Linux delays a lone ACK by up to 40 ms. That made two logins in
/// three 40 ms slower (docs/BENCHMARKS.md, P3). `TCP_QUICKACK` is not sticky, so it is set
/// again after each of these reads; later reads (bulk data) keep delayed ACKs.
const QUICK_ACK_READS: u8 = 16;

impl Killable {
    /// `inner`, cut when `kill` is cancelled.
    pub fn new(inner: TcpStream, kill: CancellationToken) -> Killable {
        Killable {
            inner,
            killed: Box::pin(kill.cancelled_owned()),
            quick_acks: QUICK_ACK_READS,
        }
    }

    /// Ready (with an error) once killed; registers the waker otherwise.
    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        match self.killed.as_mut().poll(cx) {
            Poll::Ready(()) => Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "connection closed by the gateway",
            )),
            Poll::Pending => Ok(()),
        }
    }
}

use std::future::Future as _;

impl AsyncRead for Killable {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Err(e) = this.check(cx) {
            return Poll::Ready(Err(e));
        }
        let before = buf.filled().len();
        let read = Pin::new(&mut this.inner).poll_read(cx, buf);
        if this.quick_acks > 0 && matches!(read, Poll::Ready(Ok(()))) && buf.filled().len() > before
        {
            this.quick_acks -= 1;
            let _ = socket2::SockRef::from(&this.inner).set_tcp_quickack(true);
        }
        read
    }
}

impl AsyncWrite for Killable {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Err(e) = this.check(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
