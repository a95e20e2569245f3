//! The access policy (DESIGN.md §4): rules loaded from YAML files kept in git, validated
//! and compiled once, then asked "may these groups do this action on this target?".
//!
//! Semantics, as enforced here:
//! * Rules are evaluated in order: files sorted by name, rules in file order. The FIRST rule
//!   that allows a request is the one reported (its name, impersonation groups, shell,
//!   limits). A rule applies only if one of its `groups` equals one of the certificate's
//!   groups (exact strings; groups are never globs).
//! * `namespaces`, `pods` (default `["*"]`) and `containers` (default `["*"]`) are globs
//!   (globset: `*`, `?`, `[a-z]`, `{a,b}`), compiled at load. A request for `pods` listing a
//!   namespace passes an empty pod name and is checked on the namespace only; the caller then
//!   filters the pods one by one. A request whose container is not known yet (`None`) is not
//!   checked against `containers`: the caller asks again once it knows the container.
//! * `exec` is allowed only if the canonical command line ([`request::command_line`] of the
//!   argv) matches some `commands` pattern IN FULL and no `deny_commands` pattern. Every
//!   pattern is compiled once as `\A(?:PATTERN)\z`, after checking that PATTERN is a valid
//!   regex on its own (so it cannot close the group and escape the anchors), with size limits.
//!   A rule granting `exec` with no `commands` allows no exec at all; a rule that wants any
//!   command must say `'.*'`, and `policy check` warns about it.
//! * Interpreters are never implied: an interactive shell cannot be filtered, so it is its
//!   own action (`shell`), and `policy check` warns when a `commands` pattern would let
//!   `sh -c`, `bash`, `python3 -c`, `env sh`, `busybox sh`, `xargs`, ... through (unless the
//!   rule grants `shell` anyway). `deny_commands` is a backstop, not a control.
//! * `port-forward` is allowed only to a port listed in `ports`; none listed, none allowed.
//! * `impersonate_groups` is required (Kubernetes RBAC grants to groups; the user alone
//!   would have no rights) and may not contain `system:masters`.
//! * `record_input` defaults to **true**: what was typed into a session is what incident
//!   review needs, and turning it off (e.g. for a rule where secrets are typed) must be an
//!   explicit, reviewed line in the policy.
//!
//! Not here: the certificate's own scope (`namespaces@podgate`, `actions@podgate`, ...) is
//! checked by the caller and only narrows what the policy grants; reading files and
//! directories is the caller's job ([`Policy::parse`] takes `(file name, text)` pairs);
//! Kubernetes RBAC stays the source of truth on top of this.

use std::fmt;
use std::time::Duration;

use globset::GlobSet;
use regex::Regex;

use crate::action::Action;
use crate::request;

#[path = "policy/load.rs"]
mod load;

/// A loaded, validated, compiled policy.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    rules: Vec<Rule>,
}

/// One rule, as written (plus where), with its compiled matchers.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    /// The file the rule came from, and the line of the rule in it.
    pub file: String,
    pub line: Option<usize>,
    pub groups: Vec<String>,
    pub namespaces: Vec<String>,
    pub pods: Vec<String>,
    pub containers: Vec<String>,
    pub actions: Vec<Action>,
    pub commands: Vec<String>,
    pub deny_commands: Vec<String>,
    pub ports: Vec<u16>,
    pub shell: String,
    pub impersonate_groups: Vec<String>,
    pub max_session: Option<Duration>,
    pub record_input: bool,
    /// `approval: required` on the rule: every request it allows waits for an approver.
    pub approval_required: bool,
    /// Per `commands` entry: whether that pattern asks for approval (`{pattern, approval}`).
    pub command_approval: Vec<bool>,
    /// Who approves and how long a request waits (when anything in the rule asks).
    pub approval: Option<ApprovalNeed>,
    namespace_set: GlobSet,
    pod_set: GlobSet,
    container_set: GlobSet,
    command_res: Vec<Regex>,
    deny_res: Vec<Regex>,
}

impl Rule {
    /// Whether one of the rule's groups is one of `groups` (exact match).
    pub fn applies_to(&self, groups: &[String]) -> bool {
        self.groups.iter().any(|g| groups.contains(g))
    }
}

/// One request to decide.
#[derive(Debug, Clone, Copy)]
pub struct Ask<'a> {
    /// The certificate's groups.
    pub groups: &'a [String],
    pub action: Action,
    pub namespace: &'a str,
    /// `""` for `pods` listing a namespace (the namespace alone is checked).
    pub pod: &'a str,
    /// `None` = not known yet: container globs are not checked.
    pub container: Option<&'a str>,
    /// exec only: the command, matched as `request::command_line(argv)`.
    pub argv: Option<&'a [String]>,
    /// port-forward only.
    pub port: Option<u16>,
}

/// The outcome of [`Policy::decide`].
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Allow(Grant),
    Deny(Denial),
}

/// What the allowing rule grants.
#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    pub rule: String,
    pub impersonate_groups: Vec<String>,
    pub shell: String,
    pub max_session: Option<Duration>,
    pub record_input: bool,
    /// `Some`: the request may go ahead only once a member of these groups approved it.
    pub approval: Option<ApprovalNeed>,
}

/// Who must approve a request, how long it waits for them, and the longest standing
/// approval (`approve ID --for DUR`) they may give.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalNeed {
    pub approvers: Vec<String>,
    pub ttl: Duration,
    pub window_max: Duration,
}

/// Why a request was denied: one line naming what was missing.
#[derive(Debug, Clone, PartialEq)]
pub struct Denial {
    pub message: String,
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// One rule's answer, for `podgate policy explain`.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleVerdict {
    pub rule: String,
    pub allowed: bool,
    /// `"allowed"`, or the first thing that did not match.
    pub reason: String,
}

/// A policy that cannot be loaded. `Display` is `FILE:LINE:COL: message` when the location is
/// known, else `FILE: message`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PolicyError {
    /// Not YAML, or not the schema: unknown key, missing field, wrong type.
    #[error("{location}: {message}")]
    Schema { location: String, message: String },
    /// Fits the schema, but a value is not allowed: bad name, regex, glob, duplicate, ...
    #[error("{location}: {message}")]
    Invalid { location: String, message: String },
}

/// How bad a [`Diagnostic`] is: errors stop the policy from loading, warnings do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One finding of [`Policy::check`]. `Display`: `FILE:LINE: error: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    /// `FILE:LINE`, or `FILE` when no line is known.
    pub location: String,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.location, self.severity, self.message)
    }
}

impl Policy {
    /// Parse and validate policy sources `(file name, YAML text)`. Returns the first error
    /// (in file-name order); warnings are not errors (see [`Policy::check`]).
    pub fn parse(sources: &[(String, String)]) -> Result<Policy, PolicyError> {
        let loaded = load::load(sources);
        match loaded.first_error() {
            Some(err) => Err(err),
            None => Ok(Policy {
                rules: loaded.rules,
            }),
        }
    }

    /// Every error and warning across all files, for `podgate policy check`.
    pub fn check(sources: &[(String, String)]) -> Vec<Diagnostic> {
        load::load(sources).diagnostics()
    }

    /// The rules in evaluation order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The rules that apply to a holder of `groups`, in order (for `whoami`).
    pub fn rules_for<'a>(&'a self, groups: &'a [String]) -> impl Iterator<Item = &'a Rule> {
        self.rules.iter().filter(move |r| r.applies_to(groups))
    }

    /// Decide one request. The certificate's own scope is checked by the caller.
    pub fn decide(&self, ask: &Ask<'_>) -> Decision {
        let mut closest: Option<(&Rule, Miss)> = None;
        for rule in &self.rules {
            match evaluate(rule, ask) {
                Ok(needs_approval) => return Decision::Allow(grant(rule, needs_approval)),
                Err(miss) => {
                    if closest
                        .as_ref()
                        .is_none_or(|(_, m)| miss.stage() > m.stage())
                    {
                        closest = Some((rule, miss));
                    }
                }
            }
        }
        let message = match closest {
            Some((rule, miss)) if miss.stage() > Miss::Namespace.stage() => {
                miss.denial(&rule.name, ask)
            }
            _ => format!(
                "no policy rule grants groups {} action {:?} in namespace {:?}",
                list(ask.groups),
                ask.action.as_str(),
                ask.namespace
            ),
        };
        Decision::Deny(Denial { message })
    }

    /// The certificate's scope first, then the policy (DESIGN.md §3: the certificate only
    /// narrows what the policy grants, it never widens it). `Err` is the denial's message.
    pub fn decide_within(
        &self,
        scope: &crate::auth::Scope,
        ask: &Ask<'_>,
    ) -> Result<Grant, String> {
        scope.check(ask.action, ask.namespace, ask.pod)?;
        match self.decide(ask) {
            Decision::Allow(grant) => Ok(grant),
            Decision::Deny(denial) => Err(denial.message),
        }
    }

    /// For `podgate policy explain`: each rule, whether it allows the request, and if not,
    /// the first thing that did not match.
    pub fn explain(&self, ask: &Ask<'_>) -> Vec<RuleVerdict> {
        self.rules
            .iter()
            .map(|rule| match evaluate(rule, ask) {
                Ok(needs_approval) => RuleVerdict {
                    rule: rule.name.clone(),
                    allowed: true,
                    reason: match (&rule.approval, needs_approval) {
                        (Some(a), true) => format!(
                            "allowed once approved by a member of {}",
                            list(&a.approvers)
                        ),
                        _ => "allowed".to_owned(),
                    },
                },
                Err(miss) => RuleVerdict {
                    rule: rule.name.clone(),
                    allowed: false,
                    reason: miss.reason(rule, ask),
                },
            })
            .collect()
    }
}

fn grant(rule: &Rule, needs_approval: bool) -> Grant {
    Grant {
        rule: rule.name.clone(),
        impersonate_groups: rule.impersonate_groups.clone(),
        shell: rule.shell.clone(),
        max_session: rule.max_session,
        record_input: rule.record_input,
        // A rule that asks for approval without approvers does not load; fail closed anyway.
        approval: needs_approval.then(|| {
            rule.approval.clone().unwrap_or(ApprovalNeed {
                approvers: Vec::new(),
                ttl: Duration::ZERO,
                window_max: Duration::ZERO,
            })
        }),
    }
}

/// The first check a rule failed, in evaluation order.
#[derive(Debug, Clone, PartialEq)]
enum Miss {
    Group,
    Action,
    Namespace,
    NoPod,
    Pod,
    Container,
    NoCommand,
    NotAllowed(String),
    DenyListed(String),
    NoPort,
    Port(u16),
}

impl Miss {
    /// How far the rule got: a denial names the rule that got furthest.
    fn stage(&self) -> u8 {
        match self {
            Miss::Group => 0,
            Miss::Action => 1,
            Miss::Namespace => 2,
            Miss::NoPod | Miss::Pod => 3,
            Miss::Container => 4,
            Miss::NoCommand | Miss::NotAllowed(_) | Miss::NoPort | Miss::Port(_) => 5,
            Miss::DenyListed(_) => 6,
        }
    }

    /// The denial message when this rule was the closest (stages past the namespace).
    fn denial(&self, rule: &str, ask: &Ask<'_>) -> String {
        match self {
            Miss::Group | Miss::Action | Miss::Namespace => {
                format!("rule {rule:?} does not grant this request")
            }
            Miss::NoPod => format!("{} request names no pod", ask.action),
            Miss::Pod => format!(
                "pod {:?} in namespace {:?} is not in the pods of rule {rule:?}",
                ask.pod, ask.namespace
            ),
            Miss::Container => format!(
                "container {:?} is not in the containers of rule {rule:?}",
                ask.container.unwrap_or_default()
            ),
            Miss::NoCommand => "exec request names no command".to_owned(),
            Miss::NotAllowed(line) => {
                format!(
                    "command {:?} is not in the allowlist of rule {rule:?}",
                    clip(line)
                )
            }
            Miss::DenyListed(line) => {
                format!(
                    "command {:?} matches deny_commands of rule {rule:?}",
                    clip(line)
                )
            }
            Miss::NoPort => "port-forward request names no port".to_owned(),
            Miss::Port(p) => format!("port {p} is not listed in rule {rule:?}"),
        }
    }

    /// The per-rule reason for `explain`.
    fn reason(&self, rule: &Rule, ask: &Ask<'_>) -> String {
        match self {
            Miss::Group => format!(
                "groups {} are not among the rule's groups {}",
                list(ask.groups),
                list(&rule.groups)
            ),
            Miss::Action => format!(
                "action {:?} is not among the rule's actions {}",
                ask.action.as_str(),
                list(&rule.actions)
            ),
            Miss::Namespace => format!(
                "namespace {:?} does not match namespaces {}",
                ask.namespace,
                list(&rule.namespaces)
            ),
            Miss::Pod => format!("pod {:?} does not match pods {}", ask.pod, list(&rule.pods)),
            Miss::Container => format!(
                "container {:?} does not match containers {}",
                ask.container.unwrap_or_default(),
                list(&rule.containers)
            ),
            Miss::NotAllowed(line) if rule.commands.is_empty() => format!(
                "command {:?} is not allowed: the rule lists no commands",
                clip(line)
            ),
            Miss::NotAllowed(line) => {
                format!(
                    "command {:?} matches none of the rule's commands",
                    clip(line)
                )
            }
            Miss::DenyListed(line) => format!("command {:?} matches deny_commands", clip(line)),
            Miss::Port(p) if rule.ports.is_empty() => {
                format!("port {p} is not allowed: the rule lists no ports")
            }
            Miss::Port(p) => format!("port {p} is not among ports {}", list(&rule.ports)),
            Miss::NoPod | Miss::NoCommand | Miss::NoPort => self.denial(&rule.name, ask),
        }
    }
}

/// Check one rule against one request: whether it needs approval, or the first check
/// that fails. An exec needs approval when the rule says so or when any `commands`
/// pattern that matches it does (overlapping patterns cannot lift the requirement).
fn evaluate(rule: &Rule, ask: &Ask<'_>) -> Result<bool, Miss> {
    if !rule.applies_to(ask.groups) {
        return Err(Miss::Group);
    }
    if !rule.actions.contains(&ask.action) {
        return Err(Miss::Action);
    }
    if !rule.namespace_set.is_match(ask.namespace) {
        return Err(Miss::Namespace);
    }
    let listing = ask.action == Action::List && ask.pod.is_empty();
    if !listing {
        if ask.pod.is_empty() {
            return Err(Miss::NoPod);
        }
        if !rule.pod_set.is_match(ask.pod) {
            return Err(Miss::Pod);
        }
    }
    if let Some(container) = ask.container
        && !rule.container_set.is_match(container)
    {
        return Err(Miss::Container);
    }
    let mut needs_approval = rule.approval_required;
    match ask.action {
        Action::Exec => {
            let argv = ask.argv.filter(|a| !a.is_empty()).ok_or(Miss::NoCommand)?;
            let line = request::command_line(argv);
            let mut matched = false;
            for (i, re) in rule.command_res.iter().enumerate() {
                if re.is_match(&line) {
                    matched = true;
                    needs_approval |= rule.command_approval.get(i).copied().unwrap_or(true);
                }
            }
            if !matched {
                return Err(Miss::NotAllowed(line));
            }
            if rule.deny_res.iter().any(|re| re.is_match(&line)) {
                return Err(Miss::DenyListed(line));
            }
        }
        Action::PortForward => {
            let port = ask.port.ok_or(Miss::NoPort)?;
            if !rule.ports.contains(&port) {
                return Err(Miss::Port(port));
            }
        }
        Action::List | Action::Logs | Action::Shell | Action::Observe => {}
    }
    // Listing pods and observing are never held for approval: they change nothing.
    Ok(needs_approval && !matches!(ask.action, Action::List | Action::Observe))
}

/// `[a, b]`.
fn list<T: fmt::Display>(items: &[T]) -> String {
    let parts: Vec<String> = items.iter().map(ToString::to_string).collect();
    format!("[{}]", parts.join(", "))
}

/// A command line for a one-line message: at most 200 characters.
fn clip(line: &str) -> String {
    const MAX: usize = 200;
    if line.chars().count() <= MAX {
        return line.to_owned();
    }
    let mut out: String = line.chars().take(MAX).collect();
    out.push_str("...");
    out
}

#[cfg(test)]
#[path = "policy/bypass_tests.rs"]
mod bypass_tests;
#[cfg(test)]
#[path = "policy/narrowing_props.rs"]
mod narrowing_props;
#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
