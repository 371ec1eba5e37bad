//! # veil-dp: differential privacy
//!
//! Release statistics about sensitive data so that no result reveals much about any one
//! person, and never spend more privacy than the budget allows.
//!
//! - [`noise`]: exact, floating-point-safe samplers (discrete Laplace and Gaussian from
//!   OpenDP, values snapped to a `2^k` grid) — Mironov's attack on textbook floating-point
//!   Laplace noise does not apply.
//! - [`mechanisms`]: Laplace, Gaussian (zCDP), randomized response, report-noisy-max, DP
//!   quantiles — each knows its [`accountant::Cost`] before it releases anything.
//! - [`accountant`]: pure, approximate (basic and advanced composition), zCDP with conversion
//!   to (ε, δ), parallel composition.
//! - [`ledger`]: a persistent per-dataset and per-analyst budget with an atomic
//!   check-and-charge, in SQLite (embedded) or PostgreSQL (shared, feature `postgres`);
//!   [`release`] charges first and computes the noisy value only once the charge succeeded.
//!   A dataset's total is set by its operator when registering the dataset (with the
//!   SHA-256 of its metadata, [`ledger::Ledger::register`]), never taken from a file an
//!   analyst passes; [`ledger::check_registered`] refuses unregistered or changed metadata
//!   before anything is charged. The PostgreSQL ledger runs on its own thread, so it can be
//!   called from synchronous and asynchronous code alike.
//! - [`local`]: local DP for telemetry (randomized response, a frequency oracle, 1-bit means).
//! - [`testing`]: a throwaway PostgreSQL server on loopback, for the tests of ledgers and
//!   backends.
//!
//! ```no_run
//! use veil_dp::{ledger::SqliteLedger, mechanisms::LaplaceMechanism, release};
//! # fn main() -> veil_dp::Result<()> {
//! let ledger = SqliteLedger::open("budget.db")?;
//! ledger.set_budget("persons", None, 1.0, 1e-6)?;
//! let count = LaplaceMechanism::new(1.0, 0.1)?;
//! let noisy = release(&ledger, "persons", "alice", "SELECT COUNT(*)", &count.cost(), 1e-6, || {
//!     count.release_integer(1234)
//! })?;
//! # let _ = noisy; Ok(()) }
//! ```

pub mod accountant;
pub mod error;
pub mod ledger;
pub mod local;
pub mod mechanisms;
pub mod noise;
mod release;
pub mod testing;

pub use error::{DpError, Result};
pub use release::{release, spend_of};
