//! Per-operation timings of BFV and BGV, shared by `veil he bench --scheme bfv|bgv` and the
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

fn time(runs: usize, f: &mut dyn FnMut() -> Result<()>) -> Result<f64> {
    f()?;
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        f()?;
        samples.push(start.elapsed().as_secs_f64() * 1e6);
    }
    samples.sort_by(f64::total_cmp);
    Ok(samples[samples.len() / 2])
}

type Op<'a> = (&'static str, Box<dyn FnMut() -> Result<()> + 'a>);

/// Times each op in [`OPS`] order that `wanted` accepts (keygen at most 10 runs).
fn measure(
    runs: usize,
    wanted: &dyn Fn(&str) -> bool,
    mut ops: Vec<Op<'_>>,
) -> Result<Vec<Timing>> {
    let mut out = Vec::new();
    for name in OPS.into_iter().filter(|op| wanted(op)) {
        if let Some((op, f)) = ops.iter_mut().find(|(op, _)| *op == name) {
            let r = if *op == "keygen_relin" {
                runs.min(10)
            } else {
                runs
            };
            out.push(Timing {
                op,
                median_us: time(r, &mut **f)?,
            });
        }
    }
    Ok(out)
}

/// The timing body shared by both schemes (their types differ, their method names do not).
macro_rules! bench_scheme {
    ($ctx:expr, $encryptor:ty, $decryptor:ty, $evaluator:ty, $budget:ident, $runs:expr, $wanted:expr) => {{
        let ctx = $ctx;
        let mut kg = KeyGenerator::new(ctx.core())?;
        let pk = kg.public_key()?;
        let rlk = kg.relin_key()?;
        let mut gk = kg.galois_keys(&[1])?;
        gk.extend(kg.galois_keys_with_progress(&[], true, &mut |_, _| {})?);
        let encoder = BatchEncoder::new(&ctx.exact_context());
        let encryptor = <$encryptor>::new(&ctx, pk)?;
        let sym = <$encryptor>::symmetric(&ctx, kg.secret_key().clone())?;
        let decryptor = <$decryptor>::new(&ctx, kg.secret_key().clone())?;
        let ev = <$evaluator>::new(&ctx);
        let (a, b) = inputs(ctx.plain_modulus(), ctx.slots());
        let pa = encoder.encode(&a)?;
        let pb = encoder.encode(&b)?;
        let ca = encryptor.encrypt(&pa)?;
        let cb = encryptor.encrypt(&pb)?;
        let prod3 = ev.multiply(&ca, &cb)?;
        let prod = ev.relinearize(&prod3, &rlk)?;
        let got = encoder.decode(&decryptor.decrypt(&prod)?)?;
        check_product(ctx.plain_modulus(), &a, &b, &got)?;
        let fresh = decryptor.$budget(&ca)?;
        let after = decryptor.$budget(&prod)?;
        let ops: Vec<Op<'_>> = vec![
            ("encode", Box::new(|| encoder.encode(&a).map(drop))),
            ("decode", Box::new(|| encoder.decode(&pa).map(drop))),
            ("encrypt_pk", Box::new(|| encryptor.encrypt(&pa).map(drop))),
            ("encrypt_sk", Box::new(|| sym.encrypt(&pa).map(drop))),
            ("decrypt", Box::new(|| decryptor.decrypt(&ca).map(drop))),
            (
                "noise_budget",
                Box::new(|| decryptor.$budget(&ca).map(drop)),
            ),
            ("add", Box::new(|| ev.add(&ca, &cb).map(drop))),
            (
                "multiply_plain",
                Box::new(|| ev.multiply_plain(&ca, &pb).map(drop)),
            ),
            ("multiply", Box::new(|| ev.multiply(&ca, &cb).map(drop))),
            (
                "relinearize",
                Box::new(|| ev.relinearize(&prod3, &rlk).map(drop)),
            ),
            (
                "multiply+relin",
                Box::new(|| ev.multiply_relin(&ca, &cb, &rlk).map(drop)),
            ),
            (
                "rotate_rows_1",
                Box::new(|| ev.rotate_rows(&ca, 1, &gk).map(drop)),
            ),
            (
                "rotate_columns",
                Box::new(|| ev.rotate_columns(&ca, &gk).map(drop)),
            ),
            (
                "mod_switch",
                Box::new(|| ev.mod_switch_to_next(&ca).map(drop)),
            ),
            ("keygen_relin", Box::new(|| kg.relin_key().map(drop))),
        ];
        Ok((measure($runs, $wanted, ops)?, fresh, after))
    }};
}

/// Times the operations `wanted` accepts (all of [`OPS`] by default) on full random slot
/// vectors, `runs` timed runs each after one warm-up (at least 1), for BFV or BGV parameters
/// (`params.is_bgv()`). Also returns the noise budget of a fresh encryption and of a product,
/// to compare with SEAL's. Fails if the product does not decrypt exactly.
pub fn run(
    params: BfvParameters,
    runs: usize,
    wanted: &dyn Fn(&str) -> bool,
) -> Result<(Vec<Timing>, u32, u32)> {
    use crate::bgv::{BgvContext, BgvDecryptor, BgvEncryptor, BgvEvaluator};
    let runs = runs.max(1);
    if params.is_bgv() {
        bench_scheme!(
            BgvContext::new(params)?,
            BgvEncryptor,
            BgvDecryptor,
            BgvEvaluator,
            noise_budget,
            runs,
            wanted
        )
    } else {
        bench_scheme!(
            BfvContext::new(params)?,
            BfvEncryptor,
            BfvDecryptor,
            BfvEvaluator,
            invariant_noise_budget,
            runs,
            wanted
        )
    }
}

fn inputs(t: u64, slots: usize) -> (Vec<u64>, Vec<u64>) {
    let mut rng = ChaCha20Rng::seed_from_u64(42);
    let a = (0..slots).map(|_| rng.next_u64() % t).collect();
    let b = (0..slots).map(|_| rng.next_u64() % t).collect();
    (a, b)
}

/// The product must be right, or the timings mean nothing.
fn check_product(t: u64, a: &[u64], b: &[u64], got: &[u64]) -> Result<()> {
    let tm = veil_math::Modulus::new(t)?;
    if got
        .iter()
        .zip(a.iter().zip(b))
        .any(|(&g, (&x, &y))| g != tm.mul(x, y))
    {
        return Err(crate::error::HeError::Internal("product decrypted wrongly"));
    }
    Ok(())
}
