//! Routing and filtering: the `[health]` table of `opsbot.toml` decides, per account, service,
//! event type, category and region, which repository an event is filed in, with which labels
//! and assignees — or that it is ignored.
//!
//! ```toml
//! [health]
//! repo = "acme/ops"                 # default target; GITHUB_REPOSITORY when absent
//! labels = ["aws-health"]           # on every issue (this is the default)
//! assignees = []
//! notify_new_issues = false         # SNS notice for each new issue (needs OPSBOT_SNS_TOPIC_ARN)
//! organization_issues = "per_account"  # or "per_event": one issue listing affected accounts
//! remind_days_before = 3            # reconcile reminds open scheduled changes (0: never)
//!
//! [[health.ignore]]                 # any matching entry drops the event
//! event_types = ["AWS_*_OPERATIONAL_NOTIFICATION"]
//!
//! [[health.routes]]                 # first matching route wins
//! services = ["RDS"]
//! accounts = ["123456789012"]
//! repo = "acme/databases"
//! labels = ["team:db"]
//! assignees = ["dba-oncall"]
//! ```
//!
//! Matchers: `accounts`, `services`, `event_types`, `categories`, `regions`,
//! `actionability` (`ACTION_REQUIRED`…) and `personas` (`OPERATIONS`, `SECURITY`…; any of
//! the event's personas may match).
//!
//! Every matcher field is a list of patterns (`*` matches any run of characters, comparison
//! ignores case); an empty or absent list matches everything; all given fields must match.

use serde::Deserialize;

use crate::event::{HealthEvent, OrgIssues};

/// The `[health]` table of `opsbot.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// Default target repository (`owner/name`); `GITHUB_REPOSITORY` when absent.
    #[serde(default)]
    pub repo: Option<String>,
    /// Labels put on every issue.
    #[serde(default = "default_labels")]
    pub labels: Vec<String>,
    /// Assignees of every issue.
    #[serde(default)]
    pub assignees: Vec<String>,
    /// Publish a short SNS notice for each new issue (when `OPSBOT_SNS_TOPIC_ARN` is set).
    #[serde(default)]
    pub notify_new_issues: bool,
    /// Organizational view: one issue per (event, account), or one per event listing the
    /// affected accounts. Also decides the key ([`crate::event::issue_key`]).
    #[serde(default)]
    pub organization_issues: OrgIssues,
    /// `opsbot health reconcile` comments once on an open scheduled-change issue this many
    /// days before its `startTime` (0: no reminders).
    #[serde(default = "default_remind_days")]
    pub remind_days_before: u32,
    #[serde(default)]
    pub routes: Vec<Route>,
    #[serde(default)]
    pub ignore: Vec<Matcher>,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            repo: None,
            labels: default_labels(),
            assignees: Vec::new(),
            notify_new_issues: false,
            organization_issues: OrgIssues::default(),
            remind_days_before: default_remind_days(),
            routes: Vec::new(),
            ignore: Vec::new(),
        }
    }
}

fn default_remind_days() -> u32 {
    3
}

fn default_labels() -> Vec<String> {
    vec!["aws-health".to_string()]
}

/// Which events a route or an ignore entry applies to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Matcher {
    #[serde(default)]
    pub accounts: Vec<String>,
    #[serde(default)]
    pub services: Vec<String>,
    #[serde(default)]
    pub event_types: Vec<String>,
    #[serde(default)]
    pub categories: Vec<String>,
    #[serde(default)]
    pub regions: Vec<String>,
    #[serde(default)]
    pub actionability: Vec<String>,
    #[serde(default)]
    pub personas: Vec<String>,
}

/// A routing rule: a matcher and where matching events go.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    #[serde(default)]
    pub accounts: Vec<String>,
    #[serde(default)]
    pub services: Vec<String>,
    #[serde(default)]
    pub event_types: Vec<String>,
    #[serde(default)]
    pub categories: Vec<String>,
    #[serde(default)]
    pub regions: Vec<String>,
    #[serde(default)]
    pub actionability: Vec<String>,
    #[serde(default)]
    pub personas: Vec<String>,
    /// Target repository; the default target when absent.
    #[serde(default)]
    pub repo: Option<String>,
    /// Added to the global labels.
    #[serde(default)]
    pub labels: Vec<String>,
    /// Added to the global assignees.
    #[serde(default)]
    pub assignees: Vec<String>,
}

impl Route {
    fn matcher(&self) -> Matcher {
        Matcher {
            accounts: self.accounts.clone(),
            services: self.services.clone(),
            event_types: self.event_types.clone(),
            categories: self.categories.clone(),
            regions: self.regions.clone(),
            actionability: self.actionability.clone(),
            personas: self.personas.clone(),
        }
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Toml {
        path: String,
        #[source]
        source: Box<toml::de::Error>,
    },
    #[error(transparent)]
    File(#[from] opsbot_core::config::ConfigError),
    #[error("{path}: {field}: `{value}` is not a repository (expected owner/name)")]
    BadRepo {
        path: String,
        field: String,
        value: String,
    },
}

#[derive(Deserialize)]
struct ConfigFile {
    #[serde(default)]
    health: Option<HealthConfig>,
}

impl HealthConfig {
    /// Reads the `[health]` table from the text of an `opsbot.toml` (other tables are left to
    /// the other jobs). `path` only names the file in errors.
    pub fn from_toml(text: &str, path: &str) -> Result<HealthConfig, ConfigError> {
        let file: ConfigFile = toml::from_str(text).map_err(|source| ConfigError::Toml {
            path: path.to_string(),
            source: Box::new(source),
        })?;
        let config = file.health.unwrap_or_default();
        config.validate(path)?;
        Ok(config)
    }

    /// Loads the `[health]` table the way every opsbot binary does (opsbot-core's loader:
    /// `path`, else `./opsbot.toml` when present, plus `OPSBOT__HEALTH__…` overrides).
    pub fn load(path: Option<&std::path::Path>) -> Result<HealthConfig, ConfigError> {
        use opsbot_core::config::Config;
        let found = Config::discover(path);
        let config = Config::load(found.as_deref())?;
        let health: HealthConfig = config.section("health")?;
        health.validate(config.origin())?;
        Ok(health)
    }

    /// Checks what serde cannot: repository names.
    pub fn validate(&self, path: &str) -> Result<(), ConfigError> {
        let check = |field: String, value: &Option<String>| match value {
            Some(repo) if !is_repo(repo) => Err(ConfigError::BadRepo {
                path: path.to_string(),
                field,
                value: repo.clone(),
            }),
            _ => Ok(()),
        };
        check("health.repo".into(), &self.repo)?;
        for (i, route) in self.routes.iter().enumerate() {
            check(format!("health.routes[{i}].repo"), &route.repo)?;
        }
        Ok(())
    }

    /// Decides what to do with an event. `default_repo` is `GITHUB_REPOSITORY`, used when
    /// neither the matching route nor `health.repo` names a repository.
    pub fn route(&self, event: &HealthEvent, default_repo: Option<&str>) -> RouteDecision {
        if let Some(i) = self.ignore.iter().position(|m| m.matches(event)) {
            return RouteDecision::Ignore {
                reason: format!("matches health.ignore[{i}]"),
            };
        }
        let route = self
            .routes
            .iter()
            .enumerate()
            .find(|(_, r)| r.matcher().matches(event));
        let repo = route
            .and_then(|(_, r)| r.repo.clone())
            .or_else(|| self.repo.clone())
            .or_else(|| default_repo.map(str::to_string));
        let Some(repo) = repo else {
            return RouteDecision::NoTarget;
        };
        let mut labels = self.labels.clone();
        let mut assignees = self.assignees.clone();
        if let Some((_, r)) = route {
            labels.extend(r.labels.iter().cloned());
            assignees.extend(r.assignees.iter().cloned());
        }
        dedup(&mut labels);
        dedup(&mut assignees);
        RouteDecision::File(Target {
            repo,
            labels,
            assignees,
            route: route.map(|(i, _)| i),
            grouping: self.organization_issues,
        })
    }
}

fn dedup(items: &mut Vec<String>) {
    let mut seen = std::collections::HashSet::new();
    items.retain(|item| !item.is_empty() && seen.insert(item.to_ascii_lowercase()));
}

/// `owner/name` with no spaces or extra slashes.
pub fn is_repo(text: &str) -> bool {
    let mut parts = text.split('/');
    let ok = |p: Option<&str>| {
        p.is_some_and(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        })
    };
    ok(parts.next()) && ok(parts.next()) && parts.next().is_none()
}

/// Where and how an event is filed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Target {
    pub repo: String,
    pub labels: Vec<String>,
    pub assignees: Vec<String>,
    /// Index of the matching `[[health.routes]]` entry, if any.
    pub route: Option<usize>,
    /// How the organizational view is grouped (`health.organization_issues`).
    pub grouping: OrgIssues,
}

impl Target {
    /// The key of `event` filed here ([`crate::event::issue_key`]).
    pub fn key(&self, event: &HealthEvent) -> String {
        crate::event::issue_key(event, self.grouping)
    }
}

/// The routing outcome for one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteDecision {
    File(Target),
    Ignore {
        reason: String,
    },
    /// No route, no `health.repo` and no `GITHUB_REPOSITORY`.
    NoTarget,
}

impl Matcher {
    /// True when every given field matches the event.
    pub fn matches(&self, event: &HealthEvent) -> bool {
        let any = |patterns: &[String], value: Option<&str>| {
            patterns.is_empty() || value.is_some_and(|v| patterns.iter().any(|p| glob_match(p, v)))
        };
        any(&self.accounts, event.shown_account())
            && any(&self.services, Some(&event.service))
            && any(&self.event_types, Some(&event.event_type_code))
            && any(&self.categories, Some(&event.category))
            && any(&self.regions, Some(event.shown_region()))
            && any(&self.actionability, event.actionability.as_deref())
            && (self.personas.is_empty()
                || event
                    .personas
                    .iter()
                    .any(|p| self.personas.iter().any(|pat| glob_match(pat, p))))
    }
}

/// Case-insensitive match where `*` stands for any run of characters.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let pattern = pattern.to_ascii_lowercase();
    let text = text.to_ascii_lowercase();
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, rest) = (parts[0], &parts[1..]);
    let Some(mut remaining) = text.strip_prefix(first) else {
        return false;
    };
    let last = rest.last().copied().unwrap_or("");
    for part in &rest[..rest.len() - 1] {
        match remaining.find(part) {
            Some(at) => remaining = &remaining[at + part.len()..],
            None => return false,
        }
    }
    remaining.len() >= last.len() && remaining.ends_with(last)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::event::parse_input_bytes;

    fn rds() -> HealthEvent {
        let bytes = include_bytes!("../../../tests/fixtures/health/rds_maintenance.json");
        parse_input_bytes(bytes).events.remove(0)
    }

    fn org() -> HealthEvent {
        let bytes = include_bytes!("../../../tests/fixtures/health/org_instance_stop.json");
        parse_input_bytes(bytes).events.remove(0)
    }

    const CONFIG: &str = r#"
[scan]
whatever = true

[health]
repo = "acme/ops"
assignees = ["oncall"]

[[health.ignore]]
event_types = ["AWS_*_OPERATIONAL_NOTIFICATION"]

[[health.ignore]]
accounts = ["000000000000"]
services = ["rds"]

[[health.routes]]
services = ["RDS"]
categories = ["scheduledChange"]
repo = "acme/databases"
labels = ["team:db", "aws-health"]
assignees = ["dba"]

[[health.routes]]
accounts = ["2109*"]
labels = ["org"]
"#;

    #[test]
    fn first_matching_route_wins_and_labels_accumulate() {
        let config = HealthConfig::from_toml(CONFIG, "opsbot.toml").unwrap();
        let RouteDecision::File(target) = config.route(&rds(), Some("x/y")) else {
            panic!("expected a target")
        };
        assert_eq!(target.repo, "acme/databases");
        assert_eq!(target.labels, ["aws-health", "team:db"]);
        assert_eq!(target.assignees, ["oncall", "dba"]);
        assert_eq!(target.route, Some(0));

        let RouteDecision::File(target) = config.route(&org(), None) else {
            panic!("expected a target")
        };
        assert_eq!(target.repo, "acme/ops");
        assert_eq!(target.labels, ["aws-health", "org"]);
        assert_eq!(target.route, Some(1));
    }

    #[test]
    fn ignore_lists_and_default_repo() {
        let config = HealthConfig::from_toml(CONFIG, "opsbot.toml").unwrap();
        let mut event = rds();
        event.account = Some("000000000000".into());
        assert_eq!(
            config.route(&event, None),
            RouteDecision::Ignore {
                reason: "matches health.ignore[1]".into()
            }
        );
        let empty = HealthConfig::default();
        assert_eq!(empty.route(&rds(), None), RouteDecision::NoTarget);
        let RouteDecision::File(target) = empty.route(&rds(), Some("me/repo")) else {
            panic!()
        };
        assert_eq!(target.repo, "me/repo");
        assert_eq!(target.labels, ["aws-health"]);
    }

    #[test]
    fn config_errors_name_the_file_and_field() {
        let err = HealthConfig::from_toml("[health]\nrepos = 1\n", "cfg/opsbot.toml").unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("cfg/opsbot.toml: "), "{text}");
        assert!(text.contains("repos"), "{text}");
        let err =
            HealthConfig::from_toml("[[health.routes]]\nrepo = \"nope\"\n", "o.toml").unwrap_err();
        assert_eq!(
            err.to_string(),
            "o.toml: health.routes[0].repo: `nope` is not a repository (expected owner/name)"
        );
        assert_eq!(
            HealthConfig::from_toml("", "x").unwrap(),
            HealthConfig::default()
        );
    }

    #[test]
    fn routes_match_actionability_and_personas() {
        let config = HealthConfig::from_toml(
            "[health]\nrepo = \"acme/ops\"\n\n[[health.routes]]\nactionability = [\"ACTION_REQUIRED\"]\npersonas = [\"security\"]\nrepo = \"acme/sec\"\n",
            "opsbot.toml",
        )
        .unwrap();
        let mut event = rds();
        let repo = |e: &HealthEvent| match config.route(e, None) {
            RouteDecision::File(t) => t.repo,
            other => panic!("{other:?}"),
        };
        assert_eq!(repo(&event), "acme/ops");
        event.actionability = Some("ACTION_REQUIRED".into());
        event.personas = vec!["OPERATIONS".into()];
        assert_eq!(repo(&event), "acme/ops", "persona must match too");
        event.personas.push("SECURITY".into());
        assert_eq!(repo(&event), "acme/sec");
    }

    #[test]
    fn globs() {
        assert!(glob_match(
            "AWS_*_SCHEDULED",
            "aws_rds_maintenance_scheduled"
        ));
        assert!(glob_match("*", ""));
        assert!(glob_match("a*b*c", "abc"));
        assert!(!glob_match("a*b*c", "acb"));
        assert!(!glob_match("ab*ba", "aba"));
        assert!(glob_match("EC2", "ec2"));
        assert!(!glob_match("EC2", "ec2x"));
    }
}
