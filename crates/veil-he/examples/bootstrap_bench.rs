//! CKKS bootstrapping benchmark as one JSON line (what `bench/bootstrap_vs_openfhe.py` runs;
//! the same code as `veil he bench --ops bootstrap --json`).
//!
//! ```sh
//! cargo run --release -p veil-he --example bootstrap_bench -- --degree 65536 --slots 32768 --runs 3
//! ```

use veil_he::ckks::bootstrap::bench;

fn main() {
    if let Err(e) = run() {
        eprintln!("bootstrap_bench: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut degree = 65536usize;
    let mut slots: Option<usize> = None;
    let mut runs = 3usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--degree" => degree = value()?.parse()?,
            "--slots" => slots = Some(value()?.parse()?),
            "--runs" => runs = value()?.parse()?,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let progress: veil_he::ckks::vector::ProgressFn = Box::new(|phase, done, total| {
        if done == total {
            eprintln!("[bootstrap_bench] {phase}: {total} done");
        }
    });
    let b = bench::run(degree, slots.unwrap_or(degree / 2), runs, progress)?;
    println!(
        "{{\"degree\": {}, \"slots\": {}, \"runs\": {}, \"keygen_s\": {:.3}, \"prepare_s\": {:.3}, \
         \"median_s\": {:.3}, \"phases_s\": [{:.3}, {:.3}, {:.3}, {:.3}], \"depth\": {}, \
         \"levels_after\": {}, \"worst_bits\": {:.2}, \"mean_bits\": {:.2}, \"peak_memory_bytes\": {}}}",
        b.degree,
        b.slots,
        b.runs,
        b.keygen_s,
        b.prepare_s,
        b.median_s,
        b.phases_s[0],
        b.phases_s[1],
        b.phases_s[2],
        b.phases_s[3],
        b.depth,
        b.levels_after,
        b.worst_bits,
        b.mean_bits,
        b.peak_memory_bytes.unwrap_or(0)
    );
    Ok(())
}
