//! HTTP probes: one request per interval against an endpoint of the system under test, timed
//! from send to the last body byte.
//!
//! Each probe has its own client that keeps no idle connections, so every request opens a new
//! one and its latency includes connect time, as a fresh user of the service would see it.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::{Client, Method};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::spawn::{Reading, Reporter, Sampler, every, root_cause, seconds};
use super::{SourceId, SourceStatus, SourceTx};
use crate::config::ProbeConfig;
use crate::redact::Redactor;

/// Probes `config.url` every `config.interval` until `cancel` fires.
pub async fn run(config: ProbeConfig, redactor: Redactor, tx: SourceTx, cancel: CancellationToken) {
    let mut reporter = Reporter::new(SourceId::probe(&config.name), tx, cancel.clone());
    if !reporter.status(SourceStatus::Connecting).await {
        return;
    }
    let interval = config.interval.get();
    let mut prober = match Prober::new(config, redactor) {
        Ok(prober) => prober,
        Err(reason) => {
            // A client that cannot be built will not be buildable later either.
            reporter.status(SourceStatus::down(reason)).await;
            return;
        }
    };
    every(interval, &mut reporter, cancel, &mut prober).await;
}

impl Sampler for Prober {
    async fn read(&mut self) -> Reading {
        self.round().await
    }
}

struct Prober {
    config: ProbeConfig,
    method: Method,
    client: Client,
    redactor: Redactor,
    prefix: String,
    /// Responses by status code, since the start.
    statuses: BTreeMap<u16, u64>,
    /// Requests that got no response (refused, reset, timed out), since the start.
    errors: u64,
}

impl Prober {
    fn new(config: ProbeConfig, redactor: Redactor) -> Result<Self, String> {
        let timeout = config.timeout.get();
        let client = crate::connect::http::builder(&config.tls())?
            .timeout(timeout)
            .connect_timeout(timeout)
            .pool_max_idle_per_host(0)
            .no_proxy()
            .build()
            .map_err(|e| format!("cannot build an HTTP client: {}", root_cause(&e)))?;
        let method = Method::from_bytes(config.method.as_bytes())
            .map_err(|_| format!("bad method {}", config.method))?;
        Ok(Prober {
            prefix: SourceId::probe(&config.name).key_prefix(),
            method,
            client,
            redactor,
            config,
            statuses: BTreeMap::new(),
            errors: 0,
        })
    }

    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    fn request(&self) -> reqwest::RequestBuilder {
        let mut request = self.client.request(self.method.clone(), &self.config.url);
        for (name, value) in &self.config.headers {
            request = request.header(name, value);
        }
        if let Some(body) = &self.config.body {
            request = request.body(body.clone());
        }
        request
    }

    /// Sends one request and reads the whole body. The client's timeout bounds both; the outer
    /// deadline is a backstop.
    async fn round(&mut self) -> Reading {
        let timeout = self.config.timeout.get();
        let started = Instant::now();
        let exchange = async {
            let response = self.request().send().await?;
            let status = response.status().as_u16();
            response.bytes().await?;
            Ok::<u16, reqwest::Error>(status)
        };
        let outcome = tokio::time::timeout(timeout + Duration::from_millis(100), exchange).await;
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        match outcome {
            Ok(Ok(status)) => {
                *self.statuses.entry(status).or_default() += 1;
                let ok = self.config.expect.contains(&status);
                let mut values = vec![
                    (self.key("latency_ms"), latency_ms),
                    (self.key("ok"), if ok { 1.0 } else { 0.0 }),
                    (self.key("errors"), self.errors as f64),
                ];
                values.extend(
                    self.statuses
                        .iter()
                        .map(|(code, count)| (self.key(&format!("status.{code}")), *count as f64)),
                );
                let notes = if ok {
                    Vec::new()
                } else {
                    vec![format!("unexpected status {status}")]
                };
                Reading::Up { values, notes }
            }
            Ok(Err(error)) => {
                self.errors += 1;
                self.down(describe(&error, timeout))
            }
            Err(_) => {
                self.errors += 1;
                self.down(format!("timeout: no response within {}", seconds(timeout)))
            }
        }
    }

    fn down(&self, reason: String) -> Reading {
        Reading::Down {
            reason: self.redactor.text(&reason).into_owned(),
            values: vec![
                (self.key("ok"), 0.0),
                (self.key("errors"), self.errors as f64),
            ],
        }
    }
}

/// "connection refused", "timeout: no response within 2s", or the innermost cause.
fn describe(error: &reqwest::Error, timeout: Duration) -> String {
    if error.is_timeout() {
        return format!("timeout: no response within {}", seconds(timeout));
    }
    let io_kind = std::iter::successors(Some(error as &(dyn std::error::Error + 'static)), |e| {
        e.source()
    })
    .find_map(|e| e.downcast_ref::<std::io::Error>())
    .map(std::io::Error::kind);
    match io_kind {
        Some(std::io::ErrorKind::ConnectionRefused) => "connection refused".to_string(),
        Some(std::io::ErrorKind::ConnectionReset) => "connection reset".to_string(),
        _ => {
            // A TLS failure is deep in the chain: name it and the setting that fixes it.
            let chain = crate::connect::chain(error);
            match crate::connect::explain(&chain, crate::connect::HTTP) {
                Some(why) => why,
                None if error.is_connect() => format!("cannot connect: {}", root_cause(error)),
                None => root_cause(error),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use axum::Router;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::{get, post};
    use tokio::sync::mpsc;

    use super::*;
    use crate::sources::CHANNEL_CAPACITY;
    use crate::sources::spawn::testing::Watch;
    use crate::toml_input::Dur;

    /// A real HTTP server on 127.0.0.1 with one route per behaviour the tests need.
    async fn serve() -> SocketAddr {
        let app = Router::new()
            .route("/ok", get(|| async { "fine" }))
            .route(
                "/broken",
                get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "down for maintenance") }),
            )
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    "late"
                }),
            )
            .route(
                "/tasks",
                post(|headers: HeaderMap, body: String| async move {
                    let json = headers
                        .get("content-type")
                        .is_some_and(|v| v == "application/json");
                    if json && body == r#"{"title":"probe"}"# {
                        StatusCode::ACCEPTED
                    } else {
                        StatusCode::BAD_REQUEST
                    }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        addr
    }

    fn probe(url: String) -> ProbeConfig {
        ProbeConfig {
            name: "api".into(),
            method: "GET".into(),
            url,
            body: None,
            headers: BTreeMap::new(),
            expect: vec![200],
            interval: Dur::from_millis(100),
            timeout: Dur::from_secs(2),
            warn_ms: None,
            crit_ms: None,
            ca_file: None,
            cert_file: None,
            key_file: None,
        }
    }

    struct Running {
        watch: Watch,
        cancel: CancellationToken,
        task: tokio::task::JoinHandle<()>,
    }

    fn start(config: ProbeConfig) -> Running {
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let cancel = CancellationToken::new();
        let task = tokio::spawn(run(config, Redactor::default(), tx, cancel.clone()));
        Running {
            watch: Watch::new(rx),
            cancel,
            task,
        }
    }

    impl Running {
        async fn stop(self) {
            self.cancel.cancel();
            tokio::time::timeout(Duration::from_secs(5), self.task)
                .await
                .expect("the probe stops when cancelled")
                .unwrap();
        }
    }

    const WITHIN: Duration = Duration::from_secs(10);

    #[tokio::test]
    async fn an_expected_status_is_ok_with_its_latency() {
        let addr = serve().await;
        let mut probe = start(probe(format!("http://{addr}/ok")));
        probe
            .watch
            .until(WITHIN, "three answered probes", |w| {
                w.value("probe.api.status.200") >= Some(3.0)
            })
            .await;
        let w = &probe.watch;
        assert!(w.is_up());
        assert_eq!(w.statuses[0], SourceStatus::Connecting);
        assert_eq!(w.value("probe.api.ok"), Some(1.0));
        let latency = w.value("probe.api.latency_ms").unwrap();
        assert!(latency > 0.0 && latency < 2000.0, "latency {latency} ms");
        assert_eq!(w.value("probe.api.errors"), Some(0.0));
        probe.stop().await;
    }

    #[tokio::test]
    async fn the_configured_method_headers_and_body_are_sent() {
        let addr = serve().await;
        let mut config = probe(format!("http://{addr}/tasks"));
        config.method = "POST".into();
        config.body = Some(r#"{"title":"probe"}"#.into());
        config
            .headers
            .insert("content-type".into(), "application/json".into());
        config.expect = vec![202];
        let mut probe = start(config);
        probe
            .watch
            .until(WITHIN, "the POST is accepted", |w| {
                w.value("probe.api.ok") == Some(1.0)
            })
            .await;
        assert_eq!(probe.watch.value("probe.api.status.202"), Some(1.0));
        assert_eq!(probe.watch.value("probe.api.status.400"), None);
        probe.stop().await;
    }

    #[tokio::test]
    async fn an_unexpected_status_is_not_ok_but_still_up() {
        let addr = serve().await;
        let mut probe = start(probe(format!("http://{addr}/broken")));
        probe
            .watch
            .until(WITHIN, "two 503 answers", |w| {
                w.value("probe.api.status.503") >= Some(2.0)
            })
            .await;
        let w = &probe.watch;
        assert!(w.is_up(), "the target answers, so it is up: {:?}", w.status);
        assert_eq!(w.value("probe.api.ok"), Some(0.0));
        assert!(w.value("probe.api.latency_ms").is_some());
        probe.stop().await;
    }

    #[tokio::test]
    async fn a_refused_connection_is_down_with_the_reason() {
        // A port that was just free: nothing listens there.
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let mut probe = start(probe(format!("http://127.0.0.1:{port}/ok")));
        probe
            .watch
            .until(WITHIN, "down, with errors counted", |w| {
                w.down_reason().is_some() && w.value("probe.api.errors") >= Some(2.0)
            })
            .await;
        assert_eq!(probe.watch.down_reason(), Some("connection refused"));
        assert_eq!(probe.watch.value("probe.api.ok"), Some(0.0));
        probe.stop().await;
    }

    #[tokio::test]
    async fn the_probe_timeout_is_honoured() {
        let addr = serve().await;
        let mut config = probe(format!("http://{addr}/slow"));
        config.timeout = Dur::from_millis(300);
        config.interval = Dur::from_secs(1);
        let mut probe = start(config);
        let took = probe
            .watch
            .until(WITHIN, "down after the timeout, the error counted", |w| {
                w.down_reason().is_some() && w.value("probe.api.errors").is_some()
            })
            .await;
        assert_eq!(
            probe.watch.down_reason(),
            Some("timeout: no response within 0.3s")
        );
        // The server answers after 5 s; the probe gives up after its own 300 ms.
        assert!(took < Duration::from_secs(2), "took {took:?}");
        assert_eq!(probe.watch.value("probe.api.errors"), Some(1.0));
        probe.stop().await;
    }
}
