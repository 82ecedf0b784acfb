//! Runs one [`ScanJob`]: acting as the App's installation, it opens the check run, reads
//! the changed files' patches from the API (compare, pull request files, or one commit; no
//! clone), scans the added lines and publishes the [`CheckReport`] in batches.
//!
//! The repository's own `opsbot.toml` (`[scan]`: disabled rules, allowlists, allowed
//! paths, inline rules, baseline) is read at the head commit, so the App and `opsbot scan`
//! agree on what counts as a finding.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::Method;
use opsbot_core::github::models::{ChangedFile, CheckRun, Comparison, NewCheckRun};
use opsbot_core::github::{GitHub, GitHubError, RepoRef};
use opsbot_scan::baseline::Baseline;
use opsbot_scan::config::ScanConfig;
use opsbot_scan::{Finding, RuleSet, Scanner, added_lines_from_patch};
use regex::Regex;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::report::{CHECK_NAME, CheckReport, ScanOutcome, cancelled_patch, scan_error_patch};
use crate::webhook::{PUSH_PAYLOAD_COMMIT_LIMIT, ScanJob, ScanTarget};

/// GitHub's compare API lists at most this many files; a longer list is truncated.
pub const COMPARE_FILE_LIMIT: usize = 300;
/// Commits one push scan reads at most (each is one request); the summary notes the rest.
pub const MAX_PUSH_COMMITS: usize = 1_000;
/// How long completing a cancelled check run may take at shutdown.
pub const CANCEL_REPORT_TIMEOUT: Duration = Duration::from_secs(5);
/// Files without a patch (too large a diff) whose content is fetched and scanned whole.
const MAX_CONTENT_FETCHES: usize = 50;

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    GitHub(#[from] GitHubError),
    #[error("scanning {repo}@{sha}: {message}")]
    Scan {
        repo: String,
        sha: String,
        message: String,
    },
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq)]
pub enum JobOutcome {
    Reported(JobReport),
    /// No check run: why (a push whose open pull request reports instead).
    Skipped(String),
    /// Stopped by a shutdown; its check run (if one was created) completed as `cancelled`.
    Cancelled {
        check_run_id: Option<u64>,
    },
}

/// What a finished job reported.
#[derive(Debug, Clone, PartialEq)]
pub struct JobReport {
    pub check_run_id: u64,
    pub conclusion: &'static str,
    pub findings: usize,
    pub files_scanned: usize,
    pub lines_scanned: usize,
    pub annotation_batches: Vec<usize>,
}

/// Installation clients kept (each holds its installation token, refreshed by octocrab
/// before expiry), so consecutive deliveries do not mint a new token each.
const MAX_CACHED_INSTALLATIONS: usize = 1_000;

/// Shared by all jobs: the App-level client, installation clients and the built-in scanner.
#[derive(Debug, Clone)]
pub struct Worker {
    app: GitHub,
    scanner: Arc<Scanner>,
    /// Shared, not cloned: octocrab deep-copies its token cache on clone, so a clone made
    /// before the first request would mint its own token.
    installations: Arc<Mutex<HashMap<u64, Arc<GitHub>>>>,
}

/// One changed file: either its patch, or (no patch) its whole content; `commit` is the
/// commit that made the change (pushes), `None` for a pull request's combined diff.
enum Change {
    Patch {
        path: String,
        patch: String,
        commit: Option<String>,
    },
    Content {
        path: String,
        bytes: Vec<u8>,
        commit: Option<String>,
    },
}

/// The repository's `[scan]` settings, applied on top of the built-in rules.
struct RepoScanPolicy {
    scanner: Arc<Scanner>,
    allow_paths: Vec<Regex>,
    baseline: Option<Baseline>,
}

impl Worker {
    /// `app` must be the App-level client ([`GitHub::app_client`]).
    pub fn new(app: GitHub, scanner: Arc<Scanner>) -> Self {
        Worker {
            app,
            scanner,
            installations: Arc::default(),
        }
    }

    /// The App-level client (JWT), for the App's own endpoints (hook deliveries).
    pub fn app(&self) -> &GitHub {
        &self.app
    }

    /// The client acting as installation `id` (cached). A new one is used once first with
    /// a call named after what it proves (the installation token and access to `repo`), so
    /// a failed token request is reported as such, not as the first job call's failure.
    async fn installation(&self, id: u64, repo: &RepoRef) -> Result<Arc<GitHub>, GitHubError> {
        if let Some(gh) = self.cached(id) {
            return Ok(gh);
        }
        let gh = Arc::new(self.app.for_installation(id)?);
        gh.send::<()>(
            &format!(
                "authenticate as installation {id} (POST /app/installations/{id}/access_tokens) and read {repo}"
            ),
            Method::GET,
            &format!("/repos/{}/{}", repo.owner, repo.name),
            None,
        )
        .await?;
        let mut cache = self.installations.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(existing) = cache.get(&id) {
            return Ok(Arc::clone(existing));
        }
        if cache.len() >= MAX_CACHED_INSTALLATIONS {
            cache.clear();
        }
        cache.insert(id, Arc::clone(&gh));
        Ok(gh)
    }

    fn cached(&self, id: u64) -> Option<Arc<GitHub>> {
        let cache = self.installations.lock().unwrap_or_else(|p| p.into_inner());
        cache.get(&id).cloned()
    }

    /// Runs `job` to a completed check run. On a failure after the check run was created,
    /// the run is completed as `failure` with the error, so it never stays "in progress".
    pub async fn run(&self, job: &ScanJob) -> Result<JobOutcome, WorkerError> {
        self.run_cancellable(job, &CancellationToken::new()).await
    }

    /// Whether `job` has been done: its push was left to an open pull request, or a
    /// completed (not cancelled) "opsbot / secrets" run for this delivery exists on the
    /// head commit. The redelivery sweep asks this of deliveries GitHub saw succeed.
    pub async fn job_done(&self, job: &ScanJob) -> Result<bool, WorkerError> {
        #[derive(Deserialize)]
        struct Runs {
            #[serde(default)]
            check_runs: Vec<CheckRun>,
        }
        let gh = self.installation(job.installation_id, &job.repo).await?;
        let runs: Runs = gh
            .call::<_, ()>(
                &format!("list check runs of {}@{}", job.repo, job.head_sha),
                Method::GET,
                &format!(
                    "/repos/{}/{}/commits/{}/check-runs?check_name={}&filter=all&per_page=100",
                    job.repo.owner,
                    job.repo.name,
                    opsbot_core::github::encode_segment(&job.head_sha),
                    opsbot_core::github::encode_query(CHECK_NAME)
                ),
                None,
            )
            .await?;
        let done = runs.check_runs.iter().any(|r| {
            r.name == CHECK_NAME
                && r.external_id.as_deref() == Some(job.delivery.as_str())
                && r.status == "completed"
                && r.conclusion.as_deref() != Some("cancelled")
        });
        if done {
            return Ok(true);
        }
        if let Some(branch) = &job.pushed_branch {
            let head = format!("{}:{branch}", job.repo.owner);
            return Ok(!gh
                .list_pulls(&job.repo, "open", Some(&head))
                .await?
                .is_empty());
        }
        Ok(false)
    }

    /// As [`Worker::run`], but when `cancel` fires the scan stops and its check run is
    /// completed with conclusion `cancelled` (within [`CANCEL_REPORT_TIMEOUT`]).
    pub async fn run_cancellable(
        &self,
        job: &ScanJob,
        cancel: &CancellationToken,
    ) -> Result<JobOutcome, WorkerError> {
        if cancel.is_cancelled() {
            return Ok(JobOutcome::Cancelled { check_run_id: None });
        }
        let started = Instant::now();
        let gh = tokio::select! {
            gh = self.installation(job.installation_id, &job.repo) => gh?,
            () = cancel.cancelled() => return Ok(JobOutcome::Cancelled { check_run_id: None }),
        };
        if let Some(branch) = &job.pushed_branch {
            let head = format!("{}:{branch}", job.repo.owner);
            let open = gh.list_pulls(&job.repo, "open", Some(&head)).await?;
            if let Some(pr) = open.first() {
                let reason = format!(
                    "{branch} is the head of open pull request #{}, whose scan reports on this commit",
                    pr.number
                );
                info!(delivery = %job.delivery, repo = %job.repo, %reason, "push left to its pull request");
                return Ok(JobOutcome::Skipped(reason));
            }
        }
        // Not raced against `cancel`: a run created but never heard of could not be
        // completed. Creation is bounded by the retry budget.
        let run = gh
            .create_check_run(
                &job.repo,
                &NewCheckRun {
                    name: CHECK_NAME.to_owned(),
                    head_sha: job.head_sha.clone(),
                    status: "in_progress".to_owned(),
                    conclusion: None,
                    external_id: Some(job.delivery.clone()),
                    output: None,
                },
            )
            .await?;
        let result = tokio::select! {
            r = self.scan_and_report(&gh, job, run.id) => r,
            () = cancel.cancelled() => {
                let patch = cancelled_patch(&job.trigger);
                match tokio::time::timeout(CANCEL_REPORT_TIMEOUT, gh.update_check_run(&job.repo, run.id, &patch)).await {
                    Ok(Ok(_)) => info!(delivery = %job.delivery, check_run = run.id, "scan cancelled by shutdown; check run completed as cancelled"),
                    Ok(Err(e)) => warn!(delivery = %job.delivery, check_run = run.id, error = %e, "could not complete the cancelled check run"),
                    Err(_) => warn!(delivery = %job.delivery, check_run = run.id, "completing the cancelled check run timed out"),
                }
                return Ok(JobOutcome::Cancelled { check_run_id: Some(run.id) });
            }
        };
        match result {
            Ok(report) => {
                info!(
                    delivery = %job.delivery,
                    repo = %job.repo,
                    sha = %job.head_sha,
                    check_run = run.id,
                    conclusion = report.conclusion,
                    findings = report.findings,
                    files = report.files_scanned,
                    lines = report.lines_scanned,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "scan reported"
                );
                Ok(JobOutcome::Reported(report))
            }
            Err(err) => {
                warn!(delivery = %job.delivery, repo = %job.repo, error = %err, "scan failed");
                let patch = scan_error_patch(&job.trigger, &err.to_string());
                if let Err(e) = gh.update_check_run(&job.repo, run.id, &patch).await {
                    warn!(delivery = %job.delivery, error = %e, "could not mark the check run failed");
                }
                Err(err)
            }
        }
    }

    async fn scan_and_report(
        &self,
        gh: &GitHub,
        job: &ScanJob,
        check_run_id: u64,
    ) -> Result<JobReport, WorkerError> {
        let mut notes = Vec::new();
        let policy = self.repo_policy(gh, job, &mut notes).await;
        let files = changed_files(gh, job, &mut notes).await?;
        let changes = self.collect_changes(gh, job, files, &mut notes).await;

        let trigger = job.trigger.clone();
        let repo = job.repo.to_string();
        let sha = job.head_sha.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            let mut outcome = scan_changes(&policy, &changes);
            outcome.trigger = trigger;
            outcome.notes.extend(notes);
            outcome
        })
        .await
        .map_err(|e| WorkerError::Scan {
            repo,
            sha,
            message: e.to_string(),
        })?;

        let report = CheckReport::from_outcome(&outcome);
        for patch in report.patches() {
            gh.update_check_run(&job.repo, check_run_id, &patch).await?;
        }
        Ok(JobReport {
            check_run_id,
            conclusion: report.conclusion,
            findings: outcome.findings.len(),
            files_scanned: outcome.files_scanned,
            lines_scanned: outcome.lines_scanned,
            annotation_batches: report.batches.iter().map(Vec::len).collect(),
        })
    }

    /// Reads `opsbot.toml` at the head commit. A broken file is noted and the built-in rules
    /// are used (never fewer rules than the default).
    async fn repo_policy(
        &self,
        gh: &GitHub,
        job: &ScanJob,
        notes: &mut Vec<String>,
    ) -> RepoScanPolicy {
        let default = RepoScanPolicy {
            scanner: self.scanner.clone(),
            allow_paths: Vec::new(),
            baseline: None,
        };
        let text = match gh.file(&job.repo, "opsbot.toml", &job.head_sha).await {
            Ok(Some(file)) => String::from_utf8_lossy(&file.bytes).into_owned(),
            Ok(None) => return default,
            Err(e) => {
                notes.push(format!(
                    "opsbot.toml could not be read ({e}); built-in rules used"
                ));
                return default;
            }
        };
        match policy_from_config(&text) {
            Ok((scanner, allow_paths, baseline_path, config_notes)) => {
                notes.extend(config_notes);
                let baseline = match baseline_path {
                    Some(path) => match gh.file(&job.repo, &path, &job.head_sha).await {
                        Ok(Some(f)) => match Baseline::parse(&String::from_utf8_lossy(&f.bytes)) {
                            Ok(b) => Some(b),
                            Err(e) => {
                                notes.push(format!("baseline {path}: {e} (not applied)"));
                                None
                            }
                        },
                        Ok(None) => {
                            notes.push(format!("baseline {path} does not exist (not applied)"));
                            None
                        }
                        Err(e) => {
                            notes.push(format!("baseline {path} could not be read: {e}"));
                            None
                        }
                    },
                    None => None,
                };
                RepoScanPolicy {
                    scanner: scanner.map_or_else(|| self.scanner.clone(), Arc::new),
                    allow_paths,
                    baseline,
                }
            }
            Err(e) => {
                notes.push(format!("opsbot.toml: {e}; built-in rules used"));
                default
            }
        }
    }

    /// Turns changed files into patches to scan, fetching whole files whose diff GitHub
    /// left out (too large); binary files and deletions are skipped.
    async fn collect_changes(
        &self,
        gh: &GitHub,
        job: &ScanJob,
        files: Vec<(Option<String>, ChangedFile)>,
        notes: &mut Vec<String>,
    ) -> Vec<Change> {
        let mut changes = Vec::with_capacity(files.len());
        let mut fetched = 0usize;
        for (commit, file) in files {
            if file.status == "removed" {
                continue;
            }
            match file.patch {
                Some(patch) => changes.push(Change::Patch {
                    path: file.filename,
                    patch,
                    commit,
                }),
                None if file.additions == 0 => {} // binary, or a pure rename/mode change
                None if fetched >= MAX_CONTENT_FETCHES => notes.push(format!(
                    "`{}`: GitHub sent no diff and the limit of {MAX_CONTENT_FETCHES} whole-file fetches was reached",
                    file.filename
                )),
                None => {
                    fetched += 1;
                    let at = commit.as_deref().unwrap_or(&job.head_sha);
                    match gh.file(&job.repo, &file.filename, at).await {
                        Ok(Some(content)) => changes.push(Change::Content {
                            path: file.filename,
                            bytes: content.bytes,
                            commit,
                        }),
                        Ok(None) => notes.push(format!("`{}`: not found at the head commit", file.filename)),
                        Err(e) => notes.push(format!("`{}`: no diff from GitHub and the file could not be read: {e}", file.filename)),
                    }
                }
            }
        }
        changes
    }
}

/// Builds the scanner for a repository's opsbot.toml: `(scanner if the rules differ from the
/// built-in ones, allowed paths, baseline path, notes)`.
#[allow(clippy::type_complexity)]
fn policy_from_config(
    text: &str,
) -> Result<(Option<Scanner>, Vec<Regex>, Option<String>, Vec<String>), String> {
    let cfg = ScanConfig::from_opsbot_toml(text)?;
    let mut notes = Vec::new();
    if !cfg.rules_dirs.is_empty() {
        notes.push(
            "opsbot.toml: `[scan] rules_dirs` are not read by the App (inline `[[scan.rules]]` are)"
                .to_owned(),
        );
    }
    let allow_paths = cfg
        .allow_paths
        .iter()
        .map(|p| Regex::new(p).map_err(|e| format!("[scan] allow_paths `{p}`: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let scanner = if cfg.rules.is_empty() && cfg.allowlist.is_empty() && cfg.disable.is_empty() {
        None
    } else {
        let mut set = RuleSet::builtin().map_err(|e| e.to_string())?;
        cfg.apply_inline("opsbot.toml", &mut set)
            .map_err(|e| e.to_string())?;
        set.disable(&cfg.disable);
        Some(Scanner::new(&set))
    };
    let baseline = cfg
        .baseline
        .as_ref()
        .map(|p| p.to_string_lossy().trim_start_matches("./").to_owned());
    Ok((scanner, allow_paths, baseline, notes))
}

/// Scans every change (CPU only; run on a blocking thread).
fn scan_changes(policy: &RepoScanPolicy, changes: &[Change]) -> ScanOutcome {
    let mut outcome = ScanOutcome::default();
    let mut findings: Vec<Finding> = Vec::new();
    let mut paths = BTreeSet::new();
    for change in changes {
        let path = match change {
            Change::Patch { path, .. } | Change::Content { path, .. } => path,
        };
        if policy.allow_paths.iter().any(|r| r.is_match(path)) {
            continue;
        }
        paths.insert(path.as_str());
        match change {
            Change::Patch {
                path,
                patch,
                commit,
            } => {
                let lines = added_lines_from_patch(patch);
                outcome.lines_scanned += lines.len();
                findings.extend(policy.scanner.scan_added_lines(
                    path,
                    commit.as_deref(),
                    lines.iter().map(|(n, text)| (*n, text.as_bytes())),
                ));
            }
            Change::Content {
                path,
                bytes,
                commit,
            } => {
                outcome.lines_scanned += bytes.split(|&b| b == b'\n').count();
                let mut found = policy.scanner.scan_bytes(path, bytes);
                let commit: Option<std::sync::Arc<str>> = commit.as_deref().map(Into::into);
                for f in &mut found {
                    f.commit.clone_from(&commit);
                }
                findings.extend(found);
            }
        }
    }
    outcome.files_scanned = paths.len();
    if let Some(baseline) = &policy.baseline {
        baseline.filter(&mut findings);
    }
    outcome.findings = findings;
    outcome
}

/// The files the job's target changes, with patches, each tagged with the commit that
/// changed it (pushes; `None` for a pull request's combined diff).
async fn changed_files(
    gh: &GitHub,
    job: &ScanJob,
    notes: &mut Vec<String>,
) -> Result<Vec<(Option<String>, ChangedFile)>, GitHubError> {
    match &job.target {
        ScanTarget::PullRequest { number } => Ok(gh
            .pull_files(&job.repo, *number)
            .await?
            .into_iter()
            .map(|f| (None, f))
            .collect()),
        ScanTarget::Push { base, head, listed } => {
            let (commits, first_page) =
                push_commits(gh, &job.repo, base.as_deref(), head, listed, notes).await?;
            // One commit whose compare is complete: its files are already in hand.
            if let (Some(files), [only]) = (first_page, commits.as_slice())
                && files.len() < COMPARE_FILE_LIMIT
            {
                return Ok(files.into_iter().map(|f| (Some(only.clone()), f)).collect());
            }
            let mut out = Vec::new();
            for sha in &commits {
                out.extend(
                    commit_files(gh, &job.repo, sha)
                        .await?
                        .into_iter()
                        .map(|f| (Some(sha.clone()), f)),
                );
            }
            Ok(out)
        }
    }
}

/// The commits a push adds, oldest first, and (for a base) the first compare page's files.
async fn push_commits(
    gh: &GitHub,
    repo: &RepoRef,
    base: Option<&str>,
    head: &str,
    listed: &[String],
    notes: &mut Vec<String>,
) -> Result<(Vec<String>, Option<Vec<ChangedFile>>), GitHubError> {
    let mut commits: Vec<String> = Vec::new();
    let mut first_files = None;
    match base {
        Some(base) => {
            // Compare lists 250 commits unless paged; pages of 100 go past that.
            let mut page = 1u32;
            loop {
                let cmp: Comparison = gh
                    .call::<_, ()>(
                        &format!("compare {base}...{head} in {repo} (page {page})"),
                        Method::GET,
                        &format!(
                            "/repos/{}/{}/compare/{}...{}?per_page=100&page={page}",
                            repo.owner,
                            repo.name,
                            opsbot_core::github::encode_segment(base),
                            opsbot_core::github::encode_segment(head)
                        ),
                        None,
                    )
                    .await?;
                let total = cmp.total_commits as usize;
                let got = cmp.commits.len();
                commits.extend(cmp.commits.into_iter().map(|c| c.sha));
                if page == 1 {
                    first_files = Some(cmp.files);
                }
                if got == 0 || commits.len() >= total.min(MAX_PUSH_COMMITS) {
                    if total > MAX_PUSH_COMMITS {
                        notes.push(format!(
                            "the push adds {total} commits; the first {MAX_PUSH_COMMITS} were scanned"
                        ));
                    }
                    break;
                }
                page += 1;
            }
        }
        None if listed.len() < PUSH_PAYLOAD_COMMIT_LIMIT => {
            commits.extend(listed.iter().cloned());
        }
        None => {
            // The payload's list is full: walk the history of the head instead.
            #[derive(Deserialize)]
            struct Listed {
                sha: String,
            }
            let walked: Vec<Listed> = gh
                .paginate(
                    &format!("list commits of {head} in {repo}"),
                    &format!(
                        "/repos/{}/{}/commits?sha={}&per_page=100",
                        repo.owner,
                        repo.name,
                        opsbot_core::github::encode_query(head)
                    ),
                    None,
                )
                .await?;
            let mut walked: Vec<String> = walked.into_iter().map(|c| c.sha).collect();
            if walked.len() > MAX_PUSH_COMMITS {
                notes.push(format!(
                    "the first push lists {}+ commits; the newest {MAX_PUSH_COMMITS} were scanned",
                    walked.len()
                ));
                walked.truncate(MAX_PUSH_COMMITS);
            }
            walked.reverse();
            commits = walked;
        }
    }
    if commits.is_empty() {
        commits.push(head.to_owned());
    }
    let mut seen = BTreeSet::new();
    commits.retain(|c| seen.insert(c.clone()));
    commits.truncate(MAX_PUSH_COMMITS);
    if commits.len() > 1 {
        notes.push(format!(
            "{} commits read one by one, so a secret added and later removed is still found",
            commits.len()
        ));
    }
    Ok((commits, first_files))
}

/// The files one commit changes against its first parent.
async fn commit_files(
    gh: &GitHub,
    repo: &RepoRef,
    sha: &str,
) -> Result<Vec<ChangedFile>, GitHubError> {
    #[derive(Deserialize)]
    struct CommitWithFiles {
        #[serde(default)]
        files: Vec<ChangedFile>,
    }
    let commit: CommitWithFiles = gh
        .call::<_, ()>(
            &format!("get commit {sha} in {repo}"),
            Method::GET,
            &format!(
                "/repos/{}/{}/commits/{}",
                repo.owner,
                repo.name,
                opsbot_core::github::encode_segment(sha)
            ),
            None,
        )
        .await?;
    Ok(commit.files)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn builtin() -> Arc<Scanner> {
        Arc::new(Scanner::new(&RuleSet::builtin().unwrap()))
    }

    fn key(seed: char) -> String {
        // A syntactically valid AWS access key id with enough entropy, built at run time.
        let body: String = "Z3MHQ5WXK2PLV7R"
            .chars()
            .chain(std::iter::once(seed))
            .collect();
        format!("AKIA{body}")
    }

    #[test]
    fn scans_only_added_lines_and_honours_allow_paths() {
        let policy = RepoScanPolicy {
            scanner: builtin(),
            allow_paths: vec![Regex::new("^fixtures/").unwrap()],
            baseline: None,
        };
        let patch = format!(
            "@@ -1,2 +1,3 @@\n context\n-old = {}\n+new = {}\n+fine\n",
            key('A'),
            key('B')
        );
        let changes = vec![
            Change::Patch {
                path: "app/config.py".into(),
                patch: patch.clone(),
                commit: Some("c1".into()),
            },
            Change::Patch {
                path: "fixtures/keys.py".into(),
                patch,
                commit: None,
            },
            Change::Content {
                path: "big.txt".into(),
                bytes: format!("x\nk = {}\n", key('C')).into_bytes(),
                commit: None,
            },
        ];
        let outcome = scan_changes(&policy, &changes);
        assert_eq!(outcome.files_scanned, 2);
        let found: Vec<(&str, u32)> = outcome
            .findings
            .iter()
            .map(|f| (&*f.path, f.line))
            .collect();
        assert_eq!(found, vec![("app/config.py", 2), ("big.txt", 2)]);
        assert!(outcome.findings.iter().all(|f| f.secret == "AKIA…"));
        assert_eq!(outcome.findings[0].commit.as_deref(), Some("c1"));
    }

    #[test]
    fn repo_config_disables_rules_and_reports_errors() {
        let (scanner, allow, baseline, notes) = policy_from_config(
            "[scan]\ndisable = [\"aws-access-key-id\"]\nallow_paths = [\"^docs/\"]\nbaseline = \"./.opsbot-baseline.json\"\n",
        )
        .unwrap();
        let scanner = scanner.unwrap();
        assert!(
            scanner
                .scan_bytes("a", format!("k = {}", key('D')).as_bytes())
                .is_empty()
        );
        assert_eq!(allow.len(), 1);
        assert_eq!(baseline.as_deref(), Some(".opsbot-baseline.json"));
        assert!(notes.is_empty());
        let (_, _, _, notes) = policy_from_config("[scan]\nrules_dirs = [\"rules\"]\n").unwrap();
        assert!(notes[0].contains("rules_dirs"), "{notes:?}");
        let err = policy_from_config("[scan]\nallow_paths = [\"(\"]\n")
            .err()
            .unwrap();
        assert!(err.contains("allow_paths"), "{err}");
        assert!(policy_from_config("[scan]\nbogus = 1\n").is_err());
        assert!(policy_from_config("[health]\nx = 1\n").unwrap().0.is_none());
    }
}
