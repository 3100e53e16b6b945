//! The app: the single owner of console state. Events come in (keys, source data, clock ticks,
//! signals, results of background work), `handle` updates the state, writes the timeline and
//! queues `Effect`s for the console loop to run off the UI thread. Nothing here blocks or
//! draws; `ui::render` reads `state`.

use std::path::PathBuf;
use std::sync::Arc;

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind};

use crate::config::Config;
use crate::faults::engine::FaultReport;
use crate::keymap::{self, Action};
use crate::metrics::Level;
use crate::scenario::Scenario;
use crate::scenario::run::{Action as ScenarioAction, ScenarioRun};
use crate::sources::{SourceEvent, SourceId, SourceStatus};
use crate::state::{
    ActivePhase, AppState, CatalogEntry, Confirm, FaultStep, Mode, PendingAction, Picker,
    PickerItem, Session, Toast, ToastKind,
};
use crate::timeline::{
    Cause, CheckProgress, Driver, EventKind, FaultPhase, Timeline, TimelineEvent, Verdict,
};

/// How long a toast stays up.
const TOAST_MS: u64 = 4000;
/// Longest note accepted (a note is a line on the timeline, not an essay).
const NOTE_MAX_CHARS: usize = 500;

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Key(KeyEvent),
    /// The terminal was resized: redraw.
    Resize,
    /// The clock advanced (countdowns, elapsed time) and buffered samples go to the timeline.
    Tick,
    Source(SourceEvent),
    /// A termination signal arrived (SIGTERM, SIGHUP, SIGINT).
    Signal(&'static str),
    /// Background work finished.
    ReportWritten(Result<Vec<PathBuf>, String>),
    /// A fault moved a step (from the fault engine).
    Fault(FaultReport),
    /// Other consoles' faults, as the shared ledger lists them now.
    Others(Vec<crate::faults::engine::ForeignFault>),
    /// How many local viewers follow this session now.
    Watchers(usize),
    /// What catalog fault `catalog_index` would touch right now (a dry run), or why that
    /// cannot be said.
    Resolved {
        catalog_index: usize,
        result: Result<Vec<String>, String>,
    },
}

/// Work the console loop runs off the UI thread.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Rebuild the report from the session's timeline and write it.
    ExportReport,
    /// Inject the catalog fault at this index (for `lease`, or its catalog lease).
    InjectFault {
        catalog_index: usize,
        cause: Cause,
        lease: Option<std::time::Duration>,
    },
    RevertFault {
        id: String,
        cause: Cause,
    },
    RevertAll {
        cause: Cause,
    },
    /// This console's faults and every other console's.
    RevertEveryone {
        cause: Cause,
    },
    /// Resolve what catalog fault `catalog_index` would touch now, touching nothing.
    Resolve {
        catalog_index: usize,
    },
}

/// Why the console is ending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuitReason(pub String);

/// The confirm popup's line for what an inject would really touch, filled once resolved.
const RESOLVED_PREFIX: &str = "Touches now: ";
const RESOLVING: &str = "resolving…";
/// The toast of `X`, cleared once every fault is reverted.
const REVERTING: &str = "reverting";

pub struct App {
    pub state: AppState,
    timeline: Timeline,
    themes: Vec<String>,
    effects: Vec<Effect>,
    quit: Option<QuitReason>,
    dirty: bool,
    /// Timeline events shown so far (the panel keeps only the newest).
    recorded: u64,
    /// The scenario's checks and prompt as last written to the timeline.
    shown_progress: Option<(Vec<CheckProgress>, bool)>,
}

impl App {
    /// `themes` is the cycle for `t`; the current theme is `state.ui.theme`.
    pub fn new(
        config: Arc<Config>,
        session: Session,
        mut timeline: Timeline,
        theme: String,
        themes: Vec<String>,
    ) -> std::io::Result<Self> {
        let start = timeline.append(EventKind::SessionStart {
            session: session.name.clone(),
            config: config.file.display().to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            schema: crate::timeline::SCHEMA,
            thresholds: config.thresholds(),
        })?;
        // Which system this is, for the record (when the config says).
        let console = &config.console;
        let environment = if console.environment.is_some() || console.production {
            Some(timeline.append(EventKind::Environment {
                name: console.environment.clone(),
                production: console.production,
            })?)
        } else {
            None
        };
        let mut state = AppState::new(config, session, theme);
        state.push_timeline(start);
        if let Some(environment) = environment {
            state.push_timeline(environment);
        }
        Ok(App {
            state,
            timeline,
            themes,
            effects: Vec::new(),
            quit: None,
            dirty: true,
            recorded: 1,
            shown_progress: None,
        })
    }

    /// The session's `setup` line: who drives, what the panels read, the catalog and notices,
    /// so a viewer draws this session from its timeline alone.
    pub fn set_up(&mut self, driver: Driver, catalog: Vec<CatalogEntry>, notices: Vec<String>) {
        self.state.faults.catalog = catalog.clone();
        self.state.faults.notices = notices.clone();
        self.record(EventKind::Setup {
            driver,
            view: Box::new(self.state.config.view()),
            catalog,
            notices,
        });
    }

    pub fn timeline_path(&self) -> PathBuf {
        self.timeline.path().to_path_buf()
    }

    /// Something changed since the last draw.
    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    pub fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    pub fn quit_reason(&self) -> Option<&QuitReason> {
        self.quit.as_ref()
    }

    pub fn handle(&mut self, event: Event) {
        self.state.now_ms = self.timeline.offset_ms();
        match event {
            Event::Key(key) => self.on_key(key),
            Event::Resize => self.dirty = true,
            Event::Tick => self.on_tick(),
            Event::Source(SourceEvent::Samples { source: _, values }) => self.on_samples(values),
            Event::Source(SourceEvent::Status { source, status }) => self.on_status(source, status),
            Event::Signal(name) => self.request_quit(format!("signal {name}")),
            Event::ReportWritten(Ok(files)) => {
                let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
                self.toast(
                    ToastKind::Info,
                    format!("report saved: {}", names.join(", ")),
                );
                self.record(EventKind::ReportWritten { files: names });
            }
            Event::ReportWritten(Err(e)) => {
                self.toast(ToastKind::Error, format!("export failed: {e}"))
            }
            Event::Fault(report) => self.on_fault(report),
            Event::Others(others) => {
                if others != self.state.faults.others {
                    self.state.faults.others = others.clone();
                    self.record(EventKind::Foreign { faults: others });
                }
            }
            Event::Watchers(n) => {
                self.dirty |= n != self.state.watchers;
                self.state.watchers = n;
            }
            Event::Resolved {
                catalog_index,
                result,
            } => self.on_resolved(catalog_index, result),
        }
    }

    fn on_fault(&mut self, r: FaultReport) {
        let now = self.state.now_ms;
        if let Some(run) = &mut self.state.scenario {
            let actions = run.on_fault(&r.name, r.phase, &r.detail, now);
            self.apply_scenario(actions);
        }
        let lease_ms = (r.phase == FaultPhase::Applied)
            .then(|| r.lease.map(|l| l.as_millis() as u64))
            .flatten();
        self.state.faults.apply(
            FaultStep {
                id: &r.id,
                name: &r.name,
                target: &r.target,
                phase: r.phase,
                detail: &r.detail,
                lease_ms,
            },
            now,
        );
        let max = self.state.faults.active.len().saturating_sub(1);
        self.state.ui.selected_fault = self.state.ui.selected_fault.min(max);
        match r.phase {
            FaultPhase::Refused | FaultPhase::Failed => {
                self.toast(ToastKind::Error, format!("fault {}: {}", r.name, r.detail))
            }
            // "reverting N fault(s)…" is over once nothing is left to revert.
            FaultPhase::Reverted
                if self.state.faults.active.is_empty()
                    && self
                        .state
                        .ui
                        .toast
                        .as_ref()
                        .is_some_and(|t| t.text.starts_with(REVERTING)) =>
            {
                self.state.ui.toast = None;
            }
            _ => {}
        }
        self.record(EventKind::Fault {
            id: r.id,
            name: r.name,
            phase: r.phase,
            target: r.target,
            detail: r.detail,
            cause: r.cause,
            lease_ms,
        });
    }

    /// Appends to the timeline (the file first: it is the record) and to the panel.
    pub fn record(&mut self, kind: EventKind) {
        match self.timeline.append(kind) {
            Ok(written) => {
                if written.kind.summary().is_some() {
                    self.recorded += 1;
                }
                self.state.push_timeline(written);
            }
            Err(e) => {
                tracing::error!("timeline write failed: {e}");
                self.toast(ToastKind::Error, format!("timeline write failed: {e}"));
            }
        }
        self.dirty = true;
    }

    /// An informational toast from outside the app (start-up recovery).
    pub fn notify(&mut self, text: String) {
        self.toast(ToastKind::Info, text);
    }

    fn toast(&mut self, kind: ToastKind, text: String) {
        self.state.ui.toast = Some(Toast {
            text,
            kind,
            until_ms: self.state.now_ms + TOAST_MS,
        });
        self.dirty = true;
    }

    fn on_tick(&mut self) {
        let now = self.state.now_ms;
        if let Some(run) = &mut self.state.scenario {
            let actions = run.tick(now, &self.state.metrics);
            self.apply_scenario(actions);
        }
        self.flush_samples();
        if self
            .state
            .ui
            .toast
            .as_ref()
            .is_some_and(|t| t.until_ms <= self.state.now_ms)
        {
            self.state.ui.toast = None;
        }
        // Elapsed time and countdowns move every tick.
        self.dirty = true;
    }

    /// Nothing is buffered any more: every batch of samples is its own timeline line, written
    /// as it arrives (kept so callers that flush before reading the file stay correct).
    pub fn flush_samples(&mut self) {}

    /// A source's batch of samples: one timeline line (so a viewer rebuilds every series at the
    /// same instants), then the store and the thresholds.
    fn on_samples(&mut self, values: Vec<(String, f64)>) {
        let at = match self.timeline.append(EventKind::Samples {
            points: values.clone(),
        }) {
            Ok(written) => written.offset_ms,
            Err(e) => {
                tracing::error!("timeline write failed: {e}");
                self.state.now_ms
            }
        };
        for (key, value) in values {
            self.state.metrics.record(at, &key, value);
            self.check_threshold(&key, value);
        }
        self.dirty = true;
    }

    fn check_threshold(&mut self, key: &str, value: f64) {
        let Some(threshold) = self.state.thresholds.get(key) else {
            return;
        };
        let level = threshold.level(value);
        let previous = self
            .state
            .levels
            .insert(key.to_string(), level)
            .unwrap_or(Level::Ok);
        if level != previous {
            self.record(EventKind::Threshold {
                key: key.to_string(),
                level,
                value,
            });
        }
    }

    fn on_status(&mut self, source: SourceId, status: SourceStatus) {
        let now = self.state.now_ms;
        // Reasons come from drivers and may quote a DSN: mask before anything shows them.
        let status = match status {
            SourceStatus::Down { reason } => SourceStatus::Down {
                reason: self.timeline.redactor().text(&reason).into_owned(),
            },
            other => other,
        };
        if self.state.source(&source.0).map(|s| &s.status) == Some(&status) {
            return;
        }
        let previous = self
            .state
            .set_source_status(source.clone(), status.clone(), now);
        match status {
            // A new reason while already down updates the panel, not the timeline.
            SourceStatus::Down { reason }
                if !matches!(previous, Some(SourceStatus::Down { .. })) =>
            {
                self.record(EventKind::SourceDown {
                    source: source.to_string(),
                    reason,
                })
            }
            SourceStatus::Up => self.record(EventKind::SourceUp {
                source: source.to_string(),
            }),
            _ => {}
        }
        self.dirty = true;
    }

    fn on_key(&mut self, key: KeyEvent) {
        if key.kind != KeyEventKind::Press {
            return;
        }
        self.dirty = true;
        let context = self.state.key_context();
        let action = keymap::action_for(context, &key);
        // The environment's name, typed into a production confirm.
        if let Mode::Confirm(Confirm {
            typed: Some(word), ..
        }) = &mut self.state.ui.mode
            && action.is_none()
        {
            match key.code {
                KeyCode::Char(c) if word.entered.chars().count() < NOTE_MAX_CHARS => {
                    word.entered.push(c);
                    word.wrong = false;
                }
                KeyCode::Backspace => {
                    word.entered.pop();
                }
                _ => {}
            }
            return;
        }
        // Free text: any printable key that is not bound is typed.
        if let Mode::Note(text) = &mut self.state.ui.mode
            && action.is_none()
        {
            match key.code {
                KeyCode::Char(c) if text.chars().count() < NOTE_MAX_CHARS => text.push(c),
                KeyCode::Backspace => {
                    text.pop();
                }
                _ => {}
            }
            return;
        }
        if let Some(action) = action {
            self.on_action(action);
        }
    }

    fn on_action(&mut self, action: Action) {
        let mode = std::mem::replace(&mut self.state.ui.mode, Mode::Normal);
        match (mode, action) {
            (_, Action::Quit) => self.request_quit("key q".into()),
            (Mode::Normal, a) => self.normal_action(a),
            (Mode::Help, Action::Back) => {}
            // Wrong name: nothing happens, the popup stays and says so.
            (
                Mode::Confirm(Confirm {
                    title,
                    lines,
                    action,
                    typed: Some(mut word),
                }),
                Action::Confirm,
            ) if word.entered != word.expected => {
                word.wrong = true;
                self.state.ui.mode = Mode::Confirm(Confirm {
                    title,
                    lines,
                    action,
                    typed: Some(word),
                });
            }
            (Mode::Confirm(confirm), Action::Confirm) => self.confirmed(confirm.action),
            (
                Mode::Confirm(Confirm {
                    action: PendingAction::ResumeScenario,
                    ..
                }),
                Action::Cancel,
            ) => {
                self.abort_scenario("the operator aborted at a prompt");
            }
            (Mode::Confirm(_), Action::Cancel) => {
                self.toast(ToastKind::Info, "cancelled: nothing was changed".into())
            }
            (Mode::Note(text), Action::Confirm) => {
                let text = text.trim().to_string();
                if text.is_empty() {
                    self.toast(ToastKind::Info, "empty note not saved".into());
                } else {
                    self.record(EventKind::Note { text });
                    self.toast(ToastKind::Info, "note saved".into());
                }
            }
            (Mode::Note(_), Action::Cancel) => {}
            (Mode::Picker(mut picker), Action::SelectUp) => {
                picker.selected = picker.selected.saturating_sub(1);
                self.state.ui.mode = Mode::Picker(picker);
            }
            (Mode::Picker(mut picker), Action::SelectDown) => {
                picker.selected = (picker.selected + 1).min(picker.items.len().saturating_sub(1));
                self.state.ui.mode = Mode::Picker(picker);
            }
            (Mode::Picker(picker), Action::Confirm) => {
                if let Some(item) = picker.items.get(picker.selected) {
                    self.state.ui.mode = Mode::Confirm(Confirm {
                        title: format!("Run scenario {}?", item.label),
                        lines: vec![
                            item.detail.clone(),
                            "It injects the faults its steps name.".into(),
                        ],
                        action: PendingAction::RunScenario {
                            path: item.path.clone(),
                        },
                        typed: self.typed_word(),
                    });
                }
            }
            (Mode::Picker(_), Action::Cancel) => {}
            // Anything else leaves the mode as it was.
            (mode, _) => self.state.ui.mode = mode,
        }
    }

    fn normal_action(&mut self, action: Action) {
        let ui = &mut self.state.ui;
        match action {
            Action::Help => ui.mode = Mode::Help,
            Action::FocusNext => ui.focus = ui.focus.next(),
            Action::FocusPrev => ui.focus = ui.focus.prev(),
            Action::Zoom => ui.zoom = !ui.zoom,
            Action::Back => ui.zoom = false,
            Action::Note => ui.mode = Mode::Note(String::new()),
            Action::SelectUp => self.move_selection(-1),
            Action::SelectDown => self.move_selection(1),
            Action::NextTheme => self.next_theme(),
            Action::Mark => {
                self.state.ui.marks += 1;
                let label = format!("mark {}", self.state.ui.marks);
                self.toast(
                    ToastKind::Info,
                    format!(
                        "{label} at {}",
                        self.state.wall(self.state.now_ms).format("%H:%M:%S")
                    ),
                );
                self.record(EventKind::Mark { label });
            }
            Action::Export => {
                self.flush_samples();
                self.effects.push(Effect::ExportReport);
                self.toast(ToastKind::Info, "writing report…".into());
            }
            Action::Scenario => self.open_scenario_picker(),
            Action::TriggerFault(digit) => self.ask_to_inject(digit),
            Action::RevertAll => {
                if self
                    .state
                    .scenario
                    .as_ref()
                    .is_some_and(|r| !r.is_finished())
                {
                    self.abort_scenario("the operator pressed X");
                }
                if self.state.faults.active.is_empty() {
                    self.toast(ToastKind::Info, "no active faults".into());
                } else {
                    self.effects.push(Effect::RevertAll {
                        cause: Cause::PanicKey,
                    });
                    self.toast(
                        ToastKind::Info,
                        format!("{REVERTING} {} fault(s)…", self.state.faults.active.len()),
                    );
                }
            }
            Action::DryRun => self.open_dry_run(),
            Action::RevertEveryone => {
                let others = self.state.faults.others.len();
                let mine = self.state.faults.active.len();
                if others + mine == 0 {
                    self.toast(ToastKind::Info, "no active faults on any console".into());
                    return;
                }
                let owners: std::collections::BTreeSet<&str> = self
                    .state
                    .faults
                    .others
                    .iter()
                    .map(|o| o.owner.as_str())
                    .collect();
                self.state.ui.mode = Mode::Confirm(Confirm {
                    title: "Revert EVERYONE's faults?".into(),
                    lines: vec![
                        format!("{mine} of this console's and {others} of other consoles'."),
                        format!(
                            "Other owners: {}",
                            if owners.is_empty() {
                                "none".to_string()
                            } else {
                                owners.into_iter().collect::<Vec<_>>().join(", ")
                            }
                        ),
                        "Their consoles will show them reverted.".into(),
                    ],
                    action: PendingAction::RevertEveryone,
                    typed: None,
                });
            }
            Action::RevertSelected => {
                let selected = self
                    .state
                    .faults
                    .active
                    .get(self.state.ui.selected_fault)
                    .map(|a| a.id.clone());
                match selected {
                    Some(id) => self.effects.push(Effect::RevertFault {
                        id,
                        cause: Cause::Key("r".into()),
                    }),
                    None => self.toast(ToastKind::Info, "no active faults".into()),
                }
            }
            // Confirm and cancel belong to popups, playback to replays.
            Action::Quit
            | Action::Confirm
            | Action::Cancel
            | Action::PlayPause
            | Action::Faster
            | Action::Slower
            | Action::Seek(_)
            | Action::NextMoment
            | Action::PrevMoment => {}
        }
    }

    fn move_selection(&mut self, delta: isize) {
        use crate::state::Panel;
        let ui = &mut self.state.ui;
        match ui.focus {
            Panel::Faults => {
                let max = self.state.faults.active.len().saturating_sub(1);
                ui.selected_fault = ui.selected_fault.saturating_add_signed(delta).min(max);
            }
            Panel::Timeline => {
                // Up scrolls back in time.
                let max = self.state.timeline.len().saturating_sub(1);
                ui.timeline_scroll = ui.timeline_scroll.saturating_add_signed(-delta).min(max);
            }
            _ => {}
        }
    }

    fn next_theme(&mut self) {
        if self.themes.is_empty() {
            return;
        }
        let i = self
            .themes
            .iter()
            .position(|t| *t == self.state.ui.theme)
            .map_or(0, |i| i + 1);
        self.state.ui.theme = self.themes[i % self.themes.len()].clone();
        self.toast(ToastKind::Info, format!("theme: {}", self.state.ui.theme));
    }

    fn ask_to_inject(&mut self, digit: u8) {
        let found = self
            .state
            .faults
            .catalog
            .iter()
            .position(|f| f.key == Some(digit));
        let Some(index) = found else {
            self.toast(
                ToastKind::Info,
                format!(
                    "no fault on key {digit}: add a [[fault]] with key = \"{digit}\" to the config"
                ),
            );
            return;
        };
        if let Some(reason) = self.refusal("the inject") {
            self.refuse(reason);
            return;
        }
        let entry = &self.state.faults.catalog[index];
        let running = self
            .state
            .faults
            .active
            .iter()
            .any(|a| a.name == entry.name && a.phase != ActivePhase::Failed);
        if running {
            let name = entry.name.clone();
            self.toast(
                ToastKind::Info,
                format!("{name} is already active: select it and press r to revert"),
            );
            return;
        }
        let mut lines = Vec::new();
        let console = &self.state.config.console;
        if console.environment.is_some() || console.production {
            lines.push(format!("Environment: {}", console.environment_label()));
        }
        self.state.ui.mode = Mode::Confirm(Confirm {
            title: format!("Inject {}?", entry.name),
            lines: lines
                .into_iter()
                .chain([
                    format!("{} on {}: {}", entry.kind, entry.target, entry.params),
                    format!("Blast radius: {}", entry.blast_radius),
                    format!(
                        "Reverts by itself after {}.",
                        humantime::format_duration(std::time::Duration::from_millis(
                            entry.lease_ms
                        ))
                    ),
                ])
                .collect(),
            action: PendingAction::InjectFault {
                catalog_index: index,
            },
            typed: self.typed_word(),
        });
        // The popup names what will really be touched once it is resolved.
        if let Mode::Confirm(confirm) = &mut self.state.ui.mode {
            confirm.lines.push(format!("{RESOLVED_PREFIX}{RESOLVING}"));
        }
        self.effects.push(Effect::Resolve {
            catalog_index: index,
        });
    }

    /// `d`: what each catalog fault would touch right now, resolved in the background.
    fn open_dry_run(&mut self) {
        let catalog = &self.state.faults.catalog;
        if catalog.is_empty() {
            self.toast(ToastKind::Info, "no faults in the catalog".into());
            return;
        }
        let lines = catalog
            .iter()
            .map(|entry| format!("{}: {RESOLVING}", entry.name))
            .collect();
        self.state.ui.mode = Mode::Confirm(Confirm {
            title: "Dry run: what each fault would touch now (nothing is touched)".into(),
            lines,
            action: PendingAction::Dismiss,
            typed: None,
        });
        for catalog_index in 0..self.state.faults.catalog.len() {
            self.effects.push(Effect::Resolve { catalog_index });
        }
    }

    /// A resolved blast radius goes into the popup that asked for it, if it is still open.
    fn on_resolved(&mut self, catalog_index: usize, result: Result<Vec<String>, String>) {
        let Some(name) = self
            .state
            .faults
            .catalog
            .get(catalog_index)
            .map(|c| c.name.clone())
        else {
            return;
        };
        let said = match &result {
            Ok(lines) if lines.is_empty() => "nothing right now".to_string(),
            Ok(lines) => lines.join("; "),
            Err(e) => format!("{} {e}", crate::ui::widgets::badge::CRIT),
        };
        let Mode::Confirm(confirm) = &mut self.state.ui.mode else {
            return;
        };
        match confirm.action {
            PendingAction::InjectFault { catalog_index: i } if i == catalog_index => {
                if let Some(line) = confirm
                    .lines
                    .iter_mut()
                    .find(|l| l.starts_with(RESOLVED_PREFIX))
                {
                    *line = format!("{RESOLVED_PREFIX}{said}");
                }
            }
            PendingAction::Dismiss => {
                if let Some(line) = confirm.lines.get_mut(catalog_index) {
                    *line = format!("{name}: {said}");
                }
            }
            _ => return,
        }
        self.dirty = true;
    }

    /// On a production console the operator types the environment's name to confirm.
    fn typed_word(&self) -> Option<crate::state::TypedWord> {
        let console = &self.state.config.console;
        console.production.then(|| crate::state::TypedWord {
            expected: console.confirm_word(),
            ..Default::default()
        })
    }

    /// Why a keystroke may not start anything that touches the system right now, if so.
    fn refusal(&self, what: &str) -> Option<String> {
        let console = &self.state.config.console;
        if console.production && !self.state.allow_production {
            return Some(format!(
                "refused {what}: {} is marked production; start gameday with --allow-production to drill on it",
                console.environment_label()
            ));
        }
        if console.require_healthy {
            let down: Vec<String> = self
                .state
                .sources
                .iter()
                .filter(|(_, s)| matches!(s.status, crate::sources::SourceStatus::Down { .. }))
                .map(|(id, _)| id.to_string())
                .collect();
            if !down.is_empty() {
                return Some(format!(
                    "refused {what}: require_healthy is set and {} is down; the steady state comes first",
                    down.join(", ")
                ));
            }
        }
        None
    }

    /// Says a refusal on screen and on the timeline.
    fn refuse(&mut self, reason: String) {
        self.toast(ToastKind::Error, reason.clone());
        self.record(EventKind::Info { text: reason });
    }

    fn confirmed(&mut self, action: PendingAction) {
        match action {
            PendingAction::InjectFault { catalog_index } => {
                let key = self
                    .state
                    .faults
                    .catalog
                    .get(catalog_index)
                    .and_then(|c| c.key)
                    .map_or("?".into(), |k| k.to_string());
                self.effects.push(Effect::InjectFault {
                    catalog_index,
                    cause: Cause::Key(key),
                    lease: None,
                });
            }
            PendingAction::RunScenario { path } => self.start_scenario(&path),
            PendingAction::Dismiss => {}
            PendingAction::RevertEveryone => {
                self.effects.push(Effect::RevertEveryone {
                    cause: Cause::Everyone,
                });
                self.toast(ToastKind::Info, "reverting every console's faults…".into());
            }
            PendingAction::ResumeScenario => {
                let now = self.state.now_ms;
                if let Some(run) = &mut self.state.scenario {
                    run.resume(now);
                }
                self.record_scenario_progress();
            }
        }
    }

    /// Loads and starts a scenario. A bad file is an error toast; nothing starts.
    pub fn start_scenario(&mut self, path: &std::path::Path) {
        if self
            .state
            .scenario
            .as_ref()
            .is_some_and(|r| !r.is_finished())
        {
            self.toast(
                ToastKind::Error,
                "a scenario is already running (X aborts it)".into(),
            );
            return;
        }
        let scenario = match Scenario::load(path, &self.state.config) {
            Ok(s) => s,
            Err(e) => {
                self.toast(ToastKind::Error, e.to_string());
                return;
            }
        };
        let (run, actions) = ScenarioRun::start(scenario, self.state.now_ms);
        self.state.scenario = Some(run);
        self.apply_scenario(actions);
    }

    /// Carries out what the scenario asks for.
    fn apply_scenario(&mut self, actions: Vec<ScenarioAction>) {
        let title = self
            .state
            .scenario
            .as_ref()
            .map(|r| r.scenario.title.clone())
            .unwrap_or_default();
        for action in actions {
            match action {
                ScenarioAction::Record(kind) => self.record(kind),
                ScenarioAction::Inject {
                    catalog_index,
                    lease,
                } => self.effects.push(Effect::InjectFault {
                    catalog_index,
                    cause: Cause::Scenario(title.clone()),
                    lease: Some(lease),
                }),
                ScenarioAction::RevertAll { reason } => self.effects.push(Effect::RevertAll {
                    cause: Cause::Scenario(reason),
                }),
                ScenarioAction::Prompt { text, wait: false } => self.toast(ToastKind::Info, text),
                ScenarioAction::Prompt { text, wait: true } => {
                    self.state.ui.mode = Mode::Confirm(Confirm {
                        title: format!("{title}: continue?"),
                        lines: vec![text, "y/enter continues the steps; n/esc aborts the scenario (reverts everything).".into()],
                        action: PendingAction::ResumeScenario,
                        typed: None,
                    });
                }
            }
        }
        self.record_scenario_progress();
    }

    /// What the screen shows of the scenario's checks goes to the timeline when it changes, so
    /// a watcher shows the same live pass/fail and values.
    fn record_scenario_progress(&mut self) {
        let Some(run) = &self.state.scenario else {
            return;
        };
        let view = run.view();
        let checks: Vec<CheckProgress> = view
            .checks
            .iter()
            .map(|c| CheckProgress {
                passed: c.passed,
                value: c.value,
            })
            .collect();
        let shown = (checks, view.waiting);
        if self.shown_progress.as_ref() != Some(&shown) {
            self.shown_progress = Some(shown.clone());
            self.record(EventKind::ScenarioProgress {
                checks: shown.0,
                waiting: shown.1,
            });
        }
    }

    /// The scenario's verdict, once it has one.
    pub fn scenario_verdict(&self) -> Option<(Verdict, String)> {
        self.state.scenario.as_ref().and_then(|r| r.verdict.clone())
    }

    /// Ends a running scenario (quit, signal, X): it reverts everything and records the verdict.
    pub fn abort_scenario(&mut self, reason: &str) {
        let now = self.state.now_ms;
        if let Some(run) = &mut self.state.scenario {
            let actions = run.abort(reason, now);
            self.apply_scenario(actions);
        }
    }

    fn open_scenario_picker(&mut self) {
        if let Some(reason) = self.refusal("the scenario") {
            self.refuse(reason);
            return;
        }
        let dir = self.state.config.console.scenarios.clone();
        let mut items: Vec<PickerItem> = std::fs::read_dir(&dir)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                    .map(|path| PickerItem {
                        label: path
                            .file_stem()
                            .map(|s| s.to_string_lossy().into_owned())
                            .unwrap_or_default(),
                        detail: path.display().to_string(),
                        path,
                    })
                    .collect()
            })
            .unwrap_or_default();
        items.sort_by(|a, b| a.label.cmp(&b.label));
        if items.is_empty() {
            self.toast(
                ToastKind::Info,
                format!("no scenarios in {}", dir.display()),
            );
            return;
        }
        self.state.ui.mode = Mode::Picker(Picker {
            title: "Run a scenario".into(),
            items,
            selected: 0,
        });
    }

    /// Starts quitting; the console loop sees it, reverts faults and writes the report.
    pub fn request_quit(&mut self, reason: String) {
        if self.quit.is_none() {
            self.abort_scenario(&format!("interrupted: {reason}"));
            self.quit = Some(QuitReason(reason));
        }
        self.dirty = true;
    }

    /// The last lines of a session: samples flushed, end recorded.
    pub fn finish(&mut self) {
        self.state.now_ms = self.timeline.offset_ms();
        self.flush_samples();
        let reason = self
            .quit
            .as_ref()
            .map_or_else(|| "ended".to_string(), |q| q.0.clone());
        self.record(EventKind::SessionEnd { reason });
    }

    /// Recent timeline events (for tests and the report toast).
    pub fn recent(&self) -> impl Iterator<Item = &TimelineEvent> {
        self.state.timeline.iter()
    }

    /// Timeline events (with a summary) recorded since `seen` of them were taken; returns the
    /// new count. The headless runner prints them as progress lines.
    pub fn events_since(&self, seen: u64) -> (Vec<&TimelineEvent>, u64) {
        let new = (self.recorded.saturating_sub(seen) as usize).min(self.state.timeline.len());
        let skip = self.state.timeline.len() - new;
        (
            self.state.timeline.iter().skip(skip).collect(),
            self.recorded,
        )
    }
}

#[cfg(test)]
mod tests;
