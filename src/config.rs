//! The gateway's configuration file (`podgate serve --config FILE`, DESIGN.md §7).
//!
//! Parsed strictly: an unknown key is an error naming the file, line and column, because a
//! typo'd key that silently does nothing is how a gateway ends up less strict than its
//! operator believes. Relative paths are resolved against the configuration file's
//! directory. This module only parses; reading the files the configuration names is the
//! caller's job.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

mod limits;
mod store;
pub use limits::Limits;
pub use store::{MAX_SHIP_EVERY, StoreConfig, WhenSpoolFull, parse_url as parse_store_url};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Parse(String),
    #[error("{file}: {message}")]
    Invalid { file: String, message: String },
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub listen: SocketAddr,
    pub host_key: PathBuf,
    pub trusted_user_ca_keys: Vec<PathBuf>,
    pub revoked_keys: Option<PathBuf>,
    pub cluster: String,
    pub incident: Option<String>,
    pub policy: PathBuf,
    pub recordings: PathBuf,
    /// Object storage the recordings are shipped to; `recordings` is then the spool.
    pub recordings_store: Option<StoreConfig>,
    pub kubeconfig: Option<PathBuf>,
    pub kube_context: Option<String>,
    pub max_cert_lifetime: Duration,
    pub clock_skew: Duration,
    pub idle_timeout: Duration,
    pub metrics_listen: Option<SocketAddr>,
    /// New sessions are refused while the recordings file system has less free space.
    pub recordings_min_free: u64,
    pub limits: Limits,
    /// Where approval requests and standing approvals are kept (ConfigMaps, with the
    /// gateway's own identity); `None`: the pod's own namespace, else `podgate`.
    pub approvals_namespace: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default = "default_listen")]
    listen: SocketAddr,
    host_key: PathBuf,
    trusted_user_ca_keys: Vec<PathBuf>,
    #[serde(default)]
    revoked_keys: Option<PathBuf>,
    cluster: String,
    #[serde(default)]
    incident: Option<String>,
    policy: PathBuf,
    recordings: PathBuf,
    #[serde(default)]
    recordings_store: Option<serde_yaml::Value>,
    #[serde(default)]
    kubeconfig: Option<PathBuf>,
    #[serde(default)]
    kube_context: Option<String>,
    #[serde(default = "default_max_cert_lifetime", with = "duration")]
    max_cert_lifetime: Duration,
    #[serde(default = "default_clock_skew", with = "duration")]
    clock_skew: Duration,
    #[serde(default = "default_idle_timeout", with = "duration")]
    idle_timeout: Duration,
    #[serde(default)]
    metrics_listen: Option<SocketAddr>,
    #[serde(default = "default_min_free", with = "size")]
    recordings_min_free: u64,
    #[serde(default)]
    limits: Limits,
    #[serde(default)]
    approvals_namespace: Option<String>,
}

fn default_min_free() -> u64 {
    256 * 1024 * 1024
}

/// Byte sizes: a number with an optional unit (`512MiB`, `1GiB`, `100MB`, `4096`).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("bad size {text:?}"))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" => 1000,
        "KiB" => 1 << 10,
        "MB" => 1_000_000,
        "MiB" => 1 << 20,
        "GB" => 1_000_000_000,
        "GiB" => 1 << 30,
        "TB" => 1_000_000_000_000,
        "TiB" => 1 << 40,
        other => {
            return Err(format!(
                "bad size unit {other:?} in {text:?} (use B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {text:?} is too large"))
}

mod size {
    use serde::Deserialize;

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) => Ok(n),
            Raw::Text(t) => super::parse_size(&t).map_err(serde::de::Error::custom),
        }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 2222))
}
fn default_max_cert_lifetime() -> Duration {
    Duration::from_secs(12 * 3600)
}
fn default_clock_skew() -> Duration {
    Duration::from_secs(60)
}
fn default_idle_timeout() -> Duration {
    Duration::from_secs(15 * 60)
}

mod duration {
    use std::time::Duration;

    use serde::Deserialize;

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text)
            .map_err(|e| serde::de::Error::custom(format!("bad duration {text:?}: {e}")))
    }
}

/// Printable ASCII without spaces: what may go into HTTP headers and certificate options.
fn plain_token(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.bytes().all(|b| b.is_ascii_graphic() && b != b',')
}

impl Config {
    /// Parse the text of the configuration file at `path` (used for messages and to
    /// resolve relative paths).
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let raw: Raw = serde_yaml::from_str(text).map_err(|e| {
            ConfigError::Parse(match e.location() {
                Some(l) => format!("{file}:{}:{}: {e}", l.line(), l.column()),
                None => format!("{file}: {e}"),
            })
        })?;
        let invalid = |message: String| ConfigError::Invalid {
            file: file.clone(),
            message,
        };
        if !plain_token(&raw.cluster) {
            return Err(invalid(format!(
                "cluster {:?} must be non-empty printable ASCII without spaces or commas",
                raw.cluster
            )));
        }
        if let Some(i) = &raw.incident
            && !plain_token(i)
        {
            return Err(invalid(format!(
                "incident {i:?} must be non-empty printable ASCII without spaces or commas"
            )));
        }
        if raw.trusted_user_ca_keys.is_empty() {
            return Err(invalid(
                "trusted_user_ca_keys must name at least one file".into(),
            ));
        }
        if raw.max_cert_lifetime.is_zero() || raw.idle_timeout.is_zero() {
            return Err(invalid(
                "max_cert_lifetime and idle_timeout must be positive".into(),
            ));
        }
        raw.limits.check().map_err(&invalid)?;
        let recordings_store = match raw.recordings_store {
            None | Some(serde_yaml::Value::Null) => None,
            Some(v) => Some(
                store::RawStore::from_yaml(v)
                    .and_then(store::RawStore::validate)
                    .map_err(&invalid)?,
            ),
        };
        if let Some(ns) = &raw.approvals_namespace
            && !crate::request::is_dns_label(ns)
        {
            return Err(invalid(format!(
                "approvals_namespace {ns:?} is not a namespace name (a DNS label)"
            )));
        }
        let base = path.parent().unwrap_or(Path::new("."));
        let resolve = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
        Ok(Config {
            listen: raw.listen,
            host_key: resolve(raw.host_key),
            trusted_user_ca_keys: raw.trusted_user_ca_keys.into_iter().map(resolve).collect(),
            revoked_keys: raw.revoked_keys.map(resolve),
            cluster: raw.cluster,
            incident: raw.incident,
            policy: resolve(raw.policy),
            recordings: resolve(raw.recordings),
            recordings_store,
            kubeconfig: raw.kubeconfig.map(resolve),
            kube_context: raw.kube_context,
            max_cert_lifetime: raw.max_cert_lifetime,
            clock_skew: raw.clock_skew,
            idle_timeout: raw.idle_timeout,
            metrics_listen: raw.metrics_listen,
            recordings_min_free: raw.recordings_min_free,
            limits: raw.limits,
            approvals_namespace: raw.approvals_namespace,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
listen: 0.0.0.0:2222
host_key: /etc/podgate/ssh_host_ed25519_key
trusted_user_ca_keys: [/etc/podgate/user_ca.pub, ca2.pub]
revoked_keys: /etc/podgate/revoked
cluster: prod-eu-1
incident: INC-1234
policy: /etc/podgate/policy
recordings: /var/lib/podgate/recordings
recordings_store: null
kubeconfig: null
kube_context: null
max_cert_lifetime: 12h
clock_skew: 60s
idle_timeout: 15m
metrics_listen: 0.0.0.0:9090
recordings_min_free: 1GiB
limits:
  login_grace: 10s
  max_unauthenticated_per_source: 8
  penalty_exempt: [10.0.0.0/8]
  logs_record_cap: 16MiB
"#;

    #[test]
    fn the_design_example_parses_and_paths_resolve() {
        let c = Config::parse(Path::new("/etc/podgate/config.yaml"), FULL).unwrap();
        assert_eq!(c.cluster, "prod-eu-1");
        assert_eq!(c.incident.as_deref(), Some("INC-1234"));
        assert_eq!(
            c.trusted_user_ca_keys[1],
            PathBuf::from("/etc/podgate/ca2.pub")
        );
        assert_eq!(c.max_cert_lifetime, Duration::from_secs(43200));
        assert_eq!(c.idle_timeout, Duration::from_secs(900));
        assert_eq!(c.kubeconfig, None);
        assert_eq!(c.recordings_min_free, 1 << 30);
        assert_eq!(c.limits.login_grace, Duration::from_secs(10));
        assert_eq!(c.limits.max_unauthenticated_per_source, 8);
        assert_eq!(c.limits.logs_record_cap, 16 << 20);
        assert_eq!(c.limits.max_channels, Limits::default().max_channels);
    }

    #[test]
    fn sizes_parse_with_units() {
        let cases = [
            ("4096", Ok(4096)),
            ("512MiB", Ok(512 << 20)),
            ("1GB", Ok(1_000_000_000)),
            ("2 GiB", Ok(2 << 30)),
        ];
        for (text, want) in cases {
            assert_eq!(parse_size(text), want, "{text}");
        }
        for bad in ["", "MiB", "1PiB", "-1", "99999999999999999999TiB"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bad_configurations_name_the_file_and_line() {
        let minimal =
            "host_key: k\ntrusted_user_ca_keys: [ca.pub]\ncluster: c\npolicy: p\nrecordings: r\n";
        assert!(Config::parse(Path::new("c.yaml"), minimal).is_ok());
        let cases = [
            (
                format!("{minimal}colour: blue\n"),
                "c.yaml:6:1: unknown field `colour`",
            ),
            (minimal.replace("cluster: c", "cluster: 'a b'"), "cluster"),
            (minimal.replace("[ca.pub]", "[]"), "trusted_user_ca_keys"),
            (format!("{minimal}idle_timeout: soon\n"), "bad duration"),
            (minimal.replace("policy: p\n", ""), "missing field `policy`"),
            (format!("{minimal}incident: 'x,y'\n"), "incident"),
            (
                format!("{minimal}limits:\n  max_channel: 3\n"),
                "unknown field `max_channel`",
            ),
            (
                format!("{minimal}limits:\n  max_channels: 0\n"),
                "limits.max_channels must be at least 1",
            ),
        ];
        for (text, want) in cases {
            let err = Config::parse(Path::new("c.yaml"), &text)
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{err} does not contain {want}");
        }
    }
}
