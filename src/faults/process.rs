//! Process faults on a `[[process]]` the config allows: freeze (SIGSTOP), terminate (SIGTERM) or
//! kill (SIGKILL). The target is found afresh every time, with sysinfo, by its exact process name
//! and/or a command-line substring; gameday itself and its ancestors are never matched.
//!
//! Every revert works on a fresh instance (the ledger path): a freeze is undone by sending
//! SIGCONT to whatever matches and is stopped; a terminate or kill is undone by running the
//! configured `start` command (detached, in its own session, so it outlives the console) unless
//! the target is already running, then waiting until `ready` accepts TCP connections.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use futures::future::BoxFuture;
use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use sysinfo::{ProcessRefreshKind, ProcessStatus, ProcessesToUpdate, System, UpdateKind};
use tokio::time::Instant;

use super::spec::{ProcessAction, ProcessTarget};
use super::touched::{ProcessStamp, Touched};
use super::{Description, Fault, FaultContext, FaultError};
use crate::config::Config;

/// How long a terminated process may take to exit before the inject counts as failed.
const TERMINATE_WAIT: Duration = Duration::from_secs(10);
/// How long a killed process (and its children) may take to disappear.
const KILL_WAIT: Duration = Duration::from_secs(5);
/// How long a SIGSTOP or SIGCONT may take to show in the process state.
const STATE_WAIT: Duration = Duration::from_secs(2);
/// Revert of terminate/kill: start the process and wait for it to accept connections.
const RESTART_REVERT_DEADLINE: Duration = Duration::from_secs(30);
/// The part of that deadline spent waiting for `ready`, leaving room to report why.
const READY_WAIT: Duration = Duration::from_secs(25);
/// How often the wait loops look again.
const POLL: Duration = Duration::from_millis(20);
/// Linux keeps at most this many bytes of a process name (`comm`).
const COMM_LEN: usize = 15;

pub struct ProcessFault {
    target: ProcessTarget,
    action: ProcessAction,
    /// What this instance's inject did, for describe and for an idempotent second inject.
    injected: Option<Injected>,
    /// The pid of the process this instance's revert started, if it had to start one.
    started: Option<u32>,
    /// This instance's inject found nothing to act on: its revert must not start anything.
    refused: bool,
    /// Exactly the processes a freeze stopped (from this inject, or from the ledger): the thaw
    /// continues those and no other stopped process of the same name.
    frozen: Option<Vec<ProcessStamp>>,
}

#[derive(Debug, Clone)]
struct Injected {
    /// The matched processes.
    roots: Vec<u32>,
    /// Their children that were signalled too.
    children: usize,
}

impl ProcessFault {
    pub fn new(target: ProcessTarget, action: ProcessAction) -> Self {
        ProcessFault {
            target,
            action,
            injected: None,
            started: None,
            refused: false,
            frozen: None,
        }
    }

    async fn find(&self) -> Result<Snapshot, FaultError> {
        let target = self.target.clone();
        tokio::task::spawn_blocking(move || Snapshot::take(&target))
            .await
            .map_err(|e| FaultError::Failed(format!("process search failed: {e}")))?
    }

    /// The matched processes, or `Refused` naming what was searched.
    async fn find_running(&self) -> Result<Snapshot, FaultError> {
        let snapshot = self.find().await?;
        if snapshot.roots.is_empty() {
            return Err(FaultError::Refused(format!(
                "no running process matches {} ({} processes searched)",
                search_description(&self.target),
                snapshot.searched
            )));
        }
        Ok(snapshot)
    }

    async fn freeze(&mut self) -> Result<(), FaultError> {
        let mut stopped: BTreeSet<u32> = BTreeSet::new();
        let mut roots = Vec::new();
        // Stop the matches first, then their children; a child forked meanwhile shows up in the
        // next round's snapshot. Stopped parents fork no more, so this ends.
        for round in 0..5 {
            let snapshot = if round == 0 {
                self.find_running().await?
            } else {
                self.find().await?
            };
            if round == 0 {
                roots.clone_from(&snapshot.roots);
            }
            let mut wave: Vec<u32> = snapshot.roots.clone();
            if self.target.children {
                wave.extend(snapshot.descendants(&snapshot.roots));
            }
            wave.retain(|pid| !stopped.contains(pid));
            if wave.is_empty() {
                break;
            }
            for pid in wave {
                if send(pid, Signal::SIGSTOP, &self.target.name)? {
                    stopped.insert(pid);
                }
            }
        }
        let pids: Vec<u32> = stopped.iter().copied().collect();
        self.frozen = Some(
            pids.iter()
                .filter_map(|&pid| ProcessStamp::of(pid))
                .collect(),
        );
        wait_for_state(&pids, true).await?;
        self.injected = Some(Injected {
            children: stopped.len().saturating_sub(roots.len()),
            roots,
        });
        Ok(())
    }

    async fn thaw(&mut self) -> Result<(), FaultError> {
        if let Some(frozen) = &self.frozen {
            // Children first, so a parent finds its children running when it wakes.
            let pids: Vec<u32> = frozen
                .iter()
                .rev()
                .filter(|stamp| stamp.is_same() && state_of(stamp.pid) == Some('T'))
                .map(|stamp| stamp.pid)
                .collect();
            return continue_all(&pids, &self.target.name).await;
        }
        let snapshot = self.find().await?;
        let mut pids = Vec::new();
        if self.target.children {
            pids.extend(snapshot.descendants(&snapshot.roots));
        }
        // Children first, so the parent finds its children running when it wakes.
        pids.extend(snapshot.roots.iter().copied());
        pids.retain(|pid| snapshot.procs.get(pid).is_some_and(|p| p.stopped));
        continue_all(&pids, &self.target.name).await
    }

    async fn stop(&mut self, signal: Signal) -> Result<(), FaultError> {
        let snapshot = match self.find_running().await {
            Ok(snapshot) => snapshot,
            // Already gone after our own inject: nothing more to do.
            Err(FaultError::Refused(_)) if self.injected.is_some() => return Ok(()),
            Err(e) => return Err(e),
        };
        let mut pids = snapshot.roots.clone();
        // A kill leaves nothing behind: children (PostgreSQL backends) would keep the old
        // instance's resources. A terminate lets the process end its children its own way.
        let children = if signal == Signal::SIGKILL && self.target.children {
            snapshot.descendants(&snapshot.roots)
        } else {
            Vec::new()
        };
        pids.extend(&children);
        for &pid in &pids {
            send(pid, signal, &self.target.name)?;
            if signal == Signal::SIGTERM {
                // A frozen process cannot act on SIGTERM.
                send(pid, Signal::SIGCONT, &self.target.name)?;
            }
        }
        self.injected = Some(Injected {
            roots: snapshot.roots.clone(),
            children: children.len(),
        });
        let within = if signal == Signal::SIGKILL {
            KILL_WAIT
        } else {
            TERMINATE_WAIT
        };
        let left = wait_until_gone(&pids, within).await;
        if left.is_empty() {
            Ok(())
        } else {
            Err(FaultError::Failed(format!(
                "{} still running {} after {signal}: pid {}",
                self.target.name,
                super::fmt_duration(within),
                join(&left)
            )))
        }
    }

    /// Starts the target unless it is running, then waits until it is ready.
    async fn restart(&mut self, ctx: &FaultContext) -> Result<(), FaultError> {
        let snapshot = self.find().await?;
        if snapshot.roots.is_empty() {
            let pid = start_detached(&self.target, &ctx.config.console.artifacts)?;
            tracing::info!(
                "started {} again (pid {pid}): {}",
                self.target.name,
                self.target.start.join(" ")
            );
            self.started = Some(pid);
        }
        self.wait_ready(&ctx.config.console.artifacts).await
    }

    async fn wait_ready(&self, artifacts: &Path) -> Result<(), FaultError> {
        let deadline = Instant::now() + READY_WAIT;
        loop {
            let exited = self.started.filter(|&pid| !is_alive(pid));
            let ready = match &self.target.ready {
                Some(address) => accepts(address).await,
                None => !self.find().await?.roots.is_empty(),
            };
            if ready {
                return Ok(());
            }
            if let Some(pid) = exited {
                return Err(FaultError::Failed(format!(
                    "{} exited right after it was started (pid {pid}); see {}",
                    self.target.name,
                    log_path(&self.target.name, artifacts).display()
                )));
            }
            if Instant::now() >= deadline {
                let what = match &self.target.ready {
                    Some(address) => format!("{address} accepts no connection"),
                    None => "no matching process is running".to_string(),
                };
                return Err(FaultError::Failed(format!(
                    "{} is not back after {}: {what}",
                    self.target.name,
                    super::fmt_duration(READY_WAIT)
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

impl Fault for ProcessFault {
    fn describe(&self, _config: &Config) -> Description {
        let kind = match self.action {
            ProcessAction::Freeze => "process freeze",
            ProcessAction::Terminate => "process terminate",
            ProcessAction::Kill => "process kill",
        };
        let signal = match self.action {
            ProcessAction::Freeze => "SIGSTOP",
            ProcessAction::Terminate => "SIGTERM",
            ProcessAction::Kill => "SIGKILL",
        };
        let with_children = self.target.children && self.action != ProcessAction::Terminate;
        let params = match &self.injected {
            Some(done) => {
                let children = if done.children > 0 {
                    format!(" and {} children", done.children)
                } else {
                    String::new()
                };
                format!(
                    "{signal} {} (pid {}){children}",
                    self.target.name,
                    join(&done.roots)
                )
            }
            None => format!(
                "{signal} {} ({}){}",
                self.target.name,
                search_description(&self.target),
                if with_children {
                    " and its children"
                } else {
                    ""
                }
            ),
        };
        let clients = match &self.target.ready {
            Some(address) => format!("every client of {} ({address})", self.target.name),
            None => format!("everything that uses {}", self.target.name),
        };
        let blast_radius = match self.action {
            ProcessAction::Freeze => format!("{clients}: requests hang until thawed"),
            _ => format!("{clients}: connections drop until it is started again"),
        };
        Description {
            kind: kind.to_string(),
            params,
            blast_radius,
        }
    }

    fn inject<'a>(&'a mut self, _ctx: &'a FaultContext) -> BoxFuture<'a, Result<(), FaultError>> {
        Box::pin(async move {
            let result = match self.action {
                ProcessAction::Freeze => self.freeze().await,
                ProcessAction::Terminate => self.stop(Signal::SIGTERM).await,
                ProcessAction::Kill => self.stop(Signal::SIGKILL).await,
            };
            self.refused = self.injected.is_none() && matches!(result, Err(FaultError::Refused(_)));
            result
        })
    }

    fn revert<'a>(&'a mut self, ctx: &'a FaultContext) -> BoxFuture<'a, Result<(), FaultError>> {
        Box::pin(async move {
            match self.action {
                ProcessAction::Freeze => self.thaw().await,
                // The engine reverts a failed inject; a process that was not running when the
                // operator asked to stop it is not started by that cleanup.
                ProcessAction::Terminate | ProcessAction::Kill if self.refused => Ok(()),
                ProcessAction::Terminate | ProcessAction::Kill => self.restart(ctx).await,
            }
        })
    }

    fn dry_run<'a>(
        &'a self,
        _ctx: &'a FaultContext,
    ) -> BoxFuture<'a, Result<super::Radius, FaultError>> {
        Box::pin(async move {
            let snapshot = self.find_running().await?;
            let mut lines = Vec::new();
            for &pid in &snapshot.roots {
                let cmdline = fs::read(format!("/proc/{pid}/cmdline"))
                    .map(|raw| {
                        String::from_utf8_lossy(&raw)
                            .replace('\0', " ")
                            .trim()
                            .to_string()
                    })
                    .unwrap_or_default();
                let children = if self.target.children {
                    format!(" and {} children", snapshot.descendants(&[pid]).len())
                } else {
                    String::new()
                };
                lines.push(format!("pid {pid}{children}: {cmdline}"));
            }
            let ambiguous = (snapshot.roots.len() > 1).then(|| {
                format!(
                    "{} matches {} processes: pid {}",
                    search_description(&self.target),
                    snapshot.roots.len(),
                    join(&snapshot.roots)
                )
            });
            Ok(super::Radius { lines, ambiguous })
        })
    }

    fn touched(&self) -> Option<Touched> {
        self.frozen.clone().map(|pids| Touched::Processes { pids })
    }

    fn restore(&mut self, touched: &Touched) {
        if let Touched::Processes { pids } = touched {
            self.frozen = Some(pids.clone());
        }
    }

    fn revert_deadline(&self) -> Duration {
        match self.action {
            ProcessAction::Freeze => super::engine::REVERT_DEADLINE,
            ProcessAction::Terminate | ProcessAction::Kill => RESTART_REVERT_DEADLINE,
        }
    }
}

/// SIGCONT to every pid, going on past one that fails (each failure is reported), then waits
/// until the ones it reached run again.
async fn continue_all(pids: &[u32], name: &str) -> Result<(), FaultError> {
    let mut failures = Vec::new();
    let mut sent = Vec::new();
    for &pid in pids {
        match send(pid, Signal::SIGCONT, name) {
            Ok(_) => sent.push(pid),
            Err(e) => failures.push(e.to_string()),
        }
    }
    let waited = wait_for_state(&sent, false).await;
    if !failures.is_empty() {
        return Err(FaultError::Failed(failures.join("; ")));
    }
    waited
}

/// `process = "nats-server" and cmdline containing "-p 4222"`.
fn search_description(target: &ProcessTarget) -> String {
    let mut parts = Vec::new();
    if let Some(name) = &target.process_name {
        parts.push(format!("process = \"{name}\""));
    }
    if let Some(cmdline) = &target.cmdline {
        parts.push(format!("cmdline containing \"{cmdline}\""));
    }
    if parts.is_empty() {
        "nothing (neither process nor cmdline is set)".to_string()
    } else {
        parts.join(" and ")
    }
}

fn join(pids: &[u32]) -> String {
    pids.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The processes on the machine at one moment, and which of them match the target.
struct Snapshot {
    procs: BTreeMap<u32, Proc>,
    /// Matching processes whose parent does not match too (a match's matching children are
    /// reached through it).
    roots: Vec<u32>,
    searched: usize,
}

struct Proc {
    parent: Option<u32>,
    stopped: bool,
}

impl Snapshot {
    fn take(target: &ProcessTarget) -> Result<Snapshot, FaultError> {
        // An empty name or substring would match everything.
        let set = |v: &Option<String>| v.as_deref().is_some_and(|v| !v.is_empty());
        if !set(&target.process_name) && !set(&target.cmdline) {
            return Err(FaultError::Refused(format!(
                "process target {} names neither `process` nor `cmdline`",
                target.name
            )));
        }
        let mut system =
            System::new().map_err(|e| FaultError::Failed(format!("cannot list processes: {e}")))?;
        // Without tasks, threads are not listed as processes of their own.
        system.refresh_processes_specifics(
            ProcessesToUpdate::All,
            true,
            ProcessRefreshKind::nothing()
                .without_tasks()
                .with_cmd(UpdateKind::Always),
        );
        let processes = system.processes();
        let mut procs = BTreeMap::new();
        for (pid, p) in processes {
            if p.thread_kind().is_some() || p.status() == ProcessStatus::Zombie {
                continue;
            }
            procs.insert(
                pid.as_u32(),
                Proc {
                    parent: p.parent().map(|pid| pid.as_u32()),
                    stopped: p.status() == ProcessStatus::Stop,
                },
            );
        }
        // gameday and the processes that started it (a shell, cargo) are never targets, even
        // when their command line happens to contain the substring.
        let mut protected = BTreeSet::new();
        let mut next = Some(std::process::id());
        while let Some(pid) = next.filter(|pid| *pid != 0 && protected.insert(*pid)) {
            next = procs.get(&pid).and_then(|p| p.parent);
        }
        let matching: BTreeSet<u32> = processes
            .iter()
            .filter(|(pid, _)| {
                let pid = pid.as_u32();
                procs.contains_key(&pid) && !protected.contains(&pid)
            })
            .filter(|(_, p)| matches(target, p))
            .map(|(pid, _)| pid.as_u32())
            .collect();
        let roots = matching
            .iter()
            .copied()
            .filter(|pid| {
                !procs[pid]
                    .parent
                    .is_some_and(|parent| matching.contains(&parent))
            })
            .collect();
        Ok(Snapshot {
            searched: procs.len(),
            procs,
            roots,
        })
    }

    /// Every process below `roots`, children before grandchildren.
    fn descendants(&self, roots: &[u32]) -> Vec<u32> {
        let mut children: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
        for (&pid, p) in &self.procs {
            if let Some(parent) = p.parent {
                children.entry(parent).or_default().push(pid);
            }
        }
        let mut out = Vec::new();
        let mut queue: std::collections::VecDeque<u32> = roots.iter().copied().collect();
        let mut seen: BTreeSet<u32> = roots.iter().copied().collect();
        while let Some(pid) = queue.pop_front() {
            for &child in children.get(&pid).into_iter().flatten() {
                if seen.insert(child) {
                    out.push(child);
                    queue.push_back(child);
                }
            }
        }
        out
    }
}

fn matches(target: &ProcessTarget, p: &sysinfo::Process) -> bool {
    let name_ok = target
        .process_name
        .as_deref()
        .filter(|w| !w.is_empty())
        .is_none_or(|want| {
            let name = p.name().to_string_lossy();
            // The kernel truncates names to 15 bytes; a longer configured name matches its prefix.
            name == want
                || (want.len() > COMM_LEN
                    && want.as_bytes().get(..COMM_LEN) == Some(name.as_bytes()))
        });
    let cmd_ok = target
        .cmdline
        .as_deref()
        .filter(|w| !w.is_empty())
        .is_none_or(|want| {
            let cmd: Vec<String> = p
                .cmd()
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            cmd.join(" ").contains(want)
        });
    name_ok && cmd_ok
}

/// Sends `signal`; `Ok(false)` when the process is already gone. Other errors (EPERM) fail.
fn send(pid: u32, signal: Signal, name: &str) -> Result<bool, FaultError> {
    match kill(nix::unistd::Pid::from_raw(pid as i32), signal) {
        Ok(()) => Ok(true),
        Err(Errno::ESRCH) => Ok(false),
        Err(errno) => Err(FaultError::Failed(format!(
            "cannot send {signal} to {name} (pid {pid}): {} ({errno:?})",
            errno.desc()
        ))),
    }
}

/// The state letter from `/proc/<pid>/stat`, `None` when the process is gone.
fn state_of(pid: u32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The name is in parentheses and may itself contain spaces or parentheses.
    stat[stat.rfind(')')? + 1..]
        .split_whitespace()
        .next()?
        .chars()
        .next()
}

fn is_alive(pid: u32) -> bool {
    state_of(pid).is_some_and(|s| s != 'Z' && s != 'X')
}

/// Waits until every live process of `pids` is stopped (`stopped`) or running again.
async fn wait_for_state(pids: &[u32], stopped: bool) -> Result<(), FaultError> {
    let deadline = Instant::now() + STATE_WAIT;
    loop {
        let wrong: Vec<u32> = pids
            .iter()
            .copied()
            .filter(|&pid| match state_of(pid) {
                Some('T') => !stopped,
                Some('Z' | 'X') | None => false,
                Some(_) => stopped,
            })
            .collect();
        if wrong.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let what = if stopped { "stopped" } else { "running" };
            return Err(FaultError::Failed(format!(
                "pid {} not {what} {} after the signal",
                join(&wrong),
                super::fmt_duration(STATE_WAIT)
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until none of `pids` is alive; returns the ones still alive at the deadline.
async fn wait_until_gone(pids: &[u32], within: Duration) -> Vec<u32> {
    let deadline = Instant::now() + within;
    loop {
        let alive: Vec<u32> = pids.iter().copied().filter(|&pid| is_alive(pid)).collect();
        if alive.is_empty() || Instant::now() >= deadline {
            return alive;
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn accepts(address: &str) -> bool {
    matches!(
        tokio::time::timeout(
            Duration::from_millis(500),
            tokio::net::TcpStream::connect(address)
        )
        .await,
        Ok(Ok(_))
    )
}

/// `<artifacts>/processes/<name>.log`: where a restarted process writes its output.
fn log_path(name: &str, artifacts: &Path) -> PathBuf {
    artifacts.join("processes").join(format!("{name}.log"))
}

/// Runs the target's `start` command in its own session, output appended to its log, not tied to
/// the console: it must outlive it. A thread reaps it when it exits while the console runs.
fn start_detached(target: &ProcessTarget, artifacts: &Path) -> Result<u32, FaultError> {
    let Some((program, args)) = target.start.split_first() else {
        return Err(FaultError::Refused(format!(
            "process {} has no `start` command to bring it back",
            target.name
        )));
    };
    let log = log_path(&target.name, artifacts);
    let failed = |what: &str, e: std::io::Error| {
        FaultError::Failed(format!("cannot {what} for {}: {e}", target.name))
    };
    if let Some(dir) = log.parent() {
        fs::create_dir_all(dir).map_err(|e| failed(&format!("create {}", dir.display()), e))?;
    }
    let out = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .map_err(|e| failed(&format!("open {}", log.display()), e))?;
    let err = out
        .try_clone()
        .map_err(|e| failed("duplicate the log handle", e))?;
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    // SAFETY: setsid is async-signal-safe and the closure allocates nothing.
    unsafe {
        command.pre_exec(|| nix::unistd::setsid().map(|_| ()).map_err(Into::into));
    }
    let mut child = command
        .spawn()
        .map_err(|e| failed(&format!("run {}", target.start.join(" ")), e))?;
    let pid = child.id();
    std::thread::Builder::new()
        .name(format!("reap-{pid}"))
        .spawn(move || {
            let _ = child.wait();
        })
        .map_err(|e| failed("start the reaper thread", e))?;
    Ok(pid)
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use bytes::Bytes;
    use sqlx::ConnectOptions;
    use tokio::sync::mpsc;
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::services::testing::test_dir;
    use crate::services::{NatsOptions, NatsServer, PgCluster, PgOptions, find_nats_server};
    use crate::sources::{SourceEvent, SourceStatus};

    fn context(dir: &Path, extra: &str) -> FaultContext {
        let text = format!(
            "[console]\nartifacts = \"{}\"\n{extra}",
            dir.join("artifacts").display()
        );
        FaultContext::new(
            Arc::new(Config::from_text(Path::new("gameday.toml"), &text).unwrap()),
            None,
        )
    }

    fn target(name: &str, process: Option<&str>, cmdline: &str) -> ProcessTarget {
        ProcessTarget {
            name: name.into(),
            process_name: process.map(str::to_string),
            cmdline: Some(cmdline.to_string()),
            start: Vec::new(),
            ready: None,
            children: true,
        }
    }

    /// Waits for the source's next status that satisfies `wanted`; how long it took.
    async fn status_within(
        events: &mut mpsc::Receiver<SourceEvent>,
        within: Duration,
        wanted: impl Fn(&SourceStatus) -> bool,
    ) -> Option<Duration> {
        let start = Instant::now();
        let deadline = start + within;
        loop {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Some(SourceEvent::Status { status, .. })) if wanted(&status) => {
                    return Some(start.elapsed());
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return None,
            }
        }
    }

    #[tokio::test]
    async fn a_frozen_nats_server_is_down_until_a_fresh_instance_thaws_the_same_process() {
        let dir = test_dir("fault-freeze-nats");
        let server = NatsServer::start(NatsOptions::new(dir.join("nats")))
            .await
            .unwrap();
        let pid = server.pid().unwrap();
        let ctx = context(
            &dir,
            &format!(
                "[nats]\nurl = \"{}\"\ntimeout = \"500ms\"\n",
                server.client_url()
            ),
        );
        let (tx, mut events) = mpsc::channel(1024);
        let cancel = CancellationToken::new();
        let source = tokio::spawn(crate::sources::nats::run(
            ctx.config.nats.clone().unwrap(),
            Duration::from_millis(200),
            Default::default(),
            tx,
            cancel.clone(),
        ));
        assert!(
            status_within(&mut events, Duration::from_secs(5), SourceStatus::is_up)
                .await
                .is_some(),
            "the NATS source sees the broker up first"
        );

        let spec = target(
            "nats",
            Some("nats-server"),
            &dir.join("nats").display().to_string(),
        );
        let mut fault = ProcessFault::new(spec.clone(), ProcessAction::Freeze);
        fault.inject(&ctx).await.unwrap();
        fault
            .inject(&ctx)
            .await
            .expect("a second inject is harmless");
        assert_eq!(state_of(pid), Some('T'), "nats-server is stopped");
        assert!(
            fault
                .describe(&ctx.config)
                .params
                .contains(&pid.to_string()),
            "the applied fault names the pid: {}",
            fault.describe(&ctx.config).params
        );
        let down = status_within(&mut events, Duration::from_secs(3), |s| !s.is_up())
            .await
            .expect("the NATS source shows the frozen broker down within 3 s");

        // The ledger path: a fresh instance from the same spec thaws it.
        let mut fresh = ProcessFault::new(spec.clone(), ProcessAction::Freeze);
        let reverting = Instant::now();
        fresh.revert(&ctx).await.unwrap();
        status_within(&mut events, Duration::from_secs(3), SourceStatus::is_up)
            .await
            .expect("the thawed broker is up again within 3 s");
        let up = reverting.elapsed();
        assert_eq!(server.pid(), Some(pid), "thawed, not restarted");
        assert!(matches!(state_of(pid), Some(s) if s != 'T'));
        fresh
            .revert(&ctx)
            .await
            .expect("a second revert is harmless");
        eprintln!("nats freeze: down after {down:?}, up {up:?} after the revert");

        cancel.cancel();
        source.await.unwrap();
        drop(server);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn freezing_postgres_with_children_stalls_open_sessions_until_thawed() {
        let dir = test_dir("fault-freeze-pg");
        let cluster = PgCluster::start(PgOptions::new(dir.join("pg")))
            .await
            .unwrap();
        let mut open = cluster
            .superuser_options("postgres")
            .connect()
            .await
            .unwrap();
        let ctx = context(&dir, "");
        let spec = target(
            "postgres",
            Some("postgres"),
            &cluster.data_dir().display().to_string(),
        );

        let mut fault = ProcessFault::new(spec.clone(), ProcessAction::Freeze);
        fault.inject(&ctx).await.unwrap();
        let postmaster = cluster.pid().unwrap();
        let snapshot = Snapshot::take(&spec).unwrap();
        assert_eq!(snapshot.roots, vec![postmaster], "the postmaster matches");
        let backends = snapshot.descendants(&snapshot.roots);
        assert!(!backends.is_empty());
        for pid in backends.iter().chain([&postmaster]) {
            assert_eq!(state_of(*pid), Some('T'), "pid {pid} is stopped");
        }
        let params = fault.describe(&ctx.config).params;
        assert!(params.contains("children"), "{params}");
        let stalled = tokio::time::timeout(
            Duration::from_secs(1),
            sqlx::query("select 1").execute(&mut open),
        )
        .await;
        assert!(stalled.is_err(), "a query on an open session stalls");

        ProcessFault::new(spec, ProcessAction::Freeze)
            .revert(&ctx)
            .await
            .unwrap();
        let mut fresh = tokio::time::timeout(
            Duration::from_secs(5),
            cluster.superuser_options("postgres").connect(),
        )
        .await
        .expect("a thawed server answers")
        .unwrap();
        let one: i32 = sqlx::query_scalar("select 1")
            .fetch_one(&mut fresh)
            .await
            .unwrap();
        assert_eq!(one, 1);
        drop((open, fresh, cluster));
        fs::remove_dir_all(&dir).unwrap();
    }

    /// Kills whatever still matches when the test ends: a restarted process is not our child.
    struct KillOnDrop(ProcessTarget);

    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            if let Ok(snapshot) = Snapshot::take(&self.0) {
                for pid in snapshot.roots {
                    let _ = send(pid, Signal::SIGKILL, "test leftover");
                }
            }
        }
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    async fn nats_answers(url: &str) -> bool {
        let Ok(Ok(client)) =
            tokio::time::timeout(Duration::from_secs(2), async_nats::connect(url)).await
        else {
            return false;
        };
        let request = client.request("$JS.API.INFO", Bytes::new());
        matches!(
            tokio::time::timeout(Duration::from_secs(2), request).await,
            Ok(Ok(_))
        )
    }

    #[tokio::test]
    async fn terminate_and_kill_take_nats_down_and_revert_starts_it_again() {
        let dir = test_dir("fault-restart-nats");
        let store = dir.join("store");
        let port = free_port();
        let address = format!("127.0.0.1:{port}");
        let url = format!("nats://{address}");
        let binary = find_nats_server().unwrap();
        let spec = ProcessTarget {
            start: vec![
                binary.display().to_string(),
                "-a".into(),
                "127.0.0.1".into(),
                "-p".into(),
                port.to_string(),
                "-js".into(),
                "-sd".into(),
                store.display().to_string(),
            ],
            ready: Some(address.clone()),
            ..target("nats", Some("nats-server"), &store.display().to_string())
        };
        let _cleanup = KillOnDrop(spec.clone());
        let ctx = context(&dir, "");

        let mut refused = ProcessFault::new(spec.clone(), ProcessAction::Terminate);
        let result = refused.inject(&ctx).await;
        assert!(
            matches!(&result, Err(FaultError::Refused(why)) if why.contains("no running process matches")),
            "nothing runs yet: {result:?}"
        );
        refused.revert(&ctx).await.unwrap();
        assert!(
            Snapshot::take(&spec).unwrap().roots.is_empty(),
            "cleaning up a refused inject starts nothing"
        );

        // A fresh instance's revert starts what is not running.
        ProcessFault::new(spec.clone(), ProcessAction::Kill)
            .revert(&ctx)
            .await
            .unwrap();
        assert!(nats_answers(&url).await, "started by the revert");
        assert!(log_path("nats", &dir.join("artifacts")).is_file());

        for action in [ProcessAction::Terminate, ProcessAction::Kill] {
            let before = Snapshot::take(&spec).unwrap().roots;
            assert_eq!(before.len(), 1);
            let mut fault = ProcessFault::new(spec.clone(), action);
            let started = Instant::now();
            fault.inject(&ctx).await.unwrap();
            let gone_after = started.elapsed();
            assert!(!is_alive(before[0]), "{action:?}: the process is gone");
            assert!(!nats_answers(&url).await, "{action:?}: nothing answers");
            fault
                .inject(&ctx)
                .await
                .expect("a second inject is harmless");

            let started = Instant::now();
            fault.revert(&ctx).await.unwrap();
            let back_after = started.elapsed();
            assert!(nats_answers(&url).await, "{action:?}: answers again");
            let after = Snapshot::take(&spec).unwrap().roots;
            assert_eq!(after.len(), 1, "{action:?}: exactly one started");
            assert_ne!(after, before, "{action:?}: a new process");
            fault
                .revert(&ctx)
                .await
                .expect("a second revert is harmless");
            assert_eq!(
                Snapshot::take(&spec).unwrap().roots,
                after,
                "not started twice"
            );
            eprintln!(
                "{action:?}: gone after {gone_after:?}, ready {back_after:?} after the revert"
            );
        }
        drop(_cleanup);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn the_engine_waits_longer_than_its_default_for_a_process_to_come_back() {
        use crate::faults::engine::{self, FaultReport};
        use crate::faults::spec::FaultSpec;
        use crate::ledger::Ledger;
        use crate::timeline::{Cause, FaultPhase};

        let dir = test_dir("fault-engine-restart");
        let store = dir.join("store");
        let port = free_port();
        let address = format!("127.0.0.1:{port}");
        let serve = format!(
            "exec {} -a 127.0.0.1 -p {port} -js -sd {}",
            find_nats_server().unwrap().display(),
            store.display()
        );
        let quick = ProcessTarget {
            start: vec!["sh".into(), "-c".into(), serve.clone()],
            ready: Some(address.clone()),
            ..target("nats", None, &store.display().to_string())
        };
        // A server that needs longer to come back than the engine's default revert deadline
        // and the escalation (a second revert) after it.
        let slow_start =
            engine::REVERT_DEADLINE + engine::ESCALATE_DEADLINE + Duration::from_secs(2);
        let slow = ProcessTarget {
            start: vec![
                "sh".into(),
                "-c".into(),
                format!("sleep {}; {serve}", slow_start.as_secs()),
            ],
            ..quick.clone()
        };
        let _cleanup = KillOnDrop(quick.clone());
        // The engine only touches declared targets.
        let declared = format!(
            "[[process]]\nname = \"nats\"\ncmdline = {:?}\nstart = {:?}\nready = {:?}\n",
            store.display().to_string(),
            slow.start,
            address
        );
        let ctx = context(&dir, &declared);
        assert_eq!(ctx.config.processes, vec![slow.clone()]);
        ProcessFault::new(quick, ProcessAction::Kill)
            .revert(&ctx)
            .await
            .unwrap();
        assert!(nats_answers(&format!("nats://{address}")).await);

        let ledger = Ledger::new(&dir.join("artifacts")).unwrap();
        let (tx, mut reports) = mpsc::channel::<FaultReport>(64);
        let owner = crate::ledger::Owner::new("test");
        let _alive = ledger.hold(&owner).unwrap();
        let (others, _) = tokio::sync::watch::channel(Vec::new());
        let handle = engine::spawn(Arc::new(ctx), ledger.clone(), owner, tx, others);
        let spec = FaultSpec::Process {
            target: slow,
            action: ProcessAction::Kill,
        };
        handle
            .inject(
                "kill nats",
                spec,
                Duration::from_secs(600),
                Cause::Key("1".into()),
            )
            .await;
        let mut next = async |phases: &[FaultPhase]| loop {
            let report = tokio::time::timeout(Duration::from_secs(45), reports.recv())
                .await
                .expect("the engine reports in time")
                .expect("the engine runs");
            if phases.contains(&report.phase) {
                return report;
            }
        };
        let applied = next(&[FaultPhase::Applied, FaultPhase::Failed]).await;
        assert_eq!(applied.phase, FaultPhase::Applied, "{}", applied.detail);
        let started = Instant::now();
        handle.revert(&applied.id, Cause::Key("r".into())).await;
        let done = next(&[FaultPhase::Reverted, FaultPhase::Failed]).await;
        assert_eq!(done.phase, FaultPhase::Reverted, "{}", done.detail);
        assert!(started.elapsed() > engine::REVERT_DEADLINE + engine::ESCALATE_DEADLINE);
        assert!(nats_answers(&format!("nats://{address}")).await);
        assert!(
            ledger.entries().unwrap().is_empty(),
            "the ledger is cleared"
        );
        drop(_cleanup);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_target_that_matches_nothing_is_refused_with_what_was_searched() {
        let dir = test_dir("fault-no-match");
        let ctx = context(&dir, "");
        let marker = format!("no-such-process-{}", uuid::Uuid::new_v4().simple());
        for action in [
            ProcessAction::Freeze,
            ProcessAction::Terminate,
            ProcessAction::Kill,
        ] {
            let result = ProcessFault::new(target("ghost", None, &marker), action)
                .inject(&ctx)
                .await;
            let Err(FaultError::Refused(why)) = result else {
                panic!("{action:?}: expected a refusal, got {result:?}");
            };
            assert!(why.contains(&marker), "names the search: {why}");
        }
        let empty = ProcessFault::new(target("anything", Some(""), ""), ProcessAction::Freeze)
            .inject(&ctx)
            .await;
        assert!(
            matches!(empty, Err(FaultError::Refused(_))),
            "an empty search must not match everything: {empty:?}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn gameday_and_the_processes_that_started_it_are_never_matched() {
        let own = std::process::id();
        let exe = std::env::current_exe().unwrap().display().to_string();
        let snapshot = Snapshot::take(&target("self", None, &exe)).unwrap();
        assert!(!snapshot.roots.contains(&own), "own process matched");

        let parent = nix::unistd::getppid().as_raw() as u32;
        let parent_cmdline = fs::read_to_string(format!("/proc/{parent}/cmdline"))
            .unwrap()
            .split('\0')
            .filter(|a| !a.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        let snapshot = Snapshot::take(&target("parent", None, &parent_cmdline)).unwrap();
        assert!(!snapshot.roots.contains(&parent), "the parent matched");
        assert!(snapshot.procs.contains_key(&parent), "the parent was seen");
    }
}
