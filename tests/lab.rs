//! End-to-end tests of the lab target against a real nats-server, a real PostgreSQL and the
//! real webhook sink, all on 127.0.0.1.

mod support;

use support::test_dir;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gameday::lab::{
    APPLICATION_NAME, DatabaseUrl, LabHandle, LabOptions, Received, STREAM, SinkHandle,
    SinkOptions, StatsSnapshot, run_lab, run_sink,
};
use gameday::services::{NatsOptions, NatsServer, PgCluster, PgOptions};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::{ConnectOptions, Connection, PgConnection};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

const ROLE: &str = "tracker";
const PASSWORD: &str = "tracker-pw";
const DATABASE: &str = "tasks";

/// Real servers for one test: nats-server with JetStream, PostgreSQL with the lab's role and
/// database, and the webhook sink.
struct Bench {
    dir: PathBuf,
    nats: NatsServer,
    postgres: PgCluster,
    sink: SinkHandle,
    http: reqwest::Client,
}

impl Bench {
    async fn start(name: &str, max_connections: u32) -> Self {
        let dir = test_dir(name);
        let nats = NatsServer::start(NatsOptions::new(dir.join("nats")))
            .await
            .expect("start nats-server");
        let mut pg_options = PgOptions::new(dir.join("postgres"));
        pg_options.max_connections = max_connections;
        let postgres = PgCluster::start(pg_options)
            .await
            .expect("start PostgreSQL");
        postgres
            .create_role(ROLE, PASSWORD)
            .await
            .expect("create the lab's role");
        postgres
            .create_database(DATABASE, ROLE)
            .await
            .expect("create the lab's database");
        let sink = run_sink(
            SinkOptions {
                token: Some("lab-token".into()),
                ..SinkOptions::local()
            },
            CancellationToken::new(),
        )
        .await
        .expect("start the sink");
        let http = gameday::http_client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("HTTP client");
        Self {
            dir,
            nats,
            postgres,
            sink,
            http,
        }
    }

    /// Stops the servers and removes the test directory; a failed test keeps it to look at.
    async fn clean_up(mut self) {
        self.sink.stop().await;
        self.nats.stop().await.expect("stop nats-server");
        self.postgres.stop().await.expect("stop PostgreSQL");
        std::fs::remove_dir_all(&self.dir).expect("remove the test directory");
    }

    fn lab_options(&self) -> LabOptions {
        LabOptions::new(
            self.nats.client_url(),
            DatabaseUrl::new(self.postgres.url_for(ROLE, PASSWORD, DATABASE)),
            self.sink.url(),
        )
    }

    async fn lab(&self, options: LabOptions) -> LabHandle {
        run_lab(options, CancellationToken::new())
            .await
            .expect("start the lab")
    }

    async fn superuser(&self) -> PgConnection {
        self.postgres
            .superuser_options(DATABASE)
            .connect()
            .await
            .expect("superuser connection")
    }

    /// Messages in the lab's stream, read by a client of our own.
    async fn stream_messages(&self) -> u64 {
        let client = async_nats::connect(self.nats.client_url())
            .await
            .expect("connect to NATS");
        let jetstream = async_nats::jetstream::new(client);
        let mut stream = jetstream
            .get_stream(STREAM)
            .await
            .expect("the lab's stream");
        stream.info().await.expect("stream info").state.messages
    }

    async fn stats(&self, lab: &LabHandle) -> StatsSnapshot {
        support::get_json(&self.http, format!("{}/stats", lab.url())).await
    }

    /// `GET /health` as JSON.
    async fn health(&self, lab: &LabHandle) -> Value {
        support::get_json(&self.http, format!("{}/health", lab.url())).await
    }

    async fn received(&self) -> Received {
        support::get_json(&self.http, format!("{}/received", self.sink.url())).await
    }
}

/// One `POST /tasks` and how it went.
#[derive(Debug, Clone)]
struct Submission {
    status: StatusCode,
    body: Value,
    elapsed: Duration,
}

async fn submit(http: &reqwest::Client, lab_url: &str, title: &str) -> Submission {
    let started = Instant::now();
    let response = http
        .post(format!("{lab_url}/tasks"))
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

/// A 503 with a JSON error about the database, within `bound` (+ scheduling slack).
fn assert_refused_fast(refused: &Submission, bound: Duration) {
    assert_eq!(
        refused.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{refused:?}"
    );
    assert!(
        refused.body["error"]
            .as_str()
            .is_some_and(|e| e.contains("database")),
        "a JSON error about the database: {refused:?}"
    );
    assert!(
        refused.elapsed <= bound + Duration::from_millis(500),
        "{refused:?}"
    );
}

/// Polls `probe` until it returns `Some`, or panics after `limit` with what it saw last.
async fn eventually<T>(
    what: &str,
    limit: Duration,
    mut probe: impl AsyncFnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(last) if Instant::now() >= deadline => {
                panic!("{what}: not reached within {limit:?}; last seen: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

async fn count(connection: &mut PgConnection, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(connection)
        .await
        .expect(sql)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_outage_loses_no_task_and_notifies_each_once() {
    const TASKS: usize = 200;
    const BEFORE_OUTAGE: usize = 60;
    const DURING_OUTAGE: usize = 60;
    let mut bench = Bench::start("lab-broker-outage", 100).await;
    let options = bench.lab_options();
    let bound = options.request_timeout;
    let lab = bench.lab(options).await;

    // Submit continuously from a background task, a few requests at a time.
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<Submission>();
    let submitter = {
        let http = bench.http.clone();
        let url = lab.url();
        let slots = Arc::new(Semaphore::new(4));
        tokio::spawn(async move {
            let mut requests = Vec::new();
            for n in 0..TASKS {
                let slot = slots.clone().acquire_owned().await.expect("semaphore open");
                let (http, url, done) = (http.clone(), url.clone(), done_tx.clone());
                requests.push(tokio::spawn(async move {
                    let submission = submit(&http, &url, &format!("task {n}")).await;
                    drop(slot);
                    done.send(submission).expect("test listening");
                }));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            for request in requests {
                request.await.expect("request task");
            }
        })
    };
    let mut submissions = Vec::new();
    while submissions.len() < BEFORE_OUTAGE {
        submissions.push(
            tokio::time::timeout(Duration::from_secs(60), done_rx.recv())
                .await
                .expect("a submission within 60s")
                .expect("submissions before the outage"),
        );
    }
    bench.nats.stop().await.expect("stop nats-server");
    let stopped_at = submissions.len();
    while submissions.len() < stopped_at + DURING_OUTAGE {
        submissions.push(
            tokio::time::timeout(Duration::from_secs(60), done_rx.recv())
                .await
                .expect("a submission within 60s")
                .expect("submissions during the outage"),
        );
    }
    let depth_during_outage = eventually(
        "retry queue holds tasks during the outage",
        Duration::from_secs(10),
        async || {
            let stats = bench.stats(&lab).await;
            match stats.retry_queue_depth {
                Some(depth) if depth > 0 && !stats.nats_connected => Ok(depth),
                _ => Err(format!("{stats:?}")),
            }
        },
    )
    .await;
    bench
        .nats
        .start_again()
        .await
        .expect("start nats-server again on the same port");
    submitter.await.expect("submitter");
    while let Ok(submission) = done_rx.try_recv() {
        submissions.push(submission);
    }
    assert_eq!(submissions.len(), TASKS);

    for submission in &submissions {
        assert_eq!(submission.status, StatusCode::ACCEPTED, "{submission:?}");
        assert!(
            submission.elapsed <= bound + Duration::from_millis(500),
            "answered after its bound: {submission:?}"
        );
    }
    let ids: HashSet<String> = submissions
        .iter()
        .map(|s| s.body["id"].as_str().expect("id").to_string())
        .collect();
    assert_eq!(ids.len(), TASKS, "every task got its own id");
    let queued = submissions
        .iter()
        .filter(|s| s.body["status"] == "queued")
        .count();
    assert!(
        queued >= DURING_OUTAGE,
        "tasks submitted while the broker was down are queued: {queued}"
    );
    assert!(depth_during_outage > 0);

    let stats = eventually(
        "backlog drained, every task processed and notified",
        Duration::from_secs(60),
        async || {
            let stats = bench.stats(&lab).await;
            let done = stats.processed == TASKS as u64
                && stats.notified == TASKS as u64
                && stats.retry_queue_depth == Some(0);
            if done {
                Ok(stats)
            } else {
                Err(format!("{stats:?}"))
            }
        },
    )
    .await;
    assert_eq!(stats.accepted + stats.queued, TASKS as u64);
    assert_eq!(stats.queued as usize, queued);
    assert_eq!(
        stats.drained as usize, queued,
        "every queued task was republished"
    );
    assert_eq!(
        (stats.rejected, stats.server_errors, stats.webhook_failures),
        (0, 0, 0)
    );

    let received = bench.received().await;
    let keys: HashSet<String> = received
        .messages
        .iter()
        .filter_map(|m| m.idempotency_key.clone())
        .collect();
    assert_eq!(
        keys, ids,
        "the sink got a notification for exactly the submitted tasks"
    );
    assert_eq!(
        (received.unique, received.total, received.duplicates),
        (TASKS, TASKS, 0),
        "each task notified exactly once"
    );

    let mut db = bench.superuser().await;
    assert_eq!(
        count(&mut db, "SELECT count(*) FROM tasks").await,
        TASKS as i64
    );
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) FROM tasks WHERE notified_at IS NOT NULL"
        )
        .await,
        TASKS as i64
    );
    assert_eq!(count(&mut db, "SELECT count(*) FROM retry_queue").await, 0);
    assert_eq!(
        bench.stream_messages().await,
        TASKS as u64,
        "the stream holds each task once: republished copies carry the same Nats-Msg-Id"
    );
    lab.stop().await;
    bench.clean_up().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_webhook_is_retried_and_every_task_still_notified_once() {
    const TASKS: usize = 20;
    let bench = Bench::start("lab-webhook-timeout", 100).await;
    let options = LabOptions {
        webhook_timeout: Duration::from_millis(500),
        webhook_attempts: 3,
        ..bench.lab_options()
    };
    let lab = bench.lab(options).await;
    let control = format!("{}/control", bench.sink.url());
    let slow = bench
        .http
        .put(&control)
        .json(&json!({ "delay_ms": 2000 }))
        .send()
        .await
        .expect("PUT /control");
    assert_eq!(slow.status(), StatusCode::OK);

    let mut ids = HashSet::new();
    for n in 0..TASKS {
        let submission = submit(&bench.http, &lab.url(), &format!("slow {n}")).await;
        assert_eq!(submission.status, StatusCode::ACCEPTED, "{submission:?}");
        assert_eq!(submission.body["status"], "accepted");
        ids.insert(submission.body["id"].as_str().expect("id").to_string());
    }
    let stats = eventually(
        "webhook timeouts are retried until a delivery gives up",
        Duration::from_secs(20),
        async || {
            let stats = bench.stats(&lab).await;
            if stats.webhook_retries > 0 && stats.webhook_failures > 0 {
                Ok(stats)
            } else {
                Err(format!("{stats:?}"))
            }
        },
    )
    .await;
    assert_eq!(
        stats.notified, 0,
        "nothing is delivered while the webhook is slower than the timeout"
    );
    assert!(stats.webhook_timeouts > 0, "{stats:?}");

    let fast = bench
        .http
        .put(&control)
        .json(&json!({ "delay_ms": 0 }))
        .send()
        .await
        .expect("PUT /control");
    assert_eq!(fast.status(), StatusCode::OK);
    let stats = eventually(
        "every task notified after the webhook recovered",
        Duration::from_secs(60),
        async || {
            let stats = bench.stats(&lab).await;
            if stats.notified == TASKS as u64 {
                Ok(stats)
            } else {
                Err(format!("{stats:?}"))
            }
        },
    )
    .await;
    assert!(stats.webhook_attempts > stats.notified, "{stats:?}");
    assert_eq!(
        stats.processed, TASKS as u64,
        "redeliveries wrote no second row"
    );

    let received = bench.received().await;
    let keys: HashSet<String> = received
        .messages
        .iter()
        .filter_map(|m| m.idempotency_key.clone())
        .collect();
    assert_eq!(keys, ids);
    assert_eq!(received.unique, TASKS, "every notification arrives once");
    assert!(
        received.duplicates > 0,
        "the timed-out attempts reached the sink and were recognised as repeats"
    );
    let mut db = bench.superuser().await;
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) FROM tasks WHERE notified_at IS NOT NULL"
        )
        .await,
        TASKS as i64
    );
    lab.stop().await;
    bench.clean_up().await;
}

/// A frozen broker keeps the connection open and answers nothing: the publishes the client
/// buffered reach it after the thaw, and so do the queued copies. Each task still ends up
/// stored, processed and notified once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_broker_delays_no_request_beyond_its_bound_and_duplicates_nothing() {
    const TASKS: usize = 20;
    let bench = Bench::start("lab-frozen-broker", 100).await;
    let options = bench.lab_options();
    let (bound, publish_timeout) = (options.request_timeout, options.publish_timeout);
    let lab = bench.lab(options).await;

    bench.nats.freeze().expect("freeze nats-server");
    let pid = bench.nats.pid().expect("nats-server pid");
    // SIGSTOP takes effect asynchronously; every thread of the server must have stopped.
    eventually(
        "nats-server is stopped",
        Duration::from_secs(5),
        async || {
            let threads =
                std::fs::read_dir(format!("/proc/{pid}/task")).map_err(|e| e.to_string())?;
            for thread in threads {
                let stat =
                    std::fs::read_to_string(thread.map_err(|e| e.to_string())?.path().join("stat"))
                        .map_err(|e| e.to_string())?;
                // The state follows the parenthesised command name.
                let state = stat.rsplit_once(") ").map(|(_, rest)| &rest[..1]);
                if state != Some("T") {
                    return Err(format!("thread state {state:?}"));
                }
            }
            Ok(())
        },
    )
    .await;
    let requests: Vec<_> = (0..TASKS)
        .map(|n| {
            let (http, url) = (bench.http.clone(), lab.url());
            tokio::spawn(async move { submit(&http, &url, &format!("frozen {n}")).await })
        })
        .collect();
    let mut ids = HashSet::new();
    for request in requests {
        let submission = request.await.expect("request task");
        assert_eq!(submission.status, StatusCode::ACCEPTED, "{submission:?}");
        assert_eq!(submission.body["status"], "queued", "{submission:?}");
        assert!(
            submission.elapsed >= publish_timeout,
            "waited for the ack first: {submission:?}"
        );
        assert!(submission.elapsed <= bound, "{submission:?}");
        ids.insert(submission.body["id"].as_str().expect("id").to_string());
    }
    bench.nats.thaw().expect("thaw nats-server");

    let stats = eventually(
        "every task processed and notified after the thaw",
        Duration::from_secs(60),
        async || {
            let stats = bench.stats(&lab).await;
            let done = stats.notified == TASKS as u64 && stats.retry_queue_depth == Some(0);
            if done {
                Ok(stats)
            } else {
                Err(format!("{stats:?}"))
            }
        },
    )
    .await;
    assert_eq!(stats.processed, TASKS as u64);
    let received = bench.received().await;
    let keys: HashSet<String> = received
        .messages
        .iter()
        .filter_map(|m| m.idempotency_key.clone())
        .collect();
    assert_eq!(keys, ids);
    assert_eq!(
        (received.unique, received.total),
        (TASKS, TASKS),
        "each task notified exactly once"
    );
    let mut db = bench.superuser().await;
    assert_eq!(
        count(&mut db, "SELECT count(*) FROM tasks").await,
        TASKS as i64
    );
    assert_eq!(
        bench.stream_messages().await,
        TASKS as u64,
        "the stream dropped the republished copies of buffered publishes (same Nats-Msg-Id)"
    );
    lab.stop().await;
    bench.clean_up().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_graceful_degradation_a_broker_outage_gives_500s() {
    let mut bench = Bench::start("lab-no-graceful", 100).await;
    let options = LabOptions {
        graceful_degradation: false,
        ..bench.lab_options()
    };
    let bound = options.request_timeout;
    let lab = bench.lab(options).await;
    let before = submit(&bench.http, &lab.url(), "before the outage").await;
    assert_eq!(before.status, StatusCode::ACCEPTED, "{before:?}");

    bench.nats.stop().await.expect("stop nats-server");
    for n in 0..5 {
        let during = submit(&bench.http, &lab.url(), &format!("during {n}")).await;
        assert_eq!(
            during.status,
            StatusCode::INTERNAL_SERVER_ERROR,
            "{during:?}"
        );
        assert!(
            during.body["error"]
                .as_str()
                .is_some_and(|e| e.contains("broker")),
            "{during:?}"
        );
        assert!(during.elapsed <= bound, "{during:?}");
    }
    let stats = bench.stats(&lab).await;
    assert_eq!(
        (stats.server_errors, stats.queued, stats.retry_queue_depth),
        (5, 0, Some(0))
    );

    bench
        .nats
        .start_again()
        .await
        .expect("start nats-server again");
    let after = eventually(
        "the lab accepts tasks again after the broker is back",
        Duration::from_secs(20),
        async || {
            let after = submit(&bench.http, &lab.url(), "after the outage").await;
            if after.status == StatusCode::ACCEPTED {
                Ok(after)
            } else {
                Err(format!("{after:?}"))
            }
        },
    )
    .await;
    assert_eq!(after.body["status"], "accepted");
    lab.stop().await;
    bench.clean_up().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_broker_and_database_down_the_api_answers_503_within_its_bound() {
    let mut bench = Bench::start("lab-both-down", 100).await;
    let options = bench.lab_options();
    let bound = options.request_timeout;
    let lab = bench.lab(options).await;
    bench.nats.stop().await.expect("stop nats-server");
    bench.postgres.stop().await.expect("stop PostgreSQL");

    let first = submit(&bench.http, &lab.url(), "nowhere to go").await;
    let second = submit(&bench.http, &lab.url(), "still nowhere").await;
    for refused in [&first, &second] {
        assert_refused_fast(refused, bound);
    }
    let started = Instant::now();
    let health = bench.health(&lab).await;
    assert_eq!(
        (
            health["nats"]["status"].as_str(),
            health["postgres"]["status"].as_str()
        ),
        (Some("down"), Some("down")),
        "{health}"
    );
    let stats = bench.stats(&lab).await;
    assert!(
        started.elapsed() <= Duration::from_secs(3),
        "health and stats answer within their probes"
    );
    assert_eq!(
        stats.retry_queue_depth, None,
        "an unknown depth is reported as unknown"
    );
    assert_eq!(stats.rejected, 2);
    assert_eq!(
        stats.db_fail_fast, 1,
        "the second request did not wait for the pool again: {stats:?}"
    );

    bench
        .postgres
        .start_again()
        .await
        .expect("start PostgreSQL again");
    bench
        .nats
        .start_again()
        .await
        .expect("start nats-server again");
    let after = eventually(
        "tasks are accepted again once both are back",
        Duration::from_secs(30),
        async || {
            let after = submit(&bench.http, &lab.url(), "back again").await;
            if after.body["status"] == "accepted" {
                Ok(after)
            } else {
                Err(format!("{after:?}"))
            }
        },
    )
    .await;
    let id = after.body["id"].as_str().expect("id").to_string();
    eventually(
        "the task is notified",
        Duration::from_secs(30),
        async || {
            let received = bench.received().await;
            if received
                .messages
                .iter()
                .any(|m| m.idempotency_key.as_deref() == Some(&id))
            {
                Ok(())
            } else {
                Err(format!("{received:?}"))
            }
        },
    )
    .await;
    lab.stop().await;
    bench.clean_up().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_exhaustion_answers_503_within_the_bound_and_recovers() {
    // 20 slots, 3 of them reserved for superusers: 17 for ordinary roles.
    let mut bench = Bench::start("lab-pool-exhaustion", 20).await;
    bench
        .postgres
        .create_role("hog", "hog-pw")
        .await
        .expect("create the hog role");
    let options = LabOptions {
        pool_size: 2,
        max_overflow: 2,
        pool_timeout: Duration::from_secs(1),
        request_timeout: Duration::from_secs(3),
        ..bench.lab_options()
    };
    let bound = options.request_timeout;
    let lab = bench.lab(options).await;
    let mut admin = bench.superuser().await;

    // Tasks need the database on the request path only when the broker is down.
    bench.nats.stop().await.expect("stop nats-server");
    let queued = submit(&bench.http, &lab.url(), "queued before the exhaustion").await;
    assert_eq!(queued.body["status"], "queued", "{queued:?}");

    // Another client takes every connection the server gives ordinary roles, and the lab's
    // sessions are terminated so its pool has to open new ones.
    let hog_url = bench.postgres.url_for("hog", "hog-pw", DATABASE);
    let mut hog: Vec<PgConnection> = Vec::new();
    let lab_sessions = eventually("the hog holds every free slot and the lab has none", Duration::from_secs(20), async || {
        while let Ok(connection) = PgConnection::connect(&hog_url).await {
            hog.push(connection);
        }
        let terminated: i64 = sqlx::query_scalar(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
        )
        .bind(APPLICATION_NAME)
        .fetch_one(&mut admin)
        .await
        .expect("terminate the lab's sessions");
        if terminated == 0 { Ok(terminated) } else { Err(format!("{terminated} lab sessions, hog holds {}", hog.len())) }
    })
    .await;
    assert_eq!(lab_sessions, 0);
    assert!(
        hog.len() >= 15,
        "the hog holds the ordinary slots: {}",
        hog.len()
    );

    for n in 0..3 {
        let refused = submit(&bench.http, &lab.url(), &format!("during exhaustion {n}")).await;
        assert_refused_fast(&refused, bound);
    }
    let started = Instant::now();
    let health = bench.health(&lab).await;
    assert!(
        started.elapsed() <= bound,
        "health answers within its bound"
    );
    assert_eq!(health["postgres"]["status"], "down", "{health}");
    let stats = bench.stats(&lab).await;
    assert!(
        stats.pool_timeouts >= 1,
        "pool timeouts are counted: {stats:?}"
    );
    // After a pool timeout, requests fail fast for one pool timeout instead of waiting again.
    assert_eq!(stats.pool_timeouts + stats.db_fail_fast, 3, "{stats:?}");
    assert_eq!(stats.rejected, 3);

    for connection in hog.drain(..) {
        connection.close().await.expect("release a hog connection");
    }
    let recovered = eventually(
        "the lab queues tasks again once connections are free",
        Duration::from_secs(20),
        async || {
            let submission = submit(&bench.http, &lab.url(), "after the exhaustion").await;
            if submission.status == StatusCode::ACCEPTED {
                Ok(submission)
            } else {
                Err(format!("{submission:?}"))
            }
        },
    )
    .await;
    assert_eq!(recovered.body["status"], "queued");

    bench
        .nats
        .start_again()
        .await
        .expect("start nats-server again");
    let stats = eventually(
        "the queued tasks are processed",
        Duration::from_secs(30),
        async || {
            let stats = bench.stats(&lab).await;
            if stats.processed == 2 && stats.retry_queue_depth == Some(0) {
                Ok(stats)
            } else {
                Err(format!("{stats:?}"))
            }
        },
    )
    .await;
    assert_eq!(stats.notified, 2);
    lab.stop().await;
    // A closed session leaves pg_stat_activity once its backend has exited, a moment later.
    eventually(
        "the lab leaves no sessions behind",
        Duration::from_secs(5),
        async || {
            let left = count(
                &mut admin,
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'task-tracker'",
            )
            .await;
            if left == 0 {
                Ok(())
            } else {
                Err(format!("{left} sessions"))
            }
        },
    )
    .await;
    admin.close().await.expect("close the admin session");
    bench.clean_up().await;
}

#[tokio::test]
async fn the_sink_checks_the_token_and_answers_repeats_like_an_idempotent_api() {
    let sink = run_sink(
        SinkOptions {
            token: Some("right".into()),
            ..SinkOptions::local()
        },
        CancellationToken::new(),
    )
    .await
    .expect("start the sink");
    let http = gameday::http_client::builder()
        .no_proxy()
        .build()
        .expect("HTTP client");
    let send = |token: &str, key: &str| {
        http.post(format!("{}/bot{token}/sendMessage", sink.url()))
            .header("Idempotency-Key", key)
            .json(&json!({ "chat_id": 7, "text": "hello" }))
            .send()
    };
    let wrong = send("wrong", "k1").await.expect("send");
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let first: Value = send("right", "k1")
        .await
        .expect("send")
        .json()
        .await
        .expect("JSON");
    let repeat: Value = send("right", "k1")
        .await
        .expect("send")
        .json()
        .await
        .expect("JSON");
    assert_eq!(first, json!({ "ok": true, "result": { "message_id": 1 } }));
    assert_eq!(
        repeat, first,
        "a repeat is answered with the original message"
    );
    let received: Received = http
        .get(format!("{}/received", sink.url()))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    assert_eq!(
        (received.unique, received.total, received.duplicates),
        (1, 2, 1)
    );
    assert_eq!(received.messages[0].chat_id, json!(7));
    sink.stop().await;
}

/// Everything a running `[[prometheus]]` source sent: its latest status and value per key.
struct Scrapes {
    rx: tokio::sync::mpsc::Receiver<gameday::sources::SourceEvent>,
    latest: std::collections::BTreeMap<String, f64>,
    up: bool,
}

impl Scrapes {
    /// Reads events until `done` holds, or panics at the deadline with what was seen.
    async fn until(
        &mut self,
        what: &str,
        limit: Duration,
        done: impl Fn(&std::collections::BTreeMap<String, f64>) -> bool,
    ) {
        use gameday::sources::{SourceEvent, SourceStatus};
        let deadline = tokio::time::Instant::now() + limit;
        while !(self.up && done(&self.latest)) {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(SourceEvent::Samples { values, .. })) => self.latest.extend(values),
                Ok(Some(SourceEvent::Status { status, .. })) => {
                    self.up = status == SourceStatus::Up;
                }
                Ok(None) => panic!("{what}: the source stopped"),
                Err(_) => panic!(
                    "{what}: not reached within {limit:?}; up {}, last seen {:?}",
                    self.up, self.latest
                ),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_prometheus_source_reads_the_labs_pool_and_its_waiting_requests() {
    let bench = Bench::start("lab-prometheus", 40).await;
    let options = LabOptions {
        pool_size: 2,
        max_overflow: 0,
        pool_timeout: Duration::from_secs(10),
        ..bench.lab_options()
    };
    let lab = bench.lab(options).await;

    // The console's source against the lab's real /metrics.
    let config = gameday::config::PrometheusConfig {
        name: "lab".into(),
        url: format!("{}/metrics", lab.url()),
        interval: gameday::toml_input::Dur::from_millis(100),
        timeout: gameday::toml_input::Dur::from_secs(2),
        keep: vec!["lab_db_pool_acquire_seconds_count".into()],
        headers: Default::default(),
        ca_file: None,
        thresholds: Default::default(),
    };
    let (tx, rx) = tokio::sync::mpsc::channel(gameday::sources::CHANNEL_CAPACITY);
    let cancel = CancellationToken::new();
    let source = tokio::spawn(gameday::sources::prometheus::run(
        config,
        gameday::redact::Redactor::default(),
        tx,
        cancel.clone(),
    ));
    let mut scrapes = Scrapes {
        rx,
        latest: Default::default(),
        up: false,
    };
    scrapes
        .until("an idle pool", Duration::from_secs(10), |m| {
            m.get("prom.lab.pool.tasks.max") == Some(&2.0)
                && m.get("prom.lab.pool.tasks.waiting") == Some(&0.0)
                && m.contains_key("prom.lab.pool.tasks.in_use")
                && m.contains_key("prom.lab.pool.tasks.idle")
        })
        .await;
    assert_eq!(scrapes.latest.get("prom.lab.malformed"), Some(&0.0));
    assert_eq!(scrapes.latest.get("prom.lab.up"), Some(&1.0));
    // The lab acquired for its schema check and drainer already: the histogram counts them.
    scrapes
        .until("acquires counted", Duration::from_secs(10), |m| {
            m.get("prom.lab.lab_db_pool_acquire_seconds_count.pool=tasks")
                .is_some_and(|c| *c >= 1.0)
        })
        .await;

    // A lock on the retry queue holds every connection that reads it: `/stats` requests take
    // both connections and the rest wait to acquire one.
    let mut admin = bench.superuser().await;
    let mut lock = admin.begin().await.expect("begin");
    sqlx::query("LOCK TABLE retry_queue IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .expect("lock the retry queue");
    let stop_load = CancellationToken::new();
    let load = {
        let http = bench.http.clone();
        let url = format!("{}/stats", lab.url());
        let stop = stop_load.clone();
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                let requests = (0..6).map(|_| http.get(&url).send());
                let _answers = futures::future::join_all(requests).await;
            }
        })
    };
    scrapes
        .until(
            "the pool full and requests waiting",
            Duration::from_secs(15),
            |m| {
                m.get("prom.lab.pool.tasks.in_use") == Some(&2.0)
                    && m.get("prom.lab.pool.tasks.waiting")
                        .is_some_and(|w| *w >= 1.0)
            },
        )
        .await;

    stop_load.cancel();
    tokio::time::timeout(Duration::from_secs(10), load)
        .await
        .expect("the load stops")
        .expect("the load task");
    lock.rollback().await.expect("release the lock");
    scrapes
        .until("nobody waiting again", Duration::from_secs(15), |m| {
            m.get("prom.lab.pool.tasks.waiting") == Some(&0.0)
        })
        .await;

    // The lab gone, the source says so and keeps its last values for the panel.
    lab.stop().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, scrapes.rx.recv()).await {
            Ok(Some(gameday::sources::SourceEvent::Status {
                status: gameday::sources::SourceStatus::Down { reason },
                ..
            })) => {
                assert_eq!(reason, "connection refused");
                break;
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => panic!("the source never said the lab is down"),
        }
    }
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(5), source)
        .await
        .expect("the source stops")
        .expect("the source task");
    admin.close().await.expect("close the admin session");
    bench.clean_up().await;
}
