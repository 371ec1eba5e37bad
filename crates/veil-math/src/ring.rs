//! The ring context `Z_q[X]/(X^N + 1)` for a list of NTT-friendly primes: one negacyclic NTT
//! plan per prime (from `tfhe-ntt`) and the slot order of the transform, which Galois
//! automorphisms need.

use std::sync::Arc;

use tfhe_ntt::prime64::Plan;

use crate::error::{MathError, Result};
use crate::modulus::Modulus;

/// Smallest supported ring degree.
pub const MIN_DEGREE: usize = 16;
/// Largest supported ring degree.
pub const MAX_DEGREE: usize = 1 << 17;

/// A ring degree `N` and an ordered list of primes, each with its NTT plan.
///
/// Polynomials ([`crate::RnsPoly`]) refer to primes by their index in this list.
pub struct RingContext {
    degree: usize,
    moduli: Vec<Modulus>,
    plans: Vec<Plan>,
    /// `slot_exponent[j]`: the NTT output slot `j` holds the evaluation at `ω^e` where `ω` is the
    /// root of slot 0 and `e = slot_exponent[j]` (odd, below 2N).
    slot_exponent: Vec<u32>,
    /// Inverse map: `slot_of_exponent[(e - 1) / 2] = j`.
    slot_of_exponent: Vec<u32>,
}

impl std::fmt::Debug for RingContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingContext")
            .field("degree", &self.degree)
            .field(
                "moduli",
                &self.moduli.iter().map(|m| m.value()).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl RingContext {
    /// Builds the context. Every prime must satisfy `q ≡ 1 (mod 2N)`.
    pub fn new(degree: usize, moduli: &[Modulus]) -> Result<Arc<Self>> {
        if !degree.is_power_of_two() || !(MIN_DEGREE..=MAX_DEGREE).contains(&degree) {
            return Err(MathError::UnsupportedDegree {
                degree,
                min: MIN_DEGREE,
                max: MAX_DEGREE,
            });
        }
        let mut plans = Vec::with_capacity(moduli.len());
        for m in moduli {
            if m.value() % (2 * degree as u64) != 1 {
                return Err(MathError::InvalidModulus {
                    modulus: m.value(),
                    reason: "not ≡ 1 mod 2N",
                });
            }
            let plan = Plan::try_new(degree, m.value()).ok_or(MathError::InvalidModulus {
                modulus: m.value(),
                reason: "no negacyclic NTT exists",
            })?;
            plans.push(plan);
        }
        let mut ctx = Self {
            degree,
            moduli: moduli.to_vec(),
            plans,
            slot_exponent: Vec::new(),
            slot_of_exponent: Vec::new(),
        };
        if !ctx.moduli.is_empty() {
            let (exp, slot) = ctx.slot_order(0)?;
            // All plans must order their slots the same way (they do: the order is a function of
            // the bit-reversal, not of the root chosen), which lets one permutation serve all.
            for i in 1..ctx.moduli.len() {
                if ctx.slot_order(i)?.0 != exp {
                    return Err(MathError::Internal("NTT plans disagree on the slot order"));
                }
            }
            ctx.slot_exponent = exp;
            ctx.slot_of_exponent = slot;
        }
        Ok(Arc::new(ctx))
    }

    /// Finds which power of the first slot's root each NTT slot evaluates at, by transforming
    /// the monomial `X`.
    fn slot_order(&self, i: usize) -> Result<(Vec<u32>, Vec<u32>)> {
        let n = self.degree;
        let m = self.moduli[i];
        let mut x = vec![0u64; n];
        x[1] = 1;
        self.plans[i].fwd(&mut x);
        let omega = x[0];
        // Powers of ω: ω^e for e in 0..2N; map root value → exponent.
        let mut table = std::collections::HashMap::with_capacity(2 * n);
        let mut p = 1u64;
        for e in 0..2 * n {
            table.insert(p, e as u32);
            p = m.mul(p, omega);
        }
        let mut exp = Vec::with_capacity(n);
        let mut slot = vec![u32::MAX; n];
        for (j, v) in x.iter().enumerate() {
            let e = *table.get(v).ok_or(MathError::Internal(
                "NTT slot is not a power of the first root",
            ))?;
            if e % 2 == 0 {
                return Err(MathError::Internal("NTT slot root is not primitive"));
            }
            exp.push(e);
            slot[(e as usize - 1) / 2] = j as u32;
        }
        if slot.contains(&u32::MAX) {
            return Err(MathError::Internal(
                "NTT slots do not cover all primitive roots",
            ));
        }
        Ok((exp, slot))
    }

    /// The ring degree N.
    #[inline]
    pub fn degree(&self) -> usize {
        self.degree
    }

    /// All primes of the context.
    #[inline]
    pub fn moduli(&self) -> &[Modulus] {
        &self.moduli
    }

    /// The prime at index `i`.
    #[inline]
    pub fn modulus(&self, i: usize) -> Result<&Modulus> {
        self.moduli.get(i).ok_or(MathError::PrimeIndexOutOfRange {
            index: i,
            count: self.moduli.len(),
        })
    }

    /// Number of primes.
    #[inline]
    pub fn num_moduli(&self) -> usize {
        self.moduli.len()
    }

    /// Forward negacyclic NTT of one limb modulo prime `i` (output in the plan's slot order).
    #[inline]
    pub fn ntt_forward(&self, i: usize, limb: &mut [u64]) {
        self.plans[i].fwd(limb);
    }

    /// Inverse negacyclic NTT of one limb modulo prime `i`, normalized by `N^{-1}`.
    #[inline]
    pub fn ntt_inverse(&self, i: usize, limb: &mut [u64]) {
        self.plans[i].inv(limb);
        self.plans[i].normalize(limb);
    }

    /// `acc[k] += a[k] · b[k] mod q_i` (SIMD).
    #[inline]
    pub fn mul_accumulate(&self, i: usize, acc: &mut [u64], a: &[u64], b: &[u64]) {
        self.plans[i].mul_accumulate(acc, a, b);
    }

    /// `data[k] = data[k] · c mod q_i` with the SIMD product kernel (`c` reduced).
    pub fn mul_constant_assign(&self, i: usize, data: &mut [u64], c: u64) {
        const CHUNK: usize = 64;
        let constant = [c; CHUNK];
        let mut tmp = [0u64; CHUNK];
        let mut chunks = data.chunks_exact_mut(CHUNK);
        for chunk in &mut chunks {
            tmp.fill(0);
            self.plans[i].mul_accumulate(&mut tmp, chunk, &constant);
            chunk.copy_from_slice(&tmp);
        }
        let m = &self.moduli[i];
        let w = m.shoup(c);
        for x in chunks.into_remainder() {
            *x = m.mul_shoup(*x, w);
        }
    }

    /// The NTT output slot that holds the evaluation at `ω^e` (`ω` the root of slot 0), for an
    /// odd exponent `e` (taken mod 2N); `None` for an even one. BFV's batch encoder uses it to
    /// lay its slot matrix out so that automorphisms rotate rows.
    pub fn ntt_slot_of_exponent(&self, e: u64) -> Option<usize> {
        let e = e & (2 * self.degree as u64 - 1);
        if e.is_multiple_of(2) || self.slot_of_exponent.is_empty() {
            return None;
        }
        Some(self.slot_of_exponent[((e - 1) / 2) as usize] as usize)
    }

    /// The permutation implementing the Galois automorphism `X ↦ X^g` on NTT-form limbs:
    /// `out[j] = in[perm[j]]`.
    pub fn ntt_galois_permutation(&self, g: u64) -> Result<Vec<u32>> {
        let two_n = 2 * self.degree as u64;
        if g.is_multiple_of(2) {
            return Err(MathError::InvalidGaloisElement { element: g, two_n });
        }
        let mask = two_n - 1; // 2N is a power of two
        let g = g & mask;
        Ok(self
            .slot_exponent
            .iter()
            .map(|&e| {
                let target = (u64::from(e) * g) & mask;
                self.slot_of_exponent[((target - 1) / 2) as usize]
            })
            .collect())
    }

    /// Applies `X ↦ X^g` to one coefficient-form limb modulo prime `i`: `out = in(X^g)`.
    pub fn galois_coefficients(&self, i: usize, g: u64, input: &[u64], out: &mut [u64]) {
        let n = self.degree;
        let two_n = 2 * n as u64;
        let m = &self.moduli[i];
        let mask = two_n - 1;
        let g = g & mask;
        let mut idx = 0u64;
        for &c in input.iter().take(n) {
            let j = idx as usize;
            if j < n {
                out[j] = c;
            } else {
                out[j - n] = m.neg(c);
            }
            idx = (idx + g) & mask;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prime::primes_for_bit_sizes;

    fn naive_negacyclic(a: &[u64], b: &[u64], m: &Modulus) -> Vec<u64> {
        let n = a.len();
        let mut out = vec![0u64; n];
        for i in 0..n {
            for j in 0..n {
                let p = m.mul(a[i], b[j]);
                if i + j < n {
                    out[i + j] = m.add(out[i + j], p);
                } else {
                    out[i + j - n] = m.sub(out[i + j - n], p);
                }
            }
        }
        out
    }

    #[test]
    fn ntt_product_is_negacyclic_convolution() {
        let n = 64;
        let moduli = primes_for_bit_sizes(n, &[50, 40]).unwrap();
        let ctx = RingContext::new(n, &moduli).unwrap();
        for (i, m) in moduli.iter().enumerate() {
            let a: Vec<u64> = (0..n as u64).map(|k| m.reduce(k * 7919 + 3)).collect();
            let b: Vec<u64> = (0..n as u64)
                .map(|k| m.reduce(k * k * 104_729 + 11))
                .collect();
            let expect = naive_negacyclic(&a, &b, m);
            let (mut fa, mut fb) = (a.clone(), b.clone());
            ctx.ntt_forward(i, &mut fa);
            ctx.ntt_forward(i, &mut fb);
            let mut prod = vec![0u64; n];
            ctx.mul_accumulate(i, &mut prod, &fa, &fb);
            ctx.ntt_inverse(i, &mut prod);
            assert_eq!(prod, expect);
            ctx.ntt_inverse(i, &mut fa);
            assert_eq!(fa, a);
        }
    }

    #[test]
    fn simd_constant_product_matches_scalar() {
        let n = 256;
        let moduli = primes_for_bit_sizes(n, &[60, 40]).unwrap();
        let ctx = RingContext::new(n, &moduli).unwrap();
        for (i, m) in moduli.iter().enumerate() {
            let a: Vec<u64> = (0..200u64)
                .map(|k| m.reduce(k.wrapping_mul(0x9e37_79b9_7f4a_7c15)))
                .collect();
            let c = m.reduce(0x1234_5678_9abc_def1);
            let mut b = a.clone();
            ctx.mul_constant_assign(i, &mut b, c);
            for (x, y) in a.iter().zip(&b) {
                assert_eq!(m.mul(*x, c), *y);
            }
        }
    }

    #[test]
    fn galois_commutes_with_ntt() {
        let n = 32;
        let moduli = primes_for_bit_sizes(n, &[40, 45]).unwrap();
        let ctx = RingContext::new(n, &moduli).unwrap();
        for g in [3u64, 5, 25, 2 * n as u64 - 1] {
            let perm = ctx.ntt_galois_permutation(g).unwrap();
            for (i, m) in moduli.iter().enumerate() {
                let a: Vec<u64> = (0..n as u64).map(|k| m.reduce(k * 31 + 1)).collect();
                let mut coeff_then_ntt = vec![0u64; n];
                ctx.galois_coefficients(i, g, &a, &mut coeff_then_ntt);
                ctx.ntt_forward(i, &mut coeff_then_ntt);
                let mut fa = a.clone();
                ctx.ntt_forward(i, &mut fa);
                let permuted: Vec<u64> = perm.iter().map(|&p| fa[p as usize]).collect();
                assert_eq!(permuted, coeff_then_ntt, "g = {g}");
            }
        }
        assert!(ctx.ntt_galois_permutation(4).is_err());
    }

    #[test]
    fn rejects_bad_degree_and_moduli() {
        let moduli = primes_for_bit_sizes(64, &[40]).unwrap();
        assert!(RingContext::new(48, &moduli).is_err());
        assert!(RingContext::new(1 << 20, &moduli).is_err());
        if moduli[0].value() % 512 != 1 {
            assert!(RingContext::new(256, &moduli).is_err());
        }
    }
}
