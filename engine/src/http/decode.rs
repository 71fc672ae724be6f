//! Reading response bodies the way real APIs send them: the charset the `Content-Type` declares
//! (any WHATWG encoding, through `encoding_rs`), a byte order mark (RFC 8259 §8.1 lets a parser
//! ignore it; a UTF-16 BOM also says how the body is encoded), and empty bodies.
//!
//! Every place where Tern reads a body it did not write as text or as JSON goes through here:
//! the HTTP steps, the token endpoint and the identity lookup of an integration.

use std::borrow::Cow;

use encoding_rs::{Encoding, UTF_8};
use serde_json::Value;

/// Why a body could not be read as text or JSON. The message is for flow designers; the caller
/// adds the URL and status.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The `charset` parameter names no encoding Tern knows (WHATWG Encoding Standard labels).
    #[error("the content type declares charset `{label}`, which is not a known encoding")]
    UnknownCharset {
        /// The label as sent.
        label: String,
    },
    /// The bytes are not valid in the body's encoding.
    #[error("the body is not valid {encoding} text")]
    Malformed {
        /// The encoding's name (`UTF-8`, `ISO-8859-15`, …).
        encoding: &'static str,
    },
    /// The text is not JSON.
    #[error("{0}")]
    Json(String),
}

/// The `charset` parameter of a content type (`application/json; charset="ISO-8859-15"`).
pub fn charset_param(content_type: &str) -> Option<&str> {
    content_type.split(';').skip(1).find_map(|param| {
        let (name, value) = param.split_once('=')?;
        name.trim().eq_ignore_ascii_case("charset").then(|| value.trim().trim_matches('"').trim())
    })
}

/// The body's encoding: a byte order mark wins (WHATWG "decode"), then the declared charset,
/// then UTF-8. Returns the encoding and the length of the BOM to skip.
pub fn body_encoding(content_type: Option<&str>, body: &[u8]) -> Result<(&'static Encoding, usize), DecodeError> {
    if let Some(found) = Encoding::for_bom(body) {
        return Ok(found);
    }
    match content_type.and_then(charset_param) {
        Some(label) => Encoding::for_label(label.as_bytes())
            .map(|e| (e, 0))
            .ok_or_else(|| DecodeError::UnknownCharset { label: label.chars().take(40).collect() }),
        None => Ok((UTF_8, 0)),
    }
}

/// The body as text in its encoding; malformed bytes are an error.
pub fn text_strict<'b>(content_type: Option<&str>, body: &'b [u8]) -> Result<Cow<'b, str>, DecodeError> {
    let (encoding, bom) = body_encoding(content_type, body)?;
    encoding
        .decode_without_bom_handling_and_without_replacement(&body[bom..])
        .ok_or(DecodeError::Malformed { encoding: encoding.name() })
}

/// The body as text for display and for `save_response_as`: malformed bytes become U+FFFD, an
/// unknown charset is read as UTF-8.
pub fn text_lossy<'b>(content_type: Option<&str>, body: &'b [u8]) -> Cow<'b, str> {
    let (encoding, bom) = body_encoding(content_type, body).unwrap_or((UTF_8, 0));
    encoding.decode_without_bom_handling(&body[bom..]).0
}

/// Whether the body is empty or only whitespace: "no fields" rather than "not JSON".
pub fn is_blank(body: &[u8]) -> bool {
    let bom = Encoding::for_bom(body).map_or(0, |(_, n)| n);
    body[bom..].iter().all(u8::is_ascii_whitespace)
}

/// Parses JSON in the body's encoding (BOM skipped; UTF-8 is borrowed, not copied).
/// Depth is capped at 128 by serde_json; integers of any size keep their exact digits.
pub fn json(content_type: Option<&str>, body: &[u8]) -> Result<Value, DecodeError> {
    let text = text_strict(content_type, body)?;
    serde_json::from_str(&text).map_err(|e| DecodeError::Json(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn declared_charsets_are_used() {
        let (latin9, _, _) = encoding_rs::ISO_8859_15.encode(r#"{"n":"Müller","p":"12,50 €"}"#);
        let v = json(Some("application/json; charset=\"ISO-8859-15\""), &latin9).unwrap();
        assert_eq!(v, json!({"n": "Müller", "p": "12,50 €"}));
        let err = json(Some("application/json"), &latin9).unwrap_err();
        assert_eq!(err, DecodeError::Malformed { encoding: "UTF-8" });
        let err = json(Some("application/json; charset=klingon"), b"{}").unwrap_err();
        assert!(err.to_string().contains("`klingon`"), "{err}");
    }

    #[test]
    fn byte_order_marks_are_skipped() {
        assert_eq!(json(None, b"\xEF\xBB\xBF{\"a\":1}").unwrap(), json!({"a": 1}));
        let utf16: Vec<u8> =
            [0xFF, 0xFE].into_iter().chain("{\"a\":\"é\"}".encode_utf16().flat_map(u16::to_le_bytes)).collect();
        assert_eq!(json(Some("application/json; charset=utf-8"), &utf16).unwrap(), json!({"a": "é"}));
        assert!(is_blank(b"\xEF\xBB\xBF \r\n"));
        assert!(!is_blank(b"{}"));
    }

    #[test]
    fn lossy_text_never_fails() {
        assert_eq!(text_lossy(Some("text/plain; charset=windows-1252"), b"caf\xE9"), "café");
        assert_eq!(text_lossy(Some("text/plain; charset=nope"), b"caf\xE9"), "caf\u{FFFD}");
        assert_eq!(charset_param("text/html;CHARSET = utf-8 ; x=y"), Some("utf-8"));
    }
}
