//! Sources: tokio tasks that sample one part of the system and send what they see to the app
//! through a bounded channel. A source never crashes the console: failures become
//! `SourceStatus::Down { reason }` and the source keeps trying.

use std::fmt;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// Which source; its string form is also the metric-key prefix it owns (`nats`, `pg`,
/// `webhook.telegram`, `probe.api`, `pgbouncer.main`, `prom.app`, `host`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SourceId(pub String);

impl SourceId {
    pub const NATS: &'static str = "nats";
    pub const POSTGRES: &'static str = "pg";
    pub const HOST: &'static str = "host";

    pub fn nats() -> Self {
        SourceId(Self::NATS.into())
    }
    pub fn postgres() -> Self {
        SourceId(Self::POSTGRES.into())
    }
    pub fn host() -> Self {
        SourceId(Self::HOST.into())
    }
    pub fn webhook(name: &str) -> Self {
        SourceId(format!("webhook.{name}"))
    }
    pub fn probe(name: &str) -> Self {
        SourceId(format!("probe.{name}"))
    }
    pub fn prometheus(name: &str) -> Self {
        SourceId(format!("prom.{name}"))
    }

    /// The prefix of every metric key this source owns, with the trailing dot.
    pub fn key_prefix(&self) -> String {
        format!("{}.", self.0)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a source says about its target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum SourceStatus {
    /// Not reached yet since start.
    Connecting,
    Up,
    Down {
        reason: String,
    },
}

impl SourceStatus {
    pub fn down(reason: impl fmt::Display) -> Self {
        SourceStatus::Down {
            reason: reason.to_string(),
        }
    }

    pub fn is_up(&self) -> bool {
        matches!(self, SourceStatus::Up)
    }
}

/// A message from a source to the app.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceEvent {
    /// Metric values observed now, by full metric key (`nats.TASKS.workers.pending`). A key may
    /// appear more than once (per-request latencies).
    Samples {
        source: SourceId,
        values: Vec<(String, f64)>,
    },
    /// The source's view of its target changed (or is re-stated).
    Status {
        source: SourceId,
        status: SourceStatus,
    },
}

/// The sending half every source gets. Sources use `send` (and wait) for status changes, which
/// must not be lost, and `try_send` for samples, counting what a full channel dropped.
pub type SourceTx = mpsc::Sender<SourceEvent>;

/// Channel capacity between sources and the app: enough for bursts, small enough to bound memory.
pub const CHANNEL_CAPACITY: usize = 1024;

pub mod exposition;
pub mod host;
pub mod nats;
pub mod pgbouncer;
pub mod postgres;
pub mod probe;
pub mod prometheus;
mod spawn;

pub use spawn::spawn_all;
pub mod webhook;
