//! Prometheus / OpenMetrics scrapes: an application's `/metrics`, read every `interval`.
//!
//! Keys (all under `prom.<name>.`):
//! - `up` (1/0), `scrape_ms`, `malformed` (lines skipped in the last scrape, each logged with
//!   its line number);
//! - each kept series: `<series>` then one `.<label>=<value>` per label, sorted by label name,
//!   every character of a value outside `A-Z a-z 0-9 _ - :` written as `_`
//!   (`prom.app.db_client_connections_usage.pool_name=tasks.state=used`);
//! - application connection pools recognised without configuration (HikariCP through
//!   Micrometer, OpenTelemetry's `db.client.connections.*` / `db.client.connection.*`, the lab's
//!   `lab_db_pool_*`): `pool.<pool>.in_use`, `.idle`, `.waiting`, `.max`, the pool's name
//!   written like a label value.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::Client;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::exposition::{self, Sample};
use super::spawn::{Reading, Reporter, Sampler, every, root_cause, seconds};
use super::{SourceId, SourceStatus, SourceTx};
use crate::config::PrometheusConfig;
use crate::redact::Redactor;

/// A body larger than this is refused (a scrape is a few hundred kilobytes at most).
const MAX_BODY: usize = 16 * 1024 * 1024;

/// The pool fields, in the order the panel writes them.
pub const POOL_FIELDS: [&str; 4] = ["in_use", "idle", "waiting", "max"];

/// Scrapes `config.url` every `config.interval` until `cancel` fires.
pub async fn run(
    config: PrometheusConfig,
    redactor: Redactor,
    tx: SourceTx,
    cancel: CancellationToken,
) {
    let mut reporter = Reporter::new(SourceId::prometheus(&config.name), tx, cancel.clone());
    if !reporter.status(SourceStatus::Connecting).await {
        return;
    }
    let interval = config.interval.get();
    let mut scraper = match Scraper::new(config, redactor) {
        Ok(scraper) => scraper,
        Err(reason) => {
            reporter.status(SourceStatus::down(reason)).await;
            return;
        }
    };
    every(interval, &mut reporter, cancel, &mut scraper).await;
}

impl Sampler for Scraper {
    async fn read(&mut self) -> Reading {
        self.round().await
    }
}

struct Scraper {
    config: PrometheusConfig,
    keep: Vec<Selector>,
    client: Client,
    redactor: Redactor,
    prefix: String,
}

impl Scraper {
    fn new(config: PrometheusConfig, redactor: Redactor) -> Result<Self, String> {
        let timeout = config.timeout.get();
        let tls = crate::connect::TlsFiles {
            ca_file: config.ca_file.clone(),
            cert_file: None,
            key_file: None,
        };
        let client = crate::connect::http::builder(&tls)?
            .timeout(timeout)
            .connect_timeout(timeout)
            .no_proxy()
            .build()
            .map_err(|e| format!("cannot build an HTTP client: {}", root_cause(&e)))?;
        let keep = config
            .keep
            .iter()
            .map(|k| Selector::parse(k))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Scraper {
            prefix: SourceId::prometheus(&config.name).key_prefix(),
            keep,
            client,
            redactor,
            config,
        })
    }

    async fn round(&mut self) -> Reading {
        let timeout = self.config.timeout.get();
        let started = Instant::now();
        let mut request = self.client.get(&self.config.url).header(
            "accept",
            "application/openmetrics-text;version=1.0.0;q=0.9,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
        );
        for (name, value) in &self.config.headers {
            request = request.header(name, value);
        }
        let exchange = async {
            let response = request.send().await?;
            let status = response.status();
            let body = response.bytes().await?;
            Ok::<_, reqwest::Error>((status, body))
        };
        let outcome = tokio::time::timeout(timeout + Duration::from_millis(100), exchange).await;
        let scrape_ms = started.elapsed().as_secs_f64() * 1000.0;
        let (status, body) = match outcome {
            Ok(Ok(answer)) => answer,
            Ok(Err(error)) => return self.down(describe(&error, timeout)),
            Err(_) => {
                return self.down(format!("timeout: no answer within {}", seconds(timeout)));
            }
        };
        if !status.is_success() {
            return self.down(format!(
                "HTTP {} from the metrics endpoint",
                status.as_u16()
            ));
        }
        if body.len() > MAX_BODY {
            return self.down(format!(
                "the metrics page is {} bytes, more than the {MAX_BODY} read",
                body.len()
            ));
        }
        let text = String::from_utf8_lossy(&body);
        let parsed = exposition::parse(&text);
        let mut values = vec![
            (self.key("up"), 1.0),
            (self.key("scrape_ms"), scrape_ms),
            (self.key("malformed"), parsed.problems.len() as f64),
        ];
        values.extend(self.select(&parsed.samples));
        values.extend(
            pool_values(&parsed.samples)
                .into_iter()
                .map(|(k, v)| (format!("{}{k}", self.prefix), v)),
        );
        let notes = parsed
            .problems
            .iter()
            .take(20)
            .map(|p| {
                self.redactor
                    .text(&format!("malformed exposition, skipped: {p}"))
                    .into_owned()
            })
            .collect();
        Reading::Up { values, notes }
    }

    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// The kept samples, by key.
    fn select(&self, samples: &[Sample]) -> Vec<(String, f64)> {
        samples
            .iter()
            .filter(|s| self.keep.iter().any(|k| k.matches(s)))
            .map(|s| (format!("{}{}", self.prefix, series_key(s)), s.value))
            .collect()
    }

    fn down(&self, reason: String) -> Reading {
        Reading::Down {
            reason: self.redactor.text(&reason).into_owned(),
            values: vec![(self.key("up"), 0.0)],
        }
    }
}

/// "connection refused", "timeout: …", or the innermost cause (TLS failures explained).
fn describe(error: &reqwest::Error, timeout: Duration) -> String {
    if error.is_timeout() {
        return format!("timeout: no answer within {}", seconds(timeout));
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
            let chain = crate::connect::chain(error);
            match crate::connect::explain(&chain, crate::connect::HTTP) {
                Some(why) => why,
                None if error.is_connect() => format!("cannot connect: {}", root_cause(error)),
                None => root_cause(error),
            }
        }
    }
}

/// A label value (or pool name) as a part of a metric key: every character outside
/// `A-Z a-z 0-9 _ - :` becomes `_`.
pub fn key_value(value: &str) -> String {
    value
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ':') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `<series>.<label>=<value>…`, labels sorted by name.
pub fn series_key(sample: &Sample) -> String {
    let mut labels: Vec<&(String, String)> = sample.labels.iter().collect();
    labels.sort();
    let mut out = sample.name.clone();
    for (name, value) in labels {
        out.push('.');
        out.push_str(name);
        out.push('=');
        out.push_str(&key_value(value));
    }
    out
}

/// One `keep` entry: a series name and the labels it must carry
/// (`db_client_connections_usage{state="used"}`).
#[derive(Debug, Clone, PartialEq)]
pub struct Selector {
    pub name: String,
    pub labels: Vec<(String, String)>,
}

impl Selector {
    /// Reads a selector as written in `keep`; `Err` says what is wrong.
    pub fn parse(text: &str) -> Result<Selector, String> {
        let text = text.trim();
        // The exposition parser reads `name{labels}`; a value makes it a sample line.
        let parsed = exposition::parse(&format!("{text} 0"));
        match (parsed.samples.as_slice(), parsed.problems.first()) {
            ([sample], None) if sample.timestamp.is_none() => Ok(Selector {
                name: sample.name.clone(),
                labels: sample.labels.clone(),
            }),
            (_, Some(problem)) => Err(format!(
                "expected a series like name or name{{label=\"value\"}}: {}",
                problem.message
            )),
            _ => Err(format!(
                "expected a series like name or name{{label=\"value\"}}, got \"{text}\""
            )),
        }
    }

    pub fn matches(&self, sample: &Sample) -> bool {
        sample.name == self.name
            && self
                .labels
                .iter()
                .all(|(n, v)| sample.label(n) == Some(v.as_str()))
    }

    /// Whether a metric key's part after `prom.<name>.` is a series this selector keeps.
    pub fn matches_key(&self, parts: &[&str]) -> bool {
        let [series, labels @ ..] = parts else {
            return false;
        };
        if *series != self.name {
            return false;
        }
        let labels: Option<Vec<(&str, &str)>> = labels.iter().map(|l| l.split_once('=')).collect();
        let Some(labels) = labels else {
            return false;
        };
        self.labels
            .iter()
            .all(|(n, v)| labels.iter().any(|(kn, kv)| kn == n && *kv == key_value(v)))
    }
}

/// Where a known series puts its value: which pool label, which field, and for a series with
/// a state label, which state means which field.
struct Known {
    series: &'static str,
    pool_label: &'static str,
    field: Field,
}

enum Field {
    Is(&'static str),
    /// By the value of this label: `used` → in_use, `idle` → idle.
    ByState(&'static str),
}

const KNOWN: &[Known] = &[
    // HikariCP through Micrometer's Prometheus registry.
    Known {
        series: "hikaricp_connections_active",
        pool_label: "pool",
        field: Field::Is("in_use"),
    },
    Known {
        series: "hikaricp_connections_idle",
        pool_label: "pool",
        field: Field::Is("idle"),
    },
    Known {
        series: "hikaricp_connections_pending",
        pool_label: "pool",
        field: Field::Is("waiting"),
    },
    Known {
        series: "hikaricp_connections_max",
        pool_label: "pool",
        field: Field::Is("max"),
    },
    // OpenTelemetry semantic conventions before 1.26 (SQLAlchemy, psycopg, JDBC…).
    Known {
        series: "db_client_connections_usage",
        pool_label: "pool_name",
        field: Field::ByState("state"),
    },
    Known {
        series: "db_client_connections_max",
        pool_label: "pool_name",
        field: Field::Is("max"),
    },
    Known {
        series: "db_client_connections_pending_requests",
        pool_label: "pool_name",
        field: Field::Is("waiting"),
    },
    // OpenTelemetry semantic conventions 1.26 and later.
    Known {
        series: "db_client_connection_count",
        pool_label: "db_client_connection_pool_name",
        field: Field::ByState("db_client_connection_state"),
    },
    Known {
        series: "db_client_connection_max",
        pool_label: "db_client_connection_pool_name",
        field: Field::Is("max"),
    },
    Known {
        series: "db_client_connection_pending_requests",
        pool_label: "db_client_connection_pool_name",
        field: Field::Is("waiting"),
    },
    // The lab (`gameday lab`).
    Known {
        series: "lab_db_pool_in_use",
        pool_label: "pool",
        field: Field::Is("in_use"),
    },
    Known {
        series: "lab_db_pool_idle",
        pool_label: "pool",
        field: Field::Is("idle"),
    },
    Known {
        series: "lab_db_pool_waiting",
        pool_label: "pool",
        field: Field::Is("waiting"),
    },
    Known {
        series: "lab_db_pool_max",
        pool_label: "pool",
        field: Field::Is("max"),
    },
];

/// `pool.<pool>.<field>` for every known pool series in a scrape. Series that differ only in
/// other labels (an instance, a service) add up.
pub fn pool_values(samples: &[Sample]) -> Vec<(String, f64)> {
    let mut out: BTreeMap<String, f64> = BTreeMap::new();
    for sample in samples {
        // Exporters that add `_total` or unit suffixes do not apply to gauges; names are exact.
        let Some(known) = KNOWN.iter().find(|k| k.series == sample.name) else {
            continue;
        };
        if !sample.value.is_finite() {
            continue;
        }
        let pool = sample.label(known.pool_label).unwrap_or("default");
        let field = match known.field {
            Field::Is(field) => field,
            Field::ByState(label) => match sample.label(label) {
                Some("used") => "in_use",
                Some("idle") => "idle",
                _ => continue,
            },
        };
        *out.entry(format!("pool.{}.{field}", pool_key(pool)))
            .or_default() += sample.value;
    }
    out.into_iter().collect()
}

/// A pool's name as a key part (never empty).
pub fn pool_key(pool: &str) -> String {
    if pool.is_empty() {
        "default".into()
    } else {
        key_value(pool)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use axum::Router;
    use axum::http::StatusCode;
    use axum::routing::get;

    use super::*;
    use crate::sources::spawn::testing::Running;
    use crate::toml_input::Dur;

    fn fixture(name: &str) -> String {
        let path = format!(
            "{}/tests/fixtures/prometheus/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn pools(text: &str) -> BTreeMap<String, f64> {
        pool_values(&exposition::parse(text).samples)
            .into_iter()
            .collect()
    }

    #[test]
    fn hikaricp_through_micrometer_is_a_pool() {
        let parsed = exposition::parse(&fixture("hikaricp_micrometer.txt"));
        assert!(parsed.problems.is_empty(), "{:?}", parsed.problems);
        assert_eq!(
            parsed.types["hikaricp_connections_acquire_seconds"],
            "summary"
        );
        assert_eq!(parsed.types["http_server_requests_seconds"], "histogram");
        let inf = parsed
            .samples
            .iter()
            .find(|s| s.label("le") == Some("+Inf"))
            .unwrap();
        assert_eq!(inf.value, 48190.0);
        let jvm = parsed
            .samples
            .iter()
            .find(|s| s.label("area") == Some("nonheap"))
            .unwrap();
        assert_eq!(jvm.label("id"), Some("CodeHeap 'non-profiled nmethods'"));
        assert_eq!(jvm.value, 1.2580736e7);
        let pools = pools(&fixture("hikaricp_micrometer.txt"));
        let want: BTreeMap<String, f64> = [
            ("pool.HikariPool-1.idle", 0.0),
            ("pool.HikariPool-1.in_use", 30.0),
            ("pool.HikariPool-1.max", 30.0),
            ("pool.HikariPool-1.waiting", 17.0),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        assert_eq!(pools, want);
    }

    #[test]
    fn opentelemetry_sqlalchemy_pools_by_name_and_state() {
        let parsed = exposition::parse(&fixture("otel_sqlalchemy.txt"));
        assert!(parsed.problems.is_empty(), "{:?}", parsed.problems);
        let pools = pools(&fixture("otel_sqlalchemy.txt"));
        assert_eq!(pools["pool.127_0_0_1:5432_tasks.in_use"], 30.0);
        assert_eq!(pools["pool.127_0_0_1:5432_tasks.idle"], 0.0);
        assert_eq!(pools["pool.127_0_0_1:5432_tasks.waiting"], 17.0);
        assert_eq!(pools["pool.127_0_0_1:5432_tasks.max"], 30.0);
        assert_eq!(pools["pool.127_0_0_1:5432_reports.in_use"], 1.0);
        assert_eq!(pools["pool.127_0_0_1:5432_reports.max"], 15.0);
        // idle_max is not max.
        assert_eq!(pools.len(), 8);
    }

    #[test]
    fn openmetrics_with_exemplars_units_timestamps_and_eof() {
        let parsed = exposition::parse(&fixture("openmetrics_lab.txt"));
        assert!(parsed.problems.is_empty(), "{:?}", parsed.problems);
        assert!(parsed.eof);
        let sample = |name: &str, label: (&str, &str)| {
            parsed
                .samples
                .iter()
                .find(|s| s.name == name && s.label(label.0) == Some(label.1))
                .unwrap()
                .clone()
        };
        assert_eq!(
            sample("lab_db_pool_acquire_seconds_bucket", ("le", "0.001")).value,
            5102.0
        );
        let count = sample("lab_db_pool_acquire_seconds_count", ("pool", "tasks"));
        assert_eq!(count.timestamp, Some(1_764_612_345.25));
        assert!(sample("odd_values", ("kind", "nan")).value.is_nan());
        assert_eq!(sample("odd_values", ("kind", "inf")).value, f64::INFINITY);
        assert_eq!(sample("odd_values", ("kind", "exp")).value, 1.5e-7);
        let pools = pools(&fixture("openmetrics_lab.txt"));
        assert_eq!(pools["pool.tasks.in_use"], 30.0);
        assert_eq!(pools["pool.tasks.waiting"], 17.0);
        assert_eq!(pools["pool.tasks.max"], 30.0);
    }

    #[test]
    fn malformed_fixture_lines_are_numbered_and_the_rest_is_read() {
        let parsed = exposition::parse(&fixture("malformed.txt"));
        let lines: Vec<usize> = parsed.problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, [4, 5, 7, 8, 10, 11], "{:?}", parsed.problems);
        assert!(
            parsed.problems[2].message.contains("bad value \"twenty\""),
            "{:?}",
            parsed.problems[2]
        );
        let pools = pools(&fixture("malformed.txt"));
        assert_eq!(pools["pool.HikariPool-1.in_use"], 12.0);
        assert_eq!(pools["pool.HikariPool-1.max"], 20.0);
        assert_eq!(pools["pool.HikariPool-1.idle"], 8.0);
    }

    #[test]
    fn series_keys_flatten_sorted_labels_predictably() {
        let parsed = exposition::parse(
            "db_client_connections_usage{state=\"used\",pool_name=\"127.0.0.1:5432/tasks\"} 3\nup 1\nx{a=\"\"} 1\n",
        );
        let keys: Vec<String> = parsed.samples.iter().map(series_key).collect();
        assert_eq!(
            keys,
            [
                "db_client_connections_usage.pool_name=127_0_0_1:5432_tasks.state=used",
                "up",
                "x.a=",
            ]
        );
        for key in &keys {
            assert!(!key.contains(['{', '}', '"', ' ']));
        }
    }

    #[test]
    fn selectors_match_by_name_and_labels() {
        let s = Selector::parse("db_client_connections_usage{state=\"used\"}").unwrap();
        let parsed = exposition::parse(&fixture("otel_sqlalchemy.txt"));
        let kept: Vec<String> = parsed
            .samples
            .iter()
            .filter(|x| s.matches(x))
            .map(series_key)
            .collect();
        assert_eq!(
            kept,
            [
                "db_client_connections_usage.pool_name=127_0_0_1:5432_tasks.state=used",
                "db_client_connections_usage.pool_name=127_0_0_1:5432_reports.state=used",
            ]
        );
        for key in &kept {
            let parts: Vec<&str> = key.split('.').collect();
            assert!(s.matches_key(&parts), "{key}");
        }
        assert!(!s.matches_key(&["db_client_connections_usage", "state=idle"]));
        assert!(Selector::parse("hikaricp_connections_active").is_ok());
        for bad in ["", "two words", "x{a=1}", "x 5", "x{a=\"1\"", "9x"] {
            assert!(Selector::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    fn scrape_config(url: String) -> PrometheusConfig {
        PrometheusConfig {
            name: "app".into(),
            url,
            interval: Dur::from_millis(100),
            timeout: Dur::from_secs(2),
            keep: vec![
                "hikaricp_connections_active".into(),
                "http_server_requests_seconds_bucket{le=\"+Inf\"}".into(),
            ],
            headers: BTreeMap::new(),
            ca_file: None,
            thresholds: BTreeMap::new(),
        }
    }

    async fn serve(router: Router) -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        addr
    }

    const WITHIN: Duration = Duration::from_secs(10);

    #[tokio::test]
    async fn a_scrape_keeps_the_selected_series_and_the_pools() {
        let body = fixture("hikaricp_micrometer.txt");
        let addr = serve(Router::new().route("/metrics", get(move || async move { body }))).await;
        let config = scrape_config(format!("http://{addr}/metrics"));
        let mut running = Running::spawn(|tx, cancel| run(config, Redactor::default(), tx, cancel));
        running
            .watch
            .until(WITHIN, "a scrape", |w| {
                w.value("prom.app.pool.HikariPool-1.in_use").is_some()
            })
            .await;
        let w = &running.watch;
        assert!(w.is_up());
        assert_eq!(w.value("prom.app.up"), Some(1.0));
        assert_eq!(w.value("prom.app.malformed"), Some(0.0));
        assert_eq!(
            w.value("prom.app.hikaricp_connections_active.pool=HikariPool-1"),
            Some(30.0)
        );
        assert_eq!(w.value("prom.app.pool.HikariPool-1.waiting"), Some(17.0));
        assert_eq!(w.value("prom.app.pool.HikariPool-1.max"), Some(30.0));
        let inf = "prom.app.http_server_requests_seconds_bucket.exception=None.le=_Inf.method=POST.outcome=SUCCESS.status=201.uri=_tasks";
        assert_eq!(w.value(inf), Some(48190.0), "{:?}", w.latest.keys());
        // Only what `keep` names, the pools and the source's own keys.
        assert!(w.latest.keys().all(|k| k.starts_with("prom.app.")));
        assert!(!w.latest.keys().any(|k| k.contains("jvm_memory")));
        running.stop().await;
    }

    #[tokio::test]
    async fn malformed_lines_are_counted_and_the_source_stays_up() {
        let body = fixture("malformed.txt");
        let addr = serve(Router::new().route("/metrics", get(move || async move { body }))).await;
        let config = scrape_config(format!("http://{addr}/metrics"));
        let mut running = Running::spawn(|tx, cancel| run(config, Redactor::default(), tx, cancel));
        running
            .watch
            .until(WITHIN, "a scrape", |w| {
                w.value("prom.app.malformed").is_some()
            })
            .await;
        let w = &running.watch;
        assert!(w.is_up());
        assert_eq!(w.value("prom.app.malformed"), Some(6.0));
        assert_eq!(w.value("prom.app.pool.HikariPool-1.in_use"), Some(12.0));
        running.stop().await;
    }

    #[tokio::test]
    async fn an_error_status_or_a_refused_connection_is_down_with_the_secret_masked() {
        let addr = serve(Router::new().route(
            "/metrics",
            get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "nope") }),
        ))
        .await;
        let mut config = scrape_config(format!("http://{addr}/metrics?token=s3cret-token"));
        config.interval = Dur::from_millis(200);
        let mut running = Running::spawn(|tx, cancel| {
            run(
                config,
                Redactor::new(vec!["s3cret-token".into()]),
                tx,
                cancel,
            )
        });
        running
            .watch
            .until(WITHIN, "down, up = 0", |w| {
                w.down_reason().is_some() && w.value("prom.app.up").is_some()
            })
            .await;
        assert_eq!(
            running.watch.down_reason(),
            Some("HTTP 503 from the metrics endpoint")
        );
        assert_eq!(running.watch.value("prom.app.up"), Some(0.0));
        running.stop().await;

        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let config = scrape_config(format!("http://127.0.0.1:{port}/metrics"));
        let mut running = Running::spawn(|tx, cancel| run(config, Redactor::default(), tx, cancel));
        running
            .watch
            .until(WITHIN, "down", |w| w.down_reason().is_some())
            .await;
        assert_eq!(running.watch.down_reason(), Some("connection refused"));
        running.stop().await;
    }
}
