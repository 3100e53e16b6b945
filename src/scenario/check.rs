//! Checks: a metric, an aggregate over a window, a comparison. The same check type serves
//! steady-state (baseline), expectations during the faults, recovery and abort conditions.

use std::fmt;

use serde::Deserialize;

use crate::metrics::{MetricStore, Stats};
use crate::timeline::fmt_value;
use crate::toml_input::Dur;

/// How a window of points becomes one number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Aggregate {
    /// The newest value.
    #[default]
    Last,
    Min,
    Max,
    Mean,
    P50,
    P95,
    P99,
    /// How many points (e.g. webhook requests).
    Count,
    /// Increase of a cumulative counter over the window.
    Delta,
    /// Increase of a cumulative counter per second.
    Rate,
}

impl Aggregate {
    fn label(self) -> &'static str {
        match self {
            Aggregate::Last => "last",
            Aggregate::Min => "min",
            Aggregate::Max => "max",
            Aggregate::Mean => "mean",
            Aggregate::P50 => "p50",
            Aggregate::P95 => "p95",
            Aggregate::P99 => "p99",
            Aggregate::Count => "count",
            Aggregate::Delta => "delta",
            Aggregate::Rate => "rate",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Op {
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = "<=")]
    Le,
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = ">=")]
    Ge,
    #[serde(rename = "==")]
    Eq,
    #[serde(rename = "!=")]
    Ne,
    /// Within `[low, high]` (inclusive).
    #[serde(rename = "between")]
    Between,
}

impl Op {
    fn label(self) -> &'static str {
        match self {
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Eq => "==",
            Op::Ne => "!=",
            Op::Between => "between",
        }
    }
}

/// The check as written in a scenario file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCheck {
    pub name: Option<String>,
    pub metric: String,
    #[serde(default)]
    pub aggregate: Aggregate,
    pub op: Op,
    pub value: Option<f64>,
    /// `[low, high]` for `op = "between"`.
    pub range: Option<[f64; 2]>,
    /// Evaluate over the trailing window of this length (recovery and abort checks).
    pub window: Option<Dur>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub name: String,
    pub metric: String,
    pub aggregate: Aggregate,
    pub op: Op,
    pub low: f64,
    /// Only for `between`.
    pub high: f64,
    pub window_ms: Option<u64>,
}

/// One evaluation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evaluation {
    /// `None`: no data in the window.
    pub value: Option<f64>,
    pub passed: bool,
}

impl Check {
    /// Checks the written form; `Err` is the message for the operator.
    pub fn from_raw(raw: &RawCheck) -> Result<Check, (&'static str, String)> {
        let (low, high) = match (raw.op, raw.value, raw.range) {
            (Op::Between, None, Some([a, b])) if a <= b => (a, b),
            (Op::Between, None, Some(_)) => {
                return Err(("range", "expected [low, high] with low <= high".into()));
            }
            (Op::Between, _, _) => {
                return Err((
                    "range",
                    "op \"between\" needs `range = [low, high]` (and no `value`)".into(),
                ));
            }
            (_, Some(v), None) => (v, v),
            (_, _, Some(_)) => {
                return Err((
                    "range",
                    "`range` goes with op = \"between\"; use `value` here".into(),
                ));
            }
            (_, None, None) => {
                return Err((
                    "value",
                    format!("op \"{}\" needs `value = <number>`", raw.op.label()),
                ));
            }
        };
        if let Some(w) = raw.window
            && w.get().is_zero()
        {
            return Err(("window", "expected a window above zero".into()));
        }
        let mut check = Check {
            name: String::new(),
            metric: raw.metric.clone(),
            aggregate: raw.aggregate,
            op: raw.op,
            low,
            high,
            window_ms: raw.window.map(|w| w.get().as_millis() as u64),
        };
        check.name = raw.name.clone().unwrap_or_else(|| check.expected());
        Ok(check)
    }

    /// "p95 of probe.api.latency_ms < 500".
    pub fn expected(&self) -> String {
        let subject = match self.aggregate {
            Aggregate::Last => self.metric.clone(),
            a => format!("{} of {}", a.label(), self.metric),
        };
        let window = self
            .window_ms
            .map(|ms| format!(" over {}", fmt_seconds(ms)))
            .unwrap_or_default();
        match self.op {
            Op::Between => format!(
                "{subject}{window} between {} and {}",
                fmt_value(self.low),
                fmt_value(self.high)
            ),
            op => format!("{subject}{window} {} {}", op.label(), fmt_value(self.low)),
        }
    }

    pub fn holds(&self, v: f64) -> bool {
        match self.op {
            Op::Lt => v < self.low,
            Op::Le => v <= self.low,
            Op::Gt => v > self.low,
            Op::Ge => v >= self.low,
            Op::Eq => (v - self.low).abs() < 1e-9,
            Op::Ne => (v - self.low).abs() >= 1e-9,
            Op::Between => v >= self.low && v <= self.high,
        }
    }

    /// Evaluates over `[from_ms, to_ms)`, or over the trailing `window` ending at `to_ms` when
    /// the check has one. No data fails.
    pub fn evaluate(&self, store: &MetricStore, from_ms: u64, to_ms: u64) -> Evaluation {
        let from_ms = match self.window_ms {
            Some(w) => to_ms.saturating_sub(w),
            None => from_ms,
        };
        let value = aggregate(store, &self.metric, self.aggregate, from_ms, to_ms);
        Evaluation {
            value,
            passed: value.is_some_and(|v| self.holds(v)),
        }
    }
}

fn fmt_seconds(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{:.1}s", ms as f64 / 1000.0)
    }
}

/// The aggregate of `key` over `[from_ms, to_ms]`.
pub fn aggregate(
    store: &MetricStore,
    key: &str,
    how: Aggregate,
    from_ms: u64,
    to_ms: u64,
) -> Option<f64> {
    let series = store.get(key);
    // Inclusive of samples taken at `to_ms` (the tick that evaluates).
    let to = to_ms.saturating_add(1);
    match how {
        Aggregate::Delta | Aggregate::Rate => {
            // Counters may only appear once they are non-zero: no value before the window is 0.
            let before = series
                .and_then(|s| {
                    s.points()
                        .rev()
                        .filter(|p| p.at_ms < from_ms)
                        .find_map(|p| p.value)
                })
                .unwrap_or(0.0);
            let last = series
                .and_then(|s| s.values_between(from_ms, to).last())
                .unwrap_or(before);
            let delta = (last - before).max(0.0);
            if how == Aggregate::Delta {
                Some(delta)
            } else {
                let secs = (to_ms.saturating_sub(from_ms)).max(1) as f64 / 1000.0;
                Some(delta / secs)
            }
        }
        Aggregate::Count => {
            Some(series.map_or(0, |s| s.values_between(from_ms, to).count()) as f64)
        }
        // The value as of `to_ms`, even if it was last reported before the window began (a
        // source reports a vanished application's zero once); nothing while the source is down.
        Aggregate::Last => series?
            .points()
            .rev()
            .find(|p| p.at_ms < to)
            .and_then(|p| p.value),
        _ => {
            let stats = Stats::of(series?.values_between(from_ms, to))?;
            Some(match how {
                Aggregate::Min => stats.min,
                Aggregate::Max => stats.max,
                Aggregate::Mean => stats.mean,
                Aggregate::P50 => stats.p50,
                Aggregate::P95 => stats.p95,
                Aggregate::P99 => stats.p99,
                Aggregate::Last | Aggregate::Count | Aggregate::Delta | Aggregate::Rate => {
                    unreachable!("handled above")
                }
            })
        }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.expected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(metric: &str, aggregate: Aggregate, op: Op, value: f64) -> Check {
        Check::from_raw(&RawCheck {
            name: None,
            metric: metric.into(),
            aggregate,
            op,
            value: Some(value),
            range: None,
            window: None,
        })
        .unwrap()
    }

    fn store() -> MetricStore {
        let mut s = MetricStore::new(1000);
        for (t, v) in [(0, 1.0), (1000, 1.0), (2000, 0.0), (3000, 1.0)] {
            s.record(t, "probe.api.ok", v);
        }
        for (t, v) in [(1000, 2.0), (2000, 5.0), (3000, 9.0)] {
            s.record(t, "webhook.tg.retries", v);
        }
        for (t, v) in [(0, 10.0), (1000, 200.0), (2000, 30.0)] {
            s.record(t, "probe.api.latency_ms", v);
        }
        s
    }

    #[test]
    fn aggregates_over_the_window() {
        let s = store();
        assert_eq!(
            aggregate(&s, "probe.api.ok", Aggregate::Mean, 0, 3000),
            Some(0.75)
        );
        assert_eq!(
            aggregate(&s, "probe.api.ok", Aggregate::Min, 0, 3000),
            Some(0.0)
        );
        assert_eq!(
            aggregate(&s, "probe.api.ok", Aggregate::Last, 0, 1500),
            Some(1.0)
        );
        assert_eq!(
            aggregate(&s, "probe.api.latency_ms", Aggregate::Max, 0, 3000),
            Some(200.0)
        );
        assert_eq!(
            aggregate(&s, "probe.api.ok", Aggregate::Count, 1000, 3000),
            Some(3.0)
        );
        // Counters: increase since the last value before the window (none = 0).
        assert_eq!(
            aggregate(&s, "webhook.tg.retries", Aggregate::Delta, 0, 3000),
            Some(9.0)
        );
        assert_eq!(
            aggregate(&s, "webhook.tg.retries", Aggregate::Delta, 1500, 3000),
            Some(7.0)
        );
        assert_eq!(
            aggregate(&s, "webhook.tg.retries", Aggregate::Rate, 1000, 3000),
            Some(4.5)
        );
        assert_eq!(aggregate(&s, "nope", Aggregate::Mean, 0, 3000), None);
        assert_eq!(aggregate(&s, "nope", Aggregate::Delta, 0, 3000), Some(0.0));
    }

    #[test]
    fn checks_pass_fail_and_say_what_they_expected() {
        let s = store();
        let c = check("probe.api.ok", Aggregate::Mean, Op::Ge, 0.99);
        assert_eq!(c.expected(), "mean of probe.api.ok >= 0.99");
        assert_eq!(
            c.evaluate(&s, 0, 3000),
            Evaluation {
                value: Some(0.75),
                passed: false
            }
        );
        let c = check("webhook.tg.retries", Aggregate::Delta, Op::Gt, 0.0);
        assert!(c.evaluate(&s, 0, 3000).passed);
        let none = check("nope", Aggregate::Last, Op::Lt, 10.0);
        assert_eq!(
            none.evaluate(&s, 0, 3000),
            Evaluation {
                value: None,
                passed: false
            },
            "no data fails"
        );
    }

    #[test]
    fn windows_and_ranges() {
        let s = store();
        let raw = RawCheck {
            name: Some("latency settles".into()),
            metric: "probe.api.latency_ms".into(),
            aggregate: Aggregate::Max,
            op: Op::Between,
            value: None,
            range: Some([0.0, 50.0]),
            window: Some(Dur::from_millis(1500)),
        };
        let c = Check::from_raw(&raw).unwrap();
        assert_eq!(c.name, "latency settles");
        assert_eq!(
            c.expected(),
            "max of probe.api.latency_ms over 1.5s between 0 and 50"
        );
        assert!(
            !c.evaluate(&s, 0, 1000).passed,
            "the spike at 1s is in the window"
        );
        assert!(c.evaluate(&s, 0, 2600).passed, "only 30 in the last 1.5 s");
        let bad = RawCheck {
            range: None,
            ..raw.clone()
        };
        assert_eq!(Check::from_raw(&bad).unwrap_err().0, "range");
        let bad = RawCheck {
            op: Op::Lt,
            value: None,
            range: None,
            ..raw
        };
        assert_eq!(Check::from_raw(&bad).unwrap_err().0, "value");
    }
}
