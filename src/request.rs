//! What the user typed: the SSH exec string, a line at the `podgate>` prompt, or a
//! `direct-tcpip` forward target, parsed into a [`Command`] or a [`Target`] (DESIGN.md §2).
//!
//! Guarantees:
//! * Input bytes are checked **before anything else**: only printable ASCII (0x20..=0x7e)
//!   is accepted. Control bytes (NUL, tab, CR, LF, ESC, DEL), non-ASCII (look-alike
//!   Unicode) and invalid UTF-8 are refused with the offending byte and its offset, so no
//!   later stage (tokenizer, policy regexes, logs) ever sees them. A line is at most
//!   [`MAX_LINE`] bytes.
//! * The line is split with POSIX shell-word rules (`shell_words::split`: single and double
//!   quotes, backslashes, `#` at the start of a word begins a comment as in `sh`); nothing is
//!   expanded and no shell ever runs. A line that does not tokenize (unbalanced quotes) is
//!   refused, never "repaired".
//! * Namespace, pod and container names are validated (namespace and container: DNS-1123
//!   label, ≤ 63 bytes; pod: DNS-1123 subdomain, ≤ 253 bytes), so they can go into API paths.
//! * [`command_line`] is the canonical form of an exec argv that policy patterns match in
//!   full: each word is left bare if it only has characters from `[A-Za-z0-9_@%+=:,./-]`,
//!   otherwise it is single-quoted (a `'` inside becomes `'\''`); words are joined by one
//!   space. `shell_words::split(command_line(argv)) == argv` for every argv.
//!
//! Not here: whether a request is allowed (`policy`), whether the target exists (the
//! cluster), or what the certificate forces (`force-command` is just another line to parse).
//! An exec argv is passed to `pods/exec` as-is; it is never run through `sh -c`.
//!
//! Every [`UsageError`] is a usage error (exit status 64); its `Display` is the one-line
//! message shown as `podgate: <message>`. User text quoted in messages is clipped.

use std::fmt;
use std::time::Duration;

use crate::action::Action;

/// The longest accepted command line, in bytes.
pub const MAX_LINE: usize = 16 * 1024;
const MAX_LABEL: usize = 63;
const MAX_SUBDOMAIN: usize = 253;
const CLIP: usize = 64;

/// The help text: the DESIGN.md §2 table, for `help` and after usage errors.
pub const HELP: &str = include_str!("request_help.txt");

/// Where a request points. Names are validated (DNS-1123) so they can go into API paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub namespace: String,
    pub pod: String,
    pub container: Option<String>,
}

impl Target {
    /// Parse `NS/POD[:CONTAINER]`.
    pub fn parse(text: &str) -> Result<Target, UsageError> {
        let bad = |reason: String| UsageError::InvalidTarget {
            target: clip(text),
            reason,
        };
        let Some((namespace, rest)) = text.split_once('/') else {
            return Err(bad("expected NS/POD[:CONTAINER]".to_owned()));
        };
        if rest.contains('/') {
            return Err(bad(
                "expected NS/POD[:CONTAINER] with a single '/'".to_owned()
            ));
        }
        let (pod, container) = match rest.split_once(':') {
            Some((pod, container)) => (pod, Some(container)),
            None => (rest, None),
        };
        check_label(namespace).map_err(|r| bad(format!("namespace {}", r)))?;
        check_subdomain(pod).map_err(|r| bad(format!("pod name {}", r)))?;
        if let Some(c) = container {
            check_label(c).map_err(|r| bad(format!("container name {}", r)))?;
        }
        Ok(Target {
            namespace: namespace.to_owned(),
            pod: pod.to_owned(),
            container: container.map(str::to_owned),
        })
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&target_text(
            &self.namespace,
            &self.pod,
            self.container.as_deref(),
        ))
    }
}

/// `NS/POD[:CONTAINER]`, as typed and as shown.
pub fn target_text(namespace: &str, pod: &str, container: Option<&str>) -> String {
    match container {
        Some(c) => format!("{namespace}/{pod}:{c}"),
        None => format!("{namespace}/{pod}"),
    }
}

/// Options of `logs`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogOptions {
    pub follow: bool,
    /// Lines from the end; `None` = all.
    pub tail: Option<i64>,
    /// Only lines newer than this; never zero.
    pub since: Option<Duration>,
    pub previous: bool,
    pub timestamps: bool,
}

/// A parsed command (DESIGN.md §2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Whoami,
    Help,
    Pods {
        namespace: Option<String>,
    },
    Exec {
        target: Target,
        argv: Vec<String>,
    },
    Shell {
        target: Target,
    },
    Logs {
        target: Target,
        options: LogOptions,
    },
    /// Pending approval requests the caller may decide (or made).
    Requests,
    /// Approve a request; with `window`, the same command for the same user and target
    /// is approved for that long.
    Approve {
        id: String,
        window: Option<std::time::Duration>,
    },
    Deny {
        id: String,
        reason: String,
    },
    /// Live sessions the caller may observe.
    Sessions,
    /// Watch a live session's output, read-only.
    Watch {
        session: String,
    },
}

impl Command {
    /// The policy action this command needs (`None` for `whoami` and `help`).
    pub fn action(&self) -> Option<Action> {
        match self {
            // Deciding is allowed by the request's approver groups, observing by the
            // observed session's target: both are checked where that is known.
            Command::Whoami
            | Command::Help
            | Command::Requests
            | Command::Approve { .. }
            | Command::Deny { .. }
            | Command::Sessions
            | Command::Watch { .. } => None,
            Command::Pods { .. } => Some(Action::List),
            Command::Exec { .. } => Some(Action::Exec),
            Command::Shell { .. } => Some(Action::Shell),
            Command::Logs { .. } => Some(Action::Logs),
        }
    }

    /// Short name for logs and recordings.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Whoami => "whoami",
            Command::Help => "help",
            Command::Pods { .. } => "pods",
            Command::Exec { .. } => "exec",
            Command::Shell { .. } => "shell",
            Command::Logs { .. } => "logs",
            Command::Requests => "requests",
            Command::Approve { .. } => "approve",
            Command::Deny { .. } => "deny",
            Command::Sessions => "sessions",
            Command::Watch { .. } => "watch",
        }
    }

    /// The target pod, if the command has one.
    pub fn target(&self) -> Option<&Target> {
        match self {
            Command::Exec { target, .. }
            | Command::Shell { target }
            | Command::Logs { target, .. } => Some(target),
            Command::Whoami
            | Command::Help
            | Command::Pods { .. }
            | Command::Requests
            | Command::Approve { .. }
            | Command::Deny { .. }
            | Command::Sessions
            | Command::Watch { .. } => None,
        }
    }
}

/// One line typed at the interactive `podgate>` prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromptLine {
    /// Nothing but blanks (or a `#` comment): show the prompt again.
    Empty,
    /// `exit` or `quit`: end the prompt session.
    Exit,
    Command(Command),
}

/// A usage error (exit status 64). `Display` is the one-line message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsageError {
    #[error("refused byte 0x{byte:02x} at offset {offset}: only printable ASCII is accepted")]
    RefusedByte { offset: usize, byte: u8 },
    #[error("command is {len} bytes long; at most {MAX_LINE} are accepted")]
    TooLong { len: usize },
    #[error("unbalanced quotes in the command")]
    UnbalancedQuotes,
    #[error("empty command; try \"help\"")]
    Empty,
    #[error("unknown command {0:?}; try \"help\"")]
    UnknownCommand(String),
    #[error("unexpected argument {arg:?} to {command}; try \"help\"")]
    UnexpectedArgument { command: &'static str, arg: String },
    #[error("{command} needs a target NS/POD[:CONTAINER]")]
    MissingTarget { command: &'static str },
    #[error("invalid target {target:?}: {reason}")]
    InvalidTarget { target: String, reason: String },
    #[error("invalid namespace {name:?}: namespace {reason}")]
    InvalidNamespace { name: String, reason: &'static str },
    #[error("exec needs \"--\" before the command: exec NS/POD[:CONTAINER] -- ARGV...")]
    MissingSeparator,
    #[error("exec needs a command after \"--\"")]
    EmptyArgv,
    #[error("unknown flag {flag:?} for {command}; try \"help\"")]
    UnknownFlag { command: &'static str, flag: String },
    #[error("{flag} needs a value")]
    MissingValue { flag: &'static str },
    #[error("invalid value {value:?} for {flag}: {reason}")]
    InvalidValue {
        flag: &'static str,
        value: String,
        reason: String,
    },
    #[error("{flag} given more than once")]
    DuplicateFlag { flag: &'static str },
    #[error("invalid forward target {host:?}: {reason}")]
    InvalidForward { host: String, reason: String },
    #[error("invalid forward port {0}: expected 1-65535")]
    InvalidPort(u32),
}

/// Parse an SSH exec request (the raw bytes the client sent).
pub fn parse(line: &[u8]) -> Result<Command, UsageError> {
    let words = words(line)?;
    parse_words(&words)
}

/// Parse one line typed at the `podgate>` prompt: a trailing `\r\n`, `\n` or `\r` is
/// removed, then the line is checked and split as in [`parse`]; blank lines and `exit` /
/// `quit` are handled here.
pub fn parse_prompt_line(line: &[u8]) -> Result<PromptLine, UsageError> {
    let line = line
        .strip_suffix(b"\r\n")
        .or_else(|| line.strip_suffix(b"\n"))
        .or_else(|| line.strip_suffix(b"\r"))
        .unwrap_or(line);
    let words = words(line)?;
    match words.split_first() {
        None => Ok(PromptLine::Empty),
        Some((first, rest)) if first == "exit" || first == "quit" => match rest.first() {
            None => Ok(PromptLine::Exit),
            Some(arg) => Err(UsageError::UnexpectedArgument {
                command: if first == "exit" { "exit" } else { "quit" },
                arg: clip(arg),
            }),
        },
        Some(_) => parse_words(&words).map(PromptLine::Command),
    }
}

/// A port-forward target: the `direct-tcpip` host `POD.NAMESPACE` (split at the LAST dot,
/// since pod names may contain dots; the namespace is a DNS label) and a port 1..=65535.
/// The container is always `None` (forwards are to the pod).
pub fn parse_forward(host: &str, port: u32) -> Result<(Target, u16), UsageError> {
    let bad = |reason: String| UsageError::InvalidForward {
        host: clip(host),
        reason,
    };
    let Some((pod, namespace)) = host.rsplit_once('.') else {
        return Err(bad("expected POD.NAMESPACE".to_owned()));
    };
    check_label(namespace).map_err(|r| bad(format!("namespace {}", r)))?;
    check_subdomain(pod).map_err(|r| bad(format!("pod name {}", r)))?;
    let port = u16::try_from(port)
        .ok()
        .filter(|p| *p != 0)
        .ok_or(UsageError::InvalidPort(port))?;
    let target = Target {
        namespace: namespace.to_owned(),
        pod: pod.to_owned(),
        container: None,
    };
    Ok((target, port))
}

/// The canonical command line of an exec argv: what policy patterns must match in full
/// (see the module doc for the quoting rule).
pub fn command_line(argv: &[String]) -> String {
    let mut out = String::new();
    for (i, word) in argv.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        quote_into(&mut out, word);
    }
    out
}

fn quote_into(out: &mut String, word: &str) {
    let bare = |c: char| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c);
    if !word.is_empty() && word.chars().all(bare) {
        out.push_str(word);
        return;
    }
    out.push('\'');
    for c in word.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
}

/// Byte check, length check, then POSIX word splitting.
fn words(line: &[u8]) -> Result<Vec<String>, UsageError> {
    if let Some((offset, &byte)) = line
        .iter()
        .enumerate()
        .find(|(_, b)| !(0x20..=0x7e).contains(*b))
    {
        return Err(UsageError::RefusedByte { offset, byte });
    }
    if line.len() > MAX_LINE {
        return Err(UsageError::TooLong { len: line.len() });
    }
    // All bytes are printable ASCII, so this cannot fail; map the error anyway.
    let text = std::str::from_utf8(line).map_err(|e| UsageError::RefusedByte {
        offset: e.valid_up_to(),
        byte: line.get(e.valid_up_to()).copied().unwrap_or(0),
    })?;
    shell_words::split(text).map_err(|_| UsageError::UnbalancedQuotes)
}

fn parse_words(words: &[String]) -> Result<Command, UsageError> {
    let Some((first, args)) = words.split_first() else {
        return Err(UsageError::Empty);
    };
    match first.as_str() {
        "whoami" => no_args("whoami", args).map(|()| Command::Whoami),
        "help" => no_args("help", args).map(|()| Command::Help),
        "pods" => parse_pods(args),
        "exec" => parse_exec(args),
        "shell" => parse_shell(args),
        "logs" => parse_logs(args),
        "requests" => no_args("requests", args).map(|()| Command::Requests),
        "approve" => oversight::approve(args),
        "deny" => oversight::deny(args),
        "sessions" => no_args("sessions", args).map(|()| Command::Sessions),
        "watch" => oversight::watch(args),
        other => Err(UsageError::UnknownCommand(clip(other))),
    }
}

fn no_args(command: &'static str, args: &[String]) -> Result<(), UsageError> {
    match args.first() {
        None => Ok(()),
        Some(arg) => Err(unexpected(command, arg)),
    }
}

fn unexpected(command: &'static str, arg: &str) -> UsageError {
    if arg.starts_with('-') && arg.len() > 1 && arg != "--" {
        UsageError::UnknownFlag {
            command,
            flag: clip(arg),
        }
    } else {
        UsageError::UnexpectedArgument {
            command,
            arg: clip(arg),
        }
    }
}

fn parse_pods(args: &[String]) -> Result<Command, UsageError> {
    match args {
        [] => Ok(Command::Pods { namespace: None }),
        [ns] if !ns.starts_with('-') => {
            check_label(ns).map_err(|reason| UsageError::InvalidNamespace {
                name: clip(ns),
                reason,
            })?;
            Ok(Command::Pods {
                namespace: Some(ns.clone()),
            })
        }
        [arg] => Err(unexpected("pods", arg)),
        [_, extra, ..] => Err(unexpected("pods", extra)),
    }
}

fn target_arg(command: &'static str, arg: Option<&String>) -> Result<Target, UsageError> {
    match arg {
        None => Err(UsageError::MissingTarget { command }),
        Some(a) if a == "--" => Err(UsageError::MissingTarget { command }),
        Some(a) if a.starts_with('-') => Err(unexpected(command, a)),
        Some(a) => Target::parse(a),
    }
}

fn parse_exec(args: &[String]) -> Result<Command, UsageError> {
    let target = target_arg("exec", args.first())?;
    match args.get(1).map(String::as_str) {
        Some("--") => {}
        Some(flag) if flag.starts_with('-') && flag.len() > 1 => {
            return Err(unexpected("exec", flag));
        }
        _ => return Err(UsageError::MissingSeparator),
    }
    let argv = args.get(2..).unwrap_or_default().to_vec();
    if argv.is_empty() {
        return Err(UsageError::EmptyArgv);
    }
    Ok(Command::Exec { target, argv })
}

fn parse_shell(args: &[String]) -> Result<Command, UsageError> {
    let target = target_arg("shell", args.first())?;
    match args.get(1) {
        None => Ok(Command::Shell { target }),
        Some(extra) => Err(unexpected("shell", extra)),
    }
}

fn parse_logs(args: &[String]) -> Result<Command, UsageError> {
    let mut target = None;
    let mut options = LogOptions::default();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v)),
            _ => (arg.as_str(), None),
        };
        match (flag, inline) {
            ("-f" | "--follow", None) => options.follow = true,
            ("-p" | "--previous", None) => options.previous = true,
            ("--timestamps", None) => options.timestamps = true,
            ("--tail", _) => {
                let value = flag_value("--tail", inline, &mut args)?;
                if options.tail.replace(parse_tail(value)?).is_some() {
                    return Err(UsageError::DuplicateFlag { flag: "--tail" });
                }
            }
            ("--since", _) => {
                let value = flag_value("--since", inline, &mut args)?;
                if options.since.replace(parse_since(value)?).is_some() {
                    return Err(UsageError::DuplicateFlag { flag: "--since" });
                }
            }
            _ if arg.starts_with('-') => {
                return Err(UsageError::UnknownFlag {
                    command: "logs",
                    flag: clip(arg),
                });
            }
            _ if target.is_some() => return Err(unexpected("logs", arg)),
            _ => target = Some(Target::parse(arg)?),
        }
    }
    let target = target.ok_or(UsageError::MissingTarget { command: "logs" })?;
    Ok(Command::Logs { target, options })
}

fn flag_value<'a>(
    flag: &'static str,
    inline: Option<&'a str>,
    rest: &mut std::slice::Iter<'a, String>,
) -> Result<&'a str, UsageError> {
    inline
        .or_else(|| rest.next().map(String::as_str))
        .ok_or(UsageError::MissingValue { flag })
}

fn parse_tail(value: &str) -> Result<i64, UsageError> {
    let bad = |reason: &str| UsageError::InvalidValue {
        flag: "--tail",
        value: clip(value),
        reason: reason.to_owned(),
    };
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("expected a number of lines, 0 or more"));
    }
    value.parse::<i64>().map_err(|_| bad("number too large"))
}

fn parse_since(value: &str) -> Result<Duration, UsageError> {
    let bad = |reason: String| UsageError::InvalidValue {
        flag: "--since",
        value: clip(value),
        reason,
    };
    let d = humantime::parse_duration(value)
        .map_err(|e| bad(format!("{e} (expected e.g. 30s, 5m, 1h30m)")))?;
    if d.is_zero() {
        return Err(bad("must be longer than zero".to_owned()));
    }
    Ok(d)
}

/// DNS-1123 label: 1-63 of `[a-z0-9-]`, starting and ending with a letter or digit.
/// Whether `name` is a DNS-1123 label (a namespace name).
pub fn is_dns_label(name: &str) -> bool {
    check_label(name).is_ok()
}

fn check_label(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("is empty");
    }
    if name.len() > MAX_LABEL {
        return Err("is longer than 63 characters");
    }
    let ok_char = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-';
    let bytes = name.as_bytes();
    let edges_ok =
        bytes.first().is_some_and(|b| *b != b'-') && bytes.last().is_some_and(|b| *b != b'-');
    if !bytes.iter().all(|b| ok_char(*b)) || !edges_ok {
        return Err(
            "must be lowercase letters, digits and '-', starting and ending with a letter or digit",
        );
    }
    Ok(())
}

/// DNS-1123 subdomain: at most 253 bytes of dot-separated labels.
fn check_subdomain(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("is empty");
    }
    if name.len() > MAX_SUBDOMAIN {
        return Err("is longer than 253 characters");
    }
    let part_ok = |part: &str| {
        let b = part.as_bytes();
        let inner = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-';
        let edge = |c: Option<&u8>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        edge(b.first()) && edge(b.last()) && b.iter().all(inner)
    };
    if !name.split('.').all(part_ok) {
        return Err(
            "must be lowercase letters, digits, '-' and '.', each part starting and ending \
             with a letter or digit",
        );
    }
    Ok(())
}

/// User text for a message: at most [`CLIP`] characters.
fn clip(text: &str) -> String {
    if text.chars().count() <= CLIP {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(CLIP).collect();
    out.push_str("...");
    out
}

#[path = "request_oversight.rs"]
mod oversight;

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "request_props.rs"]
mod props;
