//! What the last shipping round found, and the decisions made from it: whether a new
//! session may start (`admit`), and which audit events a change of state calls for
//! (`update`). No I/O here.

use serde_json::{Value, json};

use super::spool::Backlog;
use crate::config::WhenSpoolFull;

#[derive(Debug, Default)]
pub(super) struct Health {
    /// Result of the last round (`None` before the first).
    up: Option<bool>,
    last_error: Option<String>,
    backlog: Backlog,
    /// Why the spool is over its limits, if it is.
    over: Option<String>,
}

impl Health {
    /// `Err(reason)` when the spool is over its limits and `when_full` is `refuse`; with
    /// `accept` the session is let in and an error is logged.
    pub(super) fn admit(&self, url: &str, when_full: WhenSpoolFull) -> Result<(), String> {
        let Some(over) = &self.over else {
            return Ok(());
        };
        let state = match (&self.up, &self.last_error) {
            (Some(false), Some(e)) => format!("is unreachable ({e})"),
            _ => "is not keeping up".to_owned(),
        };
        let reason = format!("recordings store {url} {state}: {over}");
        match when_full {
            WhenSpoolFull::Refuse => Err(reason),
            WhenSpoolFull::Accept => {
                tracing::error!(%reason, "session accepted although the spool is over its limits (when_spool_full: accept)");
                Ok(())
            }
        }
    }

    /// Take a round's outcome (`error` is `None` when it succeeded); returns the audit
    /// events its changes call for.
    pub(super) fn update(
        &mut self,
        url: &str,
        when_full: WhenSpoolFull,
        error: Option<String>,
        backlog: Backlog,
        over: Option<String>,
    ) -> Vec<(&'static str, Value)> {
        let ok = error.is_none();
        let mut events = Vec::new();
        match (self.up, ok) {
            (Some(true) | None, false) => {
                events.push(("store.unreachable", json!({"store": url, "error": error})))
            }
            (Some(false), true) => events.push(("store.recovered", json!({"store": url}))),
            _ => {}
        }
        match (&self.over, &over) {
            (None, Some(reason)) => {
                let when = match when_full {
                    WhenSpoolFull::Refuse => "refuse",
                    WhenSpoolFull::Accept => "accept",
                };
                events.push((
                    "spool.over_limit",
                    json!({"store": url, "reason": reason, "when_spool_full": when}),
                ));
            }
            (Some(_), None) => events.push(("spool.within_limit", json!({"store": url}))),
            _ => {}
        }
        self.up = Some(ok);
        self.last_error = error;
        self.backlog = backlog;
        self.over = over;
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions_are_audited_once_and_admission_follows_the_limits() {
        let url = "s3://rec/gw";
        let refuse = WhenSpoolFull::Refuse;
        let mut h = Health::default();
        let names = |events: Vec<(&'static str, Value)>| -> Vec<&'static str> {
            events.into_iter().map(|(n, _)| n).collect()
        };
        let over = || Some("the spool holds 9 bytes not shipped (spool_max_size 8)".to_owned());
        type Step = (
            Option<&'static str>,
            Option<String>,
            &'static [&'static str],
            bool,
        );
        let steps: [Step; 6] = [
            (None, None, &[], true),
            (
                Some("connection refused"),
                None,
                &["store.unreachable"],
                true,
            ),
            (
                Some("connection refused"),
                over(),
                &["spool.over_limit"],
                false,
            ),
            (Some("connection refused"), over(), &[], false),
            (None, over(), &["store.recovered"], false),
            (None, None, &["spool.within_limit"], true),
        ];
        for (i, (error, over, want, admitted)) in steps.into_iter().enumerate() {
            let got = names(h.update(
                url,
                refuse,
                error.map(str::to_owned),
                Backlog::default(),
                over,
            ));
            assert_eq!(got, want, "step {i}");
            assert_eq!(h.admit(url, refuse).is_ok(), admitted, "step {i}");
            assert!(h.admit(url, WhenSpoolFull::Accept).is_ok());
        }
        h.update(
            url,
            refuse,
            Some("timed out".into()),
            Backlog::default(),
            over(),
        );
        let why = h.admit(url, refuse).unwrap_err();
        assert!(
            why.contains("s3://rec/gw is unreachable (timed out)"),
            "{why}"
        );
        assert!(why.contains("spool_max_size 8"), "{why}");
    }
}
