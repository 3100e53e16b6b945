//! Telegram-like notifications: `POST {webhook}/bot{token}/sendMessage` with bounded retries.
//!
//! The endpoint URL embeds the bot token, so it is never logged and errors are stripped of
//! their URL before they are.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use reqwest::StatusCode;
use serde::Serialize;

use super::TaskMessage;
use super::stats::{Counters, bump};

/// First retry waits about this long; each further retry doubles it.
const BACKOFF_BASE: Duration = Duration::from_millis(200);
const BACKOFF_CAP: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum NotifyError {
    #[error("webhook timed out")]
    TimedOut,
    #[error("webhook unreachable: {0}")]
    Unreachable(String),
    #[error("webhook answered {0}")]
    Status(StatusCode),
}

#[derive(Debug, Clone)]
pub(crate) struct NotifierSettings {
    pub webhook_url: String,
    pub bot_token: String,
    pub chat_id: String,
    /// `None` waits for the webhook as long as it takes (graceful degradation switched off).
    pub timeout: Option<Duration>,
    pub attempts: u32,
}

#[derive(Serialize)]
struct SendMessage<'a> {
    chat_id: &'a str,
    text: String,
}

pub(crate) struct Notifier {
    client: reqwest::Client,
    endpoint: String,
    chat_id: String,
    attempts: u32,
    counters: Arc<Counters>,
}

impl Notifier {
    pub fn new(settings: &NotifierSettings, counters: Arc<Counters>) -> Result<Self, String> {
        let mut builder = crate::http_client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(2));
        if let Some(timeout) = settings.timeout {
            builder = builder.timeout(timeout);
        }
        let client = builder
            .build()
            .map_err(|error| format!("cannot build the webhook client: {}", error.without_url()))?;
        Ok(Self {
            client,
            endpoint: endpoint(&settings.webhook_url, &settings.bot_token),
            chat_id: settings.chat_id.clone(),
            attempts: settings.attempts.max(1),
            counters,
        })
    }

    /// Sends the notification, retrying with exponential backoff and jitter. The task id is the
    /// `Idempotency-Key`, so a receiver can drop the copy a lost answer makes us send again.
    pub async fn notify(&self, task: &TaskMessage) -> Result<(), NotifyError> {
        let mut last_error = NotifyError::TimedOut;
        for attempt in 1..=self.attempts {
            if attempt > 1 {
                bump(&self.counters.webhook_retries);
                let wait = backoff(attempt - 1, &mut rand::rng());
                tokio::time::sleep(wait).await;
            }
            bump(&self.counters.webhook_attempts);
            match self.send(task).await {
                Ok(()) => {
                    bump(&self.counters.notified);
                    return Ok(());
                }
                Err(error) => {
                    if error == NotifyError::TimedOut {
                        bump(&self.counters.webhook_timeouts);
                    }
                    tracing::warn!(task = %task.id, attempt, max_attempts = self.attempts, %error, "notification failed");
                    last_error = error;
                }
            }
        }
        bump(&self.counters.webhook_failures);
        Err(last_error)
    }

    async fn send(&self, task: &TaskMessage) -> Result<(), NotifyError> {
        let body = SendMessage {
            chat_id: &self.chat_id,
            text: format!("New task: {}", task.title),
        };
        let response = self
            .client
            .post(&self.endpoint)
            .header("Idempotency-Key", task.id.to_string())
            .json(&body)
            .send()
            .await
            .map_err(classify)?;
        let status = response.status();
        // Read the whole answer: a body cut off by the timeout is a failed delivery too.
        response.bytes().await.map_err(classify)?;
        if status.is_success() {
            Ok(())
        } else {
            Err(NotifyError::Status(status))
        }
    }
}

fn classify(error: reqwest::Error) -> NotifyError {
    if error.is_timeout() {
        NotifyError::TimedOut
    } else {
        NotifyError::Unreachable(error.without_url().to_string())
    }
}

fn endpoint(webhook_url: &str, bot_token: &str) -> String {
    format!(
        "{}/bot{bot_token}/sendMessage",
        webhook_url.trim_end_matches('/')
    )
}

/// Upper bound of the wait before retry number `retry` (1-based): base·2^(retry−1), capped.
fn backoff_ceiling(retry: u32) -> Duration {
    let factor = 1u32
        .checked_shl(retry.saturating_sub(1))
        .unwrap_or(u32::MAX);
    BACKOFF_BASE.saturating_mul(factor).min(BACKOFF_CAP)
}

/// "Equal jitter": half the ceiling fixed, half random, so retries from many workers spread out
/// but never come back immediately.
fn backoff(retry: u32, rng: &mut impl Rng) -> Duration {
    let ceiling = backoff_ceiling(retry);
    let half = ceiling / 2;
    half + half.mul_f64(rng.random::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_stays_within_jitter_bounds() {
        assert_eq!(backoff_ceiling(1), Duration::from_millis(200));
        assert_eq!(backoff_ceiling(2), Duration::from_millis(400));
        assert_eq!(backoff_ceiling(5), Duration::from_millis(3200));
        assert_eq!(backoff_ceiling(6), BACKOFF_CAP);
        assert_eq!(backoff_ceiling(40), BACKOFF_CAP);
        let mut rng = StdRng::seed_from_u64(7);
        for retry in 1..10 {
            for _ in 0..100 {
                let wait = backoff(retry, &mut rng);
                let ceiling = backoff_ceiling(retry);
                assert!(
                    wait >= ceiling / 2 && wait <= ceiling,
                    "retry {retry}: {wait:?} outside [{:?}, {ceiling:?}]",
                    ceiling / 2
                );
            }
        }
    }

    #[test]
    fn endpoint_follows_the_telegram_shape() {
        assert_eq!(
            endpoint("http://127.0.0.1:8001/", "123:abc"),
            "http://127.0.0.1:8001/bot123:abc/sendMessage"
        );
    }
}
