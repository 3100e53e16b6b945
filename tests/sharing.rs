//! Several people, one system: two consoles on one config, the ledger that cannot lie, and the
//! commands that must only look (`check`, `snapshot`) or must clean up after themselves (a
//! headless `run`, a daemon nobody can reach). Everything is judged on the real data path.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gameday::ledger::Ledger;
use support::{Console, echo_server, free_port, gameday, test_dir, wait_until};

/// One round trip on an open connection; `None` if it failed or took over 2 s.
fn rtt(stream: &mut TcpStream) -> Option<Duration> {
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let started = Instant::now();
    stream.write_all(b"x").ok()?;
    let mut b = [0u8; 1];
    stream.read_exact(&mut b).ok()?;
    Some(started.elapsed())
}

fn fresh_rtt(addr: SocketAddr) -> Option<Duration> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_nodelay(true).ok()?;
    rtt(&mut stream)
}

const LATENCY: Duration = Duration::from_millis(200);

fn slow(addr: SocketAddr) -> bool {
    fresh_rtt(addr).is_some_and(|t| t >= LATENCY * 8 / 10)
}

struct Rig {
    dir: PathBuf,
    artifacts: PathBuf,
    config: PathBuf,
    one: SocketAddr,
    two: SocketAddr,
}

impl Rig {
    /// Two proxies in front of an echo server, a latency fault on each (keys 1 and 2).
    fn new(name: &str) -> Rig {
        let dir = test_dir(name);
        let artifacts = dir.join(".artifacts");
        let echo = echo_server();
        let one: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let two: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let config = dir.join("gameday.toml");
        std::fs::write(&config, Rig::config_text(&artifacts, one, two, echo)).unwrap();
        Rig {
            dir,
            artifacts,
            config,
            one,
            two,
        }
    }

    fn config_text(artifacts: &Path, one: SocketAddr, two: SocketAddr, echo: SocketAddr) -> String {
        format!(
            r#"[console]
artifacts = "{artifacts}"
sample_interval = "500ms"

[[proxy]]
name = "one"
listen = "{one}"
upstream = "{echo}"

[[proxy]]
name = "two"
listen = "{two}"
upstream = "{echo}"

[[fault]]
name = "slow-one"
key = 1
kind = "latency"
target = "one"
latency = "{ms}ms"
direction = "downstream"
duration = "5m"

[[fault]]
name = "slow-two"
key = 2
kind = "latency"
target = "two"
latency = "{ms}ms"
direction = "downstream"
duration = "5m"
"#,
            artifacts = artifacts.display(),
            ms = LATENCY.as_millis(),
        )
    }

    fn console(&self, session: &str) -> Console {
        let config = self.config.display().to_string();
        Console::spawn(
            &self.dir,
            &["--config", &config, "--session", session],
            160,
            48,
        )
    }

    fn gameday(&self, args: &[&str]) -> std::process::Output {
        gameday(&self.dir, args)
    }

    fn ledger_ids(&self) -> Vec<(String, String)> {
        Ledger::new(&self.artifacts)
            .unwrap()
            .entries()
            .unwrap()
            .into_iter()
            .map(|e| (e.id, e.owner.session))
            .collect()
    }

    fn stop_daemon(&self) {
        let artifacts = self.artifacts.display().to_string();
        let _ = self.gameday(&["proxy", "stop", "--dir", &artifacts]);
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.stop_daemon();
    }
}

/// Pids of `gameday proxy daemon` processes serving `artifacts`.
fn daemons_for(artifacts: &Path) -> Vec<u32> {
    let wanted = artifacts.display().to_string();
    support::processes()
        .into_iter()
        .filter(|(_, args)| {
            args.windows(2).any(|w| w[0] == "proxy" && w[1] == "daemon")
                && args.iter().any(|a| a == &wanted)
        })
        .map(|(pid, _)| pid)
        .collect()
}

/// The details of the session's refused faults.
fn refusals(session: &Path) -> Vec<String> {
    gameday::timeline::read(&session.join(gameday::timeline::FILE_NAME))
        .unwrap()
        .into_iter()
        .filter_map(|e| match e.kind {
            gameday::timeline::EventKind::Fault {
                phase: gameday::timeline::FaultPhase::Refused,
                detail,
                ..
            } => Some(detail),
            _ => None,
        })
        .collect()
}

#[test]
fn two_consoles_on_one_config_own_their_faults_and_see_each_others() {
    let rig = Rig::new("two-consoles");
    let mut a = rig.console("alice");
    let mut b = rig.console("bob");
    a.wait_for("slow-two", Duration::from_secs(20));
    b.wait_for("slow-two", Duration::from_secs(20));

    a.inject("1", "slow-one");
    wait_until("A's fault acts", Duration::from_secs(10), || slow(rig.one));
    // The same fault on the same target from B is refused, naming who holds it.
    b.inject("1", "slow-one");
    b.wait_for("REFUSED", Duration::from_secs(5));
    let refusal = refusals(&rig.artifacts.join("bob"));
    assert!(
        refusal
            .iter()
            .any(|d| d.contains("(alice) already applies this fault")),
        "{refusal:?}"
    );
    b.inject("2", "slow-two");
    wait_until("B's fault acts", Duration::from_secs(10), || slow(rig.two));

    // Two entries, two owners, two ids that share nothing.
    let ids = rig.ledger_ids();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert_ne!(ids[0].0, ids[1].0);
    let mut owners: Vec<&str> = ids.iter().map(|(_, s)| s.as_str()).collect();
    owners.sort();
    assert_eq!(owners, ["alice", "bob"]);
    // Each screen lists the other's fault with its owner.
    a.wait_for("other consoles (1)", Duration::from_secs(5));
    a.wait_for("(bob)", Duration::from_secs(5));
    b.wait_for("(alice)", Duration::from_secs(5));

    // X in A reverts A's fault only; B's keeps acting and B still shows it active.
    a.keys("X");
    wait_until("A's fault is reverted", Duration::from_secs(10), || {
        !slow(rig.one)
    });
    assert!(slow(rig.two), "B's fault survives A's X");
    b.wait_for("ACTIVE", Duration::from_secs(5));
    assert_eq!(rig.ledger_ids().len(), 1);
    a.wait_for("other consoles (1)", Duration::from_secs(5));

    // A reverts everyone's, after a confirm: B's fault goes, and B's screen says so.
    a.keys("E");
    a.wait_for("Revert EVERYONE's faults?", Duration::from_secs(5));
    a.keys("y");
    wait_until(
        "B's fault is reverted by A",
        Duration::from_secs(10),
        || !slow(rig.two),
    );
    assert!(rig.ledger_ids().is_empty());
    b.wait_for("no active faults", Duration::from_secs(5));

    a.keys("q");
    b.keys("q");
    assert!(a.wait_exit(Duration::from_secs(20)).success());
    assert!(b.wait_exit(Duration::from_secs(20)).success());
}

#[test]
fn check_and_snapshot_during_a_drill_change_nothing_on_the_data_path() {
    let rig = Rig::new("readonly-drill");
    let mut console = rig.console("drill");
    console.wait_for("slow-two", Duration::from_secs(20));
    console.inject("1", "slow-one");
    wait_until("the fault acts", Duration::from_secs(10), || slow(rig.one));
    // Live traffic on an open connection through the other proxy.
    let mut live = TcpStream::connect(rig.two).unwrap();
    live.set_nodelay(true).unwrap();
    assert!(rtt(&mut live).is_some());
    let before = gameday::proxy::format_status(&status(&rig.artifacts));

    // A teammate checks an edited config: one proxy moved, one gone.
    let edited = rig.dir.join("edited.toml");
    std::fs::write(
        &edited,
        format!(
            "[console]\nartifacts = \"{}\"\n\n[[proxy]]\nname = \"two\"\nlisten = \"127.0.0.1:{}\"\nupstream = \"127.0.0.1:9\"\n",
            rig.artifacts.display(),
            free_port()
        ),
    )
    .unwrap();
    let edited = edited.display().to_string();
    let check = rig.gameday(&["check", "--config", &edited]);
    assert!(check.status.code().is_some(), "{check:?}");
    let snapshot = rig.gameday(&["snapshot", "--config", &edited, "--json"]);
    assert!(snapshot.status.success(), "{snapshot:?}");

    // The open connection still flows, the fault still acts, the daemon is as it was.
    assert!(rtt(&mut live).is_some(), "the live connection survives");
    assert!(slow(rig.one), "the drill's fault still acts");
    let after = status(&rig.artifacts);
    assert_eq!(after.lease.consoles.len(), 1, "no lease taken: {after:?}");
    let same = |s: &str| -> Vec<String> {
        s.lines()
            .filter(|l| l.trim_start().starts_with("one") || l.trim_start().starts_with("two"))
            .map(|l| l.split(';').next().unwrap().to_string())
            .collect()
    };
    assert_eq!(same(&before), same(&gameday::proxy::format_status(&after)));

    console.keys("q");
    assert!(console.wait_exit(Duration::from_secs(20)).success());
}

fn status(artifacts: &Path) -> gameday::proxy::StatusReport {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(gameday::proxy::daemon_status(
            artifacts,
            Duration::from_secs(3),
        ))
        .expect("the daemon answers")
}

#[test]
fn check_snapshot_and_a_headless_run_leave_no_daemon_behind() {
    let rig = Rig::new("no-leftovers");
    let config = rig.config.display().to_string();
    let check = rig.gameday(&["check", "--config", &config]);
    assert!(check.status.code().is_some(), "{check:?}");
    let snapshot = rig.gameday(&["snapshot", "--config", &config]);
    assert!(snapshot.status.success(), "{snapshot:?}");
    assert!(
        daemons_for(&rig.artifacts).is_empty(),
        "check and snapshot start no daemon"
    );

    // A run injects through the daemon it starts, and stops it once it is done.
    let scenario = rig.dir.join("slow.toml");
    std::fs::write(
        &scenario,
        r#"title = "slow proxy"
hypothesis = "the host stays up"

[baseline]
duration = "1s"

[[baseline.check]]
metric = "host.cpu"
op = ">="
value = 0

[[step]]
at = "0s"
fault = "slow-one"
duration = "1s"

[recovery]
within = "5s"

[[recovery.check]]
metric = "host.mem"
op = ">"
value = 0
"#,
    )
    .unwrap();
    let run = rig.gameday(&["run", &scenario.display().to_string(), "--config", &config]);
    assert!(run.status.success(), "{run:?}");
    assert!(
        String::from_utf8_lossy(&run.stdout).contains("slow-one"),
        "{run:?}"
    );
    wait_until("the run's daemon is gone", Duration::from_secs(5), || {
        daemons_for(&rig.artifacts).is_empty()
    });
    assert!(
        Ledger::new(&rig.artifacts)
            .unwrap()
            .entries()
            .unwrap()
            .is_empty()
    );
}

#[test]
fn a_daemon_whose_directory_is_deleted_exits_by_itself() {
    let rig = Rig::new("orphan-daemon");
    let mut console = rig.console("drill");
    console.wait_for("slow-two", Duration::from_secs(20));
    console.keys("q");
    assert!(console.wait_exit(Duration::from_secs(20)).success());
    let daemons = daemons_for(&rig.artifacts);
    assert_eq!(daemons.len(), 1, "the console's daemon outlives it");
    std::fs::remove_dir_all(&rig.artifacts).unwrap();
    wait_until(
        "the unreachable daemon exits",
        Duration::from_secs(10),
        || daemons_for(&rig.artifacts).is_empty(),
    );
}

#[test]
fn recover_refuses_a_corrupt_ledger_and_an_undeclared_target() {
    let rig = Rig::new("recover-ledger");
    let config = rig.config.display().to_string();
    std::fs::create_dir_all(&rig.artifacts).unwrap();
    let ledger = rig.artifacts.join("ledger.json");

    std::fs::write(&ledger, "{not json").unwrap();
    let out = rig.gameday(&["recover", "--config", &config]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{out:?}");
    assert!(stderr.contains("ledger.json"), "names the file: {stderr}");
    assert!(stderr.contains("not a ledger"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&ledger).unwrap(), "{not json");

    // An entry for a process the config does not declare, whose revert would run a command.
    let ran = rig.dir.join("ran");
    let entry = serde_json::json!({"entries": [{
        "id": "evil-1",
        "name": "evil",
        "spec": {"kind": "process", "target": {
            "name": "evil", "process_name": "nothing-here", "cmdline": null,
            "start": ["touch", ran.display().to_string()], "ready": null, "children": false
        }, "action": "kill"},
        "owner": {"id": "gone-abc123", "pid": 4000000, "user": "x", "host": "y", "session": "gone"},
        "recorded_at": "2026-01-01T00:00:00Z",
        "lease_until": "2026-01-01T00:05:00Z"
    }]});
    std::fs::write(&ledger, entry.to_string()).unwrap();
    let out = rig.gameday(&["recover", "--config", &config]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    assert!(stdout.contains("does not declare it"), "{stdout}");
    assert!(!ran.exists(), "no command of an undeclared target ran");
    assert_eq!(
        Ledger::new(&rig.artifacts)
            .unwrap()
            .entries()
            .unwrap()
            .len(),
        1,
        "the entry stays for the config that declares it"
    );
}
