//! The PgBouncer source: the pool as the application sees it, read from the bouncer's admin
//! console (`SHOW POOLS`, `SHOW STATS`) every sample interval.
//!
//! The admin console speaks only the simple query protocol (it refuses prepared statements), so
//! every command goes through `sqlx::raw_sql`, and every value arrives as text: columns are read
//! by name (they differ between versions) and parsed as numbers. Exhaustion shows as clients
//! waiting (`cl_waiting`) while every server is active, and `maxwait` climbing.
//!
//! Keys, for a `[[pgbouncer]]` named `NAME`:
//! - `pgbouncer.NAME.{up,errors,probe_ms}`;
//! - totals over its pools: `pgbouncer.NAME.{cl_active,cl_waiting,sv_active,sv_idle,pools}`, and
//!   `pgbouncer.NAME.maxwait` (seconds, the worst pool) — the keys thresholds apply to;
//! - per pool: `pgbouncer.NAME.<db>.<user>.{cl_active,cl_waiting,sv_active,sv_idle,sv_used,maxwait}`;
//! - per database, per second: `pgbouncer.NAME.<db>.{xact_rate,query_rate,wait_rate}`
//!   (`wait_rate`: seconds clients spent waiting for a server, per second).

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{AssertSqlSafe, Column, ConnectOptions, Connection, Row};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::postgres::key_segment;
use super::spawn::{Reading, Reporter, Sampler, every, seconds};
use super::{SourceId, SourceStatus, SourceTx};
use crate::config::PgBouncerConfig;
use crate::redact::Redactor;

/// The admin console's pseudo-database; its own pool is not an application's.
pub const ADMIN_DATABASE: &str = "pgbouncer";

/// Per-pool fields from `SHOW POOLS` (plus `maxwait`, seconds with `maxwait_us`).
pub const POOL_FIELDS: [&str; 6] = [
    "cl_active",
    "cl_waiting",
    "sv_active",
    "sv_idle",
    "sv_used",
    "maxwait",
];
/// Per-database rates from `SHOW STATS`.
pub const RATE_FIELDS: [&str; 3] = ["xact_rate", "query_rate", "wait_rate"];
/// Per-bouncer keys.
pub const TOTAL_FIELDS: [&str; 9] = [
    "up",
    "errors",
    "probe_ms",
    "cl_active",
    "cl_waiting",
    "sv_active",
    "sv_idle",
    "maxwait",
    "pools",
];

/// Whether `rest` (the key after `pgbouncer.NAME.`) is a key this source produces.
pub fn known_key(rest: &[&str]) -> bool {
    match rest {
        [field] => TOTAL_FIELDS.contains(field),
        [_db, field] => RATE_FIELDS.contains(field),
        [_db, _user, field] => POOL_FIELDS.contains(field),
        _ => false,
    }
}

/// The source id of a bouncer: `pgbouncer.NAME`.
pub fn source_id(name: &str) -> SourceId {
    SourceId(format!("pgbouncer.{name}"))
}

/// One row of an admin console answer: column name → value as text (NULL as "").
pub type AdminRow = BTreeMap<String, String>;

/// Connection options for the admin console URL. `extra_float_digits`, which sqlx sends by
/// default, is left out: PgBouncer refuses startup parameters it does not track.
pub fn admin_options(url: &str) -> Result<PgConnectOptions, String> {
    PgConnectOptions::from_str(url)
        .map(|options| {
            options
                .extra_float_digits(None::<i8>)
                .disable_statement_logging()
        })
        .map_err(|e| format!("bad admin console URL: {e}"))
}

/// Runs one admin console command (simple protocol) and returns its rows by column name.
pub async fn admin_rows(
    connection: &mut PgConnection,
    command: &str,
) -> Result<Vec<AdminRow>, sqlx::Error> {
    let rows = sqlx::raw_sql(AssertSqlSafe(command.to_string()))
        .fetch_all(&mut *connection)
        .await?;
    rows.iter()
        .map(|row| {
            row.columns()
                .iter()
                .map(|column| {
                    // Text format: whatever the column's declared type, its bytes are the text.
                    let value: Option<String> = row.try_get_unchecked(column.ordinal())?;
                    Ok::<_, sqlx::Error>((column.name().to_string(), value.unwrap_or_default()))
                })
                .collect()
        })
        .collect()
}

/// A number from an admin row, 0 when the column is missing or not a number.
pub fn number(row: &AdminRow, column: &str) -> f64 {
    row.get(column)
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0)
}

/// A short reason for a failed admin console command or connect.
pub fn describe(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Database(db) => match db.code() {
            Some(code) => format!("{} ({code})", db.message()),
            None => db.message().to_string(),
        },
        sqlx::Error::Io(io) => io.to_string(),
        other => other.to_string(),
    }
}

/// Samples the bouncer every `interval` until `cancel` fires.
pub async fn run(
    config: PgBouncerConfig,
    interval: Duration,
    redactor: Redactor,
    tx: SourceTx,
    cancel: CancellationToken,
) {
    let mut reporter = Reporter::new(source_id(&config.name), tx, cancel.clone());
    if !reporter.status(SourceStatus::Connecting).await {
        return;
    }
    let mut sampler = BouncerSampler::new(config, redactor);
    every(interval, &mut reporter, cancel, &mut sampler).await;
    sampler.close().await;
}

/// Counters of one database at one instant (`SHOW STATS`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Counters {
    xacts: f64,
    queries: f64,
    wait_us: f64,
}

/// Turns `SHOW POOLS` rows into per-pool values and the bouncer's totals.
pub(crate) fn pool_values(name: &str, pools: &[AdminRow]) -> Vec<(String, f64)> {
    let mut totals: BTreeMap<&str, f64> = TOTAL_FIELDS[3..].iter().map(|f| (*f, 0.0)).collect();
    let mut out = Vec::new();
    for row in pools {
        let database = row.get("database").map(String::as_str).unwrap_or("");
        if database == ADMIN_DATABASE {
            continue;
        }
        let user = row.get("user").map(String::as_str).unwrap_or("");
        let prefix = format!(
            "pgbouncer.{name}.{}.{}",
            key_segment(database),
            key_segment(user)
        );
        *totals.entry("pools").or_default() += 1.0;
        for field in POOL_FIELDS {
            let value = if field == "maxwait" {
                number(row, "maxwait") + number(row, "maxwait_us") / 1e6
            } else {
                number(row, field)
            };
            out.push((format!("{prefix}.{field}"), value));
            match field {
                "maxwait" => {
                    let worst = totals.entry("maxwait").or_default();
                    *worst = worst.max(value);
                }
                "sv_used" => {}
                _ => *totals.entry(field).or_default() += value,
            }
        }
    }
    for (field, value) in totals {
        out.push((format!("pgbouncer.{name}.{field}"), value));
    }
    out
}

/// Reads `SHOW STATS` rows as counters by database.
pub(crate) fn counters(stats: &[AdminRow]) -> BTreeMap<String, Counters> {
    stats
        .iter()
        .filter_map(|row| {
            let database = row.get("database")?;
            (database != ADMIN_DATABASE).then(|| {
                (
                    key_segment(database),
                    Counters {
                        xacts: number(row, "total_xact_count"),
                        queries: number(row, "total_query_count"),
                        wait_us: number(row, "total_wait_time"),
                    },
                )
            })
        })
        .collect()
}

/// Per-second rates between two readings of the counters; a database whose counters went back
/// (the bouncer restarted) or that is new gets no rate this round.
pub(crate) fn rate_values(
    name: &str,
    before: &BTreeMap<String, Counters>,
    now: &BTreeMap<String, Counters>,
    elapsed: Duration,
) -> Vec<(String, f64)> {
    let secs = elapsed.as_secs_f64();
    if secs <= 0.0 {
        return Vec::new();
    }
    let mut out = Vec::new();
    for (db, c) in now {
        let Some(b) = before.get(db) else { continue };
        if c.xacts < b.xacts || c.queries < b.queries || c.wait_us < b.wait_us {
            continue;
        }
        out.push((
            format!("pgbouncer.{name}.{db}.xact_rate"),
            (c.xacts - b.xacts) / secs,
        ));
        out.push((
            format!("pgbouncer.{name}.{db}.query_rate"),
            (c.queries - b.queries) / secs,
        ));
        out.push((
            format!("pgbouncer.{name}.{db}.wait_rate"),
            (c.wait_us - b.wait_us) / 1e6 / secs,
        ));
    }
    out
}

struct BouncerSampler {
    config: PgBouncerConfig,
    timeout: Duration,
    redactor: Redactor,
    connection: Option<PgConnection>,
    errors: u64,
    previous: Option<(Instant, BTreeMap<String, Counters>)>,
    /// Pool keys reported last round, to zero the pools that vanish.
    reported: BTreeSet<String>,
}

impl Sampler for BouncerSampler {
    async fn read(&mut self) -> Reading {
        match self.sample().await {
            Ok(values) => Reading::Up {
                values,
                notes: Vec::new(),
            },
            Err(reason) => {
                self.errors += 1;
                self.connection = None;
                self.previous = None;
                let prefix = format!("pgbouncer.{}", self.config.name);
                Reading::Down {
                    reason: self.redactor.text(&reason).into_owned(),
                    values: vec![
                        (format!("{prefix}.up"), 0.0),
                        (format!("{prefix}.errors"), self.errors as f64),
                    ],
                }
            }
        }
    }
}

impl BouncerSampler {
    fn new(config: PgBouncerConfig, redactor: Redactor) -> Self {
        BouncerSampler {
            timeout: config.timeout.get(),
            config,
            redactor,
            connection: None,
            errors: 0,
            previous: None,
            reported: BTreeSet::new(),
        }
    }

    fn no_answer(&self, what: &str) -> String {
        format!(
            "{what}: no answer within {} (frozen, paused or partitioned?)",
            seconds(self.timeout)
        )
    }

    async fn command(&mut self, command: &str) -> Result<Vec<AdminRow>, String> {
        let connection = self.connection.as_mut().expect("connected");
        match tokio::time::timeout(self.timeout, admin_rows(connection, command)).await {
            Ok(Ok(rows)) => Ok(rows),
            Ok(Err(e)) => Err(format!("{command} failed: {}", explain(&e))),
            Err(_) => Err(self.no_answer(command)),
        }
    }

    async fn sample(&mut self) -> Result<Vec<(String, f64)>, String> {
        if self.connection.is_none() {
            let options = admin_options(&self.config.url)?;
            match tokio::time::timeout(self.timeout, options.connect()).await {
                Ok(Ok(connection)) => self.connection = Some(connection),
                Ok(Err(e)) => return Err(format!("cannot connect: {}", explain(&e))),
                Err(_) => return Err(self.no_answer("connect")),
            }
        }
        let started = Instant::now();
        let pools = self.command("SHOW POOLS").await?;
        let probe_ms = started.elapsed().as_secs_f64() * 1000.0;
        let stats = self.command("SHOW STATS").await?;
        let now = Instant::now();
        let name = self.config.name.clone();
        let mut values = pool_values(&name, &pools);
        // A pool that is gone (its last client left and the bouncer dropped it) reads 0 once.
        let present: BTreeSet<String> = values.iter().map(|(k, _)| k.clone()).collect();
        values.extend(
            self.reported
                .difference(&present)
                .map(|key| (key.clone(), 0.0)),
        );
        self.reported = present;
        let counters = counters(&stats);
        if let Some((at, before)) = &self.previous {
            values.extend(rate_values(&name, before, &counters, now - *at));
        }
        self.previous = Some((now, counters));
        values.push((format!("pgbouncer.{name}.up"), 1.0));
        values.push((format!("pgbouncer.{name}.errors"), self.errors as f64));
        values.push((format!("pgbouncer.{name}.probe_ms"), probe_ms));
        Ok(values)
    }

    async fn close(&mut self) {
        if let Some(connection) = self.connection.take() {
            let _ = tokio::time::timeout(self.timeout, connection.close()).await;
        }
    }
}

/// A failed connect or command, said plainly: what PgBouncer answered and what fixes it.
pub fn explain(error: &sqlx::Error) -> String {
    let text = describe(error);
    if text.contains("not allowed") || text.contains("admin console access") {
        format!(
            "{text}: the URL's user must be listed in the bouncer's stats_users (to read) or admin_users (to read and inject faults)"
        )
    } else if text.contains("no such database") {
        format!("{text}: the admin console URL must name the database \"pgbouncer\"")
    } else if text.contains("unsupported startup parameter") {
        format!("{text}: add it to ignore_startup_parameters in pgbouncer.ini")
    } else {
        crate::connect::describe(&text, crate::connect::POSTGRES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(pairs: &[(&str, &str)]) -> AdminRow {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn pools_become_keys_and_totals_and_the_admin_pool_is_left_out() {
        let pools = [
            row(&[
                ("database", "pgbouncer"),
                ("user", "pgbouncer"),
                ("cl_active", "1"),
            ]),
            row(&[
                ("database", "tasks"),
                ("user", "app"),
                ("cl_active", "10"),
                ("cl_waiting", "7"),
                ("sv_active", "10"),
                ("sv_idle", "0"),
                ("sv_used", "0"),
                ("maxwait", "3"),
                ("maxwait_us", "200000"),
                ("pool_mode", "transaction"),
            ]),
            row(&[
                ("database", "tasks"),
                ("user", "report.er"),
                ("cl_active", "1"),
                ("cl_waiting", "2"),
                ("sv_active", "1"),
                ("maxwait", "1"),
            ]),
        ];
        let values: BTreeMap<String, f64> = pool_values("main", &pools).into_iter().collect();
        assert_eq!(values["pgbouncer.main.tasks.app.cl_waiting"], 7.0);
        assert_eq!(values["pgbouncer.main.tasks.app.maxwait"], 3.2);
        assert_eq!(values["pgbouncer.main.tasks.report_er.cl_waiting"], 2.0);
        assert_eq!(values["pgbouncer.main.cl_waiting"], 9.0);
        assert_eq!(values["pgbouncer.main.sv_active"], 11.0);
        assert_eq!(values["pgbouncer.main.maxwait"], 3.2);
        assert_eq!(values["pgbouncer.main.pools"], 2.0);
        assert!(!values.keys().any(|k| k.contains(".pgbouncer.pgbouncer.")));
        for key in values.keys() {
            let parts: Vec<&str> = key.split('.').collect();
            assert!(known_key(&parts[2..]), "{key} is a known key");
        }
    }

    #[test]
    fn stats_become_per_second_rates_and_a_restart_gives_none() {
        let at = |xacts: &str, queries: &str, wait: &str| {
            counters(&[row(&[
                ("database", "tasks"),
                ("total_xact_count", xacts),
                ("total_query_count", queries),
                ("total_wait_time", wait),
            ])])
        };
        let values: BTreeMap<String, f64> = rate_values(
            "main",
            &at("100", "300", "0"),
            &at("150", "400", "2000000"),
            Duration::from_secs(2),
        )
        .into_iter()
        .collect();
        assert_eq!(values["pgbouncer.main.tasks.xact_rate"], 25.0);
        assert_eq!(values["pgbouncer.main.tasks.query_rate"], 50.0);
        assert_eq!(values["pgbouncer.main.tasks.wait_rate"], 1.0);
        assert!(
            rate_values(
                "main",
                &at("150", "400", "0"),
                &at("3", "4", "0"),
                Duration::from_secs(1)
            )
            .is_empty()
        );
    }
}
