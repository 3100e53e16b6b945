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
    rig_with(name, "")
}

/// A rig whose config starts with `console` (a `[console]` table).
fn rig_with(name: &str, console: &str) -> Rig {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(".artifacts/test")
        .join(format!("app-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let config = Config::from_text(
        Path::new("gameday.toml"),
        &format!(
            r#"{console}
[nats]
url = "nats://127.0.0.1:4222"
[[nats.watch]]
stream = "TASKS"
consumer = "workers"
warn = 100
crit = 1000
[postgres]
url = "postgres://app:hunter22@127.0.0.1:5432/tasks"

[[fault]]
name = "pg-cut"
key = 1
kind = "pg_terminate"
application_name = "app"
"#
        ),
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
fn every_batch_of_samples_is_on_disk_as_it_arrives_at_its_own_instant() {
    let mut r = rig("samples");
    r.at(1_000).samples(&[("nats.up", 1.0)]);
    r.at(1_250).samples(&[("nats.TASKS.messages", 7.0)]);
    // Nothing waits for a tick: a crash now loses nothing, and a viewer rebuilds each series
    // at the instant the console recorded it.
    let written: Vec<_> = timeline::read(&r.app.timeline_path())
        .unwrap()
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::Samples { points } => Some((e.offset_ms, points)),
            _ => None,
        })
        .collect();
    assert_eq!(
        written,
        vec![
            (1_000, vec![("nats.up".to_string(), 1.0)]),
            (1_250, vec![("nats.TASKS.messages".to_string(), 7.0)]),
        ]
    );
    let series = r.app.state.metrics.get("nats.TASKS.messages").unwrap();
    assert_eq!(series.last_at(), Some(1_250));
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

/// The whole app: data and keys go in through `handle`, the screen comes out of `ui::render`.
mod whole_app {
    use super::*;
    use crate::faults::engine::FaultReport;
    use crate::state::{ActivePhase, CatalogEntry};
    use crate::ui::test_support::{draw, screen_text, theme};

    fn feed_a_drill(r: &mut Rig) {
        r.app.state.faults.catalog = vec![CatalogEntry {
            key: Some(1),
            name: "nats-cut".into(),
            kind: "down".into(),
            target: "nats".into(),
            params: "refuse new connections, close open ones".into(),
            blast_radius: "every connection through proxy nats".into(),
            lease_ms: 60_000,
        }];
        r.status(SourceId::nats(), SourceStatus::Connecting);
        r.status(SourceId::postgres(), SourceStatus::Connecting);
        for s in 0..30u64 {
            r.at(s * 1000);
            if s == 1 {
                r.status(SourceId::nats(), SourceStatus::Up);
                r.status(SourceId::postgres(), SourceStatus::Up);
            }
            let pending = if s < 10 { 5.0 } else { 40.0 * s as f64 };
            r.samples(&[
                ("nats.up", 1.0),
                ("nats.rtt_ms", 0.8),
                ("nats.TASKS.messages", 100.0 + s as f64),
                ("nats.TASKS.workers.pending", pending),
                ("nats.TASKS.workers.ack_pending", 3.0),
            ]);
            r.app.handle(Event::Source(SourceEvent::Samples {
                source: SourceId::postgres(),
                values: vec![
                    ("pg.up".into(), 1.0),
                    ("pg.connections.used".into(), 12.0),
                    ("pg.connections.max".into(), 37.0),
                    ("pg.connections.utilization".into(), 12.0 / 37.0),
                ],
            }));
            r.app.handle(Event::Tick);
        }
    }

    #[test]
    fn a_drill_driven_by_keys_and_data_renders_what_happened() {
        let mut r = rig("whole-app");
        feed_a_drill(&mut r);
        // The operator triggers fault 1 and confirms it; the engine reports it applied.
        r.at(30_000).key('1');
        assert!(matches!(r.app.state.ui.mode, Mode::Confirm(_)));
        let confirm_screen = screen_text(&draw(&r.app.state, &theme(), 80, 24));
        assert!(
            confirm_screen.contains("Inject nats-cut?"),
            "{confirm_screen}"
        );
        assert!(confirm_screen.contains("Blast radius"), "{confirm_screen}");
        r.key('y');
        let effects = r.app.take_effects();
        assert_eq!(
            effects,
            vec![
                // Opening the popup asked what the fault would really touch.
                Effect::Resolve { catalog_index: 0 },
                Effect::InjectFault {
                    catalog_index: 0,
                    cause: Cause::Key("1".into()),
                    lease: None,
                }
            ]
        );
        let report = |phase, detail: &str| FaultReport {
            id: "nats-cut-1".into(),
            name: "nats-cut".into(),
            target: "nats".into(),
            phase,
            detail: detail.into(),
            cause: None,
            lease: Some(std::time::Duration::from_secs(60)),
        };
        r.app
            .handle(Event::Fault(report(FaultPhase::Requested, "")));
        r.app.handle(Event::Fault(report(
            FaultPhase::Applied,
            "refuse new connections, close open ones",
        )));
        r.at(31_500).status(
            SourceId::nats(),
            SourceStatus::down("disconnected: connection refused"),
        );
        r.at(33_000).key('m');
        r.app.handle(Event::Tick);
        assert_eq!(r.app.state.faults.active[0].phase, ActivePhase::Active);

        let screen = screen_text(&draw(&r.app.state, &theme(), 160, 48));
        assert!(screen.contains("DOWN since 10:00:31"), "{screen}");
        assert!(screen.contains("nats-cut"), "{screen}");
        assert!(screen.contains("1 fault active"), "{screen}");
        assert!(!screen.contains("hunter22"), "no secret on screen");
        insta::assert_snapshot!("drill_160x48", screen);

        // X reverts everything without a popup; the engine's reports close the fault.
        r.key('X');
        assert_eq!(
            r.app.take_effects(),
            vec![Effect::RevertAll {
                cause: Cause::PanicKey
            }]
        );
        r.app
            .handle(Event::Fault(report(FaultPhase::RevertRequested, "")));
        r.at(35_000)
            .app
            .handle(Event::Fault(report(FaultPhase::Reverted, "")));
        r.at(36_000).status(SourceId::nats(), SourceStatus::Up);
        assert!(r.app.state.faults.active.is_empty());
        assert_eq!(r.app.state.faults.spans[0].to_ms, Some(35_000));

        // Zoom on the focused panel for the screen share, at the smallest supported size.
        r.key('z');
        let zoomed = screen_text(&draw(&r.app.state, &theme(), 80, 24));
        insta::assert_snapshot!("zoomed_nats_80x24", zoomed);

        let s = r.summaries();
        let faults: Vec<&String> = s.iter().filter(|l| l.starts_with("fault")).collect();
        assert_eq!(faults.len(), 4, "{s:?}");
        assert!(
            s.iter()
                .any(|l| l == "nats.TASKS.workers.pending CRIT (1000)"
                    || l.starts_with("nats.TASKS.workers.pending CRIT")),
            "{s:?}"
        );
    }

    #[test]
    fn another_consoles_faults_show_with_their_owner_and_e_asks_before_reverting_everyones() {
        let mut r = rig("others");
        feed_a_drill(&mut r);
        let now = r.app.state.wall(r.app.state.now_ms);
        let others = vec![crate::faults::engine::ForeignFault {
            id: "pg-hold-b0b000-1".into(),
            name: "pg-hold".into(),
            target: "postgres".into(),
            owner: "bob@box (2026-12-01T10-00-00)".into(),
            lease_until: now + chrono::Duration::seconds(125),
            owner_alive: true,
        }];
        r.app.handle(Event::Others(others));
        // Focus the Faults panel and zoom it, as for a screen share.
        while r.app.state.ui.focus != crate::state::Panel::Faults {
            r.code(KeyCode::Tab);
        }
        r.key('z');
        let screen = screen_text(&draw(&r.app.state, &theme(), 80, 24));
        assert!(screen.contains("by bob@box"), "{screen}");
        assert!(screen.contains("◇ 1 by other consoles"), "{screen}");
        insta::assert_snapshot!("others_faults_zoomed_80x24", screen);

        r.key('E');
        let confirm = screen_text(&draw(&r.app.state, &theme(), 160, 48));
        assert!(confirm.contains("Revert EVERYONE's faults?"), "{confirm}");
        assert!(confirm.contains("Other owners: bob@box"), "{confirm}");
        assert!(
            r.app.take_effects().is_empty(),
            "nothing before the confirm"
        );
        r.key('y');
        assert_eq!(
            r.app.take_effects(),
            vec![Effect::RevertEveryone {
                cause: Cause::Everyone
            }]
        );
    }

    #[test]
    fn help_lists_every_key_of_the_table() {
        let mut r = rig("help");
        r.key('?');
        let screen = screen_text(&draw(&r.app.state, &theme(), 160, 48));
        for b in crate::keymap::NORMAL {
            assert!(screen.contains(b.help), "help misses `{}`", b.help);
        }
        assert!(screen.contains(crate::keymap::FAULT_KEYS_HELP));
    }
}

/// The guard rails on a production environment.
mod production {
    use super::*;
    use crate::sources::{SourceId, SourceStatus};
    use crate::state::TypedWord;
    use crate::ui::test_support::{draw, screen_text, theme};

    const PRODUCTION: &str = "[console]\nenvironment = \"prod-eu\"\nproduction = true\n";

    fn catalog(r: &mut Rig) {
        r.app.state.faults.catalog = crate::faults::catalog_entries(&r.app.state.config);
    }

    #[test]
    fn without_allow_production_a_keystroke_injects_nothing_and_says_why() {
        let mut r = rig_with("prod-refused", PRODUCTION);
        catalog(&mut r);
        r.key('1');
        assert_eq!(r.app.state.ui.mode, Mode::Normal, "no confirm popup");
        assert!(r.app.take_effects().is_empty(), "nothing to run");
        let said = r.summaries();
        assert!(
            said.iter()
                .any(|l| l.contains("refused the inject") && l.contains("--allow-production")),
            "{said:?}"
        );
        r.key('s');
        assert!(r.app.take_effects().is_empty());
        assert!(
            r.summaries()
                .iter()
                .any(|l| l.contains("refused the scenario"))
        );
    }

    #[test]
    fn with_allow_production_only_the_typed_name_of_the_environment_goes_ahead() {
        let mut r = rig_with("prod-typed", PRODUCTION);
        r.app.state.allow_production = true;
        catalog(&mut r);
        r.key('1');
        let typed = |r: &Rig| match &r.app.state.ui.mode {
            Mode::Confirm(c) => c.typed.clone(),
            other => panic!("expected the confirm popup, got {other:?}"),
        };
        assert_eq!(
            typed(&r),
            Some(TypedWord {
                expected: "prod-eu".into(),
                entered: String::new(),
                wrong: false
            })
        );
        let screen = screen_text(&draw(&r.app.state, &theme(), 160, 48));
        assert!(
            screen.contains("Environment: prod-eu (PRODUCTION)"),
            "{screen}"
        );
        assert!(screen.contains("Type prod-eu and press enter"), "{screen}");
        r.app.take_effects();
        // 'y' is a letter here, not a yes; a wrong name and enter change nothing.
        for c in "yprod-us".chars() {
            r.key(c);
        }
        r.code(KeyCode::Enter);
        assert!(
            r.app.take_effects().is_empty(),
            "a wrong name injects nothing"
        );
        assert!(typed(&r).unwrap().wrong);
        let screen = screen_text(&draw(&r.app.state, &theme(), 160, 48));
        assert!(screen.contains("not the environment's name"), "{screen}");
        for _ in 0.."yprod-us".len() {
            r.code(KeyCode::Backspace);
        }
        for c in "prod-eu".chars() {
            r.key(c);
        }
        r.code(KeyCode::Enter);
        assert_eq!(
            r.app.take_effects(),
            vec![Effect::InjectFault {
                catalog_index: 0,
                cause: Cause::Key("1".into()),
                lease: None
            }]
        );
        assert_eq!(r.app.state.ui.mode, Mode::Normal);
    }

    #[test]
    fn the_header_the_timeline_and_the_report_name_the_environment() {
        let mut r = rig_with("prod-named", PRODUCTION);
        let screen = screen_text(&draw(&r.app.state, &theme(), 160, 48));
        assert!(screen.contains("prod-eu (PRODUCTION)"), "{screen}");
        assert!(
            r.summaries()
                .iter()
                .any(|l| l == "environment: prod-eu (PRODUCTION)")
        );
        r.app.finish();
        let events = crate::timeline::read(&r.app.timeline_path()).unwrap();
        let report = crate::report::Report::build(&events);
        assert_eq!(
            report.session.environment.as_deref(),
            Some("prod-eu (PRODUCTION)")
        );
        assert!(
            crate::report::to_markdown(&report).contains("| Environment | prod-eu (PRODUCTION) |")
        );
    }

    #[test]
    fn require_healthy_refuses_a_keystroke_inject_while_a_source_is_down() {
        let mut r = rig_with("healthy", "[console]\nrequire_healthy = true\n");
        catalog(&mut r);
        r.status(
            SourceId::postgres(),
            SourceStatus::down("connection refused"),
        );
        r.key('1');
        assert_eq!(r.app.state.ui.mode, Mode::Normal);
        assert!(
            r.summaries()
                .iter()
                .any(|l| l.contains("require_healthy") && l.contains("pg"))
        );
        r.status(SourceId::postgres(), SourceStatus::Up);
        r.key('1');
        assert!(matches!(r.app.state.ui.mode, Mode::Confirm(_)));
    }
}
