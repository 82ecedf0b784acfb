//! The safety net for missed deliveries: read the events of the last N days from the AWS
//! Health API (aws-sdk-health), file them like deliveries, then heal what is left.
//!
//! [`reconcile`] does, in order:
//! 1. **window**: every event (open, upcoming *and closed*) last updated within the window
//!    is filed through [`HealthService::handle_event`], so a missed close event closes its
//!    issue and a missed update comments on it;
//! 2. **heal**: every open issue of the job (a body with the `opsbot:health` marker) in the
//!    configured repositories whose key was not filed in step 1 is looked up by its event
//!    ARN, whatever its age, and filed again: an event AWS reports closed closes its issue;
//! 3. **reminders**: an open scheduled change whose `startTime` is at most
//!    `health.remind_days_before` days away gets one reminder comment (a hidden
//!    `opsbot:health-reminder` marker makes it once per start time, across runs).
//!
//! An event whose `DescribeEventDetails` lands in `failedSet` is *not* filed (its
//! description is unknown, not empty): it is reported as incomplete and tried again next run.
//!
//! Account view: `DescribeEvents` → `DescribeEventDetails` → `DescribeAffectedEntities`.
//! Organizational view (`--organization`, from the management or delegated-admin account):
//! `DescribeEventsForOrganization` → `DescribeAffectedAccountsForOrganization` →
//! `DescribeEventDetailsForOrganization` → `DescribeAffectedEntitiesForOrganization`, one
//! event per (event, affected account). Events are built the way the EventBridge parser
//! builds them (`account` = the receiving account, `affected_account` = the member account)
//! and keyed by [`crate::event::issue_key`] only, so both paths find the same issue.
//!
//! Endpoints: the AWS Health API is active in `us-east-1` and passive in `us-east-2`
//! (active/passive behind `global.health.amazonaws.com`; the signing region must match the
//! endpoint). [`HealthApi`] tries the regions in order and fails over to the next one when a
//! call cannot reach its endpoint or is answered 5xx or throttled; other errors (access
//! denied, no Business support plan) would fail the same way everywhere and are returned.
//! The SDK honours `AWS_ENDPOINT_URL_HEALTH` / `AWS_ENDPOINT_URL` for every region.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;

use aws_config::BehaviorVersion;
use aws_sdk_health::Client;
use aws_sdk_health::config::http::HttpResponse;
use aws_sdk_health::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_health::types::{
    AffectedEntity as SdkEntity, DateTimeRange, EntityAccountFilter, EntityFilter,
    Event as SdkEvent, EventAccountFilter, EventFilter, EventStatusCode, OrganizationEventFilter,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tracing::{info, warn};

use crate::apply::{IssueTracker, MemoryTracker, TrackerError};
use crate::event::{AffectedEntity, DetailType, EventStatus, HealthEvent};
use crate::github::GitHubTracker;
use crate::plan::{ExistingIssue, IssueOpenState};
use crate::render::{IssueState, human_time, rfc3339};
use crate::service::{EventResult, HealthService, Notifier};

/// Batch size the Health API accepts for ARN lists and account filters.
const BATCH: usize = 10;
/// Bound on pages followed for one listing.
const MAX_PAGES: usize = 100;
/// The Health API's regions, active first (see the module docs).
pub const HEALTH_REGIONS: [&str; 2] = ["us-east-1", "us-east-2"];
/// Marker kind of reminder comments.
pub const REMINDER_MARKER: &str = "health-reminder";

/// What to fetch.
#[derive(Debug, Clone)]
pub struct ReconcileQuery {
    /// Events last updated within this many days.
    pub days: u32,
    /// Use the organizational view.
    pub organization: bool,
    /// The receiving account (this account in the account view; the management account in
    /// the organizational view): what EventBridge puts in the envelope's `account`.
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
#[error("AWS Health {operation}{}: {message}", region.as_deref().map(|r| format!(" ({r})")).unwrap_or_default())]
pub struct ReconcileError {
    pub operation: &'static str,
    pub message: String,
    /// The endpoint's region, when known.
    pub region: Option<String>,
    /// True when another endpoint may succeed (unreachable, 5xx, throttled).
    pub failover: bool,
}

fn sdk_error<E>(operation: &'static str) -> impl FnOnce(SdkError<E, HttpResponse>) -> ReconcileError
where
    E: std::error::Error + ProvideErrorMetadata + 'static,
{
    move |err| {
        let failover = match &err {
            SdkError::DispatchFailure(_)
            | SdkError::TimeoutError(_)
            | SdkError::ResponseError(_) => true,
            SdkError::ServiceError(service) => {
                let code = service.err().code().unwrap_or_default();
                code.contains("Throttl")
                    || code.contains("ServiceUnavailable")
                    || code.contains("InternalFailure")
                    || code.contains("InternalServerError")
            }
            _ => false,
        };
        ReconcileError {
            operation,
            message: opsbot_core::aws_error::message(&err),
            region: None,
            failover,
        }
    }
}

/// A Health client from the standard configuration chain, signing for `region` (the
/// Health API lives in `us-east-1`, with `us-east-2` as its passive region).
pub async fn health_client(region: Option<&str>) -> Client {
    let region = region.unwrap_or(HEALTH_REGIONS[0]).to_string();
    let config = aws_config::defaults(BehaviorVersion::latest())
        .region(aws_config::Region::new(region))
        .load()
        .await;
    Client::new(&config)
}

/// The account the AWS credentials belong to (STS `GetCallerIdentity`): the receiving
/// account reconcile keys events with when `--account` is not given.
pub async fn caller_account() -> Result<String, ReconcileError> {
    let config = aws_config::defaults(BehaviorVersion::latest()).load().await;
    caller_account_with(&aws_sdk_sts::Client::new(&config)).await
}

/// [`caller_account`] with a given STS client.
pub async fn caller_account_with(sts: &aws_sdk_sts::Client) -> Result<String, ReconcileError> {
    let fail = |message: String| ReconcileError {
        operation: "STS GetCallerIdentity",
        message,
        region: None,
        failover: false,
    };
    let out = sts
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| fail(opsbot_core::aws_error::message(&e)))?;
    out.account()
        .map(str::to_string)
        .ok_or_else(|| fail("no account in the answer".into()))
}

/// One regional endpoint of the Health API.
#[derive(Debug, Clone)]
pub struct HealthEndpoint {
    pub region: String,
    pub client: Client,
}

/// The Health API with failover between its regional endpoints (see the module docs).
#[derive(Debug, Clone)]
pub struct HealthApi {
    endpoints: Vec<HealthEndpoint>,
}

/// What one fetch found.
#[derive(Debug, Default)]
pub struct Fetched {
    pub events: Vec<HealthEvent>,
    /// Events left out because AWS could not describe them (`failedSet`): never filed with
    /// an empty description.
    pub incomplete: Vec<Incomplete>,
    /// Events asked for by ARN that the API does not know (any more).
    pub unknown: Vec<(String, Option<String>)>,
    /// The region that answered.
    pub region: String,
}

/// An event AWS listed but could not describe.
#[derive(Debug, Clone, Serialize)]
pub struct Incomplete {
    pub arn: String,
    pub account: Option<String>,
    pub error: String,
}

impl HealthApi {
    /// Clients for `regions` in order (default [`HEALTH_REGIONS`]), from the standard
    /// configuration chain.
    pub async fn from_env(regions: &[String]) -> HealthApi {
        let regions: Vec<String> = if regions.is_empty() {
            HEALTH_REGIONS.iter().map(|r| (*r).to_string()).collect()
        } else {
            regions.to_vec()
        };
        let mut endpoints = Vec::new();
        for region in regions {
            endpoints.push(HealthEndpoint {
                client: health_client(Some(&region)).await,
                region,
            });
        }
        HealthApi { endpoints }
    }

    /// Endpoints tried in the order given.
    pub fn new(endpoints: Vec<HealthEndpoint>) -> HealthApi {
        HealthApi { endpoints }
    }

    /// The regions tried, in order.
    pub fn regions(&self) -> Vec<&str> {
        self.endpoints.iter().map(|e| e.region.as_str()).collect()
    }

    async fn with_failover<'a, F, Fut>(&'a self, what: F) -> Result<Fetched, ReconcileError>
    where
        F: Fn(&'a Client) -> Fut,
        Fut: Future<Output = Result<Fetched, ReconcileError>>,
    {
        let mut last = None;
        for (i, endpoint) in self.endpoints.iter().enumerate() {
            match what(&endpoint.client).await {
                Ok(mut fetched) => {
                    if i > 0 {
                        warn!(
                            region = endpoint.region.as_str(),
                            "AWS Health answered after failover"
                        );
                    }
                    fetched.region = endpoint.region.clone();
                    return Ok(fetched);
                }
                Err(mut err) => {
                    err.region = Some(endpoint.region.clone());
                    if !err.failover {
                        return Err(err);
                    }
                    warn!(
                        region = endpoint.region.as_str(),
                        error = %err,
                        "AWS Health endpoint failed; trying the next region"
                    );
                    last = Some(err);
                }
            }
        }
        Err(last.unwrap_or(ReconcileError {
            operation: "endpoint selection",
            message: "no AWS Health endpoint configured".into(),
            region: None,
            failover: false,
        }))
    }

    /// Every event last updated within the window (open, upcoming and closed).
    pub async fn fetch_events(&self, q: &ReconcileQuery) -> Result<Fetched, ReconcileError> {
        self.with_failover(|client| fetch_events(client, q)).await
    }

    /// The events of `refs` (`(arn, affected account)`), whatever their age or status.
    pub async fn fetch_by_arn(
        &self,
        refs: &[(String, Option<String>)],
        q: &ReconcileQuery,
    ) -> Result<Fetched, ReconcileError> {
        self.with_failover(|client| fetch_by_arn(client, refs, q))
            .await
    }
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

#[derive(Clone)]
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
    fn from_event(e: &SdkEvent) -> Option<Summary> {
        let (Some(arn), Some(last_updated)) = (e.arn(), to_time(e.last_updated_time())) else {
            warn!("the Health API returned an event without arn or lastUpdatedTime");
            return None;
        };
        Some(Summary {
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
        })
    }

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
            actionability: None,
            personas: Vec::new(),
        }
    }
}

/// Every event last updated within the window, from one endpoint.
pub async fn fetch_events(client: &Client, q: &ReconcileQuery) -> Result<Fetched, ReconcileError> {
    if q.organization {
        let filter = OrganizationEventFilter::builder()
            .last_updated_time(window(q))
            .build();
        let summaries = list_organization(client, filter).await?;
        organization_details(client, q, summaries, None).await
    } else {
        let filter = EventFilter::builder().last_updated_times(window(q)).build();
        let summaries = list_account(client, filter).await?;
        account_details(client, q, summaries).await
    }
}

/// The events of `refs`, whatever their age, from one endpoint.
pub async fn fetch_by_arn(
    client: &Client,
    refs: &[(String, Option<String>)],
    q: &ReconcileQuery,
) -> Result<Fetched, ReconcileError> {
    if refs.is_empty() {
        return Ok(Fetched::default());
    }
    if q.organization {
        // The organization filter has no ARN list: the details call says what each event is.
        let pairs: Vec<(String, String)> = refs
            .iter()
            .filter_map(|(arn, account)| account.clone().map(|a| (arn.clone(), a)))
            .collect();
        organization_details(client, q, Vec::new(), Some(pairs)).await
    } else {
        let arns: Vec<String> = refs
            .iter()
            .map(|(a, _)| a.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut summaries = Vec::new();
        for chunk in arns.chunks(BATCH) {
            let filter = EventFilter::builder()
                .set_event_arns(Some(chunk.to_vec()))
                .build();
            summaries.extend(list_account(client, filter).await?);
        }
        let mut fetched = account_details(client, q, summaries).await?;
        let found: BTreeSet<&str> = fetched
            .events
            .iter()
            .map(|e| e.arn.as_str())
            .chain(fetched.incomplete.iter().map(|i| i.arn.as_str()))
            .collect();
        let unknown: Vec<(String, Option<String>)> = arns
            .iter()
            .filter(|a| !found.contains(a.as_str()))
            .map(|a| (a.clone(), None))
            .collect();
        fetched.unknown = unknown;
        Ok(fetched)
    }
}

async fn list_account(
    client: &Client,
    filter: EventFilter,
) -> Result<Vec<Summary>, ReconcileError> {
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
        summaries.extend(out.events().iter().filter_map(Summary::from_event));
        token = out.next_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    info!(events = summaries.len(), "DescribeEvents");
    Ok(summaries)
}

async fn account_details(
    client: &Client,
    q: &ReconcileQuery,
    summaries: Vec<Summary>,
) -> Result<Fetched, ReconcileError> {
    let mut details: HashMap<String, (String, BTreeMap<String, String>)> = HashMap::new();
    let mut failed: HashMap<String, String> = HashMap::new();
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
            let arn = f.event_arn().unwrap_or("").to_string();
            let error = format!(
                "DescribeEventDetails failedSet: {}: {}",
                f.error_name().unwrap_or("error"),
                f.error_message().unwrap_or("")
            );
            warn!(
                arn = arn.as_str(),
                error = error.as_str(),
                "event left out: AWS could not describe it"
            );
            failed.insert(arn, error);
        }
        let filter = EntityFilter::builder()
            .set_event_arns(Some(chunk.to_vec()))
            .build()
            .map_err(|e| ReconcileError {
                operation: "DescribeAffectedEntities",
                message: e.to_string(),
                region: None,
                failover: false,
            })?;
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

    let mut fetched = Fetched::default();
    let mut seen = BTreeSet::new();
    for s in summaries {
        if !seen.insert(s.arn.clone()) {
            continue;
        }
        if let Some(error) = failed.remove(&s.arn) {
            fetched.incomplete.push(Incomplete {
                arn: s.arn,
                account: None,
                error,
            });
            continue;
        }
        let Some((description, metadata)) = details.remove(&s.arn) else {
            fetched.incomplete.push(Incomplete {
                arn: s.arn,
                account: None,
                error: "DescribeEventDetails returned nothing for it".into(),
            });
            continue;
        };
        let found = entities.remove(&s.arn).unwrap_or_default();
        // The receiving account, as in EventBridge's envelope; entities may name it when
        // the caller did not.
        let account = q
            .account
            .clone()
            .or_else(|| found.iter().find_map(|(_, a)| a.clone()));
        let list = found.into_iter().map(|(e, _)| e).collect();
        fetched
            .events
            .push(s.into_event(account, None, description, metadata, list));
    }
    Ok(fetched)
}

async fn list_organization(
    client: &Client,
    filter: OrganizationEventFilter,
) -> Result<Vec<Summary>, ReconcileError> {
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
    Ok(summaries)
}

/// Details and entities per (event, account). `pairs` given: exactly those (by ARN, the
/// heal step); otherwise every affected account of every summary.
async fn organization_details(
    client: &Client,
    q: &ReconcileQuery,
    summaries: Vec<Summary>,
    pairs: Option<Vec<(String, String)>>,
) -> Result<Fetched, ReconcileError> {
    let mut fetched = Fetched::default();
    let by_arn_only = pairs.is_some();
    let mut summary_of: HashMap<String, Summary> = summaries
        .iter()
        .map(|s| (s.arn.clone(), s.clone()))
        .collect();
    let pairs = match pairs {
        Some(pairs) => pairs,
        None => {
            let mut pairs = Vec::new();
            for s in &summaries {
                let mut token: Option<String> = None;
                let mut any = false;
                for _ in 0..MAX_PAGES {
                    let out = client
                        .describe_affected_accounts_for_organization()
                        .event_arn(&s.arn)
                        .max_results(100)
                        .set_next_token(token.clone())
                        .send()
                        .await
                        .map_err(sdk_error("DescribeAffectedAccountsForOrganization"))?;
                    for a in out.affected_accounts() {
                        any = true;
                        pairs.push((s.arn.clone(), a.clone()));
                    }
                    token = out.next_token().map(str::to_string);
                    if token.is_none() {
                        break;
                    }
                }
                if !any {
                    // A public event with no account named: one issue for the organization.
                    fetched.events.push(s.clone().into_event(
                        q.account.clone(),
                        None,
                        String::new(),
                        BTreeMap::new(),
                        Vec::new(),
                    ));
                }
            }
            pairs
        }
    };

    let mut details: HashMap<(String, String), (String, BTreeMap<String, String>)> = HashMap::new();
    let mut failed: HashMap<(String, String), String> = HashMap::new();
    let mut entities: HashMap<(String, String), Vec<AffectedEntity>> = HashMap::new();
    for chunk in pairs.chunks(BATCH) {
        let filters: Vec<EventAccountFilter> = chunk
            .iter()
            .filter_map(|(arn, account)| {
                EventAccountFilter::builder()
                    .event_arn(arn)
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
            let (Some(event), Some(account)) = (d.event(), d.aws_account_id()) else {
                continue;
            };
            let Some(summary) = Summary::from_event(event) else {
                continue;
            };
            let arn = summary.arn.clone();
            if !summary_of.contains_key(&arn) {
                summary_of.insert(arn.clone(), summary);
            }
            let description = d
                .event_description()
                .and_then(|x| x.latest_description())
                .unwrap_or_default()
                .to_string();
            let metadata = d
                .event_metadata()
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default();
            details.insert((arn, account.to_string()), (description, metadata));
        }
        for f in out.failed_set() {
            let k = (
                f.event_arn().unwrap_or("").to_string(),
                f.aws_account_id().unwrap_or("").to_string(),
            );
            let error = format!(
                "DescribeEventDetailsForOrganization failedSet: {}: {}",
                f.error_name().unwrap_or("error"),
                f.error_message().unwrap_or("")
            );
            warn!(
                arn = k.0.as_str(),
                account = k.1.as_str(),
                error = error.as_str(),
                "event left out: AWS could not describe it"
            );
            failed.insert(k, error);
        }
        let filters: Vec<EntityAccountFilter> = chunk
            .iter()
            .filter(|(arn, account)| !failed.contains_key(&(arn.clone(), account.clone())))
            .filter_map(|(arn, account)| {
                EntityAccountFilter::builder()
                    .event_arn(arn)
                    .aws_account_id(account)
                    .build()
                    .ok()
            })
            .collect();
        if filters.is_empty() {
            continue;
        }
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

    for (arn, account) in pairs {
        let k = (arn.clone(), account.clone());
        if let Some(error) = failed.remove(&k) {
            if by_arn_only && error.contains("NotFound") {
                fetched.unknown.push((arn, Some(account)));
            } else {
                fetched.incomplete.push(Incomplete {
                    arn,
                    account: Some(account),
                    error,
                });
            }
            continue;
        }
        let (Some(summary), Some((description, metadata))) =
            (summary_of.get(&arn), details.remove(&k))
        else {
            if by_arn_only {
                fetched.unknown.push((arn, Some(account)));
            } else {
                fetched.incomplete.push(Incomplete {
                    arn,
                    account: Some(account),
                    error: "DescribeEventDetailsForOrganization returned nothing for it".into(),
                });
            }
            continue;
        };
        let list = entities.remove(&k).unwrap_or_default();
        fetched.events.push(summary.clone().into_event(
            q.account.clone(),
            Some(account),
            description,
            metadata,
            list,
        ));
    }
    Ok(fetched)
}

// ---- reminders (pure) -------------------------------------------------------------------

/// What a reminder comment records, so it is posted once per start time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReminderState {
    /// The issue's key.
    pub key: String,
    /// The `startTime` reminded of, RFC 3339 (a rescheduled change is reminded again).
    pub start: String,
}

/// Whether `event` is due a reminder at `now`: an open or upcoming scheduled change whose
/// start is in the future and at most `days` days away. `days == 0` disables reminders.
pub fn reminder_due(event: &HealthEvent, now: OffsetDateTime, days: u32) -> bool {
    if days == 0
        || event.status.is_closed()
        || !event.category.eq_ignore_ascii_case("scheduledChange")
    {
        return false;
    }
    event
        .start_time
        .is_some_and(|start| start > now && start - now <= time::Duration::days(i64::from(days)))
}

/// True when one of `comments` already reminds of this key and start time.
pub fn already_reminded(comments: &[String], state: &ReminderState) -> bool {
    comments.iter().any(|c| {
        opsbot_core::github::marker::find::<ReminderState>(c, REMINDER_MARKER).as_ref()
            == Some(state)
    })
}

/// The reminder comment for `event` (its start time must be set).
pub fn render_reminder(event: &HealthEvent, state: &ReminderState, now: OffsetDateTime) -> String {
    let start = event.start_time.unwrap_or(now);
    let left = start - now;
    let hours = left.whole_hours().max(0);
    let when = if hours >= 48 {
        format!("in {} days", hours / 24)
    } else {
        format!("in {hours} hours")
    };
    let entities = match event.entities.len() {
        0 => String::new(),
        1 => format!(
            " It affects `{}`.",
            event.entities[0].value.replace('`', "'")
        ),
        n => format!(" It affects {n} resources (listed above)."),
    };
    format!(
        "{}\n⏰ **Reminder:** this scheduled change starts {when}, at {}.{entities} \
         Act before then, or close this issue if nothing needs doing.\n",
        opsbot_core::github::marker::render(REMINDER_MARKER, state),
        human_time(start),
    )
}

// ---- the run ----------------------------------------------------------------------------

/// What reconcile needs from the tracker beyond filing: the job's open issues and an
/// issue's comments (for the reminder marker).
pub trait ReconcileTracker: IssueTracker {
    /// Every open issue (no pull requests) of `repo`.
    fn list_open(
        &self,
        repo: &str,
    ) -> impl Future<Output = Result<Vec<ExistingIssue>, TrackerError>> + Send;
    /// The bodies of the comments on `number`.
    fn comment_bodies(
        &self,
        repo: &str,
        number: u64,
    ) -> impl Future<Output = Result<Vec<String>, TrackerError>> + Send;
}

impl ReconcileTracker for GitHubTracker {
    async fn list_open(&self, repo: &str) -> Result<Vec<ExistingIssue>, TrackerError> {
        let repo_ref = repo
            .parse::<opsbot_core::RepoRef>()
            .map_err(|e| TrackerError::new(e.to_string()))?;
        let query = opsbot_core::github::models::IssueQuery {
            labels: Vec::new(),
            state: Some("open".into()),
        };
        let issues = self
            .github()
            .list_issues(&repo_ref, &query)
            .await
            .map_err(|e| TrackerError::new(e.to_string()))?;
        Ok(issues
            .into_iter()
            .filter(|i| !i.is_pull_request())
            .map(|i| ExistingIssue {
                number: i.number,
                state: IssueOpenState::Open,
                title: i.title,
                body: i.body.unwrap_or_default(),
            })
            .collect())
    }

    async fn comment_bodies(&self, repo: &str, number: u64) -> Result<Vec<String>, TrackerError> {
        let repo_ref = repo
            .parse::<opsbot_core::RepoRef>()
            .map_err(|e| TrackerError::new(e.to_string()))?;
        let comments = self
            .github()
            .list_comments(&repo_ref, number)
            .await
            .map_err(|e| TrackerError::new(e.to_string()))?;
        Ok(comments.into_iter().filter_map(|c| c.body).collect())
    }
}

impl ReconcileTracker for MemoryTracker {
    async fn list_open(&self, repo: &str) -> Result<Vec<ExistingIssue>, TrackerError> {
        Ok(self
            .issues(repo)
            .into_iter()
            .filter(|i| i.state == IssueOpenState::Open)
            .collect())
    }

    async fn comment_bodies(&self, _repo: &str, number: u64) -> Result<Vec<String>, TrackerError> {
        Ok(self
            .comments()
            .into_iter()
            .filter(|(n, _)| *n == number)
            .map(|(_, c)| c)
            .collect())
    }
}

/// One healed issue.
#[derive(Debug, Serialize)]
pub struct Healed {
    pub repo: String,
    pub number: u64,
    pub arn: String,
    /// `closed`, `updated`, `unchanged`… (the filing outcome), or `unknown` when the API no
    /// longer knows the event (left open, reported).
    pub outcome: String,
}

/// What one reconcile run did.
#[derive(Debug, Default, Serialize)]
pub struct ReconcileReport {
    /// The region that answered.
    pub region: String,
    /// Events of the window, filed.
    pub events: Vec<EventResult>,
    /// Open issues outside the window, looked up by ARN.
    pub healed: Vec<Healed>,
    /// Reminder comments posted (`repo#number`).
    pub reminders: Vec<String>,
    /// Events AWS listed but could not describe (not filed this run).
    pub incomplete: Vec<Incomplete>,
    /// Steps that failed (listing issues, comments…).
    pub errors: Vec<String>,
}

impl ReconcileReport {
    /// True when the run should exit non-zero.
    pub fn failed(&self) -> bool {
        !self.errors.is_empty()
            || !self.incomplete.is_empty()
            || self
                .events
                .iter()
                .any(|e| matches!(e, EventResult::Failed { .. }))
    }
}

/// The repositories the job files into: `health.repo`, every route's, and the default.
fn job_repos<T, N>(service: &HealthService<T, N>) -> Vec<String> {
    let mut repos: BTreeSet<String> = BTreeSet::new();
    repos.extend(service.config.repo.clone());
    repos.extend(service.config.routes.iter().filter_map(|r| r.repo.clone()));
    repos.extend(service.default_repo.clone());
    repos.into_iter().collect()
}

/// The whole run: window, heal, reminders (see the module docs).
pub async fn reconcile<T: ReconcileTracker, N: Notifier>(
    service: &HealthService<T, N>,
    api: &HealthApi,
    q: &ReconcileQuery,
) -> Result<ReconcileReport, ReconcileError> {
    let mut report = ReconcileReport::default();
    let fetched = api.fetch_events(q).await?;
    report.region = fetched.region.clone();
    report.incomplete = fetched.incomplete;
    let mut filed_keys: BTreeSet<String> = BTreeSet::new();
    // (repo, number, event) of open, filed scheduled changes, for reminders.
    let mut live: Vec<(String, u64, String, HealthEvent)> = Vec::new();

    for event in &fetched.events {
        let result = service.handle_event(event).await;
        if let EventResult::Filed {
            key, repo, number, ..
        } = &result
        {
            filed_keys.insert(key.clone());
            if let Some(n) = number {
                live.push((repo.clone(), *n, key.clone(), event.clone()));
            }
        }
        report.events.push(result);
    }

    // Heal: open issues of the job that the window did not cover.
    let mut candidates: Vec<(String, ExistingIssue, IssueState)> = Vec::new();
    for repo in job_repos(service) {
        match service.tracker.list_open(&repo).await {
            Ok(issues) => {
                for issue in issues {
                    let Some(state) = issue.marker() else {
                        continue;
                    };
                    if filed_keys.contains(&state.key) {
                        continue;
                    }
                    let in_view = if q.organization {
                        state.account.is_some()
                    } else {
                        state.account.is_none() || state.account == q.account
                    };
                    // Left out because AWS could not describe it: not this run either.
                    let incomplete = report.incomplete.iter().any(|i| {
                        i.arn == state.arn && (!q.organization || i.account == state.account)
                    });
                    if in_view && !incomplete {
                        candidates.push((repo.clone(), issue, state));
                    }
                }
            }
            Err(err) => report
                .errors
                .push(format!("{repo}: cannot list open issues: {err}")),
        }
    }
    if !candidates.is_empty() {
        let refs: Vec<(String, Option<String>)> = candidates
            .iter()
            .map(|(_, _, s)| (s.arn.clone(), s.account.clone()))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        info!(
            issues = candidates.len(),
            "open issues outside the window: looking them up"
        );
        let healed = api.fetch_by_arn(&refs, q).await?;
        report.incomplete.extend(healed.incomplete.iter().cloned());
        for event in &healed.events {
            let result = service.handle_event(event).await;
            let (outcome, key) = match &result {
                EventResult::Filed { outcome, key, .. } => {
                    ((*outcome).to_string(), Some(key.clone()))
                }
                EventResult::Ignored { .. } => ("ignored".to_string(), None),
                EventResult::Failed { error, .. } => {
                    report.errors.push(format!("{}: {error}", event.arn));
                    ("failed".to_string(), None)
                }
            };
            for (repo, issue, state) in &candidates {
                if key.as_deref() == Some(state.key.as_str())
                    || (state.arn == event.arn && state.account == event.affected_account)
                {
                    report.healed.push(Healed {
                        repo: repo.clone(),
                        number: issue.number,
                        arn: event.arn.clone(),
                        outcome: outcome.clone(),
                    });
                    if let Some(k) = &key {
                        live.push((repo.clone(), issue.number, k.clone(), event.clone()));
                    }
                }
            }
        }
        for (arn, account) in &healed.unknown {
            for (repo, issue, state) in &candidates {
                if &state.arn == arn && (account.is_none() || &state.account == account) {
                    warn!(
                        repo = repo.as_str(),
                        issue = issue.number,
                        arn = arn.as_str(),
                        "AWS Health no longer knows this event; left open"
                    );
                    report.healed.push(Healed {
                        repo: repo.clone(),
                        number: issue.number,
                        arn: arn.clone(),
                        outcome: "unknown".into(),
                    });
                }
            }
        }
    }

    // Reminders.
    let days = service.config.remind_days_before;
    let mut reminded: BTreeSet<(String, u64)> = BTreeSet::new();
    for (repo, number, key, event) in &live {
        if !reminder_due(event, q.now, days) || !reminded.insert((repo.clone(), *number)) {
            continue;
        }
        let Some(start) = event.start_time else {
            continue;
        };
        let state = ReminderState {
            key: key.clone(),
            start: rfc3339(start),
        };
        // Only open issues: a human who closed it has dealt with the change.
        let open = match service
            .tracker
            .list_by_label(repo, &crate::render::key_label(key))
            .await
        {
            Ok(issues) => issues
                .iter()
                .any(|i| i.number == *number && i.state == IssueOpenState::Open),
            Err(err) => {
                report
                    .errors
                    .push(format!("{repo}#{number}: cannot read the issue: {err}"));
                continue;
            }
        };
        if !open {
            continue;
        }
        let comments = match service.tracker.comment_bodies(repo, *number).await {
            Ok(c) => c,
            Err(err) => {
                report
                    .errors
                    .push(format!("{repo}#{number}: cannot list comments: {err}"));
                continue;
            }
        };
        if already_reminded(&comments, &state) {
            continue;
        }
        match service
            .tracker
            .comment(repo, *number, &render_reminder(event, &state, q.now))
            .await
        {
            Ok(()) => {
                info!(
                    repo = repo.as_str(),
                    issue = number,
                    "posted a scheduled-change reminder"
                );
                report.reminders.push(format!("{repo}#{number}"));
            }
            Err(err) => report
                .errors
                .push(format!("{repo}#{number}: cannot post the reminder: {err}")),
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::test_support::fixture;

    #[test]
    fn reminders_are_due_once_within_the_window_and_only_for_scheduled_changes() {
        let mut e = fixture("rds_maintenance");
        e.category = "scheduledChange".into();
        e.status = EventStatus::Upcoming;
        let now = OffsetDateTime::from_unix_timestamp(1_752_105_600).unwrap();
        e.start_time = Some(now + time::Duration::days(2));
        assert!(reminder_due(&e, now, 3));
        assert!(!reminder_due(&e, now, 1), "too far ahead");
        assert!(!reminder_due(&e, now, 0), "disabled");
        e.start_time = Some(now - time::Duration::hours(1));
        assert!(!reminder_due(&e, now, 3), "already started");
        e.start_time = Some(now + time::Duration::days(1));
        e.category = "issue".into();
        assert!(!reminder_due(&e, now, 3), "not a scheduled change");
        e.category = "scheduledChange".into();
        e.status = EventStatus::Closed;
        assert!(!reminder_due(&e, now, 3), "closed");

        e.status = EventStatus::Open;
        let state = ReminderState {
            key: "k".into(),
            start: rfc3339(e.start_time.unwrap()),
        };
        let body = render_reminder(&e, &state, now);
        assert!(body.contains("starts in 24 hours"), "{body}");
        assert!(already_reminded(std::slice::from_ref(&body), &state));
        let moved = ReminderState {
            start: rfc3339(now + time::Duration::days(2)),
            ..state
        };
        assert!(
            !already_reminded(&[body], &moved),
            "a new start time is reminded again"
        );
    }
}
