//! Scenario files (`scenarios/*.toml`): a whole experiment — hypothesis, steady-state checks,
//! timed fault steps, expectations while the faults act, recovery checks with a deadline, and
//! abort conditions — run live in the console (`s`) or headless (`gameday run`).
//!
//! ```toml
//! title = "NATS broker failure"
//! hypothesis = "The API keeps accepting tasks while the broker is down, and nothing is lost"
//!
//! [baseline]
//! duration = "10s"
//! [[baseline.check]]
//! metric = "probe.api.ok"
//! aggregate = "mean"
//! op = ">="
//! value = 1
//!
//! [[step]]
//! at = "0s"
//! fault = "nats-partition"   # a [[fault]] of the config, by name
//! duration = "20s"
//!
//! [[expect_during]]
//! metric = "pg.gauge.retry_queue"
//! aggregate = "max"
//! op = ">"
//! value = 0
//!
//! [recovery]
//! within = "60s"
//! [[recovery.check]]
//! metric = "nats.TASKS.workers.pending"
//! op = "<"
//! value = 10
//!
//! [[abort_when]]
//! metric = "probe.api.latency_ms"
//! aggregate = "max"
//! window = "5s"
//! op = ">"
//! value = 10000
//! ```

pub mod check;
pub mod run;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::config::Config;
use crate::toml_input::{Dur, InputError, TomlDoc};
pub use check::{Aggregate, Check, Evaluation, Op, RawCheck};

#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub file: PathBuf,
    pub title: String,
    pub hypothesis: String,
    pub description: String,
    pub baseline: Duration,
    pub baseline_checks: Vec<Check>,
    pub steps: Vec<Step>,
    pub during: Vec<Check>,
    pub recovery_within: Duration,
    pub recovery_checks: Vec<Check>,
    pub abort_when: Vec<Check>,
}

impl Scenario {
    /// The longest a run of it can take when everything goes by the plan: baseline, the last
    /// step's end, the recovery window.
    pub fn planned_length(&self) -> Duration {
        let injection = self
            .steps
            .iter()
            .map(|s| match &s.action {
                StepAction::Inject { lease, .. } => s.at + *lease,
                _ => s.at,
            })
            .max()
            .unwrap_or_default();
        self.baseline + injection + self.recovery_within
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Offset from the start of the injection phase.
    pub at: Duration,
    pub action: StepAction,
}

#[derive(Debug, Clone, PartialEq)]
pub enum StepAction {
    /// Inject a catalog fault for `lease`.
    Inject {
        fault: String,
        catalog_index: usize,
        lease: Duration,
    },
    /// Tell the operator something; with `wait`, the live console pauses the steps until they
    /// press enter (headless runs never wait).
    Prompt { text: String, wait: bool },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    title: String,
    hypothesis: String,
    description: Option<String>,
    baseline: Option<RawBaseline>,
    #[serde(default, rename = "step")]
    steps: Vec<RawStep>,
    #[serde(default)]
    expect_during: Vec<RawCheck>,
    recovery: Option<RawRecovery>,
    #[serde(default)]
    abort_when: Vec<RawCheck>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBaseline {
    duration: Dur,
    #[serde(default, rename = "check")]
    checks: Vec<RawCheck>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    #[serde(default)]
    at: Dur,
    fault: Option<String>,
    duration: Option<Dur>,
    prompt: Option<String>,
    #[serde(default)]
    wait: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecovery {
    within: Dur,
    #[serde(default, rename = "check")]
    checks: Vec<RawCheck>,
}

/// The longest a scenario may keep anything broken.
const MAX_SPAN: Duration = Duration::from_secs(24 * 3600);

impl Scenario {
    /// Reads and validates a scenario against the config: its faults must be in the catalog and
    /// its metrics must be ones the config produces. Errors name the file, line and key.
    pub fn load(path: &Path, config: &Config) -> Result<Scenario, InputError> {
        let doc = TomlDoc::read(path)?;
        Self::from_doc(&doc, config)
    }

    pub fn from_text(path: &Path, text: &str, config: &Config) -> Result<Scenario, InputError> {
        Self::from_doc(&TomlDoc::from_text(path, text.to_string())?, config)
    }

    fn from_doc(doc: &TomlDoc, config: &Config) -> Result<Scenario, InputError> {
        let raw: RawScenario = doc.deserialize()?;
        if raw.title.trim().is_empty() {
            return Err(doc.error_at("title", "expected a title"));
        }
        if raw.hypothesis.trim().is_empty() {
            return Err(doc.error_at(
                "hypothesis",
                "expected the hypothesis this experiment tests",
            ));
        }
        let checks = |path: &str, raws: &[RawCheck]| -> Result<Vec<Check>, InputError> {
            raws.iter()
                .enumerate()
                .map(|(i, raw)| {
                    let at = format!("{path}[{i}]");
                    let check = Check::from_raw(raw)
                        .map_err(|(key, message)| doc.error_at(&format!("{at}.{key}"), message))?;
                    config
                        .check_metric(&check.metric)
                        .map_err(|m| doc.error_at(&format!("{at}.metric"), m))?;
                    Ok(check)
                })
                .collect()
        };
        let (baseline, baseline_checks) = match &raw.baseline {
            Some(b) => (b.duration.get(), checks("baseline.check", &b.checks)?),
            None => (Duration::ZERO, Vec::new()),
        };
        let mut steps = Vec::new();
        for (i, s) in raw.steps.iter().enumerate() {
            let at = |key: &str| format!("step[{i}].{key}");
            let action = match (&s.fault, &s.prompt) {
                (Some(name), None) => {
                    let Some(catalog_index) = config.faults.iter().position(|f| &f.name == name)
                    else {
                        let names: Vec<&str> =
                            config.faults.iter().map(|f| f.name.as_str()).collect();
                        let known = if names.is_empty() {
                            "the config has no [[fault]] entries".to_string()
                        } else {
                            format!("expected one of: {}", names.join(", "))
                        };
                        return Err(doc.error_at(
                            &at("fault"),
                            format!(
                                "no fault named \"{name}\" in {}; {known}",
                                config.file.display()
                            ),
                        ));
                    };
                    let lease = s
                        .duration
                        .map_or(config.faults[catalog_index].lease, Dur::get);
                    if lease.is_zero() || lease > MAX_SPAN {
                        return Err(doc.error_at(
                            &at("duration"),
                            "expected a duration above zero and at most \"24h\"",
                        ));
                    }
                    StepAction::Inject {
                        fault: name.clone(),
                        catalog_index,
                        lease,
                    }
                }
                (None, Some(text)) => {
                    if s.duration.is_some() {
                        return Err(doc.error_at(
                            &at("duration"),
                            "`duration` goes with `fault`, not with `prompt`",
                        ));
                    }
                    StepAction::Prompt {
                        text: text.clone(),
                        wait: s.wait,
                    }
                }
                _ => {
                    return Err(doc.error_at(
                        &format!("step[{i}]"),
                        "expected exactly one of `fault = \"<catalog fault>\"` or `prompt = \"<text>\"`",
                    ));
                }
            };
            if s.at.get() > MAX_SPAN {
                return Err(doc.error_at(&at("at"), "expected an offset of at most \"24h\""));
            }
            steps.push(Step {
                at: s.at.get(),
                action,
            });
        }
        if !steps
            .iter()
            .any(|s| matches!(s.action, StepAction::Inject { .. }))
        {
            return Err(doc.error_at(
                "step",
                "expected at least one [[step]] with `fault = \"<catalog fault>\"`",
            ));
        }
        steps.sort_by_key(|s| s.at);
        let during = checks("expect_during", &raw.expect_during)?;
        let (recovery_within, recovery_checks) = match &raw.recovery {
            Some(r) => {
                if r.within.get().is_zero() {
                    return Err(doc.error_at("recovery.within", "expected a deadline above zero"));
                }
                (r.within.get(), checks("recovery.check", &r.checks)?)
            }
            None => (Duration::ZERO, Vec::new()),
        };
        let abort_when = checks("abort_when", &raw.abort_when)?;
        Ok(Scenario {
            file: doc.file().to_path_buf(),
            title: raw.title,
            hypothesis: raw.hypothesis,
            description: raw.description.unwrap_or_default(),
            baseline,
            baseline_checks,
            steps,
            during,
            recovery_within,
            recovery_checks,
            abort_when,
        })
    }

    /// Every scenario file in a directory, sorted.
    pub fn files(dir: &Path) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files
    }
}

#[cfg(test)]
mod tests;
