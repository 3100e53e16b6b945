use std::path::{Path, PathBuf};

use super::*;

fn fixtures(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/config")
        .join(kind);
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

/// Paths in messages are relative to the fixture dir so snapshots do not depend on the checkout.
fn load_fixture(path: &Path) -> Result<Config, InputError> {
    let name = Path::new(path.file_name().unwrap());
    Config::from_text(name, &std::fs::read_to_string(path).unwrap())
}

#[test]
fn every_valid_fixture_loads() {
    for file in fixtures("valid") {
        load_fixture(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    }
}

#[test]
fn every_invalid_fixture_gets_one_located_message() {
    let mut report = String::new();
    for file in fixtures("invalid") {
        let err = load_fixture(&file)
            .err()
            .unwrap_or_else(|| panic!("{} loaded", file.display()));
        let message = err.to_string();
        assert!(!message.contains('\n'), "one line: {message}");
        assert!(err.line > 0, "located: {message}");
        report.push_str(&message);
        report.push('\n');
    }
    insta::assert_snapshot!(report);
}

#[test]
fn full_config_reads_every_section() {
    let file = fixtures("valid")
        .into_iter()
        .find(|f| f.ends_with("full.toml"))
        .unwrap();
    let c = load_fixture(&file).unwrap();
    assert_eq!(c.sample_interval(), Duration::from_secs(1));
    assert_eq!(c.console.series_capacity(), 3600);
    let nats = c.nats.as_ref().unwrap();
    assert_eq!(nats.watch[0].crit, Some(1000));
    let pg = c.postgres.as_ref().unwrap();
    assert_eq!(pg.pools[0].capacity(), 30);
    assert_eq!(
        pg.url, "postgres://app:secret@127.0.0.1:5432/tasks",
        "env default expanded"
    );
    assert_eq!(c.webhooks[0].timeout.get(), Duration::from_secs(30));
    assert_eq!(c.probes[0].expect, vec![202]);
    assert_eq!(c.probes[0].headers["content-type"], "application/json");
    assert_eq!(c.prometheus[0].interval.get(), Duration::from_secs(2));
    assert_eq!(c.prometheus[0].keep.len(), 2);
    let t = c.thresholds();
    assert_eq!(t["nats.TASKS.workers.pending"].crit, Some(1000.0));
    assert_eq!(t["pg.app.task-tracker.utilization"].crit, Some(1.0));
    assert_eq!(t["pg.gauge.retry_queue"].warn, Some(10.0));
    assert_eq!(t["webhook.telegram.latency_ms.p95"].warn, Some(1000.0));
}

#[test]
fn secrets_from_the_config_are_masked() {
    let c = Config::from_text(
        Path::new("g.toml"),
        "[postgres]\nurl = \"postgres://app:hunter22@127.0.0.1/tasks\"\n[[probe]]\nname = \"api\"\nurl = \"http://127.0.0.1:1/x\"\nheaders = { Authorization = \"Bearer tok-123\" }\n",
    )
    .unwrap();
    let r = c.redactor();
    assert_eq!(
        r.text("connect failed for hunter22"),
        "connect failed for ***"
    );
    assert_eq!(r.text("sent Bearer tok-123"), "sent ***");
}

#[test]
fn missing_config_says_where_it_looked() {
    let err = locate(Some(Path::new("/nonexistent/gameday.toml"))).unwrap_err();
    assert_eq!(
        err.to_string(),
        "/nonexistent/gameday.toml: no such config file (given with --config)"
    );
}

#[test]
fn the_fault_catalog_resolves_targets_keys_and_leases() {
    let file = fixtures("valid")
        .into_iter()
        .find(|f| f.ends_with("faults.toml"))
        .unwrap();
    let c = load_fixture(&file).unwrap();
    let keys: Vec<(&str, Option<u8>)> = c.faults.iter().map(|f| (f.name.as_str(), f.key)).collect();
    assert_eq!(
        keys,
        vec![
            ("nats-slow", Some(1)),
            ("nats-cut", Some(2)),
            ("webhook-slow", Some(3)),
            ("webhook-503", Some(4)),
            ("broker-stop", Some(5)),
            ("broker-freeze", Some(6)),
            ("pool-exhaustion", Some(7)),
            ("backlog", Some(8)),
        ]
    );
    assert_eq!(c.faults[0].lease, Duration::from_secs(120));
    assert_eq!(c.faults[1].lease, faults::DEFAULT_LEASE);
    use crate::faults::spec::{ContainerSelector, FaultSpec, HoldState};
    use crate::proxy::{Direction, Fault, TcpFault};
    assert_eq!(
        c.faults[0].spec,
        FaultSpec::Proxy {
            listener: "nats".into(),
            fault: Fault::Tcp(TcpFault::Latency {
                latency: Duration::from_millis(200),
                jitter: Duration::from_millis(20),
                direction: Direction::Downstream,
                probability: 1.0
            })
        }
    );
    match &c.faults[4].spec {
        FaultSpec::Container { target, .. } => assert_eq!(
            target.selector,
            ContainerSelector::Name("gameday-nats".into())
        ),
        other => panic!("{other:?}"),
    }
    match &c.faults[6].spec {
        FaultSpec::PgExhaust {
            connections,
            state,
            application_name,
            ..
        } => {
            assert_eq!(
                (*connections, *state, application_name.as_str()),
                (50, HoldState::IdleInTransaction, "gameday-fault")
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(c.processes[0].ready.as_deref(), Some("127.0.0.1:4222"));
}

#[test]
fn the_view_a_session_records_masks_every_secret_and_reads_back_the_same() {
    let config = Config::from_text(
        Path::new("gameday.toml"),
        r#"
[nats]
url = "nats://ops:nats-pass-1@127.0.0.1:4222"
token = "nats-token-2"

[postgres]
url = "postgres://app:pg-pass-3@127.0.0.1:5432/tasks"
admin_url = "postgres://admin:pg-admin-4@127.0.0.1:5432/tasks"

[[webhook]]
name = "telegram"
listen = "127.0.0.1:18080"
upstream = "http://127.0.0.1:9000/bot123456:bot-token-5"

[[probe]]
name = "api"
url = "http://127.0.0.1:8000/tasks?token=probe-token-6"
headers = { Authorization = "Bearer header-secret-7", X-Trace = "plain" }

[[prometheus]]
name = "app"
url = "http://scraper:prom-pass-8@127.0.0.1:8080/metrics"
headers = { Authorization = "Bearer prom-token-9" }
"#,
    )
    .unwrap();
    let view = config.view();
    let json = serde_json::to_string(&view).unwrap();
    for secret in [
        "nats-pass-1",
        "nats-token-2",
        "pg-pass-3",
        "pg-admin-4",
        "bot-token-5",
        "probe-token-6",
        "header-secret-7",
        "prom-pass-8",
        "prom-token-9",
    ] {
        assert!(!json.contains(secret), "{secret} in {json}");
    }
    assert!(json.contains("127.0.0.1:5432/tasks"), "{json}");
    assert!(json.contains("plain"), "non-secret headers stay");
    let back: View = serde_json::from_str(&json).unwrap();
    assert_eq!(back, view);
    let drawn = Config::from_view("gameday.toml".into(), back);
    assert_eq!(drawn.probes[0].name, "api");
    assert_eq!(drawn.prometheus[0].name, "app");
    assert!(drawn.faults.is_empty() && drawn.containers.is_empty());
}

#[test]
fn pgbouncer_sections_are_validated_located_and_masked() {
    let ok = r#"
[[pgbouncer]]
name = "main"
url = "postgres://stats:bouncer-secret@127.0.0.1:6432/pgbouncer"
waiting_warn = 1
waiting_crit = 10
maxwait_crit = "5s"

[[fault]]
name = "pause"
kind = "pgbouncer_pause"
target = "main"
database = "tasks"

[[fault]]
name = "shrink"
kind = "pgbouncer_pool_size"
target = "main"
pool_size = 2
"#;
    let c = Config::from_text(Path::new("gameday.toml"), ok).unwrap();
    let t = c.thresholds();
    assert_eq!(
        t["pgbouncer.main.cl_waiting"],
        Threshold::above(Some(1.0), Some(10.0))
    );
    assert_eq!(
        t["pgbouncer.main.maxwait"],
        Threshold::above(None, Some(5.0))
    );
    for key in [
        "pgbouncer.main.cl_waiting",
        "pgbouncer.main.maxwait",
        "pgbouncer.main.tasks.app.sv_active",
        "pgbouncer.main.tasks.xact_rate",
    ] {
        assert!(c.check_metric(key).is_ok(), "{key}");
    }
    for key in [
        "pgbouncer.other.cl_waiting",
        "pgbouncer.main.tasks.app.nope",
        "pgbouncer.main",
    ] {
        assert!(c.check_metric(key).is_err(), "{key}");
    }
    assert!(
        !c.redactor()
            .text("bouncer-secret")
            .contains("bouncer-secret")
    );
    let view = c.view();
    assert!(!view.pgbouncers[0].url.contains("bouncer-secret"));
    // What a session's timeline records reads back whole, so a watcher draws the bouncer too.
    let recorded: View = serde_json::from_str(&serde_json::to_string(&view).unwrap()).unwrap();
    assert_eq!(recorded, view);
    let drawn = Config::from_view(PathBuf::from("gameday.toml"), recorded);
    assert_eq!(drawn.pgbouncers, view.pgbouncers);
    assert_eq!(
        drawn.thresholds()["pgbouncer.main.cl_waiting"],
        t["pgbouncer.main.cl_waiting"]
    );
    assert_eq!(c.faults.len(), 2);
    assert_eq!(c.faults[0].spec.target(), "main");

    let bad = |text: &str, path: &str, says: &str| {
        let err = Config::from_text(Path::new("gameday.toml"), text)
            .err()
            .unwrap_or_else(|| panic!("loaded: {text}"));
        assert!(err.line > 0, "located: {err}");
        assert_eq!(err.path, path, "{err}");
        assert!(err.to_string().contains(says), "{err}");
    };
    let bouncer =
        "[[pgbouncer]]\nname = \"main\"\nurl = \"postgres://stats@127.0.0.1:6432/pgbouncer\"\n";
    bad(
        "[[pgbouncer]]\nname = \"main\"\nurl = \"http://127.0.0.1:6432\"\n",
        "pgbouncer[0].url",
        "expected a URL like",
    );
    bad(
        &format!("{bouncer}waiting_warn = 10\nwaiting_crit = 1\n"),
        "pgbouncer[0].waiting_warn",
        "at most",
    );
    bad(
        &format!(
            "{bouncer}\n[[fault]]\nname = \"p\"\nkind = \"pgbouncer_pause\"\ntarget = \"other\"\ndatabase = \"tasks\"\n"
        ),
        "fault[0].target",
        "not a declared target",
    );
    bad(
        &format!(
            "{bouncer}\n[[fault]]\nname = \"p\"\nkind = \"pgbouncer_kill\"\ntarget = \"main\"\ndatabase = \"tasks; RESUME\"\n"
        ),
        "fault[0].database",
        "letters, digits",
    );
    bad(
        &format!(
            "{bouncer}\n[[fault]]\nname = \"p\"\nkind = \"pgbouncer_pool_size\"\ntarget = \"main\"\npool_size = 0\n"
        ),
        "fault[0].pool_size",
        "from 1 to 10000",
    );
}

#[test]
fn prometheus_keys_are_metrics_a_scenario_may_name() {
    let c = load_fixture(
        &fixtures("valid")
            .into_iter()
            .find(|p| p.ends_with("full.toml"))
            .unwrap(),
    )
    .unwrap();
    for key in [
        "prom.app.up",
        "prom.app.scrape_ms",
        "prom.app.malformed",
        "prom.app.pool.HikariPool-1.in_use",
        "prom.app.pool.127_0_0_1:5432_tasks.waiting",
        "prom.app.pool.tasks.max",
        "prom.app.hikaricp_connections_timeout_total.pool=HikariPool-1",
        "prom.app.db_client_connections_usage.pool_name=tasks.state=used",
    ] {
        assert_eq!(c.check_metric(key), Ok(()), "{key}");
    }
    for key in [
        "prom.other.up",
        "prom.app.pool.tasks.used",
        "prom.app.jvm_memory_used_bytes",
        "prom.app.db_client_connections_usage.pool_name=tasks.state=idle",
        "prom.app.hikaricp_connections_timeout_total.pool",
    ] {
        assert!(c.check_metric(key).is_err(), "{key} accepted");
    }
}

#[test]
fn prometheus_thresholds_bound_its_keys_and_a_key_nobody_produces_is_located() {
    let text = r#"
[[prometheus]]
name = "app"
url = "http://127.0.0.1:8080/metrics"
keep = ["hikaricp_connections_pending"]
thresholds = { "pool.tasks.waiting" = { warn = 1, crit = 10 }, "hikaricp_connections_pending" = { crit = 5 } }
"#;
    let c = Config::from_text(Path::new("gameday.toml"), text).unwrap();
    let t = c.thresholds();
    assert_eq!(
        t["prom.app.pool.tasks.waiting"],
        Threshold::above(Some(1.0), Some(10.0))
    );
    assert_eq!(
        t["prom.app.hikaricp_connections_pending"],
        Threshold::above(None, Some(5.0))
    );
    // Watchers draw the same levels: the thresholds travel in the recorded view.
    let drawn = Config::from_view(PathBuf::from("gameday.toml"), c.view());
    assert_eq!(drawn.thresholds(), t);
    let bad = text.replace("hikaricp_connections_pending\" = ", "jvm_threads\" = ");
    let err = Config::from_text(Path::new("gameday.toml"), &bad).unwrap_err();
    assert_eq!(err.line, 6, "{err}");
    assert!(err.to_string().contains("prom.app.jvm_threads"), "{err}");
}
