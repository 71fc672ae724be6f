//! Wall-clock time, passed in rather than read from a global: the store, the integrations
//! service (token expiry, authorization state expiry) and the conversation service (paused-run
//! expiry, retention, history times) each hold an `Arc<dyn Clock>`.
//!
//! Production code uses [`SystemClock`] (every constructor defaults to it); tests use a
//! [`ManualClock`] and [`advance`](ManualClock::advance) it instead of sleeping until a token
//! or a paused run expires, which keeps them fast and independent of the machine's load.
//!
//! Timeouts and deadlines of work in progress (an HTTP request's deadline, a run's time budget)
//! are not wall-clock time: they use Tokio's monotonic clock, which tests can pause on their own.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of wall-clock time (Unix time).
pub trait Clock: Send + Sync + fmt::Debug {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;

    /// Seconds since the Unix epoch (rounded down).
    fn now_s(&self) -> i64 {
        self.now_ms().div_euclid(1000)
    }
}

/// The system's clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }
}

/// The system clock, shared: the default of every service.
pub fn system() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

/// A clock that stands still until it is told to move: for tests of expiry (tokens, paused
/// runs, authorization states, retention) without sleeping.
#[derive(Debug)]
pub struct ManualClock {
    ms: AtomicI64,
}

impl ManualClock {
    /// A clock showing `start_ms` (Unix milliseconds).
    pub fn new(start_ms: i64) -> Self {
        Self { ms: AtomicI64::new(start_ms) }
    }

    /// A clock showing the system's time now (so that values it stamps look real, and tokens a
    /// real server issues are not already expired on it).
    pub fn at_system_time() -> Self {
        Self::new(SystemClock.now_ms())
    }

    /// Moves the clock forward by `by` (saturating).
    pub fn advance(&self, by: Duration) {
        let by = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        let _ = self.ms.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |ms| Some(ms.saturating_add(by)));
    }

    /// Sets the clock to `ms` (Unix milliseconds); it may go backwards, as a real clock can.
    pub fn set_ms(&self, ms: i64) {
        self.ms.store(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.ms.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manual_clock_moves_only_when_told() {
        let c = ManualClock::new(1_700_000_000_999);
        assert_eq!(c.now_ms(), 1_700_000_000_999);
        assert_eq!(c.now_s(), 1_700_000_000);
        c.advance(Duration::from_millis(1));
        assert_eq!(c.now_s(), 1_700_000_001);
        c.advance(Duration::MAX);
        assert_eq!(c.now_ms(), i64::MAX, "saturates");
        c.set_ms(-1500);
        assert_eq!(c.now_s(), -2, "rounds down before the epoch too");
    }

    #[test]
    fn the_system_clock_is_after_2020() {
        assert!(SystemClock.now_s() > 1_577_836_800);
        assert!(ManualClock::at_system_time().now_ms() > 1_577_836_800_000);
    }
}
