//! Output formats: findings to text, written to any [`io::Write`] one finding at a time (an
//! input with 100,000 findings is never rendered into memory whole). Secrets are already
//! masked in [`Finding`], so no formatter can print one in full. The `render_*` functions
//! return the same bytes as a `String`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;

use serde_json::{Value, json};

use crate::finding::Finding;
use crate::rule::{Rule, Severity};

/// What the SARIF and text formats need to know about a rule.
#[derive(Debug, Clone)]
pub struct RuleInfo {
    pub id: String,
    pub description: String,
    pub severity: Severity,
    pub help_uri: Option<String>,
}

impl From<&Rule> for RuleInfo {
    fn from(r: &Rule) -> Self {
        RuleInfo {
            id: r.id.clone(),
            description: r.description.clone(),
            severity: r.severity,
            help_uri: r.references.first().cloned(),
        }
    }
}

/// Runs `write` on an in-memory buffer and returns what it wrote.
fn to_string(write: impl FnOnce(&mut Vec<u8>) -> io::Result<()>) -> String {
    let mut out = Vec::new();
    // Writing to a Vec cannot fail, and every format writes UTF-8.
    let _ = write(&mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// [`write_text`] into a `String`.
pub fn render_text(findings: &[Finding], color: bool) -> String {
    to_string(|out| write_text(out, findings, color))
}

/// Human output: `path:line:col: severity rule-id: description [masked]`, one per line
/// (`path@offset` for a secret in a binary file).
pub fn write_text<W: io::Write + ?Sized>(
    out: &mut W,
    findings: &[Finding],
    color: bool,
) -> io::Result<()> {
    let (bold, red, yellow, dim, reset) = if color {
        ("\x1b[1m", "\x1b[31m", "\x1b[33m", "\x1b[2m", "\x1b[0m")
    } else {
        ("", "", "", "", "")
    };
    for f in findings {
        let sev_color = match f.severity() {
            Severity::Critical | Severity::High => red,
            Severity::Medium | Severity::Low => yellow,
        };
        let commit = f
            .commit
            .as_deref()
            .map(|c| format!("{dim}{}{reset} ", &c[..c.len().min(12)]))
            .unwrap_or_default();
        let place = match f.offset {
            Some(off) => format!("{}@{off}", f.path),
            None => format!("{}:{}:{}", f.path, f.line, f.column),
        };
        writeln!(
            out,
            "{commit}{bold}{place}{reset}: {sev_color}{}{reset} {bold}{}{reset}: {} [{}]",
            f.severity(),
            f.rule_id(),
            f.description(),
            f.secret,
        )?;
    }
    Ok(())
}

/// [`write_json`] into a `String`.
pub fn render_json(findings: &[Finding]) -> String {
    to_string(|out| write_json(out, findings))
}

/// A JSON array of findings (`rule_id`, `path`, `line`, `column`, masked `secret`,
/// `fingerprint`, `severity`, `description`, `commit`).
pub fn write_json<W: io::Write + ?Sized>(out: &mut W, findings: &[Finding]) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, findings).map_err(io::Error::other)?;
    out.write_all(b"\n")
}

fn sarif_level(sev: Severity) -> &'static str {
    match sev {
        Severity::Critical | Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low => "note",
    }
}

fn security_severity(sev: Severity) -> &'static str {
    match sev {
        Severity::Critical => "9.5",
        Severity::High => "8.0",
        Severity::Medium => "5.5",
        Severity::Low => "3.0",
    }
}

/// Percent-encodes a path into a relative URI reference (absolute paths become `file://`).
pub fn path_to_uri(path: &str) -> String {
    let mut out = String::new();
    if path.starts_with('/') {
        out.push_str("file://");
    }
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// [`write_sarif`] into a `String`.
pub fn render_sarif(findings: &[Finding], rules: &[RuleInfo], tool_version: &str) -> String {
    to_string(|out| write_sarif(out, findings, rules, tool_version))
}

/// SARIF 2.1.0 for GitHub code scanning. `rules` describes the rules (only those with
/// findings are listed).
pub fn write_sarif<W: io::Write + ?Sized>(
    out: &mut W,
    findings: &[Finding],
    rules: &[RuleInfo],
    tool_version: &str,
) -> io::Result<()> {
    let by_id: BTreeMap<&str, &RuleInfo> = rules.iter().map(|r| (r.id.as_str(), r)).collect();
    let mut used: Vec<&str> = findings.iter().map(|f| f.rule_id()).collect();
    used.sort_unstable();
    used.dedup();
    let index: BTreeMap<&str, usize> = used.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    let sarif_rules: Vec<Value> = used
        .iter()
        .map(|id| {
            let (desc, sev, help) = match by_id.get(id) {
                Some(r) => (r.description.clone(), r.severity, r.help_uri.clone()),
                None => ((*id).to_owned(), Severity::High, None),
            };
            let mut rule = json!({
                "id": id,
                "name": id,
                "shortDescription": { "text": desc },
                "fullDescription": { "text": format!("{desc}. Revoke or rotate the credential, then remove it from the code (and its history).") },
                "help": { "text": format!("{desc} found. Rotate the credential; to accept a false positive add `opsbot:allow` on the line or record it in a baseline (opsbot scan --write-baseline).") },
                "defaultConfiguration": { "level": sarif_level(sev) },
                "properties": {
                    "tags": ["security", "secret"],
                    "precision": "high",
                    "security-severity": security_severity(sev),
                },
            });
            if let Some(uri) = help {
                rule["helpUri"] = json!(uri);
            }
            rule
        })
        .collect();
    let result = |f: &Finding| -> Value {
        let mut message = format!("{} ({}) found: {}", f.description(), f.rule_id(), f.secret);
        if let Some(c) = &f.commit {
            let _ = write!(message, " in commit {c}");
        }
        let mut result = json!({
            "ruleId": f.rule_id(),
            "ruleIndex": index.get(f.rule_id()).copied().unwrap_or(0),
            "level": sarif_level(f.severity()),
            "message": { "text": message },
            "locations": [{
                "physicalLocation": {
                    "artifactLocation": { "uri": path_to_uri(&f.path) },
                    "region": { "startLine": f.line.max(1), "startColumn": f.column.max(1) },
                }
            }],
            "partialFingerprints": { "opsbotSecret/v1": f.fingerprint },
        });
        if let Some(off) = f.offset {
            result["locations"][0]["physicalLocation"]["region"] =
                json!({ "byteOffset": off, "byteLength": 1 });
        }
        if let Some(c) = &f.commit {
            result["properties"] = json!({ "commit": c });
        }
        result
    };
    let doc = json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {
                "driver": {
                    "name": "opsbot",
                    "informationUri": "https://github.com/opsbot/opsbot",
                    "version": tool_version,
                    "rules": sarif_rules,
                }
            },
            "columnKind": "unicodeCodePoints",
            "results": RESULTS_PLACEHOLDER,
        }]
    });
    // Each result is built and written in turn, never all of them at once (a tree of JSON
    // values per finding is ~10 KB: a gigabyte on an input with 100,000 findings).
    let doc = WithResults {
        value: &doc,
        findings,
        result: &result,
    };
    serde_json::to_writer_pretty(&mut *out, &doc).map_err(io::Error::other)?;
    out.write_all(b"\n")
}

const RESULTS_PLACEHOLDER: &str = "\u{0}opsbot-sarif-results\u{0}";

/// Serializes a JSON document whose `RESULTS_PLACEHOLDER` string stands for the array of
/// results, producing them one finding at a time.
struct WithResults<'a> {
    value: &'a Value,
    findings: &'a [Finding],
    result: &'a dyn Fn(&Finding) -> Value,
}

impl serde::Serialize for WithResults<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        let child = |value| WithResults {
            value,
            findings: self.findings,
            result: self.result,
        };
        match self.value {
            Value::String(text) if text == RESULTS_PLACEHOLDER => {
                let mut seq = s.serialize_seq(Some(self.findings.len()))?;
                for f in self.findings {
                    seq.serialize_element(&(self.result)(f))?;
                }
                seq.end()
            }
            Value::Object(map) => {
                let mut m = s.serialize_map(Some(map.len()))?;
                for (k, v) in map {
                    m.serialize_entry(k, &child(v))?;
                }
                m.end()
            }
            Value::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for v in items {
                    seq.serialize_element(&child(v))?;
                }
                seq.end()
            }
            other => other.serialize(s),
        }
    }
}

fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// [`write_github`] into a `String`.
pub fn render_github(findings: &[Finding]) -> String {
    to_string(|out| write_github(out, findings))
}

/// GitHub Actions workflow commands (`::error file=…,line=…::…`), one per finding.
pub fn write_github<W: io::Write + ?Sized>(out: &mut W, findings: &[Finding]) -> io::Result<()> {
    for f in findings {
        let level = match f.severity() {
            Severity::Critical | Severity::High => "error",
            Severity::Medium => "warning",
            Severity::Low => "notice",
        };
        let mut message = format!("{} found: {}", f.description(), f.secret);
        if let Some(off) = f.offset {
            let _ = write!(message, " at byte offset {off}");
        }
        if let Some(c) = &f.commit {
            let _ = write!(message, " (commit {c})");
        }
        writeln!(
            out,
            "::{level} file={},line={},col={},title={}::{}",
            escape_property(&f.path),
            f.line.max(1),
            f.column.max(1),
            escape_property(&format!("Secret: {}", f.rule_id())),
            escape_data(&message),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn finding() -> Finding {
        let rule = crate::finding::RuleLabel {
            id: "aws-access-key-id".into(),
            description: "AWS access key ID".into(),
            severity: Severity::High,
        };
        let mut f = Finding::new(
            std::sync::Arc::new(rule),
            "dir with space/a,b:c.py".into(),
            (3, 7),
            crate::finding::mask(b"AKIAZZZZZZZZZZZZZZZZ"),
            crate::finding::Fingerprint::from_hex("0123456789abcdef0123456789abcdef").unwrap(),
        );
        f.commit = Some("a".repeat(40).into());
        f
    }

    /// Records every write: the largest one shows whether output was streamed.
    #[derive(Default)]
    struct Recorder {
        bytes: Vec<u8>,
        largest: usize,
    }

    impl io::Write for Recorder {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.largest = self.largest.max(buf.len());
            self.bytes.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_format_is_written_a_finding_at_a_time() {
        let findings: Vec<Finding> = (1..=2000)
            .map(|line| {
                let mut f = finding();
                f.line = line;
                f
            })
            .collect();
        let info = [RuleInfo {
            id: "aws-access-key-id".into(),
            description: "AWS access key ID".into(),
            severity: Severity::High,
            help_uri: None,
        }];
        type Writer = fn(&mut Recorder, &[Finding], &[RuleInfo]) -> io::Result<()>;
        let formats: [(&str, Writer, String); 4] = [
            (
                "text",
                |w, f, _| write_text(w, f, false),
                render_text(&findings, false),
            ),
            ("json", |w, f, _| write_json(w, f), render_json(&findings)),
            (
                "sarif",
                |w, f, r| write_sarif(w, f, r, "1"),
                render_sarif(&findings, &info, "1"),
            ),
            (
                "github",
                |w, f, _| write_github(w, f),
                render_github(&findings),
            ),
        ];
        for (name, write, rendered) in formats {
            let mut out = Recorder::default();
            write(&mut out, &findings, &info).unwrap();
            assert_eq!(
                out.bytes,
                rendered.as_bytes(),
                "{name}: same bytes as render_*"
            );
            assert!(rendered.len() > 100_000, "{name}: {} bytes", rendered.len());
            assert!(
                out.largest < 4096,
                "{name}: one write of {} bytes",
                out.largest
            );
        }
    }

    #[test]
    fn github_commands_escape_properties() {
        let out = render_github(&[finding()]);
        assert!(out.starts_with("::error file=dir with space/a%2Cb%3Ac.py,line=3,col=7,title=Secret%3A aws-access-key-id::"));
        assert_eq!(out.lines().count(), 1);
    }

    #[test]
    fn sarif_lists_used_rules_and_encodes_uris() {
        let info = RuleInfo {
            id: "aws-access-key-id".into(),
            description: "AWS access key ID".into(),
            severity: Severity::High,
            help_uri: Some("https://docs.aws.amazon.com/".into()),
        };
        let s = render_sarif(&[finding()], &[info], "0.1.0");
        let v: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(
            v["runs"][0]["tool"]["driver"]["rules"][0]["id"],
            "aws-access-key-id"
        );
        assert_eq!(
            v["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
            "dir%20with%20space/a%2Cb%3Ac.py"
        );
        assert_eq!(path_to_uri("/tmp/x y"), "file:///tmp/x%20y");
    }

    #[test]
    fn text_is_plain_without_color() {
        let out = render_text(&[finding()], false);
        assert!(out.contains(
            "dir with space/a,b:c.py:3:7: high aws-access-key-id: AWS access key ID [AKIA…]"
        ));
        assert!(!out.contains('\x1b'));
        assert!(render_text(&[finding()], true).contains('\x1b'));
    }
}
