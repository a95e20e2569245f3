//! `pods/exec` after the websocket upgrade: run the requested argv as a local
//! process in the pod's sandbox directory and bridge it to the
//! `v4`/`v5.channel.k8s.io` streams the way a kubelet does.
//!
//! Guarantees:
//! - argv is executed directly (never through a shell), with cwd = the sandbox
//!   directory, the server's environment plus the request's variables, in its
//!   own process group (its own session with a tty, see `exec_pty.rs`).
//! - Output goes out as stdout on 1 and stderr on 2 (a tty's output on 1),
//!   then exactly one Status document on 3 (the kubelet's texts, see
//!   `channel.rs`), then a close frame with code 1000, which kubectl
//!   needs to report the exit code instead of "close 1006".
//! - Exit code: the process's code, or 128+N when killed by signal N (what
//!   container runtimes report).
//! - When the main process exits, its process group (with a tty: its whole
//!   session) is killed, so stray background children neither linger nor hold
//!   the output open; output is then read to EOF (giving up after
//!   `DRAIN_IDLE` of silence, for children that escaped the group).
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

use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::SplitStream;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::process::ChildStdin;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::channel::{self, Protocol, Task};
use super::exec_process::{self, Input, Started};
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
    /// Added on top of the inherited environment (`HOSTNAME`, `POD_NAME`, ...).
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
const DRAIN_IDLE: Duration = Duration::from_secs(2);

/// What the websocket reader hands to the stdin writer, in arrival order.
pub(super) enum StdinEvent {
    Data(Bytes),
    /// v5 `[255, 0]`: the client has no more input.
    Close,
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
    match exec_process::start(&req) {
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
    let Started {
        mut child,
        mut group,
        input,
        outputs,
    } = started;
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
            exec_process::reap(&mut child).await;
            group.disarm();
            if matches!(end, End::Shutdown) {
                // No more output: the close frame is the last thing queued.
                pumps.abort_all();
                channel::close_going_away(&outbox, &mut writer).await;
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
        let document = exec_process::status_document(&req.command, status);
        finish(outbox, writer, reader, &document, shutdown).await;
    } else if shutdown.is_cancelled() {
        pumps.abort_all();
        channel::close_going_away(&outbox, &mut writer).await;
    }
}

/// Sends the status and the normal close frame, then waits (briefly) for the
/// client's close frame so the closing handshake completes.
async fn finish(
    outbox: mpsc::Sender<Message>,
    writer: Task,
    reader: Task,
    status: &Value,
    shutdown: &CancellationToken,
) {
    let last = Some(channel::status_message(status));
    channel::close_normally(outbox, writer, reader, last, shutdown).await;
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
                if let Some(tx) = &stdin
                    && tx.send(StdinEvent::Data(bytes.slice(1..))).await.is_err()
                {
                    stdin = None;
                }
            }
            channel::RESIZE => {
                if let (Some(resizes), Some(size)) = (&resizes, exec_pty::parse_resize(payload)) {
                    resizes.send(size);
                }
            }
            channel::CLOSE
                if protocol == Protocol::V5 && payload.first() == Some(&channel::STDIN) =>
            {
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
/// source that stays silent for `DRAIN_IDLE` is abandoned.
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

#[cfg(test)]
pub(super) mod tests {
    use serde_json::{Value, json};
    use tokio::task::JoinHandle;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    use tokio_util::sync::CancellationToken;

    use super::super::channel::test_support::{LIMIT, Socket, joined, next_message, send_binary};
    use super::*;

    pub(in super::super) fn request(argv: &[&str], workdir: &std::path::Path) -> ExecRequest {
        ExecRequest {
            command: argv.iter().map(|arg| (*arg).to_owned()).collect(),
            stdin: false,
            stdout: true,
            stderr: true,
            tty: false,
            workdir: workdir.to_path_buf(),
            env: vec![("POD_NAME".to_owned(), "web-0".to_owned())],
        }
    }

    pub(in super::super) async fn start(
        req: ExecRequest,
        protocol: Protocol,
        shutdown: CancellationToken,
    ) -> (Socket, JoinHandle<()>) {
        let (server, client) = super::super::channel::test_support::socket_pair().await;
        let task = tokio::spawn(serve(server, protocol, req, shutdown));
        (client, task)
    }

    /// Everything the client received, up to the end of the stream.
    #[derive(Debug, Default)]
    pub(in super::super) struct Received {
        pub stdout: Vec<u8>,
        pub stderr: Vec<u8>,
        pub status: Option<Value>,
        pub close: Option<CloseCode>,
        pub other: Vec<Vec<u8>>,
    }

    pub(in super::super) async fn receive_all(client: &mut Socket) -> Received {
        let mut received = Received::default();
        while let Some(message) = next_message(client).await {
            match message {
                Message::Binary(bytes) => match bytes.split_first() {
                    Some((1, data)) => received.stdout.extend_from_slice(data),
                    Some((2, data)) => received.stderr.extend_from_slice(data),
                    Some((3, data)) => {
                        assert!(received.status.is_none(), "two status documents");
                        received.status = Some(serde_json::from_slice(data).unwrap());
                    }
                    _ => received.other.push(bytes.to_vec()),
                },
                Message::Close(frame) => received.close = frame.map(|frame| frame.code),
                Message::Text(_) => panic!("text frame from the server"),
                _ => {}
            }
        }
        received
    }

    pub(in super::super) async fn run_to_end(req: ExecRequest, protocol: Protocol) -> Received {
        let (mut client, task) = start(req, protocol, CancellationToken::new()).await;
        let received = receive_all(&mut client).await;
        joined(task).await;
        received
    }

    #[tokio::test]
    async fn echo_sends_stdout_then_success_then_normal_close() {
        let dir = tempfile::tempdir().unwrap();
        let received = run_to_end(request(&["echo", "hi"], dir.path()), Protocol::V5).await;
        assert_eq!(received.stdout, b"hi\n");
        assert_eq!(
            received.status,
            Some(json!({"metadata": {}, "status": "Success"}))
        );
        assert_eq!(received.close, Some(CloseCode::Normal));
        assert!(received.other.is_empty());
    }

    #[tokio::test]
    async fn non_zero_exit_reports_the_code_and_separates_the_streams() {
        let dir = tempfile::tempdir().unwrap();
        let argv = ["sh", "-c", "echo out; echo err >&2; exit 3"];
        let received = run_to_end(request(&argv, dir.path()), Protocol::V5).await;
        assert_eq!(received.stdout, b"out\n");
        assert_eq!(received.stderr, b"err\n");
        let status = received.status.unwrap();
        assert_eq!(status["reason"], "NonZeroExitCode");
        assert_eq!(
            status["details"]["causes"][0],
            json!({"reason": "ExitCode", "message": "3"})
        );
        assert_eq!(
            status["message"],
            "command terminated with non-zero exit code: error executing command [sh -c echo out; echo err >&2; exit 3], exit code 3"
        );
        assert_eq!(received.close, Some(CloseCode::Normal));
    }

    #[tokio::test]
    async fn stdin_is_copied_and_closed_by_the_v5_close_frame() {
        let dir = tempfile::tempdir().unwrap();
        let mut req = request(&["cat"], dir.path());
        req.stdin = true;
        let (mut client, task) = start(req, Protocol::V5, CancellationToken::new()).await;
        send_binary(&mut client, b"\x00hello ").await;
        send_binary(&mut client, b"\x00").await; // empty data: not EOF
        send_binary(&mut client, b"\x00world").await;
        send_binary(&mut client, &[255, 0]).await;
        let received = receive_all(&mut client).await;
        assert_eq!(received.stdout, b"hello world");
        assert_eq!(received.status.unwrap()["status"], "Success");
        joined(task).await;
    }

    #[tokio::test]
    async fn v4_stdin_flows_and_closing_the_socket_ends_the_session() {
        let dir = tempfile::tempdir().unwrap();
        let mut req = request(&["cat"], dir.path());
        req.stdin = true;
        let (mut client, task) = start(req, Protocol::V4, CancellationToken::new()).await;
        send_binary(&mut client, b"\x00ping\n").await;
        // v4 has no close stream: [255, 0] must not close stdin.
        send_binary(&mut client, &[255, 0]).await;
        send_binary(&mut client, b"\x00pong\n").await;
        let mut stdout = Vec::new();
        while stdout != b"ping\npong\n" {
            match next_message(&mut client).await {
                Some(Message::Binary(bytes)) => {
                    assert_eq!(bytes.first(), Some(&1));
                    stdout.extend_from_slice(bytes.get(1..).unwrap());
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        tokio::time::timeout(LIMIT, client.close(None))
            .await
            .unwrap()
            .unwrap();
        while next_message(&mut client).await.is_some() {}
        joined(task).await;
    }

    #[tokio::test]
    async fn missing_executable_is_an_internal_error() {
        let dir = tempfile::tempdir().unwrap();
        let argv = ["definitely-not-a-command-1f2e"];
        let received = run_to_end(request(&argv, dir.path()), Protocol::V5).await;
        let status = received.status.unwrap();
        assert_eq!(status["reason"], "InternalError");
        assert_eq!(status["code"], 500);
        let message = status["message"].as_str().unwrap();
        let prefix = "Internal error occurred: error executing command in container: \
                      failed to exec in container: failed to start exec \"";
        let suffix = "\": OCI runtime exec failed: exec failed: unable to start container process: \
                      exec: \"definitely-not-a-command-1f2e\": executable file not found in $PATH: unknown";
        assert!(message.starts_with(prefix), "{message}");
        assert!(message.ends_with(suffix), "{message}");
        assert_eq!(received.close, Some(CloseCode::Normal));
    }

    #[tokio::test]
    async fn empty_argv_and_missing_workdir_are_internal_errors() {
        let dir = tempfile::tempdir().unwrap();
        let received = run_to_end(request(&[], dir.path()), Protocol::V5).await;
        let status = received.status.unwrap();
        assert_eq!(status["reason"], "InternalError");
        assert!(
            status["message"]
                .as_str()
                .unwrap()
                .contains("args must not be empty")
        );

        let gone = dir.path().join("gone");
        let received = run_to_end(request(&["true"], &gone), Protocol::V5).await;
        let status = received.status.unwrap();
        assert!(status["message"].as_str().unwrap().contains("chdir to cwd"));
    }

    #[tokio::test]
    async fn death_by_signal_reports_128_plus_the_signal() {
        let dir = tempfile::tempdir().unwrap();
        let req = request(&["sh", "-c", "kill -9 $$"], dir.path());
        let received = run_to_end(req, Protocol::V5).await;
        assert_eq!(
            received.status.unwrap()["details"]["causes"][0]["message"],
            "137"
        );
    }

    #[tokio::test]
    async fn env_and_workdir_reach_the_process() {
        let dir = tempfile::tempdir().unwrap();
        let req = request(&["sh", "-c", "echo $POD_NAME; pwd -P"], dir.path());
        let received = run_to_end(req, Protocol::V5).await;
        let expected = format!("web-0\n{}\n", dir.path().canonicalize().unwrap().display());
        assert_eq!(String::from_utf8(received.stdout).unwrap(), expected);
    }

    #[tokio::test]
    async fn large_output_arrives_complete_in_bounded_frames() {
        let dir = tempfile::tempdir().unwrap();
        let req = request(&["head", "-c", "3000000", "/dev/zero"], dir.path());
        let (mut client, task) = start(req, Protocol::V5, CancellationToken::new()).await;
        let mut total = 0;
        while let Some(message) = next_message(&mut client).await {
            if let Message::Binary(bytes) = message {
                assert!(bytes.len() <= channel::MAX_DATA_FRAME + 1);
                if bytes.first() == Some(&1) {
                    total += bytes.len() - 1;
                }
            }
        }
        assert_eq!(total, 3_000_000);
        joined(task).await;
    }
}
