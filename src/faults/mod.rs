//! Faults: one trait, one engine. Every fault kind implements [`Fault`] (describe, inject,
//! revert — both idempotent); the [`engine`] runs them off the UI loop under deadlines and
//! leases, writes the [`crate::ledger`] before anything is applied, and reports each step.

pub mod container;
pub mod docker;
pub mod engine;
pub mod nats;
pub mod pgbouncer;
pub mod postgres;
pub mod process;
pub mod proxied;
pub mod recovery;
pub mod spec;
pub mod touched;

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use crate::config::Config;
use crate::proxy::ProxyClient;
pub use spec::FaultSpec;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FaultError {
    /// Not allowed: the target is not in the config's allowlist, or the kind cannot run here.
    #[error("refused: {0}")]
    Refused(String),
    /// What it needs is not reachable (no Docker engine, no proxy daemon…).
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error("{0}")]
    Failed(String),
    #[error("did not finish within {0:?}")]
    Timeout(Duration),
}

/// What a fault is, said plainly for the catalog and the confirm popup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Description {
    /// "latency", "container stop".
    pub kind: String,
    /// "200ms ±20ms both ways".
    pub params: String,
    /// Who is affected.
    pub blast_radius: String,
}

/// What an inject would act on right now, resolved the way the inject resolves it — and
/// nothing touched: the dry run, and the confirm popup's blast radius.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Radius {
    /// One line per thing it would touch ("container nats-1 (3f2a…) on unix:///…: running").
    pub lines: Vec<String>,
    /// Set when the target resolves to more than the drill most likely meant ("label
    /// app=nats matches 3 containers").
    pub ambiguous: Option<String>,
}

/// Shared handles faults use. Built once per console (or `gameday recover`).
pub struct FaultContext {
    pub config: Arc<Config>,
    /// The proxy daemon, when the config has proxies or webhooks.
    pub proxy: Option<std::sync::Arc<ProxyClient>>,
    /// The Docker engine (`DOCKER_HOST`), connected when a container fault first needs it.
    pub docker: docker::DockerHandle,
    /// Started with `--allow-production`: injects on a production config are allowed.
    pub allow_production: bool,
}

impl FaultContext {
    /// The Docker engine is the one `DOCKER_HOST` names (or the default socket).
    pub fn new(config: Arc<Config>, proxy: Option<Arc<ProxyClient>>) -> Self {
        FaultContext {
            config,
            proxy,
            docker: docker::DockerHandle::from_env(),
            allow_production: false,
        }
    }

    /// The connected Docker client, or `Unavailable` with where it looked and why.
    pub async fn docker(&self) -> Result<&bollard::Docker, FaultError> {
        self.docker.get().await.map_err(FaultError::Unavailable)
    }
}

/// One fault instance. `inject` and `revert` are idempotent: running either twice is harmless, and
/// `revert` works on a fresh instance built from the same spec (that is how a killed console's
/// faults are reverted from the ledger). The engine bounds both with deadlines.
pub trait Fault: Send + Sync {
    fn describe(&self, config: &Config) -> Description;
    fn inject<'a>(&'a mut self, ctx: &'a FaultContext) -> BoxFuture<'a, Result<(), FaultError>>;
    fn revert<'a>(&'a mut self, ctx: &'a FaultContext) -> BoxFuture<'a, Result<(), FaultError>>;
    /// A stronger revert when `revert` did not finish in time (e.g. clear every fault on a
    /// listener, kill held connections). Defaults to trying `revert` again.
    fn escalate<'a>(&'a mut self, ctx: &'a FaultContext) -> BoxFuture<'a, Result<(), FaultError>> {
        self.revert(ctx)
    }
    /// How long `revert` may take before it is escalated. Longer for reverts that start a
    /// process and wait until it is ready.
    fn revert_deadline(&self) -> Duration {
        engine::REVERT_DEADLINE
    }
    /// The lease, for kinds that can also set a limit on the target's side (PostgreSQL
    /// sessions end by themselves after it).
    fn set_lease(&mut self, _lease: Duration) {}
    /// Exactly what the inject acted on, recorded in the ledger once it is applied.
    fn touched(&self) -> Option<touched::Touched> {
        None
    }
    /// Takes the ledger's record of what the inject acted on, so the revert of a fresh instance
    /// restores exactly that.
    fn restore(&mut self, _touched: &touched::Touched) {}
    /// What an inject would touch right now; touches nothing (no ledger, no signal, no write).
    fn dry_run<'a>(&'a self, ctx: &'a FaultContext) -> BoxFuture<'a, Result<Radius, FaultError>>;
}

/// The allowlist: a fault may only be injected on a target the config declares, exactly as it
/// declares it. (Reverting is always allowed: undoing must work even after the config changed.)
pub fn check_allowed(config: &Config, spec: &FaultSpec) -> Result<(), FaultError> {
    let allowed = match spec {
        FaultSpec::Proxy { listener, fault } => match fault {
            crate::proxy::Fault::Tcp(_) => config.proxies.iter().any(|p| &p.name == listener),
            crate::proxy::Fault::Webhook(_) => config.webhooks.iter().any(|w| &w.name == listener),
        },
        FaultSpec::Container { target, .. } => config.containers.contains(target),
        FaultSpec::Process { target, .. } => config.processes.contains(target),
        FaultSpec::PgExhaust { .. } | FaultSpec::PgLock { .. } | FaultSpec::PgTerminate { .. } => {
            config.postgres.is_some()
        }
        FaultSpec::NatsFlood { .. } | FaultSpec::NatsConsumerPause { .. } => config.nats.is_some(),
        FaultSpec::PgBouncer { bouncer, .. } => {
            config.pgbouncers.iter().any(|b| &b.name == bouncer)
        }
    };
    if allowed {
        Ok(())
    } else {
        Err(FaultError::Refused(format!(
            "target \"{}\" is not declared in {}; only declared targets can be touched",
            spec.target(),
            config.file.display()
        )))
    }
}

/// Whether a ledger entry (a file on disk, maybe written by another console) may be reverted
/// under this config: its target must be declared exactly as the entry says, since a revert
/// may run the target's `start` command or act on its containers. Proxy faults are cleared by
/// id on the daemon, which touches nothing else, so they are always revertible.
pub fn check_revertible(config: &Config, spec: &FaultSpec) -> Result<(), FaultError> {
    match spec {
        FaultSpec::Proxy { .. } => Ok(()),
        _ => check_allowed(config, spec).map_err(|_| {
            FaultError::Refused(format!(
                "the ledger names target \"{}\" as {} does not declare it; revert it with the config that does",
                spec.target(),
                config.file.display()
            ))
        }),
    }
}

/// A fresh instance for reverting a ledger entry: what the inject touched, if it was recorded.
pub fn from_ledger(entry: &crate::ledger::LedgerEntry) -> Box<dyn Fault> {
    let mut fault = build(&entry.id, &entry.spec);
    if let Some(touched) = &entry.touched {
        fault.restore(touched);
    }
    fault
}

/// Builds the implementation for a spec. `id` is unique per injection.
pub fn build(id: &str, spec: &FaultSpec) -> Box<dyn Fault> {
    match spec {
        FaultSpec::Proxy { listener, fault } => {
            Box::new(proxied::ProxiedFault::new(id, listener, fault.clone()))
        }
        FaultSpec::Container { target, action } => Box::new(container::ContainerFault::new(
            target.clone(),
            action.clone(),
        )),
        FaultSpec::Process { target, action } => {
            Box::new(process::ProcessFault::new(target.clone(), *action))
        }
        FaultSpec::PgExhaust {
            connections,
            state,
            application_name,
            evict,
        } => Box::new(
            postgres::PgExhaust::new(id, *connections, *state, application_name)
                .evicting(evict.clone()),
        ),
        FaultSpec::PgLock {
            table,
            mode,
            application_name,
        } => Box::new(postgres::PgLock::new(id, table, mode, application_name)),
        FaultSpec::PgTerminate { application_name } => {
            Box::new(postgres::PgTerminate::new(application_name))
        }
        FaultSpec::NatsFlood {
            subject,
            count,
            rate,
            payload_bytes,
        } => Box::new(nats::NatsFlood::new(subject, *count, *rate, *payload_bytes)),
        FaultSpec::NatsConsumerPause { stream, consumer } => {
            Box::new(nats::NatsConsumerPause::new(stream, consumer))
        }
        FaultSpec::PgBouncer { bouncer, action } => {
            Box::new(pgbouncer::BouncerFault::new(bouncer, action.clone()))
        }
    }
}

/// The catalog as the Faults panel and the confirm popup show it.
pub fn catalog_entries(config: &Config) -> Vec<crate::state::CatalogEntry> {
    config
        .faults
        .iter()
        .map(|f| {
            let d = build("catalog", &f.spec).describe(config);
            crate::state::CatalogEntry {
                key: f.key,
                name: f.name.clone(),
                kind: d.kind,
                target: f.spec.target(),
                params: d.params,
                blast_radius: d.blast_radius,
                lease_ms: f.lease.as_millis() as u64,
            }
        })
        .collect()
}

/// `1.5s`, `200ms` for parameter lines.
pub fn fmt_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".into();
    }
    humantime::format_duration(d).to_string().replace(' ', "")
}
