//! Command-line interface: clap definitions and dispatch to the library.
//!
//! `gameday` with no subcommand runs the console.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "gameday",
    version,
    about = "Terminal game-day console for chaos drills",
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
    /// Run the built-in lab target: the task-tracker API, its workers and retry drainer.
    Lab(crate::lab::LabArgs),
    /// Run the lab's Telegram-like webhook sink.
    LabSink(crate::lab::SinkArgs),
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
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        None => not_yet("console"),
        Some(Command::Console(_)) => not_yet("console"),
        Some(Command::Lab(args)) => crate::lab::main(args),
        Some(Command::LabSink(args)) => crate::lab::sink_main(args),
        Some(Command::Proxy {
            command: ProxyCommand::Daemon(args),
        }) => crate::proxy::daemon_main(args),
    }
}

fn not_yet(what: &str) -> ExitCode {
    eprintln!("gameday: `{what}` is not built yet");
    ExitCode::from(2)
}
