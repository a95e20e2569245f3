//! Approval settings: which requests need approval, and which rules do not load.

use std::time::Duration;

use super::decide;
use crate::policy::{ApprovalNeed, Decision, Policy, Severity};

const POLICY: &str = r#"
rules:
  - name: prod-break-glass
    groups: [sre]
    namespaces: [prod]
    actions: [list, logs, exec, shell, observe]
    commands: ['.*']
    approval: required
    approvers: [sre-leads]
    approval_ttl: 5m
    approval_window_max: 2h
    impersonate_groups: ["jit:debug"]
  - name: payments
    groups: [oncall]
    namespaces: [payments]
    actions: [logs, exec]
    commands:
      - 'ps( aux)?'
      - {pattern: 'kill -TERM [0-9]+', approval: required}
      - {pattern: 'kill .*', approval: none}
    approvers: [payments-leads, sre-leads]
    impersonate_groups: ["jit:oncall"]
"#;

fn policy() -> Policy {
    Policy::parse(&[("p.yaml".to_owned(), POLICY.to_owned())]).unwrap()
}

#[test]
fn which_requests_wait_for_approval() {
    let p = policy();
    let prod = Some(ApprovalNeed {
        approvers: vec!["sre-leads".into()],
        ttl: Duration::from_secs(300),
        window_max: Duration::from_secs(7200),
    });
    let payments = Some(ApprovalNeed {
        approvers: vec!["payments-leads".into(), "sre-leads".into()],
        ttl: Duration::from_secs(600),
        window_max: Duration::from_secs(3600),
    });
    // (groups, action, target, command, approval needed)
    let cases = [
        ("sre", "exec", "prod/db-0", "ls", &prod),
        ("sre", "shell", "prod/db-0", "", &prod),
        ("sre", "logs", "prod/db-0", "", &prod),
        // Listing and observing change nothing: never held.
        ("sre", "list", "prod/db-0", "", &None),
        ("sre", "observe", "prod/db-0", "", &None),
        ("oncall", "exec", "payments/api-0", "ps aux", &None),
        ("oncall", "logs", "payments/api-0", "", &None),
        (
            "oncall",
            "exec",
            "payments/api-0",
            "kill -TERM 12",
            &payments,
        ),
        // Overlapping patterns: one that asks is enough, another cannot lift it.
        ("oncall", "exec", "payments/api-0", "kill -9 12", &None),
    ];
    for (groups, action, target, command, want) in cases {
        match decide(&p, groups, action, target, command) {
            Decision::Allow(g) => assert_eq!(&g.approval, want, "{action} {target} {command}"),
            Decision::Deny(d) => panic!("{action} {target} {command}: {d}"),
        }
    }
}

#[test]
fn rules_that_cannot_be_approved_do_not_load() {
    let rule = |extra: &str| {
        format!(
            "rules:\n  - name: r\n    groups: [g]\n    namespaces: [n]\n    actions: [exec]\n    \
             commands: ['ls']\n    impersonate_groups: [x]\n{extra}"
        )
    };
    // (settings, error expected (substring) or None, warning expected (substring) or None)
    let cases = [
        ("    approval: required\n", Some("names no approvers"), None),
        (
            "    approval: required\n    approvers: [a]\n    approval_ttl: 1s\n",
            Some("approval_ttl \"1s\" must be between 5s and 24h"),
            None,
        ),
        (
            "    approval: required\n    approvers: [a]\n    approval_window_max: soon\n",
            Some("is not a duration"),
            None,
        ),
        (
            "    approval: required\n    approvers: [\"bad group\"]\n",
            Some("approver group"),
            None,
        ),
        ("    approval: maybe\n", Some("unknown variant"), None),
        (
            "    approvers: [a]\n",
            None,
            Some("approvers has no effect"),
        ),
        (
            "    approval: required\n    approvers: [g]\n",
            None,
            Some("also a requester group"),
        ),
        ("    approval: required\n    approvers: [a]\n", None, None),
    ];
    for (extra, error, warning) in cases {
        let text = rule(extra);
        let sources = [("r.yaml".to_owned(), text.clone())];
        match (Policy::parse(&sources), error) {
            (Ok(_), None) => {}
            (Err(e), Some(want)) => assert!(e.to_string().contains(want), "{extra}: {e}"),
            (got, want) => panic!("{extra}: got {got:?}, wanted error {want:?}"),
        }
        let warnings: Vec<String> = Policy::check(&sources)
            .into_iter()
            .filter(|d| d.severity == Severity::Warning)
            .map(|d| d.message)
            .collect();
        match warning {
            Some(w) => assert!(
                warnings.iter().any(|m| m.contains(w)),
                "{extra}: {warnings:?}"
            ),
            None if error.is_none() => assert!(warnings.is_empty(), "{extra}: {warnings:?}"),
            None => {}
        }
    }
}

#[test]
fn explain_says_who_approves() {
    let p = policy();
    let groups = vec!["sre".to_owned()];
    let argv = vec!["ls".to_owned()];
    let ask = crate::policy::Ask {
        groups: &groups,
        action: crate::action::Action::Exec,
        namespace: "prod",
        pod: "db-0",
        container: None,
        argv: Some(&argv),
        port: None,
    };
    let verdicts = p.explain(&ask);
    assert_eq!(
        verdicts.first().map(|v| v.reason.as_str()),
        Some("allowed once approved by a member of [sre-leads]")
    );
}
