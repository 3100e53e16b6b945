//! Reading a timeline as it is written: from a file (surviving a torn last line, truncation and
//! rotation) or from a byte stream such as stdin (`ssh host tail -F … | gameday watch -`).
//! Lines that are not events are counted and skipped; no line, however long or binary, is kept
//! whole in memory beyond `MAX_LINE`.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::timeline::TimelineEvent;

/// Longer lines cannot be events a console wrote: they are dropped as malformed as soon as
/// they pass this length, without waiting for their end.
pub const MAX_LINE: usize = 1 << 20;

/// What a chunk of input held.
#[derive(Debug, Default, PartialEq)]
pub struct Batch {
    /// The stream started over (a truncated or replaced file): drop what came before.
    pub restarted: bool,
    pub events: Vec<TimelineEvent>,
    /// Lines that were not events.
    pub malformed: u64,
}

/// Splits bytes into lines and lines into events. Keeps the partial last line for later.
#[derive(Debug, Default)]
pub struct LineSplitter {
    partial: Vec<u8>,
    /// Inside a line already counted as too long: skip to its end.
    skipping: bool,
}

impl LineSplitter {
    pub fn feed(&mut self, mut bytes: &[u8], out: &mut Batch) {
        while let Some(newline) = bytes.iter().position(|b| *b == b'\n') {
            let (line, rest) = bytes.split_at(newline);
            bytes = &rest[1..];
            if std::mem::take(&mut self.skipping) {
                self.partial.clear();
                continue;
            }
            if self.partial.is_empty() {
                parse(line, out);
            } else {
                self.partial.extend_from_slice(line);
                let whole = std::mem::take(&mut self.partial);
                parse(&whole, out);
            }
        }
        if self.skipping {
            return;
        }
        self.partial.extend_from_slice(bytes);
        if self.partial.len() > MAX_LINE {
            out.malformed += 1;
            self.partial = Vec::new();
            self.skipping = true;
        }
    }

    pub fn reset(&mut self) {
        self.partial.clear();
        self.skipping = false;
    }
}

fn parse(line: &[u8], out: &mut Batch) {
    let trimmed = line.trim_ascii();
    if trimmed.is_empty() {
        return;
    }
    match serde_json::from_slice::<TimelineEvent>(trimmed) {
        Ok(event) => out.events.push(event),
        Err(_) => out.malformed += 1,
    }
}

/// A timeline file followed as it grows.
pub struct FileFollower {
    path: PathBuf,
    file: Option<File>,
    /// The file's identity (device, inode) and how far it was read.
    identity: Option<(u64, u64)>,
    position: u64,
    lines: LineSplitter,
}

impl FileFollower {
    pub fn new(path: &Path) -> FileFollower {
        FileFollower {
            path: path.to_path_buf(),
            file: None,
            identity: None,
            position: 0,
            lines: LineSplitter::default(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Everything written since the last call. A missing file is not an error: it may not
    /// exist yet, or be between a rotation's rename and create.
    pub fn poll(&mut self) -> io::Result<Batch> {
        let mut batch = Batch::default();
        let meta = match std::fs::metadata(&self.path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(batch),
            Err(e) => return Err(e),
        };
        let identity = (meta.dev(), meta.ino());
        let replaced = self.identity.is_some_and(|id| id != identity);
        let truncated = meta.len() < self.position;
        if self.file.is_none() || replaced || truncated {
            batch.restarted = self.identity.is_some();
            self.file = Some(File::open(&self.path)?);
            self.identity = Some(identity);
            self.position = 0;
            self.lines.reset();
        }
        let file = self.file.as_mut().expect("opened above");
        file.seek(SeekFrom::Start(self.position))?;
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let n = file.read(&mut chunk)?;
            if n == 0 {
                break;
            }
            self.position += n as u64;
            self.lines.feed(&chunk[..n], &mut batch);
        }
        Ok(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeline::EventKind;

    fn line(label: &str, offset_ms: u64) -> String {
        let event = TimelineEvent {
            ts: "2026-12-01T10:00:00Z".parse().unwrap(),
            offset_ms,
            kind: EventKind::Mark {
                label: label.into(),
            },
        };
        format!("{}\n", serde_json::to_string(&event).unwrap())
    }

    fn labels(batch: &Batch) -> Vec<String> {
        batch
            .events
            .iter()
            .map(|e| match &e.kind {
                EventKind::Mark { label } => label.clone(),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_line_split_anywhere_arrives_once_whole() {
        let text = format!("{}{}", line("a", 1), line("b", 2));
        for cut in 0..text.len() {
            let mut lines = LineSplitter::default();
            let mut batch = Batch::default();
            lines.feed(&text.as_bytes()[..cut], &mut batch);
            lines.feed(&text.as_bytes()[cut..], &mut batch);
            assert_eq!(labels(&batch), ["a", "b"], "cut at {cut}");
            assert_eq!(batch.malformed, 0);
        }
    }

    #[test]
    fn garbage_binary_and_huge_lines_are_counted_not_kept() {
        let mut lines = LineSplitter::default();
        let mut batch = Batch::default();
        lines.feed(b"not json\n", &mut batch);
        lines.feed(&[0xff, 0xfe, 0x00, 0x01, b'\n'], &mut batch);
        lines.feed(b"{\"ts\":1}\n", &mut batch);
        // A 10 MB line, fed in pieces: counted once, never held whole.
        let piece = vec![b'x'; 1 << 20];
        for _ in 0..10 {
            lines.feed(&piece, &mut batch);
            assert!(lines.partial.len() <= MAX_LINE + piece.len());
        }
        lines.feed(b"\n", &mut batch);
        lines.feed(line("after", 3).as_bytes(), &mut batch);
        assert_eq!(batch.malformed, 4);
        assert_eq!(labels(&batch), ["after"]);
    }

    #[test]
    fn a_file_is_followed_through_truncation_and_rotation() {
        let dir = crate::services::testing::test_dir("follow-file");
        let path = dir.join("timeline.jsonl");
        let mut follower = FileFollower::new(&path);
        assert_eq!(follower.poll().unwrap(), Batch::default(), "no file yet");
        std::fs::write(&path, format!("{}{{\"partial", line("a", 1))).unwrap();
        let batch = follower.poll().unwrap();
        assert_eq!(labels(&batch), ["a"]);
        assert!(!batch.restarted);
        // The torn line completes.
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("\":1}\n");
        text.push_str(&line("b", 2));
        std::fs::write(&path, &text).unwrap();
        let batch = follower.poll().unwrap();
        assert_eq!(labels(&batch), ["b"]);
        assert_eq!(batch.malformed, 1);
        // Truncated: starts over.
        std::fs::write(&path, line("c", 1)).unwrap();
        let batch = follower.poll().unwrap();
        assert!(batch.restarted);
        assert_eq!(labels(&batch), ["c"]);
        // Rotated: renamed away, a new file in its place (even a longer one).
        std::fs::rename(&path, dir.join("old.jsonl")).unwrap();
        std::fs::write(&path, format!("{}{}", line("d", 1), line("e", 2))).unwrap();
        let batch = follower.poll().unwrap();
        assert!(batch.restarted);
        assert_eq!(labels(&batch), ["d", "e"]);
    }
}
