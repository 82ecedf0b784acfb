//! The safety net for missed deliveries: read open and upcoming events of the last N days
//! from the AWS Health API (aws-sdk-health) and turn them into [`HealthEvent`]s, which the
//! caller files like deliveries (no issue → create; older version → update; same → nothing).
//!
//! Account view: `DescribeEvents` → `DescribeEventDetails` → `DescribeAffectedEntities`.
//! Organizational view (`--organization`, from the management or delegated-admin account):
//! `DescribeEventsForOrganization` → `DescribeAffectedAccountsForOrganization` →
//! `DescribeEventDetailsForOrganization` → `DescribeAffectedEntitiesForOrganization`, one
//! event per (event, affected account), keyed like EventBridge's organizational events.
//!
//! The AWS Health API has a single endpoint in `us-east-1` (the SDK speaks Smithy RPC v2
//! CBOR to it). The SDK honours `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_HEALTH`.

use std::collections::{BTreeMap, HashMap};

use aws_config::BehaviorVersion;
use aws_sdk_health::Client;
use aws_sdk_health::types::{
    AffectedEntity as SdkEntity, DateTimeRange, EntityAccountFilter, EntityFilter,
    EventAccountFilter, EventFilter, EventStatusCode, OrganizationEventFilter,
};
use time::OffsetDateTime;
use tracing::{info, warn};

use crate::event::{AffectedEntity, DetailType, EventStatus, HealthEvent};

/// Batch size the Health API accepts for ARN lists and account filters.
const BATCH: usize = 10;
/// Bound on pages followed for one listing.
const MAX_PAGES: usize = 100;

/// What to fetch.
#[derive(Debug, Clone)]
pub struct ReconcileQuery {
    /// Events last updated within this many days.
    pub days: u32,
    /// Use the organizational view.
    pub organization: bool,
    /// The account shown on issues in the account view when no entity names one.
    pub account: Option<String>,
    pub now: OffsetDateTime,
}

impl ReconcileQuery {
    /// A query for the last `days` days, from now.
    pub fn new(days: u32, organization: bool, account: Option<String>) -> ReconcileQuery {
        ReconcileQuery {
            days,
            organization,
            account,
            now: OffsetDateTime::now_utc(),
        }
    }
}

/// A Health API call that failed.
#[derive(Debug, thiserror::Error)]
#[error("AWS Health {operation}: {message}")]
pub struct ReconcileError {
    pub operation: &'static str,
    pub message: String,
}

fn sdk_error<E: std::error::Error>(operation: &'static str) -> impl FnOnce(E) -> ReconcileError {
    move |err| ReconcileError {
        operation,
        message: aws_sdk_health::error::DisplayErrorContext(&err).to_string(),
    }
}

/// A Health client from the standard configuration chain; the region defaults to
/// `us-east-1` (where the Health API lives) unless `region` is given.
pub async fn health_client(region: Option<&str>) -> Client {
    let region = region.unwrap_or("us-east-1").to_string();
    let config = aws_config::defaults(BehaviorVersion::latest())
        .region(aws_config::Region::new(region))
        .load()
        .await;
    Client::new(&config)
}

fn to_time(t: Option<&aws_sdk_health::primitives::DateTime>) -> Option<OffsetDateTime> {
    // Whole seconds, like EventBridge's RFC 2822 times, so versions compare equal.
    t.and_then(|t| OffsetDateTime::from_unix_timestamp(t.secs()).ok())
}

fn to_status(code: Option<&EventStatusCode>) -> EventStatus {
    match code {
        Some(EventStatusCode::Closed) => EventStatus::Closed,
        Some(EventStatusCode::Upcoming) => EventStatus::Upcoming,
        _ => EventStatus::Open,
    }
}

fn to_entity(e: &SdkEntity) -> Option<AffectedEntity> {
    Some(AffectedEntity {
        value: e.entity_value()?.to_string(),
        status: e.status_code().map(|s| s.as_str().to_string()),
        tags: e
            .tags()
            .map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default(),
    })
}

fn window(q: &ReconcileQuery) -> DateTimeRange {
    let from = q.now - time::Duration::days(i64::from(q.days));
    DateTimeRange::builder()
        .from(aws_sdk_health::primitives::DateTime::from_secs(
            from.unix_timestamp(),
        ))
        .build()
}

struct Summary {
    arn: String,
    service: String,
    event_type_code: String,
    category: String,
    scope: Option<String>,
    region: Option<String>,
    start: Option<OffsetDateTime>,
    end: Option<OffsetDateTime>,
    last_updated: OffsetDateTime,
    status: EventStatus,
}

impl Summary {
    fn into_event(
        self,
        account: Option<String>,
        affected_account: Option<String>,
        description: String,
        metadata: BTreeMap<String, String>,
        entities: Vec<AffectedEntity>,
    ) -> HealthEvent {
        HealthEvent {
            detail_type: if self.service.eq_ignore_ascii_case("ABUSE") {
                DetailType::Abuse
            } else {
                DetailType::Health
            },
            delivery_id: None,
            account,
            arn: self.arn,
            service: self.service,
            event_type_code: self.event_type_code,
            category: self.category,
            scope: self.scope,
            communication_id: None,
            start_time: self.start,
            end_time: self.end,
            last_updated: self.last_updated,
            status: self.status,
            region: self.region,
            description,
            entities,
            affected_account,
            metadata,
            page: None,
        }
    }
}

/// Fetches the open and upcoming events last updated within the window.
pub async fn fetch_events(
    client: &Client,
    q: &ReconcileQuery,
) -> Result<Vec<HealthEvent>, ReconcileError> {
    if q.organization {
        fetch_organization(client, q).await
    } else {
        fetch_account(client, q).await
    }
}

fn statuses() -> Vec<EventStatusCode> {
    vec![EventStatusCode::Open, EventStatusCode::Upcoming]
}

async fn fetch_account(
    client: &Client,
    q: &ReconcileQuery,
) -> Result<Vec<HealthEvent>, ReconcileError> {
    let filter = EventFilter::builder()
        .set_event_status_codes(Some(statuses()))
        .last_updated_times(window(q))
        .build();
    let mut summaries = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let out = client
            .describe_events()
            .filter(filter.clone())
            .max_results(100)
            .set_next_token(token.clone())
            .send()
            .await
            .map_err(sdk_error("DescribeEvents"))?;
        for e in out.events() {
            let (Some(arn), Some(last_updated)) = (e.arn(), to_time(e.last_updated_time())) else {
                warn!("DescribeEvents returned an event without arn or lastUpdatedTime");
                continue;
            };
            summaries.push(Summary {
                arn: arn.to_string(),
                service: e.service().unwrap_or("UNKNOWN").to_string(),
                event_type_code: e.event_type_code().unwrap_or("UNKNOWN").to_string(),
                category: e
                    .event_type_category()
                    .map(|c| c.as_str().to_string())
                    .unwrap_or_else(|| "unknown".into()),
                scope: e.event_scope_code().map(|s| s.as_str().to_string()),
                region: e.region().map(str::to_string),
                start: to_time(e.start_time()),
                end: to_time(e.end_time()),
                last_updated,
                status: to_status(e.status_code()),
            });
        }
        token = out.next_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    info!(events = summaries.len(), "DescribeEvents");

    let mut details: HashMap<String, (String, BTreeMap<String, String>)> = HashMap::new();
    let mut entities: HashMap<String, Vec<(AffectedEntity, Option<String>)>> = HashMap::new();
    let arns: Vec<String> = summaries.iter().map(|s| s.arn.clone()).collect();
    for chunk in arns.chunks(BATCH) {
        let out = client
            .describe_event_details()
            .set_event_arns(Some(chunk.to_vec()))
            .send()
            .await
            .map_err(sdk_error("DescribeEventDetails"))?;
        for d in out.successful_set() {
            let Some(arn) = d.event().and_then(|e| e.arn()) else {
                continue;
            };
            let description = d
                .event_description()
                .and_then(|x| x.latest_description())
                .unwrap_or_default()
                .to_string();
            let metadata = d
                .event_metadata()
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default();
            details.insert(arn.to_string(), (description, metadata));
        }
        for f in out.failed_set() {
            warn!(
                arn = f.event_arn().unwrap_or(""),
                error = f.error_message().unwrap_or(""),
                "DescribeEventDetails failed for one event"
            );
        }
        let filter = EntityFilter::builder()
            .set_event_arns(Some(chunk.to_vec()))
            .build()
            .map_err(sdk_error("DescribeAffectedEntities"))?;
        let mut token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let out = client
                .describe_affected_entities()
                .filter(filter.clone())
                .max_results(100)
                .set_next_token(token.clone())
                .send()
                .await
                .map_err(sdk_error("DescribeAffectedEntities"))?;
            for e in out.entities() {
                if let (Some(arn), Some(entity)) = (e.event_arn(), to_entity(e)) {
                    entities
                        .entry(arn.to_string())
                        .or_default()
                        .push((entity, e.aws_account_id().map(str::to_string)));
                }
            }
            token = out.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
    }

    Ok(summaries
        .into_iter()
        .map(|s| {
            let (description, metadata) = details.remove(&s.arn).unwrap_or_default();
            let found = entities.remove(&s.arn).unwrap_or_default();
            let account = found
                .iter()
                .find_map(|(_, a)| a.clone())
                .or_else(|| q.account.clone());
            let list = found.into_iter().map(|(e, _)| e).collect();
            s.into_event(account, None, description, metadata, list)
        })
        .collect())
}

async fn fetch_organization(
    client: &Client,
    q: &ReconcileQuery,
) -> Result<Vec<HealthEvent>, ReconcileError> {
    let filter = OrganizationEventFilter::builder()
        .set_event_status_codes(Some(statuses()))
        .last_updated_time(window(q))
        .build();
    let mut summaries = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let out = client
            .describe_events_for_organization()
            .filter(filter.clone())
            .max_results(100)
            .set_next_token(token.clone())
            .send()
            .await
            .map_err(sdk_error("DescribeEventsForOrganization"))?;
        for e in out.events() {
            let (Some(arn), Some(last_updated)) = (e.arn(), to_time(e.last_updated_time())) else {
                continue;
            };
            summaries.push(Summary {
                arn: arn.to_string(),
                service: e.service().unwrap_or("UNKNOWN").to_string(),
                event_type_code: e.event_type_code().unwrap_or("UNKNOWN").to_string(),
                category: e
                    .event_type_category()
                    .map(|c| c.as_str().to_string())
                    .unwrap_or_else(|| "unknown".into()),
                scope: e.event_scope_code().map(|s| s.as_str().to_string()),
                region: e.region().map(str::to_string),
                start: to_time(e.start_time()),
                end: to_time(e.end_time()),
                last_updated,
                status: to_status(e.status_code()),
            });
        }
        token = out.next_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    info!(events = summaries.len(), "DescribeEventsForOrganization");

    // (arn, account) pairs.
    let mut pairs: Vec<(usize, String)> = Vec::new();
    for (i, s) in summaries.iter().enumerate() {
        let mut token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let out = client
                .describe_affected_accounts_for_organization()
                .event_arn(&s.arn)
                .max_results(100)
                .set_next_token(token.clone())
                .send()
                .await
                .map_err(sdk_error("DescribeAffectedAccountsForOrganization"))?;
            pairs.extend(out.affected_accounts().iter().map(|a| (i, a.clone())));
            token = out.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
    }

    let mut details: HashMap<(String, String), (String, BTreeMap<String, String>)> = HashMap::new();
    let mut entities: HashMap<(String, String), Vec<AffectedEntity>> = HashMap::new();
    for chunk in pairs.chunks(BATCH) {
        let filters: Vec<EventAccountFilter> = chunk
            .iter()
            .filter_map(|(i, account)| {
                EventAccountFilter::builder()
                    .event_arn(&summaries[*i].arn)
                    .aws_account_id(account)
                    .build()
                    .ok()
            })
            .collect();
        let out = client
            .describe_event_details_for_organization()
            .set_organization_event_detail_filters(Some(filters))
            .send()
            .await
            .map_err(sdk_error("DescribeEventDetailsForOrganization"))?;
        for d in out.successful_set() {
            let (Some(arn), Some(account)) = (d.event().and_then(|e| e.arn()), d.aws_account_id())
            else {
                continue;
            };
            let description = d
                .event_description()
                .and_then(|x| x.latest_description())
                .unwrap_or_default()
                .to_string();
            let metadata = d
                .event_metadata()
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default();
            details.insert(
                (arn.to_string(), account.to_string()),
                (description, metadata),
            );
        }
        let filters: Vec<EntityAccountFilter> = chunk
            .iter()
            .filter_map(|(i, account)| {
                EntityAccountFilter::builder()
                    .event_arn(&summaries[*i].arn)
                    .aws_account_id(account)
                    .build()
                    .ok()
            })
            .collect();
        let mut token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let out = client
                .describe_affected_entities_for_organization()
                .set_organization_entity_account_filters(Some(filters.clone()))
                .max_results(100)
                .set_next_token(token.clone())
                .send()
                .await
                .map_err(sdk_error("DescribeAffectedEntitiesForOrganization"))?;
            for e in out.entities() {
                if let (Some(arn), Some(account), Some(entity)) =
                    (e.event_arn(), e.aws_account_id(), to_entity(e))
                {
                    entities
                        .entry((arn.to_string(), account.to_string()))
                        .or_default()
                        .push(entity);
                }
            }
            token = out.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
    }

    let mut per_event: Vec<Vec<String>> = vec![Vec::new(); summaries.len()];
    for (i, account) in pairs {
        per_event[i].push(account);
    }
    let mut events = Vec::new();
    for (s, accounts) in summaries.into_iter().zip(per_event) {
        if accounts.is_empty() {
            // A public event with no account named: one issue for the organization.
            events.push(s.into_event(None, None, String::new(), BTreeMap::new(), Vec::new()));
            continue;
        }
        for account in accounts {
            let k = (s.arn.clone(), account.clone());
            let (description, metadata) = details.remove(&k).unwrap_or_default();
            let list = entities.remove(&k).unwrap_or_default();
            let summary = Summary {
                arn: s.arn.clone(),
                service: s.service.clone(),
                event_type_code: s.event_type_code.clone(),
                category: s.category.clone(),
                scope: s.scope.clone(),
                region: s.region.clone(),
                start: s.start,
                end: s.end,
                last_updated: s.last_updated,
                status: s.status.clone(),
            };
            events.push(summary.into_event(
                Some(account.clone()),
                Some(account),
                description,
                metadata,
                list,
            ));
        }
    }
    Ok(events)
}
