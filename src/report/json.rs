//! `report.json`: the same report, for scripts and CI.

use super::Report;

pub fn to_json(report: &Report) -> String {
    let mut text = serde_json::to_string_pretty(report).expect("a report always serializes");
    text.push('\n');
    text
}
