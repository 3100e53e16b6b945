//! What the proxy costs on loopback, with no fault set: TCP ping-pong round trips, bulk
//! throughput, and webhook requests, each direct vs through the in-process daemon.
//!
//! Before the criterion runs it prints a summary with the figures the targets are stated in:
//! added p50/p99 per round trip, the throughput ratio, and the added webhook p50.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gameday::proxy::{
    AttachOptions, Daemon, DaemonHandle, DaemonOptions, ListenerSet, ProxyClient, TcpListenerSpec,
    WebhookListenerSpec,
};
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;

const PING: [u8; 64] = [42; 64];
const BULK: u64 = 32 * 1024 * 1024;
const WEBHOOK_BODY: &str = r#"{"chat_id":42,"text":"task 1234 is done"}"#;

async fn spawn_echo() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            stream.set_nodelay(true).unwrap();
            tokio::spawn(async move {
                let (mut read, mut write) = stream.split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
            });
        }
    });
    addr
}

/// Reads an 8-byte length, swallows that many bytes, answers one byte; repeats.
async fn spawn_sink() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            stream.set_nodelay(true).unwrap();
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
    });
    addr
}

async fn spawn_http_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(|| async { "ok" });
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

struct Bench {
    runtime: Runtime,
    echo: SocketAddr,
    proxied_echo: SocketAddr,
    sink: SocketAddr,
    proxied_sink: SocketAddr,
    hook: String,
    proxied_hook: String,
    // Kept alive for the whole run.
    _client: ProxyClient,
    daemon: Option<DaemonHandle>,
    dir: PathBuf,
}

fn setup() -> Bench {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!(".artifacts/bench/proxy-{suffix}"));
    let loopback: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let (echo, sink, upstream, client, daemon) = runtime.block_on(async {
        let echo = spawn_echo().await;
        let sink = spawn_sink().await;
        let upstream = spawn_http_upstream().await;
        let daemon = Daemon::start(&dir, DaemonOptions::default()).await.unwrap();
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
            }],
        };
        let client = ProxyClient::attach_with(
            &dir,
            &listeners,
            AttachOptions::new(Duration::from_secs(30)),
        )
        .await
        .unwrap();
        (echo, sink, upstream, client, daemon)
    });
    let bound = |name: &str| {
        client
            .configure_report()
            .get(name)
            .and_then(|listener| listener.bound)
            .unwrap()
    };
    Bench {
        echo,
        proxied_echo: bound("echo"),
        sink,
        proxied_sink: bound("sink"),
        hook: format!("http://{upstream}/bot1/sendMessage"),
        proxied_hook: format!("http://{}/bot1/sendMessage", bound("hook")),
        runtime,
        _client: client,
        daemon: Some(daemon),
        dir,
    }
}

async fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

async fn ping(stream: &mut TcpStream) {
    let mut echoed = [0u8; PING.len()];
    stream.write_all(&PING).await.unwrap();
    stream.read_exact(&mut echoed).await.unwrap();
}

async fn transfer(stream: &mut TcpStream, bytes: u64) {
    static CHUNK: [u8; 256 * 1024] = [7; 256 * 1024];
    stream.write_u64(bytes).await.unwrap();
    let mut left = bytes;
    while left > 0 {
        let part = (CHUNK.len() as u64).min(left) as usize;
        stream.write_all(&CHUNK[..part]).await.unwrap();
        left -= part as u64;
    }
    assert_eq!(stream.read_u8().await.unwrap(), 1);
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn http_client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new()).build(connector)
}

async fn post(client: &HttpClient, url: &str) {
    let request = Request::post(url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(WEBHOOK_BODY.as_bytes())))
        .unwrap();
    let response: Response<_> = client.request(request).await.unwrap();
    assert!(response.status().is_success());
    response.into_body().collect().await.unwrap();
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).unwrap()
}

fn micros(nanos: u64) -> f64 {
    nanos as f64 / 1000.0
}

/// The figures the targets are stated in, measured outside criterion.
fn print_summary(bench: &Bench) {
    bench.runtime.block_on(async {
        let mut direct = histogram();
        let mut proxied = histogram();
        let mut direct_stream = connect(bench.echo).await;
        let mut proxied_stream = connect(bench.proxied_echo).await;
        for round in 0..22_000 {
            for (stream, histogram) in [(&mut direct_stream, &mut direct), (&mut proxied_stream, &mut proxied)] {
                let started = Instant::now();
                ping(stream).await;
                if round >= 2_000 {
                    histogram.record(started.elapsed().as_nanos() as u64).unwrap();
                }
            }
        }
        for quantile in [0.5, 0.99] {
            let (d, p) = (direct.value_at_quantile(quantile), proxied.value_at_quantile(quantile));
            println!(
                "summary: tcp round trip p{}: direct {:.1} µs, proxied {:.1} µs, added {:.1} µs",
                quantile * 100.0,
                micros(d),
                micros(p),
                micros(p.saturating_sub(d))
            );
        }

        let mut direct_sink = connect(bench.sink).await;
        let mut proxied_sink = connect(bench.proxied_sink).await;
        let mut best = [Duration::MAX, Duration::MAX];
        for _ in 0..8 {
            for (index, stream) in [&mut direct_sink, &mut proxied_sink].into_iter().enumerate() {
                let started = Instant::now();
                transfer(stream, BULK).await;
                best[index] = best[index].min(started.elapsed());
            }
        }
        let rate = |elapsed: Duration| BULK as f64 / elapsed.as_secs_f64() / 1e6;
        println!(
            "summary: bulk throughput (best of 8 × 32 MiB): direct {:.0} MB/s, proxied {:.0} MB/s, ratio {:.2}",
            rate(best[0]),
            rate(best[1]),
            best[0].as_secs_f64() / best[1].as_secs_f64()
        );

        let client = http_client();
        let mut direct = histogram();
        let mut proxied = histogram();
        for round in 0..5_500 {
            for (url, histogram) in [(&bench.hook, &mut direct), (&bench.proxied_hook, &mut proxied)] {
                let started = Instant::now();
                post(&client, url).await;
                if round >= 500 {
                    histogram.record(started.elapsed().as_nanos() as u64).unwrap();
                }
            }
        }
        for quantile in [0.5, 0.99] {
            let (d, p) = (direct.value_at_quantile(quantile), proxied.value_at_quantile(quantile));
            println!(
                "summary: webhook request p{}: direct {:.1} µs, forwarded {:.1} µs, added {:.1} µs",
                quantile * 100.0,
                micros(d),
                micros(p),
                micros(p.saturating_sub(d))
            );
        }
    });
}

fn proxy_benches(c: &mut Criterion) {
    let mut bench = setup();
    print_summary(&bench);
    let runtime = &bench.runtime;

    let mut group = c.benchmark_group("tcp_round_trip_64B");
    for (name, addr) in [("direct", bench.echo), ("proxied", bench.proxied_echo)] {
        let mut stream = runtime.block_on(connect(addr));
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                runtime.block_on(async {
                    let started = Instant::now();
                    for _ in 0..iters {
                        ping(&mut stream).await;
                    }
                    started.elapsed()
                })
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("tcp_bulk_32MiB");
    group
        .throughput(Throughput::Bytes(BULK))
        .sample_size(10)
        .measurement_time(Duration::from_secs(8));
    for (name, addr) in [("direct", bench.sink), ("proxied", bench.proxied_sink)] {
        let mut stream = runtime.block_on(connect(addr));
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                runtime.block_on(async {
                    let started = Instant::now();
                    for _ in 0..iters {
                        transfer(&mut stream, BULK).await;
                    }
                    started.elapsed()
                })
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("webhook_post");
    let client = http_client();
    for (name, url) in [
        ("direct", bench.hook.clone()),
        ("forwarded", bench.proxied_hook.clone()),
    ] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                runtime.block_on(async {
                    let started = Instant::now();
                    for _ in 0..iters {
                        post(&client, &url).await;
                    }
                    started.elapsed()
                })
            })
        });
    }
    group.finish();

    if let Some(daemon) = bench.daemon.take() {
        bench.runtime.block_on(daemon.shutdown());
    }
    let _ = std::fs::remove_dir_all(&bench.dir);
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4));
    targets = proxy_benches
}
criterion_main!(benches);
