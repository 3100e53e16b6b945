//! The console binary in a real terminal, against real servers through gameday's proxies: faults
//! triggered by keystrokes change what the servers' clients experience, and every way out —
//! q, Ctrl-C, SIGTERM, a closed terminal, and SIGKILL (with its dead-man agent killed too)
//! followed by the next start — leaves nothing applied.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gameday::ledger::Ledger;
use gameday::timeline::{self, Cause, EventKind, FaultPhase};
use nix::sys::signal::Signal;
use support::{Console, echo_server, free_port, gameday, test_dir, wait_until};

/// One byte through `addr` and back; the round-trip time.
fn echo_rtt(stream: &mut TcpStream) -> Duration {
    // A lost byte fails the test instead of hanging it.
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let started = Instant::now();
    stream.write_all(b"x").unwrap();
    let mut b = [0u8; 1];
    stream.read_exact(&mut b).unwrap();
    started.elapsed()
}

struct Rig {
    dir: PathBuf,
    artifacts: PathBuf,
    config: PathBuf,
    echo_proxy: SocketAddr,
    webhook: SocketAddr,
    runtime: tokio::runtime::Runtime,
    _sink: gameday::lab::SinkHandle,
}

impl Rig {
    /// A TCP echo server behind proxy `echo` and the lab's webhook sink behind webhook `hook`,
    /// with a latency fault on key 1 and a webhook delay on key 2.
    fn new(name: &str, extra: &str) -> Rig {
        let dir = test_dir(name);
        let artifacts = dir.join(".artifacts");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let sink = runtime
            .block_on(gameday::lab::run_sink(
                gameday::lab::SinkOptions::local(),
                Default::default(),
            ))
            .unwrap();
        let echo = echo_server();
        let echo_proxy: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let webhook: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let config = dir.join("gameday.toml");
        std::fs::write(
            &config,
            format!(
                r#"
[console]
artifacts = "{artifacts}"
sample_interval = "500ms"

[[proxy]]
name = "echo"
listen = "{echo_proxy}"
upstream = "{echo}"

[[webhook]]
name = "hook"
listen = "{webhook}"
upstream = "{sink}"
timeout = "1s"

[[fault]]
name = "echo-slow"
key = 1
kind = "latency"
target = "echo"
latency = "200ms"

[[fault]]
name = "hook-slow"
key = 2
kind = "webhook_delay"
target = "hook"
delay = "3s"
{extra}"#,
                artifacts = artifacts.display(),
                sink = sink.url(),
            ),
        )
        .unwrap();
        Rig {
            dir,
            artifacts,
            config,
            echo_proxy,
            webhook,
            runtime,
            _sink: sink,
        }
    }

    fn console(&self, session: &str) -> Console {
        let config = self.config.display().to_string();
        let console = Console::spawn(
            &self.dir,
            &["--config", &config, "--session", session],
            160,
            48,
        );
        console.wait_for("echo-slow", Duration::from_secs(20));
        console
    }

    fn daemon_faults(&self) -> usize {
        self.runtime
            .block_on(gameday::proxy::daemon_status(
                &self.artifacts,
                Duration::from_secs(3),
            ))
            .map(|s| s.faults.len())
            .unwrap_or(usize::MAX)
    }

    fn ledger(&self) -> Vec<gameday::ledger::LedgerEntry> {
        Ledger::new(&self.artifacts).unwrap().entries().unwrap()
    }

    fn events(&self, session: &str) -> Vec<EventKind> {
        timeline::read(&self.artifacts.join(session).join(timeline::FILE_NAME))
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect()
    }

    /// Triggers catalog faults 1 and 2 by keys and waits until the daemon applies both.
    fn inject_both(&self, console: &mut Console) {
        for (key, name) in [("1", "echo-slow"), ("2", "hook-slow")] {
            console.keys(key);
            console.wait_for(&format!("Inject {name}?"), Duration::from_secs(5));
            console.keys("y");
        }
        wait_until(
            "both faults are applied in the proxy daemon",
            Duration::from_secs(10),
            || self.daemon_faults() == 2,
        );
    }

    /// A webhook call through the forwarder: did it answer within `timeout`?
    fn webhook_answers_within(&self, timeout: Duration) -> bool {
        let url = format!("http://{}/botT/sendMessage", self.webhook);
        self.runtime.block_on(async {
            let client = gameday::http_client::builder()
                .timeout(timeout)
                .build()
                .unwrap();
            client
                .post(&url)
                .json(&serde_json::json!({"chat_id": 1, "text": "hi"}))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        })
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        let artifacts = self.artifacts.display().to_string();
        let _ = gameday(&self.dir, &["proxy", "stop", "--dir", &artifacts]);
    }
}

/// The session ended cleanly: everything reverted, by quit, and the report says so.
fn assert_clean_exit(rig: &Rig, session: &str, how: &str) {
    assert_eq!(
        rig.daemon_faults(),
        0,
        "no fault left in the proxy daemon after {how}"
    );
    assert!(rig.ledger().is_empty(), "the ledger is empty after {how}");
    let events = rig.events(session);
    let reverted: Vec<&Option<Cause>> = events
        .iter()
        .filter_map(|e| match e {
            EventKind::Fault {
                phase: FaultPhase::Reverted,
                cause,
                ..
            } => Some(cause),
            _ => None,
        })
        .collect();
    assert_eq!(
        reverted.len(),
        2,
        "both faults reverted after {how}: {events:?}"
    );
    assert!(
        reverted.iter().all(|c| matches!(c, Some(Cause::Quit(_)))),
        "reverted by quit: {reverted:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, EventKind::SessionEnd { .. }))
    );
    let report = std::fs::read_to_string(rig.artifacts.join(session).join("report.md")).unwrap();
    assert!(report.contains("reverted by quit"), "{report}");
}

fn quit_and_check(name: &str, quit: impl FnOnce(&mut Console), how: &str) {
    let rig = Rig::new(name, "");
    let mut console = rig.console("drill");
    rig.inject_both(&mut console);
    quit(&mut console);
    let status = console.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "{how}: exit {status:?}");
    assert_clean_exit(&rig, "drill", how);
}

#[test]
fn q_reverts_every_fault_before_exit() {
    quit_and_check("quit-q", |c| c.keys("q"), "q");
}

#[test]
fn ctrl_c_reverts_every_fault_before_exit() {
    quit_and_check("quit-ctrl-c", |c| c.ctrl_c(), "Ctrl-C");
}

#[test]
fn sigterm_reverts_every_fault_before_exit() {
    quit_and_check("quit-sigterm", |c| c.signal(Signal::SIGTERM), "SIGTERM");
}

#[test]
fn a_closed_terminal_reverts_every_fault_before_exit() {
    // The pty master goes away: the kernel hangs the session up and every write to the
    // terminal fails from then on, including on the way out.
    quit_and_check("quit-hangup", |c| c.hangup(), "a hangup");
}

#[test]
fn after_sigkill_traffic_flows_faults_lapse_and_the_next_start_recovers_the_ledger() {
    let rig = Rig::new("sigkill", "");
    let mut console = rig.console("killed");
    rig.inject_both(&mut console);
    let mut stream = TcpStream::connect(rig.echo_proxy).unwrap();
    stream.set_nodelay(true).unwrap();
    let slow = echo_rtt(&mut stream);
    assert!(
        slow >= Duration::from_millis(190),
        "latency applied: {slow:?}"
    );
    assert!(
        !rig.webhook_answers_within(Duration::from_millis(1500)),
        "webhook delayed past 1.5s"
    );

    // The console and its dead-man agent both die (a machine's processes killed at once): only
    // the proxy daemon's lease and the ledger are left to act.
    support::kill_console_and_guard(&mut console, "killed");
    let killed = Instant::now();
    // The data path does not depend on the console: the open connection keeps working…
    echo_rtt(&mut stream);
    // …and the console's faults lapse with its lease (3 s).
    wait_until(
        "the proxy daemon drops the dead console's faults",
        Duration::from_secs(8),
        || rig.daemon_faults() == 0,
    );
    let lapsed = killed.elapsed();
    eprintln!("faults lapsed {lapsed:?} after SIGKILL");
    let after = echo_rtt(&mut stream);
    assert!(
        after < Duration::from_millis(100),
        "latency gone on the same connection: {after:?}"
    );
    assert!(
        rig.webhook_answers_within(Duration::from_millis(900)),
        "webhook answers promptly again"
    );
    assert_eq!(
        rig.ledger().len(),
        2,
        "the ledger remembers what the killed console applied"
    );

    // The next start reverts what the ledger lists and says so.
    let mut next = rig.console("next");
    next.wait_for("recovered 2 of 2", Duration::from_secs(10));
    next.keys("q");
    assert!(next.wait_exit(Duration::from_secs(20)).success());
    assert!(rig.ledger().is_empty());
    let recovered = rig
        .events("next")
        .into_iter()
        .filter(|e| {
            matches!(
                e,
                EventKind::Fault {
                    phase: FaultPhase::Reverted,
                    cause: Some(Cause::Recovery),
                    ..
                }
            )
        })
        .count();
    assert_eq!(recovered, 2);
    let report = std::fs::read_to_string(rig.artifacts.join("next").join("report.md")).unwrap();
    assert!(
        report.contains("reverted by recovery after crash"),
        "{report}"
    );
}

#[test]
fn a_webhook_delay_past_the_client_timeout_shows_timeouts_and_retries() {
    let rig = Rig::new("webhook-timeouts", "");
    let mut console = rig.console("hooks");
    console.keys("2");
    console.wait_for("Inject hook-slow?", Duration::from_secs(5));
    console.keys("y");
    wait_until("the delay is applied", Duration::from_secs(10), || {
        rig.daemon_faults() == 1
    });
    // A client with a 1 s timeout, retrying the same notification three times.
    let url = format!("http://{}/botT/sendMessage", rig.webhook);
    rig.runtime.block_on(async {
        let client = gameday::http_client::builder()
            .timeout(Duration::from_secs(1))
            .build()
            .unwrap();
        for _ in 0..3 {
            let sent = client
                .post(&url)
                .header("Idempotency-Key", "task-1")
                .json(&serde_json::json!({"chat_id": 1, "text": "done"}))
                .send()
                .await;
            assert!(sent.is_err_and(|e| e.is_timeout()), "the caller times out");
        }
    });
    // Zoom the Webhooks panel so every counter fits.
    console.keys("\t\tz");
    console.wait_for("timeouts 3", Duration::from_secs(10));
    console.wait_for("retries 2", Duration::from_secs(5));
    console.keys("q");
    assert!(console.wait_exit(Duration::from_secs(20)).success());
}

#[test]
fn latency_on_a_real_nats_broker_moves_its_rtt_by_the_configured_amount_and_down_shows_down() {
    let nats_dir = test_dir("nats-proxy-broker");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let nats = runtime
        .block_on(gameday::services::NatsServer::start(
            gameday::services::NatsOptions::new(&nats_dir),
        ))
        .unwrap();
    let proxy_port = free_port();
    let extra = format!(
        r#"
[nats]
url = "nats://127.0.0.1:{proxy_port}"

[[proxy]]
name = "nats"
listen = "127.0.0.1:{proxy_port}"
upstream = "127.0.0.1:{nats_port}"

[[fault]]
name = "nats-slow"
key = 3
kind = "latency"
target = "nats"
latency = "200ms"
jitter = "10ms"

[[fault]]
name = "nats-cut"
key = 4
kind = "down"
target = "nats"
"#,
        nats_port = nats.port()
    );
    let rig = Rig::new("nats-latency", &extra);
    let mut console = rig.console("nats");
    console.wait_for("✔ up", Duration::from_secs(10));
    let client = runtime
        .block_on(async_nats::connect(format!(
            "nats://127.0.0.1:{proxy_port}"
        )))
        .unwrap();
    let median_rtt = || {
        runtime.block_on(async {
            let mut v = Vec::new();
            for _ in 0..7 {
                // A real round trip to the server (flush alone only empties the local buffer).
                let started = Instant::now();
                client.request("$JS.API.INFO", "".into()).await.unwrap();
                v.push(started.elapsed());
            }
            v.sort();
            v[3]
        })
    };
    let baseline = median_rtt();
    console.keys("3");
    console.wait_for("Inject nats-slow?", Duration::from_secs(5));
    console.keys("y");
    wait_until(
        "the latency fault is applied",
        Duration::from_secs(10),
        || rig.daemon_faults() == 1,
    );
    let slowed = median_rtt();
    let added = slowed.saturating_sub(baseline);
    eprintln!("NATS RTT baseline {baseline:?}, with 200ms ±10ms latency {slowed:?} (+{added:?})");
    assert!(
        added >= Duration::from_millis(190) && added <= Duration::from_millis(220),
        "added {added:?}, expected 200ms within jitter + 10ms"
    );
    // `r` reverts the selected (only) active fault.
    console.keys("r");
    wait_until(
        "the latency fault is reverted",
        Duration::from_secs(10),
        || rig.daemon_faults() == 0,
    );
    let after = median_rtt();
    assert!(
        after < baseline + Duration::from_millis(10),
        "back to baseline: {after:?} vs {baseline:?}"
    );

    // A partition: the panel shows the broker down within 3 s, and up again after X.
    console.keys("4");
    console.wait_for("Inject nats-cut?", Duration::from_secs(5));
    console.keys("y");
    wait_until("the partition is applied", Duration::from_secs(10), || {
        rig.daemon_faults() == 1
    });
    console.wait_for("DOWN since", Duration::from_secs(3));
    console.keys("X");
    wait_until("everything is reverted", Duration::from_secs(10), || {
        rig.daemon_faults() == 0
    });
    console.wait_for("✔ up", Duration::from_secs(5));
    console.keys("q");
    assert!(console.wait_exit(Duration::from_secs(20)).success());
    drop(nats);
    let _ = std::fs::remove_dir_all(Path::new(&nats_dir));
}

#[test]
fn check_refuses_an_unknown_theme_naming_the_line_and_the_known_themes() {
    let dir = test_dir("unknown-theme");
    std::fs::write(
        dir.join("gameday.toml"),
        "[console]\ntheme = \"no-such-theme\"\n",
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("themes")).unwrap();
    std::fs::write(dir.join("themes/ocean.toml"), "base = \"dark\"\n").unwrap();
    let out = gameday(&dir, &["check", "--config", "gameday.toml"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.trim(),
        "gameday: gameday.toml:2:9: console.theme: unknown theme \"no-such-theme\"; known themes: \
         dark, light, high-contrast, colorblind (built-in), ocean (files in themes)"
    );
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("valid"),
        "not said to be valid"
    );
    // The theme file it names is accepted.
    std::fs::write(dir.join("gameday.toml"), "[console]\ntheme = \"ocean\"\n").unwrap();
    let out = gameday(&dir, &["check", "--config", "gameday.toml"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}

#[test]
fn a_bad_config_is_one_line_exit_2_and_nothing_starts() {
    let dir = test_dir("bad-config");
    std::fs::write(dir.join("gameday.toml"), "[[webhook]]\nname = \"t\"\nlisten = \"127.0.0.1:1\"\nupstream = \"http://127.0.0.1:2\"\ntimeout = \"thirty\"\n").unwrap();
    for args in [
        &["--config", "gameday.toml"][..],
        &["check", "--config", "gameday.toml"],
        &["snapshot", "--config", "gameday.toml"],
    ] {
        let out = gameday(&dir, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            err.trim(),
            "gameday: gameday.toml:5:11: webhook[0].timeout: expected a duration like \"30s\", got \"thirty\""
        );
    }
    assert!(
        !dir.join(".artifacts").exists(),
        "nothing started, nothing written"
    );
    std::fs::write(dir.join("ok.toml"), "[console]\nartifacts = \"out\"\n").unwrap();
    let out = gameday(&dir, &["--session", "../escape", "--config", "ok.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--session: expected a name"));
    assert!(
        !dir.join("out").exists(),
        "no session directory for a refused name"
    );
    let out = gameday(&dir, &["snapshot", "--for", "soon"]);
    assert_eq!(out.status.code(), Some(2), "a bad flag is exit 2 too");
}
