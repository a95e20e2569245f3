//! More certificate-check tests (see auth_tests.rs for the helpers).

use std::path::PathBuf;
use std::sync::Arc;

use russh::keys::PrivateKey;

use super::tests::*;
use super::*;
// Explicit, so it wins over `super::*`'s `verify`.
use super::tests::verify;

#[test]
fn identity_fields() {
    let cert = mk(|s| {
        s.principals = Some(vec!["root".into(), "alice".into()]);
        s.critical.push(("force-command", "pods payments".into()));
        s.critical
            .push(("namespaces@podgate", "payments, payments-*".into()));
        s.critical.push(("actions@podgate", "logs,exec".into()));
        s.ext
            .push(("groups@podgate", " oncall , ,sre,oncall".into()));
        s.ext.push(("reason@podgate", "INC-7, db down".into()));
        s.ext.push(("permit-port-forwarding", String::new()));
    });
    let id = verify(&cert, "alice", None, NOW, &settings(None)).unwrap();
    let fingerprint = |k: PrivateKey| k.public_key().fingerprint(HashAlg::Sha256).to_string();
    assert_eq!(
        (id.key_id.as_str(), id.principal.as_str()),
        ("alice@corp.example", "alice")
    );
    assert_eq!(id.serial, 7);
    assert_eq!(id.ca_fingerprint, fingerprint(key(1)));
    assert_eq!(id.key_fingerprint, fingerprint(key(2)));
    assert_eq!(id.groups, ["oncall", "sre"]);
    assert_eq!(id.reason.as_deref(), Some("INC-7, db down"));
    assert_eq!((id.valid_after, id.valid_before), (NOW - 60, NOW + HOUR));
    assert_eq!(id.force_command.as_deref(), Some("pods payments"));
    assert!(id.permit_pty && id.permit_port_forwarding);
    let lines = [
        "namespaces: payments, payments-*",
        "pods: any",
        "actions: logs, exec",
    ];
    assert_eq!(id.scope.describe(), lines);

    let plain = verify(&mk(|s| s.ext.clear()), "alice", None, NOW, &settings(None)).unwrap();
    assert!(!plain.permit_pty && !plain.permit_port_forwarding && plain.groups.is_empty());
    assert_eq!(plain.reason, None);
    assert_eq!(
        plain.scope.describe(),
        ["namespaces: any", "pods: any", "actions: any"]
    );
}

#[test]
fn scope_checks() {
    let scope = Scope::from_cert_values(
        Some("payments,payments-*"),
        Some("api-*"),
        Some("logs,exec"),
    );
    let scope = scope.unwrap();
    assert_eq!(scope.check(Action::Exec, "payments-eu", "api-0"), Ok(()));
    let denied = |a, ns, pod| scope.check(a, ns, pod).unwrap_err();
    assert_eq!(
        denied(Action::Logs, "checkout", "api-0"),
        r#"certificate scope does not include namespace "checkout" (allows: payments, payments-*)"#
    );
    assert_eq!(
        denied(Action::Shell, "payments", "api-0"),
        r#"certificate scope does not include action "shell" (allows: logs, exec)"#
    );
    assert_eq!(
        denied(Action::Logs, "payments", "db-0"),
        r#"certificate scope does not include pod "db-0" (allows: api-*)"#
    );
    assert!(denied(Action::Logs, "pay\nments", "api-0").contains(r#""pay\nments""#));
    assert!(!scope.allows_namespace("payment") && scope.allows_namespace("payments-"));
    assert!(!scope.allows_action(Action::PortForward) && scope.allows_pod("api-"));
    // literal_separator off: `*` also crosses `/` (Kubernetes names never contain one).
    assert!(
        Scope::from_cert_values(None, Some("*"), None)
            .unwrap()
            .allows_pod("a/b")
    );
    assert_eq!(
        Scope::default().check(Action::Shell, "any", "thing"),
        Ok(())
    );
    assert!(Scope::from_cert_values(None, None, Some("")).is_err());
    assert!(Scope::from_cert_values(Some(" , "), None, None).is_err());
}

#[test]
fn rejection_messages() {
    let expired = Rejection::Expired(1_795_323_600).to_string();
    assert_eq!(expired, "certificate expired at 2026-11-22T05:00:00Z");
    assert_eq!(
        Rejection::SerialZero.to_string(),
        "certificate serial is 0 (serial 0 cannot be revoked; sign with ssh-keygen -z SERIAL)"
    );
    // Far-future times must not panic (humantime refuses years past 9999).
    assert!(
        Rejection::NotYetValid(u64::MAX - 1)
            .to_string()
            .contains("unix time")
    );
    let too_long = |before| Rejection::LifetimeTooLong {
        valid_after: 0,
        valid_before: before,
        max_secs: 43_200,
    };
    let never = "certificate never expires (maximum lifetime is 12h)";
    assert_eq!(too_long(u64::MAX).to_string(), never);
    let day = "certificate lifetime 1day exceeds the maximum 12h";
    assert_eq!(too_long(86_400).to_string(), day);
    let hostile = Rejection::PrincipalMismatch(format!("root\n\u{1b}[31m{}", "x".repeat(100)));
    let text = hostile.to_string();
    assert!(is_printable_ascii(&text), "{text}");
    assert!(
        text.contains(r"\n\u{1b}[31m") && text.contains("...\""),
        "{text}"
    );
}

#[test]
fn trusted_ca_parsing() {
    let (a, b) = (pub_line(&key(1)), pub_line(&key(10)));
    let cas = TrustedCas::parse("ca.pub", &format!("\n# c\n  {a} a comment\n{b}\n{a}\n")).unwrap();
    assert_eq!(cas.len(), 2, "duplicates are kept once");
    let fingerprint = key(1).public_key().fingerprint(HashAlg::Sha256).to_string();
    assert_eq!(cas.fingerprints()[0], fingerprint);
    assert!(cas.fingerprints()[1].starts_with("SHA256:"));

    let err = |text: &str| TrustedCas::parse("ca.pub", text).unwrap_err().to_string();
    let garbage = err(&format!("{a}\nssh-ed25519 not-base64!\n"));
    assert!(
        garbage.starts_with("ca.pub line 2: not an OpenSSH public key"),
        "{garbage}"
    );
    let cert = err(&mk(|_| {}).to_openssh().unwrap());
    assert_eq!(
        cert,
        "ca.pub line 1: a certificate, but a CA must be a plain public key"
    );
    assert_eq!(err("# nothing\n"), "ca.pub: no public keys found");
    assert!(err("cert-authority ssh-ed25519 AAAA").contains("not an OpenSSH public key"));
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("small");
    keygen(&format!("-q -t rsa -b 1024 -N '' -f {}", small.display()));
    let small = std::fs::read_to_string(small.with_extension("pub")).unwrap();
    assert!(err(&small).contains("RSA CA key of 1024 bits"));

    let mut merged = TrustedCas::parse("a", &a).unwrap();
    merged.merge(TrustedCas::parse("b", &format!("{b}\n{a}")).unwrap());
    assert_eq!(merged.len(), 2);
    assert!(!merged.is_empty());
}

/// A CA and a user key made by the real ssh-keygen in a fresh temp dir.
struct KeygenCa {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    user: PathBuf,
    settings: Settings,
}

impl KeygenCa {
    fn new(ca_type: &str) -> KeygenCa {
        let dir = tempfile::tempdir().unwrap();
        let (ca, user) = (dir.path().join("ca"), dir.path().join("id"));
        keygen(&format!("-q -t {ca_type} -N '' -C ca -f {}", ca.display()));
        keygen(&format!("-q -t ed25519 -N '' -f {}", user.display()));
        let text = std::fs::read_to_string(ca.with_extension("pub")).unwrap();
        let settings = Settings {
            cas: TrustedCas::parse("ca.pub", &text).unwrap(),
            ..settings(None)
        };
        KeygenCa {
            _dir: dir,
            ca,
            user,
            settings,
        }
    }

    /// `ssh-keygen -s ca ARGS id.pub`, parsed with `Certificate::from_openssh`.
    fn sign(&self, args: &str) -> Certificate {
        let (ca, user) = (self.ca.display(), self.user.with_extension("pub"));
        keygen(&format!("-q -s {ca} {args} {}", user.display()));
        let text = std::fs::read_to_string(self.user.with_file_name("id-cert.pub")).unwrap();
        Certificate::from_openssh(&text).unwrap()
    }

    fn verify(&self, cert: &Certificate, user: &str, peer: &str) -> Result<Identity, Rejection> {
        let now = std::time::SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        verify(cert, user, peer.parse().ok(), now, &self.settings)
    }
}

#[test]
fn ssh_keygen_certificates() {
    let k = KeygenCa::new("ed25519");
    let base = "-I alice@corp.example -n alice -z 7 -V +1h";

    let opts = "-O critical:namespaces@podgate=payments -O extension:groups@podgate=a,b";
    let id = k
        .verify(&k.sign(&format!("{base} {opts}")), "alice", "")
        .unwrap();
    assert_eq!((id.key_id.as_str(), id.serial), ("alice@corp.example", 7));
    assert_eq!(id.groups, ["a", "b"]);
    assert!(
        id.permit_pty && id.permit_port_forwarding,
        "ssh-keygen's default extensions"
    );
    assert!(id.scope.allows_namespace("payments") && !id.scope.allows_namespace("checkout"));

    // Several critical options (ssh-keygen sorts them) after -O clear.
    let opts = "-O clear -O critical:pods@podgate=api-* -O critical:actions@podgate=logs \
                -O source-address=10.0.0.0/8 -O force-command=whoami";
    let cert = k.sign(&format!("{base} {opts}"));
    let id = k.verify(&cert, "alice", "10.9.8.7").unwrap();
    assert!(!id.permit_pty && !id.permit_port_forwarding);
    assert_eq!(id.force_command.as_deref(), Some("whoami"));
    assert_eq!(id.scope.describe()[1..], ["pods: api-*", "actions: logs"]);
    assert_eq!(
        outcome(&k.verify(&cert, "alice", "11.0.0.1")),
        "source_address_mismatch"
    );
    assert_eq!(
        outcome(&k.verify(&cert, "bob", "10.0.0.1")),
        "principal_mismatch"
    );

    // ssh-keygen defaults podgate refuses: no -z is serial 0, no -n is every principal,
    // no -V is forever. And -h makes a host certificate.
    let refused = |args: &str| outcome(&k.verify(&k.sign(args), "alice", ""));
    assert_eq!(
        refused("-I alice@corp.example -n alice -V +1h"),
        "serial_zero"
    );
    assert_eq!(
        refused("-I alice@corp.example -z 9 -V +1h"),
        "no_principals"
    );
    assert_eq!(
        refused("-I alice@corp.example -n alice -z 9"),
        "lifetime_too_long"
    );
    assert_eq!(refused(&format!("{base} -h")), "host_certificate");
}

#[test]
fn ssh_keygen_rsa_signature_algorithms() {
    let k = KeygenCa::new("rsa");
    let base = "-I alice@corp.example -n alice -z 7 -V +1h";
    for (alg, want) in [
        ("rsa-sha2-512", OK),
        ("rsa-sha2-256", OK),
        ("ssh-rsa", "weak_signature_algorithm"),
    ] {
        let cert = k.sign(&format!("{base} -t {alg}"));
        assert_eq!(cert.signature().algorithm().as_str(), alg);
        assert_eq!(outcome(&k.verify(&cert, "alice", "")), want, "{alg}");
    }
}

#[test]
fn revocation_is_checked_after_the_certificate_is_authentic() {
    let s = settings(None);
    let list =
        |text: &str| Revocations::List(Arc::new(RevocationList::parse(text.as_bytes()).unwrap()));
    let unusable = Revocations::Unavailable("cannot read /etc/podgate/revoked".into());
    let with = |cert: &Certificate, r: &Revocations| {
        outcome(&super::verify(cert, "alice", None, NOW, &s, r))
    };
    let plain = mk(|_| {});
    let untrusted = mk_with(&key(99), |_| {});
    let rows: Vec<(&str, &Certificate, Revocations, &str)> = vec![
        ("none configured", &plain, Revocations::NotConfigured, OK),
        ("empty list", &plain, list(""), OK),
        ("its serial", &plain, list("serial: 7\n"), "revoked"),
        (
            "a range holding it",
            &plain,
            list("serial: 5-9\n"),
            "revoked",
        ),
        ("another serial", &plain, list("serial: 8\n"), OK),
        (
            "its key id",
            &plain,
            list("id: alice@corp.example\n"),
            "revoked",
        ),
        (
            "unusable list",
            &plain,
            unusable.clone(),
            "revocation_unavailable",
        ),
        // A forged or foreign certificate is refused for that, never used to probe the list.
        (
            "untrusted, unusable list",
            &untrusted,
            unusable,
            "untrusted_ca",
        ),
        (
            "untrusted, its serial",
            &untrusted,
            list("serial: 7\n"),
            "untrusted_ca",
        ),
    ];
    for (name, cert, revocations, want) in rows {
        assert_eq!(with(cert, &revocations), want, "{name}");
    }
    let why = super::verify(&plain, "alice", None, NOW, &s, &list("serial: 7\n")).unwrap_err();
    assert!(
        why.to_string()
            .starts_with("certificate is revoked: serial 7"),
        "{why}"
    );
}
