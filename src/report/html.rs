//! `report.html`: the write-up as one self-contained page — inline CSS, inline SVG charts, no
//! scripts, no external fonts or images — so it opens offline, reads on a projector and prints.
//!
//! The page is also well-formed XML (every element closed, only the five XML entities), which
//! keeps it parseable by strict tools and by the tests.

use std::collections::BTreeSet;
use std::fmt::{self, Display, Write};

use chrono::{DateTime, Utc};

use super::{CheckOutcome, FaultSummary, Outcome, Report, fmt_ms};
use crate::metrics::{MetricStore, Series, Stats, Threshold};
use crate::timeline::{CheckGroup, Verdict, fmt_value};

/// A threshold more than this many times the largest value is named instead of drawn.
const THRESHOLD_HEADROOM: f64 = 3.0;

/// Room a phase label needs before the next phase line, in SVG units.
const PHASE_LABEL_WIDTH: f64 = 72.0;

/// More charts than this stop being read; the metrics table has the rest.
const MAX_CHARTS: usize = 12;

/// Chart geometry, in SVG user units (the chart scales to the page width).
pub(super) const CHART_WIDTH: f64 = 1000.0;
pub(super) const CHART_HEIGHT: f64 = 230.0;
pub(super) const PLOT_LEFT: f64 = 70.0;
pub(super) const PLOT_RIGHT: f64 = 960.0;
pub(super) const PLOT_TOP: f64 = 24.0;
pub(super) const PLOT_BOTTOM: f64 = 200.0;

/// Tick spacings for the time axis, smallest first.
const TICK_STEPS_MS: [i64; 18] = [
    1_000, 2_000, 5_000, 10_000, 15_000, 30_000, 60_000, 120_000, 300_000, 600_000, 900_000,
    1_800_000, 3_600_000, 7_200_000, 10_800_000, 21_600_000, 43_200_000, 86_400_000,
];
const MAX_TICKS: i64 = 8;

const NOT_RUN: &str = "Not run: free-play session (no scenario).";

const STYLE: &str = r#"
:root { color-scheme: light; }
body { font: 18px/1.45 system-ui, "Segoe UI", "DejaVu Sans", sans-serif; color: #1b1f24;
  background: #fff; max-width: 1100px; margin: 0 auto; padding: 1.5rem 2rem 3rem; }
h1 { font-size: 2rem; margin: 0.5rem 0 0.75rem; }
h2 { font-size: 1.45rem; border-bottom: 2px solid #d0d7de; padding-bottom: 0.2rem; margin-top: 2.2rem; }
h3 { font-size: 1.15rem; margin-bottom: 0.4rem; }
code, .mono { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 0.92em; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; }
th, td { border: 1px solid #d0d7de; padding: 0.25rem 0.6rem; text-align: left; vertical-align: top; }
th { background: #f3f5f7; }
td.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
table.facts th { width: 11rem; }
.badge { display: inline-block; font-size: 1.3rem; font-weight: 700; padding: 0.3rem 1rem;
  border-radius: 0.4rem; border: 2px solid; margin: 0 0 0.4rem; }
.badge.pass { color: #116329; background: #dafbe1; }
.badge.fail { color: #a40e26; background: #ffebe9; }
.badge.aborted, .badge.none { color: #7d4e00; background: #fff8c5; }
.badge.free-play { color: #24292f; background: #eaeef2; }
.reason { margin: 0 0 1rem; font-size: 1.1rem; }
ul.outcomes { list-style: none; padding-left: 0; }
ul.outcomes li { padding: 0.15rem 0.5rem; margin: 0.15rem 0; border-left: 6px solid; }
ul.outcomes li.pass { border-color: #2da44e; }
ul.outcomes li.fail { border-color: #cf222e; background: #fff5f5; }
ul.outcomes li.warn { border-color: #bf8700; background: #fffbe6; }
.muted { color: #57606a; }
figure.chart { margin: 1rem 0 1.6rem; break-inside: avoid; }
figure.chart figcaption { font-size: 1rem; margin-bottom: 0.2rem; }
figure.chart figcaption .key { font-weight: 700; font-family: "DejaVu Sans Mono", Menlo, monospace; }
svg.chart { width: 100%; height: auto; display: block; }
svg.chart text { font: 13px "DejaVu Sans", system-ui, sans-serif; fill: #3d444d; }
svg.chart .plot { fill: #fbfcfd; stroke: #b8c0c8; }
svg.chart .tick { stroke: #e3e7eb; }
svg.chart .line { fill: none; stroke: #0b62c4; stroke-width: 2; stroke-linejoin: round; stroke-linecap: round; }
svg.chart .fault-span { fill: #e4572e; fill-opacity: 0.16; stroke: #e4572e; stroke-opacity: 0.5; }
svg.chart .fault-span.failed, svg.chart .fault-span.active { fill: #b3001b; fill-opacity: 0.22; }
svg.chart text.fault-label { fill: #b3321b; font-weight: 700; }
svg.chart .mark, svg.chart .note { stroke: #6639ba; stroke-width: 1.5; stroke-dasharray: 4 3; }
svg.chart .annotation-badge { fill: #fff; stroke: #6639ba; stroke-width: 1.5; }
svg.chart text.annotation-label { fill: #6639ba; font-weight: 700; font-size: 11px; }
svg.chart .threshold { stroke-width: 1.5; stroke-dasharray: 8 4; }
svg.chart .threshold.warn { stroke: #bf8700; }
svg.chart .threshold.crit { stroke: #cf222e; }
svg.chart text.threshold-label.warn { fill: #7d4e00; }
svg.chart text.threshold-label.crit { fill: #a40e26; }
svg.chart .phase { stroke: #8c959f; stroke-width: 1; stroke-dasharray: 2 3; }
svg.chart text.phase-label { fill: #6e7781; font-size: 12px; }
ol.annotations .kind { font-weight: 700; }
footer { margin-top: 3rem; font-size: 0.9rem; color: #57606a; }
@media print {
  body { font-size: 11pt; max-width: none; padding: 0; }
  h2 { break-after: avoid; }
  tr, li { break-inside: avoid; }
}
"#;

/// Text made safe for HTML/XML content and attribute values. Operator input (notes, marks,
/// reasons, metric keys) goes through this on its way into the page, always.
pub(super) struct Esc<'a>(pub &'a str);

impl Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            match c {
                '&' => f.write_str("&amp;")?,
                '<' => f.write_str("&lt;")?,
                '>' => f.write_str("&gt;")?,
                '"' => f.write_str("&quot;")?,
                '\'' => f.write_str("&#39;")?,
                '\t' | '\n' | '\r' => f.write_char(c)?,
                // Not allowed in XML 1.0 even as references: show that something was there.
                c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {
                    f.write_char('\u{FFFD}')?
                }
                c => f.write_char(c)?,
            }
        }
        Ok(())
    }
}

pub fn to_html(r: &Report, store: &MetricStore) -> String {
    let mut h = String::with_capacity(64 * 1024);
    let title = match &r.experiment {
        Some(x) => format!("Chaos Experiment: {}", x.title),
        None => format!("Chaos Experiment: free-play session {}", r.session.name),
    };
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>\n\
         <title>{} · gameday</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        Esc(&title)
    );
    let _ = writeln!(h, "<header>\n<h1>{}</h1>", Esc(&title));
    verdict_badge(&mut h, r);
    facts(&mut h, r);
    h.push_str("</header>\n");

    hypothesis_and_baseline(&mut h, r);
    injection(&mut h, r);
    results(&mut h, r);
    recovery(&mut h, r);
    improvements(&mut h, r);
    charts(&mut h, r, store);
    metrics_table(&mut h, r);
    outages(&mut h, r);
    annotations(&mut h, r);
    timeline(&mut h, r);

    let _ = writeln!(
        h,
        "<footer>Rebuilt from the session timeline by gameday {}. Times are UTC.</footer>\n\
         </body>\n</html>",
        Esc(&r.session.version)
    );
    h
}

fn clock(r: &Report, offset_ms: u64) -> DateTime<Utc> {
    r.session.started + chrono::Duration::milliseconds(offset_ms as i64)
}

fn verdict_badge(h: &mut String, r: &Report) {
    match &r.experiment {
        Some(x) => {
            let (class, text) = match x.verdict {
                Some(Verdict::Pass) => ("pass", "✅ Pass"),
                Some(Verdict::Fail) => ("fail", "❌ Fail"),
                Some(Verdict::Aborted) => ("aborted", "⚠️ Aborted"),
                None => ("none", "No verdict: the run was cut short"),
            };
            let _ = writeln!(h, "<p class=\"badge verdict {class}\">{text}</p>");
            if !x.reason.is_empty() {
                let _ = writeln!(h, "<p class=\"reason\">{}</p>", Esc(&x.reason));
            }
        }
        None => {
            let count = |o: Outcome| r.results.iter().filter(|l| l.outcome == o).count();
            let _ = writeln!(
                h,
                "<p class=\"badge verdict free-play\">Free play: {} ✅ · {} ❌ · {} ⚠️</p>",
                count(Outcome::Pass),
                count(Outcome::Fail),
                count(Outcome::Warn)
            );
        }
    }
}

fn facts(h: &mut String, r: &Report) {
    let s = &r.session;
    h.push_str("<table class=\"facts\">\n");
    let mut row = |label: &str, value: &str| {
        let _ = writeln!(h, "<tr><th>{label}</th><td>{}</td></tr>", Esc(value));
    };
    row("Session", &s.name);
    if let Some(environment) = &s.environment {
        row("Environment", environment);
    }
    row(
        "Started",
        &s.started.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    );
    row(
        "Ended",
        &format!(
            "{} ({})",
            s.ended.format("%Y-%m-%d %H:%M:%S UTC"),
            fmt_ms(s.duration_ms)
        ),
    );
    row(
        "How it ended",
        s.end_reason
            .as_deref()
            .unwrap_or("the console was killed (no end recorded)"),
    );
    row("Config", &s.config);
    if let Some(x) = &r.experiment {
        row("Scenario", &x.file);
    }
    row("gameday", &s.version);
    h.push_str("</table>\n");
}

fn check_item(h: &mut String, c: &CheckOutcome) {
    let (class, mark) = if c.passed {
        ("pass", "✅")
    } else {
        ("fail", "❌")
    };
    let _ = writeln!(
        h,
        "<li class=\"{class}\">{mark} {} <span class=\"muted\">({}, {})</span></li>",
        Esc(&c.name),
        Esc(&c.expected),
        Esc(&c.measured())
    );
}

fn hypothesis_and_baseline(h: &mut String, r: &Report) {
    match &r.experiment {
        Some(x) => {
            let _ = writeln!(
                h,
                "<section id=\"hypothesis\">\n<h2>Hypothesis</h2>\n<p>{}</p>",
                Esc(&x.hypothesis)
            );
            if !x.description.is_empty() {
                let _ = writeln!(h, "<p class=\"muted\">{}</p>", Esc(&x.description));
            }
            h.push_str("</section>\n<section id=\"baseline\">\n<h2>Baseline</h2>\n");
            let baseline: Vec<&CheckOutcome> = x
                .checks
                .iter()
                .filter(|c| c.group == CheckGroup::Baseline)
                .collect();
            if baseline.is_empty() {
                h.push_str("<p>No steady-state checks were declared.</p>\n");
            } else {
                h.push_str("<ul class=\"outcomes\">\n");
                for c in baseline {
                    check_item(h, c);
                }
                h.push_str("</ul>\n");
            }
            h.push_str("</section>\n");
        }
        None => {
            let _ = writeln!(
                h,
                "<section id=\"hypothesis\">\n<h2>Hypothesis</h2>\n<p>{NOT_RUN}</p>\n</section>\n\
                 <section id=\"baseline\">\n<h2>Baseline</h2>\n<p>{NOT_RUN}</p>\n</section>"
            );
        }
    }
}

fn injection(h: &mut String, r: &Report) {
    h.push_str("<section id=\"injection\">\n<h2>Injection</h2>\n");
    if r.faults.is_empty() {
        h.push_str("<p>No faults were injected.</p>\n</section>\n");
        return;
    }
    h.push_str("<ul>\n");
    for f in &r.faults {
        let _ = write!(
            h,
            "<li><strong>{}</strong> on <code>{}</code>",
            Esc(&f.name),
            Esc(&f.target)
        );
        if !f.detail.is_empty() {
            let _ = write!(h, " ({})", Esc(&f.detail));
        }
        let _ = write!(
            h,
            " at {}",
            clock(r, f.applied_ms.unwrap_or(f.requested_ms)).format("%H:%M:%S")
        );
        if let Some(d) = f.duration_ms {
            let _ = write!(h, " for {}", fmt_ms(d));
        }
        let _ = write!(h, ": {}", Esc(&f.outcome));
        if let Some(by) = &f.ended_by {
            let _ = write!(h, " by {}", Esc(by));
        }
        if let Some(e) = &f.error {
            let _ = write!(h, " ({})", Esc(e));
        }
        h.push_str("</li>\n");
    }
    h.push_str("</ul>\n</section>\n");
}

fn results(h: &mut String, r: &Report) {
    h.push_str("<section id=\"results\">\n<h2>Results</h2>\n<ul class=\"outcomes\">\n");
    for line in &r.results {
        let class = match line.outcome {
            Outcome::Pass => "pass",
            Outcome::Fail => "fail",
            Outcome::Warn => "warn",
        };
        let _ = writeln!(
            h,
            "<li class=\"{class}\">{} {}</li>",
            line.outcome.symbol(),
            Esc(&line.text)
        );
    }
    h.push_str("</ul>\n</section>\n");
}

fn recovery(h: &mut String, r: &Report) {
    h.push_str("<section id=\"recovery\">\n<h2>Recovery</h2>\n");
    let checks: Vec<&CheckOutcome> = r
        .experiment
        .iter()
        .flat_map(|x| x.checks.iter())
        .filter(|c| c.group == CheckGroup::Recovery)
        .collect();
    if !checks.is_empty() {
        h.push_str("<table>\n<tr><th>check</th><th>expected</th><th>time to recover</th></tr>\n");
        for c in &checks {
            let outcome = match (c.passed, c.recovered_after_ms) {
                (true, Some(ms)) => format!("✅ {} after the last revert", fmt_ms(ms)),
                _ if c.detail.is_empty() => format!("❌ did not recover ({})", c.measured()),
                _ => format!("❌ did not recover: {} ({})", c.detail, c.measured()),
            };
            let _ = writeln!(
                h,
                "<tr class=\"{}\"><td>{}</td><td>{}</td><td>{}</td></tr>",
                if c.passed { "pass" } else { "fail" },
                Esc(&c.name),
                Esc(&c.expected),
                Esc(&outcome)
            );
        }
        h.push_str("</table>\n");
    }
    if r.outages.is_empty() && r.faults.is_empty() && checks.is_empty() {
        h.push_str("<p>Nothing to recover from: no outages and no faults.</p>\n</section>\n");
        return;
    }
    if !r.outages.is_empty() {
        h.push_str("<ul>\n");
        for o in &r.outages {
            let text = match o.to_ms {
                Some(_) => format!(
                    "{} recovered after {} down ({})",
                    o.source,
                    fmt_ms(o.duration_ms),
                    o.reason
                ),
                None => format!(
                    "{} did not recover: down for {} at the end ({})",
                    o.source,
                    fmt_ms(o.duration_ms),
                    o.reason
                ),
            };
            let _ = writeln!(h, "<li>{}</li>", Esc(&text));
        }
        h.push_str("</ul>\n");
    }
    for f in r.faults.iter().filter(|f| !f.metrics.is_empty()) {
        fault_metrics(h, f);
    }
    h.push_str("</section>\n");
}

fn fault_metrics(h: &mut String, f: &FaultSummary) {
    let _ = writeln!(
        h,
        "<h3>{}: key metrics before / during / after (p95 / max)</h3>\n<table>\n\
         <tr><th>metric</th><th>before</th><th>during</th><th>after</th></tr>",
        Esc(&f.name)
    );
    let cell = |s: &Option<Stats>| {
        s.map_or("–".to_string(), |s| {
            format!("{} / {}", fmt_value(s.p95), fmt_value(s.max))
        })
    };
    for m in &f.metrics {
        let _ = writeln!(
            h,
            "<tr><td><code>{}</code></td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td></tr>",
            Esc(&m.key),
            cell(&m.before),
            cell(&m.during),
            cell(&m.after)
        );
    }
    h.push_str("</table>\n");
}

fn improvements(h: &mut String, r: &Report) {
    h.push_str("<section id=\"improvements\">\n<h2>Improvements</h2>\n");
    if r.improvements.is_empty() {
        h.push_str(
            "<p>None recorded. (Notes starting with <code>improve:</code>, <code>todo:</code> \
             or <code>fix:</code> are listed here.)</p>\n",
        );
    } else {
        h.push_str("<ol>\n");
        for item in &r.improvements {
            let _ = writeln!(h, "<li>{}</li>", Esc(item));
        }
        h.push_str("</ol>\n");
    }
    h.push_str("</section>\n");
}

fn metrics_table(h: &mut String, r: &Report) {
    h.push_str("<section id=\"metrics\">\n<h2>Metrics</h2>\n");
    if r.metrics.is_empty() {
        h.push_str("<p>No samples were recorded.</p>\n</section>\n");
        return;
    }
    h.push_str(
        "<table>\n<tr><th>metric</th><th>min</th><th>p50</th><th>p95</th><th>max</th>\
         <th>last</th><th>time ≥ warn</th><th>time ≥ crit</th></tr>\n",
    );
    for m in &r.metrics {
        let _ = write!(h, "<tr><td><code>{}</code></td>", Esc(&m.key));
        for cell in m.cells() {
            let _ = write!(h, "<td class=\"num\">{cell}</td>");
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</table>\n</section>\n");
}

fn outages(h: &mut String, r: &Report) {
    h.push_str("<section id=\"outages\">\n<h2>Outages</h2>\n");
    if r.outages.is_empty() {
        h.push_str("<p>None.</p>\n</section>\n");
        return;
    }
    h.push_str(
        "<table>\n<tr><th>source</th><th>down at</th><th>up at</th><th>duration</th>\
         <th>reason</th></tr>\n",
    );
    for o in &r.outages {
        let up = o.to_ms.map_or_else(
            || "still down".to_string(),
            |ms| clock(r, ms).format("%H:%M:%S").to_string(),
        );
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            Esc(&o.source),
            clock(r, o.from_ms).format("%H:%M:%S"),
            up,
            fmt_ms(o.duration_ms),
            Esc(&o.reason)
        );
    }
    h.push_str("</table>\n</section>\n");
}

fn annotations(h: &mut String, r: &Report) {
    h.push_str("<section id=\"annotations\">\n<h2>Marks and notes</h2>\n");
    if r.annotations.is_empty() {
        h.push_str("<p>None.</p>\n</section>\n");
        return;
    }
    // Numbered like the labels pinned on the charts.
    h.push_str("<ol class=\"annotations\">\n");
    for a in &r.annotations {
        let _ = writeln!(
            h,
            "<li>{} <span class=\"kind\">{}</span>: {}</li>",
            a.at.format("%H:%M:%S"),
            a.kind,
            Esc(&a.text)
        );
    }
    h.push_str("</ol>\n</section>\n");
}

fn timeline(h: &mut String, r: &Report) {
    h.push_str(
        "<section id=\"timeline\">\n<h2>Timeline</h2>\n<table>\n\
         <tr><th>time (UTC)</th><th>offset</th><th>event</th></tr>\n",
    );
    for row in &r.timeline {
        let _ = writeln!(
            h,
            "<tr><td class=\"mono\">{}</td><td class=\"num\">+{}</td><td>{}</td></tr>",
            row.at.format("%H:%M:%S%.3f"),
            fmt_ms(row.offset_ms),
            Esc(&row.text)
        );
    }
    h.push_str("</table>\n</section>\n");
}

/// A metric worth a chart, and why it was picked.
struct KeyMetric<'a> {
    key: &'a str,
    series: &'a Series,
    why: String,
    threshold: Option<Threshold>,
}

/// The metrics the write-up is about: those the scenario's checks read, those with thresholds,
/// then the headliners (up flags, round trips, consumer lag, pool use, webhook and probe latency).
fn key_metrics<'a>(r: &Report, store: &'a MetricStore) -> (Vec<KeyMetric<'a>>, usize) {
    let threshold_of = |key: &str| {
        r.metrics
            .iter()
            .find(|m| m.key == key)
            .and_then(|m| m.threshold)
            .filter(Threshold::is_set)
    };
    let mut picked: Vec<KeyMetric<'a>> = Vec::new();
    let mut seen = BTreeSet::new();
    let mut pick = |key: &'a str, series: &'a Series, why: String| {
        if seen.insert(key) {
            picked.push(KeyMetric {
                key,
                series,
                why,
                threshold: threshold_of(key),
            });
        }
    };
    for c in r.experiment.iter().flat_map(|x| x.checks.iter()) {
        for key in check_metric_keys(c, store) {
            if let Some((key, series)) = store.iter().find(|(k, _)| *k == key) {
                pick(key, series, format!("read by check \"{}\"", c.name));
            }
        }
    }
    for (key, series) in store.iter() {
        if threshold_of(key).is_some() {
            pick(key, series, "has warn/crit thresholds".into());
        }
    }
    for (key, series) in store.iter() {
        let headliner = key.ends_with(".up")
            || (key.starts_with("nats.") && key.ends_with(".pending"))
            || key == "nats.rtt_ms"
            || key == "pg.probe_ms"
            || key == "pg.connections.used"
            || (key.starts_with("pg.app.") && key.ends_with(".utilization"))
            || (key.starts_with("webhook.") && key.ends_with(".latency_ms.p95"))
            || (key.starts_with("probe.") && key.ends_with(".latency_ms"));
        let flat_zero = series.stats().is_none_or(|s| s.min == 0.0 && s.max == 0.0);
        // A flag that stayed 0 is news (down the whole time); any other flat zero is noise.
        if headliner && (!flat_zero || key.ends_with(".up")) {
            pick(key, series, String::new());
        }
    }
    let total = picked.len();
    picked.truncate(MAX_CHARTS);
    (picked, total)
}

/// The metric a check reads: the key it names, or else every known key in its expectation text
/// ("p95 of probe.api.latency_ms < 500").
fn check_metric_keys<'c>(c: &'c CheckOutcome, store: &MetricStore) -> Vec<&'c str> {
    if let Some(key) = &c.metric {
        return vec![key.as_str()];
    }
    c.expected
        .split(|ch: char| ch.is_whitespace() || "(),;:=<>!`'\"".contains(ch))
        .filter(|token| store.get(token).is_some())
        .collect()
}

fn charts(h: &mut String, r: &Report, store: &MetricStore) {
    h.push_str("<section id=\"charts\">\n<h2>Key metrics</h2>\n");
    let (picked, total) = key_metrics(r, store);
    if picked.is_empty() {
        h.push_str("<p>No key metrics were recorded.</p>\n</section>\n");
        return;
    }
    h.push_str(
        "<p class=\"muted\">Shaded: faults. Dashed purple: marks and notes (numbered as in the \
         list below). Dashed yellow/red: warn/crit thresholds. Dotted grey: scenario phases.</p>\n",
    );
    for m in &picked {
        chart(h, r, m);
    }
    if total > picked.len() {
        let _ = writeln!(
            h,
            "<p class=\"muted\">{} more key metrics are in the table below.</p>",
            total - picked.len()
        );
    }
    h.push_str("</section>\n");
}

/// Maps session time and metric values onto the plot area.
struct Scale {
    span_ms: f64,
    lo: f64,
    hi: f64,
}

impl Scale {
    fn x(&self, offset_ms: u64) -> f64 {
        let t = (offset_ms as f64).min(self.span_ms);
        PLOT_LEFT + t / self.span_ms * (PLOT_RIGHT - PLOT_LEFT)
    }

    fn y(&self, value: f64) -> f64 {
        PLOT_BOTTOM - (value - self.lo) / (self.hi - self.lo) * (PLOT_BOTTOM - PLOT_TOP)
    }
}

/// Pixel columns the plot has: long series are reduced to this many columns.
fn plot_columns() -> u64 {
    (PLOT_RIGHT - PLOT_LEFT) as u64
}

fn chart(h: &mut String, r: &Report, m: &KeyMetric) {
    let stats = m.series.stats();
    let (data_lo, data_hi) = stats.map_or((0.0, 1.0), |s| (s.min, s.max));
    // Anchor at zero so heights compare honestly; make room for the threshold lines, unless a
    // bound is so far above the data that drawing it would flatten the line: that one is named.
    let mut lo = data_lo.min(0.0);
    let mut hi = data_hi;
    let (mut drawn, mut above) = (Vec::new(), Vec::new());
    let bounds = m.threshold.map_or([None, None], |t| [t.warn, t.crit]);
    for (class, bound) in ["warn", "crit"].into_iter().zip(bounds) {
        let Some(bound) = bound else { continue };
        if bound > data_hi.max(0.0) * THRESHOLD_HEADROOM {
            above.push(format!("{class} {}", fmt_value(bound)));
        } else {
            lo = lo.min(bound);
            hi = hi.max(bound);
            drawn.push((class, bound));
        }
    }
    if hi <= lo {
        hi = lo + 1.0;
    }
    let scale = Scale {
        span_ms: r.session.duration_ms.max(1) as f64,
        lo,
        hi,
    };

    let _ = write!(
        h,
        "<figure class=\"chart\">\n<figcaption><span class=\"key\">{}</span>",
        Esc(m.key)
    );
    if let Some(s) = stats {
        let _ = write!(
            h,
            " <span class=\"muted\">min {} · p95 {} · max {} · last {}</span>",
            fmt_value(s.min),
            fmt_value(s.p95),
            fmt_value(s.max),
            fmt_value(s.last)
        );
    }
    if !m.why.is_empty() {
        let _ = write!(h, " <span class=\"muted\">— {}</span>", Esc(&m.why));
    }
    let _ = writeln!(
        h,
        "</figcaption>\n<svg class=\"chart\" data-metric=\"{key}\" viewBox=\"0 0 {CHART_WIDTH} \
         {CHART_HEIGHT}\" role=\"img\" aria-label=\"{key} over the session\">",
        key = Esc(m.key)
    );
    let plot_w = PLOT_RIGHT - PLOT_LEFT;
    let plot_h = PLOT_BOTTOM - PLOT_TOP;
    let _ = writeln!(
        h,
        "<rect class=\"plot\" x=\"{PLOT_LEFT}\" y=\"{PLOT_TOP}\" width=\"{plot_w}\" \
         height=\"{plot_h}\"/>"
    );
    time_axis(h, r, &scale);
    let _ = writeln!(
        h,
        "<text class=\"value-label\" x=\"{x}\" y=\"{top}\" text-anchor=\"end\">{hi}</text>\n\
         <text class=\"value-label\" x=\"{x}\" y=\"{bottom}\" text-anchor=\"end\">{lo}</text>",
        x = PLOT_LEFT - 6.0,
        top = PLOT_TOP + 5.0,
        bottom = PLOT_BOTTOM,
        hi = fmt_value(hi),
        lo = fmt_value(lo)
    );
    let phases = r.experiment.as_ref().map_or(&[][..], |x| &x.phases[..]);
    for (i, p) in phases.iter().enumerate() {
        let x = scale.x(p.at_ms);
        let _ = write!(
            h,
            "<line class=\"phase\" x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{PLOT_TOP}\" \
             y2=\"{PLOT_BOTTOM}\"/>"
        );
        // A phase that lasted a moment (injecting → observing) leaves its label to the next.
        let room = phases
            .get(i + 1)
            .map_or(f64::INFINITY, |next| scale.x(next.at_ms) - x);
        // The last one, near the right edge, is labelled on the left of its line.
        let (label_x, anchor) = if x + PHASE_LABEL_WIDTH <= PLOT_RIGHT {
            (x + 3.0, "start")
        } else {
            (x - 3.0, "end")
        };
        if room >= PHASE_LABEL_WIDTH {
            let _ = write!(
                h,
                "<text class=\"phase-label\" x=\"{label_x:.1}\" y=\"{}\" \
                 text-anchor=\"{anchor}\">{}</text>",
                PLOT_BOTTOM - 5.0,
                p.phase.label()
            );
        }
        h.push('\n');
    }
    for f in &r.faults {
        fault_span(h, r, &scale, f);
    }
    for (class, bound) in drawn {
        let y = scale.y(bound);
        let _ = writeln!(
            h,
            "<line class=\"threshold {class}\" x1=\"{PLOT_LEFT}\" x2=\"{PLOT_RIGHT}\" \
                 y1=\"{y:.1}\" y2=\"{y:.1}\"/><text class=\"threshold-label {class}\" \
                 x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{class} {}</text>",
            PLOT_RIGHT - 4.0,
            y - 4.0,
            fmt_value(bound)
        );
    }
    if !above.is_empty() {
        let _ = writeln!(
            h,
            "<text class=\"threshold-label off-chart\" x=\"{:.1}\" y=\"{}\" \
             text-anchor=\"end\">{} above the chart</text>",
            PLOT_RIGHT - 4.0,
            PLOT_TOP + 14.0,
            above.join(" · ")
        );
    }
    let path = line_path(m.series, &scale);
    if !path.is_empty() {
        let _ = writeln!(h, "<path class=\"line\" d=\"{path}\"/>");
    }
    // Drawn last: the numbered badges stay legible over the line.
    for (n, a) in r.annotations.iter().enumerate() {
        let x = scale.x(a.offset_ms);
        let _ = writeln!(
            h,
            "<g class=\"annotation\"><title>{} {}: {}</title><line class=\"{}\" x1=\"{x:.1}\" \
             x2=\"{x:.1}\" y1=\"{PLOT_TOP}\" y2=\"{PLOT_BOTTOM}\"/><circle \
             class=\"annotation-badge\" cx=\"{x:.1}\" cy=\"{}\" r=\"9\"/><text \
             class=\"annotation-label\" x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text></g>",
            a.at.format("%H:%M:%S"),
            a.kind,
            Esc(&a.text),
            a.kind,
            PLOT_TOP + 11.0,
            PLOT_TOP + 15.0,
            n + 1
        );
    }
    h.push_str("</svg>\n</figure>\n");
}

fn fault_span(h: &mut String, r: &Report, scale: &Scale, f: &FaultSummary) {
    let from_ms = f.applied_ms.unwrap_or(f.requested_ms);
    let to_ms = f.ended_ms.unwrap_or(r.session.duration_ms);
    let x = scale.x(from_ms);
    // A fault that failed at once still deserves a visible sliver.
    let width = (scale.x(to_ms) - x).max(2.0);
    let state = match f.outcome.as_str() {
        "failed" => " failed",
        "active at end" => " active",
        _ => "",
    };
    let mut tooltip = format!(
        "{} on {}: {}–{} ({}), {}",
        f.name,
        f.target,
        clock(r, from_ms).format("%H:%M:%S"),
        clock(r, to_ms).format("%H:%M:%S"),
        fmt_ms(to_ms.saturating_sub(from_ms)),
        f.outcome
    );
    if let Some(by) = &f.ended_by {
        let _ = write!(tooltip, " by {by}");
    }
    let _ = writeln!(
        h,
        "<g class=\"fault\"><title>{}</title><rect class=\"fault-span{state}\" \
         data-fault=\"{}\" x=\"{x:.1}\" y=\"{PLOT_TOP}\" width=\"{width:.1}\" \
         height=\"{}\"/><text class=\"fault-label\" x=\"{:.1}\" y=\"{}\">{}</text></g>",
        Esc(&tooltip),
        Esc(&f.id),
        PLOT_BOTTOM - PLOT_TOP,
        x + 2.0,
        PLOT_TOP - 7.0,
        Esc(&f.name)
    );
}

fn time_axis(h: &mut String, r: &Report, scale: &Scale) {
    let start = r.session.started.timestamp_millis();
    let span = r.session.duration_ms.max(1) as i64;
    let step = TICK_STEPS_MS
        .into_iter()
        .find(|step| span / step <= MAX_TICKS)
        .unwrap_or(TICK_STEPS_MS[TICK_STEPS_MS.len() - 1]);
    let format = if step < 60_000 { "%H:%M:%S" } else { "%H:%M" };
    // Ticks sit on round wall-clock times, not on round offsets.
    let mut tick = start.div_euclid(step) * step;
    if tick < start {
        tick += step;
    }
    while tick <= start + span {
        let offset = (tick - start) as u64;
        let x = scale.x(offset);
        let _ = writeln!(
            h,
            "<line class=\"tick\" x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{PLOT_TOP}\" \
             y2=\"{PLOT_BOTTOM}\"/><text class=\"time-label\" x=\"{x:.1}\" y=\"{}\" \
             text-anchor=\"middle\">{}</text>",
            PLOT_BOTTOM + 18.0,
            clock(r, offset).format(format)
        );
        tick += step;
    }
}

/// The series as an SVG path, at most two points (the lowest and the highest, in time order) per
/// pixel column so spikes and dips survive and an hour of samples stays small. A gap ends the
/// current stroke; the next value starts a new one.
fn line_path(series: &Series, scale: &Scale) -> String {
    let columns = plot_columns() as f64;
    let mut d = String::new();
    let mut stroke: Vec<(u64, f64)> = Vec::new();
    let mut column: Option<Column> = None;
    for p in series.points() {
        let value = p.value.filter(|v| v.is_finite());
        let Some(v) = value else {
            if p.value.is_none() {
                if let Some(c) = column.take() {
                    c.flush(&mut stroke);
                }
                draw_stroke(&mut d, &stroke, scale);
                stroke.clear();
            }
            continue;
        };
        let index = ((p.at_ms as f64 / scale.span_ms) * columns).floor() as u64;
        match &mut column {
            Some(c) if c.index == index => c.add(p.at_ms, v),
            _ => {
                if let Some(c) = column.take() {
                    c.flush(&mut stroke);
                }
                column = Some(Column::new(index, p.at_ms, v));
            }
        }
    }
    if let Some(c) = column.take() {
        c.flush(&mut stroke);
    }
    draw_stroke(&mut d, &stroke, scale);
    d
}

/// The extremes of the samples that fall into one pixel column.
struct Column {
    index: u64,
    low: (u64, f64),
    high: (u64, f64),
}

impl Column {
    fn new(index: u64, at_ms: u64, v: f64) -> Self {
        Column {
            index,
            low: (at_ms, v),
            high: (at_ms, v),
        }
    }

    fn add(&mut self, at_ms: u64, v: f64) {
        if v < self.low.1 {
            self.low = (at_ms, v);
        }
        if v > self.high.1 {
            self.high = (at_ms, v);
        }
    }

    fn flush(self, stroke: &mut Vec<(u64, f64)>) {
        let (first, second) = if self.low.0 <= self.high.0 {
            (self.low, self.high)
        } else {
            (self.high, self.low)
        };
        stroke.push(first);
        if second != first {
            stroke.push(second);
        }
    }
}

fn draw_stroke(d: &mut String, stroke: &[(u64, f64)], scale: &Scale) {
    let Some(&(at, v)) = stroke.first() else {
        return;
    };
    if !d.is_empty() {
        d.push(' ');
    }
    let _ = write!(d, "M{:.1},{:.1}", scale.x(at), scale.y(v));
    if stroke.len() == 1 {
        // A lone sample: a zero-length stroke with round caps draws a dot.
        d.push_str(" h0");
        return;
    }
    d.push_str(" L");
    for &(at, v) in &stroke[1..] {
        let _ = write!(d, " {:.1},{:.1}", scale.x(at), scale.y(v));
    }
}
