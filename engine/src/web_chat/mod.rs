//! The web chat: a channel kind (`--kind web`) whose contacts are the visitors of web pages
//! that embed Tern's widget with one `<script>` tag. Everything the server needs to decide on a
//! visitor's request lives here, free of HTTP; the routes (`/v1/channels/{name}/web/…`) are
//! adapters over it.
//!
//! Design choices:
//!
//! - **Sessions are signed, not stored** ([`session`]): a visitor's token says which
//!   conversation it may read and post into and until when, with an HMAC-SHA256 by the
//!   channel's own session key (made when the channel is saved, kept encrypted with its other
//!   settings). Checking one needs no database read, and a second visitor can never name the
//!   first one's conversation: the conversation id is inside the signed token, never taken
//!   from the request.
//! - **Origins are allowed one by one** ([`Origin`]): a browser names the page's origin in
//!   every cross-origin request; only the channel's origins get answers (and CORS headers).
//!   The widget script itself is public, like any script on a page.
//! - **The transcript is the channel's outbox** ([`transcript`]): a web page is not a server
//!   Tern can post to, so the replies of every run of a web conversation, whenever it ends (at
//!   once, after a slow API call, after a contact's login, after a restart), are written to the
//!   conversation's transcript in the same transaction as the run's result. The page reads it
//!   once after a reload and then follows it as a stream of Server-Sent Events; nothing is sent
//!   that is not stored first.
//! - **Limits are per address before per session** ([`WebLimits`]): a flood of new sessions
//!   from one address meets the per-address limit first.

pub mod origin;
pub mod session;
pub mod slots;
pub mod transcript;
pub mod watch;

use std::fmt;

pub use origin::{Origin, OriginError};
pub use session::{Session, SessionError, SessionKey};
pub use slots::{StreamSlot, StreamSlots, TooManyStreams};
pub use transcript::{Entry, Speaker};
pub use watch::Watchers;

use crate::rates::{Rate, Rates};

/// The key of a caller's address for the limits: its
/// [`client_network`](crate::rates::client_network) (an IPv6 /64 is one caller), written out.
pub fn address_key(ip: std::net::IpAddr) -> String {
    crate::rates::client_network(ip).to_string()
}

/// The `<script>` tag that puts the chat of channel `channel` on a page, for a server reached at
/// `public_url` (its scheme, host and port; a trailing `/` is fine): the widget script served
/// by Tern, with the title `Chat`.
pub fn snippet(public_url: &str, channel: &str) -> String {
    let base = public_url.trim_end_matches('/').replace('&', "&amp;").replace('"', "&quot;").replace('<', "&lt;");
    format!(r#"<script src="{base}/v1/channels/{channel}/web/widget.js" data-title="Chat" async></script>"#)
}

/// Most origins one web channel allows.
pub const MAX_ORIGINS: usize = 16;
/// Longest text of a visitor's message, in characters (the widget's text box holds as many).
pub const MAX_TEXT_CHARS: usize = 2000;
/// Longest `display` of a message (what the transcript shows for a pressed button: its
/// title), in characters.
pub const MAX_DISPLAY_CHARS: usize = 200;
/// Most event streams open at once in one process; more are refused with 503.
pub const MAX_STREAMS: usize = 1000;
/// Longest life of one event stream, in seconds; the widget then opens the next one from the
/// last entry it saw.
pub const STREAM_MAX_SECS: u64 = 600;
/// How often an open stream looks for entries written by another instance, in milliseconds
/// (entries written by this instance are sent at once).
pub const STREAM_POLL_MS: u64 = 2000;
/// How often a quiet stream sends a keep-alive comment, in seconds (below the idle timeouts
/// of common proxies).
pub const STREAM_KEEP_ALIVE_SECS: u64 = 15;
/// Most keys the rate limits remember (sessions and addresses).
pub const MAX_RATE_KEYS: usize = 100_000;

/// A web channel's settings.
#[derive(Clone)]
pub struct WebChat {
    /// The origins whose pages may use the channel (`https://example.com`), at least one.
    pub origins: Vec<Origin>,
    /// The key that signs the visitors' session tokens.
    pub session_key: SessionKey,
    /// Pages of Tern's own origin may use it too: the console's Try it, whose requests a
    /// browser marks `Sec-Fetch-Site: same-origin` (a header no page can set; Fetch standard,
    /// "Fetch metadata"). Never stored: only the built-in `console` channel has it.
    pub same_origin: bool,
}

impl fmt::Debug for WebChat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebChat").field("origins", &self.origins).field("session_key", &"[redacted]").finish()
    }
}

impl WebChat {
    /// Whether a request whose `Origin` header is `origin` comes from a page of an allowed
    /// origin (compared as the browser serializes it: scheme, host and port; RFC 6454 §6).
    pub fn allows(&self, origin: &str) -> bool {
        self.origins.iter().any(|o| o.as_str() == origin)
    }

    /// Whether a request with these `Origin` and `Sec-Fetch-Site` headers comes from a page that
    /// may use the chat: a page of an allowed origin, or, for a chat of Tern's own pages
    /// ([`WebChat::same_origin`]), a page of Tern's origin.
    pub fn allows_page(&self, origin: Option<&str>, fetch_site: Option<&str>) -> bool {
        origin.is_some_and(|o| self.allows(o)) || (self.same_origin && fetch_site == Some("same-origin"))
    }
}

/// What a visitor may do per minute, as token buckets ([`Rates`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WebRates {
    /// New sessions per address.
    pub sessions_per_address: Rate,
    /// Messages per address (all its sessions together).
    pub messages_per_address: Rate,
    /// Messages per session.
    pub messages_per_session: Rate,
    /// Event streams opened per session (a reconnecting widget opens one every few seconds
    /// at most).
    pub streams_per_session: Rate,
}

impl Default for WebRates {
    /// 10 sessions a minute per address (burst 10); 120 messages a minute per address (burst
    /// 30); 20 a minute per session (burst 10); 30 stream openings a minute per session
    /// (burst 10).
    fn default() -> Self {
        Self {
            sessions_per_address: Rate::per_minute(10, 10),
            messages_per_address: Rate::per_minute(120, 30),
            messages_per_session: Rate::per_minute(20, 10),
            streams_per_session: Rate::per_minute(30, 10),
        }
    }
}

/// The web chat's rate limits in one process ([`WebRates`]); each check takes from every
/// bucket it names or from none, and says how long to wait when one is empty.
#[derive(Debug)]
pub struct WebLimits {
    rates: Rates,
    limits: WebRates,
}

impl Default for WebLimits {
    fn default() -> Self {
        Self::new(WebRates::default())
    }
}

impl WebLimits {
    /// Limits at `limits`, remembering at most [`MAX_RATE_KEYS`] keys.
    pub fn new(limits: WebRates) -> Self {
        Self { rates: Rates::with_policy(MAX_RATE_KEYS, crate::rates::WhenFull::Refuse), limits }
    }

    /// A new session from `address` at `now_ms`: `Err(ms)` to wait when over the limit.
    ///
    /// # Errors
    /// The milliseconds until the next session is allowed.
    pub fn session(&self, channel: &str, address: &str, now_ms: i64) -> Result<(), i64> {
        self.take(&format!("s|{channel}|{address}"), self.limits.sessions_per_address, now_ms)
    }

    /// A message of `session` from `address` at `now_ms`.
    ///
    /// # Errors
    /// The milliseconds until the next message is allowed.
    pub fn message(&self, channel: &str, address: &str, session: &str, now_ms: i64) -> Result<(), i64> {
        self.take(&format!("m|{channel}|{address}"), self.limits.messages_per_address, now_ms)?;
        self.take(&format!("ms|{channel}|{session}"), self.limits.messages_per_session, now_ms)
    }

    /// A new event stream of `session` at `now_ms`.
    ///
    /// # Errors
    /// The milliseconds until the next stream is allowed.
    pub fn stream(&self, channel: &str, session: &str, now_ms: i64) -> Result<(), i64> {
        self.take(&format!("st|{channel}|{session}"), self.limits.streams_per_session, now_ms)
    }

    fn take(&self, key: &str, rate: Rate, now_ms: i64) -> Result<(), i64> {
        self.rates.wait_for(key, rate, now_ms).map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv6_subscriber_is_one_address() {
        let a: std::net::IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: std::net::IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: std::net::IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(c));
        assert_eq!(address_key("::ffff:192.0.2.1".parse().unwrap()), "192.0.2.1");
        assert_eq!(address_key("192.0.2.1".parse().unwrap()), "192.0.2.1");
    }

    #[test]
    fn an_address_over_its_limit_waits_and_each_session_has_its_own() {
        let limits = WebLimits::new(WebRates {
            messages_per_session: Rate::per_minute(60, 2),
            messages_per_address: Rate::per_minute(600, 3),
            ..WebRates::default()
        });
        assert!(limits.message("site", "1.2.3.4", "a", 0).is_ok());
        assert!(limits.message("site", "1.2.3.4", "a", 0).is_ok());
        assert_eq!(limits.message("site", "1.2.3.4", "a", 0), Err(1000), "the session's burst is spent");
        assert!(limits.message("site", "1.2.3.4", "b", 0).is_err(), "the address's burst is spent too");
        assert!(limits.message("site", "5.6.7.8", "c", 0).is_ok(), "another address is not affected");
        assert!(limits.message("other", "1.2.3.4", "a", 0).is_ok(), "nor another channel");
    }
}
