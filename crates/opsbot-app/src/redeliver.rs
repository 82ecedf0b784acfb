//! Nothing lost: GitHub does not redeliver a failed delivery by itself. The sweep lists the
//! App's recent deliveries (`GET /app/hook/deliveries`, newest first, paged by cursor) and
//! asks GitHub to send again (`POST /app/hook/deliveries/{id}/attempts`):
//!
//! - every delivery whose attempts all failed in a way a retry can fix (no answer, 408,
//!   429, 5xx — a 503 from a full queue, a crash while answering, a deploy);
//! - every delivery GitHub saw succeed that leads to a scan, is older than the grace
//!   period, and has no completed, not-cancelled "opsbot / secrets" run for its delivery
//!   id (accepted with 202 and then lost to a crash, or cancelled by a shutdown). Its
//!   payload is read back (`GET /app/hook/deliveries/{id}`) to know which commit to look at.
//!
//! Each failed attempt is asked for once per sweeper; with a [`RedeliveryLog`] (on AWS the
//! delivery table, [`crate::dynamodb::DynamoLedger`]) once across every sweeper, so
//! overlapping or cold-started sweeps do not ask twice. Deciding is pure ([`plan`]); the
//! I/O is in [`Sweeper`]. `opsbot app redeliver` runs one sweep; `opsbot app serve` runs it
//! periodically; in Lambda mode the worker runs one per scheduled event
//! ([`crate::lambda::QueueWorker::handle_event`]).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Method;
use opsbot_core::github::GitHub;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::dedup::LedgerFuture;
use crate::server::AppState;
use crate::webhook::{self, Route};
use crate::worker::{Worker, WorkerError};

/// Events whose deliveries lead to scans (the others are never verified).
const SCAN_EVENTS: &[&str] = &["push", "pull_request", "check_suite", "check_run"];
/// Pages of 100 deliveries read at most per sweep.
const MAX_PAGES: usize = 50;

/// How the periodic sweep runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedeliverySettings {
    /// Time between sweeps (the first runs at start-up).
    pub interval: Duration,
    /// How far back each sweep looks (GitHub keeps deliveries for 3 days).
    pub window: Duration,
    /// A successful delivery younger than this is not verified yet (its scan may still be
    /// queued, here or on another replica).
    pub grace: Duration,
    /// Successful deliveries verified at most per sweep (each costs 2–3 API calls).
    pub max_verifications: usize,
}

impl Default for RedeliverySettings {
    fn default() -> Self {
        RedeliverySettings {
            interval: Duration::from_secs(300),
            window: Duration::from_secs(3600),
            grace: Duration::from_secs(600),
            max_verifications: 200,
        }
    }
}

/// One entry of `GET /app/hook/deliveries`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Delivery {
    pub id: u64,
    pub guid: String,
    #[serde(with = "time::serde::rfc3339")]
    pub delivered_at: OffsetDateTime,
    #[serde(default)]
    pub redelivery: bool,
    /// 0 when GitHub got no answer.
    #[serde(default)]
    pub status_code: u16,
    pub event: String,
    #[serde(default)]
    pub action: Option<String>,
}

/// What to do with one delivery id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Every attempt failed: redeliver (the newest attempt's id).
    Redeliver { id: u64, guid: String, status: u16 },
    /// It succeeded: check that its scan was done, else redeliver (the newest attempt's
    /// id; every attempt carries the same payload).
    Verify {
        id: u64,
        guid: String,
        event: String,
    },
}

fn retryable(status: u16) -> bool {
    status == 0 || status == 408 || status == 429 || status >= 500
}

/// Decides, per delivery id, from the listing (newest first). `asked(guid)` is the attempt
/// this sweeper last asked GitHub to redeliver for that id: a failed attempt is asked for
/// once (a redelivery that fails again is a new attempt, asked for once in turn), and a
/// successful delivery is verified once per attempt (a redelivery that was answered without
/// a scan is verified once in turn). `finished` says whether this process completed an id's
/// job.
pub fn plan(
    listing: &[Delivery],
    now: OffsetDateTime,
    grace: Duration,
    asked: impl Fn(&str) -> Option<u64>,
    finished: impl Fn(&str) -> bool,
) -> Vec<Step> {
    let mut seen = HashSet::new();
    let mut steps = Vec::new();
    for d in listing {
        if !seen.insert(d.guid.as_str()) {
            continue;
        }
        let asked_for = asked(&d.guid);
        let attempts: Vec<&Delivery> = listing.iter().filter(|x| x.guid == d.guid).collect();
        let succeeded = attempts.iter().any(|x| (200..300).contains(&x.status_code));
        if !succeeded {
            if asked_for.is_some_and(|id| id >= d.id) {
                continue;
            }
            if attempts.iter().all(|x| retryable(x.status_code)) {
                steps.push(Step::Redeliver {
                    id: d.id,
                    guid: d.guid.clone(),
                    status: d.status_code,
                });
            }
            continue;
        }
        // Verified once per attempt: a redelivery we asked for that did not lead to a scan
        // either (answered while another replica's claim still held it, say) is a newer
        // attempt, verified once in turn after the grace period.
        if asked_for.is_some_and(|id| id >= d.id) {
            continue;
        }
        let age = now - d.delivered_at;
        if SCAN_EVENTS.contains(&d.event.as_str())
            && age >= time::Duration::try_from(grace).unwrap_or(time::Duration::ZERO)
            && !finished(&d.guid)
        {
            steps.push(Step::Verify {
                id: d.id,
                guid: d.guid.clone(),
                event: d.event.clone(),
            });
        }
    }
    steps
}

/// What one sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    pub listed: usize,
    pub distinct: usize,
    pub verified: usize,
    /// Successful deliveries the [`RedeliveryLog`] knows were scanned (not read on GitHub).
    pub known_scanned: usize,
    /// Delivery ids redelivered, with why.
    pub redelivered: Vec<(String, String)>,
    /// Delivery ids another sweeper already asked for (the [`RedeliveryLog`] said so).
    pub already_asked: Vec<String>,
    /// Calls that failed (the next sweep tries again).
    pub errors: Vec<String>,
}

/// Which delivery attempts some sweeper has asked GitHub to redeliver, shared by every
/// sweeper (replicas, Lambda invocations, cold starts), so an attempt is asked for once.
pub trait RedeliveryLog: Send + Sync + std::fmt::Debug {
    /// Records that attempt `attempt` of delivery `guid` is being asked for: `true` when no
    /// sweeper asked for it or a later attempt yet, `false` when one did.
    fn first_ask<'a>(&'a self, guid: &'a str, attempt: u64) -> LedgerFuture<'a, bool>;
    /// The request for `attempt` failed: forget it, so the next sweep asks again.
    fn forget<'a>(&'a self, guid: &'a str, attempt: u64) -> LedgerFuture<'a, ()>;
    /// Which of `guids` the log knows were scanned to the end (by any worker), so the
    /// sweep need not read their check runs from GitHub. Unknown ones are verified there.
    fn scanned<'a>(&'a self, guids: &'a [String]) -> LedgerFuture<'a, HashSet<String>> {
        let _ = guids;
        Box::pin(async { Ok(HashSet::new()) })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error(transparent)]
    GitHub(#[from] opsbot_core::GitHubError),
}

/// Lists, verifies and redelivers; remembers what it asked for.
#[derive(Debug)]
pub struct Sweeper {
    app: GitHub,
    settings: RedeliverySettings,
    /// Delivery id → the attempt last asked to be redelivered.
    asked: Mutex<HashMap<String, u64>>,
    /// Shared with other sweepers, when there are any.
    log: Option<Arc<dyn RedeliveryLog>>,
}

impl Sweeper {
    /// `app` is the App-level client (JWT).
    pub fn new(app: GitHub, settings: RedeliverySettings) -> Self {
        Sweeper {
            app,
            settings,
            asked: Mutex::new(HashMap::new()),
            log: None,
        }
    }

    /// Asks for each attempt only when `log` says no other sweeper has.
    pub fn with_log(mut self, log: Arc<dyn RedeliveryLog>) -> Self {
        self.log = Some(log);
        self
    }

    pub fn settings(&self) -> &RedeliverySettings {
        &self.settings
    }

    fn asked(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.asked.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Deliveries since `since`, newest first (cursor pagination through `Link`).
    pub async fn list(&self, since: OffsetDateTime) -> Result<Vec<Delivery>, SweepError> {
        let mut out = Vec::new();
        let mut route = Some("/app/hook/deliveries?per_page=100".to_owned());
        let mut pages = 0;
        while let Some(r) = route.take() {
            pages += 1;
            let resp = self
                .app
                .send::<()>("list the App's webhook deliveries", Method::GET, &r, None)
                .await?;
            let page: Vec<Delivery> = serde_json::from_slice(&resp.body).map_err(|e| {
                opsbot_core::GitHubError::Decode {
                    op: "list the App's webhook deliveries".to_owned(),
                    message: e.to_string(),
                }
            })?;
            let older = page.iter().any(|d| d.delivered_at < since);
            out.extend(page.into_iter().filter(|d| d.delivered_at >= since));
            if !older && pages < MAX_PAGES {
                route = resp.next_page();
            }
        }
        Ok(out)
    }

    /// One sweep over the deliveries of the last `window`.
    pub async fn sweep(
        &self,
        worker: &Worker,
        window: Duration,
        finished: impl Fn(&str) -> bool,
    ) -> Result<SweepReport, SweepError> {
        let now = OffsetDateTime::now_utc();
        let since = now - time::Duration::try_from(window).unwrap_or(time::Duration::HOUR);
        let listing = self.list(since).await?;
        // Deliveries a worker anywhere has scanned (the shared log), so their check runs
        // need not be read: every successful one would cost 2–3 API calls per sweep.
        let mut errors = Vec::new();
        let scanned = match &self.log {
            Some(log) => {
                let ok: Vec<String> = listing
                    .iter()
                    .filter(|d| (200..300).contains(&d.status_code))
                    .map(|d| d.guid.clone())
                    .collect::<HashSet<_>>()
                    .into_iter()
                    .collect();
                match log.scanned(&ok).await {
                    Ok(done) => done,
                    Err(e) => {
                        errors.push(e.to_string());
                        HashSet::new()
                    }
                }
            }
            None => HashSet::new(),
        };
        let steps = {
            let asked = self.asked();
            plan(
                &listing,
                now,
                self.settings.grace,
                |g| asked.get(g).copied(),
                |g| finished(g) || scanned.contains(g),
            )
        };
        let mut report = SweepReport {
            known_scanned: scanned.len(),
            errors,
            listed: listing.len(),
            distinct: listing
                .iter()
                .map(|d| d.guid.as_str())
                .collect::<HashSet<_>>()
                .len(),
            ..Default::default()
        };
        for step in steps {
            match step {
                Step::Redeliver { id, guid, status } => {
                    let why = if status == 0 {
                        "no answer".to_owned()
                    } else {
                        format!("answered {status}")
                    };
                    self.redeliver(id, &guid, why, &mut report).await;
                }
                Step::Verify { id, guid, event } => {
                    if report.verified >= self.settings.max_verifications {
                        continue;
                    }
                    report.verified += 1;
                    match self.scan_done(worker, id, &guid, &event).await {
                        Ok(true) => {}
                        Ok(false) => {
                            self.redeliver(
                                id,
                                &guid,
                                "accepted but never scanned".to_owned(),
                                &mut report,
                            )
                            .await;
                        }
                        Err(e) => report.errors.push(format!("delivery {guid}: {e}")),
                    }
                }
            }
        }
        Ok(report)
    }

    /// Whether the scan of a successful delivery is done (reads its payload back).
    async fn scan_done(
        &self,
        worker: &Worker,
        id: u64,
        guid: &str,
        event: &str,
    ) -> Result<bool, WorkerError> {
        #[derive(Deserialize)]
        struct Full {
            request: FullRequest,
        }
        #[derive(Deserialize)]
        struct FullRequest {
            payload: serde_json::Value,
        }
        let full: Full = self
            .app
            .call::<_, ()>(
                &format!("read webhook delivery {id} ({guid})"),
                Method::GET,
                &format!("/app/hook/deliveries/{id}"),
                None,
            )
            .await?;
        let body = serde_json::to_vec(&full.request.payload).unwrap_or_default();
        match webhook::route(event, guid, &body) {
            Ok(Route::Scan(job)) => worker.job_done(&job).await,
            // Nothing to scan, or a payload that cannot lead to a scan anyway.
            _ => Ok(true),
        }
    }

    async fn redeliver(&self, id: u64, guid: &str, why: String, report: &mut SweepReport) {
        {
            let mut asked = self.asked();
            if asked.len() >= 50_000 {
                asked.clear();
            }
            // The redelivery's own attempt will have a higher id than any listed now.
            let newest = id.max(asked.get(guid).copied().unwrap_or(0));
            asked.insert(guid.to_owned(), newest);
        }
        if let Some(log) = &self.log {
            match log.first_ask(guid, id).await {
                Ok(true) => {}
                Ok(false) => {
                    info!(delivery = %guid, id, "already asked for by another sweep");
                    report.already_asked.push(guid.to_owned());
                    return;
                }
                Err(e) => {
                    // Not asked: the next sweep tries again.
                    self.asked().remove(guid);
                    report.errors.push(e.to_string());
                    return;
                }
            }
        }
        match self
            .app
            .send::<()>(
                &format!("redeliver webhook delivery {id} ({guid})"),
                Method::POST,
                &format!("/app/hook/deliveries/{id}/attempts"),
                None,
            )
            .await
        {
            Ok(_) => {
                info!(delivery = %guid, id, reason = %why, "asked GitHub to redeliver");
                report.redelivered.push((guid.to_owned(), why));
            }
            Err(e) => {
                // Asked again by the next sweep.
                self.asked().remove(guid);
                if let Some(log) = &self.log
                    && let Err(forget) = log.forget(guid, id).await
                {
                    warn!(delivery = %guid, id, error = %forget, "cannot forget the failed redelivery request (asked again once its record expires)");
                }
                report.errors.push(e.to_string());
            }
        }
    }

    /// Sweeps at start-up and then every `interval` until `stop`.
    pub async fn run_periodic(&self, state: &AppState, stop: CancellationToken) {
        loop {
            match self
                .sweep(state.worker(), self.settings.window, |g| {
                    state.finished_here(g)
                })
                .await
            {
                Ok(r) => info!(
                    listed = r.listed,
                    verified = r.verified,
                    redelivered = r.redelivered.len(),
                    errors = r.errors.len(),
                    "redelivery sweep"
                ),
                Err(e) => warn!(error = %e, "redelivery sweep failed"),
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(self.settings.interval) => {}
            }
        }
    }
}

/// Parses `90s`, `30m`, `6h`, `3d` (a bare number is seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (num, unit) = t
        .find(|c: char| !c.is_ascii_digit())
        .map_or((t, ""), |i| t.split_at(i));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{text}`: expected a duration such as 90s, 30m, 6h or 3d"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => {
            return Err(format!(
                "`{text}`: unknown unit `{unit}` (use s, m, h or d)"
            ));
        }
    };
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn d(id: u64, guid: &str, status: u16, mins_ago: i64, event: &str) -> Delivery {
        Delivery {
            id,
            guid: guid.into(),
            delivered_at: OffsetDateTime::UNIX_EPOCH + time::Duration::days(1)
                - time::Duration::minutes(mins_ago),
            redelivery: false,
            status_code: status,
            event: event.into(),
            action: None,
        }
    }

    #[test]
    fn failed_deliveries_are_redelivered_once_and_successes_verified_after_grace() {
        let now = OffsetDateTime::UNIX_EPOCH + time::Duration::days(1);
        let listing = vec![
            d(9, "a", 503, 1, "push"),  // newest attempt of a: failed again
            d(8, "b", 202, 2, "push"),  // young: not verified yet
            d(7, "c", 202, 30, "push"), // verify
            d(6, "a", 503, 40, "push"),
            d(5, "e", 401, 50, "push"),       // not retryable
            d(4, "f", 0, 50, "pull_request"), // no answer
            d(3, "g", 202, 50, "issues"),     // not a scan event
            d(2, "h", 503, 55, "push"),
            d(1, "h", 202, 50, "push"), // h: redelivered and then succeeded
            d(0, "i", 202, 50, "push"), // finished here
        ];
        let steps = plan(
            &listing,
            now,
            Duration::from_secs(600),
            |g| (g == "f2").then_some(1),
            |g| g == "i",
        );
        assert_eq!(
            steps,
            vec![
                Step::Redeliver {
                    id: 9,
                    guid: "a".into(),
                    status: 503
                },
                Step::Verify {
                    id: 7,
                    guid: "c".into(),
                    event: "push".into()
                },
                Step::Redeliver {
                    id: 4,
                    guid: "f".into(),
                    status: 0
                },
                Step::Verify {
                    id: 2,
                    guid: "h".into(),
                    event: "push".into()
                },
            ]
        );
        // Already asked for these attempts: nothing.
        let steps = plan(
            &listing,
            now,
            Duration::from_secs(600),
            |_| Some(9),
            |_| false,
        );
        assert!(steps.is_empty());
        // A redelivery we asked for that was answered but did not scan (a newer attempt)
        // is verified again; the attempts already asked for are not.
        let steps = plan(
            &listing,
            now,
            Duration::from_secs(600),
            |g| match g {
                "c" => Some(6),
                "h" => Some(2),
                _ => Some(9),
            },
            |_| false,
        );
        assert_eq!(
            steps,
            vec![Step::Verify {
                id: 7,
                guid: "c".into(),
                event: "push".into()
            }]
        );
        // A redelivery that failed again (a newer attempt) is asked for again.
        let steps = plan(
            &listing,
            now,
            Duration::from_secs(600),
            |g| (g == "a").then_some(6),
            |_| true,
        );
        assert_eq!(
            steps,
            vec![
                Step::Redeliver {
                    id: 9,
                    guid: "a".into(),
                    status: 503
                },
                Step::Redeliver {
                    id: 4,
                    guid: "f".into(),
                    status: 0
                },
            ]
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse_duration("6h").unwrap(), Duration::from_secs(21600));
        assert_eq!(parse_duration("3d").unwrap(), Duration::from_secs(259_200));
        assert_eq!(parse_duration("15").unwrap(), Duration::from_secs(15));
        assert!(parse_duration("h").unwrap_err().contains("expected"));
        assert!(parse_duration("5y").unwrap_err().contains("unit"));
    }
}
