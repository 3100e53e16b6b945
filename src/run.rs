//! `gameday run SCENARIO`: a scenario without a terminal (CI, a deploy gate). The same app and
//! scenario machine as the console, minus the screen: progress lines on stdout, a summary of at
//! most ten lines, the report files, and an exit code: 0 pass, 1 fail, 3 aborted, 2 invalid input,
//! 4 a fault could not be reverted (it is still applied). Ctrl-C or SIGTERM aborts: every fault
//! is reverted and the report is still written. A run never waits forever: past the scenario's
//! planned length plus `--deadline-margin` it aborts. A proxy daemon it started is stopped once
//! its faults are reverted and the report written (`--keep-proxy` keeps it).

use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::mpsc;

use crate::app::{App, Event};
use crate::config::Config;
use crate::console::{self, Running, Signals, load_config};
use crate::report::{self, fmt_ms};
use crate::scenario::Scenario;
use crate::scenario::run::LiveCheck;
use crate::session;
use crate::state::Session;
use crate::timeline::{CheckGroup, Verdict, fmt_value};

pub const EXIT_FAIL: u8 = 1;
pub const EXIT_ABORTED: u8 = 3;
/// Lines the closing summary may take.
pub const SUMMARY_LINES: usize = 10;

#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// The scenario file.
    pub scenario: PathBuf,
    /// Config file (default: ./gameday.toml, then the user's config dir).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Also write a JUnit XML file here (one test case per check).
    #[arg(long)]
    pub junit: Option<PathBuf>,
    /// Session name (default: a timestamp).
    #[arg(long)]
    pub session: Option<String>,
    /// Abort once the run takes this much longer than the scenario's plan (e.g. "2m").
    #[arg(long, value_parser = humantime::parse_duration, default_value = "2m")]
    pub deadline_margin: Duration,
    /// Leave a proxy daemon this run started running afterwards.
    #[arg(long)]
    pub keep_proxy: bool,
    /// Run against a config marked `production = true`.
    #[arg(long)]
    pub allow_production: bool,
    /// Resolve every step's targets and print the blast radius; touch nothing (exit 1 when a
    /// target is unreachable or ambiguous).
    #[arg(long)]
    pub dry_run: bool,
}

pub fn main(args: RunArgs) -> ExitCode {
    // Everything that can be wrong with the input is found before anything starts.
    let config = match load_config(args.config.as_deref()) {
        Ok(c) => Arc::new(c),
        Err(code) => return code,
    };
    let scenario = match Scenario::load(&args.scenario, &config) {
        Ok(s) => s,
        Err(e) => return console::invalid(e),
    };
    if args.dry_run {
        return crate::dry_run::scenario_main(config, &scenario);
    }
    if config.console.production && !args.allow_production {
        return console::invalid(format!(
            "{}: {} is marked production (console.production = true); add --allow-production to run scenarios against it",
            config.file.display(),
            config.console.environment_label()
        ));
    }
    if let Some(name) = &args.session
        && let Err(e) = session::check_name(name)
    {
        return console::invalid(e);
    }
    let (name, dir) = match session::create_dir(&config.console.artifacts, args.session.as_deref())
    {
        Ok(x) => x,
        Err(e) => {
            eprintln!("gameday: cannot create the session directory: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) =
        crate::logging::to_file_redacted(&dir.join("console.log"), config.redactor().clone())
    {
        eprintln!("gameday: cannot open the log file: {e}");
        return ExitCode::FAILURE;
    }
    let runtime = match crate::console::runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let session = Session {
        name,
        dir,
        started: chrono::Utc::now(),
    };
    let deadline = scenario.planned_length() + args.deadline_margin;
    let outcome = runtime.block_on(run(config, session, &args, &scenario.title, deadline));
    runtime.shutdown_timeout(Duration::from_secs(2));
    match outcome {
        Ok((verdict, unreverted, summary)) => {
            for line in summary {
                console::say_out(&line);
            }
            if unreverted > 0 {
                return ExitCode::from(console::EXIT_UNREVERTED);
            }
            match verdict {
                Some(Verdict::Pass) => ExitCode::SUCCESS,
                Some(Verdict::Fail) => ExitCode::from(EXIT_FAIL),
                Some(Verdict::Aborted) | None => ExitCode::from(EXIT_ABORTED),
            }
        }
        Err(e) => {
            console::say(&format!("gameday: {e}"));
            ExitCode::FAILURE
        }
    }
}

async fn run(
    config: Arc<Config>,
    session: Session,
    args: &RunArgs,
    title: &str,
    deadline: Duration,
) -> Result<(Option<Verdict>, usize, Vec<String>), String> {
    let scenario = args.scenario.as_path();
    let junit = args.junit.as_deref();
    println!(
        "gameday run: {title} (session {}, {})",
        session.name,
        session.dir.display()
    );
    let theme = config.console.theme.clone();
    let mut running = console::start(config, session, theme, args.allow_production).await?;
    running.app.start_scenario(scenario);
    let mut seen = 0;
    let outcome = AssertUnwindSafe(progress_loop(&mut running, &mut seen, deadline))
        .catch_unwind()
        .await;
    let reason = match (&outcome, running.app.quit_reason()) {
        (Ok(Ok(())), None) => "scenario finished".to_string(),
        _ => console::quit_reason(outcome, &running.app),
    };
    let stop_proxy = running.started_proxy && !args.keep_proxy;
    let proxy = running.proxy.clone();
    let stopped = running.stop(&reason).await?;
    // The data path outlives a crashed run, not a finished one: a CI job leaves no daemon.
    if let Some(client) = proxy.filter(|_| stop_proxy && stopped.unreverted == 0) {
        let dir = stopped.app.state.config.console.artifacts.clone();
        drop(client);
        if let Err(e) = crate::proxy::stop_daemon(&dir, Duration::from_secs(5)).await {
            tracing::warn!("cannot stop the proxy daemon this run started: {e}");
        }
    }
    // What the way out recorded (reverts, the end) is progress too.
    print_events(&stopped.app, seen);
    let mut files = stopped.files.clone();
    if let Some(path) = junit {
        let events =
            crate::timeline::read(&stopped.app.timeline_path()).map_err(|e| e.to_string())?;
        report::write_junit(&report::Report::build(&events), path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        files.push(path.to_path_buf());
    }
    let run = stopped.app.state.scenario.as_ref();
    let verdict = run.and_then(|r| r.verdict.clone());
    let checks: Vec<&LiveCheck> = run.map(|r| r.checks.iter().collect()).unwrap_or_default();
    Ok((
        verdict.as_ref().map(|v| v.0),
        stopped.unreverted,
        summary(
            title,
            verdict.as_ref(),
            &checks,
            &files,
            stopped.unreverted,
            stopped.guard_pid,
        ),
    ))
}

/// Prints every timeline event as it happens until the scenario has a verdict and nothing is
/// left applied (or a signal interrupts).
async fn progress_loop(r: &mut Running, seen: &mut u64, deadline: Duration) -> Result<(), String> {
    let mut signals = Signals::new()?;
    let give_up = tokio::time::sleep(deadline);
    tokio::pin!(give_up);
    let mut tick = tokio::time::interval(r.config.sample_interval().min(Duration::from_secs(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let (background_tx, _background_rx) = mpsc::channel(1);
    loop {
        tokio::select! {
            Some(ev) = r.source_rx.recv() => {
                r.app.handle(Event::Source(ev));
                while let Ok(ev) = r.source_rx.try_recv() {
                    r.app.handle(Event::Source(ev));
                }
            }
            Some(report) = r.report_rx.recv() => r.app.handle(Event::Fault(report)),
            Some(done) = r.source_tasks.join_next(), if !r.source_tasks.is_empty() => console::watch_source_task(&mut r.app, done),
            name = signals.next() => r.app.handle(Event::Signal(name)),
            _ = tick.tick() => {
                r.app.handle(Event::Tick);
                r.keep_guarded().await;
            }
            () = &mut give_up => r.app.request_quit(format!(
                "the run took longer than its plan plus margin ({})",
                humantime::format_duration(deadline)
            )),
        }
        r.run_effects(&background_tx);
        *seen = print_events(&r.app, *seen);
        if r.app.quit_reason().is_some() {
            return Ok(());
        }
        // Done once there is a verdict and nothing is on its way in or out; a fault whose revert
        // failed is left to the way out (retried there, then handed to the dead-man agent).
        let settling = r
            .app
            .state
            .faults
            .active
            .iter()
            .any(|a| a.phase != crate::state::ActivePhase::Failed);
        if r.app.scenario_verdict().is_some() && !settling {
            return Ok(());
        }
    }
}

/// Prints the timeline events recorded since `seen`; returns the new count.
fn print_events(app: &App, seen: u64) -> u64 {
    let (events, now) = app.events_since(seen);
    for e in events {
        if let Some(text) = e.kind.summary() {
            println!("[{:>7}] {text}", format!("+{}", fmt_ms(e.offset_ms)));
        }
    }
    now
}

/// The closing summary: a one-line verdict, the key results with measured values, the report
/// files and the status — never more than [`SUMMARY_LINES`].
pub fn summary(
    title: &str,
    verdict: Option<&(Verdict, String)>,
    checks: &[&LiveCheck],
    files: &[PathBuf],
    unreverted: usize,
    guard_pid: Option<u32>,
) -> Vec<String> {
    let (mark, label, reason) = match verdict {
        Some((Verdict::Pass, r)) => ("✅", "Pass", r.as_str()),
        Some((Verdict::Fail, r)) => ("❌", "Fail", r.as_str()),
        Some((Verdict::Aborted, r)) => ("❌", "Aborted", r.as_str()),
        None => ("❌", "Aborted", "the run ended before a verdict"),
    };
    let mut lines = vec![format!("{mark} {title}: {label} — {reason}")];
    let mut fixed_tail = vec![
        format!("Report: {}", console::file_list(files)),
        format!("Status: {label}"),
    ];
    if unreverted > 0 {
        fixed_tail.insert(0, console::unreverted_line(unreverted, guard_pid));
    }
    let room = SUMMARY_LINES - lines.len() - fixed_tail.len();
    // Failed checks first: they are what someone reading a CI log needs.
    let mut ordered: Vec<&&LiveCheck> = checks.iter().filter(|c| c.passed.is_some()).collect();
    ordered.sort_by_key(|c| (c.passed == Some(true), c.group));
    let shown = if ordered.len() > room {
        room - 1
    } else {
        ordered.len()
    };
    for c in &ordered[..shown] {
        lines.push(check_line(c));
    }
    if ordered.len() > shown {
        let rest = &ordered[shown..];
        let failed = rest.iter().filter(|c| c.passed != Some(true)).count();
        lines.push(format!(
            "  … {} more check(s), {failed} failed (see the report)",
            rest.len()
        ));
    }
    lines.extend(fixed_tail);
    lines
}

fn check_line(c: &LiveCheck) -> String {
    let mark = if c.passed == Some(true) { "✅" } else { "❌" };
    let measured = c.value.map_or_else(
        || "no data".to_string(),
        |v| format!("measured {}", fmt_value(v)),
    );
    let group = match c.group {
        CheckGroup::Baseline => "baseline",
        CheckGroup::During => "during",
        CheckGroup::Recovery => "recovery",
        CheckGroup::Abort => "abort",
    };
    let recovered = c
        .recovered_after_ms
        .map(|ms| format!(", recovered after {}", fmt_ms(ms)))
        .unwrap_or_default();
    format!(
        "  {mark} {group}: {} ({}, {measured}{recovered})",
        c.check.name,
        c.check.expected()
    )
}
