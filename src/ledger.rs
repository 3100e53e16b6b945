//! The fault ledger: `<artifacts>/ledger.json`, the list of faults that may be applied right now.
//! An entry is written and synced to disk *before* its fault is applied and removed after the
//! revert, so a console killed in between leaves a record that its dead-man agent, the next
//! start or `gameday recover` reverts. Several consoles share the file: every change is a locked
//! read-modify-write, and every entry names the console that owns it.
//!
//! A console is alive exactly while it holds the flock on `<artifacts>/consoles/<id>.lock`; the
//! kernel drops the lock when the process dies, however it dies, so no pid is ever guessed at.
//! The directory must belong to the user and not be writable by others, and no file in it is
//! opened through a symbolic link: a ledger someone else can write could make a revert act on
//! anything.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::faults::FaultSpec;
use crate::faults::touched::Touched;

pub const FILE_NAME: &str = "ledger.json";
const CONSOLES_DIR: &str = "consoles";

/// The console a fault belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    /// Unique across processes and machines sharing the artifacts dir: `<session>-<6 hex>`.
    pub id: String,
    pub pid: u32,
    pub user: String,
    pub host: String,
    pub session: String,
}

impl Owner {
    /// A new identity for a console (or headless run) of `session` in this process.
    pub fn new(session: &str) -> Owner {
        let suffix = &uuid::Uuid::new_v4().simple().to_string()[..6];
        Owner {
            id: format!("{session}-{suffix}"),
            pid: std::process::id(),
            user: nix::unistd::User::from_uid(nix::unistd::geteuid())
                .ok()
                .flatten()
                .map_or_else(|| nix::unistd::geteuid().to_string(), |u| u.name),
            host: nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_else(|| "localhost".into()),
            session: session.to_string(),
        }
    }

    /// The short form the screen shows: `alice@box (session 2026-12-01T10-00-00)`.
    pub fn label(&self) -> String {
        format!("{}@{} ({})", self.user, self.host, self.session)
    }

    /// The random part of the id, which keeps fault ids unique across consoles.
    pub fn tag(&self) -> &str {
        self.id.rsplit('-').next().unwrap_or(&self.id)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LedgerEntry {
    pub id: String,
    pub name: String,
    pub spec: FaultSpec,
    pub owner: Owner,
    pub recorded_at: DateTime<Utc>,
    pub lease_until: DateTime<Utc>,
    /// Exactly what the inject acted on (pids, container ids, backends), once it has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub touched: Option<Touched>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct LedgerFile {
    entries: Vec<LedgerEntry>,
}

#[derive(Debug, Clone)]
pub struct Ledger {
    dir: PathBuf,
    path: PathBuf,
    lock_path: PathBuf,
}

/// Held by a living console; dropping it (or the process dying) marks the console gone.
#[derive(Debug)]
pub struct ConsoleLock {
    _lock: Flock<File>,
    path: PathBuf,
}

impl Drop for ConsoleLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn nofollow() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.custom_flags(nix::libc::O_NOFOLLOW).mode(0o600);
    options
}

/// Refuses a directory another user owns or can write.
fn check_private(dir: &Path) -> io::Result<()> {
    let meta = std::fs::symlink_metadata(dir)?;
    if !meta.is_dir() {
        return Err(io::Error::other(format!(
            "{} is not a directory",
            dir.display()
        )));
    }
    if meta.uid() != nix::unistd::geteuid().as_raw() {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} belongs to another user; the fault ledger must be yours alone",
                dir.display()
            ),
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} is writable by group or others (mode {:o}); the fault ledger must be yours alone: chmod go-w {}",
                dir.display(),
                meta.mode() & 0o7777,
                dir.display()
            ),
        ));
    }
    Ok(())
}

fn create_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
    {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    check_private(dir)
}

impl Ledger {
    pub fn new(artifacts: &Path) -> io::Result<Self> {
        create_private_dir(artifacts)?;
        Ok(Ledger {
            dir: artifacts.to_path_buf(),
            path: artifacts.join(FILE_NAME),
            lock_path: artifacts.join("ledger.lock"),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn console_lock_path(&self, owner_id: &str) -> PathBuf {
        self.dir.join(CONSOLES_DIR).join(format!("{owner_id}.lock"))
    }

    /// Marks `owner` alive for as long as the returned lock lives.
    pub fn hold(&self, owner: &Owner) -> io::Result<ConsoleLock> {
        create_private_dir(&self.dir.join(CONSOLES_DIR))?;
        let path = self.console_lock_path(&owner.id);
        let file = nofollow()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        let lock = Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| {
            io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{}: {errno}", path.display()),
            )
        })?;
        Ok(ConsoleLock { _lock: lock, path })
    }

    /// Whether the console `owner_id` is running (holds its lock).
    pub fn is_alive(&self, owner_id: &str) -> bool {
        let path = self.console_lock_path(owner_id);
        let Ok(file) = nofollow().write(true).open(&path) else {
            return false;
        };
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(_free) => false,
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => true,
            Err(_) => false,
        }
    }

    pub fn entries(&self) -> io::Result<Vec<LedgerEntry>> {
        let _lock = self.lock()?;
        Ok(self.read()?.entries)
    }

    /// Records a fault about to be applied. Returns only once the entry is on disk. An id that
    /// another entry already has is an error: ids are unique across consoles.
    pub fn add(&self, entry: LedgerEntry) -> io::Result<()> {
        let mut taken = false;
        self.update(|file| {
            taken = file.entries.iter().any(|e| e.id == entry.id);
            if !taken {
                file.entries.push(entry.clone());
            }
        })?;
        if taken {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("fault id {} is already in the ledger", entry.id),
            ));
        }
        Ok(())
    }

    /// Records what an applied fault acted on, so any later revert undoes exactly that.
    pub fn set_touched(&self, id: &str, touched: Touched) -> io::Result<()> {
        self.update(|file| {
            if let Some(e) = file.entries.iter_mut().find(|e| e.id == id) {
                e.touched = Some(touched);
            }
        })
    }

    /// Forgets a reverted fault (no error if it was not there).
    pub fn remove(&self, id: &str) -> io::Result<()> {
        self.update(|file| file.entries.retain(|e| e.id != id))
    }

    /// Entries left by consoles that are no longer running.
    pub fn orphans(&self) -> io::Result<Vec<LedgerEntry>> {
        Ok(self
            .entries()?
            .into_iter()
            .filter(|e| !self.is_alive(&e.owner.id))
            .collect())
    }

    fn lock(&self) -> io::Result<Flock<File>> {
        let file = nofollow()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.lock_path)
            .map_err(|e| with_path(&self.lock_path, e))?;
        Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| io::Error::from(errno))
    }

    fn read(&self) -> io::Result<LedgerFile> {
        let text = match nofollow().read(true).open(&self.path) {
            Ok(mut f) => {
                let mut text = String::new();
                io::Read::read_to_string(&mut f, &mut text)
                    .map_err(|e| with_path(&self.path, e))?;
                text
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(LedgerFile::default()),
            Err(e) => return Err(with_path(&self.path, e)),
        };
        if text.trim().is_empty() {
            return Ok(LedgerFile::default());
        }
        serde_json::from_str(&text).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: not a ledger: {e}", self.path.display()),
            )
        })
    }

    fn update(&self, change: impl FnOnce(&mut LedgerFile)) -> io::Result<()> {
        let _lock = self.lock()?;
        let mut file = self.read()?;
        change(&mut file);
        let text = serde_json::to_string_pretty(&file).map_err(io::Error::other)?;
        // Write aside, sync, rename over, sync the directory: the old or the new ledger survives
        // a crash at any point, never a torn one.
        let tmp = self.path.with_extension("json.tmp");
        let _ = std::fs::remove_file(&tmp);
        let mut out = nofollow()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| with_path(&tmp, e))?;
        out.write_all(text.as_bytes())?;
        out.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        File::open(&self.dir)?.sync_all()?;
        Ok(())
    }
}

fn with_path(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::{Fault as ProxyFault, TcpFault};

    fn entry(id: &str, owner: &Owner) -> LedgerEntry {
        LedgerEntry {
            id: id.into(),
            name: "cut-nats".into(),
            spec: FaultSpec::Proxy {
                listener: "nats".into(),
                fault: ProxyFault::Tcp(TcpFault::Down),
            },
            owner: owner.clone(),
            recorded_at: Utc::now(),
            lease_until: Utc::now(),
            touched: None,
        }
    }

    fn ledger(name: &str) -> Ledger {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(".artifacts/test")
            .join(format!("ledger-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Ledger::new(&dir).unwrap()
    }

    #[test]
    fn entries_survive_on_disk_until_removed() {
        let l = ledger("roundtrip");
        let me = Owner::new("s");
        l.add(entry("a", &me)).unwrap();
        l.add(entry("b", &me)).unwrap();
        // A second handle (another process) sees both.
        let other = Ledger::new(l.path().parent().unwrap()).unwrap();
        assert_eq!(
            other
                .entries()
                .unwrap()
                .iter()
                .map(|e| e.id.as_str())
                .collect::<Vec<_>>(),
            vec!["a", "b"]
        );
        l.remove("a").unwrap();
        l.remove("a").unwrap();
        assert_eq!(other.entries().unwrap().len(), 1);
    }

    #[test]
    fn an_id_is_never_shared_by_two_entries() {
        let l = ledger("unique");
        l.add(entry("a", &Owner::new("one"))).unwrap();
        let err = l.add(entry("a", &Owner::new("two"))).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(l.entries().unwrap().len(), 1);
    }

    #[test]
    fn orphans_are_entries_of_consoles_that_hold_no_lock() {
        let l = ledger("orphans");
        let alive = Owner::new("alive");
        let gone = Owner::new("gone");
        let _held = l.hold(&alive).unwrap();
        let released = l.hold(&gone).unwrap();
        l.add(entry("mine", &alive)).unwrap();
        l.add(entry("theirs", &gone)).unwrap();
        // Same pid as ours, never locked: a pid says nothing, the lock does.
        l.add(entry("never", &Owner::new("never"))).unwrap();
        assert!(l.is_alive(&alive.id));
        assert!(l.is_alive(&gone.id));
        drop(released);
        assert!(!l.is_alive(&gone.id));
        let ids: Vec<String> = l.orphans().unwrap().into_iter().map(|e| e.id).collect();
        assert_eq!(ids, vec!["theirs".to_string(), "never".to_string()]);
        assert!(l.hold(&alive).is_err(), "one holder per console id");
    }

    #[test]
    fn a_corrupt_ledger_is_an_error_naming_the_file_not_an_empty_list() {
        let l = ledger("corrupt");
        std::fs::write(l.path(), "{not json").unwrap();
        let err = l.entries().unwrap_err();
        assert!(err.to_string().contains("not a ledger"), "{err}");
        assert!(err.to_string().contains("ledger.json"), "{err}");
        assert!(l.orphans().is_err());
        assert!(l.remove("x").is_err(), "a change never overwrites it");
        assert_eq!(std::fs::read_to_string(l.path()).unwrap(), "{not json");
    }

    #[test]
    fn a_ledger_others_can_write_or_reach_through_a_link_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let l = ledger("private");
        let dir = l.path().parent().unwrap().to_path_buf();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = Ledger::new(&dir).unwrap_err();
        assert!(
            err.to_string().contains("writable by group or others"),
            "{err}"
        );
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();

        let elsewhere = dir.join("elsewhere.json");
        std::fs::write(&elsewhere, r#"{"entries":[]}"#).unwrap();
        std::os::unix::fs::symlink(&elsewhere, l.path()).unwrap();
        assert!(l.entries().is_err(), "a symlinked ledger is not followed");
        assert!(l.add(entry("a", &Owner::new("s"))).is_err());
        assert_eq!(
            std::fs::read_to_string(&elsewhere).unwrap(),
            r#"{"entries":[]}"#
        );
    }
}
