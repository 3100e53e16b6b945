//! Starting every configured source, and the loop they share: tick, read the target, report.

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::{SourceEvent, SourceId, SourceStatus, SourceTx};
use crate::config::Config;

/// Starts one task per configured source: NATS, PostgreSQL, each PgBouncer, each HTTP probe,
/// each Prometheus scrape, and the host. Every
/// task stops when `cancel` fires (or when the receiving end of `tx` is gone).
pub fn spawn_all(config: &Config, tx: SourceTx, cancel: CancellationToken) -> JoinSet<()> {
    let mut tasks = JoinSet::new();
    let interval = config.sample_interval();
    let redactor = config.redactor().clone();
    if let Some(nats) = &config.nats {
        tasks.spawn(super::nats::run(
            nats.clone(),
            interval,
            redactor.clone(),
            tx.clone(),
            cancel.clone(),
        ));
    }
    if let Some(postgres) = &config.postgres {
        tasks.spawn(super::postgres::run(
            postgres.clone(),
            interval,
            redactor.clone(),
            tx.clone(),
            cancel.clone(),
        ));
    }
    for bouncer in &config.pgbouncers {
        tasks.spawn(super::pgbouncer::run(
            bouncer.clone(),
            interval,
            redactor.clone(),
            tx.clone(),
            cancel.clone(),
        ));
    }
    // Webhook sources (`config.webhooks`) are started by the webhook proxy's owner, here.
    for probe in &config.probes {
        tasks.spawn(super::probe::run(
            probe.clone(),
            redactor.clone(),
            tx.clone(),
            cancel.clone(),
        ));
    }
    for prometheus in &config.prometheus {
        tasks.spawn(super::prometheus::run(
            prometheus.clone(),
            redactor.clone(),
            tx.clone(),
            cancel.clone(),
        ));
    }
    tasks.spawn(super::host::run(interval, tx, cancel));
    tasks
}

/// What one sampling round found.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Reading {
    /// The target answered. `notes` are problems that do not make the target down (a missing
    /// stream, a broken gauge query).
    Up {
        values: Vec<(String, f64)>,
        notes: Vec<String>,
    },
    /// The target did not answer; `values` still carries what is known (`*.up` = 0, counters).
    Down {
        reason: String,
        values: Vec<(String, f64)>,
    },
}

/// Sends a source's findings to the app: a status only when it changes, samples without
/// waiting (a full channel drops them and counts the loss).
pub(crate) struct Reporter {
    source: SourceId,
    tx: SourceTx,
    cancel: CancellationToken,
    status: Option<SourceStatus>,
    notes: Vec<String>,
    dropped: u64,
}

impl Reporter {
    pub(crate) fn new(source: SourceId, tx: SourceTx, cancel: CancellationToken) -> Self {
        Reporter {
            source,
            tx,
            cancel,
            status: None,
            notes: Vec::new(),
            dropped: 0,
        }
    }

    /// Sends `status` if it differs from the last one sent. Returns false when the source should
    /// stop (cancelled, or nobody listens any more).
    pub(crate) async fn status(&mut self, status: SourceStatus) -> bool {
        if self.status.as_ref() == Some(&status) {
            return !self.tx.is_closed();
        }
        if let SourceStatus::Down { reason } = &status {
            tracing::warn!(source = %self.source, %reason, "source down");
        } else {
            tracing::info!(source = %self.source, status = ?status, "source status");
        }
        self.status = Some(status.clone());
        let event = SourceEvent::Status {
            source: self.source.clone(),
            status,
        };
        // A status change must not be lost, so wait for room; only cancellation ends the wait.
        tokio::select! {
            _ = self.cancel.cancelled() => false,
            sent = self.tx.send(event) => sent.is_ok(),
        }
    }

    /// Sends samples if there is room. Returns false when nobody listens any more.
    pub(crate) fn samples(&mut self, values: Vec<(String, f64)>) -> bool {
        if values.is_empty() {
            return !self.tx.is_closed();
        }
        let event = SourceEvent::Samples {
            source: self.source.clone(),
            values,
        };
        match self.tx.try_send(event) {
            Ok(()) => true,
            Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => {
                self.dropped += 1;
                if self.dropped.is_power_of_two() {
                    tracing::warn!(source = %self.source, dropped = self.dropped, "app is behind: samples dropped");
                }
                true
            }
            Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Problems that leave the target up. `SourceStatus::Up` carries no reason, so they go to the
    /// log, once per change.
    fn notes(&mut self, notes: Vec<String>) {
        if notes != self.notes {
            for note in &notes {
                tracing::warn!(source = %self.source, note = %note, "source problem");
            }
            self.notes = notes;
        }
    }

    /// Reports one reading: status (on change), then its samples.
    pub(crate) async fn reading(&mut self, reading: Reading) -> bool {
        match reading {
            Reading::Up { values, notes } => {
                self.notes(notes);
                self.status(SourceStatus::Up).await && self.samples(values)
            }
            Reading::Down { reason, values } => {
                self.notes(Vec::new());
                self.status(SourceStatus::down(reason)).await && self.samples(values)
            }
        }
    }
}

/// One source's sampling round.
pub(crate) trait Sampler: Send {
    /// Reads the target once. Must bound every await by a deadline.
    fn read(&mut self) -> impl Future<Output = Reading> + Send;
}

/// Runs `sampler` every `period` until cancelled or nobody listens; cancellation interrupts a
/// round at its next await.
pub(crate) async fn every(
    period: Duration,
    reporter: &mut Reporter,
    cancel: CancellationToken,
    sampler: &mut impl Sampler,
) {
    let mut ticker = tokio::time::interval_at(Instant::now(), period);
    // A round slower than the period (a timeout) must not cause a burst of catch-up rounds.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let reading = tokio::select! {
            _ = cancel.cancelled() => return,
            reading = sampler.read() => reading,
        };
        if !reporter.reading(reading).await {
            return;
        }
    }
}

/// "1.5s", "2s", "0.25s": short durations as people write them in reasons.
pub(crate) fn seconds(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}

/// The innermost cause of an error chain, which is usually the one that says what happened
/// ("Connection refused (os error 111)") without wrapper noise.
pub(crate) fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

#[cfg(test)]
pub(crate) mod testing {
    //! Reading what sources send, the way the app does, for tests.

    use std::collections::BTreeMap;
    use std::time::Duration;

    use tokio::sync::mpsc;
    use tokio::time::Instant;

    use crate::sources::{SourceEvent, SourceStatus};

    /// A source running on its own task, with a `Watch` on what it sends.
    pub(crate) struct Running {
        pub(crate) watch: Watch,
        cancel: tokio_util::sync::CancellationToken,
        task: tokio::task::JoinHandle<()>,
    }

    impl Running {
        /// Starts `source(tx, cancel)`, e.g. `|tx, cancel| nats::run(config, interval, redactor, tx, cancel)`.
        pub(crate) fn spawn<F, Fut>(source: F) -> Running
        where
            F: FnOnce(crate::sources::SourceTx, tokio_util::sync::CancellationToken) -> Fut,
            Fut: std::future::Future<Output = ()> + Send + 'static,
        {
            let (tx, rx) = mpsc::channel(crate::sources::CHANNEL_CAPACITY);
            let cancel = tokio_util::sync::CancellationToken::new();
            let task = tokio::spawn(source(tx, cancel.clone()));
            Running {
                watch: Watch::new(rx),
                cancel,
                task,
            }
        }

        pub(crate) async fn stop(self) {
            self.cancel.cancel();
            tokio::time::timeout(Duration::from_secs(5), self.task)
                .await
                .expect("the source stops when cancelled")
                .unwrap();
        }
    }

    /// The latest status and the latest value of every key a source sent.
    pub(crate) struct Watch {
        rx: mpsc::Receiver<SourceEvent>,
        pub(crate) status: Option<SourceStatus>,
        /// Every status in the order received.
        pub(crate) statuses: Vec<SourceStatus>,
        pub(crate) latest: BTreeMap<String, f64>,
    }

    impl Watch {
        pub(crate) fn new(rx: mpsc::Receiver<SourceEvent>) -> Self {
            Watch {
                rx,
                status: None,
                statuses: Vec::new(),
                latest: BTreeMap::new(),
            }
        }

        pub(crate) fn value(&self, key: &str) -> Option<f64> {
            self.latest.get(key).copied()
        }

        pub(crate) fn is_up(&self) -> bool {
            self.status.as_ref().is_some_and(SourceStatus::is_up)
        }

        pub(crate) fn down_reason(&self) -> Option<&str> {
            match &self.status {
                Some(SourceStatus::Down { reason }) => Some(reason),
                _ => None,
            }
        }

        fn apply(&mut self, event: SourceEvent) {
            match event {
                SourceEvent::Samples { values, .. } => {
                    self.latest.extend(values);
                }
                SourceEvent::Status { status, .. } => {
                    self.statuses.push(status.clone());
                    self.status = Some(status);
                }
            }
        }

        /// Applies events until `done` holds; panics with `what` and the last state when it does
        /// not within `within`. Returns how long it took.
        pub(crate) async fn until(
            &mut self,
            within: Duration,
            what: &str,
            mut done: impl FnMut(&Watch) -> bool,
        ) -> Duration {
            let start = Instant::now();
            let deadline = start + within;
            while !done(self) {
                match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                    Ok(Some(event)) => self.apply(event),
                    Ok(None) => panic!("the source stopped before: {what}"),
                    Err(_) => panic!(
                        "not within {within:?}: {what}\nstatus: {:?}\nlatest: {:?}",
                        self.status, self.latest
                    ),
                }
            }
            start.elapsed()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::CHANNEL_CAPACITY;
    use tokio::sync::mpsc;

    /// Every configured source starts, reports under its own id, and stops on cancel.
    #[tokio::test]
    async fn every_configured_source_reports_and_stops_on_cancel() {
        use std::collections::BTreeMap;
        use std::path::Path;

        use crate::services::testing::test_dir;
        use crate::services::{NatsOptions, NatsServer, PgCluster, PgOptions};

        let dir = test_dir("spawn-all");
        let nats = NatsServer::start(NatsOptions::new(dir.join("nats")))
            .await
            .unwrap();
        let postgres = PgCluster::start(PgOptions::new(dir.join("postgres")))
            .await
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = listener.local_addr().unwrap();
        let app = axum::Router::new().route("/health", axum::routing::get(|| async { "ok" }));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

        let text = format!(
            r#"
            [console]
            sample_interval = "200ms"
            [nats]
            url = "{}"
            [postgres]
            url = "{}"
            [[probe]]
            name = "api"
            url = "http://{http}/health"
            interval = "200ms"
            "#,
            nats.client_url(),
            postgres.superuser_url("postgres"),
        );
        let config = Config::from_text(Path::new("gameday.toml"), &text).unwrap();
        let (tx, mut rx) = mpsc::channel(CHANNEL_CAPACITY);
        let cancel = CancellationToken::new();
        let mut tasks = spawn_all(&config, tx, cancel.clone());

        let expected = ["host", "nats", "pg", "probe.api"];
        let mut statuses: BTreeMap<String, SourceStatus> = BTreeMap::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !expected
            .iter()
            .all(|id| statuses.get(*id).is_some_and(SourceStatus::is_up))
        {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(SourceEvent::Status { source, status })) => {
                    statuses.insert(source.to_string(), status);
                }
                Ok(Some(SourceEvent::Samples { .. })) => {}
                other => panic!("not every source came up: {statuses:?} ({other:?})"),
            }
        }

        cancel.cancel();
        let stopped = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(done) = tasks.join_next().await {
                done.expect("a source task never panics");
            }
        })
        .await;
        assert!(stopped.is_ok(), "every source stops within 5 s of cancel");
    }

    #[test]
    fn seconds_are_written_the_short_way() {
        assert_eq!(seconds(Duration::from_millis(1500)), "1.5s");
        assert_eq!(seconds(Duration::from_secs(2)), "2s");
    }

    #[tokio::test]
    async fn a_status_is_sent_once_per_change_and_samples_every_time() {
        let (tx, mut rx) = mpsc::channel(CHANNEL_CAPACITY);
        let mut reporter = Reporter::new(SourceId::host(), tx, CancellationToken::new());
        let up = || Reading::Up {
            values: vec![("host.cpu".into(), 1.0)],
            notes: vec![],
        };
        assert!(reporter.reading(up()).await);
        assert!(reporter.reading(up()).await);
        assert!(
            reporter
                .reading(Reading::Down {
                    reason: "gone".into(),
                    values: vec![],
                })
                .await
        );
        drop(reporter);
        let mut events = Vec::new();
        while let Some(event) = rx.recv().await {
            events.push(event);
        }
        let statuses: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                SourceEvent::Status { status, .. } => Some(status.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(
            statuses,
            vec![SourceStatus::Up, SourceStatus::down("gone")],
            "one status per change"
        );
        let samples = events
            .iter()
            .filter(|e| matches!(e, SourceEvent::Samples { .. }))
            .count();
        assert_eq!(samples, 2, "every up reading sends its samples");
    }

    #[tokio::test]
    async fn a_full_channel_drops_samples_instead_of_blocking() {
        let (tx, _rx) = mpsc::channel(1);
        let mut reporter = Reporter::new(SourceId::host(), tx, CancellationToken::new());
        for _ in 0..10 {
            assert!(reporter.samples(vec![("host.cpu".into(), 1.0)]));
        }
        assert_eq!(reporter.dropped, 9);
    }
}
