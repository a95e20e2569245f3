//! The certificate scope (`namespaces@podgate`, `pods@podgate`, `actions@podgate`):
//! what a certificate allows at most; the policy still applies on top.

use super::*;

/// A comma list of globs from a certificate, compiled.
#[derive(Debug, Clone)]
pub(super) struct GlobList {
    patterns: Vec<String>,
    set: GlobSet,
}

impl GlobList {
    /// Entries are trimmed; an empty entry, an empty list or an invalid glob is an error.
    /// Braces cannot be used for alternation: the comma separates entries first.
    pub(super) fn parse(value: &str) -> Result<GlobList, String> {
        let mut patterns = Vec::new();
        let mut builder = GlobSetBuilder::new();
        for entry in value.split(',').map(str::trim) {
            if entry.is_empty() {
                return Err("empty entry in list".to_owned());
            }
            let glob = GlobBuilder::new(entry).literal_separator(false).build();
            builder.add(glob.map_err(|e| format!("invalid glob {}: {}", shown(entry), e.kind()))?);
            patterns.push(entry.to_owned());
        }
        if patterns.len() > MAX_GLOBS {
            return Err(format!("more than {MAX_GLOBS} entries"));
        }
        let set = builder
            .build()
            .map_err(|e| format!("invalid glob list: {e}"))?;
        Ok(GlobList { patterns, set })
    }
}

/// What a certificate scope allows (critical options `namespaces@podgate`, `pods@podgate`,
/// `actions@podgate`). `None` = no limit from the certificate; the policy still applies.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub(super) namespaces: Option<GlobList>,
    pub(super) pods: Option<GlobList>,
    pub(super) actions: Option<BTreeSet<Action>>,
}

impl Scope {
    /// Build a scope from critical option values as they appear in a certificate.
    pub fn from_cert_values(
        namespaces: Option<&str>,
        pods: Option<&str>,
        actions: Option<&str>,
    ) -> Result<Scope, String> {
        Ok(Scope {
            namespaces: namespaces.map(GlobList::parse).transpose()?,
            pods: pods.map(GlobList::parse).transpose()?,
            actions: actions.map(parse_actions).transpose()?,
        })
    }

    /// `Err` names what the certificate does not allow. Checks action, namespace, then pod;
    /// for namespace-wide requests (listing pods) use the `allows_*` methods instead.
    pub fn check(&self, action: Action, namespace: &str, pod: &str) -> Result<(), String> {
        let missing = |what: String, allows: String| {
            Err(format!(
                "certificate scope does not include {what} (allows: {allows})"
            ))
        };
        if !self.allows_action(action) {
            return missing(format!("action \"{action}\""), self.actions_text());
        }
        if !self.allows_namespace(namespace) {
            return missing(
                format!("namespace {}", shown(namespace)),
                globs_text(&self.namespaces),
            );
        }
        if !self.allows_pod(pod) {
            return missing(format!("pod {}", shown(pod)), globs_text(&self.pods));
        }
        Ok(())
    }

    pub fn allows_namespace(&self, ns: &str) -> bool {
        self.namespaces.as_ref().is_none_or(|g| g.set.is_match(ns))
    }

    pub fn allows_pod(&self, pod: &str) -> bool {
        self.pods.as_ref().is_none_or(|g| g.set.is_match(pod))
    }

    pub fn allows_action(&self, a: Action) -> bool {
        self.actions.as_ref().is_none_or(|set| set.contains(&a))
    }

    /// Human lines for `whoami`, e.g. `namespaces: payments, payments-*` or `pods: any`.
    pub fn describe(&self) -> Vec<String> {
        vec![
            format!("namespaces: {}", globs_text(&self.namespaces)),
            format!("pods: {}", globs_text(&self.pods)),
            format!("actions: {}", self.actions_text()),
        ]
    }

    fn actions_text(&self) -> String {
        let names = self
            .actions
            .as_ref()
            .map(|set| set.iter().map(|a| a.as_str()).collect());
        names.map_or_else(|| "any".to_owned(), |names: Vec<&str>| names.join(", "))
    }
}

/// A comma list of action names (entries trimmed); unknown or empty names are an error.
pub(super) fn parse_actions(value: &str) -> Result<BTreeSet<Action>, String> {
    let parse = |name: &str| Action::from_str(name.trim()).map_err(|e| e.to_string());
    value.split(',').map(parse).collect()
}

pub(super) fn globs_text(globs: &Option<GlobList>) -> String {
    globs
        .as_ref()
        .map_or_else(|| "any".to_owned(), |g| g.patterns.join(", "))
}
