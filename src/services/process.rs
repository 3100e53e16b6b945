//! Spawning server processes that die with us, and watching and signalling them.

use std::fs;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::unistd::{Gid, Pid, Uid, User, chown, geteuid, getppid};
use tokio::time::Instant;

/// How often the wait loops below look at a process again.
const POLL: Duration = Duration::from_millis(10);

struct SpawnRequest {
    command: Command,
    reply: mpsc::SyncSender<io::Result<Child>>,
}

static SPAWNER: OnceLock<mpsc::Sender<SpawnRequest>> = OnceLock::new();

/// Spawns `command` so that the child is SIGKILLed when this process dies, however it dies.
///
/// The fork happens on a spawner thread that lives as long as the process, because the kernel
/// sends the parent-death signal when the *forking thread* exits (see the module docs).
/// As root: the `postgres` user, now owning `dir` (PostgreSQL and PgBouncer refuse to run as
/// root, so they run as it). Not root: `None`, and nothing changes. `missing` is the error when
/// there is no such user.
pub(super) fn postgres_user_owning(
    dir: &Path,
    missing: impl FnOnce() -> String,
) -> super::Result<Option<(Uid, Gid)>> {
    if !geteuid().is_root() {
        return Ok(None);
    }
    let user = User::from_name("postgres")
        .ok()
        .flatten()
        .ok_or_else(|| super::ServiceError::Failed(missing()))?;
    chown(dir, Some(user.uid), Some(user.gid)).map_err(|errno| {
        super::ServiceError::io(format!("give {} to the postgres user", dir.display()))(
            errno.into(),
        )
    })?;
    Ok(Some((user.uid, user.gid)))
}

pub fn spawn_tied(mut command: Command) -> io::Result<Child> {
    let starter = std::process::id();
    // SAFETY: the closure runs between fork and exec; it only makes two syscalls and does not
    // allocate (Errno converts to io::Error without allocating).
    unsafe {
        command.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
            // If the starter died between fork and prctl nobody would signal us: give up now.
            if getppid().as_raw() as u32 != starter {
                return Err(Errno::ESRCH.into());
            }
            Ok(())
        });
    }
    let gone = || io::Error::other("the services spawner thread is gone");
    let spawner = SPAWNER.get_or_init(start_spawner);
    let (reply, answer) = mpsc::sync_channel(1);
    spawner
        .send(SpawnRequest { command, reply })
        .map_err(|_| gone())?;
    answer.recv().map_err(|_| gone())?
}

fn start_spawner() -> mpsc::Sender<SpawnRequest> {
    let (requests, incoming) = mpsc::channel::<SpawnRequest>();
    std::thread::Builder::new()
        .name("gameday-spawner".into())
        .spawn(move || {
            // The sender lives in a static, so this loop (and the thread) never ends.
            for mut request in incoming {
                // The requester may have given up waiting; the child is then dropped unreaped,
                // which is what a failed spawn call would leave too.
                let _ = request.reply.send(request.command.spawn());
            }
        })
        .expect("start the services spawner thread");
    requests
}

/// Waits (up to `within`) until every thread of `pid` is stopped (state `T`); whether they are.
pub(crate) fn wait_stopped(pid: u32, within: Duration) -> bool {
    let deadline = std::time::Instant::now() + within;
    loop {
        let stopped = fs::read_dir(format!("/proc/{pid}/task")).is_ok_and(|tasks| {
            tasks.flatten().all(|task| {
                fs::read_to_string(task.path().join("stat")).is_ok_and(|stat| {
                    stat.rsplit_once(')').is_some_and(|(_, rest)| {
                        matches!(rest.trim_start().chars().next(), Some('T' | 't'))
                    })
                })
            })
        });
        if stopped || std::time::Instant::now() >= deadline {
            return stopped;
        }
        std::thread::sleep(POLL);
    }
}

/// Sends `signal` to `pid`; a process that is already gone is not an error.
pub(crate) fn signal(pid: u32, signal: Signal) -> io::Result<()> {
    match kill(Pid::from_raw(pid as i32), signal) {
        Ok(()) | Err(Errno::ESRCH) => Ok(()),
        Err(errno) => Err(errno.into()),
    }
}

/// Waits up to `within` for `child` to exit; `None` if it is still running at the deadline.
pub(crate) async fn wait_for_exit(
    child: &mut Child,
    within: Duration,
) -> io::Result<Option<ExitStatus>> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Blocking variant of [`wait_for_exit`] for `Drop`, where we cannot await.
pub(crate) fn wait_for_exit_blocking(
    child: &mut Child,
    within: Duration,
) -> io::Result<Option<ExitStatus>> {
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if std::time::Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(POLL);
    }
}

/// Waits up to `within` until none of `pids` is alive; returns the ones still alive.
pub(crate) async fn wait_until_gone(pids: &[u32], within: Duration) -> Vec<u32> {
    let deadline = Instant::now() + within;
    loop {
        let alive: Vec<u32> = pids.iter().copied().filter(|&pid| is_alive(pid)).collect();
        if alive.is_empty() || Instant::now() >= deadline {
            return alive;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The state letter and parent pid from `/proc/<pid>/stat`.
fn proc_stat(pid: u32) -> Option<(char, u32)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may itself contain spaces or parentheses.
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
    let state = fields.next()?.chars().next()?;
    let parent = fields.next()?.parse().ok()?;
    Some((state, parent))
}

/// Whether `pid` exists and is not a zombie waiting to be reaped.
pub(crate) fn is_alive(pid: u32) -> bool {
    matches!(proc_stat(pid), Some((state, _)) if state != 'Z' && state != 'X')
}

/// The pids of the processes whose parent is `parent`.
pub(crate) fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| matches!(proc_stat(pid), Some((_, p)) if p == parent))
        .collect()
}

/// The last `lines` lines of the log at `path` written after byte `from`, for error messages.
pub(crate) fn log_tail(path: &Path, from: u64, lines: usize) -> String {
    const MAX_BYTES: u64 = 64 * 1024;
    let read = || -> io::Result<String> {
        let mut file = fs::File::open(path)?;
        let len = file.metadata()?.len();
        let start = from.max(len.saturating_sub(MAX_BYTES));
        file.seek(SeekFrom::Start(start))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    match read() {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            let tail = &all[all.len().saturating_sub(lines)..];
            if tail.is_empty() {
                "  (empty)".to_string()
            } else {
                tail.iter().map(|l| format!("  {l}\n")).collect()
            }
        }
        Err(err) => format!("  (could not read the log: {err})"),
    }
}
