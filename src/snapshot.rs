//! `gameday snapshot`: run every source headlessly (one round, or for a while) and print the
//! latest value of every metric key — how scripts and CI read what the console sees. The same
//! collector backs `gameday check`.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::console::{load_config, observe_proxy};
use crate::metrics::MetricStore;
use crate::sources::{self, SourceEvent, SourceId, SourceStatus};

/// What the sources saw.
pub struct Collected {
    pub statuses: BTreeMap<SourceId, SourceStatus>,
    pub metrics: MetricStore,
    /// Problems outside the sources (the proxy daemon).
    pub notes: Vec<String>,
}

/// Runs the sources until each has settled (Up or Down) and delivered a round of samples, or for
/// `duration` when given; never longer than `deadline` for the first round.
pub async fn collect(
    config: &Arc<Config>,
    duration: Option<Duration>,
    deadline: Duration,
) -> Collected {
    let cancel = CancellationToken::new();
    let (tx, mut rx) = mpsc::channel(sources::CHANNEL_CAPACITY);
    let mut tasks = sources::spawn_all(config, tx.clone(), cancel.clone());
    let mut notes = Vec::new();
    let mut expected: Vec<SourceId> = Vec::new();
    if config.nats.is_some() {
        expected.push(SourceId::nats());
    }
    if config.postgres.is_some() {
        expected.push(SourceId::postgres());
    }
    expected.extend(
        config
            .pgbouncers
            .iter()
            .map(|b| sources::pgbouncer::source_id(&b.name)),
    );
    expected.extend(config.probes.iter().map(|p| SourceId::probe(&p.name)));
    expected.extend(
        config
            .prometheus
            .iter()
            .map(|p| SourceId::prometheus(&p.name)),
    );
    // Webhook records only exist while traffic flows: watch them for the duration, do not wait.
    // Read-only: look at a running daemon, never attach to one, configure it or start one.
    let _proxy = match observe_proxy(config).await {
        Ok(Some(client)) if !config.webhooks.is_empty() => {
            tasks.spawn(sources::webhook::run(
                config.webhooks.clone(),
                client.clone(),
                config.sample_interval(),
                tx.clone(),
                cancel.clone(),
            ));
            Some(client)
        }
        Ok(other) => other,
        Err(e) => {
            notes.push(e);
            None
        }
    };
    drop(tx);
    let mut statuses = BTreeMap::new();
    let mut sampled: BTreeMap<SourceId, bool> = BTreeMap::new();
    let mut metrics = MetricStore::new(100_000);
    let start = tokio::time::Instant::now();
    let until = start + duration.unwrap_or(deadline);
    loop {
        let settled = expected.iter().all(|id| {
            matches!(statuses.get(id), Some(SourceStatus::Down { .. }))
                || (matches!(statuses.get(id), Some(SourceStatus::Up))
                    && sampled.get(id).copied().unwrap_or(false))
        });
        if duration.is_none() && settled {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(until) => break,
            ev = rx.recv() => match ev {
                None => break,
                Some(SourceEvent::Status { source, status }) => {
                    statuses.insert(source, status);
                }
                Some(SourceEvent::Samples { source, values }) => {
                    let at = start.elapsed().as_millis() as u64;
                    for (k, v) in values {
                        metrics.record(at, &k, v);
                    }
                    sampled.insert(source, true);
                }
            },
        }
    }
    cancel.cancel();
    tasks.shutdown().await;
    Collected {
        statuses,
        metrics,
        notes,
    }
}

pub fn main(
    config_path: Option<&std::path::Path>,
    duration: Option<Duration>,
    json: bool,
) -> ExitCode {
    let config = match load_config(config_path) {
        Ok(c) => Arc::new(c),
        Err(code) => return code,
    };
    let runtime = match crate::console::runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let collected = runtime.block_on(collect(&config, duration, Duration::from_secs(10)));
    let latest = collected.metrics.latest();
    if json {
        let object: serde_json::Map<String, serde_json::Value> = latest
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::json!(v)))
            .collect();
        println!("{}", serde_json::Value::Object(object));
    } else {
        let width = latest.keys().map(String::len).max().unwrap_or(0);
        for (k, v) in &latest {
            println!("{k:width$}  {}", crate::timeline::fmt_value(*v));
        }
    }
    for (id, status) in &collected.statuses {
        if let SourceStatus::Down { reason } = status {
            eprintln!("{id}: down: {reason}");
        }
    }
    for note in &collected.notes {
        eprintln!("{note}");
    }
    ExitCode::SUCCESS
}
