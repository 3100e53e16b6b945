//! Rendering cost: the full dashboard at 160x48 into a `TestBackend`, with one hour of 1 s history
//! in each of the 20 charted series (3600 points each). Target: under 2 ms a frame.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

use super::{Effort, Figure, Row, Samples, duration};
use crate::config::Config;
use crate::sources::{SourceId, SourceStatus};
use crate::state::{AppState, FaultSpan, Session, SourceState};
use crate::theme::Theme;
use crate::timeline::{EventKind, TimelineEvent};

pub const WIDTH: u16 = 160;
pub const HEIGHT: u16 = 48;
pub const FRAME_BUDGET: Duration = Duration::from_millis(2);
const HOUR_S: u64 = 3600;

/// The estate the dashboard bench draws (and the replay bench records).
pub const CONFIG: &str = r#"
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
pub fn charted_keys() -> Vec<String> {
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

/// The console's state after one hour at 1 s: 20 charted series full, six sources up, ten
/// reverted faults on the charts and 200 marks on the timeline.
pub fn dashboard_state() -> AppState {
    let config = Arc::new(
        Config::from_text(Path::new("gameday.toml"), CONFIG).expect("the bench config is valid"),
    );
    let session = Session {
        name: "bench".into(),
        dir: PathBuf::from(".artifacts/bench"),
        started: Utc
            .with_ymd_and_hms(2026, 11, 28, 10, 0, 0)
            .single()
            .expect("a valid date"),
    };
    let mut state = AppState::new(config, session, "dark".into());
    let keys = charted_keys();
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

/// A 160x48 in-memory terminal.
pub fn terminal() -> Terminal<TestBackend> {
    let Ok(terminal) = Terminal::new(TestBackend::new(WIDTH, HEIGHT));
    terminal
}

/// Draws one frame of `state`, as the console does.
pub fn draw(terminal: &mut Terminal<TestBackend>, state: &AppState, theme: &Theme) {
    let Ok(_) = terminal.draw(|frame| crate::ui::render(frame, state, theme));
}

/// Times `frames` full dashboard frames after a warm-up; the target is on the median frame.
pub fn measure(effort: Effort) -> Result<Vec<Row>, String> {
    let state = dashboard_state();
    let theme = Theme::built_in("dark").ok_or("the built-in dark theme is missing")?;
    let mut terminal = terminal();
    for _ in 0..effort.pick(50, 10) {
        draw(&mut terminal, &state, &theme);
    }
    let frames = effort.pick(2_000, 100);
    let samples = Samples::new(
        (0..frames)
            .map(|_| {
                let started = Instant::now();
                draw(&mut terminal, &state, &theme);
                started.elapsed()
            })
            .collect(),
    );
    Ok(vec![Row {
        name: format!("render: dashboard {WIDTH}x{HEIGHT}, 20 series × 1 h, p50 frame"),
        figure: Figure::Time {
            took: samples.median(),
            budget: Some(FRAME_BUDGET),
        },
        context: vec![format!(
            "p99 {} over {frames} frames",
            duration(samples.p99())
        )],
    }])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quick_run_times_frames_of_the_full_hour_dashboard() {
        let keys = charted_keys();
        let state = dashboard_state();
        assert_eq!(keys.len(), 20);
        for key in &keys {
            assert_eq!(
                state.metrics.get(key).map(|series| series.len()),
                Some(HOUR_S as usize),
                "{key} holds one hour at 1 s"
            );
        }
        let rows = measure(Effort::Quick).unwrap();
        let Figure::Time { took, budget } = rows[0].figure else {
            panic!("a frame time, got {:?}", rows[0].figure);
        };
        assert!(took > Duration::ZERO);
        assert_eq!(budget, Some(FRAME_BUDGET));
    }
}
