//! `gameday.toml`: what to watch, where, and with which thresholds.
//!
//! Loading is strict: unknown keys, bad values and dangling references are errors that name the
//! file, line, column, key and the expected form. `${VAR}` (or `${VAR:-default}`) in string values
//! expands from the environment. Secrets found in the config feed the [`Redactor`].

mod env;
pub mod faults;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::faults::spec::{ContainerTarget, ProcessTarget};
use crate::metrics::Threshold;
use crate::redact::{self, Redactor};
use crate::toml_input::{Dur, InputError, TomlDoc};

pub const FILE_NAME: &str = "gameday.toml";

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from (for messages and relative paths).
    pub file: PathBuf,
    pub console: ConsoleConfig,
    pub nats: Option<NatsConfig>,
    pub postgres: Option<PostgresConfig>,
    /// PgBouncers whose admin console is sampled (`[[pgbouncer]]`); also fault targets.
    pub pgbouncers: Vec<PgBouncerConfig>,
    pub webhooks: Vec<WebhookConfig>,
    pub probes: Vec<ProbeConfig>,
    /// Prometheus / OpenMetrics endpoints scraped (`[[prometheus]]`).
    pub prometheus: Vec<PrometheusConfig>,
    /// TCP proxies the app connects through (network faults act here).
    pub proxies: Vec<faults::ProxyConfig>,
    /// Containers and processes faults may act on: the allowlist.
    pub containers: Vec<ContainerTarget>,
    pub processes: Vec<ProcessTarget>,
    /// The fault catalog, in config order, every entry with its key.
    pub faults: Vec<faults::CatalogFault>,
    /// Things that work but should not be so (a key file others can read), for `check` and
    /// the console's notices.
    pub warnings: Vec<String>,
    redactor: Redactor,
}

/// The part of a config the panels read, as recorded in a session's timeline.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct View {
    pub console: ConsoleConfig,
    pub nats: Option<NatsConfig>,
    pub postgres: Option<PostgresConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pgbouncers: Vec<PgBouncerConfig>,
    #[serde(default)]
    pub webhooks: Vec<WebhookConfig>,
    #[serde(default)]
    pub probes: Vec<ProbeConfig>,
    #[serde(default)]
    pub prometheus: Vec<PrometheusConfig>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    /// How often sources sample (minimum 100ms).
    pub sample_interval: Dur,
    /// Theme name: a built-in (dark, light, high-contrast, colorblind) or a file in `themes/`.
    pub theme: String,
    /// How much history every series keeps.
    pub history: Dur,
    /// Where sessions, the ledger and logs go.
    pub artifacts: PathBuf,
    /// Where scenario files live (relative paths: to the config file's directory).
    pub scenarios: PathBuf,
    /// Where theme files live (relative paths: to the config file's directory).
    pub themes: PathBuf,
    /// Redraw at most this many times a second.
    pub max_fps: u32,
    /// Which environment this config points at ("staging"), shown on every screen, in the
    /// confirm popup, the timeline, the report and `check`.
    pub environment: Option<String>,
    /// A production environment: every inject and scenario is refused unless the console or run
    /// was started with `--allow-production`, and even then each inject asks for the
    /// environment's name to be typed.
    pub production: bool,
    /// Refuse a keystroke inject while any source is down (a steady state before a manual fault).
    pub require_healthy: bool,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            sample_interval: Dur::from_secs(1),
            theme: "dark".into(),
            history: Dur::from_secs(3600),
            artifacts: PathBuf::from(".artifacts"),
            scenarios: PathBuf::from("scenarios"),
            themes: PathBuf::from("themes"),
            max_fps: 10,
            environment: None,
            production: false,
            require_healthy: false,
        }
    }
}

impl ConsoleConfig {
    /// The environment as shown: its name, or "production" / "unnamed environment".
    pub fn environment_label(&self) -> String {
        match (&self.environment, self.production) {
            (Some(name), true) => format!("{name} (PRODUCTION)"),
            (Some(name), false) => name.clone(),
            (None, true) => "PRODUCTION".into(),
            (None, false) => "unnamed environment".into(),
        }
    }

    /// What must be typed to confirm an inject on a production console.
    pub fn confirm_word(&self) -> String {
        self.environment
            .clone()
            .unwrap_or_else(|| "production".into())
    }

    /// Points each series keeps: the history window at the sample interval.
    pub fn series_capacity(&self) -> usize {
        let n = self.history.get().as_millis() / self.sample_interval.get().as_millis().max(1);
        (n as usize).clamp(60, 100_000)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsConfig {
    /// One URL, or several seed URLs separated by commas.
    pub url: String,
    /// Optional HTTP monitoring endpoint (`http://127.0.0.1:8222`).
    pub monitor_url: Option<String>,
    /// A request that takes longer than this marks the broker down (frozen or partitioned).
    #[serde(default = "default_probe_timeout")]
    pub timeout: Dur,
    pub user: Option<String>,
    pub password: Option<String>,
    pub token: Option<String>,
    /// A `.creds` file (user JWT and nkey seed).
    pub creds: Option<PathBuf>,
    /// An nkey seed: a file holding it, or the seed itself (from `${ENV}`).
    pub nkey: Option<String>,
    /// PEM CA file for a server certificate from a private CA.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate and key, for servers that verify clients.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// TLS before the server's INFO (servers configured with `handshake_first`).
    #[serde(default)]
    pub tls_first: bool,
    /// Stream/consumer pairs to watch; empty = every stream and consumer.
    #[serde(default)]
    pub watch: Vec<NatsWatch>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsWatch {
    pub stream: String,
    pub consumer: Option<String>,
    /// Pending (undelivered) messages that mean trouble.
    pub warn: Option<u64>,
    pub crit: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    pub url: String,
    /// Connection the PostgreSQL faults use (a role allowed to terminate backends); default `url`.
    pub admin_url: Option<String>,
    /// libpq's `sslmode`: disable, allow, prefer, require, verify-ca, verify-full (the URL's
    /// `?sslmode=` wins; so for the three below).
    pub sslmode: Option<String>,
    /// PEM root certificate(s) the server's certificate must chain to.
    pub sslrootcert: Option<PathBuf>,
    /// PEM client certificate and key, for `hostssl … clientcert=…`.
    pub sslcert: Option<PathBuf>,
    pub sslkey: Option<PathBuf>,
    /// A password file in `.pgpass` format, read when the URL has no password.
    pub passfile: Option<PathBuf>,
    #[serde(default = "default_probe_timeout")]
    pub timeout: Dur,
    /// Share of usable connections in use that means trouble.
    #[serde(default = "default_connections_warn")]
    pub warn: f64,
    #[serde(default = "default_connections_crit")]
    pub crit: f64,
    #[serde(default, rename = "pool")]
    pub pools: Vec<PoolConfig>,
    #[serde(default, rename = "gauge")]
    pub gauges: Vec<GaugeConfig>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    pub application_name: String,
    pub size: u32,
    #[serde(default)]
    pub max_overflow: u32,
    /// Utilization (0..1) thresholds.
    #[serde(default = "default_connections_warn")]
    pub warn: f64,
    #[serde(default = "default_pool_crit")]
    pub crit: f64,
}

impl PoolConfig {
    pub fn capacity(&self) -> u32 {
        self.size + self.max_overflow
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GaugeConfig {
    pub name: String,
    /// A query returning one numeric value.
    pub sql: String,
    pub warn: Option<f64>,
    pub crit: Option<f64>,
}

/// A PgBouncer: its admin console is read every sample interval (`SHOW POOLS`, `SHOW STATS`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PgBouncerConfig {
    pub name: String,
    /// The admin console, database `pgbouncer`: `postgres://stats@127.0.0.1:6432/pgbouncer`. The
    /// user must be in `stats_users` (sampling) or `admin_users` (sampling and faults).
    pub url: String,
    /// A connect or query that takes longer than this marks the bouncer down.
    #[serde(default = "default_probe_timeout")]
    pub timeout: Dur,
    /// Clients waiting for a server connection (summed over the bouncer's pools).
    pub waiting_warn: Option<f64>,
    pub waiting_crit: Option<f64>,
    /// The longest a client has waited (the worst pool).
    pub maxwait_warn: Option<Dur>,
    pub maxwait_crit: Option<Dur>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub name: String,
    /// Where gameday listens; point the app's webhook URL here.
    #[serde(deserialize_with = "crate::toml_input::socket_addr")]
    pub listen: SocketAddr,
    /// Where gameday forwards to: `http://…` or `https://…`.
    pub upstream: String,
    /// PEM CA file for an `https` upstream with a private CA.
    pub ca_file: Option<PathBuf>,
    /// The app's client timeout: a request that takes longer counts as a timeout.
    #[serde(default = "default_webhook_timeout")]
    pub timeout: Dur,
    /// p95 latency thresholds in milliseconds.
    pub warn_ms: Option<f64>,
    pub crit_ms: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeConfig {
    pub name: String,
    #[serde(default = "default_method")]
    pub method: String,
    pub url: String,
    pub body: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Statuses that count as success.
    #[serde(default = "default_expect")]
    pub expect: Vec<u16>,
    #[serde(default = "default_probe_interval")]
    pub interval: Dur,
    #[serde(default = "default_request_timeout")]
    pub timeout: Dur,
    pub warn_ms: Option<f64>,
    pub crit_ms: Option<f64>,
    /// PEM CA file for an `https` URL with a private CA.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate and key, for servers that verify clients.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

/// An application's `/metrics` (Prometheus text or OpenMetrics), scraped every `interval`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusConfig {
    pub name: String,
    /// `http://…/metrics` or `https://…`.
    pub url: String,
    #[serde(default = "default_probe_interval")]
    pub interval: Dur,
    #[serde(default = "default_scrape_timeout")]
    pub timeout: Dur,
    /// Series kept as metric keys: a name, or a name with labels it must carry
    /// (`db_client_connections_usage{state="used"}`). Known pool series need no entry.
    #[serde(default)]
    pub keep: Vec<String>,
    /// Request headers (`authorization = "Bearer ${TOKEN}"`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// PEM CA file for an `https` URL with a private CA.
    pub ca_file: Option<PathBuf>,
    /// Warn/crit bounds by key under `prom.<name>.`: `"pool.tasks.waiting" = { warn = 1, crit = 10 }`.
    #[serde(default)]
    pub thresholds: BTreeMap<String, Limits>,
}

/// Upper bounds of a metric: at or above `warn` is a warning, at or above `crit` critical.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub warn: Option<f64>,
    pub crit: Option<f64>,
}

impl NatsConfig {
    pub fn tls(&self) -> crate::connect::TlsFiles {
        crate::connect::TlsFiles {
            ca_file: self.ca_file.clone(),
            cert_file: self.cert_file.clone(),
            key_file: self.key_file.clone(),
        }
    }
}

impl ProbeConfig {
    pub fn tls(&self) -> crate::connect::TlsFiles {
        crate::connect::TlsFiles {
            ca_file: self.ca_file.clone(),
            cert_file: self.cert_file.clone(),
            key_file: self.key_file.clone(),
        }
    }
}

fn default_probe_timeout() -> Dur {
    Dur::from_millis(1500)
}
fn default_connections_warn() -> f64 {
    0.8
}
fn default_connections_crit() -> f64 {
    0.95
}
fn default_pool_crit() -> f64 {
    1.0
}
fn default_webhook_timeout() -> Dur {
    Dur::from_secs(30)
}
fn default_method() -> String {
    "GET".into()
}
fn default_expect() -> Vec<u16> {
    vec![200]
}
fn default_probe_interval() -> Dur {
    Dur::from_secs(1)
}
fn default_scrape_timeout() -> Dur {
    Dur::from_secs(2)
}
fn default_request_timeout() -> Dur {
    Dur::from_secs(5)
}

/// The file as written, before validation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    console: ConsoleConfig,
    nats: Option<NatsConfig>,
    postgres: Option<PostgresConfig>,
    #[serde(default)]
    pgbouncer: Vec<PgBouncerConfig>,
    #[serde(default)]
    webhook: Vec<WebhookConfig>,
    #[serde(default)]
    probe: Vec<ProbeConfig>,
    #[serde(default)]
    prometheus: Vec<PrometheusConfig>,
    #[serde(default)]
    proxy: Vec<faults::ProxyConfig>,
    #[serde(default)]
    container: Vec<faults::RawContainer>,
    #[serde(default)]
    process: Vec<faults::RawProcess>,
    #[serde(default)]
    fault: Vec<faults::RawFault>,
}

/// Where the config was found, for messages.
pub fn locate(explicit: Option<&Path>) -> Result<PathBuf, InputError> {
    if let Some(path) = explicit {
        if !path.is_file() {
            return Err(InputError::file(
                path,
                "no such config file (given with --config)",
            ));
        }
        return Ok(path.to_path_buf());
    }
    let candidates = search_path();
    candidates.iter().find(|p| p.is_file()).cloned().ok_or_else(|| {
        let looked: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
        InputError::file(
            Path::new(FILE_NAME),
            format!(
                "no config found (looked in {}); pass --config PATH, or run `gameday demo` to try the built-in lab",
                looked.join(", ")
            ),
        )
    })
}

fn search_path() -> Vec<PathBuf> {
    let mut out = vec![PathBuf::from(FILE_NAME)];
    if let Some(dirs) = directories::ProjectDirs::from("", "", "gameday") {
        out.push(dirs.config_dir().join(FILE_NAME));
    }
    out
}

impl Config {
    pub fn load(file: &Path) -> Result<Config, InputError> {
        let doc = TomlDoc::read(file)?;
        Self::from_doc(&doc)
    }

    pub fn from_text(file: &Path, text: &str) -> Result<Config, InputError> {
        Self::from_doc(&TomlDoc::from_text(file, text.to_string())?)
    }

    fn from_doc(doc: &TomlDoc) -> Result<Config, InputError> {
        let mut raw: RawConfig = doc.deserialize()?;
        env::expand_all(&mut raw, doc)?;
        validate(&raw, doc)?;
        faults::check_proxies(doc, &raw.proxy)?;
        let containers = faults::containers(doc, &raw.container)?;
        let processes = faults::processes(doc, &raw.process)?;
        let targets = faults::Targets {
            proxies: &raw.proxy,
            webhooks: raw.webhook.iter().map(|w| w.name.as_str()).collect(),
            containers: &raw.container,
            processes: &raw.process,
            postgres: raw.postgres.is_some(),
            nats: raw.nats.is_some(),
            pgbouncers: raw.pgbouncer.iter().map(|b| b.name.as_str()).collect(),
        };
        let catalog = faults::catalog(doc, &raw.fault, &targets, &containers, &processes)?;
        check_listen_addresses(doc, &raw)?;
        // Scenarios, themes and TLS files belong with the config that names them.
        if let Some(dir) = doc.file().parent().filter(|d| !d.as_os_str().is_empty()) {
            for path in [&mut raw.console.scenarios, &mut raw.console.themes] {
                if path.is_relative() {
                    *path = dir.join(&*path);
                }
            }
        }
        if let Some(message) = crate::theme::unknown(&raw.console.theme, &raw.console.themes) {
            return Err(doc.error_at("console.theme", message));
        }
        let warnings = tls_files(&mut raw, doc)?;
        let redactor = Redactor::new(collect_secrets(&raw));
        let config = Config {
            file: doc.file().to_path_buf(),
            console: raw.console,
            nats: raw.nats,
            postgres: raw.postgres,
            pgbouncers: raw.pgbouncer,
            webhooks: raw.webhook,
            probes: raw.probe,
            prometheus: raw.prometheus,
            proxies: raw.proxy,
            containers,
            processes,
            faults: catalog,
            warnings,
            redactor,
        };
        // A threshold on a key no source produces would never fire: say so, where it is.
        for (i, p) in config.prometheus.iter().enumerate() {
            for key in p.thresholds.keys() {
                if let Err(message) = config.check_metric(&format!("prom.{}.{key}", p.name)) {
                    return Err(doc.error_at(&format!("prometheus[{i}].thresholds"), message));
                }
            }
        }
        Ok(config)
    }

    /// What the panels read, with every secret masked: what a watcher or a replay of this
    /// session draws from (`EventKind::Setup`).
    pub fn view(&self) -> View {
        let text = |t: &str| self.redactor.text(t).into_owned();
        let url = |u: &str| text(&redact::url(u));
        let mut view = View {
            console: self.console.clone(),
            nats: self.nats.clone(),
            postgres: self.postgres.clone(),
            pgbouncers: self.pgbouncers.clone(),
            webhooks: self.webhooks.clone(),
            probes: self.probes.clone(),
            prometheus: self.prometheus.clone(),
        };
        if let Some(n) = &mut view.nats {
            n.url = url(&n.url);
            n.monitor_url = n.monitor_url.as_deref().map(url);
            for secret in [&mut n.password, &mut n.token, &mut n.nkey] {
                if secret.is_some() {
                    *secret = Some(redact::MASK.into());
                }
            }
        }
        if let Some(pg) = &mut view.postgres {
            pg.url = url(&pg.url);
            pg.admin_url = pg.admin_url.as_deref().map(url);
            for g in &mut pg.gauges {
                g.sql = text(&g.sql);
            }
        }
        for b in &mut view.pgbouncers {
            b.url = url(&b.url);
        }
        for w in &mut view.webhooks {
            w.upstream = url(&w.upstream);
        }
        for p in &mut view.probes {
            p.url = url(&p.url);
            p.body = p.body.as_deref().map(text);
            for (k, v) in &mut p.headers {
                *v = if redact::is_secret_name(k) {
                    redact::MASK.into()
                } else {
                    text(v)
                };
            }
        }
        for p in &mut view.prometheus {
            p.url = url(&p.url);
            for (k, v) in &mut p.headers {
                *v = if redact::is_secret_name(k) {
                    redact::MASK.into()
                } else {
                    text(v)
                };
            }
        }
        view
    }

    /// A config to draw a recorded session with: the panels' part from its `setup` line, no
    /// targets or faults (a viewer cannot act), nothing left to mask.
    pub fn from_view(file: PathBuf, view: View) -> Config {
        Config {
            file,
            console: view.console,
            nats: view.nats,
            postgres: view.postgres,
            pgbouncers: view.pgbouncers,
            webhooks: view.webhooks,
            probes: view.probes,
            prometheus: view.prometheus,
            proxies: Vec::new(),
            containers: Vec::new(),
            processes: Vec::new(),
            faults: Vec::new(),
            warnings: Vec::new(),
            redactor: Redactor::default(),
        }
    }

    /// Masks every secret this config holds, in any text.
    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    /// Warn/crit thresholds by metric key.
    pub fn thresholds(&self) -> BTreeMap<String, Threshold> {
        let mut out = BTreeMap::new();
        if let Some(nats) = &self.nats {
            for w in &nats.watch {
                if let Some(consumer) = &w.consumer {
                    let t = Threshold::above(w.warn.map(|v| v as f64), w.crit.map(|v| v as f64));
                    if t.is_set() {
                        out.insert(format!("nats.{}.{}.pending", w.stream, consumer), t);
                    }
                }
            }
        }
        if let Some(pg) = &self.postgres {
            out.insert(
                "pg.connections.utilization".into(),
                Threshold::above(Some(pg.warn), Some(pg.crit)),
            );
            for p in &pg.pools {
                out.insert(
                    format!(
                        "pg.app.{}.utilization",
                        crate::sources::postgres::key_segment(&p.application_name)
                    ),
                    Threshold::above(Some(p.warn), Some(p.crit)),
                );
            }
            for g in &pg.gauges {
                let t = Threshold::above(g.warn, g.crit);
                if t.is_set() {
                    out.insert(format!("pg.gauge.{}", g.name), t);
                }
            }
        }
        for b in &self.pgbouncers {
            let t = Threshold::above(b.waiting_warn, b.waiting_crit);
            if t.is_set() {
                out.insert(format!("pgbouncer.{}.cl_waiting", b.name), t);
            }
            let secs = |d: Option<Dur>| d.map(|d| d.get().as_secs_f64());
            let t = Threshold::above(secs(b.maxwait_warn), secs(b.maxwait_crit));
            if t.is_set() {
                out.insert(format!("pgbouncer.{}.maxwait", b.name), t);
            }
        }
        for p in &self.prometheus {
            for (key, limits) in &p.thresholds {
                let t = Threshold::above(limits.warn, limits.crit);
                if t.is_set() {
                    out.insert(format!("prom.{}.{key}", p.name), t);
                }
            }
        }
        for w in &self.webhooks {
            let t = Threshold::above(w.warn_ms, w.crit_ms);
            if t.is_set() {
                out.insert(format!("webhook.{}.latency_ms.p95", w.name), t);
            }
        }
        for p in &self.probes {
            let t = Threshold::above(p.warn_ms, p.crit_ms);
            if t.is_set() {
                out.insert(format!("probe.{}.latency_ms", p.name), t);
            }
        }
        out
    }

    /// Whether `key` is a metric this config's sources produce (DESIGN.md "Metric keys");
    /// `Err` says what would be valid.
    pub fn check_metric(&self, key: &str) -> Result<(), String> {
        let parts: Vec<&str> = key.split('.').collect();
        let known = match parts.as_slice() {
            ["host", "cpu" | "mem"] => true,
            ["nats", rest @ ..] => self.nats.as_ref().is_some_and(|n| known_nats_key(n, rest)),
            ["pg", rest @ ..] => self
                .postgres
                .as_ref()
                .is_some_and(|pg| known_pg_key(pg, rest)),
            ["webhook", name, rest @ ..] => {
                self.webhooks.iter().any(|w| w.name == *name)
                    && matches!(
                        rest,
                        ["latency_ms"]
                            | ["latency_ms", "p50" | "p95" | "p99"]
                            | ["requests" | "timeouts" | "errors" | "retries"]
                            | ["status", _]
                    )
            }
            ["probe", name, rest @ ..] => {
                self.probes.iter().any(|p| p.name == *name)
                    && matches!(rest, ["latency_ms" | "ok" | "errors"] | ["status", _])
            }
            ["pgbouncer", name, rest @ ..] => {
                self.pgbouncers.iter().any(|b| b.name == *name)
                    && crate::sources::pgbouncer::known_key(rest)
            }
            ["prom", name, rest @ ..] => self
                .prometheus
                .iter()
                .find(|p| p.name == *name)
                .is_some_and(|p| known_prom_key(p, rest)),
            ["proxy", name, "active" | "accepted" | "connect_errors"] => {
                self.proxies.iter().any(|p| p.name == *name)
            }
            _ => false,
        };
        if known {
            Ok(())
        } else {
            Err(format!(
                "unknown metric \"{key}\" for {}: expected a key its sources produce, like nats.<stream>.<consumer>.pending, pg.app.<name>.utilization, pg.gauge.<name>, pgbouncer.<name>.cl_waiting, webhook.<name>.latency_ms.p95, probe.<name>.ok, prom.<name>.pool.<pool>.in_use, prom.<name>.<series>.<label>=<value> (see README, Metric keys)",
                self.file.display()
            ))
        }
    }

    /// The sampling interval as a Duration.
    pub fn sample_interval(&self) -> Duration {
        self.console.sample_interval.get()
    }
}

fn known_nats_key(n: &NatsConfig, rest: &[&str]) -> bool {
    let watched_stream =
        |stream: &str| n.watch.is_empty() || n.watch.iter().any(|w| w.stream == stream);
    let watched_consumer = |stream: &str, consumer: &str| {
        n.watch.is_empty()
            || n.watch
                .iter()
                .any(|w| w.stream == stream && w.consumer.as_deref().is_none_or(|c| c == consumer))
    };
    match rest {
        ["up" | "rtt_ms"] => true,
        [stream, "messages"] => watched_stream(stream),
        [
            stream,
            consumer,
            "pending" | "ack_pending" | "redelivered" | "waiting",
        ] => watched_consumer(stream, consumer),
        _ => false,
    }
}

fn known_prom_key(p: &PrometheusConfig, rest: &[&str]) -> bool {
    use crate::sources::prometheus::{POOL_FIELDS, Selector};
    match rest {
        ["up" | "scrape_ms" | "malformed"] => true,
        ["pool", pool, field] => !pool.is_empty() && POOL_FIELDS.contains(field),
        _ => p
            .keep
            .iter()
            .filter_map(|k| Selector::parse(k).ok())
            .any(|s| s.matches_key(rest)),
    }
}

fn known_pg_key(pg: &PostgresConfig, rest: &[&str]) -> bool {
    match rest {
        ["up" | "waiting" | "probe_ms" | "errors"] => true,
        ["connections", _] => true,
        ["app", _, "connections" | "utilization"] => true,
        ["gauge", name] => pg.gauges.iter().any(|g| g.name == *name),
        _ => false,
    }
}

fn collect_secrets(raw: &RawConfig) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(n) = &raw.nats {
        out.extend(redact::secrets_in_url(&n.url));
        out.extend(n.password.iter().chain(n.token.iter()).cloned());
        // A seed given inline (from ${ENV}) is a secret; a path to it is not.
        out.extend(
            n.nkey
                .iter()
                .filter(|k| k.starts_with('S') && !k.contains('/'))
                .cloned(),
        );
    }
    if let Some(pg) = &raw.postgres {
        out.extend(redact::secrets_in_url(&pg.url));
        out.extend(pg.admin_url.iter().flat_map(|u| redact::secrets_in_url(u)));
    }
    for b in &raw.pgbouncer {
        out.extend(redact::secrets_in_url(&b.url));
    }
    for w in &raw.webhook {
        out.extend(redact::secrets_in_url(&w.upstream));
    }
    for p in &raw.probe {
        out.extend(redact::secrets_in_url(&p.url));
        for (k, v) in &p.headers {
            if redact::is_secret_name(k) {
                // "Bearer abc": the credential is the last word.
                out.push(v.clone());
                out.extend(v.split_whitespace().last().map(str::to_string));
            }
        }
    }
    for p in &raw.prometheus {
        out.extend(redact::secrets_in_url(&p.url));
        for (k, v) in &p.headers {
            if redact::is_secret_name(k) {
                out.push(v.clone());
                out.extend(v.split_whitespace().last().map(str::to_string));
            }
        }
    }
    out
}

/// Names become parts of metric keys (`probe.<name>.ok`), so they must be plain.
fn check_name(doc: &TomlDoc, path: &str, name: &str) -> Result<(), InputError> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(doc.error_at(
            path,
            format!("expected a name of letters, digits, '-' or '_', got \"{name}\""),
        ))
    }
}

fn check_unique<'a>(
    doc: &TomlDoc,
    table: &str,
    field: &str,
    names: impl Iterator<Item = &'a str>,
) -> Result<(), InputError> {
    let mut seen = BTreeSet::new();
    for (i, name) in names.enumerate() {
        if !seen.insert(name) {
            return Err(doc.error_at(
                &format!("{table}[{i}].{field}"),
                format!("duplicate name \"{name}\""),
            ));
        }
    }
    Ok(())
}

fn check_scheme(doc: &TomlDoc, path: &str, url: &str, schemes: &[&str]) -> Result<(), InputError> {
    let ok = schemes.iter().any(|s| url.starts_with(&format!("{s}://")));
    if ok {
        Ok(())
    } else {
        let example = format!("{}://127.0.0.1:…", schemes[0]);
        Err(doc.error_at(
            path,
            format!(
                "expected a URL like \"{example}\", got \"{}\"",
                redact::url(url)
            ),
        ))
    }
}

fn check_fraction(doc: &TomlDoc, path: &str, v: f64) -> Result<(), InputError> {
    if (0.0..=10.0).contains(&v) {
        Ok(())
    } else {
        Err(doc.error_at(path, format!("expected a share like 0.8 (80%), got {v}")))
    }
}

fn validate(raw: &RawConfig, doc: &TomlDoc) -> Result<(), InputError> {
    let c = &raw.console;
    if c.sample_interval.get() < Duration::from_millis(100) {
        return Err(doc.error_at(
            "console.sample_interval",
            format!("expected at least \"100ms\", got \"{}\"", c.sample_interval),
        ));
    }
    if c.history.get() < c.sample_interval.get() {
        return Err(doc.error_at(
            "console.history",
            "expected a window longer than console.sample_interval",
        ));
    }
    if !(1..=60).contains(&c.max_fps) {
        return Err(doc.error_at(
            "console.max_fps",
            format!("expected 1 to 60, got {}", c.max_fps),
        ));
    }
    if let Some(n) = &raw.nats {
        check_scheme(doc, "nats.url", &n.url, &["nats", "tls"])?;
        if let Some(m) = &n.monitor_url {
            check_scheme(doc, "nats.monitor_url", m, &["http", "https"])?;
        }
        for (i, w) in n.watch.iter().enumerate() {
            if let (Some(warn), Some(crit)) = (w.warn, w.crit)
                && warn > crit
            {
                return Err(doc.error_at(
                    &format!("nats.watch[{i}].warn"),
                    "expected warn to be at most crit",
                ));
            }
        }
    }
    if let Some(pg) = &raw.postgres {
        check_scheme(doc, "postgres.url", &pg.url, &["postgres", "postgresql"])?;
        check_fraction(doc, "postgres.warn", pg.warn)?;
        check_fraction(doc, "postgres.crit", pg.crit)?;
        for (i, p) in pg.pools.iter().enumerate() {
            if p.application_name.is_empty() {
                return Err(doc.error_at(
                    &format!("postgres.pool[{i}].application_name"),
                    "expected a non-empty name",
                ));
            }
            if p.size == 0 {
                return Err(doc.error_at(
                    &format!("postgres.pool[{i}].size"),
                    "expected a pool size of at least 1",
                ));
            }
            check_fraction(doc, &format!("postgres.pool[{i}].warn"), p.warn)?;
            check_fraction(doc, &format!("postgres.pool[{i}].crit"), p.crit)?;
        }
        check_unique(
            doc,
            "postgres.pool",
            "application_name",
            pg.pools.iter().map(|p| p.application_name.as_str()),
        )?;
        for (i, g) in pg.gauges.iter().enumerate() {
            check_name(doc, &format!("postgres.gauge[{i}].name"), &g.name)?;
            if g.sql.trim().is_empty() {
                return Err(doc.error_at(
                    &format!("postgres.gauge[{i}].sql"),
                    "expected a query returning one number",
                ));
            }
        }
        check_unique(
            doc,
            "postgres.gauge",
            "name",
            pg.gauges.iter().map(|g| g.name.as_str()),
        )?;
    }
    for (i, b) in raw.pgbouncer.iter().enumerate() {
        check_name(doc, &format!("pgbouncer[{i}].name"), &b.name)?;
        check_scheme(
            doc,
            &format!("pgbouncer[{i}].url"),
            &b.url,
            &["postgres", "postgresql"],
        )?;
        if b.timeout.get().is_zero() {
            return Err(doc.error_at(
                &format!("pgbouncer[{i}].timeout"),
                "expected a duration above zero",
            ));
        }
        if let (Some(warn), Some(crit)) = (b.waiting_warn, b.waiting_crit)
            && warn > crit
        {
            return Err(doc.error_at(
                &format!("pgbouncer[{i}].waiting_warn"),
                "expected waiting_warn to be at most waiting_crit",
            ));
        }
        if let (Some(warn), Some(crit)) = (b.maxwait_warn, b.maxwait_crit)
            && warn.get() > crit.get()
        {
            return Err(doc.error_at(
                &format!("pgbouncer[{i}].maxwait_warn"),
                "expected maxwait_warn to be at most maxwait_crit",
            ));
        }
    }
    check_unique(
        doc,
        "pgbouncer",
        "name",
        raw.pgbouncer.iter().map(|b| b.name.as_str()),
    )?;
    for (i, w) in raw.webhook.iter().enumerate() {
        check_name(doc, &format!("webhook[{i}].name"), &w.name)?;
        check_scheme(
            doc,
            &format!("webhook[{i}].upstream"),
            &w.upstream,
            &["http", "https"],
        )?;
        if w.timeout.get().is_zero() {
            return Err(doc.error_at(
                &format!("webhook[{i}].timeout"),
                "expected a duration above zero",
            ));
        }
    }
    check_unique(
        doc,
        "webhook",
        "name",
        raw.webhook.iter().map(|w| w.name.as_str()),
    )?;
    let mut listens = BTreeSet::new();
    for (i, w) in raw.webhook.iter().enumerate() {
        if !listens.insert(w.listen) {
            return Err(doc.error_at(
                &format!("webhook[{i}].listen"),
                format!("address {} is already used", w.listen),
            ));
        }
    }
    for (i, p) in raw.probe.iter().enumerate() {
        check_name(doc, &format!("probe[{i}].name"), &p.name)?;
        check_scheme(doc, &format!("probe[{i}].url"), &p.url, &["http", "https"])?;
        const METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];
        if !METHODS.contains(&p.method.as_str()) {
            return Err(doc.error_at(
                &format!("probe[{i}].method"),
                format!(
                    "expected one of {}, got \"{}\"",
                    METHODS.join(", "),
                    p.method
                ),
            ));
        }
        if p.expect.is_empty() {
            return Err(doc.error_at(
                &format!("probe[{i}].expect"),
                "expected at least one status, like [200]",
            ));
        }
        for (j, s) in p.expect.iter().enumerate() {
            if !(100..=599).contains(s) {
                return Err(doc.error_at(
                    &format!("probe[{i}].expect[{j}]"),
                    format!("expected an HTTP status 100-599, got {s}"),
                ));
            }
        }
        if p.interval.get() < Duration::from_millis(100) {
            return Err(doc.error_at(
                &format!("probe[{i}].interval"),
                "expected at least \"100ms\"",
            ));
        }
    }
    check_unique(
        doc,
        "probe",
        "name",
        raw.probe.iter().map(|p| p.name.as_str()),
    )?;
    for (i, p) in raw.prometheus.iter().enumerate() {
        check_name(doc, &format!("prometheus[{i}].name"), &p.name)?;
        check_scheme(
            doc,
            &format!("prometheus[{i}].url"),
            &p.url,
            &["http", "https"],
        )?;
        if p.interval.get() < Duration::from_millis(100) {
            return Err(doc.error_at(
                &format!("prometheus[{i}].interval"),
                "expected at least \"100ms\"",
            ));
        }
        if p.timeout.get().is_zero() {
            return Err(doc.error_at(
                &format!("prometheus[{i}].timeout"),
                "expected a duration above zero",
            ));
        }
        for (j, k) in p.keep.iter().enumerate() {
            if let Err(message) = crate::sources::prometheus::Selector::parse(k) {
                return Err(doc.error_at(&format!("prometheus[{i}].keep[{j}]"), message));
            }
        }
    }
    check_unique(
        doc,
        "prometheus",
        "name",
        raw.prometheus.iter().map(|p| p.name.as_str()),
    )?;
    Ok(())
}

/// Every TLS, key and credentials file the config names: relative to the config file, must
/// exist (else the one-line error, exit 2), and gets a warning when others can read a secret.
fn tls_files(raw: &mut RawConfig, doc: &TomlDoc) -> Result<Vec<String>, InputError> {
    let dir = doc
        .file()
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map(Path::to_path_buf);
    let mut warnings = Vec::new();
    let mut file = |path: String, value: &mut Option<PathBuf>, secret: bool| {
        let Some(p) = value else {
            return Ok(());
        };
        if p.is_relative()
            && let Some(dir) = &dir
        {
            *p = dir.join(&*p);
        }
        if !p.is_file() {
            return Err(doc.error_at(
                &path,
                format!(
                    "expected a readable file, got \"{}\" (no such file)",
                    p.display()
                ),
            ));
        }
        if secret && let Some(w) = crate::connect::private_file_warning(&path, p) {
            warnings.push(format!("{}: {w}", doc.file().display()));
        }
        Ok(())
    };
    if let Some(n) = &mut raw.nats {
        file("nats.ca_file".into(), &mut n.ca_file, false)?;
        file("nats.cert_file".into(), &mut n.cert_file, false)?;
        file("nats.key_file".into(), &mut n.key_file, true)?;
        file("nats.creds".into(), &mut n.creds, true)?;
        if n.cert_file.is_some() != n.key_file.is_some() {
            return Err(doc.error_at("nats.cert_file", "expected cert_file and key_file together"));
        }
        // A seed given as a path is a file like the others.
        if let Some(nkey) = &n.nkey
            && (!nkey.starts_with('S') || nkey.contains('/'))
        {
            let mut as_path = Some(PathBuf::from(nkey));
            file("nats.nkey".into(), &mut as_path, true)?;
            n.nkey = as_path.map(|p| p.display().to_string());
        }
    }
    if let Some(pg) = &mut raw.postgres {
        file("postgres.sslrootcert".into(), &mut pg.sslrootcert, false)?;
        file("postgres.sslcert".into(), &mut pg.sslcert, false)?;
        file("postgres.sslkey".into(), &mut pg.sslkey, true)?;
        file("postgres.passfile".into(), &mut pg.passfile, true)?;
        if let Some(mode) = &pg.sslmode
            && !crate::connect::postgres::SSL_MODES.contains(&mode.as_str())
        {
            return Err(doc.error_at(
                "postgres.sslmode",
                format!(
                    "expected one of {}, got \"{mode}\"",
                    crate::connect::postgres::SSL_MODES.join(", ")
                ),
            ));
        }
    }
    for (i, w) in raw.webhook.iter_mut().enumerate() {
        file(format!("webhook[{i}].ca_file"), &mut w.ca_file, false)?;
    }
    for (i, p) in raw.prometheus.iter_mut().enumerate() {
        file(format!("prometheus[{i}].ca_file"), &mut p.ca_file, false)?;
    }
    for (i, p) in raw.probe.iter_mut().enumerate() {
        file(format!("probe[{i}].ca_file"), &mut p.ca_file, false)?;
        file(format!("probe[{i}].cert_file"), &mut p.cert_file, false)?;
        file(format!("probe[{i}].key_file"), &mut p.key_file, true)?;
        if p.cert_file.is_some() != p.key_file.is_some() {
            return Err(doc.error_at(
                &format!("probe[{i}].cert_file"),
                "expected cert_file and key_file together",
            ));
        }
    }
    Ok(warnings)
}

/// Listeners share one daemon: names and addresses must not collide across kinds.
fn check_listen_addresses(doc: &TomlDoc, raw: &RawConfig) -> Result<(), InputError> {
    let mut names = BTreeSet::new();
    let mut addrs = BTreeSet::new();
    let webhooks = raw
        .webhook
        .iter()
        .enumerate()
        .map(|(i, w)| (format!("webhook[{i}]"), &w.name, w.listen));
    let proxies = raw
        .proxy
        .iter()
        .enumerate()
        .map(|(i, p)| (format!("proxy[{i}]"), &p.name, p.listen));
    for (path, name, listen) in webhooks.chain(proxies) {
        if !names.insert(name.clone()) {
            return Err(doc.error_at(
                &format!("{path}.name"),
                format!("name \"{name}\" is already used by another listener"),
            ));
        }
        if listen.port() != 0 && !addrs.insert(listen) {
            return Err(doc.error_at(
                &format!("{path}.listen"),
                format!("address {listen} is already used"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
