//! Where an incident gateway ships its recordings (`incident open --store`): one prefix per
//! incident in the bucket, the `recordings_store` mapping of its configuration, and how
//! the pod gets its credentials (a Secret as environment, or the workload identity of its
//! ServiceAccount).
//!
//! Guarantees: the URL is checked with the gateway's own parser before anything else, so a
//! bad one is refused before any Kubernetes call; every value the operator gave is written
//! into the configuration as a quoted scalar, so none can add a key. Credentials never
//! appear here: the Secret is referenced by name only.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1 as core;

use super::IncidentError;

/// The recordings store of an incident gateway, as given on the command line.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreSpec {
    /// `s3://BUCKET/PREFIX` (`--store`); the incident's recordings go under `PREFIX/ID`.
    pub url: String,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub path_style: bool,
    pub allow_http: bool,
    /// A Secret in the gateway namespace whose keys become the pod's environment
    /// (`AWS_ACCESS_KEY_ID`, ...). `None`: the ServiceAccount's workload identity.
    pub secret: Option<String>,
}

/// The incident's own place in the bucket: `s3://BUCKET/PREFIX/ID`.
pub fn incident_url(store: &StoreSpec, id: &str) -> Result<String, IncidentError> {
    let (bucket, prefix) = crate::config::parse_store_url(&store.url)
        .map_err(|e| IncidentError::Invalid(format!("--store: {e}")))?;
    Ok(if prefix.is_empty() {
        format!("s3://{bucket}/{id}")
    } else {
        format!("s3://{bucket}/{prefix}/{id}")
    })
}

/// Check everything the gateway would refuse, naming the flag, before any object is built.
pub fn check(store: &StoreSpec, id: &str) -> Result<(), IncidentError> {
    let url = incident_url(store, id)?;
    if let Some(region) = &store.region {
        let ok = (1..=32).contains(&region.len())
            && region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !ok {
            return Err(IncidentError::Invalid(format!(
                "--store-region {region:?} must be 1 to 32 characters of a-z, 0-9 and '-'"
            )));
        }
    }
    if let Some(name) = &store.secret
        && !dns_subdomain(name)
    {
        return Err(IncidentError::Invalid(format!(
            "--store-secret {name:?} is not a valid Kubernetes Secret name"
        )));
    }
    crate::config::StoreConfig::for_reading(
        &url,
        store.endpoint.clone(),
        store.region.clone(),
        store.path_style,
        store.allow_http,
    )
    .map(|_| ())
    .map_err(|e| {
        let flags = e
            .replace("recordings_store.endpoint", "--store-endpoint")
            .replace("set allow_http: true", "pass --store-allow-http");
        IncidentError::Invalid(flags)
    })
}

/// The `recordings_store:` mapping of the incident gateway's configuration, ending in a
/// newline. The spool is the pod's `emptyDir` (2Gi): unshipped data is capped at half of
/// it, so sessions are refused before the kubelet would evict the pod, and shipped
/// recordings leave it at once (the bucket is the record; the volume dies with the pod).
pub(super) fn config_text(store: &StoreSpec, id: &str) -> Result<String, IncidentError> {
    let quoted = |s: &str| {
        serde_json::to_string(s)
            .map_err(|e| IncidentError::Invalid(format!("cannot write the configuration: {e}")))
    };
    let mut out = format!(
        "recordings_store:\n\x20 url: {}\n",
        quoted(&incident_url(store, id)?)?
    );
    if let Some(endpoint) = &store.endpoint {
        out.push_str(&format!("  endpoint: {}\n", quoted(endpoint)?));
    }
    if let Some(region) = &store.region {
        out.push_str(&format!("  region: {}\n", quoted(region)?));
    }
    if store.path_style {
        out.push_str("  path_style: true\n");
    }
    if store.allow_http {
        out.push_str("  allow_http: true\n");
    }
    out.push_str(
        "\x20 spool_max_size: 1GiB                # half the pod's 2Gi emptyDir\n\
         \x20 keep_shipped: 0s                    # the bucket is the record\n",
    );
    Ok(out)
}

/// The container's `envFrom`: the Secret's keys, required (a missing Secret keeps the pod
/// from starting rather than letting it run without credentials).
pub(super) fn env_from(store: Option<&StoreSpec>) -> Option<Vec<core::EnvFromSource>> {
    let name = store?.secret.clone()?;
    Some(vec![core::EnvFromSource {
        secret_ref: Some(core::SecretEnvSource {
            name,
            optional: Some(false),
        }),
        ..Default::default()
    }])
}

/// Annotations for the ServiceAccount (`--service-account-annotation`): Kubernetes
/// qualified names as keys (`[PREFIX/]NAME`), none under `podgate.dev/`, which podgate
/// sets itself.
pub(super) fn check_annotations(
    annotations: &BTreeMap<String, String>,
) -> Result<(), IncidentError> {
    for key in annotations.keys() {
        let (prefix, name) = match key.split_once('/') {
            Some((p, n)) => (Some(p), n),
            None => (None, key.as_str()),
        };
        let name_ok = (1..=63).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            && name.starts_with(|c: char| c.is_ascii_alphanumeric())
            && name.ends_with(|c: char| c.is_ascii_alphanumeric());
        if !name_ok || !prefix.is_none_or(dns_subdomain) {
            return Err(IncidentError::Invalid(format!(
                "--service-account-annotation {key:?} is not a valid annotation key"
            )));
        }
        if prefix.is_some_and(|p| p == "podgate.dev" || p.ends_with(".podgate.dev")) {
            return Err(IncidentError::Invalid(format!(
                "--service-account-annotation {key:?}: podgate.dev/ annotations are podgate's own"
            )));
        }
    }
    Ok(())
}

/// RFC 1123 subdomain: what Secret names and annotation prefixes must be.
fn dns_subdomain(s: &str) -> bool {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    s.len() <= 253 && s.split('.').all(label_ok)
}
