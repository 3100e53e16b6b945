//! Tests against real sockets on 127.0.0.1: an in-process daemon, the real client, echo and
//! HTTP servers as upstreams.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::{
    AttachOptions, Daemon, DaemonHandle, DaemonOptions, ListenerSet, ProxyClient, ProxyEvent,
    TcpListenerSpec, WebhookListenerSpec,
};

mod daemon;
mod tcp;
mod webhook;

/// A fresh directory under `<repo>/.artifacts/test/`, kept short so the socket path fits.
pub(super) fn test_dir(name: &str) -> PathBuf {
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(".artifacts/test")
        .join(format!("{name}-{suffix}"));
    std::fs::create_dir_all(&dir).expect("create the test directory");
    dir
}

/// Polls `condition` until it holds, failing the test at `deadline`.
pub(super) async fn wait_until<F, Fut>(what: &str, deadline: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    while !condition().await {
        assert!(
            started.elapsed() < deadline,
            "timed out after {deadline:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub(super) fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().expect("loopback address")
}

/// An address nothing listens on.
pub(super) async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind(loopback()).await.expect("bind");
    listener.local_addr().expect("local addr")
}

/// A TCP server that echoes everything back until the client closes.
pub(super) async fn spawn_echo() -> SocketAddr {
    let listener = TcpListener::bind(loopback()).await.expect("bind echo");
    let addr = listener.local_addr().expect("echo addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let (mut read, mut write) = stream.split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
            });
        }
    });
    addr
}

/// One write and the echo of it; returns the round-trip time.
pub(super) async fn round_trip(stream: &mut TcpStream, payload: &[u8]) -> Duration {
    let started = Instant::now();
    stream.write_all(payload).await.expect("write");
    let mut echoed = vec![0u8; payload.len()];
    stream.read_exact(&mut echoed).await.expect("read the echo");
    assert_eq!(echoed, payload);
    started.elapsed()
}

/// The median of `count` round trips.
pub(super) async fn median_round_trip(stream: &mut TcpStream, count: usize) -> Duration {
    let mut times = Vec::with_capacity(count);
    for _ in 0..count {
        times.push(round_trip(stream, b"ping").await);
    }
    times.sort();
    times[count / 2]
}

pub(super) fn tcp_spec(name: &str, upstream: SocketAddr) -> TcpListenerSpec {
    TcpListenerSpec {
        name: name.to_owned(),
        listen: loopback(),
        upstream: upstream.to_string(),
    }
}

pub(super) fn webhook_spec(name: &str, upstream: &str, timeout: Duration) -> WebhookListenerSpec {
    WebhookListenerSpec {
        name: name.to_owned(),
        listen: loopback(),
        upstream: upstream.to_owned(),
        timeout,
        ca_file: None,
    }
}

/// An in-process daemon with an attached console.
pub(super) struct Harness {
    pub dir: PathBuf,
    pub daemon: DaemonHandle,
    pub client: ProxyClient,
}

impl Harness {
    pub async fn start(name: &str, listeners: ListenerSet) -> Harness {
        Self::with_lease(name, listeners, Duration::from_secs(5)).await
    }

    pub async fn with_lease(name: &str, listeners: ListenerSet, lease: Duration) -> Harness {
        let dir = test_dir(name);
        let daemon = Daemon::start(&dir, DaemonOptions::default())
            .await
            .expect("start the daemon");
        let client = ProxyClient::attach_with(&dir, &listeners, AttachOptions::new(lease))
            .await
            .expect("attach");
        let failures = client.configure_report().failures();
        assert!(failures.is_empty(), "listeners failed: {failures:?}");
        Harness {
            dir,
            daemon,
            client,
        }
    }

    /// Where listener `name` accepts connections.
    pub fn addr(&self, name: &str) -> SocketAddr {
        self.client
            .configure_report()
            .get(name)
            .and_then(|listener| listener.bound)
            .unwrap_or_else(|| panic!("listener {name} is not bound"))
    }

    pub async fn connect(&self, name: &str) -> TcpStream {
        let stream = TcpStream::connect(self.addr(name))
            .await
            .expect("connect through the proxy");
        stream.set_nodelay(true).expect("nodelay");
        stream
    }

    /// Stops the daemon and removes the test directory; a failing test keeps it for a look.
    pub async fn stop(self) {
        self.daemon.shutdown().await;
        std::fs::remove_dir_all(&self.dir).expect("remove the test directory");
    }
}

/// The next event matching `pick`, within `deadline`.
pub(super) async fn next_event<T>(
    events: &mut mpsc::Receiver<ProxyEvent>,
    deadline: Duration,
    mut pick: impl FnMut(ProxyEvent) -> Option<T>,
) -> T {
    let until = tokio::time::Instant::now() + deadline;
    loop {
        let event = tokio::time::timeout_at(until, events.recv())
            .await
            .unwrap_or_else(|_| panic!("no matching event within {deadline:?}"))
            .expect("event stream ended");
        if let Some(found) = pick(event) {
            return found;
        }
    }
}
