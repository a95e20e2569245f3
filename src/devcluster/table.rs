//! `meta.k8s.io/v1` Table responses, which kubectl asks for (`Accept: …;as=Table`) to
//! print `get` output: the same columns a real API server computes for pods and
//! namespaces, and Name/Age for everything else.

use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use super::store::str_at;

/// Whether the Accept header asks for a Table.
pub fn wanted(accept: &str) -> bool {
    accept
        .split(',')
        .next()
        .is_some_and(|first| first.contains("as=Table"))
}

fn column(name: &str, format: &str, priority: u8, description: &str) -> Value {
    json!({"name": name, "type": "string", "format": format, "description": description, "priority": priority})
}

/// Build a Table of `items` (objects of `resource`). `include` is the `includeObject`
/// query parameter: `None`, `Metadata` (default) or `Object`.
pub fn build(
    resource: &str,
    items: &[Value],
    resource_version: &str,
    include: &str,
    now: SystemTime,
) -> Value {
    let name_col = column("Name", "name", 0, "Name must be unique within a namespace.");
    let age_col = column(
        "Age",
        "",
        0,
        "CreationTimestamp is a timestamp representing the server time when this object was created.",
    );
    let columns = match resource {
        "pods" => vec![
            name_col,
            column(
                "Ready",
                "",
                0,
                "The aggregate readiness state of this pod for accepting traffic.",
            ),
            column(
                "Status",
                "",
                0,
                "The aggregate status of the containers in this pod.",
            ),
            column(
                "Restarts",
                "",
                0,
                "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
            ),
            age_col,
            column(
                "IP",
                "",
                1,
                "IP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.",
            ),
            column(
                "Node",
                "",
                1,
                "NodeName is a request to schedule this pod onto a specific node.",
            ),
            column(
                "Nominated Node",
                "",
                1,
                "nominatedNodeName is set only when this pod preempts other pods on the node.",
            ),
            column(
                "Readiness Gates",
                "",
                1,
                "If specified, all readiness gates will be evaluated for pod readiness.",
            ),
        ],
        "namespaces" => vec![
            name_col,
            column("Status", "", 0, "The status of the namespace"),
            age_col,
        ],
        _ => vec![name_col, age_col],
    };
    let rows: Vec<Value> = items
        .iter()
        .map(|item| {
            let age = age(item, now);
            let name = str_at(item, &["metadata", "name"]);
            let cells = match resource {
                "pods" => pod_cells(item, name, &age),
                "namespaces" => json!([name, str_at(item, &["status", "phase"]), age]),
                _ => json!([name, age]),
            };
            let mut row = json!({"cells": cells});
            let object = match include {
                "None" => None,
                "Object" => Some(item.clone()),
                _ => Some(json!({
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": item.get("metadata").cloned().unwrap_or(Value::Null),
                })),
            };
            if let (Some(o), Some(r)) = (object, row.as_object_mut()) {
                r.insert("object".into(), o);
            }
            row
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": columns,
        "rows": rows,
    })
}

fn pod_cells(pod: &Value, name: &str, age: &str) -> Value {
    let statuses = pod
        .get("status")
        .and_then(|s| s.get("containerStatuses"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let total = pod
        .get("spec")
        .and_then(|s| s.get("containers"))
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let ready = statuses.iter().filter(|s| s["ready"] == true).count();
    let restarts: u64 = statuses
        .iter()
        .filter_map(|s| s["restartCount"].as_u64())
        .sum();
    let phase = str_at(pod, &["status", "phase"]);
    // As pkg/printers/internalversion printPod: a waiting or terminated container's reason
    // replaces the phase.
    let mut reason = phase.to_owned();
    for s in &statuses {
        let waiting = str_at(s, &["state", "waiting", "reason"]);
        let terminated = str_at(s, &["state", "terminated", "reason"]);
        if !waiting.is_empty() {
            reason = waiting.to_owned();
        } else if !terminated.is_empty() {
            reason = terminated.to_owned();
        }
    }
    let ip = str_at(pod, &["status", "podIP"]);
    let node = str_at(pod, &["spec", "nodeName"]);
    json!([
        name,
        format!("{ready}/{total}"),
        reason,
        restarts.to_string(),
        age,
        if ip.is_empty() { "<none>" } else { ip },
        if node.is_empty() { "<none>" } else { node },
        "<none>",
        "<none>",
    ])
}

fn age(item: &Value, now: SystemTime) -> String {
    let created = str_at(item, &["metadata", "creationTimestamp"]);
    match humantime::parse_rfc3339_weak(created) {
        Ok(t) => human_duration(now.duration_since(t).unwrap_or_default()),
        Err(_) => "<unknown>".to_owned(),
    }
}

/// k8s.io/apimachinery/pkg/util/duration.HumanDuration.
pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    let (m, h, days) = (s / 60, s / 3600, s / 86_400);
    let years = days / 365;
    if s < 120 {
        format!("{s}s")
    } else if m < 10 {
        match s % 60 {
            0 => format!("{m}m"),
            r => format!("{m}m{r}s"),
        }
    } else if h < 3 {
        format!("{m}m")
    } else if h < 8 {
        match m % 60 {
            0 => format!("{h}h"),
            r => format!("{h}h{r}m"),
        }
    } else if h < 48 {
        format!("{h}h")
    } else if h < 192 {
        match h % 24 {
            0 => format!("{days}d"),
            r => format!("{days}d{r}h"),
        }
    } else if years < 2 {
        format!("{days}d")
    } else if years < 8 {
        match days % 365 {
            0 => format!("{years}y"),
            r => format!("{years}y{r}d"),
        }
    } else {
        format!("{years}y")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations_match_kubernetes() {
        let cases = [
            (5, "5s"),
            (119, "119s"),
            (125, "2m5s"),
            (600, "10m"),
            (3 * 3600 + 60, "3h1m"),
            (9 * 3600, "9h"),
            (3 * 86_400 + 3600, "3d1h"),
            (30 * 86_400, "30d"),
            (3 * 365 * 86_400, "3y"),
        ];
        for (secs, want) in cases {
            assert_eq!(human_duration(Duration::from_secs(secs)), want, "{secs}");
        }
    }

    #[test]
    fn pod_rows_have_the_printer_columns() {
        let pod = json!({"metadata": {"name": "p", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"containers": [{"name": "a"}, {"name": "b"}], "nodeName": "n"},
            "status": {"phase": "Running", "podIP": "10.0.0.1", "containerStatuses": [
                {"ready": true, "restartCount": 1, "state": {"running": {}}},
                {"ready": false, "restartCount": 2, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}});
        let now = humantime::parse_rfc3339("2026-01-01T00:00:30Z").unwrap();
        let t = build("pods", &[pod], "7", "Metadata", now);
        assert_eq!(
            t["rows"][0]["cells"],
            json!([
                "p",
                "1/2",
                "CrashLoopBackOff",
                "3",
                "30s",
                "10.0.0.1",
                "n",
                "<none>",
                "<none>"
            ])
        );
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
        assert!(wanted(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
        ));
        assert!(!wanted("application/json"));
    }
}
