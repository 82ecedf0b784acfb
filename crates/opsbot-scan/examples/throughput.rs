//! In-memory engine throughput on a directory of files (single thread, no I/O in the loop):
//! `cargo run --release -p opsbot-scan --example throughput -- DIR`.
use std::time::Instant;

use opsbot_scan::{RuleSet, Scanner};

fn walk(dir: &std::path::Path, out: &mut Vec<Vec<u8>>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.filter_map(Result::ok) {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else if let Ok(b) = std::fs::read(&p) {
            out.push(b);
        }
    }
}

fn main() {
    let dir = std::env::args().nth(1).unwrap_or_else(|| ".".to_owned());
    let mut files = Vec::new();
    walk(std::path::Path::new(&dir), &mut files);
    let total: usize = files.iter().map(Vec::len).sum();
    let Ok(rules) = RuleSet::builtin() else {
        return;
    };
    let scanner = Scanner::new(&rules);
    let t = Instant::now();
    let mut n = 0;
    for f in &files {
        n += scanner.scan_bytes("f", f).len();
    }
    let cold = t.elapsed();
    for round in 0..3 {
        let t = Instant::now();
        let mut m = 0;
        for f in &files {
            m += scanner.scan_bytes("f", f).len();
        }
        let e = t.elapsed();
        println!(
            "round {round}: {} files, {:.1} MB in {e:?} = {:.0} MB/s ({m} findings)",
            files.len(),
            total as f64 / 1e6,
            total as f64 / 1e6 / e.as_secs_f64()
        );
    }
    println!("first pass (includes lazy regex compilation): {cold:?} ({n} findings)");
}
