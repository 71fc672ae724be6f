//! Request bodies other than JSON, each with its own escaping:
//!
//! - `form`: `application/x-www-form-urlencoded` (WHATWG URL §5.2: bytes outside the
//!   unreserved set are percent-encoded, spaces become `+`), repeated keys from lists.
//! - `text`: a text template sent as it renders, in the charset of the step's `Content-Type`
//!   header (default `text/plain; charset=utf-8`); a character that charset cannot hold is an
//!   error, never a silent `?`.
//! - `multipart`: `multipart/form-data` text fields (RFC 7578). Part names are fixed when the
//!   flow is loaded and may not contain CR, LF or NUL; `"` in a name is sent as `%22` (WHATWG
//!   HTML). The boundary is random and checked against every value.

use encoding_rs::{Encoding, UTF_8};
use reqwest::header::HeaderValue;

use super::decode::charset_param;
use super::fields::FieldTemplates;
use crate::template::{RenderError, Scope, Template};

/// The default content type of a `text` body.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; charset=utf-8";

/// Why a body setting that is fixed in the flow file cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// The `charset` of a text body's content type is not an encoding.
    #[error("charset `{label}` is not a known encoding")]
    UnknownCharset {
        /// The charset as written.
        label: String,
    },
    /// The charset is known but only decodes (e.g. UTF-16, which WHATWG maps to UTF-8 output).
    #[error("Tern cannot write text in `{label}`; use UTF-8")]
    UnwritableCharset {
        /// The charset as written.
        label: String,
    },
    /// A multipart part name is empty.
    #[error("a part name cannot be empty")]
    EmptyPartName,
    /// A multipart part name holds CR, LF or NUL (RFC 7578 §4.2: they would break the header).
    #[error("the part name {name:?} contains CR, LF or NUL")]
    BadPartName {
        /// The name.
        name: String,
    },
}

/// The charset a content type asks a text body to be written in.
///
/// # Errors
/// [`BodyError::UnknownCharset`] or [`BodyError::UnwritableCharset`].
pub fn text_encoding(content_type: &str) -> Result<&'static Encoding, BodyError> {
    let Some(label) = charset_param(content_type) else {
        return Ok(UTF_8);
    };
    let encoding =
        Encoding::for_label(label.as_bytes()).ok_or_else(|| BodyError::UnknownCharset { label: label.to_string() })?;
    if encoding.output_encoding() != encoding {
        return Err(BodyError::UnwritableCharset { label: label.to_string() });
    }
    Ok(encoding)
}

/// Checks a multipart part name (literal, from the flow file).
///
/// # Errors
/// [`BodyError::EmptyPartName`] or [`BodyError::BadPartName`].
pub fn check_part_name(name: &str) -> Result<(), BodyError> {
    if name.is_empty() {
        return Err(BodyError::EmptyPartName);
    }
    if name.contains(['\r', '\n', '\0']) {
        return Err(BodyError::BadPartName { name: name.to_string() });
    }
    Ok(())
}

/// A compiled non-JSON body.
#[derive(Clone, Debug)]
pub enum BodyTemplate {
    /// URL-encoded form fields.
    Form(FieldTemplates),
    /// Text in the content type's charset.
    Text(Template),
    /// `multipart/form-data` text fields.
    Multipart(FieldTemplates),
}

/// A rendered body with its content type.
pub struct Encoded {
    /// The `Content-Type` to send (unless the step set one, for `text`).
    pub content_type: HeaderValue,
    /// The bytes.
    pub bytes: Vec<u8>,
}

impl BodyTemplate {
    /// Renders the body. `content_type` is the step's own `Content-Type` header, if any (only
    /// `text` bodies may have one).
    pub fn render(&self, scope: &dyn Scope, content_type: Option<&str>) -> Result<Encoded, RenderError> {
        match self {
            BodyTemplate::Form(fields) => {
                let pairs = fields.render(scope)?;
                let text = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish();
                Ok(Encoded {
                    content_type: HeaderValue::from_static("application/x-www-form-urlencoded"),
                    bytes: text.into_bytes(),
                })
            }
            BodyTemplate::Text(t) => {
                let content_type = content_type.unwrap_or(TEXT_CONTENT_TYPE);
                let rejected = |reason: String| RenderError::Rejected {
                    var: t.vars().map(|v| v.raw.clone()).collect::<Vec<_>>().join("}}, {{"),
                    reason,
                };
                let encoding = text_encoding(content_type).map_err(|e| rejected(e.to_string()))?;
                let text = t.render(scope)?;
                let (bytes, _, unmappable) = encoding.encode(&text);
                if unmappable {
                    return Err(rejected(format!(
                        "renders to characters that {} cannot hold; change the body's charset to UTF-8",
                        encoding.name()
                    )));
                }
                let value =
                    HeaderValue::from_str(content_type).unwrap_or_else(|_| HeaderValue::from_static(TEXT_CONTENT_TYPE));
                Ok(Encoded { content_type: value, bytes: bytes.into_owned() })
            }
            BodyTemplate::Multipart(fields) => {
                let pairs = fields.render(scope)?;
                Ok(multipart(&pairs))
            }
        }
    }
}

/// Encodes text fields as `multipart/form-data` with a boundary that occurs in no value.
fn multipart(pairs: &[(String, String)]) -> Encoded {
    let boundary = loop {
        let b = format!("tern-{:032x}", rand::random::<u128>());
        if !pairs.iter().any(|(_, v)| v.contains(&b)) {
            break b;
        }
    };
    let mut out = Vec::new();
    for (name, value) in pairs {
        out.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        out.extend_from_slice(
            format!("Content-Disposition: form-data; name=\"{}\"\r\n\r\n", name.replace('"', "%22")).as_bytes(),
        );
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    let content_type = HeaderValue::from_str(&format!("multipart/form-data; boundary={boundary}"))
        .unwrap_or_else(|_| HeaderValue::from_static("multipart/form-data"));
    Encoded { content_type, bytes: out }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_escapes_names_and_avoids_the_boundary() {
        let enc = multipart(&[("a\"b".into(), "x\r\ny".into()), ("n".into(), String::new())]);
        let ct = enc.content_type.to_str().unwrap().to_string();
        let boundary = ct.strip_prefix("multipart/form-data; boundary=").unwrap();
        let body = String::from_utf8(enc.bytes).unwrap();
        assert_eq!(
            body,
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"a%22b\"\r\n\r\nx\r\ny\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"n\"\r\n\r\n\r\n--{boundary}--\r\n"
            )
        );
        assert!(check_part_name("a\r\nb").is_err());
    }

    #[test]
    fn text_charsets() {
        assert_eq!(text_encoding("text/csv").unwrap(), UTF_8);
        assert_eq!(text_encoding("text/plain; charset=latin1").unwrap().name(), "windows-1252");
        assert!(text_encoding("text/plain; charset=utf-16le").is_err());
        assert!(text_encoding("text/plain; charset=nope").is_err());
    }
}
