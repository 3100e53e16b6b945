//! The task tracker's HTTP API: `POST /tasks`, `GET /health`, `GET /stats`, `GET /metrics`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Json, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Utc;
use serde::Deserialize;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use super::TaskMessage;
use super::breaker::Breaker;
use super::broker::Broker;
use super::stats::{Counters, bump};
use super::store;

/// Longest title the API takes; a task tracker is not a blob store.
const MAX_TITLE_CHARS: usize = 500;
/// Bound for the database checks behind `/health` and `/stats`.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

pub(crate) struct ApiState {
    pub broker: Broker,
    pub pool: PgPool,
    pub counters: Arc<Counters>,
    /// Guards the retry-queue insert: requests fail fast while the database is unreachable.
    pub breaker: Arc<Breaker>,
    pub request_timeout: Duration,
    pub graceful_degradation: bool,
    /// Queued tasks are promised to be retried no earlier than this from now.
    pub retry_delay: Duration,
}

pub(crate) fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/tasks", post(create_task))
        .route("/health", get(health))
        .route("/stats", get(stats))
        .route("/metrics", get(metrics))
        .with_state(state)
}

#[derive(Debug, Deserialize)]
struct NewTask {
    title: String,
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

async fn create_task(
    State(state): State<Arc<ApiState>>,
    body: Result<Json<NewTask>, JsonRejection>,
) -> Response {
    let title = match body {
        Ok(Json(NewTask { title })) => title,
        Err(rejection) => return error(rejection.status(), rejection.body_text()),
    };
    if let Err(problem) = validate_title(&title) {
        return error(StatusCode::UNPROCESSABLE_ENTITY, problem);
    }
    let task = TaskMessage {
        id: Uuid::new_v4(),
        title,
        created_at: Utc::now(),
    };
    match tokio::time::timeout(state.request_timeout, submit(&state, &task)).await {
        Ok(response) => response,
        Err(_) => {
            bump(&state.counters.request_timeouts);
            bump(&state.counters.rejected);
            tracing::warn!(task = %task.id, timeout = ?state.request_timeout, "request timed out");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "request timed out; the task was not accepted",
            )
        }
    }
}

fn validate_title(title: &str) -> Result<(), String> {
    if title.trim().is_empty() {
        return Err("title must not be empty".into());
    }
    if title.chars().count() > MAX_TITLE_CHARS {
        return Err(format!("title is longer than {MAX_TITLE_CHARS} characters"));
    }
    Ok(())
}

async fn submit(state: &ApiState, task: &TaskMessage) -> Response {
    let failure = match state.broker.publish(task).await {
        Ok(()) => {
            bump(&state.counters.accepted);
            return (
                StatusCode::ACCEPTED,
                Json(json!({ "id": task.id, "status": "accepted" })),
            )
                .into_response();
        }
        Err(failure) => failure,
    };
    bump(&state.counters.publish_failures);
    if !state.graceful_degradation {
        bump(&state.counters.server_errors);
        tracing::error!(task = %task.id, %failure, "broker unavailable, failing the request");
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("broker unavailable: {failure}"),
        );
    }
    let unavailable = |db_problem: &dyn std::fmt::Display| {
        bump(&state.counters.rejected);
        tracing::error!(task = %task.id, %failure, %db_problem, "broker and database unavailable");
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("broker unavailable ({failure}) and database unavailable ({db_problem})"),
        )
    };
    let pass = match state.breaker.admit() {
        Ok(pass) => pass,
        Err(cause) => {
            bump(&state.counters.db_fail_fast);
            return unavailable(&cause);
        }
    };
    let retry_at = Utc::now() + state.retry_delay;
    match store::enqueue(&state.pool, &state.counters.pool_meter, task, retry_at).await {
        Ok(()) => {
            pass.succeeded();
            bump(&state.counters.queued);
            tracing::info!(task = %task.id, %failure, "broker unavailable, task queued for retry");
            let body = json!({ "id": task.id, "status": "queued", "retry_at": retry_at });
            (StatusCode::ACCEPTED, Json(body)).into_response()
        }
        Err(db_error) => {
            pass.failed(&db_error);
            store::count_error(&state.counters, &db_error);
            unavailable(&db_error)
        }
    }
}

async fn health(State(state): State<Arc<ApiState>>) -> Response {
    let nats_up = state.broker.is_connected();
    let started = Instant::now();
    // Without graceful degradation the check waits for the database as long as the pool does.
    let bound = if state.graceful_degradation {
        PROBE_TIMEOUT
    } else {
        super::UNBOUNDED_WAIT
    };
    let select_one = async {
        let mut conn =
            super::pool_metrics::acquire(&state.pool, &state.counters.pool_meter).await?;
        sqlx::query("SELECT 1").execute(&mut *conn).await
    };
    let postgres = match tokio::time::timeout(bound, select_one).await {
        Ok(Ok(_)) => json!({ "status": "up", "latency_ms": started.elapsed().as_millis() }),
        Ok(Err(db_error)) => json!({ "status": "down", "error": db_error.to_string() }),
        Err(_) => {
            json!({ "status": "down", "error": format!("no answer within {PROBE_TIMEOUT:?}") })
        }
    };
    let postgres_up = postgres["status"] == "up";
    let overall = if nats_up && postgres_up {
        "ok"
    } else {
        "degraded"
    };
    let body = json!({
        "status": overall,
        "nats": { "status": if nats_up { "up" } else { "down" }, "state": state.broker.state_name() },
        "postgres": postgres,
    });
    (StatusCode::OK, Json(body)).into_response()
}

async fn stats(State(state): State<Arc<ApiState>>) -> Response {
    let depth = match tokio::time::timeout(
        PROBE_TIMEOUT,
        store::retry_queue_depth(&state.pool, &state.counters.pool_meter),
    )
    .await
    {
        Ok(Ok(depth)) => Some(depth),
        Ok(Err(_)) | Err(_) => None,
    };
    let snapshot = state.counters.snapshot(
        depth,
        store::pool_stats(&state.pool),
        state.broker.is_connected(),
    );
    Json(snapshot).into_response()
}

/// The pool in the Prometheus text format.
async fn metrics(State(state): State<Arc<ApiState>>) -> Response {
    let body = state
        .counters
        .pool_meter
        .render(store::pool_stats(&state.pool));
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_must_be_present_and_bounded() {
        assert!(validate_title("buy milk").is_ok());
        assert!(validate_title("   ").is_err());
        assert!(validate_title(&"é".repeat(MAX_TITLE_CHARS)).is_ok());
        assert!(validate_title(&"x".repeat(MAX_TITLE_CHARS + 1)).is_err());
    }
}
