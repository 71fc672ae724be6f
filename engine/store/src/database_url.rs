//! The PostgreSQL URL, validated at the boundary and unprintable: it carries a password.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};

/// Why a database URL was refused. The message never repeats the URL (it may hold a password).
#[derive(Debug, thiserror::Error)]
pub enum DatabaseUrlError {
    /// Not a URL at all.
    #[error("the database URL is not a URL ({reason}); write it as postgres://USER:PASSWORD@HOST:5432/DATABASE")]
    NotAUrl {
        /// What the parser said (it never quotes the input).
        reason: String,
    },
    /// Another scheme than `postgres` / `postgresql`.
    #[error(
        "the database URL's scheme is `{scheme}`; only postgres:// (or postgresql://) URLs are supported. Leave --database-url unset to use SQLite in the data directory"
    )]
    Scheme {
        /// The scheme given.
        scheme: String,
    },
    /// No database name.
    #[error("the database URL names no database; end it with /DATABASE, e.g. postgres://tern@db.internal:5432/tern")]
    NoDatabase,
}

/// A `postgres://` URL. [`Display`](fmt::Display) and [`Debug`](fmt::Debug) show it with the
/// password replaced by `***` (also a `password=` query parameter); only the store reads the
/// full text. The password is registered with the process's masker when the URL is parsed, so
/// a driver message that quoted it would be masked in logs too.
#[derive(Clone)]
pub struct DatabaseUrl {
    full: SecretString,
    shown: String,
}

impl DatabaseUrl {
    /// Parses and checks a URL (`postgres://USER:PASSWORD@HOST:PORT/DATABASE?sslmode=…`).
    ///
    /// # Errors
    /// [`DatabaseUrlError`].
    pub fn parse(text: &str) -> Result<Self, DatabaseUrlError> {
        let url = url::Url::parse(text.trim()).map_err(|e| DatabaseUrlError::NotAUrl { reason: e.to_string() })?;
        if !matches!(url.scheme(), "postgres" | "postgresql") {
            return Err(DatabaseUrlError::Scheme { scheme: url.scheme().chars().take(32).collect() });
        }
        if url.path().trim_start_matches('/').is_empty() {
            return Err(DatabaseUrlError::NoDatabase);
        }
        if let Some(p) = url.password() {
            tern_engine::secrets::known::remember_str(p);
            if let Ok(decoded) = percent_encoding::percent_decode_str(p).decode_utf8() {
                tern_engine::secrets::known::remember_str(&decoded);
            }
        }
        let mut shown = url.clone();
        if shown.password().is_some() {
            let _ = shown.set_password(Some("***"));
        }
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                if k.eq_ignore_ascii_case("password") {
                    tern_engine::secrets::known::remember_str(&v);
                    (k.into_owned(), "***".to_string())
                } else {
                    (k.into_owned(), v.into_owned())
                }
            })
            .collect();
        if !pairs.is_empty() {
            shown.query_pairs_mut().clear().extend_pairs(pairs);
        }
        Ok(Self { full: SecretString::from(text.trim().to_string()), shown: shown.to_string() })
    }

    /// The URL with its password (for the driver only).
    pub(crate) fn expose(&self) -> &str {
        self.full.expose_secret()
    }

    /// The URL without its password.
    pub fn redacted(&self) -> &str {
        &self.shown
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({})", self.shown)
    }
}

impl std::str::FromStr for DatabaseUrl {
    type Err = DatabaseUrlError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_password_never_shows() {
        let u = DatabaseUrl::parse("postgres://tern:s3cret-passw0rd@db.internal:5432/tern?sslmode=prefer").unwrap();
        assert_eq!(u.to_string(), "postgres://tern:***@db.internal:5432/tern?sslmode=prefer");
        assert!(!format!("{u:?}").contains("s3cret"));
        let q = DatabaseUrl::parse("postgresql://db/tern?user=tern&password=other-secret-1").unwrap();
        assert!(!q.to_string().contains("other-secret-1"), "{q}");
        assert_eq!(q.expose(), "postgresql://db/tern?user=tern&password=other-secret-1");
    }

    #[test]
    fn bad_urls_are_explained_without_echoing_them() {
        let e = DatabaseUrl::parse("mysql://root:hunter22@db/x").unwrap_err().to_string();
        assert!(e.contains("`mysql`") && !e.contains("hunter22"), "{e}");
        let e = DatabaseUrl::parse("postgres://u:p4ssword-x@db").unwrap_err().to_string();
        assert!(e.contains("names no database") && !e.contains("p4ssword"), "{e}");
        let e = DatabaseUrl::parse("not a url with pw secretpw1").unwrap_err().to_string();
        assert!(!e.contains("secretpw1"), "{e}");
    }
}
