//! The Rust side of `bench/python_overhead.py`: times the operations the `veil` Python package
//! wraps, called directly from Rust, and prints one JSON object per line
//! (`{"op", "median_us", "runs"}`). The script times the same operations through Python.
//!
//! ```sh
//! cargo run --release -p veil-py --example python_overhead -- 20 /tmp/persons.csv
//! ```
//! Arguments: runs per operation (default 20); a persons CSV for the DP SQL query (written by
//! the script with `veil dp sample`; skipped when absent).

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "a benchmark program"
)]

use std::time::Instant;

use veil_he::ckks::{CkksContext, CkksParameters, CkksVector, Preset, VectorContext};

/// The allocator the Python module uses too (see the crate's lib.rs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn median_us(runs: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut t: Vec<f64> = (0..runs)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

fn emit(op: &str, us: f64, runs: usize) {
    println!(
        "{}",
        serde_json::json!({"op": op, "median_us": us, "runs": runs})
    );
}

fn main() {
    let mut args = std::env::args().skip(1);
    let runs: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20);
    let persons = args.next();

    let params = CkksParameters::preset(Preset::N8192Depth2).expect("preset");
    let ctx = VectorContext::builder(CkksContext::new(params).expect("context"))
        .build()
        .expect("keys");
    let n = ctx.ckks().params().slots();
    let x: Vec<f64> = (0..n).map(|i| (i as f64 / n as f64) - 0.5).collect();
    let a = CkksVector::encrypt(&ctx, &x).expect("encrypt");
    let b = CkksVector::encrypt(&ctx, &x).expect("encrypt");
    let m: Vec<Vec<f64>> = (0..64)
        .map(|i| (0..64).map(|j| ((i * 64 + j) % 7) as f64 / 7.0).collect())
        .collect();
    let small = CkksVector::encrypt(&ctx, &x[..64]).expect("encrypt");
    // A cyclic rotation needs room for a second copy: half the slots.
    let half = CkksVector::encrypt(&ctx, &x[..n / 2]).expect("encrypt");
    let bytes = a.to_bytes();

    emit(
        "encrypt",
        median_us(runs, || drop(CkksVector::encrypt(&ctx, &x).expect("op"))),
        runs,
    );
    emit(
        "add",
        median_us(runs, || drop(a.add(&b).expect("op"))),
        runs,
    );
    emit(
        "mul",
        median_us(runs, || drop(a.mul(&b).expect("op"))),
        runs,
    );
    emit(
        "mul_plain",
        median_us(runs, || drop(a.mul_plain(&x).expect("op"))),
        runs,
    );
    emit(
        "add_scalar",
        median_us(runs, || drop(a.add_scalar(1.5).expect("op"))),
        runs,
    );
    emit(
        "dot",
        median_us(runs, || drop(a.dot(&b).expect("op"))),
        runs,
    );
    emit("sum", median_us(runs, || drop(a.sum().expect("op"))), runs);
    emit(
        "rotate",
        median_us(runs, || drop(half.rotate(1).expect("op"))),
        runs,
    );
    emit(
        "polyval",
        median_us(runs, || drop(a.polyval(&[0.5, 0.25, 0.125]).expect("op"))),
        runs,
    );
    emit(
        "matmul_64",
        median_us(runs, || drop(small.matmul(&m).expect("op"))),
        runs,
    );
    emit(
        "decrypt",
        median_us(runs, || drop(a.decrypt().expect("op"))),
        runs,
    );
    emit("serialize", median_us(runs, || drop(a.to_bytes())), runs);
    emit(
        "deserialize",
        median_us(runs, || {
            drop(CkksVector::from_bytes(&ctx, &bytes).expect("op"))
        }),
        runs,
    );

    if let Some(csv) = persons {
        dp_query(runs, std::path::Path::new(&csv));
    }
}

/// The DP SQL query of the bench on the persons file, charged to a throwaway ledger.
fn dp_query(runs: usize, csv: &std::path::Path) {
    use veil_dp::ledger::SqliteLedger;
    use veil_dp_sql::{Engine, Metadata, QueryOptions};
    let dir = std::env::temp_dir().join(format!("veil-overhead-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let ledger = SqliteLedger::open(dir.join("budget.db")).expect("ledger");
    let text = veil_dp_sql::sample::PERSONS_METADATA;
    ledger
        .register(
            "persons",
            &veil_dp_sql::dataset::metadata_sha256(text.as_bytes()),
            1e9,
            0.5,
        )
        .expect("register");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let meta = Metadata::from_toml(text).expect("metadata");
    let engine = rt
        .block_on(Engine::embedded(meta, &[("persons".into(), csv)]))
        .expect("engine");
    let sql = "SELECT sex, COUNT(*) AS n, AVG(income) AS income FROM persons GROUP BY sex";
    let options = QueryOptions {
        epsilon: 0.01,
        ..QueryOptions::default()
    };
    let us = median_us(runs, || {
        rt.block_on(engine.query(&ledger, "persons", "bench", sql, options))
            .expect("query");
    });
    emit("dp_sql_query", us, runs);
    let _ = std::fs::remove_dir_all(&dir);
}
