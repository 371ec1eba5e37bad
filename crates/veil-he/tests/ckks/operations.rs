//! Every evaluator operation, against its plaintext result.

use crate::common::*;
use veil_he::ckks::*;
use veil_he::HeError;

fn fx() -> Fixture {
    let steps = KeyGenerator::power_of_two_steps(
        &CkksContext::new(small(1024, &[60, 40, 40, 40, 60], 40.0)).unwrap(),
    );
    let mut all = steps;
    all.push(3);
    fixture_with(small(1024, &[60, 40, 40, 40, 60], 40.0), &all, true, 7)
}

#[test]
fn encrypt_decrypt_public_and_secret_key() {
    let f = fx();
    let v = values(512, 1);
    let ct = f.enc(&v);
    assert!(
        max_err(&f.dec(&ct), &v) < 1e-7,
        "{}",
        max_err(&f.dec(&ct), &v)
    );
    let pt = f.encoder.encode(&v, f.ctx.params().scale(), 2).unwrap();
    let ct = f.sym.encrypt(&pt).unwrap();
    assert!(ct.is_seeded());
    assert_eq!(ct.level(), 2);
    assert!(max_err(&f.dec(&ct), &v) < 1e-7);
}

#[test]
fn additive_operations() {
    let f = fx();
    let (a, b) = (values(512, 2), values(512, 3));
    let (ca, cb) = (f.enc(&a), f.enc(&b));
    let sum: Vec<f64> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
    let diff: Vec<f64> = a.iter().zip(&b).map(|(x, y)| x - y).collect();
    assert!(max_err(&f.dec(&f.eval.add(&ca, &cb).unwrap()), &sum) < 1e-7);
    assert!(max_err(&f.dec(&f.eval.sub(&ca, &cb).unwrap()), &diff) < 1e-7);
    let neg: Vec<f64> = a.iter().map(|x| -x).collect();
    assert!(max_err(&f.dec(&f.eval.negate(&ca).unwrap()), &neg) < 1e-7);
    let pb = f.encoder.encode(&b, ca.scale(), ca.level()).unwrap();
    assert!(max_err(&f.dec(&f.eval.add_plain(&ca, &pb).unwrap()), &sum) < 1e-7);
    assert!(max_err(&f.dec(&f.eval.sub_plain(&ca, &pb).unwrap()), &diff) < 1e-7);
    let plus: Vec<f64> = a.iter().map(|x| x + 2.5).collect();
    assert!(max_err(&f.dec(&f.eval.add_scalar(&ca, 2.5).unwrap()), &plus) < 1e-7);
    let minus: Vec<f64> = a.iter().map(|x| x - 2.5).collect();
    assert!(max_err(&f.dec(&f.eval.sub_scalar(&ca, 2.5).unwrap()), &minus) < 1e-7);
}

#[test]
fn multiplicative_operations() {
    let f = fx();
    let (a, b) = (values(512, 4), values(512, 5));
    let (ca, cb) = (f.enc(&a), f.enc(&b));
    let prod: Vec<f64> = a.iter().zip(&b).map(|(x, y)| x * y).collect();
    // ct × ct, 3 parts, decryptable before relinearization
    let m3 = f.eval.multiply(&ca, &cb).unwrap();
    assert_eq!(m3.size(), 3);
    assert!(max_err(&f.dec(&m3), &prod) < 1e-6);
    let m = f
        .eval
        .rescale(&f.eval.relinearize(&m3, &f.rlk).unwrap())
        .unwrap();
    assert_eq!((m.size(), m.level()), (2, f.ctx.max_level() - 1));
    let e = max_err(&f.dec(&m), &prod);
    assert!(e < 2f64.powi(-20), "mult error {e}");
    // square
    let sq: Vec<f64> = a.iter().map(|x| x * x).collect();
    let s = f
        .eval
        .rescale(
            &f.eval
                .relinearize(&f.eval.square(&ca).unwrap(), &f.rlk)
                .unwrap(),
        )
        .unwrap();
    assert!(max_err(&f.dec(&s), &sq) < 2f64.powi(-20));
    // ct × pt
    let pb = f
        .encoder
        .encode(&b, f.ctx.params().scale(), ca.level())
        .unwrap();
    let mp = f
        .eval
        .rescale(&f.eval.multiply_plain(&ca, &pb).unwrap())
        .unwrap();
    assert!(max_err(&f.dec(&mp), &prod) < 2f64.powi(-20));
    // ct × scalar
    let scaled: Vec<f64> = a.iter().map(|x| x * -1.75).collect();
    let ms = f
        .eval
        .rescale(
            &f.eval
                .multiply_scalar(&ca, -1.75, f.ctx.params().scale())
                .unwrap(),
        )
        .unwrap();
    assert!(max_err(&f.dec(&ms), &scaled) < 2f64.powi(-20));
    let tripled: Vec<f64> = a.iter().map(|x| x * 3.0).collect();
    let mi = f.eval.multiply_integer(&ca, 3).unwrap();
    assert_eq!(mi.level(), ca.level());
    assert!(max_err(&f.dec(&mi), &tripled) < 1e-6);
}

#[test]
fn depth_to_the_last_level_then_out_of_levels() {
    let f = fx();
    let a = values(512, 6);
    let mut ct = f.enc(&a);
    let mut expect = a.clone();
    for _ in 0..f.ctx.max_level() {
        ct = f
            .eval
            .rescale(&f.eval.multiply_relin(&ct, &ct, &f.rlk).unwrap())
            .unwrap();
        expect.iter_mut().for_each(|x| *x *= *x);
        let e = max_err(&f.dec(&ct), &expect);
        assert!(e < 2f64.powi(-16), "level {}: error {e}", ct.level());
    }
    assert_eq!(ct.level(), 0);
    assert!(matches!(
        f.eval.rescale(&ct),
        Err(HeError::OutOfLevels { needed: 1, left: 0 })
    ));
}

#[test]
fn mismatches_are_errors() {
    let f = fx();
    let a = f.enc(&values(8, 7));
    let b = f.eval.mod_switch_to_next(&a).unwrap();
    assert!(matches!(
        f.eval.add(&a, &b),
        Err(HeError::LevelMismatch { .. })
    ));
    let c = f
        .eval
        .rescale(&f.eval.multiply_relin(&a, &a, &f.rlk).unwrap())
        .unwrap();
    assert!(matches!(
        f.eval.add(&b, &c),
        Err(HeError::ScaleMismatch { .. })
    ));
    // Align fixes both.
    let (x, y) = f.eval.align(&a, &c).unwrap();
    let sum = f.eval.add(&x, &y).unwrap();
    let va = values(8, 7);
    let expect: Vec<f64> = va.iter().map(|v| v + v * v).collect();
    assert!(max_err(&f.dec(&sum), &expect) < 1e-6);
    // Another parameter set.
    let other = fixture_with(small(1024, &[60, 40, 60], 40.0), &[], false, 8);
    let z = other.enc(&[1.0]);
    assert!(matches!(
        f.eval.add(&a, &z),
        Err(HeError::ParameterMismatch { .. })
    ));
    assert!(matches!(
        f.decryptor.decrypt(&z),
        Err(HeError::ParameterMismatch { .. })
    ));
    // Missing keys.
    let none = GaloisKeys::default();
    assert!(matches!(
        f.eval.rotate(&a, 5, &none),
        Err(HeError::MissingGaloisKey { .. })
    ));
    assert!(matches!(
        f.eval.conjugate(&a, &none),
        Err(HeError::MissingConjugationKey)
    ));
}

#[test]
fn every_rotation_step_at_small_degree() {
    // N = 64: 32 slots; power-of-two keys only, so most steps are composed.
    let params = small(64, &[60, 40, 60], 40.0);
    let steps = KeyGenerator::power_of_two_steps(&CkksContext::new(params.clone()).unwrap());
    let f = fixture_with(params, &steps, true, 9);
    let v = values(32, 10);
    let ct = f.enc(&v);
    for step in -32i64..=32 {
        let r = f.eval.rotate(&ct, step, &f.gk).unwrap();
        let expect: Vec<f64> = (0..32)
            .map(|i| v[(i as i64 + step).rem_euclid(32) as usize])
            .collect();
        let e = max_err(&f.dec(&r), &expect);
        assert!(e < 1e-6, "step {step}: error {e}");
    }
}

#[test]
fn hoisted_rotations_equal_plain_rotations() {
    let f = fx();
    let v = values(512, 11);
    let ct = f.enc(&v);
    let steps = [0i64, 1, 2, 3, 4, -1, 5, 256];
    let hoisted = f.eval.rotate_hoisted(&ct, &steps, &f.gk).unwrap();
    for (s, h) in steps.iter().zip(&hoisted) {
        let plain = f.eval.rotate(&ct, *s, &f.gk).unwrap();
        let (dh, dp) = (f.dec(h), f.dec(&plain));
        assert!(max_err(&dh, &dp) < 1e-7, "step {s}");
        let expect: Vec<f64> = (0..512)
            .map(|i| v[(i as i64 + s).rem_euclid(512) as usize])
            .collect();
        assert!(max_err(&dh, &expect) < 1e-6, "step {s}");
    }
}

#[test]
fn conjugation_sum_and_inner_product() {
    let f = fx();
    let z: Vec<num_complex::Complex64> = (0..512)
        .map(|k| num_complex::Complex64::new((k as f64 * 0.01).sin(), (k as f64 * 0.02).cos()))
        .collect();
    let pt = f
        .encoder
        .encode_complex(&z, f.ctx.params().scale(), f.ctx.max_level())
        .unwrap();
    let ct = f.encryptor.encrypt(&pt).unwrap();
    let conj = f.eval.conjugate(&ct, &f.gk).unwrap();
    let back = f
        .encoder
        .decode_complex(&f.decryptor.decrypt(&conj).unwrap())
        .unwrap();
    for (a, b) in back.iter().zip(&z) {
        assert!((a - b.conj()).norm() < 1e-6);
    }
    let a = values(512, 12);
    let b = values(512, 13);
    let (ca, cb) = (f.enc(&a), f.enc(&b));
    let total: f64 = a.iter().sum();
    let s = f.dec(&f.eval.sum_slots(&ca, &f.gk).unwrap());
    assert!(
        s.iter().all(|x| (x - total).abs() < 1e-5),
        "{} vs {total}",
        s[0]
    );
    let dot: f64 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
    let ip = f.dec(&f.eval.inner_product(&ca, &cb, &f.rlk, &f.gk).unwrap());
    assert!((ip[0] - dot).abs() < 1e-4, "{} vs {dot}", ip[0]);
}

#[test]
fn hybrid_key_switching_with_several_special_primes() {
    // dnum = 2 digits of 2 primes each, two special primes.
    let params = CkksParameters::builder()
        .degree(1024)
        .moduli_bits(&[50, 40, 40, 40, 50, 50])
        .special_primes(2)
        .scale_bits(40.0)
        .insecure_allow_below_128_bit_security()
        .build()
        .unwrap();
    assert_eq!(params.dnum(), 2);
    let f = fixture_with(params, &[1, -3], false, 14);
    let a = values(512, 15);
    let ca = f.enc(&a);
    let sq: Vec<f64> = a.iter().map(|x| x * x).collect();
    let m = f
        .eval
        .rescale(&f.eval.multiply_relin(&ca, &ca, &f.rlk).unwrap())
        .unwrap();
    assert!(max_err(&f.dec(&m), &sq) < 2f64.powi(-18));
    // A rotation at level 2 (digit 1 has only one prime left), and at level 1.
    let r = f.eval.rotate(&m, -3, &f.gk).unwrap();
    let expect: Vec<f64> = (0..512)
        .map(|i| sq[(i as i64 - 3).rem_euclid(512) as usize])
        .collect();
    assert!(max_err(&f.dec(&r), &expect) < 2f64.powi(-18));
    let low = f.eval.mod_switch_to_level(&r, 1).unwrap();
    let r2 = f.eval.rotate(&low, 1, &f.gk).unwrap();
    let expect2: Vec<f64> = (0..512).map(|i| expect[(i + 1) % 512]).collect();
    assert!(max_err(&f.dec(&r2), &expect2) < 2f64.powi(-18));
}

#[test]
fn single_threaded_results_are_identical() {
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;
    let f = fx();
    let pt = f
        .encoder
        .encode(&values(512, 30), f.ctx.params().scale(), f.ctx.max_level())
        .unwrap();
    let run = || {
        let a = f
            .encryptor
            .encrypt_with_rng(&pt, &mut ChaCha20Rng::seed_from_u64(1))
            .unwrap();
        let b = f
            .sym
            .encrypt_with_rng(&pt, &mut ChaCha20Rng::seed_from_u64(2))
            .unwrap();
        let m = f
            .eval
            .rescale(&f.eval.multiply_relin(&a, &b, &f.rlk).unwrap())
            .unwrap();
        let r = f.eval.rotate_hoisted(&m, &[1, 3, -1], &f.gk).unwrap();
        let s = f.eval.sum_slots(&r[1], &f.gk).unwrap();
        (
            m.to_bytes(),
            r.iter().map(Ciphertext::to_bytes).collect::<Vec<_>>(),
            s.to_bytes(),
        )
    };
    let multi = rayon::ThreadPoolBuilder::new()
        .num_threads(4)
        .build()
        .unwrap()
        .install(run);
    let single = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap()
        .install(run);
    assert!(
        multi == single,
        "single- and multi-threaded evaluation differ"
    );
}
