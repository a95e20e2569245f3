//! `meta/v1` Status bodies for failed requests, worded and coded like kube-apiserver's
//! (k8s.io/apimachinery/pkg/api/errors), so that kubectl and kube-rs print what they
//! would print against a real cluster.

use serde_json::{Value, json};

/// A failed API request: HTTP code, `reason`, message and `details`.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    fn with_details(mut self, kind: &str, group: &str, name: &str) -> Self {
        let mut d = serde_json::Map::new();
        if !name.is_empty() {
            d.insert("name".into(), json!(name));
        }
        if !group.is_empty() {
            d.insert("group".into(), json!(group));
        }
        d.insert("kind".into(), json!(kind));
        self.details = Some(Value::Object(d));
        self
    }

    /// `pods "x" not found` (404).
    pub fn not_found(group: &str, resource: &str, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} {name:?} not found", qualified(group, resource)),
        )
        .with_details(resource, group, name)
    }

    /// `pods "x" already exists` (409).
    pub fn already_exists(group: &str, resource: &str, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} {name:?} already exists", qualified(group, resource)),
        )
        .with_details(resource, group, name)
    }

    /// 403 with a message from the authorizer (see `rbac::forbidden_message`).
    pub fn forbidden(message: String, group: &str, kind: &str, name: &str) -> Self {
        Self::new(403, "Forbidden", message).with_details(kind, group, name)
    }

    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(422, "Invalid", message)
    }

    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(405, "MethodNotAllowed", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message)
    }

    /// 404 for a path that names no known API (the API server's plain `404 page not found`
    /// is used for unknown non-resource paths; API paths get a NotFound Status).
    pub fn no_route(path: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
        )
    }

    pub fn body(&self) -> Value {
        let mut v = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let (Some(d), Some(obj)) = (&self.details, v.as_object_mut()) {
            obj.insert("details".into(), d.clone());
        }
        v
    }
}

/// `pods` or `deployments.apps`: how the API server names a resource in messages.
pub fn qualified(group: &str, resource: &str) -> String {
    if group.is_empty() {
        resource.to_owned()
    } else {
        format!("{resource}.{group}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_worded_like_the_api_server() {
        let cases = [
            (
                ApiError::not_found("", "pods", "x"),
                json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
                       "message":"pods \"x\" not found","reason":"NotFound",
                       "details":{"name":"x","kind":"pods"},"code":404}),
            ),
            (
                ApiError::already_exists("apps", "deployments", "web"),
                json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
                       "message":"deployments.apps \"web\" already exists","reason":"AlreadyExists",
                       "details":{"name":"web","group":"apps","kind":"deployments"},"code":409}),
            ),
            (
                ApiError::unauthorized(),
                json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
                       "message":"Unauthorized","reason":"Unauthorized","code":401}),
            ),
        ];
        for (err, want) in cases {
            assert_eq!(err.body(), want);
        }
    }
}
