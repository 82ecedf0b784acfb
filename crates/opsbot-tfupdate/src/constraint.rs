//! Terraform versions and version constraints, and the rule that decides how a constraint
//! string is rewritten when a new version is released. Pure: no I/O.
//!
//! The rewrite keeps the author's style:
//! - an exact pin (`"1.5.7"`, `"= 1.5.7"`) becomes the new exact version;
//! - a pessimistic constraint keeps its number of parts (`"~> 1.5"` → `"~> 1.9"`,
//!   `"~> 1.5.0"` → `"~> 1.9.8"`);
//! - any other constraint that already admits the new version is left alone;
//! - anything else is replaced by the new exact version ([`Style::Replaced`]).

use std::cmp::Ordering;
use std::fmt;

/// A Terraform-style version: `1.5`, `v1.2.3`, `1.9.0-beta1`.
///
/// Missing parts count as zero for comparisons, but the number of parts written is kept.
#[derive(Debug, Clone)]
pub struct TfVersion {
    /// Normalised text (no leading `v`).
    text: String,
    /// How many numeric parts were written (1 to 3).
    parts: usize,
    semver: semver::Version,
}

/// A version string that is not a Terraform version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid version `{text}`: {reason}")]
pub struct VersionError {
    pub text: String,
    pub reason: String,
}

impl TfVersion {
    /// Parses `1`, `1.5`, `1.5.7`, `v1.5.7`, `1.9.0-beta1`, `1.0.0+build`.
    pub fn parse(input: &str) -> Result<TfVersion, VersionError> {
        let err = |reason: &str| VersionError {
            text: input.to_string(),
            reason: reason.to_string(),
        };
        let trimmed = input.trim();
        let text = trimmed.strip_prefix('v').unwrap_or(trimmed);
        if text.is_empty() {
            return Err(err("empty"));
        }
        let core_end = text.find(['-', '+']).unwrap_or(text.len());
        let (core, rest) = text.split_at(core_end);
        let numbers: Vec<&str> = core.split('.').collect();
        if numbers.len() > 3 {
            return Err(err("more than three numeric parts"));
        }
        let mut nums = [0u64; 3];
        for (slot, part) in nums.iter_mut().zip(&numbers) {
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err("parts must be numbers"));
            }
            *slot = part.parse().map_err(|_| err("number too large"))?;
        }
        let (pre, build) = match rest.split_once('+') {
            Some((pre, build)) => (pre, build),
            None => (rest, ""),
        };
        let pre = match pre.strip_prefix('-') {
            Some("") => return Err(err("empty pre-release")),
            Some(pre) => pre,
            None => pre,
        };
        if rest.ends_with('+') {
            return Err(err("empty build metadata"));
        }
        let mut semver = semver::Version::new(nums[0], nums[1], nums[2]);
        if !pre.is_empty() {
            semver.pre = semver::Prerelease::new(pre).map_err(|e| err(&e.to_string()))?;
        }
        if !build.is_empty() {
            semver.build = semver::BuildMetadata::new(build).map_err(|e| err(&e.to_string()))?;
        }
        Ok(TfVersion {
            text: text.to_string(),
            parts: numbers.len(),
            semver,
        })
    }

    /// The version as semver (missing parts are zero).
    pub fn semver(&self) -> &semver::Version {
        &self.semver
    }

    /// How many numeric parts the version was written with.
    pub fn parts(&self) -> usize {
        self.parts
    }

    /// `true` for `1.9.0-beta1` and the like.
    pub fn is_prerelease(&self) -> bool {
        !self.semver.pre.is_empty()
    }

    /// The first `n` numeric parts (`1.9.8` truncated to 2 is `1.9`); with `n >= 3` the
    /// full version including any pre-release suffix.
    pub fn truncated(&self, n: usize) -> String {
        let v = &self.semver;
        match n {
            0 | 1 => v.major.to_string(),
            2 => format!("{}.{}", v.major, v.minor),
            _ => {
                if self.parts >= 3 || !self.semver.pre.is_empty() {
                    format!("{}.{}.{}{}", v.major, v.minor, v.patch, pre_suffix(v))
                } else {
                    format!("{}.{}.{}", v.major, v.minor, v.patch)
                }
            }
        }
    }

    /// Compares by precedence (build metadata ignored), like Terraform.
    pub fn cmp_precedence(&self, other: &TfVersion) -> Ordering {
        cmp_precedence(&self.semver, &other.semver)
    }

    /// The normalised text, as written without a leading `v`.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

fn pre_suffix(v: &semver::Version) -> String {
    if v.pre.is_empty() {
        String::new()
    } else {
        format!("-{}", v.pre)
    }
}

fn cmp_precedence(a: &semver::Version, b: &semver::Version) -> Ordering {
    (a.major, a.minor, a.patch)
        .cmp(&(b.major, b.minor, b.patch))
        .then_with(|| a.pre.cmp(&b.pre))
}

impl PartialEq for TfVersion {
    fn eq(&self, other: &Self) -> bool {
        self.cmp_precedence(other) == Ordering::Equal
    }
}

impl Eq for TfVersion {}

impl PartialOrd for TfVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for TfVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        self.cmp_precedence(other)
    }
}

impl fmt::Display for TfVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::str::FromStr for TfVersion {
    type Err = VersionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TfVersion::parse(s)
    }
}

/// A constraint operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `=` or no operator.
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    /// `~>`
    Pessimistic,
}

/// One comma-separated part of a constraint: `>= 1.3`.
#[derive(Debug, Clone)]
pub struct Clause {
    pub op: Op,
    pub version: TfVersion,
    /// Byte range of the version text inside the constraint string.
    pub version_range: std::ops::Range<usize>,
}

/// A parsed constraint string: `">= 1.3, < 2.0"`.
#[derive(Debug, Clone)]
pub struct Constraint {
    pub clauses: Vec<Clause>,
}

/// A constraint string that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid version constraint `{text}`: {reason}")]
pub struct ConstraintError {
    pub text: String,
    pub reason: String,
}

impl Constraint {
    /// Parses a Terraform version constraint string.
    pub fn parse(text: &str) -> Result<Constraint, ConstraintError> {
        let mut clauses = Vec::new();
        let mut offset = 0;
        for piece in text.split(',') {
            let start = offset;
            offset += piece.len() + 1;
            let lead = piece.len() - piece.trim_start().len();
            let trimmed = piece.trim();
            if trimmed.is_empty() {
                return Err(ConstraintError {
                    text: text.to_string(),
                    reason: "empty clause".to_string(),
                });
            }
            let (op, op_len) = [
                ("~>", Op::Pessimistic),
                (">=", Op::Ge),
                ("<=", Op::Le),
                ("!=", Op::Ne),
                (">", Op::Gt),
                ("<", Op::Lt),
                ("=", Op::Eq),
            ]
            .iter()
            .find(|(prefix, _)| trimmed.starts_with(prefix))
            .map_or((Op::Eq, 0), |(prefix, op)| (*op, prefix.len()));
            let after_op = &trimmed[op_len..];
            let ws = after_op.len() - after_op.trim_start().len();
            let vtext = after_op.trim();
            let version = TfVersion::parse(vtext).map_err(|e| ConstraintError {
                text: text.to_string(),
                reason: e.reason.clone(),
            })?;
            let vstart = start + lead + op_len + ws;
            clauses.push(Clause {
                op,
                version,
                version_range: vstart..vstart + vtext.len(),
            });
        }
        Ok(Constraint { clauses })
    }

    /// Whether `version` satisfies every clause (Terraform semantics: a pre-release only
    /// matches a constraint that names a pre-release of the same version core).
    pub fn admits(&self, version: &TfVersion) -> bool {
        if version.is_prerelease() {
            let v = version.semver();
            let named = self.clauses.iter().any(|c| {
                let cv = c.version.semver();
                c.version.is_prerelease()
                    && (cv.major, cv.minor, cv.patch) == (v.major, v.minor, v.patch)
            });
            if !named {
                return false;
            }
        }
        self.clauses.iter().all(|c| c.admits(version))
    }

    /// The single exact version this constraint pins, if it is an exact pin.
    pub fn exact(&self) -> Option<&TfVersion> {
        match self.clauses.as_slice() {
            [clause] if clause.op == Op::Eq => Some(&clause.version),
            _ => None,
        }
    }
}

impl Clause {
    fn admits(&self, version: &TfVersion) -> bool {
        let ord = version.cmp_precedence(&self.version);
        match self.op {
            Op::Eq => ord == Ordering::Equal,
            Op::Ne => ord != Ordering::Equal,
            Op::Gt => ord == Ordering::Greater,
            Op::Ge => ord != Ordering::Less,
            Op::Lt => ord == Ordering::Less,
            Op::Le => ord != Ordering::Greater,
            Op::Pessimistic => {
                if ord == Ordering::Less {
                    return false;
                }
                let c = self.version.semver();
                let v = version.semver();
                if self.version.parts() >= 3 {
                    (v.major, v.minor) == (c.major, c.minor)
                } else {
                    v.major == c.major
                }
            }
        }
    }
}

/// How a changed constraint was rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Style {
    /// An exact pin moved to the new version.
    Exact,
    /// A `~>` constraint moved, keeping its number of parts.
    Pessimistic,
    /// A constraint that did not admit the new version, replaced by the exact version.
    Replaced,
    /// The constraint given with `-v` (`"~> 1.0"`), written as given.
    Set,
}

impl fmt::Display for Style {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Style::Exact => "exact",
            Style::Pessimistic => "pessimistic",
            Style::Replaced => "replaced",
            Style::Set => "set",
        })
    }
}

/// Why a constraint was left alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kept {
    /// It already names the new version.
    Current,
    /// It is a range that already admits the new version.
    Admits,
}

/// The decision for one constraint string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Keep(Kept),
    Rewrite { to: String, style: Style },
}

/// Decides how `constraint` changes for the release `new`.
///
/// A constraint that does not parse is replaced by the exact version (and reported as
/// such by the caller), like a constraint that does not admit the new version.
pub fn decide(constraint: &str, new: &TfVersion) -> Decision {
    let replaced = || Decision::Rewrite {
        to: new.as_str().to_string(),
        style: Style::Replaced,
    };
    let Ok(parsed) = Constraint::parse(constraint) else {
        return replaced();
    };
    if let [clause] = parsed.clauses.as_slice() {
        match clause.op {
            Op::Eq => {
                if clause.version == *new {
                    return Decision::Keep(Kept::Current);
                }
                return Decision::Rewrite {
                    to: splice(constraint, &clause.version_range, new.as_str()),
                    style: Style::Exact,
                };
            }
            Op::Pessimistic if !new.is_prerelease() => {
                let parts = clause.version.parts();
                let text = new.truncated(parts);
                let current = &constraint[clause.version_range.clone()];
                if current == text {
                    return Decision::Keep(Kept::Current);
                }
                return Decision::Rewrite {
                    to: splice(constraint, &clause.version_range, &text),
                    style: Style::Pessimistic,
                };
            }
            _ => {}
        }
    }
    if parsed.admits(new) {
        Decision::Keep(Kept::Admits)
    } else {
        replaced()
    }
}

fn splice(text: &str, range: &std::ops::Range<usize>, with: &str) -> String {
    let mut out = String::with_capacity(text.len() + with.len());
    out.push_str(&text[..range.start]);
    out.push_str(with);
    out.push_str(&text[range.end..]);
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn v(s: &str) -> TfVersion {
        TfVersion::parse(s).unwrap()
    }

    fn rewrite(c: &str, new: &str) -> Decision {
        decide(c, &v(new))
    }

    fn to(s: &str, style: Style) -> Decision {
        Decision::Rewrite {
            to: s.to_string(),
            style,
        }
    }

    #[test]
    fn parses_terraform_versions() {
        assert_eq!(v("1.5").semver(), &semver::Version::new(1, 5, 0));
        assert_eq!(v("1.5").parts(), 2);
        assert_eq!(v("v1.2.3").as_str(), "1.2.3");
        assert!(v("1.9.0-beta1").is_prerelease());
        assert_eq!(v("1.9.0-beta1").truncated(3), "1.9.0-beta1");
        assert_eq!(v("1.9.8").truncated(2), "1.9");
        assert_eq!(v("1.9.8").truncated(1), "1");
        assert!(v("1.10.0") > v("1.9.8"));
        assert!(v("1.9.0-beta1") < v("1.9.0"));
        assert_eq!(v("1.5"), v("1.5.0"));
        for bad in ["", "v", "1.x", "1..2", "1.2.3.4", "latest", "1.2.3-"] {
            assert!(TfVersion::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn exact_pins_move_to_the_new_version() {
        assert_eq!(rewrite("1.5.7", "1.9.8"), to("1.9.8", Style::Exact));
        assert_eq!(rewrite("= 1.5.7", "1.9.8"), to("= 1.9.8", Style::Exact));
        assert_eq!(rewrite("=1.5.7", "1.9.8"), to("=1.9.8", Style::Exact));
        assert_eq!(rewrite("1.9.8", "1.9.8"), Decision::Keep(Kept::Current));
        // an explicit -v may go down as well
        assert_eq!(rewrite("1.9.8", "1.5.7"), to("1.5.7", Style::Exact));
        assert_eq!(
            rewrite("1.9.0", "1.10.0-rc1"),
            to("1.10.0-rc1", Style::Exact)
        );
    }

    #[test]
    fn pessimistic_constraints_keep_their_number_of_parts() {
        assert_eq!(rewrite("~> 1.5", "1.9.8"), to("~> 1.9", Style::Pessimistic));
        assert_eq!(
            rewrite("~> 1.5.0", "1.9.8"),
            to("~> 1.9.8", Style::Pessimistic)
        );
        assert_eq!(rewrite("~> 4", "5.70.0"), to("~> 5", Style::Pessimistic));
        assert_eq!(rewrite("~>4.0", "5.70.0"), to("~>5.70", Style::Pessimistic));
        assert_eq!(rewrite("~> 1.9", "1.9.8"), Decision::Keep(Kept::Current));
        assert_eq!(rewrite("~> 1.9.8", "1.9.8"), Decision::Keep(Kept::Current));
    }

    #[test]
    fn ranges_that_admit_the_new_version_are_kept() {
        assert_eq!(rewrite(">= 1.3", "1.9.8"), Decision::Keep(Kept::Admits));
        assert_eq!(
            rewrite(">= 1.3, < 2.0", "1.9.8"),
            Decision::Keep(Kept::Admits)
        );
        assert_eq!(rewrite("!= 1.4.0", "1.9.8"), Decision::Keep(Kept::Admits));
        assert_eq!(
            rewrite(">= 4.0, ~> 4.2", "4.9.0"),
            Decision::Keep(Kept::Admits)
        );
    }

    #[test]
    fn anything_else_is_replaced_by_the_exact_version() {
        assert_eq!(
            rewrite(">= 1.3, < 1.6", "1.9.8"),
            to("1.9.8", Style::Replaced)
        );
        assert_eq!(rewrite("< 1.0", "1.9.8"), to("1.9.8", Style::Replaced));
        assert_eq!(rewrite("latest", "1.9.8"), to("1.9.8", Style::Replaced));
        assert_eq!(rewrite("", "1.9.8"), to("1.9.8", Style::Replaced));
        // a range never admits a pre-release it does not name
        assert_eq!(
            rewrite(">= 1.3", "2.0.0-beta1"),
            to("2.0.0-beta1", Style::Replaced)
        );
        assert_eq!(
            rewrite("~> 1.5", "2.0.0-beta1"),
            to("2.0.0-beta1", Style::Replaced)
        );
    }

    #[test]
    fn admits_follows_terraform_semantics() {
        let c = Constraint::parse("~> 1.5.0").unwrap();
        assert!(c.admits(&v("1.5.9")));
        assert!(!c.admits(&v("1.6.0")));
        let c = Constraint::parse("~> 1.5").unwrap();
        assert!(c.admits(&v("1.99.0")));
        assert!(!c.admits(&v("2.0.0")));
        assert!(!c.admits(&v("1.4.0")));
        let c = Constraint::parse("> 1.0, <= 2.0, != 1.5.0").unwrap();
        assert!(c.admits(&v("2.0")));
        assert!(!c.admits(&v("1.5.0")));
        assert!(!c.admits(&v("1.0.0")));
        assert!(
            Constraint::parse("= 1.9.0-beta1")
                .unwrap()
                .admits(&v("1.9.0-beta1"))
        );
        assert!(Constraint::parse("1.2.3").unwrap().exact().is_some());
        assert!(Constraint::parse(">= 1.2.3").unwrap().exact().is_none());
        assert!(Constraint::parse("1.2,").is_err());
    }
}
