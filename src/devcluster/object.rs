//! Conventions of Kubernetes objects as JSON: metadata access, names (with
//! `generateName`), kind checks, the fields that field selectors see, and JSON merge
//! patch (RFC 7386). Pure functions over `serde_json::Value`.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::discovery::ResourceType;
use super::status::ApiError;

/// The string at a JSON path, or "".
pub fn str_at<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    let mut cur = v;
    for p in path {
        match cur.get(p) {
            Some(next) => cur = next,
            None => return "",
        }
    }
    cur.as_str().unwrap_or("")
}

pub(super) fn find_container<'a>(pod: &'a Value, name: &str) -> Option<&'a Value> {
    pod.get("spec")?
        .get("containers")?
        .as_array()?
        .iter()
        .find(|c| c.get("name").and_then(Value::as_str) == Some(name))
}

pub(super) fn labels_of(v: &Value) -> BTreeMap<String, String> {
    v.get("metadata")
        .and_then(|m| m.get("labels"))
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// The fields the API server supports in field selectors for the types we serve.
pub(super) fn fields_of(v: &Value) -> BTreeMap<String, String> {
    let mut f = BTreeMap::new();
    for (key, path) in [
        ("metadata.name", &["metadata", "name"][..]),
        ("metadata.namespace", &["metadata", "namespace"][..]),
        ("status.phase", &["status", "phase"][..]),
        ("spec.nodeName", &["spec", "nodeName"][..]),
    ] {
        let s = str_at(v, path);
        if !s.is_empty() {
            f.insert(key.to_owned(), s.to_owned());
        }
    }
    f
}

/// Field selector keys the list endpoints accept.
pub const SUPPORTED_FIELDS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "status.phase",
    "spec.nodeName",
];

pub(super) fn check_kind(rt: &ResourceType, body: &Value) -> Result<(), ApiError> {
    if !body.is_object() {
        return Err(ApiError::bad_request(
            "the request body is not a JSON object",
        ));
    }
    let kind = str_at(body, &["kind"]);
    let api_version = str_at(body, &["apiVersion"]);
    if (!kind.is_empty() && kind != rt.kind)
        || (!api_version.is_empty() && api_version != rt.api_version())
    {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({}) or kind {kind:?} is not {:?}",
            rt.api_version(),
            rt.kind
        )));
    }
    Ok(())
}

/// The object's name, generating one from `generateName` as the API server does.
pub(super) fn object_name(body: &mut Value) -> Result<String, ApiError> {
    let name = str_at(body, &["metadata", "name"]).to_owned();
    let generate = str_at(body, &["metadata", "generateName"]).to_owned();
    let name = if name.is_empty() && !generate.is_empty() {
        let suffix: String = uuid::Uuid::new_v4()
            .simple()
            .to_string()
            .chars()
            .take(5)
            .collect();
        format!("{generate}{suffix}")
    } else {
        name
    };
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.' || b == b':'
        });
    if !valid {
        return Err(ApiError::invalid(format!(
            "metadata.name: Invalid value: {name:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.'"
        )));
    }
    match body.get_mut("metadata").and_then(Value::as_object_mut) {
        Some(meta) => {
            meta.insert("name".into(), json!(name));
        }
        None => {
            if let Some(obj) = body.as_object_mut() {
                obj.insert("metadata".into(), json!({"name": name}));
            }
        }
    }
    Ok(name)
}

/// JSON merge patch (RFC 7386).
pub(super) fn merge_patch(target: &mut Value, patch: &Value) {
    let Some(patch_obj) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Some(t) = target.as_object_mut() {
        for (k, v) in patch_obj {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

/// A Secret's `stringData` is write-only: the API server folds it into `data` (base64,
/// each key overriding `data`'s) and never returns it.
pub(super) fn fold_string_data(secret: &mut Value) {
    use base64::Engine as _;
    let Some(obj) = secret.as_object_mut() else {
        return;
    };
    let Some(Value::Object(strings)) = obj.remove("stringData") else {
        return;
    };
    let data = obj.entry("data").or_insert_with(|| json!({}));
    if !data.is_object() {
        *data = json!({});
    }
    if let Some(data) = data.as_object_mut() {
        for (key, value) in strings {
            let text = value.as_str().unwrap_or_default();
            let encoded = base64::engine::general_purpose::STANDARD.encode(text);
            data.insert(key, json!(encoded));
        }
    }
}
