//! In-process protocol costs (two parties over channels, so the network is not measured):
//! batched multiplication, comparison, matrix product, and the dealer's correction work.

#![allow(missing_docs, reason = "criterion macros generate undocumented items")]
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "benchmark setup")]

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rand_core::SeedableRng;
use veil_mpc::dealer::{Dealer, Request};
use veil_mpc::memory::run;
use veil_mpc::FixedPoint;

fn protocol(c: &mut Criterion) {
    let mut g = c.benchmark_group("two_parties_in_memory");
    g.sample_size(10);
    for (name, n) in [("mul_100k", 100_000usize), ("lt_10k", 10_000)] {
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                run(2, FixedPoint::default(), move |p| {
                    let v: Vec<u64> = (0..n as u64).collect();
                    let x = p.input_raw(0, (p.id() == 0).then_some(&v[..]), n)?;
                    if n == 100_000 {
                        p.mul(&x, &x).map(drop)
                    } else {
                        p.ltz(&x).map(drop)
                    }
                })
                .unwrap()
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("dealer");
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
    let (mut dealer, _) = Dealer::new(3, &mut rng).unwrap();
    g.throughput(Throughput::Elements(100_000));
    g.bench_function("triples_100k_3_parties", |b| {
        b.iter(|| dealer.correction(&Request::Triples { n: 100_000 }).unwrap())
    });
    g.throughput(Throughput::Elements(1_000));
    g.bench_function("comparison_masks_1k_3_parties", |b| {
        b.iter(|| {
            dealer
                .correction(&Request::Comparison { n: 1_000 })
                .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, protocol);
criterion_main!(benches);
