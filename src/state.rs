//! Everything the console shows, owned by the app and read by `ui::render`. No I/O here and no
//! locks: sources and fault executions change it only through events the app applies.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::config::Config;
use crate::keymap::KeyContext;
use crate::metrics::{Level, MetricStore, Threshold};
use crate::sources::{SourceId, SourceStatus};
pub use crate::timeline::CatalogEntry;
use crate::timeline::{CheckGroup, Driver, FaultPhase, Phase, TimelineEvent, Verdict};

/// How many timeline events the panel keeps in memory (the file keeps all).
pub const RECENT_EVENTS: usize = 500;

pub struct AppState {
    pub session: Session,
    /// Milliseconds since the session started, as of the last event.
    pub now_ms: u64,
    pub config: Arc<Config>,
    pub metrics: MetricStore,
    pub thresholds: BTreeMap<String, Threshold>,
    /// Current level of every key that has a threshold.
    pub levels: BTreeMap<String, Level>,
    pub sources: BTreeMap<SourceId, SourceState>,
    /// Newest last; samples are not kept here.
    pub timeline: VecDeque<TimelineEvent>,
    pub faults: FaultBoard,
    /// The scenario running (or finished) in this session (the console drives it).
    pub scenario: Option<crate::scenario::run::ScenarioRun>,
    /// A scenario as a recorded session tells it (what watchers and replays draw).
    pub followed_scenario: Option<ScenarioView>,
    /// Local viewers following this session now (`gameday watch` announces itself).
    pub watchers: usize,
    pub ui: UiState,
    /// Started with `--allow-production`: a production config may be drilled on.
    pub allow_production: bool,
}

#[derive(Debug, Clone)]
pub struct Session {
    pub name: String,
    pub dir: PathBuf,
    pub started: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SourceState {
    pub status: SourceStatus,
    /// When the current status began (offset ms and wall clock).
    pub since_ms: u64,
    pub since: DateTime<Utc>,
}

/// The fault catalog and what is active now.
#[derive(Debug, Clone, Default)]
pub struct FaultBoard {
    pub catalog: Vec<CatalogEntry>,
    pub active: Vec<ActiveFault>,
    /// Every fault span of the session, for shading charts (open spans have `to_ms = None`).
    pub spans: Vec<FaultSpan>,
    /// Why faults are unavailable, if they are (e.g. "Docker engine not reachable: …").
    pub notices: Vec<String>,
    /// Faults other consoles applied (from the shared ledger), shown with their owner.
    pub others: Vec<crate::faults::engine::ForeignFault>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActivePhase {
    Injecting,
    Active,
    Reverting,
    /// Injection or revert failed; the reason is in `ActiveFault::error`.
    Failed,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ActiveFault {
    pub id: String,
    pub name: String,
    pub target: String,
    pub params: String,
    pub phase: ActivePhase,
    pub started_ms: u64,
    pub expires_ms: u64,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FaultSpan {
    pub name: String,
    pub from_ms: u64,
    pub to_ms: Option<u64>,
}

/// A scenario as the screen shows it: from the live run on the console, from the recorded
/// events on a watcher or replay.
#[derive(Debug, Clone, PartialEq)]
pub struct ScenarioView {
    pub title: String,
    pub phase: Phase,
    /// When the current phase is due to end, if it has a deadline.
    pub until_ms: Option<u64>,
    /// Steps stand still until the operator answers a prompt.
    pub waiting: bool,
    pub checks: Vec<CheckView>,
    pub verdict: Option<(Verdict, String)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CheckView {
    pub group: CheckGroup,
    pub name: String,
    /// "p95 of probe.api.latency_ms < 500".
    pub expected: String,
    /// `None` until evaluated.
    pub passed: Option<bool>,
    pub value: Option<f64>,
}

/// Which program draws: the console that drives, or a viewer that only follows.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Role {
    #[default]
    Console,
    Watch(Watching),
    Replay(Replaying),
}

/// A live session followed read-only (`gameday watch`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Watching {
    /// Where the events come from: a file, or "stdin".
    pub from: String,
    /// Who drives the session (from its `setup` line).
    pub driver: Option<Driver>,
    /// The session ended (its `session_end` line): why. The last frame stays.
    pub ended: Option<String>,
    /// No session yet: waiting for one to start.
    pub waiting: bool,
    /// Lines that were not timeline events (counted, skipped).
    pub malformed: u64,
}

/// A finished (or crashed) session played back (`gameday replay`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Replaying {
    pub driver: Option<Driver>,
    /// The session's length (its last event's offset).
    pub length_ms: u64,
    pub playing: bool,
    /// 1 to 60 (× real time).
    pub speed: u32,
    /// Faults, marks, phase changes and threshold crossings along the session, for the
    /// position bar and `[` / `]`.
    pub moments: Vec<Moment>,
    /// Every fault's span, for the position bar.
    pub spans: Vec<FaultSpan>,
    pub malformed: u64,
}

/// Something worth jumping to in a replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Moment {
    pub at_ms: u64,
    pub kind: MomentKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MomentKind {
    Fault,
    Mark,
    Phase,
    Threshold,
}

/// One step of a fault's life, as the console reports it and the timeline records it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaultStep<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub target: &'a str,
    pub phase: FaultPhase,
    pub detail: &'a str,
    pub lease_ms: Option<u64>,
}

impl<'a> FaultStep<'a> {
    /// The step a recorded fault line tells; `None` for any other line.
    pub fn of(kind: &'a crate::timeline::EventKind) -> Option<FaultStep<'a>> {
        let crate::timeline::EventKind::Fault {
            id,
            name,
            phase,
            target,
            detail,
            lease_ms,
            ..
        } = kind
        else {
            return None;
        };
        Some(FaultStep {
            id,
            name,
            target,
            phase: *phase,
            detail,
            lease_ms: *lease_ms,
        })
    }
}

impl FaultBoard {
    /// The board after `step` at `at_ms`: the active list and the chart spans. The console
    /// applies its engine's reports with this, viewers the recorded fault lines.
    pub fn apply(&mut self, step: FaultStep<'_>, at_ms: u64) {
        let index = self.active.iter().position(|a| a.id == step.id);
        match step.phase {
            FaultPhase::Requested => {
                let params = self
                    .catalog
                    .iter()
                    .find(|c| c.name == step.name)
                    .map(|c| c.params.clone())
                    .unwrap_or_default();
                self.active.push(ActiveFault {
                    id: step.id.to_string(),
                    name: step.name.to_string(),
                    target: step.target.to_string(),
                    params,
                    phase: ActivePhase::Injecting,
                    started_ms: at_ms,
                    expires_ms: at_ms,
                    error: None,
                });
            }
            FaultPhase::Applied => {
                if let Some(a) = index.map(|i| &mut self.active[i]) {
                    a.phase = ActivePhase::Active;
                    a.started_ms = at_ms;
                    a.expires_ms = at_ms + step.lease_ms.unwrap_or(0);
                    if !step.detail.is_empty() {
                        a.params = step.detail.to_string();
                    }
                }
                self.spans.push(FaultSpan {
                    name: step.name.to_string(),
                    from_ms: at_ms,
                    to_ms: None,
                });
            }
            FaultPhase::RevertRequested => {
                if let Some(a) = index.map(|i| &mut self.active[i]) {
                    a.phase = ActivePhase::Reverting;
                }
            }
            FaultPhase::Reverted => {
                if let Some(i) = index {
                    self.active.remove(i);
                }
                if let Some(span) = self
                    .spans
                    .iter_mut()
                    .rev()
                    .find(|s| s.name == step.name && s.to_ms.is_none())
                {
                    span.to_ms = Some(at_ms);
                }
            }
            FaultPhase::Refused => {
                if let Some(i) = index {
                    self.active.remove(i);
                }
            }
            FaultPhase::Failed => {
                if let Some(a) = index.map(|i| &mut self.active[i]) {
                    a.phase = ActivePhase::Failed;
                    a.error = Some(step.detail.to_string());
                }
            }
        }
    }
}

/// The panels, in focus order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Panel {
    Nats,
    Postgres,
    Webhooks,
    Probes,
    Faults,
    Timeline,
}

impl Panel {
    pub const ALL: [Panel; 6] = [
        Panel::Nats,
        Panel::Postgres,
        Panel::Webhooks,
        Panel::Probes,
        Panel::Faults,
        Panel::Timeline,
    ];

    pub fn next(self) -> Panel {
        let i = Self::ALL.iter().position(|p| *p == self).unwrap_or(0);
        Self::ALL[(i + 1) % Self::ALL.len()]
    }

    pub fn prev(self) -> Panel {
        let i = Self::ALL.iter().position(|p| *p == self).unwrap_or(0);
        Self::ALL[(i + Self::ALL.len() - 1) % Self::ALL.len()]
    }

    pub fn title(self) -> &'static str {
        match self {
            Panel::Nats => "NATS JetStream",
            Panel::Postgres => "PostgreSQL",
            Panel::Webhooks => "Webhooks",
            Panel::Probes => "Probes",
            Panel::Faults => "Faults",
            Panel::Timeline => "Timeline",
        }
    }
}

/// What has the keyboard.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    Normal,
    Help,
    /// A destructive action waits for y/n. The popup shows `title` and `lines`.
    Confirm(Confirm),
    /// Typing a note.
    Note(String),
    /// Picking a scenario from a list.
    Picker(Picker),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Confirm {
    pub title: String,
    pub lines: Vec<String>,
    pub action: PendingAction,
    /// On a production console: the word that must be typed before it goes ahead.
    pub typed: Option<TypedWord>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct TypedWord {
    pub expected: String,
    pub entered: String,
    /// The last Enter came with another word: nothing was done.
    pub wrong: bool,
}

/// What a confirmed popup does.
#[derive(Debug, Clone, PartialEq)]
pub enum PendingAction {
    InjectFault {
        catalog_index: usize,
    },
    RunScenario {
        path: PathBuf,
    },
    /// A scenario's waiting prompt: continue its steps.
    ResumeScenario,
    /// Revert this console's faults and every other console's.
    RevertEveryone,
    /// Nothing to do: the popup only shows something (a dry run).
    Dismiss,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Picker {
    pub title: String,
    pub items: Vec<PickerItem>,
    pub selected: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PickerItem {
    pub label: String,
    pub detail: String,
    pub path: PathBuf,
}

impl Mode {
    pub fn key_context(&self) -> KeyContext {
        match self {
            Mode::Normal => KeyContext::Normal,
            Mode::Help => KeyContext::Help,
            Mode::Confirm(Confirm { typed: Some(_), .. }) => KeyContext::TypedConfirm,
            Mode::Confirm(_) => KeyContext::Confirm,
            Mode::Note(_) => KeyContext::TextInput,
            Mode::Picker(_) => KeyContext::Picker,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToastKind {
    Info,
    Error,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Toast {
    pub text: String,
    pub kind: ToastKind,
    /// Shown until this offset.
    pub until_ms: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UiState {
    pub focus: Panel,
    pub zoom: bool,
    pub mode: Mode,
    pub theme: String,
    pub toast: Option<Toast>,
    /// Selected row in the Faults panel's active list.
    pub selected_fault: usize,
    /// Rows scrolled back in the Timeline panel (0 = follow the newest).
    pub timeline_scroll: usize,
    /// Marks made so far, for default labels.
    pub marks: usize,
    /// Console, watcher or replay.
    pub role: Role,
}

impl AppState {
    pub fn new(config: Arc<Config>, session: Session, theme: String) -> Self {
        let capacity = config.console.series_capacity();
        let thresholds = config.thresholds();
        AppState {
            session,
            now_ms: 0,
            metrics: MetricStore::with_limits(
                capacity,
                config.console.history.get().as_millis() as u64,
                crate::metrics::DEFAULT_MAX_KEYS,
            ),
            thresholds,
            levels: BTreeMap::new(),
            sources: BTreeMap::new(),
            timeline: VecDeque::new(),
            faults: FaultBoard::default(),
            scenario: None,
            followed_scenario: None,
            watchers: 0,
            ui: UiState {
                focus: Panel::Nats,
                zoom: false,
                mode: Mode::Normal,
                theme,
                toast: None,
                selected_fault: 0,
                timeline_scroll: 0,
                marks: 0,
                role: Role::Console,
            },
            allow_production: false,
            config,
        }
    }

    /// The scenario to draw: the console's live run, or the one a recording tells.
    pub fn scenario_view(&self) -> Option<ScenarioView> {
        match &self.scenario {
            Some(run) => Some(run.view()),
            None => self.followed_scenario.clone(),
        }
    }

    /// The main screen's key table for this role.
    pub fn main_key_context(&self) -> KeyContext {
        match &self.ui.role {
            Role::Console => KeyContext::Normal,
            Role::Watch(_) => KeyContext::Watch,
            Role::Replay(_) => KeyContext::Replay,
        }
    }

    /// Which key table applies now: popups first, then the role's main table.
    pub fn key_context(&self) -> KeyContext {
        match &self.ui.mode {
            Mode::Normal => self.main_key_context(),
            mode => mode.key_context(),
        }
    }

    /// A source's new status at `at_ms`: its series get a gap when it goes down, and the time
    /// it began is kept while it stays down. Returns the previous status.
    pub fn set_source_status(
        &mut self,
        source: SourceId,
        status: SourceStatus,
        at_ms: u64,
    ) -> Option<SourceStatus> {
        let previous = self.sources.get(&source).map(|s| s.status.clone());
        let stays_down = matches!(
            (&previous, &status),
            (Some(SourceStatus::Down { .. }), SourceStatus::Down { .. })
        );
        if matches!(status, SourceStatus::Down { .. }) && !stays_down {
            self.metrics.gap(at_ms, &source.key_prefix());
        }
        let (since_ms, since) = match self.sources.get(&source) {
            Some(s) if stays_down => (s.since_ms, s.since),
            _ => (at_ms, self.wall(at_ms)),
        };
        self.sources.insert(
            source,
            SourceState {
                status,
                since_ms,
                since,
            },
        );
        previous
    }

    pub fn source(&self, id: &str) -> Option<&SourceState> {
        self.sources.get(&SourceId(id.to_string()))
    }

    /// The threshold level of a key now (`Ok` when it has none).
    pub fn level(&self, key: &str) -> Level {
        self.levels.get(key).copied().unwrap_or_default()
    }

    /// The wall clock of an offset.
    pub fn wall(&self, offset_ms: u64) -> DateTime<Utc> {
        self.session.started + chrono::Duration::milliseconds(offset_ms as i64)
    }

    pub fn push_timeline(&mut self, event: TimelineEvent) {
        if event.kind.summary().is_none() {
            return;
        }
        if self.timeline.len() >= RECENT_EVENTS {
            self.timeline.pop_front();
        }
        self.timeline.push_back(event);
    }
}
