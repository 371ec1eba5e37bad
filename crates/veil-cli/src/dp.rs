//! `veil dp …`: differential privacy over a dataset described by its metadata file.

use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use veil_dp::ledger::Registration;
use veil_dp_sql::metadata::{dataset_name, Metadata};

use crate::attest::Format;

#[derive(Subcommand, Debug)]
pub enum DpCommand {
    /// Register a dataset in a ledger (the operator's step): the SHA-256 of its metadata file
    /// and its total budget. Queries are answered only for registered, unchanged metadata.
    #[command(subcommand)]
    Dataset(DatasetCommand),
    /// Show a dataset's privacy budget: total (set at registration), spent, remaining, and
    /// every charge; `budget set` sets one analyst's own budget.
    Budget(BudgetArgs),
    /// Answer a SQL query with differential privacy (noisy aggregates, charged to the budget
    /// before anything is computed).
    Query(QueryArgs),
    /// Time queries through the DP engine (one engine, every run charged to the ledger):
    /// latency per query, for comparisons with other DP SQL systems.
    Bench(BenchArgs),
    /// Write the synthetic sample dataset (persons.csv, generated here from a seed) and its
    /// metadata (persons.toml).
    Sample(SampleArgs),
}

/// `veil dp dataset …`
#[derive(Subcommand, Debug)]
pub enum DatasetCommand {
    /// Register (or re-register) the dataset a metadata file describes: the ledger records the
    /// file's SHA-256 and the total budget. Charges already recorded stay.
    Register(RegisterArgs),
}

#[derive(Args, Debug)]
pub struct RegisterArgs {
    /// The dataset's metadata (TOML); the dataset is named after the file (persons.toml →
    /// persons).
    #[arg(long)]
    pub metadata: PathBuf,
    /// The ledger: a SQLite file (default: NAME.budget.db beside the metadata) or a
    /// PostgreSQL URL.
    #[arg(long)]
    pub ledger: Option<String>,
    /// The dataset's total ε (default: [budget] epsilon of the metadata).
    #[arg(long)]
    pub total_epsilon: Option<f64>,
    /// The dataset's total δ (default: [budget] delta of the metadata).
    #[arg(long)]
    pub total_delta: Option<f64>,
}

#[derive(Args, Debug)]
pub struct SampleArgs {
    /// Directory to write persons.csv and persons.toml into.
    #[arg(long, default_value = "data")]
    pub dir: PathBuf,
    /// Number of persons (one row each).
    #[arg(long, default_value_t = 100_000)]
    pub rows: u64,
    /// Seed of the generator (same seed, same file).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Also write persons.parquet (the same rows).
    #[arg(long)]
    pub parquet: bool,
}

/// How `veil dp query` prints its answer.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueryFormat {
    /// A text table, then the cost and the accuracy.
    Table,
    /// One JSON object: columns, rows, epsilon, delta, remaining_epsilon, remaining_delta,
    /// accuracy.
    Json,
}

/// Where the data is, what a query may spend, and who asks.
#[derive(Args, Debug)]
pub struct DataArgs {
    /// The dataset's metadata (TOML: [budget], [table.NAME], columns with bounds).
    #[arg(long)]
    pub metadata: PathBuf,
    /// A table of the metadata and its data: NAME=FILE (.csv with a header line, or
    /// .parquet) or NAME=DIRECTORY (partition files of one format). Repeat for joins. Not
    /// used with --backend postgres://….
    #[arg(long = "table", value_name = "NAME=FILE")]
    pub tables: Vec<String>,
    /// ε each query may spend (split over the noisy measurements it needs).
    #[arg(long)]
    pub epsilon: f64,
    /// δ for τ-thresholding of private grouping keys (spent only when the query groups by
    /// a column without public_keys) and, with Gaussian noise, for its conversion to (ε, δ).
    #[arg(long, default_value_t = 1e-6)]
    pub delta: f64,
    /// laplace or gaussian (zCDP-accounted, sized by L2 sensitivity; needs δ > 0). Default:
    /// the metadata's [budget] noise, else laplace.
    #[arg(long, value_name = "KIND", value_parser = parse_noise)]
    pub noise: Option<veil_dp_sql::Noise>,
    /// The ledger: a SQLite file (default: NAME.budget.db beside the metadata) or a
    /// PostgreSQL URL.
    #[arg(long)]
    pub ledger: Option<String>,
    /// Run the bounded statistics on a PostgreSQL server (postgres://user@host:port/db) or
    /// on an Apache Ballista cluster over the --table files (ballista://host:port; needs a
    /// veil built with `--features ballista`) instead of the embedded engine.
    #[arg(long)]
    pub backend: Option<String>,
    /// With --backend ballista://…: seconds one statistics job may run before the query fails.
    #[arg(long, value_name = "SECONDS", default_value_t = 600)]
    pub cluster_timeout: u64,
    /// Who is asking (charged to this analyst's own budget too, if one is set).
    #[arg(long, default_value = "analyst")]
    pub analyst: String,
    /// Groups of the GROUP BY one privacy unit may fall into (the L0 bound, ZetaSQL's
    /// max_groups_contributed): a unit in more keeps this many, chosen at random. Default:
    /// the metadata's max_groups_per_unit, else max_rows_per_unit.
    #[arg(long, value_name = "N")]
    pub max_groups_per_unit: Option<u64>,
    /// Rows one privacy unit may bring to any one group (the L∞ bound). Default: the
    /// metadata's max_rows_per_group, else max_rows_per_unit.
    #[arg(long, value_name = "N")]
    pub max_rows_per_group: Option<u64>,
}

#[derive(Args, Debug)]
pub struct QueryArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = QueryFormat::Table)]
    pub format: QueryFormat,
    /// Show what the query would cost and how accurate it would be (its measurements, their
    /// share of ε, the 95% interval of each column, the keys policy, what the budgets have
    /// left) without reading any data or charging anything.
    #[arg(long)]
    pub dry_run: bool,
    /// The SQL query (SELECT with aggregates).
    pub sql: String,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// How many times to run each query (each run is charged).
    #[arg(long, default_value_t = 10)]
    pub runs: usize,
    /// One JSON object per run: {"sql", "run", "ms", "rows"}.
    #[arg(long)]
    pub json: bool,
    /// The queries.
    #[arg(required = true)]
    pub sql: Vec<String>,
}

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct BudgetArgs {
    /// Set a budget instead of showing one.
    #[command(subcommand)]
    pub action: Option<BudgetAction>,
    /// The dataset's metadata (TOML: [budget], [table.NAME], columns with bounds).
    #[arg(long, required = true)]
    pub metadata: Option<PathBuf>,
    /// The ledger: a SQLite file (default: NAME.budget.db beside the metadata) or a
    /// PostgreSQL URL (postgres://user@host:port/db) for a ledger shared by many analysts.
    #[arg(long)]
    pub ledger: Option<String>,
    /// Also show what this analyst has left of their own budget.
    #[arg(long)]
    pub analyst: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// `veil dp budget set …`
#[derive(Subcommand, Debug)]
pub enum BudgetAction {
    /// Set one analyst's own budget on a registered dataset (the operator's step): every
    /// query is charged to it and to the dataset's total, and refused if either cannot pay.
    Set(BudgetSetArgs),
}

#[derive(Args, Debug)]
pub struct BudgetSetArgs {
    /// The dataset's metadata (the registered file).
    #[arg(long)]
    pub metadata: PathBuf,
    /// The ledger: a SQLite file (default: NAME.budget.db beside the metadata) or a
    /// PostgreSQL URL.
    #[arg(long)]
    pub ledger: Option<String>,
    /// The analyst.
    #[arg(long)]
    pub analyst: String,
    /// The analyst's total ε on this dataset.
    #[arg(long)]
    pub epsilon: f64,
    /// The analyst's total δ on this dataset.
    #[arg(long, default_value_t = 0.0)]
    pub delta: f64,
}

pub fn run(cmd: DpCommand) -> Result<()> {
    match cmd {
        DpCommand::Dataset(DatasetCommand::Register(a)) => register(&a),
        DpCommand::Budget(BudgetArgs {
            action: Some(BudgetAction::Set(a)),
            ..
        }) => budget_set(&a),
        DpCommand::Budget(a) => budget(&a),
        DpCommand::Query(a) => query(&a),
        DpCommand::Bench(a) => bench(&a),
        DpCommand::Sample(a) => sample(&a),
    }
}

/// The ledger named by `--ledger`, or the SQLite file beside the metadata; and how to name it.
pub fn open_ledger(
    ledger: Option<&str>,
    metadata: &Path,
) -> Result<(veil_dp_sql::dataset::SharedLedger, String)> {
    let spec = match ledger {
        Some(spec) => spec.to_string(),
        None => metadata
            .with_file_name(format!("{}.budget.db", dataset_name(metadata)))
            .display()
            .to_string(),
    };
    let l = veil_dp_sql::dataset::open_ledger(&spec).with_context(|| {
        format!(
            "cannot open the ledger {}",
            veil_dp_sql::dataset::shown_ledger(&spec)
        )
    })?;
    Ok((l, veil_dp_sql::dataset::shown_ledger(&spec)))
}

/// A registered dataset, ready to be queried or shown.
pub struct Dataset {
    /// The checked metadata.
    pub meta: Metadata,
    /// The dataset's name in the ledger.
    pub name: String,
    /// The ledger.
    pub ledger: veil_dp_sql::dataset::SharedLedger,
    /// How to name the ledger to a user.
    pub shown: String,
    /// Its registration (total budget, metadata hash).
    pub registration: Registration,
}

/// Loads the metadata and opens its ledger, refusing (before anything can be charged) a
/// dataset that was never registered there or metadata that is not the registered file: the
/// total budget is what the operator registered, never what the file passed says.
pub fn dataset(metadata: &Path, ledger: Option<&str>) -> Result<Dataset> {
    let (ledger, shown) = open_ledger(ledger, metadata)?;
    let veil_dp_sql::dataset::Registered {
        meta,
        name,
        registration,
    } = veil_dp_sql::dataset::registered(metadata, ledger.as_ref())?;
    Ok(Dataset {
        meta,
        name,
        ledger,
        shown,
        registration,
    })
}

fn register(a: &RegisterArgs) -> Result<()> {
    let (meta, sha256) = veil_dp_sql::dataset::read_metadata(&a.metadata)?;
    let name = dataset_name(&a.metadata);
    let (ledger, shown) = open_ledger(a.ledger.as_deref(), &a.metadata)?;
    let before = ledger.registration(&name)?;
    let epsilon = a.total_epsilon.unwrap_or(meta.budget.epsilon);
    let delta = a.total_delta.unwrap_or(meta.budget.delta);
    let accounting = meta.budget.accounting();
    ledger.register_with(&name, &sha256, epsilon, delta, accounting)?;
    let left = ledger.remaining(&name, None)?;
    outln!("dataset    {name} ({})", a.metadata.display());
    outln!("ledger     {shown}");
    outln!("metadata   sha256 {sha256}");
    if let Some(b) = before {
        if b.metadata_sha256 != sha256 {
            outln!("replaces   sha256 {}", b.metadata_sha256);
        }
        outln!("was        ε {}  δ {:e}", b.epsilon, b.delta);
    }
    outln!("budget     ε {epsilon}  δ {delta:e}  ({accounting} accounting)");
    if accounting == veil_dp::ledger::Accounting::Zcdp {
        outln!(
            "           = ρ {} (zCDP, converted at δ {:e}) + δ {:e} to spend outright",
            left.rho,
            delta / 2.0,
            left.delta
        );
    }
    outln!("remaining  ε {}  δ {:e}", left.epsilon, left.delta);
    Ok(())
}

fn budget_set(a: &BudgetSetArgs) -> Result<()> {
    let d = dataset(&a.metadata, a.ledger.as_deref())?;
    d.ledger
        .set_budget(&d.name, Some(&a.analyst), a.epsilon, a.delta)?;
    let left = d.ledger.remaining(&d.name, Some(&a.analyst))?;
    outln!(
        "analyst    {} on {}: budget ε {}  δ {:e}; remaining ε {}  δ {:e}",
        a.analyst,
        d.name,
        a.epsilon,
        a.delta,
        left.epsilon,
        left.delta
    );
    Ok(())
}

fn budget(a: &BudgetArgs) -> Result<()> {
    let metadata = a
        .metadata
        .as_deref()
        .context("give the dataset's metadata: --metadata FILE")?;
    let Dataset {
        name,
        ledger,
        shown,
        registration: reg,
        ..
    } = dataset(metadata, a.ledger.as_deref())?;
    let left = ledger.remaining(&name, None)?;
    let own = match &a.analyst {
        Some(who) => match ledger.remaining(&name, Some(who)) {
            Ok(r) => Some(Some(r)),
            Err(veil_dp::DpError::UnknownDataset(_)) => Some(None),
            Err(e) => return Err(e.into()),
        },
        None => None,
    };
    let history = ledger.history(&name)?;
    // A fold from +0.0: `sum()` of no charges is -0.0, which would print as "-0".
    let spent_eps = history.iter().fold(0.0, |acc, c| acc + c.epsilon);
    let spent_delta = history.iter().fold(0.0, |acc, c| acc + c.delta);
    let spent_rho = history.iter().fold(0.0, |acc, c| acc + c.rho);
    let time = |at: u64| {
        humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(at)).to_string()
    };
    match a.format {
        Format::Json => {
            let charges: Vec<serde_json::Value> = history
                .iter()
                .map(|c| {
                    serde_json::json!({
                        "at": time(c.at),
                        "analyst": c.analyst,
                        "epsilon": c.epsilon,
                        "delta": c.delta,
                        "rho": c.rho,
                        "note": c.note,
                    })
                })
                .collect();
            outln!(
                "{}",
                serde_json::json!({
                    "dataset": name,
                    "ledger": shown,
                    "metadata_sha256": reg.metadata_sha256,
                    "registered_at": time(reg.at),
                    "epsilon": reg.epsilon,
                    "delta": reg.delta,
                    "accounting": reg.accounting.name(),
                    "analyst": a.analyst,
                    "analyst_remaining_epsilon": own.flatten().map(|r| r.epsilon),
                    "analyst_remaining_delta": own.flatten().map(|r| r.delta),
                    "spent_epsilon": spent_eps,
                    "spent_delta": spent_delta,
                    "spent_rho": spent_rho,
                    "remaining_epsilon": left.epsilon,
                    "remaining_delta": left.delta,
                    "remaining_rho": left.rho,
                    "charges": charges,
                })
            );
        }
        Format::Text => {
            outln!("dataset    {name} ({})", metadata.display());
            outln!("ledger     {shown}");
            outln!(
                "registered {}  metadata sha256 {}",
                time(reg.at),
                reg.metadata_sha256
            );
            outln!(
                "budget     ε {}  δ {:e}  ({} accounting)",
                reg.epsilon,
                reg.delta,
                reg.accounting
            );
            if reg.accounting == veil_dp::ledger::Accounting::Zcdp {
                outln!("spent      ρ {spent_rho}  δ {spent_delta:e}");
                outln!(
                    "remaining  ρ {}  δ {:e}  (ε {} after converting the ρ spent)",
                    left.rho,
                    left.delta,
                    left.epsilon
                );
            } else {
                outln!("spent      ε {spent_eps}  δ {spent_delta:e}");
                outln!("remaining  ε {}  δ {:e}", left.epsilon, left.delta);
            }
            match (&a.analyst, own) {
                (Some(who), Some(Some(r))) => {
                    outln!(
                        "analyst    {who}: remaining ε {}  δ {:e}",
                        r.epsilon,
                        r.delta
                    )
                }
                (Some(who), _) => outln!("analyst    {who}: no budget of their own"),
                _ => {}
            }
            outln!("charges    {}", history.len());
            for c in &history {
                outln!(
                    "  {}  {:<12} ε {:<8} δ {:<8e} {}",
                    time(c.at),
                    c.analyst,
                    c.epsilon,
                    c.delta,
                    c.note
                );
            }
        }
    }
    Ok(())
}

/// The `NAME=FILE` pairs of `--table`.
fn table_args(tables: &[String]) -> Result<Vec<(String, PathBuf)>> {
    tables
        .iter()
        .map(|t| match t.split_once('=') {
            Some((name, path)) if !name.is_empty() && !path.is_empty() => {
                Ok((name.to_string(), PathBuf::from(path)))
            }
            _ => {
                anyhow::bail!("--table takes NAME=FILE (e.g. persons=data/persons.csv), not {t:?}")
            }
        })
        .collect()
}

/// The ledger, the dataset's name and the engine that `DataArgs` describe.
fn engine(
    a: &DataArgs,
    rt: &tokio::runtime::Runtime,
) -> Result<(
    veil_dp_sql::dataset::SharedLedger,
    String,
    veil_dp_sql::Engine,
)> {
    let Dataset {
        meta, name, ledger, ..
    } = dataset(&a.metadata, a.ledger.as_deref())?;
    let tables = table_args(&a.tables)?;
    let engine = rt.block_on(async {
        match &a.backend {
            Some(url) if url.starts_with("ballista://") => {
                if tables.is_empty() {
                    anyhow::bail!(
                        "give the data the executors read: --table NAME=FILE or NAME=DIRECTORY"
                    );
                }
                let pairs: Vec<(String, &Path)> = tables
                    .iter()
                    .map(|(n, p)| (n.clone(), p.as_path()))
                    .collect();
                ballista_engine(meta, url, &pairs, a.cluster_timeout).await
            }
            Some(url) => {
                if !tables.is_empty() {
                    anyhow::bail!(
                        "--table is for files; with --backend the tables are read from the server"
                    );
                }
                Ok(veil_dp_sql::Engine::postgres(meta, url).await?)
            }
            None => {
                if tables.is_empty() {
                    anyhow::bail!("give the data: --table NAME=FILE (or --backend postgres://…)");
                }
                let pairs: Vec<(String, &Path)> = tables
                    .iter()
                    .map(|(n, p)| (n.clone(), p.as_path()))
                    .collect();
                Ok(veil_dp_sql::Engine::embedded(meta, &pairs).await?)
            }
        }
    })?;
    Ok((ledger, name, engine))
}

/// The engine on a Ballista cluster.
#[cfg(feature = "ballista")]
async fn ballista_engine(
    meta: veil_dp_sql::Metadata,
    url: &str,
    tables: &[(String, &Path)],
    timeout: u64,
) -> Result<veil_dp_sql::Engine> {
    let timeout = std::time::Duration::from_secs(timeout.max(1));
    Ok(veil_dp_ballista::engine(meta, url, tables, timeout).await?)
}

/// Without the `ballista` feature: says how to get it.
#[cfg(not(feature = "ballista"))]
async fn ballista_engine(
    _meta: veil_dp_sql::Metadata,
    url: &str,
    _tables: &[(String, &Path)],
    _timeout: u64,
) -> Result<veil_dp_sql::Engine> {
    anyhow::bail!(
        "--backend {url}: this veil was built without Ballista; build it with \
         `cargo build --release -p veil-cli --features ballista` (and run the cluster with \
         `veil-ballista scheduler` and `veil-ballista executor`)"
    )
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn options(a: &DataArgs) -> veil_dp_sql::QueryOptions {
    veil_dp_sql::QueryOptions {
        epsilon: a.epsilon,
        delta: a.delta,
        max_groups_per_unit: a.max_groups_per_unit,
        max_rows_per_group: a.max_rows_per_group,
        noise: a.noise,
    }
}

fn parse_noise(s: &str) -> std::result::Result<veil_dp_sql::Noise, String> {
    s.parse().map_err(|e: veil_dp_sql::SqlError| e.to_string())
}

/// What the ledger charges, in words.
fn charge_line(
    accounting: veil_dp::ledger::Accounting,
    c: &veil_dp_sql::Charged,
    rho: Option<f64>,
) -> String {
    match (accounting, rho) {
        (veil_dp::ledger::Accounting::Zcdp, _) => format!(
            "ρ {}  δ {:e}  (zCDP accounting: the ledger adds up ρ and converts the total once)",
            c.rho, c.delta
        ),
        (_, Some(rho)) => format!(
            "ε {}  δ {:e}  (Gaussian noise: ρ {rho}, converted at the query's δ)",
            c.epsilon, c.delta
        ),
        _ => format!("ε {}  δ {:e}", c.epsilon, c.delta),
    }
}

fn query(a: &QueryArgs) -> Result<()> {
    let rt = runtime()?;
    let (ledger, name, engine) = engine(&a.data, &rt)?;
    // `EXPLAIN <query>` is the dry run of the query.
    let (sql, dry_run) = match veil_dp_sql::explained(&a.sql)? {
        Some(inner) => (inner, true),
        None => (a.sql.as_str(), a.dry_run),
    };
    if dry_run {
        let p = rt.block_on(engine.preview(
            ledger.as_ref(),
            &name,
            &a.data.analyst,
            sql,
            options(&a.data),
        ))?;
        for w in &p.warnings {
            eprintln!("warning: {w}");
        }
        match a.format {
            QueryFormat::Json => outln!("{}", serde_json::to_string(&p)?),
            QueryFormat::Table => {
                outln!("dry run    nothing was read and nothing was charged");
                outln!(
                    "cost       ε {}  δ {:e}   (the dataset has ε {}  δ {:e} left)",
                    p.epsilon,
                    p.delta,
                    p.remaining_epsilon,
                    p.remaining_delta
                );
                if p.analyst_remaining_epsilon.is_finite() {
                    outln!(
                        "analyst    {} has ε {}  δ {:e} left",
                        a.data.analyst,
                        p.analyst_remaining_epsilon,
                        p.analyst_remaining_delta
                    );
                }
                outln!(
                    "affordable {}",
                    if p.affordable {
                        "yes"
                    } else {
                        "no: the query would be refused"
                    }
                );
                outln!(
                    "charge     {}",
                    charge_line(p.accounting, &p.charged, p.rho)
                );
                for m in &p.measurements {
                    let scale = match (m.scale, m.mechanism.as_str()) {
                        (Some(s), "Gaussian") => format!(", σ {s:.4}"),
                        (Some(s), _) => format!(", b {s:.4}"),
                        (None, _) => String::new(),
                    };
                    outln!(
                        "measure    {} ({}, ε {}, sensitivity {}{scale})",
                        m.what,
                        m.mechanism,
                        m.epsilon,
                        m.sensitivity
                    );
                }
                for (column, half) in &p.accuracy {
                    match half {
                        Some(h) => {
                            outln!("accuracy   {column}: ± {h:.3} (95% confidence, noise only)")
                        }
                        None => outln!("accuracy   {column}: depends on the data (no closed form)"),
                    }
                }
                for b in &p.estimated_bounds {
                    outln!(
                        "estimated  {}.{} in [{}, {}] (a DP estimate kept in the ledger; free)",
                        b.table,
                        b.column,
                        b.lower,
                        b.upper
                    );
                }
                for b in &p.bounds_to_estimate {
                    outln!(
                        "estimate   {}.{}: its bounds are estimated first (ε {}, in the charge)",
                        b.table,
                        b.column,
                        b.epsilon
                    );
                }
                outln!("keys       {}", p.keys);
                outln!("bounds     {}", p.contribution);
            }
        }
        return Ok(());
    }
    let spinner = crate::progress::spinner("running the bounded query");
    let result = rt.block_on(engine.query(
        ledger.as_ref(),
        &name,
        &a.data.analyst,
        &a.sql,
        options(&a.data),
    ));
    drop(spinner);
    let result = result?;
    for w in &result.warnings {
        eprintln!("warning: {w}");
    }
    match a.format {
        QueryFormat::Json => outln!("{}", result.to_json()?),
        QueryFormat::Table => {
            outln!("{}", result.to_table()?);
            outln!(
                "cost       ε {}  δ {:e}   (remaining ε {}  δ {:e})",
                result.epsilon,
                result.delta,
                result.remaining_epsilon,
                result.remaining_delta
            );
            outln!(
                "charge     {}",
                charge_line(result.accounting, &result.charged, result.rho)
            );
            for (column, half) in &result.accuracy {
                match half {
                    Some(h) => outln!("accuracy   {column}: ± {h:.3} (95% confidence, noise only)"),
                    None => outln!("accuracy   {column}: no closed form"),
                }
            }
            if let Some(tau) = result.threshold {
                outln!("threshold  private keys released only above a noisy count of {tau:.1}");
            }
            for b in &result.estimated_bounds {
                outln!(
                    "estimated  {}.{} clamped to [{}, {}] ({})",
                    b.table,
                    b.column,
                    b.lower,
                    b.upper,
                    if b.estimated_now {
                        format!("a DP estimate made now, charged ε {} on its own", b.epsilon)
                    } else {
                        "a DP estimate kept in the ledger, free".to_string()
                    }
                );
            }
        }
    }
    Ok(())
}

fn bench(a: &BenchArgs) -> Result<()> {
    let rt = runtime()?;
    let (ledger, name, engine) = engine(&a.data, &rt)?;
    for sql in &a.sql {
        let mut times = Vec::with_capacity(a.runs);
        for run in 0..a.runs {
            let t = std::time::Instant::now();
            let r = rt.block_on(engine.query(
                ledger.as_ref(),
                &name,
                &a.data.analyst,
                sql,
                options(&a.data),
            ))?;
            let ms = t.elapsed().as_secs_f64() * 1e3;
            times.push(ms);
            if a.json {
                outln!(
                    "{}",
                    serde_json::json!({"sql": sql, "run": run, "ms": ms, "rows": r.rows()?})
                );
            }
        }
        if !a.json {
            times.sort_by(f64::total_cmp);
            let median = times.get(times.len() / 2).copied().unwrap_or(0.0);
            outln!("{median:>9.2} ms  median of {}  {sql}", a.runs);
        }
    }
    Ok(())
}

fn sample(a: &SampleArgs) -> Result<()> {
    use std::io::Write as _;
    std::fs::create_dir_all(&a.dir)
        .with_context(|| format!("cannot create {}", a.dir.display()))?;
    let csv = a.dir.join("persons.csv");
    let meta = a.dir.join("persons.toml");
    let file =
        std::fs::File::create(&csv).with_context(|| format!("cannot write {}", csv.display()))?;
    let mut out = std::io::BufWriter::new(file);
    veil_dp_sql::sample::write_persons(&mut out, a.rows, a.seed)?;
    out.flush()?;
    std::fs::write(&meta, veil_dp_sql::sample::PERSONS_METADATA)
        .with_context(|| format!("cannot write {}", meta.display()))?;
    outln!(
        "{}  ({} synthetic persons, seed {})",
        csv.display(),
        a.rows,
        a.seed
    );
    outln!(
        "{}  (metadata: budget, privacy unit, bounds)",
        meta.display()
    );
    outln!(
        "register it before querying: veil dp dataset register --metadata {}",
        meta.display()
    );
    if a.parquet {
        let parquet = a.dir.join("persons.parquet");
        runtime()?.block_on(veil_dp_sql::sample::csv_to_parquet(&csv, &parquet))?;
        outln!("{}  (the same rows)", parquet.display());
    }
    Ok(())
}
