//! The safety matrix: every fault kind through every way a console ends, with and without a
//! second console attached, judged on the real targets (round trips through the proxies, a
//! webhook's answer time, process state, container state, `pg_stat_activity`/`pg_locks`, the
//! consumer's paused flag) — never on what gameday believes. The second console's faults must
//! survive every ending of the first. The measured time to revert is printed for each cell
//! (`--nocapture`); the dead-man cells (the console killed, panicking on its way out, or stopped
//! longer than its lease) must revert within 5 s.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bollard::models::ContainerStateStatusEnum as Status;
use gameday::ledger::{Ledger, LedgerEntry};
use gameday::services::{NatsOptions, NatsServer, PgCluster, PgOptions};
use gameday::timeline::{Cause, EventKind, FaultPhase};
use nix::sys::signal::Signal;
use sqlx::{ConnectOptions, Connection, PgConnection};
use support::docker::{DockerLab, NatsContainer, answers};
use support::{Console, echo_server, events, free_port, gameday, wait_until};
use tokio::runtime::Runtime;

const COLS: u16 = 160;
const ROWS: u16 = 48;
/// The console's lease (its dead-man agent and the proxy daemon both use it).
const LEASE: Duration = Duration::from_secs(3);
/// What the issue promises for a console that dies or stops answering.
const DEAD_MAN_WITHIN: Duration = Duration::from_secs(5);
/// Small enough that a probe of the world takes well under half a second: the time to revert
/// is measured at that resolution.
const LATENCY: Duration = Duration::from_millis(250);
const HOOK_DELAY: Duration = Duration::from_millis(500);
const STREAM: &str = "DRILL";
const CONSUMER: &str = "drill-workers";

/// Console A's catalog, by key: one fault of every kind family.
const A_FAULTS: [(&str, &str); 9] = [
    ("1", "slow-echo"),
    ("2", "cut"),
    ("3", "hook-slow"),
    ("4", "broker-freeze"),
    ("5", "broker-pause"),
    ("6", "broker-stop"),
    ("7", "pool-hold"),
    ("8", "jobs-lock"),
    ("9", "consumer-pause"),
];
/// Console B's catalog: faults on other targets of the same system.
const B_FAULTS: [(&str, &str); 2] = [("1", "b-slow"), ("2", "b-hold")];

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// An HTTP server answering `200 ok` to anything, on its own thread.
fn http_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
                let mut writer = stream;
                loop {
                    // Headers, then a Content-Length body.
                    let mut length = 0usize;
                    let mut line = String::new();
                    loop {
                        line.clear();
                        match std::io::BufRead::read_line(&mut reader, &mut line) {
                            Ok(0) | Err(_) => return,
                            Ok(_) => {}
                        }
                        let lower = line.to_ascii_lowercase();
                        if let Some(v) = lower.strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    let mut body = vec![0u8; length];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    let answer = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                    if writer.write_all(answer.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// One round trip of a few bytes through `addr` on a fresh connection, or `None` when the
/// connection is refused, closed or silent for 2 s (a `down` proxy).
fn round_trip(addr: SocketAddr) -> Option<Duration> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_nodelay(true).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let started = Instant::now();
    stream.write_all(b"ping").ok()?;
    let mut back = [0u8; 4];
    stream.read_exact(&mut back).ok()?;
    Some(started.elapsed())
}

/// One POST through the webhook listener: how long the answer took, or `None` when it took
/// longer than `patience`.
fn webhook_time(addr: SocketAddr, patience: Duration) -> Option<Duration> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(patience)).ok()?;
    let started = Instant::now();
    let body = "{}";
    let request = format!(
        "POST /hook HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    answer
        .starts_with("HTTP/1.1 200")
        .then(|| started.elapsed())
}

/// The state letters of every thread of `pid`.
fn thread_states(pid: u32) -> Vec<char> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("stat")).ok())
        .filter_map(|stat| stat.rsplit_once(')')?.1.trim_start().chars().next())
        .collect()
}

async fn count(connection: &mut PgConnection, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(connection).await.unwrap()
}

/// The system under drill, and both consoles' configs.
struct World {
    paused: NatsContainer,
    stopped: NatsContainer,
    frozen: NatsServer,
    jetstream: NatsServer,
    postgres: PgCluster,
    docker: DockerLab,
    runtime: Runtime,
    echo_proxy: SocketAddr,
    cut_proxy: SocketAddr,
    b_proxy: SocketAddr,
    hook: SocketAddr,
    config_a: PathBuf,
    config_b: PathBuf,
    artifacts: PathBuf,
}

impl World {
    fn new(name: &str) -> World {
        let runtime = runtime();
        let docker = runtime.block_on(DockerLab::new(name));
        let paused = runtime.block_on(docker.nats("paused", &[], None));
        let stopped = runtime.block_on(docker.nats("stopped", &[], None));
        let frozen_dir = docker.dir.join("frozen-broker");
        let mut frozen_options = NatsOptions::new(&frozen_dir);
        frozen_options.jetstream = false;
        let frozen = runtime
            .block_on(NatsServer::start(frozen_options))
            .expect("start nats-server");
        let jetstream = runtime
            .block_on(NatsServer::start(NatsOptions::new(docker.dir.join("js"))))
            .expect("start nats-server");
        let postgres = runtime
            .block_on(PgCluster::start(PgOptions::new(docker.dir.join("pg"))))
            .expect("start PostgreSQL");
        runtime.block_on(async {
            let client = async_nats::connect(jetstream.client_url()).await.unwrap();
            let js = async_nats::jetstream::new(client);
            let stream = js
                .create_stream(async_nats::jetstream::stream::Config {
                    name: STREAM.into(),
                    subjects: vec!["drill.>".into()],
                    ..Default::default()
                })
                .await
                .unwrap();
            stream
                .create_consumer(async_nats::jetstream::consumer::pull::Config {
                    durable_name: Some(CONSUMER.into()),
                    ..Default::default()
                })
                .await
                .unwrap();
            let mut admin = postgres
                .superuser_options("postgres")
                .connect()
                .await
                .unwrap();
            sqlx::raw_sql("CREATE TABLE drill_jobs (id int primary key)")
                .execute(&mut admin)
                .await
                .unwrap();
            admin.close().await.unwrap();
        });
        let echo = echo_server();
        let upstream = http_server();
        let echo_proxy: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let cut_proxy: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let b_proxy: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let hook: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let artifacts = docker.dir.join("artifacts");
        // Both consoles share the system, the artifacts dir (ledger, proxy daemon) and the proxy
        // layout; each has its own catalog.
        let common = format!(
            r#"[console]
artifacts = "{artifacts}"
sample_interval = "500ms"

[nats]
url = "{js_url}"
timeout = "1s"

[postgres]
url = "{pg_url}"

[[proxy]]
name = "echo"
listen = "{echo_proxy}"
upstream = "{echo}"

[[proxy]]
name = "cut"
listen = "{cut_proxy}"
upstream = "{echo}"

[[proxy]]
name = "b-echo"
listen = "{b_proxy}"
upstream = "{echo}"

[[webhook]]
name = "hook"
listen = "{hook}"
upstream = "http://{upstream}/bot123456:SECRETTOKEN/"
timeout = "10s"
"#,
            artifacts = artifacts.display(),
            js_url = jetstream.client_url(),
            pg_url = postgres.superuser_url("postgres"),
        );
        let config_a = docker.dir.join("a.toml");
        std::fs::write(
            &config_a,
            format!(
                r#"{common}
[[container]]
name = "docker-paused"
container = "{paused}"

[[container]]
name = "docker-stopped"
container = "{stopped}"

[[process]]
name = "local-broker"
process = "nats-server"
cmdline = "{frozen_dir}"

[[fault]]
name = "slow-echo"
key = 1
kind = "latency"
target = "echo"
latency = "{latency}ms"
direction = "downstream"
duration = "10m"

[[fault]]
name = "cut"
key = 2
kind = "down"
target = "cut"
duration = "10m"

[[fault]]
name = "hook-slow"
key = 3
kind = "webhook_delay"
target = "hook"
delay = "{hook_delay}ms"
duration = "10m"

[[fault]]
name = "broker-freeze"
key = 4
kind = "process_freeze"
target = "local-broker"
duration = "10m"

[[fault]]
name = "broker-pause"
key = 5
kind = "container_pause"
target = "docker-paused"
duration = "10m"

[[fault]]
name = "broker-stop"
key = 6
kind = "container_stop"
target = "docker-stopped"
duration = "10m"

[[fault]]
name = "pool-hold"
key = 7
kind = "pg_exhaust"
connections = 4
state = "idle_in_transaction"
application_name = "drill-hold"
duration = "10m"

[[fault]]
name = "jobs-lock"
key = 8
kind = "pg_lock"
table = "drill_jobs"
mode = "access exclusive"
duration = "10m"

[[fault]]
name = "consumer-pause"
key = 9
kind = "nats_consumer_pause"
stream = "{STREAM}"
consumer = "{CONSUMER}"
duration = "10m"
"#,
                paused = paused.name,
                stopped = stopped.name,
                frozen_dir = frozen_dir.display(),
                latency = LATENCY.as_millis(),
                hook_delay = HOOK_DELAY.as_millis(),
            ),
        )
        .unwrap();
        let config_b = docker.dir.join("b.toml");
        std::fs::write(
            &config_b,
            format!(
                r#"{common}
[[fault]]
name = "b-slow"
key = 1
kind = "latency"
target = "b-echo"
latency = "{latency}ms"
direction = "downstream"
duration = "10m"

[[fault]]
name = "b-hold"
key = 2
kind = "pg_exhaust"
connections = 2
state = "idle"
application_name = "b-hold"
duration = "10m"
"#,
                latency = LATENCY.as_millis(),
            ),
        )
        .unwrap();
        World {
            paused,
            stopped,
            frozen,
            jetstream,
            postgres,
            docker,
            runtime,
            echo_proxy,
            cut_proxy,
            b_proxy,
            hook,
            config_a,
            config_b,
            artifacts,
        }
    }

    fn console(&self, config: &Path, session: &str, extra_env: &[(&str, &str)]) -> Console {
        let config = config.display().to_string();
        Console::spawn_with_env(
            &self.docker.dir,
            &["--config", &config, "--session", session],
            extra_env,
            COLS,
            ROWS,
        )
    }

    /// Which faults are applied in the system right now, measured on the targets themselves.
    fn applied(&self) -> Vec<&'static str> {
        let (echo, cut, b, hook) = (self.echo_proxy, self.cut_proxy, self.b_proxy, self.hook);
        let slow = |rtt: Option<Duration>| rtt.is_some_and(|rtt| rtt >= LATENCY * 8 / 10);
        let net = std::thread::scope(|s| {
            let echo = s.spawn(move || slow(round_trip(echo)));
            let cut = s.spawn(move || round_trip(cut).is_none());
            let b = s.spawn(move || slow(round_trip(b)));
            let hook = s.spawn(move || webhook_time(hook, HOOK_DELAY * 8 / 10).is_none());
            [
                echo.join().unwrap(),
                cut.join().unwrap(),
                b.join().unwrap(),
                hook.join().unwrap(),
            ]
        });
        let mut applied = Vec::new();
        for (on, name) in net
            .into_iter()
            .zip(["slow-echo", "cut", "b-slow", "hook-slow"])
        {
            if on {
                applied.push(name);
            }
        }
        let pid = self.frozen.pid().expect("the local broker runs");
        if thread_states(pid).contains(&'T') {
            applied.push("broker-freeze");
        }
        self.runtime.block_on(async {
            if self.docker.status(&self.paused.name).await == Status::PAUSED {
                applied.push("broker-pause");
            }
            if self.docker.status(&self.stopped.name).await != Status::RUNNING {
                applied.push("broker-stop");
            }
            let client = async_nats::connect(self.jetstream.client_url())
                .await
                .unwrap();
            let js = async_nats::jetstream::new(client);
            let stream = js.get_stream(STREAM).await.unwrap();
            if stream.consumer_info(CONSUMER).await.unwrap().paused {
                applied.push("consumer-pause");
            }
            let mut admin = self
                .postgres
                .superuser_options("postgres")
                .connect()
                .await
                .unwrap();
            let held = count(
                &mut admin,
                "select count(*) from pg_stat_activity where application_name = 'drill-hold'",
            )
            .await;
            if held > 0 {
                applied.push("pool-hold");
            }
            let locked = count(
                &mut admin,
                "select count(*) from pg_locks l join pg_class c on c.oid = l.relation \
                 where c.relname = 'drill_jobs' and l.mode = 'AccessExclusiveLock' and l.granted",
            )
            .await;
            if locked > 0 {
                applied.push("jobs-lock");
            }
            let b_held = count(
                &mut admin,
                "select count(*) from pg_stat_activity where application_name = 'b-hold'",
            )
            .await;
            if b_held > 0 {
                applied.push("b-hold");
            }
            admin.close().await.unwrap();
        });
        applied.sort();
        applied
    }

    fn applied_of(&self, names: &[(&str, &'static str)]) -> Vec<&'static str> {
        self.applied()
            .into_iter()
            .filter(|a| names.iter().any(|(_, n)| n == a))
            .collect()
    }

    fn ledger(&self) -> Vec<LedgerEntry> {
        Ledger::new(&self.artifacts).unwrap().entries().unwrap()
    }

    /// Everything the system needs after a cell is up again (the containers answer, the
    /// process serves).
    fn assert_serving(&self, after: &str) {
        self.runtime.block_on(async {
            for (port, what) in [
                (self.paused.port, "the paused container"),
                (self.stopped.port, "the stopped container"),
                (self.frozen.port(), "the frozen process"),
            ] {
                let started = Instant::now();
                while !answers(port).await {
                    assert!(
                        started.elapsed() < Duration::from_secs(10),
                        "{what} answers after {after}"
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        });
    }
}

fn applied_events(artifacts: &Path, session: &str) -> usize {
    events(artifacts, session)
        .iter()
        .filter(|e| {
            matches!(
                e,
                EventKind::Fault {
                    phase: FaultPhase::Applied,
                    ..
                }
            )
        })
        .count()
}

/// Injects every fault of `catalog` by key and waits until the world shows each applied.
fn inject_all(
    world: &World,
    console: &mut Console,
    session: &str,
    catalog: &[(&str, &'static str)],
) {
    console.wait_for(catalog[catalog.len() - 1].1, Duration::from_secs(20));
    for (key, name) in catalog {
        console.inject(key, name);
    }
    wait_until("every fault is applied", Duration::from_secs(40), || {
        applied_events(&world.artifacts, session) == catalog.len()
    });
    let mut expected: Vec<&str> = catalog.iter().map(|(_, n)| *n).collect();
    expected.sort();
    assert_eq!(
        world.applied_of(catalog),
        expected,
        "{session}: applied on the real targets"
    );
}

/// How a console ends, and whether its dead-man agent (not the console) has to revert.
#[derive(Clone, Copy, Debug)]
enum Ending {
    Quit,
    CtrlC,
    Sigterm,
    /// The terminal closes: the pty master is gone, every write fails.
    Hangup,
    /// A panic in the event loop (the console's own catch reverts).
    PanicInLoop,
    /// A panic on the way out, after the reverts were asked for: the process dies.
    PanicOnExit,
    Sigkill,
    /// SIGSTOP for longer than the lease; SIGCONT afterwards.
    Sigstop,
}

impl Ending {
    fn dead_man(self) -> bool {
        matches!(
            self,
            Ending::PanicOnExit | Ending::Sigkill | Ending::Sigstop
        )
    }

    fn env(self) -> Vec<(&'static str, &'static str)> {
        match self {
            Ending::PanicInLoop => vec![("GAMEDAY_TEST_PANIC", "key:P")],
            Ending::PanicOnExit => vec![("GAMEDAY_TEST_PANIC", "exit")],
            _ => Vec::new(),
        }
    }

    /// Ends the console; returns when the clock for "time to revert" starts.
    fn end(self, console: &mut Console) -> Instant {
        match self {
            Ending::Quit | Ending::PanicOnExit => console.keys("q"),
            Ending::CtrlC => console.ctrl_c(),
            Ending::Sigterm => console.signal(Signal::SIGTERM),
            Ending::Hangup => console.hangup(),
            Ending::PanicInLoop => console.keys("P"),
            Ending::Sigkill => console.signal(Signal::SIGKILL),
            Ending::Sigstop => console.signal(Signal::SIGSTOP),
        }
        Instant::now()
    }
}

/// One cell: console A with every fault, ended one way; B (if attached) keeps its faults.
/// Returns the measured time to revert.
fn cell(world: &World, ending: Ending, b: Option<&Console>) -> Duration {
    let b_attached = b.is_some();
    let session = format!(
        "a-{ending:?}-{}",
        if b_attached { "with-b" } else { "alone" }
    )
    .to_lowercase();
    let mut a = world.console(&world.config_a, &session, &ending.env());
    inject_all(world, &mut a, &session, &A_FAULTS);
    if let Some(b) = b {
        // Each screen shows the other console's faults, with the owner.
        a.wait_for("other consoles (2)", Duration::from_secs(5));
        let user = nix::unistd::User::from_uid(nix::unistd::geteuid())
            .unwrap()
            .map_or_else(|| nix::unistd::geteuid().to_string(), |u| u.name);
        a.wait_for(&format!("by {user}@"), Duration::from_secs(5));
        b.wait_for("other consoles (9)", Duration::from_secs(5));
    }
    let clock = ending.end(&mut a);
    let reverted = Instant::now();
    let limit = if ending.dead_man() {
        LEASE + DEAD_MAN_WITHIN + Duration::from_secs(5)
    } else {
        Duration::from_secs(45)
    };
    loop {
        if world.applied_of(&A_FAULTS).is_empty() {
            break;
        }
        assert!(
            reverted.elapsed() < limit,
            "{session}: still applied {:?} after {:?}",
            world.applied_of(&A_FAULTS),
            reverted.elapsed()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let took = Instant::now().saturating_duration_since(clock);
    // A stopped console is only known to be gone once its lease (counted from its last beat)
    // has run out; a dead one at once.
    let allowed = match ending {
        Ending::Sigstop => LEASE + DEAD_MAN_WITHIN,
        _ => DEAD_MAN_WITHIN,
    };
    if ending.dead_man() {
        assert!(
            took <= allowed,
            "{session}: the dead-man agent took {took:?}"
        );
    }
    world.assert_serving(&session);
    if b_attached {
        assert_eq!(
            world.applied_of(&B_FAULTS),
            vec!["b-hold", "b-slow"],
            "{session}: the other console's faults survive"
        );
    }
    // Nothing of A's is left in the ledger, B's entries are untouched.
    wait_until(
        "A's ledger entries are gone",
        Duration::from_secs(10),
        || {
            world
                .ledger()
                .iter()
                .all(|e| !e.owner.session.starts_with(&session))
        },
    );
    assert_eq!(
        world.ledger().len(),
        if b_attached { B_FAULTS.len() } else { 0 },
        "{session}: ledger"
    );
    match ending {
        Ending::Sigstop => {
            a.signal(Signal::SIGCONT);
            // Awake again, the console shows the truth: its faults were reverted without it.
            a.wait_for("no active faults", Duration::from_secs(10));
            a.keys("q");
            assert!(a.wait_exit(Duration::from_secs(30)).success());
        }
        Ending::Sigkill | Ending::PanicOnExit => {
            a.wait_exit(Duration::from_secs(30));
        }
        _ => {
            let status = a.wait_exit(Duration::from_secs(30));
            assert!(status.success(), "{session}: exit {status:?}");
        }
    }
    // Every way out leaves a report, whoever wrote it.
    wait_until("the report is written", Duration::from_secs(10), || {
        world.artifacts.join(&session).join("report.md").exists()
    });
    let ended = events(&world.artifacts, &session);
    let reverted_events = ended
        .iter()
        .filter(|e| {
            matches!(
                e,
                EventKind::Fault {
                    phase: FaultPhase::Reverted,
                    ..
                }
            )
        })
        .count();
    assert!(
        reverted_events >= A_FAULTS.len(),
        "{session}: every revert is on the timeline ({reverted_events})"
    );
    if ending.dead_man() && !matches!(ending, Ending::Sigstop) {
        assert!(
            ended.iter().any(|e| matches!(
                e,
                EventKind::Fault {
                    cause: Some(Cause::DeadMan(_)),
                    ..
                }
            )),
            "{session}: the dead-man agent says it reverted"
        );
    }
    took
}

#[test]
fn every_fault_kind_through_every_ending_with_and_without_a_second_console() {
    let world = World::new("safety");
    let mut b = world.console(&world.config_b, "b", &[]);
    inject_all(&world, &mut b, "b", &B_FAULTS);

    let endings = [
        Ending::Quit,
        Ending::CtrlC,
        Ending::Sigterm,
        Ending::Hangup,
        Ending::PanicInLoop,
        Ending::PanicOnExit,
        Ending::Sigkill,
        Ending::Sigstop,
    ];
    let mut figures = Vec::new();
    for ending in endings {
        let took = cell(&world, ending, Some(&b));
        figures.push(format!("{ending:?} (B attached): {took:.1?}"));
        if matches!(ending, Ending::Sigstop) {
            figures.push(format!(
                "  (SIGSTOP is counted from the signal; the lease is {LEASE:?})"
            ));
        }
    }
    // B sees none of A's faults any more and still its own; then it quits cleanly.
    b.wait_for("b-slow", Duration::from_secs(5));
    b.keys("q");
    assert!(b.wait_exit(Duration::from_secs(30)).success());
    assert!(world.applied().is_empty(), "{:?}", world.applied());

    for ending in endings {
        let took = cell(&world, ending, None);
        figures.push(format!("{ending:?} (alone): {took:.1?}"));
    }
    eprintln!(
        "safety matrix, time to revert 9 faults:\n  {}",
        figures.join("\n  ")
    );

    // The webhook's bot token never reached a file of the drill, nor the daemon's status.
    let artifacts = world.artifacts.display().to_string();
    let status = gameday(&world.docker.dir, &["proxy", "status", "--dir", &artifacts]);
    assert!(status.status.success(), "{status:?}");
    assert!(String::from_utf8_lossy(&status.stdout).contains("bot***"));
    let mut leaks = Vec::new();
    let mut dirs = vec![world.artifacts.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if std::fs::read(&path)
                .is_ok_and(|bytes| String::from_utf8_lossy(&bytes).contains("SECRETTOKEN"))
            {
                leaks.push(path);
            }
        }
    }
    assert!(leaks.is_empty(), "the secret leaked into {leaks:?}");
    assert!(!String::from_utf8_lossy(&status.stdout).contains("SECRETTOKEN"));

    // Nothing of the drill is left running: no console, no agent, and the daemon stops.
    let out = gameday(
        &world.docker.dir,
        &[
            "proxy",
            "stop",
            "--dir",
            &world.artifacts.display().to_string(),
        ],
    );
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn a_console_killed_with_its_agent_leaves_its_faults_to_the_next_start_which_reverts_and_says_so() {
    let world = World::new("safety-recover");
    let mut console = world.console(&world.config_a, "killed", &[]);
    inject_all(&world, &mut console, "killed", &A_FAULTS);
    // The console and its dead-man agent both die (a machine's processes killed at once).
    support::kill_console_and_guard(&mut console, "killed");
    drop(console);

    // What the proxy daemon's lease and PostgreSQL's closed sockets undo goes by itself; what
    // lives outside stays applied, and the ledger knows all of it.
    wait_until("the daemon's lease lapses", Duration::from_secs(10), || {
        !world.applied().contains(&"slow-echo")
    });
    assert_eq!(
        world.applied_of(&A_FAULTS),
        [
            "broker-freeze",
            "broker-pause",
            "broker-stop",
            "consumer-pause"
        ],
        "left applied by the killed console"
    );
    assert_eq!(world.ledger().len(), A_FAULTS.len());

    let starting = Instant::now();
    let mut next = world.console(&world.config_a, "next", &[]);
    next.wait_for(
        &format!("recovered {0} of {0}", A_FAULTS.len()),
        Duration::from_secs(30),
    );
    let took = starting.elapsed();
    assert!(world.applied().is_empty(), "{:?}", world.applied());
    world.assert_serving("the next start");
    assert!(world.ledger().is_empty());
    next.keys("q");
    assert!(next.wait_exit(Duration::from_secs(20)).success());
    let recovered = events(&world.artifacts, "next")
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
    assert_eq!(recovered, A_FAULTS.len());
    let report = std::fs::read_to_string(world.artifacts.join("next").join("report.md")).unwrap();
    assert!(
        report.contains("reverted by recovery after crash"),
        "{report}"
    );
    eprintln!(
        "start→recovered {} faults after SIGKILL of console and agent: {took:?}",
        A_FAULTS.len()
    );
    let artifacts = world.artifacts.display().to_string();
    let _ = gameday(&world.docker.dir, &["proxy", "stop", "--dir", &artifacts]);
}
