//! Hybrid key switching (special-prime form, configurable decomposition number).
//!
//! Switching a polynomial `d` (NTT form over `q_0..q_ℓ`) with a key for `s' → s`:
//! 1. **Decompose** (ModUp): split the primes into digits `D_j`; lift each digit's residues
//!    to the whole extended basis `q_0..q_ℓ, p_0..` by fast base conversion and transform.
//! 2. **Inner product** with the key's `(b_j, a_j)`.
//! 3. **ModDown**: divide by `P` with the special primes' residues, back to `q_0..q_ℓ`.
//!
//! Step 1 depends only on `d`: *hoisted* rotations decompose once and apply many keys, each
//! with the Galois permutation applied to the digits in NTT form.

use rayon::prelude::*;
use veil_math::par::{for_each_limb, map_range, should_parallelize};
use veil_math::{Representation, RnsPoly};

use crate::ckks::context::CkksContext;
use crate::ckks::keys::SwitchingKey;
use crate::error::{HeError, Result};

const NTT_COST: usize = 32;

/// A polynomial decomposed into digits, each lifted to the extended basis (NTT form).
#[derive(Debug)]
pub(crate) struct Decomposed {
    pub level: usize,
    pub digits: Vec<RnsPoly>,
}

/// Step 1: ModUp of every digit of `d` (NTT form over `q_0..q_ℓ`).
pub(crate) fn decompose(ctx: &CkksContext, d: &RnsPoly) -> Result<Decomposed> {
    if d.representation() != Representation::Ntt
        || d.num_limbs() == 0
        || d.num_limbs() > ctx.max_level() + 1
    {
        return Err(HeError::Internal(
            "key switching input must be an NTT-form ciphertext polynomial",
        ));
    }
    let level = d.num_limbs() - 1;
    let ks = &ctx.key_switch[level];
    let n = ctx.degree();
    let ext = ctx.ext_basis(level);
    let ring = ctx.ring();
    let mut d_coeff = d.clone();
    d_coeff.to_coefficient();
    if ks.digit_positions.iter().all(|dp| dp.len() == 1) {
        return decompose_single_primes(ctx, d, &d_coeff, level);
    }
    let digits = map_range(
        ks.digit_positions.len(),
        n * ext.len() * NTT_COST,
        |j| -> Result<RnsPoly> {
            let dp = &ks.digit_positions[j];
            let cp = &ks.complement_positions[j];
            let mut input = Vec::with_capacity(dp.len() * n);
            for &p in dp {
                input.extend_from_slice(d_coeff.limb(p));
            }
            let mut conv = vec![0u64; cp.len() * n];
            ks.mod_up[j].convert_centered(n, &input, &mut conv)?;
            for_each_limb(&mut conv, n, NTT_COST, |t, limb| {
                ring.ntt_forward(ext[cp[t]], limb)
            });
            let mut out = RnsPoly::zero(ring, &ext, Representation::Ntt)?;
            for &p in dp {
                out.limb_mut(p).copy_from_slice(d.limb(p));
            }
            for (t, &p) in cp.iter().enumerate() {
                out.limb_mut(p).copy_from_slice(&conv[t * n..(t + 1) * n]);
            }
            Ok(out)
        },
    );
    Ok(Decomposed {
        level,
        digits: digits.into_iter().collect::<Result<Vec<_>>>()?,
    })
}

/// [`decompose`] when every digit is one prime (`dnum` = the number of primes, as with one
/// special prime): each lifted digit is built in one buffer, its own limb copied from `d` and every other limb converted in place from the
/// digit's coefficients and transformed — no zeroed buffers, no intermediate copies.
fn decompose_single_primes(
    ctx: &CkksContext,
    d: &RnsPoly,
    d_coeff: &RnsPoly,
    level: usize,
) -> Result<Decomposed> {
    let ks = &ctx.key_switch[level];
    let n = ctx.degree();
    let ext = ctx.ext_basis(level);
    let ring = ctx.ring();
    let digits = map_range(
        ks.digit_positions.len(),
        n * ext.len() * NTT_COST,
        |j| -> Result<RnsPoly> {
            let own = ks.digit_positions[j][0];
            let source = d_coeff.limb(own);
            let mut data = Vec::with_capacity(ext.len() * n);
            let mut t = 0;
            for (pos, &prime) in ext.iter().enumerate() {
                if pos == own {
                    data.extend_from_slice(d.limb(pos));
                    continue;
                }
                data.extend_from_slice(source);
                let limb = &mut data[pos * n..];
                ks.mod_up[j].convert_single_in_place(t, limb, true)?;
                ring.ntt_forward(prime, limb);
                t += 1;
            }
            Ok(RnsPoly::from_reduced_limbs(
                ring,
                &ext,
                Representation::Ntt,
                data,
            )?)
        },
    );
    Ok(Decomposed {
        level,
        digits: digits.into_iter().collect::<Result<Vec<_>>>()?,
    })
}

/// Steps 2 and 3: inner product with `key` (optionally permuting the digits by a Galois
/// permutation first) and ModDown. Returns `(k_0, k_1)` over `q_0..q_ℓ` with
/// `k_0 + k_1·s ≈ σ(d)·s'`.
pub(crate) fn apply(
    ctx: &CkksContext,
    dec: &Decomposed,
    perm: Option<&[u32]>,
    key: &SwitchingKey,
) -> Result<(RnsPoly, RnsPoly)> {
    ctx.check_fingerprint(&key.fingerprint)?;
    let level = dec.level;
    if key.level < level {
        return Err(HeError::GaloisKeyLevel {
            step: 0,
            key_level: key.level,
            level,
        });
    }
    if key.b.len() < dec.digits.len() || key.a.len() != key.b.len() {
        return Err(HeError::Internal("switching key has too few digits"));
    }
    let max_level = ctx.max_level();
    let n = ctx.degree();
    let ext = ctx.ext_basis(level);
    let ring = ctx.ring();
    let mut acc0 = RnsPoly::zero(ring, &ext, Representation::Ntt)?;
    let mut acc1 = RnsPoly::zero(ring, &ext, Representation::Ntt)?;
    let work = |t: usize, l0: &mut [u64], l1: &mut [u64]| {
        let prime = ext[t];
        let mut tmp = vec![0u64; if perm.is_some() { n } else { 0 }];
        for (j, digit) in dec.digits.iter().enumerate() {
            let src = digit.limb(t);
            let src: &[u64] = match perm {
                Some(p) => {
                    for (o, &i) in tmp.iter_mut().zip(p) {
                        *o = src[i as usize];
                    }
                    &tmp
                }
                None => src,
            };
            let pos = key.limb_position(prime, max_level);
            ring.mul_accumulate(prime, l0, src, key.b[j].limb(pos));
            ring.mul_accumulate(prime, l1, src, key.a[j].limb(pos));
        }
    };
    // Two modular products per digit and coefficient: about 6 units each on the scale of
    // `NTT_COST` (an element product costs about what one NTT butterfly does).
    let total = n * ext.len() * dec.digits.len() * 12;
    if should_parallelize(total, ext.len()) {
        acc0.data_mut()
            .par_chunks_mut(n)
            .zip(acc1.data_mut().par_chunks_mut(n))
            .enumerate()
            .for_each(|(t, (l0, l1))| work(t, l0, l1));
    } else {
        acc0.data_mut()
            .chunks_mut(n)
            .zip(acc1.data_mut().chunks_mut(n))
            .enumerate()
            .for_each(|(t, (l0, l1))| work(t, l0, l1));
    }
    let (k0, k1) = if should_parallelize(total, 2) {
        rayon::join(|| mod_down(ctx, acc0, level), || mod_down(ctx, acc1, level))
    } else {
        (mod_down(ctx, acc0, level), mod_down(ctx, acc1, level))
    };
    Ok((k0?, k1?))
}

/// ModDown: `round(x / P)` from the extended basis back to `q_0..q_ℓ` (NTT form).
///
/// In a BGV core, `(x − δ)/P` with `δ = t·[x·t^{-1}]_P` instead: `δ ≡ x (mod P)` makes the
/// division exact and `δ ≡ 0 (mod t)` keeps the error a multiple of `t`. With `x` an inner
/// product against keys `−a·s + t·e + P·g·s'` (or an encryption of zero with `t·e` errors),
/// `x = P·d·s' + t·E`, and the result decrypts to `d·s' + t·E'`: the message is untouched.
pub(crate) fn mod_down(ctx: &CkksContext, acc: RnsPoly, level: usize) -> Result<RnsPoly> {
    match &ctx.plain {
        None => mod_down_rounding(ctx, acc, level),
        Some(plain) => mod_down_bgv(ctx, acc, level, plain),
    }
}

/// BGV ModDown (see [`mod_down`]).
fn mod_down_bgv(
    ctx: &CkksContext,
    mut acc: RnsPoly,
    level: usize,
    plain: &crate::ckks::context::PlainErrors,
) -> Result<RnsPoly> {
    let ks = &ctx.key_switch[level];
    let n = ctx.degree();
    let ring = ctx.ring();
    let ext = ctx.ext_basis(level);
    // y = [x·t^{-1}]_P, lifted centred to q_0..q_ℓ; δ = t·y ≡ x (mod P), δ ≡ 0 (mod t).
    let mut special: Vec<u64> = acc.data()[(level + 1) * n..].to_vec();
    for_each_limb(&mut special, n, NTT_COST, |t, limb| {
        let prime = ext[level + 1 + t];
        ring.ntt_inverse(prime, limb);
        ring.mul_constant_assign(prime, limb, plain.t_inv_special[t]);
    });
    let mut conv = vec![0u64; (level + 1) * n];
    ks.mod_down.convert_centered(n, &special, &mut conv)?;
    for_each_limb(&mut conv, n, NTT_COST, |i, limb| {
        ring.mul_constant_assign(i, limb, plain.t_mod[i]);
        ring.ntt_forward(i, limb);
    });
    acc.truncate_limbs(level + 1)?;
    let moduli = acc.moduli();
    for_each_limb(acc.data_mut(), n, 4, |i, limb| {
        let m = &moduli[i];
        m.sub_assign_slices(limb, &conv[i * n..(i + 1) * n]);
        ring.mul_constant_assign(i, limb, ks.p_inv[i].value);
    });
    Ok(acc)
}

/// CKKS ModDown: `round(x / P)`.
fn mod_down_rounding(ctx: &CkksContext, mut acc: RnsPoly, level: usize) -> Result<RnsPoly> {
    let ks = &ctx.key_switch[level];
    let n = ctx.degree();
    let ring = ctx.ring();
    let ext = ctx.ext_basis(level);
    let special_start = ctx.max_level() + 1;
    // Rounding: divide x + ⌊P/2⌋ (added to every coefficient of the special part here, and
    // compensated below) so that the floor division becomes a rounding one.
    let mut special: Vec<u64> = acc.data()[(level + 1) * n..].to_vec();
    for_each_limb(&mut special, n, NTT_COST, |t, limb| {
        let prime = ext[level + 1 + t];
        ring.ntt_inverse(prime, limb);
        let m = ring.moduli()[prime];
        m.add_constant_slice(limb, ctx.half_p_mod[special_start + t]);
    });
    acc.truncate_limbs(level + 1)?;
    let moduli = acc.moduli();
    if special.len() == n {
        // One special prime: each limb converts, transforms and subtracts in its own buffer
        // (no zeroed conversion output for all limbs).
        let p = ring.moduli()[ext[level + 1]].value();
        for_each_limb(acc.data_mut(), n, NTT_COST + 4, |i, limb| {
            let m = &moduli[i];
            let mut conv = special.clone();
            m.convert_from_single_in_place(&mut conv, p, false);
            m.add_constant_slice(&mut conv, m.neg(ctx.half_p_mod[i]));
            ring.ntt_forward(i, &mut conv);
            m.sub_assign_slices(limb, &conv);
            ring.mul_constant_assign(i, limb, ks.p_inv[i].value);
        });
        return Ok(acc);
    }
    let mut conv = vec![0u64; (level + 1) * n];
    ks.mod_down.convert(n, &special, &mut conv)?;
    for_each_limb(&mut conv, n, NTT_COST, |i, limb| {
        let m = ring.moduli()[i];
        m.add_constant_slice(limb, m.neg(ctx.half_p_mod[i]));
        ring.ntt_forward(i, limb);
    });
    for_each_limb(acc.data_mut(), n, 4, |i, limb| {
        let m = &moduli[i];
        m.sub_assign_slices(limb, &conv[i * n..(i + 1) * n]);
        ring.mul_constant_assign(i, limb, ks.p_inv[i].value);
    });
    Ok(acc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ckks::params::CkksParameters;

    #[test]
    fn mod_down_divides_by_p_with_rounding() {
        let params = CkksParameters::builder()
            .degree(64)
            .moduli_bits(&[50, 40, 40, 50, 50])
            .special_primes(2)
            .insecure_allow_below_128_bit_security()
            .build()
            .unwrap();
        let ctx = CkksContext::new(params).unwrap();
        let p: i128 = ctx
            .params()
            .special_moduli()
            .iter()
            .map(|m| i128::from(m.value()))
            .product();
        for level in [0usize, 2] {
            let ext = ctx.ext_basis(level);
            let v: Vec<i128> = (0..64).map(|k| (k as i128 - 32) * 1_000_003).collect();
            let r: Vec<i128> = (0..64)
                .map(|k| (k as i128 * 7919) % (p / 3) - p / 6)
                .collect();
            let mut x = RnsPoly::zero(ctx.ring(), &ext, Representation::Coefficient).unwrap();
            for (l, &pi) in ext.iter().enumerate() {
                let m = ctx.ring().moduli()[pi];
                for k in 0..64 {
                    x.limb_mut(l)[k] = m.reduce_i128(v[k] * p + r[k]);
                }
            }
            x.to_ntt();
            let mut out = mod_down(&ctx, x, level).unwrap();
            out.to_coefficient();
            let m0 = ctx.ring().moduli()[0];
            for k in 0..64 {
                let expect = v[k] + (2 * r[k] + p).div_euclid(2 * p);
                assert!(
                    (i128::from(m0.center(out.limb(0)[k])) - expect).abs() <= 1,
                    "level {level} k = {k}: got {} expect {expect}",
                    m0.center(out.limb(0)[k])
                );
            }
        }
    }
}
