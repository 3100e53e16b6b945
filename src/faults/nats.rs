//! NATS faults: flood a subject (`nats_flood`) and pause a JetStream consumer
//! (`nats_consumer_pause`, nats-server 2.11+). Both connect with the `[nats]` section's URL and
//! credentials, taken from the config at run time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::context::{GetStreamByNameErrorKind, PublishAckFuture};
use async_nats::jetstream::stream::ConsumerErrorKind;
use async_nats::jetstream::{self, stream::PauseResponse};
use async_nats::{Client, ConnectOptions};
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Description, Fault, FaultContext, FaultError};
use crate::config::Config;

/// The connection name the broker shows in `/connz` for fault connections.
pub const CLIENT_NAME: &str = "gameday-fault";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// JetStream publishes whose acknowledgement is still outstanding, at most.
const MAX_IN_FLIGHT: usize = 256;
/// After a stop, how long the flood waits for the acks of what it already published.
const ACK_DRAIN: Duration = Duration::from_secs(3);
/// A revert stops the flood within this, or abandons the task.
const STOP_WAIT: Duration = Duration::from_secs(4);
/// Consumer pause: each pause lasts this long and is renewed while the fault is active, so a
/// console that dies releases the consumer within this window even before the ledger is read.
const PAUSE_WINDOW: Duration = Duration::from_secs(60);
const PAUSE_RENEW_EVERY: Duration = Duration::from_secs(15);
/// Consumer pause exists from this server version on.
const PAUSE_VERSION: (u64, u64) = (2, 11);

fn redacted(config: &Config, text: &str) -> String {
    config.redactor().text(text).into_owned()
}

/// `NATS 127.0.0.1:4222` for blast radii.
fn server_label(config: &Config) -> String {
    match &config.nats {
        Some(nats) => {
            let url = crate::redact::url(nats.url.split(',').next().unwrap_or(&nats.url));
            let address = url.split("://").nth(1).unwrap_or(&url);
            let address = address.rsplit('@').next().unwrap_or(address);
            format!("NATS {address}")
        }
        None => "NATS".to_string(),
    }
}

async fn connect(config: &Config) -> Result<Client, FaultError> {
    let Some(nats) = &config.nats else {
        return Err(FaultError::Unavailable(
            "the config has no [nats] section".into(),
        ));
    };
    let options = ConnectOptions::new()
        .name(CLIENT_NAME)
        .connection_timeout(CONNECT_TIMEOUT)
        .request_timeout(Some(REQUEST_TIMEOUT));
    let cannot = |why: String| {
        FaultError::Failed(redacted(
            config,
            &format!(
                "cannot connect to {}: {why}",
                crate::connect::nats::shown_urls(nats)
            ),
        ))
    };
    let options = crate::connect::nats::secure(nats, options)
        .await
        .map_err(cannot)?;
    let addrs = crate::connect::nats::server_addrs(nats).map_err(cannot)?;
    match tokio::time::timeout(CONNECT_TIMEOUT, options.connect(addrs)).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(e)) => Err(cannot(crate::connect::describe(
            &crate::connect::chain(&e),
            crate::connect::NATS,
        ))),
        Err(_) => Err(cannot(format!(
            "no answer within {}",
            super::fmt_duration(CONNECT_TIMEOUT)
        ))),
    }
}

fn jetstream(client: &Client) -> jetstream::Context {
    jetstream::ContextBuilder::new()
        .timeout(REQUEST_TIMEOUT)
        .build(client.clone())
}

/// `2.9.10` → (2, 9); anything unreadable → None.
fn major_minor(version: &str) -> Option<(u64, u64)> {
    let mut parts = version.trim_start_matches('v').split('.');
    let number = |p: Option<&str>| -> Option<u64> {
        let digits: String = p?.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    };
    Some((number(parts.next())?, number(parts.next())?))
}

/// `nats_flood`: publish `count` messages of `payload_bytes` to `subject` at `rate` per second,
/// from a background task, until done or reverted.
pub struct NatsFlood {
    subject: String,
    count: u64,
    rate: f64,
    payload_bytes: usize,
    flood: Option<Flood>,
}

struct Flood {
    progress: Arc<Progress>,
    /// The stream that stores the messages, when one listens on the subject.
    stream: Option<String>,
    cancel: CancellationToken,
    task: Option<JoinHandle<()>>,
}

/// An instance dropped without a revert still stops its flood.
impl Drop for Flood {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

#[derive(Default)]
struct Progress {
    /// Published (core NATS) or acknowledged by the stream (JetStream).
    sent: AtomicU64,
    /// Why the flood stopped early, if it did.
    error: Mutex<Option<String>>,
}

impl Progress {
    fn fail(&self, why: String) {
        let mut error = self.error.lock().unwrap_or_else(|p| p.into_inner());
        error.get_or_insert(why);
    }

    fn error(&self) -> Option<String> {
        self.error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

enum Publisher {
    Core(Client),
    JetStream(jetstream::Context),
}

impl NatsFlood {
    pub fn new(subject: &str, count: u64, rate: f64, payload_bytes: usize) -> Self {
        NatsFlood {
            subject: subject.to_string(),
            count,
            rate,
            payload_bytes,
            flood: None,
        }
    }

    /// Messages sent so far: published (core NATS) or stored by the stream (JetStream).
    pub fn sent(&self) -> u64 {
        self.flood
            .as_ref()
            .map_or(0, |f| f.progress.sent.load(Ordering::Relaxed))
    }

    /// Whether the background task has stopped (all sent, reverted, or failed).
    pub fn finished(&self) -> bool {
        self.flood
            .as_ref()
            .is_some_and(|f| f.task.as_ref().is_none_or(JoinHandle::is_finished))
    }

    fn plan(&self) -> String {
        format!(
            "{} messages of {} B to {} at {}/s",
            self.count, self.payload_bytes, self.subject, self.rate
        )
    }
}

impl Fault for NatsFlood {
    fn dry_run<'a>(
        &'a self,
        ctx: &'a FaultContext,
    ) -> BoxFuture<'a, Result<super::Radius, FaultError>> {
        Box::pin(async move {
            let client = connect(&ctx.config).await?;
            let js = jetstream(&client);
            let into = match js.stream_by_subject(self.subject.as_str()).await {
                Ok(stream) => format!("stream {stream} stores them"),
                Err(_) => "no stream captures the subject: plain NATS messages".into(),
            };
            Ok(super::Radius {
                lines: vec![format!(
                    "{}: would publish {}; {into}",
                    server_label(&ctx.config),
                    self.plan()
                )],
                ambiguous: None,
            })
        })
    }

    fn describe(&self, config: &Config) -> Description {
        let params = match &self.flood {
            None => self.plan(),
            Some(flood) => {
                let sent = flood.progress.sent.load(Ordering::Relaxed);
                let into = flood
                    .stream
                    .as_ref()
                    .map(|s| format!(" into stream {s}"))
                    .unwrap_or_default();
                let stopped = flood
                    .progress
                    .error()
                    .map(|e| format!("; stopped: {e}"))
                    .unwrap_or_default();
                format!(
                    "{}: sent {sent} of {}{into}{stopped}",
                    self.plan(),
                    self.count
                )
            }
        };
        Description {
            kind: "nats flood".into(),
            params,
            blast_radius: format!(
                "{}: every subscriber and consumer of {}",
                server_label(config),
                self.subject
            ),
        }
    }

    fn inject<'a>(&'a mut self, ctx: &'a FaultContext) -> BoxFuture<'a, Result<(), FaultError>> {
        Box::pin(async move {
            if self.flood.is_some() {
                return Ok(());
            }
            let config = &ctx.config;
            let client = connect(config).await?;
            // A subject a stream listens on gets JetStream publishes, so the backlog is real
            // and every message is confirmed stored.
            let (publisher, stream) = if client.server_info().jetstream {
                let js = jetstream(&client);
                match js.stream_by_subject(self.subject.as_str()).await {
                    Ok(stream) => (Publisher::JetStream(js), Some(stream)),
                    Err(e) if e.kind() == GetStreamByNameErrorKind::NotFound => {
                        (Publisher::Core(client), None)
                    }
                    Err(e) => {
                        return Err(FaultError::Failed(redacted(
                            config,
                            &format!("cannot find the stream for {}: {e}", self.subject),
                        )));
                    }
                }
            } else {
                (Publisher::Core(client), None)
            };
            let progress = Arc::new(Progress::default());
            let cancel = CancellationToken::new();
            let task = tokio::spawn(publish(
                publisher,
                self.subject.clone(),
                self.count,
                self.rate,
                Bytes::from(vec![b'x'; self.payload_bytes]),
                progress.clone(),
                cancel.clone(),
            ));
            self.flood = Some(Flood {
                progress,
                stream,
                cancel,
                task: Some(task),
            });
            Ok(())
        })
    }

    /// Stops the flood; what was sent stays sent. A fresh instance has nothing to stop (a flood
    /// ends with the console that ran it).
    fn revert<'a>(&'a mut self, _ctx: &'a FaultContext) -> BoxFuture<'a, Result<(), FaultError>> {
        Box::pin(async move {
            let Some(flood) = &mut self.flood else {
                return Ok(());
            };
            flood.cancel.cancel();
            if let Some(mut task) = flood.task.take()
                && tokio::time::timeout(STOP_WAIT, &mut task).await.is_err()
            {
                task.abort();
            }
            tracing::info!(
                "nats_flood stopped: sent {} of {} to {}",
                flood.progress.sent.load(Ordering::Relaxed),
                self.count,
                self.subject
            );
            Ok(())
        })
    }
}

/// The flood itself: paced publishes, at most [`MAX_IN_FLIGHT`] unacknowledged.
async fn publish(
    publisher: Publisher,
    subject: String,
    count: u64,
    rate: f64,
    payload: Bytes,
    progress: Arc<Progress>,
    cancel: CancellationToken,
) {
    let start = Instant::now();
    let mut acks = FuturesUnordered::new();
    let settle =
        |result: Result<jetstream::publish::PublishAck, _>, progress: &Progress| match result {
            Ok(_) => {
                progress.sent.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => progress.fail(format!("the stream refused a message: {e}")),
        };
    for n in 0..count {
        if cancel.is_cancelled() || progress.error().is_some() {
            break;
        }
        let due = start + Duration::from_secs_f64(n as f64 / rate);
        if due > Instant::now() {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep_until(due) => {}
            }
        }
        match &publisher {
            Publisher::Core(client) => match client.publish(subject.clone(), payload.clone()).await
            {
                Ok(()) => {
                    progress.sent.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => progress.fail(format!("publish failed: {e}")),
            },
            Publisher::JetStream(js) => {
                while acks.len() >= MAX_IN_FLIGHT {
                    let waited: Option<Result<_, _>> = tokio::select! {
                        _ = cancel.cancelled() => None,
                        ack = acks.next() => ack,
                    };
                    match waited {
                        Some(result) => settle(result, &progress),
                        None => break,
                    }
                }
                if cancel.is_cancelled() {
                    break;
                }
                match js.publish(subject.clone(), payload.clone()).await {
                    Ok(ack) => acks.push(PublishAckFuture::into_future(ack)),
                    Err(e) => progress.fail(format!("publish failed: {e}")),
                }
                while let Some(Some(result)) = acks.next().now_or_never() {
                    settle(result, &progress);
                }
            }
        }
    }
    // Count what was already published once the server confirms it.
    let drain = async {
        match &publisher {
            Publisher::Core(client) => {
                let _ = client.flush().await;
            }
            Publisher::JetStream(_) => {
                while let Some(result) = acks.next().await {
                    settle(result, &progress);
                }
            }
        }
    };
    if tokio::time::timeout(ACK_DRAIN, drain).await.is_err() {
        progress.fail(format!(
            "some acknowledgements did not arrive within {}",
            super::fmt_duration(ACK_DRAIN)
        ));
    }
}

/// `nats_consumer_pause`: the consumer delivers nothing until reverted (nats-server 2.11+).
pub struct NatsConsumerPause {
    stream: String,
    consumer: String,
    renewal: Option<Renewal>,
}

struct Renewal {
    client: Client,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

/// An instance dropped without a revert stops renewing; the pause then lapses by itself.
impl Drop for Renewal {
    fn drop(&mut self) {
        self.cancel.cancel();
        self.task.abort();
    }
}

impl NatsConsumerPause {
    pub fn new(stream: &str, consumer: &str) -> Self {
        NatsConsumerPause {
            stream: stream.to_string(),
            consumer: consumer.to_string(),
            renewal: None,
        }
    }
}

/// `Ok(false)` when the server is too old for consumer pause.
fn supports_pause(client: &Client) -> bool {
    major_minor(&client.server_info().version).is_some_and(|v| v >= PAUSE_VERSION)
}

async fn pause(
    js: &jetstream::Context,
    stream: &str,
    consumer: &str,
) -> Result<PauseResponse, String> {
    let until = async_nats::datetime::add_std_duration(async_nats::datetime::now(), PAUSE_WINDOW)
        .map_err(|e| e.to_string())?;
    let stream = js
        .get_stream_no_info(stream)
        .await
        .map_err(|e| e.to_string())?;
    stream
        .pause_consumer(consumer, until)
        .await
        .map_err(|e| e.to_string())
}

impl Fault for NatsConsumerPause {
    fn dry_run<'a>(
        &'a self,
        ctx: &'a FaultContext,
    ) -> BoxFuture<'a, Result<super::Radius, FaultError>> {
        Box::pin(async move {
            let client = connect(&ctx.config).await?;
            let js = jetstream(&client);
            let info = async {
                js.get_stream_no_info(&self.stream)
                    .await
                    .map_err(|e| e.to_string())?
                    .consumer_info(&self.consumer)
                    .await
                    .map_err(|e| e.to_string())
            }
            .await
            .map_err(|e| {
                FaultError::Failed(format!("consumer {}/{}: {e}", self.stream, self.consumer))
            })?;
            Ok(super::Radius {
                lines: vec![format!(
                    "{}: consumer {}/{} would stop delivering; now {} pending, {} unacked, {} pull requests waiting{}",
                    server_label(&ctx.config),
                    self.stream,
                    self.consumer,
                    info.num_pending,
                    info.num_ack_pending,
                    info.num_waiting,
                    if info.paused { " (already paused)" } else { "" }
                )],
                ambiguous: None,
            })
        })
    }

    fn describe(&self, config: &Config) -> Description {
        Description {
            kind: "nats consumer pause".into(),
            params: format!(
                "pause consumer {} on stream {} (renewed every {}, lapses {} after the console stops)",
                self.consumer,
                self.stream,
                super::fmt_duration(PAUSE_RENEW_EVERY),
                super::fmt_duration(PAUSE_WINDOW)
            ),
            blast_radius: format!(
                "{}: consumer {}/{} delivers nothing; its backlog grows",
                server_label(config),
                self.stream,
                self.consumer
            ),
        }
    }

    fn inject<'a>(&'a mut self, ctx: &'a FaultContext) -> BoxFuture<'a, Result<(), FaultError>> {
        Box::pin(async move {
            if self.renewal.is_some() {
                return Ok(());
            }
            let config = &ctx.config;
            let client = connect(config).await?;
            if !supports_pause(&client) {
                return Err(FaultError::Refused(format!(
                    "consumer pause needs nats-server 2.11+, this is {}",
                    client.server_info().version
                )));
            }
            let js = jetstream(&client);
            let (stream, consumer) = (self.stream.clone(), self.consumer.clone());
            let paused = pause(&js, &stream, &consumer).await.map_err(|e| {
                FaultError::Failed(redacted(
                    config,
                    &format!("cannot pause {stream}/{consumer}: {e}"),
                ))
            })?;
            if !paused.paused {
                return Err(FaultError::Failed(format!(
                    "the server did not pause {stream}/{consumer} (is its clock more than {} apart?)",
                    super::fmt_duration(PAUSE_WINDOW)
                )));
            }
            let cancel = CancellationToken::new();
            let stop = cancel.clone();
            let task = tokio::spawn(async move {
                let mut every = tokio::time::interval(PAUSE_RENEW_EVERY);
                every.tick().await;
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = every.tick() => {}
                    }
                    if let Err(e) = pause(&js, &stream, &consumer).await {
                        tracing::warn!("cannot renew the pause of {stream}/{consumer}: {e}");
                    }
                }
            });
            self.renewal = Some(Renewal {
                client,
                cancel,
                task,
            });
            Ok(())
        })
    }

    fn revert<'a>(&'a mut self, ctx: &'a FaultContext) -> BoxFuture<'a, Result<(), FaultError>> {
        Box::pin(async move {
            // Dropping the renewal stops it.
            let client = match self.renewal.take() {
                Some(renewal) => renewal.client.clone(),
                None => connect(&ctx.config).await?,
            };
            // An older server cannot have paused anything.
            if !supports_pause(&client) {
                return Ok(());
            }
            let js = jetstream(&client);
            let stream = match js.get_stream_no_info(&self.stream).await {
                Ok(stream) => stream,
                Err(e) => {
                    return Err(FaultError::Failed(redacted(
                        &ctx.config,
                        &format!("cannot resume {}/{}: {e}", self.stream, self.consumer),
                    )));
                }
            };
            match stream.resume_consumer(&self.consumer).await {
                Ok(_) => Ok(()),
                // Nothing left to resume.
                Err(e)
                    if matches!(e.kind(), ConsumerErrorKind::JetStream(ref js)
                        if js.error_code() == ErrorCode::CONSUMER_NOT_FOUND
                            || js.error_code() == ErrorCode::STREAM_NOT_FOUND) =>
                {
                    Ok(())
                }
                Err(e) => Err(FaultError::Failed(redacted(
                    &ctx.config,
                    &format!("cannot resume {}/{}: {e}", self.stream, self.consumer),
                ))),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use async_nats::jetstream::{consumer, stream};

    use super::*;
    use crate::services::testing::test_dir;
    use crate::services::{NatsOptions, NatsServer};

    /// Debian's nats-server 2.9.10, unpacked from `apt-get download nats-server`; tests that
    /// need an old server run only when it is there.
    const OLD_SERVER: &str = ".artifacts/tools/nats29/root/usr/sbin/nats-server";

    fn context(dir: &Path, server: &NatsServer) -> FaultContext {
        let text = format!(
            "[console]\nartifacts = \"{}\"\n[nats]\nurl = \"{}\"\n",
            dir.join("artifacts").display(),
            server.client_url()
        );
        FaultContext::new(
            std::sync::Arc::new(Config::from_text(Path::new("gameday.toml"), &text).unwrap()),
            None,
        )
    }

    /// Stream TASKS on `tasks.>` with a durable pull consumer `workers` that nobody pulls from.
    async fn tasks_stream(server: &NatsServer) -> jetstream::stream::Stream {
        let client = async_nats::connect(server.client_url()).await.unwrap();
        let js = jetstream(&client);
        let stream = js
            .create_stream(stream::Config {
                name: "TASKS".into(),
                subjects: vec!["tasks.>".into()],
                ..Default::default()
            })
            .await
            .unwrap();
        stream
            .create_consumer(consumer::pull::Config {
                durable_name: Some("workers".into()),
                ack_policy: consumer::AckPolicy::Explicit,
                ..Default::default()
            })
            .await
            .unwrap();
        stream
    }

    async fn wait_for<F: Future<Output = bool>>(within: Duration, mut check: impl FnMut() -> F) {
        let deadline = Instant::now() + within;
        while !check().await {
            assert!(
                Instant::now() < deadline,
                "condition not met within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn a_flood_fills_a_consumer_that_does_not_ack_and_revert_stops_it_midway() {
        let dir = test_dir("fault-nats-flood");
        let server = NatsServer::start(NatsOptions::new(dir.join("nats")))
            .await
            .unwrap();
        let ctx = context(&dir, &server);
        let stream = tasks_stream(&server).await;

        let mut flood = NatsFlood::new("tasks.new", 1000, 5000.0, 64);
        assert_eq!(
            flood.describe(&ctx.config).params,
            "1000 messages of 64 B to tasks.new at 5000/s"
        );
        flood.inject(&ctx).await.unwrap();
        flood
            .inject(&ctx)
            .await
            .expect("a second inject is harmless");
        wait_for(Duration::from_secs(10), || async {
            stream.consumer_info("workers").await.unwrap().num_pending == 1000
        })
        .await;
        wait_for(Duration::from_secs(5), || async { flood.finished() }).await;
        assert_eq!(flood.sent(), 1000, "sent once, not twice");
        assert_eq!(
            flood.describe(&ctx.config).params,
            "1000 messages of 64 B to tasks.new at 5000/s: sent 1000 of 1000 into stream TASKS"
        );
        flood.revert(&ctx).await.unwrap();

        let mut endless = NatsFlood::new("tasks.new", 1_000_000, 200.0, 64);
        endless.inject(&ctx).await.unwrap();
        wait_for(Duration::from_secs(10), || async { endless.sent() >= 20 }).await;
        let started = Instant::now();
        endless.revert(&ctx).await.unwrap();
        let stopped_after = started.elapsed();
        let sent = endless.sent();
        assert!(endless.finished(), "the revert stops the flood");
        assert!((20..1_000_000).contains(&sent), "stopped midway: {sent}");
        let params = endless.describe(&ctx.config).params;
        assert!(
            params.contains(&format!("sent {sent} of 1000000")),
            "{params}"
        );
        let info = stream.consumer_info("workers").await.unwrap();
        assert_eq!(
            info.num_pending,
            1000 + sent,
            "every sent message is stored"
        );
        endless
            .revert(&ctx)
            .await
            .expect("a second revert is harmless");
        NatsFlood::new("tasks.new", 10, 1.0, 1)
            .revert(&ctx)
            .await
            .expect("a fresh instance has nothing to stop");
        eprintln!("nats_flood: stopped after {sent} messages, revert took {stopped_after:?}");
        drop(server);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_flood_on_a_subject_without_a_stream_publishes_plain_messages() {
        let dir = test_dir("fault-nats-flood-core");
        let server = NatsServer::start(NatsOptions::new(dir.join("nats")))
            .await
            .unwrap();
        let ctx = context(&dir, &server);
        let client = async_nats::connect(server.client_url()).await.unwrap();
        let mut subscriber = client.subscribe("events.noise").await.unwrap();
        client.flush().await.unwrap();

        let mut flood = NatsFlood::new("events.noise", 50, 10_000.0, 16);
        flood.inject(&ctx).await.unwrap();
        for _ in 0..50 {
            let message = tokio::time::timeout(Duration::from_secs(5), subscriber.next())
                .await
                .expect("a subscriber receives the flood")
                .unwrap();
            assert_eq!(message.payload.len(), 16);
        }
        wait_for(Duration::from_secs(5), || async { flood.finished() }).await;
        assert_eq!(flood.sent(), 50);
        assert!(!flood.describe(&ctx.config).params.contains("stream"));
        flood.revert(&ctx).await.unwrap();
        drop(server);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn pausing_a_consumer_shows_in_its_info_until_reverted() {
        let dir = test_dir("fault-nats-pause");
        let server = NatsServer::start(NatsOptions::new(dir.join("nats")))
            .await
            .unwrap();
        assert!(server.version() >= (2, 11, 0), "needs a 2.11+ server");
        let ctx = context(&dir, &server);
        let stream = tasks_stream(&server).await;
        assert!(!stream.consumer_info("workers").await.unwrap().paused);

        let mut pause = NatsConsumerPause::new("TASKS", "workers");
        pause.inject(&ctx).await.unwrap();
        pause
            .inject(&ctx)
            .await
            .expect("a second inject is harmless");
        let info = stream.consumer_info("workers").await.unwrap();
        assert!(info.paused, "paused in consumer info");
        assert!(
            info.pause_remaining.is_some_and(|r| r <= PAUSE_WINDOW),
            "{:?}",
            info.pause_remaining
        );
        pause.revert(&ctx).await.unwrap();
        assert!(!stream.consumer_info("workers").await.unwrap().paused);
        pause
            .revert(&ctx)
            .await
            .expect("a second revert is harmless");

        // A killed console's pause: a fresh instance resumes it.
        let mut orphan = NatsConsumerPause::new("TASKS", "workers");
        orphan.inject(&ctx).await.unwrap();
        NatsConsumerPause::new("TASKS", "workers")
            .revert(&ctx)
            .await
            .unwrap();
        assert!(!stream.consumer_info("workers").await.unwrap().paused);
        orphan.revert(&ctx).await.unwrap();

        let missing = NatsConsumerPause::new("TASKS", "nobody").inject(&ctx).await;
        assert!(
            matches!(&missing, Err(FaultError::Failed(why)) if why.contains("TASKS/nobody")),
            "{missing:?}"
        );
        drop(server);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn consumer_pause_is_refused_on_nats_server_2_9_with_the_reason() {
        let binary = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(OLD_SERVER);
        if !binary.is_file() {
            eprintln!(
                "skipped: no nats-server 2.9 at {} (apt-get download nats-server; dpkg-deb -x)",
                binary.display()
            );
            return;
        }
        let dir = test_dir("fault-nats-pause-old");
        let server = NatsServer::start(NatsOptions {
            binary: Some(binary),
            ..NatsOptions::new(dir.join("nats"))
        })
        .await
        .unwrap();
        let ctx = context(&dir, &server);
        tasks_stream(&server).await;

        let refused = NatsConsumerPause::new("TASKS", "workers")
            .inject(&ctx)
            .await;
        assert_eq!(
            refused,
            Err(FaultError::Refused(
                "consumer pause needs nats-server 2.11+, this is 2.9.10".into()
            ))
        );
        NatsConsumerPause::new("TASKS", "workers")
            .revert(&ctx)
            .await
            .expect("nothing was paused, so the revert succeeds");
        drop(server);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn server_versions_are_read_as_major_and_minor() {
        assert_eq!(major_minor("2.9.10"), Some((2, 9)));
        assert_eq!(major_minor("2.11.0-RC.1"), Some((2, 11)));
        assert_eq!(major_minor("v2.15.1"), Some((2, 15)));
        assert_eq!(major_minor("garbage"), None);
    }
}
