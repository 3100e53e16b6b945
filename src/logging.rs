//! Logs go to a file under the artifacts dir, never to the terminal while the UI is up.
//! `GAMEDAY_LOG` (an env-filter like `gameday=debug`) sets the level; default `info`.

use std::fs::OpenOptions;
use std::path::Path;
use std::sync::Mutex;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber writing to `file`. Later calls do nothing (one process, one log).
pub fn to_file(file: &Path) -> std::io::Result<()> {
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let writer = OpenOptions::new().create(true).append(true).open(file)?;
    let filter = EnvFilter::try_from_env("GAMEDAY_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(Mutex::new(writer))
        .with_ansi(false)
        .try_init();
    Ok(())
}
