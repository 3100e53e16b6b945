//! A scenario in progress: a state machine the app advances on every clock tick. It reads the
//! metric store and the faults' progress, and answers with actions (record an event, inject a
//! catalog fault, revert everything, tell the operator). The console and `gameday run` drive the
//! same machine, so a drill on a shared screen and a CI gate behave identically.

use std::time::Duration;

use super::{Check, Scenario, StepAction};
use crate::metrics::MetricStore;
use crate::state::{CheckView, ScenarioView};
use crate::timeline::{CheckGroup, EventKind, FaultPhase, Phase, PlannedCheck, Verdict};

/// What the machine asks the app to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Record(EventKind),
    Inject {
        catalog_index: usize,
        lease: Duration,
    },
    RevertAll {
        reason: String,
    },
    /// Show the operator a message (a waiting prompt blocks the steps until `resume`).
    Prompt {
        text: String,
        wait: bool,
    },
}

/// One check as the live view shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveCheck {
    pub group: CheckGroup,
    pub check: Check,
    /// `None` until first evaluated.
    pub passed: Option<bool>,
    pub value: Option<f64>,
    /// Recovery checks: how long after the last revert it first held.
    pub recovered_after_ms: Option<u64>,
}

pub struct ScenarioRun {
    pub scenario: Scenario,
    pub phase: Phase,
    /// When the current phase began.
    pub phase_started_ms: u64,
    started_ms: u64,
    injection_started_ms: Option<u64>,
    first_applied_ms: Option<u64>,
    last_reverted_ms: Option<u64>,
    /// Step indexes already issued.
    issued: Vec<bool>,
    /// Names of the scenario's faults now applied (or being applied).
    active: Vec<String>,
    /// Faults the steps asked for that have not reported an outcome yet.
    awaiting: Vec<String>,
    /// Time the steps stood still for waiting prompts.
    paused_ms: u64,
    waiting_since: Option<u64>,
    pub checks: Vec<LiveCheck>,
    pub verdict: Option<(Verdict, String)>,
}

impl ScenarioRun {
    /// Starts the run: its first events and the baseline phase.
    pub fn start(scenario: Scenario, now_ms: u64) -> (ScenarioRun, Vec<Action>) {
        let mut checks = Vec::new();
        let groups = [
            (CheckGroup::Baseline, &scenario.baseline_checks),
            (CheckGroup::During, &scenario.during),
            (CheckGroup::Recovery, &scenario.recovery_checks),
        ];
        for (group, list) in groups {
            checks.extend(list.iter().map(|c| LiveCheck {
                group,
                check: c.clone(),
                passed: None,
                value: None,
                recovered_after_ms: None,
            }));
        }
        let actions = vec![
            Action::Record(EventKind::ScenarioStart {
                title: scenario.title.clone(),
                file: scenario.file.display().to_string(),
                hypothesis: scenario.hypothesis.clone(),
                description: scenario.description.clone(),
                checks: checks
                    .iter()
                    .map(|c: &LiveCheck| PlannedCheck {
                        group: c.group,
                        name: c.check.name.clone(),
                        expected: c.check.expected(),
                    })
                    .collect(),
            }),
            Action::Record(EventKind::ScenarioPhase {
                phase: Phase::Baseline,
                detail: format!(
                    "steady state for {}",
                    humantime::format_duration(scenario.baseline)
                ),
                until_ms: Some(now_ms + scenario.baseline.as_millis() as u64),
            }),
        ];
        let run = ScenarioRun {
            issued: vec![false; scenario.steps.len()],
            scenario,
            phase: Phase::Baseline,
            phase_started_ms: now_ms,
            started_ms: now_ms,
            injection_started_ms: None,
            first_applied_ms: None,
            last_reverted_ms: None,
            active: Vec::new(),
            awaiting: Vec::new(),
            paused_ms: 0,
            waiting_since: None,
            checks,
            verdict: None,
        };
        (run, actions)
    }

    /// What the screen shows of this run.
    pub fn view(&self) -> ScenarioView {
        ScenarioView {
            title: self.scenario.title.clone(),
            phase: self.phase,
            until_ms: self.phase_deadline_ms(),
            waiting: self.is_waiting(),
            checks: self
                .checks
                .iter()
                .map(|c| CheckView {
                    group: c.group,
                    name: c.check.name.clone(),
                    expected: c.check.expected(),
                    passed: c.passed,
                    value: c.value,
                })
                .collect(),
            verdict: self.verdict.clone(),
        }
    }

    pub fn is_finished(&self) -> bool {
        self.verdict.is_some()
    }

    /// When the current phase is due to end, for the header's countdown (if it has a deadline).
    pub fn phase_deadline_ms(&self) -> Option<u64> {
        match self.phase {
            Phase::Baseline => Some(self.started_ms + self.scenario.baseline.as_millis() as u64),
            Phase::Injecting => {
                let next = self
                    .scenario
                    .steps
                    .iter()
                    .zip(&self.issued)
                    .find(|(_, done)| !**done)
                    .map(|(s, _)| s.at);
                Some(self.injection_started_ms? + self.paused_ms + next?.as_millis() as u64)
            }
            Phase::Recovering => {
                Some(self.last_reverted_ms? + self.scenario.recovery_within.as_millis() as u64)
            }
            Phase::Observing | Phase::Verdict => None,
        }
    }

    /// The operator pressed enter on a waiting prompt.
    pub fn resume(&mut self, now_ms: u64) {
        if let Some(since) = self.waiting_since.take() {
            self.paused_ms += now_ms.saturating_sub(since);
        }
    }

    pub fn is_waiting(&self) -> bool {
        self.waiting_since.is_some()
    }

    /// A fault of this run moved a step.
    pub fn on_fault(
        &mut self,
        name: &str,
        phase: FaultPhase,
        detail: &str,
        now_ms: u64,
    ) -> Vec<Action> {
        if self.is_finished() {
            return Vec::new();
        }
        let ours = self.awaiting.iter().any(|n| n == name) || self.active.iter().any(|n| n == name);
        if !ours {
            return Vec::new();
        }
        match phase {
            FaultPhase::Applied => {
                self.awaiting.retain(|n| n != name);
                self.active.push(name.to_string());
                self.first_applied_ms.get_or_insert(now_ms);
                Vec::new()
            }
            FaultPhase::Reverted => {
                self.active.retain(|n| n != name);
                self.awaiting.retain(|n| n != name);
                self.last_reverted_ms = Some(now_ms);
                Vec::new()
            }
            FaultPhase::Failed | FaultPhase::Refused if self.awaiting.iter().any(|n| n == name) => {
                self.awaiting.retain(|n| n != name);
                self.finish(
                    Verdict::Aborted,
                    format!("fault {name} could not be injected: {detail}"),
                    true,
                    now_ms,
                )
            }
            _ => Vec::new(),
        }
    }

    /// Ends the run now (operator `X`, quit, a signal): everything is reverted.
    pub fn abort(&mut self, reason: &str, now_ms: u64) -> Vec<Action> {
        if self.is_finished() {
            return Vec::new();
        }
        self.finish(Verdict::Aborted, reason.to_string(), true, now_ms)
    }

    /// Advances the run to `now_ms`.
    pub fn tick(&mut self, now_ms: u64, store: &MetricStore) -> Vec<Action> {
        if self.is_finished() {
            return Vec::new();
        }
        let mut out = Vec::new();
        if matches!(self.phase, Phase::Injecting | Phase::Observing)
            && let Some(actions) = self.check_aborts(now_ms, store)
        {
            return actions;
        }
        match self.phase {
            Phase::Baseline => self.baseline(now_ms, store, &mut out),
            Phase::Injecting => self.inject(now_ms, store, &mut out),
            Phase::Observing => self.observe(now_ms, store, &mut out),
            Phase::Recovering => self.recover(now_ms, store, &mut out),
            Phase::Verdict => {}
        }
        out
    }

    fn enter(&mut self, phase: Phase, detail: String, now_ms: u64, out: &mut Vec<Action>) {
        self.phase = phase;
        self.phase_started_ms = now_ms;
        out.push(Action::Record(EventKind::ScenarioPhase {
            phase,
            detail,
            until_ms: self.phase_deadline_ms(),
        }));
    }

    fn baseline(&mut self, now_ms: u64, store: &MetricStore, out: &mut Vec<Action>) {
        let from = self.started_ms;
        let end = from + self.scenario.baseline.as_millis() as u64;
        self.evaluate(CheckGroup::Baseline, from, now_ms, store);
        if now_ms < end {
            return;
        }
        let failed = self.record_group(CheckGroup::Baseline, out);
        if !failed.is_empty() {
            // An unhealthy system is not broken further.
            out.extend(self.finish(
                Verdict::Aborted,
                format!("the steady state did not hold: {}", failed.join("; ")),
                false,
                now_ms,
            ));
            return;
        }
        self.injection_started_ms = Some(now_ms);
        self.enter(
            Phase::Injecting,
            format!("{} step(s)", self.scenario.steps.len()),
            now_ms,
            out,
        );
        self.inject(now_ms, store, out);
    }

    fn inject(&mut self, now_ms: u64, store: &MetricStore, out: &mut Vec<Action>) {
        let start = self.injection_started_ms.unwrap_or(now_ms);
        if self.waiting_since.is_none() {
            for i in 0..self.scenario.steps.len() {
                let step = &self.scenario.steps[i];
                if self.issued[i] || start + self.paused_ms + step.at.as_millis() as u64 > now_ms {
                    continue;
                }
                self.issued[i] = true;
                match &step.action {
                    StepAction::Inject {
                        fault,
                        catalog_index,
                        lease,
                    } => {
                        self.awaiting.push(fault.clone());
                        out.push(Action::Inject {
                            catalog_index: *catalog_index,
                            lease: *lease,
                        });
                    }
                    StepAction::Prompt { text, wait } => {
                        out.push(Action::Record(EventKind::Info {
                            text: format!("scenario prompt: {text}"),
                        }));
                        out.push(Action::Prompt {
                            text: text.clone(),
                            wait: *wait,
                        });
                        if *wait {
                            self.waiting_since = Some(now_ms);
                            break;
                        }
                    }
                }
            }
        }
        self.evaluate_during(now_ms, store);
        if self.issued.iter().all(|d| *d) {
            self.enter(
                Phase::Observing,
                "every step issued; watching until the faults are reverted".into(),
                now_ms,
                out,
            );
            self.observe(now_ms, store, out);
        }
    }

    fn observe(&mut self, now_ms: u64, store: &MetricStore, out: &mut Vec<Action>) {
        self.evaluate_during(now_ms, store);
        if !self.active.is_empty() || !self.awaiting.is_empty() {
            return;
        }
        let until = self.last_reverted_ms.unwrap_or(now_ms);
        if let Some(from) = self.first_applied_ms {
            self.evaluate(CheckGroup::During, from, until, store);
        }
        self.record_group(CheckGroup::During, out);
        self.last_reverted_ms = Some(until);
        let deadline = humantime::format_duration(self.scenario.recovery_within);
        self.enter(
            Phase::Recovering,
            format!("faults reverted; recovery checks have {deadline}"),
            now_ms,
            out,
        );
        self.recover(now_ms, store, out);
    }

    fn recover(&mut self, now_ms: u64, store: &MetricStore, out: &mut Vec<Action>) {
        let reverted = self.last_reverted_ms.unwrap_or(now_ms);
        for live in self
            .checks
            .iter_mut()
            .filter(|c| c.group == CheckGroup::Recovery)
        {
            if live.recovered_after_ms.is_some() {
                continue;
            }
            let e = live.check.evaluate(store, reverted, now_ms);
            live.value = e.value;
            live.passed = Some(e.passed);
            if e.passed {
                live.recovered_after_ms = Some(now_ms.saturating_sub(reverted));
            }
        }
        let all = self
            .checks
            .iter()
            .filter(|c| c.group == CheckGroup::Recovery)
            .all(|c| c.recovered_after_ms.is_some());
        let expired = now_ms >= reverted + self.scenario.recovery_within.as_millis() as u64;
        if !all && !expired {
            return;
        }
        for live in self
            .checks
            .iter()
            .filter(|c| c.group == CheckGroup::Recovery)
        {
            let passed = live.recovered_after_ms.is_some();
            out.push(Action::Record(EventKind::Check {
                group: CheckGroup::Recovery,
                name: live.check.name.clone(),
                metric: Some(live.check.metric.clone()),
                expected: live.check.expected(),
                passed,
                value: live.value,
                recovered_after_ms: live.recovered_after_ms,
                detail: if passed {
                    String::new()
                } else {
                    format!(
                        "not within {}",
                        humantime::format_duration(self.scenario.recovery_within)
                    )
                },
            }));
        }
        let failed: Vec<String> = self
            .checks
            .iter()
            .filter(|c| {
                matches!(c.group, CheckGroup::During | CheckGroup::Recovery)
                    && c.passed != Some(true)
            })
            .map(|c| c.check.name.clone())
            .collect();
        let (verdict, reason) = if failed.is_empty() {
            (
                Verdict::Pass,
                "the hypothesis held: every check passed".to_string(),
            )
        } else {
            (Verdict::Fail, format!("failed: {}", failed.join("; ")))
        };
        out.extend(self.finish(verdict, reason, false, now_ms));
    }

    fn evaluate_during(&mut self, now_ms: u64, store: &MetricStore) {
        if let Some(from) = self.first_applied_ms {
            self.evaluate(CheckGroup::During, from, now_ms, store);
        }
    }

    fn evaluate(&mut self, group: CheckGroup, from: u64, to: u64, store: &MetricStore) {
        for live in self.checks.iter_mut().filter(|c| c.group == group) {
            let e = live.check.evaluate(store, from, to);
            live.value = e.value;
            live.passed = Some(e.passed);
        }
    }

    /// Records the group's final outcomes; returns the names of the failed ones.
    fn record_group(&self, group: CheckGroup, out: &mut Vec<Action>) -> Vec<String> {
        let mut failed = Vec::new();
        for live in self.checks.iter().filter(|c| c.group == group) {
            let passed = live.passed == Some(true);
            if !passed {
                failed.push(format!(
                    "{} ({}, {})",
                    live.check.name,
                    live.check.expected(),
                    live.value.map_or("no data".into(), |v| format!(
                        "measured {}",
                        crate::timeline::fmt_value(v)
                    ))
                ));
            }
            out.push(Action::Record(EventKind::Check {
                group,
                name: live.check.name.clone(),
                metric: Some(live.check.metric.clone()),
                expected: live.check.expected(),
                passed,
                value: live.value,
                recovered_after_ms: None,
                detail: if live.value.is_none() {
                    "no data".into()
                } else {
                    String::new()
                },
            }));
        }
        failed
    }

    /// Abort conditions over their windows; the first that holds ends the run.
    fn check_aborts(&mut self, now_ms: u64, store: &MetricStore) -> Option<Vec<Action>> {
        let from = self.injection_started_ms.unwrap_or(now_ms);
        let tripped = self.scenario.abort_when.iter().find_map(|c| {
            let e = c.evaluate(store, from, now_ms);
            e.passed.then(|| (c.clone(), e.value))
        })?;
        let (check, value) = tripped;
        let mut out = vec![Action::Record(EventKind::Check {
            group: CheckGroup::Abort,
            name: check.name.clone(),
            metric: Some(check.metric.clone()),
            expected: check.expected(),
            passed: false,
            value,
            recovered_after_ms: None,
            detail: "abort condition met".into(),
        })];
        out.extend(self.finish(
            Verdict::Aborted,
            format!("abort condition met: {}", check.expected()),
            true,
            now_ms,
        ));
        Some(out)
    }

    fn finish(
        &mut self,
        verdict: Verdict,
        reason: String,
        revert: bool,
        now_ms: u64,
    ) -> Vec<Action> {
        let mut out = Vec::new();
        if revert {
            out.push(Action::RevertAll {
                reason: reason.clone(),
            });
        }
        self.enter(Phase::Verdict, String::new(), now_ms, &mut out);
        out.push(Action::Record(EventKind::Verdict {
            verdict,
            reason: reason.clone(),
        }));
        self.verdict = Some((verdict, reason));
        self.waiting_since = None;
        out
    }
}

#[cfg(test)]
mod tests;
