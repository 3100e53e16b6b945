//! The session timeline: append-only JSONL, one event per line, written through on every event
//! so a crash loses nothing. The report is rebuilt from it.
//!
//! Every line carries the wall clock (`ts`) and the monotonic offset from the session start
//! (`offset_ms`). Text passes through the config's [`Redactor`] before it reaches the disk.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use std::collections::BTreeMap;

use crate::metrics::{Level, Threshold};
use crate::redact::Redactor;

pub const FILE_NAME: &str = "timeline.jsonl";

/// The event schema this build writes, in the first line (`session_start.schema`).
/// 1: no `setup` line, samples once per tick, no leases on fault lines. 2: everything a panel
/// shows is in the file (`setup`, `foreign`, fault leases, scenario checks and deadlines).
/// Readers accept both.
pub const SCHEMA: u32 = 2;

fn schema_v1() -> u32 {
    1
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineEvent {
    pub ts: DateTime<Utc>,
    pub offset_ms: u64,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// Who or what caused something, for the report ("reverted by key X", "by timer").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// The operator pressed this key.
    Key(String),
    /// The fault's lease ran out.
    Timer,
    /// The panic key (`X`).
    PanicKey,
    /// The console quit (q, Ctrl-C, SIGTERM, SIGHUP, panic).
    Quit(String),
    /// Reverted at start-up from the ledger a killed console left behind.
    Recovery,
    /// A scenario step or abort condition.
    Scenario(String),
    /// The console's dead-man agent: the console died (the reason says how) or stopped
    /// answering for longer than its lease.
    DeadMan(String),
    /// Gone from the ledger without this console: its dead-man agent reverted it while the
    /// console was unresponsive, or another console reverted everyone's faults.
    Elsewhere,
    /// The operator reverted every console's faults (a confirmed action).
    Everyone,
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cause::Key(k) => write!(f, "key {k}"),
            Cause::Timer => f.write_str("timer"),
            Cause::PanicKey => f.write_str("panic key X"),
            Cause::Quit(how) => write!(f, "quit ({how})"),
            Cause::Recovery => f.write_str("recovery after crash"),
            Cause::Scenario(s) => write!(f, "scenario: {s}"),
            Cause::DeadMan(why) => write!(f, "dead-man switch ({why})"),
            Cause::Elsewhere => f.write_str("another process"),
            Cause::Everyone => f.write_str("revert everyone's"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventKind {
    SessionStart {
        session: String,
        config: String,
        version: String,
        /// Absent in the first schema.
        #[serde(default = "schema_v1")]
        schema: u32,
        /// Warn/crit bounds by metric key, so a report can be rebuilt from this file alone.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        thresholds: BTreeMap<String, Threshold>,
    },
    SessionEnd {
        reason: String,
    },
    /// What a viewer needs to draw the console from this file alone (after `SessionStart`):
    /// who drives, the config as panels read it (secrets masked), the fault catalog, notices.
    Setup {
        driver: Driver,
        view: Box<crate::config::View>,
        #[serde(default)]
        catalog: Vec<CatalogEntry>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        notices: Vec<String>,
    },
    /// Other consoles' faults changed (from the shared ledger): the whole list now.
    Foreign {
        faults: Vec<ForeignFault>,
    },
    /// Which environment the session's config points at (right after `SessionStart`).
    Environment {
        name: Option<String>,
        #[serde(default)]
        production: bool,
    },
    SourceDown {
        source: String,
        reason: String,
    },
    SourceUp {
        source: String,
    },
    /// A metric crossed into `level` (or returned to `ok`).
    Threshold {
        key: String,
        level: Level,
        value: f64,
    },
    Mark {
        label: String,
    },
    Note {
        text: String,
    },
    /// Metric values observed since the previous `samples` line, as `[key, value]` pairs.
    Samples {
        points: Vec<(String, f64)>,
    },
    /// A fault moved through its life: requested, applied, revert_requested, reverted, failed.
    Fault {
        id: String,
        name: String,
        phase: FaultPhase,
        target: String,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        detail: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cause: Option<Cause>,
        /// Applied faults: how long until the lease reverts it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lease_ms: Option<u64>,
    },
    ReportWritten {
        files: Vec<String>,
    },
    /// A scenario began: what it claims and where it came from.
    ScenarioStart {
        title: String,
        file: String,
        hypothesis: String,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        description: String,
        /// Every check it will evaluate, in order, before any has a verdict.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        checks: Vec<PlannedCheck>,
    },
    /// The scenario's checks as the console shows them now (live, before their verdicts are
    /// recorded), in `scenario_start`'s order; written when anything shown changed.
    ScenarioProgress {
        checks: Vec<CheckProgress>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        waiting: bool,
    },
    /// The scenario moved to another phase.
    ScenarioPhase {
        phase: Phase,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        detail: String,
        /// When the phase is due to end, as known when it began (the header's countdown).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        until_ms: Option<u64>,
    },
    /// A check's outcome (baseline, during, recovery) or an abort condition that tripped.
    Check {
        group: CheckGroup,
        name: String,
        /// What was expected, e.g. "p95 of probe.api.latency_ms < 500".
        expected: String,
        /// The metric key the check reads, so a report can chart it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        metric: Option<String>,
        passed: bool,
        /// The measured value, when there was one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        value: Option<f64>,
        /// Recovery checks: how long after the last revert it held.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        recovered_after_ms: Option<u64>,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        detail: String,
    },
    /// The scenario's outcome.
    Verdict {
        verdict: Verdict,
        reason: String,
    },
    /// Anything else worth keeping (recovered ledger entries, operator prompts…).
    Info {
        text: String,
    },
}

/// Who drives a session: the console (or headless run) that writes the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Driver {
    /// The console's identity (`<session>-<6 hex>`), the owner of its faults.
    pub id: String,
    pub user: String,
    pub host: String,
    pub pid: u32,
}

/// A catalog fault as the Faults panel lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatalogEntry {
    pub key: Option<u8>,
    pub name: String,
    /// Human label of the kind ("latency", "container stop").
    pub kind: String,
    pub target: String,
    /// "200ms ±20ms downstream".
    pub params: String,
    /// What it affects, said plainly for the confirm popup.
    pub blast_radius: String,
    pub lease_ms: u64,
}

/// A fault another console applied, as the shared ledger says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForeignFault {
    pub id: String,
    pub name: String,
    pub target: String,
    pub owner: String,
    pub lease_until: DateTime<Utc>,
    /// Whether its console still runs (holds its lock); if not, its dead-man agent or the next
    /// start reverts it.
    pub owner_alive: bool,
}

/// A check's live state.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CheckProgress {
    pub passed: Option<bool>,
    pub value: Option<f64>,
}

/// A check a scenario will evaluate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedCheck {
    pub group: CheckGroup,
    pub name: String,
    pub expected: String,
}

/// Where a scenario is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Baseline,
    Injecting,
    Observing,
    Recovering,
    Verdict,
}

impl Phase {
    pub fn label(self) -> &'static str {
        match self {
            Phase::Baseline => "baseline",
            Phase::Injecting => "injecting",
            Phase::Observing => "observing",
            Phase::Recovering => "recovering",
            Phase::Verdict => "verdict",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum CheckGroup {
    Baseline,
    During,
    Recovery,
    Abort,
}

impl CheckGroup {
    pub fn label(self) -> &'static str {
        match self {
            CheckGroup::Baseline => "baseline",
            CheckGroup::During => "during",
            CheckGroup::Recovery => "recovery",
            CheckGroup::Abort => "abort",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Fail,
    Aborted,
}

impl Verdict {
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Pass => "Pass",
            Verdict::Fail => "Fail",
            Verdict::Aborted => "Aborted",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultPhase {
    Requested,
    Applied,
    RevertRequested,
    Reverted,
    Failed,
    /// Refused before anything was touched (not allowed, or what it needs is unreachable).
    Refused,
}

impl EventKind {
    /// One line for the timeline panel and the report table; `None` for bulk data.
    pub fn summary(&self) -> Option<String> {
        Some(match self {
            EventKind::SessionStart { session, .. } => format!("session {session} started"),
            EventKind::SessionEnd { reason } => format!("session ended ({reason})"),
            EventKind::Setup { .. }
            | EventKind::Foreign { .. }
            | EventKind::ScenarioProgress { .. } => return None,
            EventKind::Environment { name, production } => format!(
                "environment: {}{}",
                name.as_deref().unwrap_or("unnamed"),
                if *production { " (PRODUCTION)" } else { "" }
            ),
            EventKind::SourceDown { source, reason } => format!("{source} DOWN: {reason}"),
            EventKind::SourceUp { source } => format!("{source} up"),
            EventKind::Threshold { key, level, value } => match level {
                Level::Ok => format!("{key} back to ok ({})", fmt_value(*value)),
                Level::Warn => format!("{key} WARN ({})", fmt_value(*value)),
                Level::Crit => format!("{key} CRIT ({})", fmt_value(*value)),
            },
            EventKind::Mark { label } => format!("mark: {label}"),
            EventKind::Note { text } => format!("note: {text}"),
            EventKind::Samples { .. } => return None,
            EventKind::Fault {
                name,
                phase,
                target,
                detail,
                cause,
                ..
            } => {
                let phase = match phase {
                    FaultPhase::Requested => "requested",
                    FaultPhase::Applied => "applied",
                    FaultPhase::RevertRequested => "revert requested",
                    FaultPhase::Reverted => "reverted",
                    FaultPhase::Failed => "FAILED",
                    FaultPhase::Refused => "REFUSED",
                };
                let mut s = format!("fault {name} on {target} {phase}");
                if let Some(c) = cause {
                    s.push_str(&format!(" ({c})"));
                }
                if !detail.is_empty() {
                    s.push_str(&format!(": {detail}"));
                }
                s
            }
            EventKind::ReportWritten { files } => format!("report written: {}", files.join(", ")),
            EventKind::ScenarioStart { title, .. } => format!("scenario \"{title}\" started"),
            EventKind::ScenarioPhase { phase, detail, .. } => {
                if detail.is_empty() {
                    format!("scenario phase: {}", phase.label())
                } else {
                    format!("scenario phase: {} ({detail})", phase.label())
                }
            }
            EventKind::Check {
                group,
                name,
                expected,
                passed,
                value,
                recovered_after_ms,
                ..
            } => {
                let mark = if *passed { "PASS" } else { "FAIL" };
                let measured = value
                    .map(|v| format!(", measured {}", fmt_value(v)))
                    .unwrap_or_default();
                let recovered = recovered_after_ms
                    .map(|ms| format!(", recovered after {:.1}s", ms as f64 / 1000.0))
                    .unwrap_or_default();
                let what = if *group == CheckGroup::Abort {
                    "ABORT"
                } else {
                    mark
                };
                format!(
                    "{} check {what}: {name} ({expected}{measured}{recovered})",
                    group.label()
                )
            }
            EventKind::Verdict { verdict, reason } => {
                format!("verdict: {} ({reason})", verdict.label())
            }
            EventKind::Info { text } => text.clone(),
        })
    }
}

/// Numbers for humans: integers without decimals, others with up to two.
pub fn fmt_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// Where offsets come from: the monotonic clock, or a hand-driven one for tests.
#[derive(Debug, Clone)]
pub enum Clock {
    Monotonic(Instant),
    Manual(std::sync::Arc<std::sync::atomic::AtomicU64>),
}

impl Clock {
    pub fn offset_ms(&self) -> u64 {
        match self {
            Clock::Monotonic(start) => start.elapsed().as_millis() as u64,
            Clock::Manual(ms) => ms.load(std::sync::atomic::Ordering::SeqCst),
        }
    }
}

/// The writer. One per session.
pub struct Timeline {
    file: File,
    path: PathBuf,
    clock: Clock,
    started_wall: DateTime<Utc>,
    redactor: Redactor,
}

impl Timeline {
    /// Opens (appending) `dir/timeline.jsonl`.
    pub fn create(dir: &Path, redactor: Redactor) -> io::Result<Self> {
        Self::with_clock(dir, redactor, Clock::Monotonic(Instant::now()), Utc::now())
    }

    pub fn with_clock(
        dir: &Path,
        redactor: Redactor,
        clock: Clock,
        started_wall: DateTime<Utc>,
    ) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(FILE_NAME);
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        Ok(Timeline {
            file,
            path,
            clock,
            started_wall,
            redactor,
        })
    }

    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn started_wall(&self) -> DateTime<Utc> {
        self.started_wall
    }

    /// Milliseconds since the session started (monotonic).
    pub fn offset_ms(&self) -> u64 {
        self.clock.offset_ms()
    }

    /// Appends one event at the current offset and returns it as written.
    pub fn append(&mut self, kind: EventKind) -> io::Result<TimelineEvent> {
        let offset_ms = self.offset_ms();
        let ts = self.started_wall + chrono::Duration::milliseconds(offset_ms as i64);
        self.write(TimelineEvent {
            ts,
            offset_ms,
            kind,
        })
    }

    /// Appends an event with its own time (replays, tests).
    pub fn write(&mut self, event: TimelineEvent) -> io::Result<TimelineEvent> {
        let line = serde_json::to_string(&event).map_err(io::Error::other)?;
        let line = self.redactor.text(&line);
        // One write per line: a reader (or a crash) never sees half an event.
        let mut buf = Vec::with_capacity(line.len() + 1);
        buf.extend_from_slice(line.as_bytes());
        buf.push(b'\n');
        self.file.write_all(&buf)?;
        match line {
            std::borrow::Cow::Borrowed(_) => Ok(event),
            std::borrow::Cow::Owned(masked) => {
                serde_json::from_str(&masked).map_err(io::Error::other)
            }
        }
    }
}

/// A problem reading a saved timeline.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{path}: cannot read: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}:{line}: not a timeline event: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

/// Reads a saved timeline. A torn last line (the console was killed mid-write) is skipped.
pub fn read(path: &Path) -> Result<Vec<TimelineEvent>, ReadError> {
    let file = File::open(path).map_err(|source| ReadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let lines: Vec<String> = BufReader::new(file)
        .lines()
        .collect::<Result<_, _>>()
        .map_err(|source| ReadError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    let mut out = Vec::with_capacity(lines.len());
    let last = lines.len();
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(line) {
            Ok(ev) => out.push(ev),
            Err(_) if i + 1 == last => {} // torn tail
            Err(e) => {
                return Err(ReadError::Parse {
                    path: path.to_path_buf(),
                    line: i + 1,
                    message: e.to_string(),
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(".artifacts/test")
            .join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn every_event_is_on_disk_as_soon_as_it_is_appended() {
        let d = dir("timeline-write");
        let mut t = Timeline::create(&d, Redactor::default()).unwrap();
        t.append(EventKind::Mark {
            label: "one".into(),
        })
        .unwrap();
        // Read back while the writer is still open: nothing is buffered.
        let events = read(t.path()).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(
            events[0].kind,
            EventKind::Mark {
                label: "one".into()
            }
        );
        t.append(EventKind::Samples {
            points: vec![("nats.up".into(), 1.0)],
        })
        .unwrap();
        assert_eq!(read(t.path()).unwrap().len(), 2);
    }

    #[test]
    fn secrets_never_reach_the_file() {
        let d = dir("timeline-redact");
        let mut t = Timeline::create(&d, Redactor::new(["hunter22".to_string()])).unwrap();
        let written = t
            .append(EventKind::SourceDown {
                source: "pg".into(),
                reason: "auth failed for hunter22".into(),
            })
            .unwrap();
        let text = std::fs::read_to_string(t.path()).unwrap();
        assert!(!text.contains("hunter22"));
        assert!(
            matches!(written.kind, EventKind::SourceDown { ref reason, .. } if reason == "auth failed for ***")
        );
    }

    #[test]
    fn a_torn_last_line_is_skipped_but_a_bad_middle_line_is_an_error() {
        let d = dir("timeline-torn");
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join(FILE_NAME);
        let good = r#"{"ts":"2026-11-28T10:00:00Z","offset_ms":0,"kind":"mark","label":"a"}"#;
        std::fs::write(&p, format!("{good}\n{{\"ts\":\"2026")).unwrap();
        assert_eq!(read(&p).unwrap().len(), 1);
        std::fs::write(&p, format!("garbage\n{good}\n")).unwrap();
        assert!(matches!(read(&p), Err(ReadError::Parse { line: 1, .. })));
    }

    #[test]
    fn values_read_like_a_human_wrote_them() {
        assert_eq!(fmt_value(3.0), "3");
        assert_eq!(fmt_value(0.256), "0.26");
        assert_eq!(fmt_value(1234.5), "1234");
    }
}
