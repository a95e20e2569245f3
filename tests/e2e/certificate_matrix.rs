//! The certificate matrix: trust, type, algorithm, validity edges, principals, key ids,
//! critical options, extensions, scope, serials and signatures, through the real `ssh`
//! client. Certificates come from the real `ssh-keygen -s` where it can make them, and from
//! ssh-key's builder where it cannot (control characters, huge fields, exact instants).
//! Every refusal must be an authentication failure with the expected code in the audit log
//! and no Kubernetes call; the accepted controls keep the matrix honest.
//!
//! Cases run concurrently, each from its own loopback source address (127.0.0.N), which
//! is how its audit events are told apart (refusals made inside russh carry no key id).

use std::path::PathBuf;

use serde_json::Value;

use super::certificate_forge::{RawSpec, build, now, o, raw_certificate, string};
use super::gateway_support::{TestGateway, keygen};
use super::support::{run, text};

/// How a case's certificate is made.
enum Make {
    /// `ssh-keygen -s CA` with these arguments, for the test user key.
    Keygen(Vec<String>),
    /// ssh-key's builder, signed by the test CA (alice, one hour).
    Built,
    /// No certificate: log in with this private key file name in the test directory.
    PlainKey(&'static str),
    /// `ssh-keygen -s OTHER_CA` (a CA the gateway does not trust).
    OtherCa(Vec<String>),
    /// A certificate from the builder with one byte of its signature changed.
    Tampered,
    /// Encoded byte by byte (see [`raw_certificate`]) for what no builder makes.
    Raw(fn(&mut RawSpec)),
}

enum Expect {
    /// Authentication fails; the gateway audits one of these codes.
    Refused(&'static [&'static str]),
    /// The real `ssh` will not even offer the certificate (it checks the signature, the
    /// type and the principal count itself): login fails and the gateway only ever saw
    /// the plain key. podgate's own checks for these are unit-tested (src/auth_tests.rs).
    NotOffered,
    Accepted,
}

struct Case {
    name: &'static str,
    make: Make,
    login: &'static str,
    /// Extra ssh arguments before the command (e.g. `-t`).
    command: &'static [&'static str],
    expect: Expect,
}

/// The usual `ssh-keygen -s` arguments for alice, with `extra` appended.
fn alice(extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = [
        "-I",
        "alice@corp.example",
        "-n",
        "alice",
        "-V",
        "-1m:+1h",
        "-z",
        "11",
        "-O",
        "extension:groups@podgate=oncall-payments",
        "-O",
        "critical:cluster@podgate=test",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

/// alice's certificate arguments with one option (`-I`, `-n`, `-V`, `-z`) replaced.
fn alice_with(flag: &str, value: &str) -> Vec<String> {
    let mut v = alice(&[]);
    if let Some(i) = v.iter().position(|a| a == flag) {
        v[i + 1] = value.to_owned();
    }
    v
}

const WHOAMI: &[&str] = &["whoami"];

fn cases() -> Vec<Case> {
    use Expect::*;
    use Make::*;
    let c = |name, make, login, expect| Case {
        name,
        make,
        login,
        command: WHOAMI,
        expect,
    };
    vec![
        // Controls: these must be accepted, or the matrix proves nothing.
        c(
            "ed25519 user key, ed25519 CA",
            Keygen(alice(&[])),
            "alice",
            Accepted,
        ),
        c("builder certificate", Built, "alice", Accepted),
        c(
            "largest serial",
            Keygen(alice_with("-z", "18446744073709551615")),
            "alice",
            Accepted,
        ),
        c(
            "unknown extension is ignored",
            Keygen(alice(&["-O", "extension:future@example.com=1"])),
            "alice",
            Accepted,
        ),
        c(
            "one of many principals",
            Keygen(alice_with("-n", "bob,alice,carol")),
            "alice",
            Accepted,
        ),
        // Trust.
        c(
            "untrusted CA",
            OtherCa(alice(&[])),
            "alice",
            Refused(&["untrusted_ca"]),
        ),
        c(
            "plain user key",
            PlainKey("user"),
            "alice",
            Refused(&["not_a_certificate"]),
        ),
        c(
            "CA key used as a plain key",
            PlainKey("ca"),
            "alice",
            Refused(&["not_a_certificate"]),
        ),
        c(
            "chained CA: signed by a key the CA certified",
            OtherCa(alice(&[])),
            "alice",
            Refused(&["untrusted_ca"]),
        ),
        c(
            "host certificate",
            Keygen(alice(&["-h"])),
            "alice",
            NotOffered,
        ),
        c(
            "host certificate from the builder",
            Raw(|s| s.host = true),
            "alice",
            NotOffered,
        ),
        // Signature.
        c("signature changed", Tampered, "alice", NotOffered),
        // Validity edges.
        c(
            "expired an hour ago",
            Keygen(alice_with("-V", "-2h:-1h")),
            "alice",
            Refused(&["expired_or_not_yet_valid", "expired"]),
        ),
        c(
            "valid from the future",
            Keygen(alice_with("-V", "+1h:+2h")),
            "alice",
            Refused(&["expired_or_not_yet_valid", "not_yet_valid"]),
        ),
        c(
            "expires at this very second",
            Raw(|s| s.before = now()),
            "alice",
            Refused(&["expired_or_not_yet_valid", "expired"]),
        ),
        c(
            "valid_before before valid_after",
            Raw(|s| {
                s.after = now() + 60;
                s.before = now() - 60;
            }),
            "alice",
            Refused(&[
                "expired_or_not_yet_valid",
                "invalid_validity",
                "not_yet_valid",
            ]),
        ),
        c("raw control certificate", Raw(|_| {}), "alice", Accepted),
        c(
            "duplicated critical option",
            Raw(|s| s.critical.push(("cluster@podgate".into(), o("test")))),
            "alice",
            Refused(&["unparsable_key", "bad_signature"]),
        ),
        c(
            "critical option with trailing data",
            Raw(|s| {
                s.critical = vec![(
                    "cluster@podgate".into(),
                    [string(b"test"), vec![0, 0, 0]].concat(),
                )]
            }),
            "alice",
            Refused(&["unparsable_key", "bad_signature"]),
        ),
        c(
            "critical option data that is not a string",
            Raw(|s| s.critical = vec![("cluster@podgate".into(), b"te".to_vec())]),
            "alice",
            Refused(&["unparsable_key", "bad_signature"]),
        ),
        c(
            "lifetime over max_cert_lifetime",
            Keygen(alice_with("-V", "-1m:+13h")),
            "alice",
            Refused(&["lifetime_too_long"]),
        ),
        c(
            "never expires",
            Keygen(alice_with("-V", "always:forever")),
            "alice",
            Refused(&["lifetime_too_long"]),
        ),
        // Principals.
        c(
            "no principals (valid for anyone)",
            Raw(|s| s.principals.clear()),
            "alice",
            Refused(&["no_principals"]),
        ),
        c(
            "login is not a principal",
            Keygen(alice(&[])),
            "bob",
            Refused(&["principal_mismatch"]),
        ),
        c(
            "wildcard principal",
            Keygen(alice_with("-n", "*")),
            "alice",
            Refused(&["principal_mismatch"]),
        ),
        c(
            "comma inside a principal",
            Raw(|s| s.principals = vec!["alice,bob".into()]),
            "alice",
            Refused(&["principal_mismatch", "bad_principal"]),
        ),
        c(
            "300 principals",
            Raw(|s| {
                s.principals = (0..300)
                    .map(|i| format!("p{i}"))
                    .chain(["alice".into()])
                    .collect()
            }),
            "alice",
            NotOffered,
        ),
        c(
            "very long principal",
            Raw(|s| s.principals = vec!["alice".into(), "x".repeat(5000)]),
            "alice",
            Refused(&["bad_principal"]),
        ),
        c(
            "principal with a control character",
            Raw(|s| s.principals = vec!["alice".into(), "al\u{1b}[2Jice".into()]),
            "alice",
            Refused(&["bad_principal"]),
        ),
        // Key ids.
        c(
            "empty key id",
            Keygen(alice_with("-I", "")),
            "alice",
            Refused(&["empty_key_id"]),
        ),
        c(
            "key id with an escape sequence",
            Raw(|s| s.key_id = "alice\u{1b}[31m@corp".into()),
            "alice",
            Refused(&["bad_key_id"]),
        ),
        c(
            "key id with a newline",
            Raw(|s| s.key_id = "alice\nImpersonate-User: root".into()),
            "alice",
            Refused(&["bad_key_id"]),
        ),
        c(
            "huge key id",
            Raw(|s| s.key_id = "a".repeat(10_000)),
            "alice",
            Refused(&["bad_key_id"]),
        ),
        c(
            "key id with a comma",
            Keygen(alice_with("-I", "alice,system:masters")),
            "alice",
            Refused(&["bad_key_id"]),
        ),
        c(
            "non-ASCII key id",
            Raw(|s| s.key_id = "alicé@corp".into()),
            "alice",
            Refused(&["bad_key_id"]),
        ),
        // Serial.
        c(
            "serial 0",
            Keygen(alice_with("-z", "0")),
            "alice",
            Refused(&["serial_zero"]),
        ),
        // Critical options.
        c(
            "unknown critical option",
            Keygen(alice(&["-O", "critical:future@example.com=1"])),
            "alice",
            Refused(&["unknown_critical_option"]),
        ),
        c(
            "source-address excludes the client",
            Keygen(alice(&["-O", "source-address=10.0.0.0/8"])),
            "alice",
            Refused(&["source_address_mismatch"]),
        ),
        c(
            "malformed source-address",
            Raw(|s| s.critical.push(("source-address".into(), o("10.0.0.0/33")))),
            "alice",
            Refused(&["bad_critical_option"]),
        ),
        c(
            "other cluster",
            Raw(|s| s.critical = vec![("cluster@podgate".into(), o("prod"))]),
            "alice",
            Refused(&["cluster_mismatch"]),
        ),
        c(
            "no cluster option (any cluster)",
            Raw(|s| s.critical.clear()),
            "alice",
            Accepted,
        ),
        c(
            "empty cluster option",
            Raw(|s| s.critical = vec![("cluster@podgate".into(), o(""))]),
            "alice",
            Refused(&["bad_critical_option", "cluster_mismatch", "bad_signature"]),
        ),
        c(
            "incident on a general gateway",
            Keygen(alice(&["-O", "critical:incident@podgate=inc-1"])),
            "alice",
            Refused(&["incident_not_allowed"]),
        ),
        c(
            "malformed namespaces glob",
            Keygen(alice(&["-O", "critical:namespaces@podgate=pay["])),
            "alice",
            Refused(&["bad_critical_option"]),
        ),
        c(
            "unknown action in actions@podgate",
            Keygen(alice(&["-O", "critical:actions@podgate=list,delete"])),
            "alice",
            Refused(&["bad_critical_option"]),
        ),
        c(
            "empty pods@podgate",
            Keygen(alice(&["-O", "critical:pods@podgate="])),
            "alice",
            // ssh-keygen encodes an empty value as an empty string inside the data, which
            // ssh-key re-encodes differently, so the signature check (in russh) fails first.
            Refused(&["bad_critical_option", "bad_signature"]),
        ),
        c(
            "critical option value with a control character",
            Raw(|s| s.critical = vec![("cluster@podgate".into(), o("te\u{7}st"))]),
            "alice",
            Refused(&["bad_critical_option", "cluster_mismatch"]),
        ),
        // Extensions.
        c(
            "groups with a control character",
            Raw(|s| s.extensions = vec![("groups@podgate".into(), o("sre\u{1b}"))]),
            "alice",
            Refused(&["bad_extension"]),
        ),
        c(
            "huge reason",
            Raw(|s| {
                s.extensions
                    .push(("reason@podgate".into(), o(&"r".repeat(5000))))
            }),
            "alice",
            Refused(&["bad_extension"]),
        ),
    ]
}

/// Write the case's certificate (if any) and return the ssh arguments that use it.
async fn prepare(
    gw: &TestGateway,
    i: usize,
    make: &Make,
    other_ca: &std::path::Path,
) -> (PathBuf, Vec<String>) {
    let dir = gw.dir.path();
    let cert_path = dir.join(format!("matrix{i}-cert.pub"));
    let mut extra = Vec::new();
    match make {
        Make::Keygen(args) => {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            return (gw.sign(&format!("matrix{i}"), &args).await, extra);
        }
        Make::OtherCa(args) => {
            let pub_path = dir.join(format!("matrix{i}.pub"));
            std::fs::copy(gw.key.with_extension("pub"), &pub_path).unwrap();
            let mut all = vec!["-q", "-s", other_ca.to_str().unwrap()];
            all.extend(args.iter().map(String::as_str));
            all.push(pub_path.to_str().unwrap());
            keygen(&all).await;
        }
        Make::Built => {
            let cert = build(gw);
            std::fs::write(&cert_path, cert.to_openssh().unwrap() + "\n").unwrap();
        }
        Make::Tampered => {
            let cert = build(gw);
            let line = cert.to_openssh().unwrap();
            let (kind, rest) = line.split_once(' ').unwrap();
            use base64::Engine as _;
            let engine = base64::engine::general_purpose::STANDARD;
            let mut blob = engine.decode(rest.split(' ').next().unwrap()).unwrap();
            // The last bytes are the Ed25519 signature.
            let last = blob.len() - 5;
            blob[last] ^= 0x40;
            std::fs::write(&cert_path, format!("{kind} {}\n", engine.encode(blob))).unwrap();
        }
        Make::Raw(edit) => {
            std::fs::write(&cert_path, raw_certificate(gw, *edit)).unwrap();
        }
        Make::PlainKey(name) => {
            // Offer only this key: the certificate file named does not exist.
            extra = vec!["-i".to_owned(), dir.join(name).to_str().unwrap().to_owned()];
            return (dir.join("no-such-cert.pub"), extra);
        }
    }
    (cert_path, extra)
}

/// The audit events that came from `ip`.
fn events_from(events: &[Value], ip: &str) -> Vec<Value> {
    events
        .iter()
        .filter(|e| {
            e["client"]
                .as_str()
                .is_some_and(|c| c.rsplit_once(':').is_some_and(|(a, _)| a == ip))
        })
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_certificate_matrix() {
    let gw = TestGateway::start().await;
    let other_ca = gw.dir.path().join("other-ca");
    keygen(&[
        "-q",
        "-t",
        "ed25519",
        "-N",
        "",
        "-f",
        other_ca.to_str().unwrap(),
    ])
    .await;
    let cases = cases();
    assert!(cases.len() >= 40, "{} cases", cases.len());
    let before = gw.pod_calls();

    let mut runs = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let (cert, extra) = prepare(&gw, i, &case.make, &other_ca).await;
        let ip = format!("127.0.0.{}", i + 10);
        let mut args: Vec<String> = vec!["-o".into(), format!("BindAddress={ip}")];
        args.extend(extra);
        args.extend(case.command.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let cmd = gw.ssh(&cert, case.login, &args);
        runs.push(async move { (ip, run(cmd, None).await) });
    }
    let outputs = futures::future::join_all(runs).await;

    let events = gw.events();
    let mut failures = Vec::new();
    for (case, (ip, out)) in cases.iter().zip(outputs) {
        let mine = events_from(&events, &ip);
        let stderr = text(&out.stderr);
        let accepted = mine.iter().any(|e| e["event"] == "auth.accepted");
        match case.expect {
            Expect::Accepted => {
                if out.status.code() != Some(0) || !accepted {
                    failures.push(format!(
                        "{}: not accepted ({:?}): {stderr} {mine:?}",
                        case.name,
                        out.status.code()
                    ));
                }
            }
            Expect::NotOffered => {
                let offered = mine
                    .iter()
                    .any(|e| e["event"] == "auth.rejected" && e["code"] != "not_a_certificate");
                if out.status.code() != Some(255) || accepted || offered {
                    failures.push(format!(
                        "{}: expected ssh not to offer it, got exit {:?}: {stderr} {mine:?}",
                        case.name,
                        out.status.code()
                    ));
                }
            }
            Expect::Refused(codes) => {
                let code = mine
                    .iter()
                    .filter(|e| e["event"] == "auth.rejected")
                    .filter_map(|e| e["code"].as_str())
                    .find(|c| codes.contains(c));
                if out.status.code() != Some(255) || accepted || code.is_none() {
                    failures.push(format!(
                        "{}: expected refusal {codes:?}, got exit {:?}, accepted {accepted}: {stderr} {mine:?}",
                        case.name,
                        out.status.code()
                    ));
                }
            }
        }
    }
    if let (Some(before), Some(after)) = (before, gw.pod_calls()) {
        assert_eq!(
            before.len(),
            after.len(),
            "Kubernetes calls: {:?}",
            &after[before.len()..]
        );
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
