//! Trusted user CA keys: parsed from authorized_keys-style files, compared by key.

use super::*;

/// Smallest RSA CA key accepted.
pub(super) const MIN_RSA_BITS: u32 = 2048;

/// Trusted user CA keys (several, for rotation).
#[derive(Debug, Clone, Default)]
pub struct TrustedCas {
    keys: Vec<(PublicKey, String)>,
}

/// A trusted-CA file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// A line that is not a usable CA key; `line` counts from 1.
    #[error("{source_name} line {line}: {problem}")]
    BadLine {
        source_name: String,
        line: usize,
        problem: String,
    },
    #[error("{source_name}: no public keys found")]
    NoKeys { source_name: String },
}

impl TrustedCas {
    /// Parse OpenSSH public key lines (blank lines and `#` comments skipped; an optional
    /// comment may follow the key). `source` names the file in errors. Certificates, `ssh-dss`
    /// (which OpenSSH no longer accepts), unknown key types, RSA keys under 2048 bits and a
    /// text with no key at all are errors: a CA file that trusts nothing is a mistake.
    pub fn parse(source: &str, text: &str) -> Result<TrustedCas, CaError> {
        let mut cas = TrustedCas::default();
        for (index, raw) in text.lines().enumerate() {
            let line = index.saturating_add(1);
            let bad = |problem| CaError::BadLine {
                source_name: source.to_owned(),
                line,
                problem,
            };
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            if trimmed
                .split_whitespace()
                .next()
                .is_some_and(|t| t.ends_with("-cert-v01@openssh.com"))
            {
                return Err(bad(
                    "a certificate, but a CA must be a plain public key".into()
                ));
            }
            let key = PublicKey::from_openssh(trimmed)
                .map_err(|e| bad(format!("not an OpenSSH public key: {e}")))?;
            match key.key_data() {
                KeyData::Rsa(rsa) if rsa.key_size() < MIN_RSA_BITS => {
                    let bits = rsa.key_size();
                    return Err(bad(format!(
                        "RSA CA key of {bits} bits (minimum {MIN_RSA_BITS})"
                    )));
                }
                KeyData::Dsa(_) | KeyData::Other(_) | KeyData::Certificate(_) => {
                    let name = key.algorithm().as_str().to_owned();
                    return Err(bad(format!("CA key type {name} is not accepted")));
                }
                _ => cas.add(key),
            }
        }
        if cas.is_empty() {
            return Err(CaError::NoKeys {
                source_name: source.to_owned(),
            });
        }
        Ok(cas)
    }

    fn add(&mut self, key: PublicKey) {
        if self
            .keys
            .iter()
            .any(|(k, _)| k.key_data() == key.key_data())
        {
            return;
        }
        let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
        self.keys.push((key, fingerprint));
    }

    /// Add the keys of `other` (duplicates are kept once).
    pub fn merge(&mut self, other: TrustedCas) {
        for (key, _) in other.keys {
            self.add(key);
        }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// `SHA256:...` fingerprints, in file order.
    pub fn fingerprints(&self) -> Vec<String> {
        self.keys.iter().map(|(_, fp)| fp.clone()).collect()
    }

    /// The fingerprint of `key` if it is trusted. Compares the whole key, not a hash of it.
    pub(super) fn find(&self, key: &KeyData) -> Option<&str> {
        self.keys
            .iter()
            .find(|(k, _)| k.key_data() == key)
            .map(|(_, fp)| fp.as_str())
    }
}
