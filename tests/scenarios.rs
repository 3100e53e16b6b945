//! The shipped scenarios, headless, against the real lab (`gameday demo --headless`: nats-server,
//! PostgreSQL, the task tracker, gameday's proxies, traffic): each passes on a healthy lab and
//! fails — naming the failing check and its measured value — when the lab runs without graceful
//! degradation. Plus the ways a run ends early: an abort condition, and SIGTERM.

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use gameday::timeline::{self, CheckGroup, EventKind, FaultPhase};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use support::{GAMEDAY, test_dir};

const SCENARIOS: [&str; 3] = [
    "nats-broker-failure",
    "postgres-pool-exhaustion",
    "webhook-timeout",
];

/// `gameday demo --headless` in its own directory; stopped (and checked clean) on drop.
struct Lab {
    dir: PathBuf,
    child: Child,
    config: PathBuf,
}

impl Lab {
    fn up(name: &str, graceful: bool) -> Lab {
        let dir = test_dir(name);
        let mut args = vec!["demo", "--headless", "--dir"];
        let dir_arg = dir.display().to_string();
        args.push(&dir_arg);
        if !graceful {
            args.push("--no-graceful-degradation");
        }
        let mut child = Command::new(GAMEDAY)
            .args(&args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the demo");
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(path) = line.strip_prefix("ready: config ") {
                    let _ = tx.send(PathBuf::from(path));
                }
            }
        });
        let config = rx
            .recv_timeout(Duration::from_secs(90))
            .expect("the demo comes up within 90s");
        Lab { dir, child, config }
    }

    /// Runs a scenario to its end; returns the exit code and the session directory.
    fn run(&self, scenario: &Path, session: &str, extra: &[&str]) -> (i32, PathBuf) {
        let config = self.config.display().to_string();
        let scenario = scenario.display().to_string();
        let mut args = vec!["run", &scenario, "--config", &config, "--session", session];
        args.extend_from_slice(extra);
        let out = Command::new(GAMEDAY)
            .args(&args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("run");
        let stdout = String::from_utf8_lossy(&out.stdout);
        eprintln!(
            "--- gameday run {scenario}\n{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let summary: Vec<&str> = stdout
            .lines()
            .skip_while(|l| !(l.starts_with("✅") || l.starts_with("❌")))
            .collect();
        assert!(
            !summary.is_empty() && summary.len() <= 10,
            "a summary of at most 10 lines: {summary:?}"
        );
        assert!(
            summary.last().unwrap().starts_with("Status: "),
            "{summary:?}"
        );
        (out.status.code().unwrap_or(-1), self.dir.join(session))
    }

    fn daemon_faults(&self) -> usize {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime
            .block_on(gameday::proxy::daemon_status(
                &self.dir,
                Duration::from_secs(3),
            ))
            .map(|s| s.faults.len())
            .unwrap_or(usize::MAX)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn shipped(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios")
        .join(format!("{name}.toml"))
}

fn events(session: &Path) -> Vec<EventKind> {
    timeline::read(&session.join(timeline::FILE_NAME))
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect()
}

fn ledger_is_empty(lab: &Lab) -> bool {
    gameday::ledger::Ledger::new(&lab.dir)
        .unwrap()
        .entries()
        .unwrap()
        .is_empty()
}

#[test]
fn every_shipped_scenario_passes_on_a_healthy_lab() {
    let lab = Lab::up("scenarios-healthy", true);
    for name in SCENARIOS {
        let junit = lab.dir.join(format!("{name}.junit.xml"));
        let junit_arg = junit.display().to_string();
        let (code, session) = lab.run(&shipped(name), name, &["--junit", &junit_arg]);
        let report = std::fs::read_to_string(session.join("report.md")).unwrap();
        assert_eq!(code, 0, "{name} passes on a healthy lab:\n{report}");
        assert!(report.contains("| Verdict | ✅ Pass"), "{report}");
        assert!(session.join("report.html").is_file() && session.join("report.json").is_file());
        let xml = std::fs::read_to_string(&junit).unwrap();
        let doc = roxmltree::Document::parse(&xml).expect("JUnit is well-formed XML");
        let cases = doc
            .descendants()
            .filter(|n| n.has_tag_name("testcase"))
            .count();
        assert!(
            cases >= 5,
            "one test case per check (and the verdict): {cases}"
        );
        assert_eq!(
            doc.descendants()
                .filter(|n| n.has_tag_name("failure"))
                .count(),
            0
        );
        assert!(ledger_is_empty(&lab));
    }
    assert_eq!(lab.daemon_faults(), 0);
}

#[test]
fn every_shipped_scenario_fails_on_a_lab_without_graceful_degradation() {
    let lab = Lab::up("scenarios-degraded", false);
    // The check each scenario's hypothesis hinges on.
    let failing = [
        ("nats-broker-failure", "API still answers 202 (no 5xx)"),
        (
            "postgres-pool-exhaustion",
            "health answers instead of hanging",
        ),
        ("webhook-timeout", "the app retries"),
    ];
    for (name, check) in failing {
        let (code, session) = lab.run(&shipped(name), name, &[]);
        let report = std::fs::read_to_string(session.join("report.md")).unwrap();
        assert_eq!(
            code, 1,
            "{name} fails without graceful degradation:\n{report}"
        );
        assert!(report.contains("| Verdict | ❌ Fail"), "{report}");
        let line = report
            .lines()
            .find(|l| l.starts_with("❌") && l.contains(check))
            .unwrap_or_else(|| panic!("{check} in:\n{report}"));
        assert!(
            line.contains("measured"),
            "the failing check carries its measured value: {line}"
        );
        assert!(ledger_is_empty(&lab));
    }
}

/// Writes a scenario against the demo's catalog.
fn custom(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!("title = \"{name}\"\nhypothesis = \"h\"\n[baseline]\nduration = \"1s\"\n{body}"),
    )
    .unwrap();
    path
}

#[test]
fn an_abort_condition_reverts_everything_within_a_second_and_exits_3_and_sigterm_leaves_nothing_applied()
 {
    let lab = Lab::up("scenarios-abort", true);
    // Trips once the latency it injects shows on the broker's round trip.
    let abort = custom(
        &lab.dir,
        "abort",
        r#"
[[step]]
fault = "nats-slow"
duration = "2m"

[[step]]
at = "0s"
fault = "webhook-503"
duration = "2m"

[[abort_when]]
name = "broker round trip too slow"
metric = "nats.rtt_ms"
aggregate = "max"
window = "5s"
op = ">"
value = 300
"#,
    );
    let (code, session) = lab.run(&abort, "abort", &[]);
    assert_eq!(code, 3, "an abort exits 3");
    let timeline = timeline::read(&session.join(timeline::FILE_NAME)).unwrap();
    let tripped = timeline
        .iter()
        .find(|e| {
            matches!(
                &e.kind,
                EventKind::Check {
                    group: CheckGroup::Abort,
                    ..
                }
            )
        })
        .expect("the abort condition is on the timeline");
    let reverted: Vec<u64> = timeline
        .iter()
        .filter(|e| {
            matches!(
                &e.kind,
                EventKind::Fault {
                    phase: FaultPhase::Reverted,
                    ..
                }
            )
        })
        .map(|e| e.offset_ms)
        .collect();
    assert_eq!(reverted.len(), 2, "both faults reverted");
    let took = reverted.iter().max().unwrap() - tripped.offset_ms;
    eprintln!("abort tripped → every fault reverted in {took}ms");
    assert!(took < 1000, "reverted within 1s of the abort: {took}ms");
    let report = std::fs::read_to_string(session.join("report.md")).unwrap();
    assert!(
        report.contains("| Verdict | ⚠️ Aborted: abort condition met"),
        "{report}"
    );
    assert!(ledger_is_empty(&lab));
    assert_eq!(lab.daemon_faults(), 0);

    // SIGTERM mid-run: every fault reverted, a complete report, exit 3.
    let long = custom(
        &lab.dir,
        "interrupted",
        "[[step]]\nfault = \"nats-partition\"\nduration = \"5m\"\n",
    );
    let config = lab.config.display().to_string();
    let long_arg = long.display().to_string();
    let mut child = Command::new(GAMEDAY)
        .args([
            "run",
            &long_arg,
            "--config",
            &config,
            "--session",
            "interrupted",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = support::lines_of(child.stdout.take().unwrap());
    loop {
        let line = lines
            .recv_timeout(Duration::from_secs(60))
            .expect("the fault is applied within 60s");
        if line.contains("fault nats-partition on nats applied") {
            break;
        }
    }
    assert_eq!(lab.daemon_faults(), 1);
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let status = support::wait_within(&mut child, Duration::from_secs(60), "the interrupted run");
    // What it printed on the way out, up to the end of its output.
    let mut rest = Vec::new();
    while let Ok(line) = lines.recv_timeout(Duration::from_secs(10)) {
        rest.push(line);
    }
    assert_eq!(status.code(), Some(3), "interrupted = aborted: {rest:?}");
    assert!(
        rest.iter().any(|l| l.contains("Status: Aborted")),
        "{rest:?}"
    );
    assert_eq!(lab.daemon_faults(), 0, "nothing left applied");
    assert!(ledger_is_empty(&lab));
    let session = lab.dir.join("interrupted");
    let kinds = events(&session);
    assert!(kinds.iter().any(|k| matches!(k, EventKind::Verdict { reason, .. } if reason.contains("interrupted: signal SIGTERM"))), "{kinds:?}");
    let report = std::fs::read_to_string(session.join("report.md")).unwrap();
    assert!(report.contains("## Timeline"), "{report}");
    assert!(
        report
            .lines()
            .any(|l| l.contains("**nats-partition**") && l.contains("reverted by")),
        "{report}"
    );
    assert!(session.join("report.html").is_file());
}

#[test]
fn gameday_check_validates_the_shipped_scenarios_and_names_a_broken_one() {
    let dir = test_dir("check-scenarios");
    // The demo points at the repo's scenarios; this one reads its own, next to the config.
    let shipped_dir = format!("scenarios = \"{}/scenarios\"", env!("CARGO_MANIFEST_DIR"));
    let config =
        gameday::demo::sample_config_text().replace(&shipped_dir, "scenarios = \"scenarios\"");
    assert!(config.contains("scenarios = \"scenarios\""));
    std::fs::write(dir.join("gameday.toml"), config).unwrap();
    std::fs::create_dir_all(dir.join("scenarios")).unwrap();
    for name in SCENARIOS {
        std::fs::copy(
            shipped(name),
            dir.join("scenarios").join(format!("{name}.toml")),
        )
        .unwrap();
    }
    std::fs::write(
        dir.join("scenarios/zz-broken.toml"),
        "title = \"b\"\nhypothesis = \"h\"\n[[step]]\nfault = \"no-such-fault\"\n",
    )
    .unwrap();
    let out = support::gameday(&dir, &["check", "--config", "gameday.toml"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("zz-broken.toml:4:9: step[0].fault: no fault named \"no-such-fault\""),
        "{err}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    for name in SCENARIOS {
        assert!(stdout.contains(&format!("{name}.toml: valid")), "{stdout}");
    }
}
