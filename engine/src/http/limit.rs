//! One integration's request rate ([`RateLimiter`]): a token bucket configured on the
//! integration (`--rate-limit 5/s`, with a burst), and what the API says of its own limit — a
//! 429's `Retry-After` (RFC 9110 §10.2.3), or a `RateLimit-Remaining`/`X-RateLimit-Remaining`
//! of 0 with its reset (the IETF RateLimit header draft, and the `X-` headers HubSpot, GitHub
//! and most CRMs send) — after which every request of the integration waits until the reset.
//!
//! A request that finds the bucket empty or the API's hold in force waits in a queue of at most
//! [`MAX_WAITING`] requests per integration, and never past its deadline: then it fails with
//! [`HttpError::RateLimited`] instead of waiting in vain. Per process: with several instances,
//! each keeps its own bucket (give each instance its share of the API's limit); the API's own
//! answers hold every instance that receives them.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use reqwest::header::HeaderMap;
use tokio::time::Instant;

use super::HttpError;
use crate::rates::Rate;

/// Most requests of one integration waiting for the rate limit at once; more fail at once.
pub const MAX_WAITING: usize = 1000;

/// Longest hold an API's answer may impose (a longer `Retry-After` or reset is believed only up
/// to this): one hour.
pub const MAX_HOLD: Duration = Duration::from_secs(3600);

/// The rate limit of one integration. Cheap to share (`Arc`).
#[derive(Debug)]
pub struct RateLimiter {
    rate: Option<Rate>,
    state: Mutex<State>,
    waiting: AtomicUsize,
}

#[derive(Debug)]
struct State {
    /// Takes available, and when they were counted.
    tokens: f64,
    counted: Instant,
    /// No request before this (the API's own answer).
    hold_until: Option<Instant>,
}

/// Leaves the queue when dropped (a request whose caller went away counts no more).
struct InQueue<'a>(&'a AtomicUsize);

impl Drop for InQueue<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl RateLimiter {
    /// A limiter at `rate` (`None`: only what the API says limits it).
    pub fn new(rate: Option<Rate>) -> Self {
        let burst = rate.map_or(0.0, |r| r.burst);
        Self {
            rate,
            state: Mutex::new(State { tokens: burst, counted: Instant::now(), hold_until: None }),
            waiting: AtomicUsize::new(0),
        }
    }

    /// The configured rate.
    pub fn rate(&self) -> Option<Rate> {
        self.rate
    }

    /// How long to wait before a request may go now, taking its place when none.
    fn next_wait(&self, now: Instant) -> Option<Duration> {
        let mut s = crate::sync::lock(&self.state);
        if let Some(until) = s.hold_until {
            if until > now {
                return Some(until - now);
            }
            s.hold_until = None;
        }
        let rate = self.rate?;
        let elapsed = now.saturating_duration_since(s.counted).as_secs_f64();
        s.tokens = (s.tokens + elapsed * rate.per_second).min(rate.burst);
        s.counted = now;
        if s.tokens >= 1.0 {
            s.tokens -= 1.0;
            None
        } else {
            let missing = (1.0 - s.tokens) / rate.per_second.max(f64::MIN_POSITIVE);
            Some(Duration::from_secs_f64(missing.max(0.001)))
        }
    }

    /// Waits until a request of `integration` may be sent, but not past `deadline`; returns how
    /// long it waited.
    ///
    /// # Errors
    /// [`HttpError::RateLimited`] when the wait would pass the deadline or the queue is full.
    pub async fn acquire(&self, integration: &str, deadline: Instant) -> Result<Duration, HttpError> {
        let start = Instant::now();
        let Some(mut wait) = self.next_wait(start) else { return Ok(Duration::ZERO) };
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= MAX_WAITING {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(HttpError::RateLimited {
                integration: integration.to_string(),
                reason: format!("{MAX_WAITING} requests are already waiting for its rate limit"),
            });
        }
        let _queued = InQueue(&self.waiting);
        loop {
            let now = Instant::now();
            if now + wait >= deadline {
                return Err(HttpError::RateLimited {
                    integration: integration.to_string(),
                    reason: format!(
                        "after waiting {} ms, waiting {} ms more for its rate limit would pass the step's deadline",
                        start.elapsed().as_millis(),
                        wait.as_millis()
                    ),
                });
            }
            tokio::time::sleep(wait).await;
            match self.next_wait(Instant::now()) {
                None => return Ok(start.elapsed()),
                Some(w) => wait = w,
            }
        }
    }

    /// Holds every request for `wait` from now (a 429's `Retry-After`), at most [`MAX_HOLD`];
    /// a longer hold already in force is kept.
    pub fn hold(&self, wait: Duration) {
        let until = Instant::now() + wait.min(MAX_HOLD);
        let mut s = crate::sync::lock(&self.state);
        if s.hold_until.is_none_or(|h| h < until) {
            s.hold_until = Some(until);
        }
    }

    /// Learns from an answer's headers: with `RateLimit-Remaining` or `X-RateLimit-Remaining`
    /// at 0, holds until its reset (`RateLimit-Reset`/`X-RateLimit-Reset` in seconds, a value
    /// over a billion read as a Unix time as GitHub sends it; HubSpot's
    /// `X-HubSpot-RateLimit-Interval-Milliseconds` when there is no reset; one second when
    /// nothing says). Returns the hold, if any.
    pub fn learn(&self, headers: &HeaderMap, now_unix_s: u64) -> Option<Duration> {
        let number = |name: &str| headers.get(name)?.to_str().ok()?.trim().parse::<u64>().ok();
        let remaining = number("ratelimit-remaining")
            .or_else(|| number("x-ratelimit-remaining"))
            .or_else(|| number("x-hubspot-ratelimit-remaining"))?;
        if remaining > 0 {
            return None;
        }
        // Seconds to wait; or a Unix time, in seconds (GitHub) or milliseconds (some gateways).
        let reset = number("ratelimit-reset").or_else(|| number("x-ratelimit-reset")).map(|r| {
            if r > 1_000_000_000_000 {
                Duration::from_millis(r.saturating_sub(now_unix_s.saturating_mul(1000)))
            } else if r > 1_000_000_000 {
                Duration::from_secs(r.saturating_sub(now_unix_s))
            } else {
                Duration::from_secs(r)
            }
        });
        let interval = number("x-hubspot-ratelimit-interval-milliseconds").map(Duration::from_millis);
        let wait = reset.or(interval).unwrap_or(Duration::from_secs(1));
        self.hold(wait);
        Some(wait.min(MAX_HOLD))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(3600)
    }

    #[tokio::test(start_paused = true)]
    async fn a_configured_rate_makes_requests_wait_their_turn() {
        let l = RateLimiter::new(Some(Rate { per_second: 2.0, burst: 2.0 }));
        assert_eq!(l.acquire("crm", far()).await.unwrap(), Duration::ZERO);
        assert_eq!(l.acquire("crm", far()).await.unwrap(), Duration::ZERO, "the burst");
        let waited = l.acquire("crm", far()).await.unwrap();
        assert_eq!(waited, Duration::from_millis(500), "two a second: the third waits half a second");
        let soon = Instant::now() + Duration::from_millis(100);
        let e = l.acquire("crm", soon).await.unwrap_err();
        assert!(e.to_string().contains("would pass the step's deadline"), "{e}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_apis_own_answers_hold_every_request() {
        let l = RateLimiter::new(None);
        assert_eq!(l.acquire("crm", far()).await.unwrap(), Duration::ZERO, "no rate: no wait");
        l.hold(Duration::from_secs(2));
        assert_eq!(l.acquire("crm", far()).await.unwrap(), Duration::from_secs(2));
        let mut h = HeaderMap::new();
        h.insert("x-ratelimit-remaining", "0".parse().unwrap());
        h.insert("x-ratelimit-reset", "1700000005".parse().unwrap());
        assert_eq!(l.learn(&h, 1_700_000_000), Some(Duration::from_secs(5)), "a Unix reset");
        h.insert("x-ratelimit-reset", "3".parse().unwrap());
        assert_eq!(l.learn(&h, 1_700_000_000), Some(Duration::from_secs(3)), "seconds");
        h.insert("x-ratelimit-reset", "1700000004500".parse().unwrap());
        assert_eq!(l.learn(&h, 1_700_000_000), Some(Duration::from_millis(4500)), "a Unix time in milliseconds");
        h.insert("x-ratelimit-remaining", "7".parse().unwrap());
        assert_eq!(l.learn(&h, 1_700_000_000), None, "requests left: no hold");
        let mut hubspot = HeaderMap::new();
        hubspot.insert("x-hubspot-ratelimit-remaining", "0".parse().unwrap());
        hubspot.insert("x-hubspot-ratelimit-interval-milliseconds", "10000".parse().unwrap());
        assert_eq!(l.learn(&hubspot, 0), Some(Duration::from_secs(10)));
        assert_eq!(l.acquire("crm", far()).await.unwrap(), Duration::from_secs(10), "the longest hold wins");
        l.hold(Duration::from_secs(86_400 * 365));
        let e = l.acquire("crm", far()).await.unwrap_err();
        assert!(e.to_string().contains("deadline"), "a hold is at most an hour: {e}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_queue_is_bounded() {
        let l = std::sync::Arc::new(RateLimiter::new(Some(Rate { per_second: 1.0, burst: 1.0 })));
        l.acquire("crm", far()).await.unwrap();
        let waiters: Vec<_> = (0..MAX_WAITING)
            .map(|_| {
                let l = l.clone();
                tokio::spawn(async move { l.acquire("crm", far()).await })
            })
            .collect();
        while l.waiting.load(Ordering::Acquire) < MAX_WAITING {
            tokio::task::yield_now().await;
        }
        let e = l.acquire("crm", far()).await.unwrap_err();
        assert!(e.to_string().contains("already waiting"), "{e}");
        for w in waiters {
            w.abort();
        }
    }
}
