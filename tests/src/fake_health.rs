//! A fake AWS Health API speaking the AWS JSON 1.1 protocol the locked aws-sdk-health uses:
//! `POST /` with `X-Amz-Target: AWSHealth_20160804.<Operation>` and a JSON body; times are
//! epoch seconds. Stateful (a list of events with details, entities and affected accounts),
//! paginated with `nextToken` (page size settable to force several pages), and it records
//! which operations were called.
//!
//! Operations: DescribeEvents, DescribeEventDetails, DescribeAffectedEntities and their
//! `…ForOrganization` counterparts plus DescribeAffectedAccountsForOrganization.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Map, Value, json};

const TARGET_PREFIX: &str = "AWSHealth_20160804.";

/// An affected entity.
#[derive(Debug, Clone, Default)]
pub struct FakeEntity {
    pub value: String,
    pub account: Option<String>,
    pub status: Option<String>,
    pub tags: BTreeMap<String, String>,
}

/// One event as the Health API knows it.
#[derive(Debug, Clone, Default)]
pub struct FakeHealthEvent {
    pub arn: String,
    pub service: String,
    pub event_type_code: String,
    pub category: String,
    pub scope: String,
    pub region: String,
    pub start: Option<i64>,
    pub end: Option<i64>,
    pub last_updated: i64,
    /// `open`, `upcoming`, `closed`.
    pub status: String,
    pub description: String,
    pub metadata: BTreeMap<String, String>,
    /// Affected accounts in the organizational view.
    pub accounts: Vec<String>,
    pub entities: Vec<FakeEntity>,
}

#[derive(Default)]
struct Inner {
    events: Vec<FakeHealthEvent>,
    page_size: usize,
    calls: Vec<String>,
    /// Signing regions seen (from the SigV4 credential scope), one per call.
    regions: Vec<String>,
    /// Answer every call with 503 ServiceUnavailableException (an endpoint that is down).
    unavailable: bool,
    /// ARNs whose DescribeEventDetails(ForOrganization) lands in `failedSet`.
    failing_details: Vec<String>,
}

/// The fake AWS Health endpoint.
pub struct FakeHealth {
    addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    _server: crate::serve::Served,
}

fn lock(inner: &Mutex<Inner>) -> std::sync::MutexGuard<'_, Inner> {
    inner
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl FakeHealth {
    /// Serves on 127.0.0.1 (random port); pages hold at most 100 items until
    /// [`FakeHealth::set_page_size`].
    pub async fn start() -> FakeHealth {
        let inner = Arc::new(Mutex::new(Inner {
            page_size: 100,
            ..Inner::default()
        }));
        let app = Router::new()
            .route("/", post(handle))
            .with_state(Arc::clone(&inner));
        let server = crate::serve::serve(app, "the fake Health API").await;
        FakeHealth {
            addr: server.addr,
            inner,
            _server: server,
        }
    }

    /// The endpoint URL (`AWS_ENDPOINT_URL` / `endpoint_url`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn add_event(&self, event: FakeHealthEvent) {
        lock(&self.inner).events.push(event);
    }

    /// Replaces the event with the same ARN.
    pub fn update_event(&self, event: FakeHealthEvent) {
        let mut inner = lock(&self.inner);
        inner.events.retain(|e| e.arn != event.arn);
        inner.events.push(event);
    }

    /// Items per page (at least 1); the smaller of this and the request's `maxResults`.
    pub fn set_page_size(&self, n: usize) {
        lock(&self.inner).page_size = n.max(1);
    }

    /// Operations called so far, in order (`DescribeEvents`, …).
    pub fn calls(&self) -> Vec<String> {
        lock(&self.inner).calls.clone()
    }

    /// The SigV4 signing region of each call so far (`us-east-1`, `us-east-2`).
    pub fn signing_regions(&self) -> Vec<String> {
        lock(&self.inner).regions.clone()
    }

    /// Makes the endpoint answer every call with `503 ServiceUnavailableException`, as a
    /// regional endpoint does while AWS Health fails over to the other region.
    pub fn set_unavailable(&self, down: bool) {
        lock(&self.inner).unavailable = down;
    }

    /// Puts `arn` in the `failedSet` of DescribeEventDetails (and its organizational
    /// counterpart), as AWS does for an event it cannot describe right now.
    pub fn fail_details_for(&self, arn: &str) {
        lock(&self.inner).failing_details.push(arn.to_string());
    }
}

/// The region of a SigV4 `Authorization` header's credential scope.
fn signing_region(auth: &str) -> Option<String> {
    let scope = auth.split("Credential=").nth(1)?.split(',').next()?;
    scope.split('/').nth(2).map(str::to_string)
}

fn reply(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-amz-json-1.1"),
        )],
        body.to_string(),
    )
        .into_response()
}

fn error(kind: &str, message: &str) -> Response {
    reply(
        StatusCode::BAD_REQUEST,
        json!({"__type": kind, "message": message}),
    )
}

fn event_json(e: &FakeHealthEvent) -> Value {
    let mut m = Map::new();
    m.insert("arn".into(), json!(e.arn));
    m.insert("service".into(), json!(e.service));
    m.insert("eventTypeCode".into(), json!(e.event_type_code));
    m.insert("eventTypeCategory".into(), json!(e.category));
    m.insert("region".into(), json!(e.region));
    m.insert("eventScopeCode".into(), json!(e.scope));
    m.insert("statusCode".into(), json!(e.status));
    m.insert("lastUpdatedTime".into(), json!(e.last_updated));
    if let Some(t) = e.start {
        m.insert("startTime".into(), json!(t));
    }
    if let Some(t) = e.end {
        m.insert("endTime".into(), json!(t));
    }
    Value::Object(m)
}

fn entity_json(e: &FakeHealthEvent, x: &FakeEntity) -> Value {
    let mut m = Map::new();
    m.insert(
        "entityArn".into(),
        json!(format!("arn:aws:health:{}:entity/{}", e.region, x.value)),
    );
    m.insert("eventArn".into(), json!(e.arn));
    m.insert("entityValue".into(), json!(x.value));
    m.insert("lastUpdatedTime".into(), json!(e.last_updated));
    m.insert("tags".into(), json!(x.tags));
    if let Some(a) = &x.account {
        m.insert("awsAccountId".into(), json!(a));
    }
    if let Some(s) = &x.status {
        m.insert("statusCode".into(), json!(s));
    }
    Value::Object(m)
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// `{from, to}` in epoch seconds.
fn in_range(range: &Value, t: i64) -> bool {
    let from = range.get("from").and_then(Value::as_f64);
    let to = range.get("to").and_then(Value::as_f64);
    from.is_none_or(|f| t as f64 >= f) && to.is_none_or(|x| t as f64 <= x)
}

fn matches_filter(e: &FakeHealthEvent, filter: &Value, org: bool) -> bool {
    let statuses = strings(&filter["eventStatusCodes"]);
    if !statuses.is_empty() && !statuses.contains(&e.status) {
        return false;
    }
    let arns = strings(&filter["eventArns"]);
    if !arns.is_empty() && !arns.contains(&e.arn) {
        return false;
    }
    let services = strings(&filter["services"]);
    if !services.is_empty() && !services.contains(&e.service) {
        return false;
    }
    if org {
        let range = &filter["lastUpdatedTime"];
        if range.is_object() && !in_range(range, e.last_updated) {
            return false;
        }
    } else if let Some(ranges) = filter["lastUpdatedTimes"].as_array()
        && !ranges.is_empty()
        && !ranges.iter().any(|r| in_range(r, e.last_updated))
    {
        return false;
    }
    true
}

/// Cuts `items` into a page; `Err` for a bad token.
fn page(
    items: Vec<Value>,
    body: &Value,
    page_size: usize,
) -> Result<(Vec<Value>, Option<String>), String> {
    let max = body["maxResults"]
        .as_u64()
        .map(|n| n as usize)
        .unwrap_or(usize::MAX)
        .min(page_size)
        .max(1);
    let start = match body["nextToken"].as_str() {
        None => 0,
        Some(tok) => match tok
            .strip_prefix("tok-")
            .and_then(|n| n.parse::<usize>().ok())
        {
            Some(n) if n <= items.len() => n,
            _ => {
                return Err(format!("invalid token {tok}"));
            }
        },
    };
    let end = (start + max).min(items.len());
    let next = (end < items.len()).then(|| format!("tok-{end}"));
    Ok((items[start..end].to_vec(), next))
}

fn with_token(mut body: Value, next: Option<String>) -> Value {
    if let Some(tok) = next {
        body["nextToken"] = json!(tok);
    }
    body
}

fn details_json(e: &FakeHealthEvent) -> (Value, Value) {
    (
        json!({ "latestDescription": e.description }),
        json!(e.metadata),
    )
}

async fn handle(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(target) = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.strip_prefix(TARGET_PREFIX))
        .map(str::to_string)
    else {
        return error("UnknownOperationException", "missing X-Amz-Target");
    };
    if !headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("AWS4-HMAC-SHA256"))
    {
        return reply(
            StatusCode::FORBIDDEN,
            json!({"__type": "MissingAuthenticationTokenException", "message": "unsigned request"}),
        );
    }
    let body: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return error("SerializationException", &e.to_string()),
    };
    let mut state = lock(&inner);
    state.calls.push(target.clone());
    let region = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(signing_region)
        .unwrap_or_default();
    state.regions.push(region);
    if state.unavailable {
        return reply(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"__type": "ServiceUnavailableException", "message": "endpoint unavailable"}),
        );
    }
    let page_size = state.page_size;
    let events = state.events.clone();
    let failing = state.failing_details.clone();
    drop(state);
    let find = |arn: &str| events.iter().find(|e| e.arn == arn);

    match target.as_str() {
        "DescribeEvents" | "DescribeEventsForOrganization" => {
            let org = target.ends_with("ForOrganization");
            let filter = &body["filter"];
            let mut found: Vec<&FakeHealthEvent> = events
                .iter()
                .filter(|e| matches_filter(e, filter, org))
                .collect();
            found.sort_by_key(|e| std::cmp::Reverse(e.last_updated));
            let items = found.into_iter().map(event_json).collect();
            match page(items, &body, page_size) {
                Ok((items, next)) => {
                    reply(StatusCode::OK, with_token(json!({"events": items}), next))
                }
                Err(msg) => error("InvalidPaginationToken", &msg),
            }
        }
        "DescribeEventDetails" => {
            let arns = strings(&body["eventArns"]);
            if arns.is_empty() || arns.len() > 10 {
                return error("ValidationException", "eventArns must hold 1 to 10 ARNs");
            }
            let mut ok = Vec::new();
            let mut failed = Vec::new();
            for arn in arns {
                if failing.contains(&arn) {
                    failed.push(json!({"eventArn": arn, "errorName": "InternalFailure", "errorMessage": "could not describe the event"}));
                    continue;
                }
                match find(&arn) {
                    Some(e) => {
                        let (desc, meta) = details_json(e);
                        ok.push(json!({"event": event_json(e), "eventDescription": desc, "eventMetadata": meta}));
                    }
                    None => failed.push(json!({"eventArn": arn, "errorName": "NotFound", "errorMessage": "no such event"})),
                }
            }
            reply(
                StatusCode::OK,
                json!({"successfulSet": ok, "failedSet": failed}),
            )
        }
        "DescribeAffectedEntities" => {
            let arns = strings(&body["filter"]["eventArns"]);
            if arns.is_empty() || arns.len() > 10 {
                return error(
                    "ValidationException",
                    "filter.eventArns must hold 1 to 10 ARNs",
                );
            }
            let items: Vec<Value> = arns
                .iter()
                .filter_map(|a| find(a.as_str()))
                .flat_map(|e| e.entities.iter().map(move |x| entity_json(e, x)))
                .collect();
            match page(items, &body, page_size) {
                Ok((items, next)) => {
                    reply(StatusCode::OK, with_token(json!({"entities": items}), next))
                }
                Err(msg) => error("InvalidPaginationToken", &msg),
            }
        }
        "DescribeAffectedAccountsForOrganization" => {
            let Some(e) = body["eventArn"].as_str().and_then(&find) else {
                return error("ValidationException", "unknown eventArn");
            };
            let items = e.accounts.iter().map(|a| json!(a)).collect();
            match page(items, &body, page_size) {
                Ok((items, next)) => reply(
                    StatusCode::OK,
                    with_token(
                        json!({"affectedAccounts": items, "eventScopeCode": e.scope}),
                        next,
                    ),
                ),
                Err(msg) => error("InvalidPaginationToken", &msg),
            }
        }
        "DescribeEventDetailsForOrganization" => {
            let Some(filters) = body["organizationEventDetailFilters"].as_array() else {
                return error(
                    "ValidationException",
                    "organizationEventDetailFilters is required",
                );
            };
            if filters.is_empty() || filters.len() > 10 {
                return error("ValidationException", "1 to 10 filters");
            }
            let mut ok = Vec::new();
            let mut failed = Vec::new();
            for f in filters {
                let arn = f["eventArn"].as_str().unwrap_or_default();
                let account = f["awsAccountId"].as_str().unwrap_or_default();
                if failing.iter().any(|a| a == arn) {
                    failed.push(json!({"awsAccountId": account, "eventArn": arn, "errorName": "InternalFailure", "errorMessage": "could not describe the event"}));
                    continue;
                }
                match find(arn).filter(|e| e.accounts.iter().any(|a| a == account)) {
                    Some(e) => {
                        let (desc, meta) = details_json(e);
                        ok.push(json!({"awsAccountId": account, "event": event_json(e), "eventDescription": desc, "eventMetadata": meta}));
                    }
                    None => failed.push(json!({"awsAccountId": account, "eventArn": arn, "errorName": "NotFound", "errorMessage": "no such event for this account"})),
                }
            }
            reply(
                StatusCode::OK,
                json!({"successfulSet": ok, "failedSet": failed}),
            )
        }
        "DescribeAffectedEntitiesForOrganization" => {
            let filters = body["organizationEntityAccountFilters"]
                .as_array()
                .or_else(|| body["organizationEntityFilters"].as_array())
                .cloned()
                .unwrap_or_default();
            if filters.is_empty() || filters.len() > 10 {
                return error("ValidationException", "1 to 10 entity filters");
            }
            let mut items = Vec::new();
            for f in &filters {
                let arn = f["eventArn"].as_str().unwrap_or_default();
                let account = f["awsAccountId"].as_str();
                if let Some(e) = find(arn) {
                    for x in &e.entities {
                        if account.is_none() || x.account.as_deref() == account {
                            items.push(entity_json(e, x));
                        }
                    }
                }
            }
            match page(items, &body, page_size) {
                Ok((items, next)) => reply(
                    StatusCode::OK,
                    with_token(json!({"entities": items, "failedSet": []}), next),
                ),
                Err(msg) => error("InvalidPaginationToken", &msg),
            }
        }
        other => error(
            "UnknownOperationException",
            &format!("operation {other} is not supported by the fake"),
        ),
    }
}
