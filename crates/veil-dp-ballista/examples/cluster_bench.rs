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

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use ballista::prelude::SessionContextExt;
use datafusion::arrow::array::{Float64Array, Int64Array, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::execution::SessionStateBuilder;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use veil_dp::ledger::SqliteLedger;
use veil_dp_sql::{Metadata, QueryOptions};

const PARTITIONS: u64 = 8;
const BATCH: u64 = 1 << 20;
const STATES: [&str; 8] = ["CA", "TX", "FL", "NY", "PA", "IL", "OH", "GA"];

fn mix(mut x: u64) -> u64 {
    // SplitMix64's finalizer: a cheap, deterministic spread of the row number.
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Writes `rows` persons as `PARTITIONS` Parquet files (two at a time).
fn generate(dir: &Path, rows: u64) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let schema = Arc::new(Schema::new(vec![
        Field::new("person_id", DataType::Int64, false),
        Field::new("age", DataType::Int64, false),
        Field::new("income", DataType::Float64, false),
        Field::new("sex", DataType::Utf8, false),
        Field::new("state", DataType::Utf8, false),
    ]));
    let per = rows.div_ceil(PARTITIONS);
    std::thread::scope(|s| -> anyhow::Result<()> {
        let mut handles = Vec::new();
        for half in 0..2u64 {
            let schema = Arc::clone(&schema);
            handles.push(s.spawn(move || -> anyhow::Result<()> {
                for p in (half..PARTITIONS).step_by(2) {
                    let path = dir.join(format!("part-{p}.parquet"));
                    let tmp = dir.join(format!(".part-{p}.tmp"));
                    let file = std::fs::File::create(&tmp)?;
                    let mut w = ArrowWriter::try_new(file, Arc::clone(&schema), None)?;
                    let (start, end) = (p * per, ((p + 1) * per).min(rows));
                    let mut at = start;
                    while at < end {
                        let n = BATCH.min(end - at);
                        let ids: Vec<i64> = (at..at + n).map(|i| i as i64).collect();
                        let h: Vec<u64> = (at..at + n).map(mix).collect();
                        let age: Vec<i64> = h.iter().map(|x| (x % 90) as i64 + 5).collect();
                        let income: Vec<f64> = h
                            .iter()
                            .map(|x| ((x >> 8) % 200_000) as f64 + 0.5)
                            .collect();
                        let sex: Vec<&str> = h
                            .iter()
                            .map(|x| if x >> 40 & 1 == 0 { "F" } else { "M" })
                            .collect();
                        let state: Vec<&str> = h
                            .iter()
                            .map(|x| STATES[(x >> 20) as usize % STATES.len()])
                            .collect();
                        let batch = RecordBatch::try_new(
                            Arc::clone(&schema),
                            vec![
                                Arc::new(Int64Array::from(ids)),
                                Arc::new(Int64Array::from(age)),
                                Arc::new(Float64Array::from(income)),
                                Arc::new(StringArray::from(sex)),
                                Arc::new(StringArray::from(state)),
                            ],
                        )?;
                        w.write(&batch)?;
                        at += n;
                    }
                    w.close()?;
                    std::fs::rename(&tmp, &path)?;
                }
                Ok(())
            }));
        }
        for h in handles {
            h.join()
                .map_err(|_| anyhow::anyhow!("a generator thread panicked"))??;
        }
        Ok(())
    })
}

const METADATA: &str = r#"
[budget]
epsilon = 1000.0
delta = 1e-5

[table.persons]
privacy_unit = "person_id"
max_rows_per_unit = 1

[table.persons.columns]
person_id = { type = "int" }
age = { type = "int", lower = 0, upper = 100 }
income = { type = "float", lower = 0, upper = 500000 }
sex = { type = "string", public_keys = ["F", "M"] }
state = { type = "string" }
"#;

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
        generate(&data, rows)?;
        eprintln!("generated in {:.1} s", t.elapsed().as_secs_f64());
    }
    let data = std::fs::canonicalize(&data)?;

    // The plain query on the cluster.
    let (host, port) = veil_dp_ballista::parse_url(&url)?;
    let state = SessionStateBuilder::new()
        .with_config(veil_dp_sql::engine::session_config())
        .with_default_features()
        .build();
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
    let meta = Metadata::from_toml(METADATA)?;
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
