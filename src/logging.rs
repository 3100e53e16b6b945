//! Logs go to a file under the artifacts dir, never to the terminal while the UI is up.
//! `GAMEDAY_LOG` (an env-filter like `gameday=debug`) sets the level; default `info`.
//!
//! Every line passes through [`RedactingWriter`] on its way to the file: a log line is the one
//! place where a DSN or a bot token quoted in some error message would otherwise land verbatim.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::Path;
use std::sync::{Mutex, PoisonError};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::redact::{self, Redactor};

/// Installs the global subscriber writing to `file`, masking URLs and bot tokens found in the
/// text. Later calls do nothing (one process, one log).
pub fn to_file(file: &Path) -> io::Result<()> {
    to_file_redacted(file, Redactor::default())
}

/// As [`to_file`], and also masks every secret `redactor` knows (the config's passwords and
/// tokens), wherever it appears in a line.
pub fn to_file_redacted(file: &Path, redactor: Redactor) -> io::Result<()> {
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let writer = OpenOptions::new().create(true).append(true).open(file)?;
    let filter = EnvFilter::try_from_env("GAMEDAY_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(RedactingWriter::new(writer, redactor))
        .with_ansi(false)
        .try_init();
    Ok(())
}

/// A `MakeWriter` that masks secrets in every line before it reaches `sink`: the known values
/// through [`Redactor::text`], then URLs and bot tokens through [`redact::free_text`].
pub struct RedactingWriter<W> {
    sink: Mutex<W>,
    redactor: Redactor,
}

impl<W: Write> RedactingWriter<W> {
    pub fn new(sink: W, redactor: Redactor) -> Self {
        RedactingWriter {
            sink: Mutex::new(sink),
            redactor,
        }
    }

    fn write_masked(&self, bytes: &[u8]) -> io::Result<()> {
        let text = String::from_utf8_lossy(bytes);
        let text = self.redactor.text(&text);
        let text = redact::free_text(&text);
        // A panic elsewhere while logging must not silence the log for good.
        let mut sink = self.sink.lock().unwrap_or_else(PoisonError::into_inner);
        sink.write_all(text.as_bytes())?;
        sink.flush()
    }
}

impl<'a, W: Write + 'a> MakeWriter<'a> for RedactingWriter<W> {
    type Writer = LineBuffer<'a, W>;

    fn make_writer(&'a self) -> Self::Writer {
        LineBuffer {
            writer: self,
            buf: Vec::new(),
        }
    }
}

/// Collects one event's output and masks it a whole line at a time, so a secret split across
/// two `write` calls is still seen in one piece.
pub struct LineBuffer<'a, W: Write> {
    writer: &'a RedactingWriter<W>,
    buf: Vec<u8>,
}

impl<W: Write> Write for LineBuffer<'_, W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        if let Some(last_newline) = self.buf.iter().rposition(|&b| b == b'\n') {
            let rest = self.buf.split_off(last_newline + 1);
            let lines = std::mem::replace(&mut self.buf, rest);
            self.writer.write_masked(&lines)?;
        }
        Ok(bytes.len())
    }

    /// Complete lines are already written; a partial one waits for its end (or the drop).
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<W: Write> Drop for LineBuffer<'_, W> {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            let _ = self.writer.write_masked(&std::mem::take(&mut self.buf));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// A sink the test can read back after the subscriber wrote to it.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn tracing_lines_are_masked_before_they_reach_the_sink() {
        let captured = Captured::default();
        let redactor = Redactor::new(["hunter22".to_string()]);
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(RedactingWriter::new(captured.clone(), redactor))
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let upstream = "http://127.0.0.1:9/bot123456:SECRETTOKEN/";
            tracing::info!(%upstream, "webhook forwarder listening");
            tracing::warn!(dsn = ?"postgres://app:pgpass@db/x", "connect failed: password hunter22");
            tracing::info!("nothing secret here");
        });
        let log = captured.text();
        for secret in ["SECRETTOKEN", "pgpass", "hunter22"] {
            assert!(!log.contains(secret), "{secret} reached the log:\n{log}");
        }
        assert!(log.contains("upstream=http://127.0.0.1:9/bot***/"), "{log}");
        assert!(log.contains("postgres://app:***@db/x"), "{log}");
        assert!(log.contains("password ***"), "{log}");
        assert!(log.contains("nothing secret here"), "{log}");
        assert_eq!(log.lines().count(), 3, "{log}");
    }

    #[test]
    fn a_secret_split_across_writes_is_masked_whole() {
        let captured = Captured::default();
        let writer = RedactingWriter::new(captured.clone(), Redactor::default());
        {
            let mut line = writer.make_writer();
            line.write_all(b"GET http://h/bot12:SEC").unwrap();
            line.write_all(b"RET/x\nsecond ").unwrap();
            assert_eq!(captured.text(), "GET http://h/bot***/x\n");
            line.write_all(b"line http://u:pw@h").unwrap();
        }
        assert_eq!(
            captured.text(),
            "GET http://h/bot***/x\nsecond line http://u:***@h"
        );
    }
}
