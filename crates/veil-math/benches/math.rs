//! Criterion benchmarks of the lattice arithmetic: NTT (tfhe-ntt), modular products, RNS base
//! conversion and rescaling, at the degrees CKKS uses.

#![allow(missing_docs, reason = "criterion macros generate undocumented items")]

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use veil_math::prime::primes_for_bit_sizes;
use veil_math::rns::BaseConverter;
use veil_math::{RingContext, RnsPoly};

fn bench_ntt(c: &mut Criterion) {
    let mut g = c.benchmark_group("ntt");
    for log_n in [13u32, 14, 15] {
        let n = 1usize << log_n;
        let moduli = primes_for_bit_sizes(n, &[60, 40]).unwrap_or_default();
        let ctx = match RingContext::new(n, &moduli) {
            Ok(c) => c,
            Err(_) => continue,
        };
        for (i, bits) in [(0usize, 60u32), (1, 40)] {
            let mut buf: Vec<u64> = (0..n as u64)
                .map(|k| moduli[i].reduce(k * 0x9e37_79b9))
                .collect();
            g.bench_with_input(
                BenchmarkId::new(format!("forward_{bits}bit"), n),
                &n,
                |b, _| b.iter(|| ctx.ntt_forward(i, black_box(&mut buf))),
            );
            g.bench_with_input(
                BenchmarkId::new(format!("inverse_{bits}bit"), n),
                &n,
                |b, _| b.iter(|| ctx.ntt_inverse(i, black_box(&mut buf))),
            );
        }
    }
    g.finish();
}

fn bench_poly(c: &mut Criterion) {
    let mut g = c.benchmark_group("rns_poly");
    let n = 1usize << 14;
    let Ok(moduli) = primes_for_bit_sizes(n, &[60, 40, 40, 40, 40, 40, 40, 40, 60]) else {
        return;
    };
    let Ok(ctx) = RingContext::new(n, &moduli) else {
        return;
    };
    let basis: Vec<usize> = (0..8).collect();
    let coeffs: Vec<i64> = (0..n as i64).map(|k| (k * 7919) % 1000 - 500).collect();
    let Ok(mut a) = RnsPoly::from_signed(&ctx, &basis, &coeffs) else {
        return;
    };
    a.to_ntt();
    let b = a.clone();
    g.bench_function("mul_8_limbs_16384", |bn| {
        bn.iter(|| RnsPoly::mul(black_box(&a), black_box(&b)))
    });
    g.bench_function("add_8_limbs_16384", |bn| {
        let mut x = a.clone();
        bn.iter(|| x.add_assign(black_box(&b)))
    });
    g.bench_function("rescale_8_limbs_16384", |bn| {
        bn.iter(|| {
            let mut x = a.clone();
            x.rescale_by_last()
        })
    });
    let from = &moduli[..1];
    let to = &moduli[1..];
    if let Ok(conv) = BaseConverter::new(from, to) {
        let input: Vec<u64> = a.limb(0).to_vec();
        let mut out = vec![0u64; to.len() * n];
        g.bench_function("base_convert_1_to_8_16384", |bn| {
            bn.iter(|| conv.convert(n, black_box(&input), &mut out))
        });
    }
    if let Ok(conv) = BaseConverter::new(&moduli[..4], &moduli[4..]) {
        let input: Vec<u64> = a.data()[..4 * n].to_vec();
        let mut out = vec![0u64; 5 * n];
        g.bench_function("base_convert_4_to_5_16384", |bn| {
            bn.iter(|| conv.convert(n, black_box(&input), &mut out))
        });
    }
    g.finish();
}

criterion_group!(benches, bench_ntt, bench_poly);
criterion_main!(benches);
