//! Workers: the durable pull consumer `workers` on `TASKS`.
//!
//! Each message is written to `tasks` (idempotent on the task id), notified, marked notified and
//! only then acked. A redelivered task that is already notified is acked without notifying.
//! The loop survives broker restarts: it waits for the connection, recreates the consumer and
//! fetches again.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::{AckKind, Message};
use futures::StreamExt;
use sqlx::PgPool;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::TaskMessage;
use super::broker::Broker;
use super::notifier::Notifier;
use super::stats::{Counters, bump};
use super::store;

/// How long one pull request waits on the server for messages.
const FETCH_EXPIRES: Duration = Duration::from_secs(1);
/// Redelivery delay for a message that could not be handled now.
const NAK_DELAY: Duration = Duration::from_secs(1);
/// Pause before looking for the broker or the consumer again after a failure.
const RETRY_PAUSE: Duration = Duration::from_millis(250);
/// Bound for acks and naks, which the client may have to buffer.
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
                    Ok(consumer) => {
                        self.consume(&consumer, &permits, &context, &mut running, &shutdown)
                            .await;
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

    /// Fetches and dispatches until the consumer fails, the broker goes away or shutdown.
    async fn consume(
        &self,
        consumer: &PullConsumer,
        permits: &Arc<Semaphore>,
        context: &Arc<TaskContext>,
        running: &mut JoinSet<()>,
        shutdown: &CancellationToken,
    ) {
        while self.broker.is_connected() && !shutdown.is_cancelled() {
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
            let request = consumer
                .batch()
                .max_messages(idle.len())
                .expires(FETCH_EXPIRES)
                .messages();
            let mut batch = match tokio::time::timeout(FETCH_EXPIRES * 2, request).await {
                Ok(Ok(batch)) => batch,
                Ok(Err(error)) => {
                    tracing::warn!(%error, "fetch failed");
                    return;
                }
                Err(_) => {
                    tracing::warn!("fetch request got no answer");
                    return;
                }
            };
            loop {
                let next = tokio::select! {
                    () = shutdown.cancelled() => return,
                    next = batch.next() => next,
                };
                match next {
                    None => break,
                    Some(Ok(message)) => {
                        let permit = match idle.pop() {
                            Some(permit) => permit,
                            None => match permits.clone().acquire_owned().await {
                                Ok(permit) => permit,
                                Err(_closed) => return,
                            },
                        };
                        running.spawn(handle(message, context.clone(), permit));
                    }
                    Some(Err(error)) => {
                        // Typically the consumer vanished with a restarted broker's store.
                        tracing::warn!(%error, "consumer error");
                        return;
                    }
                }
            }
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
    let recorded = store::record_task(&context.pool, task)
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
    store::mark_notified(&context.pool, task.id)
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
