//! Visitors' sessions: a token the server signs and the widget keeps (in the page's
//! `localStorage`), which names the visitor's conversation and when the session ends.
//!
//! A token is `v1.{id}.{expires_at}.{mac}`: `id` is 32 hex digits (128 random bits) and is
//! the conversation's id in the channel; `expires_at` is in Unix seconds; `mac` is the
//! HMAC-SHA256 (RFC 2104) by the channel's [`SessionKey`] of
//! `tern-web-session\nv1\n{channel}\n{id}\n{expires_at}`, in unpadded base64url (RFC 4648 §5).
//! `channel` is the channel with its incarnation, so that a token of a channel removed and
//! added again under the same name opens nothing. The MAC is compared in constant time.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

/// How long a session lasts, in seconds (7 days). A visitor who comes back later starts a new
/// conversation; the transcript of the old one is pruned once its session can no longer read
/// it.
pub const SESSION_TTL_S: i64 = 7 * 24 * 3600;
/// Longest token, in bytes (what is read of an `Authorization` header before it is refused).
pub const MAX_TOKEN_BYTES: usize = 200;

/// The key a web channel signs its session tokens with: 32 random bytes, written as 64 hex
/// digits where it is stored (encrypted with the channel's other settings). Unprintable.
#[derive(Clone)]
pub struct SessionKey(SecretString);

/// A stored session key that is not 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a session key is 64 hex digits")]
pub struct BadSessionKey;

impl SessionKey {
    /// A new random key, registered with the masker.
    pub fn generate() -> Self {
        let bytes: [u8; 32] = rand::random();
        let key = SecretString::from(hex::encode(bytes));
        crate::secrets::known::remember(&key);
        Self(key)
    }

    /// A stored key (64 hex digits), registered with the masker.
    ///
    /// # Errors
    /// [`BadSessionKey`].
    pub fn parse(hex_digits: &str) -> Result<Self, BadSessionKey> {
        if hex_digits.len() != 64 || hex::decode(hex_digits).is_err() {
            return Err(BadSessionKey);
        }
        crate::secrets::known::remember_str(hex_digits);
        Ok(Self(SecretString::from(hex_digits.to_string())))
    }

    /// The key as stored (64 hex digits): for the store only.
    pub fn expose_hex(&self) -> &str {
        self.0.expose_secret()
    }

    fn mac(&self, channel: &str, id: &str, expires_at: i64) -> Hmac<Sha256> {
        let bytes = hex::decode(self.0.expose_secret()).unwrap_or_default();
        let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(&bytes) else {
            unreachable!("HMAC takes keys of any length (RFC 2104 §2)")
        };
        mac.update(format!("tern-web-session\nv1\n{channel}\n{id}\n{expires_at}").as_bytes());
        mac
    }

    /// A new session of `channel` (the channel with its incarnation) that ends
    /// [`SESSION_TTL_S`] after `now_s`, and its token.
    pub fn issue(&self, channel: &str, now_s: i64) -> (Session, String) {
        let id = hex::encode(rand::random::<[u8; 16]>());
        let expires_at = now_s.saturating_add(SESSION_TTL_S);
        let mac = self.mac(channel, &id, expires_at).finalize().into_bytes();
        let token = format!("v1.{id}.{expires_at}.{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac));
        (Session { id, expires_at }, token)
    }

    /// The session `token` stands for, when this key signed it for `channel` and it has not
    /// ended at `now_s`.
    ///
    /// # Errors
    /// [`SessionError`]: why (for the log; a caller is told only that the session is not valid).
    pub fn verify(&self, channel: &str, token: &str, now_s: i64) -> Result<Session, SessionError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(SessionError::Malformed);
        }
        let mut parts = token.split('.');
        let (Some("v1"), Some(id), Some(expires_at), Some(mac), None) =
            (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(SessionError::Malformed);
        };
        // One way to write each token: digits only, no sign, no leading zero.
        if expires_at.is_empty() || expires_at.starts_with('0') || !expires_at.bytes().all(|b| b.is_ascii_digit()) {
            return Err(SessionError::Malformed);
        }
        let expires_at: i64 = expires_at.parse().map_err(|_| SessionError::Malformed)?;
        if id.len() != 32 || !id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(SessionError::Malformed);
        }
        let mac = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(mac).map_err(|_| SessionError::Malformed)?;
        self.mac(channel, id, expires_at).verify_slice(&mac).map_err(|_| SessionError::BadSignature)?;
        if expires_at <= now_s {
            return Err(SessionError::Expired);
        }
        Ok(Session { id: id.to_string(), expires_at })
    }
}

/// A visitor's session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// Its id (32 hex digits): the conversation's id in the channel.
    pub id: String,
    /// When it ends, Unix seconds.
    pub expires_at: i64,
}

/// Why a session token is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// Not a token of this format.
    #[error("the session token is malformed")]
    Malformed,
    /// Not signed by this channel's key (another channel's, a removed channel's, forged).
    #[error("the session token is not signed by this channel")]
    BadSignature,
    /// Signed, but ended.
    #[error("the session has ended")]
    Expired,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_opens_its_session_only_on_its_channel_and_only_until_it_ends() {
        let key = SessionKey::generate();
        let (session, token) = key.issue("site@00aa", 1_000);
        assert_eq!(key.verify("site@00aa", &token, 1_001), Ok(session.clone()));
        assert_eq!(session.expires_at, 1_000 + SESSION_TTL_S);
        assert_eq!(key.verify("site@00bb", &token, 1_001), Err(SessionError::BadSignature), "another incarnation");
        assert_eq!(key.verify("shop@00aa", &token, 1_001), Err(SessionError::BadSignature), "another channel");
        assert_eq!(SessionKey::generate().verify("site@00aa", &token, 1_001), Err(SessionError::BadSignature));
        assert_eq!(key.verify("site@00aa", &token, session.expires_at), Err(SessionError::Expired));
    }

    #[test]
    fn a_changed_token_is_refused() {
        let key = SessionKey::generate();
        let (session, token) = key.issue("site", 0);
        let other_id = token.replacen(&session.id, &"0".repeat(32), 1);
        assert_eq!(key.verify("site", &other_id, 1), Err(SessionError::BadSignature), "another visitor's id");
        let later = token.replacen(&session.expires_at.to_string(), &(session.expires_at + 1).to_string(), 1);
        assert_eq!(key.verify("site", &later, 1), Err(SessionError::BadSignature), "a longer life");
        let plus = token.replacen(&format!(".{}.", session.expires_at), &format!(".+{}.", session.expires_at), 1);
        let zero = token.replacen(&format!(".{}.", session.expires_at), &format!(".0{}.", session.expires_at), 1);
        for bad in ["", "v1", "v2.a.b.c", "v1.x.1.AAAA", &format!("{token}.x"), &"v".repeat(500), &plus, &zero] {
            assert_eq!(key.verify("site", bad, 1), Err(SessionError::Malformed), "{bad}");
        }
        let no_mac = token.rsplit_once('.').map(|(head, _)| format!("{head}.")).unwrap();
        assert_eq!(key.verify("site", &no_mac, 1), Err(SessionError::BadSignature));
    }

    #[test]
    fn a_stored_key_is_64_hex_digits() {
        let key = SessionKey::generate();
        assert_eq!(
            SessionKey::parse(key.expose_hex()).map(|k| k.expose_hex().to_string()),
            Ok(key.expose_hex().into())
        );
        assert_eq!(SessionKey::parse("abc").err(), Some(BadSessionKey));
        assert!(SessionKey::parse(&"g".repeat(64)).is_err());
    }
}
