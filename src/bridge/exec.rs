//! `pods/exec` between an SSH channel and the pod (`attach`, over the session's kube-rs
//! client): argv (never a shell unless the policy
//! granted `shell`), stdin streamed with its EOF passed on, stdout and stderr kept apart
//! (merged by the PTY when there is one), window changes forwarded, exit status back.
//!
//! The stdin pump runs in its own task: `attach` copies stdout and reads stdin in one loop,
//! so a session that waited on stdin while the pod's output waited on us would deadlock.

use std::time::Duration;

use bytes::BytesMut;
use futures::SinkExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use kube::api::{AttachParams, TerminalSize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{BridgeError, attach};
use crate::metrics::Metrics;
use crate::recording::session::Recorder;
use crate::ssh::io::{ChannelIo, Input};

/// Pipe sizes between `attach`'s websocket loop and this bridge.
const PIPE: usize = 256 * 1024;
/// Read size for pod output.
const CHUNK: usize = 64 * 1024;

/// What to run.
#[derive(Debug, Clone)]
pub struct ExecSpec {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub argv: Vec<String>,
    pub tty: bool,
}

/// How an exec ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The command finished with this status.
    Exited(u32),
    /// The client closed the channel first; the remote process was aborted.
    ClientGone,
    /// The session had to end (expiry, idle, revocation); the remote process was aborted.
    Stopped,
}

/// The exit status in a channel-3 Status (see the kubelet's v4 status writer): Success is
/// 0, NonZeroExitCode carries the code in `details.causes[reason=ExitCode].message`.
pub fn exit_status(status: &Status) -> Result<u32, String> {
    if status.status.as_deref() == Some("Success") {
        return Ok(0);
    }
    if status.reason.as_deref() == Some("NonZeroExitCode") {
        let code = status
            .details
            .as_ref()
            .and_then(|d| d.causes.as_ref())
            .and_then(|causes| {
                causes
                    .iter()
                    .find(|c| c.reason.as_deref() == Some("ExitCode"))
            })
            .and_then(|c| c.message.as_deref())
            .and_then(|m| m.parse::<u32>().ok());
        if let Some(code) = code {
            return Ok(code);
        }
    }
    Err(status
        .message
        .clone()
        .unwrap_or_else(|| "the command failed without a status message".into()))
}

/// Run `spec` and copy its streams to and from `io` until it exits.
pub async fn run(
    client: kube::Client,
    spec: &ExecSpec,
    io: &mut ChannelIo,
    metrics: &Metrics,
) -> Result<Outcome, BridgeError> {
    let mut ap = AttachParams::default()
        .container(spec.container.clone())
        .stdin(true)
        .stdout(true)
        .stderr(!spec.tty)
        .tty(spec.tty);
    ap.max_stdin_buf_size = Some(PIPE);
    ap.max_stdout_buf_size = Some(PIPE);
    ap.max_stderr_buf_size = Some(PIPE);
    let mut process = metrics
        .timed(
            "exec",
            attach::exec(&client, &spec.namespace, &spec.pod, spec.argv.clone(), &ap),
        )
        .await?;
    let mut stdout = process.stdout();
    let mut stderr = process.stderr();
    let status = process.take_status();
    let mut resize = process.terminal_size();
    if let (Some(r), Some(size)) = (resize.as_mut(), io.pty) {
        let _ = r
            .send(TerminalSize {
                width: size.cols,
                height: size.rows,
            })
            .await;
    }

    // Hand the input queue to the stdin pump for the duration of the command.
    let (placeholder_tx, placeholder) = mpsc::unbounded_channel();
    drop(placeholder_tx);
    let input = std::mem::replace(&mut io.input, placeholder);
    let client_gone = CancellationToken::new();
    let stop_pump = CancellationToken::new();
    let taps = Taps {
        recorder: io.recorder.clone(),
        live: io.live.clone(),
    };
    let pump = tokio::spawn(stdin_pump(
        taps,
        input,
        process.stdin(),
        resize,
        io.eof,
        client_gone.clone(),
        stop_pump.clone(),
    ));

    // Read into spare capacity (never zeroed, so an idle session's buffers cost only the
    // pages its output touched) and hand the bytes on without copying them.
    let mut out_buf = BytesMut::new();
    let mut err_buf = BytesMut::new();
    let mut outcome = None;
    let lifetime = io.lifetime.clone();
    let mut status = status.map(Box::pin);
    // The status as soon as it arrives: `Some(None)` when the stream ended without one.
    let mut got_status: Option<Option<Status>> = None;
    while stdout.is_some() || stderr.is_some() {
        tokio::select! {
            _ = lifetime.stopped() => {
                outcome = Some(Outcome::Stopped);
                break;
            }
            n = read_opt(&mut stdout, &mut out_buf) => match n {
                Some(n) if n > 0 => {
                    if io.out(out_buf.split().freeze()).await.is_err() {
                        outcome = Some(Outcome::ClientGone);
                        break;
                    }
                }
                _ => stdout = None,
            },
            n = read_opt(&mut stderr, &mut err_buf) => match n {
                Some(n) if n > 0 => {
                    if io.err(err_buf.split().freeze()).await.is_err() {
                        outcome = Some(Outcome::ClientGone);
                        break;
                    }
                }
                _ => stderr = None,
            },
            st = async {
                match status.as_mut() {
                    Some(f) => f.await,
                    None => std::future::pending().await,
                }
            }, if got_status.is_none() => {
                let lost = st.is_none();
                got_status = Some(st);
                if lost {
                    // The stream ended without a status (connection lost): pass on what
                    // is buffered and stop, without waiting for an EOF (kube-rs's own loop
                    // never sent one on this path; `attach` does, but the bridge does not
                    // depend on it).
                    if drain(&mut stdout, &mut out_buf, io, false).await.is_err()
                        || drain(&mut stderr, &mut err_buf, io, true).await.is_err()
                    {
                        outcome = Some(Outcome::ClientGone);
                    }
                    break;
                }
            }
            _ = client_gone.cancelled() => {
                outcome = Some(Outcome::ClientGone);
                break;
            }
        }
    }
    let result = match outcome {
        Some(o) => {
            process.abort();
            Ok(o)
        }
        None => {
            let status = match (got_status, status) {
                (Some(st), _) => Ok(st),
                (None, Some(fut)) => tokio::time::timeout(Duration::from_secs(30), fut)
                    .await
                    .map_err(|_| {
                        BridgeError::Stream("no exit status within 30s of the output ending".into())
                    }),
                (None, None) => Err(BridgeError::Stream(
                    "the exec stream has no status channel".into(),
                )),
            };
            match status {
                Ok(Some(st)) => exit_status(&st)
                    .map(Outcome::Exited)
                    .map_err(|message| BridgeError::Api { code: 500, message }),
                Ok(None) => Err(BridgeError::Stream(
                    "the connection to the cluster was lost before the command finished".into(),
                )),
                Err(e) => Err(e),
            }
        }
    };
    stop_pump.cancel();
    let (input, eof, gone) = match pump.await {
        Ok(r) => r,
        Err(_) => {
            let (_tx, rx) = mpsc::unbounded_channel();
            (rx, true, true)
        }
    };
    io.input = input;
    io.eof = eof;
    io.closed = io.closed || gone;
    process.join().await;
    result
}

/// Pass on what `r` holds now, without waiting for more (stderr if `err`).
async fn drain<R: tokio::io::AsyncRead + Unpin>(
    r: &mut Option<R>,
    buf: &mut BytesMut,
    io: &mut ChannelIo,
    err: bool,
) -> Result<(), ()> {
    use futures::FutureExt as _;
    let Some(reader) = r.as_mut() else {
        return Ok(());
    };
    loop {
        buf.reserve(CHUNK);
        match reader.read_buf(buf).now_or_never() {
            Some(Ok(n)) if n > 0 => {}
            _ => break,
        }
        let chunk = buf.split().freeze();
        let sent = if err {
            io.err(chunk).await
        } else {
            io.out(chunk).await
        };
        sent.map_err(|_| ())?;
    }
    *r = None;
    Ok(())
}

/// Read what `r` has into `buf`'s spare capacity (at least `CHUNK` of it); pending forever
/// when the stream is gone.
async fn read_opt<R: tokio::io::AsyncRead + Unpin>(
    r: &mut Option<R>,
    buf: &mut BytesMut,
) -> Option<usize> {
    match r {
        Some(r) => {
            buf.reserve(CHUNK);
            r.read_buf(buf).await.ok()
        }
        None => std::future::pending().await,
    }
}

/// Where input events are also told: the recording, and observers (resizes).
struct Taps {
    recorder: Option<Recorder>,
    live: Option<std::sync::Arc<crate::observe::Live>>,
}

/// Forward client input to the pod until told to stop; give the queue back.
async fn stdin_pump<W>(
    Taps { recorder, live }: Taps,
    mut input: mpsc::UnboundedReceiver<Input>,
    mut stdin: Option<W>,
    mut resize: Option<futures::channel::mpsc::Sender<TerminalSize>>,
    eof_already: bool,
    client_gone: CancellationToken,
    stop: CancellationToken,
) -> (mpsc::UnboundedReceiver<Input>, bool, bool)
where
    W: tokio::io::AsyncWrite + Unpin,
{
    let mut eof = eof_already;
    let mut gone = false;
    if eof && let Some(mut w) = stdin.take() {
        let _ = w.shutdown().await;
    }
    loop {
        let next = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            n = input.recv() => n,
        };
        match next {
            Some(Input::Data(bytes, _permit)) => {
                if let Some(r) = &recorder
                    && r.input(&bytes).is_err()
                {
                    // The session ends on a recording failure; see the output side.
                    client_gone.cancel();
                    break;
                }
                if let Some(w) = stdin.as_mut() {
                    // A pod that stopped reading stdin holds this write; stop() still ends it.
                    tokio::select! {
                        r = w.write_all(&bytes) => if r.is_err() { stdin = None; },
                        _ = stop.cancelled() => break,
                    }
                }
            }
            Some(Input::Eof) => {
                eof = true;
                if let Some(mut w) = stdin.take() {
                    let _ = w.shutdown().await;
                }
            }
            Some(Input::Resize { cols, rows }) => {
                if let Some(r) = &recorder {
                    let _ = r.resize(cols, rows);
                }
                if let Some(l) = &live {
                    l.resize(cols, rows);
                }
                if let Some(r) = resize.as_mut() {
                    let _ = r
                        .send(TerminalSize {
                            width: cols,
                            height: rows,
                        })
                        .await;
                }
            }
            Some(Input::Close) | None => {
                gone = true;
                client_gone.cancel();
                break;
            }
        }
    }
    (input, eof, gone)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{StatusCause, StatusDetails};

    use super::*;

    #[test]
    fn exit_statuses_are_read_like_kubectl() {
        let ok = Status {
            status: Some("Success".into()),
            ..Default::default()
        };
        assert_eq!(exit_status(&ok), Ok(0));
        let three = Status {
            status: Some("Failure".into()),
            reason: Some("NonZeroExitCode".into()),
            details: Some(StatusDetails {
                causes: Some(vec![StatusCause {
                    reason: Some("ExitCode".into()),
                    message: Some("3".into()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(exit_status(&three), Ok(3));
        let internal = Status {
            status: Some("Failure".into()),
            reason: Some("InternalError".into()),
            message: Some("executable file not found".into()),
            ..Default::default()
        };
        assert_eq!(
            exit_status(&internal),
            Err("executable file not found".into())
        );
    }
}
