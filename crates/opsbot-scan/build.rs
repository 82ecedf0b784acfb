//! Compiles every `rules/*.toml` file of the repository into the crate: each file is parsed
//! here, at build time, with the same serde types as at run time (`src/spec.rs`), and
//! written out as static data (`embedded_rules.rs`), so that loading the built-in rules
//! parses no TOML (it was most of the start-up time). A file that does not parse fails the
//! build with its name and the parser's message. The rules are validated when loaded, as
//! any rules are (`RuleSet::builtin`).
//!
//! The rules live in the repository's top-level `rules/`; `crates/opsbot-scan/rules` is a
//! symlink to it, which `cargo package` follows, so the published crate carries its own
//! copy. A checkout without symlinks (Windows, `core.symlinks=false`) builds from
//! `../../rules` instead.

use std::fmt::Write as _;
use std::path::PathBuf;

#[allow(dead_code)]
#[path = "src/spec.rs"]
mod spec;

use spec::{Example, RuleFile, Severity};

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let rules_dir = [manifest.join("rules"), manifest.join("../../rules")]
        .into_iter()
        .find(|dir| dir.is_dir())
        .unwrap_or_else(|| panic!("no rules directory next to {}", manifest.display()));
    println!("cargo:rerun-if-changed={}", rules_dir.display());
    println!("cargo:rerun-if-changed=src/spec.rs");

    let mut files: Vec<PathBuf> = match std::fs::read_dir(&rules_dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|ext| ext == "toml"))
            .collect(),
        Err(err) => panic!("cannot list {}: {err}", rules_dir.display()),
    };
    files.sort();

    let mut out = String::from(
        "/// The rule files of `rules/`, parsed at build time: file name, then its contents.\n\
         pub static EMBEDDED: &[StaticFile] = &[\n",
    );
    for path in &files {
        println!("cargo:rerun-if-changed={}", path.display());
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|err| panic!("cannot read rules/{name}: {err}"));
        let parsed: RuleFile = toml::from_str(&text)
            .unwrap_or_else(|err| panic!("rules/{name}: invalid rules file: {err}"));
        write_file(&mut out, &name, &parsed);
    }
    out.push_str("];\n");

    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
    if let Err(err) = std::fs::write(out_dir.join("embedded_rules.rs"), out) {
        panic!("cannot write embedded_rules.rs: {err}");
    }
}

/// `["a", "b"]` as a `&[&str]` literal (Debug of a `str` is a valid Rust literal).
fn strs(items: &[String]) -> String {
    let mut s = String::from("&[");
    for item in items {
        let _ = write!(s, "{item:?},");
    }
    s.push(']');
    s
}

fn write_file(out: &mut String, name: &str, file: &RuleFile) {
    let (has_global, global_allowlist, global_match_allowlist) = match &file.global {
        Some(g) => (true, strs(&g.allowlist), strs(&g.match_allowlist)),
        None => (false, strs(&[]), strs(&[])),
    };
    let _ = writeln!(
        out,
        "StaticFile {{ name: {name:?}, has_global: {has_global}, global_allowlist: {global_allowlist}, \
         global_match_allowlist: {global_match_allowlist}, allowlist: {}, rules: &[",
        strs(&file.allowlist)
    );
    for r in &file.rules {
        let severity = match r.severity {
            Severity::Low => "Low",
            Severity::Medium => "Medium",
            Severity::High => "High",
            Severity::Critical => "Critical",
        };
        let mut examples = String::from("&[");
        for ex in &r.examples {
            let _ = match ex {
                Example::Text(text) => write!(
                    examples,
                    "StaticExample {{ text: {text:?}, secret: None }},"
                ),
                Example::WithSecret { text, secret } => write!(
                    examples,
                    "StaticExample {{ text: {text:?}, secret: Some({secret:?}) }},"
                ),
            };
        }
        examples.push(']');
        let _ = writeln!(
            out,
            "  StaticRule {{ id: {:?}, description: {:?}, regex: {:?}, secret_group: {:?}, \
             keywords: {}, entropy: {:?}, allowlist: {}, match_allowlist: {}, require: {}, \
             generic: {}, refines: {}, severity: Severity::{severity}, multiline: {}, references: {}, \
             examples: {examples}, negative_examples: {} }},",
            r.id,
            r.description,
            r.regex,
            r.secret_group,
            strs(&r.keywords),
            r.entropy,
            strs(&r.allowlist),
            strs(&r.match_allowlist),
            strs(&r.require),
            r.generic,
            strs(&r.refines),
            r.multiline,
            strs(&r.references),
            strs(&r.negative_examples),
        );
    }
    out.push_str("]},\n");
}
