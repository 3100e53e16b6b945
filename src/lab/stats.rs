//! Counters the lab keeps about itself, and the `/stats` document built from them.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// Monotonic counters shared by the API, the drainer, the workers and the notifier.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub accepted: AtomicU64,
    pub queued: AtomicU64,
    pub rejected: AtomicU64,
    pub server_errors: AtomicU64,
    pub request_timeouts: AtomicU64,
    pub publish_failures: AtomicU64,
    pub drained: AtomicU64,
    pub processed: AtomicU64,
    pub duplicates_skipped: AtomicU64,
    pub malformed: AtomicU64,
    pub notified: AtomicU64,
    pub webhook_attempts: AtomicU64,
    pub webhook_retries: AtomicU64,
    pub webhook_timeouts: AtomicU64,
    pub webhook_failures: AtomicU64,
    pub pool_timeouts: AtomicU64,
    pub db_errors: AtomicU64,
    pub db_fail_fast: AtomicU64,
    /// Waiting acquires and their wait times (`GET /metrics`).
    pub pool_meter: super::pool_metrics::PoolMeter,
}

pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

pub(crate) fn add(counter: &AtomicU64, amount: u64) {
    counter.fetch_add(amount, Ordering::Relaxed);
}

/// Connection-pool gauges, read from the sqlx pool at the time of the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolStats {
    /// Open connections, idle ones included.
    pub size: u32,
    pub idle: u32,
    /// Pool size plus max overflow.
    pub max: u32,
    pub in_use: u32,
}

impl PoolStats {
    pub(crate) fn new(size: u32, idle: usize, max: u32) -> Self {
        let idle = u32::try_from(idle).unwrap_or(u32::MAX).min(size);
        Self {
            size,
            idle,
            max,
            in_use: size - idle,
        }
    }
}

/// The JSON document `GET /stats` answers. Counters count since the lab started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsSnapshot {
    /// `POST /tasks` answered 202 "accepted" (published, ack received).
    pub accepted: u64,
    /// `POST /tasks` answered 202 "queued" (parked in the retry queue).
    pub queued: u64,
    /// `POST /tasks` answered 503 (broker and database both unavailable, or out of time).
    pub rejected: u64,
    /// `POST /tasks` answered 500 (only with graceful degradation switched off).
    pub server_errors: u64,
    /// Requests cut off by the request timeout (also counted in `rejected`).
    pub request_timeouts: u64,
    /// Publishes that got no ack in time or failed, from the API and the drainer.
    pub publish_failures: u64,
    /// Rows in `retry_queue` now; `null` when the database did not answer in time.
    pub retry_queue_depth: Option<i64>,
    /// Queued tasks republished (ack received) and removed from the retry queue.
    pub drained: u64,
    /// Tasks written to the `tasks` table for the first time.
    pub processed: u64,
    /// Redeliveries of tasks already notified, acked without notifying again.
    pub duplicates_skipped: u64,
    /// Stream messages that were not a task and were terminated.
    pub malformed: u64,
    /// Notifications the webhook accepted.
    pub notified: u64,
    pub webhook_attempts: u64,
    pub webhook_retries: u64,
    pub webhook_timeouts: u64,
    /// Notifications that failed every attempt (the message goes back for redelivery).
    pub webhook_failures: u64,
    /// Pool acquires that ran into `--pool-timeout`.
    pub pool_timeouts: u64,
    /// Other database errors.
    pub db_errors: u64,
    /// `POST /tasks` refused at once (503) because the database was unreachable moments before,
    /// instead of waiting out the pool timeout again.
    pub db_fail_fast: u64,
    pub pool: PoolStats,
    pub nats_connected: bool,
}

impl Counters {
    pub(crate) fn snapshot(
        &self,
        retry_queue_depth: Option<i64>,
        pool: PoolStats,
        nats_connected: bool,
    ) -> StatsSnapshot {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        StatsSnapshot {
            accepted: read(&self.accepted),
            queued: read(&self.queued),
            rejected: read(&self.rejected),
            server_errors: read(&self.server_errors),
            request_timeouts: read(&self.request_timeouts),
            publish_failures: read(&self.publish_failures),
            retry_queue_depth,
            drained: read(&self.drained),
            processed: read(&self.processed),
            duplicates_skipped: read(&self.duplicates_skipped),
            malformed: read(&self.malformed),
            notified: read(&self.notified),
            webhook_attempts: read(&self.webhook_attempts),
            webhook_retries: read(&self.webhook_retries),
            webhook_timeouts: read(&self.webhook_timeouts),
            webhook_failures: read(&self.webhook_failures),
            pool_timeouts: read(&self.pool_timeouts),
            db_errors: read(&self.db_errors),
            db_fail_fast: read(&self.db_fail_fast),
            pool,
            nats_connected,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_stats_derive_in_use_and_never_underflow() {
        assert_eq!(
            PoolStats::new(10, 3, 30),
            PoolStats {
                size: 10,
                idle: 3,
                max: 30,
                in_use: 7
            }
        );
        // sqlx reads size and idle separately; a racing release can make idle look larger.
        assert_eq!(PoolStats::new(2, 5, 30).in_use, 0);
    }

    #[test]
    fn snapshot_serializes_every_field_the_console_reads() {
        let counters = Counters::default();
        bump(&counters.accepted);
        add(&counters.drained, 3);
        let json =
            serde_json::to_value(counters.snapshot(Some(4), PoolStats::new(10, 10, 30), true))
                .expect("stats serialize");
        for field in [
            "accepted",
            "queued",
            "retry_queue_depth",
            "drained",
            "processed",
            "duplicates_skipped",
            "notified",
            "webhook_attempts",
            "webhook_retries",
            "webhook_failures",
            "nats_connected",
        ] {
            assert!(json.get(field).is_some(), "missing {field} in {json}");
        }
        assert_eq!(json["accepted"], 1);
        assert_eq!(json["drained"], 3);
        assert_eq!(json["retry_queue_depth"], 4);
        assert_eq!(
            json["pool"],
            serde_json::json!({"size": 10, "idle": 10, "max": 30, "in_use": 0})
        );
    }
}
