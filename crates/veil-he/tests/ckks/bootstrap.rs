//! Bootstrapping: a refreshed ciphertext decrypts to its message within the stated precision,
//! and a computation far deeper than the modulus chain completes.

use std::sync::Arc;

use veil_he::ckks::*;
use veil_he::HeError;

/// N = 4096 (insecure: small and fast), q_0 of 60 bits, `levels` primes of 50 bits (scale
/// 2^50), two special primes of 60.
fn test_context(levels: usize) -> Arc<CkksContext> {
    let mut bits = vec![60];
    bits.extend(std::iter::repeat_n(50, levels));
    bits.extend([60, 60]);
    let params = CkksParameters::builder()
        .degree(4096)
        .moduli_bits(&bits)
        .special_primes(2)
        .scale_bits(50.0)
        .insecure_allow_below_128_bit_security()
        .build()
        .unwrap();
    CkksContext::new(params).unwrap()
}

/// A [`test_context`] with the levels bootstrapping with `config` takes plus `levels_left`.
fn context_for(config: BootstrapConfig, levels_left: usize) -> (Arc<VectorContext>, Bootstrapper) {
    let ckks = test_context(config.depth(4096) + levels_left);
    let ctx = VectorContext::builder(ckks)
        .bootstrapping(config)
        .build()
        .unwrap();
    let boot = Bootstrapper::new(&ctx, config).unwrap();
    (ctx, boot)
}

/// [`context_for`] with the default configuration (ephemeral secret of weight 32).
fn context(levels_left: usize, slots: usize) -> (Arc<VectorContext>, Bootstrapper) {
    context_for(BootstrapConfig::new(slots), levels_left)
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
    // 2 + 1 + 5 (degree-25 polynomials) + 6 double angles (K = 16.5) + 1 + 2.
    assert_eq!(boot.depth(), 17, "{boot:?}");
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
        assert!(max_error(&got, &xs) < 2f64.powi(-18));
    }
    assert!(err < 2f64.powi(-18), "max error {err:e}");
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
    // Plain again, padding cleared with the one level left: it bootstraps again, and its
    // sum is the sum of its 20 values.
    assert_eq!(fresh.layout(), Layout::Plain);
    assert_eq!(fresh.level(), boot.levels_after() - 1);
    let got = fresh.decrypt_unflooded_for_key_holder_only().unwrap();
    assert!(max_error(&got, &x) < 2f64.powi(-16));
    let again = boot.bootstrap(&fresh).unwrap();
    let got = again.decrypt_unflooded_for_key_holder_only().unwrap();
    assert!(max_error(&got, &x) < 2f64.powi(-15));
    let sum = again
        .sum()
        .unwrap()
        .decrypt_unflooded_for_key_holder_only()
        .unwrap();
    assert!(
        (sum[0] - x.iter().sum::<f64>()).abs() < 2f64.powi(-12),
        "{sum:?}"
    );
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
    assert!(err < 2f64.powi(-20), "max error {err:e}");
}

#[test]
fn bootstrapping_refuses_what_it_cannot_do() {
    let ckks = test_context(8);
    let config = BootstrapConfig::new(16);
    let dense = config.ephemeral_weight(None);
    let bare = VectorContext::builder(ckks.clone()).build().unwrap();
    assert!(matches!(
        Bootstrapper::new(&bare, dense),
        Err(HeError::MissingConjugationKey)
    ));
    // 1 + 1 + 5 + 6 + 1 + 1 levels on a chain of 8: refused when the keys are made.
    assert_eq!(config.depth(4096), 15);
    assert!(matches!(
        VectorContext::builder(ckks.clone())
            .bootstrapping(config)
            .build(),
        Err(HeError::OutOfLevels {
            needed: 15,
            left: 8
        })
    ));
    let keyed = VectorContext::builder(ckks.clone())
        .rotation_steps(&config.rotation_steps(ckks.slots()))
        .conjugation(true)
        .build()
        .unwrap();
    // The dense secret: 8 double angles.
    assert!(matches!(
        Bootstrapper::new(&keyed, dense),
        Err(HeError::OutOfLevels {
            needed: 17,
            left: 8
        })
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
        Bootstrapper::new(&keyed, BootstrapConfig::new(64).ephemeral_weight(None)),
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
    eprintln!(
        "full slots: {report:?}, max error {err:e} ({:.1} bits)",
        -err.log2()
    );
    // Noise of 2048 coefficients summed per slot: two bits below the 64-slot case.
    assert!(err < 2f64.powi(-16), "max error {err:e}");
}

#[test]
fn without_encapsulation_the_dense_secret_costs_levels_and_precision() {
    let config = BootstrapConfig::new(64).ephemeral_weight(None);
    let (ctx, boot) = context_for(config, 1);
    // K = 92 at N = 4096: 8 double angles instead of 6.
    assert_eq!(boot.depth(), 19, "{boot:?}");
    let x = values(64);
    let v = CkksVector::encrypt_replicated(&ctx, &x, false).unwrap();
    let got = boot
        .bootstrap(&v)
        .unwrap()
        .decrypt_unflooded_for_key_holder_only()
        .unwrap();
    let err = max_error(&got, &x);
    eprintln!("dense secret: max error {err:e} ({:.1} bits)", -err.log2());
    assert!(err < 2f64.powi(-16), "max error {err:e}");
}

#[test]
fn encapsulation_needs_its_keys_and_a_covered_modulus() {
    let config = BootstrapConfig::new(16);
    let ckks = test_context(config.depth(4096) + 1);
    // Rotation keys alone: the encapsulation keys are missing.
    let no_enc = VectorContext::builder(ckks.clone())
        .rotation_steps(&config.rotation_steps(ckks.slots()))
        .conjugation(true)
        .build()
        .unwrap();
    match Bootstrapper::new(&no_enc, config) {
        Err(HeError::InvalidParameters(m)) => assert!(m.contains("encapsulation keys"), "{m}"),
        r => panic!("expected a refusal, got {r:?}"),
    }
    // Keys for another weight.
    let other = VectorContext::builder(ckks.clone())
        .bootstrapping(config.ephemeral_weight(Some(64)))
        .build()
        .unwrap();
    match Bootstrapper::new(&other, config) {
        Err(HeError::InvalidParameters(m)) => assert!(m.contains("weight 64"), "{m}"),
        r => panic!("expected a refusal, got {r:?}"),
    }
    // The keys travel with the public context: the server bootstraps what the client
    // encrypted.
    let full = VectorContext::builder(ckks)
        .bootstrapping(config)
        .build()
        .unwrap();
    let bytes = full.public_to_bytes();
    let server =
        VectorContext::from_public_bytes_insecure_allow_below_128_bit_security(&bytes, None)
            .unwrap();
    assert_eq!(server.encapsulation_keys().map(|k| k.weight()), Some(32));
    let boot = Bootstrapper::new(&server, config).unwrap();
    let x = values(16);
    let v = CkksVector::encrypt_replicated(&full, &x, false).unwrap();
    let on_server = CkksVector::from_bytes(&server, &v.to_bytes()).unwrap();
    let fresh = boot.bootstrap(&on_server).unwrap();
    let back = CkksVector::from_bytes(&full, &fresh.to_bytes()).unwrap();
    let got = back.decrypt_unflooded_for_key_holder_only().unwrap();
    assert!(max_error(&got, &x) < 2f64.powi(-16));
}

#[test]
fn an_ephemeral_secret_modulo_an_uncovered_modulus_is_refused_at_128_bits() {
    // N = 2^15, secure: q_0·P = 60 + 3·60 bits, above the 134 bits the estimate covers there.
    let params = CkksParameters::builder()
        .degree(32768)
        .moduli_bits(&[60, 50, 60, 60, 60])
        .special_primes(3)
        .scale_bits(50.0)
        .build()
        .unwrap();
    assert_eq!(params.security(), SecurityLevel::Bits128);
    let ckks = CkksContext::new(params).unwrap();
    // Encapsulation keys made for this context (by another key holder: the refusal comes
    // before any key is used).
    let mut keygen = KeyGenerator::new(&ckks).unwrap();
    let keys = keygen.encapsulation_keys(32).unwrap();
    let ctx = VectorContext::builder(ckks)
        .power_of_two_rotations(false)
        .build()
        .unwrap()
        .with_encapsulation_keys(keys);
    match Bootstrapper::new(&ctx, BootstrapConfig::new(2)) {
        Err(HeError::InvalidParameters(m)) => assert!(m.contains("not covered"), "{m}"),
        r => panic!("expected a refusal, got {r:?}"),
    }
}

#[test]
fn products_bootstrap_by_themselves_once_asked() {
    let (ctx, boot) = context(3, 16);
    let boot = Arc::new(boot);
    let x = values(16);
    let mut v = CkksVector::encrypt_replicated(&ctx, &x, false).unwrap();
    // Without automatic bootstrapping, the chain runs out.
    let mut w = v.clone();
    let err = loop {
        match w.square() {
            Ok(next) => w = next,
            Err(e) => break e,
        }
    };
    assert!(matches!(err, HeError::OutOfLevels { .. }), "{err:?}");
    ctx.set_auto_bootstrap(&boot).unwrap();
    let mut want = x.clone();
    for _ in 0..30 {
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
    assert!(max_error(&got, &want) < 2f64.powi(-20));
    // Polynomials too: a degree-7 one on a vector with 2 levels left.
    let low = v.square().unwrap();
    let low = (0..low.level())
        .try_fold(low, |u, _| u.mul_scalar(1.0))
        .unwrap();
    assert_eq!(low.level(), 0);
    let p = low
        .polyval(&[0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.5])
        .unwrap();
    assert!(p.level() < boot.levels_after());
    // Dropping the bootstrapper turns it off.
    drop(boot);
    assert!(matches!(low.square(), Err(HeError::OutOfLevels { .. })));
}

#[test]
fn bootstrapping_keys_are_the_plan_s_and_made_for_their_levels() {
    // SlotsToCoeffs in 3 factors, CoeffsToSlots in 2: their steps differ, so SlotsToCoeffs
    // has keys of its own.
    let config = BootstrapConfig::new(64).levels(2, 3);
    let ckks = test_context(config.depth(4096) + 1);
    let ctx = VectorContext::builder(ckks.clone())
        .bootstrapping(config)
        .power_of_two_rotations(false)
        .build()
        .unwrap();
    let (pairs, conj_level) = config.key_levels(&ckks).unwrap();
    let gk = ctx.galois_keys();
    // One key per planned step (some steps serve two factors) and the conjugation key.
    let mut steps: Vec<i64> = pairs.iter().map(|&(s, _)| s).collect();
    steps.sort_unstable();
    steps.dedup();
    assert_eq!(gk.len(), steps.len() + 1);
    for &(step, level) in &pairs {
        let key = gk.get(ckks.galois_element_for_step(step)).unwrap();
        assert!(
            key.level() >= level,
            "step {step}: key for {} < {level}",
            key.level()
        );
    }
    assert_eq!(
        gk.get(ckks.conjugation_element()).unwrap().level(),
        conj_level
    );
    // SlotsToCoeffs' keys serve low levels only: fewer digits than a top-level key.
    let top_digits = ckks.params().dnum();
    let low = pairs
        .iter()
        .filter(|&&(_, l)| l < conj_level)
        .map(|&(s, _)| gk.get(ckks.galois_element_for_step(s)).unwrap())
        .filter(|k| k.level() < conj_level)
        .collect::<Vec<_>>();
    assert!(!low.is_empty());
    assert!(low.iter().all(|k| k.digits() < top_digits));
    // And it bootstraps.
    let boot = Bootstrapper::new(&ctx, config).unwrap();
    let x = values(64);
    let v = CkksVector::encrypt_replicated(&ctx, &x, false).unwrap();
    let got = boot
        .bootstrap(&v)
        .unwrap()
        .decrypt_unflooded_for_key_holder_only()
        .unwrap();
    assert!(max_error(&got, &x) < 2f64.powi(-18));
}
