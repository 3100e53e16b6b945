//! The Prometheus text exposition format (0.0.4) and OpenMetrics text (1.0.0), read leniently:
//! a line that does not parse is reported with its line number and skipped, never a failure of
//! the whole scrape.
//!
//! Read: `# HELP`, `# TYPE` (`# UNIT` and other comments are skipped), samples with optional
//! labels (escapes `\\`, `\"`, `\n`; a trailing comma), values as Go writes them (`+Inf`, `-Inf`,
//! `NaN`, exponents), an optional timestamp, OpenMetrics exemplars (`… # {trace_id="…"} 1`,
//! dropped) and `# EOF` (lines after it are reported). Histograms and summaries need nothing
//! special: `_bucket{le="…"}`, `_sum`, `_count` and `{quantile="…"}` are samples like others.

use std::collections::BTreeMap;

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    /// In the order written.
    pub labels: Vec<(String, String)>,
    pub value: f64,
    /// As written (milliseconds in the Prometheus format, seconds in OpenMetrics).
    pub timestamp: Option<f64>,
}

impl Sample {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A line that was skipped, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based.
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// What a scrape held.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Exposition {
    pub samples: Vec<Sample>,
    /// `# TYPE` by metric family name.
    pub types: BTreeMap<String, String>,
    /// `# HELP` by metric family name.
    pub help: BTreeMap<String, String>,
    /// Skipped lines.
    pub problems: Vec<Problem>,
    /// The OpenMetrics end marker was seen.
    pub eof: bool,
}

/// Reads a whole exposition; never fails.
pub fn parse(text: &str) -> Exposition {
    let mut out = Exposition::default();
    for (i, raw) in text.lines().enumerate() {
        let number = i + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if out.eof {
            if !line.trim().is_empty() {
                out.problems.push(Problem {
                    line: number,
                    message: "text after \"# EOF\"".into(),
                });
            }
            continue;
        }
        let trimmed = line.trim_start();
        if trimmed.is_empty() {
            continue;
        }
        let result = if let Some(comment) = trimmed.strip_prefix('#') {
            comment_line(comment, &mut out)
        } else {
            sample_line(trimmed).map(|s| out.samples.push(s))
        };
        if let Err(message) = result {
            out.problems.push(Problem {
                line: number,
                message,
            });
        }
    }
    out
}

fn comment_line(comment: &str, out: &mut Exposition) -> Result<(), String> {
    let comment = comment.trim_start();
    if comment.trim_end() == "EOF" {
        out.eof = true;
        return Ok(());
    }
    let (keyword, rest) = comment.split_once([' ', '\t']).unwrap_or((comment, ""));
    match keyword {
        "HELP" | "TYPE" => {
            let rest = rest.trim_start();
            let (name, text) = rest.split_once([' ', '\t']).unwrap_or((rest, ""));
            if !is_metric_name(name) {
                return Err(format!("# {keyword}: bad metric name \"{name}\""));
            }
            if keyword == "TYPE" {
                const TYPES: [&str; 8] = [
                    "counter",
                    "gauge",
                    "histogram",
                    "summary",
                    "untyped",
                    "unknown",
                    "gaugehistogram",
                    "stateset",
                ];
                let kind = text.trim();
                if !TYPES.contains(&kind) && kind != "info" {
                    return Err(format!("# TYPE {name}: unknown type \"{kind}\""));
                }
                out.types.insert(name.to_string(), kind.to_string());
            } else {
                out.help.insert(name.to_string(), unescape_help(text));
            }
            Ok(())
        }
        // `# UNIT` and free comments.
        _ => Ok(()),
    }
}

fn unescape_help(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some(other) => out.push(other),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

pub(crate) fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn sample_line(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if !is_metric_name(name) {
        let shown: String = line.chars().take(40).collect();
        return Err(format!("expected a metric name, got \"{shown}\""));
    }
    let mut rest = &line[name_end..];
    let labels = if let Some(after) = rest.strip_prefix('{') {
        let (labels, tail) = label_set(after).map_err(|e| format!("{name}: {e}"))?;
        rest = tail;
        labels
    } else {
        Vec::new()
    };
    if !rest.starts_with([' ', '\t']) {
        return Err(format!("{name}: expected a space before the value"));
    }
    // An OpenMetrics exemplar follows " # ".
    let rest = match rest.find(" # ") {
        Some(at) => &rest[..at],
        None => rest,
    };
    let mut fields = rest.split_whitespace();
    let value = fields
        .next()
        .ok_or_else(|| format!("{name}: missing value"))?;
    let value = number(value).ok_or_else(|| format!("{name}: bad value \"{value}\""))?;
    let timestamp = match fields.next() {
        Some(t) => Some(
            number(t)
                .filter(|t| t.is_finite())
                .ok_or_else(|| format!("{name}: bad timestamp \"{t}\""))?,
        ),
        None => None,
    };
    if let Some(extra) = fields.next() {
        return Err(format!(
            "{name}: unexpected \"{extra}\" after the timestamp"
        ));
    }
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
        timestamp,
    })
}

/// A value as Go's `strconv.FormatFloat` and the OpenMetrics ABNF write it.
fn number(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" | "+inf" | "inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        "NaN" | "nan" => Some(f64::NAN),
        _ if text
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-')) =>
        {
            text.parse().ok()
        }
        _ => None,
    }
}

/// Label names and values, in the order written.
type Labels = Vec<(String, String)>;

/// `name="value",…}` (after the `{`): the labels and what follows the `}`.
fn label_set(mut text: &str) -> Result<(Labels, &str), String> {
    let mut labels: Labels = Vec::new();
    loop {
        text = text.trim_start();
        if let Some(tail) = text.strip_prefix('}') {
            return Ok((labels, tail));
        }
        let eq = text
            .find('=')
            .ok_or_else(|| "unterminated label set".to_string())?;
        let label = text[..eq].trim();
        if !is_label_name(label) {
            return Err(format!("bad label name \"{label}\""));
        }
        let after = text[eq + 1..].trim_start();
        let body = after
            .strip_prefix('"')
            .ok_or_else(|| format!("label {label}: expected a quoted value"))?;
        let mut value = String::new();
        let mut chars = body.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err(format!("label {label}: unterminated value")),
                Some((at, '"')) => break at,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, other)) => {
                        return Err(format!("label {label}: unknown escape \"\\{other}\""));
                    }
                    None => return Err(format!("label {label}: unterminated value")),
                },
                Some((_, c)) => value.push(c),
            }
        };
        if labels.iter().any(|(n, _)| n == label) {
            return Err(format!("duplicate label \"{label}\""));
        }
        labels.push((label.to_string(), value));
        text = body[end + 1..].trim_start();
        if let Some(tail) = text.strip_prefix(',') {
            text = tail;
        } else if !text.starts_with('}') {
            return Err(format!(
                "label {label}: expected ',' or '}}' after the value"
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(line: &str) -> Sample {
        let parsed = parse(line);
        assert!(parsed.problems.is_empty(), "{:?}", parsed.problems);
        assert_eq!(parsed.samples.len(), 1);
        parsed.samples[0].clone()
    }

    #[test]
    fn plain_samples_labels_and_timestamps() {
        let s = one("http_requests_total{method=\"post\",code=\"200\"} 1027 1395066363000");
        assert_eq!(s.name, "http_requests_total");
        assert_eq!(s.label("method"), Some("post"));
        assert_eq!(s.label("code"), Some("200"));
        assert_eq!(s.value, 1027.0);
        assert_eq!(s.timestamp, Some(1_395_066_363_000.0));
        let s = one("up 1");
        assert!(s.labels.is_empty());
        assert_eq!(s.timestamp, None);
        let s = one("x{} 2.5e-3");
        assert_eq!(s.value, 0.0025);
    }

    #[test]
    fn escapes_trailing_commas_and_spaces() {
        let s = one(
            r#"msdos_file_access_time_seconds{path="C:\\DIR\\FILE.TXT",error="Cannot find file:\n\"FILE.TXT\"",} 1.458255915e9"#,
        );
        assert_eq!(s.label("path"), Some(r"C:\DIR\FILE.TXT"));
        assert_eq!(s.label("error"), Some("Cannot find file:\n\"FILE.TXT\""));
        let s = one("a{ x = \"1\" , y=\"}\" }   3");
        assert_eq!(s.label("y"), Some("}"));
        assert_eq!(s.value, 3.0);
    }

    #[test]
    fn special_values() {
        assert_eq!(one("a{le=\"+Inf\"} +Inf").value, f64::INFINITY);
        assert_eq!(one("a -Inf").value, f64::NEG_INFINITY);
        assert!(one("a NaN").value.is_nan());
        assert_eq!(one("a{le=\"+Inf\"} 7").label("le"), Some("+Inf"));
    }

    #[test]
    fn help_type_comments_and_eof() {
        let parsed = parse(
            "# HELP a Some help with \\n a newline\n# TYPE a gauge\n# just a comment\n# UNIT a seconds\na 1\n# EOF\n",
        );
        assert!(parsed.problems.is_empty(), "{:?}", parsed.problems);
        assert_eq!(parsed.types["a"], "gauge");
        assert_eq!(parsed.help["a"], "Some help with \n a newline");
        assert!(parsed.eof);
        let after = parse("a 1\n# EOF\nb 2\n");
        assert_eq!(after.samples.len(), 1);
        assert_eq!(after.problems[0].line, 3);
    }

    #[test]
    fn exemplars_are_dropped() {
        let s = one("foo_bucket{le=\"0.01\"} 0 # {trace_id=\"KOO5S4vxi0o\"} 0.67");
        assert_eq!(s.value, 0.0);
        assert_eq!(s.timestamp, None);
    }

    #[test]
    fn malformed_lines_are_reported_with_their_number_and_skipped() {
        let text = "good 1\n{nameless=\"x\"} 1\nbad{a=\"1} 2\nbad{a=1} 2\nbad{a=\"1\"}2\nbad{a=\"\\q\"} 2\nbad 1 2 3\nbad one\nbad{a=\"1\",a=\"2\"} 1\n# TYPE bad flavour\nalso_good{x=\"y\"} 2\n\r\n";
        let parsed = parse(text);
        let names: Vec<&str> = parsed.samples.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["good", "also_good"]);
        let lines: Vec<usize> = parsed.problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, [2, 3, 4, 5, 6, 7, 8, 9, 10]);
        assert_eq!(
            parsed.problems[2].to_string(),
            "line 4: bad: label a: expected a quoted value"
        );
        assert_eq!(
            parsed.problems[6].to_string(),
            "line 8: bad: bad value \"one\""
        );
    }

    #[test]
    fn binary_garbage_never_panics() {
        let text =
            "\u{0}\u{1}{{{\"\\\n=\"\n}}} 1\na{b=\"\u{7f}\"} 1\n\u{feff}x 1\n#\n# HELP\n# TYPE x\n";
        let parsed = parse(text);
        assert_eq!(parsed.samples.len(), 1, "{:?}", parsed.samples);
        assert!(!parsed.problems.is_empty());
    }
}
