//! Watchers and replays on the real lab: a console drives, `gameday watch` follows in a second
//! terminal (by session name) and a third (from stdin, fed by a copier that cuts lines and
//! pauses), and each change reaches every screen within a second of the console's. Then the
//! finished session is replayed, and every key is pressed on a watcher and a replay to show
//! neither can change anything.

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use support::{Console, headless_demo, test_dir, wait_until};

const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// A short scenario against the lab's catalog: two seconds of baseline, the broker cut off for
/// three, back within thirty.
const QUICK: &str = r#"
title = "Quick partition"
hypothesis = "The lab notices a partitioned broker and recovers once it is back."

[baseline]
duration = "2s"

[[baseline.check]]
name = "broker up"
metric = "nats.up"
aggregate = "min"
op = "=="
value = 1

[[step]]
at = "0s"
fault = "nats-partition"
duration = "3s"

[recovery]
within = "30s"

[[recovery.check]]
name = "broker back"
metric = "nats.up"
op = "=="
value = 1
"#;

/// The demo's config with its scenarios in `dir` (holding only the quick one).
fn config_with_quick_scenario(demo_config: &str, dir: &Path) -> PathBuf {
    let scenarios = dir.join("scenarios");
    std::fs::create_dir_all(&scenarios).unwrap();
    std::fs::write(scenarios.join("quick.toml"), QUICK).unwrap();
    let text = std::fs::read_to_string(demo_config).unwrap();
    let text: String = text
        .lines()
        .map(|l| {
            if l.starts_with("scenarios = ") {
                format!("scenarios = \"{}\"", scenarios.display())
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let path = dir.join("watched.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Waits until every screen shows `text`; returns how long after the console each viewer did.
fn everyone_sees(console: &Console, viewers: &[&Console], text: &str) -> Vec<Duration> {
    let start = Instant::now();
    let deadline = Duration::from_secs(60);
    let mut console_at = None;
    let mut viewers_at = vec![None; viewers.len()];
    while console_at.is_none() || viewers_at.iter().any(Option::is_none) {
        assert!(
            start.elapsed() < deadline,
            "{text:?} not on every screen within {deadline:?}\nconsole:\n{}\nviewers:\n{}",
            console.screen(),
            viewers
                .iter()
                .map(|v| v.screen())
                .collect::<Vec<_>>()
                .join("\n----\n")
        );
        if console_at.is_none() && console.screen().contains(text) {
            console_at = Some(Instant::now());
        }
        for (at, viewer) in viewers_at.iter_mut().zip(viewers) {
            if at.is_none() && viewer.screen().contains(text) {
                *at = Some(Instant::now());
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let console_at = console_at.unwrap();
    viewers_at
        .into_iter()
        .map(|at| at.unwrap().saturating_duration_since(console_at))
        .collect()
}

fn assert_within_a_second(what: &str, lags: &[Duration]) {
    for lag in lags {
        assert!(
            *lag <= Duration::from_secs(1),
            "{what}: a viewer showed it {lag:?} after the console"
        );
    }
}

/// Copies `path` to `sink` as it grows, in odd-sized pieces with pauses, so lines arrive cut
/// anywhere; ends when `stop` says so and the file has been copied whole.
fn slow_copier(
    path: PathBuf,
    mut sink: std::process::ChildStdin,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut sent = 0usize;
        let mut piece = 7usize;
        loop {
            let done = stop.load(std::sync::atomic::Ordering::SeqCst);
            let bytes = std::fs::read(&path).unwrap_or_default();
            while sent < bytes.len() {
                let end = (sent + piece).min(bytes.len());
                if sink.write_all(&bytes[sent..end]).is_err() {
                    return;
                }
                let _ = sink.flush();
                sent = end;
                piece = piece * 7 % 1531 + 1;
                std::thread::sleep(Duration::from_millis(3));
            }
            if done {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    })
}

#[test]
fn watchers_follow_a_live_drill_within_a_second_and_a_replay_plays_it_back() {
    let dir = test_dir("watch");
    let (demo, demo_config) = headless_demo(&dir, 5.0);
    let _demo = StopOnDrop(demo);
    let config = config_with_quick_scenario(&demo_config, &dir);
    let config_arg = config.display().to_string();
    let repo = Path::new(REPO);

    let mut console = Console::spawn(
        repo,
        &["console", "--config", &config_arg, "--session", "watched"],
        160,
        48,
    );
    console.wait_for("TASKS/workers", Duration::from_secs(60));
    // One watcher by session name, on a terminal of its own size.
    let mut watcher = Console::spawn(
        repo,
        &["watch", "watched", "--config", &config_arg],
        150,
        46,
    );
    watcher.wait_for("WATCH by", Duration::from_secs(30));
    // One from stdin, fed by a copier that cuts lines anywhere.
    let artifacts = std::fs::read_to_string(&config)
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("artifacts = ")
                .map(|v| v.trim_matches('"').to_string())
        })
        .map(PathBuf::from)
        .expect("the demo config names its artifacts dir");
    let timeline = artifacts.join("watched/timeline.jsonl");
    let mut copier_child = std::process::Command::new("cat")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let copier = slow_copier(
        timeline.clone(),
        copier_child.stdin.take().unwrap(),
        stop.clone(),
    );
    let piped = Console::spawn_with_stdin(
        repo,
        &["watch", "-"],
        Stdio::from(copier_child.stdout.take().unwrap()),
        160,
        48,
    );
    piped.wait_for("WATCH by", Duration::from_secs(30));
    let viewers = [&watcher, &piped];

    // The driver's header counts the local watcher (stdin watchers cannot be known).
    console.wait_for("1 watching", Duration::from_secs(10));
    everyone_sees(&console, &viewers, "TASKS/workers");

    // A fault, applied and reverted: the header, the NATS panel going down and coming back.
    console.inject("1", "nats-partition");
    assert_within_a_second(
        "fault active",
        &everyone_sees(&console, &viewers, "◆ 1 fault active"),
    );
    assert_within_a_second(
        "the broker's source down",
        &everyone_sees(&console, &viewers, "nats DOWN"),
    );
    console.keys("X");
    assert_within_a_second(
        "fault reverted",
        &everyone_sees(&console, &viewers, "no active faults"),
    );

    // A scenario: its phases and its verdict.
    console.keys("s");
    console.wait_for("Run a scenario", Duration::from_secs(5));
    console.keys("\r");
    console.wait_for("Run scenario", Duration::from_secs(5));
    console.keys("y");
    assert_within_a_second(
        "baseline phase",
        &everyone_sees(&console, &viewers, "BASELINE"),
    );
    assert_within_a_second(
        "a check's live verdict",
        &everyone_sees(&console, &viewers, "✔ baseline broker up"),
    );
    assert_within_a_second(
        "the step's fault, observed",
        &everyone_sees(&console, &viewers, "OBSERVING"),
    );
    assert_within_a_second("verdict", &everyone_sees(&console, &viewers, "✔ Pass"));

    // The console ends: the watchers say so and keep the last frame.
    console.keys("q");
    assert!(console.wait_exit(Duration::from_secs(60)).success());
    watcher.wait_for("ended", Duration::from_secs(10));
    assert!(watcher.screen().contains("✔ Pass"), "{}", watcher.screen());
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    copier.join().unwrap();
    piped.wait_for("ended", Duration::from_secs(10));
    assert!(!piped.screen().contains("malformed"), "{}", piped.screen());
    watcher.keys("q");
    assert!(watcher.wait_exit(Duration::from_secs(10)).success());
    drop(piped);
    let _ = copier_child.kill();
    let _ = copier_child.wait();

    // The finished session played back: jump to the first fault, play, and export the report.
    let session = timeline.parent().unwrap().to_path_buf();
    let session_arg = session.display().to_string();
    let mut replay = Console::spawn(
        repo,
        &["replay", &session_arg, "--config", &config_arg],
        160,
        48,
    );
    replay.wait_for("REPLAY ❚❚ 1×", Duration::from_secs(30));
    replay.keys("]");
    replay.wait_for("1 fault active", Duration::from_secs(5));
    replay.keys("++ ");
    replay.wait_for("REPLAY ▶ 5×", Duration::from_secs(5));
    let _ = std::fs::remove_file(session.join("report.md"));
    replay.keys("x");
    wait_until(
        "the replay exports the report",
        Duration::from_secs(10),
        || session.join("report.md").exists(),
    );
    replay.keys("q");
    assert!(replay.wait_exit(Duration::from_secs(10)).success());

    every_key_leaves_the_system_alone(repo, &artifacts, &session_arg, &config_arg);
}

/// What a viewer must never change: the fault ledger, the proxy daemon's consoles, listeners
/// and faults, and the lab's broker and database.
fn system_state(artifacts: &Path) -> (Vec<u8>, Vec<String>, Vec<(u32, bool)>) {
    let ledger = std::fs::read(artifacts.join("ledger.json")).unwrap_or_default();
    let status = support::gameday(
        artifacts,
        &["proxy", "status", "--dir", &artifacts.display().to_string()],
    );
    assert!(status.status.success(), "{status:?}");
    // Counters move with the lab's traffic; who is attached, what listens and which faults
    // are applied must not.
    let daemon = String::from_utf8_lossy(&status.stdout)
        .lines()
        .filter(|l| !l.starts_with("proxy daemon pid"))
        .map(|l| {
            let l = l.split(';').next().unwrap_or(l);
            l.split(", heard from").next().unwrap_or(l).to_string()
        })
        .collect();
    let dir = artifacts.display().to_string();
    let targets = support::processes()
        .into_iter()
        .filter(|(_, args)| {
            args.iter().any(|a| a.contains(&dir))
                && args
                    .first()
                    .is_some_and(|exe| exe.ends_with("nats-server") || exe.ends_with("postgres"))
        })
        // Running or sleeping comes and goes; stopped (T) must not.
        .map(|(pid, _)| (pid, process_state(pid).eq_ignore_ascii_case("t")))
        .collect();
    (ledger, daemon, targets)
}

/// The state letter of `/proc/<pid>/stat` (R, S, T…).
fn process_state(pid: u32) -> String {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit(") ")
        .next()
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or("?")
        .to_string()
}

/// The socket inodes `pid` holds.
fn sockets_of(pid: u32) -> Vec<u64> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|fds| {
            fds.flatten()
                .filter_map(|fd| std::fs::read_link(fd.path()).ok())
                .filter_map(|target| {
                    let target = target.display().to_string();
                    target
                        .strip_prefix("socket:[")?
                        .strip_suffix(']')?
                        .parse()
                        .ok()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The sockets of `pid` that lead anywhere but back into `pid` (its runtime's own wake-up
/// pairs are fine): a unix socket whose peer another process holds, or any network socket.
fn sockets_leading_out(pid: u32) -> Vec<String> {
    let own = sockets_of(pid);
    let ss = std::process::Command::new("ss")
        .args(["-x", "-a", "-n"])
        .output()
        .expect("ss (iproute2) runs");
    // Netid State Recv-Q Send-Q Local-Address Local-Port(inode) Peer-Address Peer-Port(inode)
    let peers: std::collections::HashMap<u64, (u64, String)> = String::from_utf8_lossy(&ss.stdout)
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local: u64 = fields.get(5)?.parse().ok()?;
            let peer: u64 = fields.get(7)?.parse().unwrap_or(0);
            Some((local, (peer, fields.get(4)?.to_string())))
        })
        .collect();
    own.iter()
        .filter_map(|inode| match peers.get(inode) {
            None => Some(format!("socket {inode}: not a unix socket (network?)")),
            Some((peer, _)) if own.contains(peer) => None,
            Some((peer, path)) => Some(format!("socket {inode} ({path}) connected to {peer}")),
        })
        .collect()
}

/// Every key of every table, and then some, pressed on a watcher and on a replay.
fn every_key_leaves_the_system_alone(repo: &Path, artifacts: &Path, session: &str, config: &str) {
    let before = system_state(artifacts);
    assert!(!before.2.is_empty(), "the lab's broker and database run");
    let mut watcher = Console::spawn(repo, &["watch", "watched", "--config", config], 120, 40);
    let mut replay = Console::spawn(repo, &["replay", session, "--config", config], 120, 40);
    watcher.wait_for("WATCH", Duration::from_secs(30));
    replay.wait_for("REPLAY", Duration::from_secs(30));
    let printable: String = (' '..='~').filter(|c| *c != 'q').collect();
    let special = [
        "\r",
        "\t",
        "\x1b[Z",
        "\x1b[A",
        "\x1b[B",
        "\x1b[C",
        "\x1b[D",
        "\x1b[1;2C",
        "\x1b[1;2D",
        "\x7f",
        "\x1b",
    ];
    for viewer in [&mut watcher, &mut replay] {
        for c in printable.chars() {
            viewer.keys(&c.to_string());
        }
        for key in special {
            viewer.keys(key);
            // A lone escape is told from a sequence by a pause.
            std::thread::sleep(Duration::from_millis(60));
        }
        // Help open or closed, zoomed or not: both still draw and run.
        viewer.keys("\x1b");
    }
    std::thread::sleep(Duration::from_millis(500));
    // No daemon control socket, no broker, no database: every socket leads back to itself.
    for viewer in [&watcher, &replay] {
        let out = sockets_leading_out(viewer.pid());
        assert!(out.is_empty(), "a viewer reaches out: {out:?}");
    }
    let after = system_state(artifacts);
    assert_eq!(before.0, after.0, "the ledger is untouched");
    assert_eq!(before.1, after.1, "the proxy daemon is untouched");
    assert_eq!(before.2, after.2, "the lab's processes are untouched");
    for viewer in [&mut watcher, &mut replay] {
        viewer.keys("q");
        assert!(viewer.wait_exit(Duration::from_secs(10)).success());
    }
}

/// The lab stops with the test, passed or failed.
struct StopOnDrop(std::process::Child);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.0.wait();
    }
}
