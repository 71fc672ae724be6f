//! Validated identifiers. Each is parsed once at the serde boundary, so the rest of the engine
//! never sees an empty step id or a variable name with a dot in it.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

/// Rules shared by every identifier kind: ASCII letters, digits, `_` and `-`, starting with a
/// letter or `_`, at most 64 characters.
fn check_ident(kind: &str, s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err(format!("{kind} must not be empty"));
    }
    if s.len() > 64 {
        return Err(format!("{kind} `{s}` is longer than 64 characters"));
    }
    let mut chars = s.chars();
    let first = chars.next().unwrap_or('_');
    if !(first.is_ascii_alphabetic() || first == '_') {
        return Err(format!("{kind} `{s}` must start with a letter or `_`"));
    }
    if let Some(bad) = s.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-')) {
        return Err(format!("{kind} `{s}` contains `{bad}`; use letters, digits, `_` and `-` only"));
    }
    Ok(())
}

macro_rules! ident_newtype {
    ($(#[$meta:meta])* $name:ident, $kind:literal) => {
        $(#[$meta])*
        ///
        /// Cheap to clone (a shared string): ids are copied into every trace entry and reply.
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(std::sync::Arc<str>);

        impl $name {
            /// Parses and validates an identifier.
            pub fn new(s: impl Into<String>) -> Result<Self, String> {
                let s = s.into();
                check_ident($kind, &s)?;
                Ok(Self(s.into()))
            }

            /// The identifier as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::new(s).map_err(serde::de::Error::custom)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:?}", self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                Self::new(s)
            }
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .pattern(Some("^[A-Za-z_][A-Za-z0-9_-]{0,63}$"))
                    .description(Some($kind))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}

        impl JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }
            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({
                    "type": "string",
                    "pattern": "^[A-Za-z_][A-Za-z0-9_-]{0,63}$",
                    "description": $kind,
                })
            }
        }
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
ident_newtype!(
    /// The name of a channel (`tern channels add NAME`): where messages come from and how
    /// replies go back. `default` is the channel of the `/v1/conversations/…` routes.
    ChannelName,
    "channel name"
);
ident_newtype!(
    /// The id of a flow, unique among the flows a server loads.
    FlowId,
    "flow id"
);

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
            "pattern": "^[A-Za-z_][A-Za-z0-9_-]{0,63}$",
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
        assert!(VarName::new("a.b").unwrap_err().contains("`.`"));
        assert!(IntegrationName::new("x".repeat(65)).is_err());
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
