//! Bootstrapping: a refreshed ciphertext decrypts to its message within the stated precision,
//! and a computation far deeper than the modulus chain completes.

use std::sync::Arc;

use veil_he::ckks::*;
use veil_he::HeError;

/// N = 4096 (insecure: small and fast), q_0 of 60 bits, 50-bit primes, scale 2^50: the
/// levels bootstrapping `slots` slots takes plus `levels_left`.
fn context(levels_left: usize, slots: usize) -> (Arc<VectorContext>, Bootstrapper) {
    let config = BootstrapConfig::new(slots);
    let mut bits = vec![60];
    bits.extend(std::iter::repeat_n(50, config.depth(4096) + levels_left));
    bits.extend([60, 60]);
    let params = CkksParameters::builder()
        .degree(4096)
        .moduli_bits(&bits)
        .special_primes(2)
        .scale_bits(50.0)
        .insecure_allow_below_128_bit_security()
        .build()
        .unwrap();
    let ckks = CkksContext::new(params).unwrap();
    let ctx = VectorContext::builder(ckks.clone())
        .rotation_steps(&config.rotation_steps(ckks.slots()))
        .conjugation(true)
        .build()
        .unwrap();
    let boot = Bootstrapper::new(&ctx, config).unwrap();
    (ctx, boot)
}

fn values(n: usize) -> Vec<f64> {
    (0..n).map(|i| ((i as f64) * 0.77).sin()).collect()
}

fn max_error(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

#[test]
fn a_refreshed_vector_decrypts_to_its_values() {
    let (ctx, boot) = context(3, 64);
    // 2 + 1 + 5 (degree-25 polynomials) + 8 double angles + 1 + 2.
    assert_eq!(boot.depth(), 19, "{boot:?}");
    let x = values(64);
    let v = CkksVector::encrypt_replicated(&ctx, &x, false).unwrap();
    // One product first; the bootstrapper drops the rest of the chain itself.
    let low = v.mul_scalar(1.0).unwrap();
    let (fresh, report) = boot.bootstrap_with_report(&low).unwrap();
    assert_eq!(fresh.level(), boot.levels_after());
    assert_eq!(report.level_after, 3);
    let got = fresh.decrypt_unflooded_for_key_holder_only().unwrap();
    let err = max_error(&got, &x);
    eprintln!(
        "bootstrap: {report:?}, max error {err:e} ({:.1} bits)",
        -err.log2()
    );
    // The error is noise, not the sine's curvature: it does not shrink with the values.
    for scale in [0.001, 0.1] {
        let xs: Vec<f64> = x.iter().map(|v| v * scale).collect();
        let v = CkksVector::encrypt_replicated(&ctx, &xs, false).unwrap();
        let got = boot
            .bootstrap(&v)
            .unwrap()
            .decrypt_unflooded_for_key_holder_only()
            .unwrap();
        assert!(max_error(&got, &xs) < 2f64.powi(-16));
    }
    assert!(err < 2f64.powi(-16), "max error {err:e}");
    // The refreshed vector computes on: its square is right.
    let sq = fresh.square().unwrap();
    let got = sq.decrypt_unflooded_for_key_holder_only().unwrap();
    let want: Vec<f64> = x.iter().map(|v| v * v).collect();
    assert!(max_error(&got, &want) < 2f64.powi(-13));
}

#[test]
fn a_plain_vector_with_clean_padding_is_replicated_and_refreshed() {
    let (ctx, boot) = context(1, 32);
    let x = values(20);
    let v = CkksVector::encrypt(&ctx, &x).unwrap();
    let fresh = boot.bootstrap(&v).unwrap();
    assert_eq!(fresh.len(), 20);
    let got = fresh.decrypt_unflooded_for_key_holder_only().unwrap();
    assert!(max_error(&got, &x) < 2f64.powi(-14));
    // A replicated vector of another period is refused by name.
    let other = CkksVector::encrypt_replicated(&ctx, &values(64), false).unwrap();
    match boot.bootstrap(&other) {
        Err(HeError::ShapeMismatch(m)) => assert!(m.contains("32 slots"), "{m}"),
        r => panic!("expected a shape error, got {r:?}"),
    }
}

#[test]
fn a_computation_three_times_deeper_than_the_chain_completes() {
    // x ← x²/2 + 1/4 (two levels per step) 36 times: depth 72 on a chain of 23 levels.
    let (ctx, boot) = context(6, 16);
    let chain = ctx.ckks().max_level();
    let x = values(16);
    let mut v = CkksVector::encrypt_replicated(&ctx, &x, false).unwrap();
    let mut want = x.clone();
    let mut bootstraps = 0;
    let steps = 36;
    assert!(
        2 * steps >= 3 * chain,
        "depth {} vs chain {chain}",
        2 * steps
    );
    for _ in 0..steps {
        if v.level() < 2 {
            v = boot.bootstrap(&v).unwrap();
            bootstraps += 1;
        }
        v = v
            .square()
            .unwrap()
            .mul_scalar(0.5)
            .unwrap()
            .add_scalar(0.25)
            .unwrap();
        want.iter_mut().for_each(|w| *w = *w * *w * 0.5 + 0.25);
    }
    let got = v.decrypt_unflooded_for_key_holder_only().unwrap();
    let err = max_error(&got, &want);
    eprintln!("{bootstraps} bootstraps, max error {err:e}");
    assert!(bootstraps >= 8);
    assert!(err < 2f64.powi(-14), "max error {err:e}");
}

#[test]
fn bootstrapping_refuses_what_it_cannot_do() {
    let mut bits = vec![60];
    bits.extend(std::iter::repeat_n(50, 8));
    bits.extend([60, 60]);
    let params = CkksParameters::builder()
        .degree(4096)
        .moduli_bits(&bits)
        .special_primes(2)
        .scale_bits(50.0)
        .insecure_allow_below_128_bit_security()
        .build()
        .unwrap();
    let ckks = CkksContext::new(params).unwrap();
    let bare = VectorContext::builder(ckks.clone()).build().unwrap();
    let config = BootstrapConfig::new(16);
    assert!(matches!(
        Bootstrapper::new(&bare, config),
        Err(HeError::MissingConjugationKey)
    ));
    let keyed = VectorContext::builder(ckks.clone())
        .rotation_steps(&config.rotation_steps(ckks.slots()))
        .conjugation(true)
        .build()
        .unwrap();
    assert!(matches!(
        Bootstrapper::new(&keyed, config),
        Err(HeError::OutOfLevels { needed: 17, .. })
    ));
    for bad in [
        BootstrapConfig::new(24),
        BootstrapConfig::new(4096),
        config.levels(0, 1),
        config.levels(1, 5),
    ] {
        assert!(matches!(
            Bootstrapper::new(&keyed, bad),
            Err(HeError::InvalidParameters(_))
        ));
    }
    // Keys for 16 slots do not cover 64.
    assert!(matches!(
        Bootstrapper::new(&keyed, BootstrapConfig::new(64)),
        Err(HeError::MissingGaloisKey { .. })
    ));
}

#[test]
fn a_full_vector_is_refreshed() {
    // N/2 = 2048 slots: each map in 3 factors of at most 31 diagonals.
    let (ctx, boot) = context(1, 2048);
    assert_eq!(boot.config().cts_levels, 3);
    let x = values(2048);
    let v = CkksVector::encrypt(&ctx, &x).unwrap();
    let (fresh, report) = boot.bootstrap_with_report(&v).unwrap();
    let got = fresh.decrypt_unflooded_for_key_holder_only().unwrap();
    let err = max_error(&got, &x);
    eprintln!("full slots: {report:?}, max error {err:e} ({:.1} bits)", -err.log2());
    // Noise of 2048 coefficients summed per slot: two bits below the 64-slot case.
    assert!(err < 2f64.powi(-14), "max error {err:e}");
}
