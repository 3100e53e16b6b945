//! ARCHITECTURE.md's module table names every source file (directly, or by a `dir/*` entry),
//! and names nothing that is gone: the table stays exact as the tree changes.

use std::collections::BTreeSet;
use std::path::Path;

/// Every `.rs` file under `src/`, relative to it, test-only files left out.
fn source_files(dir: &Path, prefix: &str, out: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = format!("{prefix}{name}");
        if entry.path().is_dir() {
            if name != "tests" && name != "snapshots" {
                source_files(&entry.path(), &format!("{path}/"), out);
            }
        } else if name.ends_with(".rs") && name != "tests.rs" && name != "test_support.rs" {
            out.insert(path);
        }
    }
}

/// The backticked names in the first column of the module table.
fn table_entries(architecture: &str) -> Vec<String> {
    architecture
        .lines()
        .filter(|l| l.starts_with("| `"))
        .filter_map(|l| l.split('|').nth(1))
        .flat_map(|cell| {
            cell.split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn the_module_table_names_every_source_file_and_nothing_else() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let architecture = std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap();
    let entries = table_entries(&architecture);
    let mut files = BTreeSet::new();
    source_files(&root.join("src"), "", &mut files);

    let covered = |file: &str| {
        entries.iter().any(|e| match e.strip_suffix('*') {
            Some(dir) => file.starts_with(dir),
            None => e == file,
        })
    };
    let missing: Vec<&String> = files.iter().filter(|f| !covered(f)).collect();
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md's module table does not name {missing:?}"
    );
    let stale: Vec<&String> = entries
        .iter()
        .filter(|e| match e.strip_suffix('*') {
            Some(dir) => !files.iter().any(|f| f.starts_with(dir)),
            None => !files.contains(*e),
        })
        .collect();
    assert!(
        stale.is_empty(),
        "ARCHITECTURE.md's module table names what is not in src/: {stale:?}"
    );
}

/// Watchers and replays are read-only by construction: nothing under `src/watch/` reaches the
/// fault engine, the ledger, the proxy daemon, the dead-man agent, or the app that writes a
/// timeline.
#[test]
fn viewers_import_nothing_that_can_change_the_system() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = BTreeSet::new();
    source_files(&root.join("src/watch"), "src/watch/", &mut files);
    assert!(files.len() >= 4, "{files:?}");
    let forbidden = [
        "crate::ledger",
        "crate::proxy",
        "crate::faults::engine",
        "crate::faults::recovery",
        "crate::guard",
        "crate::console",
        "crate::app",
        "Timeline::",
        "ProxyClient",
    ];
    for file in &files {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        for word in forbidden {
            assert!(!text.contains(word), "{file} mentions {word}");
        }
    }
}
