//! What a fault does, as data: written to the ledger before it is applied, so a later process can
//! revert it. Holds no secrets: credentials come from the config at run time.

use serde::{Deserialize, Serialize};

use crate::proxy::Fault as ProxyFault;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FaultSpec {
    /// A network or webhook fault on one of the proxy daemon's listeners.
    Proxy { listener: String, fault: ProxyFault },
    Container {
        target: ContainerTarget,
        action: ContainerAction,
    },
    Process {
        target: ProcessTarget,
        action: ProcessAction,
    },
    /// Open and hold connections until reverted.
    PgExhaust {
        connections: u32,
        state: HoldState,
        application_name: String,
        /// End this application's sessions and take their slots too.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        evict: Option<String>,
    },
    /// Hold a table lock until reverted.
    PgLock {
        table: String,
        mode: String,
        application_name: String,
    },
    /// `pg_terminate_backend` every backend of an application.
    PgTerminate { application_name: String },
    /// Publish `count` messages at `rate` per second.
    NatsFlood {
        subject: String,
        count: u64,
        rate: f64,
        payload_bytes: usize,
    },
    /// Pause a consumer (NATS 2.11+).
    NatsConsumerPause { stream: String, consumer: String },
    /// A command on a `[[pgbouncer]]`'s admin console, undone on revert.
    #[serde(rename = "pgbouncer")]
    PgBouncer {
        bouncer: String,
        action: BouncerAction,
    },
}

/// What a PgBouncer fault does on the admin console (and what its revert does).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum BouncerAction {
    /// `PAUSE db` (clients queue) / `RESUME db`.
    Pause { database: String },
    /// `DISABLE db` (new clients refused) / `ENABLE db`.
    Disable { database: String },
    /// `KILL db` (its client and server connections dropped, new clients wait) / `RESUME db`.
    Kill { database: String },
    /// `SET default_pool_size = size` / the value `SHOW CONFIG` gave before.
    PoolSize { size: u32 },
}

/// A container the config allows faults on: by name (or id), or every container with a label.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerTarget {
    pub name: String,
    pub selector: ContainerSelector,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContainerSelector {
    Name(String),
    /// `key=value`.
    Label(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum ContainerAction {
    Stop,
    Pause,
    Kill { signal: String },
    Restart,
    Disconnect { network: String },
}

/// A process the config allows faults on, found by name or command line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessTarget {
    pub name: String,
    /// Exact process name (the kernel's 15-character `comm`).
    pub process_name: Option<String>,
    /// A substring of the command line.
    pub cmdline: Option<String>,
    /// How to start it again after terminate/kill.
    pub start: Vec<String>,
    /// A TCP address that accepts connections once it is back.
    pub ready: Option<String>,
    /// Also signal its children (PostgreSQL backends are children of the postmaster).
    pub children: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcessAction {
    Freeze,
    Terminate,
    Kill,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldState {
    Idle,
    IdleInTransaction,
}

impl FaultSpec {
    /// The target name the operator sees.
    pub fn target(&self) -> String {
        match self {
            FaultSpec::Proxy { listener, .. } => listener.clone(),
            FaultSpec::Container { target, .. } => target.name.clone(),
            FaultSpec::Process { target, .. } => target.name.clone(),
            FaultSpec::PgExhaust { .. }
            | FaultSpec::PgLock { .. }
            | FaultSpec::PgTerminate { .. } => "postgres".into(),
            FaultSpec::NatsFlood { .. } | FaultSpec::NatsConsumerPause { .. } => "nats".into(),
            FaultSpec::PgBouncer { bouncer, .. } => bouncer.clone(),
        }
    }
}
