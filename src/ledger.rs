//! The fault ledger: `<artifacts>/ledger.json`, the list of faults that may be applied right now.
//! An entry is written and synced to disk *before* its fault is applied and removed after the
//! revert, so a console killed in between leaves a record the next start (or `gameday recover`)
//! reverts. Several consoles may share the file: every change is a locked read-modify-write.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::faults::FaultSpec;

pub const FILE_NAME: &str = "ledger.json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LedgerEntry {
    pub id: String,
    pub name: String,
    pub spec: FaultSpec,
    /// The console that applied it; its death means nobody will revert it but us.
    pub console_pid: u32,
    pub session: String,
    pub recorded_at: DateTime<Utc>,
    pub lease_until: DateTime<Utc>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct LedgerFile {
    entries: Vec<LedgerEntry>,
}

#[derive(Debug, Clone)]
pub struct Ledger {
    path: PathBuf,
    lock_path: PathBuf,
}

impl Ledger {
    pub fn new(artifacts: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(artifacts)?;
        Ok(Ledger {
            path: artifacts.join(FILE_NAME),
            lock_path: artifacts.join("ledger.lock"),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn entries(&self) -> io::Result<Vec<LedgerEntry>> {
        let _lock = self.lock()?;
        Ok(self.read()?.entries)
    }

    /// Records a fault about to be applied. Returns only once the entry is on disk.
    pub fn add(&self, entry: LedgerEntry) -> io::Result<()> {
        self.update(|file| {
            file.entries.retain(|e| e.id != entry.id);
            file.entries.push(entry);
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
            .filter(|e| !console_alive(e.console_pid))
            .collect())
    }

    fn lock(&self) -> io::Result<Flock<File>> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.lock_path)?;
        Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| io::Error::from(errno))
    }

    fn read(&self) -> io::Result<LedgerFile> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) if text.trim().is_empty() => Ok(LedgerFile::default()),
            Ok(text) => serde_json::from_str(&text).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: not a ledger: {e}", self.path.display()),
                )
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(LedgerFile::default()),
            Err(e) => Err(e),
        }
    }

    fn update(&self, change: impl FnOnce(&mut LedgerFile)) -> io::Result<()> {
        let _lock = self.lock()?;
        let mut file = self.read()?;
        change(&mut file);
        let text = serde_json::to_string_pretty(&file).map_err(io::Error::other)?;
        // Write aside, sync, rename over, sync the directory: the old or the new ledger survives
        // a crash at any point, never a torn one.
        let tmp = self.path.with_extension("json.tmp");
        let mut out = File::create(&tmp)?;
        out.write_all(text.as_bytes())?;
        out.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

/// Whether `pid` is a running gameday process (a reused pid running something else is not).
pub fn console_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    match std::fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(cmdline) => {
            let is_zombie =
                std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                    stat.rsplit_once(')')
                        .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
                });
            !is_zombie && String::from_utf8_lossy(&cmdline).contains("gameday")
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::{Fault as ProxyFault, TcpFault};

    fn entry(id: &str, pid: u32) -> LedgerEntry {
        LedgerEntry {
            id: id.into(),
            name: "cut-nats".into(),
            spec: FaultSpec::Proxy {
                listener: "nats".into(),
                fault: ProxyFault::Tcp(TcpFault::Down),
            },
            console_pid: pid,
            session: "s".into(),
            recorded_at: Utc::now(),
            lease_until: Utc::now(),
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
        l.add(entry("a", std::process::id())).unwrap();
        l.add(entry("b", std::process::id())).unwrap();
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
    fn orphans_are_entries_of_dead_consoles() {
        let l = ledger("orphans");
        l.add(entry("mine", std::process::id())).unwrap();
        // pid 1 is init, not a gameday console; a huge pid does not exist.
        l.add(entry("dead", 4_000_000)).unwrap();
        l.add(entry("init", 1)).unwrap();
        let ids: Vec<String> = l.orphans().unwrap().into_iter().map(|e| e.id).collect();
        assert_eq!(ids, vec!["dead".to_string(), "init".to_string()]);
    }

    #[test]
    fn a_corrupt_ledger_is_an_error_not_an_empty_list() {
        let l = ledger("corrupt");
        std::fs::write(l.path(), "{not json").unwrap();
        let err = l.entries().unwrap_err();
        assert!(err.to_string().contains("not a ledger"), "{err}");
    }
}
