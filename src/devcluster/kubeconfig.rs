//! The kubeconfig `--kubeconfig-out` writes: the devcluster's CA, and two contexts with
//! bearer tokens, `admin` (current; `system:masters`) and `gateway` (the podgate service
//! account, subject to RBAC). Both kubectl and kube-rs read it unchanged.

use base64::Engine;
use serde_json::json;

use super::authn::Tokens;

/// The kubeconfig text (YAML) for a server at `server_url` (`https://127.0.0.1:PORT`).
pub fn render(
    server_url: &str,
    ca_pem: &str,
    tokens: &Tokens,
) -> Result<String, serde_yaml::Error> {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem.as_bytes());
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [{
            "name": "devcluster",
            "cluster": {"server": server_url, "certificate-authority-data": ca},
        }],
        "users": [
            {"name": "admin", "user": {"token": tokens.admin}},
            {"name": "gateway", "user": {"token": tokens.gateway}},
        ],
        "contexts": [
            {"name": "admin", "context": {"cluster": "devcluster", "user": "admin", "namespace": "default"}},
            {"name": "gateway", "context": {"cluster": "devcluster", "user": "gateway", "namespace": "podgate"}},
        ],
        "current-context": "admin",
    });
    let body = serde_yaml::to_string(&config)?;
    Ok(format!(
        "# Written by `podgate devcluster`: contexts `admin` (everything) and `gateway`\n\
         # (system:serviceaccount:podgate:podgate, subject to RBAC).\n{body}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubeconfig_has_two_contexts_and_the_ca() {
        let t = Tokens {
            admin: "a".into(),
            gateway: "g".into(),
        };
        let text = render("https://127.0.0.1:6443", "PEM", &t).unwrap();
        let v: serde_json::Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(v["current-context"], "admin");
        assert_eq!(v["contexts"][1]["name"], "gateway");
        assert_eq!(v["users"][1]["user"]["token"], "g");
        assert_eq!(
            v["clusters"][0]["cluster"]["certificate-authority-data"],
            "UEVN"
        );
    }
}
