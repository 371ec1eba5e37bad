//! Charge first, then compute.

use crate::accountant::Cost;
use crate::error::{DpError, Result};
use crate::ledger::{Accounting, Ledger, Spend};

/// What `cost` spends from a budget that composes by `accounting`: under approx accounting its
/// (ε, δ) (a zCDP cost converted at `delta_for_zcdp`); under zCDP its ρ (a pure ε-DP cost is
/// ε²/2-zCDP, Bun–Steinke 2016, Prop. 1.4). An approximate (ε, δ) cost has no ρ: it is
/// refused on a zCDP budget.
pub fn spend_of(cost: &Cost, accounting: Accounting, delta_for_zcdp: f64) -> Result<Spend> {
    match (accounting, *cost) {
        (Accounting::Approx, c) => {
            let (epsilon, delta) = c.to_approx(delta_for_zcdp)?;
            Ok(Spend::approx(epsilon, delta))
        }
        (Accounting::Zcdp, Cost::Zcdp { rho }) => Ok(Spend::zcdp(rho, 0.0)),
        (Accounting::Zcdp, Cost::Pure { epsilon }) => Ok(Spend::zcdp(epsilon * epsilon / 2.0, 0.0)),
        (Accounting::Zcdp, Cost::Approx { .. }) => Err(DpError::InvalidParameter(
            "an (ε, δ)-DP release has no ρ: a dataset under zCDP accounting takes pure-DP and \
             zCDP releases only"
                .into(),
        )),
    }
}

/// Charges `cost` to the ledger — as (ε, δ), a zCDP cost converted at `delta_for_zcdp`, or in
/// ρ if the dataset's budget composes in zCDP ([`spend_of`]) — and only then runs `compute`,
/// which draws the noise. If the budget cannot pay, `compute` never runs and nothing is
/// charged.
pub fn release<T>(
    ledger: &(impl Ledger + ?Sized),
    dataset: &str,
    analyst: &str,
    note: &str,
    cost: &Cost,
    delta_for_zcdp: f64,
    compute: impl FnOnce() -> Result<T>,
) -> Result<T> {
    let accounting = ledger.remaining(dataset, None)?.accounting;
    let spend = spend_of(cost, accounting, delta_for_zcdp)?;
    ledger.charge_spend(dataset, analyst, spend, note)?;
    compute()
}
