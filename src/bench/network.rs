//! What the proxy costs on loopback with no fault set: TCP ping-pong round trips, bulk
//! throughput and webhook requests, each direct vs through an in-process proxy daemon. Bulk
//! throughput is also measured through a plain `tokio::io::copy_bidirectional` pipe, the ceiling
//! for any user-space proxy on the machine, so "gameday's overhead" can be told from "the
//! machine's ceiling".
//!
//! Targets: added p50 per round trip under 100 µs (p99 reported), bulk throughput at least 90 %
//! of direct, added webhook p50 under 200 µs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::io::{self, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::{Effort, Figure, Row, Samples, duration, stop_daemon};
use crate::proxy::{
    AttachOptions, Daemon, DaemonHandle, DaemonOptions, ListenerSet, ProxyClient, TcpListenerSpec,
    WebhookListenerSpec,
};

pub const PING: [u8; 64] = [42; 64];
pub const BULK: u64 = 32 * 1024 * 1024;
pub const WEBHOOK_BODY: &str = r#"{"chat_id":42,"text":"task 1234 is done"}"#;
pub const ROUND_TRIP_BUDGET: Duration = Duration::from_micros(100);
pub const THROUGHPUT_SHARE: f64 = 0.9;
pub const WEBHOOK_BUDGET: Duration = Duration::from_micros(200);

/// Echo, sink and HTTP servers, the same servers behind the proxy daemon, and the sink behind a
/// plain pipe; all on 127.0.0.1 and the current tokio runtime.
pub struct NetworkRig {
    pub echo: SocketAddr,
    pub proxied_echo: SocketAddr,
    pub sink: SocketAddr,
    pub proxied_sink: SocketAddr,
    pub piped_sink: SocketAddr,
    pub hook: String,
    pub proxied_hook: String,
    _servers: Servers,
    client: ProxyClient,
    daemon: DaemonHandle,
    dir: PathBuf,
}

impl NetworkRig {
    /// Starts the servers and a proxy daemon whose control socket lives under `dir`.
    pub async fn start(dir: &Path) -> Result<NetworkRig, String> {
        let mut servers = Servers(Vec::new());
        let echo = servers.serve(spawn_echo).await?;
        let sink = servers.serve(spawn_sink).await?;
        let piped_sink = servers
            .serve(move |listener| spawn_pipe(listener, sink))
            .await?;
        let upstream = servers.serve(spawn_http_upstream).await?;
        let daemon = Daemon::start(dir, DaemonOptions::default())
            .await
            .map_err(|err| format!("proxy daemon: {err}"))?;
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let listeners = ListenerSet {
            tcp: vec![
                TcpListenerSpec {
                    name: "echo".into(),
                    listen: loopback,
                    upstream: echo.to_string(),
                },
                TcpListenerSpec {
                    name: "sink".into(),
                    listen: loopback,
                    upstream: sink.to_string(),
                },
            ],
            webhooks: vec![WebhookListenerSpec {
                name: "hook".into(),
                listen: loopback,
                upstream: format!("http://{upstream}"),
                timeout: Duration::from_secs(30),
                ca_file: None,
            }],
        };
        let options = AttachOptions::new(Duration::from_secs(30));
        let attached = ProxyClient::attach_with(dir, &listeners, options)
            .await
            .map_err(|err| format!("attaching to the proxy daemon: {err}"))
            .and_then(|client| {
                let bound = bound_listeners(&client, ["echo", "sink", "hook"])?;
                Ok((client, bound))
            });
        let (client, [proxied_echo, proxied_sink, proxied_hook]) = match attached {
            Ok(attached) => attached,
            Err(err) => {
                stop_daemon(daemon, dir).await;
                return Err(err);
            }
        };
        Ok(NetworkRig {
            echo,
            proxied_echo,
            sink,
            proxied_sink,
            piped_sink,
            hook: format!("http://{upstream}/bot1/sendMessage"),
            proxied_hook: format!("http://{proxied_hook}/bot1/sendMessage"),
            _servers: servers,
            client,
            daemon,
            dir: dir.to_owned(),
        })
    }

    /// Stops the proxy daemon and the servers, and removes the daemon's directory.
    pub async fn stop(self) {
        drop(self.client);
        stop_daemon(self.daemon, &self.dir).await;
    }
}

/// Where the daemon bound each named listener.
fn bound_listeners<const N: usize>(
    client: &ProxyClient,
    names: [&str; N],
) -> Result<[SocketAddr; N], String> {
    let report = client.configure_report();
    let mut bound = [SocketAddr::from(([127, 0, 0, 1], 0)); N];
    for (addr, name) in bound.iter_mut().zip(names) {
        *addr = report
            .get(name)
            .and_then(|listener| listener.bound)
            .ok_or_else(|| format!("the proxy daemon did not bind listener {name:?}"))?;
    }
    Ok(bound)
}

/// The rig's server tasks; dropping it stops them.
struct Servers(Vec<JoinHandle<()>>);

impl Servers {
    /// Binds a loopback listener and hands it to `spawn`, which serves it on a task.
    async fn serve(
        &mut self,
        spawn: impl FnOnce(TcpListener) -> JoinHandle<()>,
    ) -> Result<SocketAddr, String> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|err| format!("binding a loopback server: {err}"))?;
        let addr = listener
            .local_addr()
            .map_err(|err| format!("loopback server address: {err}"))?;
        self.0.push(spawn(listener));
        Ok(addr)
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        for server in &self.0 {
            server.abort();
        }
    }
}

/// Writes back whatever it reads.
fn spawn_echo(listener: TcpListener) -> JoinHandle<()> {
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let (mut read, mut write) = stream.split();
                let _ = io::copy(&mut read, &mut write).await;
            });
        }
    })
}

/// Reads an 8-byte length, swallows that many bytes, answers one byte; repeats.
fn spawn_sink(listener: TcpListener) -> JoinHandle<()> {
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 256 * 1024];
                while let Ok(mut left) = stream.read_u64().await {
                    while left > 0 {
                        let want = buf.len().min(left as usize);
                        match stream.read(&mut buf[..want]).await {
                            Ok(0) | Err(_) => return,
                            Ok(read) => left -= read as u64,
                        }
                    }
                    if stream.write_u8(1).await.is_err() {
                        return;
                    }
                }
            });
        }
    })
}

/// Answers "ok" to any request, as a webhook receiver would.
fn spawn_http_upstream(listener: TcpListener) -> JoinHandle<()> {
    let app = axum::Router::new().fallback(|| async { "ok" });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    })
}

/// Read size of the plain pipe: the proxy's own (tokio's default of 8 KiB would make the pipe,
/// not the machine, the bottleneck).
const PIPE_BUFFER: usize = 64 * 1024;

/// The plainest user-space proxy: accept, connect upstream, `copy_bidirectional`.
fn spawn_pipe(listener: TcpListener, upstream: SocketAddr) -> JoinHandle<()> {
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut server) = TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let _ = io::copy_bidirectional_with_sizes(
                    &mut client,
                    &mut server,
                    PIPE_BUFFER,
                    PIPE_BUFFER,
                )
                .await;
            });
        }
    })
}

pub async fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// One 64-byte round trip through the echo server.
pub async fn ping(stream: &mut TcpStream) -> io::Result<()> {
    let mut echoed = [0u8; PING.len()];
    stream.write_all(&PING).await?;
    stream.read_exact(&mut echoed).await?;
    Ok(())
}

/// Sends `bytes` to the sink and waits for its one-byte receipt.
pub async fn transfer(stream: &mut TcpStream, bytes: u64) -> io::Result<()> {
    static CHUNK: [u8; 256 * 1024] = [7; 256 * 1024];
    stream.write_u64(bytes).await?;
    let mut left = bytes;
    while left > 0 {
        let part = (CHUNK.len() as u64).min(left) as usize;
        stream.write_all(&CHUNK[..part]).await?;
        left -= part as u64;
    }
    match stream.read_u8().await? {
        1 => Ok(()),
        other => Err(io::Error::other(format!(
            "the sink answered {other}, not 1"
        ))),
    }
}

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A keep-alive HTTP/1 client with Nagle off, as the app's webhook client would be.
pub fn http_client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new()).build(connector)
}

/// Posts a small JSON notification and reads the whole answer.
pub async fn post(client: &HttpClient, url: &str) -> Result<(), String> {
    let request = Request::post(url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(WEBHOOK_BODY.as_bytes())))
        .map_err(|err| err.to_string())?;
    let response = client
        .request(request)
        .await
        .map_err(|err| format!("POST {url}: {err}"))?;
    let status = response.status();
    response
        .into_body()
        .collect()
        .await
        .map_err(|err| format!("POST {url}: {err}"))?;
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("POST {url}: {status}"))
    }
}

/// Starts a rig under `dir`, measures, and stops the daemon whatever happened.
pub async fn measure_in(dir: &Path, effort: Effort) -> Result<Vec<Row>, String> {
    let rig = NetworkRig::start(dir).await?;
    let rows = measure(&rig, effort).await;
    rig.stop().await;
    rows
}

/// Every network row: round trip p50 and p99, bulk throughput, webhook p50.
pub async fn measure(rig: &NetworkRig, effort: Effort) -> Result<Vec<Row>, String> {
    let mut rows = round_trips(rig, effort)
        .await
        .map_err(|err| err.to_string())?;
    rows.push(
        throughput(rig, effort)
            .await
            .map_err(|err| err.to_string())?,
    );
    rows.push(webhook(rig, effort).await?);
    Ok(rows)
}

/// The added time at quantile `q`; noise can make the proxied figure the smaller one.
fn added(direct: &Samples, proxied: &Samples, q: f64) -> Duration {
    proxied.quantile(q).saturating_sub(direct.quantile(q))
}

/// Direct and proxied round trips, interleaved so both see the same machine.
async fn round_trips(rig: &NetworkRig, effort: Effort) -> io::Result<Vec<Row>> {
    let mut direct = connect(rig.echo).await?;
    let mut proxied = connect(rig.proxied_echo).await?;
    for _ in 0..effort.pick(2_000, 200) {
        ping(&mut direct).await?;
        ping(&mut proxied).await?;
    }
    let rounds = effort.pick(30_000, 2_000);
    let mut direct_samples = Vec::with_capacity(rounds);
    let mut proxied_samples = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let started = Instant::now();
        ping(&mut direct).await?;
        direct_samples.push(started.elapsed());
        let started = Instant::now();
        ping(&mut proxied).await?;
        proxied_samples.push(started.elapsed());
    }
    let (direct, proxied) = (Samples::new(direct_samples), Samples::new(proxied_samples));
    let quantile_row = |label: &str, q: f64, budget: Option<Duration>| Row {
        name: format!("tcp proxy: added round trip, {label}"),
        figure: Figure::Time {
            took: added(&direct, &proxied, q),
            budget,
        },
        context: vec![format!(
            "direct {}, proxied {} ({rounds} round trips of {} B)",
            duration(direct.quantile(q)),
            duration(proxied.quantile(q)),
            PING.len()
        )],
    };
    Ok(vec![
        quantile_row("p50", 0.5, Some(ROUND_TRIP_BUDGET)),
        quantile_row("p99", 0.99, None),
    ])
}

/// Bulk transfers direct, through the proxy and through the plain pipe, interleaved; the
/// median transfer of each path.
async fn throughput(rig: &NetworkRig, effort: Effort) -> io::Result<Row> {
    let mut paths = [
        connect(rig.sink).await?,
        connect(rig.proxied_sink).await?,
        connect(rig.piped_sink).await?,
    ];
    for stream in &mut paths {
        transfer(stream, BULK).await?;
    }
    let rounds = effort.pick(20, 3);
    let mut samples = [const { Vec::new() }; 3];
    for _ in 0..rounds {
        for (stream, samples) in paths.iter_mut().zip(&mut samples) {
            let started = Instant::now();
            transfer(stream, BULK).await?;
            samples.push(started.elapsed());
        }
    }
    let [direct, proxied, piped] =
        samples.map(|samples| BULK as f64 / Samples::new(samples).median().as_secs_f64());
    let mb = |rate: f64| format!("{:.0} MB/s", rate / 1e6);
    Ok(Row {
        name: "tcp proxy: bulk throughput".into(),
        figure: Figure::Throughput {
            bytes_per_sec: proxied,
            share: proxied / direct,
            required_share: THROUGHPUT_SHARE,
        },
        context: vec![
            format!(
                "direct {}; median of {rounds} transfers of {} MiB each",
                mb(direct),
                BULK / (1024 * 1024)
            ),
            format!(
                "machine ceiling: a plain copy_bidirectional pipe reaches {} = {:.2} of direct; \
                 the proxy reaches {:.2} of that pipe",
                mb(piped),
                piped / direct,
                proxied / piped
            ),
        ],
    })
}

/// The same webhook POST straight to the receiver and through the forwarder, interleaved.
async fn webhook(rig: &NetworkRig, effort: Effort) -> Result<Row, String> {
    let client = http_client();
    for _ in 0..effort.pick(500, 50) {
        post(&client, &rig.hook).await?;
        post(&client, &rig.proxied_hook).await?;
    }
    let rounds = effort.pick(10_000, 500);
    let mut direct_samples = Vec::with_capacity(rounds);
    let mut forwarded_samples = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let started = Instant::now();
        post(&client, &rig.hook).await?;
        direct_samples.push(started.elapsed());
        let started = Instant::now();
        post(&client, &rig.proxied_hook).await?;
        forwarded_samples.push(started.elapsed());
    }
    let (direct, forwarded) = (
        Samples::new(direct_samples),
        Samples::new(forwarded_samples),
    );
    Ok(Row {
        name: "webhook forwarder: added p50".into(),
        figure: Figure::Time {
            took: added(&direct, &forwarded, 0.5),
            budget: Some(WEBHOOK_BUDGET),
        },
        context: vec![format!(
            "direct {}, forwarded {}; p99 direct {}, forwarded {} ({rounds} POSTs)",
            duration(direct.median()),
            duration(forwarded.median()),
            duration(direct.p99()),
            duration(forwarded.p99())
        )],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_quick_run_measures_every_path_and_leaves_no_daemon_behind() {
        let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(".artifacts/test")
            .join(format!("bench-network-{suffix}"));
        let rig = NetworkRig::start(&dir).await.unwrap();
        let proxied_echo = rig.proxied_echo;
        let socket = crate::proxy::socket_path(&dir);
        let rows = measure(&rig, Effort::Quick).await;
        rig.stop().await;
        let rows = rows.unwrap();

        let names: Vec<&str> = rows.iter().map(|row| row.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "tcp proxy: added round trip, p50",
                "tcp proxy: added round trip, p99",
                "tcp proxy: bulk throughput",
                "webhook forwarder: added p50",
            ]
        );
        let Figure::Throughput {
            bytes_per_sec,
            share,
            ..
        } = rows[2].figure
        else {
            panic!("a throughput, got {:?}", rows[2].figure);
        };
        assert!(bytes_per_sec > 0.0 && share > 0.0);
        assert!(
            rows[2].context[1].contains("plain copy_bidirectional pipe"),
            "{:?}",
            rows[2].context
        );

        assert!(!dir.exists(), "the rig removed {}", dir.display());
        assert!(
            tokio::net::UnixStream::connect(&socket).await.is_err(),
            "the daemon no longer answers"
        );
        assert!(
            TcpStream::connect(proxied_echo).await.is_err(),
            "the proxy listener is closed"
        );
    }
}
