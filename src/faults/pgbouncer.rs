//! PgBouncer faults, through a `[[pgbouncer]]`'s admin console (its URL's user must be in
//! `admin_users`): pause a database (clients queue), disable it (new clients refused), kill its
//! connections, or shrink the pool size. Every revert undoes the command: `RESUME`, `ENABLE`,
//! `RESUME`, and `SET default_pool_size` back to the value `SHOW CONFIG` gave before the inject
//! (recorded in the ledger, so any process's revert restores that value).

use std::time::Duration;

use futures::future::BoxFuture;
use sqlx::postgres::PgConnection;
use sqlx::{ConnectOptions, Connection};

use super::touched::Touched;
use super::{Description, Fault, FaultContext, FaultError, Radius};
use crate::config::{Config, PgBouncerConfig};
use crate::faults::spec::BouncerAction;
use crate::sources::pgbouncer::{AdminRow, admin_options, admin_rows, explain, number};

/// How long `PAUSE` may wait for the database's running transactions to end before the inject
/// gives up (and resumes): below the engine's inject deadline.
pub const PAUSE_WAIT: Duration = Duration::from_secs(10);
const POOL_SIZE_KEY: &str = "default_pool_size";

pub struct BouncerFault {
    bouncer: String,
    action: BouncerAction,
    /// `default_pool_size` before the inject (pool size only).
    previous: Option<String>,
    applied: bool,
    /// This instance's inject failed in a way that changed nothing on the bouncer (refused,
    /// unreachable, or a PAUSE that timed out and was resumed): its cleanup revert has nothing
    /// to undo. A timeout leaves it false, since the command may have taken effect.
    untouched: bool,
    /// A PAUSE that timed out could not be resumed either: the revert must resume.
    pause_left: bool,
}

impl BouncerFault {
    pub fn new(bouncer: &str, action: BouncerAction) -> Self {
        BouncerFault {
            bouncer: bouncer.to_string(),
            action,
            previous: None,
            applied: false,
            untouched: false,
            pause_left: false,
        }
    }

    fn config<'a>(&self, config: &'a Config) -> Result<&'a PgBouncerConfig, FaultError> {
        config
            .pgbouncers
            .iter()
            .find(|b| b.name == self.bouncer)
            .ok_or_else(|| {
                FaultError::Refused(format!(
                    "pgbouncer \"{}\" is not declared in {}",
                    self.bouncer,
                    config.file.display()
                ))
            })
    }

    fn database(&self) -> Option<&str> {
        match &self.action {
            BouncerAction::Pause { database }
            | BouncerAction::Disable { database }
            | BouncerAction::Kill { database } => Some(database),
            BouncerAction::PoolSize { .. } => None,
        }
    }
}

/// A connection to the admin console, bounded by the bouncer's timeout.
async fn connect(
    ctx: &FaultContext,
    bouncer: &PgBouncerConfig,
) -> Result<PgConnection, FaultError> {
    let redact = |text: &str| ctx.config.redactor().text(text).into_owned();
    let options = admin_options(&bouncer.url).map_err(|e| FaultError::Refused(redact(&e)))?;
    match tokio::time::timeout(bouncer.timeout.get(), options.connect()).await {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(e)) => Err(FaultError::Unavailable(redact(&format!(
            "pgbouncer {}: cannot connect to the admin console: {}",
            bouncer.name,
            explain(&e)
        )))),
        Err(_) => Err(FaultError::Unavailable(format!(
            "pgbouncer {}: the admin console did not answer within {}",
            bouncer.name,
            super::fmt_duration(bouncer.timeout.get())
        ))),
    }
}

/// Runs one admin command; its rows, or the bouncer's refusal said plainly.
async fn command(
    ctx: &FaultContext,
    bouncer: &PgBouncerConfig,
    connection: &mut PgConnection,
    sql: &str,
    within: Duration,
) -> Result<Vec<AdminRow>, FaultError> {
    match tokio::time::timeout(within, admin_rows(connection, sql)).await {
        Ok(Ok(rows)) => Ok(rows),
        Ok(Err(e)) => Err(FaultError::Failed(
            ctx.config
                .redactor()
                .text(&format!(
                    "pgbouncer {}: {sql}: {}",
                    bouncer.name,
                    admin_hint(&explain(&e))
                ))
                .into_owned(),
        )),
        Err(_) => Err(FaultError::Timeout(within)),
    }
}

fn admin_hint(text: &str) -> String {
    if text.contains("admin access needed") {
        format!("{text}: faults need a user listed in the bouncer's admin_users")
    } else {
        text.to_string()
    }
}

/// The database's row of `SHOW DATABASES`, or a refusal naming what the bouncer knows.
async fn database_row(
    ctx: &FaultContext,
    bouncer: &PgBouncerConfig,
    connection: &mut PgConnection,
    database: &str,
) -> Result<AdminRow, FaultError> {
    let rows = command(
        ctx,
        bouncer,
        connection,
        "SHOW DATABASES",
        bouncer.timeout.get(),
    )
    .await?;
    let known: Vec<String> = rows
        .iter()
        .filter_map(|r| r.get("name").cloned())
        .filter(|n| n != crate::sources::pgbouncer::ADMIN_DATABASE)
        .collect();
    rows.into_iter()
        .find(|r| r.get("name").map(String::as_str) == Some(database))
        .ok_or_else(|| {
            FaultError::Refused(format!(
                "pgbouncer {}: no database \"{database}\" (it serves {}; a database reached \
                 only through the `*` entry appears once a client has used it)",
                bouncer.name,
                if known.is_empty() {
                    "none yet".to_string()
                } else {
                    known.join(", ")
                }
            ))
        })
}

async fn current_pool_size(
    ctx: &FaultContext,
    bouncer: &PgBouncerConfig,
    connection: &mut PgConnection,
) -> Result<String, FaultError> {
    let rows = command(
        ctx,
        bouncer,
        connection,
        "SHOW CONFIG",
        bouncer.timeout.get(),
    )
    .await?;
    rows.iter()
        .find(|r| r.get("key").map(String::as_str) == Some(POOL_SIZE_KEY))
        .and_then(|r| r.get("value").cloned())
        .ok_or_else(|| {
            FaultError::Failed(format!(
                "pgbouncer {}: SHOW CONFIG has no {POOL_SIZE_KEY}",
                bouncer.name
            ))
        })
}

async fn close(connection: PgConnection) {
    let _ = tokio::time::timeout(Duration::from_secs(1), connection.close()).await;
}

impl BouncerFault {
    /// The inject's command.
    async fn apply(&mut self, ctx: &FaultContext) -> Result<(), FaultError> {
        let bouncer = self.config(&ctx.config)?.clone();
        let mut connection = connect(ctx, &bouncer).await?;
        let within = bouncer.timeout.get();
        let result = match &self.action {
            BouncerAction::Pause { database } => {
                database_row(ctx, &bouncer, &mut connection, database).await?;
                // PAUSE returns once the database's transactions have ended.
                match command(
                    ctx,
                    &bouncer,
                    &mut connection,
                    &format!("PAUSE {database}"),
                    PAUSE_WAIT,
                )
                .await
                {
                    Err(FaultError::Timeout(_)) => {
                        // Do not leave a half-applied pause behind.
                        drop(connection);
                        let mut again = connect(ctx, &bouncer).await?;
                        let resumed = command(
                            ctx,
                            &bouncer,
                            &mut again,
                            &format!("RESUME {database}"),
                            within,
                        )
                        .await;
                        close(again).await;
                        self.pause_left = resumed.is_err();
                        return Err(FaultError::Failed(format!(
                            "pgbouncer {}: PAUSE {database} did not complete within {}: transactions still open on it{}",
                            bouncer.name,
                            super::fmt_duration(PAUSE_WAIT),
                            if resumed.is_ok() {
                                "; resumed"
                            } else {
                                "; RESUME failed too, revert it"
                            }
                        )));
                    }
                    other => other.map(drop),
                }
            }
            BouncerAction::Disable { database } => {
                database_row(ctx, &bouncer, &mut connection, database).await?;
                command(
                    ctx,
                    &bouncer,
                    &mut connection,
                    &format!("DISABLE {database}"),
                    within,
                )
                .await
                .map(drop)
            }
            BouncerAction::Kill { database } => {
                database_row(ctx, &bouncer, &mut connection, database).await?;
                command(
                    ctx,
                    &bouncer,
                    &mut connection,
                    &format!("KILL {database}"),
                    within,
                )
                .await
                .map(drop)
            }
            BouncerAction::PoolSize { size } => {
                let previous = current_pool_size(ctx, &bouncer, &mut connection).await?;
                let set = command(
                    ctx,
                    &bouncer,
                    &mut connection,
                    &format!("SET {POOL_SIZE_KEY} = {size}"),
                    within,
                )
                .await;
                // Refused: nothing changed. Done, or no answer (it may have taken effect):
                // the revert restores the value read before.
                if matches!(set, Ok(_) | Err(FaultError::Timeout(_))) {
                    self.previous.get_or_insert(previous);
                }
                set.map(drop)
            }
        };
        close(connection).await;
        result?;
        self.applied = true;
        Ok(())
    }

    /// The revert's command.
    async fn undo(&mut self, ctx: &FaultContext) -> Result<(), FaultError> {
        let bouncer = self.config(&ctx.config)?.clone();
        let sql = match &self.action {
            BouncerAction::Pause { database } | BouncerAction::Kill { database } => {
                format!("RESUME {database}")
            }
            BouncerAction::Disable { database } => format!("ENABLE {database}"),
            BouncerAction::PoolSize { .. } => match &self.previous {
                Some(previous) if previous.chars().all(|c| c.is_ascii_digit()) => {
                    format!("SET {POOL_SIZE_KEY} = {previous}")
                }
                Some(previous) => {
                    return Err(FaultError::Failed(format!(
                        "pgbouncer {}: the recorded {POOL_SIZE_KEY} \"{previous}\" is not a number; set it by hand",
                        bouncer.name
                    )));
                }
                None => {
                    return Err(FaultError::Failed(format!(
                        "pgbouncer {}: the {POOL_SIZE_KEY} from before the inject was not recorded; set it back by hand (SET {POOL_SIZE_KEY} = <value in pgbouncer.ini>)",
                        bouncer.name
                    )));
                }
            },
        };
        let mut connection = connect(ctx, &bouncer).await?;
        let result = command(ctx, &bouncer, &mut connection, &sql, bouncer.timeout.get()).await;
        close(connection).await;
        match result {
            Ok(_) => {}
            // Already resumed (by hand, or an earlier revert): nothing left to undo.
            Err(FaultError::Failed(text)) if text.contains("is not paused") => {}
            Err(e) => return Err(e),
        }
        self.applied = false;
        Ok(())
    }
}

impl Fault for BouncerFault {
    fn describe(&self, _config: &Config) -> Description {
        let name = &self.bouncer;
        let (kind, params, blast_radius) = match &self.action {
            BouncerAction::Pause { database } => (
                "pgbouncer pause",
                format!("PAUSE {database} on {name} (RESUME on revert)"),
                format!(
                    "pgbouncer {name}: every client of database {database} queues; nothing reaches PostgreSQL through it"
                ),
            ),
            BouncerAction::Disable { database } => (
                "pgbouncer disable",
                format!("DISABLE {database} on {name} (ENABLE on revert)"),
                format!(
                    "pgbouncer {name}: new clients of database {database} are refused; connected ones go on"
                ),
            ),
            BouncerAction::Kill { database } => (
                "pgbouncer kill",
                format!("KILL {database} on {name} (RESUME on revert)"),
                format!(
                    "pgbouncer {name}: every client and server connection of database {database} is dropped; new clients wait"
                ),
            ),
            BouncerAction::PoolSize { size } => (
                "pgbouncer pool size",
                match &self.previous {
                    Some(previous) => format!(
                        "SET {POOL_SIZE_KEY} = {size} on {name} (was {previous}, restored on revert)"
                    ),
                    None => format!(
                        "SET {POOL_SIZE_KEY} = {size} on {name} (the previous value is restored on revert)"
                    ),
                },
                format!(
                    "pgbouncer {name}: every pool without its own pool_size gets {size} server connections; clients beyond wait"
                ),
            ),
        };
        Description {
            kind: kind.into(),
            params,
            blast_radius,
        }
    }

    fn inject<'a>(&'a mut self, ctx: &'a FaultContext) -> BoxFuture<'a, Result<(), FaultError>> {
        Box::pin(async move {
            if self.applied {
                return Ok(());
            }
            self.untouched = false;
            self.pause_left = false;
            let result = self.apply(ctx).await;
            if let Err(error) = &result {
                self.untouched = !matches!(error, FaultError::Timeout(_)) && !self.pause_left;
            }
            result
        })
    }

    fn revert<'a>(&'a mut self, ctx: &'a FaultContext) -> BoxFuture<'a, Result<(), FaultError>> {
        Box::pin(async move {
            if self.untouched {
                return Ok(());
            }
            self.undo(ctx).await
        })
    }

    fn touched(&self) -> Option<Touched> {
        self.previous.as_ref().map(|value| Touched::BouncerSetting {
            key: POOL_SIZE_KEY.to_string(),
            value: value.clone(),
        })
    }

    fn restore(&mut self, touched: &Touched) {
        if let Touched::BouncerSetting { key, value } = touched
            && key == POOL_SIZE_KEY
        {
            self.previous = Some(value.clone());
        }
    }

    fn dry_run<'a>(&'a self, ctx: &'a FaultContext) -> BoxFuture<'a, Result<Radius, FaultError>> {
        Box::pin(async move {
            let bouncer = self.config(&ctx.config)?.clone();
            let mut connection = connect(ctx, &bouncer).await?;
            let within = bouncer.timeout.get();
            let line = match self.database() {
                Some(database) => {
                    let row = database_row(ctx, &bouncer, &mut connection, database).await;
                    let pools = command(ctx, &bouncer, &mut connection, "SHOW POOLS", within).await;
                    let row = match row {
                        Ok(row) => row,
                        Err(e) => {
                            close(connection).await;
                            return Err(e);
                        }
                    };
                    let pools = pools.unwrap_or_default();
                    let (mut active, mut waiting, mut servers) = (0.0, 0.0, 0.0);
                    for pool in pools
                        .iter()
                        .filter(|p| p.get("database").map(String::as_str) == Some(database))
                    {
                        active += number(pool, "cl_active");
                        waiting += number(pool, "cl_waiting");
                        servers += number(pool, "sv_active") + number(pool, "sv_idle");
                    }
                    let state = match (number(&row, "paused") > 0.0, number(&row, "disabled") > 0.0)
                    {
                        (true, true) => " (already paused and disabled)",
                        (true, false) => " (already paused)",
                        (false, true) => " (already disabled)",
                        (false, false) => "",
                    };
                    format!(
                        "pgbouncer {}: database {database}{state}: now {active} active and {waiting} waiting clients, {servers} server connections",
                        bouncer.name
                    )
                }
                None => {
                    let now = current_pool_size(ctx, &bouncer, &mut connection).await;
                    let now = match now {
                        Ok(now) => now,
                        Err(e) => {
                            close(connection).await;
                            return Err(e);
                        }
                    };
                    let BouncerAction::PoolSize { size } = &self.action else {
                        unreachable!("only the pool size has no database")
                    };
                    format!(
                        "pgbouncer {}: {POOL_SIZE_KEY} would go from {now} to {size}",
                        bouncer.name
                    )
                }
            };
            close(connection).await;
            Ok(Radius {
                lines: vec![line],
                ambiguous: None,
            })
        })
    }
}
