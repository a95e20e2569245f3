use std::time::{Instant, UNIX_EPOCH};

use serde_json::json;

use super::*;
use crate::recording::audit::AuditLog;
use crate::recording::cast::tests::asciinema_cat;
use crate::recording::cast::{CastHeader, CastWriter};
use crate::recording::meta::CastInfo;
use crate::recording::recover;

/// 2026-11-22T10:00:00Z
pub(crate) const DAY: u64 = 1_795_341_600;

pub(crate) struct Spec<'a> {
    pub id: Option<&'a str>,
    pub identity: &'a str,
    pub target: (&'a str, &'a str),
    pub action: &'a str,
    pub incident: Option<&'a str>,
    pub end_reason: Option<&'a str>,
    pub start: u64,
    pub output: &'a [&'a str],
}

impl Default for Spec<'_> {
    fn default() -> Self {
        Spec {
            id: None,
            identity: "alice",
            target: ("shop", "web-0"),
            action: "shell",
            incident: None,
            end_reason: Some("exited"),
            start: DAY,
            output: &["$ id\r\n", "uid=0(root)\r\n"],
        }
    }
}

/// A session as the gateway leaves it: audit events around a finished recording.
pub(crate) fn session(root: &Path, audit: &AuditLog, spec: Spec) -> Metadata {
    let id = spec.id.map_or_else(meta::new_session_id, str::to_owned);
    let start = UNIX_EPOCH + Duration::from_secs(spec.start);
    let (dir, cast_path, json) = meta::paths(root, &id, start);
    meta::create_dir(&dir).unwrap();
    audit
        .write(
            "session.started",
            json!({"session": id, "action": spec.action}),
        )
        .unwrap();
    let header = CastHeader {
        width: 80,
        height: 24,
        timestamp: spec.start,
        ..CastHeader::default()
    };
    let mut w = CastWriter::create(&cast_path, &header).unwrap();
    for o in spec.output {
        w.output(o.as_bytes()).unwrap();
    }
    let summary = w.finish().unwrap();
    let finished = spec.end_reason.is_some();
    let m = Metadata {
        version: meta::VERSION,
        session: id.clone(),
        identity: spec.identity.into(),
        action: spec.action.into(),
        namespace: spec.target.0.into(),
        pod: spec.target.1.into(),
        incident: spec.incident.map(str::to_owned),
        start: meta::rfc3339(start),
        end: finished.then(|| meta::rfc3339(start + Duration::from_secs(65))),
        end_reason: spec.end_reason.map(str::to_owned),
        exit_status: finished.then_some(0),
        cast: finished.then(|| CastInfo {
            file: format!("{id}.cast"),
            sha256: summary.sha256.clone(),
            size: summary.size,
        }),
        complete: finished,
        ..Metadata::default()
    };
    meta::write(&json, &m).unwrap();
    if finished {
        audit
            .write(
                "session.ended",
                json!({"session": id, "end_reason": spec.end_reason, "cast_sha256": summary.sha256}),
            )
            .unwrap();
    }
    m
}

pub(crate) fn fixture() -> (tempfile::TempDir, AuditLog) {
    let root = tempfile::tempdir().unwrap();
    let audit = AuditLog::open(&root.path().join("audit.jsonl")).unwrap();
    (root, audit)
}

pub(crate) fn cast_of(root: &Path, m: &Metadata) -> PathBuf {
    let start = meta::parse_time(&m.start).unwrap();
    meta::paths(root, &m.session, start).1
}

fn ids(items: &[Metadata]) -> Vec<&str> {
    items.iter().map(|m| m.session.as_str()).collect()
}

#[test]
fn list_filters_and_sorts_by_start() {
    let (root, audit) = fixture();
    let r = root.path();
    let late = session(
        r,
        &audit,
        Spec {
            start: DAY + 86_400,
            ..Spec::default()
        },
    );
    let early = session(
        r,
        &audit,
        Spec {
            identity: "bob",
            target: ("pay", "api-1"),
            action: "exec",
            incident: Some("INC-7"),
            ..Spec::default()
        },
    );
    let logs = session(
        r,
        &audit,
        Spec {
            target: ("shop", "db-0"),
            action: "logs",
            start: DAY + 60,
            end_reason: Some("client closed"),
            ..Spec::default()
        },
    );
    // Files podgate does not write are ignored.
    std::fs::write(r.join("2026-11-22").join("README.json"), "{}").unwrap();
    std::fs::create_dir(r.join("misc")).unwrap();

    let all = list(r, &Filter::default()).unwrap();
    assert_eq!(ids(&all), [&early.session, &logs.session, &late.session]);
    let f = |f: Filter| list(r, &f).unwrap();
    assert_eq!(
        ids(&f(Filter {
            identity: Some("bob".into()),
            ..Filter::default()
        })),
        [&early.session]
    );
    assert_eq!(
        ids(&f(Filter {
            target: Some("shop".into()),
            ..Filter::default()
        })),
        [&logs.session, &late.session]
    );
    assert_eq!(
        ids(&f(Filter {
            target: Some("shop/db-0".into()),
            ..Filter::default()
        })),
        [&logs.session]
    );
    assert!(
        f(Filter {
            target: Some("shop/web".into()),
            ..Filter::default()
        })
        .is_empty()
    );
    assert_eq!(
        ids(&f(Filter {
            action: Some("exec".into()),
            ..Filter::default()
        })),
        [&early.session]
    );
    assert_eq!(
        ids(&f(Filter {
            incident: Some("INC-7".into()),
            ..Filter::default()
        })),
        [&early.session]
    );
    assert_eq!(
        ids(&f(Filter {
            end_reason: Some("client closed".into()),
            ..Filter::default()
        })),
        [&logs.session]
    );
    let since = UNIX_EPOCH + Duration::from_secs(DAY + 60);
    assert_eq!(
        ids(&f(Filter {
            since: Some(since),
            ..Filter::default()
        })),
        [&logs.session, &late.session]
    );
    assert!(
        f(Filter {
            identity: Some("bob".into()),
            action: Some("logs".into()),
            ..Filter::default()
        })
        .is_empty()
    );
}

#[test]
fn table_is_aligned_and_defuses_hostile_names() {
    let (root, audit) = fixture();
    let r = root.path();
    let plain = session(r, &audit, Spec::default());
    let mut odd = session(
        r,
        &audit,
        Spec {
            end_reason: None,
            ..Spec::default()
        },
    );
    odd.identity = "eve\x1b[2J\u{202e}nimda".into();
    odd.container = Some("app".into());
    let items = vec![plain, odd];
    let t = table(&items);
    let lines: Vec<&str> = t.lines().collect();
    assert_eq!(lines.len(), 3);
    assert!(lines[0].starts_with("SESSION       START"), "{t}");
    assert!(!t.contains('\x1b') && !t.contains('\u{202e}'));
    // Every column starts at the same place in every row.
    let col = |l: &str, what: &str| l[..l.find(what).unwrap()].chars().count();
    let target_col = col(lines[0], "TARGET");
    assert_eq!(col(lines[1], "shop/web-0"), target_col);
    assert_eq!(col(lines[2], "shop/web-0:app"), target_col);
    assert!(lines[2].contains("eve\u{fffd}[2J\u{fffd}nimda"), "{t}");
    assert!(lines[1].contains(&items[0].session[..12]) && !lines[1].contains(&items[0].session));
    assert!(lines[1].contains("2026-11-22T10:00:00Z") && lines[1].contains("1m05s"));
    assert!(lines[1].trim_end().ends_with("exited  0"), "{t}");
    assert!(lines[2].ends_with("-       -"), "{t}");
    assert_eq!(short_duration(Duration::from_secs(3723)), "1h02m03s");
    assert_eq!(short_duration(Duration::from_secs(5)), "5s");
}

#[test]
fn verify_passes_a_clean_directory_and_names_each_problem() {
    let (root, audit) = fixture();
    let r = root.path();
    let a = session(r, &audit, Spec::default());
    let b = session(
        r,
        &audit,
        Spec {
            output: &["other\r\n"],
            ..Spec::default()
        },
    );
    let running = session(
        r,
        &audit,
        Spec {
            end_reason: None,
            ..Spec::default()
        },
    );
    let report = verify(r).unwrap();
    assert_eq!(report.problems, Vec::<String>::new());
    assert!(report.ok());
    assert_eq!(report.sessions, 3);
    assert_eq!(report.audit_lines, 5);
    assert_eq!(
        report.in_progress,
        [format!("2026-11-22/{}", running.session)]
    );

    // A flipped byte in a recording.
    let cast_a = cast_of(r, &a);
    let good = std::fs::read(&cast_a).unwrap();
    let mut bad = good.clone();
    let at = bad.len() - 5;
    bad[at] ^= 0x01;
    std::fs::write(&cast_a, &bad).unwrap();
    let problems = verify(r).unwrap().problems;
    assert_eq!(
        problems,
        [format!(
            "2026-11-22/{}.cast: sha256 differs from its metadata",
            a.session
        )]
    );
    std::fs::write(&cast_a, &good).unwrap();

    // Two sessions' recordings exchanged.
    let cast_b = cast_of(r, &b);
    let good_b = std::fs::read(&cast_b).unwrap();
    std::fs::write(&cast_a, &good_b).unwrap();
    std::fs::write(&cast_b, &good).unwrap();
    let problems = verify(r).unwrap().problems;
    for id in [&a.session, &b.session] {
        let wanted = format!("2026-11-22/{id}.cast: sha256 differs from its metadata");
        assert!(problems.contains(&wanted), "{problems:?}");
    }
    std::fs::write(&cast_a, &good).unwrap();
    std::fs::write(&cast_b, &good_b).unwrap();
    assert!(verify(r).unwrap().ok());

    // A recording without metadata, metadata without its recording.
    std::fs::rename(
        &cast_b,
        r.join("2026-11-22")
            .join(format!("{}.cast", "f".repeat(32))),
    )
    .unwrap();
    let problems = verify(r).unwrap().problems;
    assert_eq!(
        problems,
        [
            format!(
                "2026-11-22/{}.json: its recording {}.cast is missing",
                b.session, b.session
            ),
            format!(
                "2026-11-22/{}.cast: no metadata ({}.json is missing)",
                "f".repeat(32),
                "f".repeat(32)
            ),
        ]
    );
}

#[test]
fn verify_catches_deleted_and_reordered_audit_lines_and_forged_sessions() {
    let (root, audit) = fixture();
    let r = root.path();
    let made: Vec<Metadata> = (0..3)
        .map(|_| session(r, &audit, Spec::default()))
        .collect();
    let path = r.join("audit.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 6);

    let mut deleted = lines.clone();
    deleted.remove(3);
    std::fs::write(&path, deleted.join("\n") + "\n").unwrap();
    let report = verify(r).unwrap();
    assert_eq!(
        report.problems[0],
        "audit.jsonl line 4: prev does not match the line before"
    );
    assert_eq!(report.audit_lines, 3);

    let mut reordered = lines.clone();
    reordered.swap(1, 2);
    std::fs::write(&path, reordered.join("\n") + "\n").unwrap();
    assert_eq!(
        verify(r).unwrap().problems,
        ["audit.jsonl line 2: prev does not match the line before"]
    );

    // Deleting a whole session (both files) leaves its audit trace unmatched.
    std::fs::write(&path, &text).unwrap();
    let gone = &made[0];
    let cast = cast_of(r, gone);
    std::fs::remove_file(&cast).unwrap();
    std::fs::remove_file(cast.with_extension("json")).unwrap();
    assert_eq!(
        verify(r).unwrap().problems,
        [format!(
            "audit.jsonl line 1: session {} (shell) has no metadata file",
            gone.session
        )]
    );

    // A session planted without the gateway: no audit event names it.
    std::fs::write(&path, "").unwrap();
    let planted = list(r, &Filter::default()).unwrap().remove(0);
    let problems = verify(r).unwrap().problems;
    let wanted = format!(
        "2026-11-22/{}.json: no session.started audit event names this session",
        planted.session
    );
    assert!(problems.contains(&wanted), "{problems:?}");
    std::fs::remove_file(&path).unwrap();
    assert_eq!(verify(r).unwrap().problems, ["audit.jsonl: missing"]);
}

#[test]
fn find_by_unique_prefix() {
    let (root, audit) = fixture();
    let r = root.path();
    let one = format!("abc1{}", "0".repeat(28));
    let two = format!("abc2{}", "0".repeat(28));
    session(
        r,
        &audit,
        Spec {
            id: Some(&one),
            ..Spec::default()
        },
    );
    session(
        r,
        &audit,
        Spec {
            id: Some(&two),
            ..Spec::default()
        },
    );
    let (m, cast) = find(r, "ABC1").unwrap();
    assert_eq!(m.session, one);
    assert_eq!(cast, r.join("2026-11-22").join(format!("{one}.cast")));
    assert_eq!(find(r, &two).unwrap().0.session, two);
    match find(r, "abc") {
        Err(OfflineError::Ambiguous { matches, .. }) => assert_eq!(matches, [one, two]),
        other => panic!("{other:?}"),
    }
    assert!(matches!(find(r, "abd"), Err(OfflineError::NotFound(_))));
    assert!(matches!(find(r, ""), Err(OfflineError::NotFound(_))));
    assert!(matches!(find(r, "../"), Err(OfflineError::NotFound(_))));
}

#[test]
fn cat_prints_what_asciinema_prints_and_play_the_same_bytes_quickly() {
    let (root, audit) = fixture();
    let r = root.path();
    let output: &[&str] = &["\x1b[2J$ ", "ls\r\n", "a  b  ü\r\n", "\x1b]0;title\x07$ "];
    let m = session(
        r,
        &audit,
        Spec {
            output,
            ..Spec::default()
        },
    );
    let (_, cast) = find(r, &m.session).unwrap();
    let mut printed = Vec::new();
    cat(&cast, &mut printed).unwrap();
    assert_eq!(String::from_utf8(printed.clone()).unwrap(), output.concat());
    assert_eq!(asciinema_cat(&cast).unwrap().into_bytes(), printed);

    // Long gaps: 10 s in all at speed 1000 is 10 ms.
    let slow = r.join("slow.cast");
    let text = "{\"version\":2,\"width\":80,\"height\":24}\n[0.5,\"o\",\"a\"]\n[1.0,\"m\",\"x\"]\n\
                [5.0,\"o\",\"b\"]\n[5.0,\"r\",\"10x10\"]\n[10.0,\"o\",\"c\\r\\n\"]\n";
    std::fs::write(&slow, text).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut played = Vec::new();
    let t0 = Instant::now();
    rt.block_on(play(&slow, 1000.0, None, &mut played)).unwrap();
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(10) && took < Duration::from_secs(2),
        "{took:?}"
    );
    let mut catted = Vec::new();
    cat(&slow, &mut catted).unwrap();
    assert_eq!(played, catted);
    assert_eq!(played, b"abc\r\n");
    // Gaps capped at the idle limit: 3 gaps of at most 20 ms at speed 1.
    let t0 = Instant::now();
    let mut played = Vec::new();
    rt.block_on(play(
        &slow,
        1.0,
        Some(Duration::from_millis(20)),
        &mut played,
    ))
    .unwrap();
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    assert_eq!(played, catted);
    // The recording of a real session replays to the same bytes too.
    let mut played = Vec::new();
    rt.block_on(play(&cast, 1000.0, None, &mut played)).unwrap();
    assert_eq!(played, printed);
    assert!(matches!(
        rt.block_on(play(&cast, 0.0, None, Vec::new())),
        Err(OfflineError::BadSpeed(_))
    ));
}

#[test]
fn cat_tolerates_a_torn_end_but_not_a_broken_middle() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.cast");
    std::fs::write(
        &p,
        "{\"version\":2,\"width\":1,\"height\":1}\n[0.1,\"o\",\"ok\"]\n[0.2,\"o\",\"to",
    )
    .unwrap();
    let mut out = Vec::new();
    cat(&p, &mut out).unwrap();
    assert_eq!(out, b"ok");
    std::fs::write(
        &p,
        "{\"version\":2,\"width\":1,\"height\":1}\nnope\n[0.2,\"o\",\"x\"]\n",
    )
    .unwrap();
    match cat(&p, &mut Vec::new()) {
        Err(OfflineError::Format { line, .. }) => assert_eq!(line, 2),
        other => panic!("{other:?}"),
    }
    std::fs::write(&p, "{\"version\":1}\n").unwrap();
    assert!(matches!(
        cat(&p, &mut Vec::new()),
        Err(OfflineError::Format { line: 1, .. })
    ));
}

#[test]
fn a_crashed_session_is_recovered_then_verified_and_played() {
    let (root, audit) = fixture();
    let r = root.path();
    let m = session(
        r,
        &audit,
        Spec {
            end_reason: None,
            ..Spec::default()
        },
    );
    let cast = cast_of(r, &m);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&cast)
        .unwrap();
    f.write_all(b"[9.9,\"o\",\"torn").unwrap();
    drop(f);
    assert!(asciinema_cat(&cast).is_err());
    let before = verify(r).unwrap();
    assert!(before.ok() && before.in_progress.len() == 1);

    assert_eq!(
        recover::recover(r).unwrap(),
        std::slice::from_ref(&m.session)
    );
    let report = verify(r).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    assert!(report.in_progress.is_empty());
    assert_eq!(asciinema_cat(&cast).unwrap(), "$ id\r\nuid=0(root)\r\n");
    let listed = list(
        r,
        &Filter {
            end_reason: Some("incomplete".into()),
            ..Filter::default()
        },
    )
    .unwrap();
    assert_eq!(ids(&listed), [&m.session]);
    assert!(table(&listed).contains("incomplete"));
}
