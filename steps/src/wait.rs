//! `wait`: pause the run for a duration (`"for": "10m"`) or until a time (`"until"`, a template
//! giving an RFC 3339 time or Unix seconds, e.g. from an API answer), optionally moved into
//! opening hours (`"within"`: days and hours in a time zone). The run resumes on its own, from
//! the paused run's durable timer ([`StepContext::wake_at`]); a message that arrives meanwhile
//! does not end the wait (the run keeps waiting and the message gets no reply).

use async_trait::async_trait;
use chrono::{DateTime, Datelike, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;
use tern_engine::template::{Template, value_text};
use tern_engine::timing::{FlowDuration, MAX_FLOW_DURATION};
use tern_engine::{Behavior, BuildContext, Outcome, Step, StepContext, StepFailure, StepType, schema::schema_of};

/// Config of `wait`. Give `for` or `until`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    /// How long to wait (`"30s"`, `"10m"`, `"1h30m"`, `"2d"`; 1 s to 30 days).
    #[serde(default, rename = "for")]
    for_: Option<FlowDuration>,
    /// Until when: a template giving an RFC 3339 time (`2026-12-24T09:00:00+01:00`) or Unix
    /// seconds. A time already past continues at once; one more than 30 days ahead fails the
    /// step (`wait-too-long`).
    #[serde(default)]
    until: Option<String>,
    /// Opening hours: when the wait ends outside them, it is moved to the next time within.
    #[serde(default)]
    within: Option<HoursConfig>,
}

/// Opening hours.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct HoursConfig {
    /// An IANA time zone, such as `Europe/Amsterdam` or `America/New_York`.
    time_zone: String,
    /// The open days, as `mon` … `sun` (default: every day).
    #[serde(default)]
    days: Option<Vec<String>>,
    /// Opening time, `HH:MM` in the time zone (default `00:00`).
    #[serde(default)]
    from: Option<String>,
    /// Closing time, `HH:MM` (default: the end of the day); later than `from`.
    #[serde(default)]
    to: Option<String>,
}

pub struct Wait;

impl StepType for Wait {
    fn name(&self) -> &str {
        "wait"
    }
    fn description(&self) -> &str {
        "Pause the run for a duration or until a time (optionally within opening hours), then go on"
    }
    fn config_schema(&self) -> Value {
        schema_of::<Config>()
    }
    fn build(&self, config: &Value, cx: &mut BuildContext<'_>) -> Option<Box<dyn Step>> {
        let cfg: Config = cx.config(config)?;
        let until = match (&cfg.for_, &cfg.until) {
            (Some(d), None) => Some(Until::For(d.as_ms())),
            (None, Some(t)) => cx.template("/until", t).map(Until::At),
            (Some(_), Some(_)) => {
                cx.error(
                    "wait-for-and-until",
                    "",
                    "the step gives both `for` and `until`",
                    Some("keep one: `for` waits a duration, `until` waits until a time".into()),
                );
                None
            }
            (None, None) => {
                cx.error(
                    "wait-without-time",
                    "",
                    "the step says neither how long to wait nor until when",
                    Some("add `\"for\": \"10m\"` or `\"until\": \"{{delivery.time}}\"`".into()),
                );
                None
            }
        };
        let hours = match &cfg.within {
            Some(h) => Some(Hours::build(cx, h)?),
            None => None,
        };
        Some(Box::new(WaitStep { until: until?, hours }))
    }
}

/// Until when the step waits.
#[derive(Debug)]
enum Until {
    /// This many milliseconds from when the step runs.
    For(i64),
    /// The time this template gives.
    At(Template),
}

/// Opening hours in a time zone.
#[derive(Debug)]
struct Hours {
    tz: Tz,
    /// Open days, Monday first.
    days: [bool; 7],
    from: NaiveTime,
    /// `None`: until the end of the day.
    to: Option<NaiveTime>,
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl Hours {
    fn build(cx: &mut BuildContext<'_>, cfg: &HoursConfig) -> Option<Self> {
        let mut ok = true;
        let tz = match cfg.time_zone.parse::<Tz>() {
            Ok(tz) => Some(tz),
            Err(_) => {
                let names = chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name());
                let hint = match tern_engine::diagnostics::nearest(&cfg.time_zone, names) {
                    Some(near) => format!("did you mean `{near}`?"),
                    None => "use an IANA name such as `Europe/Amsterdam`, `America/New_York` or `UTC`".into(),
                };
                cx.error(
                    "unknown-time-zone",
                    "/within/time_zone",
                    format!("`{}` is not a time zone Tern knows", cfg.time_zone.chars().take(60).collect::<String>()),
                    Some(hint),
                );
                None
            }
        };
        let given = cfg.days.as_deref().unwrap_or_default();
        if cfg.days.as_ref().is_some_and(Vec::is_empty) {
            cx.error(
                "empty-opening-hours",
                "/within/days",
                "`days` lists no open day, so the wait would never end",
                Some("list the open days, such as [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\"], or leave `days` out for every day".into()),
            );
            ok = false;
        }
        let mut days = [cfg.days.is_none(); 7];
        for (i, d) in given.iter().enumerate() {
            match DAYS.iter().position(|n| n.eq_ignore_ascii_case(d)) {
                Some(p) => days[p] = true,
                None => {
                    cx.error(
                        "unknown-day",
                        &format!("/within/days/{i}"),
                        format!("`{}` is not a day", d.chars().take(20).collect::<String>()),
                        Some("write days as mon, tue, wed, thu, fri, sat, sun".into()),
                    );
                    ok = false;
                }
            }
        }
        let mut time = |cx: &mut BuildContext<'_>, field: &str, text: &Option<String>| match text {
            None => Some(None),
            Some(t) => match NaiveTime::parse_from_str(t, "%H:%M") {
                Ok(t) => Some(Some(t)),
                Err(_) => {
                    cx.error(
                        "bad-time-of-day",
                        &format!("/within/{field}"),
                        format!("`{}` is not a time of day", t.chars().take(20).collect::<String>()),
                        Some("write it as HH:MM on a 24-hour clock, such as \"09:00\" or \"17:30\"".into()),
                    );
                    ok = false;
                    None
                }
            },
        };
        let from = time(cx, "from", &cfg.from).flatten();
        let to = time(cx, "to", &cfg.to).flatten();
        let from = from.unwrap_or(NaiveTime::MIN);
        if to.is_some_and(|t| t <= from) {
            cx.error(
                "empty-opening-hours",
                "/within/to",
                "the closing time is not later than the opening time",
                Some(
                    "give `to` later than `from` on the same day, such as \"from\": \"09:00\", \"to\": \"17:00\""
                        .into(),
                ),
            );
            ok = false;
        }
        let tz = tz?;
        ok.then_some(Self { tz, days, from, to })
    }

    /// The first time at or after `at` within the opening hours; `None` when there is none in
    /// the next 8 days (cannot happen with at least one open day).
    fn next_open(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = at.with_timezone(&self.tz);
        let mut date = local.date_naive();
        for _ in 0..8 {
            let day = date.weekday().num_days_from_monday() as usize;
            if self.days[day] {
                let open = self.local(date.and_time(self.from))?;
                let close = match self.to {
                    Some(to) => self.local(date.and_time(to))?,
                    None => self.local(date.succ_opt()?.and_time(NaiveTime::MIN))?,
                };
                if at < close {
                    return Some(at.max(open));
                }
            }
            date = date.succ_opt()?;
        }
        None
    }

    /// A local time in the zone as UTC; a time that a clock change skips is taken an hour on.
    fn local(&self, naive: chrono::NaiveDateTime) -> Option<DateTime<Utc>> {
        self.tz
            .from_local_datetime(&naive)
            .earliest()
            .or_else(|| self.tz.from_local_datetime(&(naive + chrono::Duration::hours(1))).earliest())
            .map(|t| t.with_timezone(&Utc))
    }
}

#[derive(Debug)]
struct WaitStep {
    until: Until,
    hours: Option<Hours>,
}

/// What a waiting `wait` keeps: when it ends.
#[derive(serde::Serialize, Deserialize)]
struct Waiting {
    until_ms: i64,
}

fn failure(code: &'static str, message: String) -> StepFailure {
    StepFailure::Other { code, message }
}

impl WaitStep {
    /// When the wait ends (Unix ms), opening hours applied.
    fn end(&self, cx: &StepContext<'_>) -> Result<i64, StepFailure> {
        let now = cx.now_ms();
        let at = match &self.until {
            Until::For(ms) => now.saturating_add(*ms),
            Until::At(t) => {
                let v = t.render_value(&cx.scope())?;
                parse_time(&v).ok_or_else(|| {
                    failure(
                        "bad-time",
                        format!(
                            "`until` gave `{}`, which is not a time; give an RFC 3339 time such as 2026-12-24T09:00:00+01:00, or Unix seconds",
                            value_text(&v).chars().take(60).collect::<String>()
                        ),
                    )
                })?
            }
        };
        let at = match &self.hours {
            None => at,
            Some(h) => {
                let t = DateTime::<Utc>::from_timestamp_millis(at.max(now))
                    .ok_or_else(|| failure("bad-time", "the time to wait until is out of range".into()))?;
                h.next_open(t).map_or(at, |t| t.timestamp_millis())
            }
        };
        let max = i64::try_from(MAX_FLOW_DURATION.as_millis()).unwrap_or(i64::MAX);
        if at.saturating_sub(now) > max {
            return Err(failure(
                "wait-too-long",
                "the wait would end more than 30 days from now, the longest a run waits".to_string(),
            ));
        }
        Ok(at)
    }
}

/// An RFC 3339 time, or Unix seconds (a number, or digits).
fn parse_time(v: &Value) -> Option<i64> {
    let secs = match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s.parse().ok(),
        Value::String(s) => return DateTime::parse_from_rfc3339(s.trim()).ok().map(|t| t.timestamp_millis()),
        _ => None,
    };
    secs?.checked_mul(1000)
}

#[async_trait]
impl Step for WaitStep {
    async fn run(&self, cx: &mut StepContext<'_>) -> Result<Outcome, StepFailure> {
        let until_ms = self.end(cx)?;
        if until_ms <= cx.now_ms() {
            cx.record("passed", Value::Bool(true));
            return Ok(Outcome::Next);
        }
        cx.wake_at(until_ms);
        cx.record("wakes_at_ms", Value::from(until_ms));
        Ok(Outcome::Pause(serde_json::json!({ "until_ms": until_ms })))
    }

    async fn resume(&self, cx: &mut StepContext<'_>, state: Value) -> Result<Outcome, StepFailure> {
        let waiting: Waiting = serde_json::from_value(state)
            .map_err(|e| failure("stale-snapshot", format!("the waiting step's state cannot be read: {e}")))?;
        if let Some(wake) = cx.woken() {
            cx.record("late_ms", Value::from(wake.late_ms()));
            return Ok(Outcome::Next);
        }
        // A message while waiting: keep waiting, until the same time.
        cx.record("still_waiting", Value::Bool(true));
        cx.wake_at(waiting.until_ms);
        cx.record("wakes_at_ms", Value::from(waiting.until_ms));
        Ok(Outcome::Pause(serde_json::json!({ "until_ms": waiting.until_ms })))
    }

    fn behavior(&self) -> Behavior {
        Behavior { pauses: true, ..Behavior::default() }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn hours(days: &[usize], from: &str, to: Option<&str>) -> Hours {
        let mut d = [false; 7];
        for i in days {
            d[*i] = true;
        }
        Hours {
            tz: "Europe/Amsterdam".parse().unwrap(),
            days: d,
            from: NaiveTime::parse_from_str(from, "%H:%M").unwrap(),
            to: to.map(|t| NaiveTime::parse_from_str(t, "%H:%M").unwrap()),
        }
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn a_time_within_opening_hours_stays() {
        let h = hours(&[0, 1, 2, 3, 4], "09:00", Some("17:00"));
        // Monday 2026-12-07 10:00 in Amsterdam (UTC+1).
        assert_eq!(h.next_open(at("2026-12-07T09:00:00Z")), Some(at("2026-12-07T09:00:00Z")));
    }

    #[test]
    fn a_time_outside_moves_to_the_next_opening() {
        let h = hours(&[0, 1, 2, 3, 4], "09:00", Some("17:00"));
        // Monday 07:00 local → 09:00 local the same day.
        assert_eq!(h.next_open(at("2026-12-07T06:00:00Z")), Some(at("2026-12-07T08:00:00Z")));
        // Friday 18:00 local → Monday 09:00 local.
        assert_eq!(h.next_open(at("2026-12-11T17:00:00Z")), Some(at("2026-12-14T08:00:00Z")));
        // Saturday → Monday.
        assert_eq!(h.next_open(at("2026-12-12T12:00:00Z")), Some(at("2026-12-14T08:00:00Z")));
    }

    #[test]
    fn opening_hours_follow_daylight_saving_time() {
        let h = hours(&[0, 1, 2, 3, 4, 5, 6], "09:00", Some("17:00"));
        // In summer Amsterdam is UTC+2: 09:00 local is 07:00 UTC.
        assert_eq!(h.next_open(at("2026-07-01T03:00:00Z")), Some(at("2026-07-01T07:00:00Z")));
    }

    #[test]
    fn times_read_as_rfc3339_or_unix_seconds() {
        assert_eq!(parse_time(&Value::from("2026-12-24T09:00:00+01:00")), Some(1_798_099_200_000));
        assert_eq!(parse_time(&Value::from(1_798_099_200)), Some(1_798_099_200_000));
        assert_eq!(parse_time(&Value::from("1798099200")), Some(1_798_099_200_000));
        assert_eq!(parse_time(&Value::from("tomorrow")), None);
        assert_eq!(parse_time(&Value::Null), None);
    }
}
