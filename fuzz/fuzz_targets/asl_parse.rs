//! Definition text, JSON or YAML: parse and validate never panic, and a definition
//! is valid exactly when it has no diagnostics.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let parsed = shoal_asl::parse(&text);
    let report = parsed.validation_report();
    assert_eq!(parsed.is_valid(), parsed.diagnostics.is_empty(), "{report}");
});
