//! The TenSEAL-style vector API.

use std::sync::{Arc, OnceLock};

use crate::common::*;
use veil_he::ckks::*;
use veil_he::HeError;

fn ctx() -> Arc<VectorContext> {
    static CTX: OnceLock<Arc<VectorContext>> = OnceLock::new();
    CTX.get_or_init(|| {
        let params = small(2048, &[60, 40, 40, 40, 40, 60], 40.0);
        let ckks = CkksContext::new(params).unwrap();
        let mut steps = CkksVector::matmul_rotation_steps(16, 8);
        steps.extend(CkksVector::matmul_rotation_steps(10, 3));
        VectorContext::builder(ckks)
            .rotation_steps(&steps)
            .build()
            .unwrap()
    })
    .clone()
}

#[test]
fn arithmetic_with_vectors_plains_and_scalars() {
    let c = ctx();
    let a = values(100, 1);
    let b = values(100, 2);
    let x = CkksVector::encrypt(&c, &a).unwrap();
    let y = CkksVector::encrypt(&c, &b).unwrap();
    let check = |v: Result<CkksVector, HeError>, expect: Vec<f64>, tol: f64| {
        let got = v.unwrap().decrypt_unflooded_for_key_holder_only().unwrap();
        assert_eq!(got.len(), expect.len());
        let e = max_err(&got, &expect);
        assert!(e < tol, "error {e}");
    };
    check(
        &x + &y,
        a.iter().zip(&b).map(|(p, q)| p + q).collect(),
        1e-7,
    );
    check(
        &x - &y,
        a.iter().zip(&b).map(|(p, q)| p - q).collect(),
        1e-7,
    );
    check(
        &x * &y,
        a.iter().zip(&b).map(|(p, q)| p * q).collect(),
        1e-6,
    );
    check(
        &x + b.as_slice(),
        a.iter().zip(&b).map(|(p, q)| p + q).collect(),
        1e-7,
    );
    check(
        &x * b.as_slice(),
        a.iter().zip(&b).map(|(p, q)| p * q).collect(),
        1e-6,
    );
    check(&x * 3.5, a.iter().map(|p| p * 3.5).collect(), 1e-6);
    check(&x + 3.5, a.iter().map(|p| p + 3.5).collect(), 1e-7);
    check(-&x, a.iter().map(|p| -p).collect(), 1e-7);
    // Mixed levels are aligned automatically.
    let xy = (&x * &y).unwrap();
    check(
        &xy + &x,
        a.iter().zip(&b).map(|(p, q)| p * q + p).collect(),
        1e-6,
    );
    check(
        &(&xy * &x).unwrap() - &y,
        a.iter().zip(&b).map(|(p, q)| p * q * p - q).collect(),
        1e-5,
    );
}

#[test]
fn linear_combination_uses_one_level_and_matches_the_plain_sum() {
    let c = ctx();
    let inputs: Vec<Vec<f64>> = (0..5).map(|i| values(64, 10 + i)).collect();
    let enc: Vec<CkksVector> = inputs
        .iter()
        .map(|v| CkksVector::encrypt(&c, v).unwrap())
        .collect();
    // One input one level down: it is aligned, not refused.
    let lower = (&enc[4] * 1.0).unwrap();
    let refs: Vec<&CkksVector> = enc[..4].iter().chain([&lower]).collect();
    let weights = [0.5, -1.25, 0.0, 3.0, 0.75];
    let out = CkksVector::linear_combination(&refs, &weights, -0.5).unwrap();
    assert_eq!(out.level(), lower.level() - 1);
    let expect: Vec<f64> = (0..64)
        .map(|j| {
            -0.5 + inputs
                .iter()
                .zip(&weights)
                .map(|(v, w)| v[j] * w)
                .sum::<f64>()
        })
        .collect();
    let got = out.decrypt_unflooded_for_key_holder_only().unwrap();
    assert!(max_err(&got, &expect) < 1e-6, "{}", max_err(&got, &expect));
    // Errors, not panics.
    assert!(CkksVector::linear_combination(&[], &[], 0.0).is_err());
    assert!(CkksVector::linear_combination(&refs, &weights[..2], 0.0).is_err());
    assert!(CkksVector::linear_combination(&refs, &[f64::NAN; 5], 0.0).is_err());
    let short = CkksVector::encrypt(&c, &inputs[0][..10]).unwrap();
    assert!(CkksVector::linear_combination(&[&enc[0], &short], &[1.0, 1.0], 0.0).is_err());
}

#[test]
fn seeded_encryption_halves_the_query_and_computes_the_same() {
    let c = ctx();
    let a = values(100, 7);
    let public = CkksVector::encrypt(&c, &a).unwrap();
    let seeded = CkksVector::encrypt_seeded(&c, &a).unwrap();
    let (pb, sb) = (public.to_bytes(), seeded.to_bytes());
    assert!(
        sb.len() * 10 < pb.len() * 6,
        "seeded {} vs public {}",
        sb.len(),
        pb.len()
    );
    // The server (no secret key) reads it and computes on it.
    let server = c.make_public();
    let back = CkksVector::from_bytes(&server, &sb).unwrap();
    let sq = back.square().unwrap();
    let sq = CkksVector::from_bytes(&c, &sq.to_bytes()).unwrap();
    let got = sq.decrypt_unflooded_for_key_holder_only().unwrap();
    let expect: Vec<f64> = a.iter().map(|x| x * x).collect();
    assert!(max_err(&got, &expect) < 1e-6);
    // Without the secret key there is no seeded encryption.
    assert!(matches!(
        CkksVector::encrypt_seeded(&server, &a),
        Err(HeError::MissingSecretKey)
    ));
}

#[test]
fn dot_sum_and_their_composition() {
    let c = ctx();
    let a = values(64, 3);
    let b = values(64, 4);
    let x = CkksVector::encrypt(&c, &a).unwrap();
    let y = CkksVector::encrypt(&c, &b).unwrap();
    let dot: f64 = a.iter().zip(&b).map(|(p, q)| p * q).sum();
    let d = x.dot(&y).unwrap();
    assert_eq!(d.len(), 1);
    assert!((d.decrypt_unflooded_for_key_holder_only().unwrap()[0] - dot).abs() < 1e-5);
    let s = x
        .sum()
        .unwrap()
        .decrypt_unflooded_for_key_holder_only()
        .unwrap()[0];
    assert!((s - a.iter().sum::<f64>()).abs() < 1e-5);
    // The sum is replicated in every slot; a second reduction must still be right.
    let twice = x
        .sum()
        .unwrap()
        .sum()
        .unwrap()
        .decrypt_unflooded_for_key_holder_only()
        .unwrap()[0];
    assert!((twice - a.iter().sum::<f64>()).abs() < 1e-4, "{twice}");
    let dp = x
        .dot_plain(&b)
        .unwrap()
        .decrypt_unflooded_for_key_holder_only()
        .unwrap()[0];
    assert!((dp - dot).abs() < 1e-5);
}

#[test]
fn polyval_has_minimal_depth_and_is_accurate() {
    let c = ctx();
    let a = values(50, 5);
    let x = CkksVector::encrypt(&c, &a).unwrap();
    let cases: Vec<Vec<f64>> = vec![
        vec![0.5, 0.197, 0.0, -0.004], // sigmoid approximation, degree 3
        vec![1.0, -2.0, 0.5, 0.25, -0.125, 0.3, 0.0, 0.7], // degree 7: depth 3
        vec![0.0, 0.0, 0.0, 0.0, 1.0], // x^4: depth 3
        vec![2.0],                     // constant
        // degree 15: depth 4, mixing leaves and splits
        (0..16)
            .map(|k| {
                if k % 3 == 0 {
                    0.0
                } else {
                    1.0 / (k as f64 + 1.0)
                }
            })
            .collect(),
        // degree 11 with a zero top half below it
        vec![0.3, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -0.5],
    ];
    for coeffs in cases {
        let y = x.polyval(&coeffs).unwrap();
        let degree = coeffs.iter().rposition(|&c| c != 0.0).unwrap_or(0);
        let depth = (usize::BITS - degree.max(1).leading_zeros()) as usize;
        assert_eq!(x.level() - y.level(), depth, "{coeffs:?}");
        let expect: Vec<f64> = a
            .iter()
            .map(|&t| coeffs.iter().rev().fold(0.0, |acc, &c| acc * t + c))
            .collect();
        let e = max_err(&y.decrypt_unflooded_for_key_holder_only().unwrap(), &expect);
        assert!(e < 1e-4, "{coeffs:?}: error {e}");
    }
    let too_deep = vec![1.0; 40];
    assert!(matches!(
        x.polyval(&too_deep),
        Err(HeError::OutOfLevels { needed: 6, left: 4 })
    ));
}

#[test]
fn matmul_with_plain_matrix() {
    let c = ctx();
    for (n, m) in [(16usize, 8usize), (10, 3), (5, 12)] {
        let v = values(n, 6);
        let mat: Vec<Vec<f64>> = (0..n).map(|i| values(m, 100 + i as u64)).collect();
        let x = CkksVector::encrypt(&c, &v).unwrap();
        let y = x.matmul(&mat).unwrap();
        assert_eq!(y.len(), m);
        assert_eq!(y.level(), x.level() - 1);
        let expect: Vec<f64> = (0..m)
            .map(|j| (0..n).map(|i| v[i] * mat[i][j]).sum())
            .collect();
        let e = max_err(&y.decrypt_unflooded_for_key_holder_only().unwrap(), &expect);
        assert!(e < 1e-5, "{n}x{m}: error {e}");
        // The result's unused slots are clean: a following dot product is right.
        let ones = vec![1.0; m];
        let s = y
            .dot_plain(&ones)
            .unwrap()
            .decrypt_unflooded_for_key_holder_only()
            .unwrap()[0];
        assert!((s - expect.iter().sum::<f64>()).abs() < 1e-4);
    }
    let x = CkksVector::encrypt(&c, &[1.0, 2.0]).unwrap();
    assert!(matches!(
        x.matmul(&[vec![1.0]]),
        Err(HeError::ShapeMismatch(_))
    ));
}

#[test]
fn rotation_is_cyclic_over_the_vector() {
    let c = ctx();
    let v = values(12, 7);
    let x = CkksVector::encrypt(&c, &v).unwrap();
    for step in [1i64, 5, -2, 12, 13] {
        let got = x
            .rotate(step)
            .unwrap()
            .decrypt_unflooded_for_key_holder_only()
            .unwrap();
        let expect: Vec<f64> = (0..12)
            .map(|i| v[(i as i64 + step).rem_euclid(12) as usize])
            .collect();
        assert!(max_err(&got, &expect) < 1e-6, "step {step}");
        // Sum after rotation equals the sum.
        let s = x
            .rotate(step)
            .unwrap()
            .sum()
            .unwrap()
            .decrypt_unflooded_for_key_holder_only()
            .unwrap()[0];
        assert!((s - v.iter().sum::<f64>()).abs() < 1e-4);
    }
}

#[test]
fn errors_are_clear() {
    let c = ctx();
    let too_long = vec![0.0; c.ckks().slots() + 1];
    assert!(matches!(
        CkksVector::encrypt(&c, &too_long),
        Err(HeError::TooManyValues { .. })
    ));
    let x = CkksVector::encrypt(&c, &[1.0, 2.0]).unwrap();
    let y = CkksVector::encrypt(&c, &[1.0, 2.0, 3.0]).unwrap();
    assert!(matches!(&x + &y, Err(HeError::ShapeMismatch(_))));
    let public = c.make_public();
    let z = CkksVector::encrypt(&public, &[1.0]).unwrap();
    assert!(matches!(
        z.decrypt_unflooded_for_key_holder_only(),
        Err(HeError::MissingSecretKey)
    ));
    // Computing side works, key holder decrypts.
    let bytes = (&z * 4.0).unwrap().to_bytes();
    let back = CkksVector::from_bytes(&c, &bytes).unwrap();
    assert!((back.decrypt_unflooded_for_key_holder_only().unwrap()[0] - 4.0).abs() < 1e-6);
    let mut deep = x.clone();
    for _ in 0..4 {
        deep = deep.square().unwrap();
    }
    assert!(matches!(deep.square(), Err(HeError::OutOfLevels { .. })));
}

#[test]
fn contexts_travel_between_parties() {
    let c = ctx();
    // The data owner ships the public context; the server rebuilds it without a secret key.
    let wire = c.public_to_bytes();
    let server =
        VectorContext::from_public_bytes_insecure_allow_below_128_bit_security(&wire, None)
            .unwrap();
    assert!(!server.has_secret_key());
    let x = CkksVector::encrypt(&c, &[1.5, -2.0, 0.25]).unwrap();
    let on_server = CkksVector::from_bytes(&server, &x.to_bytes()).unwrap();
    let result = on_server.square().unwrap().sum().unwrap();
    assert!(matches!(
        result.decrypt_unflooded_for_key_holder_only(),
        Err(HeError::MissingSecretKey)
    ));
    // The owner, restarted from the public context and its saved secret key, decrypts.
    let sk = c.secret_key_bytes().unwrap().unwrap();
    let owner =
        VectorContext::from_public_bytes_insecure_allow_below_128_bit_security(&wire, Some(&sk))
            .unwrap();
    let back = CkksVector::from_bytes(&owner, &result.to_bytes())
        .unwrap()
        .decrypt_unflooded_for_key_holder_only()
        .unwrap();
    assert!((back[0] - (2.25 + 4.0 + 0.0625)).abs() < 1e-5);
    // Hostile context bytes are errors.
    for cut in [0, 7, 8, 20, wire.len() - 1] {
        assert!(
            VectorContext::from_public_bytes_insecure_allow_below_128_bit_security(
                &wire[..cut],
                None
            )
            .is_err()
        );
    }
    let mut extra = wire.clone();
    extra.push(1);
    assert!(
        VectorContext::from_public_bytes_insecure_allow_below_128_bit_security(&extra, None)
            .is_err()
    );
    assert!(server.secret_key_bytes().unwrap().is_none());
}

/// Replicated vectors: a widening product, an activation and a narrowing product, with no
/// rotation spent replicating, equal to the plaintext computation; the layout survives
/// serialization, and mixing layouts is refused.
#[test]
fn replicated_products_chain_like_a_network() {
    let params = small(2048, &[60, 40, 40, 40, 40, 60], 40.0);
    let ckks = CkksContext::new(params).unwrap();
    let mut steps = CkksVector::matmul_replicated_rotation_steps(20, 40);
    steps.extend(CkksVector::matmul_replicated_rotation_steps(40, 6));
    steps.extend(CkksVector::matmul_blocked_rotation_steps(1024, 20, 40));
    steps.extend(CkksVector::matmul_blocked_rotation_steps(1024, 40, 6));
    let c = VectorContext::builder(ckks)
        .rotation_steps(&steps)
        .build()
        .unwrap();
    let v = values(20, 11);
    let w1: Vec<Vec<f64>> = (0..20).map(|i| values(40, 200 + i as u64)).collect();
    let b1 = values(40, 3);
    let w2: Vec<Vec<f64>> = (0..40).map(|i| values(6, 300 + i as u64)).collect();
    let b2 = values(6, 4);
    let affine = |x: &[f64], w: &[Vec<f64>], b: &[f64]| -> Vec<f64> {
        (0..b.len())
            .map(|j| b[j] + x.iter().zip(w).map(|(xi, row)| xi * row[j]).sum::<f64>())
            .collect()
    };
    let h: Vec<f64> = affine(&v, &w1, &b1).iter().map(|x| x * x).collect();
    let expect = affine(&h, &w2, &b2);

    let x = CkksVector::encrypt_replicated(&c, &v, false).unwrap();
    assert!(x.is_replicated());
    let m1 = CkksVector::encode_matrix_replicated(&c, &w1, x.level()).unwrap();
    let y = x.matmul_encoded(&m1).unwrap();
    assert!(y.is_replicated());
    assert_eq!((y.len(), y.level()), (40, x.level() - 1));
    let y = y.add_plain(&b1).unwrap().square().unwrap();
    // Through bytes, as between a client and a server.
    let y = CkksVector::from_bytes(&c, &y.to_bytes()).unwrap();
    assert!(y.is_replicated());
    let z = y.matmul(&w2).unwrap().add_plain(&b2).unwrap();
    assert_eq!(z.len(), 6);
    let got = z.decrypt_unflooded_for_key_holder_only().unwrap();
    let e = max_err(&got, &expect);
    assert!(e < 1e-4, "error {e}: {got:?} vs {expect:?}");

    // The client does the first product's baby steps (blocked layout): same results, for a
    // widening and a narrowing product, through bytes too.
    let xb = CkksVector::encrypt_blocked(&c, &v, 40, false).unwrap();
    let xb = CkksVector::from_bytes(&c, &xb.to_bytes()).unwrap();
    assert!(matches!(xb.layout(), Layout::Blocked { .. }));
    let yb = xb.matmul(&w1).unwrap();
    assert!(yb.is_replicated());
    let first = affine(&v, &w1, &b1);
    let got = yb
        .add_plain(&b1)
        .unwrap()
        .decrypt_unflooded_for_key_holder_only()
        .unwrap();
    assert!(max_err(&got, &first) < 1e-4);
    let hb = CkksVector::encrypt_blocked(&c, &h, 6, false).unwrap();
    let got = hb
        .matmul(&w2)
        .unwrap()
        .add_plain(&b2)
        .unwrap()
        .decrypt_unflooded_for_key_holder_only()
        .unwrap();
    let e = max_err(&got, &expect);
    assert!(e < 1e-4, "blocked narrowing: error {e}");
    // A blocked vector takes no plain operand, and a tampered layout is refused.
    assert!(matches!(xb.add_plain(&v), Err(HeError::ShapeMismatch(_))));
    let mut bytes = xb.to_bytes();
    bytes[9] ^= 1;
    assert!(CkksVector::from_bytes(&c, &bytes).is_err());

    // A replicated operand with a plain one, and a replicated matrix with a plain vector.
    let plain = CkksVector::encrypt(&c, &v).unwrap();
    assert!(matches!(&plain + &x, Err(HeError::ShapeMismatch(_))));
    assert!(matches!(
        plain.matmul_encoded(&m1),
        Err(HeError::ShapeMismatch(_))
    ));
    assert!(CkksVector::encrypt_replicated(&c, &[], false).is_err());
}

/// Compact rotation keys (sums in radix 4, baby steps by repeated rotation, giant steps in
/// Horner form): the same products as the fast key set from a context that holds only the
/// compact keys — fewer of them — while a fast-keyed matrix is refused there for want of its
/// keys.
#[test]
fn compact_rotation_keys_give_the_same_products_with_fewer_keys() {
    let params = small(2048, &[60, 40, 40, 40, 40, 60], 40.0);
    let ckks = CkksContext::new(params).unwrap();
    let slots = 1024;
    let compact = RotationKeys::Compact;
    // Shapes like the digits MLP: a blocked 64 → 32 first layer, a replicated 32 → 10 one.
    let blocked = CkksVector::matmul_blocked_rotation_steps_with(slots, 64, 32, compact);
    let replicated = CkksVector::matmul_replicated_rotation_steps_with(32, 10, compact);
    // The blocked product: a hoisted giant step (16) and the block sums with the fold,
    // offsets 32·{0..32}, in radix 4 (32, 128) and a last doubling (512).
    assert_eq!(blocked, vec![16, 32, 128, 512]);
    assert_eq!(replicated, vec![1, 4, 16]);
    let fast_count = CkksVector::matmul_blocked_rotation_steps(slots, 64, 32).len()
        + CkksVector::matmul_replicated_rotation_steps(32, 10).len();
    assert_eq!(fast_count, 6 + 7);
    let mut steps = blocked.clone();
    steps.extend(&replicated);
    let c = VectorContext::builder(ckks)
        .rotation_steps(&steps)
        .power_of_two_rotations(false)
        .build()
        .unwrap();
    // 16 serves both products.
    assert_eq!(c.galois_keys().len(), 6);
    let v = values(64, 21);
    let w1: Vec<Vec<f64>> = (0..64).map(|i| values(32, 400 + i as u64)).collect();
    let w2: Vec<Vec<f64>> = (0..32).map(|i| values(10, 500 + i as u64)).collect();
    let affine = |x: &[f64], w: &[Vec<f64>]| -> Vec<f64> {
        (0..w[0].len())
            .map(|j| x.iter().zip(w).map(|(xi, row)| xi * row[j]).sum::<f64>())
            .collect()
    };
    let h = affine(&v, &w1);
    let expect = affine(&h, &w2);

    let x = CkksVector::encrypt_blocked(&c, &v, 32, false).unwrap();
    let m1 = CkksVector::encode_matrix_blocked(&c, &w1, x.level())
        .unwrap()
        .with_rotation_keys(compact);
    assert_eq!(m1.rotation_keys(), compact);
    let y = x.matmul_encoded(&m1).unwrap();
    let got = y.decrypt_unflooded_for_key_holder_only().unwrap();
    assert!(max_err(&got, &h) < 1e-4, "blocked: {}", max_err(&got, &h));
    let m2 = CkksVector::encode_matrix_replicated(&c, &w2, y.level())
        .unwrap()
        .with_rotation_keys(compact);
    let z = y.matmul_encoded(&m2).unwrap();
    let got = z.decrypt_unflooded_for_key_holder_only().unwrap();
    let e = max_err(&got, &expect);
    assert!(e < 1e-4, "replicated: error {e}: {got:?} vs {expect:?}");

    // The fast key set's matrices need keys this context does not have.
    let fast1 = CkksVector::encode_matrix_blocked(&c, &w1, x.level()).unwrap();
    assert!(matches!(
        x.matmul_encoded(&fast1),
        Err(HeError::MissingGaloisKey { .. })
    ));
    let fast2 = CkksVector::encode_matrix_replicated(&c, &w2, y.level()).unwrap();
    assert!(matches!(
        y.matmul_encoded(&fast2),
        Err(HeError::MissingGaloisKey { .. })
    ));
}

/// Galois keys made for low levels only: they rotate ciphertexts at those levels, refuse
/// higher ones by name, and are smaller on the wire.
#[test]
fn galois_keys_for_low_levels_are_smaller_and_refuse_higher_ciphertexts() {
    let params = small(2048, &[60, 40, 40, 40, 40, 60], 40.0);
    let ckks = Arc::new(CkksContext::new(params).unwrap());
    let mut kg = KeyGenerator::new(&ckks).unwrap();
    let top = ckks.max_level();
    let low = kg
        .galois_keys_at_levels(&[(3, 1), (-5, 1), (-5, 0)])
        .unwrap();
    let full = kg.galois_keys(&[3, -5]).unwrap();
    let (low_bytes, full_bytes) = (low.to_bytes(&ckks), full.to_bytes(&ckks));
    assert!(
        low_bytes.len() * 2 < full_bytes.len(),
        "{} vs {}",
        low_bytes.len(),
        full_bytes.len()
    );
    let low = GaloisKeys::from_bytes(&ckks, &low_bytes).unwrap();
    assert!(low.elements().all(|g| low.get(g).unwrap().level() == 1));
    let pk = kg.public_key().unwrap();
    let rlk = kg.relin_key().unwrap();
    let sk = kg.secret_key().clone();
    let c = VectorContext::from_keys(&ckks, pk, Some(sk), rlk, low).unwrap();
    let v = values(8, 21);
    let x = CkksVector::encrypt(&c, &v).unwrap();
    assert_eq!(x.level(), top);
    // At the top level the key is too low, and the error names the step.
    match x.rotate(3) {
        Err(HeError::GaloisKeyLevel {
            key_level, level, ..
        }) => assert_eq!((key_level, level), (1, top)),
        other => panic!("expected a key-level error, got {other:?}"),
    }
    // At level 1 it rotates.
    let mut y = x.clone();
    while y.level() > 1 {
        y = y.mul_scalar(1.0).unwrap();
    }
    let got = y
        .rotate(3)
        .unwrap()
        .decrypt_unflooded_for_key_holder_only()
        .unwrap();
    let expect: Vec<f64> = (0..8).map(|i| v[(i + 3) % 8]).collect();
    assert!(max_err(&got, &expect) < 1e-6);
    // A key for a level the parameters do not have is refused.
    assert!(kg.galois_keys_at_levels(&[(1, top + 1)]).is_err());
}

/// A relinearization key made for a lower level: smaller, relinearizes products at that
/// level, refuses higher ones by name, and survives serialization (a top-level-length or
/// longer blob is refused).
#[test]
fn relin_keys_for_low_levels_are_smaller_and_refuse_higher_products() {
    let params = small(2048, &[60, 40, 40, 40, 60], 40.0);
    let ckks = Arc::new(CkksContext::new(params).unwrap());
    let mut kg = KeyGenerator::new(&ckks).unwrap();
    let top = ckks.max_level();
    let low = kg.relin_key_at_level(top - 1).unwrap();
    let full = kg.relin_key().unwrap();
    assert_eq!((low.level(), full.level()), (top - 1, top));
    let (low_bytes, full_bytes) = (low.to_bytes(), full.to_bytes());
    assert!(low_bytes.len() < full_bytes.len() * 3 / 4);
    let low = RelinearizationKey::from_bytes(&ckks, &low_bytes).unwrap();
    assert_eq!(low.level(), top - 1);
    let mut longer = low_bytes.clone();
    longer.push(0);
    assert!(RelinearizationKey::from_bytes(&ckks, &longer).is_err());
    assert!(RelinearizationKey::from_bytes(&ckks, &low_bytes[..low_bytes.len() - 1]).is_err());
    assert!(kg.relin_key_at_level(top + 1).is_err());

    let pk = kg.public_key().unwrap();
    let sk = kg.secret_key().clone();
    let c = VectorContext::from_keys(&ckks, pk, Some(sk), low, GaloisKeys::default()).unwrap();
    let v = values(8, 41);
    let x = CkksVector::encrypt(&c, &v).unwrap();
    assert_eq!(x.level(), top);
    assert!(matches!(
        x.square(),
        Err(HeError::RelinKeyLevel { key_level, level }) if key_level == top - 1 && level == top
    ));
    // One level down (a product by a plaintext first), the square works.
    let y = x.mul_plain(&[1.0; 8]).unwrap();
    assert_eq!(y.level(), top - 1);
    let got = y
        .square()
        .unwrap()
        .decrypt_unflooded_for_key_holder_only()
        .unwrap();
    let expect: Vec<f64> = v.iter().map(|a| a * a).collect();
    assert!(max_err(&got, &expect) < 1e-4);
}

/// A constant goes into every slot without an encoding when the vector fills the slots (or
/// its padding is dirty anyway); a shorter clean vector keeps its padding at zero, so a sum
/// after `+ x` counts `x` once per element, not once per slot.
#[test]
fn scalars_reach_every_element_and_never_the_padding_of_a_short_vector() {
    let c = ctx();
    let slots = c.ckks().params().slots();
    let full = values(slots, 3);
    let x = CkksVector::encrypt(&c, &full).unwrap();
    for k in [2.5, -1e3, 0.0] {
        let got = (&x + k)
            .unwrap()
            .decrypt_unflooded_for_key_holder_only()
            .unwrap();
        let want: Vec<f64> = full.iter().map(|v| v + k).collect();
        assert!(max_err(&got, &want) < 1e-7, "{k}");
        let got = (&x - k)
            .unwrap()
            .decrypt_unflooded_for_key_holder_only()
            .unwrap();
        let want: Vec<f64> = full.iter().map(|v| v - k).collect();
        assert!(max_err(&got, &want) < 1e-7, "{k}");
    }
    // A short vector: the padding stays zero, so the sum sees 100 elements.
    let short = values(100, 4);
    let y = (&CkksVector::encrypt(&c, &short).unwrap() + 1.5).unwrap();
    let s = y
        .sum()
        .unwrap()
        .decrypt_unflooded_for_key_holder_only()
        .unwrap();
    let want = short.iter().sum::<f64>() + 1.5 * 100.0;
    assert!((s[0] - want).abs() < 1e-5, "{} vs {want}", s[0]);
    // After the product, the scale is different: the constant follows the vector's scale.
    let sq = (&(&x * &x).unwrap() + 0.25)
        .unwrap()
        .decrypt_unflooded_for_key_holder_only()
        .unwrap();
    let want: Vec<f64> = full.iter().map(|v| v * v + 0.25).collect();
    assert!(max_err(&sq, &want) < 1e-6);
    // What the encoder refuses, the fast path refuses too.
    assert!(matches!(&x + f64::NAN, Err(HeError::NonFiniteValue(_))));
    assert!(matches!(&x + 1e80, Err(HeError::EncodingOverflow { .. })));
}
