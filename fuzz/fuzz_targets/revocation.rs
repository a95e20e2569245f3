//! Revocation lists (OpenSSH KRL or text): any bytes parse or are refused, never a panic,
//! and parsing is bounded in time and memory.
#![no_main]

use libfuzzer_sys::fuzz_target;
use podgate::auth::revocation::RevocationList;

fuzz_target!(|data: &[u8]| {
    let _ = RevocationList::parse(data);
});
