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
use crate::timeline::TimelineEvent;

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
    /// The scenario running (or finished) in this session.
    pub scenario: Option<crate::scenario::run::ScenarioRun>,
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

#[derive(Debug, Clone, PartialEq)]
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
            ui: UiState {
                focus: Panel::Nats,
                zoom: false,
                mode: Mode::Normal,
                theme,
                toast: None,
                selected_fault: 0,
                timeline_scroll: 0,
                marks: 0,
            },
            allow_production: false,
            config,
        }
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
