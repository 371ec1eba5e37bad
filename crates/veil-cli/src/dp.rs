//! `veil dp …`: differential privacy over a dataset described by its metadata file.

use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use veil_dp::ledger::postgres::PostgresLedger;
use veil_dp::ledger::{Ledger, SqliteLedger};
use veil_dp_sql::metadata::{dataset_name, Metadata};

use crate::attest::Format;

#[derive(Subcommand, Debug)]
pub enum DpCommand {
    /// Show a dataset's privacy budget: total (from the metadata), spent, remaining, and every
    /// charge.
    Budget(BudgetArgs),
    /// Write the synthetic sample dataset (persons.csv, generated here from a seed) and its
    /// metadata (persons.toml).
    Sample(SampleArgs),
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
}

#[derive(Args, Debug)]
pub struct BudgetArgs {
    /// The dataset's metadata (TOML: [budget], [table.NAME], columns with bounds).
    #[arg(long)]
    pub metadata: PathBuf,
    /// The ledger: a SQLite file (default: NAME.budget.db beside the metadata) or a
    /// PostgreSQL URL (postgres://user@host:port/db) for a ledger shared by many analysts.
    #[arg(long)]
    pub ledger: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

pub fn run(cmd: DpCommand) -> Result<()> {
    match cmd {
        DpCommand::Budget(a) => budget(&a),
        DpCommand::Sample(a) => sample(&a),
    }
}

/// The ledger named by `--ledger`, or the SQLite file beside the metadata; and how to name it.
pub fn open_ledger(ledger: Option<&str>, metadata: &Path) -> Result<(Box<dyn Ledger>, String)> {
    match ledger {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            let l = PostgresLedger::connect(url).context("cannot open the PostgreSQL ledger")?;
            // Never print the password part of a URL.
            let shown = match url.split_once('@') {
                Some((_, host)) => format!("postgres://…@{host}"),
                None => url.to_string(),
            };
            Ok((Box::new(l), shown))
        }
        Some(path) => Ok((Box::new(SqliteLedger::open(path)?), path.to_string())),
        None => {
            let path = metadata.with_file_name(format!("{}.budget.db", dataset_name(metadata)));
            let shown = path.display().to_string();
            Ok((Box::new(SqliteLedger::open(&path)?), shown))
        }
    }
}

/// Loads the metadata and opens its ledger with the dataset's total budget set from it (the
/// metadata is the authority on the total; what was spent stays).
pub fn dataset(
    metadata: &Path,
    ledger: Option<&str>,
) -> Result<(Metadata, String, Box<dyn Ledger>, String)> {
    let meta = Metadata::load(metadata)?;
    let name = dataset_name(metadata);
    let (ledger, shown) = open_ledger(ledger, metadata)?;
    ledger.set_budget(&name, None, meta.budget.epsilon, meta.budget.delta)?;
    Ok((meta, name, ledger, shown))
}

fn budget(a: &BudgetArgs) -> Result<()> {
    let (meta, name, ledger, shown) = dataset(&a.metadata, a.ledger.as_deref())?;
    let left = ledger.remaining(&name, None)?;
    let history = ledger.history(&name)?;
    let spent_eps: f64 = history.iter().map(|c| c.epsilon).sum();
    let spent_delta: f64 = history.iter().map(|c| c.delta).sum();
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
                        "note": c.note,
                    })
                })
                .collect();
            outln!(
                "{}",
                serde_json::json!({
                    "dataset": name,
                    "ledger": shown,
                    "epsilon": meta.budget.epsilon,
                    "delta": meta.budget.delta,
                    "spent_epsilon": spent_eps,
                    "spent_delta": spent_delta,
                    "remaining_epsilon": left.epsilon,
                    "remaining_delta": left.delta,
                    "charges": charges,
                })
            );
        }
        Format::Text => {
            outln!("dataset    {name} ({})", a.metadata.display());
            outln!("ledger     {shown}");
            outln!(
                "budget     ε {}  δ {:e}",
                meta.budget.epsilon,
                meta.budget.delta
            );
            outln!("spent      ε {spent_eps}  δ {spent_delta:e}");
            outln!("remaining  ε {}  δ {:e}", left.epsilon, left.delta);
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
    Ok(())
}
