//! Where the bounded statistics run.
//!
//! - **Embedded** (the default): DataFusion over CSV and Parquet files, each registered under
//!   its metadata table's name with the types the metadata declares.
//! - **PostgreSQL**: the same logical plans, unparsed to PostgreSQL SQL by DataFusion's
//!   `Unparser` and run by a real server; only the noise-free, clamped, per-group statistics
//!   come back, and Veil adds the noise. Planning uses empty tables with the metadata's schema,
//!   so no data crosses into Veil's planner.
//! - **A cluster** (Apache Ballista, through `veil-dp-ballista`): the same statistics plans as
//!   the embedded engine, over the same files (or directories of partitions), executed by a
//!   Ballista scheduler and its executors. The files are registered in the cluster's session
//!   as listing tables (never loaded into Veil's memory: the executors read them); what comes
//!   back is the per-group statistics, and noise, budget and post-processing stay in Veil.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use datafusion::arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, StringBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::MemTable;
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::prelude::{CsvReadOptions, ParquetReadOptions, SessionContext};
use datafusion::sql::unparser::dialect::PostgreSqlDialect;
use datafusion::sql::unparser::Unparser;

use crate::error::{Result, SqlError};
use crate::metadata::{ColumnType, Metadata, Table};

/// CSV files up to this size are parsed once, when registered, and kept in memory as Arrow
/// batches; larger ones are read from the file at every query.
pub(crate) const IN_MEMORY_CSV: u64 = 256 << 20;

/// The Arrow type a metadata column type is read as.
fn arrow_type(t: ColumnType) -> DataType {
    match t {
        ColumnType::Int => DataType::Int64,
        ColumnType::Float => DataType::Float64,
        ColumnType::String => DataType::Utf8,
        ColumnType::Bool => DataType::Boolean,
    }
}

fn table_err(table: &str, message: impl Into<String>) -> SqlError {
    SqlError::Table {
        table: table.to_string(),
        message: message.into(),
    }
}

/// What identifies one version of a table's data (for caching the contribution proof).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Version {
    /// A file: its path, length and modification time.
    File(PathBuf, u64, Option<SystemTime>),
    /// A directory of partition files: each file's name, length and modification time.
    Dir(PathBuf, Vec<(String, u64, Option<SystemTime>)>),
    /// A file loaded into memory when registered, with its length and modification time
    /// then: what the engine reads never changes.
    Loaded(PathBuf, u64, Option<SystemTime>),
    /// A server table: it may change between two queries (and between the proof and the
    /// statistics), so the bound is never proven by a scan, only by a primary key.
    Live,
}

impl Version {
    /// The file's version now (re-read at every query: a file that changed is proven again).
    pub(crate) fn current(&self) -> Version {
        match self {
            Version::File(path, _, _) => match std::fs::metadata(path) {
                Ok(m) => Version::File(path.clone(), m.len(), m.modified().ok()),
                Err(_) => Version::Live,
            },
            Version::Dir(path, _) => match partitions(path) {
                Ok(files) => Version::Dir(path.clone(), files),
                Err(_) => Version::Live,
            },
            other => other.clone(),
        }
    }

    /// A stable name of this version across processes (what results derived from the data
    /// are kept under in the ledger): the SHA-256 of the path, lengths and modification
    /// times; `live` for a server table, which has no versions.
    pub(crate) fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let time = |m: &Option<SystemTime>| {
            m.and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or_else(|| "-".to_string(), |d| d.as_nanos().to_string())
        };
        let text = match self {
            Version::File(p, n, m) | Version::Loaded(p, n, m) => {
                format!("file\0{}\0{n}\0{}", p.display(), time(m))
            }
            Version::Dir(p, files) => {
                let mut t = format!("dir\0{}", p.display());
                for (name, n, m) in files {
                    t.push_str(&format!("\0{name}\0{n}\0{}", time(m)));
                }
                t
            }
            Version::Live => return "live".into(),
        };
        hex::encode(Sha256::digest(text.as_bytes()))
    }
}

/// A registered table.
#[derive(Clone, Debug)]
pub(crate) struct Registered {
    /// Its version.
    pub version: Version,
}

/// Every file of a directory of partitions — hidden ones too, since the version must change
/// whenever anything the query engine might read changes — sorted by name, with its length
/// and modification time. A subdirectory is an error: DataFusion lists directories
/// recursively, and a partition nested out of sight of the version could change a proven
/// contribution bound without the proof being redone.
fn partitions(dir: &Path) -> std::io::Result<Vec<(String, u64, Option<SystemTime>)>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let m = entry.metadata()?;
        if !m.is_file() {
            return Err(std::io::Error::other(format!(
                "it holds {name:?}, which is not a file: a table's partitions are files \
                 directly in its directory"
            )));
        }
        files.push((name, m.len(), m.modified().ok()));
    }
    files.sort();
    Ok(files)
}

/// Whether a partition file is hidden (a temporary file being written, `_SUCCESS`, …): it
/// does not decide the table's format.
fn hidden(name: &str) -> bool {
    name.starts_with('.') || name.starts_with('_')
}

/// A cluster the statistics run on.
#[derive(Clone, Debug)]
pub struct Cluster {
    /// What to call it in messages (e.g. `ballista://127.0.0.1:50050`).
    pub name: String,
    /// The scheduler's address (`host:port`), checked to answer before a query is charged.
    pub scheduler: String,
    /// How long one statistics job may take before the query fails (a cluster that lost
    /// every executor otherwise keeps the job queued forever).
    pub timeout: Duration,
}

/// Where statistics run.
pub(crate) enum Backend {
    /// DataFusion in this process.
    Embedded,
    /// A PostgreSQL server.
    Postgres(tokio_postgres::Client),
    /// A distributed engine (the context's query planner sends the plans to it).
    Cluster(Cluster),
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Backend::Embedded => f.write_str("Embedded"),
            Backend::Postgres(_) => f.write_str("Postgres"),
            Backend::Cluster(c) => write!(f, "Cluster({})", c.name),
        }
    }
}

/// Registers a CSV or Parquet file as metadata table `name`.
///
/// `path` may be a directory of partition files of one format (every file's name ends in
/// the same extension), read as one table. With `in_memory`, a CSV file up to
/// [`IN_MEMORY_CSV`] is parsed once and kept as Arrow batches; a cluster's executors read
/// the files themselves, so the cluster backend registers without it.
pub(crate) async fn register_file(
    ctx: &SessionContext,
    meta: &Metadata,
    name: &str,
    path: &Path,
    in_memory: bool,
) -> Result<Registered> {
    let Some((tname, table)) = meta.table(name) else {
        return Err(table_err(
            name,
            format!(
                "not described by the metadata (it describes: {})",
                meta.tables.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        ));
    };
    let fs = std::fs::metadata(path)
        .map_err(|e| table_err(tname, format!("cannot read {}: {e}", path.display())))?;
    // A directory: its partition files, which must share one extension.
    let (first, version) = if fs.is_dir() {
        let files = partitions(path)
            .map_err(|e| table_err(tname, format!("cannot read {}: {e}", path.display())))?;
        let Some((first, _, _)) = files.iter().find(|(n, _, _)| !hidden(n)) else {
            return Err(table_err(
                tname,
                format!("the directory {} holds no data files", path.display()),
            ));
        };
        let ext = |n: &str| {
            Path::new(n)
                .extension()
                .map(|e| e.to_ascii_lowercase())
                .unwrap_or_default()
        };
        if let Some((other, _, _)) = files
            .iter()
            .find(|(n, _, _)| !hidden(n) && ext(n) != ext(first))
        {
            return Err(table_err(
                tname,
                format!(
                    "the directory {} mixes file types ({first} and {other}): a table's \
                     partitions are all CSV or all Parquet",
                    path.display()
                ),
            ));
        }
        let first = path.join(first);
        let version = Version::Dir(path.to_path_buf(), files);
        (first, version)
    } else if fs.is_file() {
        let version = Version::File(path.to_path_buf(), fs.len(), fs.modified().ok());
        (path.to_path_buf(), version)
    } else {
        return Err(table_err(
            tname,
            format!("{} is not a file or a directory", path.display()),
        ));
    };
    let location = path
        .to_str()
        .ok_or_else(|| table_err(tname, "the path is not UTF-8"))?;
    let ext = first
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let dotted = format!(
        ".{}",
        first.extension().and_then(|e| e.to_str()).unwrap_or("")
    );
    if ext == "parquet" {
        let options = ParquetReadOptions::default().file_extension(&dotted);
        ctx.register_parquet(tname, location, options)
            .await
            .map_err(|e| table_err(tname, e.to_string()))?;
        let provider = ctx
            .table_provider(tname)
            .await
            .map_err(|e| table_err(tname, e.to_string()))?;
        check_schema(tname, table, &provider.schema())?;
    } else {
        let schema = csv_schema(tname, table, &first)?;
        let options = CsvReadOptions::new()
            .has_header(true)
            .schema(&schema)
            .file_extension(&dotted);
        if in_memory && fs.is_file() && fs.len() <= IN_MEMORY_CSV {
            // Parsed once: every query then scans Arrow batches, not text.
            let partitions = ctx
                .read_csv(location, options)
                .await
                .map_err(|e| table_err(tname, e.to_string()))?
                .collect_partitioned()
                .await
                .map_err(|e| table_err(tname, format!("cannot read the CSV: {e}")))?;
            let table = MemTable::try_new(Arc::new(schema), partitions)?;
            ctx.register_table(tname, Arc::new(table))?;
            return Ok(Registered {
                version: Version::Loaded(path.to_path_buf(), fs.len(), fs.modified().ok()),
            });
        }
        ctx.register_csv(tname, location, options)
            .await
            .map_err(|e| table_err(tname, e.to_string()))?;
    }
    Ok(Registered { version })
}

/// The schema of a CSV file: its header's columns in order, typed as the metadata declares
/// (columns the metadata does not describe are read as text).
fn csv_schema(tname: &str, table: &Table, path: &Path) -> Result<Schema> {
    use std::io::{BufRead, Read};
    let file = std::fs::File::open(path)
        .map_err(|e| table_err(tname, format!("cannot read {}: {e}", path.display())))?;
    let mut header = String::new();
    std::io::BufReader::new(file)
        .take(1 << 20)
        .read_line(&mut header)
        .map_err(|e| table_err(tname, format!("cannot read {}: {e}", path.display())))?;
    let names: Vec<&str> = header
        .trim_end_matches(['\r', '\n'])
        .split(',')
        .map(|s| s.trim().trim_matches('"'))
        .collect();
    if names.iter().all(|n| n.is_empty()) {
        return Err(table_err(
            tname,
            format!("{} has no header line", path.display()),
        ));
    }
    let fields: Vec<Field> = names
        .iter()
        .map(|n| {
            let t = table
                .column(n)
                .map(|(_, c)| arrow_type(c.kind))
                .unwrap_or(DataType::Utf8);
            Field::new(*n, t, true)
        })
        .collect();
    let schema = Schema::new(fields);
    check_schema(tname, table, &Arc::new(schema.clone()))?;
    Ok(schema)
}

/// Every column the metadata declares must be in the file, with a compatible type.
fn check_schema(tname: &str, table: &Table, schema: &SchemaRef) -> Result<()> {
    for (name, c) in &table.columns {
        let Some(f) = schema
            .fields()
            .iter()
            .find(|f| f.name().eq_ignore_ascii_case(name))
        else {
            return Err(table_err(
                tname,
                format!("column {name:?} of the metadata is not in the data"),
            ));
        };
        let t = f.data_type();
        let ok = match c.kind {
            ColumnType::Int => t.is_integer(),
            ColumnType::Float => t.is_numeric(),
            ColumnType::String => matches!(
                t,
                DataType::Utf8
                    | DataType::LargeUtf8
                    | DataType::Utf8View
                    | DataType::Dictionary(..)
            ),
            ColumnType::Bool => *t == DataType::Boolean,
        };
        if !ok {
            return Err(table_err(
                tname,
                format!(
                    "column {name:?} is {t} in the data but {:?} in the metadata",
                    c.kind
                ),
            ));
        }
    }
    Ok(())
}

/// Connects to PostgreSQL and registers every metadata table as an empty table of the
/// metadata's schema (for planning), after checking the server has it with those columns.
pub(crate) async fn connect_postgres(
    ctx: &SessionContext,
    meta: &Metadata,
    url: &str,
) -> Result<Backend> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .map_err(|e| SqlError::Backend(format!("cannot connect to PostgreSQL: {e}")))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!("PostgreSQL connection closed: {e}");
        }
    });
    for (tname, table) in &meta.tables {
        let rows = client
            .query(
                "SELECT column_name::text FROM information_schema.columns \
                 WHERE table_name = $1 AND table_schema = ANY (current_schemas(false)) \
                 ORDER BY ordinal_position",
                &[tname],
            )
            .await
            .map_err(|e| SqlError::Backend(e.to_string()))?;
        let have: Vec<String> = rows.iter().map(|r| r.get::<_, String>(0)).collect();
        if have.is_empty() {
            return Err(table_err(tname, "no such table on the PostgreSQL server"));
        }
        let mut fields = Vec::new();
        for name in &have {
            if let Some((_, c)) = table.column(name) {
                fields.push(Field::new(name, arrow_type(c.kind), true));
            }
        }
        for name in table.columns.keys() {
            if !have.iter().any(|h| h.eq_ignore_ascii_case(name)) {
                return Err(table_err(
                    tname,
                    format!("column {name:?} of the metadata is not in the server's table"),
                ));
            }
        }
        let schema = Arc::new(Schema::new(fields));
        let empty = MemTable::try_new(schema, vec![vec![]])?;
        ctx.register_table(tname.as_str(), Arc::new(empty))?;
    }
    Ok(Backend::Postgres(client))
}

impl Backend {
    /// Whether the server declares `unit` the primary key of `table` (then every unit has
    /// exactly one row, and the bound needs no scan to prove).
    pub(crate) async fn unit_is_primary_key(&self, table: &str, unit: &str) -> Result<bool> {
        let Backend::Postgres(client) = self else {
            return Ok(false);
        };
        let rows = client
            .query(
                "SELECT a.attname::text FROM pg_index i \
                 JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey) \
                 WHERE i.indrelid = to_regclass($1) AND i.indisprimary AND i.indnatts = 1",
                &[&table],
            )
            .await
            .map_err(|e| SqlError::Backend(e.to_string()))?;
        Ok(rows
            .iter()
            .any(|r| r.get::<_, String>(0).eq_ignore_ascii_case(unit)))
    }

    /// Plans a statistics plan on the backend **without reading any row**: DataFusion builds
    /// its physical plan, PostgreSQL runs `EXPLAIN` (which parses, type-checks and folds
    /// constants). Whatever fails here is decided by the query and the metadata alone, so it
    /// is refused before the charge, and saying why reveals nothing about the data.
    pub(crate) async fn check(&self, ctx: &SessionContext, plan: &LogicalPlan) -> Result<()> {
        match self {
            Backend::Embedded => {
                ctx.state()
                    .create_physical_plan(plan)
                    .await
                    .map_err(|e| SqlError::rejected(format!("the query cannot run: {e}")))?;
            }
            Backend::Cluster(cluster) => {
                // Planned here, on a plain local state (the context's own planner would only
                // wrap the plan for the scheduler): what cannot run is refused before the
                // charge, as on the embedded engine.
                let local = datafusion::execution::SessionStateBuilder::new()
                    .with_config(ctx.state().config().clone())
                    .with_default_features()
                    .build();
                local
                    .create_physical_plan(plan)
                    .await
                    .map_err(|e| SqlError::rejected(format!("the query cannot run: {e}")))?;
                cluster.reachable().await?;
            }
            Backend::Postgres(client) => {
                let sql = to_postgres_sql(plan)?;
                client
                    .query(format!("EXPLAIN {sql}").as_str(), &[])
                    .await
                    .map_err(|e| {
                        let why = e
                            .as_db_error()
                            .map(|d| d.message().to_string())
                            .unwrap_or_else(|| e.to_string());
                        SqlError::rejected(format!("PostgreSQL cannot run the query: {why}"))
                    })?;
            }
        }
        Ok(())
    }

    /// Runs a statistics plan and returns its rows.
    pub(crate) async fn run(
        &self,
        ctx: &SessionContext,
        plan: &LogicalPlan,
    ) -> Result<Vec<RecordBatch>> {
        match self {
            Backend::Embedded => Ok(ctx
                .execute_logical_plan(plan.clone())
                .await?
                .collect()
                .await?),
            Backend::Cluster(cluster) => {
                let job = async {
                    ctx.execute_logical_plan(plan.clone())
                        .await?
                        .collect()
                        .await
                };
                match tokio::time::timeout(cluster.timeout, job).await {
                    Ok(Ok(batches)) => Ok(batches),
                    Ok(Err(e)) => {
                        // The cluster's error may quote data (a row that does not parse): the
                        // analyst gets what failed, the operator's log gets the text.
                        tracing::debug!("{}: the statistics job failed: {e}", cluster.name);
                        Err(SqlError::Cluster(format!(
                            "{} did not complete the statistics (an executor died or could \
                             not be reached, or the data could not be read; details are in \
                             the operator's log, VEIL_LOG=debug)",
                            cluster.name
                        )))
                    }
                    Err(_) => Err(SqlError::Cluster(format!(
                        "{} did not complete the statistics within {} s (is any executor \
                         running?)",
                        cluster.name,
                        cluster.timeout.as_secs()
                    ))),
                }
            }
            Backend::Postgres(client) => {
                let sql = to_postgres_sql(plan)?;
                tracing::debug!("PostgreSQL: {sql}");
                let rows = client
                    .query(sql.as_str(), &[])
                    .await
                    .map_err(|e| SqlError::Backend(format!("PostgreSQL: {e} (running {sql})")))?;
                let schema: SchemaRef = Arc::new(plan.schema().as_arrow().clone());
                let batch = rows_to_batch(&schema, &rows)
                    .map_err(|e| SqlError::Backend(format!("{e} (running {sql})")))?;
                Ok(vec![batch])
            }
        }
    }
}

impl Cluster {
    /// Whether the scheduler accepts a connection (within 5 s): checked before the charge, so
    /// a query to a cluster that is down costs nothing.
    pub(crate) async fn reachable(&self) -> Result<()> {
        let wait = Duration::from_secs(5).min(self.timeout);
        match tokio::time::timeout(wait, tokio::net::TcpStream::connect(&self.scheduler)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(SqlError::Cluster(format!(
                "cannot reach the scheduler of {} at {}: {e} (nothing was charged)",
                self.name, self.scheduler
            ))),
            Err(_) => Err(SqlError::Cluster(format!(
                "the scheduler of {} at {} did not answer within {} s (nothing was charged)",
                self.name,
                self.scheduler,
                wait.as_secs()
            ))),
        }
    }
}

/// The PostgreSQL text of a statistics plan.
pub(crate) fn to_postgres_sql(plan: &LogicalPlan) -> Result<String> {
    let dialect = PostgreSqlDialect {};
    let plan = wide_integer_arithmetic(plan.clone())?;
    let statement = Unparser::new(&dialect)
        .plan_to_sql(&plan)
        .map_err(|e| SqlError::Internal(format!("cannot unparse to PostgreSQL: {e}")))?;
    Ok(statement.to_string())
}

fn rows_to_batch(schema: &SchemaRef, rows: &[tokio_postgres::Row]) -> Result<RecordBatch> {
    let mut columns: Vec<ArrayRef> = Vec::new();
    for (position, f) in schema.fields().iter().enumerate() {
        // The unparser may order the SELECT list differently: match columns by name.
        let i = rows
            .first()
            .and_then(|r| r.columns().iter().position(|c| c.name() == f.name()))
            .unwrap_or(position);
        let bad = |e: tokio_postgres::Error| {
            let got = rows
                .first()
                .and_then(|r| r.columns().get(i))
                .map(|c| c.type_().to_string())
                .unwrap_or_default();
            SqlError::Backend(format!(
                "PostgreSQL column {} ({got}, expected {}): {e}",
                f.name(),
                f.data_type()
            ))
        };
        let array: ArrayRef = match f.data_type() {
            DataType::Int64 => {
                let mut b = Int64Builder::with_capacity(rows.len());
                for r in rows {
                    let v = match r.try_get::<_, Option<i64>>(i) {
                        Ok(v) => v,
                        Err(_) => r.try_get::<_, Option<i32>>(i).map_err(bad)?.map(i64::from),
                    };
                    b.append_option(v);
                }
                Arc::new(b.finish())
            }
            DataType::Float64 => {
                let mut b = Float64Builder::with_capacity(rows.len());
                for r in rows {
                    let v = match r.try_get::<_, Option<f64>>(i) {
                        Ok(v) => v,
                        Err(_) => r
                            .try_get::<_, Option<i64>>(i)
                            .map_err(bad)?
                            .map(|x| x as f64),
                    };
                    b.append_option(v);
                }
                Arc::new(b.finish())
            }
            DataType::Utf8 => {
                let mut b = StringBuilder::new();
                for r in rows {
                    b.append_option(r.try_get::<_, Option<String>>(i).map_err(bad)?);
                }
                Arc::new(b.finish())
            }
            DataType::Boolean => {
                let mut b = BooleanBuilder::with_capacity(rows.len());
                for r in rows {
                    b.append_option(r.try_get::<_, Option<bool>>(i).map_err(bad)?);
                }
                Arc::new(b.finish())
            }
            other => {
                return Err(SqlError::Internal(format!(
                    "statistics column {} has type {other}",
                    f.name()
                )))
            }
        };
        columns.push(array);
    }
    let nullable = Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect::<Vec<_>>(),
    ));
    RecordBatch::try_new(nullable, columns).map_err(|e| SqlError::Internal(e.to_string()))
}

/// Integer arithmetic as DataFusion types it, in PostgreSQL too. DataFusion computes integer
/// `+ - * / %` and negation in 64 bits, while PostgreSQL types a literal such as `2147483000`
/// as a 32-bit `integer` and raises "integer out of range" when `CASE … THEN 2147483000 …
/// END + 1000` overflows it — on the rows that reach that branch. Every integer operand of
/// arithmetic is therefore cast to `BIGINT` in the SQL sent to PostgreSQL (a cast that cannot
/// fail); the planner has already refused 64-bit arithmetic that could overflow.
fn wide_integer_arithmetic(plan: LogicalPlan) -> Result<LogicalPlan> {
    use datafusion::common::tree_node::{Transformed, TreeNode};
    use datafusion::logical_expr::expr_rewriter::NamePreserver;
    use datafusion::logical_expr::{cast, BinaryExpr, ExprSchemable, Operator};

    fn widen(e: Expr, schema: &datafusion::common::DFSchema) -> Expr {
        let integer = e.get_type(schema).is_ok_and(|t| t.is_integer());
        match &e {
            Expr::Cast(c) if *c.field.data_type() == DataType::Int64 => e,
            _ if integer => cast(e, DataType::Int64),
            _ => e,
        }
    }
    let rewritten = plan
        .transform_up(|node| {
            if !matches!(
                node,
                LogicalPlan::Filter(_) | LogicalPlan::Projection(_) | LogicalPlan::Aggregate(_)
            ) {
                return Ok(Transformed::no(node));
            }
            let inputs = node.inputs();
            let Some(input) = inputs.first() else {
                return Ok(Transformed::no(node));
            };
            let schema = Arc::clone(input.schema());
            let names = NamePreserver::new(&node);
            node.map_expressions(|e| {
                let saved = names.save(&e);
                let out = e.transform_up(|x| match x {
                    Expr::BinaryExpr(BinaryExpr { left, op, right })
                        if matches!(
                            op,
                            Operator::Plus
                                | Operator::Minus
                                | Operator::Multiply
                                | Operator::Divide
                                | Operator::Modulo
                        ) =>
                    {
                        let l = widen(*left, &schema);
                        let r = widen(*right, &schema);
                        Ok(Transformed::yes(Expr::BinaryExpr(BinaryExpr::new(
                            Box::new(l),
                            op,
                            Box::new(r),
                        ))))
                    }
                    Expr::Negative(inner) => Ok(Transformed::yes(Expr::Negative(Box::new(widen(
                        *inner, &schema,
                    ))))),
                    other => Ok(Transformed::no(other)),
                })?;
                Ok(out.update_data(|e| saved.restore(e)))
            })
        })
        .map_err(|e| SqlError::Internal(format!("cannot prepare SQL for PostgreSQL: {e}")))?;
    Ok(rewritten.data)
}
