//! Command-line interface: clap definitions and dispatch to the library.
//!
//! `gameday` with no subcommand runs the console.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "gameday",
    version,
    about = "Terminal game-day console for chaos drills on NATS JetStream, PostgreSQL and webhooks",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub console: ConsoleArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Open the live console (the default).
    Console(ConsoleArgs),
    /// Validate the config, themes and scenarios, then try every target.
    Check(ConfigArg),
    /// Sample every source headlessly and print the latest value of every metric key.
    Snapshot(SnapshotArgs),
    /// Rebuild a saved session's report from its timeline.
    Report(ReportArgs),
    /// Follow a live session read-only in this terminal (its own size, theme, zoom and focus).
    Watch(crate::watch::WatchArgs),
    /// Play back a finished (or crashed) session: space, +/-, arrows, [ ].
    Replay(crate::watch::ReplayArgs),
    /// Run a scenario without a terminal (CI): exit 0 pass, 1 fail, 3 aborted, 2 invalid input.
    Run(crate::run::RunArgs),
    /// Revert faults a killed console left applied (from the fault ledger).
    Recover(ConfigArg),
    /// Bring up the built-in lab (NATS, PostgreSQL, the task tracker, traffic) and open the console on it.
    Demo(crate::demo::DemoArgs),
    /// Run the built-in lab target: the task-tracker API, its workers and retry drainer.
    Lab(crate::lab::LabArgs),
    /// Run the lab's Telegram-like webhook sink.
    LabSink(crate::lab::SinkArgs),
    /// Measure the performance targets on this machine and print each figure next to its target.
    Bench(crate::bench::BenchArgs),
    /// The dead-man agent a console starts for itself (reverts its faults if it dies or hangs).
    #[command(hide = true)]
    Guard(crate::guard::GuardArgs),
    /// Runs a program while another process holds a lock (what the demo's broker restarts use).
    #[command(hide = true)]
    Tether(crate::services::tether::TetherArgs),
    /// Manage the proxy daemon that carries proxied and webhook traffic.
    Proxy {
        #[command(subcommand)]
        command: ProxyCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProxyCommand {
    /// Run the proxy daemon in the foreground (the console starts it for you).
    #[command(hide = true)]
    Daemon(crate::proxy::DaemonArgs),
    /// Show the daemon's listeners, counters and active faults.
    Status(crate::proxy::StatusArgs),
    /// Stop the daemon (and with it all forwarding).
    Stop(crate::proxy::StopArgs),
}

#[derive(Debug, Clone, Default, Args)]
pub struct ConsoleArgs {
    /// Config file (default: ./gameday.toml, then the user's config dir).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Theme name (overrides the config).
    #[arg(long)]
    pub theme: Option<String>,
    /// Session name (default: a timestamp).
    #[arg(long)]
    pub session: Option<String>,
    /// Allow faults and scenarios on a config marked `production = true` (each inject then asks
    /// for the environment's name).
    #[arg(long)]
    pub allow_production: bool,
}

#[derive(Debug, Clone, Default, Args)]
pub struct ConfigArg {
    /// Config file (default: ./gameday.toml, then the user's config dir).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct SnapshotArgs {
    /// Config file (default: ./gameday.toml, then the user's config dir).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Sample for this long (e.g. "10s") instead of one round.
    #[arg(long = "for", value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Print one JSON object keyed by metric key.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// The session directory (or a session name under .artifacts).
    pub dir: PathBuf,
    /// Which format to write (default: all).
    #[arg(long, value_enum)]
    pub format: Option<crate::report::Format>,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    s.parse::<crate::toml_input::Dur>().map(|d| d.get())
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        None => crate::console::main(cli.console),
        Some(Command::Console(args)) => crate::console::main(args),
        Some(Command::Check(args)) => crate::check::main(args.config.as_deref()),
        Some(Command::Snapshot(args)) => {
            crate::snapshot::main(args.config.as_deref(), args.duration, args.json)
        }
        Some(Command::Report(args)) => report_main(args),
        Some(Command::Watch(args)) => crate::watch::watch_main(args),
        Some(Command::Replay(args)) => crate::watch::replay_main(args),
        Some(Command::Run(args)) => crate::run::main(args),
        Some(Command::Recover(args)) => crate::console::recover_main(args.config.as_deref()),
        Some(Command::Demo(args)) => crate::demo::main(args),
        Some(Command::Lab(args)) => crate::lab::main(args),
        Some(Command::LabSink(args)) => crate::lab::sink_main(args),
        Some(Command::Bench(args)) => crate::bench::main(args),
        Some(Command::Guard(args)) => crate::guard::main(args),
        Some(Command::Tether(args)) => crate::services::tether::main(args),
        Some(Command::Proxy { command }) => match command {
            ProxyCommand::Daemon(args) => crate::proxy::daemon_main(args),
            ProxyCommand::Status(args) => crate::proxy::status_main(args),
            ProxyCommand::Stop(args) => crate::proxy::stop_main(args),
        },
    }
}

fn report_main(args: ReportArgs) -> ExitCode {
    let dir = crate::session::resolve_dir(std::path::Path::new(".artifacts"), &args.dir);
    let formats = match args.format {
        Some(f) => vec![f],
        None => crate::report::Format::ALL.to_vec(),
    };
    match crate::report::write_from_dir(&dir, &formats) {
        Ok(files) => {
            for f in files {
                println!("{}", f.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => crate::console::invalid(e),
    }
}
