//! Checks rule files without rebuilding: `cargo run -p opsbot-scan --example check_rules -- DIR`.
//! Loads the built-in global allowlist, then every `*.toml` in DIR, and runs each rule's
//! positive and negative examples.

use std::path::PathBuf;
use std::process::ExitCode;

use opsbot_scan::RuleSet;

fn main() -> ExitCode {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "rules".to_owned()),
    );
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
    println!("{} rules, {failed} problems", ids.len());
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
