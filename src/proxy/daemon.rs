//! The proxy daemon: owns the listeners and the faults, answers the control socket, and
//! drops every fault when the console's lease lapses. Forwarding never depends on a console.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, DirBuilder, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Mutex, Notify, broadcast, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::faults::{ActiveFault, Fault, TcpFault, WebhookFault};
use super::http::{WebhookFaults, WebhookForwarder};
use super::protocol::{
    ConfigureReport, ConsoleStatus, DropReason, FaultStatus, HelloReply, LeaseStatus,
    ListenerAction, ListenerCounters, ListenerKind, ListenerReport, ListenerState, ListenerStatus,
    MAX_LINE, PROTOCOL_VERSION, ProxyEvent, Reply, Request, Response, StatusReport, TcpCounters,
    WebhookCounters,
};
use super::spec::{ListenerSet, TcpListenerSpec, WebhookListenerSpec};
use super::tcp::{TcpFaults, TcpProxy};

/// Longest lease a console may ask for: faults must never outlive a dead console for long.
const MAX_LEASE: Duration = Duration::from_secs(600);
const COUNTERS_EVERY: Duration = Duration::from_secs(1);
const EVENT_BUFFER: usize = 8192;
/// How often the daemon checks that its control socket is still where clients look for it.
const ORPHAN_CHECK_EVERY: Duration = Duration::from_secs(1);

/// Where the daemon keeps its socket, pid file and log, under the artifacts directory.
pub fn control_dir(dir: &Path) -> PathBuf {
    dir.join("proxyd")
}

pub fn socket_path(dir: &Path) -> PathBuf {
    control_dir(dir).join("control.sock")
}

pub fn pid_path(dir: &Path) -> PathBuf {
    control_dir(dir).join("proxyd.pid")
}

pub fn log_path(dir: &Path) -> PathBuf {
    control_dir(dir).join("proxyd.log")
}

/// Creates `<dir>/proxyd` readable by its owner only, and refuses one owned by someone else.
pub fn prepare_control_dir(dir: &Path) -> io::Result<PathBuf> {
    let control = control_dir(dir);
    fs::create_dir_all(dir)?;
    match DirBuilder::new().mode(0o700).create(&control) {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
        Err(err) => return Err(err),
    }
    let metadata = fs::symlink_metadata(&control)?;
    if !metadata.is_dir() {
        return Err(io::Error::other(format!(
            "{} exists and is not a directory",
            control.display()
        )));
    }
    if metadata.uid() != nix::unistd::geteuid().as_raw() {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} belongs to another user; refusing to use it",
                control.display()
            ),
        ));
    }
    fs::set_permissions(&control, Permissions::from_mode(0o700))?;
    Ok(control)
}

#[derive(Debug, Clone, Default)]
pub struct DaemonOptions {
    /// Exit once no console has held the lease for this long.
    pub exit_when_idle: Option<Duration>,
}

/// A daemon running on the current tokio runtime.
pub struct DaemonHandle {
    socket: PathBuf,
    shutdown: CancellationToken,
    finished: JoinHandle<()>,
    done: bool,
}

impl DaemonHandle {
    pub fn socket_path(&self) -> &Path {
        &self.socket
    }

    /// Asks the daemon to stop and waits until it has.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        self.wait().await;
    }

    /// Waits until the daemon stops by itself (`Shutdown` request or idle exit). Cancel-safe.
    pub async fn wait(&mut self) {
        if !self.done {
            let _ = (&mut self.finished).await;
            self.done = true;
        }
    }
}

/// The proxy daemon; see the module docs.
pub struct Daemon {
    started: Instant,
    state: Mutex<State>,
    events: broadcast::Sender<ProxyEvent>,
    /// Wakes the janitor when a deadline may have moved.
    janitor: Notify,
    shutdown: CancellationToken,
    options: DaemonOptions,
    next_connection: AtomicU64,
}

#[derive(Default)]
struct State {
    listeners: BTreeMap<String, Listener>,
    faults: BTreeMap<String, FaultEntry>,
    /// By console identity (or connection, for a console that sent none).
    consoles: HashMap<String, Console>,
    /// Since when no console has held a lease.
    idle_since: Option<Instant>,
    /// Orders faults by when they were set, which is the order webhook faults are tried in.
    fault_sequence: u64,
}

struct Listener {
    spec: ListenerSpec,
    running: Running,
}

#[derive(Clone, PartialEq)]
enum ListenerSpec {
    Tcp(TcpListenerSpec),
    Webhook(WebhookListenerSpec),
}

impl ListenerSpec {
    /// Where it listens and where it forwards to, for messages.
    fn endpoints(&self) -> (std::net::SocketAddr, String) {
        match self {
            ListenerSpec::Tcp(spec) => (spec.listen, spec.upstream.clone()),
            ListenerSpec::Webhook(spec) => (spec.listen, spec.upstream.clone()),
        }
    }

    fn name(&self) -> &str {
        match self {
            ListenerSpec::Tcp(spec) => &spec.name,
            ListenerSpec::Webhook(spec) => &spec.name,
        }
    }

    fn kind(&self) -> ListenerKind {
        match self {
            ListenerSpec::Tcp(_) => ListenerKind::Tcp,
            ListenerSpec::Webhook(_) => ListenerKind::Webhook,
        }
    }
}

enum Running {
    Tcp {
        proxy: TcpProxy,
        faults: watch::Sender<TcpFaults>,
    },
    Webhook {
        forwarder: WebhookForwarder,
        faults: watch::Sender<WebhookFaults>,
    },
    Failed(String),
}

impl Running {
    async fn stop(self) {
        match self {
            // Dropping the fault sender closes the listener's open connections.
            Running::Tcp { proxy, faults } => {
                drop(faults);
                proxy.stop().await;
            }
            Running::Webhook { forwarder, faults } => {
                drop(faults);
                forwarder.stop().await;
            }
            Running::Failed(_) => {}
        }
    }
}

struct FaultEntry {
    /// The console whose lease keeps it alive; `None` for faults set outside a console.
    owner: Option<String>,
    listener: String,
    fault: Fault,
    nonce: u64,
    sequence: u64,
    set_at: Instant,
    expires_at: Option<Instant>,
}

struct Console {
    pid: u32,
    lease: Duration,
    last_seen: Instant,
    connected: bool,
}

impl Console {
    fn lapses_at(&self) -> Instant {
        self.last_seen + self.lease
    }
}

/// A control connection's own state.
struct Session {
    id: u64,
    /// Set by `Hello`: this connection is a console holding the lease.
    console: Option<Attached>,
}

#[derive(Clone)]
struct Attached {
    pid: u32,
    lease: Duration,
    /// The key of this console's lease and faults.
    key: String,
}

fn fault_kind(fault: &Fault) -> ListenerKind {
    match fault {
        Fault::Tcp(_) => ListenerKind::Tcp,
        Fault::Webhook(_) => ListenerKind::Webhook,
    }
}

impl Daemon {
    /// Opens the control socket under `<dir>/proxyd/` and starts serving on the current
    /// runtime. Fails if another daemon already answers there.
    pub async fn start(dir: &Path, options: DaemonOptions) -> io::Result<DaemonHandle> {
        prepare_control_dir(dir)?;
        let socket = socket_path(dir);
        if UnixStream::connect(&socket).await.is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("a proxy daemon is already running at {}", socket.display()),
            ));
        }
        match fs::remove_file(&socket) {
            Ok(()) => info!(socket = %socket.display(), "removed a stale control socket"),
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(err),
        }
        let listener = UnixListener::bind(&socket).map_err(|err| {
            io::Error::new(
                err.kind(),
                format!("cannot listen on {}: {err}", socket.display()),
            )
        })?;
        fs::set_permissions(&socket, Permissions::from_mode(0o600))?;
        let socket_inode = fs::metadata(&socket)?.ino();
        let pid_file = pid_path(dir);
        fs::write(&pid_file, format!("{}\n", std::process::id()))?;

        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let daemon = Arc::new(Daemon {
            started: Instant::now(),
            state: Mutex::new(State {
                idle_since: Some(Instant::now()),
                ..State::default()
            }),
            events,
            janitor: Notify::new(),
            shutdown: CancellationToken::new(),
            options,
            next_connection: AtomicU64::new(1),
        });
        info!(pid = std::process::id(), socket = %socket.display(), "proxy daemon started");

        let shutdown = daemon.shutdown.clone();
        let socket_file = socket.clone();
        let finished = tokio::spawn(async move {
            let accept = tokio::spawn(daemon.clone().accept_loop(listener));
            let janitor = tokio::spawn(daemon.clone().janitor_loop());
            let ticker = tokio::spawn(daemon.clone().counters_loop());
            let orphan = tokio::spawn(
                daemon
                    .clone()
                    .orphan_loop(socket_file.clone(), socket_inode),
            );
            daemon.shutdown.cancelled().await;
            accept.abort();
            janitor.abort();
            ticker.abort();
            orphan.abort();
            // Only our own socket: a daemon started since may have bound the path.
            if fs::metadata(&socket_file).is_ok_and(|m| m.ino() == socket_inode) {
                let _ = fs::remove_file(&socket_file);
                let _ = fs::remove_file(&pid_file);
            }
            daemon.stop_everything().await;
            info!("proxy daemon stopped");
        });
        Ok(DaemonHandle {
            socket,
            shutdown,
            finished,
            done: false,
        })
    }

    async fn stop_everything(&self) {
        let mut state = self.state.lock().await;
        let ids: Vec<String> = state.faults.keys().cloned().collect();
        self.drop_faults(&mut state, &ids, DropReason::Shutdown);
        let listeners = std::mem::take(&mut state.listeners);
        for (_, listener) in listeners {
            listener.running.stop().await;
        }
    }

    async fn accept_loop(self: Arc<Self>, listener: UnixListener) {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    // The socket file is 0600 already; the kernel's word on the peer is the
                    // second lock on the door.
                    let me = nix::unistd::geteuid().as_raw();
                    match stream.peer_cred() {
                        Ok(cred) if cred.uid() == me => {}
                        Ok(cred) => {
                            warn!(
                                uid = cred.uid(),
                                "refused a control connection from another user"
                            );
                            continue;
                        }
                        Err(err) => {
                            warn!(
                                "refused a control connection: cannot read its credentials: {err}"
                            );
                            continue;
                        }
                    }
                    let id = self.next_connection.fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(self.clone().serve_control(stream, id));
                }
                Err(err) => {
                    warn!("control socket accept failed: {err}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    async fn serve_control(self: Arc<Self>, stream: UnixStream, id: u64) {
        let (read, mut write) = stream.into_split();
        let mut reader = BufReader::new(read);
        let mut session = Session { id, console: None };
        loop {
            let line = tokio::select! {
                line = read_line(&mut reader) => line,
                _ = self.shutdown.cancelled() => break,
            };
            let line = match line {
                Ok(Some(line)) => line,
                Ok(None) => break,
                Err(err) => {
                    let _ = write_json(
                        &mut write,
                        &Response::Err {
                            message: err.to_string(),
                        },
                    )
                    .await;
                    break;
                }
            };
            let request = match serde_json::from_str::<Request>(&line) {
                Ok(request) => request,
                Err(err) => {
                    let message = format!("cannot read the request: {err}");
                    if write_json(&mut write, &Response::Err { message })
                        .await
                        .is_err()
                    {
                        break;
                    }
                    continue;
                }
            };
            self.touch(&session).await;
            match request {
                Request::Subscribe => {
                    let events = self.events.subscribe();
                    if write_json(&mut write, &Response::Ok(Reply::Subscribed))
                        .await
                        .is_ok()
                    {
                        self.stream_events(events, reader, write).await;
                    }
                    break;
                }
                Request::Shutdown => {
                    info!("shutdown requested over the control socket");
                    let _ = write_json(&mut write, &Response::Ok(Reply::ShuttingDown)).await;
                    self.shutdown.cancel();
                    break;
                }
                request => {
                    let response = match self.handle(&mut session, request).await {
                        Ok(reply) => Response::Ok(reply),
                        Err(message) => Response::Err { message },
                    };
                    if write_json(&mut write, &response).await.is_err() {
                        break;
                    }
                }
            }
        }
        if let Some(attached) = &session.console {
            let mut state = self.state.lock().await;
            if let Some(console) = state.consoles.get_mut(&attached.key) {
                console.connected = false;
                info!(
                    pid = console.pid,
                    "console disconnected; its lease runs out in {:?}", console.lease
                );
            }
        }
    }

    async fn stream_events(
        &self,
        mut events: broadcast::Receiver<ProxyEvent>,
        mut reader: BufReader<OwnedReadHalf>,
        mut write: OwnedWriteHalf,
    ) {
        loop {
            let event = tokio::select! {
                event = events.recv() => event,
                // The subscriber sends nothing more; EOF or garbage both end the stream.
                _ = read_line(&mut reader) => return,
                _ = self.shutdown.cancelled() => return,
            };
            let event = match event {
                Ok(event) => event,
                Err(broadcast::error::RecvError::Lagged(missed)) => ProxyEvent::Lagged { missed },
                Err(broadcast::error::RecvError::Closed) => return,
            };
            if write_json(&mut write, &event).await.is_err() {
                return;
            }
        }
    }

    /// Any request from a console renews its lease.
    async fn touch(&self, session: &Session) {
        let Some(attached) = &session.console else {
            return;
        };
        let mut state = self.state.lock().await;
        let console = state
            .consoles
            .entry(attached.key.clone())
            .or_insert(Console {
                pid: attached.pid,
                lease: attached.lease,
                last_seen: Instant::now(),
                connected: true,
            });
        console.last_seen = Instant::now();
        console.connected = true;
        console.lease = attached.lease;
        state.idle_since = None;
    }

    async fn handle(&self, session: &mut Session, request: Request) -> Result<Reply, String> {
        match request {
            Request::Hello {
                console_pid,
                lease,
                owner,
            } => {
                if lease.is_zero() || lease > MAX_LEASE {
                    return Err(format!(
                        "lease must be between 1ms and {}",
                        humantime::format_duration(MAX_LEASE)
                    ));
                }
                let key = owner.unwrap_or_else(|| format!("connection-{}", session.id));
                session.console = Some(Attached {
                    pid: console_pid,
                    lease,
                    key: key.clone(),
                });
                self.touch(session).await;
                self.janitor.notify_one();
                info!(pid = console_pid, ?lease, console = %key, "console attached");
                let state = self.state.lock().await;
                Ok(Reply::Hello(HelloReply {
                    pid: std::process::id(),
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                    protocol: PROTOCOL_VERSION,
                    listeners: listener_statuses(&state),
                }))
            }
            Request::Configure { tcp, webhooks } => {
                let set = ListenerSet { tcp, webhooks };
                set.check_names()?;
                let me = session.console.as_ref().map(|a| a.key.as_str());
                Ok(Reply::Configured(self.configure(set, me).await))
            }
            Request::Heartbeat => Ok(Reply::Heartbeat),
            Request::SetFault {
                id,
                listener,
                fault,
                expires_in,
            } => {
                let Some(attached) = &session.console else {
                    return Err(
                        "send hello first: every fault lives under a console's lease".to_owned(),
                    );
                };
                self.set_fault(id, attached.key.clone(), listener, fault, expires_in)
                    .await
            }
            Request::ClearFault { id } => {
                let mut state = self.state.lock().await;
                let existed = state.faults.contains_key(&id);
                self.drop_faults(&mut state, &[id], DropReason::Cleared);
                Ok(Reply::FaultCleared { existed })
            }
            Request::ClearAll => {
                let mut state = self.state.lock().await;
                let ids: Vec<String> = state.faults.keys().cloned().collect();
                self.drop_faults(&mut state, &ids, DropReason::ClearedAll);
                Ok(Reply::ClearedAll { count: ids.len() })
            }
            Request::Status => Ok(Reply::Status(self.status().await)),
            Request::Subscribe | Request::Shutdown => {
                Err("handled by the connection loop".to_owned())
            }
        }
    }

    /// Reconciles the listeners with `set`. While another console is attached, or a fault of
    /// another owner is set, it only adds: a listener another console may be using is never
    /// removed or restarted (that would cut its traffic), and a different spec for it is
    /// reported as failed with the reason.
    async fn configure(&self, set: ListenerSet, me: Option<&str>) -> ConfigureReport {
        let wanted: Vec<ListenerSpec> = set
            .tcp
            .into_iter()
            .map(ListenerSpec::Tcp)
            .chain(set.webhooks.into_iter().map(ListenerSpec::Webhook))
            .collect();
        let mut state = self.state.lock().await;
        let shared = state.consoles.keys().any(|key| Some(key.as_str()) != me)
            || state
                .faults
                .values()
                .any(|entry| entry.owner.as_deref() != me);

        let removed: Vec<String> = state
            .listeners
            .keys()
            .filter(|_| !shared)
            .filter(|name| !wanted.iter().any(|spec| spec.name() == name.as_str()))
            .cloned()
            .collect();
        for name in removed {
            let orphaned: Vec<String> = state
                .faults
                .iter()
                .filter(|(_, entry)| entry.listener == name)
                .map(|(id, _)| id.clone())
                .collect();
            self.drop_faults(&mut state, &orphaned, DropReason::ListenerRemoved);
            if let Some(listener) = state.listeners.remove(&name) {
                info!(listener = %name, "listener removed");
                listener.running.stop().await;
            }
        }

        let mut reports = Vec::new();
        for spec in wanted {
            let name = spec.name().to_owned();
            let previous = state.listeners.remove(&name);
            let action = match &previous {
                Some(listener)
                    if listener.spec == spec && !matches!(listener.running, Running::Failed(_)) =>
                {
                    ListenerAction::Unchanged
                }
                Some(listener) if shared => {
                    let (listen, upstream) = listener.spec.endpoints();
                    warn!(listener = %name, "not changed: in use by another console");
                    reports.push(ListenerReport {
                        name: name.clone(),
                        kind: listener.spec.kind(),
                        bound: None,
                        action: ListenerAction::Failed,
                        error: Some(format!(
                            "another console uses it as {listen} -> {}; not changed while other consoles or their faults are active (stop them, or use the same [[proxy]]/[[webhook]] settings)",
                            crate::redact::url(&upstream)
                        )),
                    });
                    if let Some(previous) = previous {
                        state.listeners.insert(name, previous);
                    }
                    continue;
                }
                Some(_) => ListenerAction::Restarted,
                None => ListenerAction::Started,
            };
            let listener = if action == ListenerAction::Unchanged {
                previous.expect("an unchanged listener exists")
            } else {
                if let Some(previous) = previous {
                    info!(listener = %name, "listener changed, restarting");
                    previous.running.stop().await;
                }
                // Faults of the other kind cannot act on the new listener.
                let mismatched: Vec<String> = state
                    .faults
                    .iter()
                    .filter(|(_, entry)| {
                        entry.listener == name && fault_kind(&entry.fault) != spec.kind()
                    })
                    .map(|(id, _)| id.clone())
                    .collect();
                self.drop_faults(&mut state, &mismatched, DropReason::ListenerRemoved);
                let running = self.start_listener(&spec, &state);
                Listener { spec, running }
            };
            let (bound, error) = match &listener.running {
                Running::Tcp { proxy, .. } => (Some(proxy.bound()), None),
                Running::Webhook { forwarder, .. } => (Some(forwarder.bound()), None),
                Running::Failed(error) => (None, Some(error.clone())),
            };
            if let Some(error) = &error {
                warn!(listener = %name, "listener failed to start: {error}");
            }
            reports.push(ListenerReport {
                name: name.clone(),
                kind: listener.spec.kind(),
                bound,
                action: if error.is_some() {
                    ListenerAction::Failed
                } else {
                    action
                },
                error,
            });
            state.listeners.insert(name, listener);
        }
        ConfigureReport { listeners: reports }
    }

    fn start_listener(&self, spec: &ListenerSpec, state: &State) -> Running {
        match spec {
            ListenerSpec::Tcp(spec) => {
                let (sender, receiver) = watch::channel(tcp_faults(state, &spec.name));
                match TcpProxy::start(spec, receiver) {
                    Ok(proxy) => Running::Tcp {
                        proxy,
                        faults: sender,
                    },
                    Err(err) => Running::Failed(format!("bind {}: {err}", spec.listen)),
                }
            }
            ListenerSpec::Webhook(spec) => {
                let (sender, receiver) = watch::channel(webhook_faults(state, &spec.name));
                match WebhookForwarder::start(spec, receiver, self.events.clone()) {
                    Ok(forwarder) => Running::Webhook {
                        forwarder,
                        faults: sender,
                    },
                    Err(err) => Running::Failed(err),
                }
            }
        }
    }

    async fn set_fault(
        &self,
        id: String,
        owner: String,
        listener: String,
        fault: Fault,
        expires_in: Option<Duration>,
    ) -> Result<Reply, String> {
        if id.is_empty() {
            return Err("a fault needs a non-empty id".to_owned());
        }
        fault.validate()?;
        let mut state = self.state.lock().await;
        let Some(target) = state.listeners.get(&listener) else {
            return Err(format!("no listener named {listener:?}"));
        };
        if target.spec.kind() != fault_kind(&fault) {
            let wanted = match fault_kind(&fault) {
                ListenerKind::Tcp => "a TCP proxy",
                ListenerKind::Webhook => "a webhook listener",
            };
            return Err(format!(
                "fault {fault} needs {wanted}, and {listener:?} is not one"
            ));
        }
        let now = Instant::now();
        let expires_at = expires_in.map(|after| now + after);
        if let Some(entry) = state.faults.get_mut(&id)
            && entry.listener == listener
            && entry.fault == fault
        {
            // The same fault again: keep its connections' draws, refresh its expiry.
            entry.expires_at = expires_at;
            self.janitor.notify_one();
            return Ok(Reply::FaultSet { changed: false });
        }
        if state.faults.contains_key(&id) {
            self.drop_faults(&mut state, std::slice::from_ref(&id), DropReason::Replaced);
        }
        state.fault_sequence += 1;
        let entry = FaultEntry {
            owner: Some(owner),
            listener: listener.clone(),
            fault: fault.clone(),
            nonce: rand::random(),
            sequence: state.fault_sequence,
            set_at: now,
            expires_at,
        };
        state.faults.insert(id.clone(), entry);
        publish(&state, &listener);
        info!(fault = %id, %listener, "fault applied: {fault}");
        let _ = self.events.send(ProxyEvent::FaultApplied {
            id,
            listener,
            fault,
            expires_in,
        });
        self.janitor.notify_one();
        Ok(Reply::FaultSet { changed: true })
    }

    /// Removes faults, pushes the new fault lists to their listeners, and reports each.
    fn drop_faults(&self, state: &mut State, ids: &[String], reason: DropReason) {
        let mut touched = Vec::new();
        for id in ids {
            let Some(entry) = state.faults.remove(id) else {
                continue;
            };
            info!(fault = %id, listener = %entry.listener, ?reason, "fault dropped: {}", entry.fault);
            let _ = self.events.send(ProxyEvent::FaultDropped {
                id: id.clone(),
                listener: entry.listener.clone(),
                reason,
            });
            if !touched.contains(&entry.listener) {
                touched.push(entry.listener);
            }
        }
        for listener in touched {
            publish(state, &listener);
        }
    }

    async fn status(&self) -> StatusReport {
        let state = self.state.lock().await;
        let now = Instant::now();
        let faults = state
            .faults
            .iter()
            .map(|(id, entry)| FaultStatus {
                id: id.clone(),
                listener: entry.listener.clone(),
                fault: entry.fault.clone(),
                age: now.duration_since(entry.set_at),
                expires_in: entry.expires_at.map(|at| at.saturating_duration_since(now)),
            })
            .collect();
        let consoles = state
            .consoles
            .values()
            .map(|console| ConsoleStatus {
                pid: console.pid,
                lease: console.lease,
                last_seen: now.duration_since(console.last_seen),
                connected: console.connected,
            })
            .collect();
        let remaining = state
            .consoles
            .values()
            .map(Console::lapses_at)
            .max()
            .map(|at| at.saturating_duration_since(now));
        StatusReport {
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            uptime: self.started.elapsed(),
            listeners: listener_statuses(&state),
            faults,
            lease: LeaseStatus {
                consoles,
                remaining,
            },
        }
    }

    /// Expires faults, lapses leases, and ends an idle daemon, each at its deadline.
    async fn janitor_loop(self: Arc<Self>) {
        loop {
            let next = {
                let mut state = self.state.lock().await;
                self.sweep(&mut state, Instant::now())
            };
            let wake = tokio::time::Instant::from_std(
                next.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600)),
            );
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => {}
                _ = self.janitor.notified() => {}
            }
        }
    }

    /// Applies every deadline that has passed and returns the next one.
    fn sweep(&self, state: &mut State, now: Instant) -> Option<Instant> {
        let expired: Vec<String> = state
            .faults
            .iter()
            .filter(|(_, entry)| entry.expires_at.is_some_and(|at| at <= now))
            .map(|(id, _)| id.clone())
            .collect();
        self.drop_faults(state, &expired, DropReason::Expired);

        let lapsed: Vec<String> = state
            .consoles
            .iter()
            .filter(|(_, console)| console.lapses_at() <= now)
            .map(|(key, _)| key.clone())
            .collect();
        for key in &lapsed {
            if let Some(console) = state.consoles.remove(key) {
                info!(
                    pid = console.pid,
                    console = %key,
                    "console lease lapsed: nothing heard for {:?} (lease {:?})",
                    now.duration_since(console.last_seen),
                    console.lease
                );
            }
        }
        // A lapsed console's faults go; other consoles' faults stay. Faults of no console (set
        // by a client that named none) go once no console is left at all.
        let dropped: Vec<String> = state
            .faults
            .iter()
            .filter(|(_, entry)| match &entry.owner {
                Some(owner) => !state.consoles.contains_key(owner),
                None => state.consoles.is_empty(),
            })
            .map(|(id, _)| id.clone())
            .collect();
        if !dropped.is_empty() {
            warn!(
                "dropping {} fault(s) whose console no longer holds the lease",
                dropped.len()
            );
            self.drop_faults(state, &dropped, DropReason::LeaseLapsed);
        }

        let mut next: Option<Instant> = None;
        let mut consider = |at: Instant| next = Some(next.map_or(at, |next: Instant| next.min(at)));
        if state.consoles.is_empty() {
            let idle_since = *state.idle_since.get_or_insert(now);
            if let Some(idle_limit) = self.options.exit_when_idle {
                if now.duration_since(idle_since) >= idle_limit {
                    info!("no console for {idle_limit:?}: exiting");
                    self.shutdown.cancel();
                } else {
                    consider(idle_since + idle_limit);
                }
            }
        } else {
            state.idle_since = None;
        }
        state
            .faults
            .values()
            .filter_map(|entry| entry.expires_at)
            .for_each(&mut consider);
        state
            .consoles
            .values()
            .map(Console::lapses_at)
            .for_each(&mut consider);
        next
    }

    /// A daemon nobody can reach any more (its directory deleted, its socket replaced) and that
    /// carries nothing for anyone exits by itself instead of holding its ports forever.
    async fn orphan_loop(self: Arc<Self>, socket: PathBuf, inode: u64) {
        let mut ticks = tokio::time::interval(ORPHAN_CHECK_EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut warned = false;
        loop {
            ticks.tick().await;
            let reachable = fs::metadata(&socket).is_ok_and(|m| m.ino() == inode);
            if reachable {
                continue;
            }
            let state = self.state.lock().await;
            if state.consoles.is_empty() && state.faults.is_empty() {
                info!(socket = %socket.display(), "control socket gone and nothing to carry: exiting");
                self.shutdown.cancel();
                return;
            }
            if !warned {
                warn!(socket = %socket.display(), "control socket gone; exiting once no console and no fault is left");
                warned = true;
            }
        }
    }

    async fn counters_loop(self: Arc<Self>) {
        let mut ticks = tokio::time::interval(COUNTERS_EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if self.events.receiver_count() == 0 {
                continue;
            }
            let listeners = listener_statuses(&*self.state.lock().await);
            let _ = self.events.send(ProxyEvent::Counters {
                at: Utc::now(),
                listeners,
            });
        }
    }
}

fn active_faults<F>(
    state: &State,
    listener: &str,
    pick: impl Fn(&Fault) -> Option<&F>,
) -> Arc<Vec<ActiveFault<F>>>
where
    F: Clone,
{
    let mut entries: Vec<(&String, &FaultEntry)> = state
        .faults
        .iter()
        .filter(|(_, entry)| entry.listener == listener)
        .collect();
    entries.sort_by_key(|(_, entry)| entry.sequence);
    let faults = entries
        .into_iter()
        .filter_map(|(id, entry)| {
            pick(&entry.fault).map(|fault| ActiveFault {
                id: id.clone(),
                nonce: entry.nonce,
                fault: fault.clone(),
                since: entry.set_at,
            })
        })
        .collect();
    Arc::new(faults)
}

fn tcp_faults(state: &State, listener: &str) -> TcpFaults {
    active_faults::<TcpFault>(state, listener, |fault| match fault {
        Fault::Tcp(fault) => Some(fault),
        Fault::Webhook(_) => None,
    })
}

fn webhook_faults(state: &State, listener: &str) -> WebhookFaults {
    active_faults::<WebhookFault>(state, listener, |fault| match fault {
        Fault::Webhook(fault) => Some(fault),
        Fault::Tcp(_) => None,
    })
}

/// Hands a listener its current faults; existing connections pick them up at once.
fn publish(state: &State, listener: &str) {
    match state
        .listeners
        .get(listener)
        .map(|listener| &listener.running)
    {
        Some(Running::Tcp { faults, .. }) => {
            faults.send_replace(tcp_faults(state, listener));
        }
        Some(Running::Webhook { faults, .. }) => {
            faults.send_replace(webhook_faults(state, listener));
        }
        Some(Running::Failed(_)) | None => {}
    }
}

fn listener_statuses(state: &State) -> Vec<ListenerStatus> {
    state
        .listeners
        .iter()
        .map(|(name, listener)| {
            let (listen, upstream) = match &listener.spec {
                ListenerSpec::Tcp(spec) => (spec.listen, spec.upstream.clone()),
                ListenerSpec::Webhook(spec) => (spec.listen, spec.upstream.clone()),
            };
            let (bound, state, counters) = match &listener.running {
                Running::Tcp { proxy, .. } => (
                    Some(proxy.bound()),
                    proxy.state(),
                    ListenerCounters::Tcp(proxy.counters()),
                ),
                Running::Webhook { forwarder, .. } => (
                    Some(forwarder.bound()),
                    ListenerState::Running,
                    ListenerCounters::Webhook(forwarder.counters()),
                ),
                Running::Failed(error) => {
                    let counters = match listener.spec.kind() {
                        ListenerKind::Tcp => ListenerCounters::Tcp(TcpCounters::default()),
                        ListenerKind::Webhook => {
                            ListenerCounters::Webhook(WebhookCounters::default())
                        }
                    };
                    (
                        None,
                        ListenerState::Failed {
                            error: error.clone(),
                        },
                        counters,
                    )
                }
            };
            ListenerStatus {
                name: name.clone(),
                kind: listener.spec.kind(),
                listen,
                bound,
                // Masked before it leaves the daemon: status replies and events carry no secret.
                upstream: crate::redact::url(&upstream),
                state,
                counters,
            }
        })
        .collect()
}

/// Reads one line of at most `MAX_LINE` bytes; `None` at end of stream.
pub(crate) async fn read_line<R>(reader: &mut R) -> io::Result<Option<String>>
where
    R: tokio::io::AsyncBufRead + Unpin,
{
    let mut line = Vec::new();
    let read = tokio::io::AsyncReadExt::take(&mut *reader, MAX_LINE as u64 + 1)
        .read_until(b'\n', &mut line)
        .await?;
    if read == 0 {
        return Ok(None);
    }
    if line.last() != Some(&b'\n') {
        let problem = if line.len() > MAX_LINE {
            "line too long"
        } else {
            "stream ended mid-line"
        };
        return Err(io::Error::new(io::ErrorKind::InvalidData, problem));
    }
    String::from_utf8(line)
        .map(Some)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "line is not UTF-8"))
}

pub(crate) async fn write_json<W, T>(writer: &mut W, value: &T) -> io::Result<()>
where
    W: tokio::io::AsyncWrite + Unpin,
    T: serde::Serialize,
{
    let mut line = serde_json::to_vec(value).map_err(io::Error::other)?;
    line.push(b'\n');
    writer.write_all(&line).await
}

#[cfg(test)]
mod lease_tests {
    //! The lease rules on an injected clock: `sweep` takes "now" as an argument.

    use super::*;

    fn daemon() -> Daemon {
        let (events, _) = broadcast::channel(16);
        Daemon {
            started: Instant::now(),
            state: Mutex::new(State::default()),
            events,
            janitor: Notify::new(),
            shutdown: CancellationToken::new(),
            options: DaemonOptions::default(),
            next_connection: AtomicU64::new(1),
        }
    }

    fn console(last_seen: Instant) -> Console {
        Console {
            pid: 1,
            lease: Duration::from_secs(3),
            last_seen,
            connected: false,
        }
    }

    fn fault(owner: Option<&str>, set_at: Instant) -> FaultEntry {
        FaultEntry {
            owner: owner.map(str::to_string),
            listener: "p".into(),
            fault: Fault::Tcp(TcpFault::Down),
            nonce: 0,
            sequence: 0,
            set_at,
            expires_at: None,
        }
    }

    fn ids(state: &State) -> Vec<&str> {
        state.faults.keys().map(String::as_str).collect()
    }

    #[test]
    fn a_lapsed_console_loses_exactly_its_own_faults_at_the_lease_end() {
        let daemon = daemon();
        let t0 = Instant::now();
        let mut state = State::default();
        state.consoles.insert("alice".into(), console(t0));
        state
            .consoles
            .insert("bob".into(), console(t0 + Duration::from_secs(2)));
        state.faults.insert("a1".into(), fault(Some("alice"), t0));
        state.faults.insert("b1".into(), fault(Some("bob"), t0));
        state.faults.insert("anon".into(), fault(None, t0));

        let next = daemon.sweep(&mut state, t0 + Duration::from_millis(2999));
        assert_eq!(ids(&state), ["a1", "anon", "b1"], "nothing lapses early");
        assert_eq!(
            next,
            Some(t0 + Duration::from_secs(3)),
            "wakes at alice's lease end"
        );

        daemon.sweep(&mut state, t0 + Duration::from_secs(3));
        assert_eq!(
            ids(&state),
            ["anon", "b1"],
            "alice's fault goes at her lease end; bob's stays while he is heard from"
        );

        daemon.sweep(&mut state, t0 + Duration::from_secs(5));
        assert!(
            state.faults.is_empty(),
            "bob's goes with his lease, and a fault of no console once none is left"
        );
    }

    #[test]
    fn a_console_heard_from_again_keeps_its_faults() {
        let daemon = daemon();
        let t0 = Instant::now();
        let mut state = State::default();
        state.consoles.insert("alice".into(), console(t0));
        state.faults.insert("a1".into(), fault(Some("alice"), t0));
        state.consoles.get_mut("alice").unwrap().last_seen = t0 + Duration::from_secs(2);
        daemon.sweep(&mut state, t0 + Duration::from_secs(4));
        assert_eq!(ids(&state), ["a1"]);
        daemon.sweep(&mut state, t0 + Duration::from_secs(5));
        assert!(state.faults.is_empty());
    }
}
