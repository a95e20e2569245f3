//! The approvals store (`podgate::approval::Approvals`) against the devcluster with its
//! demo RBAC, as the gateway's own ServiceAccount: requests created, read and listed;
//! approved (with and without a `--for` window), denied, cancelled; decided only once,
//! even by two replicas at the same moment; windows that cover exactly the same request
//! until they end; `wait` ending on another replica's decision, on expiry, on cancel and
//! on a vanished request; `sweep`; ConfigMaps that do not decode never being approvals;
//! and every call made as the ServiceAccount itself, never impersonating.

use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, PostParams};
use podgate::approval::{
    ApprovalError, Approvals, Decision, Request, State, Status, Stored, Window, new_id,
};
use podgate::devcluster::GATEWAY_USER;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::support::{DEADLINE, TestCluster};

const NS: &str = "podgate";
const MINUTE: Duration = Duration::from_secs(60);

async fn within<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, f).await.expect("timed out")
}

/// A store as one gateway replica has it: its own client, as the ServiceAccount.
async fn replica(c: &TestCluster) -> Approvals {
    Approvals::new(c.kube_client("gateway").await, NS)
}

/// A request by alice to run `command`, made at `created`, expiring `ttl` later.
fn request(created: SystemTime, ttl: Duration, command: &str) -> Request {
    Request {
        id: new_id(),
        requester: "alice@corp.example".into(),
        principal: "alice".into(),
        serial: 7,
        action: "exec".into(),
        namespace: "payments".into(),
        pod: "payments-api-0".into(),
        container: Some("api".into()),
        command: Some(command.into()),
        reason: Some("INC-1234".into()),
        rule: "prod-db".into(),
        approvers: vec!["jit:leads".into()],
        created,
        expires: created + ttl,
        max_window: 60 * MINUTE,
        gateway: "podgate-0".into(),
        session: "0123456789abcdef0123456789abcdef".into(),
    }
}

fn approve(window: Option<Duration>) -> Decision {
    Decision::Approve {
        by: "bob@corp.example".into(),
        window,
    }
}

fn deny() -> Decision {
    Decision::Deny {
        by: "bob@corp.example".into(),
        reason: "not during the freeze".into(),
    }
}

/// A pending request stored by `store`.
async fn stored(store: &Approvals, r: &Request) -> Stored {
    within(store.create(r)).await.unwrap();
    within(store.get(&r.id)).await.unwrap()
}

fn configmap_events(c: &TestCluster) -> Vec<Value> {
    c.audit_events()
        .into_iter()
        .filter(|e| e["objectRef"]["resource"] == "configmaps")
        .collect()
}

/// Create, get and list as the ServiceAccount; the objects in the cluster are labelled
/// as documented; ids that are absent or not ids are NotFound; an id in use is refused;
/// the Role covers the gateway's namespace only. The audit log shows every call made as
/// the ServiceAccount itself, with no impersonation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_kept_as_the_gateway_itself() {
    let c = TestCluster::start().await;
    let store = replica(&c).await;
    assert_eq!(store.namespace(), NS);
    let now = SystemTime::now();
    let older = request(now - MINUTE, 15 * MINUTE, "psql -c 'select 1'");
    let mut newer = request(now, 15 * MINUTE, "psql -c 'select 2'");
    newer.container = None;
    newer.reason = None;
    // Created newest first, listed oldest first.
    let got_newer = stored(&store, &newer).await;
    let got_older = stored(&store, &older).await;
    assert_eq!(got_older.request, older);
    assert_eq!(got_older.state, State::Pending);
    assert_eq!(got_newer.request, newer);
    let listed = within(store.list()).await.unwrap();
    assert_eq!(listed, [got_older, got_newer]);

    // What an operator sees with kubectl.
    let raw: Api<ConfigMap> = Api::namespaced(c.kube_client("admin").await, NS);
    let cm = within(raw.get(&format!("podgate-approval-{}", older.id)))
        .await
        .unwrap();
    let labels = cm.metadata.labels.unwrap();
    assert_eq!(labels["app.kubernetes.io/managed-by"], "podgate");
    assert_eq!(labels["podgate.dev/approval"], "request");
    assert_eq!(labels["podgate.dev/state"], "pending");
    let data = cm.data.unwrap();
    assert_eq!(data["command"], "psql -c 'select 1'");
    assert_eq!(data["approvers"], r#"["jit:leads"]"#);
    assert_eq!(data["maxWindowSeconds"], "3600");
    assert_eq!(data["state"], "pending");

    for id in [new_id(), "NOT-AN-ID".to_owned(), "../../x".to_owned()] {
        let err = within(store.get(&id)).await.unwrap_err();
        assert!(
            matches!(err, ApprovalError::NotFound(ref i) if *i == id),
            "{err}"
        );
    }
    let err = within(store.create(&older)).await.unwrap_err();
    assert!(
        matches!(err, ApprovalError::Api(ref m) if m.contains("already exists")),
        "{err}"
    );
    let mut bad = request(now, MINUTE, "x");
    bad.id = "Ab".into();
    let err = within(store.create(&bad)).await.unwrap_err();
    assert!(matches!(err, ApprovalError::Invalid(_)), "{err}");

    // The Role is for the gateway's own namespace only.
    let elsewhere = Approvals::new(c.kube_client("gateway").await, "payments");
    let err = within(elsewhere.create(&request(now, MINUTE, "x")))
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(
        message.starts_with(
            "the approvals store (Kubernetes API): creating configmap payments/podgate-approval-"
        ),
        "{message}"
    );
    assert!(
        message.contains("forbidden") && message.contains("(403)"),
        "{message}"
    );
    assert!(!message.contains('\n'), "{message}");

    let events = configmap_events(&c);
    let by_gateway: Vec<&Value> = events
        .iter()
        .filter(|e| e["user"]["username"] == GATEWAY_USER)
        .collect();
    for verb in ["create", "get", "list"] {
        assert!(
            by_gateway.iter().any(|e| e["verb"] == verb
                && e["responseStatus"]["code"]
                    .as_u64()
                    .is_some_and(|c| c < 300)),
            "no successful {verb} by the gateway: {events:?}"
        );
    }
    for e in by_gateway {
        assert!(e.get("impersonatedUser").is_none(), "{e}");
    }
}

/// Approve (without and with a window), deny, cancel; decided requests stay decided;
/// expiry and the rule's longest window are enforced; windows cover exactly the same
/// request until they end, and are stored as ConfigMaps of their own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_windows_and_their_limits() {
    let c = TestCluster::start().await;
    let store = replica(&c).await;
    let t0 = SystemTime::now();
    let at = |minutes: u32| t0 + minutes * MINUTE;
    let r = request(t0, 15 * MINUTE, "psql -c 'select 1'");

    // Approve without a window: no window is made.
    stored(&store, &r).await;
    let s = within(store.decide(&r.id, approve(None), at(1)))
        .await
        .unwrap();
    assert_eq!(
        s.state,
        State::Approved {
            by: "bob@corp.example".into(),
            at: at(1),
            window_until: None
        }
    );
    assert_eq!(within(store.get(&r.id)).await.unwrap(), s);
    let mut again = r.clone();
    again.id = new_id();
    assert_eq!(
        within(store.find_window(&again, at(2))).await.unwrap(),
        None
    );
    // Decided once and for all, whoever tries next.
    for d in [approve(None), deny(), Decision::Cancel] {
        let err = within(store.decide(&r.id, d, at(2))).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("approval request {} is already approved", r.id)
        );
    }

    // Approve for 30 minutes: the window covers the same request, nothing else.
    let w = request(t0, 15 * MINUTE, "psql -c 'select 1'");
    stored(&store, &w).await;
    let err = within(store.decide(&w.id, approve(Some(61 * MINUTE)), at(1)))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "--for 1h 1m is longer than this rule allows (1h)"
    );
    let s = within(store.decide(&w.id, approve(Some(30 * MINUTE)), at(1)))
        .await
        .unwrap();
    let window = Window::of(&s).unwrap();
    assert_eq!(window.until, at(31));
    let same = request(at(5), 15 * MINUTE, "psql -c 'select 1'");
    let other = request(at(5), 15 * MINUTE, "psql -c 'drop table accounts'");
    let found = within(store.find_window(&same, at(5))).await.unwrap();
    assert_eq!(found, Some(window.clone()));
    assert_eq!(
        within(store.find_window(&other, at(5))).await.unwrap(),
        None
    );
    assert_eq!(
        within(store.find_window(&same, at(31))).await.unwrap(),
        None
    );
    let mut bob = same.clone();
    bob.requester = "bob@corp.example".into();
    assert_eq!(within(store.find_window(&bob, at(5))).await.unwrap(), None);
    let raw: Api<ConfigMap> = Api::namespaced(c.kube_client("admin").await, NS);
    let cm = within(raw.get(&format!("podgate-window-{}", w.id)))
        .await
        .unwrap();
    assert_eq!(
        cm.metadata.labels.unwrap()["podgate.dev/approval"],
        "window"
    );

    // Deny and cancel.
    let d = request(t0, 15 * MINUTE, "x");
    stored(&store, &d).await;
    let s = within(store.decide(&d.id, deny(), at(2))).await.unwrap();
    assert_eq!(s.status(at(100)), Status::Denied);
    let err = within(store.decide(&d.id, approve(None), at(3)))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ApprovalError::NotPending { ref status, .. } if status == "denied"),
        "{err}"
    );
    let k = request(t0, 15 * MINUTE, "x");
    stored(&store, &k).await;
    let s = within(store.decide(&k.id, Decision::Cancel, at(2)))
        .await
        .unwrap();
    assert_eq!(s.state, State::Cancelled { at: at(2) });

    // Too late: expired, and stays pending in the store.
    let e = request(t0, 15 * MINUTE, "x");
    stored(&store, &e).await;
    for now in [at(15), at(16)] {
        let err = within(store.decide(&e.id, approve(None), now))
            .await
            .unwrap_err();
        assert!(
            matches!(err, ApprovalError::Expired(ref i) if *i == e.id),
            "{err}"
        );
    }
    let s = within(store.get(&e.id)).await.unwrap();
    assert_eq!(
        (s.state.clone(), s.status(at(16))),
        (State::Pending, Status::Expired)
    );

    let err = within(store.decide(&new_id(), approve(None), at(1)))
        .await
        .unwrap_err();
    assert!(matches!(err, ApprovalError::NotFound(_)), "{err}");

    // Decisions were written as the ServiceAccount, without impersonation.
    let events = configmap_events(&c);
    let updates: Vec<&Value> = events.iter().filter(|e| e["verb"] == "update").collect();
    assert!(!updates.is_empty());
    for e in updates {
        assert_eq!(e["user"]["username"], GATEWAY_USER, "{e}");
        assert!(e.get("impersonatedUser").is_none(), "{e}");
    }
}

/// Two replicas decide the same requests at the same moment: each time exactly one wins
/// and the other is told what the winner decided (the write carries the resourceVersion
/// it was read at, so the loser's write is refused with 409 Conflict).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_decisions_have_exactly_one_winner() {
    let c = TestCluster::start().await;
    let (a, b) = (replica(&c).await, replica(&c).await);
    let now = SystemTime::now();
    for _ in 0..10 {
        let r = request(now, 15 * MINUTE, "x");
        stored(&a, &r).await;
        let (by_a, by_b) = within(async {
            tokio::join!(
                a.decide(&r.id, approve(None), now),
                b.decide(&r.id, deny(), now)
            )
        })
        .await;
        let (winner, loser, lost_to) = match (by_a, by_b) {
            (Ok(s), Err(e)) => (s, e, "approved"),
            (Err(e), Ok(s)) => (s, e, "denied"),
            other => panic!("not exactly one winner: {other:?}"),
        };
        assert!(
            matches!(loser, ApprovalError::NotPending { ref status, .. } if status == lost_to),
            "{loser}"
        );
        assert_eq!(within(a.get(&r.id)).await.unwrap().state, winner.state);
    }
    // The race was real: at least one write was refused for its stale resourceVersion.
    let conflicts = configmap_events(&c)
        .into_iter()
        .filter(|e| e["verb"] == "update" && e["responseStatus"]["code"] == 409)
        .count();
    assert!(conflicts > 0, "no decision ever raced");
}

/// `wait` ends when another replica decides, at expiry (not before), when cancelled
/// (returning the request as last read), and with NotFound when the request vanishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_ends_on_decision_expiry_cancel_and_deletion() {
    let c = TestCluster::start().await;
    let (waiter, approver) = (replica(&c).await, replica(&c).await);
    let every = Duration::from_millis(50);

    let r = request(SystemTime::now(), 15 * MINUTE, "x");
    stored(&waiter, &r).await;
    let waiting = {
        let (w, id) = (waiter.clone(), r.id.clone());
        tokio::spawn(async move { w.wait(&id, every, CancellationToken::new()).await })
    };
    within(approver.decide(&r.id, approve(None), SystemTime::now()))
        .await
        .unwrap();
    let s = within(waiting).await.unwrap().unwrap();
    assert_eq!(s.status(SystemTime::now()), Status::Approved);

    let short = request(SystemTime::now(), Duration::from_millis(700), "x");
    stored(&waiter, &short).await;
    let s = within(waiter.wait(&short.id, every, CancellationToken::new()))
        .await
        .unwrap();
    assert!(SystemTime::now() >= short.expires);
    assert_eq!(
        (s.state.clone(), s.status(SystemTime::now())),
        (State::Pending, Status::Expired)
    );

    let r = request(SystemTime::now(), 15 * MINUTE, "x");
    stored(&waiter, &r).await;
    let cancel = CancellationToken::new();
    let waiting = {
        let (w, id, token) = (waiter.clone(), r.id.clone(), cancel.clone());
        tokio::spawn(async move { w.wait(&id, every, token).await })
    };
    cancel.cancel();
    let s = within(waiting).await.unwrap().unwrap();
    assert_eq!(s.status(SystemTime::now()), Status::Pending);

    let r = request(SystemTime::now(), 15 * MINUTE, "x");
    stored(&waiter, &r).await;
    let waiting = {
        let (w, id) = (waiter.clone(), r.id.clone());
        tokio::spawn(async move { w.wait(&id, every, CancellationToken::new()).await })
    };
    let raw: Api<ConfigMap> = Api::namespaced(c.kube_client("admin").await, NS);
    within(raw.delete(
        &format!("podgate-approval-{}", r.id),
        &DeleteParams::default(),
    ))
    .await
    .unwrap();
    let err = within(waiting).await.unwrap().unwrap_err();
    assert!(
        matches!(err, ApprovalError::NotFound(ref i) if *i == r.id),
        "{err}"
    );
}

/// `sweep` deletes decided requests after the grace period, pending ones after expiry and
/// grace, and windows at their end; it leaves the rest, including objects it cannot read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweep_deletes_what_is_due() {
    let c = TestCluster::start().await;
    let store = replica(&c).await;
    let t0 = SystemTime::now();
    let at = |minutes: u32| t0 + minutes * MINUTE;
    let grace = MINUTE;
    let pending = request(t0, 10 * MINUTE, "x");
    let (approved, denied, cancelled) = (
        request(t0, 10 * MINUTE, "a"),
        request(t0, 10 * MINUTE, "d"),
        request(t0, 10 * MINUTE, "c"),
    );
    let long = request(t0, 10 * MINUTE, "w");
    for r in [&pending, &approved, &denied, &cancelled, &long] {
        stored(&store, r).await;
    }
    for (r, d) in [
        (&approved, approve(Some(2 * MINUTE))),
        (&denied, deny()),
        (&cancelled, Decision::Cancel),
        (&long, approve(Some(30 * MINUTE))),
    ] {
        within(store.decide(&r.id, d, at(1))).await.unwrap();
    }
    // Something with podgate's labels that is not an approval: never swept.
    let raw: Api<ConfigMap> = Api::namespaced(c.kube_client("admin").await, NS);
    let mut junk = ConfigMap::default();
    junk.metadata.name = Some("podgate-approval-zzzzzzzz".into());
    junk.metadata.labels = Some(
        [
            ("app.kubernetes.io/managed-by", "podgate"),
            ("podgate.dev/approval", "request"),
            ("podgate.dev/state", "approved"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .into(),
    );
    junk.data = Some([("id".to_owned(), "zzzzzzzz".to_owned())].into());
    within(raw.create(&PostParams::default(), &junk))
        .await
        .unwrap();
    let err = within(store.get("zzzzzzzz")).await.unwrap_err();
    assert!(
        matches!(err, ApprovalError::Api(ref m) if m.contains("configmap podgate/podgate-approval-zzzzzzzz is not a valid approval request")),
        "{err}"
    );

    let ids = |list: Vec<Stored>| list.into_iter().map(|s| s.request.id).collect::<Vec<_>>();
    // Within the grace period nothing goes.
    assert_eq!(within(store.sweep(at(2), grace)).await.unwrap(), 0);
    // Decided ones and the 2-minute window go; the pending one is not expired yet.
    assert_eq!(within(store.sweep(at(3), grace)).await.unwrap(), 5);
    assert_eq!(
        ids(within(store.list()).await.unwrap()),
        std::slice::from_ref(&pending.id)
    );
    let same_as_long = request(at(3), 10 * MINUTE, "w");
    assert!(
        within(store.find_window(&same_as_long, at(3)))
            .await
            .unwrap()
            .is_some()
    );
    // Past its expiry and grace, the pending one goes; the window at its end.
    assert_eq!(within(store.sweep(at(11), grace)).await.unwrap(), 0);
    assert_eq!(within(store.sweep(at(31), grace)).await.unwrap(), 2);
    assert_eq!(within(store.list()).await.unwrap(), []);
    assert_eq!(within(store.sweep(at(99), grace)).await.unwrap(), 0);
    within(raw.get("podgate-approval-zzzzzzzz")).await.unwrap();
}
