//! Workers: the durable pull consumer `workers` on `TASKS`.
//!
//! Each message is written to `tasks` (idempotent on the task id), notified, marked notified and
//! only then acked. A redelivered task that is already notified is acked without notifying.
//! The loop survives broker restarts: it pauses while disconnected, and recreates the consumer
//! when a restarted broker lost it.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_nats::StatusCode;
use async_nats::jetstream::{AckKind, Message};
use futures::StreamExt;
use serde::Serialize;
use sqlx::PgPool;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::TaskMessage;
use super::broker::{Broker, CONSUMER, STREAM};
use super::notifier::Notifier;
use super::stats::{Counters, bump};
use super::store;

/// How long one pull request waits on the server for messages.
const FETCH_EXPIRES: Duration = Duration::from_secs(1);
/// Extra wait for the server's end-of-request status before pulling again regardless.
const PULL_GRACE: Duration = Duration::from_secs(1);
/// Redelivery delay for a message that could not be handled now.
const NAK_DELAY: Duration = Duration::from_secs(1);
/// Pause before looking for the broker or the consumer again after a failure.
const RETRY_PAUSE: Duration = Duration::from_millis(250);
/// Bound for acks, naks and pull requests, which the client may have to buffer.
const ACK_TIMEOUT: Duration = Duration::from_secs(2);
/// On shutdown, tasks still running get this long before they are abandoned to redelivery.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

pub(crate) struct Workers {
    pub broker: Broker,
    pub pool: PgPool,
    pub notifier: Arc<Notifier>,
    pub counters: Arc<Counters>,
    pub concurrency: usize,
    pub ack_wait: Duration,
}

/// Shared by the tasks of one worker pool.
struct TaskContext {
    pool: PgPool,
    notifier: Arc<Notifier>,
    counters: Arc<Counters>,
    ack_wait: Duration,
    /// Task ids being handled now, so two copies of one task never notify concurrently.
    in_flight: Mutex<HashSet<Uuid>>,
}

impl Workers {
    pub async fn run(self, shutdown: CancellationToken) {
        let permits = Arc::new(Semaphore::new(self.concurrency.max(1)));
        let context = Arc::new(TaskContext {
            pool: self.pool.clone(),
            notifier: self.notifier.clone(),
            counters: self.counters.clone(),
            ack_wait: self.ack_wait,
            in_flight: Mutex::new(HashSet::new()),
        });
        let mut running = JoinSet::new();
        while !shutdown.is_cancelled() {
            if self.broker.is_connected() {
                match self.broker.ensure_consumer(self.ack_wait).await {
                    Ok(()) => {
                        self.consume(&permits, &context, &mut running, &shutdown)
                            .await
                    }
                    Err(error) => tracing::warn!(%error, "workers cannot reach their consumer"),
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = tokio::time::sleep(RETRY_PAUSE) => {}
            }
        }
        let finished = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while running.join_next().await.is_some() {}
        })
        .await;
        if finished.is_err() {
            tracing::warn!(
                abandoned = running.len(),
                "workers stopped with tasks unfinished; they will be redelivered"
            );
            running.abort_all();
        }
    }

    /// Pulls and dispatches until the consumer is gone or shutdown.
    ///
    /// Every pull request of this session answers to one inbox, kept across reconnects (the
    /// client resubscribes it). A message the server delivers after it ended a pull request
    /// (it does so while shutting down) therefore still reaches a worker, instead of waiting
    /// out the ack wait on a dropped inbox.
    async fn consume(
        &self,
        permits: &Arc<Semaphore>,
        context: &Arc<TaskContext>,
        running: &mut JoinSet<()>,
        shutdown: &CancellationToken,
    ) {
        let client = self.broker.client();
        let inbox = client.new_inbox();
        let mut deliveries =
            match tokio::time::timeout(ACK_TIMEOUT, client.subscribe(inbox.clone())).await {
                Ok(Ok(subscriber)) => subscriber,
                Ok(Err(error)) => {
                    tracing::warn!(%error, "cannot subscribe for deliveries");
                    return;
                }
                Err(_) => {
                    tracing::warn!("subscribing for deliveries timed out");
                    return;
                }
            };
        loop {
            while running.try_join_next().is_some() {}
            // Ask for as many messages as there are idle workers, at least one.
            let first = tokio::select! {
                () = shutdown.cancelled() => return,
                permit = permits.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_closed) => return,
                },
            };
            let mut idle = vec![first];
            while let Ok(permit) = permits.clone().try_acquire_owned() {
                idle.push(permit);
            }
            if self.broker.is_connected() {
                self.request_pull(&inbox, idle.len()).await;
            }
            // While disconnected this only collects late deliveries, and paces the loop.
            let deadline = tokio::time::Instant::now() + FETCH_EXPIRES + PULL_GRACE;
            let mut wanted = idle.len();
            while wanted > 0 {
                let delivery = tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep_until(deadline) => break,
                    delivery = deliveries.next() => delivery,
                };
                let Some(delivery) = delivery else {
                    return;
                };
                match PullEvent::of(delivery.status, delivery.description.as_deref()) {
                    PullEvent::Message => {
                        wanted = wanted.saturating_sub(1);
                        let permit = match idle.pop() {
                            Some(permit) => permit,
                            None => match permits.clone().acquire_owned().await {
                                Ok(permit) => permit,
                                Err(_closed) => return,
                            },
                        };
                        let message = Message {
                            message: delivery,
                            context: self.broker.jetstream().clone(),
                        };
                        running.spawn(handle(message, context.clone(), permit));
                    }
                    PullEvent::Heartbeat => {}
                    PullEvent::RequestEnded => break,
                    PullEvent::ConsumerGone => {
                        // Typically a broker that came back without its store.
                        tracing::warn!(status = ?delivery.status, description = ?delivery.description, "consumer unavailable");
                        return;
                    }
                }
            }
        }
    }

    async fn request_pull(&self, inbox: &str, batch: usize) {
        let request = PullRequest {
            batch,
            expires: u64::try_from(FETCH_EXPIRES.as_nanos()).unwrap_or(u64::MAX),
        };
        let Ok(payload) = serde_json::to_vec(&request) else {
            return;
        };
        let subject = format!("$JS.API.CONSUMER.MSG.NEXT.{STREAM}.{CONSUMER}");
        let publish =
            self.broker
                .client()
                .publish_with_reply(subject, inbox.to_string(), payload.into());
        match tokio::time::timeout(ACK_TIMEOUT, publish).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "cannot request messages"),
            Err(_) => tracing::warn!("requesting messages timed out"),
        }
    }
}

/// JetStream pull request (`$JS.API.CONSUMER.MSG.NEXT`); `expires` in nanoseconds.
#[derive(Serialize)]
struct PullRequest {
    batch: usize,
    expires: u64,
}

/// What one delivery on the pull inbox means.
#[derive(Debug, PartialEq, Eq)]
enum PullEvent {
    Message,
    Heartbeat,
    /// The pull request expired or was ended by the server; pull again.
    RequestEnded,
    /// The consumer (or JetStream) is not there: look it up or create it again.
    ConsumerGone,
}

impl PullEvent {
    fn of(status: Option<StatusCode>, description: Option<&str>) -> Self {
        match status {
            None | Some(StatusCode::OK) => Self::Message,
            Some(StatusCode::IDLE_HEARTBEAT) => Self::Heartbeat,
            Some(StatusCode::TIMEOUT | StatusCode::NOT_FOUND) => Self::RequestEnded,
            Some(StatusCode::REQUEST_TERMINATED) => match description {
                Some(reason)
                    if reason == "Consumer Deleted"
                        || reason == "Consumer is push based"
                        || reason.starts_with("Exceeded MaxRequest") =>
                {
                    Self::ConsumerGone
                }
                // "Server Shutdown", "Leadership Change", ...
                _ => Self::RequestEnded,
            },
            Some(_) => Self::ConsumerGone,
        }
    }
}

/// Claims a task id for this process; released on drop.
struct Claim<'a> {
    context: &'a TaskContext,
    id: Uuid,
}

impl<'a> Claim<'a> {
    fn take(context: &'a TaskContext, id: Uuid) -> Option<Self> {
        let mut in_flight = context
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        in_flight.insert(id).then_some(Self { context, id })
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.context
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
    }
}

async fn handle(message: Message, context: Arc<TaskContext>, _permit: OwnedSemaphorePermit) {
    let task: TaskMessage = match serde_json::from_slice(&message.payload) {
        Ok(task) => task,
        Err(error) => {
            bump(&context.counters.malformed);
            tracing::warn!(%error, "not a task, terminating the message");
            acknowledge(&message, AckKind::Term).await;
            return;
        }
    };
    let Some(_claim) = Claim::take(&context, task.id) else {
        // Another copy is being handled right now; look at this one again after it is done.
        acknowledge(&message, AckKind::Nak(Some(NAK_DELAY))).await;
        return;
    };
    match with_progress(&message, context.ack_wait, process(&task, &context)).await {
        Ok(()) => acknowledge(&message, AckKind::Ack).await,
        Err(()) => acknowledge(&message, AckKind::Nak(Some(NAK_DELAY))).await,
    }
}

/// Write, notify, mark notified. Any failure leaves the message for redelivery.
async fn process(task: &TaskMessage, context: &TaskContext) -> Result<(), ()> {
    let recorded = store::record_task(&context.pool, &context.counters.pool_meter, task)
        .await
        .map_err(|error| {
            store::count_error(&context.counters, &error);
            tracing::warn!(task = %task.id, %error, "cannot record the task");
        })?;
    if recorded.inserted {
        bump(&context.counters.processed);
    }
    if recorded.already_notified {
        bump(&context.counters.duplicates_skipped);
        tracing::debug!(task = %task.id, "redelivered task already notified");
        return Ok(());
    }
    context
        .notifier
        .notify(task)
        .await
        .map_err(|error| tracing::warn!(task = %task.id, %error, "notification gave up, task left for redelivery"))?;
    // If this fails the task is notified again on redelivery, with the same Idempotency-Key.
    store::mark_notified(&context.pool, &context.counters.pool_meter, task.id)
        .await
        .map_err(|error| {
            store::count_error(&context.counters, &error);
            tracing::warn!(task = %task.id, %error, "cannot mark the task notified");
        })
}

/// Runs `work` while telling the server every third of the ack wait that the message is still
/// in hand, so a slow webhook and its retries do not cause a redelivery behind our back.
async fn with_progress<T>(
    message: &Message,
    ack_wait: Duration,
    work: impl Future<Output = T>,
) -> T {
    let mut work = std::pin::pin!(work);
    let mut ticks =
        tokio::time::interval_at(tokio::time::Instant::now() + ack_wait / 3, ack_wait / 3);
    loop {
        tokio::select! {
            output = &mut work => return output,
            _ = ticks.tick() => acknowledge(message, AckKind::Progress).await,
        }
    }
}

async fn acknowledge(message: &Message, kind: AckKind) {
    let label = format!("{kind:?}");
    match tokio::time::timeout(ACK_TIMEOUT, message.ack_with(kind)).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            tracing::warn!(ack = %label, %error, "cannot acknowledge; the message will be redelivered")
        }
        Err(_) => {
            tracing::warn!(ack = %label, "acknowledgement timed out; the message will be redelivered")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_statuses_end_the_request_or_the_consumer() {
        assert_eq!(PullEvent::of(None, None), PullEvent::Message);
        assert_eq!(
            PullEvent::of(Some(StatusCode::IDLE_HEARTBEAT), Some("Idle Heartbeat")),
            PullEvent::Heartbeat
        );
        assert_eq!(
            PullEvent::of(Some(StatusCode::TIMEOUT), Some("Request Timeout")),
            PullEvent::RequestEnded
        );
        // A broker shutting down ends the request but keeps the consumer: pull again later.
        let terminated = Some(StatusCode::REQUEST_TERMINATED);
        assert_eq!(
            PullEvent::of(terminated, Some("Server Shutdown")),
            PullEvent::RequestEnded
        );
        assert_eq!(
            PullEvent::of(terminated, Some("Consumer Deleted")),
            PullEvent::ConsumerGone
        );
        assert_eq!(
            PullEvent::of(terminated, Some("Exceeded MaxRequestBatch of 4")),
            PullEvent::ConsumerGone
        );
        assert_eq!(
            PullEvent::of(Some(StatusCode::NO_RESPONDERS), None),
            PullEvent::ConsumerGone
        );
    }

    #[test]
    fn pull_requests_carry_the_expiry_in_nanoseconds() {
        let request = serde_json::to_value(PullRequest {
            batch: 4,
            expires: 1_000_000_000,
        })
        .expect("serializes");
        assert_eq!(
            request,
            serde_json::json!({ "batch": 4, "expires": 1_000_000_000u64 })
        );
    }
}
