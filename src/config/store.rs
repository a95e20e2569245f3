//! The `recordings_store:` key (issue 9): where finished recordings and audit-log segments
//! are shipped, and when the local spool is too full or too old to take new sessions.
//!
//! Two spellings: the URL alone (`recordings_store: s3://bucket/prefix`, every other
//! setting at its default), or a mapping with `url` and the settings below. Credentials
//! are deliberately not settings: they come from the environment / web-identity chain
//! (`AWS_ACCESS_KEY_ID`…, `AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN`, container or
//! instance credentials), so a configuration file (kept in git, mounted from a ConfigMap)
//! never holds a secret. An unknown key, such as `secret_access_key`, is an error.

use std::time::Duration;

use serde::Deserialize;

/// The most `ship_every` may be: losing the pod loses at most this much of a live session.
pub const MAX_SHIP_EVERY: Duration = Duration::from_secs(30);

/// What happens to new sessions once the spool is over `spool_max_size` or `spool_max_age`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum WhenSpoolFull {
    /// New sessions are refused with the reason (fail closed; the default).
    #[default]
    Refuse,
    /// New sessions are accepted; every one logs an error and the metrics say so
    /// (fail open, loudly).
    Accept,
}

/// A validated `recordings_store`.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreConfig {
    /// `s3://BUCKET/PREFIX` as written.
    pub url: String,
    pub bucket: String,
    /// Object key prefix, without leading or trailing `/`; may be empty.
    pub prefix: String,
    /// S3-compatible servers: `https://host:port` (or `http://` with `allow_http`).
    pub endpoint: Option<String>,
    /// `None`: `AWS_REGION` / `AWS_DEFAULT_REGION`, else `us-east-1`.
    pub region: Option<String>,
    /// Path-style requests (`ENDPOINT/BUCKET/KEY`), which most S3-compatible servers need.
    pub path_style: bool,
    /// Allow a plain-HTTP endpoint (tests and in-cluster servers behind their own TLS).
    pub allow_http: bool,
    /// Live sessions are shipped in parts at least this often.
    pub ship_every: Duration,
    /// Unshipped bytes in the spool above which `when_spool_full` applies.
    pub spool_max_size: u64,
    /// Age of the oldest unshipped data above which `when_spool_full` applies.
    pub spool_max_age: Duration,
    pub when_spool_full: WhenSpoolFull,
    /// Shipped recordings stay in the spool this long, then are deleted from it.
    pub keep_shipped: Duration,
}

/// The key as written: a URL or a mapping (see the module comment).
pub(super) enum RawStore {
    Url(String),
    Full(RawFull),
}

impl RawStore {
    /// Parsed from the YAML value, so that a mistake in the mapping is reported as what it
    /// is (an unknown field, a bad duration) rather than as "matches no spelling".
    pub(super) fn from_yaml(value: serde_yaml::Value) -> Result<RawStore, String> {
        match value {
            serde_yaml::Value::String(url) => Ok(RawStore::Url(url)),
            v @ serde_yaml::Value::Mapping(_) => serde_yaml::from_value(v)
                .map(RawStore::Full)
                .map_err(|e| format!("recordings_store: {e}")),
            _ => Err("recordings_store must be an s3:// URL or a mapping with url".into()),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFull {
    url: String,
    #[serde(default)]
    endpoint: Option<String>,
    #[serde(default)]
    region: Option<String>,
    #[serde(default)]
    path_style: bool,
    #[serde(default)]
    allow_http: bool,
    #[serde(default = "default_ship_every", with = "super::duration")]
    ship_every: Duration,
    #[serde(default = "default_spool_max_size", with = "super::size")]
    spool_max_size: u64,
    #[serde(default = "default_spool_max_age", with = "super::duration")]
    spool_max_age: Duration,
    #[serde(default)]
    when_spool_full: WhenSpoolFull,
    #[serde(default = "default_keep_shipped", with = "super::duration")]
    keep_shipped: Duration,
}

fn default_ship_every() -> Duration {
    MAX_SHIP_EVERY
}
fn default_spool_max_size() -> u64 {
    4 << 30
}
fn default_spool_max_age() -> Duration {
    Duration::from_secs(3600)
}
fn default_keep_shipped() -> Duration {
    Duration::from_secs(24 * 3600)
}

/// Split `s3://BUCKET/PREFIX` into bucket and prefix (no leading/trailing `/`).
pub fn parse_url(url: &str) -> Result<(String, String), String> {
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| format!("recordings_store {url:?} must start with s3://"))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    // S3 bucket naming rules (3-63 of a-z 0-9 . -), loosely: enough to refuse typos and
    // anything that would change the request's host or path.
    let bucket_ok = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    if !bucket_ok {
        return Err(format!(
            "recordings_store {url:?}: bucket {bucket:?} must be 3-63 characters of a-z, 0-9, '.' and '-'"
        ));
    }
    let prefix = prefix.trim_matches('/');
    let segment_ok = |s: &str| {
        !s.is_empty()
            && s != "."
            && s != ".."
            && s.bytes().all(|b| b.is_ascii_graphic() && b != b'\\')
    };
    if !prefix.is_empty() && !prefix.split('/').all(segment_ok) {
        return Err(format!(
            "recordings_store {url:?}: the prefix must be printable ASCII path segments, without empty, '.' or '..' segments"
        ));
    }
    Ok((bucket.to_owned(), prefix.to_owned()))
}

impl RawStore {
    pub(super) fn validate(self) -> Result<StoreConfig, String> {
        let raw = match self {
            RawStore::Url(url) => RawFull {
                url,
                endpoint: None,
                region: None,
                path_style: false,
                allow_http: false,
                ship_every: default_ship_every(),
                spool_max_size: default_spool_max_size(),
                spool_max_age: default_spool_max_age(),
                when_spool_full: WhenSpoolFull::default(),
                keep_shipped: default_keep_shipped(),
            },
            RawStore::Full(f) => f,
        };
        let (bucket, prefix) = parse_url(&raw.url)?;
        if let Some(e) = &raw.endpoint {
            let http = e.starts_with("http://");
            if !(http || e.starts_with("https://")) {
                return Err(format!(
                    "recordings_store.endpoint {e:?} must start with https:// (or http:// with allow_http)"
                ));
            }
            if http && !raw.allow_http {
                return Err(format!(
                    "recordings_store.endpoint {e:?} is plain HTTP; set allow_http: true to allow it"
                ));
            }
        }
        if raw.ship_every.is_zero() || raw.ship_every > MAX_SHIP_EVERY {
            return Err(format!(
                "recordings_store.ship_every must be between 1ms and {}s",
                MAX_SHIP_EVERY.as_secs()
            ));
        }
        if raw.spool_max_size == 0 || raw.spool_max_age.is_zero() {
            return Err(
                "recordings_store.spool_max_size and spool_max_age must be positive".into(),
            );
        }
        Ok(StoreConfig {
            url: raw.url,
            bucket,
            prefix,
            endpoint: raw.endpoint,
            region: raw.region,
            path_style: raw.path_style,
            allow_http: raw.allow_http,
            ship_every: raw.ship_every,
            spool_max_size: raw.spool_max_size,
            spool_max_age: raw.spool_max_age,
            when_spool_full: raw.when_spool_full,
            keep_shipped: raw.keep_shipped,
        })
    }
}

impl StoreConfig {
    /// A store read by the offline tools: just where it is, every spool setting at its
    /// default.
    pub fn for_reading(
        url: &str,
        endpoint: Option<String>,
        region: Option<String>,
        path_style: bool,
        allow_http: bool,
    ) -> Result<StoreConfig, String> {
        RawStore::Full(RawFull {
            url: url.to_owned(),
            endpoint,
            region,
            path_style,
            allow_http,
            ship_every: default_ship_every(),
            spool_max_size: default_spool_max_size(),
            spool_max_age: default_spool_max_age(),
            when_spool_full: WhenSpoolFull::default(),
            keep_shipped: default_keep_shipped(),
        })
        .validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<StoreConfig, String> {
        let value: serde_yaml::Value = serde_yaml::from_str(yaml).map_err(|e| e.to_string())?;
        RawStore::from_yaml(value)?.validate()
    }

    #[test]
    fn urls_split_into_bucket_and_prefix() {
        type Want = Result<(&'static str, &'static str), &'static str>;
        let cases: [(&str, Want); 9] = [
            ("s3://rec", Ok(("rec", ""))),
            ("s3://rec/", Ok(("rec", ""))),
            ("s3://rec/a/b/", Ok(("rec", "a/b"))),
            ("s3://my.rec-1/INC-7", Ok(("my.rec-1", "INC-7"))),
            ("gs://rec/a", Err("must start with s3://")),
            ("s3://Rec/a", Err("bucket")),
            ("s3://ab", Err("bucket")),
            ("s3://rec/a//b", Err("prefix")),
            ("s3://rec/a/../b", Err("prefix")),
        ];
        for (url, want) in cases {
            match (parse_url(url), want) {
                (Ok((b, p)), Ok((wb, wp))) => assert_eq!((b.as_str(), p.as_str()), (wb, wp)),
                (Err(e), Err(w)) => assert!(e.contains(w), "{url}: {e}"),
                (got, want) => panic!("{url}: {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn both_spellings_parse_and_bad_settings_are_refused() {
        let short = parse("s3://rec/gw").unwrap();
        assert_eq!(short.ship_every, MAX_SHIP_EVERY);
        assert_eq!(short.when_spool_full, WhenSpoolFull::Refuse);
        let full = parse(
            "{url: 's3://rec/gw', endpoint: 'http://127.0.0.1:9000', allow_http: true, path_style: true, ship_every: 2s, spool_max_size: 1MiB, spool_max_age: 5m, when_spool_full: accept, keep_shipped: 0s}",
        )
        .unwrap();
        assert_eq!(full.spool_max_size, 1 << 20);
        assert_eq!(full.when_spool_full, WhenSpoolFull::Accept);
        assert_eq!(full.keep_shipped, Duration::ZERO);
        let bad = [
            (
                "{url: 's3://rec', secret_access_key: x}",
                "unknown field `secret_access_key`",
            ),
            ("[s3://rec]", "mapping with url"),
            ("{url: 's3://rec', endpoint: 'http://h'}", "allow_http"),
            ("{url: 's3://rec', endpoint: 'h:9000'}", "https://"),
            ("{url: 's3://rec', ship_every: 31s}", "ship_every"),
            ("{url: 's3://rec', spool_max_size: 0}", "positive"),
            (
                "{url: 's3://rec', when_spool_full: maybe}",
                "unknown variant `maybe`",
            ),
            ("{url: 's3://rec', spool_max_age: soon}", "bad duration"),
        ];
        for (yaml, want) in bad {
            let err = parse(yaml).unwrap_err();
            assert!(err.contains(want), "{yaml}: {err}");
        }
    }
}
