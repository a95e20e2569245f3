use super::*;

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use russh::keys::PrivateKey;
use russh::keys::signature::{self, Signer};
use russh::keys::ssh_encoding::Encode;
use russh::keys::ssh_key::Signature;
use russh::keys::ssh_key::certificate::{Builder, CertType};
use russh::keys::ssh_key::private::{Ed25519Keypair, RsaKeypair};

const NOW: u64 = 1_800_000_000;
const HOUR: u64 = 3600;
/// The expected outcome for an accepted certificate in the tables.
const OK: &str = "ok";

fn key(seed: u8) -> PrivateKey {
    PrivateKey::from(Ed25519Keypair::from_seed(&[seed; 32]))
}

fn pub_line(k: &PrivateKey) -> String {
    k.public_key().to_openssh().unwrap()
}

/// Two trusted CAs (rotation): key(1) and key(10).
fn settings(incident: Option<&str>) -> Settings {
    let text = format!(
        "# CAs\n\n{} old\n{}\n",
        pub_line(&key(1)),
        pub_line(&key(10))
    );
    Settings {
        cas: TrustedCas::parse("user_ca.pub", &text).unwrap(),
        cluster: "prod-eu-1".into(),
        incident: incident.map(str::to_owned),
        max_cert_lifetime: Duration::from_secs(12 * HOUR),
        clock_skew: Duration::from_secs(60),
    }
}

/// `code()` of the rejection, or [`OK`].
fn outcome(result: &Result<Identity, Rejection>) -> &'static str {
    result.as_ref().map_or_else(Rejection::code, |_| OK)
}

/// Everything that goes into a test certificate; `mk` signs it.
struct Spec {
    serial: u64,
    host: bool,
    key_id: String,
    principals: Option<Vec<String>>,
    after: u64,
    before: u64,
    critical: Vec<(&'static str, String)>,
    ext: Vec<(&'static str, String)>,
}

fn mk_with(
    signer: &impl russh::keys::ssh_key::SigningKey,
    edit: impl FnOnce(&mut Spec),
) -> Certificate {
    let mut s = Spec {
        serial: 7,
        host: false,
        key_id: "alice@corp.example".into(),
        principals: Some(vec!["alice".into()]),
        after: NOW - 60,
        before: NOW + HOUR,
        critical: vec![],
        ext: vec![("permit-pty", String::new())],
    };
    edit(&mut s);
    let mut b = Builder::new(vec![7u8; 16], key(2).public_key(), s.after, s.before).unwrap();
    b.serial(s.serial).unwrap();
    b.cert_type(if s.host {
        CertType::Host
    } else {
        CertType::User
    })
    .unwrap();
    b.key_id(s.key_id).unwrap();
    match s.principals {
        Some(list) => list
            .into_iter()
            .for_each(|p| _ = b.valid_principal(p).unwrap()),
        None => _ = b.all_principals_valid().unwrap(),
    }
    s.critical
        .into_iter()
        .for_each(|(n, v)| _ = b.critical_option(n, v).unwrap());
    s.ext
        .into_iter()
        .for_each(|(n, v)| _ = b.extension(n, v).unwrap());
    b.sign(signer).unwrap()
}

fn mk(edit: impl FnOnce(&mut Spec)) -> Certificate {
    mk_with(&key(1), edit)
}

/// A certificate with one extra critical option.
fn co(name: &'static str, value: &str) -> Certificate {
    mk(|s| s.critical.push((name, value.to_owned())))
}

/// A certificate with one extra extension.
fn ex(name: &'static str, value: &str) -> Certificate {
    mk(|s| s.ext.push((name, value.to_owned())))
}

fn principals(list: &[&str]) -> Certificate {
    mk(|s| s.principals = Some(list.iter().map(|p| p.to_string()).collect()))
}

fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

/// Run `(name, certificate, expected outcome)` rows for login `alice` at `NOW`, no peer.
fn run_table(rows: Vec<(&str, Certificate, &str)>, settings: &Settings) {
    let failures: Vec<String> = rows
        .iter()
        .filter_map(|(name, cert, want)| {
            let got = verify(cert, "alice", None, NOW, settings);
            if let Err(r) = &got {
                assert!(is_printable_ascii(&r.to_string()), "{name}: {r}");
            }
            (outcome(&got) != *want).then(|| format!("{name}: want {want}, got {got:?}"))
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// An RSA private key made once by the real ssh-keygen (ssh-key's own RSA generation needs
/// a rand_core 0.10 RNG that this crate does not carry).
fn rsa_ca() -> &'static PrivateKey {
    static RSA: OnceLock<PrivateKey> = OnceLock::new();
    RSA.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rsa_ca");
        keygen(&format!("-q -t rsa -b 2048 -N '' -f {}", path.display()));
        PrivateKey::from_openssh(std::fs::read_to_string(&path).unwrap()).unwrap()
    })
}

/// Run the real ssh-keygen; `args` are split on spaces, `''` is an empty argument.
fn keygen(args: &str) -> String {
    let args: Vec<&str> = args
        .split(' ')
        .map(|a| if a == "''" { "" } else { a })
        .collect();
    let out = Command::new("ssh-keygen")
        .args(&args)
        .output()
        .expect("ssh-keygen installed");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "ssh-keygen {args:?}: {stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Signs with `ssh-rsa` (PKCS#1 v1.5 over SHA-1), which ssh-key can do but OpenSSH refuses.
struct Sha1Rsa(RsaKeypair);

impl Signer<Signature> for Sha1Rsa {
    fn try_sign(&self, msg: &[u8]) -> Result<Signature, signature::Error> {
        (&self.0, None).try_sign(msg)
    }
}

impl From<&Sha1Rsa> for KeyData {
    fn from(s: &Sha1Rsa) -> KeyData {
        KeyData::Rsa(s.0.public().clone())
    }
}

/// Replace the first occurrence of `from` in `bytes` with `to`.
fn patch(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let at = bytes.windows(from.len()).position(|w| w == from).unwrap();
    [&bytes[..at], to, &bytes[at + from.len()..]].concat()
}

/// An SSH `string`: u32 length, then the bytes.
fn ssh_string(blob: &[u8]) -> Vec<u8> {
    [&(blob.len() as u32).to_be_bytes()[..], blob].concat()
}

#[test]
fn signer_checks() {
    // Serial 7 followed by cert type 1 (user), changed to serial 8 after signing.
    let tampered = patch(
        &mk(|_| {}).to_bytes().unwrap(),
        &[0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 1],
        &[0, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 1],
    );
    // Re-encode so that the CA key is itself a certificate (its signature is then meaningless;
    // the check must come first, before trust and signature).
    let ca_blob = ssh_string(&KeyData::from(&key(1)).encode_vec().unwrap());
    let nested = ssh_string(&mk(|_| {}).to_bytes().unwrap());
    let ca_is_cert = patch(&mk(|_| {}).to_bytes().unwrap(), &ca_blob, &nested);
    run_table(
        vec![
            ("plain", mk(|_| {}), OK),
            ("second trusted CA", mk_with(&key(10), |_| {}), OK),
            ("untrusted CA", mk_with(&key(99), |_| {}), "untrusted_ca"),
            (
                "host certificate",
                mk(|s| s.host = true),
                "host_certificate",
            ),
            (
                "CA is a cert",
                Certificate::from_bytes(&ca_is_cert).unwrap(),
                "ca_is_certificate",
            ),
            (
                "tampered serial",
                Certificate::from_bytes(&tampered).unwrap(),
                "bad_signature",
            ),
            ("serial 0", mk(|s| s.serial = 0), "serial_zero"),
        ],
        &settings(None),
    );
    let mut rsa_settings = settings(None);
    rsa_settings
        .cas
        .merge(TrustedCas::parse("rsa.pub", &pub_line(rsa_ca())).unwrap());
    let sha1 = Sha1Rsa(rsa_ca().key_data().rsa().unwrap().clone());
    let weak = mk_with(&sha1, |_| {});
    assert_eq!(weak.signature().algorithm().as_str(), "ssh-rsa");
    let weak_result = verify(&weak, "alice", None, NOW, &rsa_settings);
    assert_eq!(
        weak_result.unwrap_err(),
        Rejection::WeakSignatureAlgorithm("ssh-rsa".into())
    );
    run_table(
        vec![
            ("RSA CA, rsa-sha2-512", mk_with(rsa_ca(), |_| {}), OK),
            ("RSA CA, ssh-rsa SHA-1", weak, "weak_signature_algorithm"),
        ],
        &rsa_settings,
    );
}

#[test]
fn time_checks() {
    let s = settings(None);
    let at = |now: u64, cert: &Certificate| outcome(&verify(cert, "alice", None, now, &s));
    let plain = mk(|_| {});
    assert_eq!(at(NOW + HOUR, &plain), "expired", "now == valid_before");
    assert_eq!(at(NOW + HOUR - 1, &plain), OK, "now == valid_before - 1");
    assert_eq!(at(NOW - 60, &plain), OK, "now == valid_after");
    assert_eq!(at(NOW - 120, &plain), OK, "now == valid_after - skew");
    assert_eq!(
        at(NOW - 121, &plain),
        "not_yet_valid",
        "one second before the skew"
    );
    run_table(
        vec![
            (
                "exactly max lifetime",
                mk(|s| s.before = s.after + 12 * HOUR),
                OK,
            ),
            (
                "over max lifetime",
                mk(|s| s.before = s.after + 12 * HOUR + 1),
                "lifetime_too_long",
            ),
            ("forever", mk(|s| s.before = u64::MAX), "lifetime_too_long"),
        ],
        &s,
    );
    // ssh-key's builder cannot make an empty window in debug builds: call the step directly.
    let empty = Rejection::InvalidValidity {
        valid_after: NOW + 30,
        valid_before: NOW + 30,
    };
    assert_eq!(check_validity(NOW + 30, NOW + 30, NOW, &s), Err(empty));
    assert_eq!(check_validity(NOW + 30, NOW + 31, NOW, &s), Ok(()));
    let far = check_validity(u64::MAX - 1, u64::MAX, 0, &s);
    assert_eq!(far, Err(Rejection::NotYetValid(u64::MAX - 1)));
}

#[test]
fn principal_and_key_id_checks() {
    let many =
        |n: usize| mk(|s| s.principals = Some([names("p", n - 1), vec!["alice".into()]].concat()));
    run_table(
        vec![
            (
                "no principals",
                mk(|s| s.principals = None),
                "no_principals",
            ),
            (
                "other principal",
                principals(&["bob"]),
                "principal_mismatch",
            ),
            (
                "a comma never splits",
                principals(&["bob,alice"]),
                "principal_mismatch",
            ),
            ("one of several", principals(&["root", "alice"]), OK),
            ("256 principals", many(256), OK),
            ("257 principals", many(257), "too_many_principals"),
            (
                "principal with LF",
                principals(&["alice", "x\nroot"]),
                "bad_principal",
            ),
            (
                "principal too long",
                principals(&["alice", &"a".repeat(257)]),
                "bad_principal",
            ),
            (
                "empty principal",
                principals(&["alice", ""]),
                "bad_principal",
            ),
            ("empty key id", mk(|s| s.key_id.clear()), "empty_key_id"),
            (
                "key id with CRLF",
                mk(|s| s.key_id = "a\r\nX-Admin: 1".into()),
                "bad_key_id",
            ),
            (
                "key id non-ASCII",
                mk(|s| s.key_id = "alice@cörp".into()),
                "bad_key_id",
            ),
            (
                "key id 257 bytes",
                mk(|s| s.key_id = "a".repeat(257)),
                "bad_key_id",
            ),
            ("key id 256 bytes", mk(|s| s.key_id = "a".repeat(256)), OK),
            (
                "key id with comma",
                mk(|s| s.key_id = "a,system:masters".into()),
                "bad_key_id",
            ),
        ],
        &settings(None),
    );
    let exact = verify(
        &principals(&["bob,alice"]),
        "bob,alice",
        None,
        NOW,
        &settings(None),
    );
    assert_eq!(
        exact.unwrap().principal,
        "bob,alice",
        "a principal is matched whole"
    );
}

#[test]
fn critical_option_checks() {
    let bad = "bad_critical_option";
    run_table(
        vec![
            (
                "unknown option",
                co("verify-required", ""),
                "unknown_critical_option",
            ),
            ("force-command empty", co("force-command", ""), bad),
            (
                "force-command LF",
                co("force-command", "whoami\nshell a/b"),
                bad,
            ),
            (
                "force-command 4097 bytes",
                co("force-command", &"a".repeat(4097)),
                bad,
            ),
            (
                "force-command 4096 bytes",
                co("force-command", &"a".repeat(4096)),
                OK,
            ),
            ("cluster match", co("cluster@podgate", "prod-eu-1"), OK),
            (
                "cluster mismatch",
                co("cluster@podgate", "prod-us-1"),
                "cluster_mismatch",
            ),
            ("cluster bidi", co("cluster@podgate", "prod\u{202e}"), bad),
            (
                "incident on general gateway",
                co("incident@podgate", "INC-1"),
                "incident_not_allowed",
            ),
            ("namespaces empty", co("namespaces@podgate", ""), bad),
            (
                "namespaces empty entry",
                co("namespaces@podgate", "a,,b"),
                bad,
            ),
            (
                "namespaces bad glob",
                co("namespaces@podgate", "pay[ments"),
                bad,
            ),
            (
                "pods braces split by comma",
                co("pods@podgate", "api-{a,b}"),
                bad,
            ),
            ("pods ok", co("pods@podgate", "api-*, db-0"), OK),
            ("actions unknown", co("actions@podgate", "logs,rm"), bad),
            ("actions ok", co("actions@podgate", "port-forward,list"), OK),
            (
                "source-address, no peer",
                co("source-address", "10.0.0.0/8"),
                "no_peer_address",
            ),
        ],
        &settings(None),
    );
    let incident = settings(Some("INC-1"));
    let on_incident = |cert: &Certificate| outcome(&verify(cert, "alice", None, NOW, &incident));
    assert_eq!(on_incident(&mk(|_| {})), "incident_required");
    assert_eq!(
        on_incident(&co("incident@podgate", "INC-2")),
        "incident_mismatch"
    );
    assert_eq!(on_incident(&co("incident@podgate", "INC-1")), OK);
}

#[test]
fn source_address_follows_openssh() {
    let s = settings(None);
    let from = |list: &str, peer: &str| {
        outcome(&verify(
            &co("source-address", list),
            "alice",
            Some(peer.parse().unwrap()),
            NOW,
            &s,
        ))
    };
    assert_eq!(from("192.168.0.0/16,10.0.0.0/8", "10.1.2.3"), OK);
    assert_eq!(from("10.1.2.3", "10.1.2.3"), OK);
    assert_eq!(
        from("10.0.0.0/8", "::ffff:10.1.2.3"),
        OK,
        "IPv4-mapped peers compare as IPv4"
    );
    assert_eq!(from("2001:db8::/32", "2001:db8::5"), OK);
    assert_eq!(from("10.0.0.0/8", "192.168.1.1"), "source_address_mismatch");
    assert_eq!(from("10.1.2.3", "10.1.2.4"), "source_address_mismatch");
    // Malformed lists refuse the certificate, even when the peer would match an entry.
    for list in [
        "10.0.0.0/8, 10.1.0.0/16",
        "10.0.0.1/8",
        "10.0.0.0/8,",
        "host.example",
        "10.0.0.0/33",
    ] {
        assert_eq!(from(list, "10.1.2.3"), "bad_critical_option", "{list:?}");
    }
}

#[test]
fn extension_checks() {
    let bad = "bad_extension";
    let groups = |n: usize| ex("groups@podgate", &names("g", n).join(","));
    run_table(
        vec![
            ("groups with tab", ex("groups@podgate", "a,b\tc"), bad),
            (
                "groups with trailing LF",
                ex("groups@podgate", "a,b\n"),
                bad,
            ),
            ("65 groups", groups(65), bad),
            ("64 groups", groups(64), OK),
            (
                "group of 257 bytes",
                ex("groups@podgate", &"g".repeat(257)),
                bad,
            ),
            (
                "reason of 1025 bytes",
                ex("reason@podgate", &"r".repeat(1025)),
                bad,
            ),
            (
                "reason of 1024 bytes",
                ex("reason@podgate", &"r".repeat(1024)),
                OK,
            ),
            (
                "reason with LF",
                ex("reason@podgate", "ok\nforged log line"),
                bad,
            ),
            ("unknown extension ignored", ex("no-touch-required", ""), OK),
        ],
        &settings(None),
    );
}

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
