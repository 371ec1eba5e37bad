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
//! Threat model: the analyst controls the arguments and files of a query, not the ledger's
//! tables. Whoever can write the ledger (the SQLite file, or the PostgreSQL tables with write
//! rights) is an operator: the ledger cannot tell an operator's `register` from anyone
//! else's. For a shared PostgreSQL ledger, give analysts' roles only what a charge needs
//! (see [`postgres`]).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use crate::error::{delta as check_delta, DpError, Result};

const EPS_UNIT: f64 = 1e12;
const DELTA_UNIT: f64 = 1e18;
/// The analyst name that stands for "everyone" (the dataset's total budget).
const ALL: &str = "*";

#[cfg(feature = "postgres")]
pub mod postgres;

/// A persistent privacy-budget store with an atomic check-and-charge.
pub trait Ledger {
    /// Sets the total budget of `dataset` (`analyst = None`) or one analyst's budget on it.
    fn set_budget(
        &self,
        dataset: &str,
        analyst: Option<&str>,
        epsilon: f64,
        delta: f64,
    ) -> Result<()>;
    /// Atomically checks that both the dataset's total budget and (if set) the analyst's own
    /// budget can pay `(epsilon, delta)`, and records the charge. On
    /// [`DpError::BudgetExhausted`] nothing is recorded. Returns what the dataset has left.
    fn charge(
        &self,
        dataset: &str,
        analyst: &str,
        epsilon: f64,
        delta: f64,
        note: &str,
    ) -> Result<Remaining>;
    /// What is left of the dataset's total budget (`analyst = None`) or an analyst's own.
    fn remaining(&self, dataset: &str, analyst: Option<&str>) -> Result<Remaining>;
    /// All charges on a dataset, oldest first.
    fn history(&self, dataset: &str) -> Result<Vec<Charge>>;
    /// Registers `dataset` (an operator's act): records the SHA-256 (64 hex digits) of the
    /// metadata the operator approved and sets the dataset's total budget, in one
    /// transaction. Registering again replaces both; recorded charges stay.
    fn register(
        &self,
        dataset: &str,
        metadata_sha256: &str,
        epsilon: f64,
        delta: f64,
    ) -> Result<()>;
    /// The registration of `dataset`, `None` if it was never registered.
    fn registration(&self, dataset: &str) -> Result<Option<Registration>>;
}

/// A dataset's registration: the metadata its operator approved and the total budget.
#[derive(Clone, Debug, PartialEq)]
pub struct Registration {
    /// Dataset name.
    pub dataset: String,
    /// SHA-256 of the approved metadata (64 lowercase hex digits).
    pub metadata_sha256: String,
    /// The dataset's total ε (as the ledger holds it now).
    pub epsilon: f64,
    /// The dataset's total δ.
    pub delta: f64,
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
) -> Result<(String, i64, i64)> {
    if dataset.is_empty() {
        return Err(DpError::InvalidParameter(
            "a dataset needs a non-empty name".into(),
        ));
    }
    let h = check_sha256(metadata_sha256)?;
    let (_, e, d) = budget_row(None, epsilon, delta)?;
    Ok((h, e, d))
}

/// Checks a budget to set; returns the row's analyst name and the amounts in units.
fn budget_row(analyst: Option<&str>, epsilon: f64, delta: f64) -> Result<(&str, i64, i64)> {
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
    Ok((who, eps_down(epsilon), delta_down(delta)))
}

/// Checks a charge; returns its amounts in units (rounded up).
fn charge_units(analyst: &str, epsilon: f64, delta: f64) -> Result<(i64, i64)> {
    if !(epsilon.is_finite() && epsilon >= 0.0) {
        return Err(DpError::InvalidParameter(format!(
            "ε must be finite and non-negative, got {epsilon}"
        )));
    }
    check_delta("δ", delta)?;
    if analyst == ALL {
        return Err(DpError::InvalidParameter(
            "\"*\" is not an analyst name".into(),
        ));
    }
    Ok((eps_up(epsilon), delta_up(delta)))
}

/// Refuses a charge of `units` that does not fit in one of the remaining budgets (in units).
fn check_fits(
    left: [(Option<(i64, i64)>, String); 2],
    units: (i64, i64),
    dataset: &str,
    (epsilon, delta): (f64, f64),
) -> Result<()> {
    for (limit, who) in left {
        let Some((re, rd)) = limit else { continue };
        if units.0 > re || units.1 > rd {
            let r = to_remaining((re, rd));
            return Err(DpError::BudgetExhausted {
                dataset: dataset.to_string(),
                analyst: who,
                requested_epsilon: epsilon,
                requested_delta: delta,
                remaining_epsilon: r.epsilon,
                remaining_delta: r.delta,
            });
        }
    }
    Ok(())
}

fn to_remaining((e, d): (i64, i64)) -> Remaining {
    Remaining {
        epsilon: e.max(0) as f64 / EPS_UNIT,
        delta: d.max(0) as f64 / DELTA_UNIT,
    }
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

/// What remains of a budget.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Remaining {
    /// ε left.
    pub epsilon: f64,
    /// δ left.
    pub delta: f64,
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

impl SqliteLedger {
    /// Opens (creating if needed) the ledger at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let ledger = Self {
            path: path.as_ref().to_path_buf(),
        };
        let conn = ledger.connect()?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE IF NOT EXISTS budgets (
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
                 registered_at INTEGER NOT NULL);",
        )?;
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

    /// Sets the total budget of `dataset` (`analyst = None`) or one analyst's budget on it.
    pub fn set_budget(
        &self,
        dataset: &str,
        analyst: Option<&str>,
        epsilon: f64,
        delta: f64,
    ) -> Result<()> {
        let (who, e, d) = budget_row(analyst, epsilon, delta)?;
        self.connect()?.execute(
            "INSERT INTO budgets (dataset, analyst, epsilon, delta) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (dataset, analyst) DO UPDATE SET epsilon = excluded.epsilon, delta = excluded.delta",
            params![dataset, who, e, d],
        )?;
        Ok(())
    }

    fn remaining_in(tx: &Connection, dataset: &str, analyst: &str) -> Result<Option<(i64, i64)>> {
        let budget: Option<(i64, i64)> = tx
            .query_row(
                "SELECT epsilon, delta FROM budgets WHERE dataset = ?1 AND analyst = ?2",
                params![dataset, analyst],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((be, bd)) = budget else {
            return Ok(None);
        };
        let (se, sd): (i64, i64) = if analyst == ALL {
            tx.query_row(
                "SELECT COALESCE(SUM(epsilon), 0), COALESCE(SUM(delta), 0) FROM charges WHERE dataset = ?1",
                params![dataset],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?
        } else {
            tx.query_row(
                "SELECT COALESCE(SUM(epsilon), 0), COALESCE(SUM(delta), 0) FROM charges WHERE dataset = ?1 AND analyst = ?2",
                params![dataset, analyst],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?
        };
        Ok(Some((be - se, bd - sd)))
    }

    /// Atomically checks that both the dataset's total budget and (if set) the analyst's own
    /// budget can pay `(epsilon, delta)`, and records the charge. On
    /// [`DpError::BudgetExhausted`] nothing is recorded. Returns what the dataset has left.
    pub fn charge(
        &self,
        dataset: &str,
        analyst: &str,
        epsilon: f64,
        delta: f64,
        note: &str,
    ) -> Result<Remaining> {
        let (ce, cd) = charge_units(analyst, epsilon, delta)?;
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
            (ce, cd),
            dataset,
            (epsilon, delta),
        )?;
        tx.execute(
            "INSERT INTO charges (dataset, analyst, epsilon, delta, note, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![dataset, analyst, ce, cd, note, now_secs() as i64],
        )?;
        tx.commit()?;
        Ok(to_remaining((total.0 - ce, total.1 - cd)))
    }

    /// What is left of the dataset's total budget (`analyst = None`) or an analyst's own.
    pub fn remaining(&self, dataset: &str, analyst: Option<&str>) -> Result<Remaining> {
        let conn = self.connect()?;
        let left = Self::remaining_in(&conn, dataset, analyst.unwrap_or(ALL))?
            .ok_or_else(|| DpError::UnknownDataset(dataset.to_string()))?;
        Ok(to_remaining(left))
    }

    /// Registers `dataset`: see [`Ledger::register`].
    pub fn register(
        &self,
        dataset: &str,
        metadata_sha256: &str,
        epsilon: f64,
        delta: f64,
    ) -> Result<()> {
        let (h, e, d) = registration_row(dataset, metadata_sha256, epsilon, delta)?;
        let mut conn = self.connect()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "INSERT INTO datasets (dataset, metadata_sha256, registered_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (dataset) DO UPDATE SET metadata_sha256 = excluded.metadata_sha256,
                 registered_at = excluded.registered_at",
            params![dataset, h, now_secs() as i64],
        )?;
        tx.execute(
            "INSERT INTO budgets (dataset, analyst, epsilon, delta) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (dataset, analyst) DO UPDATE SET epsilon = excluded.epsilon, delta = excluded.delta",
            params![dataset, ALL, e, d],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The registration of `dataset`: see [`Ledger::registration`].
    pub fn registration(&self, dataset: &str) -> Result<Option<Registration>> {
        let conn = self.connect()?;
        let row: Option<(String, i64, Option<i64>, Option<i64>)> = conn
            .query_row(
                "SELECT d.metadata_sha256, d.registered_at, b.epsilon, b.delta FROM datasets d
                 LEFT JOIN budgets b ON b.dataset = d.dataset AND b.analyst = ?2
                 WHERE d.dataset = ?1",
                params![dataset, ALL],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?;
        Ok(row.map(|(h, at, e, d)| Registration {
            dataset: dataset.to_string(),
            metadata_sha256: h,
            epsilon: e.unwrap_or(0) as f64 / EPS_UNIT,
            delta: d.unwrap_or(0) as f64 / DELTA_UNIT,
            at: at.max(0) as u64,
        }))
    }

    /// All charges on a dataset, oldest first.
    pub fn history(&self, dataset: &str) -> Result<Vec<Charge>> {
        let conn = self.connect()?;
        let mut stmt = conn.prepare(
            "SELECT dataset, analyst, epsilon, delta, note, at FROM charges WHERE dataset = ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map(params![dataset], |r| {
            Ok(Charge {
                dataset: r.get(0)?,
                analyst: r.get(1)?,
                epsilon: r.get::<_, i64>(2)? as f64 / EPS_UNIT,
                delta: r.get::<_, i64>(3)? as f64 / DELTA_UNIT,
                note: r.get(4)?,
                at: r.get::<_, i64>(5)?.max(0) as u64,
            })
        })?;
        Ok(rows.collect::<std::result::Result<Vec<_>, _>>()?)
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

    fn charge(
        &self,
        dataset: &str,
        analyst: &str,
        epsilon: f64,
        delta: f64,
        note: &str,
    ) -> Result<Remaining> {
        SqliteLedger::charge(self, dataset, analyst, epsilon, delta, note)
    }

    fn remaining(&self, dataset: &str, analyst: Option<&str>) -> Result<Remaining> {
        SqliteLedger::remaining(self, dataset, analyst)
    }

    fn history(&self, dataset: &str) -> Result<Vec<Charge>> {
        SqliteLedger::history(self, dataset)
    }

    fn register(
        &self,
        dataset: &str,
        metadata_sha256: &str,
        epsilon: f64,
        delta: f64,
    ) -> Result<()> {
        SqliteLedger::register(self, dataset, metadata_sha256, epsilon, delta)
    }

    fn registration(&self, dataset: &str) -> Result<Option<Registration>> {
        SqliteLedger::registration(self, dataset)
    }
}
