//! A registered dataset as the CLI and the service open it: the metadata file read once and
//! hashed, the ledger named by a path or a PostgreSQL URL, and the registration check that
//! makes the operator's registered budget — never the file at hand — the total.

use std::path::Path;

use sha2::{Digest, Sha256};
use veil_dp::ledger::postgres::PostgresLedger;
use veil_dp::ledger::{check_registered, Ledger, Registration, SqliteLedger};

use crate::error::{Result, SqlError};
use crate::metadata::{dataset_name, Metadata};

/// A ledger any thread may use.
pub type SharedLedger = Box<dyn Ledger + Send + Sync>;

/// The SHA-256 (hex) a ledger registers a metadata file under: of the file's exact bytes.
pub fn metadata_sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Reads a metadata file once: the checked metadata and the SHA-256 of the very bytes that
/// were parsed (so the file cannot change between the hash and the parse).
pub fn read_metadata(path: &Path) -> Result<(Metadata, String)> {
    let named = |m: String| SqlError::Metadata(format!("{}: {m}", path.display()));
    let bytes = std::fs::read(path).map_err(|e| named(format!("cannot read it: {e}")))?;
    let text = std::str::from_utf8(&bytes).map_err(|_| named("not UTF-8 text".into()))?;
    let meta = Metadata::from_toml(text).map_err(|e| match e {
        SqlError::Metadata(m) => named(m),
        other => other,
    })?;
    Ok((meta, metadata_sha256(&bytes)))
}

/// Whether `spec` names a PostgreSQL ledger (`postgres://…` or `postgresql://…`).
pub fn is_postgres_url(spec: &str) -> bool {
    spec.starts_with("postgres://") || spec.starts_with("postgresql://")
}

/// Opens the ledger `spec` names: a PostgreSQL URL or a SQLite file.
pub fn open_ledger(spec: &str) -> Result<SharedLedger> {
    if is_postgres_url(spec) {
        Ok(Box::new(PostgresLedger::connect(spec)?))
    } else {
        Ok(Box::new(SqliteLedger::open(spec)?))
    }
}

/// How to name a ledger to a user: never the password part of a URL.
pub fn shown_ledger(spec: &str) -> String {
    match spec.split_once('@') {
        Some((_, host)) if is_postgres_url(spec) => format!("postgres://…@{host}"),
        _ => spec.to_string(),
    }
}

/// A dataset checked against its ledger.
#[derive(Debug)]
pub struct Registered {
    /// The checked metadata.
    pub meta: Metadata,
    /// The dataset's name in the ledger (the metadata file's stem).
    pub name: String,
    /// Its registration (total budget, metadata hash).
    pub registration: Registration,
}

/// Loads the metadata at `path` and refuses (before anything can be charged) a dataset that
/// was never registered in `ledger` or metadata that is not the registered file.
pub fn registered(path: &Path, ledger: &dyn Ledger) -> Result<Registered> {
    let (meta, sha256) = read_metadata(path)?;
    let name = dataset_name(path);
    let registration = check_registered(ledger, &name, &sha256)?;
    Ok(Registered {
        meta,
        name,
        registration,
    })
}
