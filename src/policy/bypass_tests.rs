//! The command allowlist under attack: attempts to run something the example on-call
//! policy (policy/oncall.yaml) does not allow, each sent the way a client sends it (the
//! raw exec bytes through `request::parse`, then `Policy::decide`). Zero may get through;
//! and the commands the policy is for must still pass, so the test fails if matching
//! breaks in either direction.

use crate::action::Action;
use crate::policy::{Ask, Decision, Policy};
use crate::request::{self, Command};

fn oncall() -> Policy {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/policy/oncall.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    Policy::parse(&[("oncall.yaml".to_owned(), text)]).unwrap()
}

/// Whether the raw exec line gets to run: parsed, and allowed for an on-call engineer.
fn runs(policy: &Policy, line: &[u8]) -> bool {
    let Ok(Command::Exec { target, argv }) = request::parse(line) else {
        return false;
    };
    let groups = vec!["oncall-payments".to_owned()];
    let ask = Ask {
        groups: &groups,
        action: Action::Exec,
        namespace: &target.namespace,
        pod: &target.pod,
        container: Some("app"),
        argv: Some(&argv),
        port: None,
    };
    matches!(policy.decide(&ask), Decision::Allow(_))
}

fn exec(command: &[u8]) -> Vec<u8> {
    let mut line = b"exec payments/payments-api-0 -- ".to_vec();
    line.extend_from_slice(command);
    line
}

/// What the policy is for: must run.
const ALLOWED: &[&str] = &[
    "ps aux",
    "ps -ef",
    "'ps' 'aux'",
    "ps  aux",
    "ps aux # a comment is not an argument",
    "top -b -n 1",
    "df -h /",
    "free -m",
    "uptime",
    "id",
    "hostname",
    "date -u",
    "ls -la /var/log",
    "cat /var/log/app.log",
    "tail -n 100 /var/log/app/current",
    "cat /proc/1/status",
    "cat /proc/meminfo",
    "curl -sS http://localhost:8080/healthz",
    "ss -tlnp",
];

/// Attempts to get around it, by kind. Each must be refused.
const ATTEMPTS: &[&[u8]] = &[
    // shell metacharacters: never interpreted, and quoted words match nothing
    b"ps aux; sh",
    b"ps aux;sh",
    b"ps aux && sh",
    b"ps aux || sh",
    b"ps aux | sh",
    b"ps aux & sh",
    b"ps aux $(sh)",
    b"ps aux `sh`",
    b"ps aux > /tmp/x",
    b"ps aux < /etc/shadow",
    b"ps 'aux;sh'",
    b"ps \"aux\" ';' sh",
    b"ps aux\\;sh",
    b"ps -o user=$(id)",
    b"ls -la $HOME",
    b"ls -la /tmp/'a b'",
    b"cat /var/log/x{,/../../etc/shadow}",
    b"cat /var/log/*",
    // interpreters and wrappers
    b"sh",
    b"sh -c 'ps aux'",
    b"bash -c id",
    b"/bin/sh -c id",
    b"busybox sh",
    b"env sh",
    b"env",
    b"python3 -c 'import os'",
    b"perl -e 'exec \"/bin/sh\"'",
    b"awk 'BEGIN{system(\"sh\")}'",
    b"nice ps aux",
    b"timeout 5 sh",
    b"xargs sh",
    b"find / -exec sh ';'",
    // control characters, invalid UTF-8, look-alikes: refused before matching
    b"ps aux\nsh",
    b"ps aux\rsh",
    b"ps aux\0sh",
    b"ps\taux",
    b"ps aux\x1b[2J",
    b"ps aux\x7f",
    b"ps aux \xff",
    b"ps aux \xc3\x28",
    "ps \u{430}ux".as_bytes(),     // Cyrillic a
    "ps\u{a0}aux".as_bytes(),      // no-break space
    "ps aux\u{2028}sh".as_bytes(), // line separator
    "\u{ff50}s aux".as_bytes(),    // fullwidth p
    // path tricks
    b"/bin/ps aux",
    b"./ps aux",
    b"cat /var/log/../../etc/shadow",
    b"cat /var/log/./../../etc/shadow",
    b"tail -n 5 /var/log/../../etc/passwd",
    b"cat /etc/shadow",
    b"cat /proc/1/environ",
    b"cat /proc/self/status",
    b"cat /proc/1/root/etc/shadow",
    b"cat /var/log/app.log /etc/shadow",
    b"cat /tmp/../etc/shadow",
    // argument injection into allowed programs
    b"ps aux --help",
    b"top -b -n 1 -d 0.1",
    b"date -s 2020-01-01",
    b"date -u -s x",
    b"hostname evil",
    b"ss -tlnp -K",
    b"ss -tlnpK",
    b"tail -f /var/log/app.log",
    b"free -h --si",
    b"df -h / --output=source",
    b"curl -sS http://localhost:8080/healthz -o /tmp/x",
    b"curl -sS http://evil.example:80/healthz",
    b"curl -sS http://localhost@evil.example:80/healthz",
    b"curl -sS http://127.0.0.1.evil.example:80/healthz",
    b"curl -sS -K /etc/shadow http://localhost:80/healthz",
    // anchoring: prefixes, suffixes and case
    b"xps aux",
    b"ps auxx",
    b"ps aux x",
    b"idx",
    b"PS AUX",
    b"uptime; sh",
    // oversized
    &[b'a'; 20_000],
];

#[test]
fn no_attempt_gets_through_the_on_call_allowlist() {
    let policy = oncall();
    for ok in ALLOWED {
        assert!(runs(&policy, &exec(ok.as_bytes())), "{ok:?} should run");
    }
    let through: Vec<String> = ATTEMPTS
        .iter()
        .filter(|a| runs(&policy, &exec(a)))
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    assert!(ATTEMPTS.len() >= 60, "{} attempts", ATTEMPTS.len());
    assert!(through.is_empty(), "bypasses: {through:#?}");
}
