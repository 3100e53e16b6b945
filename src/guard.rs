//! The dead-man agent: one small process per console (and per headless run), started before the
//! console can inject anything, in its own session so a closed terminal does not reach it.
//!
//! The console writes `beat` on the agent's stdin every third of the lease and `bye` once it has
//! reverted everything it owned. The agent acts on what happens instead:
//!
//! - **stdin ends without `bye`** (the console was killed, crashed, panicked on the way out, or
//!   quit with a fault it could not revert): it reverts every ledger entry the console owns,
//!   retrying failures with backoff for `GIVE_UP_AFTER`, writes the reverts and the session's end
//!   into the session's timeline, rebuilds the report, and exits;
//! - **no beat for a whole lease** (the console is stopped, hung, or its machine slept): it
//!   reverts the console's entries the same way and keeps watching; the console, if it wakes,
//!   sees them gone from the ledger and shows them reverted.
//!
//! Proxy faults are also dropped by the proxy daemon when the console's lease lapses; the agent
//! clears them by id too, so every kind is covered by one mechanism. PostgreSQL sessions held by
//! a fault carry server-side timeouts as a further line.

use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::Config;
use crate::faults::FaultContext;
use crate::faults::engine::retry_delay;
use crate::faults::recovery::{describe_entry, revert_entries};
use crate::ledger::{Ledger, LedgerEntry};
use crate::timeline::{self, Cause, Clock, EventKind, FaultPhase, Timeline, TimelineEvent};

/// The file the agent logs to, in the session directory.
pub const LOG_FILE: &str = "guard.log";
/// How long the agent keeps retrying reverts that fail before it leaves them to `gameday recover`.
const GIVE_UP_AFTER: Duration = Duration::from_secs(120);
/// How long the console waits for its agent to say it is watching.
const START_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, clap::Args)]
pub struct GuardArgs {
    /// The console's config file.
    #[arg(long)]
    pub config: PathBuf,
    /// The console's identity in the ledger.
    #[arg(long)]
    pub owner: String,
    /// The console's session directory (timeline, report, this agent's log).
    #[arg(long)]
    pub session_dir: PathBuf,
    /// Revert once no beat came for this long.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub lease: Duration,
}

/// `gameday guard` (hidden): started by a console, never by hand.
pub fn main(args: GuardArgs) -> ExitCode {
    // Out of the console's session: closing its terminal must not end the agent too.
    let _ = nix::unistd::setsid();
    let config = match Config::load(&args.config) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            eprintln!("gameday guard: {e}");
            return ExitCode::from(2);
        }
    };
    let _ = crate::logging::to_file_redacted(
        &args.session_dir.join(LOG_FILE),
        config.redactor().clone(),
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(watch(config, args));
    runtime.shutdown_timeout(Duration::from_secs(1));
    code
}

async fn watch(config: Arc<Config>, args: GuardArgs) -> ExitCode {
    let ledger = match Ledger::new(&config.console.artifacts) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("ledger: {e}");
            return ExitCode::FAILURE;
        }
    };
    let ctx = FaultContext::new(config.clone(), None);
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    // Tell the console we are watching: it injects nothing before this line.
    println!("watching");
    tracing::info!(owner = %args.owner, lease = ?args.lease, "dead-man agent watching");
    loop {
        match tokio::time::timeout(args.lease, lines.next_line()).await {
            Ok(Ok(Some(line))) if line.trim() == "bye" => {
                tracing::info!("the console ended cleanly");
                return ExitCode::SUCCESS;
            }
            Ok(Ok(Some(_beat))) => {}
            Ok(Ok(None)) | Ok(Err(_)) => {
                let why = "the console ended without reverting".to_string();
                tracing::warn!("{why}; reverting what it owns");
                let left = revert_owned(&ctx, &ledger, &args, &why, GIVE_UP_AFTER).await;
                end_session(&args.session_dir, &config, &why, left);
                return if left == 0 {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(crate::console::EXIT_UNREVERTED)
                };
            }
            Err(_) => {
                let why = format!(
                    "the console did not answer for {}",
                    humantime::format_duration(args.lease)
                );
                if owned(&ledger, &args.owner).is_empty() {
                    continue;
                }
                tracing::warn!("{why}; reverting what it owns");
                // Short retries only: the console may wake and want its agent back.
                revert_owned(&ctx, &ledger, &args, &why, args.lease).await;
            }
        }
    }
}

fn owned(ledger: &Ledger, owner: &str) -> Vec<LedgerEntry> {
    match ledger.entries() {
        Ok(entries) => entries
            .into_iter()
            .filter(|e| e.owner.id == owner)
            .collect(),
        Err(e) => {
            tracing::error!("cannot read the fault ledger: {e}");
            Vec::new()
        }
    }
}

/// Reverts the console's entries, retrying failures with backoff until `give_up_after`.
/// Returns how many are left.
async fn revert_owned(
    ctx: &FaultContext,
    ledger: &Ledger,
    args: &GuardArgs,
    why: &str,
    give_up_after: Duration,
) -> usize {
    let started = Instant::now();
    let mut attempt = 0;
    let mut timeline = SessionTimeline::open(&args.session_dir, &ctx.config);
    loop {
        let entries = owned(ledger, &args.owner);
        if entries.is_empty() {
            return 0;
        }
        attempt += 1;
        for (entry, result) in revert_entries(ctx, ledger, entries).await {
            let (phase, detail) = match &result {
                Ok(()) => {
                    tracing::info!("reverted {}", describe_entry(&entry));
                    (
                        FaultPhase::Reverted,
                        format!("by the dead-man agent: {why}"),
                    )
                }
                Err(e) => {
                    tracing::error!(
                        "revert FAILED (attempt {attempt}) {}: {e}",
                        describe_entry(&entry)
                    );
                    (
                        FaultPhase::Failed,
                        format!("dead-man agent, attempt {attempt}: revert failed: {e}"),
                    )
                }
            };
            timeline.append(EventKind::Fault {
                id: entry.id.clone(),
                name: entry.name.clone(),
                phase,
                target: entry.spec.target(),
                detail,
                cause: Some(Cause::DeadMan(why.to_string())),
                lease_ms: None,
            });
        }
        let left = owned(ledger, &args.owner).len();
        if left == 0 {
            return 0;
        }
        let delay = retry_delay(attempt);
        if started.elapsed() + delay > give_up_after {
            tracing::error!(
                "{left} fault(s) still applied after {attempt} attempts; left in the ledger for `gameday recover`"
            );
            return left;
        }
        tokio::time::sleep(delay).await;
    }
}

/// The session's timeline, appended to by the agent with the session's own clock.
struct SessionTimeline {
    writer: Option<Timeline>,
}

impl SessionTimeline {
    fn open(dir: &Path, config: &Config) -> SessionTimeline {
        let path = dir.join(timeline::FILE_NAME);
        // The session started when its first event says; offsets continue from there.
        // The first line is enough (a long session's file holds hours of samples).
        let started = std::fs::File::open(&path)
            .ok()
            .and_then(|f| {
                std::io::BufRead::lines(std::io::BufReader::new(f))
                    .next()?
                    .ok()
            })
            .and_then(|line| serde_json::from_str::<TimelineEvent>(&line).ok())
            .map(|first| first.ts - chrono::Duration::milliseconds(first.offset_ms as i64));
        let writer = started.and_then(|started| {
            let offset = (chrono::Utc::now() - started).num_milliseconds().max(0) as u64;
            let clock = Clock::Monotonic(
                std::time::Instant::now()
                    .checked_sub(Duration::from_millis(offset))
                    .unwrap_or_else(std::time::Instant::now),
            );
            Timeline::with_clock(dir, config.redactor().clone(), clock, started).ok()
        });
        SessionTimeline { writer }
    }

    fn append(&mut self, kind: EventKind) {
        if let Some(writer) = &mut self.writer
            && let Err(e) = writer.append(kind)
        {
            tracing::error!("cannot write the timeline: {e}");
        }
    }
}

/// After a console died: the session's end and its report, as the console would have written.
fn end_session(dir: &Path, config: &Config, why: &str, left: usize) {
    let path = dir.join(timeline::FILE_NAME);
    let ended = timeline::read(&path).is_ok_and(|events| {
        events
            .iter()
            .any(|e: &TimelineEvent| matches!(e.kind, EventKind::SessionEnd { .. }))
    });
    if !ended {
        let mut timeline = SessionTimeline::open(dir, config);
        let reason = if left == 0 {
            format!("{why}; its dead-man agent reverted its faults")
        } else {
            format!("{why}; {left} fault(s) could not be reverted")
        };
        timeline.append(EventKind::SessionEnd { reason });
    }
    match crate::report::write_from_dir(dir, &crate::report::Format::ALL) {
        Ok(files) => tracing::info!("report written: {files:?}"),
        Err(e) => tracing::error!("cannot write the report: {e}"),
    }
}

/// The console's side: the agent process and the beats that keep it quiet.
pub struct Guard {
    child: Child,
    stdin: Arc<Mutex<Option<ChildStdin>>>,
    beats: JoinHandle<()>,
}

impl Guard {
    /// Starts the agent for `owner` and waits until it watches.
    pub async fn start(
        config: &Config,
        owner: &str,
        session_dir: &Path,
        lease: Duration,
    ) -> Result<Guard, String> {
        let exe =
            std::env::current_exe().map_err(|e| format!("cannot find gameday itself: {e}"))?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(session_dir.join(LOG_FILE))
            .map_err(|e| format!("{}: {e}", session_dir.join(LOG_FILE).display()))?;
        let mut child = tokio::process::Command::new(exe)
            .arg("guard")
            .arg("--config")
            .arg(&config.file)
            .arg("--owner")
            .arg(owner)
            .arg("--session-dir")
            .arg(session_dir)
            .arg("--lease")
            .arg(humantime::format_duration(lease).to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(false)
            .spawn()
            .map_err(|e| format!("cannot start the dead-man agent: {e}"))?;
        let stdout = child.stdout.take().expect("piped");
        let mut ready = BufReader::new(stdout).lines();
        match tokio::time::timeout(START_TIMEOUT, ready.next_line()).await {
            Ok(Ok(Some(line))) if line == "watching" => {}
            _ => {
                let _ = child.start_kill();
                return Err(format!(
                    "the dead-man agent did not start; see {}",
                    session_dir.join(LOG_FILE).display()
                ));
            }
        }
        let stdin = Arc::new(Mutex::new(child.stdin.take()));
        let beats = tokio::spawn(beat(stdin.clone(), lease / 3));
        Ok(Guard {
            child,
            stdin,
            beats,
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Whether the agent still runs (the console warns and restarts it if not).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The console reverted everything it owned: the agent may go.
    pub async fn bye(mut self) {
        self.beats.abort();
        if let Some(mut stdin) = self.stdin.lock().await.take() {
            let _ = stdin.write_all(b"bye\n").await;
            let _ = stdin.flush().await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), self.child.wait()).await;
    }

    /// The console leaves faults behind: the agent takes over (stdin closes without `bye`).
    pub fn hand_over(self) {
        self.beats.abort();
        if let Ok(mut stdin) = self.stdin.try_lock() {
            stdin.take();
        }
    }
}

async fn beat(stdin: Arc<Mutex<Option<ChildStdin>>>, every: Duration) {
    let mut ticks = tokio::time::interval(every.max(Duration::from_millis(100)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let mut stdin = stdin.lock().await;
        let Some(pipe) = stdin.as_mut() else {
            return;
        };
        if let Err(e) = pipe.write_all(b"beat\n").await {
            tracing::error!("the dead-man agent is gone: {e}");
            *stdin = None;
            return;
        }
    }
}
