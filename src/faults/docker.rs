//! The Docker engine, as the container faults and `gameday check` reach it: one client per console,
//! connected on first use (honouring `DOCKER_HOST`), its API version negotiated down to what the
//! engine speaks (Debian's 20.10 speaks 1.41; bollard asks for 1.53), every call bounded by a
//! deadline. Also imports images made of local files, so nothing needs a registry.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::io;
use std::path::Path;
use std::time::Duration;

use bollard::Docker;
use bollard::errors::Error as BollardError;
use bollard::query_parameters::CreateImageOptionsBuilder;
use futures::TryStreamExt;
use tokio::sync::OnceCell;

/// Where the engine is when `DOCKER_HOST` is unset.
pub const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";
/// Connecting and negotiating the API version.
pub const CONNECT_DEADLINE: Duration = Duration::from_secs(3);
/// One quick API call (inspect, list, start, pause, network connect…).
pub const CALL_DEADLINE: Duration = Duration::from_secs(4);
/// bollard's own per-request timeout, a backstop behind the deadlines above.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

/// `DOCKER_HOST`, or the default socket.
pub fn host_from_env() -> String {
    std::env::var("DOCKER_HOST")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| DEFAULT_HOST.to_string())
}

/// Connects to the engine at `host` (`unix://…`, `tcp://…`, `https://…`) and negotiates the API
/// version. A `tcp://` engine with `DOCKER_TLS_VERIFY` set, or an `https://` one, is reached over
/// TLS with the client certificates in `DOCKER_CERT_PATH` (`ca.pem`, `cert.pem`, `key.pem`), as
/// the docker CLI does. The error says where it looked and why it failed.
pub async fn connect(host: &str) -> Result<Docker, String> {
    let shown = crate::redact::url(host);
    let unreachable = |why: String| {
        format!(
            "Docker engine not reachable at {shown}: {}",
            crate::connect::describe(&why, crate::connect::DOCKER)
        )
    };
    // bollard's TLS builds its client config from the process-wide crypto provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let docker = Docker::connect_with_host(host)
        .map_err(|e| unreachable(error_chain(&e)))?
        .with_timeout(CLIENT_TIMEOUT);
    match tokio::time::timeout(CONNECT_DEADLINE, docker.negotiate_version()).await {
        Ok(Ok(docker)) => Ok(docker),
        Ok(Err(e)) => Err(unreachable(error_chain(&e))),
        Err(_) => Err(unreachable(format!(
            "no answer within {}",
            super::fmt_duration(CONNECT_DEADLINE)
        ))),
    }
}

/// A connection made on first use and kept once it works. A failed attempt is not kept: the
/// next fault tries again, so an engine started after the console is picked up.
pub struct DockerHandle {
    host: String,
    client: OnceCell<Docker>,
}

impl DockerHandle {
    /// The engine `DOCKER_HOST` names (or the default socket).
    pub fn from_env() -> Self {
        Self::new(host_from_env())
    }

    pub fn new(host: impl Into<String>) -> Self {
        DockerHandle {
            host: host.into(),
            client: OnceCell::new(),
        }
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    /// The connected client, or why there is none.
    pub async fn get(&self) -> Result<&Docker, String> {
        self.client.get_or_try_init(|| connect(&self.host)).await
    }
}

/// Why one API call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// The engine answered with an error status (404 no such container, 409 conflict…).
    #[error("{what}: {message} (HTTP {status})")]
    Status {
        what: String,
        status: u16,
        message: String,
    },
    /// The engine could not be reached, or the connection broke.
    #[error("{what}: Docker engine not reachable: {reason}")]
    Unreachable { what: String, reason: String },
    #[error("{what}: the Docker engine gave no answer within {}", super::fmt_duration(*.deadline))]
    Timeout { what: String, deadline: Duration },
    /// An answer that could not be read.
    #[error("{what}: {reason}")]
    Other { what: String, reason: String },
}

impl ApiError {
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Runs one API call under `deadline`; `what` names it in the error ("stop gameday-nats").
pub async fn bounded<T>(
    what: impl fmt::Display,
    deadline: Duration,
    call: impl Future<Output = Result<T, BollardError>>,
) -> Result<T, ApiError> {
    let what = what.to_string();
    match tokio::time::timeout(deadline, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(classify(what, e)),
        Err(_) => Err(ApiError::Timeout { what, deadline }),
    }
}

fn classify(what: String, e: BollardError) -> ApiError {
    match e {
        BollardError::DockerResponseServerError {
            status_code,
            message,
        } => ApiError::Status {
            what,
            status: status_code,
            message,
        },
        BollardError::JsonDataError { .. }
        | BollardError::JsonSerdeError { .. }
        | BollardError::DockerStreamError { .. } => ApiError::Other {
            what,
            reason: error_chain(&e),
        },
        other => ApiError::Unreachable {
            what,
            reason: error_chain(&other),
        },
    }
}

/// An error and its causes on one line: hyper's "client error (Connect)" alone says nothing.
fn error_chain(e: &dyn StdError) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let part = cause.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = cause.source();
    }
    text
}

/// Imports an image whose root filesystem is just `files` (path in the image, local file), like
/// `docker import`: no registry and no builder needed, so a static binary makes a `FROM scratch`
/// image. `changes` are Dockerfile instructions such as `ENTRYPOINT ["/nats-server"]`. Does
/// nothing when `image` (`repo:tag`) already exists: tag it by content and call it freely.
pub async fn import_image(
    docker: &Docker,
    image: &str,
    files: &[(&str, &Path)],
    changes: &[&str],
) -> Result<(), String> {
    if bounded(
        format!("inspect image {image}"),
        CALL_DEADLINE,
        docker.inspect_image(image),
    )
    .await
    .is_ok()
    {
        return Ok(());
    }
    let (repo, tag) = image.rsplit_once(':').unwrap_or((image, "latest"));
    let owned: Vec<(String, std::path::PathBuf)> = files
        .iter()
        .map(|(inside, local)| {
            (
                inside.trim_start_matches('/').to_string(),
                local.to_path_buf(),
            )
        })
        .collect();
    let rootfs = tokio::task::spawn_blocking(move || rootfs_tar(&owned))
        .await
        .map_err(|e| format!("build the root filesystem of {image}: {e}"))?
        .map_err(|e| format!("build the root filesystem of {image}: {e}"))?;
    let options = CreateImageOptionsBuilder::default()
        .from_src("-")
        .repo(repo)
        .tag(tag)
        .changes(changes.iter().map(|c| c.to_string()).collect())
        .build();
    let import = docker
        .create_image(Some(options), Some(bollard::body_full(rootfs.into())), None)
        .try_collect::<Vec<_>>();
    bounded(
        format!("import image {image}"),
        Duration::from_secs(60),
        import,
    )
    .await
    .map(|_| ())
    .map_err(|e| e.to_string())
}

fn rootfs_tar(files: &[(String, std::path::PathBuf)]) -> io::Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    for (inside, local) in files {
        let mut file = std::fs::File::open(local)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", local.display())))?;
        tar.append_file(inside, &mut file)?;
    }
    tar.into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_missing_socket_is_named_in_the_reason_at_once() {
        let started = std::time::Instant::now();
        let handle = DockerHandle::new("unix:///nonexistent/gameday/docker.sock");
        let reason = handle.get().await.expect_err("no engine there");
        assert!(
            reason.starts_with(
                "Docker engine not reachable at unix:///nonexistent/gameday/docker.sock: "
            ),
            "{reason}"
        );
        assert!(reason.contains("not found"), "{reason}");
        assert!(
            started.elapsed() < CONNECT_DEADLINE,
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn a_refusing_tcp_engine_says_why() {
        // A port nobody listens on: bind one, learn it, close it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let reason = connect(&format!("tcp://127.0.0.1:{port}"))
            .await
            .expect_err("nothing listens");
        assert!(
            reason.starts_with(&format!(
                "Docker engine not reachable at tcp://127.0.0.1:{port}: "
            )),
            "{reason}"
        );
        assert!(reason.to_lowercase().contains("refused"), "{reason}");
    }
}
