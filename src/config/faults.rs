//! The fault catalog (`[[fault]]`) and the targets faults may touch (`[[proxy]]`,
//! `[[container]]`, `[[process]]`, `[postgres]`, `[nats]`, `[[pgbouncer]]`). Declaring a target is what allows it:
//! nothing outside these tables is ever touched.
//!
//! A fault is one flat table: `name`, `kind`, `target`, optional `key` and `duration`, and the
//! parameters its kind takes. A parameter another kind takes is an error that lists the right ones.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use crate::faults::spec::{
    BouncerAction, ContainerAction, ContainerSelector, ContainerTarget, FaultSpec, HoldState,
    ProcessAction, ProcessTarget,
};
use crate::proxy::{Direction, Fault as ProxyFault, TcpFault, WebhookFault};
use crate::toml_input::{Dur, InputError, TomlDoc};

/// Lease of a fault that names no `duration`.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(300);
/// No fault may be held longer than this.
pub const MAX_LEASE: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    pub name: String,
    #[serde(deserialize_with = "crate::toml_input::socket_addr")]
    pub listen: SocketAddr,
    /// `host:port` of the real server.
    pub upstream: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawContainer {
    name: String,
    container: Option<String>,
    label: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProcess {
    name: String,
    process: Option<String>,
    cmdline: Option<String>,
    #[serde(default)]
    start: Vec<String>,
    ready: Option<String>,
    #[serde(default = "yes")]
    children: bool,
}

fn yes() -> bool {
    true
}

/// `key = 1` or `key = "1"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(super) enum RawKey {
    Number(i64),
    Text(String),
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFault {
    name: String,
    kind: String,
    target: Option<String>,
    key: Option<RawKey>,
    duration: Option<Dur>,
    description: Option<String>,
    // network
    latency: Option<Dur>,
    jitter: Option<Dur>,
    direction: Option<String>,
    probability: Option<f64>,
    rate_kbps: Option<u64>,
    close_after: Option<Dur>,
    after: Option<Dur>,
    average_size: Option<usize>,
    size_variation: Option<usize>,
    delay: Option<Dur>,
    bytes: Option<u64>,
    // webhook
    status: Option<u16>,
    retry_after: Option<Dur>,
    // container
    signal: Option<String>,
    network: Option<String>,
    // postgres
    connections: Option<u32>,
    state: Option<String>,
    application_name: Option<String>,
    table: Option<String>,
    mode: Option<String>,
    evict: Option<String>,
    // nats
    subject: Option<String>,
    count: Option<u64>,
    rate: Option<f64>,
    payload_bytes: Option<usize>,
    stream: Option<String>,
    consumer: Option<String>,
    // pgbouncer
    database: Option<String>,
    pool_size: Option<u32>,
}

/// A catalog fault, ready to inject.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogFault {
    pub name: String,
    pub key: Option<u8>,
    pub lease: Duration,
    pub description: Option<String>,
    pub spec: FaultSpec,
}

/// What a fault kind acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TargetKind {
    Proxy,
    Webhook,
    Container,
    Process,
    Postgres,
    Nats,
    PgBouncer,
}

impl TargetKind {
    fn table(self) -> &'static str {
        match self {
            TargetKind::Proxy => "a [[proxy]] name",
            TargetKind::Webhook => "a [[webhook]] name",
            TargetKind::Container => "a [[container]] name",
            TargetKind::Process => "a [[process]] name",
            TargetKind::Postgres => "\"postgres\" (the [postgres] section)",
            TargetKind::Nats => "\"nats\" (the [nats] section)",
            TargetKind::PgBouncer => "a [[pgbouncer]] name",
        }
    }
}

/// Every kind: what it targets, the parameters it requires and the ones it also accepts.
const KINDS: &[(&str, TargetKind, &[&str], &[&str])] = &[
    (
        "latency",
        TargetKind::Proxy,
        &["latency"],
        &["jitter", "direction", "probability"],
    ),
    (
        "bandwidth",
        TargetKind::Proxy,
        &["rate_kbps"],
        &["direction", "probability"],
    ),
    (
        "blackhole",
        TargetKind::Proxy,
        &[],
        &["close_after", "direction", "probability"],
    ),
    ("reset", TargetKind::Proxy, &[], &["after", "probability"]),
    (
        "slicer",
        TargetKind::Proxy,
        &["average_size"],
        &["size_variation", "delay", "direction", "probability"],
    ),
    (
        "limit_data",
        TargetKind::Proxy,
        &["bytes"],
        &["direction", "probability"],
    ),
    ("down", TargetKind::Proxy, &[], &[]),
    ("pg_slow", TargetKind::Proxy, &["delay"], &["jitter"]),
    (
        "webhook_delay",
        TargetKind::Webhook,
        &["delay"],
        &["jitter", "probability"],
    ),
    ("webhook_hang", TargetKind::Webhook, &[], &["probability"]),
    (
        "webhook_error",
        TargetKind::Webhook,
        &["status"],
        &["probability", "retry_after"],
    ),
    ("webhook_reset", TargetKind::Webhook, &[], &["probability"]),
    ("container_stop", TargetKind::Container, &[], &[]),
    ("container_pause", TargetKind::Container, &[], &[]),
    ("container_kill", TargetKind::Container, &[], &["signal"]),
    ("container_restart", TargetKind::Container, &[], &[]),
    (
        "container_disconnect",
        TargetKind::Container,
        &["network"],
        &[],
    ),
    ("process_freeze", TargetKind::Process, &[], &[]),
    ("process_terminate", TargetKind::Process, &[], &[]),
    ("process_kill", TargetKind::Process, &[], &[]),
    (
        "pg_exhaust",
        TargetKind::Postgres,
        &["connections"],
        &["state", "application_name", "evict"],
    ),
    (
        "pg_lock",
        TargetKind::Postgres,
        &["table"],
        &["mode", "application_name"],
    ),
    (
        "pg_terminate",
        TargetKind::Postgres,
        &["application_name"],
        &[],
    ),
    (
        "nats_flood",
        TargetKind::Nats,
        &["subject", "count"],
        &["rate", "payload_bytes"],
    ),
    (
        "nats_consumer_pause",
        TargetKind::Nats,
        &["stream", "consumer"],
        &[],
    ),
    ("pgbouncer_pause", TargetKind::PgBouncer, &["database"], &[]),
    (
        "pgbouncer_disable",
        TargetKind::PgBouncer,
        &["database"],
        &[],
    ),
    ("pgbouncer_kill", TargetKind::PgBouncer, &["database"], &[]),
    (
        "pgbouncer_pool_size",
        TargetKind::PgBouncer,
        &["pool_size"],
        &[],
    ),
];

/// Parameters a fault table may hold besides the common keys, in declaration order.
fn params_present(f: &RawFault) -> Vec<&'static str> {
    let flags: [(&'static str, bool); 29] = [
        ("latency", f.latency.is_some()),
        ("jitter", f.jitter.is_some()),
        ("direction", f.direction.is_some()),
        ("probability", f.probability.is_some()),
        ("rate_kbps", f.rate_kbps.is_some()),
        ("close_after", f.close_after.is_some()),
        ("after", f.after.is_some()),
        ("average_size", f.average_size.is_some()),
        ("size_variation", f.size_variation.is_some()),
        ("delay", f.delay.is_some()),
        ("bytes", f.bytes.is_some()),
        ("status", f.status.is_some()),
        ("retry_after", f.retry_after.is_some()),
        ("signal", f.signal.is_some()),
        ("network", f.network.is_some()),
        ("connections", f.connections.is_some()),
        ("state", f.state.is_some()),
        ("application_name", f.application_name.is_some()),
        ("table", f.table.is_some()),
        ("mode", f.mode.is_some()),
        ("evict", f.evict.is_some()),
        ("subject", f.subject.is_some()),
        ("count", f.count.is_some()),
        ("rate", f.rate.is_some()),
        ("payload_bytes", f.payload_bytes.is_some()),
        ("stream", f.stream.is_some()),
        ("consumer", f.consumer.is_some()),
        ("database", f.database.is_some()),
        ("pool_size", f.pool_size.is_some()),
    ];
    flags
        .iter()
        .filter(|(_, on)| *on)
        .map(|(n, _)| *n)
        .collect()
}

/// The declared targets, for validation.
pub(super) struct Targets<'a> {
    pub proxies: &'a [ProxyConfig],
    pub webhooks: Vec<&'a str>,
    pub containers: &'a [RawContainer],
    pub processes: &'a [RawProcess],
    pub postgres: bool,
    pub nats: bool,
    pub pgbouncers: Vec<&'a str>,
}

pub(super) fn check_proxies(doc: &TomlDoc, proxies: &[ProxyConfig]) -> Result<(), InputError> {
    for (i, p) in proxies.iter().enumerate() {
        super::check_name(doc, &format!("proxy[{i}].name"), &p.name)?;
        let ok = p
            .upstream
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !ok {
            return Err(doc.error_at(
                &format!("proxy[{i}].upstream"),
                format!(
                    "expected host:port like \"127.0.0.1:4222\", got \"{}\"",
                    p.upstream
                ),
            ));
        }
    }
    super::check_unique(
        doc,
        "proxy",
        "name",
        proxies.iter().map(|p| p.name.as_str()),
    )
}

pub(super) fn containers(
    doc: &TomlDoc,
    raw: &[RawContainer],
) -> Result<Vec<ContainerTarget>, InputError> {
    let mut out = Vec::new();
    for (i, c) in raw.iter().enumerate() {
        super::check_name(doc, &format!("container[{i}].name"), &c.name)?;
        let selector = match (&c.container, &c.label) {
            (Some(name), None) if !name.is_empty() => ContainerSelector::Name(name.clone()),
            (None, Some(label)) if label.contains('=') => ContainerSelector::Label(label.clone()),
            (None, Some(label)) => {
                return Err(doc.error_at(
                    &format!("container[{i}].label"),
                    format!("expected key=value like \"gameday.target=nats\", got \"{label}\""),
                ));
            }
            _ => {
                return Err(doc.error_at(
                    &format!("container[{i}]"),
                    "expected exactly one of `container = \"name-or-id\"` or `label = \"key=value\"`",
                ));
            }
        };
        out.push(ContainerTarget {
            name: c.name.clone(),
            selector,
        });
    }
    super::check_unique(
        doc,
        "container",
        "name",
        raw.iter().map(|c| c.name.as_str()),
    )?;
    Ok(out)
}

pub(super) fn processes(
    doc: &TomlDoc,
    raw: &[RawProcess],
) -> Result<Vec<ProcessTarget>, InputError> {
    let mut out = Vec::new();
    for (i, p) in raw.iter().enumerate() {
        super::check_name(doc, &format!("process[{i}].name"), &p.name)?;
        if p.process.is_none() && p.cmdline.is_none() {
            return Err(doc.error_at(
                &format!("process[{i}]"),
                "expected `process = \"exact-name\"` and/or `cmdline = \"substring\"` to find it",
            ));
        }
        if let Some(ready) = &p.ready
            && ready.parse::<SocketAddr>().is_err()
        {
            return Err(doc.error_at(
                &format!("process[{i}].ready"),
                format!("expected an address like \"127.0.0.1:4222\", got \"{ready}\""),
            ));
        }
        out.push(ProcessTarget {
            name: p.name.clone(),
            process_name: p.process.clone(),
            cmdline: p.cmdline.clone(),
            start: p.start.clone(),
            ready: p.ready.clone(),
            children: p.children,
        });
    }
    super::check_unique(doc, "process", "name", raw.iter().map(|p| p.name.as_str()))?;
    Ok(out)
}

pub(super) fn catalog(
    doc: &TomlDoc,
    raw: &[RawFault],
    targets: &Targets<'_>,
    containers: &[ContainerTarget],
    processes: &[ProcessTarget],
) -> Result<Vec<CatalogFault>, InputError> {
    let mut out = Vec::with_capacity(raw.len());
    let mut keys = BTreeSet::new();
    for (i, f) in raw.iter().enumerate() {
        let at = |field: &str| format!("fault[{i}].{field}");
        super::check_name(doc, &at("name"), &f.name)?;
        let Some(&(_, target_kind, required, optional)) = KINDS.iter().find(|k| k.0 == f.kind)
        else {
            let names: Vec<&str> = KINDS.iter().map(|k| k.0).collect();
            return Err(doc.error_at(
                &at("kind"),
                format!("expected one of {}, got \"{}\"", names.join(", "), f.kind),
            ));
        };
        for p in params_present(f) {
            if !required.contains(&p) && !optional.contains(&p) {
                let takes: Vec<&str> = required.iter().chain(optional.iter()).copied().collect();
                let takes = if takes.is_empty() {
                    "no parameters".to_string()
                } else {
                    format!("only {}", takes.join(", "))
                };
                return Err(doc.error_at(
                    &at(p),
                    format!(
                        "`{p}` does not apply to kind \"{}\" (it takes {takes})",
                        f.kind
                    ),
                ));
            }
        }
        for p in required {
            if !params_present(f).contains(p) {
                return Err(doc.error_at(
                    &format!("fault[{i}]"),
                    format!("kind \"{}\" needs `{p}`", f.kind),
                ));
            }
        }
        let target = resolve_target(doc, i, f, target_kind, targets)?;
        let key = match &f.key {
            None => None,
            Some(k) => {
                let digit = match k {
                    RawKey::Number(n) => u8::try_from(*n).ok(),
                    RawKey::Text(s) => s.parse::<u8>().ok(),
                }
                .filter(|d| (1..=9).contains(d));
                let Some(d) = digit else {
                    return Err(doc.error_at(&at("key"), "expected a key from 1 to 9"));
                };
                if !keys.insert(d) {
                    return Err(doc.error_at(
                        &at("key"),
                        format!("key {d} is already bound to another fault"),
                    ));
                }
                Some(d)
            }
        };
        let lease = f.duration.map_or(DEFAULT_LEASE, Dur::get);
        if lease.is_zero() || lease > MAX_LEASE {
            return Err(doc.error_at(
                &at("duration"),
                "expected a duration above zero and at most \"24h\"",
            ));
        }
        let spec = build_spec(doc, i, f, &target, containers, processes)?;
        out.push(CatalogFault {
            name: f.name.clone(),
            key,
            lease,
            description: f.description.clone(),
            spec,
        });
    }
    super::check_unique(doc, "fault", "name", raw.iter().map(|f| f.name.as_str()))?;
    // Faults without a key take the free digits in order.
    for fault in out.iter_mut().filter(|f| f.key.is_none()) {
        if let Some(d) = (1..=9).find(|d| !keys.contains(d)) {
            keys.insert(d);
            fault.key = Some(d);
        }
    }
    Ok(out)
}

fn resolve_target(
    doc: &TomlDoc,
    i: usize,
    f: &RawFault,
    kind: TargetKind,
    t: &Targets<'_>,
) -> Result<String, InputError> {
    let implied = match kind {
        TargetKind::Postgres => Some("postgres"),
        TargetKind::Nats => Some("nats"),
        _ => None,
    };
    let Some(target) = f.target.as_deref().or(implied) else {
        return Err(doc.error_at(
            &format!("fault[{i}]"),
            format!("kind \"{}\" needs `target`: {}", f.kind, kind.table()),
        ));
    };
    let section_missing = match kind {
        TargetKind::Postgres => !t.postgres,
        TargetKind::Nats => !t.nats,
        _ => false,
    };
    if section_missing {
        return Err(doc.error_at(
            &format!("fault[{i}].kind"),
            format!(
                "kind \"{}\" acts on {}, which this config does not have",
                f.kind,
                kind.table()
            ),
        ));
    }
    let known = match kind {
        TargetKind::Proxy => t.proxies.iter().any(|p| p.name == target),
        TargetKind::Webhook => t.webhooks.contains(&target),
        TargetKind::Container => t.containers.iter().any(|c| c.name == target),
        TargetKind::Process => t.processes.iter().any(|p| p.name == target),
        TargetKind::Postgres => target == "postgres" && t.postgres,
        TargetKind::Nats => target == "nats" && t.nats,
        TargetKind::PgBouncer => t.pgbouncers.contains(&target),
    };
    if !known {
        return Err(doc.error_at(
            &format!("fault[{i}].target"),
            format!(
                "\"{target}\" is not a declared target; kind \"{}\" takes {}",
                f.kind,
                kind.table()
            ),
        ));
    }
    Ok(target.to_string())
}

fn build_spec(
    doc: &TomlDoc,
    i: usize,
    f: &RawFault,
    target: &str,
    containers: &[ContainerTarget],
    processes: &[ProcessTarget],
) -> Result<FaultSpec, InputError> {
    let at = |field: &str| format!("fault[{i}].{field}");
    let probability = f.probability.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&probability) {
        return Err(doc.error_at(
            &at("probability"),
            format!("expected a probability from 0 to 1, got {probability}"),
        ));
    }
    let direction = match f.direction.as_deref() {
        None => Direction::Downstream,
        Some("upstream") => Direction::Upstream,
        Some("downstream") => Direction::Downstream,
        Some("both") => Direction::Both,
        Some(other) => {
            return Err(doc.error_at(
                &at("direction"),
                format!("expected upstream, downstream or both, got \"{other}\""),
            ));
        }
    };
    let d = |v: Option<Dur>| v.map(Dur::get).unwrap_or_default();
    let tcp = |fault: TcpFault| FaultSpec::Proxy {
        listener: target.to_string(),
        fault: ProxyFault::Tcp(fault),
    };
    let web = |fault: WebhookFault| FaultSpec::Proxy {
        listener: target.to_string(),
        fault: ProxyFault::Webhook(fault),
    };
    let positive = |field: &str, v: u64| {
        if v == 0 {
            Err(doc.error_at(&at(field), "expected a value above zero"))
        } else {
            Ok(v)
        }
    };
    let container = || {
        containers
            .iter()
            .find(|c| c.name == target)
            .cloned()
            .expect("target resolved")
    };
    let process = || {
        processes
            .iter()
            .find(|p| p.name == target)
            .cloned()
            .expect("target resolved")
    };
    let app_name = |default: &str| {
        f.application_name
            .clone()
            .unwrap_or_else(|| default.to_string())
    };
    Ok(match f.kind.as_str() {
        "latency" => tcp(TcpFault::Latency {
            latency: d(f.latency),
            jitter: d(f.jitter),
            direction,
            probability,
        }),
        "bandwidth" => tcp(TcpFault::Bandwidth {
            rate_kbps: positive("rate_kbps", f.rate_kbps.unwrap_or(0))?,
            direction,
            probability,
        }),
        "blackhole" => tcp(TcpFault::Blackhole {
            close_after: f.close_after.map(Dur::get),
            direction,
            probability,
        }),
        "reset" => tcp(TcpFault::Reset {
            after: d(f.after),
            probability,
        }),
        "slicer" => tcp(TcpFault::Slicer {
            average_size: positive("average_size", f.average_size.unwrap_or(0) as u64)? as usize,
            size_variation: f.size_variation.unwrap_or(0),
            delay: d(f.delay),
            direction,
            probability,
        }),
        "limit_data" => tcp(TcpFault::LimitData {
            bytes: positive("bytes", f.bytes.unwrap_or(0))?,
            direction,
            probability,
        }),
        "down" => tcp(TcpFault::Down),
        // Slow queries: hold back the server's answers.
        "pg_slow" => tcp(TcpFault::Latency {
            latency: d(f.delay),
            jitter: d(f.jitter),
            direction: Direction::Downstream,
            probability: 1.0,
        }),
        "webhook_delay" => web(WebhookFault::Delay {
            delay: d(f.delay),
            jitter: d(f.jitter),
            probability,
        }),
        "webhook_hang" => web(WebhookFault::Hang { probability }),
        "webhook_error" => {
            let status = f.status.unwrap_or(0);
            if !(400..=599).contains(&status) {
                return Err(doc.error_at(
                    &at("status"),
                    format!("expected an error status 400-599 (e.g. 500, 503, 429), got {status}"),
                ));
            }
            web(WebhookFault::Error {
                status,
                probability,
                retry_after: f.retry_after.map(Dur::get),
            })
        }
        "webhook_reset" => web(WebhookFault::Reset { probability }),
        "container_stop" => FaultSpec::Container {
            target: container(),
            action: ContainerAction::Stop,
        },
        "container_pause" => FaultSpec::Container {
            target: container(),
            action: ContainerAction::Pause,
        },
        "container_restart" => FaultSpec::Container {
            target: container(),
            action: ContainerAction::Restart,
        },
        "container_kill" => {
            let signal = f.signal.clone().unwrap_or_else(|| "SIGKILL".into());
            if !signal.starts_with("SIG") || signal.len() < 5 {
                return Err(doc.error_at(
                    &at("signal"),
                    format!("expected a signal name like \"SIGKILL\", got \"{signal}\""),
                ));
            }
            FaultSpec::Container {
                target: container(),
                action: ContainerAction::Kill { signal },
            }
        }
        "container_disconnect" => FaultSpec::Container {
            target: container(),
            action: ContainerAction::Disconnect {
                network: f.network.clone().unwrap_or_default(),
            },
        },
        "process_freeze" => FaultSpec::Process {
            target: process(),
            action: ProcessAction::Freeze,
        },
        "process_terminate" | "process_kill" => {
            let p = process();
            if p.start.is_empty() {
                return Err(doc.error_at(
                    &format!("fault[{i}].target"),
                    format!("process \"{target}\" needs `start = [\"command\", …]` so \"{}\" can be reverted", f.kind),
                ));
            }
            let action = if f.kind == "process_kill" {
                ProcessAction::Kill
            } else {
                ProcessAction::Terminate
            };
            FaultSpec::Process { target: p, action }
        }
        "pg_exhaust" => {
            let state = match f.state.as_deref() {
                None | Some("idle") => HoldState::Idle,
                Some("idle_in_transaction") => HoldState::IdleInTransaction,
                Some(other) => {
                    return Err(doc.error_at(
                        &at("state"),
                        format!("expected idle or idle_in_transaction, got \"{other}\""),
                    ));
                }
            };
            let connections = positive("connections", f.connections.unwrap_or(0) as u64)?;
            if connections > 10_000 {
                return Err(doc.error_at(&at("connections"), "expected at most 10000 connections"));
            }
            FaultSpec::PgExhaust {
                connections: connections as u32,
                state,
                application_name: app_name("gameday-fault"),
                evict: f.evict.clone(),
            }
        }
        "pg_lock" => {
            const MODES: [&str; 8] = [
                "access share",
                "row share",
                "row exclusive",
                "share update exclusive",
                "share",
                "share row exclusive",
                "exclusive",
                "access exclusive",
            ];
            let mode = f
                .mode
                .clone()
                .unwrap_or_else(|| "access exclusive".into())
                .to_ascii_lowercase();
            if !MODES.contains(&mode.as_str()) {
                return Err(doc.error_at(
                    &at("mode"),
                    format!(
                        "expected a lock mode ({}), got \"{mode}\"",
                        MODES.join(", ")
                    ),
                ));
            }
            let table = f.table.clone().unwrap_or_default();
            let valid = !table.is_empty()
                && table
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
            if !valid {
                return Err(doc.error_at(
                    &at("table"),
                    format!(
                        "expected a table name like \"tasks\" or \"public.tasks\", got \"{table}\""
                    ),
                ));
            }
            FaultSpec::PgLock {
                table,
                mode,
                application_name: app_name("gameday-fault"),
            }
        }
        "pg_terminate" => FaultSpec::PgTerminate {
            application_name: app_name(""),
        },
        "nats_flood" => {
            let rate = f.rate.unwrap_or(1000.0);
            if !(rate > 0.0 && rate <= 1_000_000.0) {
                return Err(doc.error_at(
                    &at("rate"),
                    format!("expected messages per second above 0, got {rate}"),
                ));
            }
            FaultSpec::NatsFlood {
                subject: f.subject.clone().unwrap_or_default(),
                count: positive("count", f.count.unwrap_or(0))?,
                rate,
                payload_bytes: f.payload_bytes.unwrap_or(128),
            }
        }
        "nats_consumer_pause" => FaultSpec::NatsConsumerPause {
            stream: f.stream.clone().unwrap_or_default(),
            consumer: f.consumer.clone().unwrap_or_default(),
        },
        "pgbouncer_pause" | "pgbouncer_disable" | "pgbouncer_kill" => {
            let database = f.database.clone().unwrap_or_default();
            let plain = !database.is_empty()
                && database
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !plain || database == "pgbouncer" {
                return Err(doc.error_at(
                    &at("database"),
                    format!(
                        "expected a database the bouncer serves, of letters, digits and '_' (not the admin console \"pgbouncer\"), got \"{database}\""
                    ),
                ));
            }
            let action = match f.kind.as_str() {
                "pgbouncer_pause" => BouncerAction::Pause { database },
                "pgbouncer_disable" => BouncerAction::Disable { database },
                _ => BouncerAction::Kill { database },
            };
            FaultSpec::PgBouncer {
                bouncer: target.to_string(),
                action,
            }
        }
        "pgbouncer_pool_size" => {
            let size = f.pool_size.unwrap_or(0);
            if !(1..=10_000).contains(&size) {
                return Err(doc.error_at(
                    &at("pool_size"),
                    format!("expected a pool size from 1 to 10000, got {size}"),
                ));
            }
            FaultSpec::PgBouncer {
                bouncer: target.to_string(),
                action: BouncerAction::PoolSize { size },
            }
        }
        other => unreachable!("kind {other} is in KINDS"),
    })
}
