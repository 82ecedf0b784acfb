//! Deliveries already seen (`X-GitHub-Delivery`), so a delivery GitHub sends twice (or an
//! attacker replays) is not scanned twice.
//!
//! One port, [`DeliveryLedger`], with two adapters: [`MemoryLedger`] (one process: `opsbot
//! app serve` without `--ledger-table`; bounded, the oldest ids are forgotten first) and
//! [`crate::dynamodb::DynamoLedger`] (durable and shared by every replica, restart and
//! Lambda worker: a DynamoDB conditional put with a lease and a TTL; `opsbot app serve
//! --ledger-table NAME`). A delivery is *claimed* before its scan,
//! *completed* after it, and *released* when the scan failed or was cancelled, so GitHub's
//! redelivery (or SQS's) runs it again.

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;

/// What a claim found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Ours: scan it, then [`DeliveryLedger::complete`] or [`DeliveryLedger::release`].
    Acquired,
    /// Already scanned: nothing to do.
    Done,
    /// Claimed by another worker (or an earlier attempt) whose lease has not run out:
    /// try again later — it may still fail and be released.
    InProgress,
}

/// The ledger could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("delivery ledger: {op} {delivery}: {message}")]
pub struct LedgerError {
    pub op: &'static str,
    pub delivery: String,
    pub message: String,
}

/// A boxed future (the port is used as `Arc<dyn DeliveryLedger>`).
pub type LedgerFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, LedgerError>> + Send + 'a>>;

/// Where delivery ids are claimed once.
pub trait DeliveryLedger: Send + Sync + std::fmt::Debug {
    /// Claims `delivery` for a scan that will be over within `lease` (after which a claim
    /// that was neither completed nor released — a crashed worker — may be taken again).
    fn claim<'a>(&'a self, delivery: &'a str, lease: Duration) -> LedgerFuture<'a, Claim>;
    /// The scan is done: later claims answer [`Claim::Done`].
    fn complete<'a>(&'a self, delivery: &'a str) -> LedgerFuture<'a, ()>;
    /// The scan failed or was cancelled: the next claim is [`Claim::Acquired`] again.
    fn release<'a>(&'a self, delivery: &'a str) -> LedgerFuture<'a, ()>;
}

/// The in-process ledger of `opsbot app serve` (leases are not needed: a claim lives
/// exactly as long as the process that runs its scan).
#[derive(Debug)]
pub struct MemoryLedger {
    claimed: Mutex<DeliveryLog>,
    done: Mutex<DeliveryLog>,
}

impl MemoryLedger {
    pub fn new(capacity: usize) -> Self {
        MemoryLedger {
            claimed: Mutex::new(DeliveryLog::new(capacity)),
            done: Mutex::new(DeliveryLog::new(capacity)),
        }
    }

    fn claim_now(&self, delivery: &str) -> Claim {
        if lock(&self.done).contains(delivery) {
            return Claim::Done;
        }
        if lock(&self.claimed).first_time(delivery) {
            Claim::Acquired
        } else {
            Claim::InProgress
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl DeliveryLedger for MemoryLedger {
    fn claim<'a>(&'a self, delivery: &'a str, _lease: Duration) -> LedgerFuture<'a, Claim> {
        let claim = self.claim_now(delivery);
        Box::pin(async move { Ok(claim) })
    }

    fn complete<'a>(&'a self, delivery: &'a str) -> LedgerFuture<'a, ()> {
        lock(&self.done).first_time(delivery);
        Box::pin(async { Ok(()) })
    }

    fn release<'a>(&'a self, delivery: &'a str) -> LedgerFuture<'a, ()> {
        lock(&self.claimed).forget(delivery);
        Box::pin(async { Ok(()) })
    }
}

/// A bounded set of delivery ids, oldest evicted first.
#[derive(Debug)]
pub struct DeliveryLog {
    capacity: usize,
    order: VecDeque<String>,
    seen: HashSet<String>,
}

impl DeliveryLog {
    pub fn new(capacity: usize) -> Self {
        DeliveryLog {
            capacity: capacity.max(1),
            order: VecDeque::new(),
            seen: HashSet::new(),
        }
    }

    /// Records `id`; `true` the first time, `false` when it was already recorded.
    pub fn first_time(&mut self, id: &str) -> bool {
        if self.seen.contains(id) {
            return false;
        }
        if self.order.len() >= self.capacity
            && let Some(old) = self.order.pop_front()
        {
            self.seen.remove(&old);
        }
        self.order.push_back(id.to_owned());
        self.seen.insert(id.to_owned());
        true
    }

    /// Forgets `id` (its scan failed, so GitHub's redelivery should run it again).
    pub fn forget(&mut self, id: &str) {
        if self.seen.remove(id) {
            self.order.retain(|x| x != id);
        }
    }

    pub fn contains(&self, id: &str) -> bool {
        self.seen.contains(id)
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn duplicates_are_refused_until_evicted_or_forgotten() {
        let mut log = DeliveryLog::new(2);
        assert!(log.first_time("a"));
        assert!(!log.first_time("a"));
        assert!(log.first_time("b"));
        assert!(log.first_time("c")); // evicts a
        assert_eq!(log.len(), 2);
        assert!(log.first_time("a"));
        assert!(!log.first_time("c"));
        log.forget("c");
        assert!(log.first_time("c"));
    }

    #[tokio::test]
    async fn the_memory_ledger_claims_once_and_releases_failures() {
        let ledger = MemoryLedger::new(100);
        let lease = Duration::from_secs(60);
        assert_eq!(ledger.claim("d1", lease).await.unwrap(), Claim::Acquired);
        assert_eq!(ledger.claim("d1", lease).await.unwrap(), Claim::InProgress);
        ledger.release("d1").await.unwrap();
        assert_eq!(ledger.claim("d1", lease).await.unwrap(), Claim::Acquired);
        ledger.complete("d1").await.unwrap();
        assert_eq!(ledger.claim("d1", lease).await.unwrap(), Claim::Done);
    }
}
