//! The daemon's control socket, leases and reconfiguration.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{TcpStream, UnixStream};

use super::{Harness, median_round_trip, round_trip, spawn_echo, tcp_spec, test_dir, wait_until};
use crate::proxy::daemon::read_line;
use crate::proxy::{
    AttachOptions, ClientError, Daemon, DaemonOptions, Direction, DropReason, ListenerAction,
    ListenerSet, ProxyClient, ProxyEvent, Response, TcpFault, WebhookFault, control_dir,
    daemon_status, pid_path, socket_path,
};

fn latency(ms: u64) -> TcpFault {
    TcpFault::Latency {
        latency: Duration::from_millis(ms),
        jitter: Duration::ZERO,
        direction: Direction::Upstream,
        probability: 1.0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_owner_can_reach_the_control_socket() {
    let harness = Harness::start("d-perms", ListenerSet::default()).await;
    let dir_mode = std::fs::metadata(control_dir(&harness.dir))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    let socket_mode = std::fs::metadata(socket_path(&harness.dir))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!((dir_mode, socket_mode), (0o700, 0o600));
    let pid = std::fs::read_to_string(pid_path(&harness.dir)).unwrap();
    assert_eq!(pid.trim(), std::process::id().to_string());

    let dir = harness.dir.clone();
    harness.daemon.shutdown().await;
    assert!(
        !socket_path(&dir).exists() && !pid_path(&dir).exists(),
        "socket and pid file are removed on exit"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_daemon_will_not_take_over_a_live_socket() {
    let harness = Harness::start("d-twice", ListenerSet::default()).await;
    let err = Daemon::start(&harness.dir, DaemonOptions::default())
        .await
        .err()
        .expect("second daemon refused");
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
    // The first one still answers.
    harness.client.status().await.unwrap();
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_left_by_a_killed_daemon_is_replaced() {
    let dir = test_dir("d-stale");
    crate::proxy::daemon::prepare_control_dir(&dir).unwrap();
    // Binding and dropping leaves the socket file with nobody behind it, as SIGKILL would.
    drop(std::os::unix::net::UnixListener::bind(socket_path(&dir)).unwrap());
    assert!(socket_path(&dir).exists());
    let daemon = Daemon::start(&dir, DaemonOptions::default())
        .await
        .expect("starts over a stale socket");
    daemon_status(&dir, Duration::from_secs(2))
        .await
        .expect("answers on the new socket");
    daemon.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wire_protocol_is_one_json_document_per_line() {
    let harness = Harness::start("d-wire", ListenerSet::default()).await;
    let stream = UnixStream::connect(socket_path(&harness.dir))
        .await
        .unwrap();
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let mut ask = async |line: &str| -> Response {
        write
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
        serde_json::from_str(&read_line(&mut read).await.unwrap().unwrap()).unwrap()
    };

    let status = ask(r#"{"request":"status"}"#).await;
    assert!(
        matches!(status, Response::Ok(crate::proxy::Reply::Status(_))),
        "{status:?}"
    );
    let garbage = ask("{not json").await;
    assert!(
        matches!(&garbage, Response::Err { message } if message.contains("cannot read")),
        "{garbage:?}"
    );
    let unattached = ask(
        r#"{"request":"set_fault","id":"x","listener":"none","fault":{"tcp":{"type":"down"}},"expires_in":"5s"}"#,
    )
    .await;
    assert!(
        matches!(&unattached, Response::Err { message } if message.contains("hello")),
        "{unattached:?}"
    );
    let hello = ask(r#"{"request":"hello","console_pid":1,"lease":"2s"}"#).await;
    assert!(
        matches!(hello, Response::Ok(crate::proxy::Reply::Hello(_))),
        "{hello:?}"
    );
    let unknown = ask(
        r#"{"request":"set_fault","id":"x","listener":"none","fault":{"tcp":{"type":"down"}}}"#,
    )
    .await;
    assert!(
        matches!(&unknown, Response::Err { message } if message.contains("no listener")),
        "{unknown:?}"
    );
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_fault_and_clear_fault_are_idempotent() {
    let echo = spawn_echo().await;
    let harness = Harness::start(
        "d-idem",
        ListenerSet {
            tcp: vec![tcp_spec("echo", echo)],
            webhooks: vec![],
        },
    )
    .await;
    let client = &harness.client;
    let mut events = client.subscribe().await.unwrap();

    assert!(
        client
            .set_fault("slow", "echo", latency(50), None)
            .await
            .unwrap()
    );
    assert!(
        !client
            .set_fault("slow", "echo", latency(50), None)
            .await
            .unwrap(),
        "same fault twice changes nothing"
    );
    assert_eq!(client.status().await.unwrap().faults.len(), 1);
    assert!(
        client
            .set_fault("slow", "echo", latency(80), None)
            .await
            .unwrap(),
        "a different fault replaces it"
    );
    let faults = client.status().await.unwrap().faults;
    assert_eq!(faults.len(), 1);
    assert_eq!(faults[0].fault, latency(80).into());

    assert!(client.clear_fault("slow").await.unwrap());
    assert!(
        !client.clear_fault("slow").await.unwrap(),
        "clearing twice is harmless"
    );
    assert!(client.status().await.unwrap().faults.is_empty());

    let wrong_kind = client
        .set_fault("w", "echo", WebhookFault::Hang { probability: 1.0 }, None)
        .await;
    assert!(
        matches!(&wrong_kind, Err(ClientError::Refused { message, .. }) if message.contains("webhook"))
    );
    let bad = client
        .set_fault(
            "b",
            "echo",
            TcpFault::Reset {
                after: Duration::ZERO,
                probability: 2.0,
            },
            None,
        )
        .await;
    assert!(
        matches!(&bad, Err(ClientError::Refused { message, .. }) if message.contains("probability"))
    );

    let mut seen = Vec::new();
    while seen.len() < 4 {
        let event = super::next_event(&mut events, Duration::from_secs(2), |event| match event {
            ProxyEvent::FaultApplied { id, .. } => Some(format!("applied {id}")),
            ProxyEvent::FaultDropped { id, reason, .. } => Some(format!("dropped {id} {reason:?}")),
            _ => None,
        })
        .await;
        seen.push(event);
    }
    assert_eq!(
        seen,
        [
            "applied slow",
            "dropped slow Replaced",
            "applied slow",
            "dropped slow Cleared"
        ]
    );
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_keep_faults_past_the_lease() {
    let echo = spawn_echo().await;
    let lease = Duration::from_millis(400);
    let harness = Harness::with_lease(
        "d-alive",
        ListenerSet {
            tcp: vec![tcp_spec("echo", echo)],
            webhooks: vec![],
        },
        lease,
    )
    .await;
    harness
        .client
        .set_fault("slow", "echo", latency(50), None)
        .await
        .unwrap();
    let mut stream = harness.connect("echo").await;
    // Three leases' worth of traffic, all of it delayed.
    let started = Instant::now();
    while started.elapsed() < lease * 3 {
        assert!(round_trip(&mut stream, b"ping").await >= Duration::from_millis(45));
    }
    assert_eq!(harness.client.status().await.unwrap().faults.len(), 1);
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_lapse_with_the_lease_while_forwarding_continues() {
    let echo = spawn_echo().await;
    let lease = Duration::from_millis(500);
    let harness = Harness::with_lease(
        "d-lapse",
        ListenerSet {
            tcp: vec![tcp_spec("echo", echo)],
            webhooks: vec![],
        },
        lease,
    )
    .await;
    let dir = harness.dir.clone();
    let mut stream = harness.connect("echo").await;
    let baseline = median_round_trip(&mut stream, 5).await;
    let mut events = harness.client.subscribe().await.unwrap();
    harness
        .client
        .set_fault("slow", "echo", latency(100), None)
        .await
        .unwrap();
    assert!(round_trip(&mut stream, b"ping").await >= Duration::from_millis(95));

    // The console goes silent without clearing anything.
    let Harness { daemon, client, .. } = harness;
    let silent_since = Instant::now();
    client.detach().await;
    let reason = super::next_event(&mut events, Duration::from_secs(3), |event| match event {
        ProxyEvent::FaultDropped { reason, .. } => Some(reason),
        _ => None,
    })
    .await;
    assert_eq!(reason, DropReason::LeaseLapsed);
    // The last heartbeat went at most a third of a lease before the console fell silent.
    let silent_for = silent_since.elapsed();
    assert!(
        silent_for >= lease * 2 / 3 - Duration::from_millis(20),
        "dropped after {silent_for:?}"
    );
    assert!(
        silent_for <= lease + Duration::from_millis(200),
        "dropped after {silent_for:?}"
    );

    // Looking at the status does not renew the lease or bring the fault back.
    let status = daemon_status(&dir, Duration::from_secs(2)).await.unwrap();
    assert!(
        status.faults.is_empty() && status.lease.consoles.is_empty(),
        "{status:?}"
    );
    let after = median_round_trip(&mut stream, 5).await;
    assert!(
        after < baseline + Duration::from_millis(10),
        "same connection, clean again: {after:?}"
    );
    daemon.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconfigure_adds_removes_and_restarts_listeners() {
    let first_echo = spawn_echo().await;
    let second_echo = spawn_echo().await;
    let listeners = ListenerSet {
        tcp: vec![tcp_spec("a", first_echo), tcp_spec("b", first_echo)],
        webhooks: vec![],
    };
    let harness = Harness::start("d-reconf", listeners).await;
    let old_b = harness.addr("b");
    let mut events = harness.client.subscribe().await.unwrap();
    harness
        .client
        .set_fault("on-b", "b", latency(10), None)
        .await
        .unwrap();

    // Keep "a" on its port but move it to the second upstream; drop "b"; add "c"; and ask for
    // "d" on a port that is taken, which must not stop the others.
    let taken = harness.addr("a");
    let mut a = tcp_spec("a", second_echo);
    a.listen = taken;
    let mut d = tcp_spec("d", first_echo);
    d.listen = taken;
    let report = harness
        .client
        .configure(&ListenerSet {
            tcp: vec![a, tcp_spec("c", first_echo), d],
            webhooks: vec![],
        })
        .await
        .unwrap();
    let action = |name: &str| report.get(name).unwrap().action;
    assert_eq!(
        (action("a"), action("c"), action("d")),
        (
            ListenerAction::Restarted,
            ListenerAction::Started,
            ListenerAction::Failed
        )
    );
    assert!(
        report
            .get("d")
            .unwrap()
            .error
            .as_deref()
            .unwrap()
            .contains("in use"),
        "{report:?}"
    );
    assert_eq!(report.get("a").unwrap().bound, Some(taken));

    let reason = super::next_event(&mut events, Duration::from_secs(2), |event| match event {
        ProxyEvent::FaultDropped { id, reason, .. } if id == "on-b" => Some(reason),
        _ => None,
    })
    .await;
    assert_eq!(reason, DropReason::ListenerRemoved);
    wait_until("b no longer listens", Duration::from_secs(2), || async {
        TcpStream::connect(old_b).await.is_err()
    })
    .await;
    for name in ["a", "c"] {
        let mut stream = harness.connect(name).await;
        round_trip(&mut stream, name.as_bytes()).await;
    }
    let status = harness.client.status().await.unwrap();
    let names: Vec<&str> = status
        .listeners
        .iter()
        .map(|listener| listener.name.as_str())
        .collect();
    assert_eq!(names, ["a", "c", "d"]);
    assert_eq!(status.listeners[0].upstream, second_echo.to_string());

    let duplicate = ListenerSet {
        tcp: vec![tcp_spec("x", first_echo), tcp_spec("x", first_echo)],
        webhooks: vec![],
    };
    let refused = harness.client.configure(&duplicate).await;
    assert!(
        matches!(&refused, Err(ClientError::Refused { message, .. }) if message.contains("more than once"))
    );
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_daemon_exits_when_asked_to() {
    let dir = test_dir("d-idle");
    let options = DaemonOptions {
        exit_when_idle: Some(Duration::from_millis(300)),
    };
    let mut daemon = Daemon::start(&dir, options).await.unwrap();
    // A console keeps it alive while attached…
    let client = ProxyClient::attach_with(
        &dir,
        &ListenerSet::default(),
        AttachOptions::new(Duration::from_millis(300)),
    )
    .await
    .unwrap();
    let attached = Instant::now();
    tokio::time::timeout(Duration::from_millis(900), daemon.wait())
        .await
        .expect_err("exited with a console attached");
    // …and once it is gone, the daemon lasts one lease plus the idle limit.
    client.detach().await;
    let detached = Instant::now();
    tokio::time::timeout(Duration::from_secs(3), daemon.wait())
        .await
        .expect("exited when idle");
    assert!(
        detached.elapsed() >= Duration::from_millis(450),
        "exited {:?} after the console left",
        detached.elapsed()
    );
    assert!(attached.elapsed() >= Duration::from_millis(900));
    assert!(!socket_path(&dir).exists());
    std::fs::remove_dir_all(&dir).unwrap();
}
