//! Console sign-in: a session per signed-in browser, held in memory (bounded), named by an
//! unguessable id in a cookie, with its own CSRF token for every form.
//!
//! The cookie is `HttpOnly` (scripts cannot read it), `SameSite=Strict` (no cross-site request
//! carries it), `Path=/`, has a `Max-Age` and is `Secure` when the public URL is https. Forms
//! also carry the session's CSRF token (OWASP's synchronizer token pattern), compared in
//! constant time. Sessions end at sign-out, after [`SESSION_TTL`], or when the process
//! restarts; at most [`MAX_SESSIONS`] exist (the oldest goes first).
//!
//! Failed sign-ins are throttled to [`MAX_FAILURES_PER_MINUTE`] per client (an IPv4 address, or
//! an IPv6 /64: one host gets a whole /64, so its addresses count as one client), so that one
//! client cannot lock the operator out. At most [`MAX_THROTTLED`] clients are tracked, and a
//! full table never forgets a throttled client: clients whose failures have left the minute go
//! first, then the unthrottled client whose last failure is oldest; when every tracked client
//! is throttled, a new client is refused too until one is released (see [`Throttle`]). A
//! refusal says when to come back (`Retry-After`).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, header};
use tern_engine::clock::Clock;

/// The cookie's name.
pub const COOKIE: &str = "tern_session";
/// How long a session lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Most sessions at once.
pub const MAX_SESSIONS: usize = 1024;
/// Failed sign-ins allowed per minute and client (an IPv4 address or an IPv6 /64).
pub const MAX_FAILURES_PER_MINUTE: usize = 10;
/// Most clients whose failures are tracked (each keeps at most [`MAX_FAILURES_PER_MINUTE`]
/// times).
pub const MAX_THROTTLED: usize = 4096;
/// How long a failed sign-in counts.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// A signed-in browser.
#[derive(Clone, Debug)]
pub struct Session {
    /// The CSRF token its forms carry.
    pub csrf: String,
    expires: Instant,
}

/// Every session of this process, and the sign-in throttle.
#[derive(Debug)]
pub struct Sessions {
    inner: Mutex<Inner>,
    /// What failed sign-ins are timed with.
    clock: Arc<dyn Clock>,
}

impl Default for Sessions {
    fn default() -> Self {
        Self::with_clock(tern_engine::clock::system())
    }
}

#[derive(Debug, Default)]
struct Inner {
    sessions: HashMap<String, Session>,
    failures: Throttle,
}

/// Who a failed sign-in is counted against: an IPv4 address, or the /64 of an IPv6 address (an
/// IPv4-mapped IPv6 address is its IPv4 address); `None` when the address is unknown.
fn client_key(client: Option<IpAddr>) -> Option<IpAddr> {
    client.map(tern_engine::rates::client_network)
}

/// Failed sign-ins per client within [`FAILURE_WINDOW`], bounded by [`MAX_THROTTLED`] clients
/// without ever forgetting a throttled one: a full table first drops clients whose failures
/// have all left the window, then the unthrottled client whose last failure is oldest; when
/// every client in it is throttled, a client it does not hold is refused as if it were
/// throttled (until the earliest of them is released), rather than the table being flushed,
/// which would unthrottle the client an attacker guesses from.
#[derive(Debug, Default)]
struct Throttle {
    /// Each client's failure times (Unix ms) within the window, oldest first; at most
    /// [`MAX_FAILURES_PER_MINUTE`] each.
    clients: HashMap<Option<IpAddr>, VecDeque<i64>>,
}

impl Throttle {
    fn window_ms() -> i64 {
        i64::try_from(FAILURE_WINDOW.as_millis()).unwrap_or(i64::MAX)
    }

    /// When `times` stops being throttled (Unix ms), if it is throttled at `now`.
    fn released_at(times: &VecDeque<i64>, now: i64) -> Option<i64> {
        let live = times.iter().filter(|t| now.saturating_sub(**t) < Self::window_ms()).count();
        if live < MAX_FAILURES_PER_MINUTE {
            return None;
        }
        // The failure whose leaving the window brings the count below the limit.
        let nth = times.len() - MAX_FAILURES_PER_MINUTE;
        times.get(nth).map(|t| t.saturating_add(Self::window_ms()))
    }

    fn forget_expired(&mut self, now: i64) {
        let window = Self::window_ms();
        self.clients.retain(|_, times| {
            while times.front().is_some_and(|t| now.saturating_sub(*t) >= window) {
                times.pop_front();
            }
            !times.is_empty()
        });
    }

    /// How long `client` must wait before trying again, if it must.
    fn wait(&mut self, client: Option<IpAddr>, now: i64) -> Option<Duration> {
        let until = match self.clients.get(&client) {
            Some(times) => Self::released_at(times, now),
            None if self.clients.len() >= MAX_THROTTLED => {
                self.forget_expired(now);
                self.full_until(now)
            }
            None => None,
        }?;
        Some(Duration::from_millis(u64::try_from(until.saturating_sub(now)).unwrap_or(0).max(1)))
    }

    /// When the table is full of throttled clients, when the first of them is released.
    fn full_until(&self, now: i64) -> Option<i64> {
        if self.clients.len() < MAX_THROTTLED {
            return None;
        }
        let mut earliest = None;
        for times in self.clients.values() {
            let released = Self::released_at(times, now)?;
            earliest = Some(earliest.map_or(released, |e: i64| e.min(released)));
        }
        earliest
    }

    /// Records a failure of `client` at `now`.
    fn record(&mut self, client: Option<IpAddr>, now: i64) {
        if !self.clients.contains_key(&client) && self.clients.len() >= MAX_THROTTLED {
            self.forget_expired(now);
            if self.clients.len() >= MAX_THROTTLED {
                let oldest_unthrottled = self
                    .clients
                    .iter()
                    .filter(|(_, times)| Self::released_at(times, now).is_none())
                    .min_by_key(|(_, times)| times.back().copied().unwrap_or(i64::MIN))
                    .map(|(k, _)| *k);
                match oldest_unthrottled {
                    Some(k) => {
                        self.clients.remove(&k);
                    }
                    // Everyone tracked is throttled: this client is refused by `wait` anyway.
                    None => return,
                }
            }
        }
        let times = self.clients.entry(client).or_default();
        times.push_back(now);
        while times.len() > MAX_FAILURES_PER_MINUTE {
            times.pop_front();
        }
    }
}

fn random_hex() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

impl Sessions {
    /// No sessions; failed sign-ins timed by `clock`.
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        Self { inner: Mutex::default(), clock }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a session; returns its id (for the cookie).
    pub fn create(&self) -> String {
        let now = Instant::now();
        let mut inner = self.lock();
        inner.sessions.retain(|_, s| s.expires > now);
        if inner.sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = inner.sessions.iter().min_by_key(|(_, s)| s.expires).map(|(k, _)| k.clone())
        {
            inner.sessions.remove(&oldest);
        }
        let id = random_hex();
        inner.sessions.insert(id.clone(), Session { csrf: random_hex(), expires: now + SESSION_TTL });
        id
    }

    /// The session the request's cookie names, if it is current.
    pub fn of(&self, headers: &HeaderMap) -> Option<(String, Session)> {
        let id = cookie_value(headers)?;
        let inner = self.lock();
        let s = inner.sessions.get(&id)?;
        (s.expires > Instant::now()).then(|| (id.clone(), s.clone()))
    }

    /// Ends a session.
    pub fn remove(&self, id: &str) {
        self.lock().sessions.remove(id);
    }

    /// Records a failed sign-in from `client`.
    pub fn failed(&self, client: Option<IpAddr>) {
        let now = self.clock.now_ms();
        self.lock().failures.record(client_key(client), now);
    }

    /// How long `client` must wait before it may try to sign in again (checked first), if it
    /// had too many failed sign-ins in the last minute, or the throttle is full of clients that
    /// did.
    pub fn throttled(&self, client: Option<IpAddr>) -> Option<Duration> {
        let now = self.clock.now_ms();
        self.lock().failures.wait(client_key(client), now)
    }
}

/// Whether `given` is the session's CSRF token (constant time).
pub fn csrf_matches(session: &Session, given: &str) -> bool {
    subtle::ConstantTimeEq::ct_eq(given.as_bytes(), session.csrf.as_bytes()).into()
}

/// The session id from the `Cookie` headers.
fn cookie_value(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| cookie::Cookie::split_parse(v.to_string()))
        .filter_map(Result::ok)
        .find(|c| c.name() == COOKIE)
        .map(|c| c.value().to_string())
}

/// The `Set-Cookie` value that starts a session.
pub fn set_cookie(id: &str, secure: bool) -> String {
    cookie::Cookie::build((COOKIE, id.to_string()))
        .http_only(true)
        .secure(secure)
        .same_site(cookie::SameSite::Strict)
        .path("/")
        .max_age(cookie::time::Duration::seconds(i64::try_from(SESSION_TTL.as_secs()).unwrap_or(43_200)))
        .build()
        .to_string()
}

/// The `Set-Cookie` value that ends a session.
pub fn clear_cookie(secure: bool) -> String {
    cookie::Cookie::build((COOKIE, ""))
        .http_only(true)
        .secure(secure)
        .same_site(cookie::SameSite::Strict)
        .path("/")
        .max_age(cookie::time::Duration::ZERO)
        .build()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_cookie(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, v.parse().unwrap());
        h
    }

    #[test]
    fn a_session_is_found_by_its_cookie_and_ends_at_sign_out() {
        let s = Sessions::default();
        let id = s.create();
        let (found, session) = s.of(&with_cookie(&format!("other=1; {COOKIE}={id}"))).unwrap();
        assert_eq!(found, id);
        assert!(csrf_matches(&session, &session.csrf));
        assert!(!csrf_matches(&session, "forged"));
        assert!(s.of(&with_cookie(&format!("{COOKIE}=guess"))).is_none());
        s.remove(&id);
        assert!(s.of(&with_cookie(&format!("{COOKIE}={id}"))).is_none());
    }

    #[test]
    fn the_cookie_is_http_only_strict_and_secure_on_https() {
        let c = set_cookie("abc", true);
        for part in ["tern_session=abc", "HttpOnly", "SameSite=Strict", "Secure", "Path=/", "Max-Age=43200"] {
            assert!(c.contains(part), "{part} in {c}");
        }
        assert!(!set_cookie("abc", false).contains("Secure"));
        assert!(clear_cookie(false).contains("Max-Age=0"));
    }

    #[test]
    fn sessions_and_failures_are_bounded() {
        let s = Sessions::default();
        for _ in 0..MAX_SESSIONS + 5 {
            s.create();
        }
        assert_eq!(s.lock().sessions.len(), MAX_SESSIONS);
        let (a, b) = (Some("10.0.0.1".parse().unwrap()), Some("10.0.0.2".parse().unwrap()));
        for _ in 0..MAX_FAILURES_PER_MINUTE {
            assert!(s.throttled(a).is_none());
            s.failed(a);
        }
        assert!(s.throttled(a).is_some());
        assert!(s.throttled(b).is_none(), "another client is not locked out");
    }

    fn v4(i: usize) -> Option<IpAddr> {
        let i = u32::try_from(i).unwrap();
        Some(IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i)))
    }

    /// Many source addresses cannot flush the throttle: a throttled client stays throttled
    /// while the table overflows, unthrottled ones make room, and a table full of throttled
    /// clients refuses newcomers until the first is released.
    #[test]
    fn a_full_throttle_never_forgets_a_throttled_client() {
        let clock = Arc::new(tern_engine::clock::ManualClock::new(1_000_000));
        let s = Sessions::with_clock(clock.clone());
        let guesser = v4(0);
        for _ in 0..MAX_FAILURES_PER_MINUTE {
            s.failed(guesser);
        }
        let wait = s.throttled(guesser).expect("throttled");
        assert_eq!(wait, FAILURE_WINDOW);
        let start = clock.now_ms();
        // An attacker's other addresses, each one failure: far more than the table holds.
        for i in 1..=3 * MAX_THROTTLED {
            clock.advance(Duration::from_millis(1));
            s.failed(v4(i));
        }
        assert_eq!(s.lock().failures.clients.len(), MAX_THROTTLED);
        assert!(s.throttled(guesser).is_some(), "the guessing address is still throttled");
        // The oldest unthrottled entries went first: the latest ones are there.
        assert!(s.lock().failures.clients.contains_key(&v4(3 * MAX_THROTTLED)));
        assert!(!s.lock().failures.clients.contains_key(&v4(1)));

        // Now every tracked client is throttled: a new one is refused, not let in by a flush.
        let s = Sessions::with_clock(clock.clone());
        for i in 0..MAX_THROTTLED {
            for _ in 0..MAX_FAILURES_PER_MINUTE {
                s.failed(v4(i));
            }
        }
        let newcomer = v4(MAX_THROTTLED + 1);
        assert!(s.throttled(newcomer).is_some(), "refused while the table is full of throttled clients");
        s.failed(newcomer);
        assert!(s.throttled(v4(0)).is_some());
        assert_eq!(s.lock().failures.clients.len(), MAX_THROTTLED);
        // A minute after the last failure they are all released.
        clock.set_ms(start + i64::try_from(FAILURE_WINDOW.as_millis()).unwrap() + 20_000);
        assert!(s.throttled(newcomer).is_none());
        assert!(s.throttled(v4(0)).is_none());
    }

    /// The addresses of one IPv6 /64 are one client.
    #[test]
    fn an_ipv6_slash_64_is_one_client() {
        let s = Sessions::default();
        for i in 0..MAX_FAILURES_PER_MINUTE {
            s.failed(Some(format!("2001:db8:1:2::{:x}", i + 1).parse().unwrap()));
        }
        assert!(s.throttled(Some("2001:db8:1:2:ffff::1".parse().unwrap())).is_some());
        assert!(s.throttled(Some("2001:db8:1:3::1".parse().unwrap())).is_none());
        for _ in 0..MAX_FAILURES_PER_MINUTE {
            s.failed(Some("::ffff:192.0.2.7".parse().unwrap()));
        }
        assert!(s.throttled(Some("192.0.2.7".parse().unwrap())).is_some(), "IPv4-mapped is the IPv4 address");
    }
}
