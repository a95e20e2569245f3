use std::process::{Command, Stdio};

use serde_json::Value;

use super::*;

/// What the real player prints for `path` (`asciinema cat` wants a tty: `script` gives it
/// one). `Err` carries the exit status and output when it fails.
pub(crate) fn asciinema_cat(path: &Path) -> Result<String, String> {
    let quoted = format!("'{}'", path.display().to_string().replace('\'', r"'\''"));
    let out = Command::new("script")
        .args(["-qec", &format!("asciinema cat {quoted}"), "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run script/asciinema (apt-get install asciinema): {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!("{}: {text}", out.status))
    }
}

fn header() -> CastHeader {
    CastHeader {
        width: 120,
        height: 40,
        timestamp: 1_795_000_000,
        command: Some("kubectl exec -it web-0 -- sh".into()),
        title: Some("shop/web-0".into()),
        env: BTreeMap::from([
            ("TERM".to_owned(), "xterm-256color".to_owned()),
            ("SHELL".to_owned(), "/bin/sh".to_owned()),
        ]),
    }
}

/// Every line as JSON (panics, in a test, on a line that is not).
fn lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.ends_with('\n'));
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

/// The data of the events with `code`, concatenated.
fn stream(lines: &[Value], code: &str) -> String {
    lines
        .iter()
        .skip(1)
        .filter(|e| e[1] == code)
        .map(|e| e[2].as_str().unwrap().to_owned())
        .collect()
}

fn new_writer() -> (tempfile::TempDir, PathBuf, CastWriter) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.cast");
    let w = CastWriter::create(&path, &header()).unwrap();
    (dir, path, w)
}

#[test]
fn header_is_written_at_once_private_and_never_overwritten() {
    use std::os::unix::fs::PermissionsExt;
    let (_dir, path, w) = new_writer();
    // Flushed before any event: a session cut off now still leaves a playable file.
    let l = lines(&path);
    assert_eq!(l.len(), 1);
    assert_eq!(l[0]["version"], 2);
    assert_eq!(l[0]["width"], 120);
    assert_eq!(l[0]["height"], 40);
    assert_eq!(l[0]["timestamp"], 1_795_000_000u64);
    assert_eq!(l[0]["env"]["TERM"], "xterm-256color");
    assert_eq!(l[0]["title"], "shop/web-0");
    assert_eq!(asciinema_cat(&path).unwrap(), "");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(w.bytes_written(), std::fs::metadata(&path).unwrap().len());
    let again = CastWriter::create(&path, &CastHeader::default());
    assert!(matches!(again, Err(CastError::Io { .. })));
    drop(w);
    assert_eq!(lines(&path).len(), 1);
    // Without optional fields, the header has none of them.
    let minimal = path.with_file_name("m.cast");
    drop(CastWriter::create(&minimal, &CastHeader::default()).unwrap());
    assert_eq!(
        std::fs::read_to_string(&minimal).unwrap(),
        "{\"version\":2,\"width\":0,\"height\":0,\"timestamp\":0}\n"
    );
}

#[test]
fn hostile_output_is_recorded_verbatim_and_plays() {
    let (_dir, path, mut w) = new_writer();
    let hostile = [
        "\x1b]52;c;cm0gLXJmIC8=\x07", // OSC 52: write the clipboard
        "\x1b]0;pwned title\x07",     // window title
        "\x1b]2;other title\x1b\\",   // title, ST-terminated
        "\x1b[2J\x1b[H",              // clear screen, home
        "quote\" backslash\\ nul\0 del\x7f\r\n",
        "\u{202e}rtl override\u{2028}line sep\r\n",
    ];
    for h in hostile {
        w.output(h.as_bytes()).unwrap();
    }
    let summary = w.finish().unwrap();
    let l = lines(&path);
    let expected: String = hostile.concat();
    assert_eq!(stream(&l, "o"), expected);
    assert_eq!(asciinema_cat(&path).unwrap(), expected);
    // Times rise and have at most 6 decimals.
    let mut prev = 0.0;
    for e in l.iter().skip(1) {
        let t = e[0].as_f64().unwrap();
        assert!(t >= prev);
        assert_eq!((t * 1e6).round() / 1e6, t);
        prev = t;
    }
    let (sha, size) = sha256_file(&path).unwrap();
    assert_eq!(summary, CastSummary { sha256: sha, size });
}

#[test]
fn split_multibyte_characters_survive_whole() {
    let (_dir, path, mut w) = new_writer();
    let euro = "€".as_bytes(); // 3 bytes
    let crab = "🦀".as_bytes(); // 4 bytes
    // 3-byte character across 2 calls.
    w.output(&[b'a', euro[0]]).unwrap();
    w.output(&[euro[1], euro[2], b'b']).unwrap();
    // 4-byte character across 3 calls, the middle one holding nothing complete.
    w.output(&[crab[0]]).unwrap();
    w.output(&[crab[1], crab[2]]).unwrap();
    w.output(&[crab[3], b'\n']).unwrap();
    // The input stream has its own decoder: interleaving does not mix them.
    w.input(&crab[..2]).unwrap();
    w.output(&euro[..1]).unwrap();
    w.input(&crab[2..]).unwrap();
    w.output(&euro[1..]).unwrap();
    w.finish().unwrap();
    let l = lines(&path);
    assert_eq!(stream(&l, "o"), "a€b🦀\n€");
    assert_eq!(stream(&l, "i"), "🦀");
    // No event was written for a call that completed no character.
    assert!(l.iter().skip(1).all(|e| !e[2].as_str().unwrap().is_empty()));
    assert_eq!(asciinema_cat(&path).unwrap(), "a€b🦀\n€");
}

#[test]
fn invalid_bytes_become_replacement_characters() {
    let (_dir, path, mut w) = new_writer();
    w.output(b"ok \xff\xfe bad \xc3(").unwrap(); // lone bytes, a lead byte then ASCII
    w.output(b"\xed\xa0\x80 surrogate\r\n").unwrap(); // encoded surrogate: invalid in UTF-8
    w.output(b"\xf0\x9f").unwrap(); // a character the stream never completes
    let summary = w.finish().unwrap();
    let l = lines(&path);
    let expected =
        "ok \u{fffd}\u{fffd} bad \u{fffd}(\u{fffd}\u{fffd}\u{fffd} surrogate\r\n\u{fffd}";
    assert_eq!(stream(&l, "o"), expected);
    assert_eq!(
        stream(&l, "o"),
        String::from_utf8_lossy(b"ok \xff\xfe bad \xc3(\xed\xa0\x80 surrogate\r\n\xf0\x9f")
    );
    assert_eq!(asciinema_cat(&path).unwrap(), expected);
    assert_eq!(summary.size, std::fs::metadata(&path).unwrap().len());
}

#[test]
fn resize_markers_and_input_are_events_the_player_skips() {
    for record_input in [true, false] {
        let (_dir, path, mut w) = new_writer();
        w.output(b"$ ").unwrap();
        if record_input {
            w.input(b"ls\r").unwrap();
        }
        w.resize(200, 50).unwrap();
        w.output(b"ls\r\nfile\r\n").unwrap();
        w.marker("exit status 0").unwrap();
        let summary = w.finish().unwrap();
        let l = lines(&path);
        let codes: Vec<&str> = l.iter().skip(1).map(|e| e[1].as_str().unwrap()).collect();
        if record_input {
            assert_eq!(codes, ["o", "i", "r", "o", "m"]);
            assert_eq!(stream(&l, "i"), "ls\r");
        } else {
            assert_eq!(codes, ["o", "r", "o", "m"]);
        }
        assert_eq!(stream(&l, "r"), "200x50");
        assert_eq!(stream(&l, "m"), "exit status 0");
        assert_eq!(asciinema_cat(&path).unwrap(), "$ ls\r\nfile\r\n");
        let (sha, size) = sha256_file(&path).unwrap();
        assert_eq!(summary.sha256, sha);
        assert_eq!(summary.size, size);
        assert_eq!(
            sha,
            super::super::audit::sha256_hex(&std::fs::read(&path).unwrap())
        );
    }
}

#[test]
fn flushing_makes_events_visible_and_follows_its_period() {
    let (_dir, path, mut w) = new_writer();
    w.output(b"one").unwrap();
    // Buffered: not in the file yet.
    assert_eq!(lines(&path).len(), 1);
    w.flush_if_due(Duration::from_secs(3600)).unwrap();
    assert_eq!(lines(&path).len(), 1);
    w.flush_if_due(Duration::ZERO).unwrap();
    assert_eq!(lines(&path).len(), 2);
    w.output(b"two").unwrap();
    w.flush().unwrap();
    assert_eq!(stream(&lines(&path), "o"), "onetwo");
    assert_eq!(w.bytes_written(), std::fs::metadata(&path).unwrap().len());
    // A large event goes out whole too.
    let big = "x".repeat(200_000);
    w.output(big.as_bytes()).unwrap();
    w.flush().unwrap();
    assert_eq!(stream(&lines(&path), "o").len(), 6 + big.len());
    // Dropping without finish still hands buffered lines to the file (the writer.s drop).
    w.output(b"three").unwrap();
    drop(w);
    assert!(stream(&lines(&path), "o").ends_with("three"));
}

#[test]
fn times_are_monotonic_seconds_since_create() {
    let (_dir, path, mut w) = new_writer();
    w.output(b"a").unwrap();
    std::thread::sleep(Duration::from_millis(30));
    w.output(b"b").unwrap();
    w.finish().unwrap();
    let l = lines(&path);
    let (t1, t2) = (l[1][0].as_f64().unwrap(), l[2][0].as_f64().unwrap());
    assert!(t1 < 1.0, "{t1}");
    assert!(t2 - t1 >= 0.029, "{t1} {t2}");
}
