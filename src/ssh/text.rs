//! What the gateway prints for `whoami` and `pods`: plain text, aligned columns, no colour.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::action::Action;
use crate::auth::Identity;
use crate::bridge::pods::PodRow;
use crate::gateway::Gateway;

/// A coarse age: the largest whole unit (`45s`, `12m`, `3h`, `2d`).
pub fn age(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

fn rfc3339(unix: u64) -> String {
    UNIX_EPOCH
        .checked_add(Duration::from_secs(unix))
        .map(|t| humantime::format_rfc3339_seconds(t).to_string())
        .unwrap_or_else(|| unix.to_string())
}

fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?', '[', '{'])
}

/// Namespaces whose pods `pods` (with no namespace) lists: the literal namespace names of
/// the rules that grant `list` to the certificate's groups, within the certificate scope.
/// Glob patterns cannot be enumerated without cluster-wide rights the user may not have.
pub fn listable_namespaces(gw: &Gateway, id: &Identity) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for rule in gw.policy.rules() {
        if !rule.groups.iter().any(|g| id.groups.contains(g))
            || !rule.actions.contains(&Action::List)
        {
            continue;
        }
        for ns in &rule.namespaces {
            if !is_glob(ns) && id.scope.allows_namespace(ns) && !out.contains(ns) {
                out.push(ns.clone());
            }
        }
    }
    out.sort();
    out
}

/// `whoami`: identity, groups, certificate, scope, and what the policy grants.
pub fn whoami(gw: &Gateway, id: &Identity) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let left = age(Duration::from_secs(id.valid_before.saturating_sub(now)));
    let groups = if id.groups.is_empty() {
        "(none)".to_owned()
    } else {
        id.groups.join(", ")
    };
    let mut out = String::new();
    out.push_str(&format!("identity:     {}\n", id.key_id));
    out.push_str(&format!("principal:    {}\n", id.principal));
    out.push_str(&format!("groups:       {groups}\n"));
    out.push_str(&format!(
        "certificate:  serial {}, signed by {}, expires {} (in {left})\n",
        id.serial,
        id.ca_fingerprint,
        rfc3339(id.valid_before)
    ));
    if let Some(r) = &id.reason {
        out.push_str(&format!("reason:       {r}\n"));
    }
    out.push_str(&format!(
        "scope:        {}\n",
        id.scope.describe().join("; ")
    ));
    out.push_str(&format!(
        "gateway:      cluster {}{}\n",
        gw.auth.cluster,
        gw.auth
            .incident
            .as_ref()
            .map(|i| format!(", incident {i}"))
            .unwrap_or_default()
    ));
    let rules: Vec<String> = gw
        .policy
        .rules()
        .iter()
        .filter(|r| r.groups.iter().any(|g| id.groups.contains(g)))
        .map(|r| {
            let actions: Vec<&str> = r.actions.iter().map(|a| a.as_str()).collect();
            let approval = match &r.approval {
                Some(a) if r.approval_required => {
                    format!("; approval by {}", a.approvers.join(", "))
                }
                Some(a) => format!(
                    "; some commands need approval by {}",
                    a.approvers.join(", ")
                ),
                None => String::new(),
            };
            format!(
                "  {}: namespaces {}; pods {}; actions {}{approval}",
                r.name,
                r.namespaces.join(", "),
                r.pods.join(", "),
                actions.join(", ")
            )
        })
        .collect();
    if rules.is_empty() {
        out.push_str("policy:       no rule grants anything to your groups\n");
    } else {
        out.push_str("policy:       rules for your groups (the certificate scope narrows them):\n");
        for r in rules {
            out.push_str(&r);
            out.push('\n');
        }
    }
    out
}

/// The `pods` table.
pub fn pod_table(rows: &[PodRow], now: SystemTime) -> String {
    let mut sorted: Vec<&PodRow> = rows.iter().collect();
    sorted.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    let cells: Vec<Vec<String>> = sorted
        .iter()
        .map(|r| {
            let age = r
                .created
                .and_then(|c| now.duration_since(c).ok())
                .map(age)
                .unwrap_or_else(|| "-".into());
            vec![
                r.namespace.clone(),
                r.name.clone(),
                r.status.clone(),
                r.containers.join(","),
                age,
            ]
        })
        .collect();
    columns(
        &["NAMESPACE", "NAME", "STATUS", "CONTAINERS", "AGE"],
        &cells,
        "(no pods you may see)",
    )
}

/// `requests`: pending approval requests, each with whose it is to decide.
pub fn request_table(rows: &[(crate::approval::Stored, &str)], now: SystemTime) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|(s, mine)| {
            let r = &s.request;
            let target = crate::request::target_text(&r.namespace, &r.pod, r.container.as_deref());
            let left = r
                .expires
                .duration_since(now)
                .map(age)
                .unwrap_or_else(|_| "0s".into());
            vec![
                r.id.clone(),
                r.requester.clone(),
                format!("{} {target}", r.action),
                r.command.clone().unwrap_or_else(|| "-".into()),
                r.reason.clone().unwrap_or_else(|| "-".into()),
                left,
                (*mine).to_owned(),
            ]
        })
        .collect();
    columns(
        &["ID", "WHO", "WHAT", "COMMAND", "WHY", "EXPIRES IN", ""],
        &cells,
        "(no pending requests for you)",
    )
}

/// `sessions`: live sessions the caller may watch.
pub fn session_table(rows: &[crate::observe::LiveInfo], now: SystemTime) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|l| {
            let target = crate::request::target_text(&l.namespace, &l.pod, l.container.as_deref());
            vec![
                l.session.get(..12).unwrap_or(&l.session).to_owned(),
                l.identity.clone(),
                format!("{} {target}", l.action),
                l.command.clone().unwrap_or_else(|| "-".into()),
                now.duration_since(l.started)
                    .map(age)
                    .unwrap_or_else(|_| "0s".into()),
                if l.pty.is_some() { "pty" } else { "-" }.to_owned(),
                l.observers.join(","),
            ]
        })
        .collect();
    columns(
        &[
            "SESSION",
            "WHO",
            "WHAT",
            "COMMAND",
            "AGE",
            "TTY",
            "WATCHED BY",
        ],
        &cells,
        "(no live sessions you may watch)",
    )
}

/// Left-aligned columns three spaces apart; `empty` when there are no rows.
fn columns(header: &[&str], cells: &[Vec<String>], empty: &str) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.len());
        }
    }
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    let mut out = String::new();
    for row in std::iter::once(&header).chain(cells.iter()) {
        let mut line = String::new();
        for (i, (c, w)) in row.iter().zip(&widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(c);
            } else {
                line.push_str(&format!("{c:<w$}   "));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    if cells.is_empty() {
        out.push_str(empty);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_and_tables() {
        assert_eq!(age(Duration::from_secs(5)), "5s");
        assert_eq!(age(Duration::from_secs(600)), "10m");
        assert_eq!(age(Duration::from_secs(3 * 3600)), "3h");
        assert_eq!(age(Duration::from_secs(3 * 86400)), "3d");
        let now = SystemTime::now();
        let rows = vec![PodRow {
            namespace: "payments".into(),
            name: "payments-api-0".into(),
            status: "Running".into(),
            containers: vec!["api".into(), "sidecar".into()],
            created: now.checked_sub(Duration::from_secs(300)),
        }];
        let t = pod_table(&rows, now);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("NAMESPACE   NAME"));
        assert!(
            lines[1].contains("payments-api-0   Running   api,sidecar   5m"),
            "{t}"
        );
    }
}
