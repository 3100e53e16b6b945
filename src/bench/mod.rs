//! `gameday bench`: the performance targets measured on this machine, each figure printed next
//! to its target as a ratio. It measures; it does not judge the machine: the exit code is 0 even
//! when a target is missed, and 1 only when a measurement could not run at all.
//!
//! The workloads live here, not in the criterion benches, so `benches/render.rs`,
//! `benches/proxy.rs` and this command measure the same thing.

pub mod faults;
pub mod network;
pub mod render;
pub mod replay;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use tokio::runtime::Runtime;

#[derive(Debug, Clone, Default, clap::Args)]
pub struct BenchArgs {
    /// Far fewer iterations: a few seconds instead of up to ~30, rougher figures.
    #[arg(long)]
    pub quick: bool,
    /// Only these measurements (render, replay, network, faults); default: all.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
}

/// How many iterations each measurement runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effort {
    Quick,
    Full,
}

impl Effort {
    /// Picks the count for this effort.
    pub fn pick(self, full: usize, quick: usize) -> usize {
        match self {
            Effort::Full => full,
            Effort::Quick => quick,
        }
    }
}

/// The durations of one operation, repeated; sorted so quantiles are read off directly.
#[derive(Debug, Clone)]
pub struct Samples(Vec<Duration>);

impl Samples {
    pub fn new(mut samples: Vec<Duration>) -> Samples {
        assert!(
            !samples.is_empty(),
            "a measurement needs at least one sample"
        );
        samples.sort_unstable();
        Samples(samples)
    }

    /// Nearest-rank quantile: the smallest sample at or above `q` of them.
    pub fn quantile(&self, q: f64) -> Duration {
        let rank = (q * self.0.len() as f64).ceil() as usize;
        self.0[rank.clamp(1, self.0.len()) - 1]
    }

    pub fn median(&self) -> Duration {
        self.quantile(0.5)
    }

    pub fn p99(&self) -> Duration {
        self.quantile(0.99)
    }

    pub fn max(&self) -> Duration {
        self.0[self.0.len() - 1]
    }
}

/// What one row reports.
#[derive(Debug, Clone, PartialEq)]
pub enum Figure {
    /// A time (a frame, added latency, a revert) and the budget it must stay under, if it has one.
    Time {
        took: Duration,
        budget: Option<Duration>,
    },
    /// A throughput, the share of the direct connection it reached, and the share it must reach.
    Throughput {
        bytes_per_sec: f64,
        share: f64,
        required_share: f64,
    },
}

/// One line of the table, with indented context lines under it.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub name: String,
    pub figure: Figure,
    pub context: Vec<String>,
}

impl Row {
    /// Whether the figure meets its target; `None` when it is reported without one.
    pub fn met(&self) -> Option<bool> {
        match self.figure {
            Figure::Time { took, budget } => budget.map(|budget| took < budget),
            Figure::Throughput {
                share,
                required_share,
                ..
            } => Some(share >= required_share),
        }
    }

    fn measured(&self) -> String {
        match self.figure {
            Figure::Time { took, .. } => duration(took),
            Figure::Throughput { bytes_per_sec, .. } => format!("{:.0} MB/s", bytes_per_sec / 1e6),
        }
    }

    fn target(&self) -> String {
        match self.figure {
            Figure::Time {
                budget: Some(budget),
                ..
            } => format!("< {}", round_duration(budget)),
            Figure::Time { budget: None, .. } => "(reported)".into(),
            Figure::Throughput { required_share, .. } => format!("≥ {required_share:.2} direct"),
        }
    }

    fn ratio(&self) -> String {
        match self.figure {
            Figure::Time {
                took,
                budget: Some(budget),
            } => format!("{:.2} of budget", took.as_secs_f64() / budget.as_secs_f64()),
            Figure::Time { budget: None, .. } => String::new(),
            Figure::Throughput { share, .. } => format!("{share:.2} of direct"),
        }
    }

    /// "name (measured, target …)" for the summary of missed targets.
    fn missed_summary(&self) -> String {
        format!("{} ({}, target {})", self.name, self.ratio(), self.target())
    }
}

/// The rows as an aligned table, then one line saying which targets were missed.
pub fn table(rows: &[Row]) -> String {
    let header = ["measurement", "measured", "target", "ratio", ""];
    let cells: Vec<[String; 5]> = rows
        .iter()
        .map(|row| {
            let verdict = match row.met() {
                Some(true) => "✔",
                Some(false) => "✖",
                None => "",
            };
            [
                row.name.clone(),
                row.measured(),
                row.target(),
                row.ratio(),
                verdict.to_string(),
            ]
        })
        .collect();
    let mut widths = header.map(|title| title.chars().count());
    for line in &cells {
        for (width, cell) in widths.iter_mut().zip(line) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let aligned = |cells: &[&str]| {
        let mut line = String::from(" ");
        for (cell, width) in cells.iter().zip(widths) {
            let pad = width.saturating_sub(cell.chars().count());
            let _ = write!(line, " {cell}{:pad$} ", "");
        }
        line.trim_end().to_string()
    };
    let mut out = aligned(&header) + "\n";
    for (row, line) in rows.iter().zip(&cells) {
        out += &aligned(&line.each_ref().map(String::as_str));
        out.push('\n');
        for context in &row.context {
            let _ = writeln!(out, "      {context}");
        }
    }
    let targets = rows.iter().filter(|row| row.met().is_some()).count();
    let missed: Vec<String> = rows
        .iter()
        .filter(|row| row.met() == Some(false))
        .map(Row::missed_summary)
        .collect();
    out.push('\n');
    if missed.is_empty() {
        let _ = writeln!(out, "All {targets} targets met.");
    } else {
        let _ = writeln!(
            out,
            "Missed {} of {targets} targets: {}.",
            missed.len(),
            missed.join("; ")
        );
    }
    out
}

/// "812 µs", "1.62 ms", "1.20 s".
pub fn duration(duration: Duration) -> String {
    let micros = duration.as_secs_f64() * 1e6;
    if micros < 1_000.0 {
        format!("{micros:.1} µs")
    } else if micros < 1_000_000.0 {
        format!("{:.2} ms", micros / 1e3)
    } else {
        format!("{:.2} s", micros / 1e6)
    }
}

/// A budget as it is stated: "100 µs", "2 ms", "1 s".
fn round_duration(budget: Duration) -> String {
    let text = duration(budget);
    let (number, unit) = text.split_once(' ').unwrap_or((&text, ""));
    let number = if number.contains('.') {
        number.trim_end_matches('0').trim_end_matches('.')
    } else {
        number
    };
    format!("{number} {unit}")
}

/// The multi-thread runtime the network and fault measurements run on.
pub fn runtime() -> std::io::Result<Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

/// Stops a rig's in-process proxy daemon and removes the rig's directory.
async fn stop_daemon(daemon: crate::proxy::DaemonHandle, dir: &Path) {
    daemon.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

/// A fresh directory name under `<artifacts>/bench/` for one rig.
pub fn scratch_dir(artifacts: &Path, name: &str) -> PathBuf {
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
    artifacts.join("bench").join(format!("{name}-{suffix}"))
}

/// `gameday bench [--quick]`.
pub fn main(args: BenchArgs) -> ExitCode {
    let effort = if args.quick {
        Effort::Quick
    } else {
        Effort::Full
    };
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    println!(
        "gameday bench ({}): {cores} cores, {}, everything on 127.0.0.1",
        if args.quick { "quick" } else { "full" },
        if cfg!(debug_assertions) {
            "debug build (figures are far slower than a release build's)"
        } else {
            "release build"
        }
    );
    let artifacts = Path::new(".artifacts");
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    let mut take = |what: &str, result: Result<Vec<Row>, String>| match result {
        Ok(measured) => rows.extend(measured),
        Err(err) => failures.push(format!("{what}: {err}")),
    };
    let wanted = |name: &str| args.only.is_empty() || args.only.iter().any(|o| o == name);
    if wanted("render") {
        take("render", render::measure(effort));
    }
    if wanted("replay") {
        take(
            "replay",
            replay::measure(&scratch_dir(artifacts, "replay"), effort),
        );
    }
    if wanted("network") || wanted("faults") {
        match runtime() {
            Ok(runtime) => {
                if wanted("network") {
                    take(
                        "network",
                        runtime.block_on(network::measure_in(
                            &scratch_dir(artifacts, "network"),
                            effort,
                        )),
                    );
                }
                if wanted("faults") {
                    take(
                        "faults",
                        runtime
                            .block_on(faults::measure(&scratch_dir(artifacts, "faults"), effort)),
                    );
                }
            }
            Err(err) => failures.push(format!("tokio runtime: {err}")),
        }
    }
    // Each rig removed its own directory; drop the parent too when nothing else is in it.
    let _ = std::fs::remove_dir(artifacts.join("bench"));
    println!();
    print!("{}", table(&rows));
    if failures.is_empty() {
        return ExitCode::SUCCESS;
    }
    for failure in &failures {
        eprintln!("could not measure {failure}");
    }
    ExitCode::FAILURE
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time_row(name: &str, took_us: u64, budget_us: Option<u64>) -> Row {
        Row {
            name: name.into(),
            figure: Figure::Time {
                took: Duration::from_micros(took_us),
                budget: budget_us.map(Duration::from_micros),
            },
            context: Vec::new(),
        }
    }

    #[test]
    fn the_table_puts_each_figure_next_to_its_target_and_names_the_missed_ones() {
        let rows = vec![
            time_row("render frame p50", 820, Some(2_000)),
            time_row("added p99", 64, None),
            Row {
                name: "bulk throughput".into(),
                figure: Figure::Throughput {
                    bytes_per_sec: 1.18e9,
                    share: 0.54,
                    required_share: 0.9,
                },
                context: vec!["plain pipe: 0.57 of direct".into()],
            },
        ];
        let table = table(&rows);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines,
            [
                "  measurement       measured   target         ratio",
                "  render frame p50  820.0 µs   < 2 ms         0.41 of budget  ✔",
                "  added p99         64.0 µs    (reported)",
                "  bulk throughput   1180 MB/s  ≥ 0.90 direct  0.54 of direct  ✖",
                "      plain pipe: 0.57 of direct",
                "",
                "Missed 1 of 2 targets: bulk throughput (0.54 of direct, target ≥ 0.90 direct).",
            ]
        );
    }

    #[test]
    fn quantiles_come_from_the_sorted_samples() {
        let samples = Samples::new((1..=100).rev().map(Duration::from_millis).collect());
        assert_eq!(samples.median(), Duration::from_millis(50));
        assert_eq!(samples.p99(), Duration::from_millis(99));
        assert_eq!(samples.max(), Duration::from_millis(100));
        let one = Samples::new(vec![Duration::from_millis(7)]);
        assert_eq!(
            (one.median(), one.p99()),
            (Duration::from_millis(7), Duration::from_millis(7))
        );
    }
}
