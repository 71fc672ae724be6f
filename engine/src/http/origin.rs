//! Origins as operators write them (`https://api.example.com`, `http://127.0.0.1:8080`): where
//! a token may be sent ([`crate::http::Outbound`]) and where a plugin may connect. An origin
//! is scheme, host and port (RFC 6454 §4); anything more is refused rather than ignored, so
//! that `https://api.example.com/v2` is not silently widened to the whole host.

/// Why text is not an origin. Messages quote the text as given.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OriginError {
    /// Not a URL.
    #[error("`{text}` is not an origin: {reason}")]
    NotAUrl {
        /// The text.
        text: String,
        /// The URL parser's message.
        reason: String,
    },
    /// Not http or https, or no host.
    #[error("`{text}` is not an http(s) origin")]
    NotHttp {
        /// The text.
        text: String,
    },
    /// A path, query or user name after the host.
    #[error("`{text}` must be an origin only (scheme://host[:port]), without a path")]
    NotOnlyAnOrigin {
        /// The text.
        text: String,
    },
}

/// Parses `http(s)://host[:port]` (nothing else) into an origin.
///
/// # Errors
/// [`OriginError`].
pub fn parse_origin(text: &str) -> Result<url::Origin, OriginError> {
    let u =
        url::Url::parse(text).map_err(|e| OriginError::NotAUrl { text: text.to_string(), reason: e.to_string() })?;
    if !matches!(u.scheme(), "http" | "https") || u.host().is_none() {
        return Err(OriginError::NotHttp { text: text.to_string() });
    }
    if u.path() != "/" || u.query().is_some() || !u.username().is_empty() {
        return Err(OriginError::NotOnlyAnOrigin { text: text.to_string() });
    }
    Ok(u.origin())
}
