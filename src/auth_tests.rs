use super::*;

use std::process::Command;
use std::sync::OnceLock;

use russh::keys::PrivateKey;
use russh::keys::signature::{self, Signer};
use russh::keys::ssh_encoding::Encode;
use russh::keys::ssh_key::Signature;
use russh::keys::ssh_key::certificate::{Builder, CertType};
use russh::keys::ssh_key::private::{Ed25519Keypair, RsaKeypair};

/// The certificate checks with no revocation list configured (revocation has its own tests).
pub(super) fn verify(
    cert: &Certificate,
    user: &str,
    peer: Option<IpAddr>,
    now: u64,
    settings: &Settings,
) -> Result<Identity, Rejection> {
    super::verify(cert, user, peer, now, settings, &Revocations::NotConfigured)
}

pub(super) const NOW: u64 = 1_800_000_000;
pub(super) const HOUR: u64 = 3600;
/// The expected outcome for an accepted certificate in the tables.
pub(super) const OK: &str = "ok";

pub(super) fn key(seed: u8) -> PrivateKey {
    PrivateKey::from(Ed25519Keypair::from_seed(&[seed; 32]))
}

pub(super) fn pub_line(k: &PrivateKey) -> String {
    k.public_key().to_openssh().unwrap()
}

/// Two trusted CAs (rotation): key(1) and key(10).
pub(super) fn settings(incident: Option<&str>) -> Settings {
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
pub(super) fn outcome(result: &Result<Identity, Rejection>) -> &'static str {
    result.as_ref().map_or_else(Rejection::code, |_| OK)
}

/// Everything that goes into a test certificate; `mk` signs it.
pub(super) struct Spec {
    pub(super) serial: u64,
    pub(super) host: bool,
    pub(super) key_id: String,
    pub(super) principals: Option<Vec<String>>,
    pub(super) after: u64,
    pub(super) before: u64,
    pub(super) critical: Vec<(&'static str, String)>,
    pub(super) ext: Vec<(&'static str, String)>,
}

pub(super) fn mk_with(
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

pub(super) fn mk(edit: impl FnOnce(&mut Spec)) -> Certificate {
    mk_with(&key(1), edit)
}

/// A certificate with one extra critical option.
pub(super) fn co(name: &'static str, value: &str) -> Certificate {
    mk(|s| s.critical.push((name, value.to_owned())))
}

/// A certificate with one extra extension.
pub(super) fn ex(name: &'static str, value: &str) -> Certificate {
    mk(|s| s.ext.push((name, value.to_owned())))
}

pub(super) fn principals(list: &[&str]) -> Certificate {
    mk(|s| s.principals = Some(list.iter().map(|p| p.to_string()).collect()))
}

pub(super) fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

/// Run `(name, certificate, expected outcome)` rows for login `alice` at `NOW`, no peer.
pub(super) fn run_table(rows: Vec<(&str, Certificate, &str)>, settings: &Settings) {
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
pub(super) fn rsa_ca() -> &'static PrivateKey {
    static RSA: OnceLock<PrivateKey> = OnceLock::new();
    RSA.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rsa_ca");
        keygen(&format!("-q -t rsa -b 2048 -N '' -f {}", path.display()));
        PrivateKey::from_openssh(std::fs::read_to_string(&path).unwrap()).unwrap()
    })
}

/// Run the real ssh-keygen; `args` are split on spaces, `''` is an empty argument.
pub(super) fn keygen(args: &str) -> String {
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
pub(super) struct Sha1Rsa(pub(super) RsaKeypair);

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
pub(super) fn patch(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let at = bytes.windows(from.len()).position(|w| w == from).unwrap();
    [&bytes[..at], to, &bytes[at + from.len()..]].concat()
}

/// An SSH `string`: u32 length, then the bytes.
pub(super) fn ssh_string(blob: &[u8]) -> Vec<u8> {
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
