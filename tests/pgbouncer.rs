//! PgBouncer against the real thing: a throwaway PostgreSQL with a real PgBouncer (Debian's
//! `pgbouncer`, `GAMEDAY_PGBOUNCER`) in front of it, clients holding transactions through a pool
//! smaller than their number. The source's metrics and `gameday snapshot --json` must say what
//! the bouncer's own `SHOW POOLS` and PostgreSQL's `pg_stat_activity` say; every PgBouncer fault
//! must do what it says on the bouncer, and its revert must restore the state before it.

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gameday::config::Config;
use gameday::faults::touched::Touched;
use gameday::faults::{FaultContext, FaultSpec, build};
use gameday::services::{PgBouncer, PgBouncerOptions, PgCluster, PgOptions, PoolMode};
use gameday::sources::pgbouncer::{AdminRow, admin_rows, number};
use gameday::sources::{CHANNEL_CAPACITY, SourceEvent, SourceStatus};
use sqlx::postgres::PgConnection;
use sqlx::{ConnectOptions, Connection};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const POOL_SIZE: u32 = 3;
const WITHIN: Duration = Duration::from_secs(20);

struct Lab {
    dir: PathBuf,
    // Dropped in this order: the bouncer before the server behind it.
    bouncer: PgBouncer,
    postgres: PgCluster,
}

impl Lab {
    async fn start(name: &str) -> Lab {
        let dir = support::test_dir(name);
        let postgres = PgCluster::start(PgOptions::new(dir.join("postgres")))
            .await
            .expect("start postgres");
        postgres.create_role("app", "app-pw").await.unwrap();
        postgres.create_database("tasks", "app").await.unwrap();
        let options = PgBouncerOptions {
            databases: vec!["tasks".into()],
            users: vec![("app".into(), "app-pw".into())],
            pool_mode: PoolMode::Transaction,
            default_pool_size: POOL_SIZE,
            ..PgBouncerOptions::new(dir.join("pgbouncer"), postgres.port())
        };
        let bouncer = PgBouncer::start(options).await.expect("start pgbouncer");
        Lab {
            dir,
            bouncer,
            postgres,
        }
    }

    /// A config with the bouncer (admin user `postgres`) and its four faults on `tasks`.
    fn config(&self) -> Arc<Config> {
        let text = format!(
            r#"
[console]
sample_interval = "200ms"
artifacts = "{artifacts}"

[[pgbouncer]]
name = "main"
url = "{url}"
waiting_warn = 1
waiting_crit = 5
maxwait_warn = "1s"

[[fault]]
name = "pause"
key = 1
kind = "pgbouncer_pause"
target = "main"
database = "tasks"

[[fault]]
name = "disable"
kind = "pgbouncer_disable"
target = "main"
database = "tasks"

[[fault]]
name = "kill"
kind = "pgbouncer_kill"
target = "main"
database = "tasks"

[[fault]]
name = "shrink"
key = 2
kind = "pgbouncer_pool_size"
target = "main"
pool_size = 1
"#,
            artifacts = self.dir.join("artifacts").display(),
            url = self.bouncer.admin_url("postgres"),
        );
        let file = self.dir.join("gameday.toml");
        std::fs::write(&file, &text).unwrap();
        Arc::new(Config::load(&file).expect("a valid config"))
    }

    async fn app(&self) -> sqlx::Result<PgConnection> {
        self.bouncer
            .connect_options("app", "app-pw", "tasks")
            .connect()
            .await
    }

    async fn admin(&self) -> PgConnection {
        self.bouncer
            .connect_options("postgres", "", "pgbouncer")
            .connect()
            .await
            .expect("the admin console")
    }

    async fn show(&self, command: &str) -> Vec<AdminRow> {
        let mut admin = self.admin().await;
        admin_rows(&mut admin, command).await.unwrap()
    }

    /// The bouncer's own `SHOW POOLS` row for tasks/app.
    async fn pool(&self) -> AdminRow {
        self.show("SHOW POOLS")
            .await
            .into_iter()
            .find(|r| r["database"] == "tasks" && r["user"] == "app")
            .unwrap_or_default()
    }

    async fn database(&self) -> AdminRow {
        self.show("SHOW DATABASES")
            .await
            .into_iter()
            .find(|r| r["name"] == "tasks")
            .expect("tasks is declared")
    }

    async fn pool_size(&self) -> String {
        self.show("SHOW CONFIG")
            .await
            .into_iter()
            .find(|r| r["key"] == "default_pool_size")
            .expect("default_pool_size in SHOW CONFIG")["value"]
            .clone()
    }

    /// Backends of `app` in a transaction, as PostgreSQL sees them.
    async fn in_transaction(&self) -> i64 {
        let mut pg = self
            .postgres
            .superuser_options("postgres")
            .connect()
            .await
            .unwrap();
        sqlx::query_scalar(
            "select count(*) from pg_stat_activity where usename = 'app' and datname = 'tasks' \
             and state = 'idle in transaction'",
        )
        .fetch_one(&mut pg)
        .await
        .unwrap()
    }
}

/// A client that opens a transaction through the bouncer and holds it until released.
struct Holder {
    release: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

fn hold(lab: &Lab) -> Holder {
    let options = lab.bouncer.connect_options("app", "app-pw", "tasks");
    let (release, released) = oneshot::channel();
    let task = tokio::spawn(async move {
        let mut conn = options
            .connect()
            .await
            .expect("connect through the bouncer");
        sqlx::raw_sql("BEGIN; SELECT 1")
            .execute(&mut conn)
            .await
            .expect("begin");
        let _ = released.await;
        let _ = sqlx::raw_sql("COMMIT").execute(&mut conn).await;
        let _ = conn.close().await;
    });
    Holder { release, task }
}

/// Polls `check` until it holds or fails after `within`.
async fn eventually<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_source_and_snapshot_see_m_active_servers_and_n_minus_m_waiting_clients_like_show_pools()
 {
    let owned = Lab::start("pgbouncer-exhaust").await;
    let lab = &owned;
    let config = lab.config();
    const CLIENTS: usize = 5;
    let holders: Vec<Holder> = (0..CLIENTS).map(|_| hold(lab)).collect();
    let waiting = (CLIENTS as u32 - POOL_SIZE) as f64;

    // The bouncer itself says: M servers active, N−M clients waiting.
    eventually(
        "SHOW POOLS has 3 active servers and 2 waiting clients",
        WITHIN,
        move || async move {
            let pool = lab.pool().await;
            number(&pool, "sv_active") == f64::from(POOL_SIZE)
                && number(&pool, "cl_waiting") == waiting
        },
    )
    .await;
    assert_eq!(
        lab.in_transaction().await,
        i64::from(POOL_SIZE),
        "PostgreSQL has exactly the pool's sessions, each in a transaction"
    );

    // The source says the same.
    let (tx, mut rx) = mpsc::channel(CHANNEL_CAPACITY);
    let cancel = CancellationToken::new();
    let bouncer = config.pgbouncers[0].clone();
    let source = tokio::spawn(gameday::sources::pgbouncer::run(
        bouncer,
        config.sample_interval(),
        config.redactor().clone(),
        tx,
        cancel.clone(),
    ));
    let mut latest: BTreeMap<String, f64> = BTreeMap::new();
    let mut status = None;
    let deadline = Instant::now() + WITHIN;
    let key = |field: &str| format!("pgbouncer.main.tasks.app.{field}");
    while !(status == Some(SourceStatus::Up)
        && latest.get(&key("cl_waiting")) == Some(&waiting)
        && latest.get(&key("sv_active")) == Some(&f64::from(POOL_SIZE))
        // Rates from SHOW STATS need a second round.
        && latest.contains_key("pgbouncer.main.tasks.xact_rate"))
    {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(SourceEvent::Samples { values, .. })) => latest.extend(values),
            Ok(Some(SourceEvent::Status { status: s, .. })) => status = Some(s),
            other => panic!("the source did not report the pool: {other:?} {status:?} {latest:?}"),
        }
    }
    let pool = lab.pool().await;
    for field in ["cl_active", "cl_waiting", "sv_active", "sv_idle", "sv_used"] {
        assert_eq!(
            latest[&key(field)],
            number(&pool, field),
            "{field}: the source and SHOW POOLS agree"
        );
    }
    assert_eq!(latest["pgbouncer.main.cl_waiting"], waiting);
    assert!(latest[&key("maxwait")] >= 0.0);
    assert!(latest["pgbouncer.main.tasks.xact_rate"] >= 0.0);
    assert!(
        config
            .thresholds()
            .contains_key("pgbouncer.main.cl_waiting")
    );
    assert!(config.check_metric(&key("cl_waiting")).is_ok());
    assert!(config.check_metric("pgbouncer.main.maxwait").is_ok());
    assert!(config.check_metric("pgbouncer.other.maxwait").is_err());
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(5), source)
        .await
        .expect("the source stops on cancel")
        .unwrap();

    // And so does `gameday snapshot --json`, run as the operator would.
    let output = tokio::process::Command::new(support::GAMEDAY)
        .args(["snapshot", "--config"])
        .arg(lab.dir.join("gameday.toml"))
        .arg("--json")
        .current_dir(&lab.dir)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(WITHIN, output)
        .await
        .expect("snapshot finishes")
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(
        json[key("cl_waiting")],
        serde_json::json!(waiting),
        "{json}"
    );
    assert_eq!(
        json[key("sv_active")],
        serde_json::json!(f64::from(POOL_SIZE)),
        "{json}"
    );

    for holder in holders {
        let _ = holder.release.send(());
        tokio::time::timeout(WITHIN, holder.task)
            .await
            .expect("every client finishes once released")
            .unwrap();
    }
    drop(owned);
}

fn spec(config: &Config, name: &str) -> FaultSpec {
    config
        .faults
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("fault {name}"))
        .spec
        .clone()
}

#[tokio::test]
async fn pause_queues_a_query_and_resume_lets_it_through() {
    let lab = Lab::start("pgbouncer-pause").await;
    let config = lab.config();
    let ctx = FaultContext::new(config.clone(), None);
    let mut client = lab.app().await.unwrap();
    sqlx::raw_sql("SELECT 1")
        .execute(&mut client)
        .await
        .unwrap();

    let mut fault = build("pause-1", &spec(&config, "pause"));
    let radius = fault.dry_run(&ctx).await.unwrap();
    assert!(radius.lines[0].contains("database tasks"), "{radius:?}");
    fault.inject(&ctx).await.expect("PAUSE tasks");
    assert_eq!(number(&lab.database().await, "paused"), 1.0);

    let query = tokio::spawn(async move {
        sqlx::raw_sql("SELECT 1")
            .execute(&mut client)
            .await
            .map(drop)
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !query.is_finished(),
        "a query waits while its database is paused"
    );
    assert!(
        number(&lab.pool().await, "cl_waiting") >= 1.0,
        "the bouncer counts it as waiting"
    );

    // A fresh instance (as the guard or `recover` would build it) resumes.
    build("pause-1", &spec(&config, "pause"))
        .revert(&ctx)
        .await
        .expect("RESUME tasks");
    tokio::time::timeout(Duration::from_secs(5), query)
        .await
        .expect("the query proceeds after RESUME")
        .unwrap()
        .unwrap();
    assert_eq!(number(&lab.database().await, "paused"), 0.0);
    fault
        .revert(&ctx)
        .await
        .expect("a second revert is harmless");
}

#[tokio::test]
async fn disable_refuses_new_clients_and_enable_lets_them_in() {
    let lab = Lab::start("pgbouncer-disable").await;
    let config = lab.config();
    let ctx = FaultContext::new(config.clone(), None);
    let mut fault = build("disable-1", &spec(&config, "disable"));
    fault.inject(&ctx).await.expect("DISABLE tasks");
    assert_eq!(number(&lab.database().await, "disabled"), 1.0);
    let refused = lab.app().await.expect_err("a new client is refused");
    assert!(refused.to_string().contains("disabled"), "{refused}");

    fault.revert(&ctx).await.expect("ENABLE tasks");
    assert_eq!(number(&lab.database().await, "disabled"), 0.0);
    let mut client = lab.app().await.expect("a new client gets in again");
    sqlx::raw_sql("SELECT 1")
        .execute(&mut client)
        .await
        .unwrap();
}

#[tokio::test]
async fn kill_drops_the_server_connections_and_resume_serves_again() {
    let owned = Lab::start("pgbouncer-kill").await;
    let lab = &owned;
    let config = lab.config();
    let ctx = FaultContext::new(config.clone(), None);
    let mut client = lab.app().await.unwrap();
    sqlx::raw_sql("BEGIN; SELECT 1")
        .execute(&mut client)
        .await
        .unwrap();
    assert_eq!(lab.in_transaction().await, 1);

    let mut fault = build("kill-1", &spec(&config, "kill"));
    fault.inject(&ctx).await.expect("KILL tasks");
    eventually(
        "PostgreSQL has no session of app left",
        WITHIN,
        move || async move { lab.in_transaction().await == 0 },
    )
    .await;
    let pool = lab.pool().await;
    assert_eq!(number(&pool, "sv_active") + number(&pool, "sv_idle"), 0.0);
    let dropped = tokio::time::timeout(
        Duration::from_secs(5),
        sqlx::raw_sql("SELECT 1").execute(&mut client),
    )
    .await
    .expect("the killed client's query fails at once");
    assert!(dropped.is_err(), "its connection was dropped");

    fault.revert(&ctx).await.expect("RESUME tasks");
    let mut again = lab.app().await.expect("a new client connects");
    sqlx::raw_sql("SELECT 1").execute(&mut again).await.unwrap();
}

#[tokio::test]
async fn pool_size_is_set_and_the_show_config_value_comes_back_through_the_ledger_record() {
    let owned = Lab::start("pgbouncer-pool-size").await;
    let lab = &owned;
    let config = lab.config();
    let ctx = FaultContext::new(config.clone(), None);
    assert_eq!(lab.pool_size().await, POOL_SIZE.to_string());

    let mut fault = build("shrink-1", &spec(&config, "shrink"));
    fault.inject(&ctx).await.expect("SET default_pool_size = 1");
    assert_eq!(lab.pool_size().await, "1");
    let touched = fault.touched().expect("the previous value is recorded");
    assert_eq!(
        touched,
        Touched::BouncerSetting {
            key: "default_pool_size".into(),
            value: POOL_SIZE.to_string()
        }
    );
    // With one server, a second transaction waits.
    let first = hold(lab);
    let second = hold(lab);
    eventually(
        "one server active, one client waiting",
        WITHIN,
        move || async move {
            let pool = lab.pool().await;
            number(&pool, "sv_active") == 1.0 && number(&pool, "cl_waiting") == 1.0
        },
    )
    .await;

    // A fresh instance restored from the ledger's record puts the value back.
    let mut fresh = build("shrink-1", &spec(&config, "shrink"));
    fresh.restore(&touched);
    fresh
        .revert(&ctx)
        .await
        .expect("SET default_pool_size back");
    assert_eq!(lab.pool_size().await, POOL_SIZE.to_string());
    eventually(
        "the waiting client gets a server",
        WITHIN,
        move || async move { number(&lab.pool().await, "cl_waiting") == 0.0 },
    )
    .await;
    for holder in [first, second] {
        let _ = holder.release.send(());
        tokio::time::timeout(WITHIN, holder.task)
            .await
            .unwrap()
            .unwrap();
    }
    // Without the record a revert cannot know the value and says so.
    let error = build("shrink-2", &spec(&config, "shrink"))
        .revert(&ctx)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("not recorded"), "{error}");
}

#[tokio::test]
async fn check_and_the_source_say_a_stopped_bouncer_is_down_plainly_and_without_its_password() {
    let mut lab = Lab::start("pgbouncer-down").await;
    lab.config();
    let mut config_text = std::fs::read_to_string(lab.dir.join("gameday.toml")).unwrap();
    // A password in the URL must never show in a reason.
    config_text = config_text.replace(
        "postgres://postgres@",
        "postgres://postgres:hunter2-bouncer@",
    );
    let file = lab.dir.join("gameday.toml");
    std::fs::write(&file, &config_text).unwrap();
    let config = Config::load(&file).unwrap();
    let check = || {
        let run = tokio::process::Command::new(support::GAMEDAY)
            .args(["check", "--config"])
            .arg(&file)
            .current_dir(&lab.dir)
            .kill_on_drop(true)
            .output();
        async move {
            tokio::time::timeout(WITHIN, run)
                .await
                .expect("check finishes")
                .unwrap()
        }
    };
    let up = check().await;
    let stdout = String::from_utf8_lossy(&up.stdout);
    assert!(up.status.success(), "{up:?}");
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("pgbouncer") && l.contains("✔ reachable")),
        "{stdout}"
    );

    lab.bouncer.stop().await.unwrap();
    let down = check().await;
    let stdout = String::from_utf8_lossy(&down.stdout);
    assert_eq!(down.status.code(), Some(1), "{down:?}");
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("pgbouncer") && l.contains("✖ cannot connect")),
        "{stdout}"
    );
    assert!(!stdout.contains("hunter2"), "{stdout}");
    let (tx, mut rx) = mpsc::channel(CHANNEL_CAPACITY);
    let cancel = CancellationToken::new();
    let source = tokio::spawn(gameday::sources::pgbouncer::run(
        config.pgbouncers[0].clone(),
        config.sample_interval(),
        config.redactor().clone(),
        tx,
        cancel.clone(),
    ));
    let reason = loop {
        match tokio::time::timeout(WITHIN, rx.recv()).await {
            Ok(Some(SourceEvent::Status {
                status: SourceStatus::Down { reason },
                ..
            })) => break reason,
            Ok(Some(_)) => {}
            other => panic!("no down status: {other:?}"),
        }
    };
    assert!(reason.contains("cannot connect"), "{reason}");
    assert!(!reason.contains("hunter2"), "{reason}");
    cancel.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), source).await;
}

#[tokio::test]
async fn through_the_engine_the_ledger_records_the_pool_size_to_restore_and_the_revert_restores_it()
{
    use gameday::faults::engine::{self, FaultReport};
    use gameday::ledger::{Ledger, Owner};
    use gameday::timeline::{Cause, FaultPhase};

    let owned = Lab::start("pgbouncer-engine").await;
    let lab = &owned;
    let config = lab.config();
    let ledger = Ledger::new(&config.console.artifacts).unwrap();
    let ctx = Arc::new(FaultContext::new(config.clone(), None));
    let (tx, mut rx) = mpsc::channel::<FaultReport>(16);
    let owner = Owner::new("pgbouncer-test");
    let _alive = ledger.hold(&owner).unwrap();
    let (others, _) = tokio::sync::watch::channel(Vec::new());
    let handle = engine::spawn(ctx, ledger.clone(), owner, tx, others);
    let mut next = async || {
        tokio::time::timeout(WITHIN, rx.recv())
            .await
            .expect("a report")
            .expect("the engine is alive")
    };

    handle
        .inject(
            "shrink",
            spec(&config, "shrink"),
            Duration::from_secs(300),
            Cause::Key("4".into()),
        )
        .await;
    assert_eq!(next().await.phase, FaultPhase::Requested);
    let applied = next().await;
    assert_eq!(
        (applied.phase, applied.target.as_str()),
        (FaultPhase::Applied, "main"),
        "{applied:?}"
    );
    assert_eq!(lab.pool_size().await, "1");
    let expected = Some(Touched::BouncerSetting {
        key: "default_pool_size".into(),
        value: POOL_SIZE.to_string(),
    });
    eventually("the ledger records the value to restore", WITHIN, || {
        let ledger = ledger.clone();
        let expected = expected.clone();
        async move {
            ledger
                .entries()
                .unwrap()
                .first()
                .is_some_and(|e| e.touched == expected)
        }
    })
    .await;

    handle.revert(&applied.id, Cause::Key("r".into())).await;
    assert_eq!(next().await.phase, FaultPhase::RevertRequested);
    let reverted = next().await;
    assert_eq!(reverted.phase, FaultPhase::Reverted, "{reverted:?}");
    assert!(ledger.entries().unwrap().is_empty());
    assert_eq!(lab.pool_size().await, POOL_SIZE.to_string());
}

#[tokio::test]
async fn a_stats_user_cannot_inject_and_the_refusal_says_so_and_leaves_nothing_to_undo() {
    let lab = Lab::start("pgbouncer-stats-only").await;
    lab.config();
    let file = lab.dir.join("gameday.toml");
    let text = std::fs::read_to_string(&file).unwrap().replace(
        &lab.bouncer.admin_url("postgres"),
        &lab.bouncer.admin_url("stats"),
    );
    let config = Arc::new(Config::from_text(&file, &text).unwrap());
    let ctx = FaultContext::new(config.clone(), None);
    let mut client = lab.app().await.unwrap();
    sqlx::raw_sql("SELECT 1")
        .execute(&mut client)
        .await
        .unwrap();

    let mut fault = build("pause-stats", &spec(&config, "pause"));
    let error = fault.inject(&ctx).await.unwrap_err().to_string();
    assert!(error.contains("admin_users"), "{error}");
    assert_eq!(number(&lab.database().await, "paused"), 0.0);
    fault
        .revert(&ctx)
        .await
        .expect("the cleanup of a refused inject has nothing to undo");
    sqlx::raw_sql("SELECT 1")
        .execute(&mut client)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_pause_that_cannot_finish_behind_an_open_transaction_fails_and_resumes() {
    let owned = Lab::start("pgbouncer-pause-blocked").await;
    let lab = &owned;
    let config = lab.config();
    let ctx = FaultContext::new(config.clone(), None);
    // PAUSE waits for the database's transactions to end; this one does not.
    let holder = hold(lab);
    eventually("the transaction is open", WITHIN, move || async move {
        lab.in_transaction().await == 1
    })
    .await;

    let started = Instant::now();
    let mut fault = build("pause-blocked", &spec(&config, "pause"));
    let error = fault.inject(&ctx).await.unwrap_err().to_string();
    assert!(
        error.contains("did not complete") && error.contains("resumed"),
        "{error}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "within the engine's inject deadline"
    );
    assert_eq!(
        number(&lab.database().await, "paused"),
        0.0,
        "no half-applied pause is left behind"
    );
    let mut client = lab.app().await.unwrap();
    tokio::time::timeout(
        Duration::from_secs(5),
        sqlx::raw_sql("SELECT 1").execute(&mut client),
    )
    .await
    .expect("other clients are served")
    .unwrap();
    fault.revert(&ctx).await.expect("nothing left to undo");
    let _ = holder.release.send(());
    tokio::time::timeout(WITHIN, holder.task)
        .await
        .unwrap()
        .unwrap();
}

/// Waits (async, with a deadline) until `condition` holds on the real bouncer.
async fn until_bouncer(what: &str, mut condition: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + WITHIN;
    while !condition().await {
        assert!(Instant::now() < deadline, "{what}: not within {WITHIN:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_console_s_bouncer_faults_are_reverted_on_the_bouncer_while_another_console_runs()
{
    let lab = Lab::start("pgbouncer-kill").await;
    lab.config();
    let file = lab.dir.join("gameday.toml").display().to_string();
    let before = lab.pool_size().await;
    let mut driver = support::Console::spawn(
        &lab.dir,
        &["console", "--config", &file, "--session", "driver"],
        160,
        48,
    );
    let other = support::Console::spawn(
        &lab.dir,
        &["console", "--config", &file, "--session", "other"],
        160,
        48,
    );
    driver.wait_for("bouncer", Duration::from_secs(30));
    other.wait_for("bouncer", Duration::from_secs(30));
    driver.inject("1", "pause");
    driver.inject("2", "shrink");
    until_bouncer("paused and shrunk on the bouncer", async || {
        lab.database().await["paused"] == "1" && lab.pool_size().await == "1"
    })
    .await;
    // The driving console dies (SIGKILL) with the other console still attached: its dead-man
    // agent resumes the database and restores the pool size, on the bouncer itself.
    driver.signal(nix::sys::signal::Signal::SIGKILL);
    driver.wait_exit(Duration::from_secs(5));
    until_bouncer("resumed and restored on the bouncer", async || {
        lab.database().await["paused"] == "0" && lab.pool_size().await == before
    })
    .await;
    let mut client = lab.app().await.expect("a client is served again");
    sqlx::query("select 1").execute(&mut client).await.unwrap();
    assert!(
        support::process_args(other.pid()).is_some(),
        "the other console runs on"
    );
}
