//! Console sign-in: a session per signed-in browser, held in memory (bounded), named by an
//! unguessable id in a cookie, with its own CSRF token for every form.
//!
//! The cookie is `HttpOnly` (scripts cannot read it), `SameSite=Strict` (no cross-site request
//! carries it), `Path=/`, has a `Max-Age` and is `Secure` when the public URL is https. Forms
//! also carry the session's CSRF token (OWASP's synchronizer token pattern), compared in
//! constant time. Sessions end at sign-out, after [`SESSION_TTL`], or when the process
//! restarts; at most [`MAX_SESSIONS`] exist (the oldest goes first). Failed sign-ins are
//! throttled to [`MAX_FAILURES_PER_MINUTE`] per client address (at most [`MAX_THROTTLED`]
//! addresses are tracked), so one client cannot lock the operator out.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, header};

/// The cookie's name.
pub const COOKIE: &str = "tern_session";
/// How long a session lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Most sessions at once.
pub const MAX_SESSIONS: usize = 1024;
/// Failed sign-ins allowed per minute and client address.
pub const MAX_FAILURES_PER_MINUTE: usize = 10;
/// Most client addresses whose failures are tracked.
pub const MAX_THROTTLED: usize = 4096;

/// A signed-in browser.
#[derive(Clone, Debug)]
pub struct Session {
    /// The CSRF token its forms carry.
    pub csrf: String,
    expires: Instant,
}

/// Every session of this process.
#[derive(Debug, Default)]
pub struct Sessions {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    sessions: HashMap<String, Session>,
    failures: HashMap<Option<std::net::IpAddr>, Vec<Instant>>,
}

fn random_hex() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

impl Sessions {
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

    /// Records a failed sign-in from `client`; `false` when it had too many in the last minute.
    pub fn failure_allowed(&self, client: Option<std::net::IpAddr>) -> bool {
        let now = Instant::now();
        let mut inner = self.lock();
        inner.failures.retain(|_, times| {
            times.retain(|t| now.duration_since(*t) < Duration::from_secs(60));
            !times.is_empty()
        });
        if inner.failures.len() >= MAX_THROTTLED && !inner.failures.contains_key(&client) {
            inner.failures.clear();
        }
        let times = inner.failures.entry(client).or_default();
        if times.len() >= MAX_FAILURES_PER_MINUTE {
            return false;
        }
        times.push(now);
        true
    }

    /// Whether `client` had too many failed sign-ins in the last minute (checked first).
    pub fn throttled(&self, client: Option<std::net::IpAddr>) -> bool {
        let now = Instant::now();
        let inner = self.lock();
        inner.failures.get(&client).is_some_and(|times| {
            times.iter().filter(|t| now.duration_since(**t) < Duration::from_secs(60)).count()
                >= MAX_FAILURES_PER_MINUTE
        })
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
            assert!(s.failure_allowed(a));
        }
        assert!(!s.failure_allowed(a));
        assert!(s.throttled(a));
        assert!(!s.throttled(b), "another client is not locked out");
    }
}
