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
    println!("rules: {} in {loaded:?}; automaton in {built:?}; first scan {first:?} ({n} findings)", rules.len());
}
