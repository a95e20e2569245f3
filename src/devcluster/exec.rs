//! `pods/exec` after the websocket upgrade: run the requested argv as a local
//! process in the pod's sandbox directory and bridge it to the
//! `v4`/`v5.channel.k8s.io` streams the way a kubelet does.
//!
//! Guarantees:
//! - argv is executed directly (never through a shell), with cwd = the sandbox
//!   directory, the server's environment plus the request's variables, in its
//!   own process group (its own session with a tty, see [`super::exec_pty`]).
//! - Output goes out as stdout on 1 and stderr on 2 (a tty's output on 1),
//!   then exactly one Status document on 3 (the kubelet's texts, see
//!   [`super::channel`]), then a close frame with code 1000, which kubectl
//!   needs to report the exit code instead of "close 1006".
//! - Exit code: the process's code, or 128+N when killed by signal N (what
//!   container runtimes report).
//! - When the main process exits, its process group (with a tty: its whole
//!   session) is killed, so stray background children neither linger nor hold
//!   the output open; output is then read to EOF (giving up after
//!   [`DRAIN_IDLE`] of silence, for children that escaped the group).
//! - When the client goes away, `shutdown` fires or this future is dropped,
//!   the process group is killed with SIGKILL and no status is sent.
//! - Memory is bounded: reads are at most 32 KiB, every queue is bounded, and
//!   a client that stops reading stops the reading of the process's output.
//!   Writing to stdin runs in its own task, so a process that does not read
//!   its stdin never stalls its output.
//!
//! Not guaranteed: containment. Processes that leave the process group (or,
//! with a tty, the session) are not found; there are no cgroups or namespaces.
//! The size of incoming websocket messages is bounded by the caller's
//! `WebSocketConfig`, not here.

use std::hash::{BuildHasher, Hasher};
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::SplitStream;
use nix::errno::Errno;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::{Pid, getsid};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::process::{Child, ChildStdin};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_util::sync::CancellationToken;

use super::channel::{self, Protocol, Task};
use super::exec_pty;

/// One exec call, as parsed from the request by the HTTP layer.
pub struct ExecRequest {
    /// argv, never run through a shell.
    pub command: Vec<String>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
    /// The pod/container sandbox dir (the caller creates it).
    pub workdir: PathBuf,
    /// Added on top of the inherited environment (HOSTNAME, POD_NAME, ...).
    pub env: Vec<(String, String)>,
}

/// Output is read in chunks of this size, one websocket frame each.
const READ_CHUNK: usize = channel::MAX_DATA_FRAME;
/// Frames queued for the websocket writer; at most ~256 KiB in flight.
const OUTBOX_DEPTH: usize = 8;
/// Stdin frames queued for the stdin writer.
const STDIN_DEPTH: usize = 8;
/// After the main process exited and its group was killed, output that stays
/// silent this long belongs to an escaped process: stop waiting for its EOF.
pub const DRAIN_IDLE: Duration = Duration::from_secs(2);
/// How long to wait for the client's answer to our close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// How long to wait for a SIGKILLed child to be reaped.
const REAP_TIMEOUT: Duration = Duration::from_secs(5);

/// What the websocket reader hands to the stdin writer, in arrival order.
pub(super) enum StdinEvent {
    Data(Bytes),
    /// v5 `[255, 0]`: the client has no more input.
    Close,
}

/// Where the process's stdin goes.
enum Input {
    None,
    Pipe(ChildStdin),
    Pty(exec_pty::PtyInput),
}

/// A started process and its I/O ends.
struct Started {
    child: Child,
    /// Its process group (and, with a tty, session) id: the child's pid.
    group: ProcessGroup,
    input: Input,
    /// Each output source and the channel its bytes go to (`None`: read and
    /// discard, so the process never blocks on a stream nobody asked for).
    outputs: Vec<(Option<u8>, Box<dyn AsyncRead + Send + Unpin>)>,
}

/// Serve one exec websocket until the process has finished and its status was
/// sent, the client went away, or `shutdown` fired.
pub async fn serve<S>(
    ws: WebSocketStream<S>,
    protocol: Protocol,
    req: ExecRequest,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sink, stream) = ws.split();
    let (outbox, writer) = channel::spawn_writer(sink, OUTBOX_DEPTH);
    match start(&req) {
        Ok(started) => run(started, stream, protocol, &req, outbox, writer, &shutdown).await,
        Err(message) => {
            tracing::debug!(command = ?req.command, %message, "exec failed to start");
            let reader = Task::spawn(read_client(stream, protocol, None, None));
            let status = channel::status_internal_error(&message);
            finish(outbox, writer, reader, &status, &shutdown).await;
        }
    }
}

/// How the running phase ended.
enum End {
    Exited(io::Result<ExitStatus>),
    ClientGone,
    Shutdown,
}

async fn run<S>(
    started: Started,
    stream: SplitStream<WebSocketStream<S>>,
    protocol: Protocol,
    req: &ExecRequest,
    outbox: mpsc::Sender<Message>,
    mut writer: Task,
    shutdown: &CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Started { mut child, mut group, input, outputs } = started;
    let exited = CancellationToken::new();
    let mut pumps = JoinSet::new();
    for (channel, source) in outputs {
        pumps.spawn(pump(source, channel, outbox.clone(), exited.clone()));
    }

    let (stdin_tx, stdin_rx) = if req.stdin {
        let (tx, rx) = mpsc::channel(STDIN_DEPTH);
        (Some(tx), Some(rx))
    } else {
        (None, None)
    };
    let (feeder, resizes) = match input {
        Input::Pty(pty) => {
            let (resizes, feeder) = exec_pty::spawn_feeder(pty, stdin_rx);
            (Some(feeder), Some(resizes))
        }
        Input::Pipe(pipe) => (stdin_rx.map(|rx| Task::spawn(feed_pipe(pipe, rx))), None),
        Input::None => (None, None),
    };
    let mut reader = Task::spawn(read_client(stream, protocol, stdin_tx, resizes));

    let end = tokio::select! {
        biased;
        () = shutdown.cancelled() => End::Shutdown,
        status = child.wait() => End::Exited(status),
        () = reader.join() => End::ClientGone,
        () = writer.join() => End::ClientGone,
    };
    drop(feeder);
    let status = match end {
        End::Exited(status) => status,
        End::ClientGone | End::Shutdown => {
            tracing::debug!(command = ?req.command, "exec ended before the process; killing it");
            group.kill();
            reap(&mut child).await;
            group.disarm();
            if matches!(end, End::Shutdown) {
                // Best effort: tell the client why, without waiting on it.
                let _ = outbox.try_send(channel::close_message(CloseCode::Away));
            }
            return;
        }
    };

    // The main process is gone: kill what it left behind so that the output
    // reaches EOF, then drain it before the status (the kubelet, too, writes
    // the status only after the output streams were copied).
    exited.cancel();
    group.kill();
    group.disarm();
    let drained = tokio::select! {
        biased;
        () = shutdown.cancelled() => false,
        () = reader.join() => false,
        () = async { while pumps.join_next().await.is_some() {} } => true,
    };
    if drained {
        let document = status_document(&req.command, status);
        finish(outbox, writer, reader, &document, shutdown).await;
    }
}

/// Sends the status and the normal close frame, then waits (briefly) for the
/// client's close frame so the closing handshake completes.
async fn finish(
    outbox: mpsc::Sender<Message>,
    mut writer: Task,
    mut reader: Task,
    status: &Value,
    shutdown: &CancellationToken,
) {
    let sent = async {
        if outbox.send(channel::status_message(status)).await.is_ok() {
            let _ = outbox.send(channel::close_message(CloseCode::Normal)).await;
        }
        drop(outbox);
        writer.join().await;
    };
    tokio::select! {
        biased;
        () = shutdown.cancelled() => return,
        () = sent => {}
    }
    if tokio::time::timeout(CLOSE_GRACE, reader.join()).await.is_err() {
        tracing::debug!("client did not answer the close frame");
    }
}

/// Reads client frames until the websocket ends: stdin data to the stdin
/// writer, resizes to the PTY, v5 `[255, 0]` as stdin EOF. Pings are answered
/// by tungstenite while this reads; after a close frame the next read sends
/// tungstenite's reply and ends the stream.
async fn read_client<S>(
    mut stream: SplitStream<WebSocketStream<S>>,
    protocol: Protocol,
    mut stdin: Option<mpsc::Sender<StdinEvent>>,
    resizes: Option<exec_pty::ResizeSender>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    while let Some(message) = stream.next().await {
        let bytes = match message {
            Ok(Message::Binary(bytes)) => bytes,
            Ok(_) => continue,
            Err(error) => {
                tracing::debug!(%error, "exec websocket read failed");
                return;
            }
        };
        let Some((&stream_id, payload)) = bytes.split_first() else {
            continue;
        };
        match stream_id {
            // kube-rs and client-go never send empty data frames on purpose,
            // and an empty frame is not EOF (that is `[255, 0]`): skip it.
            channel::STDIN if !payload.is_empty() => {
                if let Some(tx) = &stdin {
                    if tx.send(StdinEvent::Data(bytes.slice(1..))).await.is_err() {
                        stdin = None;
                    }
                }
            }
            channel::RESIZE => {
                if let (Some(resizes), Some(size)) = (&resizes, exec_pty::parse_resize(payload)) {
                    resizes.send(size);
                }
            }
            channel::CLOSE if protocol == Protocol::V5 && payload.first() == Some(&channel::STDIN) => {
                if let Some(tx) = stdin.take() {
                    let _ = tx.send(StdinEvent::Close).await;
                }
            }
            _ => tracing::trace!(stream_id, "ignoring client frame"),
        }
    }
}

/// Copies stdin frames into the process's stdin pipe; `Close` closes it.
async fn feed_pipe(mut pipe: ChildStdin, mut events: mpsc::Receiver<StdinEvent>) {
    while let Some(event) = events.recv().await {
        match event {
            StdinEvent::Data(bytes) => {
                if let Err(error) = pipe.write_all(&bytes).await {
                    // Usually EPIPE: the process closed its stdin or exited.
                    tracing::debug!(%error, "stdin write failed");
                    return;
                }
            }
            StdinEvent::Close => return,
        }
    }
}

/// Copies one output source into frames on `channel` until EOF (or EIO, which
/// is how a PTY master reports that no slave is left). Once `exited` fires, a
/// source that stays silent for [`DRAIN_IDLE`] is abandoned.
async fn pump(
    mut source: Box<dyn AsyncRead + Send + Unpin>,
    channel: Option<u8>,
    outbox: mpsc::Sender<Message>,
    exited: CancellationToken,
) {
    let mut buf = vec![0u8; READ_CHUNK];
    let mut draining = false;
    loop {
        let read = tokio::select! {
            read = source.read(&mut buf) => read,
            () = exited.cancelled(), if !draining => {
                draining = true;
                continue;
            }
            () = tokio::time::sleep(DRAIN_IDLE), if draining => {
                tracing::debug!("output still open after the process group was killed; giving up");
                return;
            }
        };
        let len = match read {
            Ok(0) => return,
            Ok(len) => len,
            Err(error) if error.raw_os_error() == Some(libc::EIO) => return,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => {
                tracing::debug!(%error, "reading process output failed");
                return;
            }
        };
        let (Some(channel), Some(data)) = (channel, buf.get(..len)) else {
            continue;
        };
        if outbox.send(channel::binary(channel, data)).await.is_err() {
            return;
        }
    }
}

/// Starts the process, or returns the InternalError message the kubelet path
/// (kubelet → containerd → runc) would report.
fn start(req: &ExecRequest) -> Result<Started, String> {
    let Some((program, args)) = req.command.split_first() else {
        // runc's validateProcessSpec; the apiserver and kubectl normally
        // refuse an empty command before it gets this far.
        return Err(oci_exec_failed("args must not be empty"));
    };
    if !req.workdir.is_dir() {
        return Err(oci_exec_failed(&format!(
            "exec failed: unable to start container process: chdir to cwd ({:?}) set in config.json failed: no such file or directory",
            req.workdir.display().to_string()
        )));
    }
    let spawned = if req.tty {
        exec_pty::spawn(program, args, req).map(|(child, output, input)| {
            let channel = req.stdout.then_some(channel::STDOUT);
            let outputs: Vec<(Option<u8>, Box<dyn AsyncRead + Send + Unpin>)> =
                vec![(channel, Box::new(output))];
            (child, Input::Pty(input), outputs)
        })
    } else {
        spawn_pipes(program, args, req)
    };
    let (child, input, outputs) = spawned.map_err(|error| start_error(program, &error))?;
    let Some(pid) = child.id().and_then(|pid| i32::try_from(pid).ok()) else {
        return Err(oci_exec_failed("exec failed: process exited before it was tracked"));
    };
    let group = ProcessGroup {
        leader: Pid::from_raw(pid),
        whole_session: req.tty,
        armed: true,
    };
    Ok(Started { child, group, input, outputs })
}

type Spawned = (Child, Input, Vec<(Option<u8>, Box<dyn AsyncRead + Send + Unpin>)>);

fn spawn_pipes(program: &str, args: &[String], req: &ExecRequest) -> io::Result<Spawned> {
    let piped_if = |wanted: bool| if wanted { Stdio::piped() } else { Stdio::null() };
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .current_dir(&req.workdir)
        .envs(req.env.iter().map(|(key, value)| (key, value)))
        .stdin(piped_if(req.stdin))
        .stdout(piped_if(req.stdout))
        .stderr(piped_if(req.stderr))
        // Its own group, so one killpg reaches everything it started.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()?;
    let input = child.stdin.take().map_or(Input::None, Input::Pipe);
    let mut outputs: Vec<(Option<u8>, Box<dyn AsyncRead + Send + Unpin>)> = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        outputs.push((Some(channel::STDOUT), Box::new(stdout)));
    }
    if let Some(stderr) = child.stderr.take() {
        outputs.push((Some(channel::STDERR), Box::new(stderr)));
    }
    Ok((child, input, outputs))
}

/// The process group (with a tty, the session) of one exec. Dropping it while
/// armed kills it, so nothing survives a dropped `serve` future.
struct ProcessGroup {
    leader: Pid,
    whole_session: bool,
    armed: bool,
}

impl ProcessGroup {
    /// SIGKILLs the group and, with a tty, every other process of the session
    /// (job control puts background jobs in their own groups).
    fn kill(&self) {
        match killpg(self.leader, Signal::SIGKILL) {
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(error) => tracing::warn!(%error, leader = %self.leader, "killpg failed"),
        }
        if self.whole_session {
            for pid in session_members(self.leader) {
                let _ = kill(pid, Signal::SIGKILL);
            }
        }
    }

    /// Called once the group was killed and the leader reaped: a later kill
    /// could only hit an unrelated process that reused the id.
    fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        if self.armed {
            self.kill();
        }
    }
}

/// Processes whose session id is `leader` (Linux: scans /proc).
fn session_members(leader: Pid) -> Vec<Pid> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .map(Pid::from_raw)
        .filter(|pid| getsid(Some(*pid)) == Ok(leader))
        .collect()
}

/// Waits for a killed child so that it does not linger as a zombie.
async fn reap(child: &mut Child) {
    if tokio::time::timeout(REAP_TIMEOUT, child.wait()).await.is_err() {
        tracing::warn!("killed exec process was not reaped in time");
    }
}

/// The Status document for the process's end, as the kubelet builds it.
fn status_document(command: &[String], status: io::Result<ExitStatus>) -> Value {
    match status.map(exit_code) {
        Ok(0) => channel::status_success(),
        Ok(code) => channel::status_exit_code_for(command, code),
        Err(error) => channel::status_internal_error(&format!(
            "error executing command in container: failed to wait for exec process: {error}"
        )),
    }
}

/// The exit code a container runtime reports: the code, or 128+N for signal N.
fn exit_code(status: ExitStatus) -> i32 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(signal)) => signal.saturating_add(128),
        (None, None) => 255,
    }
}

/// The error containerd + runc report when the program cannot be started,
/// using Go's `exec.LookPath` wording for the cause.
fn start_error(program: &str, error: &io::Error) -> String {
    let cause = match error.kind() {
        // execvp reports EACCES for a non-executable file found in PATH; Go's
        // LookPath skips such files and reports "not found" instead.
        io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied if !program.contains('/') => {
            "executable file not found in $PATH".to_owned()
        }
        io::ErrorKind::NotFound => format!("stat {program}: no such file or directory"),
        io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
        _ => go_error_text(error),
    };
    oci_exec_failed(&format!(
        "exec failed: unable to start container process: exec: {program:?}: {cause}"
    ))
}

/// Wraps a runc failure the way containerd's CRI exec path reports it.
fn oci_exec_failed(detail: &str) -> String {
    format!(
        "error executing command in container: failed to exec in container: failed to start exec {:?}: OCI runtime exec failed: {detail}: unknown",
        exec_id()
    )
}

/// A random 64-hex-digit id, like containerd's exec ids.
fn exec_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or_default();
    (0..4u8)
        .map(|part| {
            // Every RandomState carries fresh random keys.
            let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
            hasher.write_u8(part);
            hasher.write_u128(nanos);
            format!("{:016x}", hasher.finish())
        })
        .collect()
}

/// An OS error in Go's spelling: lower case, without Rust's "(os error N)".
pub(super) fn go_error_text(error: &io::Error) -> String {
    let text = match error.raw_os_error() {
        Some(code) => Errno::from_raw(code).desc().to_owned(),
        None => error.to_string(),
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => text,
    }
}
