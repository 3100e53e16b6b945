//! A bot token in a webhook upstream's path never reaches the proxy daemon's log, the records
//! it streams, the caller's error answer, or `gameday proxy status` — including on the error
//! path, when the upstream is dead.

mod support;

use std::fs::OpenOptions;
use std::net::TcpListener;
use std::os::unix::fs::DirBuilderExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use gameday::proxy::{
    AttachOptions, ListenerSet, ProxyClient, ProxyEvent, WebhookListenerSpec, WebhookOutcome,
    daemon_status, format_status, log_path, stop_daemon,
};
use support::{GAMEDAY, gameday, test_dir, wait_until};

const SECRET: &str = "SECRETTOKEN";
const DEADLINE: Duration = Duration::from_secs(10);

/// A failing test must not leave the daemon behind.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn a_bot_token_in_the_upstream_never_reaches_the_daemon_log_or_the_status() {
    let dir = test_dir("secrets");
    // Bound then dropped: nothing listens there, so forwarding fails.
    let dead = TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("pick a port");
    let upstream = format!("http://{dead}/bot123456:{SECRET}/");

    // The real binary, so its real log writer is what gets checked; debug so the per-request
    // line (with the upstream error) is logged too. Its stdout and stderr go to the same log,
    // as when a console starts it.
    // Private, as the daemon wants its control directory.
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(dir.join("proxyd"))
        .expect("control dir");
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path(&dir))
        .expect("open the log");
    let daemon = Command::new(GAMEDAY)
        .args(["proxy", "daemon", "--exit-when-idle", "60s", "--dir"])
        .arg(&dir)
        .env("GAMEDAY_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("clone the log"))
        .stderr(log)
        .spawn()
        .expect("start the daemon");
    let mut daemon = KillOnDrop(daemon);
    let rt = runtime();
    wait_until("the daemon answers", DEADLINE, || {
        rt.block_on(daemon_status(&dir, Duration::from_secs(1)))
            .is_ok()
    });

    rt.block_on(async {
        let listeners = ListenerSet {
            tcp: vec![],
            webhooks: vec![WebhookListenerSpec {
                name: "telegram".into(),
                listen: "127.0.0.1:0".parse().unwrap(),
                upstream: upstream.clone(),
                timeout: Duration::from_secs(2),
                ca_file: None,
            }],
        };
        let options = AttachOptions {
            // Never start a second daemon from this test binary.
            daemon_exe: Some(GAMEDAY.into()),
            ..AttachOptions::new(Duration::from_secs(5))
        };
        let client = ProxyClient::attach_with(&dir, &listeners, options)
            .await
            .expect("attach");
        let bound = client
            .configure_report()
            .get("telegram")
            .and_then(|listener| listener.bound)
            .expect("the webhook listener is bound");
        let mut events = client.subscribe().await.expect("subscribe");

        let caller = gameday::http_client::builder()
            .timeout(Duration::from_secs(5))
            .no_proxy()
            .build()
            .unwrap();
        let answer = caller
            .post(format!("http://{bound}/sendMessage"))
            .body("{\"chat_id\":1,\"text\":\"drill\"}")
            .send()
            .await
            .expect("the forwarder answers");
        assert_eq!(answer.status().as_u16(), 502);
        let body = answer.text().await.expect("the answer's body");
        assert!(!body.contains(SECRET), "502 body: {body}");

        let until = tokio::time::Instant::now() + DEADLINE;
        let reason = loop {
            let event = tokio::time::timeout_at(until, events.recv())
                .await
                .expect("a webhook record within the deadline")
                .expect("event stream open");
            if let ProxyEvent::Webhook(record) = event {
                match record.outcome {
                    WebhookOutcome::UpstreamError(reason) => break reason,
                    other => panic!("expected an upstream error, got {other:?}"),
                }
            }
        };
        assert!(!reason.contains(SECRET), "record: {reason}");

        let status = format_status(&client.status().await.expect("status"));
        assert!(!status.contains(SECRET), "status:\n{status}");
        assert!(status.contains("/bot***/"), "status:\n{status}");
        client.detach().await;
    });

    let printed = gameday(&dir, &["proxy", "status", "--dir", dir.to_str().unwrap()]);
    assert!(printed.status.success(), "{printed:?}");
    let printed = String::from_utf8_lossy(&printed.stdout);
    assert!(!printed.contains(SECRET), "proxy status:\n{printed}");
    assert!(
        printed.contains("1 upstream errors"),
        "proxy status:\n{printed}"
    );

    rt.block_on(stop_daemon(&dir, Duration::from_secs(5)))
        .expect("stop the daemon");
    wait_until("the daemon exits", DEADLINE, || {
        daemon.0.try_wait().expect("wait on the daemon").is_some()
    });

    let log = std::fs::read_to_string(log_path(&dir)).expect("read the daemon log");
    assert!(
        log.contains("webhook forwarder listening"),
        "the log has the listener line:\n{log}"
    );
    assert!(
        log.contains("/bot***/"),
        "the upstream is logged masked:\n{log}"
    );
    assert!(
        log.contains("UpstreamError"),
        "the error path was logged:\n{log}"
    );
    assert!(!log.contains(SECRET), "the token reached the log:\n{log}");
    std::fs::remove_dir_all(&dir).expect("remove the test directory");
}
