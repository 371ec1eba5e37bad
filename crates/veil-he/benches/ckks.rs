//! Criterion benchmarks of every CKKS operation at N = 2^13, 2^14, 2^15 with the modulus chains
//! the SEAL comparison uses (`[60, 40×L, 60]`). Set `RAYON_NUM_THREADS=1` for single-threaded
//! figures.

#![allow(missing_docs, reason = "criterion macros generate undocumented items")]

use std::sync::Arc;

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use veil_he::ckks::*;

struct Setup {
    ctx: Arc<CkksContext>,
    encoder: CkksEncoder,
    encryptor: Encryptor,
    decryptor: Decryptor,
    eval: Evaluator,
    rlk: RelinearizationKey,
    gk: GaloisKeys,
    values: Vec<f64>,
}

fn setup(preset: Preset) -> Option<Setup> {
    let ctx = CkksContext::new(CkksParameters::preset(preset).ok()?).ok()?;
    let mut kg = KeyGenerator::new(&ctx).ok()?;
    let pk = kg.public_key().ok()?;
    let rlk = kg.relin_key().ok()?;
    let gk = kg.galois_keys(&[1]).ok()?;
    let values = (0..ctx.slots())
        .map(|i| ((i as f64) * 0.37).sin())
        .collect();
    Some(Setup {
        encoder: CkksEncoder::new(&ctx),
        encryptor: Encryptor::new(&ctx, pk).ok()?,
        decryptor: Decryptor::new(&ctx, kg.secret_key().clone()).ok()?,
        eval: Evaluator::new(&ctx),
        rlk,
        gk,
        values,
        ctx,
    })
}

fn bench_ops(c: &mut Criterion) {
    let mut g = c.benchmark_group("ckks");
    g.sample_size(10);
    for preset in [
        Preset::N8192Depth2,
        Preset::N16384Depth7,
        Preset::N32768Depth19,
    ] {
        let Some(s) = setup(preset) else { continue };
        let n = s.ctx.degree();
        let scale = s.ctx.params().scale();
        let top = s.ctx.max_level();
        let Ok(pt) = s.encoder.encode(&s.values, scale, top) else {
            continue;
        };
        let Ok(ct) = s.encryptor.encrypt(&pt) else {
            continue;
        };
        let Ok(prod) = s.eval.multiply_relin(&ct, &ct, &s.rlk) else {
            continue;
        };
        g.bench_with_input(BenchmarkId::new("encode", n), &n, |b, _| {
            b.iter(|| s.encoder.encode(black_box(&s.values), scale, top))
        });
        g.bench_with_input(BenchmarkId::new("encrypt_pk", n), &n, |b, _| {
            b.iter(|| s.encryptor.encrypt(black_box(&pt)))
        });
        g.bench_with_input(BenchmarkId::new("decrypt", n), &n, |b, _| {
            b.iter(|| s.decryptor.decrypt(black_box(&ct)))
        });
        g.bench_with_input(BenchmarkId::new("add", n), &n, |b, _| {
            b.iter(|| s.eval.add(black_box(&ct), &ct))
        });
        g.bench_with_input(BenchmarkId::new("multiply_plain", n), &n, |b, _| {
            b.iter(|| s.eval.multiply_plain(black_box(&ct), &pt))
        });
        g.bench_with_input(BenchmarkId::new("multiply+relin", n), &n, |b, _| {
            b.iter(|| s.eval.multiply_relin(black_box(&ct), &ct, &s.rlk))
        });
        g.bench_with_input(BenchmarkId::new("rescale", n), &n, |b, _| {
            b.iter(|| s.eval.rescale(black_box(&prod)))
        });
        g.bench_with_input(BenchmarkId::new("rotate_1", n), &n, |b, _| {
            b.iter(|| s.eval.rotate(black_box(&ct), 1, &s.gk))
        });
        g.bench_with_input(BenchmarkId::new("rotate_hoisted_8", n), &n, |b, _| {
            b.iter(|| {
                s.eval
                    .rotate_hoisted(black_box(&ct), &[1, 1, 1, 1, 1, 1, 1, 1], &s.gk)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench_ops);
criterion_main!(benches);
