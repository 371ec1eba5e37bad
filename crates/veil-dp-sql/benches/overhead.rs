//! Overhead of the DP rewrite over the plain DataFusion query on the same data.
//!
//! ```sh
//! cargo bench -p veil-dp-sql --bench overhead                 # 1 M rows
//! VEIL_BENCH_ROWS=10000000 cargo bench -p veil-dp-sql --bench overhead
//! ```
//!
//! Writes the synthetic `persons` table (CSV, and Parquet converted by DataFusion) under
//! `target/veil-dp-bench/` (never committed), then per query and format times the plain
//! query (DataFusion, exact) and the DP query (planning, bound proof or cache, bounded
//! statistics, noise, post-processing, ledger charge), median of `VEIL_BENCH_RUNS` (5) after
//! one warm-up, and prints the ratio. The first DP query on a file also examines it once
//! (rows per unit, NULL units, column ranges: two aggregations, cached per file version); its
//! time is printed as `cold`. CSV files of up to 256 MiB are parsed into memory by the engine
//! when registered, so the plain query gets the same in-memory table.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    reason = "a benchmark binary"
)]

use std::path::{Path, PathBuf};
use std::time::Instant;

use datafusion::prelude::{CsvReadOptions, ParquetReadOptions, SessionContext};
use veil_dp::ledger::{Ledger, SqliteLedger};
use veil_dp_sql::{Engine, Metadata, QueryOptions};

const QUERIES: &[&str] = &[
    "SELECT COUNT(*) FROM persons WHERE age > 30",
    "SELECT sex, COUNT(*), AVG(income) FROM persons GROUP BY sex",
    "SELECT state, COUNT(*), SUM(age) FROM persons WHERE age > 30 GROUP BY state",
    "SELECT AVG(age), VAR(income) FROM persons",
];

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

async fn data(dir: &Path, rows: u64) -> (PathBuf, PathBuf) {
    let csv = dir.join(format!("persons-{rows}.csv"));
    let parquet = dir.join(format!("persons-{rows}.parquet"));
    if !csv.exists() {
        std::fs::create_dir_all(dir).unwrap();
        let tmp = csv.with_extension("tmp");
        let mut out = std::io::BufWriter::new(std::fs::File::create(&tmp).unwrap());
        veil_dp_sql::sample::write_persons(&mut out, rows, 1).unwrap();
        drop(out);
        std::fs::rename(&tmp, &csv).unwrap();
    }
    if !parquet.exists() {
        let ctx = SessionContext::new();
        use datafusion::arrow::datatypes::{DataType, Field, Schema};
        let schema = Schema::new(
            [
                ("person_id", DataType::Int64),
                ("age", DataType::Int64),
                ("income", DataType::Float64),
                ("sex", DataType::Utf8),
                ("state", DataType::Utf8),
            ]
            .map(|(n, t)| Field::new(n, t, true))
            .to_vec(),
        );
        let df = ctx
            .read_csv(csv.to_str().unwrap(), CsvReadOptions::new().schema(&schema))
            .await
            .unwrap();
        df.write_parquet(
            parquet.to_str().unwrap(),
            datafusion::dataframe::DataFrameWriteOptions::new().with_single_file_output(true),
            None,
        )
        .await
        .unwrap();
    }
    (csv, parquet)
}

async fn time_plain(ctx: &SessionContext, sql: &str, runs: usize) -> f64 {
    ctx.sql(sql).await.unwrap().collect().await.unwrap();
    let mut t = Vec::new();
    for _ in 0..runs {
        let s = Instant::now();
        ctx.sql(sql).await.unwrap().collect().await.unwrap();
        t.push(s.elapsed().as_secs_f64() * 1e3);
    }
    median(t)
}

async fn time_dp(engine: &Engine, ledger: &(dyn Ledger + Sync), sql: &str, runs: usize) -> f64 {
    let options = QueryOptions {
        epsilon: 1.0,
        delta: 1e-6,
        ..Default::default()
    };
    engine
        .query(ledger, "persons", "bench", sql, options)
        .await
        .unwrap();
    let mut t = Vec::new();
    for _ in 0..runs {
        let s = Instant::now();
        engine
            .query(ledger, "persons", "bench", sql, options)
            .await
            .unwrap();
        t.push(s.elapsed().as_secs_f64() * 1e3);
    }
    median(t)
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is read from the command line.
    let rows = env("VEIL_BENCH_ROWS", 1_000_000) as u64;
    let runs = env("VEIL_BENCH_RUNS", 5);
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/veil-dp-bench");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (csv, parquet) = data(&dir, rows).await;
        let meta = Metadata::from_toml(veil_dp_sql::sample::PERSONS_METADATA).unwrap();
        println!("{rows} rows, median of {runs} runs; plain = DataFusion, exact; dp = Veil, ε = 1");
        println!(
            "{:<8} {:>10} {:>10} {:>7} {:>10}  query",
            "format", "plain ms", "dp ms", "ratio", "cold ms"
        );
        for (format, path) in [("csv", &csv), ("parquet", &parquet)] {
            let plain = SessionContext::new();
            if format == "csv" {
                // The engine parses a CSV of up to 256 MiB once into memory; so does the
                // plain query here (the same bytes, the same Arrow batches).
                let loaded = plain
                    .read_csv(
                        path.to_str().unwrap(),
                        CsvReadOptions::new().has_header(true),
                    )
                    .await
                    .unwrap();
                let schema = loaded.schema().as_arrow().clone();
                let parts = loaded.collect_partitioned().await.unwrap();
                let table =
                    datafusion::datasource::MemTable::try_new(std::sync::Arc::new(schema), parts)
                        .unwrap();
                plain
                    .register_table("persons", std::sync::Arc::new(table))
                    .unwrap();
            } else {
                plain
                    .register_parquet(
                        "persons",
                        path.to_str().unwrap(),
                        ParquetReadOptions::default(),
                    )
                    .await
                    .unwrap();
            }
            let ledger_path = dir.join(format!("bench-{}.db", std::process::id()));
            let ledger = SqliteLedger::open(&ledger_path).unwrap();
            ledger.set_budget("persons", None, 1e9, 0.5).unwrap();
            let engine = Engine::embedded(meta.clone(), &[("persons".into(), path.as_path())])
                .await
                .unwrap();
            for (i, sql) in QUERIES.iter().enumerate() {
                let cold = if i == 0 {
                    let s = Instant::now();
                    engine
                        .query(
                            &ledger,
                            "persons",
                            "bench",
                            sql,
                            QueryOptions {
                                epsilon: 1.0,
                                delta: 1e-6,
                                ..Default::default()
                            },
                        )
                        .await
                        .unwrap();
                    format!("{:.1}", s.elapsed().as_secs_f64() * 1e3)
                } else {
                    "-".into()
                };
                let p = time_plain(&plain, sql, runs).await;
                let d = time_dp(&engine, &ledger, sql, runs).await;
                println!(
                    "{format:<8} {p:>10.1} {d:>10.1} {:>6.2}× {cold:>10}  {sql}",
                    d / p
                );
            }
            drop(ledger);
            let _ = std::fs::remove_file(&ledger_path);
        }
    });
}
