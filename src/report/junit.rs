//! JUnit XML, so CI shows a drill like a test run: one test suite per session, one test case
//! per scenario check plus the verdict; in free play, one per fault and per outage that never
//! recovered.

use std::fmt::Write;

use super::html::Esc;
use super::{CheckOutcome, Experiment, Report};
use crate::timeline::{CheckGroup, Verdict};

struct Case {
    classname: String,
    name: String,
    time_ms: Option<u64>,
    failure: Option<Failure>,
}

struct Failure {
    kind: &'static str,
    message: String,
    detail: String,
}

pub fn to_junit(r: &Report) -> String {
    let (suite, cases) = match &r.experiment {
        Some(x) => (x.title.clone(), scenario_cases(x)),
        None => (
            format!("free-play session {}", r.session.name),
            free_play_cases(r),
        ),
    };
    let failures = cases.iter().filter(|c| c.failure.is_some()).count();
    let tests = cases.len();
    let time = seconds(r.session.duration_ms);
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        x,
        "<testsuites name=\"gameday\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" \
         time=\"{time}\">"
    );
    let _ = writeln!(
        x,
        "  <testsuite name=\"{}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" \
         skipped=\"0\" time=\"{time}\" timestamp=\"{}\">",
        Esc(&suite),
        r.session.started.format("%Y-%m-%dT%H:%M:%S")
    );
    x.push_str("    <properties>\n");
    let mut property = |name: &str, value: &str| {
        let _ = writeln!(
            x,
            "      <property name=\"{name}\" value=\"{}\"/>",
            Esc(value)
        );
    };
    property("session", &r.session.name);
    property("config", &r.session.config);
    if let Some(e) = &r.experiment {
        property("scenario", &e.file);
    }
    property("gameday", &r.session.version);
    x.push_str("    </properties>\n");
    for c in &cases {
        let _ = write!(
            x,
            "    <testcase classname=\"{}\" name=\"{}\"",
            Esc(&c.classname),
            Esc(&c.name)
        );
        if let Some(ms) = c.time_ms {
            let _ = write!(x, " time=\"{}\"", seconds(ms));
        }
        match &c.failure {
            None => x.push_str("/>\n"),
            Some(f) => {
                let _ = write!(
                    x,
                    ">\n      <failure type=\"{}\" message=\"{}\"",
                    f.kind,
                    Esc(&f.message)
                );
                if f.detail.is_empty() {
                    x.push_str("/>");
                } else {
                    let _ = write!(x, ">{}</failure>", Esc(&f.detail));
                }
                x.push_str("\n    </testcase>\n");
            }
        }
    }
    x.push_str("  </testsuite>\n</testsuites>\n");
    x
}

fn seconds(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

fn scenario_cases(x: &Experiment) -> Vec<Case> {
    let mut cases: Vec<Case> = x.checks.iter().map(check_case).collect();
    let failure = match x.verdict {
        Some(Verdict::Pass) => None,
        Some(v) => Some(Failure {
            kind: "verdict",
            message: if x.reason.is_empty() {
                v.label().to_string()
            } else {
                format!("{}: {}", v.label(), x.reason)
            },
            detail: String::new(),
        }),
        None => Some(Failure {
            kind: "verdict",
            message: "no verdict: the run was cut short".into(),
            detail: "The timeline ends before the scenario reached a verdict (the console was \
                     killed or the session ended mid-run)."
                .into(),
        }),
    };
    cases.push(Case {
        classname: "gameday.verdict".into(),
        name: "verdict".into(),
        time_ms: None,
        failure,
    });
    cases
}

fn check_case(c: &CheckOutcome) -> Case {
    let recovered = c.group == CheckGroup::Recovery && c.passed;
    Case {
        classname: format!("gameday.{}", c.group.label()),
        name: c.name.clone(),
        time_ms: c.recovered_after_ms.filter(|_| recovered),
        failure: (!c.passed).then(|| Failure {
            kind: if c.group == CheckGroup::Abort {
                "abort"
            } else {
                "check"
            },
            message: format!("expected {}, {}", c.expected, c.measured()),
            detail: c.detail.clone(),
        }),
    }
}

fn free_play_cases(r: &Report) -> Vec<Case> {
    let mut cases = Vec::new();
    for f in &r.faults {
        let at = r.session.started
            + chrono::Duration::milliseconds(f.applied_ms.unwrap_or(f.requested_ms) as i64);
        let failure = match f.outcome.as_str() {
            "reverted" => None,
            "failed" => Some(Failure {
                kind: "fault",
                message: format!("failed: {}", f.error.as_deref().unwrap_or("unknown error")),
                detail: f.detail.clone(),
            }),
            _ => Some(Failure {
                kind: "fault",
                message: "still active when the session ended".into(),
                detail: f.detail.clone(),
            }),
        };
        cases.push(Case {
            classname: "gameday.fault".into(),
            name: format!("{} on {} at {}", f.name, f.target, at.format("%H:%M:%S")),
            time_ms: f.duration_ms,
            failure,
        });
    }
    for o in r.outages.iter().filter(|o| o.to_ms.is_none()) {
        cases.push(Case {
            classname: "gameday.outage".into(),
            name: format!("{} recovers", o.source),
            time_ms: Some(o.duration_ms),
            failure: Some(Failure {
                kind: "outage",
                message: format!(
                    "{} still down at the end after {}: {}",
                    o.source,
                    super::fmt_ms(o.duration_ms),
                    o.reason
                ),
                detail: String::new(),
            }),
        });
    }
    cases
}
