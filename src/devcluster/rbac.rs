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
//! ABAC, webhook or Node authorizers, escalation checks on writes, and
//! `system:unauthenticated`/anonymous handling beyond impersonation. Role and RoleBinding
//! objects without `metadata.namespace` land in `default`, as with `kubectl apply`.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};
use serde_yaml::Value;

use super::identity::{AUTHENTICATED_GROUP, MASTERS_GROUP, SERVICE_ACCOUNT_PREFIX, UserInfo};

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";
const AUTHENTICATION_GROUP: &str = "authentication.k8s.io";
const AUTHENTICATION_V1: &str = "authentication.k8s.io/v1";
const ANONYMOUS_USER: &str = "system:anonymous";
const UNAUTHENTICATED_GROUP: &str = "system:unauthenticated";
const SERVICE_ACCOUNTS_GROUP: &str = "system:serviceaccounts";
const DEFAULT_NAMESPACE: &str = "default";
const DEMO_RBAC_YAML: &str = include_str!("demo-rbac.yaml");

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

impl Decision {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow)
    }
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
    /// 403 with a Status whose `details.kind`/`details.name` are these (see [`Self::details_group`]).
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

impl ImpersonationError {
    /// `details.group` of the 403 Status: "authentication.k8s.io" for uids and userextras.
    pub fn details_group(&self) -> &'static str {
        match self {
            Self::Forbidden { details_kind, .. }
                if details_kind == "uids" || details_kind == "userextras" =>
            {
                AUTHENTICATION_GROUP
            }
            _ => "",
        }
    }
}

/// A rule of a Role or ClusterRole (`rbacv1.PolicyRule`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PolicyRule {
    #[serde(default, deserialize_with = "nullable")]
    verbs: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    api_groups: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    resources: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    resource_names: Vec<String>,
    #[serde(default, deserialize_with = "nullable", rename = "nonResourceURLs")]
    non_resource_urls: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
struct ObjectMeta {
    #[serde(default, deserialize_with = "nullable")]
    name: String,
    #[serde(default, deserialize_with = "nullable")]
    namespace: String,
}

/// Role or ClusterRole.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RoleObject {
    #[serde(default)]
    metadata: ObjectMeta,
    // `kubectl create clusterrole --aggregation-rule ... -o yaml` writes `rules: null`.
    #[serde(default, deserialize_with = "nullable")]
    rules: Vec<PolicyRule>,
    #[serde(default)]
    aggregation_rule: Option<Value>,
}

/// RoleBinding or ClusterRoleBinding.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BindingObject {
    #[serde(default)]
    metadata: ObjectMeta,
    role_ref: RoleRef,
    #[serde(default, deserialize_with = "nullable")]
    subjects: Vec<Subject>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RoleRef {
    #[serde(default)]
    api_group: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Subject {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
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
    /// name -> (rules, has aggregationRule)
    cluster_roles: BTreeMap<String, (Vec<PolicyRule>, bool)>,
    /// namespace -> name -> binding
    role_bindings: BTreeMap<String, BTreeMap<String, Binding>>,
    cluster_role_bindings: BTreeMap<String, Binding>,
}

/// Where in a source an object sits, and what went wrong with it.
struct ObjectError {
    object: String,
    message: String,
}

impl Rbac {
    /// Load RBAC objects from `(source name, YAML text)` pairs. Each text may hold several
    /// `---` documents and `kind: List` (or `RoleList`, ...) with `items`. Objects of other
    /// kinds or API groups are skipped; empty documents too.
    pub fn from_yaml(sources: &[(String, String)]) -> Result<Rbac, RbacError> {
        let mut rbac = Rbac::default();
        for (source_name, text) in sources {
            for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
                let value = Value::deserialize(document).map_err(|e| RbacError::Yaml {
                    source_name: source_name.clone(),
                    message: e.to_string(),
                })?;
                rbac.load_value(value, &format!("document {}", index + 1))
                    .map_err(|e| RbacError::Invalid {
                        source_name: source_name.clone(),
                        object: e.object,
                        message: e.message,
                    })?;
            }
        }
        Ok(rbac)
    }

    /// The built-in demo RBAC, used when devcluster gets no --rbac files.
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

    fn load_value(&mut self, value: Value, place: &str) -> Result<(), ObjectError> {
        if value.is_null() {
            return Ok(());
        }
        let text = |key: &str| value.get(key).and_then(Value::as_str).unwrap_or_default();
        let kind = text("kind").to_owned();
        let api_version = text("apiVersion").to_owned();
        let name = value
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str);
        let object = match name {
            Some(name) => format!("{kind} {name:?} ({place})"),
            None if kind.is_empty() => place.to_owned(),
            None => format!("{kind} ({place})"),
        };
        let fail = |message: String| ObjectError {
            object: object.clone(),
            message,
        };
        if !value.is_mapping() || kind.is_empty() {
            // kubectl refuses such documents too ("Object 'Kind' is missing").
            return Err(fail(
                "not a Kubernetes object: `kind` is missing".to_owned(),
            ));
        }
        if kind.ends_with("List") && (kind == "List" || value.get("items").is_some()) {
            let items = match value.get("items") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Sequence(items)) => items.clone(),
                Some(_) => return Err(fail("`items` must be a list".to_owned())),
            };
            for (index, item) in items.into_iter().enumerate() {
                self.load_value(item, &format!("{place}, item {}", index + 1))?;
            }
            return Ok(());
        }
        if !matches!(
            kind.as_str(),
            "Role" | "ClusterRole" | "RoleBinding" | "ClusterRoleBinding"
        ) {
            return Ok(());
        }
        match api_version.split_once('/') {
            Some((RBAC_GROUP, "v1")) => {}
            Some((RBAC_GROUP, _)) => {
                return Err(fail(format!(
                    "apiVersion {api_version} is not served by Kubernetes >= 1.22; use {RBAC_GROUP}/v1"
                )));
            }
            _ => return Ok(()), // a custom resource that happens to be called Role, ...
        }
        let namespaced = kind == "Role" || kind == "RoleBinding";
        let decode_error = |e: serde_yaml::Error| fail(e.to_string());
        if kind == "Role" || kind == "ClusterRole" {
            let role: RoleObject = serde_yaml::from_value(value.clone()).map_err(decode_error)?;
            validate_meta(&role.metadata)
                .and_then(|()| validate_rules(&role.rules, namespaced))
                .map_err(fail)?;
            let RoleObject {
                metadata,
                rules,
                aggregation_rule,
            } = role;
            if namespaced {
                let namespace = namespace_or_default(metadata.namespace);
                self.roles
                    .entry(namespace)
                    .or_default()
                    .insert(metadata.name, rules);
            } else {
                self.cluster_roles
                    .insert(metadata.name, (rules, aggregation_rule.is_some()));
            }
        } else {
            let binding: BindingObject =
                serde_yaml::from_value(value.clone()).map_err(decode_error)?;
            validate_meta(&binding.metadata)
                .and_then(|()| validate_binding(&binding, namespaced))
                .map_err(fail)?;
            let BindingObject {
                metadata,
                role_ref,
                subjects,
            } = binding;
            let binding = Binding { role_ref, subjects };
            if namespaced {
                let namespace = namespace_or_default(metadata.namespace);
                self.role_bindings
                    .entry(namespace)
                    .or_default()
                    .insert(metadata.name, binding);
            } else {
                self.cluster_role_bindings.insert(metadata.name, binding);
            }
        }
        Ok(())
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

fn namespace_or_default(namespace: String) -> String {
    if namespace.is_empty() {
        DEFAULT_NAMESPACE.to_owned()
    } else {
        namespace
    }
}

fn validate_meta(metadata: &ObjectMeta) -> Result<(), String> {
    if metadata.name.is_empty() {
        return Err("metadata.name: Required value: name or generateName is required".to_owned());
    }
    Ok(())
}

/// `ValidatePolicyRule` of `pkg/apis/rbac/validation/validation.go`.
fn validate_rules(rules: &[PolicyRule], namespaced: bool) -> Result<(), String> {
    for (index, rule) in rules.iter().enumerate() {
        let at = format!("rules[{index}]");
        if rule.verbs.is_empty() {
            return Err(format!(
                "{at}.verbs: Required value: verbs must contain at least one value"
            ));
        }
        if !rule.non_resource_urls.is_empty() {
            if namespaced {
                return Err(format!(
                    "{at}.nonResourceURLs: Invalid value: namespaced rules cannot apply to non-resource URLs"
                ));
            }
            if !rule.api_groups.is_empty()
                || !rule.resources.is_empty()
                || !rule.resource_names.is_empty()
            {
                return Err(format!(
                    "{at}.nonResourceURLs: Invalid value: rules cannot apply to both regular resources and non-resource URLs"
                ));
            }
            continue;
        }
        if rule.api_groups.is_empty() {
            return Err(format!(
                "{at}.apiGroups: Required value: resource rules must supply at least one api group"
            ));
        }
        if rule.resources.is_empty() {
            return Err(format!(
                "{at}.resources: Required value: resource rules must supply at least one resource"
            ));
        }
    }
    Ok(())
}

/// `ValidateRoleBinding`/`ValidateClusterRoleBinding`, after v1 defaulting (which fills
/// in `apiGroup` of User and Group subjects).
fn validate_binding(binding: &BindingObject, namespaced: bool) -> Result<(), String> {
    let role_ref = &binding.role_ref;
    if role_ref.api_group != RBAC_GROUP {
        return Err(format!(
            "roleRef.apiGroup: Unsupported value: {:?}: supported values: {RBAC_GROUP:?}",
            role_ref.api_group
        ));
    }
    match (role_ref.kind.as_str(), namespaced) {
        ("ClusterRole", _) | ("Role", true) => {}
        (kind, _) => return Err(format!("roleRef.kind: Unsupported value: {kind:?}")),
    }
    if role_ref.name.is_empty() {
        return Err("roleRef.name: Required value".to_owned());
    }
    for (index, subject) in binding.subjects.iter().enumerate() {
        let at = format!("subjects[{index}]");
        if subject.name.is_empty() {
            return Err(format!("{at}.name: Required value"));
        }
        match subject.kind.as_str() {
            "ServiceAccount" => {
                if !is_dns1123_subdomain(&subject.name) {
                    return Err(format!(
                        "{at}.name: Invalid value: {:?}: not a valid service account name",
                        subject.name
                    ));
                }
                if !subject.api_group.is_empty() {
                    return Err(format!(
                        "{at}.apiGroup: Unsupported value: {:?}: supported values: \"\"",
                        subject.api_group
                    ));
                }
                if !namespaced && subject.namespace.is_empty() {
                    return Err(format!("{at}.namespace: Required value"));
                }
            }
            "User" | "Group" if subject.api_group.is_empty() || subject.api_group == RBAC_GROUP => {
            }
            "User" | "Group" => {
                return Err(format!(
                    "{at}.apiGroup: Unsupported value: {:?}: supported values: {RBAC_GROUP:?}",
                    subject.api_group
                ));
            }
            kind => {
                return Err(format!(
                    "{at}.kind: Unsupported value: {kind:?}: supported values: \"ServiceAccount\", \"User\", \"Group\""
                ));
            }
        }
    }
    Ok(())
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

/// Treat an explicit YAML `null` like an absent field.
fn nullable<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: pod-reader, namespace: default, labels: {app: x}}
rules: [{apiGroups: [""], resources: [pods], verbs: [get, list, watch]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: alice-reads, namespace: default}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: pod-reader}
subjects: [{kind: User, name: alice, apiGroup: rbac.authorization.k8s.io}, {kind: Group, name: readers}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: pod-exec}
rules: [{apiGroups: [""], resources: [pods/exec], verbs: [create, get]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: bob-exec, namespace: default}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: pod-exec}
subjects: [{kind: User, name: bob}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: node-reader}
rules: [{apiGroups: [""], resources: [nodes], verbs: [get, list]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: ops-nodes}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: node-reader}
subjects: [{kind: Group, name: ops}, {kind: ServiceAccount, namespace: kube-system, name: ctrl}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: everything}
rules: [{apiGroups: ["*"], resources: ["*"], verbs: ["*"]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: dave-sandbox, namespace: sandbox}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: everything}
subjects: [{kind: User, name: dave}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: patterns}
rules:
- {apiGroups: [""], resources: ["pods/*"], verbs: [get]}
- {apiGroups: [""], resources: ["*/exec"], verbs: [create]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: erin-patterns, namespace: default}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: patterns}
subjects: [{kind: User, name: erin}]
---
# No namespace: lands in "default".
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: named-config}
rules: [{apiGroups: [""], resources: [configmaps], resourceNames: [app-config], verbs: [get, update]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: gina-config}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: named-config}
subjects: [{kind: User, name: gina}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: deployer, namespace: apps}
rules: [{apiGroups: [apps], resources: [deployments], verbs: [create, get]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: builder-deploys, namespace: apps}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: deployer}
subjects: [{kind: ServiceAccount, name: builder}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: metrics}
rules: [{nonResourceURLs: [/metrics, "/healthz/*"], verbs: [get]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: monitoring-metrics}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: metrics}
subjects: [{kind: Group, name: monitoring}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: hank-metrics, namespace: default}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: metrics}
subjects: [{kind: User, name: hank}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: ghost, namespace: default}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: ghost}
subjects: [{kind: User, name: ivan}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: ns-reader}
rules: [{apiGroups: [""], resources: [namespaces], verbs: [get, list]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: jack-ns, namespace: default}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: ns-reader}
subjects: [{kind: User, name: jack}]
"#;

    fn load(text: &str) -> Rbac {
        Rbac::from_yaml(&[("test.yaml".to_owned(), text.to_owned())]).unwrap()
    }

    /// `"name"` or `"name|group1,group2"`.
    fn user(spec: &str) -> UserInfo {
        let (name, groups) = spec.split_once('|').unwrap_or((spec, ""));
        let groups: Vec<&str> = groups.split(',').filter(|g| !g.is_empty()).collect();
        UserInfo::new(name, &groups)
    }

    /// `target` is `resource`, `resource/subresource` or a non-resource `/path`.
    fn attrs<'a>(
        user: &'a UserInfo,
        verb: &'a str,
        group: &'a str,
        target: &'a str,
        ns: &'a str,
        name: &'a str,
    ) -> Attributes<'a> {
        let (resource, subresource, path) = match target.strip_prefix('/') {
            Some(_) => ("", "", target),
            None => target
                .split_once('/')
                .map_or((target, "", ""), |(r, s)| (r, s, "")),
        };
        Attributes {
            user,
            verb,
            api_group: group,
            resource,
            subresource,
            namespace: ns,
            name,
            path,
        }
    }

    #[test]
    fn authorization_table() {
        let rbac = load(FIXTURE);
        let sa_builder = "system:serviceaccount:apps:builder";
        #[rustfmt::skip]
        let cases: &[(&str, &str, &str, &str, &str, &str, &str, bool)] = &[
            ("Role via RoleBinding: get in its namespace", "alice", "get", "", "pods", "default", "p", true),
            ("Role via RoleBinding: list", "alice", "list", "", "pods", "default", "", true),
            ("Role stays in its namespace", "alice", "get", "", "pods", "kube-system", "p", false),
            ("Role grants only its verbs", "alice", "create", "", "pods", "default", "", false),
            ("Role never grants cluster scope", "alice", "list", "", "pods", "", "", false),
            ("Role checks the API group", "alice", "get", "apps", "pods", "default", "p", false),
            ("group subject", "zed|readers", "get", "", "pods", "default", "p", true),
            ("pods does not grant pods/log", "alice", "get", "", "pods/log", "default", "p", false),
            ("RoleBinding to ClusterRole: in binding namespace", "bob", "create", "", "pods/exec", "default", "p", true),
            ("RoleBinding to ClusterRole: not elsewhere", "bob", "create", "", "pods/exec", "payments", "p", false),
            ("pods/exec does not grant pods", "bob", "get", "", "pods", "default", "p", false),
            ("ClusterRoleBinding: cluster scope", "zed|ops", "list", "", "nodes", "", "", true),
            ("ClusterRoleBinding: verb not in rule", "zed|ops", "delete", "", "nodes", "", "n1", false),
            ("RoleBinding never grants cluster scope", "jack", "list", "namespaces", "", "", "", false),
            ("RoleBinding never grants cluster-scoped list", "jack", "list", "", "namespaces", "", "", false),
            ("RoleBinding grants own namespace object", "jack", "get", "", "namespaces", "default", "default", true),
            ("* grants all verbs, groups, resources", "dave", "deletecollection", "apps", "deployments", "sandbox", "", true),
            ("* includes subresources", "dave", "create", "", "pods/exec", "sandbox", "p", true),
            ("* only in the binding namespace", "dave", "get", "", "pods", "default", "p", false),
            ("pods/* is no wildcard in Kubernetes", "erin", "get", "", "pods/log", "default", "p", false),
            ("pods/* does not grant pods", "erin", "get", "", "pods", "default", "p", false),
            ("*/exec matches pods/exec", "erin", "create", "", "pods/exec", "default", "p", true),
            ("*/exec matches any resource's exec", "erin", "create", "", "nodes/exec", "default", "n", true),
            ("*/exec does not match pods", "erin", "create", "", "pods", "default", "", false),
            ("*/exec does not match pods/attach", "erin", "create", "", "pods/attach", "default", "p", false),
            ("resourceNames: listed name", "gina", "get", "", "configmaps", "default", "app-config", true),
            ("resourceNames: update listed name", "gina", "update", "", "configmaps", "default", "app-config", true),
            ("resourceNames: other name", "gina", "get", "", "configmaps", "default", "other", false),
            ("resourceNames: list has no name", "gina", "list", "", "configmaps", "default", "", false),
            ("resourceNames: verb not listed", "gina", "delete", "", "configmaps", "default", "app-config", false),
            ("missing namespace means default", "gina", "get", "", "configmaps", "kube-system", "app-config", false),
            ("SA subject without namespace: binding's", sa_builder, "create", "apps", "deployments", "apps", "", true),
            ("SA subject: other namespace's SA", "system:serviceaccount:other:builder", "create", "apps", "deployments", "apps", "", false),
            ("SA subject: plain user of that name", "builder", "create", "apps", "deployments", "apps", "", false),
            ("SA subject with namespace in CRB", "system:serviceaccount:kube-system:ctrl", "get", "", "nodes", "", "n1", true),
            ("system:masters bypasses RBAC", "root|system:masters", "delete", "", "nodes", "", "n1", true),
            ("non-resource exact URL", "zed|monitoring", "get", "", "/metrics", "", "", true),
            ("non-resource prefix URL", "zed|monitoring", "get", "", "/healthz/etcd", "", "", true),
            ("non-resource prefix needs the slash", "zed|monitoring", "get", "", "/healthz", "", "", false),
            ("non-resource verb", "zed|monitoring", "post", "", "/metrics", "", "", false),
            ("non-resource URLs only via CRB", "hank", "get", "", "/metrics", "", "", false),
            ("binding to a missing role", "ivan", "get", "", "pods", "default", "p", false),
            ("authenticated alone grants nothing", "nobody|system:authenticated", "get", "", "pods", "default", "p", false),
        ];
        for &(description, who, verb, group, target, ns, name, allowed) in cases {
            let who = user(who);
            let decision = rbac.authorize(&attrs(&who, verb, group, target, ns, name));
            assert_eq!(
                decision.is_allowed(),
                allowed,
                "{description}: {decision:?}"
            );
        }
    }

    #[test]
    fn deny_reason_names_missing_roles() {
        let rbac = load(FIXTURE);
        let ivan = user("ivan");
        let expected = r#"User "ivan" cannot get resource "pods" in API group "" in the namespace "default": RBAC: role.rbac.authorization.k8s.io "ghost" not found"#;
        let decision = rbac.authorize(&attrs(&ivan, "get", "", "pods", "default", "p"));
        assert_eq!(
            decision,
            Decision::Deny {
                reason: expected.to_owned()
            }
        );
    }

    #[test]
    fn forbidden_message_wording() {
        let (alice, bob, x) = (user("alice"), user("bob"), user("x"));
        #[rustfmt::skip]
        let cases = [
            (attrs(&alice, "create", "", "pods/exec", "default", "p"),
             r#"pods "p" is forbidden: User "alice" cannot create resource "pods/exec" in API group "" in the namespace "default""#),
            (attrs(&alice, "list", "", "pods", "", ""),
             r#"pods is forbidden: User "alice" cannot list resource "pods" in API group "" at the cluster scope"#),
            (attrs(&bob, "get", "apps", "deployments", "payments", "web"),
             r#"deployments.apps "web" is forbidden: User "bob" cannot get resource "deployments" in API group "apps" in the namespace "payments""#),
            (attrs(&x, "get", "", "/metrics", "", ""), r#"forbidden: User "x" cannot get path "/metrics""#),
            (attrs(&x, "get", "", "/a<b>&\"", "", ""), r#"forbidden: User "x" cannot get path "/a&lt;b&gt;&amp;\"""#),
        ];
        for (attrs, expected) in cases {
            assert_eq!(forbidden_message(&attrs), expected);
        }
    }

    const IMPERSONATION_FIXTURE: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: impersonate-some}
rules:
- {apiGroups: [""], resources: [users], verbs: [impersonate], resourceNames: [alice, "system:anonymous"]}
- {apiGroups: [""], resources: [groups], verbs: [impersonate], resourceNames: [dev]}
- {apiGroups: [authentication.k8s.io], resources: [uids], verbs: [impersonate], resourceNames: ["1234"]}
- {apiGroups: [authentication.k8s.io], resources: [userextras/scopes], verbs: [impersonate], resourceNames: [view]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: gw-impersonates}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: impersonate-some}
subjects: [{kind: User, name: gw}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: impersonate-sa, namespace: apps}
rules: [{apiGroups: [""], resources: [serviceaccounts], verbs: [impersonate]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: gw-sa, namespace: apps}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: impersonate-sa}
subjects: [{kind: User, name: gw}]
"#;

    fn request(
        user: &str,
        groups: &[&str],
        uid: &str,
        extra: &[(&str, &str)],
    ) -> ImpersonationRequest {
        let mut req = ImpersonationRequest {
            user: Some(user.to_owned()).filter(|u| !u.is_empty()),
            uid: Some(uid.to_owned()).filter(|u| !u.is_empty()),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            ..ImpersonationRequest::default()
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
        let gw = "gw|system:authenticated";
        let with = |mut info: UserInfo, uid: &str, extra: &[(&str, &str)]| {
            info.uid = Some(uid.to_owned()).filter(|u| !u.is_empty());
            for (key, value) in extra {
                info.extra
                    .entry((*key).to_owned())
                    .or_default()
                    .push((*value).to_owned());
            }
            info
        };
        let denied = |kind: &str, name: &str, message: &str| {
            Err(ImpersonationError::Forbidden {
                message: message.to_owned(),
                details_kind: kind.to_owned(),
                details_name: name.to_owned(),
            })
        };
        let sa = "system:serviceaccount:apps:builder";
        #[rustfmt::skip]
        let cases: Vec<(&str, &str, ImpersonationRequest, Result<UserInfo, ImpersonationError>)> = vec![
            ("no impersonation: caller unchanged", gw, request("", &[], "", &[]), Ok(user(gw))),
            ("allowed user gets system:authenticated", gw, request("alice", &[], "", &[]),
             Ok(user("alice|system:authenticated"))),
            ("denied user", gw, request("bob", &[], "", &[]), denied("users", "bob",
             r#"users "bob" is forbidden: User "gw" cannot impersonate resource "users" in API group "" at the cluster scope"#)),
            ("caller without bindings", "eve", request("alice", &[], "", &[]), Err(ImpersonationError::Forbidden {
             message: r#"users "alice" is forbidden: User "eve" cannot impersonate resource "users" in API group "" at the cluster scope"#.to_owned(),
             details_kind: "users".to_owned(), details_name: "alice".to_owned() })),
            ("service account gets its groups", gw, request(sa, &[], "", &[]),
             Ok(user("system:serviceaccount:apps:builder|system:serviceaccounts,system:serviceaccounts:apps,system:authenticated"))),
            ("service account with groups: only those", gw, request(sa, &["dev"], "", &[]),
             Ok(user("system:serviceaccount:apps:builder|dev,system:authenticated"))),
            ("service account in another namespace", gw, request("system:serviceaccount:other:x", &[], "", &[]), denied("serviceaccounts", "x",
             r#"serviceaccounts "x" is forbidden: User "gw" cannot impersonate resource "serviceaccounts" in API group "" in the namespace "other""#)),
            ("malformed SA name is a plain user", gw, request("system:serviceaccount:Apps:x", &[], "", &[]), denied("users", "system:serviceaccount:Apps:x",
             r#"users "system:serviceaccount:Apps:x" is forbidden: User "gw" cannot impersonate resource "users" in API group "" at the cluster scope"#)),
            ("allowed group", gw, request("alice", &["dev"], "", &[]), Ok(user("alice|dev,system:authenticated"))),
            ("one group denied", gw, request("alice", &["dev", "admin"], "", &[]), denied("groups", "admin",
             r#"groups "admin" is forbidden: User "gw" cannot impersonate resource "groups" in API group "" at the cluster scope"#)),
            ("allowed uid", gw, request("alice", &[], "1234", &[]), Ok(with(user("alice|system:authenticated"), "1234", &[]))),
            ("denied uid", gw, request("alice", &[], "999", &[]), denied("uids", "999",
             r#"uids.authentication.k8s.io "999" is forbidden: User "gw" cannot impersonate resource "uids" in API group "authentication.k8s.io" at the cluster scope"#)),
            ("allowed extra", gw, request("alice", &[], "", &[("scopes", "view")]),
             Ok(with(user("alice|system:authenticated"), "", &[("scopes", "view")]))),
            ("denied extra value", gw, request("alice", &[], "", &[("scopes", "view"), ("scopes", "admin")]), denied("userextras", "admin",
             r#"userextras.authentication.k8s.io "admin" is forbidden: User "gw" cannot impersonate resource "userextras/scopes" in API group "authentication.k8s.io" at the cluster scope"#)),
            ("denied extra key", gw, request("alice", &[], "", &[("team", "view")]), denied("userextras", "view",
             r#"userextras.authentication.k8s.io "view" is forbidden: User "gw" cannot impersonate resource "userextras/team" in API group "authentication.k8s.io" at the cluster scope"#)),
            ("groups without user", gw, request("", &["dev"], "", &[]), Err(ImpersonationError::WithoutUser {
             message: "requested [{Group  dev    }] without impersonating a user".to_owned() })),
            ("uid and extra without user", gw, request("", &[], "1234", &[("scopes", "view")]), Err(ImpersonationError::WithoutUser {
             message: "requested [{UserExtra  view  authentication.k8s.io/v1  scopes} {UID  1234  authentication.k8s.io/v1  }] without impersonating a user".to_owned() })),
            ("anonymous gets system:unauthenticated", gw, request("system:anonymous", &[], "", &[]),
             Ok(user("system:anonymous|system:unauthenticated"))),
            ("masters may impersonate anyone", "root|system:masters", request("bob", &["admin"], "", &[]),
             Ok(user("bob|admin,system:authenticated"))),
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
        let rbac = Rbac::demo();
        assert_eq!(
            rbac.summary(),
            "1 Roles, 3 ClusterRoles, 3 RoleBindings, 2 ClusterRoleBindings"
        );
        let gateway = user(
            "system:serviceaccount:podgate:podgate|system:serviceaccounts,system:serviceaccounts:podgate,system:authenticated",
        );
        let request = request(
            "alice",
            &["jit:oncall:payments"],
            "u-1",
            &[("podgate.io/grant", "g-1")],
        );
        let alice = rbac.impersonate(&gateway, &request).unwrap();
        #[rustfmt::skip]
        let cases = [
            (&gateway, "list", "namespaces", "", "", true),
            (&gateway, "get", "pods", "payments", "p", false),
            (&alice, "create", "pods/exec", "payments", "p", true),
            (&alice, "create", "pods/portforward", "payments", "p", true),
            (&alice, "create", "pods/exec", "checkout", "p", false),
            (&alice, "delete", "pods", "payments", "p", false),
            (&alice, "list", "namespaces", "", "", false),
            (&user("d|jit:debug"), "create", "pods/exec", "checkout", "p", true),
            (&user("d|jit:debug"), "get", "pods", "default", "p", false),
            (&user("r|jit:readonly"), "get", "pods/log", "anywhere", "p", true),
            (&user("r|jit:readonly"), "create", "pods/exec", "payments", "p", false),
        ];
        for (who, verb, target, ns, name, allowed) in cases {
            let decision = rbac.authorize(&attrs(who, verb, "", target, ns, name));
            assert_eq!(
                decision.is_allowed(),
                allowed,
                "{} {verb} {target} in {ns:?}",
                who.username
            );
        }
    }

    #[test]
    fn foreign_kinds_lists_and_empty_documents_load() {
        let text = r#"
# leading comment only
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: podgate, namespace: podgate}
---
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: podgate, namespace: podgate}
spec: {replicas: 1, template: {spec: {containers: [{name: x, image: y}]}}}
---
apiVersion: v1
kind: List
items:
- apiVersion: rbac.authorization.k8s.io/v1
  kind: Role
  metadata: {name: r, namespace: ns1, annotations: {a: b}, creationTimestamp: null}
  rules: [{apiGroups: [""], resources: [secrets], verbs: [get]}]
- apiVersion: rbac.authorization.k8s.io/v1
  kind: RoleBinding
  metadata: {name: rb, namespace: ns1}
  roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: r}
  subjects: null
- apiVersion: example.com/v1
  kind: Role
  metadata: {name: not-rbac}
  spec: {whatever: true}
"#;
        let rbac = load(text);
        assert_eq!(
            rbac.summary(),
            "1 Roles, 0 ClusterRoles, 1 RoleBindings, 0 ClusterRoleBindings"
        );
        let empty = Rbac::from_yaml(&[("empty.yaml".to_owned(), String::new())]).unwrap();
        assert_eq!(
            empty.summary(),
            "0 Roles, 0 ClusterRoles, 0 RoleBindings, 0 ClusterRoleBindings"
        );
    }

    #[test]
    fn malformed_rbac_is_an_error_naming_source_and_object() {
        let rbac_object = |body: &str| format!("apiVersion: rbac.authorization.k8s.io/v1\n{body}");
        #[rustfmt::skip]
        let cases = [
            ("kind: Role\nmetadata: {name: broken}\nrules: 5", r#"Role "broken" (document 1)"#, "invalid type: integer `5`"),
            ("kind: ClusterRole\nmetadata: {name: r}\nrules: [{apiGroups: [''], resources: [pods]}]", r#"ClusterRole "r" (document 1)"#, "rules[0].verbs: Required value"),
            ("kind: Role\nmetadata: {name: r}\nrules: [{nonResourceURLs: [/x], verbs: [get]}]", r#"Role "r" (document 1)"#, "namespaced rules cannot apply to non-resource URLs"),
            ("kind: ClusterRoleBinding\nmetadata: {name: b}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: r}\nsubjects: [{kind: ServiceAccount, name: sa}]",
             r#"ClusterRoleBinding "b" (document 1)"#, "subjects[0].namespace: Required value"),
            ("kind: ClusterRoleBinding\nmetadata: {name: b}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: r}", r#"ClusterRoleBinding "b" (document 1)"#, "roleRef.kind"),
            ("kind: RoleBinding\nmetadata: {name: b}\nsubjects: []", r#"RoleBinding "b" (document 1)"#, "missing field `roleRef`"),
            ("kind: Role\nmetadata: {namespace: x}\nrules: []", "Role (document 1)", "metadata.name: Required value"),
        ];
        for (body, object, message) in cases {
            let result = Rbac::from_yaml(&[("bad.yaml".to_owned(), rbac_object(body))]);
            match result {
                Err(RbacError::Invalid {
                    source_name,
                    object: got_object,
                    message: got_message,
                }) => {
                    assert_eq!(
                        (source_name.as_str(), got_object.as_str()),
                        ("bad.yaml", object)
                    );
                    assert!(
                        got_message.contains(message),
                        "{got_message:?} should contain {message:?}"
                    );
                }
                other => panic!("{body}: expected Invalid, got {other:?}"),
            }
        }
        let v1beta1 =
            "apiVersion: rbac.authorization.k8s.io/v1beta1\nkind: Role\nmetadata: {name: old}\n";
        let error = Rbac::from_yaml(&[("old.yaml".to_owned(), v1beta1.to_owned())]).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with(r#"old.yaml: Role "old" (document 1): apiVersion"#),
            "{error}"
        );
        let syntax =
            Rbac::from_yaml(&[("syntax.yaml".to_owned(), "kind: [Role".to_owned())]).unwrap_err();
        assert!(
            matches!(&syntax, RbacError::Yaml { source_name, .. } if source_name == "syntax.yaml"),
            "{syntax:?}"
        );
        let scalar =
            Rbac::from_yaml(&[("scalar.yaml".to_owned(), "just text".to_owned())]).unwrap_err();
        assert!(
            scalar
                .to_string()
                .contains("scalar.yaml: document 1: not a Kubernetes object"),
            "{scalar}"
        );
    }

    #[test]
    fn go_quote_escapes_like_go() {
        assert_eq!(go_quote("a\"b\\c\n\u{1}é"), r#""a\"b\\c\n\x01é""#);
    }
}
