//! The lab's Telegram-like webhook sink (`gameday lab-sink`).
//!
//! `POST /bot{token}/sendMessage` records every request on arrival (like a real API, a message
//! that arrived is delivered even if the caller stopped waiting for the answer), waits the
//! configured delay, and answers `{"ok":true,"result":{"message_id":N}}`. A repeated
//! `Idempotency-Key` is recorded as a duplicate and answered with the original message id.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Json, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::{LabError, ServerTask};

/// What `run_sink` needs.
#[derive(Debug, Clone)]
pub struct SinkOptions {
    pub listen: SocketAddr,
    /// Wait before answering each request (changeable at runtime with `PUT /control`).
    pub delay: Duration,
    /// Accept only this bot token; any token when `None`.
    pub token: Option<String>,
}

impl SinkOptions {
    /// A sink on a free port of 127.0.0.1, answering at once, accepting any token.
    pub fn local() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            delay: Duration::ZERO,
            token: None,
        }
    }
}

/// One recorded `sendMessage` request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReceivedMessage {
    pub message_id: u64,
    pub received_at: DateTime<Utc>,
    pub idempotency_key: Option<String>,
    pub chat_id: Value,
    pub text: String,
    /// The idempotency key was seen before.
    pub duplicate: bool,
}

/// The document `GET /received` answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Received {
    /// Distinct messages: distinct idempotency keys, plus requests that carried none.
    pub unique: usize,
    pub total: usize,
    pub duplicates: usize,
    pub messages: Vec<ReceivedMessage>,
}

#[derive(Debug, Deserialize)]
struct SendMessage {
    chat_id: Value,
    text: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Control {
    delay_ms: u64,
}

#[derive(Default)]
struct Log {
    messages: Vec<ReceivedMessage>,
    message_id_by_key: HashMap<String, u64>,
}

struct SinkState {
    token: Option<String>,
    delay_ms: AtomicU64,
    log: Mutex<Log>,
}

impl SinkState {
    fn record(&self, key: Option<String>, request: SendMessage) -> u64 {
        let mut log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        let next_id = log.messages.len() as u64 + 1;
        let (message_id, duplicate) = match &key {
            Some(key) => match log.message_id_by_key.get(key) {
                Some(&original) => (original, true),
                None => {
                    log.message_id_by_key.insert(key.clone(), next_id);
                    (next_id, false)
                }
            },
            None => (next_id, false),
        };
        log.messages.push(ReceivedMessage {
            message_id,
            received_at: Utc::now(),
            idempotency_key: key,
            chat_id: request.chat_id,
            text: request.text,
            duplicate,
        });
        message_id
    }

    fn received(&self) -> Received {
        let log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        let duplicates = log
            .messages
            .iter()
            .filter(|message| message.duplicate)
            .count();
        Received {
            unique: log.messages.len() - duplicates,
            total: log.messages.len(),
            duplicates,
            messages: log.messages.clone(),
        }
    }
}

/// A running sink.
pub struct SinkHandle {
    server: ServerTask,
    state: Arc<SinkState>,
}

impl SinkHandle {
    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    /// Base URL to give the lab as `--webhook-url`.
    pub fn url(&self) -> String {
        format!("http://{}", self.server.addr)
    }

    /// What the sink received so far (the same as `GET /received`).
    pub fn received(&self) -> Received {
        self.state.received()
    }

    /// Changes the response delay (the same as `PUT /control`).
    pub fn set_delay(&self, delay: Duration) {
        self.state
            .delay_ms
            .store(duration_ms(delay), Ordering::Relaxed);
    }

    /// Stops accepting requests and waits for the server task to end.
    pub async fn stop(self) {
        self.server.stop().await;
    }
}

fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Starts the sink on `options.listen`; it runs until `shutdown` is cancelled or the handle stops.
pub async fn run_sink(
    options: SinkOptions,
    shutdown: CancellationToken,
) -> Result<SinkHandle, LabError> {
    let state = Arc::new(SinkState {
        token: options.token,
        delay_ms: AtomicU64::new(duration_ms(options.delay)),
        log: Mutex::new(Log::default()),
    });
    let router = Router::new()
        .route("/{bot}/sendMessage", post(send_message))
        .route("/received", get(received))
        .route("/control", get(get_control).put(put_control))
        .with_state(state.clone());
    let server = ServerTask::start(options.listen, router, shutdown).await?;
    tracing::info!(addr = %server.addr, "lab sink listening");
    Ok(SinkHandle { server, state })
}

fn telegram_error(status: StatusCode, description: impl Into<String>) -> Response {
    let body =
        json!({ "ok": false, "error_code": status.as_u16(), "description": description.into() });
    (status, Json(body)).into_response()
}

async fn send_message(
    State(state): State<Arc<SinkState>>,
    Path(bot): Path<String>,
    headers: HeaderMap,
    body: Result<Json<SendMessage>, JsonRejection>,
) -> Response {
    let token = bot.strip_prefix("bot");
    let authorized = match (token, &state.token) {
        (None, _) => return telegram_error(StatusCode::NOT_FOUND, "Not Found"),
        (Some(_), None) => true,
        (Some(given), Some(expected)) => given == expected,
    };
    if !authorized {
        return telegram_error(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    let request = match body {
        Ok(Json(request)) => request,
        Err(rejection) => {
            return telegram_error(
                StatusCode::BAD_REQUEST,
                format!("Bad Request: {}", rejection.body_text()),
            );
        }
    };
    let key = headers
        .get("idempotency-key")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let message_id = state.record(key, request);
    let delay = Duration::from_millis(state.delay_ms.load(Ordering::Relaxed));
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    Json(json!({ "ok": true, "result": { "message_id": message_id } })).into_response()
}

async fn received(State(state): State<Arc<SinkState>>) -> Json<Received> {
    Json(state.received())
}

async fn get_control(State(state): State<Arc<SinkState>>) -> Json<Control> {
    Json(Control {
        delay_ms: state.delay_ms.load(Ordering::Relaxed),
    })
}

async fn put_control(
    State(state): State<Arc<SinkState>>,
    body: Result<Json<Control>, JsonRejection>,
) -> Response {
    match body {
        Ok(Json(control)) => {
            state.delay_ms.store(control.delay_ms, Ordering::Relaxed);
            tracing::info!(delay_ms = control.delay_ms, "sink delay changed");
            Json(control).into_response()
        }
        Err(rejection) => (
            rejection.status(),
            Json(json!({ "error": rejection.body_text() })),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> SinkState {
        SinkState {
            token: None,
            delay_ms: AtomicU64::new(0),
            log: Mutex::new(Log::default()),
        }
    }

    fn message(text: &str) -> SendMessage {
        SendMessage {
            chat_id: json!(42),
            text: text.into(),
        }
    }

    #[test]
    fn repeated_idempotency_keys_count_as_duplicates_with_the_original_id() {
        let sink = state();
        assert_eq!(sink.record(Some("a".into()), message("one")), 1);
        assert_eq!(sink.record(Some("b".into()), message("two")), 2);
        assert_eq!(sink.record(Some("a".into()), message("one again")), 1);
        assert_eq!(sink.record(None, message("keyless")), 4);
        let received = sink.received();
        assert_eq!(
            (received.unique, received.total, received.duplicates),
            (3, 4, 1)
        );
        assert!(received.messages[2].duplicate);
        assert!(!received.messages[3].duplicate);
    }
}
