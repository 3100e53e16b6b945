//! Numbers and times the way an operator reads them on a shared screen.

use chrono::{DateTime, Utc};

/// Wall-clock time of day, `HH:MM:SS` (UTC, like the timeline file).
pub fn clock(at: DateTime<Utc>) -> String {
    at.format("%H:%M:%S").to_string()
}

/// Time since the session started, `HH:MM:SS`.
pub fn elapsed(ms: u64) -> String {
    let s = ms / 1000;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// Time left, short: `45s`, `3m59s`, `1h02m`.
pub fn countdown(ms: u64) -> String {
    let s = ms.div_ceil(1000);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s / 60 % 60),
    }
}

/// A configured length of time: `5m`, `90s`, `1h30m`.
pub fn span(ms: u64) -> String {
    let s = ms / 1000;
    let whole_minutes = s.is_multiple_of(60);
    match s {
        3600.. if s.is_multiple_of(3600) => format!("{}h", s / 3600),
        3600.. if whole_minutes => format!("{}h{:02}m", s / 3600, s / 60 % 60),
        60.. if whole_minutes => format!("{}m", s / 60),
        _ => countdown(ms),
    }
}

/// Time left for big digits: `3:59`, `0:45`, `1:02:03`.
pub fn countdown_digits(ms: u64) -> String {
    let s = ms.div_ceil(1000);
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

/// A latency: `0.4ms`, `120ms`, `2.4s`, `31s`, `2m05s`.
pub fn millis(v: f64) -> String {
    if !v.is_finite() {
        return "–".into();
    }
    if v < 10.0 {
        format!("{v:.1}ms")
    } else if v < 1000.0 {
        format!("{v:.0}ms")
    } else if v < 10_000.0 {
        format!("{:.1}s", v / 1000.0)
    } else if v < 60_000.0 {
        format!("{:.0}s", v / 1000.0)
    } else {
        let s = (v / 1000.0).round() as u64;
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

/// A count: `1234`, `12.3k`, `1.2M`.
pub fn count(v: f64) -> String {
    if !v.is_finite() {
        return "–".into();
    }
    let a = v.abs();
    if a < 10_000.0 {
        crate::timeline::fmt_value((v * 100.0).round() / 100.0)
    } else if a < 1_000_000.0 {
        format!("{:.1}k", v / 1000.0)
    } else {
        format!("{:.1}M", v / 1_000_000.0)
    }
}

/// A share 0..1 as a percentage: `93%`.
pub fn percent(fraction: f64) -> String {
    if !fraction.is_finite() {
        return "–".into();
    }
    format!("{:.0}%", fraction * 100.0)
}

/// How long ago, short: `12s`, `3m05s`, `1h02m` (whole seconds, rounded down).
pub fn age(ms: u64) -> String {
    countdown(ms / 1000 * 1000)
}

/// `12s ago`.
pub fn ago(ms: u64) -> String {
    format!("{} ago", age(ms))
}

/// A URL without its scheme, user and query: `127.0.0.1:5432/tasks` of
/// `postgres://app:***@127.0.0.1:5432/tasks?sslmode=require`.
pub fn host_path(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let rest = rest.split(['?', '#']).next().unwrap_or(rest);
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let start = rest[..authority_end].rfind('@').map_or(0, |at| at + 1);
    rest[start..].trim_end_matches('/')
}

/// The part of a URL that says where it points: `127.0.0.1:5432` of
/// `postgres://app:***@127.0.0.1:5432/tasks` (the text itself when it is no URL).
pub fn host_port(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    if host.is_empty() { url } else { host }
}

/// What a missing value shows.
pub const NONE: &str = "–";

/// `f` applied to a value, or the missing-value dash.
pub fn or_dash(v: Option<f64>, f: fn(f64) -> String) -> String {
    v.map_or_else(|| NONE.to_string(), f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_read_naturally() {
        assert_eq!(millis(0.42), "0.4ms");
        assert_eq!(millis(120.4), "120ms");
        assert_eq!(millis(2400.0), "2.4s");
        assert_eq!(millis(31_000.0), "31s");
        assert_eq!(millis(125_000.0), "2m05s");
    }

    #[test]
    fn counts_and_times_read_naturally() {
        assert_eq!(count(1450.0), "1450");
        assert_eq!(count(0.5), "0.50");
        assert_eq!(count(52_310.0), "52.3k");
        assert_eq!(count(1_200_000.0), "1.2M");
        assert_eq!(percent(0.933), "93%");
        assert_eq!(elapsed(3_723_000), "01:02:03");
        assert_eq!(countdown(239_001), "4m00s");
        assert_eq!(countdown(45_000), "45s");
        assert_eq!(countdown(3_720_000), "1h02m");
        assert_eq!(countdown_digits(239_000), "3:59");
        assert_eq!(span(300_000), "5m");
        assert_eq!(span(90_000), "1m30s");
        assert_eq!(span(5_400_000), "1h30m");
        assert_eq!(span(7_200_000), "2h");
        assert_eq!(or_dash(None, count), "–");
        assert_eq!(ago(12_400), "12s ago");
        assert_eq!(ago(185_000), "3m05s ago");
        assert_eq!(age(999), "0s");
    }

    #[test]
    fn a_url_is_named_by_its_host_and_port() {
        assert_eq!(
            host_port("postgres://app:***@127.0.0.1:5432/tasks"),
            "127.0.0.1:5432"
        );
        assert_eq!(host_port("nats://127.0.0.1:4222"), "127.0.0.1:4222");
        assert_eq!(host_port("http://h:80/health?token=***"), "h:80");
        assert_eq!(host_port("db.internal:5432"), "db.internal:5432");
        assert_eq!(
            host_path("postgres://app:***@127.0.0.1:5432/tasks?sslmode=require"),
            "127.0.0.1:5432/tasks"
        );
        assert_eq!(host_path("nats://127.0.0.1:4222"), "127.0.0.1:4222");
    }
}
