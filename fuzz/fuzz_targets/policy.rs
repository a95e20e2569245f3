//! Policy files: any text loads or is refused with diagnostics, never a panic; `check`
//! and `parse` agree on whether there is an error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use podgate::policy::{Policy, Severity};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let sources = [("fuzz.yaml".to_owned(), text.to_owned())];
    let parsed = Policy::parse(&sources);
    let errors = Policy::check(&sources)
        .iter()
        .any(|d| d.severity == Severity::Error);
    assert_eq!(parsed.is_err(), errors, "{text:?}");
});
