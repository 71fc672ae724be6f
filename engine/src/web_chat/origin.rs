//! The origin of a web page (RFC 6454): scheme, host and port, as a browser writes it in the
//! `Origin` header of a cross-origin request (§6.2: `https://example.com`, the port only when
//! it is not the scheme's default).

use std::fmt;

/// The origin of the pages allowed to use a web channel, as a browser serializes it
/// (`https://example.com`, `http://localhost:8080`).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Origin(String);

/// Why a text is not an origin.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OriginError {
    /// Not an absolute URL.
    #[error("`{text}` is not a URL; write the page's origin in full, e.g. https://www.example.com")]
    NotAUrl {
        /// The text (cut to 100 characters).
        text: String,
    },
    /// Not http or https.
    #[error("`{text}`: a web page's origin is http or https, not `{scheme}`")]
    Scheme {
        /// The text (cut to 100 characters).
        text: String,
        /// Its scheme.
        scheme: String,
    },
    /// A wildcard: origins are compared exactly.
    #[error(
        "`{text}`: an origin is exact, and `*` matches nothing a browser sends; give each origin (repeat the option)"
    )]
    Wildcard {
        /// The text (cut to 100 characters).
        text: String,
    },
    /// A path, query, fragment or user name after the host.
    #[error(
        "`{text}` has more than an origin; give scheme, host and port only (`{origin}`): every page of that origin may then use the chat"
    )]
    MoreThanAnOrigin {
        /// The text (cut to 100 characters).
        text: String,
        /// The origin it names.
        origin: String,
    },
}

impl Origin {
    /// Parses `https://host[:port]` (a trailing `/` is fine); the host is lower-cased and an
    /// internationalized name written in ASCII (Punycode), the default port left out, as
    /// browsers do.
    ///
    /// # Errors
    /// [`OriginError`]: not a URL, not http(s), or a path, query, fragment or user name.
    pub fn parse(text: &str) -> Result<Self, OriginError> {
        let text = text.trim();
        let cut = || text.chars().take(100).collect::<String>();
        let url = url::Url::parse(text).map_err(|_| OriginError::NotAUrl { text: cut() })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(OriginError::Scheme { text: cut(), scheme: url.scheme().to_string() });
        }
        let origin = url.origin().ascii_serialization();
        if url.host_str().is_none_or(str::is_empty) {
            return Err(OriginError::NotAUrl { text: cut() });
        }
        if text.contains('*') {
            return Err(OriginError::Wildcard { text: cut() });
        }
        if url.path() != "/" || url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
            return Err(OriginError::MoreThanAnOrigin { text: cut(), origin });
        }
        Ok(Self(origin))
    }

    /// The origin as a browser sends it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_written_as_browsers_send_them() {
        for (given, origin) in [
            ("https://example.com", "https://example.com"),
            ("https://Example.COM/", "https://example.com"),
            ("https://example.com:443", "https://example.com"),
            ("http://localhost:8080", "http://localhost:8080"),
            ("http://127.0.0.1:3000/", "http://127.0.0.1:3000"),
            ("https://bücher.example", "https://xn--bcher-kva.example"),
            (" https://example.com ", "https://example.com"),
        ] {
            assert_eq!(Origin::parse(given).map(|o| o.to_string()), Ok(origin.to_string()), "{given}");
        }
    }

    #[test]
    fn anything_but_an_origin_is_refused_with_what_to_write() {
        assert!(matches!(Origin::parse("example.com"), Err(OriginError::NotAUrl { .. })));
        assert!(matches!(Origin::parse("ftp://example.com"), Err(OriginError::Scheme { .. })));
        assert!(matches!(Origin::parse("file:///tmp/x.html"), Err(OriginError::Scheme { .. })));
        for wild in ["https://*.example.com", "https://*", "*"] {
            assert!(
                matches!(Origin::parse(wild), Err(OriginError::Wildcard { .. }) | Err(OriginError::NotAUrl { .. })),
                "{wild}"
            );
        }
        assert!(matches!(Origin::parse("https://*.example.com"), Err(OriginError::Wildcard { .. })));
        for more in
            ["https://example.com/shop", "https://example.com/?a=1", "https://example.com/#x", "https://u@example.com"]
        {
            let e = Origin::parse(more).unwrap_err();
            assert!(e.to_string().contains("`https://example.com`"), "{e}");
        }
    }
}
