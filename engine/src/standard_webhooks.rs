//! Signing and verifying webhooks the [Standard Webhooks] way: the one scheme Tern uses for
//! its deliveries (the outbox signs every reply it posts) and for channels that sign what they
//! post to Tern.
//!
//! The scheme (spec, "Signature scheme"): three headers, `webhook-id` (a unique message id, the
//! same on every retry), `webhook-timestamp` (integer Unix seconds) and `webhook-signature`
//! (space-separated `v1,<base64>` values, one per valid secret), where each signature is
//! `base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}"))` over the raw body bytes. Secrets are
//! written `whsec_<base64 of the key>`; the key should be 24 to 64 bytes.
//!
//! Why not the `standardwebhooks` crate: version 1.0.1 compares signatures with a `zip` that
//! stops at the shorter string, so a header of `v1,` (an empty signature) verifies for every
//! body; it also reads the system clock directly, which makes the replay window untestable.
//! The reference libraries stay the judge: tests check this module against vectors computed by
//! the Python and npm `standardwebhooks` packages.
//!
//! [Standard Webhooks]: https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretBox};
use sha2::Sha256;

/// The header carrying the message id.
pub const HEADER_ID: &str = "webhook-id";
/// The header carrying the Unix time of signing, in seconds.
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
/// The header carrying the signatures.
pub const HEADER_SIGNATURE: &str = "webhook-signature";
/// How far a timestamp may be from now, either way, in seconds (the spec's recommended
/// tolerance: five minutes).
pub const DEFAULT_TOLERANCE_SECS: i64 = 5 * 60;
/// Longest accepted `webhook-id`, in bytes.
pub const MAX_ID_LEN: usize = 200;
/// The prefix of a written secret.
pub const SECRET_PREFIX: &str = "whsec_";
/// Shortest key, in bytes (the spec: "between 24 bytes and 64 bytes").
pub const MIN_KEY_LEN: usize = 24;
/// Longest key, in bytes.
pub const MAX_KEY_LEN: usize = 64;

/// Why a secret could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    /// Not `whsec_` followed by base64.
    #[error(
        "a webhook secret is `whsec_` followed by the key in base64 (make one with `openssl rand -base64 32` and put `whsec_` before it); this one is not base64"
    )]
    NotBase64,
    /// The key is too short or too long.
    #[error(
        "a webhook secret's key must be {MIN_KEY_LEN} to {MAX_KEY_LEN} bytes; this one has {len} (make one with `openssl rand -base64 32` and put `whsec_` before it)"
    )]
    KeyLength {
        /// The decoded key's length, in bytes.
        len: usize,
    },
}

/// A signing key (`whsec_…`). Unprintable: `Debug` shows `WebhookSecret([redacted])` and there
/// is no `Display`; [`WebhookSecret::to_whsec`] writes it out on purpose.
pub struct WebhookSecret {
    key: SecretBox<[u8]>,
}

impl Clone for WebhookSecret {
    fn clone(&self) -> Self {
        Self { key: SecretBox::new(self.key.expose_secret().to_vec().into_boxed_slice()) }
    }
}

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret([redacted])")
    }
}

impl WebhookSecret {
    /// Reads `whsec_<base64>` (the prefix may be left out, as the reference libraries allow).
    ///
    /// # Errors
    /// [`SecretError::NotBase64`] or [`SecretError::KeyLength`] (outside 24–64 bytes).
    pub fn parse(written: &str) -> Result<Self, SecretError> {
        let encoded = written.trim();
        let encoded = encoded.strip_prefix(SECRET_PREFIX).unwrap_or(encoded);
        let key = BASE64.decode(encoded).map_err(|_| SecretError::NotBase64)?;
        if !(MIN_KEY_LEN..=MAX_KEY_LEN).contains(&key.len()) {
            return Err(SecretError::KeyLength { len: key.len() });
        }
        Ok(Self { key: SecretBox::new(key.into_boxed_slice()) })
    }

    /// A new random 32-byte key.
    pub fn generate() -> Self {
        let key: [u8; 32] = rand::random();
        Self { key: SecretBox::new(Box::new(key)) }
    }

    /// The secret written out (`whsec_<base64>`), to show once or store encrypted.
    pub fn to_whsec(&self) -> String {
        format!("{SECRET_PREFIX}{}", BASE64.encode(self.key.expose_secret()))
    }

    fn mac(&self, id: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
        // HMAC takes keys of any length; the constructor cannot fail.
        let mut mac = match Hmac::<Sha256>::new_from_slice(self.key.expose_secret()) {
            Ok(m) => m,
            Err(_) => unreachable!("HMAC accepts every key length"),
        };
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }

    /// The signature of `body` sent as message `id` at `timestamp` (Unix seconds), written
    /// `v1,<base64>`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        format!("v1,{}", BASE64.encode(self.mac(id, timestamp, body).finalize().into_bytes()))
    }

    /// The three headers of a delivery: `[(name, value); 3]`.
    pub fn headers(&self, id: &str, timestamp: i64, body: &[u8]) -> [(&'static str, String); 3] {
        [
            (HEADER_ID, id.to_string()),
            (HEADER_TIMESTAMP, timestamp.to_string()),
            (HEADER_SIGNATURE, self.sign(id, timestamp, body)),
        ]
    }

    /// Whether `other` is the same key, compared in constant time.
    pub fn same_key(&self, other: &Self) -> bool {
        subtle::ConstantTimeEq::ct_eq(self.key.expose_secret(), other.key.expose_secret()).into()
    }

    /// This key's signature of `body` as raw bytes (the HMAC-SHA256 tag).
    fn tag(&self, id: &str, timestamp: i64, body: &[u8]) -> [u8; 32] {
        self.mac(id, timestamp, body).finalize().into_bytes().into()
    }
}

/// Why a signed request was refused. Each reason is logged in its own words; callers answer
/// all of them with the same 401, so that a sender learns nothing from the difference.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    /// A header is missing or not visible ASCII.
    #[error("the `{header}` header is missing or not readable text")]
    MissingHeader {
        /// The header's name.
        header: &'static str,
    },
    /// `webhook-id` or `webhook-timestamp` appears more than once.
    #[error("the `{header}` header appears more than once; send it once")]
    RepeatedHeader {
        /// The header's name.
        header: &'static str,
    },
    /// The id is empty or longer than [`MAX_ID_LEN`].
    #[error("the `webhook-id` header must be 1 to {MAX_ID_LEN} bytes")]
    BadId,
    /// The timestamp is not an integer number of seconds.
    #[error("the `webhook-timestamp` header is not a Unix time in whole seconds")]
    BadTimestamp,
    /// The timestamp is older than the tolerance.
    #[error(
        "the signature is {age_secs} s old, more than the {tolerance_secs} s allowed (a replay, or a clock that is off)"
    )]
    TooOld {
        /// How old, in seconds.
        age_secs: i64,
        /// The tolerance, in seconds.
        tolerance_secs: i64,
    },
    /// The timestamp is further in the future than the tolerance.
    #[error(
        "the signature is dated {ahead_secs} s in the future, more than the {tolerance_secs} s allowed (a clock that is off)"
    )]
    TooNew {
        /// How far ahead, in seconds.
        ahead_secs: i64,
        /// The tolerance, in seconds.
        tolerance_secs: i64,
    },
    /// No `v1` signature in the header matches any of the secrets.
    #[error(
        "no signature in `webhook-signature` matches the channel's secret(s) (a wrong secret, or a body changed in transit)"
    )]
    NoMatch,
}

/// A request whose signature checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The sender's `webhook-id` (replays within the window carry the same one).
    pub id: String,
    /// The `webhook-timestamp`, Unix seconds.
    pub timestamp: i64,
}

/// The one value of header `name`: missing, empty, unreadable or repeated is refused (two
/// `webhook-id`s would let a proxy that reads the other one see another request).
fn header<'a>(headers: &'a http::HeaderMap, name: &'static str) -> Result<&'a str, SignatureError> {
    if headers.get_all(name).iter().nth(1).is_some() {
        return Err(SignatureError::RepeatedHeader { header: name });
    }
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or(SignatureError::MissingHeader { header: name })
}

/// Every entry of every `webhook-signature` header line (a sender or proxy may split them over
/// several lines, as HTTP allows for a list).
fn signature_entries(headers: &http::HeaderMap) -> Result<Vec<&str>, SignatureError> {
    let mut out = Vec::new();
    for value in headers.get_all(HEADER_SIGNATURE) {
        let text = value.to_str().map_err(|_| SignatureError::MissingHeader { header: HEADER_SIGNATURE })?;
        out.extend(text.split(' ').map(str::trim).filter(|s| !s.is_empty()));
    }
    if out.is_empty() {
        return Err(SignatureError::MissingHeader { header: HEADER_SIGNATURE });
    }
    Ok(out)
}

/// Checks a signed request: the headers are present, the timestamp is within `tolerance_secs`
/// of `now` (Unix seconds) either way, and one of the `v1` signatures of the header matches
/// one of `secrets` (several during a rotation). Replays inside the window pass this check;
/// the caller remembers [`Verified::id`] for the window to refuse them.
///
/// # Errors
/// A [`SignatureError`] naming the first check that failed.
pub fn verify(
    secrets: &[WebhookSecret],
    headers: &http::HeaderMap,
    body: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> Result<Verified, SignatureError> {
    let id = header(headers, HEADER_ID)?;
    let timestamp = header(headers, HEADER_TIMESTAMP)?;
    let signatures = signature_entries(headers)?;
    if id.len() > MAX_ID_LEN {
        return Err(SignatureError::BadId);
    }
    let timestamp: i64 = timestamp.parse().map_err(|_| SignatureError::BadTimestamp)?;
    let age = now.saturating_sub(timestamp);
    if age > tolerance_secs {
        return Err(SignatureError::TooOld { age_secs: age, tolerance_secs });
    }
    if -age > tolerance_secs {
        return Err(SignatureError::TooNew { ahead_secs: -age, tolerance_secs });
    }
    // Each secret's tag is computed once; every `v1` entry of the header (as many as the
    // header holds: its size is bounded by the HTTP server) is compared with every tag in
    // constant time, so the time taken does not say which secret or which entry matched.
    let expected: Vec<[u8; 32]> = secrets.iter().map(|s| s.tag(id, timestamp, body)).collect();
    let mut any = subtle::Choice::from(0);
    for entry in signatures {
        let Some(("v1", signature)) = entry.split_once(',') else { continue };
        let Ok(given) = BASE64.decode(signature) else { continue };
        for tag in &expected {
            any |= subtle::ConstantTimeEq::ct_eq(given.as_slice(), tag.as_slice());
        }
    }
    let any: bool = any.into();
    if any { Ok(Verified { id: id.to_string(), timestamp }) } else { Err(SignatureError::NoMatch) }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The example of the reference implementation's own test suite (standard-webhooks,
    // libraries/rust and libraries/python): secret, id, timestamp, body and signature.
    const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
    const TS: i64 = 1_649_367_553;
    const BODY: &[u8] = br#"{"email":"test@example.com","username":"test_user"}"#;
    const SIGNATURE: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";

    fn headers(id: &str, ts: i64, sig: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert(HEADER_ID, id.parse().unwrap());
        h.insert(HEADER_TIMESTAMP, ts.to_string().parse().unwrap());
        h.insert(HEADER_SIGNATURE, sig.parse().unwrap());
        h
    }

    #[test]
    fn signs_like_the_reference_example() {
        let secret = WebhookSecret::parse(SECRET).unwrap();
        assert_eq!(secret.sign(ID, TS, BODY), SIGNATURE);
        assert_eq!(secret.to_whsec(), SECRET);
        assert_eq!(format!("{secret:?}"), "WebhookSecret([redacted])");
    }

    #[test]
    fn verifies_the_reference_example_within_the_window() {
        let secrets = [WebhookSecret::parse(SECRET).unwrap()];
        let ok = verify(&secrets, &headers(ID, TS, SIGNATURE), BODY, TS + 299, DEFAULT_TOLERANCE_SECS).unwrap();
        assert_eq!(ok, Verified { id: ID.into(), timestamp: TS });
        let old = verify(&secrets, &headers(ID, TS, SIGNATURE), BODY, TS + 301, DEFAULT_TOLERANCE_SECS);
        assert_eq!(old, Err(SignatureError::TooOld { age_secs: 301, tolerance_secs: 300 }));
        let new = verify(&secrets, &headers(ID, TS, SIGNATURE), BODY, TS - 301, DEFAULT_TOLERANCE_SECS);
        assert_eq!(new, Err(SignatureError::TooNew { ahead_secs: 301, tolerance_secs: 300 }));
    }

    #[test]
    fn refuses_each_kind_of_bad_request_with_its_own_reason() {
        let secrets = [WebhookSecret::parse(SECRET).unwrap()];
        let check = |h: &http::HeaderMap, body: &[u8]| verify(&secrets, h, body, TS, DEFAULT_TOLERANCE_SECS);
        // Tampered body, empty and truncated signatures, another version, garbage.
        assert_eq!(check(&headers(ID, TS, SIGNATURE), b"{}"), Err(SignatureError::NoMatch));
        for sig in ["v1,", "v1", "v1,tZ1I4/hD", "v2,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=", "v1,!!!", ","] {
            assert_eq!(check(&headers(ID, TS, sig), BODY), Err(SignatureError::NoMatch), "{sig}");
        }
        // The id and the timestamp are signed too.
        assert_eq!(check(&headers("msg_other", TS, SIGNATURE), BODY), Err(SignatureError::NoMatch));
        // Missing headers, each named.
        for name in [HEADER_ID, HEADER_TIMESTAMP, HEADER_SIGNATURE] {
            let mut h = headers(ID, TS, SIGNATURE);
            h.remove(name);
            assert_eq!(check(&h, BODY), Err(SignatureError::MissingHeader { header: name }));
        }
        let mut h = headers(ID, TS, SIGNATURE);
        h.insert(HEADER_TIMESTAMP, "1649367553.0".parse().unwrap());
        assert_eq!(check(&h, BODY), Err(SignatureError::BadTimestamp));
        assert_eq!(check(&headers(&"x".repeat(201), TS, SIGNATURE), BODY), Err(SignatureError::BadId));
        // A wrong secret.
        let other = [WebhookSecret::generate()];
        assert_eq!(
            verify(&other, &headers(ID, TS, SIGNATURE), BODY, TS, DEFAULT_TOLERANCE_SECS),
            Err(SignatureError::NoMatch)
        );
    }

    #[test]
    fn a_rotation_accepts_either_secret_and_several_signatures() {
        let old = WebhookSecret::parse(SECRET).unwrap();
        let new = WebhookSecret::generate();
        let both = [new.clone(), old.clone()];
        assert!(verify(&both, &headers(ID, TS, SIGNATURE), BODY, TS, 300).is_ok());
        let two = format!("{} {}", new.sign(ID, TS, BODY), SIGNATURE);
        assert!(verify(&[old], &headers(ID, TS, &two), BODY, TS, 300).is_ok());
        assert!(verify(&[new], &headers(ID, TS, &two), BODY, TS, 300).is_ok());
    }

    #[test]
    fn signatures_on_several_lines_count_and_a_repeated_id_is_refused() {
        let secret = WebhookSecret::parse(SECRET).unwrap();
        let mut h = headers(ID, TS, "v1,bm90LWl0");
        h.append(HEADER_SIGNATURE, SIGNATURE.parse().unwrap());
        assert!(verify(std::slice::from_ref(&secret), &h, BODY, TS, 300).is_ok(), "the second line's signature");
        h.append(HEADER_ID, "msg_other".parse().unwrap());
        assert_eq!(verify(&[secret], &h, BODY, TS, 300), Err(SignatureError::RepeatedHeader { header: HEADER_ID }));
    }

    #[test]
    fn the_matching_signature_counts_wherever_it_is_in_a_long_header() {
        // As the reference libraries do: every entry is read, not the first few.
        let secret = WebhookSecret::parse(SECRET).unwrap();
        let others: Vec<String> = (0..40).map(|_| WebhookSecret::generate().sign(ID, TS, BODY)).collect();
        let last = format!("{} v2,abc v1,not-base64 {SIGNATURE}", others.join(" "));
        assert!(verify(std::slice::from_ref(&secret), &headers(ID, TS, &last), BODY, TS, 300).is_ok());
        let none = others.join(" ");
        assert_eq!(verify(&[secret], &headers(ID, TS, &none), BODY, TS, 300), Err(SignatureError::NoMatch));
    }

    #[test]
    fn secrets_are_checked_when_read() {
        assert_eq!(WebhookSecret::parse("whsec_not base64!").unwrap_err(), SecretError::NotBase64);
        assert_eq!(WebhookSecret::parse("whsec_c2hvcnQ=").unwrap_err(), SecretError::KeyLength { len: 5 });
        // Without the prefix, as the reference libraries accept it.
        assert!(WebhookSecret::parse("C2FVsBQIhrscChlQIMV+b5sSYspob7oD").is_ok());
        let generated = WebhookSecret::generate().to_whsec();
        assert!(generated.starts_with("whsec_") && WebhookSecret::parse(&generated).is_ok());
    }
}
