//! Exactly what an inject acted on, recorded in the ledger once the fault is applied, so that
//! any revert (the console's, its dead-man agent's, `gameday recover`'s) restores those things
//! and nothing else: not every stopped process of that name, not every exited container with
//! that label, not another console's sessions of the same application.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "what", rename_all = "snake_case")]
pub enum Touched {
    /// Signalled processes, each with its start time (clock ticks since boot) so a reused pid
    /// is never mistaken for the one we stopped.
    Processes { pids: Vec<ProcessStamp> },
    /// Container ids acted on, and for a disconnect the network aliases each had, so the
    /// reconnect restores them.
    Containers {
        ids: Vec<String>,
        #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
        aliases: std::collections::BTreeMap<String, Vec<String>>,
    },
    /// PostgreSQL backends held open on `server`.
    Backends { server: String, pids: Vec<i32> },
    /// A PgBouncer setting as it was before the inject changed it (`SHOW CONFIG`).
    BouncerSetting { key: String, value: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessStamp {
    pub pid: u32,
    pub start_ticks: u64,
}

impl ProcessStamp {
    /// The running process `pid` as it is now, if there is one.
    pub fn of(pid: u32) -> Option<ProcessStamp> {
        start_ticks(pid).map(|start_ticks| ProcessStamp { pid, start_ticks })
    }

    /// Whether `pid` is still the very process that was stamped.
    pub fn is_same(&self) -> bool {
        start_ticks(self.pid) == Some(self.start_ticks)
    }
}

/// Field 22 of `/proc/<pid>/stat`: when the process started.
fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_knows_its_own_process_and_no_other() {
        let me = ProcessStamp::of(std::process::id()).expect("this process has a stat");
        assert!(me.is_same());
        let reused = ProcessStamp {
            pid: me.pid,
            start_ticks: me.start_ticks + 1,
        };
        assert!(!reused.is_same(), "same pid, other start: another process");
        assert!(ProcessStamp::of(4_000_000).is_none());
    }
}
