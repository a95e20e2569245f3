//! The approvals store: requests and windows as ConfigMaps in the gateway's own namespace,
//! written with the gateway's own identity (never impersonating), so that every replica
//! behaves as one. What the ConfigMaps hold, and how strictly they are read, is
//! `configmap`'s part.
//!
//! Guarantees: a decision is written with the resourceVersion it was made from, so of two
//! replicas deciding at once exactly one wins and the other is told what was decided. A
//! ConfigMap that does not decode is never an approval: `get` reports it as an `Api`
//! error naming the object; `list`, `find_window` and `sweep` skip it with a warning (and
//! `sweep` leaves it for a person to look at). Every API call is bounded by
//! [`CALL_TIMEOUT`]; `wait` ends at the request's expiry at the latest.
//!
//! Not guaranteed: that a window ConfigMap was made by a gateway. Whoever may create
//! ConfigMaps in the gateway namespace can grant approvals, so that right must stay with
//! the gateway's ServiceAccount (deploy/rbac-approvals.yaml) and cluster administrators.
//! `decide` does not check who decides (`may_decide` is the caller's).

use std::future::Future;
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use tokio_util::sync::CancellationToken;

use super::configmap::{
    request_map, request_name, selector, stored_from, window_from, window_map, window_name,
};
use super::{ApprovalError, Decision, Request, State, Status, Stored, Window, is_id};

/// The bound on any single call to the API server.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Conflicts a decision retries while the request stays pending (someone touched it
/// without deciding it) before giving up.
const MAX_ATTEMPTS: usize = 3;
/// How long `wait` keeps retrying when it has never read the request (so has no expiry
/// to stop at) before reporting the API error.
const UNREAD_LIMIT: Duration = Duration::from_secs(60);
/// The shortest pause between two reads of `wait`, whatever the caller asks.
const MIN_POLL: Duration = Duration::from_millis(10);

/// The shared store of approval requests and windows.
#[derive(Clone)]
pub struct Approvals {
    /// The gateway's own identity: no impersonation, so RBAC for these ConfigMaps is
    /// granted to the gateway alone and no engineer needs any.
    client: Client,
    namespace: String,
}

impl Approvals {
    pub fn new(client: Client, namespace: impl Into<String>) -> Approvals {
        Approvals {
            client,
            namespace: namespace.into(),
        }
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    fn api(&self) -> Api<ConfigMap> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn place(&self, name: &str) -> String {
        format!("configmap {}/{name}", self.namespace)
    }

    /// Store a new pending request. An id in use is an error, never an overwrite.
    pub async fn create(&self, r: &Request) -> Result<(), ApprovalError> {
        if !is_id(&r.id) {
            return Err(ApprovalError::Invalid(format!(
                "{:?} is not a request id",
                r.id
            )));
        }
        if r.requester.is_empty() {
            return Err(ApprovalError::Invalid(format!(
                "request {} has no requester",
                r.id
            )));
        }
        let cm = request_map(r, &State::Pending, None);
        let name = request_name(&r.id);
        bounded(self.api().create(&PostParams::default(), &cm))
            .await
            .map_err(|f| f.error(&format!("creating {}", self.place(&name))))?;
        Ok(())
    }

    /// The request `id`: NotFound if absent (or not an id), `Api` if it does not decode.
    pub async fn get(&self, id: &str) -> Result<Stored, ApprovalError> {
        if !is_id(id) {
            return Err(ApprovalError::NotFound(id.to_owned()));
        }
        let name = request_name(id);
        let cm = match bounded(self.api().get(&name)).await {
            Ok(cm) => cm,
            Err(f) if f.code == Some(404) => return Err(ApprovalError::NotFound(id.to_owned())),
            Err(f) => return Err(f.error(&format!("reading {}", self.place(&name)))),
        };
        stored_from(&cm).map_err(|e| {
            ApprovalError::Api(format!(
                "{} is not a valid approval request: {e}",
                self.place(&name)
            ))
        })
    }

    /// Every request (by label), oldest first; malformed ones are skipped with a warning.
    pub async fn list(&self) -> Result<Vec<Stored>, ApprovalError> {
        let mut out: Vec<Stored> = self
            .list_kind("request")
            .await?
            .iter()
            .filter_map(|cm| self.decoded(cm, stored_from))
            .collect();
        out.sort_by(|a, b| {
            (a.request.created, &a.request.id).cmp(&(b.request.created, &b.request.id))
        });
        Ok(out)
    }

    /// Decide a pending, unexpired request (see [`super::next_state`]), writing with the
    /// resourceVersion it was read at: on a conflict it is read again and reported as
    /// someone else decided it. An approval with a window also stores the [`Window`]; if
    /// that fails the request stays approved (for this run only) and the error says so.
    /// Does NOT check `may_decide` (the caller does).
    pub async fn decide(
        &self,
        id: &str,
        d: Decision,
        now: SystemTime,
    ) -> Result<Stored, ApprovalError> {
        let mut current = self.get(id).await?;
        for _ in 0..MAX_ATTEMPTS {
            let state = super::next_state(&current, &d, now)?;
            let name = request_name(id);
            let cm = request_map(&current.request, &state, Some(&current.resource_version));
            match bounded(self.api().replace(&name, &PostParams::default(), &cm)).await {
                Ok(written) => {
                    let stored = stored_from(&written).map_err(|e| {
                        ApprovalError::Api(format!("{} as written: {e}", self.place(&name)))
                    })?;
                    if let Some(w) = Window::of(&stored) {
                        self.create_window(&w).await.map_err(|e| {
                            ApprovalError::Api(format!(
                                "approval request {id} was approved, but its --for window \
                                 could not be stored ({e})"
                            ))
                        })?;
                    }
                    return Ok(stored);
                }
                Err(f) if f.code == Some(409) => current = self.get(id).await?,
                Err(f) if f.code == Some(404) => {
                    return Err(ApprovalError::NotFound(id.to_owned()));
                }
                Err(f) => return Err(f.error(&format!("updating {}", self.place(&name)))),
            }
        }
        Err(ApprovalError::Api(format!(
            "approval request {id} kept changing while it was being decided; try again"
        )))
    }

    async fn create_window(&self, w: &Window) -> Result<(), ApprovalError> {
        let name = window_name(&w.id);
        bounded(self.api().create(&PostParams::default(), &window_map(w)))
            .await
            .map_err(|f| f.error(&format!("creating {}", self.place(&name))))?;
        Ok(())
    }

    /// Every window that decodes (malformed ones skipped with a warning).
    async fn windows(&self) -> Result<Vec<Window>, ApprovalError> {
        Ok(self
            .list_kind("window")
            .await?
            .iter()
            .filter_map(|cm| self.decoded(cm, window_from))
            .collect())
    }

    /// A live window that covers `r` (same requester, action, target, command; until >
    /// now), if any: the one that lasts longest.
    pub async fn find_window(
        &self,
        r: &Request,
        now: SystemTime,
    ) -> Result<Option<Window>, ApprovalError> {
        Ok(self
            .windows()
            .await?
            .into_iter()
            .filter(|w| w.covers(r, now))
            .max_by_key(|w| w.until))
    }

    /// Wait until the request is decided, cancelled, expired or `cancel` fires, reading it
    /// every `every`. Returns the last read (status Expired when past `expires`; Pending
    /// when cancelled). API errors are retried until expiry, and then give Expired: an
    /// unreadable request is never an approval. A request that disappeared is NotFound.
    pub async fn wait(
        &self,
        id: &str,
        every: Duration,
        cancel: CancellationToken,
    ) -> Result<Stored, ApprovalError> {
        let started = Instant::now();
        let every = every.max(MIN_POLL);
        let mut last: Option<Stored> = None;
        let mut last_error: Option<ApprovalError> = None;
        // The first read is not cut short by `cancel` (it is bounded all the same), so a
        // waiter that gives up at once still learns the request's state.
        let mut read = self.get(id).await;
        loop {
            let now = SystemTime::now();
            match read {
                Ok(s) if s.status(now) != Status::Pending => return Ok(s),
                Ok(s) => last = Some(s),
                Err(e @ ApprovalError::NotFound(_)) => return Err(e),
                Err(e) => {
                    tracing::warn!(id, error = %e, "reading an approval request failed; retrying");
                    match &last {
                        Some(s) if s.status(now) == Status::Expired => return Ok(s.clone()),
                        None if started.elapsed() >= UNREAD_LIMIT => return Err(e),
                        _ => last_error = Some(e),
                    }
                }
            }
            // Read once more at expiry, so a decision made at the last moment is seen and
            // an undecided request ends on time.
            let pause = last.as_ref().map_or(every, |s| {
                let left = s.request.expires.duration_since(now).unwrap_or_default();
                every.min(left)
            });
            tokio::select! {
                biased;
                () = cancel.cancelled() => return stopped(id, last, last_error),
                () = tokio::time::sleep(pause) => {}
            }
            read = tokio::select! {
                biased;
                () = cancel.cancelled() => return stopped(id, last, last_error),
                read = self.get(id) => read,
            };
        }
    }

    /// Delete requests more than `grace` past their expiry, decided or cancelled requests
    /// more than `grace` past their decision, and windows past `until`. Returns how many
    /// were deleted (by this call: one deleted meanwhile by another replica is not
    /// counted). Objects that do not decode are left for a person to look at.
    pub async fn sweep(&self, now: SystemTime, grace: Duration) -> Result<usize, ApprovalError> {
        let mut names: Vec<String> = self
            .list()
            .await?
            .iter()
            .filter(|s| super::sweep_due(s, now, grace))
            .map(|s| request_name(&s.request.id))
            .collect();
        names.extend(
            self.windows()
                .await?
                .iter()
                .filter(|w| now >= w.until)
                .map(|w| window_name(&w.id)),
        );
        let mut deleted = 0;
        for name in names {
            match bounded(self.api().delete(&name, &DeleteParams::default())).await {
                Ok(_) => deleted += 1,
                Err(f) if f.code == Some(404) => {}
                Err(f) => return Err(f.error(&format!("deleting {}", self.place(&name)))),
            }
        }
        Ok(deleted)
    }

    async fn list_kind(&self, kind: &str) -> Result<Vec<ConfigMap>, ApprovalError> {
        let selector = selector(kind);
        let list = bounded(self.api().list(&ListParams::default().labels(&selector)))
            .await
            .map_err(|f| {
                f.error(&format!(
                    "listing configmaps {selector} in {}",
                    self.namespace
                ))
            })?;
        Ok(list.items)
    }

    /// `decode(cm)`, or None with a warning naming the object.
    fn decoded<T>(
        &self,
        cm: &ConfigMap,
        decode: impl Fn(&ConfigMap) -> Result<T, String>,
    ) -> Option<T> {
        decode(cm)
            .inspect_err(|e| {
                let name = cm.metadata.name.as_deref().unwrap_or("");
                tracing::warn!(
                    configmap = %self.place(name),
                    error = %e,
                    "ignoring a malformed approval object"
                );
            })
            .ok()
    }
}

/// What `wait` returns when `cancel` fires: the request as last read, if it ever was.
fn stopped(
    id: &str,
    last: Option<Stored>,
    last_error: Option<ApprovalError>,
) -> Result<Stored, ApprovalError> {
    last.ok_or_else(|| {
        last_error.unwrap_or_else(|| {
            ApprovalError::Api(format!(
                "stopped waiting for approval request {id} before it could be read"
            ))
        })
    })
}

/// A failed API call: the HTTP status when the server answered, and one line of text.
struct Failure {
    code: Option<u16>,
    message: String,
}

impl Failure {
    fn error(self, what: &str) -> ApprovalError {
        ApprovalError::Api(format!("{what}: {}", self.message))
    }
}

/// Run one API call under [`CALL_TIMEOUT`].
async fn bounded<T>(call: impl Future<Output = Result<T, kube::Error>>) -> Result<T, Failure> {
    let one_line = |s: String| s.split_whitespace().collect::<Vec<_>>().join(" ");
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(kube::Error::Api(s))) => Err(Failure {
            code: Some(s.code),
            message: one_line(format!("{} ({})", s.message, s.code)),
        }),
        Ok(Err(e)) => Err(Failure {
            code: None,
            message: one_line(e.to_string()),
        }),
        Err(_) => Err(Failure {
            code: None,
            message: format!("no answer within {}s", CALL_TIMEOUT.as_secs()),
        }),
    }
}
