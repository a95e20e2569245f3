//! Revocation against the real `ssh-keygen`: each KRL is made by `ssh-keygen -k`, and for
//! every certificate our answer must equal `ssh-keygen -Q`'s.

use std::path::Path;
use std::process::Command;

use super::*;

/// A temporary directory with CAs, user keys and certificates made by `ssh-keygen`.
pub(super) struct Lab {
    dir: tempfile::TempDir,
}

/// `(certificate file stem, CA, user key, key id, serial)`.
const CERTS: &[(&str, &str, &str, &str, u64)] = &[
    ("c1", "ca1", "u1", "alice@corp", 5),
    ("c2", "ca1", "u2", "bob@corp", 6),
    ("c3", "ca1", "u3", "carol@corp", 150),
    ("c4", "ca2", "u1", "alice@corp", 5),
    ("c5", "ca1", "u4", "dave@corp", 0),
    ("c6", "ca2", "u2", "erin@corp", 1000),
    ("c7", "ca1", "u3", "frank@corp", 100_000),
    ("c8", "ca1", "u1", "gina@corp", 3),
];

impl Lab {
    /// Two CAs (Ed25519, RSA) and four user keys (Ed25519, ECDSA, Ed25519, RSA), and the
    /// certificates in [`CERTS`].
    pub(super) fn new() -> Lab {
        let lab = Lab {
            dir: tempfile::tempdir().expect("temp dir"),
        };
        for (name, kind) in [
            ("ca1", "ed25519"),
            ("ca2", "rsa"),
            ("u1", "ed25519"),
            ("u2", "ecdsa"),
            ("u3", "ed25519"),
            ("u4", "rsa"),
        ] {
            lab.keygen(&["-q", "-t", kind, "-N", "", "-C", name, "-f", name]);
        }
        for &(stem, ca, user, id, serial) in CERTS {
            std::fs::copy(
                lab.path(&format!("{user}.pub")),
                lab.path(&format!("{stem}.pub")),
            )
            .expect("copy key");
            let serial = serial.to_string();
            let pubkey = format!("{stem}.pub");
            let args = [
                "-q", "-s", ca, "-I", id, "-n", "alice", "-z", &serial, "-V", "+1h", &pubkey,
            ];
            lab.keygen(&args);
        }
        lab
    }

    pub(super) fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    fn keygen(&self, args: &[&str]) -> std::process::Output {
        let out = Command::new("ssh-keygen")
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("run ssh-keygen");
        assert!(out.status.success(), "ssh-keygen {args:?}: {out:?}");
        out
    }

    /// The first line of a file, e.g. a public key line.
    pub(super) fn line(&self, name: &str) -> String {
        let text = std::fs::read_to_string(self.path(name)).expect("read");
        text.lines().next().unwrap_or_default().to_owned()
    }

    /// `SHA256:…` or `SHA1:…` fingerprint of a public key file, from `ssh-keygen -l`.
    pub(super) fn fingerprint(&self, name: &str, alg: &str) -> String {
        let out = self.keygen(&["-l", "-E", alg, "-f", name]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_owned()
    }

    /// Replaces `{u3}` by the line of `u3.pub`, `{cert:c8}` by that of `c8-cert.pub`,
    /// `{fp:u2}` by the SHA256 fingerprint of `u2.pub`.
    pub(super) fn expand(&self, template: &str) -> String {
        let mut out = template.to_owned();
        for name in ["ca1", "ca2", "u1", "u2", "u3", "u4"] {
            let key = format!("{name}.pub");
            out = out.replace(&format!("{{{name}}}"), &self.line(&key));
            out = out.replace(&format!("{{fp:{name}}}"), &self.fingerprint(&key, "sha256"));
        }
        for &(stem, ..) in CERTS {
            out = out.replace(
                &format!("{{cert:{stem}}}"),
                &self.line(&format!("{stem}-cert.pub")),
            );
        }
        out
    }

    pub(super) fn write(&self, name: &str, text: &str) {
        std::fs::write(self.path(name), text).expect("write");
    }

    pub(super) fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.path(name)).expect("read")
    }

    /// `ssh-keygen -k -f krl ARGS`: `spec` names a spec file written from a template.
    fn make_krl(&self, args: &[&str]) {
        let mut all = vec!["-q", "-k", "-f", "krl"];
        all.extend_from_slice(args);
        self.keygen(&all);
    }

    pub(super) fn cert(&self, stem: &str) -> Certificate {
        let text = std::fs::read_to_string(self.path(&format!("{stem}-cert.pub"))).expect("cert");
        Certificate::from_openssh(&text).expect("parse cert")
    }

    /// `ssh-keygen -Q -f krl CERT`: true when it says REVOKED (exit status non-zero).
    pub(super) fn ssh_keygen_revokes(&self, krl: &str, stem: &str) -> bool {
        let cert = format!("{stem}-cert.pub");
        let out = Command::new("ssh-keygen")
            .args(["-Q", "-f", krl, &cert])
            .current_dir(self.dir.path())
            .output()
            .expect("run ssh-keygen -Q");
        let stdout = String::from_utf8_lossy(&out.stdout);
        if out.status.success() {
            assert!(stdout.contains(": ok"), "ssh-keygen -Q: {out:?}");
            false
        } else {
            assert!(stdout.contains("REVOKED"), "ssh-keygen -Q failed: {out:?}");
            true
        }
    }

    /// Checks every certificate against `list` and against `ssh-keygen -Q -f krl`; they must
    /// agree. Returns the stems of the revoked certificates.
    pub(super) fn cross_check(
        &self,
        case: &str,
        list: &RevocationList,
        krl: &str,
    ) -> Vec<&'static str> {
        let mut revoked = Vec::new();
        for &(stem, ..) in CERTS {
            let ours = list.check(&self.cert(stem));
            let theirs = self.ssh_keygen_revokes(krl, stem);
            assert_eq!(
                ours.is_some(),
                theirs,
                "{case}: {stem}: ours {ours:?}, ssh-keygen revoked: {theirs}"
            );
            if ours.is_some() {
                revoked.push(stem);
            }
        }
        revoked
    }
}

fn assert_file_exists(path: &Path) {
    assert!(path.exists(), "{} missing", path.display());
}

struct Case {
    name: &'static str,
    /// Spec files to write first: `(file name, template for Lab::expand)`.
    specs: &'static [(&'static str, &'static str)],
    /// Successive `ssh-keygen -k -f krl` argument lists (later ones usually with `-u`).
    steps: &'static [&'static [&'static str]],
    revoked: &'static [&'static str],
    summary: &'static str,
}

const CASES: &[Case] = &[
    Case {
        name: "single serials revoke those serials for that CA only",
        specs: &[("spec", "serial: 5\nserial: 1000\n")],
        steps: &[&["-s", "ca1.pub", "spec"]],
        revoked: &["c1"],
        summary: "KRL version 0: 2 serials, 0 serial ranges, 0 serial bitmaps, 0 key ids, 0 keys, 0 hashes",
    },
    Case {
        name: "a large serial range becomes a range section next to bitmap and list sections",
        specs: &[(
            "spec",
            "serial: 1\nserial: 3\nserial: 5\nserial: 100-5000\nserial: 6000\nserial: 1000000\n",
        )],
        steps: &[&["-s", "ca1.pub", "spec"]],
        revoked: &["c1", "c3", "c8"],
        summary: "KRL version 0: 5 serials, 1 serial range, 1 serial bitmap, 0 key ids, 0 keys, 0 hashes",
    },
    Case {
        name: "key ids revoke certificates of that CA only",
        specs: &[("spec", "id: alice@corp\nid: carol@corp\n")],
        steps: &[&["-s", "ca1.pub", "spec"]],
        revoked: &["c1", "c3"],
        summary: "KRL version 0: 0 serials, 0 serial ranges, 0 serial bitmaps, 2 key ids, 0 keys, 0 hashes",
    },
    Case {
        name: "a wildcard CA section revokes serials and key ids of every CA",
        specs: &[("spec", "id: alice@corp\nserial: 1000\nserial: 140-160\n")],
        steps: &[&["-s", "none", "spec"]],
        revoked: &["c1", "c3", "c4", "c6"],
        summary: "KRL version 0: 22 serials, 0 serial ranges, 1 serial bitmap, 1 key id, 0 keys, 0 hashes",
    },
    Case {
        name: "a public key file revokes that key explicitly under every CA",
        specs: &[],
        steps: &[&["u2.pub"]],
        revoked: &["c2", "c6"],
        summary: "KRL version 0: 0 serials, 0 serial ranges, 0 serial bitmaps, 0 key ids, 1 key, 0 hashes",
    },
    Case {
        name: "key and sha1 spec lines revoke keys explicitly and by SHA1 hash",
        specs: &[("spec", "key: {u3}\nsha1: {u4}\n")],
        steps: &[&["spec"]],
        revoked: &["c3", "c5", "c7"],
        summary: "KRL version 0: 0 serials, 0 serial ranges, 0 serial bitmaps, 0 key ids, 1 key, 1 hash",
    },
    Case {
        name: "sha256 and hash spec lines revoke keys by SHA256 hash",
        specs: &[("spec", "sha256: {u1}\nhash: {fp:u2}\n")],
        steps: &[&["spec"]],
        revoked: &["c1", "c2", "c4", "c6", "c8"],
        summary: "KRL version 0: 0 serials, 0 serial ranges, 0 serial bitmaps, 0 key ids, 0 keys, 2 hashes",
    },
    Case {
        name: "revoking a CA key revokes every certificate it signed",
        specs: &[],
        steps: &[&["ca2.pub"]],
        revoked: &["c4", "c6"],
        summary: "KRL version 0: 0 serials, 0 serial ranges, 0 serial bitmaps, 0 key ids, 1 key, 0 hashes",
    },
    Case {
        name: "revoking a CA key by hash revokes every certificate it signed",
        specs: &[("spec", "hash: {fp:ca1}\n")],
        steps: &[&["spec"]],
        revoked: &["c1", "c2", "c3", "c5", "c7", "c8"],
        summary: "KRL version 0: 0 serials, 0 serial ranges, 0 serial bitmaps, 0 key ids, 0 keys, 1 hash",
    },
    Case {
        name: "a certificate file revokes its serial, or its key id when the serial is 0",
        specs: &[],
        steps: &[&["c3-cert.pub", "c5-cert.pub"]],
        revoked: &["c3", "c5"],
        summary: "KRL version 0: 1 serial, 0 serial ranges, 0 serial bitmaps, 1 key id, 0 keys, 0 hashes",
    },
    Case {
        name: "updating a KRL with -u keeps its entries and adds new ones",
        specs: &[("spec1", "serial: 5\n"), ("spec2", "id: erin@corp\n")],
        steps: &[
            &["-s", "ca1.pub", "spec1"],
            &["-u", "-s", "ca2.pub", "spec2"],
            &["-u", "-z", "7", "u3.pub"],
        ],
        revoked: &["c1", "c3", "c6", "c7"],
        summary: "KRL version 7: 1 serial, 0 serial ranges, 0 serial bitmaps, 1 key id, 1 key, 0 hashes",
    },
];

#[test]
fn every_ssh_keygen_krl_case_gives_the_same_answers_as_ssh_keygen() {
    let lab = Lab::new();
    for case in CASES {
        let _ = std::fs::remove_file(lab.path("krl"));
        for (file, template) in case.specs {
            lab.write(file, &lab.expand(template));
        }
        for step in case.steps {
            lab.make_krl(step);
        }
        assert_file_exists(&lab.path("krl"));
        let list = RevocationList::parse(&lab.read("krl"))
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        assert_eq!(list.summary(), case.summary, "{}", case.name);
        let revoked = lab.cross_check(case.name, &list, "krl");
        assert_eq!(revoked, case.revoked, "{}", case.name);
    }
}

#[test]
fn reasons_name_the_serial_key_id_key_or_ca_key_that_matched() {
    let lab = Lab::new();
    let ca1 = format!("CA {}", lab.fingerprint("ca1.pub", "sha256"));
    let u3 = lab.fingerprint("u3.pub", "sha256");
    let ca2 = lab.fingerprint("ca2.pub", "sha256");
    let u4 = lab.fingerprint("u4.pub", "sha256");
    lab.write("spec1", "serial: 5\nid: bob@corp\n");
    lab.write("spec2", "id: carol@corp\n");
    lab.write("spec3", &lab.expand("key: {u3}\nsha1: {u4}\n"));
    lab.make_krl(&["-s", "ca1.pub", "spec1"]);
    lab.make_krl(&["-u", "-s", "none", "spec2"]);
    lab.make_krl(&["-u", "spec3", "ca2.pub"]);
    let list = RevocationList::parse(&lab.read("krl")).expect("parse");
    let table = [
        ("c1", format!("serial 5 ({ca1})")),
        ("c2", format!("key id bob@corp ({ca1})")),
        ("c3", "key id carol@corp (any CA)".to_owned()),
        ("c7", format!("key {u3}")),
        ("c5", format!("key {u4} by SHA1 hash")),
        ("c4", format!("CA key {ca2}")),
    ];
    for (stem, reason) in table {
        assert_eq!(list.check(&lab.cert(stem)), Some(Revoked(reason)), "{stem}");
    }
    assert_eq!(list.check(&lab.cert("c8")), None);
    lab.cross_check("reasons", &list, "krl");
}

#[test]
fn a_text_list_revokes_what_the_same_spec_revokes_in_a_wildcard_ca_krl() {
    let lab = Lab::new();
    let specs = [
        "serial: 5\nserial: 100-5000\n",
        "# comment\n\n  id: bob@corp  \nID: erin@corp\n",
        "key: {u3}\n{u4}\n",
        "sha1: {u2}\nsha256: {ca2}\n",
        "hash: {fp:u1}\n",
        "{cert:c8}\n{cert:c5}\n",
        "serial: 0x3e8\n",
    ];
    for template in specs {
        let spec = lab.expand(template);
        lab.write("spec", &spec);
        let _ = std::fs::remove_file(lab.path("krl"));
        lab.make_krl(&["-s", "none", "spec"]);
        let text =
            RevocationList::parse(spec.as_bytes()).unwrap_or_else(|e| panic!("{template}: {e}"));
        let binary = RevocationList::parse(&lab.read("krl")).expect("parse krl");
        let from_text = lab.cross_check(template, &text, "krl");
        let from_krl = lab.cross_check(template, &binary, "krl");
        assert_eq!(from_text, from_krl, "{template}");
        assert!(!from_text.is_empty(), "{template} revokes nothing");
    }
}

#[test]
fn a_text_sha1_fingerprint_revokes_like_a_sha1_line_with_the_key() {
    let lab = Lab::new();
    lab.write("spec", &lab.expand("sha1: {u2}\n"));
    lab.make_krl(&["spec"]);
    let text = format!("sha1: {}\n", lab.fingerprint("u2.pub", "sha1"));
    assert!(text.starts_with("sha1: SHA1:"), "{text}");
    let list = RevocationList::parse(text.as_bytes()).expect("parse");
    assert_eq!(
        list.summary(),
        "text list: 0 serials, 0 serial ranges, 0 serial bitmaps, 0 key ids, 0 keys, 1 hash"
    );
    assert_eq!(
        lab.cross_check("sha1 fingerprint", &list, "krl"),
        ["c2", "c6"]
    );
}

#[test]
fn text_serial_and_id_lines_apply_to_every_ca() {
    let lab = Lab::new();
    let list = RevocationList::parse(b"serial: 5\nid: erin@corp\n").expect("parse");
    let revoked: Vec<_> = CERTS
        .iter()
        .filter(|(stem, ..)| list.check(&lab.cert(stem)).is_some())
        .map(|(stem, ..)| *stem)
        .collect();
    assert_eq!(revoked, ["c1", "c4", "c6"]);
}

#[test]
fn a_serial_zero_certificate_is_never_revoked_by_serial() {
    let lab = Lab::new();
    let c5 = lab.cert("c5");
    assert_eq!(c5.serial(), 0);
    let list = RevocationList::parse(b"serial: 1-18446744073709551615\n").expect("parse");
    assert_eq!(list.check(&c5), None);
    assert!(list.check(&lab.cert("c1")).is_some());
}
