//! Retrying a step's request: which answers are worth another attempt, how long to wait
//! (exponential backoff with jitter, or the server's `Retry-After`, RFC 9110 §10.2.3), and which
//! requests may be repeated at all (idempotent methods, RFC 9110 §9.2.2, or a request carrying
//! an `Idempotency-Key` header).
//!
//! Bounds: at most [`MAX_RETRIES`] retries, each wait at most [`MAX_WAIT`], and never past the
//! run's deadline (the step gives up instead and keeps the last answer).

use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, RETRY_AFTER};
use schemars::JsonSchema;
use serde::Deserialize;

use super::{HttpError, Method};

/// Most retries a step may ask for.
pub const MAX_RETRIES: u8 = 10;
/// Longest backoff a step may configure for its first retry.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Longest single wait (backoff growth stops here; a longer `Retry-After` ends the retries).
pub const MAX_WAIT: Duration = Duration::from_secs(60);

/// Statuses that say "try again later": 408, 425, 429, 500, 502, 503, 504.
pub fn is_retryable_status(status: u16) -> bool {
    matches!(status, 408 | 425 | 429 | 500 | 502 | 503 | 504)
}

/// Failures worth another attempt: timeouts and connection problems. A denied destination, an
/// oversized body or a redirect problem would fail the same way again.
pub fn is_retryable_error(e: &HttpError) -> bool {
    matches!(e, HttpError::Timeout { .. } | HttpError::Transport { .. })
}

/// Whether the method may be repeated without changing the outcome (RFC 9110 §9.2.2).
pub fn is_idempotent(method: Method) -> bool {
    matches!(method, Method::Get | Method::Head | Method::Put | Method::Delete)
}

/// `Retry-After` as a wait from `now`: delay-seconds or an HTTP-date (a date in the past is no
/// wait). Unparseable values are ignored.
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// `retry` as written in a step: `{"max": 3, "backoff_ms": 500}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, try_from = "RawRetry")]
pub struct RetryConfig {
    /// Retries after the first attempt (0–10).
    pub max: u8,
    /// The wait before the first retry in milliseconds (1–60000, default 500); it doubles with
    /// each retry, up to 60 s, and a random part of up to half of it is added or not
    /// ("equal jitter"). A `Retry-After` header replaces it.
    pub backoff_ms: u64,
}

/// `retry` before its bounds are checked.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawRetry {
    /// Retries after the first attempt (0–10).
    #[schemars(range(max = 10))]
    max: u64,
    /// The wait before the first retry in milliseconds (1–60000, default 500); it doubles with
    /// each retry up to 60 s, with jitter. A `Retry-After` header replaces it.
    #[serde(default = "default_backoff")]
    #[schemars(range(min = 1, max = 60000))]
    backoff_ms: u64,
}

fn default_backoff() -> u64 {
    500
}

impl TryFrom<RawRetry> for RetryConfig {
    type Error = String;
    fn try_from(raw: RawRetry) -> Result<Self, String> {
        let max = u8::try_from(raw.max)
            .ok()
            .filter(|m| *m <= MAX_RETRIES)
            .ok_or_else(|| format!("retry.max must be between 0 and {MAX_RETRIES}, found {}", raw.max))?;
        if raw.backoff_ms == 0 || raw.backoff_ms > MAX_BACKOFF.as_millis() as u64 {
            return Err(format!(
                "retry.backoff_ms must be between 1 and {} ms, found {}",
                MAX_BACKOFF.as_millis(),
                raw.backoff_ms
            ));
        }
        Ok(Self { max, backoff_ms: raw.backoff_ms })
    }
}

impl RetryConfig {
    /// The wait before retry number `retry` (1 for the first), before jitter: `backoff_ms ·
    /// 2^(retry-1)`, at most [`MAX_WAIT`].
    pub fn base_wait(&self, retry: u8) -> Duration {
        let factor = 1u64 << u32::from(retry.saturating_sub(1)).min(20);
        Duration::from_millis(self.backoff_ms.saturating_mul(factor)).min(MAX_WAIT)
    }

    /// The wait with equal jitter: half the base wait plus `jitter` (0.0–1.0) of the other half.
    pub fn wait(&self, retry: u8, jitter: f64) -> Duration {
        let base = self.base_wait(retry);
        base / 2 + (base / 2).mul_f64(jitter.clamp(0.0, 1.0))
    }

    /// [`Self::wait`] with a random jitter.
    pub fn jittered_wait(&self, retry: u8) -> Duration {
        self.wait(retry, rand::random::<f64>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn cfg(v: serde_json::Value) -> Result<RetryConfig, String> {
        serde_json::from_value(v).map_err(|e| e.to_string())
    }

    #[test]
    fn config_is_validated() {
        assert_eq!(cfg(serde_json::json!({"max": 3})).unwrap(), RetryConfig { max: 3, backoff_ms: 500 });
        assert!(cfg(serde_json::json!({"max": 11})).unwrap_err().contains("between 0 and 10"));
        assert!(cfg(serde_json::json!({"max": 1, "backoff_ms": 0})).unwrap_err().contains("backoff_ms"));
        assert!(cfg(serde_json::json!({"max": 1, "backof_ms": 5})).is_err());
    }

    #[test]
    fn backoff_doubles_with_bounded_jitter() {
        let r = RetryConfig { max: 5, backoff_ms: 100 };
        assert_eq!(r.base_wait(1), Duration::from_millis(100));
        assert_eq!(r.base_wait(3), Duration::from_millis(400));
        assert_eq!(r.wait(3, 0.0), Duration::from_millis(200));
        assert_eq!(r.wait(3, 1.0), Duration::from_millis(400));
        assert_eq!(RetryConfig { max: 10, backoff_ms: 60_000 }.base_wait(10), MAX_WAIT);
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let mut h = HeaderMap::new();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        h.insert(RETRY_AFTER, HeaderValue::from_str(&later).unwrap());
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(30)));
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h, now), None);
    }
}
