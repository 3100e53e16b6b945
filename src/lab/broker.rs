//! NATS JetStream side of the lab: the connection, the `TASKS` stream, the `workers` consumer
//! and bounded publishing.

use std::time::Duration;

use async_nats::connection::State;
use async_nats::jetstream::consumer::{AckPolicy, PullConsumer, pull};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{self, StorageType};
use async_nats::jetstream::{self, Context};
use async_nats::{Client, ConnectOptions, Event};

use super::TaskMessage;

pub const STREAM: &str = "TASKS";
pub const SUBJECT: &str = "tasks.created";
pub const CONSUMER: &str = "workers";
/// Name of the lab's NATS connection, as shown by the server's /connz.
pub const CONNECTION_NAME: &str = "task-tracker";

/// Republishing a queued task within this window is dropped by the server (`Nats-Msg-Id` is the
/// task id), so a publish whose ack was lost and was then queued is not stored twice.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub(crate) enum PublishFailure {
    #[error("not connected to NATS")]
    Disconnected,
    #[error("no publish ack within {0:?}")]
    TimedOut(Duration),
    #[error("publish failed: {0}")]
    Rejected(String),
    #[error("stream {STREAM} does not exist")]
    NoStream,
}

#[derive(Clone)]
pub(crate) struct Broker {
    client: Client,
    jetstream: Context,
    publish_timeout: Duration,
}

impl Broker {
    /// Returns at once even when the server is down: the client keeps reconnecting in the
    /// background, and the lab degrades instead of refusing to start.
    pub async fn connect(
        url: &str,
        publish_timeout: Duration,
    ) -> Result<Self, async_nats::ConnectError> {
        let client = ConnectOptions::new()
            .name(CONNECTION_NAME)
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(2))
            // A frozen broker shows up as disconnected after about three missed pings.
            .ping_interval(Duration::from_secs(5))
            .request_timeout(Some(publish_timeout))
            .reconnect_delay_callback(reconnect_delay)
            .event_callback(|event| async move { log_event(&event) })
            .connect(url)
            .await?;
        let jetstream = jetstream::ContextBuilder::new()
            .timeout(publish_timeout)
            .build(client.clone());
        Ok(Self {
            client,
            jetstream,
            publish_timeout,
        })
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn jetstream(&self) -> &Context {
        &self.jetstream
    }

    pub fn is_connected(&self) -> bool {
        self.client.connection_state() == State::Connected
    }

    pub fn state_name(&self) -> &'static str {
        match self.client.connection_state() {
            State::Connected => "connected",
            State::Disconnected => "disconnected",
            State::Pending => "connecting",
        }
    }

    pub async fn ensure_stream(&self) -> Result<stream::Stream, String> {
        let config = stream::Config {
            name: STREAM.to_string(),
            subjects: vec![SUBJECT.to_string()],
            storage: StorageType::File,
            duplicate_window: DUPLICATE_WINDOW,
            ..Default::default()
        };
        self.bounded(self.jetstream.get_or_create_stream(config))
            .await
            .map_err(|error| format!("cannot create stream {STREAM}: {error}"))
    }

    /// Creates the durable `workers` consumer, or updates its ack wait to the current settings.
    pub async fn ensure_consumer(&self, ack_wait: Duration) -> Result<(), String> {
        let stream = self.ensure_stream().await?;
        let config = pull::Config {
            durable_name: Some(CONSUMER.to_string()),
            filter_subject: SUBJECT.to_string(),
            ack_policy: AckPolicy::Explicit,
            ack_wait,
            ..Default::default()
        };
        let _consumer: PullConsumer = self
            .bounded(stream.create_consumer(config))
            .await
            .map_err(|error| format!("cannot create consumer {CONSUMER}: {error}"))?;
        Ok(())
    }

    /// Publishes a task and waits for the stream's ack, within `--publish-timeout` overall.
    ///
    /// While disconnected the client would buffer the publish and the caller would wait for
    /// nothing, so it fails at once instead.
    pub async fn publish(&self, task: &TaskMessage) -> Result<(), PublishFailure> {
        if !self.is_connected() {
            return Err(PublishFailure::Disconnected);
        }
        let payload = serde_json::to_vec(task)
            .map_err(|error| PublishFailure::Rejected(error.to_string()))?;
        let message = PublishMessage::build()
            .payload(payload.into())
            .message_id(task.id.to_string());
        let publish = async { self.jetstream.send_publish(SUBJECT, message).await?.await };
        match tokio::time::timeout(self.publish_timeout, publish).await {
            Err(_) => Err(PublishFailure::TimedOut(self.publish_timeout)),
            Ok(Ok(_ack)) => Ok(()),
            Ok(Err(error)) => Err(match error.kind() {
                jetstream::context::PublishErrorKind::TimedOut => {
                    PublishFailure::TimedOut(self.publish_timeout)
                }
                jetstream::context::PublishErrorKind::StreamNotFound => PublishFailure::NoStream,
                _ => PublishFailure::Rejected(error.to_string()),
            }),
        }
    }

    async fn bounded<T, E: std::fmt::Display>(
        &self,
        request: impl Future<Output = Result<T, E>>,
    ) -> Result<T, String> {
        match tokio::time::timeout(self.publish_timeout, request).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err(format!("no answer within {:?}", self.publish_timeout)),
        }
    }

    /// Flushes what is still buffered (acks, mostly), within a bound.
    pub async fn close(&self, bound: Duration) {
        if self.is_connected() {
            let _flushed = tokio::time::timeout(bound, self.client.flush()).await;
        }
    }
}

/// The server URL(s) for logs and errors: a password, or a token given as the user name,
/// becomes `***`.
pub(crate) fn redacted_url(urls: &str) -> String {
    let redact = |raw: &str| {
        let Ok(mut url) = reqwest::Url::parse(raw.trim()) else {
            return "<unparsable NATS URL>".to_string();
        };
        if url.password().is_some() {
            let _cannot_fail_with_a_host = url.set_password(Some("***"));
        } else if !url.username().is_empty() {
            let _cannot_fail_with_a_host = url.set_username("***");
        }
        url.to_string()
    };
    urls.split(',').map(redact).collect::<Vec<_>>().join(",")
}

/// Reconnect quickly after a broker restart: 0 ms, then 100 ms steps up to 1 s.
fn reconnect_delay(attempts: usize) -> Duration {
    let steps = u64::try_from(attempts.saturating_sub(1)).unwrap_or(u64::MAX);
    Duration::from_millis(steps.saturating_mul(100).min(1_000))
}

fn log_event(event: &Event) {
    match event {
        Event::Connected => tracing::info!("NATS connected"),
        Event::Disconnected => tracing::warn!("NATS disconnected"),
        // One per failed reconnect attempt while the broker is down.
        Event::ClientError(error) => tracing::debug!(%error, "NATS client error"),
        other => tracing::info!(event = %other, "NATS event"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_server_urls_are_hidden() {
        assert_eq!(
            redacted_url("nats://127.0.0.1:4222"),
            "nats://127.0.0.1:4222"
        );
        assert_eq!(
            redacted_url("nats://app:s3cret@127.0.0.1:4222"),
            "nats://app:***@127.0.0.1:4222"
        );
        assert_eq!(
            redacted_url("nats://t0ken@10.0.0.1:4222,nats://10.0.0.2:4222"),
            "nats://***@10.0.0.1:4222,nats://10.0.0.2:4222"
        );
    }

    #[test]
    fn reconnect_delay_grows_to_a_one_second_cap() {
        assert_eq!(reconnect_delay(0), Duration::ZERO);
        assert_eq!(reconnect_delay(1), Duration::ZERO);
        assert_eq!(reconnect_delay(2), Duration::from_millis(100));
        assert_eq!(reconnect_delay(6), Duration::from_millis(500));
        assert_eq!(reconnect_delay(500), Duration::from_secs(1));
        assert_eq!(reconnect_delay(usize::MAX), Duration::from_secs(1));
    }
}
