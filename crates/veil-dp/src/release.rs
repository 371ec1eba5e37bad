//! Charge first, then compute.

use crate::accountant::Cost;
use crate::error::Result;
use crate::ledger::Ledger;

/// Charges `cost` (converted to (ε, δ) at `delta_for_zcdp` for zCDP costs) to the ledger and
/// only then runs `compute`, which draws the noise. If the budget cannot pay, `compute` never
/// runs and nothing is charged.
pub fn release<T>(
    ledger: &(impl Ledger + ?Sized),
    dataset: &str,
    analyst: &str,
    note: &str,
    cost: &Cost,
    delta_for_zcdp: f64,
    compute: impl FnOnce() -> Result<T>,
) -> Result<T> {
    let (epsilon, delta) = cost.to_approx(delta_for_zcdp)?;
    ledger.charge(dataset, analyst, epsilon, delta, note)?;
    compute()
}
