//! The proxy daemon: TCP proxies and the webhook forwarder, with faults.
//!
//! The app under test talks to NATS and PostgreSQL through the TCP proxies and sends its
//! webhooks through the forwarder. They run in a separate daemon process (`gameday proxy
//! daemon`) so traffic keeps flowing if the console dies; the console attaches over a unix
//! socket (`ProxyClient`) and holds a lease on every fault it sets.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::redact;

mod client;
mod daemon;
pub mod durations;
mod faults;
mod http;
mod protocol;
mod retry;
mod spec;
mod tcp;

pub use client::{
    AttachOptions, ClientError, DAEMON_EXE_ENV, ProxyClient, daemon_status, stop_daemon,
};
pub use daemon::{
    Daemon, DaemonHandle, DaemonOptions, control_dir, log_path, pid_path, socket_path,
};
pub use faults::{Direction, Fault, TcpFault, WebhookFault};
pub use protocol::{
    ConfigureReport, ConsoleStatus, DropReason, FaultStatus, HelloReply, LeaseStatus,
    ListenerAction, ListenerCounters, ListenerKind, ListenerReport, ListenerState, ListenerStatus,
    MAX_LINE, PROTOCOL_VERSION, ProxyEvent, Reply, Request, Response, StatusReport, TcpCounters,
    WebhookCounters, WebhookOutcome, WebhookRecord,
};
pub use spec::{ListenerSet, TcpListenerSpec, WebhookListenerSpec};

#[cfg(test)]
mod tests;

const DEFAULT_DIR: &str = ".artifacts";
const CLI_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, clap::Args)]
pub struct DaemonArgs {
    /// Artifacts directory; the socket, pid file and log go in its `proxyd/`.
    #[arg(long, default_value = DEFAULT_DIR)]
    pub dir: PathBuf,
    /// Exit once no console has been attached for this long (e.g. "30s").
    #[arg(long, value_parser = humantime::parse_duration)]
    pub exit_when_idle: Option<Duration>,
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Artifacts directory the daemon was started for.
    #[arg(long, default_value = DEFAULT_DIR)]
    pub dir: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct StopArgs {
    /// Artifacts directory the daemon was started for.
    #[arg(long, default_value = DEFAULT_DIR)]
    pub dir: PathBuf,
}

/// `gameday proxy daemon`: runs until `Shutdown`, SIGTERM/SIGINT, or the idle limit. Logs go
/// to `<dir>/proxyd/proxyd.log`, never to the terminal.
pub fn daemon_main(args: DaemonArgs) -> ExitCode {
    // Leave the console's session so closing its terminal (SIGHUP) does not reach us. This
    // fails harmlessly when started by hand as a process-group leader.
    let _ = nix::unistd::setsid();
    if let Err(err) = daemon::prepare_control_dir(&args.dir) {
        eprintln!(
            "gameday proxy daemon: {}: {err}",
            control_dir(&args.dir).display()
        );
        return ExitCode::FAILURE;
    }
    let log = match std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path(&args.dir))
    {
        Ok(log) => log,
        Err(err) => {
            eprintln!(
                "gameday proxy daemon: cannot open {}: {err}",
                log_path(&args.dir).display()
            );
            return ExitCode::FAILURE;
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("GAMEDAY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(crate::logging::RedactingWriter::new(
            log,
            redact::Redactor::default(),
        ))
        .init();

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            tracing::error!("cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let options = DaemonOptions {
            exit_when_idle: args.exit_when_idle,
        };
        let handle = match Daemon::start(&args.dir, options).await {
            Ok(handle) => handle,
            Err(err) => {
                tracing::error!("cannot start the proxy daemon: {err}");
                return ExitCode::FAILURE;
            }
        };
        run_until_signalled(handle).await
    })
}

async fn run_until_signalled(mut handle: DaemonHandle) -> ExitCode {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut terminate), Ok(mut interrupt), Ok(mut hangup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::error!("cannot install signal handlers");
        handle.shutdown().await;
        return ExitCode::FAILURE;
    };
    loop {
        tokio::select! {
            _ = handle.wait() => return ExitCode::SUCCESS,
            _ = terminate.recv() => tracing::info!("SIGTERM: stopping"),
            _ = interrupt.recv() => tracing::info!("SIGINT: stopping"),
            // A closed terminal must not stop the data path.
            _ = hangup.recv() => {
                tracing::info!("SIGHUP ignored");
                continue;
            }
        }
        break;
    }
    handle.shutdown().await;
    ExitCode::SUCCESS
}

/// `gameday proxy status`.
pub fn status_main(args: StatusArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("gameday proxy status: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(daemon_status(&args.dir, CLI_TIMEOUT)) {
        Ok(status) => {
            print!("{}", format_status(&status));
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("gameday proxy status: {err}");
            ExitCode::FAILURE
        }
    }
}

/// `gameday proxy stop`.
pub fn stop_main(args: StopArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("gameday proxy stop: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(stop_daemon(&args.dir, CLI_TIMEOUT)) {
        Ok(Some(pid)) => {
            println!("stopped the proxy daemon (pid {pid})");
            ExitCode::SUCCESS
        }
        Ok(None) => {
            println!("no proxy daemon is running for {}", args.dir.display());
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("gameday proxy stop: {err}");
            ExitCode::FAILURE
        }
    }
}

fn short(duration: Duration) -> String {
    let rounded = if duration >= Duration::from_secs(10) {
        Duration::from_secs(duration.as_secs())
    } else {
        Duration::from_millis(duration.as_millis() as u64 / 100 * 100)
    };
    humantime::format_duration(rounded).to_string()
}

/// The human-readable status, as `gameday proxy status` prints it.
pub fn format_status(status: &StatusReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "proxy daemon pid {} (gameday {}), up {}",
        status.pid,
        status.version,
        short(status.uptime)
    );
    if status.lease.consoles.is_empty() {
        let _ = writeln!(out, "lease: no console attached");
    }
    for console in &status.lease.consoles {
        let _ = writeln!(
            out,
            "lease: console pid {} ({}), heard from {} ago, lease {}",
            console.pid,
            if console.connected {
                "connected"
            } else {
                "disconnected"
            },
            short(console.last_seen),
            short(console.lease)
        );
    }
    let _ = writeln!(out, "listeners:");
    for listener in &status.listeners {
        let address = listener.bound.unwrap_or(listener.listen);
        let state = match &listener.state {
            ListenerState::Running => "running".to_owned(),
            ListenerState::Down => "DOWN".to_owned(),
            // Start errors may quote the upstream.
            ListenerState::Failed { error } => format!("FAILED: {}", redact::free_text(error)),
        };
        let counters = match &listener.counters {
            ListenerCounters::Tcp(tcp) => format!(
                "{} active, {} accepted, {} B up, {} B down, {} connect errors",
                tcp.active,
                tcp.accepted,
                tcp.bytes_upstream,
                tcp.bytes_downstream,
                tcp.connect_errors
            ),
            ListenerCounters::Webhook(hooks) => format!(
                "{} requests, {} in flight, {} timeouts, {} upstream errors, {} retries",
                hooks.requests,
                hooks.in_flight,
                hooks.timeouts,
                hooks.upstream_errors,
                hooks.retries
            ),
        };
        let kind = match listener.kind {
            ListenerKind::Tcp => "tcp",
            ListenerKind::Webhook => "webhook",
        };
        let _ = writeln!(
            out,
            "  {} ({kind}) {address} -> {}: {state}; {counters}",
            listener.name,
            redact::url(&listener.upstream)
        );
    }
    if status.faults.is_empty() {
        let _ = writeln!(out, "faults: none");
    } else {
        let _ = writeln!(out, "faults:");
    }
    for fault in &status.faults {
        let expiry = fault
            .expires_in
            .map(|left| format!(", expires in {}", short(left)))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  {} on {}: {} (for {}{expiry})",
            fault.id,
            fault.listener,
            fault.fault,
            short(fault.age)
        );
    }
    out
}
