//! The binary OpenSSH KRL format (`PROTOCOL.krl`), read as OpenSSH's `krl.c` reads it, into a
//! [`RevocationList`]. Every read is bounded by the bytes that remain; no input is indexed.

use super::*;

/// `"SSHKRL\n\0"`, the first bytes of a binary KRL.
pub(super) const KRL_MAGIC: &[u8; 8] = b"SSHKRL\n\0";
pub(super) const KRL_FORMAT_VERSION: u32 = 1;

pub(super) const SECTION_CERTIFICATES: u8 = 1;
pub(super) const SECTION_EXPLICIT_KEY: u8 = 2;
pub(super) const SECTION_FINGERPRINT_SHA1: u8 = 3;
pub(super) const SECTION_SIGNATURE: u8 = 4;
pub(super) const SECTION_FINGERPRINT_SHA256: u8 = 5;

pub(super) const CERT_SERIAL_LIST: u8 = 0x20;
pub(super) const CERT_SERIAL_RANGE: u8 = 0x21;
pub(super) const CERT_SERIAL_BITMAP: u8 = 0x22;
pub(super) const CERT_KEY_ID: u8 = 0x23;

/// Largest bitmap, in bytes, without its optional leading zero (OpenSSH's `SSHBUF_MAX_BIGNUM`).
pub(super) const MAX_BITMAP_BYTES: usize = 16384 / 8;

/// Where the reader is, for error messages: the header, section N, subsection M of section N.
#[derive(Debug, Clone, Copy)]
enum Place {
    Header,
    Section(u32, Option<u8>),
    Sub(u32, u32, u8),
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Place::Header => f.write_str("header"),
            Place::Section(n, kind) => write!(f, "section {n}{}", name(kind)),
            Place::Sub(n, m, kind) => {
                write!(
                    f,
                    "section {n} (certificates), subsection {m}{}",
                    name(Some(kind))
                )
            }
        }
    }
}

/// `" (certificates)"` for a known section or subsection type (their numbers do not overlap).
fn name(kind: Option<u8>) -> &'static str {
    match kind {
        Some(SECTION_CERTIFICATES) => " (certificates)",
        Some(SECTION_EXPLICIT_KEY) => " (explicit keys)",
        Some(SECTION_FINGERPRINT_SHA1) => " (SHA1 hashes)",
        Some(SECTION_SIGNATURE) => " (signature)",
        Some(SECTION_FINGERPRINT_SHA256) => " (SHA256 hashes)",
        Some(CERT_SERIAL_LIST) => " (serial list)",
        Some(CERT_SERIAL_RANGE) => " (serial range)",
        Some(CERT_SERIAL_BITMAP) => " (serial bitmap)",
        Some(CERT_KEY_ID) => " (key ids)",
        _ => "",
    }
}

/// A bounds-checked cursor over `data`, which starts at byte `base` of the whole input.
struct Reader<'a> {
    data: &'a [u8],
    base: usize,
    pos: usize,
    place: Place,
}

impl<'a> Reader<'a> {
    fn offset(&self) -> usize {
        self.base.saturating_add(self.pos)
    }

    fn rest(&self) -> &'a [u8] {
        self.data.get(self.pos..).unwrap_or_default()
    }

    fn is_empty(&self) -> bool {
        self.rest().is_empty()
    }

    fn truncated(&self, offset: usize) -> RevocationError {
        RevocationError::Truncated {
            offset,
            place: self.place.to_string(),
        }
    }

    fn invalid(&self, offset: usize, reason: impl Into<String>) -> RevocationError {
        RevocationError::Invalid {
            offset,
            place: self.place.to_string(),
            reason: reason.into(),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], RevocationError> {
        let (head, _) = self
            .rest()
            .split_at_checked(n)
            .ok_or_else(|| self.truncated(self.offset()))?;
        self.pos += n;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], RevocationError> {
        let at = self.offset();
        <[u8; N]>::try_from(self.take(N)?).map_err(|_| self.truncated(at))
    }

    fn u8(&mut self) -> Result<u8, RevocationError> {
        Ok(u8::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, RevocationError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, RevocationError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// An SSH `string`; its offset (after the length) and bytes.
    fn string(&mut self) -> Result<(usize, &'a [u8]), RevocationError> {
        let start = self.offset();
        let len = usize::try_from(self.u32()?).map_err(|_| self.truncated(start))?;
        let at = self.offset();
        let bytes = self.take(len).map_err(|_| self.truncated(start))?;
        Ok((at, bytes))
    }

    /// A `string` as a reader of its own, for a (sub)section at `place`.
    fn nested(&mut self, place: Place) -> Result<Reader<'a>, RevocationError> {
        let (base, data) = self.string()?;
        Ok(Reader {
            data,
            base,
            pos: 0,
            place,
        })
    }

    fn finish(&self) -> Result<(), RevocationError> {
        match self.rest().len() {
            0 => Ok(()),
            count => Err(RevocationError::TrailingBytes {
                offset: self.offset(),
                place: self.place.to_string(),
                count,
            }),
        }
    }
}

pub(super) fn parse_krl(bytes: &[u8]) -> Result<RevocationList, RevocationError> {
    let mut r = Reader {
        data: bytes,
        base: 0,
        pos: 0,
        place: Place::Header,
    };
    if r.take(KRL_MAGIC.len())? != KRL_MAGIC {
        return Err(RevocationError::BadMagic);
    }
    let format = r.u32()?;
    if format != KRL_FORMAT_VERSION {
        return Err(RevocationError::UnsupportedFormat(format));
    }
    let version = r.u64()?;
    let _generated_date = r.u64()?;
    let _flags = r.u64()?; // none defined; OpenSSH ignores them too
    let _reserved = r.string()?;
    let (at, comment) = r.string()?;
    if comment.contains(&0) {
        return Err(r.invalid(at, "comment contains a NUL byte"));
    }
    let mut list = RevocationList {
        source: Source::Krl { version },
        ..RevocationList::default()
    };

    let mut index = 0u32;
    let mut signed = false;
    while !r.is_empty() {
        index = index.saturating_add(1);
        r.place = Place::Section(index, None);
        let at = r.offset();
        let kind = r.u8()?;
        r.place = Place::Section(index, Some(kind));
        let mut section = r.nested(r.place)?;
        if signed && kind != SECTION_SIGNATURE {
            return Err(r.invalid(at, "only signature sections may follow a signature section"));
        }
        match kind {
            SECTION_CERTIFICATES => parse_certificates(&mut section, &mut list, index)?,
            SECTION_EXPLICIT_KEY => {
                while !section.is_empty() {
                    let (_, blob) = section.string()?;
                    list.keys.insert(blob.to_vec());
                    list.stats.keys += 1;
                }
            }
            SECTION_FINGERPRINT_SHA1 => {
                while !section.is_empty() {
                    list.sha1.insert(hash_entry(&mut section)?);
                    list.stats.sha1 += 1;
                }
            }
            SECTION_FINGERPRINT_SHA256 => {
                while !section.is_empty() {
                    list.sha256.insert(hash_entry(&mut section)?);
                    list.stats.sha256 += 1;
                }
            }
            SECTION_SIGNATURE => {
                // `section` is the signing key; the signature follows as a second string.
                // Neither is checked: KRL signatures are not verified (see the module doc).
                section.pos = section.data.len();
                r.string()?;
                signed = true;
                list.stats.signatures += 1;
            }
            _ => {
                return Err(RevocationError::UnknownSection {
                    offset: at,
                    place: r.place.to_string(),
                    kind,
                });
            }
        }
        section.finish()?;
    }
    Ok(list)
}

fn hash_entry<const N: usize>(r: &mut Reader<'_>) -> Result<[u8; N], RevocationError> {
    let (at, hash) = r.string()?;
    <[u8; N]>::try_from(hash)
        .map_err(|_| r.invalid(at, format!("hash of {} bytes, expected {N}", hash.len())))
}

fn parse_certificates(
    r: &mut Reader<'_>,
    list: &mut RevocationList,
    index: u32,
) -> Result<(), RevocationError> {
    let (at, ca_blob) = r.string()?;
    let ca = if ca_blob.is_empty() {
        None
    } else {
        let key = PublicKey::from_bytes(ca_blob)
            .map_err(|e| r.invalid(at, format!("CA key is not a valid public key: {e}")))?;
        Some(key.key_data().clone())
    };
    let _reserved = r.string()?;
    let mut stats = list.stats;
    let scope = list.scope_mut(ca);
    let mut sub = 0u32;
    while !r.is_empty() {
        sub = sub.saturating_add(1);
        let at = r.offset();
        let kind = r.u8()?;
        let place = Place::Sub(index, sub, kind);
        let mut s = r.nested(place)?;
        match kind {
            CERT_SERIAL_LIST => {
                while !s.is_empty() {
                    let at = s.offset();
                    let serial = s.u64()?;
                    if serial == 0 {
                        return Err(s.invalid(at, "serial 0 cannot be revoked"));
                    }
                    scope.ranges.push((serial, serial));
                    stats.serials += 1;
                }
            }
            CERT_SERIAL_RANGE => {
                let at = s.offset();
                let (lo, hi) = (s.u64()?, s.u64()?);
                if lo == 0 || lo > hi {
                    return Err(s.invalid(at, format!("invalid serial range {lo}-{hi}")));
                }
                scope.ranges.push((lo, hi));
                stats.ranges += 1;
            }
            CERT_SERIAL_BITMAP => {
                let bitmap = parse_bitmap(&mut s)?;
                stats.serials += bitmap
                    .bytes
                    .iter()
                    .map(|b| u64::from(b.count_ones()))
                    .sum::<u64>();
                stats.bitmaps += 1;
                scope.bitmaps.push(bitmap);
            }
            CERT_KEY_ID => {
                while !s.is_empty() {
                    let (at, id) = s.string()?;
                    if id.contains(&0) {
                        return Err(s.invalid(at, "key id contains a NUL byte"));
                    }
                    scope.key_ids.insert(id.to_vec());
                    stats.key_ids += 1;
                }
            }
            _ => {
                return Err(RevocationError::UnknownSection {
                    offset: at,
                    place: place.to_string(),
                    kind,
                });
            }
        }
        s.finish()?;
    }
    list.stats = stats;
    Ok(())
}

/// `u64 offset, mpint bitmap`, checked as `krl.c` does: not negative, at most 16384 bits,
/// leading zero bytes ignored, no bit for serial 0, no serial past `u64::MAX`.
fn parse_bitmap(r: &mut Reader<'_>) -> Result<Bitmap, RevocationError> {
    let offset = r.u64()?;
    let (at, raw) = r.string()?;
    match raw.first() {
        Some(first) if first & 0x80 != 0 => return Err(r.invalid(at, "negative bitmap")),
        Some(&first)
            if raw.len() > MAX_BITMAP_BYTES + 1 || (raw.len() > MAX_BITMAP_BYTES && first != 0) =>
        {
            return Err(r.invalid(at, format!("bitmap of {} bytes is too large", raw.len())));
        }
        _ => {}
    }
    let start = raw.iter().position(|&b| b != 0).unwrap_or(raw.len());
    let bitmap = Bitmap {
        offset,
        bytes: raw.get(start..).unwrap_or_default().to_vec(),
    };
    if let Some(last_bit) = bitmap.nbits().checked_sub(1)
        && offset.checked_add(last_bit).is_none()
    {
        return Err(r.invalid(at, "bitmap goes past serial 2^64-1"));
    }
    if offset == 0 && bitmap.contains(0) {
        return Err(r.invalid(at, "serial 0 cannot be revoked"));
    }
    Ok(bitmap)
}
