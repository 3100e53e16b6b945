//! The console's side of the control socket: attach to (or start) the daemon, hold the lease
//! with heartbeats, and drive faults. Every call has a deadline and a clear error.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use tokio::io::BufReader;
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::daemon::{log_path, prepare_control_dir, read_line, socket_path, write_json};
use super::faults::Fault;
use super::protocol::{
    ConfigureReport, HelloReply, PROTOCOL_VERSION, ProxyEvent, Reply, Request, Response,
    StatusReport,
};
use super::spec::ListenerSet;

/// Overrides the program started as the daemon (tests point it at the built binary).
pub const DAEMON_EXE_ENV: &str = "GAMEDAY_PROXYD_EXE";

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot start the proxy daemon {exe}: {source}")]
    Spawn { exe: PathBuf, source: io::Error },
    #[error("the proxy daemon did not open {socket} within {waited:?}; see {log}")]
    StartTimeout {
        socket: PathBuf,
        waited: Duration,
        log: PathBuf,
    },
    #[error("no proxy daemon is running (nothing answers at {0})")]
    NotRunning(PathBuf),
    #[error("proxy daemon at {socket}: {source}")]
    Io { socket: PathBuf, source: io::Error },
    #[error("the proxy daemon did not answer `{request}` within {timeout:?}")]
    Timeout {
        request: &'static str,
        timeout: Duration,
    },
    #[error("the proxy daemon refused `{request}`: {message}")]
    Refused {
        request: &'static str,
        message: String,
    },
    #[error("unexpected answer to `{request}` from the proxy daemon: {detail}")]
    Protocol {
        request: &'static str,
        detail: String,
    },
    #[error(
        "the running proxy daemon (pid {pid}, gameday {version}) speaks protocol {daemon}, this gameday speaks {client}; stop it with `gameday proxy stop`"
    )]
    VersionMismatch {
        pid: u32,
        version: String,
        daemon: u32,
        client: u32,
    },
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;

#[derive(Debug, Clone)]
pub struct AttachOptions {
    /// Faults are dropped this long after the last heartbeat; heartbeats go every third of it.
    pub lease: Duration,
    /// Program to start as the daemon; default `$GAMEDAY_PROXYD_EXE`, else this executable.
    pub daemon_exe: Option<PathBuf>,
    /// Passed to a daemon this client starts, so it exits once no console is left.
    pub exit_when_idle: Option<Duration>,
    /// How long to wait for a daemon this client started to open its socket.
    pub start_timeout: Duration,
    /// Deadline for each request.
    pub call_timeout: Duration,
    /// The console's identity: its lease and faults survive a reconnect, and only its own
    /// faults are dropped when its lease lapses.
    pub owner: Option<String>,
}

impl AttachOptions {
    pub fn new(lease: Duration) -> AttachOptions {
        AttachOptions {
            lease,
            daemon_exe: None,
            exit_when_idle: None,
            start_timeout: Duration::from_secs(5),
            call_timeout: Duration::from_secs(3),
            owner: None,
        }
    }
}

/// One request/response connection to the daemon.
struct Connection {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl Connection {
    async fn open(socket: &Path) -> io::Result<Connection> {
        let (read, writer) = UnixStream::connect(socket).await?.into_split();
        Ok(Connection {
            reader: BufReader::new(read),
            writer,
        })
    }

    async fn exchange(&mut self, request: &Request) -> io::Result<Response> {
        write_json(&mut self.writer, request).await?;
        let line = read_line(&mut self.reader).await?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the daemon closed the connection",
            )
        })?;
        serde_json::from_str(&line).map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err))
    }

    /// One request with a deadline; the daemon's refusal becomes `ClientError::Refused`.
    async fn call(&mut self, socket: &Path, request: &Request, timeout: Duration) -> Result<Reply> {
        match tokio::time::timeout(timeout, self.exchange(request)).await {
            Ok(Ok(Response::Ok(reply))) => Ok(reply),
            Ok(Ok(Response::Err { message })) => Err(ClientError::Refused {
                request: request.name(),
                message,
            }),
            Ok(Err(source)) => Err(ClientError::Io {
                socket: socket.to_owned(),
                source,
            }),
            Err(_) => Err(ClientError::Timeout {
                request: request.name(),
                timeout,
            }),
        }
    }
}

fn unexpected(request: &'static str, reply: Reply) -> ClientError {
    ClientError::Protocol {
        request,
        detail: format!("{reply:?}"),
    }
}

/// An attached console. Dropping it stops the heartbeats; its faults then lapse with the lease.
pub struct ProxyClient {
    inner: Arc<Inner>,
    heartbeat: JoinHandle<()>,
    /// This client started the daemon (none answered when it attached).
    started_daemon: bool,
}

struct Inner {
    dir: PathBuf,
    socket: PathBuf,
    options: AttachOptions,
    listeners: std::sync::Mutex<ListenerSet>,
    hello: std::sync::Mutex<HelloReply>,
    configured: std::sync::Mutex<ConfigureReport>,
    connection: Mutex<Option<Connection>>,
    /// Attached without a lease: never starts a daemon, never configures, never heartbeats.
    observer: bool,
}

impl ProxyClient {
    /// Connects to the daemon for `dir` (starting one if none answers), attaches with
    /// `lease`, and configures `listeners`. Listeners that fail to bind are reported in
    /// `configure_report()`, not as an error.
    pub async fn attach(
        dir: &Path,
        listeners: &ListenerSet,
        lease: Duration,
    ) -> Result<ProxyClient> {
        Self::attach_with(dir, listeners, AttachOptions::new(lease)).await
    }

    pub async fn attach_with(
        dir: &Path,
        listeners: &ListenerSet,
        options: AttachOptions,
    ) -> Result<ProxyClient> {
        let socket = socket_path(dir);
        let (mut connection, started_daemon) = connect_or_start(dir, &options).await?;
        let hello = say_hello(&mut connection, &socket, &options).await?;
        let report =
            configure_on(&mut connection, &socket, listeners, options.call_timeout).await?;
        info!(pid = hello.pid, socket = %socket.display(), "attached to the proxy daemon");
        let inner = Arc::new(Inner {
            dir: dir.to_owned(),
            socket,
            listeners: std::sync::Mutex::new(listeners.clone()),
            hello: std::sync::Mutex::new(hello),
            configured: std::sync::Mutex::new(report),
            connection: Mutex::new(Some(connection)),
            options,
            observer: false,
        });
        let heartbeat = tokio::spawn(heartbeat_loop(Arc::downgrade(&inner)));
        Ok(ProxyClient {
            inner,
            heartbeat,
            started_daemon,
        })
    }

    /// Connects to the daemon for `dir` if one is running, without attaching: no lease, no
    /// listener changes, no daemon started. For read-only commands and for reverting faults
    /// by id. `None` when no daemon answers.
    pub async fn observe(dir: &Path) -> Result<Option<ProxyClient>> {
        let (connection, socket) = match connect_existing(dir).await {
            Ok(found) => found,
            Err(ClientError::NotRunning(_)) => return Ok(None),
            Err(err) => return Err(err),
        };
        let options = AttachOptions::new(Duration::from_secs(1));
        let inner = Arc::new(Inner {
            dir: dir.to_owned(),
            socket,
            listeners: std::sync::Mutex::new(ListenerSet::default()),
            hello: std::sync::Mutex::new(HelloReply {
                pid: 0,
                version: String::new(),
                protocol: PROTOCOL_VERSION,
                listeners: Vec::new(),
            }),
            configured: std::sync::Mutex::new(ConfigureReport::default()),
            connection: Mutex::new(Some(connection)),
            options,
            observer: true,
        });
        let status = match inner.request(Request::Status).await? {
            Reply::Status(status) => status,
            other => return Err(unexpected("status", other)),
        };
        inner.hello.lock().expect("hello lock").pid = status.pid;
        let heartbeat = tokio::spawn(async {});
        Ok(Some(ProxyClient {
            inner,
            heartbeat,
            started_daemon: false,
        }))
    }

    /// The daemon's answer to the latest `Hello`.
    pub fn daemon(&self) -> HelloReply {
        self.inner.hello.lock().expect("hello lock").clone()
    }

    /// Whether this client started the daemon it is attached to.
    pub fn started_daemon(&self) -> bool {
        self.started_daemon
    }

    /// The outcome of the latest `Configure`: bound addresses and per-listener errors.
    pub fn configure_report(&self) -> ConfigureReport {
        self.inner
            .configured
            .lock()
            .expect("configured lock")
            .clone()
    }

    /// Reconciles the daemon's listeners with `listeners`.
    pub async fn configure(&self, listeners: &ListenerSet) -> Result<ConfigureReport> {
        *self.inner.listeners.lock().expect("listeners lock") = listeners.clone();
        match self.inner.request(Request::configure(listeners)).await? {
            Reply::Configured(report) => {
                *self.inner.configured.lock().expect("configured lock") = report.clone();
                Ok(report)
            }
            other => Err(unexpected("configure", other)),
        }
    }

    /// Sets fault `id` on `listener`; true if that changed anything.
    pub async fn set_fault(
        &self,
        id: &str,
        listener: &str,
        fault: impl Into<Fault>,
        expires_in: Option<Duration>,
    ) -> Result<bool> {
        let request = Request::SetFault {
            id: id.to_owned(),
            listener: listener.to_owned(),
            fault: fault.into(),
            expires_in,
        };
        match self.inner.request(request).await? {
            Reply::FaultSet { changed } => Ok(changed),
            other => Err(unexpected("set_fault", other)),
        }
    }

    /// Clears fault `id`; true if it was active.
    pub async fn clear_fault(&self, id: &str) -> Result<bool> {
        match self
            .inner
            .request(Request::ClearFault { id: id.to_owned() })
            .await?
        {
            Reply::FaultCleared { existed } => Ok(existed),
            other => Err(unexpected("clear_fault", other)),
        }
    }

    /// Clears every fault; returns how many there were.
    pub async fn clear_all(&self) -> Result<usize> {
        match self.inner.request(Request::ClearAll).await? {
            Reply::ClearedAll { count } => Ok(count),
            other => Err(unexpected("clear_all", other)),
        }
    }

    pub async fn status(&self) -> Result<StatusReport> {
        match self.inner.request(Request::Status).await? {
            Reply::Status(status) => Ok(status),
            other => Err(unexpected("status", other)),
        }
    }

    /// Webhook records, periodic counters and fault changes, on their own connection. The
    /// stream ends when the daemon goes away; dropping the receiver unsubscribes.
    pub async fn subscribe(&self) -> Result<mpsc::Receiver<ProxyEvent>> {
        subscribe(&self.inner.socket, self.inner.options.call_timeout).await
    }

    /// Stops the daemon (and with it all forwarding) and waits until it is gone.
    pub async fn shutdown_daemon(self) -> Result<()> {
        self.heartbeat.abort();
        stop_daemon(&self.inner.dir, self.inner.options.start_timeout)
            .await
            .map(|_| ())
    }

    /// Stops heartbeats and disconnects without clearing anything: the faults lapse with the
    /// lease while forwarding goes on.
    pub async fn detach(self) {
        self.heartbeat.abort();
        self.inner.connection.lock().await.take();
    }
}

impl Drop for ProxyClient {
    fn drop(&mut self) {
        self.heartbeat.abort();
    }
}

impl Inner {
    /// Sends `request`, reconnecting (and re-attaching, and starting a daemon if none is left)
    /// once if the connection broke. Every request is idempotent, so a resend is safe.
    async fn request(&self, request: Request) -> Result<Reply> {
        let mut connection = self.connection.lock().await;
        let timeout = self.options.call_timeout;
        if let Some(open) = connection.as_mut() {
            match open.call(&self.socket, &request, timeout).await {
                Err(ClientError::Io { source, .. }) => {
                    debug!("control connection broke ({source}); reconnecting");
                    *connection = None;
                }
                Err(err @ ClientError::Timeout { .. }) => {
                    // The answer may still arrive and would be mistaken for the next one.
                    *connection = None;
                    return Err(err);
                }
                result => return result,
            }
        }
        if self.observer {
            let (mut fresh, _) = connect_existing(&self.dir).await?;
            let result = fresh.call(&self.socket, &request, timeout).await;
            if result.is_ok() {
                *connection = Some(fresh);
            }
            return result;
        }
        let (mut fresh, _) = connect_or_start(&self.dir, &self.options).await?;
        let hello = say_hello(&mut fresh, &self.socket, &self.options).await?;
        *self.hello.lock().expect("hello lock") = hello;
        let listeners = self.listeners.lock().expect("listeners lock").clone();
        let report = configure_on(&mut fresh, &self.socket, &listeners, timeout).await?;
        *self.configured.lock().expect("configured lock") = report;
        let result = fresh.call(&self.socket, &request, timeout).await;
        if !matches!(
            result,
            Err(ClientError::Io { .. } | ClientError::Timeout { .. })
        ) {
            *connection = Some(fresh);
        }
        result
    }
}

async fn heartbeat_loop(inner: Weak<Inner>) {
    let Some(every) = inner.upgrade().map(|inner| inner.options.lease / 3) else {
        return;
    };
    let mut ticks = tokio::time::interval(every.max(Duration::from_millis(10)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        if let Err(err) = inner.request(Request::Heartbeat).await {
            warn!("proxy daemon heartbeat failed: {err}");
        }
    }
}

async fn say_hello(
    connection: &mut Connection,
    socket: &Path,
    options: &AttachOptions,
) -> Result<HelloReply> {
    let request = Request::Hello {
        console_pid: std::process::id(),
        lease: options.lease,
        owner: options.owner.clone(),
    };
    let hello = match connection
        .call(socket, &request, options.call_timeout)
        .await?
    {
        Reply::Hello(hello) => hello,
        other => return Err(unexpected("hello", other)),
    };
    if hello.protocol != PROTOCOL_VERSION {
        return Err(ClientError::VersionMismatch {
            pid: hello.pid,
            version: hello.version,
            daemon: hello.protocol,
            client: PROTOCOL_VERSION,
        });
    }
    Ok(hello)
}

async fn configure_on(
    connection: &mut Connection,
    socket: &Path,
    listeners: &ListenerSet,
    timeout: Duration,
) -> Result<ConfigureReport> {
    match connection
        .call(socket, &Request::configure(listeners), timeout)
        .await?
    {
        Reply::Configured(report) => Ok(report),
        other => Err(unexpected("configure", other)),
    }
}

fn daemon_exe(options: &AttachOptions) -> io::Result<PathBuf> {
    if let Some(exe) = &options.daemon_exe {
        return Ok(exe.clone());
    }
    match std::env::var_os(DAEMON_EXE_ENV) {
        Some(exe) if !exe.is_empty() => Ok(PathBuf::from(exe)),
        _ => std::env::current_exe(),
    }
}

/// Connects to the daemon's socket, or starts a daemon and waits for its socket; whether it
/// started one.
async fn connect_or_start(dir: &Path, options: &AttachOptions) -> Result<(Connection, bool)> {
    let socket = socket_path(dir);
    if let Ok(connection) = Connection::open(&socket).await {
        return Ok((connection, false));
    }
    let exe = daemon_exe(options).map_err(|source| ClientError::Spawn {
        exe: PathBuf::from("gameday"),
        source,
    })?;
    let spawn_error = |source| ClientError::Spawn {
        exe: exe.clone(),
        source,
    };
    prepare_control_dir(dir).map_err(spawn_error)?;
    let log = log_path(dir);
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .map_err(spawn_error)?;
    let mut command = tokio::process::Command::new(&exe);
    command.arg("proxy").arg("daemon").arg("--dir").arg(dir);
    if let Some(idle) = options.exit_when_idle {
        command
            .arg("--exit-when-idle")
            .arg(humantime::format_duration(idle).to_string());
    }
    command
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().map_err(spawn_error)?)
        .stderr(log_file)
        .kill_on_drop(false);
    // The daemon calls setsid itself; tokio reaps it if it exits while this process lives.
    let child = command.spawn().map_err(spawn_error)?;
    info!(exe = %exe.display(), pid = ?child.id(), "started the proxy daemon");
    drop(child);

    let started = Instant::now();
    loop {
        if let Ok(connection) = Connection::open(&socket).await {
            return Ok((connection, true));
        }
        if started.elapsed() >= options.start_timeout {
            return Err(ClientError::StartTimeout {
                socket,
                waited: options.start_timeout,
                log,
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Connects to a running daemon without attaching (no lease, no heartbeats).
async fn connect_existing(dir: &Path) -> Result<(Connection, PathBuf)> {
    let socket = socket_path(dir);
    match Connection::open(&socket).await {
        Ok(connection) => Ok((connection, socket)),
        Err(err)
            if matches!(
                err.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
            ) =>
        {
            Err(ClientError::NotRunning(socket))
        }
        Err(source) => Err(ClientError::Io { socket, source }),
    }
}

/// The status of the daemon for `dir`, without attaching to it.
pub async fn daemon_status(dir: &Path, timeout: Duration) -> Result<StatusReport> {
    let (mut connection, socket) = connect_existing(dir).await?;
    match connection.call(&socket, &Request::Status, timeout).await? {
        Reply::Status(status) => Ok(status),
        other => Err(unexpected("status", other)),
    }
}

/// Stops the daemon for `dir` and waits until its socket is gone. Returns its pid, or
/// `None` if no daemon was running.
pub async fn stop_daemon(dir: &Path, timeout: Duration) -> Result<Option<u32>> {
    let (mut connection, socket) = match connect_existing(dir).await {
        Ok(found) => found,
        Err(ClientError::NotRunning(_)) => return Ok(None),
        Err(err) => return Err(err),
    };
    let pid = match connection.call(&socket, &Request::Status, timeout).await? {
        Reply::Status(status) => status.pid,
        other => return Err(unexpected("status", other)),
    };
    match connection
        .call(&socket, &Request::Shutdown, timeout)
        .await?
    {
        Reply::ShuttingDown => {}
        other => return Err(unexpected("shutdown", other)),
    }
    let started = Instant::now();
    while socket.exists() {
        if started.elapsed() >= timeout {
            return Err(ClientError::Timeout {
                request: "shutdown",
                timeout,
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(Some(pid))
}

async fn subscribe(socket: &Path, timeout: Duration) -> Result<mpsc::Receiver<ProxyEvent>> {
    let mut connection = Connection::open(socket)
        .await
        .map_err(|source| ClientError::Io {
            socket: socket.to_owned(),
            source,
        })?;
    match connection
        .call(socket, &Request::Subscribe, timeout)
        .await?
    {
        Reply::Subscribed => {}
        other => return Err(unexpected("subscribe", other)),
    }
    let (sender, receiver) = mpsc::channel(1024);
    tokio::spawn(async move {
        let Connection { mut reader, writer } = connection;
        loop {
            let event = tokio::select! {
                line = read_line(&mut reader) => match line {
                    Ok(Some(line)) => serde_json::from_str::<ProxyEvent>(&line),
                    Ok(None) | Err(_) => break,
                },
                _ = sender.closed() => break,
            };
            match event {
                Ok(event) => {
                    if sender.send(event).await.is_err() {
                        break;
                    }
                }
                Err(err) => warn!("unreadable event from the proxy daemon: {err}"),
            }
        }
        drop(writer);
    });
    Ok(receiver)
}
