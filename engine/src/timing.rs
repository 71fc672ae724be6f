//! Time in flows: durations as flow designers write them ([`FlowDuration`]: `"30s"`, `"10m"`,
//! `"1h30m"`, `"2d"`), and the wake-up of a paused run ([`Wake`]).
//!
//! A step that pauses may ask to be woken at a time ([`StepContext::wake_at`](crate::StepContext::wake_at)):
//! `ask` for its reminders and timeout, `wait` for the end of the wait. The paused run keeps the
//! time ([`RunSnapshot::wake_at_ms`](crate::RunSnapshot::wake_at_ms)); the conversation service
//! stores it with the paused run (one durable timer per conversation, replaced or cancelled in
//! the same commit as the paused run) and resumes the run when it is due, without a message
//! ([`StepContext::woken`](crate::StepContext::woken)).

use std::fmt;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

/// The shortest duration a flow may give: timers fire with about a second's precision.
pub const MIN_FLOW_DURATION: Duration = Duration::from_secs(1);

/// The longest duration a flow may give (30 days): a paused run waits at most this long for
/// one timer, which bounds how long the store keeps it.
pub const MAX_FLOW_DURATION: Duration = Duration::from_secs(30 * 86_400);

/// A duration in a flow: a number and a unit, repeated, as in `"30s"`, `"10m"`, `"1h30m"`,
/// `"2d"` (units `s`, `m`, `h`, `d`, and the longer names humantime knows, such as `min` or
/// `hours`). From [`MIN_FLOW_DURATION`] to [`MAX_FLOW_DURATION`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(into = "String")]
pub struct FlowDuration(Duration);

/// Why a duration in a flow was refused (in the flow designer's words).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Not a duration at all.
    #[error("`{text}` is not a duration; write a number and a unit, such as \"30s\", \"10m\", \"1h30m\" or \"2d\"")]
    Unreadable {
        /// What was given (cut to 40 characters).
        text: String,
    },
    /// Shorter than [`MIN_FLOW_DURATION`].
    #[error("`{text}` is shorter than 1 second; timers fire with about a second's precision")]
    TooShort {
        /// What was given.
        text: String,
    },
    /// A capital `M` (months, to humantime), most likely meant as minutes.
    #[error("`{text}` uses `M`, which means months; write `m` for minutes")]
    Months {
        /// What was given.
        text: String,
    },
    /// Longer than [`MAX_FLOW_DURATION`].
    #[error("`{text}` is longer than 30 days, the longest a paused run waits for one timer")]
    TooLong {
        /// What was given.
        text: String,
    },
}

impl FlowDuration {
    /// Parses a duration as flow designers write it.
    ///
    /// # Errors
    /// [`DurationError`] when it is not a duration or outside 1 s – 30 days.
    pub fn parse(text: &str) -> Result<Self, DurationError> {
        let shown = || text.chars().take(40).collect::<String>();
        let trimmed = text.trim();
        // A bare number has no unit: "30" could be seconds or minutes, so it is refused.
        if trimmed.is_empty() || trimmed.chars().all(|c| c.is_ascii_digit()) {
            return Err(DurationError::Unreadable { text: shown() });
        }
        if trimmed.contains('M') {
            return Err(DurationError::Months { text: shown() });
        }
        let d = humantime::parse_duration(trimmed).map_err(|_| DurationError::Unreadable { text: shown() })?;
        if d < MIN_FLOW_DURATION {
            return Err(DurationError::TooShort { text: shown() });
        }
        if d > MAX_FLOW_DURATION {
            return Err(DurationError::TooLong { text: shown() });
        }
        Ok(Self(d))
    }

    /// The duration.
    pub fn get(self) -> Duration {
        self.0
    }

    /// The duration in milliseconds.
    pub fn as_ms(self) -> i64 {
        i64::try_from(self.0.as_millis()).unwrap_or(i64::MAX)
    }
}

/// Written back as designers write it: `1h30m`, `2d`, `45s` (milliseconds, if any, as `ms`).
impl fmt::Display for FlowDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.as_secs();
        let parts = [(secs / 86_400, "d"), (secs / 3600 % 24, "h"), (secs / 60 % 60, "m"), (secs % 60, "s")];
        for (n, unit) in parts {
            if n > 0 {
                write!(f, "{n}{unit}")?;
            }
        }
        match self.0.subsec_millis() {
            0 if secs > 0 => Ok(()),
            ms => write!(f, "{ms}ms"),
        }
    }
}

impl From<FlowDuration> for String {
    fn from(d: FlowDuration) -> Self {
        d.to_string()
    }
}

/// Text as [`FlowDuration::parse`] reads it; a number is refused with the unit it lacks.
impl<'de> Deserialize<'de> for FlowDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(text) => Self::parse(&text).map_err(D::Error::custom),
            serde_json::Value::Number(n) => Err(D::Error::custom(format!(
                "`{n}` has no unit; write the duration as text with its unit, such as \"{n}s\" or \"{n}m\""
            ))),
            _ => Err(D::Error::custom("expected a duration as text, such as \"30s\", \"10m\" or \"1h30m\"")),
        }
    }
}

impl JsonSchema for FlowDuration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "A duration: a number and a unit, repeated (\"30s\", \"10m\", \"1h30m\", \"2d\"); from 1 second to 30 days.",
            "pattern": "^\\s*([0-9]+\\s*[a-zA-Z]+\\s*)+$",
            "examples": ["30s", "10m", "1h30m", "2d"]
        })
    }
}

/// Why a paused run was resumed without a message: its timer was due
/// ([`StepContext::woken`](crate::StepContext::woken)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wake {
    /// When the timer was due (Unix milliseconds), as the step asked.
    pub due_at_ms: i64,
    /// When it fired (Unix milliseconds); later than `due_at_ms` by the service's polling, or
    /// by downtime (a timer fires late rather than never).
    pub fired_at_ms: i64,
}

impl Wake {
    /// How late the timer fired, in milliseconds (0 when on time).
    pub fn late_ms(&self) -> i64 {
        self.fired_at_ms.saturating_sub(self.due_at_ms).max(0)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn durations_read_as_designers_write_them() {
        for (text, secs) in [
            ("30s", 30),
            ("10m", 600),
            ("1h30m", 5400),
            ("1h 30m", 5400),
            ("2d", 172_800),
            ("90 minutes", 5400),
            ("1.5h", 5400),
        ] {
            assert_eq!(FlowDuration::parse(text).unwrap().get(), Duration::from_secs(secs), "{text}");
        }
    }

    #[test]
    fn what_is_not_a_duration_is_refused_in_words() {
        for text in ["", "30", "soon", "-5m", "10 parsecs", "5m10"] {
            let e = FlowDuration::parse(text).unwrap_err();
            assert!(matches!(e, DurationError::Unreadable { .. }), "{text}: {e}");
            assert!(e.to_string().contains("\"1h30m\""), "{e}");
        }
        assert!(matches!(FlowDuration::parse("500ms").unwrap_err(), DurationError::TooShort { .. }));
        assert!(matches!(FlowDuration::parse("31d").unwrap_err(), DurationError::TooLong { .. }));
        assert!(matches!(FlowDuration::parse("10M").unwrap_err(), DurationError::Months { .. }));
        assert!(FlowDuration::parse("30d").is_ok());
    }

    #[test]
    fn a_duration_round_trips_through_json() {
        let d: FlowDuration = serde_json::from_str("\"1h30m\"").unwrap();
        let again: FlowDuration = serde_json::from_value(serde_json::to_value(d).unwrap()).unwrap();
        assert_eq!(d, again);
        let e = serde_json::from_str::<FlowDuration>("\"5\"").unwrap_err().to_string();
        assert!(e.contains("not a duration"), "{e}");
        let e = serde_json::from_str::<FlowDuration>("30").unwrap_err().to_string();
        assert!(e.contains("`30` has no unit") && e.contains("\"30s\""), "{e}");
    }

    #[test]
    fn a_duration_is_shown_as_written() {
        for text in ["1h30m", "2d", "45s", "1d2h3m4s", "1s500ms"] {
            assert_eq!(FlowDuration::parse(text).unwrap().to_string(), text);
        }
        assert_eq!(FlowDuration::parse("90 minutes").unwrap().to_string(), "1h30m");
    }

    #[test]
    fn lateness_is_never_negative() {
        assert_eq!(Wake { due_at_ms: 10, fired_at_ms: 5 }.late_ms(), 0);
        assert_eq!(Wake { due_at_ms: 10, fired_at_ms: 2010 }.late_ms(), 2000);
    }
}
