//! The real daemon, started through the `gameday` binary by a console living in another
//! process, survives that console's SIGKILL: traffic keeps flowing and the console's faults
//! lapse with its lease.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use gameday::proxy::{
    AttachOptions, Direction, ListenerSet, ProxyClient, TcpFault, TcpListenerSpec, daemon_status,
    socket_path,
};

/// Set in the child process: it plays the console instead of running the test.
const CONSOLE_ROLE: &str = "GAMEDAY_TEST_CONSOLE_ROLE";
const TEST_NAME: &str = "spawned_daemon_outlives_a_sigkilled_console";
const LEASE: Duration = Duration::from_secs(1);
const FAULT_LATENCY: Duration = Duration::from_millis(300);

fn test_dir(name: &str) -> PathBuf {
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(".artifacts/test")
        .join(format!("{name}-{suffix}"));
    std::fs::create_dir_all(&dir).expect("create the test directory");
    dir
}

/// A blocking echo server on its own threads.
fn spawn_echo() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind echo");
    let addr = listener.local_addr().expect("echo addr");
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = stream.try_clone().expect("clone");
                let mut writer = stream;
                let _ = std::io::copy(&mut reader, &mut writer);
            });
        }
    });
    addr
}

/// A failing test must not leave the console process behind.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn round_trip(stream: &mut TcpStream) -> Duration {
    // A lost echo fails the test instead of hanging it.
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    let started = Instant::now();
    stream.write_all(b"ping").expect("write");
    let mut echoed = [0u8; 4];
    stream.read_exact(&mut echoed).expect("read the echo");
    assert_eq!(&echoed, b"ping");
    started.elapsed()
}

fn wait_until(what: &str, deadline: Duration, mut condition: impl FnMut() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(
            started.elapsed() < deadline,
            "timed out after {deadline:?} waiting until {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// The console: starts the daemon through the binary, sets a fault, reports, and waits to die.
fn play_console(role: &str) {
    let (dir, upstream) = role.split_once('|').expect("role is dir|upstream");
    runtime().block_on(async {
        let listeners = ListenerSet {
            tcp: vec![TcpListenerSpec {
                name: "echo".into(),
                listen: "127.0.0.1:0".parse().unwrap(),
                upstream: upstream.into(),
            }],
            webhooks: vec![],
        };
        let options = AttachOptions {
            daemon_exe: Some(env!("CARGO_BIN_EXE_gameday").into()),
            // A safety net: the daemon never outlives a failed test by more than this.
            exit_when_idle: Some(Duration::from_secs(60)),
            ..AttachOptions::new(LEASE)
        };
        let client = ProxyClient::attach_with(Path::new(dir), &listeners, options)
            .await
            .expect("attach");
        let bound = client
            .configure_report()
            .get("echo")
            .and_then(|listener| listener.bound)
            .expect("bound");
        let fault = TcpFault::Latency {
            latency: FAULT_LATENCY,
            jitter: Duration::ZERO,
            direction: Direction::Downstream,
            probability: 1.0,
        };
        client
            .set_fault("slow", "echo", fault, None)
            .await
            .expect("set fault");
        println!("CONSOLE-READY {bound} {}", client.daemon().pid);
        std::future::pending::<()>().await;
    });
}

#[test]
fn spawned_daemon_outlives_a_sigkilled_console() {
    if let Ok(role) = std::env::var(CONSOLE_ROLE) {
        return play_console(&role);
    }
    let dir = test_dir("bin-sigkill");
    let echo = spawn_echo();
    let console = Command::new(std::env::current_exe().unwrap())
        .args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
        .env(CONSOLE_ROLE, format!("{}|{echo}", dir.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the console process");
    let mut console = KillOnDrop(console);
    let console = &mut console.0;

    let (lines_tx, lines_rx) = mpsc::channel();
    let stdout = console.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let ready = loop {
        let line = lines_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the console reports ready");
        // libtest prints "test <name> ... " on the same line first.
        if let Some((_, rest)) = line.split_once("CONSOLE-READY ") {
            break rest.to_owned();
        }
    };
    let (proxy, daemon_pid) = ready.split_once(' ').unwrap();
    let proxy: SocketAddr = proxy.parse().unwrap();
    let daemon_pid: i32 = daemon_pid.parse().unwrap();

    // The daemon leads its own session, so closing the console's terminal cannot reach it.
    let pid = nix::unistd::Pid::from_raw(daemon_pid);
    assert_eq!(nix::unistd::getsid(Some(pid)).unwrap(), pid);
    assert_ne!(daemon_pid as u32, console.id());

    let mut stream = TcpStream::connect(proxy).unwrap();
    stream.set_nodelay(true).unwrap();
    assert!(
        round_trip(&mut stream) >= FAULT_LATENCY - Duration::from_millis(10),
        "the console's fault acts"
    );

    console.kill().expect("SIGKILL the console");
    console.wait().unwrap();
    let killed = Instant::now();

    // Forwarding carries on right away, still under the fault until the lease runs out…
    round_trip(&mut stream);
    let rt = runtime();
    wait_until(
        "the dead console's fault lapses",
        LEASE + Duration::from_secs(3),
        || {
            rt.block_on(daemon_status(&dir, Duration::from_secs(2)))
                .expect("status")
                .faults
                .is_empty()
        },
    );
    assert!(
        killed.elapsed() <= LEASE + Duration::from_millis(500),
        "lapsed after {:?}",
        killed.elapsed()
    );
    // …then clean, on the same connection and on new ones.
    assert!(round_trip(&mut stream) < Duration::from_millis(100));
    let mut fresh = TcpStream::connect(proxy).unwrap();
    assert!(round_trip(&mut fresh) < Duration::from_millis(100));

    let gameday = env!("CARGO_BIN_EXE_gameday");
    let status = Command::new(gameday)
        .args(["proxy", "status", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "{printed}");
    assert!(
        printed.contains("echo (tcp)") && printed.contains("faults: none"),
        "{printed}"
    );
    assert!(printed.contains("2 accepted"), "{printed}");

    let log = std::fs::read_to_string(dir.join("proxyd/proxyd.log")).unwrap();
    assert!(
        log.contains("console lease lapsed") && log.contains("fault dropped"),
        "{log}"
    );

    let stop = Command::new(gameday)
        .args(["proxy", "stop", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&stop.stdout);
    assert!(stop.status.success(), "{printed}");
    assert!(
        printed.contains(&format!("stopped the proxy daemon (pid {daemon_pid})")),
        "{printed}"
    );
    assert!(!socket_path(&dir).exists());
    wait_until("the daemon process is gone", Duration::from_secs(5), || {
        // Gone, or a zombie waiting for whichever process adopted it.
        match std::fs::read_to_string(format!("/proc/{daemon_pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        }
    });
    std::fs::remove_dir_all(&dir).unwrap();
}
