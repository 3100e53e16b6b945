//! `gameday console`: wires config, sources, the proxy daemon, the fault engine, the dead-man
//! agent, the app and the terminal into one event loop, and guarantees the way out: every fault
//! is reverted, then the report written, on quit, Ctrl-C, SIGTERM, a hangup (terminal gone:
//! every write to it fails, and none of those failures may stop the reverts) and panic. A
//! console that dies anyway (SIGKILL, OOM) or stops answering is covered by its dead-man agent
//! (`guard`), and after that by the next start or `gameday recover`.

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use crossterm::event::{Event as TermEvent, EventStream};
use futures::{FutureExt, StreamExt};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::app::{App, Effect, Event};
use crate::cli::ConsoleArgs;
use crate::config::Config;
use crate::faults::engine::{self, EngineHandle, FaultReport, ForeignFault};
use crate::faults::recovery::{describe_entry, revert_entries};
use crate::faults::{self, FaultContext};
use crate::guard::Guard;
use crate::ledger::{ConsoleLock, Ledger, LedgerEntry, Owner};
use crate::proxy::{AttachOptions, ListenerSet, ProxyClient, TcpListenerSpec, WebhookListenerSpec};
use crate::report;
use crate::session;
use crate::sources::{self, SourceEvent, SourceId, SourceStatus};
use crate::state::Session;
use crate::terminal::TerminalGuard;
use crate::theme::{self, Theme};
use crate::timeline::{Cause, Driver, EventKind, FaultPhase, Timeline};

/// A console that stops heartbeating loses its proxy faults this long after.
pub const PROXY_LEASE: Duration = Duration::from_secs(3);
/// Longest the way out may spend reverting faults.
/// (Restarting a terminated process may take up to 30 s plus the escalation.)
const QUIT_REVERT_DEADLINE: Duration = Duration::from_secs(40);

/// Exit codes shared by the commands.
pub const EXIT_INVALID_INPUT: u8 = 2;
/// Something could not be reverted: it is still applied (and in the ledger).
pub const EXIT_UNREVERTED: u8 = 4;
/// Test hook: `key:<char>` panics when that key is pressed, `exit` panics on the way out after
/// the reverts started. Lets the safety tests end a console by a real panic.
pub const TEST_PANIC_ENV: &str = "GAMEDAY_TEST_PANIC";

/// Everything the console needs before the runtime starts: checked input, a session directory
/// and the log file. Bad input is reported here (exit code 2) and nothing starts.
pub struct Prepared {
    pub config: Arc<Config>,
    /// `--allow-production`.
    pub allow_production: bool,
    pub session: Session,
    pub theme: Theme,
    /// Whether the proxy daemon outlives this console (the demo stops it itself).
    pub proxy_outlives: bool,
}

pub fn prepare(args: &ConsoleArgs) -> Result<Prepared, ExitCode> {
    let config = load_config(args.config.as_deref())?;
    let theme_name = args
        .theme
        .clone()
        .unwrap_or_else(|| config.console.theme.clone());
    let theme = Theme::load(&theme_name, &config.console.themes).map_err(invalid)?;
    if let Some(name) = &args.session {
        session::check_name(name).map_err(invalid)?;
    }
    // Input first (its errors are the useful ones), then the terminal, then anything on disk.
    require_terminal()?;
    let (name, dir) = session::create_dir(&config.console.artifacts, args.session.as_deref())
        .map_err(|e| {
            eprintln!(
                "gameday: cannot create the session directory under {}: {e}",
                config.console.artifacts.display()
            );
            ExitCode::FAILURE
        })?;
    crate::logging::to_file_redacted(&dir.join("console.log"), config.redactor().clone()).map_err(
        |e| {
            eprintln!("gameday: cannot open the log file: {e}");
            ExitCode::FAILURE
        },
    )?;
    let session = Session {
        name,
        dir,
        started: chrono::Utc::now(),
    };
    Ok(Prepared {
        allow_production: args.allow_production,
        config: Arc::new(config),
        session,
        theme,
        proxy_outlives: true,
    })
}

pub fn main(args: ConsoleArgs) -> ExitCode {
    let prepared = match prepare(&args) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let runtime = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let outcome = runtime.block_on(run(prepared));
    // Background tasks (sources, subscriptions) end with the runtime.
    runtime.shutdown_timeout(Duration::from_secs(2));
    finish(outcome)
}

/// What a console session ended with: the closing lines and whether anything stayed applied.
pub struct Closing {
    pub summary: Vec<String>,
    pub unreverted: usize,
}

/// Prints the closing summary (after the terminal is restored) and picks the exit code. The
/// terminal may be gone (a hangup): printing then fails, silently, and changes nothing.
pub fn finish(outcome: Result<Closing, String>) -> ExitCode {
    match outcome {
        Ok(closing) => {
            for line in &closing.summary {
                say_out(line);
            }
            if closing.unreverted > 0 {
                ExitCode::from(EXIT_UNREVERTED)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            say(&format!("gameday: {e}"));
            ExitCode::FAILURE
        }
    }
}

/// A line on stderr that may go nowhere: unlike `eprintln!`, never panics on a dead terminal.
pub fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// A line on stdout that may go nowhere.
pub fn say_out(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout(), "{line}");
}

/// The console draws on a terminal; without one (a pipe, CI) say what to use instead.
pub fn require_terminal() -> Result<(), ExitCode> {
    use std::io::IsTerminal;
    if std::io::stdout().is_terminal() && std::io::stdin().is_terminal() {
        Ok(())
    } else {
        Err(invalid(
            "the console needs a terminal; without one use `gameday run SCENARIO` or `gameday snapshot`",
        ))
    }
}

/// The multi-thread runtime every command runs on, or the one-line reason it could not start.
pub fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("gameday: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        })
}

/// Loads the config or prints the one-line error (exit code 2).
pub fn load_config(explicit: Option<&Path>) -> Result<Config, ExitCode> {
    let path = crate::config::locate(explicit).map_err(invalid)?;
    Config::load(&path).map_err(invalid)
}

pub fn invalid(e: impl std::fmt::Display) -> ExitCode {
    say(&format!("gameday: {e}"));
    ExitCode::from(EXIT_INVALID_INPUT)
}

/// The proxy daemon's listeners for this config.
pub fn listener_set(config: &Config) -> ListenerSet {
    ListenerSet {
        tcp: config
            .proxies
            .iter()
            .map(|p| TcpListenerSpec {
                name: p.name.clone(),
                listen: p.listen,
                upstream: p.upstream.clone(),
            })
            .collect(),
        webhooks: config
            .webhooks
            .iter()
            .map(|w| WebhookListenerSpec {
                name: w.name.clone(),
                listen: w.listen,
                upstream: w.upstream.clone(),
                timeout: w.timeout.get(),
                ca_file: w.ca_file.clone(),
            })
            .collect(),
    }
}

/// Attaches console `owner` to (or starts) the proxy daemon when the config has listeners.
/// Returns the client and whether this call started the daemon.
pub async fn attach_proxy(
    config: &Config,
    owner: &Owner,
) -> Result<Option<(Arc<ProxyClient>, bool)>, String> {
    let listeners = listener_set(config);
    if listeners.tcp.is_empty() && listeners.webhooks.is_empty() {
        return Ok(None);
    }
    let mut options = AttachOptions::new(PROXY_LEASE);
    options.owner = Some(owner.id.clone());
    let client = ProxyClient::attach_with(&config.console.artifacts, &listeners, options)
        .await
        .map_err(|e| format!("proxy daemon: {e}"))?;
    let started = client.started_daemon();
    Ok(Some((Arc::new(client), started)))
}

/// Looks at the proxy daemon without attaching: no lease, no listener change, no daemon
/// started. What read-only commands use.
pub async fn observe_proxy(config: &Config) -> Result<Option<Arc<ProxyClient>>, String> {
    if config.proxies.is_empty() && config.webhooks.is_empty() {
        return Ok(None);
    }
    ProxyClient::observe(&config.console.artifacts)
        .await
        .map(|c| c.map(Arc::new))
        .map_err(|e| format!("proxy daemon: {e}"))
}

/// Reverts what consoles that are gone left in the ledger, one result per entry. An unreadable
/// ledger is an error, never "nothing to recover".
pub async fn recover(
    ctx: &FaultContext,
    ledger: &Ledger,
) -> Result<Vec<(LedgerEntry, Result<(), String>)>, String> {
    let orphans = ledger.orphans().map_err(|e| format!("fault ledger: {e}"))?;
    Ok(revert_entries(ctx, ledger, orphans).await)
}

/// `gameday recover`: what a new console does at start, without the console.
pub fn recover_main(config_path: Option<&Path>) -> ExitCode {
    let config = match load_config(config_path) {
        Ok(c) => Arc::new(c),
        Err(code) => return code,
    };
    let runtime = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    runtime.block_on(async {
        let ledger = match Ledger::new(&config.console.artifacts) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("gameday: ledger: {e}");
                return ExitCode::FAILURE;
            }
        };
        // Reverts go to the daemon by fault id; recovering never attaches or reconfigures it.
        let ctx = FaultContext::new(config.clone(), None);
        let results = match recover(&ctx, &ledger).await {
            Ok(results) => results,
            Err(e) => {
                eprintln!("gameday: {e}");
                return ExitCode::FAILURE;
            }
        };
        if results.is_empty() {
            println!("nothing to recover: the fault ledger lists no fault of a stopped console");
            return ExitCode::SUCCESS;
        }
        let mut failed = 0;
        for (entry, result) in &results {
            match result {
                Ok(()) => println!("reverted {}", describe_entry(entry)),
                Err(e) => {
                    failed += 1;
                    println!("FAILED to revert {}: {e}", describe_entry(entry));
                }
            }
        }
        if failed == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(EXIT_UNREVERTED)
        }
    })
}

/// A started session: the app and everything feeding it.
pub(crate) struct Running {
    pub(crate) app: App,
    pub(crate) config: Arc<Config>,
    pub(crate) session: Session,
    pub(crate) owner: Owner,
    pub(crate) proxy: Option<Arc<ProxyClient>>,
    /// This session started the proxy daemon (a headless run stops it again).
    pub(crate) started_proxy: bool,
    pub(crate) engine: EngineHandle,
    /// What faults act with, for dry runs from the screen.
    pub(crate) ctx: Arc<FaultContext>,
    pub(crate) source_rx: mpsc::Receiver<SourceEvent>,
    pub(crate) report_rx: mpsc::Receiver<FaultReport>,
    pub(crate) others_rx: tokio::sync::watch::Receiver<Vec<ForeignFault>>,
    pub(crate) source_tasks: tokio::task::JoinSet<()>,
    pub(crate) cancel: CancellationToken,
    /// Held for the session's life: other processes read it as "this console is alive".
    pub(crate) _alive: ConsoleLock,
    pub(crate) guard: Option<Guard>,
}

/// What a session left behind.
pub(crate) struct Stopped {
    pub(crate) app: App,
    pub(crate) files: Vec<PathBuf>,
    /// Faults whose revert failed (still in the ledger, handed to the dead-man agent).
    pub(crate) unreverted: usize,
    pub(crate) guard_pid: Option<u32>,
}

/// Attaches the proxy daemon, recovers a killed console's faults, starts the sources and the
/// fault engine, and creates the app (writing the session's first timeline lines).
pub(crate) async fn start(
    config: Arc<Config>,
    session: Session,
    theme_name: String,
    allow_production: bool,
) -> Result<Running, String> {
    let artifacts = config.console.artifacts.clone();
    let ledger = Ledger::new(&artifacts).map_err(|e| format!("ledger: {e}"))?;
    // Who we are, and proof we are alive, before anything can be injected.
    let owner = Owner::new(&session.name);
    let alive = ledger
        .hold(&owner)
        .map_err(|e| format!("console lock: {e}"))?;
    let guard = Guard::start(&config, &owner.id, &session.dir, PROXY_LEASE).await?;
    let mut notices = Vec::new();
    let (proxy, started_proxy) = match attach_proxy(&config, &owner).await {
        Ok(Some((p, started))) => (Some(p), started),
        Ok(None) => (None, false),
        Err(e) => {
            notices.push(format!("network and webhook faults unavailable: {e}"));
            (None, false)
        }
    };
    if let Some(client) = &proxy {
        notices.extend(
            client
                .configure_report()
                .failures()
                .into_iter()
                .map(|f| format!("listener {f}")),
        );
    }
    let mut ctx = FaultContext::new(config.clone(), proxy.clone());
    ctx.allow_production = allow_production;
    let ctx = Arc::new(ctx);
    if !config.containers.is_empty()
        && let Err(reason) = ctx.docker.get().await
    {
        notices.push(format!("container faults unavailable: {reason}"));
    }

    let timeline = Timeline::create(&session.dir, config.redactor().clone())
        .map_err(|e| format!("timeline: {e}"))?;
    let themes = theme::available(&config.console.themes);
    let mut app = App::new(
        config.clone(),
        session.clone(),
        timeline,
        theme_name,
        themes,
    )
    .map_err(|e| format!("timeline: {e}"))?;
    app.state.allow_production = allow_production;
    notices.extend(config.warnings.iter().cloned());
    app.set_up(
        Driver {
            id: owner.id.clone(),
            user: owner.user.clone(),
            host: owner.host.clone(),
            pid: owner.pid,
        },
        faults::catalog_entries(&config),
        notices,
    );

    // A console killed earlier may have left faults applied: revert them before anything else.
    let recovered = match recover(&ctx, &ledger).await {
        Ok(recovered) => recovered,
        // Refuse to drill on top of a ledger nobody can read: it may list applied faults.
        Err(e) => {
            guard.bye().await;
            return Err(e);
        }
    };
    for (entry, result) in &recovered {
        match result {
            Ok(()) => app.record(recovered_event(
                &entry.id,
                &entry.name,
                &entry.spec.target(),
            )),
            Err(e) => app.record(EventKind::Info {
                text: format!("recovery FAILED for {}: {e}", describe_entry(entry)),
            }),
        }
    }
    if !recovered.is_empty() {
        let ok = recovered.iter().filter(|(_, r)| r.is_ok()).count();
        app.notify(format!(
            "recovered {ok} of {} fault(s) a killed console left applied (see Timeline)",
            recovered.len()
        ));
    }

    let cancel = CancellationToken::new();
    let (source_tx, source_rx) = mpsc::channel::<SourceEvent>(sources::CHANNEL_CAPACITY);
    let mut source_tasks = sources::spawn_all(&config, source_tx.clone(), cancel.clone());
    match &proxy {
        Some(client) if !config.webhooks.is_empty() => {
            source_tasks.spawn(sources::webhook::run(
                config.webhooks.clone(),
                client.clone(),
                config.sample_interval(),
                source_tx.clone(),
                cancel.clone(),
            ));
        }
        _ => {
            for w in &config.webhooks {
                let _ = source_tx.try_send(SourceEvent::Status {
                    source: SourceId::webhook(&w.name),
                    status: SourceStatus::down("the proxy daemon is not running"),
                });
            }
        }
    }
    drop(source_tx);
    let (report_tx, report_rx) = mpsc::channel::<FaultReport>(256);
    let (others_tx, others_rx) = tokio::sync::watch::channel(Vec::new());
    let engine = engine::spawn(ctx.clone(), ledger, owner.clone(), report_tx, others_tx);
    Ok(Running {
        app,
        config,
        session,
        owner,
        proxy,
        started_proxy,
        engine,
        ctx,
        source_rx,
        report_rx,
        others_rx,
        source_tasks,
        cancel,
        _alive: alive,
        guard: Some(guard),
    })
}

impl Running {
    /// The way out: revert every fault (bounded), record the end, write the report.
    pub(crate) async fn stop(mut self, quit_reason: &str) -> Result<Stopped, String> {
        if self.app.quit_reason().is_none() {
            self.app.request_quit(quit_reason.to_string());
        }
        // Reverts first: nothing before them may fail or block (no terminal writes).
        let reverting = self.engine.revert_all(Cause::Quit(quit_reason.to_string()));
        if test_panic("exit") {
            panic!("{TEST_PANIC_ENV}=exit: a panic on the way out");
        }
        let reverted = tokio::time::timeout(QUIT_REVERT_DEADLINE, reverting).await;
        while let Ok(report) = self.report_rx.try_recv() {
            self.app.handle(Event::Fault(report));
        }
        if reverted.is_err() {
            self.app.record(EventKind::Info {
                text: format!("some faults did not revert within {QUIT_REVERT_DEADLINE:?}; they stay in the ledger for `gameday recover`"),
            });
        }
        self.cancel.cancel();
        let unreverted = self.app.state.faults.active.len();
        // The agent goes only when nothing of ours is left; otherwise it takes over the retries.
        let guard_pid = self.guard.as_ref().and_then(Guard::pid);
        if let Some(guard) = self.guard.take() {
            if unreverted == 0 {
                guard.bye().await;
            } else {
                self.app.record(EventKind::Info {
                    text: format!(
                        "{unreverted} fault(s) still applied at exit; the dead-man agent (pid {}) keeps retrying their reverts",
                        guard_pid.unwrap_or_default()
                    ),
                });
                guard.hand_over();
            }
        }
        self.app.finish();
        let files = report::write_from_dir(&self.session.dir, &report::Format::ALL)?;
        Ok(Stopped {
            app: self.app,
            files,
            unreverted,
            guard_pid,
        })
    }

    /// Restarts the dead-man agent if it died (someone killed it): the console must never run
    /// unguarded.
    pub(crate) async fn keep_guarded(&mut self) {
        let Some(guard) = self.guard.as_mut() else {
            return;
        };
        if guard.is_running() {
            return;
        }
        self.app.record(EventKind::Info {
            text: "the dead-man agent stopped; starting a new one".into(),
        });
        match Guard::start(&self.config, &self.owner.id, &self.session.dir, PROXY_LEASE).await {
            Ok(guard) => self.guard = Some(guard),
            Err(e) => self.app.notify(format!(
                "no dead-man agent: {e}; faults outlive a crash until the next start"
            )),
        }
    }

    /// Applies the effects the app queued; work done in the background answers on `background`.
    pub(crate) fn run_effects(&mut self, background: &mpsc::Sender<Event>) {
        for effect in self.app.take_effects() {
            run_effect(effect, &self.app, &self.engine, &self.ctx, background);
        }
    }
}

pub(crate) fn quit_reason(outcome: std::thread::Result<Result<(), String>>, app: &App) -> String {
    match outcome {
        Ok(Ok(())) => app
            .quit_reason()
            .map_or("quit".to_string(), |q| q.0.clone()),
        Ok(Err(e)) => format!("error: {e}"),
        Err(_) => "panic".to_string(),
    }
}

pub(crate) fn file_list(files: &[PathBuf]) -> String {
    files
        .iter()
        .map(|f| f.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether the test hook asks for a panic at `point`.
pub(crate) fn test_panic(point: &str) -> bool {
    std::env::var(TEST_PANIC_ENV).is_ok_and(|v| v == point)
}

/// Runs the console until it quits; returns the closing summary lines.
pub async fn run(prepared: Prepared) -> Result<Closing, String> {
    let Prepared {
        config,
        allow_production,
        session,
        theme,
        proxy_outlives,
    } = prepared;
    let mut running = start(config, session, theme.name.clone(), allow_production).await?;
    let mut themes_cache = ThemeCache {
        dir: running.config.console.themes.clone(),
        current: theme,
    };
    let outcome = AssertUnwindSafe(event_loop(&mut running, &mut themes_cache))
        .catch_unwind()
        .await;
    // The terminal is restored here (guard dropped, or the panic hook ran).
    let reason = quit_reason(outcome, &running.app);
    let name = running.session.name.clone();
    let proxy = running.proxy.clone();
    let stopped = running.stop(&reason).await?;
    let mut summary = vec![format!("session {name} ended ({reason})")];
    if stopped.unreverted > 0 {
        summary.push(unreverted_line(stopped.unreverted, stopped.guard_pid));
    }
    summary.push(format!("report: {}", file_list(&stopped.files)));
    if let Some(client) = proxy.as_ref().filter(|_| proxy_outlives) {
        summary.push(format!(
            "proxy daemon (pid {}) keeps forwarding; stop it with `gameday proxy stop`",
            client.daemon().pid
        ));
    }
    Ok(Closing {
        summary,
        unreverted: stopped.unreverted,
    })
}

/// The closing line for faults that are still applied.
pub(crate) fn unreverted_line(count: usize, guard_pid: Option<u32>) -> String {
    let agent = guard_pid
        .map(|pid| format!("the dead-man agent (pid {pid}) keeps retrying; "))
        .unwrap_or_default();
    format!(
        "⚠ {count} fault(s) could not be reverted: {agent}see the session's guard.log, or run `gameday recover` (exit code {EXIT_UNREVERTED})"
    )
}

/// The theme in use, reloaded when the app's theme name changes.
struct ThemeCache {
    current: Theme,
    dir: PathBuf,
}

impl ThemeCache {
    fn get(&mut self, name: &str) -> &Theme {
        if self.current.name != name
            && let Ok(t) = Theme::load(name, &self.dir)
        {
            self.current = t;
        }
        &self.current
    }
}

async fn event_loop(r: &mut Running, themes: &mut ThemeCache) -> Result<(), String> {
    let mut guard = TerminalGuard::new().map_err(|e| format!("terminal: {e}"))?;
    let mut keys = EventStream::new();
    let mut signals = Signals::new()?;
    let tick_every = r.config.sample_interval().min(Duration::from_secs(1));
    let mut tick = tokio::time::interval(tick_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let frame_every = Duration::from_millis(1000 / u64::from(r.config.console.max_fps.max(1)));
    let mut frame = tokio::time::interval(frame_every);
    frame.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let (background_tx, mut background_rx) = mpsc::channel(16);

    loop {
        tokio::select! {
            key = keys.next() => match key {
                Some(Ok(TermEvent::Key(k))) => {
                    if let crossterm::event::KeyCode::Char(c) = k.code
                        && test_panic(&format!("key:{c}"))
                    {
                        panic!("{TEST_PANIC_ENV}=key:{c}: a panic in the event loop");
                    }
                    r.app.handle(Event::Key(k));
                }
                Some(Ok(TermEvent::Resize(..))) => r.app.handle(Event::Resize),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(format!("terminal input: {e}")),
                None => return Err("terminal input closed".into()),
            },
            Some(ev) = r.source_rx.recv() => {
                r.app.handle(Event::Source(ev));
                // Drain the burst: many samples, one frame.
                while let Ok(ev) = r.source_rx.try_recv() {
                    r.app.handle(Event::Source(ev));
                }
            }
            Some(report) = r.report_rx.recv() => r.app.handle(Event::Fault(report)),
            Ok(()) = r.others_rx.changed() => {
                let others = r.others_rx.borrow_and_update().clone();
                r.app.handle(Event::Others(others));
            }
            Some(event) = background_rx.recv() => r.app.handle(event),
            Some(done) = r.source_tasks.join_next(), if !r.source_tasks.is_empty() => watch_source_task(&mut r.app, done),
            name = signals.next() => r.app.handle(Event::Signal(name)),
            _ = tick.tick() => {
                r.app.handle(Event::Tick);
                r.app.handle(Event::Watchers(crate::watch::count_watchers(&r.session.dir)));
                r.keep_guarded().await;
            }
            _ = frame.tick() => {
                if r.app.take_dirty() {
                    let theme = themes.get(&r.app.state.ui.theme);
                    guard.terminal.draw(|f| crate::ui::render(f, &r.app.state, theme)).map_err(|e| format!("draw: {e}"))?;
                }
            }
        }
        r.run_effects(&background_tx);
        if r.app.quit_reason().is_some() {
            return Ok(());
        }
    }
}

/// A source that panics is a bug: end cleanly rather than show stale data.
pub(crate) fn watch_source_task(app: &mut App, done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done
        && e.is_panic()
    {
        app.request_quit("a source task panicked (see console.log)".into());
    }
}

/// SIGTERM, SIGHUP and SIGINT as one stream of names.
pub(crate) struct Signals {
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    pub(crate) fn new() -> Result<Signals, String> {
        let sig = |kind| signal(kind).map_err(|e| format!("signal handler: {e}"));
        Ok(Signals {
            term: sig(SignalKind::terminate())?,
            hup: sig(SignalKind::hangup())?,
            int: sig(SignalKind::interrupt())?,
        })
    }

    pub(crate) async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.hup.recv() => "SIGHUP",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

fn run_effect(
    effect: Effect,
    app: &App,
    engine: &EngineHandle,
    ctx: &Arc<FaultContext>,
    background: &mpsc::Sender<Event>,
) {
    match effect {
        Effect::ExportReport => {
            let dir = app.state.session.dir.clone();
            let tx = background.clone();
            tokio::task::spawn_blocking(move || {
                let written = report::write_from_dir(&dir, &report::Format::ALL);
                let _ = tx.blocking_send(Event::ReportWritten(written));
            });
        }
        Effect::Resolve { catalog_index } => {
            let (ctx, tx) = (ctx.clone(), background.clone());
            tokio::spawn(async move {
                let result = crate::dry_run::catalog_fault(&ctx, catalog_index).await;
                let _ = tx
                    .send(Event::Resolved {
                        catalog_index,
                        result,
                    })
                    .await;
            });
        }
        Effect::InjectFault {
            catalog_index,
            cause,
            lease,
        } => {
            if let Some(f) = app.state.config.faults.get(catalog_index) {
                engine.try_inject(&f.name, f.spec.clone(), lease.unwrap_or(f.lease), cause);
            }
        }
        Effect::RevertFault { id, cause } => engine.try_revert(&id, cause),
        Effect::RevertAll { cause } => engine.try_revert_all(cause),
        Effect::RevertEveryone { cause } => engine.try_revert_everyone(cause),
    }
}

/// The timeline line for a fault reverted at start-up from a killed console's ledger.
fn recovered_event(id: &str, name: &str, target: &str) -> EventKind {
    EventKind::Fault {
        id: id.into(),
        name: name.into(),
        phase: FaultPhase::Reverted,
        target: target.into(),
        detail: "left applied by a killed console".into(),
        cause: Some(Cause::Recovery),
        lease_ms: None,
    }
}
