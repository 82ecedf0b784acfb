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

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::AttributeValue;
use tracing::debug;

use crate::dedup::{Claim, DeliveryLedger, LedgerError, LedgerFuture};

/// The hash key of the table.
pub const KEY: &str = "delivery_id";
/// The TTL attribute (enable TTL on it: the Terraform module does).
pub const TTL_ATTRIBUTE: &str = "expires_at";
/// How long a delivery id is remembered: GitHub redelivers for 3 days, so a week covers
/// every redelivery of a delivery already scanned.
pub const DEFAULT_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

const RUNNING: &str = "running";
const DONE: &str = "done";

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
        match result {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(Self::error(
                "PutItem",
                delivery,
                DisplayErrorContext(&e).to_string(),
            )),
        }
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
            .map_err(|e| Self::error("GetItem", delivery, DisplayErrorContext(&e).to_string()))?;
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
                Self::error("UpdateItem", delivery, DisplayErrorContext(&e).to_string())
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
        match result {
            Ok(_) => Ok(()),
            // Not ours any more (the lease ran out and another worker took it), or done.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(Self::error(
                "DeleteItem",
                delivery,
                DisplayErrorContext(&e).to_string(),
            )),
        }
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
