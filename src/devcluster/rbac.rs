//! Kubernetes RBAC authorization and impersonation checks for `podgate devcluster`.
//!
//! Loads Role, ClusterRole, RoleBinding and ClusterRoleBinding objects
//! (`rbac.authorization.k8s.io/v1`) from ordinary YAML manifests and answers "may this
//! identity do this?" the way kube-apiserver's RBAC authorizer does
//! (`plugin/pkg/auth/authorizer/rbac/rbac.go`, `pkg/registry/rbac/validation/rule.go`,
//! `pkg/apis/rbac/v1/evaluation_helpers.go`). It also checks `Impersonate-*` requests like
//! k8s.io/apiserver's `WithImpersonation` filter and words 403 messages like
//! `responsewriters.Forbidden`, so that kubectl and kube-rs see what a real cluster says.
//!
//! Guarantees: pure (no I/O, no clock, no globals); deterministic; never panics on input.
//! Objects are validated as the API server would (`pkg/apis/rbac/validation`), so a file
//! that loads here would also be accepted by a real cluster as far as RBAC is concerned.
//!
//! Not done: ClusterRole `aggregationRule` (such roles keep only their literal `rules`),
//! ABAC, Node and webhook authorizers, and privilege-escalation checks on RBAC writes.
//! Like Kubernetes, `resource/*` in a rule is no wildcard (only `*` and `*/subresource`
//! are). Roles and RoleBindings without `metadata.namespace` go to "default", as with
//! `kubectl apply` in a context without a namespace.

use std::collections::BTreeMap;

use serde::Deserialize;

#[path = "rbac_load.rs"]
mod load;

use super::identity::{AUTHENTICATED_GROUP, MASTERS_GROUP, SERVICE_ACCOUNT_PREFIX, UserInfo};

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";
const AUTHENTICATION_GROUP: &str = "authentication.k8s.io";
const AUTHENTICATION_V1: &str = "authentication.k8s.io/v1";
const ANONYMOUS_USER: &str = "system:anonymous";
const UNAUTHENTICATED_GROUP: &str = "system:unauthenticated";
const SERVICE_ACCOUNTS_GROUP: &str = "system:serviceaccounts";
const DEFAULT_NAMESPACE: &str = "default";
pub const DEMO_RBAC_YAML: &str = include_str!("demo-rbac.yaml");

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RbacError {
    #[error("{source_name}: invalid YAML: {message}")]
    Yaml {
        source_name: String,
        message: String,
    },
    #[error("{source_name}: {object}: {message}")]
    Invalid {
        source_name: String,
        object: String,
        message: String,
    },
}

/// Request attributes as the Kubernetes authorizer sees them (`authorizer.Attributes`).
#[derive(Debug, Clone, Copy)]
pub struct Attributes<'a> {
    pub user: &'a UserInfo,
    /// get list watch create update patch delete deletecollection impersonate, ...
    pub verb: &'a str,
    /// "" for the core group.
    pub api_group: &'a str,
    /// "pods", "users", "userextras"; "" marks a non-resource request (then `path` counts).
    pub resource: &'a str,
    /// "exec", "log", the extra key for userextras, or "".
    pub subresource: &'a str,
    /// "" = cluster scope. Note that kube-apiserver sets the namespace of a request for
    /// one namespace object (`/api/v1/namespaces/NAME`) to NAME.
    pub namespace: &'a str,
    /// "" = the collection.
    pub name: &'a str,
    /// Request path, used only for non-resource requests.
    pub path: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// `reason` is the text kube-apiserver puts after `... is forbidden: `: the
    /// [`forbidden_message`] wording, plus `: RBAC: ...` when bindings of the user refer
    /// to roles that do not exist (as `rbac.go` reports them).
    Deny {
        reason: String,
    },
}

/// What `Impersonate-User`, `Impersonate-Uid`, `Impersonate-Group` and
/// `Impersonate-Extra-<key>` headers asked for. Extra keys are already lower-cased and
/// %-decoded, as the API server does with the header names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImpersonationRequest {
    pub user: Option<String>,
    pub uid: Option<String>,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImpersonationError {
    /// Answered with 403; the Status `details` are `kind`, `name` and, for uids and
    /// userextras, group "authentication.k8s.io".
    Forbidden {
        message: String,
        details_kind: String,
        details_name: String,
    },
    /// Groups, uid or extra requested without a user. The message is kube-apiserver's,
    /// including its Go rendering of the requests. Servers before the impersonation
    /// filter moved to its own package answer 500 InternalError, newer ones 400 BadRequest.
    WithoutUser { message: String },
}

/// A rule of a Role or ClusterRole (`rbacv1.PolicyRule`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct PolicyRule {
    verbs: Vec<String>,
    api_groups: Vec<String>,
    resources: Vec<String>,
    resource_names: Vec<String>,
    #[serde(rename = "nonResourceURLs")]
    non_resource_urls: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct RoleRef {
    api_group: String,
    kind: String,
    name: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Subject {
    kind: String,
    name: String,
    namespace: String,
    api_group: String,
}

#[derive(Debug, Clone)]
struct Binding {
    role_ref: RoleRef,
    subjects: Vec<Subject>,
}

/// Loaded RBAC objects. A later object with the same kind, namespace and name replaces
/// an earlier one, as a later `kubectl apply` would.
#[derive(Debug, Clone, Default)]
pub struct Rbac {
    /// namespace -> name -> rules
    roles: BTreeMap<String, BTreeMap<String, Vec<PolicyRule>>>,
    /// name -> (rules, has an aggregationRule)
    cluster_roles: BTreeMap<String, (Vec<PolicyRule>, bool)>,
    /// namespace -> name -> binding
    role_bindings: BTreeMap<String, BTreeMap<String, Binding>>,
    cluster_role_bindings: BTreeMap<String, Binding>,
}

impl Rbac {
    /// Load RBAC objects from `(source name, YAML text)` pairs. Each text may hold several
    /// `---` documents and `kind: List` with `items`. Role, ClusterRole, RoleBinding and
    /// ClusterRoleBinding (`rbac.authorization.k8s.io/v1`) are loaded; other kinds and
    /// empty documents are skipped. Invalid RBAC objects are an error naming source and
    /// object. Roles and RoleBindings without a namespace go to "default".
    pub fn from_yaml(sources: &[(String, String)]) -> Result<Rbac, RbacError> {
        load::from_yaml(sources)
    }

    /// The built-in demo RBAC, used when devcluster gets no --rbac files.
    #[cfg(test)]
    pub fn demo() -> Rbac {
        // A unit test proves the embedded text loads; an empty policy is the safe fallback.
        Rbac::from_yaml(&[("demo-rbac.yaml".to_owned(), DEMO_RBAC_YAML.to_owned())])
            .unwrap_or_default()
    }

    /// Object counts, for a startup log line.
    pub fn summary(&self) -> String {
        let roles: usize = self.roles.values().map(BTreeMap::len).sum();
        let role_bindings: usize = self.role_bindings.values().map(BTreeMap::len).sum();
        let aggregated = self.cluster_roles.values().filter(|(_, agg)| *agg).count();
        let mut text = format!(
            "{roles} Roles, {} ClusterRoles, {role_bindings} RoleBindings, {} ClusterRoleBindings",
            self.cluster_roles.len(),
            self.cluster_role_bindings.len()
        );
        if aggregated > 0 {
            text.push_str(&format!(
                " ({aggregated} ClusterRoles have an aggregationRule, which is not evaluated)"
            ));
        }
        text
    }

    /// Authorize. system:masters members are always allowed: kube-apiserver puts a
    /// privileged-group authorizer in front of RBAC.
    pub fn authorize(&self, attrs: &Attributes<'_>) -> Decision {
        match self.check(attrs) {
            Ok(()) => Decision::Allow,
            Err(rbac_reason) => Decision::Deny {
                reason: forbidden_text(attrs, &rbac_reason),
            },
        }
    }

    /// `Err` carries the RBAC authorizer's own reason: "" or `RBAC: <missing roles>`.
    fn check(&self, attrs: &Attributes<'_>) -> Result<(), String> {
        if attrs.user.in_group(MASTERS_GROUP) {
            return Ok(());
        }
        // Same walk as VisitRulesFor in pkg/registry/rbac/validation/rule.go:
        // ClusterRoleBindings first, then RoleBindings of the request's namespace.
        let mut errors: Vec<String> = Vec::new();
        let cluster = self.cluster_role_bindings.values().map(|b| (b, ""));
        let namespaced = match attrs.namespace {
            "" => None,
            ns => self
                .role_bindings
                .get(ns)
                .map(|bindings| bindings.values().map(move |b| (b, ns))),
        };
        for (binding, namespace) in cluster.chain(namespaced.into_iter().flatten()) {
            if !binding
                .subjects
                .iter()
                .any(|s| subject_applies(s, attrs.user, namespace))
            {
                continue;
            }
            match self.role_ref_rules(&binding.role_ref, namespace) {
                Ok(rules) if rules.iter().any(|rule| rule_allows(attrs, rule)) => return Ok(()),
                Ok(_) => {}
                Err(error) if !errors.contains(&error) => errors.push(error),
                Err(_) => {}
            }
        }
        // utilerrors.NewAggregate: one message alone, several as "[a, b]".
        Err(match errors.as_slice() {
            [] => String::new(),
            [one] => format!("RBAC: {one}"),
            many => format!("RBAC: [{}]", many.join(", ")),
        })
    }

    fn role_ref_rules(&self, role_ref: &RoleRef, namespace: &str) -> Result<&[PolicyRule], String> {
        let found = match role_ref.kind.as_str() {
            "Role" => self
                .roles
                .get(namespace)
                .and_then(|roles| roles.get(&role_ref.name)),
            _ => self
                .cluster_roles
                .get(&role_ref.name)
                .map(|(rules, _)| rules),
        };
        // Worded like the NotFound error of the role lister.
        found.map(Vec::as_slice).ok_or_else(|| {
            format!(
                "{}.{RBAC_GROUP} {} not found",
                role_ref.kind.to_lowercase(),
                go_quote(&role_ref.name)
            )
        })
    }

    /// Check the `Impersonate-*` request of `caller` like k8s.io/apiserver's
    /// WithImpersonation filter (`endpoints/filters/impersonation.go`) and return the
    /// identity to authorize the request as. Every requested item needs verb
    /// `impersonate`; the first one denied is reported.
    pub fn impersonate(
        &self,
        caller: &UserInfo,
        req: &ImpersonationRequest,
    ) -> Result<UserInfo, ImpersonationError> {
        let user = req.user.as_deref().filter(|u| !u.is_empty());
        let uid = req.uid.as_deref().filter(|u| !u.is_empty());
        if user.is_none() && uid.is_none() && req.groups.is_empty() && req.extra.is_empty() {
            return Ok(caller.clone());
        }
        // Requests in the filter's order: user, groups, extras, uid.
        let mut targets: Vec<Target<'_>> = Vec::new();
        if let Some(user) = user {
            targets.push(match split_service_account(user) {
                Some((namespace, name)) => Target::ServiceAccount { namespace, name },
                None => Target::User(user),
            });
        }
        targets.extend(req.groups.iter().map(|g| Target::Group(g)));
        for (key, values) in &req.extra {
            targets.extend(values.iter().map(|value| Target::Extra { key, value }));
        }
        targets.extend(uid.map(Target::Uid));
        let Some(username) = user else {
            let requests: Vec<String> = targets.iter().map(Target::go_object_reference).collect();
            let message = format!(
                "requested [{}] without impersonating a user",
                requests.join(" ")
            );
            return Err(ImpersonationError::WithoutUser { message });
        };

        let groups_specified = !req.groups.is_empty();
        let mut result = UserInfo {
            username: username.to_owned(),
            ..UserInfo::default()
        };
        for target in &targets {
            let attrs = target.attributes(caller);
            if let Err(rbac_reason) = self.check(&attrs) {
                return Err(ImpersonationError::Forbidden {
                    message: status_message(&attrs, &forbidden_text(&attrs, &rbac_reason)),
                    details_kind: attrs.resource.to_owned(),
                    details_name: attrs.name.to_owned(),
                });
            }
            match *target {
                // A service account's groups are a fixed mapping, used unless groups are given.
                Target::ServiceAccount { namespace, .. } if !groups_specified => {
                    result.groups = vec![
                        SERVICE_ACCOUNTS_GROUP.to_owned(),
                        format!("{SERVICE_ACCOUNTS_GROUP}:{namespace}"),
                    ];
                }
                Target::Group(group) => result.groups.push(group.to_owned()),
                Target::Extra { key, value } => result
                    .extra
                    .entry(key.to_owned())
                    .or_default()
                    .push(value.to_owned()),
                Target::Uid(uid) => result.uid = Some(uid.to_owned()),
                Target::ServiceAccount { .. } | Target::User(_) => {}
            }
        }
        let has = |group: &str| result.in_group(group);
        if username != ANONYMOUS_USER {
            if !has(AUTHENTICATED_GROUP) && !has(UNAUTHENTICATED_GROUP) {
                result.groups.push(AUTHENTICATED_GROUP.to_owned());
            }
        } else if !has(UNAUTHENTICATED_GROUP) {
            result.groups.push(UNAUTHENTICATED_GROUP.to_owned());
        }
        Ok(result)
    }
}

/// One thing an impersonation request asks for (an `ObjectReference` in the filter).
enum Target<'a> {
    ServiceAccount { namespace: &'a str, name: &'a str },
    User(&'a str),
    Group(&'a str),
    Extra { key: &'a str, value: &'a str },
    Uid(&'a str),
}

impl<'a> Target<'a> {
    fn attributes(&self, caller: &'a UserInfo) -> Attributes<'a> {
        let (api_group, resource, subresource, namespace, name) = match *self {
            Target::ServiceAccount { namespace, name } => {
                ("", "serviceaccounts", "", namespace, name)
            }
            Target::User(name) => ("", "users", "", "", name),
            Target::Group(name) => ("", "groups", "", "", name),
            Target::Extra { key, value } => (AUTHENTICATION_GROUP, "userextras", key, "", value),
            Target::Uid(uid) => (AUTHENTICATION_GROUP, "uids", "", "", uid),
        };
        Attributes {
            user: caller,
            verb: "impersonate",
            api_group,
            resource,
            subresource,
            namespace,
            name,
            path: "",
        }
    }

    /// Go's `%v` of a `v1.ObjectReference` value: its seven fields (Kind Namespace Name
    /// UID APIVersion ResourceVersion FieldPath) separated by spaces.
    fn go_object_reference(&self) -> String {
        let (kind, namespace, name, api_version, field_path) = match *self {
            Target::ServiceAccount { namespace, name } => {
                ("ServiceAccount", namespace, name, "", "")
            }
            Target::User(name) => ("User", "", name, "", ""),
            Target::Group(name) => ("Group", "", name, "", ""),
            Target::Extra { key, value } => ("UserExtra", "", value, AUTHENTICATION_V1, key),
            Target::Uid(uid) => ("UID", "", uid, AUTHENTICATION_V1, ""),
        };
        format!("{{{kind} {namespace} {name}  {api_version}  {field_path}}}")
    }
}

/// Text of a 403 Status `message` for a denied request, worded exactly like
/// kube-apiserver's (`responsewriters.Forbidden` + `apierrors.NewForbidden`), e.g.
/// `pods "p" is forbidden: User "alice" cannot create resource "pods/exec" in API group "" in the namespace "default"`.
pub fn forbidden_message(attrs: &Attributes<'_>) -> String {
    status_message(attrs, &forbidden_text(attrs, ""))
}

/// The error text after `is forbidden: ` (`responsewriters.forbiddenMessage`, HTML-
/// sanitized as there, plus the authorizer's reason if any).
fn forbidden_text(attrs: &Attributes<'_>, rbac_reason: &str) -> String {
    let user = go_quote(&attrs.user.username);
    let verb = attrs.verb;
    let text = if attrs.resource.is_empty() {
        format!("User {user} cannot {verb} path {}", go_quote(attrs.path))
    } else {
        let resource = match attrs.subresource {
            "" => attrs.resource.to_owned(),
            sub => format!("{}/{sub}", attrs.resource),
        };
        let scope = match attrs.namespace {
            "" => "at the cluster scope".to_owned(),
            ns => format!("in the namespace {}", go_quote(ns)),
        };
        format!(
            "User {user} cannot {verb} resource {} in API group {} {scope}",
            go_quote(&resource),
            go_quote(attrs.api_group)
        )
    };
    let text = text
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    match rbac_reason {
        "" => text,
        reason => format!("{text}: {reason}"),
    }
}

/// `apierrors.NewForbidden(groupResource, name, err).Error()`.
fn status_message(attrs: &Attributes<'_>, text: &str) -> String {
    let qualified = match (attrs.resource, attrs.api_group) {
        ("", "") => return format!("forbidden: {text}"),
        (resource, "") => resource.to_owned(),
        (resource, group) => format!("{resource}.{group}"),
    };
    match attrs.name {
        "" => format!("{qualified} is forbidden: {text}"),
        name => format!("{qualified} {} is forbidden: {text}", go_quote(name)),
    }
}

/// `RuleAllows` of `rbac.go`, with the matchers of `evaluation_helpers.go`.
fn rule_allows(attrs: &Attributes<'_>, rule: &PolicyRule) -> bool {
    let verb_matches = rule.verbs.iter().any(|v| v == "*" || v == attrs.verb);
    if attrs.resource.is_empty() {
        return verb_matches
            && rule
                .non_resource_urls
                .iter()
                .any(|url| non_resource_url_matches(url, attrs.path));
    }
    verb_matches
        && rule
            .api_groups
            .iter()
            .any(|g| g == "*" || g == attrs.api_group)
        && rule
            .resources
            .iter()
            .any(|r| resource_matches(r, attrs.resource, attrs.subresource))
        && (rule.resource_names.is_empty() || rule.resource_names.iter().any(|n| n == attrs.name))
}

/// `*` matches everything, `resource` and `resource/sub` match exactly, and `*/sub` any
/// resource's `sub`. Kubernetes has no `resource/*` pattern, so neither has this.
fn resource_matches(rule_resource: &str, resource: &str, subresource: &str) -> bool {
    if rule_resource == "*" {
        return true;
    }
    if subresource.is_empty() {
        return rule_resource == resource;
    }
    let exact = rule_resource
        .strip_prefix(resource)
        .and_then(|rest| rest.strip_prefix('/'))
        == Some(subresource);
    exact || rule_resource.strip_prefix("*/") == Some(subresource)
}

fn non_resource_url_matches(rule_url: &str, path: &str) -> bool {
    rule_url == "*"
        || rule_url == path
        || (rule_url.ends_with('*') && path.starts_with(rule_url.trim_end_matches('*')))
}

/// `appliesToUser` of `pkg/registry/rbac/validation/rule.go`; `namespace` is the
/// binding's ("" for ClusterRoleBindings), the default of ServiceAccount subjects.
fn subject_applies(subject: &Subject, user: &UserInfo, namespace: &str) -> bool {
    match subject.kind.as_str() {
        "User" => user.username == subject.name,
        "Group" => user.in_group(&subject.name),
        "ServiceAccount" => {
            let namespace = if subject.namespace.is_empty() {
                namespace
            } else {
                &subject.namespace
            };
            !namespace.is_empty()
                && user
                    .username
                    .strip_prefix(SERVICE_ACCOUNT_PREFIX)
                    .and_then(|rest| rest.strip_prefix(namespace))
                    .and_then(|rest| rest.strip_prefix(':'))
                    == Some(subject.name.as_str())
        }
        _ => false,
    }
}

/// `serviceaccount.SplitUsername`: `system:serviceaccount:NS:NAME` with a valid namespace
/// and name; anything else is impersonated as a plain user.
fn split_service_account(username: &str) -> Option<(&str, &str)> {
    let (namespace, name) = username
        .strip_prefix(SERVICE_ACCOUNT_PREFIX)?
        .split_once(':')?;
    (!name.contains(':') && is_dns1123_label(namespace) && is_dns1123_subdomain(name))
        .then_some((namespace, name))
}

fn is_dns1123_label(text: &str) -> bool {
    text.len() <= 63 && is_label_shaped(text)
}

/// Each dot-separated part label-shaped; unlike labels, parts have no length limit.
fn is_dns1123_subdomain(text: &str) -> bool {
    text.len() <= 253 && text.split('.').all(is_label_shaped)
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`
fn is_label_shaped(text: &str) -> bool {
    let alphanumeric = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    text.starts_with(alphanumeric)
        && text.ends_with(alphanumeric)
        && text.chars().all(|c| alphanumeric(c) || c == '-')
}

/// Go's `%q` (strconv.Quote) for the texts that appear in API server messages.
fn go_quote(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for c in text.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\u{7}' => quoted.push_str("\\a"),
            '\u{8}' => quoted.push_str("\\b"),
            '\u{c}' => quoted.push_str("\\f"),
            '\n' => quoted.push_str("\\n"),
            '\r' => quoted.push_str("\\r"),
            '\t' => quoted.push_str("\\t"),
            '\u{b}' => quoted.push_str("\\v"),
            c if u32::from(c) < 0x20 || c == '\u{7f}' => {
                quoted.push_str(&format!("\\x{:02x}", u32::from(c)))
            }
            c if c.is_control() => quoted.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

#[cfg(test)]
#[path = "rbac_tests.rs"]
mod tests;
