//! Local servers the lab, the demo and the tests run: nats-server, a throwaway PostgreSQL and a
//! PgBouncer in front of it.
//!
//! [`NatsServer`] and [`PgCluster`] start a real server on 127.0.0.1 as a child process, wait
//! until it answers, and control it the way drills need: stop, start again on the same port with
//! the same data, freeze (SIGSTOP) and thaw (SIGCONT).
//!
//! # No orphans
//!
//! Every server process gets `PR_SET_PDEATHSIG(SIGKILL)`, so the kernel kills it when the process
//! that started it dies, even by SIGKILL. Linux ties that signal to the *thread* that forked the
//! child, not to the process: a server spawned from a tokio blocking-pool thread (which exits
//! after ~10 s idle) or from a test thread would be killed as soon as that thread ends. So every
//! server is spawned through [`spawn_tied`], which hands the fork to one long-lived spawner
//! thread owned by this module; that thread lives as long as the process. Code elsewhere that
//! starts long-running helper processes should use [`spawn_tied`] for the same reason.
//!
//! PostgreSQL backends exit by themselves when the postmaster dies, so tying the postmaster is
//! enough.

mod nats_server;
mod pgbouncer;
mod postgres;
mod process;
pub mod tether;

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

pub use nats_server::{
    NATS_SERVER_ENV, NatsOptions, NatsServer, find_nats_server, install_nats_server,
    nats_server_version,
};
pub use pgbouncer::{
    BouncerAuth, PGBOUNCER_ENV, PgBouncer, PgBouncerOptions, PoolMode, find_pgbouncer,
};
pub use postgres::{PG_BIN_ENV, PgCluster, PgOptions, find_postgres_bin_dir};
pub use process::spawn_tied;

pub type Result<T, E = ServiceError> = std::result::Result<T, E>;

/// Why a local server could not be found, started, reached or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    MissingTool(#[from] MissingTool),
    #[error("{action}: {source}")]
    Io {
        action: String,
        #[source]
        source: io::Error,
    },
    #[error("{action}: {source}")]
    Sql {
        action: String,
        #[source]
        source: sqlx::Error,
    },
    #[error(
        "{server} did not become ready within {}: {reason}\nlast lines of {}:\n{tail}",
        humantime::format_duration(*.waited),
        .log.display()
    )]
    NotReady {
        server: &'static str,
        waited: Duration,
        reason: String,
        log: PathBuf,
        tail: String,
    },
    #[error("{0}")]
    Failed(String),
}

impl ServiceError {
    pub(crate) fn io(action: impl Into<String>) -> impl FnOnce(io::Error) -> Self {
        let action = action.into();
        move |source| Self::Io { action, source }
    }

    pub(crate) fn sql(action: impl Into<String>) -> impl FnOnce(sqlx::Error) -> Self {
        let action = action.into();
        move |source| Self::Sql { action, source }
    }
}

/// A server binary that is not installed; its message says where we looked and how to install it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct MissingTool {
    pub tool: &'static str,
    /// The places that were searched, in order.
    pub searched: Vec<String>,
    /// Commands or steps that install the tool, best first.
    pub remedies: Vec<String>,
}

impl fmt::Display for MissingTool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} not found (looked at: {})",
            self.tool,
            self.searched.join(", ")
        )?;
        write!(f, "install it with one of:")?;
        for remedy in &self.remedies {
            write!(f, "\n  - {remedy}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod testing {
    use std::path::PathBuf;

    /// A fresh directory for one test: `<repo>/.artifacts/test/<name>-<unique suffix>/`.
    pub(crate) fn test_dir(name: &str) -> PathBuf {
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join(".artifacts/test")
            .join(format!("{name}-{}", &suffix[..8]));
        std::fs::create_dir_all(&dir).expect("create the test directory");
        dir
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::Path;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;

    use super::process::{children_of, is_alive};
    use super::testing::test_dir;
    use super::*;

    const HELPER_ENV: &str = "GAMEDAY_SERVICES_ORPHAN_HELPER";
    const THIS_TEST: &str = "services::tests::servers_die_when_their_starter_is_killed";

    /// In helper mode this test is the "starter": it starts both servers from a short-lived
    /// thread, writes their pids, and waits to be SIGKILLed by the parent run of the same test.
    #[test]
    fn servers_die_when_their_starter_is_killed() {
        if let Some(dir) = std::env::var_os(HELPER_ENV) {
            run_orphan_helper(Path::new(&dir));
        }
        let dir = test_dir("orphans");
        let helper_log = fs::File::create(dir.join("helper.log")).unwrap();
        let mut helper = Command::new(std::env::current_exe().unwrap());
        helper
            .args([THIS_TEST, "--exact", "--nocapture", "--test-threads=1"])
            .env(HELPER_ENV, &dir)
            .stdin(Stdio::null())
            .stdout(helper_log.try_clone().unwrap())
            .stderr(helper_log);
        let mut helper = spawn_tied(helper).expect("spawn the helper");

        let pids_file = dir.join("pids");
        let deadline = Instant::now() + Duration::from_secs(60);
        while !pids_file.exists() {
            if let Some(status) = helper.try_wait().unwrap() {
                panic!(
                    "helper exited with {status}: {}",
                    fs::read_to_string(dir.join("helper.log")).unwrap()
                );
            }
            assert!(
                Instant::now() < deadline,
                "the helper did not start its servers in time"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let pids: Vec<u32> = fs::read_to_string(&pids_file)
            .unwrap()
            .split_whitespace()
            .map(|p| p.parse().unwrap())
            .collect();
        let (nats_pid, postmaster_pid) = (pids[0], pids[1]);
        let postgres_children = children_of(postmaster_pid);
        assert!(
            is_alive(nats_pid),
            "nats-server must outlive the thread that started it"
        );
        assert!(
            is_alive(postmaster_pid),
            "postgres must outlive the thread that started it"
        );
        assert!(
            !postgres_children.is_empty(),
            "a running postmaster has background processes"
        );

        kill(Pid::from_raw(helper.id() as i32), Signal::SIGKILL).unwrap();
        helper.wait().unwrap();

        let deadline = Instant::now() + Duration::from_secs(10);
        let mut survivors: Vec<u32> = Vec::new();
        loop {
            survivors.clear();
            survivors.extend(
                [nats_pid, postmaster_pid]
                    .iter()
                    .chain(&postgres_children)
                    .filter(|&&p| is_alive(p)),
            );
            if survivors.is_empty() || Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            survivors.is_empty(),
            "processes left behind after their starter was killed: {survivors:?}"
        );

        // The lab restarts from the same data after a console was killed; this also lets the
        // new postmaster remove the shared memory segment the killed one had to leave behind.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let cluster = PgCluster::start(PgOptions::new(dir.join("postgres"))).await;
            assert!(
                cluster.is_ok(),
                "restart from the killed cluster's data: {:?}",
                cluster.err()
            );
        });
        fs::remove_dir_all(&dir).unwrap();
    }

    fn run_orphan_helper(dir: &Path) -> ! {
        let starter_dir = dir.to_path_buf();
        let (nats, postgres) = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let nats = NatsServer::start(NatsOptions::new(starter_dir.join("nats")))
                    .await
                    .unwrap();
                let postgres = PgCluster::start(PgOptions::new(starter_dir.join("postgres")))
                    .await
                    .unwrap();
                (nats, postgres)
            })
        })
        .join()
        .unwrap();
        let pids = format!("{} {}", nats.pid().unwrap(), postgres.pid().unwrap());
        fs::write(dir.join("pids.tmp"), pids).unwrap();
        fs::rename(dir.join("pids.tmp"), dir.join("pids")).unwrap();
        loop {
            std::thread::park();
        }
    }
}
