//! The NATS source: broker round trip, stream sizes and consumer lag.
//!
//! Liveness comes from a request the broker itself answers (`$JS.API.INFO`), bounded by
//! `nats.timeout`: a frozen or partitioned broker keeps its TCP connection open and fires no client
//! event, so waiting for the client's ping timeout would take minutes. A disconnected client
//! (stopped broker) is reported at once from the connection state, with what a TCP connect to the
//! broker's address finds (the client's own error events only say "IO error").
//! `query_account` is not used: it fails on nats-server 2.9.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use crate::connect;
use async_nats::connection::State;
use async_nats::jetstream::{self, consumer, context::RequestErrorKind};
use async_nats::{Client, ConnectOptions, Event, Request};
use futures::TryStreamExt;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::spawn::{Reading, Reporter, Sampler, every, root_cause, seconds};
use super::{SourceId, SourceStatus, SourceTx};
use crate::config::{NatsConfig, NatsWatch};
use crate::redact::Redactor;

/// The connection name the broker shows in `/connz`.
pub const CLIENT_NAME: &str = "gameday-console";

/// Samples the broker every `interval` until `cancel` fires.
pub async fn run(
    config: NatsConfig,
    interval: Duration,
    redactor: Redactor,
    tx: SourceTx,
    cancel: CancellationToken,
) {
    let mut reporter = Reporter::new(SourceId::nats(), tx, cancel.clone());
    if !reporter.status(SourceStatus::Connecting).await {
        return;
    }
    let mut sampler = NatsSampler::new(config, redactor);
    every(interval, &mut reporter, cancel, &mut sampler).await;
    sampler.close().await;
}

/// What to read each round: every stream, or the watched ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Targets {
    Everything,
    /// Stream name → which of its consumers.
    Streams(BTreeMap<String, Consumers>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Consumers {
    All,
    Named(BTreeSet<String>),
}

impl Targets {
    /// An empty watch list means everything; a watch entry without a consumer means every
    /// consumer of that stream, and wins over entries naming consumers of the same stream.
    pub(crate) fn from_watch(watch: &[NatsWatch]) -> Targets {
        if watch.is_empty() {
            return Targets::Everything;
        }
        let mut streams: BTreeMap<String, Consumers> = BTreeMap::new();
        for entry in watch {
            let slot = streams
                .entry(entry.stream.clone())
                .or_insert_with(|| Consumers::Named(BTreeSet::new()));
            match (&entry.consumer, slot) {
                (None, slot) => *slot = Consumers::All,
                (Some(_), Consumers::All) => {}
                (Some(name), Consumers::Named(names)) => {
                    names.insert(name.clone());
                }
            }
        }
        Targets::Streams(streams)
    }
}

/// The metric keys of one consumer.
fn consumer_values(out: &mut Vec<(String, f64)>, stream: &str, info: &consumer::Info) {
    let prefix = format!("nats.{stream}.{}", info.name);
    out.push((format!("{prefix}.pending"), info.num_pending as f64));
    out.push((format!("{prefix}.ack_pending"), info.num_ack_pending as f64));
    out.push((format!("{prefix}.redelivered"), info.num_redelivered as f64));
    out.push((format!("{prefix}.waiting"), info.num_waiting as f64));
}

/// Why a round stopped early: the broker did not answer, so it counts as down. (An error the
/// broker answers about one stream or consumer is a note instead.)
type Unanswered = String;

struct Connection {
    client: Client,
    jetstream: jetstream::Context,
}

impl Sampler for NatsSampler {
    async fn read(&mut self) -> Reading {
        self.round().await
    }
}

struct NatsSampler {
    config: NatsConfig,
    timeout: Duration,
    targets: Targets,
    redactor: Redactor,
    connection: Option<Connection>,
    /// What the client's events said about the connection.
    link: Arc<watch::Sender<Link>>,
    /// The last direct diagnosis of a failing connection, and when it was made.
    diagnosed: Option<(std::time::Instant, Option<String>)>,
}

/// How often a failing connection is diagnosed directly.
const DIAGNOSE_EVERY: Duration = Duration::from_secs(5);

/// The connection as the client's events describe it.
#[derive(Debug, Clone, Default)]
struct Link {
    /// Connected at least once since the client was created.
    connected_once: bool,
    /// The last connection error (cleared on connect).
    last_error: Option<String>,
}

impl NatsSampler {
    fn new(config: NatsConfig, redactor: Redactor) -> Self {
        NatsSampler {
            timeout: config.timeout.get(),
            targets: Targets::from_watch(&config.watch),
            config,
            redactor,
            connection: None,
            link: Arc::new(watch::Sender::new(Link::default())),
            diagnosed: None,
        }
    }

    fn down(&self, reason: impl AsRef<str>) -> Reading {
        Reading::Down {
            reason: self.redactor.text(reason.as_ref()).into_owned(),
            values: vec![("nats.up".into(), 0.0)],
        }
    }

    fn last_error(&self) -> Option<String> {
        self.link.borrow().last_error.clone()
    }

    /// Why the client cannot get in, asked directly at most every few seconds.
    async fn diagnosis(&mut self, timeout: Duration) -> Option<String> {
        let fresh = self
            .diagnosed
            .as_ref()
            .is_some_and(|(at, _)| at.elapsed() < DIAGNOSE_EVERY);
        if !fresh {
            let why = connect::nats::diagnose(&self.config, timeout).await;
            self.diagnosed = Some((std::time::Instant::now(), why));
        }
        self.diagnosed.as_ref().and_then(|(_, why)| why.clone())
    }

    /// A new client connects in the background; give it one timeout to do so, so the first
    /// round does not report a healthy broker as down.
    async fn first_connect(&self) -> bool {
        let mut link = self.link.subscribe();
        matches!(
            tokio::time::timeout(self.timeout, link.wait_for(|l| l.connected_once)).await,
            Ok(Ok(_))
        )
    }

    /// Creates the client once; it then reconnects by itself, forever, with short delays.
    async fn connect(&mut self) -> Result<&Connection, String> {
        if self.connection.is_none() {
            let link = self.link.clone();
            let mut options = ConnectOptions::new()
                .name(CLIENT_NAME)
                .retry_on_initial_connect()
                .max_reconnects(None)
                .reconnect_delay_callback(|attempt| {
                    Duration::from_millis(100 * attempt as u64).min(Duration::from_secs(1))
                })
                .connection_timeout(self.timeout)
                .request_timeout(Some(self.timeout))
                // A dead peer that never closed the socket is replaced within ~3 pings.
                .ping_interval(Duration::from_secs(5))
                .event_callback(move |event| {
                    record_event(&link, &event);
                    async {}
                });
            options = connect::nats::secure(&self.config, options).await?;
            let addrs = connect::nats::server_addrs(&self.config)?;
            // With retry_on_initial_connect this returns at once; the bound is for safety.
            let client = tokio::time::timeout(self.timeout, options.connect(addrs))
                .await
                .map_err(|_| format!("connect did not return within {}", seconds(self.timeout)))?
                .map_err(|e| {
                    format!(
                        "cannot connect to {}: {}",
                        connect::nats::shown_urls(&self.config),
                        connect::describe(&connect::chain(&e), connect::NATS)
                    )
                })?;
            let jetstream = jetstream::ContextBuilder::new()
                .timeout(self.timeout)
                .build(client.clone());
            self.connection = Some(Connection { client, jetstream });
        }
        Ok(self.connection.as_ref().expect("set above"))
    }

    async fn round(&mut self) -> Reading {
        let timeout = self.timeout;
        let connection = match self.connect().await {
            Ok(connection) => connection,
            Err(reason) => return self.down(reason),
        };
        let client = connection.client.clone();
        let jetstream = connection.jetstream.clone();
        let state = match client.connection_state() {
            State::Pending if self.first_connect().await => State::Connected,
            state => state,
        };
        match state {
            State::Connected => {}
            state => {
                let what = if state == State::Pending {
                    "not connected yet"
                } else {
                    "disconnected"
                };
                let address = first_server_address(&self.config.url);
                let unreachable = match &address {
                    Some(address) => tcp_check(address, timeout).await,
                    None => None,
                };
                let reason = match (unreachable, self.last_error()) {
                    (Some(unreachable), _) => format!("{what}: {unreachable}"),
                    // The address accepts connections but the client does not get in: ask once
                    // directly, since its events say only "IO error" or "TLS error".
                    (None, last) => match self.diagnosis(timeout).await {
                        Some(why) => format!("{what}: {why}"),
                        None => match last {
                            Some(error) => format!("{what}: {error}"),
                            None => {
                                format!("{what} from {}", connect::nats::shown_urls(&self.config))
                            }
                        },
                    },
                };
                return self.down(reason);
            }
        }

        let (rtt, jetstream_enabled) = match round_trip(&client, timeout).await {
            Ok(answer) => answer,
            Err(reason) => return self.down(reason),
        };
        let mut values = vec![
            ("nats.up".to_string(), 1.0),
            ("nats.rtt_ms".to_string(), rtt.as_secs_f64() * 1000.0),
        ];
        let mut notes = Vec::new();
        if !jetstream_enabled {
            notes.push("JetStream is not enabled on this server".to_string());
            return Reading::Up { values, notes };
        }
        // Each request is bounded by the JetStream timeout; the round as a whole by a few of them.
        let round_limit = timeout * 4;
        let streams = tokio::time::timeout(
            round_limit,
            read_streams(&jetstream, &self.targets, timeout, &mut values, &mut notes),
        )
        .await;
        match streams {
            Ok(Ok(())) => Reading::Up { values, notes },
            Ok(Err(reason)) => self.down(reason),
            Err(_) => self.down(format!(
                "stream and consumer info took longer than {}",
                seconds(round_limit)
            )),
        }
    }

    async fn close(&mut self) {
        if let Some(connection) = self.connection.take() {
            // Draining a frozen broker would hang; a bounded drain is a courtesy.
            let _ = tokio::time::timeout(self.timeout, connection.client.drain()).await;
        }
    }
}

fn record_event(link: &watch::Sender<Link>, event: &Event) {
    let error = match event {
        Event::Connected => {
            link.send_modify(|l| {
                l.connected_once = true;
                l.last_error = None;
            });
            return;
        }
        Event::ClientError(error) => {
            let text = error.to_string();
            text.strip_prefix("nats: ").unwrap_or(&text).to_string()
        }
        Event::ServerError(error) => format!("server error: {error}"),
        _ => return,
    };
    link.send_modify(|l| l.last_error = Some(error));
}

/// `host:port` of the first server in a NATS URL list (`nats://u:p@h:4222,nats://h2:4222`).
fn first_server_address(urls: &str) -> Option<String> {
    let first = urls.split(',').next()?.trim();
    let rest = first.split_once("://").map_or(first, |(_, rest)| rest);
    let authority = rest.split(['/', '?']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host_port.is_empty() {
        return None;
    }
    let has_port = host_port
        .rsplit_once(':')
        .is_some_and(|(_, port)| port.parse::<u16>().is_ok());
    Some(if has_port {
        host_port.to_string()
    } else {
        format!("{host_port}:4222")
    })
}

/// Why a plain TCP connect to the server fails ("127.0.0.1:4222: connection refused"), or
/// `None` when it succeeds.
async fn tcp_check(address: &str, timeout: Duration) -> Option<String> {
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(address)).await {
        Ok(Ok(_)) => None,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            Some(format!("{address}: connection refused"))
        }
        Ok(Err(e)) => Some(format!("{address}: {e}")),
        Err(_) => Some(format!("{address}: no answer within {}", seconds(timeout))),
    }
}

fn no_answer(timeout: Duration) -> Unanswered {
    format!(
        "no answer within {} (frozen or partitioned?)",
        seconds(timeout)
    )
}

/// Times a request the broker answers itself. "No responders" is an answer too: the server is
/// alive, only JetStream is off.
async fn round_trip(client: &Client, timeout: Duration) -> Result<(Duration, bool), Unanswered> {
    let started = Instant::now();
    let request = Request::new().timeout(Some(timeout));
    let answer = tokio::time::timeout(
        timeout + Duration::from_millis(100),
        client.send_request("$JS.API.INFO", request),
    )
    .await;
    let rtt = started.elapsed();
    match answer {
        Err(_) => Err(no_answer(timeout)),
        Ok(Ok(_)) => Ok((rtt, true)),
        Ok(Err(e)) => match e.kind() {
            async_nats::client::RequestErrorKind::NoResponders => Ok((rtt, false)),
            async_nats::client::RequestErrorKind::TimedOut => Err(no_answer(timeout)),
            _ => Err(format!("request failed: {}", root_cause(&e))),
        },
    }
}

/// JetStream request failures: a timeout or no responders means the broker is not answering.
fn request_failure(
    kind: &RequestErrorKind,
    error: &dyn std::fmt::Display,
    timeout: Duration,
) -> Unanswered {
    match kind {
        RequestErrorKind::TimedOut => no_answer(timeout),
        _ => format!("JetStream request failed: {error}"),
    }
}

async fn read_streams(
    js: &jetstream::Context,
    targets: &Targets,
    timeout: Duration,
    values: &mut Vec<(String, f64)>,
    notes: &mut Vec<String>,
) -> Result<(), Unanswered> {
    match targets {
        Targets::Everything => {
            let streams: Vec<_> = js
                .streams()
                .try_collect()
                .await
                .map_err(|e| request_failure(&e.kind(), &e, timeout))?;
            for info in streams {
                let name = info.config.name.clone();
                values.push((format!("nats.{name}.messages"), info.state.messages as f64));
                let stream = js
                    .get_stream_no_info(&name)
                    .await
                    .map_err(|e| e.to_string())?;
                read_all_consumers(&stream, &name, timeout, values, notes).await?;
            }
        }
        Targets::Streams(streams) => {
            for (name, consumers) in streams {
                let stream = match js.get_stream(name).await {
                    Ok(stream) => stream,
                    Err(e) => match e.kind() {
                        jetstream::context::GetStreamErrorKind::Request => {
                            return Err(no_answer_or(&e, timeout));
                        }
                        _ => {
                            notes.push(format!("stream {name}: {}", describe_stream_error(&e)));
                            continue;
                        }
                    },
                };
                values.push((
                    format!("nats.{name}.messages"),
                    stream.cached_info().state.messages as f64,
                ));
                match consumers {
                    Consumers::All => {
                        read_all_consumers(&stream, name, timeout, values, notes).await?
                    }
                    Consumers::Named(names) => {
                        for consumer in names {
                            read_consumer(&stream, name, consumer, timeout, values, notes).await?;
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// A `get_stream` transport failure: its source says whether it timed out.
fn no_answer_or(error: &jetstream::context::GetStreamError, timeout: Duration) -> Unanswered {
    let text = root_cause(error);
    if text.contains("timed out") {
        no_answer(timeout)
    } else {
        format!("JetStream request failed: {text}")
    }
}

fn describe_stream_error(error: &jetstream::context::GetStreamError) -> String {
    match error.kind() {
        jetstream::context::GetStreamErrorKind::JetStream(e)
            if e.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
        {
            "not found".to_string()
        }
        jetstream::context::GetStreamErrorKind::JetStream(e) => e.to_string(),
        other => other.to_string(),
    }
}

async fn read_all_consumers<I>(
    stream: &jetstream::stream::Stream<I>,
    stream_name: &str,
    timeout: Duration,
    values: &mut Vec<(String, f64)>,
    notes: &mut Vec<String>,
) -> Result<(), Unanswered> {
    match stream.consumers().try_collect::<Vec<_>>().await {
        Ok(infos) => {
            for info in &infos {
                consumer_values(values, stream_name, info);
            }
            Ok(())
        }
        Err(e) => match e.kind() {
            RequestErrorKind::TimedOut | RequestErrorKind::NoResponders => {
                Err(request_failure(&e.kind(), &e, timeout))
            }
            // The server answered with an error (the stream went away meanwhile).
            _ => {
                notes.push(format!("consumers of {stream_name}: {e}"));
                Ok(())
            }
        },
    }
}

async fn read_consumer<I>(
    stream: &jetstream::stream::Stream<I>,
    stream_name: &str,
    consumer: &str,
    timeout: Duration,
    values: &mut Vec<(String, f64)>,
    notes: &mut Vec<String>,
) -> Result<(), Unanswered> {
    use jetstream::context::ConsumerInfoErrorKind as Kind;
    match stream.consumer_info(consumer).await {
        Ok(info) => {
            consumer_values(values, stream_name, &info);
            Ok(())
        }
        Err(e) => match e.kind() {
            Kind::TimedOut => Err(no_answer(timeout)),
            Kind::NoResponders | Kind::Request => Err(format!("JetStream request failed: {e}")),
            Kind::NotFound => {
                notes.push(format!("consumer {stream_name}.{consumer}: not found"));
                Ok(())
            }
            _ => {
                notes.push(format!("consumer {stream_name}.{consumer}: {e}"));
                Ok(())
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use async_nats::jetstream::consumer::{AckPolicy, PullConsumer, pull};
    use async_nats::jetstream::stream;
    use futures::StreamExt;

    use super::*;
    use crate::services::testing::test_dir;
    use crate::services::{NatsOptions, NatsServer};
    use crate::sources::spawn::testing::Running;
    use crate::toml_input::Dur;

    /// The claim under test: down within 3 s of a stop or a freeze.
    const DOWN_WITHIN: Duration = Duration::from_secs(3);
    const WITHIN: Duration = Duration::from_secs(15);

    async fn start_server(name: &str) -> NatsServer {
        NatsServer::start(NatsOptions::new(test_dir(name)))
            .await
            .expect("start nats-server")
    }

    fn config(server: &NatsServer, watch: Vec<NatsWatch>) -> NatsConfig {
        NatsConfig {
            url: server.client_url(),
            monitor_url: None,
            timeout: Dur::from_millis(1500),
            user: None,
            password: None,
            token: None,
            creds: None,
            nkey: None,
            ca_file: None,
            cert_file: None,
            key_file: None,
            tls_first: false,
            watch,
        }
    }

    fn start_source(config: NatsConfig, interval: Duration) -> Running {
        Running::spawn(|tx, cancel| run(config, interval, Redactor::default(), tx, cancel))
    }

    /// A stream `name` on `name.>` with a durable pull consumer that must ack explicitly.
    async fn stream_with_consumer(
        js: &jetstream::Context,
        name: &str,
        consumer: &str,
    ) -> PullConsumer {
        let stream = js
            .create_stream(stream::Config {
                name: name.into(),
                subjects: vec![format!("{name}.>")],
                ..Default::default()
            })
            .await
            .unwrap();
        stream
            .create_consumer(pull::Config {
                durable_name: Some(consumer.into()),
                ack_policy: AckPolicy::Explicit,
                ..Default::default()
            })
            .await
            .unwrap()
    }

    async fn publish(js: &jetstream::Context, subject: &str, count: usize) {
        for i in 0..count {
            js.publish(subject.to_string(), format!("task {i}").into())
                .await
                .unwrap()
                .await
                .unwrap();
        }
    }

    async fn test_client(server: &NatsServer) -> jetstream::Context {
        jetstream::new(async_nats::connect(server.client_url()).await.unwrap())
    }

    #[tokio::test]
    async fn undelivered_and_unacked_messages_are_pending_and_ack_pending() {
        let server = start_server("nats-lag").await;
        let js = test_client(&server).await;
        let consumer = stream_with_consumer(&js, "TASKS", "workers").await;
        publish(&js, "TASKS.new", 100).await;

        let watch = vec![watch("TASKS", Some("workers"))];
        let mut source = start_source(config(&server, watch), Duration::from_millis(200));
        source
            .watch
            .until(WITHIN, "100 pending", |w| {
                w.value("nats.TASKS.workers.pending") == Some(100.0)
            })
            .await;
        assert_eq!(
            source.watch.statuses,
            vec![SourceStatus::Connecting, SourceStatus::Up],
            "a healthy broker is never reported down, not even while the client connects"
        );
        assert_eq!(source.watch.value("nats.TASKS.messages"), Some(100.0));
        assert_eq!(source.watch.value("nats.up"), Some(1.0));
        let rtt = source.watch.value("nats.rtt_ms").unwrap();
        assert!(rtt > 0.0 && rtt < 1500.0, "rtt {rtt} ms");

        // A worker takes 10 and never acks them.
        let mut batch = consumer.fetch().max_messages(10).messages().await.unwrap();
        let mut taken = 0;
        while let Some(message) = batch.next().await {
            message.unwrap();
            taken += 1;
        }
        assert_eq!(taken, 10);
        source
            .watch
            .until(WITHIN, "10 ack pending, 90 pending", |w| {
                w.value("nats.TASKS.workers.ack_pending") == Some(10.0)
                    && w.value("nats.TASKS.workers.pending") == Some(90.0)
            })
            .await;
        assert_eq!(
            source.watch.value("nats.TASKS.workers.redelivered"),
            Some(0.0)
        );
        assert_eq!(source.watch.value("nats.TASKS.workers.waiting"), Some(0.0));
        source.stop().await;
    }

    #[tokio::test]
    async fn an_empty_watch_list_discovers_every_stream_and_consumer() {
        let server = start_server("nats-discover").await;
        let js = test_client(&server).await;
        stream_with_consumer(&js, "ORDERS", "billing").await;
        stream_with_consumer(&js, "EVENTS", "audit").await;
        js.get_stream("EVENTS")
            .await
            .unwrap()
            .create_consumer(pull::Config {
                durable_name: Some("mailer".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        publish(&js, "ORDERS.placed", 3).await;
        publish(&js, "EVENTS.seen", 5).await;

        let mut source = start_source(config(&server, vec![]), Duration::from_millis(200));
        source
            .watch
            .until(WITHIN, "every stream and consumer", |w| {
                w.value("nats.ORDERS.messages") == Some(3.0)
                    && w.value("nats.EVENTS.messages") == Some(5.0)
                    && w.value("nats.ORDERS.billing.pending") == Some(3.0)
                    && w.value("nats.EVENTS.audit.pending") == Some(5.0)
                    && w.value("nats.EVENTS.mailer.pending") == Some(5.0)
            })
            .await;
        source.stop().await;
    }

    #[tokio::test]
    async fn a_missing_stream_or_consumer_is_a_missing_key_not_a_down_broker() {
        let server = start_server("nats-missing").await;
        let js = test_client(&server).await;
        stream_with_consumer(&js, "TASKS", "workers").await;
        publish(&js, "TASKS.new", 2).await;

        let watch = vec![
            watch("TASKS", Some("workers")),
            watch("TASKS", Some("ghost")),
            watch("NOPE", None),
        ];
        let mut source = start_source(config(&server, watch), Duration::from_millis(200));
        source
            .watch
            .until(WITHIN, "the real consumer read twice", |w| {
                w.value("nats.TASKS.workers.pending") == Some(2.0)
            })
            .await;
        assert!(source.watch.is_up(), "status: {:?}", source.watch.status);
        assert!(
            source
                .watch
                .latest
                .keys()
                .all(|k| !k.contains("ghost") && !k.starts_with("nats.NOPE")),
            "keys: {:?}",
            source.watch.latest.keys()
        );
        source.stop().await;
    }

    #[tokio::test]
    async fn a_stopped_broker_is_down_within_3s_and_up_after_restart() {
        let mut server = start_server("nats-stop").await;
        let mut source = start_source(config(&server, vec![]), Duration::from_secs(1));
        source.watch.until(WITHIN, "up", |w| w.is_up()).await;

        let stopped = Instant::now();
        server.stop().await.unwrap();
        source
            .watch
            .until(WITHIN, "down after stop", |w| w.down_reason().is_some())
            .await;
        let time_to_down = stopped.elapsed();
        let reason = source.watch.down_reason().unwrap().to_string();
        eprintln!("nats stop: down after {time_to_down:?}: {reason}");
        assert!(time_to_down < DOWN_WITHIN, "down after {time_to_down:?}");
        assert_eq!(
            reason,
            format!(
                "disconnected: 127.0.0.1:{}: connection refused",
                server.port()
            )
        );

        server.start_again().await.unwrap();
        let restarted = Instant::now();
        source
            .watch
            .until(WITHIN, "up after restart", |w| {
                w.is_up() && w.value("nats.up") == Some(1.0)
            })
            .await;
        eprintln!("nats restart: up after {:?}", restarted.elapsed());
        source.stop().await;
    }

    #[tokio::test]
    async fn a_frozen_broker_is_down_within_3s_and_up_after_thaw() {
        let server = start_server("nats-freeze").await;
        let mut source = start_source(config(&server, vec![]), Duration::from_secs(1));
        source.watch.until(WITHIN, "up", |w| w.is_up()).await;

        let frozen = Instant::now();
        server.freeze().unwrap();
        source
            .watch
            .until(WITHIN, "down while frozen", |w| w.down_reason().is_some())
            .await;
        let time_to_down = frozen.elapsed();
        eprintln!("nats freeze: down after {time_to_down:?}");
        assert!(time_to_down < DOWN_WITHIN, "down after {time_to_down:?}");
        assert_eq!(
            source.watch.down_reason(),
            Some("no answer within 1.5s (frozen or partitioned?)")
        );

        server.thaw().unwrap();
        let thawed = Instant::now();
        source
            .watch
            .until(WITHIN, "up after thaw", |w| w.is_up())
            .await;
        eprintln!("nats thaw: up after {:?}", thawed.elapsed());
        source.stop().await;
    }

    fn watch(stream: &str, consumer: Option<&str>) -> NatsWatch {
        NatsWatch {
            stream: stream.into(),
            consumer: consumer.map(str::to_string),
            warn: None,
            crit: None,
        }
    }

    #[test]
    fn the_first_server_address_is_found_in_url_lists() {
        let cases = [
            ("nats://127.0.0.1:4222", "127.0.0.1:4222"),
            ("nats://u:p@h1:5000,nats://h2:4222", "h1:5000"),
            ("tls://tok@broker", "broker:4222"),
            ("127.0.0.1:4333", "127.0.0.1:4333"),
        ];
        for (url, address) in cases {
            assert_eq!(first_server_address(url).as_deref(), Some(address), "{url}");
        }
    }

    #[test]
    fn an_empty_watch_list_means_every_stream() {
        assert_eq!(Targets::from_watch(&[]), Targets::Everything);
    }

    #[test]
    fn a_stream_without_consumer_means_all_its_consumers() {
        let targets = Targets::from_watch(&[
            watch("TASKS", Some("workers")),
            watch("TASKS", None),
            watch("EVENTS", Some("audit")),
            watch("EVENTS", Some("mailer")),
        ]);
        let expected = BTreeMap::from([
            ("TASKS".to_string(), Consumers::All),
            (
                "EVENTS".to_string(),
                Consumers::Named(BTreeSet::from(["audit".into(), "mailer".into()])),
            ),
        ]);
        assert_eq!(targets, Targets::Streams(expected));
    }
}
