//! Engine properties: lazy compilation, de-duplication, diff scanning, and a seeded
//! randomized check (the same invariants as the cargo-fuzz target) that runs in CI.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use opsbot_scan::stream::{StreamOutcome, scan_reader};
use opsbot_scan::{Finding, RuleSet, Scanner, added_lines_from_patch};

fn aws_key() -> String {
    format!("AKIA{}", "Z3MHQ5WXK2PLV7RT")
}
fn stripe_key() -> String {
    format!("sk_live_{}", "4eC39HqLyjWDarjtT1zdp7dc")
}

#[test]
fn regexes_compile_only_for_rules_whose_keywords_appear() {
    let rules = RuleSet::builtin().unwrap();
    let scanner = Scanner::new(&rules);
    let input = format!("x = '{}'\n", aws_key());
    let found = scanner.scan_bytes("a.py", input.as_bytes());
    assert_eq!(found.len(), 1);
    let compiled: Vec<&str> = rules
        .rules()
        .filter(|r| r.regex.is_compiled())
        .map(|r| r.id.as_str())
        .collect();
    // Exactly the rules with a keyword in the input (several AWS rules share `akia`).
    let lower = input.to_ascii_lowercase();
    let wanted: Vec<&str> = rules
        .rules()
        .filter(|r| r.keywords.iter().any(|k| lower.contains(k.as_str())))
        .map(|r| r.id.as_str())
        .collect();
    assert!(compiled.contains(&"aws-access-key-id"));
    assert_eq!(compiled, wanted);
    assert!(compiled.len() < 5, "{compiled:?}");
}

#[test]
fn specific_rules_win_over_generic_ones_on_the_same_secret() {
    let scanner = Scanner::new(&RuleSet::builtin().unwrap());
    let found = scanner.scan_bytes(
        "settings.py",
        format!("STRIPE_PASSWORD = \"{}\"\n", stripe_key()).as_bytes(),
    );
    let ids: Vec<&str> = found.iter().map(|f| f.rule_id()).collect();
    assert_eq!(ids, vec!["stripe-live-secret-key"]);
}

/// A rule that `refines` another is reported instead of it on an overlapping secret, even
/// when the other is more severe; anywhere else the other still reports.
#[test]
fn a_refining_rule_is_reported_instead_of_the_rule_it_refines() {
    let text = r#"
[[rules]]
id = "shared-prefix"
description = "Any key with the shared prefix"
severity = "critical"
keywords = ["shk_"]
regex = '\b(shk_[a-z0-9]{12})\b'
examples = ["shk_0a1b2c3d4e5f"]
negative_examples = ["shk_short"]

[[rules]]
id = "named-provider"
description = "Named provider's key"
severity = "medium"
refines = ["shared-prefix"]
keywords = ["named"]
regex = 'NAMED_KEY=(shk_[a-z0-9]{12})\b'
examples = ["NAMED_KEY=shk_0a1b2c3d4e5f"]
negative_examples = ["OTHER_KEY=shk_0a1b2c3d4e5f"]
"#;
    let mut set = RuleSet::new();
    set.add_file("refine.toml", text, true).unwrap();
    let scanner = Scanner::new(&set);
    let found = scanner.scan_bytes(
        "env",
        b"NAMED_KEY=shk_9z8y7x6w5v4u\nOTHER_KEY=shk_9z8y7x6w5v4u\n",
    );
    let got: Vec<(&str, u32)> = found.iter().map(|f| (f.rule_id(), f.line)).collect();
    assert_eq!(got, vec![("named-provider", 1), ("shared-prefix", 2)]);

    let mut bad = RuleSet::new();
    let err = bad
        .add_file(
            "self.toml",
            &text.replace(
                "refines = [\"shared-prefix\"]",
                "refines = [\"named-provider\"]",
            ),
            true,
        )
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("named-provider") && err.contains("refines"),
        "{err}"
    );
}

#[test]
fn fingerprints_survive_line_moves_but_not_path_changes() {
    let scanner = Scanner::new(&RuleSet::builtin().unwrap());
    let a = scanner.scan_bytes("a.py", format!("k = '{}'\n", aws_key()).as_bytes());
    let b = scanner.scan_bytes("a.py", format!("\n\n\n   k = '{}'\n", aws_key()).as_bytes());
    let c = scanner.scan_bytes("b.py", format!("k = '{}'\n", aws_key()).as_bytes());
    assert_eq!(a[0].fingerprint, b[0].fingerprint);
    assert_ne!((a[0].line, a[0].column), (b[0].line, b[0].column));
    assert_ne!(a[0].fingerprint, c[0].fingerprint);
}

#[test]
fn added_lines_keep_real_line_numbers_and_join_multi_line_keys() {
    let scanner = Scanner::new(&RuleSet::builtin().unwrap());
    // A random body: a rotated alphabet would be a run placeholder and rightly dropped.
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut rng = Rng(0x5eed_1234_abcd_0042);
    let body: Vec<String> = (0..5)
        .map(|_| {
            (0..64)
                .map(|_| char::from(alphabet[rng.below(alphabet.len())]))
                .collect()
        })
        .collect();
    let mut patch =
        String::from("@@ -1,2 +1,9 @@\n context\n+-----BEGIN OPENSSH PRIVATE KEY-----\n");
    patch.push_str("+b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n");
    for (i, l) in body.iter().enumerate() {
        patch.push_str(&format!(
            "+{}{}\n",
            &l[..60],
            ["Zx9Q", "Lp3W", "Vb7N", "Ty5K", "Hm2J"][i]
        ));
    }
    patch.push_str("+-----END OPENSSH PRIVATE KEY-----\n context\n@@ -40,0 +47,1 @@\n");
    patch.push_str(&format!("+aws = {}\n", aws_key()));
    let lines = added_lines_from_patch(&patch);
    assert_eq!(lines.first().map(|l| l.0), Some(2));
    assert_eq!(lines.last().map(|l| l.0), Some(47));
    let found = scanner.scan_added_lines(
        "k.txt",
        Some("abc"),
        lines.iter().map(|(n, l)| (*n, l.as_bytes())),
    );
    let got: Vec<(&str, u32, u32)> = found
        .iter()
        .map(|f| (f.rule_id(), f.line, f.column))
        .collect();
    assert_eq!(
        got,
        vec![("private-key-openssh", 3, 1), ("aws-access-key-id", 47, 7)]
    );
    assert!(found.iter().all(|f| f.commit.as_deref() == Some("abc")));
}

/// xorshift64*: deterministic pseudo-random numbers without a dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn key(f: &Finding) -> (String, u32, u32) {
    (f.rule_id().to_string(), f.line, f.column)
}

#[test]
fn randomized_inputs_never_panic_and_streaming_matches_whole_buffer() {
    let rules = RuleSet::builtin().unwrap();
    let scanner = Scanner::new(&rules);
    // Fragments: every rule's examples and negative examples, keywords, separators, junk.
    let mut pool: Vec<Vec<u8>> = Vec::new();
    for r in rules.rules() {
        pool.extend(r.examples.iter().map(|e| e.text().as_bytes().to_vec()));
        pool.extend(r.negative_examples.iter().map(|e| e.as_bytes().to_vec()));
        pool.extend(r.keywords.iter().map(|k| k.as_bytes().to_vec()));
    }
    for junk in [
        &b"\n"[..],
        b"\r\n",
        b" ",
        b"\xff\xfe",
        b"\xe2\x82",
        b"\"",
        b"'",
        b"=",
        b"opsbot:allow",
        b"-----",
        b"\\n",
        b"\x00",
    ] {
        pool.push(junk.to_vec());
    }
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for _ in 0..400 {
        let mut data = Vec::new();
        for _ in 0..rng.below(40) {
            let frag = &pool[rng.below(pool.len())];
            // Sometimes cut a fragment or flip a byte.
            let end = if rng.below(4) == 0 {
                rng.below(frag.len() + 1)
            } else {
                frag.len()
            };
            data.extend_from_slice(&frag[..end]);
            if rng.below(8) == 0 && !data.is_empty() {
                let i = rng.below(data.len());
                data[i] = (rng.next() & 0xff) as u8;
            }
        }
        let whole = scanner.scan_bytes("r.txt", &data);
        for f in &whole {
            assert!(
                f.secret.ends_with('…') && f.secret.chars().count() <= 5,
                "{f:?}"
            );
            assert!(f.line >= 1 && f.column >= 1);
        }
        let mut streamed = Vec::new();
        match scan_reader(&scanner, "r.txt", &data[..], &mut Vec::new(), &mut streamed).unwrap() {
            StreamOutcome::Scanned { bytes } => {
                assert_eq!(bytes, data.len() as u64);
                let mut a: Vec<_> = whole.iter().map(key).collect();
                let mut b: Vec<_> = streamed.iter().map(key).collect();
                a.sort();
                b.sort();
                assert_eq!(a, b);
            }
            StreamOutcome::Binary => assert!(data[..data.len().min(8192)].contains(&0)),
        }
        let text = String::from_utf8_lossy(&data);
        let _ = opsbot_scan::diff::parse_git_diff(&data);
        let added = added_lines_from_patch(&text);
        let _ =
            scanner.scan_added_lines("r.txt", None, added.iter().map(|(n, l)| (*n, l.as_bytes())));
    }
}
