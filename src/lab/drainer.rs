//! The retry drainer: republishes tasks parked in `retry_queue` once the broker is back.
//!
//! Rows are locked with `FOR UPDATE SKIP LOCKED`, so several lab instances share the queue, and
//! a row is deleted only after its publish ack: a crash in between republishes it later, and the
//! stream's duplicate window and the workers' idempotency absorb the copy.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::broker::{Broker, PublishFailure};
use super::stats::{Counters, add, bump};
use super::store;

/// A round stuck on a frozen database gives up (its transaction rolls back) after this long.
const ROUND_BOUND: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy)]
pub(crate) struct DrainSettings {
    pub interval: Duration,
    pub batch: u32,
}

pub(crate) struct Drainer {
    pub broker: Broker,
    pub pool: PgPool,
    pub counters: Arc<Counters>,
    pub settings: DrainSettings,
}

#[derive(Debug, Default)]
struct BatchOutcome {
    republished: usize,
    failed: usize,
}

impl Drainer {
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            let full_batch = if self.broker.is_connected() {
                match tokio::time::timeout(ROUND_BOUND, self.drain_batch()).await {
                    Err(_) => {
                        tracing::warn!(bound = ?ROUND_BOUND, "drainer round timed out; its rows stay queued");
                        false
                    }
                    Ok(Ok(outcome)) => {
                        if outcome.republished > 0 {
                            tracing::info!(
                                republished = outcome.republished,
                                failed = outcome.failed,
                                "drained retry queue"
                            );
                        }
                        outcome.failed == 0 && outcome.republished == self.settings.batch as usize
                    }
                    Ok(Err(error)) => {
                        store::count_error(&self.counters, &error);
                        tracing::warn!(%error, "cannot drain the retry queue");
                        false
                    }
                }
            } else {
                false
            };
            // A full batch means more is waiting: go again at once.
            let pause = if full_batch {
                Duration::ZERO
            } else {
                self.settings.interval
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(pause) => {}
            }
        }
    }

    async fn drain_batch(&self) -> Result<BatchOutcome, sqlx::Error> {
        let mut conn = super::pool_metrics::acquire(&self.pool, &self.counters.pool_meter).await?;
        let mut transaction = sqlx::Connection::begin(&mut *conn).await?;
        let rows = sqlx::query(
            "SELECT id::text AS id, title, enqueued_at FROM retry_queue WHERE retry_at <= now() \
             ORDER BY retry_at LIMIT $1 FOR UPDATE SKIP LOCKED",
        )
        .bind(i64::from(self.settings.batch))
        .fetch_all(&mut *transaction)
        .await?;
        if rows.is_empty() {
            transaction.commit().await?;
            return Ok(BatchOutcome::default());
        }
        let tasks = rows
            .iter()
            .map(store::queued_task)
            .collect::<Result<Vec<_>, _>>()?;
        let mut results =
            futures::future::join_all(tasks.iter().map(|task| self.broker.publish(task))).await;
        if results
            .iter()
            .any(|result| matches!(result, Err(PublishFailure::NoStream)))
        {
            // The broker came back without its store: recreate the stream and try once more.
            if let Err(error) = self.broker.ensure_stream().await {
                tracing::warn!(%error, "cannot recreate the stream");
            }
            results =
                futures::future::join_all(tasks.iter().map(|task| self.broker.publish(task))).await;
        }
        let (mut published, mut failed) = (Vec::new(), Vec::new());
        for (task, result) in tasks.iter().zip(&results) {
            match result {
                Ok(()) => published.push(task.id.to_string()),
                Err(failure) => {
                    bump(&self.counters.publish_failures);
                    tracing::debug!(task = %task.id, %failure, "republish failed");
                    failed.push(task.id.to_string());
                }
            }
        }
        if !published.is_empty() {
            sqlx::query("DELETE FROM retry_queue WHERE id = ANY($1::uuid[])")
                .bind(&published)
                .execute(&mut *transaction)
                .await?;
        }
        if !failed.is_empty() {
            // Back off per row: min(interval · 2^attempts, 1 min).
            sqlx::query(
                "UPDATE retry_queue SET attempts = attempts + 1, \
                 retry_at = now() + least($2 * power(2, least(attempts, 10)), 60000) * interval '1 millisecond' \
                 WHERE id = ANY($1::uuid[])",
            )
            .bind(&failed)
            .bind(i64::try_from(self.settings.interval.as_millis()).unwrap_or(i64::MAX))
            .execute(&mut *transaction)
            .await?;
        }
        transaction.commit().await?;
        add(&self.counters.drained, published.len() as u64);
        Ok(BatchOutcome {
            republished: published.len(),
            failed: failed.len(),
        })
    }
}
