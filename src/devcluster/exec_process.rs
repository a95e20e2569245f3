//! Starting, tracking and killing the local process behind one `pods/exec`.
//!
//! Guarantees:
//! - argv is executed directly (never through a shell), with cwd = the sandbox
//!   directory and the server's environment plus the request's variables, in
//!   its own process group (with a tty: its own session, see
//!   `exec_pty.rs`), with `kill_on_drop`.
//! - A program that cannot be started yields the `InternalError` text of the
//!   kubelet → containerd → runc path (`... exec: "x": executable file not
//!   found in $PATH: unknown`), with a random 64-hex-digit exec id.
//! - `ProcessGroup` kills the group (with a tty, every process of the
//!   session) with SIGKILL, also when dropped while armed.
//! - Exit code: the process's code, or 128+N when killed by signal N, which is
//!   what container runtimes report.
//!
//! Not guaranteed: containment. A process that moves to another process group
//! (or, with a tty, another session) is not found; there are no cgroups or
//! namespaces.

use std::fmt::Write as _;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::{Pid, getsid};
use serde_json::Value;
use tokio::io::AsyncRead;
use tokio::process::{Child, ChildStdin};

use super::channel;
use super::exec::ExecRequest;
use super::exec_pty;

/// How long to wait for a child killed with SIGKILL to be reaped.
const REAP_TIMEOUT: Duration = Duration::from_secs(5);

/// One output source and the channel its bytes go to (`None`: read and
/// discard, so the process never blocks on a stream nobody asked for).
pub(super) type Output = (Option<u8>, Box<dyn AsyncRead + Send + Unpin>);

/// Where the process's stdin goes.
pub(super) enum Input {
    None,
    Pipe(ChildStdin),
    Pty(exec_pty::PtyInput),
}

/// A started process and its I/O ends.
pub(super) struct Started {
    pub child: Child,
    /// Its process group (and, with a tty, session) id: the child's pid.
    pub group: ProcessGroup,
    pub input: Input,
    pub outputs: Vec<Output>,
}

/// Starts the process, or returns the `InternalError` message the kubelet path
/// (kubelet → containerd → runc) would report.
pub(super) fn start(req: &ExecRequest) -> Result<Started, String> {
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
            let outputs: Vec<Output> = vec![(channel, Box::new(output))];
            (child, Input::Pty(input), outputs)
        })
    } else {
        spawn_pipes(program, args, req)
    };
    let (child, input, outputs) = spawned.map_err(|error| start_error(program, &error))?;
    let Some(pid) = child.id().and_then(|pid| i32::try_from(pid).ok()) else {
        return Err(oci_exec_failed(
            "exec failed: process exited before it was tracked",
        ));
    };
    let group = ProcessGroup {
        leader: Pid::from_raw(pid),
        whole_session: req.tty,
        armed: true,
    };
    Ok(Started {
        child,
        group,
        input,
        outputs,
    })
}

type Spawned = (Child, Input, Vec<Output>);

fn spawn_pipes(program: &str, args: &[String], req: &ExecRequest) -> io::Result<Spawned> {
    let piped_if = |wanted: bool| {
        if wanted {
            Stdio::piped()
        } else {
            Stdio::null()
        }
    };
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
    let mut outputs: Vec<Output> = Vec::new();
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
pub(super) struct ProcessGroup {
    leader: Pid,
    whole_session: bool,
    armed: bool,
}

impl ProcessGroup {
    /// SIGKILLs the group and, with a tty, every other process of the session
    /// (job control puts background jobs in their own groups).
    pub(super) fn kill(&self) {
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
    pub(super) fn disarm(&mut self) {
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
pub(super) async fn reap(child: &mut Child) {
    if tokio::time::timeout(REAP_TIMEOUT, child.wait())
        .await
        .is_err()
    {
        tracing::warn!("killed exec process was not reaped in time");
    }
}

/// The Status document for the process's end, as the kubelet builds it.
pub(super) fn status_document(command: &[String], status: io::Result<ExitStatus>) -> Value {
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
        _ => channel::go_error_text(error),
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
    let mut id = String::with_capacity(64);
    for part in 0..4u8 {
        // Each RandomState has its own SipHash keys (random per thread, then
        // stepped), so the id is unpredictable enough for a log correlation id.
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u8(part);
        hasher.write_u128(nanos);
        let _ = write!(id, "{:016x}", hasher.finish());
    }
    id
}

#[cfg(test)]
pub(super) mod tests {
    use std::time::Duration;

    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    use tokio_util::sync::CancellationToken;

    use super::super::channel::Protocol;
    use super::super::channel::test_support::{LIMIT, Socket, joined, next_message};
    use super::super::exec::tests::{receive_all, request, run_to_end, start};
    use super::*;

    /// Alive and not a zombie.
    fn is_running(pid: i32) -> bool {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // The state letter follows the parenthesised command name.
        let state = stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.chars().next());
        kill(Pid::from_raw(pid), None).is_ok() && !matches!(state, Some('Z' | 'X') | None)
    }

    pub(in super::super) async fn wait_until_gone(pid: i32) {
        tokio::time::timeout(LIMIT, async {
            while is_running(pid) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("process still running");
    }

    /// The pid a script printed as its first stdout frame.
    async fn read_pid(client: &mut Socket) -> i32 {
        match next_message(client).await {
            Some(Message::Binary(bytes)) => {
                assert_eq!(bytes.first(), Some(&1));
                let text = std::str::from_utf8(bytes.get(1..).unwrap()).unwrap();
                text.trim().parse().unwrap()
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn client_disconnect_kills_the_process() {
        let dir = tempfile::tempdir().unwrap();
        let req = request(&["sh", "-c", "echo $$; exec sleep 1000"], dir.path());
        let (mut client, task) = start(req, Protocol::V5, CancellationToken::new()).await;
        let pid = read_pid(&mut client).await;
        assert!(is_running(pid));
        drop(client);
        joined(task).await;
        wait_until_gone(pid).await;
    }

    #[tokio::test]
    async fn dropping_serve_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let req = request(&["sh", "-c", "sleep 1000 & echo $!; wait"], dir.path());
        let (mut client, task) = start(req, Protocol::V5, CancellationToken::new()).await;
        let pid = read_pid(&mut client).await;
        task.abort();
        let _ = tokio::time::timeout(LIMIT, task).await.unwrap();
        wait_until_gone(pid).await;
    }

    #[tokio::test]
    async fn shutdown_kills_the_process() {
        let dir = tempfile::tempdir().unwrap();
        let req = request(&["sh", "-c", "echo $$; exec sleep 1000"], dir.path());
        let shutdown = CancellationToken::new();
        let (mut client, task) = start(req, Protocol::V5, shutdown.clone()).await;
        let pid = read_pid(&mut client).await;
        shutdown.cancel();
        let received = receive_all(&mut client).await;
        assert_eq!(received.close, Some(CloseCode::Away));
        assert_eq!(received.status, None);
        joined(task).await;
        wait_until_gone(pid).await;
    }

    #[tokio::test]
    async fn background_children_are_killed_when_the_main_process_exits() {
        let dir = tempfile::tempdir().unwrap();
        // The background sleep inherits stdout: without the group kill the
        // session would wait for its EOF.
        let req = request(&["sh", "-c", "sleep 1000 & echo $!"], dir.path());
        let received = run_to_end(req, Protocol::V5).await;
        assert_eq!(received.status.unwrap()["status"], "Success");
        let pid: i32 = String::from_utf8(received.stdout)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        wait_until_gone(pid).await;
    }

    #[test]
    fn exit_codes_follow_container_runtimes() {
        assert_eq!(exit_code(ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(exit_code(ExitStatus::from_raw(9)), 137);
        assert_eq!(exit_code(ExitStatus::from_raw(15)), 143);
    }

    #[test]
    fn start_errors_use_go_wording() {
        let not_found = io::Error::from(io::ErrorKind::NotFound);
        let denied = io::Error::from(io::ErrorKind::PermissionDenied);
        let cases = [
            (
                "ls-x",
                &not_found,
                "exec: \"ls-x\": executable file not found in $PATH: unknown",
            ),
            (
                "/bin/x",
                &not_found,
                "exec: \"/bin/x\": stat /bin/x: no such file or directory: unknown",
            ),
            (
                "/etc/hosts",
                &denied,
                "exec: \"/etc/hosts\": permission denied: unknown",
            ),
        ];
        for (program, error, suffix) in cases {
            let message = start_error(program, error);
            assert!(message.ends_with(suffix), "{message}");
        }
    }

    #[test]
    fn exec_ids_are_64_random_hex_digits() {
        let (first, second) = (exec_id(), exec_id());
        assert_eq!(first.len(), 64);
        assert!(first.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(first, second);
    }
}
