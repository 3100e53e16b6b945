//! The real Docker engine for tests: NATS servers in `FROM scratch` containers built from the
//! local static nats-server (no registry).
//!
//! Every container and network a test creates carries `gameday.test=<run id>`, publishes only on
//! 127.0.0.1, and is removed when the test ends, also when it fails; what a killed run left
//! behind is swept by the next one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, ContainerStateStatusEnum, EndpointSettings, HostConfig,
    NetworkCreateRequest, NetworkingConfig, PortBinding,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, ListNetworksOptionsBuilder,
    RemoveContainerOptionsBuilder,
};
use gameday::faults::docker::{connect, host_from_env, import_image};
use gameday::services::{NatsOptions, NatsServer};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::Instant;

const NATS_PORT: &str = "4222/tcp";

/// One test's Docker objects and files.
pub struct DockerLab {
    pub docker: Docker,
    /// `<pid>-<nanos>`: labels and names everything this test creates.
    pub run: String,
    pub dir: PathBuf,
    pub image: String,
    cleanup: Cleanup,
}

/// A NATS server in a container.
pub struct NatsContainer {
    pub name: String,
    pub id: String,
    /// Its client port on 127.0.0.1, the same across stop/start.
    pub port: u16,
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

/// Serializes the image import and the sweep between the tests of one binary (they run in
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

impl DockerLab {
    /// Connects to the engine, makes `<repo>/.artifacts/test/<test>-<run>/` and the NATS image.
    pub async fn new(test: &str) -> DockerLab {
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
        DockerLab {
            docker,
            run,
            dir,
            image,
            cleanup,
        }
    }

    pub fn name(&self, suffix: &str) -> String {
        format!("gameday-test-{}-{suffix}", self.run)
    }

    pub async fn network(&self, suffix: &str) -> String {
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
    pub async fn nats(
        &self,
        suffix: &str,
        labels: &[(&str, &str)],
        network: Option<&str>,
    ) -> NatsContainer {
        self.nats_with_args(suffix, labels, network, &[]).await
    }

    /// [`DockerLab::nats`] with extra nats-server arguments, e.g. `["-js", "-sd", "/data"]`.
    pub async fn nats_with_args(
        &self,
        suffix: &str,
        labels: &[(&str, &str)],
        network: Option<&str>,
        args: &[&str],
    ) -> NatsContainer {
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
        let mut cmd: Vec<String> = ["-a", "0.0.0.0", "-p", "4222"]
            .iter()
            .map(|a| a.to_string())
            .collect();
        cmd.extend(args.iter().map(|a| a.to_string()));
        let body = ContainerCreateBody {
            image: Some(self.image.clone()),
            cmd: Some(cmd),
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
        NatsContainer {
            name,
            id: created.id,
            port,
        }
    }

    pub async fn status(&self, container: &str) -> ContainerStateStatusEnum {
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
pub async fn answers(port: u16) -> bool {
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

/// Polls `check` until it holds, or fails the test with `what` after `deadline`; how long it took.
pub async fn wait_until<F, Fut>(what: &str, deadline: Duration, mut check: F) -> Duration
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
