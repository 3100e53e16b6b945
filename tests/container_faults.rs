//! Container faults against the real Docker engine: NATS servers in `FROM scratch` containers
//! built from the local static nats-server (no registry), faulted and reverted through the
//! `Fault` trait and once through the fault engine.
//!
//! `support::docker` labels every container and network a test creates, publishes only on
//! 127.0.0.1, and removes them when the test ends, also when it fails.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;
use bollard::models::ContainerStateStatusEnum as Status;
use gameday::config::Config;
use gameday::faults::container::{check_engine, check_target};
use gameday::faults::docker::{DockerHandle, host_from_env};
use gameday::faults::engine::{self, FaultReport};
use gameday::faults::{FaultContext, FaultError, FaultSpec, build};
use gameday::ledger::Ledger;
use gameday::timeline::{Cause, FaultPhase};
use support::docker::{DockerLab, answers, wait_until};
use tokio::time::Instant;

/// Fault-trait tests build the config in-process; the console tests write it to a file.
impl DockerLab {
    /// A config declaring `containers` (TOML lines) and `faults`, with artifacts in the test dir.
    fn config(&self, declarations: &str) -> Arc<Config> {
        let text = format!(
            "[console]\nartifacts = \"{}\"\n\n{declarations}",
            self.dir.join("artifacts").display()
        );
        Arc::new(Config::from_text(&self.dir.join("gameday.toml"), &text).expect("valid config"))
    }
}

/// A real client can connect and round-trip to the server.
async fn client_works(port: u16) -> bool {
    let connect = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(1))
        .connect(format!("nats://127.0.0.1:{port}"));
    match tokio::time::timeout(Duration::from_secs(2), connect).await {
        Ok(Ok(client)) => client.flush().await.is_ok(),
        _ => false,
    }
}

async fn next_report(rx: &mut tokio::sync::mpsc::Receiver<FaultReport>) -> FaultReport {
    tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .expect("a report within 20s")
        .expect("the engine is alive")
}

fn spec(config: &Config, fault: &str) -> FaultSpec {
    config
        .faults
        .iter()
        .find(|f| f.name == fault)
        .unwrap_or_else(|| panic!("fault {fault} in the config"))
        .spec
        .clone()
}

fn context(config: &Arc<Config>) -> FaultContext {
    FaultContext::new(config.clone(), None)
}

#[tokio::test]
async fn stop_takes_nats_down_and_a_fresh_instance_starts_it_again() {
    let lab = DockerLab::new("container-stop").await;
    let nats = lab.nats("stop", &[], None).await;
    let config = lab.config(&format!(
        "[[container]]\nname = \"broker\"\ncontainer = \"{}\"\n\n\
         [[fault]]\nname = \"broker-stop\"\nkind = \"container_stop\"\ntarget = \"broker\"\n",
        nats.name
    ));
    let ctx = context(&config);
    let docker = ctx.docker().await.unwrap();
    assert_eq!(
        check_target(docker, &config.containers[0]).await,
        Ok(format!("{} running, id {}", nats.name, &nats.id[..12]))
    );
    assert!(client_works(nats.port).await);

    let mut fault = build("broker-stop-1", &spec(&config, "broker-stop"));
    let started = Instant::now();
    fault.inject(&ctx).await.expect("inject");
    let inject_call = started.elapsed();
    wait_until("client fails", Duration::from_secs(5), || async {
        !client_works(nats.port).await
    })
    .await;
    let stop_to_down = started.elapsed();
    assert_eq!(lab.status(&nats.name).await, Status::EXITED);
    assert_eq!(
        check_target(docker, &config.containers[0]).await,
        Err(format!("{} is exited", nats.name)),
        "gameday check says why"
    );
    let described = fault.describe(&config);
    assert_eq!(described.kind, "container stop");
    assert_eq!(
        described.blast_radius,
        format!(
            "container {} ({}…) and everything that talks to it",
            nats.name,
            &nats.id[..12]
        )
    );

    // The ledger path: a new instance from the same spec, which never saw the inject.
    let mut fresh = build("broker-stop-1", &spec(&config, "broker-stop"));
    let started = Instant::now();
    fresh.revert(&ctx).await.expect("revert");
    let revert_call = started.elapsed();
    wait_until("client works again", Duration::from_secs(10), || {
        client_works(nats.port)
    })
    .await;
    let revert_to_up = started.elapsed();
    assert_eq!(lab.status(&nats.name).await, Status::RUNNING);
    eprintln!(
        "timing: inject call {inject_call:?}, stop→down {stop_to_down:?}; \
         revert call {revert_call:?}, revert→up {revert_to_up:?}"
    );
}

#[tokio::test]
async fn pause_freezes_the_process_and_unpause_thaws_the_same_one() {
    let lab = DockerLab::new("container-pause").await;
    let nats = lab.nats("pause", &[], None).await;
    let config = lab.config(&format!(
        "[[container]]\nname = \"broker\"\ncontainer = \"{}\"\n\n\
         [[fault]]\nname = \"freeze\"\nkind = \"container_pause\"\ntarget = \"broker\"\n",
        nats.name
    ));
    let ctx = context(&config);
    let pid_before = lab
        .docker
        .inspect_container(&nats.name, None)
        .await
        .unwrap()
        .state
        .and_then(|s| s.pid);

    let mut fault = build("freeze-1", &spec(&config, "freeze"));
    fault.inject(&ctx).await.expect("inject");
    assert_eq!(lab.status(&nats.name).await, Status::PAUSED);
    assert!(!answers(nats.port).await, "a frozen server sends no INFO");

    let mut fresh = build("freeze-1", &spec(&config, "freeze"));
    fresh.revert(&ctx).await.expect("revert");
    wait_until("answers again", Duration::from_secs(5), || {
        answers(nats.port)
    })
    .await;
    let state = lab
        .docker
        .inspect_container(&nats.name, None)
        .await
        .unwrap()
        .state
        .unwrap();
    assert_eq!(state.status, Some(Status::RUNNING));
    assert_eq!(state.pid, pid_before, "the same process, frozen and thawed");
}

#[tokio::test]
async fn inject_twice_and_revert_twice_are_harmless() {
    let lab = DockerLab::new("container-idempotent").await;
    let nats = lab.nats("twice", &[], None).await;
    let config = lab.config(&format!(
        "[[container]]\nname = \"broker\"\ncontainer = \"{}\"\n\n\
         [[fault]]\nname = \"freeze\"\nkind = \"container_pause\"\ntarget = \"broker\"\n\n\
         [[fault]]\nname = \"stop\"\nkind = \"container_stop\"\ntarget = \"broker\"\n",
        nats.name
    ));
    let ctx = context(&config);
    for name in ["freeze", "stop"] {
        let mut fault = build("twice-1", &spec(&config, name));
        fault.inject(&ctx).await.expect("first inject");
        fault.inject(&ctx).await.expect("second inject");
        assert!(!answers(nats.port).await, "{name}: down after two injects");
        fault.revert(&ctx).await.expect("first revert");
        fault.revert(&ctx).await.expect("second revert");
        wait_until(
            &format!("{name}: answers after two reverts"),
            Duration::from_secs(10),
            || answers(nats.port),
        )
        .await;
        assert_eq!(lab.status(&nats.name).await, Status::RUNNING);
    }
}

#[tokio::test]
async fn kill_with_sigkill_and_revert_starts_it() {
    let lab = DockerLab::new("container-kill").await;
    let nats = lab.nats("kill", &[], None).await;
    let config = lab.config(&format!(
        "[[container]]\nname = \"broker\"\ncontainer = \"{}\"\n\n\
         [[fault]]\nname = \"crash\"\nkind = \"container_kill\"\ntarget = \"broker\"\nsignal = \"SIGKILL\"\n",
        nats.id
    ));
    let ctx = context(&config);
    let mut fault = build("crash-1", &spec(&config, "crash"));
    assert_eq!(
        fault.describe(&config).params,
        "send SIGKILL; revert starts it"
    );
    fault.inject(&ctx).await.expect("inject");
    wait_until("exited", Duration::from_secs(5), || async {
        lab.status(&nats.name).await == Status::EXITED
    })
    .await;
    let exit_code = lab
        .docker
        .inspect_container(&nats.name, None)
        .await
        .unwrap()
        .state
        .and_then(|s| s.exit_code);
    assert_eq!(exit_code, Some(137), "killed by SIGKILL, not stopped");

    build("crash-1", &spec(&config, "crash"))
        .revert(&ctx)
        .await
        .expect("revert");
    wait_until("answers again", Duration::from_secs(10), || {
        answers(nats.port)
    })
    .await;
}

#[tokio::test]
async fn restart_bounces_it_once_and_revert_has_nothing_to_do() {
    let lab = DockerLab::new("container-restart").await;
    let nats = lab.nats("restart", &[], None).await;
    let config = lab.config(&format!(
        "[[container]]\nname = \"broker\"\ncontainer = \"{}\"\n\n\
         [[fault]]\nname = \"bounce\"\nkind = \"container_restart\"\ntarget = \"broker\"\n",
        nats.name
    ));
    let ctx = context(&config);
    let started_at = |docker: Docker, name: String| async move {
        docker
            .inspect_container(&name, None)
            .await
            .unwrap()
            .state
            .and_then(|s| s.started_at)
    };
    let before = started_at(lab.docker.clone(), nats.name.clone()).await;
    let mut fault = build("bounce-1", &spec(&config, "bounce"));
    fault.inject(&ctx).await.expect("inject");
    let after = started_at(lab.docker.clone(), nats.name.clone()).await;
    assert_ne!(before, after, "started again");
    fault.inject(&ctx).await.expect("a second inject");
    assert_eq!(
        started_at(lab.docker.clone(), nats.name.clone()).await,
        after,
        "the same instance restarts once"
    );
    wait_until("answers", Duration::from_secs(10), || answers(nats.port)).await;
    build("bounce-1", &spec(&config, "bounce"))
        .revert(&ctx)
        .await
        .expect("revert");
    assert_eq!(
        started_at(lab.docker.clone(), nats.name.clone()).await,
        after,
        "revert leaves it running as it is"
    );
}

#[tokio::test]
async fn disconnect_cuts_it_off_its_network_and_revert_reconnects_with_its_alias() {
    let lab = DockerLab::new("container-disconnect").await;
    let network = lab.network("net").await;
    let nats = lab.nats("cut", &[], Some(&network)).await;
    let config = lab.config(&format!(
        "[[container]]\nname = \"broker\"\ncontainer = \"{}\"\n\n\
         [[fault]]\nname = \"cut\"\nkind = \"container_disconnect\"\ntarget = \"broker\"\nnetwork = \"{network}\"\n",
        nats.name
    ));
    let ctx = context(&config);
    let endpoint = |docker: Docker| {
        let (name, network) = (nats.name.clone(), network.clone());
        async move {
            docker
                .inspect_container(&name, None)
                .await
                .unwrap()
                .network_settings
                .and_then(|n| n.networks)
                .and_then(|mut n| n.remove(&network))
        }
    };
    let mut fault = build("cut-1", &spec(&config, "cut"));
    fault.inject(&ctx).await.expect("inject");
    assert!(endpoint(lab.docker.clone()).await.is_none());
    assert_eq!(lab.status(&nats.name).await, Status::RUNNING);
    assert!(!answers(nats.port).await, "unreachable without its network");
    fault.inject(&ctx).await.expect("a second inject");

    fault.revert(&ctx).await.expect("revert");
    let back = endpoint(lab.docker.clone()).await.expect("connected again");
    assert!(
        back.aliases
            .unwrap_or_default()
            .contains(&"cut-alias".to_string()),
        "the alias it had"
    );
    wait_until("answers again", Duration::from_secs(10), || {
        answers(nats.port)
    })
    .await;

    // The ledger path reconnects too.
    fault.inject(&ctx).await.expect("inject again");
    build("cut-1", &spec(&config, "cut"))
        .revert(&ctx)
        .await
        .expect("fresh revert");
    assert!(endpoint(lab.docker.clone()).await.is_some());
}

#[tokio::test]
async fn a_label_selects_every_carrier_and_nothing_else() {
    let lab = DockerLab::new("container-label").await;
    let label = format!("gameday.role={}-pair", lab.run);
    let role = label.split_once('=').unwrap().1.to_string();
    let a = lab.nats("a", &[("gameday.role", &role)], None).await;
    let b = lab.nats("b", &[("gameday.role", &role)], None).await;
    let bystander = lab
        .nats("bystander", &[("gameday.role", "other")], None)
        .await;
    let config = lab.config(&format!(
        "[[container]]\nname = \"pair\"\nlabel = \"{label}\"\n\n\
         [[fault]]\nname = \"pair-stop\"\nkind = \"container_stop\"\ntarget = \"pair\"\n",
    ));
    let ctx = context(&config);
    let docker = ctx.docker().await.unwrap();
    assert_eq!(
        check_target(docker, &config.containers[0]).await,
        Ok(format!("2 containers running: {}, {}", a.name, b.name))
    );
    let mut fault = build("pair-stop-1", &spec(&config, "pair-stop"));
    fault.inject(&ctx).await.expect("inject");
    assert_eq!(lab.status(&a.name).await, Status::EXITED);
    assert_eq!(lab.status(&b.name).await, Status::EXITED);
    assert_eq!(lab.status(&bystander.name).await, Status::RUNNING);
    assert!(answers(bystander.port).await);
    assert_eq!(
        fault.describe(&config).blast_radius,
        format!(
            "2 containers labelled {label} ({}, {}) and everything that talks to them",
            a.name, b.name
        )
    );

    build("pair-stop-1", &spec(&config, "pair-stop"))
        .revert(&ctx)
        .await
        .expect("fresh revert");
    wait_until("both answer", Duration::from_secs(10), || async {
        answers(a.port).await && answers(b.port).await
    })
    .await;
}

#[tokio::test]
async fn targets_not_declared_exactly_are_refused_and_left_alone() {
    let lab = DockerLab::new("container-refused").await;
    let nats = lab.nats("kept", &[], None).await;
    // A short id prefix Docker itself would resolve to this container, a name that exists
    // nowhere, and a label nobody carries.
    let prefix = &nats.id[..8];
    let config = lab.config(&format!(
        "[[container]]\nname = \"by-prefix\"\ncontainer = \"{prefix}\"\n\n\
         [[container]]\nname = \"missing\"\ncontainer = \"{}-gone\"\n\n\
         [[container]]\nname = \"nobody\"\nlabel = \"gameday.role={}-nobody\"\n\n\
         [[fault]]\nname = \"prefix-stop\"\nkind = \"container_stop\"\ntarget = \"by-prefix\"\n\n\
         [[fault]]\nname = \"missing-stop\"\nkind = \"container_stop\"\ntarget = \"missing\"\n\n\
         [[fault]]\nname = \"nobody-kill\"\nkind = \"container_kill\"\ntarget = \"nobody\"\n",
        nats.name, lab.run
    ));
    let ctx = context(&config);
    let docker = ctx.docker().await.unwrap();
    let resolved_by_docker = docker.inspect_container(prefix, None).await.map(|c| c.id);
    for fault in ["prefix-stop", "missing-stop", "nobody-kill"] {
        let mut f = build("refused-1", &spec(&config, fault));
        match f.inject(&ctx).await {
            Err(FaultError::Refused(why)) => eprintln!("{fault}: refused: {why}"),
            other => panic!("{fault}: expected a refusal, got {other:?}"),
        }
        // Nothing of it was applied, so the cleanup revert has nothing to do.
        f.revert(&ctx).await.expect("revert of nothing");
        assert_eq!(lab.status(&nats.name).await, Status::RUNNING, "{fault}");
    }
    if resolved_by_docker.ok().flatten() == Some(nats.id.clone()) {
        let mut f = build("refused-1", &spec(&config, "prefix-stop"));
        let Err(FaultError::Refused(why)) = f.inject(&ctx).await else {
            panic!("refused")
        };
        assert!(
            why.contains(&format!("resolves to container {}", nats.name)),
            "{why}"
        );
    }
    assert!(answers(nats.port).await, "untouched");
}

#[tokio::test]
async fn no_engine_is_unavailable_with_the_reason_at_once() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!(
        ".artifacts/test/container-no-engine-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("no-docker.sock");
    let config = Arc::new(
        Config::from_text(
            &dir.join("gameday.toml"),
            "[[container]]\nname = \"broker\"\ncontainer = \"gameday-nats\"\n\n\
             [[fault]]\nname = \"stop\"\nkind = \"container_stop\"\ntarget = \"broker\"\n",
        )
        .unwrap(),
    );
    let mut ctx = FaultContext::new(config.clone(), None);
    ctx.docker = DockerHandle::new(format!("unix://{}", socket.display()));
    let started = Instant::now();
    let mut fault = build("stop-1", &spec(&config, "stop"));
    let expected = format!(
        "Docker engine not reachable at unix://{}: Socket not found: {}",
        socket.display(),
        socket.display()
    );
    assert_eq!(
        fault.inject(&ctx).await,
        Err(FaultError::Unavailable(expected.clone()))
    );
    assert_eq!(
        fault.revert(&ctx).await,
        Err(FaultError::Unavailable(expected.clone())),
        "a revert that could not run is not a success: the ledger keeps the entry"
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(check_engine(&ctx.docker).await, Err(expected));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn gameday_check_prints_the_engine_and_each_container() {
    let lab = DockerLab::new("container-check").await;
    let nats = lab.nats("checked", &[], None).await;
    let config_path = lab.dir.join("gameday.toml");
    std::fs::write(
        &config_path,
        format!(
            "[console]\nartifacts = \"{}\"\n\n\
             [[container]]\nname = \"broker\"\ncontainer = \"{}\"\n\n\
             [[container]]\nname = \"ghost\"\ncontainer = \"{}-ghost\"\n",
            lab.dir.join("artifacts").display(),
            nats.name,
            nats.name
        ),
    )
    .unwrap();
    let check = |docker_host: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_gameday"))
            .arg("check")
            .arg("--config")
            .arg(&config_path)
            .env("DOCKER_HOST", docker_host)
            .output()
            .expect("run gameday check")
    };
    let out = check(&host_from_env());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("docker engine  docker     ✔ reachable (") && text.contains(", API 1."),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "broker         container  ✔ reachable ({} running, id {})",
            nats.name,
            &nats.id[..12]
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "ghost          container  ✖ no container named \"{}-ghost\" on the Docker engine",
            nats.name
        )),
        "{text}"
    );
    assert_eq!(out.status.code(), Some(1), "a target is missing");

    let missing = lab.dir.join("missing.sock");
    let out = check(&format!("unix://{}", missing.display()));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            "docker engine  docker     ✖ Docker engine not reachable at unix://{}: Socket not found",
            missing.display()
        )),
        "{text}"
    );
    assert!(
        text.contains(
            "broker         container  ✖ not checked: the Docker engine is not reachable"
        ),
        "{text}"
    );
}

#[tokio::test]
async fn through_the_engine_reports_come_in_order_and_the_ledger_holds_it_while_active() {
    let lab = DockerLab::new("container-engine").await;
    let nats = lab.nats("engine", &[], None).await;
    let config = lab.config(&format!(
        "[[container]]\nname = \"broker\"\ncontainer = \"{}\"\n\n\
         [[fault]]\nname = \"broker-stop\"\nkind = \"container_stop\"\ntarget = \"broker\"\nduration = \"5m\"\n",
        nats.name
    ));
    let ledger = Ledger::new(&config.console.artifacts).unwrap();
    let ctx = Arc::new(context(&config));
    let (tx, mut rx) = tokio::sync::mpsc::channel::<FaultReport>(16);
    let owner = gameday::ledger::Owner::new("test-session");
    let _alive = ledger.hold(&owner).unwrap();
    let (others, _) = tokio::sync::watch::channel(Vec::new());
    let handle = engine::spawn(ctx, ledger.clone(), owner, tx, others);
    handle
        .inject(
            "broker-stop",
            spec(&config, "broker-stop"),
            Duration::from_secs(300),
            Cause::Key("1".into()),
        )
        .await;
    let requested = next_report(&mut rx).await;
    assert_eq!(requested.phase, FaultPhase::Requested);
    let applied = next_report(&mut rx).await;
    assert_eq!(
        (applied.phase, applied.target.as_str()),
        (FaultPhase::Applied, "broker"),
        "{applied:?}"
    );
    assert_eq!(
        applied.detail,
        "stop signal, SIGKILL after 5s; revert starts it"
    );
    let entries = ledger.entries().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].id, applied.id);
    assert_eq!(lab.status(&nats.name).await, Status::EXITED);

    handle.revert(&applied.id, Cause::Key("r".into())).await;
    assert_eq!(
        next_report(&mut rx).await.phase,
        FaultPhase::RevertRequested
    );
    let reverted = next_report(&mut rx).await;
    assert_eq!(reverted.phase, FaultPhase::Reverted, "{reverted:?}");
    assert!(ledger.entries().unwrap().is_empty());
    wait_until("answers again", Duration::from_secs(10), || {
        answers(nats.port)
    })
    .await;
}

#[tokio::test]
async fn a_container_already_stopped_before_the_fault_stays_stopped_after_its_cleanup() {
    let lab = DockerLab::new("container-already-stopped").await;
    let nats = lab.nats("down-before", &[], None).await;
    let config = lab.config(&format!(
        "[[container]]\nname = \"broker\"\ncontainer = \"{}\"\n\n\
         [[fault]]\nname = \"stop\"\nkind = \"container_stop\"\ntarget = \"broker\"\n",
        nats.name
    ));
    let ctx = context(&config);
    lab.docker
        .stop_container(&nats.name, None)
        .await
        .expect("stopped by someone else");

    let mut fault = build("stop-1", &spec(&config, "stop"));
    assert_eq!(
        fault.inject(&ctx).await,
        Err(FaultError::Failed(
            "broker is already stopped; nothing to do".into()
        ))
    );
    // The engine's cleanup after a failed inject runs revert on the same instance.
    fault.revert(&ctx).await.expect("cleanup");
    assert_eq!(
        lab.status(&nats.name).await,
        Status::EXITED,
        "not started by a fault that never stopped it"
    );
}
