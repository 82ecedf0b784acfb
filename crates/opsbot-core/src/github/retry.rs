//! When to try a GitHub call again, and how long to wait: a pure policy, so it is
//! unit-tested without a server.
//!
//! Retried: transport errors and 5xx (exponential backoff with jitter), 429, and 403s that
//! GitHub marks as rate limits (`Retry-After`, `x-ratelimit-remaining: 0` with
//! `x-ratelimit-reset`, or a "secondary rate limit" message — [`says_rate_limited`], read on
//! every path, including octocrab's own installation-token request, which keeps no
//! headers). Everything is bounded by a
//! total time budget: a wait that would overrun it fails at once instead of sleeping.

use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first one included.
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Total time one call may take across its attempts and waits.
    pub budget: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(20),
            budget: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// No waiting at all (unit tests of callers).
    pub fn none() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// `OPSBOT_GITHUB_RETRY_BUDGET_SECS` (total seconds per call, may be fractional),
    /// `OPSBOT_GITHUB_MAX_ATTEMPTS`, `OPSBOT_GITHUB_BACKOFF_MS` (first backoff).
    pub fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let mut policy = RetryPolicy::default();
        if let Some(v) = get("OPSBOT_GITHUB_RETRY_BUDGET_SECS") {
            let secs: f64 = v
                .trim()
                .parse()
                .ok()
                .filter(|s: &f64| s.is_finite() && *s >= 0.0)
                .ok_or_else(|| format!("must be a number of seconds, got `{v}`"))?;
            policy.budget = Duration::from_secs_f64(secs);
        }
        if let Some(v) = get("OPSBOT_GITHUB_MAX_ATTEMPTS") {
            policy.max_attempts = v
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| format!("OPSBOT_GITHUB_MAX_ATTEMPTS must be >= 1, got `{v}`"))?;
        }
        if let Some(v) = get("OPSBOT_GITHUB_BACKOFF_MS") {
            let ms = v
                .trim()
                .parse::<u64>()
                .map_err(|_| format!("OPSBOT_GITHUB_BACKOFF_MS must be milliseconds, got `{v}`"))?;
            policy.initial_backoff = Duration::from_millis(ms);
        }
        Ok(policy)
    }

    /// Backoff before attempt `attempt + 1` (attempt counts from 1), with up to 25% jitter.
    pub fn backoff(&self, attempt: u32, jitter: f64) -> Duration {
        let exp = 2u32.saturating_pow(attempt.saturating_sub(1));
        let base = self
            .initial_backoff
            .saturating_mul(exp)
            .min(self.max_backoff);
        base.mul_f64(1.0 + jitter.clamp(0.0, 1.0) * 0.25)
    }
}

/// What a failed attempt looked like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// No HTTP response (connection refused, reset, timeout).
    Transport,
    /// An HTTP error response.
    Status {
        status: u16,
        /// `Retry-After`, seconds.
        retry_after: Option<u64>,
        /// `x-ratelimit-remaining`.
        remaining: Option<u64>,
        /// `x-ratelimit-reset`, unix seconds.
        reset: Option<u64>,
        /// GitHub's message mentions a secondary rate limit / abuse detection.
        says_rate_limited: bool,
    },
}

/// Whether GitHub's error message says it is rate limiting (secondary rate limit, abuse
/// detection). Applied to every error message, whichever path it came by: a 403 from
/// octocrab's own installation-token request carries no headers, only these words.
pub fn says_rate_limited(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("rate limit") || m.contains("abuse")
}

impl Failure {
    /// A failure from an HTTP status, GitHub's message and the rate-limit headers
    /// (`None` when the path that raised it kept none).
    pub fn from_status(
        status: u16,
        message: &str,
        retry_after: Option<u64>,
        remaining: Option<u64>,
        reset: Option<u64>,
    ) -> Failure {
        Failure::Status {
            status,
            retry_after,
            remaining,
            reset,
            says_rate_limited: says_rate_limited(message),
        }
    }
}

/// The policy's answer for one failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Wait this long, then try again.
    RetryAfter(Duration),
    /// Not worth retrying (a 404, a 422, a plain 403...).
    GiveUp,
    /// Worth retrying, but the attempts or the time budget are used up.
    Exhausted,
    /// GitHub asks us to wait longer than the budget left.
    WaitTooLong(Duration),
}

impl Failure {
    /// Is this GitHub rate limiting us (primary or secondary)?
    pub fn is_rate_limit(&self) -> bool {
        match self {
            Failure::Transport => false,
            Failure::Status {
                status,
                retry_after,
                remaining,
                says_rate_limited,
                ..
            } => {
                *status == 429
                    || (*status == 403
                        && (retry_after.is_some() || *remaining == Some(0) || *says_rate_limited))
            }
        }
    }

    fn is_retryable(&self) -> bool {
        match self {
            Failure::Transport => true,
            Failure::Status { status, .. } => {
                matches!(status, 500 | 502 | 503 | 504) || self.is_rate_limit()
            }
        }
    }
}

/// Decides what to do after `attempt` (1-based) failed with `failure`, `elapsed` into the
/// call, at unix time `now_unix`; `jitter` in `0..1` spreads concurrent clients apart.
pub fn decide(
    policy: &RetryPolicy,
    failure: &Failure,
    attempt: u32,
    elapsed: Duration,
    now_unix: u64,
    jitter: f64,
) -> Decision {
    if !failure.is_retryable() {
        return Decision::GiveUp;
    }
    if attempt >= policy.max_attempts {
        return Decision::Exhausted;
    }
    let left = policy.budget.saturating_sub(elapsed);
    let wait = match failure {
        Failure::Status {
            retry_after: Some(secs),
            ..
        } if failure.is_rate_limit() => Duration::from_secs(*secs),
        Failure::Status {
            remaining: Some(0),
            reset: Some(reset),
            ..
        } if failure.is_rate_limit() => Duration::from_secs(reset.saturating_sub(now_unix).max(1)),
        _ => policy.backoff(attempt, jitter),
    };
    if wait > left {
        return if failure.is_rate_limit() {
            Decision::WaitTooLong(wait)
        } else {
            Decision::Exhausted
        };
    }
    Decision::RetryAfter(wait)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: u16) -> Failure {
        Failure::Status {
            status,
            retry_after: None,
            remaining: None,
            reset: None,
            says_rate_limited: false,
        }
    }

    #[test]
    fn server_errors_back_off_exponentially() {
        let p = RetryPolicy::default();
        assert_eq!(
            decide(&p, &status(502), 1, Duration::ZERO, 0, 0.0),
            Decision::RetryAfter(Duration::from_millis(500))
        );
        assert_eq!(
            decide(&p, &status(503), 3, Duration::ZERO, 0, 0.0),
            Decision::RetryAfter(Duration::from_secs(2))
        );
        assert_eq!(
            decide(&p, &status(502), 6, Duration::ZERO, 0, 0.0),
            Decision::Exhausted
        );
    }

    #[test]
    fn client_errors_are_final() {
        let p = RetryPolicy::default();
        for s in [400, 401, 403, 404, 409, 422] {
            assert_eq!(
                decide(&p, &status(s), 1, Duration::ZERO, 0, 0.0),
                Decision::GiveUp,
                "{s}"
            );
        }
    }

    #[test]
    fn secondary_rate_limit_honours_retry_after_within_budget() {
        let p = RetryPolicy::default();
        let f = Failure::Status {
            status: 403,
            retry_after: Some(3),
            remaining: None,
            reset: None,
            says_rate_limited: true,
        };
        assert_eq!(
            decide(&p, &f, 1, Duration::ZERO, 0, 0.0),
            Decision::RetryAfter(Duration::from_secs(3))
        );
        assert_eq!(
            decide(&p, &f, 1, Duration::from_secs(58), 0, 0.0),
            Decision::WaitTooLong(Duration::from_secs(3))
        );
    }

    #[test]
    fn primary_rate_limit_waits_until_reset() {
        let p = RetryPolicy::default();
        let f = Failure::Status {
            status: 403,
            retry_after: None,
            remaining: Some(0),
            reset: Some(1_010),
            says_rate_limited: false,
        };
        assert_eq!(
            decide(&p, &f, 1, Duration::ZERO, 1_000, 0.0),
            Decision::RetryAfter(Duration::from_secs(10))
        );
    }

    #[test]
    fn a_secondary_rate_limit_message_without_headers_is_retried() {
        // As octocrab reports a 403 on POST /app/installations/{id}/access_tokens: the
        // status and GitHub's message, no Retry-After.
        let p = RetryPolicy::default();
        let f = Failure::from_status(
            403,
            "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
            None,
            None,
            None,
        );
        assert!(f.is_rate_limit());
        assert_eq!(
            decide(&p, &f, 1, Duration::ZERO, 0, 0.0),
            Decision::RetryAfter(Duration::from_millis(500))
        );
        let abuse = Failure::from_status(
            403,
            "You have triggered an abuse detection mechanism.",
            None,
            None,
            None,
        );
        assert!(abuse.is_rate_limit());
        // A plain 403 (no permission) stays final.
        let denied = Failure::from_status(
            403,
            "Resource not accessible by integration",
            None,
            None,
            None,
        );
        assert_eq!(
            decide(&p, &denied, 1, Duration::ZERO, 0, 0.0),
            Decision::GiveUp
        );
    }

    #[test]
    fn jitter_is_bounded() {
        let p = RetryPolicy::default();
        let w = p.backoff(1, 1.0);
        assert!(w >= Duration::from_millis(500) && w <= Duration::from_millis(625));
        assert_eq!(p.backoff(30, 0.0), p.max_backoff);
    }

    #[test]
    fn env_knobs_parse_and_reject() {
        let get = |k: &str| match k {
            "OPSBOT_GITHUB_RETRY_BUDGET_SECS" => Some("1.5".to_string()),
            "OPSBOT_GITHUB_BACKOFF_MS" => Some("10".to_string()),
            _ => None,
        };
        let p = RetryPolicy::from_lookup(&get).unwrap_or_default();
        assert_eq!(p.budget, Duration::from_millis(1500));
        assert_eq!(p.initial_backoff, Duration::from_millis(10));
        let bad = |k: &str| (k == "OPSBOT_GITHUB_RETRY_BUDGET_SECS").then(|| "soon".to_string());
        assert!(RetryPolicy::from_lookup(&bad).is_err());
    }
}
