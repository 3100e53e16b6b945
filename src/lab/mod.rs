//! The built-in lab target: a small task tracker to drill on.
//!
//! `POST /tasks` publishes to the JetStream stream `TASKS`; when the broker is unreachable the
//! task is parked in PostgreSQL's `retry_queue` and the drainer republishes it later. Workers
//! consume the durable consumer `workers`, write each task to PostgreSQL through a bounded pool
//! and notify a Telegram-like webhook (see [`run_sink`] for the lab's own). Every wait is
//! bounded, processing is idempotent on the task id, and `/stats` tells what happened.

mod api;
mod breaker;
mod broker;
mod drainer;
mod notifier;
mod pool_metrics;
mod sink;
mod stats;
mod store;
mod worker;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, DropGuard};
use uuid::Uuid;

pub use broker::{CONNECTION_NAME as NATS_CONNECTION_NAME, CONSUMER, STREAM, SUBJECT};
pub use sink::{Received, ReceivedMessage, SinkHandle, SinkOptions, run_sink};
pub use stats::{PoolStats, StatsSnapshot};
pub use store::APPLICATION_NAME;

use broker::Broker;
use drainer::{DrainSettings, Drainer};
use notifier::{Notifier, NotifierSettings};
use stats::Counters;
use store::PoolSettings;
use worker::Workers;

/// How long a stopping server waits for requests in flight before it drops them.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// `gameday lab`: run the task tracker (API, workers, retry drainer).
#[derive(Debug, Clone, clap::Args)]
pub struct LabArgs {
    /// Address the HTTP API listens on.
    #[arg(long, default_value = "127.0.0.1:8000")]
    pub listen: SocketAddr,
    /// NATS server URL (credentials in it never reach the logs).
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    pub nats: String,
    /// PostgreSQL URL, e.g. postgres://user:password@127.0.0.1:5432/tasks (the password never
    /// reaches the logs).
    #[arg(long, env = "LAB_POSTGRES_URL", hide_env_values = true)]
    pub postgres: DatabaseUrl,
    /// Base URL of the Telegram-like webhook (`gameday lab-sink` listens on 127.0.0.1:8001).
    #[arg(long, default_value = "http://127.0.0.1:8001")]
    pub webhook_url: String,
    /// Bot token for `{webhook-url}/bot{token}/sendMessage` (never logged).
    #[arg(
        long,
        env = "LAB_BOT_TOKEN",
        hide_env_values = true,
        default_value = "lab-token"
    )]
    pub bot_token: Secret,
    /// `chat_id` sent with every notification.
    #[arg(long, default_value = "1000")]
    pub chat_id: String,
    /// Answer 500 instead of queueing when NATS is down, and wait for the webhook and for database
    /// connections without a timeout: the behaviour of a service built without graceful
    /// degradation (scenarios must be able to tell the difference).
    #[arg(long)]
    pub no_graceful_degradation: bool,
    /// Log file (logs never go to the terminal).
    #[arg(long, default_value = ".artifacts/lab/lab.log")]
    pub log_file: PathBuf,
    #[command(flatten)]
    pub tuning: Box<LabTuning>,
}

/// Timeouts, sizes and intervals of `gameday lab` (boxed: they are many).
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Tuning")]
pub struct LabTuning {
    /// Bound for a publish ack from JetStream.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub publish_timeout: Duration,
    /// Bound for a whole `POST /tasks` request.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,
    /// Tasks processed concurrently.
    #[arg(long, default_value_t = 4)]
    pub workers: usize,
    /// Connections the pool keeps open.
    #[arg(long, default_value_t = 10)]
    pub pool_size: u32,
    /// Extra connections the pool may open under load (closed again when idle).
    #[arg(long, default_value_t = 20)]
    pub max_overflow: u32,
    /// Bound for getting a connection from the pool.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub pool_timeout: Duration,
    /// Idle time after which overflow connections close.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub pool_idle_timeout: Duration,
    /// Bound for one webhook request.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub webhook_timeout: Duration,
    /// Webhook attempts per delivery before the message goes back for redelivery.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub webhook_attempts: u32,
    /// How long JetStream waits before redelivering a message no worker acknowledged (default:
    /// webhook timeout + 5 s). Deliveries lost when the broker restarts come back after it.
    #[arg(long, value_parser = parse_ack_wait)]
    pub ack_wait: Option<Duration>,
    /// How often the drainer looks at the retry queue.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub drain_interval: Duration,
    /// Queued tasks republished per drainer round.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub drain_batch: u32,
}

/// `gameday lab-sink`: run the Telegram-like webhook sink.
#[derive(Debug, Clone, clap::Args)]
pub struct SinkArgs {
    /// Address the sink listens on.
    #[arg(long, default_value = "127.0.0.1:8001")]
    pub listen: SocketAddr,
    /// Wait before answering each request (change it at runtime with `PUT /control`).
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    pub delay: Duration,
    /// Accept only this bot token (any token when absent).
    #[arg(long, env = "LAB_BOT_TOKEN", hide_env_values = true)]
    pub token: Option<Secret>,
    /// Log file (logs never go to the terminal).
    #[arg(long, default_value = ".artifacts/lab/sink.log")]
    pub log_file: PathBuf,
}

/// A value that must not be shown: `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Ok(Self::new(value))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A database URL whose `Debug` and `Display` hide the password.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with its password (in the user info or a `password` parameter) replaced by `***`.
    pub fn redacted(&self) -> String {
        let Ok(mut url) = reqwest::Url::parse(&self.0) else {
            return "<unparsable database URL>".to_string();
        };
        if url.password().is_some() {
            let _cannot_fail_with_a_host = url.set_password(Some("***"));
        }
        let had_password_param = url.query_pairs().any(|(key, _)| key == "password");
        if had_password_param {
            let pairs: Vec<(String, String)> = url
                .query_pairs()
                .map(|(key, value)| {
                    let value = if key == "password" {
                        "***".to_string()
                    } else {
                        value.into_owned()
                    };
                    (key.into_owned(), value)
                })
                .collect();
            url.query_pairs_mut().clear().extend_pairs(pairs);
        }
        url.to_string()
    }
}

impl FromStr for DatabaseUrl {
    type Err = std::convert::Infallible;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Ok(Self::new(value))
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({})", self.redacted())
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Everything `run_lab` needs; [`LabOptions::new`] fills in the defaults of `gameday lab`.
#[derive(Debug, Clone)]
pub struct LabOptions {
    pub listen: SocketAddr,
    pub nats_url: String,
    pub postgres_url: DatabaseUrl,
    pub webhook_url: String,
    pub bot_token: Secret,
    pub chat_id: String,
    pub publish_timeout: Duration,
    pub request_timeout: Duration,
    pub graceful_degradation: bool,
    pub workers: usize,
    pub pool_size: u32,
    pub max_overflow: u32,
    pub pool_timeout: Duration,
    pub pool_idle_timeout: Duration,
    pub webhook_timeout: Duration,
    pub webhook_attempts: u32,
    /// `None`: webhook timeout + 5 s.
    pub ack_wait: Option<Duration>,
    pub drain_interval: Duration,
    pub drain_batch: u32,
}

impl LabOptions {
    /// The CLI defaults, listening on a free port of 127.0.0.1.
    pub fn new(
        nats_url: impl Into<String>,
        postgres_url: DatabaseUrl,
        webhook_url: impl Into<String>,
    ) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            nats_url: nats_url.into(),
            postgres_url,
            webhook_url: webhook_url.into(),
            bot_token: Secret::new("lab-token"),
            chat_id: "1000".to_string(),
            publish_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(5),
            graceful_degradation: true,
            workers: 4,
            pool_size: 10,
            max_overflow: 20,
            pool_timeout: Duration::from_secs(5),
            pool_idle_timeout: Duration::from_secs(30),
            webhook_timeout: Duration::from_secs(30),
            webhook_attempts: 4,
            ack_wait: None,
            drain_interval: Duration::from_secs(1),
            drain_batch: 100,
        }
    }

    fn notifier_settings(&self) -> NotifierSettings {
        NotifierSettings {
            webhook_url: self.webhook_url.clone(),
            bot_token: self.bot_token.expose().to_string(),
            chat_id: self.chat_id.clone(),
            timeout: self.graceful_degradation.then_some(self.webhook_timeout),
            attempts: self.webhook_attempts,
        }
    }

    /// How long the server waits before redelivering a message whose worker went silent.
    /// Workers report progress every third of it while they handle a message, so webhook
    /// retries never cause a redelivery. It stays short because a delivery lost with a broker
    /// restart only comes back after it.
    fn ack_wait(&self) -> Duration {
        const MARGIN: Duration = Duration::from_secs(5);
        const UNBOUNDED_ATTEMPT: Duration = Duration::from_secs(30);
        let derived = self
            .notifier_settings()
            .timeout
            .unwrap_or(UNBOUNDED_ATTEMPT)
            + MARGIN;
        self.ack_wait.unwrap_or(derived).max(MIN_ACK_WAIT)
    }
}

/// Progress reports go out every third of the ack wait; below this they would flood the broker.
const MIN_ACK_WAIT: Duration = Duration::from_secs(1);

fn parse_ack_wait(value: &str) -> Result<Duration, String> {
    let wait = humantime::parse_duration(value).map_err(|error| error.to_string())?;
    if wait < MIN_ACK_WAIT {
        return Err(format!(
            "must be at least {}",
            humantime::format_duration(MIN_ACK_WAIT)
        ));
    }
    Ok(wait)
}

impl From<LabArgs> for LabOptions {
    fn from(args: LabArgs) -> Self {
        let tuning = *args.tuning;
        Self {
            listen: args.listen,
            nats_url: args.nats,
            postgres_url: args.postgres,
            webhook_url: args.webhook_url,
            bot_token: args.bot_token,
            chat_id: args.chat_id,
            publish_timeout: tuning.publish_timeout,
            request_timeout: tuning.request_timeout,
            graceful_degradation: !args.no_graceful_degradation,
            workers: tuning.workers,
            pool_size: tuning.pool_size,
            max_overflow: tuning.max_overflow,
            pool_timeout: tuning.pool_timeout,
            pool_idle_timeout: tuning.pool_idle_timeout,
            webhook_timeout: tuning.webhook_timeout,
            webhook_attempts: tuning.webhook_attempts,
            ack_wait: tuning.ack_wait,
            drain_interval: tuning.drain_interval,
            drain_batch: tuning.drain_batch,
        }
    }
}

impl From<SinkArgs> for SinkOptions {
    fn from(args: SinkArgs) -> Self {
        Self {
            listen: args.listen,
            delay: args.delay,
            token: args.token.map(|token| token.expose().to_string()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("PostgreSQL at {url}: {message}")]
    Database { url: String, message: String },
    #[error("NATS at {url}: {message}")]
    Nats { url: String, message: String },
    #[error("webhook: {0}")]
    Webhook(String),
}

/// A task as it travels through the stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TaskMessage {
    pub id: Uuid,
    pub title: String,
    pub created_at: DateTime<Utc>,
}

/// An axum server on its own task, stopped through a child of the caller's token.
pub(crate) struct ServerTask {
    addr: SocketAddr,
    stop: CancellationToken,
    task: JoinHandle<()>,
    _stop_on_drop: DropGuard,
}

impl ServerTask {
    pub async fn start(
        listen: SocketAddr,
        router: axum::Router,
        shutdown: CancellationToken,
    ) -> Result<Self, LabError> {
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|source| LabError::Bind {
                addr: listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| LabError::Bind {
            addr: listen,
            source,
        })?;
        let stop = shutdown.child_token();
        let signal = stop.clone();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, router)
                .with_graceful_shutdown(signal.cancelled_owned())
                .await;
            if let Err(error) = served {
                tracing::error!(%addr, %error, "server failed");
            }
        });
        Ok(Self {
            addr,
            _stop_on_drop: stop.clone().drop_guard(),
            stop,
            task,
        })
    }

    pub async fn stop(self) {
        self.stop.cancel();
        let task = self.task;
        let abort = task.abort_handle();
        if tokio::time::timeout(STOP_GRACE, task).await.is_err() {
            // Requests still waiting (a slow sink, say) are cut off.
            abort.abort();
        }
    }
}

/// A running lab. Dropping it stops the lab's tasks; [`LabHandle::stop`] also waits for them.
pub struct LabHandle {
    server: ServerTask,
    stop: CancellationToken,
    background: Vec<JoinHandle<()>>,
    broker: Broker,
    pool: PgPool,
    _stop_on_drop: DropGuard,
}

impl LabHandle {
    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    /// Base URL of the API, e.g. `http://127.0.0.1:8000`.
    pub fn url(&self) -> String {
        format!("http://{}", self.server.addr)
    }

    /// Stops the API, the drainer and the workers (tasks in flight get a few seconds, then are
    /// left to redelivery), flushes NATS and closes the pool.
    pub async fn stop(self) {
        self.stop.cancel();
        self.server.stop().await;
        for task in self.background {
            let abort = task.abort_handle();
            if tokio::time::timeout(STOP_GRACE * 2, task).await.is_err() {
                abort.abort();
            }
        }
        self.broker.close(Duration::from_secs(1)).await;
        let _closed_or_not = tokio::time::timeout(STOP_GRACE, self.pool.close()).await;
        tracing::info!("lab stopped");
    }
}

/// Starts the lab: connects to PostgreSQL (required: the schema is applied now) and NATS (may
/// be down: the lab starts degraded and the client keeps reconnecting), then serves the API on
/// `options.listen` until `shutdown` is cancelled or the handle stops.
/// How long "no timeout" waits: longer than any drill, short enough to end one day.
pub(crate) const UNBOUNDED_WAIT: Duration = Duration::from_secs(600);

pub async fn run_lab(
    options: LabOptions,
    shutdown: CancellationToken,
) -> Result<LabHandle, LabError> {
    let counters = Arc::new(Counters::default());
    let stop = shutdown.child_token();
    let pool_settings = PoolSettings {
        size: options.pool_size,
        max_overflow: options.max_overflow,
        // A service built without graceful degradation waits for a connection as long as it takes.
        acquire_timeout: if options.graceful_degradation {
            options.pool_timeout
        } else {
            UNBOUNDED_WAIT
        },
        idle_timeout: options.pool_idle_timeout,
    };
    let database_error = |message: String| LabError::Database {
        url: options.postgres_url.redacted(),
        message,
    };
    let startup_bound = options.pool_timeout + Duration::from_secs(10);
    let pool = match tokio::time::timeout(
        startup_bound,
        store::open(options.postgres_url.expose(), pool_settings),
    )
    .await
    {
        Ok(Ok(pool)) => pool,
        Ok(Err(error)) => return Err(database_error(error.to_string())),
        Err(_) => {
            return Err(database_error(format!(
                "not ready within {startup_bound:?}"
            )));
        }
    };
    let nats_error = |message: String| LabError::Nats {
        url: broker::redacted_url(&options.nats_url),
        message,
    };
    let broker = Broker::connect(&options.nats_url, options.publish_timeout)
        .await
        .map_err(|error| nats_error(error.to_string()))?;
    wait_for_first_connection(&broker, Duration::from_secs(2)).await;
    if broker.is_connected()
        && let Err(error) = broker.ensure_stream().await
    {
        tracing::warn!(%error, "stream not ready yet; the workers and the drainer will retry");
    }
    let notifier = Arc::new(
        Notifier::new(&options.notifier_settings(), counters.clone()).map_err(LabError::Webhook)?,
    );

    let workers = Workers {
        broker: broker.clone(),
        pool: pool.clone(),
        notifier,
        counters: counters.clone(),
        concurrency: options.workers,
        ack_wait: options.ack_wait(),
    };
    let drainer = Drainer {
        broker: broker.clone(),
        pool: pool.clone(),
        counters: counters.clone(),
        settings: DrainSettings {
            interval: options.drain_interval,
            batch: options.drain_batch,
        },
    };
    let background = vec![
        tokio::spawn(workers.run(stop.clone())),
        tokio::spawn(drainer.run(stop.clone())),
    ];

    let state = Arc::new(api::ApiState {
        broker: broker.clone(),
        pool: pool.clone(),
        counters,
        breaker: breaker::Breaker::new(options.pool_timeout),
        request_timeout: options.request_timeout,
        graceful_degradation: options.graceful_degradation,
        retry_delay: options.drain_interval,
    });
    let server = match ServerTask::start(options.listen, api::router(state), stop.clone()).await {
        Ok(server) => server,
        Err(error) => {
            stop.cancel();
            return Err(error);
        }
    };
    tracing::info!(
        addr = %server.addr,
        nats = %broker::redacted_url(&options.nats_url),
        postgres = %options.postgres_url,
        webhook = %options.webhook_url,
        graceful_degradation = options.graceful_degradation,
        "lab listening"
    );
    Ok(LabHandle {
        server,
        _stop_on_drop: stop.clone().drop_guard(),
        stop,
        background,
        broker,
        pool,
    })
}

/// Gives a broker that is up the chance to connect before the first request, so a fresh lab
/// publishes instead of queueing. A broker that is down costs at most `bound` at startup.
async fn wait_for_first_connection(broker: &Broker, bound: Duration) {
    let deadline = tokio::time::Instant::now() + bound;
    while !broker.is_connected() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `gameday lab`.
pub fn main(args: LabArgs) -> ExitCode {
    let log_file = args.log_file.clone();
    let Some(_log_guard) = init_logging(&log_file, "lab") else {
        return ExitCode::FAILURE;
    };
    run_until_signal("lab", async move {
        let handle = run_lab(LabOptions::from(args), CancellationToken::new()).await?;
        println!(
            "gameday lab: task tracker on {} (logs: {})",
            handle.url(),
            log_file.display()
        );
        Ok(Box::pin(handle.stop()) as StopFuture)
    })
}

/// `gameday lab-sink`.
pub fn sink_main(args: SinkArgs) -> ExitCode {
    let log_file = args.log_file.clone();
    let Some(_log_guard) = init_logging(&log_file, "lab-sink") else {
        return ExitCode::FAILURE;
    };
    run_until_signal("lab-sink", async move {
        let handle = run_sink(SinkOptions::from(args), CancellationToken::new()).await?;
        println!(
            "gameday lab-sink: webhook sink on {} (logs: {})",
            handle.url(),
            log_file.display()
        );
        Ok(Box::pin(handle.stop()) as StopFuture)
    })
}

type StopFuture = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

/// Runs `start` on a fresh runtime, waits for Ctrl-C or SIGTERM, then runs the stop future it
/// returned.
fn run_until_signal(
    name: &str,
    start: impl Future<Output = Result<StopFuture, LabError>>,
) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("gameday {name}: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let stop = match start.await {
            Ok(stop) => stop,
            Err(error) => {
                tracing::error!(%error, "cannot start");
                eprintln!("gameday {name}: {error}");
                return ExitCode::FAILURE;
            }
        };
        if let Err(error) = wait_for_signal().await {
            eprintln!("gameday {name}: cannot listen for signals: {error}");
        }
        tracing::info!("stopping");
        stop.await;
        ExitCode::SUCCESS
    })
}

async fn wait_for_signal() -> std::io::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        interrupted = tokio::signal::ctrl_c() => interrupted,
        _ = terminate.recv() => Ok(()),
    }
}

/// Sends this process's logs to `path` (appending). Logs never go to the terminal. Returns
/// `None` after telling the user when the file cannot be opened.
fn init_logging(path: &Path, name: &str) -> Option<tracing_appender::non_blocking::WorkerGuard> {
    let opened = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
        });
    let file = match opened {
        Ok(file) => file,
        Err(error) => {
            eprintln!(
                "gameday {name}: cannot open the log file {}: {error}",
                path.display()
            );
            return None;
        }
    };
    let (writer, guard) = tracing_appender::non_blocking(file);
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,async_nats=warn"));
    // Fails only if a subscriber is already installed, which then keeps receiving the logs.
    let _installed = tracing_subscriber::fmt()
        .with_writer(writer)
        .with_ansi(false)
        .with_env_filter(filter)
        .try_init();
    Some(guard)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct LabCli {
        #[command(flatten)]
        args: LabArgs,
    }

    #[test]
    fn secrets_never_show_in_debug_or_display() {
        let url =
            DatabaseUrl::new("postgres://tracker:hunter2@127.0.0.1:5432/tasks?sslmode=disable");
        for shown in [format!("{url}"), format!("{url:?}")] {
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(
                shown.contains("tracker:***@127.0.0.1:5432/tasks"),
                "{shown}"
            );
        }
        let in_params =
            DatabaseUrl::new("postgres://127.0.0.1/tasks?user=tracker&password=hunter2");
        assert!(!in_params.to_string().contains("hunter2"), "{in_params}");
        assert!(
            in_params.to_string().contains("user=tracker"),
            "{in_params}"
        );
        let token = Secret::new("123456:ABC-secret");
        assert!(!format!("{token:?} {token}").contains("ABC-secret"));
        let options = LabOptions::new("nats://127.0.0.1:4222", url, "http://127.0.0.1:8001");
        let debug = format!(
            "{:?}",
            LabOptions {
                bot_token: token,
                ..options
            }
        );
        assert!(
            !debug.contains("hunter2") && !debug.contains("ABC-secret"),
            "{debug}"
        );
    }

    #[test]
    fn cli_defaults_match_the_reference_target() {
        let cli = LabCli::try_parse_from(["lab", "--postgres", "postgres://u:p@127.0.0.1/db"])
            .expect("flags parse");
        let options = LabOptions::from(cli.args.clone());
        assert_eq!(cli.args.listen.to_string(), "127.0.0.1:8000");
        assert_eq!(options.nats_url, "nats://127.0.0.1:4222");
        assert_eq!((options.pool_size, options.max_overflow), (10, 20));
        assert_eq!(options.pool_timeout, Duration::from_secs(5));
        assert_eq!(options.publish_timeout, Duration::from_secs(2));
        assert_eq!(options.request_timeout, Duration::from_secs(5));
        assert_eq!(options.webhook_timeout, Duration::from_secs(30));
        assert_eq!(options.workers, 4);
        assert!(options.graceful_degradation);
        assert_eq!(cli.args.log_file, PathBuf::from(".artifacts/lab/lab.log"));
    }

    #[test]
    fn no_graceful_degradation_drops_the_webhook_timeout() {
        let cli = LabCli::try_parse_from([
            "lab",
            "--postgres",
            "postgres://127.0.0.1/db",
            "--no-graceful-degradation",
            "--webhook-timeout",
            "500ms",
        ])
        .expect("flags parse");
        let options = LabOptions::from(cli.args);
        assert!(!options.graceful_degradation);
        assert_eq!(options.notifier_settings().timeout, None);
    }

    #[test]
    fn ack_wait_outlasts_one_webhook_attempt_and_stays_short() {
        let defaults = LabOptions::new(
            "nats://127.0.0.1:4222",
            DatabaseUrl::new("postgres://127.0.0.1/db"),
            "http://127.0.0.1:1",
        );
        assert_eq!(defaults.ack_wait(), Duration::from_secs(35));
        let fast = LabOptions {
            webhook_timeout: Duration::from_millis(500),
            ..defaults.clone()
        };
        assert_eq!(fast.ack_wait(), Duration::from_millis(5_500));
        let unbounded = LabOptions {
            graceful_degradation: false,
            ..defaults
        };
        assert_eq!(unbounded.ack_wait(), Duration::from_secs(35));
    }
}
