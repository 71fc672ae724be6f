//! The process-wide registry of secret values, and the one masker that reads it.
//!
//! Every secret value the process learns — OAuth access and refresh tokens, client secrets,
//! PKCE verifiers and named secrets (each time the store encrypts or decrypts one), static API
//! keys and `TERN_SECRET_*` values (when read), the admin token and the master key — is
//! [`remember`]ed here. [`mask`] replaces every registered value with `[redacted]` in text that
//! leaves the process or reaches disk: run results and history, step errors, API answers, CLI
//! output and every log line.
//!
//! Besides the raw value, its percent-encoded forms (form encoding, and the URL encoding URL
//! templates use) and its JSON-escaped form are registered when they differ (an API that echoes
//! a query string or a JSON-encoded header shows those).
//!
//! Bounds: at most [`MAX_VALUES`] values of at most [`MAX_VALUE_BYTES`] bytes each. When the
//! registry is full the value registered least recently is forgotten first; values in use are
//! registered again at every store read, so only long-idle values can fall out. Values shorter
//! than [`MIN_VALUE_CHARS`] characters are ignored: masking them would mangle ordinary text.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::{Arc, LazyLock, RwLock};

use aho_corasick::{AhoCorasick, MatchKind};
use secrecy::{ExposeSecret, SecretString};

/// Most values the registry holds (variants included).
pub const MAX_VALUES: usize = 4096;
/// Longest value registered, in bytes (longer values are not credentials anyone echoes).
pub const MAX_VALUE_BYTES: usize = 16 * 1024;
/// Shortest value registered, in characters. Credentials are longer; a shorter value could
/// match ordinary text or JSON syntax (`true`, a count) in a whole answer body.
pub const MIN_VALUE_CHARS: usize = 8;
/// What a masked value is replaced with.
pub const REDACTED: &str = "[redacted]";

#[derive(Default)]
struct Known {
    /// Oldest registration first.
    values: VecDeque<SecretString>,
    /// Matches every value, longest first; rebuilt lazily after a change.
    automaton: Option<Arc<AhoCorasick>>,
}

static KNOWN: LazyLock<RwLock<Known>> = LazyLock::new(RwLock::default);

/// Registers a secret value (and its encoded forms) so that [`mask`] hides it.
pub fn remember(value: &SecretString) {
    remember_str(value.expose_secret());
}

/// Registers a secret value given as text (see [`remember`]).
pub fn remember_str(value: &str) {
    KNOWN.write().unwrap_or_else(|p| p.into_inner()).insert(forms(value));
}

/// `value` and the forms it travels in, each once: form-encoded (`a+b`), URL-encoded as URL
/// templates write it (`a%20b`, RFC 3986 unreserved kept), JSON-escaped (`\"`, `\u00e9` kept
/// as UTF-8), and JSON-escaped with `/` as `\/` (as PHP and others write it).
pub fn forms(value: &str) -> Vec<String> {
    let mut forms = vec![value.to_string()];
    let encoded: String = url::form_urlencoded::byte_serialize(value.as_bytes()).collect();
    let in_url = percent_encoding::utf8_percent_encode(value, crate::http::url_template::COMPONENT).to_string();
    let json = serde_json::to_string(value).unwrap_or_default();
    let json = json.get(1..json.len().saturating_sub(1)).unwrap_or_default().to_string();
    let json_slash = json.replace('/', "\\/");
    for form in [encoded, in_url, json, json_slash] {
        if !forms.contains(&form) {
            forms.push(form);
        }
    }
    forms
}

impl Known {
    fn insert(&mut self, forms: Vec<String>) {
        for form in forms {
            if form.chars().count() < MIN_VALUE_CHARS || form.len() > MAX_VALUE_BYTES {
                continue;
            }
            // Registered again: move it to the back (most recent), without rebuilding.
            if let Some(i) = self.values.iter().position(|v| v.expose_secret() == form) {
                if let Some(v) = self.values.remove(i) {
                    self.values.push_back(v);
                }
                continue;
            }
            if self.values.len() >= MAX_VALUES {
                self.values.pop_front();
            }
            self.values.push_back(SecretString::from(form));
            self.automaton = None;
        }
    }
}

/// Registers the HTTP Basic credential a client sends to a token endpoint (RFC 6749 §2.3.1:
/// `base64(urlencode(client_id) ":" urlencode(client_secret))`), so that an endpoint echoing the
/// `Authorization` header does not reveal the client secret.
pub fn remember_basic_credential(client_id: &str, client_secret: &SecretString) {
    use base64::Engine as _;
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let pair = format!("{}:{}", enc(client_id), enc(client_secret.expose_secret()));
    remember_str(&base64::engine::general_purpose::STANDARD.encode(pair));
}

/// The current automaton, built if a registration invalidated it; `None` when nothing is known.
fn automaton() -> Option<Arc<AhoCorasick>> {
    if let Some(a) = KNOWN.read().unwrap_or_else(|p| p.into_inner()).automaton.clone() {
        return Some(a);
    }
    let mut known = KNOWN.write().unwrap_or_else(|p| p.into_inner());
    if known.values.is_empty() {
        return None;
    }
    if known.automaton.is_none() {
        let built = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(known.values.iter().map(|v| v.expose_secret().as_bytes()));
        match built {
            Ok(a) => known.automaton = Some(Arc::new(a)),
            Err(e) => {
                tracing::error!(error = %e, "cannot build the secret masker");
                return None;
            }
        }
    }
    known.automaton.clone()
}

/// `text` with every registered secret value replaced by `[redacted]` (borrowed when nothing
/// matched).
pub fn mask(text: &str) -> Cow<'_, str> {
    let Some(a) = automaton() else { return Cow::Borrowed(text) };
    if !a.is_match(text) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    a.replace_all_with(text, &mut out, |_, _, dst| {
        dst.push_str(REDACTED);
        true
    });
    Cow::Owned(out)
}

/// `bytes` with every registered secret value replaced (for log lines and response bodies that
/// need not be UTF-8).
pub fn mask_bytes(bytes: &[u8]) -> Cow<'_, [u8]> {
    let Some(a) = automaton() else { return Cow::Borrowed(bytes) };
    if !a.is_match(bytes) {
        return Cow::Borrowed(bytes);
    }
    let mut out = Vec::with_capacity(bytes.len());
    a.replace_all_with_bytes(bytes, &mut out, |_, _, dst| {
        dst.extend_from_slice(REDACTED.as_bytes());
        true
    });
    Cow::Owned(out)
}

/// Whether any registered secret value occurs in `bytes`: one scan, no copy. A caller that
/// needs more than [`mask_bytes`] (the set of values to leave as they are, from
/// [`present_in`]) computes it only when this says there is something to mask.
pub fn occurs_in(bytes: &[u8]) -> bool {
    automaton().is_some_and(|a| a.is_match(bytes))
}

/// The registered values that occur in `input`: what a caller sent itself. An answer that
/// echoes the caller's own input must leave those as they are
/// ([`mask_bytes_except`]): masking them would tell the caller that a guess is a secret.
pub fn present_in(input: &[u8]) -> Vec<Vec<u8>> {
    let Some(a) = automaton() else { return Vec::new() };
    let mut found: Vec<Vec<u8>> = a.find_iter(input).map(|m| input[m.range()].to_vec()).collect();
    found.sort();
    found.dedup();
    found
}

/// [`mask_bytes`], leaving the values in `keep` (from [`present_in`]) as they are.
pub fn mask_bytes_except<'a>(bytes: &'a [u8], keep: &[Vec<u8>]) -> Cow<'a, [u8]> {
    if keep.is_empty() {
        return mask_bytes(bytes);
    }
    let Some(a) = automaton() else { return Cow::Borrowed(bytes) };
    if !a.is_match(bytes) {
        return Cow::Borrowed(bytes);
    }
    let mut changed = false;
    let mut out = Vec::with_capacity(bytes.len());
    a.replace_all_with_bytes(bytes, &mut out, |_, matched, dst| {
        if keep.iter().any(|k| k.as_slice() == matched) {
            dst.extend_from_slice(matched);
        } else {
            changed = true;
            dst.extend_from_slice(REDACTED.as_bytes());
        }
        true
    });
    if changed { Cow::Owned(out) } else { Cow::Borrowed(bytes) }
}

/// The first `chars` characters of `bytes` (lossy UTF-8) with every registered secret masked
/// *before* the cut, so that a secret straddling the cut cannot leave a prefix behind. Only the
/// first `4 × chars + MAX_VALUE_BYTES` bytes are read.
pub fn masked_excerpt(bytes: &[u8], chars: usize) -> String {
    let window = &bytes[..bytes.len().min(chars.saturating_mul(4).saturating_add(MAX_VALUE_BYTES))];
    mask(&String::from_utf8_lossy(window)).chars().take(chars).collect()
}

/// How many values are registered (for tests and metrics).
pub fn len() -> usize {
    KNOWN.read().unwrap_or_else(|p| p.into_inner()).values.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembered_values_and_their_encodings_are_masked() {
        remember_str("tok/en+with=chars-0001");
        assert_eq!(mask("Bearer tok/en+with=chars-0001!"), "Bearer [redacted]!");
        assert_eq!(mask("?t=tok%2Fen%2Bwith%3Dchars-0001"), "?t=[redacted]");
        remember_str("quote\"d-secret-0002");
        assert_eq!(mask(r#"{"echo":"quote\"d-secret-0002"}"#), r#"{"echo":"[redacted]"}"#);
        assert!(matches!(mask("nothing here"), Cow::Borrowed(_)));
        // A cut through the secret leaves no prefix of it.
        let excerpt = masked_excerpt(b"0123456789 tok/en+with=chars-0001", 16);
        assert_eq!(excerpt, "0123456789 [reda");
        assert_eq!(&*mask_bytes(b"x tok/en+with=chars-0001 y"), b"x [redacted] y");
    }

    #[test]
    fn what_the_caller_sent_is_not_masked_in_its_own_echo() {
        remember_str("echoed-secret-value-0001");
        remember_str("other-secret-value-0002");
        let sent = br#"{"text": "echoed-secret-value-0001"}"#;
        let keep = present_in(sent);
        assert_eq!(keep, vec![b"echoed-secret-value-0001".to_vec()]);
        let answer = b"you sent echoed-secret-value-0001; the key is other-secret-value-0002";
        assert_eq!(
            &*mask_bytes_except(answer, &keep),
            b"you sent echoed-secret-value-0001; the key is [redacted]".as_slice()
        );
    }

    #[test]
    fn short_values_are_not_registered_and_longest_wins() {
        remember_str("abcdefg");
        assert_eq!(mask("abcdefg h"), "abcdefg h");
        remember_str("overlap-0003");
        remember_str("overlap-0003-longer");
        assert_eq!(mask("overlap-0003-longer"), "[redacted]");
    }

    #[test]
    fn the_registry_is_bounded_and_forgets_the_least_recent() {
        // A private registry, so the process-wide one used by other tests keeps its values.
        let mut known = Known::default();
        known.insert(vec!["kept-because-reused".into()]);
        for i in 0..MAX_VALUES + 10 {
            if i == MAX_VALUES / 2 {
                known.insert(vec!["kept-because-reused".into()]);
            }
            known.insert(vec![format!("bounded-value-{i:06}")]);
        }
        assert_eq!(known.values.len(), MAX_VALUES);
        let has = |v: &str| known.values.iter().any(|x| x.expose_secret() == v);
        assert!(has("kept-because-reused"));
        assert!(has(&format!("bounded-value-{:06}", MAX_VALUES + 9)));
        assert!(!has("bounded-value-000000"));
    }
}
