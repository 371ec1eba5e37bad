//! The shared budget ledger in PostgreSQL, for a service with many analysts and processes.
//!
//! Same tables and integer units as the SQLite ledger (`veil_dp_budgets`, `veil_dp_charges`).
//! A charge runs in one transaction that first locks the dataset's total-budget row
//! (`SELECT … FOR UPDATE`), then the analyst's row if there is one, sums what was charged,
//! and inserts the new charge only if it fits: charges on one dataset are serialized by the
//! row lock, whichever process or connection makes them. The lock order (total, then analyst)
//! is the same everywhere, so two charges cannot deadlock.

use std::sync::{Mutex, MutexGuard};

use postgres::{Client, GenericClient, NoTls};

use super::{
    budget_row, charge_units, check_fits, now_secs, to_remaining, Charge, Ledger, Remaining, ALL,
    DELTA_UNIT, EPS_UNIT,
};
use crate::error::{DpError, Result};

/// Any lock id will do as long as it is constant: it only serializes schema creation.
const SCHEMA_LOCK: i64 = 0x7665_696c_6470;

fn pg(e: postgres::Error) -> DpError {
    DpError::Ledger(format!("PostgreSQL: {e}"))
}

/// A budget ledger in a PostgreSQL database (one connection; open one per thread or process
/// for parallel charges — the database serializes them per dataset).
pub struct PostgresLedger {
    client: Mutex<Client>,
}

impl std::fmt::Debug for PostgresLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresLedger").finish_non_exhaustive()
    }
}

impl PostgresLedger {
    /// Connects (`postgres://user@host:port/db` or `host=… user=…`; no TLS: use a local or
    /// otherwise protected connection) and creates the tables if needed.
    pub fn connect(url: &str) -> Result<Self> {
        let mut client = Client::connect(url, NoTls).map_err(pg)?;
        let mut tx = client.transaction().map_err(pg)?;
        // Concurrent first connections would race on CREATE TABLE IF NOT EXISTS.
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
            .map_err(pg)?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS veil_dp_budgets (
                 dataset TEXT NOT NULL, analyst TEXT NOT NULL,
                 epsilon BIGINT NOT NULL, delta BIGINT NOT NULL,
                 PRIMARY KEY (dataset, analyst));
             CREATE TABLE IF NOT EXISTS veil_dp_charges (
                 id BIGSERIAL PRIMARY KEY,
                 dataset TEXT NOT NULL, analyst TEXT NOT NULL,
                 epsilon BIGINT NOT NULL, delta BIGINT NOT NULL,
                 note TEXT NOT NULL, at BIGINT NOT NULL);
             CREATE INDEX IF NOT EXISTS veil_dp_charges_by_dataset
                 ON veil_dp_charges (dataset, analyst);",
        )
        .map_err(pg)?;
        tx.commit().map_err(pg)?;
        Ok(Self {
            client: Mutex::new(client),
        })
    }

    fn client(&self) -> Result<MutexGuard<'_, Client>> {
        self.client
            .lock()
            .map_err(|_| DpError::Ledger("the connection's lock is poisoned".into()))
    }

    /// What remains of `(dataset, analyst)`'s budget, `None` if it has none; with `lock`, the
    /// budget row stays locked until the transaction ends.
    fn remaining_in(
        c: &mut impl GenericClient,
        dataset: &str,
        analyst: &str,
        lock: bool,
    ) -> Result<Option<(i64, i64)>> {
        let q = if lock {
            "SELECT epsilon, delta FROM veil_dp_budgets WHERE dataset = $1 AND analyst = $2 FOR UPDATE"
        } else {
            "SELECT epsilon, delta FROM veil_dp_budgets WHERE dataset = $1 AND analyst = $2"
        };
        let Some(row) = c.query_opt(q, &[&dataset, &analyst]).map_err(pg)? else {
            return Ok(None);
        };
        let (be, bd): (i64, i64) = (row.try_get(0).map_err(pg)?, row.try_get(1).map_err(pg)?);
        let spent = if analyst == ALL {
            c.query_one(
                "SELECT COALESCE(SUM(epsilon), 0)::BIGINT, COALESCE(SUM(delta), 0)::BIGINT
                 FROM veil_dp_charges WHERE dataset = $1",
                &[&dataset],
            )
        } else {
            c.query_one(
                "SELECT COALESCE(SUM(epsilon), 0)::BIGINT, COALESCE(SUM(delta), 0)::BIGINT
                 FROM veil_dp_charges WHERE dataset = $1 AND analyst = $2",
                &[&dataset, &analyst],
            )
        }
        .map_err(pg)?;
        let (se, sd): (i64, i64) = (spent.try_get(0).map_err(pg)?, spent.try_get(1).map_err(pg)?);
        Ok(Some((be - se, bd - sd)))
    }
}

impl Ledger for PostgresLedger {
    fn set_budget(
        &self,
        dataset: &str,
        analyst: Option<&str>,
        epsilon: f64,
        delta: f64,
    ) -> Result<()> {
        let (who, e, d) = budget_row(analyst, epsilon, delta)?;
        self.client()?
            .execute(
                "INSERT INTO veil_dp_budgets (dataset, analyst, epsilon, delta) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (dataset, analyst) DO UPDATE SET epsilon = excluded.epsilon, delta = excluded.delta",
                &[&dataset, &who, &e, &d],
            )
            .map_err(pg)?;
        Ok(())
    }

    fn charge(
        &self,
        dataset: &str,
        analyst: &str,
        epsilon: f64,
        delta: f64,
        note: &str,
    ) -> Result<Remaining> {
        let (ce, cd) = charge_units(analyst, epsilon, delta)?;
        let mut client = self.client()?;
        let mut tx = client.transaction().map_err(pg)?;
        let total = Self::remaining_in(&mut tx, dataset, ALL, true)?
            .ok_or_else(|| DpError::UnknownDataset(dataset.to_string()))?;
        let own = Self::remaining_in(&mut tx, dataset, analyst, true)?;
        // A refusal drops the transaction: rolled back, nothing written.
        check_fits(
            [
                (Some(total), String::new()),
                (own, format!(" (analyst {analyst:?})")),
            ],
            (ce, cd),
            dataset,
            (epsilon, delta),
        )?;
        let at = i64::try_from(now_secs()).unwrap_or(i64::MAX);
        tx.execute(
            "INSERT INTO veil_dp_charges (dataset, analyst, epsilon, delta, note, at)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[&dataset, &analyst, &ce, &cd, &note, &at],
        )
        .map_err(pg)?;
        tx.commit().map_err(pg)?;
        Ok(to_remaining((total.0 - ce, total.1 - cd)))
    }

    fn remaining(&self, dataset: &str, analyst: Option<&str>) -> Result<Remaining> {
        let mut client = self.client()?;
        let left = Self::remaining_in(&mut *client, dataset, analyst.unwrap_or(ALL), false)?
            .ok_or_else(|| DpError::UnknownDataset(dataset.to_string()))?;
        Ok(to_remaining(left))
    }

    fn history(&self, dataset: &str) -> Result<Vec<Charge>> {
        let rows = self
            .client()?
            .query(
                "SELECT dataset, analyst, epsilon, delta, note, at FROM veil_dp_charges
                 WHERE dataset = $1 ORDER BY id",
                &[&dataset],
            )
            .map_err(pg)?;
        rows.iter()
            .map(|r| {
                Ok(Charge {
                    dataset: r.try_get(0).map_err(pg)?,
                    analyst: r.try_get(1).map_err(pg)?,
                    epsilon: r.try_get::<_, i64>(2).map_err(pg)? as f64 / EPS_UNIT,
                    delta: r.try_get::<_, i64>(3).map_err(pg)? as f64 / DELTA_UNIT,
                    note: r.try_get(4).map_err(pg)?,
                    at: r.try_get::<_, i64>(5).map_err(pg)?.max(0) as u64,
                })
            })
            .collect()
    }
}
