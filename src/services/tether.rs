//! `gameday tether --lock FILE -- PROGRAM [ARGS…]` (hidden): runs a program that must not
//! outlive whoever holds the lock on FILE.
//!
//! A process fault's revert starts its target again detached, so that it outlives the console
//! that reverted it. For a target someone owns — the demo's broker, which must stop with the
//! demo however the demo ends — the `start` command goes through a tether: the program runs as
//! the tether's child (tied to it by `PR_SET_PDEATHSIG`), and the tether waits on the owner's
//! lock. The kernel releases that lock when the owner dies, even by SIGKILL; the tether then
//! stops the program and exits. With no owner left at start, it starts nothing.

use std::fs::{File, OpenOptions};
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::Signal;

use super::process::{signal, spawn_tied};

#[derive(Debug, Clone, clap::Args)]
pub struct TetherArgs {
    /// The owner's lock file: the program runs while someone holds it.
    #[arg(long)]
    pub lock: PathBuf,
    /// The program and its arguments.
    #[arg(trailing_var_arg = true, required = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// Holds `path` for the life of the returned value: what an owner does.
pub fn hold(path: &std::path::Path) -> std::io::Result<Flock<File>> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| {
        std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            format!("{}: held by another process ({errno})", path.display()),
        )
    })
}

/// The `start` command that runs `command` tethered to the holder of `lock`.
pub fn command(exe: &std::path::Path, lock: &std::path::Path, command: &[String]) -> Vec<String> {
    let mut out = vec![
        exe.display().to_string(),
        "tether".into(),
        "--lock".into(),
        lock.display().to_string(),
        "--".into(),
    ];
    out.extend(command.iter().cloned());
    out
}

pub fn main(args: TetherArgs) -> ExitCode {
    let say = |line: String| {
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "gameday tether: {line}");
    };
    let Ok(file) = OpenOptions::new().write(true).open(&args.lock) else {
        say(format!(
            "{} is gone: its owner is gone; not starting",
            args.lock.display()
        ));
        return ExitCode::FAILURE;
    };
    // Free now means nobody owns the program any more.
    if let Ok(_free) = Flock::lock(
        file.try_clone().expect("dup the lock file"),
        FlockArg::LockExclusiveNonblock,
    ) {
        say(format!(
            "nobody holds {}: not starting",
            args.lock.display()
        ));
        return ExitCode::FAILURE;
    }
    let (program, rest) = args.command.split_first().expect("clap requires a command");
    let mut child = match spawn_tied({
        let mut c = Command::new(program);
        c.args(rest);
        c
    }) {
        Ok(child) => child,
        Err(e) => {
            say(format!("cannot run {program}: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let pid = child.id();
    // Blocks until the owner's lock is free (it died or let go), then stops the program.
    std::thread::spawn(move || {
        if Flock::lock(file, FlockArg::LockExclusive).is_ok() {
            let _ = signal(pid, Signal::SIGCONT);
            let _ = signal(pid, Signal::SIGTERM);
            std::thread::sleep(Duration::from_secs(3));
            let _ = signal(pid, Signal::SIGKILL);
        }
    });
    match child.wait() {
        Ok(status) if status.success() => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}
