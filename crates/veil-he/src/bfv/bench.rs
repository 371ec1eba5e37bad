//! Per-operation timings of BFV, shared by `veil he bench --scheme bfv` and the
//! `bfv_bench` example that `bench/bfv_vs_seal.py` runs beside SEAL's BFV. The operation
//! names match that script's.

use std::time::Instant;

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

use crate::bfv::{
    BatchEncoder, BfvContext, BfvDecryptor, BfvEncryptor, BfvEvaluator, BfvParameters,
};
use crate::ckks::KeyGenerator;
use crate::error::Result;

/// Every operation timed, in order.
pub const OPS: [&str; 15] = [
    "encode",
    "decode",
    "encrypt_pk",
    "encrypt_sk",
    "decrypt",
    "noise_budget",
    "add",
    "multiply_plain",
    "multiply",
    "relinearize",
    "multiply+relin",
    "rotate_rows_1",
    "rotate_columns",
    "mod_switch",
    "keygen_relin",
];

/// One measurement: the operation and its median time in microseconds.
#[derive(Clone, Debug, PartialEq)]
pub struct Timing {
    /// Operation name (one of [`OPS`]).
    pub op: &'static str,
    /// Median over the runs, in microseconds.
    pub median_us: f64,
}

fn time<T>(runs: usize, mut f: impl FnMut() -> Result<T>) -> Result<f64> {
    drop(f()?);
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        let r = f()?;
        samples.push(start.elapsed().as_secs_f64() * 1e6);
        drop(r);
    }
    samples.sort_by(f64::total_cmp);
    Ok(samples[samples.len() / 2])
}

/// Times the operations `wanted` accepts (all of [`OPS`] by default) on full random slot
/// vectors, `runs` timed runs each after one warm-up (at least 1). Also returns the noise
/// budget of a fresh encryption and of a product, to compare with SEAL's.
pub fn run(
    params: BfvParameters,
    runs: usize,
    wanted: &dyn Fn(&str) -> bool,
) -> Result<(Vec<Timing>, u32, u32)> {
    let runs = runs.max(1);
    let ctx = BfvContext::new(params)?;
    let mut kg = KeyGenerator::new(ctx.core())?;
    let pk = kg.public_key()?;
    let rlk = kg.relin_key()?;
    let mut gk = kg.galois_keys(&[1])?;
    gk.extend(kg.galois_keys_with_progress(&[], true, &mut |_, _| {})?);
    let encoder = BatchEncoder::new(&ctx);
    let encryptor = BfvEncryptor::new(&ctx, pk)?;
    let sym = BfvEncryptor::symmetric(&ctx, kg.secret_key().clone())?;
    let decryptor = BfvDecryptor::new(&ctx, kg.secret_key().clone())?;
    let ev = BfvEvaluator::new(&ctx);
    let t = ctx.plain_modulus();
    let mut rng = ChaCha20Rng::seed_from_u64(42);
    let a: Vec<u64> = (0..ctx.slots()).map(|_| rng.next_u64() % t).collect();
    let b: Vec<u64> = (0..ctx.slots()).map(|_| rng.next_u64() % t).collect();
    let pa = encoder.encode(&a)?;
    let pb = encoder.encode(&b)?;
    let ca = encryptor.encrypt(&pa)?;
    let cb = encryptor.encrypt(&pb)?;
    let prod3 = ev.multiply(&ca, &cb)?;
    let prod = ev.relinearize(&prod3, &rlk)?;
    let mut out = Vec::new();
    let mut add = |op: &'static str, us: Result<f64>| -> Result<()> {
        out.push(Timing { op, median_us: us? });
        Ok(())
    };
    for op in OPS.into_iter().filter(|op| wanted(op)) {
        let us = match op {
            "encode" => time(runs, || encoder.encode(&a)),
            "decode" => time(runs, || encoder.decode(&pa)),
            "encrypt_pk" => time(runs, || encryptor.encrypt(&pa)),
            "encrypt_sk" => time(runs, || sym.encrypt(&pa)),
            "decrypt" => time(runs, || decryptor.decrypt(&ca)),
            "noise_budget" => time(runs, || decryptor.invariant_noise_budget(&ca)),
            "add" => time(runs, || ev.add(&ca, &cb)),
            "multiply_plain" => time(runs, || ev.multiply_plain(&ca, &pb)),
            "multiply" => time(runs, || ev.multiply(&ca, &cb)),
            "relinearize" => time(runs, || ev.relinearize(&prod3, &rlk)),
            "multiply+relin" => time(runs, || ev.multiply_relin(&ca, &cb, &rlk)),
            "rotate_rows_1" => time(runs, || ev.rotate_rows(&ca, 1, &gk)),
            "rotate_columns" => time(runs, || ev.rotate_columns(&ca, &gk)),
            "mod_switch" => time(runs, || ev.mod_switch_to_next(&ca)),
            _ => time(runs.min(10), || kg.relin_key()),
        };
        add(op, us)?;
    }
    // The product must be right, or the timings mean nothing.
    let got = encoder.decode(&decryptor.decrypt(&prod)?)?;
    let tm = veil_math::Modulus::new(t)?;
    if got
        .iter()
        .zip(a.iter().zip(&b))
        .any(|(&g, (&x, &y))| g != tm.mul(x, y))
    {
        return Err(crate::error::HeError::Internal(
            "BFV product decrypted wrongly",
        ));
    }
    let fresh = decryptor.invariant_noise_budget(&ca)?;
    let after = decryptor.invariant_noise_budget(&prod)?;
    Ok((out, fresh, after))
}
