//! A throwaway PgBouncer on 127.0.0.1 in front of a given PostgreSQL, owned by this process.
//!
//! `pgbouncer` runs in the foreground as our child (no `-d`), spawned through [`spawn_tied`] so
//! it dies with us, and is stopped on drop. It refuses to run as root: as root it runs as the
//! `postgres` user, like [`PgCluster`](super::PgCluster). The ini, the auth file and the log
//! live in the working directory.

use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::{Gid, Uid, chown};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};
use tokio::time::Instant;

use super::process::{
    log_tail, postgres_user_owning, signal, spawn_tied, wait_for_exit, wait_for_exit_blocking,
};
use super::{MissingTool, Result, ServiceError};

/// Environment variable naming the `pgbouncer` binary to use.
pub const PGBOUNCER_ENV: &str = "GAMEDAY_PGBOUNCER";

const INI_FILE: &str = "pgbouncer.ini";
const AUTH_FILE: &str = "userlist.txt";
const LOG_FILE: &str = "pgbouncer.log";
/// Attempts with a fresh free port when another process took the one we picked.
const PORT_ATTEMPTS: usize = 3;

/// How clients are authenticated by the bouncer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BouncerAuth {
    /// No password is checked (the user must still be listed in the auth file).
    Trust,
    /// md5 against the plain passwords of the auth file.
    Md5,
}

/// When a server connection goes back to the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolMode {
    Session,
    Transaction,
}

impl PoolMode {
    fn as_str(self) -> &'static str {
        match self {
            Self::Session => "session",
            Self::Transaction => "transaction",
        }
    }
}

/// How to start a [`PgBouncer`]. `PgBouncerOptions::new(dir, upstream_port)`: a free port,
/// trust authentication, transaction pooling, pools of 10, admin user `postgres`, stats user
/// `stats`.
#[derive(Debug, Clone)]
pub struct PgBouncerOptions {
    /// Working directory (under `.artifacts/`): ini, auth file and log live here.
    pub dir: PathBuf,
    /// TCP port on 127.0.0.1; `None` picks a free one.
    pub port: Option<u16>,
    /// The PostgreSQL port on 127.0.0.1 the bouncer connects to.
    pub upstream_port: u16,
    /// Databases declared by name (`db = host=… port=… dbname=db`); any other name is forwarded
    /// too (a `*` fallback entry).
    pub databases: Vec<String>,
    pub auth: BouncerAuth,
    /// Users and passwords of the auth file (admin and stats users not listed here are added
    /// without one; with md5, give the first admin user a password here: the start waits on
    /// its login).
    pub users: Vec<(String, String)>,
    pub admin_users: Vec<String>,
    pub stats_users: Vec<String>,
    pub pool_mode: PoolMode,
    pub default_pool_size: u32,
    pub max_client_conn: u32,
    /// Extra `[pgbouncer]` settings, written as `key = value`.
    pub settings: Vec<(String, String)>,
    /// The binary; `None` means [`find_pgbouncer`].
    pub binary: Option<PathBuf>,
    /// How long a start may take until the admin console answers.
    pub ready_timeout: Duration,
    /// How long `stop` waits after SIGINT before it uses SIGKILL.
    pub stop_timeout: Duration,
}

impl PgBouncerOptions {
    pub fn new(dir: impl Into<PathBuf>, upstream_port: u16) -> Self {
        Self {
            dir: dir.into(),
            port: None,
            upstream_port,
            databases: Vec::new(),
            auth: BouncerAuth::Trust,
            users: Vec::new(),
            admin_users: vec!["postgres".to_string()],
            stats_users: vec!["stats".to_string()],
            pool_mode: PoolMode::Transaction,
            default_pool_size: 10,
            max_client_conn: 200,
            settings: Vec::new(),
            binary: None,
            ready_timeout: Duration::from_secs(15),
            stop_timeout: Duration::from_secs(10),
        }
    }
}

/// A running (or stopped) PgBouncer. Dropping it stops the process.
#[derive(Debug)]
pub struct PgBouncer {
    options: PgBouncerOptions,
    binary: PathBuf,
    run_as: Option<(Uid, Gid)>,
    port: u16,
    child: Option<Child>,
}

impl PgBouncer {
    /// Writes the ini and auth file, starts `pgbouncer` and waits until its admin console
    /// answers `SHOW VERSION`.
    pub async fn start(options: PgBouncerOptions) -> Result<Self> {
        let binary = match &options.binary {
            Some(binary) => binary.clone(),
            None => find_pgbouncer()?,
        };
        let dir = &options.dir;
        fs::create_dir_all(dir).map_err(ServiceError::io(format!("create {}", dir.display())))?;
        let run_as = postgres_user_owning(dir, || {
            "running as root, but there is no `postgres` user to run pgbouncer as \
             (it refuses to run as root); `apt-get install postgresql` creates it"
                .to_string()
        })?;
        let mut bouncer = Self {
            port: options.port.unwrap_or(0),
            options,
            binary,
            run_as,
            child: None,
        };
        let mut attempts = 0;
        loop {
            attempts += 1;
            if bouncer.options.port.is_none() {
                bouncer.port = free_port().map_err(ServiceError::io("find a free port"))?;
            }
            bouncer.write_files()?;
            match bouncer.launch().await {
                Ok(()) => return Ok(bouncer),
                Err((true, _)) if bouncer.options.port.is_none() && attempts < PORT_ATTEMPTS => {}
                Err((_, error)) => return Err(error),
            }
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn dir(&self) -> &Path {
        &self.options.dir
    }

    pub fn log_path(&self) -> PathBuf {
        self.options.dir.join(LOG_FILE)
    }

    pub fn ini_path(&self) -> PathBuf {
        self.options.dir.join(INI_FILE)
    }

    /// The admin console URL for `user`: `postgres://user@127.0.0.1:PORT/pgbouncer`.
    pub fn admin_url(&self, user: &str) -> String {
        format!(
            "postgres://{}@127.0.0.1:{}/pgbouncer",
            encode(user),
            self.port
        )
    }

    /// `postgres://user:password@127.0.0.1:PORT/db` through the bouncer, percent-encoded.
    pub fn url_for(&self, user: &str, password: &str, db: &str) -> String {
        format!(
            "postgres://{}:{}@127.0.0.1:{}/{}",
            encode(user),
            encode(password),
            self.port,
            encode(db)
        )
    }

    /// Connection options through the bouncer. `extra_float_digits` is not sent (PgBouncer
    /// refuses startup parameters it does not know unless they are ignored).
    pub fn connect_options(&self, user: &str, password: &str, db: &str) -> PgConnectOptions {
        PgConnectOptions::new()
            .host("127.0.0.1")
            .port(self.port)
            .username(user)
            .password(password)
            .database(db)
            .extra_float_digits(None::<i8>)
    }

    pub fn is_running(&self) -> bool {
        self.pid().is_some_and(super::process::is_alive)
    }

    /// SIGTERM (PgBouncer's immediate shutdown; SIGINT would wait for every client to leave),
    /// then SIGKILL after the stop timeout.
    pub async fn stop(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let pid = child.id();
        signal(pid, Signal::SIGTERM).map_err(ServiceError::io("signal pgbouncer"))?;
        if wait_for_exit(&mut child, self.options.stop_timeout)
            .await
            .map_err(ServiceError::io(format!("wait for pgbouncer {pid}")))?
            .is_some()
        {
            return Ok(());
        }
        child
            .kill()
            .and_then(|()| child.wait())
            .map(drop)
            .map_err(ServiceError::io(format!("kill pgbouncer {pid}")))
    }

    /// Starts a stopped bouncer again on the same port.
    pub async fn start_again(&mut self) -> Result<()> {
        if self.is_running() {
            return Ok(());
        }
        self.stop().await?;
        self.launch().await.map_err(|(_, error)| error)
    }

    fn write_files(&self) -> Result<()> {
        let options = &self.options;
        let mut ini = String::from("[databases]\n");
        for db in &options.databases {
            let _ = writeln!(
                ini,
                "{} = host=127.0.0.1 port={} dbname={}",
                ini_name(db),
                options.upstream_port,
                ini_name(db)
            );
        }
        let _ = writeln!(ini, "* = host=127.0.0.1 port={}", options.upstream_port);
        let auth_type = match options.auth {
            BouncerAuth::Trust => "trust",
            BouncerAuth::Md5 => "md5",
        };
        let _ = write!(
            ini,
            "\n[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
             auth_type = {auth_type}\nauth_file = {auth}\nadmin_users = {admins}\n\
             stats_users = {stats}\npool_mode = {mode}\ndefault_pool_size = {size}\n\
             max_client_conn = {max}\nignore_startup_parameters = extra_float_digits\n\
             server_reset_query = DISCARD ALL\n",
            port = self.port,
            auth = options.dir.join(AUTH_FILE).display(),
            admins = options.admin_users.join(", "),
            stats = options.stats_users.join(", "),
            mode = options.pool_mode.as_str(),
            size = options.default_pool_size,
            max = options.max_client_conn,
        );
        for (key, value) in &options.settings {
            let _ = writeln!(ini, "{key} = {value}");
        }
        let mut users = String::new();
        let mut listed = Vec::new();
        let extra = options
            .admin_users
            .iter()
            .chain(&options.stats_users)
            .map(|user| (user.clone(), String::new()));
        for (user, password) in options.users.iter().cloned().chain(extra) {
            if listed.contains(&user) {
                continue;
            }
            let _ = writeln!(
                users,
                "\"{}\" \"{}\"",
                user.replace('"', "\"\""),
                password.replace('"', "\"\"")
            );
            listed.push(user);
        }
        self.write_private(INI_FILE, &ini)?;
        self.write_private(AUTH_FILE, &users)
    }

    fn write_private(&self, name: &str, contents: &str) -> Result<()> {
        let path = self.options.dir.join(name);
        let action = || format!("write {}", path.display());
        fs::write(&path, contents).map_err(ServiceError::io(action()))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600))
            .map_err(ServiceError::io(action()))?;
        if let Some((uid, gid)) = self.run_as {
            chown(&path, Some(uid), Some(gid))
                .map_err(|errno| ServiceError::io(action())(errno.into()))?;
        }
        Ok(())
    }

    /// Err carries whether the port was taken.
    async fn launch(&mut self) -> Result<(), (bool, ServiceError)> {
        let log_path = self.log_path();
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|err| {
                (
                    false,
                    ServiceError::io(format!("open {}", log_path.display()))(err),
                )
            })?;
        let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
        let stderr = log
            .try_clone()
            .map_err(|err| (false, ServiceError::io("duplicate the log handle")(err)))?;
        let mut command = Command::new(&self.binary);
        command
            .arg(self.ini_path())
            .current_dir(&self.options.dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr);
        if let Some((uid, gid)) = self.run_as {
            command.uid(uid.as_raw()).gid(gid.as_raw());
        }
        let child =
            spawn_tied(command).map_err(|err| (false, ServiceError::io("start pgbouncer")(err)))?;
        self.child = Some(child);

        let admin = self
            .options
            .admin_users
            .first()
            .cloned()
            .unwrap_or_else(|| "postgres".to_string());
        let deadline = Instant::now() + self.options.ready_timeout;
        let reason = loop {
            let child = self.child.as_mut().expect("just spawned");
            match child.try_wait() {
                Ok(Some(status)) => break format!("it exited with {status}"),
                Ok(None) => {}
                Err(err) => break format!("could not check on it: {err}"),
            }
            let password = self
                .options
                .users
                .iter()
                .find(|(user, _)| *user == admin)
                .map(|(_, password)| password.as_str())
                .unwrap_or("");
            let options = PgConnectOptions::new()
                .host("127.0.0.1")
                .port(self.port)
                .username(&admin)
                .password(password)
                .database("pgbouncer")
                .extra_float_digits(None::<i8>);
            let attempt = tokio::time::timeout(Duration::from_secs(1), async {
                let mut conn = options.connect().await?;
                sqlx::raw_sql("SHOW VERSION").execute(&mut conn).await?;
                conn.close().await
            })
            .await;
            if let Ok(Ok(())) = attempt {
                return Ok(());
            }
            if Instant::now() >= deadline {
                break "the admin console did not answer".to_string();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let tail = log_tail(&log_path, log_start, 20);
        let port_taken = tail.contains("Address already in use");
        Err((
            port_taken,
            ServiceError::NotReady {
                server: "pgbouncer",
                waited: self.options.ready_timeout,
                reason,
                log: log_path,
                tail,
            },
        ))
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = signal(child.id(), Signal::SIGTERM);
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

/// Finds `pgbouncer`: `$GAMEDAY_PGBOUNCER`, `PATH`, then `/usr/sbin/pgbouncer`.
pub fn find_pgbouncer() -> Result<PathBuf, MissingTool> {
    let mut searched = Vec::new();
    if let Some(explicit) = std::env::var_os(PGBOUNCER_ENV).filter(|v| !v.is_empty()) {
        let explicit = PathBuf::from(explicit);
        if explicit.is_file() {
            return Ok(explicit);
        }
        searched.push(format!(
            "${PGBOUNCER_ENV}={} (not a file)",
            explicit.display()
        ));
        return Err(missing_pgbouncer(searched));
    }
    searched.push(format!("${PGBOUNCER_ENV} (unset)"));
    searched.push("PATH".to_string());
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join("pgbouncer"))
        .find(|candidate| candidate.is_file());
    if let Some(found) = on_path {
        return Ok(found);
    }
    searched.push("/usr/sbin/pgbouncer".to_string());
    let sbin = PathBuf::from("/usr/sbin/pgbouncer");
    if sbin.is_file() {
        return Ok(sbin);
    }
    Err(missing_pgbouncer(searched))
}

fn missing_pgbouncer(searched: Vec<String>) -> MissingTool {
    MissingTool {
        tool: "pgbouncer",
        searched,
        remedies: vec![
            "apt-get install pgbouncer  (as root; the binary is /usr/sbin/pgbouncer)".into(),
            format!("point ${PGBOUNCER_ENV} at the pgbouncer binary"),
        ],
    }
}

/// A database name as an ini key or `dbname=` value (quoted when it is not a plain word).
fn ini_name(name: &str) -> String {
    if name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

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
    use super::*;
    use crate::services::testing::test_dir;
    use crate::services::{PgCluster, PgOptions};

    #[tokio::test]
    async fn pgbouncer_forwards_to_postgres_and_answers_on_its_admin_console() {
        let dir = test_dir("pgbouncer-service");
        let cluster = PgCluster::start(PgOptions::new(dir.join("postgres")))
            .await
            .unwrap();
        let options = PgBouncerOptions {
            default_pool_size: 3,
            ..PgBouncerOptions::new(dir.join("pgbouncer"), cluster.port())
        };
        let bouncer = PgBouncer::start(options).await.unwrap();
        let pid = bouncer.pid().unwrap();

        let mut app = bouncer
            .connect_options("postgres", "", "postgres")
            .connect()
            .await
            .expect("a client connects through the bouncer");
        let row = sqlx::raw_sql("select 41 + 1 as answer")
            .fetch_one(&mut app)
            .await
            .unwrap();
        use sqlx::Row;
        let answer: i32 = row.get("answer");
        assert_eq!(answer, 42);

        let mut admin = bouncer
            .connect_options("stats", "", "pgbouncer")
            .connect()
            .await
            .unwrap();
        let config = sqlx::raw_sql("SHOW CONFIG")
            .fetch_all(&mut admin)
            .await
            .unwrap();
        let pool_size = config
            .iter()
            .find(|row| row.get::<String, _>("key") == "default_pool_size")
            .map(|row| row.get::<String, _>("value"));
        assert_eq!(pool_size.as_deref(), Some("3"));
        drop((app, admin));
        drop(bouncer);
        assert!(
            !crate::services::process::is_alive(pid),
            "dropping the bouncer stops it"
        );
        drop(cluster);
        fs::remove_dir_all(&dir).unwrap();
    }
}

#[cfg(test)]
mod md5_tests {
    use super::*;
    use crate::services::testing::test_dir;
    use crate::services::{PgCluster, PgOptions};

    #[tokio::test]
    async fn md5_lets_in_the_auth_file_password_and_refuses_another() {
        let dir = test_dir("pgbouncer-md5");
        let cluster = PgCluster::start(PgOptions::new(dir.join("postgres")))
            .await
            .unwrap();
        cluster.create_role("app", "app-pw").await.unwrap();
        let options = PgBouncerOptions {
            auth: BouncerAuth::Md5,
            pool_mode: PoolMode::Session,
            users: vec![
                ("app".into(), "app-pw".into()),
                ("postgres".into(), "admin-pw".into()),
            ],
            ..PgBouncerOptions::new(dir.join("pgbouncer"), cluster.port())
        };
        let bouncer = PgBouncer::start(options).await.unwrap();
        let mut app = bouncer
            .connect_options("app", "app-pw", "postgres")
            .connect()
            .await
            .expect("the auth file's password logs in");
        sqlx::raw_sql("select 1").execute(&mut app).await.unwrap();
        let refused = bouncer
            .connect_options("app", "wrong", "postgres")
            .connect()
            .await
            .expect_err("another password is refused");
        assert!(refused.to_string().contains("password"), "{refused}");
        drop((app, bouncer, cluster));
        fs::remove_dir_all(&dir).unwrap();
    }
}
