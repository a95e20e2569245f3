//! Revocation lists that are empty, hand-made, corrupt or malformed.

use super::krl::*;
use super::tests::Lab;
use super::*;

fn string(bytes: &[u8]) -> Vec<u8> {
    let mut out = u32::try_from(bytes.len())
        .expect("len")
        .to_be_bytes()
        .to_vec();
    out.extend_from_slice(bytes);
    out
}

fn header(version: u64) -> Vec<u8> {
    let mut out = KRL_MAGIC.to_vec();
    out.extend_from_slice(&1u32.to_be_bytes());
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&1_700_000_000u64.to_be_bytes());
    out.extend_from_slice(&0u64.to_be_bytes());
    out.extend(string(b""));
    out.extend(string(b"test"));
    out
}

/// A KRL with these `(type, data)` sections.
fn krl(sections: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let mut out = header(1);
    for (kind, data) in sections {
        out.push(*kind);
        out.extend(string(data));
    }
    out
}

/// Certificate section data for `ca` (empty: any CA) with these `(type, data)` subsections.
fn certs(ca: &[u8], subs: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let mut out = string(ca);
    out.extend(string(b""));
    for (kind, data) in subs {
        out.push(*kind);
        out.extend(string(data));
    }
    out
}

fn u64s(values: &[u64]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_be_bytes()).collect()
}

fn bitmap(offset: u64, mpint: &[u8]) -> Vec<u8> {
    let mut out = offset.to_be_bytes().to_vec();
    out.extend(string(mpint));
    out
}

fn parse_err(bytes: &[u8]) -> String {
    match RevocationList::parse(bytes) {
        Ok(list) => panic!("parsed: {}", list.summary()),
        Err(e) => e.to_string(),
    }
}

/// A real KRL with every section type ssh-keygen writes: serial list, range and bitmap, key
/// ids, a wildcard CA, explicit keys, SHA1 and SHA256 hashes.
fn full_krl(lab: &Lab) -> Vec<u8> {
    let spec = "serial: 1\nserial: 3\nserial: 5\nserial: 100-5000\nserial: 6000\nid: bob@corp\n";
    lab.write("spec1", spec);
    lab.write("spec2", "id: erin@corp\nserial: 7\n");
    lab.write(
        "spec3",
        &lab.expand("key: {u3}\nsha1: {u4}\nhash: {fp:u2}\n"),
    );
    let run = |args: &[&str]| {
        let out = std::process::Command::new("ssh-keygen")
            .args(args)
            .current_dir(lab.path(""))
            .output()
            .expect("ssh-keygen");
        assert!(out.status.success(), "{out:?}");
    };
    run(&["-q", "-k", "-f", "full", "-s", "ca1.pub", "spec1"]);
    run(&["-q", "-k", "-u", "-f", "full", "-s", "none", "spec2"]);
    run(&["-q", "-k", "-u", "-f", "full", "spec3"]);
    lab.read("full")
}

#[test]
fn the_empty_list_revokes_nothing() {
    let lab = Lab::new();
    let lists = [
        ("default", RevocationList::default()),
        ("empty input", RevocationList::parse(b"").expect("empty")),
        (
            "comments only",
            RevocationList::parse(b"# nothing\n\n   \n").expect("comments"),
        ),
        ("empty KRL", RevocationList::parse(&krl(&[])).expect("krl")),
    ];
    for (name, list) in &lists {
        for stem in ["c1", "c4", "c5"] {
            assert_eq!(list.check(&lab.cert(stem)), None, "{name}: {stem}");
        }
    }
    assert_eq!(
        lists[0].1.summary(),
        "empty list: 0 serials, 0 serial ranges, 0 serial bitmaps, 0 key ids, 0 keys, 0 hashes"
    );
    assert_eq!(
        lists[3].1.summary(),
        "KRL version 1: 0 serials, 0 serial ranges, 0 serial bitmaps, 0 key ids, 0 keys, 0 hashes"
    );
}

#[test]
fn a_krl_truncated_at_any_byte_fails_or_parses_without_panicking() {
    let lab = Lab::new();
    let full = full_krl(&lab);
    let whole = RevocationList::parse(&full).expect("full KRL");
    assert_eq!(
        whole.summary(),
        "KRL version 0: 5 serials, 1 serial range, 1 serial bitmap, 2 key ids, 1 key, 2 hashes"
    );
    let header_len = header(0).len() - string(b"test").len() + string(b"").len();
    let mut parsed = 0;
    for cut in 0..full.len() {
        match RevocationList::parse(&full[..cut]) {
            Ok(_) => {
                // Only the empty input and cuts at a section boundary are whole lists.
                assert!(cut == 0 || cut >= header_len, "cut at {cut} parsed");
                parsed += 1;
            }
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }
    // The empty input, the bare header, and the end of each section but the last (4 of them).
    assert_eq!(parsed, 1 + 1 + 4, "whole lists among the prefixes");
    let err = parse_err(&full[..header_len + 10]);
    assert!(err.starts_with("KRL truncated at byte "), "{err}");
    assert!(err.ends_with("in section 1 (certificates)"), "{err}");
}

#[test]
fn a_krl_with_any_byte_changed_fails_or_parses_without_panicking() {
    let lab = Lab::new();
    let full = full_krl(&lab);
    for at in 0..full.len() {
        for flip in [0x01u8, 0x80, 0xff] {
            let mut bytes = full.clone();
            if let Some(b) = bytes.get_mut(at) {
                *b ^= flip;
            }
            if let Ok(list) = RevocationList::parse(&bytes) {
                let _ = list.check(&lab.cert("c1"));
            }
        }
    }
}

#[test]
fn malformed_krls_are_errors_with_offsets() {
    let ca = b"not a key".to_vec();
    let mut wrong_version = krl(&[]);
    wrong_version[11] = 2;
    let mut after_signature = krl(&[(SECTION_SIGNATURE, b"key".to_vec())]);
    after_signature.extend(string(b"sig"));
    after_signature.push(SECTION_EXPLICIT_KEY);
    after_signature.extend(string(&string(b"k")));
    let mut huge = header(1);
    huge.push(SECTION_EXPLICIT_KEY);
    huge.extend_from_slice(&u32::MAX.to_be_bytes());
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "wrong magic",
            b"SSHKRL\n\x01rest".to_vec(),
            "KRL has a bad magic number",
        ),
        (
            "short magic",
            b"SSHKRL".to_vec(),
            "KRL has a bad magic number",
        ),
        (
            "wrong format version",
            wrong_version,
            "KRL format version 2 is not supported (expected 1)",
        ),
        (
            "truncated header",
            header(1)[..30].to_vec(),
            "KRL truncated at byte 28 in header",
        ),
        (
            "length past the end",
            huge,
            "KRL truncated at byte 49 in section 1 (explicit keys)",
        ),
        (
            "unknown section",
            krl(&[(7, vec![])]),
            "KRL section 1: unknown type 0x07 at byte 48",
        ),
        (
            "extension section",
            krl(&[(0xff, vec![])]),
            "unknown type 0xff",
        ),
        (
            "unknown subsection",
            krl(&[(SECTION_CERTIFICATES, certs(b"", &[(0x39, vec![])]))]),
            "KRL section 1 (certificates), subsection 1: unknown type 0x39 at byte 61",
        ),
        (
            "trailing bytes in a subsection",
            krl(&[(
                SECTION_CERTIFICATES,
                certs(b"", &[(CERT_SERIAL_RANGE, u64s(&[1, 2, 3]))]),
            )]),
            "KRL section 1 (certificates), subsection 1 (serial range): 8 unparsed bytes at byte 82",
        ),
        (
            "a partial entry in a section",
            krl(&[(
                SECTION_FINGERPRINT_SHA1,
                [string(&[0; 20]), vec![0, 0]].concat(),
            )]),
            "KRL truncated at byte 77 in section 1 (SHA1 hashes)",
        ),
        (
            "serial 0 in a list",
            krl(&[(
                SECTION_CERTIFICATES,
                certs(b"", &[(CERT_SERIAL_LIST, u64s(&[4, 0]))]),
            )]),
            "serial 0 cannot be revoked",
        ),
        (
            "inverted range",
            krl(&[(
                SECTION_CERTIFICATES,
                certs(b"", &[(CERT_SERIAL_RANGE, u64s(&[9, 2]))]),
            )]),
            "invalid serial range 9-2",
        ),
        (
            "range from 0",
            krl(&[(
                SECTION_CERTIFICATES,
                certs(b"", &[(CERT_SERIAL_RANGE, u64s(&[0, 2]))]),
            )]),
            "invalid serial range 0-2",
        ),
        (
            "negative bitmap",
            krl(&[(
                SECTION_CERTIFICATES,
                certs(b"", &[(CERT_SERIAL_BITMAP, bitmap(1, &[0x80]))]),
            )]),
            "negative bitmap",
        ),
        (
            "oversized bitmap",
            krl(&[(
                SECTION_CERTIFICATES,
                certs(b"", &[(CERT_SERIAL_BITMAP, bitmap(1, &[1; 2049]))]),
            )]),
            "bitmap of 2049 bytes is too large",
        ),
        (
            "bitmap past the last serial",
            krl(&[(
                SECTION_CERTIFICATES,
                certs(b"", &[(CERT_SERIAL_BITMAP, bitmap(u64::MAX, &[2]))]),
            )]),
            "bitmap goes past serial 2^64-1",
        ),
        (
            "bitmap revoking serial 0",
            krl(&[(
                SECTION_CERTIFICATES,
                certs(b"", &[(CERT_SERIAL_BITMAP, bitmap(0, &[3]))]),
            )]),
            "serial 0 cannot be revoked",
        ),
        (
            "invalid CA key",
            krl(&[(SECTION_CERTIFICATES, certs(&ca, &[]))]),
            "KRL invalid at byte 57 in section 1 (certificates): CA key is not a valid public key",
        ),
        (
            "short SHA256 hash",
            krl(&[(SECTION_FINGERPRINT_SHA256, string(&[0; 20]))]),
            "hash of 20 bytes, expected 32",
        ),
        (
            "key id with NUL",
            krl(&[(
                SECTION_CERTIFICATES,
                certs(b"", &[(CERT_KEY_ID, string(b"a\0b"))]),
            )]),
            "key id contains a NUL byte",
        ),
        (
            "section after a signature",
            after_signature,
            "only signature sections may follow a signature section",
        ),
    ];
    for (name, bytes, expected) in cases {
        let err = parse_err(&bytes);
        assert!(err.contains(expected), "{name}: {err}");
    }
}

#[test]
fn hand_made_krls_parse_as_krl_c_reads_them() {
    let lab = Lab::new();
    let ca1 = lab.line("ca1.pub");
    let ca1_blob = PublicKey::from_openssh(&ca1)
        .expect("ca1")
        .to_bytes()
        .expect("blob");
    // Bitmap with a redundant leading zero: bits 0 and 2 from offset 4 (serials 4 and 6), and
    // a signature section at the end, which is skipped.
    let mut bytes = krl(&[
        (
            SECTION_CERTIFICATES,
            certs(&ca1_blob, &[(CERT_SERIAL_BITMAP, bitmap(4, &[0, 0x05]))]),
        ),
        (
            SECTION_CERTIFICATES,
            certs(b"", &[(CERT_SERIAL_LIST, vec![]), (CERT_KEY_ID, vec![])]),
        ),
        (SECTION_SIGNATURE, b"signing key".to_vec()),
    ]);
    bytes.extend(string(b"signature"));
    let list = RevocationList::parse(&bytes).expect("parse");
    assert_eq!(
        list.summary(),
        "KRL version 1: 2 serials, 0 serial ranges, 1 serial bitmap, 0 key ids, 0 keys, 0 hashes, 1 signature (not verified)"
    );
    let revoked: Vec<_> = ["c1", "c2", "c3", "c4", "c8"]
        .into_iter()
        .filter(|stem| list.check(&lab.cert(stem)).is_some())
        .collect();
    assert_eq!(revoked, ["c2"], "only serial 6 of ca1");
}

#[test]
fn bitmaps_test_the_bit_for_serial_minus_offset() {
    let bitmap = Bitmap {
        offset: 100,
        bytes: vec![0x81, 0x00, 0x01],
    };
    assert_eq!(bitmap.nbits(), 24);
    let table = [
        (99, false),
        (100, true),
        (101, false),
        (115, false),
        (116, true),
        (117, false),
        (123, true),
        (124, false),
        (u64::MAX, false),
    ];
    for (serial, expected) in table {
        assert_eq!(bitmap.contains(serial), expected, "serial {serial}");
    }
}

#[test]
fn good_text_lines_are_counted_by_kind() {
    let lab = Lab::new();
    let fp = lab.fingerprint("u1.pub", "sha256");
    let table = [
        ("serial: 5", "1 serial, 0 serial ranges"),
        ("SERIAL:5", "1 serial, 0 serial ranges"),
        ("serial: 5-9", "0 serials, 1 serial range"),
        ("serial: 5 - 9", "0 serials, 1 serial range"),
        ("serial: 0x10", "1 serial, 0 serial ranges"),
        ("serial: 18446744073709551615", "1 serial, 0 serial ranges"),
        ("id: alice@corp", "1 key id"),
        ("id: team #1", "1 key id"),
        ("\t id:   spaced out  \r", "1 key id"),
        ("key: {u2}", "1 key"),
        ("{u4}", "1 key"),
        ("{cert:c1}", "1 serial"),
        ("{cert:c5}", "1 key id"),
        ("sha1: {u1}", "1 hash"),
        ("sha256: {u1}", "1 hash"),
        ("sha256: {fp:u1}", "1 hash"),
        ("hash: {fp:u1}", "1 hash"),
        ("# serial: 0", "0 serials"),
    ];
    for (template, expected) in table {
        let line = lab.expand(template);
        let list =
            RevocationList::parse(line.as_bytes()).unwrap_or_else(|e| panic!("{template}: {e}"));
        assert!(
            list.summary().contains(expected),
            "{template}: {}",
            list.summary()
        );
    }
    let list = RevocationList::parse(format!("hash: {fp}").as_bytes()).expect("hash");
    assert!(list.check(&lab.cert("c8")).is_some());
    let list = RevocationList::parse(b"id: team #1").expect("id");
    assert!(
        list.certs
            .iter()
            .any(|s| s.key_ids.contains(b"team #1".as_slice()))
    );
}

#[test]
fn bad_text_lines_are_errors_naming_the_line() {
    let table = [
        ("serial: 1\nfoo: bar", "line 2: unknown directive `foo:`"),
        ("serial: 0", "line 1: serial 0 cannot be revoked by serial"),
        (
            "serial: 0-5",
            "line 1: serial 0 cannot be revoked by serial",
        ),
        (
            "serial: 9-5",
            "line 1: invalid serial range 9-5 (need A < B)",
        ),
        (
            "serial: 5-5",
            "line 1: invalid serial range 5-5 (need A < B)",
        ),
        (
            "serial: 010",
            "line 1: serial `010` has a leading zero (ssh-keygen would read it as octal)",
        ),
        ("serial: -5", "line 1: invalid serial ``"),
        ("serial: five", "line 1: invalid serial `five`"),
        ("serial: 5 # laptop", "line 1: invalid serial `5 # laptop`"),
        (
            "serial: 18446744073709551616",
            "line 1: invalid serial `18446744073709551616`",
        ),
        ("serial: 0x", "line 1: invalid serial `0x`"),
        ("\n\nid:", "line 3: `id:` needs a value"),
        ("key: ssh-ed25519 AAAA", "line 1: invalid public key"),
        ("ssh-ed25519", "line 1: invalid public key"),
        ("not a key at all", "line 1: invalid public key"),
        ("sha1: SHA1:!!!", "line 1: invalid SHA1 fingerprint"),
        (
            "sha1: SHA1:AAAA",
            "line 1: SHA1 fingerprint of 3 bytes, expected 20",
        ),
        (
            "hash: SHA1:2jmj7l5rSw0yVb/vlWAYkK/YBwk",
            "line 1: `hash:` needs a `SHA256:` fingerprint",
        ),
        (
            "sha256: SHA256:AAAA",
            "line 1: SHA256 fingerprint of 3 bytes, expected 32",
        ),
        (
            "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU",
            "line 1: `SHA256:` needs `SHA256:<base64>` or a public key line",
        ),
        ("ok: 1\n", "line 1: unknown directive `ok:`"),
    ];
    for (text, expected) in table {
        let err = parse_err(text.as_bytes());
        assert!(err.starts_with(expected), "{text:?}: {err}");
    }
    assert_eq!(parse_err(b"id: a\n\xff"), "line 2: not UTF-8 text");
}
