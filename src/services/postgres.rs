//! A throwaway PostgreSQL cluster on 127.0.0.1, owned by this process.
//!
//! The `postgres` server runs directly as our child (not through `pg_ctl start`, which
//! daemonizes), so it can be tied to our lifetime. As root, `initdb` and `postgres` run as the
//! `postgres` user (they refuse to run as root); otherwise as the current user.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::{Gid, Uid};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};
use tokio::time::Instant;

use super::process::{
    children_of, is_alive, log_tail, postgres_user_owning, signal, spawn_tied, wait_for_exit,
    wait_for_exit_blocking, wait_until_gone,
};
use super::{MissingTool, Result, ServiceError};

/// Environment variable naming the directory that holds `initdb` and `postgres`.
pub const PG_BIN_ENV: &str = "GAMEDAY_PG_BIN";

const LOG_FILE: &str = "postgres.log";
const DATA_DIR: &str = "data";
/// Unix socket paths must fit in `sun_path` (108 bytes with the trailing NUL).
const MAX_SOCKET_PATH: usize = 107;
/// Attempts with a fresh free port when another process took the one we picked.
const PORT_ATTEMPTS: usize = 3;

/// How to start a [`PgCluster`]. `PgOptions::new(dir)` gives a free port, 100 connections.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// Working directory (under `.artifacts/`): data directory, unix socket and log live here.
    pub dir: PathBuf,
    /// TCP port on 127.0.0.1; `None` picks a free one.
    pub port: Option<u16>,
    pub max_connections: u32,
    /// Extra server settings, passed as `-c key=value`.
    pub settings: Vec<(String, String)>,
    /// Directory with `initdb` and `postgres`; `None` means [`find_postgres_bin_dir`].
    pub bin_dir: Option<PathBuf>,
    /// How long a start may take until a connection succeeds (initdb not included).
    pub ready_timeout: Duration,
    /// How long `stop` waits after SIGINT before it uses SIGKILL.
    pub stop_timeout: Duration,
}

impl PgOptions {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            port: None,
            max_connections: 100,
            settings: Vec::new(),
            bin_dir: None,
            ready_timeout: Duration::from_secs(30),
            stop_timeout: Duration::from_secs(10),
        }
    }
}

/// A running (or stopped) PostgreSQL cluster. Dropping it shuts the server down.
#[derive(Debug)]
pub struct PgCluster {
    options: PgOptions,
    bin_dir: PathBuf,
    /// The user the server runs as when we are root.
    run_as: Option<(Uid, Gid)>,
    port: u16,
    child: Option<Child>,
}

impl PgCluster {
    /// Creates the cluster with `initdb` (unless the data directory already holds one), starts
    /// the server and waits until it accepts connections.
    pub async fn start(options: PgOptions) -> Result<Self> {
        let bin_dir = match &options.bin_dir {
            Some(dir) => dir.clone(),
            None => find_postgres_bin_dir()?,
        };
        let dir = &options.dir;
        fs::create_dir_all(dir).map_err(ServiceError::io(format!("create {}", dir.display())))?;
        let run_as = postgres_user_owning(dir, postgres_user_missing)?;
        if let Some((uid, gid)) = run_as
            && let Some(blocking) = unsearchable_ancestor(dir, uid, gid)
        {
            return Err(ServiceError::Failed(format!(
                "the postgres user cannot reach {}: {} is not searchable by it; \
                 move the working directory, or `chmod o+x {}` (scripts/test does that)",
                dir.display(),
                blocking.display(),
                blocking.display()
            )));
        }
        let mut cluster = Self {
            port: options.port.unwrap_or(0),
            options,
            bin_dir,
            run_as,
            child: None,
        };
        if !cluster.data_dir().join("PG_VERSION").exists() {
            cluster.initdb().await?;
        }
        cluster.launch_on_a_free_port().await?;
        Ok(cluster)
    }

    /// `postgres://postgres@127.0.0.1:PORT/db` (trust authentication, no password).
    pub fn superuser_url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{}", self.port, encode(db))
    }

    /// `postgres://user:password@127.0.0.1:PORT/db`, percent-encoded.
    pub fn url_for(&self, user: &str, password: &str, db: &str) -> String {
        format!(
            "postgres://{}:{}@127.0.0.1:{}/{}",
            encode(user),
            encode(password),
            self.port,
            encode(db)
        )
    }

    /// Connection options for the superuser, for callers that want more settings than a URL.
    pub fn superuser_options(&self, db: &str) -> PgConnectOptions {
        PgConnectOptions::new()
            .host("127.0.0.1")
            .port(self.port)
            .username("postgres")
            .database(db)
    }

    /// Creates a login role that is not a superuser.
    pub async fn create_role(&self, name: &str, password: &str) -> Result<()> {
        let sql = format!(
            "CREATE ROLE {} LOGIN NOSUPERUSER PASSWORD {}",
            quote_ident(name),
            quote_literal(password)
        );
        self.execute_as_superuser(&sql, &format!("create role {name}"))
            .await
    }

    pub async fn create_database(&self, name: &str, owner: &str) -> Result<()> {
        let sql = format!(
            "CREATE DATABASE {} OWNER {}",
            quote_ident(name),
            quote_ident(owner)
        );
        self.execute_as_superuser(&sql, &format!("create database {name}"))
            .await
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The postmaster's pid while a process is attached (running or frozen).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn log_path(&self) -> PathBuf {
        self.options.dir.join(LOG_FILE)
    }

    pub fn dir(&self) -> &Path {
        &self.options.dir
    }

    pub fn data_dir(&self) -> PathBuf {
        self.options.dir.join(DATA_DIR)
    }

    /// Whether the postmaster exists (a frozen server counts as running).
    pub fn is_running(&self) -> bool {
        self.pid().is_some_and(is_alive)
    }

    /// Fast shutdown (SIGINT: sessions are ended, nothing is lost), then SIGKILL if the server
    /// has not exited within the stop timeout.
    pub async fn stop(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let postmaster = child.id();
        thaw_tree(postmaster).map_err(ServiceError::io("thaw postgres"))?;
        signal(postmaster, Signal::SIGINT).map_err(ServiceError::io("signal postgres"))?;
        let reap = ServiceError::io(format!("wait for postgres {postmaster}"));
        if wait_for_exit(&mut child, self.options.stop_timeout)
            .await
            .map_err(reap)?
            .is_some()
        {
            return Ok(());
        }
        let backends = children_of(postmaster);
        child
            .kill()
            .and_then(|()| child.wait())
            .map_err(ServiceError::io(format!("kill postgres {postmaster}")))?;
        // Backends notice the postmaster's death by themselves; the data directory is only
        // usable again once they are gone.
        let left = wait_until_gone(&backends, self.options.stop_timeout).await;
        if left.is_empty() {
            Ok(())
        } else {
            Err(ServiceError::Failed(format!(
                "postgres backends {left:?} outlived their killed postmaster"
            )))
        }
    }

    /// Starts a stopped server again on the same port with the same data, and waits until it
    /// accepts connections. Does nothing if it is already running.
    pub async fn start_again(&mut self) -> Result<()> {
        if self.is_running() {
            return Ok(());
        }
        // Reap a postmaster that died behind our back.
        self.stop().await?;
        self.launch().await.map_err(|failure| failure.into_error())
    }

    /// SIGSTOP the postmaster and every backend: new connections hang and open sessions stall.
    pub fn freeze(&self) -> Result<()> {
        let postmaster = self.running_pid()?;
        // Stop the postmaster first so it cannot fork a backend we would miss.
        signal(postmaster, Signal::SIGSTOP).map_err(ServiceError::io("freeze postgres"))?;
        let backends = children_of(postmaster);
        for &backend in &backends {
            signal(backend, Signal::SIGSTOP).map_err(ServiceError::io(format!(
                "freeze postgres backend {backend}"
            )))?;
        }
        // Signals land asynchronously: return once everything is really stopped.
        for pid in std::iter::once(postmaster).chain(backends) {
            super::process::wait_stopped(pid, Duration::from_secs(5));
        }
        Ok(())
    }

    /// SIGCONT the backends and the postmaster: undo [`freeze`](Self::freeze).
    pub fn thaw(&self) -> Result<()> {
        thaw_tree(self.running_pid()?).map_err(ServiceError::io("thaw postgres"))
    }

    fn running_pid(&self) -> Result<u32> {
        self.pid()
            .ok_or_else(|| ServiceError::Failed("postgres is not running".to_string()))
    }

    async fn execute_as_superuser(&self, sql: &str, action: &str) -> Result<()> {
        let mut conn = self
            .superuser_options("postgres")
            .connect()
            .await
            .map_err(ServiceError::sql(action))?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(&mut conn)
            .await
            .map_err(ServiceError::sql(action))?;
        conn.close().await.map_err(ServiceError::sql(action))
    }

    async fn initdb(&self) -> Result<()> {
        let initdb = self.bin_dir.join("initdb");
        let mut command = tokio::process::Command::new(&initdb);
        command
            .arg("-D")
            .arg(self.data_dir())
            .args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ])
            .current_dir(&self.options.dir)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        if let Some((uid, gid)) = self.run_as {
            command.uid(uid.as_raw()).gid(gid.as_raw());
        }
        let output = command
            .output()
            .await
            .map_err(ServiceError::io(format!("run {}", initdb.display())))?;
        if output.status.success() {
            return Ok(());
        }
        Err(ServiceError::Failed(format!(
            "{} -D {} failed ({}):\n{}{}",
            initdb.display(),
            self.data_dir().display(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )))
    }

    /// Picks a free port unless one was given; retries when another process takes it first.
    async fn launch_on_a_free_port(&mut self) -> Result<()> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            if self.options.port.is_none() {
                self.port = free_port().map_err(ServiceError::io("find a free port"))?;
            }
            match self.launch().await {
                Ok(()) => return Ok(()),
                Err(LaunchFailure {
                    port_taken: true, ..
                }) if self.options.port.is_none() && attempts < PORT_ATTEMPTS => {}
                Err(failure) => return Err(failure.into_error()),
            }
        }
    }

    async fn launch(&mut self) -> Result<(), LaunchFailure> {
        let dir = &self.options.dir;
        let log_path = self.log_path();
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|err| {
                LaunchFailure::from(ServiceError::io(format!("open {}", log_path.display()))(
                    err,
                ))
            })?;
        let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
        remove_stale_lock_file(&self.data_dir().join("postmaster.pid"));
        remove_stale_lock_file(&dir.join(format!(".s.PGSQL.{}.lock", self.port)));

        let mut command = Command::new(self.bin_dir.join("postgres"));
        command
            .arg("-D")
            .arg(self.data_dir())
            .args(["-p", &self.port.to_string()]);
        let socket_fits = dir.as_os_str().len() + "/.s.PGSQL.65535.lock".len() <= MAX_SOCKET_PATH;
        if socket_fits {
            command.arg("-k").arg(dir);
        } else {
            // No unix socket rather than a failed start; clients use TCP anyway.
            command.args(["-c", "unix_socket_directories="]);
        }
        command.args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"]);
        command
            .arg("-c")
            .arg(format!("max_connections={}", self.options.max_connections));
        for (key, value) in &self.options.settings {
            command.arg("-c").arg(format!("{key}={value}"));
        }
        if let Some((uid, gid)) = self.run_as {
            command.uid(uid.as_raw()).gid(gid.as_raw());
        }
        let stderr = log.try_clone().map_err(|err| {
            LaunchFailure::from(ServiceError::io("duplicate the log handle")(err))
        })?;
        command
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr);
        let child = spawn_tied(command)
            .map_err(|err| LaunchFailure::from(ServiceError::io("start postgres")(err)))?;
        self.child = Some(child);

        let deadline = Instant::now() + self.options.ready_timeout;
        let reason = loop {
            let child = self.child.as_mut().expect("just spawned");
            match child.try_wait() {
                Ok(Some(status)) => break format!("it exited with {status}"),
                Ok(None) => {}
                Err(err) => break format!("could not check on it: {err}"),
            }
            let attempt = tokio::time::timeout(
                Duration::from_secs(1),
                self.superuser_options("postgres").connect(),
            )
            .await;
            if let Ok(Ok(conn)) = attempt {
                let _ = conn.close().await;
                return Ok(());
            }
            if Instant::now() >= deadline {
                break "no connection succeeded".to_string();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let tail = log_tail(&log_path, log_start, 20);
        Err(LaunchFailure {
            port_taken: tail.contains("could not bind") || tail.contains("Address already in use"),
            error: ServiceError::NotReady {
                server: "postgres",
                waited: self.options.ready_timeout,
                reason,
                log: log_path,
                tail,
            },
        })
    }
}

impl Drop for PgCluster {
    /// Immediate shutdown (SIGQUIT) rather than SIGKILL: it is as quick, and the postmaster then
    /// removes its shared memory segment instead of leaking one per test run. SIGKILL remains
    /// the fallback.
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let postmaster = child.id();
            let _ = thaw_tree(postmaster);
            let _ = signal(postmaster, Signal::SIGQUIT);
            if !matches!(
                wait_for_exit_blocking(&mut child, Duration::from_secs(5)),
                Ok(Some(_))
            ) {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

struct LaunchFailure {
    port_taken: bool,
    error: ServiceError,
}

impl LaunchFailure {
    fn into_error(self) -> ServiceError {
        self.error
    }
}

impl From<ServiceError> for LaunchFailure {
    fn from(error: ServiceError) -> Self {
        Self {
            port_taken: false,
            error,
        }
    }
}

fn thaw_tree(postmaster: u32) -> std::io::Result<()> {
    for backend in children_of(postmaster) {
        signal(backend, Signal::SIGCONT)?;
    }
    signal(postmaster, Signal::SIGCONT)
}

/// Removes a postgres lock file (`postmaster.pid`, the socket's `.lock`) if the postmaster it
/// names is gone. Postgres does that itself for a vanished pid, but a killed postmaster that
/// nobody reaps (a container whose init does not reap orphans) stays a zombie, and its pid
/// still looks in use.
fn remove_stale_lock_file(lock_file: &Path) {
    let Ok(contents) = fs::read_to_string(lock_file) else {
        return;
    };
    let owner = contents
        .lines()
        .next()
        .and_then(|line| line.trim().parse::<u32>().ok());
    if owner.is_some_and(|pid| !is_alive(pid)) {
        let _ = fs::remove_file(lock_file);
    }
}

/// The first parent of `dir` that `uid`/`gid` may not search (mode bits only, ACLs ignored).
fn unsearchable_ancestor(dir: &Path, uid: Uid, gid: Gid) -> Option<PathBuf> {
    let dir = fs::canonicalize(dir).ok()?;
    dir.ancestors().skip(1).find_map(|ancestor| {
        let meta = fs::metadata(ancestor).ok()?;
        let mode = meta.mode();
        let searchable = if meta.uid() == uid.as_raw() {
            mode & 0o100 != 0
        } else if meta.gid() == gid.as_raw() {
            mode & 0o010 != 0
        } else {
            mode & 0o001 != 0
        };
        (!searchable).then(|| ancestor.to_path_buf())
    })
}

/// A port that was free a moment ago (postgres cannot pick one itself; a race is retried).
fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn postgres_user_missing() -> String {
    "running as root, but there is no `postgres` user to run initdb and postgres as \
     (they refuse to run as root); `apt-get install postgresql` creates it"
        .to_string()
}

/// Finds the directory with `initdb` and `postgres`: `$GAMEDAY_PG_BIN`, `pg_config --bindir`,
/// the newest `/usr/lib/postgresql/*/bin`, then `PATH`.
pub fn find_postgres_bin_dir() -> Result<PathBuf, MissingTool> {
    let has_server = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    let mut searched = Vec::new();
    if let Some(explicit) = std::env::var_os(PG_BIN_ENV).filter(|v| !v.is_empty()) {
        let explicit = PathBuf::from(explicit);
        if has_server(&explicit) {
            return Ok(explicit);
        }
        searched.push(format!(
            "${PG_BIN_ENV}={} (no initdb and postgres in it)",
            explicit.display()
        ));
        return Err(missing_postgres(searched));
    }
    searched.push(format!("${PG_BIN_ENV} (unset)"));

    searched.push("pg_config --bindir".to_string());
    if let Ok(output) = Command::new("pg_config")
        .arg("--bindir")
        .stdin(Stdio::null())
        .output()
        && output.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        if has_server(&dir) {
            return Ok(dir);
        }
    }

    searched.push("/usr/lib/postgresql/*/bin".to_string());
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            Some((
                entry.file_name().to_str()?.parse().ok()?,
                entry.path().join("bin"),
            ))
        })
        .filter(|(_, dir)| has_server(dir))
        .collect();
    versions.sort();
    if let Some((_, dir)) = versions.pop() {
        return Ok(dir);
    }

    searched.push("PATH".to_string());
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join("initdb"))
        .find(|initdb| initdb.is_file());
    // Debian links initdb into /usr/local/bin; the real directory holds postgres next to it.
    if let Some(dir) = on_path.and_then(|initdb| {
        fs::canonicalize(initdb)
            .ok()?
            .parent()
            .map(Path::to_path_buf)
    }) && has_server(&dir)
    {
        return Ok(dir);
    }
    Err(missing_postgres(searched))
}

fn missing_postgres(searched: Vec<String>) -> MissingTool {
    MissingTool {
        tool: "PostgreSQL server (initdb, postgres)",
        searched,
        remedies: vec![
            "apt-get install postgresql  (as root; binaries land in /usr/lib/postgresql/<version>/bin)".into(),
            format!("point ${PG_BIN_ENV} at the directory that holds initdb and postgres"),
        ],
    }
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// Percent-encodes everything but RFC 3986 unreserved characters, for URL user info and paths.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use sqlx::postgres::PgConnection;

    use super::*;
    use crate::services::testing::test_dir;

    async fn app_cluster(name: &str) -> (PgCluster, PathBuf) {
        let dir = test_dir(name);
        let options = PgOptions {
            max_connections: 20,
            ..PgOptions::new(&dir)
        };
        let cluster = PgCluster::start(options).await.unwrap();
        cluster.create_role("app", "s3cret:/@").await.unwrap();
        cluster.create_database("tasks", "app").await.unwrap();
        (cluster, dir)
    }

    async fn connect_app(cluster: &PgCluster) -> sqlx::Result<PgConnection> {
        let url = cluster.url_for("app", "s3cret:/@", "tasks");
        PgConnectOptions::from_str(&url)?
            .application_name("drill")
            .connect()
            .await
    }

    async fn connect_app_within(cluster: &PgCluster, limit: Duration) -> bool {
        matches!(
            tokio::time::timeout(limit, connect_app(cluster)).await,
            Ok(Ok(_))
        )
    }

    #[tokio::test]
    async fn an_app_session_shows_in_pg_stat_activity_under_the_configured_limit() {
        let (cluster, dir) = app_cluster("pg-activity").await;
        let mut app = connect_app(&cluster)
            .await
            .expect("the app role logs in to its database");

        let mut admin = cluster
            .superuser_options("postgres")
            .connect()
            .await
            .unwrap();
        let (user, db): (String, String) = sqlx::query_as(
            "select usename::text, datname::text from pg_stat_activity \
             where application_name = 'drill' and backend_type = 'client backend'",
        )
        .fetch_one(&mut admin)
        .await
        .unwrap();
        assert_eq!((user.as_str(), db.as_str()), ("app", "tasks"));
        let max: String = sqlx::query_scalar("SHOW max_connections")
            .fetch_one(&mut app)
            .await
            .unwrap();
        assert_eq!(max, "20");
        let superuser: bool =
            sqlx::query_scalar("select rolsuper from pg_roles where rolname = 'app'")
                .fetch_one(&mut admin)
                .await
                .unwrap();
        assert!(
            !superuser,
            "the app role must be an ordinary role, like in production"
        );
        drop((app, admin, cluster));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_stopped_cluster_refuses_connections_and_comes_back_on_the_same_port() {
        let (mut cluster, dir) = app_cluster("pg-restart").await;
        let port = cluster.port();
        cluster.stop().await.unwrap();
        assert!(!cluster.is_running());
        assert!(
            connect_app(&cluster).await.is_err(),
            "a stopped server must refuse connections"
        );

        cluster.start_again().await.unwrap();
        assert_eq!(cluster.port(), port);
        let mut app = connect_app(&cluster)
            .await
            .expect("the role and database survive the restart");
        let one: i32 = sqlx::query_scalar("select 1")
            .fetch_one(&mut app)
            .await
            .unwrap();
        assert_eq!(one, 1);
        drop((app, cluster));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_frozen_cluster_stalls_new_and_open_sessions_until_thawed() {
        let (cluster, dir) = app_cluster("pg-freeze").await;
        let mut open = connect_app(&cluster).await.unwrap();

        cluster.freeze().unwrap();
        assert!(cluster.is_running(), "a frozen server still exists");
        assert!(
            !connect_app_within(&cluster, Duration::from_secs(1)).await,
            "a new connection must hang"
        );
        let stalled = tokio::time::timeout(
            Duration::from_secs(1),
            sqlx::query("select 1").execute(&mut open),
        )
        .await;
        assert!(
            stalled.is_err(),
            "an open session must stall too: its backend is frozen"
        );

        cluster.thaw().unwrap();
        assert!(
            connect_app_within(&cluster, Duration::from_secs(5)).await,
            "a thawed server accepts connections"
        );
        drop((open, cluster));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_cluster_that_cannot_start_says_why_with_the_server_log() {
        let dir = test_dir("pg-port-taken");
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let options = PgOptions {
            port: Some(port),
            ..PgOptions::new(&dir)
        };
        let error = PgCluster::start(options).await.unwrap_err().to_string();
        assert!(
            error.starts_with("postgres did not become ready"),
            "{error}"
        );
        assert!(
            error.contains("Address already in use"),
            "the server's own complaint: {error}"
        );
        assert!(
            error.contains(&dir.join(LOG_FILE).display().to_string()),
            "{error}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
