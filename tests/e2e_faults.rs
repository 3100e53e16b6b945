//! The container, process, PostgreSQL and NATS faults end to end, the way an operator uses them:
//! keys pressed in the console binary in a real terminal, the panels showing the effect, the lab
//! (a real task tracker on a real broker and database) behaving as promised. (Every way out of
//! the console, for every kind, is the safety matrix in `tests/safety.rs`.)
//!
//! The figures the drills are judged by (stop→down, revert→up, revert→zero sessions, quit→exit)
//! are printed; run with `--nocapture` to see them.

mod support;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bollard::models::ContainerStateStatusEnum as Status;
use gameday::lab::{
    APPLICATION_NAME, DatabaseUrl, LabHandle, LabOptions, Received, SinkHandle, SinkOptions,
    StatsSnapshot, run_lab, run_sink,
};
use gameday::ledger::{Ledger, LedgerEntry};
use gameday::services::{NatsOptions, NatsServer, PgCluster, PgOptions};
use gameday::timeline::{Cause, EventKind, FaultPhase};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::{ConnectOptions, Connection};
use support::docker::{DockerLab, answers};
use support::{Console, events, wait_until};
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;

/// Big enough for every panel to show its status line and rows.
const COLS: u16 = 160;
const ROWS: u16 = 48;
/// The NATS panel must show a broker down within this (the issue's promise).
const DOWN_WITHIN: Duration = Duration::from_secs(3);
const TRACKER_ROLE: &str = "tracker";
const TRACKER_PASSWORD: &str = "tracker-pw";
const TASKS_DB: &str = "tasks";

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

// --- What the console shows ---------------------------------------------------------------

/// The first line inside the panel titled `title`: its status line.
fn panel_status(screen: &str, title: &str) -> Option<String> {
    let rows: Vec<&str> = screen.lines().collect();
    let needle = format!(" {title}");
    let (at, row) = rows.iter().enumerate().find(|(_, r)| r.contains(&needle))?;
    // The title follows the panel's corner and a space: the inside starts at that space.
    let column = row[..row.find(&needle)?].chars().count();
    let below = rows.get(at + 1)?;
    let inside: String = below
        .chars()
        .skip(column)
        .take_while(|c| !matches!(c, '┃' | '│'))
        .collect();
    Some(inside.trim().to_string())
}

fn nats_up(screen: &str) -> bool {
    panel_status(screen, "NATS JetStream").is_some_and(|s| s.starts_with("✔ up"))
}

fn nats_down(screen: &str) -> bool {
    panel_status(screen, "NATS JetStream").is_some_and(|s| s.contains("DOWN since"))
}

/// Waits until the screen satisfies `holds`; how long that took. The failure carries the screen.
fn wait_screen(
    console: &Console,
    what: &str,
    deadline: Duration,
    mut holds: impl FnMut(&str) -> bool,
) -> Duration {
    let started = Instant::now();
    loop {
        let screen = console.screen();
        if holds(&screen) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < deadline,
            "timed out after {deadline:?} waiting until {what}; screen:\n{screen}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

// --- What a session leaves on disk ----------------------------------------------------------

/// The fault events of one phase: (name, cause, detail).
fn fault_events(
    artifacts: &Path,
    session: &str,
    wanted: FaultPhase,
) -> Vec<(String, Option<Cause>, String)> {
    events(artifacts, session)
        .into_iter()
        .filter_map(|e| match e {
            EventKind::Fault {
                name,
                phase,
                cause,
                detail,
                ..
            } if phase == wanted => Some((name, cause, detail)),
            _ => None,
        })
        .collect()
}

fn ledger(artifacts: &Path) -> Vec<LedgerEntry> {
    Ledger::new(artifacts).unwrap().entries().unwrap()
}

/// Writes `gameday.toml` in `dir` with artifacts under it and a 500 ms sample interval.
fn write_config(dir: &Path, body: &str) -> (PathBuf, PathBuf) {
    let artifacts = dir.join("artifacts");
    let config = dir.join("gameday.toml");
    std::fs::write(
        &config,
        format!(
            "[console]\nartifacts = \"{}\"\nsample_interval = \"500ms\"\n\n{body}",
            artifacts.display()
        ),
    )
    .unwrap();
    (config, artifacts)
}

fn console(dir: &Path, config: &Path, session: &str) -> Console {
    let config = config.display().to_string();
    Console::spawn(
        dir,
        &["--config", &config, "--session", session],
        COLS,
        ROWS,
    )
}

// --- The lab: a task tracker on a real broker and database ----------------------------------

/// PostgreSQL with the lab's role and database, the webhook sink and the lab itself.
struct TaskTracker {
    postgres: PgCluster,
    sink: SinkHandle,
    lab: LabHandle,
    http: reqwest::Client,
}

/// One `POST /tasks` and how it went.
#[derive(Debug)]
struct Submission {
    status: StatusCode,
    body: Value,
    elapsed: Duration,
}

impl TaskTracker {
    async fn start(
        dir: &Path,
        nats_url: String,
        max_connections: u32,
        tune: impl FnOnce(&mut LabOptions),
    ) -> TaskTracker {
        let mut options = PgOptions::new(dir.join("postgres"));
        options.max_connections = max_connections;
        let postgres = PgCluster::start(options).await.expect("start PostgreSQL");
        postgres
            .create_role(TRACKER_ROLE, TRACKER_PASSWORD)
            .await
            .unwrap();
        postgres
            .create_database(TASKS_DB, TRACKER_ROLE)
            .await
            .unwrap();
        let sink = run_sink(SinkOptions::local(), CancellationToken::new())
            .await
            .expect("start the sink");
        let mut lab_options = LabOptions::new(
            nats_url,
            DatabaseUrl::new(postgres.url_for(TRACKER_ROLE, TRACKER_PASSWORD, TASKS_DB)),
            sink.url(),
        );
        // Deliveries lost with a stopped broker come back after the ack wait: keep it short.
        lab_options.ack_wait = Some(Duration::from_secs(3));
        tune(&mut lab_options);
        let lab = run_lab(lab_options, CancellationToken::new())
            .await
            .expect("start the lab");
        let http = gameday::http_client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        TaskTracker {
            postgres,
            sink,
            lab,
            http,
        }
    }

    async fn submit(&self, title: &str) -> Submission {
        let started = Instant::now();
        let response = self
            .http
            .post(format!("{}/tasks", self.lab.url()))
            .json(&json!({ "title": title }))
            .send()
            .await
            .expect("POST /tasks");
        let status = response.status();
        let body = response.json().await.unwrap_or(Value::Null);
        Submission {
            status,
            body,
            elapsed: started.elapsed(),
        }
    }

    /// Submits `n` tasks at once; their ids.
    async fn submit_burst(&self, n: usize, label: &str, bound: Duration) -> HashSet<String> {
        let requests = (0..n).map(|i| async move { self.submit(&format!("{label} {i}")).await });
        let mut ids = HashSet::new();
        for submission in futures::future::join_all(requests).await {
            assert_eq!(submission.status, StatusCode::ACCEPTED, "{submission:?}");
            assert!(submission.elapsed <= bound, "answered late: {submission:?}");
            ids.insert(submission.body["id"].as_str().expect("an id").to_string());
        }
        ids
    }

    /// Stops the lab (its tasks first), the sink and PostgreSQL.
    async fn stop(self) {
        self.lab.stop().await;
        self.sink.stop().await;
        let mut postgres = self.postgres;
        postgres.stop().await.expect("stop PostgreSQL");
    }

    async fn stats(&self) -> StatsSnapshot {
        support::get_json(&self.http, format!("{}/stats", self.lab.url())).await
    }

    async fn received(&self) -> Received {
        support::get_json(&self.http, format!("{}/received", self.sink.url())).await
    }

    /// Waits until every task in `ids` is stored, notified and its notification has reached the
    /// sink, with nothing left queued; what the lab and the sink say then.
    async fn all_done(
        &self,
        ids: &HashSet<String>,
        deadline: Duration,
    ) -> (StatsSnapshot, Received) {
        let started = Instant::now();
        loop {
            let stats = self.stats().await;
            let received = self.received().await;
            // The worker counts a notification once it is marked, after the sink got it.
            if stats.processed == ids.len() as u64
                && stats.notified >= ids.len() as u64
                && stats.retry_queue_depth == Some(0)
                && received.unique == ids.len()
            {
                let keys: HashSet<String> = received
                    .messages
                    .iter()
                    .filter_map(|m| m.idempotency_key.clone())
                    .collect();
                assert_eq!(&keys, ids, "a notification for exactly the submitted tasks");
                return (stats, received);
            }
            assert!(
                started.elapsed() < deadline,
                "not every task done within {deadline:?}: {stats:?}, sink got {} unique",
                received.unique
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// [`TaskTracker::all_done`], and each task was processed and notified exactly once.
    async fn all_done_once(&self, ids: &HashSet<String>, deadline: Duration) {
        let (stats, received) = self.all_done(ids, deadline).await;
        assert_eq!(stats.notified, ids.len() as u64, "{stats:?}");
        assert_eq!(
            (received.total, received.duplicates),
            (ids.len(), 0),
            "each task notified exactly once"
        );
    }
}

// --- Containers: the NATS broker failure experiment -----------------------------------------

#[test]
fn a_nats_container_stopped_and_paused_by_key_shows_down_then_up_and_no_task_is_lost() {
    let runtime = runtime();
    let docker = runtime.block_on(DockerLab::new("e2e-container"));
    let broker =
        runtime.block_on(docker.nats_with_args("broker", &[], None, &["-js", "-sd", "/data"]));
    let bystander = runtime.block_on(docker.nats("bystander", &[], None));
    let tracker = runtime.block_on(TaskTracker::start(
        &docker.dir,
        format!("nats://127.0.0.1:{}", broker.port),
        100,
        |_| {},
    ));
    let bound = Duration::from_secs(6);
    // A short id prefix Docker itself resolves to the bystander: not the exact declaration the
    // allowlist asks for, so gameday refuses it.
    let (config, artifacts) = write_config(
        &docker.dir,
        &format!(
            r#"[nats]
url = "nats://127.0.0.1:{port}"
timeout = "1s"

[[container]]
name = "broker"
container = "{broker}"

[[container]]
name = "bystander"
container = "{prefix}"

[[fault]]
name = "broker-stop"
key = 1
kind = "container_stop"
target = "broker"
duration = "2m"

[[fault]]
name = "broker-pause"
key = 2
kind = "container_pause"
target = "broker"
duration = "2m"

[[fault]]
name = "bystander-stop"
key = 3
kind = "container_stop"
target = "bystander"
"#,
            port = broker.port,
            broker = broker.name,
            prefix = &bystander.id[..8],
        ),
    );
    let mut console = console(&docker.dir, &config, "broker-failure");
    wait_screen(&console, "NATS shows up", Duration::from_secs(20), nats_up);

    let mut ids = runtime.block_on(tracker.submit_burst(5, "before", bound));
    runtime.block_on(tracker.all_done_once(&ids, Duration::from_secs(20)));

    // Stop: the panel shows the broker down, the API keeps answering 202 and queues.
    console.inject("1", "broker-stop");
    let stop_to_down = wait_screen(&console, "NATS shows down", DOWN_WITHIN, nats_down);
    assert_eq!(
        runtime.block_on(docker.status(&broker.name)),
        Status::EXITED
    );
    for n in 0..20 {
        let during = runtime.block_on(tracker.submit(&format!("during {n}")));
        assert_eq!(during.status, StatusCode::ACCEPTED, "{during:?}");
        assert_eq!(during.body["status"], "queued", "{during:?}");
        assert!(during.elapsed <= bound, "{during:?}");
        ids.insert(during.body["id"].as_str().expect("an id").to_string());
    }
    let depth = runtime.block_on(tracker.stats()).retry_queue_depth;
    assert!(depth >= Some(1), "the retry queue holds tasks: {depth:?}");

    // `r` reverts the selected (only) fault: the container starts and the panel shows it up.
    let revert = Instant::now();
    console.keys("r");
    wait_screen(
        &console,
        "NATS shows up again",
        Duration::from_secs(15),
        nats_up,
    );
    let revert_to_up = revert.elapsed();
    assert_eq!(
        runtime.block_on(docker.status(&broker.name)),
        Status::RUNNING
    );
    runtime.block_on(tracker.all_done_once(&ids, Duration::from_secs(60)));
    let revert_to_drained = revert.elapsed();

    // Pause freezes the container: no answer, so down; unpause thaws it.
    console.inject("2", "broker-pause");
    let pause_to_down = wait_screen(&console, "NATS shows down", DOWN_WITHIN, nats_down);
    assert_eq!(
        runtime.block_on(docker.status(&broker.name)),
        Status::PAUSED
    );
    let unpause = Instant::now();
    console.keys("r");
    wait_screen(
        &console,
        "NATS shows up after unpause",
        Duration::from_secs(10),
        nats_up,
    );
    let unpause_to_up = unpause.elapsed();
    assert_eq!(
        runtime.block_on(docker.status(&broker.name)),
        Status::RUNNING
    );

    // A container the allowlist does not name exactly is refused and left running.
    console.inject("3", "bystander-stop");
    console.wait_for("fault bystander-stop: refused:", Duration::from_secs(10));
    let failed = fault_events(&artifacts, "broker-failure", FaultPhase::Refused);
    assert!(
        failed
            .iter()
            .any(|(name, _, detail)| name == "bystander-stop"
                && detail.contains("refused")
                && detail.contains(&bystander.name)),
        "{failed:?}"
    );
    assert_eq!(
        runtime.block_on(docker.status(&bystander.name)),
        Status::RUNNING
    );
    assert!(runtime.block_on(answers(bystander.port)), "untouched");

    console.keys("q");
    assert!(console.wait_exit(Duration::from_secs(20)).success());
    assert!(ledger(&artifacts).is_empty());
    eprintln!(
        "container: stop→down {stop_to_down:?}, revert→up {revert_to_up:?}, revert→20 queued \
         tasks processed {revert_to_drained:?}; pause→down {pause_to_down:?}, unpause→up {unpause_to_up:?}"
    );
    drop(console);
    runtime.block_on(tracker.stop());
}

// --- PostgreSQL: the pool exhaustion experiment ---------------------------------------------

/// `used/capacity` and the percentage of the zoomed PostgreSQL panel's usage row named `name`
/// (`connections`, or a pool's application name).
fn pg_usage(screen: &str, name: &str) -> Option<(String, String)> {
    screen
        .lines()
        .filter(|line| line.split_whitespace().take(2).any(|cell| cell == name))
        .find_map(|row| {
            let mut cells = row
                .split_whitespace()
                .skip_while(|cell| !cell.contains('/'));
            let fraction = cells.next()?.to_string();
            let percent = cells.find(|cell| cell.ends_with('%'))?.to_string();
            Some((fraction, percent))
        })
}

/// How many connections the "other apps" row shows for `app`.
fn other_app(screen: &str, app: &str) -> Option<u32> {
    let row = screen.lines().find(|line| line.contains("other apps:"))?;
    let after = row.split(&format!("{app} ")).nth(1)?;
    after.split_whitespace().next()?.parse().ok()
}

/// Sessions of `application_name` in `pg_stat_activity`, seen by a superuser.
async fn sessions(postgres: &PgCluster, application_name: &str) -> i64 {
    let mut admin = postgres
        .superuser_options("postgres")
        .connect()
        .await
        .expect("superuser connection");
    let n = sqlx::query_scalar("select count(*) from pg_stat_activity where application_name = $1")
        .bind(application_name)
        .fetch_one(&mut admin)
        .await
        .expect("read pg_stat_activity");
    admin.close().await.expect("close");
    n
}

#[test]
fn pool_exhaustion_by_key_fills_the_server_times_the_pool_out_and_revert_leaves_no_session() {
    // 16 slots, 3 reserved for superusers: 13 for the console, the lab and the fault.
    const MAX_CONNECTIONS: u32 = 16;
    const USABLE: u32 = 13;
    let runtime = runtime();
    let dir = support::test_dir("e2e-pg-exhaust");
    let nats = runtime
        .block_on(NatsServer::start(NatsOptions::new(dir.join("nats"))))
        .expect("start nats-server");
    let pool_timeout = Duration::from_secs(1);
    let tracker = runtime.block_on(TaskTracker::start(
        &dir,
        nats.client_url(),
        MAX_CONNECTIONS,
        |o| {
            // One connection kept; the workers need overflow connections under a burst.
            o.pool_size = 1;
            o.max_overflow = 4;
            o.pool_timeout = pool_timeout;
            o.pool_idle_timeout = Duration::from_secs(1);
            o.request_timeout = Duration::from_secs(3);
        },
    ));
    runtime.block_on(async {
        tracker
            .postgres
            .create_role("console", "console-pw")
            .await
            .unwrap();
        let mut admin = tracker
            .postgres
            .superuser_options(TASKS_DB)
            .connect()
            .await
            .unwrap();
        sqlx::raw_sql("GRANT pg_monitor TO console")
            .execute(&mut admin)
            .await
            .unwrap();
        admin.close().await.unwrap();
    });
    // The console watches and holds connections as an ordinary role, as the README advises.
    let (config, artifacts) = write_config(
        &dir,
        &format!(
            r#"[postgres]
url = "{url}"

[[postgres.pool]]
application_name = "task-tracker"
size = 1
max_overflow = 4

[[fault]]
name = "pool-exhaustion"
key = 1
kind = "pg_exhaust"
connections = 50
state = "idle_in_transaction"
duration = "2m"
"#,
            url = tracker.postgres.url_for("console", "console-pw", TASKS_DB)
        ),
    );
    let mut console = console(&dir, &config, "pool-exhaustion");
    console.wait_for("pool-exhaustion", Duration::from_secs(20));
    // Zoom the PostgreSQL panel (focus starts on NATS) so every row fits.
    console.keys("\tz");
    console.wait_for("PostgreSQL zoomed", Duration::from_secs(5));

    let mut ids = runtime.block_on(tracker.submit_burst(5, "before", Duration::from_secs(3)));
    runtime.block_on(tracker.all_done_once(&ids, Duration::from_secs(20)));
    // Once idle, the lab's pool is back to its one kept connection, and the panel says so.
    wait_until(
        "the lab's pool is back to one connection",
        Duration::from_secs(20),
        || runtime.block_on(sessions(&tracker.postgres, APPLICATION_NAME)) == 1,
    );
    wait_screen(
        &console,
        "the lab's pool is back to one connection",
        Duration::from_secs(15),
        |s| pg_usage(s, "task-tracker").is_some_and(|(f, _)| f == "1/5"),
    );

    console.inject("1", "pool-exhaustion");
    let full = format!("{USABLE}/{USABLE}");
    wait_screen(
        &console,
        "every usable connection is in use (100%)",
        Duration::from_secs(10),
        |s| pg_usage(s, "connections").is_some_and(|(f, p)| f == full && p == "100%"),
    );
    // The panel names the fault's connections, and pg_stat_activity agrees.
    let mut shown = None;
    wait_screen(
        &console,
        "the fault's connections are listed",
        Duration::from_secs(5),
        |s| {
            shown = other_app(s, "gameday-fault");
            shown.is_some()
        },
    );
    let held = runtime.block_on(sessions(&tracker.postgres, "gameday-fault"));
    assert_eq!(shown, Some(held as u32), "panel and pg_stat_activity agree");
    let applied = fault_events(&artifacts, "pool-exhaustion", FaultPhase::Applied);
    assert!(
        applied[0].2.starts_with(&format!(
            "holding {held} of 50 connections idle in transaction"
        )) && applied[0].2.contains("the server refused the rest"),
        "{applied:?}"
    );

    // A burst needs more than the one kept connection: the pool times out, nobody hangs.
    let burst = Instant::now();
    ids.extend(runtime.block_on(tracker.submit_burst(20, "during", Duration::from_secs(3))));
    let timeouts_after = runtime.block_on(async {
        loop {
            let asked = Instant::now();
            let stats = tracker.stats().await;
            assert!(
                asked.elapsed() <= Duration::from_secs(3),
                "/stats answers within the request bound during the exhaustion"
            );
            if stats.pool_timeouts > 0 {
                return burst.elapsed();
            }
            assert!(
                burst.elapsed() < Duration::from_secs(15),
                "no pool timeout reported: {stats:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });

    // Revert: the fault's sessions are gone by the time the console says reverted.
    let revert = Instant::now();
    console.keys("r");
    wait_until(
        "the console reports the revert",
        Duration::from_secs(15),
        || !fault_events(&artifacts, "pool-exhaustion", FaultPhase::Reverted).is_empty(),
    );
    let reverted_after = revert.elapsed();
    let left = runtime.block_on(sessions(&tracker.postgres, "gameday-fault"));
    assert_eq!(left, 0, "no fault connection left in pg_stat_activity");
    wait_screen(
        &console,
        "the panel shows the connections released",
        Duration::from_secs(5),
        |s| {
            pg_usage(s, "connections").is_some_and(|(_, p)| p != "100%")
                && other_app(s, "gameday-fault").unwrap_or(0) == 0
        },
    );
    // The lab's queries succeed again: every task, the redeliveries included, is done, and the
    // pool grows for the next burst without a timeout. (A notification that went out but could
    // not be marked for want of a connection is sent again on redelivery, with the same
    // idempotency key: the receiver recognises the repeat.)
    let recovery = Instant::now();
    let (_, received) = runtime.block_on(tracker.all_done(&ids, Duration::from_secs(60)));
    let drained = recovery.elapsed();
    let timeouts = runtime.block_on(tracker.stats()).pool_timeouts;
    ids.extend(runtime.block_on(tracker.submit_burst(20, "after", Duration::from_secs(3))));
    let (stats, _) = runtime.block_on(tracker.all_done(&ids, Duration::from_secs(30)));
    assert_eq!(
        stats.pool_timeouts, timeouts,
        "no pool timeout after the revert: {stats:?}"
    );

    console.keys("q");
    assert!(console.wait_exit(Duration::from_secs(20)).success());
    assert!(ledger(&artifacts).is_empty());
    eprintln!(
        "pg exhaust: {held} connections held; first pool timeout {timeouts_after:?} after the \
         burst (pool timeout {pool_timeout:?}); r→reverted with 0 fault sessions left \
         {reverted_after:?}; \
         the 25 tasks of before and during done {drained:?} after the revert ({} repeated \
         notifications recognised by the receiver)",
        received.duplicates
    );
    drop(console);
    runtime.block_on(tracker.stop());
    drop(nats);
    let _ = std::fs::remove_dir_all(&dir);
}

// --- Processes: freezing nats-server --------------------------------------------------------

/// The state letters (`R`, `S`, `T`…) of every thread of `pid`.
fn thread_states(pid: u32) -> Vec<char> {
    let Ok(threads) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    threads
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("stat")).ok())
        // The state follows the parenthesised command name.
        .filter_map(|stat| stat.rsplit_once(") ")?.1.chars().next())
        .collect()
}

fn frozen(pid: u32) -> bool {
    let states = thread_states(pid);
    !states.is_empty() && states.iter().all(|s| *s == 'T')
}

fn thawed(pid: u32) -> bool {
    let states = thread_states(pid);
    !states.is_empty() && !states.contains(&'T')
}

#[test]
fn freezing_nats_server_by_key_shows_down_and_thawing_shows_the_same_process_up() {
    let runtime = runtime();
    let dir = support::test_dir("e2e-freeze");
    let server_dir = dir.join("frozen-broker");
    let nats = runtime
        .block_on(NatsServer::start(NatsOptions::new(&server_dir)))
        .expect("start nats-server");
    let pid = nats.pid().expect("running");
    let (config, artifacts) = write_config(
        &dir,
        &format!(
            r#"[nats]
url = "{url}"
timeout = "1s"

[[process]]
name = "broker"
process = "nats-server"
cmdline = "{server_dir}"

[[fault]]
name = "broker-freeze"
key = 1
kind = "process_freeze"
target = "broker"
duration = "2m"
"#,
            url = nats.client_url(),
            server_dir = server_dir.display()
        ),
    );
    let mut console = console(&dir, &config, "freeze");
    wait_screen(&console, "NATS shows up", Duration::from_secs(20), nats_up);

    console.inject("1", "broker-freeze");
    let freeze_to_down = wait_screen(&console, "NATS shows down", DOWN_WITHIN, nats_down);
    assert!(
        frozen(pid),
        "every thread stopped: {:?}",
        thread_states(pid)
    );

    let thaw = Instant::now();
    console.keys("r");
    wait_screen(
        &console,
        "NATS shows up after the thaw",
        Duration::from_secs(10),
        nats_up,
    );
    let thaw_to_up = thaw.elapsed();
    assert_eq!(nats.pid(), Some(pid), "not restarted");
    assert!(nats.is_running() && thawed(pid), "{:?}", thread_states(pid));
    let reverted = fault_events(&artifacts, "freeze", FaultPhase::Reverted);
    assert_eq!(reverted.len(), 1, "{reverted:?}");

    console.keys("q");
    assert!(console.wait_exit(Duration::from_secs(20)).success());
    assert!(ledger(&artifacts).is_empty());
    eprintln!("process: freeze→down {freeze_to_down:?}, thaw→up {thaw_to_up:?}, same pid {pid}");
    drop(console);
    drop(nats);
    let _ = std::fs::remove_dir_all(&dir);
}
