//! The six things a certificate scope or a policy rule can grant (DESIGN.md §3, §4).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A policy action. `whoami` and `help` need none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    List,
    Logs,
    Exec,
    Shell,
    PortForward,
    /// Watching another user's live session (`sessions`, `watch`), read-only.
    Observe,
}

impl Action {
    pub const ALL: [Action; 6] = [
        Action::List,
        Action::Logs,
        Action::Exec,
        Action::Shell,
        Action::PortForward,
        Action::Observe,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::List => "list",
            Action::Logs => "logs",
            Action::Exec => "exec",
            Action::Shell => "shell",
            Action::PortForward => "port-forward",
            Action::Observe => "observe",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown action name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown action {0:?} (expected one of list, logs, exec, shell, port-forward, observe)")]
pub struct UnknownAction(pub String);

impl FromStr for Action {
    type Err = UnknownAction;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Action::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| UnknownAction(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for a in Action::ALL {
            assert_eq!(a.as_str().parse::<Action>(), Ok(a));
        }
        assert!("port_forward".parse::<Action>().is_err());
        assert!("".parse::<Action>().is_err());
    }
}
