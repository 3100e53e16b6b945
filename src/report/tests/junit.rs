//! JUnit XML: well-formed, counts that match, failures that say what was measured.

use roxmltree::Node;

use super::html::{nats_outage_drill, parse};
use super::*;
use crate::timeline::{CheckGroup, Verdict};

fn cases<'a, 'i>(doc: &'a roxmltree::Document<'i>) -> Vec<Node<'a, 'i>> {
    doc.descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .collect()
}

fn failure<'a, 'i>(case: &Node<'a, 'i>) -> Option<Node<'a, 'i>> {
    case.children().find(|n| n.has_tag_name("failure"))
}

fn counts(doc: &roxmltree::Document) -> (usize, usize) {
    let suite = doc
        .descendants()
        .find(|n| n.has_tag_name("testsuite"))
        .unwrap();
    (
        suite.attribute("tests").unwrap().parse().unwrap(),
        suite.attribute("failures").unwrap().parse().unwrap(),
    )
}

#[test]
fn a_scenario_is_a_suite_of_checks_and_a_verdict() {
    let xml = to_junit(&Report::build(&nats_outage_drill()));
    let doc = parse(&xml);
    let suite = doc
        .descendants()
        .find(|n| n.has_tag_name("testsuite"))
        .unwrap();
    assert_eq!(suite.attribute("name"), Some("NATS Broker Failure"));
    let cases = cases(&doc);
    let failed: Vec<&Node> = cases.iter().filter(|c| failure(c).is_some()).collect();
    assert_eq!(counts(&doc), (cases.len(), failed.len()));
    assert_eq!((cases.len(), failed.len()), (6, 2));
    let names: Vec<(&str, &str)> = cases
        .iter()
        .map(|c| {
            (
                c.attribute("classname").unwrap(),
                c.attribute("name").unwrap(),
            )
        })
        .collect();
    assert_eq!(
        names,
        vec![
            ("gameday.baseline", "API p95 latency"),
            ("gameday.during", "API answers 202 during the outage"),
            ("gameday.during", "Retry queue absorbs tasks"),
            ("gameday.recovery", "Backlog drains"),
            ("gameday.recovery", "Notification latency back to baseline"),
            ("gameday.verdict", "verdict"),
        ]
    );
    // Recovery time is the test's time; the failure says what was measured.
    assert_eq!(cases[3].attribute("time"), Some("59.000"));
    let slow = failure(&cases[4]).unwrap();
    assert_eq!(
        slow.attribute("message"),
        Some("expected p95 of webhook.telegram.latency_ms.p95 < 250, measured 412")
    );
    assert_eq!(
        slow.text(),
        Some("still above 250 two minutes after the revert")
    );
    assert_eq!(
        failure(&cases[5]).unwrap().attribute("message"),
        Some("Fail: 1 recovery check failed: Notification latency back to baseline")
    );
}

#[test]
fn junit_snapshot() {
    let start = at(
        0,
        EventKind::SessionStart {
            session: "small".into(),
            config: "gameday.toml".into(),
            version: "0.1.0".into(),
            schema: crate::timeline::SCHEMA,
            thresholds: BTreeMap::new(),
        },
    );
    let check = |ms, group, name: &str, passed, value, recovered_after_ms| {
        at(
            ms,
            EventKind::Check {
                group,
                name: name.into(),
                expected: "p95 of probe.api.latency_ms < 500".into(),
                metric: Some("probe.api.latency_ms".into()),
                passed,
                value: Some(value),
                recovered_after_ms,
                detail: String::new(),
            },
        )
    };
    let events = vec![
        start,
        at(
            100,
            EventKind::ScenarioStart {
                title: "Webhook timeout".into(),
                file: "scenarios/webhook-timeout.toml".into(),
                hypothesis: "Timeouts are retried".into(),
                description: String::new(),
                checks: Vec::new(),
            },
        ),
        check(5_000, CheckGroup::Baseline, "API fast", true, 40.0, None),
        check(
            20_000,
            CheckGroup::During,
            "API fast <under load>",
            false,
            812.5,
            None,
        ),
        check(
            40_000,
            CheckGroup::Recovery,
            "API fast again",
            true,
            45.0,
            Some(12_300),
        ),
        at(
            41_000,
            EventKind::Verdict {
                verdict: Verdict::Aborted,
                reason: "abort condition \"5xx & timeouts\" tripped".into(),
            },
        ),
        at(
            41_500,
            EventKind::SessionEnd {
                reason: "scenario finished".into(),
            },
        ),
    ];
    let xml = to_junit(&Report::build(&events));
    parse(&xml);
    insta::assert_snapshot!(xml);
}

#[test]
fn free_play_tests_each_fault_and_each_outage_that_never_ended() {
    // The drill: one fault, reverted; one outage, recovered.
    let doc_text = to_junit(&Report::build(&drill()));
    let doc = parse(&doc_text);
    assert_eq!(counts(&doc), (1, 0));
    let case = &cases(&doc)[0];
    assert_eq!(case.attribute("classname"), Some("gameday.fault"));
    assert_eq!(
        case.attribute("name"),
        Some("nats-latency on nats at 10:00:05")
    );
    assert_eq!(case.attribute("time"), Some("7.000"));

    // Now the broker never comes back and a second fault's revert fails.
    let mut events: Vec<TimelineEvent> = drill()
        .into_iter()
        .filter(|e| !matches!(&e.kind, EventKind::SourceUp { .. } if e.offset_ms > 10_000))
        .collect();
    let fault = |ms, phase, detail: &str| {
        at(
            ms,
            EventKind::Fault {
                id: "f2".into(),
                name: "pg-hold".into(),
                phase,
                target: "postgres".into(),
                detail: detail.into(),
                cause: None,
                lease_ms: None,
            },
        )
    };
    events.extend([
        fault(14_000, FaultPhase::Requested, ""),
        fault(14_100, FaultPhase::Applied, "hold 50 connections"),
        fault(
            19_000,
            FaultPhase::Failed,
            "revert: connection reset <by peer>",
        ),
    ]);
    events.sort_by_key(|e| e.offset_ms);
    let xml = to_junit(&Report::build(&events));
    let doc = parse(&xml);
    assert_eq!(counts(&doc), (3, 2));
    let cases = cases(&doc);
    let messages: Vec<&str> = cases
        .iter()
        .filter_map(|c| failure(c)?.attribute("message"))
        .collect();
    assert_eq!(
        messages,
        vec![
            "failed: revert: connection reset <by peer>",
            "nats still down at the end after 11s: connection refused"
        ]
    );
    assert_eq!(cases[2].attribute("classname"), Some("gameday.outage"));
}

#[test]
fn junit_is_written_where_asked() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(".artifacts/test")
        .join(format!("report-junit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let report = Report::build(&nats_outage_drill());
    let path = dir.join("ci/results/gameday.xml");
    write_junit(&report, &path).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), to_junit(&report));

    let mut t = Timeline::create(&dir, Default::default()).unwrap();
    for e in nats_outage_drill() {
        t.write(e).unwrap();
    }
    let files = write_from_dir(&dir, &[Format::Junit]).unwrap();
    assert_eq!(files, vec![dir.join("junit.xml")]);
    let xml = std::fs::read_to_string(&files[0]).unwrap();
    assert_eq!(counts(&parse(&xml)), (6, 2));
    // Kept after a failure, for a look; removed after a pass.
    std::fs::remove_dir_all(&dir).unwrap();
}
