//! PostgreSQL faults: hold connections until the server runs out (`pg_exhaust`), hold a table
//! lock (`pg_lock`), end every session of an application (`pg_terminate`).
//!
//! They connect with `postgres.admin_url` (or `postgres.url`); the credentials come from the config
//! at run time, never from the spec. Held sessions carry the fault's `application_name`, so a
//! revert can verify in `pg_stat_activity` that none is left, and a fresh instance (a killed
//! console's fault, from the ledger) reverts by terminating that application's sessions.
//! Sessions that another live fault of this console holds are never terminated by a revert,
//! even when both faults use the same `application_name`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection};
use tokio::time::Instant;

use super::spec::HoldState;
use super::touched::Touched;
use super::{Description, Fault, FaultContext, FaultError};
use crate::config::Config;

/// The `application_name` of the short-lived connections faults use to look and terminate.
pub const ADMIN_APPLICATION_NAME: &str = "gameday-admin";
/// SQLSTATE `too_many_connections`.
const TOO_MANY_CONNECTIONS: &str = "53300";
/// SQLSTATE `lock_not_available` (lock_timeout expired).
const LOCK_NOT_AVAILABLE: &str = "55P03";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Connections `pg_exhaust` opens at once.
const PARALLEL_CONNECTS: usize = 8;
/// How long `pg_lock` waits for a lock another session holds (inside the inject deadline).
const LOCK_WAIT: Duration = Duration::from_secs(10);
/// How long `pg_exhaust` keeps ending the evicted application's sessions.
const EVICT_WAIT: Duration = Duration::from_secs(5);
/// How long it tries to take the slots of the sessions it just ended.
const SLOT_GRAB: Duration = Duration::from_millis(300);
/// How long a revert waits for terminated sessions to leave `pg_stat_activity`.
const CLEAR_WAIT: Duration = Duration::from_secs(3);
/// How long closing one held connection may take before it is simply dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
const POLL: Duration = Duration::from_millis(25);

/// Backends held by live faults of this process: (server, backend pid) → fault id.
static HELD_BACKENDS: Mutex<BTreeMap<(String, i32), String>> = Mutex::new(BTreeMap::new());

fn register(server: &str, pid: i32, fault_id: &str) {
    held_backends().insert((server.to_string(), pid), fault_id.to_string());
}

fn unregister(server: &str, pid: i32) {
    held_backends().remove(&(server.to_string(), pid));
}

/// Backend pids on `server` that live faults other than `fault_id` hold.
fn held_by_others(server: &str, fault_id: &str) -> BTreeSet<i32> {
    held_backends()
        .iter()
        .filter(|((s, _), id)| s == server && id.as_str() != fault_id)
        .map(|((_, pid), _)| *pid)
        .collect()
}

/// Backend pids on `server` that any live fault holds.
fn held_by_faults(server: &str) -> BTreeSet<i32> {
    held_backends()
        .keys()
        .filter(|(s, _)| s == server)
        .map(|(_, pid)| *pid)
        .collect()
}

fn held_backends() -> std::sync::MutexGuard<'static, BTreeMap<(String, i32), String>> {
    // A panic elsewhere cannot leave the map half-updated: every change is one insert/remove.
    HELD_BACKENDS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A connection a fault holds on purpose, with its backend pid.
struct Held {
    connection: PgConnection,
    pid: i32,
}

/// Where faults connect: the options (without an application name) and `host:port` for messages.
struct Target {
    options: PgConnectOptions,
    server: String,
}

impl Target {
    fn from_config(config: &Config) -> Result<Target, FaultError> {
        let Some(pg) = &config.postgres else {
            return Err(FaultError::Unavailable(
                "the config has no [postgres] section".into(),
            ));
        };
        let url = pg.admin_url.as_deref().unwrap_or(&pg.url);
        let options = crate::connect::postgres::options(pg, url)
            .map_err(|e| FaultError::Failed(redacted(config, &e)))?;
        let server = format!("{}:{}", options.get_host(), options.get_port());
        Ok(Target {
            options: options.disable_statement_logging(),
            server,
        })
    }

    async fn connect(
        &self,
        config: &Config,
        application_name: &str,
    ) -> Result<PgConnection, sqlx::Error> {
        let options = self.options.clone().application_name(application_name);
        match tokio::time::timeout(CONNECT_TIMEOUT, options.connect()).await {
            Ok(result) => result,
            Err(_) => Err(sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "{} did not answer within {}",
                    redacted(config, &self.server),
                    super::fmt_duration(CONNECT_TIMEOUT)
                ),
            ))),
        }
    }

    /// A connection for looking and terminating. A full server is tried again until the
    /// connect timeout: right after a revert closed its sessions, their backends may not have
    /// exited yet.
    async fn admin(&self, config: &Config) -> Result<PgConnection, FaultError> {
        let deadline = Instant::now() + CONNECT_TIMEOUT;
        loop {
            match self.connect(config, ADMIN_APPLICATION_NAME).await {
                Ok(connection) => return Ok(connection),
                Err(e)
                    if sqlstate(&e).as_deref() == Some(TOO_MANY_CONNECTIONS)
                        && Instant::now() < deadline =>
                {
                    tokio::time::sleep(POLL).await;
                }
                Err(e) => {
                    return Err(failed(
                        config,
                        &format!("cannot connect to {}", self.server),
                        &e,
                    ));
                }
            }
        }
    }
}

/// `PostgreSQL 127.0.0.1:5432` for blast radii.
fn server_label(config: &Config) -> String {
    match Target::from_config(config) {
        Ok(target) => format!("PostgreSQL {}", target.server),
        Err(_) => "PostgreSQL".to_string(),
    }
}

fn redacted(config: &Config, text: &str) -> String {
    config.redactor().text(text).into_owned()
}

/// The server's message and SQLSTATE, or the client's error.
fn reason(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Database(db) => match db.code() {
            Some(code) => format!("{} ({code})", db.message()),
            None => db.message().to_string(),
        },
        other => other.to_string(),
    }
}

fn failed(config: &Config, what: &str, error: &sqlx::Error) -> FaultError {
    let why = crate::connect::describe(&reason(error), crate::connect::POSTGRES);
    FaultError::Failed(redacted(config, &format!("{what}: {why}")))
}

fn sqlstate(error: &sqlx::Error) -> Option<String> {
    error
        .as_database_error()
        .and_then(|db| db.code())
        .map(|c| c.into_owned())
}

async fn close_all(target: &Target, held: Vec<Held>) {
    let closing = held.into_iter().map(|h| async move {
        unregister(&target.server, h.pid);
        // The server ends the session (and rolls back its transaction) when the socket closes,
        // also when the polite close does not finish in time.
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, h.connection.close()).await;
    });
    futures::future::join_all(closing).await;
}

/// Terminates every session of `application_name` except those other live faults hold, and
/// waits until `pg_stat_activity` shows none. Returns how many were terminated.
async fn clear_sessions(
    config: &Config,
    target: &Target,
    application_name: &str,
    fault_id: &str,
    only: Option<&BTreeSet<i32>>,
) -> Result<usize, FaultError> {
    let mut admin = target.admin(config).await?;
    let deadline = Instant::now() + CLEAR_WAIT;
    let mut terminated = BTreeSet::new();
    let result = loop {
        let keep = held_by_others(&target.server, fault_id);
        let left = match sessions_of(&mut admin, application_name, &keep).await {
            // Known backends: those and no other session (another console's fault may use the
            // same application_name).
            Ok(left) => left
                .into_iter()
                .filter(|pid| only.is_none_or(|only| only.contains(pid)))
                .collect::<Vec<_>>(),
            Err(e) => break Err(failed(config, "cannot read pg_stat_activity", &e)),
        };
        if left.is_empty() {
            break Ok(terminated.len());
        }
        if Instant::now() >= deadline {
            let pids: Vec<String> = left.iter().map(i32::to_string).collect();
            break Err(FaultError::Failed(format!(
                "{} sessions of {application_name} still in pg_stat_activity after {}: pid {}",
                left.len(),
                super::fmt_duration(CLEAR_WAIT),
                pids.join(", ")
            )));
        }
        for pid in left {
            if terminated.contains(&pid) {
                continue;
            }
            if let Err(e) = terminate(&mut admin, pid).await {
                let what = format!("cannot terminate {application_name} session {pid}");
                return Err(failed(config, &what, &e));
            }
            terminated.insert(pid);
        }
        tokio::time::sleep(POLL).await;
    };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, admin.close()).await;
    result
}

/// Backend pids of `application_name`, not ours (this connection) and not in `keep`.
async fn sessions_of(
    admin: &mut PgConnection,
    application_name: &str,
    keep: &BTreeSet<i32>,
) -> Result<Vec<i32>, sqlx::Error> {
    let pids: Vec<i32> = sqlx::query_scalar(
        "select pid from pg_stat_activity \
         where application_name = $1 and pid <> pg_backend_pid() order by pid",
    )
    .bind(application_name)
    .fetch_all(admin)
    .await?;
    Ok(pids.into_iter().filter(|pid| !keep.contains(pid)).collect())
}

/// `pg_terminate_backend`; false when the session had already ended.
async fn terminate(admin: &mut PgConnection, pid: i32) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("select coalesce(pg_terminate_backend($1), false)")
        .bind(pid)
        .fetch_one(admin)
        .await
}

async fn backend_pid(connection: &mut PgConnection) -> Result<i32, sqlx::Error> {
    sqlx::query_scalar("select pg_backend_pid()")
        .fetch_one(connection)
        .await
}

/// The server ends a held session by itself this long after the fault's lease, should every
/// revert fail to (a console and its dead-man agent both gone, a laptop asleep).
const SERVER_LIMIT_MARGIN: Duration = Duration::from_secs(5);

/// Server-side limits on a held session, a second line behind every revert: an idle (or idle in
/// transaction) session ends by itself once the lease is over. `idle_session_timeout` needs
/// PostgreSQL 14; older servers keep the first.
async fn limit_session(connection: &mut PgConnection, lease: Option<Duration>) {
    let Some(lease) = lease else {
        return;
    };
    let ms = (lease + SERVER_LIMIT_MARGIN).as_millis();
    for setting in [
        "idle_in_transaction_session_timeout",
        "idle_session_timeout",
    ] {
        let sql = format!("SET {setting} = {ms}");
        if let Err(e) = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut *connection)
            .await
        {
            tracing::debug!("cannot set {setting}: {e}");
        }
    }
}

/// Opens one connection as `application_name`, in the requested state.
async fn open_held(
    config: &Config,
    target: &Target,
    application_name: &str,
    state: HoldState,
    lease: Option<Duration>,
) -> Result<Held, sqlx::Error> {
    let mut connection = target.connect(config, application_name).await?;
    let pid = backend_pid(&mut connection).await?;
    limit_session(&mut connection, lease).await;
    if state == HoldState::IdleInTransaction {
        sqlx::raw_sql("BEGIN").execute(&mut connection).await?;
    }
    Ok(Held { connection, pid })
}

/// What a fault that holds sessions knows besides them: its lease (for the server-side limits),
/// the server it connected to, and the backends the ledger says an inject opened.
#[derive(Debug, Default)]
struct Holding {
    lease: Option<Duration>,
    server: Option<String>,
    recorded: Option<BTreeSet<i32>>,
}

impl Holding {
    fn touched(&self, pids: impl Iterator<Item = i32>) -> Option<Touched> {
        let pids: Vec<i32> = pids.collect();
        (!pids.is_empty()).then(|| Touched::Backends {
            server: self.server.clone().unwrap_or_default(),
            pids,
        })
    }

    fn restore(&mut self, touched: &Touched) {
        if let Touched::Backends { pids, .. } = touched {
            self.recorded = Some(pids.iter().copied().collect());
        }
    }
}

fn state_label(state: HoldState) -> &'static str {
    match state {
        HoldState::Idle => "idle",
        HoldState::IdleInTransaction => "idle in transaction",
    }
}

/// `pg_exhaust`: open and hold `connections` connections until reverted.
pub struct PgExhaust {
    id: String,
    connections: u32,
    state: HoldState,
    application_name: String,
    /// An application whose sessions are ended so their slots can be taken too.
    evict: Option<String>,
    /// Sessions of `evict` ended by the inject.
    evicted: usize,
    held: Vec<Held>,
    /// What the inject achieved, for describe.
    outcome: Option<ExhaustOutcome>,
    holding: Holding,
}

struct ExhaustOutcome {
    held: usize,
    /// The server's refusal once it was full.
    refused: Option<String>,
}

impl PgExhaust {
    pub fn new(id: &str, connections: u32, state: HoldState, application_name: &str) -> Self {
        PgExhaust {
            id: id.to_string(),
            connections,
            state,
            application_name: application_name.to_string(),
            evict: None,
            evicted: 0,
            held: Vec::new(),
            outcome: None,
            holding: Holding::default(),
        }
    }

    /// Also end every session of `application` and take their slots: its pool must then
    /// reconnect into a full server, which is how pool timeouts surface under light load.
    pub fn evicting(mut self, application: Option<String>) -> Self {
        self.evict = application.filter(|a| !a.is_empty());
        self
    }

    /// Ends the evicted application's sessions and takes each freed slot before its pool can:
    /// terminate, then retry connecting in a tight loop (the pool backs off, we do not).
    async fn evict_and_take(
        &mut self,
        config: &Config,
        target: &Target,
        admin: &mut PgConnection,
    ) -> Result<(), FaultError> {
        let Some(app) = self.evict.clone() else {
            return Ok(());
        };
        let deadline = Instant::now() + EVICT_WAIT;
        let mut ended = BTreeSet::new();
        loop {
            let ours = held_by_faults(&target.server);
            let left = sessions_of(admin, &app, &ours)
                .await
                .map_err(|e| failed(config, "cannot read pg_stat_activity", &e))?;
            if left.is_empty() || Instant::now() >= deadline {
                break;
            }
            for &pid in &left {
                if terminate(admin, pid)
                    .await
                    .map_err(|e| failed(config, &format!("cannot end {app} session {pid}"), &e))?
                {
                    ended.insert(pid);
                }
            }
            let spin_until = Instant::now() + SLOT_GRAB;
            while (self.held.len() as u32) < self.connections && Instant::now() < spin_until {
                match open_held(
                    config,
                    target,
                    &self.application_name,
                    self.state,
                    self.holding.lease,
                )
                .await
                {
                    Ok(held) => {
                        register(&target.server, held.pid, &self.id);
                        self.held.push(held);
                    }
                    Err(e) if sqlstate(&e).as_deref() == Some(TOO_MANY_CONNECTIONS) => {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    Err(e) => {
                        return Err(failed(
                            config,
                            &format!("cannot connect to {}", target.server),
                            &e,
                        ));
                    }
                }
            }
        }
        self.evicted = ended.len();
        if let Some(outcome) = &mut self.outcome {
            outcome.held = self.held.len();
        }
        Ok(())
    }

    /// How many connections this instance holds right now.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    async fn open_all(&mut self, config: &Config, target: &Target) -> Result<(), FaultError> {
        let mut opening = FuturesUnordered::new();
        let mut requested = 0;
        let mut refused = None;
        let mut failure = None;
        loop {
            while refused.is_none()
                && failure.is_none()
                && requested < self.connections
                && opening.len() < PARALLEL_CONNECTS
            {
                opening.push(open_held(
                    config,
                    target,
                    &self.application_name,
                    self.state,
                    self.holding.lease,
                ));
                requested += 1;
            }
            let Some(opened) = opening.next().await else {
                break;
            };
            match opened {
                Ok(held) => {
                    register(&target.server, held.pid, &self.id);
                    self.held.push(held);
                }
                // The point: the server is out of slots. Keep what we got.
                Err(e) if sqlstate(&e).as_deref() == Some(TOO_MANY_CONNECTIONS) => {
                    refused.get_or_insert_with(|| redacted(config, &reason(&e)));
                }
                Err(e) => {
                    failure.get_or_insert_with(|| {
                        failed(config, &format!("cannot connect to {}", target.server), &e)
                    });
                }
            }
        }
        self.outcome = Some(ExhaustOutcome {
            held: self.held.len(),
            refused: refused.clone(),
        });
        if let Some(failure) = failure {
            return Err(failure);
        }
        if self.held.is_empty() {
            return Err(FaultError::Failed(format!(
                "the server accepted none of the {} connections: {}",
                self.connections,
                refused.unwrap_or_default()
            )));
        }
        Ok(())
    }
}

impl Fault for PgExhaust {
    fn describe(&self, config: &Config) -> Description {
        let mut how = format!("{} as {}", state_label(self.state), self.application_name);
        if let Some(app) = &self.evict {
            how.push_str(&match self.outcome {
                Some(_) => format!(", {} sessions of {app} evicted", self.evicted),
                None => format!(", evicting {app}"),
            });
        }
        let params = match &self.outcome {
            Some(ExhaustOutcome {
                held,
                refused: Some(refused),
            }) => format!(
                "holding {held} of {} connections {how}; the server refused the rest: {refused}",
                self.connections
            ),
            Some(ExhaustOutcome {
                held,
                refused: None,
            }) => {
                format!("holding {held} connections {how}")
            }
            None => format!("{} connections {how}", self.connections),
        };
        Description {
            kind: "pg exhaust".into(),
            params,
            blast_radius: format!(
                "{}: every client competing for connections",
                server_label(config)
            ),
        }
    }

    fn set_lease(&mut self, lease: Duration) {
        self.holding.lease = Some(lease);
    }

    fn touched(&self) -> Option<Touched> {
        self.holding.touched(self.held.iter().map(|h| h.pid))
    }

    fn restore(&mut self, touched: &Touched) {
        self.holding.restore(touched);
    }

    fn dry_run<'a>(
        &'a self,
        ctx: &'a FaultContext,
    ) -> BoxFuture<'a, Result<super::Radius, FaultError>> {
        Box::pin(async move {
            let config = &ctx.config;
            let target = Target::from_config(config)?;
            let mut admin = target.admin(config).await?;
            let (used, max): (i64, i32) = sqlx::query_as(
                "select (select count(*) from pg_stat_activity where backend_type = 'client backend'), \
                 current_setting('max_connections')::int",
            )
            .fetch_one(&mut admin)
            .await
            .map_err(|e| failed(config, "cannot read pg_stat_activity", &e))?;
            let mut lines = vec![format!(
                "PostgreSQL {}: would hold {} {} sessions as {}; {used} of {max} connections are in use now",
                target.server,
                self.connections,
                state_label(self.state),
                self.application_name
            )];
            if let Some(app) = &self.evict {
                let sessions = sessions_of(&mut admin, app, &BTreeSet::new())
                    .await
                    .map_err(|e| failed(config, "cannot read pg_stat_activity", &e))?;
                lines.push(format!(
                    "and end the {} sessions of {app} (pid {})",
                    sessions.len(),
                    sessions
                        .iter()
                        .map(i32::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, admin.close()).await;
            Ok(super::Radius {
                lines,
                ambiguous: None,
            })
        })
    }

    fn inject<'a>(&'a mut self, ctx: &'a FaultContext) -> BoxFuture<'a, Result<(), FaultError>> {
        Box::pin(async move {
            if !self.held.is_empty() {
                return Ok(());
            }
            let target = Target::from_config(&ctx.config)?;
            self.holding.server = Some(target.server.clone());
            // The admin session must exist before the server is full.
            let mut admin = match &self.evict {
                Some(_) => Some(target.admin(&ctx.config).await?),
                None => None,
            };
            self.open_all(&ctx.config, &target).await?;
            if let Some(admin) = &mut admin {
                self.evict_and_take(&ctx.config, &target, admin).await?;
            }
            if let Some(admin) = admin {
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, admin.close()).await;
            }
            Ok(())
        })
    }

    fn revert<'a>(&'a mut self, ctx: &'a FaultContext) -> BoxFuture<'a, Result<(), FaultError>> {
        Box::pin(async move {
            let target = Target::from_config(&ctx.config)?;
            let held = std::mem::take(&mut self.held);
            let closed = held.len();
            let mine: Option<BTreeSet<i32>> = if held.is_empty() {
                self.holding.recorded.clone()
            } else {
                Some(held.iter().map(|h| h.pid).collect())
            };
            close_all(&target, held).await;
            let terminated = clear_sessions(
                &ctx.config,
                &target,
                &self.application_name,
                &self.id,
                mine.as_ref(),
            )
            .await?;
            self.outcome = None;
            tracing::info!(
                "pg_exhaust reverted: closed {closed} held connections, terminated {terminated} \
                 leftover sessions of {}; none left in pg_stat_activity",
                self.application_name
            );
            Ok(())
        })
    }
}

const LOCK_MODES: [&str; 8] = [
    "access share",
    "row share",
    "row exclusive",
    "share update exclusive",
    "share",
    "share row exclusive",
    "exclusive",
    "access exclusive",
];

/// `pg_lock`: `LOCK TABLE` in an open transaction, held until reverted.
pub struct PgLock {
    id: String,
    table: String,
    mode: String,
    application_name: String,
    held: Option<Held>,
    holding: Holding,
}

impl PgLock {
    pub fn new(id: &str, table: &str, mode: &str, application_name: &str) -> Self {
        PgLock {
            id: id.to_string(),
            table: table.to_string(),
            mode: mode.to_ascii_lowercase(),
            application_name: application_name.to_string(),
            held: None,
            holding: Holding::default(),
        }
    }

    /// The statement, built only from a checked table name and a known mode (the spec may come
    /// from a ledger file on disk).
    fn statement(&self) -> Result<String, FaultError> {
        let table_ok = !self.table.is_empty()
            && self
                .table
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
        if !table_ok {
            return Err(FaultError::Refused(format!(
                "\"{}\" is not a plain table name",
                self.table
            )));
        }
        if !LOCK_MODES.contains(&self.mode.as_str()) {
            return Err(FaultError::Refused(format!(
                "\"{}\" is not a lock mode ({})",
                self.mode,
                LOCK_MODES.join(", ")
            )));
        }
        Ok(format!(
            "BEGIN; SET LOCAL lock_timeout = '{}ms'; LOCK TABLE {} IN {} MODE",
            LOCK_WAIT.as_millis(),
            self.table,
            self.mode.to_ascii_uppercase()
        ))
    }
}

impl Fault for PgLock {
    fn set_lease(&mut self, lease: Duration) {
        self.holding.lease = Some(lease);
    }

    fn touched(&self) -> Option<Touched> {
        self.holding.touched(self.held.iter().map(|h| h.pid))
    }

    fn restore(&mut self, touched: &Touched) {
        self.holding.restore(touched);
    }

    fn dry_run<'a>(
        &'a self,
        ctx: &'a FaultContext,
    ) -> BoxFuture<'a, Result<super::Radius, FaultError>> {
        Box::pin(async move {
            let config = &ctx.config;
            self.statement()?;
            let target = Target::from_config(config)?;
            let mut admin = target.admin(config).await?;
            let exists: bool = sqlx::query_scalar("select to_regclass($1) is not null")
                .bind(&self.table)
                .fetch_one(&mut admin)
                .await
                .map_err(|e| failed(config, "cannot look the table up", &e))?;
            if !exists {
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, admin.close()).await;
                return Err(FaultError::Failed(format!(
                    "table {} does not exist on {}",
                    self.table, target.server
                )));
            }
            let users: i64 = sqlx::query_scalar(
                "select count(distinct pid) from pg_locks where relation = to_regclass($1)",
            )
            .bind(&self.table)
            .fetch_one(&mut admin)
            .await
            .map_err(|e| failed(config, "cannot read pg_locks", &e))?;
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, admin.close()).await;
            Ok(super::Radius {
                lines: vec![format!(
                    "PostgreSQL {}: would take {} on table {}; {users} sessions hold locks on it now",
                    target.server,
                    self.mode.to_ascii_uppercase(),
                    self.table
                )],
                ambiguous: None,
            })
        })
    }

    fn describe(&self, config: &Config) -> Description {
        Description {
            kind: "pg lock".into(),
            params: format!(
                "{} lock on {} in an open transaction as {}",
                self.mode.to_ascii_uppercase(),
                self.table,
                self.application_name
            ),
            blast_radius: format!(
                "{}: every query that needs a conflicting lock on {} waits",
                server_label(config),
                self.table
            ),
        }
    }

    fn inject<'a>(&'a mut self, ctx: &'a FaultContext) -> BoxFuture<'a, Result<(), FaultError>> {
        Box::pin(async move {
            if self.held.is_some() {
                return Ok(());
            }
            let config = &ctx.config;
            let statement = self.statement()?;
            let target = Target::from_config(config)?;
            let mut connection = target
                .connect(config, &self.application_name)
                .await
                .map_err(|e| failed(config, &format!("cannot connect to {}", target.server), &e))?;
            let pid = backend_pid(&mut connection)
                .await
                .map_err(|e| failed(config, "cannot read the backend pid", &e))?;
            limit_session(&mut connection, self.holding.lease).await;
            self.holding.server = Some(target.server.clone());
            register(&target.server, pid, &self.id);
            let locked = sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
                .execute(&mut connection)
                .await;
            let held = Held { connection, pid };
            match locked {
                Ok(_) => {
                    self.held = Some(held);
                    Ok(())
                }
                Err(e) => {
                    close_all(&target, vec![held]).await;
                    let what = format!("cannot lock {}", self.table);
                    if sqlstate(&e).as_deref() == Some(LOCK_NOT_AVAILABLE) {
                        Err(FaultError::Failed(format!(
                            "{what}: another session holds a conflicting lock (waited {})",
                            super::fmt_duration(LOCK_WAIT)
                        )))
                    } else {
                        Err(failed(config, &what, &e))
                    }
                }
            }
        })
    }

    fn revert<'a>(&'a mut self, ctx: &'a FaultContext) -> BoxFuture<'a, Result<(), FaultError>> {
        Box::pin(async move {
            let target = Target::from_config(&ctx.config)?;
            let mine: Option<BTreeSet<i32>> = match &self.held {
                Some(held) => Some(BTreeSet::from([held.pid])),
                None => self.holding.recorded.clone(),
            };
            if let Some(mut held) = self.held.take() {
                let _ = tokio::time::timeout(
                    CLOSE_TIMEOUT,
                    sqlx::raw_sql("ROLLBACK").execute(&mut held.connection),
                )
                .await;
                close_all(&target, vec![held]).await;
            }
            clear_sessions(
                &ctx.config,
                &target,
                &self.application_name,
                &self.id,
                mine.as_ref(),
            )
            .await
            .map(|_| ())
        })
    }
}

/// `pg_terminate`: `pg_terminate_backend` every session of an application.
pub struct PgTerminate {
    application_name: String,
    /// Sessions terminated by the inject.
    terminated: Option<usize>,
}

impl PgTerminate {
    pub fn new(application_name: &str) -> Self {
        PgTerminate {
            application_name: application_name.to_string(),
            terminated: None,
        }
    }

    /// How many sessions the inject terminated.
    pub fn terminated(&self) -> Option<usize> {
        self.terminated
    }
}

impl Fault for PgTerminate {
    fn dry_run<'a>(
        &'a self,
        ctx: &'a FaultContext,
    ) -> BoxFuture<'a, Result<super::Radius, FaultError>> {
        Box::pin(async move {
            let config = &ctx.config;
            let target = Target::from_config(config)?;
            let mut admin = target.admin(config).await?;
            let sessions = sessions_of(&mut admin, &self.application_name, &BTreeSet::new())
                .await
                .map_err(|e| failed(config, "cannot read pg_stat_activity", &e))?;
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, admin.close()).await;
            Ok(super::Radius {
                lines: vec![format!(
                    "PostgreSQL {}: would terminate the {} sessions of {} (pid {})",
                    target.server,
                    sessions.len(),
                    self.application_name,
                    sessions
                        .iter()
                        .map(i32::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                )],
                ambiguous: None,
            })
        })
    }

    fn describe(&self, config: &Config) -> Description {
        let params = match self.terminated {
            Some(n) => format!("terminated {n} sessions of {}", self.application_name),
            None => format!("terminate every session of {}", self.application_name),
        };
        Description {
            kind: "pg terminate".into(),
            params,
            blast_radius: format!(
                "{}: every session of application {} (it must reconnect)",
                server_label(config),
                self.application_name
            ),
        }
    }

    fn inject<'a>(&'a mut self, ctx: &'a FaultContext) -> BoxFuture<'a, Result<(), FaultError>> {
        Box::pin(async move {
            if self.terminated.is_some() {
                return Ok(());
            }
            if self.application_name.is_empty() {
                return Err(FaultError::Refused(
                    "pg_terminate needs an application_name".into(),
                ));
            }
            let config = &ctx.config;
            let target = Target::from_config(config)?;
            let mut admin = target.admin(config).await?;
            // Sessions our own faults hold are not the application's.
            let ours = held_by_faults(&target.server);
            let app = &self.application_name;
            let pids = sessions_of(&mut admin, app, &ours)
                .await
                .map_err(|e| failed(config, "cannot read pg_stat_activity", &e))?;
            let mut terminated = 0;
            for &pid in &pids {
                match terminate(&mut admin, pid).await {
                    Ok(true) => terminated += 1,
                    Ok(false) => {}
                    Err(e) => {
                        let what = format!("cannot terminate {app} session {pid}");
                        return Err(failed(config, &what, &e));
                    }
                }
            }
            let deadline = Instant::now() + CLEAR_WAIT;
            loop {
                let left: Vec<i32> = sessions_of(&mut admin, app, &ours)
                    .await
                    .map_err(|e| failed(config, "cannot read pg_stat_activity", &e))?
                    .into_iter()
                    .filter(|pid| pids.contains(pid))
                    .collect();
                if left.is_empty() {
                    break;
                }
                if Instant::now() >= deadline {
                    return Err(FaultError::Failed(format!(
                        "{} terminated sessions of {app} still in pg_stat_activity after {}",
                        left.len(),
                        super::fmt_duration(CLEAR_WAIT)
                    )));
                }
                tokio::time::sleep(POLL).await;
            }
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, admin.close()).await;
            self.terminated = Some(terminated);
            Ok(())
        })
    }

    /// Nothing to undo: the application reconnects by itself.
    fn revert<'a>(&'a mut self, _ctx: &'a FaultContext) -> BoxFuture<'a, Result<(), FaultError>> {
        Box::pin(async { Ok(()) })
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::sync::Arc;

    use sqlx::postgres::PgPoolOptions;

    use super::*;
    use crate::services::testing::test_dir;
    use crate::services::{PgCluster, PgOptions};

    const APP_PASSWORD: &str = "app-s3cret";

    struct Lab {
        cluster: PgCluster,
        dir: PathBuf,
        ctx: FaultContext,
    }

    /// A server allowing 20 connections, an ordinary `app` role owning database `tasks` with a
    /// `tasks` table; the faults connect as the superuser (`admin_url`).
    async fn lab(name: &str) -> Lab {
        let dir = test_dir(name);
        let cluster = PgCluster::start(PgOptions {
            max_connections: 20,
            ..PgOptions::new(dir.join("pg"))
        })
        .await
        .unwrap();
        cluster.create_role("app", APP_PASSWORD).await.unwrap();
        cluster.create_database("tasks", "app").await.unwrap();
        let text = format!(
            "[console]\nartifacts = \"{}\"\n[postgres]\nurl = \"{}\"\nadmin_url = \"{}\"\n",
            dir.join("artifacts").display(),
            cluster.url_for("app", APP_PASSWORD, "tasks"),
            cluster.superuser_url("tasks"),
        );
        let ctx = FaultContext::new(
            Arc::new(Config::from_text(Path::new("gameday.toml"), &text).unwrap()),
            None,
        );
        let lab = Lab { cluster, dir, ctx };
        let mut app = lab.app("setup").await.unwrap();
        sqlx::raw_sql("create table tasks (id serial primary key, title text)")
            .execute(&mut app)
            .await
            .unwrap();
        app.close().await.unwrap();
        // Tests count free slots: wait until the setup session's backend has exited.
        let mut observer = lab.observer().await;
        let deadline = Instant::now() + Duration::from_secs(5);
        while !sessions(&mut observer, "setup").await.is_empty() {
            assert!(Instant::now() < deadline, "the setup session did not end");
            tokio::time::sleep(POLL).await;
        }
        observer.close().await.unwrap();
        lab
    }

    impl Lab {
        fn app_options(&self, application_name: &str) -> PgConnectOptions {
            <PgConnectOptions as std::str::FromStr>::from_str(&self.cluster.url_for(
                "app",
                APP_PASSWORD,
                "tasks",
            ))
            .unwrap()
            .application_name(application_name)
        }

        async fn app(&self, application_name: &str) -> Result<PgConnection, sqlx::Error> {
            self.app_options(application_name).connect().await
        }

        /// A superuser session opened before the server fills up.
        async fn observer(&self) -> PgConnection {
            self.cluster
                .superuser_options("tasks")
                .application_name("observer")
                .connect()
                .await
                .unwrap()
        }

        fn finish(self) {
            let Lab { cluster, dir, .. } = self;
            drop(cluster);
            std::fs::remove_dir_all(dir).unwrap();
        }
    }

    async fn sessions(observer: &mut PgConnection, application_name: &str) -> Vec<String> {
        sqlx::query_scalar(
            "select coalesce(state, '') from pg_stat_activity where application_name = $1",
        )
        .bind(application_name)
        .fetch_all(observer)
        .await
        .unwrap()
    }

    async fn app_query_within(lab: &Lab, limit: Duration) -> bool {
        let query = async {
            let mut app = lab.app("drill").await?;
            sqlx::query_scalar::<_, i64>("select count(*) from tasks")
                .fetch_one(&mut app)
                .await
        };
        matches!(tokio::time::timeout(limit, query).await, Ok(Ok(_)))
    }

    #[tokio::test]
    async fn exhausting_connections_times_out_the_app_pool_and_revert_leaves_none() {
        let lab = lab("fault-pg-exhaust").await;
        let mut observer = lab.observer().await;
        let mut fault = PgExhaust::new(
            "exhaust-1",
            50,
            HoldState::IdleInTransaction,
            "gameday-fault",
        );
        assert_eq!(
            fault.describe(&lab.ctx.config).params,
            "50 connections idle in transaction as gameday-fault"
        );
        let started = Instant::now();
        fault.inject(&lab.ctx).await.unwrap();
        let exhausted_after = started.elapsed();
        let held = fault.held();
        // 20 slots: the observer has one, the fault takes every other.
        assert_eq!(held, 19, "holds every slot it could get");
        fault
            .inject(&lab.ctx)
            .await
            .expect("a second inject is harmless");
        assert_eq!(fault.held(), held, "and opens nothing more");
        let params = fault.describe(&lab.ctx.config).params;
        eprintln!("pg_exhaust applied: {params}");
        assert!(
            params.starts_with("holding 19 of 50 connections idle in transaction as gameday-fault")
                && params.contains("53300"),
            "{params}"
        );
        let states = sessions(&mut observer, "gameday-fault").await;
        assert_eq!(states.len(), held);
        assert!(
            states.iter().all(|s| s == "idle in transaction"),
            "{states:?}"
        );

        let pool = PgPoolOptions::new()
            .max_connections(5)
            .acquire_timeout(Duration::from_secs(1))
            .connect_lazy_with(lab.app_options("app-pool"));
        let started = Instant::now();
        let starved = pool.acquire().await;
        assert!(
            matches!(starved, Err(sqlx::Error::PoolTimedOut)),
            "the app pool times out: {starved:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "and does not hang"
        );

        let started = Instant::now();
        fault.revert(&lab.ctx).await.unwrap();
        let cleared_after = started.elapsed();
        assert!(sessions(&mut observer, "gameday-fault").await.is_empty());
        assert!(pool.acquire().await.is_ok(), "the app pool works again");
        fault
            .revert(&lab.ctx)
            .await
            .expect("a second revert is harmless");
        eprintln!(
            "pg_exhaust: {held} held after {exhausted_after:?}; revert verified zero after {cleared_after:?}"
        );
        pool.close().await;
        drop(observer);
        lab.finish();
    }

    #[tokio::test]
    async fn a_fresh_instance_reverts_an_exhaust_without_touching_other_faults() {
        let lab = lab("fault-pg-fresh").await;
        let mut observer = lab.observer().await;
        // Both default to the same application_name.
        let mut lock = PgLock::new("lock-1", "tasks", "access exclusive", "gameday-fault");
        lock.inject(&lab.ctx).await.unwrap();
        let mut exhaust = PgExhaust::new("exhaust-2", 5, HoldState::Idle, "gameday-fault");
        exhaust.inject(&lab.ctx).await.unwrap();
        assert_eq!(sessions(&mut observer, "gameday-fault").await.len(), 6);

        // As `gameday recover` does for a killed console: a new instance, same id and spec.
        let mut fresh = PgExhaust::new("exhaust-2", 5, HoldState::Idle, "gameday-fault");
        fresh.revert(&lab.ctx).await.unwrap();
        let left = sessions(&mut observer, "gameday-fault").await;
        assert_eq!(left.len(), 1, "only the lock's session is left: {left:?}");
        assert!(
            !app_query_within(&lab, Duration::from_millis(500)).await,
            "the lock is still held"
        );
        exhaust
            .revert(&lab.ctx)
            .await
            .expect("the original instance's revert still succeeds");

        lock.revert(&lab.ctx).await.unwrap();
        assert!(sessions(&mut observer, "gameday-fault").await.is_empty());
        drop(observer);
        lab.finish();
    }

    #[tokio::test]
    async fn a_held_lock_blocks_queries_on_the_table_until_reverted() {
        let lab = lab("fault-pg-lock").await;
        assert!(app_query_within(&lab, Duration::from_secs(2)).await);
        let mut lock = PgLock::new("lock-2", "tasks", "ACCESS EXCLUSIVE", "gameday-lock");
        lock.inject(&lab.ctx).await.unwrap();
        lock.inject(&lab.ctx)
            .await
            .expect("a second inject is harmless");
        assert_eq!(
            lock.describe(&lab.ctx.config).params,
            "ACCESS EXCLUSIVE lock on tasks in an open transaction as gameday-lock"
        );
        assert!(
            !app_query_within(&lab, Duration::from_secs(1)).await,
            "a query on the locked table blocks"
        );
        lock.revert(&lab.ctx).await.unwrap();
        assert!(
            app_query_within(&lab, Duration::from_secs(2)).await,
            "works after the revert"
        );
        lock.revert(&lab.ctx)
            .await
            .expect("a second revert is harmless");

        // A killed console's lock: a fresh instance ends it.
        let mut orphan = PgLock::new("lock-3", "tasks", "access exclusive", "gameday-lock");
        orphan.inject(&lab.ctx).await.unwrap();
        assert!(!app_query_within(&lab, Duration::from_millis(500)).await);
        PgLock::new("lock-3", "tasks", "access exclusive", "gameday-lock")
            .revert(&lab.ctx)
            .await
            .unwrap();
        assert!(app_query_within(&lab, Duration::from_secs(2)).await);
        orphan.revert(&lab.ctx).await.unwrap();

        let bad = PgLock::new("lock-4", "tasks; drop table tasks", "share", "x")
            .inject(&lab.ctx)
            .await;
        assert!(matches!(bad, Err(FaultError::Refused(_))), "{bad:?}");
        let missing = PgLock::new("lock-5", "no_such_table", "share", "x")
            .inject(&lab.ctx)
            .await;
        assert!(
            matches!(&missing, Err(FaultError::Failed(why)) if why.contains("does not exist")),
            "{missing:?}"
        );
        lab.finish();
    }

    #[tokio::test]
    async fn terminating_an_application_ends_its_sessions_and_reports_how_many() {
        let lab = lab("fault-pg-terminate").await;
        let mut observer = lab.observer().await;
        let mut drill = Vec::new();
        for _ in 0..3 {
            drill.push(lab.app("drill").await.unwrap());
        }
        let mut other = lab.app("bystander").await.unwrap();

        let mut fault = PgTerminate::new("drill");
        fault.inject(&lab.ctx).await.unwrap();
        assert_eq!(fault.terminated(), Some(3));
        assert_eq!(
            fault.describe(&lab.ctx.config).params,
            "terminated 3 sessions of drill"
        );
        assert!(sessions(&mut observer, "drill").await.is_empty());
        for mut session in drill {
            assert!(
                sqlx::query("select 1").execute(&mut session).await.is_err(),
                "a terminated session fails its next query"
            );
        }
        sqlx::query("select 1")
            .execute(&mut other)
            .await
            .expect("other applications are untouched");
        fault
            .inject(&lab.ctx)
            .await
            .expect("a second inject is harmless");
        fault.revert(&lab.ctx).await.unwrap();
        PgTerminate::new("drill").revert(&lab.ctx).await.unwrap();
        drop((observer, other));
        lab.finish();
    }

    #[tokio::test]
    async fn an_unreachable_server_fails_the_fault_without_showing_the_password() {
        let dir = test_dir("fault-pg-unreachable");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let text =
            format!("[postgres]\nurl = \"postgres://app:{APP_PASSWORD}@127.0.0.1:{port}/tasks\"\n");
        let ctx = FaultContext::new(
            Arc::new(Config::from_text(Path::new("gameday.toml"), &text).unwrap()),
            None,
        );
        let result = PgExhaust::new("e", 5, HoldState::Idle, "gameday-fault")
            .inject(&ctx)
            .await;
        let Err(FaultError::Failed(why)) = result else {
            panic!("expected a failure, got {result:?}");
        };
        eprintln!("unreachable: {why}");
        assert!(why.contains(&format!("127.0.0.1:{port}")), "{why}");
        assert!(!why.contains(APP_PASSWORD), "{why}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
