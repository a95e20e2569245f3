//! The `tty: true` half of `pods/exec`: start the argv on a fresh PTY and feed
//! the PTY with stdin bytes and window sizes.
//!
//! Guarantees:
//! - The child is a session leader with the PTY as its controlling terminal
//!   (so `stty size`, `tty` and job control work), TERM=xterm unless the request
//!   sets TERM (container runtimes do the same for a tty, whatever the host's
//!   TERM is), and the window starts at 24x80 until the first resize.
//! - Resize frames (`{"Width":W,"Height":H}`, keys matched case-insensitively
//!   like Go's `encoding/json`; sizes with a zero side are ignored like the
//!   kubelet's `HandleResizing` does) change the window size in arrival order
//!   relative to stdin, and are applied even while a stdin write is blocked
//!   on a PTY whose reader is asleep. Only the latest pending size matters, so
//!   a resize is never queued without bound and never dropped.
//! - v5 stdin close (`[255, 0]`) writes one EOT byte (^D, the default VEOF),
//!   i.e. what a user typing ^D does: a program reading lines in canonical
//!   mode sees end of input (an interactive shell exits). A raw-mode program
//!   just receives the byte. Ignoring it would leave such sessions running
//!   until the client disconnects; containerd instead hangs up the terminal,
//!   which also discards output still in flight.
//!
//! Not guaranteed: PTY output is one byte stream (stdout and stderr merged, on
//! channel 1), with the line discipline's transformations (`\n` → `\r\n`,
//! echo of the input).

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use pty_process::{OwnedReadPty, OwnedWritePty};
use serde_json::Value;
use tokio::io::AsyncWrite;
use tokio::process::Child;
use tokio::sync::mpsc;

use super::channel::Task;
use super::exec::{ExecRequest, StdinEvent};

/// The write half of the PTY master, owned by the feeder task.
pub(super) type PtyInput = OwnedWritePty;

/// The window size the child sees until the client sends one.
const INITIAL_ROWS: u16 = 24;
const INITIAL_COLS: u16 = 80;
/// What a ^D typed at the terminal sends (VEOF in the default termios).
const EOT: u8 = 0x04;

/// A terminal size from a resize frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct TerminalSize {
    pub width: u16,
    pub height: u16,
}

/// Starts `program` on a new PTY. Returns the child and the master's halves.
pub(super) fn spawn(
    program: &str,
    args: &[String],
    req: &ExecRequest,
) -> io::Result<(Child, OwnedReadPty, OwnedWritePty)> {
    let (pty, pts) = pty_process::open().map_err(io_error)?;
    pty.resize(pty_process::Size::new(INITIAL_ROWS, INITIAL_COLS))
        .map_err(io_error)?;
    let mut command = pty_process::Command::new(program)
        .args(args)
        .current_dir(&req.workdir)
        .envs(req.env.iter().map(|(key, value)| (key, value)))
        .kill_on_drop(true);
    if !req.env.iter().any(|(key, _)| key == "TERM") {
        command = command.env("TERM", "xterm");
    }
    // `spawn` makes the child a session leader (setsid + TIOCSCTTY) and drops
    // our copy of the slave, so reading the master ends with EIO once every
    // process of the session has closed the terminal.
    let child = command.spawn(pts).map_err(io_error)?;
    let (output, input) = pty.into_split();
    Ok((child, output, input))
}

fn io_error(error: pty_process::Error) -> io::Error {
    match error {
        pty_process::Error::Io(error) => error,
        pty_process::Error::Rustix(errno) => io::Error::from_raw_os_error(errno.raw_os_error()),
        other => io::Error::other(other.to_string()),
    }
}

/// Spawns the task that owns the PTY's write half: it writes stdin events
/// (when the request has stdin) and applies window sizes until it is dropped.
pub(super) fn spawn_feeder(
    pty: PtyInput,
    stdin: Option<mpsc::Receiver<StdinEvent>>,
) -> (ResizeSender, Task) {
    let latest = Arc::new(Mutex::new(None));
    let (bell_tx, bell_rx) = mpsc::channel(1);
    let sender = ResizeSender {
        latest: Arc::clone(&latest),
        bell: bell_tx,
    };
    let receiver = ResizeReceiver {
        latest,
        bell: bell_rx,
    };
    (sender, Task::spawn(feed_pty(pty, stdin, receiver)))
}

/// The websocket reader's end of the resize slot.
#[derive(Clone)]
pub(super) struct ResizeSender {
    latest: Arc<Mutex<Option<TerminalSize>>>,
    bell: mpsc::Sender<()>,
}

impl ResizeSender {
    /// Records `size` as the latest and wakes the feeder. Never blocks.
    pub(super) fn send(&self, size: TerminalSize) {
        *lock(&self.latest) = Some(size);
        // Full means a wake-up is already pending; it will pick up this size.
        let _ = self.bell.try_send(());
    }
}

struct ResizeReceiver {
    latest: Arc<Mutex<Option<TerminalSize>>>,
    bell: mpsc::Receiver<()>,
}

impl ResizeReceiver {
    /// The latest size not yet applied; pending while there is none.
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<TerminalSize> {
        loop {
            match self.bell.poll_recv(cx) {
                Poll::Ready(Some(())) => {
                    if let Some(size) = lock(&self.latest).take() {
                        return Poll::Ready(size);
                    }
                }
                // The reader is gone: no size will ever come.
                Poll::Ready(None) | Poll::Pending => return Poll::Pending,
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned slot still holds a valid size.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn feed_pty(
    mut pty: OwnedWritePty,
    mut stdin: Option<mpsc::Receiver<StdinEvent>>,
    mut sizes: ResizeReceiver,
) {
    loop {
        // Sizes first: a resize the client sent before some input is applied
        // before that input is written.
        let event = tokio::select! {
            biased;
            size = poll_fn(|cx| sizes.poll_next(cx)) => {
                apply(&pty, size);
                continue;
            }
            event = next_event(&mut stdin) => event,
        };
        let result = match event {
            Some(StdinEvent::Data(bytes)) => write_all(&mut pty, &bytes, &mut sizes).await,
            Some(StdinEvent::Close) => {
                stdin = None;
                write_all(&mut pty, &[EOT], &mut sizes).await
            }
            None => {
                stdin = None;
                Ok(())
            }
        };
        if let Err(error) = result {
            tracing::debug!(%error, "writing to the pty failed");
            return;
        }
    }
}

async fn next_event(stdin: &mut Option<mpsc::Receiver<StdinEvent>>) -> Option<StdinEvent> {
    match stdin {
        Some(events) => events.recv().await,
        None => std::future::pending().await,
    }
}

/// Writes all of `bytes`, applying window sizes that arrive meanwhile.
async fn write_all(
    pty: &mut OwnedWritePty,
    bytes: &[u8],
    sizes: &mut ResizeReceiver,
) -> io::Result<()> {
    let mut rest = bytes;
    while !rest.is_empty() {
        let written = poll_fn(|cx| {
            while let Poll::Ready(size) = sizes.poll_next(cx) {
                apply(pty, size);
            }
            Pin::new(&mut *pty).poll_write(cx, rest)
        })
        .await?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        rest = rest.get(written..).unwrap_or_default();
    }
    Ok(())
}

fn apply(pty: &OwnedWritePty, size: TerminalSize) {
    // Setting the size makes the kernel send SIGWINCH to the foreground group.
    if let Err(error) = pty.resize(pty_process::Size::new(size.height, size.width)) {
        tracing::debug!(%error, "resizing the pty failed");
    }
}

/// Decodes a resize frame's payload; with several JSON objects in one frame
/// (the kubelet decodes a stream) the last valid one wins.
pub(super) fn parse_resize(payload: &[u8]) -> Option<TerminalSize> {
    serde_json::Deserializer::from_slice(payload)
        .into_iter::<Value>()
        .map_while(Result::ok)
        .filter_map(|value| size_from_json(&value))
        .last()
}

fn size_from_json(value: &Value) -> Option<TerminalSize> {
    let (mut width, mut height) = (0, 0);
    for (key, value) in value.as_object()? {
        // Like Go decoding into a uint16: a negative, fractional or too large
        // number makes the whole document invalid.
        let number = || value.as_u64().and_then(|n| u16::try_from(n).ok());
        if key.eq_ignore_ascii_case("width") {
            width = number()?;
        } else if key.eq_ignore_ascii_case("height") {
            height = number()?;
        }
    }
    (width > 0 && height > 0).then_some(TerminalSize { width, height })
}

#[cfg(test)]
mod tests {
    use tokio_util::sync::CancellationToken;

    use super::super::channel::test_support::{joined, send_binary};
    use super::super::channel::{Protocol, RESIZE, frame};
    use super::super::exec::tests::{receive_all, request, run_to_end, start};
    use super::super::exec_process::tests::wait_until_gone;
    use super::*;

    fn tty_request(argv: &[&str], workdir: &std::path::Path) -> ExecRequest {
        let mut req = request(argv, workdir);
        (req.tty, req.stderr) = (true, false);
        req
    }

    #[tokio::test]
    async fn a_tty_starts_at_24x80_with_term_xterm() {
        let dir = tempfile::tempdir().unwrap();
        let req = tty_request(&["sh", "-c", "stty size; echo $TERM; tty"], dir.path());
        let received = run_to_end(req, Protocol::V5).await;
        let output = String::from_utf8(received.stdout).unwrap();
        assert!(
            output.starts_with("24 80\r\nxterm\r\n/dev/pts/"),
            "{output:?}"
        );
        assert!(received.stderr.is_empty());
        assert_eq!(received.status.unwrap()["status"], "Success");
    }

    #[tokio::test]
    async fn resize_frames_change_the_window_size() {
        let dir = tempfile::tempdir().unwrap();
        let mut req = tty_request(&["sh", "-c", "read line; stty size"], dir.path());
        req.stdin = true;
        let (mut client, task) = start(req, Protocol::V5, CancellationToken::new()).await;
        let resize = frame(RESIZE, br#"{"Width":100,"Height":40}"#);
        send_binary(&mut client, &resize).await;
        send_binary(&mut client, b"\x00go\n").await;
        let received = receive_all(&mut client).await;
        let output = String::from_utf8(received.stdout).unwrap();
        assert!(output.contains("40 100\r\n"), "{output:?}");
        assert_eq!(received.status.unwrap()["status"], "Success");
        joined(task).await;
    }

    #[tokio::test]
    async fn stdin_close_types_eof_on_the_terminal() {
        let dir = tempfile::tempdir().unwrap();
        let mut req = tty_request(&["cat"], dir.path());
        req.stdin = true;
        let (mut client, task) = start(req, Protocol::V5, CancellationToken::new()).await;
        send_binary(&mut client, b"\x00abc\n").await;
        send_binary(&mut client, &[255, 0]).await;
        let received = receive_all(&mut client).await;
        let output = String::from_utf8(received.stdout).unwrap();
        // The line discipline echoes the input, then cat prints it.
        assert!(output.starts_with("abc\r\nabc\r\n"), "{output:?}");
        assert_eq!(received.status.unwrap()["status"], "Success");
        joined(task).await;
    }

    #[tokio::test]
    async fn background_jobs_of_the_session_are_killed() {
        let dir = tempfile::tempdir().unwrap();
        // `set -m` puts the job in its own process group, out of killpg's reach.
        let req = tty_request(&["sh", "-c", "set -m; sleep 1000 & echo $!"], dir.path());
        let received = run_to_end(req, Protocol::V5).await;
        assert_eq!(received.status.unwrap()["status"], "Success");
        let output = String::from_utf8(received.stdout).unwrap();
        let pid: i32 = output.trim().parse().unwrap();
        wait_until_gone(pid).await;
    }

    #[test]
    fn resize_keys_are_case_insensitive() {
        let size = TerminalSize {
            width: 100,
            height: 40,
        };
        assert_eq!(parse_resize(br#"{"Width":100,"Height":40}"#), Some(size));
        assert_eq!(parse_resize(br#"{"width":100,"HEIGHT":40}"#), Some(size));
    }

    #[test]
    fn resize_ignores_zero_invalid_and_oversized_sizes() {
        assert_eq!(parse_resize(br#"{"Width":0,"Height":40}"#), None);
        assert_eq!(parse_resize(br#"{"Width":100}"#), None);
        assert_eq!(parse_resize(br#"{"Width":70000,"Height":40}"#), None);
        assert_eq!(parse_resize(br#"{"Width":-1,"Height":40}"#), None);
        assert_eq!(parse_resize(b"not json"), None);
        assert_eq!(parse_resize(b""), None);
        assert_eq!(parse_resize(b"[1,2]"), None);
    }

    #[test]
    fn resize_takes_the_last_of_several_documents() {
        assert_eq!(
            parse_resize(br#"{"Width":10,"Height":5}{"Width":20,"Height":6}"#),
            Some(TerminalSize {
                width: 20,
                height: 6
            })
        );
    }
}
