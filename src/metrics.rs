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

/// Keys a live store holds at most: ephemeral consumers and one-off application names must not
/// grow it without limit over a long drill.
pub const DEFAULT_MAX_KEYS: usize = 4096;
/// Expiry sweeps run at most this many times per idle window, so each costs O(keys) rarely.
const SWEEPS_PER_WINDOW: u64 = 64;
/// A full store evicts this fraction of its keys at once, so eviction is O(1) per new key
/// amortised instead of a scan per key.
const EVICT_FRACTION: usize = 64;

/// Every series by key. Keys sort so that related metrics sit together.
#[derive(Debug, Clone)]
pub struct MetricStore {
    series: BTreeMap<String, Series>,
    capacity: usize,
    /// A series whose newest point is this much older than the newest time recorded is
    /// dropped; `None` keeps every series (replays rebuild a finished session whole).
    idle_after_ms: Option<u64>,
    max_keys: usize,
    /// The newest time recorded: "the latest sample".
    now_ms: u64,
    /// No expiry sweep before this time: the earliest a surviving series can turn idle, and
    /// at least a sweep interval after the previous sweep.
    next_sweep_ms: u64,
    /// Set while the store is full of keys recorded at this time: nothing can be evicted
    /// until time moves on, so new keys are refused without another scan.
    full_at_ms: Option<u64>,
    refused_keys: u64,
    /// Expiry sweeps run so far (tests check they stay rare).
    sweeps: u64,
}

impl MetricStore {
    /// A store that keeps every key forever.
    pub fn new(capacity: usize) -> Self {
        MetricStore {
            series: BTreeMap::new(),
            capacity,
            idle_after_ms: None,
            max_keys: usize::MAX,
            now_ms: 0,
            next_sweep_ms: u64::MAX,
            full_at_ms: None,
            refused_keys: 0,
            sweeps: 0,
        }
    }

    /// A live store: `capacity` points per series, series idle for more than `idle_after_ms`
    /// dropped, at most `max_keys` keys (the longest idle evicted first).
    pub fn with_limits(capacity: usize, idle_after_ms: u64, max_keys: usize) -> Self {
        MetricStore {
            idle_after_ms: Some(idle_after_ms),
            max_keys: max_keys.max(1),
            ..MetricStore::new(capacity)
        }
    }

    pub fn record(&mut self, at_ms: u64, key: &str, value: f64) {
        self.advance(at_ms);
        if let Some(s) = self.series.get_mut(key) {
            s.push(at_ms, Some(value));
            return;
        }
        if self.series.len() >= self.max_keys && !self.make_room() {
            self.refused_keys += 1;
            if self.refused_keys == 1 {
                tracing::warn!(
                    max_keys = self.max_keys,
                    "metric store full of keys sampled just now; new keys are dropped"
                );
            }
            return;
        }
        let mut s = Series::new(self.capacity);
        s.push(at_ms, Some(value));
        self.series.insert(key.to_string(), s);
        if let Some(idle) = self.idle_after_ms {
            // The new series may be the first to turn idle.
            self.next_sweep_ms = self
                .next_sweep_ms
                .min(at_ms.saturating_add(idle).saturating_add(1));
        }
    }

    /// Moves "now" forward and drops idle series when one can be due.
    fn advance(&mut self, at_ms: u64) {
        if at_ms > self.now_ms {
            self.now_ms = at_ms;
            self.full_at_ms = None;
        }
        if let Some(idle) = self.idle_after_ms
            && self.now_ms >= self.next_sweep_ms
        {
            self.sweep_idle(idle);
        }
    }

    fn sweep_idle(&mut self, idle_after_ms: u64) {
        self.sweeps += 1;
        let now = self.now_ms;
        let mut oldest = u64::MAX;
        self.series.retain(|_, s| {
            let last = s.last_at().unwrap_or(0);
            let keep = now.saturating_sub(last) <= idle_after_ms;
            if keep {
                oldest = oldest.min(last);
            }
            keep
        });
        let due = oldest.saturating_add(idle_after_ms).saturating_add(1);
        let interval = (idle_after_ms / SWEEPS_PER_WINDOW).max(1);
        self.next_sweep_ms = due.max(now.saturating_add(interval));
    }

    /// Evicts the series idle the longest (a batch of them, never one recorded in the latest
    /// sample). False when nothing could go.
    fn make_room(&mut self) -> bool {
        if self.full_at_ms == Some(self.now_ms) {
            return false;
        }
        let now = self.now_ms;
        let mut idle: Vec<(u64, &str)> = self
            .series
            .iter()
            .map(|(k, s)| (s.last_at().unwrap_or(0), k.as_str()))
            .filter(|&(last, _)| last < now)
            .collect();
        if idle.is_empty() {
            self.full_at_ms = Some(now);
            return false;
        }
        let batch = (self.max_keys / EVICT_FRACTION).clamp(1, idle.len());
        if batch < idle.len() {
            idle.select_nth_unstable(batch - 1);
            idle.truncate(batch);
        }
        let evicted: Vec<String> = idle.into_iter().map(|(_, k)| k.to_owned()).collect();
        for key in evicted {
            self.series.remove(&key);
        }
        true
    }

    /// New keys dropped because the store was full of keys sampled at that very time.
    pub fn refused_keys(&self) -> u64 {
        self.refused_keys
    }

    /// Mark a gap in every series under `prefix` (e.g. `nats.`) except the `*.up` flags, which keep
    /// recording 0 while down.
    pub fn gap(&mut self, at_ms: u64, prefix: &str) {
        self.advance(at_ms);
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

    #[test]
    fn a_series_idle_longer_than_the_window_is_dropped() {
        let mut store = MetricStore::with_limits(10, 1000, 100);
        store.record(0, "nats.consumer.gone", 1.0);
        store.record(0, "nats.up", 1.0);
        store.record(500, "nats.up", 1.0);
        store.record(1000, "nats.up", 1.0);
        assert!(
            store.get("nats.consumer.gone").is_some(),
            "exactly the window old: kept"
        );
        store.record(1001, "nats.up", 1.0);
        assert!(
            store.get("nats.consumer.gone").is_none(),
            "1 ms past: dropped"
        );
        assert_eq!(store.len(), 1);
        // A gap is a point too, and moves time on like a record.
        store.record(1500, "pg.rows", 1.0);
        store.gap(2001, "nats.");
        assert_eq!(store.get("nats.up").unwrap().len(), 4, ".up takes no gap");
        // Sweeps run at most every window/64 (15 ms here), so the one after 2001 is at 2016:
        // a series outlives the window by at most that much.
        store.gap(2015, "nats.");
        assert!(store.get("nats.up").is_some());
        store.gap(2016, "nats.");
        assert!(store.get("nats.up").is_none(), "idle since 1001");
        assert!(store.get("pg.rows").is_some(), "idle since 1500 only");
    }

    #[test]
    fn stores_without_limits_keep_every_series() {
        let mut store = MetricStore::new(10);
        store.record(0, "old", 1.0);
        store.record(u64::MAX / 2, "new", 1.0);
        assert_eq!(store.len(), 2);
    }

    #[test]
    fn a_full_store_evicts_the_longest_idle_key_but_never_one_sampled_just_now() {
        let mut store = MetricStore::with_limits(10, 1_000_000, 3);
        store.record(0, "a", 1.0);
        store.record(10, "b", 1.0);
        store.record(20, "c", 1.0);
        store.record(30, "d", 1.0);
        assert_eq!(
            store.keys_with_prefix("").collect::<Vec<_>>(),
            ["b", "c", "d"]
        );
        store.record(30, "e", 1.0);
        assert_eq!(
            store.keys_with_prefix("").collect::<Vec<_>>(),
            ["c", "d", "e"]
        );
        // Every key now sampled at 30: a new key at 30 is refused, not swapped in.
        store.record(30, "c", 2.0);
        store.record(30, "f", 1.0);
        store.record(30, "g", 1.0);
        assert_eq!(
            store.keys_with_prefix("").collect::<Vec<_>>(),
            ["c", "d", "e"]
        );
        assert_eq!(store.refused_keys(), 2);
        // Time moves on: ties in idleness go by key order.
        store.record(40, "h", 1.0);
        assert_eq!(
            store.keys_with_prefix("").collect::<Vec<_>>(),
            ["d", "e", "h"]
        );
        assert_eq!(store.current("d"), Some(1.0));
    }

    #[test]
    fn a_full_store_evicts_in_batches() {
        let mut store = MetricStore::with_limits(10, 1_000_000, 128);
        for i in 0..128u64 {
            store.record(i, &format!("k{i:03}"), 1.0);
        }
        store.record(200, "new", 1.0);
        // 128 / EVICT_FRACTION = 2 go at once: one scan serves the next new key too.
        assert_eq!(store.len(), 127);
        assert!(store.get("k000").is_none() && store.get("k001").is_none());
        assert!(store.get("k002").is_some());
        store.record(200, "newer", 1.0);
        assert_eq!(store.len(), 128);
    }

    #[test]
    fn expiry_sweeps_stay_rare_under_steady_load_and_churn() {
        const WINDOW: u64 = 6400;
        const STEP: u64 = 100;
        let mut store = MetricStore::with_limits(100, WINDOW, 10_000);
        let keys: Vec<String> = (0..200).map(|i| format!("steady.{i}")).collect();
        let samples = 10 * WINDOW / STEP;
        for n in 0..samples {
            for key in &keys {
                store.record(n * STEP, key, 1.0);
            }
        }
        assert_eq!(store.len(), 200);
        assert!(store.sweeps <= 10, "{} sweeps", store.sweeps);

        // A one-off key every sample: each expires, but sweeps are capped per window.
        let before = store.sweeps;
        for n in samples..2 * samples {
            store.record(n * STEP, &format!("ephemeral.{n}"), 1.0);
            for key in &keys {
                store.record(n * STEP, key, 1.0);
            }
        }
        let sweeps = store.sweeps - before;
        assert!(sweeps <= 10 * SWEEPS_PER_WINDOW + 1, "{sweeps} sweeps");
        // The live one-offs: those of the last window, plus at most one sweep interval late.
        let ephemeral = store.keys_with_prefix("ephemeral.").count() as u64;
        let bound = (WINDOW + WINDOW / SWEEPS_PER_WINDOW) / STEP + 1;
        assert!(ephemeral <= bound, "{ephemeral} one-off keys live");
    }
}
