//! A fake AWS Health API speaking the Smithy RPC v2 CBOR protocol
//! (`smithy.protocols#rpcv2Cbor`) that aws-sdk-health uses: `POST
//! /service/AWSHealth_20160804/operation/<Operation>` with `Smithy-Protocol: rpc-v2-cbor`
//! and a CBOR body. Answers carry the same header and a CBOR body (`Content-Type:
//! application/cbor`); errors are a CBOR map with `__type` (the error's absolute shape ID)
//! and `message`, under the error's HTTP status. Timestamps are CBOR tag 1 (epoch seconds).
//! Stateful (a list of events with details, entities and affected accounts), paginated with
//! `nextToken` (page size settable to force several pages), and it records which operations
//! were called.
//!
//! Operations: DescribeEvents, DescribeEventDetails, DescribeAffectedEntities and their
//! `…ForOrganization` counterparts plus DescribeAffectedAccountsForOrganization.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use ciborium::Value as Cbor;
use serde_json::{Map, Number, Value, json};

/// The service's shape name in the Smithy model (`com.amazonaws.health#AWSHealth_20160804`).
const SERVICE: &str = "AWSHealth_20160804";
/// The same as an absolute shape ID, `#` replaced by `.`, which services also accept.
const SERVICE_ID: &str = "com.amazonaws.health.AWSHealth_20160804";
const SMITHY_PROTOCOL: &str = "smithy-protocol";
const RPC_V2_CBOR: &str = "rpc-v2-cbor";
const CBOR: &str = "application/cbor";

// `__type` of the errors the fake answers: the Health model's own, and the common errors
// every AWS service may answer (their `com.amazon.coral` shape IDs).
const INVALID_PAGINATION_TOKEN: &str = "com.amazonaws.health#InvalidPaginationToken";
const VALIDATION: &str = "com.amazon.coral.validate#ValidationException";
const SERIALIZATION: &str = "com.amazon.coral.service#SerializationException";
const UNKNOWN_OPERATION: &str = "com.amazon.coral.service#UnknownOperationException";
const MISSING_AUTHENTICATION: &str = "com.amazon.coral.service#MissingAuthenticationTokenException";
const SERVICE_UNAVAILABLE: &str = "com.amazon.coral.availability#ServiceUnavailableException";

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
        // Any path: the protocol routes on the last four segments, whatever the prefix.
        let app = Router::new()
            .fallback(handle)
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

/// The operation of a `{prefix?}/service/{serviceName}/operation/{operationName}` path (the
/// last four segments count); the service may be named by its absolute shape ID.
fn operation(path: &str) -> Option<&str> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segments.as_slice() {
        [.., "service", service, "operation", op]
            if (*service == SERVICE || *service == SERVICE_ID) && !op.contains('.') =>
        {
            Some(op)
        }
        _ => None,
    }
}

/// A CBOR answer with the protocol's headers.
fn reply(status: StatusCode, body: Cbor) -> Response {
    let mut bytes = Vec::new();
    if let Err(e) = ciborium::into_writer(&body, &mut bytes) {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the fake cannot encode its answer: {e}"),
        )
            .into_response();
    }
    (
        status,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(CBOR)),
            (
                header::HeaderName::from_static(SMITHY_PROTOCOL),
                HeaderValue::from_static(RPC_V2_CBOR),
            ),
        ],
        bytes,
    )
        .into_response()
}

/// An error answer: `__type` names the error's shape, `status` is its HTTP status.
fn error_with(status: StatusCode, shape: &str, message: &str) -> Response {
    reply(
        status,
        Obj::default()
            .set("__type", shape)
            .set("message", message)
            .into(),
    )
}

/// A client error (`400`).
fn error(shape: &str, message: &str) -> Response {
    error_with(StatusCode::BAD_REQUEST, shape, message)
}

/// A CBOR map being built: a Smithy structure (members by name) or map.
#[derive(Default)]
struct Obj(Vec<(Cbor, Cbor)>);

impl Obj {
    fn set(mut self, key: &str, value: impl Into<Cbor>) -> Obj {
        self.0.push((key.into(), value.into()));
        self
    }

    /// Null members are left out of the wire contents, as the protocol wants.
    fn opt(self, key: &str, value: Option<impl Into<Cbor>>) -> Obj {
        match value {
            Some(v) => self.set(key, v),
            None => self,
        }
    }
}

impl From<Obj> for Cbor {
    fn from(o: Obj) -> Cbor {
        Cbor::Map(o.0)
    }
}

/// A Smithy timestamp: tag 1 over epoch seconds.
fn timestamp(secs: i64) -> Cbor {
    Cbor::Tag(1, Box::new(secs.into()))
}

fn string_map(m: &BTreeMap<String, String>) -> Cbor {
    Cbor::Map(
        m.iter()
            .map(|(k, v)| (k.as_str().into(), v.as_str().into()))
            .collect(),
    )
}

/// A request body as the JSON document the handlers below read: tag-1 timestamps become
/// their epoch seconds; null members are dropped. Health has no blobs nor other tags.
fn to_json(v: Cbor) -> Result<Value, String> {
    Ok(match v {
        Cbor::Integer(i) => {
            let n = i128::from(i);
            if let Ok(u) = u64::try_from(n) {
                json!(u)
            } else if let Ok(s) = i64::try_from(n) {
                json!(s)
            } else {
                return Err(format!("integer {n} out of range"));
            }
        }
        Cbor::Float(f) => {
            Value::Number(Number::from_f64(f).ok_or_else(|| format!("number {f} is not finite"))?)
        }
        Cbor::Text(s) => Value::String(s),
        Cbor::Bool(b) => Value::Bool(b),
        Cbor::Null => Value::Null,
        Cbor::Tag(1, t) => match *t {
            n @ (Cbor::Integer(_) | Cbor::Float(_)) => to_json(n)?,
            other => return Err(format!("timestamp (tag 1) over {other:?}")),
        },
        Cbor::Tag(tag, _) => return Err(format!("unexpected CBOR tag {tag}")),
        Cbor::Array(a) => Value::Array(a.into_iter().map(to_json).collect::<Result<_, _>>()?),
        Cbor::Map(pairs) => {
            let mut m = Map::new();
            for (k, v) in pairs {
                let Cbor::Text(k) = k else {
                    return Err(format!("map key {k:?} is not a text string"));
                };
                if !v.is_null() {
                    m.insert(k, to_json(v)?);
                }
            }
            Value::Object(m)
        }
        other => return Err(format!("unexpected CBOR value {other:?}")),
    })
}

/// The input structure of a request body (an empty body is an empty input).
fn decode(headers: &HeaderMap, body: &[u8]) -> Result<Value, String> {
    if body.is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if content_type != CBOR {
        return Err(format!("Content-Type {content_type:?} is not {CBOR}"));
    }
    let value: Cbor = ciborium::from_reader(body).map_err(|e| e.to_string())?;
    match to_json(value)? {
        v @ Value::Object(_) => Ok(v),
        other => Err(format!("the input is not a structure: {other}")),
    }
}

fn event_cbor(e: &FakeHealthEvent) -> Cbor {
    Obj::default()
        .set("arn", e.arn.as_str())
        .set("service", e.service.as_str())
        .set("eventTypeCode", e.event_type_code.as_str())
        .set("eventTypeCategory", e.category.as_str())
        .set("region", e.region.as_str())
        .set("eventScopeCode", e.scope.as_str())
        .set("statusCode", e.status.as_str())
        .set("lastUpdatedTime", timestamp(e.last_updated))
        .opt("startTime", e.start.map(timestamp))
        .opt("endTime", e.end.map(timestamp))
        .into()
}

fn entity_cbor(e: &FakeHealthEvent, x: &FakeEntity) -> Cbor {
    Obj::default()
        .set(
            "entityArn",
            format!("arn:aws:health:{}:entity/{}", e.region, x.value),
        )
        .set("eventArn", e.arn.as_str())
        .set("entityValue", x.value.as_str())
        .set("lastUpdatedTime", timestamp(e.last_updated))
        .set("tags", string_map(&x.tags))
        .opt("awsAccountId", x.account.as_deref())
        .opt("statusCode", x.status.as_deref())
        .into()
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
    items: Vec<Cbor>,
    body: &Value,
    page_size: usize,
) -> Result<(Vec<Cbor>, Option<String>), String> {
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

/// One page of `items` under `key` (plus `nextToken` when more follow), or the
/// InvalidPaginationToken error.
fn paged(key: &str, items: Vec<Cbor>, body: &Value, page_size: usize, extra: Obj) -> Response {
    match page(items, body, page_size) {
        Ok((items, next)) => reply(
            StatusCode::OK,
            extra.set(key, items).opt("nextToken", next).into(),
        ),
        Err(msg) => error(INVALID_PAGINATION_TOKEN, &msg),
    }
}

fn description_cbor(e: &FakeHealthEvent) -> Cbor {
    Obj::default()
        .set("latestDescription", e.description.as_str())
        .into()
}

fn details_error(account: Option<&str>, arn: &str, name: &str, message: &str) -> Cbor {
    Obj::default()
        .opt("awsAccountId", account)
        .set("eventArn", arn)
        .set("errorName", name)
        .set("errorMessage", message)
        .into()
}

async fn handle(
    State(inner): State<Arc<Mutex<Inner>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(target) = operation(uri.path()).map(str::to_string) else {
        return error_with(
            StatusCode::NOT_FOUND,
            UNKNOWN_OPERATION,
            &format!("no operation at {}", uri.path()),
        );
    };
    if method != Method::POST {
        return error_with(
            StatusCode::METHOD_NOT_ALLOWED,
            UNKNOWN_OPERATION,
            "rpcv2Cbor requests are POST",
        );
    }
    if headers.get(SMITHY_PROTOCOL).and_then(|v| v.to_str().ok()) != Some(RPC_V2_CBOR) {
        return error(SERIALIZATION, "missing Smithy-Protocol: rpc-v2-cbor header");
    }
    // The protocol calls such a request malformed: servers must reject it.
    if headers.contains_key("x-amz-target") || headers.contains_key("x-amzn-target") {
        return error(
            SERIALIZATION,
            "rpcv2Cbor requests must not carry X-Amz-Target",
        );
    }
    if !headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("AWS4-HMAC-SHA256"))
    {
        return error_with(
            StatusCode::FORBIDDEN,
            MISSING_AUTHENTICATION,
            "unsigned request",
        );
    }
    let body = match decode(&headers, &body) {
        Ok(v) => v,
        Err(e) => return error(SERIALIZATION, &e),
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
        return error_with(
            StatusCode::SERVICE_UNAVAILABLE,
            SERVICE_UNAVAILABLE,
            "endpoint unavailable",
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
            let items = found.into_iter().map(event_cbor).collect();
            paged("events", items, &body, page_size, Obj::default())
        }
        "DescribeEventDetails" => {
            let arns = strings(&body["eventArns"]);
            if arns.is_empty() || arns.len() > 10 {
                return error(VALIDATION, "eventArns must hold 1 to 10 ARNs");
            }
            let mut ok: Vec<Cbor> = Vec::new();
            let mut failed: Vec<Cbor> = Vec::new();
            for arn in arns {
                if failing.contains(&arn) {
                    failed.push(details_error(
                        None,
                        &arn,
                        "InternalFailure",
                        "could not describe the event",
                    ));
                    continue;
                }
                match find(&arn) {
                    Some(e) => ok.push(
                        Obj::default()
                            .set("event", event_cbor(e))
                            .set("eventDescription", description_cbor(e))
                            .set("eventMetadata", string_map(&e.metadata))
                            .into(),
                    ),
                    None => failed.push(details_error(None, &arn, "NotFound", "no such event")),
                }
            }
            reply(
                StatusCode::OK,
                Obj::default()
                    .set("successfulSet", ok)
                    .set("failedSet", failed)
                    .into(),
            )
        }
        "DescribeAffectedEntities" => {
            let arns = strings(&body["filter"]["eventArns"]);
            if arns.is_empty() || arns.len() > 10 {
                return error(VALIDATION, "filter.eventArns must hold 1 to 10 ARNs");
            }
            let items: Vec<Cbor> = arns
                .iter()
                .filter_map(|a| find(a.as_str()))
                .flat_map(|e| e.entities.iter().map(move |x| entity_cbor(e, x)))
                .collect();
            paged("entities", items, &body, page_size, Obj::default())
        }
        "DescribeAffectedAccountsForOrganization" => {
            let Some(e) = body["eventArn"].as_str().and_then(&find) else {
                return error(VALIDATION, "unknown eventArn");
            };
            let items = e.accounts.iter().map(|a| a.as_str().into()).collect();
            paged(
                "affectedAccounts",
                items,
                &body,
                page_size,
                Obj::default().set("eventScopeCode", e.scope.as_str()),
            )
        }
        "DescribeEventDetailsForOrganization" => {
            let Some(filters) = body["organizationEventDetailFilters"].as_array() else {
                return error(VALIDATION, "organizationEventDetailFilters is required");
            };
            if filters.is_empty() || filters.len() > 10 {
                return error(VALIDATION, "1 to 10 filters");
            }
            let mut ok: Vec<Cbor> = Vec::new();
            let mut failed: Vec<Cbor> = Vec::new();
            for f in filters {
                let arn = f["eventArn"].as_str().unwrap_or_default();
                let account = f["awsAccountId"].as_str().unwrap_or_default();
                if failing.iter().any(|a| a == arn) {
                    failed.push(details_error(
                        Some(account),
                        arn,
                        "InternalFailure",
                        "could not describe the event",
                    ));
                    continue;
                }
                match find(arn).filter(|e| e.accounts.iter().any(|a| a == account)) {
                    Some(e) => ok.push(
                        Obj::default()
                            .set("awsAccountId", account)
                            .set("event", event_cbor(e))
                            .set("eventDescription", description_cbor(e))
                            .set("eventMetadata", string_map(&e.metadata))
                            .into(),
                    ),
                    None => failed.push(details_error(
                        Some(account),
                        arn,
                        "NotFound",
                        "no such event for this account",
                    )),
                }
            }
            reply(
                StatusCode::OK,
                Obj::default()
                    .set("successfulSet", ok)
                    .set("failedSet", failed)
                    .into(),
            )
        }
        "DescribeAffectedEntitiesForOrganization" => {
            let filters = body["organizationEntityAccountFilters"]
                .as_array()
                .or_else(|| body["organizationEntityFilters"].as_array())
                .cloned()
                .unwrap_or_default();
            if filters.is_empty() || filters.len() > 10 {
                return error(VALIDATION, "1 to 10 entity filters");
            }
            let mut items = Vec::new();
            for f in &filters {
                let arn = f["eventArn"].as_str().unwrap_or_default();
                let account = f["awsAccountId"].as_str();
                if let Some(e) = find(arn) {
                    for x in &e.entities {
                        if account.is_none() || x.account.as_deref() == account {
                            items.push(entity_cbor(e, x));
                        }
                    }
                }
            }
            paged(
                "entities",
                items,
                &body,
                page_size,
                Obj::default().set("failedSet", Vec::<Cbor>::new()),
            )
        }
        other => error(
            UNKNOWN_OPERATION,
            &format!("operation {other} is not supported by the fake"),
        ),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn routes_on_the_last_four_segments() {
        let op = "/service/AWSHealth_20160804/operation/DescribeEvents";
        assert_eq!(operation(op), Some("DescribeEvents"));
        assert_eq!(operation(&format!("/v1{op}")), Some("DescribeEvents"));
        assert_eq!(operation(&format!("/{op}")), Some("DescribeEvents"));
        assert_eq!(
            operation("/service/com.amazonaws.health.AWSHealth_20160804/operation/DescribeEvents"),
            Some("DescribeEvents")
        );
        assert_eq!(operation("/"), None);
        assert_eq!(operation("/service/Other/operation/DescribeEvents"), None);
        assert_eq!(
            operation("/service/AWSHealth_20160804/operation/com.amazonaws.health.DescribeEvents"),
            None,
            "no absolute shape ID for the operation"
        );
    }

    #[test]
    fn request_timestamps_are_epoch_seconds() {
        let body = Cbor::Map(vec![(
            "filter".into(),
            Cbor::Map(vec![
                (
                    "from".into(),
                    Cbor::Tag(1, Box::new(1_752_105_600.5_f64.into())),
                ),
                ("to".into(), timestamp(1_752_105_601)),
                ("gone".into(), Cbor::Null),
            ]),
        )]);
        assert_eq!(
            to_json(body).unwrap(),
            json!({"filter": {"from": 1_752_105_600.5, "to": 1_752_105_601}})
        );
        assert!(to_json(Cbor::Tag(1, Box::new("now".into()))).is_err());
        assert!(to_json(Cbor::Bytes(vec![1])).is_err());
    }
}
