//! Dry runs: what a drill would touch, resolved exactly as an inject would resolve it —
//! containers with their ids and engine, processes with their pids and command lines, PostgreSQL
//! sessions and tables, NATS streams and consumers, proxies and the connections crossing them
//! right now — and nothing touched: no ledger entry, no daemon attached, no signal sent.
//! `gameday run SCENARIO --dry-run` prints it per step; the console's `d` key shows it for one
//! catalog fault, and the confirm popup shows it for the fault about to be injected.

use std::process::ExitCode;
use std::sync::Arc;

use crate::config::Config;
use crate::faults::{self, FaultContext, Radius};
use crate::scenario::{Scenario, StepAction};

/// The blast radius of catalog fault `index`, as lines for the screen; `Err` says why it
/// cannot be resolved (unreachable, or ambiguous).
pub async fn catalog_fault(ctx: &FaultContext, index: usize) -> Result<Vec<String>, String> {
    let Some(fault) = ctx.config.faults.get(index) else {
        return Err("no such catalog fault".into());
    };
    let radius = resolve(ctx, &fault.spec).await?;
    match radius.ambiguous {
        Some(ambiguous) => Err(format!("ambiguous: {ambiguous}")),
        None => Ok(radius.lines),
    }
}

async fn resolve(ctx: &FaultContext, spec: &faults::FaultSpec) -> Result<Radius, String> {
    faults::check_allowed(&ctx.config, spec).map_err(|e| e.to_string())?;
    let fault = faults::build("dry-run", spec);
    let redact = |text: String| ctx.config.redactor().text(&text).into_owned();
    match tokio::time::timeout(faults::engine::INJECT_DEADLINE, fault.dry_run(ctx)).await {
        Ok(Ok(radius)) => Ok(Radius {
            lines: radius.lines.into_iter().map(redact).collect(),
            ambiguous: radius.ambiguous.map(redact),
        }),
        Ok(Err(e)) => Err(redact(e.to_string())),
        Err(_) => Err(format!(
            "no answer within {}",
            faults::fmt_duration(faults::engine::INJECT_DEADLINE)
        )),
    }
}

/// `gameday run SCENARIO --dry-run`: every step's blast radius; exit 1 when a target is
/// unreachable or ambiguous.
pub fn scenario_main(config: Arc<Config>, scenario: &Scenario) -> ExitCode {
    let runtime = match crate::console::runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let lines = runtime.block_on(scenario_lines(config, scenario));
    let mut problems = 0;
    for (line, problem) in &lines {
        problems += usize::from(*problem);
        crate::console::say_out(line);
    }
    let verdict = if problems == 0 {
        "dry run: every target resolved; nothing was touched".to_string()
    } else {
        format!("dry run: {problems} target(s) unreachable or ambiguous; nothing was touched")
    };
    crate::console::say_out(&verdict);
    if problems == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The printed lines, each marked when it is a problem.
async fn scenario_lines(config: Arc<Config>, scenario: &Scenario) -> Vec<(String, bool)> {
    let ctx = FaultContext::new(config.clone(), None);
    let mut out = vec![(
        format!(
            "dry run of {} against {} ({})",
            scenario.title,
            config.file.display(),
            config.console.environment_label()
        ),
        false,
    )];
    for step in &scenario.steps {
        let StepAction::Inject {
            fault,
            catalog_index,
            lease,
        } = &step.action
        else {
            continue;
        };
        out.push((
            format!(
                "step at +{}: {fault} for {}",
                faults::fmt_duration(step.at),
                faults::fmt_duration(*lease)
            ),
            false,
        ));
        let spec = &config.faults[*catalog_index].spec;
        match resolve(&ctx, spec).await {
            Ok(radius) => {
                for line in radius.lines {
                    out.push((format!("  touches {line}"), false));
                }
                if let Some(ambiguous) = radius.ambiguous {
                    out.push((format!("  ✖ ambiguous: {ambiguous}"), true));
                }
            }
            Err(e) => out.push((format!("  ✖ unreachable: {e}"), true)),
        }
    }
    out
}
