//! Guard rails for real environments: a production config refuses faults and scenarios unless
//! gameday was started with `--allow-production`, and then wants the environment's name typed;
//! a dry run resolves what a drill would touch — real pids, container ids, connection counts —
//! and touches nothing; an ambiguous target makes it fail, naming the matches. Judged on the
//! real targets (process states) and the ledger.

mod support;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use gameday::ledger::Ledger;
use support::{Console, gameday, test_dir, wait_until};

/// A `sleep` process whose command line carries `marker`, to drill on.
struct Sleeper(Child);

impl Sleeper {
    fn start(marker: &str) -> Sleeper {
        // A shell that runs `sleep` and then a no-op naming the marker: its command line
        // carries the marker (an `exec` would replace it with sleep's).
        // Its own process group, so dropping it takes the `sleep` too; no inherited output, so
        // nothing of it can hold the test runner's pipes open.
        let child = Command::new("sh")
            .arg("-c")
            .arg(format!("sleep 600; : {marker}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        Sleeper(child)
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Whether it is stopped (SIGSTOP), as the kernel says.
    fn stopped(&self) -> bool {
        matches!(self.state(), 'T' | 't')
    }

    /// The process's state letter (`S`, `R`, `T`…).
    fn state(&self) -> char {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap();
        stat.rsplit_once(')')
            .unwrap()
            .1
            .trim_start()
            .chars()
            .next()
            .unwrap()
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let group = nix::unistd::Pid::from_raw(self.pid() as i32);
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        let _ = self.0.wait();
    }
}

/// A config with a freeze fault on the processes whose command line has `marker`.
fn config(dir: &Path, marker: &str, console: &str) -> PathBuf {
    let path = dir.join("gameday.toml");
    std::fs::write(
        &path,
        format!(
            "[console]\nartifacts = \"{}\"\nsample_interval = \"500ms\"\n{console}\n\n\
             [[process]]\nname = \"worker\"\ncmdline = \"{marker}\"\n\n\
             [[fault]]\nname = \"freeze-worker\"\nkey = 1\nkind = \"process_freeze\"\ntarget = \"worker\"\nduration = \"1m\"\n",
            dir.join("artifacts").display()
        ),
    )
    .unwrap();
    path
}

fn scenario(dir: &Path) -> PathBuf {
    let path = dir.join("freeze.toml");
    std::fs::write(
        &path,
        "title = \"freeze the worker\"\nhypothesis = \"the host stays up\"\n\n\
         [[step]]\nat = \"0s\"\nfault = \"freeze-worker\"\nduration = \"2s\"\n",
    )
    .unwrap();
    path
}

fn ledger_is_empty(dir: &Path) -> bool {
    Ledger::new(&dir.join("artifacts"))
        .unwrap()
        .entries()
        .unwrap()
        .is_empty()
}

/// `gameday run --dry-run` of the freeze scenario: exit code and what it printed.
fn dry_run(dir: &Path, config: &Path) -> (Option<i32>, String) {
    let out = gameday(
        dir,
        &[
            "run",
            &scenario(dir).display().to_string(),
            "--config",
            &config.display().to_string(),
            "--dry-run",
        ],
    );
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

const PRODUCTION: &str = "environment = \"prod-eu\"\nproduction = true";

#[test]
fn a_production_run_needs_allow_production_and_touches_nothing_without_it() {
    let dir = test_dir("rails-run");
    let marker = format!("gameday-rails-{}", std::process::id());
    let worker = Sleeper::start(&marker);
    let config = config(&dir, &marker, PRODUCTION);
    let out = gameday(
        &dir,
        &[
            "run",
            &scenario(&dir).display().to_string(),
            "--config",
            &config.display().to_string(),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        stderr.contains("prod-eu (PRODUCTION) is marked production")
            && stderr.contains("--allow-production"),
        "{stderr}"
    );
    assert!(!worker.stopped(), "the target was not touched");
    assert!(ledger_is_empty(&dir));

    // `check` names the environment.
    let check = gameday(&dir, &["check", "--config", &config.display().to_string()]);
    assert!(
        String::from_utf8_lossy(&check.stdout).contains("environment: prod-eu (PRODUCTION)"),
        "{check:?}"
    );
}

#[test]
fn a_production_console_refuses_a_key_and_with_allow_production_wants_the_name_typed() {
    let dir = test_dir("rails-console");
    let marker = format!("gameday-rails-console-{}", std::process::id());
    let worker = Sleeper::start(&marker);
    let config = config(&dir, &marker, PRODUCTION).display().to_string();

    let mut refused = Console::spawn(
        &dir,
        &["--config", &config, "--session", "no-flag"],
        160,
        48,
    );
    refused.wait_for("freeze-worker", Duration::from_secs(20));
    refused.wait_for("prod-eu (PRODUCTION)", Duration::from_secs(5));
    refused.keys("1");
    refused.wait_for("refused the inject", Duration::from_secs(5));
    assert!(!worker.stopped());
    refused.keys("q");
    assert!(refused.wait_exit(Duration::from_secs(20)).success());

    let mut allowed = Console::spawn(
        &dir,
        &[
            "--config",
            &config,
            "--session",
            "allowed",
            "--allow-production",
        ],
        160,
        48,
    );
    allowed.wait_for("freeze-worker", Duration::from_secs(20));
    allowed.keys("1");
    allowed.wait_for("Type prod-eu and press enter", Duration::from_secs(5));
    // The confirm names what it would really touch: the worker's pid.
    allowed.wait_for(&format!("pid {}", worker.pid()), Duration::from_secs(10));
    allowed.keys("prod-us\r");
    allowed.wait_for("not the environment's name", Duration::from_secs(5));
    assert!(!worker.stopped(), "a wrong name injects nothing");
    allowed.keys("\x7f\x7f\x7f\x7f\x7f\x7f\x7fprod-eu\r");
    wait_until("the worker is frozen", Duration::from_secs(10), || {
        worker.stopped()
    });
    allowed.keys("q");
    assert!(allowed.wait_exit(Duration::from_secs(20)).success());
    assert!(!worker.stopped(), "thawed on the way out");
    assert!(ledger_is_empty(&dir));
}

#[test]
fn a_dry_run_names_an_ambiguous_target_and_touches_nothing() {
    let dir = test_dir("rails-ambiguous");
    let marker = format!("gameday-rails-twins-{}", std::process::id());
    let (one, two) = (Sleeper::start(&marker), Sleeper::start(&marker));
    let config = config(&dir, &marker, "");
    let (code, stdout) = dry_run(&dir, &config);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.contains("ambiguous"), "{stdout}");
    for pid in [one.pid(), two.pid()] {
        assert!(
            stdout.contains(&pid.to_string()),
            "names pid {pid}: {stdout}"
        );
    }
    assert!(!one.stopped() && !two.stopped());
    assert!(ledger_is_empty(&dir));

    // One match: resolved, exit 0, and still nothing touched.
    drop(two);
    let (code, stdout) = dry_run(&dir, &config);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(
        stdout.contains(&format!("touches pid {}", one.pid())),
        "{stdout}"
    );
    assert!(!one.stopped());
    assert!(ledger_is_empty(&dir));
}
