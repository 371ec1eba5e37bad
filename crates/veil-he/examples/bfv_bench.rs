//! BFV (or, with `--scheme bgv`, BGV) per-operation timings as JSON lines, for
//! `bench/bfv_vs_seal.py`:
//!
//! ```text
//! cargo build --release -p veil-he --example bfv_bench
//! RAYON_NUM_THREADS=1 target/release/examples/bfv_bench --degree 8192 --runs 20
//! ```
//!
//! Options: `--degree N` (a preset's degree: 4096, 8192, 16384, 32768), `--runs R`,
//! `--moduli 54,54,54,56` (bit sizes, the last one special), `--plain-bits 20`,
//! `--scheme bfv|bgv`.

use veil_he::bfv::{bench, BfvParameters, BfvPreset};

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut degree = 8192usize;
    let mut runs = 20usize;
    let mut moduli: Option<Vec<u32>> = None;
    let mut plain_bits = 20u32;
    let mut bgv = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--degree" => degree = value()?.parse()?,
            "--runs" => runs = value()?.parse()?,
            "--plain-bits" => plain_bits = value()?.parse()?,
            "--scheme" => {
                bgv = match value()?.as_str() {
                    "bfv" => false,
                    "bgv" => true,
                    other => return Err(format!("unknown scheme {other}: bfv or bgv").into()),
                }
            }
            "--moduli" => {
                moduli = Some(
                    value()?
                        .split(',')
                        .map(str::parse)
                        .collect::<Result<_, _>>()?,
                )
            }
            other => return Err(format!("unknown option {other}").into()),
        }
    }
    let bits = match moduli {
        Some(m) => m,
        None => {
            BfvPreset::ALL
                .into_iter()
                .map(BfvPreset::spec)
                .find(|(n, _)| *n == degree)
                .ok_or(format!("no preset for N = {degree}; give --moduli"))?
                .1
        }
    };
    let builder = BfvParameters::builder()
        .degree(degree)
        .moduli_bits(&bits)
        .plain_modulus_bits(plain_bits);
    let params = if bgv {
        builder.build_bgv()?
    } else {
        builder.build()?
    };
    let t = params.plain_modulus();
    let (timings, fresh, after) = bench::run(params, runs, &|_| true)?;
    for x in timings {
        println!(
            "{{\"op\": \"{}\", \"degree\": {degree}, \"median_us\": {:.2}, \"runs\": {runs}}}",
            x.op, x.median_us
        );
    }
    println!("{{\"op\": \"noise_budget_fresh\", \"degree\": {degree}, \"value\": {fresh}}}");
    println!(
        "{{\"op\": \"noise_budget_after_multiply\", \"degree\": {degree}, \"value\": {after}}}"
    );
    println!("{{\"op\": \"plain_modulus\", \"degree\": {degree}, \"value\": {t}}}");
    Ok(())
}
