//! Measures start-up costs: `cargo run --release -p opsbot-scan --example startup`.
use std::time::Instant;

use opsbot_scan::{RuleSet, Scanner};

fn main() {
    let t = Instant::now();
    let rules = match RuleSet::builtin() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            return;
        }
    };
    let loaded = t.elapsed();
    let t = Instant::now();
    let scanner = Scanner::new(&rules);
    let built = t.elapsed();
    let t = Instant::now();
    let n = scanner.scan_bytes("x", b"hello world\n").len();
    let first = t.elapsed();
    println!(
        "rules: {} in {loaded:?}; automaton in {built:?}; first scan {first:?} ({n} findings)",
        rules.len()
    );
    parts();
    compile_times(&rules);
}

/// What loading the rules from TOML at run time would cost (user rules still load so).
fn parts() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    let texts: Vec<String> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .collect();
    let t = Instant::now();
    let mut n = 0;
    for text in &texts {
        let f: opsbot_scan::rule::RuleFile = toml::from_str(text).unwrap_or_default();
        n += f.rules.len();
    }
    let toml_t = t.elapsed();
    let t = Instant::now();
    let mut g = 0;
    for text in &texts {
        let f: opsbot_scan::rule::RuleFile = toml::from_str(text).unwrap_or_default();
        for r in f.rules {
            if let Ok((_, c)) = opsbot_scan::rule::LazyRegex::parse(&r.regex) {
                g += c;
            }
            for a in r.allowlist.iter().chain(&r.require) {
                let _ = opsbot_scan::rule::LazyRegex::parse(a);
            }
        }
    }
    println!(
        "rules/*.toml at run time: toml only: {toml_t:?} ({n} rules); toml + regex syntax: {:?} ({g})",
        t.elapsed()
    );
}

fn compile_times(rules: &RuleSet) {
    let mut v: Vec<(std::time::Duration, String)> = rules
        .rules()
        .map(|r| {
            let t = Instant::now();
            let _ = r.regex.force();
            (t.elapsed(), r.id.clone())
        })
        .collect();
    v.sort();
    v.reverse();
    let total: std::time::Duration = v.iter().map(|x| x.0).sum();
    println!("compile all: {total:?}; slowest: {:?}", &v[..8]);
}
