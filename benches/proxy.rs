//! What the proxy costs on loopback, with no fault set: TCP ping-pong round trips, bulk
//! throughput (also through a plain `copy_bidirectional` pipe, the machine's ceiling), and
//! webhook requests, each direct vs through the in-process daemon. The rig and the workloads are
//! `gameday::bench::network`, shared with `gameday bench`.
//!
//! Before the criterion runs it prints the figures the targets are stated in, as `gameday bench`
//! does: added p50/p99 per round trip, the throughput ratios, and the added webhook p50.
//!
//! `cargo bench --bench proxy`

use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gameday::bench::network::{self, BULK, NetworkRig, connect, http_client, ping, post, transfer};
use gameday::bench::{Effort, scratch_dir, table};

fn proxy_benches(c: &mut Criterion) {
    let runtime = gameday::bench::runtime().unwrap();
    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join(".artifacts");
    let bench = runtime
        .block_on(NetworkRig::start(&scratch_dir(&artifacts, "proxy")))
        .unwrap();
    let rows = runtime
        .block_on(network::measure(&bench, Effort::Full))
        .unwrap();
    print!("{}", table(&rows));
    let runtime = &runtime;

    let mut group = c.benchmark_group("tcp_round_trip_64B");
    for (name, addr) in [("direct", bench.echo), ("proxied", bench.proxied_echo)] {
        let mut stream = runtime.block_on(connect(addr)).unwrap();
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                runtime.block_on(async {
                    let started = Instant::now();
                    for _ in 0..iters {
                        ping(&mut stream).await.unwrap();
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
    for (name, addr) in [
        ("direct", bench.sink),
        ("proxied", bench.proxied_sink),
        ("plain_pipe", bench.piped_sink),
    ] {
        let mut stream = runtime.block_on(connect(addr)).unwrap();
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                runtime.block_on(async {
                    let started = Instant::now();
                    for _ in 0..iters {
                        transfer(&mut stream, BULK).await.unwrap();
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
                        post(&client, &url).await.unwrap();
                    }
                    started.elapsed()
                })
            })
        });
    }
    group.finish();

    runtime.block_on(bench.stop());
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4));
    targets = proxy_benches
}
criterion_main!(benches);
