use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Utc};

use super::*;
use crate::timeline::{Cause, EventKind, FaultPhase, Timeline, TimelineEvent};

fn at(ms: u64, kind: EventKind) -> TimelineEvent {
    let start: DateTime<Utc> = "2026-11-28T10:00:00Z".parse().unwrap();
    TimelineEvent {
        ts: start + chrono::Duration::milliseconds(ms as i64),
        offset_ms: ms,
        kind,
    }
}

fn samples(points: &[(&str, f64)]) -> EventKind {
    EventKind::Samples {
        points: points.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
    }
}

/// A drill: the broker goes down during a latency fault; pending rises past crit and recovers.
fn drill() -> Vec<TimelineEvent> {
    let pending = "nats.TASKS.workers.pending";
    let mut thresholds = BTreeMap::new();
    thresholds.insert(
        pending.to_string(),
        Threshold::above(Some(100.0), Some(1000.0)),
    );
    let mut ev = vec![
        at(
            0,
            EventKind::SessionStart {
                session: "drill".into(),
                config: "gameday.toml".into(),
                version: "0.1.0".into(),
                schema: crate::timeline::SCHEMA,
                thresholds,
            },
        ),
        at(
            500,
            EventKind::SourceUp {
                source: "nats".into(),
            },
        ),
    ];
    for s in 1..=20u64 {
        let v = match s {
            1..=5 => 10.0,
            6..=8 => 500.0,
            9..=12 => 2000.0,
            _ => 20.0,
        };
        ev.push(at(
            s * 1000,
            samples(&[
                (pending, v),
                ("nats.up", 1.0),
                (
                    "nats.rtt_ms",
                    if (6..=12).contains(&s) { 200.0 } else { 1.0 },
                ),
            ]),
        ));
    }
    ev.extend([
        at(
            5500,
            EventKind::Fault {
                id: "f1".into(),
                name: "nats-latency".into(),
                phase: FaultPhase::Requested,
                target: "nats".into(),
                detail: String::new(),
                cause: Some(Cause::Key("1".into())),
                lease_ms: None,
            },
        ),
        at(
            5600,
            EventKind::Fault {
                id: "f1".into(),
                name: "nats-latency".into(),
                phase: FaultPhase::Applied,
                target: "nats".into(),
                detail: "latency 200ms ±20ms downstream".into(),
                cause: None,
                lease_ms: None,
            },
        ),
        at(
            6000,
            EventKind::Threshold {
                key: pending.into(),
                level: Level::Warn,
                value: 500.0,
            },
        ),
        at(
            9000,
            EventKind::Threshold {
                key: pending.into(),
                level: Level::Crit,
                value: 2000.0,
            },
        ),
        at(
            9500,
            EventKind::SourceDown {
                source: "nats".into(),
                reason: "connection refused".into(),
            },
        ),
        at(
            10_000,
            EventKind::Mark {
                label: "mark 1".into(),
            },
        ),
        at(
            11_000,
            EventKind::Note {
                text: "improve: alert on consumer lag".into(),
            },
        ),
        at(
            12_500,
            EventKind::Fault {
                id: "f1".into(),
                name: "nats-latency".into(),
                phase: FaultPhase::RevertRequested,
                target: "nats".into(),
                detail: String::new(),
                cause: Some(Cause::Key("r".into())),
                lease_ms: None,
            },
        ),
        at(
            12_600,
            EventKind::Fault {
                id: "f1".into(),
                name: "nats-latency".into(),
                phase: FaultPhase::Reverted,
                target: "nats".into(),
                detail: String::new(),
                cause: Some(Cause::Key("r".into())),
                lease_ms: None,
            },
        ),
        at(
            12_700,
            EventKind::SourceUp {
                source: "nats".into(),
            },
        ),
        at(
            13_000,
            EventKind::Threshold {
                key: pending.into(),
                level: Level::Ok,
                value: 20.0,
            },
        ),
        at(
            20_500,
            EventKind::SessionEnd {
                reason: "key q".into(),
            },
        ),
    ]);
    ev.sort_by_key(|e| e.offset_ms);
    ev
}

#[test]
fn the_report_tells_the_drill() {
    let r = Report::build(&drill());
    assert_eq!(r.session.name, "drill");
    assert_eq!(r.session.duration_ms, 20_500);
    assert_eq!(r.outages.len(), 1);
    assert_eq!(
        (
            r.outages[0].from_ms,
            r.outages[0].to_ms,
            r.outages[0].duration_ms
        ),
        (9500, Some(12_700), 3200)
    );
    let crit: Vec<_> = r
        .crossings
        .iter()
        .filter(|c| c.level == Level::Crit)
        .collect();
    assert_eq!(crit.len(), 1);
    assert_eq!(
        (crit[0].peak, crit[0].from_ms, crit[0].to_ms),
        (2000.0, 9000, Some(13_000))
    );
    let f = &r.faults[0];
    assert_eq!(
        (f.outcome.as_str(), f.duration_ms),
        ("reverted", Some(7000))
    );
    assert_eq!(f.ended_by.as_deref(), Some("key r"));
    let rtt = f.metrics.iter().find(|m| m.key == "nats.rtt_ms").unwrap();
    assert_eq!(rtt.before.unwrap().max, 1.0);
    assert_eq!(rtt.during.unwrap().max, 200.0);
    assert_eq!(rtt.after.unwrap().max, 1.0);
    let pending = r
        .metrics
        .iter()
        .find(|m| m.key.ends_with(".pending"))
        .unwrap();
    assert_eq!(pending.stats.max, 2000.0);
    // The outage at 9.5 s leaves a gap until the next sample: 0.5 s + 3 s at crit.
    assert_eq!(pending.time_above_crit_ms, 3500);
    assert_eq!(pending.time_above_warn_ms, 6500);
    assert_eq!(r.improvements, vec!["alert on consumer lag".to_string()]);
    assert_eq!(r.annotations.len(), 2);
}

#[test]
fn markdown_snapshot() {
    insta::assert_snapshot!(to_markdown(&Report::build(&drill())));
}

#[test]
fn json_snapshot() {
    let json: serde_json::Value = serde_json::from_str(&to_json(&Report::build(&drill()))).unwrap();
    insta::assert_json_snapshot!(json);
}

#[test]
fn a_quiet_session_passes_and_a_killed_one_says_so() {
    let ev = vec![
        at(
            0,
            EventKind::SessionStart {
                session: "quiet".into(),
                config: "g.toml".into(),
                version: "0.1.0".into(),
                schema: crate::timeline::SCHEMA,
                thresholds: BTreeMap::new(),
            },
        ),
        at(1000, samples(&[("pg.up", 1.0)])),
    ];
    let r = Report::build(&ev);
    assert_eq!(r.results.len(), 1);
    assert_eq!(r.results[0].outcome, Outcome::Pass);
    let md = to_markdown(&r);
    assert!(md.contains("the console was killed (no end recorded)"));
    assert!(md.contains("### Hypothesis\n\nNot run: free-play session"));
}

#[test]
fn reports_are_rebuilt_from_the_timeline_file_alone() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(".artifacts/test")
        .join(format!("report-dir-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut t = Timeline::create(&dir, Default::default()).unwrap();
    for e in drill() {
        t.write(e).unwrap();
    }
    let files = write_from_dir(&dir, &Format::ALL).unwrap();
    assert_eq!(
        files,
        vec![
            dir.join("report.md"),
            dir.join("report.json"),
            dir.join("report.html")
        ]
    );
    let md = std::fs::read_to_string(&files[0]).unwrap();
    assert!(
        md.contains("nats was down for 3.2s (connection refused), then recovered"),
        "{md}"
    );
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    assert!(
        write_from_dir(&empty, &Format::ALL)
            .unwrap_err()
            .contains("cannot read")
    );
}

#[test]
fn durations_read_naturally() {
    assert_eq!(fmt_ms(450), "450ms");
    assert_eq!(fmt_ms(3200), "3.2s");
    assert_eq!(fmt_ms(61_000), "1m 1s");
    assert_eq!(fmt_ms(3_720_000), "1h 2m");
}

mod html;
mod junit;
