use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::*;
use crate::state::Panel;
use crate::timeline::{self, Clock};

struct Rig {
    app: App,
    clock: Arc<AtomicU64>,
}

fn rig(name: &str) -> Rig {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(".artifacts/test")
        .join(format!("app-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let config = Config::from_text(
        Path::new("gameday.toml"),
        r#"
[nats]
url = "nats://127.0.0.1:4222"
[[nats.watch]]
stream = "TASKS"
consumer = "workers"
warn = 100
crit = 1000
[postgres]
url = "postgres://app:hunter22@127.0.0.1:5432/tasks"
"#,
    )
    .unwrap();
    let clock = Arc::new(AtomicU64::new(0));
    let started = chrono::DateTime::parse_from_rfc3339("2026-11-28T10:00:00Z")
        .unwrap()
        .to_utc();
    let timeline = Timeline::with_clock(
        &dir,
        config.redactor().clone(),
        Clock::Manual(clock.clone()),
        started,
    )
    .unwrap();
    let session = Session {
        name: name.into(),
        dir,
        started,
    };
    let app = App::new(
        Arc::new(config),
        session,
        timeline,
        "dark".into(),
        vec!["dark".into(), "light".into()],
    )
    .unwrap();
    Rig { app, clock }
}

impl Rig {
    fn at(&mut self, ms: u64) -> &mut Self {
        self.clock.store(ms, Ordering::SeqCst);
        self
    }
    fn key(&mut self, c: char) -> &mut Self {
        self.app.handle(Event::Key(KeyEvent::new(
            KeyCode::Char(c),
            KeyModifiers::NONE,
        )));
        self
    }
    fn code(&mut self, code: KeyCode) -> &mut Self {
        self.app
            .handle(Event::Key(KeyEvent::new(code, KeyModifiers::NONE)));
        self
    }
    fn samples(&mut self, values: &[(&str, f64)]) -> &mut Self {
        let values = values.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        self.app.handle(Event::Source(SourceEvent::Samples {
            source: SourceId::nats(),
            values,
        }));
        self
    }
    fn status(&mut self, source: SourceId, status: SourceStatus) -> &mut Self {
        self.app
            .handle(Event::Source(SourceEvent::Status { source, status }));
        self
    }
    fn on_disk(&self) -> Vec<EventKind> {
        timeline::read(&self.app.timeline_path())
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect()
    }
    fn summaries(&self) -> Vec<String> {
        self.on_disk()
            .iter()
            .filter_map(EventKind::summary)
            .collect()
    }
}

#[test]
fn marks_and_notes_land_on_the_timeline_file() {
    let mut r = rig("marks");
    r.at(1500).key('m');
    r.at(2000).key('n');
    for c in "broker restarted by hand".chars() {
        r.key(c);
    }
    r.code(KeyCode::Enter);
    // A cancelled note writes nothing.
    r.key('n').key('x').code(KeyCode::Esc);
    let s = r.summaries();
    assert!(s.contains(&"mark: mark 1".to_string()), "{s:?}");
    assert!(
        s.contains(&"note: broker restarted by hand".to_string()),
        "{s:?}"
    );
    assert_eq!(s.iter().filter(|l| l.starts_with("note")).count(), 1);
    assert_eq!(r.app.state.ui.mode, Mode::Normal);
}

#[test]
fn typing_q_in_a_note_is_text_not_quit() {
    let mut r = rig("note-q");
    r.key('n').key('q');
    assert_eq!(r.app.quit_reason(), None);
    assert_eq!(r.app.state.ui.mode, Mode::Note("q".into()));
}

#[test]
fn a_source_going_down_is_recorded_once_with_its_reason_and_a_gap() {
    let mut r = rig("down");
    r.status(SourceId::nats(), SourceStatus::Connecting);
    r.at(1000).status(SourceId::nats(), SourceStatus::Up);
    r.samples(&[("nats.up", 1.0), ("nats.rtt_ms", 0.4)]);
    r.at(5000)
        .status(SourceId::nats(), SourceStatus::down("connection refused"));
    r.at(6000)
        .status(SourceId::nats(), SourceStatus::down("still refused"));
    let st = r.app.state.source("nats").unwrap().clone();
    assert_eq!(st.since_ms, 5000, "down since the first down");
    assert_eq!(
        st.status,
        SourceStatus::down("still refused"),
        "the panel shows the newest reason"
    );
    assert_eq!(
        r.app.state.metrics.get("nats.rtt_ms").unwrap().current(),
        None,
        "gap while down"
    );
    r.at(9000).status(SourceId::nats(), SourceStatus::Up);
    let s = r.summaries();
    assert_eq!(
        s.iter()
            .filter(|l| l.starts_with("nats"))
            .cloned()
            .collect::<Vec<_>>(),
        vec!["nats up", "nats DOWN: connection refused", "nats up"]
    );
}

#[test]
fn threshold_crossings_and_returns_are_recorded() {
    let mut r = rig("thresholds");
    let key = "nats.TASKS.workers.pending";
    for v in [5.0, 150.0, 160.0, 1500.0, 20.0] {
        r.samples(&[(key, v)]);
    }
    let s: Vec<String> = r
        .summaries()
        .into_iter()
        .filter(|l| l.starts_with(key))
        .collect();
    assert_eq!(
        s,
        vec![
            format!("{key} WARN (150)"),
            format!("{key} CRIT (1500)"),
            format!("{key} back to ok (20)"),
        ]
    );
    assert_eq!(r.app.state.level(key), Level::Ok);
}

#[test]
fn ticks_write_buffered_samples_so_history_survives_a_crash() {
    let mut r = rig("samples");
    r.samples(&[("nats.up", 1.0)])
        .samples(&[("nats.TASKS.messages", 7.0)]);
    assert!(
        !r.on_disk()
            .iter()
            .any(|k| matches!(k, EventKind::Samples { .. }))
    );
    r.app.handle(Event::Tick);
    let written: Vec<_> = r
        .on_disk()
        .into_iter()
        .filter_map(|k| match k {
            EventKind::Samples { points } => Some(points),
            _ => None,
        })
        .collect();
    assert_eq!(
        written,
        vec![vec![
            ("nats.up".to_string(), 1.0),
            ("nats.TASKS.messages".to_string(), 7.0)
        ]]
    );
}

#[test]
fn quit_by_key_or_signal_and_the_end_is_recorded() {
    let mut r = rig("quit");
    r.app.handle(Event::Key(KeyEvent::new(
        KeyCode::Char('c'),
        KeyModifiers::CONTROL,
    )));
    assert_eq!(r.app.quit_reason(), Some(&QuitReason("key q".into())));
    let mut r = rig("signal");
    r.app.handle(Event::Signal("SIGTERM"));
    r.app.finish();
    assert!(
        r.summaries()
            .contains(&"session ended (signal SIGTERM)".to_string())
    );
}

#[test]
fn focus_zoom_theme_and_help_follow_the_keys() {
    let mut r = rig("keys");
    r.code(KeyCode::Tab).code(KeyCode::Tab);
    assert_eq!(r.app.state.ui.focus, Panel::Webhooks);
    r.code(KeyCode::BackTab);
    assert_eq!(r.app.state.ui.focus, Panel::Postgres);
    r.key('z');
    assert!(r.app.state.ui.zoom);
    r.code(KeyCode::Esc);
    assert!(!r.app.state.ui.zoom);
    r.key('t');
    assert_eq!(r.app.state.ui.theme, "light");
    r.key('t');
    assert_eq!(r.app.state.ui.theme, "dark");
    r.key('?');
    assert_eq!(r.app.state.ui.mode, Mode::Help);
    r.key('m'); // consumed by help: no mark
    r.code(KeyCode::Esc);
    assert_eq!(r.app.state.ui.mode, Mode::Normal);
    assert!(!r.summaries().iter().any(|s| s.starts_with("mark")));
}

#[test]
fn a_digit_without_a_catalog_fault_explains_itself() {
    let mut r = rig("digit");
    r.key('4');
    let toast = r.app.state.ui.toast.clone().unwrap();
    assert!(toast.text.contains("no fault on key 4"), "{}", toast.text);
    assert_eq!(r.app.state.ui.mode, Mode::Normal);
}

#[test]
fn export_is_an_effect_and_its_result_is_recorded() {
    let mut r = rig("export");
    r.key('x');
    assert_eq!(r.app.take_effects(), vec![Effect::ExportReport]);
    r.app
        .handle(Event::ReportWritten(Ok(vec!["a/report.md".into()])));
    assert!(
        r.summaries()
            .contains(&"report written: a/report.md".to_string())
    );
}

#[test]
fn secrets_from_reasons_never_reach_the_timeline() {
    let mut r = rig("secret");
    r.status(
        SourceId::postgres(),
        SourceStatus::down("password hunter22 rejected"),
    );
    let text = std::fs::read_to_string(r.app.timeline_path()).unwrap();
    assert!(!text.contains("hunter22"));
    assert!(
        r.app
            .state
            .timeline
            .iter()
            .all(|e| !format!("{:?}", e.kind).contains("hunter22"))
    );
    let shown = r.app.state.source("pg").unwrap().status.clone();
    assert_eq!(
        shown,
        SourceStatus::down("password *** rejected"),
        "the panel shows the masked reason"
    );
}
