//! The fixture: which namespaces and pods the local cluster serves, what each container
//! logs, and what answers on each declared port (DESIGN.md §8).
//!
//! Parsing is strict (`deny_unknown_fields`): a typo in a fixture is an error naming the
//! file, not a silently different cluster. Validation rejects duplicate names, names
//! that are not DNS-1123 labels, and port targets that are not loopback addresses, so that
//! nothing the fixture says can send traffic off this machine.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

/// The built-in demo cluster served when no `--fixture` is given.
pub const DEMO_FIXTURE: &str = include_str!("demo-fixture.yaml");

#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    #[error("{source_name}: {message}")]
    Parse {
        source_name: String,
        message: String,
    },
    #[error("{source_name}: {message}")]
    Invalid {
        source_name: String,
        message: String,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fixture {
    #[serde(default)]
    pub namespaces: Vec<NamespaceSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamespaceSpec {
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub pods: Vec<PodSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PodSpec {
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub phase: Phase,
    pub containers: Vec<ContainerSpec>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum Phase {
    #[default]
    Running,
    Pending,
    Succeeded,
    Failed,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Running => "Running",
            Phase::Pending => "Pending",
            Phase::Succeeded => "Succeeded",
            Phase::Failed => "Failed",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerSpec {
    pub name: String,
    /// Image reference shown in the pod spec; defaults to `registry.local/CONTAINER:dev`.
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default)]
    pub ports: Vec<PortSpec>,
    /// Lines the container "wrote" when it started.
    #[serde(default)]
    pub logs: Vec<String>,
    /// Period of the numbered heartbeat line appended to the log.
    #[serde(default, with = "opt_duration")]
    pub log_every: Option<Duration>,
    /// Log of the previous (terminated) instance. When present, the container reports one
    /// restart and `logs --previous` serves these lines; without it `--previous` fails the
    /// way a real cluster does for a container that never restarted.
    #[serde(default)]
    pub previous_logs: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortSpec {
    pub port: u16,
    #[serde(default)]
    pub serve: Serve,
}

/// What answers on a declared container port.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Serve {
    /// Answers any HTTP request with the pod and port.
    #[default]
    Http,
    /// Writes back every byte it reads.
    Echo,
    /// Forwards to a local (loopback) address.
    Address(SocketAddr),
}

impl<'de> Deserialize<'de> for Serve {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        match text.as_str() {
            "http" => Ok(Serve::Http),
            "echo" => Ok(Serve::Echo),
            other => other
                .parse::<SocketAddr>()
                .map(Serve::Address)
                .map_err(|_| {
                    serde::de::Error::custom(format!(
                        "serve: expected \"http\", \"echo\" or a loopback HOST:PORT, got {other:?}"
                    ))
                }),
        }
    }
}

mod opt_duration {
    use std::time::Duration;

    use serde::Deserialize;

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        let text: Option<String> = Option::deserialize(d)?;
        match text {
            None => Ok(None),
            Some(t) => humantime::parse_duration(&t)
                .map(Some)
                .map_err(|e| serde::de::Error::custom(format!("bad duration {t:?}: {e}"))),
        }
    }
}

impl Fixture {
    /// Parse and validate a fixture; `source_name` names the file in errors.
    pub fn parse(source_name: &str, text: &str) -> Result<Fixture, FixtureError> {
        let fixture: Fixture = serde_yaml::from_str(text).map_err(|e| FixtureError::Parse {
            source_name: source_name.to_owned(),
            message: e.to_string(),
        })?;
        fixture
            .validate()
            .map_err(|message| FixtureError::Invalid {
                source_name: source_name.to_owned(),
                message,
            })?;
        Ok(fixture)
    }

    /// The built-in demo cluster.
    pub fn demo() -> Result<Fixture, FixtureError> {
        Fixture::parse("built-in demo fixture", DEMO_FIXTURE)
    }

    fn validate(&self) -> Result<(), String> {
        let mut namespaces = BTreeSet::new();
        for ns in &self.namespaces {
            check_name("namespace", &ns.name)?;
            if !namespaces.insert(ns.name.as_str()) {
                return Err(format!("namespace {:?} is declared twice", ns.name));
            }
            let mut pods = BTreeSet::new();
            for pod in &ns.pods {
                check_name("pod", &pod.name)?;
                if !pods.insert(pod.name.as_str()) {
                    return Err(format!("pod {}/{} is declared twice", ns.name, pod.name));
                }
                if pod.containers.is_empty() {
                    return Err(format!("pod {}/{} has no containers", ns.name, pod.name));
                }
                let mut containers = BTreeSet::new();
                for c in &pod.containers {
                    check_name("container", &c.name)?;
                    if !containers.insert(c.name.as_str()) {
                        return Err(format!(
                            "container {:?} is declared twice in pod {}/{}",
                            c.name, ns.name, pod.name
                        ));
                    }
                    if c.log_every.is_some_and(|d| d < Duration::from_millis(10)) {
                        return Err(format!(
                            "log_every of {}/{}/{} is below 10ms",
                            ns.name, pod.name, c.name
                        ));
                    }
                    let mut ports = BTreeSet::new();
                    for p in &c.ports {
                        if p.port == 0 || !ports.insert(p.port) {
                            return Err(format!(
                                "port {} of {}/{}/{} is zero or declared twice",
                                p.port, ns.name, pod.name, c.name
                            ));
                        }
                        if let Serve::Address(addr) = p.serve
                            && !addr.ip().is_loopback()
                        {
                            return Err(format!(
                                "port {} of {}/{}: {addr} is not a loopback address; the \
                                 devcluster only forwards to 127.0.0.0/8 or ::1",
                                p.port, ns.name, pod.name
                            ));
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// DNS-1123 label: what Kubernetes accepts for namespace, pod (subdomain, but labels are
/// the common case) and container names. Anything else would make paths ambiguous.
fn check_name(what: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !name.starts_with(['-', '.'])
        && !name.ends_with(['-', '.']);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} name {name:?} is not a valid Kubernetes name (lower-case letters, digits, '-', '.')"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_fixture_parses() {
        let f = Fixture::demo().unwrap();
        assert!(f.namespaces.iter().any(|n| n.name == "payments"));
    }

    #[test]
    fn the_design_example_parses() {
        let text = r#"
namespaces:
  - name: payments
    pods:
      - name: payments-api-0
        labels: {app: payments-api}
        annotations: {}
        phase: Running
        containers:
          - name: api
            ports:
              - {port: 8080, serve: http}
              - {port: 9000, serve: echo}
              - {port: 5432, serve: "127.0.0.1:5432"}
            logs: ["starting payments-api", "listening on :8080"]
            log_every: 1s
"#;
        let f = Fixture::parse("t", text).unwrap();
        let c = &f.namespaces[0].pods[0].containers[0];
        assert_eq!(c.log_every, Some(Duration::from_secs(1)));
        assert_eq!(
            c.ports[2].serve,
            Serve::Address("127.0.0.1:5432".parse().unwrap())
        );
    }

    #[test]
    fn bad_fixtures_are_refused_with_the_reason() {
        let cases = [
            (
                "unknown key",
                "namespaces: [{name: a, podz: []}]",
                "unknown field",
            ),
            (
                "dup namespace",
                "namespaces: [{name: a}, {name: a}]",
                "declared twice",
            ),
            (
                "bad name",
                "namespaces: [{name: A_b}]",
                "not a valid Kubernetes name",
            ),
            (
                "no containers",
                "namespaces: [{name: a, pods: [{name: p, containers: []}]}]",
                "no containers",
            ),
            (
                "non-loopback forward",
                "namespaces: [{name: a, pods: [{name: p, containers: [{name: c, ports: [{port: 1, serve: '10.0.0.1:5432'}]}]}]}]",
                "not a loopback",
            ),
            (
                "bad serve",
                "namespaces: [{name: a, pods: [{name: p, containers: [{name: c, ports: [{port: 1, serve: ftp}]}]}]}]",
                "expected \"http\"",
            ),
            (
                "bad duration",
                "namespaces: [{name: a, pods: [{name: p, containers: [{name: c, log_every: soon}]}]}]",
                "bad duration",
            ),
            (
                "dup port",
                "namespaces: [{name: a, pods: [{name: p, containers: [{name: c, ports: [{port: 1}, {port: 1}]}]}]}]",
                "declared twice",
            ),
        ];
        for (what, text, want) in cases {
            let err = Fixture::parse("f.yaml", text).expect_err(what).to_string();
            assert!(err.starts_with("f.yaml: "), "{what}: {err}");
            assert!(err.contains(want), "{what}: {err}");
        }
    }
}
