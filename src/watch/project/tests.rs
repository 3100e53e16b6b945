//! The console and a replay of its timeline draw the same panels at the same instant: the
//! console's frames are recorded while a real `App` is driven (on a hand-turned clock), then the
//! file it wrote is replayed to each instant and drawn again.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ratatui::layout::Rect;

use crate::app::{App, Event};
use crate::faults::engine::FaultReport;
use crate::sources::{SourceEvent, SourceId, SourceStatus};
use crate::state::{Role, Session};
use crate::timeline::{Cause, Clock, Driver, FaultPhase, Timeline};
use crate::ui::test_support::{config, draw, started, text_of, theme};
use crate::watch::replay::Replay;

const W: u16 = 160;
const H: u16 = 48;

struct Rig {
    app: App,
    clock: Arc<AtomicU64>,
}

impl Rig {
    fn new(name: &str) -> Rig {
        let dir = crate::services::testing::test_dir(name);
        let config = config();
        let clock = Arc::new(AtomicU64::new(0));
        let timeline = Timeline::with_clock(
            &dir,
            config.redactor().clone(),
            Clock::Manual(clock.clone()),
            started(),
        )
        .unwrap();
        let session = Session {
            name: name.into(),
            dir,
            started: started(),
        };
        let mut app = App::new(config, session, timeline, "dark".into(), vec![]).unwrap();
        app.set_up(
            Driver {
                id: format!("{name}-abc123"),
                user: "alice".into(),
                host: "ops-laptop".into(),
                pid: 4242,
            },
            crate::ui::test_support::catalog(),
            vec!["container faults unavailable: no Docker engine".into()],
        );
        Rig { app, clock }
    }

    fn at(&mut self, ms: u64) -> &mut Self {
        self.clock.store(ms, Ordering::SeqCst);
        self
    }

    fn status(&mut self, source: &str, status: SourceStatus) -> &mut Self {
        self.app.handle(Event::Source(SourceEvent::Status {
            source: SourceId(source.into()),
            status,
        }));
        self
    }

    fn samples(&mut self, source: &str, values: &[(&str, f64)]) -> &mut Self {
        self.app.handle(Event::Source(SourceEvent::Samples {
            source: SourceId(source.into()),
            values: values.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        }));
        self
    }

    fn fault(&mut self, phase: FaultPhase, lease_s: Option<u64>) -> &mut Self {
        self.app.handle(Event::Fault(FaultReport {
            id: "drill-abc123-1".into(),
            name: "pg-hold".into(),
            target: "postgres".into(),
            phase,
            detail: if phase == FaultPhase::Applied {
                "hold 50 connections".into()
            } else {
                String::new()
            },
            cause: Some(Cause::Key("2".into())),
            lease: lease_s.map(std::time::Duration::from_secs),
        }));
        self
    }

    /// The console's frame now, without its toast (a viewer has toasts of its own).
    fn frame(&mut self) -> String {
        self.app.handle(Event::Tick);
        self.app.state.ui.toast = None;
        let terminal = draw(&self.app.state, &theme(), W, H);
        body(terminal.backend().buffer())
    }
}

/// Everything between the header and the footer: the panels.
fn body(buf: &ratatui::buffer::Buffer) -> String {
    text_of(buf, Rect::new(0, 1, W, H - 2))
}

fn tick(rig: &mut Rig, at: u64, pending: f64, in_use: f64) {
    rig.at(at)
        .samples(
            "nats",
            &[
                ("nats.up", 1.0),
                ("nats.rtt_ms", 0.4),
                ("nats.TASKS.messages", 100.0 + pending),
                ("nats.TASKS.workers.pending", pending),
                ("nats.TASKS.workers.ack_pending", 3.0),
                ("nats.TASKS.workers.redelivered", 0.0),
            ],
        )
        .samples(
            "pg",
            &[
                ("pg.up", 1.0),
                ("pg.connections.total", in_use + 2.0),
                ("pg.connections.active", in_use),
                ("pg.connections.idle", 2.0),
                ("pg.pool.task-tracker.in_use", in_use),
                ("pg.pool.task-tracker.utilization", in_use / 30.0),
                ("pg.gauge.retry_queue", 4.0),
            ],
        )
        .samples(
            "probe.api",
            &[
                ("probe.api.up", 1.0),
                ("probe.api.latency_ms", 12.0 + pending / 10.0),
                ("probe.api.status", 202.0),
            ],
        );
}

#[test]
fn a_replay_draws_the_panels_the_console_drew_at_each_instant() {
    let mut rig = Rig::new("replay-equivalence");
    rig.at(500)
        .status("nats", SourceStatus::Up)
        .status("pg", SourceStatus::Up)
        .status("probe.api", SourceStatus::Up)
        .status("probe.health", SourceStatus::down("connection refused"));
    let mut frames = Vec::new();
    for second in 1..=40u64 {
        let at = second * 1000;
        let pending = if (15..30).contains(&second) {
            second as f64 * 40.0
        } else {
            5.0
        };
        tick(&mut rig, at, pending, if second > 20 { 30.0 } else { 8.0 });
        match second {
            10 => {
                rig.at(at + 100).fault(FaultPhase::Requested, None);
                rig.at(at + 300).fault(FaultPhase::Applied, Some(300));
            }
            18 => {
                rig.at(at + 200)
                    .status("nats", SourceStatus::down("connection refused"));
            }
            25 => {
                rig.at(at + 200).status("nats", SourceStatus::Up);
                rig.at(at + 400).fault(FaultPhase::RevertRequested, None);
                rig.at(at + 600).fault(FaultPhase::Reverted, None);
            }
            _ => {}
        }
        if [5, 12, 20, 27, 40].contains(&second) {
            let instant = at + 700;
            rig.at(instant);
            frames.push((instant, rig.frame()));
        }
    }
    // The session ends (a replay goes no further than its last line).
    rig.at(41_000)
        .app
        .record(crate::timeline::EventKind::SessionEnd {
            reason: "key q".into(),
        });
    let dir = rig.app.state.session.dir.clone();
    drop(rig);

    let mut replay = Replay::open(&dir, "dark".into()).expect("the console's timeline replays");
    for (instant, console) in &frames {
        replay.seek(*instant);
        // One row more: the replay's position bar takes the bottom row.
        let terminal = draw(replay.state(), &theme(), W, H + 1);
        let replayed = body(terminal.backend().buffer());
        pretty_assertions::assert_eq!(&replayed, console, "at {instant} ms");
    }
    // And back: scrubbing to an earlier instant draws that instant again.
    let (instant, console) = &frames[1];
    replay.seek(*instant);
    let terminal = draw(replay.state(), &theme(), W, H + 1);
    pretty_assertions::assert_eq!(&body(terminal.backend().buffer()), console);
    // The replay's whole screen at the fault's height is pinned: header (who drove, where the
    // position is), panels, footer keys and the position bar.
    insta::assert_snapshot!(
        "replay_fault_applied_160x49",
        crate::ui::test_support::screen_text(&draw(replay.state(), &theme(), W, H + 1))
    );
    assert!(matches!(
        &replay.state().ui.role,
        Role::Replay(r) if r.driver.as_ref().is_some_and(|d| d.user == "alice")
    ));
}

#[test]
fn a_watcher_of_a_truncated_or_restarted_stream_starts_over() {
    let mut rig = Rig::new("watch-restart");
    rig.at(500).status("nats", SourceStatus::Up);
    tick(&mut rig, 1000, 5.0, 8.0);
    rig.at(1200).fault(FaultPhase::Requested, None);
    rig.at(1300).fault(FaultPhase::Applied, Some(60));
    let path = rig.app.timeline_path();
    let text = std::fs::read_to_string(&path).unwrap();
    let mut projection = super::Projection::new(
        Role::Watch(Default::default()),
        "dark".into(),
        path.parent().unwrap().to_path_buf(),
    );
    let mut lines = crate::watch::follow::LineSplitter::default();
    let mut batch = crate::watch::follow::Batch::default();
    lines.feed(text.as_bytes(), &mut batch);
    for event in &batch.events {
        projection.apply(event);
    }
    assert!(projection.is_set_up());
    assert_eq!(projection.state.faults.active.len(), 1);
    assert_eq!(projection.state.faults.active[0].expires_ms, 61_300);
    assert_eq!(
        projection.state.faults.catalog,
        crate::ui::test_support::catalog()
    );
    projection.restart();
    assert!(projection.state.faults.active.is_empty());
    assert_eq!(projection.state.session.name, "");
}

#[test]
fn a_first_schema_file_without_setup_still_replays() {
    // Written before `schema` and `setup` existed: no schema field, samples once per tick.
    let dir = crate::services::testing::test_dir("replay-schema-1");
    let lines = [
        r#"{"ts":"2026-11-28T10:00:00Z","offset_ms":0,"kind":"session_start","session":"old","config":"/nonexistent/gameday.toml","version":"0.1.0"}"#,
        r#"{"ts":"2026-11-28T10:00:01Z","offset_ms":1000,"kind":"source_up","source":"nats"}"#,
        r#"{"ts":"2026-11-28T10:00:02Z","offset_ms":2000,"kind":"samples","points":[["nats.up",1.0],["nats.rtt_ms",0.5]]}"#,
        r#"{"ts":"2026-11-28T10:00:03Z","offset_ms":3000,"kind":"fault","id":"f1","name":"pg-hold","phase":"requested","target":"postgres"}"#,
        r#"{"ts":"2026-11-28T10:00:03Z","offset_ms":3100,"kind":"fault","id":"f1","name":"pg-hold","phase":"applied","target":"postgres"}"#,
    ];
    std::fs::write(dir.join("timeline.jsonl"), lines.join("\n") + "\n").unwrap();
    let mut replay = Replay::open(&dir, "dark".into()).unwrap();
    replay.seek(u64::MAX);
    let state = replay.state();
    assert_eq!(state.session.name, "old");
    assert_eq!(state.metrics.current("nats.rtt_ms"), Some(0.5));
    assert_eq!(state.faults.active.len(), 1);
    assert!(state.source("nats").is_some_and(|s| s.status.is_up()));
}
