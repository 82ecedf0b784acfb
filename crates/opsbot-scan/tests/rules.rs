//! Every rule's positive and negative examples, checked automatically. A rule without
//! examples cannot even be loaded, so it fails here (and at build of the rule set).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;

use opsbot_scan::rule::{RuleFile, embedded_rule_files};
use opsbot_scan::{RuleSet, Scanner};

/// The rule files as they are on disk: (file name, text).
fn rule_files_on_disk() -> Vec<(String, String)> {
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    // `rules` is a symlink to the repository's `rules/` (build.rs reads the same two places).
    let dir = [manifest.join("rules"), manifest.join("../../rules")]
        .into_iter()
        .find(|d| d.is_dir())
        .unwrap();
    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect();
    files.sort();
    files
}

#[test]
fn every_rule_file_loads() {
    for (name, text) in rule_files_on_disk() {
        let mut set = RuleSet::new();
        if let Err(e) = set.add_file(&name, &text, false) {
            panic!("{e}");
        }
    }
    let set = RuleSet::builtin().unwrap();
    assert!(set.len() >= 100, "only {} rules", set.len());
}

/// `build.rs` parses the rule files into static data; read back, that data must be what
/// parsing the files at run time gives, field for field, file for file.
#[test]
fn the_embedded_rules_are_the_rule_files_as_parsed() {
    let disk = rule_files_on_disk();
    let embedded: Vec<(&str, RuleFile)> = embedded_rule_files().collect();
    let names = |v: Vec<&str>| v.join(", ");
    assert_eq!(
        names(disk.iter().map(|(n, _)| n.as_str()).collect()),
        names(embedded.iter().map(|(n, _)| *n).collect()),
        "rebuild: the embedded files are not the files in rules/"
    );
    for ((name, text), (_, built)) in disk.iter().zip(&embedded) {
        let parsed: RuleFile = toml::from_str(text).unwrap();
        assert_eq!(
            serde_json::to_value(&parsed).unwrap(),
            serde_json::to_value(built).unwrap(),
            "rules/{name}"
        );
    }
}

/// The built-in rules load without a syntax parse of their regexes (start-up time): their
/// capture groups are counted on the text. That count must agree with the regex engine's
/// on every embedded regex, and both loads must give the same rules.
#[test]
fn embedded_regexes_count_captures_like_the_parser() {
    let mut checked = RuleSet::new();
    for (name, text) in rule_files_on_disk() {
        checked
            .add_file(&format!("rules/{name}"), &text, false)
            .unwrap();
    }
    let trusted = RuleSet::builtin().unwrap();
    assert_eq!(checked.len(), trusted.len());
    let mut wrong = Vec::new();
    for (a, b) in checked.rules().zip(trusted.rules()) {
        assert_eq!(a.id, b.id);
        assert_eq!(a.secret_group, b.secret_group, "{}", a.id);
        for re in std::iter::once(&b.regex)
            .chain(&b.allowlist)
            .chain(&b.match_allowlist)
            .chain(&b.require)
        {
            let compiled = regex::bytes::RegexBuilder::new(re.source())
                .unicode(false)
                .size_limit(16 << 20)
                .build()
                .unwrap_or_else(|e| panic!("{}: `{}` does not compile: {e}", b.id, re.source()));
            let fast = opsbot_scan::rule::count_captures_in_text(re.source());
            if fast != compiled.captures_len() - 1 {
                wrong.push(format!("{}: `{}`", b.id, re.source()));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "capture counts differ:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn every_rule_passes_its_own_examples() {
    let set = RuleSet::builtin().unwrap();
    let mut failures = Vec::new();
    for rule in set.rules() {
        if let Err(problem) = set.check_examples(&rule.id) {
            failures.push(format!("{} ({}): {problem}", rule.id, rule.file));
        }
    }
    assert!(
        failures.is_empty(),
        "{} rules fail their examples:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn rules_by_id(set: &RuleSet) -> HashMap<&str, &opsbot_scan::Rule> {
    set.rules().map(|r| (r.id.as_str(), r)).collect()
}

/// With all rules loaded together, a positive example is reported by its rule and a
/// negative example is not reported by its rule. Where another rule matches the same
/// secret, the one reported is this rule, a rule that declares it `refines` this one, or
/// (for a generic rule) a specific rule: never an unrelated provider's (a Clerk key shares
/// Stripe's `sk_live_` prefix, and must not be reported as a Stripe key).
#[test]
fn examples_hold_with_the_full_rule_set() {
    let set = RuleSet::builtin().unwrap();
    let scanner = Scanner::new(&set);
    let by_id = rules_by_id(&set);
    let mut failures = Vec::new();
    for rule in set.rules() {
        let alone = Scanner::for_rule(&set, &rule.id).unwrap();
        for (i, ex) in rule.examples.iter().enumerate() {
            let found = scanner.scan_bytes("example.txt", ex.text().as_bytes());
            let wanted = alone.scan_bytes("example.txt", ex.text().as_bytes());
            if wanted.is_empty() {
                failures.push(format!(
                    "{}: positive example {} not reported",
                    rule.id,
                    i + 1
                ));
            }
            for w in &wanted {
                let Some(f) = found
                    .iter()
                    .find(|f| (f.line, f.column) == (w.line, w.column))
                else {
                    failures.push(format!(
                        "{}: positive example {} not reported",
                        rule.id,
                        i + 1
                    ));
                    continue;
                };
                let winner = by_id[f.rule_id()];
                let fine = winner.id == rule.id
                    || winner.refines.contains(&rule.id)
                    || (rule.generic && !winner.generic);
                if !fine {
                    failures.push(format!(
                        "{}: positive example {} reported as `{}` (declare `refines` on the \
                         one that should be reported)",
                        rule.id,
                        i + 1,
                        winner.id
                    ));
                }
            }
        }
        for (i, ex) in rule.negative_examples.iter().enumerate() {
            let found = scanner.scan_bytes("example.txt", ex.as_bytes());
            if found.iter().any(|f| f.rule_id() == rule.id) {
                failures.push(format!("{}: negative example {} reported", rule.id, i + 1));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `refines` names loaded rules, never the other way round as well.
#[test]
fn refinements_name_existing_rules_one_way() {
    let set = RuleSet::builtin().unwrap();
    let by_id = rules_by_id(&set);
    let mut failures = Vec::new();
    for rule in set.rules() {
        for other in &rule.refines {
            match by_id.get(other.as_str()) {
                None => failures.push(format!("{}: refines unknown rule `{other}`", rule.id)),
                Some(o) if o.refines.contains(&rule.id) => {
                    failures.push(format!("{} and {other} refine each other", rule.id))
                }
                Some(_) => {}
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_rule_without_examples_is_rejected_with_file_and_id() {
    let text = r#"
[[rules]]
id = "no-examples"
description = "x"
severity = "low"
keywords = ["abc"]
regex = 'abc(\d+)'
"#;
    let err = RuleSet::new()
        .add_file("custom/x.toml", text, false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("custom/x.toml"), "{err}");
    assert!(err.contains("no-examples"), "{err}");
    assert!(err.contains("examples"), "{err}");
}

#[test]
fn broken_rules_name_file_rule_and_problem() {
    let cases = [
        ("regex = 'abc(['", "regex does not parse"),
        (
            "regex = 'abc'\nsecret_group = 2",
            "secret_group 2 does not exist",
        ),
        ("regex = 'abc(\\d)'\nentropy = 9.5", "out of range"),
    ];
    for (extra, want) in cases {
        let text = format!(
            "[[rules]]\nid = \"bad-one\"\ndescription = \"d\"\nseverity = \"low\"\nkeywords = [\"abc\"]\n{extra}\nexamples = [\"abc1\"]\nnegative_examples = [\"x\"]\n"
        );
        let err = RuleSet::new()
            .add_file("my.toml", &text, false)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("my.toml: rule `bad-one`: "), "{err}");
        assert!(err.contains(want), "{err} should contain {want}");
    }
    let err = RuleSet::new()
        .add_file("t.toml", "[[rules]\nid=", false)
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("t.toml: invalid TOML"), "{err}");
    let text = "[[rules]]\nid = \"k\"\ndescription = \"d\"\nseverity = \"low\"\nkeywords = []\nregex = 'a'\nexamples = [\"a\"]\nnegative_examples = [\"b\"]\n";
    let err = RuleSet::new()
        .add_file("k.toml", text, false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("`keywords` is empty"), "{err}");
}

#[test]
fn user_rules_are_checked_against_their_examples_at_load() {
    let mut set = RuleSet::builtin().unwrap();
    let rule = |negative: &str| {
        format!(
            "[[rules]]\nid = \"acme-token\"\ndescription = \"ACME token\"\nseverity = \"high\"\nkeywords = [\"acme_\"]\nregex = '\\bacme_([a-z0-9]{{16}})\\b'\nexamples = [\"t = acme_k3j9x0m2p7q4z8w1\"]\nnegative_examples = [\"t = acme_k3j9x0m2p7q4z8w1zz\", \"{negative}\"]\n"
        )
    };
    let err = set
        .add_file("acme.toml", &rule("acme_q3j9x0m2p7q4z8w1"), true)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("acme.toml: rule `acme-token`: negative example 2 matches"),
        "{err}"
    );
    let before = set.len();
    set.add_file("acme.toml", &rule("acme_short"), true)
        .unwrap();
    assert_eq!(set.len(), before + 1);
    let dup = set
        .add_file("again.toml", &rule("acme_short"), true)
        .unwrap_err()
        .to_string();
    assert!(
        dup.contains("duplicate rule id (already defined in acme.toml)"),
        "{dup}"
    );
}
