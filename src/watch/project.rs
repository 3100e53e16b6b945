//! A recorded session's events, applied in order, rebuild what its console showed: the same
//! `AppState` the console draws, from the timeline alone. Fault lines go through the same
//! `FaultBoard::apply` and source lines through the same `AppState::set_source_status` the
//! console uses, so the two cannot drift apart.

use std::path::PathBuf;
use std::sync::Arc;

use crate::config::{Config, View};
use crate::sources::{SourceId, SourceStatus};
use crate::state::{AppState, CheckView, FaultStep, Role, ScenarioView, Session};
use crate::timeline::{EventKind, TimelineEvent};

/// The viewer's state, built event by event.
pub struct Projection {
    pub state: AppState,
    /// The session has a `setup` line (schema 2): the config came with it.
    set_up: bool,
}

impl Projection {
    /// Nothing seen yet: an empty screen in `role`, drawn with `theme`.
    pub fn new(role: Role, theme: String, dir: PathBuf) -> Projection {
        let config = Arc::new(Config::from_view(PathBuf::new(), View::default()));
        let session = Session {
            name: String::new(),
            dir,
            started: chrono::Utc::now(),
        };
        let mut state = AppState::new(config, session, theme);
        state.ui.role = role;
        Projection {
            state,
            set_up: false,
        }
    }

    /// A session starts over in the same stream (a new console, or a truncated file): forget
    /// the old one, keep this viewer's own settings.
    pub fn restart(&mut self) {
        let ui = self.state.ui.clone();
        let dir = self.state.session.dir.clone();
        *self = Projection::new(ui.role.clone(), ui.theme.clone(), dir);
        self.state.ui = ui;
        self.state.ui.timeline_scroll = 0;
        self.state.ui.selected_fault = 0;
    }

    /// Applies one recorded event at its own offset.
    pub fn apply(&mut self, event: &TimelineEvent) {
        let at = event.offset_ms;
        let state = &mut self.state;
        state.now_ms = state.now_ms.max(at);
        match &event.kind {
            EventKind::SessionStart {
                session,
                config,
                schema,
                thresholds,
                ..
            } => {
                state.session.name = session.clone();
                state.session.started = event.ts - chrono::Duration::milliseconds(at as i64);
                state.thresholds = thresholds.clone();
                // The first schema had no `setup` line: the config file, if it is still there,
                // is the best account of what the panels showed.
                if *schema < 2
                    && let Ok(loaded) = Config::load(std::path::Path::new(config))
                {
                    let catalog = crate::faults::catalog_entries(&loaded);
                    let view = loaded.view();
                    self.use_config(Config::from_view(loaded.file.clone(), view));
                    self.state.faults.catalog = catalog;
                }
            }
            EventKind::Setup {
                driver,
                view,
                catalog,
                notices,
            } => {
                let file = PathBuf::from(state.session.name.clone());
                self.set_up = true;
                self.use_config(Config::from_view(file, (**view).clone()));
                let state = &mut self.state;
                state.faults.catalog = catalog.clone();
                state.faults.notices = notices.clone();
                match &mut state.ui.role {
                    Role::Watch(w) => w.driver = Some(driver.clone()),
                    Role::Replay(r) => r.driver = Some(driver.clone()),
                    Role::Console => {}
                }
            }
            EventKind::Foreign { faults } => state.faults.others = faults.clone(),
            EventKind::SourceDown { source, reason } => {
                state.set_source_status(
                    SourceId(source.clone()),
                    SourceStatus::Down {
                        reason: reason.clone(),
                    },
                    at,
                );
            }
            EventKind::SourceUp { source } => {
                state.set_source_status(SourceId(source.clone()), SourceStatus::Up, at);
            }
            EventKind::Threshold { key, level, .. } => {
                state.levels.insert(key.clone(), *level);
            }
            EventKind::Samples { points } => {
                for (key, value) in points {
                    state.metrics.record(at, key, *value);
                }
            }
            kind @ EventKind::Fault { .. } => {
                if let Some(step) = FaultStep::of(kind) {
                    state.faults.apply(step, at);
                }
                let max = state.faults.active.len().saturating_sub(1);
                state.ui.selected_fault = state.ui.selected_fault.min(max);
            }
            EventKind::ScenarioStart { title, checks, .. } => {
                state.followed_scenario = Some(ScenarioView {
                    title: title.clone(),
                    phase: crate::timeline::Phase::Baseline,
                    until_ms: None,
                    waiting: false,
                    checks: checks
                        .iter()
                        .map(|c| CheckView {
                            group: c.group,
                            name: c.name.clone(),
                            expected: c.expected.clone(),
                            passed: None,
                            value: None,
                        })
                        .collect(),
                    verdict: None,
                });
            }
            EventKind::ScenarioProgress { checks, waiting } => {
                if let Some(view) = &mut state.followed_scenario {
                    for (check, progress) in view.checks.iter_mut().zip(checks) {
                        check.passed = progress.passed;
                        check.value = progress.value;
                    }
                    view.waiting = *waiting;
                }
            }
            EventKind::ScenarioPhase {
                phase, until_ms, ..
            } => {
                if let Some(view) = &mut state.followed_scenario {
                    view.phase = *phase;
                    view.until_ms = *until_ms;
                }
            }
            EventKind::Check {
                group,
                name,
                expected,
                passed,
                value,
                ..
            } => {
                if let Some(view) = &mut state.followed_scenario {
                    match view
                        .checks
                        .iter_mut()
                        .find(|c| c.group == *group && c.name == *name)
                    {
                        Some(check) => {
                            check.passed = Some(*passed);
                            check.value = *value;
                        }
                        None => view.checks.push(CheckView {
                            group: *group,
                            name: name.clone(),
                            expected: expected.clone(),
                            passed: Some(*passed),
                            value: *value,
                        }),
                    }
                }
            }
            EventKind::Verdict { verdict, reason } => {
                if let Some(view) = &mut state.followed_scenario {
                    view.verdict = Some((*verdict, reason.clone()));
                    view.phase = crate::timeline::Phase::Verdict;
                    view.until_ms = None;
                }
            }
            EventKind::SessionEnd { reason } => {
                if let Role::Watch(w) = &mut state.ui.role {
                    w.ended = Some(reason.clone());
                }
                // Nothing is active once the session is over, whatever the file last said.
            }
            EventKind::Environment { .. }
            | EventKind::Mark { .. }
            | EventKind::Note { .. }
            | EventKind::ReportWritten { .. }
            | EventKind::Info { .. } => {}
        }
        self.state.push_timeline(event.clone());
    }

    /// Draws with this config from now on (its history window sizes the series).
    fn use_config(&mut self, config: Config) {
        let state = &mut self.state;
        let fresh = AppState::new(Arc::new(config), state.session.clone(), String::new());
        state.config = fresh.config;
        if state.metrics.is_empty() {
            state.metrics = fresh.metrics;
        }
    }

    /// The session told everything a panel needs (schema 2), or only what the first schema had.
    pub fn is_set_up(&self) -> bool {
        self.set_up
    }
}

#[cfg(test)]
mod tests;
