//! # veil-dp-sql: differentially private SQL
//!
//! Analysts send SQL; Veil answers with noisy aggregates whose privacy cost is charged to the
//! dataset's budget ([`veil_dp::ledger`]) before any noise is drawn. What makes that possible
//! is **metadata** the data owner writes once per dataset, the same file for every backend
//! ([`metadata`]): which column identifies a person (the privacy unit), how many rows one
//! person may contribute, the bounds of each numeric column, which key sets are public, and
//! the dataset's total budget.
//!
//! This crate holds the metadata today; the planner (DataFusion analyzer rules) and the
//! backends (embedded DataFusion over CSV/Parquet, PostgreSQL) are built on it.

pub mod error;
pub mod metadata;
pub mod sample;

pub use error::{Result, SqlError};
pub use metadata::Metadata;
