//! Rules as data: the TOML format of `rules/*.toml`, its validation, and [`RuleSet`].
//!
//! A rule file holds `[[rules]]` entries and, optionally, a file-wide `allowlist` and a
//! `[global]` table whose `allowlist` applies to every rule of every file (placeholders such
//! as `xxxx`, `${VAR}` or `<YOUR_KEY>`). Regexes are only *parsed* here (cheap); they are
//! compiled lazily by the engine, the first time one of the rule's keywords is seen.

use std::collections::HashMap;
use std::sync::Arc;

use crate::lazy_regex::one_line;
pub use crate::lazy_regex::{LazyRegex, count_captures_in_text};
pub use crate::spec::{Example, GlobalSpec, RuleFile, RuleSpec, Severity};

/// What is wrong with a rules file or one of its rules.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    #[error("{file}: invalid TOML: {message}")]
    Toml { file: String, message: String },
    #[error("{file}: rule `{rule}`: {problem}")]
    Rule {
        file: String,
        rule: String,
        problem: String,
    },
    #[error("{file}: {problem}")]
    File { file: String, problem: String },
}

impl RuleError {
    fn rule(file: &str, rule: &str, problem: impl Into<String>) -> Self {
        RuleError::Rule {
            file: file.to_owned(),
            rule: rule.to_owned(),
            problem: problem.into(),
        }
    }
}

/// A validated rule, ready for the engine.
#[derive(Debug)]
pub struct Rule {
    pub id: String,
    pub description: String,
    pub severity: Severity,
    pub keywords: Vec<String>,
    pub secret_group: usize,
    pub entropy: Option<f64>,
    pub multiline: bool,
    pub references: Vec<String>,
    /// The file the rule came from (for messages).
    pub file: String,
    pub regex: LazyRegex,
    /// Rule allowlist plus the file-wide allowlist.
    pub allowlist: Vec<LazyRegex>,
    pub match_allowlist: Vec<LazyRegex>,
    pub require: Vec<LazyRegex>,
    pub generic: bool,
    /// Rules this one is reported instead of, on an overlapping secret (ids; see
    /// [`RuleSpec::refines`]).
    pub refines: Vec<String>,
    pub examples: Vec<Example>,
    pub negative_examples: Vec<String>,
}

/// All loaded rules plus the global allowlist. Cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    pub(crate) rules: Vec<Arc<Rule>>,
    pub(crate) global_allowlist: Vec<Arc<LazyRegex>>,
    pub(crate) global_match_allowlist: Vec<Arc<LazyRegex>>,
    /// Where each rule id came from, to report duplicates.
    origin: HashMap<String, String>,
}

/// Rules embedded in the binary from the repository's `rules/` directory, parsed by
/// `build.rs` at compile time (no TOML is parsed at run time for them).
mod embedded {
    use super::{StaticExample, StaticFile, StaticRule};
    use crate::spec::Severity;
    include!(concat!(env!("OUT_DIR"), "/embedded_rules.rs"));
}

/// One embedded rules file, as `build.rs` writes it: a [`RuleFile`] of static strings.
struct StaticFile {
    name: &'static str,
    has_global: bool,
    global_allowlist: &'static [&'static str],
    global_match_allowlist: &'static [&'static str],
    allowlist: &'static [&'static str],
    rules: &'static [StaticRule],
}

/// A [`RuleSpec`] of static strings.
struct StaticRule {
    id: &'static str,
    description: &'static str,
    regex: &'static str,
    secret_group: Option<usize>,
    keywords: &'static [&'static str],
    entropy: Option<f64>,
    allowlist: &'static [&'static str],
    match_allowlist: &'static [&'static str],
    require: &'static [&'static str],
    generic: bool,
    refines: &'static [&'static str],
    severity: Severity,
    multiline: bool,
    references: &'static [&'static str],
    examples: &'static [StaticExample],
    negative_examples: &'static [&'static str],
}

struct StaticExample {
    text: &'static str,
    secret: Option<&'static str>,
}

fn owned(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

impl StaticFile {
    fn to_rule_file(&self) -> RuleFile {
        RuleFile {
            global: self.has_global.then(|| GlobalSpec {
                allowlist: owned(self.global_allowlist),
                match_allowlist: owned(self.global_match_allowlist),
            }),
            allowlist: owned(self.allowlist),
            rules: self.rules.iter().map(StaticRule::to_spec).collect(),
        }
    }
}

impl StaticRule {
    fn to_spec(&self) -> RuleSpec {
        RuleSpec {
            id: self.id.to_owned(),
            description: self.description.to_owned(),
            regex: self.regex.to_owned(),
            secret_group: self.secret_group,
            keywords: owned(self.keywords),
            entropy: self.entropy,
            allowlist: owned(self.allowlist),
            match_allowlist: owned(self.match_allowlist),
            require: owned(self.require),
            generic: self.generic,
            refines: owned(self.refines),
            severity: self.severity,
            multiline: self.multiline,
            references: owned(self.references),
            examples: self
                .examples
                .iter()
                .map(|e| match e.secret {
                    None => Example::Text(e.text.to_owned()),
                    Some(secret) => Example::WithSecret {
                        text: e.text.to_owned(),
                        secret: secret.to_owned(),
                    },
                })
                .collect(),
            negative_examples: owned(self.negative_examples),
        }
    }
}

/// The rule files compiled into this crate (from `rules/*.toml`): each file's name and its
/// contents as parsed at build time.
pub fn embedded_rule_files() -> impl Iterator<Item = (&'static str, RuleFile)> {
    embedded::EMBEDDED
        .iter()
        .map(|f| (f.name, f.to_rule_file()))
}

impl RuleSet {
    /// An empty rule set.
    pub fn new() -> Self {
        Self::default()
    }

    /// The built-in rules (from `rules/*.toml`, parsed at compile time).
    pub fn builtin() -> Result<Self, RuleError> {
        let mut set = RuleSet::new();
        for (name, parsed) in embedded_rule_files() {
            set.add_rules(&format!("rules/{name}"), parsed, false, true)?;
        }
        Ok(set)
    }

    /// Parses and adds one rules file. `check_examples` compiles the file's regexes now and
    /// runs each rule's examples (used for user rules, so a broken rule is reported at once).
    pub fn add_file(
        &mut self,
        file: &str,
        text: &str,
        check_examples: bool,
    ) -> Result<(), RuleError> {
        let parsed: RuleFile = toml::from_str(text).map_err(|e| RuleError::Toml {
            file: file.to_owned(),
            message: one_line(&e.to_string()),
        })?;
        self.add_parsed(file, parsed, check_examples)
    }

    /// Adds rules that were already parsed (for example from the `[scan]` table of opsbot.toml).
    pub fn add_parsed(
        &mut self,
        file: &str,
        parsed: RuleFile,
        check_examples: bool,
    ) -> Result<(), RuleError> {
        self.add_rules(file, parsed, check_examples, false)
    }

    /// `trusted`: the embedded rules, whose regexes the crate's tests parse and compile, so
    /// loading them skips the syntax check (most of the start-up time otherwise).
    fn add_rules(
        &mut self,
        file: &str,
        parsed: RuleFile,
        check_examples: bool,
        trusted: bool,
    ) -> Result<(), RuleError> {
        let parse = |src: &str| -> Result<(LazyRegex, usize), String> {
            if trusted {
                Ok((LazyRegex::trusted(src), count_captures_in_text(src)))
            } else {
                LazyRegex::parse(src)
            }
        };
        if let Some(global) = &parsed.global {
            for (i, src) in global.allowlist.iter().enumerate() {
                let (re, _) = parse(src).map_err(|p| RuleError::File {
                    file: file.to_owned(),
                    problem: format!("global allowlist entry {}: {p}", i + 1),
                })?;
                self.global_allowlist.push(Arc::new(re));
            }
            for (i, src) in global.match_allowlist.iter().enumerate() {
                let (re, _) = parse(src).map_err(|p| RuleError::File {
                    file: file.to_owned(),
                    problem: format!("global match_allowlist entry {}: {p}", i + 1),
                })?;
                self.global_match_allowlist.push(Arc::new(re));
            }
        }
        let first_new = self.rules.len();
        for spec in parsed.rules {
            let rule = match validate(file, &parsed.allowlist, spec, &parse) {
                Ok(rule) => rule,
                Err(err) => {
                    self.truncate(first_new);
                    return Err(err);
                }
            };
            if let Some(prev) = self.origin.get(&rule.id) {
                let err = RuleError::rule(
                    file,
                    &rule.id,
                    format!("duplicate rule id (already defined in {prev})"),
                );
                self.truncate(first_new);
                return Err(err);
            }
            self.origin.insert(rule.id.clone(), file.to_owned());
            self.rules.push(Arc::new(rule));
        }
        if check_examples {
            for i in first_new..self.rules.len() {
                let id = self.rules[i].id.clone();
                if let Err(problem) = self.check_examples(&id) {
                    self.truncate(first_new);
                    return Err(RuleError::rule(file, &id, problem));
                }
            }
        }
        Ok(())
    }

    fn truncate(&mut self, len: usize) {
        for r in self.rules.drain(len..) {
            self.origin.remove(&r.id);
        }
    }

    /// Compiles rule `id` and runs its examples through a one-rule scanner: every positive
    /// example must produce a finding (with the expected secret, if given) and no negative
    /// example may. Returns what is wrong.
    pub fn check_examples(&self, id: &str) -> Result<(), String> {
        let rule = self.get(id).ok_or_else(|| format!("no rule `{id}`"))?;
        rule.regex.force()?;
        for a in rule
            .allowlist
            .iter()
            .chain(&rule.match_allowlist)
            .chain(&rule.require)
        {
            a.force()
                .map_err(|e| format!("regex `{}`: {e}", a.source()))?;
        }
        let single =
            crate::engine::Scanner::for_rule(self, id).ok_or_else(|| format!("no rule `{id}`"))?;
        for (i, ex) in rule.examples.iter().enumerate() {
            let secrets = single.raw_secrets(ex.text().as_bytes());
            if secrets.is_empty() {
                return Err(format!("positive example {} does not match", i + 1));
            }
            if let Some(want) = ex.expected_secret()
                && !secrets.iter().any(|s| s.as_slice() == want.as_bytes())
            {
                let got: Vec<String> = secrets
                    .iter()
                    .map(|s| format!("{} ({} bytes)", crate::finding::mask(s), s.len()))
                    .collect();
                return Err(format!(
                    "positive example {} captured {} instead of the expected secret {} ({} bytes)",
                    i + 1,
                    got.join(", "),
                    crate::finding::mask(want.as_bytes()),
                    want.len()
                ));
            }
        }
        for (i, ex) in rule.negative_examples.iter().enumerate() {
            if !single.raw_secrets(ex.as_bytes()).is_empty() {
                return Err(format!("negative example {} matches but must not", i + 1));
            }
        }
        Ok(())
    }

    /// Adds a global allowlist regex (applies to the secret of every rule).
    pub fn add_global_allowlist(&mut self, origin: &str, regex: &str) -> Result<(), RuleError> {
        let (re, _) = LazyRegex::parse(regex).map_err(|p| RuleError::File {
            file: origin.to_owned(),
            problem: format!("allowlist `{regex}`: {p}"),
        })?;
        self.global_allowlist.push(Arc::new(re));
        Ok(())
    }

    /// Removes rules by id; returns the ids that did not exist.
    pub fn disable<S: AsRef<str>>(&mut self, ids: &[S]) -> Vec<String> {
        let mut unknown = Vec::new();
        for id in ids {
            let id = id.as_ref();
            if !self.rules.iter().any(|r| r.id == id) {
                unknown.push(id.to_owned());
            }
        }
        self.rules
            .retain(|r| !ids.iter().any(|id| id.as_ref() == r.id));
        for id in ids {
            self.origin.remove(id.as_ref());
        }
        unknown
    }

    pub fn rules(&self) -> impl Iterator<Item = &Rule> {
        self.rules.iter().map(|r| r.as_ref())
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn get(&self, id: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.id == id).map(|r| r.as_ref())
    }
}

/// Parses a regex of a rule file: the regex and its number of capture groups, or the problem.
type ParseRegex<'a> = dyn Fn(&str) -> Result<(LazyRegex, usize), String> + 'a;

fn validate(
    file: &str,
    file_allowlist: &[String],
    spec: RuleSpec,
    parse: &ParseRegex<'_>,
) -> Result<Rule, RuleError> {
    let id = spec.id.trim().to_owned();
    if id.is_empty() {
        return Err(RuleError::File {
            file: file.to_owned(),
            problem: "a rule has an empty `id`".to_owned(),
        });
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(RuleError::rule(
            file,
            &id,
            "id must use only lowercase letters, digits and `-`",
        ));
    }
    if spec.description.trim().is_empty() {
        return Err(RuleError::rule(file, &id, "`description` is empty"));
    }
    if spec.refines.iter().any(|r| r.trim() == id) {
        return Err(RuleError::rule(
            file,
            &id,
            "`refines` names the rule itself",
        ));
    }
    let (regex, groups) = parse(&spec.regex).map_err(|p| RuleError::rule(file, &id, p))?;
    let secret_group = spec.secret_group.unwrap_or(if groups >= 1 { 1 } else { 0 });
    if secret_group > groups {
        return Err(RuleError::rule(
            file,
            &id,
            format!(
                "secret_group {secret_group} does not exist (the regex has {groups} capture groups)"
            ),
        ));
    }
    if spec.keywords.is_empty() {
        return Err(RuleError::rule(
            file,
            &id,
            "`keywords` is empty: at least one literal keyword is needed for the prefilter",
        ));
    }
    let mut keywords = Vec::new();
    for kw in &spec.keywords {
        if kw.len() < 2 {
            return Err(RuleError::rule(
                file,
                &id,
                format!("keyword {kw:?} is too short (at least 2 bytes)"),
            ));
        }
        if !kw.is_ascii() {
            return Err(RuleError::rule(
                file,
                &id,
                format!(
                    "keyword {kw:?} is not ASCII (keywords are matched ASCII case-insensitively)"
                ),
            ));
        }
        keywords.push(kw.to_ascii_lowercase());
    }
    if let Some(e) = spec.entropy
        && !(0.0..=8.0).contains(&e)
    {
        return Err(RuleError::rule(
            file,
            &id,
            format!("entropy {e} is out of range 0..=8"),
        ));
    }
    let mut allowlist = Vec::new();
    for src in spec.allowlist.iter().chain(file_allowlist) {
        let (re, _) = parse(src)
            .map_err(|p| RuleError::rule(file, &id, format!("allowlist `{src}`: {p}")))?;
        allowlist.push(re);
    }
    let mut match_allowlist = Vec::new();
    for src in &spec.match_allowlist {
        let (re, _) = parse(src)
            .map_err(|p| RuleError::rule(file, &id, format!("match_allowlist `{src}`: {p}")))?;
        match_allowlist.push(re);
    }
    let mut require = Vec::new();
    for src in &spec.require {
        let (re, _) =
            parse(src).map_err(|p| RuleError::rule(file, &id, format!("require `{src}`: {p}")))?;
        require.push(re);
    }
    if spec.examples.is_empty() {
        return Err(RuleError::rule(
            file,
            &id,
            "no `examples`: every rule needs at least one positive example",
        ));
    }
    if spec.negative_examples.is_empty() {
        return Err(RuleError::rule(
            file,
            &id,
            "no `negative_examples`: every rule needs at least one negative example",
        ));
    }
    for (i, ex) in spec.examples.iter().enumerate() {
        let lower = ex.text().to_ascii_lowercase();
        if !keywords.iter().any(|k| lower.contains(k.as_str())) {
            return Err(RuleError::rule(
                file,
                &id,
                format!(
                    "example {} contains none of the keywords {:?}, so the prefilter would never run the regex",
                    i + 1,
                    keywords
                ),
            ));
        }
    }
    Ok(Rule {
        id,
        description: spec.description.trim().to_owned(),
        severity: spec.severity,
        keywords,
        secret_group,
        entropy: spec.entropy,
        multiline: spec.multiline,
        references: spec.references,
        file: file.to_owned(),
        regex,
        allowlist,
        match_allowlist,
        require,
        generic: spec.generic,
        refines: spec.refines,
        examples: spec.examples,
        negative_examples: spec.negative_examples,
    })
}
