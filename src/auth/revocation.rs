//! Certificate revocation: a parsed, immutable revocation list and the check of one user
//! certificate against it.
//!
//! [`RevocationList::parse`] accepts two formats, told apart by the first bytes:
//!
//! 1. **Binary OpenSSH KRL** (input starts with the magic `"SSHKRL\n\0"`), as written by
//!    `ssh-keygen -k` and specified in OpenSSH's `PROTOCOL.krl`, with the semantics of its
//!    `krl.c`: certificate sections (per CA key, or for any CA when the CA key is empty) holding
//!    serial lists, serial ranges, serial bitmaps and key ids; explicit public keys; SHA1 and
//!    SHA256 hashes of public key blobs; signature sections.
//! 2. **Text list** (anything else), one entry per line:
//!    * leading and trailing whitespace is trimmed; blank lines and lines whose first
//!      character is `#` are ignored (a `#` later in a line is *not* a comment: `id: a#1`
//!      revokes the key id `a#1`);
//!    * `NAME: value` is a directive when the `:` comes before any whitespace; names are
//!      case-insensitive; the directives are those of the `ssh-keygen -k` key revocation spec:
//!      - `serial: N` or `serial: A-B` (with `A < B`): certificate serials, **for any CA**;
//!        decimal or `0x` hexadecimal; serial 0 is an error (serial 0 cannot be revoked by
//!        serial), and so is a decimal with a leading zero (`ssh-keygen` reads it as octal);
//!      - `id: KEYID`: a certificate key id (the rest of the line, trimmed), **for any CA**;
//!      - `key: <OpenSSH public key line>`: the key itself;
//!      - `sha1: SHA1:<base64>` or `sha1: <public key line>`: a SHA1 hash of a key;
//!      - `sha256: SHA256:<base64>` or `sha256: <public key line>`: a SHA256 hash of a key;
//!      - `hash: SHA256:<base64>`: a SHA256 hash of a key (as printed by `ssh-keygen -l`);
//!    * any other line must be an OpenSSH public key line (as in sshd's plain-text
//!      `RevokedKeys`), which revokes that key; a certificate line revokes that certificate
//!      by serial for its CA, or by key id for its CA when its serial is 0 (as `ssh-keygen -k`
//!      does);
//!    * anything else is an error naming the line.
//!
//! [`RevocationList::check`] says whether a user certificate is revoked, and why: its serial
//! (unless 0, as in OpenSSH) or its key id is revoked for its signing CA or for any CA, or its
//! subject public key or its CA key is listed (explicitly or by SHA1/SHA256 hash of the key
//! blob). A listed CA key revokes every certificate it signed. CA keys are compared by their
//! public key data, never by comment or fingerprint text.
//!
//! Guarantees: parsing is pure (no I/O) and fails closed: a wrong magic or format version, a
//! truncated or overlong field, an unknown section or subsection type (including the
//! `PROTOCOL.krl` extension sections, which OpenSSH itself refuses), trailing bytes in a
//! section, an invalid serial, bitmap, hash or CA key, or a bad text line is an error, never a
//! partial list. Parsing never panics on any input; every length is bounded by the remaining
//! input and memory use is linear in the input (bitmaps are kept as given, at most 2049 bytes
//! each as in OpenSSH, not expanded).
//!
//! Not done here: KRL signatures are **not verified** (signature sections are parsed and
//! skipped, and must come last; OpenSSH ≥ 9.4 refuses signed KRLs altogether), so the list
//! must come from a trusted place; reading files or watching them for changes; the other
//! certificate checks (signature, validity, principals: the parent `auth` module).

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use russh::keys::ssh_encoding::Encode;
use russh::keys::ssh_key::public::KeyData;
use russh::keys::ssh_key::{Certificate, PublicKey};
use sha1::Digest as _;
use sha2::Digest as _;

use krl::{KRL_MAGIC, parse_krl};

#[path = "revocation_krl.rs"]
mod krl;

/// Why a certificate is revoked, for logs: `"serial 5 (CA SHA256:…)"`, `"key id alice@corp
/// (any CA)"`, `"key SHA256:…"`, `"CA key SHA256:… by SHA1 hash"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revoked(pub String);

impl fmt::Display for Revoked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A revocation list that could not be parsed. Offsets are bytes from the start of the input
/// (for a truncation: where the field that does not fit starts); line numbers start at 1.
#[derive(Debug, thiserror::Error)]
pub enum RevocationError {
    #[error("KRL has a bad magic number (expected \"SSHKRL\\n\\0\")")]
    BadMagic,
    #[error("KRL format version {0} is not supported (expected 1)")]
    UnsupportedFormat(u32),
    #[error("KRL truncated at byte {offset} in {place}")]
    Truncated { offset: usize, place: String },
    #[error("KRL {place}: unknown type {kind:#04x} at byte {offset}")]
    UnknownSection {
        offset: usize,
        place: String,
        kind: u8,
    },
    #[error("KRL {place}: {count} unparsed bytes at byte {offset}")]
    TrailingBytes {
        offset: usize,
        place: String,
        count: usize,
    },
    #[error("KRL invalid at byte {offset} in {place}: {reason}")]
    Invalid {
        offset: usize,
        place: String,
        reason: String,
    },
    #[error("line {line}: not UTF-8 text")]
    NotText { line: usize },
    #[error("line {line}: unknown directive `{directive}:`")]
    UnknownDirective { line: usize, directive: String },
    #[error("line {line}: {reason}")]
    BadLine { line: usize, reason: String },
}

/// A parsed revocation list. [`Default`] is the empty list, which revokes nothing.
#[derive(Debug, Default)]
pub struct RevocationList {
    source: Source,
    /// Certificate revocations, one entry per CA scope (`None`: any CA).
    certs: Vec<CertScope>,
    /// Plain public key blobs (SSH wire encoding).
    keys: BTreeSet<Vec<u8>>,
    sha1: BTreeSet<[u8; 20]>,
    sha256: BTreeSet<[u8; 32]>,
    stats: Stats,
}

#[derive(Debug, Default)]
enum Source {
    #[default]
    Empty,
    Krl {
        version: u64,
    },
    Text,
}

/// What the input held, for [`RevocationList::summary`]: entries as listed, not deduplicated.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Stats {
    /// Single serials: serial list entries, set bitmap bits, text `serial: N`.
    serials: u64,
    ranges: u64,
    bitmaps: u64,
    key_ids: u64,
    keys: u64,
    sha1: u64,
    sha256: u64,
    signatures: u64,
}

#[derive(Debug)]
struct CertScope {
    ca: Option<KeyData>,
    /// `"CA SHA256:…"` or `"any CA"`.
    label: String,
    /// Sorted, merged, inclusive; never containing 0.
    ranges: Vec<(u64, u64)>,
    bitmaps: Vec<Bitmap>,
    key_ids: BTreeSet<Vec<u8>>,
}

/// Bit `n` (counting from the least significant bit of the big-endian `bytes`) revokes serial
/// `offset + n`.
#[derive(Debug)]
struct Bitmap {
    offset: u64,
    /// Big-endian, no leading zero byte, at most 2048 bytes.
    bytes: Vec<u8>,
}

impl Bitmap {
    fn nbits(&self) -> u64 {
        match self.bytes.first() {
            None => 0,
            Some(top) => (self.bytes.len() as u64 - 1) * 8 + u64::from(8 - top.leading_zeros()),
        }
    }

    fn contains(&self, serial: u64) -> bool {
        let Some(n) = serial.checked_sub(self.offset) else {
            return false;
        };
        if n >= self.nbits() {
            return false;
        }
        let from_end = usize::try_from(n / 8).unwrap_or(usize::MAX);
        let byte = self
            .bytes
            .len()
            .checked_sub(1 + from_end)
            .and_then(|i| self.bytes.get(i));
        byte.is_some_and(|b| b & (1 << (n % 8)) != 0)
    }
}

impl CertScope {
    fn new(ca: Option<KeyData>) -> Self {
        let label = match &ca {
            Some(key) => match key_blob(key) {
                Some(blob) => format!("CA {}", sha256_fingerprint(&blob)),
                None => "CA (unencodable key)".to_owned(),
            },
            None => "any CA".to_owned(),
        };
        CertScope {
            ca,
            label,
            ranges: Vec::new(),
            bitmaps: Vec::new(),
            key_ids: BTreeSet::new(),
        }
    }

    fn revokes_serial(&self, serial: u64) -> bool {
        let after = self.ranges.partition_point(|&(lo, _)| lo <= serial);
        let in_range = after
            .checked_sub(1)
            .and_then(|i| self.ranges.get(i))
            .is_some_and(|&(_, hi)| serial <= hi);
        in_range || self.bitmaps.iter().any(|b| b.contains(serial))
    }

    /// Sorts and merges overlapping or adjacent ranges.
    fn normalize(&mut self) {
        self.ranges.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(self.ranges.len());
        for &(lo, hi) in &self.ranges {
            match merged.last_mut() {
                Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
                _ => merged.push((lo, hi)),
            }
        }
        self.ranges = merged;
    }
}

/// The revocation list as the gateway knows it at one moment: none configured, a parsed
/// list, or a configured list that cannot be used (missing, unreadable, corrupt), which
/// refuses every certificate: fail closed.
#[derive(Debug, Clone, Default)]
pub enum Revocations {
    #[default]
    NotConfigured,
    List(Arc<RevocationList>),
    /// Why the list cannot be used, for the refusal and the logs.
    Unavailable(Arc<str>),
}

impl Revocations {
    /// Refuses a revoked certificate, or any certificate while the list is unusable.
    pub fn check(&self, cert: &Certificate) -> Result<(), super::Rejection> {
        match self {
            Revocations::NotConfigured => Ok(()),
            Revocations::List(list) => match list.check(cert) {
                Some(Revoked(why)) => Err(super::Rejection::Revoked(why)),
                None => Ok(()),
            },
            Revocations::Unavailable(why) => {
                Err(super::Rejection::RevocationUnavailable(why.to_string()))
            }
        }
    }
}

impl RevocationList {
    /// Parses a binary KRL (input starting with `"SSHKRL\n\0"`) or else a text list (see the
    /// module documentation). Empty input is the empty list.
    pub fn parse(bytes: &[u8]) -> Result<RevocationList, RevocationError> {
        let mut list = if bytes.starts_with(KRL_MAGIC) {
            parse_krl(bytes)?
        } else if bytes.starts_with(b"SSHKRL") {
            return Err(RevocationError::BadMagic);
        } else {
            parse_text(bytes)?
        };
        for scope in &mut list.certs {
            scope.normalize();
        }
        Ok(list)
    }

    /// Whether `cert` is revoked, with the first reason found, checking in this order: its
    /// serial (never for serial 0) for its CA and for any CA, its key id for its CA and for
    /// any CA, its subject public key, its CA key.
    pub fn check(&self, cert: &Certificate) -> Option<Revoked> {
        let ca = plain(cert.signature_key());
        let scopes = || {
            let own = self.certs.iter().filter(move |s| s.ca.as_ref() == Some(ca));
            own.chain(self.certs.iter().filter(|s| s.ca.is_none()))
        };
        let serial = cert.serial();
        if serial != 0
            && let Some(scope) = scopes().find(|s| s.revokes_serial(serial))
        {
            return Some(Revoked(format!("serial {serial} ({})", scope.label)));
        }
        let key_id = cert.key_id();
        if let Some(scope) = scopes().find(|s| s.key_ids.contains(key_id.as_bytes())) {
            let id = key_id.escape_debug();
            return Some(Revoked(format!("key id {id} ({})", scope.label)));
        }
        if let Some(how) = self.key_reason(plain(cert.public_key())) {
            return Some(Revoked(format!("key {how}")));
        }
        self.key_reason(ca)
            .map(|how| Revoked(format!("CA key {how}")))
    }

    /// One line for logs, e.g. `"KRL version 3: 4 serials, 1 serial range, 1 serial bitmap,
    /// 2 key ids, 1 key, 0 hashes"`.
    pub fn summary(&self) -> String {
        let s = &self.stats;
        let head = match &self.source {
            Source::Empty => "empty list".to_owned(),
            Source::Krl { version, .. } => format!("KRL version {version}"),
            Source::Text => "text list".to_owned(),
        };
        let mut out = format!(
            "{head}: {}, {}, {}, {}, {}, {}",
            count(s.serials, "serial", "serials"),
            count(s.ranges, "serial range", "serial ranges"),
            count(s.bitmaps, "serial bitmap", "serial bitmaps"),
            count(s.key_ids, "key id", "key ids"),
            count(s.keys, "key", "keys"),
            count(s.sha1.saturating_add(s.sha256), "hash", "hashes"),
        );
        if s.signatures > 0 {
            let sigs = count(s.signatures, "signature", "signatures");
            out.push_str(&format!(", {sigs} (not verified)"));
        }
        out
    }

    /// Why `key` is listed itself (explicitly or by hash), if it is: `"SHA256:… by SHA1 hash"`.
    fn key_reason(&self, key: &KeyData) -> Option<String> {
        let Some(blob) = key_blob(key) else {
            // ssh-key cannot encode a key it decoded: fail closed.
            return Some("that cannot be encoded".to_owned());
        };
        let fingerprint = sha256_fingerprint(&blob);
        if self.keys.contains(&blob) {
            return Some(fingerprint);
        }
        if self.sha1.contains(&sha1_of(&blob)) {
            return Some(format!("{fingerprint} by SHA1 hash"));
        }
        if self.sha256.contains(&sha256_of(&blob)) {
            return Some(format!("{fingerprint} by SHA256 hash"));
        }
        None
    }

    fn scope_mut(&mut self, ca: Option<KeyData>) -> &mut CertScope {
        let pos = match self.certs.iter().position(|s| s.ca == ca) {
            Some(pos) => pos,
            None => {
                self.certs.push(CertScope::new(ca));
                self.certs.len() - 1
            }
        };
        &mut self.certs[pos]
    }

    fn add_key(&mut self, key: &KeyData) -> Result<(), String> {
        let blob = key_blob(plain(key)).ok_or("the key cannot be encoded")?;
        self.keys.insert(blob);
        self.stats.keys += 1;
        Ok(())
    }
}

fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The key itself for a plain key; the subject key of a certificate.
fn plain(key: &KeyData) -> &KeyData {
    match key {
        KeyData::Certificate(cert) => cert.public_key(),
        other => other,
    }
}

fn key_blob(key: &KeyData) -> Option<Vec<u8>> {
    key.encode_vec().ok()
}

fn sha1_of(blob: &[u8]) -> [u8; 20] {
    sha1::Sha1::digest(blob).into()
}

fn sha256_of(blob: &[u8]) -> [u8; 32] {
    sha2::Sha256::digest(blob).into()
}

fn sha256_fingerprint(blob: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD_NO_PAD.encode(sha256_of(blob));
    format!("SHA256:{b64}")
}

// ---------------------------------------------------------------------------------------------
// Text list

fn parse_text(bytes: &[u8]) -> Result<RevocationList, RevocationError> {
    let text = std::str::from_utf8(bytes).map_err(|e| RevocationError::NotText {
        line: 1 + bytes
            .get(..e.valid_up_to())
            .unwrap_or_default()
            .iter()
            .filter(|&&b| b == b'\n')
            .count(),
    })?;
    let mut list = RevocationList {
        source: Source::Text,
        ..RevocationList::default()
    };
    for (number, line) in text.lines().enumerate() {
        let line_no = number + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some((name, _)) = directive(line)
            && !DIRECTIVES.contains(&name.to_ascii_lowercase().as_str())
        {
            let directive = name.to_owned();
            return Err(RevocationError::UnknownDirective {
                line: line_no,
                directive,
            });
        }
        parse_line(&mut list, line).map_err(|reason| RevocationError::BadLine {
            line: line_no,
            reason,
        })?;
    }
    Ok(list)
}

const DIRECTIVES: [&str; 6] = ["serial", "id", "key", "sha1", "sha256", "hash"];

/// `(name, value)` when the line starts with `name:`, with no whitespace before the `:`.
fn directive(line: &str) -> Option<(&str, &str)> {
    line.split_once(':')
        .filter(|(name, _)| !name.contains(char::is_whitespace))
}

fn parse_line(list: &mut RevocationList, line: &str) -> Result<(), String> {
    let Some((name, value)) = directive(line) else {
        return revoke_key_line(list, line);
    };
    let value = value.trim();
    if value.is_empty() {
        return Err(format!("`{name}:` needs a value"));
    }
    let lower = name.to_ascii_lowercase();
    match lower.as_str() {
        "serial" => {
            let (lo, hi) = parse_serials(value)?;
            list.scope_mut(None).ranges.push((lo, hi));
            if lo == hi {
                list.stats.serials += 1;
            } else {
                list.stats.ranges += 1;
            }
        }
        "id" => {
            list.scope_mut(None)
                .key_ids
                .insert(value.as_bytes().to_vec());
            list.stats.key_ids += 1;
        }
        "key" => list.add_key(&parse_key(value)?)?,
        "sha1" => {
            let hash = match value.strip_prefix("SHA1:") {
                Some(b64) => decode_hash(b64, "SHA1")?,
                None => sha1_of(&hashed_key(name, "SHA1", value)?),
            };
            list.sha1.insert(hash);
            list.stats.sha1 += 1;
        }
        "sha256" | "hash" => {
            let hash = match value.strip_prefix("SHA256:") {
                Some(b64) => decode_hash(b64, "SHA256")?,
                None if lower == "sha256" => sha256_of(&hashed_key(name, "SHA256", value)?),
                None => return Err("`hash:` needs a `SHA256:` fingerprint".to_owned()),
            };
            list.sha256.insert(hash);
            list.stats.sha256 += 1;
        }
        _ => return Err(format!("unknown directive `{name}:`")),
    }
    Ok(())
}

/// A bare public key line: the key itself, or a certificate by serial (by key id for serial 0)
/// for its own CA.
fn revoke_key_line(list: &mut RevocationList, line: &str) -> Result<(), String> {
    let key = parse_key(line)?;
    let KeyData::Certificate(cert) = &key else {
        return list.add_key(&key);
    };
    let scope = list.scope_mut(Some(plain(cert.signature_key()).clone()));
    if cert.serial() == 0 {
        scope.key_ids.insert(cert.key_id().as_bytes().to_vec());
        list.stats.key_ids += 1;
    } else {
        scope.ranges.push((cert.serial(), cert.serial()));
        list.stats.serials += 1;
    }
    Ok(())
}

/// An OpenSSH public key or certificate line (`type base64 [comment]`).
fn parse_key(text: &str) -> Result<KeyData, String> {
    let kind = text.split_whitespace().next().unwrap_or_default();
    if kind.ends_with("-cert-v01@openssh.com") {
        Certificate::from_openssh(text)
            .map(|cert| KeyData::Certificate(Box::new(cert)))
            .map_err(|e| format!("invalid certificate: {e}"))
    } else {
        PublicKey::from_openssh(text)
            .map(|key| key.key_data().clone())
            .map_err(|e| format!("invalid public key: {e}"))
    }
}

/// The plain key blob of the public key line after `name:`, to hash.
fn hashed_key(name: &str, alg: &str, text: &str) -> Result<Vec<u8>, String> {
    let key = parse_key(text)
        .map_err(|e| format!("`{name}:` needs `{alg}:<base64>` or a public key line ({e})"))?;
    key_blob(plain(&key)).ok_or_else(|| "the key cannot be encoded".to_owned())
}

fn decode_hash<const N: usize>(b64: &str, alg: &str) -> Result<[u8; N], String> {
    let engine = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let raw = engine
        .decode(b64)
        .map_err(|e| format!("invalid {alg} fingerprint: {e}"))?;
    <[u8; N]>::try_from(raw.as_slice())
        .map_err(|_| format!("{alg} fingerprint of {} bytes, expected {N}", raw.len()))
}

/// `N` or `A-B` (`A < B`); serial 0 is refused.
fn parse_serials(value: &str) -> Result<(u64, u64), String> {
    let (lo, hi) = match value.split_once('-') {
        Some((lo, hi)) => (parse_serial(lo.trim())?, parse_serial(hi.trim())?),
        None => {
            let serial = parse_serial(value)?;
            (serial, serial)
        }
    };
    if lo == 0 {
        return Err("serial 0 cannot be revoked by serial".to_owned());
    }
    if value.contains('-') && hi <= lo {
        return Err(format!("invalid serial range {lo}-{hi} (need A < B)"));
    }
    Ok((lo, hi))
}

fn parse_serial(text: &str) -> Result<u64, String> {
    let parsed = if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        (!hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| u64::from_str_radix(hex, 16).ok())
            .flatten()
    } else if text.len() > 1 && text.starts_with('0') {
        return Err(format!(
            "serial `{text}` has a leading zero (ssh-keygen would read it as octal)"
        ));
    } else {
        (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
            .then(|| text.parse::<u64>().ok())
            .flatten()
    };
    parsed.ok_or_else(|| format!("invalid serial `{text}`"))
}

#[cfg(test)]
#[path = "revocation_input_tests.rs"]
mod input_tests;
#[cfg(test)]
#[path = "revocation_props.rs"]
mod props;
#[cfg(test)]
#[path = "revocation_tests.rs"]
mod tests;
