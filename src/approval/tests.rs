//! The pure parts of approvals, as tables: ids, who may decide, what a decision makes of a
//! request, windows, expiry, sweeping, and the ConfigMap encoding (round trip, and every
//! way a ConfigMap can fail to be an approval).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::ConfigMap;

use super::configmap::{request_map, stored_from, window_from, window_map};
use super::*;

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
}

fn request() -> Request {
    Request {
        id: "k7dmq2xa".into(),
        requester: "alice@corp.example".into(),
        principal: "alice".into(),
        serial: 42,
        action: "exec".into(),
        namespace: "payments".into(),
        pod: "payments-api-0".into(),
        container: Some("api".into()),
        command: Some("psql -c 'select 1'".into()),
        reason: Some("INC-1234".into()),
        rule: "prod-db".into(),
        approvers: vec!["jit:leads".into(), "jit:sre".into()],
        created: at(0),
        expires: at(900),
        max_window: Duration::from_secs(3600),
        gateway: "podgate-0".into(),
        session: "0123456789abcdef0123456789abcdef".into(),
    }
}

fn stored(state: State) -> Stored {
    Stored {
        request: request(),
        state,
        resource_version: "7".into(),
    }
}

fn approved(window_until: Option<SystemTime>) -> State {
    State::Approved {
        by: "bob@corp.example".into(),
        at: at(60),
        window_until,
    }
}

fn denied() -> State {
    State::Denied {
        by: "bob@corp.example".into(),
        at: at(60),
        reason: "not during the freeze".into(),
    }
}

#[test]
fn new_ids_are_ids_and_differ() {
    let ids: std::collections::BTreeSet<String> = (0..1000).map(|_| new_id()).collect();
    assert_eq!(ids.len(), 1000);
    assert!(ids.iter().all(|i| is_id(i)), "{ids:?}");
}

#[test]
fn is_id_accepts_only_eight_unambiguous_characters() {
    let cases = [
        ("k7dmq2xa", true),
        ("abcdefgh", true),
        ("23456789", true),
        ("", false),
        ("k7dmq2x", false),
        ("k7dmq2xab", false),
        ("K7DMQ2XA", false),
        ("k7dmq2x0", false),
        ("k7dmq2xo", false),
        ("k7dmq2x1", false),
        ("k7dmq2xl", false),
        ("k7dmq2xi", false),
        ("k7dm/2xa", false),
        ("k7dmq2xé", false),
    ];
    for (s, want) in cases {
        assert_eq!(is_id(s), want, "{s:?}");
    }
}

#[test]
fn may_decide_refuses_the_requester_and_outsiders() {
    let g = |gs: &[&str]| gs.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let mut nobody = request();
    nobody.approvers.clear();
    let r = request();
    let own = "you cannot approve your own request";
    let outsider = "you are not in a group that may decide approval request k7dmq2xa (one of: jit:leads, jit:sre)";
    let unnamed =
        "approval request k7dmq2xa names no approver group (rule prod-db), so nobody can decide it";
    #[rustfmt::skip]
    let cases = [
        ("bob@corp.example", g(&["jit:leads"]), &r, Ok(())),
        ("bob@corp.example", g(&["x", "jit:sre"]), &r, Ok(())),
        ("alice@corp.example", g(&["jit:leads"]), &r, Err(own)),
        ("alice@corp.example", g(&[]), &r, Err(own)),
        ("bob@corp.example", g(&["jit:debug"]), &r, Err(outsider)),
        ("bob@corp.example", g(&[]), &r, Err(outsider)),
        ("bob@corp.example", g(&["JIT:LEADS"]), &r, Err(outsider)),
        ("Alice@CORP.example", g(&["jit:leads"]), &r, Err(own)),
        ("alice@corp.example.", g(&["jit:leads"]), &r, Ok(())),
        ("bob@corp.example", g(&["jit:leads"]), &nobody, Err(unnamed)),
    ];
    for (who, groups, req, want) in cases {
        let want = want.map_err(str::to_owned);
        assert_eq!(may_decide(who, &groups, req), want, "{who} {groups:?}");
    }
}

#[test]
fn status_applies_expiry_to_pending_requests_only() {
    let cases = [
        (State::Pending, at(0), Status::Pending),
        (State::Pending, at(899), Status::Pending),
        (State::Pending, at(900), Status::Expired),
        (State::Pending, at(5000), Status::Expired),
        (approved(None), at(5000), Status::Approved),
        (denied(), at(5000), Status::Denied),
        (State::Cancelled { at: at(5) }, at(1), Status::Cancelled),
    ];
    for (state, now, want) in cases {
        assert_eq!(stored(state.clone()).status(now), want, "{state:?}");
    }
    let names: Vec<String> = [
        Status::Pending,
        Status::Approved,
        Status::Denied,
        Status::Cancelled,
        Status::Expired,
    ]
    .iter()
    .map(Status::to_string)
    .collect();
    assert_eq!(
        names,
        ["pending", "approved", "denied", "cancelled", "expired"]
    );
}

#[test]
fn next_state_decides_only_pending_unexpired_requests() {
    let approve = |w: Option<u64>| Decision::Approve {
        by: "bob@corp.example".into(),
        window: w.map(Duration::from_secs),
    };
    let deny = Decision::Deny {
        by: "bob@corp.example".into(),
        reason: "not during the freeze".into(),
    };
    type Case = (
        &'static str,
        State,
        Decision,
        SystemTime,
        Result<State, &'static str>,
    );
    let cases: Vec<Case> = vec![
        (
            "approve",
            State::Pending,
            approve(None),
            at(60),
            Ok(approved(None)),
        ),
        (
            "approve for the longest allowed",
            State::Pending,
            approve(Some(3600)),
            at(60),
            Ok(approved(Some(at(3660)))),
        ),
        (
            "approve for too long",
            State::Pending,
            approve(Some(3601)),
            at(60),
            Err("--for 1h 1s is longer than this rule allows (1h)"),
        ),
        ("deny", State::Pending, deny.clone(), at(60), Ok(denied())),
        (
            "cancel",
            State::Pending,
            Decision::Cancel,
            at(60),
            Ok(State::Cancelled { at: at(60) }),
        ),
        (
            "approve at expiry",
            State::Pending,
            approve(None),
            at(900),
            Err("approval request k7dmq2xa has expired"),
        ),
        (
            "cancel after expiry",
            State::Pending,
            Decision::Cancel,
            at(901),
            Err("approval request k7dmq2xa has expired"),
        ),
        (
            "approve an approved one",
            approved(None),
            approve(None),
            at(70),
            Err("approval request k7dmq2xa is already approved"),
        ),
        (
            "deny an approved one after expiry",
            approved(None),
            deny.clone(),
            at(7000),
            Err("approval request k7dmq2xa is already approved"),
        ),
        (
            "approve a denied one",
            denied(),
            approve(None),
            at(70),
            Err("approval request k7dmq2xa is already denied"),
        ),
        (
            "approve a cancelled one",
            State::Cancelled { at: at(10) },
            approve(None),
            at(70),
            Err("approval request k7dmq2xa is already cancelled"),
        ),
    ];
    for (what, state, decision, now, want) in cases {
        let got = next_state(&stored(state), &decision, now).map_err(|e| e.to_string());
        assert_eq!(got, want.map_err(str::to_owned), "{what}");
    }
}

#[test]
fn a_window_covers_exactly_the_same_request_until_it_ends() {
    let s = stored(approved(Some(at(3660))));
    let w = Window::of(&s).unwrap();
    assert_eq!(w.approved_by, "bob@corp.example");
    assert_eq!(Window::of(&stored(approved(None))), None);
    assert_eq!(Window::of(&stored(denied())), None);

    type Edit = fn(&mut Request);
    let cases: [(&str, Edit, SystemTime, bool); 12] = [
        ("same", |_| {}, at(100), true),
        (
            "other session and serial",
            |r| {
                r.session = "f".repeat(32);
                r.serial = 43;
                r.id = "zzzzzzzz".into();
            },
            at(100),
            true,
        ),
        ("just before until", |_| {}, at(3659), true),
        ("at until", |_| {}, at(3660), false),
        (
            "other requester",
            |r| r.requester = "carol@corp.example".into(),
            at(100),
            false,
        ),
        (
            "other action",
            |r| r.action = "shell".into(),
            at(100),
            false,
        ),
        (
            "other namespace",
            |r| r.namespace = "checkout".into(),
            at(100),
            false,
        ),
        (
            "other pod",
            |r| r.pod = "payments-api-1".into(),
            at(100),
            false,
        ),
        ("no container", |r| r.container = None, at(100), false),
        (
            "other command",
            |r| r.command = Some("psql -c 'drop table x'".into()),
            at(100),
            false,
        ),
        ("no command", |r| r.command = None, at(100), false),
        (
            "command with extra space",
            |r| r.command = Some("psql  -c 'select 1'".into()),
            at(100),
            false,
        ),
    ];
    for (what, edit, now, want) in cases {
        let mut r = request();
        edit(&mut r);
        assert_eq!(w.covers(&r, now), want, "{what}");
    }
}

#[test]
fn sweep_is_due_grace_after_expiry_or_decision() {
    let grace = Duration::from_secs(600);
    let cases = [
        (State::Pending, at(1500), false),
        (State::Pending, at(1501), true),
        (approved(Some(at(99_999))), at(660), false),
        (approved(None), at(661), true),
        (denied(), at(661), true),
        (State::Cancelled { at: at(10) }, at(610), false),
        (State::Cancelled { at: at(10) }, at(611), true),
    ];
    for (state, now, want) in cases {
        assert_eq!(
            sweep_due(&stored(state.clone()), now, grace),
            want,
            "{state:?} {now:?}"
        );
    }
    assert!(!sweep_due(
        &stored(State::Pending),
        at(u64::MAX / 4),
        Duration::MAX
    ));
}

/// What a replace sends, as the server would return it (with a resourceVersion).
fn as_stored(r: &Request, state: &State) -> ConfigMap {
    let mut cm = request_map(r, state, None);
    cm.metadata.resource_version = Some("7".into());
    cm
}

#[test]
fn requests_round_trip_through_their_configmap() {
    let mut bare = request();
    bare.container = None;
    bare.command = None;
    bare.reason = None;
    bare.approvers.clear();
    let mut odd = request();
    odd.created = UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
    odd.command = Some(String::new());
    odd.reason = Some("line one\nline \"two\" ✓".into());
    odd.serial = u64::MAX;
    let states = [
        State::Pending,
        approved(None),
        approved(Some(at(3660))),
        denied(),
        State::Denied {
            by: "b".into(),
            at: at(1),
            reason: String::new(),
        },
        State::Cancelled { at: at(5) },
    ];
    for r in [request(), bare, odd] {
        for state in &states {
            let cm = as_stored(&r, state);
            let back = stored_from(&cm).unwrap_or_else(|e| panic!("{state:?}: {e}"));
            assert_eq!(back, stored(state.clone()).with(&r), "{state:?}");
            let labels = cm.metadata.labels.unwrap();
            assert_eq!(labels["podgate.dev/state"], state.name());
            assert_eq!(labels["podgate.dev/approval"], "request");
            assert_eq!(labels["app.kubernetes.io/managed-by"], "podgate");
            assert_eq!(
                cm.metadata.name.unwrap(),
                format!("podgate-approval-{}", r.id)
            );
        }
    }
    // Sub-second windows are stored as whole seconds (never longer).
    let mut r = request();
    r.max_window = Duration::from_millis(1999);
    let back = stored_from(&as_stored(&r, &State::Pending)).unwrap();
    assert_eq!(back.request.max_window, Duration::from_secs(1));
}

impl Stored {
    fn with(mut self, r: &Request) -> Stored {
        self.request = r.clone();
        self
    }
}

type Mangle = fn(&mut ConfigMap);

fn data(cm: &mut ConfigMap) -> &mut std::collections::BTreeMap<String, String> {
    cm.data.as_mut().unwrap()
}

fn label(cm: &mut ConfigMap) -> &mut std::collections::BTreeMap<String, String> {
    cm.metadata.labels.as_mut().unwrap()
}

#[test]
fn a_configmap_that_does_not_decode_is_never_a_request() {
    #[rustfmt::skip]
    let cases: Vec<(&str, State, Mangle, &str)> = vec![
        ("no data", State::Pending, |c| c.data = None, "id: missing"),
        ("missing key", State::Pending, |c| { data(c).remove("expires"); }, "expires: missing"),
        ("unknown key", State::Pending, |c| { data(c).insert("allowAll".into(), "true".into()); }, "unexpected key \"allowAll\""),
        ("decision keys on a pending one", State::Pending, |c| { data(c).insert("decidedBy".into(), "bob".into()); }, "unexpected key \"decidedBy\""),
        ("window on a denied one", denied(), |c| { data(c).insert("windowUntil".into(), "2024-01-01T00:00:00Z".into()); }, "unexpected key \"windowUntil\""),
        ("approved without approver", approved(None), |c| { data(c).remove("decidedBy"); }, "decidedBy: missing"),
        ("approved by nobody", approved(None), |c| { data(c).insert("decidedBy".into(), String::new()); }, "decidedBy: empty"),
        ("denied without reason", denied(), |c| { data(c).remove("denyReason"); }, "denyReason: missing"),
        ("cancelled without time", State::Cancelled { at: at(1) }, |c| { data(c).remove("decidedAt"); }, "decidedAt: missing"),
        ("unknown state", State::Pending, |c| { data(c).insert("state".into(), "granted".into()); }, "unknown state \"granted\""),
        ("label disagrees", State::Pending, |c| { label(c).insert("podgate.dev/state".into(), "approved".into()); }, "disagrees"),
        ("no state label", approved(None), |c| { label(c).remove("podgate.dev/state"); }, "disagrees"),
        ("not managed by podgate", State::Pending, |c| { label(c).remove("app.kubernetes.io/managed-by"); }, "not labelled"),
        ("a window's label", State::Pending, |c| { label(c).insert("podgate.dev/approval".into(), "window".into()); }, "not labelled"),
        ("name of another id", State::Pending, |c| c.metadata.name = Some("podgate-approval-zzzzzzzz".into()), "is not the one of the name"),
        ("window name", State::Pending, |c| c.metadata.name = Some("podgate-window-k7dmq2xa".into()), "is not the one of the name"),
        ("bad id", State::Pending, |c| { data(c).insert("id".into(), "K7DMQ2XA".into()); }, "is not a request id"),
        ("bad time", State::Pending, |c| { data(c).insert("expires".into(), "tomorrow".into()); }, "expires: not an RFC 3339 time"),
        ("offset time", State::Pending, |c| { data(c).insert("created".into(), "2024-01-01T00:00:00+02:00".into()); }, "created: not an RFC 3339 time"),
        ("bad serial", State::Pending, |c| { data(c).insert("serial".into(), "-1".into()); }, "serial: not an unsigned integer"),
        ("bad window", State::Pending, |c| { data(c).insert("maxWindowSeconds".into(), "1h".into()); }, "maxWindowSeconds: not an unsigned integer"),
        ("approvers not JSON", State::Pending, |c| { data(c).insert("approvers".into(), "jit:leads".into()); }, "approvers: not a JSON list"),
        ("approvers not strings", State::Pending, |c| { data(c).insert("approvers".into(), "[\"a\", 1]".into()); }, "approvers: not a JSON list"),
        ("empty requester", State::Pending, |c| { data(c).insert("requester".into(), String::new()); }, "requester: empty"),
        ("binary data", State::Pending, |c| c.binary_data = Some([("x".to_owned(), k8s_openapi::ByteString(vec![1]))].into()), "binaryData"),
    ];
    for (what, state, mangle, want) in cases {
        let mut cm = as_stored(&request(), &state);
        assert!(
            stored_from(&cm).is_ok(),
            "{what}: the unmangled one decodes"
        );
        mangle(&mut cm);
        let err = stored_from(&cm).expect_err(what);
        assert!(err.contains(want), "{what}: {err}");
    }
}

#[test]
fn windows_round_trip_and_decode_strictly() {
    let w = Window::of(&stored(approved(Some(at(3660))))).unwrap();
    let mut bare = w.clone();
    bare.container = None;
    bare.command = None;
    for w in [w.clone(), bare] {
        let cm = window_map(&w);
        assert_eq!(window_from(&cm).unwrap(), w);
        assert_eq!(cm.metadata.name.as_deref(), Some("podgate-window-k7dmq2xa"));
        let labels = cm.metadata.labels.unwrap();
        assert_eq!(labels["podgate.dev/approval"], "window");
        assert!(!labels.contains_key("podgate.dev/state"));
    }
    #[rustfmt::skip]
    let cases: Vec<(&str, Mangle, &str)> = vec![
        ("missing until", |c| { data(c).remove("until"); }, "until: missing"),
        ("unknown key", |c| { data(c).insert("anyCommand".into(), "true".into()); }, "unexpected key"),
        ("a request's label", |c| { label(c).insert("podgate.dev/approval".into(), "request".into()); }, "not labelled"),
        ("a state label", |c| { label(c).insert("podgate.dev/state".into(), "approved".into()); }, "has no podgate.dev/state"),
        ("request name", |c| c.metadata.name = Some("podgate-approval-k7dmq2xa".into()), "is not the one of the name"),
        ("empty pod", |c| { data(c).insert("pod".into(), String::new()); }, "pod: empty"),
        ("bad until", |c| { data(c).insert("until".into(), "soon".into()); }, "until: not an RFC 3339 time"),
    ];
    for (what, mangle, want) in cases {
        let mut cm = window_map(&w);
        mangle(&mut cm);
        let err = window_from(&cm).expect_err(what);
        assert!(err.contains(want), "{what}: {err}");
    }
}
