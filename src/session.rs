//! A session's home: `<artifacts>/<session>/` holding `timeline.jsonl`, the reports and the log.

use std::io;
use std::path::{Path, PathBuf};

use chrono::Local;

/// A session name must be usable as a directory name everywhere.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "--session: expected a name of letters, digits, '-', '_' or '.', got \"{name}\""
        ))
    }
}

/// Creates a fresh session directory. An existing session is never reused or overwritten: a
/// taken name gets a numeric suffix.
pub fn create_dir(artifacts: &Path, requested: Option<&str>) -> io::Result<(String, PathBuf)> {
    let base = match requested {
        Some(name) => name.to_string(),
        None => Local::now().format("%Y-%m-%dT%H-%M-%S").to_string(),
    };
    std::fs::create_dir_all(artifacts)?;
    for n in 1.. {
        let name = if n == 1 {
            base.clone()
        } else {
            format!("{base}-{n}")
        };
        let dir = artifacts.join(&name);
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok((name, dir)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    unreachable!("the loop only ends by returning")
}

/// Path of a session directory given by the operator: a path, or a name under the artifacts dir.
pub fn resolve_dir(artifacts: &Path, given: &Path) -> PathBuf {
    if given.is_dir() || given.components().count() > 1 {
        given.to_path_buf()
    } else {
        artifacts.join(given)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(check_name("drill-2026.11").is_ok());
        assert!(check_name("../etc").is_err());
        assert!(check_name("a b").is_err());
        assert!(check_name("").is_err());
    }

    #[test]
    fn a_taken_name_is_never_reused() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(".artifacts/test")
            .join(format!("session-dirs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let (a, _) = create_dir(&root, Some("drill")).unwrap();
        let (b, dir_b) = create_dir(&root, Some("drill")).unwrap();
        assert_eq!((a.as_str(), b.as_str()), ("drill", "drill-2"));
        assert!(dir_b.is_dir());
    }
}
