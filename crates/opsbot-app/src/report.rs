//! From findings to the check run GitHub shows: conclusion, title, Markdown summary and one
//! annotation per finding, split into the requests GitHub accepts (at most 50 annotations
//! each). Pure. Secrets arrive masked in [`Finding`], so nothing here can print one in full.

use std::fmt::Write as _;

use opsbot_core::github::models::{Annotation, CheckRunOutput, CheckRunPatch};
use opsbot_scan::Finding;

/// The check run's name.
pub const CHECK_NAME: &str = "opsbot / secrets";
/// GitHub's limit of annotations per create/update request.
pub const MAX_ANNOTATIONS_PER_REQUEST: usize = 50;
/// Annotations sent at most for one scan (the summary says when more were found).
pub const MAX_ANNOTATIONS: usize = 1_000;
/// Findings listed in the summary table.
const SUMMARY_ROWS: usize = 50;
/// GitHub refuses summaries longer than 65,535 characters.
const MAX_SUMMARY: usize = 60_000;

/// What one scan looked at and found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScanOutcome {
    /// `push to refs/heads/x`, `pull request #5 opened`, ...
    pub trigger: String,
    pub files_scanned: usize,
    pub lines_scanned: usize,
    /// Files or parts that could not be scanned, and why (one line each).
    pub notes: Vec<String>,
    pub findings: Vec<Finding>,
}

/// The check run to report: everything the PATCH requests will carry.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckReport {
    /// `success` or `failure`.
    pub conclusion: &'static str,
    pub title: String,
    pub summary: String,
    /// Annotation batches of at most [`MAX_ANNOTATIONS_PER_REQUEST`].
    pub batches: Vec<Vec<Annotation>>,
}

impl CheckReport {
    pub fn from_outcome(outcome: &ScanOutcome) -> Self {
        let mut findings: Vec<&Finding> = outcome.findings.iter().collect();
        findings.sort_by(|a, b| {
            (&a.path, a.line, a.column, a.rule_id()).cmp(&(&b.path, b.line, b.column, b.rule_id()))
        });
        let n = findings.len();
        let conclusion = if n == 0 { "success" } else { "failure" };
        let title = match n {
            0 => "No secrets found".to_owned(),
            1 => "1 secret found".to_owned(),
            n => format!("{n} secrets found"),
        };
        let annotations: Vec<Annotation> = findings
            .iter()
            .take(MAX_ANNOTATIONS)
            .map(|f| annotation(f))
            .collect();
        let batches = annotations
            .chunks(MAX_ANNOTATIONS_PER_REQUEST)
            .map(<[Annotation]>::to_vec)
            .collect();
        CheckReport {
            conclusion,
            title,
            summary: summary(outcome, &findings),
            batches,
        }
    }

    /// The PATCH requests that publish this report, in order: each carries the output
    /// (title and summary are required with every output) and the next annotation batch;
    /// the last one also sets the conclusion, which completes the run.
    pub fn patches(&self) -> Vec<CheckRunPatch> {
        let output = |annotations: Vec<Annotation>| CheckRunOutput {
            title: self.title.clone(),
            summary: self.summary.clone(),
            text: None,
            annotations,
        };
        let mut patches: Vec<CheckRunPatch> = self
            .batches
            .iter()
            .map(|batch| CheckRunPatch {
                status: Some("in_progress".to_owned()),
                conclusion: None,
                output: Some(output(batch.clone())),
            })
            .collect();
        match patches.last_mut() {
            Some(last) => {
                last.status = Some("completed".to_owned());
                last.conclusion = Some(self.conclusion.to_owned());
            }
            None => patches.push(CheckRunPatch {
                status: Some("completed".to_owned()),
                conclusion: Some(self.conclusion.to_owned()),
                output: Some(output(Vec::new())),
            }),
        }
        patches
    }
}

/// The PATCH for a scan that could not run: the run fails (a secrets check must not pass
/// what it did not read) and says how to retry.
pub fn scan_error_patch(trigger: &str, error: &str) -> CheckRunPatch {
    CheckRunPatch {
        status: Some("completed".to_owned()),
        conclusion: Some("failure".to_owned()),
        output: Some(CheckRunOutput {
            title: "The scan could not run".to_owned(),
            summary: format!(
                "opsbot could not scan the changes of the {trigger}:\n\n```\n{}\n```\n\n\
                 Use **Re-run** on this check to try again.",
                truncate(error, 2_000)
            ),
            text: None,
            annotations: Vec::new(),
        }),
    }
}

/// The PATCH for a scan stopped by a shutdown: `cancelled`, and why it will be redone.
pub fn cancelled_patch(trigger: &str) -> CheckRunPatch {
    CheckRunPatch {
        status: Some("completed".to_owned()),
        conclusion: Some("cancelled".to_owned()),
        output: Some(CheckRunOutput {
            title: "Scan interrupted: it will be redone".to_owned(),
            summary: format!(
                "opsbot was stopped (a deploy or a restart) before it finished scanning the \
                 {trigger}. The delivery is sent again (`opsbot app redeliver`, also run \
                 periodically by `opsbot app serve`) and scanned from the start; this run is \
                 replaced by that one. **Re-run** on this check does the same at once."
            ),
            text: None,
            annotations: Vec::new(),
        }),
    }
}

/// The first 7 characters of a commit sha, as GitHub shows them.
fn short_sha(sha: &str) -> &str {
    sha.get(..7).unwrap_or(sha)
}

fn annotation(f: &Finding) -> Annotation {
    let added = f
        .commit
        .as_deref()
        .map(|c| format!(", added in commit {}", short_sha(c)))
        .unwrap_or_default();
    let mut message = format!(
        "{} `{}` (rule `{}`, severity {}, column {}{added}).\n",
        f.description(),
        f.secret,
        f.rule_id(),
        f.severity(),
        f.column
    );
    message.push_str(
        "Fix: revoke and rotate this credential now (it was exposed when it was pushed), \
         then load it from a secret store or an environment variable instead of the code.\n\
         Not a secret? Add `opsbot:allow` in a comment on this line, or an `allowlist` \
         pattern in the `[scan]` table of opsbot.toml.",
    );
    Annotation {
        path: f.path.to_string(),
        start_line: f.line,
        end_line: f.line,
        start_column: None,
        end_column: None,
        annotation_level: "failure".to_owned(),
        message,
        title: Some(format!("Secret: {}", f.description())),
        raw_details: Some(format!("fingerprint {} (for a baseline)", f.fingerprint)),
    }
}

fn summary(outcome: &ScanOutcome, findings: &[&Finding]) -> String {
    let mut s = String::new();
    let lines = plural(outcome.lines_scanned, "added line", "added lines");
    let files = plural(outcome.files_scanned, "file", "files");
    if findings.is_empty() {
        let _ = writeln!(
            s,
            "No secrets in the {lines} of {files} changed by the {}.",
            outcome.trigger
        );
    } else {
        let _ = writeln!(
            s,
            "**{}** in the {lines} of {files} changed by the {}.\n",
            plural(findings.len(), "secret", "secrets"),
            outcome.trigger
        );
        s.push_str("| File | Line | Commit | Rule | Secret |\n|---|---|---|---|---|\n");
        for f in findings.iter().take(SUMMARY_ROWS) {
            let _ = writeln!(
                s,
                "| `{}` | {} | {} | `{}` | `{}` |",
                table_cell(&f.path),
                f.line,
                f.commit.as_deref().map_or("", short_sha),
                f.rule_id(),
                table_cell(&f.secret)
            );
        }
        if findings.len() > SUMMARY_ROWS {
            let _ = writeln!(
                s,
                "\n…and {} more (see the annotations).",
                findings.len() - SUMMARY_ROWS
            );
        }
        if findings.len() > MAX_ANNOTATIONS {
            let _ = writeln!(
                s,
                "\nOnly the first {MAX_ANNOTATIONS} findings are annotated; run \
                 `opsbot scan --git <range>` locally for the full list."
            );
        }
        s.push_str(
            "\n### How to fix\n\
             1. **Revoke and rotate** each credential: it was exposed the moment it was pushed, \
             and removing it from the branch does not remove it from history.\n\
             2. Load it from a secret store or an environment variable instead.\n\
             3. Push the fix; this check runs again.\n\n\
             Not a secret (a test fixture, an example)? Add `opsbot:allow` in a comment on the \
             line, or an `allowlist` regex in the `[scan]` table of `opsbot.toml`.\n",
        );
    }
    if !outcome.notes.is_empty() {
        s.push_str("\n### Notes\n");
        for note in &outcome.notes {
            let _ = writeln!(s, "- {}", note.replace('\n', " "));
        }
    }
    truncate(&s, MAX_SUMMARY)
}

fn plural(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

fn table_cell(text: &str) -> String {
    text.replace('|', "\\|")
        .replace('`', "'")
        .replace('\n', " ")
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}\n\n…(truncated)", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use opsbot_scan::Severity;

    fn finding(path: &str, line: u32) -> Finding {
        let rule = opsbot_scan::finding::RuleLabel {
            id: "aws-access-key-id".into(),
            description: "AWS access key ID".into(),
            severity: Severity::High,
        };
        Finding::new(
            std::sync::Arc::new(rule),
            path.into(),
            (line, 7),
            opsbot_scan::finding::mask(b"AKIAZZZZZZZZZZZZZZZZ"),
            opsbot_scan::finding::fingerprint("aws-access-key-id", path, &line.to_le_bytes()),
        )
    }

    fn outcome(n: u32) -> ScanOutcome {
        ScanOutcome {
            trigger: "push to refs/heads/main".into(),
            files_scanned: 2,
            lines_scanned: 300,
            notes: vec![],
            findings: (1..=n).rev().map(|i| finding("keys.txt", i)).collect(),
        }
    }

    #[test]
    fn no_findings_is_one_successful_patch() {
        let report = CheckReport::from_outcome(&outcome(0));
        assert_eq!(report.conclusion, "success");
        assert_eq!(report.title, "No secrets found");
        assert!(report.batches.is_empty());
        let patches = report.patches();
        assert_eq!(patches.len(), 1);
        assert_eq!(patches[0].conclusion.as_deref(), Some("success"));
        assert!(
            report
                .summary
                .contains("No secrets in the 300 added lines of 2 files")
        );
    }

    #[test]
    fn one_hundred_twenty_findings_make_three_batches_and_the_last_concludes() {
        let report = CheckReport::from_outcome(&outcome(120));
        assert_eq!(report.conclusion, "failure");
        assert_eq!(report.title, "120 secrets found");
        let sizes: Vec<usize> = report.batches.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![50, 50, 20]);
        let patches = report.patches();
        assert_eq!(patches.len(), 3);
        assert!(patches[..2].iter().all(|p| p.conclusion.is_none()));
        assert_eq!(patches[2].conclusion.as_deref(), Some("failure"));
        // Sorted by line, every annotation on its finding's line.
        let first = &report.batches[0][0];
        assert_eq!((first.start_line, first.end_line), (1, 1));
        assert_eq!(report.batches[2][19].start_line, 120);
        assert!(report.summary.contains("…and 70 more"));
    }

    #[test]
    fn annotation_has_rule_masked_secret_and_how_to_fix_or_allow() {
        let report = CheckReport::from_outcome(&outcome(1));
        let a = &report.batches[0][0];
        assert_eq!(a.path, "keys.txt");
        assert_eq!(a.annotation_level, "failure");
        assert!(a.message.contains("`AKIA…`"));
        assert!(a.message.contains("aws-access-key-id"));
        assert!(a.message.contains("rotate"));
        assert!(a.message.contains("opsbot:allow"));
        assert_eq!(report.title, "1 secret found");
        assert!(
            report
                .summary
                .contains("| `keys.txt` | 1 |  | `aws-access-key-id` | `AKIA…` |")
        );
    }

    #[test]
    fn annotations_are_capped_and_the_summary_says_so() {
        let report = CheckReport::from_outcome(&outcome(1_234));
        assert_eq!(
            report.batches.iter().map(Vec::len).sum::<usize>(),
            MAX_ANNOTATIONS
        );
        assert!(
            report
                .batches
                .iter()
                .all(|b| b.len() <= MAX_ANNOTATIONS_PER_REQUEST)
        );
        assert!(
            report
                .summary
                .contains("Only the first 1000 findings are annotated")
        );
    }

    #[test]
    fn notes_and_errors_are_reported() {
        let mut o = outcome(0);
        o.notes.push("big.bin: no patch (binary)".into());
        let report = CheckReport::from_outcome(&o);
        assert!(
            report
                .summary
                .contains("### Notes\n- big.bin: no patch (binary)")
        );
        let p = scan_error_patch("push to refs/heads/main", "compare failed: 502");
        assert_eq!(p.conclusion.as_deref(), Some("failure"));
        assert!(
            p.output
                .is_some_and(|o| o.summary.contains("compare failed: 502"))
        );
    }

    #[test]
    fn long_text_is_truncated_on_a_char_boundary() {
        let t = truncate(&"é".repeat(10), 5);
        assert!(t.starts_with("éé\n"));
    }
}
