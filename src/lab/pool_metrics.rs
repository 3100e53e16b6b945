//! The lab's pool as the application sees it: requests waiting to acquire a connection, the
//! time they waited, and `GET /metrics` in the Prometheus text format (series `lab_db_pool_*`,
//! recognised by the console's Prometheus source as an application pool).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sqlx::PgPool;
use sqlx::pool::PoolConnection;
use sqlx::postgres::Postgres;

use super::stats::PoolStats;

/// The pool label on every series (the lab's database).
pub const POOL_NAME: &str = "tasks";

/// Upper bounds of the acquire-time histogram, in seconds.
const BOUNDS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Counted around every acquire the lab makes.
#[derive(Debug, Default)]
pub(crate) struct PoolMeter {
    /// Acquires started and not finished.
    waiting: AtomicU64,
    /// Per bucket (not cumulative); the last is above every bound.
    buckets: [AtomicU64; BOUNDS.len() + 1],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

/// Decrements `waiting` however the acquire ends (done, failed, or its future dropped).
struct Waiting<'a>(&'a AtomicU64);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl PoolMeter {
    pub fn waiting(&self) -> u64 {
        self.waiting.load(Ordering::Relaxed)
    }

    fn observe(&self, waited: Duration) {
        let seconds = waited.as_secs_f64();
        let bucket = BOUNDS
            .iter()
            .position(|b| seconds <= *b)
            .unwrap_or(BOUNDS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(waited.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// The exposition: pool gauges from `stats`, waiting and the histogram from this meter.
    pub fn render(&self, stats: PoolStats) -> String {
        let mut out = String::new();
        let pool = POOL_NAME;
        let mut gauge = |name: &str, help: &str, value: u64| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} gauge");
            let _ = writeln!(out, "{name}{{pool=\"{pool}\"}} {value}");
        };
        gauge(
            "lab_db_pool_max",
            "Connections the pool may open (size plus overflow).",
            u64::from(stats.max),
        );
        gauge(
            "lab_db_pool_size",
            "Connections open now.",
            u64::from(stats.size),
        );
        gauge(
            "lab_db_pool_in_use",
            "Connections lent out now.",
            u64::from(stats.in_use),
        );
        gauge(
            "lab_db_pool_idle",
            "Connections open and idle.",
            u64::from(stats.idle),
        );
        gauge(
            "lab_db_pool_waiting",
            "Requests waiting to acquire a connection.",
            self.waiting(),
        );
        let name = "lab_db_pool_acquire_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time spent waiting to acquire a connection."
        );
        let _ = writeln!(out, "# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, bound) in BOUNDS.iter().enumerate() {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{pool=\"{pool}\",le=\"{bound}\"}} {cumulative}"
            );
        }
        cumulative += self.buckets[BOUNDS.len()].load(Ordering::Relaxed);
        // Bucket counts are read one by one: the total is at least the last bucket read.
        let count = self.count.load(Ordering::Relaxed).max(cumulative);
        let _ = writeln!(out, "{name}_bucket{{pool=\"{pool}\",le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{pool=\"{pool}\"}} {sum}");
        let _ = writeln!(out, "{name}_count{{pool=\"{pool}\"}} {count}");
        out
    }
}

/// A connection from `pool`, counted as waiting until it arrives (or the acquire fails) and
/// its wait observed in the histogram.
pub(crate) async fn acquire(
    pool: &PgPool,
    meter: &PoolMeter,
) -> Result<PoolConnection<Postgres>, sqlx::Error> {
    meter.waiting.fetch_add(1, Ordering::Relaxed);
    let waiting = Waiting(&meter.waiting);
    let started = Instant::now();
    let result = pool.acquire().await;
    drop(waiting);
    meter.observe(started.elapsed());
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::exposition;

    #[test]
    fn the_exposition_parses_and_its_histogram_is_cumulative() {
        let meter = PoolMeter::default();
        meter.observe(Duration::from_micros(500));
        meter.observe(Duration::from_millis(30));
        meter.observe(Duration::from_secs(7));
        meter.waiting.fetch_add(2, Ordering::Relaxed);
        let text = meter.render(PoolStats::new(30, 0, 30));
        let parsed = exposition::parse(&text);
        assert!(parsed.problems.is_empty(), "{:?}\n{text}", parsed.problems);
        let value = |name: &str, le: Option<&str>| {
            parsed
                .samples
                .iter()
                .find(|s| s.name == name && s.label("le") == le)
                .unwrap_or_else(|| panic!("{name} {le:?} in\n{text}"))
                .value
        };
        assert_eq!(value("lab_db_pool_in_use", None), 30.0);
        assert_eq!(value("lab_db_pool_waiting", None), 2.0);
        let bucket = "lab_db_pool_acquire_seconds_bucket";
        assert_eq!(value(bucket, Some("0.001")), 1.0);
        assert_eq!(value(bucket, Some("0.05")), 2.0);
        assert_eq!(value(bucket, Some("5")), 2.0);
        assert_eq!(value(bucket, Some("+Inf")), 3.0);
        assert_eq!(value("lab_db_pool_acquire_seconds_count", None), 3.0);
        assert!((value("lab_db_pool_acquire_seconds_sum", None) - 7.0305).abs() < 1e-9);
        assert_eq!(parsed.types["lab_db_pool_acquire_seconds"], "histogram");
    }
}
