//! `gameday demo`: one command brings the lab up with the console on it; `gameday check` finds
//! every target of the generated config reachable; and quitting leaves no server behind.

mod support;

use std::path::Path;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use support::{Console, gameday, headless_demo, headless_demo_with, test_dir, wait_until};

/// Processes (other than this test) whose command line mentions `dir`.
fn processes_under(dir: &Path) -> Vec<String> {
    let needle = dir.display().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // A zombie waits for its parent to reap it; it runs nothing.
        if stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        {
            continue;
        }
        let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
        if cmdline.contains(&needle) {
            found.push(format!("{pid}: {cmdline}"));
        }
    }
    found
}

#[test]
fn the_demo_opens_the_console_on_a_live_lab_and_quitting_leaves_nothing_running() {
    let dir = test_dir("demo-quit");
    let dir_arg = dir.display().to_string();
    let mut console = Console::spawn(
        Path::new(env!("CARGO_MANIFEST_DIR")),
        &["demo", "--dir", &dir_arg],
        160,
        48,
    );
    // Tasks flow: the consumer, the pool and the webhook show real data.
    console.wait_for("TASKS/workers", Duration::from_secs(90));
    console.wait_for("task-tracker", Duration::from_secs(10));
    wait_until("webhook latencies appear", Duration::from_secs(20), || {
        console
            .screen()
            .lines()
            .any(|l| l.contains("telegram") && l.contains("p50") && !l.contains("p50 –"))
    });
    assert!(
        !processes_under(&dir).is_empty(),
        "the servers run while the demo does"
    );
    console.keys("q");
    let status = console.wait_exit(Duration::from_secs(60));
    assert!(status.success(), "{status:?}");
    wait_until(
        "no nats-server, postgres or proxy daemon is left",
        Duration::from_secs(10),
        || processes_under(&dir).is_empty(),
    );
}

#[test]
fn check_finds_every_target_of_the_demo_config_reachable() {
    let dir = test_dir("demo-check");
    // Reading stops at the ready line: the demo must cope with nobody reading its stdout.
    let (mut demo, config) = headless_demo(&dir, 5.0);
    let out = gameday(
        Path::new(env!("CARGO_MANIFEST_DIR")),
        &["check", "--config", &config],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for kind in [
        "nats",
        "postgres",
        "probe",
        "prometheus",
        "webhook",
        "proxy",
    ] {
        assert!(
            text.lines()
                .any(|l| l.contains(kind) && l.contains("✔ reachable")),
            "{kind} reachable:\n{text}"
        );
    }
    assert!(!text.contains('✖'), "{text}");
    kill(Pid::from_raw(demo.id() as i32), Signal::SIGTERM).unwrap();
    assert!(demo.wait().unwrap().success());
    wait_until(
        "the headless demo leaves nothing running",
        Duration::from_secs(10),
        || processes_under(&dir).is_empty(),
    );
}

/// The pid of the demo's broker (a `nats-server` whose command line names `dir`).
fn broker_pid(dir: &Path) -> Option<u32> {
    processes_under(dir).iter().find_map(|p| {
        let (pid, cmd) = p.split_once(": ")?;
        cmd.split(' ')
            .next()
            .is_some_and(|exe| exe.ends_with("nats-server"))
            .then(|| pid.parse().ok())?
    })
}

#[test]
fn a_broker_restarted_by_a_revert_stops_with_the_demo_however_the_demo_ends() {
    let endings = [
        ("quit", Signal::SIGINT),
        ("sigterm", Signal::SIGTERM),
        ("sighup", Signal::SIGHUP),
        ("sigkill", Signal::SIGKILL),
    ];
    for (how, signal) in endings {
        let dir = test_dir(&format!("demo-end-{how}"));
        let (mut demo, config) = headless_demo(&dir, 1.0);
        let first = broker_pid(&dir).expect("the demo's broker runs");

        // A headless run stops the broker and its revert starts it again, outside the demo.
        let scenario = dir.join("restart.toml");
        std::fs::write(
            &scenario,
            r#"title = "broker restart"
hypothesis = "the broker comes back"

[[step]]
at = "0s"
fault = "nats-stop"
duration = "1s"

[recovery]
within = "30s"

[[recovery.check]]
metric = "nats.up"
op = "=="
value = 1
"#,
        )
        .unwrap();
        let run = gameday(
            &dir,
            &["run", &scenario.display().to_string(), "--config", &config],
        );
        assert!(run.status.success(), "{how}: {run:?}");
        let second = broker_pid(&dir).expect("the revert started the broker again");
        assert_ne!(first, second, "{how}: a new broker process");

        kill(Pid::from_raw(demo.id() as i32), signal).unwrap();
        let started = std::time::Instant::now();
        while demo.try_wait().unwrap().is_none() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{how}: the demo did not end"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        wait_until(
            &format!("{how}: nothing of the demo is left running"),
            Duration::from_secs(15),
            || processes_under(&dir).is_empty(),
        );
    }
}

#[test]
fn dry_runs_of_the_shipped_scenarios_name_real_targets_and_touch_nothing() {
    let dir = test_dir("demo-dry-run");
    let (mut demo, config) = headless_demo(&dir, 5.0);
    let broker = broker_pid(&dir).expect("the demo's broker runs");
    let scenarios = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut all = String::new();
    for scenario in [
        "nats-broker-failure",
        "postgres-pool-exhaustion",
        "webhook-timeout",
    ] {
        let file = scenarios.join(format!("{scenario}.toml"));
        let out = gameday(
            &dir,
            &[
                "run",
                &file.display().to_string(),
                "--config",
                &config,
                "--dry-run",
            ],
        );
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "{scenario}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("nothing was touched"), "{text}");
        all.push_str(&text);
    }
    // Real things, resolved: the broker's pid, the pool's connections, the webhook listener.
    assert!(all.contains(&format!("touches pid {broker}")), "{all}");
    assert!(all.contains("connections are in use now"), "{all}");
    assert!(all.contains("webhook telegram"), "{all}");
    // …and nothing touched: the same broker runs, the ledger is empty.
    assert_eq!(broker_pid(&dir), Some(broker));
    assert!(
        gameday::ledger::Ledger::new(&dir)
            .unwrap()
            .entries()
            .unwrap()
            .is_empty()
    );
    kill(Pid::from_raw(demo.id() as i32), Signal::SIGTERM).unwrap();
    let _ = demo.wait();
}

#[test]
fn the_demo_with_pgbouncer_drills_the_whole_chain_app_pool_bouncer_server() {
    let dir = test_dir("demo-pgbouncer");
    let (mut demo, config) = headless_demo_with(&dir, 5.0, &["--pgbouncer"]);
    // The lab reaches PostgreSQL through the bouncer: its pool's sessions are the bouncer's
    // active servers, and the bouncer says so itself.
    let snapshot = gameday(
        Path::new(env!("CARGO_MANIFEST_DIR")),
        &["snapshot", "--config", &config, "--json"],
    );
    assert!(snapshot.status.success(), "{snapshot:?}");
    let values: std::collections::BTreeMap<String, f64> =
        serde_json::from_slice(&snapshot.stdout).unwrap();
    assert_eq!(values.get("pgbouncer.bouncer.up"), Some(&1.0), "{values:?}");
    assert!(
        values
            .get("pgbouncer.bouncer.tasks.app.sv_active")
            .is_some_and(|v| *v > 0.0),
        "{values:?}"
    );
    // The exhaustion drill with the bouncer in the chain: clients queue in it, and it serves
    // again once the server has connections.
    let run = gameday(
        Path::new(env!("CARGO_MANIFEST_DIR")),
        &[
            "run",
            "--config",
            &config,
            "scenarios/with-pgbouncer/pool-exhaustion.toml",
        ],
    );
    let out = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{out}");
    assert!(
        out.contains("✅ during: clients queue in the bouncer"),
        "{out}"
    );
    assert!(out.contains("Status: Pass"), "{out}");
    kill(Pid::from_raw(demo.id() as i32), Signal::SIGTERM).unwrap();
    assert!(demo.wait().unwrap().success());
    wait_until(
        "no nats-server, postgres, pgbouncer or proxy daemon is left",
        Duration::from_secs(15),
        || processes_under(&dir).is_empty(),
    );
}
