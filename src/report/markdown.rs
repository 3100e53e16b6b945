//! `report.md`, shaped like a chaos-experiment write-up.

use std::fmt::Write;

use super::{CheckOutcome, Report, fmt_ms};
use crate::timeline::{CheckGroup, Verdict};

fn mark(passed: bool) -> &'static str {
    if passed { "✅" } else { "❌" }
}
use crate::timeline::fmt_value;

const NOT_RUN: &str = "Not run: free-play session (no scenario).";

pub fn to_markdown(r: &Report) -> String {
    let mut md = String::new();
    let s = &r.session;
    let _ = writeln!(md, "# Game day report: {}\n", s.name);
    let _ = writeln!(md, "| | |\n|---|---|");
    let _ = writeln!(md, "| Session | {} |", s.name);
    let _ = writeln!(
        md,
        "| Started | {} |",
        s.started.format("%Y-%m-%d %H:%M:%S UTC")
    );
    let _ = writeln!(
        md,
        "| Ended | {} ({}) |",
        s.ended.format("%Y-%m-%d %H:%M:%S UTC"),
        fmt_ms(s.duration_ms)
    );
    let _ = writeln!(
        md,
        "| How it ended | {} |",
        s.end_reason
            .as_deref()
            .unwrap_or("the console was killed (no end recorded)")
    );
    let _ = writeln!(md, "| Config | `{}` |", s.config);
    if let Some(environment) = &s.environment {
        let _ = writeln!(md, "| Environment | {environment} |");
    }
    if let Some(x) = &r.experiment {
        let verdict = match x.verdict {
            Some(Verdict::Pass) => "✅ Pass".to_string(),
            Some(Verdict::Fail) => "❌ Fail".to_string(),
            Some(Verdict::Aborted) => "⚠️ Aborted".to_string(),
            None => "no verdict (the run was cut short)".to_string(),
        };
        let _ = writeln!(md, "| Scenario | `{}` |", x.file);
        let _ = writeln!(
            md,
            "| Verdict | {verdict}{} |",
            if x.reason.is_empty() {
                String::new()
            } else {
                format!(": {}", x.reason)
            }
        );
    }
    let _ = writeln!(md, "| gameday | {} |\n", s.version);

    match &r.experiment {
        Some(x) => {
            let _ = writeln!(md, "## Chaos Experiment: {}\n", x.title);
            let _ = writeln!(md, "### Hypothesis\n\n{}\n", x.hypothesis);
            if !x.description.is_empty() {
                let _ = writeln!(md, "{}\n", x.description);
            }
            let _ = writeln!(md, "### Baseline\n");
            let baseline: Vec<&CheckOutcome> = x
                .checks
                .iter()
                .filter(|c| c.group == CheckGroup::Baseline)
                .collect();
            if baseline.is_empty() {
                let _ = writeln!(md, "No steady-state checks were declared.\n");
            }
            for c in baseline {
                let _ = writeln!(
                    md,
                    "{} {} ({}, {})  ",
                    mark(c.passed),
                    c.name,
                    c.expected,
                    c.measured()
                );
            }
            let _ = writeln!(md);
        }
        None => {
            let _ = writeln!(md, "## Chaos Experiment: free-play session {}\n", s.name);
            let _ = writeln!(md, "### Hypothesis\n\n{NOT_RUN}\n");
            let _ = writeln!(md, "### Baseline\n\n{NOT_RUN}\n");
        }
    }

    let _ = writeln!(md, "### Injection\n");
    if r.faults.is_empty() {
        let _ = writeln!(md, "No faults were injected.\n");
    } else {
        for f in &r.faults {
            let when = r.session.started
                + chrono::Duration::milliseconds(f.applied_ms.unwrap_or(f.requested_ms) as i64);
            let _ = write!(md, "- **{}** on `{}`", f.name, f.target);
            if !f.detail.is_empty() {
                let _ = write!(md, " ({})", f.detail);
            }
            let _ = write!(md, " at {}", when.format("%H:%M:%S"));
            if let Some(d) = f.duration_ms {
                let _ = write!(md, " for {}", fmt_ms(d));
            }
            let _ = writeln!(
                md,
                ": {}{}",
                f.outcome,
                f.ended_by
                    .as_ref()
                    .map(|b| format!(" by {b}"))
                    .unwrap_or_default()
            );
        }
        let _ = writeln!(md);
    }

    let _ = writeln!(md, "### Results\n");
    for line in &r.results {
        let _ = writeln!(md, "{} {}  ", line.outcome.symbol(), line.text);
    }
    let _ = writeln!(md);

    let _ = writeln!(md, "### Recovery\n");
    let recovery: Vec<&CheckOutcome> = r
        .experiment
        .iter()
        .flat_map(|x| x.checks.iter())
        .filter(|c| c.group == CheckGroup::Recovery)
        .collect();
    for c in &recovery {
        match (c.passed, c.recovered_after_ms) {
            (true, Some(ms)) => {
                let _ = writeln!(
                    md,
                    "✅ {} ({}): recovered {} after the last revert  ",
                    c.name,
                    c.expected,
                    fmt_ms(ms)
                );
            }
            _ => {
                let _ = writeln!(
                    md,
                    "❌ {} ({}): did not recover{} ({})  ",
                    c.name,
                    c.expected,
                    if c.detail.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", c.detail)
                    },
                    c.measured()
                );
            }
        }
    }
    if !recovery.is_empty() {
        let _ = writeln!(md);
    }
    if r.outages.is_empty() && r.faults.is_empty() && recovery.is_empty() {
        let _ = writeln!(md, "Nothing to recover from: no outages and no faults.\n");
    } else {
        for o in &r.outages {
            match o.to_ms {
                Some(_) => {
                    let _ = writeln!(
                        md,
                        "- {} recovered after {} down ({})",
                        o.source,
                        fmt_ms(o.duration_ms),
                        o.reason
                    );
                }
                None => {
                    let _ = writeln!(
                        md,
                        "- {} did **not** recover: down for {} at the end ({})",
                        o.source,
                        fmt_ms(o.duration_ms),
                        o.reason
                    );
                }
            }
        }
        for f in &r.faults {
            if !f.metrics.is_empty() {
                let _ = writeln!(
                    md,
                    "\n**{}**: key metrics before / during / after (p95, max)\n",
                    f.name
                );
                let _ = writeln!(
                    md,
                    "| metric | before | during | after |\n|---|---|---|---|"
                );
                for m in &f.metrics {
                    let cell = |s: &Option<crate::metrics::Stats>| {
                        s.map_or("–".to_string(), |s| {
                            format!("{} / {}", fmt_value(s.p95), fmt_value(s.max))
                        })
                    };
                    let _ = writeln!(
                        md,
                        "| `{}` | {} | {} | {} |",
                        m.key,
                        cell(&m.before),
                        cell(&m.during),
                        cell(&m.after)
                    );
                }
            }
        }
        let _ = writeln!(md);
    }

    let _ = writeln!(md, "### Improvements\n");
    if r.improvements.is_empty() {
        let _ = writeln!(
            md,
            "None recorded. (Notes starting with `improve:`, `todo:` or `fix:` are listed here.)\n"
        );
    } else {
        for (i, item) in r.improvements.iter().enumerate() {
            let _ = writeln!(md, "{}. {item}", i + 1);
        }
        let _ = writeln!(md);
    }

    let _ = writeln!(md, "## Metrics\n");
    if r.metrics.is_empty() {
        let _ = writeln!(md, "No samples were recorded.\n");
    } else {
        let _ = writeln!(
            md,
            "| metric | min | p50 | p95 | max | last | time ≥ warn | time ≥ crit |\n|---|---:|---:|---:|---:|---:|---:|---:|"
        );
        for m in &r.metrics {
            let _ = writeln!(md, "| `{}` | {} |", m.key, m.cells().join(" | "));
        }
        let _ = writeln!(md);
    }

    let _ = writeln!(md, "## Outages\n");
    if r.outages.is_empty() {
        let _ = writeln!(md, "None.\n");
    } else {
        let _ = writeln!(
            md,
            "| source | down at | up at | duration | reason |\n|---|---|---|---:|---|"
        );
        for o in &r.outages {
            let at = |ms: u64| {
                (r.session.started + chrono::Duration::milliseconds(ms as i64))
                    .format("%H:%M:%S")
                    .to_string()
            };
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} |",
                o.source,
                at(o.from_ms),
                o.to_ms.map_or("still down".into(), at),
                fmt_ms(o.duration_ms),
                o.reason.replace('|', "\\|")
            );
        }
        let _ = writeln!(md);
    }

    let _ = writeln!(md, "## Marks and notes\n");
    if r.annotations.is_empty() {
        let _ = writeln!(md, "None.\n");
    } else {
        for a in &r.annotations {
            let _ = writeln!(md, "- {} {}: {}", a.at.format("%H:%M:%S"), a.kind, a.text);
        }
        let _ = writeln!(md);
    }

    let _ = writeln!(md, "## Timeline\n");
    let _ = writeln!(md, "| time (UTC) | offset | event |\n|---|---:|---|");
    for row in &r.timeline {
        let _ = writeln!(
            md,
            "| {} | +{} | {} |",
            row.at.format("%H:%M:%S%.3f"),
            fmt_ms(row.offset_ms),
            row.text.replace('|', "\\|")
        );
    }
    md
}
