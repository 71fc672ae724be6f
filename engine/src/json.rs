//! The one way Tern reads JSON it did not write: one leading UTF-8 byte order mark is skipped
//! (RFC 8259 §8.1 lets a parser ignore it, and Windows tools write it), then `serde_json`
//! parses the rest. Every place where JSON comes in uses it: the message webhook, the admin
//! API, integration events, channel settings, flow files, token responses (through
//! [`crate::http::decode`], which also honours a declared charset) and plugin metadata.
//!
//! Only one BOM is skipped, and only at the very start: a second one, or one after
//! whitespace, is a character JSON does not allow there, and stays an error.

use serde::de::DeserializeOwned;

/// The UTF-8 byte order mark (U+FEFF encoded).
pub const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// `bytes` without one leading UTF-8 byte order mark.
#[must_use]
pub fn without_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(UTF8_BOM).unwrap_or(bytes)
}

/// `text` without one leading byte order mark (U+FEFF).
#[must_use]
pub fn without_bom_str(text: &str) -> &str {
    text.strip_prefix('\u{feff}').unwrap_or(text)
}

/// Parses JSON bytes, after one leading byte order mark.
///
/// # Errors
/// The bytes (after the BOM) are not JSON of type `T` ([`serde_json::Error`], with line and
/// column).
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> serde_json::Result<T> {
    serde_json::from_slice(without_bom(bytes))
}

/// Parses JSON text, after one leading byte order mark.
///
/// # Errors
/// The text (after the BOM) is not JSON of type `T`.
pub fn from_str<T: DeserializeOwned>(text: &str) -> serde_json::Result<T> {
    serde_json::from_str(without_bom_str(text))
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    #[test]
    fn one_leading_bom_is_skipped_and_nothing_else() {
        assert_eq!(super::from_slice::<Value>(b"\xEF\xBB\xBF{\"a\": 1}").unwrap(), json!({"a": 1}));
        assert_eq!(super::from_str::<Value>("\u{feff}[1]").unwrap(), json!([1]));
        assert_eq!(super::from_slice::<Value>(b"{\"a\": 1}").unwrap(), json!({"a": 1}));
        // Two BOMs, or one after whitespace, are not a BOM but a stray character.
        assert!(super::from_slice::<Value>(b"\xEF\xBB\xBF\xEF\xBB\xBF{}").is_err());
        assert!(super::from_str::<Value>(" \u{feff}{}").is_err());
        // Inside a string it is kept as it is.
        assert_eq!(super::from_str::<Value>("\"\u{feff}x\"").unwrap(), json!("\u{feff}x"));
    }
}
