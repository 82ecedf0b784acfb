//! Conformance runner: every case of tfupdate's own table tests (the corpus in
//! `${OPSBOT_CORPORA:-../shared/corpora}/tfupdate`, see its README) run through
//! `opsbot tfupdate` with tfupdate's command line and environment, in a fresh working
//! directory, comparing the exit status and the files byte for byte.
//!
//! Lock rows run against fake registries (real zips, `SHA256SUMS` signed with a key made
//! at start) reached as `registry.terraform.io` / `registry.opentofu.org` through an HTTPS
//! proxy on 127.0.0.1 whose test CA is trusted through `SSL_CERT_FILE`, exactly as the
//! corpus README describes; the `hashes` lists are substituted with the fake's hashes.
//!
//! Run with `tests/conformance/tfupdate.sh`. Skips with a message when the corpus is
//! absent. Exit 0 when every case passes or is one of the deliberate differences listed
//! in [`DELIBERATE`] (and in the README).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use opsbot_tests::fake_registry::{FakeRegistry, PackageSpec, TlsFront};
use serde_json::Value;

/// Cases where opsbot deliberately differs from tfupdate, with the reason (also in the
/// README's tfupdate section).
const DELIBERATE: &[(&str, &str)] = &[
    (
        "file_test/TestUpdateFileExist/1",
        "opsbot changes only the version string of an unformatted file; tfupdate reformats the whole file (hclwrite.Format), touching lines the update is not about",
    ),
    (
        "lock_test/TestUpdateLockWithTerraformRegistry/4",
        "an empty lock file gets Terraform's header, as `terraform providers lock` writes it (tfupdate writes a blank line and no header, which the next `terraform init` rewrites)",
    ),
    (
        "lock_test/TestUpdateLockWithOpenTofuRegistry/1",
        "an empty lock file gets the header, as `tofu providers lock` writes it (tfupdate writes a blank line and no header)",
    ),
];

struct Args {
    opsbot: PathBuf,
    corpus: PathBuf,
    filter: Option<String>,
    verbose: bool,
}

/// A further check of the files a case wrote (e.g. a lock entry's hashes).
type ExtraCheck = Box<dyn Fn(&Path) -> Result<(), String> + Send>;

fn parse_args() -> Result<Args, String> {
    let mut opsbot = std::env::var_os("OPSBOT_BIN").map(PathBuf::from);
    let mut corpus = None;
    let mut filter = None;
    let mut verbose = false;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--opsbot" => opsbot = it.next().map(PathBuf::from),
            "--corpus" => corpus = it.next().map(PathBuf::from),
            "--filter" => filter = it.next(),
            "-v" | "--verbose" => verbose = true,
            "-h" | "--help" => {
                println!(
                    "usage: tfupdate-conformance [--opsbot BIN] [--corpus DIR] [--filter SUBSTRING] [-v]\n\n\
                     BIN defaults to $OPSBOT_BIN, else target/debug/opsbot; DIR to\n\
                     ${{OPSBOT_CORPORA:-../shared/corpora}}/tfupdate."
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument `{other}` (try --help)")),
        }
    }
    let corpus = corpus.unwrap_or_else(|| {
        let base = std::env::var_os("OPSBOT_CORPORA")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("../shared/corpora"));
        base.join("tfupdate")
    });
    let opsbot = opsbot.unwrap_or_else(|| PathBuf::from("target/debug/opsbot"));
    Ok(Args {
        opsbot,
        corpus,
        filter,
        verbose,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Pass,
    Deliberate,
    Fail,
}

struct Outcome {
    id: String,
    verdict: Verdict,
    detail: String,
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("tfupdate-conformance: {e}");
            return ExitCode::from(2);
        }
    };
    if !args.corpus.join("README.md").is_file() {
        println!(
            "SKIP: tfupdate corpus not found at {} (set OPSBOT_CORPORA or --corpus)",
            args.corpus.display()
        );
        return ExitCode::SUCCESS;
    }
    if !args.opsbot.is_file() {
        eprintln!(
            "tfupdate-conformance: no opsbot binary at {} (build it, or pass --opsbot)",
            args.opsbot.display()
        );
        return ExitCode::from(2);
    }
    let opsbot = std::fs::canonicalize(&args.opsbot).expect("canonical opsbot path");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&args.corpus)
        .expect("read corpus dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("cases.") && n.ends_with(".json"))
        })
        .collect();
    files.sort();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let started = Instant::now();
    let mut table: Vec<(String, Vec<Outcome>)> = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read case file");
        let doc: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: not JSON: {e}", file.display()));
        let stem = file
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .trim_start_matches("cases.")
            .trim_end_matches(".json")
            .to_string();
        let mut outcomes = Vec::new();
        for case in doc["cases"].as_array().into_iter().flatten() {
            let id = format!("{stem}/{}", case["id"].as_str().unwrap_or("?"));
            if let Some(f) = &args.filter
                && !id.contains(f.as_str())
            {
                continue;
            }
            let outcome = runtime.block_on(run_case(&opsbot, &id, case));
            if args.verbose {
                println!("{:?}\t{id}", outcome.verdict);
            }
            outcomes.push(outcome);
        }
        table.push((stem, outcomes));
    }
    let elapsed = started.elapsed();

    println!();
    println!("| case file | cases | pass | deliberate | fail |");
    println!("|---|---:|---:|---:|---:|");
    let (mut total, mut pass, mut deliberate, mut fail) = (0, 0, 0, 0);
    for (stem, outcomes) in &table {
        let p = outcomes
            .iter()
            .filter(|o| o.verdict == Verdict::Pass)
            .count();
        let d = outcomes
            .iter()
            .filter(|o| o.verdict == Verdict::Deliberate)
            .count();
        let f = outcomes
            .iter()
            .filter(|o| o.verdict == Verdict::Fail)
            .count();
        println!("| {stem} | {} | {p} | {d} | {f} |", outcomes.len());
        total += outcomes.len();
        pass += p;
        deliberate += d;
        fail += f;
    }
    println!("| **total** | {total} | {pass} | {deliberate} | {fail} |");
    println!();
    for (_, outcomes) in &table {
        for o in outcomes.iter().filter(|o| o.verdict == Verdict::Deliberate) {
            println!("deliberate: {}: {}", o.id, o.detail);
        }
    }
    for (_, outcomes) in &table {
        for o in outcomes.iter().filter(|o| o.verdict == Verdict::Fail) {
            println!("FAIL {}\n{}", o.id, o.detail);
        }
    }
    println!(
        "{total} cases in {:.1} s: {pass} pass, {deliberate} deliberate difference(s), {fail} fail",
        elapsed.as_secs_f64()
    );
    if fail == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn write_files(root: &Path, files: &BTreeMap<String, String>) {
    for (rel, text) in files {
        let p = root.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(&p, text).expect("write case file");
    }
}

fn string_map(v: &Value) -> BTreeMap<String, Option<String>> {
    v.as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_str().map(str::to_string)))
        .collect()
}

async fn run_case(opsbot: &Path, id: &str, case: &Value) -> Outcome {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut files: BTreeMap<String, String> = string_map(&case["files"])
        .into_iter()
        .filter_map(|(k, v)| Some((k, v?)))
        .collect();
    let mut expect = string_map(&case["expect"]["files"]);
    let mut env: Vec<(String, String)> = case["env"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
        .collect();
    // Held for the run: the registries behind the HTTPS front.
    let mut _front = None;
    let mut extra_check: Option<ExtraCheck> = None;
    if case["op"]["command"] == "lock" {
        match lock_setup(case, &mut files, &mut expect).await {
            Ok((front, check)) => {
                env.extend(front.client_env());
                _front = Some(front);
                extra_check = check;
            }
            Err(e) => {
                return Outcome {
                    id: id.to_string(),
                    verdict: Verdict::Fail,
                    detail: format!("  cannot set up the fake registry: {e}"),
                };
            }
        }
    }
    write_files(dir.path(), &files);
    let argv: Vec<String> = case["argv"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect();
    let mut cmd = Command::new(opsbot);
    cmd.arg("tfupdate")
        .args(&argv)
        .current_dir(dir.path())
        .env_remove("TFREGISTRY_BASE_URL")
        .env_remove("OPSBOT_TF_REGISTRY_URL")
        .env_remove("TFUPDATE_LOG")
        .env("OPSBOT_TF_CACHE_DIR", dir.path().join(".opsbot-cache"))
        .env("GITHUB_API_URL", "http://127.0.0.1:9/")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let output = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("join")
        .expect("run opsbot");
    let want_exit = case["expect"]["exit"].as_i64().unwrap_or(0);
    let got_exit = i64::from(output.status.code().unwrap_or(-1));
    let mut problems = Vec::new();
    if got_exit != want_exit {
        problems.push(format!("  exit {got_exit}, want {want_exit}"));
    }
    for (rel, want) in &expect {
        let p = dir.path().join(rel);
        let got = std::fs::read(&p).ok();
        match (want, got) {
            (None, None) => {}
            (None, Some(_)) => problems.push(format!("  {rel}: exists, want absent")),
            (Some(_), None) => problems.push(format!("  {rel}: missing")),
            (Some(want), Some(got)) => {
                if got != want.as_bytes() {
                    let got = String::from_utf8_lossy(&got);
                    let diff = similar::TextDiff::from_lines(want.as_str(), got.as_ref())
                        .unified_diff()
                        .context_radius(2)
                        .header("want", "got")
                        .to_string();
                    problems.push(format!("  {rel} differs:\n{}", indent(&diff)));
                }
            }
        }
    }
    if let Some(check) = extra_check
        && let Err(e) = check(dir.path())
    {
        problems.push(format!("  {e}"));
    }
    if problems.is_empty() {
        return Outcome {
            id: id.to_string(),
            verdict: Verdict::Pass,
            detail: String::new(),
        };
    }
    if let Some((_, reason)) = DELIBERATE.iter().find(|(d, _)| *d == id) {
        // deliberate only when the difference is the one written down; any other
        // failure of the case (exit code, a registry error, …) still fails it
        match deliberate_difference(id, case, dir.path(), &files, &expect, got_exit == want_exit) {
            Ok(()) => {
                return Outcome {
                    id: id.to_string(),
                    verdict: Verdict::Deliberate,
                    detail: reason.to_string(),
                };
            }
            Err(e) => problems.push(format!("  not the deliberate difference: {e}")),
        }
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    Outcome {
        id: id.to_string(),
        verdict: Verdict::Fail,
        detail: format!(
            "  argv: tfupdate {}\n{}\n  stdout: {}\n  stderr: {}",
            argv.join(" "),
            problems.join("\n"),
            stdout.trim_end().replace('\n', "\n          "),
            stderr.trim_end().replace('\n', "\n          ")
        ),
    }
}

/// Checks that a deliberate case differs from tfupdate's expectation exactly as written
/// down: a lock file that gains only the header `terraform providers lock` / `tofu
/// providers lock` writes, or a file where only the version string changed.
fn deliberate_difference(
    id: &str,
    case: &Value,
    root: &Path,
    input: &BTreeMap<String, String>,
    expect: &BTreeMap<String, Option<String>>,
    exit_ok: bool,
) -> Result<(), String> {
    if !exit_ok {
        return Err("exit code differs".to_string());
    }
    for (rel, want) in expect {
        let Some(want) = want else { continue };
        let got = std::fs::read(root.join(rel)).map_err(|e| format!("{rel}: {e}"))?;
        let got = String::from_utf8(got).map_err(|_| format!("{rel}: not UTF-8"))?;
        if got == *want {
            continue;
        }
        if id.starts_with("lock_test/") {
            let header = got
                .strip_suffix(want.as_str())
                .ok_or_else(|| format!("{rel}: differs beyond a header"))?;
            let tool = if case["registry"]["host"] == "registry.opentofu.org" {
                "tofu"
            } else {
                "terraform"
            };
            let want_header = format!(
                "# This file is maintained automatically by \"{tool} init\".\n# Manual edits may be lost in future updates.\n"
            );
            if header != want_header {
                return Err(format!("{rel}: header {header:?}, want {want_header:?}"));
            }
        } else {
            // only the version string: the input with its old version replaced by `-v`
            let before = input
                .get(rel)
                .ok_or_else(|| format!("{rel}: not an input file"))?;
            let version = case["op"]["version"].as_str().unwrap_or_default();
            let prefix = before
                .bytes()
                .zip(got.bytes())
                .take_while(|(a, b)| a == b)
                .count();
            let suffix = before[prefix..]
                .bytes()
                .rev()
                .zip(got[prefix..].bytes().rev())
                .take_while(|(a, b)| a == b)
                .count();
            let old = &before[prefix..before.len() - suffix];
            let new = &got[prefix..got.len() - suffix];
            let is_version = |v: &str| {
                !v.is_empty()
                    && v.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
            };
            if !(is_version(old) && is_version(new) && version.ends_with(new)) {
                return Err(format!(
                    "{rel}: changes {old:?} to {new:?}, more than the version string"
                ));
            }
        }
    }
    Ok(())
}

fn indent(s: &str) -> String {
    s.lines()
        .map(|l| format!("    {l}\n"))
        .collect::<String>()
        .trim_end()
        .to_string()
}

type Check = Option<Box<dyn Fn(&Path) -> Result<(), String> + Send>>;

/// Starts the fake registry (behind the HTTPS front) for a lock row and substitutes the
/// fake's hashes into `files` and `expect` as the corpus README says.
async fn lock_setup(
    case: &Value,
    files: &mut BTreeMap<String, String>,
    expect: &mut BTreeMap<String, Option<String>>,
) -> Result<(TlsFront, Check), String> {
    let registry = &case["registry"];
    let host = registry["host"].as_str().unwrap_or("registry.terraform.io");
    let fake = FakeRegistry::start().await;
    let platforms: Vec<String> = case["op"]["platforms"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p.as_str().map(str::to_string))
        .collect();
    let with_manifest_default = host == "registry.terraform.io";
    let mut served: Vec<(String, String)> = Vec::new();
    for entry in registry["mock_index"].as_array().into_iter().flatten() {
        let address = entry["address"].as_str().unwrap_or_default();
        let version = entry["version"].as_str().unwrap_or_default();
        let (ns, name) = address.split_once('/').ok_or("bad mock address")?;
        let zh = entry["zh"].as_object().cloned().unwrap_or_default();
        let prefix = format!("terraform-provider-{name}_{version}_");
        let manifest = zh.keys().any(|k| k.ends_with("_manifest.json"));
        let plats: Vec<String> = zh
            .keys()
            .filter_map(|k| k.strip_prefix(&prefix)?.strip_suffix(".zip"))
            .map(str::to_string)
            .collect();
        let specs = plats.iter().map(|p| PackageSpec::generated(p)).collect();
        fake.add_provider_packages(ns, name, version, specs, manifest);
        served.push((address.to_string(), version.to_string()));
    }
    for pkg in registry["packages"].as_array().into_iter().flatten() {
        let address = pkg["address"].as_str().unwrap_or_default();
        let version = pkg["version"].as_str().unwrap_or_default();
        let (ns, name) = address.split_once('/').ok_or("bad package address")?;
        let contents = pkg["contents"].as_str().unwrap_or_default();
        let not_zip = pkg["not_a_zip"].as_bool().unwrap_or(false);
        let inner = pkg["inner_file"].as_str();
        let specs = pkg["platforms"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p.as_str())
            .map(|p| {
                let body = contents.replace("{platform}", p).into_bytes();
                if not_zip {
                    PackageSpec::raw(p, body)
                } else {
                    PackageSpec::with_files(p, vec![(inner.unwrap_or("x").to_string(), body)])
                }
            })
            .collect();
        fake.add_provider_packages(ns, name, version, specs, with_manifest_default);
        served.push((address.to_string(), version.to_string()));
    }
    // Any other (address, version) a lock text names: same platforms as the run.
    let mut texts: Vec<String> = files.values().cloned().collect();
    texts.extend(expect.values().flatten().cloned());
    for text in &texts {
        for (addr, version) in lock_entries(text) {
            let short = short_address(&addr, host);
            if !served.iter().any(|(a, v)| *a == short && *v == version)
                && let Some((ns, name)) = short.split_once('/')
            {
                let specs = platforms
                    .iter()
                    .map(|p| PackageSpec::generated(p))
                    .collect();
                fake.add_provider_packages(ns, name, &version, specs, with_manifest_default);
                served.push((short.clone(), version.clone()));
            }
        }
    }
    let substitute = |text: &str| substitute_hashes(text, host, &fake, &platforms);
    for text in files.values_mut() {
        *text = substitute(text);
    }
    for text in expect.values_mut().flatten() {
        *text = substitute(text);
    }
    let check: Check = match case["expect_h1"].as_object() {
        Some(want) => {
            let want = want.clone();
            Some(Box::new(move |root: &Path| {
                let lock_path = root.join("test/.terraform.lock.hcl");
                let lock = std::fs::read_to_string(&lock_path)
                    .map_err(|e| format!("{}: {e}", lock_path.display()))?;
                for (addr, by_platform) in &want {
                    let got = block_hashes(&lock, addr)
                        .ok_or_else(|| format!("lock file has no block for {addr}"))?;
                    let got_h1: Vec<&String> =
                        got.iter().filter(|h| h.starts_with("h1:")).collect();
                    let mut want_h1: Vec<String> = by_platform
                        .as_object()
                        .into_iter()
                        .flatten()
                        .filter_map(|(_, v)| v.as_str().map(str::to_string))
                        .collect();
                    want_h1.sort();
                    let got_h1: Vec<String> = got_h1.into_iter().cloned().collect();
                    if got_h1 != want_h1 {
                        return Err(format!(
                            "{addr}: h1 hashes {got_h1:?}, want exactly {want_h1:?}"
                        ));
                    }
                }
                Ok(())
            }))
        }
        None => None,
    };
    let front = TlsFront::start(&[(host, &fake)]).await?;
    Ok((front, check))
}

/// `registry.terraform.io/hashicorp/null` → `hashicorp/null` when on `host`.
fn short_address(addr: &str, host: &str) -> String {
    addr.strip_prefix(&format!("{host}/"))
        .or_else(|| addr.strip_prefix("registry.terraform.io/"))
        .unwrap_or(addr)
        .to_string()
}

/// The `provider "ADDR" { version = "V" ... }` blocks of a lock text.
fn lock_entries(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("provider \"") {
            current = rest.split('"').next().map(str::to_string);
        } else if let Some(addr) = &current
            && let Some(rest) = t.strip_prefix("version")
            && let Some(v) = rest.trim_start().strip_prefix('=')
        {
            out.push((addr.clone(), v.trim().trim_matches('"').to_string()));
            current = None;
        }
    }
    out
}

/// The hashes listed in the block of `addr`.
fn block_hashes(text: &str, addr: &str) -> Option<Vec<String>> {
    let start = text.find(&format!("provider \"{addr}\""))?;
    let rest = &text[start..];
    let end = rest.find("\n}").unwrap_or(rest.len());
    Some(
        rest[..end]
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("\"h1:") || l.starts_with("\"zh:"))
            .map(|l| l.trim_end_matches(',').trim_matches('"').to_string())
            .collect(),
    )
}

/// Replaces the `hashes = [...]` list of every provider block with the fake's hashes
/// for that block's address and version: `h1:` for each run platform, `zh:` for every
/// `SHA256SUMS` line, sorted, one per line.
fn substitute_hashes(text: &str, host: &str, fake: &FakeRegistry, platforms: &[String]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut addr: Option<String> = None;
    let mut version: Option<String> = None;
    let mut in_hashes = false;
    for line in text.split_inclusive('\n') {
        let t = line.trim();
        if in_hashes {
            if t.starts_with(']') {
                in_hashes = false;
                out.push_str(line);
            }
            continue;
        }
        if let Some(rest) = t.strip_prefix("provider \"") {
            addr = rest.split('"').next().map(str::to_string);
            version = None;
        } else if let Some(rest) = t.strip_prefix("version")
            && let Some(v) = rest.trim_start().strip_prefix('=')
        {
            version = Some(v.trim().trim_matches('"').to_string());
        } else if t.starts_with("hashes") && t.ends_with('[') {
            out.push_str(line);
            let indent: String = line.chars().take_while(|c| *c == ' ').collect();
            if let (Some(a), Some(v)) = (&addr, &version) {
                let short = short_address(a, host);
                if let Some((ns, name)) = short.split_once('/') {
                    let mut hashes = fake.lock_hashes(ns, name, v, platforms);
                    hashes.sort();
                    for h in hashes {
                        out.push_str(&format!("{indent}  \"{h}\",\n"));
                    }
                }
            }
            in_hashes = true;
            continue;
        }
        out.push_str(line);
    }
    out
}
