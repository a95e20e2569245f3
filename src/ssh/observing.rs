//! Live observation on the SSH side (issue 11): `sessions` lists the live sessions of this
//! gateway the caller may observe, and `watch SESSION` shows one's output as it happens,
//! read-only, from its current screen on. The observed user is told who watches, and the
//! observer is kept in the session's metadata and the audit log.
//!
//! Guarantees: observing needs the policy action `observe` on the observed session's
//! target (namespace, pod, container), within the observer's certificate scope; this is
//! checked before the watch starts, so a refused observer is never announced. Nothing the
//! observer types reaches the observed session (Ctrl-C, `q` or closing ends the watch).
//!
//! Not here: sessions on other replicas (`observe::Hub` is per process; the message says
//! which gateway is asked), and the screen model (`observe`).

use std::time::SystemTime;

use serde_json::json;

use super::io::{Absorbed, ChannelIo, lf_to_crlf};
use super::session::{Ctx, EXIT_DENIED, EXIT_UNAVAILABLE};
use crate::action::Action;
use crate::observe::{LiveInfo, WatchEvent};
use crate::policy::Ask;

/// Whether the caller may observe `info` (policy action `observe` on its target).
fn may_observe(ctx: &Ctx, info: &LiveInfo) -> Result<(), String> {
    let ask = Ask {
        groups: &ctx.identity.groups,
        action: Action::Observe,
        namespace: &info.namespace,
        pod: &info.pod,
        container: info.container.as_deref(),
        argv: None,
        port: None,
    };
    ctx.gateway
        .policy
        .decide_within(&ctx.identity.scope, &ask)
        .map(|_| ())
}

/// `sessions`.
pub(super) async fn sessions(ctx: &Ctx, io: &mut ChannelIo) -> u32 {
    let rows: Vec<LiveInfo> = ctx
        .gateway
        .hub
        .list()
        .into_iter()
        .filter(|l| may_observe(ctx, l).is_ok())
        .collect();
    let _ = io
        .text(&super::text::session_table(&rows, SystemTime::now()))
        .await;
    0
}

/// `watch SESSION`.
pub(super) async fn watch(ctx: &Ctx, io: &mut ChannelIo, id: &str) -> u32 {
    // Find it first: the policy is checked before anyone is told of a watch.
    let matching: Vec<LiveInfo> = ctx
        .gateway
        .hub
        .list()
        .into_iter()
        .filter(|l| l.session.starts_with(id))
        .collect();
    let info = match matching.as_slice() {
        [one] => one.clone(),
        [] => {
            let _ = io
                .message(&format!(
                    "error: no live session {id} on gateway {} (see `sessions`)",
                    ctx.gateway.name
                ))
                .await;
            return EXIT_UNAVAILABLE;
        }
        _ => {
            let _ = io
                .message(&format!(
                    "{id} matches more than one live session; give more of the id"
                ))
                .await;
            return super::session::EXIT_USAGE;
        }
    };
    let target = crate::request::target_text(&info.namespace, &info.pod, info.container.as_deref());
    if let Err(reason) = may_observe(ctx, &info) {
        ctx.audit(
            "session.denied",
            json!({"action": "observe", "target": target, "observed": info.session, "reason": reason}),
        );
        let _ = io.message(&format!("denied: {reason}")).await;
        return EXIT_DENIED;
    }
    let mut watching = match ctx.gateway.hub.watch(&info.session, &ctx.identity.key_id) {
        Ok(w) => w,
        Err(e) => {
            let _ = io.message(&format!("error: {e}")).await;
            return EXIT_UNAVAILABLE;
        }
    };
    ctx.audit(
        "observe.started",
        json!({"observed": info.session, "observed_identity": info.identity, "target": target}),
    );
    let _ = io
        .message(&format!(
            "watching {} ({} {} {target}), read-only; Ctrl-C or q to stop",
            info.session, info.identity, info.action
        ))
        .await;
    let pty = io.pty.is_some();
    // A session without a PTY prints bare line feeds; an observer's terminal in raw mode
    // needs them as CR LF.
    let convert = pty && info.pty.is_none();
    if let (Some(mine), Some((cols, rows))) = (io.pty, info.pty)
        && (mine.cols < cols || mine.rows < rows)
    {
        let _ = io
            .message(&format!(
                "the session's terminal is {cols}x{rows}, yours {}x{}: enlarge yours for a faithful view",
                mine.cols, mine.rows
            ))
            .await;
    }
    let mut ended = "stopped";
    let initial = if convert {
        lf_to_crlf(watching.initial())
    } else {
        watching.initial().to_vec()
    };
    if io.out(initial).await.is_err() {
        ended = "client closed";
    }
    while ended == "stopped" {
        tokio::select! {
            event = watching.next() => match event {
                WatchEvent::Output(bytes) => {
                    let bytes = if convert { lf_to_crlf(&bytes).into() } else { bytes };
                    if io.out(bytes).await.is_err() {
                        ended = "client closed";
                    }
                }
                WatchEvent::Resized { cols, rows } => {
                    let _ = io.message(&format!("the session's terminal is now {cols}x{rows}")).await;
                }
                WatchEvent::Lagged { dropped_bytes } => {
                    let _ = io
                        .message(&format!("{dropped_bytes} bytes of output not shown (this watch fell behind)"))
                        .await;
                }
                WatchEvent::Ended => ended = "session ended",
            },
            input = io.input.recv() => match io.absorb(input) {
                Absorbed::Typed(bytes) if pty && (bytes.contains(&0x03) || bytes.contains(&b'q')) => {
                    ended = "observer stopped";
                }
                Absorbed::Closed => ended = "client closed",
                Absorbed::Typed(_) | Absorbed::Noted => {}
            },
            () = ctx.gateway.stopping.cancelled() => ended = "gateway stopping",
        }
    }
    drop(watching);
    ctx.audit(
        "observe.ended",
        json!({"observed": info.session, "reason": ended}),
    );
    if pty && info.pty.is_some() {
        // Leave the observer's terminal as it was (alternate screen, attributes, cursor).
        let _ = io.out(crate::observe::RESTORE_TERMINAL).await;
    }
    if ended == "session ended" {
        let _ = io.message("the watched session ended").await;
    }
    0
}

#[cfg(test)]
mod tests {
    use crate::ssh::io::lf_to_crlf;

    #[test]
    fn bare_line_feeds_become_cr_lf_for_a_pty_observer() {
        for (input, want) in [
            (&b"a\nb\n"[..], &b"a\r\nb\r\n"[..]),
            (b"a\r\nb", b"a\r\nb"),
            (b"\n\n", b"\r\n\r\n"),
            (b"", b""),
        ] {
            assert_eq!(lf_to_crlf(input), want, "{input:?}");
        }
    }
}
