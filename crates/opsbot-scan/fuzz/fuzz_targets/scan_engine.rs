//! Any bytes: the engine must not panic, must never return an unmasked secret, and
//! streaming in chunks must report exactly what a whole-buffer scan reports. Diff parsing
//! of the same bytes must not panic either.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use opsbot_scan::stream::scan_reader;
use opsbot_scan::{RuleSet, Scanner};

static SCANNER: OnceLock<Scanner> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let scanner = SCANNER.get_or_init(|| match RuleSet::builtin() {
        Ok(rules) => Scanner::new(&rules),
        Err(e) => panic!("built-in rules do not load: {e}"),
    });
    let whole = scanner.scan_bytes("fuzz.txt", data);
    for f in &whole {
        assert!(f.secret.ends_with('…') && f.secret.chars().count() <= 5);
        assert!(f.line >= 1 && f.column >= 1);
    }
    let mut streamed = Vec::new();
    let mut buf = Vec::new();
    if let Ok(opsbot_scan::stream::StreamOutcome::Scanned { .. }) =
        scan_reader(scanner, "fuzz.txt", data, &mut buf, &mut streamed)
    {
        let key = |f: &opsbot_scan::Finding| (f.rule_id().to_owned(), f.line, f.column);
        let mut a: Vec<_> = whole.iter().map(key).collect();
        let mut b: Vec<_> = streamed.iter().map(key).collect();
        a.sort();
        b.sort();
        assert_eq!(a, b);
    }
    let _ = opsbot_scan::diff::parse_git_diff(data);
    let text = String::from_utf8_lossy(data);
    let added = opsbot_scan::added_lines_from_patch(&text);
    let _ = scanner.scan_added_lines("fuzz.txt", None, added.iter().map(|(n, l)| (*n, l.as_bytes())));
});
