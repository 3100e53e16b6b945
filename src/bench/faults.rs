//! `X` with nine active faults: how long the fault engine takes to revert them all (ledger
//! included) through an in-process proxy daemon. Target: under 1 s.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::{Effort, Figure, Row, Samples, duration, stop_daemon};
use crate::config::Config;
use crate::faults::engine::{self, EngineHandle, FaultReport};
use crate::faults::{FaultContext, FaultSpec};
use crate::ledger::Ledger;
use crate::proxy::{Daemon, DaemonHandle, DaemonOptions, Direction, Fault, ProxyClient, TcpFault};
use crate::timeline::{Cause, FaultPhase};

pub const ACTIVE_FAULTS: usize = 9;
pub const REVERT_ALL_BUDGET: Duration = Duration::from_secs(1);
/// How long one inject or revert report may take before the measurement gives up.
const REPORT_DEADLINE: Duration = Duration::from_secs(10);

/// A fault engine wired to an in-process proxy daemon with `proxies` proxies named `p0`, `p1`…
/// (the engine's own tests use it too).
pub(crate) struct FaultRig {
    pub(crate) engine: EngineHandle,
    pub(crate) reports: mpsc::Receiver<FaultReport>,
    pub(crate) ledger: Ledger,
    pub(crate) client: Arc<ProxyClient>,
    /// The shared handles, for a second console on the same ledger and daemon (engine tests).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) context: Arc<FaultContext>,
    /// The rig's console identity, held alive like a console's.
    _alive: crate::ledger::ConsoleLock,
    daemon: DaemonHandle,
    dir: PathBuf,
}

impl FaultRig {
    pub(crate) async fn start(dir: &Path, proxies: usize) -> Result<FaultRig, String> {
        std::fs::create_dir_all(dir).map_err(|err| format!("{}: {err}", dir.display()))?;
        // Upstream port 9 (discard) needs nothing listening: no traffic flows, only faults.
        let mut text = format!("[console]\nartifacts = {:?}\n", dir.display().to_string());
        for i in 0..proxies {
            text.push_str(&format!(
                "[[proxy]]\nname = \"p{i}\"\nlisten = \"127.0.0.1:0\"\nupstream = \"127.0.0.1:9\"\n"
            ));
        }
        let config = Arc::new(
            Config::from_text(&dir.join("gameday.toml"), &text).map_err(|err| err.to_string())?,
        );
        let ledger = Ledger::new(dir).map_err(|err| format!("fault ledger: {err}"))?;
        let daemon = Daemon::start(dir, DaemonOptions::default())
            .await
            .map_err(|err| format!("proxy daemon: {err}"))?;
        let listeners = crate::console::listener_set(&config);
        let client = match ProxyClient::attach(dir, &listeners, Duration::from_secs(30)).await {
            Ok(client) => Arc::new(client),
            Err(err) => {
                stop_daemon(daemon, dir).await;
                return Err(format!("attaching to the proxy daemon: {err}"));
            }
        };
        let context = Arc::new(FaultContext::new(config, Some(client.clone())));
        let (tx, reports) = mpsc::channel(256);
        let owner = crate::ledger::Owner::new("bench");
        let alive = ledger
            .hold(&owner)
            .map_err(|err| format!("console lock: {err}"))?;
        let (others, _) = tokio::sync::watch::channel(Vec::new());
        let engine = engine::spawn(context.clone(), ledger.clone(), owner, tx, others);
        Ok(FaultRig {
            engine,
            reports,
            ledger,
            client,
            context,
            _alive: alive,
            daemon,
            dir: dir.to_owned(),
        })
    }

    /// Injects a latency fault on every proxy and waits until all are applied.
    async fn inject_all(&mut self) -> Result<(), String> {
        for i in 0..ACTIVE_FAULTS {
            let spec = FaultSpec::Proxy {
                listener: format!("p{i}"),
                fault: Fault::Tcp(TcpFault::Latency {
                    latency: Duration::from_millis(100),
                    jitter: Duration::ZERO,
                    direction: Direction::Downstream,
                    probability: 1.0,
                }),
            };
            let cause = Cause::Key((i + 1).to_string());
            self.engine
                .inject(&format!("f{i}"), spec, Duration::from_secs(60), cause)
                .await;
        }
        let mut applied = 0;
        while applied < ACTIVE_FAULTS {
            let report = self.next_report().await?;
            match report.phase {
                FaultPhase::Applied => applied += 1,
                FaultPhase::Failed | FaultPhase::Refused => {
                    return Err(format!("injecting {}: {}", report.name, report.detail));
                }
                _ => {}
            }
        }
        self.expect_active(ACTIVE_FAULTS).await
    }

    /// Checks the daemon and the ledger agree that `count` faults are active.
    async fn expect_active(&self, count: usize) -> Result<(), String> {
        let in_daemon = self
            .client
            .status()
            .await
            .map_err(|err| format!("proxy daemon status: {err}"))?
            .faults
            .len();
        let in_ledger = self
            .ledger
            .entries()
            .map_err(|err| format!("fault ledger: {err}"))?
            .len();
        if (in_daemon, in_ledger) == (count, count) {
            Ok(())
        } else {
            Err(format!(
                "expected {count} active faults, the daemon has {in_daemon} and the ledger \
                 {in_ledger}"
            ))
        }
    }

    /// The next report, within the deadline.
    pub(crate) async fn next_report(&mut self) -> Result<FaultReport, String> {
        tokio::time::timeout(REPORT_DEADLINE, self.reports.recv())
            .await
            .map_err(|_| format!("no fault report within {REPORT_DEADLINE:?}"))?
            .ok_or_else(|| "the fault engine stopped".to_string())
    }

    pub(crate) async fn stop(self) {
        drop(self.engine);
        drop(self.client);
        stop_daemon(self.daemon, &self.dir).await;
    }
}

/// Starts a rig under `dir`, times `X` over a few rounds, and stops the daemon whatever
/// happened. The target is on the slowest round: each one is a keypress someone waits on.
pub async fn measure(dir: &Path, effort: Effort) -> Result<Vec<Row>, String> {
    let mut rig = match FaultRig::start(dir, ACTIVE_FAULTS).await {
        Ok(rig) => rig,
        Err(err) => {
            let _ = std::fs::remove_dir_all(dir);
            return Err(err);
        }
    };
    let rounds = effort.pick(20, 3);
    let timed = time_revert_all(&mut rig, rounds).await;
    rig.stop().await;
    let samples = timed?;
    Ok(vec![Row {
        name: format!("X reverting {ACTIVE_FAULTS} active faults, slowest"),
        figure: Figure::Time {
            took: samples.max(),
            budget: Some(REVERT_ALL_BUDGET),
        },
        context: vec![format!(
            "median {} over {rounds} rounds (proxy faults, ledger synced)",
            duration(samples.median())
        )],
    }])
}

async fn time_revert_all(rig: &mut FaultRig, rounds: usize) -> Result<Samples, String> {
    // The first round warms up the daemon connection and the ledger file.
    rig.inject_all().await?;
    rig.engine.revert_all(Cause::PanicKey).await;
    let mut samples = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        rig.inject_all().await?;
        let started = Instant::now();
        rig.engine.revert_all(Cause::PanicKey).await;
        samples.push(started.elapsed());
        rig.expect_active(0).await?;
    }
    Ok(Samples::new(samples))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_quick_run_reverts_all_nine_faults_each_round_and_cleans_up() {
        let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(".artifacts/test")
            .join(format!("bench-faults-{suffix}"));
        // Each round checks the daemon and the ledger hold nothing after `X`, or fails.
        let rows = measure(&dir, Effort::Quick).await.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].name, "X reverting 9 active faults, slowest");
        assert!(rows[0].met().is_some(), "judged against its 1 s target");
        assert!(!dir.exists(), "the rig removed {}", dir.display());
    }
}
