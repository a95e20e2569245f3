//! The ConfigMap form of approval requests and windows, and its strict decoding. Pure:
//! no I/O (the store, `kube`, does the API calls).
//!
//! A request is `podgate-approval-<id>`, a window `podgate-window-<id>`, labelled
//! `app.kubernetes.io/managed-by: podgate` and `podgate.dev/approval: request|window`;
//! requests also carry `podgate.dev/state: pending|approved|denied|cancelled`. Their
//! `data` holds one string per field, readable with `kubectl get configmap -o yaml`:
//!
//! ```yaml
//! data:
//!   id: k7dmq2xa
//!   requester: alice@corp.example
//!   principal: alice
//!   serial: "42"
//!   action: exec
//!   namespace: payments
//!   pod: payments-api-0
//!   container: api                          # absent when none (also command, reason)
//!   command: psql -c 'select 1'
//!   reason: INC-1234
//!   rule: prod-db
//!   approvers: '["jit:leads","jit:sre"]'    # a JSON list
//!   created: 2025-05-01T10:00:00.123456789Z # RFC 3339, UTC, nanoseconds
//!   expires: 2025-05-01T10:15:00.123456789Z
//!   maxWindowSeconds: "3600"
//!   gateway: podgate-6f7c9-abcde
//!   session: 0123456789abcdef0123456789abcdef
//!   state: approved                         # as the label; then, by state:
//!   decidedBy: bob@corp.example             # approved, denied
//!   decidedAt: 2025-05-01T10:03:00.000000000Z  # approved, denied, cancelled
//!   windowUntil: 2025-05-01T11:03:00.000000000Z  # approved with --for
//!   denyReason: not during the freeze       # denied
//! ```
//!
//! A window's data is `id requester action namespace pod [container] [command] approvedBy
//! until`, with the same encodings.
//!
//! Guarantees: decoding is strict and fails closed. A missing, unknown or malformed key,
//! a key that does not belong to the state, a label that disagrees with the data, or a
//! name that is not the id's, and the ConfigMap is not an approval. A new key written by
//! a newer gateway is unknown to an older one, which then ignores that object until it is
//! upgraded (fail closed during a rolling upgrade).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{Request, State, Stored, Window, is_id};

const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "podgate");
const KIND_LABEL: &str = "podgate.dev/approval";
const STATE_LABEL: &str = "podgate.dev/state";
const REQUEST_PREFIX: &str = "podgate-approval-";
const WINDOW_PREFIX: &str = "podgate-window-";

/// The label selector of every object of `kind` ("request" or "window").
pub(super) fn selector(kind: &str) -> String {
    format!("{}={},{KIND_LABEL}={kind}", MANAGED_BY.0, MANAGED_BY.1)
}

pub(super) fn request_name(id: &str) -> String {
    format!("{REQUEST_PREFIX}{id}")
}

pub(super) fn window_name(id: &str) -> String {
    format!("{WINDOW_PREFIX}{id}")
}

fn time(t: SystemTime) -> String {
    humantime::format_rfc3339_nanos(t).to_string()
}

fn labels(kind: &str, state: Option<&State>) -> BTreeMap<String, String> {
    let mut l = BTreeMap::from([
        (MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned()),
        (KIND_LABEL.to_owned(), kind.to_owned()),
    ]);
    if let Some(s) = state {
        l.insert(STATE_LABEL.to_owned(), s.name().to_owned());
    }
    l
}

fn config_map(
    name: String,
    labels: BTreeMap<String, String>,
    data: BTreeMap<String, String>,
    resource_version: Option<&str>,
) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name),
            labels: Some(labels),
            resource_version: resource_version.map(str::to_owned),
            ..Default::default()
        },
        data: Some(data),
        ..Default::default()
    }
}

/// The ConfigMap of a request in `state`; with `resource_version`, for a replace.
pub(super) fn request_map(r: &Request, state: &State, resource_version: Option<&str>) -> ConfigMap {
    let mut d = BTreeMap::new();
    let mut put = |k: &str, v: String| {
        d.insert(k.to_owned(), v);
    };
    put("id", r.id.clone());
    put("requester", r.requester.clone());
    put("principal", r.principal.clone());
    put("serial", r.serial.to_string());
    put("action", r.action.clone());
    put("namespace", r.namespace.clone());
    put("pod", r.pod.clone());
    put("rule", r.rule.clone());
    // A list of strings always serialises; the fallback only keeps this total.
    put(
        "approvers",
        serde_json::to_string(&r.approvers).unwrap_or_else(|_| "[]".to_owned()),
    );
    put("created", time(r.created));
    put("expires", time(r.expires));
    put("maxWindowSeconds", r.max_window.as_secs().to_string());
    put("gateway", r.gateway.clone());
    put("session", r.session.clone());
    put("state", state.name().to_owned());
    match state {
        State::Pending => {}
        State::Approved {
            by,
            at,
            window_until,
        } => {
            put("decidedBy", by.clone());
            put("decidedAt", time(*at));
            if let Some(until) = window_until {
                put("windowUntil", time(*until));
            }
        }
        State::Denied { by, at, reason } => {
            put("decidedBy", by.clone());
            put("decidedAt", time(*at));
            put("denyReason", reason.clone());
        }
        State::Cancelled { at } => put("decidedAt", time(*at)),
    }
    for (k, v) in [
        ("container", &r.container),
        ("command", &r.command),
        ("reason", &r.reason),
    ] {
        if let Some(v) = v {
            d.insert(k.to_owned(), v.clone());
        }
    }
    config_map(
        request_name(&r.id),
        labels("request", Some(state)),
        d,
        resource_version,
    )
}

/// Strictly decode a request's ConfigMap (see the module comment).
pub(super) fn stored_from(cm: &ConfigMap) -> Result<Stored, String> {
    let mut f = Fields::of(cm, "request")?;
    let request = Request {
        id: f.id(REQUEST_PREFIX)?,
        requester: f.nonempty("requester")?,
        principal: f.text("principal")?,
        serial: f
            .text("serial")?
            .parse()
            .map_err(|_| "serial: not an unsigned integer".to_owned())?,
        action: f.nonempty("action")?,
        namespace: f.nonempty("namespace")?,
        pod: f.nonempty("pod")?,
        container: f.optional("container"),
        command: f.optional("command"),
        reason: f.optional("reason"),
        rule: f.text("rule")?,
        approvers: serde_json::from_str(&f.text("approvers")?)
            .map_err(|e| format!("approvers: not a JSON list of strings: {e}"))?,
        created: f.time("created")?,
        expires: f.time("expires")?,
        max_window: Duration::from_secs(
            f.text("maxWindowSeconds")?
                .parse()
                .map_err(|_| "maxWindowSeconds: not an unsigned integer".to_owned())?,
        ),
        gateway: f.text("gateway")?,
        session: f.text("session")?,
    };
    let name = f.text("state")?;
    let state = match name.as_str() {
        "pending" => State::Pending,
        "approved" => State::Approved {
            by: f.nonempty("decidedBy")?,
            at: f.time("decidedAt")?,
            window_until: f
                .optional("windowUntil")
                .map(|t| parse_time("windowUntil", &t))
                .transpose()?,
        },
        "denied" => State::Denied {
            by: f.nonempty("decidedBy")?,
            at: f.time("decidedAt")?,
            reason: f.text("denyReason")?,
        },
        "cancelled" => State::Cancelled {
            at: f.time("decidedAt")?,
        },
        other => return Err(format!("state: unknown state {other:?}")),
    };
    if f.label(STATE_LABEL) != Some(state.name()) {
        return Err(format!(
            "label {STATE_LABEL} {:?} disagrees with the state {:?}",
            f.label(STATE_LABEL).unwrap_or(""),
            state.name()
        ));
    }
    f.finish()?;
    Ok(Stored {
        request,
        state,
        resource_version: cm.metadata.resource_version.clone().unwrap_or_default(),
    })
}

/// The ConfigMap of a window.
pub(super) fn window_map(w: &Window) -> ConfigMap {
    let mut d = BTreeMap::from([
        ("id".to_owned(), w.id.clone()),
        ("requester".to_owned(), w.requester.clone()),
        ("action".to_owned(), w.action.clone()),
        ("namespace".to_owned(), w.namespace.clone()),
        ("pod".to_owned(), w.pod.clone()),
        ("approvedBy".to_owned(), w.approved_by.clone()),
        ("until".to_owned(), time(w.until)),
    ]);
    for (k, v) in [("container", &w.container), ("command", &w.command)] {
        if let Some(v) = v {
            d.insert(k.to_owned(), v.clone());
        }
    }
    config_map(window_name(&w.id), labels("window", None), d, None)
}

/// Strictly decode a window's ConfigMap.
pub(super) fn window_from(cm: &ConfigMap) -> Result<Window, String> {
    let mut f = Fields::of(cm, "window")?;
    let w = Window {
        id: f.id(WINDOW_PREFIX)?,
        requester: f.nonempty("requester")?,
        action: f.nonempty("action")?,
        namespace: f.nonempty("namespace")?,
        pod: f.nonempty("pod")?,
        container: f.optional("container"),
        command: f.optional("command"),
        approved_by: f.nonempty("approvedBy")?,
        until: f.time("until")?,
    };
    if f.label(STATE_LABEL).is_some() {
        return Err(format!("a window has no {STATE_LABEL} label"));
    }
    f.finish()?;
    Ok(w)
}

fn parse_time(key: &str, text: &str) -> Result<SystemTime, String> {
    humantime::parse_rfc3339(text).map_err(|e| format!("{key}: not an RFC 3339 time: {e}"))
}

/// A ConfigMap's name, labels and data being decoded: every key read is remembered, so
/// `finish` can refuse the keys nobody read.
struct Fields<'a> {
    name: &'a str,
    labels: &'a BTreeMap<String, String>,
    data: &'a BTreeMap<String, String>,
    read: BTreeSet<&'static str>,
}

impl<'a> Fields<'a> {
    /// Checks the labels every object of `kind` carries.
    fn of(cm: &'a ConfigMap, kind: &str) -> Result<Fields<'a>, String> {
        static EMPTY: BTreeMap<String, String> = BTreeMap::new();
        let f = Fields {
            name: cm.metadata.name.as_deref().unwrap_or(""),
            labels: cm.metadata.labels.as_ref().unwrap_or(&EMPTY),
            data: cm.data.as_ref().unwrap_or(&EMPTY),
            read: BTreeSet::new(),
        };
        if f.label(MANAGED_BY.0) != Some(MANAGED_BY.1) || f.label(KIND_LABEL) != Some(kind) {
            return Err(format!(
                "not labelled {}={} and {KIND_LABEL}={kind}",
                MANAGED_BY.0, MANAGED_BY.1
            ));
        }
        if cm.binary_data.as_ref().is_some_and(|b| !b.is_empty()) {
            return Err("unexpected binaryData".to_owned());
        }
        Ok(f)
    }

    fn label(&self, key: &str) -> Option<&'a str> {
        self.labels.get(key).map(String::as_str)
    }

    fn optional(&mut self, key: &'static str) -> Option<String> {
        self.read.insert(key);
        self.data.get(key).cloned()
    }

    fn text(&mut self, key: &'static str) -> Result<String, String> {
        self.optional(key).ok_or_else(|| format!("{key}: missing"))
    }

    fn nonempty(&mut self, key: &'static str) -> Result<String, String> {
        Some(self.text(key)?)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| format!("{key}: empty"))
    }

    fn time(&mut self, key: &'static str) -> Result<SystemTime, String> {
        parse_time(key, &self.text(key)?)
    }

    /// The `id` key: a request id, and the one the object's name carries.
    fn id(&mut self, prefix: &str) -> Result<String, String> {
        let id = self.text("id")?;
        if !is_id(&id) {
            return Err(format!("id: {id:?} is not a request id"));
        }
        if self.name.strip_prefix(prefix) != Some(id.as_str()) {
            return Err(format!(
                "id {id:?} is not the one of the name {:?}",
                self.name
            ));
        }
        Ok(id)
    }

    /// Refuse keys nobody read: a key this gateway does not know may be a constraint it
    /// would otherwise ignore.
    fn finish(self) -> Result<(), String> {
        match self.data.keys().find(|k| !self.read.contains(k.as_str())) {
            Some(k) => Err(format!("unexpected key {k:?}")),
            None => Ok(()),
        }
    }
}
