//! HTTP probes: one request per interval against an endpoint of the system under test, timed
//! from send to the last body byte.
//!
//! Each probe has its own client that keeps no idle connections, so every request opens a new
//! one and its latency includes connect time, as a fresh user of the service would see it.

use std::collections::BTreeMap;
use std::sync::Once;
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

/// reqwest is built without a default crypto provider; install ring once for https probes.
fn install_crypto_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // Err means another part of the program installed one already, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
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
        install_crypto_provider();
        let timeout = config.timeout.get();
        let client = Client::builder()
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
        _ if error.is_connect() => format!("cannot connect: {}", root_cause(error)),
        _ => root_cause(error),
    }
}
