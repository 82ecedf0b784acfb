//! The AWS Health event model and the input parser.
//!
//! AWS Health reaches EventBridge as `source: aws.health` with `detail-type: AWS Health Event`
//! (or `AWS Health Abuse Event`). The Lambda receives that envelope straight from an EventBridge
//! rule, wrapped in SNS records (EventBridge → SNS → Lambda), wrapped in SQS records (a DLQ
//! redrive), or as a JSON array of any of these. [`parse_input`] unwraps all of them into
//! [`HealthEvent`]s and reports every input it cannot use with the location of the problem
//! (`Records[0].Sns.Message: detail.eventArn: missing field`), never dropping one silently.
//! Replays are unwrapped too: a Lambda destination invocation record (`requestPayload`), an
//! SQS record whose body is that record, and an SNS notification inside an SQS body
//! (EventBridge → SNS → SQS without raw delivery).
//!
//! # The one key (every path uses it)
//!
//! [`issue_key`] is THE deduplication key of an event, for every path that files one:
//! EventBridge in a member account, EventBridge in the management account (organizational
//! view), `opsbot health reconcile` in either view, and replays. It is
//! `sha256(eventArn | account)` where `account` is the affected account — the receiving
//! account (envelope `account`) when the event names none — or empty when the
//! configuration groups the organizational view per event ([`OrgIssues::PerEvent`]).
//! Whoever builds a [`HealthEvent`] (the reconcile adapter too) must therefore fill
//! `account` with the receiving account and `affected_account` with the member account
//! the event is about, and never compute a key of their own:
//!
//! - account view (EventBridge, `DescribeEvents`): `account` = this account (STS
//!   `GetCallerIdentity` or `--account` when the API names none), `affected_account` =
//!   what the event says, or `None`;
//! - organization APIs (`DescribeEventsForOrganization`, …): `account` = `None` (or the
//!   management account), `affected_account` = the member account. An event is shown as
//!   an organizational one exactly when [`HealthEvent::is_organizational`] holds: it names
//!   an affected account other than the receiving one.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::{Rfc2822, Rfc3339};

/// The EventBridge `source` of every AWS Health event.
pub const SOURCE: &str = "aws.health";
/// `detail-type` of ordinary Health events.
pub const DETAIL_TYPE_HEALTH: &str = "AWS Health Event";
/// `detail-type` of abuse reports.
pub const DETAIL_TYPE_ABUSE: &str = "AWS Health Abuse Event";

/// How deep wrappers (arrays in SNS messages in arrays…) may nest before the input is refused.
const MAX_NESTING: usize = 4;

/// Which EventBridge detail type carried the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DetailType {
    Health,
    Abuse,
}

impl DetailType {
    pub fn as_str(self) -> &'static str {
        match self {
            DetailType::Health => DETAIL_TYPE_HEALTH,
            DetailType::Abuse => DETAIL_TYPE_ABUSE,
        }
    }
}

/// `statusCode` of an event.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventStatus {
    Open,
    Upcoming,
    Closed,
}

impl EventStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            EventStatus::Open => "open",
            EventStatus::Upcoming => "upcoming",
            EventStatus::Closed => "closed",
        }
    }

    /// Parses the AWS spelling (`open`, `closed`, `upcoming`; any case).
    pub fn parse(text: &str) -> Option<EventStatus> {
        match text.to_ascii_lowercase().as_str() {
            "open" => Some(EventStatus::Open),
            "upcoming" => Some(EventStatus::Upcoming),
            "closed" => Some(EventStatus::Closed),
            _ => None,
        }
    }

    pub fn is_closed(&self) -> bool {
        matches!(self, EventStatus::Closed)
    }
}

impl fmt::Display for EventStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How issues of the organizational view are grouped (`health.organization_issues`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrgIssues {
    /// One issue per (event, affected account): the default.
    #[default]
    PerAccount,
    /// One issue per event, listing every affected account.
    PerEvent,
}

/// THE deduplication key of `event` (see the module docs): hex SHA-256 of
/// `eventArn|account`, `account` being the affected (else receiving) account, or empty when
/// the organizational view is grouped per event. One key ↔ one GitHub issue.
pub fn issue_key(event: &HealthEvent, grouping: OrgIssues) -> String {
    event_key(&event.arn, event.key_account(grouping))
}

/// One resource the event affects (an instance id, a DB identifier, an ARN…).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AffectedEntity {
    pub value: String,
    /// `IMPAIRED`, `UNIMPAIRED`, `UNKNOWN`, `PENDING`, `RESOLVED`… when AWS reports one.
    pub status: Option<String>,
    pub tags: BTreeMap<String, String>,
}

/// One AWS Health event, normalised from whichever wrapper delivered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthEvent {
    pub detail_type: DetailType,
    /// The EventBridge envelope `id` (differs between redeliveries of one version; logged only).
    pub delivery_id: Option<String>,
    /// The account that received the event (the envelope `account`).
    pub account: Option<String>,
    pub arn: String,
    pub service: String,
    pub event_type_code: String,
    /// `issue`, `scheduledChange`, `accountNotification`, `investigation`.
    pub category: String,
    /// `PUBLIC`, `ACCOUNT_SPECIFIC`, `NONE`.
    pub scope: Option<String>,
    pub communication_id: Option<String>,
    pub start_time: Option<OffsetDateTime>,
    pub end_time: Option<OffsetDateTime>,
    pub last_updated: OffsetDateTime,
    pub status: EventStatus,
    pub region: Option<String>,
    /// The `en_US` description (or the first one when there is no English text).
    pub description: String,
    pub entities: Vec<AffectedEntity>,
    /// Set in the organizational view: the member account the event is about.
    pub affected_account: Option<String>,
    pub metadata: BTreeMap<String, String>,
    /// `(page, totalPages)` when AWS split a large event over several deliveries.
    pub page: Option<(u32, u32)>,
    /// `ACTION_REQUIRED`, `ACTION_MAY_BE_REQUIRED`, `INFORMATIONAL`… when AWS says.
    pub actionability: Option<String>,
    /// Who the event is for (`OPERATIONS`, `SECURITY`, `BILLING`…).
    pub personas: Vec<String>,
}

impl HealthEvent {
    /// The account the key is about: the affected account, else the receiving one
    /// (`None` when the organizational view is grouped per event).
    pub fn key_account(&self, grouping: OrgIssues) -> Option<&str> {
        match grouping {
            OrgIssues::PerAccount => self.shown_account(),
            OrgIssues::PerEvent => None,
        }
    }

    /// The account shown on the issue: the affected account, else the receiving account.
    pub fn shown_account(&self) -> Option<&str> {
        self.affected_account.as_deref().or(self.account.as_deref())
    }

    /// The region the event is about: `eventRegion`, else the region the event ARN names
    /// (`arn:aws:health:REGION::event/…`), else `global`.
    pub fn shown_region(&self) -> &str {
        self.region
            .as_deref()
            .or_else(|| arn_region(&self.arn))
            .unwrap_or("global")
    }

    /// True when the event is about another account than the one that received it: it came
    /// from the organization APIs or the management account's EventBridge. AWS's own
    /// account-view events name `affectedAccount` equal to the envelope `account`.
    pub fn is_organizational(&self) -> bool {
        match (&self.affected_account, &self.account) {
            (Some(affected), Some(receiving)) => affected != receiving,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }
}

/// `arn:PARTITION:health:REGION:…` → `REGION` (`None` when empty or `global`).
pub fn arn_region(arn: &str) -> Option<&str> {
    let mut parts = arn.split(':');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("arn"), Some(_), Some(_), Some(region))
            if !region.is_empty() && !region.eq_ignore_ascii_case("global") =>
        {
            Some(region)
        }
        _ => None,
    }
}

/// The hash behind [`issue_key`]: an event ARN and an account (or none).
fn event_key(arn: &str, affected_account: Option<&str>) -> String {
    let mut hasher = Sha256::new();
    hasher.update(arn.as_bytes());
    hasher.update(b"|");
    hasher.update(affected_account.unwrap_or("").as_bytes());
    hex::encode(hasher.finalize())
}

/// An input (or part of one) that is not a usable AWS Health event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{location}: {reason}")]
pub struct InputError {
    /// Where in the input: `$`, `$[2]`, `$.Records[0].Sns.Message`, `$.detail.eventArn`…
    pub location: String,
    pub reason: String,
}

/// Everything found in one invocation payload.
#[derive(Debug, Default)]
pub struct ParsedInput {
    pub events: Vec<HealthEvent>,
    pub errors: Vec<InputError>,
}

/// Parses a Lambda payload (direct EventBridge event, SNS/SQS records, or an array of those).
pub fn parse_input(value: &Value) -> ParsedInput {
    let mut out = ParsedInput::default();
    walk(value, "$", 0, &mut out);
    out
}

/// Parses raw bytes (a file, a request body) as a Lambda payload.
pub fn parse_input_bytes(bytes: &[u8]) -> ParsedInput {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(value) => parse_input(&value),
        Err(err) => ParsedInput {
            events: Vec::new(),
            errors: vec![InputError {
                location: "$".into(),
                reason: format!("not valid JSON: {err}"),
            }],
        },
    }
}

fn walk(value: &Value, location: &str, depth: usize, out: &mut ParsedInput) {
    let fail = |out: &mut ParsedInput, reason: String| {
        out.errors.push(InputError {
            location: location.to_string(),
            reason,
        })
    };
    if depth > MAX_NESTING {
        return fail(out, format!("wrappers nested more than {MAX_NESTING} deep"));
    }
    match value {
        Value::Array(items) => {
            if items.is_empty() {
                fail(out, "empty batch".into());
            }
            for (i, item) in items.iter().enumerate() {
                walk(item, &format!("{location}[{i}]"), depth + 1, out);
            }
        }
        Value::Object(map) if map.contains_key("Records") => {
            let Some(records) = map.get("Records").and_then(Value::as_array) else {
                return fail(out, "`Records` is not an array".into());
            };
            if records.is_empty() {
                fail(out, "`Records` is empty".into());
            }
            for (i, record) in records.iter().enumerate() {
                let here = format!("{location}.Records[{i}]");
                let (inner, inner_loc) =
                    if let Some(message) = record.get("Sns").and_then(|sns| sns.get("Message")) {
                        (message, format!("{here}.Sns.Message"))
                    } else if let Some(body) = record.get("body") {
                        (body, format!("{here}.body"))
                    } else {
                        out.errors.push(InputError {
                            location: here,
                            reason: "neither an SNS record (Sns.Message) nor an SQS record (body)"
                                .into(),
                        });
                        continue;
                    };
                match inner {
                    Value::String(text) => match serde_json::from_str::<Value>(text) {
                        Ok(parsed) => walk(&parsed, &inner_loc, depth + 1, out),
                        Err(err) => out.errors.push(InputError {
                            location: inner_loc,
                            reason: format!("not valid JSON: {err}"),
                        }),
                    },
                    other => walk(other, &inner_loc, depth + 1, out),
                }
            }
        }
        // A Lambda destination invocation record (on-failure destination, or that record
        // read back from SQS): the original payload is `requestPayload`.
        Value::Object(map)
            if map.contains_key("requestPayload")
                && (map.contains_key("requestContext") || map.contains_key("responsePayload")) =>
        {
            let inner_loc = format!("{location}.requestPayload");
            match map.get("requestPayload") {
                Some(Value::String(text)) => match serde_json::from_str::<Value>(text) {
                    Ok(parsed) => walk(&parsed, &inner_loc, depth + 1, out),
                    Err(err) => out.errors.push(InputError {
                        location: inner_loc,
                        reason: format!("not valid JSON: {err}"),
                    }),
                },
                Some(inner) => walk(inner, &inner_loc, depth + 1, out),
                None => {}
            }
        }
        // An SNS notification as SNS hands it to SQS or HTTP (raw delivery off).
        Value::Object(map)
            if map.get("Type").and_then(Value::as_str) == Some("Notification")
                && map.contains_key("Message") =>
        {
            let inner_loc = format!("{location}.Message");
            match map.get("Message") {
                Some(Value::String(text)) => match serde_json::from_str::<Value>(text) {
                    Ok(parsed) => walk(&parsed, &inner_loc, depth + 1, out),
                    Err(err) => out.errors.push(InputError {
                        location: inner_loc,
                        reason: format!("not valid JSON: {err}"),
                    }),
                },
                Some(inner) => walk(inner, &inner_loc, depth + 1, out),
                None => {}
            }
        }
        Value::Object(map) if map.contains_key("detail-type") || map.contains_key("source") => {
            match parse_eventbridge(value, location) {
                Ok(event) => out.events.push(event),
                Err(err) => out.errors.push(err),
            }
        }
        Value::Object(map) if map.contains_key("DetailType") || map.contains_key("Source") => fail(
            out,
            "not a delivered AWS Health event: this is a PutEvents request entry \
                 (DetailType, Source, Detail); EventBridge delivers events as `detail-type`, \
                 `source` and `detail`"
                .into(),
        ),
        Value::Object(map) if map.contains_key("eventArn") && map.contains_key("service") => fail(
            out,
            "not an AWS Health event: this is the `detail` of one without its EventBridge \
             envelope (source, detail-type, account)"
                .into(),
        ),
        Value::Object(_) => fail(
            out,
            "not an AWS Health event: expected an EventBridge event (source, detail-type, \
             detail), SNS or SQS records, a Lambda destination record (requestPayload), or \
             an array of those"
                .into(),
        ),
        other => fail(
            out,
            format!("expected a JSON object or array, found {}", kind(other)),
        ),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[derive(Deserialize)]
struct RawEnvelope {
    #[serde(default)]
    id: Option<String>,
    source: String,
    #[serde(rename = "detail-type")]
    detail_type: String,
    #[serde(default)]
    account: Option<String>,
    detail: RawDetail,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDetail {
    event_arn: String,
    service: String,
    event_type_code: String,
    #[serde(default)]
    event_type_category: Option<String>,
    #[serde(default)]
    event_scope_code: Option<String>,
    #[serde(default)]
    communication_id: Option<String>,
    #[serde(default, deserialize_with = "de_time")]
    start_time: Option<OffsetDateTime>,
    #[serde(default, deserialize_with = "de_time")]
    end_time: Option<OffsetDateTime>,
    #[serde(default, deserialize_with = "de_time")]
    last_updated_time: Option<OffsetDateTime>,
    #[serde(default)]
    status_code: Option<String>,
    #[serde(default)]
    event_region: Option<String>,
    #[serde(default)]
    event_description: Vec<RawDescription>,
    #[serde(default)]
    affected_entities: Vec<RawEntity>,
    #[serde(default)]
    affected_account: Option<String>,
    #[serde(default)]
    event_metadata: Option<BTreeMap<String, Value>>,
    #[serde(default, deserialize_with = "de_page")]
    page: Option<u32>,
    #[serde(default, deserialize_with = "de_page")]
    total_pages: Option<u32>,
    #[serde(default, deserialize_with = "de_text")]
    actionability: Option<String>,
    #[serde(default, deserialize_with = "de_list")]
    personas: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDescription {
    #[serde(default)]
    language: Option<String>,
    #[serde(default)]
    latest_description: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawEntity {
    entity_value: String,
    /// `status` in AWS's schema; some producers (and the Health API's SDK shape) say
    /// `statusCode`.
    #[serde(default, alias = "statusCode")]
    status: Option<String>,
    #[serde(default)]
    tags: Option<BTreeMap<String, Value>>,
}

fn de_time<'de, D: Deserializer<'de>>(de: D) -> Result<Option<OffsetDateTime>, D::Error> {
    let value = Option::<Value>::deserialize(de)?;
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if text.trim().is_empty() => Ok(None),
        Some(Value::String(text)) => parse_time(&text).map(Some).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "`{text}` is not a time (expected RFC 2822 like `Fri, 27 Jan 2023 01:43:21 GMT` \
                 or RFC 3339)"
            ))
        }),
        Some(Value::Number(n)) => n
            .as_f64()
            .and_then(|secs| OffsetDateTime::from_unix_timestamp(secs as i64).ok())
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom(format!("`{n}` is not an epoch time"))),
        Some(other) => Err(serde::de::Error::custom(format!(
            "expected a time string, found {}",
            kind(&other)
        ))),
    }
}

fn de_text<'de, D: Deserializer<'de>>(de: D) -> Result<Option<String>, D::Error> {
    let value = Option::<Value>::deserialize(de)?;
    Ok(match value {
        None | Some(Value::Null) => None,
        Some(other) => Some(value_text(&other)).filter(|t| !t.trim().is_empty()),
    })
}

/// A list of strings, or one string (producers differ).
fn de_list<'de, D: Deserializer<'de>>(de: D) -> Result<Vec<String>, D::Error> {
    let value = Option::<Value>::deserialize(de)?;
    Ok(match value {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(value_text)
            .filter(|t| !t.trim().is_empty())
            .collect(),
        Some(other) => vec![value_text(&other)],
    })
}

fn de_page<'de, D: Deserializer<'de>>(de: D) -> Result<Option<u32>, D::Error> {
    let value = Option::<Value>::deserialize(de)?;
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => text
            .trim()
            .parse::<u32>()
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("`{text}` is not a page number"))),
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom(format!("`{n}` is not a page number"))),
        Some(other) => Err(serde::de::Error::custom(format!(
            "expected a page number, found {}",
            kind(&other)
        ))),
    }
}

/// Parses the time formats AWS Health uses: RFC 2822 with `GMT` in EventBridge events,
/// RFC 3339 elsewhere.
///
/// The weekday is ignored: AWS's own samples carry weekdays that do not match the date
/// (`Thu, 27 Jan 2026`), and the date is what counts. Single-digit days (`Fri, 3 Jun 2022`)
/// are accepted.
pub fn parse_time(text: &str) -> Option<OffsetDateTime> {
    let text = text.trim();
    OffsetDateTime::parse(text, &Rfc2822)
        .or_else(|_| OffsetDateTime::parse(text, &Rfc3339))
        .ok()
        .or_else(|| parse_http_date_any_weekday(text))
        .map(|t| t.to_offset(time::UtcOffset::UTC))
}

/// `Www, D Mon YYYY HH:MM:SS GMT` with any (or no) weekday.
fn parse_http_date_any_weekday(text: &str) -> Option<OffsetDateTime> {
    let rest = match text.split_once(',') {
        Some((weekday, rest)) if weekday.trim().chars().all(|c| c.is_ascii_alphabetic()) => rest,
        _ => text,
    };
    let mut parts = rest.split_whitespace();
    let day: u8 = parts.next()?.parse().ok()?;
    let month = match parts.next()?.to_ascii_lowercase().as_str() {
        "jan" => time::Month::January,
        "feb" => time::Month::February,
        "mar" => time::Month::March,
        "apr" => time::Month::April,
        "may" => time::Month::May,
        "jun" => time::Month::June,
        "jul" => time::Month::July,
        "aug" => time::Month::August,
        "sep" => time::Month::September,
        "oct" => time::Month::October,
        "nov" => time::Month::November,
        "dec" => time::Month::December,
        _ => return None,
    };
    let year: i32 = parts.next()?.parse().ok()?;
    let mut hms = parts.next()?.split(':');
    let (h, m, sec): (u8, u8, u8) = (
        hms.next()?.parse().ok()?,
        hms.next()?.parse().ok()?,
        hms.next().unwrap_or("0").parse().ok()?,
    );
    match parts.next() {
        None => {}
        Some("GMT" | "UTC" | "Z" | "+0000") => {}
        Some(_) => return None,
    }
    let date = time::Date::from_calendar_date(year, month, day).ok()?;
    let clock = time::Time::from_hms(h, m, sec).ok()?;
    Some(time::PrimitiveDateTime::new(date, clock).assume_utc())
}

fn value_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn parse_eventbridge(value: &Value, location: &str) -> Result<HealthEvent, InputError> {
    let at = |path: &str| {
        if path.is_empty() || path == "." {
            location.to_string()
        } else {
            format!("{location}.{path}")
        }
    };
    // Check what the event is before how it is built: an EC2 event should be reported as
    // "not aws.health", not as a Health event missing fields.
    if let Some(source) = value.get("source").and_then(Value::as_str)
        && source != SOURCE
    {
        return Err(InputError {
            location: at("source"),
            reason: format!("expected `{SOURCE}`, found `{source}`"),
        });
    }
    if let Some(kind) = value.get("detail-type").and_then(Value::as_str)
        && kind != DETAIL_TYPE_HEALTH
        && kind != DETAIL_TYPE_ABUSE
    {
        return Err(InputError {
            location: at("detail-type"),
            reason: format!(
                "expected `{DETAIL_TYPE_HEALTH}` or `{DETAIL_TYPE_ABUSE}`, found `{kind}`"
            ),
        });
    }
    let raw: RawEnvelope = serde_path_to_error::deserialize(value).map_err(|err| InputError {
        location: at(&err.path().to_string()),
        reason: err.inner().to_string(),
    })?;
    if raw.source != SOURCE {
        return Err(InputError {
            location: at("source"),
            reason: format!("expected `{SOURCE}`, found `{}`", raw.source),
        });
    }
    let detail_type = match raw.detail_type.as_str() {
        DETAIL_TYPE_HEALTH => DetailType::Health,
        DETAIL_TYPE_ABUSE => DetailType::Abuse,
        other => {
            return Err(InputError {
                location: at("detail-type"),
                reason: format!(
                    "expected `{DETAIL_TYPE_HEALTH}` or `{DETAIL_TYPE_ABUSE}`, found `{other}`"
                ),
            });
        }
    };
    let d = raw.detail;
    let required = |field: &str, text: &str| {
        if text.trim().is_empty() {
            Err(InputError {
                location: at(&format!("detail.{field}")),
                reason: "must not be empty".into(),
            })
        } else {
            Ok(())
        }
    };
    required("eventArn", &d.event_arn)?;
    required("service", &d.service)?;
    required("eventTypeCode", &d.event_type_code)?;
    let last_updated = d
        .last_updated_time
        .or(d.start_time)
        .ok_or_else(|| InputError {
            location: at("detail.lastUpdatedTime"),
            reason: "missing (and no startTime to fall back on)".into(),
        })?;
    let status = match d.status_code.as_deref() {
        None => EventStatus::Open,
        Some(code) => EventStatus::parse(code).ok_or_else(|| InputError {
            location: at("detail.statusCode"),
            reason: format!("expected `open`, `upcoming` or `closed`, found `{code}`"),
        })?,
    };
    let description = d
        .event_description
        .iter()
        .find(|desc| {
            desc.language
                .as_deref()
                .is_some_and(|l| l.starts_with("en"))
        })
        .or_else(|| d.event_description.first())
        .map(|desc| desc.latest_description.clone())
        .unwrap_or_default();
    let entities = d
        .affected_entities
        .into_iter()
        .map(|e| AffectedEntity {
            value: e.entity_value,
            status: e.status.filter(|s| !s.is_empty()),
            tags: e
                .tags
                .unwrap_or_default()
                .iter()
                .map(|(k, v)| (k.clone(), value_text(v)))
                .collect(),
        })
        .collect();
    let page = match (d.page, d.total_pages) {
        (Some(page), Some(total)) if total > 1 => Some((page, total)),
        _ => None,
    };
    let nonempty = |o: Option<String>| o.filter(|s| !s.trim().is_empty());
    Ok(HealthEvent {
        detail_type,
        delivery_id: raw.id,
        account: nonempty(raw.account),
        arn: d.event_arn,
        service: d.service,
        event_type_code: d.event_type_code,
        category: nonempty(d.event_type_category).unwrap_or_else(|| "unknown".into()),
        scope: nonempty(d.event_scope_code),
        communication_id: nonempty(d.communication_id),
        start_time: d.start_time,
        end_time: d.end_time,
        last_updated,
        status,
        region: nonempty(d.event_region),
        description,
        entities,
        affected_account: nonempty(d.affected_account),
        actionability: d.actionability,
        personas: d.personas,
        metadata: d
            .event_metadata
            .unwrap_or_default()
            .iter()
            .map(|(k, v)| (k.clone(), value_text(v)))
            .collect(),
        page,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    fn minimal() -> Value {
        json!({
            "version": "0",
            "id": "abc",
            "detail-type": "AWS Health Event",
            "source": "aws.health",
            "account": "123456789012",
            "time": "2023-01-27T01:43:21Z",
            "region": "us-east-1",
            "resources": [],
            "detail": {
                "eventArn": "arn:aws:health:us-east-1::event/EC2/X/X_1",
                "service": "EC2",
                "eventTypeCode": "AWS_EC2_X",
                "eventTypeCategory": "issue",
                "startTime": "Fri, 27 Jan 2023 01:43:21 GMT",
                "lastUpdatedTime": "Fri, 27 Jan 2023 02:33:34 GMT",
                "statusCode": "open",
                "eventRegion": "us-east-1",
                "eventDescription": [{"language": "en_US", "latestDescription": "hello"}],
                "someFutureField": {"x": 1}
            }
        })
    }

    #[test]
    fn parses_direct_event_and_tolerates_unknown_fields() {
        let parsed = parse_input(&minimal());
        assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
        let event = &parsed.events[0];
        assert_eq!(event.service, "EC2");
        assert_eq!(event.status, EventStatus::Open);
        assert_eq!(event.description, "hello");
        assert_eq!(event.last_updated.unix_timestamp(), 1_674_786_814);
        assert_eq!(event.account.as_deref(), Some("123456789012"));
    }

    #[test]
    fn unwraps_sns_records_and_batches() {
        let inner = minimal().to_string();
        let sns = json!({"Records": [
            {"EventSource": "aws:sns", "Sns": {"Message": inner}},
            {"EventSource": "aws:sns", "Sns": {"Message": "{not json"}}
        ]});
        let batch = json!([sns, minimal()]);
        let parsed = parse_input(&batch);
        assert_eq!(parsed.events.len(), 2);
        assert_eq!(parsed.errors.len(), 1);
        assert!(
            parsed.errors[0]
                .to_string()
                .starts_with("$[0].Records[1].Sns.Message: not valid JSON"),
            "{}",
            parsed.errors[0]
        );
    }

    #[test]
    fn errors_name_the_field() {
        let mut event = minimal();
        event["detail"].as_object_mut().unwrap().remove("eventArn");
        let parsed = parse_input(&event);
        assert_eq!(parsed.errors.len(), 1);
        assert_eq!(parsed.errors[0].location, "$.detail");
        assert!(parsed.errors[0].reason.contains("eventArn"));

        let mut event = minimal();
        event["detail"]["lastUpdatedTime"] = json!("yesterday");
        let err = &parse_input(&event).errors[0];
        assert_eq!(err.location, "$.detail.lastUpdatedTime");

        let mut event = minimal();
        event["detail-type"] = json!("EC2 Instance State-change Notification");
        event["detail"] = json!({});
        assert_eq!(parse_input(&event).errors[0].location, "$.detail-type");

        let mut event = minimal();
        event["source"] = json!("aws.ec2");
        event["detail"] = json!({});
        let err = &parse_input(&event).errors[0];
        assert_eq!(
            err.to_string(),
            "$.source: expected `aws.health`, found `aws.ec2`"
        );

        let mut event = minimal();
        event["detail"]["statusCode"] = json!("maybe");
        assert_eq!(
            parse_input(&event).errors[0].location,
            "$.detail.statusCode"
        );

        let err = &parse_input(&json!({"hello": 1})).errors[0];
        assert!(err.reason.starts_with("not an AWS Health event"));
        let err = &parse_input(&json!(3)).errors[0];
        assert_eq!(
            err.reason,
            "expected a JSON object or array, found a number"
        );
        let err = &parse_input_bytes(b"{").errors[0];
        assert!(err.reason.starts_with("not valid JSON"));
    }

    #[test]
    fn key_depends_on_arn_and_affected_account() {
        let a = event_key("arn:1", None);
        assert_eq!(a, event_key("arn:1", None));
        assert_ne!(a, event_key("arn:1", Some("111111111111")));
        assert_ne!(a, event_key("arn:2", None));
        assert_eq!(a.len(), 64);
    }

    /// Finding 1: AWS's account-view events name `affectedAccount` = `account`; they are
    /// account-view events and key like the management account's copy and like reconcile.
    #[test]
    fn one_key_for_every_path() {
        let mut own = parse_input(&minimal()).events.remove(0);
        own.affected_account = Some("123456789012".into());
        assert!(!own.is_organizational());
        // The same event as the management account (999…) receives it.
        let mut mgmt = own.clone();
        mgmt.account = Some("999999999999".into());
        assert!(mgmt.is_organizational());
        // Reconcile, account view: no affectedAccount, the account from STS/--account.
        let mut rec_account = own.clone();
        rec_account.affected_account = None;
        assert!(!rec_account.is_organizational());
        // Reconcile, organizational view: no receiving account, the member named.
        let mut rec_org = own.clone();
        rec_org.account = None;
        assert!(rec_org.is_organizational());
        for g in [OrgIssues::PerAccount, OrgIssues::PerEvent] {
            let k = issue_key(&own, g);
            for other in [&mgmt, &rec_account, &rec_org] {
                assert_eq!(issue_key(other, g), k, "{g:?}");
            }
        }
        let mut member2 = mgmt.clone();
        member2.affected_account = Some("210987654321".into());
        assert_ne!(
            issue_key(&member2, OrgIssues::PerAccount),
            issue_key(&mgmt, OrgIssues::PerAccount)
        );
        assert_eq!(
            issue_key(&member2, OrgIssues::PerEvent),
            issue_key(&mgmt, OrgIssues::PerEvent)
        );
    }

    #[test]
    fn replays_and_new_fields() {
        // Lambda on-failure destination record, and the same read back from SQS.
        let record = json!({
            "version": "1.0",
            "timestamp": "2023-01-27T01:43:25.000Z",
            "requestContext": {"requestId": "r", "condition": "RetriesExhausted", "approximateInvokeCount": 3},
            "requestPayload": minimal(),
            "responseContext": {"statusCode": 200, "functionError": "Unhandled"},
            "responsePayload": {"errorMessage": "x"}
        });
        assert_eq!(parse_input(&record).events.len(), 1);
        let sqs = json!({"Records": [{"messageId": "m", "body": record.to_string()}]});
        let parsed = parse_input(&sqs);
        assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
        assert_eq!(parsed.events.len(), 1);
        // EventBridge → SNS → SQS without raw delivery.
        let note =
            json!({"Type": "Notification", "MessageId": "x", "Message": minimal().to_string()});
        let sqs = json!({"Records": [{"messageId": "m", "body": note.to_string()}]});
        assert_eq!(parse_input(&sqs).events.len(), 1);

        let mut e = minimal();
        e["detail"].as_object_mut().unwrap().remove("eventRegion");
        e["detail"]["actionability"] = json!("ACTION_REQUIRED");
        e["detail"]["personas"] = json!(["OPERATIONS", "SECURITY"]);
        e["detail"]["affectedEntities"] = json!([{"entityValue": "i-1", "statusCode": "IMPAIRED"}]);
        e["detail"]["startTime"] = json!("Thu, 27 Jan 2026 13:44:13 GMT");
        e["detail"]["lastUpdatedTime"] = json!("Fri, 3 Jun 2022 01:02:03 GMT");
        let parsed = parse_input(&e);
        assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
        let ev = &parsed.events[0];
        assert_eq!(ev.shown_region(), "us-east-1", "from the ARN");
        assert_eq!(ev.actionability.as_deref(), Some("ACTION_REQUIRED"));
        assert_eq!(ev.personas, ["OPERATIONS", "SECURITY"]);
        assert_eq!(ev.entities[0].status.as_deref(), Some("IMPAIRED"));
        assert_eq!(ev.start_time.unwrap().unix_timestamp(), 1_769_521_453);
        assert_eq!(ev.last_updated.unix_timestamp(), 1_654_218_123);
        assert_eq!(arn_region("arn:aws:health:global::event/X"), None);
    }

    #[test]
    fn parses_pages_and_times() {
        let mut event = minimal();
        event["detail"]["page"] = json!("2");
        event["detail"]["totalPages"] = json!("3");
        event["detail"]["endTime"] = json!("2023-01-28T00:00:00Z");
        let parsed = parse_input(&event);
        let e = &parsed.events[0];
        assert_eq!(e.page, Some((2, 3)));
        assert_eq!(e.end_time.unwrap().unix_timestamp(), 1_674_864_000);
    }
}
