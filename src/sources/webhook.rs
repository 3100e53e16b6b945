//! Webhook source: the proxy daemon forwards every webhook request and streams a record of each;
//! this turns them into metrics. Latency is one point per request plus p50/p95/p99 over a
//! sliding window; counts are cumulative since the console attached.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::{SourceEvent, SourceId, SourceStatus, SourceTx};
use crate::config::WebhookConfig;
use crate::metrics::Stats;
use crate::proxy::{
    ListenerCounters, ListenerState, ProxyClient, ProxyEvent, WebhookOutcome, WebhookRecord,
};

/// Percentiles cover the requests of the last this-long.
pub const WINDOW: Duration = Duration::from_secs(10);

/// Per-webhook running totals.
#[derive(Default)]
struct Tally {
    requests: u64,
    timeouts: u64,
    errors: u64,
    retries: u64,
    statuses: BTreeMap<u16, u64>,
    window: VecDeque<(Instant, f64)>,
}

impl Tally {
    fn add(&mut self, r: &WebhookRecord, now: Instant) -> Vec<(String, f64)> {
        let name = &r.webhook;
        let latency_ms = r.latency.as_secs_f64() * 1000.0;
        self.requests += 1;
        let mut out = vec![
            (format!("webhook.{name}.latency_ms"), latency_ms),
            (format!("webhook.{name}.requests"), self.requests as f64),
        ];
        if let Some(status) = r.status {
            let n = self.statuses.entry(status).or_default();
            *n += 1;
            out.push((format!("webhook.{name}.status.{status}"), *n as f64));
        }
        match &r.outcome {
            WebhookOutcome::Timeout | WebhookOutcome::ClientGone => {
                self.timeouts += 1;
                out.push((format!("webhook.{name}.timeouts"), self.timeouts as f64));
            }
            WebhookOutcome::UpstreamError(_) | WebhookOutcome::Reset => {
                self.errors += 1;
                out.push((format!("webhook.{name}.errors"), self.errors as f64));
            }
            WebhookOutcome::Ok => {}
        }
        if r.retry {
            self.retries += 1;
            out.push((format!("webhook.{name}.retries"), self.retries as f64));
        }
        self.window.push_back((now, latency_ms));
        out
    }

    /// Percentiles over the window (none when no request arrived in it).
    fn percentiles(&mut self, name: &str, now: Instant) -> Vec<(String, f64)> {
        while self
            .window
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > WINDOW)
        {
            self.window.pop_front();
        }
        let Some(st) = Stats::of(self.window.iter().map(|(_, v)| *v)) else {
            return Vec::new();
        };
        vec![
            (format!("webhook.{name}.latency_ms.p50"), st.p50),
            (format!("webhook.{name}.latency_ms.p95"), st.p95),
            (format!("webhook.{name}.latency_ms.p99"), st.p99),
        ]
    }
}

/// Runs until cancelled: one subscription for all webhooks (and the TCP proxies' counters).
pub async fn run(
    webhooks: Vec<WebhookConfig>,
    client: Arc<ProxyClient>,
    interval: Duration,
    tx: SourceTx,
    cancel: CancellationToken,
) {
    let ids: Vec<SourceId> = webhooks
        .iter()
        .map(|w| SourceId::webhook(&w.name))
        .collect();
    let mut tallies: BTreeMap<String, Tally> = BTreeMap::new();
    let mut statuses: BTreeMap<SourceId, SourceStatus> = BTreeMap::new();
    let say =
        |statuses: &mut BTreeMap<SourceId, SourceStatus>, id: &SourceId, status: SourceStatus| {
            let changed = statuses.get(id) != Some(&status);
            statuses.insert(id.clone(), status.clone());
            changed.then(|| SourceEvent::Status {
                source: id.clone(),
                status,
            })
        };
    for id in &ids {
        if let Some(ev) = say(&mut statuses, id, SourceStatus::Connecting) {
            let _ = tx.send(ev).await;
        }
    }
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    'subscribe: loop {
        let mut events = match client.subscribe().await {
            Ok(rx) => rx,
            Err(e) => {
                for id in &ids {
                    if let Some(ev) = say(
                        &mut statuses,
                        id,
                        SourceStatus::down(format!("proxy daemon unreachable: {e}")),
                    ) {
                        let _ = tx.send(ev).await;
                    }
                }
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue 'subscribe,
                }
            }
        };
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                event = events.recv() => match event {
                    None => {
                        for id in &ids {
                            if let Some(ev) = say(&mut statuses, id, SourceStatus::down("the proxy daemon went away")) {
                                let _ = tx.send(ev).await;
                            }
                        }
                        continue 'subscribe;
                    }
                    Some(ProxyEvent::Webhook(record)) => {
                        let source = SourceId::webhook(&record.webhook);
                        let values = tallies.entry(record.webhook.clone()).or_default().add(&record, Instant::now());
                        let _ = tx.try_send(SourceEvent::Samples { source, values });
                    }
                    Some(ProxyEvent::Counters { listeners, .. }) => {
                        for l in listeners {
                            match l.counters {
                                ListenerCounters::Webhook(_) => {
                                    let id = SourceId::webhook(&l.name);
                                    if !ids.contains(&id) {
                                        continue;
                                    }
                                    let status = match &l.state {
                                        ListenerState::Failed { error } => SourceStatus::down(format!("listener {}: {error}", l.listen)),
                                        _ => SourceStatus::Up,
                                    };
                                    if let Some(ev) = say(&mut statuses, &id, status) {
                                        let _ = tx.send(ev).await;
                                    }
                                }
                                ListenerCounters::Tcp(c) => {
                                    let values = vec![
                                        (format!("proxy.{}.active", l.name), c.active as f64),
                                        (format!("proxy.{}.accepted", l.name), c.accepted as f64),
                                        (format!("proxy.{}.connect_errors", l.name), c.connect_errors as f64),
                                    ];
                                    let _ = tx.try_send(SourceEvent::Samples { source: SourceId(format!("proxy.{}", l.name)), values });
                                }
                            }
                        }
                    }
                    Some(_) => {}
                },
                _ = tick.tick() => {
                    let now = Instant::now();
                    for (name, tally) in tallies.iter_mut() {
                        let values = tally.percentiles(name, now);
                        if !values.is_empty() {
                            let _ = tx.try_send(SourceEvent::Samples { source: SourceId::webhook(name), values });
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(
        latency_ms: u64,
        status: Option<u16>,
        outcome: WebhookOutcome,
        retry: bool,
    ) -> WebhookRecord {
        WebhookRecord {
            webhook: "tg".into(),
            started_at: chrono::Utc::now(),
            method: "POST".into(),
            latency: Duration::from_millis(latency_ms),
            status,
            outcome,
            retry,
            fault: None,
        }
    }

    #[test]
    fn records_become_latency_points_and_cumulative_counts() {
        let mut t = Tally::default();
        let now = Instant::now();
        t.add(&record(10, Some(200), WebhookOutcome::Ok, false), now);
        let v = t.add(&record(30_000, None, WebhookOutcome::Timeout, true), now);
        let get = |k: &str| v.iter().find(|(key, _)| key == k).map(|(_, v)| *v);
        assert_eq!(get("webhook.tg.latency_ms"), Some(30_000.0));
        assert_eq!(get("webhook.tg.requests"), Some(2.0));
        assert_eq!(get("webhook.tg.timeouts"), Some(1.0));
        assert_eq!(get("webhook.tg.retries"), Some(1.0));
        let v = t.add(&record(5, Some(503), WebhookOutcome::Ok, false), now);
        assert!(v.contains(&("webhook.tg.status.503".to_string(), 1.0)));
    }

    #[test]
    fn percentiles_cover_only_the_window() {
        let mut t = Tally::default();
        let start = Instant::now();
        for ms in [1, 2, 3, 1000] {
            t.add(&record(ms, Some(200), WebhookOutcome::Ok, false), start);
        }
        let p = t.percentiles("tg", start);
        assert!(p.contains(&("webhook.tg.latency_ms.p99".to_string(), 1000.0)));
        assert!(
            t.percentiles("tg", start + WINDOW + Duration::from_secs(1))
                .is_empty()
        );
    }
}
