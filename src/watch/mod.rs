//! `gameday watch` and `gameday replay`: the console's screen rebuilt from a session's timeline,
//! in a terminal of one's own.
//!
//! Read-only by construction: nothing here holds a fault engine, a proxy client or a ledger, and
//! the key tables of these screens (`keymap::WATCH`, `keymap::REPLAY`) hold no action that
//! reaches beyond the viewer. The only file a watcher writes is its own presence marker in the
//! session directory (so the driver's header can count who follows); a replay writes only the
//! report it is asked for with `x`.

pub mod follow;
pub mod project;
pub mod replay;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use crossterm::event::{Event as TermEvent, EventStream, KeyEventKind};
use futures::StreamExt;
use nix::fcntl::{Flock, FlockArg};

use crate::keymap::{self, Action};
use crate::state::{AppState, Mode, Panel, Role, Toast, ToastKind, Watching};
use crate::terminal::TerminalGuard;
use crate::theme::{self, Theme};
use follow::{Batch, FileFollower, LineSplitter};
use project::Projection;
use replay::Replay;

/// Where watchers announce themselves: `<session>/watchers/<pid>.lock`, each held with a lock.
pub const WATCHERS_DIR: &str = "watchers";
/// How often a viewer looks for new lines and redraws its clock.
const POLL: Duration = Duration::from_millis(200);
const TOAST_MS: u64 = 3000;

#[derive(Debug, Clone, Args)]
pub struct WatchArgs {
    /// A session name (under the artifacts dir), its directory, its timeline file, or `-` for
    /// the stream on stdin. Default: the newest session, waiting for one to start.
    pub session: Option<PathBuf>,
    /// Config file, for the artifacts dir and themes (default: ./gameday.toml if present).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Theme name (this screen only).
    #[arg(long)]
    pub theme: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct ReplayArgs {
    /// The session directory (or a session name under the artifacts dir).
    pub dir: PathBuf,
    /// Config file, for the artifacts dir and themes (default: ./gameday.toml if present).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Theme name.
    #[arg(long)]
    pub theme: Option<String>,
}

/// What a viewer knows of the local setup: where sessions are and which themes exist. Read
/// from a config when one is found; a watcher needs none (the session brings its own).
struct Local {
    artifacts: PathBuf,
    themes_dir: PathBuf,
    theme: String,
}

impl Local {
    fn find(explicit: Option<&Path>, theme: Option<String>) -> Result<Local, String> {
        let config = match explicit {
            Some(path) => Some(crate::config::Config::load(path).map_err(|e| e.to_string())?),
            None => crate::config::locate(None)
                .ok()
                .and_then(|p| crate::config::Config::load(&p).ok()),
        };
        let (artifacts, themes_dir, configured) = match &config {
            Some(c) => (
                c.console.artifacts.clone(),
                c.console.themes.clone(),
                c.console.theme.clone(),
            ),
            None => (
                PathBuf::from(".artifacts"),
                PathBuf::from("themes"),
                "dark".into(),
            ),
        };
        Ok(Local {
            artifacts,
            themes_dir,
            theme: theme.unwrap_or(configured),
        })
    }
}

pub fn watch_main(args: WatchArgs) -> ExitCode {
    let local = match Local::find(args.config.as_deref(), args.theme.clone()) {
        Ok(local) => local,
        Err(e) => {
            eprintln!("gameday: {e}");
            return ExitCode::from(2);
        }
    };
    let input = match &args.session {
        Some(p) if p.as_os_str() == "-" => Input::Stdin(stdin_stream()),
        Some(p) => {
            let dir_or_file = crate::session::resolve_dir(&local.artifacts, p);
            let file = if dir_or_file.is_dir() {
                dir_or_file.join(crate::timeline::FILE_NAME)
            } else {
                dir_or_file
            };
            if !file.exists() && !file.parent().is_some_and(Path::is_dir) {
                eprintln!("gameday: {}: no such session", p.display());
                return ExitCode::from(2);
            }
            Input::File(FileFollower::new(&file), None)
        }
        None => Input::Newest {
            artifacts: local.artifacts.clone(),
            current: None,
        },
    };
    run_viewer(local, Viewer::Watch(input))
}

pub fn replay_main(args: ReplayArgs) -> ExitCode {
    let local = match Local::find(args.config.as_deref(), args.theme.clone()) {
        Ok(local) => local,
        Err(e) => {
            eprintln!("gameday: {e}");
            return ExitCode::from(2);
        }
    };
    let dir = crate::session::resolve_dir(&local.artifacts, &args.dir);
    let replay = match Replay::open(&dir, local.theme.clone()) {
        Ok(replay) => replay,
        Err(e) => {
            eprintln!("gameday: {e}");
            return ExitCode::from(2);
        }
    };
    run_viewer(local, Viewer::Replay(Box::new(replay)))
}

/// Where a watcher's events come from.
enum Input {
    File(FileFollower, Option<Presence>),
    Stdin(std::sync::mpsc::Receiver<Vec<u8>>),
    /// The newest session under the artifacts dir, switching when a newer one starts.
    Newest {
        artifacts: PathBuf,
        current: Option<(FileFollower, Presence)>,
    },
}

enum Viewer {
    Watch(Input),
    Replay(Box<Replay>),
}

/// Copies stdin into a channel from a thread (a blocking read must not hold the screen).
fn stdin_stream() -> std::sync::mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx.send(buf[..n].to_vec()).is_err() {
                        return;
                    }
                }
            }
        }
    });
    rx
}

/// A watcher's mark in the session directory, held (locked) while it watches.
pub struct Presence {
    _lock: Option<Flock<std::fs::File>>,
    path: PathBuf,
}

impl Presence {
    /// Best effort: a session directory we cannot write to is watched all the same.
    fn announce(session_dir: &Path) -> Presence {
        let dir = session_dir.join(WATCHERS_DIR);
        let path = dir.join(format!("{}.lock", std::process::id()));
        let lock = std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::File::create(&path))
            .ok()
            .and_then(|f| Flock::lock(f, FlockArg::LockSharedNonblock).ok());
        Presence { _lock: lock, path }
    }
}

impl Drop for Presence {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// How many viewers watch the session in `session_dir` now (their markers still locked).
/// Markers left by viewers that died are removed.
pub fn count_watchers(session_dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(session_dir.join(WATCHERS_DIR)) else {
        return 0;
    };
    let mut n = 0;
    for entry in entries.flatten() {
        let Ok(file) = std::fs::File::open(entry.path()) else {
            continue;
        };
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => n += 1,
            Ok(_free) => {
                let _ = std::fs::remove_file(entry.path());
            }
            Err(_) => {}
        }
    }
    n
}

/// The newest session's timeline under `artifacts` (by when it was last written).
fn newest_timeline(artifacts: &Path) -> Option<PathBuf> {
    std::fs::read_dir(artifacts)
        .ok()?
        .flatten()
        .map(|e| e.path().join(crate::timeline::FILE_NAME))
        .filter_map(|p| {
            let modified = p.metadata().ok()?.modified().ok()?;
            Some((modified, p))
        })
        .max_by_key(|(modified, _)| *modified)
        .map(|(_, p)| p)
}

/// The watcher's side of one poll: new lines in, state updated. Returns whether anything changed.
struct WatchFeed {
    projection: Projection,
    stdin_lines: LineSplitter,
    stdin_closed: bool,
    /// Wall time of the newest event, to move the clock between events.
    last_event: Option<(u64, Instant)>,
}

impl WatchFeed {
    fn take(&mut self, batch: Batch) -> bool {
        let changed = batch.restarted || !batch.events.is_empty() || batch.malformed > 0;
        if batch.restarted {
            self.projection.restart();
            self.last_event = None;
        }
        for event in &batch.events {
            // A second session in the same stream (`tail -F` across sessions): start over.
            if matches!(event.kind, crate::timeline::EventKind::SessionStart { .. })
                && !self.projection.state.session.name.is_empty()
            {
                self.projection.restart();
            }
            self.projection.apply(event);
            self.last_event = Some((event.offset_ms, Instant::now()));
        }
        if let Role::Watch(w) = &mut self.projection.state.ui.role {
            w.malformed += batch.malformed;
            if !batch.events.is_empty() {
                w.waiting = false;
            }
        }
        changed
    }

    fn poll(&mut self, input: &mut Input) -> bool {
        let mut changed = false;
        match input {
            Input::File(follower, presence) => {
                if presence.is_none()
                    && let Some(dir) = follower.path().parent().filter(|d| d.is_dir())
                {
                    *presence = Some(Presence::announce(dir));
                }
                match follower.poll() {
                    Ok(batch) => changed |= self.take(batch),
                    Err(e) => changed |= self.notice(format!("{}: {e}", follower.path().display())),
                }
            }
            Input::Stdin(rx) => {
                let mut batch = Batch::default();
                loop {
                    match rx.try_recv() {
                        Ok(bytes) => self.stdin_lines.feed(&bytes, &mut batch),
                        Err(std::sync::mpsc::TryRecvError::Empty) => break,
                        Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                            if !self.stdin_closed {
                                self.stdin_closed = true;
                                self.stdin_lines.feed(b"\n", &mut batch);
                                if let Role::Watch(w) = &mut self.projection.state.ui.role
                                    && w.ended.is_none()
                                {
                                    w.ended = Some("the stream on stdin ended".into());
                                }
                                changed = true;
                            }
                            break;
                        }
                    }
                }
                changed |= self.take(batch);
            }
            Input::Newest { artifacts, current } => {
                let newest = newest_timeline(artifacts);
                let switch = match (&newest, current.as_ref()) {
                    (Some(path), Some((follower, _))) => {
                        path != follower.path() && self.session_over()
                    }
                    (Some(_), None) => true,
                    (None, _) => false,
                };
                if switch && let Some(path) = newest {
                    let presence = Presence::announce(path.parent().unwrap_or(artifacts));
                    *current = Some((FileFollower::new(&path), presence));
                    self.projection.restart();
                    changed = true;
                }
                if let Some((follower, _)) = current {
                    if let Role::Watch(w) = &mut self.projection.state.ui.role {
                        w.from = follower.path().display().to_string();
                    }
                    match follower.poll() {
                        Ok(batch) => changed |= self.take(batch),
                        Err(e) => {
                            changed |= self.notice(format!("{}: {e}", follower.path().display()))
                        }
                    }
                }
            }
        }
        // The clock moves between events while the session runs.
        if let (Some((offset, at)), Role::Watch(w)) =
            (self.last_event, &self.projection.state.ui.role)
            && w.ended.is_none()
        {
            let now = offset + at.elapsed().as_millis().min(5_000) as u64;
            if now / 1000 != self.projection.state.now_ms / 1000 {
                changed = true;
            }
            self.projection.state.now_ms = self.projection.state.now_ms.max(now);
        }
        changed
    }

    fn session_over(&self) -> bool {
        matches!(&self.projection.state.ui.role, Role::Watch(w) if w.ended.is_some())
    }

    fn notice(&mut self, text: String) -> bool {
        toast(&mut self.projection.state, ToastKind::Error, text);
        true
    }
}

fn toast(state: &mut AppState, kind: ToastKind, text: String) {
    state.ui.toast = Some(Toast {
        text,
        kind,
        until_ms: state.now_ms + TOAST_MS,
    });
}

fn run_viewer(local: Local, viewer: Viewer) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("gameday: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(viewer_loop(local, viewer)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gameday: {e}");
            ExitCode::FAILURE
        }
    }
}

/// What the screen is drawn from.
enum Screen {
    Watch(Box<WatchFeed>, Input),
    Replay(Box<Replay>),
}

impl Screen {
    fn state(&self) -> &AppState {
        match self {
            Screen::Watch(feed, _) => &feed.projection.state,
            Screen::Replay(replay) => replay.state(),
        }
    }

    fn state_mut(&mut self) -> &mut AppState {
        match self {
            Screen::Watch(feed, _) => &mut feed.projection.state,
            Screen::Replay(replay) => replay.state_mut(),
        }
    }
}

async fn viewer_loop(local: Local, viewer: Viewer) -> Result<(), String> {
    let mut theme = load_theme(&local.theme, &local.themes_dir);
    let themes = theme::available(&local.themes_dir);
    let mut screen = match viewer {
        Viewer::Watch(input) => {
            let from = match &input {
                Input::File(f, _) => f.path().display().to_string(),
                Input::Stdin(_) => "stdin".into(),
                Input::Newest { artifacts, .. } => artifacts.display().to_string(),
            };
            let role = Role::Watch(Watching {
                from,
                waiting: true,
                ..Watching::default()
            });
            let feed = WatchFeed {
                projection: Projection::new(role, theme.name.clone(), PathBuf::new()),
                stdin_lines: LineSplitter::default(),
                stdin_closed: false,
                last_event: None,
            };
            Screen::Watch(Box::new(feed), input)
        }
        Viewer::Replay(replay) => Screen::Replay(replay),
    };
    screen.state_mut().ui.theme = theme.name.clone();
    let mut guard = TerminalGuard::new().map_err(|e| format!("terminal: {e}"))?;
    let mut keys = EventStream::new();
    let mut poll = tokio::time::interval(POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut dirty = true;
    let mut last_poll = Instant::now();
    loop {
        if dirty {
            let state = screen.state();
            guard
                .terminal
                .draw(|f| crate::ui::render(f, state, &theme))
                .map_err(|e| format!("draw: {e}"))?;
            dirty = false;
        }
        tokio::select! {
            key = keys.next() => match key {
                Some(Ok(TermEvent::Key(k))) if k.kind == KeyEventKind::Press => {
                    let context = screen.state().key_context();
                    let Some(action) = keymap::action_for(context, &k) else { continue };
                    if action == Action::Quit {
                        return Ok(());
                    }
                    on_action(&mut screen, action, &themes);
                    if screen.state().ui.theme != theme.name {
                        theme = load_theme(&screen.state().ui.theme, &local.themes_dir);
                    }
                    dirty = true;
                }
                Some(Ok(TermEvent::Resize(..))) => dirty = true,
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(format!("terminal input: {e}")),
                None => return Ok(()),
            },
            _ = poll.tick() => {
                let elapsed = last_poll.elapsed().as_millis() as u64;
                last_poll = Instant::now();
                match &mut screen {
                    Screen::Watch(feed, input) => dirty |= feed.poll(input),
                    Screen::Replay(replay) => {
                        let before = replay.position_ms();
                        replay.advance(elapsed);
                        dirty |= replay.position_ms() != before;
                    }
                }
                let state = screen.state_mut();
                if state.ui.toast.as_ref().is_some_and(|t| t.until_ms <= state.now_ms) {
                    state.ui.toast = None;
                    dirty = true;
                }
            }
        }
    }
}

fn load_theme(name: &str, dir: &Path) -> Theme {
    let theme = Theme::load(name, dir)
        .ok()
        .or_else(|| Theme::built_in("dark"))
        .expect("the dark theme is built in");
    if theme::no_color_requested(std::env::var_os("NO_COLOR").as_deref()) {
        theme.monochrome()
    } else {
        theme
    }
}

/// A key on a viewer: only this screen changes (and `x` writes a replay's report).
fn on_action(screen: &mut Screen, action: Action, themes: &[String]) {
    if let Screen::Replay(replay) = screen {
        match action {
            Action::PlayPause => return replay.toggle_play(),
            Action::Faster => return replay.change_speed(1),
            Action::Slower => return replay.change_speed(-1),
            Action::Seek(seconds) => return replay.seek_by(i64::from(seconds) * 1000),
            Action::NextMoment => return replay.jump(true),
            Action::PrevMoment => return replay.jump(false),
            Action::Export => {
                let dir = replay.state().session.dir.clone();
                let result = crate::report::write_from_dir(&dir, &crate::report::Format::ALL);
                let state = replay.state_mut();
                match result {
                    Ok(files) => toast(
                        state,
                        ToastKind::Info,
                        format!(
                            "report saved: {}",
                            files
                                .iter()
                                .map(|f| f.display().to_string())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ),
                    Err(e) => toast(state, ToastKind::Error, format!("export failed: {e}")),
                }
                return;
            }
            _ => {}
        }
    }
    view_action(screen.state_mut(), action, themes);
}

/// Keys that change only what this screen shows.
pub fn view_action(state: &mut AppState, action: Action, themes: &[String]) {
    let ui = &mut state.ui;
    match (&ui.mode, action) {
        (Mode::Help, Action::Back | Action::Help) => ui.mode = Mode::Normal,
        (Mode::Help, _) => {}
        (_, Action::Help) => ui.mode = Mode::Help,
        (_, Action::FocusNext) => ui.focus = ui.focus.next(),
        (_, Action::FocusPrev) => ui.focus = ui.focus.prev(),
        (_, Action::Zoom) => ui.zoom = !ui.zoom,
        (_, Action::Back) => ui.zoom = false,
        (_, Action::NextTheme) if !themes.is_empty() => {
            let i = themes
                .iter()
                .position(|t| *t == ui.theme)
                .map_or(0, |i| i + 1);
            ui.theme = themes[i % themes.len()].clone();
        }
        (_, Action::SelectUp | Action::SelectDown) => {
            let delta: isize = if action == Action::SelectUp { -1 } else { 1 };
            match ui.focus {
                Panel::Faults => {
                    let max = state.faults.active.len().saturating_sub(1);
                    ui.selected_fault = ui.selected_fault.saturating_add_signed(delta).min(max);
                }
                Panel::Timeline => {
                    let max = state.timeline.len().saturating_sub(1);
                    ui.timeline_scroll = ui.timeline_scroll.saturating_add_signed(-delta).min(max);
                }
                _ => {}
            }
        }
        _ => {}
    }
}
