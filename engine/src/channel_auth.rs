//! Authenticating a request that claims to come from a channel, against the channel's
//! [`InboundAuth`]: a bearer token (`Authorization: Bearer …`, compared in constant time) or a
//! [Standard Webhooks](crate::standard_webhooks) signature over the raw body, within
//! [`REPLAY_WINDOW_SECS`] of now, that is not a replay: its `webhook-id` was not accepted for
//! that channel before, or it is the sender's retry of the same body signed again later
//! (remembered in the store through [`SeenWebhookIds`], so that the check holds across
//! instances sharing a database; a retried message gets its first answer from the message id's
//! dedupe).
//!
//! Each refusal has its own [`Refusal`] (logged by the caller, without any secret value); the
//! sender always gets the same answer, whether the channel exists or not.

use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};

use crate::channel::{Channel, ChannelDirectory, ChannelName, InboundAuth};
use crate::clock::Clock;
use crate::standard_webhooks::{self, SignatureError};
use crate::storage::StoreError;

/// How far a signature's `webhook-timestamp` may be from now, either way, in seconds (the
/// Standard Webhooks recommendation: five minutes). A signed request is refused outside it,
/// and its `webhook-id` is remembered until the timestamp leaves it.
pub const REPLAY_WINDOW_SECS: i64 = standard_webhooks::DEFAULT_TOLERANCE_SECS;

/// Most `webhook-id`s remembered at once per sender (a channel, an integration's events). An
/// id is never forgotten while its signature is in the replay window (its request could be
/// replayed): when a sender has this many, its new signed requests are refused like replays
/// until some expire (it would need more than this many signed requests within the window,
/// over 300 a second), while every other sender goes on. The whole record is bounded by this
/// times the number of channels and integrations.
pub const MAX_SEEN_WEBHOOK_IDS_PER_SENDER: u64 = 200_000;

/// What the replay record says of a signed request's `webhook-id` ([`SeenWebhookIds`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sighting {
    /// Not seen within the window (now remembered), or a sender's retry: the same id and body,
    /// signed again with a later timestamp. Either way the request goes on (a retried message is
    /// answered from the first time by the message id's dedupe).
    Accepted,
    /// The same id, body and timestamp (or an older one) again: a replay of a captured request.
    Replayed,
    /// The id was accepted with another body within the window.
    Reused,
}

/// Where the `webhook-id`s of accepted signed requests are remembered (the store's
/// `webhook_ids` table), per sender, until they expire, with the SHA-256 of the body and the
/// latest timestamp they were accepted with. The sender's scope is a channel
/// ([`ChannelRef`](crate::channel::ChannelRef) as text), or `integration:NAME` for an
/// integration's events ([`integration_scope`]); channel names have no `:`, so the two never
/// meet.
///
/// The rule, decided in one step (so that it holds across instances): an id not remembered (or
/// expired) is remembered and [`Sighting::Accepted`]; a remembered id with the same body and a
/// later `signed_at` is a retry: its timestamp is remembered and it is
/// [`Sighting::Accepted`]; with the same body and the same or an earlier timestamp it is
/// [`Sighting::Replayed`]; with another body [`Sighting::Reused`].
#[async_trait::async_trait]
pub trait SeenWebhookIds: Send + Sync + std::fmt::Debug {
    /// Applies the rule to `id` of `scope`, signed at `signed_at` (Unix seconds) over a body
    /// whose SHA-256 is `body_sha256` (hex), remembered until `expires_at_ms` (Unix ms) when it
    /// is accepted; `now_ms` says what has expired.
    ///
    /// # Errors
    /// The store could not be written.
    async fn sighting(&self, sighting: &SignedRequest<'_>, now_ms: i64) -> Result<Sighting, StoreError>;

    /// Forgets `id` of `scope`: its request was accepted as authentic but refused for now
    /// (overloaded, the store down) with nothing kept, so that the sender's retry of the same
    /// bytes is let through like the first time.
    ///
    /// # Errors
    /// The store could not be written.
    async fn forget_webhook_id(&self, scope: &str, id: &str) -> Result<(), StoreError>;
}

/// A signed request as the replay record knows it.
#[derive(Debug, Clone, Copy)]
pub struct SignedRequest<'a> {
    /// The sender's scope.
    pub scope: &'a str,
    /// Its `webhook-id`.
    pub id: &'a str,
    /// SHA-256 of the raw body, lower-case hex.
    pub body_sha256: &'a str,
    /// Its `webhook-timestamp`, Unix seconds.
    pub signed_at: i64,
    /// Until when it is remembered, Unix ms (when the timestamp leaves the window).
    pub expires_at_ms: i64,
}

/// The replay scope of integration `name`'s events.
pub fn integration_scope(name: &crate::IntegrationName) -> String {
    format!("integration:{name}")
}

/// One remembered `webhook-id`: until when, over which body, the latest timestamp.
#[derive(Debug)]
struct Seen {
    expires_at_ms: i64,
    body_sha256: String,
    signed_at: i64,
}

/// `webhook-id`s remembered in memory (tests, and `tern run`): at most `limit` per sender
/// ([`MAX_SEEN_WEBHOOK_IDS_PER_SENDER`] by default), a sender's expired entries dropped when it
/// reaches it. An id that has not expired is never forgotten (that would let its request be
/// replayed): when a sender's ids are all live, its new id is refused like a replay until one
/// expires; other senders are not affected.
#[derive(Debug)]
pub struct MemorySeenIds {
    seen: std::sync::Mutex<std::collections::HashMap<String, std::collections::HashMap<String, Seen>>>,
    limit: u64,
}

impl Default for MemorySeenIds {
    fn default() -> Self {
        Self::with_limit(MAX_SEEN_WEBHOOK_IDS_PER_SENDER)
    }
}

impl MemorySeenIds {
    /// A record keeping at most `limit` live ids per sender.
    pub fn with_limit(limit: u64) -> Self {
        Self { seen: std::sync::Mutex::default(), limit }
    }
}

#[async_trait::async_trait]
impl SeenWebhookIds for MemorySeenIds {
    async fn sighting(&self, r: &SignedRequest<'_>, now_ms: i64) -> Result<Sighting, StoreError> {
        let mut senders = crate::sync::lock(&self.seen);
        let full = |n: usize| u64::try_from(n).unwrap_or(u64::MAX) >= self.limit;
        let seen = senders.entry(r.scope.to_string()).or_default();
        if full(seen.len()) {
            seen.retain(|_, s| s.expires_at_ms > now_ms);
        }
        let remember =
            || Seen { expires_at_ms: r.expires_at_ms, body_sha256: r.body_sha256.to_string(), signed_at: r.signed_at };
        match seen.get(r.id) {
            Some(s) if s.expires_at_ms > now_ms && s.body_sha256 != r.body_sha256 => Ok(Sighting::Reused),
            Some(s) if s.expires_at_ms > now_ms && s.signed_at >= r.signed_at => Ok(Sighting::Replayed),
            None if full(seen.len()) => {
                tracing::warn!(
                    sender = r.scope,
                    limit = self.limit,
                    "every webhook-id this sender sent is still in the replay window; its new signed requests are refused until one expires"
                );
                Ok(Sighting::Replayed)
            }
            _ => {
                seen.insert(r.id.to_string(), remember());
                Ok(Sighting::Accepted)
            }
        }
    }

    async fn forget_webhook_id(&self, scope: &str, id: &str) -> Result<(), StoreError> {
        if let Some(seen) = crate::sync::lock(&self.seen).get_mut(scope) {
            seen.remove(id);
        }
        Ok(())
    }
}

/// How a request proved it is the channel's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// The channel is open (`--insecure-open-channel`): nothing was checked.
    Open,
    /// One of the channel's bearer tokens.
    Token,
    /// A Standard Webhooks signature; the sender's `webhook-id`.
    Signature {
        /// The `webhook-id`.
        id: String,
    },
}

/// How a name from a request appears in a log line: at most 64 characters, control and other
/// non-printable characters escaped, so that an unauthenticated caller can neither forge log
/// lines (a `%0a` in the path) nor make each refusal log kilobytes.
fn shown(name: &str) -> String {
    let cut: String = name.chars().take(64).collect();
    let more = if name.chars().nth(64).is_some() { "…" } else { "" };
    format!("{}{more}", cut.escape_debug())
}

/// The token of an `Authorization: Bearer <token>` header value (RFC 6750 §2.1), the scheme
/// name in any case (RFC 7235 §2.1); `None` for another scheme or a value that is not text.
pub fn bearer_token(value: &http::HeaderValue) -> Option<&str> {
    let (scheme, token) = value.to_str().ok()?.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token)
}

/// Whether `given` is one of `tokens`, compared in constant time, every one of them, so that
/// the time taken says neither whether nor which one matched.
pub fn is_one_of(given: &str, tokens: &[SecretString]) -> bool {
    let mut any = false;
    for token in tokens {
        any |= bool::from(subtle::ConstantTimeEq::ct_eq(given.as_bytes(), token.expose_secret().as_bytes()));
    }
    any
}

/// A request's channel, after its headers were checked ([`ChannelAuth::admit`]).
#[derive(Debug)]
pub enum Admission {
    /// The headers decided: an open channel, or a valid bearer token.
    Decided(Arc<Channel>, Credential),
    /// The request is signed: its body must be read and verified ([`ChannelAuth::verify`]).
    Signed(Arc<Channel>),
}

/// Why a request was refused. The caller logs it (it names no secret value) and answers every
/// one of them with the same 401.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// No channel of that name.
    #[error("there is no channel `{}`", shown(.channel))]
    NoSuchChannel {
        /// The name in the request.
        channel: String,
    },
    /// Neither an `Authorization` header nor the signature headers.
    #[error(
        "the request carries no credentials (neither `Authorization: Bearer …` nor the `webhook-id`, `webhook-timestamp` and `webhook-signature` headers)"
    )]
    NoCredentials,
    /// `Authorization` is not `Bearer …`.
    #[error("the `Authorization` header is not `Bearer <token>`")]
    NotBearer,
    /// A bearer token that is none of the channel's.
    #[error("the bearer token is not one of the channel's tokens")]
    WrongToken,
    /// The channel has no tokens and no signing secrets (and is not open).
    #[error(
        "the channel has no token and no signing secret, so it refuses every request (set --channel-token / TERN_CHANNEL_TOKEN, or give it a secret)"
    )]
    NoCredentialsConfigured,
    /// A signature that does not check out.
    #[error(transparent)]
    Signature(#[from] SignatureError),
    /// A signed request whose `webhook-id`, body and timestamp were already accepted within the
    /// window (a sender's retry signs again with a later timestamp).
    #[error(
        "the `webhook-id` was already accepted with this body and timestamp within the last {REPLAY_WINDOW_SECS} s (a replay; a retry is signed again with a new timestamp)"
    )]
    Replayed,
    /// A signed request whose `webhook-id` was accepted with another body within the window.
    #[error(
        "the `webhook-id` was already accepted with another body within the last {REPLAY_WINDOW_SECS} s; each request needs its own id"
    )]
    IdReused,
    /// A request to a generic message route of a platform channel (its platform posts to its
    /// webhook route).
    #[error(
        "the channel is a {kind} channel: the platform posts its updates to /v1/channels/NAME/webhook, not to the message routes"
    )]
    PlatformChannel {
        /// Its kind.
        kind: &'static str,
    },
    /// A request to the platform webhook route of a channel that is not a platform's.
    #[error(
        "the channel is not a messaging platform's (its kind is generic): its messages go to /v1/channels/NAME/conversations/ID/messages"
    )]
    NotAPlatform,
    /// A platform request without the channel's platform credential (Telegram: the
    /// `X-Telegram-Bot-Api-Secret-Token` header is missing or not the channel's secret token;
    /// WhatsApp: `X-Hub-Signature-256` is missing or not the app secret's signature of the body).
    #[error("the request does not carry the channel's {proof} (set with the platform when its webhook was set)")]
    WrongPlatformProof {
        /// What was expected, in the platform's words.
        proof: &'static str,
    },
    /// The channel or the seen ids could not be read.
    #[error("the store could not be read: {0}")]
    Store(#[from] StoreError),
}

impl Refusal {
    /// A stable, kebab-case name of the reason, for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NoSuchChannel { .. } => "no-such-channel",
            Self::NoCredentials => "no-credentials",
            Self::NotBearer => "not-bearer",
            Self::WrongToken => "wrong-token",
            Self::NoCredentialsConfigured => "channel-without-credentials",
            Self::Signature(SignatureError::MissingHeader { .. }) => "signature-header-missing",
            Self::Signature(SignatureError::BadId) => "signature-bad-id",
            Self::Signature(SignatureError::RepeatedHeader { .. }) => "signature-header-repeated",
            Self::Signature(SignatureError::BadTimestamp) => "signature-bad-timestamp",
            Self::Signature(SignatureError::TooOld { .. }) => "signature-too-old",
            Self::Signature(SignatureError::TooNew { .. }) => "signature-too-new",
            Self::Signature(SignatureError::NoMatch) => "signature-mismatch",
            Self::Replayed => "replayed-webhook-id",
            Self::IdReused => "webhook-id-reused",
            Self::NotAPlatform => "not-a-platform-channel",
            Self::PlatformChannel { .. } => "platform-channel",
            Self::WrongPlatformProof { .. } => "wrong-platform-secret",
            Self::Store(_) => "store-error",
        }
    }
}

/// Checks a request against `auth` alone (no channel lookup): the bearer token when the request
/// has an `Authorization` header, else the signature (with replay protection through `seen`,
/// under `scope`: the channel's name, or [`integration_scope`]).
///
/// # Errors
/// A [`Refusal`] naming why.
pub async fn check(
    scope: &str,
    auth: &InboundAuth,
    headers: &http::HeaderMap,
    body: &[u8],
    seen: &dyn SeenWebhookIds,
    now_ms: i64,
) -> Result<Credential, Refusal> {
    match check_headers(auth, headers)? {
        Some(credential) => Ok(credential),
        None => check_signature(scope, auth, headers, body, seen, now_ms).await,
    }
}

/// The part of [`check`] that needs no body, so that a request is refused before its body is
/// read (a caller without credentials cannot hold a connection by sending the body slowly):
/// the decision for an open channel or a bearer token, `None` when the request is signed (the
/// signature covers the body: [`check_signature`]).
///
/// The scheme name of `Authorization` is case-insensitive (RFC 7235 §2.1; RFC 6750 §2.1).
///
/// # Errors
/// [`Refusal::NoCredentialsConfigured`], [`Refusal::NotBearer`], [`Refusal::WrongToken`],
/// [`Refusal::NoCredentials`].
pub fn check_headers(auth: &InboundAuth, headers: &http::HeaderMap) -> Result<Option<Credential>, Refusal> {
    let signed = headers.contains_key(standard_webhooks::HEADER_ID)
        || headers.contains_key(standard_webhooks::HEADER_SIGNATURE)
        || headers.contains_key(standard_webhooks::HEADER_TIMESTAMP);
    if auth.open {
        return Ok(Some(Credential::Open));
    }
    if auth.tokens.is_empty() && auth.signing_secrets.is_empty() {
        return Err(Refusal::NoCredentialsConfigured);
    }
    if let Some(value) = headers.get(http::header::AUTHORIZATION) {
        let given = bearer_token(value).ok_or(Refusal::NotBearer)?;
        return if is_one_of(given.trim(), &auth.tokens) {
            Ok(Some(Credential::Token))
        } else {
            Err(Refusal::WrongToken)
        };
    }
    if !signed {
        return Err(Refusal::NoCredentials);
    }
    Ok(None)
}

/// The part of [`check`] for a signed request (after [`check_headers`] said it is one): the
/// Standard Webhooks signature over `body`, then the replay check of its `webhook-id` through
/// `seen`, under `scope`.
///
/// # Errors
/// [`Refusal::Signature`], [`Refusal::Replayed`], [`Refusal::IdReused`], [`Refusal::Store`].
pub async fn check_signature(
    scope: &str,
    auth: &InboundAuth,
    headers: &http::HeaderMap,
    body: &[u8],
    seen: &dyn SeenWebhookIds,
    now_ms: i64,
) -> Result<Credential, Refusal> {
    let now_s = now_ms.div_euclid(1000);
    let verified = standard_webhooks::verify(&auth.signing_secrets, headers, body, now_s, REPLAY_WINDOW_SECS)?;
    // The signature stays valid until its timestamp is older than the window: remember the id
    // until then.
    let expires_at_ms = verified.timestamp.saturating_add(REPLAY_WINDOW_SECS).saturating_add(1).saturating_mul(1000);
    let body_sha256 = {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(body))
    };
    let request = SignedRequest {
        scope,
        id: &verified.id,
        body_sha256: &body_sha256,
        signed_at: verified.timestamp,
        expires_at_ms,
    };
    match seen.sighting(&request, now_ms).await? {
        Sighting::Accepted => Ok(Credential::Signature { id: verified.id }),
        Sighting::Replayed => Err(Refusal::Replayed),
        Sighting::Reused => Err(Refusal::IdReused),
    }
}

/// The edge's check of channel requests: looks the channel up and checks the request against
/// its [`InboundAuth`]. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ChannelAuth {
    /// Where channels are looked up.
    pub channels: Arc<dyn ChannelDirectory>,
    /// Where accepted `webhook-id`s are remembered.
    pub seen: Arc<dyn SeenWebhookIds>,
    /// What "now" is for signature timestamps.
    pub clock: Arc<dyn Clock>,
}

impl ChannelAuth {
    /// The channel called `name`, when the request (its `headers` and raw `body`) carries its
    /// credentials.
    ///
    /// # Errors
    /// A [`Refusal`]: log it, and answer every one alike.
    pub async fn authenticate(
        &self,
        name: &str,
        headers: &http::HeaderMap,
        body: &[u8],
    ) -> Result<(Arc<Channel>, Credential), Refusal> {
        match self.admit(name, headers).await? {
            Admission::Decided(channel, credential) => Ok((channel, credential)),
            Admission::Signed(channel) => self.verify(channel, headers, body).await,
        }
    }

    /// The first half of [`authenticate`](Self::authenticate), before the body is read: the
    /// channel, and the decision when the headers suffice ([`check_headers`]).
    ///
    /// # Errors
    /// [`Refusal::NoSuchChannel`], a refusal of [`check_headers`], [`Refusal::Store`].
    pub async fn admit(&self, name: &str, headers: &http::HeaderMap) -> Result<Admission, Refusal> {
        let unknown = || Refusal::NoSuchChannel { channel: name.chars().take(64).collect() };
        let name = ChannelName::new(name).map_err(|_| unknown())?;
        let channel = self.channels.channel(&name).await?.ok_or_else(unknown)?;
        if channel.platform.is_some() {
            return Err(Refusal::PlatformChannel { kind: channel.kind.as_str() });
        }
        Ok(match check_headers(&channel.inbound, headers)? {
            Some(credential) => Admission::Decided(channel, credential),
            None => Admission::Signed(channel),
        })
    }

    /// The channel called `name` for a request to its platform webhook route
    /// (`/v1/channels/{name}/webhook`), when the headers carry the platform's proof for it
    /// ([`Platform::check_headers`](crate::platforms::Platform::check_headers): Telegram's
    /// secret token; WhatsApp's signature header, whose check on the body follows with
    /// [`Platform::check_body`](crate::platforms::Platform::check_body)). Decided on the headers
    /// alone, before the body is read.
    ///
    /// # Errors
    /// [`Refusal::NoSuchChannel`], [`Refusal::NotAPlatform`], [`Refusal::WrongPlatformProof`],
    /// [`Refusal::Store`].
    pub async fn admit_platform(&self, name: &str, headers: &http::HeaderMap) -> Result<Arc<Channel>, Refusal> {
        let unknown = || Refusal::NoSuchChannel { channel: name.chars().take(64).collect() };
        let name = ChannelName::new(name).map_err(|_| unknown())?;
        let channel = self.channels.channel(&name).await?.ok_or_else(unknown)?;
        match &channel.platform {
            None => Err(Refusal::NotAPlatform),
            Some(platform) => match platform.check_headers(headers) {
                Ok(()) => Ok(channel),
                Err(proof) => Err(Refusal::WrongPlatformProof { proof }),
            },
        }
    }

    /// The second half of [`admit_platform`](Self::admit_platform): the platform's proof on the
    /// body, where it signs bodies ([`Platform::check_body`](crate::platforms::Platform::check_body)
    /// at this check's clock); `url` is the URL the platform requested (the public URL and the
    /// path, with its query).
    ///
    /// # Errors
    /// [`Refusal::WrongPlatformProof`]; [`Refusal::NotAPlatform`] for a generic channel.
    pub fn verify_platform(
        &self,
        channel: &Channel,
        headers: &http::HeaderMap,
        url: &str,
        body: &[u8],
    ) -> Result<(), Refusal> {
        let platform = channel.platform.as_ref().ok_or(Refusal::NotAPlatform)?;
        let now_s = self.clock.now_ms().div_euclid(1000);
        platform.check_body(headers, url, body, now_s).map_err(|proof| Refusal::WrongPlatformProof { proof })
    }

    /// The second half of [`authenticate`](Self::authenticate) for a signed request: the
    /// signature over the body ([`check_signature`], scoped to the channel's incarnation).
    ///
    /// # Errors
    /// A refusal of [`check_signature`].
    pub async fn verify(
        &self,
        channel: Arc<Channel>,
        headers: &http::HeaderMap,
        body: &[u8],
    ) -> Result<(Arc<Channel>, Credential), Refusal> {
        let scope = crate::channel::ChannelRef::of(&channel).to_string();
        let credential =
            check_signature(&scope, &channel.inbound, headers, body, &*self.seen, self.clock.now_ms()).await?;
        Ok((channel, credential))
    }
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::channel::{ChannelKind, Delivery, FixedChannels};
    use crate::clock::ManualClock;
    use crate::standard_webhooks::WebhookSecret;

    const TOKEN: &str = "channel-token-0123456789";
    const NOW_S: i64 = 1_700_000_000;

    /// A channel name from the request cannot forge a log line or make one long.
    #[test]
    fn an_unknown_channel_s_name_is_escaped_and_cut_in_the_refusal() {
        let forged = format!("x\n2026-12-06T10:23:00Z  INFO tern: admin token rotated{}", "y".repeat(30_000));
        let text = Refusal::NoSuchChannel { channel: forged }.to_string();
        assert!(!text.contains('\n'), "{text}");
        assert!(text.contains("x\\n2026"), "{text}");
        assert!(text.chars().count() < 120, "{} characters", text.chars().count());
        assert_eq!(Refusal::NoSuchChannel { channel: "support".into() }.to_string(), "there is no channel `support`");
    }

    fn auth(secret: &WebhookSecret) -> (ChannelAuth, Arc<ManualClock>) {
        let channel = Channel {
            name: ChannelName::new("support").unwrap(),
            incarnation: None,
            kind: ChannelKind::Generic,
            inbound: InboundAuth {
                tokens: vec![SecretString::from("old-token-0123456789"), SecretString::from(TOKEN)],
                signing_secrets: vec![secret.clone()],
                open: false,
            },
            delivery: Delivery::default(),
            platform: None,
            web: None,
        };
        let closed = Channel {
            name: ChannelName::default_channel(),
            incarnation: None,
            kind: ChannelKind::Generic,
            inbound: InboundAuth::default(),
            delivery: Delivery::default(),
            platform: None,
            web: None,
        };
        let clock = Arc::new(ManualClock::new(NOW_S * 1000));
        let a = ChannelAuth {
            channels: Arc::new(FixedChannels::new([channel, closed])),
            seen: Arc::new(MemorySeenIds::default()),
            clock: clock.clone(),
        };
        (a, clock)
    }

    fn bearer(token: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
        h
    }

    fn signed(secret: &WebhookSecret, id: &str, ts: i64, body: &[u8]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for (k, v) in secret.headers(id, ts, body) {
            h.insert(k, v.parse().unwrap());
        }
        h
    }

    #[tokio::test]
    async fn tokens_are_checked_and_each_refusal_is_named() {
        let secret = WebhookSecret::generate();
        let (a, _) = auth(&secret);
        let ok = a.authenticate("support", &bearer(TOKEN), b"{}").await.unwrap();
        assert_eq!(ok.1, Credential::Token);
        assert!(a.authenticate("support", &bearer("old-token-0123456789"), b"{}").await.is_ok());
        let reason = |r: Result<_, Refusal>| r.map(|_| ()).unwrap_err().reason();
        assert_eq!(reason(a.authenticate("support", &bearer("nope"), b"{}").await), "wrong-token");
        assert_eq!(reason(a.authenticate("support", &bearer(""), b"{}").await), "wrong-token");
        assert_eq!(reason(a.authenticate("nobody", &bearer(TOKEN), b"{}").await), "no-such-channel");
        assert_eq!(reason(a.authenticate("bad name!", &bearer(TOKEN), b"{}").await), "no-such-channel");
        assert_eq!(reason(a.authenticate("support", &http::HeaderMap::new(), b"{}").await), "no-credentials");
        let mut basic = http::HeaderMap::new();
        basic.insert(http::header::AUTHORIZATION, "Basic dTpw".parse().unwrap());
        assert_eq!(reason(a.authenticate("support", &basic, b"{}").await), "not-bearer");
        // A channel without credentials refuses everything, even an empty bearer token.
        assert_eq!(reason(a.authenticate("default", &bearer(""), b"{}").await), "channel-without-credentials");
        let refusal = a.authenticate("support", &bearer("nope"), b"{}").await.unwrap_err().to_string();
        assert!(!refusal.contains(TOKEN) && !refusal.contains("nope"), "{refusal}");
    }

    #[tokio::test]
    async fn signatures_are_checked_within_the_window_and_never_twice() {
        let secret = WebhookSecret::generate();
        let (a, clock) = auth(&secret);
        let body = br#"{"text":"hi"}"#;
        let h = signed(&secret, "msg_1", NOW_S - 10, body);
        let ok = a.authenticate("support", &h, body).await.unwrap();
        assert_eq!(ok.1, Credential::Signature { id: "msg_1".into() });
        let reason = |r: Result<_, Refusal>| r.map(|_| ()).unwrap_err().reason();
        assert_eq!(reason(a.authenticate("support", &h, body).await), "replayed-webhook-id");
        assert_eq!(reason(a.authenticate("support", &h, b"{}").await), "signature-mismatch");
        // The sender's retry: the same id and body, signed again later, goes on; the first
        // request replayed after it does not, nor the id with another body.
        let retry = signed(&secret, "msg_1", NOW_S - 5, body);
        assert!(a.authenticate("support", &retry, body).await.is_ok());
        assert_eq!(reason(a.authenticate("support", &retry, body).await), "replayed-webhook-id");
        assert_eq!(reason(a.authenticate("support", &h, body).await), "replayed-webhook-id");
        let other_body = br#"{"text":"other"}"#;
        assert_eq!(
            reason(a.authenticate("support", &signed(&secret, "msg_1", NOW_S, other_body), other_body).await),
            "webhook-id-reused"
        );
        let other = WebhookSecret::generate();
        assert_eq!(
            reason(a.authenticate("support", &signed(&other, "msg_2", NOW_S, body), body).await),
            "signature-mismatch"
        );
        assert_eq!(
            reason(a.authenticate("support", &signed(&secret, "msg_3", NOW_S - 301, body), body).await),
            "signature-too-old"
        );
        let mut missing = signed(&secret, "msg_4", NOW_S, body);
        missing.remove(standard_webhooks::HEADER_SIGNATURE);
        assert_eq!(reason(a.authenticate("support", &missing, body).await), "signature-header-missing");
        // Once the window has passed, the old signature is too old whatever its id.
        clock.advance(std::time::Duration::from_secs(400));
        assert_eq!(reason(a.authenticate("support", &h, body).await), "signature-too-old");
        // A fresh signature with the same id, after the window, is a new request.
        let later = signed(&secret, "msg_1", NOW_S + 400, body);
        assert!(a.authenticate("support", &later, body).await.is_ok());
    }

    #[tokio::test]
    async fn an_open_channel_takes_anything() {
        let channel = Channel {
            name: ChannelName::default_channel(),
            incarnation: None,
            kind: ChannelKind::Generic,
            inbound: InboundAuth { open: true, ..InboundAuth::default() },
            delivery: Delivery::default(),
            platform: None,
            web: None,
        };
        let seen = MemorySeenIds::default();
        let got = check("default", &channel.inbound, &http::HeaderMap::new(), b"", &seen, NOW_S * 1000).await.unwrap();
        assert_eq!(got, Credential::Open);
    }

    #[tokio::test]
    async fn a_sender_that_fills_its_record_does_not_stop_the_others() {
        let seen = MemorySeenIds::with_limit(2);
        let req = |scope, id| SignedRequest {
            scope,
            id,
            body_sha256: "aa",
            signed_at: NOW_S,
            expires_at_ms: NOW_S * 1000 + 1,
        };
        let now = NOW_S * 1000;
        for id in ["a", "b"] {
            assert_eq!(seen.sighting(&req("support", id), now).await.unwrap(), Sighting::Accepted);
        }
        assert_eq!(seen.sighting(&req("support", "c"), now).await.unwrap(), Sighting::Replayed, "support is full");
        assert_eq!(seen.sighting(&req("sales", "c"), now).await.unwrap(), Sighting::Accepted, "sales is not");
        // Once support's ids expire, it has room again.
        assert_eq!(seen.sighting(&req("support", "c"), now + 1).await.unwrap(), Sighting::Accepted);
    }
}
