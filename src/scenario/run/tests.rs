use std::path::Path;
use std::time::Duration;

use super::*;
use crate::config::Config;

fn scenario(extra: &str) -> Scenario {
    let config = Config::from_text(
        Path::new("g.toml"),
        r#"
[[probe]]
name = "api"
url = "http://127.0.0.1:1/"
[[proxy]]
name = "db"
listen = "127.0.0.1:1"
upstream = "127.0.0.1:2"
[[fault]]
name = "cut"
kind = "down"
target = "db"
"#,
    )
    .unwrap();
    let text = format!(
        r#"
title = "t"
hypothesis = "h"
[baseline]
duration = "2s"
[[baseline.check]]
metric = "probe.api.ok"
op = "=="
value = 1
[[step]]
at = "1s"
fault = "cut"
duration = "3s"
[[expect_during]]
metric = "probe.api.latency_ms"
aggregate = "max"
op = "<"
value = 500
[recovery]
within = "5s"
[[recovery.check]]
metric = "probe.api.latency_ms"
op = "<"
value = 50
{extra}
"#
    );
    Scenario::from_text(Path::new("s.toml"), &text, &config).unwrap()
}

/// Drives a run through time with a metric feed.
struct Drive {
    run: ScenarioRun,
    store: MetricStore,
    log: Vec<Action>,
}

impl Drive {
    fn new(s: Scenario) -> Drive {
        let (run, log) = ScenarioRun::start(s, 0);
        Drive {
            run,
            store: MetricStore::new(10_000),
            log,
        }
    }
    fn sample(&mut self, at: u64, key: &str, v: f64) {
        self.store.record(at, key, v);
    }
    fn tick(&mut self, at: u64) -> Vec<Action> {
        let a = self.run.tick(at, &self.store);
        self.log.extend(a.clone());
        a
    }
    fn fault(&mut self, at: u64, phase: FaultPhase) {
        let a = self.run.on_fault("cut", phase, "boom", at);
        self.log.extend(a);
    }
    fn checks(&self) -> Vec<(CheckGroup, bool)> {
        self.log
            .iter()
            .filter_map(|a| match a {
                Action::Record(EventKind::Check { group, passed, .. }) => Some((*group, *passed)),
                _ => None,
            })
            .collect()
    }
}

#[test]
fn a_healthy_system_passes_through_every_phase() {
    let mut d = Drive::new(scenario(""));
    for t in (0..=2000).step_by(500) {
        d.sample(t, "probe.api.ok", 1.0);
        d.sample(t, "probe.api.latency_ms", 10.0);
        d.tick(t);
    }
    assert_eq!(d.run.phase, Phase::Injecting);
    assert!(d.tick(2500).is_empty(), "the step is at +1s");
    let a = d.tick(3000);
    assert!(
        a.contains(&Action::Inject {
            catalog_index: 0,
            lease: Duration::from_secs(3)
        }),
        "{a:?}"
    );
    assert_eq!(d.run.phase, Phase::Observing);
    d.fault(3100, FaultPhase::Applied);
    d.sample(4000, "probe.api.latency_ms", 300.0);
    d.tick(4000);
    d.fault(6100, FaultPhase::Reverted);
    d.tick(6200);
    assert_eq!(d.run.phase, Phase::Recovering);
    assert_eq!(d.run.phase_deadline_ms(), Some(6100 + 5000));
    d.sample(7000, "probe.api.latency_ms", 12.0);
    d.tick(7000);
    assert_eq!(d.run.verdict.as_ref().map(|v| v.0), Some(Verdict::Pass));
    assert_eq!(
        d.checks(),
        vec![
            (CheckGroup::Baseline, true),
            (CheckGroup::During, true),
            (CheckGroup::Recovery, true)
        ]
    );
    let recovered = d.log.iter().find_map(|a| match a {
        Action::Record(EventKind::Check {
            group: CheckGroup::Recovery,
            recovered_after_ms,
            ..
        }) => *recovered_after_ms,
        _ => None,
    });
    assert_eq!(recovered, Some(900), "measured from the last revert");
}

#[test]
fn an_unhealthy_baseline_aborts_before_anything_is_injected() {
    let mut d = Drive::new(scenario(""));
    d.sample(0, "probe.api.ok", 0.0);
    d.tick(2000);
    assert_eq!(d.run.verdict.as_ref().map(|v| v.0), Some(Verdict::Aborted));
    assert!(
        d.run
            .verdict
            .as_ref()
            .unwrap()
            .1
            .starts_with("the steady state did not hold")
    );
    assert!(
        !d.log
            .iter()
            .any(|a| matches!(a, Action::Inject { .. } | Action::RevertAll { .. }))
    );
}

#[test]
fn a_failed_expectation_fails_with_the_measured_value() {
    let mut d = Drive::new(scenario(""));
    d.sample(0, "probe.api.ok", 1.0);
    d.tick(2000);
    d.tick(3000);
    d.fault(3000, FaultPhase::Applied);
    d.sample(3500, "probe.api.latency_ms", 900.0);
    d.tick(3500);
    d.fault(6000, FaultPhase::Reverted);
    d.tick(6000);
    d.sample(6500, "probe.api.latency_ms", 5.0);
    d.tick(6500);
    let (verdict, reason) = d.run.verdict.clone().unwrap();
    assert_eq!(verdict, Verdict::Fail);
    assert!(
        reason.contains("max of probe.api.latency_ms < 500"),
        "{reason}"
    );
    let during = d.log.iter().find_map(|a| match a {
        Action::Record(EventKind::Check {
            group: CheckGroup::During,
            value,
            passed,
            ..
        }) => Some((*value, *passed)),
        _ => None,
    });
    assert_eq!(during, Some((Some(900.0), false)));
}

#[test]
fn recovery_that_misses_its_deadline_fails() {
    let mut d = Drive::new(scenario(""));
    d.sample(0, "probe.api.ok", 1.0);
    d.tick(2000);
    d.tick(3000);
    d.fault(3000, FaultPhase::Applied);
    d.sample(3000, "probe.api.latency_ms", 100.0);
    d.fault(6000, FaultPhase::Reverted);
    d.tick(6000);
    d.sample(8000, "probe.api.latency_ms", 400.0);
    d.tick(10_999);
    assert!(d.run.verdict.is_none());
    d.tick(11_000);
    assert_eq!(d.run.verdict.as_ref().map(|v| v.0), Some(Verdict::Fail));
    assert!(d.checks().contains(&(CheckGroup::Recovery, false)));
}

#[test]
fn an_abort_condition_reverts_everything_and_aborts() {
    let abort = r#"
[[abort_when]]
metric = "probe.api.latency_ms"
aggregate = "max"
window = "1s"
op = ">"
value = 5000
"#;
    let mut d = Drive::new(scenario(abort));
    d.sample(0, "probe.api.ok", 1.0);
    d.tick(2000);
    d.tick(3000);
    d.fault(3000, FaultPhase::Applied);
    d.sample(3500, "probe.api.latency_ms", 9000.0);
    let a = d.tick(3600);
    assert!(
        matches!(
            a[0],
            Action::Record(EventKind::Check {
                group: CheckGroup::Abort,
                ..
            })
        ),
        "{a:?}"
    );
    assert!(a.iter().any(|x| matches!(x, Action::RevertAll { .. })));
    assert_eq!(d.run.verdict.as_ref().map(|v| v.0), Some(Verdict::Aborted));
    assert!(d.tick(4000).is_empty(), "a finished run does nothing");
}

#[test]
fn a_fault_that_cannot_be_injected_aborts_the_run() {
    let mut d = Drive::new(scenario(""));
    d.sample(0, "probe.api.ok", 1.0);
    d.tick(2000);
    d.tick(3000);
    d.fault(3050, FaultPhase::Failed);
    let (verdict, reason) = d.run.verdict.clone().unwrap();
    assert_eq!(
        (verdict, reason.as_str()),
        (Verdict::Aborted, "fault cut could not be injected: boom")
    );
}

#[test]
fn a_waiting_prompt_holds_the_steps_until_resumed() {
    let prompt = "[[step]]\nat = \"0s\"\nprompt = \"ready?\"\nwait = true\n";
    let mut d = Drive::new(scenario(prompt));
    d.sample(0, "probe.api.ok", 1.0);
    let a = d.tick(2000);
    assert!(
        a.iter()
            .any(|x| matches!(x, Action::Prompt { wait: true, .. }))
    );
    assert!(d.run.is_waiting());
    assert!(d.tick(5000).is_empty(), "the fault step waits");
    d.run.resume(6000);
    assert!(
        d.tick(6500).is_empty(),
        "+1s counts from the end of the wait"
    );
    assert!(
        d.tick(7000)
            .iter()
            .any(|x| matches!(x, Action::Inject { .. }))
    );
}

#[test]
fn an_operator_abort_reverts_and_ends_the_run() {
    let mut d = Drive::new(scenario(""));
    let a = d.run.abort("operator pressed X", 100);
    assert_eq!(
        a[0],
        Action::RevertAll {
            reason: "operator pressed X".into()
        }
    );
    assert_eq!(d.run.verdict.as_ref().map(|v| v.0), Some(Verdict::Aborted));
    assert!(d.run.abort("again", 200).is_empty());
}
