//! Opening a long session for replay, and what a watcher costs while nothing happens.
//!
//! The session is written by the console's own `App` on a hand-turned clock: the bench
//! dashboard's estate (five consumers, three pools, two gauges, three webhooks, four probes, the
//! host) sampled once a second for `hours`, with a fault every ten minutes. Eight hours come to
//! about 60 MB. Targets: open for replay (read, parse, project to the end) under 2 s and under
//! 200 MB of resident memory; a watcher idles under 1 % of a core.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::{Effort, Figure, Row, duration};
use crate::app::{App, Event};
use crate::config::Config;
use crate::faults::engine::FaultReport;
use crate::sources::{SourceEvent, SourceId, SourceStatus};
use crate::state::Session;
use crate::timeline::{Clock, Driver, FaultPhase, Timeline};
use crate::watch::follow::FileFollower;
use crate::watch::replay::Replay;

pub const OPEN_BUDGET: Duration = Duration::from_secs(2);
pub const RSS_BUDGET_MB: f64 = 200.0;
pub const IDLE_CPU_BUDGET: f64 = 0.01;

/// One second of the estate's samples, source by source (what the console receives).
fn batches(second: u64) -> Vec<(&'static str, Vec<(String, f64)>)> {
    let wave = |period: u64, scale: f64| {
        let x = (second % period) as f64 / period as f64;
        scale * (x * std::f64::consts::TAU).sin().abs()
    };
    let mut nats = vec![
        ("nats.up".to_string(), 1.0),
        ("nats.rtt_ms".to_string(), 0.3 + wave(97, 0.4)),
    ];
    for c in [
        "TASKS.workers",
        "TASKS.notifier",
        "TASKS.audit",
        "EVENTS.indexer",
        "EVENTS.mailer",
    ] {
        nats.push((format!("nats.{c}.pending"), wave(600, 900.0).round()));
        nats.push((format!("nats.{c}.ack_pending"), wave(61, 20.0).round()));
        nats.push((format!("nats.{c}.redelivered"), (second / 600) as f64));
    }
    let mut pg = vec![
        ("pg.up".to_string(), 1.0),
        (
            "pg.connections.total".to_string(),
            40.0 + wave(300, 20.0).round(),
        ),
        (
            "pg.connections.utilization".to_string(),
            0.4 + wave(300, 0.2),
        ),
    ];
    for pool in ["task-tracker", "worker", "reporting"] {
        pg.push((format!("pg.app.{pool}.in_use"), wave(120, 10.0).round()));
        pg.push((format!("pg.app.{pool}.utilization"), wave(120, 1.0)));
    }
    pg.push(("pg.gauge.retry_queue".into(), wave(900, 50.0).round()));
    pg.push(("pg.gauge.dead_letters".into(), 0.0));
    let mut out = vec![("nats", nats), ("pg", pg)];
    for hook in ["telegram", "slack", "pager"] {
        out.push((
            match hook {
                "telegram" => "webhook.telegram",
                "slack" => "webhook.slack",
                _ => "webhook.pager",
            },
            vec![
                (format!("webhook.{hook}.latency_ms"), 80.0 + wave(45, 400.0)),
                (format!("webhook.{hook}.requests"), second as f64),
                (format!("webhook.{hook}.errors"), (second / 300) as f64),
            ],
        ));
    }
    for probe in ["api", "health", "search", "login"] {
        out.push((
            match probe {
                "api" => "probe.api",
                "health" => "probe.health",
                "search" => "probe.search",
                _ => "probe.login",
            },
            vec![
                (format!("probe.{probe}.up"), 1.0),
                (format!("probe.{probe}.ok"), 1.0),
                (format!("probe.{probe}.latency_ms"), 5.0 + wave(37, 60.0)),
                (format!("probe.{probe}.status"), 200.0),
            ],
        ));
    }
    out.push((
        "host",
        vec![
            ("host.cpu".into(), 20.0 + wave(180, 50.0)),
            ("host.mem".into(), 45.0 + wave(3600, 10.0)),
        ],
    ));
    out
}

/// Writes a session of `hours` into `dir` the way the console writes one; returns its directory.
pub fn write_session(dir: &Path, hours: u64) -> Result<PathBuf, String> {
    let config = Config::from_text(Path::new("gameday.toml"), super::render::CONFIG)
        .map_err(|e| e.to_string())?;
    let clock = Arc::new(AtomicU64::new(0));
    let started = chrono::Utc::now();
    let timeline = Timeline::with_clock(
        dir,
        config.redactor().clone(),
        Clock::Manual(clock.clone()),
        started,
    )
    .map_err(|e| e.to_string())?;
    let session = Session {
        name: "long".into(),
        dir: dir.to_path_buf(),
        started,
    };
    let mut app = App::new(Arc::new(config), session, timeline, "dark".into(), vec![])
        .map_err(|e| e.to_string())?;
    app.set_up(
        Driver {
            id: "long-000000".into(),
            user: "bench".into(),
            host: "localhost".into(),
            pid: std::process::id(),
        },
        Vec::new(),
        Vec::new(),
    );
    for (source, _) in batches(0) {
        app.handle(Event::Source(SourceEvent::Status {
            source: SourceId(source.into()),
            status: SourceStatus::Up,
        }));
    }
    for second in 1..=hours * 3600 {
        let base = second * 1000;
        for (i, (source, values)) in batches(second).into_iter().enumerate() {
            clock.store(base + i as u64 * 7, Ordering::SeqCst);
            app.handle(Event::Source(SourceEvent::Samples {
                source: SourceId(source.into()),
                values,
            }));
        }
        clock.store(base + 500, Ordering::SeqCst);
        app.handle(Event::Tick);
        // A fault every ten minutes, applied for two.
        let phase = match second % 600 {
            300 => Some(FaultPhase::Requested),
            301 => Some(FaultPhase::Applied),
            420 => Some(FaultPhase::RevertRequested),
            421 => Some(FaultPhase::Reverted),
            _ => None,
        };
        if let Some(phase) = phase {
            app.handle(Event::Fault(FaultReport {
                id: format!("long-000000-{}", second / 600),
                name: "pg-hold".into(),
                target: "postgres".into(),
                phase,
                detail: String::new(),
                cause: None,
                lease: Some(Duration::from_secs(300)),
            }));
        }
    }
    app.record(crate::timeline::EventKind::SessionEnd {
        reason: "bench".into(),
    });
    Ok(dir.to_path_buf())
}

/// Resident memory of this process, in MB (Linux).
pub fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// CPU time this process used so far (user + system).
fn cpu_time() -> Duration {
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF);
    usage.map_or(Duration::ZERO, |u| {
        let tv = |t: nix::sys::time::TimeVal| {
            Duration::from_secs(t.tv_sec() as u64) + Duration::from_micros(t.tv_usec() as u64)
        };
        tv(u.user_time()) + tv(u.system_time())
    })
}

pub fn measure(dir: &Path, effort: Effort) -> Result<Vec<Row>, String> {
    let hours = effort.pick(8, 1) as u64;
    let written = Instant::now();
    write_session(dir, hours)?;
    let write_took = written.elapsed();
    let file = dir.join(crate::timeline::FILE_NAME);
    let bytes = std::fs::metadata(&file).map_err(|e| e.to_string())?.len();

    let rss_before = rss_mb();
    let opened = Instant::now();
    let mut replay = Replay::open(dir, "dark".into())?;
    replay.seek(u64::MAX);
    let open_took = opened.elapsed();
    let rss = rss_mb() - rss_before;
    let events = replay.events().len();
    // Back to the start and to the middle: what a scrub costs at worst.
    let scrubbed = Instant::now();
    replay.seek(replay.length_ms() / 2);
    let scrub_took = scrubbed.elapsed();
    drop(replay);

    // A watcher on a session where nothing happens: poll every 200 ms, redraw once a second.
    let idle_for = Duration::from_secs(effort.pick(10, 3) as u64);
    let mut follower = FileFollower::new(&file);
    let _ = follower.poll();
    let theme = crate::theme::Theme::built_in("dark").ok_or("no dark theme")?;
    let state = super::render::dashboard_state();
    let mut terminal = super::render::terminal();
    let cpu_before = cpu_time();
    let idle_started = Instant::now();
    let mut last_second = 0;
    while idle_started.elapsed() < idle_for {
        std::thread::sleep(Duration::from_millis(200));
        let _ = follower.poll();
        let second = idle_started.elapsed().as_secs();
        if second != last_second {
            last_second = second;
            super::render::draw(&mut terminal, &state, &theme);
        }
    }
    let idle_cpu = (cpu_time() - cpu_before).as_secs_f64() / idle_started.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(dir);

    let mb = bytes as f64 / 1e6;
    Ok(vec![
        Row {
            name: format!(
                "replay: open a {hours} h session ({mb:.0} MB) and project it to the end"
            ),
            figure: Figure::Time {
                took: open_took,
                budget: Some(OPEN_BUDGET),
            },
            context: vec![
                format!(
                    "{events} events; resident memory +{rss:.0} MB (target < {RSS_BUDGET_MB:.0} MB)"
                ),
                format!(
                    "scrub back to the middle {}; written by the console's App in {}",
                    duration(scrub_took),
                    duration(write_took)
                ),
            ],
        },
        Row {
            name: "watch: idle watcher, CPU share of one core".into(),
            figure: Figure::Time {
                // As a time: CPU time per second of watching (10 ms = 1 % of a core).
                took: Duration::from_secs_f64(idle_cpu),
                budget: Some(Duration::from_secs_f64(IDLE_CPU_BUDGET)),
            },
            context: vec![format!(
                "{:.2} % of a core over {}",
                idle_cpu * 100.0,
                duration(idle_for)
            )],
        },
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_session_replays_to_its_end_with_every_fault() {
        let dir = crate::services::testing::test_dir("bench-replay");
        write_session(&dir, 0).unwrap();
        // Zero hours: only the start, the setup and the end.
        let replay = Replay::open(&dir, "dark".into()).unwrap();
        assert!(replay.events().len() >= 3);
        assert_eq!(
            replay.state().config.nats.as_ref().map(|n| n.watch.len()),
            Some(5)
        );
    }
}
