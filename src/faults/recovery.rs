//! Reverting faults from the ledger, in a process that did not inject them: the dead-man agent
//! of a console that died or hung, a console starting after a crash, `gameday recover`, and
//! "revert everyone's". Each entry is checked against the config's declared targets before any
//! command runs, is reverted on a fresh instance that knows exactly what the inject touched,
//! and leaves the ledger only once its revert succeeded.

use super::engine::ESCALATE_DEADLINE;
use super::{FaultContext, check_revertible, from_ledger};
use crate::ledger::{Ledger, LedgerEntry};

/// Reverts one ledger entry; on success it is removed from the ledger.
pub async fn revert_entry(
    ctx: &FaultContext,
    ledger: &Ledger,
    entry: &LedgerEntry,
) -> Result<(), String> {
    check_revertible(&ctx.config, &entry.spec).map_err(|e| e.to_string())?;
    let mut fault = from_ledger(entry);
    let deadline = fault.revert_deadline() + ESCALATE_DEADLINE;
    match tokio::time::timeout(deadline, fault.revert(ctx)).await {
        Ok(Ok(())) => {
            let ledger = ledger.clone();
            let id = entry.id.clone();
            tokio::task::spawn_blocking(move || ledger.remove(&id))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("reverted, but the ledger kept it: {e}"))
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!(
            "revert did not finish within {}",
            super::fmt_duration(deadline)
        )),
    }
}

/// Reverts every entry, all at once (one stuck target must not hold up the others); one
/// result per entry, in order.
pub async fn revert_entries(
    ctx: &FaultContext,
    ledger: &Ledger,
    entries: Vec<LedgerEntry>,
) -> Vec<(LedgerEntry, Result<(), String>)> {
    let results =
        futures::future::join_all(entries.iter().map(|e| revert_entry(ctx, ledger, e))).await;
    entries.into_iter().zip(results).collect()
}

/// One line naming a ledger entry and who left it.
pub fn describe_entry(entry: &LedgerEntry) -> String {
    format!(
        "{} ({}) on {}, left by {} pid {}",
        entry.name,
        entry.id,
        entry.spec.target(),
        entry.owner.label(),
        entry.owner.pid
    )
}
