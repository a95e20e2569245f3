//! Certificates no `ssh-keygen` makes, for the certificate matrix: from ssh-key's builder,
//! and encoded byte by byte as PROTOCOL.certkeys lays them out (inverted validity,
//! duplicated options, option data with trailing bytes, control characters, huge fields).

use std::time::{SystemTime, UNIX_EPOCH};

use russh::keys::ssh_key::certificate::{Builder, CertType};
use russh::keys::ssh_key::{PrivateKey, PublicKey};

use super::gateway_support::TestGateway;

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The fields of a raw certificate; options are given encoded, as they go on the wire.
pub struct RawSpec {
    pub serial: u64,
    pub host: bool,
    pub key_id: String,
    pub principals: Vec<String>,
    pub after: u64,
    pub before: u64,
    /// (name, data) pairs; data is usually a string holding the value.
    pub critical: Vec<(String, Vec<u8>)>,
    pub extensions: Vec<(String, Vec<u8>)>,
}

/// alice's certificate for the test user key from ssh-key's builder, signed by the test CA.
pub fn build(gw: &TestGateway) -> russh::keys::Certificate {
    let ca = PrivateKey::read_openssh_file(&gw.ca).unwrap();
    let user = PublicKey::read_openssh_file(gw.key.with_extension("pub")).unwrap();
    let mut b = Builder::new(
        vec![7u8; 32],
        user.key_data().clone(),
        now() - 60,
        now() + 3600,
    )
    .unwrap();
    b.serial(12).unwrap();
    b.cert_type(CertType::User).unwrap();
    b.key_id("alice@corp.example").unwrap();
    b.valid_principal("alice").unwrap();
    b.critical_option("cluster@podgate", "test").unwrap();
    b.extension("permit-pty", "").unwrap();
    b.extension("groups@podgate", "oncall-payments").unwrap();
    b.sign(&ca).unwrap()
}

/// An option's data holding `value` (a string inside the data string).
pub fn o(value: &str) -> Vec<u8> {
    string(value.as_bytes())
}

/// An SSH string: u32 length, then the bytes.
pub fn string(bytes: &[u8]) -> Vec<u8> {
    let mut v = (bytes.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(bytes);
    v
}

fn options(list: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut v = Vec::new();
    for (name, data) in list {
        v.extend(string(name.as_bytes()));
        v.extend(string(data));
    }
    v
}

/// An `ssh-ed25519-cert-v01@openssh.com` certificate line for the test user key, encoded
/// field by field as PROTOCOL.certkeys lays it out and signed by the test CA.
pub fn raw_certificate(gw: &TestGateway, edit: fn(&mut RawSpec)) -> String {
    use base64::Engine as _;
    use russh::keys::signature::Signer;
    use russh::keys::ssh_encoding::Encode;
    use russh::keys::ssh_key::Signature;
    let ca = PrivateKey::read_openssh_file(&gw.ca).unwrap();
    let user = PublicKey::read_openssh_file(gw.key.with_extension("pub")).unwrap();
    let mut s = RawSpec {
        serial: 13,
        host: false,
        key_id: "alice@corp.example".into(),
        principals: vec!["alice".into()],
        after: now() - 60,
        before: now() + 3600,
        critical: vec![("cluster@podgate".into(), o("test"))],
        extensions: vec![
            ("groups@podgate".into(), o("oncall-payments")),
            ("permit-pty".into(), Vec::new()),
        ],
    };
    edit(&mut s);
    let kind = "ssh-ed25519-cert-v01@openssh.com";
    let mut blob = string(kind.as_bytes());
    blob.extend(string(&[9u8; 32]));
    blob.extend(string(user.key_data().ed25519().unwrap().as_ref()));
    blob.extend(s.serial.to_be_bytes());
    blob.extend(if s.host { 2u32 } else { 1u32 }.to_be_bytes());
    blob.extend(string(s.key_id.as_bytes()));
    let principals: Vec<u8> = s
        .principals
        .iter()
        .flat_map(|p| string(p.as_bytes()))
        .collect();
    blob.extend(string(&principals));
    blob.extend(s.after.to_be_bytes());
    blob.extend(s.before.to_be_bytes());
    blob.extend(string(&options(&s.critical)));
    blob.extend(string(&options(&s.extensions)));
    blob.extend(string(b""));
    blob.extend(string(&ca.public_key().key_data().encode_vec().unwrap()));
    let signature: Signature = ca.try_sign(&blob).unwrap();
    blob.extend(string(&signature.encode_vec().unwrap()));
    let engine = base64::engine::general_purpose::STANDARD;
    format!("{kind} {}\n", engine.encode(blob))
}
