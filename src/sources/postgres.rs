//! The PostgreSQL source: connection use by state and by application, against the limit ordinary
//! roles can use, plus operator-defined SQL gauges.
//!
//! It holds one dedicated connection (no pool, so it never takes more than one slot), named
//! `gameday-console` so drills can tell it apart. Every connect and query is bounded by
//! `postgres.timeout`, on the server (`statement_timeout`) and on the client (a frozen server
//! never answers, so only a client-side deadline notices it).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgRow};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, Row};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::spawn::{Reading, Reporter, Sampler, every, seconds};
use super::{SourceId, SourceStatus, SourceTx};
use crate::config::{GaugeConfig, PoolConfig, PostgresConfig};
use crate::redact::Redactor;

/// The `application_name` of the console's own connection.
pub const APPLICATION_NAME: &str = "gameday-console";

/// Extra client-side wait for a gauge beyond `statement_timeout`, so a slow gauge is cancelled
/// by the server (an error for that gauge) before the client gives up on the whole connection.
const SERVER_CANCEL_GRACE: Duration = Duration::from_millis(250);

/// Samples the server every `interval` until `cancel` fires.
pub async fn run(
    config: PostgresConfig,
    interval: Duration,
    redactor: Redactor,
    tx: SourceTx,
    cancel: CancellationToken,
) {
    let mut reporter = Reporter::new(SourceId::postgres(), tx, cancel.clone());
    if !reporter.status(SourceStatus::Connecting).await {
        return;
    }
    let mut sampler = PgSampler::new(config, redactor);
    every(interval, &mut reporter, cancel, &mut sampler).await;
    sampler.close().await;
}

/// One round trip for everything but the gauges. Rows are (kind, name, value). The console's own
/// connection counts in `used` (it takes a slot) but not in the per-state and per-app counts.
/// Without the privileges of `pg_read_all_stats` (e.g. via `pg_monitor`) PostgreSQL hides the
/// backend type and state of other roles' sessions, so the `privileged` row says whether the
/// counts can be trusted.
const SAMPLE_SQL: &str = "\
with backends as (
    select pid = pg_backend_pid() as is_console,
           coalesce(application_name, '') as app,
           coalesce(state, 'unknown') as state,
           wait_event_type
    from pg_stat_activity
    where backend_type = 'client backend'
), others as (
    select * from backends where not is_console
)
select 'used'::text as kind, ''::text as name, count(*)::float8 as value from backends
union all
select 'max', '', (current_setting('max_connections')::int
    - current_setting('superuser_reserved_connections')::int
    - coalesce(current_setting('reserved_connections', true)::int, 0))::float8
union all
select 'state', state, count(*)::float8 from others group by state
union all
select 'app', app, count(*)::float8 from others group by app
union all
select 'waiting', '', count(*)::float8 from others where wait_event_type = 'Lock'
union all
select 'privileged', '', pg_has_role('pg_read_all_stats', 'USAGE')::int::float8";

/// The states always reported, so their charts start at 0 rather than appearing late.
const COMMON_STATES: [&str; 3] = ["active", "idle", "idle_in_transaction"];

/// A name as one metric-key segment: `idle in transaction (aborted)` → `idle_in_transaction_aborted`.
/// Dots and spaces would split or break keys.
pub fn key_segment(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
            out.push(c);
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    let trimmed = out.trim_matches('_');
    if trimmed.is_empty() {
        "unnamed".to_string()
    } else {
        trimmed.to_string()
    }
}

/// Turns the sample rows into metric values.
pub(crate) fn values_from_rows(
    rows: &[(String, String, f64)],
    pools: &[PoolConfig],
) -> Vec<(String, f64)> {
    let mut used = 0.0;
    let mut max = 0.0;
    let mut waiting = 0.0;
    let mut states: BTreeMap<String, f64> =
        COMMON_STATES.iter().map(|s| (s.to_string(), 0.0)).collect();
    let mut apps: BTreeMap<String, f64> = pools
        .iter()
        .map(|p| (key_segment(&p.application_name), 0.0))
        .collect();
    for (kind, name, value) in rows {
        match kind.as_str() {
            "used" => used = *value,
            "max" => max = *value,
            "waiting" => waiting = *value,
            "state" => *states.entry(key_segment(name)).or_default() += value,
            "app" => *apps.entry(key_segment(name)).or_default() += value,
            _ => {}
        }
    }
    let mut out = vec![
        ("pg.up".to_string(), 1.0),
        ("pg.connections.used".to_string(), used),
        ("pg.connections.max".to_string(), max),
        (
            "pg.connections.utilization".to_string(),
            if max > 0.0 { used / max } else { 0.0 },
        ),
        ("pg.waiting".to_string(), waiting),
    ];
    for (state, count) in &states {
        out.push((format!("pg.connections.{state}"), *count));
    }
    for (app, count) in &apps {
        out.push((format!("pg.app.{app}.connections"), *count));
    }
    for pool in pools {
        let app = key_segment(&pool.application_name);
        let count = apps.get(&app).copied().unwrap_or(0.0);
        out.push((
            format!("pg.app.{app}.utilization"),
            count / f64::from(pool.capacity().max(1)),
        ));
    }
    out
}

/// An application (or state) whose last session ended has no row any more: report it as 0 once,
/// or the panel would keep showing its last count (a reverted fault's held connections).
/// Returns the keys reported now.
fn zero_vanished(previous: &BTreeSet<String>, values: &mut Vec<(String, f64)>) -> BTreeSet<String> {
    let present: BTreeSet<String> = values.iter().map(|(key, _)| key.clone()).collect();
    values.extend(previous.difference(&present).map(|key| (key.clone(), 0.0)));
    present
}

/// The query that reads one gauge: the operator's SQL as a scalar subquery cast to a number, so
/// `count(*)`, numerics and integers all arrive as float8, and a query returning several
/// columns fails with PostgreSQL's own clear message.
fn gauge_sql(gauge: &GaugeConfig) -> String {
    let sql = gauge.sql.trim().trim_end_matches(';').trim_end();
    format!("select ({sql})::float8")
}

/// What one round found, before it becomes a reading.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum PgOutcome {
    Up {
        values: Vec<(String, f64)>,
        /// Problems that leave the server up: one per gauge that failed ("gauge <name>: <error>"),
        /// missing privileges.
        notes: Vec<String>,
    },
    Down(String),
}

impl Sampler for PgSampler {
    async fn read(&mut self) -> Reading {
        self.round().await
    }
}

struct PgSampler {
    config: PostgresConfig,
    timeout: Duration,
    redactor: Redactor,
    connection: Option<PgConnection>,
    /// (gauge name, query) in config order. The SQL is the operator's own, from the config file.
    gauges: Vec<(String, Arc<str>)>,
    /// Failed connects (including "too many clients", 53300), failed samples, and timeouts
    /// (gauges cancelled by `statement_timeout` included).
    errors: u64,
    /// The keys the last sample query reported, to zero the ones that vanish.
    reported: BTreeSet<String>,
}

impl PgSampler {
    fn new(config: PostgresConfig, redactor: Redactor) -> Self {
        PgSampler {
            timeout: config.timeout.get(),
            gauges: config
                .gauges
                .iter()
                .map(|g| (g.name.clone(), Arc::from(gauge_sql(g))))
                .collect(),
            config,
            redactor,
            connection: None,
            errors: 0,
            reported: BTreeSet::new(),
        }
    }

    fn no_answer(&self, what: &str) -> String {
        format!(
            "{what}: no answer within {} (frozen or partitioned?)",
            seconds(self.timeout)
        )
    }

    fn connect_options(&self) -> Result<PgConnectOptions, String> {
        let options = crate::connect::postgres::options(&self.config, &self.config.url)?;
        Ok(options
            .application_name(APPLICATION_NAME)
            .options([("statement_timeout", self.timeout.as_millis())])
            .disable_statement_logging())
    }

    async fn connect(&mut self) -> Result<(), String> {
        if self.connection.is_some() {
            return Ok(());
        }
        let options = self.connect_options()?;
        match tokio::time::timeout(self.timeout, options.connect()).await {
            Ok(Ok(connection)) => {
                self.connection = Some(connection);
                Ok(())
            }
            Ok(Err(e)) => {
                self.errors += 1;
                Err(format!(
                    "cannot connect: {}",
                    crate::connect::describe(&describe(&e), crate::connect::POSTGRES)
                ))
            }
            Err(_) => {
                self.errors += 1;
                Err(self.no_answer("connect"))
            }
        }
    }

    /// One round: connect if needed, the sample query, then each gauge.
    pub(crate) async fn sample(&mut self) -> PgOutcome {
        if let Err(reason) = self.connect().await {
            return PgOutcome::Down(reason);
        }
        let connection = self.connection.as_mut().expect("connected above");
        let started = Instant::now();
        let rows = tokio::time::timeout(
            self.timeout,
            sqlx::query(SAMPLE_SQL).fetch_all(&mut *connection),
        )
        .await;
        let probe_ms = started.elapsed().as_secs_f64() * 1000.0;
        let rows = match rows {
            Ok(Ok(rows)) => rows,
            Ok(Err(e)) => {
                return self.lose_connection(format!("sample query failed: {}", describe(&e)));
            }
            Err(_) => return self.lose_connection(self.no_answer("sample query")),
        };
        let rows: Vec<(String, String, f64)> = match rows.iter().map(decode_row).collect() {
            Ok(rows) => rows,
            Err(e) => return self.lose_connection(format!("sample query: {}", describe(&e))),
        };
        let mut values = values_from_rows(&rows, &self.config.pools);
        self.reported = zero_vanished(&self.reported, &mut values);
        values.push(("pg.probe_ms".into(), probe_ms));
        let mut notes = Vec::new();
        if rows
            .iter()
            .any(|(kind, _, v)| kind == "privileged" && *v == 0.0)
        {
            notes.push(
                "the console's role cannot see other roles' sessions; grant it pg_monitor".into(),
            );
        }

        for (name, sql) in &self.gauges {
            let connection = self.connection.as_mut().expect("still connected");
            let answer = tokio::time::timeout(
                self.timeout + SERVER_CANCEL_GRACE,
                sqlx::query_scalar::<_, Option<f64>>(AssertSqlSafe(sql.clone()))
                    .fetch_one(&mut *connection),
            )
            .await;
            match answer {
                Ok(Ok(Some(value))) => values.push((format!("pg.gauge.{name}"), value)),
                Ok(Ok(None)) => notes.push(format!("gauge {name}: returned no value")),
                Ok(Err(e)) if is_connection_error(&e) => {
                    let reason = format!("gauge {name}: {}", describe(&e));
                    return self.lose_connection(reason);
                }
                Ok(Err(e)) => {
                    if is_timeout(&e) {
                        self.errors += 1;
                    }
                    notes.push(format!("gauge {name}: {}", describe(&e)));
                }
                Err(_) => {
                    let reason = self.no_answer(&format!("gauge {name}"));
                    return self.lose_connection(reason);
                }
            }
        }
        values.push(("pg.errors".into(), self.errors as f64));
        PgOutcome::Up { values, notes }
    }

    /// After a failure mid-conversation the connection's state is unknown: drop it and reconnect
    /// next round.
    fn lose_connection(&mut self, reason: String) -> PgOutcome {
        self.errors += 1;
        self.connection = None;
        PgOutcome::Down(reason)
    }

    async fn round(&mut self) -> Reading {
        match self.sample().await {
            PgOutcome::Up { values, notes } => Reading::Up {
                values,
                notes: notes
                    .iter()
                    .map(|n| self.redactor.text(n).into_owned())
                    .collect(),
            },
            PgOutcome::Down(reason) => Reading::Down {
                reason: self.redactor.text(&reason).into_owned(),
                values: vec![
                    ("pg.up".into(), 0.0),
                    ("pg.errors".into(), self.errors as f64),
                ],
            },
        }
    }

    async fn close(&mut self) {
        if let Some(connection) = self.connection.take() {
            // Say goodbye so the server frees the slot at once; a frozen server gets no wait.
            let _ = tokio::time::timeout(self.timeout, connection.close()).await;
        }
    }
}

fn decode_row(row: &PgRow) -> Result<(String, String, f64), sqlx::Error> {
    Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?))
}

/// Errors after which the connection cannot be trusted (as opposed to one query's error).
fn is_connection_error(error: &sqlx::Error) -> bool {
    matches!(
        error,
        sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
    ) || matches!(error, sqlx::Error::Database(db) if db.code().is_some_and(|c| c.starts_with("57P") || c.starts_with("08")))
}

/// The server cancelled the statement (`statement_timeout`).
fn is_timeout(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.code().as_deref() == Some("57014"))
}

/// A short reason: the server's message with its SQLSTATE, or the I/O error.
fn describe(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Database(db) => match db.code() {
            Some(code) => format!("{} ({code})", db.message()),
            None => db.message().to_string(),
        },
        sqlx::Error::Io(io) => io.to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::services::testing::test_dir;
    use crate::services::{PgCluster, PgOptions};
    use crate::sources::spawn::testing::Running;
    use crate::toml_input::Dur;

    /// The claim under test: down within 3 s of a stop or a freeze.
    const DOWN_WITHIN: Duration = Duration::from_secs(3);
    const WITHIN: Duration = Duration::from_secs(20);

    /// A server with `max_connections=40` and an ordinary role `console` (in `pg_monitor`) for
    /// the source; returns the cluster and the console's URL.
    async fn start_cluster(name: &str) -> (PgCluster, String) {
        let mut options = PgOptions::new(test_dir(name));
        options.max_connections = 40;
        let cluster = PgCluster::start(options).await.expect("start postgres");
        cluster.create_role("console", "s3cret").await.unwrap();
        superuser_execute(&cluster, "grant pg_monitor to console").await;
        let url = cluster.url_for("console", "s3cret", "postgres");
        (cluster, url)
    }

    async fn superuser_execute(cluster: &PgCluster, sql: &'static str) {
        let mut connection = cluster
            .superuser_options("postgres")
            .connect()
            .await
            .unwrap();
        sqlx::raw_sql(sql).execute(&mut connection).await.unwrap();
        connection.close().await.unwrap();
    }

    async fn superuser_scalar(cluster: &PgCluster, sql: &'static str) -> i64 {
        let mut connection = cluster
            .superuser_options("postgres")
            .connect()
            .await
            .unwrap();
        let value = sqlx::query_scalar(sql)
            .fetch_one(&mut connection)
            .await
            .unwrap();
        connection.close().await.unwrap();
        value
    }

    /// `count` sessions named `application_name`, held until dropped.
    async fn hold(
        options: PgConnectOptions,
        application_name: &str,
        count: usize,
    ) -> Vec<PgConnection> {
        let options = options.application_name(application_name);
        let mut held = Vec::new();
        for _ in 0..count {
            held.push(options.connect().await.unwrap());
        }
        held
    }

    fn config(url: String) -> PostgresConfig {
        PostgresConfig {
            url,
            admin_url: None,
            sslmode: None,
            sslrootcert: None,
            sslcert: None,
            sslkey: None,
            passfile: None,
            timeout: Dur::from_millis(1500),
            warn: 0.8,
            crit: 0.95,
            pools: vec![pool("drill", 10, 10)],
            gauges: vec![],
        }
    }

    fn start_source(config: PostgresConfig, interval: Duration) -> Running {
        Running::spawn(|tx, cancel| run(config, interval, Redactor::default(), tx, cancel))
    }

    #[tokio::test]
    async fn a_pool_holding_its_capacity_reads_full_utilization() {
        let (cluster, url) = start_cluster("pg-app").await;
        let drill = hold(cluster.superuser_options("postgres"), "drill", 20).await;
        let mut source = start_source(config(url), Duration::from_millis(200));
        source
            .watch
            .until(WITHIN, "20 drill connections", |w| {
                w.value("pg.app.drill.connections") == Some(20.0)
            })
            .await;
        let w = &source.watch;
        assert_eq!(
            w.statuses,
            vec![SourceStatus::Connecting, SourceStatus::Up],
            "a healthy server is never reported down"
        );
        assert_eq!(w.value("pg.up"), Some(1.0));
        assert_eq!(w.value("pg.app.drill.utilization"), Some(1.0));
        let usable = superuser_scalar(
            &cluster,
            "select (current_setting('max_connections')::int \
             - current_setting('superuser_reserved_connections')::int)::int8",
        )
        .await;
        assert_eq!(usable, 37);
        assert_eq!(w.value("pg.connections.max"), Some(usable as f64));
        let used = w.value("pg.connections.used").unwrap();
        assert!(used >= 21.0, "20 drill sessions and the console: {used}");
        assert_eq!(
            w.value("pg.connections.utilization"),
            Some(used / usable as f64)
        );
        assert!(w.value("pg.connections.idle").unwrap() >= 20.0);
        assert!(w.value("pg.probe_ms").is_some());
        assert_eq!(w.value("pg.errors"), Some(0.0));
        assert_eq!(
            w.value("pg.app.gameday-console.connections"),
            None,
            "the console's own session is not counted as an app"
        );
        let console_sessions = superuser_scalar(
            &cluster,
            "select count(*) from pg_stat_activity where application_name = 'gameday-console'",
        )
        .await;
        assert_eq!(console_sessions, 1, "one dedicated connection, named");

        drop(drill);
        source
            .watch
            .until(WITHIN, "the drill sessions gone", |w| {
                w.value("pg.app.drill.connections") == Some(0.0)
                    && w.value("pg.app.drill.utilization") == Some(0.0)
            })
            .await;
        source.stop().await;
    }

    #[tokio::test]
    async fn each_gauge_reports_its_value_or_its_own_error() {
        let (cluster, url) = start_cluster("pg-gauges").await;
        superuser_execute(
            &cluster,
            "create table retry_queue (id int); insert into retry_queue values (1), (2), (3); \
             grant select on retry_queue to console",
        )
        .await;
        let mut config = config(url);
        config.gauges = vec![
            GaugeConfig {
                name: "retry_queue".into(),
                sql: "select count(*) from retry_queue".into(),
                warn: None,
                crit: None,
            },
            GaugeConfig {
                name: "broken".into(),
                sql: "select count(*) from no_such_table".into(),
                warn: None,
                crit: None,
            },
        ];
        let mut sampler = PgSampler::new(config, Redactor::default());
        for round in 0..2 {
            let PgOutcome::Up { values, notes } = sampler.sample().await else {
                panic!("a broken gauge does not make the server down");
            };
            let values: BTreeMap<String, f64> = values.into_iter().collect();
            assert_eq!(
                values.get("pg.gauge.retry_queue"),
                Some(&3.0),
                "round {round}"
            );
            assert_eq!(values.get("pg.gauge.broken"), None);
            assert_eq!(values.get("pg.up"), Some(&1.0));
            assert_eq!(
                notes,
                vec![r#"gauge broken: relation "no_such_table" does not exist (42P01)"#]
            );
        }
        sampler.close().await;
    }

    #[tokio::test]
    async fn a_slow_gauge_is_cancelled_by_the_timeout_without_marking_the_server_down() {
        let (_cluster, url) = start_cluster("pg-slow-gauge").await;
        let mut config = config(url);
        config.gauges = vec![GaugeConfig {
            name: "slow".into(),
            sql: "select 1 from pg_sleep(10)".into(),
            warn: None,
            crit: None,
        }];
        let mut sampler = PgSampler::new(config, Redactor::default());
        let started = Instant::now();
        let PgOutcome::Up { values, notes } = sampler.sample().await else {
            panic!("a slow gauge does not make the server down");
        };
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(5),
            "the gauge was bounded: {took:?}"
        );
        assert_eq!(
            notes,
            vec!["gauge slow: canceling statement due to statement timeout (57014)"]
        );
        let values: BTreeMap<String, f64> = values.into_iter().collect();
        assert_eq!(values.get("pg.gauge.slow"), None);
        assert_eq!(
            values.get("pg.errors"),
            Some(&1.0),
            "the timeout is counted"
        );
        sampler.close().await;
    }

    #[tokio::test]
    async fn a_role_that_cannot_see_other_sessions_is_told_so() {
        let (cluster, _) = start_cluster("pg-unprivileged").await;
        cluster.create_role("plain", "plain").await.unwrap();
        let url = cluster.url_for("plain", "plain", "postgres");
        let mut sampler = PgSampler::new(config(url), Redactor::default());
        let PgOutcome::Up { notes, .. } = sampler.sample().await else {
            panic!("missing privileges do not make the server down");
        };
        assert_eq!(
            notes,
            vec!["the console's role cannot see other roles' sessions; grant it pg_monitor"]
        );
        sampler.close().await;
    }

    #[tokio::test]
    async fn too_many_clients_is_down_with_the_reason_and_counted() {
        let (cluster, url) = start_cluster("pg-full").await;
        cluster.create_role("hog", "hog").await.unwrap();
        let hog_options =
            std::str::FromStr::from_str(&cluster.url_for("hog", "hog", "postgres")).unwrap();
        // Every slot an ordinary role may use.
        let hogs = hold(hog_options, "hog", 37).await;
        let mut source = start_source(config(url), Duration::from_millis(200));
        source
            .watch
            .until(WITHIN, "down, two failed connects", |w| {
                w.down_reason().is_some() && w.value("pg.errors") >= Some(2.0)
            })
            .await;
        let reason = source.watch.down_reason().unwrap();
        assert!(
            reason.starts_with("cannot connect:") && reason.ends_with("(53300)"),
            "{reason}"
        );
        assert_eq!(source.watch.value("pg.up"), Some(0.0));

        drop(hogs);
        source
            .watch
            .until(WITHIN, "up once slots are free", |w| w.is_up())
            .await;
        source.stop().await;
    }

    #[tokio::test]
    async fn a_stopped_server_is_down_within_3s_and_up_after_start() {
        let (mut cluster, url) = start_cluster("pg-stop").await;
        let mut source = start_source(config(url), Duration::from_secs(1));
        source.watch.until(WITHIN, "up", |w| w.is_up()).await;

        let stopped = Instant::now();
        cluster.stop().await.unwrap();
        source
            .watch
            .until(WITHIN, "down after stop", |w| {
                w.down_reason().is_some() && w.value("pg.up") == Some(0.0)
            })
            .await;
        let time_to_down = stopped.elapsed();
        eprintln!(
            "pg stop: down after {time_to_down:?}: {}",
            source.watch.down_reason().unwrap()
        );
        assert!(time_to_down < DOWN_WITHIN, "down after {time_to_down:?}");

        cluster.start_again().await.unwrap();
        let started = Instant::now();
        source
            .watch
            .until(WITHIN, "up after start", |w| {
                w.is_up() && w.value("pg.up") == Some(1.0)
            })
            .await;
        eprintln!("pg start again: up after {:?}", started.elapsed());
        source.stop().await;
    }

    #[tokio::test]
    async fn a_frozen_server_is_down_within_3s_and_up_after_thaw() {
        let (cluster, url) = start_cluster("pg-freeze").await;
        let mut source = start_source(config(url), Duration::from_secs(1));
        source.watch.until(WITHIN, "up", |w| w.is_up()).await;

        let frozen = Instant::now();
        cluster.freeze().unwrap();
        source
            .watch
            .until(WITHIN, "down while frozen", |w| w.down_reason().is_some())
            .await;
        let time_to_down = frozen.elapsed();
        let reason = source.watch.down_reason().unwrap().to_string();
        eprintln!("pg freeze: down after {time_to_down:?}: {reason}");
        assert!(time_to_down < DOWN_WITHIN, "down after {time_to_down:?}");
        assert!(
            reason.ends_with("no answer within 1.5s (frozen or partitioned?)"),
            "{reason}"
        );

        cluster.thaw().unwrap();
        let thawed = Instant::now();
        source
            .watch
            .until(WITHIN, "up after thaw", |w| w.is_up())
            .await;
        eprintln!("pg thaw: up after {:?}", thawed.elapsed());
        source.stop().await;
    }

    fn pool(name: &str, size: u32, max_overflow: u32) -> PoolConfig {
        PoolConfig {
            application_name: name.into(),
            size,
            max_overflow,
            warn: 0.8,
            crit: 1.0,
        }
    }

    fn row(kind: &str, name: &str, value: f64) -> (String, String, f64) {
        (kind.into(), name.into(), value)
    }

    #[test]
    fn state_and_app_names_become_plain_key_segments() {
        assert_eq!(key_segment("idle in transaction"), "idle_in_transaction");
        assert_eq!(
            key_segment("idle in transaction (aborted)"),
            "idle_in_transaction_aborted"
        );
        assert_eq!(key_segment("task-tracker"), "task-tracker");
        assert_eq!(key_segment("my.app v2"), "my_app_v2");
        assert_eq!(key_segment(""), "unnamed");
    }

    #[test]
    fn rows_become_connection_keys_with_pool_utilization() {
        let rows = [
            row("used", "", 21.0),
            row("max", "", 37.0),
            row("state", "idle", 18.0),
            row("state", "idle in transaction", 2.0),
            row("app", "drill", 20.0),
            row("app", "", 1.0),
            row("waiting", "", 3.0),
        ];
        let pools = [pool("drill", 10, 10), pool("task-tracker", 10, 20)];
        let values: BTreeMap<String, f64> = values_from_rows(&rows, &pools).into_iter().collect();
        assert_eq!(values["pg.up"], 1.0);
        assert_eq!(values["pg.connections.used"], 21.0);
        assert_eq!(values["pg.connections.max"], 37.0);
        assert_eq!(values["pg.connections.utilization"], 21.0 / 37.0);
        assert_eq!(values["pg.connections.idle"], 18.0);
        assert_eq!(values["pg.connections.idle_in_transaction"], 2.0);
        assert_eq!(
            values["pg.connections.active"], 0.0,
            "common states start at 0"
        );
        assert_eq!(values["pg.app.drill.connections"], 20.0);
        assert_eq!(values["pg.app.unnamed.connections"], 1.0);
        assert_eq!(values["pg.app.drill.utilization"], 1.0);
        assert_eq!(
            values["pg.app.task-tracker.connections"], 0.0,
            "configured pools are always reported"
        );
        assert_eq!(values["pg.app.task-tracker.utilization"], 0.0);
        assert_eq!(values["pg.waiting"], 3.0);
    }

    #[test]
    fn an_application_whose_sessions_ended_reads_zero_once() {
        let pools = [pool("task-tracker", 10, 20)];
        let rows = [
            row("app", "gameday-fault", 11.0),
            row("app", "task-tracker", 1.0),
        ];
        let mut first = values_from_rows(&rows, &pools);
        let reported = zero_vanished(&BTreeSet::new(), &mut first);
        let rows = [row("app", "task-tracker", 1.0)];
        let mut second = values_from_rows(&rows, &pools);
        let reported = zero_vanished(&reported, &mut second);
        let second: BTreeMap<String, f64> = second.into_iter().collect();
        assert_eq!(second["pg.app.gameday-fault.connections"], 0.0);
        assert_eq!(second["pg.app.task-tracker.connections"], 1.0);
        let mut third = values_from_rows(&rows, &pools);
        zero_vanished(&reported, &mut third);
        assert!(
            !third.iter().any(|(k, _)| k.contains("gameday-fault")),
            "reported once"
        );
    }

    #[test]
    fn gauge_sql_is_wrapped_as_a_number() {
        let gauge = GaugeConfig {
            name: "retry_queue".into(),
            sql: "select count(*) from retry_queue;\n".into(),
            warn: None,
            crit: None,
        };
        assert_eq!(
            gauge_sql(&gauge),
            "select (select count(*) from retry_queue)::float8"
        );
    }
}
