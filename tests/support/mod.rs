//! Shared by the integration tests: the console in a real pseudo-terminal, servers to drive it
//! against, and waiting on conditions with deadlines.
#![allow(dead_code)] // each test crate uses a different part of it

pub mod docker;
pub mod pki;

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::pty::{Winsize, openpty};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

pub const GAMEDAY: &str = env!("CARGO_BIN_EXE_gameday");

/// A fresh directory under `<repo>/.artifacts/test/`, short enough for unix socket paths.
pub fn test_dir(name: &str) -> PathBuf {
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(".artifacts/test")
        .join(format!("{name}-{suffix}"));
    std::fs::create_dir_all(&dir).expect("create the test directory");
    dir
}

/// Polls `condition` until it holds, or fails the test with `what` after `deadline`.
pub fn wait_until(what: &str, deadline: Duration, mut condition: impl FnMut() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(
            started.elapsed() < deadline,
            "timed out after {deadline:?} waiting until {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The gameday binary running in a pseudo-terminal, with a terminal emulator reading its screen.
pub struct Console {
    child: Child,
    /// `None` once the terminal was hung up.
    master: Option<File>,
    screen: Arc<Mutex<vt100::Parser>>,
    /// Tells the screen reader to let go of its end of the terminal.
    hung_up: Arc<std::sync::atomic::AtomicBool>,
    reader: Option<std::thread::JoinHandle<()>>,
    pub dir: PathBuf,
}

impl Console {
    /// Runs `gameday <args>` in `dir` on a `cols`×`rows` terminal.
    pub fn spawn(dir: &Path, args: &[&str], cols: u16, rows: u16) -> Console {
        Console::spawn_with_env(dir, args, &[], cols, rows)
    }

    /// [`Console::spawn`] with extra environment variables.
    pub fn spawn_with_env(
        dir: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        cols: u16,
        rows: u16,
    ) -> Console {
        Console::spawn_full(dir, args, env, None, cols, rows)
    }

    /// [`Console::spawn`] reading `stdin` (a pipe) instead of the terminal; keys still reach it
    /// through its controlling terminal (`/dev/tty`).
    pub fn spawn_with_stdin(
        dir: &Path,
        args: &[&str],
        stdin: Stdio,
        cols: u16,
        rows: u16,
    ) -> Console {
        Console::spawn_full(dir, args, &[], Some(stdin), cols, rows)
    }

    fn spawn_full(
        dir: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        stdin: Option<Stdio>,
        cols: u16,
        rows: u16,
    ) -> Console {
        let size = Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = openpty(&size, None).expect("openpty");
        // Only this test process may hold the terminal's ends: a console (or anything it starts)
        // that inherited the master would keep the terminal open after a hangup.
        for fd in [&pty.master, &pty.slave] {
            nix::fcntl::fcntl(
                fd,
                nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
            )
            .expect("close-on-exec");
        }
        let slave: OwnedFd = pty.slave;
        let mut command = Command::new(GAMEDAY);
        command
            .args(args)
            .current_dir(dir)
            .env("TERM", "xterm-256color")
            .env_remove("NO_COLOR")
            .envs(env.iter().copied())
            .stdin(stdin.unwrap_or_else(|| Stdio::from(slave.try_clone().expect("dup"))))
            .stdout(Stdio::from(slave.try_clone().expect("dup")))
            .stderr(Stdio::from(slave));
        // Its own session with this terminal as its controlling terminal, like a program
        // started in a terminal window: closing the terminal hangs it up.
        unsafe {
            command.pre_exec(|| {
                nix::unistd::setsid().map_err(std::io::Error::from)?;
                // On stdout: stdin may be a pipe.
                if nix::libc::ioctl(1, nix::libc::TIOCSCTTY as _, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().expect("start gameday");
        let master = File::from(pty.master);
        let nonzero = |n: u16| std::num::NonZeroU16::new(n).expect("a terminal has a size");
        let screen = Arc::new(Mutex::new(vt100::Parser::new(
            nonzero(rows),
            nonzero(cols),
            0,
        )));
        let mut reader = master.try_clone().expect("dup master");
        let hung_up = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop = hung_up.clone();
        let feed = screen.clone();
        let reader = std::thread::spawn(move || {
            use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
            use std::os::fd::AsFd;
            let mut buf = [0u8; 8192];
            loop {
                if stop.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                // A bounded wait, so a hangup can take this end of the terminal away too.
                let mut fds = [PollFd::new(reader.as_fd(), PollFlags::POLLIN)];
                match poll(&mut fds, PollTimeout::from(50u16)) {
                    Ok(0) => continue,
                    Ok(_) => {}
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(_) => break,
                }
                // Ends with EIO once the console has exited and closed the terminal.
                let n = match reader.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let mut parser = feed.lock().unwrap();
                parser.process(&buf[..n]);
                // Answer "where is the cursor?" (DSR) like a real terminal does.
                if buf[..n].windows(4).any(|w| w == b"\x1b[6n") {
                    let (row, col) = parser.screen().cursor_position();
                    let _ = write!(reader, "\x1b[{};{}R", row + 1, col + 1);
                }
            }
        });
        Console {
            child,
            master: Some(master),
            screen,
            hung_up,
            reader: Some(reader),
            dir: dir.to_path_buf(),
        }
    }

    /// Closes the terminal the way a closed window or a dropped SSH connection does: every
    /// descriptor of its master side goes, so the kernel hangs up the console's session and
    /// every later read or write on its terminal fails.
    pub fn hangup(&mut self) {
        self.hung_up
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.master.take();
        if let Some(reader) = self.reader.take() {
            reader.join().expect("the screen reader ends");
        }
    }

    fn master(&mut self) -> &mut File {
        self.master.as_mut().expect("the terminal is still open")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the terminal shows now.
    pub fn screen(&self) -> String {
        self.screen.lock().unwrap().screen().contents()
    }

    /// Waits until the screen shows `text`; the failure message carries the screen.
    pub fn wait_for(&self, text: &str, deadline: Duration) {
        let started = Instant::now();
        loop {
            let screen = self.screen();
            if screen.contains(text) {
                return;
            }
            assert!(
                started.elapsed() < deadline,
                "timed out after {deadline:?} waiting for {text:?} on screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    pub fn keys(&mut self, keys: &str) {
        self.master().write_all(keys.as_bytes()).expect("type");
        self.master().flush().expect("flush");
    }

    /// Presses a catalog key and confirms the popup that names the fault.
    pub fn inject(&mut self, key: &str, name: &str) {
        self.keys(key);
        self.wait_for(&format!("Inject {name}?"), Duration::from_secs(5));
        self.keys("y");
    }

    pub fn ctrl_c(&mut self) {
        self.master().write_all(&[0x03]).expect("type ctrl-c");
    }

    pub fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), signal).expect("signal the console");
    }

    /// Waits for the process to end.
    pub fn wait_exit(&mut self, deadline: Duration) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                started.elapsed() < deadline,
                "console did not exit within {deadline:?}; screen:\n{}",
                self.screen()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn raw_fd(&self) -> i32 {
        self.master.as_ref().expect("open terminal").as_raw_fd()
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        self.hung_up
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The events of `session`'s timeline under `artifacts` (none if it is not there yet).
pub fn events(artifacts: &Path, session: &str) -> Vec<gameday::timeline::EventKind> {
    use gameday::timeline;
    timeline::read(&artifacts.join(session).join(timeline::FILE_NAME))
        .map(|events| events.into_iter().map(|e| e.kind).collect())
        .unwrap_or_default()
}

/// The arguments of every running process (zombies excluded), by pid.
pub fn processes() -> Vec<(u32, Vec<String>)> {
    std::fs::read_dir("/proc")
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
                .filter_map(|pid| Some((pid, process_args(pid)?)))
                .collect()
        })
        .unwrap_or_default()
}

/// The arguments of `pid`, or `None` once it is gone (a zombie runs nothing).
pub fn process_args(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    if stat
        .rsplit_once(')')
        .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
    {
        return None;
    }
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
    )
}

/// The pid of the dead-man agent (`gameday guard`) watching the console of `session`.
pub fn guard_pid(session: &str) -> Option<u32> {
    let suffix = format!("/{session}");
    processes().into_iter().find_map(|(pid, args)| {
        (args.get(1).is_some_and(|a| a == "guard")
            && args
                .windows(2)
                .any(|w| w[0] == "--session-dir" && w[1].ends_with(&suffix)))
        .then_some(pid)
    })
}

/// Kills a console and its dead-man agent together (a machine's processes killed at once): how
/// a test reaches the last line of defence (the next start, `gameday recover`). The console is
/// stopped first so it cannot start a new agent in between, and the agent is killed well within
/// the lease, before it could take the stop for a hang.
pub fn kill_console_and_guard(console: &mut Console, session: &str) {
    console.signal(Signal::SIGSTOP);
    kill_guard(session);
    console.signal(Signal::SIGKILL);
    console.wait_exit(Duration::from_secs(5));
}

/// SIGKILLs the dead-man agent of `session` and waits until it is gone.
pub fn kill_guard(session: &str) {
    let pid = guard_pid(session).expect("the console has a dead-man agent");
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).expect("kill the agent");
    wait_until("the agent is gone", Duration::from_secs(5), || {
        process_args(pid).is_none()
    });
}

/// A free port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A TCP echo server on its own threads.
pub fn echo_server() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the echo server");
    let addr = listener.local_addr().expect("its address");
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let _ = stream.set_nodelay(true);
                let mut reader = stream.try_clone().expect("dup");
                let mut writer = stream;
                let mut buf = [0u8; 4096];
                while let Ok(n) = reader.read(&mut buf) {
                    if n == 0 || writer.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// `GET url` as JSON of type `T`; panics with the URL on any failure.
pub async fn get_json<T: serde::de::DeserializeOwned>(http: &reqwest::Client, url: String) -> T {
    let response = http
        .get(&url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    response
        .json()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: not the JSON expected: {e}"))
}

/// Waits for `child` to exit, killing it (and failing the test) after `deadline`.
pub fn wait_within(child: &mut Child, deadline: Duration, what: &str) -> ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if started.elapsed() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not end within {deadline:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The lines of `stdout`, read on their own thread so every wait for one has a deadline.
pub fn lines_of(stdout: impl Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)).map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Runs `gameday <args>` in `dir` to completion.
pub fn gameday(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(GAMEDAY)
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run gameday")
}

/// Starts `gameday demo --headless` in `dir`; returns it and its config once it is ready.
pub fn headless_demo(dir: &Path, rate: f64) -> (std::process::Child, String) {
    headless_demo_with(dir, rate, &[])
}

/// [`headless_demo`] with extra `gameday demo` flags (`--pgbouncer`).
pub fn headless_demo_with(dir: &Path, rate: f64, extra: &[&str]) -> (std::process::Child, String) {
    let dir_arg = dir.display().to_string();
    let rate = rate.to_string();
    let mut demo = Command::new(GAMEDAY)
        .args(["demo", "--headless", "--dir", &dir_arg, "--rate", &rate])
        .args(extra)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = demo.stdout.take().unwrap();
    // The reading happens on its own thread so the wait has a deadline; reading stops at the
    // ready line (the demo must cope with nobody reading its stdout afterwards).
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let config = std::io::BufRead::lines(std::io::BufReader::new(stdout))
            .map_while(Result::ok)
            .find_map(|l| l.strip_prefix("ready: config ").map(str::to_string));
        let _ = tx.send(config);
    });
    let config = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("the demo is ready within 2 minutes")
        .expect("the demo says where its config is");
    (demo, config)
}
