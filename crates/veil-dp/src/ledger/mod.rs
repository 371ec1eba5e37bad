//! The privacy-budget ledger: per dataset (and optionally per analyst), persisted, with an
//! atomic check-and-charge that runs **before** any noisy value is computed.
//!
//! [`Ledger`] is what a release needs; two stores implement it. The embedded one is a SQLite
//! file ([`SqliteLedger`]): a charge runs in a `BEGIN IMMEDIATE` transaction, so concurrent
//! charges — from threads or from separate processes sharing the file — are serialized. The
//! shared one for a multi-user service is PostgreSQL (`postgres::PostgresLedger`, feature
//! `postgres`): a charge locks the dataset's budget row (`SELECT … FOR UPDATE`) in its
//! transaction. Either way the total spent never exceeds the budget, and a rejected charge
//! writes nothing.
//!
//! Amounts are stored as integers (ε in units of 10⁻¹², δ in units of 10⁻¹⁸), charges rounded
//! up and budgets rounded down, so sums are exact: no floating-point drift can let a sequence
//! of charges slip past the budget.
//!
//! ## Who sets a dataset's total: registration
//!
//! A dataset's total budget is the **operator's** decision, recorded in the ledger, never read
//! from a file an analyst passes. [`Ledger::register`] records, in one transaction, the
//! dataset's name, the SHA-256 of the metadata the operator approved, and the total budget;
//! [`check_registered`] refuses (before any charge) a dataset that was never registered
//! ([`DpError::NotRegistered`]) or metadata whose hash differs from the registered one
//! ([`DpError::MetadataChanged`]). So copying the metadata under another name gives no fresh
//! budget (the new name is not registered), and editing the total in the file changes its
//! hash. Re-registering keeps every recorded charge: what was spent stays spent.
//!
//! ## zCDP accounting
//!
//! A dataset registered with [`Accounting::Zcdp`] is charged in ρ: its (ε, δ) becomes a ρ pool
//! (the largest ρ whose conversion at δ/2 is ε) and δ/2 to spend outright, and every charge is
//! a [`Spend`] of ρ plus the δ it spends outright. ρ is a third integer column (units of
//! 10⁻¹⁵), checked in the same transaction, so many Gaussian releases compose in √k rather than
//! k and the converted total never exceeds the registered (ε, δ). Ledgers written before this
//! gain the columns when opened (SQLite) or when their owner connects (PostgreSQL); their
//! datasets stay under approx accounting, and the accounting of a dataset in use cannot
//! change.
//!
//! Threat model: the analyst controls the arguments and files of a query, not the ledger's
//! tables. Whoever can write the ledger (the SQLite file, or the PostgreSQL tables with write
//! rights) is an operator: the ledger cannot tell an operator's `register` from anyone
//! else's. For a shared PostgreSQL ledger, give analysts' roles only what a charge needs
//! (see [`postgres`]).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use crate::accountant::{epsilon_to_zcdp, zcdp_to_epsilon};
use crate::error::{delta as check_delta, DpError, Result};

const EPS_UNIT: f64 = 1e12;
const DELTA_UNIT: f64 = 1e18;
const RHO_UNIT: f64 = 1e15;
/// The analyst name that stands for "everyone" (the dataset's total budget).
const ALL: &str = "*";

#[cfg(feature = "postgres")]
pub mod postgres;

/// How a dataset's budget composes (chosen when it is registered).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Accounting {
    /// Basic composition: ε and δ add up. Pure-DP (Laplace) releases spend only ε.
    #[default]
    Approx,
    /// zCDP: releases are charged in ρ (a Gaussian release its ρ, an ε-DP one ε²/2), ρs add
    /// up, and the total is converted to (ε, δ) for reporting. A budget (ε, δ) becomes the ρ
    /// whose conversion at δ/2 is ε, plus δ/2 for the releases that spend δ outright
    /// (τ-thresholding). Many releases cost far less than under basic composition.
    Zcdp,
}

impl Accounting {
    /// `approx` or `zcdp`.
    pub fn name(self) -> &'static str {
        match self {
            Accounting::Approx => "approx",
            Accounting::Zcdp => "zcdp",
        }
    }
}

impl std::fmt::Display for Accounting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Accounting {
    type Err = DpError;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "approx" | "approx-dp" | "basic" => Ok(Accounting::Approx),
            "zcdp" => Ok(Accounting::Zcdp),
            other => Err(DpError::InvalidParameter(format!(
                "accounting is \"approx\" or \"zcdp\", not {other:?}"
            ))),
        }
    }
}

/// What one release costs, in the ledger's three amounts: ε and δ (basic composition) and ρ
/// (zCDP). A dataset under [`Accounting::Approx`] has no ρ to spend; one under
/// [`Accounting::Zcdp`] has no ε (its ε is ρ's conversion).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Spend {
    /// ε, composed by addition.
    pub epsilon: f64,
    /// δ spent outright, composed by addition.
    pub delta: f64,
    /// ρ, composed by addition (zCDP).
    pub rho: f64,
}

impl Spend {
    /// An (ε, δ) charge.
    pub fn approx(epsilon: f64, delta: f64) -> Self {
        Self {
            epsilon,
            delta,
            rho: 0.0,
        }
    }

    /// A ρ charge, with the δ the release spends outright (e.g. thresholding).
    pub fn zcdp(rho: f64, delta: f64) -> Self {
        Self {
            epsilon: 0.0,
            delta,
            rho,
        }
    }
}

/// A persistent privacy-budget store with an atomic check-and-charge.
pub trait Ledger {
    /// Sets the total budget of `dataset` (`analyst = None`) or one analyst's budget on it, as
    /// (ε, δ); on a dataset registered with [`Accounting::Zcdp`] it is split as the dataset's
    /// total is (see [`Accounting`]).
    fn set_budget(
        &self,
        dataset: &str,
        analyst: Option<&str>,
        epsilon: f64,
        delta: f64,
    ) -> Result<()>;
    /// Atomically checks that both the dataset's total budget and (if set) the analyst's own
    /// budget can pay `spend`, and records the charge. On [`DpError::BudgetExhausted`]
    /// nothing is recorded. Returns what the dataset has left.
    fn charge_spend(
        &self,
        dataset: &str,
        analyst: &str,
        spend: Spend,
        note: &str,
    ) -> Result<Remaining>;
    /// [`Ledger::charge_spend`] of an (ε, δ) charge.
    fn charge(
        &self,
        dataset: &str,
        analyst: &str,
        epsilon: f64,
        delta: f64,
        note: &str,
    ) -> Result<Remaining> {
        self.charge_spend(dataset, analyst, Spend::approx(epsilon, delta), note)
    }
    /// What is left of the dataset's total budget (`analyst = None`) or an analyst's own.
    fn remaining(&self, dataset: &str, analyst: Option<&str>) -> Result<Remaining>;
    /// All charges on a dataset, oldest first.
    fn history(&self, dataset: &str) -> Result<Vec<Charge>>;
    /// Registers `dataset` (an operator's act): records the SHA-256 (64 hex digits) of the
    /// metadata the operator approved, how its budget composes, and its total budget
    /// (ε, δ), in one transaction. Registering again replaces all three; recorded charges
    /// stay. The accounting of a dataset that has charges or analyst budgets cannot change
    /// (what was spent under one would be forgotten by the other).
    fn register_with(
        &self,
        dataset: &str,
        metadata_sha256: &str,
        epsilon: f64,
        delta: f64,
        accounting: Accounting,
    ) -> Result<()>;
    /// [`Ledger::register_with`] under [`Accounting::Approx`].
    fn register(
        &self,
        dataset: &str,
        metadata_sha256: &str,
        epsilon: f64,
        delta: f64,
    ) -> Result<()> {
        self.register_with(dataset, metadata_sha256, epsilon, delta, Accounting::Approx)
    }
    /// The registration of `dataset`, `None` if it was never registered.
    fn registration(&self, dataset: &str) -> Result<Option<Registration>>;
    /// Keeps a value that was released with differential privacy — already charged with
    /// [`Ledger::charge_spend`] — under `key` on `dataset` (replacing any value there), so
    /// that later releases can reuse it for free: reusing a released value is
    /// post-processing. Used for DP estimates of column bounds, cached per data version.
    fn record_release(&self, dataset: &str, key: &str, value: &str) -> Result<()>;
    /// The value [`Ledger::record_release`] kept under `key` on `dataset`, if any.
    fn recorded_release(&self, dataset: &str, key: &str) -> Result<Option<String>>;
}

/// A dataset's registration: the metadata its operator approved and the total budget.
#[derive(Clone, Debug, PartialEq)]
pub struct Registration {
    /// Dataset name.
    pub dataset: String,
    /// SHA-256 of the approved metadata (64 lowercase hex digits).
    pub metadata_sha256: String,
    /// The dataset's total ε (as the ledger holds it now; under zCDP, its ρ converted).
    pub epsilon: f64,
    /// The dataset's total δ.
    pub delta: f64,
    /// How its budget composes.
    pub accounting: Accounting,
    /// Unix time in seconds of the (latest) registration.
    pub at: u64,
}

/// Checks that `dataset` is registered in `ledger` for exactly the metadata whose SHA-256 is
/// `metadata_sha256`; run it before anything is charged. Refuses with
/// [`DpError::NotRegistered`] or [`DpError::MetadataChanged`].
pub fn check_registered(
    ledger: &(impl Ledger + ?Sized),
    dataset: &str,
    metadata_sha256: &str,
) -> Result<Registration> {
    let found = check_sha256(metadata_sha256)?;
    let Some(r) = ledger.registration(dataset)? else {
        return Err(DpError::NotRegistered {
            dataset: dataset.to_string(),
        });
    };
    if r.metadata_sha256 != found {
        return Err(DpError::MetadataChanged {
            dataset: dataset.to_string(),
            registered: r.metadata_sha256,
            found,
        });
    }
    Ok(r)
}

/// Checks and normalizes (lowercase) a SHA-256 in hex.
fn check_sha256(h: &str) -> Result<String> {
    if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(h.to_ascii_lowercase())
    } else {
        Err(DpError::InvalidParameter(format!(
            "a metadata hash is a SHA-256 in hex (64 digits), not {h:?}"
        )))
    }
}

/// Checks a registration; returns the normalized hash and the budget in units.
fn registration_row(
    dataset: &str,
    metadata_sha256: &str,
    epsilon: f64,
    delta: f64,
    accounting: Accounting,
) -> Result<(String, [i64; 3])> {
    if dataset.is_empty() {
        return Err(DpError::InvalidParameter(
            "a dataset needs a non-empty name".into(),
        ));
    }
    let h = check_sha256(metadata_sha256)?;
    let (_, units) = budget_row(None, epsilon, delta, accounting)?;
    Ok((h, units))
}

/// The refusal of a registration that would change the accounting of a dataset in use.
fn accounting_change(dataset: &str, from: Accounting, to: Accounting) -> DpError {
    DpError::InvalidParameter(format!(
        "dataset {dataset:?} is registered with {from} accounting and has charges or analyst \
         budgets: its accounting cannot change to {to} (what was spent would be counted in \
         the wrong currency); register the data under a new name with its own budget"
    ))
}

/// Checks a budget to set; returns the row's analyst name and the amounts in units
/// (ε, δ, ρ), rounded down. Under zCDP, (ε, δ) becomes δ/2 to spend outright and the ρ
/// whose conversion at δ/2 is ε.
fn budget_row(
    analyst: Option<&str>,
    epsilon: f64,
    delta: f64,
    accounting: Accounting,
) -> Result<(&str, [i64; 3])> {
    if !(epsilon.is_finite() && epsilon >= 0.0) {
        return Err(DpError::InvalidParameter(format!(
            "budget ε must be finite and non-negative, got {epsilon}"
        )));
    }
    check_delta("budget δ", delta)?;
    let who = analyst.unwrap_or(ALL);
    if who == ALL && analyst.is_some() {
        return Err(DpError::InvalidParameter(
            "\"*\" is reserved for the dataset's total budget".into(),
        ));
    }
    let units = match accounting {
        Accounting::Approx => [eps_down(epsilon), delta_down(delta), 0],
        Accounting::Zcdp => {
            let rho = if epsilon == 0.0 {
                0.0
            } else if delta == 0.0 {
                return Err(DpError::InvalidParameter(
                    "under zCDP accounting a budget needs δ > 0: ρ converts to (ε, δ)-DP \
                     only with δ > 0 (a pure ε-DP budget uses approx accounting)"
                        .into(),
                ));
            } else {
                epsilon_to_zcdp(epsilon, delta / 2.0)?
            };
            [0, delta_down(delta / 2.0), rho_down(rho)]
        }
    };
    Ok((who, units))
}

/// Checks a charge; returns its amounts in units (rounded up).
fn charge_units(analyst: &str, spend: Spend) -> Result<[i64; 3]> {
    for (what, v) in [("ε", spend.epsilon), ("ρ", spend.rho)] {
        if !(v.is_finite() && v >= 0.0) {
            return Err(DpError::InvalidParameter(format!(
                "{what} must be finite and non-negative, got {v}"
            )));
        }
    }
    check_delta("δ", spend.delta)?;
    if analyst == ALL {
        return Err(DpError::InvalidParameter(
            "\"*\" is not an analyst name".into(),
        ));
    }
    Ok([
        eps_up(spend.epsilon),
        delta_up(spend.delta),
        rho_up(spend.rho),
    ])
}

/// One budget row in units: what it allows, what its charges sum to, and how it composes.
#[derive(Clone, Copy, Debug)]
struct Pools {
    budget: [i64; 3],
    spent: [i64; 3],
    accounting: Accounting,
}

impl Pools {
    fn left(&self) -> [i64; 3] {
        [0, 1, 2].map(|i| self.budget[i].saturating_sub(self.spent[i]))
    }

    /// The row after a charge of `units`.
    fn after(mut self, units: [i64; 3]) -> Self {
        for (s, u) in self.spent.iter_mut().zip(units) {
            *s = s.saturating_add(u);
        }
        self
    }

    /// The (ε, δ) a ρ in units amounts to under this row's conversion δ (its δ pool).
    fn converted(&self, rho_units: i64) -> f64 {
        if rho_units <= 0 {
            return 0.0;
        }
        zcdp_to_epsilon(
            rho_units as f64 / RHO_UNIT,
            self.budget[1] as f64 / DELTA_UNIT,
        )
        .unwrap_or(f64::INFINITY)
    }

    /// The budget as (ε, δ).
    fn total(&self) -> (f64, f64) {
        match self.accounting {
            Accounting::Approx => (
                self.budget[0] as f64 / EPS_UNIT,
                self.budget[1] as f64 / DELTA_UNIT,
            ),
            Accounting::Zcdp => (
                self.budget[0] as f64 / EPS_UNIT + self.converted(self.budget[2]),
                2.0 * self.budget[1] as f64 / DELTA_UNIT,
            ),
        }
    }

    fn remaining(&self) -> Remaining {
        let [le, ld, lr] = self.left().map(|v| v.max(0));
        let epsilon = match self.accounting {
            Accounting::Approx => le as f64 / EPS_UNIT,
            Accounting::Zcdp => (le as f64 / EPS_UNIT + self.converted(self.budget[2])
                - self.converted(self.spent[2]))
            .max(0.0),
        };
        Remaining {
            epsilon,
            delta: ld as f64 / DELTA_UNIT,
            rho: lr as f64 / RHO_UNIT,
            accounting: self.accounting,
        }
    }
}

/// Refuses a charge of `units` that does not fit in one of the budgets.
fn check_fits(
    rows: [(Option<Pools>, String); 2],
    units: [i64; 3],
    dataset: &str,
    spend: Spend,
) -> Result<()> {
    for (row, who) in rows {
        let Some(row) = row else { continue };
        let left = row.left();
        if (0..3).any(|i| units[i] > left[i]) {
            let r = row.remaining();
            return Err(DpError::BudgetExhausted {
                dataset: dataset.to_string(),
                analyst: who,
                requested_epsilon: spend.epsilon,
                requested_delta: spend.delta,
                remaining_epsilon: r.epsilon,
                remaining_delta: r.delta,
                requested_rho: spend.rho,
                remaining_rho: r.rho,
            });
        }
    }
    Ok(())
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn eps_up(e: f64) -> i64 {
    (e * EPS_UNIT).ceil() as i64
}
fn eps_down(e: f64) -> i64 {
    (e * EPS_UNIT).floor() as i64
}
fn delta_up(d: f64) -> i64 {
    (d * DELTA_UNIT).ceil() as i64
}
fn delta_down(d: f64) -> i64 {
    (d * DELTA_UNIT).floor() as i64
}
fn rho_up(r: f64) -> i64 {
    (r * RHO_UNIT).ceil() as i64
}
fn rho_down(r: f64) -> i64 {
    (r * RHO_UNIT).floor() as i64
}

/// What remains of a budget.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Remaining {
    /// ε left (under zCDP: the budget's ε less the conversion of the ρ spent, for reporting;
    /// what a release can take is `rho`).
    pub epsilon: f64,
    /// δ left to spend outright.
    pub delta: f64,
    /// ρ left (zCDP accounting; 0 otherwise).
    pub rho: f64,
    /// How the budget composes.
    pub accounting: Accounting,
}

impl Remaining {
    /// Whether `spend` fits in what is left (the ledger's charge decides, in exact units).
    pub fn can_pay(&self, spend: &Spend) -> bool {
        let epsilon_ok = match self.accounting {
            Accounting::Approx => spend.epsilon <= self.epsilon,
            Accounting::Zcdp => spend.epsilon == 0.0,
        };
        epsilon_ok && spend.delta <= self.delta && spend.rho <= self.rho
    }

    /// No limit (an analyst without a budget of their own): everything can be paid.
    pub fn unlimited(accounting: Accounting) -> Self {
        Self {
            epsilon: f64::INFINITY,
            delta: f64::INFINITY,
            rho: f64::INFINITY,
            accounting,
        }
    }
}

/// One recorded charge.
#[derive(Clone, Debug, PartialEq)]
pub struct Charge {
    /// Dataset.
    pub dataset: String,
    /// Analyst.
    pub analyst: String,
    /// ε charged.
    pub epsilon: f64,
    /// δ charged.
    pub delta: f64,
    /// ρ charged (zCDP accounting).
    pub rho: f64,
    /// What was released (e.g. the query text).
    pub note: String,
    /// Unix time in seconds.
    pub at: u64,
}

/// A budget ledger in a SQLite file.
#[derive(Clone, Debug)]
pub struct SqliteLedger {
    path: PathBuf,
}

/// Adds a column to a ledger made before it existed.
fn add_column(conn: &Connection, table: &str, column: &str, decl: &str) -> Result<()> {
    let has: i64 = conn.query_row(
        "SELECT COUNT(*) FROM pragma_table_info(?1) WHERE name = ?2",
        params![table, column],
        |r| r.get(0),
    )?;
    if has == 0 {
        conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {decl}"))?;
    }
    Ok(())
}

impl SqliteLedger {
    /// Opens (creating if needed) the ledger at `path`. A ledger written by an earlier
    /// version gains the columns of zCDP accounting (its budgets keep approx accounting).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let ledger = Self {
            path: path.as_ref().to_path_buf(),
        };
        let mut conn = ledger.connect()?;
        conn.execute_batch("PRAGMA journal_mode = WAL;")?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS budgets (
                 dataset TEXT NOT NULL, analyst TEXT NOT NULL,
                 epsilon INTEGER NOT NULL, delta INTEGER NOT NULL,
                 PRIMARY KEY (dataset, analyst));
             CREATE TABLE IF NOT EXISTS charges (
                 id INTEGER PRIMARY KEY AUTOINCREMENT,
                 dataset TEXT NOT NULL, analyst TEXT NOT NULL,
                 epsilon INTEGER NOT NULL, delta INTEGER NOT NULL,
                 note TEXT NOT NULL, at INTEGER NOT NULL);
             CREATE INDEX IF NOT EXISTS charges_by_dataset ON charges (dataset, analyst);
             CREATE TABLE IF NOT EXISTS datasets (
                 dataset TEXT NOT NULL PRIMARY KEY, metadata_sha256 TEXT NOT NULL,
                 registered_at INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS releases (
                 dataset TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
                 at INTEGER NOT NULL, PRIMARY KEY (dataset, key));",
        )?;
        add_column(&tx, "budgets", "rho", "INTEGER NOT NULL DEFAULT 0")?;
        add_column(&tx, "charges", "rho", "INTEGER NOT NULL DEFAULT 0")?;
        add_column(
            &tx,
            "datasets",
            "accounting",
            "TEXT NOT NULL DEFAULT 'approx'",
        )?;
        tx.commit()?;
        Ok(ledger)
    }

    /// The file backing the ledger.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn connect(&self) -> Result<Connection> {
        let conn = Connection::open(&self.path)?;
        conn.busy_timeout(Duration::from_secs(30))?;
        Ok(conn)
    }

    /// How `dataset`'s budget composes (approx if it was never registered).
    fn accounting_in(tx: &Connection, dataset: &str) -> Result<Accounting> {
        let a: Option<String> = tx
            .query_row(
                "SELECT accounting FROM datasets WHERE dataset = ?1",
                params![dataset],
                |r| r.get(0),
            )
            .optional()?;
        a.map_or(Ok(Accounting::Approx), |a| a.parse())
    }

    /// Sets the total budget of `dataset` (`analyst = None`) or one analyst's budget on it.
    pub fn set_budget(
        &self,
        dataset: &str,
        analyst: Option<&str>,
        epsilon: f64,
        delta: f64,
    ) -> Result<()> {
        let mut conn = self.connect()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let accounting = Self::accounting_in(&tx, dataset)?;
        let (who, [e, d, r]) = budget_row(analyst, epsilon, delta, accounting)?;
        tx.execute(
            "INSERT INTO budgets (dataset, analyst, epsilon, delta, rho) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (dataset, analyst) DO UPDATE SET epsilon = excluded.epsilon,
                 delta = excluded.delta, rho = excluded.rho",
            params![dataset, who, e, d, r],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn remaining_in(tx: &Connection, dataset: &str, analyst: &str) -> Result<Option<Pools>> {
        let budget: Option<[i64; 3]> = tx
            .query_row(
                "SELECT epsilon, delta, rho FROM budgets WHERE dataset = ?1 AND analyst = ?2",
                params![dataset, analyst],
                |r| Ok([r.get(0)?, r.get(1)?, r.get(2)?]),
            )
            .optional()?;
        let Some(budget) = budget else {
            return Ok(None);
        };
        let spent: [i64; 3] = if analyst == ALL {
            tx.query_row(
                "SELECT COALESCE(SUM(epsilon), 0), COALESCE(SUM(delta), 0), COALESCE(SUM(rho), 0)
                 FROM charges WHERE dataset = ?1",
                params![dataset],
                |r| Ok([r.get(0)?, r.get(1)?, r.get(2)?]),
            )?
        } else {
            tx.query_row(
                "SELECT COALESCE(SUM(epsilon), 0), COALESCE(SUM(delta), 0), COALESCE(SUM(rho), 0)
                 FROM charges WHERE dataset = ?1 AND analyst = ?2",
                params![dataset, analyst],
                |r| Ok([r.get(0)?, r.get(1)?, r.get(2)?]),
            )?
        };
        Ok(Some(Pools {
            budget,
            spent,
            accounting: Self::accounting_in(tx, dataset)?,
        }))
    }

    /// Atomically checks that both the dataset's total budget and (if set) the analyst's own
    /// budget can pay `spend`, and records the charge. On [`DpError::BudgetExhausted`]
    /// nothing is recorded. Returns what the dataset has left.
    pub fn charge_spend(
        &self,
        dataset: &str,
        analyst: &str,
        spend: Spend,
        note: &str,
    ) -> Result<Remaining> {
        let units = charge_units(analyst, spend)?;
        let mut conn = self.connect()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let total = Self::remaining_in(&tx, dataset, ALL)?
            .ok_or_else(|| DpError::UnknownDataset(dataset.to_string()))?;
        let own = Self::remaining_in(&tx, dataset, analyst)?;
        check_fits(
            [
                (Some(total), String::new()),
                (own, format!(" (analyst {analyst:?})")),
            ],
            units,
            dataset,
            spend,
        )?;
        tx.execute(
            "INSERT INTO charges (dataset, analyst, epsilon, delta, rho, note, at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                dataset,
                analyst,
                units[0],
                units[1],
                units[2],
                note,
                now_secs() as i64
            ],
        )?;
        tx.commit()?;
        Ok(total.after(units).remaining())
    }

    /// [`SqliteLedger::charge_spend`] of an (ε, δ) charge.
    pub fn charge(
        &self,
        dataset: &str,
        analyst: &str,
        epsilon: f64,
        delta: f64,
        note: &str,
    ) -> Result<Remaining> {
        self.charge_spend(dataset, analyst, Spend::approx(epsilon, delta), note)
    }

    /// [`SqliteLedger::register_with`] under approx accounting.
    pub fn register(
        &self,
        dataset: &str,
        metadata_sha256: &str,
        epsilon: f64,
        delta: f64,
    ) -> Result<()> {
        self.register_with(dataset, metadata_sha256, epsilon, delta, Accounting::Approx)
    }

    /// What is left of the dataset's total budget (`analyst = None`) or an analyst's own.
    pub fn remaining(&self, dataset: &str, analyst: Option<&str>) -> Result<Remaining> {
        let conn = self.connect()?;
        let left = Self::remaining_in(&conn, dataset, analyst.unwrap_or(ALL))?
            .ok_or_else(|| DpError::UnknownDataset(dataset.to_string()))?;
        Ok(left.remaining())
    }

    /// Registers `dataset`: see [`Ledger::register_with`].
    pub fn register_with(
        &self,
        dataset: &str,
        metadata_sha256: &str,
        epsilon: f64,
        delta: f64,
        accounting: Accounting,
    ) -> Result<()> {
        let (h, [e, d, r]) =
            registration_row(dataset, metadata_sha256, epsilon, delta, accounting)?;
        let mut conn = self.connect()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let before = Self::accounting_in(&tx, dataset)?;
        if before != accounting {
            let in_use: i64 = tx.query_row(
                "SELECT (SELECT COUNT(*) FROM charges WHERE dataset = ?1)
                      + (SELECT COUNT(*) FROM budgets WHERE dataset = ?1 AND analyst <> ?2)",
                params![dataset, ALL],
                |r| r.get(0),
            )?;
            if in_use > 0 {
                return Err(accounting_change(dataset, before, accounting));
            }
        }
        tx.execute(
            "INSERT INTO datasets (dataset, metadata_sha256, registered_at, accounting)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (dataset) DO UPDATE SET metadata_sha256 = excluded.metadata_sha256,
                 registered_at = excluded.registered_at, accounting = excluded.accounting",
            params![dataset, h, now_secs() as i64, accounting.name()],
        )?;
        tx.execute(
            "INSERT INTO budgets (dataset, analyst, epsilon, delta, rho) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (dataset, analyst) DO UPDATE SET epsilon = excluded.epsilon,
                 delta = excluded.delta, rho = excluded.rho",
            params![dataset, ALL, e, d, r],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The registration of `dataset`: see [`Ledger::registration`].
    pub fn registration(&self, dataset: &str) -> Result<Option<Registration>> {
        let conn = self.connect()?;
        let row: Option<(String, i64, String)> = conn
            .query_row(
                "SELECT metadata_sha256, registered_at, accounting FROM datasets WHERE dataset = ?1",
                params![dataset],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let Some((h, at, accounting)) = row else {
            return Ok(None);
        };
        let accounting = accounting.parse()?;
        let (epsilon, delta) = Self::remaining_in(&conn, dataset, ALL)?
            .map_or((0.0, 0.0), |p| Pools { accounting, ..p }.total());
        Ok(Some(Registration {
            dataset: dataset.to_string(),
            metadata_sha256: h,
            epsilon,
            delta,
            accounting,
            at: at.max(0) as u64,
        }))
    }

    /// All charges on a dataset, oldest first.
    pub fn history(&self, dataset: &str) -> Result<Vec<Charge>> {
        let conn = self.connect()?;
        let mut stmt = conn.prepare(
            "SELECT dataset, analyst, epsilon, delta, rho, note, at FROM charges
             WHERE dataset = ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map(params![dataset], |r| {
            Ok(Charge {
                dataset: r.get(0)?,
                analyst: r.get(1)?,
                epsilon: r.get::<_, i64>(2)? as f64 / EPS_UNIT,
                delta: r.get::<_, i64>(3)? as f64 / DELTA_UNIT,
                rho: r.get::<_, i64>(4)? as f64 / RHO_UNIT,
                note: r.get(5)?,
                at: r.get::<_, i64>(6)?.max(0) as u64,
            })
        })?;
        Ok(rows.collect::<std::result::Result<Vec<_>, _>>()?)
    }
}

impl SqliteLedger {
    /// Keeps a released value under `key` (see [`Ledger::record_release`]).
    pub fn record_release(&self, dataset: &str, key: &str, value: &str) -> Result<()> {
        let conn = self.connect()?;
        conn.execute(
            "INSERT INTO releases (dataset, key, value, at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (dataset, key) DO UPDATE SET value = excluded.value, at = excluded.at",
            params![dataset, key, value, now_secs() as i64],
        )?;
        Ok(())
    }

    /// The value kept under `key` (see [`Ledger::recorded_release`]).
    pub fn recorded_release(&self, dataset: &str, key: &str) -> Result<Option<String>> {
        let conn = self.connect()?;
        Ok(conn
            .query_row(
                "SELECT value FROM releases WHERE dataset = ?1 AND key = ?2",
                params![dataset, key],
                |r| r.get(0),
            )
            .optional()?)
    }
}

impl Ledger for SqliteLedger {
    fn set_budget(
        &self,
        dataset: &str,
        analyst: Option<&str>,
        epsilon: f64,
        delta: f64,
    ) -> Result<()> {
        SqliteLedger::set_budget(self, dataset, analyst, epsilon, delta)
    }

    fn charge_spend(
        &self,
        dataset: &str,
        analyst: &str,
        spend: Spend,
        note: &str,
    ) -> Result<Remaining> {
        SqliteLedger::charge_spend(self, dataset, analyst, spend, note)
    }

    fn remaining(&self, dataset: &str, analyst: Option<&str>) -> Result<Remaining> {
        SqliteLedger::remaining(self, dataset, analyst)
    }

    fn history(&self, dataset: &str) -> Result<Vec<Charge>> {
        SqliteLedger::history(self, dataset)
    }

    fn register_with(
        &self,
        dataset: &str,
        metadata_sha256: &str,
        epsilon: f64,
        delta: f64,
        accounting: Accounting,
    ) -> Result<()> {
        SqliteLedger::register_with(self, dataset, metadata_sha256, epsilon, delta, accounting)
    }

    fn registration(&self, dataset: &str) -> Result<Option<Registration>> {
        SqliteLedger::registration(self, dataset)
    }

    fn record_release(&self, dataset: &str, key: &str, value: &str) -> Result<()> {
        SqliteLedger::record_release(self, dataset, key, value)
    }

    fn recorded_release(&self, dataset: &str, key: &str) -> Result<Option<String>> {
        SqliteLedger::recorded_release(self, dataset, key)
    }
}
