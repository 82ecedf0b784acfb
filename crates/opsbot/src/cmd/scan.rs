//! `opsbot scan`: argument parsing and wiring for the secret scanner (`opsbot-scan`).
//!
//! Exit codes: 0 clean, 1 findings, 2 usage or I/O error.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use opsbot_scan::baseline::Baseline;
use opsbot_scan::config::{DEFAULT_MAX_FILE_SIZE, ScanConfig, parse_size};
use opsbot_scan::report::{self, RuleInfo};
use opsbot_scan::source::{self, GitTarget, ScanReport, SourceOptions};
use opsbot_scan::{RuleSet, Scanner};

use super::GlobalArgs;

#[derive(Debug, Args)]
pub struct ScanArgs {
    /// Files or directories to scan (default `.`). With --staged or --git: git pathspecs
    /// that limit the scan.
    pub paths: Vec<PathBuf>,

    /// Scan only the lines added in the staged changes (pre-commit hook).
    #[arg(long, conflicts_with_all = ["git", "stdin"])]
    pub staged: bool,

    /// Scan the lines added by a commit range `BASE..HEAD` (what a push or PR introduces)
    /// or by one commit `REV`. With --all (and no RANGE): the whole history.
    #[arg(long, value_name = "RANGE", conflicts_with = "stdin", num_args = 0..=1, default_missing_value = "")]
    pub git: Option<String>,

    /// Scan the whole history: every file version reachable from any branch or tag, each
    /// blob once, every finding reported at the first commit that introduced it. A progress
    /// bar is drawn when stderr is a terminal. Same as `--git --all`.
    #[arg(long, visible_alias = "history", conflicts_with_all = ["staged", "stdin"])]
    pub all: bool,

    /// Scan standard input.
    #[arg(long)]
    pub stdin: bool,

    /// Path reported for findings in standard input.
    #[arg(long, value_name = "NAME", default_value = "stdin")]
    pub stdin_name: String,

    /// Output format.
    #[arg(long, short = 'f', value_enum, default_value_t = Format::Text)]
    pub format: Format,

    /// Write the report to FILE instead of standard output.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Ignore findings recorded in this baseline file (default: `[scan] baseline`).
    #[arg(long, value_name = "FILE")]
    pub baseline: Option<PathBuf>,

    /// Record every current finding in FILE (to adopt the scanner without fixing history)
    /// and exit 0.
    #[arg(long, value_name = "FILE")]
    pub write_baseline: Option<PathBuf>,

    /// Extra directory of rule files (`*.toml`); may be repeated. Their rules are compiled
    /// and their examples run at load.
    #[arg(long = "rules-dir", value_name = "DIR")]
    pub rules_dirs: Vec<PathBuf>,

    /// Do not load the rules built into the binary (including the placeholder allowlist):
    /// only those of --rules-dir and the config. `--no-builtin-rules --rules-dir rules`
    /// tests edited rule files without rebuilding.
    #[arg(long)]
    pub no_builtin_rules: bool,

    /// Turn a rule off by id; may be repeated.
    #[arg(long = "disable-rule", value_name = "ID")]
    pub disable: Vec<String>,

    /// Skip files larger than this (`10M`, `512K`, bytes; `0` = no limit). Default 10M.
    #[arg(long, value_name = "SIZE")]
    pub max_file_size: Option<String>,

    /// Follow symbolic links while walking directories.
    #[arg(long)]
    pub follow_symlinks: bool,

    /// Do not honour .gitignore / .opsbotignore files.
    #[arg(long)]
    pub no_ignore: bool,

    /// Worker threads for directory scans (default: number of CPUs).
    #[arg(long, short = 'j', value_name = "N")]
    pub threads: Option<usize>,

    /// Colour in text output.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,

    /// List the loaded rules and exit.
    #[arg(long)]
    pub list_rules: bool,
}

impl ScanArgs {
    /// The PATH arguments as git pathspecs (--staged, --git, --all).
    fn pathspecs(&self) -> Vec<String> {
        self.paths
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
    Sarif,
    Github,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

pub async fn run(global: &GlobalArgs, args: ScanArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let config = global.config()?;
    let scan_cfg: ScanConfig = config.section("scan")?;
    let config_dir = Path::new(config.origin())
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();

    if !args.stdin && args.all && args.git.as_deref().is_some_and(|r| !r.is_empty()) {
        bail!("--all scans every commit: give either --git RANGE or --all, not both");
    }
    // --staged / --git read a diff (--stdin and --all take precedence).
    let reads_diff = !args.stdin && !args.all && (args.staged || args.git.is_some());
    if reads_diff && args.git.as_deref() == Some("") {
        bail!("--git needs a RANGE (`BASE..HEAD` or a commit), or --all for the whole history");
    }
    let opts = source_options(&args, &scan_cfg, config.origin())?;
    // git starts first and computes the diff while the rules load.
    let diff = if reads_diff && !args.list_rules {
        let target = match &args.git {
            Some(range) => GitTarget::Range(range.clone()),
            None => GitTarget::Staged,
        };
        let cwd = std::env::current_dir().context("current directory")?;
        Some(source::GitDiff::spawn(
            &cwd,
            &target,
            &args.pathspecs(),
            &opts,
        )?)
    } else {
        None
    };

    let rules = load_rules(&args, &scan_cfg, config.origin(), &config_dir)?;
    if args.list_rules {
        for r in rules.rules() {
            println!("{:<40} {:<8} {}", r.id, r.severity, r.description);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let scanner = Scanner::new(&rules);

    let mut report = if args.stdin {
        let stdin = std::io::stdin();
        source::scan_named_reader(&scanner, &args.stdin_name, stdin.lock())
    } else if args.all {
        scan_history(&scanner, &args, &opts)?
    } else if let Some(diff) = diff {
        diff.scan(&scanner, &opts)?
    } else {
        let paths = if args.paths.is_empty() {
            vec![PathBuf::from(".")]
        } else {
            args.paths.clone()
        };
        source::scan_paths(&scanner, &paths, &opts)
    };

    for err in &report.errors {
        eprintln!("opsbot: warning: {}", elide_middle(&err.to_string()));
    }
    if report.skipped_large > 0 {
        eprintln!(
            "opsbot: skipped {} file(s) larger than the size limit (see --max-file-size)",
            report.skipped_large
        );
    }

    if let Some(path) = &args.write_baseline {
        let baseline = Baseline::from_findings(&report.findings);
        write_atomically(path, |out| out.write_all(baseline.to_json().as_bytes()))
            .with_context(|| format!("cannot write baseline {}", path.display()))?;
        eprintln!(
            "opsbot: wrote {} finding(s) to baseline {}",
            baseline.findings.len(),
            path.display()
        );
        return Ok(ExitCode::SUCCESS);
    }

    let baseline_path = args.baseline.clone().or_else(|| {
        scan_cfg
            .baseline
            .as_ref()
            .map(|p| relative_to(&config_dir, p))
    });
    let mut suppressed = 0;
    if let Some(path) = &baseline_path {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read baseline {}", path.display()))?;
        let baseline =
            Baseline::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        suppressed = baseline.filter(&mut report.findings);
    }

    // Written as rendered, one finding at a time: never the whole output in memory.
    match &args.output {
        Some(path) => write_atomically(path, |out| render(out, &args, &report, &rules))
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => {
            let mut out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout().lock());
            // A closed pipe (`| head`) is not an error worth a message.
            let _ = render(&mut out, &args, &report, &rules).and_then(|()| out.flush());
        }
    }

    if args.format == Format::Text || global.verbose > 0 {
        summary(&report, suppressed, started);
    }
    Ok(if !report.findings.is_empty() {
        ExitCode::from(1)
    } else if !report.errors.is_empty() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

/// `--git --all`: the history scan, with a progress bar (MB of blobs) on a terminal.
fn scan_history(
    scanner: &Scanner,
    args: &ScanArgs,
    opts: &SourceOptions,
) -> anyhow::Result<ScanReport> {
    use opsbot_scan::source::history::{self, HistoryProgress};
    let pathspecs = args.pathspecs();
    let cwd = std::env::current_dir().context("current directory")?;
    let started = Instant::now();
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} history {bytes}/{total_bytes} ({bytes_per_sec}, {eta}) {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let on_progress = |p: HistoryProgress| {
        if let Some(bar) = &bar {
            bar.set_length(p.bytes_total);
            bar.set_position(p.bytes_done);
            bar.set_message(format!("{}/{} blobs", p.blobs_done, p.blobs_total));
        }
    };
    let result = history::scan_history(scanner, &cwd, &pathspecs, opts, Some(&on_progress));
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let (report, stats) = result?;
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "opsbot: history: {} commit(s), {} distinct file version(s), {:.1} MB in {:.2} s ({:.0} MB/s)",
        stats.commits,
        stats.blobs,
        report.bytes_scanned as f64 / 1e6,
        secs,
        report.bytes_scanned as f64 / 1e6 / secs.max(1e-6),
    );
    Ok(report)
}

fn load_rules(
    args: &ScanArgs,
    cfg: &ScanConfig,
    origin: &str,
    config_dir: &Path,
) -> anyhow::Result<RuleSet> {
    let mut rules = if args.no_builtin_rules {
        RuleSet::new()
    } else {
        RuleSet::builtin()?
    };
    for dir in cfg
        .rules_dirs
        .iter()
        .map(|d| relative_to(config_dir, d))
        .chain(args.rules_dirs.iter().cloned())
    {
        source::load_rules_dir(&dir, &mut rules)?;
    }
    cfg.apply_inline(origin, &mut rules)?;
    let disabled: Vec<&String> = cfg.disable.iter().chain(&args.disable).collect();
    for unknown in rules.disable(&disabled) {
        eprintln!("opsbot: warning: cannot disable unknown rule `{unknown}`");
    }
    Ok(rules)
}

fn source_options(
    args: &ScanArgs,
    cfg: &ScanConfig,
    origin: &str,
) -> anyhow::Result<SourceOptions> {
    let max_file_size = match (&args.max_file_size, &cfg.max_file_size) {
        (Some(text), _) => parse_size(text).map_err(|e| anyhow::anyhow!("--max-file-size: {e}"))?,
        (None, Some(v)) => v
            .bytes()
            .map_err(|e| anyhow::anyhow!("{origin}: scan.max_file_size: {e}"))?,
        (None, None) => DEFAULT_MAX_FILE_SIZE,
    };
    let mut allow_paths = Vec::new();
    for p in &cfg.allow_paths {
        allow_paths.push(
            regex::Regex::new(p)
                .map_err(|e| anyhow::anyhow!("{origin}: scan.allow_paths `{p}`: {e}"))?,
        );
    }
    if args.threads == Some(0) {
        bail!("--threads must be at least 1");
    }
    Ok(SourceOptions {
        max_file_size: (max_file_size > 0).then_some(max_file_size),
        follow_symlinks: args.follow_symlinks,
        threads: args.threads.unwrap_or(0),
        no_ignore: args.no_ignore,
        allow_paths,
    })
}

fn render(
    out: &mut dyn Write,
    args: &ScanArgs,
    report: &ScanReport,
    rules: &RuleSet,
) -> std::io::Result<()> {
    match args.format {
        Format::Text => {
            let color = match args.color {
                ColorChoice::Always => true,
                ColorChoice::Never => false,
                ColorChoice::Auto => {
                    args.output.is_none()
                        && std::io::stdout().is_terminal()
                        && std::env::var_os("NO_COLOR").is_none()
                }
            };
            report::write_text(out, &report.findings, color)
        }
        Format::Json => report::write_json(out, &report.findings),
        Format::Sarif => {
            let infos: Vec<RuleInfo> = rules.rules().map(RuleInfo::from).collect();
            report::write_sarif(out, &report.findings, &infos, env!("CARGO_PKG_VERSION"))
        }
        Format::Github => report::write_github(out, &report.findings),
    }
}

fn summary(report: &ScanReport, suppressed: usize, started: Instant) {
    let mut files: Vec<&str> = report.findings.iter().map(|f| &*f.path).collect();
    files.sort_unstable();
    files.dedup();
    let mut text = if report.findings.is_empty() {
        "opsbot: no secrets found".to_owned()
    } else {
        format!(
            "opsbot: {} secret(s) found in {} file(s)",
            report.findings.len(),
            files.len()
        )
    };
    if suppressed > 0 {
        text.push_str(&format!(", {suppressed} in the baseline"));
    }
    text.push_str(&format!(
        " ({} file(s), {:.1} MB scanned in {} ms)",
        report.files_scanned,
        report.bytes_scanned as f64 / 1e6,
        started.elapsed().as_millis()
    ));
    if !report.errors.is_empty() {
        text.push_str(&format!(
            "; {} path(s) could not be scanned (warnings above)",
            report.errors.len()
        ));
    }
    eprintln!("{text}");
    if report.skipped_binary > 0 {
        eprintln!("opsbot: {}", binary_note(report));
    }
}

/// A message longer than a terminal screen (a path 10,000 directories deep) keeps its start
/// and its end, where the reason is.
fn elide_middle(text: &str) -> String {
    const KEEP: usize = 160;
    let chars: Vec<char> = text.chars().collect();
    if chars.len() <= 3 * KEEP {
        return text.to_owned();
    }
    let head: String = chars[..KEEP].iter().collect();
    let tail: String = chars[chars.len() - KEEP..].iter().collect();
    format!("{head}…[{} characters]…{tail}", chars.len() - 2 * KEEP)
}

/// `3 binary file(s) scanned as strings (high-confidence rules only): a.bin, b.so, c.png`,
/// naming at most five.
fn binary_note(report: &ScanReport) -> String {
    const SHOWN: usize = 5;
    let mut text = format!(
        "{} binary file(s) scanned as strings (high-confidence rules only)",
        report.skipped_binary
    );
    if !report.binary_files.is_empty() {
        let names: Vec<&str> = report
            .binary_files
            .iter()
            .take(SHOWN)
            .map(String::as_str)
            .collect();
        text.push_str(": ");
        text.push_str(&names.join(", "));
        if report.binary_files.len() > SHOWN {
            text.push_str(&format!(" and {} more", report.binary_files.len() - SHOWN));
        }
    }
    text
}

fn relative_to(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// Writes to a temporary file next to `path` (buffered, as `write` produces it), then renames
/// it over `path`; on any error the temporary file is removed and `path` is left as it was.
fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".to_owned());
    let tmp = dir.join(format!(".{name}.opsbot-tmp-{}", std::process::id()));
    let written = std::fs::File::create(&tmp).and_then(|file| {
        let mut out = std::io::BufWriter::with_capacity(64 * 1024, file);
        write(&mut out)?;
        out.into_inner().map_err(|e| e.into_error())?.sync_all()
    });
    written
        .and_then(|()| std::fs::rename(&tmp, path))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
}
