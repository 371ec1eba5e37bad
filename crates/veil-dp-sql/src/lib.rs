//! # veil-dp-sql: differentially private SQL
//!
//! Analysts send SQL; Veil answers with noisy aggregates whose privacy cost is charged to the
//! dataset's budget ([`veil_dp::ledger`]) before any statistic over the data is computed.
//! What makes that possible is **metadata** the data owner writes once per dataset, the same
//! file for every backend ([`metadata`]): which column identifies a person (the privacy
//! unit), how many rows one person may contribute, the bounds of each numeric column, which
//! key sets are public, and the dataset's total budget.
//!
//! The [`Engine`] parses the query with DataFusion's SQL front end, and the planner
//! ([`planner`](crate::planner)) accepts or refuses the logical plan before touching data.
//! Accepted queries are rewritten into bounded, clamped statistics plans (contribution
//! bounding, clamping, per-group aggregation), which run in the embedded DataFusion over
//! CSV/Parquet or, unparsed to SQL, on PostgreSQL; Veil then adds exact discrete Laplace
//! noise, thresholds private keys, and runs the rest of the query (`HAVING`, `ORDER BY`,
//! `LIMIT`, expressions) as post-processing on the noisy table. Every result carries its
//! ε/δ cost and a 95% confidence half-width per aggregate.
//!
//! ```no_run
//! # async fn demo() -> veil_dp_sql::Result<()> {
//! use std::path::Path;
//! use veil_dp::ledger::{Ledger, SqliteLedger};
//! use veil_dp_sql::{Engine, Metadata, QueryOptions};
//!
//! let meta = Metadata::load("data/persons.toml")?;
//! let ledger = SqliteLedger::open("data/persons.budget.db")?;
//! ledger.set_budget("persons", None, meta.budget.epsilon, meta.budget.delta)?;
//! let engine = Engine::embedded(meta, &[("persons".into(), Path::new("data/persons.csv"))]).await?;
//! let options = QueryOptions { epsilon: 1.0, delta: 1e-6, ..Default::default() };
//! let r = engine
//!     .query(&ledger, "persons", "alice", "SELECT sex, AVG(income) FROM persons GROUP BY sex", options)
//!     .await?;
//! println!("{}\nε = {}, 95% ± {:?}", r.to_table()?, r.epsilon, r.accuracy);
//! # Ok(()) }
//! ```

pub mod autobounds;
mod backend;
mod bounding;
pub mod dataset;
pub mod engine;
pub mod error;
pub mod metadata;
mod planner;
pub mod sample;

pub use autobounds::EstimatedBounds;
pub use backend::Cluster;
pub use engine::{
    explained, BoundsToEstimate, Charged, DpResult, Engine, Preview, PreviewMeasurement,
    QueryOptions,
};
pub use error::{Result, SqlError};
pub use metadata::{Accounting, Metadata, Noise};
