//! Property tests: for random inputs, at several ring degrees and scales, every operation
//! decrypts to the plaintext result within the error bound expected at that scale.

use std::sync::OnceLock;

use crate::common::*;
use proptest::prelude::*;
use veil_he::ckks::*;

/// (degree, scale bits, chain)
const CONFIGS: [(usize, f64, &[u32]); 3] = [
    (1024, 30.0, &[50, 30, 30, 50]),
    (2048, 40.0, &[60, 40, 40, 60]),
    (4096, 50.0, &[60, 50, 60]),
];

fn fixture(i: usize) -> &'static Fixture {
    static F: [OnceLock<Fixture>; 3] = [OnceLock::new(), OnceLock::new(), OnceLock::new()];
    F[i].get_or_init(|| {
        let (n, scale, bits) = CONFIGS[i];
        let params = small(n, bits, scale);
        let steps = KeyGenerator::power_of_two_steps(&CkksContext::new(params.clone()).unwrap());
        fixture_with(params, &steps, true, 100 + i as u64)
    })
}

/// Expected error bound at scale 2^s for values of magnitude ≤ 1: fresh noise is a
/// rounding error of about sqrt(N) in the canonical embedding and a key switch adds about
/// sqrt(dnum·N)·σ·sqrt(N) more, so 2^(14 − s) is generous
/// but still fails loudly if any operation loses the scale.
fn bound(i: usize) -> f64 {
    (14.0 - CONFIGS[i].1).exp2()
}

fn vectors(len: usize) -> impl Strategy<Value = (Vec<f64>, Vec<f64>)> {
    (
        prop::collection::vec(-1.0f64..1.0, len),
        prop::collection::vec(-1.0f64..1.0, len),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(6))]

    #[test]
    fn ring_operations_are_homomorphic(i in 0usize..3, (a, b) in vectors(64), k in -2.0f64..2.0) {
        let f = fixture(i);
        let (ca, cb) = (f.enc(&a), f.enc(&b));
        let e = bound(i);
        let sum: Vec<f64> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
        prop_assert!(max_err(&f.dec(&f.eval.add(&ca, &cb).unwrap()), &sum) < e);
        let diff: Vec<f64> = a.iter().zip(&b).map(|(x, y)| x - y).collect();
        prop_assert!(max_err(&f.dec(&f.eval.sub(&ca, &cb).unwrap()), &diff) < e);
        let prod: Vec<f64> = a.iter().zip(&b).map(|(x, y)| x * y).collect();
        let m = f.eval.rescale(&f.eval.multiply_relin(&ca, &cb, &f.rlk).unwrap()).unwrap();
        prop_assert!(max_err(&f.dec(&m), &prod) < 4.0 * e, "mul error {}", max_err(&f.dec(&m), &prod));
        let pb = f.encoder.encode(&b, f.ctx.params().scale(), ca.level()).unwrap();
        let mp = f.eval.rescale(&f.eval.multiply_plain(&ca, &pb).unwrap()).unwrap();
        prop_assert!(max_err(&f.dec(&mp), &prod) < 4.0 * e);
        let scaled: Vec<f64> = a.iter().map(|x| x * k).collect();
        let ms = f.eval.rescale(&f.eval.multiply_scalar(&ca, k, f.ctx.params().scale()).unwrap()).unwrap();
        prop_assert!(max_err(&f.dec(&ms), &scaled) < 4.0 * e);
        let shifted: Vec<f64> = a.iter().map(|x| x + k).collect();
        prop_assert!(max_err(&f.dec(&f.eval.add_scalar(&ca, k).unwrap()), &shifted) < e);
    }

    #[test]
    fn rotations_permute_slots(i in 0usize..3, (a, _b) in vectors(64), step in -40i64..40) {
        let f = fixture(i);
        let slots = f.ctx.slots();
        let mut full = a.clone();
        full.resize(slots, 0.0);
        let ct = f.enc(&full);
        let r = f.eval.rotate(&ct, step, &f.gk).unwrap();
        let expect: Vec<f64> = (0..slots).map(|j| full[(j as i64 + step).rem_euclid(slots as i64) as usize]).collect();
        let e = max_err(&f.dec(&r), &expect);
        // Up to four composed key switches (non-adjacent form of the step).
        prop_assert!(e < 4.0 * bound(i), "step {step}: error 2^{:.1}, bound 2^{:.1}", e.log2(), bound(i).log2());
    }

    #[test]
    fn serialization_round_trips(i in 0usize..3, (a, _b) in vectors(16)) {
        let f = fixture(i);
        let ct = f.enc(&a);
        let back = Ciphertext::from_bytes(&f.ctx, &ct.to_bytes()).unwrap();
        prop_assert_eq!(back.to_bytes(), ct.to_bytes());
        prop_assert!(max_err(&f.dec(&back), &a) < bound(i));
    }
}
