//! What the console and `gameday snapshot` see is what the servers really have: a real
//! nats-server with a consumer that does not ack, a real PostgreSQL with 20 sessions of one
//! application, a real HTTP endpoint. Then the servers are stopped and frozen: the panels say
//! DOWN within 3 s with a reason, the timeline records it, and they come back up. `x` writes the
//! report, and `gameday report DIR` rebuilds it from the timeline alone.

mod support;

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::pull, stream};
use gameday::services::{NatsOptions, NatsServer, PgCluster, PgOptions};
use gameday::timeline::{self, EventKind};
use sqlx::ConnectOptions;
use support::{Console, gameday, test_dir};

struct World {
    runtime: tokio::runtime::Runtime,
    nats: NatsServer,
    pg: PgCluster,
    _held: Vec<sqlx::PgConnection>,
    http: std::net::SocketAddr,
}

/// 100 messages waiting for a consumer that never acks, 20 `drill` sessions, an HTTP endpoint.
fn world(dir: &std::path::Path) -> World {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (nats, pg, held, http) = runtime.block_on(async {
        let nats = NatsServer::start(NatsOptions::new(dir.join("nats")))
            .await
            .unwrap();
        let mut pg_opts = PgOptions::new(dir.join("pg"));
        pg_opts.max_connections = 40;
        let pg = PgCluster::start(pg_opts).await.unwrap();
        let client = async_nats::connect(nats.client_url()).await.unwrap();
        let js = jetstream::new(client);
        let tasks = js
            .create_stream(stream::Config {
                name: "TASKS".into(),
                subjects: vec!["tasks.>".into()],
                ..Default::default()
            })
            .await
            .unwrap();
        tasks
            .create_consumer(pull::Config {
                durable_name: Some("workers".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        for i in 0..100 {
            js.publish("tasks.created", format!("task {i}").into())
                .await
                .unwrap()
                .await
                .unwrap();
        }
        let mut held = Vec::new();
        for _ in 0..20 {
            held.push(
                pg.superuser_options("postgres")
                    .application_name("drill")
                    .connect()
                    .await
                    .unwrap(),
            );
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = listener.local_addr().unwrap();
        let app = axum::Router::new().route("/health", axum::routing::get(|| async { "ok" }));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (nats, pg, held, http)
    });
    World {
        runtime,
        nats,
        pg,
        _held: held,
        http,
    }
}

fn config(dir: &std::path::Path, w: &World) -> std::path::PathBuf {
    let path = dir.join("gameday.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[console]
artifacts = "{artifacts}"
sample_interval = "500ms"

[nats]
url = "{nats}"
[[nats.watch]]
stream = "TASKS"
consumer = "workers"
warn = 50
crit = 500

[postgres]
url = "{pg}"
timeout = "1s"
[[postgres.pool]]
application_name = "drill"
size = 10
max_overflow = 10

[[probe]]
name = "health"
url = "http://{http}/health"
interval = "500ms"
"#,
            artifacts = dir.join(".artifacts").display(),
            nats = w.nats.client_url(),
            pg = w.pg.superuser_url("postgres"),
            http = w.http,
        ),
    )
    .unwrap();
    path
}

#[test]
fn snapshot_reports_what_the_servers_really_have_and_the_console_shows_the_same() {
    let dir = test_dir("live-numbers");
    let w = world(&dir);
    let config = config(&dir, &w);
    let config_arg = config.display().to_string();

    let out = gameday(&dir, &["snapshot", "--config", &config_arg, "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let values: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(values["nats.TASKS.workers.pending"], 100.0, "{values}");
    assert_eq!(values["nats.TASKS.messages"], 100.0);
    assert_eq!(values["pg.app.drill.connections"], 20.0);
    assert_eq!(values["pg.app.drill.utilization"], 1.0);
    assert_eq!(values["probe.health.ok"], 1.0);
    assert_eq!(values["probe.health.status.200"], 1.0);
    assert_eq!(values["nats.up"], 1.0);
    assert_eq!(values["pg.up"], 1.0);

    let mut console = Console::spawn(
        &dir,
        &["--config", &config_arg, "--session", "live"],
        160,
        48,
    );
    // The same numbers, live: the NATS row and the pool row.
    console.wait_for("TASKS/workers", Duration::from_secs(20));
    wait_for_row(&console, "TASKS/workers", &["100"]);
    wait_for_row(&console, "drill", &["20/20", "100%"]);

    // `x` writes the report now, while the session goes on.
    console.keys("x");
    let session = dir.join(".artifacts/live");
    support::wait_until(
        "x writes report.md and report.json",
        Duration::from_secs(10),
        || session.join("report.md").is_file() && session.join("report.json").is_file(),
    );
    console.keys("q");
    assert!(console.wait_exit(Duration::from_secs(20)).success());

    // The report is rebuilt from the timeline alone.
    let written = std::fs::read_to_string(session.join("report.md")).unwrap();
    std::fs::remove_file(session.join("report.md")).unwrap();
    std::fs::remove_file(session.join("report.json")).unwrap();
    let out = gameday(&dir, &["report", &session.display().to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(session.join("report.md")).unwrap(),
        written,
        "the same report, from the timeline alone"
    );
    assert!(session.join("report.json").is_file());
    drop(w);
}

/// Waits until the screen line holding `row` also holds every one of `cells`.
fn wait_for_row(console: &Console, row: &str, cells: &[&str]) {
    let started = Instant::now();
    loop {
        let screen = console.screen();
        if screen
            .lines()
            .any(|l| l.contains(row) && cells.iter().all(|c| l.contains(c)))
        {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no line with {row} and {cells:?}:\n{screen}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn stopping_or_freezing_a_server_shows_down_within_3s_with_a_reason_and_up_again_after() {
    let dir = test_dir("live-down");
    let mut w = world(&dir);
    let config = config(&dir, &w);
    let config_arg = config.display().to_string();
    let mut console = Console::spawn(
        &dir,
        &["--config", &config_arg, "--session", "down"],
        160,
        48,
    );
    console.wait_for("TASKS/workers", Duration::from_secs(20));
    console.wait_for("✔ up  probe", Duration::from_secs(10));
    console.wait_for("✔ up  rtt", Duration::from_secs(10));

    let mut measure =
        |what: &str, act: &mut dyn FnMut(&mut World), back: &mut dyn FnMut(&mut World)| {
            let started = Instant::now();
            act(&mut w);
            console.wait_for("DOWN since", Duration::from_secs(3));
            eprintln!("{what}: DOWN shown after {:?}", started.elapsed());
            back(&mut w);
            support::wait_until(&format!("{what}: back up"), Duration::from_secs(15), || {
                !console.screen().contains("DOWN since")
            });
        };
    measure(
        "nats-server stopped",
        &mut |w| w.runtime.block_on(w.nats.stop()).unwrap(),
        &mut |w| w.runtime.block_on(w.nats.start_again()).unwrap(),
    );
    measure(
        "nats-server frozen",
        &mut |w| w.nats.freeze().unwrap(),
        &mut |w| w.nats.thaw().unwrap(),
    );
    measure(
        "PostgreSQL stopped",
        &mut |w| w.runtime.block_on(w.pg.stop()).unwrap(),
        &mut |w| w.runtime.block_on(w.pg.start_again()).unwrap(),
    );
    console.keys("q");
    assert!(console.wait_exit(Duration::from_secs(20)).success());

    let events: Vec<EventKind> =
        timeline::read(&dir.join(".artifacts/down").join(timeline::FILE_NAME))
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect();
    let downs: Vec<(String, String)> = events
        .iter()
        .filter_map(|e| match e {
            EventKind::SourceDown { source, reason } => Some((source.clone(), reason.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        downs.iter().filter(|(s, _)| s == "nats").count(),
        2,
        "{downs:?}"
    );
    assert_eq!(
        downs.iter().filter(|(s, _)| s == "pg").count(),
        1,
        "{downs:?}"
    );
    assert!(
        downs.iter().all(|(_, reason)| !reason.is_empty()),
        "every down has a reason: {downs:?}"
    );
    let ups = events
        .iter()
        .filter(
            |e| matches!(e, EventKind::SourceUp { source } if source == "nats" || source == "pg"),
        )
        .count();
    assert_eq!(
        ups,
        2 + 3,
        "up at the start, then after each of the three outages"
    );
}
