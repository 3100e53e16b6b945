use std::path::Path;

use super::*;

fn config() -> Config {
    Config::from_text(
        Path::new("gameday.toml"),
        r#"
[nats]
url = "nats://127.0.0.1:4222"
[[nats.watch]]
stream = "TASKS"
consumer = "workers"
[postgres]
url = "postgres://app@127.0.0.1/tasks"
[[postgres.gauge]]
name = "retry_queue"
sql = "select 1"
[[probe]]
name = "api"
url = "http://127.0.0.1:8000/health"
[[proxy]]
name = "nats"
listen = "127.0.0.1:14222"
upstream = "127.0.0.1:4222"
[[fault]]
name = "nats-partition"
kind = "down"
target = "nats"
duration = "1m"
"#,
    )
    .unwrap()
}

const GOOD: &str = r#"
title = "NATS broker failure"
hypothesis = "The API keeps accepting tasks"

[baseline]
duration = "5s"
[[baseline.check]]
metric = "probe.api.ok"
aggregate = "mean"
op = ">="
value = 1

[[step]]
at = "2s"
prompt = "watch the queue"

[[step]]
fault = "nats-partition"
duration = "20s"

[[expect_during]]
name = "tasks are parked"
metric = "pg.gauge.retry_queue"
aggregate = "max"
op = ">"
value = 0

[recovery]
within = "60s"
[[recovery.check]]
metric = "nats.TASKS.workers.pending"
op = "<"
value = 10

[[abort_when]]
metric = "probe.api.latency_ms"
aggregate = "max"
window = "5s"
op = ">"
value = 10000
"#;

#[test]
fn a_scenario_reads_every_section_and_resolves_its_faults() {
    let s = Scenario::from_text(Path::new("s.toml"), GOOD, &config()).unwrap();
    assert_eq!(s.title, "NATS broker failure");
    assert_eq!(s.baseline, Duration::from_secs(5));
    assert_eq!(s.steps.len(), 2);
    assert_eq!(
        s.steps[0].action,
        StepAction::Inject {
            fault: "nats-partition".into(),
            catalog_index: 0,
            lease: Duration::from_secs(20)
        },
        "steps sort by offset"
    );
    assert_eq!(s.during[0].name, "tasks are parked");
    assert_eq!(s.recovery_checks[0].name, "nats.TASKS.workers.pending < 10");
    assert_eq!(s.abort_when[0].window_ms, Some(5000));
}

#[test]
fn mistakes_are_located_and_explained() {
    let cases = [
        (
            GOOD.replace("fault = \"nats-partition\"", "fault = \"nats-cut\""),
            "step[1].fault: no fault named \"nats-cut\" in gameday.toml; expected one of: nats-partition",
        ),
        (
            GOOD.replace(
                "metric = \"pg.gauge.retry_queue\"",
                "metric = \"pg.gauge.nope\"",
            ),
            "expect_during[0].metric: unknown metric \"pg.gauge.nope\"",
        ),
        (GOOD.replace("consumer = \"workers\"", ""), ""),
        (
            GOOD.replace("op = \"<\"", "op = \"=<\""),
            "recovery.check[0].op: unknown variant `=<`",
        ),
        (
            GOOD.replace("aggregate = \"mean\"", "aggregate = \"median\""),
            "baseline.check[0].aggregate: unknown variant `median`",
        ),
        (
            GOOD.replace("within = \"60s\"", "within = \"soon\""),
            "recovery.within: expected a duration like \"30s\", got \"soon\"",
        ),
        (
            GOOD.replace(
                "prompt = \"watch the queue\"",
                "prompt = \"watch\"\nfault = \"nats-partition\"",
            ),
            "step[0]: expected exactly one of",
        ),
        (
            GOOD.replace("hypothesis = \"The API keeps accepting tasks\"", ""),
            "missing required key `hypothesis`",
        ),
        (
            GOOD.replace("value = 10\n", "range = [0, 10]\n"),
            "recovery.check[0].range: `range` goes with op = \"between\"",
        ),
    ];
    for (text, expected) in cases {
        let result = Scenario::from_text(Path::new("s.toml"), &text, &config());
        if expected.is_empty() {
            assert!(result.is_ok(), "{result:?}");
            continue;
        }
        let err = result.expect_err(expected).to_string();
        assert!(err.starts_with("s.toml:"), "{err}");
        assert!(
            err.contains(expected),
            "{err}\n  should contain: {expected}"
        );
    }
    let no_fault_step = GOOD.replace(
        "[[step]]\nfault = \"nats-partition\"\nduration = \"20s\"\n",
        "",
    );
    let err = Scenario::from_text(Path::new("s.toml"), &no_fault_step, &config()).unwrap_err();
    assert!(
        err.to_string()
            .contains("expected at least one [[step]] with `fault"),
        "{err}"
    );
}

#[test]
fn the_shipped_scenarios_are_valid_against_the_demo_config() {
    // The demo generates its config; the shipped scenarios are written against it.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let demo = crate::demo::sample_config();
    let files = Scenario::files(&dir.join("scenarios"));
    assert!(files.len() >= 3, "{files:?}");
    for file in files {
        Scenario::load(&file, &demo).unwrap_or_else(|e| panic!("{e}"));
    }
}
