//! The TCP proxy: accept, connect upstream, and pump each direction through the active faults.
//!
//! Each connection runs in one task that polls three things concurrently: one pump future per
//! direction (so a fault delays or drops one way without touching the other) and the
//! connection's own timers (`reset`, `blackhole` close, `down`). The pumps borrow the two
//! sockets, so closing the connection is just dropping them, then choosing FIN or RST.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until};
use tracing::{debug, info, warn};

use super::faults::{ActiveFault, Direction, TcpFault, connection_draw, jittered};
use super::protocol::{ListenerState, TcpCounters};
use super::spec::TcpListenerSpec;
use crate::redact;

/// The faults on one listener, as published by the daemon. Dropping the sender stops the
/// listener and closes its connections.
pub(crate) type TcpFaults = Arc<Vec<ActiveFault<TcpFault>>>;

/// Read size per direction: big enough that bulk transfers cost few syscalls per megabyte.
const CHUNK: usize = 64 * 1024;
/// Most data held back per direction while a latency fault delays it.
const MAX_QUEUED: usize = 4 * 1024 * 1024;
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const REBIND_RETRY: Duration = Duration::from_millis(500);
const LISTEN_BACKLOG: u32 = 1024;

/// A running TCP proxy listener.
pub(crate) struct TcpProxy {
    shared: Arc<Shared>,
    bound: SocketAddr,
    task: JoinHandle<()>,
}

struct Shared {
    name: String,
    upstream: String,
    /// `upstream` as logs show it: a URL-shaped upstream may carry credentials.
    shown_upstream: String,
    counters: Counters,
    state: Mutex<ListenerState>,
}

#[derive(Default)]
struct Counters {
    active: AtomicU64,
    accepted: AtomicU64,
    bytes_upstream: AtomicU64,
    bytes_downstream: AtomicU64,
    connect_errors: AtomicU64,
}

impl Counters {
    fn add_bytes(&self, flow: Direction, bytes: usize) {
        let counter = match flow {
            Direction::Upstream => &self.bytes_upstream,
            _ => &self.bytes_downstream,
        };
        counter.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    fn snapshot(&self) -> TcpCounters {
        TcpCounters {
            active: self.active.load(Ordering::Relaxed),
            accepted: self.accepted.load(Ordering::Relaxed),
            bytes_upstream: self.bytes_upstream.load(Ordering::Relaxed),
            bytes_downstream: self.bytes_downstream.load(Ordering::Relaxed),
            connect_errors: self.connect_errors.load(Ordering::Relaxed),
        }
    }
}

/// Binds the listen address with SO_REUSEADDR so a restart or a cleared `down` can rebind
/// while old connections linger in TIME_WAIT.
pub(crate) fn bind_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

impl TcpProxy {
    /// Binds now (so the caller learns the port or the error) and serves in the background.
    pub(crate) fn start(
        spec: &TcpListenerSpec,
        faults: watch::Receiver<TcpFaults>,
    ) -> io::Result<TcpProxy> {
        let listener = bind_listener(spec.listen)?;
        let bound = listener.local_addr()?;
        let shared = Arc::new(Shared {
            name: spec.name.clone(),
            upstream: spec.upstream.clone(),
            shown_upstream: redact::url(&spec.upstream),
            counters: Counters::default(),
            state: Mutex::new(ListenerState::Running),
        });
        info!(listener = %spec.name, %bound, upstream = %shared.shown_upstream, "tcp proxy listening");
        let task = tokio::spawn(accept_loop(listener, bound, shared.clone(), faults));
        Ok(TcpProxy {
            shared,
            bound,
            task,
        })
    }

    pub(crate) fn bound(&self) -> SocketAddr {
        self.bound
    }

    pub(crate) fn state(&self) -> ListenerState {
        self.shared.state.lock().expect("state lock").clone()
    }

    pub(crate) fn counters(&self) -> TcpCounters {
        self.shared.counters.snapshot()
    }

    /// Stops accepting and waits until the listen socket is closed. Open connections close on
    /// their own once the fault sender is dropped.
    pub(crate) async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

fn is_down(faults: &TcpFaults) -> bool {
    faults
        .iter()
        .any(|active| matches!(active.fault, TcpFault::Down))
}

async fn accept_loop(
    listener: TcpListener,
    bound: SocketAddr,
    shared: Arc<Shared>,
    mut faults: watch::Receiver<TcpFaults>,
) {
    let mut listener = Some(listener);
    loop {
        let down = is_down(&faults.borrow_and_update());
        if down {
            if listener.take().is_some() {
                info!(listener = %shared.name, "down: listen socket closed, new connections are refused");
                *shared.state.lock().expect("state lock") = ListenerState::Down;
            }
            if faults.changed().await.is_err() {
                return;
            }
            continue;
        }
        let Some(active) = &listener else {
            match bind_listener(bound) {
                Ok(rebound) => {
                    info!(listener = %shared.name, %bound, "listening again");
                    *shared.state.lock().expect("state lock") = ListenerState::Running;
                    listener = Some(rebound);
                }
                Err(err) => {
                    warn!(listener = %shared.name, %bound, "rebind failed, retrying: {err}");
                    *shared.state.lock().expect("state lock") = ListenerState::Failed {
                        error: format!("rebind {bound}: {err}"),
                    };
                    tokio::select! {
                        _ = tokio::time::sleep(REBIND_RETRY) => {}
                        changed = faults.changed() => if changed.is_err() { return },
                    }
                }
            }
            continue;
        };
        tokio::select! {
            changed = faults.changed() => if changed.is_err() { return },
            accepted = active.accept() => match accepted {
                Ok((client, peer)) => {
                    debug!(listener = %shared.name, %peer, "accepted");
                    tokio::spawn(handle_client(client, shared.clone(), faults.clone()));
                }
                Err(err) => {
                    // Out of descriptors and the like: back off instead of spinning.
                    warn!(listener = %shared.name, "accept failed: {err}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}

/// Decrements the active-connection gauge however the connection ends.
struct ActiveGuard<'a>(&'a AtomicU64);

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn handle_client(client: TcpStream, shared: Arc<Shared>, faults: watch::Receiver<TcpFaults>) {
    shared.counters.accepted.fetch_add(1, Ordering::Relaxed);
    let connect = TcpStream::connect(shared.upstream.as_str());
    let upstream = match tokio::time::timeout(UPSTREAM_CONNECT_TIMEOUT, connect).await {
        Ok(Ok(upstream)) => upstream,
        Ok(Err(err)) => {
            shared
                .counters
                .connect_errors
                .fetch_add(1, Ordering::Relaxed);
            warn!(listener = %shared.name, upstream = %shared.shown_upstream, "connect to upstream failed: {err}");
            return;
        }
        Err(_) => {
            shared
                .counters
                .connect_errors
                .fetch_add(1, Ordering::Relaxed);
            warn!(listener = %shared.name, upstream = %shared.shown_upstream, "connect to upstream timed out");
            return;
        }
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    shared.counters.active.fetch_add(1, Ordering::Relaxed);
    let _active = ActiveGuard(&shared.counters.active);
    run_connection(client, upstream, &shared, faults).await;
}

/// How a connection ends when it does not end by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Close {
    /// FIN to both peers.
    Graceful,
    /// SO_LINGER 0: both peers see a TCP RST.
    Reset,
}

/// Per-connection state shared by both pumps.
struct Connection {
    /// Decides, together with each fault's nonce, which faults apply to this connection.
    seed: u64,
    accepted_at: Instant,
    /// Bytes counted so far against each `limit_data` fault, by fault nonce.
    limits: Mutex<Vec<(u64, u64)>>,
}

impl Connection {
    fn applies(&self, active: &ActiveFault<TcpFault>) -> bool {
        connection_draw(active.fault.probability(), self.seed, active.nonce)
    }

    /// When a fault started acting on this connection.
    fn since(&self, active: &ActiveFault<TcpFault>) -> Instant {
        Instant::from_std(active.since).max(self.accepted_at)
    }
}

/// What the connection task enforces itself: listener-wide `down` and the close timers.
struct ConnectionPlan {
    down: bool,
    deadline: Option<(Instant, Close)>,
}

impl ConnectionPlan {
    fn new(faults: &TcpFaults, connection: &Connection) -> ConnectionPlan {
        let mut plan = ConnectionPlan {
            down: false,
            deadline: None,
        };
        for active in faults.iter().filter(|active| connection.applies(active)) {
            let timer = match &active.fault {
                TcpFault::Down => {
                    plan.down = true;
                    None
                }
                TcpFault::Reset { after, .. } => {
                    Some((connection.since(active) + *after, Close::Reset))
                }
                TcpFault::Blackhole {
                    close_after: Some(after),
                    ..
                } => Some((connection.since(active) + *after, Close::Graceful)),
                _ => None,
            };
            if let Some(timer) = timer
                && plan.deadline.is_none_or(|(earliest, _)| timer.0 < earliest)
            {
                plan.deadline = Some(timer);
            }
        }
        plan
    }
}

async fn run_connection(
    mut client: TcpStream,
    mut upstream: TcpStream,
    shared: &Shared,
    mut faults: watch::Receiver<TcpFaults>,
) {
    let connection = Connection {
        seed: rand::random(),
        accepted_at: Instant::now(),
        limits: Mutex::new(Vec::new()),
    };
    let close = {
        let (client_read, client_write) = client.split();
        let (upstream_read, upstream_write) = upstream.split();
        let to_server = Pump::new(
            Direction::Upstream,
            client_read,
            upstream_write,
            &connection,
            shared,
            &faults,
        );
        let to_client = Pump::new(
            Direction::Downstream,
            upstream_read,
            client_write,
            &connection,
            shared,
            &faults,
        );
        let to_server = to_server.run();
        let to_client = to_client.run();
        tokio::pin!(to_server, to_client);
        let (mut to_server_done, mut to_client_done) = (false, false);
        loop {
            let plan = ConnectionPlan::new(&faults.borrow_and_update(), &connection);
            if plan.down {
                break Some(Close::Graceful);
            }
            // A deadline already due (e.g. `reset` with no delay) acts before any data moves;
            // the timer wheel alone would let a fast exchange slip through first.
            if let Some((deadline, close)) = plan.deadline
                && deadline <= Instant::now()
            {
                break Some(close);
            }
            let far_future = Instant::now() + Duration::from_secs(86_400 * 365);
            let (deadline, deadline_close) = plan.deadline.unwrap_or((far_future, Close::Graceful));
            tokio::select! {
                exit = &mut to_server, if !to_server_done => match exit {
                    PumpExit::Eof => to_server_done = true,
                    PumpExit::Failed => break Some(Close::Reset),
                    PumpExit::LimitReached => break Some(Close::Graceful),
                },
                exit = &mut to_client, if !to_client_done => match exit {
                    PumpExit::Eof => to_client_done = true,
                    PumpExit::Failed => break Some(Close::Reset),
                    PumpExit::LimitReached => break Some(Close::Graceful),
                },
                changed = faults.changed() => if changed.is_err() {
                    // The listener was stopped or reconfigured.
                    break Some(Close::Graceful);
                },
                _ = sleep_until(deadline), if plan.deadline.is_some() => break Some(deadline_close),
            }
            if to_server_done && to_client_done {
                break None;
            }
        }
    };
    if close == Some(Close::Reset) {
        let _ = client.set_zero_linger();
        let _ = upstream.set_zero_linger();
    }
    debug!(listener = %shared.name, ?close, "connection closed");
}

#[derive(Debug)]
enum PumpExit {
    /// The reading side closed; the close was passed on.
    Eof,
    /// A socket error: the connection is broken.
    Failed,
    /// A `limit_data` fault used up its bytes.
    LimitReached,
}

/// The faults acting on one direction of one connection.
#[derive(Default)]
struct DirectionPlan {
    /// Summed over latency faults.
    latency: Option<(Duration, Duration)>,
    /// Bytes per second; the tightest bandwidth fault wins.
    bandwidth: Option<u64>,
    blackhole: bool,
    slicer: Option<(usize, usize, Duration)>,
    /// (fault nonce, byte budget) for each `limit_data` fault.
    limits: Vec<(u64, u64)>,
}

impl DirectionPlan {
    fn new(faults: &TcpFaults, flow: Direction, connection: &Connection) -> DirectionPlan {
        let mut plan = DirectionPlan::default();
        for active in faults.iter().filter(|active| connection.applies(active)) {
            match &active.fault {
                TcpFault::Latency {
                    latency,
                    jitter,
                    direction,
                    ..
                } if direction.covers(flow) => {
                    let (sum, sum_jitter) = plan.latency.unwrap_or_default();
                    plan.latency = Some((sum + *latency, sum_jitter + *jitter));
                }
                TcpFault::Bandwidth {
                    rate_kbps,
                    direction,
                    ..
                } if direction.covers(flow) => {
                    let bytes_per_second = (rate_kbps * 1000 / 8).max(1);
                    plan.bandwidth = Some(
                        plan.bandwidth
                            .map_or(bytes_per_second, |rate| rate.min(bytes_per_second)),
                    );
                }
                TcpFault::Blackhole { direction, .. } if direction.covers(flow) => {
                    plan.blackhole = true
                }
                TcpFault::Slicer {
                    average_size,
                    size_variation,
                    delay,
                    direction,
                    ..
                } if direction.covers(flow) && plan.slicer.is_none() => {
                    plan.slicer = Some((*average_size, *size_variation, *delay));
                }
                TcpFault::LimitData {
                    bytes, direction, ..
                } if direction.covers(flow) => {
                    plan.limits.push((active.nonce, *bytes));
                }
                _ => {}
            }
        }
        plan
    }

    /// Chunks go straight from read to write.
    fn is_clean(&self) -> bool {
        self.latency.is_none()
            && self.bandwidth.is_none()
            && !self.blackhole
            && self.slicer.is_none()
            && self.limits.is_empty()
    }
}

/// Moves bytes one way through the faults of that direction.
struct Pump<'a> {
    flow: Direction,
    reader: ReadHalf<'a>,
    writer: WriteHalf<'a>,
    connection: &'a Connection,
    shared: &'a Shared,
    faults: watch::Receiver<TcpFaults>,
    plan: DirectionPlan,
    /// Bandwidth pacing: when the next slice may go.
    next_send: Instant,
    /// Latency never reorders: no chunk is due before the one ahead of it.
    last_due: Instant,
}

impl<'a> Pump<'a> {
    fn new(
        flow: Direction,
        reader: ReadHalf<'a>,
        writer: WriteHalf<'a>,
        connection: &'a Connection,
        shared: &'a Shared,
        faults: &watch::Receiver<TcpFaults>,
    ) -> Pump<'a> {
        let mut faults = faults.clone();
        let plan = DirectionPlan::new(&faults.borrow_and_update(), flow, connection);
        let now = Instant::now();
        Pump {
            flow,
            reader,
            writer,
            connection,
            shared,
            faults,
            plan,
            next_send: now,
            last_due: now,
        }
    }

    fn refresh_plan(&mut self) {
        if self.faults.has_changed().unwrap_or(false) {
            let faults = self.faults.borrow_and_update().clone();
            self.plan = DirectionPlan::new(&faults, self.flow, self.connection);
        }
    }

    async fn run(mut self) -> PumpExit {
        let mut buf = vec![0u8; CHUNK];
        // Chunks held back by a latency fault, with the instant each is due.
        let mut delayed: VecDeque<(Instant, Vec<u8>)> = VecDeque::new();
        let mut delayed_bytes = 0usize;
        let mut read_open = true;
        loop {
            self.refresh_plan();
            if delayed.is_empty() && self.plan.latency.is_none() {
                if !read_open {
                    let _ = self.writer.shutdown().await;
                    return PumpExit::Eof;
                }
                let read = match self.reader.read(&mut buf).await {
                    Ok(0) => {
                        read_open = false;
                        continue;
                    }
                    Ok(read) => read,
                    Err(_) => return PumpExit::Failed,
                };
                // Faults may have changed while this side waited for data.
                self.refresh_plan();
                if self.plan.latency.is_some() {
                    delayed_bytes += read;
                    delayed.push_back((self.due_time(), buf[..read].to_vec()));
                } else if let Err(exit) = self.deliver(&buf[..read]).await {
                    return exit;
                }
                continue;
            }

            let next_due = delayed.front().map(|(due, _)| *due);
            let can_read = read_open && delayed_bytes < MAX_QUEUED;
            if next_due.is_none() && !can_read {
                let _ = self.writer.shutdown().await;
                return PumpExit::Eof;
            }
            tokio::select! {
                biased;
                _ = sleep_until(next_due.unwrap_or(self.last_due)), if next_due.is_some() => {
                    let (_, chunk) = delayed.pop_front().expect("a chunk is due");
                    delayed_bytes -= chunk.len();
                    if let Err(exit) = self.deliver(&chunk).await {
                        return exit;
                    }
                }
                read = self.reader.read(&mut buf), if can_read => match read {
                    Ok(0) => read_open = false,
                    Ok(read) => {
                        // The latency may have been cleared while this side waited for data: a
                        // chunk read now gets the current delay (none), behind those queued.
                        self.refresh_plan();
                        delayed_bytes += read;
                        delayed.push_back((self.due_time(), buf[..read].to_vec()));
                    }
                    Err(_) => return PumpExit::Failed,
                },
            }
        }
    }

    /// When a chunk read now may go on: after the latency, and never before the one ahead.
    fn due_time(&mut self) -> Instant {
        let delay = self
            .plan
            .latency
            .map_or(Duration::ZERO, |(latency, jitter)| {
                jittered(latency, jitter)
            });
        let due = (Instant::now() + delay).max(self.last_due);
        self.last_due = due;
        due
    }

    /// Sends one chunk through the data faults of this direction.
    async fn deliver(&mut self, chunk: &[u8]) -> Result<(), PumpExit> {
        if self.plan.is_clean() {
            return self.write(chunk).await;
        }
        if self.plan.blackhole {
            return Ok(());
        }
        let (allowed, limit_reached) = self.take_limit(chunk.len());
        let chunk = &chunk[..allowed];
        match self.plan.slicer {
            Some((average, variation, delay)) => {
                let mut rest = chunk;
                while !rest.is_empty() {
                    let size = slice_size(average, variation).min(rest.len());
                    let (piece, tail) = rest.split_at(size);
                    self.write_paced(piece).await?;
                    rest = tail;
                    if !rest.is_empty() && !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                }
            }
            None => self.write_paced(chunk).await?,
        }
        if limit_reached {
            Err(PumpExit::LimitReached)
        } else {
            Ok(())
        }
    }

    /// How much of `len` bytes the `limit_data` faults let through, and whether one is used up.
    fn take_limit(&self, len: usize) -> (usize, bool) {
        if self.plan.limits.is_empty() {
            return (len, false);
        }
        let mut used = self.connection.limits.lock().expect("limits lock");
        let mut allowed = len as u64;
        for (nonce, budget) in &self.plan.limits {
            let spent = used
                .iter()
                .find(|(id, _)| id == nonce)
                .map_or(0, |(_, spent)| *spent);
            allowed = allowed.min(budget.saturating_sub(spent));
        }
        let mut reached = false;
        for (nonce, budget) in &self.plan.limits {
            let index = match used.iter().position(|(id, _)| id == nonce) {
                Some(index) => index,
                None => {
                    used.push((*nonce, 0));
                    used.len() - 1
                }
            };
            used[index].1 += allowed;
            reached |= used[index].1 >= *budget;
        }
        (allowed as usize, reached)
    }

    async fn write_paced(&mut self, data: &[u8]) -> Result<(), PumpExit> {
        let Some(rate) = self.plan.bandwidth else {
            return self.write(data).await;
        };
        // Like Toxiproxy: 100 ms worth of data per write, then wait for its share of time.
        let slice = (rate / 10).max(1) as usize;
        for piece in data.chunks(slice) {
            self.write(piece).await?;
            let cost = Duration::from_secs_f64(piece.len() as f64 / rate as f64);
            self.next_send = self.next_send.max(Instant::now()) + cost;
            sleep_until(self.next_send).await;
        }
        Ok(())
    }

    async fn write(&mut self, data: &[u8]) -> Result<(), PumpExit> {
        if data.is_empty() {
            return Ok(());
        }
        self.writer
            .write_all(data)
            .await
            .map_err(|_| PumpExit::Failed)?;
        self.shared.counters.add_bytes(self.flow, data.len());
        Ok(())
    }
}

fn slice_size(average: usize, variation: usize) -> usize {
    if variation == 0 {
        return average.max(1);
    }
    let low = average.saturating_sub(variation).max(1);
    let high = (average + variation).max(low);
    rand::random_range(low..=high)
}
