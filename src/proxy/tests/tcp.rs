//! TCP proxy behaviour, fault by fault, against a real echo server.

use std::io::ErrorKind;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{Harness, median_round_trip, round_trip, spawn_echo, tcp_spec, wait_until};
use crate::proxy::{Direction, ListenerCounters, ListenerSet, TcpFault};

async fn echo_harness(name: &str) -> Harness {
    let echo = spawn_echo().await;
    Harness::start(
        name,
        ListenerSet {
            tcp: vec![tcp_spec("echo", echo)],
            webhooks: vec![],
        },
    )
    .await
}

fn latency(ms: u64, jitter_ms: u64, direction: Direction) -> TcpFault {
    TcpFault::Latency {
        latency: Duration::from_millis(ms),
        jitter: Duration::from_millis(jitter_ms),
        direction,
        probability: 1.0,
    }
}

/// Reads until EOF or error; returns the bytes read and how the stream ended.
async fn read_to_end(stream: &mut TcpStream) -> (Vec<u8>, Result<(), ErrorKind>) {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) => return (received, Ok(())),
            Ok(read) => received.extend_from_slice(&buf[..read]),
            Err(err) => return (received, Err(err.kind())),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_traffic_is_echoed_intact_and_counted() {
    let harness = echo_harness("tcp-clean").await;
    let mut stream = harness.connect("echo").await;
    round_trip(&mut stream, b"hello").await;
    let bulk: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let (mut read, mut write) = stream.split();
    let sender = async {
        write.write_all(&bulk).await.expect("send bulk");
    };
    let receiver = async {
        let mut echoed = vec![0u8; bulk.len()];
        read.read_exact(&mut echoed).await.expect("read bulk");
        echoed
    };
    let ((), echoed) = tokio::join!(sender, receiver);
    assert!(echoed == bulk, "1 MB came back altered");

    let expected = 5 + bulk.len() as u64;
    let status = harness.client.status().await.expect("status");
    let ListenerCounters::Tcp(counters) = &status.listeners[0].counters else {
        panic!("not a tcp listener")
    };
    assert_eq!((counters.accepted, counters.active), (1, 1));
    assert_eq!(
        (counters.bytes_upstream, counters.bytes_downstream),
        (expected, expected)
    );
    assert_eq!(counters.connect_errors, 0);
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_adds_its_delay_per_direction_and_clearing_restores_the_same_connection() {
    let harness = echo_harness("tcp-latency").await;
    let mut stream = harness.connect("echo").await;
    let baseline = median_round_trip(&mut stream, 9).await;

    // Toxiproxy's tolerance: jitter + 10 ms per direction the fault applies to.
    harness
        .client
        .set_fault("lat", "echo", latency(100, 10, Direction::Upstream), None)
        .await
        .unwrap();
    for _ in 0..4 {
        let rtt = round_trip(&mut stream, b"ping")
            .await
            .saturating_sub(baseline);
        assert!(
            rtt >= Duration::from_millis(80) && rtt <= Duration::from_millis(120),
            "one way: {rtt:?}"
        );
    }
    harness
        .client
        .set_fault("lat", "echo", latency(100, 10, Direction::Both), None)
        .await
        .unwrap();
    for _ in 0..3 {
        let rtt = round_trip(&mut stream, b"ping")
            .await
            .saturating_sub(baseline);
        assert!(
            rtt >= Duration::from_millis(160) && rtt <= Duration::from_millis(240),
            "both ways: {rtt:?}"
        );
    }

    assert!(harness.client.clear_fault("lat").await.unwrap());
    let first = round_trip(&mut stream, b"ping").await;
    assert!(
        first < baseline + Duration::from_millis(10),
        "first round trip after clearing: {first:?}"
    );
    let after = median_round_trip(&mut stream, 9).await;
    assert!(
        after < baseline + Duration::from_millis(10),
        "baseline {baseline:?}, after clearing {after:?}"
    );
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_never_reorders_data() {
    let harness = echo_harness("tcp-order").await;
    let mut stream = harness.connect("echo").await;
    harness
        .client
        .set_fault("lat", "echo", latency(30, 25, Direction::Both), None)
        .await
        .unwrap();
    let (mut read, mut write) = stream.split();
    let sender = async {
        for i in 0..200u32 {
            write.write_all(&i.to_be_bytes()).await.expect("send");
            if i % 20 == 0 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    };
    let receiver = async {
        let mut echoed = vec![0u8; 800];
        read.read_exact(&mut echoed).await.expect("read");
        echoed
    };
    let ((), echoed) = tokio::join!(sender, receiver);
    let numbers: Vec<u32> = echoed
        .chunks(4)
        .map(|b| u32::from_be_bytes(b.try_into().unwrap()))
        .collect();
    assert_eq!(numbers, (0..200).collect::<Vec<_>>());
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_refuses_new_connections_and_closes_open_ones_until_cleared() {
    let harness = echo_harness("tcp-down").await;
    let addr = harness.addr("echo");
    let mut open = harness.connect("echo").await;
    round_trip(&mut open, b"before").await;

    harness
        .client
        .set_fault("partition", "echo", TcpFault::Down, None)
        .await
        .unwrap();
    let (leftover, _) = tokio::time::timeout(Duration::from_secs(2), read_to_end(&mut open))
        .await
        .expect("the open connection is closed");
    assert!(leftover.is_empty());
    wait_until("new connections are refused", Duration::from_secs(2), || async {
        matches!(TcpStream::connect(addr).await, Err(err) if err.kind() == ErrorKind::ConnectionRefused)
    })
    .await;
    let status = harness.client.status().await.unwrap();
    assert_eq!(status.listeners[0].state, crate::proxy::ListenerState::Down);

    harness.client.clear_fault("partition").await.unwrap();
    wait_until(
        "the listener accepts again",
        Duration::from_secs(2),
        || async { TcpStream::connect(addr).await.is_ok() },
    )
    .await;
    let mut fresh = harness.connect("echo").await;
    round_trip(&mut fresh, b"after").await;
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_makes_the_client_see_a_connection_reset() {
    let harness = echo_harness("tcp-reset").await;
    let mut open = harness.connect("echo").await;
    round_trip(&mut open, b"before").await;
    let fault = TcpFault::Reset {
        after: Duration::from_millis(100),
        probability: 1.0,
    };
    harness
        .client
        .set_fault("rst", "echo", fault, None)
        .await
        .unwrap();
    let started = Instant::now();
    let (_, ended) = read_to_end(&mut open).await;
    assert_eq!(ended, Err(ErrorKind::ConnectionReset));
    assert!(
        started.elapsed() >= Duration::from_millis(90),
        "reset came after {:?}",
        started.elapsed()
    );

    // New connections are reset too, `after` counted from their start.
    let mut fresh = harness.connect("echo").await;
    let (_, ended) = read_to_end(&mut fresh).await;
    assert_eq!(ended, Err(ErrorKind::ConnectionReset));
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blackhole_swallows_data_until_cleared() {
    let harness = echo_harness("tcp-blackhole").await;
    let mut stream = harness.connect("echo").await;
    round_trip(&mut stream, b"before").await;
    let fault = TcpFault::Blackhole {
        close_after: None,
        direction: Direction::Upstream,
        probability: 1.0,
    };
    harness
        .client
        .set_fault("hole", "echo", fault, None)
        .await
        .unwrap();
    stream.write_all(b"lost").await.unwrap();
    let mut buf = [0u8; 16];
    let silent = tokio::time::timeout(Duration::from_millis(300), stream.read(&mut buf)).await;
    assert!(
        silent.is_err(),
        "got a reply through a blackhole: {silent:?}"
    );

    harness.client.clear_fault("hole").await.unwrap();
    round_trip(&mut stream, b"resumed").await;
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blackhole_with_close_after_closes_the_connection() {
    let harness = echo_harness("tcp-timeout").await;
    let mut stream = harness.connect("echo").await;
    let fault = TcpFault::Blackhole {
        close_after: Some(Duration::from_millis(200)),
        direction: Direction::Both,
        probability: 1.0,
    };
    harness
        .client
        .set_fault("timeout", "echo", fault, None)
        .await
        .unwrap();
    let started = Instant::now();
    stream.write_all(b"lost").await.unwrap();
    let (received, ended) = read_to_end(&mut stream).await;
    assert!(received.is_empty());
    assert_eq!(ended, Ok(()), "closed with FIN");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(180) && waited < Duration::from_millis(600),
        "closed after {waited:?}"
    );
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bandwidth_caps_throughput_within_tolerance() {
    let harness = echo_harness("tcp-bandwidth").await;
    let mut stream = harness.connect("echo").await;
    // 4000 kbit/s = 500 kB/s, on the way back only.
    let fault = TcpFault::Bandwidth {
        rate_kbps: 4000,
        direction: Direction::Downstream,
        probability: 1.0,
    };
    harness
        .client
        .set_fault("slow", "echo", fault, None)
        .await
        .unwrap();
    let payload = vec![7u8; 500_000];
    let started = Instant::now();
    let (mut read, mut write) = stream.split();
    let sender = async { write.write_all(&payload).await.expect("send") };
    let receiver = async {
        let mut echoed = vec![0u8; payload.len()];
        read.read_exact(&mut echoed).await.expect("read");
    };
    tokio::join!(sender, receiver);
    let rate = payload.len() as f64 / started.elapsed().as_secs_f64();
    assert!(
        (400_000.0..=600_000.0).contains(&rate),
        "measured {rate:.0} B/s for a 500000 B/s cap"
    );
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slicer_delivers_small_delayed_pieces_intact() {
    let harness = echo_harness("tcp-slicer").await;
    let mut stream = harness.connect("echo").await;
    let fault = TcpFault::Slicer {
        average_size: 10,
        size_variation: 0,
        delay: Duration::from_millis(10),
        direction: Direction::Downstream,
        probability: 1.0,
    };
    harness
        .client
        .set_fault("slices", "echo", fault, None)
        .await
        .unwrap();
    let payload: Vec<u8> = (0..100u8).collect();
    let started = Instant::now();
    stream.write_all(&payload).await.unwrap();
    let mut received = Vec::new();
    let mut reads = 0;
    let mut buf = [0u8; 256];
    while received.len() < payload.len() {
        let read = stream.read(&mut buf).await.unwrap();
        assert!(read > 0, "closed early");
        received.extend_from_slice(&buf[..read]);
        reads += 1;
    }
    assert_eq!(received, payload);
    assert!(reads >= 5, "arrived in {reads} reads");
    assert!(
        started.elapsed() >= Duration::from_millis(90),
        "took {:?}",
        started.elapsed()
    );
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_data_closes_after_the_byte_budget() {
    let harness = echo_harness("tcp-limit").await;
    let mut stream = harness.connect("echo").await;
    let fault = TcpFault::LimitData {
        bytes: 1000,
        direction: Direction::Downstream,
        probability: 1.0,
    };
    harness
        .client
        .set_fault("limit", "echo", fault, None)
        .await
        .unwrap();
    stream.write_all(&[1u8; 3000]).await.unwrap();
    let (received, _) = tokio::time::timeout(Duration::from_secs(2), read_to_end(&mut stream))
        .await
        .expect("closed");
    assert_eq!(received.len(), 1000);
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probability_is_drawn_per_connection() {
    let harness = echo_harness("tcp-odds").await;
    let reset = |probability| TcpFault::Reset {
        after: Duration::ZERO,
        probability,
    };
    let survives = |harness: &Harness| {
        let addr = harness.addr("echo");
        async move {
            // A reset can beat even the connect.
            let Ok(mut stream) = TcpStream::connect(addr).await else {
                return false;
            };
            let mut buf = [0u8; 4];
            stream.write_all(b"ping").await.is_ok()
                && tokio::time::timeout(Duration::from_secs(1), stream.read_exact(&mut buf))
                    .await
                    .is_ok_and(|r| r.is_ok())
        }
    };

    harness
        .client
        .set_fault("odds", "echo", reset(0.0), None)
        .await
        .unwrap();
    for _ in 0..10 {
        assert!(survives(&harness).await, "p=0 reset a connection");
    }
    harness
        .client
        .set_fault("odds", "echo", reset(1.0), None)
        .await
        .unwrap();
    for _ in 0..10 {
        assert!(!survives(&harness).await, "p=1 spared a connection");
    }
    harness
        .client
        .set_fault("odds", "echo", reset(0.5), None)
        .await
        .unwrap();
    let mut spared = 0;
    for _ in 0..40 {
        spared += usize::from(survives(&harness).await);
    }
    assert!(
        (8..=32).contains(&spared),
        "p=0.5 spared {spared} of 40 connections"
    );
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fault_with_expires_in_disappears_on_its_own() {
    let harness = echo_harness("tcp-expiry").await;
    let mut events = harness.client.subscribe().await.unwrap();
    let mut stream = harness.connect("echo").await;
    let baseline = median_round_trip(&mut stream, 5).await;
    let set_at = Instant::now();
    harness
        .client
        .set_fault(
            "brief",
            "echo",
            latency(150, 0, Direction::Downstream),
            Some(Duration::from_millis(400)),
        )
        .await
        .unwrap();
    assert!(round_trip(&mut stream, b"ping").await >= Duration::from_millis(140));

    let reason = super::next_event(&mut events, Duration::from_secs(3), |event| match event {
        crate::proxy::ProxyEvent::FaultDropped { id, reason, .. } if id == "brief" => Some(reason),
        _ => None,
    })
    .await;
    assert_eq!(reason, crate::proxy::DropReason::Expired);
    assert!(set_at.elapsed() >= Duration::from_millis(400));
    assert!(harness.client.status().await.unwrap().faults.is_empty());
    let after = median_round_trip(&mut stream, 5).await;
    assert!(
        after < baseline + Duration::from_millis(10),
        "baseline {baseline:?}, after expiry {after:?}"
    );
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_upstream_counts_a_connect_error() {
    let closed = super::closed_port().await;
    let harness = Harness::start(
        "tcp-noupstream",
        ListenerSet {
            tcp: vec![tcp_spec("dead", closed)],
            webhooks: vec![],
        },
    )
    .await;
    let mut stream = harness.connect("dead").await;
    let (received, _) = read_to_end(&mut stream).await;
    assert!(received.is_empty());
    wait_until("the connect error is counted", Duration::from_secs(2), || async {
        let status = harness.client.status().await.unwrap();
        matches!(&status.listeners[0].counters, ListenerCounters::Tcp(c) if c.connect_errors == 1)
    })
    .await;
    harness.stop().await;
}
