//! Checks of single values in a rule: command patterns (compiled with anchors and size
//! limits), group names and the shell path.

use regex::{Regex, RegexBuilder};

/// Patterns longer than this are refused.
pub(super) const MAX_PATTERN: usize = 4096;
/// Compiled size limit of one regex.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Compile one `commands`/`deny_commands` pattern as `\A(?:PATTERN)\z`.
pub(super) fn compile_pattern(pattern: &str) -> Result<Regex, String> {
    if pattern.is_empty() {
        return Err("empty pattern".to_owned());
    }
    if pattern.len() > MAX_PATTERN {
        return Err(format!(
            "pattern is {} bytes long; at most {MAX_PATTERN} are accepted",
            pattern.len()
        ));
    }
    if let Some(b) = pattern.bytes().find(|b| !(0x20..=0x7e).contains(b)) {
        return Err(format!(
            "pattern has byte 0x{b:02x}; patterns are printable ASCII, like the command lines \
             they match"
        ));
    }
    let build = |p: &str| {
        RegexBuilder::new(p)
            .size_limit(REGEX_SIZE_LIMIT)
            .dfa_size_limit(REGEX_SIZE_LIMIT)
            .build()
    };
    // On its own first: a valid regex has balanced groups, so it cannot close `(?:` below
    // and escape the anchors (e.g. `ls)|(.*`).
    build(pattern).map_err(|e| format!("{:?} is not a valid regex: {}", pattern, one_line(&e)))?;
    check_anchoring(pattern)?;
    build(&format!(r"\A(?:{pattern})\z"))
        .map_err(|e| format!("{:?} is not a valid regex: {}", pattern, one_line(&e)))
}

/// Refuse what reads differently once the whole pattern is anchored: a top-level `|`
/// (`ls|cat /tmp/x` is `\A(?:ls|cat /tmp/x)\z` here, but reads as `^ls|cat /tmp/x$` to a
/// person, or to a tool that adds `^...$`, where it would allow anything starting with
/// `ls`), and a `^`, `$`, `\A` or `\z` anywhere but the very start or end (inside a pattern
/// matched against one whole line it cannot mean what its author meant).
fn check_anchoring(pattern: &str) -> Result<(), String> {
    use regex_syntax::ast::{AssertionKind, Ast};
    let Ok(ast) = regex_syntax::ast::parse::Parser::new().parse(pattern) else {
        // Not reached: the pattern compiled; the regex crate reports its own errors.
        return Ok(());
    };
    if let Ast::Alternation(_) = ast {
        return Err(format!(
            "{pattern:?} has a top-level '|': every pattern must match the whole command \
             line, so write it as '(a|b)' to show what each alternative covers"
        ));
    }
    let top: &[Ast] = match &ast {
        Ast::Concat(c) => &c.asts,
        other => std::slice::from_ref(other),
    };
    let is_anchor = |a: &Ast, start: bool| {
        matches!(a, Ast::Assertion(x) if matches!(
            (&x.kind, start),
            (AssertionKind::StartLine | AssertionKind::StartText, true)
                | (AssertionKind::EndLine | AssertionKind::EndText, false)
        ))
    };
    // Flags such as `(?m)` may come before a leading anchor.
    let first = top
        .iter()
        .position(|a| !matches!(a, Ast::Flags(_)))
        .unwrap_or(0);
    let mut stack: Vec<(&Ast, bool)> = top
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let edge =
                (i == first && is_anchor(a, true)) || (i + 1 == top.len() && is_anchor(a, false));
            (a, edge)
        })
        .collect();
    while let Some((node, edge)) = stack.pop() {
        match node {
            Ast::Assertion(x) if !edge => {
                if matches!(
                    x.kind,
                    AssertionKind::StartLine
                        | AssertionKind::EndLine
                        | AssertionKind::StartText
                        | AssertionKind::EndText
                ) {
                    return Err(format!(
                        "{pattern:?} has an anchor inside it: patterns already match the \
                         whole command line; remove it"
                    ));
                }
            }
            Ast::Repetition(r) => stack.push((&r.ast, false)),
            Ast::Group(g) => stack.push((&g.ast, false)),
            Ast::Alternation(a) => stack.extend(a.asts.iter().map(|x| (x, false))),
            Ast::Concat(c) => stack.extend(c.asts.iter().map(|x| (x, false))),
            _ => {}
        }
    }
    Ok(())
}

/// regex errors are multi-line (pattern, caret, message): keep the message.
fn one_line(e: &regex::Error) -> String {
    let text = e.to_string();
    match text.lines().find_map(|l| l.trim().strip_prefix("error: ")) {
        Some(msg) => msg.to_owned(),
        None => text.split_whitespace().collect::<Vec<_>>().join(" "),
    }
}

/// A group name: printable ASCII, no spaces or commas (it goes into a header and is matched
/// against a comma list from the certificate).
pub(super) fn check_group(g: &str) -> Result<(), &'static str> {
    if g.is_empty() {
        return Err("is empty");
    }
    if g.len() > 256 {
        return Err("is longer than 256 characters");
    }
    if !g.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err("must be printable ASCII without spaces");
    }
    if g.contains(',') {
        return Err("must not contain a comma");
    }
    Ok(())
}

pub(super) fn check_shell(shell: &str) -> Result<(), &'static str> {
    if !shell.starts_with('/') {
        return Err("must be an absolute path");
    }
    if !shell.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err("must be printable ASCII without spaces");
    }
    if shell.ends_with('/') || shell.split('/').any(|part| part == ".." || part == ".") {
        return Err("must be a normalized path to a file");
    }
    Ok(())
}
