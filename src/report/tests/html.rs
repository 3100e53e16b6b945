//! `report.html`: the charts a reader needs, text shown as text, nothing fetched from anywhere,
//! and a size that stays small for long sessions.

use roxmltree::{Document, Node, ParsingOptions};

use super::*;
use crate::report::html::{PLOT_BOTTOM, PLOT_LEFT, PLOT_RIGHT};
use crate::timeline::{CheckGroup, Phase, Verdict};

pub(super) const HOSTILE_NOTE: &str = "queue at 240 <script>alert(\"x\")</script> & counting";

/// The reference experiment, six minutes long: NATS stops for two minutes while tasks keep
/// coming; the API stays fast, the retry queue absorbs the tasks, the backlog drains, but the
/// webhook latency does not come back in time.
pub(super) fn nats_outage_drill() -> Vec<TimelineEvent> {
    let pending = "nats.TASKS.workers.pending";
    let mut thresholds = BTreeMap::new();
    thresholds.insert(
        pending.to_string(),
        Threshold::above(Some(100.0), Some(1000.0)),
    );
    thresholds.insert(
        "probe.api.latency_ms".to_string(),
        Threshold::above(Some(300.0), Some(1000.0)),
    );
    let mut ev = vec![
        at(
            0,
            EventKind::SessionStart {
                session: "nats-drill".into(),
                config: "gameday.toml".into(),
                version: "0.1.0".into(),
                schema: crate::timeline::SCHEMA,
                thresholds,
            },
        ),
        at(
            200,
            EventKind::ScenarioStart {
                title: "NATS Broker Failure".into(),
                file: "scenarios/nats-broker-failure.toml".into(),
                hypothesis: "System handles NATS unavailability with graceful degradation".into(),
                description: "Stop the broker for two minutes while tasks are submitted.".into(),
                checks: Vec::new(),
            },
        ),
    ];
    let phase = |ms, phase| {
        at(
            ms,
            EventKind::ScenarioPhase {
                phase,
                detail: String::new(),
                until_ms: None,
            },
        )
    };
    ev.extend([
        phase(1_000, Phase::Baseline),
        phase(60_000, Phase::Injecting),
        phase(61_000, Phase::Observing),
        phase(181_000, Phase::Recovering),
        phase(300_000, Phase::Verdict),
    ]);
    // A little deterministic wobble so the lines look like measurements.
    let wobble = |s: u64, amplitude: f64| ((s * 37 % 11) as f64 - 5.0) / 5.0 * amplitude;
    for s in 1..=301u64 {
        let down = (61..183).contains(&s);
        let mut points = vec![
            ("nats.up", if down { 0.0 } else { 1.0 }),
            (
                "probe.api.latency_ms",
                if down { 120.0 } else { 40.0 } + wobble(s, 8.0),
            ),
            ("probe.api.status.500", 0.0),
            (
                "pg.gauge.retry_queue",
                match s {
                    0..61 => 0.0,
                    61..183 => ((s - 61) * 2) as f64,
                    _ => 244u64.saturating_sub((s - 183) * 8) as f64,
                },
            ),
            ("pg.connections.used", 12.0 + wobble(s, 2.0).round()),
            ("pg.app.worker.utilization", 0.4 + wobble(s, 0.05)),
            (
                "webhook.telegram.latency_ms.p95",
                if s < 61 { 180.0 } else { 410.0 } + wobble(s, 20.0),
            ),
            ("host.cpu", 30.0 + wobble(s, 10.0)),
        ];
        if !down {
            let lag = match s {
                0..61 => 5.0 + wobble(s, 3.0),
                _ => 1500u64.saturating_sub((s - 183) * 30) as f64,
            };
            points.push((pending, lag));
            points.push(("nats.TASKS.audit.pending", 0.0));
        }
        ev.push(at(s * 1000, samples(&points)));
    }
    let fault = |ms, phase, detail: &str, cause| {
        at(
            ms,
            EventKind::Fault {
                id: "f1".into(),
                name: "nats-stop".into(),
                phase,
                target: "container gameday-nats".into(),
                detail: detail.into(),
                cause,
                lease_ms: None,
            },
        )
    };
    let check = |ms, group, name: &str, expected: &str, metric: Option<&str>, passed, value| {
        at(
            ms,
            EventKind::Check {
                group,
                name: name.into(),
                expected: expected.into(),
                metric: metric.map(str::to_string),
                passed,
                value: Some(value),
                recovered_after_ms: None,
                detail: String::new(),
            },
        )
    };
    ev.extend([
        check(
            59_000,
            CheckGroup::Baseline,
            "API p95 latency",
            "p95 of probe.api.latency_ms < 300",
            Some("probe.api.latency_ms"),
            true,
            46.0,
        ),
        fault(
            60_000,
            FaultPhase::Requested,
            "",
            Some(Cause::Scenario("inject".into())),
        ),
        fault(60_400, FaultPhase::Applied, "stop for 2m", None),
        at(
            61_000,
            EventKind::SourceDown {
                source: "nats".into(),
                reason: "connection refused".into(),
            },
        ),
        at(
            90_000,
            EventKind::Mark {
                label: "20 tasks submitted".into(),
            },
        ),
        at(
            120_000,
            EventKind::Note {
                text: HOSTILE_NOTE.into(),
            },
        ),
        // Read by name only: the check names its metric in the expectation text.
        check(
            170_000,
            CheckGroup::During,
            "API answers 202 during the outage",
            "max of probe.api.status.500 == 0",
            None,
            true,
            0.0,
        ),
        check(
            170_000,
            CheckGroup::During,
            "Retry queue absorbs tasks",
            "max of pg.gauge.retry_queue > 0",
            Some("pg.gauge.retry_queue"),
            true,
            218.0,
        ),
        fault(
            180_000,
            FaultPhase::RevertRequested,
            "",
            Some(Cause::Scenario("recover".into())),
        ),
        fault(
            181_000,
            FaultPhase::Reverted,
            "",
            Some(Cause::Scenario("recover".into())),
        ),
        at(
            183_000,
            EventKind::SourceUp {
                source: "nats".into(),
            },
        ),
        at(
            183_000,
            EventKind::Threshold {
                key: pending.into(),
                level: Level::Crit,
                value: 1500.0,
            },
        ),
        at(
            200_000,
            EventKind::Threshold {
                key: pending.into(),
                level: Level::Warn,
                value: 990.0,
            },
        ),
        at(
            215_000,
            EventKind::Note {
                text: "improve: tell users that processing is delayed".into(),
            },
        ),
        at(
            230_000,
            EventKind::Threshold {
                key: pending.into(),
                level: Level::Ok,
                value: 90.0,
            },
        ),
        at(
            240_000,
            EventKind::Check {
                group: CheckGroup::Recovery,
                name: "Backlog drains".into(),
                expected: "nats.TASKS.workers.pending < 10".into(),
                metric: Some(pending.into()),
                passed: true,
                value: Some(0.0),
                recovered_after_ms: Some(59_000),
                detail: String::new(),
            },
        ),
        at(
            300_000,
            EventKind::Check {
                group: CheckGroup::Recovery,
                name: "Notification latency back to baseline".into(),
                expected: "p95 of webhook.telegram.latency_ms.p95 < 250".into(),
                metric: Some("webhook.telegram.latency_ms.p95".into()),
                passed: false,
                value: Some(412.0),
                recovered_after_ms: None,
                detail: "still above 250 two minutes after the revert".into(),
            },
        ),
        at(
            300_500,
            EventKind::Verdict {
                verdict: Verdict::Fail,
                reason: "1 recovery check failed: Notification latency back to baseline".into(),
            },
        ),
        at(
            302_000,
            EventKind::SessionEnd {
                reason: "scenario finished".into(),
            },
        ),
    ]);
    ev.sort_by_key(|e| e.offset_ms);
    ev
}

pub(super) fn parse(text: &str) -> Document<'_> {
    Document::parse_with_options(
        text,
        ParsingOptions {
            allow_dtd: true,
            ..ParsingOptions::default()
        },
    )
    .unwrap_or_else(|e| panic!("not well-formed: {e}"))
}

fn has_class(node: &Node, class: &str) -> bool {
    node.attribute("class")
        .is_some_and(|c| c.split_whitespace().any(|c| c == class))
}

fn all_text(node: Node) -> String {
    node.descendants()
        .filter(Node::is_text)
        .filter_map(|n| n.text())
        .collect()
}

fn attr_f64(node: &Node, name: &str) -> f64 {
    node.attribute(name).unwrap().parse().unwrap()
}

fn render(events: &[TimelineEvent]) -> String {
    to_html(&Report::build(events), &replay(events))
}

fn charts<'a, 'i>(doc: &'a Document<'i>) -> Vec<Node<'a, 'i>> {
    doc.descendants()
        .filter(|n| n.has_tag_name("svg"))
        .collect()
}

fn chart<'a, 'i>(doc: &'a Document<'i>, key: &str) -> Node<'a, 'i> {
    charts(doc)
        .into_iter()
        .find(|n| n.attribute("data-metric") == Some(key))
        .unwrap_or_else(|| panic!("no chart for {key}"))
}

#[test]
fn every_key_metric_gets_a_chart_and_noise_does_not() {
    let html = render(&nats_outage_drill());
    let doc = parse(&html);
    let charted: Vec<&str> = charts(&doc)
        .iter()
        .map(|n| n.attribute("data-metric").unwrap())
        .collect();
    // Checks' metrics first (one found only in the expectation text), then thresholded ones,
    // then the headliners; host.cpu is no key metric and the audit lag stayed at zero.
    assert_eq!(
        charted,
        vec![
            "probe.api.latency_ms",
            "probe.api.status.500",
            "pg.gauge.retry_queue",
            "nats.TASKS.workers.pending",
            "webhook.telegram.latency_ms.p95",
            "nats.up",
            "pg.app.worker.utilization",
            "pg.connections.used",
        ]
    );
}

#[test]
fn charts_shade_faults_pin_marks_and_draw_thresholds_and_phases() {
    let events = nats_outage_drill();
    let report = Report::build(&events);
    let html = to_html(&report, &replay(&events));
    let doc = parse(&html);
    let span_ms = report.session.duration_ms as f64;
    let x_of = |ms: u64| PLOT_LEFT + ms as f64 / span_ms * (PLOT_RIGHT - PLOT_LEFT);
    let fault = &report.faults[0];
    let (from, to) = (fault.applied_ms.unwrap(), fault.ended_ms.unwrap());
    for svg in charts(&doc) {
        let key = svg.attribute("data-metric").unwrap();
        let spans: Vec<Node> = svg
            .descendants()
            .filter(|n| n.has_tag_name("rect") && has_class(n, "fault-span"))
            .collect();
        assert_eq!(spans.len(), report.faults.len(), "{key}");
        let (x, width) = (attr_f64(&spans[0], "x"), attr_f64(&spans[0], "width"));
        assert!((x - x_of(from)).abs() < 0.06, "{key}: x {x}");
        assert!(
            (x + width - x_of(to)).abs() < 0.11,
            "{key}: fault ends at {}",
            x + width
        );
        let label = svg
            .descendants()
            .find(|n| has_class(n, "fault-label"))
            .unwrap();
        assert_eq!(label.text(), Some("nats-stop"));

        let pinned: Vec<Node> = svg
            .descendants()
            .filter(|n| n.has_tag_name("line") && (has_class(n, "mark") || has_class(n, "note")))
            .collect();
        assert_eq!(pinned.len(), report.annotations.len(), "{key}");
        for (line, a) in pinned.iter().zip(&report.annotations) {
            assert!((attr_f64(line, "x1") - x_of(a.offset_ms)).abs() < 0.06);
            assert!(has_class(line, a.kind));
            let tooltip = line.parent().unwrap().first_element_child().unwrap();
            assert!(tooltip.has_tag_name("title"));
            assert!(tooltip.text().unwrap().ends_with(&a.text), "{key}");
        }
        let phases = svg
            .descendants()
            .filter(|n| n.has_tag_name("line") && has_class(n, "phase"))
            .count();
        assert_eq!(phases, 5, "{key}");
    }

    let pending = chart(&doc, "nats.TASKS.workers.pending");
    let thresholds: Vec<&str> = pending
        .descendants()
        .filter(|n| has_class(n, "threshold-label"))
        .filter_map(|n| n.text())
        .collect();
    assert_eq!(thresholds, vec!["warn 100", "crit 1000"]);
    // A bound far above the data is named, not drawn: the latency line stays readable.
    let latency = chart(&doc, "probe.api.latency_ms");
    let labels: Vec<&str> = latency
        .descendants()
        .filter(|n| has_class(n, "threshold-label"))
        .filter_map(|n| n.text())
        .collect();
    assert_eq!(labels, vec!["warn 300", "crit 1000 above the chart"]);
    // The outage is a gap: the lag line stops and starts again.
    let d = pending
        .descendants()
        .find(|n| has_class(n, "line"))
        .unwrap()
        .attribute("d")
        .unwrap();
    assert_eq!(d.matches('M').count(), 2, "{d}");
    let no_thresholds = chart(&doc, "nats.up");
    assert!(
        !no_thresholds
            .descendants()
            .any(|n| has_class(&n, "threshold"))
    );
}

#[test]
fn the_page_loads_nothing_and_runs_nothing() {
    let html = render(&nats_outage_drill());
    let doc = parse(&html);
    let lower = html.to_ascii_lowercase();
    for banned in ["<script", "<link", "<img", "<iframe", "@import", "url("] {
        assert!(!lower.contains(banned), "{banned}");
    }
    for node in doc.descendants().filter(Node::is_element) {
        for a in node.attributes() {
            assert!(
                !a.value().contains("http://") && !a.value().contains("https://"),
                "<{}> {}={}",
                node.tag_name().name(),
                a.name(),
                a.value()
            );
            assert!(!a.name().starts_with("on"), "event handler {}", a.name());
        }
    }
}

#[test]
fn operator_text_is_shown_as_text() {
    let html = render(&nats_outage_drill());
    assert!(!html.contains("<script"));
    let doc = parse(&html);
    let listed = doc
        .descendants()
        .find(|n| n.attribute("id") == Some("annotations"))
        .unwrap();
    assert!(
        all_text(listed).contains(HOSTILE_NOTE),
        "{}",
        all_text(listed)
    );
    let tooltip = doc
        .descendants()
        .filter(|n| n.has_tag_name("title"))
        .filter_map(|n| n.text())
        .find(|t| t.contains("alert"))
        .unwrap();
    assert!(tooltip.ends_with(HOSTILE_NOTE), "{tooltip}");
}

#[test]
fn the_write_up_reads_in_order() {
    let html = render(&nats_outage_drill());
    let doc = parse(&html);
    let h1 = doc.descendants().find(|n| n.has_tag_name("h1")).unwrap();
    assert_eq!(h1.text(), Some("Chaos Experiment: NATS Broker Failure"));
    let badge = doc.descendants().find(|n| has_class(n, "verdict")).unwrap();
    assert!(has_class(&badge, "fail"));
    assert_eq!(badge.text(), Some("❌ Fail"));
    let headings: Vec<String> = doc
        .descendants()
        .filter(|n| n.has_tag_name("h2"))
        .map(all_text)
        .collect();
    assert_eq!(
        headings,
        vec![
            "Hypothesis",
            "Baseline",
            "Injection",
            "Results",
            "Recovery",
            "Improvements",
            "Key metrics",
            "Metrics",
            "Outages",
            "Marks and notes",
            "Timeline"
        ]
    );
    let results = doc
        .descendants()
        .find(|n| n.attribute("id") == Some("results"))
        .unwrap();
    let results = all_text(results);
    assert!(
        results.contains(
            "✅ Retry queue absorbs tasks (max of pg.gauge.retry_queue > 0, measured 218)"
        ),
        "{results}"
    );
    let recovery = all_text(
        doc.descendants()
            .find(|n| n.attribute("id") == Some("recovery"))
            .unwrap(),
    );
    assert!(
        recovery.contains("✅ 59s after the last revert"),
        "{recovery}"
    );
    assert!(
        recovery.contains(
            "❌ did not recover: still above 250 two minutes after the revert (measured 412)"
        ),
        "{recovery}"
    );
}

#[test]
fn a_free_play_session_says_so() {
    let html = render(&drill());
    let doc = parse(&html);
    let h1 = doc.descendants().find(|n| n.has_tag_name("h1")).unwrap();
    assert_eq!(h1.text(), Some("Chaos Experiment: free-play session drill"));
    let badge = doc.descendants().find(|n| has_class(n, "verdict")).unwrap();
    // The drill: the fault reverted, nats went down and came back, pending reached crit.
    assert_eq!(badge.text(), Some("Free play: 1 ✅ · 0 ❌ · 2 ⚠️"));
    assert!(html.contains("Not run: free-play session (no scenario)."));
    assert_eq!(
        charts(&doc)
            .iter()
            .map(|n| n.attribute("data-metric").unwrap())
            .collect::<Vec<_>>(),
        vec!["nats.TASKS.workers.pending", "nats.rtt_ms", "nats.up"]
    );
}

/// One hour of 1 s samples for ten series, with a fault, a dip and a few notes.
fn an_hour() -> Vec<TimelineEvent> {
    let keys: Vec<String> = (0..8)
        .map(|i| format!("probe.svc{i}.latency_ms"))
        .chain(["nats.up".to_string(), "pg.connections.used".to_string()])
        .collect();
    let mut ev = vec![at(
        0,
        EventKind::SessionStart {
            session: "hour".into(),
            config: "gameday.toml".into(),
            version: "0.1.0".into(),
            schema: crate::timeline::SCHEMA,
            thresholds: BTreeMap::new(),
        },
    )];
    for s in 1..=3600u64 {
        let points: Vec<(String, f64)> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let v = match k.as_str() {
                    "nats.up" if s == 1800 => 0.0,
                    "nats.up" => 1.0,
                    _ => 20.0 + ((s * (i as u64 + 3)) % 17) as f64 + 0.25,
                };
                (k.clone(), v)
            })
            .collect();
        ev.push(at(s * 1000, EventKind::Samples { points }));
        if s % 600 == 0 {
            ev.push(at(
                s * 1000 + 1,
                EventKind::Note {
                    text: format!("checkpoint {s}"),
                },
            ));
        }
    }
    ev.push(at(
        3_600_500,
        EventKind::SessionEnd {
            reason: "key q".into(),
        },
    ));
    ev
}

#[test]
fn an_hour_of_samples_makes_a_small_page_that_keeps_the_dips() {
    let events = an_hour();
    let html = render(&events);
    assert!(html.len() < 2_000_000, "{} bytes", html.len());
    let doc = parse(&html);
    assert_eq!(charts(&doc).len(), 10);
    for svg in charts(&doc) {
        let d = svg
            .descendants()
            .find(|n| has_class(n, "line"))
            .unwrap()
            .attribute("d")
            .unwrap();
        let points = d.split([' ', 'L', 'M']).filter(|p| p.contains(',')).count();
        // Two points per pixel column at most, out of 3600 samples.
        assert!(
            points <= 2 * (PLOT_RIGHT - PLOT_LEFT) as usize,
            "{points} points"
        );
    }
    // The one-second dip of nats.up survives the downsampling: the line touches the bottom.
    let up = chart(&doc, "nats.up");
    let d = up
        .descendants()
        .find(|n| has_class(n, "line"))
        .unwrap()
        .attribute("d")
        .unwrap();
    assert!(d.contains(&format!(",{PLOT_BOTTOM:.1}")), "{d}");
    // Written where a session writes it, for a look in a browser.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(".artifacts/test")
        .join(format!("report-html-hour-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut t = Timeline::create(&dir, Default::default()).unwrap();
    for e in events {
        t.write(e).unwrap();
    }
    let files = write_from_dir(&dir, &[Format::Html]).unwrap();
    assert_eq!(files, vec![dir.join("report.html")]);
    assert_eq!(std::fs::read_to_string(&files[0]).unwrap(), html);
    // Kept after a failure, for a look; removed after a pass.
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_session_writes_the_html_report_with_the_others() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(".artifacts/test")
        .join(format!("report-html-drill-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut t = Timeline::create(&dir, Default::default()).unwrap();
    for e in nats_outage_drill() {
        t.write(e).unwrap();
    }
    let files = write_from_dir(&dir, &Format::ALL).unwrap();
    assert_eq!(files.last(), Some(&dir.join("report.html")));
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    parse(&html);
    assert!(html.contains("NATS Broker Failure"));
    assert!(!dir.join("junit.xml").exists(), "JUnit only when asked");
    // Kept after a failure, for a look; removed after a pass.
    std::fs::remove_dir_all(&dir).unwrap();
}
