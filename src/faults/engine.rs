//! The fault engine: a task that owns this console's active faults. It writes the ledger before
//! applying anything (the entry names this console as owner), runs inject/revert under deadlines
//! (escalating a revert that hangs), retries a failed revert with backoff, reverts faults whose
//! lease ran out, and reports every step to the app. Once a second it reads the ledger: other
//! consoles' faults go to the screen, and a fault of ours that someone else reverted (our
//! dead-man agent while we hung, another console's "revert everyone's") is reported reverted.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{Mutex, mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::{Fault, FaultContext, FaultError, FaultSpec, build, check_allowed, recovery};
use crate::ledger::{Ledger, LedgerEntry, Owner};
use crate::timeline::{Cause, FaultPhase};

/// Longest an inject may take.
pub const INJECT_DEADLINE: Duration = Duration::from_secs(15);
/// Longest a revert may take before it is escalated (unless the fault says otherwise with
/// `Fault::revert_deadline`), and the escalation after it.
pub const REVERT_DEADLINE: Duration = Duration::from_secs(5);
pub const ESCALATE_DEADLINE: Duration = Duration::from_secs(5);
/// How often the engine reads the ledger for other consoles' faults.
pub const LEDGER_SYNC: Duration = Duration::from_secs(1);
/// The first retry of a failed revert comes this long after it; each next one twice as late,
/// up to `RETRY_MAX`.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// When the `attempt`-th retry of a failed revert runs (1-based), after the failure.
pub fn retry_delay(attempt: u32) -> Duration {
    let factor = 1u32 << attempt.saturating_sub(1).min(16);
    (RETRY_FIRST * factor).min(RETRY_MAX)
}

pub use crate::timeline::ForeignFault;

/// One step of a fault's life, for the app (timeline, Faults panel, chart spans).
#[derive(Debug, Clone, PartialEq)]
pub struct FaultReport {
    pub id: String,
    pub name: String,
    pub target: String,
    pub phase: FaultPhase,
    /// Parameters on `Applied`, the reason on `Failed`.
    pub detail: String,
    pub cause: Option<Cause>,
    /// Set on `Applied`: when the lease runs out.
    pub lease: Option<Duration>,
}

enum Command {
    Inject {
        name: String,
        spec: FaultSpec,
        lease: Duration,
        cause: Cause,
    },
    Revert {
        id: String,
        cause: Cause,
    },
    RevertAll {
        cause: Cause,
        done: Option<oneshot::Sender<()>>,
    },
    /// Ours, and every other console's from the ledger (the operator confirmed).
    RevertEveryone {
        cause: Cause,
    },
}

/// Cheap to clone; dropping every handle stops the engine (after nothing: revert first).
#[derive(Clone)]
pub struct EngineHandle {
    tx: mpsc::Sender<Command>,
}

impl EngineHandle {
    pub async fn inject(&self, name: &str, spec: FaultSpec, lease: Duration, cause: Cause) {
        let _ = self
            .tx
            .send(Command::Inject {
                name: name.to_string(),
                spec,
                lease,
                cause,
            })
            .await;
    }

    pub async fn revert(&self, id: &str, cause: Cause) {
        let _ = self
            .tx
            .send(Command::Revert {
                id: id.to_string(),
                cause,
            })
            .await;
    }

    /// Reverts everything and waits until every revert has finished (or failed).
    pub async fn revert_all(&self, cause: Cause) {
        let (done, wait) = oneshot::channel();
        if self
            .tx
            .send(Command::RevertAll {
                cause,
                done: Some(done),
            })
            .await
            .is_ok()
        {
            let _ = wait.await;
        }
    }

    /// Reverts this console's faults and every other console's (a confirmed operator action).
    pub fn try_revert_everyone(&self, cause: Cause) {
        let _ = self.tx.try_send(Command::RevertEveryone { cause });
    }

    /// Non-blocking variant for the UI loop.
    pub fn try_revert_all(&self, cause: Cause) {
        let _ = self.tx.try_send(Command::RevertAll { cause, done: None });
    }

    pub fn try_inject(&self, name: &str, spec: FaultSpec, lease: Duration, cause: Cause) {
        let _ = self.tx.try_send(Command::Inject {
            name: name.to_string(),
            spec,
            lease,
            cause,
        });
    }

    pub fn try_revert(&self, id: &str, cause: Cause) {
        let _ = self.tx.try_send(Command::Revert {
            id: id.to_string(),
            cause,
        });
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Injecting,
    Active,
    Reverting,
    /// Revert failed; kept (and in the ledger), retried at `retry_at` (or by the operator).
    Stuck,
}

struct Active {
    name: String,
    target: String,
    fault: Arc<Mutex<Box<dyn Fault>>>,
    stage: Stage,
    expires: Instant,
    /// A revert asked for while still injecting.
    revert_after_inject: Option<Cause>,
    waiters: Vec<oneshot::Sender<()>>,
    /// Failed reverts so far, and when the next try runs.
    attempts: u32,
    retry_at: Option<(Instant, Cause)>,
}

enum Done {
    Injected {
        id: String,
        result: Result<(), FaultError>,
    },
    Reverted {
        id: String,
        cause: Cause,
        result: Result<(), FaultError>,
    },
    /// Another console's fault, reverted from the ledger.
    RevertedForeign {
        entry: Box<LedgerEntry>,
        cause: Cause,
        result: Result<(), String>,
    },
}

/// Starts the engine for the console `owner`. `others` receives the other consoles' faults
/// whenever they change.
pub fn spawn(
    ctx: Arc<FaultContext>,
    ledger: Ledger,
    owner: Owner,
    reports: mpsc::Sender<FaultReport>,
    others: watch::Sender<Vec<ForeignFault>>,
) -> EngineHandle {
    let (tx, rx) = mpsc::channel(64);
    let engine = Engine {
        ctx,
        ledger,
        owner,
        reports,
        others,
        active: BTreeMap::new(),
        tasks: JoinSet::new(),
        next_id: 1,
    };
    tokio::spawn(engine.run(rx));
    EngineHandle { tx }
}

struct Engine {
    ctx: Arc<FaultContext>,
    ledger: Ledger,
    owner: Owner,
    reports: mpsc::Sender<FaultReport>,
    others: watch::Sender<Vec<ForeignFault>>,
    active: BTreeMap<String, Active>,
    tasks: JoinSet<Done>,
    next_id: u64,
}

impl Engine {
    async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        let mut sync = tokio::time::interval(LEDGER_SYNC);
        sync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let next_expiry = self
                .active
                .values()
                .filter_map(|a| match a.stage {
                    Stage::Active => Some(a.expires),
                    Stage::Stuck => a.retry_at.as_ref().map(|(at, _)| *at),
                    _ => None,
                })
                .min();
            tokio::select! {
                command = rx.recv() => match command {
                    Some(c) => self.command(c).await,
                    // Every handle is gone: the console is ending; it reverted first.
                    None => break,
                },
                Some(done) = self.tasks.join_next(), if !self.tasks.is_empty() => {
                    match done {
                        Ok(d) => self.finished(d).await,
                        Err(e) => tracing::error!("fault task died: {e}"),
                    }
                }
                _ = sleep_until(next_expiry) => {
                    let now = Instant::now();
                    let expired: Vec<String> = self.active.iter()
                        .filter(|(_, a)| a.stage == Stage::Active && a.expires <= now)
                        .map(|(id, _)| id.clone()).collect();
                    for id in expired {
                        self.start_revert(&id, Cause::Timer);
                    }
                    let retries: Vec<(String, Cause)> = self.active.iter_mut()
                        .filter(|(_, a)| a.stage == Stage::Stuck)
                        .filter_map(|(id, a)| match a.retry_at.take() {
                            Some((at, cause)) if at <= now => Some((id.clone(), cause)),
                            other => { a.retry_at = other; None }
                        })
                        .collect();
                    for (id, cause) in retries {
                        self.start_revert(&id, cause);
                    }
                }
                _ = sync.tick() => self.sync_ledger().await,
            }
        }
    }

    /// Reads the ledger: publishes other consoles' faults, and reports ours that are gone from
    /// it (reverted by someone else) as reverted, so the screen never shows them active.
    async fn sync_ledger(&mut self) {
        let ledger = self.ledger.clone();
        let read = tokio::task::spawn_blocking(move || {
            ledger.entries().map(|entries| {
                entries
                    .into_iter()
                    .map(|e| {
                        let alive = ledger.is_alive(&e.owner.id);
                        (e, alive)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .await;
        let entries = match read {
            Ok(Ok(entries)) => entries,
            Ok(Err(e)) => {
                tracing::error!("cannot read the fault ledger: {e}");
                return;
            }
            Err(e) => {
                tracing::error!("ledger read task failed: {e}");
                return;
            }
        };
        let others: Vec<ForeignFault> = entries
            .iter()
            .filter(|(e, _)| e.owner.id != self.owner.id)
            .map(|(e, alive)| ForeignFault {
                id: e.id.clone(),
                name: e.name.clone(),
                target: e.spec.target(),
                owner: e.owner.label(),
                lease_until: e.lease_until,
                owner_alive: *alive,
            })
            .collect();
        self.others.send_if_modified(|current| {
            let changed = *current != others;
            if changed {
                *current = others;
            }
            changed
        });
        let gone: Vec<String> = self
            .active
            .iter()
            .filter(|(_, a)| matches!(a.stage, Stage::Active | Stage::Stuck))
            .filter(|(id, _)| !entries.iter().any(|(e, _)| &e.id == *id))
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            let Some(a) = self.active.remove(&id) else {
                continue;
            };
            tracing::warn!("{id} left the ledger without us: reverted elsewhere");
            self.report(
                &id,
                &a,
                FaultPhase::Reverted,
                "reverted outside this console (its dead-man agent while it was unresponsive, or another console)".into(),
                Some(Cause::Elsewhere),
                None,
            )
            .await;
            self.hand_over_waiters(a.waiters);
        }
    }

    async fn report(
        &self,
        id: &str,
        a: &Active,
        phase: FaultPhase,
        detail: String,
        cause: Option<Cause>,
        lease: Option<Duration>,
    ) {
        let report = FaultReport {
            id: id.to_string(),
            name: a.name.clone(),
            target: a.target.clone(),
            phase,
            detail,
            cause,
            lease,
        };
        let _ = self.reports.send(report).await;
    }

    async fn command(&mut self, command: Command) {
        match command {
            Command::Inject {
                name,
                spec,
                lease,
                cause,
            } => self.inject(name, spec, lease, cause).await,
            Command::Revert { id, cause } => self.start_revert(&id, cause),
            Command::RevertEveryone { cause } => {
                let ids: Vec<String> = self.active.keys().cloned().collect();
                for id in &ids {
                    self.start_revert(id, cause.clone());
                }
                self.revert_foreign(cause).await;
            }
            Command::RevertAll { cause, done } => {
                let ids: Vec<String> = self.active.keys().cloned().collect();
                for id in &ids {
                    self.start_revert(id, cause.clone());
                }
                if let Some(done) = done {
                    // Wait for the reverts (and any inject still running) to finish.
                    // (Stuck faults are retried later, not waited for.)
                    let pending: Vec<&String> = ids
                        .iter()
                        .filter(|id| self.active.contains_key(*id))
                        .collect();
                    match pending.first() {
                        None => {
                            let _ = done.send(());
                        }
                        Some(_) => self.add_waiter(done),
                    }
                }
            }
        }
    }

    /// Starts reverting every other console's ledger entry.
    async fn revert_foreign(&mut self, cause: Cause) {
        let ledger = self.ledger.clone();
        let entries = match tokio::task::spawn_blocking(move || ledger.entries()).await {
            Ok(Ok(entries)) => entries,
            Ok(Err(e)) => {
                tracing::error!("revert everyone's: cannot read the fault ledger: {e}");
                return;
            }
            Err(_) => return,
        };
        for entry in entries.into_iter().filter(|e| e.owner.id != self.owner.id) {
            let detail = format!("applied by {}", entry.owner.label());
            self.report_foreign(&entry, FaultPhase::RevertRequested, detail, cause.clone())
                .await;
            let ctx = self.ctx.clone();
            let ledger = self.ledger.clone();
            let cause = cause.clone();
            self.tasks.spawn(async move {
                let result = recovery::revert_entry(&ctx, &ledger, &entry).await;
                Done::RevertedForeign {
                    entry: Box::new(entry),
                    cause,
                    result,
                }
            });
        }
    }

    /// The waiter fires when the active map is empty.
    fn add_waiter(&mut self, done: oneshot::Sender<()>) {
        if let Some(a) = self.active.values_mut().next() {
            a.waiters.push(done);
        } else {
            let _ = done.send(());
        }
    }

    async fn inject(&mut self, name: String, spec: FaultSpec, lease: Duration, cause: Cause) {
        // Unique across consoles: the owner's random tag is part of it.
        let id = format!("{name}-{}-{}", self.owner.tag(), self.next_id);
        self.next_id += 1;
        let mut fault = build(&id, &spec);
        fault.set_lease(lease);
        let target = spec.target();
        let active = Active {
            name: name.clone(),
            target,
            fault: Arc::new(Mutex::new(fault)),
            stage: Stage::Injecting,
            expires: Instant::now() + lease,
            revert_after_inject: None,
            waiters: Vec::new(),
            attempts: 0,
            retry_at: None,
        };
        self.report(
            &id,
            &active,
            FaultPhase::Requested,
            String::new(),
            Some(cause),
            None,
        )
        .await;
        let console = &self.ctx.config.console;
        if console.production && !self.ctx.allow_production {
            let detail = format!(
                "refused: {} is marked production (console.production in {}); nothing is injected without --allow-production",
                console.environment_label(),
                self.ctx.config.file.display()
            );
            self.report(&id, &active, FaultPhase::Refused, detail, None, None)
                .await;
            return;
        }
        if let Err(refused) = check_allowed(&self.ctx.config, &spec) {
            self.report(
                &id,
                &active,
                FaultPhase::Refused,
                refused.to_string(),
                None,
                None,
            )
            .await;
            return;
        }
        let now = Utc::now();
        let entry = LedgerEntry {
            id: id.clone(),
            name,
            spec,
            owner: self.owner.clone(),
            recorded_at: now,
            lease_until: now + chrono::Duration::from_std(lease).unwrap_or_default(),
            touched: None,
        };
        // Write-ahead: nothing is applied unless the ledger knows how to undo it. Two consoles
        // never apply the same fault to the same target: the second is refused, naming the first.
        let ledger = self.ledger.clone();
        let owner_id = self.owner.id.clone();
        let written = tokio::task::spawn_blocking(move || {
            let held = ledger.entries()?.into_iter().find(|e| {
                e.owner.id != owner_id && e.spec == entry.spec && ledger.is_alive(&e.owner.id)
            });
            match held {
                Some(e) => Ok(Some(e)),
                None => ledger.add(entry).map(|()| None),
            }
        })
        .await;
        if let Ok(Ok(Some(held))) = &written {
            let detail = format!(
                "refused: {} already applies this fault ({})",
                held.owner.label(),
                held.id
            );
            self.report(&id, &active, FaultPhase::Refused, detail, None, None)
                .await;
            return;
        }
        if let Err(e) = written
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()))
        {
            let detail = format!("not applied: cannot write the fault ledger ({e})");
            self.report(&id, &active, FaultPhase::Failed, detail, None, None)
                .await;
            return;
        }
        let fault = active.fault.clone();
        let ctx = self.ctx.clone();
        let task_id = id.clone();
        self.active.insert(id, active);
        self.tasks.spawn(async move {
            let mut fault = fault.lock().await;
            let result = match tokio::time::timeout(INJECT_DEADLINE, fault.inject(&ctx)).await {
                Ok(r) => r,
                Err(_) => Err(FaultError::Timeout(INJECT_DEADLINE)),
            };
            Done::Injected {
                id: task_id,
                result,
            }
        });
    }

    fn start_revert(&mut self, id: &str, cause: Cause) {
        let Some(a) = self.active.get_mut(id) else {
            return;
        };
        match a.stage {
            Stage::Reverting => return,
            Stage::Injecting => {
                a.revert_after_inject.get_or_insert(cause);
                return;
            }
            Stage::Active | Stage::Stuck => {}
        }
        a.stage = Stage::Reverting;
        a.retry_at = None;
        let fault = a.fault.clone();
        let ctx = self.ctx.clone();
        let task_id = id.to_string();
        let report = FaultReport {
            id: id.to_string(),
            name: a.name.clone(),
            target: a.target.clone(),
            phase: FaultPhase::RevertRequested,
            detail: String::new(),
            cause: Some(cause.clone()),
            lease: None,
        };
        let _ = self.reports.try_send(report);
        self.tasks.spawn(async move {
            let mut fault = fault.lock().await;
            let deadline = fault.revert_deadline();
            let result = match tokio::time::timeout(deadline, fault.revert(&ctx)).await {
                Ok(r) => r,
                Err(_) => {
                    tracing::warn!(
                        "revert of {task_id} did not finish in {deadline:?}; escalating"
                    );
                    match tokio::time::timeout(ESCALATE_DEADLINE, fault.escalate(&ctx)).await {
                        Ok(r) => r,
                        Err(_) => Err(FaultError::Timeout(deadline + ESCALATE_DEADLINE)),
                    }
                }
            };
            Done::Reverted {
                id: task_id,
                cause,
                result,
            }
        });
    }

    async fn finished(&mut self, done: Done) {
        match done {
            Done::RevertedForeign {
                entry,
                cause,
                result,
            } => self.foreign_done(*entry, cause, result).await,
            Done::Injected { id, result } => {
                let Some(a) = self.active.get_mut(&id) else {
                    return;
                };
                match result {
                    Ok(()) => {
                        a.stage = Stage::Active;
                        let lease = a.expires.saturating_duration_since(Instant::now());
                        let (detail, touched) = {
                            let fault = a.fault.lock().await;
                            (fault.describe(&self.ctx.config).params, fault.touched())
                        };
                        if let Some(touched) = touched {
                            // From now on any revert, in any process, undoes exactly this.
                            let ledger = self.ledger.clone();
                            let ledger_id = id.clone();
                            let written = tokio::task::spawn_blocking(move || {
                                ledger.set_touched(&ledger_id, touched)
                            })
                            .await;
                            if let Ok(Err(e)) | Err(e) = written.map_err(std::io::Error::other) {
                                tracing::error!("cannot record what {id} touched: {e}");
                            }
                        }
                        let a = &self.active[&id];
                        self.report(&id, a, FaultPhase::Applied, detail, None, Some(lease))
                            .await;
                        if let Some(cause) = self
                            .active
                            .get_mut(&id)
                            .and_then(|a| a.revert_after_inject.take())
                        {
                            self.start_revert(&id, cause);
                        }
                    }
                    // Refused or unavailable: nothing was touched, nothing to undo.
                    Err(e @ (FaultError::Refused(_) | FaultError::Unavailable(_))) => {
                        let a = &self.active[&id];
                        self.report(&id, a, FaultPhase::Refused, e.to_string(), None, None)
                            .await;
                        self.forget(&id).await;
                    }
                    Err(e) => {
                        a.stage = Stage::Active;
                        let a = &self.active[&id];
                        self.report(
                            &id,
                            a,
                            FaultPhase::Failed,
                            format!("inject failed: {e}"),
                            None,
                            None,
                        )
                        .await;
                        // Undo whatever part of it landed, then forget it.
                        self.start_revert(
                            &id,
                            Cause::Scenario("cleanup after a failed inject".into()),
                        );
                    }
                }
            }
            Done::Reverted { id, cause, result } => {
                let Some(a) = self.active.get_mut(&id) else {
                    return;
                };
                match result {
                    Ok(()) => {
                        let ledger = self.ledger.clone();
                        let ledger_id = id.clone();
                        let removed =
                            tokio::task::spawn_blocking(move || ledger.remove(&ledger_id)).await;
                        if let Ok(Err(e)) | Err(e) = removed.map_err(std::io::Error::other) {
                            tracing::error!("cannot remove {id} from the ledger: {e}");
                        }
                        let a = self.active.remove(&id).expect("present");
                        // What it did, as of now (a flood says how many it sent).
                        let detail = a.fault.lock().await.describe(&self.ctx.config).params;
                        self.report(&id, &a, FaultPhase::Reverted, detail, Some(cause), None)
                            .await;
                        self.hand_over_waiters(a.waiters);
                    }
                    Err(e) => {
                        a.stage = Stage::Stuck;
                        a.attempts += 1;
                        let delay = retry_delay(a.attempts);
                        a.retry_at = Some((Instant::now() + delay, cause.clone()));
                        let attempts = a.attempts;
                        let a = &self.active[&id];
                        let detail = format!(
                            "revert failed (attempt {attempts}): {e}; retrying in {} (still in the ledger; r retries now)",
                            super::fmt_duration(delay)
                        );
                        self.report(&id, a, FaultPhase::Failed, detail, Some(cause), None)
                            .await;
                        // A stuck fault will not end by itself: release anyone waiting for "all done".
                        let waiters =
                            std::mem::take(&mut self.active.get_mut(&id).expect("present").waiters);
                        self.hand_over_waiters(waiters);
                    }
                }
            }
        }
    }

    async fn foreign_done(&mut self, entry: LedgerEntry, cause: Cause, result: Result<(), String>) {
        let (phase, detail) = match result {
            Ok(()) => (
                FaultPhase::Reverted,
                format!("applied by {}", entry.owner.label()),
            ),
            Err(e) => (
                FaultPhase::Failed,
                format!("revert of {}'s fault failed: {e}", entry.owner.label()),
            ),
        };
        self.report_foreign(&entry, phase, detail, cause).await;
    }

    /// A step of another console's fault, for this console's timeline.
    async fn report_foreign(
        &self,
        entry: &LedgerEntry,
        phase: FaultPhase,
        detail: String,
        cause: Cause,
    ) {
        let _ = self
            .reports
            .send(FaultReport {
                id: entry.id.clone(),
                name: entry.name.clone(),
                target: entry.spec.target(),
                phase,
                detail,
                cause: Some(cause),
                lease: None,
            })
            .await;
    }

    /// Drops a fault that never took effect: out of the ledger and the active set.
    async fn forget(&mut self, id: &str) {
        let ledger = self.ledger.clone();
        let ledger_id = id.to_string();
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || ledger.remove(&ledger_id)).await {
            tracing::error!("cannot remove {id} from the ledger: {e}");
        }
        if let Some(a) = self.active.remove(id) {
            self.hand_over_waiters(a.waiters);
        }
    }

    /// Waiters for "everything reverted" move to a fault still in progress, or fire.
    fn hand_over_waiters(&mut self, waiters: Vec<oneshot::Sender<()>>) {
        let in_progress = self
            .active
            .values_mut()
            .find(|a| matches!(a.stage, Stage::Injecting | Stage::Reverting));
        match in_progress {
            Some(a) => a.waiters.extend(waiters),
            None => {
                for w in waiters {
                    let _ = w.send(());
                }
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::bench::faults::FaultRig;
    use crate::proxy::{Fault as ProxyFault, TcpFault};

    async fn rig(name: &str, proxies: usize) -> FaultRig {
        let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join(".artifacts/test")
            .join(format!("engine-{name}-{suffix}"));
        FaultRig::start(&dir, proxies).await.unwrap()
    }

    fn latency(listener: &str) -> FaultSpec {
        FaultSpec::Proxy {
            listener: listener.into(),
            fault: ProxyFault::Tcp(TcpFault::Latency {
                latency: Duration::from_millis(100),
                jitter: Duration::ZERO,
                direction: crate::proxy::Direction::Downstream,
                probability: 1.0,
            }),
        }
    }

    /// The next `count` reports of `phase`, skipping others.
    async fn until(r: &mut FaultRig, phase: FaultPhase, count: usize) -> Vec<FaultReport> {
        let mut out = Vec::new();
        while out.len() < count {
            let report = r.next_report().await.unwrap();
            if report.phase == phase {
                out.push(report);
            }
        }
        out
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_ledger_holds_a_fault_exactly_while_it_may_be_applied() {
        let mut r = rig("ledger", 1).await;
        r.engine
            .inject(
                "slow",
                latency("p0"),
                Duration::from_secs(60),
                Cause::Key("1".into()),
            )
            .await;
        assert_eq!(r.next_report().await.unwrap().phase, FaultPhase::Requested);
        let applied = until(&mut r, FaultPhase::Applied, 1).await;
        assert_eq!(applied[0].detail, "100ms ±0s server→client");
        assert_eq!(
            r.ledger.entries().unwrap().len(),
            1,
            "written before the fault was applied"
        );
        assert_eq!(r.client.status().await.unwrap().faults.len(), 1);
        r.engine
            .revert(&applied[0].id, Cause::Key("r".into()))
            .await;
        let reverted = until(&mut r, FaultPhase::Reverted, 1).await;
        assert_eq!(reverted[0].cause, Some(Cause::Key("r".into())));
        assert!(r.ledger.entries().unwrap().is_empty());
        assert!(r.client.status().await.unwrap().faults.is_empty());
        r.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lease_that_runs_out_reverts_by_timer() {
        let mut r = rig("lease", 1).await;
        r.engine
            .inject(
                "short",
                latency("p0"),
                Duration::from_millis(300),
                Cause::Key("1".into()),
            )
            .await;
        until(&mut r, FaultPhase::Applied, 1).await;
        let reverted = until(&mut r, FaultPhase::Reverted, 1).await;
        assert_eq!(reverted[0].cause, Some(Cause::Timer));
        assert!(r.client.status().await.unwrap().faults.is_empty());
        r.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_target_outside_the_allowlist_is_refused_and_nothing_is_written() {
        let mut r = rig("allowlist", 1).await;
        r.engine
            .inject(
                "rogue",
                latency("not-declared"),
                Duration::from_secs(60),
                Cause::Key("1".into()),
            )
            .await;
        let refused = until(&mut r, FaultPhase::Refused, 1).await;
        assert!(
            refused[0]
                .detail
                .starts_with("refused: target \"not-declared\" is not declared"),
            "{}",
            refused[0].detail
        );
        assert!(r.ledger.entries().unwrap().is_empty());
        assert!(r.client.status().await.unwrap().faults.is_empty());
        r.stop().await;
    }

    #[test]
    fn failed_reverts_are_retried_ever_later_up_to_a_cap() {
        let delays: Vec<u64> = (1..=8).map(|n| retry_delay(n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(retry_delay(u32::MAX), RETRY_MAX);
    }

    /// Another console on the rig's ledger and daemon.
    struct Second {
        engine: EngineHandle,
        reports: mpsc::Receiver<FaultReport>,
        others: watch::Receiver<Vec<ForeignFault>>,
        owner: Owner,
        _alive: crate::ledger::ConsoleLock,
    }

    fn second(r: &FaultRig) -> Second {
        let owner = Owner::new("second");
        let alive = r.ledger.hold(&owner).unwrap();
        let (tx, reports) = mpsc::channel(64);
        let (others_tx, others) = watch::channel(Vec::new());
        let engine = spawn(
            r.context.clone(),
            r.ledger.clone(),
            owner.clone(),
            tx,
            others_tx,
        );
        Second {
            engine,
            reports,
            others,
            owner,
            _alive: alive,
        }
    }

    async fn next_of(rx: &mut mpsc::Receiver<FaultReport>, phase: FaultPhase) -> FaultReport {
        loop {
            let report = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .expect("a report within 10s")
                .expect("the engine runs");
            if report.phase == phase {
                return report;
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_consoles_own_their_faults_and_one_reverting_all_leaves_the_others() {
        let mut r = rig("owners", 2).await;
        let mut b = second(&r);
        let key = || Cause::Key("1".into());
        r.engine
            .inject("slow", latency("p0"), Duration::from_secs(60), key())
            .await;
        let mine = until(&mut r, FaultPhase::Applied, 1).await.remove(0);
        // The same fault from the other console is refused, naming the holder.
        b.engine
            .inject("slow", latency("p0"), Duration::from_secs(60), key())
            .await;
        let refused = next_of(&mut b.reports, FaultPhase::Refused).await;
        assert!(
            refused.detail.contains("already applies this fault"),
            "{}",
            refused.detail
        );
        b.engine
            .inject("slow", latency("p1"), Duration::from_secs(60), key())
            .await;
        let theirs = next_of(&mut b.reports, FaultPhase::Applied).await;
        assert_ne!(mine.id, theirs.id, "ids never collide across consoles");
        assert!(theirs.id.contains(b.owner.tag()));

        // Each sees the other's fault in the ledger, with its owner.
        tokio::time::timeout(Duration::from_secs(5), b.others.wait_for(|o| o.len() == 1))
            .await
            .expect("the other console's fault shows within a ledger sync")
            .unwrap();
        assert_eq!(b.others.borrow()[0].id, mine.id);
        assert!(b.others.borrow()[0].owner_alive);

        // Reverting all in the first console leaves the second one's fault applied.
        r.engine.revert_all(Cause::PanicKey).await;
        let daemon = r.client.status().await.unwrap();
        let left: Vec<&str> = daemon.faults.iter().map(|f| f.id.as_str()).collect();
        assert_eq!(left, [theirs.id.as_str()]);
        let ledger: Vec<String> = r
            .ledger
            .entries()
            .unwrap()
            .into_iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(ledger, std::slice::from_ref(&theirs.id));

        // "Revert everyone's" from the first console takes the second's too, and the second
        // console learns it from the ledger: its fault is reported reverted, not left ACTIVE.
        r.engine.try_revert_everyone(Cause::Everyone);
        let gone = next_of(&mut b.reports, FaultPhase::Reverted).await;
        assert_eq!(gone.id, theirs.id);
        assert_eq!(gone.cause, Some(Cause::Elsewhere));
        assert!(r.client.status().await.unwrap().faults.is_empty());
        assert!(r.ledger.entries().unwrap().is_empty());
        r.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_revert_requested_while_injecting_runs_right_after() {
        let mut r = rig("early-revert", 1).await;
        r.engine
            .inject(
                "quick",
                latency("p0"),
                Duration::from_secs(60),
                Cause::Key("1".into()),
            )
            .await;
        let requested = r.next_report().await.unwrap();
        r.engine.revert(&requested.id, Cause::PanicKey).await;
        until(&mut r, FaultPhase::Reverted, 1).await;
        assert!(r.client.status().await.unwrap().faults.is_empty());
        assert!(r.ledger.entries().unwrap().is_empty());
        r.stop().await;
    }
}
