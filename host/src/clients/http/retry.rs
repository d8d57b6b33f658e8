//! When and how long to wait before sending a request again.
//!
//! Idempotent methods (GET, HEAD, OPTIONS, PUT, PATCH, DELETE) are retried on connection
//! errors, timeouts and the statuses the service's policy calls transient, with exponential
//! backoff and jitter, honouring `Retry-After`, within a total time budget. A POST is retried
//! only when it provably did not reach the application: the connection was never made, or a 429
//! refused it, or the service's policy recognises an answer that proves the write was rolled
//! back (NetBox: a PostgreSQL deadlock, which aborts the request's whole transaction). Anything
//! else after a POST left the socket is *ambiguous* (see `HttpErrorKind`).

use std::time::{Duration, SystemTime};

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};

/// First backoff step. Short: most transient failures (a reset keep-alive connection, a
/// restarting worker) clear within a fraction of a second.
pub const DEFAULT_INITIAL_BACKOFF: Duration = Duration::from_millis(200);
/// Longest single wait between two attempts, whatever the exponent says.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Attempts per request at most (the first one included), so a fast-failing server is not
/// hammered for the whole time budget.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 8;
/// Total time one request may spend retrying, from its first attempt.
pub const DEFAULT_RETRY_BUDGET: Duration = Duration::from_secs(60);

/// Whether a response status is worth another attempt (per service: Proxmox's 500 means
/// "not found", NetBox's 500 may be a transient database error).
pub type RetryableStatus = fn(StatusCode, &HeaderMap, &[u8]) -> bool;

/// The retry policy of one client.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// First backoff step; doubled on each retry.
    pub initial_backoff: Duration,
    /// Cap of one backoff step.
    pub max_backoff: Duration,
    /// Attempts at most, the first one included.
    pub max_attempts: u32,
    /// Total time budget for one request's retries.
    pub budget: Duration,
    /// Statuses worth retrying for an idempotent request.
    pub retryable_status: RetryableStatus,
    /// Answers that prove a non-idempotent request (a POST) changed nothing and is worth
    /// sending again (429 always is).
    pub rolled_back: RetryableStatus,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            initial_backoff: DEFAULT_INITIAL_BACKOFF,
            max_backoff: DEFAULT_MAX_BACKOFF,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            budget: DEFAULT_RETRY_BUDGET,
            retryable_status: default_retryable_status,
            rolled_back: never_rolled_back,
        }
    }
}

/// 429, 502, 503 and 504: rate limiting and gateways whose upstream is restarting.
pub fn default_retryable_status(status: StatusCode, _: &HeaderMap, _: &[u8]) -> bool {
    matches!(status.as_u16(), 429 | 502 | 503 | 504)
}

/// No answer but 429 proves a POST changed nothing, unless the service says otherwise.
pub fn never_rolled_back(_: StatusCode, _: &HeaderMap, _: &[u8]) -> bool {
    false
}

impl RetryPolicy {
    /// The wait before attempt `attempt + 1` (`attempt` counts from 1): exponential with "equal
    /// jitter" (half fixed, half random) so parallel clients do not retry in lockstep.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(16);
        let step = self
            .initial_backoff
            .saturating_mul(1u32 << exp)
            .min(self.max_backoff);
        let half = step / 2;
        let jitter = half.mul_f64(rand::random::<f64>());
        half + jitter
    }
}

/// Parses `Retry-After` (delta seconds or an HTTP date) into a wait from now.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn backoff_grows_and_is_capped() {
        let policy = RetryPolicy::default();
        for attempt in 1..30 {
            let wait = policy.backoff(attempt);
            let step = DEFAULT_INITIAL_BACKOFF
                .saturating_mul(1 << (attempt - 1).min(16))
                .min(DEFAULT_MAX_BACKOFF);
            assert!(
                wait >= step / 2 && wait <= step,
                "attempt {attempt}: {wait:?}"
            );
        }
    }

    #[test]
    fn retry_after_seconds_and_date() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        let past = httpdate::fmt_http_date(SystemTime::now() - Duration::from_secs(60));
        headers.insert(RETRY_AFTER, HeaderValue::from_str(&past).unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::ZERO));
        let future = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
        headers.insert(RETRY_AFTER, HeaderValue::from_str(&future).unwrap());
        let wait = retry_after(&headers).unwrap();
        assert!(wait > Duration::from_secs(100) && wait <= Duration::from_secs(120));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers), None);
    }
}
