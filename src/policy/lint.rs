//! Warnings about `commands` patterns that turn an allowlist into a shell: each compiled
//! pattern is tried against sample command lines that start an interpreter or a wrapper
//! that runs another program (`sh -c x`, `env sh`, `busybox sh`, `python3 -c x`, `xargs sh`,
//! `find . -exec sh ;`, ...). Samples that the rule's `deny_commands` refuse do not count.
//! A heuristic: it finds the usual mistakes (`.*`, `[a-z]+ .*`, `(ls|sh) .*`), not all.

use regex::Regex;

/// Lines that every "any command" pattern matches.
const ANY: &[&str] = &["rm -rf /", "z", "sh -c x", "cat /etc/shadow", "x y z 1 2 3"];

/// Command lines (in `request::command_line` form) that start a shell, an interpreter, or a
/// program that runs another program.
const SAMPLES: &[&str] = &[
    "sh",
    "sh -c x",
    "sh -i",
    "/bin/sh -c x",
    "bash",
    "bash -c x",
    "/bin/bash -c x",
    "/usr/bin/bash -c x",
    "dash -c x",
    "zsh -c x",
    "ash -c x",
    "ksh -c x",
    "busybox sh",
    "busybox sh -c x",
    "/bin/busybox sh -c x",
    "busybox ash",
    "env sh",
    "env sh -c x",
    "env -i sh",
    "/usr/bin/env sh -c x",
    "python -c x",
    "python3",
    "python3 -c x",
    "/usr/bin/python3 -c x",
    "perl -e x",
    "ruby -e x",
    "node -e x",
    "php -r x",
    "lua -e x",
    "awk 'BEGIN{system(\"sh\")}'",
    "nice sh",
    "nice -n 10 sh",
    "timeout 10 sh",
    "xargs sh",
    "xargs -I x sh -c x",
    "nohup sh",
    "setsid sh",
    "stdbuf -o0 sh",
    "chroot / sh",
    "watch sh",
    "su",
    "su -",
    "su root",
    "sudo sh",
    "sudo -i",
    "find . -exec sh ';'",
    "find / -exec sh -c x ';'",
    "tar -xf x --to-command=sh",
    "less /etc/hosts",
    "vi /tmp/x",
    "vim /tmp/x",
];

/// `(index into commands, warning)` for each pattern that lets a sample through.
pub(super) fn commands(
    rule: &str,
    sources: &[String],
    compiled: &[Regex],
    deny: &[Regex],
    grants_shell: bool,
) -> Vec<(usize, String)> {
    let allowed =
        |re: &Regex, line: &str| re.is_match(line) && !deny.iter().any(|d| d.is_match(line));
    let mut out = Vec::new();
    for (j, (source, re)) in sources.iter().zip(compiled).enumerate() {
        if ANY.iter().all(|line| re.is_match(line)) {
            out.push((
                j,
                format!(
                    "rule {rule:?}: commands pattern {source:?} allows any command, \
                     including interpreters (\"sh -c ...\")"
                ),
            ));
            continue;
        }
        if grants_shell {
            // The rule grants an interactive shell anyway: an interpreter adds nothing.
            continue;
        }
        if let Some(sample) = SAMPLES.iter().find(|line| allowed(re, line)) {
            out.push((
                j,
                format!(
                    "rule {rule:?}: commands pattern {source:?} allows {sample:?}: an interpreter \
                     or wrapper turns the allowlist into a shell; grant the shell action \
                     instead, or narrow the pattern"
                ),
            ));
        }
    }
    out
}
