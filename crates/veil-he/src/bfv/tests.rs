//! BFV tests: exactness of every operation modulo `t`, the noise budget and its public
//! estimate, and the attacks: forged ciphertexts at the decryption boundary, computations
//! past the budget, hostile bytes.

use std::sync::{Arc, OnceLock};

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

use super::*;
use crate::ckks::KeyGenerator;
use crate::error::HeError;

struct Setup {
    ctx: Arc<BfvContext>,
    keys: Arc<BfvVectorContext>,
}

fn n8192() -> &'static Setup {
    static S: OnceLock<Setup> = OnceLock::new();
    S.get_or_init(|| {
        let ctx = BfvContext::new(BfvParameters::preset(BfvPreset::N8192).unwrap()).unwrap();
        let keys = BfvVectorContext::new(&ctx).unwrap();
        Setup { ctx, keys }
    })
}

fn random_values(rng: &mut ChaCha20Rng, len: usize, t: u64) -> Vec<i64> {
    let half = (t / 2) as i64;
    (0..len)
        .map(|_| (rng.next_u64() % t) as i64 - half)
        .collect()
}

fn modt(v: i128, t: u64) -> i64 {
    let t = i128::from(t);
    let r = v.rem_euclid(t);
    (if r > t / 2 { r - t } else { r }) as i64
}

#[test]
fn batch_encoding_round_trips_and_multiplies_slot_wise() {
    let s = n8192();
    let enc = BatchEncoder::new(&s.ctx);
    let t = s.ctx.plain_modulus();
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let a = random_values(&mut rng, s.ctx.slots(), t);
    let b = random_values(&mut rng, s.ctx.slots(), t);
    let pa = enc.encode_signed(&a).unwrap();
    assert_eq!(enc.decode_signed(&pa).unwrap(), a);
    // Polynomial product modulo (X^N + 1, t) = slot-wise product.
    let pb = enc.encode_signed(&b).unwrap();
    let n = s.ctx.degree();
    let tm = veil_math::Modulus::new(t).unwrap();
    let mut prod = vec![0u64; n];
    // The negacyclic product through the NTT modulo t (a schoolbook product is 2^26 steps).
    let mut fa = pa.coeffs.clone();
    let mut fb = pb.coeffs.clone();
    s.ctx.plain_ring().ntt_forward(0, &mut fa);
    s.ctx.plain_ring().ntt_forward(0, &mut fb);
    for k in 0..n {
        prod[k] = tm.mul(fa[k], fb[k]);
    }
    s.ctx.plain_ring().ntt_inverse(0, &mut prod);
    let got = enc
        .decode_signed(&BfvPlaintext {
            coeffs: prod,
            fingerprint: s.ctx.fingerprint(),
        })
        .unwrap();
    for k in 0..n {
        assert_eq!(got[k], modt(i128::from(a[k]) * i128::from(b[k]), t));
    }
    // Out of range and too many values.
    assert!(matches!(
        enc.encode(&[t]),
        Err(HeError::PlainValueOutOfRange { .. })
    ));
    assert!(matches!(
        enc.encode_signed(&[(t / 2) as i64 + 1]),
        Err(HeError::PlainValueOutOfRange { .. })
    ));
    assert!(matches!(
        enc.encode(&vec![0; n + 1]),
        Err(HeError::TooManyValues { .. })
    ));
}

#[test]
fn every_operation_is_exact_modulo_t() {
    let s = n8192();
    let t = s.ctx.plain_modulus();
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let len = s.ctx.slots();
    let a = random_values(&mut rng, len, t);
    let b = random_values(&mut rng, len, t);
    let c = random_values(&mut rng, len, t);
    let ea = BfvVector::encrypt(&s.keys, &a).unwrap();
    let eb = BfvVector::encrypt(&s.keys, &b).unwrap();
    let check = |v: &BfvVector, f: &dyn Fn(usize) -> i128, what: &str| {
        let got = v.decrypt().unwrap();
        for (k, &g) in got.iter().enumerate() {
            assert_eq!(g, modt(f(k), t), "{what} slot {k}");
        }
        assert_eq!(got.len(), len);
    };
    let w = |x: i64| i128::from(x);
    check(&ea.add(&eb).unwrap(), &|k| w(a[k]) + w(b[k]), "add");
    check(&ea.sub(&eb).unwrap(), &|k| w(a[k]) - w(b[k]), "sub");
    check(&ea.neg().unwrap(), &|k| -w(a[k]), "neg");
    check(
        &ea.add_plain(&c).unwrap(),
        &|k| w(a[k]) + w(c[k]),
        "add_plain",
    );
    check(
        &ea.sub_plain(&c).unwrap(),
        &|k| w(a[k]) - w(c[k]),
        "sub_plain",
    );
    check(
        &ea.mul_plain(&c).unwrap(),
        &|k| w(a[k]) * w(c[k]),
        "mul_plain",
    );
    check(
        &ea.add_scalar(-12345).unwrap(),
        &|k| w(a[k]) - 12345,
        "add_scalar",
    );
    check(
        &ea.mul_scalar(777).unwrap(),
        &|k| w(a[k]) * 777,
        "mul_scalar",
    );
    let prod = ea.mul(&eb).unwrap();
    check(&prod, &|k| w(a[k]) * w(b[k]), "mul");
    check(&ea.mul(&ea).unwrap(), &|k| w(a[k]) * w(a[k]), "square");
    // Depth 2: (a·b)·c, and after a modulus switch.
    let ec = BfvVector::encrypt(&s.keys, &c).unwrap();
    let abc = prod.mul(&ec).unwrap();
    check(&abc, &|k| w(a[k]) * w(b[k]) * w(c[k]), "a·b·c");
    let switched = prod.mod_switch_to_next().unwrap();
    assert_eq!(switched.ciphertext().level(), prod.ciphertext().level() - 1);
    check(&switched, &|k| w(a[k]) * w(b[k]), "mod switch");
    // Mixed levels are aligned.
    check(
        &switched.add(&ec).unwrap(),
        &|k| w(a[k]) * w(b[k]) + w(c[k]),
        "mixed levels",
    );
}

#[test]
fn rotations_sum_and_dot() {
    let s = n8192();
    let t = s.ctx.plain_modulus();
    let row = s.ctx.row_size();
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let a = random_values(&mut rng, s.ctx.slots(), t);
    let ea = BfvVector::encrypt(&s.keys, &a).unwrap();
    for step in [1i64, 5, -3, 1000] {
        let got = ea.rotate(step).unwrap().decrypt().unwrap();
        for r in 0..2 {
            for c in 0..row {
                let src = (c as i64 + step).rem_euclid(row as i64) as usize;
                assert_eq!(
                    got[r * row + c],
                    a[r * row + src],
                    "step {step} row {r} col {c}"
                );
            }
        }
    }
    let ev = s.keys.evaluator();
    let swapped = ev.rotate_columns(ea.ciphertext(), &s.keys.gk).unwrap();
    let dec = s.keys.decryptor.as_ref().unwrap();
    let got = BatchEncoder::new(&s.ctx)
        .decode_signed(&dec.decrypt(&swapped).unwrap())
        .unwrap();
    for c in 0..row {
        assert_eq!(got[c], a[row + c]);
        assert_eq!(got[row + c], a[c]);
    }
    // Sum of all N values and a short dot product.
    let total: i128 = a.iter().map(|&x| i128::from(x)).sum();
    assert_eq!(ea.sum().unwrap().decrypt().unwrap(), vec![modt(total, t)]);
    let x = BfvVector::encrypt(&s.keys, &[1, 0, 1, 1, -2]).unwrap();
    let y = BfvVector::encrypt(&s.keys, &[3, 5, 7, 9, 4]).unwrap();
    assert_eq!(x.dot(&y).unwrap().decrypt().unwrap(), vec![3 + 7 + 9 - 8]);
    assert!(x.dot(&ea).is_err(), "lengths differ");
}

#[test]
fn noise_budget_matches_seal_semantics_and_the_estimate_is_conservative() {
    let s = n8192();
    let t = s.ctx.plain_modulus();
    let mut rng = ChaCha20Rng::seed_from_u64(4);
    let a = random_values(&mut rng, s.ctx.slots(), t);
    let mut v = BfvVector::encrypt(&s.keys, &a).unwrap();
    let mut expect: Vec<i128> = a.iter().map(|&x| i128::from(x)).collect();
    let fresh = v.noise_budget().unwrap();
    // 162-bit Q, 20-bit t: SEAL reports ~130 bits for a fresh encryption at these sizes.
    assert!((115..150).contains(&fresh), "fresh budget {fresh}");
    let mut last = fresh;
    let mut depth = 0;
    loop {
        let measured = v.noise_budget().unwrap();
        let estimated = v.estimated_noise_budget().unwrap();
        // The public estimate never promises more than is there, and is not uselessly loose.
        assert!(
            estimated <= f64::from(measured) + 0.5,
            "depth {depth}: estimate {estimated:.1} > measured {measured}"
        );
        assert!(
            f64::from(measured) - estimated < 20.0,
            "depth {depth}: estimate {estimated:.1} far below measured {measured}"
        );
        eprintln!("depth {depth}: measured {measured}, estimated {estimated:.1}");
        if depth > 0 {
            // Each product spends log2(t·N) + a few bits (20 + 13 + ~3).
            let spent = last - measured;
            assert!(
                (30..=42).contains(&spent),
                "depth {depth}: spent {spent} bits"
            );
        }
        let got = v.decrypt().unwrap();
        for (k, &e) in expect.iter().enumerate() {
            assert_eq!(got[k], modt(e, t), "depth {depth} slot {k}");
        }
        last = measured;
        match v.mul(&v) {
            Ok(next) if next.estimated_noise_budget().unwrap() > 0.0 => {
                v = next;
                for e in expect.iter_mut() {
                    *e = i128::from(modt(*e * *e, t));
                }
                depth += 1;
            }
            _ => break,
        }
    }
    assert!(depth >= 2, "N = 8192 must allow two products, got {depth}");
}

#[test]
fn a_computation_past_its_budget_is_refused_before_the_key_is_used() {
    // The attack: keep squaring until the noise wraps. A wrapped ciphertext decrypts to
    // garbage whose value (or whether it decrypts at all) depends on the key; the vector
    // refuses on its public estimate, which is the same under any key.
    let s = n8192();
    let other_keys = BfvVectorContext::new(&s.ctx).unwrap();
    let mut budgets = Vec::new();
    for keys in [&s.keys, &other_keys] {
        let mut v = BfvVector::encrypt(keys, &[3, 1, 4, 1, 5]).unwrap();
        for _ in 0..6 {
            v = v.mul(&v).unwrap();
        }
        assert_eq!(v.estimated_noise_budget(), Some(0.0));
        assert!(matches!(
            v.decrypt(),
            Err(HeError::NoiseBudgetExhausted { .. })
        ));
        budgets.push(v.estimated_noise_budget());
    }
    assert_eq!(budgets[0], budgets[1]);
}

#[test]
fn a_forged_ciphertext_at_the_decryption_boundary_is_refused() {
    // The first step of key-recovery attacks on exact schemes: a ciphertext whose noise sits
    // near 1/2, so that whether it decrypts correctly depends on the key. Forge one by adding
    // about Q/(3t) to a coefficient of c_0.
    let s = n8192();
    let dec = s.keys.decryptor.as_ref().unwrap();
    let v = BfvVector::encrypt(&s.keys, &[7, 8, 9]).unwrap();
    let mut ct = v.ciphertext().clone();
    let level = ct.level();
    let q: f64 = s.ctx.modulus_bits_at(level).exp2();
    let t = s.ctx.plain_modulus() as f64;
    // 2^k in (Q/4t, Q/2t]: invariant noise in (1/4, 1/2].
    let offset_bits = (q / (4.0 * t)).log2().floor() + 1.0;
    let mut poly = ct.inner.parts[0].clone();
    poly.to_coefficient();
    let moduli = poly.moduli();
    for (i, m) in moduli.iter().enumerate() {
        // 2^offset_bits mod q_i
        let r = m.pow(2, offset_bits as u64);
        let limb = poly.limb_mut(i);
        limb[0] = m.add(limb[0], r);
    }
    poly.to_ntt();
    ct.inner.parts[0] = poly;
    assert!(matches!(
        dec.decrypt(&ct),
        Err(HeError::NoiseBudgetExhausted { .. })
    ));
    assert_eq!(dec.invariant_noise_budget(&ct).unwrap(), 0);
    // The honest ciphertext decrypts.
    assert!(dec.decrypt(v.ciphertext()).is_ok());
}

#[test]
fn hostile_bytes_are_refused_without_panicking() {
    let s = n8192();
    let v = BfvVector::encrypt(&s.keys, &[1, 2, 3]).unwrap();
    let bytes = v.ciphertext().to_bytes();
    let back = BfvCiphertext::from_bytes(&s.ctx, &bytes).unwrap();
    let dec = s.keys.decryptor.as_ref().unwrap();
    let enc = BatchEncoder::new(&s.ctx);
    assert_eq!(
        &enc.decode_signed(&dec.decrypt(&back).unwrap()).unwrap()[..3],
        &[1, 2, 3]
    );
    let vb = v.to_bytes();
    let vback = BfvVector::from_bytes(&s.keys, &vb).unwrap();
    assert_eq!(vback.decrypt().unwrap(), vec![1, 2, 3]);
    assert_eq!(vback.estimated_noise_budget(), None);
    // Truncations at every length, a flipped magic, a wrong kind, unreduced coefficients.
    for cut in (0..bytes.len()).step_by(bytes.len() / 50) {
        assert!(BfvCiphertext::from_bytes(&s.ctx, &bytes[..cut]).is_err());
    }
    let mut bad = bytes.clone();
    bad[0] ^= 1;
    assert!(BfvCiphertext::from_bytes(&s.ctx, &bad).is_err());
    let mut bad = bytes.clone();
    bad[5] = 1;
    assert!(BfvCiphertext::from_bytes(&s.ctx, &bad).is_err());
    let mut bad = bytes.clone();
    let tail = bad.len() - 64;
    bad[tail..].fill(0xff);
    assert!(BfvCiphertext::from_bytes(&s.ctx, &bad).is_err());
    assert!(BfvVector::from_bytes(&s.keys, &[0xff, 0xff, 0xff, 0xff]).is_err());
    // A CKKS ciphertext is not a BFV one, and a ciphertext of other parameters is refused.
    let ckks = crate::ckks::CkksContext::new(
        crate::ckks::CkksParameters::preset(crate::ckks::Preset::N8192Depth2).unwrap(),
    )
    .unwrap();
    let mut kg = KeyGenerator::new(&ckks).unwrap();
    let ckks_ct = crate::ckks::Encryptor::new(&ckks, kg.public_key().unwrap())
        .unwrap()
        .encrypt(
            &crate::ckks::CkksEncoder::new(&ckks)
                .encode(&[1.0], 1e9, 2)
                .unwrap(),
        )
        .unwrap();
    assert!(BfvCiphertext::from_bytes(&s.ctx, &ckks_ct.to_bytes()).is_err());
    let other = BfvContext::new(
        BfvParameters::builder()
            .degree(8192)
            .plain_modulus_bits(30)
            .build()
            .unwrap(),
    )
    .unwrap();
    assert!(matches!(
        BfvCiphertext::from_bytes(&other, &bytes),
        Err(HeError::ParameterMismatch { .. })
    ));
    // Parameters round-trip; below 128 bits they are refused unless the reader opts out.
    let p = s.ctx.params().to_bytes();
    assert_eq!(&BfvParameters::from_bytes(&p).unwrap(), s.ctx.params());
    let toy = BfvParameters::builder()
        .degree(1024)
        .moduli_bits(&[30, 30, 31])
        .plain_modulus_bits(17)
        .insecure_allow_below_128_bit_security()
        .build()
        .unwrap();
    assert!(matches!(
        BfvParameters::from_bytes(&toy.to_bytes()),
        Err(HeError::InsecureParameters { .. }) | Err(HeError::InvalidParameters(_))
    ));
    assert_eq!(
        BfvParameters::from_bytes_insecure_allow_below_128_bit_security(&toy.to_bytes()).unwrap(),
        toy
    );
    let mut badp = p.clone();
    badp[10] ^= 1;
    assert!(BfvParameters::from_bytes(&badp).is_err());
}

#[test]
fn public_context_computes_but_cannot_decrypt() {
    let s = n8192();
    let public = s.keys.public();
    assert!(!public.has_secret_key());
    let x = BfvVector::encrypt(&public, &[2, 3]).unwrap();
    let y = x.mul(&x).unwrap().add_scalar(1).unwrap();
    assert!(matches!(y.decrypt(), Err(HeError::MissingSecretKey)));
    let back = BfvVector::from_bytes(&s.keys, &y.to_bytes()).unwrap();
    assert_eq!(back.decrypt().unwrap(), vec![5, 10]);
}

#[test]
fn contexts_travel_as_bytes_without_the_secret_key() {
    let s = n8192();
    let public = s.keys.public_to_bytes();
    let server = BfvVectorContext::from_public_bytes(&public, None).unwrap();
    assert!(!server.has_secret_key());
    let x = BfvVector::encrypt(&server, &[4, -5, 6]).unwrap();
    let y = x.mul_scalar(3).unwrap().add(&x).unwrap().rotate(1).unwrap();
    let back = BfvVector::from_bytes(&s.keys, &y.to_bytes()).unwrap();
    assert_eq!(back.decrypt().unwrap(), vec![-20, 24, 0]);
    // The key holder's side rebuilt from bytes decrypts too.
    let sk = s.keys.secret_key_bytes().unwrap().unwrap();
    let owner = BfvVectorContext::from_public_bytes(&public, Some(&sk)).unwrap();
    let z = BfvVector::from_bytes(&owner, &y.to_bytes()).unwrap();
    assert_eq!(z.decrypt().unwrap(), vec![-20, 24, 0]);
    // Hostile context bytes: truncated, trailing, wrong magic.
    assert!(BfvVectorContext::from_public_bytes(&public[..public.len() - 1], None).is_err());
    let mut longer = public.clone();
    longer.push(0);
    assert!(BfvVectorContext::from_public_bytes(&longer, None).is_err());
    assert!(BfvVectorContext::from_public_bytes(b"VEILCTX1", None).is_err());
}

#[test]
fn small_and_large_presets_work() {
    for preset in [BfvPreset::N4096, BfvPreset::N16384] {
        let ctx = BfvContext::new(BfvParameters::preset(preset).unwrap()).unwrap();
        let keys = BfvVectorContext::new(&ctx).unwrap();
        let x = BfvVector::encrypt(&keys, &[-5, 6, 100]).unwrap();
        let y = x.mul(&x).unwrap().sub_plain(&[1, 1, 1]).unwrap();
        assert_eq!(
            y.decrypt().unwrap(),
            vec![24, 35, 9999],
            "{}",
            preset.name()
        );
    }
}
