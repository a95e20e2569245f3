use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::FutureExt as _;

use super::screen::{BACKLOG, Model, Screen, TAIL};
use super::*;

const A: &str = "0123456789abcdef0123456789abcdef";
const B: &str = "0123456fffffffffffffffffffffffff";
const C: &str = "abcdef00000000000000000000000000";

fn info(session: &str, pty: Option<(u16, u16)>, started_secs: u64) -> LiveInfo {
    LiveInfo {
        session: session.to_owned(),
        identity: "bob@corp.example".to_owned(),
        action: "shell".to_owned(),
        namespace: "default".to_owned(),
        pod: "web-0".to_owned(),
        container: None,
        command: None,
        started: UNIX_EPOCH + Duration::from_secs(started_secs),
        pty,
        observers: Vec::new(),
    }
}

fn live(hub: &Arc<Hub>, session: &str, pty: Option<(u16, u16)>) -> Live {
    hub.register(info(session, pty, 1)).expect("register")
}

/// The next event, failing the test instead of hanging.
async fn next(w: &mut Watch) -> WatchEvent {
    tokio::time::timeout(Duration::from_secs(5), w.next())
        .await
        .expect("an event within 5 s")
}

/// The next event if one is ready now (the future is dropped otherwise: a cancel).
fn ready(w: &mut Watch) -> Option<WatchEvent> {
    w.next().now_or_never()
}

fn out(s: &str) -> WatchEvent {
    WatchEvent::Output(Bytes::copy_from_slice(s.as_bytes()))
}

fn has(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// The session and the observer run on tokio tasks, which may move between threads.
#[test]
fn handles_and_waits_can_cross_threads() {
    fn send_sync<T: Send + Sync>(_: &T) {}
    fn send<T: Send>(_: &T) {}
    let hub = Arc::new(Hub::new());
    let l = live(&hub, A, Some((80, 24)));
    let mut w = hub.watch(A, "alice").expect("watch");
    send_sync(&hub);
    send_sync(&l);
    send_sync(&w);
    send(&w.next());
}

#[test]
fn ids_resolve_by_exact_id_or_unique_prefix() {
    let ids = [A, B, C];
    let cases: &[(&str, Result<&str, &str>)] = &[
        (A, Ok(A)),
        ("0123456789", Ok(A)),
        ("0123456f", Ok(B)),
        ("ABCDEF", Ok(C)),
        ("abcdef0000", Ok(C)),
        ("0123456", Err("ambiguous")),
        ("012345", Err("ambiguous")),
        ("01234", Err("bad")),
        ("", Err("bad")),
        ("0123456789xyz", Err("bad")),
        ("g12345", Err("bad")),
        ("0123 45", Err("bad")),
        ("ffffff", Err("not found")),
        ("0123456789abcdef0123456789abcdef00", Err("not found")),
    ];
    for (query, want) in cases {
        let got = resolve(ids, query);
        match (want, &got) {
            (Ok(id), Ok(got)) => assert_eq!(got, id, "{query}"),
            (Err("ambiguous"), Err(ObserveError::Ambiguous(_)))
            | (Err("bad"), Err(ObserveError::BadId(_)))
            | (Err("not found"), Err(ObserveError::NotFound(_))) => {}
            _ => panic!("{query}: want {want:?}, got {got:?}"),
        }
    }
}

#[test]
fn exact_id_wins_over_ids_it_prefixes() {
    assert_eq!(
        resolve(["abcdef01", "abcdef"], "abcdef").ok(),
        Some("abcdef")
    );
}

#[test]
fn errors_repeat_a_bounded_id() {
    let long = "z".repeat(10_000);
    let err = resolve([A], &long).expect_err("not hex");
    assert!(err.to_string().len() < 200, "{err}");
}

#[test]
fn hub_watch_resolves_prefixes() {
    let hub = Arc::new(Hub::new());
    let _a = live(&hub, A, None);
    let _b = live(&hub, B, None);
    assert_eq!(hub.watch("0123456789", "x").expect("A").info().session, A);
    for (query, want) in [
        ("012345", "matches more than one"),
        ("fffff", "hexadecimal"),
        ("ffffff", "no live session ffffff"),
    ] {
        let err = hub.watch(query, "x").expect_err(query).to_string();
        assert!(err.contains(want), "{query}: {err}");
    }
}

#[test]
fn register_list_and_unregister_on_drop() {
    let hub = Arc::new(Hub::default());
    let newest = hub.register(info(A, None, 30)).expect("A");
    let oldest = hub.register(info(B, Some((80, 24)), 10)).expect("B");
    let middle = hub.register(info(C, None, 20)).expect("C");
    let order = |hub: &Hub| -> Vec<String> { hub.list().into_iter().map(|i| i.session).collect() };
    assert_eq!(order(&hub), [B, C, A]);
    assert_eq!(hub.list().first().and_then(|i| i.pty), Some((80, 24)));
    assert_eq!(oldest.session(), B);
    drop(middle);
    assert_eq!(order(&hub), [B, A]);
    drop(oldest);
    drop(newest);
    assert!(hub.list().is_empty());
    // The id is free again.
    let _again = hub.register(info(A, None, 40)).expect("A again");
}

#[test]
fn register_refuses_bad_and_duplicate_ids() {
    let hub = Arc::new(Hub::new());
    let _a = live(&hub, A, None);
    for (session, want) in [
        ("not-hex-at-all", "hexadecimal"),
        ("abc", "hexadecimal"),
        (A, "already live"),
    ] {
        let err = hub
            .register(info(session, None, 1))
            .expect_err(session)
            .to_string();
        assert!(err.contains(want), "{session}: {err}");
    }
}

#[test]
fn list_shows_current_observers_only() {
    let hub = Arc::new(Hub::new());
    let mut given = info(A, None, 1);
    given.observers = vec!["made-up".to_owned()];
    let _live = hub.register(given).expect("register");
    let alice = hub.watch(A, "alice").expect("alice");
    let bob = hub.watch(A, "bob").expect("bob");
    assert_eq!(hub.list()[0].observers, ["alice", "bob"]);
    drop(alice);
    assert_eq!(bob.info().observers, ["bob"]);
}

/// (pty, outputs before the watch, must contain, must not contain)
type ScreenCase<'a> = (bool, &'a [&'a str], &'a [&'a str], &'a [&'a str]);

#[test]
fn initial_shows_the_current_screen_or_tail() {
    let cases: &[ScreenCase] = &[
        (
            true,
            &["hello\r\n", "\x1b[2J\x1b[Hscreen two"],
            &["\x1b[H\x1b[J", "screen two"],
            &["hello"],
        ),
        (
            true,
            &["\x1b[31mred\x1b[m plain"],
            &["\x1b[31mred", "plain"],
            &[],
        ),
        (true, &["ab\x1b[5;10H"], &["ab", "\x1b[5;10H"], &[]),
        (
            true,
            &["main text\x1b[?1049h", "full screen"],
            &["\x1b[?1049h", "full screen"],
            &["main text"],
        ),
        (true, &[], &["\x1b[H\x1b[J"], &[]),
        (
            false,
            &["line one\n", "line two\n"],
            &["line one\nline two\n"],
            &["\x1b[H"],
        ),
        (false, &["no newline yet"], &["no newline yet"], &[]),
    ];
    for (i, (pty, outputs, want, not)) in cases.iter().enumerate() {
        let hub = Arc::new(Hub::new());
        let l = live(&hub, A, pty.then_some((80, 24)));
        for o in outputs.iter() {
            l.output(o.as_bytes());
        }
        let w = hub.watch(A, "alice").expect("watch");
        let initial = w.initial();
        for s in want.iter() {
            assert!(
                has(initial, s),
                "case {i}: {s:?} not in {:?}",
                String::from_utf8_lossy(initial)
            );
        }
        for s in not.iter() {
            assert!(
                !has(initial, s),
                "case {i}: {s:?} in {:?}",
                String::from_utf8_lossy(initial)
            );
        }
    }
}

#[test]
fn initial_follows_resizes() {
    let hub = Arc::new(Hub::new());
    let l = live(&hub, A, Some((80, 24)));
    l.output(b"0123456789");
    l.resize(5, 24);
    l.output(b"\r\nabcdefgh");
    let w = hub.watch(A, "alice").expect("watch");
    let text = String::from_utf8_lossy(w.initial()).into_owned();
    // Narrowed to 5 columns: the first row lost its end; the later line wrapped, which is
    // drawn as one run so that the observer's terminal wraps it too.
    assert!(
        text.contains("01234\r\nabcdefgh") && !text.contains("56789"),
        "{text:?}"
    );
    assert_eq!(w.info().pty, Some((5, 24)));
}

#[test]
fn tail_starts_at_a_line_boundary_when_cut() {
    let lines: String = (0..10_000).map(|n| format!("line {n:05}\n")).collect();
    let unbroken = "x".repeat(TAIL + 100);
    let one_boundary = format!("{}\nlast\n", "y".repeat(TAIL));
    // (outputs, expected start, expected end, expected length at most)
    let cases: &[(&[&str], &str, &str, usize)] = &[
        (&[&lines], "line ", "line 09999\n", TAIL),
        (
            &[&lines[..TAIL / 2], &lines[TAIL / 2..]],
            "line ",
            "line 09999\n",
            TAIL,
        ),
        (&[&unbroken], "xxx", "xxx", TAIL),
        (&[&one_boundary], "last\n", "last\n", 5),
        (&["partial", " line"], "partial line", "partial line", 12),
    ];
    for (i, (outputs, start, end, max)) in cases.iter().enumerate() {
        let mut model = Model::new(None);
        for o in outputs.iter() {
            model.feed(o.as_bytes());
        }
        let tail = model.initial();
        assert!(
            tail.starts_with(start.as_bytes()),
            "case {i}: starts {:?}",
            &tail[..12.min(tail.len())]
        );
        assert!(tail.ends_with(end.as_bytes()), "case {i}");
        assert!(
            tail.len() <= *max && tail.len() + 11 > (*max).min(TAIL),
            "case {i}: {}",
            tail.len()
        );
    }
}

#[tokio::test]
async fn output_after_the_watch_arrives_in_order() {
    let hub = Arc::new(Hub::new());
    let l = live(&hub, A, Some((80, 24)));
    l.output(b"before");
    let mut w = hub.watch(&A[..8], "alice").expect("watch");
    assert!(has(w.initial(), "before"));
    for s in ["one", "two", "", "three"] {
        l.output(s.as_bytes());
    }
    for s in ["one", "two", "three"] {
        assert_eq!(next(&mut w).await, out(s));
    }
    assert_eq!(
        ready(&mut w),
        None,
        "nothing else (and the empty write sent nothing)"
    );
}

#[tokio::test]
async fn a_waiting_watcher_is_woken() {
    let hub = Arc::new(Hub::new());
    let l = live(&hub, A, None);
    let mut w = hub.watch(A, "alice").expect("watch");
    let waiting = tokio::spawn(async move { next(&mut w).await });
    tokio::task::yield_now().await;
    l.output(b"hi");
    let got = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("woken within 5 s")
        .expect("task");
    assert_eq!(got, out("hi"));
}

#[tokio::test]
async fn next_is_cancel_safe() {
    let hub = Arc::new(Hub::new());
    let l = live(&hub, A, None);
    let mut w = hub.watch(A, "alice").expect("watch");
    for _ in 0..3 {
        assert_eq!(ready(&mut w), None, "a cancelled wait takes nothing");
    }
    l.output(b"kept");
    assert_eq!(next(&mut w).await, out("kept"));
}

#[tokio::test]
async fn resizes_are_events_for_pty_sessions_only() {
    let hub = Arc::new(Hub::new());
    let pty = live(&hub, A, Some((80, 24)));
    let plain = live(&hub, B, None);
    let mut wp = hub.watch(A, "alice").expect("pty watch");
    let mut wn = hub.watch(B, "alice").expect("plain watch");
    for (cols, rows) in [(100, 30), (0, 0), (u16::MAX, u16::MAX)] {
        pty.resize(cols, rows);
        plain.resize(cols, rows);
        assert_eq!(next(&mut wp).await, WatchEvent::Resized { cols, rows });
        assert_eq!(wp.info().pty, Some((cols, rows)));
    }
    pty.output(b"still drawn");
    assert!(matches!(next(&mut wp).await, WatchEvent::Output(_)));
    assert_eq!(ready(&mut wn), None);
    assert_eq!(wn.info().pty, None);
}

#[tokio::test]
async fn a_lagging_watcher_is_told_once_then_continues() {
    // (pty, chunk size, chunks written while not reading, chunks kept)
    let cases = [
        (false, 1, QUEUE_EVENTS + 10, QUEUE_EVENTS),
        (true, 1, QUEUE_EVENTS + 10, QUEUE_EVENTS),
        (false, 1 << 20, 6, QUEUE_BYTES >> 20),
        (false, QUEUE_BYTES + 1, 2, 1),
    ];
    for (i, (pty, size, written, kept)) in cases.into_iter().enumerate() {
        let hub = Arc::new(Hub::new());
        let l = live(&hub, A, pty.then_some((80, 24)));
        let mut w = hub.watch(A, "alice").expect("watch");
        let chunk = vec![b'z'; size];
        for _ in 0..written {
            l.output(&chunk);
        }
        for _ in 0..kept {
            assert_eq!(
                next(&mut w).await,
                WatchEvent::Output(Bytes::from(chunk.clone())),
                "case {i}"
            );
        }
        // Written while the queue was still draining: dropped too.
        l.output(b"also lost");
        let dropped_bytes = ((written - kept) * size + 9) as u64;
        assert_eq!(
            next(&mut w).await,
            WatchEvent::Lagged { dropped_bytes },
            "case {i}"
        );
        if pty {
            match next(&mut w).await {
                WatchEvent::Output(screen) => {
                    assert!(has(&screen, "\x1b[H\x1b[J") && has(&screen, "also lost"))
                }
                other => panic!("case {i}: a redraw, got {other:?}"),
            }
        }
        l.output(b"fresh");
        assert_eq!(next(&mut w).await, out("fresh"), "case {i}");
        assert_eq!(ready(&mut w), None, "case {i}: Lagged once");
    }
}

#[tokio::test]
async fn a_resize_lost_while_lagging_is_sent_with_the_redraw() {
    let hub = Arc::new(Hub::new());
    let l = live(&hub, A, Some((80, 24)));
    let mut w = hub.watch(A, "alice").expect("watch");
    for _ in 0..QUEUE_EVENTS {
        l.output(b"q");
    }
    l.resize(120, 40);
    for _ in 0..QUEUE_EVENTS {
        assert_eq!(next(&mut w).await, out("q"));
    }
    assert_eq!(next(&mut w).await, WatchEvent::Lagged { dropped_bytes: 0 });
    assert_eq!(
        next(&mut w).await,
        WatchEvent::Resized {
            cols: 120,
            rows: 40
        }
    );
    assert!(matches!(next(&mut w).await, WatchEvent::Output(_)));
}

#[tokio::test]
async fn dropping_the_live_ends_every_watch() {
    let hub = Arc::new(Hub::new());
    let l = live(&hub, A, Some((80, 24)));
    let mut w1 = hub.watch(A, "alice").expect("alice");
    let mut w2 = hub.watch(A, "bob").expect("bob");
    let waiting = tokio::spawn(async move {
        let first = next(&mut w2).await;
        (first, next(&mut w2).await)
    });
    tokio::task::yield_now().await;
    l.output(b"last words");
    drop(l);
    assert_eq!(next(&mut w1).await, out("last words"));
    assert_eq!(next(&mut w1).await, WatchEvent::Ended);
    assert_eq!(
        next(&mut w1).await,
        WatchEvent::Ended,
        "Ended again, never stuck"
    );
    let (first, second) = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("within 5 s")
        .expect("task");
    assert_eq!((first, second), (out("last words"), WatchEvent::Ended));
    assert!(hub.list().is_empty());
    assert!(matches!(
        hub.watch(A, "carol"),
        Err(ObserveError::NotFound(_))
    ));
}

#[tokio::test]
async fn notices_tell_the_observed_user() {
    let hub = Arc::new(Hub::new());
    let l = live(&hub, A, None);
    let mut rx = l.notices().expect("first call");
    assert!(l.notices().is_none(), "second call");
    let w = hub.watch(A, "alice@corp.example").expect("watch");
    let evil = hub.watch(A, "mallory\x1b[2J").expect("watch");
    drop(w);
    drop(evil);
    let mut got = Vec::new();
    for _ in 0..4 {
        let line = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
        got.push(line.expect("within 5 s").expect("open"));
    }
    assert_eq!(
        got,
        [
            "alice@corp.example is now watching this session",
            "mallory?[2J is now watching this session",
            "alice@corp.example stopped watching",
            "mallory?[2J stopped watching",
        ]
    );
}

#[test]
fn notices_nobody_reads_are_dropped_without_blocking() {
    let hub = Arc::new(Hub::new());
    let l = live(&hub, A, None);
    for _ in 0..100 {
        drop(hub.watch(A, "alice").expect("watch"));
    }
    let mut rx = l.notices().expect("receiver");
    let mut n = 0;
    while rx.try_recv().is_ok() {
        n += 1;
    }
    assert_eq!(n, NOTICE_SLOTS);
}

#[test]
fn observers_ever_keeps_each_identity_once() {
    let hub = Arc::new(Hub::new());
    let l = live(&hub, A, None);
    let before = SystemTime::now();
    for who in ["alice", "bob", "alice"] {
        drop(hub.watch(A, who).expect("watch"));
    }
    let _still = hub.watch(A, "carol").expect("watch");
    let ever = l.observers_ever();
    let names: Vec<&str> = ever.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["alice", "bob", "carol"]);
    assert!(ever.iter().all(|(_, t)| *t >= before));
    for n in 0..2 * MAX_EVER {
        drop(hub.watch(A, &format!("o{n}")).expect("watch"));
    }
    assert_eq!(l.observers_ever().len(), MAX_EVER);
}

#[test]
fn live_sessions_and_watchers_are_bounded() {
    let hub = Arc::new(Hub::new());
    let lives: Vec<Live> = (0..MAX_LIVE)
        .map(|n| {
            hub.register(info(&format!("{n:032x}"), None, 1))
                .expect("register")
        })
        .collect();
    let over = hub.register(info(&format!("{:032x}", MAX_LIVE), None, 1));
    assert!(matches!(over, Err(ObserveError::TooMany)));
    drop(lives);

    let _l = live(&hub, A, None);
    let mut watches: Vec<Watch> = (0..MAX_WATCHERS)
        .map(|n| hub.watch(A, &format!("o{n}")).expect("watch"))
        .collect();
    assert!(matches!(
        hub.watch(A, "one more"),
        Err(ObserveError::TooManyWatchers)
    ));
    watches.pop();
    assert!(hub.watch(A, "one more").is_ok());
}

#[path = "screen_tests.rs"]
mod screen_model;
