//! The built-in lab target: a small task tracker to drill on.
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct LabArgs {}

#[derive(Debug, clap::Args)]
pub struct SinkArgs {}

pub fn main(_args: LabArgs) -> ExitCode {
    ExitCode::from(2)
}

pub fn sink_main(_args: SinkArgs) -> ExitCode {
    ExitCode::from(2)
}
