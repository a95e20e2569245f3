//! Loading policy files: the strict YAML schema, validation of every value, compilation
//! of globs and regexes, and the diagnostics of `podgate policy check`.
//!
//! Schema errors (not YAML, unknown key, missing field, wrong type) stop the file they are
//! in, with serde_yaml's location. Value errors and warnings are collected for every rule,
//! each located by re-reading the file up to the offending node (see `locate`).

use std::collections::BTreeMap;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use regex::Regex;
use serde::Deserialize;

use super::{Diagnostic, PolicyError, Rule, Severity};
use crate::action::Action;

#[path = "approval.rs"]
mod approval;
#[cfg(test)]
#[path = "check_tests.rs"]
mod check_tests;
#[path = "lint.rs"]
mod lint;
#[path = "locate.rs"]
mod locate;
#[path = "values.rs"]
mod values;

use locate::Seg;
use values::{check_group, check_shell, compile_pattern};

const DEFAULT_SHELL: &str = "/bin/sh";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    rules: Vec<RawRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: String,
    groups: Vec<String>,
    namespaces: Vec<String>,
    #[serde(default)]
    pods: Option<Vec<String>>,
    #[serde(default)]
    containers: Option<Vec<String>>,
    actions: Vec<Action>,
    #[serde(default)]
    commands: Vec<approval::RawCommand>,
    #[serde(default)]
    deny_commands: Vec<String>,
    #[serde(default)]
    ports: Vec<u16>,
    #[serde(default)]
    shell: Option<String>,
    impersonate_groups: Vec<String>,
    #[serde(default)]
    max_session: Option<String>,
    #[serde(default)]
    record_input: Option<bool>,
    #[serde(default)]
    approval: Option<approval::Mode>,
    #[serde(default)]
    approvers: Vec<String>,
    #[serde(default)]
    approval_ttl: Option<String>,
    #[serde(default)]
    approval_window_max: Option<String>,
}

/// One finding, with everything needed for a [`Diagnostic`] or a [`PolicyError`].
#[derive(Debug, Clone)]
pub(super) struct Finding {
    severity: Severity,
    schema: bool,
    file: String,
    line: Option<usize>,
    column: Option<usize>,
    message: String,
}

/// The result of loading: the rules that compiled, and every finding.
pub(super) struct Loaded {
    pub(super) rules: Vec<Rule>,
    findings: Vec<Finding>,
}

impl Loaded {
    pub(super) fn first_error(&self) -> Option<PolicyError> {
        let f = self
            .findings
            .iter()
            .find(|f| f.severity == Severity::Error)?;
        let mut location = f.file.clone();
        for n in [f.line, f.column].into_iter().flatten() {
            location.push_str(&format!(":{n}"));
        }
        let message = f.message.clone();
        Some(if f.schema {
            PolicyError::Schema { location, message }
        } else {
            PolicyError::Invalid { location, message }
        })
    }

    pub(super) fn diagnostics(&self) -> Vec<Diagnostic> {
        let diag = |f: &Finding| Diagnostic {
            severity: f.severity,
            location: match f.line {
                Some(line) => format!("{}:{line}", f.file),
                None => f.file.clone(),
            },
            message: f.message.clone(),
        };
        self.findings.iter().map(diag).collect()
    }
}

/// Load every source (sorted by file name), collecting all findings.
pub(super) fn load(sources: &[(String, String)]) -> Loaded {
    let mut sorted: Vec<&(String, String)> = sources.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut loaded = Loaded {
        rules: Vec::new(),
        findings: Vec::new(),
    };
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for (file, text) in sorted {
        let start = loaded.findings.len();
        load_file(file, text, &mut loaded, &mut seen);
        // Report in line order within a file (file-level findings first).
        if let Some(findings) = loaded.findings.get_mut(start..) {
            findings.sort_by_key(|f| f.line);
        }
    }
    loaded
}

fn load_file(file: &str, text: &str, loaded: &mut Loaded, seen: &mut BTreeMap<String, String>) {
    let mut ctx = FileCtx {
        file,
        text,
        findings: &mut loaded.findings,
    };
    let Some(raw) = ctx.parse() else { return };
    if raw.is_empty() {
        ctx.warn(&[], "no rules in this file".to_owned());
    }
    for (i, rule) in raw.into_iter().enumerate() {
        let errors_before = ctx.error_count();
        let line = ctx
            .location_of(&[Seg::Key("rules"), Seg::Index(i)])
            .map(|(l, _)| l);
        if let Some(first) = seen.get(&rule.name) {
            let msg = format!(
                "duplicate rule name {:?} (first defined at {first})",
                rule.name
            );
            ctx.error(&[Seg::Key("rules"), Seg::Index(i), Seg::Key("name")], msg);
        } else {
            let at = line.map_or_else(|| file.to_owned(), |l| format!("{file}:{l}"));
            seen.insert(rule.name.clone(), at);
        }
        let compiled = ctx.rule(i, rule, line);
        if ctx.error_count() == errors_before
            && let Some(rule) = compiled
        {
            loaded.rules.push(rule);
        }
    }
}

/// Findings for one file.
struct FileCtx<'a> {
    file: &'a str,
    text: &'a str,
    findings: &'a mut Vec<Finding>,
}

impl FileCtx<'_> {
    fn parse(&mut self) -> Option<Vec<RawRule>> {
        if self.text.lines().all(|l| {
            let l = l.trim();
            l.is_empty() || l.starts_with('#') || l == "---"
        }) {
            self.warn(&[], "no rules in this file".to_owned());
            return None;
        }
        match serde_yaml::from_str::<RawFile>(self.text) {
            Ok(raw) => Some(raw.rules),
            Err(e) => {
                let (line, column) = e.location().map(|l| (l.line(), l.column())).unzip();
                let mut message = e.to_string();
                if let (Some(l), Some(c)) = (line, column) {
                    let suffix = format!(" at line {l} column {c}");
                    if let Some(stripped) = message.strip_suffix(&suffix) {
                        message = stripped.to_owned();
                    }
                }
                self.findings.push(Finding {
                    severity: Severity::Error,
                    schema: true,
                    file: self.file.to_owned(),
                    line,
                    column,
                    message,
                });
                None
            }
        }
    }

    fn location_of(&self, path: &[Seg<'_>]) -> Option<(usize, usize)> {
        locate::locate(self.text, path)
    }

    fn push(&mut self, severity: Severity, path: &[Seg<'_>], message: String) {
        let (line, column) = if path.is_empty() {
            (None, None)
        } else {
            self.location_of(path).unzip()
        };
        self.findings.push(Finding {
            severity,
            schema: false,
            file: self.file.to_owned(),
            line,
            column,
            message,
        });
    }

    fn error(&mut self, path: &[Seg<'_>], message: String) {
        self.push(Severity::Error, path, message);
    }

    fn warn(&mut self, path: &[Seg<'_>], message: String) {
        self.push(Severity::Warning, path, message);
    }

    fn error_count(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .count()
    }

    /// Validate and compile rule `i`; `None` if something could not be compiled.
    fn rule(&mut self, i: usize, raw: RawRule, line: Option<usize>) -> Option<Rule> {
        let r = |key| [Seg::Key("rules"), Seg::Index(i), Seg::Key(key)];
        let item = |key, j| {
            [
                Seg::Key("rules"),
                Seg::Index(i),
                Seg::Key(key),
                Seg::Index(j),
            ]
        };
        let name = raw.name.as_str();

        let name_ok = !name.is_empty()
            && name.len() <= 63
            && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !name_ok {
            self.error(
                &r("name"),
                format!("rule name {name:?} must match [a-z0-9][a-z0-9-]* (at most 63 characters)"),
            );
        }

        self.groups(i, name, &raw.groups);
        self.impersonate_groups(i, name, &raw.impersonate_groups);

        if raw.actions.is_empty() {
            self.error(&r("actions"), format!("rule {name:?}: actions is empty"));
        }
        for (j, a) in raw.actions.iter().enumerate() {
            if raw
                .actions
                .get(..j)
                .is_some_and(|before| before.contains(a))
            {
                self.warn(
                    &item("actions", j),
                    format!("rule {name:?}: action {a} listed twice"),
                );
            }
        }
        let grants = |a: Action| raw.actions.contains(&a);

        let namespace_set = self.globs(i, name, "namespaces", Some(&raw.namespaces));
        let pods = raw.pods.clone().unwrap_or_else(|| vec!["*".to_owned()]);
        let pod_set = self.globs(i, name, "pods", raw.pods.as_deref());
        let containers = raw
            .containers
            .clone()
            .unwrap_or_else(|| vec!["*".to_owned()]);
        let container_set = self.globs(i, name, "containers", raw.containers.as_deref());

        let (commands, command_approval) = approval::split(&raw.commands);
        let command_res = self.patterns(i, name, "commands", &commands);
        let deny_res = self.patterns(i, name, "deny_commands", &raw.deny_commands);
        if grants(Action::Exec) && raw.commands.is_empty() {
            self.warn(
                &r("actions"),
                format!(
                    "rule {name:?} grants exec but lists no commands: it allows no exec \
                     (list the allowed commands, or '.*' for any)"
                ),
            );
        }
        if !grants(Action::Exec) {
            for (key, list) in [
                ("commands", &commands),
                ("deny_commands", &raw.deny_commands),
            ] {
                if !list.is_empty() {
                    self.warn(
                        &r(key),
                        format!("rule {name:?}: {key} is ignored, the rule does not grant exec"),
                    );
                }
            }
        }
        if grants(Action::Exec)
            && let (Some(cmds), Some(deny)) = (&command_res, &deny_res)
        {
            for (j, warning) in lint::commands(name, &commands, cmds, deny, grants(Action::Shell)) {
                self.warn(&item("commands", j), warning);
            }
        }

        self.ports(i, name, &raw.ports, grants(Action::PortForward));

        let shell = match &raw.shell {
            None => DEFAULT_SHELL.to_owned(),
            Some(shell) => {
                if let Err(why) = check_shell(shell) {
                    self.error(&r("shell"), format!("rule {name:?}: shell {shell:?} {why}"));
                }
                if !grants(Action::Shell) {
                    self.warn(
                        &r("shell"),
                        format!("rule {name:?}: shell is ignored, the rule does not grant shell"),
                    );
                }
                shell.clone()
            }
        };

        let max_session = match &raw.max_session {
            None => None,
            Some(text) => match humantime::parse_duration(text) {
                Ok(d) if !d.is_zero() => Some(d),
                Ok(_) => {
                    self.error(
                        &r("max_session"),
                        format!("rule {name:?}: max_session is zero"),
                    );
                    None
                }
                Err(e) => {
                    self.error(
                        &r("max_session"),
                        format!(
                            "rule {name:?}: max_session {text:?} is not a duration ({e}); \
                             write e.g. 30m or 1h30m"
                        ),
                    );
                    None
                }
            },
        };
        let record_input = raw.record_input.unwrap_or(true);
        if !record_input && (grants(Action::Shell) || grants(Action::Exec)) {
            self.warn(
                &r("record_input"),
                format!("rule {name:?}: record_input is false, keystrokes are not recorded"),
            );
        }

        let approval_required = raw.approval == Some(approval::Mode::Required);
        let approval = self.approval(i, name, &raw, &command_approval);
        Some(Rule {
            approval_required,
            command_approval,
            approval,
            name: raw.name,
            file: self.file.to_owned(),
            line,
            groups: raw.groups,
            namespaces: raw.namespaces,
            pods,
            containers,
            actions: raw.actions,
            commands,
            deny_commands: raw.deny_commands,
            ports: raw.ports,
            shell,
            impersonate_groups: raw.impersonate_groups,
            max_session,
            record_input,
            namespace_set: namespace_set?,
            pod_set: pod_set?,
            container_set: container_set?,
            command_res: command_res?,
            deny_res: deny_res?,
        })
    }

    fn groups(&mut self, i: usize, name: &str, groups: &[String]) {
        let key = "groups";
        if groups.is_empty() {
            let msg = format!("rule {name:?}: groups is empty, the rule would apply to no one");
            self.error(&[Seg::Key("rules"), Seg::Index(i), Seg::Key(key)], msg);
        }
        for (j, g) in groups.iter().enumerate() {
            let at = [
                Seg::Key("rules"),
                Seg::Index(i),
                Seg::Key(key),
                Seg::Index(j),
            ];
            if let Err(why) = check_group(g) {
                self.error(&at, format!("rule {name:?}: group {g:?} {why}"));
            } else if g.contains(['*', '?', '[', ']', '{', '}']) {
                self.error(
                    &at,
                    format!("rule {name:?}: group {g:?}: groups are exact names, not globs"),
                );
            } else if groups.get(..j).is_some_and(|before| before.contains(g)) {
                self.warn(&at, format!("rule {name:?}: group {g:?} listed twice"));
            }
        }
    }

    fn impersonate_groups(&mut self, i: usize, name: &str, groups: &[String]) {
        let key = "impersonate_groups";
        if groups.is_empty() {
            let msg = format!(
                "rule {name:?}: impersonate_groups is empty; Kubernetes RBAC grants to groups, \
                 so the impersonated user would have no rights"
            );
            self.error(&[Seg::Key("rules"), Seg::Index(i), Seg::Key(key)], msg);
        }
        for (j, g) in groups.iter().enumerate() {
            let at = [
                Seg::Key("rules"),
                Seg::Index(i),
                Seg::Key(key),
                Seg::Index(j),
            ];
            if let Err(why) = check_group(g) {
                self.error(&at, format!("rule {name:?}: impersonate group {g:?} {why}"));
            } else if g == "system:masters" {
                self.error(
                    &at,
                    format!("rule {name:?}: impersonating system:masters would bypass RBAC"),
                );
            } else if g.starts_with("system:") {
                self.warn(
                    &at,
                    format!(
                        "rule {name:?}: {g:?} is a Kubernetes built-in group; \
                         grant a dedicated group instead"
                    ),
                );
            }
        }
    }

    /// Compile a glob list (`None` = the default `["*"]`).
    fn globs(
        &mut self,
        i: usize,
        name: &str,
        key: &str,
        list: Option<&[String]>,
    ) -> Option<GlobSet> {
        let default = ["*".to_owned()];
        let list = list.unwrap_or(&default);
        if list.is_empty() {
            let msg = format!("rule {name:?}: {key} is empty, the rule would match nothing");
            self.error(&[Seg::Key("rules"), Seg::Index(i), Seg::Key(key)], msg);
        }
        let mut set = GlobSetBuilder::new();
        let mut ok = true;
        for (j, pattern) in list.iter().enumerate() {
            let at = [
                Seg::Key("rules"),
                Seg::Index(i),
                Seg::Key(key),
                Seg::Index(j),
            ];
            if pattern.is_empty() {
                self.error(&at, format!("rule {name:?}: empty pattern in {key}"));
                ok = false;
                continue;
            }
            match GlobBuilder::new(pattern).literal_separator(true).build() {
                Ok(glob) => {
                    set.add(glob);
                }
                Err(e) => {
                    self.error(&at, format!("rule {name:?}: invalid glob in {key}: {e}"));
                    ok = false;
                    continue;
                }
            }
            let name_chars = |c: char| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || "-.*?[]{},!^\\".contains(c)
            };
            if !pattern.chars().all(name_chars) {
                self.warn(
                    &at,
                    format!(
                        "rule {name:?}: {key} pattern {pattern:?} has characters that never \
                         appear in Kubernetes names (lowercase letters, digits, '-', '.')"
                    ),
                );
            }
        }
        match set.build() {
            Ok(set) if ok => Some(set),
            Ok(_) => None,
            Err(e) => {
                let msg = format!("rule {name:?}: {key}: {e}");
                self.error(&[Seg::Key("rules"), Seg::Index(i), Seg::Key(key)], msg);
                None
            }
        }
    }

    /// Compile a regex list; `None` if any pattern failed.
    fn patterns(&mut self, i: usize, name: &str, key: &str, list: &[String]) -> Option<Vec<Regex>> {
        let mut out = Vec::new();
        let mut ok = true;
        for (j, pattern) in list.iter().enumerate() {
            match compile_pattern(pattern) {
                Ok(re) => out.push(re),
                Err(why) => {
                    let at = [
                        Seg::Key("rules"),
                        Seg::Index(i),
                        Seg::Key(key),
                        Seg::Index(j),
                    ];
                    self.error(&at, format!("rule {name:?}: {key} pattern: {why}"));
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    fn ports(&mut self, i: usize, name: &str, ports: &[u16], grants_forward: bool) {
        let key = "ports";
        for (j, p) in ports.iter().enumerate() {
            let at = [
                Seg::Key("rules"),
                Seg::Index(i),
                Seg::Key(key),
                Seg::Index(j),
            ];
            if *p == 0 {
                self.error(&at, format!("rule {name:?}: port 0 is not a port"));
            } else if ports.get(..j).is_some_and(|before| before.contains(p)) {
                self.warn(&at, format!("rule {name:?}: port {p} listed twice"));
            }
        }
        let at = [Seg::Key("rules"), Seg::Index(i), Seg::Key(key)];
        if !ports.is_empty() && !grants_forward {
            self.warn(
                &at,
                format!("rule {name:?}: ports is ignored, the rule does not grant port-forward"),
            );
        }
        if ports.is_empty() && grants_forward {
            let at = [Seg::Key("rules"), Seg::Index(i), Seg::Key("actions")];
            self.warn(
                &at,
                format!("rule {name:?} grants port-forward but lists no ports: it allows none"),
            );
        }
    }
}
