//! Embeds every `rules/*.toml` file of the repository into the crate at compile time.
//!
//! The rules live in the repository's top-level `rules/`; `crates/opsbot-scan/rules` is a
//! symlink to it, which `cargo package` follows, so the published crate carries its own
//! copy. A checkout without symlinks (Windows, `core.symlinks=false`) builds from
//! `../../rules` instead.

use std::fmt::Write as _;
use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let rules_dir = [manifest.join("rules"), manifest.join("../../rules")]
        .into_iter()
        .find(|dir| dir.is_dir())
        .unwrap_or_else(|| panic!("no rules directory next to {}", manifest.display()));
    println!("cargo:rerun-if-changed={}", rules_dir.display());

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
        "/// Rule files embedded from `rules/` at build time: (file name, TOML text).\n\
         pub static EMBEDDED_RULE_FILES: &[(&str, &str)] = &[\n",
    );
    for path in &files {
        println!("cargo:rerun-if-changed={}", path.display());
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let abs = path.canonicalize().unwrap_or_else(|_| path.clone());
        let _ = writeln!(
            out,
            "    ({name:?}, include_str!({:?})),",
            abs.display().to_string()
        );
    }
    out.push_str("];\n");

    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
    if let Err(err) = std::fs::write(out_dir.join("embedded_rules.rs"), out) {
        panic!("cannot write embedded_rules.rs: {err}");
    }
}
