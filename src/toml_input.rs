//! Loading operator-written TOML (config, themes, scenarios) with errors that name the file, the
//! line and column, the key path and the expected form:
//!
//! `gameday.toml:12:9: webhook[0].timeout: expected a duration like "30s", got "thirty"`

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use toml::de::{DeTable, DeValue};

/// One clear message about bad operator input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct InputError {
    pub file: PathBuf,
    /// 1-based; 0 when the problem is the file as a whole.
    pub line: usize,
    pub column: usize,
    /// Key path such as `webhook[0].timeout`; empty for the document itself.
    pub path: String,
    pub message: String,
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl InputError {
    /// An error about the file as a whole (unreadable, missing).
    pub fn file(file: &Path, message: impl Into<String>) -> Self {
        InputError {
            file: file.to_path_buf(),
            line: 0,
            column: 0,
            path: String::new(),
            message: message.into(),
        }
    }
}

/// A parsed TOML document that remembers where every key and value came from.
pub struct TomlDoc {
    file: PathBuf,
    text: String,
}

impl TomlDoc {
    pub fn read(file: &Path) -> Result<Self, InputError> {
        let text = std::fs::read_to_string(file)
            .map_err(|e| InputError::file(file, format!("cannot read: {e}")))?;
        Self::from_text(file, text)
    }

    /// `file` is only used to name the source in errors.
    pub fn from_text(file: &Path, text: String) -> Result<Self, InputError> {
        let doc = TomlDoc {
            file: file.to_path_buf(),
            text,
        };
        if let Err(err) = DeTable::parse(&doc.text) {
            let message = err.message().trim().replace('\n', "; ");
            return Err(doc.error_at_offset(err.span().map_or(0, |s| s.start), &message));
        }
        Ok(doc)
    }

    pub fn file(&self) -> &Path {
        &self.file
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// Deserialize the whole document. Serde errors are mapped to file, line, column and key path.
    pub fn deserialize<T: DeserializeOwned>(&self) -> Result<T, InputError> {
        toml::from_str(&self.text).map_err(|err| {
            let offset = err.span().map_or(0, |s| s.start);
            self.error_at_offset(offset, &humanize_serde_message(err.message()))
        })
    }

    /// An error located at a key path such as `webhook[0].timeout` (the value's position, or the
    /// closest existing parent when the key is absent).
    pub fn error_at(&self, path: &str, message: impl Into<String>) -> InputError {
        let (line, column) = match self.span_of(path) {
            Some(span) => line_col(&self.text, span.start),
            None => (0, 0),
        };
        InputError {
            file: self.file.clone(),
            line,
            column,
            path: path.to_string(),
            message: message.into(),
        }
    }

    fn error_at_offset(&self, offset: usize, message: &str) -> InputError {
        let (line, column) = line_col(&self.text, offset);
        let path = DeTable::parse(&self.text)
            .map(|root| {
                let mut segments = Vec::new();
                path_at(root.get_ref(), offset, &mut segments);
                join_path(&segments)
            })
            .unwrap_or_default();
        InputError {
            file: self.file.clone(),
            line,
            column,
            path,
            message: message.to_string(),
        }
    }

    /// The span of the value at `path`, or of the deepest parent that exists.
    pub fn span_of(&self, path: &str) -> Option<Range<usize>> {
        let root = DeTable::parse(&self.text).ok()?;
        let mut best = None;
        let mut current: &DeValue<'_> = &DeValue::Boolean(false);
        let mut table = Some(root.get_ref());
        for segment in parse_path(path) {
            let next = match (&segment, table) {
                (Segment::Key(key), Some(t)) => {
                    t.iter().find(|(k, _)| k.get_ref() == key).map(|(_, v)| v)
                }
                (Segment::Index(i), None) => match current {
                    DeValue::Array(items) => items.get(*i),
                    _ => None,
                },
                _ => None,
            };
            let Some(value) = next else { break };
            best = Some(value.span());
            current = value.get_ref();
            table = match current {
                DeValue::Table(t) => Some(t),
                _ => None,
            };
        }
        best
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Key(String),
    Index(usize),
}

fn parse_path(path: &str) -> Vec<Segment> {
    let mut out = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let mut rest = part;
        if let Some(open) = rest.find('[') {
            out.push(Segment::Key(rest[..open].to_string()));
            rest = &rest[open..];
            while let Some(close) = rest.find(']') {
                if let Ok(i) = rest[1..close].parse() {
                    out.push(Segment::Index(i));
                }
                rest = &rest[close + 1..];
            }
        } else {
            out.push(Segment::Key(rest.to_string()));
        }
    }
    out
}

fn join_path(segments: &[Segment]) -> String {
    let mut out = String::new();
    for segment in segments {
        match segment {
            Segment::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Segment::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// Find the key path at `offset`. Table spans only cover their `[header]`, so every child is
/// searched; the deepest key or value containing the offset wins.
fn path_at(table: &DeTable<'_>, offset: usize, out: &mut Vec<Segment>) -> bool {
    for (key, value) in table.iter() {
        out.push(Segment::Key(key.get_ref().to_string()));
        if key.span().contains(&offset)
            || value_path_at(value.get_ref(), offset, out)
            || value.span().contains(&offset)
        {
            return true;
        }
        out.pop();
    }
    false
}

fn value_path_at(value: &DeValue<'_>, offset: usize, out: &mut Vec<Segment>) -> bool {
    match value {
        DeValue::Table(t) => path_at(t, offset, out),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                out.push(Segment::Index(i));
                if value_path_at(item.get_ref(), offset, out) || item.span().contains(&offset) {
                    return true;
                }
                out.pop();
            }
            false
        }
        _ => false,
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = text[line_start..offset].chars().count() + 1;
    (line, column)
}

/// Serde's messages are written for programmers; say the same for operators.
fn humanize_serde_message(message: &str) -> String {
    let message = message.trim();
    if let Some(rest) = message.strip_prefix("unknown field ") {
        // "unknown field `foo`, expected one of `a`, `b`" → keep, it already names the expected keys.
        return format!("unknown key {rest}");
    }
    if let Some(rest) = message.strip_prefix("missing field ") {
        return format!("missing required key {rest}");
    }
    let mut out = message.replace("invalid type: ", "wrong type: got ");
    for (rust, human) in [
        ("expected u16", "expected a whole number"),
        ("expected u32", "expected a whole number"),
        ("expected u64", "expected a whole number"),
        ("expected usize", "expected a whole number"),
        ("expected f64", "expected a number"),
        ("expected a string", "expected a quoted string"),
        ("expected a sequence", "expected a list like [1, 2]"),
        ("expected a boolean", "expected true or false"),
    ] {
        out = out.replace(rust, human);
    }
    out
}

/// `listen = "127.0.0.1:18080"` with an operator-friendly error.
pub fn socket_addr<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<std::net::SocketAddr, D::Error> {
    let s = String::deserialize(deserializer)?;
    s.parse().map_err(|_| {
        serde::de::Error::custom(format!(
            "expected an address like \"127.0.0.1:18080\", got \"{s}\""
        ))
    })
}

/// A duration written by an operator: `"30s"`, `"1500ms"`, `"2m"`, `"1h 30m"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Dur(pub Duration);

impl Dur {
    pub fn from_secs(secs: u64) -> Self {
        Dur(Duration::from_secs(secs))
    }

    pub fn from_millis(ms: u64) -> Self {
        Dur(Duration::from_millis(ms))
    }

    pub fn get(self) -> Duration {
        self.0
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl std::str::FromStr for Dur {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        humantime::parse_duration(s.trim())
            .map(Dur)
            .map_err(|_| format!("expected a duration like \"30s\", got \"{s}\""))
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration like \"30s\"")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Dur, E> {
                s.parse().map_err(E::custom)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Dur, E> {
                Err(E::custom(format!(
                    "expected a duration like \"30s\", got {v} (a number without a unit)"
                )))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Dur, E> {
                Err(E::custom(format!(
                    "expected a duration like \"30s\", got {v} (a number without a unit)"
                )))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl Serialize for Dur {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Doc {
        #[serde(default)]
        webhook: Vec<Hook>,
        console: Option<Console>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Hook {
        name: String,
        timeout: Dur,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Console {
        theme: String,
    }

    fn doc(text: &str) -> TomlDoc {
        TomlDoc::from_text(Path::new("gameday.toml"), text.to_string()).unwrap()
    }

    #[test]
    fn bad_duration_names_file_line_column_path_and_form() {
        let d = doc(
            "[[webhook]]\nname = \"a\"\ntimeout = \"30s\"\n\n[[webhook]]\nname = \"b\"\ntimeout = \"thirty\"\n",
        );
        let err = d.deserialize::<Doc>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "gameday.toml:7:11: webhook[1].timeout: expected a duration like \"30s\", got \"thirty\""
        );
    }

    #[test]
    fn unknown_key_is_located() {
        let ok = doc("[console]\ntheme = \"dark\"\n")
            .deserialize::<Doc>()
            .unwrap();
        assert_eq!(ok.console.unwrap().theme, "dark");
        let d = doc("[console]\ntheme = \"dark\"\nthme = \"x\"\n");
        let err = d.deserialize::<Doc>().unwrap_err();
        assert_eq!(err.line, 3);
        assert_eq!(err.path, "console.thme");
        assert!(
            err.message.starts_with("unknown key `thme`, expected"),
            "{}",
            err.message
        );
    }

    #[test]
    fn syntax_error_is_located() {
        let err = TomlDoc::from_text(Path::new("x.toml"), "[console]\ntheme = \n".into())
            .err()
            .unwrap();
        assert_eq!((err.line, err.file.as_path()), (2, Path::new("x.toml")));
    }

    #[test]
    fn good_values_parse_and_paths_resolve() {
        let d = doc("[[webhook]]\nname = \"a\"\ntimeout = \"1500ms\"\n");
        let parsed = d.deserialize::<Doc>().unwrap();
        assert_eq!(parsed.webhook[0].timeout.get(), Duration::from_millis(1500));
        assert_eq!(parsed.webhook[0].name, "a");
        let err = d.error_at("webhook[0].timeout", "too short");
        assert_eq!((err.line, err.column), (3, 11));
        // A missing key points at its closest parent.
        let err = d.error_at("webhook[0].upstream", "missing");
        assert_eq!(err.line, 1);
    }

    #[test]
    fn duration_without_unit_is_explained() {
        let d = doc("[[webhook]]\nname = \"a\"\ntimeout = 30\n");
        let err = d.deserialize::<Doc>().unwrap_err();
        assert!(
            err.message.contains("got 30 (a number without a unit)"),
            "{}",
            err.message
        );
    }
}
