//! Times and durations as the CLI and the console show them to a person.

use std::time::{Duration, UNIX_EPOCH};

/// Unix milliseconds as RFC 3339 UTC to the second (`2026-11-30T09:35:03Z`).
pub fn time_ms(ms: i64) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_seconds(at).to_string()
}

/// Unix seconds, the same way.
pub fn time_s(secs: i64) -> String {
    time_ms(secs.saturating_mul(1000))
}

/// Milliseconds: `850 ms`, `2.4 s`.
pub fn duration_ms(ms: i64) -> String {
    if ms < 1000 { format!("{ms} ms") } else { format!("{:.1} s", ms as f64 / 1000.0) }
}

/// A span of seconds, rounded: `45 s`, `12 min`, `3 h`, `2 d`.
pub fn span_s(secs: i64) -> String {
    if secs < 120 {
        format!("{secs} s")
    } else if secs < 7_200 {
        format!("{} min", secs / 60)
    } else if secs < 172_800 {
        format!("{} h", secs / 3600)
    } else {
        format!("{} d", secs / 86_400)
    }
}

/// `at` relative to `now` (Unix seconds): `in 12 min`, `3 h ago`.
pub fn relative_s(at: i64, now: i64) -> String {
    if at >= now { format!("in {}", span_s(at - now)) } else { format!("{} ago", span_s(now - at)) }
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_and_spans_read_well() {
        assert_eq!(super::time_ms(1_764_495_303_000), "2025-11-30T09:35:03Z");
        assert_eq!(super::duration_ms(850), "850 ms");
        assert_eq!(super::duration_ms(2_400), "2.4 s");
        assert_eq!(super::relative_s(1_000 + 45, 1_000), "in 45 s");
        assert_eq!(super::relative_s(1_000, 1_000 + 3 * 3600), "3 h ago");
        assert_eq!(super::span_s(3 * 86_400), "3 d");
    }
}
