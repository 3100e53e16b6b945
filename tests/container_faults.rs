//! Container faults against the real Docker engine: NATS servers in `FROM scratch` containers
//! built from the local static nats-server (no registry), faulted and reverted through the
//! `Fault` trait and once through the fault engine.
//!
//! Every container and network a test creates carries `gameday.test=<run id>`, publishes only on
//! 127.0.0.1, and is removed when the test ends, also when it fails.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, ContainerStateStatusEnum as Status, EndpointSettings, HostConfig,
    NetworkCreateRequest, NetworkingConfig, PortBinding,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, ListNetworksOptionsBuilder,
    RemoveContainerOptionsBuilder,
};
use gameday::config::Config;
use gameday::faults::container::{check_engine, check_target};
use gameday::faults::docker::{DockerHandle, connect, host_from_env, import_image};
use gameday::faults::engine::{self, FaultReport};
use gameday::faults::{FaultContext, FaultError, FaultSpec, build};
use gameday::ledger::Ledger;
use gameday::services::{NatsOptions, NatsServer};
use gameday::timeline::{Cause, FaultPhase};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::Instant;

const NATS_PORT: &str = "4222/tcp";

/// One test's Docker objects and files.
struct Lab {
    docker: Docker,
    run: String,
    dir: PathBuf,
    image: String,
    cleanup: Cleanup,
}

/// A NATS server in a container.
struct Nats {
    name: String,
    id: String,
    port: u16,
}

/// Removes what a test created when dropped, panicking test included (its directory stays then,
/// for a look at what happened). Drop cannot await, so it uses its own runtime on its own thread.
struct Cleanup {
    containers: Mutex<Vec<String>>,
    networks: Mutex<Vec<String>>,
    dir: PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
        let containers = std::mem::take(&mut *self.containers.lock().unwrap());
        let networks = std::mem::take(&mut *self.networks.lock().unwrap());
        let removal = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                let Ok(docker) = connect(&host_from_env()).await else {
                    return;
                };
                let force = RemoveContainerOptionsBuilder::default()
                    .force(true)
                    .v(true)
                    .build();
                for name in &containers {
                    if let Err(e) = docker.remove_container(name, Some(force.clone())).await
                        && !e.to_string().contains("No such container")
                    {
                        eprintln!("cleanup: remove container {name}: {e}");
                    }
                }
                for name in &networks {
                    if let Err(e) = docker.remove_network(name).await {
                        eprintln!("cleanup: remove network {name}: {e}");
                    }
                }
            });
        });
        let _ = removal.join();
    }
}

/// Serializes the image import and the sweep between the tests of this binary (they run in
/// parallel); the flag says the sweep ran.
static SETUP: tokio::sync::Mutex<bool> = tokio::sync::Mutex::const_new(false);

/// Removes what test runs that were killed (no guard ran) left behind: containers and networks
/// labelled `gameday.test=<pid>-…` whose process is gone.
async fn sweep_dead_runs(docker: &Docker) {
    let dead = |labels: Option<&HashMap<String, String>>| {
        labels
            .and_then(|l| l.get("gameday.test"))
            .and_then(|run| run.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
            .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
    };
    let filters = HashMap::from([("label", vec!["gameday.test"])]);
    let containers = docker
        .list_containers(Some(
            ListContainersOptionsBuilder::default()
                .all(true)
                .filters(&filters)
                .build(),
        ))
        .await
        .unwrap_or_default();
    let force = RemoveContainerOptionsBuilder::default()
        .force(true)
        .v(true)
        .build();
    for c in containers.iter().filter(|c| dead(c.labels.as_ref())) {
        if let Some(id) = &c.id {
            let _ = docker.remove_container(id, Some(force.clone())).await;
        }
    }
    let networks = docker
        .list_networks(Some(
            ListNetworksOptionsBuilder::default()
                .filters(&filters)
                .build(),
        ))
        .await
        .unwrap_or_default();
    for n in networks.iter().filter(|n| dead(n.labels.as_ref())) {
        if let Some(id) = &n.id {
            let _ = docker.remove_network(id).await;
        }
    }
}

impl Lab {
    async fn new(test: &str) -> Lab {
        let docker = connect(&host_from_env()).await.expect("a Docker engine");
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let run = format!("{}-{nanos:08x}", std::process::id());
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(".artifacts/test")
            .join(format!("{test}-{run}"));
        std::fs::create_dir_all(&dir).unwrap();
        let cleanup = Cleanup {
            containers: Mutex::default(),
            networks: Mutex::default(),
            dir: dir.clone(),
        };
        let image = nats_image(&docker, &dir).await;
        Lab {
            docker,
            run,
            dir,
            image,
            cleanup,
        }
    }

    fn name(&self, suffix: &str) -> String {
        format!("gameday-test-{}-{suffix}", self.run)
    }

    async fn network(&self, suffix: &str) -> String {
        let name = self.name(suffix);
        self.cleanup.networks.lock().unwrap().push(name.clone());
        self.docker
            .create_network(NetworkCreateRequest {
                name: name.clone(),
                driver: Some("bridge".into()),
                labels: Some(HashMap::from([("gameday.test".into(), self.run.clone())])),
                ..Default::default()
            })
            .await
            .expect("create network");
        name
    }

    /// Starts nats-server in a container publishing its client port on 127.0.0.1 only, and waits
    /// until it answers.
    async fn nats(&self, suffix: &str, labels: &[(&str, &str)], network: Option<&str>) -> Nats {
        let name = self.name(suffix);
        self.cleanup.containers.lock().unwrap().push(name.clone());
        // A fixed host port, so it stays the same across stop/start.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut all_labels = HashMap::from([("gameday.test".to_string(), self.run.clone())]);
        all_labels.extend(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let networking_config = network.map(|n| NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                n.to_string(),
                EndpointSettings {
                    aliases: Some(vec![format!("{suffix}-alias")]),
                    ..Default::default()
                },
            )])),
        });
        let body = ContainerCreateBody {
            image: Some(self.image.clone()),
            cmd: Some(vec![
                "-a".into(),
                "0.0.0.0".into(),
                "-p".into(),
                "4222".into(),
            ]),
            labels: Some(all_labels),
            exposed_ports: Some(vec![NATS_PORT.into()]),
            host_config: Some(HostConfig {
                port_bindings: Some(HashMap::from([(
                    NATS_PORT.to_string(),
                    Some(vec![PortBinding {
                        host_ip: Some("127.0.0.1".into()),
                        host_port: Some(port.to_string()),
                    }]),
                )])),
                network_mode: network.map(str::to_string),
                ..Default::default()
            }),
            networking_config,
            ..Default::default()
        };
        let options = CreateContainerOptionsBuilder::default().name(&name).build();
        let created = self
            .docker
            .create_container(Some(options), body)
            .await
            .expect("create container");
        self.docker
            .start_container(&created.id, None)
            .await
            .expect("start container");
        wait_until(&format!("{name} answers"), Duration::from_secs(15), || {
            answers(port)
        })
        .await;
        Nats {
            name,
            id: created.id,
            port,
        }
    }

    /// A config declaring `containers` (TOML lines) and `faults`, with artifacts in the test dir.
    fn config(&self, declarations: &str) -> Arc<Config> {
        let text = format!(
            "[console]\nartifacts = \"{}\"\n\n{declarations}",
            self.dir.join("artifacts").display()
        );
        Arc::new(Config::from_text(&self.dir.join("gameday.toml"), &text).expect("valid config"))
    }

    async fn status(&self, container: &str) -> Status {
        self.docker
            .inspect_container(container, None)
            .await
            .expect("inspect")
            .state
            .and_then(|s| s.status)
            .expect("a status")
    }
}

/// The image: the local static nats-server as the whole root filesystem, tagged by its version.
async fn nats_image(docker: &Docker, dir: &Path) -> String {
    let found = gameday::services::find_nats_server().expect("a nats-server");
    let (major, minor, patch) =
        gameday::services::nats_server_version(&found).expect("nats-server --version");
    let image = format!("gameday-test-nats:{major}.{minor}.{patch}");
    let mut swept = SETUP.lock().await;
    if !*swept {
        sweep_dead_runs(docker).await;
        *swept = true;
    }
    if docker.inspect_image(&image).await.is_ok() {
        return image;
    }
    let binary = real_binary(&found, dir).await;
    import_image(
        docker,
        &image,
        &[("/nats-server", &binary)],
        &["ENTRYPOINT [\"/nats-server\"]"],
    )
    .await
    .expect("import the nats image");
    image
}

/// The ELF binary itself. What PATH finds may be a wrapper script (a pyenv shim) that execs it:
/// then start it once and ask the kernel what runs.
async fn real_binary(found: &Path, dir: &Path) -> PathBuf {
    let magic = std::fs::read(found).map(|b| b.starts_with(b"\x7fELF"));
    if magic.unwrap_or(false) {
        return found.to_path_buf();
    }
    let mut options = NatsOptions::new(dir.join("find-binary"));
    options.jetstream = false;
    options.binary = Some(found.to_path_buf());
    let mut server = NatsServer::start(options).await.expect("start nats-server");
    let pid = server.pid().expect("running");
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).expect("/proc/PID/exe");
    server.stop().await.expect("stop nats-server");
    exe
}

/// A NATS server answers: it sends its INFO line on a new connection within a second.
async fn answers(port: u16) -> bool {
    let attempt = async {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).await.ok()?;
        Some(line.starts_with("INFO "))
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(1), attempt).await,
        Ok(Some(true))
    )
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

async fn wait_until<F, Fut>(what: &str, deadline: Duration, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(
            start.elapsed() < deadline,
            "{what}: not within {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    start.elapsed()
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
    let lab = Lab::new("container-stop").await;
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
    let lab = Lab::new("container-pause").await;
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
    let lab = Lab::new("container-idempotent").await;
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
    let lab = Lab::new("container-kill").await;
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
    let lab = Lab::new("container-restart").await;
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
    let lab = Lab::new("container-disconnect").await;
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
    let lab = Lab::new("container-label").await;
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
    let lab = Lab::new("container-refused").await;
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
    let lab = Lab::new("container-check").await;
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
    let lab = Lab::new("container-engine").await;
    let nats = lab.nats("engine", &[], None).await;
    let config = lab.config(&format!(
        "[[container]]\nname = \"broker\"\ncontainer = \"{}\"\n\n\
         [[fault]]\nname = \"broker-stop\"\nkind = \"container_stop\"\ntarget = \"broker\"\nduration = \"5m\"\n",
        nats.name
    ));
    let ledger = Ledger::new(&config.console.artifacts).unwrap();
    let ctx = Arc::new(context(&config));
    let (tx, mut rx) = tokio::sync::mpsc::channel::<FaultReport>(16);
    let handle = engine::spawn(ctx, ledger.clone(), "test-session".into(), tx);
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
    let lab = Lab::new("container-already-stopped").await;
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
