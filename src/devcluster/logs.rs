//! Container logs (`pods/log`): the fixture's lines plus a numbered heartbeat line every
//! `log_every`, filtered and streamed the way the kubelet serves them.
//!
//! A container's log is a pure function of its start time and the clock: the fixture lines
//! are written at start, heartbeat N at start + N × `log_every`. That keeps `tailLines`,
//! `sinceSeconds` and `follow` consistent with each other and makes tests deterministic
//! about *which* lines exist without depending on *when* they are read.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::Stream;
use tokio_util::sync::CancellationToken;

use super::status::ApiError;
use super::store::{ContainerRuntime, PodRuntime};

/// The query of a `pods/log` request (k8s.io/api/core/v1 PodLogOptions).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogQuery {
    pub container: String,
    pub follow: bool,
    pub previous: bool,
    pub timestamps: bool,
    pub tail_lines: Option<i64>,
    pub since_seconds: Option<i64>,
    pub since_time: Option<SystemTime>,
    pub limit_bytes: Option<i64>,
}

impl LogQuery {
    /// Parse the query string parameters; errors are 400 BadRequest messages.
    pub fn parse(params: &[(String, String)]) -> Result<LogQuery, ApiError> {
        let mut q = LogQuery::default();
        for (k, v) in params {
            match k.as_str() {
                "container" => q.container = v.clone(),
                "follow" => q.follow = parse_bool(k, v)?,
                "previous" => q.previous = parse_bool(k, v)?,
                "timestamps" => q.timestamps = parse_bool(k, v)?,
                "tailLines" => q.tail_lines = Some(parse_int(k, v)?),
                "sinceSeconds" => {
                    let s = parse_int(k, v)?;
                    if s < 1 {
                        return Err(ApiError::invalid(
                            "sinceSeconds: Invalid value: must be greater than 0",
                        ));
                    }
                    q.since_seconds = Some(s);
                }
                "sinceTime" => {
                    q.since_time = Some(humantime::parse_rfc3339_weak(v).map_err(|e| {
                        ApiError::bad_request(format!("sinceTime: invalid RFC3339 time {v:?}: {e}"))
                    })?)
                }
                "limitBytes" => {
                    let n = parse_int(k, v)?;
                    if n < 1 {
                        return Err(ApiError::invalid(
                            "limitBytes: Invalid value: must be greater than 0",
                        ));
                    }
                    q.limit_bytes = Some(n);
                }
                _ => {}
            }
        }
        if q.since_seconds.is_some() && q.since_time.is_some() {
            return Err(ApiError::invalid(
                "PodLogOptions: at most one of `sinceTime` or `sinceSeconds` may be specified",
            ));
        }
        Ok(q)
    }
}

fn parse_bool(k: &str, v: &str) -> Result<bool, ApiError> {
    match v {
        "true" | "1" | "" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(ApiError::bad_request(format!("{k}: invalid boolean {v:?}"))),
    }
}

fn parse_int(k: &str, v: &str) -> Result<i64, ApiError> {
    v.parse::<i64>()
        .map_err(|_| ApiError::bad_request(format!("{k}: invalid integer {v:?}")))
}

/// One log line and when it was written.
#[derive(Debug, Clone, PartialEq)]
struct Line {
    at: SystemTime,
    text: String,
}

/// Check that logs can be served for this container at all, as the kubelet does.
pub fn check(
    pod: &PodRuntime,
    container: &ContainerRuntime,
    query: &LogQuery,
) -> Result<(), ApiError> {
    if query.previous && container.previous_logs.is_none() {
        return Err(ApiError::bad_request(format!(
            "previous terminated container {:?} in pod {:?} not found",
            container.name, pod.name
        )));
    }
    if !query.previous && pod.phase == super::fixture::Phase::Pending {
        return Err(ApiError::bad_request(format!(
            "container {:?} in pod {:?} is waiting to start: ContainerCreating",
            container.name, pod.name
        )));
    }
    Ok(())
}

fn heartbeat(n: u64) -> String {
    format!("heartbeat {n}")
}

/// Every line written up to `now`.
fn lines_until(
    pod: &PodRuntime,
    c: &ContainerRuntime,
    previous: bool,
    now: SystemTime,
) -> Vec<Line> {
    if previous {
        let at = pod
            .started
            .checked_sub(Duration::from_secs(60))
            .unwrap_or(pod.started);
        return c
            .previous_logs
            .iter()
            .flatten()
            .map(|t| Line {
                at,
                text: t.clone(),
            })
            .collect();
    }
    let mut out: Vec<Line> = c
        .logs
        .iter()
        .map(|t| Line {
            at: pod.started,
            text: t.clone(),
        })
        .collect();
    if let Some(every) = c.log_every.filter(|d| !d.is_zero())
        && pod.phase == super::fixture::Phase::Running
    {
        let elapsed = now.duration_since(pod.started).unwrap_or_default();
        let count = elapsed.as_nanos() / every.as_nanos().max(1);
        // Bounded: a long-running devcluster keeps at most this many heartbeats in view.
        let count = u64::try_from(count).unwrap_or(u64::MAX);
        let first = count.saturating_sub(MAX_HISTORY).max(1);
        for n in first..=count {
            if let Some(at) = heartbeat_time(pod.started, every, n) {
                out.push(Line {
                    at,
                    text: heartbeat(n),
                });
            }
        }
    }
    out
}

/// How many past heartbeat lines a log keeps (like kubelet log rotation, it forgets).
const MAX_HISTORY: u64 = 100_000;

fn heartbeat_time(start: SystemTime, every: Duration, n: u64) -> Option<SystemTime> {
    let nanos = every.as_nanos().checked_mul(u128::from(n))?;
    let nanos = u64::try_from(nanos).ok()?;
    start.checked_add(Duration::from_nanos(nanos))
}

fn render(line: &Line, timestamps: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(line.text.len() + 32);
    if timestamps {
        out.extend_from_slice(
            humantime::format_rfc3339_nanos(line.at)
                .to_string()
                .as_bytes(),
        );
        out.push(b' ');
    }
    out.extend_from_slice(line.text.as_bytes());
    out.push(b'\n');
    out
}

/// The log as it is at `now`, after `sinceSeconds`/`sinceTime` and `tailLines`.
fn initial(pod: &PodRuntime, c: &ContainerRuntime, q: &LogQuery, now: SystemTime) -> Vec<Line> {
    let mut lines = lines_until(pod, c, q.previous, now);
    let since = match (q.since_seconds, q.since_time) {
        (Some(s), _) => now.checked_sub(Duration::from_secs(u64::try_from(s).unwrap_or(0))),
        (None, Some(t)) => Some(t),
        (None, None) => None,
    };
    if let Some(since) = since {
        lines.retain(|l| l.at >= since);
    }
    if let Some(tail) = q.tail_lines {
        let keep = usize::try_from(tail.max(0)).unwrap_or(usize::MAX);
        let skip = lines.len().saturating_sub(keep);
        lines.drain(..skip);
    }
    lines
}

/// The response body: the current log, then (with `follow`) each new heartbeat as it is
/// written, until the pod is deleted or the server shuts down. `limitBytes` cuts the
/// stream. Each yielded chunk is one whole line, so hyper sends one chunk per line.
pub fn stream(
    pod: std::sync::Arc<PodRuntime>,
    container: ContainerRuntime,
    q: LogQuery,
    stop: CancellationToken,
) -> impl Stream<Item = Bytes> + Send + 'static {
    let now = SystemTime::now();
    let first = initial(&pod, &container, &q, now);
    let next_n = container.log_every.filter(|d| !d.is_zero()).map(|every| {
        let elapsed = now.duration_since(pod.started).unwrap_or_default();
        let done = elapsed.as_nanos() / every.as_nanos().max(1);
        u64::try_from(done).unwrap_or(u64::MAX).saturating_add(1)
    });
    let follow = q.follow && !q.previous && pod.phase == super::fixture::Phase::Running;
    let state = State {
        pending: first.into_iter(),
        next_n,
        follow,
        budget: q
            .limit_bytes
            .map(|b| usize::try_from(b).unwrap_or(usize::MAX)),
        pod,
        container,
        timestamps: q.timestamps,
        stop,
    };
    futures::stream::unfold(state, |mut st| async move {
        let line = match st.pending.next() {
            Some(l) => l,
            None => {
                if !st.follow {
                    return None;
                }
                let Some(every) = st.container.log_every.filter(|d| !d.is_zero()) else {
                    // A running container that writes nothing keeps a follow open, as a
                    // kubelet does, until the client goes or the pod is deleted.
                    tokio::select! {
                        _ = st.stop.cancelled() => {}
                        _ = st.pod.deleted.cancelled() => {}
                    }
                    return None;
                };
                let n = st.next_n?;
                let at = heartbeat_time(st.pod.started, every, n)?;
                let wait = at.duration_since(SystemTime::now()).unwrap_or_default();
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = st.stop.cancelled() => return None,
                    _ = st.pod.deleted.cancelled() => return None,
                }
                st.next_n = Some(n.saturating_add(1));
                Line {
                    at,
                    text: heartbeat(n),
                }
            }
        };
        let mut bytes = render(&line, st.timestamps);
        if let Some(budget) = st.budget.as_mut() {
            if *budget == 0 {
                return None;
            }
            bytes.truncate(*budget);
            *budget -= bytes.len();
        }
        Some((Bytes::from(bytes), st))
    })
}

struct State {
    pending: std::vec::IntoIter<Line>,
    next_n: Option<u64>,
    follow: bool,
    budget: Option<usize>,
    pod: std::sync::Arc<PodRuntime>,
    container: ContainerRuntime,
    timestamps: bool,
    stop: CancellationToken,
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use futures::StreamExt;

    use super::*;
    use crate::devcluster::fixture::Phase;

    fn pod(started_ago: Duration, every: Option<Duration>) -> Arc<PodRuntime> {
        Arc::new(PodRuntime {
            namespace: "ns".into(),
            name: "p".into(),
            uid: "u".into(),
            phase: Phase::Running,
            started: SystemTime::now() - started_ago,
            containers: vec![ContainerRuntime {
                name: "c".into(),
                logs: vec!["one".into(), "two".into()],
                log_every: every,
                previous_logs: Some(vec!["old".into()]),
                ports: vec![],
            }],
            deleted: CancellationToken::new(),
        })
    }

    async fn collect(p: Arc<PodRuntime>, q: LogQuery) -> String {
        let c = p.containers[0].clone();
        let s = stream(p, c, q, CancellationToken::new());
        let chunks: Vec<Bytes> = tokio::time::timeout(Duration::from_secs(10), s.collect())
            .await
            .unwrap();
        String::from_utf8(chunks.concat()).unwrap()
    }

    #[tokio::test]
    async fn queries_select_lines_like_the_kubelet() {
        let p = pod(Duration::from_millis(3500), Some(Duration::from_secs(1)));
        let cases = [
            (
                LogQuery::default(),
                "one\ntwo\nheartbeat 1\nheartbeat 2\nheartbeat 3\n",
            ),
            (
                LogQuery {
                    tail_lines: Some(2),
                    ..Default::default()
                },
                "heartbeat 2\nheartbeat 3\n",
            ),
            (
                LogQuery {
                    tail_lines: Some(0),
                    ..Default::default()
                },
                "",
            ),
            (
                LogQuery {
                    since_seconds: Some(2),
                    ..Default::default()
                },
                "heartbeat 2\nheartbeat 3\n",
            ),
            (
                LogQuery {
                    previous: true,
                    ..Default::default()
                },
                "old\n",
            ),
            (
                LogQuery {
                    limit_bytes: Some(6),
                    ..Default::default()
                },
                "one\ntw",
            ),
        ];
        for (q, want) in cases {
            assert_eq!(collect(p.clone(), q.clone()).await, want, "{q:?}");
        }
    }

    #[tokio::test]
    async fn timestamps_prefix_each_line_in_rfc3339_nanos() {
        let p = pod(Duration::from_millis(10), None);
        let out = collect(
            p,
            LogQuery {
                timestamps: true,
                ..Default::default()
            },
        )
        .await;
        for line in out.lines() {
            let (ts, _) = line.split_once(' ').unwrap();
            assert!(humantime::parse_rfc3339(ts).is_ok(), "{ts}");
        }
    }

    #[tokio::test]
    async fn follow_yields_new_heartbeats_and_ends_when_the_pod_goes() {
        let p = pod(Duration::from_millis(0), Some(Duration::from_millis(20)));
        let c = p.containers[0].clone();
        let q = LogQuery {
            follow: true,
            ..Default::default()
        };
        let mut s = Box::pin(stream(p.clone(), c, q, CancellationToken::new()));
        let mut seen = Vec::new();
        while seen.len() < 4 {
            let b = tokio::time::timeout(Duration::from_secs(10), s.next())
                .await
                .unwrap()
                .unwrap();
            seen.push(String::from_utf8(b.to_vec()).unwrap());
        }
        assert_eq!(seen, ["one\n", "two\n", "heartbeat 1\n", "heartbeat 2\n"]);
        p.deleted.cancel();
        let end = tokio::time::timeout(Duration::from_secs(10), async {
            while s.next().await.is_some() {}
        })
        .await;
        assert!(end.is_ok());
    }

    #[test]
    fn query_parsing_rejects_what_the_api_server_rejects() {
        let p = |pairs: &[(&str, &str)]| {
            LogQuery::parse(
                &pairs
                    .iter()
                    .map(|(k, v)| ((*k).into(), (*v).into()))
                    .collect::<Vec<_>>(),
            )
        };
        let q = p(&[
            ("container", "c"),
            ("follow", "true"),
            ("tailLines", "5"),
            ("timestamps", "true"),
        ])
        .unwrap();
        assert_eq!(
            (q.container.as_str(), q.follow, q.tail_lines, q.timestamps),
            ("c", true, Some(5), true)
        );
        assert_eq!(p(&[("sinceSeconds", "0")]).unwrap_err().code, 422);
        assert_eq!(p(&[("tailLines", "x")]).unwrap_err().code, 400);
        assert_eq!(
            p(&[("sinceSeconds", "5"), ("sinceTime", "2026-01-01T00:00:00Z")])
                .unwrap_err()
                .code,
            422
        );
    }
}
