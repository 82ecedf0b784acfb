//! Any text as a rules file: loading (with example checks) must return Ok or a clear
//! error, never panic, and a loaded rule set must scan its own input without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use opsbot_scan::{RuleSet, Scanner};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut set = RuleSet::new();
    match set.add_file("fuzz.toml", text, true) {
        Ok(()) => {
            let _ = Scanner::new(&set).scan_bytes("fuzz.toml", data);
        }
        Err(e) => assert!(e.to_string().starts_with("fuzz.toml")),
    }
});
