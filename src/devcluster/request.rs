//! What a request asks for, read from its method, path and query the way
//! k8s.io/apiserver's RequestInfoFactory reads it: API group and version, namespace,
//! resource, name, subresource, and the verb it is authorized as.

use http::Method;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A path outside the resource APIs (`/version`, `/healthz`, ...) or a discovery
    /// document (`/api`, `/apis/apps/v1`, ...).
    NonResource,
    Resource(ResourceRequest),
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResourceRequest {
    pub verb: String,
    pub group: String,
    pub version: String,
    pub namespace: String,
    pub resource: String,
    pub name: String,
    pub subresource: String,
}

/// Read a request. `watch` is the value of the `watch` query parameter.
pub fn parse(method: &Method, path: &str, watch: bool) -> Target {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match parts.as_slice() {
        ["api", version, rest @ ..] if !rest.is_empty() => ("", *version, rest),
        ["apis", group, version, rest @ ..] if !rest.is_empty() => (*group, *version, rest),
        _ => return Target::NonResource,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, more @ ..] if !more.is_empty() => (*ns, more),
        _ => ("", rest),
    };
    let (resource, name, subresource) = match rest {
        [resource] => (*resource, "", ""),
        [resource, name] => (*resource, *name, ""),
        [resource, name, sub] => (*resource, *name, *sub),
        _ => return Target::NonResource,
    };
    if resource.is_empty() {
        return Target::NonResource;
    }
    let verb = match *method {
        Method::GET | Method::HEAD if watch => "watch",
        Method::GET | Method::HEAD if name.is_empty() => "list",
        Method::GET | Method::HEAD => "get",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if name.is_empty() => "deletecollection",
        Method::DELETE => "delete",
        _ => "",
    };
    // `namespaces/NAME` names the namespace object itself, which is cluster-scoped; the API
    // server still records the namespace as NAME.
    let namespace = if resource == "namespaces" && !name.is_empty() {
        name
    } else {
        namespace
    };
    Target::Resource(ResourceRequest {
        verb: verb.to_owned(),
        group: group.to_owned(),
        version: version.to_owned(),
        namespace: namespace.to_owned(),
        resource: resource.to_owned(),
        name: name.to_owned(),
        subresource: subresource.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(verb: &str, group: &str, ns: &str, res: &str, name: &str, sub: &str) -> Target {
        Target::Resource(ResourceRequest {
            verb: verb.into(),
            group: group.into(),
            version: "v1".into(),
            namespace: ns.into(),
            resource: res.into(),
            name: name.into(),
            subresource: sub.into(),
        })
    }

    #[test]
    fn paths_read_like_request_info() {
        let cases = [
            (
                Method::GET,
                "/api/v1/pods",
                false,
                r("list", "", "", "pods", "", ""),
            ),
            (
                Method::GET,
                "/api/v1/namespaces/a/pods",
                false,
                r("list", "", "a", "pods", "", ""),
            ),
            (
                Method::GET,
                "/api/v1/namespaces/a/pods",
                true,
                r("watch", "", "a", "pods", "", ""),
            ),
            (
                Method::GET,
                "/api/v1/namespaces/a/pods/p",
                false,
                r("get", "", "a", "pods", "p", ""),
            ),
            (
                Method::GET,
                "/api/v1/namespaces/a/pods/p/exec",
                false,
                r("get", "", "a", "pods", "p", "exec"),
            ),
            (
                Method::POST,
                "/api/v1/namespaces/a/pods/p/exec",
                false,
                r("create", "", "a", "pods", "p", "exec"),
            ),
            (
                Method::GET,
                "/api/v1/namespaces",
                false,
                r("list", "", "", "namespaces", "", ""),
            ),
            (
                Method::GET,
                "/api/v1/namespaces/a",
                false,
                r("get", "", "a", "namespaces", "a", ""),
            ),
            (
                Method::DELETE,
                "/apis/apps/v1/namespaces/a/deployments/d",
                false,
                r("delete", "apps", "a", "deployments", "d", ""),
            ),
            (
                Method::DELETE,
                "/apis/apps/v1/namespaces/a/deployments",
                false,
                r("deletecollection", "apps", "a", "deployments", "", ""),
            ),
            (
                Method::PATCH,
                "/apis/rbac.authorization.k8s.io/v1/clusterroles/x",
                false,
                r(
                    "patch",
                    "rbac.authorization.k8s.io",
                    "",
                    "clusterroles",
                    "x",
                    "",
                ),
            ),
            (Method::GET, "/api", false, Target::NonResource),
            (Method::GET, "/api/v1", false, Target::NonResource),
            (Method::GET, "/apis/apps/v1", false, Target::NonResource),
            (Method::GET, "/version", false, Target::NonResource),
            (
                Method::GET,
                "/api/v1/namespaces/a/pods/p/exec/extra",
                false,
                Target::NonResource,
            ),
        ];
        for (m, path, watch, want) in cases {
            assert_eq!(parse(&m, path, watch), want, "{m} {path}");
        }
    }
}
