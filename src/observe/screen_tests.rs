//! The screen model: exact redraws, and what a flood costs (parsed or skipped).

use super::*;

/// Time enough to parse anything here, so that results do not depend on the machine.
const AMPLE: Duration = Duration::from_secs(600);

fn rows_cols(cols: u16, rows: u16) -> (std::num::NonZeroU16, std::num::NonZeroU16) {
    let n = |v: u16| std::num::NonZeroU16::new(v).expect("not zero");
    (n(rows), n(cols))
}

/// A terminal of `cols` x `rows` that was sent `bytes`.
fn terminal(cols: u16, rows: u16, bytes: &[u8]) -> vt100::Parser {
    let (rows, cols) = rows_cols(cols, rows);
    let mut t = vt100::Parser::new(rows, cols, 0);
    t.process(bytes);
    t
}

/// The observer's terminal shows what the session's terminal shows: text, attributes,
/// cursor, screen.
fn assert_same_screen(observer: &vt100::Parser, session: &vt100::Parser, case: &str) {
    let (o, s) = (observer.screen(), session.screen());
    assert_eq!(o.contents_formatted(), s.contents_formatted(), "{case}");
    assert_eq!(o.cursor_position(), s.cursor_position(), "{case}");
    assert_eq!(o.hide_cursor(), s.hide_cursor(), "{case}");
    assert_eq!(o.alternate_screen(), s.alternate_screen(), "{case}");
}

#[test]
fn initial_redraws_the_session_terminal_exactly() {
    let scrolled: String = (0..100)
        .map(|n| format!("\x1b[3{}mline {n}\x1b[m\r\n", n % 8))
        .collect();
    let cases: &[(&str, &[&str])] = &[
        ("cleared", &["hello\r\n", "\x1b[2J\x1b[Hscreen two"]),
        (
            "attributes",
            &[
                "\x1b[1;31mbold red\x1b[0m \x1b[4;44munder blue\x1b[m\r\n\x1b[7minv",
                "erse\x1b[m",
            ],
        ),
        (
            "cursor and erase",
            &["abcdef\x1b[3D\x1b[K\x1b[10;20Hxy\x1b[1A!"],
        ),
        (
            "alternate screen",
            &["main\x1b[?1049h\x1b[H\x1b[2Jfull\x1b[5;5Hscreen"],
        ),
        ("wide characters", &["日本語 ok\r\n\u{1F600} smile"]),
        ("scrolled", &[&scrolled]),
        ("hidden cursor", &["\x1b[?25lhidden"]),
        ("wrapped", &[&"x".repeat(200)]),
        ("split sequence", &["\x1b[3", "2mgreen\x1b", "[m plain"]),
        ("empty", &[]),
    ];
    for (case, outputs) in cases {
        let mut screen = Screen::new(80, 24);
        let mut session = terminal(80, 24, b"");
        for o in outputs.iter() {
            screen.feed(o.as_bytes());
            session.process(o.as_bytes());
        }
        let observer = terminal(80, 24, &screen.render_within(false, AMPLE));
        assert_same_screen(&observer, &session, case);
    }
}

#[test]
fn small_sessions_are_never_parsed() {
    let mut screen = Screen::new(80, 24);
    screen.feed(b"a short session\r\n");
    screen.resize(100, 30);
    assert_eq!(screen.progress(), (0, 0, false));
    let _ = screen.render_within(false, AMPLE);
    assert_eq!(screen.progress(), (17, 0, true));
}

#[test]
fn floods_without_parsing_time_keep_the_newest_output() {
    let lines = |from: usize, to: usize| -> Vec<u8> {
        (from..to)
            .flat_map(|n| format!("\x1b[3{}mline {n:07}\x1b[m\r\n", n % 8).into_bytes())
            .collect()
    };
    // (case, writes, size change after the first write)
    type Flood = (&'static str, Vec<Vec<u8>>, Option<(u16, u16)>);
    let cases: Vec<Flood> = vec![
        (
            "many writes",
            (0..200).map(|i| lines(i * 1000, (i + 1) * 1000)).collect(),
            None,
        ),
        (
            "one write larger than the backlog",
            vec![lines(0, 200_000)],
            None,
        ),
        (
            "resized inside the skipped output",
            vec![lines(0, 10), lines(10, 200_000)],
            Some((40, 10)),
        ),
    ];
    for (case, writes, resize) in cases {
        let mut screen = Screen::new(80, 24);
        let mut session = terminal(80, 24, b"");
        for (i, w) in writes.iter().enumerate() {
            screen.feed_within(w, Duration::ZERO);
            session.process(w);
            if let (0, Some((cols, rows))) = (i, resize) {
                screen.resize(cols, rows);
                let (r, c) = rows_cols(cols, rows);
                session.set_size(r, c);
            }
            // Unparsed output, and skipped output let go of in batches.
            let (held, resizes) = screen.held();
            assert!(
                held <= BACKLOG + BACKLOG / 2 && resizes <= 1,
                "{case}: holds {held} bytes"
            );
        }
        assert!(!screen.progress().2, "{case}: nothing parsed without time");
        let (cols, rows) = resize.unwrap_or((80, 24));
        let observer = terminal(cols, rows, &screen.render_within(false, AMPLE));
        assert_same_screen(&observer, &session, case);
    }
}

#[test]
fn a_gap_without_line_boundaries_still_draws_the_newest_text() {
    let mut screen = Screen::new(80, 24);
    screen.feed_within(&[b'y'; 3 * BACKLOG], Duration::ZERO);
    let observer = terminal(80, 24, &screen.render_within(false, AMPLE));
    // Which column the text resumes at is lost with the skipped output; the rows are not.
    let rows: Vec<String> = observer.screen().rows(0, 80).collect();
    assert!(rows[..23].iter().all(|r| r == &"y".repeat(80)), "{rows:?}");
}

#[test]
fn costly_output_is_skipped_rather_than_parsed() {
    // A clear-screen rewrites every cell: 4 bytes that cost the parser as much as
    // thousands of bytes of text. Parsing all of these would take many seconds.
    let mut screen = Screen::new(u16::MAX, u16::MAX);
    let clears = b"\x1b[2J".repeat(16 << 10);
    for _ in 0..64 {
        screen.feed(&clears);
    }
    let (parsed, skipped, _) = screen.progress();
    assert!(
        skipped > 0 && parsed > skipped,
        "parsed to {parsed}, skipped {skipped}"
    );
}

#[test]
fn size_changes_are_bounded_and_the_last_wins() {
    let mut screen = Screen::new(80, 24);
    screen.feed(b"before\r\n");
    for n in 0..1000u16 {
        screen.resize(20 + n % 50, 5 + n % 20);
    }
    screen.resize(30, 6);
    assert!(screen.held().1 <= 8);
    screen.feed(&b"z".repeat(45));
    let mut session = terminal(30, 6, b"before\r\n");
    session.process(&b"z".repeat(45));
    let observer = terminal(30, 6, &screen.render_within(false, AMPLE));
    assert_same_screen(&observer, &session, "after 1001 size changes");
}

/// What the terminal model of `l` parsed and skipped so far, in MiB.
fn parsed_and_skipped(l: &Live) -> (u64, u64) {
    match &lock(&l.entry.state).model {
        Some(Model::Screen(s)) => {
            let (upto, skipped, _) = s.progress();
            ((upto - skipped) >> 20, skipped >> 20)
        }
        _ => (0, 0),
    }
}

/// How fast the session's side is (`cargo test --lib observe -- --ignored --nocapture`).
/// Prints rates and how much output the terminal model parsed; asserts nothing about time.
#[test]
#[ignore]
fn throughput() {
    let line =
        "\x1b[32m2024-05-01T12:00:00Z\x1b[m INFO request served path=/api/v1/items status=200\r\n";
    let text = line.repeat(32 * 1024 / line.len()).into_bytes();
    let clears = b"\x1b[2J".repeat(text.len() / 4);
    let rounds = (256usize << 20) / text.len();
    let rate = |what: &str, chunk: &[u8], f: &mut dyn FnMut(&[u8])| {
        let start = std::time::Instant::now();
        for _ in 0..rounds {
            f(chunk);
        }
        let secs = start.elapsed().as_secs_f64();
        let mib = (rounds * chunk.len()) as f64 / f64::from(1 << 20);
        println!(
            "{what}: {mib:.0} MiB in {secs:.2} s, {:.0} MiB/s",
            mib / secs
        );
    };
    let hub = Arc::new(Hub::new());
    let tail = live(&hub, A, None);
    rate("no PTY, nobody watching", &text, &mut |c| tail.output(c));
    for (session, what, chunk, size) in [
        (B, "PTY 200x50, text, nobody watching", &text, (200, 50)),
        (
            C,
            "PTY 300x100, clear-screens, nobody watching",
            &clears,
            (300, 100),
        ),
    ] {
        let l = live(&hub, session, Some(size));
        rate(what, chunk, &mut |c| l.output(c));
        let (parsed, skipped) = parsed_and_skipped(&l);
        println!("  terminal model: parsed {parsed} MiB, skipped {skipped} MiB");
    }
    let l = live(&hub, "fedcba9876543210fedcba9876543210", Some((200, 50)));
    let mut w = hub.watch("fedcba", "alice").expect("watch");
    rate("PTY 200x50, text, one watcher reading", &text, &mut |c| {
        l.output(c);
        while ready(&mut w).is_some() {}
    });
    let (rows, cols) = rows_cols(200, 50);
    let mut raw = vt100::Parser::new(rows, cols, 0);
    rate("vt100 alone, text, 200x50", &text, &mut |c| raw.process(c));
}

/// Steps of a session: output made of pieces that stress a terminal, or a size change.
#[derive(Debug, Clone)]
enum Step {
    Out(Vec<u8>),
    Size(u16, u16),
}

fn step() -> impl proptest::strategy::Strategy<Value = Step> {
    use proptest::prelude::*;
    let piece = prop_oneof![
        Just(&b"text "[..]),
        Just(&b"\r\n"[..]),
        Just(&b"\n"[..]),
        Just(&b"\x08\t"[..]),
        Just(&b"\x1b[1;3"[..]),
        Just(&b"1m"[..]),
        Just(&b"\x1b[m"[..]),
        Just(&b"\x1b[2J"[..]),
        Just(&b"\x1b[K"[..]),
        Just(&b"\x1b[5;7H"[..]),
        Just(&b"\x1b[3A"[..]),
        Just(&b"\x1b[?1049h"[..]),
        Just(&b"\x1b[?1049l"[..]),
        Just(&b"\x1b[?25l"[..]),
        Just(&b"\x1b[2;4r"[..]),
        Just(&b"\x1b[L"[..]),
        Just("日本".as_bytes()),
        Just(&b"\xe6\x97"[..]),
        Just(&b"\x1b]0;title\x07"[..]),
        Just(&b"\x1b"[..]),
    ];
    prop_oneof![
        8 => proptest::collection::vec(piece, 1..40).prop_map(|p| Step::Out(p.concat())),
        1 => (1u16..120, 1u16..40).prop_map(|(c, r)| Step::Size(c, r)),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]

    /// With time to parse everything, an observer's terminal fed `initial` shows what the
    /// session's terminal shows, whatever the output and size changes were.
    #[test]
    fn any_session_is_redrawn_exactly(steps in proptest::collection::vec(step(), 0..30)) {
        let mut screen = Screen::new(80, 24);
        let mut session = terminal(80, 24, b"");
        let mut size = (80, 24);
        for s in &steps {
            match s {
                Step::Out(bytes) => {
                    screen.feed(bytes);
                    session.process(bytes);
                }
                Step::Size(cols, rows) => {
                    screen.resize(*cols, *rows);
                    let (r, c) = rows_cols(*cols, *rows);
                    session.set_size(r, c);
                    size = (*cols, *rows);
                }
            }
        }
        let observer = terminal(size.0, size.1, &screen.render_within(false, AMPLE));
        assert_same_screen(&observer, &session, &format!("{steps:?}"));
    }
}
