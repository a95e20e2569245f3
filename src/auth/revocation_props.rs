//! Property tests of the revocation list parser: no input makes it panic (with or without
//! the KRL magic), and a text list of serials and ranges revokes exactly its members.

use proptest::prelude::*;

use super::*;
use crate::auth::tests::mk;

/// A KRL header (magic, format version 1, KRL version, generated date, flags, reserved,
/// comment) followed by `body`: gets random bytes past the header checks.
fn krl_with(body: &[u8]) -> Vec<u8> {
    let mut v = KRL_MAGIC.to_vec();
    v.extend_from_slice(&1u32.to_be_bytes());
    v.extend_from_slice(&[0u8; 8 + 8 + 8]);
    v.extend_from_slice(&[0u8; 4 + 4]);
    v.extend_from_slice(body);
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn no_input_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = RevocationList::parse(&bytes);
        let _ = RevocationList::parse(&krl_with(&bytes));
        let mut magic = KRL_MAGIC.to_vec();
        magic.extend_from_slice(&bytes);
        let _ = RevocationList::parse(&magic);
    }

    #[test]
    fn krl_sections_of_random_lengths_never_panic(
        kind in 0u8..8,
        claimed in prop_oneof![any::<u32>(), 0u32..64],
        body in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut section = vec![kind];
        section.extend_from_slice(&claimed.to_be_bytes());
        section.extend_from_slice(&body);
        let _ = RevocationList::parse(&krl_with(&section));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn a_text_list_revokes_exactly_its_serials(
        singles in proptest::collection::btree_set(1u64..200, 0..6),
        ranges in proptest::collection::vec((1u64..200, 1u64..20), 0..4),
        probes in proptest::collection::vec(1u64..230, 1..8),
    ) {
        let mut text = String::from("# generated\n");
        for s in &singles {
            text.push_str(&format!("serial: {s}\n"));
        }
        for (a, len) in &ranges {
            text.push_str(&format!("serial: {a}-{}\n", a + len));
        }
        let list = RevocationList::parse(text.as_bytes()).unwrap();
        for serial in probes {
            let member = singles.contains(&serial)
                || ranges.iter().any(|(a, len)| (*a..=a + len).contains(&serial));
            let cert = mk(|s| s.serial = serial);
            prop_assert_eq!(list.check(&cert).is_some(), member, "serial {} in {:?}", serial, text);
        }
    }
}
