//! Who a request is from: the authenticated (or impersonated) user as the Kubernetes
//! authorizer sees it (`user.Info` in k8s.io/apiserver).
//!
//! Plain data, shared by authentication, impersonation, RBAC and the audit log.

use std::collections::BTreeMap;

use serde::Serialize;

/// The identity a request is authorized as, named like `authentication.k8s.io/v1`
/// `UserInfo` so that it serialises straight into audit events.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UserInfo {
    pub username: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    /// A user with the given name and groups, no uid and no extra.
    pub fn new(username: impl Into<String>, groups: &[&str]) -> Self {
        Self {
            username: username.into(),
            uid: None,
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            extra: BTreeMap::new(),
        }
    }

    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }
}

/// The group every authenticated identity carries (added by the API server, also to
/// impersonated users).
pub const AUTHENTICATED_GROUP: &str = "system:authenticated";
/// Members of this group bypass authorization, as in a real API server.
pub const MASTERS_GROUP: &str = "system:masters";
/// Prefix of service-account user names: `system:serviceaccount:NS:NAME`.
pub const SERVICE_ACCOUNT_PREFIX: &str = "system:serviceaccount:";
