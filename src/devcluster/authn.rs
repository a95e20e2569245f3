//! Authentication (bearer tokens) and the parsing of impersonation headers.
//!
//! Two identities exist, each with a random token kept in the state directory:
//! `admin` (group `system:masters`, allowed everything) and the gateway's service account
//! `system:serviceaccount:podgate:podgate` (subject to RBAC). A request without a token is
//! `system:anonymous`; a request with an unknown token is refused with 401, like a real
//! API server.

use std::collections::BTreeMap;

use http::HeaderMap;

use super::identity::{AUTHENTICATED_GROUP, MASTERS_GROUP, UserInfo};
use super::rbac::ImpersonationRequest;

pub const ADMIN_USER: &str = "kubernetes-admin";
pub const GATEWAY_USER: &str = "system:serviceaccount:podgate:podgate";
pub const ANONYMOUS_USER: &str = "system:anonymous";

/// The tokens this cluster accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokens {
    pub admin: String,
    pub gateway: String,
}

impl Tokens {
    pub fn generate() -> Tokens {
        Tokens {
            admin: random_token(),
            gateway: random_token(),
        }
    }

    /// The identity a request authenticates as; `Err(())` means 401.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<UserInfo, ()> {
        let Some(value) = headers.get(http::header::AUTHORIZATION) else {
            return Ok(UserInfo::new(ANONYMOUS_USER, &["system:unauthenticated"]));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or(())?;
        if constant_time_eq(token, &self.admin) {
            Ok(UserInfo::new(
                ADMIN_USER,
                &[MASTERS_GROUP, AUTHENTICATED_GROUP],
            ))
        } else if constant_time_eq(token, &self.gateway) {
            Ok(UserInfo::new(
                GATEWAY_USER,
                &[
                    "system:serviceaccounts",
                    "system:serviceaccounts:podgate",
                    AUTHENTICATED_GROUP,
                ],
            ))
        } else {
            Err(())
        }
    }
}

fn random_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The `Impersonate-*` headers of a request (k8s.io/api/authentication/v1 header names).
/// Every `Impersonate-Group` header is one group; every `Impersonate-Extra-KEY` header is
/// one value of KEY, whose name is lower-cased and percent-decoded as the API server does.
pub fn impersonation(headers: &HeaderMap) -> Result<ImpersonationRequest, String> {
    let text = |v: &http::HeaderValue| {
        v.to_str()
            .map(str::to_owned)
            .map_err(|_| "impersonation header is not valid text".to_owned())
    };
    let mut req = ImpersonationRequest::default();
    if let Some(v) = headers.get("impersonate-user") {
        req.user = Some(text(v)?);
    }
    if let Some(v) = headers.get("impersonate-uid") {
        req.uid = Some(text(v)?);
    }
    for v in headers.get_all("impersonate-group") {
        req.groups.push(text(v)?);
    }
    let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, v) in headers {
        if let Some(key) = name.as_str().strip_prefix("impersonate-extra-") {
            // Lower-cased before unescaping, as the API server does (impersonation.go).
            let lower = key.to_lowercase();
            let key = percent_encoding::percent_decode_str(&lower)
                .decode_utf8()
                .map_err(|_| format!("impersonation extra key {key:?} is not valid UTF-8"))?
                .into_owned();
            extra.entry(key).or_default().push(text(v)?);
        }
    }
    req.extra = extra;
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_map_to_identities() {
        let t = Tokens::generate();
        let mut h = HeaderMap::new();
        assert_eq!(t.authenticate(&h).unwrap().username, ANONYMOUS_USER);
        h.insert(
            "authorization",
            format!("Bearer {}", t.admin).parse().unwrap(),
        );
        assert!(t.authenticate(&h).unwrap().in_group(MASTERS_GROUP));
        h.insert(
            "authorization",
            format!("Bearer {}", t.gateway).parse().unwrap(),
        );
        assert_eq!(t.authenticate(&h).unwrap().username, GATEWAY_USER);
        h.insert("authorization", "Bearer nope".parse().unwrap());
        assert!(t.authenticate(&h).is_err());
        h.insert("authorization", "Basic abc".parse().unwrap());
        assert!(t.authenticate(&h).is_err());
    }

    #[test]
    fn impersonation_headers_are_read_like_the_api_server() {
        let mut h = HeaderMap::new();
        h.insert("impersonate-user", "alice@corp.example".parse().unwrap());
        h.append("impersonate-group", "jit:a".parse().unwrap());
        h.append("impersonate-group", "jit:b".parse().unwrap());
        h.append("impersonate-extra-podgate-session", "s1".parse().unwrap());
        h.append(
            "Impersonate-Extra-Podgate%2Dreason",
            "INC-1".parse().unwrap(),
        );
        let r = impersonation(&h).unwrap();
        assert_eq!(r.user.as_deref(), Some("alice@corp.example"));
        assert_eq!(r.groups, ["jit:a", "jit:b"]);
        assert_eq!(r.extra["podgate-session"], ["s1"]);
        assert_eq!(r.extra["podgate-reason"], ["INC-1"]);
    }
}
