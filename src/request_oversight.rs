//! The grammar of the commands that put a second person in the loop (issue 11):
//! `approve ID [--for DUR]`, `deny ID --reason TEXT...` and `watch SESSION`.
//! (`requests` and `sessions` take no arguments.)
//!
//! Guarantees: ids are checked for shape before they go anywhere (request ids are short
//! lower-case alphanumerics, session ids hexadecimal); `--for` is a positive duration;
//! a denial always has a reason (everything after `--reason`, so it needs no quoting
//! through ssh). Whether the request or session exists, and whether the caller may
//! decide or watch it, is not known here.

use std::time::Duration;

use super::{Command, UsageError, clip, unexpected};

/// Longest denial reason kept.
const MAX_REASON: usize = 500;

fn request_id(command: &'static str, arg: Option<&String>) -> Result<String, UsageError> {
    let id = match arg {
        None => {
            return Err(UsageError::MissingValue {
                flag: command_id(command),
            });
        }
        Some(a) if a.starts_with('-') => return Err(unexpected(command, a)),
        Some(a) => a,
    };
    if id.is_empty()
        || id.len() > 32
        || !id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        return Err(UsageError::InvalidValue {
            flag: command_id(command),
            value: clip(id),
            reason: "a request id is lower-case letters and digits (see `requests`)".into(),
        });
    }
    Ok(id.clone())
}

fn command_id(command: &'static str) -> &'static str {
    match command {
        "approve" => "approve ID",
        _ => "deny ID",
    }
}

pub(super) fn approve(args: &[String]) -> Result<Command, UsageError> {
    let id = request_id("approve", args.first())?;
    let mut window = None;
    let mut rest = args.get(1..).unwrap_or_default().iter();
    while let Some(arg) = rest.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v)),
            _ => (arg.as_str(), None),
        };
        if flag != "--for" {
            return Err(unexpected("approve", arg));
        }
        let value = super::flag_value("--for", inline, &mut rest)?;
        let d = humantime::parse_duration(value).map_err(|e| UsageError::InvalidValue {
            flag: "--for",
            value: clip(value),
            reason: e.to_string(),
        })?;
        if d < Duration::from_secs(1) {
            return Err(UsageError::InvalidValue {
                flag: "--for",
                value: clip(value),
                reason: "must be at least 1s".into(),
            });
        }
        if window.replace(d).is_some() {
            return Err(UsageError::DuplicateFlag { flag: "--for" });
        }
    }
    Ok(Command::Approve { id, window })
}

pub(super) fn deny(args: &[String]) -> Result<Command, UsageError> {
    let id = request_id("deny", args.first())?;
    match args.get(1).map(String::as_str) {
        Some("--reason") => {}
        Some(other) if other.starts_with("--reason=") => {}
        Some(other) => return Err(unexpected("deny", other)),
        None => return Err(UsageError::MissingValue { flag: "--reason" }),
    }
    let mut words: Vec<&str> = Vec::new();
    if let Some(inline) = args.get(1).and_then(|a| a.strip_prefix("--reason=")) {
        words.push(inline);
    }
    words.extend(args.get(2..).unwrap_or_default().iter().map(String::as_str));
    let reason = words.join(" ");
    if reason.trim().is_empty() {
        return Err(UsageError::MissingValue { flag: "--reason" });
    }
    Ok(Command::Deny {
        id,
        reason: reason.chars().take(MAX_REASON).collect(),
    })
}

pub(super) fn watch(args: &[String]) -> Result<Command, UsageError> {
    let session = match args {
        [] => {
            return Err(UsageError::MissingValue {
                flag: "watch SESSION",
            });
        }
        [s] if s.starts_with('-') => return Err(unexpected("watch", s)),
        [s] => s,
        [_, extra, ..] => return Err(unexpected("watch", extra)),
    };
    if session.len() < 6 || session.len() > 32 || !session.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(UsageError::InvalidValue {
            flag: "watch SESSION",
            value: clip(session),
            reason: "a session id is hexadecimal, at least 6 characters (see `sessions`)".into(),
        });
    }
    Ok(Command::Watch {
        session: session.to_ascii_lowercase(),
    })
}

#[cfg(test)]
mod tests {
    use super::super::parse;
    use super::*;

    #[test]
    fn oversight_commands_parse_or_say_why_not() {
        let ok = |id: &str, w: Option<u64>| Command::Approve {
            id: id.into(),
            window: w.map(Duration::from_secs),
        };
        let cases: Vec<(&str, Result<Command, &str>)> = vec![
            ("requests", Ok(Command::Requests)),
            ("requests x", Err("unexpected argument \"x\" to requests")),
            ("approve k3m9q2xa", Ok(ok("k3m9q2xa", None))),
            ("approve k3m9q2xa --for 30m", Ok(ok("k3m9q2xa", Some(1800)))),
            ("approve k3m9q2xa --for=1h", Ok(ok("k3m9q2xa", Some(3600)))),
            ("approve", Err("approve ID needs a value")),
            ("approve K3M", Err("invalid value \"K3M\" for approve ID")),
            ("approve k3m --for", Err("--for needs a value")),
            (
                "approve k3m --for soon",
                Err("invalid value \"soon\" for --for"),
            ),
            ("approve k3m --for 0s", Err("must be at least 1s")),
            (
                "approve k3m --for 1m --for 2m",
                Err("--for given more than once"),
            ),
            (
                "approve k3m --now",
                Err("unknown flag \"--now\" for approve"),
            ),
            (
                "deny k3m --reason not during the freeze",
                Ok(Command::Deny {
                    id: "k3m".into(),
                    reason: "not during the freeze".into(),
                }),
            ),
            (
                "deny k3m --reason='use the runbook'",
                Ok(Command::Deny {
                    id: "k3m".into(),
                    reason: "use the runbook".into(),
                }),
            ),
            ("deny k3m", Err("--reason needs a value")),
            ("deny k3m --reason", Err("--reason needs a value")),
            (
                "deny k3m because",
                Err("unexpected argument \"because\" to deny"),
            ),
            ("sessions", Ok(Command::Sessions)),
            (
                "watch 0123AB",
                Ok(Command::Watch {
                    session: "0123ab".into(),
                }),
            ),
            ("watch", Err("watch SESSION needs a value")),
            ("watch 0123", Err("at least 6 characters")),
            ("watch zzzzzzzz", Err("hexadecimal")),
            (
                "watch 012345 extra",
                Err("unexpected argument \"extra\" to watch"),
            ),
        ];
        for (line, want) in cases {
            match (parse(line.as_bytes()), want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{line}"),
                (Err(e), Err(want)) => assert!(e.to_string().contains(want), "{line}: {e}"),
                (got, want) => panic!("{line}: got {got:?}, want {want:?}"),
            }
        }
    }
}
