//! Shared by the integration tests: the console in a real pseudo-terminal, servers to drive it
//! against, and waiting on conditions with deadlines.
#![allow(dead_code)] // each test crate uses a different part of it

pub mod docker;

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
    master: File,
    screen: Arc<Mutex<vt100::Parser>>,
    pub dir: PathBuf,
}

impl Console {
    /// Runs `gameday <args>` in `dir` on a `cols`×`rows` terminal.
    pub fn spawn(dir: &Path, args: &[&str], cols: u16, rows: u16) -> Console {
        let size = Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = openpty(&size, None).expect("openpty");
        let slave: OwnedFd = pty.slave;
        let mut command = Command::new(GAMEDAY);
        command
            .args(args)
            .current_dir(dir)
            .env("TERM", "xterm-256color")
            .env_remove("NO_COLOR")
            .stdin(Stdio::from(slave.try_clone().expect("dup")))
            .stdout(Stdio::from(slave.try_clone().expect("dup")))
            .stderr(Stdio::from(slave));
        // Its own session, like a program started in a terminal window.
        unsafe {
            command.pre_exec(|| {
                nix::unistd::setsid()
                    .map(|_| ())
                    .map_err(std::io::Error::from)
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
        let mut answers = master.try_clone().expect("dup master");
        let feed = screen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            // Ends with EIO once the console has exited and closed the terminal.
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let mut parser = feed.lock().unwrap();
                parser.process(&buf[..n]);
                // Answer "where is the cursor?" (DSR) like a real terminal does.
                if buf[..n].windows(4).any(|w| w == b"\x1b[6n") {
                    let (row, col) = parser.screen().cursor_position();
                    let _ = write!(answers, "\x1b[{};{}R", row + 1, col + 1);
                }
            }
        });
        Console {
            child,
            master,
            screen,
            dir: dir.to_path_buf(),
        }
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
        self.master.write_all(keys.as_bytes()).expect("type");
        self.master.flush().expect("flush");
    }

    pub fn ctrl_c(&mut self) {
        self.master.write_all(&[0x03]).expect("type ctrl-c");
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
        self.master.as_raw_fd()
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
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

/// Runs `gameday <args>` in `dir` to completion.
pub fn gameday(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(GAMEDAY)
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run gameday")
}
