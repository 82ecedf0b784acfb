//! Checks rule files without rebuilding the crate's embedded rules:
//! `cargo run -p opsbot-scan --example check_rules -- DIR [--sample DIR]`, or, once built,
//! `target/debug/examples/check_rules DIR` (no cargo: nothing is rebuilt when rules change).
//!
//! Loads every `*.toml` in DIR (its `placeholders.toml` gives the global allowlist), runs each
//! rule's positive and negative examples, and warns about prefilter keywords that would make
//! the scanner slow: shorter than 4 bytes, or found on more than 0.5% of the lines of a sample
//! of ordinary code (default `crates/` when it exists). Problems fail (exit 1); warnings don't.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use aho_corasick::AhoCorasick;
use opsbot_scan::RuleSet;

/// A keyword on more lines of ordinary code than this share (per mille) is "common".
const COMMON_PER_MILLE: u64 = 5;
const MIN_KEYWORD: usize = 4;

fn main() -> ExitCode {
    let mut dir = PathBuf::from("rules");
    let mut sample: Option<PathBuf> = Path::new("crates").is_dir().then(|| "crates".into());
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--sample" => sample = args.next().map(PathBuf::from),
            "--no-sample" => sample = None,
            _ => dir = PathBuf::from(a),
        }
    }
    let mut set = RuleSet::new();
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd.filter_map(Result::ok).map(|e| e.path()).collect(),
        Err(e) => {
            eprintln!("{}: {e}", dir.display());
            return ExitCode::from(2);
        }
    };
    files.sort();
    let mut failed = 0;
    for f in files
        .iter()
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
    {
        let text = match std::fs::read_to_string(f) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("{}: {e}", f.display());
                failed += 1;
                continue;
            }
        };
        // Load without example checks first so one bad rule does not hide the others.
        if let Err(e) = set.add_file(&f.display().to_string(), &text, false) {
            eprintln!("{e}");
            failed += 1;
        }
    }
    let ids: Vec<String> = set.rules().map(|r| r.id.clone()).collect();
    for id in &ids {
        if let Err(p) = set.check_examples(id) {
            eprintln!("{id}: {p}");
            failed += 1;
        }
    }
    let warnings = keyword_warnings(&set, sample.as_deref());
    let keywords: std::collections::HashSet<&str> = set
        .rules()
        .flat_map(|r| r.keywords.iter().map(String::as_str))
        .collect();
    println!(
        "{} rules, {} distinct keywords, {failed} problems, {warnings} keyword warnings",
        ids.len(),
        keywords.len()
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Prints one warning per short or common keyword (naming the rules using it); returns the count.
fn keyword_warnings(set: &RuleSet, sample: Option<&Path>) -> usize {
    let mut users: HashMap<&str, Vec<&str>> = HashMap::new();
    for r in set.rules() {
        for k in &r.keywords {
            users.entry(k.as_str()).or_default().push(r.id.as_str());
        }
    }
    let mut kws: Vec<&str> = users.keys().copied().collect();
    kws.sort_unstable();
    let mut warnings = 0;
    for k in &kws {
        if k.len() < MIN_KEYWORD {
            eprintln!(
                "warning: keyword {k:?} is shorter than {MIN_KEYWORD} bytes (rules: {})",
                users[k].join(", ")
            );
            warnings += 1;
        }
    }
    let Some(sample) = sample else {
        return warnings;
    };
    let (lines, hits) = match line_hits(sample, &kws) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("warning: sample {}: {e}", sample.display());
            return warnings;
        }
    };
    if lines == 0 {
        return warnings;
    }
    for (i, k) in kws.iter().enumerate() {
        if hits[i] * 1000 > lines * COMMON_PER_MILLE {
            eprintln!(
                "warning: keyword {k:?} is common: on {:.1}% of {lines} sample lines under {} (rules: {})",
                100.0 * hits[i] as f64 / lines as f64,
                sample.display(),
                users[k].join(", ")
            );
            warnings += 1;
        }
    }
    warnings
}

/// Counts lines of the text files under `dir`, and for each keyword the lines holding it.
fn line_hits(dir: &Path, kws: &[&str]) -> Result<(u64, Vec<u64>), String> {
    let ac = AhoCorasick::builder()
        .ascii_case_insensitive(true)
        .build(kws)
        .map_err(|e| e.to_string())?;
    let mut hits = vec![0u64; kws.len()];
    let mut lines = 0u64;
    let mut seen = vec![u64::MAX; kws.len()];
    for entry in ignore::WalkBuilder::new(dir).build().filter_map(Result::ok) {
        if !entry.file_type().is_some_and(|t| t.is_file()) {
            continue;
        }
        let Ok(data) = std::fs::read(entry.path()) else {
            continue;
        };
        if data.contains(&0) {
            continue;
        }
        for line in data.split(|&b| b == b'\n') {
            lines += 1;
            for m in ac.find_overlapping_iter(line) {
                let p = m.pattern().as_usize();
                if seen[p] != lines {
                    seen[p] = lines;
                    hits[p] += 1;
                }
            }
        }
    }
    Ok((lines, hits))
}
