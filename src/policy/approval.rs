//! The approval settings of a rule (issue 11): `approval: required` on the rule or on one
//! `commands` entry (`{pattern: '...', approval: required}`), `approvers` (groups),
//! `approval_ttl` (how long a request waits, default 10m, 5s to 24h) and
//! `approval_window_max` (the longest `approve ID --for DUR`, default 1h, at most 24h).
//!
//! Guarantees: a rule that asks for approval anywhere but names no approvers does not
//! load (it could never be used, and silently allowing would be worse); approvers are
//! checked like `groups`. Settings that have no effect are warnings.

use std::time::Duration;

use serde::Deserialize;

use super::locate::Seg;
use super::values::check_group;
use super::{FileCtx, RawRule};
use crate::policy::ApprovalNeed;

pub(super) const DEFAULT_TTL: Duration = Duration::from_secs(600);
pub(super) const DEFAULT_WINDOW_MAX: Duration = Duration::from_secs(3600);
/// Short enough for tests and drills; a real rule waits minutes.
const MIN_TTL: Duration = Duration::from_secs(5);
const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

/// `approval:` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum Mode {
    None,
    Required,
}

/// One `commands` entry: a pattern, or a pattern with its own approval setting.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(super) enum RawCommand {
    Plain(String),
    WithApproval(RawPattern),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPattern {
    pattern: String,
    approval: Mode,
}

/// The patterns, and per pattern whether it asks for approval.
pub(super) fn split(commands: &[RawCommand]) -> (Vec<String>, Vec<bool>) {
    commands
        .iter()
        .map(|c| match c {
            RawCommand::Plain(p) => (p.clone(), false),
            RawCommand::WithApproval(p) => (p.pattern.clone(), p.approval == Mode::Required),
        })
        .unzip()
}

impl FileCtx<'_> {
    /// Validate rule `i`'s approval settings; `Some` when anything in it asks for approval.
    pub(super) fn approval(
        &mut self,
        i: usize,
        name: &str,
        raw: &RawRule,
        command_approval: &[bool],
    ) -> Option<ApprovalNeed> {
        let r = |key| [Seg::Key("rules"), Seg::Index(i), Seg::Key(key)];
        let asks = raw.approval == Some(Mode::Required) || command_approval.contains(&true);
        for (j, g) in raw.approvers.iter().enumerate() {
            if let Err(why) = check_group(g) {
                let at = [
                    Seg::Key("rules"),
                    Seg::Index(i),
                    Seg::Key("approvers"),
                    Seg::Index(j),
                ];
                self.error(&at, format!("rule {name:?}: approver group {g:?} {why}"));
            }
        }
        let ttl = self.duration(
            &r("approval_ttl"),
            name,
            "approval_ttl",
            raw.approval_ttl.as_deref(),
            DEFAULT_TTL,
            MIN_TTL,
        );
        let window_max = self.duration(
            &r("approval_window_max"),
            name,
            "approval_window_max",
            raw.approval_window_max.as_deref(),
            DEFAULT_WINDOW_MAX,
            Duration::ZERO,
        );
        if !asks {
            for (key, set) in [
                ("approvers", !raw.approvers.is_empty()),
                ("approval_ttl", raw.approval_ttl.is_some()),
                ("approval_window_max", raw.approval_window_max.is_some()),
            ] {
                if set {
                    self.warn(
                        &r(key),
                        format!("rule {name:?}: {key} has no effect, nothing in the rule asks for approval"),
                    );
                }
            }
            return None;
        }
        if raw.approvers.is_empty() {
            let at = if raw.approval == Some(Mode::Required) {
                r("approval")
            } else {
                r("commands")
            };
            self.error(
                &at,
                format!("rule {name:?} asks for approval but names no approvers (approvers: [GROUP, ...])"),
            );
            return None;
        }
        if raw.approvers.iter().all(|a| raw.groups.contains(a)) {
            self.warn(
                &r("approvers"),
                format!(
                    "rule {name:?}: every approver group is also a requester group; a second \
                     member is needed (nobody can approve their own request), but consider a \
                     separate approver group"
                ),
            );
        }
        Some(ApprovalNeed {
            approvers: raw.approvers.clone(),
            ttl,
            window_max,
        })
    }

    /// A duration setting between `min` and 24h; `default` when absent or invalid (the
    /// error is reported, and the rule does not load).
    fn duration(
        &mut self,
        at: &[Seg<'_>],
        name: &str,
        key: &str,
        text: Option<&str>,
        default: Duration,
        min: Duration,
    ) -> Duration {
        let Some(text) = text else { return default };
        match humantime::parse_duration(text) {
            Ok(d) if d >= min && d <= MAX_DURATION => d,
            Ok(_) => {
                self.error(
                    at,
                    format!(
                        "rule {name:?}: {key} {text:?} must be between {} and 24h",
                        humantime::format_duration(min)
                    ),
                );
                default
            }
            Err(e) => {
                self.error(
                    at,
                    format!(
                        "rule {name:?}: {key} {text:?} is not a duration ({e}); write e.g. 10m"
                    ),
                );
                default
            }
        }
    }
}
