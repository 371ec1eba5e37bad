//! `veil he …`: homomorphic encryption commands.

use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use rand_core::{RngCore, SeedableRng};
use veil_he::ckks::*;

use crate::progress;

#[derive(Subcommand, Debug)]
pub enum HeCommand {
    /// Per-operation median timings of CKKS (the names match bench/he_vs_seal.py), or of BFV
    /// with `--scheme bfv|bgv` (names as bench/bfv_vs_seal.py).
    Bench(BenchArgs),
    /// List the named parameter presets.
    Presets,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// The scheme: `ckks` (approximate reals), `bfv` or `bgv` (exact integers modulo t).
    #[arg(long, value_enum, default_value_t = Scheme::Ckks)]
    pub scheme: Scheme,
    /// BFV and BGV: bits of the batching plaintext modulus t (default 20, as SEAL's
    /// `PlainModulus::Batching(N, 20)`).
    #[arg(long, default_value_t = 20)]
    pub plain_bits: u32,
    /// Ring degree N (4096 … 65536).
    #[arg(long, default_value_t = 8192)]
    pub degree: usize,
    /// Modulus chain as prime bit sizes, last one special (default depends on N:
    /// 8192 → 60,40,40,60; 16384 → 60,40×7,60; 32768 → 60,40×19,60). `40x7` repeats.
    #[arg(long, value_delimiter = ',')]
    pub moduli: Option<Vec<String>>,
    /// Scale as a power of two (default 40; 20 with N = 4096's default chain [40, 20, 40]).
    #[arg(long)]
    pub scale_bits: Option<u32>,
    /// Timed runs per operation (default: 20 at N ≤ 8192, 10 at 16384, 5 above).
    #[arg(long)]
    pub runs: Option<usize>,
    /// Print one JSON object per line: {"op", "degree", "median_us", "runs"}.
    #[arg(long)]
    pub json: bool,
    /// Only time these operations (comma-separated names, e.g. `rotate_1,rescale`).
    /// `bootstrap` runs the CKKS bootstrapping benchmark instead (N = 65536, the 128-bit
    /// chain of `BootstrapConfig::secure_parameters`): key generation, one refresh per run,
    /// precision over all slots and peak memory.
    #[arg(long, value_delimiter = ',')]
    pub ops: Option<Vec<String>>,
    /// Bootstrapping: slots refreshed (a power of two; default N/2, all of them).
    #[arg(long)]
    pub slots: Option<usize>,
}

/// Homomorphic encryption schemes `veil he bench` measures.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// CKKS: approximate arithmetic on reals.
    Ckks,
    /// BFV: exact arithmetic on integers modulo t.
    Bfv,
    /// BGV: exact arithmetic on integers modulo t (message in the low bits).
    Bgv,
}

pub fn run(cmd: HeCommand) -> Result<()> {
    match cmd {
        HeCommand::Bench(args) => bench(&args),
        HeCommand::Presets => {
            for p in Preset::ALL {
                let (n, bits, scale) = p.spec();
                outln!(
                    "{:<16} N = {n:<6} moduli = {bits:?} scale = 2^{scale}",
                    p.name()
                );
            }
            for p in veil_he::bfv::BfvPreset::ALL {
                let (n, bits) = p.spec();
                outln!(
                    "{:<16} N = {n:<6} moduli = {bits:?} plaintext modulus: 20-bit batching prime",
                    p.name()
                );
            }
            Ok(())
        }
    }
}

/// Parses `60,40x7,60`-style chains.
pub fn parse_moduli(items: &[String]) -> Result<Vec<u32>> {
    let mut out = Vec::new();
    for item in items {
        let item = item.trim();
        if let Some((b, r)) = item.split_once(['x', '×']) {
            let bits: u32 = b
                .trim()
                .parse()
                .with_context(|| format!("bad bit size in {item:?}"))?;
            let reps: usize = r
                .trim()
                .parse()
                .with_context(|| format!("bad repeat count in {item:?}"))?;
            out.extend(std::iter::repeat_n(bits, reps));
        } else {
            out.push(
                item.parse()
                    .with_context(|| format!("bad bit size {item:?}"))?,
            );
        }
    }
    Ok(out)
}

/// The chain the SEAL comparison uses for each degree.
pub fn default_moduli(degree: usize) -> Result<Vec<u32>> {
    let chain = |k: usize| {
        let mut v = vec![60];
        v.extend(std::iter::repeat_n(40, k));
        v.push(60);
        v
    };
    Ok(match degree {
        4096 => vec![40, 20, 40],
        8192 => chain(2),
        16384 => chain(7),
        32768 => chain(19),
        65536 => chain(40),
        _ => bail!("no default modulus chain for N = {degree}; pass --moduli"),
    })
}

fn median_us(samples: &mut [f64]) -> f64 {
    samples.sort_by(f64::total_cmp);
    let n = samples.len();
    if n % 2 == 1 {
        samples[n / 2]
    } else {
        (samples[n / 2 - 1] + samples[n / 2]) / 2.0
    }
}

/// Times `f` `runs` times after one warm-up call; returns the median in microseconds.
fn time<T>(runs: usize, mut f: impl FnMut() -> veil_he::Result<T>) -> Result<f64> {
    let _ = f()?;
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        let r = f()?;
        samples.push(t.elapsed().as_secs_f64() * 1e6);
        drop(r);
    }
    Ok(median_us(&mut samples))
}

fn bench_bfv(args: &BenchArgs) -> Result<()> {
    use veil_he::bfv::{bench, BfvParameters, BfvPreset};
    let bits = match &args.moduli {
        Some(m) => parse_moduli(m)?,
        None => BfvPreset::ALL
            .into_iter()
            .map(BfvPreset::spec)
            .find(|(n, _)| *n == args.degree)
            .map(|(_, b)| b)
            .with_context(|| format!("no BFV preset for N = {}; pass --moduli", args.degree))?,
    };
    let runs = args
        .runs
        .unwrap_or(if args.degree <= 8192 { 20 } else { 10 });
    if runs == 0 {
        bail!("--runs must be at least 1");
    }
    if let Some(unknown) = args
        .ops
        .iter()
        .flatten()
        .find(|o| !bench::OPS.contains(&o.as_str()))
    {
        bail!(
            "unknown BFV operation {unknown:?}; known: {}",
            bench::OPS.join(", ")
        );
    }
    let builder = BfvParameters::builder()
        .degree(args.degree)
        .moduli_bits(&bits)
        .plain_modulus_bits(args.plain_bits);
    let bgv = args.scheme == Scheme::Bgv;
    let params = if bgv {
        builder.build_bgv()
    } else {
        builder.build()
    }
    .context("invalid BFV/BGV parameters")?;
    let t = params.plain_modulus();
    let wanted = |op: &str| args.ops.as_ref().is_none_or(|o| o.iter().any(|x| x == op));
    let (results, fresh, after) = bench::run(params, runs, &wanted)?;
    if args.json {
        for r in &results {
            let line = serde_json::json!({"op": r.op, "degree": args.degree, "median_us": (r.median_us * 100.0).round() / 100.0, "runs": runs});
            outln!("{line}");
        }
        for (op, v) in [
            ("noise_budget_fresh", u64::from(fresh)),
            ("noise_budget_after_multiply", u64::from(after)),
            ("plain_modulus", t),
        ] {
            outln!(
                "{}",
                serde_json::json!({"op": op, "degree": args.degree, "value": v})
            );
        }
    } else {
        outln!(
            "{} N = {}, moduli = {:?}, t = {t}, {} thread(s), {} run(s) per op",
            if bgv { "BGV" } else { "BFV" },
            args.degree,
            bits,
            rayon::current_num_threads(),
            runs
        );
        outln!("{:<22} {:>14}", "operation", "median");
        for r in &results {
            let shown = if r.median_us >= 1000.0 {
                format!("{:.2} ms", r.median_us / 1000.0)
            } else {
                format!("{:.1} µs", r.median_us)
            };
            outln!("{:<22} {shown:>14}", r.op);
        }
        outln!("noise budget: {fresh} bits fresh, {after} bits after one product");
    }
    Ok(())
}

fn bench(args: &BenchArgs) -> Result<()> {
    if args.scheme != Scheme::Ckks {
        return bench_bfv(args);
    }
    if args
        .ops
        .as_ref()
        .is_some_and(|o| o.iter().any(|x| x == "bootstrap"))
    {
        if args.ops.as_ref().is_some_and(|o| o.len() > 1) {
            bail!("--ops bootstrap runs alone (it needs its own parameters)");
        }
        return bench_bootstrap(args);
    }
    if args.slots.is_some() {
        bail!("--slots is for --ops bootstrap");
    }
    let bits = match &args.moduli {
        Some(m) => parse_moduli(m)?,
        None => default_moduli(args.degree)?,
    };
    let scale_bits = args
        .scale_bits
        .unwrap_or(if args.degree == 4096 && args.moduli.is_none() {
            20
        } else {
            40
        });
    let runs = args.runs.unwrap_or(match args.degree {
        0..=8192 => 20,
        16384 => 10,
        _ => 5,
    });
    if runs == 0 {
        bail!("--runs must be at least 1");
    }
    let params = CkksParameters::builder()
        .degree(args.degree)
        .moduli_bits(&bits)
        .scale_bits(f64::from(scale_bits))
        .build()
        .context("invalid CKKS parameters")?;
    let ctx = CkksContext::new(params)?;
    let scale = ctx.params().scale();
    let level = ctx.max_level();
    let mut keygen = KeyGenerator::new(&ctx)?;
    let mut report = progress::key_progress(progress::interactive() && args.degree >= 16384);
    report("public key", 0, 1);
    let pk = keygen.public_key()?;
    report("relinearization key", 0, 1);
    let rlk = keygen.relin_key()?;
    report("Galois keys", 0, 1);
    let gk = keygen.galois_keys(&[1])?;
    report("Galois keys", 1, 1);
    let encoder = CkksEncoder::new(&ctx);
    let encryptor = Encryptor::new(&ctx, pk)?;
    let sym = SymmetricEncryptor::new(&ctx, keygen.secret_key().clone())?;
    let decryptor = Decryptor::new(&ctx, keygen.secret_key().clone())?;
    let eval = Evaluator::new(&ctx);

    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(42);
    let mut uniform = || (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0;
    let slots = ctx.slots();
    let a: Vec<f64> = (0..slots).map(|_| uniform()).collect();
    let b: Vec<f64> = (0..slots).map(|_| uniform()).collect();
    let pa = encoder.encode(&a, scale, level)?;
    let pb = encoder.encode(&b, scale, level)?;
    let ca = encryptor.encrypt(&pa)?;
    let cb = encryptor.encrypt(&pb)?;
    let prod = eval.multiply_relin(&ca, &cb, &rlk)?;

    let threads = rayon::current_num_threads();
    let mut results: Vec<(&str, f64)> = Vec::new();
    let wanted = |op: &str| args.ops.as_ref().is_none_or(|o| o.iter().any(|x| x == op));
    if wanted("encode") {
        results.push(("encode", time(runs, || encoder.encode(&a, scale, level))?));
    }
    if wanted("decode") {
        results.push(("decode", time(runs, || encoder.decode(&pa))?));
    }
    if wanted("encrypt_pk") {
        results.push(("encrypt_pk", time(runs, || encryptor.encrypt(&pa))?));
    }
    if wanted("encrypt_sk") {
        results.push(("encrypt_sk", time(runs, || sym.encrypt(&pa))?));
    }
    if wanted("decrypt") {
        results.push(("decrypt", time(runs, || decryptor.decrypt(&ca))?));
    }
    if wanted("add") {
        results.push(("add", time(runs, || eval.add(&ca, &cb))?));
    }
    if wanted("multiply_plain") {
        results.push((
            "multiply_plain",
            time(runs, || eval.multiply_plain(&ca, &pb))?,
        ));
    }
    if wanted("multiply+relin") {
        results.push((
            "multiply+relin",
            time(runs, || eval.multiply_relin(&ca, &cb, &rlk))?,
        ));
    }
    if wanted("rescale") {
        results.push(("rescale", time(runs, || eval.rescale(&prod))?));
    }
    if wanted("rotate_1") {
        results.push(("rotate_1", time(runs, || eval.rotate(&ca, 1, &gk))?));
    }
    let keygen_runs = runs.min(10);
    if wanted("keygen_relin") {
        results.push(("keygen_relin", time(keygen_runs, || keygen.relin_key())?));
    }
    if wanted("keygen_galois_1step") {
        results.push((
            "keygen_galois_1step",
            time(keygen_runs, || keygen.galois_keys(&[1]))?,
        ));
    }

    // Precision after one multiply + relinearize + rescale (inputs in [-1, 1]).
    let out = encoder.decode(&decryptor.decrypt(&eval.rescale(&prod)?)?)?;
    let max_err = out
        .iter()
        .zip(a.iter().zip(&b))
        .map(|(o, (x, y))| (o - x * y).abs())
        .fold(0.0, f64::max);
    let precision = max_err.log2();

    if args.json {
        for (op, us) in &results {
            let line = serde_json::json!({"op": op, "degree": args.degree, "median_us": (us * 100.0).round() / 100.0, "runs": runs});
            outln!("{line}");
        }
        let line = serde_json::json!({"op": "precision_log2_error", "degree": args.degree, "value": (precision * 100.0).round() / 100.0, "runs": 1});
        outln!("{line}");
    } else {
        outln!(
            "CKKS N = {}, moduli = {:?}, scale = 2^{}, {} thread(s), {} run(s) per op",
            args.degree,
            bits,
            scale_bits,
            threads,
            runs
        );
        outln!("{:<22} {:>14}", "operation", "median");
        for (op, us) in &results {
            let shown = if *us >= 1000.0 {
                format!("{:.2} ms", us / 1000.0)
            } else {
                format!("{us:.1} µs")
            };
            outln!("{op:<22} {shown:>14}");
        }
        outln!(
            "{:<22} {:>14}",
            "max error (mul+rescale)",
            format!("2^{precision:.1}")
        );
    }
    Ok(())
}

/// `veil he bench --ops bootstrap`.
fn bench_bootstrap(args: &BenchArgs) -> Result<()> {
    if args.moduli.is_some() || args.scale_bits.is_some() {
        bail!("--ops bootstrap uses its own 128-bit chain; drop --moduli and --scale-bits");
    }
    let slots = args.slots.unwrap_or(args.degree / 2);
    let runs = args.runs.unwrap_or(3);
    if runs == 0 {
        bail!("--runs must be at least 1");
    }
    let b = veil_he::ckks::bootstrap::bench::run(
        args.degree,
        slots,
        runs,
        progress::key_progress(progress::interactive()),
    )
    .context("bootstrapping needs --degree 65536 for 128-bit security")?;
    let threads = rayon::current_num_threads();
    if args.json {
        let line = serde_json::json!({
            "op": "bootstrap", "degree": b.degree, "slots": b.slots, "runs": b.runs,
            "threads": threads, "median_s": b.median_s, "phases_s": b.phases_s,
            "keygen_s": b.keygen_s, "prepare_s": b.prepare_s,
            "precision_worst_bits": b.worst_bits, "precision_mean_bits": b.mean_bits,
            "levels_after": b.levels_after, "depth": b.depth,
            "peak_memory_bytes": b.peak_memory_bytes,
        });
        outln!("{line}");
        return Ok(());
    }
    outln!(
        "CKKS bootstrapping: N = {}, {} slots, moduli = {:?} (scale 2^50), ephemeral secret of weight 32, {threads} thread(s), {} run(s)",
        b.degree,
        b.slots,
        b.moduli_bits,
        b.runs
    );
    let row = |name: &str, value: String| -> Result<()> {
        outln!("{name:<34} {value:>12}");
        Ok(())
    };
    row("key generation (all keys)", format!("{:.1} s", b.keygen_s))?;
    row("encoding the linear maps", format!("{:.1} s", b.prepare_s))?;
    row("bootstrap (median)", format!("{:.2} s", b.median_s))?;
    for (name, s) in [
        "ModRaise + SubSum",
        "CoeffsToSlots",
        "EvalMod",
        "SlotsToCoeffs",
    ]
    .iter()
    .zip(b.phases_s)
    {
        row(&format!("  {name}"), format!("{s:.2} s"))?;
    }
    row(
        "levels used / left",
        format!("{} / {}", b.depth, b.levels_after),
    )?;
    row(
        "precision (worst / mean bits)",
        format!("{:.1} / {:.1}", b.worst_bits, b.mean_bits),
    )?;
    if let Some(p) = b.peak_memory_bytes {
        row("peak memory", format!("{:.2} GB", p as f64 / 1e9))?;
    }
    Ok(())
}
