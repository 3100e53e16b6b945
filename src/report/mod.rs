//! The session report, rebuilt from the timeline alone (so a crash loses nothing): a summary in
//! the shape of a chaos-experiment write-up — hypothesis, baseline, injection, results, recovery,
//! improvements — followed by metric summaries, outages, marks and notes and the full timeline.

mod html;
mod json;
mod junit;
mod markdown;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::metrics::{Level, MetricStore, Stats, Threshold};
use crate::timeline::{
    self, Cause, CheckGroup, EventKind, FaultPhase, Phase, TimelineEvent, Verdict,
};

pub use html::to_html;
pub use json::to_json;
pub use junit::to_junit;
pub use markdown::to_markdown;

/// Series capacity while rebuilding: a report keeps everything the timeline holds.
const REPLAY_CAPACITY: usize = 10_000_000;

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub session: SessionSummary,
    /// The scenario this session ran, if any; `None` for free play.
    pub experiment: Option<Experiment>,
    /// Checks, faults and outages boiled down to ✅ / ❌ / ⚠️ lines.
    pub results: Vec<ResultLine>,
    pub faults: Vec<FaultSummary>,
    pub outages: Vec<Outage>,
    pub crossings: Vec<Crossing>,
    pub metrics: Vec<MetricSummary>,
    pub annotations: Vec<Annotation>,
    pub improvements: Vec<String>,
    pub timeline: Vec<TimelineRow>,
}

/// A scenario run: its claim, its checks and its verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Experiment {
    pub title: String,
    pub file: String,
    pub hypothesis: String,
    pub description: String,
    /// `None` when the session ended before a verdict (the console was killed).
    pub verdict: Option<Verdict>,
    pub reason: String,
    pub phases: Vec<PhaseMark>,
    pub checks: Vec<CheckOutcome>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PhaseMark {
    pub phase: Phase,
    pub at_ms: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckOutcome {
    pub group: CheckGroup,
    pub name: String,
    pub expected: String,
    /// The metric key the check reads, when the scenario named one.
    pub metric: Option<String>,
    pub passed: bool,
    pub value: Option<f64>,
    pub recovered_after_ms: Option<u64>,
    pub detail: String,
}

impl CheckOutcome {
    /// "measured 12" / "no data".
    pub fn measured(&self) -> String {
        self.value.map_or_else(
            || "no data".to_string(),
            |v| format!("measured {}", timeline::fmt_value(v)),
        )
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SessionSummary {
    pub name: String,
    pub config: String,
    /// The environment the config pointed at ("staging (PRODUCTION)"), when it said.
    pub environment: Option<String>,
    pub version: String,
    pub started: DateTime<Utc>,
    pub ended: DateTime<Utc>,
    pub duration_ms: u64,
    /// How it ended ("key q", "signal SIGTERM"); `None` when the console was killed.
    pub end_reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Pass,
    Fail,
    Warn,
}

impl Outcome {
    pub fn symbol(self) -> &'static str {
        match self {
            Outcome::Pass => "✅",
            Outcome::Fail => "❌",
            Outcome::Warn => "⚠️",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ResultLine {
    pub outcome: Outcome,
    pub text: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct FaultSummary {
    pub id: String,
    pub name: String,
    pub target: String,
    pub detail: String,
    pub requested_ms: u64,
    pub applied_ms: Option<u64>,
    pub ended_ms: Option<u64>,
    pub duration_ms: Option<u64>,
    /// `reverted`, `failed` or `active at end`.
    pub outcome: String,
    pub ended_by: Option<String>,
    pub error: Option<String>,
    /// Key metrics before, during and after the fault (windows as long as the fault).
    pub metrics: Vec<FaultMetric>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FaultMetric {
    pub key: String,
    pub before: Option<Stats>,
    pub during: Option<Stats>,
    pub after: Option<Stats>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Outage {
    pub source: String,
    pub reason: String,
    pub from_ms: u64,
    pub to_ms: Option<u64>,
    pub duration_ms: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Crossing {
    pub key: String,
    pub level: Level,
    pub peak: f64,
    pub from_ms: u64,
    pub to_ms: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MetricSummary {
    pub key: String,
    #[serde(flatten)]
    pub stats: Stats,
    pub threshold: Option<Threshold>,
    pub time_above_warn_ms: u64,
    pub time_above_crit_ms: u64,
}

impl MetricSummary {
    /// The table cells after the key, as every renderer shows them: min, p50, p95, max, last,
    /// time at or above warn, time at or above crit ("–" without a threshold).
    pub fn cells(&self) -> [String; 7] {
        let above = |ms: u64| {
            if self.threshold.is_some() {
                fmt_ms(ms)
            } else {
                "–".into()
            }
        };
        let st = &self.stats;
        [
            timeline::fmt_value(st.min),
            timeline::fmt_value(st.p50),
            timeline::fmt_value(st.p95),
            timeline::fmt_value(st.max),
            timeline::fmt_value(st.last),
            above(self.time_above_warn_ms),
            above(self.time_above_crit_ms),
        ]
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Annotation {
    pub at: DateTime<Utc>,
    pub offset_ms: u64,
    /// `mark` or `note`.
    pub kind: &'static str,
    pub text: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct TimelineRow {
    pub at: DateTime<Utc>,
    pub offset_ms: u64,
    pub text: String,
}

/// Notes starting with one of these become improvement items.
const IMPROVEMENT_PREFIXES: [&str; 3] = ["improve:", "todo:", "fix:"];

impl Report {
    pub fn build(events: &[TimelineEvent]) -> Report {
        Builder::default().build(events)
    }

    pub fn end_ms(&self) -> u64 {
        self.session.duration_ms
    }
}

#[derive(Default)]
struct Builder {
    thresholds: BTreeMap<String, Threshold>,
}

impl Builder {
    fn build(mut self, events: &[TimelineEvent]) -> Report {
        let session = session_summary(events);
        let end_ms = session.duration_ms;
        if let Some(EventKind::SessionStart { thresholds, .. }) = events.first().map(|e| &e.kind) {
            self.thresholds = thresholds.clone();
        }
        let store = replay(events);
        let outages = outages(events, end_ms);
        let crossings = crossings(events, end_ms);
        let faults = self.faults(events, &store, end_ms);
        let metrics = self.metric_summaries(&store);
        let annotations: Vec<Annotation> = events
            .iter()
            .filter_map(|e| {
                match &e.kind {
                    EventKind::Mark { label } => Some(("mark", label.clone())),
                    EventKind::Note { text } => Some(("note", text.clone())),
                    _ => None,
                }
                .map(|(kind, text)| Annotation {
                    at: e.ts,
                    offset_ms: e.offset_ms,
                    kind,
                    text,
                })
            })
            .collect();
        let experiment = experiment(events);
        let mut results = Vec::new();
        if let Some(x) = &experiment {
            // Baseline checks have their own section, recovery checks theirs.
            results.extend(
                x.checks
                    .iter()
                    .filter(|c| matches!(c.group, CheckGroup::During | CheckGroup::Abort))
                    .map(|c| ResultLine {
                        outcome: if c.passed {
                            Outcome::Pass
                        } else {
                            Outcome::Fail
                        },
                        text: format!("{} ({}, {})", c.name, c.expected, c.measured()),
                    }),
            );
        }
        let others = results_of(&outages, &crossings, &faults);
        match &experiment {
            None => results.extend(others),
            // A scenario's checks are its results; add only what else went wrong.
            Some(_) => results.extend(others.into_iter().filter(|r| r.outcome != Outcome::Pass)),
        }
        let mut improvements: Vec<String> = results
            .iter()
            .filter(|r| r.outcome == Outcome::Fail)
            .map(|r| format!("Investigate: {}", r.text))
            .collect();
        if let Some(x) = &experiment {
            improvements.extend(
                x.checks
                    .iter()
                    .filter(|c| c.group == CheckGroup::Recovery && !c.passed)
                    .map(|c| {
                        format!(
                            "Speed up recovery: {} ({}, {})",
                            c.name,
                            c.expected,
                            c.measured()
                        )
                    }),
            );
        }
        improvements.extend(
            annotations
                .iter()
                .filter(|a| a.kind == "note")
                .filter_map(|a| {
                    let lower = a.text.to_ascii_lowercase();
                    IMPROVEMENT_PREFIXES
                        .iter()
                        .find(|p| lower.starts_with(*p))
                        .map(|p| a.text[p.len()..].trim().to_string())
                }),
        );
        let timeline = events
            .iter()
            .filter_map(|e| {
                e.kind.summary().map(|text| TimelineRow {
                    at: e.ts,
                    offset_ms: e.offset_ms,
                    text,
                })
            })
            .collect();
        Report {
            session,
            experiment,
            results,
            faults,
            outages,
            crossings,
            metrics,
            annotations,
            improvements,
            timeline,
        }
    }

    fn metric_summaries(&self, store: &MetricStore) -> Vec<MetricSummary> {
        store
            .iter()
            .filter_map(|(key, series)| {
                let stats = series.stats()?;
                let threshold = self.thresholds.get(key).copied();
                let (warn, crit) = threshold.map_or((0, 0), |t| {
                    (
                        series.time_at_level(&t, Level::Warn),
                        series.time_at_level(&t, Level::Crit),
                    )
                });
                Some(MetricSummary {
                    key: key.clone(),
                    stats,
                    threshold,
                    time_above_warn_ms: warn,
                    time_above_crit_ms: crit,
                })
            })
            .collect()
    }

    /// Metrics worth comparing around a fault: thresholded ones and the latency/lag headliners.
    fn is_key_metric(&self, key: &str) -> bool {
        self.thresholds.contains_key(key)
            || key.ends_with(".up")
            || key.ends_with(".pending")
            || key.ends_with("latency_ms.p95")
            || key == "nats.rtt_ms"
            || key == "pg.probe_ms"
            || key == "pg.connections.used"
            || (key.starts_with("probe.") && (key.ends_with(".latency_ms") || key.ends_with(".ok")))
    }

    fn faults(
        &self,
        events: &[TimelineEvent],
        store: &MetricStore,
        end_ms: u64,
    ) -> Vec<FaultSummary> {
        let mut by_id: Vec<FaultSummary> = Vec::new();
        for e in events {
            let EventKind::Fault {
                id,
                name,
                phase,
                target,
                detail,
                cause,
                ..
            } = &e.kind
            else {
                continue;
            };
            let index = match by_id.iter().position(|f| &f.id == id) {
                Some(i) => i,
                None => {
                    by_id.push(FaultSummary {
                        id: id.clone(),
                        name: name.clone(),
                        target: target.clone(),
                        detail: detail.clone(),
                        requested_ms: e.offset_ms,
                        applied_ms: None,
                        ended_ms: None,
                        duration_ms: None,
                        outcome: "active at end".into(),
                        ended_by: None,
                        error: None,
                        metrics: Vec::new(),
                    });
                    by_id.len() - 1
                }
            };
            let f = &mut by_id[index];
            match phase {
                FaultPhase::Requested => {}
                FaultPhase::Applied => {
                    f.applied_ms = Some(e.offset_ms);
                    if !detail.is_empty() {
                        f.detail = detail.clone();
                    }
                }
                FaultPhase::RevertRequested => f.ended_by = cause.as_ref().map(Cause::to_string),
                FaultPhase::Reverted => {
                    f.ended_ms = Some(e.offset_ms);
                    f.outcome = "reverted".into();
                    if let Some(c) = cause {
                        f.ended_by = Some(c.to_string());
                    }
                }
                FaultPhase::Refused => {
                    f.outcome = "refused".into();
                    f.error = Some(detail.clone());
                    f.ended_ms = Some(e.offset_ms);
                }
                FaultPhase::Failed => {
                    f.outcome = "failed".into();
                    f.error = Some(detail.clone());
                    if f.applied_ms.is_none() {
                        f.ended_ms = Some(e.offset_ms);
                    }
                }
            }
        }
        for f in &mut by_id {
            let start = f.applied_ms.unwrap_or(f.requested_ms);
            let end = f.ended_ms.unwrap_or(end_ms);
            f.duration_ms = f.applied_ms.map(|a| end.saturating_sub(a));
            let span = end.saturating_sub(start).max(1000);
            f.metrics = store
                .iter()
                .filter(|(key, _)| self.is_key_metric(key))
                .map(|(key, s)| FaultMetric {
                    key: key.clone(),
                    before: s.stats_between(start.saturating_sub(span), start),
                    during: s.stats_between(start, end),
                    after: s.stats_between(end, end + span),
                })
                .filter(|m| m.before.is_some() || m.during.is_some() || m.after.is_some())
                .collect();
        }
        by_id
    }
}

fn session_summary(events: &[TimelineEvent]) -> SessionSummary {
    let (name, config, version) = match events.first().map(|e| &e.kind) {
        Some(EventKind::SessionStart {
            session,
            config,
            version,
            ..
        }) => (session.clone(), config.clone(), version.clone()),
        _ => ("unknown".into(), String::new(), String::new()),
    };
    let environment = events.iter().find_map(|e| match &e.kind {
        EventKind::Environment { name, production } => match (name, production) {
            (Some(name), true) => Some(format!("{name} (PRODUCTION)")),
            (Some(name), false) => Some(name.clone()),
            (None, true) => Some("PRODUCTION".into()),
            (None, false) => None,
        },
        _ => None,
    });
    let started = events.first().map_or_else(Utc::now, |e| e.ts);
    let last = events.last();
    let end_reason = events.iter().rev().find_map(|e| match &e.kind {
        EventKind::SessionEnd { reason } => Some(reason.clone()),
        _ => None,
    });
    SessionSummary {
        name,
        config,
        environment,
        version,
        started,
        ended: last.map_or(started, |e| e.ts),
        duration_ms: last.map_or(0, |e| e.offset_ms),
        end_reason,
    }
}

/// Every series, as the console saw it.
pub fn replay(events: &[TimelineEvent]) -> MetricStore {
    let mut store = MetricStore::new(REPLAY_CAPACITY);
    for e in events {
        match &e.kind {
            EventKind::Samples { points } => {
                for (key, value) in points {
                    store.record(e.offset_ms, key, *value);
                }
            }
            EventKind::SourceDown { source, .. } => store.gap(e.offset_ms, &format!("{source}.")),
            _ => {}
        }
    }
    store
}

fn outages(events: &[TimelineEvent], end_ms: u64) -> Vec<Outage> {
    let mut open: BTreeMap<String, (u64, String)> = BTreeMap::new();
    let mut out = Vec::new();
    for e in events {
        match &e.kind {
            EventKind::SourceDown { source, reason } => {
                open.entry(source.clone())
                    .or_insert((e.offset_ms, reason.clone()));
            }
            EventKind::SourceUp { source } => {
                if let Some((from_ms, reason)) = open.remove(source) {
                    out.push(Outage {
                        source: source.clone(),
                        reason,
                        from_ms,
                        to_ms: Some(e.offset_ms),
                        duration_ms: e.offset_ms - from_ms,
                    });
                }
            }
            _ => {}
        }
    }
    for (source, (from_ms, reason)) in open {
        out.push(Outage {
            source,
            reason,
            from_ms,
            to_ms: None,
            duration_ms: end_ms.saturating_sub(from_ms),
        });
    }
    out.sort_by_key(|o| o.from_ms);
    out
}

/// Stretches spent at warn or crit, per key.
fn crossings(events: &[TimelineEvent], _end_ms: u64) -> Vec<Crossing> {
    let mut open: BTreeMap<String, Crossing> = BTreeMap::new();
    let mut out = Vec::new();
    for e in events {
        let EventKind::Threshold { key, level, value } = &e.kind else {
            continue;
        };
        if let Some(mut c) = open.remove(key) {
            if *level > Level::Ok && *level == c.level {
                c.peak = c.peak.max(*value);
                open.insert(key.clone(), c);
                continue;
            }
            c.to_ms = Some(e.offset_ms);
            out.push(c);
        }
        if *level > Level::Ok {
            open.insert(
                key.clone(),
                Crossing {
                    key: key.clone(),
                    level: *level,
                    peak: *value,
                    from_ms: e.offset_ms,
                    to_ms: None,
                },
            );
        }
    }
    out.extend(open.into_values());
    out.sort_by_key(|c| c.from_ms);
    out
}

/// The scenario's story from its events: the last word on each check wins.
fn experiment(events: &[TimelineEvent]) -> Option<Experiment> {
    let mut x: Option<Experiment> = None;
    for e in events {
        match &e.kind {
            EventKind::ScenarioStart {
                title,
                file,
                hypothesis,
                description,
                ..
            } => {
                x = Some(Experiment {
                    title: title.clone(),
                    file: file.clone(),
                    hypothesis: hypothesis.clone(),
                    description: description.clone(),
                    verdict: None,
                    reason: String::new(),
                    phases: Vec::new(),
                    checks: Vec::new(),
                });
            }
            EventKind::ScenarioPhase { phase, .. } => {
                if let Some(x) = &mut x {
                    x.phases.push(PhaseMark {
                        phase: *phase,
                        at_ms: e.offset_ms,
                    });
                }
            }
            EventKind::Check {
                group,
                name,
                expected,
                metric,
                passed,
                value,
                recovered_after_ms,
                detail,
            } => {
                if let Some(x) = &mut x {
                    let outcome = CheckOutcome {
                        group: *group,
                        name: name.clone(),
                        expected: expected.clone(),
                        metric: metric.clone(),
                        passed: *passed,
                        value: *value,
                        recovered_after_ms: *recovered_after_ms,
                        detail: detail.clone(),
                    };
                    match x
                        .checks
                        .iter_mut()
                        .find(|c| c.group == *group && c.name == *name)
                    {
                        Some(existing) => *existing = outcome,
                        None => x.checks.push(outcome),
                    }
                }
            }
            EventKind::Verdict { verdict, reason } => {
                if let Some(x) = &mut x {
                    x.verdict = Some(*verdict);
                    x.reason = reason.clone();
                }
            }
            _ => {}
        }
    }
    x
}

fn results_of(
    outages: &[Outage],
    crossings: &[Crossing],
    faults: &[FaultSummary],
) -> Vec<ResultLine> {
    let mut out = Vec::new();
    for f in faults {
        let line = match f.outcome.as_str() {
            "reverted" => ResultLine {
                outcome: Outcome::Pass,
                text: format!(
                    "Fault {} on {} reverted ({}) after {}",
                    f.name,
                    f.target,
                    f.ended_by.as_deref().unwrap_or("revert"),
                    fmt_ms(f.duration_ms.unwrap_or(0))
                ),
            },
            "failed" => ResultLine {
                outcome: Outcome::Fail,
                text: format!(
                    "Fault {} on {} failed: {}",
                    f.name,
                    f.target,
                    f.error.as_deref().unwrap_or("unknown")
                ),
            },
            _ => ResultLine {
                outcome: Outcome::Fail,
                text: format!(
                    "Fault {} on {} was still active when the session ended",
                    f.name, f.target
                ),
            },
        };
        out.push(line);
    }
    for o in outages {
        out.push(match o.to_ms {
            Some(_) => ResultLine {
                outcome: Outcome::Warn,
                text: format!(
                    "{} was down for {} ({}), then recovered",
                    o.source,
                    fmt_ms(o.duration_ms),
                    o.reason
                ),
            },
            None => ResultLine {
                outcome: Outcome::Fail,
                text: format!(
                    "{} was still down at the end ({}, down {})",
                    o.source,
                    o.reason,
                    fmt_ms(o.duration_ms)
                ),
            },
        });
    }
    for c in crossings.iter().filter(|c| c.level == Level::Crit) {
        let how_long = c.to_ms.map_or_else(
            || "until the end".to_string(),
            |to| format!("for {}", fmt_ms(to - c.from_ms)),
        );
        out.push(ResultLine {
            outcome: Outcome::Warn,
            text: format!(
                "{} reached CRIT (peak {}) {how_long}",
                c.key,
                timeline::fmt_value(c.peak)
            ),
        });
    }
    if out.is_empty() {
        out.push(ResultLine {
            outcome: Outcome::Pass,
            text: "Every source stayed up and every metric stayed below its crit threshold".into(),
        });
    }
    out
}

/// `1m 23s`, `450ms`.
pub fn fmt_ms(ms: u64) -> String {
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let secs = ms / 1000;
    let tenths = (ms % 1000) / 100;
    match secs {
        0..60 if tenths > 0 => format!("{secs}.{tenths}s"),
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m {}s", secs / 60, secs % 60),
        _ => format!("{}h {}m", secs / 3600, (secs % 3600) / 60),
    }
}

/// Reads `dir/timeline.jsonl` and writes the report files next to it. Returns the files written.
pub fn write_from_dir(dir: &Path, formats: &[Format]) -> Result<Vec<PathBuf>, String> {
    let events = timeline::read(&dir.join(timeline::FILE_NAME)).map_err(|e| e.to_string())?;
    if events.is_empty() {
        return Err(format!("{}: the timeline is empty", dir.display()));
    }
    let report = Report::build(&events);
    let mut written = Vec::new();
    for format in formats {
        let text = match format {
            Format::Markdown => to_markdown(&report),
            Format::Json => to_json(&report),
            Format::Html => to_html(&report, &replay(&events)),
            Format::Junit => to_junit(&report),
        };
        let path = dir.join(format.file_name());
        write_atomically(&path, &text).map_err(|e| format!("{}: {e}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// Writes the JUnit XML of a report where CI expects it.
pub fn write_junit(report: &Report, path: &Path) -> Result<(), String> {
    let written = match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) => std::fs::create_dir_all(parent),
        None => Ok(()),
    }
    .and_then(|()| write_atomically(path, &to_junit(report)));
    written.map_err(|e| format!("{}: {e}", path.display()))
}

/// Write to a temporary sibling, then rename: a reader never sees half a report.
fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    #[value(name = "md")]
    Markdown,
    Json,
    Html,
    /// JUnit XML for CI; only written when asked for.
    Junit,
}

impl Format {
    /// What a session writes by default.
    pub const ALL: [Format; 3] = [Format::Markdown, Format::Json, Format::Html];

    /// The file's name in the session directory.
    pub fn file_name(self) -> &'static str {
        match self {
            Format::Markdown => "report.md",
            Format::Json => "report.json",
            Format::Html => "report.html",
            Format::Junit => "junit.xml",
        }
    }
}

#[cfg(test)]
mod tests;
