//! The control protocol: one JSON document per line over the daemon's unix socket. Every
//! request gets exactly one response, in order; after `Subscribe` the connection carries
//! `ProxyEvent` lines instead.

use std::net::SocketAddr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::durations;
use super::faults::Fault;
use super::spec::{ListenerSet, TcpListenerSpec, WebhookListenerSpec};

/// Bumped on any incompatible change; a client refuses a daemon that speaks another one.
pub const PROTOCOL_VERSION: u32 = 2;

/// Longest accepted request or response line.
pub const MAX_LINE: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case")]
pub enum Request {
    /// Attach as a console: from now on this connection holds the fault lease.
    Hello {
        console_pid: u32,
        #[serde(with = "durations")]
        lease: Duration,
        /// The console's identity; its lease (and the faults it set) survive a reconnect.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        owner: Option<String>,
    },
    /// Reconcile the running listeners with this set.
    Configure {
        #[serde(default)]
        tcp: Vec<TcpListenerSpec>,
        #[serde(default)]
        webhooks: Vec<WebhookListenerSpec>,
    },
    /// Renew the lease (any request from an attached console does too).
    Heartbeat,
    /// Add or replace fault `id`; sending the same fault again changes nothing.
    SetFault {
        id: String,
        listener: String,
        fault: Fault,
        #[serde(default, with = "durations::option")]
        expires_in: Option<Duration>,
    },
    ClearFault {
        id: String,
    },
    ClearAll,
    Status,
    /// Turn this connection into a stream of `ProxyEvent` lines.
    Subscribe,
    Shutdown,
}

impl Request {
    pub fn configure(listeners: &ListenerSet) -> Request {
        Request::Configure {
            tcp: listeners.tcp.clone(),
            webhooks: listeners.webhooks.clone(),
        }
    }

    /// A short name for logs and error messages.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Hello { .. } => "hello",
            Request::Configure { .. } => "configure",
            Request::Heartbeat => "heartbeat",
            Request::SetFault { .. } => "set_fault",
            Request::ClearFault { .. } => "clear_fault",
            Request::ClearAll => "clear_all",
            Request::Status => "status",
            Request::Subscribe => "subscribe",
            Request::Shutdown => "shutdown",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    Ok(Reply),
    Err { message: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    Hello(HelloReply),
    Configured(ConfigureReport),
    Heartbeat,
    /// `changed` is false when the same fault was already set under this id.
    FaultSet {
        changed: bool,
    },
    /// `existed` is false when no fault had this id.
    FaultCleared {
        existed: bool,
    },
    ClearedAll {
        count: usize,
    },
    Status(StatusReport),
    Subscribed,
    ShuttingDown,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HelloReply {
    pub pid: u32,
    pub version: String,
    pub protocol: u32,
    pub listeners: Vec<ListenerStatus>,
}

/// The outcome of `Configure`, one entry per requested listener.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConfigureReport {
    pub listeners: Vec<ListenerReport>,
}

impl ConfigureReport {
    pub fn get(&self, name: &str) -> Option<&ListenerReport> {
        self.listeners.iter().find(|listener| listener.name == name)
    }

    /// Listeners that failed to start, as "name: error".
    pub fn failures(&self) -> Vec<String> {
        self.listeners
            .iter()
            .filter_map(|listener| {
                listener
                    .error
                    .as_ref()
                    .map(|err| format!("{}: {err}", listener.name))
            })
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListenerReport {
    pub name: String,
    pub kind: ListenerKind,
    /// The address actually bound (resolves port 0).
    pub bound: Option<SocketAddr>,
    pub action: ListenerAction,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ListenerAction {
    Started,
    Restarted,
    Unchanged,
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ListenerKind {
    Tcp,
    Webhook,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ListenerState {
    Running,
    /// A `down` fault holds the listen socket closed.
    Down,
    /// Bind or rebind failed; the listener forwards nothing.
    Failed {
        error: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListenerStatus {
    pub name: String,
    pub kind: ListenerKind,
    pub listen: SocketAddr,
    pub bound: Option<SocketAddr>,
    pub upstream: String,
    #[serde(flatten)]
    pub state: ListenerState,
    pub counters: ListenerCounters,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ListenerCounters {
    Tcp(TcpCounters),
    Webhook(WebhookCounters),
}

/// Totals since the listener started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpCounters {
    pub active: u64,
    pub accepted: u64,
    /// Client → server bytes forwarded.
    pub bytes_upstream: u64,
    /// Server → client bytes forwarded.
    pub bytes_downstream: u64,
    pub connect_errors: u64,
}

/// Totals since the listener started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookCounters {
    pub in_flight: u64,
    pub requests: u64,
    /// Requests answered by the upstream, whatever the status.
    pub forwarded: u64,
    pub timeouts: u64,
    pub upstream_errors: u64,
    pub client_gone: u64,
    pub retries: u64,
    /// Requests a fault acted on.
    pub faulted: u64,
    /// Answers by status code, including injected ones.
    #[serde(with = "status_counts")]
    pub statuses: std::collections::BTreeMap<u16, u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    pub pid: u32,
    pub version: String,
    #[serde(with = "durations")]
    pub uptime: Duration,
    pub listeners: Vec<ListenerStatus>,
    pub faults: Vec<FaultStatus>,
    pub lease: LeaseStatus,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultStatus {
    pub id: String,
    pub listener: String,
    pub fault: Fault,
    #[serde(with = "durations")]
    pub age: Duration,
    /// Time left before the fault's own expiry, if it has one.
    #[serde(default, with = "durations::option")]
    pub expires_in: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaseStatus {
    pub consoles: Vec<ConsoleStatus>,
    /// Time before every fault is dropped unless a console shows up; `None` with no console.
    #[serde(default, with = "durations::option")]
    pub remaining: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsoleStatus {
    pub pid: u32,
    #[serde(with = "durations")]
    pub lease: Duration,
    #[serde(with = "durations")]
    pub last_seen: Duration,
    pub connected: bool,
}

/// What a subscriber receives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ProxyEvent {
    Webhook(WebhookRecord),
    /// Every listener's counters, about once a second.
    Counters {
        at: DateTime<Utc>,
        listeners: Vec<ListenerStatus>,
    },
    FaultApplied {
        id: String,
        listener: String,
        fault: Fault,
        #[serde(default, with = "durations::option")]
        expires_in: Option<Duration>,
    },
    FaultDropped {
        id: String,
        listener: String,
        reason: DropReason,
    },
    /// The subscriber fell behind and `missed` events were skipped.
    Lagged {
        missed: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    Cleared,
    ClearedAll,
    /// The fault's own `expires_in` ran out.
    Expired,
    /// No console renewed the lease in time.
    LeaseLapsed,
    /// A different fault was set under the same id.
    Replaced,
    ListenerRemoved,
    Shutdown,
}

/// One request through a webhook forwarder, as the caller experienced it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookRecord {
    pub webhook: String,
    pub started_at: DateTime<Utc>,
    pub method: String,
    /// Time from the request's arrival to its answer, or to the caller giving up.
    #[serde(with = "durations")]
    pub latency: Duration,
    pub status: Option<u16>,
    pub outcome: WebhookOutcome,
    /// The same idempotency key, or the same method, path and body, was seen recently.
    pub retry: bool,
    /// The id of the fault that acted on this request.
    pub fault: Option<String>,
}

impl WebhookRecord {
    /// Counted as a timeout on the webhook panel.
    pub fn is_timeout(&self) -> bool {
        self.outcome == WebhookOutcome::Timeout
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", content = "reason", rename_all = "snake_case")]
pub enum WebhookOutcome {
    /// Answered (by the upstream or by an `error` fault) before the timeout.
    Ok,
    /// The answer took the configured timeout or longer, or the caller gave up waiting.
    Timeout,
    /// The upstream could not be reached or failed; the caller got a 502.
    UpstreamError(String),
    /// The caller went away before its request was complete.
    ClientGone,
    /// A `reset` fault dropped the connection.
    Reset,
}

/// Status counts travel as `{"200": 5}`. The counters sit inside an internally tagged enum, whose
/// buffering turns map keys into strings that a plain `u16` key would refuse: parse them here.
mod status_counts {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(
        map: &BTreeMap<u16, u64>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let as_text: BTreeMap<String, u64> = map.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        as_text.serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<BTreeMap<u16, u64>, D::Error> {
        BTreeMap::<String, u64>::deserialize(deserializer)?
            .into_iter()
            .map(|(k, v)| {
                k.parse::<u16>().map(|k| (k, v)).map_err(|_| {
                    serde::de::Error::custom(format!("expected an HTTP status, got {k:?}"))
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod status_count_tests {
    use super::*;

    #[test]
    fn webhook_counters_with_statuses_survive_the_wire() {
        let mut counters = WebhookCounters::default();
        counters.statuses.insert(200, 5);
        counters.statuses.insert(503, 2);
        let wrapped = ListenerCounters::Webhook(counters.clone());
        let text = serde_json::to_string(&wrapped).unwrap();
        let back: ListenerCounters = serde_json::from_str(&text).unwrap();
        assert_eq!(back, ListenerCounters::Webhook(counters));
    }
}
