//! The DP query against the same plain query on a running Ballista cluster (`bench/dp_ballista.sh`
//! starts one and runs this).
//!
//! ```text
//! cluster_bench --url ballista://127.0.0.1:50050 --data /tmp/persons-1e8 --rows 100000000
//! ```
//!
//! Generates `--rows` persons as Parquet partition files under `--data` (once; reused when the
//! directory holds them), then times, on the cluster: the plain `GROUP BY` query, the first DP
//! query (which proves the contribution bound with one scan, cached per file version), and the
//! DP query afterwards. Prints each time and the ratio of the DP query to the plain one.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark fails by panicking"
)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use ballista::prelude::SessionContextExt;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use veil_dp::ledger::SqliteLedger;
use veil_dp_sql::{Metadata, QueryOptions};

const PARTITIONS: u64 = 8;

/// The default query (`--sql` gives another; `--delta` its δ, needed to group by `state`,
/// whose keys are private).
const SQL: &str = "SELECT sex, COUNT(*) AS n, SUM(income) AS s FROM persons GROUP BY sex";

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let url = arg(&args, "--url").unwrap_or_else(|| "ballista://127.0.0.1:50050".into());
    let data = PathBuf::from(arg(&args, "--data").context("--data DIR")?);
    let rows: u64 = arg(&args, "--rows")
        .unwrap_or_else(|| "100000000".into())
        .parse()?;
    let runs: usize = arg(&args, "--runs").unwrap_or_else(|| "3".into()).parse()?;
    let sql = arg(&args, "--sql").unwrap_or_else(|| SQL.into());
    let delta: f64 = arg(&args, "--delta")
        .unwrap_or_else(|| "0".into())
        .parse()?;
    if !data
        .join(format!("part-{}.parquet", PARTITIONS - 1))
        .exists()
    {
        let t = Instant::now();
        eprintln!("generating {rows} rows under {} …", data.display());
        veil_dp_ballista::sample::write_parquet(&data, rows, PARTITIONS, None)?;
        eprintln!("generated in {:.1} s", t.elapsed().as_secs_f64());
    }
    let data = std::fs::canonicalize(&data)?;

    // The plain query on the cluster.
    let (host, port) = veil_dp_ballista::parse_url(&url)?;
    let state = veil_dp_sql::engine::session_state()?;
    let plain = SessionContext::remote_with_state(&format!("df://{host}:{port}"), state).await?;
    plain
        .register_parquet(
            "persons",
            data.to_str().context("UTF-8 path")?,
            ParquetReadOptions::default(),
        )
        .await?;
    let mut plain_times = Vec::new();
    let mut groups = 0;
    for _ in 0..runs {
        let t = Instant::now();
        let batches = plain.sql(&sql).await?.collect().await?;
        plain_times.push(t.elapsed());
        groups = batches.iter().map(|b| b.num_rows()).sum();
    }

    // The DP query: the engine on the same cluster, charged to a scratch ledger.
    let dir = tempfile::tempdir()?;
    let ledger = SqliteLedger::open(dir.path().join("budget.db"))?;
    ledger.set_budget("persons", None, 1000.0, 1e-5)?;
    let meta = Metadata::from_toml(veil_dp_sql::sample::PERSONS_METADATA)?;
    let engine = veil_dp_ballista::engine(
        meta,
        &url,
        &[("persons".into(), data.as_path())],
        Duration::from_secs(3600),
    )
    .await?;
    let options = QueryOptions {
        epsilon: 1.0,
        delta,
        ..Default::default()
    };
    let t = Instant::now();
    engine
        .query(&ledger, "persons", "bench", &sql, options)
        .await?;
    let first = t.elapsed();
    let mut dp_times = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let r = engine
            .query(&ledger, "persons", "bench", &sql, options)
            .await?;
        dp_times.push(t.elapsed());
        let released: usize = r.batches.iter().map(|b| b.num_rows()).sum();
        anyhow::ensure!(
            released == groups,
            "the DP query released {released} groups of {groups}"
        );
    }
    let (p, d) = (median(plain_times.clone()), median(dp_times.clone()));
    println!("rows: {rows} in {PARTITIONS} Parquet partitions, cluster {url}");
    println!("query: {sql} (ε = 1, δ = {delta})");
    println!(
        "plain on Ballista: median {:.2} s of {plain_times:.2?}",
        p.as_secs_f64()
    );
    println!(
        "DP, first (proves the contribution bound, cached per file version): {:.2} s",
        first.as_secs_f64()
    );
    println!(
        "DP on Ballista: median {:.2} s of {dp_times:.2?}",
        d.as_secs_f64()
    );
    println!("ratio DP / plain: {:.2}", d.as_secs_f64() / p.as_secs_f64());
    Ok(())
}
