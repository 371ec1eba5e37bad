//! The shared budget ledger in PostgreSQL, for a service with many analysts and processes.
//!
//! Same tables and integer units as the SQLite ledger (`veil_dp_budgets`, `veil_dp_charges`,
//! `veil_dp_datasets`). A charge runs in one transaction that first takes a transaction-level
//! advisory lock on the dataset's name (`pg_advisory_xact_lock`), then reads the budgets, sums
//! what was charged, and inserts the new charge only if it fits: charges on one dataset are
//! serialized by that lock, whichever process or connection makes them, and the lock is
//! released when the transaction ends (commit, rollback or a dropped connection).
//!
//! ## Operators and analysts
//!
//! The lock needs no right on any table, so an analyst's role can be given exactly what a
//! charge needs, and nothing that sets a budget:
//!
//! ```sql
//! GRANT SELECT ON veil_dp_budgets, veil_dp_datasets TO analyst;
//! GRANT SELECT, INSERT ON veil_dp_charges TO analyst;
//! GRANT USAGE ON SEQUENCE veil_dp_charges_id_seq TO analyst;
//! ```
//!
//! Then only the operator's role (the tables' owner) can register a dataset or set a budget,
//! and an analyst who connects with their own role cannot raise a total. The tables are
//! created by the first connection of a role allowed to create them; later connections only
//! check that they exist.
//!
//! ## Async callers
//!
//! The synchronous `postgres` client runs its own small tokio runtime, so calling it from
//! inside another runtime (the DP SQL engine is async) panics ("Cannot start a runtime from
//! within a runtime"). The ledger therefore owns a dedicated thread that holds the connection
//! and runs every operation; callers, sync or async, send the operation over a channel and
//! wait for its answer. From async code that wait blocks the calling worker for one database
//! round trip, exactly like the SQLite ledger's file I/O.

use std::sync::mpsc;
use std::thread::JoinHandle;

use postgres::{Client, GenericClient, NoTls};

use super::{
    accounting_change, budget_row, charge_units, check_fits, now_secs, registration_row,
    Accounting, Charge, Ledger, Pools, Registration, Remaining, Spend, ALL, DELTA_UNIT, EPS_UNIT,
    RHO_UNIT,
};
use crate::error::{DpError, Result};

/// Any lock id will do as long as it is constant: it only serializes schema creation.
const SCHEMA_LOCK: i64 = 0x7665_696c_6470;

/// The server's own message ("permission denied for table …"), or the client error with
/// its cause: the bare `Display` of `postgres::Error` says only "db error".
fn pg(e: postgres::Error) -> DpError {
    if let Some(db) = e.as_db_error() {
        return DpError::Ledger(format!(
            "PostgreSQL: {} (SQLSTATE {})",
            db.message(),
            db.code().code()
        ));
    }
    match std::error::Error::source(&e) {
        Some(cause) => DpError::Ledger(format!("PostgreSQL: {e}: {cause}")),
        None => DpError::Ledger(format!("PostgreSQL: {e}")),
    }
}

fn stopped() -> DpError {
    DpError::Ledger("the PostgreSQL ledger's connection thread has stopped".into())
}

/// One operation for the connection thread.
type Job = Box<dyn FnOnce(&mut Client) + Send>;

/// A budget ledger in a PostgreSQL database: one connection, held by its own thread (open one
/// ledger per thread or process for parallel charges — the database serializes them per
/// dataset). Usable from synchronous and asynchronous code alike.
pub struct PostgresLedger {
    jobs: Option<mpsc::Sender<Job>>,
    worker: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for PostgresLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresLedger").finish_non_exhaustive()
    }
}

impl Drop for PostgresLedger {
    fn drop(&mut self) {
        // Closing the channel ends the thread's loop; it then closes the connection.
        drop(self.jobs.take());
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

/// Connects and makes sure the tables exist.
fn open(url: &str) -> Result<Client> {
    let mut client = Client::connect(url, NoTls).map_err(pg)?;
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('veil_dp_budgets') IS NOT NULL
                AND to_regclass('veil_dp_charges') IS NOT NULL
                AND to_regclass('veil_dp_datasets') IS NOT NULL",
            &[],
        )
        .map_err(pg)?
        .try_get(0)
        .map_err(pg)?;
    if exists {
        // An analyst's role may lack the right to create tables: do not try, unless the tables
        // predate zCDP accounting (then only their owner can add its columns).
        if has_zcdp_columns(&mut client)? {
            ensure_releases(&mut client)?;
            return Ok(client);
        }
        let mut tx = client.transaction().map_err(pg)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
            .map_err(pg)?;
        tx.batch_execute(ADD_ZCDP_COLUMNS).map_err(|e| {
            DpError::Ledger(format!(
                "the ledger's tables predate zCDP accounting and this role cannot add its \
                 columns: connect once as the tables' owner to upgrade them ({})",
                pg(e)
            ))
        })?;
        tx.commit().map_err(pg)?;
        ensure_releases(&mut client)?;
        return Ok(client);
    }
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
             ON veil_dp_charges (dataset, analyst);
         CREATE TABLE IF NOT EXISTS veil_dp_datasets (
             dataset TEXT NOT NULL PRIMARY KEY, metadata_sha256 TEXT NOT NULL,
             registered_at BIGINT NOT NULL);",
    )
    .map_err(pg)?;
    tx.batch_execute(ADD_ZCDP_COLUMNS).map_err(pg)?;
    tx.batch_execute(CREATE_RELEASES).map_err(pg)?;
    tx.commit().map_err(pg)?;
    Ok(client)
}

/// The table of released values ([`Ledger::record_release`]).
const CREATE_RELEASES: &str = "CREATE TABLE IF NOT EXISTS veil_dp_releases (
         dataset TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, at BIGINT NOT NULL,
         PRIMARY KEY (dataset, key));";

/// Creates the table of released values in a ledger made before it existed (only the
/// tables' owner can; a role that cannot is told so).
fn ensure_releases(client: &mut Client) -> Result<()> {
    let exists: bool = client
        .query_one("SELECT to_regclass('veil_dp_releases') IS NOT NULL", &[])
        .map_err(pg)?
        .try_get(0)
        .map_err(pg)?;
    if exists {
        return Ok(());
    }
    let mut tx = client.transaction().map_err(pg)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
        .map_err(pg)?;
    tx.batch_execute(CREATE_RELEASES).map_err(|e| {
        DpError::Ledger(format!(
            "the ledger's tables predate cached releases and this role cannot create their \
             table: connect once as the tables' owner to upgrade them ({})",
            pg(e)
        ))
    })?;
    tx.commit().map_err(pg)?;
    Ok(())
}

/// The columns of zCDP accounting, added to tables made before it existed.
const ADD_ZCDP_COLUMNS: &str =
    "ALTER TABLE veil_dp_budgets ADD COLUMN IF NOT EXISTS rho BIGINT NOT NULL DEFAULT 0;
     ALTER TABLE veil_dp_charges ADD COLUMN IF NOT EXISTS rho BIGINT NOT NULL DEFAULT 0;
     ALTER TABLE veil_dp_datasets ADD COLUMN IF NOT EXISTS accounting TEXT NOT NULL DEFAULT 'approx';";

/// Whether the tables have the columns of zCDP accounting (readable by any role).
fn has_zcdp_columns(client: &mut Client) -> Result<bool> {
    let n: i64 = client
        .query_one(
            "SELECT COUNT(*) FROM pg_attribute
             WHERE NOT attisdropped AND (
                 (attrelid = to_regclass('veil_dp_budgets') AND attname = 'rho')
              OR (attrelid = to_regclass('veil_dp_charges') AND attname = 'rho')
              OR (attrelid = to_regclass('veil_dp_datasets') AND attname = 'accounting'))",
            &[],
        )
        .map_err(pg)?
        .try_get(0)
        .map_err(pg)?;
    Ok(n == 3)
}

/// How `dataset`'s budget composes (approx if it was never registered).
fn accounting_in(c: &mut impl GenericClient, dataset: &str) -> Result<Accounting> {
    let row = c
        .query_opt(
            "SELECT accounting FROM veil_dp_datasets WHERE dataset = $1",
            &[&dataset],
        )
        .map_err(pg)?;
    match row {
        None => Ok(Accounting::Approx),
        Some(r) => r.try_get::<_, String>(0).map_err(pg)?.parse(),
    }
}

/// Serializes every charge and budget change on `dataset` until the transaction ends.
fn lock_dataset(c: &mut impl GenericClient, dataset: &str) -> Result<()> {
    c.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
        &[&dataset],
    )
    .map_err(pg)?;
    Ok(())
}

impl PostgresLedger {
    /// Connects (`postgres://user@host:port/db` or `host=… user=…`; no TLS: use a local or
    /// otherwise protected connection) on the ledger's own thread, and creates the tables if
    /// they do not exist yet.
    pub fn connect(url: &str) -> Result<Self> {
        let url = url.to_string();
        let (jobs, queue) = mpsc::channel::<Job>();
        let (ready, ready_rx) = mpsc::sync_channel::<Result<()>>(1);
        let worker = std::thread::Builder::new()
            .name("veil-dp-ledger".into())
            .spawn(move || {
                let mut client = match open(&url) {
                    Ok(c) => {
                        let _ = ready.send(Ok(()));
                        c
                    }
                    Err(e) => {
                        let _ = ready.send(Err(e));
                        return;
                    }
                };
                while let Ok(job) = queue.recv() {
                    // The database restarted, or the connection broke: reconnect before the
                    // job. A job that finds the database still down fails with a ledger error
                    // (nothing charged, nothing released) and the next one tries again, so
                    // the service recovers without a restart.
                    if client.is_closed() {
                        if let Ok(c) = open(&url) {
                            client = c;
                        }
                    }
                    job(&mut client);
                }
            })
            .map_err(|e| DpError::Ledger(format!("cannot start the ledger's thread: {e}")))?;
        let ledger = Self {
            jobs: Some(jobs),
            worker: Some(worker),
        };
        ready_rx.recv().map_err(|_| stopped())??;
        Ok(ledger)
    }

    /// Runs `f` with the connection on the ledger's thread and waits for its answer.
    fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |c: &mut Client| {
            let _ = tx.send(f(c));
        });
        self.jobs
            .as_ref()
            .ok_or_else(stopped)?
            .send(job)
            .map_err(|_| stopped())?;
        rx.recv().map_err(|_| stopped())?
    }

    /// What `(dataset, analyst)`'s budget allows and what it spent, `None` if it has none.
    fn remaining_in(
        c: &mut impl GenericClient,
        dataset: &str,
        analyst: &str,
    ) -> Result<Option<Pools>> {
        let Some(row) = c
            .query_opt(
                "SELECT epsilon, delta, rho FROM veil_dp_budgets WHERE dataset = $1 AND analyst = $2",
                &[&dataset, &analyst],
            )
            .map_err(pg)?
        else {
            return Ok(None);
        };
        let budget = triple(&row)?;
        let spent = if analyst == ALL {
            c.query_one(
                "SELECT COALESCE(SUM(epsilon), 0)::BIGINT, COALESCE(SUM(delta), 0)::BIGINT,
                        COALESCE(SUM(rho), 0)::BIGINT
                 FROM veil_dp_charges WHERE dataset = $1",
                &[&dataset],
            )
        } else {
            c.query_one(
                "SELECT COALESCE(SUM(epsilon), 0)::BIGINT, COALESCE(SUM(delta), 0)::BIGINT,
                        COALESCE(SUM(rho), 0)::BIGINT
                 FROM veil_dp_charges WHERE dataset = $1 AND analyst = $2",
                &[&dataset, &analyst],
            )
        }
        .map_err(pg)?;
        Ok(Some(Pools {
            budget,
            spent: triple(&spent)?,
            accounting: accounting_in(c, dataset)?,
        }))
    }
}

/// The first three columns of a row, as units.
fn triple(row: &postgres::Row) -> Result<[i64; 3]> {
    Ok([
        row.try_get(0).map_err(pg)?,
        row.try_get(1).map_err(pg)?,
        row.try_get(2).map_err(pg)?,
    ])
}

/// Inserts or replaces a budget row.
const UPSERT_BUDGET: &str =
    "INSERT INTO veil_dp_budgets (dataset, analyst, epsilon, delta, rho) VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (dataset, analyst) DO UPDATE SET epsilon = excluded.epsilon,
         delta = excluded.delta, rho = excluded.rho";

impl Ledger for PostgresLedger {
    fn set_budget(
        &self,
        dataset: &str,
        analyst: Option<&str>,
        epsilon: f64,
        delta: f64,
    ) -> Result<()> {
        // Checked here for the error; the units are computed under the lock.
        budget_row(analyst, epsilon, delta, Accounting::Approx)?;
        let (dataset, analyst) = (dataset.to_string(), analyst.map(str::to_string));
        self.call(move |c| {
            let mut tx = c.transaction().map_err(pg)?;
            lock_dataset(&mut tx, &dataset)?;
            let accounting = accounting_in(&mut tx, &dataset)?;
            let (who, [e, d, r]) = budget_row(analyst.as_deref(), epsilon, delta, accounting)?;
            tx.execute(UPSERT_BUDGET, &[&dataset, &who, &e, &d, &r])
                .map_err(pg)?;
            tx.commit().map_err(pg)
        })
    }

    fn charge_spend(
        &self,
        dataset: &str,
        analyst: &str,
        spend: Spend,
        note: &str,
    ) -> Result<Remaining> {
        let units = charge_units(analyst, spend)?;
        let (dataset, analyst, note) = (dataset.to_string(), analyst.to_string(), note.to_string());
        self.call(move |c| {
            let mut tx = c.transaction().map_err(pg)?;
            lock_dataset(&mut tx, &dataset)?;
            let total = Self::remaining_in(&mut tx, &dataset, ALL)?
                .ok_or_else(|| DpError::UnknownDataset(dataset.clone()))?;
            let own = Self::remaining_in(&mut tx, &dataset, &analyst)?;
            // A refusal drops the transaction: rolled back, nothing written.
            check_fits(
                [
                    (Some(total), String::new()),
                    (own, format!(" (analyst {analyst:?})")),
                ],
                units,
                &dataset,
                spend,
            )?;
            let at = i64::try_from(now_secs()).unwrap_or(i64::MAX);
            tx.execute(
                "INSERT INTO veil_dp_charges (dataset, analyst, epsilon, delta, rho, note, at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[
                    &dataset, &analyst, &units[0], &units[1], &units[2], &note, &at,
                ],
            )
            .map_err(pg)?;
            tx.commit().map_err(pg)?;
            Ok(total.after(units).remaining())
        })
    }

    fn remaining(&self, dataset: &str, analyst: Option<&str>) -> Result<Remaining> {
        let (dataset, who) = (dataset.to_string(), analyst.unwrap_or(ALL).to_string());
        self.call(move |c| {
            let left = Self::remaining_in(c, &dataset, &who)?
                .ok_or_else(|| DpError::UnknownDataset(dataset.clone()))?;
            Ok(left.remaining())
        })
    }

    fn history(&self, dataset: &str) -> Result<Vec<Charge>> {
        let dataset = dataset.to_string();
        self.call(move |c| {
            let rows = c
                .query(
                    "SELECT dataset, analyst, epsilon, delta, rho, note, at FROM veil_dp_charges
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
                        rho: r.try_get::<_, i64>(4).map_err(pg)? as f64 / RHO_UNIT,
                        note: r.try_get(5).map_err(pg)?,
                        at: r.try_get::<_, i64>(6).map_err(pg)?.max(0) as u64,
                    })
                })
                .collect()
        })
    }

    fn register_with(
        &self,
        dataset: &str,
        metadata_sha256: &str,
        epsilon: f64,
        delta: f64,
        accounting: Accounting,
    ) -> Result<()> {
        let (h, [e, d, r]) =
            registration_row(dataset, metadata_sha256, epsilon, delta, accounting)?;
        let dataset = dataset.to_string();
        self.call(move |c| {
            let mut tx = c.transaction().map_err(pg)?;
            lock_dataset(&mut tx, &dataset)?;
            let before = accounting_in(&mut tx, &dataset)?;
            if before != accounting {
                let in_use: i64 = tx
                    .query_one(
                        "SELECT (SELECT COUNT(*) FROM veil_dp_charges WHERE dataset = $1)
                              + (SELECT COUNT(*) FROM veil_dp_budgets
                                 WHERE dataset = $1 AND analyst <> $2)",
                        &[&dataset, &ALL],
                    )
                    .map_err(pg)?
                    .try_get(0)
                    .map_err(pg)?;
                if in_use > 0 {
                    return Err(accounting_change(&dataset, before, accounting));
                }
            }
            let at = i64::try_from(now_secs()).unwrap_or(i64::MAX);
            tx.execute(
                "INSERT INTO veil_dp_datasets (dataset, metadata_sha256, registered_at, accounting)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (dataset) DO UPDATE SET metadata_sha256 = excluded.metadata_sha256,
                     registered_at = excluded.registered_at, accounting = excluded.accounting",
                &[&dataset, &h, &at, &accounting.name()],
            )
            .map_err(pg)?;
            tx.execute(UPSERT_BUDGET, &[&dataset, &ALL, &e, &d, &r])
                .map_err(pg)?;
            tx.commit().map_err(pg)
        })
    }

    fn record_release(&self, dataset: &str, key: &str, value: &str) -> Result<()> {
        let (dataset, key, value) = (dataset.to_string(), key.to_string(), value.to_string());
        self.call(move |c| {
            c.execute(
                "INSERT INTO veil_dp_releases (dataset, key, value, at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (dataset, key) DO UPDATE SET value = excluded.value, at = excluded.at",
                &[&dataset, &key, &value, &(now_secs() as i64)],
            )
            .map_err(pg)?;
            Ok(())
        })
    }

    fn recorded_release(&self, dataset: &str, key: &str) -> Result<Option<String>> {
        let (dataset, key) = (dataset.to_string(), key.to_string());
        self.call(move |c| {
            c.query_opt(
                "SELECT value FROM veil_dp_releases WHERE dataset = $1 AND key = $2",
                &[&dataset, &key],
            )
            .map_err(pg)?
            .map(|r| r.try_get(0).map_err(pg))
            .transpose()
        })
    }

    fn registration(&self, dataset: &str) -> Result<Option<Registration>> {
        let dataset = dataset.to_string();
        self.call(move |c| {
            let Some(r) = c
                .query_opt(
                    "SELECT metadata_sha256, registered_at, accounting FROM veil_dp_datasets
                     WHERE dataset = $1",
                    &[&dataset],
                )
                .map_err(pg)?
            else {
                return Ok(None);
            };
            let accounting: Accounting = r.try_get::<_, String>(2).map_err(pg)?.parse()?;
            let (epsilon, delta) = Self::remaining_in(c, &dataset, ALL)?
                .map_or((0.0, 0.0), |p| Pools { accounting, ..p }.total());
            Ok(Some(Registration {
                metadata_sha256: r.try_get(0).map_err(pg)?,
                at: r.try_get::<_, i64>(1).map_err(pg)?.max(0) as u64,
                epsilon,
                delta,
                accounting,
                dataset,
            }))
        })
    }
}
