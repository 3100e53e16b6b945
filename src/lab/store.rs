//! PostgreSQL side of the lab: the pool, the schema and the queries.
//!
//! Task ids travel as text and are cast to `uuid` in SQL, so the crate needs no sqlx `uuid`
//! feature.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Row};
use uuid::Uuid;

use super::TaskMessage;
use super::pool_metrics::{PoolMeter, acquire};
use super::stats::{Counters, PoolStats, bump};

/// `application_name` of every pool connection, so pg_stat_activity and the console can tell
/// the lab's sessions apart.
pub const APPLICATION_NAME: &str = "task-tracker";

const SCHEMA: &str = include_str!("schema.sql");

#[derive(Debug, Clone, Copy)]
pub(crate) struct PoolSettings {
    pub size: u32,
    pub max_overflow: u32,
    pub acquire_timeout: Duration,
    pub idle_timeout: Duration,
}

impl PoolSettings {
    pub fn max_connections(&self) -> u32 {
        self.size.saturating_add(self.max_overflow).max(1)
    }
}

/// Opens the pool (`size` connections kept, up to `size + overflow`; connections above `size`
/// close after `idle_timeout`) and applies the schema.
pub(crate) async fn open(url: &str, settings: PoolSettings) -> Result<PgPool, sqlx::Error> {
    let connect = PgConnectOptions::from_str(url)?.application_name(APPLICATION_NAME);
    let pool = PgPoolOptions::new()
        .min_connections(settings.size)
        .max_connections(settings.max_connections())
        .acquire_timeout(settings.acquire_timeout)
        .idle_timeout(settings.idle_timeout)
        .connect_with(connect)
        .await?;
    sqlx::raw_sql(SCHEMA).execute(&pool).await?;
    Ok(pool)
}

pub(crate) fn pool_stats(pool: &PgPool) -> PoolStats {
    PoolStats::new(
        pool.size(),
        pool.num_idle(),
        pool.options().get_max_connections(),
    )
}

/// Counts a database error in the right bucket; pool timeouts are what pool exhaustion
/// looks like from inside the app.
pub(crate) fn count_error(counters: &Counters, error: &sqlx::Error) {
    if matches!(error, sqlx::Error::PoolTimedOut) {
        bump(&counters.pool_timeouts);
    } else {
        bump(&counters.db_errors);
    }
}

/// Parks a task the broker could not take.
pub(crate) async fn enqueue(
    pool: &PgPool,
    meter: &PoolMeter,
    task: &TaskMessage,
    retry_at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let mut conn = acquire(pool, meter).await?;
    sqlx::query(
        "INSERT INTO retry_queue (id, title, enqueued_at, retry_at) VALUES ($1::uuid, $2, $3, $4) \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(task.id.to_string())
    .bind(&task.title)
    .bind(task.created_at)
    .bind(retry_at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub(crate) async fn retry_queue_depth(
    pool: &PgPool,
    meter: &PoolMeter,
) -> Result<i64, sqlx::Error> {
    let mut conn = acquire(pool, meter).await?;
    sqlx::query_scalar("SELECT count(*) FROM retry_queue")
        .fetch_one(&mut *conn)
        .await
}

/// What the worker learns when it writes a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Recorded {
    /// This delivery created the row (the first one to reach the database).
    pub inserted: bool,
    /// An earlier delivery already notified the user.
    pub already_notified: bool,
}

/// Writes a task idempotently: a redelivered task leaves the row as it is.
pub(crate) async fn record_task(
    pool: &PgPool,
    meter: &PoolMeter,
    task: &TaskMessage,
) -> Result<Recorded, sqlx::Error> {
    let mut conn = acquire(pool, meter).await?;
    let inserted = sqlx::query(
        "INSERT INTO tasks (id, title, created_at) VALUES ($1::uuid, $2, $3) ON CONFLICT (id) DO NOTHING",
    )
    .bind(task.id.to_string())
    .bind(&task.title)
    .bind(task.created_at)
    .execute(&mut *conn)
    .await?
    .rows_affected()
        == 1;
    let already_notified = if inserted {
        false
    } else {
        sqlx::query_scalar("SELECT notified_at IS NOT NULL FROM tasks WHERE id = $1::uuid")
            .bind(task.id.to_string())
            .fetch_one(&mut *conn)
            .await?
    };
    Ok(Recorded {
        inserted,
        already_notified,
    })
}

pub(crate) async fn mark_notified(
    pool: &PgPool,
    meter: &PoolMeter,
    id: Uuid,
) -> Result<(), sqlx::Error> {
    let mut conn = acquire(pool, meter).await?;
    sqlx::query("UPDATE tasks SET notified_at = now() WHERE id = $1::uuid AND notified_at IS NULL")
        .bind(id.to_string())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Parses one `retry_queue` row selected as `id::text, title, enqueued_at`.
pub(crate) fn queued_task(row: &sqlx::postgres::PgRow) -> Result<TaskMessage, sqlx::Error> {
    let id: String = row.try_get("id")?;
    Ok(TaskMessage {
        id: Uuid::parse_str(&id).map_err(|error| sqlx::Error::Decode(Box::new(error)))?,
        title: row.try_get("title")?,
        created_at: row.try_get("enqueued_at")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_max_is_size_plus_overflow() {
        let settings = PoolSettings {
            size: 10,
            max_overflow: 20,
            acquire_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
        };
        assert_eq!(settings.max_connections(), 30);
        assert_eq!(
            PoolSettings {
                size: 0,
                max_overflow: 0,
                ..settings
            }
            .max_connections(),
            1
        );
    }

    #[test]
    fn schema_creates_both_tables_idempotently() {
        assert!(SCHEMA.contains("CREATE TABLE IF NOT EXISTS tasks"));
        assert!(SCHEMA.contains("CREATE TABLE IF NOT EXISTS retry_queue"));
        assert!(
            !SCHEMA.contains("DROP"),
            "the migration must never drop data"
        );
    }
}
