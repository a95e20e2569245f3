//! Table tests of RBAC authorization and impersonation (see rbac.rs).
use super::*;

// One object per document, in flow style to keep the table's world on one screen.
const FIXTURE: &str = r#"
{apiVersion: rbac.authorization.k8s.io/v1, kind: Role, metadata: {name: pod-reader, namespace: default},
 rules: [{apiGroups: [""], resources: [pods], verbs: [get, list, watch]}]}
---
{apiVersion: rbac.authorization.k8s.io/v1, kind: RoleBinding, metadata: {name: alice, namespace: default},
 roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: pod-reader},
 subjects: [{kind: User, name: alice, apiGroup: rbac.authorization.k8s.io}, {kind: Group, name: readers}]}
---
{apiVersion: rbac.authorization.k8s.io/v1, kind: ClusterRole, metadata: {name: pod-exec},
 rules: [{apiGroups: [""], resources: [pods/exec], verbs: [create, get]}]}
---
{apiVersion: rbac.authorization.k8s.io/v1, kind: RoleBinding, metadata: {name: bob, namespace: default},
 roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: pod-exec}, subjects: [{kind: User, name: bob}]}
---
{apiVersion: rbac.authorization.k8s.io/v1, kind: ClusterRole, metadata: {name: node-reader},
 rules: [{apiGroups: [""], resources: [nodes], verbs: [get, list]}]}
---
{apiVersion: rbac.authorization.k8s.io/v1, kind: ClusterRoleBinding, metadata: {name: ops},
 roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: node-reader},
 subjects: [{kind: Group, name: ops}, {kind: ServiceAccount, namespace: kube-system, name: ctrl}]}
---
{apiVersion: rbac.authorization.k8s.io/v1, kind: ClusterRole, metadata: {name: everything},
 rules: [{apiGroups: ["*"], resources: ["*"], verbs: ["*"]}]}
---
{apiVersion: rbac.authorization.k8s.io/v1, kind: RoleBinding, metadata: {name: dave, namespace: sandbox},
 roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: everything}, subjects: [{kind: User, name: dave}]}
---
{apiVersion: rbac.authorization.k8s.io/v1, kind: ClusterRole, metadata: {name: patterns},
 rules: [{apiGroups: [""], resources: ["pods/*"], verbs: [get]}, {apiGroups: [""], resources: ["*/exec"], verbs: [create]}]}
---
{apiVersion: rbac.authorization.k8s.io/v1, kind: RoleBinding, metadata: {name: erin, namespace: default},
 roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: patterns}, subjects: [{kind: User, name: erin}]}
---
# No namespace on these two: they land in "default".
{apiVersion: rbac.authorization.k8s.io/v1, kind: Role, metadata: {name: named-config},
 rules: [{apiGroups: [""], resources: [configmaps], resourceNames: [app-config], verbs: [get, update]}]}
---
{apiVersion: rbac.authorization.k8s.io/v1, kind: RoleBinding, metadata: {name: gina},
 roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: named-config}, subjects: [{kind: User, name: gina}]}
---
{apiVersion: rbac.authorization.k8s.io/v1, kind: Role, metadata: {name: deployer, namespace: apps},
 rules: [{apiGroups: [apps], resources: [deployments], verbs: [create, get]}]}
---
{apiVersion: rbac.authorization.k8s.io/v1, kind: RoleBinding, metadata: {name: builder, namespace: apps},
 roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: deployer}, subjects: [{kind: ServiceAccount, name: builder}]}
---
{apiVersion: rbac.authorization.k8s.io/v1, kind: ClusterRole, metadata: {name: metrics},
 rules: [{nonResourceURLs: [/metrics, "/healthz/*"], verbs: [get]}]}
---
{apiVersion: rbac.authorization.k8s.io/v1, kind: ClusterRoleBinding, metadata: {name: monitoring},
 roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: metrics}, subjects: [{kind: Group, name: monitoring}]}
---
{apiVersion: rbac.authorization.k8s.io/v1, kind: RoleBinding, metadata: {name: hank, namespace: default},
 roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: metrics}, subjects: [{kind: User, name: hank}]}
---
{apiVersion: rbac.authorization.k8s.io/v1, kind: RoleBinding, metadata: {name: ivan, namespace: default},
 roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: ghost}, subjects: [{kind: User, name: ivan}]}
---
{apiVersion: rbac.authorization.k8s.io/v1, kind: ClusterRole, metadata: {name: ns-reader},
 rules: [{apiGroups: [""], resources: [namespaces], verbs: [get, list]}]}
---
{apiVersion: rbac.authorization.k8s.io/v1, kind: RoleBinding, metadata: {name: jack, namespace: default},
 roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: ns-reader}, subjects: [{kind: User, name: jack}]}
"#;

fn load(text: &str) -> Rbac {
    Rbac::from_yaml(&[("test.yaml".to_owned(), text.to_owned())]).unwrap()
}

/// `"name"` or `"name|group1,group2"`.
fn user(spec: &str) -> UserInfo {
    let (name, groups) = spec.split_once('|').unwrap_or((spec, ""));
    UserInfo::new(
        name,
        &groups
            .split(',')
            .filter(|g| !g.is_empty())
            .collect::<Vec<_>>(),
    )
}

/// `target` is `resource`, `resource/subresource` or a non-resource `/path`.
fn attrs<'a>(
    user: &'a UserInfo,
    [verb, api_group, target, namespace, name]: [&'a str; 5],
) -> Attributes<'a> {
    let (resource, subresource, path) = match target.split_once('/') {
        Some(("", _)) => ("", "", target),
        Some((resource, subresource)) => (resource, subresource, ""),
        None => (target, "", ""),
    };
    Attributes {
        user,
        verb,
        api_group,
        resource,
        subresource,
        namespace,
        name,
        path,
    }
}

/// (description, user spec, [verb, api group, target, namespace, name], allowed)
type Case<'a> = (&'a str, &'a str, [&'a str; 5], bool);

#[test]
fn authorization_table() {
    let rbac = load(FIXTURE);
    #[rustfmt::skip]
    let cases: &[Case<'_>] = &[
        ("Role via RoleBinding: get", "alice", ["get", "", "pods", "default", "p"], true),
        ("Role via RoleBinding: list", "alice", ["list", "", "pods", "default", ""], true),
        ("Role stays in its namespace", "alice", ["get", "", "pods", "kube-system", "p"], false),
        ("Role grants only its verbs", "alice", ["create", "", "pods", "default", ""], false),
        ("Role never grants cluster scope", "alice", ["list", "", "pods", "", ""], false),
        ("Role checks the API group", "alice", ["get", "apps", "pods", "default", "p"], false),
        ("Group subject", "zed|readers", ["get", "", "pods", "default", "p"], true),
        ("pods does not grant pods/log", "alice", ["get", "", "pods/log", "default", "p"], false),
        ("RoleBinding to ClusterRole: its ns", "bob", ["create", "", "pods/exec", "default", "p"], true),
        ("RoleBinding to ClusterRole: not others", "bob", ["create", "", "pods/exec", "payments", "p"], false),
        ("pods/exec does not grant pods", "bob", ["get", "", "pods", "default", "p"], false),
        ("ClusterRoleBinding: cluster scope", "zed|ops", ["list", "", "nodes", "", ""], true),
        ("ClusterRoleBinding: verb not in rule", "zed|ops", ["delete", "", "nodes", "", "n1"], false),
        ("RoleBinding never grants cluster scope", "jack", ["list", "", "namespaces", "", ""], false),
        ("RoleBinding grants its namespace object", "jack", ["get", "", "namespaces", "default", "default"], true),
        ("* grants all verbs, groups, resources", "dave", ["deletecollection", "apps", "deployments", "sandbox", ""], true),
        ("* includes subresources", "dave", ["create", "", "pods/exec", "sandbox", "p"], true),
        ("* only in the binding's namespace", "dave", ["get", "", "pods", "default", "p"], false),
        ("pods/* is no pattern in Kubernetes", "erin", ["get", "", "pods/log", "default", "p"], false),
        ("pods/* does not grant pods", "erin", ["get", "", "pods", "default", "p"], false),
        ("*/exec matches pods/exec", "erin", ["create", "", "pods/exec", "default", "p"], true),
        ("*/exec matches any resource's exec", "erin", ["create", "", "nodes/exec", "default", "n"], true),
        ("*/exec does not match pods", "erin", ["create", "", "pods", "default", ""], false),
        ("*/exec does not match pods/attach", "erin", ["create", "", "pods/attach", "default", "p"], false),
        ("resourceNames: listed name", "gina", ["get", "", "configmaps", "default", "app-config"], true),
        ("resourceNames: second verb", "gina", ["update", "", "configmaps", "default", "app-config"], true),
        ("resourceNames: other name", "gina", ["get", "", "configmaps", "default", "other"], false),
        ("resourceNames: list has no name", "gina", ["list", "", "configmaps", "default", ""], false),
        ("resourceNames: verb not listed", "gina", ["delete", "", "configmaps", "default", "app-config"], false),
        ("no metadata.namespace means default", "gina", ["get", "", "configmaps", "kube-system", "app-config"], false),
        ("SA subject takes binding's namespace", "system:serviceaccount:apps:builder", ["create", "apps", "deployments", "apps", ""], true),
        ("SA subject: other namespace's SA", "system:serviceaccount:other:builder", ["create", "apps", "deployments", "apps", ""], false),
        ("SA subject: not a plain user", "builder", ["create", "apps", "deployments", "apps", ""], false),
        ("SA subject with namespace in CRB", "system:serviceaccount:kube-system:ctrl", ["get", "", "nodes", "", "n1"], true),
        ("system:masters bypasses RBAC", "root|system:masters", ["delete", "", "nodes", "", "n1"], true),
        ("non-resource: exact URL", "zed|monitoring", ["get", "", "/metrics", "", ""], true),
        ("non-resource: prefix URL", "zed|monitoring", ["get", "", "/healthz/etcd", "", ""], true),
        ("non-resource: prefix keeps the slash", "zed|monitoring", ["get", "", "/healthz", "", ""], false),
        ("non-resource: verb", "zed|monitoring", ["post", "", "/metrics", "", ""], false),
        ("non-resource: only via CRB", "hank", ["get", "", "/metrics", "", ""], false),
        ("binding to a missing role", "ivan", ["get", "", "pods", "default", "p"], false),
        ("authenticated alone grants nothing", "x|system:authenticated", ["get", "", "pods", "default", "p"], false),
    ];
    for &(description, who, request, allowed) in cases {
        let who = user(who);
        let decision = rbac.authorize(&attrs(&who, request));
        assert_eq!(
            matches!(decision, Decision::Allow),
            allowed,
            "{description}: {decision:?}"
        );
    }
    let ivan = user("ivan");
    let reason = r#"User "ivan" cannot get resource "pods" in API group "" in the namespace "default": RBAC: role.rbac.authorization.k8s.io "ghost" not found"#;
    let decision = rbac.authorize(&attrs(&ivan, ["get", "", "pods", "default", "p"]));
    assert_eq!(
        decision,
        Decision::Deny {
            reason: reason.to_owned()
        }
    );
}

#[test]
fn forbidden_message_wording() {
    let (alice, bob, x) = (user("alice"), user("bob"), user("x"));
    #[rustfmt::skip]
    let cases = [
        (attrs(&alice, ["create", "", "pods/exec", "default", "p"]),
         r#"pods "p" is forbidden: User "alice" cannot create resource "pods/exec" in API group "" in the namespace "default""#),
        (attrs(&alice, ["list", "", "pods", "", ""]),
         r#"pods is forbidden: User "alice" cannot list resource "pods" in API group "" at the cluster scope"#),
        (attrs(&bob, ["get", "apps", "deployments", "payments", "web"]),
         r#"deployments.apps "web" is forbidden: User "bob" cannot get resource "deployments" in API group "apps" in the namespace "payments""#),
        (attrs(&x, ["get", "", "/metrics", "", ""]), r#"forbidden: User "x" cannot get path "/metrics""#),
        (attrs(&x, ["get", "", "/a<b>&\"\n", "", ""]), r#"forbidden: User "x" cannot get path "/a&lt;b&gt;&amp;\"\n""#),
    ];
    for (attrs, expected) in cases {
        assert_eq!(forbidden_message(&attrs), expected);
    }
}

const IMPERSONATION_FIXTURE: &str = r#"
{apiVersion: rbac.authorization.k8s.io/v1, kind: ClusterRole, metadata: {name: impersonate-some}, rules: [
  {apiGroups: [""], resources: [users], verbs: [impersonate], resourceNames: [alice, "system:anonymous"]},
  {apiGroups: [""], resources: [groups], verbs: [impersonate], resourceNames: [dev]},
  {apiGroups: [authentication.k8s.io], resources: [uids], verbs: [impersonate], resourceNames: ["1234"]},
  {apiGroups: [authentication.k8s.io], resources: [userextras/scopes], verbs: [impersonate], resourceNames: [view]}]}
---
{apiVersion: rbac.authorization.k8s.io/v1, kind: ClusterRoleBinding, metadata: {name: gw},
 roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: impersonate-some}, subjects: [{kind: User, name: gw}]}
---
{apiVersion: rbac.authorization.k8s.io/v1, kind: Role, metadata: {name: impersonate-sa, namespace: apps},
 rules: [{apiGroups: [""], resources: [serviceaccounts], verbs: [impersonate]}]}
---
{apiVersion: rbac.authorization.k8s.io/v1, kind: RoleBinding, metadata: {name: gw, namespace: apps},
 roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: impersonate-sa}, subjects: [{kind: User, name: gw}]}
"#;

fn request(user: &str, groups: &[&str], uid: &str, extra: &[(&str, &str)]) -> ImpersonationRequest {
    let mut req = ImpersonationRequest {
        user: Some(user.to_owned()).filter(|u| !u.is_empty()),
        uid: Some(uid.to_owned()).filter(|u| !u.is_empty()),
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        extra: BTreeMap::new(),
    };
    for (key, value) in extra {
        req.extra
            .entry((*key).to_owned())
            .or_default()
            .push((*value).to_owned());
    }
    req
}

#[test]
fn impersonation_table() {
    let rbac = load(IMPERSONATION_FIXTURE);
    let ok = |spec: &str, uid: &str, extra: &[(&str, &str)]| {
        let mut info = user(spec);
        info.uid = Some(uid.to_owned()).filter(|u| !u.is_empty());
        info.extra = request("", &[], "", extra).extra;
        Ok(info)
    };
    let denied = |kind: &str, name: &str, message: &str| {
        let (details_kind, details_name) = (kind.to_owned(), name.to_owned());
        Err(ImpersonationError::Forbidden {
            message: message.to_owned(),
            details_kind,
            details_name,
        })
    };
    let without_user = |message: &str| {
        Err(ImpersonationError::WithoutUser {
            message: message.to_owned(),
        })
    };
    let (gw, sa) = (
        "gw|system:authenticated",
        "system:serviceaccount:apps:builder",
    );
    #[rustfmt::skip]
    let cases: Vec<(&str, &str, ImpersonationRequest, Result<UserInfo, ImpersonationError>)> = vec![
        ("no impersonation: caller unchanged", gw, request("", &[], "", &[]), ok(gw, "", &[])),
        ("allowed user gets system:authenticated", gw, request("alice", &[], "", &[]), ok("alice|system:authenticated", "", &[])),
        ("denied user", gw, request("bob", &[], "", &[]), denied("users", "bob",
         r#"users "bob" is forbidden: User "gw" cannot impersonate resource "users" in API group "" at the cluster scope"#)),
        ("caller without bindings", "eve", request("alice", &[], "", &[]), denied("users", "alice",
         r#"users "alice" is forbidden: User "eve" cannot impersonate resource "users" in API group "" at the cluster scope"#)),
        ("service account gets its groups", gw, request(sa, &[], "", &[]),
         ok(&format!("{sa}|system:serviceaccounts,system:serviceaccounts:apps,system:authenticated"), "", &[])),
        ("service account with groups: only those", gw, request(sa, &["dev"], "", &[]), ok(&format!("{sa}|dev,system:authenticated"), "", &[])),
        ("service account in another namespace", gw, request("system:serviceaccount:other:x", &[], "", &[]), denied("serviceaccounts", "x",
         r#"serviceaccounts "x" is forbidden: User "gw" cannot impersonate resource "serviceaccounts" in API group "" in the namespace "other""#)),
        ("invalid SA namespace: a plain user", gw, request("system:serviceaccount:Apps:x", &[], "", &[]), denied("users", "system:serviceaccount:Apps:x",
         r#"users "system:serviceaccount:Apps:x" is forbidden: User "gw" cannot impersonate resource "users" in API group "" at the cluster scope"#)),
        ("allowed group", gw, request("alice", &["dev"], "", &[]), ok("alice|dev,system:authenticated", "", &[])),
        ("one group denied", gw, request("alice", &["dev", "admin"], "", &[]), denied("groups", "admin",
         r#"groups "admin" is forbidden: User "gw" cannot impersonate resource "groups" in API group "" at the cluster scope"#)),
        ("allowed uid", gw, request("alice", &[], "1234", &[]), ok("alice|system:authenticated", "1234", &[])),
        ("denied uid", gw, request("alice", &[], "999", &[]), denied("uids", "999",
         r#"uids.authentication.k8s.io "999" is forbidden: User "gw" cannot impersonate resource "uids" in API group "authentication.k8s.io" at the cluster scope"#)),
        ("allowed extra", gw, request("alice", &[], "", &[("scopes", "view")]), ok("alice|system:authenticated", "", &[("scopes", "view")])),
        ("denied extra value", gw, request("alice", &[], "", &[("scopes", "view"), ("scopes", "admin")]), denied("userextras", "admin",
         r#"userextras.authentication.k8s.io "admin" is forbidden: User "gw" cannot impersonate resource "userextras/scopes" in API group "authentication.k8s.io" at the cluster scope"#)),
        ("denied extra key", gw, request("alice", &[], "", &[("team", "view")]), denied("userextras", "view",
         r#"userextras.authentication.k8s.io "view" is forbidden: User "gw" cannot impersonate resource "userextras/team" in API group "authentication.k8s.io" at the cluster scope"#)),
        ("groups without user", gw, request("", &["dev"], "", &[]),
         without_user("requested [{Group  dev    }] without impersonating a user")),
        ("uid and extra without user", gw, request("", &[], "1234", &[("scopes", "view")]), without_user(
         "requested [{UserExtra  view  authentication.k8s.io/v1  scopes} {UID  1234  authentication.k8s.io/v1  }] without impersonating a user")),
        ("anonymous gets system:unauthenticated", gw, request("system:anonymous", &[], "", &[]), ok("system:anonymous|system:unauthenticated", "", &[])),
        ("masters may impersonate anyone", "root|system:masters", request("bob", &["admin"], "", &[]), ok("bob|admin,system:authenticated", "", &[])),
    ];
    for (description, caller, req, expected) in cases {
        assert_eq!(
            rbac.impersonate(&user(caller), &req),
            expected,
            "{description}"
        );
    }
}

#[test]
fn demo_rbac_grants_what_it_says() {
    let rbac = Rbac::from_yaml(&[("demo".to_owned(), DEMO_RBAC_YAML.to_owned())]).unwrap();
    assert_eq!(Rbac::demo().summary(), rbac.summary());
    assert_eq!(
        rbac.summary(),
        "2 Roles, 3 ClusterRoles, 4 RoleBindings, 2 ClusterRoleBindings"
    );
    let gateway =
        user("system:serviceaccount:podgate:podgate|system:serviceaccounts,system:authenticated");
    let req = request(
        "alice",
        &["jit:oncall:payments"],
        "u-1",
        &[("podgate.io/grant", "g-1")],
    );
    let alice = rbac.impersonate(&gateway, &req).unwrap();
    let (debug, readonly) = (user("d|jit:debug"), user("r|jit:readonly"));
    #[rustfmt::skip]
    let cases = [
        (&gateway, ["list", "", "namespaces", "", ""], true),
        (&gateway, ["get", "", "pods", "payments", "p"], false),
        // Approval requests: ConfigMaps in its own namespace, nowhere else.
        (&gateway, ["create", "", "configmaps", "podgate", "x"], true),
        (&gateway, ["create", "", "configmaps", "payments", "x"], false),
        (&alice, ["create", "", "pods/exec", "payments", "p"], true),
        (&alice, ["create", "", "pods/portforward", "payments", "p"], true),
        (&alice, ["create", "", "pods/exec", "checkout", "p"], false),
        (&alice, ["delete", "", "pods", "payments", "p"], false),
        (&alice, ["list", "", "namespaces", "", ""], false),
        (&debug, ["create", "", "pods/exec", "checkout", "p"], true),
        (&debug, ["get", "", "pods", "default", "p"], false),
        (&readonly, ["get", "", "pods/log", "anywhere", "p"], true),
        (&readonly, ["create", "", "pods/exec", "payments", "p"], false),
    ];
    for (who, request, allowed) in cases {
        let decision = rbac.authorize(&attrs(who, request));
        assert_eq!(
            matches!(decision, Decision::Allow),
            allowed,
            "{} {request:?}: {decision:?}",
            who.username
        );
    }
}

#[test]
fn go_quote_escapes_like_go() {
    assert_eq!(
        go_quote("a\"b\\c\n\u{1}\u{85}é"),
        r#""a\"b\\c\n\x01\u0085é""#
    );
}
