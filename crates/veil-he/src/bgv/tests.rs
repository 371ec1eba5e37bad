//! BGV tests: exact results through products, modulus switches (correction factors),
//! rotations; keys that cannot mix with BFV's; forged and hostile inputs refused.

use std::sync::{Arc, OnceLock};

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

use super::*;
use crate::bfv::BfvPreset;
use crate::ckks::KeyGenerator;

struct Setup {
    ctx: Arc<BgvContext>,
    enc: BgvEncryptor,
    sym: BgvEncryptor,
    dec: BgvDecryptor,
    ev: BgvEvaluator,
    rlk: RelinearizationKey,
    gk: GaloisKeys,
}

fn setup() -> &'static Setup {
    static S: OnceLock<Setup> = OnceLock::new();
    S.get_or_init(|| {
        let (n, bits) = BfvPreset::N8192.spec();
        let params = BfvParameters::builder()
            .degree(n)
            .moduli_bits(&bits)
            .build_bgv()
            .unwrap();
        let ctx = BgvContext::new(params).unwrap();
        let mut kg = KeyGenerator::new(ctx.core()).unwrap();
        let mut gk = kg.galois_keys(&[1, 3, -1]).unwrap();
        gk.extend(
            kg.galois_keys_with_progress(&[], true, &mut |_, _| {})
                .unwrap(),
        );
        Setup {
            enc: BgvEncryptor::new(&ctx, kg.public_key().unwrap()).unwrap(),
            sym: BgvEncryptor::symmetric(&ctx, kg.secret_key().clone()).unwrap(),
            dec: BgvDecryptor::new(&ctx, kg.secret_key().clone()).unwrap(),
            ev: BgvEvaluator::new(&ctx),
            rlk: kg.relin_key().unwrap(),
            gk,
            ctx,
        }
    })
}

fn random(rng: &mut ChaCha20Rng, t: u64, n: usize) -> Vec<u64> {
    (0..n).map(|_| rng.next_u64() % t).collect()
}

fn decrypt(s: &Setup, ct: &BgvCiphertext) -> Vec<u64> {
    s.ctx.encoder().decode(&s.dec.decrypt(ct).unwrap()).unwrap()
}

#[test]
fn products_switches_and_rotations_are_exact() {
    let s = setup();
    let t = s.ctx.plain_modulus();
    let tm = Modulus::new(t).unwrap();
    let n = s.ctx.slots();
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let a = random(&mut rng, t, n);
    let b = random(&mut rng, t, n);
    let enc = s.ctx.encoder();
    let ca = s.enc.encrypt(&enc.encode(&a).unwrap()).unwrap();
    let cb = s.sym.encrypt(&enc.encode(&b).unwrap()).unwrap();
    let ev = &s.ev;
    let map2 = |f: &dyn Fn(u64, u64) -> u64| -> Vec<u64> {
        a.iter().zip(&b).map(|(&x, &y)| f(x, y)).collect()
    };
    assert_eq!(decrypt(s, &ca), a);
    assert_eq!(
        decrypt(s, &ev.add(&ca, &cb).unwrap()),
        map2(&|x, y| tm.add(x, y))
    );
    assert_eq!(
        decrypt(s, &ev.sub(&ca, &cb).unwrap()),
        map2(&|x, y| tm.sub(x, y))
    );
    assert_eq!(
        decrypt(
            s,
            &ev.multiply_plain(&ca, &enc.encode(&b).unwrap()).unwrap()
        ),
        map2(&|x, y| tm.mul(x, y))
    );
    assert_eq!(
        decrypt(s, &ev.add_plain(&ca, &enc.encode(&b).unwrap()).unwrap()),
        map2(&|x, y| tm.add(x, y))
    );
    assert_eq!(
        decrypt(s, &ev.multiply_scalar(&ca, -3).unwrap()),
        a.iter().map(|&x| tm.mul(x, t - 3)).collect::<Vec<_>>()
    );
    // Product, relinearized, then one level down: the correction factor changes and
    // decryption removes it.
    let prod = ev.multiply_relin(&ca, &cb, &s.rlk).unwrap();
    assert_eq!(decrypt(s, &prod), map2(&|x, y| tm.mul(x, y)));
    let down = ev.mod_switch_to_next(&prod).unwrap();
    assert_eq!(down.level(), prod.level() - 1);
    assert_ne!(down.correction(), 1);
    assert_eq!(decrypt(s, &down), map2(&|x, y| tm.mul(x, y)));
    // Mixed correction factors are aligned: a·b switched (α = q^-1) + b switched, squared
    // (α = q^-2) at the same level.
    let b_down = ev.mod_switch_to_next(&cb).unwrap();
    let bb = ev.multiply_relin(&b_down, &b_down, &s.rlk).unwrap();
    assert_ne!(bb.correction(), down.correction());
    let sum = ev.add(&down, &bb).unwrap();
    let want: Vec<u64> = a
        .iter()
        .zip(&b)
        .map(|(&x, &y)| tm.add(tm.mul(x, y), tm.mul(y, y)))
        .collect();
    assert_eq!(decrypt(s, &sum), want);
    // Rotations and the row swap.
    let row = n / 2;
    let r = decrypt(s, &ev.rotate_rows(&ca, 3, &s.gk).unwrap());
    for c in 0..row {
        assert_eq!(r[c], a[(c + 3) % row]);
        assert_eq!(r[row + c], a[row + (c + 3) % row]);
    }
    let sw = decrypt(s, &ev.rotate_columns(&ca, &s.gk).unwrap());
    assert_eq!(&sw[..row], &a[row..]);
    assert_eq!(&sw[row..], &a[..row]);
}

#[test]
fn depth_with_modulus_switching_and_the_noise_budget() {
    let s = setup();
    let t = s.ctx.plain_modulus();
    let tm = Modulus::new(t).unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(8);
    let a = random(&mut rng, t, s.ctx.slots());
    let mut want = a.clone();
    let mut ct = s.enc.encrypt(&s.ctx.encoder().encode(&a).unwrap()).unwrap();
    let mut budgets = vec![s.dec.noise_budget(&ct).unwrap()];
    // Square, switch down: as many times as there are levels.
    while ct.level() > 0 {
        ct =
            s.ev.mod_switch_to_next(&s.ev.multiply_relin(&ct, &ct, &s.rlk).unwrap())
                .unwrap();
        want = want.iter().map(|&x| tm.mul(x, x)).collect();
        assert_eq!(decrypt(s, &ct), want, "level {}", ct.level());
        budgets.push(s.dec.noise_budget(&ct).unwrap());
    }
    assert!(budgets[0] > 100, "{budgets:?}");
    assert!(budgets.windows(2).all(|w| w[1] < w[0]), "{budgets:?}");
    // One more product at level 0 exceeds the last prime: refused, not garbage.
    let over = s.ev.multiply_relin(&ct, &ct, &s.rlk).unwrap();
    let over = s.ev.multiply_relin(&over, &over, &s.rlk).unwrap();
    assert!(matches!(
        s.dec.decrypt(&over),
        Err(HeError::NoiseBudgetExhausted { .. })
    ));
}

#[test]
fn bgv_and_bfv_keys_and_bytes_never_mix() {
    let s = setup();
    // Same chain and t as BFV's preset, but another fingerprint (errors are multiples of t).
    let bfv = BfvContext::new(BfvParameters::preset(BfvPreset::N8192).unwrap()).unwrap();
    assert_ne!(bfv.core().fingerprint(), s.ctx.core().fingerprint());
    let mut bfv_kg = KeyGenerator::new(bfv.core()).unwrap();
    assert!(BgvEncryptor::new(&s.ctx, bfv_kg.public_key().unwrap()).is_err());
    assert!(BfvContext::new(s.ctx.params().clone()).is_err());
    assert!(BgvContext::new(bfv.params().clone()).is_err());
    // Parameters round-trip as BGV and are refused as BFV.
    let p = s.ctx.params().to_bytes();
    let back = BfvParameters::from_bytes(&p).unwrap();
    assert!(back.is_bgv());
    assert_eq!(&back, s.ctx.params());
    // Ciphertexts round-trip; hostile bytes are refused.
    let ct = s
        .enc
        .encrypt(&s.ctx.encoder().encode(&[5, 6]).unwrap())
        .unwrap();
    let down = s.ev.mod_switch_to_next(&ct).unwrap();
    let bytes = down.to_bytes();
    let again = BgvCiphertext::from_bytes(&s.ctx, &bytes).unwrap();
    assert_eq!(&decrypt(s, &again)[..2], &[5, 6]);
    for cut in [0, 10, 40, 46, bytes.len() - 1] {
        assert!(BgvCiphertext::from_bytes(&s.ctx, &bytes[..cut]).is_err());
    }
    let mut bad = bytes.clone();
    bad[38..46].copy_from_slice(&0u64.to_le_bytes());
    assert!(BgvCiphertext::from_bytes(&s.ctx, &bad).is_err(), "α = 0");
    let mut bad = bytes.clone();
    bad[38..46].copy_from_slice(&s.ctx.plain_modulus().to_le_bytes());
    assert!(BgvCiphertext::from_bytes(&s.ctx, &bad).is_err(), "α = t");
    let bfv_ct = crate::bfv::BfvEncryptor::new(&bfv, bfv_kg.public_key().unwrap())
        .unwrap()
        .encrypt(&crate::bfv::BatchEncoder::new(&bfv).encode(&[1]).unwrap())
        .unwrap();
    assert!(BgvCiphertext::from_bytes(&s.ctx, &bfv_ct.to_bytes()).is_err());
}

#[test]
fn a_forged_phase_near_q_over_2_is_refused() {
    let s = setup();
    let ct = s
        .enc
        .encrypt(&s.ctx.encoder().encode(&[1, 2, 3]).unwrap())
        .unwrap();
    let mut forged = ct.clone();
    let level = forged.level();
    let q_bits = s.ctx.exact.modulus_bits_at(level);
    let mut p = forged.inner.parts[0].clone();
    p.to_coefficient();
    let moduli = p.moduli();
    for (i, m) in moduli.iter().enumerate() {
        // + t·2^(bits(Q) − bits(t) − 1.5): the phase lands between Q/4 and Q/2.
        let k = (q_bits - (s.ctx.plain_modulus() as f64).log2() - 1.5).ceil() as u64;
        let add = m.mul(m.pow(2, k), m.reduce(s.ctx.plain_modulus()));
        p.limb_mut(i)[0] = m.add(p.limb(i)[0], add);
    }
    p.to_ntt();
    forged.inner.parts[0] = p;
    assert!(matches!(
        s.dec.decrypt(&forged),
        Err(HeError::NoiseBudgetExhausted { .. })
    ));
    assert_eq!(s.dec.noise_budget(&forged).unwrap(), 0);
}
