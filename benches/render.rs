//! Rendering cost: the full dashboard at 160x48 into a `TestBackend`, with one hour of 1 s history
//! in each of the 20 charted series (3600 points each). Target: under 2 ms a frame.
//!
//! `cargo bench --bench render`

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{TimeZone, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

use gameday::config::Config;
use gameday::sources::{SourceId, SourceStatus};
use gameday::state::{AppState, FaultSpan, Panel, Session, SourceState};
use gameday::theme::Theme;
use gameday::timeline::{EventKind, TimelineEvent};

const HOUR_S: u64 = 3600;

const CONFIG: &str = r#"
[console]
sample_interval = "1s"
history = "1h"

[nats]
url = "nats://127.0.0.1:4222"
watch = [
  { stream = "TASKS", consumer = "workers", warn = 100, crit = 1000 },
  { stream = "TASKS", consumer = "notifier", warn = 100, crit = 1000 },
  { stream = "TASKS", consumer = "audit", warn = 100, crit = 1000 },
  { stream = "EVENTS", consumer = "indexer", warn = 100, crit = 1000 },
  { stream = "EVENTS", consumer = "mailer", warn = 100, crit = 1000 },
]

[postgres]
url = "postgres://app:secret@127.0.0.1:5432/tasks"
pool = [
  { application_name = "task-tracker", size = 10, max_overflow = 20 },
  { application_name = "worker", size = 5, max_overflow = 5 },
  { application_name = "reporting", size = 2 },
]
gauge = [
  { name = "retry_queue", sql = "select 1", warn = 10, crit = 100 },
  { name = "dead_letters", sql = "select 1", warn = 1 },
]

[[webhook]]
name = "telegram"
listen = "127.0.0.1:18080"
upstream = "http://127.0.0.1:9000"
warn_ms = 1000
crit_ms = 10000

[[webhook]]
name = "slack"
listen = "127.0.0.1:18081"
upstream = "http://127.0.0.1:9001"

[[webhook]]
name = "pager"
listen = "127.0.0.1:18082"
upstream = "http://127.0.0.1:9002"

[[probe]]
name = "api"
url = "http://127.0.0.1:8000/tasks"
warn_ms = 200

[[probe]]
name = "health"
url = "http://127.0.0.1:8000/health"

[[probe]]
name = "search"
url = "http://127.0.0.1:8000/search"

[[probe]]
name = "login"
url = "http://127.0.0.1:8000/login"
"#;

/// The 20 series the dashboard charts.
fn charted() -> Vec<String> {
    let mut keys: Vec<String> = [
        "TASKS.workers",
        "TASKS.notifier",
        "TASKS.audit",
        "EVENTS.indexer",
        "EVENTS.mailer",
    ]
    .iter()
    .map(|c| format!("nats.{c}.pending"))
    .collect();
    keys.push("pg.connections.utilization".into());
    for pool in ["task-tracker", "worker", "reporting"] {
        keys.push(format!("pg.app.{pool}.utilization"));
    }
    for gauge in ["retry_queue", "dead_letters"] {
        keys.push(format!("pg.gauge.{gauge}"));
    }
    for hook in ["telegram", "slack", "pager"] {
        keys.push(format!("webhook.{hook}.latency_ms"));
    }
    for probe in ["api", "health", "search", "login"] {
        keys.push(format!("probe.{probe}.latency_ms"));
    }
    keys.push("nats.rtt_ms".into());
    keys.push("host.cpu".into());
    keys
}

fn state() -> AppState {
    let config = Arc::new(Config::from_text(Path::new("gameday.toml"), CONFIG).unwrap());
    let session = Session {
        name: "bench".into(),
        dir: PathBuf::from(".artifacts/bench"),
        started: Utc.with_ymd_and_hms(2026, 11, 28, 10, 0, 0).unwrap(),
    };
    let mut state = AppState::new(config, session, "dark".into());
    let keys = charted();
    assert_eq!(keys.len(), 20);
    for s in 0..HOUR_S {
        let wave = (s as f64 / 30.0).sin().abs();
        for (i, key) in keys.iter().enumerate() {
            let value = if key.ends_with("utilization") {
                0.3 + 0.6 * wave
            } else {
                (i as f64 + 1.0) * 10.0 * (1.0 + wave)
            };
            state.metrics.record(s * 1000, key, value);
        }
    }
    state.now_ms = HOUR_S * 1000;
    let now = state.now_ms;
    // Latest values of what panels show as numbers only.
    for (key, value) in [
        ("pg.connections.used", 40.0),
        ("pg.connections.max", 97.0),
        ("pg.connections.active", 20.0),
        ("pg.connections.idle", 20.0),
        ("pg.waiting", 1.0),
        ("pg.probe_ms", 1.5),
        ("pg.errors", 0.0),
        ("host.mem", 61.0),
    ] {
        state.metrics.record(now, key, value);
    }
    for source in [
        "nats",
        "pg",
        "host",
        "webhook.telegram",
        "webhook.slack",
        "webhook.pager",
    ] {
        let since = state.wall(1000);
        state.sources.insert(
            SourceId(source.into()),
            SourceState {
                status: SourceStatus::Up,
                since_ms: 1000,
                since,
            },
        );
    }
    for i in 0..10 {
        state.faults.spans.push(FaultSpan {
            name: format!("fault-{i}"),
            from_ms: now - (i + 1) * 240_000,
            to_ms: Some(now - (i + 1) * 240_000 + 60_000),
        });
    }
    for i in 0..200 {
        let offset_ms = i * 15_000;
        let ts = state.wall(offset_ms);
        state.push_timeline(TimelineEvent {
            ts,
            offset_ms,
            kind: EventKind::Mark {
                label: format!("mark {i}"),
            },
        });
    }
    state
}

fn render(c: &mut Criterion) {
    let mut state = state();
    let theme = Theme::built_in("dark").unwrap();
    let mut terminal = Terminal::new(TestBackend::new(160, 48)).unwrap();
    c.bench_function("dashboard 160x48, 20 series x 1h at 1s", |b| {
        b.iter(|| {
            terminal
                .draw(|frame| gameday::ui::render(frame, black_box(&state), &theme))
                .unwrap();
        })
    });
    state.ui.zoom = true;
    state.ui.focus = Panel::Nats;
    c.bench_function("zoomed NATS 160x48", |b| {
        b.iter(|| {
            terminal
                .draw(|frame| gameday::ui::render(frame, black_box(&state), &theme))
                .unwrap();
        })
    });
}

criterion_group!(benches, render);
criterion_main!(benches);
