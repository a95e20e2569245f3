//! The inside of a JSON string (RFC 8259 §7), written straight into an output buffer, and
//! an incremental UTF-8 decoder that feeds it: the transcript's hot path.
//!
//! Guarantees:
//! - `escape_into` writes byte for byte what `serde_json` writes for the same `&str`
//!   (`\"`, `\\`, `\b`, `\f`, `\n`, `\r`, `\t`, other controls as `\u00xx` in lower-case hex,
//!   everything else — DEL and non-ASCII included — as it is), so transcripts written before
//!   and after this module are the same bytes. A property test holds it to that.
//! - Runs of bytes that need no escape are found eight at a time (a word-at-a-time test for
//!   "a byte below 0x20, or `"`, or `\`") and copied in one `extend_from_slice`: plain text
//!   is escaped at close to memcpy speed instead of one table lookup per byte.
//! - `Utf8Decoder` keeps a character split across chunks whole (at most 3 bytes wait for
//!   the next chunk) and turns bytes that can never be UTF-8 into U+FFFD, one per maximal
//!   invalid sequence, as `String::from_utf8_lossy` does.
//!
//! Not done here: framing the event (`[time, code, "…"]`), which `cast` owns.

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// Whether any byte of `w` is below 0x20, `"` or `\`. Exact as a yes/no answer (the
/// classic "has zero byte" and "has byte less than n" tests, n ≤ 128); bytes ≥ 0x80 never
/// match, so UTF-8 continuation and lead bytes pass through the fast path.
fn word_needs_escape(w: u64) -> bool {
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let below_space = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
    (below_space | has_zero(w ^ (ONES * u64::from(b'"'))) | has_zero(w ^ (ONES * u64::from(b'\\'))))
        != 0
}

fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

fn push_escape(out: &mut Vec<u8>, b: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    match b {
        b'"' => out.extend_from_slice(b"\\\""),
        b'\\' => out.extend_from_slice(b"\\\\"),
        0x08 => out.extend_from_slice(b"\\b"),
        0x0c => out.extend_from_slice(b"\\f"),
        b'\n' => out.extend_from_slice(b"\\n"),
        b'\r' => out.extend_from_slice(b"\\r"),
        b'\t' => out.extend_from_slice(b"\\t"),
        _ => {
            let hi = HEX.get(usize::from(b >> 4)).copied().unwrap_or(b'0');
            let lo = HEX.get(usize::from(b & 0xf)).copied().unwrap_or(b'0');
            out.extend_from_slice(&[b'\\', b'u', b'0', b'0', hi, lo]);
        }
    }
}

/// Append `s`, escaped as the inside of a JSON string, to `out`.
pub fn escape_into(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len());
    // `run` is the start of the bytes not yet copied; `i` the next byte to look at.
    let mut run = 0;
    let mut i = 0;
    while i < bytes.len() {
        if let Some(word) = bytes.get(i..i + 8) {
            let w = u64::from_le_bytes(<[u8; 8]>::try_from(word).unwrap_or([0; 8]));
            if !word_needs_escape(w) {
                i += 8;
                continue;
            }
        }
        // Somewhere in the next (up to) eight bytes: look at them one by one.
        let end = (i + 8).min(bytes.len());
        while i < end {
            let b = bytes.get(i).copied().unwrap_or(0);
            if needs_escape(b) {
                out.extend_from_slice(bytes.get(run..i).unwrap_or_default());
                push_escape(out, b);
                run = i + 1;
            }
            i += 1;
        }
    }
    out.extend_from_slice(bytes.get(run..).unwrap_or_default());
}

/// Incremental UTF-8 decoding into escaped JSON text.
#[derive(Default)]
pub struct Utf8Decoder {
    /// The start (at most 3 bytes) of a character the next chunk may complete.
    pending: Vec<u8>,
}

impl Utf8Decoder {
    /// Decode `bytes` (after what was pending) and append it escaped to `out`. Returns
    /// whether anything was appended.
    pub fn feed_escaped(&mut self, bytes: &[u8], out: &mut Vec<u8>) -> bool {
        let before = out.len();
        if self.pending.is_empty() {
            self.decode(bytes, out);
        } else {
            let mut joined = std::mem::take(&mut self.pending);
            joined.extend_from_slice(bytes);
            self.decode(&joined, out);
        }
        out.len() > before
    }

    fn decode(&mut self, mut bytes: &[u8], out: &mut Vec<u8>) {
        loop {
            match std::str::from_utf8(bytes) {
                Ok(s) => {
                    escape_into(out, s);
                    return;
                }
                Err(e) => {
                    let (valid, rest) = bytes.split_at(e.valid_up_to());
                    // `valid` is UTF-8 by the error's own account.
                    escape_into(out, std::str::from_utf8(valid).unwrap_or_default());
                    match e.error_len() {
                        Some(n) => {
                            escape_into(out, "\u{fffd}");
                            bytes = rest.get(n..).unwrap_or_default();
                        }
                        None => {
                            self.pending = rest.to_vec();
                            return;
                        }
                    }
                }
            }
        }
    }

    /// The end of the stream: a character left incomplete can never be completed, and
    /// becomes U+FFFD.
    pub fn drain(&mut self) -> Option<char> {
        if self.pending.is_empty() {
            return None;
        }
        self.pending.clear();
        Some(char::REPLACEMENT_CHARACTER)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn escaped(s: &str) -> String {
        let mut out = Vec::new();
        escape_into(&mut out, s);
        String::from_utf8(out).unwrap()
    }

    fn serde(s: &str) -> String {
        let quoted = serde_json::to_string(s).unwrap();
        quoted[1..quoted.len() - 1].to_owned()
    }

    #[test]
    fn escapes_like_serde_json() {
        let cases = [
            "",
            "plain",
            "exactly8",
            "sixteen bytes!!!",
            "\"",
            "\\",
            "a\"b\\c",
            "\u{0}\u{1}\u{8}\u{9}\u{a}\u{b}\u{c}\u{d}\u{1b}\u{1f} \u{7f}",
            "line one\nline two\r\n\ttabbed",
            "ünïcödé € 🦀 \u{fffd}",
            "\u{1b}[31mred\u{1b}[0m and a long tail without escapes in it at all",
            "12345678\"2345678\\234567\n",
        ];
        for s in cases {
            assert_eq!(escaped(s), serde(s), "{s:?}");
        }
    }

    #[test]
    fn decoder_keeps_split_characters_and_replaces_invalid_bytes() {
        let mut d = Utf8Decoder::default();
        let mut out = Vec::new();
        let crab = "🦀".as_bytes();
        assert!(!d.feed_escaped(&crab[..2], &mut out));
        assert!(d.feed_escaped(&crab[2..], &mut out));
        assert!(d.feed_escaped(b"a\xffb\"", &mut out));
        assert!(!d.feed_escaped(&crab[..1], &mut out));
        assert_eq!(d.drain(), Some('\u{fffd}'));
        assert_eq!(d.drain(), None);
        assert_eq!(String::from_utf8(out).unwrap(), "🦀a\u{fffd}b\\\"");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn any_string_escapes_like_serde_json(s in ".*|[\\x00-\\x7f]{0,64}") {
            prop_assert_eq!(escaped(&s), serde(&s));
        }

        #[test]
        fn any_bytes_in_any_chunks_decode_like_from_utf8_lossy(
            bytes in proptest::collection::vec(any::<u8>(), 0..200),
            cuts in proptest::collection::vec(0usize..200, 0..6),
        ) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(bytes.len())).collect();
            cuts.sort_unstable();
            let mut d = Utf8Decoder::default();
            let mut out = Vec::new();
            let mut from = 0;
            for cut in cuts.into_iter().chain([bytes.len()]) {
                d.feed_escaped(&bytes[from..cut], &mut out);
                from = cut;
            }
            if let Some(c) = d.drain() {
                escape_into(&mut out, &c.to_string());
            }
            prop_assert_eq!(
                String::from_utf8(out).unwrap(),
                serde(&String::from_utf8_lossy(&bytes))
            );
        }
    }
}
