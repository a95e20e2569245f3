//! Tests of `request`: table-driven, over what users type and what attackers send.

use std::time::Duration;

use super::*;

fn t(ns: &str, pod: &str, c: Option<&str>) -> Target {
    Target {
        namespace: ns.into(),
        pod: pod.into(),
        container: c.map(Into::into),
    }
}

fn argv(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| (*w).to_owned()).collect()
}

fn logs(target: Target, f: impl FnOnce(&mut LogOptions)) -> Command {
    let mut options = LogOptions::default();
    f(&mut options);
    Command::Logs { target, options }
}

#[test]
fn accepted_commands() {
    let p = |ns: &str, pod: &str| t(ns, pod, None);
    let exec = |target: Target, words: &[&str]| Command::Exec {
        target,
        argv: argv(words),
    };
    let shell = |target: Target| Command::Shell { target };
    #[rustfmt::skip]
    let cases: Vec<(&str, Command)> = vec![
        ("whoami", Command::Whoami),
        ("  whoami  ", Command::Whoami),
        ("help", Command::Help),
        ("pods", Command::Pods { namespace: None }),
        ("pods payments", Command::Pods { namespace: Some("payments".into()) }),
        ("shell payments/api-0", shell(p("payments", "api-0"))),
        ("shell payments/api-0:app", shell(t("payments", "api-0", Some("app")))),
        ("shell kube-system/coredns.x-1", shell(p("kube-system", "coredns.x-1"))),
        ("exec payments/api-0 -- ps aux", exec(p("payments", "api-0"), &["ps", "aux"])),
        ("exec payments/api-0:c1 -- ls", exec(t("payments", "api-0", Some("c1")), &["ls"])),
        (r#"exec ns/p -- sh -c 'echo "a b"'"#, exec(p("ns", "p"), &["sh", "-c", "echo \"a b\""])),
        (r#"exec ns/p -- echo a\ b "c d" ''"#, exec(p("ns", "p"), &["echo", "a b", "c d", ""])),
        ("exec ns/p -- grep -- -x f", exec(p("ns", "p"), &["grep", "--", "-x", "f"])),
        ("exec ns/p -- echo $HOME `id` *", exec(p("ns", "p"), &["echo", "$HOME", "`id`", "*"])),
        ("exec ns/p -- ls # comment", exec(p("ns", "p"), &["ls"])),
        ("logs ns/p", logs(p("ns", "p"), |_| {})),
        ("logs ns/p -f", logs(p("ns", "p"), |o| o.follow = true)),
        ("logs --follow ns/p", logs(p("ns", "p"), |o| o.follow = true)),
        ("logs ns/p --tail 20", logs(p("ns", "p"), |o| o.tail = Some(20))),
        ("logs ns/p --tail=0", logs(p("ns", "p"), |o| o.tail = Some(0))),
        ("logs ns/p --since 5m", logs(p("ns", "p"), |o| o.since = Some(Duration::from_secs(300)))),
        ("logs --since=1h30m ns/p", logs(p("ns", "p"), |o| o.since = Some(Duration::from_secs(5400)))),
        ("logs ns/p -p", logs(p("ns", "p"), |o| o.previous = true)),
        ("logs ns/p --previous --timestamps", logs(p("ns", "p"), |o| { o.previous = true; o.timestamps = true; })),
        ("logs -f --tail 5 ns/p:c --timestamps", logs(t("ns", "p", Some("c")), |o| { o.follow = true; o.tail = Some(5); o.timestamps = true; })),
    ];
    for (line, want) in cases {
        assert_eq!(parse(line.as_bytes()), Ok(want), "{line:?}");
    }
}

#[test]
fn refused_commands() {
    use UsageError as E;
    let unexpected = |command, arg: &str| E::UnexpectedArgument {
        command,
        arg: arg.into(),
    };
    let flag = |command, flag: &str| E::UnknownFlag {
        command,
        flag: flag.into(),
    };
    let byte = |offset, byte| E::RefusedByte { offset, byte };
    #[rustfmt::skip]
    let cases: Vec<(&[u8], E)> = vec![
        (b"", E::Empty),
        (b"   ", E::Empty),
        (b"# just a comment", E::Empty),
        (b"rm -rf /", E::UnknownCommand("rm".into())),
        (b"WHOAMI", E::UnknownCommand("WHOAMI".into())),
        (b"whoami x", unexpected("whoami", "x")),
        (b"help me", unexpected("help", "me")),
        (b"pods a b", unexpected("pods", "b")),
        (b"pods -A", flag("pods", "-A")),
        (b"exec", E::MissingTarget { command: "exec" }),
        (b"exec -- ls", E::MissingTarget { command: "exec" }),
        (b"exec ns/p ls", E::MissingSeparator),
        (b"exec ns/p", E::MissingSeparator),
        (b"exec ns/p -it -- sh", flag("exec", "-it")),
        (b"exec ns/p --", E::EmptyArgv),
        (b"shell", E::MissingTarget { command: "shell" }),
        (b"shell ns/p bash", unexpected("shell", "bash")),
        (b"shell ns/p -- bash", unexpected("shell", "--")),
        (b"logs", E::MissingTarget { command: "logs" }),
        (b"logs -f", E::MissingTarget { command: "logs" }),
        (b"logs ns/p ns/q", unexpected("logs", "ns/q")),
        (b"logs ns/p -x", flag("logs", "-x")),
        (b"logs ns/p -fp", flag("logs", "-fp")),
        (b"logs ns/p --follow=true", flag("logs", "--follow=true")),
        (b"logs ns/p --tail", E::MissingValue { flag: "--tail" }),
        (b"logs ns/p --since", E::MissingValue { flag: "--since" }),
        (b"logs ns/p --tail 1 --tail=2", E::DuplicateFlag { flag: "--tail" }),
        (b"logs ns/p --since 1m --since 2m", E::DuplicateFlag { flag: "--since" }),
        (b"exec ns/p -- sh -c 'echo", E::UnbalancedQuotes),
        (b"exec ns/p -- echo \"a", E::UnbalancedQuotes),
        (b"whoami\n", byte(6, b'\n')),
        (b"exec ns/p -- ls\nrm -rf /", byte(15, b'\n')),
        (b"whoami\r", byte(6, b'\r')),
        (b"exec\tns/p -- ls", byte(4, b'\t')),
        (b"exec ns/p -- ls\0", byte(15, 0)),
        (b"\x1b[31mwhoami", byte(0, 0x1b)),
        (b"whoami\x7f", byte(6, 0x7f)),
        // Cyrillic 'а' (U+0430) in "p\u{430}yments": the first byte of its encoding.
        ("pods p\u{430}yments".as_bytes(), byte(6, 0xd0)),
        // Fullwidth 'ｌ' (U+FF4C).
        ("exec ns/p -- \u{ff4c}s".as_bytes(), byte(13, 0xef)),
        (b"exec ns/p -- ls \xff\xfe", byte(16, 0xff)),
        (b"whoami \xc3\x28", byte(7, 0xc3)),
    ];
    for (line, want) in cases {
        assert_eq!(
            parse(line),
            Err(want),
            "{:?}",
            String::from_utf8_lossy(line)
        );
    }
}

#[test]
fn bad_targets_and_values() {
    let cases = [
        "shell ns",
        "shell /pod",
        "shell ns/",
        "shell NS/pod",
        "shell ns/Pod",
        "shell ns/pod:",
        "shell ns/pod:C",
        "shell ../x/pod",
        "shell ns/pod/extra",
        "shell ns/../pod",
        "shell ns/-pod",
        "shell ns-/pod",
        "shell ns/pod.",
        "shell ns/pod..x",
        "shell ns/pod:c:d",
        "shell ns:c/pod",
        "pods ../etc",
        "pods Payments",
        "logs ns/p --tail -1",
        "logs ns/p --tail=+5",
        "logs ns/p --tail x",
        "logs ns/p --tail=99999999999999999999",
        "logs ns/p --since 5",
        "logs ns/p --since=0s",
        "logs ns/p --since=",
    ];
    for line in cases {
        let err = parse(line.as_bytes()).unwrap_err();
        assert!(
            matches!(
                err,
                UsageError::InvalidTarget { .. }
                    | UsageError::InvalidNamespace { .. }
                    | UsageError::InvalidValue { .. }
            ),
            "{line:?}: {err:?}"
        );
    }
    let long_ns = format!("shell {}/p", "a".repeat(64));
    assert!(matches!(
        parse(long_ns.as_bytes()),
        Err(UsageError::InvalidTarget { .. })
    ));
    let ok_ns = format!("shell {}/p", "a".repeat(63));
    assert!(parse(ok_ns.as_bytes()).is_ok());
    let long_pod = format!("shell ns/{}", "a".repeat(254));
    assert!(matches!(
        parse(long_pod.as_bytes()),
        Err(UsageError::InvalidTarget { .. })
    ));
    let ok_pod = format!("shell ns/{}", "a".repeat(253));
    assert!(parse(ok_pod.as_bytes()).is_ok());
}

#[test]
fn size_limit() {
    let head = "exec ns/p -- echo ";
    let fits = format!("{head}{}", "a".repeat(MAX_LINE - head.len()));
    assert!(parse(fits.as_bytes()).is_ok());
    let over = format!("{fits}a");
    assert_eq!(
        parse(over.as_bytes()),
        Err(UsageError::TooLong { len: MAX_LINE + 1 })
    );
}

#[test]
fn messages() {
    let msg = |line: &str| parse(line.as_bytes()).unwrap_err().to_string();
    assert_eq!(msg("rm -rf /"), r#"unknown command "rm"; try "help""#);
    assert_eq!(
        msg("whoami\n"),
        "refused byte 0x0a at offset 6: only printable ASCII is accepted"
    );
    assert_eq!(
        msg("exec ns/p ls"),
        r#"exec needs "--" before the command: exec NS/POD[:CONTAINER] -- ARGV..."#
    );
    assert!(msg("shell NS/pod").starts_with(r#"invalid target "NS/pod": namespace must be"#));
    assert_eq!(
        msg("shell ns/pod:"),
        r#"invalid target "ns/pod:": container name is empty"#
    );
    assert!(msg("logs ns/p --since 5").starts_with(r#"invalid value "5" for --since: "#));
    let long = format!("{} x", "z".repeat(500));
    assert!(msg(&long).len() < 120, "user text is clipped");
    for line in [
        "",
        "rm",
        "exec ns/p",
        "logs ns/p --tail x",
        "exec ns/p -- 'x",
    ] {
        assert!(!msg(line).contains('\n'), "one line: {line:?}");
    }
}

#[test]
fn actions_and_names() {
    let cases = [
        ("whoami", None, "whoami"),
        ("help", None, "help"),
        ("pods", Some(Action::List), "pods"),
        ("exec a/b -- x", Some(Action::Exec), "exec"),
        ("shell a/b", Some(Action::Shell), "shell"),
        ("logs a/b", Some(Action::Logs), "logs"),
    ];
    for (line, action, name) in cases {
        let c = parse(line.as_bytes()).unwrap();
        assert_eq!((c.action(), c.name()), (action, name), "{line}");
    }
    let c = parse(b"shell a/b:c").unwrap();
    assert_eq!(c.target().unwrap().to_string(), "a/b:c");
    assert_eq!(parse(b"pods").unwrap().target(), None);
}

#[test]
fn prompt_lines() {
    use UsageError as E;
    let cmd = PromptLine::Command;
    #[rustfmt::skip]
    let cases: Vec<(&[u8], Result<PromptLine, UsageError>)> = vec![
        (b"", Ok(PromptLine::Empty)),
        (b"\r\n", Ok(PromptLine::Empty)),
        (b"   \n", Ok(PromptLine::Empty)),
        (b"exit\n", Ok(PromptLine::Exit)),
        (b"quit\r", Ok(PromptLine::Exit)),
        (b"  exit  \r\n", Ok(PromptLine::Exit)),
        (b"whoami\r\n", Ok(cmd(Command::Whoami))),
        (b"pods payments\n", Ok(cmd(Command::Pods { namespace: Some("payments".into()) }))),
        (b"exit now", Err(E::UnexpectedArgument { command: "exit", arg: "now".into() })),
        (b"whoami\n\n", Err(E::RefusedByte { offset: 6, byte: b'\n' })),
        (b"whoami\r\r\n", Err(E::RefusedByte { offset: 6, byte: b'\r' })),
        (b"\tpods", Err(E::RefusedByte { offset: 0, byte: b'\t' })),
        (b"rm\n", Err(E::UnknownCommand("rm".into()))),
    ];
    for (line, want) in cases {
        let got = parse_prompt_line(line);
        assert_eq!(got, want, "{:?}", String::from_utf8_lossy(line));
    }
}

#[test]
fn forwards() {
    let ok = [
        (
            "payments-api-0.payments",
            8080,
            t("payments", "payments-api-0", None),
            8080,
        ),
        ("a.b.c.ns", 1, t("ns", "a.b.c", None), 1),
        ("p.n", 65535, t("n", "p", None), 65535),
    ];
    for (host, port, target, p) in ok {
        assert_eq!(parse_forward(host, port), Ok((target, p)), "{host}:{port}");
    }
    let bad = [
        ("localhost", 80),
        ("pod.", 80),
        (".ns", 80),
        ("Pod.ns", 80),
        ("pod.NS", 80),
        ("pod.ns.", 80),
        ("pod..ns", 80),
        ("pod/x.ns", 80),
        ("pod.ns:80", 80),
        ("p\u{430}d.ns", 80),
        ("pod.ns\n", 80),
        ("", 80),
        ("pod.ns", 0),
        ("pod.ns", 65536),
        ("pod.ns", u32::MAX),
    ];
    for (host, port) in bad {
        assert!(parse_forward(host, port).is_err(), "{host:?}:{port}");
    }
    assert_eq!(
        parse_forward("pod.ns", 0).unwrap_err().to_string(),
        "invalid forward port 0: expected 1-65535"
    );
}

#[test]
fn command_line_quoting() {
    let cases: Vec<(Vec<String>, &str)> = vec![
        (argv(&["ps", "aux"]), "ps aux"),
        (argv(&["ls", "-l", "/var/log"]), "ls -l /var/log"),
        (argv(&["ls;", "rm"]), "'ls;' rm"),
        (argv(&["ls", "-l; rm"]), "ls '-l; rm'"),
        (argv(&["echo", ""]), "echo ''"),
        (argv(&["echo", "it's"]), r"echo 'it'\''s'"),
        (argv(&["ps", "-o", "pid=,comm="]), "ps -o pid=,comm="),
        (
            argv(&["curl", "http://localhost:8080/healthz"]),
            "curl http://localhost:8080/healthz",
        ),
        (argv(&["sh", "-c", "echo \"a b\""]), r#"sh -c 'echo "a b"'"#),
        (
            argv(&["echo", "$HOME", "*", "~", "#x", "a|b", "{x}"]),
            "echo '$HOME' '*' '~' '#x' 'a|b' '{x}'",
        ),
    ];
    for (words, want) in cases {
        assert_eq!(command_line(&words), want);
    }
}

#[test]
fn command_line_round_trips() {
    let lines = [
        "ps aux",
        r#"sh -c 'echo "a b"'"#,
        r"echo a\ b 'c'\''d' '' x",
        r#"awk '{print $1}' /etc/passwd"#,
        "printf '%s\\n' a b",
        r#"echo "tab\there" 'semi;colon' back\\slash '!' "#,
        "grep -E 'a|b' -e \"x'y\" --color=never",
        "cat ../etc/passwd",
        "echo ~ * ? [a] #not-a-comment-after-quote",
    ];
    for line in lines {
        let words = shell_words::split(line).unwrap();
        let joined = command_line(&words);
        assert_eq!(
            shell_words::split(&joined).unwrap(),
            words,
            "{line:?} -> {joined:?}"
        );
        assert_eq!(
            command_line(&shell_words::split(&joined).unwrap()),
            joined,
            "stable"
        );
    }
}

#[test]
fn help_fits_80_columns() {
    for line in HELP.lines() {
        assert!(line.len() <= 80, "{line:?}");
        assert!(line.bytes().all(|b| (0x20..=0x7e).contains(&b)), "{line:?}");
    }
    for word in [
        "whoami", "pods", "exec", "shell", "logs", "help", "--tail", "--since",
    ] {
        assert!(HELP.contains(word), "{word}");
    }
}
