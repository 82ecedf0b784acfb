//! Pure rendering: a Health event (and the state recorded on its issue) → issue title, body and
//! labels. The body starts with a hidden marker, `<!-- opsbot:health {…} -->`, holding the
//! [`IssueState`] that later deliveries compare against; the label [`key_label`] finds the
//! issue again without the search API.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::event::{AffectedEntity, DetailType, EventStatus, HealthEvent};
use crate::route::Target;

/// Kind of the hidden marker in issue bodies (`<!-- opsbot:health {…} -->`).
pub const MARKER_KIND: &str = "health";
/// How every issue body starts.
pub const MARKER_PREFIX: &str = "<!-- opsbot:health ";
/// Prefix of the deterministic per-event label.
pub const KEY_LABEL_PREFIX: &str = "health:";
/// Hex digits of the key used in the label (48 bits: collisions are checked against the
/// full key in the marker anyway).
const KEY_LABEL_HEX: usize = 12;
/// Entities listed in the body and recorded in the marker; the rest are counted.
pub const MAX_ENTITIES: usize = 200;
/// GitHub refuses bodies over 65 536 characters; stay well below.
const MAX_DESCRIPTION_CHARS: usize = 20_000;

/// The label that finds every issue of one event: `health:<first 12 hex of the key>`.
pub fn key_label(key: &str) -> String {
    let short: String = key.chars().take(KEY_LABEL_HEX).collect();
    format!("{KEY_LABEL_PREFIX}{short}")
}

/// An issue to open (or the new body of one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IssueDraft {
    pub title: String,
    pub body: String,
    pub labels: Vec<String>,
    pub assignees: Vec<String>,
}

/// One affected entity as recorded in the marker: `[value, status]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntityState(pub String, pub Option<String>);

/// What the marker records about the event version an issue shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssueState {
    /// Full deduplication key (see [`HealthEvent::key`]).
    pub key: String,
    pub arn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// `lastUpdatedTime`, RFC 3339.
    pub v: String,
    pub status: EventStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    /// First 16 hex of the SHA-256 of the description.
    pub desc: String,
    #[serde(default)]
    pub entities: Vec<EntityState>,
    /// Entities beyond [`MAX_ENTITIES`], counted but not recorded.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub more: usize,
    /// Pages of this version already merged, when AWS split the event into pages.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pages: Vec<u32>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// RFC 3339 in UTC (`2025-03-03T09:12:44Z`).
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(&Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// Human form in UTC (`2025-03-03 09:12:44 UTC`).
pub fn human_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Short digest of a description, to notice changes without storing the text twice.
pub fn description_digest(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    hex::encode(&digest[..8])
}

impl IssueState {
    /// The state of an event seen for the first time (or replacing an older version outright).
    pub fn from_event(event: &HealthEvent) -> IssueState {
        let entities: Vec<EntityState> = event
            .entities
            .iter()
            .map(|e| EntityState(e.value.clone(), e.status.clone()))
            .collect();
        let mut state = IssueState {
            key: event.key(),
            arn: event.arn.clone(),
            account: event.affected_account.clone(),
            v: rfc3339(event.last_updated),
            status: event.status.clone(),
            start: event.start_time.map(rfc3339),
            end: event.end_time.map(rfc3339),
            desc: description_digest(&event.description),
            entities,
            more: 0,
            pages: event.page.map(|(p, _)| vec![p]).unwrap_or_default(),
        };
        state.cap();
        state
    }

    /// Keeps at most [`MAX_ENTITIES`] entities, counting the rest in `more`.
    pub fn cap(&mut self) {
        if self.entities.len() > MAX_ENTITIES {
            self.more += self.entities.len() - MAX_ENTITIES;
            self.entities.truncate(MAX_ENTITIES);
        }
    }

    /// Total number of affected entities, recorded or counted.
    pub fn entity_count(&self) -> usize {
        self.entities.len() + self.more
    }

    /// The `lastUpdatedTime` this state records, if it parses.
    pub fn version(&self) -> Option<OffsetDateTime> {
        OffsetDateTime::parse(&self.v, &Rfc3339).ok()
    }

    /// `<!-- opsbot:health {…} -->`, written by opsbot-core's marker module (which escapes
    /// `--` so no value can end the comment early).
    pub fn to_marker(&self) -> String {
        opsbot_core::github::marker::render(MARKER_KIND, self)
    }

    /// Finds and decodes the marker in an issue body.
    pub fn from_body(body: &str) -> Option<IssueState> {
        opsbot_core::github::marker::find(body, MARKER_KIND)
    }
}

/// Turns `AWS_EC2_PERSISTENT_INSTANCE_RETIREMENT_SCHEDULED` into
/// `Persistent instance retirement scheduled`.
pub fn humanize_event_type(service: &str, code: &str) -> String {
    let mut rest = code.strip_prefix("AWS_").unwrap_or(code);
    let service_prefix = format!("{}_", service.to_ascii_uppercase());
    if let Some(stripped) = rest.strip_prefix(service_prefix.as_str()) {
        rest = stripped;
    }
    let words = rest.replace('_', " ").to_ascii_lowercase();
    let mut chars = words.chars();
    match chars.next() {
        Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
        None => code.to_string(),
    }
}

/// The issue title: service, event type, region (and account in the organizational view).
pub fn title(event: &HealthEvent) -> String {
    let kind = match event.detail_type {
        DetailType::Health => "AWS Health",
        DetailType::Abuse => "AWS Health abuse report",
    };
    let mut title = format!(
        "{kind}: {} {} in {}",
        event.service,
        humanize_event_type(&event.service, &event.event_type_code).to_lowercase_first(),
        event.shown_region()
    );
    if let Some(account) = &event.affected_account {
        let _ = write!(title, " (account {account})");
    }
    title
}

trait LowercaseFirst {
    fn to_lowercase_first(&self) -> String;
}

impl LowercaseFirst for String {
    fn to_lowercase_first(&self) -> String {
        let mut chars = self.chars();
        match chars.next() {
            Some(first) => first.to_ascii_lowercase().to_string() + chars.as_str(),
            None => String::new(),
        }
    }
}

/// Link to the event in the AWS Health Dashboard.
pub fn console_link(event: &HealthEvent) -> String {
    let view = if event.is_organizational() {
        "organization"
    } else {
        "account"
    };
    format!(
        "https://health.aws.amazon.com/health/home#/{view}/event-log?eventID={}&eventTab=details",
        event.arn
    )
}

/// Text from AWS shown as Markdown: no HTML, no accidental @-mentions.
pub fn escape_text(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('@', "@\u{200b}")
}

/// A value inside a Markdown table cell.
fn cell(text: &str) -> String {
    escape_text(text)
        .replace('|', "\\|")
        .replace(['\r', '\n'], " ")
}

/// A value in backticks (entity ids, ARNs, tags).
fn code(text: &str) -> String {
    let clean = text.replace(['`', '\r', '\n'], "").replace('|', "\\|");
    format!("`{clean}`")
}

fn truncate_chars(text: &str, max: usize) -> (&str, bool) {
    match text.char_indices().nth(max) {
        Some((at, _)) => (&text[..at], true),
        None => (text, false),
    }
}

/// The issue to open or the body to set for `event`, whose issue records `state`.
pub fn render_issue(event: &HealthEvent, state: &IssueState, target: &Target) -> IssueDraft {
    let mut labels = target.labels.clone();
    labels.push(key_label(&state.key));
    IssueDraft {
        title: title(event),
        body: render_body(event, state),
        labels,
        assignees: target.assignees.clone(),
    }
}

/// The issue body: marker, summary table, description, affected entities, console link.
pub fn render_body(event: &HealthEvent, state: &IssueState) -> String {
    let mut b = String::new();
    let _ = writeln!(b, "{}", state.to_marker());
    let dash = "—".to_string();
    let time_or_dash =
        |t: Option<OffsetDateTime>| t.map(human_time).unwrap_or_else(|| dash.clone());
    let _ = writeln!(
        b,
        "**{}** · {} · status **{}**\n",
        cell(&event.service),
        cell(&event.category),
        event.status
    );
    b.push_str("| | |\n|---|---|\n");
    let mut row = |k: &str, v: String| {
        let _ = writeln!(b, "| {k} | {v} |");
    };
    row("Service", cell(&event.service));
    row("Event type", code(&event.event_type_code));
    row("Category", cell(&event.category));
    row("Status", event.status.to_string());
    row("Region", cell(event.shown_region()));
    row(
        "Account",
        event
            .shown_account()
            .map(cell)
            .unwrap_or_else(|| dash.clone()),
    );
    if let Some(scope) = &event.scope {
        row("Scope", cell(scope));
    }
    row("Start", time_or_dash(event.start_time));
    row("End", time_or_dash(event.end_time));
    row("Last updated", human_time(event.last_updated));
    row("Event ARN", code(&event.arn));
    if event.detail_type == DetailType::Abuse {
        row("Delivered as", cell(event.detail_type.as_str()));
    }
    for (k, v) in &event.metadata {
        row(&format!("Metadata `{}`", cell(k)), cell(v));
    }

    b.push_str("\n### Description\n\n");
    if event.description.trim().is_empty() {
        b.push_str("_AWS gave no description._\n");
    } else {
        let (text, cut) = truncate_chars(event.description.trim(), MAX_DESCRIPTION_CHARS);
        b.push_str(&escape_text(text));
        if cut {
            b.push_str("\n\n_(description truncated; see the AWS Health Dashboard)_");
        }
        b.push('\n');
    }

    let total = state.entity_count();
    let _ = writeln!(b, "\n### Affected entities ({total})\n");
    if total == 0 {
        b.push_str("_None listed: the event is not about specific resources._\n");
    } else {
        let tags: BTreeMap<&str, &AffectedEntity> = event
            .entities
            .iter()
            .map(|e| (e.value.as_str(), e))
            .collect();
        b.push_str("| Entity | Status | Tags |\n|---|---|---|\n");
        for EntityState(value, status) in &state.entities {
            let tag_text = tags
                .get(value.as_str())
                .map(|e| {
                    e.tags
                        .iter()
                        .map(|(k, v)| code(&format!("{k}={v}")))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            let _ = writeln!(
                b,
                "| {} | {} | {} |",
                code(value),
                status.as_deref().map(cell).unwrap_or_else(|| dash.clone()),
                tag_text
            );
        }
        if state.more > 0 {
            let _ = writeln!(
                b,
                "\n_…and {} more; see the AWS Health Dashboard for the full list._",
                state.more
            );
        }
    }

    let _ = writeln!(
        b,
        "\n[Open this event in the AWS Health Dashboard]({})\n",
        console_link(event)
    );
    b.push_str(
        "<sub>Filed by opsbot from AWS Health. opsbot comments when the event changes and \
         rewrites this description; keep the first line.</sub>\n",
    );
    b
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::event::parse_input_bytes;

    fn fixture(name: &str) -> HealthEvent {
        let path = format!(
            "{}/../../tests/fixtures/health/{name}.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let bytes = std::fs::read(&path).unwrap();
        let mut parsed = parse_input_bytes(&bytes);
        assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
        parsed.events.remove(0)
    }

    fn target() -> Target {
        Target {
            repo: "acme/ops".into(),
            labels: vec!["aws-health".into()],
            assignees: vec!["oncall".into()],
            route: None,
        }
    }

    fn draft(name: &str) -> IssueDraft {
        let event = fixture(name);
        render_issue(&event, &IssueState::from_event(&event), &target())
    }

    #[test]
    fn snapshot_ec2_instance_retirement() {
        let d = draft("ec2_instance_retirement");
        assert_eq!(
            d.title,
            "AWS Health: EC2 persistent instance retirement scheduled in eu-west-1"
        );
        insta::assert_snapshot!(d.body);
    }

    #[test]
    fn snapshot_rds_maintenance() {
        insta::assert_snapshot!(draft("rds_maintenance").body);
    }

    #[test]
    fn snapshot_operational_issue() {
        let d = draft("ec2_operational_issue");
        assert_eq!(d.title, "AWS Health: EC2 operational issue in us-east-1");
        insta::assert_snapshot!(d.body);
    }

    #[test]
    fn snapshot_lambda_runtime_deprecation() {
        let d = draft("lambda_runtime_deprecation");
        assert_eq!(
            d.title,
            "AWS Health: LAMBDA runtime deprecation scheduled in eu-central-1"
        );
        insta::assert_snapshot!(d.body);
    }

    #[test]
    fn snapshot_abuse_and_org_titles() {
        let d = draft("abuse_dos_report");
        assert_eq!(
            d.title,
            "AWS Health abuse report: ABUSE dos report in global"
        );
        insta::assert_snapshot!(d.body);
        let d = draft("org_instance_stop");
        assert_eq!(
            d.title,
            "AWS Health: EC2 instance stop scheduled in us-west-2 (account 210987654321)"
        );
        assert!(d.body.contains("#/organization/event-log?eventID="));
    }

    #[test]
    fn marker_round_trips_and_label_is_deterministic() {
        let event = fixture("ec2_instance_retirement");
        let state = IssueState::from_event(&event);
        let d = render_issue(&event, &state, &target());
        assert!(d.body.starts_with(MARKER_PREFIX));
        assert_eq!(IssueState::from_body(&d.body).unwrap(), state);
        assert_eq!(d.labels, ["aws-health", &key_label(&event.key())]);
        assert_eq!(key_label(&event.key()).len(), "health:".len() + 12);
        assert!(IssueState::from_body("no marker here").is_none());
    }

    #[test]
    fn marker_cannot_be_closed_by_values_and_text_is_escaped() {
        let mut event = fixture("rds_maintenance");
        event.arn = "arn:x-->injected".into();
        event.description = "<script>alert(1)</script> ping @admins".into();
        let state = IssueState::from_event(&event);
        let body = render_body(&event, &state);
        let first_line = body.lines().next().unwrap();
        assert!(first_line.ends_with(" -->"));
        assert_eq!(first_line.matches("-->").count(), 1);
        assert_eq!(
            IssueState::from_body(&body).unwrap().arn,
            "arn:x-->injected"
        );
        assert!(body.contains("&lt;script&gt;"));
        assert!(!body.contains("@admins"));
    }

    #[test]
    fn many_entities_are_capped() {
        let mut event = fixture("rds_maintenance");
        event.entities = (0..450)
            .map(|i| AffectedEntity {
                value: format!("db-{i}"),
                status: None,
                tags: BTreeMap::new(),
            })
            .collect();
        let state = IssueState::from_event(&event);
        assert_eq!(state.entities.len(), MAX_ENTITIES);
        assert_eq!(state.more, 250);
        let body = render_body(&event, &state);
        assert!(body.contains("### Affected entities (450)"));
        assert!(body.contains("…and 250 more"));
        assert!(body.len() < 60_000);
    }

    #[test]
    fn humanizes_codes() {
        assert_eq!(
            humanize_event_type("RDS", "AWS_RDS_MAINTENANCE_SCHEDULED"),
            "Maintenance scheduled"
        );
        assert_eq!(humanize_event_type("X", "WEIRD"), "Weird");
    }
}
