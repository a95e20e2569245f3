//! Approvals: a request that a policy rule holds until a second person decides it, and the
//! standing windows (`approve ID --for DUR`) that let the same request through again.
//!
//! This module is the pure part: request ids, the request and its state, who may decide,
//! what a decision turns a request into, whether a window covers a request, and when an
//! old record may be swept. Nothing here does I/O; `kube` (re-exported as [`Approvals`])
//! keeps requests and windows in ConfigMaps of the gateway's own namespace (in the form
//! `configmap` defines) so that every replica of the gateway sees, and decides, the same
//! requests.
//!
//! Guarantees: a request is only ever approved from `Pending` and before it expires
//! ([`next_state`]); a window is never longer than the rule's `max_window`; nobody may
//! decide their own request ([`may_decide`]); a window covers a request only when the
//! requester, action, target and command are all equal and it has not ended. Not done
//! here: checking the approver's certificate (the caller passes an authenticated identity
//! and its groups), and clocks: `expires` and `until` are wall-clock times of whichever
//! gateway wrote them, compared with the `now` of whichever gateway reads them, so
//! replicas' clocks must agree to within what the TTLs tolerate.

mod configmap;
mod kube;

use std::fmt;
use std::time::{Duration, SystemTime};

pub use self::kube::Approvals;

/// The characters of an id: lower-case letters and digits without the look-alikes
/// 0/o, 1/l/i, so an id read aloud or copied by hand survives.
const ID_ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
/// 31^8 ≈ 8.5e11 ids: collisions among the few requests alive at once are negligible,
/// and a create that collides fails (the ConfigMap exists) rather than overwriting.
const ID_LEN: usize = 8;

/// A new random request id (8 characters of [`ID_ALPHABET`]).
pub fn new_id() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..ID_LEN)
        .map(|_| {
            let i = rng.random_range(0..ID_ALPHABET.len());
            ID_ALPHABET.get(i).map_or('a', |b| char::from(*b))
        })
        .collect()
}

/// Whether `s` has the form of a request id. Anything else is never looked up, so what a
/// user types cannot name some other object.
pub fn is_id(s: &str) -> bool {
    s.len() == ID_LEN && s.bytes().all(|b| ID_ALPHABET.contains(&b))
}

/// What a waiting session asks to do, and who may allow it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Request {
    pub id: String,
    /// The certificate's key id (the identity), e.g. "alice@corp.example".
    pub requester: String,
    pub principal: String,
    pub serial: u64,
    /// "exec" | "shell" | "logs" | "port-forward".
    pub action: String,
    pub namespace: String,
    pub pod: String,
    pub container: Option<String>,
    /// The exec command line, as matched by policy.
    pub command: Option<String>,
    /// The certificate's reason@podgate.
    pub reason: Option<String>,
    /// The policy rule that asks for approval.
    pub rule: String,
    /// Groups whose members may decide.
    pub approvers: Vec<String>,
    pub created: SystemTime,
    /// `created` + the rule's approval_ttl.
    pub expires: SystemTime,
    /// The longest `approve --for` allowed. Stored in whole seconds: a sub-second part
    /// is dropped, which can only shorten it.
    pub max_window: Duration,
    /// Which gateway process made it (hostname), for messages.
    pub gateway: String,
    /// The waiting session's id (32 hex).
    pub session: String,
}

/// Where a request stands, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Pending,
    Approved {
        by: String,
        at: SystemTime,
        window_until: Option<SystemTime>,
    },
    Denied {
        by: String,
        at: SystemTime,
        reason: String,
    },
    /// The requester gave up (disconnected / Ctrl-C).
    Cancelled {
        at: SystemTime,
    },
}

impl State {
    /// The name used in the `podgate.dev/state` label and the `state` field.
    pub fn name(&self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Approved { .. } => "approved",
            State::Denied { .. } => "denied",
            State::Cancelled { .. } => "cancelled",
        }
    }

    /// When it was decided (or cancelled); `None` while pending.
    pub fn decided_at(&self) -> Option<SystemTime> {
        match self {
            State::Pending => None,
            State::Approved { at, .. } | State::Denied { at, .. } | State::Cancelled { at } => {
                Some(*at)
            }
        }
    }
}

/// A request and its state as read from the store.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    pub request: Request,
    pub state: State,
    /// The ConfigMap's resourceVersion when read: a decision is written only if nobody
    /// changed the request since (optimistic concurrency).
    resource_version: String,
}

impl Stored {
    /// Pending and not past `expires` → Pending; pending at or past `expires` → Expired;
    /// otherwise what was decided (a decision made in time stays valid after `expires`).
    pub fn status(&self, now: SystemTime) -> Status {
        match &self.state {
            State::Pending if now >= self.request.expires => Status::Expired,
            State::Pending => Status::Pending,
            State::Approved { .. } => Status::Approved,
            State::Denied { .. } => Status::Denied,
            State::Cancelled { .. } => Status::Cancelled,
        }
    }
}

/// A request's status at a given time: its state, with expiry applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Pending,
    Approved,
    Denied,
    Cancelled,
    Expired,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Pending => "pending",
            Status::Approved => "approved",
            Status::Denied => "denied",
            Status::Cancelled => "cancelled",
            Status::Expired => "expired",
        })
    }
}

/// What an approver (or, for `Cancel`, the requester) decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Approve {
        by: String,
        window: Option<Duration>,
    },
    Deny {
        by: String,
        reason: String,
    },
    Cancel,
}

/// Whether `approver` (identity = key id) with `groups` may decide `request`: Err(one-line
/// reason) when the approver is the requester, or none of their groups is in
/// `request.approvers`. The requester is recognised regardless of ASCII case (key ids are
/// usually e-mail addresses, where `Alice@` and `alice@` are one person); groups compare
/// exactly, as Kubernetes compares them.
pub fn may_decide(approver: &str, groups: &[String], request: &Request) -> Result<(), String> {
    if approver.eq_ignore_ascii_case(&request.requester) {
        return Err("you cannot approve your own request".to_owned());
    }
    if request.approvers.is_empty() {
        return Err(format!(
            "approval request {} names no approver group (rule {}), so nobody can decide it",
            request.id, request.rule
        ));
    }
    if groups.iter().any(|g| request.approvers.contains(g)) {
        return Ok(());
    }
    Err(format!(
        "you are not in a group that may decide approval request {} (one of: {})",
        request.id,
        request.approvers.join(", ")
    ))
}

/// A standing approval made by `approve ID --for DUR`: the same requester may run exactly
/// the same action, target (namespace, pod, container) and command again until `until`
/// without a new request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// The request id it came from.
    pub id: String,
    pub requester: String,
    pub action: String,
    pub namespace: String,
    pub pod: String,
    pub container: Option<String>,
    pub command: Option<String>,
    pub approved_by: String,
    pub until: SystemTime,
}

impl Window {
    /// Everything equal and `now < until`. The container and command compare as given
    /// (`None` matches only `None`): "any container" is not the same target as one.
    pub fn covers(&self, r: &Request, now: SystemTime) -> bool {
        self.requester == r.requester
            && self.action == r.action
            && self.namespace == r.namespace
            && self.pod == r.pod
            && self.container == r.container
            && self.command == r.command
            && now < self.until
    }

    /// The window an approval with `--for` made, if `stored` is one.
    pub fn of(stored: &Stored) -> Option<Window> {
        let State::Approved {
            by,
            window_until: Some(until),
            ..
        } = &stored.state
        else {
            return None;
        };
        let r = &stored.request;
        Some(Window {
            id: r.id.clone(),
            requester: r.requester.clone(),
            action: r.action.clone(),
            namespace: r.namespace.clone(),
            pod: r.pod.clone(),
            container: r.container.clone(),
            command: r.command.clone(),
            approved_by: by.clone(),
            until: *until,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    #[error("approval request {0} not found")]
    NotFound(String),
    #[error("approval request {id} is already {status}")]
    NotPending { id: String, status: String },
    #[error("approval request {0} has expired")]
    Expired(String),
    #[error("--for {asked} is longer than this rule allows ({max})")]
    WindowTooLong { asked: String, max: String },
    #[error("the approvals store (Kubernetes API): {0}")]
    Api(String),
    /// A request that could not be stored as given (a bad id, no requester): a bug in the
    /// caller, refused before anything is written.
    #[error("invalid approval request: {0}")]
    Invalid(String),
}

/// The state `decision` turns `stored` into at `now`, or why it cannot: only a pending,
/// unexpired request is decided, and a window may not exceed the rule's `max_window`.
/// Does not check who decides ([`may_decide`] does).
pub fn next_state(
    stored: &Stored,
    decision: &Decision,
    now: SystemTime,
) -> Result<State, ApprovalError> {
    let id = &stored.request.id;
    match stored.status(now) {
        Status::Pending => {}
        Status::Expired => return Err(ApprovalError::Expired(id.clone())),
        other => {
            return Err(ApprovalError::NotPending {
                id: id.clone(),
                status: other.to_string(),
            });
        }
    }
    Ok(match decision {
        Decision::Approve { by, window } => {
            let window_until = match window {
                None => None,
                Some(w) => {
                    let max = stored.request.max_window;
                    let too_long = || ApprovalError::WindowTooLong {
                        asked: humantime::format_duration(*w).to_string(),
                        max: humantime::format_duration(max).to_string(),
                    };
                    if *w > max {
                        return Err(too_long());
                    }
                    Some(now.checked_add(*w).ok_or_else(too_long)?)
                }
            };
            State::Approved {
                by: by.clone(),
                at: now,
                window_until,
            }
        }
        Decision::Deny { by, reason } => State::Denied {
            by: by.clone(),
            at: now,
            reason: reason.clone(),
        },
        Decision::Cancel => State::Cancelled { at: now },
    })
}

/// Whether `sweep` deletes a stored request at `now`: pending ones more than `grace` past
/// their expiry, decided or cancelled ones more than `grace` past their decision (so a
/// waiting session on another replica has read the outcome long before it goes).
pub fn sweep_due(stored: &Stored, now: SystemTime, grace: Duration) -> bool {
    let from = stored.state.decided_at().unwrap_or(stored.request.expires);
    from.checked_add(grace).is_some_and(|limit| now > limit)
}

#[cfg(test)]
mod tests;
