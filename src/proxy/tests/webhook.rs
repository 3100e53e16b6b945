//! Webhook forwarder behaviour against a real axum upstream and a real reqwest caller.

use std::error::Error as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use tokio::sync::mpsc;

use super::{Harness, next_event, webhook_spec};
use crate::proxy::{ListenerSet, ProxyEvent, WebhookFault, WebhookOutcome, WebhookRecord};

/// What the upstream received.
#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    target: String,
    body: Bytes,
    idempotency_key: Option<String>,
}

#[derive(Clone, Default)]
struct Sink {
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Sink {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// Answers 200 "ok", `…/slow` after 200 ms, `…/status/{code}` with that code.
async fn sink_handler(
    State(sink): State<Sink>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let target = uri
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let idempotency_key = headers
        .get("idempotency-key")
        .map(|v| v.to_str().unwrap().to_owned());
    sink.seen.lock().unwrap().push(Seen {
        method,
        target: target.clone(),
        body,
        idempotency_key,
    });
    if uri.path().ends_with("/slow") {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if let Some((_, code)) = uri.path().rsplit_once("/status/") {
        return (
            StatusCode::from_u16(code.parse().unwrap()).unwrap(),
            "as asked".into(),
        );
    }
    (StatusCode::OK, format!("ok {target}"))
}

async fn spawn_sink() -> (SocketAddr, Sink) {
    let sink = Sink::default();
    let listener = tokio::net::TcpListener::bind(super::loopback())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new()
        .fallback(sink_handler)
        .with_state(sink.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, sink)
}

/// The caller: an HTTP client with its own timeout, as the app's webhook client would be.
fn caller(timeout: Duration) -> reqwest::Client {
    crate::http_client::builder()
        .timeout(timeout)
        .no_proxy()
        .build()
        .unwrap()
}

struct WebhookHarness {
    harness: Harness,
    sink: Sink,
    events: mpsc::Receiver<ProxyEvent>,
    base: String,
}

impl WebhookHarness {
    async fn start(name: &str, timeout: Duration) -> WebhookHarness {
        let (sink_addr, sink) = spawn_sink().await;
        let spec = webhook_spec("hook", &format!("http://{sink_addr}"), timeout);
        Self::with_spec(name, spec, sink).await
    }

    async fn with_spec(
        name: &str,
        spec: crate::proxy::WebhookListenerSpec,
        sink: Sink,
    ) -> WebhookHarness {
        let harness = Harness::start(
            name,
            ListenerSet {
                tcp: vec![],
                webhooks: vec![spec],
            },
        )
        .await;
        let events = harness.client.subscribe().await.unwrap();
        let base = format!("http://{}", harness.addr("hook"));
        WebhookHarness {
            harness,
            sink,
            events,
            base,
        }
    }

    async fn record(&mut self) -> WebhookRecord {
        next_event(
            &mut self.events,
            Duration::from_secs(5),
            |event| match event {
                ProxyEvent::Webhook(record) => Some(record),
                _ => None,
            },
        )
        .await
    }

    async fn set(&self, fault: WebhookFault) {
        self.harness
            .client
            .set_fault("f", "hook", fault, None)
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_forwarded_whole_and_recorded() {
    let (sink_addr, sink) = spawn_sink().await;
    let spec = webhook_spec(
        "hook",
        &format!("http://{sink_addr}/api"),
        Duration::from_secs(2),
    );
    let mut hook = WebhookHarness::with_spec("hook-forward", spec, sink).await;
    let client = caller(Duration::from_secs(2));

    let response = client
        .post(format!("{}/bot42/sendMessage?chat=7", hook.base))
        .header("idempotency-key", "n-1")
        .body("{\"text\":\"hi\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.text().await.unwrap(),
        "ok /api/bot42/sendMessage?chat=7"
    );
    let seen = hook.sink.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, Method::POST);
    assert_eq!(seen[0].target, "/api/bot42/sendMessage?chat=7");
    assert_eq!(seen[0].body, "{\"text\":\"hi\"}");
    assert_eq!(seen[0].idempotency_key.as_deref(), Some("n-1"));

    let record = hook.record().await;
    assert_eq!(record.webhook, "hook");
    assert_eq!(record.method, "POST");
    assert_eq!(
        (record.status, record.outcome, record.retry, record.fault),
        (Some(200), WebhookOutcome::Ok, false, None)
    );
    assert!(record.latency < Duration::from_secs(1));

    let started = Instant::now();
    let response = client
        .get(format!("{}/slow", hook.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let record = hook.record().await;
    assert!(
        record.latency >= Duration::from_millis(200) && record.latency <= started.elapsed(),
        "{record:?}"
    );

    let response = client
        .get(format!("{}/status/418", hook.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 418);
    assert_eq!(hook.record().await.status, Some(418));
    hook.harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_are_spotted_by_idempotency_key_and_by_identical_body() {
    let mut hook = WebhookHarness::start("hook-retry", Duration::from_secs(2)).await;
    let client = caller(Duration::from_secs(2));
    let url = format!("{}/notify", hook.base);
    let send = |key: Option<&'static str>, body: &'static str| {
        let mut request = client.post(&url).body(body);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        request.send()
    };
    let mut retries = Vec::new();
    for (key, body) in [
        (Some("k1"), "first try"),
        (Some("k1"), "second try, new body, same key"),
        (None, "task 7 done"),
        (None, "task 7 done"),
        (None, "task 8 done"),
    ] {
        assert_eq!(send(key, body).await.unwrap().status(), 200);
        retries.push(hook.record().await.retry);
    }
    assert_eq!(retries, [false, true, false, true, false]);
    hook.harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delay_past_the_callers_timeout_is_a_timeout_and_never_reaches_the_upstream() {
    let mut hook = WebhookHarness::start("hook-delay", Duration::from_millis(300)).await;
    let delay = Duration::from_secs(1);
    hook.set(WebhookFault::Delay {
        delay,
        jitter: Duration::ZERO,
        probability: 1.0,
    })
    .await;
    let started = Instant::now();
    let err = caller(Duration::from_millis(300))
        .post(format!("{}/late", hook.base))
        .body("x")
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    let record = hook.record().await;
    assert_eq!(
        (&record.outcome, record.status, record.fault.as_deref()),
        (&WebhookOutcome::Timeout, None, Some("f"))
    );
    assert!(
        record.latency >= Duration::from_millis(280) && record.latency < delay,
        "{record:?}"
    );

    // Absence can only be shown by waiting out the delay the request would have had.
    tokio::time::sleep_until((started + delay + Duration::from_millis(200)).into()).await;
    assert!(
        hook.sink.seen().is_empty(),
        "the abandoned request was forwarded"
    );

    hook.harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_delay_is_forwarded_and_recorded_as_ok() {
    let mut hook = WebhookHarness::start("hook-short", Duration::from_secs(2)).await;
    hook.set(WebhookFault::Delay {
        delay: Duration::from_millis(100),
        jitter: Duration::ZERO,
        probability: 1.0,
    })
    .await;
    let response = caller(Duration::from_secs(2))
        .post(format!("{}/soon", hook.base))
        .body("z")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let record = hook.record().await;
    assert_eq!(
        (&record.outcome, record.status),
        (&WebhookOutcome::Ok, Some(200))
    );
    assert!(record.latency >= Duration::from_millis(100), "{record:?}");
    assert_eq!(hook.sink.seen().len(), 1);
    hook.harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_503_at_probability_0_3_hits_about_30_percent_of_requests() {
    let mut hook = WebhookHarness::start("hook-odds", Duration::from_secs(2)).await;
    hook.set(WebhookFault::Error {
        status: 503,
        probability: 0.3,
        retry_after: Some(Duration::from_secs(2)),
    })
    .await;
    let client = caller(Duration::from_secs(2));
    let mut injected = 0;
    for i in 0..300 {
        let response = client
            .post(format!("{}/n", hook.base))
            .body(format!("{i}"))
            .send()
            .await
            .unwrap();
        if response.status() == 503 {
            injected += 1;
            assert_eq!(response.headers()["retry-after"], "2");
        } else {
            assert_eq!(response.status(), 200);
        }
    }
    // Binomial(300, 0.3): mean 90, sd 7.9; this band is about ±3.8 sd.
    assert!(
        (60..=120).contains(&injected),
        "{injected} of 300 requests got the injected 503"
    );
    assert_eq!(
        hook.sink.seen().len(),
        300 - injected,
        "injected errors are not forwarded"
    );
    let mut faulted = 0;
    for _ in 0..300 {
        let record = hook.record().await;
        if record.status == Some(503) {
            assert_eq!(record.fault.as_deref(), Some("f"));
            faulted += 1;
        }
    }
    assert_eq!(faulted, injected);
    hook.harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hang_holds_the_caller_until_it_times_out() {
    let mut hook = WebhookHarness::start("hook-hang", Duration::from_millis(400)).await;
    hook.set(WebhookFault::Hang { probability: 1.0 }).await;
    let err = caller(Duration::from_millis(400))
        .post(format!("{}/x", hook.base))
        .body("x")
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    let record = hook.record().await;
    assert_eq!(
        (&record.outcome, record.status),
        (&WebhookOutcome::Timeout, None)
    );
    // The caller's clock also ran while it connected and sent.
    assert!(record.latency >= Duration::from_millis(380), "{record:?}");
    assert!(hook.sink.seen().is_empty());
    hook.harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_drops_the_connection_without_an_answer() {
    let mut hook = WebhookHarness::start("hook-reset", Duration::from_secs(2)).await;
    hook.set(WebhookFault::Reset { probability: 1.0 }).await;
    let err = caller(Duration::from_secs(2))
        .post(format!("{}/x", hook.base))
        .body("x")
        .send()
        .await
        .unwrap_err();
    assert!(!err.is_timeout(), "{err:?}");
    let mut chain = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        chain.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    assert!(
        chain.contains("reset") || chain.contains("closed"),
        "{chain}"
    );
    assert_eq!(hook.record().await.outcome, WebhookOutcome::Reset);
    assert!(hook.sink.seen().is_empty());
    hook.harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_upstream_answers_502_with_the_reason_recorded() {
    let closed = super::closed_port().await;
    let spec = webhook_spec("hook", &format!("http://{closed}"), Duration::from_secs(2));
    let mut hook = WebhookHarness::with_spec("hook-down", spec, Sink::default()).await;
    let response = caller(Duration::from_secs(2))
        .post(format!("{}/x", hook.base))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    let record = hook.record().await;
    assert_eq!(record.status, Some(502));
    let WebhookOutcome::UpstreamError(reason) = &record.outcome else {
        panic!("{record:?}")
    };
    assert!(reason.to_lowercase().contains("refused"), "{reason}");
    hook.harness.stop().await;
}
