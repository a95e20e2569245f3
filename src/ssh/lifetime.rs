//! When a channel must end (issue 5): at the earliest of the certificate's `valid_before`,
//! the allowing rule's `max_session` (counted from the start of the recorded session),
//! `idle_timeout` without traffic either way, and an end decided for the whole connection
//! (revocation). PTY users are warned 60 s before a deadline.
//!
//! `next` is the pure decision (table-tested); `watch` is the loop that sleeps until the
//! next thing to do, at most a second at a time, so a wall-clock step or a deadline set
//! after the loop started is noticed within a second.
//!
//! Guarantees: the returned `Ending` carries a reason from `meta::end_reason` and a
//! one-line message; a warning is given once per deadline (the idle one again after new
//! traffic). It does not stop anything itself: the caller drops the session's work.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::recording::meta::end_reason;
use crate::recording::session::Recorder;

/// How long before a deadline a PTY user is told.
pub const WARN_BEFORE: Duration = Duration::from_secs(60);
/// The longest the watcher sleeps before looking again.
const POLL: Duration = Duration::from_secs(1);

/// An end decided for every channel of a connection (e.g. `revoked`).
pub type ConnectionEnd = watch::Receiver<Option<&'static str>>;

/// Traffic and the session deadline of one channel, shared by its reader and writer.
pub struct Lifetime {
    base: Instant,
    /// Milliseconds after `base` of the last traffic.
    last: AtomicU64,
    /// The running session's `max_session` deadline, set when a recorded session starts.
    session_deadline: Mutex<Option<(Instant, Duration)>>,
    /// The running session's recorder, for notices written from outside the session.
    recorder: Mutex<Option<Recorder>>,
    /// Set once when the channel must end; the session's work watches `stop`.
    ending: Mutex<Option<Ending>>,
    stop: CancellationToken,
    /// Warnings given while no recorded session ran, for the next recording.
    notices: Mutex<Vec<String>>,
    /// The user has been told why (by the session that was running).
    reported: std::sync::atomic::AtomicBool,
}

impl Lifetime {
    pub fn new() -> Arc<Lifetime> {
        Arc::new(Lifetime {
            base: Instant::now(),
            last: AtomicU64::new(0),
            session_deadline: Mutex::new(None),
            recorder: Mutex::new(None),
            ending: Mutex::new(None),
            stop: CancellationToken::new(),
            reported: std::sync::atomic::AtomicBool::new(false),
            notices: Mutex::new(Vec::new()),
        })
    }

    /// Traffic happened now.
    pub fn touch(&self) {
        let ms = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.fetch_max(ms, Ordering::Relaxed);
    }

    pub fn last_traffic(&self) -> Instant {
        self.base + Duration::from_millis(self.last.load(Ordering::Relaxed))
    }

    /// A recorded session with this `max_session` starts now.
    pub fn session_started(&self, max: Option<Duration>, recorder: Recorder) {
        *self
            .session_deadline
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = max.map(|m| (Instant::now() + m, m));
        let notices = std::mem::take(&mut *self.notices.lock().unwrap_or_else(|e| e.into_inner()));
        for text in notices {
            let _ = recorder.marker(&text);
        }
        *self.recorder.lock().unwrap_or_else(|e| e.into_inner()) = Some(recorder);
    }

    /// Keep a notice for the next recording (none is running).
    pub fn pending_notice(&self, text: String) {
        let mut n = self.notices.lock().unwrap_or_else(|e| e.into_inner());
        if n.len() < 8 {
            n.push(text);
        }
    }

    /// A deadline set from outside (a port-forward session's `max_session`).
    pub fn set_deadline(&self, at: Instant, max: Duration) {
        *self
            .session_deadline
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some((at, max));
    }

    /// The recorded session ended.
    pub fn session_ended(&self) {
        *self
            .session_deadline
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = None;
        *self.recorder.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// The channel must end: remember why (the first reason wins) and stop its work.
    pub fn end(&self, ending: Ending) {
        let mut e = self.ending.lock().unwrap_or_else(|e| e.into_inner());
        if e.is_none() {
            *e = Some(ending);
        }
        self.stop.cancel();
    }

    /// Why the channel must end, once it must.
    pub fn ending(&self) -> Option<Ending> {
        self.ending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Completes when the channel must end (for `select!` in copy loops).
    pub async fn stopped(&self) {
        self.stop.cancelled().await
    }

    pub fn mark_reported(&self) {
        self.reported.store(true, Ordering::Relaxed);
    }

    pub fn reported(&self) -> bool {
        self.reported.load(Ordering::Relaxed)
    }

    pub fn is_stopped(&self) -> bool {
        self.stop.is_cancelled()
    }

    pub fn recorder(&self) -> Option<Recorder> {
        self.recorder
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn max_session(&self) -> Option<(Instant, Duration)> {
        *self
            .session_deadline
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }
}

/// Why and how a channel ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ending {
    pub reason: &'static str,
    pub message: String,
}

/// The deadlines of one channel, read at one instant.
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    /// Certificate `valid_before`, Unix seconds.
    pub valid_before: u64,
    /// Unix time now, seconds (with fraction).
    pub now_unix: f64,
    /// Time left before `max_session` is over, and its length.
    pub max_session: Option<(Duration, Duration)>,
    /// Time since the last traffic, and the idle timeout.
    pub idle: (Duration, Duration),
}

/// What to do next.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    End(Ending),
    /// Warn (once per `key`) with `text`, then look again after the duration.
    Warn {
        key: &'static str,
        text: String,
        after: Duration,
    },
    Sleep(Duration),
}

fn secs(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

/// The pure decision: the earliest deadline wins; inside `WARN_BEFORE` of it, warn.
pub fn next(d: &Deadlines) -> Step {
    let expiry_left = Duration::from_secs_f64((d.valid_before as f64 - d.now_unix).max(0.0));
    let (idle_for, idle_timeout) = d.idle;
    let idle_left = idle_timeout.saturating_sub(idle_for);
    let mut candidates = vec![(
        expiry_left,
        end_reason::EXPIRED,
        "your certificate expired".to_owned(),
        format!(
            "your certificate expires in {}; this session will end then",
            secs(expiry_left)
        ),
    )];
    if let Some((left, max)) = d.max_session {
        candidates.push((
            left,
            end_reason::MAX_SESSION,
            format!("the rule's max_session of {} is over", secs(max)),
            format!(
                "the rule's max_session of {} ends this session in {}",
                secs(max),
                secs(left)
            ),
        ));
    }
    candidates.push((
        idle_left,
        end_reason::IDLE,
        format!("no traffic for {}", secs(idle_timeout)),
        format!(
            "no traffic for {}; this session ends in {} unless there is some",
            secs(idle_for),
            secs(idle_left)
        ),
    ));
    candidates.sort_by_key(|c| c.0);
    let Some((left, reason, ended, warning)) = candidates.into_iter().next() else {
        return Step::Sleep(POLL);
    };
    if left.is_zero() {
        return Step::End(Ending {
            reason,
            message: format!("session ended: {ended}"),
        });
    }
    let after = left.min(POLL);
    if left <= WARN_BEFORE {
        return Step::Warn {
            key: reason,
            text: warning,
            after,
        };
    }
    Step::Sleep(after.min(left - WARN_BEFORE).max(Duration::from_millis(10)))
}

fn connection_ending(reason: &'static str) -> Ending {
    let message = match reason {
        end_reason::REVOKED => "session ended: your certificate was revoked".to_owned(),
        end_reason::EXPIRED => "session ended: your certificate expired".to_owned(),
        end_reason::GATEWAY_STOPPED => "session ended: the gateway is stopping".to_owned(),
        other => format!("session ended: {other}"),
    };
    Ending { reason, message }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Wait until the channel must end. `warn` is called with each warning text (the caller
/// shows it to PTY users and records it).
pub async fn watch(
    valid_before: u64,
    idle_timeout: Duration,
    lifetime: &Lifetime,
    mut connection: ConnectionEnd,
    mut warn: impl FnMut(String),
) -> Ending {
    let mut warned: Vec<&'static str> = Vec::new();
    let mut warned_idle_at: Option<Instant> = None;
    loop {
        if let Some(reason) = *connection.borrow_and_update() {
            return connection_ending(reason);
        }
        let now = Instant::now();
        let last = lifetime.last_traffic();
        let deadlines = Deadlines {
            valid_before,
            now_unix: unix_now(),
            max_session: lifetime
                .max_session()
                .map(|(at, max)| (at.saturating_duration_since(now), max)),
            idle: (now.saturating_duration_since(last), idle_timeout),
        };
        let sleep = match next(&deadlines) {
            Step::End(ending) => return ending,
            Step::Warn { key, text, after } => {
                // The idle warning is given again after traffic reset the idle clock.
                let fresh = if key == end_reason::IDLE {
                    warned_idle_at != Some(last)
                } else {
                    !warned.contains(&key)
                };
                if fresh {
                    if key == end_reason::IDLE {
                        warned_idle_at = Some(last);
                    } else {
                        warned.push(key);
                    }
                    warn(text);
                }
                after
            }
            Step::Sleep(d) => d,
        };
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            changed = connection.changed() => {
                if changed.is_err() {
                    // The connection is gone; its channels end with it.
                    return connection_ending(end_reason::CLIENT_CLOSED);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(expiry_in: f64, max_left: Option<u64>, idle_for: u64, idle: u64) -> Deadlines {
        Deadlines {
            valid_before: 1_000_000,
            now_unix: 1_000_000.0 - expiry_in,
            max_session: max_left.map(|l| (Duration::from_secs(l), Duration::from_secs(1800))),
            idle: (Duration::from_secs(idle_for), Duration::from_secs(idle)),
        }
    }

    #[test]
    fn the_earliest_deadline_decides_and_warnings_come_inside_a_minute() {
        let cases: &[(Deadlines, &str, Option<&str>)] = &[
            // (deadlines, expected step kind, reason)
            (d(3600.0, None, 0, 900), "sleep", None),
            (d(0.0, None, 0, 900), "end", Some(end_reason::EXPIRED)),
            (d(-5.0, Some(100), 0, 900), "end", Some(end_reason::EXPIRED)),
            (d(30.0, None, 0, 900), "warn", Some(end_reason::EXPIRED)),
            (
                d(3600.0, Some(0), 0, 900),
                "end",
                Some(end_reason::MAX_SESSION),
            ),
            (
                d(3600.0, Some(59), 0, 900),
                "warn",
                Some(end_reason::MAX_SESSION),
            ),
            (
                d(3600.0, Some(120), 900, 900),
                "end",
                Some(end_reason::IDLE),
            ),
            (
                d(3600.0, Some(120), 850, 900),
                "warn",
                Some(end_reason::IDLE),
            ),
            (d(10.0, Some(5), 899, 900), "warn", Some(end_reason::IDLE)),
            (d(3600.0, None, 10, 900), "sleep", None),
        ];
        for (i, (deadlines, kind, reason)) in cases.iter().enumerate() {
            match (next(deadlines), *kind) {
                (Step::Sleep(s), "sleep") => assert!(s <= POLL, "case {i}"),
                (Step::End(e), "end") => {
                    assert_eq!(Some(e.reason), *reason, "case {i}");
                    assert!(e.message.starts_with("session ended: "), "case {i}");
                }
                (Step::Warn { key, after, .. }, "warn") => {
                    assert_eq!(Some(key), *reason, "case {i}");
                    assert!(after <= POLL, "case {i}");
                }
                (other, _) => panic!("case {i}: {other:?}, expected {kind}"),
            }
        }
    }

    #[test]
    fn messages_name_the_reason_in_plain_words() {
        let Step::End(e) = next(&d(3600.0, None, 900, 900)) else {
            panic!("expected end")
        };
        assert_eq!(e.message, "session ended: no traffic for 15m");
        let Step::End(e) = next(&d(3600.0, Some(0), 0, 900)) else {
            panic!("expected end")
        };
        assert_eq!(
            e.message,
            "session ended: the rule's max_session of 30m is over"
        );
        let Step::Warn { text, .. } = next(&d(42.4, None, 0, 900)) else {
            panic!("expected warning")
        };
        assert_eq!(
            text,
            "your certificate expires in 42s; this session will end then"
        );
    }

    #[tokio::test]
    async fn a_connection_end_wins_at_once() {
        let (tx, rx) = watch::channel(None);
        let life = Lifetime::new();
        let far = (unix_now() as u64) + 3600;
        let waiting =
            tokio::spawn(
                async move { watch(far, Duration::from_secs(900), &life, rx, |_| {}).await },
            );
        tx.send_replace(Some(end_reason::REVOKED));
        let ending = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(ending.reason, end_reason::REVOKED);
    }

    #[tokio::test]
    async fn idle_time_counts_from_the_last_traffic() {
        let (_tx, rx) = watch::channel(None);
        let life = Lifetime::new();
        let far = (unix_now() as u64) + 3600;
        let started = Instant::now();
        let mut warnings = Vec::new();
        let ending = tokio::time::timeout(
            Duration::from_secs(10),
            watch(far, Duration::from_millis(300), &life, rx, |w| {
                warnings.push(w)
            }),
        )
        .await
        .unwrap();
        assert_eq!(ending.reason, end_reason::IDLE);
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert_eq!(warnings.len(), 1, "{warnings:?}");
    }
}
