//! Loading of RBAC objects for [`super::Rbac`] from YAML manifests.
//!
//! Accepts what `kubectl apply -f` accepts: several `---` documents per text, `kind: List`
//! (and typed lists such as `RoleList`) with `items`, and objects of any other kind, which
//! are skipped. RBAC objects are checked like the API server's validation
//! (`pkg/apis/rbac/validation/validation.go`, after v1 defaulting), so a policy that loads
//! here would be accepted by a real cluster; errors name the source and the object.

use serde::{Deserialize, Deserializer};
use serde_yaml::Value;

use super::{
    Binding, DEFAULT_NAMESPACE, PolicyRule, RBAC_GROUP, Rbac, RbacError, RoleRef, Subject,
    is_dns1123_subdomain,
};

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ObjectMeta {
    name: String,
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

/// Which object of a source went wrong, and how.
struct ObjectError {
    object: String,
    message: String,
}

pub(super) fn from_yaml(sources: &[(String, String)]) -> Result<Rbac, RbacError> {
    let mut rbac = Rbac::default();
    for (source_name, text) in sources {
        for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
            let value = Value::deserialize(document).map_err(|e| RbacError::Yaml {
                source_name: source_name.clone(),
                message: e.to_string(),
            })?;
            let place = format!("document {}", index + 1);
            load_value(&mut rbac, &value, &place).map_err(|e| RbacError::Invalid {
                source_name: source_name.clone(),
                object: e.object,
                message: e.message,
            })?;
        }
    }
    Ok(rbac)
}

fn load_value(rbac: &mut Rbac, value: &Value, place: &str) -> Result<(), ObjectError> {
    if value.is_null() {
        return Ok(()); // an empty document
    }
    let text = |key: &str| value.get(key).and_then(Value::as_str).unwrap_or_default();
    let (kind, api_version) = (text("kind"), text("apiVersion"));
    let name = value.get("metadata").and_then(|m| m.get("name"));
    let object = match name.and_then(Value::as_str) {
        Some(name) => format!("{kind} {name:?} ({place})"),
        None if kind.is_empty() => place.to_owned(),
        None => format!("{kind} ({place})"),
    };
    let fail = |message: String| ObjectError {
        object: object.clone(),
        message,
    };
    if kind.is_empty() {
        // kubectl refuses such documents too ("Object 'Kind' is missing").
        return Err(fail(
            "not a Kubernetes object: `kind` is missing".to_owned(),
        ));
    }
    if kind.ends_with("List") && (kind == "List" || value.get("items").is_some()) {
        let items = match value.get("items") {
            None | Some(Value::Null) => &[],
            Some(Value::Sequence(items)) => items.as_slice(),
            Some(_) => return Err(fail("`items` must be a list".to_owned())),
        };
        for (index, item) in items.iter().enumerate() {
            load_value(rbac, item, &format!("{place}, item {}", index + 1))?;
        }
        return Ok(());
    }
    let (namespaced, is_role) = match kind {
        "Role" => (true, true),
        "ClusterRole" => (false, true),
        "RoleBinding" => (true, false),
        "ClusterRoleBinding" => (false, false),
        _ => return Ok(()), // ServiceAccount, Deployment, ...
    };
    match api_version.split_once('/') {
        Some((RBAC_GROUP, "v1")) => {}
        // v1beta1 and v1alpha1 are no longer served (Kubernetes 1.22); apply would fail.
        Some((RBAC_GROUP, _)) => {
            return Err(fail(format!(
                "apiVersion {api_version} is not served; use {RBAC_GROUP}/v1"
            )));
        }
        _ => return Ok(()), // a custom resource that happens to be called Role
    }
    if is_role {
        let role: RoleObject = RoleObject::deserialize(value).map_err(|e| fail(e.to_string()))?;
        let RoleObject {
            metadata,
            rules,
            aggregation_rule,
        } = role;
        validate_name(&metadata)
            .and_then(|()| validate_rules(&rules, namespaced))
            .map_err(fail)?;
        if namespaced {
            let roles = rbac
                .roles
                .entry(namespace_or_default(metadata.namespace))
                .or_default();
            roles.insert(metadata.name, rules);
        } else {
            let aggregated = aggregation_rule.is_some();
            rbac.cluster_roles
                .insert(metadata.name, (rules, aggregated));
        }
    } else {
        let binding: BindingObject =
            BindingObject::deserialize(value).map_err(|e| fail(e.to_string()))?;
        let BindingObject {
            metadata,
            role_ref,
            subjects,
        } = binding;
        validate_name(&metadata)
            .and_then(|()| validate_binding(&role_ref, &subjects, namespaced))
            .map_err(fail)?;
        let binding = Binding { role_ref, subjects };
        if namespaced {
            let namespace = namespace_or_default(metadata.namespace);
            rbac.role_bindings
                .entry(namespace)
                .or_default()
                .insert(metadata.name, binding);
        } else {
            rbac.cluster_role_bindings.insert(metadata.name, binding);
        }
    }
    Ok(())
}

/// `kubectl apply` puts objects without a namespace into the context's namespace; the
/// devcluster has no context, so that is "default".
fn namespace_or_default(namespace: String) -> String {
    if namespace.is_empty() {
        DEFAULT_NAMESPACE.to_owned()
    } else {
        namespace
    }
}

fn validate_name(metadata: &ObjectMeta) -> Result<(), String> {
    match metadata.name.as_str() {
        "" => Err("metadata.name: Required value: name or generateName is required".to_owned()),
        _ => Ok(()),
    }
}

/// `ValidatePolicyRule`.
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
            if !(rule.api_groups.is_empty()
                && rule.resources.is_empty()
                && rule.resource_names.is_empty())
            {
                return Err(format!(
                    "{at}.nonResourceURLs: Invalid value: rules cannot apply to both regular resources and non-resource URLs"
                ));
            }
        } else if rule.api_groups.is_empty() {
            return Err(format!(
                "{at}.apiGroups: Required value: resource rules must supply at least one api group"
            ));
        } else if rule.resources.is_empty() {
            return Err(format!(
                "{at}.resources: Required value: resource rules must supply at least one resource"
            ));
        }
    }
    Ok(())
}

/// `ValidateRoleBinding` / `ValidateClusterRoleBinding` with `ValidateRoleBindingSubject`.
/// v1 defaulting fills in an empty `apiGroup` of User and Group subjects, so that is fine.
fn validate_binding(
    role_ref: &RoleRef,
    subjects: &[Subject],
    namespaced: bool,
) -> Result<(), String> {
    let unsupported = |field: &str, value: &str, supported: &str| {
        Err(format!(
            "{field}: Unsupported value: {value:?}: supported values: {supported}"
        ))
    };
    if role_ref.api_group != RBAC_GROUP {
        return unsupported(
            "roleRef.apiGroup",
            &role_ref.api_group,
            "\"rbac.authorization.k8s.io\"",
        );
    }
    match role_ref.kind.as_str() {
        "ClusterRole" => {}
        "Role" if namespaced => {}
        kind if namespaced => {
            return unsupported("roleRef.kind", kind, "\"Role\", \"ClusterRole\"");
        }
        kind => return unsupported("roleRef.kind", kind, "\"ClusterRole\""),
    }
    if role_ref.name.is_empty() {
        return Err("roleRef.name: Required value".to_owned());
    }
    for (index, subject) in subjects.iter().enumerate() {
        let at = format!("subjects[{index}]");
        if subject.name.is_empty() {
            return Err(format!("{at}.name: Required value"));
        }
        match subject.kind.as_str() {
            "ServiceAccount" if !is_dns1123_subdomain(&subject.name) => {
                return Err(format!(
                    "{at}.name: Invalid value: {:?}: not a DNS-1123 subdomain",
                    subject.name
                ));
            }
            "ServiceAccount" if !subject.api_group.is_empty() => {
                return unsupported(&format!("{at}.apiGroup"), &subject.api_group, "\"\"");
            }
            // A ClusterRoleBinding has no namespace to default it from.
            "ServiceAccount" if !namespaced && subject.namespace.is_empty() => {
                return Err(format!("{at}.namespace: Required value"));
            }
            "ServiceAccount" => {}
            "User" | "Group" if subject.api_group.is_empty() || subject.api_group == RBAC_GROUP => {
            }
            "User" | "Group" => {
                return unsupported(
                    &format!("{at}.apiGroup"),
                    &subject.api_group,
                    "\"rbac.authorization.k8s.io\"",
                );
            }
            kind => {
                return unsupported(
                    &format!("{at}.kind"),
                    kind,
                    "\"ServiceAccount\", \"User\", \"Group\"",
                );
            }
        }
    }
    Ok(())
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

    fn load(name: &str, text: &str) -> Result<Rbac, RbacError> {
        from_yaml(&[(name.to_owned(), text.to_owned())])
    }

    #[test]
    fn foreign_kinds_lists_and_empty_documents_load() {
        let text = r#"
# only a comment
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: podgate, namespace: podgate}
---
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: podgate, namespace: podgate, labels: {app: podgate}}
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
  metadata: {name: rb}
  roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: r}
  subjects: null
- apiVersion: example.com/v1
  kind: Role
  metadata: {name: not-rbac}
  spec: {whatever: true}
- apiVersion: rbac.authorization.k8s.io/v1
  kind: ClusterRole
  metadata: {name: aggregated}
  aggregationRule: {clusterRoleSelectors: [{matchLabels: {x: y}}]}
  rules: null
"#;
        let rbac = load("deploy.yaml", text).unwrap();
        assert_eq!(
            rbac.summary(),
            "1 Roles, 1 ClusterRoles, 1 RoleBindings, 0 ClusterRoleBindings \
             (1 ClusterRoles have an aggregationRule, which is not evaluated)"
        );
        // A RoleBinding without a namespace lands in "default".
        assert!(
            rbac.role_bindings
                .get("default")
                .is_some_and(|b| b.contains_key("rb"))
        );
        let empty = load("empty.yaml", "").unwrap();
        assert_eq!(
            empty.summary(),
            "0 Roles, 0 ClusterRoles, 0 RoleBindings, 0 ClusterRoleBindings"
        );
    }

    #[test]
    fn malformed_rbac_is_an_error_naming_source_and_object() {
        let crb = "kind: ClusterRoleBinding\nmetadata: {name: b}\n";
        let rbac_ref = "apiGroup: rbac.authorization.k8s.io";
        #[rustfmt::skip]
        let cases = [
            ("kind: Role\nmetadata: {name: broken}\nrules: 5".to_owned(),
             r#"Role "broken" (document 1)"#, "invalid type: integer `5`, expected a sequence"),
            ("kind: ClusterRole\nmetadata: {name: r}\nrules: [{apiGroups: [''], resources: [pods]}]".to_owned(),
             r#"ClusterRole "r" (document 1)"#, "rules[0].verbs: Required value"),
            ("kind: Role\nmetadata: {name: r}\nrules: [{nonResourceURLs: [/x], verbs: [get]}]".to_owned(),
             r#"Role "r" (document 1)"#, "namespaced rules cannot apply to non-resource URLs"),
            (format!("{crb}roleRef: {{{rbac_ref}, kind: ClusterRole, name: r}}\nsubjects: [{{kind: ServiceAccount, name: sa}}]"),
             r#"ClusterRoleBinding "b" (document 1)"#, "subjects[0].namespace: Required value"),
            (format!("{crb}roleRef: {{{rbac_ref}, kind: Role, name: r}}"),
             r#"ClusterRoleBinding "b" (document 1)"#, r#"roleRef.kind: Unsupported value: "Role""#),
            (format!("{crb}roleRef: {{kind: ClusterRole, name: r}}"),
             r#"ClusterRoleBinding "b" (document 1)"#, r#"roleRef.apiGroup: Unsupported value: """#),
            (format!("{crb}roleRef: {{{rbac_ref}, kind: ClusterRole, name: r}}\nsubjects: [{{kind: Robot, name: x}}]"),
             r#"ClusterRoleBinding "b" (document 1)"#, r#"subjects[0].kind: Unsupported value: "Robot""#),
            ("kind: RoleBinding\nmetadata: {name: b}\nsubjects: []".to_owned(),
             r#"RoleBinding "b" (document 1)"#, "missing field `roleRef`"),
            ("kind: Role\nmetadata: {namespace: x}\nrules: []".to_owned(),
             "Role (document 1)", "metadata.name: Required value"),
        ];
        for (body, object, message) in cases {
            let text = format!("apiVersion: rbac.authorization.k8s.io/v1\n{body}");
            match load("bad.yaml", &text) {
                Err(RbacError::Invalid {
                    source_name,
                    object: got_object,
                    message: got,
                }) => {
                    assert_eq!(
                        (source_name.as_str(), got_object.as_str()),
                        ("bad.yaml", object)
                    );
                    assert!(got.contains(message), "{got:?} should contain {message:?}");
                }
                other => panic!("{body}: expected Invalid, got {other:?}"),
            }
        }
        let second = "kind: Namespace\n---\napiVersion: rbac.authorization.k8s.io/v1beta1\nkind: Role\nmetadata: {name: old}\n";
        let error = load("old.yaml", second).unwrap_err().to_string();
        assert!(
            error.starts_with(r#"old.yaml: Role "old" (document 2): apiVersion"#),
            "{error}"
        );
        let error = load(
            "list.yaml",
            "kind: List\nitems: [{kind: Role, apiVersion: rbac.authorization.k8s.io/v1}]",
        );
        let error = error.unwrap_err().to_string();
        assert!(
            error.starts_with("list.yaml: Role (document 1, item 1): metadata.name"),
            "{error}"
        );
        let syntax = load("syntax.yaml", "kind: [Role").unwrap_err();
        assert!(
            matches!(&syntax, RbacError::Yaml { source_name, .. } if source_name == "syntax.yaml")
        );
        let scalar = load("scalar.yaml", "just text").unwrap_err().to_string();
        assert!(
            scalar.starts_with("scalar.yaml: document 1: not a Kubernetes object"),
            "{scalar}"
        );
    }
}
