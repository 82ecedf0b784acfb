//! Where the bytes come from: directory walks (honouring `.gitignore` and `.opsbotignore`,
//! in parallel), git (`--staged`, `--git <range>`, the whole history in [`history`]) and
//! readers such as stdin. This module (with its child) is the only one of the crate that
//! touches the file system or runs processes.

pub mod history;

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use ignore::gitignore::{Gitignore, GitignoreBuilder};
use ignore::{WalkBuilder, WalkState};
use regex::Regex;

use crate::diff::{DiffEvent, DiffParser};
use crate::engine::{LinePiece, Scanner, dedup_findings, push_line_pieces};
use crate::finding::{Finding, normalize_path};
use crate::rule::{RuleError, RuleSet};
use crate::stream::{StreamOutcome, scan_reader};

/// Name of the per-directory ignore file (gitignore syntax).
pub const IGNORE_FILE: &str = ".opsbotignore";
/// Lines longer than this in a diff are truncated (memory bound); the rest is not scanned.
pub const MAX_DIFF_LINE: usize = 16 * 1024 * 1024;
/// Added lines of one file are scanned in batches of about this many bytes.
const DIFF_BATCH: usize = 4 * 1024 * 1024;

/// A problem with one input; the scan goes on with the others.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    #[error("{0}")]
    Walk(String),
    #[error("git: {0}")]
    Git(String),
}

/// Options for every source.
#[derive(Debug, Clone)]
pub struct SourceOptions {
    /// Skip files larger than this (`None` = no limit).
    pub max_file_size: Option<u64>,
    pub follow_symlinks: bool,
    /// Walker threads (0 = number of CPUs).
    pub threads: usize,
    /// Do not honour `.gitignore` / `.opsbotignore`.
    pub no_ignore: bool,
    /// Paths (with `/`) matching one of these are not scanned.
    pub allow_paths: Vec<Regex>,
}

impl Default for SourceOptions {
    fn default() -> Self {
        SourceOptions {
            max_file_size: Some(crate::config::DEFAULT_MAX_FILE_SIZE),
            follow_symlinks: false,
            threads: 0,
            no_ignore: false,
            allow_paths: Vec::new(),
        }
    }
}

impl SourceOptions {
    fn path_allowed(&self, path: &str) -> bool {
        self.allow_paths.iter().any(|r| r.is_match(path))
    }
}

/// Findings plus what was scanned and what went wrong.
#[derive(Debug, Default)]
pub struct ScanReport {
    pub findings: Vec<Finding>,
    pub errors: Vec<SourceError>,
    pub files_scanned: u64,
    pub bytes_scanned: u64,
    /// Binary inputs (a NUL in the first 8 KiB): only their printable strings were scanned,
    /// with the high-confidence rules. Not counted in `files_scanned` / `bytes_scanned`.
    pub skipped_binary: u64,
    /// The paths of those binary inputs, sorted (directory walks and stdin).
    pub binary_files: Vec<String>,
    pub skipped_large: u64,
}

/// Walks `paths` (files or directories) with `threads` workers and scans every text file.
pub fn scan_paths(scanner: &Scanner, paths: &[PathBuf], opts: &SourceOptions) -> ScanReport {
    let mut report = ScanReport::default();
    let Some((first, rest)) = paths.split_first() else {
        return report;
    };
    for p in paths {
        // A missing root is an error of its own; the walker would only say "not found".
        if std::fs::symlink_metadata(p).is_err() {
            report.errors.push(SourceError::Io {
                path: p.display().to_string(),
                message: "no such file or directory".to_owned(),
            });
        }
    }
    let mut builder = WalkBuilder::new(first);
    for p in rest {
        builder.add(p);
    }
    let threads = if opts.threads == 0 {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    } else {
        opts.threads
    };
    builder
        .hidden(false)
        .follow_links(opts.follow_symlinks)
        .threads(threads)
        .require_git(false)
        .git_global(false)
        .parents(!opts.no_ignore)
        .ignore(!opts.no_ignore)
        .git_ignore(!opts.no_ignore)
        .git_exclude(!opts.no_ignore)
        .filter_entry(|e| e.file_name() != ".git");
    if !opts.no_ignore {
        builder.add_custom_ignore_filename(IGNORE_FILE);
    }

    let findings = Mutex::new(Vec::new());
    let errors = Mutex::new(Vec::new());
    let files = AtomicU64::new(0);
    let bytes = AtomicU64::new(0);
    let binary = AtomicU64::new(0);
    let binary_files = Mutex::new(Vec::new());
    let large = AtomicU64::new(0);

    builder.build_parallel().run(|| {
        let mut buf: Vec<u8> = Vec::new();
        let mut local: Vec<Finding> = Vec::new();
        let findings = &findings;
        let errors = &errors;
        let binary_files = &binary_files;
        let (files, bytes, binary, large) = (&files, &bytes, &binary, &large);
        Box::new(move |entry| {
            let entry = match entry {
                Ok(e) => e,
                Err(err) => {
                    push(errors, SourceError::Walk(one_line(&err.to_string())));
                    return WalkState::Continue;
                }
            };
            if !entry.file_type().is_some_and(|t| t.is_file()) {
                return WalkState::Continue;
            }
            let path = entry.path();
            let shown = normalize_path(&path.to_string_lossy());
            if opts.path_allowed(&shown) {
                return WalkState::Continue;
            }
            match entry.metadata() {
                Ok(md) => {
                    if let Some(max) = opts.max_file_size
                        && max > 0
                        && md.len() > max
                    {
                        tracing::info!(path = %shown, size = md.len(), "skipped: larger than the size limit");
                        large.fetch_add(1, Ordering::Relaxed);
                        return WalkState::Continue;
                    }
                }
                Err(err) => {
                    push(errors, io_error(&shown, &err.to_string()));
                    return WalkState::Continue;
                }
            }
            local.clear();
            match File::open(path) {
                Ok(file) => match scan_reader(scanner, &shown, file, &mut buf, &mut local) {
                    Ok(StreamOutcome::Scanned { bytes: n }) => {
                        files.fetch_add(1, Ordering::Relaxed);
                        bytes.fetch_add(n, Ordering::Relaxed);
                        if !local.is_empty()
                            && let Ok(mut all) = findings.lock()
                        {
                            move_findings(&mut all, &mut local);
                        }
                    }
                    Ok(StreamOutcome::Binary) => {
                        binary.fetch_add(1, Ordering::Relaxed);
                        if let Ok(mut all) = findings.lock() {
                            move_findings(&mut all, &mut local);
                        }
                        if let Ok(mut names) = binary_files.lock() {
                            names.push(shown.clone());
                        }
                    }
                    Err(err) => push(errors, io_error(&shown, &err.to_string())),
                },
                Err(err) => push(errors, io_error(&shown, &err.to_string())),
            }
            if buf.capacity() > 4 * crate::stream::CHUNK {
                buf = Vec::new();
            }
            WalkState::Continue
        })
    });

    report.findings = findings.into_inner().unwrap_or_default();
    report
        .errors
        .extend(errors.into_inner().unwrap_or_default());
    report.files_scanned = files.into_inner();
    report.bytes_scanned = bytes.into_inner();
    report.skipped_binary = binary.into_inner();
    report.binary_files = binary_files.into_inner().unwrap_or_default();
    report.binary_files.sort();
    report.skipped_large = large.into_inner();
    report.findings.sort_unstable_by(|a, b| {
        (&a.path, a.line, a.column, a.offset, a.rule_id()).cmp(&(
            &b.path,
            b.line,
            b.column,
            b.offset,
            b.rule_id(),
        ))
    });
    report
}

/// Moves a file's findings to the run's: the vector itself when the run has none yet, so a
/// file with very many findings is not held twice, and a grown per-thread vector is not
/// kept for the rest of the walk.
fn move_findings(all: &mut Vec<Finding>, local: &mut Vec<Finding>) {
    if all.is_empty() {
        std::mem::swap(all, local);
        local.clear();
    } else {
        all.append(local);
    }
    if local.capacity() > 1024 {
        *local = Vec::new();
    }
}

fn push(errors: &Mutex<Vec<SourceError>>, err: SourceError) {
    tracing::debug!("{err}");
    if let Ok(mut e) = errors.lock() {
        e.push(err);
    }
}

fn io_error(path: &str, message: &str) -> SourceError {
    SourceError::Io {
        path: path.to_owned(),
        message: message.to_owned(),
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Scans a reader (stdin) as one input called `name`.
pub fn scan_named_reader<R: Read>(scanner: &Scanner, name: &str, reader: R) -> ScanReport {
    let mut report = ScanReport::default();
    let mut buf = Vec::new();
    match scan_reader(scanner, name, reader, &mut buf, &mut report.findings) {
        Ok(StreamOutcome::Scanned { bytes }) => {
            report.files_scanned = 1;
            report.bytes_scanned = bytes;
        }
        Ok(StreamOutcome::Binary) => {
            report.skipped_binary = 1;
            report.binary_files.push(name.to_owned());
        }
        Err(err) => report.errors.push(io_error(name, &err.to_string())),
    }
    report
}

/// Which git changes to scan.
#[derive(Debug, Clone)]
pub enum GitTarget {
    /// Lines added in the index (pre-commit).
    Staged,
    /// `base..head` (or any `git log` range), or a single revision.
    Range(String),
}

fn git(repo: &Path) -> Command {
    let mut cmd = Command::new("git");
    cmd.current_dir(repo)
        .args(["-c", "core.quotepath=off", "-c", "diff.noprefix=false"])
        .env("GIT_PAGER", "cat")
        .env("LC_ALL", "C");
    cmd
}

/// The top directory of the work tree containing `dir`: the nearest ancestor holding `.git`
/// (a directory, or a file for worktrees and submodules), or git's answer when `GIT_DIR` /
/// `GIT_WORK_TREE` change the rules. Saves a process on the `--staged` path.
pub fn repo_root(dir: &Path) -> Result<PathBuf, SourceError> {
    if std::env::var_os("GIT_DIR").is_none() && std::env::var_os("GIT_WORK_TREE").is_none() {
        let start = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
        for d in start.ancestors() {
            if d.join(".git").exists() {
                return Ok(d.to_path_buf());
            }
        }
    }
    git_repo_root(dir)
}

fn git_repo_root(dir: &Path) -> Result<PathBuf, SourceError> {
    let out = git(dir)
        .args(["rev-parse", "--show-toplevel"])
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| SourceError::Git(format!("cannot run git: {e}")))?;
    if !out.status.success() {
        return Err(SourceError::Git(one_line(&String::from_utf8_lossy(
            &out.stderr,
        ))));
    }
    Ok(PathBuf::from(
        String::from_utf8_lossy(&out.stdout).trim_end_matches(['\n', '\r']),
    ))
}

/// Scans the lines added by staged changes or by a commit range, in the repository at
/// `repo` (any directory inside it). Paths are relative to the repository root.
pub fn scan_git(
    scanner: &Scanner,
    repo: &Path,
    target: &GitTarget,
    pathspecs: &[String],
    opts: &SourceOptions,
) -> Result<ScanReport, SourceError> {
    GitDiff::spawn(repo, target, pathspecs, opts)?.scan(scanner, opts)
}

/// The git process of a [`scan_git`], started and not read yet. Starting git before the
/// rules are loaded lets the two overlap (a pre-commit hook's `--staged` waits for both).
/// Dropped unread, git's output pipe closes and git exits.
pub struct GitDiff {
    root: PathBuf,
    ignore: Option<Gitignore>,
    child: std::process::Child,
    stdout: std::process::ChildStdout,
    err_thread: std::thread::JoinHandle<String>,
}

impl GitDiff {
    /// Starts `git diff --cached` (staged changes) or `git log -p` (a range) in the
    /// repository at `repo` (any directory inside it).
    pub fn spawn(
        repo: &Path,
        target: &GitTarget,
        pathspecs: &[String],
        opts: &SourceOptions,
    ) -> Result<Self, SourceError> {
        let root = repo_root(repo)?;
        let ignore = if opts.no_ignore {
            None
        } else {
            load_root_ignore(&root)
        };
        let mut cmd = git(&root);
        let common = [
            "--no-color",
            "--no-ext-diff",
            "--no-textconv",
            "-U0",
            // Full blob ids on `index` lines: the new blob of a binary file is read by its id.
            "--full-index",
            "--src-prefix=a/",
            "--dst-prefix=b/",
        ];
        match target {
            GitTarget::Staged => {
                cmd.arg("diff")
                    .arg("--cached")
                    .args(common)
                    .arg("--diff-filter=ACMRT");
            }
            GitTarget::Range(range) => {
                if range.starts_with('-') {
                    return Err(SourceError::Git(format!(
                        "invalid revision range {range:?}"
                    )));
                }
                cmd.arg("log")
                    .arg("-p")
                    .args(common)
                    .arg("--format=commit %H");
                if !range.contains("..") {
                    cmd.args(["-1", "-m", "--first-parent"]);
                }
                cmd.arg(range);
            }
        }
        cmd.arg("--");
        for p in pathspecs {
            cmd.arg(p);
        }
        tracing::debug!(?cmd, "running git");
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| SourceError::Git(format!("cannot run git: {e}")))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| SourceError::Git("no stdout".to_owned()))?;
        // Drain stderr on a thread so a chatty git cannot block.
        let stderr = child.stderr.take();
        let err_thread = std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut s) = stderr {
                let _ = s.read_to_string(&mut text);
            }
            text
        });
        Ok(GitDiff {
            root,
            ignore,
            child,
            stdout,
            err_thread,
        })
    }

    /// Reads git's output and scans the added lines (and the new blobs of binary files).
    pub fn scan(self, scanner: &Scanner, opts: &SourceOptions) -> Result<ScanReport, SourceError> {
        let GitDiff {
            root,
            ignore,
            mut child,
            stdout,
            err_thread,
        } = self;
        let mut report = ScanReport::default();
        let mut batch = DiffBatch::default();
        let mut reader = BufReader::with_capacity(256 * 1024, stdout);
        let mut parser = DiffParser::new();
        let mut line: Vec<u8> = Vec::new();
        let mut commit: Option<String> = None;
        // Binary files: git shows no content; their new blobs are read once the diff is done.
        let mut binaries: Vec<history::ChangedBlob> = Vec::new();
        let skip_path = |p: &str| {
            opts.path_allowed(p)
                || ignore
                    .as_ref()
                    .is_some_and(|g| g.matched_path_or_any_parents(p, false).is_ignore())
        };
        loop {
            line.clear();
            let truncated = match read_line_capped(&mut reader, &mut line, MAX_DIFF_LINE) {
                Ok(0) => break,
                Ok(_) => false,
                Err(ReadLineError::TooLong) => true,
                Err(ReadLineError::Io(e)) => {
                    report
                        .errors
                        .push(SourceError::Git(format!("reading git output: {e}")));
                    break;
                }
            };
            match parser.feed(&line) {
                Some(DiffEvent::Commit(sha)) => {
                    batch.flush(scanner, &mut report);
                    commit = Some(sha);
                }
                Some(DiffEvent::File(path)) => {
                    batch.flush(scanner, &mut report);
                    batch.commit = commit.clone();
                    batch.path = path.filter(|p| !skip_path(p));
                    if batch.path.is_some() {
                        report.files_scanned += 1;
                    }
                }
                Some(DiffEvent::Binary { path, blob }) => {
                    batch.flush(scanner, &mut report);
                    match (path, blob) {
                        (Some(path), Some(id)) if !skip_path(&path) => {
                            binaries.push(history::ChangedBlob {
                                id,
                                path,
                                commit: commit.clone(),
                            });
                        }
                        (Some(path), None) => {
                            tracing::warn!(%path, "binary file without a full blob id in the diff: not scanned");
                        }
                        _ => {}
                    }
                }
                Some(DiffEvent::Added { line: n, content }) => {
                    if truncated {
                        tracing::warn!(path = ?batch.path, line = n, "added line longer than {MAX_DIFF_LINE} bytes: only its start is scanned");
                    }
                    if batch.path.is_some() {
                        report.bytes_scanned += content.len() as u64 + 1;
                        push_line_pieces(&mut batch.buf, &mut batch.map, n, content);
                        if batch.buf.len() >= DIFF_BATCH {
                            batch.scan(scanner, &mut report);
                        }
                    }
                }
                None => {}
            }
        }
        batch.flush(scanner, &mut report);
        let status = child
            .wait()
            .map_err(|e| SourceError::Git(format!("waiting for git: {e}")))?;
        let stderr_text = err_thread.join().unwrap_or_default();
        if !status.success() {
            return Err(SourceError::Git(one_line(&stderr_text)));
        }
        dedup_findings(&mut report.findings);
        // After the de-duplication by line: findings in binaries are all at line 0 and differ
        // by their offsets (`scan_changed_blobs` keeps each secret once).
        if let Err(err) = history::scan_changed_blobs(scanner, &root, binaries, opts, &mut report) {
            report.errors.push(err);
        }
        Ok(report)
    }
}

#[derive(Default)]
struct DiffBatch {
    commit: Option<String>,
    path: Option<String>,
    buf: Vec<u8>,
    map: Vec<LinePiece>,
}

impl DiffBatch {
    fn scan(&mut self, scanner: &Scanner, report: &mut ScanReport) {
        if let Some(path) = &self.path
            && !self.map.is_empty()
        {
            let found =
                scanner.scan_joined_lines(path, self.commit.as_deref(), &self.buf, &self.map);
            report.findings.extend(found);
        }
        self.buf.clear();
        self.map.clear();
    }

    fn flush(&mut self, scanner: &Scanner, report: &mut ScanReport) {
        self.scan(scanner, report);
        self.path = None;
    }
}

enum ReadLineError {
    TooLong,
    Io(std::io::Error),
}

/// Reads one line (with its `\n`) into `out`, keeping at most `cap` bytes of it; the rest of
/// an over-long line is consumed and dropped (`TooLong`, with `out` holding the start).
fn read_line_capped<R: BufRead>(
    r: &mut R,
    out: &mut Vec<u8>,
    cap: usize,
) -> Result<usize, ReadLineError> {
    let mut total = 0usize;
    let mut too_long = false;
    loop {
        let available = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ReadLineError::Io(e)),
        };
        if available.is_empty() {
            break;
        }
        let (chunk, done) = match memchr::memchr(b'\n', available) {
            Some(i) => (&available[..=i], true),
            None => (available, false),
        };
        let room = cap.saturating_sub(out.len());
        if chunk.len() > room {
            too_long = true;
        }
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let n = chunk.len();
        total += n;
        r.consume(n);
        if done {
            break;
        }
    }
    if too_long {
        Err(ReadLineError::TooLong)
    } else {
        Ok(total)
    }
}

fn load_root_ignore(root: &Path) -> Option<Gitignore> {
    let file = root.join(IGNORE_FILE);
    if !file.is_file() {
        return None;
    }
    let mut b = GitignoreBuilder::new(root);
    if let Some(err) = b.add(&file) {
        tracing::warn!("{}: {err}", file.display());
    }
    b.build().ok()
}

/// Reads every `*.toml` file of `dir` (sorted) into `set`, checking each rule's examples.
pub fn load_rules_dir(dir: &Path, set: &mut RuleSet) -> Result<usize, RuleError> {
    let shown = dir.display().to_string();
    let entries = std::fs::read_dir(dir).map_err(|e| RuleError::File {
        file: shown.clone(),
        problem: format!("cannot read rules directory: {e}"),
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    let before = set.len();
    // Load every file first, then run the examples: a file's global allowlist (placeholders)
    // applies to the rules of the files sorted before it.
    for f in &files {
        let name = f.display().to_string();
        let text = std::fs::read_to_string(f).map_err(|e| RuleError::File {
            file: name.clone(),
            problem: format!("cannot read: {e}"),
        })?;
        set.add_file(&name, &text, false)?;
    }
    let added: Vec<(String, String)> = set
        .rules()
        .skip(before)
        .map(|r| (r.id.clone(), r.file.clone()))
        .collect();
    for (id, file) in added {
        set.check_examples(&id).map_err(|problem| RuleError::Rule {
            file,
            rule: id.clone(),
            problem,
        })?;
    }
    Ok(set.len() - before)
}
