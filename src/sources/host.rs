//! The host source: CPU and memory use of the machine the console runs on, in percent.
//!
//! sysinfo's refreshes read /proc synchronously, so they run on the blocking pool. CPU use is the
//! change between two refreshes, which need at least `MINIMUM_CPU_UPDATE_INTERVAL` between them;
//! the first round therefore primes the counters and waits that long before its first reading.

use std::time::Duration;

use sysinfo::{MINIMUM_CPU_UPDATE_INTERVAL, System};
use tokio_util::sync::CancellationToken;

use super::spawn::{Reading, Reporter, Sampler, every, seconds};
use super::{SourceId, SourceStatus, SourceTx};

/// A refresh that takes longer than this means the host is badly overloaded; report it.
const REFRESH_DEADLINE: Duration = Duration::from_secs(2);

/// Samples the host every `interval` (at least `MINIMUM_CPU_UPDATE_INTERVAL`) until `cancel`.
pub async fn run(interval: Duration, tx: SourceTx, cancel: CancellationToken) {
    let mut reporter = Reporter::new(SourceId::host(), tx, cancel.clone());
    if !reporter.status(SourceStatus::Connecting).await {
        return;
    }
    let mut sampler = HostSampler { system: None };
    every(
        interval.max(MINIMUM_CPU_UPDATE_INTERVAL),
        &mut reporter,
        cancel,
        &mut sampler,
    )
    .await;
}

impl Sampler for HostSampler {
    async fn read(&mut self) -> Reading {
        self.round().await
    }
}

struct HostSampler {
    /// Owned by the blocking refresh while it runs; `None` before the first round or after a
    /// refresh that missed its deadline.
    system: Option<System>,
}

impl HostSampler {
    async fn round(&mut self) -> Reading {
        let system = self.system.take();
        let refresh = tokio::task::spawn_blocking(move || refresh(system));
        match tokio::time::timeout(REFRESH_DEADLINE, refresh).await {
            Ok(Ok(Ok((system, cpu, mem)))) => {
                self.system = Some(system);
                Reading::Up {
                    values: vec![("host.cpu".into(), cpu), ("host.mem".into(), mem)],
                    notes: Vec::new(),
                }
            }
            Ok(Ok(Err(e))) => Reading::Down {
                reason: format!("cannot read host statistics: {e}"),
                values: Vec::new(),
            },
            Ok(Err(join)) => Reading::Down {
                reason: format!("host statistics reader failed: {join}"),
                values: Vec::new(),
            },
            Err(_) => Reading::Down {
                reason: format!(
                    "host statistics took longer than {}",
                    seconds(REFRESH_DEADLINE)
                ),
                values: Vec::new(),
            },
        }
    }
}

/// Refreshes CPU and memory; a new `System` is primed first so its CPU reading is meaningful.
fn refresh(system: Option<System>) -> Result<(System, f64, f64), sysinfo::Error> {
    let mut system = match system {
        Some(system) => system,
        None => {
            let mut fresh = System::new()?;
            fresh.refresh_cpu_usage();
            std::thread::sleep(MINIMUM_CPU_UPDATE_INTERVAL);
            fresh
        }
    };
    system.refresh_cpu_usage();
    system.refresh_memory();
    let cpu = f64::from(system.global_cpu_usage()).clamp(0.0, 100.0);
    let total = system.total_memory();
    let mem = if total == 0 {
        0.0
    } else {
        (system.used_memory() as f64 / total as f64 * 100.0).clamp(0.0, 100.0)
    };
    Ok((system, cpu, mem))
}

#[cfg(test)]
mod tests {
    use tokio::sync::mpsc;

    use super::*;
    use crate::sources::CHANNEL_CAPACITY;
    use crate::sources::spawn::testing::Watch;

    #[tokio::test]
    async fn cpu_and_memory_are_percentages() {
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let cancel = CancellationToken::new();
        let task = tokio::spawn(run(Duration::from_millis(250), tx, cancel.clone()));
        let mut watch = Watch::new(rx);
        watch
            .until(Duration::from_secs(10), "two host readings", |w| {
                w.is_up() && w.value("host.cpu").is_some() && w.statuses.len() == 2
            })
            .await;
        for key in ["host.cpu", "host.mem"] {
            let value = watch.value(key).unwrap();
            assert!((0.0..=100.0).contains(&value), "{key} = {value}");
        }
        assert!(
            watch.value("host.mem").unwrap() > 0.0,
            "a running machine uses memory"
        );
        assert_eq!(
            watch.statuses,
            vec![SourceStatus::Connecting, SourceStatus::Up]
        );
        cancel.cancel();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the source stops when cancelled")
            .unwrap();
    }
}
