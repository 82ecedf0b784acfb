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

use crate::event::{AffectedEntity, DetailType, EventStatus, HealthEvent, OrgIssues, issue_key};
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
/// Entities recorded in the marker; the rest are counted.
pub const MAX_ENTITIES: usize = 200;
/// Characters of entity values the marker records at most (the rest are counted), so the
/// marker leaves room for the text whatever the values look like.
const MAX_MARKER_ENTITY_CHARS: usize = 16_000;
/// GitHub refuses issue, pull-request and comment bodies over this many characters
/// (422 "body is too long (maximum is 65536 characters)").
pub const GITHUB_MAX_BODY_CHARS: usize = 65_536;
/// What opsbot writes at most: GitHub's limit less a margin.
pub const BODY_BUDGET: usize = GITHUB_MAX_BODY_CHARS - 536;
/// Metadata rows shown, and characters of each value.
const MAX_METADATA_ROWS: usize = 50;
const MAX_METADATA_CHARS: usize = 500;
/// Affected accounts listed by number (organizational view grouped per event).
const MAX_ACCOUNTS_LISTED: usize = 100;

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
    /// `totalPages` of a paged event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tp: Option<u32>,
    /// Affected accounts, when the organizational view is grouped per event.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accounts: Vec<String>,
    /// Shown as an organizational event (some delivery named another account).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub org: bool,
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
    /// The state of an event seen for the first time (or replacing an older version
    /// outright), keyed as `grouping` says.
    pub fn from_event(event: &HealthEvent, grouping: OrgIssues) -> IssueState {
        let entities: Vec<EntityState> = event
            .entities
            .iter()
            .map(|e| EntityState(e.value.clone(), e.status.clone()))
            .collect();
        let accounts = match (grouping, event.shown_account()) {
            (OrgIssues::PerEvent, Some(a)) => vec![a.to_string()],
            _ => Vec::new(),
        };
        let mut state = IssueState {
            key: issue_key(event, grouping),
            arn: event.arn.clone(),
            account: event.key_account(grouping).map(str::to_string),
            v: rfc3339(event.last_updated),
            status: event.status.clone(),
            start: event.start_time.map(rfc3339),
            end: event.end_time.map(rfc3339),
            desc: description_digest(&event.description),
            entities,
            more: 0,
            pages: event.page.map(|(p, _)| vec![p]).unwrap_or_default(),
            tp: event.page.map(|(_, total)| total),
            accounts,
            org: event.is_organizational(),
        };
        state.cap();
        state
    }

    /// Keeps at most [`MAX_ENTITIES`] entities (and [`MAX_MARKER_ENTITY_CHARS`] characters
    /// of their values), counting the rest in `more`.
    pub fn cap(&mut self) {
        let mut chars = 0usize;
        let keep = self
            .entities
            .iter()
            .take(MAX_ENTITIES)
            .take_while(|e| {
                chars += e.0.chars().count() + e.1.as_deref().map_or(0, str::len) + 8;
                chars <= MAX_MARKER_ENTITY_CHARS
            })
            .count();
        if self.entities.len() > keep {
            self.more += self.entities.len() - keep;
            self.entities.truncate(keep);
        }
    }

    /// Adds the affected account of `event` (grouped per event), keeping the list sorted.
    pub fn merge_account(&mut self, event: &HealthEvent) {
        if let Some(a) = event.shown_account()
            && !self.accounts.iter().any(|x| x == a)
        {
            self.accounts.push(a.to_string());
            self.accounts.sort();
        }
        self.org |= event.is_organizational();
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
    if event.is_organizational()
        && let Some(account) = &event.affected_account
    {
        let _ = write!(title, " (account {account})");
    }
    title
}

/// The title for the issue recording `state`: one issue per event (organizational view
/// grouped per event) names no single account.
pub fn title_for(event: &HealthEvent, state: &IssueState) -> String {
    if state.accounts.is_empty() || !event.is_organizational() {
        return title(event);
    }
    let mut plain = event.clone();
    plain.affected_account = None;
    let mut t = title(&plain);
    let _ = write!(t, " ({} accounts)", state.accounts.len());
    t
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
    console_link_in(event, event.is_organizational())
}

fn console_link_in(event: &HealthEvent, organizational: bool) -> String {
    let view = if organizational {
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

/// The first `max` characters of `text` (cut at a line break when one is near) and how
/// many characters were left out.
pub fn cut_chars(text: &str, max: usize) -> (&str, usize) {
    let Some((at, _)) = text.char_indices().nth(max) else {
        return (text, 0);
    };
    let head = &text[..at];
    let at = match head.rfind('\n') {
        Some(nl) if head[nl..].chars().count() < 2_000 => nl,
        _ => at,
    };
    (&text[..at], text[at..].chars().count())
}

/// Number of characters (what GitHub counts).
pub fn chars(text: &str) -> usize {
    text.chars().count()
}

/// The issue to open or the body to set for `event`, whose issue records `state`.
pub fn render_issue(event: &HealthEvent, state: &IssueState, target: &Target) -> IssueDraft {
    let mut labels = target.labels.clone();
    labels.push(key_label(&state.key));
    IssueDraft {
        title: title_for(event, state),
        body: render_body(event, state),
        labels,
        assignees: target.assignees.clone(),
    }
}

/// Kind of the marker of a page-log comment (`<!-- opsbot:health-page {…} -->`).
pub const PAGE_LOG_KIND: &str = "health-page";

/// The page-log comment of one delivery (a page, or one account's copy): what it brings,
/// in a marker the issue body is rebuilt from, and a line for people.
pub fn render_page_log(event: &HealthEvent, delivery: &IssueState) -> String {
    let what = match (event.page, delivery.accounts.first()) {
        (Some((p, total)), _) => format!("page {p} of {total}"),
        (None, Some(account)) => format!("the copy for account {}", cell(account)),
        (None, None) => "another copy".to_string(),
    };
    format!(
        "{}\nAWS Health delivered {what} of this event ({} affected entities); the \
         description above now lists them with the others.\n",
        opsbot_core::github::marker::render(PAGE_LOG_KIND, delivery),
        delivery.entity_count()
    )
}

/// The state a page-log comment records.
pub fn page_log_state(body: &str) -> Option<IssueState> {
    opsbot_core::github::marker::find(body, PAGE_LOG_KIND)
}

/// Which pages of a paged event the issue shows: `page 1 of 10`, `pages 1–3, 5 of 10`.
pub fn page_coverage(pages: &[u32], total: u32) -> String {
    let mut ranges: Vec<String> = Vec::new();
    let mut sorted = pages.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        ranges.push(if start == end {
            start.to_string()
        } else {
            format!("{start}–{end}")
        });
        i += 1;
    }
    let word = if sorted.len() == 1 { "page" } else { "pages" };
    format!("{word} {} of {total}", ranges.join(", "))
}

/// The issue body: marker, summary table, description, affected entities, console link.
/// Always within [`BODY_BUDGET`] characters: when the event is too large, the description
/// and the entity table are cut with "…and N more" and the console link.
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
    if let Some(a) = &event.actionability {
        row("Actionability", cell(a));
    }
    if !event.personas.is_empty() {
        row("Personas", cell(&event.personas.join(", ")));
    }
    row("Region", cell(event.shown_region()));
    if state.accounts.is_empty() {
        row(
            "Account",
            event
                .shown_account()
                .map(cell)
                .unwrap_or_else(|| dash.clone()),
        );
    } else {
        let mut list = state
            .accounts
            .iter()
            .take(MAX_ACCOUNTS_LISTED)
            .map(String::as_str)
            .map(cell)
            .collect::<Vec<_>>()
            .join(", ");
        if state.accounts.len() > MAX_ACCOUNTS_LISTED {
            let _ = write!(
                list,
                " …and {} more",
                state.accounts.len() - MAX_ACCOUNTS_LISTED
            );
        }
        row(
            &format!("Affected accounts ({})", state.accounts.len()),
            list,
        );
    }
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
    for (k, v) in event.metadata.iter().take(MAX_METADATA_ROWS) {
        let (v, cut) = cut_chars(v, MAX_METADATA_CHARS);
        let more = if cut > 0 { " …" } else { "" };
        row(
            &format!("Metadata `{}`", cell(k)),
            format!("{}{more}", cell(v)),
        );
    }
    if event.metadata.len() > MAX_METADATA_ROWS {
        row(
            "Metadata",
            format!("…and {} more", event.metadata.len() - MAX_METADATA_ROWS),
        );
    }

    let link = console_link_in(event, state.org || event.is_organizational());
    let mut footer = String::new();
    let _ = writeln!(
        footer,
        "\n[Open this event in the AWS Health Dashboard]({link})\n"
    );
    footer.push_str(
        "<sub>Filed by opsbot from AWS Health. opsbot comments when the event changes and \
         rewrites this description; keep the first line.</sub>\n",
    );

    // What is left for the description and the entity table.
    let total = state.entity_count();
    let heading = format!("\n### Affected entities ({total})\n\n");
    let coverage = match state.tp {
        Some(tp) if tp > 1 => {
            let got = page_coverage(&state.pages, tp);
            if state.pages.len() as u32 >= tp {
                format!("_All {tp} pages of this event received._\n\n")
            } else {
                format!(
                    "_This list is {got}: AWS sends large events in pages, and the list grows \
                     as the other pages arrive._\n\n"
                )
            }
        }
        _ => String::new(),
    };
    const NOTES: usize = 400;
    let fixed = chars(&b) + chars(&footer) + chars(&heading) + chars(&coverage) + NOTES;
    let budget = BODY_BUDGET.saturating_sub(fixed);

    let description = escape_text(event.description.trim());
    let tags: BTreeMap<&str, &AffectedEntity> = event
        .entities
        .iter()
        .map(|e| (e.value.as_str(), e))
        .collect();
    let entity_rows: Vec<String> = state
        .entities
        .iter()
        .map(|EntityState(value, status)| {
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
            format!(
                "| {} | {} | {} |\n",
                code(value),
                status.as_deref().map(cell).unwrap_or_else(|| dash.clone()),
                tag_text
            )
        })
        .collect();
    let rows_chars: usize = entity_rows.iter().map(|r| chars(r)).sum::<usize>() + 40;
    let desc_chars = chars(&description);
    let desc_allowed = if desc_chars + rows_chars <= budget {
        desc_chars
    } else if rows_chars < budget / 2 {
        budget - rows_chars
    } else {
        desc_chars.min(budget / 2)
    };

    b.push_str("\n### Description\n\n");
    if description.is_empty() {
        b.push_str("_AWS gave no description._\n");
    } else {
        let (text, left) = cut_chars(&description, desc_allowed);
        b.push_str(text);
        if left > 0 {
            let _ = write!(
                b,
                "\n\n_…and {left} more characters: the full text is in the AWS Health \
                 Dashboard ([link]({link}))._"
            );
        }
        b.push('\n');
    }

    b.push_str(&heading);
    b.push_str(&coverage);
    if total == 0 {
        b.push_str("_None listed: the event is not about specific resources._\n");
    } else {
        let room = BODY_BUDGET
            .saturating_sub(chars(&b) + chars(&footer) + NOTES)
            .saturating_sub(40);
        let mut used = 0usize;
        let mut listed = 0usize;
        let mut table = String::from("| Entity | Status | Tags |\n|---|---|---|\n");
        for r in &entity_rows {
            let n = chars(r);
            if used + n > room {
                break;
            }
            used += n;
            listed += 1;
            table.push_str(r);
        }
        if listed > 0 {
            b.push_str(&table);
        }
        if total > listed {
            let _ = writeln!(
                b,
                "\n_…and {} more; the full list is in the AWS Health Dashboard \
                 ([link]({link}))._",
                total - listed
            );
        }
    }
    b.push_str(&footer);
    b
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::test_support::{self, fixture};

    fn target() -> Target {
        Target {
            assignees: vec!["oncall".into()],
            ..test_support::target()
        }
    }

    fn draft(name: &str) -> IssueDraft {
        let event = fixture(name);
        render_issue(
            &event,
            &IssueState::from_event(&event, OrgIssues::PerAccount),
            &target(),
        )
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
        let state = IssueState::from_event(&event, OrgIssues::PerAccount);
        let d = render_issue(&event, &state, &target());
        assert!(d.body.starts_with(MARKER_PREFIX));
        assert_eq!(IssueState::from_body(&d.body).unwrap(), state);
        assert_eq!(
            d.labels,
            [
                "aws-health",
                &key_label(&issue_key(&event, OrgIssues::PerAccount))
            ]
        );
        assert_eq!(
            key_label(&issue_key(&event, OrgIssues::PerAccount)).len(),
            "health:".len() + 12
        );
        assert!(IssueState::from_body("no marker here").is_none());
    }

    #[test]
    fn marker_cannot_be_closed_by_values_and_text_is_escaped() {
        let mut event = fixture("rds_maintenance");
        event.arn = "arn:x-->injected".into();
        event.description = "<script>alert(1)</script> ping @admins".into();
        let state = IssueState::from_event(&event, OrgIssues::PerAccount);
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
        let state = IssueState::from_event(&event, OrgIssues::PerAccount);
        assert_eq!(state.entities.len(), MAX_ENTITIES);
        assert_eq!(state.more, 250);
        let body = render_body(&event, &state);
        assert!(body.contains("### Affected entities (450)"));
        assert!(body.contains("…and 250 more"));
        assert!(body.len() < 60_000);
    }

    /// Finding 3: whatever the event, the body fits GitHub's 65,536 characters, and what
    /// was cut says so and links the console.
    #[test]
    fn bodies_always_fit_githubs_limit() {
        let mut event = fixture("rds_maintenance");
        for (entities, desc, value_len) in [
            (250, 70_000, 60),
            (1_000, 0, 120),
            (5, 200_000, 10),
            (3, 10, 5_000),
            (1_000, 70_000, 300),
        ] {
            event.description = "Ünïcödé <b>&</b> @team ".repeat(desc / 23 + 1);
            event.entities = (0..entities)
                .map(|i| AffectedEntity {
                    value: format!("{i:05}-{}", "x".repeat(value_len)),
                    status: Some("IMPAIRED".into()),
                    tags: [("team".to_string(), "a|b".repeat(20))].into(),
                })
                .collect();
            event.metadata = (0..80)
                .map(|i| (format!("k{i}"), "v".repeat(2_000)))
                .collect();
            let state = IssueState::from_event(&event, OrgIssues::PerAccount);
            let body = render_body(&event, &state);
            let n = chars(&body);
            assert!(n <= BODY_BUDGET, "{entities} entities, {desc} chars: {n}");
            assert!(body.starts_with(MARKER_PREFIX));
            assert_eq!(IssueState::from_body(&body).unwrap(), state);
            if entities >= 250 {
                assert!(body.contains("more; the full list is in the AWS Health Dashboard"));
            }
            if desc >= 70_000 {
                assert!(body.contains("more characters: the full text is in the AWS Health"));
            }
            assert!(body.contains("event-log?eventID="));
        }
    }

    #[test]
    fn pages_actionability_personas_and_region_from_arn() {
        let mut event = fixture("rds_maintenance");
        event.page = Some((1, 10));
        event.actionability = Some("ACTION_REQUIRED".into());
        event.personas = vec!["OPERATIONS".into()];
        event.region = None;
        let mut state = IssueState::from_event(&event, OrgIssues::PerAccount);
        let body = render_body(&event, &state);
        assert!(body.contains("This list is page 1 of 10"), "{body}");
        assert!(body.contains("| Actionability | ACTION_REQUIRED |"));
        assert!(body.contains("| Personas | OPERATIONS |"));
        assert!(body.contains("| Region | us-east-1 |"), "{body}");
        state.pages = vec![1, 2, 3, 5];
        assert!(render_body(&event, &state).contains("pages 1–3, 5 of 10"));
        state.pages = (1..=10).collect();
        assert!(render_body(&event, &state).contains("All 10 pages"));
        assert!(!title(&event).contains("global"));
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
