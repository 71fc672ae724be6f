//! Validated identifiers. Each is parsed once at the serde boundary, so the rest of the engine
//! never sees an empty step id or a variable name with a dot in it.

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

/// The identifier rule as a regular expression (JSON Schema, OpenAPI): ASCII letters, digits,
/// `_` and `-`, starting with a letter or `_`, at most 64 characters. [`check_ident`] is the
/// same rule in code.
pub const IDENT_PATTERN: &str = "^[A-Za-z_][A-Za-z0-9_-]{0,63}$";

/// Whether `c` may appear in an identifier (and in a placeholder's path segment): an ASCII
/// letter or digit, `_` or `-`.
pub fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// What is wrong with an identifier ([`BadIdent`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentProblem {
    /// It is empty.
    Empty,
    /// It has more than 64 characters.
    TooLong,
    /// It starts with something other than a letter or `_`.
    BadStart,
    /// It contains this character, which is not a letter, digit, `_` or `-`.
    BadChar(char),
    /// A channel name with upper-case letters ([`CHANNEL_NAME_PATTERN`]).
    UpperCase,
}

/// An identifier (a step id, variable name, flow id, integration or channel name) that breaks
/// the identifier rule ([`IDENT_PATTERN`]; channel names: [`CHANNEL_NAME_PATTERN`]). Its
/// message names the kind, quotes the text (cut to 64 characters) and says what is allowed,
/// e.g. ``step id `2fast` must start with a letter or `_` ``.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.describe())]
pub struct BadIdent {
    /// What kind of identifier (`step id`, `variable name`, …).
    pub kind: &'static str,
    /// The text as given (at most 64 characters of it, for the message).
    pub text: String,
    /// What is wrong with it.
    pub problem: IdentProblem,
}

impl BadIdent {
    fn new(kind: &'static str, text: &str, problem: IdentProblem) -> Self {
        Self { kind, text: text.chars().take(64).collect(), problem }
    }

    fn describe(&self) -> String {
        let (kind, s) = (self.kind, &self.text);
        match &self.problem {
            IdentProblem::Empty => format!("{kind} must not be empty"),
            IdentProblem::TooLong => format!("{kind} `{s}…` is longer than 64 characters"),
            IdentProblem::BadStart => format!("{kind} `{s}` must start with a letter or `_`"),
            IdentProblem::BadChar(bad) => {
                format!("{kind} `{s}` contains `{bad}`; use letters, digits, `_` and `-` only")
            }
            IdentProblem::UpperCase => format!(
                "{kind} `{s}` has upper-case letters; channel names are lower case (`{}`), so that no two look alike",
                s.to_ascii_lowercase()
            ),
        }
    }
}

/// Rules shared by every identifier kind ([`IDENT_PATTERN`]): ASCII letters, digits, `_` and
/// `-`, starting with a letter or `_`, at most 64 characters.
fn check_ident(kind: &'static str, s: &str) -> Result<(), BadIdent> {
    let problem = if s.is_empty() {
        IdentProblem::Empty
    } else if s.len() > 64 {
        IdentProblem::TooLong
    } else if !s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        IdentProblem::BadStart
    } else if let Some(bad) = s.chars().find(|c| !is_ident_char(*c)) {
        IdentProblem::BadChar(bad)
    } else {
        return Ok(());
    };
    Err(BadIdent::new(kind, s, problem))
}

/// The rule of channel names as a regular expression: an identifier ([`IDENT_PATTERN`]) in
/// lower case, so that no two channels differ only in case (`support` and `Support`).
pub const CHANNEL_NAME_PATTERN: &str = "^[a-z_][a-z0-9_-]{0,63}$";

/// A channel name: an identifier ([`check_ident`]) without upper-case letters.
fn check_channel_name(kind: &'static str, s: &str) -> Result<(), BadIdent> {
    check_ident(kind, s)?;
    if s.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(BadIdent::new(kind, s, IdentProblem::UpperCase));
    }
    Ok(())
}

/// Most characters in an opaque id (a conversation, message or run id).
pub const MAX_ID_CHARS: usize = 200;

/// The opaque-id rule as a regular expression (OpenAPI): no character for which
/// [`is_hidden_char`] holds. [`check_opaque_id`] also bounds the length.
pub const OPAQUE_ID_PATTERN: &str = "^[^\\x00-\\x1F\\x7F-\\xA0\\xAD\\u034F\\u061C\\u115F\\u1160\\u1680\\u17B4\\u17B5\\u180B-\\u180F\\u2000-\\u200F\\u2028-\\u202F\\u205F-\\u206F\\u2800\\u3000\\u3164\\uFE00-\\uFE0F\\uFEFF\\uFFA0\\uFFF0-\\uFFFB]*$";

/// Whether `c` is invisible or changes how the text around it is shown, so that an id holding
/// it would look like another id (in the console, the run list, a log line): a control
/// character (Unicode category Cc), a line or paragraph separator (Zl, Zp), a bidirectional
/// control (U+061C, U+200E/F, U+202A–E, U+2066–9), or a default-ignorable code point (Unicode
/// `DerivedCoreProperties.txt`, `Default_Ignorable_Code_Point`: zero-width spaces and joiners,
/// soft hyphen, variation selectors, the byte order mark, tag characters, …), or a space other
/// than U+0020 (the no-break and typographic spaces of category Zs, and the blank braille
/// pattern U+2800), which shows as a plain space.
pub fn is_hidden_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{A0}'
                | '\u{AD}'
                | '\u{34F}'
                | '\u{61C}'
                | '\u{115F}'
                | '\u{1160}'
                | '\u{17B4}'
                | '\u{17B5}'
                | '\u{180B}'..='\u{180F}'
                | '\u{1680}'
                | '\u{2000}'..='\u{200F}'
                | '\u{2028}'..='\u{202F}'
                | '\u{205F}'..='\u{206F}'
                | '\u{2800}'
                | '\u{3000}'
                | '\u{3164}'
                | '\u{FE00}'..='\u{FE0F}'
                | '\u{FEFF}'
                | '\u{FFA0}'
                | '\u{FFF0}'..='\u{FFFB}'
                | '\u{1BCA0}'..='\u{1BCA3}'
                | '\u{1D173}'..='\u{1D17A}'
                | '\u{E0000}'..='\u{E0FFF}'
        )
}

/// An opaque id (a conversation, message or run id) that breaks the rule of
/// [`check_opaque_id`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the {kind} must be 1 to {max} characters without control, invisible, text-direction or space-like characters (a plain space is fine, but not at either end), and not `.` or `..`"
)]
pub struct BadOpaqueId {
    /// What kind of id (`run id`, `conversation id`, …).
    pub kind: &'static str,
    /// Its most characters.
    pub max: usize,
}

/// The rule of opaque ids, which channels and the engine make up rather than flow designers:
/// 1 to [`MAX_ID_CHARS`] characters, none of them hidden ([`is_hidden_char`]: control,
/// invisible, text-direction and space-like characters), no space at either end, and not `.`
/// or `..` (the pattern, [`OPAQUE_ID_PATTERN`], says the characters only).
///
/// # Errors
/// [`BadOpaqueId`]: what the id must be, naming its `kind`.
pub fn check_opaque_id(kind: &'static str, s: &str) -> Result<(), BadOpaqueId> {
    check_opaque_id_within(kind, s, MAX_ID_CHARS)
}

/// The opaque-id rule with another length limit (`max` characters): a stored conversation id
/// carries its channel's prefix.
///
/// # Errors
/// [`BadOpaqueId`] with `max`.
pub fn check_opaque_id_within(kind: &'static str, s: &str, max: usize) -> Result<(), BadOpaqueId> {
    // `.` and `..` are dot segments (RFC 3986 §5.2.4): in an answer URL a client's URL parser
    // removes them, and the URL then names another resource.
    if s.is_empty()
        || s.chars().count() > max
        || s.chars().any(is_hidden_char)
        || s.starts_with(' ')
        || s.ends_with(' ')
        || s == "."
        || s == ".."
    {
        return Err(BadOpaqueId { kind, max });
    }
    Ok(())
}

/// Declares an id newtype over a shared string (cheap to clone: ids are copied into every trace
/// entry, reply and history row). `$check(kind, text)` validates it wherever it is parsed
/// (`new`, serde, `FromStr`, `TryFrom<String>`) and its error is `$err`; it serializes as the
/// string; its JSON Schema and OpenAPI schema are a string described as `$kind`, with the
/// regular expression `$pattern` when that is `Some`. The one macro for every id kind:
/// identifiers here, conversation and message ids in `conversation/types.rs`.
macro_rules! id_newtype {
    ($(#[$meta:meta])* $name:ident, $kind:literal, $check:path, $err:ty, $pattern:expr) => {
        $(#[$meta])*
        ///
        /// Cheap to clone (a shared string).
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(std::sync::Arc<str>);

        impl $name {
            /// Parses and validates the id.
            ///
            /// # Errors
            /// When the text breaks the rule of its kind (what is wrong and what is allowed).
            pub fn new(s: impl Into<String>) -> Result<Self, $err> {
                let s = s.into();
                $check($kind, &s)?;
                Ok(Self(s.into()))
            }

            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::new(s).map_err(serde::de::Error::custom)
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{:?}", self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = $err;
            fn from_str(s: &str) -> Result<Self, $err> {
                Self::new(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = $err;
            fn try_from(s: String) -> Result<Self, $err> {
                Self::new(s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> Self {
                id.0.to_string()
            }
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                let pattern: Option<&str> = $pattern;
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .pattern(pattern)
                    .description(Some($kind))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}

        impl schemars::JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }
            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                let pattern: Option<&str> = $pattern;
                match pattern {
                    Some(pattern) => schemars::json_schema!({
                        "type": "string",
                        "pattern": pattern,
                        "description": $kind,
                    }),
                    None => schemars::json_schema!({
                        "type": "string",
                        "description": $kind,
                    }),
                }
            }
        }
    };
}
pub(crate) use id_newtype;

/// Declares an identifier (a name flow designers write): [`check_ident`], [`IDENT_PATTERN`].
macro_rules! ident_newtype {
    ($(#[$meta:meta])* $name:ident, $kind:literal) => {
        id_newtype!($(#[$meta])* $name, $kind, check_ident, BadIdent, Some(IDENT_PATTERN));
    };
}

ident_newtype!(
    /// The id of a step, unique within its flow. `end` is reserved.
    StepId,
    "step id"
);
ident_newtype!(
    /// The name of a flow variable (`{{name}}` in templates).
    VarName,
    "variable name"
);
ident_newtype!(
    /// The name of an OAuth integration, as registered with `tern integrations add`.
    IntegrationName,
    "integration name"
);
id_newtype!(
    /// The name of a channel (`tern channels add NAME`): where messages come from and how
    /// replies go back. `default` is the channel of the `/v1/conversations/…` routes. Lower
    /// case ([`CHANNEL_NAME_PATTERN`]).
    ChannelName,
    "channel name",
    check_channel_name,
    BadIdent,
    Some(CHANNEL_NAME_PATTERN)
);
ident_newtype!(
    /// The id of a flow, unique among the flows a server loads.
    FlowId,
    "flow id"
);
id_newtype!(
    /// The id of a run (a v4 UUID the engine makes up when a run starts), from the run's result
    /// to history, the API and `tern runs show`.
    RunId,
    "run id",
    check_opaque_id,
    BadOpaqueId,
    None
);

impl RunId {
    /// A fresh run id: a v4 UUID from the thread-local RNG (no system call per run).
    pub fn generate() -> Self {
        Self(uuid::Builder::from_random_bytes(rand::random()).into_uuid().to_string().into())
    }
}

/// Where a step goes next: another step, or the end of the run.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Target {
    /// Jump to the step with this id.
    Step(StepId),
    /// End the run successfully.
    End,
}

impl<'de> Deserialize<'de> for Target {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s == "end" {
            return Ok(Target::End);
        }
        StepId::new(s).map(Target::Step).map_err(serde::de::Error::custom)
    }
}

impl Serialize for Target {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Target::Step(id) => s.serialize_str(id.as_str()),
            Target::End => s.serialize_str("end"),
        }
    }
}

impl JsonSchema for Target {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Target".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": IDENT_PATTERN,
            "description": "a step id, or `end` to finish the run",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idents_are_validated() {
        assert!(StepId::new("ask_id").is_ok());
        assert!(StepId::new("a-b_2").is_ok());
        assert!(StepId::new("").is_err());
        assert!(StepId::new("2fast").is_err());
        let err = VarName::new("a.b").unwrap_err();
        assert_eq!(err.problem, IdentProblem::BadChar('.'));
        assert_eq!(err.to_string(), "variable name `a.b` contains `.`; use letters, digits, `_` and `-` only");
        let err = IntegrationName::new("x".repeat(65)).unwrap_err();
        assert_eq!((err.problem, err.text.len()), (IdentProblem::TooLong, 64));
        assert_eq!(StepId::new("2fast").unwrap_err().to_string(), "step id `2fast` must start with a letter or `_`");
        assert_eq!(StepId::new("").unwrap_err().problem, IdentProblem::Empty);
    }

    #[test]
    fn channel_names_are_lower_case_identifiers() {
        assert!(ChannelName::new("support-2").is_ok());
        for name in ["Default", "DEFAULT", "Support", "sUpport"] {
            let err = ChannelName::new(name).unwrap_err().to_string();
            assert!(err.contains("lower case") && err.contains(&name.to_ascii_lowercase()), "{err}");
        }
        let pattern = regex::Regex::new(CHANNEL_NAME_PATTERN).unwrap();
        for name in ["support", "a", "_x", "Support", "2x", "a b", "é"] {
            assert_eq!(pattern.is_match(name), ChannelName::new(name).is_ok(), "{name}");
        }
    }

    /// Ids that would look like other ids are refused: zero-width, bidi and other hidden
    /// characters, as well as control characters; the OpenAPI pattern says the same for every
    /// character of the Basic Multilingual Plane.
    #[test]
    fn opaque_ids_refuse_hidden_characters() {
        for id in ["c-1", "c/9 é", "+4915112345678", "❤", "C1234567890"] {
            assert!(check_opaque_id("conversation id", id).is_ok(), "{id}");
        }
        for id in [
            "a\u{200B}b",
            "\u{202E}1-c",
            "a\u{2066}b\u{2069}",
            "\u{FEFF}a",
            "a\u{00AD}",
            "a\u{E0041}",
            "a\nb",
            "a\u{2028}b",
            "a\u{180E}",
        ] {
            let err = check_opaque_id("conversation id", id).unwrap_err();
            assert!(err.to_string().contains("invisible"), "{err}");
        }
        let pattern = regex::Regex::new(OPAQUE_ID_PATTERN).unwrap();
        for c in (0..=0xFFFFu32).filter_map(char::from_u32) {
            assert_eq!(pattern.is_match(&c.to_string()), !is_hidden_char(c), "U+{:04X}", c as u32);
        }
    }

    #[test]
    fn target_parses_end() {
        let t: Target = serde_json::from_str("\"end\"").unwrap();
        assert_eq!(t, Target::End);
        let t: Target = serde_json::from_str("\"greet\"").unwrap();
        assert_eq!(t, Target::Step(StepId::new("greet").unwrap()));
        assert!(serde_json::from_str::<Target>("\"no way\"").is_err());
    }
}
