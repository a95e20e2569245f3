//! Property: the certificate only narrows (DESIGN.md §3). Over the shipped example
//! policies, random certificate scopes and random requests:
//! * whatever `decide_within` allows, the policy alone allows, with the same grant;
//! * a certificate without scope options gets exactly the policy's answer;
//! * adding a scope restriction never turns a refusal into an allowance;
//! * an action or namespace the certificate leaves out is refused, whatever the policy says.

use proptest::prelude::*;

use super::*;
use crate::auth::Scope;

static POLICY: std::sync::LazyLock<Policy> = std::sync::LazyLock::new(load);

fn load() -> Policy {
    let sources: Vec<(String, String)> = [
        ("oncall.yaml", include_str!("../../policy/oncall.yaml")),
        (
            "sre-shell.yaml",
            include_str!("../../policy/sre-shell.yaml"),
        ),
        (
            "port-forward.yaml",
            include_str!("../../policy/port-forward.yaml"),
        ),
    ]
    .iter()
    .map(|(n, t)| (n.to_string(), t.to_string()))
    .collect();
    Policy::parse(&sources).unwrap()
}

const GROUPS: &[&str] = &["oncall-payments", "sre", "payments-devs", "nobody"];
const NAMESPACES: &[&str] = &["payments", "checkout", "kube-system", "default"];
const PODS: &[&str] = &[
    "payments-api-0",
    "payments-worker-0",
    "checkout-web-0",
    "x",
    "",
];
const NAMESPACE_GLOBS: &[&str] = &["payments", "pay*", "checkout", "*", "kube-*"];
const POD_GLOBS: &[&str] = &["payments-*", "*-0", "checkout-web-0", "*", "x"];
const ACTIONS: &[&str] = &["list", "logs", "exec", "shell", "port-forward"];
const COMMANDS: &[&[&str]] = &[
    &["ps", "aux"],
    &["cat", "/var/log/app.log"],
    &["cat", "/var/log/../../etc/shadow"],
    &["sh"],
    &["ls", "-la", "/tmp"],
    &["rm", "-rf", "/"],
    &["df", "-h"],
];

/// A comma list of some of `from`, or no restriction.
fn restriction(from: &'static [&'static str]) -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        proptest::sample::subsequence(from, 1..=from.len()).prop_map(|v| Some(v.join(","))),
    ]
}

#[derive(Debug, Clone)]
struct Request {
    groups: Vec<String>,
    action: Action,
    namespace: &'static str,
    pod: &'static str,
    container: Option<&'static str>,
    argv: Vec<String>,
    port: Option<u16>,
}

fn request() -> impl Strategy<Value = Request> {
    (
        proptest::sample::subsequence(GROUPS, 0..=GROUPS.len()),
        proptest::sample::select(ACTIONS),
        proptest::sample::select(NAMESPACES),
        proptest::sample::select(PODS),
        proptest::option::of(proptest::sample::select(&["api", "worker", "sidecar"][..])),
        proptest::sample::select(COMMANDS),
        proptest::option::of(proptest::sample::select(&[8080u16, 9000, 5432][..])),
    )
        .prop_map(
            |(groups, action, namespace, pod, container, argv, port)| Request {
                groups: groups.iter().map(|g| g.to_string()).collect(),
                action: action.parse().unwrap(),
                namespace,
                pod,
                container,
                argv: argv.iter().map(|a| a.to_string()).collect(),
                port,
            },
        )
}

fn ask(r: &Request) -> Ask<'_> {
    Ask {
        groups: &r.groups,
        action: r.action,
        namespace: r.namespace,
        pod: r.pod,
        container: r.container,
        argv: (r.action == Action::Exec).then_some(r.argv.as_slice()),
        port: (r.action == Action::PortForward).then_some(r.port.unwrap_or(8080)),
    }
}

fn scope(ns: &Option<String>, pods: &Option<String>, actions: &Option<String>) -> Scope {
    Scope::from_cert_values(ns.as_deref(), pods.as_deref(), actions.as_deref()).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn the_certificate_only_narrows(
        r in request(),
        ns in restriction(NAMESPACE_GLOBS),
        pods in restriction(POD_GLOBS),
        actions in restriction(ACTIONS),
        extra_ns in restriction(NAMESPACE_GLOBS),
        extra_actions in restriction(ACTIONS),
    ) {
        let policy = &*POLICY;
        let ask = ask(&r);
        let alone = policy.decide(&ask);
        let within = policy.decide_within(&scope(&ns, &pods, &actions), &ask);
        if let Ok(grant) = &within {
            prop_assert_eq!(&alone, &Decision::Allow(grant.clone()));
        }
        // And it does narrow: an action or (literal) namespace it leaves out is refused.
        let listed = |list: &Option<String>, item: &str| {
            list.as_deref().is_none_or(|l| l.split(',').any(|x| x == item || x.contains('*')))
        };
        if !listed(&actions, r.action.as_str()) || !listed(&ns, r.namespace) {
            prop_assert!(within.is_err(), "scope {:?}/{:?} allowed {:?}", actions, ns, r);
        }
        let unrestricted = policy.decide_within(&scope(&None, &None, &None), &ask);
        prop_assert_eq!(unrestricted.is_ok(), matches!(alone, Decision::Allow(_)));
        // Narrower: a restriction added where there was none.
        let narrower = scope(
            &ns.clone().or(extra_ns),
            &pods,
            &actions.clone().or(extra_actions),
        );
        if policy.decide_within(&narrower, &ask).is_ok() {
            prop_assert!(within.is_ok(), "narrower scope allowed what the wider refused");
        }
    }
}
