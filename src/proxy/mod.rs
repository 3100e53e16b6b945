//! The proxy daemon: TCP proxies and the webhook forwarder, with faults.
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct DaemonArgs {}

pub fn daemon_main(_args: DaemonArgs) -> ExitCode {
    ExitCode::from(2)
}
