//! [`DeliveryLedger`] on DynamoDB: durable de-duplication shared by every worker, replica and
//! restart.
//!
//! One item per delivery id (hash key `delivery_id`, a string):
//!
//! | attribute     | meaning                                                            |
//! |---------------|--------------------------------------------------------------------|
//! | `claim_state` | `running` (claimed, scan under way) or `done`                       |
//! | `claimed_by`  | the claiming process (a release only deletes its own claim)        |
//! | `lease_until` | unix seconds after which a `running` claim is stale (worker died)  |
//! | `expires_at`  | unix seconds; the table's TTL attribute, so the table stays small  |
//!
//! A claim is one conditional `PutItem`: `attribute_not_exists(delivery_id) OR (claim_state
//! = running AND lease_until < now)`. Two workers racing for one delivery cannot both win;
//! a claim left by a worker that crashed (or hit its Lambda timeout) can be taken again
//! once its lease has run out. A failed scan deletes its claim (conditional on
//! `claimed_by`), so the redelivery scans it.
//!
//! The same table is the redelivery sweep's [`RedeliveryLog`]: one item per delivery id
//! asked for, keyed `redeliver#<id>`, holding `asked_attempt` (the attempt asked to be
//! redelivered) and `expires_at`. Asking is a conditional put, `attribute_not_exists OR
//! asked_attempt < :attempt`, so two sweeps (overlapping scheduled invocations, a cold
//! start) never ask for one attempt twice, and a redelivery that failed again (a newer
//! attempt) is asked for once in turn. The sweep also reads which successful deliveries are
//! `done` here (`BatchGetItem`), so it reads check runs from GitHub only for the others.
//!
//! `opsbot app serve --ledger-table NAME` uses the same table ([`connect_from_env`]), so
//! replicas of the server, a restarted server and the Lambda worker share one record.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{AttributeValue, KeyType, KeysAndAttributes, ScalarAttributeType};
use tracing::debug;

use crate::dedup::{Claim, DeliveryLedger, LedgerError, LedgerFuture};
use crate::redeliver::RedeliveryLog;

/// The hash key of the table.
pub const KEY: &str = "delivery_id";
/// The TTL attribute (enable TTL on it: the Terraform module does).
pub const TTL_ATTRIBUTE: &str = "expires_at";
/// How long a delivery id is remembered: GitHub redelivers for 3 days, so a week covers
/// every redelivery of a delivery already scanned.
pub const DEFAULT_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

const RUNNING: &str = "running";
const DONE: &str = "done";
/// Key prefix of the redelivery sweep's items (delivery ids are GUIDs: no clash).
pub const REDELIVER_PREFIX: &str = "redeliver#";
const ASKED: &str = "asked_attempt";

/// The delivery table cannot be used (checked once at start-up by [`connect`]).
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error(
        "the delivery ledger table `{table}` cannot be reached: DynamoDB DescribeTable ({where_}) failed: {message}"
    )]
    Unreachable {
        table: String,
        where_: String,
        message: String,
    },
    #[error(
        "the delivery ledger table `{table}` has hash key {found}; it needs `{KEY}` (a string) and no sort key"
    )]
    WrongKey { table: String, found: String },
}

/// A client for `aws` and the ledger on `table`, after checking with `DescribeTable` that
/// the table exists and has the ledger's key, so a wrong name, region, endpoint or
/// credential fails at start-up rather than on the first delivery.
pub async fn connect(aws: &aws_config::SdkConfig, table: &str) -> Result<DynamoLedger, TableError> {
    let ledger = DynamoLedger::new(Client::new(aws), table);
    let where_ = format!(
        "region {}, endpoint {}",
        aws.region().map_or("not set", |r| r.as_ref()),
        aws.endpoint_url().unwrap_or("the default")
    );
    ledger.check_table(&where_).await?;
    Ok(ledger)
}

/// [`connect`] with the AWS configuration read from the environment as the SDK reads it
/// (`AWS_REGION`, `AWS_PROFILE`, credentials, `AWS_ENDPOINT_URL`, ...).
pub async fn connect_from_env(table: &str) -> Result<DynamoLedger, TableError> {
    let aws = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    connect(&aws, table).await
}

/// The DynamoDB adapter of [`DeliveryLedger`].
#[derive(Debug, Clone)]
pub struct DynamoLedger {
    client: Client,
    table: String,
    ttl: Duration,
    /// Names this process's claims.
    owner: String,
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

impl DynamoLedger {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        DynamoLedger {
            client,
            table: table.into(),
            ttl: DEFAULT_TTL,
            owner: format!(
                "{}-{nanos:x}-{}",
                std::process::id(),
                SEQ.fetch_add(1, Ordering::Relaxed)
            ),
        }
    }

    /// How long ids are kept (the `expires_at` TTL).
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl.max(Duration::from_secs(60));
        self
    }

    /// The id this ledger writes into `claimed_by`.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// `DescribeTable`: the table exists and its only key is [`KEY`], a string.
    async fn check_table(&self, where_: &str) -> Result<(), TableError> {
        let out = self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
            .map_err(|e| TableError::Unreachable {
                table: self.table.clone(),
                where_: where_.to_owned(),
                message: opsbot_core::aws_error::message(&e),
            })?;
        let table = out.table();
        let keys = table.map(|t| t.key_schema()).unwrap_or_default();
        let string_key = table
            .map(|t| t.attribute_definitions())
            .unwrap_or_default()
            .iter()
            .any(|a| a.attribute_name() == KEY && *a.attribute_type() == ScalarAttributeType::S);
        let ok = keys.len() == 1
            && keys[0].attribute_name() == KEY
            && *keys[0].key_type() == KeyType::Hash
            && string_key;
        if !ok {
            let found = keys
                .iter()
                .map(|k| format!("`{}` ({})", k.attribute_name(), k.key_type().as_str()))
                .collect::<Vec<_>>()
                .join(", ");
            return Err(TableError::WrongKey {
                table: self.table.clone(),
                found: if found.is_empty() {
                    "none".into()
                } else {
                    found
                },
            });
        }
        Ok(())
    }

    fn error(op: &'static str, delivery: &str, message: String) -> LedgerError {
        LedgerError {
            op,
            delivery: delivery.to_owned(),
            message,
        }
    }

    /// One conditional put; `Ok(false)` when the condition failed.
    async fn try_put(&self, delivery: &str, lease: Duration) -> Result<bool, LedgerError> {
        let now = now_unix();
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(KEY, s(delivery))
            .item("claim_state", s(RUNNING))
            .item("claimed_by", s(&self.owner))
            .item("lease_until", n(now + lease.as_secs().max(1)))
            .item(TTL_ATTRIBUTE, n(now + self.ttl.as_secs()))
            .condition_expression("attribute_not_exists(#k) OR (#st = :running AND #lease < :now)")
            .expression_attribute_names("#k", KEY)
            .expression_attribute_names("#st", "claim_state")
            .expression_attribute_names("#lease", "lease_until")
            .expression_attribute_values(":running", s(RUNNING))
            .expression_attribute_values(":now", n(now))
            .send()
            .await;
        conditional(result, "PutItem", delivery)
    }

    /// The stored state of `delivery` (consistent read), `None` when there is no item.
    async fn state(&self, delivery: &str) -> Result<Option<String>, LedgerError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(KEY, s(delivery))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| Self::error("GetItem", delivery, opsbot_core::aws_error::message(&e)))?;
        Ok(out
            .item()
            .and_then(|item| item.get("claim_state"))
            .and_then(|v| v.as_s().ok())
            .cloned())
    }

    async fn claim_inner(&self, delivery: &str, lease: Duration) -> Result<Claim, LedgerError> {
        // Twice at most: a claim released between our put and our read is taken again.
        for _ in 0..2 {
            if self.try_put(delivery, lease).await? {
                return Ok(Claim::Acquired);
            }
            match self.state(delivery).await?.as_deref() {
                Some(DONE) => return Ok(Claim::Done),
                Some(_) => return Ok(Claim::InProgress),
                None => debug!(delivery, "claim released meanwhile; trying again"),
            }
        }
        Ok(Claim::InProgress)
    }

    async fn complete_inner(&self, delivery: &str) -> Result<(), LedgerError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key(KEY, s(delivery))
            .update_expression("SET #st = :done, #exp = :exp REMOVE #lease")
            .expression_attribute_names("#st", "claim_state")
            .expression_attribute_names("#exp", TTL_ATTRIBUTE)
            .expression_attribute_names("#lease", "lease_until")
            .expression_attribute_values(":done", s(DONE))
            .expression_attribute_values(":exp", n(now_unix() + self.ttl.as_secs()))
            .send()
            .await
            .map_err(|e| {
                Self::error("UpdateItem", delivery, opsbot_core::aws_error::message(&e))
            })?;
        Ok(())
    }

    async fn release_inner(&self, delivery: &str) -> Result<(), LedgerError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(KEY, s(delivery))
            .condition_expression("#by = :me AND #st = :running")
            .expression_attribute_names("#by", "claimed_by")
            .expression_attribute_names("#st", "claim_state")
            .expression_attribute_values(":me", s(&self.owner))
            .expression_attribute_values(":running", s(RUNNING))
            .send()
            .await;
        // A failed condition: not ours any more (the lease ran out and another worker took
        // it), or done.
        conditional(result, "DeleteItem", delivery).map(|_| ())
    }
}

/// A conditional write's answer: `Ok(true)` when written, `Ok(false)` when its condition
/// failed (the item is not in the state the caller expected: an answer, not an error).
fn conditional<T, E>(
    result: Result<T, SdkError<E, HttpResponse>>,
    op: &'static str,
    id: &str,
) -> Result<bool, LedgerError>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match result {
        Ok(_) => Ok(true),
        Err(e)
            if e.as_service_error().and_then(|e| e.code())
                == Some("ConditionalCheckFailedException") =>
        {
            Ok(false)
        }
        Err(e) => Err(DynamoLedger::error(
            op,
            id,
            opsbot_core::aws_error::message(&e),
        )),
    }
}

impl DynamoLedger {
    async fn first_ask_inner(&self, guid: &str, attempt: u64) -> Result<bool, LedgerError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(KEY, s(&format!("{REDELIVER_PREFIX}{guid}")))
            .item(ASKED, n(attempt))
            .item("claimed_by", s(&self.owner))
            .item(TTL_ATTRIBUTE, n(now_unix() + self.ttl.as_secs()))
            .condition_expression("attribute_not_exists(#k) OR #asked < :attempt")
            .expression_attribute_names("#k", KEY)
            .expression_attribute_names("#asked", ASKED)
            .expression_attribute_values(":attempt", n(attempt))
            .send()
            .await;
        conditional(result, "PutItem (redelivery)", guid)
    }

    async fn forget_inner(&self, guid: &str, attempt: u64) -> Result<(), LedgerError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(KEY, s(&format!("{REDELIVER_PREFIX}{guid}")))
            .condition_expression("#asked = :attempt AND #by = :me")
            .expression_attribute_names("#asked", ASKED)
            .expression_attribute_names("#by", "claimed_by")
            .expression_attribute_values(":attempt", n(attempt))
            .expression_attribute_values(":me", s(&self.owner))
            .send()
            .await;
        // A failed condition: another sweep asked for it (or a later attempt) meanwhile;
        // theirs stays.
        conditional(result, "DeleteItem (redelivery)", guid).map(|_| ())
    }
}

impl DynamoLedger {
    /// The ids among `guids` whose item is `done` (100 keys per `BatchGetItem`; keys
    /// DynamoDB leaves unprocessed are simply not known: the sweep verifies them on GitHub).
    async fn scanned_inner(&self, guids: &[String]) -> Result<HashSet<String>, LedgerError> {
        let mut done = HashSet::new();
        for chunk in guids.chunks(100) {
            let mut keys = KeysAndAttributes::builder()
                .consistent_read(true)
                .projection_expression("#k, #st")
                .expression_attribute_names("#k", KEY)
                .expression_attribute_names("#st", "claim_state");
            for guid in chunk {
                keys = keys.keys(HashMap::from([(KEY.to_owned(), s(guid))]));
            }
            let what = || format!("{} delivery ids", chunk.len());
            let keys = keys
                .build()
                .map_err(|e| Self::error("BatchGetItem", &what(), e.to_string()))?;
            let out = self
                .client
                .batch_get_item()
                .request_items(&self.table, keys)
                .send()
                .await
                .map_err(|e| {
                    Self::error("BatchGetItem", &what(), opsbot_core::aws_error::message(&e))
                })?;
            let items = out.responses().and_then(|r| r.get(&self.table));
            for item in items.into_iter().flatten() {
                let state = item.get("claim_state").and_then(|v| v.as_s().ok());
                if state.map(String::as_str) == Some(DONE)
                    && let Some(Ok(id)) = item.get(KEY).map(|v| v.as_s())
                {
                    done.insert(id.clone());
                }
            }
        }
        Ok(done)
    }
}

impl RedeliveryLog for DynamoLedger {
    fn first_ask<'a>(&'a self, guid: &'a str, attempt: u64) -> LedgerFuture<'a, bool> {
        Box::pin(self.first_ask_inner(guid, attempt))
    }

    fn forget<'a>(&'a self, guid: &'a str, attempt: u64) -> LedgerFuture<'a, ()> {
        Box::pin(self.forget_inner(guid, attempt))
    }

    fn scanned<'a>(&'a self, guids: &'a [String]) -> LedgerFuture<'a, HashSet<String>> {
        Box::pin(self.scanned_inner(guids))
    }
}

impl DeliveryLedger for DynamoLedger {
    fn claim<'a>(&'a self, delivery: &'a str, lease: Duration) -> LedgerFuture<'a, Claim> {
        Box::pin(self.claim_inner(delivery, lease))
    }

    fn complete<'a>(&'a self, delivery: &'a str) -> LedgerFuture<'a, ()> {
        Box::pin(self.complete_inner(delivery))
    }

    fn release<'a>(&'a self, delivery: &'a str) -> LedgerFuture<'a, ()> {
        Box::pin(self.release_inner(delivery))
    }
}
