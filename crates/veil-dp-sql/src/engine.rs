//! The DP SQL engine: plan, check, charge, bound, measure, add noise, post-process.
//!
//! 1. DataFusion's SQL front end turns the text into a logical plan; the
//!    [planner](crate::planner) accepts or rejects it — no data read, nothing charged.
//! 2. The mechanisms are built (ε split equally over the measurements) and the ledger's
//!    remaining budget is checked.
//! 3. The backend proves or enforces the contribution bound ([`crate::bounding`]), the
//!    ledger **charges** the query atomically, and only then do the bounded statistics run.
//! 4. Veil adds exact discrete Laplace noise to every statistic, drops private keys whose
//!    noisy count is under τ, fills in absent public keys, and computes each aggregate from
//!    its noisy parts.
//! 5. The analyst's plan, with its aggregation replaced by the noisy table, runs in
//!    DataFusion for `HAVING`, `ORDER BY`, `LIMIT` and expressions — post-processing, which
//!    costs no privacy.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{Array, ArrayRef, Float64Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, ScalarValue};
use datafusion::datasource::{provider_as_source, MemTable};
use datafusion::logical_expr::{col, Expr, LogicalPlan, LogicalPlanBuilder};
use datafusion::prelude::{SessionConfig, SessionContext};
use veil_dp::ledger::{Ledger, Remaining, Spend};
use veil_dp::mechanisms::{GaussianMechanism, LaplaceMechanism, ReportNoisyMax};

use crate::autobounds::{self, Bins, EstimatedBounds, Kept};
use crate::backend::{self, Backend, Registered, Version};
use crate::bounding::{self, Facts};
use crate::error::{Result, SqlError};
use crate::metadata::{Accounting, Metadata, Noise};
use crate::planner::{self, DpPlan, GroupKey, Measurement, Output};

/// How much privacy one query may spend.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QueryOptions {
    /// ε of the whole query, split equally over the noisy measurements it needs.
    pub epsilon: f64,
    /// δ, spent only by τ-thresholding of private grouping keys (0 refuses such queries).
    pub delta: f64,
    /// Groups of the `GROUP BY` one privacy unit may fall into (L0, ZetaSQL's
    /// `max_groups_contributed`); `None`: the metadata's `max_groups_per_unit`, if any.
    pub max_groups_per_unit: Option<u64>,
    /// Rows one unit may bring to one group (L∞); `None`: the metadata's
    /// `max_rows_per_group`, if any.
    pub max_rows_per_group: Option<u64>,
    /// Laplace or Gaussian noise; `None`: the metadata's `[budget] noise` (Laplace unless it
    /// says otherwise).
    pub noise: Option<Noise>,
}

impl Default for QueryOptions {
    fn default() -> Self {
        Self {
            epsilon: 1.0,
            delta: 1e-6,
            max_groups_per_unit: None,
            max_rows_per_group: None,
            noise: None,
        }
    }
}

/// `EXPLAIN <query>` asks for a dry run of the query ([`Engine::preview`]): its cost,
/// measurements, accuracy and bounds, nothing read or charged. Returns the query to preview,
/// or `None` when `sql` is not an `EXPLAIN`. `EXPLAIN ANALYZE` (which would run the query) and
/// the other options of SQL's `EXPLAIN` are refused.
pub fn explained(sql: &str) -> Result<Option<&str>> {
    let s = sql.trim_start();
    let word = |s: &str| {
        s.split(|c: char| !c.is_ascii_alphanumeric())
            .next()
            .map(str::len)
    };
    let is = |s: &str, w: &str| {
        s.len() >= w.len() && s[..w.len()].eq_ignore_ascii_case(w) && word(s) == Some(w.len())
    };
    if !is(s, "explain") {
        return Ok(None);
    }
    let rest = s["explain".len()..].trim_start();
    for option in ["analyze", "analyse", "verbose", "format"] {
        if is(rest, option) {
            return Err(SqlError::rejected(format!(
                "EXPLAIN {} is not supported: EXPLAIN <query> is a dry run (its cost, \
                 measurements and accuracy; nothing is read or charged)",
                option.to_ascii_uppercase()
            )));
        }
    }
    Ok(Some(rest))
}

/// A differentially private answer.
#[derive(Clone, Debug)]
pub struct DpResult {
    /// Output column names.
    pub columns: Vec<String>,
    /// The noisy rows (as record batches, for display and further processing).
    pub batches: Vec<RecordBatch>,
    /// The query's ε: alone, the answer is (ε, δ)-DP.
    pub epsilon: f64,
    /// The query's δ (0 unless it groups by a private key set or uses Gaussian noise).
    pub delta: f64,
    /// The noise the statistics got.
    pub noise: Noise,
    /// The query's ρ (zCDP): with Gaussian noise, the ρ its (ε, δ) converts to; with Laplace
    /// noise on a dataset under zCDP accounting, the sum of its measurements' ε²/2.
    pub rho: Option<f64>,
    /// How the dataset's budget composes.
    pub accounting: Accounting,
    /// What the ledger charged.
    pub charged: Charged,
    /// What the dataset has left after the charge (under zCDP: its ε less the conversion of
    /// the ρ spent).
    pub remaining_epsilon: f64,
    /// δ left to spend outright.
    pub remaining_delta: f64,
    /// ρ left (zCDP accounting; 0 otherwise).
    pub remaining_rho: f64,
    /// Per output column that is an aggregate: half-width of the 95% confidence interval of
    /// its noise (`None` where no closed form is known, e.g. quantiles and variances).
    pub accuracy: BTreeMap<String, Option<f64>>,
    /// The τ threshold applied to private keys, if any.
    pub threshold: Option<f64>,
    /// What the analyst should know about the guarantee of this answer (e.g. δ that could
    /// not be checked against the population because the metadata declares none).
    pub warnings: Vec<String>,
    /// Bounds this answer used that were estimated with differential privacy (columns with
    /// `auto_bounds`): made and charged for this query, or reused from the ledger. Their
    /// charges are not in [`DpResult::charged`] (each is its own ledger entry).
    pub estimated_bounds: Vec<EstimatedBounds>,
}

/// What the ledger charges for a query: under approx accounting its (ε, δ); under zCDP
/// accounting its ρ and the δ that τ-thresholding spends outright.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct Charged {
    /// ε charged (0 under zCDP accounting).
    pub epsilon: f64,
    /// δ charged.
    pub delta: f64,
    /// ρ charged (0 under approx accounting).
    pub rho: f64,
}

impl From<Spend> for Charged {
    fn from(s: Spend) -> Self {
        Self {
            epsilon: s.epsilon,
            delta: s.delta,
            rho: s.rho,
        }
    }
}

/// What a query would cost and how accurate it would be ([`Engine::preview`]): nothing read,
/// nothing charged.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Preview {
    /// The query's ε (alone, its answer would be (ε, δ)-DP).
    pub epsilon: f64,
    /// The query's δ (0 unless it groups by a private key set or uses Gaussian noise).
    pub delta: f64,
    /// The noise the statistics would get.
    pub noise: Noise,
    /// The query's ρ (zCDP): see [`DpResult::rho`].
    pub rho: Option<f64>,
    /// How the dataset's budget composes (`approx` or `zcdp`).
    #[serde(serialize_with = "accounting_name")]
    pub accounting: Accounting,
    /// What the ledger would charge: the query, plus the automatic bounds it would estimate
    /// first ([`Preview::bounds_to_estimate`]).
    pub charged: Charged,
    /// What the dataset has left now (under zCDP: its ε less the conversion of the ρ spent).
    pub remaining_epsilon: f64,
    /// δ the dataset has left now.
    pub remaining_delta: f64,
    /// ρ the dataset has left now (zCDP accounting).
    pub remaining_rho: f64,
    /// What the analyst's own budget has left now (infinite without one).
    pub analyst_remaining_epsilon: f64,
    /// δ the analyst's own budget has left now.
    pub analyst_remaining_delta: f64,
    /// ρ the analyst's own budget has left now.
    pub analyst_remaining_rho: f64,
    /// Whether both budgets could pay now.
    pub affordable: bool,
    /// Per output column that is an aggregate: the half-width of the 95% confidence interval
    /// of its noise, where it does not depend on the data (counts and sums); `None` otherwise.
    pub accuracy: BTreeMap<String, Option<f64>>,
    /// What the analyst should know about the guarantee.
    pub warnings: Vec<String>,
    /// Automatic bounds the query would reuse from the ledger (free).
    pub estimated_bounds: Vec<EstimatedBounds>,
    /// Automatic bounds the query would first estimate, each charged its own ε (included in
    /// [`Preview::charged`] and [`Preview::affordable`]); the accuracy of the columns that
    /// depend on them is unknown until then (`None`).
    pub bounds_to_estimate: Vec<BoundsToEstimate>,
    /// The noisy measurements the query takes per group, each with its share of ε.
    pub measurements: Vec<PreviewMeasurement>,
    /// How the grouping keys are released.
    pub keys: String,
    /// How far one privacy unit's rows are bounded (the sensitivities follow from it).
    pub contribution: String,
}

/// One noisy measurement of a [`Preview`].
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct PreviewMeasurement {
    /// What is measured (`rows`, `sum of income clamped to [0, 500000]`, …).
    pub what: String,
    /// The mechanism: `Laplace` or `Gaussian` (exact discrete noise) or `report noisy max`
    /// (quantiles).
    pub mechanism: String,
    /// Its share of the query's ε (with Gaussian noise: the ε of its own ρ at the query's δ,
    /// or for a quantile the pure ε whose ε²/2 is its ρ share;
    /// the query's ε is the conversion of the sum of the ρs, not the sum of these).
    pub epsilon: f64,
    /// Its share of the query's ρ (Gaussian noise only).
    pub rho: Option<f64>,
    /// How much one privacy unit can move it (its contribution bound included): L1 for
    /// Laplace and quantiles, L2 for Gaussian noise.
    pub sensitivity: f64,
    /// The noise's scale: Laplace `b` or Gaussian `σ` (none for quantiles).
    pub scale: Option<f64>,
}

/// A column whose bounds a query would estimate before it runs ([`Preview`]).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct BoundsToEstimate {
    /// The table.
    pub table: String,
    /// The column.
    pub column: String,
    /// The ε the estimate costs.
    pub epsilon: f64,
}

/// The metadata a query is planned with: automatic bounds filled in from the ledger, or
/// placeholders for those never estimated on the data's current version.
struct Resolved {
    meta: Metadata,
    known: Vec<EstimatedBounds>,
    pending: Vec<(String, String)>,
}

/// The placeholder bounds of a column awaiting its estimate: small, positive and away from
/// zero, so that every check a query passes with them it passes with real bounds too, short
/// of those on the size of derived bounds (redone once the estimate is known).
const PLACEHOLDER: (f64, f64) = (1.0, 2.0);

/// `meta` with `bounds` declared.
fn with_bounds(mut meta: Metadata, bounds: &[EstimatedBounds]) -> Metadata {
    for b in bounds {
        if let Some(t) = meta.tables.get_mut(&b.table) {
            if let Some(c) = t.columns.get_mut(&b.column) {
                c.lower = Some(b.lower);
                c.upper = Some(b.upper);
            }
        }
    }
    meta
}

fn accounting_name<S: serde::Serializer>(
    a: &Accounting,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(a.name())
}

/// A planned query that passed every check that reads no data.
struct Checked {
    plan: DpPlan,
    epsilon: f64,
    delta_spent: f64,
    noise: Noise,
    warnings: Vec<String>,
    mechanisms: Mechanisms,
}

impl Checked {
    /// What the ledger charges for the query on a budget that composes by `accounting`.
    ///
    /// Approx: the query's (ε, δ), as basic composition adds them. zCDP: its ρ — Gaussian
    /// noise is ρ-zCDP by construction; each Laplace measurement and each report-noisy-max
    /// quantile is pure (ε/n)-DP, hence (ε/n)²/2-zCDP (Bun–Steinke 2016, Prop. 1.4), n of
    /// them ε²/(2n) — plus the δ of τ-thresholding, which no ρ covers (approximate zCDP: the
    /// δs add up). The query's own conversion δ is not charged: the ledger converts the
    /// total ρ once, at the δ it set aside at registration.
    fn spend(&self, accounting: Accounting) -> Spend {
        match accounting {
            Accounting::Approx => Spend::approx(self.epsilon, self.delta_spent),
            Accounting::Zcdp => {
                let n = self.plan.measurements.len().max(1) as f64;
                let rho = self
                    .mechanisms
                    .rho
                    .unwrap_or(self.epsilon * self.epsilon / (2.0 * n));
                Spend::zcdp(rho, self.mechanisms.delta_threshold)
            }
        }
    }
}

/// The query's ρ as reported: its Gaussian ρ, or the ρ a zCDP ledger charged.
fn query_rho(mechanisms: &Mechanisms, spend: Spend) -> Option<f64> {
    mechanisms.rho.or((spend.rho > 0.0).then_some(spend.rho))
}

impl DpResult {
    /// The rows as JSON values.
    pub fn rows(&self) -> Result<Vec<Vec<serde_json::Value>>> {
        let mut out = Vec::new();
        for b in &self.batches {
            for r in 0..b.num_rows() {
                let mut row = Vec::with_capacity(b.num_columns());
                for c in b.columns() {
                    row.push(json_value(&ScalarValue::try_from_array(c, r)?));
                }
                out.push(row);
            }
        }
        Ok(out)
    }

    /// `{"columns", "rows", "epsilon", "delta", "remaining_epsilon", "remaining_delta",
    /// "accuracy"}`.
    pub fn to_json(&self) -> Result<serde_json::Value> {
        Ok(serde_json::json!({
            "columns": self.columns,
            "rows": self.rows()?,
            "epsilon": self.epsilon,
            "delta": self.delta,
            "noise": self.noise,
            "rho": self.rho,
            "accounting": self.accounting.name(),
            "charged": self.charged,
            "remaining_epsilon": self.remaining_epsilon,
            "remaining_delta": self.remaining_delta,
            "remaining_rho": self.remaining_rho,
            "accuracy": self.accuracy,
            "warnings": self.warnings,
            "estimated_bounds": self.estimated_bounds,
        }))
    }

    /// The rows as CSV (RFC 4180: a header line, fields quoted when they hold a comma, a quote
    /// or a line break; SQL NULL as an empty field).
    pub fn to_csv(&self) -> Result<String> {
        fn field(out: &mut String, text: &str) {
            if text.contains([',', '"', '\n', '\r']) {
                out.push('"');
                out.push_str(&text.replace('"', "\"\""));
                out.push('"');
            } else {
                out.push_str(text);
            }
        }
        let mut out = String::new();
        for (i, c) in self.columns.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            field(&mut out, c);
        }
        out.push_str("\r\n");
        for row in self.rows()? {
            for (i, v) in row.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                match v {
                    serde_json::Value::Null => {}
                    serde_json::Value::String(t) => field(&mut out, t),
                    other => field(&mut out, &other.to_string()),
                }
            }
            out.push_str("\r\n");
        }
        Ok(out)
    }

    /// The rows as a text table.
    pub fn to_table(&self) -> Result<String> {
        Ok(
            datafusion::arrow::util::pretty::pretty_format_batches(&self.batches)
                .map_err(|e| SqlError::Internal(e.to_string()))?
                .to_string(),
        )
    }
}

fn json_value(v: &ScalarValue) -> serde_json::Value {
    use serde_json::Value;
    if v.is_null() {
        return Value::Null;
    }
    match v {
        ScalarValue::Boolean(Some(b)) => Value::Bool(*b),
        ScalarValue::Int8(Some(x)) => Value::from(*x),
        ScalarValue::Int16(Some(x)) => Value::from(*x),
        ScalarValue::Int32(Some(x)) => Value::from(*x),
        ScalarValue::Int64(Some(x)) => Value::from(*x),
        ScalarValue::UInt8(Some(x)) => Value::from(*x),
        ScalarValue::UInt16(Some(x)) => Value::from(*x),
        ScalarValue::UInt32(Some(x)) => Value::from(*x),
        ScalarValue::UInt64(Some(x)) => Value::from(*x),
        ScalarValue::Float32(Some(x)) => Value::from(*x),
        ScalarValue::Float64(Some(x)) => Value::from(*x),
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => Value::String(s.clone()),
        other => Value::String(other.to_string()),
    }
}

/// A DP SQL engine over one dataset: its metadata, its tables, one backend.
pub struct Engine {
    /// Where queries are planned and the statistics plans execute.
    ctx: SessionContext,
    /// Where post-processing of the noisy table runs: always this process (the same context
    /// as `ctx` except on a cluster, whose planner would ship the noisy table to it).
    post: SessionContext,
    meta: Metadata,
    backend: Backend,
    tables: HashMap<String, Registered>,
    /// What was proven per table, with the data version it was proven on.
    proofs: Mutex<HashMap<String, (Version, Proof)>>,
    /// Held while automatic bounds are estimated: queries of one engine that need the same
    /// estimate wait for it instead of paying for it twice.
    estimating: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("backend", &self.backend)
            .field("tables", &self.tables.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// The session configuration every backend's context is made with (a cluster's client
/// context too: see [`Engine::cluster`]).
pub fn session_config() -> SessionConfig {
    // Identifiers are matched case-insensitively, as the metadata is.
    SessionConfig::new().with_information_schema(false)
}

/// The session state every backend's context is made from: [`session_config`], DataFusion's
/// default functions, and a runtime **without the list-files cache**. DataFusion caches a
/// table's file listing by default (forever, within a memory limit), while the engine decides
/// whether a contribution proof still holds from the files as they are now; a listing served
/// from the cache would let the proof and the statistics see different files — a partition
/// added after the proof, read once the cached listing is evicted, would escape the bound.
/// Without the cache, DataFusion lists the files at every query, as the engine does.
pub fn session_state() -> Result<datafusion::execution::SessionState> {
    use datafusion::execution::cache::cache_manager::CacheManagerConfig;
    use datafusion::execution::runtime_env::RuntimeEnvBuilder;

    let runtime = RuntimeEnvBuilder::new()
        .with_cache_manager(CacheManagerConfig::default().with_list_files_cache_limit(0))
        .build_arc()?;
    Ok(datafusion::execution::SessionStateBuilder::new()
        .with_config(session_config())
        .with_runtime_env(runtime)
        .with_default_features()
        .build())
}

fn session() -> Result<SessionContext> {
    Ok(SessionContext::new_with_state(session_state()?))
}

/// Registers every (metadata table, file or directory) pair in `ctx`, by absolute path
/// (what a cluster's executors are sent). `in_memory`: small CSV files are parsed once and
/// kept as Arrow batches (the embedded engine; a cluster's executors read the files).
async fn register_all(
    ctx: &SessionContext,
    meta: &Metadata,
    tables: &[(String, &Path)],
    in_memory: bool,
) -> Result<HashMap<String, Registered>> {
    let mut registered = HashMap::new();
    for (name, path) in tables {
        let path = std::fs::canonicalize(path).map_err(|e| SqlError::Table {
            table: name.clone(),
            message: format!("cannot read {}: {e}", path.display()),
        })?;
        let r = backend::register_file(ctx, meta, name, &path, in_memory).await?;
        let (tname, _) = meta
            .table(name)
            .ok_or_else(|| SqlError::Internal("registered an unknown table".into()))?;
        registered.insert(tname.to_string(), r);
    }
    if registered.is_empty() {
        return Err(SqlError::Table {
            table: "(none)".into(),
            message: "give at least one table (NAME=FILE or NAME=DIRECTORY)".into(),
        });
    }
    Ok(registered)
}

impl Engine {
    /// The embedded engine: DataFusion over files (`.parquet`, else CSV with a header line)
    /// or directories of partition files of one format, each registered as the metadata
    /// table it is paired with. CSV files up to 256 MiB are parsed once, here, and queried
    /// from memory; larger ones, directories and Parquet are read at every query (and their
    /// contribution proof is redone when a file changes).
    pub async fn embedded(meta: Metadata, tables: &[(String, &Path)]) -> Result<Self> {
        meta.check()?;
        let ctx = session()?;
        let registered = register_all(&ctx, &meta, tables, true).await?;
        Ok(Self {
            post: ctx.clone(),
            ctx,
            meta,
            backend: Backend::Embedded,
            tables: registered,
            proofs: Mutex::new(HashMap::new()),
            estimating: tokio::sync::Mutex::new(()),
        })
    }

    /// The engine on a cluster: `ctx` is a client context whose query planner sends physical
    /// plans to a distributed engine (`veil-dp-ballista` makes one for Apache Ballista, with
    /// [`session_config`]). Each file or directory of partitions is registered as a listing
    /// table the executors read themselves, so give paths they can reach (the same absolute
    /// paths on a machine shared with them, or a shared file system). Planning, bounding,
    /// the charge, noise and post-processing stay in this process; the cluster returns only
    /// the bounded, per-group statistics. Before a query is charged the engine checks that
    /// the scheduler answers; a statistics job that fails or outlives `cluster.timeout` fails
    /// the query with a [`SqlError::Cluster`] that says it was charged once.
    pub async fn cluster(
        meta: Metadata,
        ctx: SessionContext,
        cluster: backend::Cluster,
        tables: &[(String, &Path)],
    ) -> Result<Self> {
        meta.check()?;
        let registered = register_all(&ctx, &meta, tables, false).await?;
        Ok(Self {
            ctx,
            post: session()?,
            meta,
            backend: Backend::Cluster(cluster),
            tables: registered,
            proofs: Mutex::new(HashMap::new()),
            estimating: tokio::sync::Mutex::new(()),
        })
    }

    /// The PostgreSQL engine: every metadata table is read from the server at `url`
    /// (`postgres://user@host:port/db` or `host=… port=… user=… dbname=…`).
    pub async fn postgres(meta: Metadata, url: &str) -> Result<Self> {
        meta.check()?;
        let ctx = session()?;
        let backend = backend::connect_postgres(&ctx, &meta, url).await?;
        let tables = meta
            .tables
            .keys()
            .map(|t| {
                (
                    t.clone(),
                    Registered {
                        version: Version::Live,
                    },
                )
            })
            .collect();
        Ok(Self {
            post: ctx.clone(),
            ctx,
            meta,
            backend,
            tables,
            proofs: Mutex::new(HashMap::new()),
            estimating: tokio::sync::Mutex::new(()),
        })
    }

    /// The metadata.
    pub fn metadata(&self) -> &Metadata {
        &self.meta
    }

    /// The PostgreSQL SQL of the bounded statistics a query would run (for inspection); no
    /// data is read and nothing is charged.
    pub async fn explain_postgres(&self, sql: &str) -> Result<Vec<String>> {
        let plan = self.plan(sql).await?;
        let stats = bounding::stats_plans(&plan, &Facts::default())?;
        let mut out = vec![backend::to_postgres_sql(&stats.rows)?];
        if let Some((_, p)) = &stats.distinct_units {
            out.push(backend::to_postgres_sql(p)?);
        }
        for (_, p) in &stats.histograms {
            out.push(backend::to_postgres_sql(p)?);
        }
        Ok(out)
    }

    /// Plans and checks a query. The planner sees the plan **after** DataFusion's analyzer
    /// (type coercion): the implicit casts it adds are part of what will execute, and a cast
    /// that fails on some rows is as much an oracle as an explicit one.
    async fn plan(&self, sql: &str) -> Result<DpPlan> {
        self.plan_with(sql, &self.meta).await
    }

    /// [`Engine::plan`] with `meta` (the metadata with automatic bounds resolved).
    async fn plan_with(&self, sql: &str, meta: &Metadata) -> Result<DpPlan> {
        let state = self.ctx.state();
        let logical = state
            .create_logical_plan(sql)
            .await
            .map_err(|e| SqlError::Sql(e.to_string()))?;
        let analyzed = state
            .analyzer()
            .execute_and_check(logical, state.config_options(), |_, _| {})
            .map_err(|e| SqlError::Sql(e.to_string()))?;
        planner::plan(&analyzed, meta)
    }

    /// Answers `sql` with differential privacy: plans and checks it (a rejected query reads
    /// no data and costs nothing), charges `options` to `dataset`'s budget for `analyst`
    /// atomically, and only then runs the bounded statistics and adds noise.
    pub async fn query(
        &self,
        ledger: &(dyn Ledger + Sync),
        dataset: &str,
        analyst: &str,
        sql: &str,
        options: QueryOptions,
    ) -> Result<DpResult> {
        let resolved = self.resolve(Some(ledger), dataset)?;
        let mut checked = self.check(sql, options, &resolved.meta).await?;
        let reads = |b: &EstimatedBounds, plan: &DpPlan| {
            plan.bounds_read
                .iter()
                .any(|(t, c)| *t == b.table && *c == b.column)
        };
        let mut estimated_bounds: Vec<EstimatedBounds> = resolved
            .known
            .iter()
            .filter(|b| reads(b, &checked.plan))
            .cloned()
            .collect();
        let needed: Vec<(String, String)> = resolved
            .pending
            .iter()
            .filter(|p| checked.plan.bounds_read.contains(p))
            .cloned()
            .collect();
        if !needed.is_empty() {
            // Every check that reads no value passes first (with placeholder bounds): a query
            // refused for its shape costs nothing, not even the estimate.
            let left = ledger.remaining(dataset, None)?;
            self.pre_charge(&checked.plan).await?;
            let fresh = self
                .estimate_bounds(
                    ledger,
                    dataset,
                    analyst,
                    sql,
                    &needed,
                    checked.spend(left.accounting),
                )
                .await?;
            let meta = with_bounds(resolved.meta, &fresh);
            checked = self.check(sql, options, &meta).await.map_err(|e| match e {
                SqlError::Rejected(m) => SqlError::RejectedAfterEstimate(m),
                other => other,
            })?;
            estimated_bounds.extend(fresh.into_iter().filter(|b| reads(b, &checked.plan)));
        }
        if resolved.pending.iter().any(|p| {
            checked.plan.bounds_read.contains(p)
                && !estimated_bounds
                    .iter()
                    .any(|b| b.table == p.0 && b.column == p.1)
        }) {
            return Err(SqlError::Internal(
                "a placeholder bound reached the statistics".into(),
            ));
        }
        let left = ledger.remaining(dataset, None)?;
        let spend = checked.spend(left.accounting);
        let Checked {
            plan,
            epsilon,
            delta_spent,
            noise,
            warnings,
            mechanisms,
        } = checked;
        if !left.can_pay(&spend) {
            return Err(veil_dp::DpError::BudgetExhausted {
                dataset: dataset.to_string(),
                analyst: String::new(),
                requested_epsilon: spend.epsilon,
                requested_delta: spend.delta,
                remaining_epsilon: left.epsilon,
                remaining_delta: left.delta,
                requested_rho: spend.rho,
                remaining_rho: left.rho,
            }
            .into());
        }
        let stats = self.pre_charge(&plan).await?;
        // The charge is atomic and happens before any statistic over the data is computed.
        let remaining = ledger.charge_spend(dataset, analyst, spend, sql)?;
        let mut exact = self.run_stats(&plan, &stats).await.map_err(|e| {
            opaque_after(
                e,
                "the query was charged once, before its statistics ran; nothing was released",
            )
        })?;
        center(&plan, &mut exact)?;
        let (groups, threshold) = release(&plan, &mechanisms, exact)?;
        let (batch, accuracy_by_agg) = result_batch(&plan, &mechanisms, &groups)?;
        let final_plan = replace_aggregate(&plan, batch)?;
        let columns: Vec<String> = final_plan
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let accuracy = output_accuracy(&plan, &final_plan, &accuracy_by_agg);
        let batches = self
            .post
            .execute_logical_plan(final_plan)
            .await?
            .collect()
            .await?;
        Ok(DpResult {
            columns,
            batches,
            epsilon,
            delta: delta_spent,
            noise,
            rho: query_rho(&mechanisms, spend),
            accounting: left.accounting,
            charged: spend.into(),
            remaining_epsilon: remaining.epsilon,
            remaining_delta: remaining.delta,
            remaining_rho: remaining.rho,
            accuracy,
            threshold,
            warnings,
            estimated_bounds,
        })
    }

    /// What a query passes before its charge, reading no value the analyst could learn
    /// from: public tables' keys are unique, the contribution proof (cached per version), the
    /// statistics plans, and the backend's acceptance of them.
    async fn pre_charge(&self, plan: &DpPlan) -> Result<bounding::StatsPlans> {
        for (table, column) in &plan.public_joins {
            self.check_public_key(table, column).await?;
        }
        let facts = self
            .facts(plan)
            .await
            .map_err(|e| opaque_after(e, "nothing was charged"))?;
        let stats = bounding::stats_plans(plan, &facts)?;
        // Whatever the backend refuses to plan is refused now, before the charge.
        self.backend.check(&self.ctx, &stats.rows).await?;
        if let Some((_, p)) = &stats.distinct_units {
            self.backend.check(&self.ctx, p).await?;
        }
        for (_, p) in stats.histograms.iter().chain(&stats.distinct_values) {
            self.backend.check(&self.ctx, p).await?;
        }
        Ok(stats)
    }

    /// The metadata with automatic bounds resolved: each `auto_bounds` column of a
    /// registered table gets the estimate the ledger keeps for the table's current data
    /// version, or a placeholder (listed as pending). Without a ledger, every one is
    /// pending.
    fn resolve(&self, ledger: Option<&(dyn Ledger + Sync)>, dataset: &str) -> Result<Resolved> {
        let mut meta = self.meta.clone();
        let mut known = Vec::new();
        let mut pending = Vec::new();
        for (tname, table) in meta.tables.iter_mut() {
            let Some(registered) = self.tables.get(tname) else {
                continue;
            };
            let mut version = None;
            for (cname, column) in table.columns.iter_mut() {
                if !column.auto_bounds {
                    continue;
                }
                let version = version.get_or_insert_with(|| registered.version.current());
                let key = autobounds::ledger_key(tname, cname, &version.fingerprint());
                let kept = match ledger {
                    Some(l) => l.recorded_release(dataset, &key)?,
                    None => None,
                };
                let kept: Option<Kept> = kept
                    .map(|text| serde_json::from_str(&text))
                    .transpose()
                    .map_err(|e| {
                    SqlError::Internal(format!("the ledger's bounds of {tname}.{cname}: {e}"))
                })?;
                match kept {
                    Some(k) => {
                        column.lower = Some(k.lower);
                        column.upper = Some(k.upper);
                        known.push(EstimatedBounds {
                            table: tname.clone(),
                            column: cname.clone(),
                            lower: k.lower,
                            upper: k.upper,
                            epsilon: k.epsilon,
                            estimated_now: false,
                        });
                    }
                    None => {
                        column.lower = Some(PLACEHOLDER.0);
                        column.upper = Some(PLACEHOLDER.1);
                        pending.push((tname.clone(), cname.clone()));
                    }
                }
            }
        }
        Ok(Resolved {
            meta,
            known,
            pending,
        })
    }

    /// What one automatic bounds estimate is charged on a budget that composes by
    /// `accounting`: ε, or under zCDP the ε²/2 of a pure ε-DP release.
    fn estimate_spend(&self, accounting: Accounting) -> Spend {
        let e = self.meta.budget.auto_bounds_epsilon();
        match accounting {
            Accounting::Approx => Spend::approx(e, 0.0),
            Accounting::Zcdp => Spend::zcdp(e * e / 2.0, 0.0),
        }
    }

    /// Estimates the bounds of `needed` (table, column) pairs ([`crate::autobounds`]): the
    /// budget must pay for every estimate **and** the query (`then`) now, or nothing is
    /// charged; each estimate is charged on its own before its histogram is computed, and
    /// kept in the ledger under the data's version.
    async fn estimate_bounds(
        &self,
        ledger: &(dyn Ledger + Sync),
        dataset: &str,
        analyst: &str,
        sql: &str,
        needed: &[(String, String)],
        then: Spend,
    ) -> Result<Vec<EstimatedBounds>> {
        let _one_at_a_time = self.estimating.lock().await;
        let epsilon = self.meta.budget.auto_bounds_epsilon();
        let left = ledger.remaining(dataset, None)?;
        let each = self.estimate_spend(left.accounting);
        let n = needed.len() as f64;
        let total = Spend {
            epsilon: each.epsilon * n + then.epsilon,
            delta: then.delta,
            rho: each.rho * n + then.rho,
        };
        // The analyst's own budget too: an estimate it could pay for, followed by a query it
        // could not, would spend the analyst's budget on bounds alone.
        let own = match ledger.remaining(dataset, Some(analyst)) {
            Err(veil_dp::DpError::UnknownDataset(_)) => Remaining::unlimited(left.accounting),
            other => other?,
        };
        for (budget, who) in [
            (left, String::new()),
            (own, format!(" (analyst {analyst:?})")),
        ] {
            if !budget.can_pay(&total) {
                return Err(veil_dp::DpError::BudgetExhausted {
                    dataset: dataset.to_string(),
                    analyst: who,
                    requested_epsilon: total.epsilon,
                    requested_delta: total.delta,
                    remaining_epsilon: budget.epsilon,
                    remaining_delta: budget.delta,
                    requested_rho: total.rho,
                    remaining_rho: budget.rho,
                }
                .into());
            }
        }
        let mut out = Vec::new();
        for (table, column) in needed {
            let version = self
                .tables
                .get(table)
                .map(|r| r.version.current())
                .unwrap_or(Version::Live);
            let key = autobounds::ledger_key(table, column, &version.fingerprint());
            // Another query of this process may have made it while this one waited.
            if let Some(text) = ledger.recorded_release(dataset, &key)? {
                let k: Kept = serde_json::from_str(&text).map_err(|e| {
                    SqlError::Internal(format!("the ledger's bounds of {table}.{column}: {e}"))
                })?;
                out.push(EstimatedBounds {
                    table: table.clone(),
                    column: column.clone(),
                    lower: k.lower,
                    upper: k.upper,
                    epsilon: k.epsilon,
                    estimated_now: false,
                });
                continue;
            }
            let (plan, bins) = self.estimation_plan(table, column).await?;
            let stats = self.pre_charge(&plan).await?;
            ledger.charge_spend(
                dataset,
                analyst,
                each,
                &format!("automatic bounds of {table}.{column}, for: {sql}"),
            )?;
            let exact = self.run_stats(&plan, &stats).await.map_err(|e| {
                opaque_after(
                    e,
                    "the bounds estimate was charged once, before its histogram ran; nothing was \
                     released",
                )
            })?;
            let mechanism =
                LaplaceMechanism::for_vector(plan.bound as f64, epsilon, bins.count() as u64)?;
            let mut noisy = Vec::with_capacity(bins.count());
            for j in bins.all() {
                let count = exact
                    .groups
                    .get(&vec![ScalarValue::Int64(Some(j))])
                    .and_then(|v| v.first().copied())
                    .unwrap_or(0.0);
                noisy.push((j, mechanism.release(count)?));
            }
            let tau = autobounds::threshold(mechanism.scale(), bins.count());
            let (lower, upper) = autobounds::choose(&bins, &noisy, tau);
            let kept = Kept {
                lower,
                upper,
                epsilon,
            };
            let text = serde_json::to_string(&kept)
                .map_err(|e| SqlError::Internal(format!("bounds as JSON: {e}")))?;
            ledger.record_release(dataset, &key, &text)?;
            out.push(EstimatedBounds {
                table: table.clone(),
                column: column.clone(),
                lower,
                upper,
                epsilon,
                estimated_now: true,
            });
        }
        Ok(out)
    }

    /// The plan of one estimate's histogram: the table's rows with the column not NULL,
    /// grouped by the column's power-of-two bin, counted — contributions bounded as any
    /// query's (the same proof, or the same down-weighting) — with the bins as a public key
    /// set (every bin gets noise, present or not).
    async fn estimation_plan(&self, table: &str, column: &str) -> Result<(DpPlan, Bins)> {
        let (tname, t) = self
            .meta
            .table(table)
            .ok_or_else(|| SqlError::Internal(format!("no metadata for {table}")))?;
        let (cname, c) = t
            .column(column)
            .ok_or_else(|| SqlError::Internal(format!("no column {column} in {table}")))?;
        let sql = format!("SELECT COUNT(*) FROM \"{}\"", tname.replace('"', "\"\""));
        let mut plan = self.plan_with(&sql, &self.meta).await?;
        let input = plan.aggregate.input.as_ref().clone();
        let x = input
            .schema()
            .columns()
            .into_iter()
            .find(|c| c.name.eq_ignore_ascii_case(cname))
            .ok_or_else(|| SqlError::Internal(format!("no column {cname} in {tname}")))?;
        let bins = Bins::of(c.kind);
        let filtered = LogicalPlanBuilder::from(input)
            .filter(Expr::Column(x.clone()).is_not_null())?
            .build()?;
        plan.aggregate.input = Arc::new(filtered);
        plan.groups = vec![GroupKey {
            expr: bins.expr(Expr::Column(x))?,
            public: Some(Vec::new()),
        }];
        plan.measurements = vec![Measurement::Rows];
        plan.outputs = vec![Output::Count(0)];
        plan.threshold_count = None;
        plan.max_groups = None;
        plan.max_per_group = None;
        plan.public_joins = Vec::new();
        plan.bounds_read = Vec::new();
        Ok((plan, bins))
    }

    /// **Testing only** (feature `testing`): the exact, noise-free statistics `sql` would
    /// release with noise — every group's key and measurements (after contribution bounding
    /// and clamping), then every quantile histogram — sorted, as text. Nothing is charged and
    /// no noise is added: this bypasses differential privacy and exists so that tests can
    /// check two backends compute the same statistics. Never enable the feature in a build
    /// that serves analysts.
    #[cfg(feature = "testing")]
    pub async fn exact_statistics(
        &self,
        sql: &str,
        options: QueryOptions,
    ) -> Result<Vec<(String, Vec<f64>)>> {
        let checked = self.check(sql, options, &self.meta).await?;
        let plan = checked.plan;
        for (table, column) in &plan.public_joins {
            self.check_public_key(table, column).await?;
        }
        let facts = self.facts(&plan).await?;
        let stats = bounding::stats_plans(&plan, &facts)?;
        let mut exact = self.run_stats(&plan, &stats).await?;
        center(&plan, &mut exact)?;
        let key = |k: &Key| {
            k.iter()
                .map(ScalarValue::to_string)
                .collect::<Vec<_>>()
                .join("|")
        };
        let mut out: Vec<(String, Vec<f64>)> = exact
            .groups
            .iter()
            .map(|(k, v)| (format!("group {}", key(k)), v.clone()))
            .collect();
        for ((m, k), h) in &exact.histograms {
            for (bucket, w) in h {
                out.push((
                    format!("histogram {m} {} bucket {bucket}", key(k)),
                    vec![*w],
                ));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Plans and checks `sql` with `options` without reading data: the checks every query
    /// passes before it may be charged.
    async fn check(&self, sql: &str, options: QueryOptions, meta: &Metadata) -> Result<Checked> {
        let mut plan = self.plan_with(sql, meta).await?;
        let QueryOptions {
            epsilon,
            delta,
            max_groups_per_unit,
            max_rows_per_group,
            noise,
        } = options;
        let noise = noise.unwrap_or(self.meta.budget.noise);
        for (what, v) in [
            ("max_groups_per_unit", max_groups_per_unit),
            ("max_rows_per_group", max_rows_per_group),
        ] {
            if v.is_some_and(|v| !(1..=crate::metadata::MAX_ROWS_PER_UNIT).contains(&v)) {
                return Err(SqlError::rejected(format!(
                    "{what} must be between 1 and {}",
                    crate::metadata::MAX_ROWS_PER_UNIT
                )));
            }
        }
        plan.max_groups = max_groups_per_unit.or(plan.max_groups);
        plan.max_per_group = max_rows_per_group.or(plan.max_per_group);
        if !(epsilon.is_finite() && epsilon > 0.0) {
            return Err(SqlError::rejected(format!(
                "ε must be a positive number, not {epsilon}"
            )));
        }
        if !(delta.is_finite() && (0.0..1.0).contains(&delta)) {
            return Err(SqlError::rejected(format!(
                "δ must be in [0, 1), not {delta}"
            )));
        }
        let private = plan.private_keys();
        if private && delta == 0.0 {
            return Err(SqlError::rejected(
                "grouping by a private key set (a column without public_keys in the metadata) \
                 releases only keys whose noisy count passes a threshold, which needs δ > 0 \
                 (e.g. --delta 1e-6)",
            ));
        }
        if noise == Noise::Gaussian && delta == 0.0 {
            return Err(SqlError::rejected(
                "Gaussian noise is (ε, δ)-DP, never pure: it needs δ > 0 (e.g. --delta 1e-6), \
                 or use Laplace noise",
            ));
        }
        let delta_spent = if private || noise == Noise::Gaussian {
            delta
        } else {
            0.0
        };
        let warnings = self.check_delta(delta_spent)?;
        let mechanisms = Mechanisms::new(&plan, epsilon, delta_spent, noise)?;
        Ok(Checked {
            plan,
            epsilon,
            delta_spent,
            noise,
            warnings,
            mechanisms,
        })
    }

    /// A dry run: what `sql` with `options` would cost and how accurate its noisy columns
    /// would be, and whether the budgets could pay, **without reading any data and without
    /// charging anything**. Everything it reports is a function of the query, the options and
    /// the public metadata (the noise scales), plus the ledger's remaining budgets: the
    /// analyst learns nothing about the data from it. A query the preview accepts can still
    /// be refused when it runs (e.g. by the backend), costing nothing then either.
    pub async fn preview(
        &self,
        ledger: &(dyn Ledger + Sync),
        dataset: &str,
        analyst: &str,
        sql: &str,
        options: QueryOptions,
    ) -> Result<Preview> {
        let resolved = self.resolve(Some(ledger), dataset)?;
        let mut checked = self.check(sql, options, &resolved.meta).await?;
        let read = &checked.plan.bounds_read;
        let estimated_bounds: Vec<EstimatedBounds> = resolved
            .known
            .into_iter()
            .filter(|b| read.iter().any(|(t, c)| *t == b.table && *c == b.column))
            .collect();
        let epsilon = self.meta.budget.auto_bounds_epsilon();
        let bounds_to_estimate: Vec<BoundsToEstimate> = resolved
            .pending
            .into_iter()
            .filter(|p| read.contains(p))
            .map(|(table, column)| BoundsToEstimate {
                table,
                column,
                epsilon,
            })
            .collect();
        let (batch, by_agg) = result_batch(&checked.plan, &checked.mechanisms, &[])?;
        let final_plan = replace_aggregate(&checked.plan, batch)?;
        let mut accuracy = output_accuracy(&checked.plan, &final_plan, &by_agg);
        if !bounds_to_estimate.is_empty() {
            accuracy.values_mut().for_each(|a| *a = None);
            let names: Vec<String> = bounds_to_estimate
                .iter()
                .map(|b| format!("{}.{}", b.table, b.column))
                .collect();
            checked.warnings.push(format!(
                "the bounds of {} are estimated with differential privacy first (ε = \
                 {epsilon} each, charged once and kept until the data changes): the \
                 measurements below show placeholder bounds [{}, {}], and the accuracy is \
                 known once the estimate is made",
                names.join(", "),
                PLACEHOLDER.0,
                PLACEHOLDER.1
            ));
        }
        let left = ledger.remaining(dataset, None)?;
        // The dataset exists (above): an unknown analyst budget means the analyst has none.
        let own = match ledger.remaining(dataset, Some(analyst)) {
            Err(veil_dp::DpError::UnknownDataset(_)) => Remaining::unlimited(left.accounting),
            other => other?,
        };
        let query_spend = checked.spend(left.accounting);
        let each = self.estimate_spend(left.accounting);
        let n = bounds_to_estimate.len() as f64;
        let spend = Spend {
            epsilon: query_spend.epsilon + n * each.epsilon,
            delta: query_spend.delta,
            rho: query_spend.rho + n * each.rho,
        };
        let affordable = left.can_pay(&spend) && own.can_pay(&spend);
        Ok(Preview {
            epsilon: checked.epsilon,
            delta: checked.delta_spent,
            noise: checked.noise,
            rho: query_rho(&checked.mechanisms, query_spend),
            accounting: left.accounting,
            charged: spend.into(),
            remaining_epsilon: left.epsilon,
            remaining_delta: left.delta,
            remaining_rho: left.rho,
            analyst_remaining_epsilon: own.epsilon,
            analyst_remaining_delta: own.delta,
            analyst_remaining_rho: own.rho,
            affordable,
            accuracy,
            warnings: checked.warnings,
            estimated_bounds,
            bounds_to_estimate,
            measurements: checked.mechanisms.describe(&checked.plan),
            keys: keys_policy(&checked.plan),
            contribution: contribution(&checked.plan),
        })
    }

    /// δ is the probability that the guarantee fails outright; τ-thresholding spends it as
    /// the chance that a key held by one person is released. With `n` people and `δ ≥ 1/n`
    /// a query can expect to release someone's group: refused when the metadata declares the
    /// population, a warning when it does not (the check is on the query's δ, before any
    /// data is read).
    fn check_delta(&self, delta: f64) -> Result<Vec<String>> {
        if delta == 0.0 {
            return Ok(Vec::new());
        }
        match self.meta.budget.population {
            Some(n) if delta * n as f64 >= 1.0 => Err(SqlError::rejected(format!(
                "δ = {delta:e} is not below 1/{n} (the metadata's population): a query could \
                 expect to release a group of one person; use δ ≪ 1/{n}, e.g. {:e}",
                0.01 / n as f64
            ))),
            Some(_) => Ok(Vec::new()),
            None => Ok(vec![format!(
                "δ = {delta:e} could not be checked against the number of people: the \
                 metadata declares no [budget] population (δ should be far below 1/population)"
            )]),
        }
    }

    /// What is proven about the query's tables ([`Facts`]).
    ///
    /// Files are examined once per version (length and modification time, re-read at every
    /// query; a file changed between this check and the statistics is a race the operator
    /// must avoid by replacing files atomically): the largest number of rows per unit, the
    /// rows without a unit, and the range of every bounded column. Server tables can change
    /// at any time, so only a primary key on the unit proves anything about them.
    async fn facts(&self, plan: &DpPlan) -> Result<Facts> {
        let mut facts = Facts {
            proven: true,
            unit_never_null: true,
            ranges: Vec::new(),
            never_null: Vec::new(),
        };
        // Rows one unit has in the aggregation input at most (the product over a join).
        let mut most_rows = 1.0f64;
        for (table, unit, bound) in &plan.tables {
            let version = self
                .tables
                .get(table)
                .map(|r| r.version.current())
                .unwrap_or(Version::Live);
            if version == Version::Live {
                if !self.backend.unit_is_primary_key(table, unit).await? {
                    facts.proven = false;
                    facts.unit_never_null = false;
                }
                continue;
            }
            let proof = self.proof(table, unit, version).await?;
            most_rows *= proof.max_rows.max(1.0);
            if proof.max_rows > *bound as f64 {
                // For the operator's debug log only, never in the analyst's result: whether some
                // unit exceeds the bound is a fact about the data that no noise covers.
                tracing::debug!(
                    "table {table}: some {unit} has {} rows, more than max_rows_per_unit = \
                     {bound}; the engine enforces the bound (rows are down-weighted)",
                    proof.max_rows
                );
                facts.proven = false;
            }
            if proof.null_units > 0.0 {
                facts.unit_never_null = false;
            }
            for m in &plan.measurements {
                let b = match m {
                    Measurement::Sum(b)
                    | Measurement::CenteredSum(b)
                    | Measurement::CenteredSumSquares(b)
                    | Measurement::Quantile(b, _) => b,
                    _ => continue,
                };
                if b.origin.0 != *table {
                    continue;
                }
                if let Some(r) = proof.ranges.get(&b.origin.1.to_ascii_lowercase()) {
                    if !facts.ranges.iter().any(|(c, _)| *c == b.column) {
                        facts.ranges.push((b.column.clone(), *r));
                    }
                }
                let whole = proof.never_null.contains(&b.origin.1.to_ascii_lowercase());
                if whole && !facts.never_null.contains(&b.column) {
                    facts.never_null.push(b.column.clone());
                }
            }
        }
        // Per-group bounds are met too when no unit has more rows than they allow: a unit with
        // `r` rows falls into at most `r` groups with at most `r` rows in each.
        if plan.per_group_bounds() {
            let need = if plan.groups.is_empty() {
                plan.linf()
            } else {
                plan.l0().min(plan.linf())
            };
            if most_rows > need as f64 {
                facts.proven = false;
            }
        }
        Ok(facts)
    }

    /// A public table joined on `column` must hold each of its values at most once, or the
    /// join could count a private row several times. The table is public: reading it, and
    /// refusing because of what it holds, tells nothing about a person.
    async fn check_public_key(&self, table: &str, column: &str) -> Result<()> {
        let scan = self.ctx.table(table).await?.into_unoptimized_plan();
        let key = scan
            .schema()
            .columns()
            .into_iter()
            .find(|c| c.name.eq_ignore_ascii_case(column))
            .ok_or_else(|| SqlError::Internal(format!("no column {column} in {table}")))?;
        let rows = self
            .backend
            .run(&self.ctx, &bounding::rows_per_unit(scan, key)?)
            .await?;
        let most = match rows.iter().find(|b| b.num_rows() > 0) {
            Some(b) => f64_at(b, 0, 0)?,
            None => 0.0,
        };
        if most > 1.0 {
            return Err(SqlError::rejected(format!(
                "the public table {table} holds some value of {column} more than once: a join \
                 on it could count a person's row several times (join on a column whose values \
                 are unique)"
            )));
        }
        Ok(())
    }

    /// The proof of one table version, from the cache or from two aggregations.
    async fn proof(&self, table: &str, unit: &str, version: Version) -> Result<Proof> {
        let cached = self
            .proofs
            .lock()
            .map_err(|_| SqlError::Internal("proof cache poisoned".into()))?
            .get(table)
            .filter(|(v, _)| *v == version)
            .map(|(_, p)| p.clone());
        if let Some(p) = cached {
            return Ok(p);
        }
        let scan = self.ctx.table(table).await?.into_unoptimized_plan();
        let columns = scan.schema().columns();
        let unit_col = columns
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(unit))
            .cloned()
            .ok_or_else(|| SqlError::Internal(format!("no unit column {unit}")))?;
        let (_, meta) = self
            .meta
            .table(table)
            .ok_or_else(|| SqlError::Internal(format!("no metadata for {table}")))?;
        let bounded: Vec<Column> = columns
            .iter()
            .filter(|c| {
                meta.column(&c.name)
                    .is_some_and(|(_, m)| m.is_numeric() && m.bounds().is_some())
            })
            .cloned()
            .collect();
        let rows = self
            .backend
            .run(&self.ctx, &bounding::rows_per_unit(scan.clone(), unit_col)?)
            .await?;
        let mut ranges = HashMap::new();
        let mut never_null = Vec::new();
        if !bounded.is_empty() {
            let r = self
                .backend
                .run(&self.ctx, &bounding::ranges(scan, &bounded)?)
                .await?;
            if let Some(b) = r.iter().find(|b| b.num_rows() > 0) {
                let rows = f64_at(b, 3 * bounded.len(), 0)?;
                for (i, c) in bounded.iter().enumerate() {
                    let name = c.name.to_ascii_lowercase();
                    if f64_at(b, 3 * i + 2, 0)? == rows {
                        never_null.push(name.clone());
                    }
                    if b.column(3 * i).is_null(0) {
                        continue;
                    }
                    ranges.insert(name, (f64_at(b, 3 * i, 0)?, f64_at(b, 3 * i + 1, 0)?));
                }
            }
        }
        let first = rows.iter().find(|b| b.num_rows() > 0);
        let proof = Proof {
            max_rows: first.map(|b| f64_at(b, 0, 0)).transpose()?.unwrap_or(0.0),
            null_units: first.map(|b| f64_at(b, 1, 0)).transpose()?.unwrap_or(0.0),
            ranges,
            never_null,
        };
        self.proofs
            .lock()
            .map_err(|_| SqlError::Internal("proof cache poisoned".into()))?
            .insert(table.to_string(), (version, proof.clone()));
        Ok(proof)
    }

    async fn run_stats(&self, plan: &DpPlan, stats: &bounding::StatsPlans) -> Result<Exact> {
        let g = plan.groups.len();
        let mut exact = Exact::default();
        for b in self.backend.run(&self.ctx, &stats.rows).await? {
            for r in 0..b.num_rows() {
                let key = key_of(&b, g, r)?;
                let entry = exact.groups.entry(key).or_default();
                entry.resize(plan.measurements.len(), 0.0);
                for (j, &m) in stats.row_stats.iter().enumerate() {
                    if m != usize::MAX {
                        entry[m] = f64_at(&b, g + j, r)?;
                    }
                }
            }
        }
        for (m, p) in stats.distinct_units.iter().chain(&stats.distinct_values) {
            for b in self.backend.run(&self.ctx, p).await? {
                for r in 0..b.num_rows() {
                    let key = key_of(&b, g, r)?;
                    let entry = exact.groups.entry(key).or_default();
                    entry.resize(plan.measurements.len(), 0.0);
                    entry[*m] = f64_at(&b, g, r)?;
                }
            }
        }
        for (m, p) in &stats.histograms {
            for b in self.backend.run(&self.ctx, p).await? {
                for r in 0..b.num_rows() {
                    let key = key_of(&b, g, r)?;
                    let bucket = match ScalarValue::try_from_array(b.column(g), r)? {
                        ScalarValue::Int64(Some(x)) => x,
                        _ => continue, // NULL values are not part of a quantile
                    };
                    let w = f64_at(&b, g + 1, r)?;
                    *exact
                        .histograms
                        .entry((*m, key))
                        .or_default()
                        .entry(bucket)
                        .or_insert(0.0) += w;
                }
            }
        }
        Ok(exact)
    }
}

/// [`opaque`], except that a cluster's failure (whose text Veil wrote and which quotes no
/// data) is passed on, saying what happened to the budget.
fn opaque_after(e: SqlError, budget: &str) -> SqlError {
    match e {
        SqlError::Cluster(m) => SqlError::Cluster(format!("{m}; {budget}")),
        other => opaque(other),
    }
}

/// An error met while reading the data, as the analyst sees it: its text could quote a row
/// (a parse error) or depend on one, so only the operator's debug log has the details.
fn opaque(e: SqlError) -> SqlError {
    tracing::debug!("reading the data failed: {e}");
    SqlError::Backend(
        "reading the data failed (details are in the operator's log, VEIL_LOG=debug)".into(),
    )
}

fn f64_at(b: &RecordBatch, c: usize, r: usize) -> Result<f64> {
    let a = b.column(c);
    let a = a
        .as_any()
        .downcast_ref::<Float64Array>()
        .ok_or_else(|| SqlError::Internal(format!("statistic {c} is {}", a.data_type())))?;
    Ok(if a.is_null(r) { 0.0 } else { a.value(r) })
}

/// Turns the raw moments the statistics plans return for centered measurements into sums of
/// distances to the middle of the bounds, exactly and before any noise: `Σ(x−m) = Σx − m·n`,
/// `Σ(x−m)² = Σx² − 2m·Σx + m²·n` (over the same, possibly weighted, non-NULL values).
fn center(plan: &DpPlan, exact: &mut Exact) -> Result<()> {
    let find = |want: &Measurement| plan.measurements.iter().position(|m| m == want);
    let mut steps = Vec::new();
    for (i, m) in plan.measurements.iter().enumerate() {
        let (b, squares) = match m {
            Measurement::CenteredSum(b) => (b, false),
            Measurement::CenteredSumSquares(b) => (b, true),
            _ => continue,
        };
        let count = find(&Measurement::NonNull(b.read()))
            .ok_or_else(|| SqlError::Internal("a centered sum without its count".into()))?;
        let sum = find(&Measurement::CenteredSum(b.clone()))
            .ok_or_else(|| SqlError::Internal("centered squares without their sum".into()))?;
        steps.push((i, squares, b.middle(), count, sum));
    }
    if steps.is_empty() {
        return Ok(());
    }
    for v in exact.groups.values_mut() {
        let raw = v.clone();
        for &(i, squares, m, count, sum) in &steps {
            v[i] = if squares {
                raw[i] - 2.0 * m * raw[sum] + m * m * raw[count]
            } else {
                raw[i] - m * raw[count]
            };
        }
    }
    Ok(())
}

/// What one examination of a table's data found.
#[derive(Clone, Debug)]
struct Proof {
    /// The largest number of rows one unit has.
    max_rows: f64,
    /// Rows without a unit.
    null_units: f64,
    /// Smallest and largest value per bounded column (lowercase name).
    ranges: HashMap<String, (f64, f64)>,
    /// Bounded columns without NULLs (lowercase names).
    never_null: Vec<String>,
}

/// A group's key, with strings normalized to `Utf8`.
type Key = Vec<ScalarValue>;

fn key_of(b: &RecordBatch, g: usize, r: usize) -> Result<Key> {
    (0..g)
        .map(|i| Ok(normalize(ScalarValue::try_from_array(b.column(i), r)?)))
        .collect()
}

fn normalize(v: ScalarValue) -> ScalarValue {
    match v {
        ScalarValue::Utf8View(s) | ScalarValue::LargeUtf8(s) => ScalarValue::Utf8(s),
        ScalarValue::Dictionary(_, inner) => normalize(*inner),
        other => other,
    }
}

/// Exact (noise-free, bounded) statistics per group.
#[derive(Default)]
struct Exact {
    groups: HashMap<Key, Vec<f64>>,
    histograms: HashMap<(usize, Key), BTreeMap<i64, f64>>,
}

/// Additive noise on one measurement (every group's value of it).
enum Additive {
    Laplace(LaplaceMechanism),
    Gaussian(GaussianMechanism),
}

impl Additive {
    fn release(&self, value: f64) -> Result<f64> {
        Ok(match self {
            Additive::Laplace(m) => m.release(value)?,
            Additive::Gaussian(m) => m.release(value)?,
        })
    }

    /// 95% confidence half-width of the noise.
    fn half_width(&self) -> f64 {
        match self {
            Additive::Laplace(m) => m.confidence_half_width(0.05),
            Additive::Gaussian(m) => m.confidence_half_width_95(),
        }
    }

    /// A `t` with `P(noise ≥ t) ≤ p`.
    fn upper_tail(&self, p: f64) -> f64 {
        match self {
            // P(Lap(b) ≥ t) = e^{−t/b} / 2.
            Additive::Laplace(m) => m.scale() * (1.0 / (2.0 * p)).ln().max(0.0),
            Additive::Gaussian(m) => m.upper_tail(p),
        }
    }

    fn scale(&self) -> f64 {
        match self {
            Additive::Laplace(m) => m.scale(),
            Additive::Gaussian(m) => m.sigma(),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Additive::Laplace(_) => "Laplace",
            Additive::Gaussian(_) => "Gaussian",
        }
    }
}

/// One mechanism per measurement.
///
/// A measurement is a vector (its value in every group) that one privacy unit moves in at
/// most L0 groups, by at most L∞ rows in each and L1 = min(L0·L∞, its row bound) in all.
/// Laplace noise is sized by the L1 sensitivity (`L1 × magnitude`) and the query's ε split
/// equally; Gaussian noise by the L2 sensitivity (`√(L1·L∞) × magnitude`, since
/// `Σ cᵢ² ≤ max cᵢ · Σ cᵢ`) and the query's ρ split equally, where ρ is the largest whose
/// (ε, δ) conversion is within the query's ε (quantiles, ε-DP, then cost ε²/2 each).
struct Mechanisms {
    noisy: Vec<Option<Additive>>,
    selection: Vec<Option<ReportNoisyMax>>,
    /// Per quantile: how far from the ends its target rank is kept.
    margins: Vec<f64>,
    /// Per measurement: its sensitivity (L1, or L2 under Gaussian noise).
    sensitivities: Vec<f64>,
    /// Per measurement: the ε it alone is (Gaussian: its ρ share converted at the query's
    /// δ for the conversion).
    epsilons: Vec<f64>,
    /// The query's ρ (Gaussian noise).
    rho: Option<f64>,
    /// δ that τ-thresholding of private keys may spend.
    delta_threshold: f64,
}

impl Mechanisms {
    fn new(plan: &DpPlan, epsilon: f64, delta: f64, noise: Noise) -> Result<Self> {
        let n = plan.measurements.len().max(1) as f64;
        // A unit moves at most `l1` rows in all (L0 groups × L∞ rows, and its row bound), and
        // at most L0 distinct-unit counts by one each.
        let k = plan.l1() as f64;
        let l0 = plan.l0();
        let l2_rows = (k * plan.linf() as f64).sqrt();
        let (rho, delta_conversion, delta_threshold) = match noise {
            Noise::Laplace => (None, 0.0, delta),
            Noise::Gaussian => {
                // Private keys: half of δ for the conversion, half for the threshold.
                let (conversion, threshold) = if plan.private_keys() {
                    (delta / 2.0, delta / 2.0)
                } else {
                    (delta, 0.0)
                };
                let rho = veil_dp::accountant::epsilon_to_zcdp(epsilon, conversion)?;
                (Some(rho), conversion, threshold)
            }
        };
        let mut noisy = Vec::new();
        let mut selection = Vec::new();
        let mut margins = Vec::new();
        let mut sensitivities = Vec::new();
        let mut epsilons = Vec::new();
        for m in &plan.measurements {
            let (l1, l2) = match m {
                Measurement::Rows | Measurement::NonNull(_) | Measurement::DistinctValues(_) => {
                    (k, l2_rows)
                }
                Measurement::DistinctUnits => (l0 as f64, (l0 as f64).sqrt()),
                Measurement::Sum(b) => (k * b.magnitude(), l2_rows * b.magnitude()),
                Measurement::CenteredSum(b) => (k * b.half_range(), l2_rows * b.half_range()),
                Measurement::CenteredSumSquares(b) => {
                    let h2 = b.half_range() * b.half_range();
                    (k * h2, l2_rows * h2)
                }
                Measurement::Quantile(..) => (k, k),
            };
            // A column bounded to [0, 0] has nothing to hide.
            let (l1, l2) = (l1.max(f64::MIN_POSITIVE), l2.max(f64::MIN_POSITIVE));
            // The ε of a pure-DP share: ε/n, or under zCDP the ε whose ε²/2 is ρ/n.
            let each = match rho {
                None => epsilon / n,
                Some(rho) => (2.0 * rho / n).sqrt(),
            };
            if let Measurement::Quantile(b, _) = m {
                let (c, _) = bounding::grid(b);
                margins.push((2.0 * l1 / each) * ((c.max(2) as f64) / QUANTILE_FAILURE).ln() + k);
                sensitivities.push(l1);
                noisy.push(None);
                selection.push(Some(ReportNoisyMax::new(l1, each)?));
                // Report-noisy-max is pure: `each`-DP, whichever accounting chose `each`.
                epsilons.push(each);
                continue;
            }
            margins.push(0.0);
            selection.push(None);
            match rho {
                None => {
                    sensitivities.push(l1);
                    noisy.push(Some(Additive::Laplace(LaplaceMechanism::for_vector(
                        l1, each, l0,
                    )?)));
                    epsilons.push(each);
                }
                Some(rho) => {
                    sensitivities.push(l2);
                    noisy.push(Some(Additive::Gaussian(GaussianMechanism::for_vector(
                        l2,
                        rho / n,
                        l0,
                    )?)));
                    epsilons.push(veil_dp::accountant::zcdp_to_epsilon(
                        rho / n,
                        delta_conversion,
                    )?);
                }
            }
        }
        Ok(Self {
            noisy,
            selection,
            margins,
            sensitivities,
            epsilons,
            rho,
            delta_threshold,
        })
    }

    /// The measurements as the preview shows them.
    fn describe(&self, plan: &DpPlan) -> Vec<PreviewMeasurement> {
        let n = plan.measurements.len().max(1) as f64;
        let range =
            |b: &crate::planner::Bounded| format!("{} in [{}, {}]", b.label, b.lower, b.upper);
        plan.measurements
            .iter()
            .enumerate()
            .map(|(i, m)| PreviewMeasurement {
                what: match m {
                    Measurement::Rows => "rows".into(),
                    Measurement::NonNull(Expr::Column(c)) => format!("non-NULL {}", c.name),
                    Measurement::NonNull(_) => "non-NULL values of the expression".into(),
                    Measurement::Sum(b) => format!("sum of {}", range(b)),
                    Measurement::CenteredSum(b) => format!("sum of {} (centered)", range(b)),
                    Measurement::CenteredSumSquares(b) => {
                        format!("sum of squares of {} (centered)", range(b))
                    }
                    Measurement::DistinctUnits => "distinct privacy units".into(),
                    Measurement::DistinctValues(Expr::Column(c)) => {
                        format!("distinct values of {}", c.name)
                    }
                    Measurement::DistinctValues(_) => "distinct values".into(),
                    Measurement::Quantile(b, q) => format!("{q} quantile of {}", range(b)),
                },
                mechanism: match self.noisy.get(i) {
                    Some(Some(a)) => a.name().into(),
                    _ => "report noisy max".into(),
                },
                epsilon: self.epsilons.get(i).copied().unwrap_or(0.0),
                rho: self.rho.map(|r| r / n),
                sensitivity: self.sensitivities.get(i).copied().unwrap_or(0.0),
                scale: match self.noisy.get(i) {
                    Some(Some(a)) => Some(a.scale()),
                    _ => None,
                },
            })
            .collect()
    }

    /// 95% confidence half-width of measurement `i`'s noise.
    fn half_width(&self, i: usize) -> Option<f64> {
        self.noisy.get(i)?.as_ref().map(Additive::half_width)
    }
}

/// How one unit's contribution is bounded, in words.
fn contribution(plan: &DpPlan) -> String {
    let rows = |n: u64| {
        if n == 1 {
            "1 row".to_string()
        } else {
            format!("{n} rows")
        }
    };
    let mut s = format!(
        "each privacy unit brings at most {} in all",
        rows(plan.l1())
    );
    if !plan.groups.is_empty() {
        s += &format!(
            ", into at most {} group{}, at most {} per group",
            plan.l0(),
            if plan.l0() == 1 { "" } else { "s" },
            rows(plan.linf())
        );
    }
    if plan.per_group_bounds() {
        s += " (a unit in more groups keeps that many of them, chosen at random)";
    }
    s
}

/// How a query's grouping keys are released, in words.
fn keys_policy(plan: &DpPlan) -> String {
    if plan.groups.is_empty() {
        "no grouping: one row".into()
    } else if plan.private_keys() {
        "private keys: a key is released only if its noisy count passes the threshold τ (this \
         spends δ); a key absent from the data never appears"
            .into()
    } else {
        "public key sets: every listed key is released, present in the data or not, and no \
         other"
            .into()
    }
}

/// How unlikely a quantile's selection is to land on a candidate outside the data's range
/// (`β` of the rank margin).
pub const QUANTILE_FAILURE: f64 = 1e-6;

/// A released group: its key and its noisy measurements.
struct Released {
    key: Key,
    noisy: Vec<f64>,
}

/// Adds noise, thresholds private keys, completes public key sets.
fn release(
    plan: &DpPlan,
    mechanisms: &Mechanisms,
    exact: Exact,
) -> Result<(Vec<Released>, Option<f64>)> {
    let m = plan.measurements.len();
    let public_only = !plan.groups.is_empty() && !plan.private_keys();
    let mut candidates: HashMap<Key, Vec<f64>> = HashMap::new();
    if plan.groups.is_empty() {
        let row = exact.groups.into_iter().next().map(|(_, v)| v);
        candidates.insert(Vec::new(), row.unwrap_or_else(|| vec![0.0; m]));
    } else {
        // Keys outside a public key set are never released.
        let allowed = |key: &Key| {
            plan.groups.iter().zip(key).all(|(g, v)| match &g.public {
                None => true,
                Some(keys) => matches!(v, ScalarValue::Utf8(Some(s)) if keys.contains(s)),
            })
        };
        for (k, mut v) in exact.groups {
            if allowed(&k) {
                v.resize(m, 0.0);
                candidates.insert(k, v);
            }
        }
        if public_only {
            // Every combination of the public keys, present in the data or not.
            let mut all: Vec<Key> = vec![Vec::new()];
            for g in &plan.groups {
                let keys = g.public.clone().unwrap_or_default();
                all = all
                    .into_iter()
                    .flat_map(|prefix| {
                        keys.iter().map(move |k| {
                            let mut p = prefix.clone();
                            p.push(ScalarValue::Utf8(Some(k.clone())));
                            p
                        })
                    })
                    .collect();
            }
            for k in all {
                candidates.entry(k).or_insert_with(|| vec![0.0; m]);
            }
        }
    }
    let threshold = match plan.threshold_count {
        Some(i) => {
            let noise = mechanisms
                .noisy
                .get(i)
                .and_then(Option::as_ref)
                .ok_or_else(|| SqlError::Internal("threshold count has no mechanism".into()))?;
            // A key only one unit holds has a count of at most L∞; that unit holds at most L0
            // keys, each passing with probability at most δ / L0.
            let (l0, linf) = (plan.l0() as f64, plan.linf() as f64);
            Some(linf + noise.upper_tail(mechanisms.delta_threshold / l0))
        }
        None => None,
    };
    // A stable order (the analyst's ORDER BY, if any, comes later).
    let mut candidates: Vec<(Key, Vec<f64>)> = candidates.into_iter().collect();
    candidates.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
    let mut out = Vec::new();
    for (key, values) in candidates {
        let mut noisy = vec![0.0; m];
        for (i, mech) in mechanisms.noisy.iter().enumerate() {
            if let Some(mech) = mech {
                noisy[i] = mech.release(values[i])?;
            }
        }
        if let (Some(i), Some(tau)) = (plan.threshold_count, threshold) {
            if noisy[i] < tau {
                continue;
            }
        }
        for (i, sel) in mechanisms.selection.iter().enumerate() {
            let (Some(sel), Measurement::Quantile(b, q)) = (sel, &plan.measurements[i]) else {
                continue;
            };
            let hist = exact.histograms.get(&(i, key.clone()));
            noisy[i] = quantile(sel, b, *q, hist, mechanisms.margins[i])?;
        }
        out.push(Released { key, noisy });
    }
    Ok((out, threshold))
}

/// The exponential mechanism (report-noisy-max) over the histogram's candidate points.
///
/// A candidate `c` scores `−max(0, below(c) − t, t − upto(c))`, where `below(c)` counts values
/// under `c`, `upto(c)` those up to the end of `c`'s bucket, and `t` is the target rank `q·n`
/// kept a margin away from the ends: without it every candidate under the minimum would tie
/// with the minimum (no data tells them apart) and `MIN` would land anywhere below it. The
/// margin is what the selection's noise (scale `2k/ε`) overcomes among `C` candidates with
/// probability at most [`QUANTILE_FAILURE`], `(2k/ε)·ln(C/β)`, plus one unit's weight `k`; it
/// depends on no data. So `MIN` is about the margin-th smallest value, never far below it.
/// Each score moves by at most one unit's weight (≤ k) when a unit comes or goes.
fn quantile(
    sel: &ReportNoisyMax,
    b: &crate::planner::Bounded,
    q: f64,
    hist: Option<&BTreeMap<i64, f64>>,
    margin: f64,
) -> Result<f64> {
    let (n_candidates, step) = bounding::grid(b);
    let empty = BTreeMap::new();
    let hist = hist.unwrap_or(&empty);
    let total: f64 = hist.values().sum();
    let target = (q * total).max(margin).min((total - margin).max(margin));
    let mut below = 0.0;
    let mut scores = Vec::with_capacity(n_candidates);
    let mut buckets = hist.iter().peekable();
    for i in 0..n_candidates as i64 {
        while let Some((_, w)) = buckets.next_if(|(j, _)| **j < i) {
            below += w;
        }
        let upto = below + hist.get(&i).copied().unwrap_or(0.0);
        scores.push(-(below - target).max(target - upto).max(0.0));
    }
    let idx = sel
        .select(&scores)?
        .ok_or_else(|| SqlError::Internal("a quantile with no candidates".into()))?;
    Ok(b.lower + step * idx as f64)
}

/// One output value of an aggregate from the group's noisy measurements.
fn output_value(o: &Output, noisy: &[f64]) -> f64 {
    match *o {
        Output::Count(i) => noisy[i].round().max(0.0),
        Output::Sum(i) => noisy[i],
        Output::Quantile(i) => noisy[i],
        Output::Avg {
            sum,
            count,
            lower,
            upper,
        } => {
            let middle = lower + (upper - lower) / 2.0;
            (middle + noisy[sum] / noisy[count].max(1.0)).clamp(lower, upper)
        }
        Output::Variance {
            sum,
            squares,
            count,
            population,
            sqrt,
            range,
        } => {
            // Centered sums: the variance does not depend on the shift.
            let n = noisy[count].max(2.0);
            let mean = noisy[sum] / n;
            let dof = if population { n } else { n - 1.0 };
            let var = ((noisy[squares] - n * mean * mean) / dof).clamp(0.0, range * range / 4.0);
            if sqrt {
                var.sqrt()
            } else {
                var
            }
        }
    }
}

/// 95% half-width of an output, from the group's noisy values (first-order for averages).
fn output_accuracy_of(o: &Output, m: &Mechanisms, noisy: &[f64]) -> Option<f64> {
    match *o {
        Output::Count(i) | Output::Sum(i) => m.half_width(i),
        Output::Avg { sum, count, .. } => {
            let n = noisy[count].max(1.0);
            let mean = noisy[sum] / n;
            Some((m.half_width(sum)? + mean.abs() * m.half_width(count)?) / n)
        }
        Output::Variance { .. } | Output::Quantile(_) => None,
    }
}

/// The aggregation's output as a record batch with the aggregation's own schema.
fn result_batch(
    plan: &DpPlan,
    mechanisms: &Mechanisms,
    groups: &[Released],
) -> Result<(RecordBatch, Vec<Option<f64>>)> {
    let schema = plan.aggregate.schema.as_arrow();
    let g = plan.groups.len();
    let field = |i: usize| {
        schema
            .fields()
            .get(i)
            .map(|f| f.data_type().clone())
            .ok_or_else(|| SqlError::Internal(format!("aggregation output {i} has no field")))
    };
    let mut columns: Vec<ArrayRef> = Vec::new();
    for i in 0..g {
        let target = &field(i)?;
        let values: Vec<ScalarValue> = groups.iter().map(|r| r.key[i].clone()).collect();
        let array = if values.is_empty() {
            datafusion::arrow::array::new_empty_array(target)
        } else {
            cast(&ScalarValue::iter_to_array(values)?, target)
                .map_err(|e| SqlError::Internal(e.to_string()))?
        };
        columns.push(array);
    }
    let mut accuracy = Vec::new();
    for (j, o) in plan.outputs.iter().enumerate() {
        let target = &field(g + j)?;
        let values: Vec<f64> = groups.iter().map(|r| output_value(o, &r.noisy)).collect();
        let worst = groups
            .iter()
            .filter_map(|r| output_accuracy_of(o, mechanisms, &r.noisy))
            .fold(None, |a: Option<f64>, x| Some(a.map_or(x, |a| a.max(x))));
        accuracy.push(match o {
            Output::Count(i) | Output::Sum(i) => mechanisms.half_width(*i),
            _ => worst,
        });
        let rounded: Vec<f64> = if target.is_integer() {
            values.iter().map(|v| v.round()).collect()
        } else {
            values
        };
        let array: ArrayRef = Arc::new(Float64Array::from(rounded));
        columns.push(cast(&array, target).map_err(|e| SqlError::Internal(e.to_string()))?);
    }
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| Field::new(format!("__c{i}"), f.data_type().clone(), true))
        .collect();
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(|e| SqlError::Internal(e.to_string()))?;
    Ok((batch, accuracy))
}

/// The analyst's plan with its aggregation replaced by the noisy results.
fn replace_aggregate(plan: &DpPlan, batch: RecordBatch) -> Result<LogicalPlan> {
    let schema = batch.schema();
    let table = MemTable::try_new(schema.clone(), vec![vec![batch]])?;
    let exprs: Vec<Expr> = plan
        .aggregate
        .schema
        .iter()
        .enumerate()
        .map(|(i, (q, f))| {
            col(Column::from_name(format!("__c{i}"))).alias_qualified(q.cloned(), f.name())
        })
        .collect();
    let noisy =
        LogicalPlanBuilder::scan("__veil_dp_noisy", provider_as_source(Arc::new(table)), None)?
            .project(exprs)?
            .build()?;
    let out = plan
        .original
        .clone()
        .transform_up(|node| {
            if let LogicalPlan::Aggregate(_) = node {
                Ok(Transformed::yes(noisy.clone()))
            } else {
                Ok(Transformed::yes(node.recompute_schema()?))
            }
        })?
        .data;
    Ok(out)
}

/// Accuracy per output column that passes an aggregate through (possibly renamed).
fn output_accuracy(
    plan: &DpPlan,
    final_plan: &LogicalPlan,
    by_agg: &[Option<f64>],
) -> BTreeMap<String, Option<f64>> {
    let g = plan.groups.len();
    let agg_names: Vec<String> = plan
        .aggregate
        .schema
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let mut out = BTreeMap::new();
    // Find the outermost projection: its expressions name the output columns.
    let mut node = final_plan;
    loop {
        match node {
            LogicalPlan::Projection(p) => {
                for (i, e) in p.expr.iter().enumerate() {
                    let inner = crate::planner::unalias(e);
                    let name = p.schema.field(i).name().clone();
                    let passed = match inner {
                        Expr::Column(c) => agg_names.iter().position(|n| *n == c.name),
                        _ => None,
                    };
                    match passed {
                        // A grouping key: no noise.
                        Some(j) if j < g => {}
                        Some(j) => {
                            out.insert(name, by_agg.get(j - g).copied().flatten());
                        }
                        // Computed from the noisy values: no closed form here.
                        None => {
                            out.insert(name, None);
                        }
                    }
                }
                return out;
            }
            other => match other.inputs().first() {
                Some(i) => node = i,
                None => return out,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::explained;

    #[test]
    fn explain_names_the_query_to_preview() {
        assert_eq!(explained("SELECT 1").unwrap(), None);
        assert_eq!(
            explained("  explain SELECT COUNT(*) FROM t").unwrap(),
            Some("SELECT COUNT(*) FROM t")
        );
        assert_eq!(explained("EXPLAIN\nSELECT 1").unwrap(), Some("SELECT 1"));
        // Not the keyword: left to the SQL parser (which refuses it).
        assert_eq!(explained("EXPLAINED SELECT 1").unwrap(), None);
        for bad in [
            "EXPLAIN ANALYZE SELECT 1",
            "explain verbose SELECT 1",
            "EXPLAIN FORMAT JSON SELECT 1",
        ] {
            let e = explained(bad).unwrap_err().to_string();
            assert!(e.contains("is not supported"), "{bad}: {e}");
        }
    }
}
