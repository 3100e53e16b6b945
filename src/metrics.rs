//! The metric store: one bounded series per metric key (`nats.TASKS.workers.pending`, …), with
//! explicit gaps while a source is down, plus thresholds and summary statistics.
//!
//! Time is a monotonic offset in milliseconds from the session start; the timeline maps it back
//! to the wall clock.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

/// How bad a value is.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Hash, Default,
)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    #[default]
    Ok,
    Warn,
    Crit,
}

/// Warn/crit bounds; a value at or above a bound has that level.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Threshold {
    pub warn: Option<f64>,
    pub crit: Option<f64>,
}

impl Threshold {
    pub fn above(warn: Option<f64>, crit: Option<f64>) -> Self {
        Threshold { warn, crit }
    }

    pub fn is_set(&self) -> bool {
        self.warn.is_some() || self.crit.is_some()
    }

    pub fn level(&self, value: f64) -> Level {
        if self.crit.is_some_and(|c| value >= c) {
            Level::Crit
        } else if self.warn.is_some_and(|w| value >= w) {
            Level::Warn
        } else {
            Level::Ok
        }
    }
}

/// One observation; `None` is a gap (the source was down).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub at_ms: u64,
    pub value: Option<f64>,
}

/// A fixed-capacity series: the oldest point falls off when a new one arrives.
#[derive(Debug, Clone)]
pub struct Series {
    points: VecDeque<Point>,
    capacity: usize,
}

/// Summary of a stretch of a series.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Stats {
    pub count: usize,
    pub min: f64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
    pub last: f64,
}

impl Series {
    pub fn new(capacity: usize) -> Self {
        Series {
            points: VecDeque::with_capacity(capacity.min(4096)),
            capacity: capacity.max(1),
        }
    }

    pub fn push(&mut self, at_ms: u64, value: Option<f64>) {
        if value.is_none() && self.points.back().is_some_and(|p| p.value.is_none()) {
            return; // one gap marker is enough
        }
        if self.points.len() >= self.capacity {
            self.points.pop_front();
        }
        self.points.push_back(Point { at_ms, value });
    }

    pub fn points(&self) -> impl DoubleEndedIterator<Item = &Point> + ExactSizeIterator {
        self.points.iter()
    }

    pub fn len(&self) -> usize {
        self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// The newest value, `None` while in a gap.
    pub fn current(&self) -> Option<f64> {
        self.points.back().and_then(|p| p.value)
    }

    /// The newest value that is not a gap.
    pub fn last_known(&self) -> Option<f64> {
        self.points.iter().rev().find_map(|p| p.value)
    }

    pub fn last_at(&self) -> Option<u64> {
        self.points.back().map(|p| p.at_ms)
    }

    /// Values with `from_ms <= at < to_ms`.
    pub fn values_between(&self, from_ms: u64, to_ms: u64) -> impl Iterator<Item = f64> + '_ {
        // Points are in time order: skip the old ones by binary search.
        let start = self.points.partition_point(|p| p.at_ms < from_ms);
        self.points
            .range(start..)
            .take_while(move |p| p.at_ms < to_ms)
            .filter_map(|p| p.value)
    }

    pub fn stats_between(&self, from_ms: u64, to_ms: u64) -> Option<Stats> {
        Stats::of(self.values_between(from_ms, to_ms))
    }

    pub fn stats(&self) -> Option<Stats> {
        Stats::of(self.points.iter().filter_map(|p| p.value))
    }

    /// Milliseconds spent at or above `level` between the first and last point, counting each
    /// point until the next one.
    pub fn time_at_level(&self, threshold: &Threshold, level: Level) -> u64 {
        let mut total = 0;
        for (a, b) in self.points.iter().zip(self.points.iter().skip(1)) {
            if a.value.is_some_and(|v| threshold.level(v) >= level) {
                total += b.at_ms.saturating_sub(a.at_ms);
            }
        }
        total
    }

    /// Bucket the newest points into `columns` buckets of `bucket_ms` ending at `now_ms`, keeping
    /// the largest value per bucket (spikes must stay visible). Buckets with no value are `None`.
    pub fn buckets(&self, columns: usize, bucket_ms: u64, now_ms: u64) -> Vec<Option<f64>> {
        let bucket_ms = bucket_ms.max(1);
        let span = bucket_ms * columns as u64;
        let start = now_ms.saturating_sub(span);
        let mut out = vec![None; columns];
        let first = self.points.partition_point(|p| p.at_ms < start);
        for p in self.points.range(first..) {
            let Some(v) = p.value else { continue };
            let i = ((p.at_ms - start) / bucket_ms) as usize;
            if let Some(slot) = out.get_mut(i.min(columns.saturating_sub(1))) {
                *slot = Some(slot.map_or(v, |s: f64| s.max(v)));
            }
        }
        out
    }
}

impl Stats {
    pub fn of(values: impl Iterator<Item = f64>) -> Option<Stats> {
        let mut v: Vec<f64> = values.filter(|x| x.is_finite()).collect();
        let last = *v.last()?;
        let sum: f64 = v.iter().sum();
        let count = v.len();
        v.sort_by(f64::total_cmp);
        let pct = |p: f64| v[(((count - 1) as f64) * p).round() as usize];
        Some(Stats {
            count,
            min: v[0],
            p50: pct(0.50),
            p95: pct(0.95),
            p99: pct(0.99),
            max: v[count - 1],
            mean: sum / count as f64,
            last,
        })
    }
}

/// Every series by key. Keys sort so that related metrics sit together.
#[derive(Debug, Clone)]
pub struct MetricStore {
    series: BTreeMap<String, Series>,
    capacity: usize,
}

impl MetricStore {
    pub fn new(capacity: usize) -> Self {
        MetricStore {
            series: BTreeMap::new(),
            capacity,
        }
    }

    pub fn record(&mut self, at_ms: u64, key: &str, value: f64) {
        match self.series.get_mut(key) {
            Some(s) => s.push(at_ms, Some(value)),
            None => {
                let mut s = Series::new(self.capacity);
                s.push(at_ms, Some(value));
                self.series.insert(key.to_string(), s);
            }
        }
    }

    /// Mark a gap in every series under `prefix` (e.g. `nats.`) except the `*.up` flags, which keep
    /// recording 0 while down.
    pub fn gap(&mut self, at_ms: u64, prefix: &str) {
        for (key, s) in self.series.range_mut(prefix.to_string()..) {
            if !key.starts_with(prefix) {
                break;
            }
            if !key.ends_with(".up") {
                s.push(at_ms, None);
            }
        }
    }

    pub fn get(&self, key: &str) -> Option<&Series> {
        self.series.get(key)
    }

    pub fn current(&self, key: &str) -> Option<f64> {
        self.series.get(key).and_then(Series::current)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Series)> {
        self.series.iter()
    }

    /// Keys under a prefix, in order.
    pub fn keys_with_prefix<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = &'a String> + 'a {
        self.series
            .range(prefix.to_string()..)
            .map(|(k, _)| k)
            .take_while(move |k| k.starts_with(prefix))
    }

    /// The newest known value of every key.
    pub fn latest(&self) -> BTreeMap<String, f64> {
        self.series
            .iter()
            .filter_map(|(k, s)| s.last_known().map(|v| (k.clone(), v)))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.series.len()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_is_bounded_and_keeps_the_newest() {
        let mut s = Series::new(3);
        for i in 0..5 {
            s.push(i * 1000, Some(i as f64));
        }
        assert_eq!(s.len(), 3);
        assert_eq!(s.points().next().unwrap().value, Some(2.0));
        assert_eq!(s.current(), Some(4.0));
    }

    #[test]
    fn gaps_are_explicit_and_not_repeated() {
        let mut store = MetricStore::new(10);
        store.record(0, "nats.up", 1.0);
        store.record(0, "nats.TASKS.messages", 5.0);
        store.record(0, "pg.up", 1.0);
        store.gap(1000, "nats.");
        store.gap(2000, "nats.");
        let s = store.get("nats.TASKS.messages").unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s.current(), None);
        assert_eq!(s.last_known(), Some(5.0));
        assert_eq!(
            store.current("nats.up"),
            Some(1.0),
            ".up flags are never gaps"
        );
        assert_eq!(
            store.get("pg.up").unwrap().len(),
            1,
            "other prefixes untouched"
        );
    }

    #[test]
    fn stats_and_percentiles() {
        let st = Stats::of((1..=100).map(|i| i as f64)).unwrap();
        assert_eq!((st.min, st.max, st.count), (1.0, 100.0, 100));
        assert_eq!(st.p50, 51.0);
        assert_eq!(st.p95, 95.0);
        assert_eq!(st.last, 100.0);
        assert!(Stats::of(std::iter::empty()).is_none());
    }

    #[test]
    fn time_above_threshold() {
        let mut s = Series::new(10);
        for (t, v) in [
            (0, 1.0),
            (1000, 50.0),
            (2000, 150.0),
            (3000, 1.0),
            (4000, 1.0),
        ] {
            s.push(t, Some(v));
        }
        let th = Threshold::above(Some(10.0), Some(100.0));
        assert_eq!(s.time_at_level(&th, Level::Warn), 2000);
        assert_eq!(s.time_at_level(&th, Level::Crit), 1000);
        assert_eq!(th.level(100.0), Level::Crit);
        assert_eq!(th.level(9.9), Level::Ok);
    }

    #[test]
    fn buckets_keep_spikes_and_gaps() {
        let mut s = Series::new(100);
        s.push(0, Some(1.0));
        s.push(100, Some(9.0));
        s.push(1500, None);
        s.push(2100, Some(3.0));
        let b = s.buckets(3, 1000, 3000);
        assert_eq!(b, vec![Some(9.0), None, Some(3.0)]);
    }

    #[test]
    fn values_between_uses_half_open_window() {
        let mut s = Series::new(10);
        for t in 0..5 {
            s.push(t * 10, Some(t as f64));
        }
        assert_eq!(s.values_between(10, 30).collect::<Vec<_>>(), vec![1.0, 2.0]);
    }
}
