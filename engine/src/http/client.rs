//! The one outbound HTTP client: no automatic redirects, no proxies, the SSRF-guarded resolver,
//! a deadline per request and a response size cap counted after decompression.

use std::sync::Arc;
use std::time::Duration;

type Bytes = Vec<u8>;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue, LOCATION};
use serde_json::Value;
use url::Url;

use super::{PreparedRequest, RequestBody, decode, guard};
use crate::tokens::Credential;

/// Limits and switches for outbound HTTP.
#[derive(Clone, Debug)]
pub struct HttpPolicy {
    /// Allow private, loopback and link-local destinations.
    pub allow_private_network: bool,
    /// Most redirects followed for one request.
    pub max_redirects: usize,
    /// Timeout for a request whose step sets none.
    pub default_timeout: Duration,
    /// Largest response body, counted after decompression.
    pub max_response_bytes: usize,
    /// The User-Agent header.
    pub user_agent: String,
}

impl Default for HttpPolicy {
    fn default() -> Self {
        Self {
            allow_private_network: false,
            max_redirects: 5,
            default_timeout: Duration::from_secs(10),
            max_response_bytes: 10 * 1024 * 1024,
            user_agent: concat!("tern/", env!("CARGO_PKG_VERSION")).to_string(),
        }
    }
}

/// Why an outbound request failed. URLs are shown without their query string, which may carry
/// secrets.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The integration's rate limit (configured, or the API's own) would hold the request past
    /// its deadline, or too many requests already wait for it.
    #[error(
        "integration `{integration}` is rate limited: {reason}; the request was not sent (raise the step's timeout, or lower the traffic)"
    )]
    RateLimited {
        /// The integration.
        integration: String,
        /// Why the request was not sent.
        reason: String,
    },
    /// The destination is not allowed (SSRF guard, scheme).
    #[error("request to {url} was denied: {reason}")]
    Denied {
        /// The URL (query removed).
        url: String,
        /// Why.
        reason: String,
    },
    /// The request did not finish in time.
    #[error("request to {url} timed out after {} ms", timeout.as_millis())]
    Timeout {
        /// The URL (query removed).
        url: String,
        /// The time allowed.
        timeout: Duration,
    },
    /// The body is larger than allowed.
    #[error("response from {url} is larger than {limit} bytes; raise the limit or ask the API for less")]
    TooLarge {
        /// The URL (query removed).
        url: String,
        /// The limit.
        limit: usize,
    },
    /// Too many redirects.
    #[error("{url} redirected more than {max} times")]
    TooManyRedirects {
        /// The last URL (query removed).
        url: String,
        /// The limit.
        max: usize,
    },
    /// A redirect without a usable Location.
    #[error("{url} answered {status} with an unusable Location header: {reason}")]
    BadRedirect {
        /// The URL (query removed).
        url: String,
        /// The redirect status.
        status: u16,
        /// Why it is unusable.
        reason: String,
    },
    /// Connecting, sending or reading failed.
    #[error("could not complete the request to {url}: {reason}")]
    Transport {
        /// The URL (query removed).
        url: String,
        /// The underlying error, as text.
        reason: String,
    },
    /// The response is not JSON where JSON was required.
    #[error("response from {url} is not JSON (status {status}, content type `{content_type}`): {reason}")]
    NotJson {
        /// The URL (query removed).
        url: String,
        /// The status.
        status: u16,
        /// The content type sent, or `none`.
        content_type: String,
        /// What is wrong, with a short excerpt of the body.
        reason: String,
    },
    /// The body is empty where JSON was required.
    #[error("response from {url} (status {status}) has an empty body; there are no fields to read")]
    EmptyBody {
        /// The URL (query removed).
        url: String,
        /// The status.
        status: u16,
    },
    /// A redirect would carry the request body to another origin (307/308 keep the body).
    #[error(
        "{url} answered {status} redirecting to another origin, {to}; the request body is not sent there (it may hold secrets). Call {to} directly if it is meant to receive the body"
    )]
    RedirectBodyCrossOrigin {
        /// The redirecting URL (query removed).
        url: String,
        /// The redirect status.
        status: u16,
        /// The other origin.
        to: String,
    },
    /// The response is JSON nested deeper than the parser allows.
    #[error(
        "response from {url} is JSON nested deeper than {limit} levels (status {status}); ask the API for a flatter or smaller answer"
    )]
    TooDeep {
        /// The URL (query removed).
        url: String,
        /// The status.
        status: u16,
        /// The nesting limit.
        limit: usize,
    },
    /// The integration's token may not go to this origin.
    #[error(
        "the token of integration `{integration}` may not be sent to {origin}; the integration's api_origins are {allowed}. Fix the URL, or add the origin to the integration"
    )]
    OriginNotAllowed {
        /// The integration.
        integration: String,
        /// The request's origin.
        origin: String,
        /// The allowed origins.
        allowed: String,
    },
    /// No token could be had.
    #[error(transparent)]
    Token(#[from] crate::tokens::TokenError),
    /// A test's recording has no answer for the request (`tern test`); nothing was sent.
    #[error("{message}")]
    NotRecorded {
        /// The URL (query removed).
        url: String,
        /// What to add to the recording.
        message: String,
    },
}

/// The code of [`HttpError::NotRecorded`]: a test's recording has no answer for a call.
pub const NOT_RECORDED: &str = "not-recorded";

impl HttpError {
    /// A stable, kebab-case code for the failure, as shown in run results.
    pub fn code(&self) -> &'static str {
        match self {
            HttpError::Denied { .. } => "http-denied",
            HttpError::Timeout { .. } => "http-timeout",
            HttpError::TooLarge { .. } => "http-too-large",
            HttpError::NotJson { .. } => "not-json",
            HttpError::EmptyBody { .. } => "empty-body",
            HttpError::TooDeep { .. } => "response-too-deep",
            HttpError::RedirectBodyCrossOrigin { .. } => "redirect-body-cross-origin",
            HttpError::OriginNotAllowed { .. } => "token-origin",
            HttpError::Token(_) => "integration",
            HttpError::RateLimited { .. } => "rate-limited",
            HttpError::NotRecorded { .. } => NOT_RECORDED,
            HttpError::TooManyRedirects { .. } | HttpError::BadRedirect { .. } | HttpError::Transport { .. } => "http",
        }
    }
}

/// serde_json's nesting limit for parsed documents.
pub const MAX_JSON_DEPTH: usize = 128;

/// The deepest nesting of arrays and objects in `bytes` read as JSON (strings skipped), counted
/// without parsing, stopping once past `stop_at`.
fn json_depth(bytes: &[u8], stop_at: usize) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
                if deepest > stop_at {
                    break;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// TLS failures (as rustls words them) and what to do about them.
const TLS_HINTS: &[(&str, &str)] = &[
    (
        "UnknownIssuer",
        " (the server's certificate is not signed by a CA Tern trusts; a private CA goes in the integration's --ca-cert)",
    ),
    (
        "CertificateRequired",
        " (the server wants a client certificate: the integration's --client-cert and --client-key)",
    ),
    ("BadCertificate", " (the server refused the client certificate: is it the one its operator issued?)"),
    ("NotValidForName", " (the server's certificate is for another host name)"),
    ("Expired", " (a certificate has expired)"),
];

/// What replaces a credential in a displayed URL.
pub const MASKED: &str = "***";

/// The URL as it may be shown (logs, errors, traces, the console, the CLI): without its
/// user:password (shown `***@`), its query (shown `?…`) and its fragment, and with every
/// path segment that looks like a credential shown `***` (see [`is_token_like`]: a Slack,
/// Discord or Telegram webhook URL is a secret in itself). This is the one function that
/// shows a URL; [`remember_url_secrets`] registers the same parts with the masker.
pub fn display_url(url: &Url) -> String {
    let mut out = format!("{}:", url.scheme());
    if url.has_host() {
        out.push_str("//");
        if !url.username().is_empty() || url.password().is_some() {
            out.push_str(MASKED);
            out.push('@');
        }
        out.push_str(url.host_str().unwrap_or_default());
        if let Some(port) = url.port() {
            out.push_str(&format!(":{port}"));
        }
    }
    let path = url.path();
    if url.cannot_be_a_base() {
        out.push_str(if is_token_like(path) { MASKED } else { path });
    } else {
        let masked: Vec<std::borrow::Cow<'_, str>> = path.split('/').map(shown_segment).collect();
        out.push_str(&masked.join("/"));
    }
    if url.query().is_some() {
        out.push_str("?…");
    }
    out
}

/// A path segment as [`display_url`] shows it: its parameters (`;…`) masked when it has any,
/// and the whole of it when [`is_token_like`] holds for what is left.
fn shown_segment(segment: &str) -> std::borrow::Cow<'_, str> {
    let (name, params) = match segment.split_once(';') {
        Some((name, _)) => (name, true),
        None => (segment, false),
    };
    match (name.is_empty() || is_token_like(name), params) {
        (true, true) => MASKED.into(),
        (true, false) if !name.is_empty() => MASKED.into(),
        (false, true) => format!("{name};{MASKED}").into(),
        _ => segment.into(),
    }
}

/// Whether a path segment (as written in the URL) may be a credential, so that it is never
/// shown: a segment with parameters (`;token=…`: the parameters are hidden, see
/// [`display_url`]) or a `bot<id>:<key>` (Telegram) of 16 characters or more; or 16 characters
/// or more of letters, digits and `-_.~=+%` that are not up to four plain lower-case words
/// (each at most 12 letters, with a vowel): anything with a digit, an upper-case letter or a
/// percent escape (random tokens, Slack's and Discord's webhook keys, UUIDs of capability
/// URLs), a run of more than 12 letters (a letters-only token) or a chunk without a vowel (a
/// dashed one). Ordinary path words (`v1`, `webhooks`, `tern-replies`, `contacts.search`) are
/// shown; a URL that must show nothing of its path keeps its secret in the query or userinfo.
pub fn is_token_like(segment: &str) -> bool {
    if segment.contains(';') || (segment.contains(':') && segment.len() >= 16) {
        return true;
    }
    if segment.len() < 16 {
        return false;
    }
    if !segment.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.~=+%".contains(&b)) {
        return false;
    }
    // Plain words: at most four, each of at most 12 lower-case letters with a vowel (random
    // letters soon make a chunk without one).
    let words: Vec<&str> = segment.split(['-', '_', '.', '~']).collect();
    let plain_words = words.len() <= 4
        && words.iter().all(|word| {
            word.len() <= 12
                && word.bytes().all(|b| b.is_ascii_lowercase())
                && word.bytes().any(|b| b"aeiouy".contains(&b))
        });
    !plain_words
}

/// Registers the credentials in a URL with the process-wide masker
/// ([`crate::secrets::known`]): the password (and a token-like user name), every token-like
/// path segment and every query value, as written and percent-decoded, so that a
/// URL printed by a library (or echoed by a server) is masked too.
pub fn remember_url_secrets(url: &Url) {
    let mut parts: Vec<String> = Vec::new();
    if let Some(password) = url.password() {
        parts.push(password.to_string());
    }
    if is_token_like(url.username()) {
        parts.push(url.username().to_string());
    }
    for segment in url.path().split('/') {
        match segment.split_once(';') {
            Some((name, params)) => {
                parts.extend(is_token_like(name).then(|| name.to_string()));
                parts.extend(params.split(';').map(|p| p.split_once('=').map_or(p, |(_, v)| v).to_string()));
            }
            None if is_token_like(segment) => parts.push(segment.to_string()),
            None => {}
        }
    }
    if let Some(query) = url.query() {
        parts.extend(query.split('&').filter_map(|kv| kv.split_once('=').map(|(_, v)| v.to_string())));
    }
    for part in parts {
        let decoded = percent_encoding::percent_decode_str(&part).decode_utf8_lossy().into_owned();
        crate::secrets::known::remember_str(&part);
        if decoded != part {
            crate::secrets::known::remember_str(&decoded);
        }
    }
}

/// A received response.
#[derive(Clone, Debug)]
pub struct HttpResponse {
    /// The status.
    pub status: StatusCode,
    /// The final URL, after redirects.
    pub url: Url,
    /// The response headers.
    pub headers: HeaderMap,
    /// The body, decompressed.
    pub body: Bytes,
    /// Whether the integration's token was refreshed and the request sent again after the
    /// provider rejected the first token (`refresh_on_status`, 401 by default).
    pub token_refreshed: bool,
    /// How long the request waited for its integration's rate limit: the configured rate, the
    /// API's own rate-limit headers, and a 429's `Retry-After` (see
    /// [`RateLimiter`](super::limit::RateLimiter)).
    pub rate_limit_wait: Option<Duration>,
    /// Whether the API answered 429 first and the request was sent again after its
    /// `Retry-After` (once, within the request's time).
    pub retried_after_429: bool,
}

impl HttpResponse {
    /// The content type, or `none`.
    pub fn content_type(&self) -> &str {
        self.headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("none")
    }

    /// Whether the content type says JSON (`application/json`, `…+json`).
    pub fn is_json_type(&self) -> bool {
        let ct = self.content_type().split(';').next().unwrap_or("").trim();
        ct.eq_ignore_ascii_case("application/json")
            || ct.len() > 5 && ct.get(ct.len() - 5..).is_some_and(|s| s.eq_ignore_ascii_case("+json"))
    }

    /// The content type as sent, if any.
    fn content_type_header(&self) -> Option<&str> {
        self.headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok())
    }

    fn not_json(&self, reason: String) -> HttpError {
        HttpError::NotJson {
            url: display_url(&self.url),
            status: self.status.as_u16(),
            content_type: self.content_type().to_string(),
            reason,
        }
    }

    /// Parses the body as JSON in the charset its content type declares (a byte order mark is
    /// skipped, RFC 8259 §8.1; depth is capped at 128 by serde_json). A body without a content
    /// type is accepted when it parses; any other non-JSON content type is an error. An empty
    /// (or whitespace-only) body is `Ok(None)`: "no fields", not "not JSON".
    pub fn json_body(&self) -> Result<Option<Value>, HttpError> {
        if decode::is_blank(&self.body) {
            return Ok(None);
        }
        if !self.is_json_type() && self.headers.contains_key(CONTENT_TYPE) {
            return Err(self.not_json(format!("body starts with {:?}", self.excerpt())));
        }
        decode::json(self.content_type_header(), &self.body).map(Some).map_err(|e| {
            if json_depth(&self.body, MAX_JSON_DEPTH) > MAX_JSON_DEPTH {
                return HttpError::TooDeep {
                    url: display_url(&self.url),
                    status: self.status.as_u16(),
                    limit: MAX_JSON_DEPTH,
                };
            }
            self.not_json(format!("{e}; body starts with {:?}", self.excerpt()))
        })
    }

    /// Like [`Self::json_body`], but an empty body is an [`HttpError::EmptyBody`] error.
    pub fn json(&self) -> Result<Value, HttpError> {
        self.json_body()?
            .ok_or_else(|| HttpError::EmptyBody { url: display_url(&self.url), status: self.status.as_u16() })
    }

    /// The body as text in its declared charset (malformed bytes become U+FFFD).
    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        decode::text_lossy(self.content_type_header(), &self.body)
    }

    /// The body as JSON when it is JSON, as text otherwise, `null` when empty.
    pub fn body_value(&self) -> Value {
        match self.json_body() {
            Ok(Some(v)) => v,
            Ok(None) => Value::Null,
            Err(_) => Value::String(self.text().into_owned()),
        }
    }

    /// The first 80 characters of the body, for messages, with known secrets masked before the
    /// cut.
    pub fn excerpt(&self) -> String {
        // Decoded in the declared charset, masked before the cut (a cut secret would no longer
        // match the masker).
        let head = &self.body[..self.body.len().min(64 * 1024)];
        let text = decode::text_lossy(self.content_type_header(), head);
        crate::secrets::known::masked_excerpt(text.as_bytes(), 80)
    }
}

/// One request exchange (possibly several hops).
struct Exchange<'a> {
    method: reqwest::Method,
    url: &'a Url,
    headers: &'a HeaderMap,
    body: Option<Vec<u8>>,
    /// Sent with the body (not after a redirect turns the request into a GET).
    content_type: Option<HeaderValue>,
    timeout: Duration,
    credential: Option<&'a Credential>,
    max_redirects: usize,
}

/// The guarded HTTP client. Cheap to clone.
#[derive(Clone, Debug)]
pub struct HttpClient {
    inner: reqwest::Client,
    /// With [`with_client_tls`](Self::with_client_tls): the plain client, for the hops of an
    /// exchange that leave its first origin (they get no client certificate, and no private CA
    /// is trusted there).
    plain: Option<reqwest::Client>,
    policy: Arc<HttpPolicy>,
}

/// The guarded client's settings: no redirects (followed by hand), no proxy, the guarded
/// resolver, the user agent and the connection timeouts.
fn builder(policy: &HttpPolicy) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .dns_resolver(Arc::new(guard::GuardedResolver { allow_private: policy.allow_private_network }))
        .user_agent(policy.user_agent.clone())
        .connect_timeout(Duration::from_secs(10))
        .pool_idle_timeout(Duration::from_secs(60))
}

impl HttpClient {
    /// Builds the client.
    pub fn new(policy: HttpPolicy) -> Result<Self, HttpError> {
        let inner = builder(&policy)
            .build()
            .map_err(|e| HttpError::Transport { url: "(client setup)".into(), reason: e.to_string() })?;
        Ok(Self { inner, plain: None, policy: Arc::new(policy) })
    }

    /// A client of its own for an integration with a client certificate or a private CA
    /// ([`ClientTls`](super::tls::ClientTls)), under the same policy: the certificate is
    /// presented, and the CA trusted, only on each request's first origin (the integration's
    /// API origin: [`Outbound`](super::Outbound) checks it first); hops that leave it continue
    /// on this client's plain one. A separate connection pool, so that no connection made with
    /// the certificate serves another integration.
    ///
    /// # Errors
    /// The certificate, key or CA cannot be loaded.
    pub fn with_client_tls(&self, tls: &super::tls::ClientTls) -> Result<Self, super::tls::TlsError> {
        let inner = tls
            .apply(builder(&self.policy).use_rustls_tls())?
            .build()
            .map_err(|e| super::tls::TlsError::BadIdentity { reason: e.to_string() })?;
        Ok(Self {
            inner,
            plain: Some(self.plain.clone().unwrap_or_else(|| self.inner.clone())),
            policy: self.policy.clone(),
        })
    }

    /// The policy in force.
    pub fn policy(&self) -> &HttpPolicy {
        &self.policy
    }

    /// Sends a request, following redirects itself. `credential` is sent only to the request's
    /// original origin: when a redirect leaves it, the credential and every header the flow set
    /// are dropped for the rest of the exchange.
    pub async fn send(
        &self,
        req: &PreparedRequest,
        credential: Option<&Credential>,
    ) -> Result<HttpResponse, HttpError> {
        let (body, content_type) = match &req.body {
            None => (None, None),
            Some(RequestBody::Bytes(b)) => (Some(b.clone()), None),
            Some(RequestBody::Json(v)) => {
                let encoded = serde_json::to_vec(v).map_err(|e| HttpError::Transport {
                    url: display_url(&req.url),
                    reason: format!("body could not be encoded: {e}"),
                })?;
                (Some(encoded), Some(HeaderValue::from_static("application/json")))
            }
            Some(RequestBody::Encoded { content_type, bytes }) => (Some(bytes.clone()), Some(content_type.clone())),
        };
        // The step's own Content-Type header wins.
        let content_type = content_type.filter(|_| !req.headers.contains_key(CONTENT_TYPE));
        let exchange = Exchange {
            method: req.method.to_reqwest(),
            url: &req.url,
            headers: &req.headers,
            body,
            content_type,
            timeout: req.timeout,
            credential,
            max_redirects: self.policy.max_redirects,
        };
        self.exchange(exchange).await
    }

    /// Sends a request with a ready-made body and headers (the token endpoint). With
    /// `follow_redirects` false a redirect is returned as the response.
    pub async fn send_raw(
        &self,
        method: reqwest::Method,
        url: Url,
        headers: HeaderMap,
        body: Vec<u8>,
        timeout: Duration,
        follow_redirects: bool,
    ) -> Result<HttpResponse, HttpError> {
        let exchange = Exchange {
            method,
            url: &url,
            headers: &headers,
            body: (!body.is_empty()).then_some(body),
            content_type: None,
            timeout,
            credential: None,
            max_redirects: if follow_redirects { self.policy.max_redirects } else { 0 },
        };
        self.exchange(exchange).await
    }

    async fn exchange(&self, x: Exchange<'_>) -> Result<HttpResponse, HttpError> {
        let deadline = tokio::time::Instant::now() + x.timeout;
        let first_origin = x.url.origin();
        let mut url = x.url.clone();
        let mut method = x.method;
        let mut body = x.body;
        let mut headers = Some(x.headers);
        let mut credential = x.credential;
        for hop in 0..=x.max_redirects {
            if !matches!(url.scheme(), "http" | "https") {
                return Err(HttpError::Denied {
                    url: display_url(&url),
                    reason: format!("scheme `{}` is not allowed", url.scheme()),
                });
            }
            guard::check_url_host(&url, self.policy.allow_private_network)
                .map_err(|reason| HttpError::Denied { url: display_url(&url), reason })?;
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            if remaining.is_zero() {
                return Err(HttpError::Timeout { url: display_url(&url), timeout: x.timeout });
            }
            // A query credential is added to the URL sent, never to `url`, which is what errors,
            // redirects and the response show.
            let sent = credential.and_then(|c| c.url_to_send(&url)).unwrap_or_else(|| url.clone());
            // A client certificate is only for the first origin.
            let client = match &self.plain {
                Some(plain) if url.origin() != first_origin => plain,
                _ => &self.inner,
            };
            let mut rb = client.request(method.clone(), sent).timeout(remaining);
            if let Some(h) = headers.filter(|h| !h.is_empty()) {
                let mut h = h.clone();
                // The credential's header is the integration's: a flow's own value of it goes.
                if let Some(Credential::Header { name, .. }) = credential {
                    h.remove(name);
                }
                rb = rb.headers(h);
            }
            if let Some(Credential::Header { name, value }) = credential {
                rb = rb.header(name.clone(), value.clone());
            }
            if let Some(b) = &body {
                if let Some(ct) = &x.content_type {
                    rb = rb.header(CONTENT_TYPE, ct.clone());
                }
                rb = rb.body(b.clone());
            }
            let resp = rb.send().await.map_err(|e| self.transport_error(&url, x.timeout, e))?;
            let status = resp.status();
            if x.max_redirects > 0 && matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308) {
                if hop == x.max_redirects {
                    return Err(HttpError::TooManyRedirects { url: display_url(&url), max: x.max_redirects });
                }
                let bad =
                    |reason: String| HttpError::BadRedirect { url: display_url(&url), status: status.as_u16(), reason };
                let location = resp
                    .headers()
                    .get(LOCATION)
                    .ok_or_else(|| bad("missing".into()))?
                    .to_str()
                    .map_err(|_| bad("not text".into()))?;
                let next = url.join(location).map_err(|e| bad(e.to_string()))?;
                // A user name or password in the Location would become an `Authorization`
                // header the answering server chose.
                if !next.username().is_empty() || next.password().is_some() {
                    return Err(bad(
                        "it carries a user name or password, which Tern does not send where a redirect says".into(),
                    ));
                }
                if next.origin() != first_origin {
                    credential = None;
                    headers = None;
                }
                if status == StatusCode::SEE_OTHER
                    || (matches!(status.as_u16(), 301 | 302) && method == reqwest::Method::POST)
                {
                    method = reqwest::Method::GET;
                    body = None;
                }
                // 307/308 (and 301/302 for methods other than POST) resend the body: never to
                // another origin (SECURITY R2).
                if body.is_some() && next.origin() != first_origin {
                    return Err(HttpError::RedirectBodyCrossOrigin {
                        url: display_url(&url),
                        status: status.as_u16(),
                        to: next.origin().ascii_serialization(),
                    });
                }
                tracing::debug!(from = %display_url(&url), to = %display_url(&next), status = status.as_u16(), "following redirect");
                url = next;
                continue;
            }
            return self.read(resp, url, x.timeout).await;
        }
        Err(HttpError::TooManyRedirects { url: display_url(&url), max: x.max_redirects })
    }

    async fn read(&self, mut resp: reqwest::Response, url: Url, timeout: Duration) -> Result<HttpResponse, HttpError> {
        let limit = self.policy.max_response_bytes;
        let too_large = || HttpError::TooLarge { url: display_url(&url), limit };
        if resp.content_length().is_some_and(|n| n > limit as u64) {
            return Err(too_large());
        }
        let status = resp.status();
        let headers = std::mem::take(resp.headers_mut());
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| self.transport_error(&url, timeout, e))? {
            if body.len() + chunk.len() > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(HttpResponse {
            status,
            url,
            headers,
            body,
            token_refreshed: false,
            rate_limit_wait: None,
            retried_after_429: false,
        })
    }

    fn transport_error(&self, url: &Url, timeout: Duration, e: reqwest::Error) -> HttpError {
        if e.is_timeout() {
            return HttpError::Timeout { url: display_url(url), timeout };
        }
        // The URL sent may carry a query credential: reqwest's message must not repeat it.
        let e = e.without_url();
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        let mut reasons = Vec::new();
        while let Some(err) = source {
            if let Some(denied) = err.downcast_ref::<guard::Denied>() {
                return HttpError::Denied { url: display_url(url), reason: denied.reason.clone() };
            }
            reasons.push(err.to_string());
            source = err.source();
        }
        reasons.dedup();
        // reqwest's own message repeats the URL with its query; keep only the causes.
        let mut reason = if reasons.len() > 1 { reasons[1..].join(": ") } else { reasons.join(": ") };
        // What a TLS failure means for the integration's settings.
        for (says, hint) in TLS_HINTS {
            if reason.contains(says) {
                reason.push_str(hint);
                break;
            }
        }
        HttpError::Transport { url: display_url(url), reason }
    }
}

#[cfg(test)]
mod display_tests {
    use super::*;

    fn shown(url: &str) -> String {
        display_url(&Url::parse(url).unwrap())
    }

    #[test]
    fn display_url_hides_credentials_and_keeps_the_rest() {
        assert_eq!(
            shown("https://user:hunter2-password@hooks.example.com:8443/in?x=1#f"),
            "https://***@hooks.example.com:8443/in?…"
        );
        assert_eq!(shown("https://only-user@example.com/"), "https://***@example.com/");
        assert_eq!(
            shown("https://hooks.slack.com/services/T0123ABCD/B0123ABCD/abcdEFGH1234ijklMNOP5678"),
            "https://hooks.slack.com/services/T0123ABCD/B0123ABCD/***"
        );
        assert_eq!(
            shown("https://api.telegram.org/bot123456:ABC-DEF1234ghIkl-zyx57W2v1u123ew11/sendMessage"),
            "https://api.telegram.org/***/sendMessage"
        );
        assert_eq!(
            shown("https://example.com/hooks/3f2a9c1e-7b4d-4e8f-9a0b-1c2d3e4f5a6b/in"),
            "https://example.com/hooks/***/in"
        );
        // Ordinary paths are shown as they are.
        assert_eq!(
            shown("http://127.0.0.1:8080/v1/conversations/messages"),
            "http://127.0.0.1:8080/v1/conversations/messages"
        );
        assert_eq!(shown("https://api.example.com/v2/contacts.search"), "https://api.example.com/v2/contacts.search");
        assert_eq!(
            shown("https://chat.example.com/tern-replies-endpoint"),
            "https://chat.example.com/tern-replies-endpoint"
        );
        // Path parameters, letters-only and dashed tokens, mixed case, percent escapes.
        for (url, want) in [
            ("https://h.example.com/in;token=s3cr3t", "https://h.example.com/in;***"),
            ("https://h.example.com/in;jsessionid=ABC/x", "https://h.example.com/in;***/x"),
            ("https://h.example.com/;k=v/x", "https://h.example.com/***/x"),
            ("https://h.example.com/hooks/abcdefghijklmnopqrstuvwx", "https://h.example.com/hooks/***"),
            ("https://h.example.com/hooks/aBcD-eFgH-iJkL-mNoP", "https://h.example.com/hooks/***"),
            ("https://h.example.com/hooks/qwer-tyui-opas-dfgh-jklz", "https://h.example.com/hooks/***"),
            ("https://h.example.com/hooks/xkcd-qwrt-plmn-bvcx", "https://h.example.com/hooks/***"),
            ("https://h.example.com/hooks/replies-from-tern", "https://h.example.com/hooks/replies-from-tern"),
            ("https://h.example.com/hooks/QWERTYUIOPASDFGH", "https://h.example.com/hooks/***"),
            ("https://h.example.com/hooks/abc%2Fdefghijklmnop", "https://h.example.com/hooks/***"),
        ] {
            assert_eq!(shown(url), want, "{url}");
        }
    }

    #[test]
    fn remembered_url_parts_are_masked_in_text() {
        let url = Url::parse(
            "https://tern:pa55-w0rd-remembered@example.com/hook/tok3n-remembered-abcdef?sig=q5ery-remembered",
        )
        .unwrap();
        remember_url_secrets(&url);
        let text = format!("failed: {url} pa55-w0rd-remembered tok3n-remembered-abcdef q5ery-remembered");
        let masked = crate::secrets::known::mask(&text);
        for part in ["pa55-w0rd-remembered", "tok3n-remembered-abcdef", "q5ery-remembered"] {
            assert!(!masked.contains(part), "{masked}");
        }
    }
}
