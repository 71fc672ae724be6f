//! One integration's request rate ([`RateLimiter`]): a token bucket configured on the
//! integration (`--rate-limit 5/s`, with a burst), and what the API says of its own limit — a
//! 429's `Retry-After` (RFC 9110 §10.2.3), or a `RateLimit-Remaining`/`X-RateLimit-Remaining`
//! of 0 with its reset (the IETF RateLimit header draft, and the `X-` headers HubSpot, GitHub
//! and most CRMs send) — after which every request of the integration waits until the reset.
//!
//! A request that finds the bucket empty or the API's hold in force waits in a queue of at most
//! [`MAX_WAITING`] requests per integration, first come first served within the process, and
//! never past its deadline: then it fails with
//! [`HttpError::RateLimited`] instead of waiting in vain.
//!
//! **Several instances.** On a store that several instances share (PostgreSQL), the bucket of
//! an integration with a configured rate, and its API's holds, live in the database
//! ([`SharedBucket`]): one row per integration, taken in one short transaction per request, so
//! the configured rate is the rate of all instances together, and a `429` one instance receives
//! holds the others too. An integration without a configured rate pays nothing of that: its
//! API's holds stay with the instance that received them. When the database cannot be reached, a
//! request is limited by this process's own bucket (with a warning) rather than failed.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use reqwest::header::HeaderMap;
use tokio::time::Instant;

use super::HttpError;
use crate::rates::Rate;
use crate::storage::StoreError;

/// Most requests of one integration waiting for the rate limit at once; more fail at once.
pub const MAX_WAITING: usize = 1000;

/// Longest hold an API's answer may impose (a longer `Retry-After` or reset is believed only up
/// to this): one hour.
pub const MAX_HOLD: Duration = Duration::from_secs(3600);

/// A rate-limit bucket that several instances share (`tern-store` keeps it in the database on
/// PostgreSQL), under a key (the integration's name). Times are Unix milliseconds.
#[async_trait::async_trait]
pub trait SharedBucket: Send + Sync + std::fmt::Debug {
    /// Takes a place for one request at `now_ms` in the bucket of `key`, filled at `rate` (a
    /// new bucket starts full; `None`: only the API's holds limit it). Returns `None` when the
    /// request may go, else how long until it may try again.
    ///
    /// # Errors
    /// The store failed.
    async fn take(&self, key: &str, rate: Option<Rate>, now_ms: i64) -> Result<Option<Duration>, StoreError>;

    /// Holds every request of `key` until `until_ms` (a later hold already there is kept).
    ///
    /// # Errors
    /// The store failed.
    async fn hold(&self, key: &str, until_ms: i64) -> Result<(), StoreError>;
}

/// The rate limit of one integration. Cheap to share (`Arc`).
#[derive(Debug)]
pub struct RateLimiter {
    rate: Option<Rate>,
    /// This process's bucket, at milliseconds since `epoch`.
    state: Mutex<Bucket>,
    epoch: Instant,
    waiting: AtomicUsize,
    /// The waiting requests, in the order they came: the head takes the next place.
    queue: tokio::sync::Mutex<()>,
    /// The bucket shared with other instances, and this limiter's key in it.
    shared: Option<(std::sync::Arc<dyn SharedBucket>, String)>,
}

/// A token bucket and the API's hold, at millisecond times on one clock: this process's own
/// (milliseconds since the limiter was made) or the shared one's (Unix milliseconds, in the
/// database). The one formula both use.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bucket {
    /// Takes available when last counted.
    pub tokens: f64,
    /// When they were counted.
    pub counted_ms: i64,
    /// No request before this (the API's own answer); 0 for none.
    pub hold_until_ms: i64,
}

impl Bucket {
    /// A full bucket at `rate` (empty without one), counted at `now_ms`.
    pub fn full(rate: Option<Rate>, now_ms: i64) -> Self {
        Self { tokens: rate.map_or(0.0, |r| r.burst), counted_ms: now_ms, hold_until_ms: 0 }
    }

    /// Takes a place for one request at `now_ms`: `None` when it may go (the bucket is
    /// updated), else how long until it may try again (the hold's end, or the next take). A
    /// clock behind the one that last counted adds nothing (instances' clocks differ a little).
    pub fn take(&mut self, rate: Option<Rate>, now_ms: i64) -> Option<Duration> {
        if self.hold_until_ms > now_ms {
            return Some(Duration::from_millis(u64::try_from(self.hold_until_ms - now_ms).unwrap_or(0)));
        }
        let rate = rate?;
        let elapsed_s = now_ms.saturating_sub(self.counted_ms).max(0) as f64 / 1000.0;
        self.tokens = (self.tokens + elapsed_s * rate.per_second).min(rate.burst);
        self.counted_ms = self.counted_ms.max(now_ms);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            None
        } else {
            let missing = (1.0 - self.tokens) / rate.per_second.max(f64::MIN_POSITIVE);
            Some(Duration::from_secs_f64(missing.max(0.001)))
        }
    }

    /// Holds every request until `until_ms` (a later hold already there is kept).
    pub fn hold(&mut self, until_ms: i64) {
        self.hold_until_ms = self.hold_until_ms.max(until_ms);
    }
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
        Self {
            rate,
            state: Mutex::new(Bucket::full(rate, 0)),
            epoch: Instant::now(),
            waiting: AtomicUsize::new(0),
            queue: tokio::sync::Mutex::new(()),
            shared: None,
        }
    }

    /// Limits through `bucket`, under `key`, shared with the other instances; this process's
    /// own bucket is used only while `bucket` fails.
    #[must_use]
    pub fn shared(mut self, bucket: std::sync::Arc<dyn SharedBucket>, key: &str) -> Self {
        self.shared = Some((bucket, key.to_string()));
        self
    }

    /// Whether the limit is shared with other instances.
    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
    }

    /// How long to wait before a request may go, taking its place when none: this process's
    /// hold first, then the shared bucket, or this process's when there is none or it fails.
    async fn wait_for_place(&self, integration: &str) -> Option<Duration> {
        if let Some((bucket, key)) = &self.shared {
            if let Some(held) = crate::sync::lock(&self.state).take(None, self.local_ms()) {
                return Some(held);
            }
            match bucket.take(key, self.rate, unix_ms()).await {
                Ok(wait) => return wait,
                Err(e) => tracing::warn!(
                    integration,
                    error = %e,
                    "the shared rate limit could not be read; this request is limited by this instance's own bucket"
                ),
            }
        }
        crate::sync::lock(&self.state).take(self.rate, self.local_ms())
    }

    /// Milliseconds since the limiter was made (this process's bucket's clock).
    fn local_ms(&self) -> i64 {
        i64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(i64::MAX)
    }

    /// The configured rate.
    pub fn rate(&self) -> Option<Rate> {
        self.rate
    }

    /// Waits until a request of `integration` may be sent, but not past `deadline`; returns how
    /// long it waited.
    ///
    /// # Errors
    /// [`HttpError::RateLimited`] when the wait would pass the deadline or the queue is full.
    pub async fn acquire(&self, integration: &str, deadline: Instant) -> Result<Duration, HttpError> {
        let start = Instant::now();
        // Nobody waiting: go at once when there is a place.
        if self.waiting.load(Ordering::Acquire) == 0 && self.wait_for_place(integration).await.is_none() {
            return Ok(Duration::ZERO);
        }
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= MAX_WAITING {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(HttpError::RateLimited {
                integration: integration.to_string(),
                reason: format!("{MAX_WAITING} requests are already waiting for its rate limit"),
            });
        }
        let _queued = InQueue(&self.waiting);
        let late = |wait: Duration| HttpError::RateLimited {
            integration: integration.to_string(),
            reason: format!(
                "after waiting {} ms, waiting {} ms more for its rate limit would pass the step's deadline",
                start.elapsed().as_millis(),
                wait.as_millis()
            ),
        };
        // First come, first served: the waiting requests take their turn at the head of the
        // queue (tokio's mutex wakes its waiters in order).
        let Ok(_head) = tokio::time::timeout_at(deadline, self.queue.lock()).await else {
            return Err(late(Duration::ZERO));
        };
        loop {
            let Some(wait) = self.wait_for_place(integration).await else { return Ok(start.elapsed()) };
            if Instant::now() + wait >= deadline {
                return Err(late(wait));
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// Holds every request for `wait` from now (a 429's `Retry-After`), at most [`MAX_HOLD`];
    /// a longer hold already in force is kept.
    /// With a shared bucket, the hold is written there too (in a task of its own: the other
    /// instances learn it a moment later).
    pub fn hold(&self, wait: Duration) {
        let wait = wait.min(MAX_HOLD);
        let wait_ms = i64::try_from(wait.as_millis()).unwrap_or(i64::MAX);
        let local = self.local_ms();
        crate::sync::lock(&self.state).hold(local.saturating_add(wait_ms));
        if let Some((bucket, key)) = &self.shared
            && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            let (bucket, key) = (bucket.clone(), key.clone());
            let until_ms = unix_ms().saturating_add(wait_ms);
            handle.spawn(async move {
                if let Err(e) = bucket.hold(&key, until_ms).await {
                    tracing::warn!(integration = %key, error = %e, "the API's rate-limit hold could not be shared with the other instances");
                }
            });
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

/// Unix milliseconds now.
fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
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

    /// Waiting requests go in the order they came, whatever the timing of their retries.
    #[tokio::test(start_paused = true)]
    async fn waiting_requests_go_first_come_first_served() {
        let l = std::sync::Arc::new(RateLimiter::new(Some(Rate { per_second: 1.0, burst: 1.0 })));
        l.acquire("crm", far()).await.unwrap();
        let order = std::sync::Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..5 {
            let (waiter, order) = (l.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                waiter.acquire("crm", far()).await.unwrap();
                order.lock().unwrap().push(i);
            }));
            while l.waiting.load(Ordering::Acquire) < i + 1 {
                tokio::task::yield_now().await;
            }
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), [0, 1, 2, 3, 4]);
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
