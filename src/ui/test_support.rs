//! Fixture state for UI tests (and the app's whole-app tests): a ten-minute drill with a NATS
//! outage behind it, a consumer backlog over its crit threshold, a pool near its limit while a
//! fault holds connections, a slow webhook, a webhook and a probe that are down, a failed fault,
//! and a timeline of what happened. Secrets in the config let tests check none reaches the
//! screen.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::layout::{Position, Rect};

use crate::config::Config;
use crate::metrics::Level;
use crate::sources::{SourceId, SourceStatus};
use crate::state::{
    ActiveFault, ActivePhase, AppState, CatalogEntry, Confirm, FaultSpan, Mode, Panel,
    PendingAction, Picker, PickerItem, Session, SourceState, Toast, ToastKind,
};
use crate::theme::Theme;
use crate::timeline::{Cause, EventKind, FaultPhase, TimelineEvent};

/// The fixture's "now": ten minutes into the session.
pub const NOW_MS: u64 = 600_000;
/// The two reference terminal sizes.
pub const SIZES: [(u16, u16); 2] = [(80, 24), (160, 48)];
/// A large screen, where panels have room to spare.
pub const LARGE: (u16, u16) = (300, 100);
/// Secrets the fixture config holds; none may ever be on screen.
pub const SECRETS: [&str; 4] = [
    "hunter2-pg-secret",
    "s3cr3t-nats-token",
    "AAH-bot-secret",
    "probe-secret-123",
];

const CONFIG: &str = r#"
[console]
sample_interval = "1s"
history = "1h"

[nats]
url = "nats://127.0.0.1:4222"
token = "s3cr3t-nats-token"

[[nats.watch]]
stream = "TASKS"
consumer = "workers"
warn = 100
crit = 1000

[[nats.watch]]
stream = "TASKS"
consumer = "notifier"
warn = 100
crit = 1000

[postgres]
url = "postgres://app:hunter2-pg-secret@127.0.0.1:5432/tasks"

[[postgres.pool]]
application_name = "task-tracker"
size = 10
max_overflow = 20

[[postgres.gauge]]
name = "retry_queue"
sql = "select count(*) from retry_queue"
warn = 10
crit = 100

[[webhook]]
name = "telegram"
listen = "127.0.0.1:18080"
upstream = "http://127.0.0.1:9000/bot123456:AAH-bot-secret"
timeout = "30s"
warn_ms = 1000
crit_ms = 10000

[[webhook]]
name = "slack"
listen = "127.0.0.1:18081"
upstream = "http://127.0.0.1:9100"

[[probe]]
name = "api"
method = "POST"
url = "http://127.0.0.1:8000/tasks"
expect = [202]
warn_ms = 200
crit_ms = 1000

[[probe]]
name = "health"
url = "http://127.0.0.1:8000/health?token=probe-secret-123"
"#;

pub fn config() -> Arc<Config> {
    Arc::new(Config::from_text(Path::new("gameday.toml"), CONFIG).expect("fixture config"))
}

/// The fixture config with `extra` TOML appended.
pub fn config_with(extra: &str) -> Arc<Config> {
    let text = format!("{CONFIG}\n{extra}");
    Arc::new(Config::from_text(Path::new("gameday.toml"), &text).expect("fixture config"))
}

/// A config with nothing to watch.
pub fn empty_config() -> Arc<Config> {
    Arc::new(Config::from_text(Path::new("gameday.toml"), "").expect("empty config"))
}

pub fn started() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 28, 10, 0, 0).unwrap()
}

fn session() -> Session {
    Session {
        name: "drill-2026-11-28".into(),
        dir: PathBuf::from(".artifacts/sessions/drill-2026-11-28"),
        started: started(),
    }
}

/// The built-in dark theme, whatever `NO_COLOR` says.
pub fn theme() -> Theme {
    Theme::built_in("dark").unwrap()
}

/// Nothing configured, nothing seen.
pub fn empty_state() -> AppState {
    let mut state = AppState::new(empty_config(), session(), "dark".into());
    state.now_ms = 5_000;
    state
}

/// Everything configured, no source has answered yet.
pub fn connecting_state() -> AppState {
    let mut state = AppState::new(config(), session(), "dark".into());
    state.now_ms = 2_000;
    state
}

/// The ten-minute drill.
pub fn state() -> AppState {
    let mut state = AppState::new(config(), session(), "dark".into());
    state.now_ms = NOW_MS;
    record_history(&mut state);
    set_source(&mut state, SourceId::NATS, SourceStatus::Up, 300_500);
    set_source(&mut state, SourceId::POSTGRES, SourceStatus::Up, 2_000);
    set_source(&mut state, SourceId::HOST, SourceStatus::Up, 1_000);
    set_source(&mut state, "webhook.telegram", SourceStatus::Up, 1_000);
    set_source(
        &mut state,
        "webhook.slack",
        SourceStatus::down("upstream 127.0.0.1:9100: connection refused"),
        492_000,
    );
    set_source(&mut state, "probe.api", SourceStatus::Up, 1_000);
    set_source(
        &mut state,
        "probe.health",
        SourceStatus::down("connection refused (http://127.0.0.1:8000/health?token=***)"),
        520_000,
    );
    state.faults.catalog = catalog();
    state.faults.active = vec![
        ActiveFault {
            id: "f-2".into(),
            name: "pg-hold".into(),
            target: "postgres".into(),
            params: "hold 50 connections".into(),
            phase: ActivePhase::Active,
            started_ms: 540_000,
            expires_ms: 840_000,
            error: None,
        },
        ActiveFault {
            id: "f-3".into(),
            name: "webhook-slow".into(),
            target: "telegram".into(),
            params: "35s delay".into(),
            phase: ActivePhase::Failed,
            started_ms: 590_000,
            expires_ms: 710_000,
            error: Some("proxy daemon not reachable: connection refused".into()),
        },
    ];
    state.faults.spans = vec![
        FaultSpan {
            name: "nats-stop".into(),
            from_ms: 240_000,
            to_ms: Some(300_000),
        },
        FaultSpan {
            name: "pg-hold".into(),
            from_ms: 540_000,
            to_ms: None,
        },
    ];
    for (offset_ms, kind) in timeline_events() {
        let ts = state.wall(offset_ms);
        state.push_timeline(TimelineEvent {
            ts,
            offset_ms,
            kind,
        });
    }
    refresh_levels(&mut state);
    state
}

pub fn catalog() -> Vec<CatalogEntry> {
    let entry = |key, name: &str, kind: &str, target: &str, params: &str, lease_ms| CatalogEntry {
        key,
        name: name.into(),
        kind: kind.into(),
        target: target.into(),
        params: params.into(),
        blast_radius: format!("everything that uses {target}"),
        lease_ms,
    };
    vec![
        entry(
            Some(1),
            "nats-stop",
            "container stop",
            "nats",
            "restart on revert",
            300_000,
        ),
        entry(
            Some(2),
            "pg-hold",
            "postgres hold",
            "postgres",
            "hold 50 connections",
            300_000,
        ),
        entry(
            Some(3),
            "webhook-slow",
            "http delay",
            "telegram",
            "35s delay",
            120_000,
        ),
        entry(
            None,
            "api-latency",
            "tcp latency",
            "api",
            "200ms ±20ms downstream",
            600_000,
        ),
    ]
}

/// The confirm popup the app opens for fault key 3 (webhook-slow, whose last inject failed),
/// while its blast radius is being resolved. Snapshots of the popup come from a [`LiveApp`].
pub fn confirm_mode() -> Mode {
    Mode::Confirm(Confirm {
        title: "Inject webhook-slow?".into(),
        lines: vec![
            "http delay on telegram: 35s delay".into(),
            "Blast radius: everything that uses telegram".into(),
            "Reverts by itself after 2m.".into(),
            "Touches now: resolving…".into(),
        ],
        action: PendingAction::InjectFault { catalog_index: 2 },
        typed: None,
    })
}

/// A note half typed.
pub fn note_mode() -> Mode {
    Mode::Note("API still answers 202; retry queue at 14".into())
}

/// The scenario picker with the second entry selected.
pub fn picker_mode() -> Mode {
    let item = |label: &str, detail: &str| PickerItem {
        label: label.into(),
        detail: detail.into(),
        path: PathBuf::from(format!("scenarios/{label}.toml")),
    };
    Mode::Picker(Picker {
        title: "Run a scenario".into(),
        items: vec![
            item(
                "nats-broker-failure",
                "stop NATS for 5m while tasks are submitted",
            ),
            item(
                "pg-pool-exhaustion",
                "hold 50 connections against a pool of 10 + 20",
            ),
            item(
                "webhook-timeout",
                "delay webhook responses past the 30s client timeout",
            ),
        ],
        selected: 1,
    })
}

/// A toast shown until a minute after the fixture's now.
pub fn toast(kind: ToastKind, text: &str) -> Toast {
    Toast {
        text: text.into(),
        kind,
        until_ms: NOW_MS + 60_000,
    }
}

/// Sets a source's status as of `since_ms`.
pub fn set_source(state: &mut AppState, id: &str, status: SourceStatus, since_ms: u64) {
    let since = state.wall(since_ms);
    state.sources.insert(
        SourceId(id.to_string()),
        SourceState {
            status,
            since_ms,
            since,
        },
    );
}

/// Levels as the app keeps them: each thresholded key at its newest known value.
pub fn refresh_levels(state: &mut AppState) {
    let levels: Vec<(String, Level)> = state
        .thresholds
        .iter()
        .filter_map(|(key, t)| {
            let v = state.metrics.get(key)?.last_known()?;
            Some((key.clone(), t.level(v)))
        })
        .collect();
    state.levels.extend(levels);
}

/// One sample a second for ten minutes; NATS was down from 4:00 to 5:00.
fn record_history(state: &mut AppState) {
    let m = &mut state.metrics;
    for s in 0..=NOW_MS / 1000 {
        let at = s * 1000;
        let wave = ((s as f64) / 7.0).sin();
        let nats_down = (240..300).contains(&s);
        m.record(at, "nats.up", if nats_down { 0.0 } else { 1.0 });
        if s == 240 {
            m.gap(at, "nats.");
        }
        if !nats_down {
            let backlog = if s < 240 {
                20.0 + (s % 7) as f64
            } else {
                10.0 + (s - 300) as f64 * 4.8
            };
            m.record(at, "nats.rtt_ms", 1.3 + 0.2 * wave);
            m.record(at, "nats.TASKS.workers.pending", backlog);
            m.record(at, "nats.TASKS.workers.ack_pending", 12.0);
            m.record(at, "nats.TASKS.workers.redelivered", 3.0);
            m.record(at, "nats.TASKS.workers.waiting", 1.0);
            m.record(at, "nats.TASKS.notifier.pending", 12.0 + (s % 5) as f64);
            m.record(at, "nats.TASKS.notifier.ack_pending", 2.0);
            m.record(at, "nats.TASKS.notifier.redelivered", 0.0);
            m.record(at, "nats.TASKS.notifier.waiting", 1.0);
            m.record(at, "nats.TASKS.messages", 50_000.0 + s as f64 * 3.85);
        }

        let held = if s >= 540 { 20.0 } else { 0.0 };
        let app = 8.0 + held;
        let used = 26.0 + held / 2.0 + (s % 3) as f64;
        m.record(at, "pg.up", 1.0);
        m.record(at, "pg.connections.used", used);
        m.record(at, "pg.connections.max", 97.0);
        m.record(at, "pg.connections.utilization", used / 97.0);
        m.record(at, "pg.connections.active", 12.0);
        m.record(at, "pg.connections.idle", used - 14.0);
        m.record(at, "pg.connections.idle_in_transaction", 2.0);
        m.record(at, "pg.app.task-tracker.connections", app);
        m.record(at, "pg.app.task-tracker.utilization", app / 30.0);
        m.record(at, "pg.app.reporting.connections", 3.0);
        m.record(at, "pg.app.unnamed.connections", 1.0);
        m.record(at, "pg.waiting", if s >= 540 { 2.0 } else { 0.0 });
        m.record(at, "pg.probe_ms", 1.8 + 0.3 * wave);
        m.record(at, "pg.errors", if s >= 545 { 3.0 } else { 0.0 });
        let queue = match s {
            0..250 => 0.0,
            250..300 => (s - 250) as f64 * 0.8,
            _ => (40.0 - (s - 300) as f64 * 0.0867).max(0.0),
        };
        m.record(at, "pg.gauge.retry_queue", queue.round());

        m.record(at, "host.cpu", 23.5 + 3.0 * wave);
        m.record(at, "host.mem", 61.2);

        // Webhook requests every other second; telegram slowed from 6:40 to 7:10.
        if s % 2 == 0 {
            let slow = (400..430).contains(&s);
            let latency = if slow {
                2_400.0 + (s - 400) as f64 * 950.0
            } else {
                120.0 + 15.0 * wave
            };
            m.record(at, "webhook.telegram.latency_ms", latency);
            if s < 492 {
                m.record(at, "webhook.slack.latency_ms", 80.0 + 10.0 * wave);
            }
        }
        if s == 492 {
            m.gap(at, "webhook.slack.");
        }

        // Probes: api slowed by the held pool, health down since 8:40.
        let api_latency = if s >= 540 { 240.0 } else { 35.0 + 5.0 * wave };
        m.record(at, "probe.api.latency_ms", api_latency);
        let failing = (250..253).contains(&s);
        m.record(at, "probe.api.ok", if failing { 0.0 } else { 1.0 });
        m.record(
            at,
            "probe.api.status.202",
            (s + 1 - (s + 1).saturating_sub(250).min(3)) as f64,
        );
        if s >= 250 {
            m.record(at, "probe.api.status.503", (s - 249).min(3) as f64);
        }
        if s < 520 {
            m.record(at, "probe.health.latency_ms", 4.0 + wave);
            m.record(at, "probe.health.ok", 1.0);
            m.record(at, "probe.health.status.200", (s + 1) as f64);
        }
        if s == 520 {
            m.gap(at, "probe.health.");
        }
    }
    let now = NOW_MS;
    for (key, value) in [
        ("webhook.telegram.latency_ms.p50", 120.0),
        ("webhook.telegram.latency_ms.p95", 2_400.0),
        ("webhook.telegram.latency_ms.p99", 31_000.0),
        ("webhook.telegram.requests", 1_234.0),
        ("webhook.telegram.status.200", 1_200.0),
        ("webhook.telegram.status.502", 4.0),
        ("webhook.telegram.status.504", 30.0),
        ("webhook.telegram.timeouts", 30.0),
        ("webhook.telegram.errors", 4.0),
        ("webhook.telegram.retries", 12.0),
    ] {
        m.record(now, key, value);
    }
    for (key, value) in [
        ("webhook.slack.latency_ms.p50", 80.0),
        ("webhook.slack.latency_ms.p95", 95.0),
        ("webhook.slack.latency_ms.p99", 99.0),
        ("webhook.slack.requests", 210.0),
        ("webhook.slack.status.200", 210.0),
        ("webhook.slack.timeouts", 0.0),
        ("webhook.slack.errors", 0.0),
        ("webhook.slack.retries", 0.0),
    ] {
        m.record(490_000, key, value);
    }
    m.gap(492_000, "webhook.slack.");
}

fn timeline_events() -> Vec<(u64, EventKind)> {
    let fault = |name: &str, phase, target: &str, detail: &str, cause| EventKind::Fault {
        id: format!("f-{name}"),
        name: name.into(),
        phase,
        target: target.into(),
        detail: detail.into(),
        cause,
        lease_ms: None,
    };
    vec![
        (
            0,
            EventKind::SessionStart {
                session: "drill-2026-11-28".into(),
                config: "gameday.toml".into(),
                version: "0.1.0".into(),
                schema: crate::timeline::SCHEMA,
                thresholds: Default::default(),
            },
        ),
        (
            2_000,
            EventKind::SourceUp {
                source: "pg".into(),
            },
        ),
        (
            3_000,
            EventKind::SourceUp {
                source: "nats".into(),
            },
        ),
        (
            120_000,
            EventKind::Mark {
                label: "baseline ok".into(),
            },
        ),
        (
            240_000,
            fault(
                "nats-stop",
                FaultPhase::Applied,
                "nats",
                "",
                Some(Cause::Key("1".into())),
            ),
        ),
        (
            241_000,
            EventKind::SourceDown {
                source: "nats".into(),
                reason: "connection refused".into(),
            },
        ),
        (
            300_000,
            fault(
                "nats-stop",
                FaultPhase::Reverted,
                "nats",
                "",
                Some(Cause::Timer),
            ),
        ),
        (
            300_500,
            EventKind::SourceUp {
                source: "nats".into(),
            },
        ),
        (
            305_000,
            EventKind::Note {
                text: "API answered 202 throughout the outage".into(),
            },
        ),
        (
            415_000,
            EventKind::Threshold {
                key: "webhook.telegram.latency_ms.p95".into(),
                level: Level::Warn,
                value: 2_400.0,
            },
        ),
        (
            492_000,
            EventKind::SourceDown {
                source: "webhook.slack".into(),
                reason: "upstream 127.0.0.1:9100: connection refused".into(),
            },
        ),
        (
            510_000,
            EventKind::Threshold {
                key: "nats.TASKS.workers.pending".into(),
                level: Level::Crit,
                value: 1_012.0,
            },
        ),
        (
            520_000,
            EventKind::SourceDown {
                source: "probe.health".into(),
                reason: "connection refused".into(),
            },
        ),
        (
            540_000,
            fault(
                "pg-hold",
                FaultPhase::Applied,
                "postgres",
                "",
                Some(Cause::Key("2".into())),
            ),
        ),
        (
            560_000,
            EventKind::Threshold {
                key: "pg.app.task-tracker.utilization".into(),
                level: Level::Warn,
                value: 0.93,
            },
        ),
        (
            590_000,
            fault(
                "webhook-slow",
                FaultPhase::Failed,
                "telegram",
                "proxy daemon not reachable",
                Some(Cause::Key("3".into())),
            ),
        ),
    ]
}

/// The faults a live app's config adds to the fixture's (keys 1 to 3).
const FAULTS: &str = r#"
[[proxy]]
name = "nats"
listen = "127.0.0.1:14222"
upstream = "127.0.0.1:4222"

[[fault]]
name = "nats-cut"
key = 1
kind = "down"
target = "nats"

[[fault]]
name = "pg-hold"
key = 2
kind = "pg_exhaust"
connections = 50

[[fault]]
name = "webhook-slow"
key = 3
kind = "webhook_delay"
target = "telegram"
delay = "35s"
"#;

/// A real app (the one the console runs) over the fixture config and a fault catalog, fed a
/// minute of samples with its sources up: popups and toasts in tests are the ones the app opens
/// for real keys, not hand-made.
pub struct LiveApp {
    pub app: crate::app::App,
    clock: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl LiveApp {
    /// `console` adds lines to the config's `[console]` table (e.g. `production = true`).
    pub fn new(name: &str, console: &str) -> LiveApp {
        use crate::app::{App, Event};
        use crate::sources::SourceEvent;
        use crate::timeline::{Clock, Timeline};
        let text = format!(
            "{}{FAULTS}",
            CONFIG.replace("[console]\n", &format!("[console]\n{console}\n"))
        );
        let config =
            Arc::new(Config::from_text(Path::new("gameday.toml"), &text).expect("live config"));
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(".artifacts/test")
            .join(format!("ui-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let clock = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let timeline = Timeline::with_clock(
            &dir,
            config.redactor().clone(),
            Clock::Manual(clock.clone()),
            started(),
        )
        .expect("timeline");
        let session = Session { dir, ..session() };
        let mut app = App::new(
            config.clone(),
            session,
            timeline,
            "dark".into(),
            vec!["dark".into()],
        )
        .expect("app");
        app.state.faults.catalog = crate::faults::catalog_entries(&config);
        let mut live = LiveApp { app, clock };
        for source in [SourceId::nats(), SourceId::postgres()] {
            live.app.handle(Event::Source(SourceEvent::Status {
                source,
                status: SourceStatus::Up,
            }));
        }
        for s in 0..=60u64 {
            live.at(s * 1000);
            live.app.handle(Event::Source(SourceEvent::Samples {
                source: SourceId::nats(),
                values: vec![
                    ("nats.up".into(), 1.0),
                    ("nats.rtt_ms".into(), 1.2),
                    ("nats.TASKS.messages".into(), 50_000.0 + s as f64 * 4.0),
                    ("nats.TASKS.workers.pending".into(), 20.0 + (s % 7) as f64),
                    ("nats.TASKS.notifier.pending".into(), 12.0),
                ],
            }));
            live.app.handle(Event::Source(SourceEvent::Samples {
                source: SourceId::postgres(),
                values: vec![
                    ("pg.up".into(), 1.0),
                    ("pg.connections.used".into(), 26.0),
                    ("pg.connections.max".into(), 97.0),
                    ("pg.connections.utilization".into(), 26.0 / 97.0),
                    ("pg.app.task-tracker.connections".into(), 8.0),
                ],
            }));
            live.app.handle(Event::Tick);
        }
        live
    }

    /// The app's clock (ms since the session started).
    pub fn at(&mut self, ms: u64) -> &mut Self {
        self.clock.store(ms, std::sync::atomic::Ordering::SeqCst);
        self
    }

    /// The operator presses `c`.
    pub fn key(&mut self, c: char) -> &mut Self {
        use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
        self.app.handle(crate::app::Event::Key(KeyEvent::new(
            KeyCode::Char(c),
            KeyModifiers::NONE,
        )));
        self
    }

    /// The whole screen as the app's state draws it.
    pub fn screen(&self, width: u16, height: u16) -> String {
        screen_text(&draw(&self.app.state, &theme(), width, height))
    }
}

/// Renders the whole screen at `width` x `height`.
pub fn draw(state: &AppState, theme: &Theme, width: u16, height: u16) -> Terminal<TestBackend> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal
        .draw(|frame| super::render(frame, state, theme))
        .unwrap();
    terminal
}

/// The text of `area` in `buf`, one line per row, trailing spaces kept (snapshots show widths).
pub fn text_of(buf: &Buffer, area: Rect) -> String {
    let mut out = String::new();
    for y in area.top()..area.bottom() {
        let mut skip = 0;
        for x in area.left()..area.right() {
            let cell = &buf[(x, y)];
            if skip == 0 {
                out.push_str(cell.symbol());
            }
            skip = (skip.max(cell_width(cell.symbol()))).saturating_sub(1);
        }
        out.push('\n');
    }
    out
}

fn cell_width(symbol: &str) -> usize {
    ratatui::text::Span::raw(symbol).width()
}

/// The whole screen as text.
pub fn screen_text(terminal: &Terminal<TestBackend>) -> String {
    let buf = terminal.backend().buffer();
    text_of(buf, buf.area)
}

/// One panel's rectangle on a `width` x `height` screen, rendered as text (zoomed: the panel
/// focused and filling the body).
pub fn panel_text(
    state: &mut AppState,
    panel: Panel,
    width: u16,
    height: u16,
    zoom: bool,
) -> String {
    let saved = state.ui.clone();
    state.ui.zoom = zoom;
    if zoom {
        state.ui.focus = panel;
    }
    let terminal = draw(state, &theme(), width, height);
    state.ui = saved;
    let area = crate::ui::layout::panel_area(Rect::new(0, 0, width, height), panel, zoom)
        .expect("dashboard fits");
    text_of(terminal.backend().buffer(), area)
}

/// A panel's text as one line: borders dropped, rows joined by a space, so wrapped messages read
/// whole.
pub fn flat(panel_text: &str) -> String {
    panel_text
        .lines()
        .map(|line| {
            let inner: String = line
                .chars()
                .skip(1)
                .take(line.chars().count().saturating_sub(2))
                .collect();
            inner.trim().to_string()
        })
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Where `needle` first appears on screen (row-major).
pub fn find(buf: &Buffer, needle: &str) -> Option<Position> {
    find_in(buf, buf.area, needle)
}

/// Where `needle` appears inside `area`.
pub fn find_in(buf: &Buffer, area: Rect, needle: &str) -> Option<Position> {
    let width = needle.chars().count().max(1) as u16;
    for y in area.top()..area.bottom() {
        for x in area.left()..area.right().saturating_sub(width - 1) {
            let here: String = (x..x + width).map(|x| buf[(x, y)].symbol()).collect();
            if here == needle {
                return Some(Position::new(x, y));
            }
        }
    }
    None
}

/// The standard snapshots of one panel: both reference sizes and zoomed. A macro so the snapshots
/// keep the calling panel's module in their names.
macro_rules! panel_snapshots {
    ($panel:expr, $name:literal) => {
        #[test]
        fn snapshots_at_both_sizes_and_zoomed() {
            use $crate::ui::test_support::{SIZES, panel_text, state};
            let mut state = state();
            for (w, h) in SIZES {
                insta::assert_snapshot!(
                    format!(concat!($name, "_{}x{}"), w, h),
                    panel_text(&mut state, $panel, w, h, false)
                );
            }
            insta::assert_snapshot!(
                concat!($name, "_zoomed_160x48"),
                panel_text(&mut state, $panel, 160, 48, true)
            );
        }
    };
}
pub(crate) use panel_snapshots;
