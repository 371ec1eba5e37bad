//! Polynomials of `Z_Q[X]/(X^N + 1)` in residue-number-system form: one limb of `N` words per
//! prime, in coefficient or NTT (evaluation) representation.
//!
//! A polynomial knows its ring context, which primes of it it lives over (its RNS basis, e.g.
//! `q_0..q_ℓ` for a ciphertext at level ℓ, or `q_0..q_ℓ, p_0..p_k` during key switching) and
//! its representation. Every binary operation checks all three and returns an error rather
//! than computing garbage.

use std::sync::Arc;

use zeroize::Zeroize;

use crate::error::{MathError, Result};
use crate::modulus::Modulus;
use crate::par::for_each_limb;
use crate::ring::RingContext;

/// Cost hint for an NTT per coefficient, used to decide parallelism.
const NTT_COST: usize = 32;

/// How the limbs of a polynomial are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Representation {
    /// Coefficients of `X^0 .. X^{N-1}`.
    Coefficient,
    /// Evaluations at the primitive 2N-th roots of unity (negacyclic NTT), in the transform's
    /// slot order. Multiplication is element-wise here.
    Ntt,
}

/// An RNS polynomial.
#[derive(Clone)]
pub struct RnsPoly {
    ctx: Arc<RingContext>,
    primes: Vec<usize>,
    repr: Representation,
    data: Vec<u64>,
}

impl std::fmt::Debug for RnsPoly {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print coefficients: a polynomial may be a secret key.
        f.debug_struct("RnsPoly")
            .field("degree", &self.ctx.degree())
            .field("primes", &self.primes)
            .field("repr", &self.repr)
            .finish_non_exhaustive()
    }
}

impl Zeroize for RnsPoly {
    fn zeroize(&mut self) {
        self.data.zeroize();
    }
}

impl RnsPoly {
    /// The zero polynomial over the primes `primes` (indices into the context).
    pub fn zero(ctx: &Arc<RingContext>, primes: &[usize], repr: Representation) -> Result<Self> {
        for &i in primes {
            ctx.modulus(i)?;
        }
        Ok(Self {
            ctx: ctx.clone(),
            primes: primes.to_vec(),
            repr,
            data: vec![0; primes.len() * ctx.degree()],
        })
    }

    /// Builds a polynomial from raw limb data (`primes.len() · N` words, each reduced).
    pub fn from_limbs(
        ctx: &Arc<RingContext>,
        primes: &[usize],
        repr: Representation,
        data: Vec<u64>,
    ) -> Result<Self> {
        Self::build(ctx, primes, repr, data, true)
    }

    /// [`RnsPoly::from_limbs`] without the scan that checks every coefficient is reduced:
    /// for hot paths whose output is reduced by construction (checked in debug builds).
    pub fn from_reduced_limbs(
        ctx: &Arc<RingContext>,
        primes: &[usize],
        repr: Representation,
        data: Vec<u64>,
    ) -> Result<Self> {
        Self::build(ctx, primes, repr, data, cfg!(debug_assertions))
    }

    /// Checks the shape and the primes (and, with `check_reduced`, every coefficient).
    fn build(
        ctx: &Arc<RingContext>,
        primes: &[usize],
        repr: Representation,
        data: Vec<u64>,
        check_reduced: bool,
    ) -> Result<Self> {
        let n = ctx.degree();
        if data.len() != primes.len() * n {
            return Err(MathError::LengthMismatch {
                expected: primes.len() * n,
                found: data.len(),
            });
        }
        for (limb, &i) in data.chunks(n).zip(primes) {
            let q = ctx.modulus(i)?.value();
            if check_reduced && limb.iter().any(|&c| c >= q) {
                return Err(MathError::InvalidModulus {
                    modulus: q,
                    reason: "a coefficient is not reduced modulo its prime",
                });
            }
        }
        Ok(Self {
            ctx: ctx.clone(),
            primes: primes.to_vec(),
            repr,
            data,
        })
    }

    /// A coefficient-form polynomial from small signed coefficients (length N).
    pub fn from_signed(ctx: &Arc<RingContext>, primes: &[usize], coeffs: &[i64]) -> Result<Self> {
        let n = ctx.degree();
        if coeffs.len() != n {
            return Err(MathError::LengthMismatch {
                expected: n,
                found: coeffs.len(),
            });
        }
        let mut p = Self::zero(ctx, primes, Representation::Coefficient)?;
        let moduli: Vec<Modulus> = primes.iter().map(|&i| ctx.moduli()[i]).collect();
        for_each_limb(&mut p.data, n, 2, |l, limb| {
            let m = &moduli[l];
            m.reduce_i64_slice(limb, coeffs);
        });
        Ok(p)
    }

    /// The ring context.
    #[inline]
    pub fn context(&self) -> &Arc<RingContext> {
        &self.ctx
    }

    /// Ring degree N.
    #[inline]
    pub fn degree(&self) -> usize {
        self.ctx.degree()
    }

    /// Indices of the primes this polynomial lives over.
    #[inline]
    pub fn primes(&self) -> &[usize] {
        &self.primes
    }

    /// Number of limbs.
    #[inline]
    pub fn num_limbs(&self) -> usize {
        self.primes.len()
    }

    /// Current representation.
    #[inline]
    pub fn representation(&self) -> Representation {
        self.repr
    }

    /// Overrides the representation tag without transforming (for data known to be in that form).
    pub fn set_representation_unchecked(&mut self, repr: Representation) {
        self.repr = repr;
    }

    /// All limb data, limb after limb.
    #[inline]
    pub fn data(&self) -> &[u64] {
        &self.data
    }

    /// All limb data, mutable. Callers must keep each limb reduced modulo its prime.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u64] {
        &mut self.data
    }

    /// Limb `l` (the `l`-th prime of this polynomial's basis).
    #[inline]
    pub fn limb(&self, l: usize) -> &[u64] {
        let n = self.degree();
        &self.data[l * n..(l + 1) * n]
    }

    /// Limb `l`, mutable.
    #[inline]
    pub fn limb_mut(&mut self, l: usize) -> &mut [u64] {
        let n = self.degree();
        &mut self.data[l * n..(l + 1) * n]
    }

    /// The moduli of this polynomial's limbs, in order.
    pub fn moduli(&self) -> Vec<Modulus> {
        self.primes.iter().map(|&i| self.ctx.moduli()[i]).collect()
    }

    /// Checks that `other` has the same context, basis and representation.
    pub fn check_compatible(&self, other: &Self) -> Result<()> {
        if !Arc::ptr_eq(&self.ctx, &other.ctx) {
            return Err(MathError::ContextMismatch);
        }
        if self.primes != other.primes {
            return Err(MathError::BasisMismatch {
                expected: self.primes.len(),
                expected_primes: self.primes.clone(),
                found: other.primes.len(),
                found_primes: other.primes.clone(),
            });
        }
        if self.repr != other.repr {
            return Err(MathError::RepresentationMismatch {
                expected: self.repr,
                found: other.repr,
            });
        }
        Ok(())
    }

    fn require(&self, repr: Representation) -> Result<()> {
        if self.repr != repr {
            return Err(MathError::RepresentationMismatch {
                expected: repr,
                found: self.repr,
            });
        }
        Ok(())
    }

    /// `self += other`.
    pub fn add_assign(&mut self, other: &Self) -> Result<()> {
        self.check_compatible(other)?;
        let n = self.degree();
        let moduli = self.moduli();
        for_each_limb(&mut self.data, n, 1, |l, limb| {
            moduli[l].add_assign_slices(limb, other.limb(l))
        });
        Ok(())
    }

    /// `self -= other`.
    pub fn sub_assign(&mut self, other: &Self) -> Result<()> {
        self.check_compatible(other)?;
        let n = self.degree();
        let moduli = self.moduli();
        for_each_limb(&mut self.data, n, 1, |l, limb| {
            moduli[l].sub_assign_slices(limb, other.limb(l))
        });
        Ok(())
    }

    /// `self = -self`.
    pub fn neg_assign(&mut self) {
        let n = self.degree();
        let moduli = self.moduli();
        for_each_limb(&mut self.data, n, 1, |l, limb| {
            moduli[l].neg_assign_slice(limb)
        });
    }

    /// `self *= other` (both in NTT form).
    pub fn mul_assign(&mut self, other: &Self) -> Result<()> {
        self.check_compatible(other)?;
        self.require(Representation::Ntt)?;
        let n = self.degree();
        let ctx = self.ctx.clone();
        let primes = self.primes.clone();
        for_each_limb(&mut self.data, n, 4, |l, limb| {
            let mut out = vec![0u64; n];
            ctx.mul_accumulate(primes[l], &mut out, limb, other.limb(l));
            limb.copy_from_slice(&out);
        });
        Ok(())
    }

    /// `self += a · b` (all in NTT form, same basis).
    pub fn add_mul_assign(&mut self, a: &Self, b: &Self) -> Result<()> {
        self.check_compatible(a)?;
        self.check_compatible(b)?;
        self.require(Representation::Ntt)?;
        let n = self.degree();
        let ctx = self.ctx.clone();
        let primes = self.primes.clone();
        for_each_limb(&mut self.data, n, 4, |l, limb| {
            ctx.mul_accumulate(primes[l], limb, a.limb(l), b.limb(l))
        });
        Ok(())
    }

    /// `self += a · b` where `a` and `b` may live over a longer basis that starts with
    /// `self`'s primes (e.g. a key over `q_0..q_L` used at level ℓ < L). All in NTT form.
    pub fn add_mul_assign_prefix(&mut self, a: &Self, b: &Self) -> Result<()> {
        self.require(Representation::Ntt)?;
        for x in [a, b] {
            if !Arc::ptr_eq(&self.ctx, &x.ctx) {
                return Err(MathError::ContextMismatch);
            }
            x.require(Representation::Ntt)?;
            if x.primes.len() < self.primes.len()
                || x.primes[..self.primes.len()] != self.primes[..]
            {
                return Err(MathError::BasisMismatch {
                    expected: self.primes.len(),
                    expected_primes: self.primes.clone(),
                    found: x.primes.len(),
                    found_primes: x.primes.clone(),
                });
            }
        }
        let n = self.degree();
        let ctx = self.ctx.clone();
        let primes = self.primes.clone();
        for_each_limb(&mut self.data, n, 4, |l, limb| {
            ctx.mul_accumulate(primes[l], limb, a.limb(l), b.limb(l))
        });
        Ok(())
    }

    /// `a · b` as a new polynomial (both in NTT form).
    pub fn mul(a: &Self, b: &Self) -> Result<Self> {
        let mut out = Self {
            ctx: a.ctx.clone(),
            primes: a.primes.clone(),
            repr: a.repr,
            data: vec![0; a.data.len()],
        };
        out.add_mul_assign(a, b)?;
        Ok(out)
    }

    /// Multiplies limb `l` by the constant `constants[l]` (any 64-bit value, reduced here).
    /// Works in either representation.
    pub fn mul_constants_assign(&mut self, constants: &[u64]) -> Result<()> {
        if constants.len() != self.primes.len() {
            return Err(MathError::LengthMismatch {
                expected: self.primes.len(),
                found: constants.len(),
            });
        }
        let n = self.degree();
        let ctx = self.ctx.clone();
        let primes = self.primes.clone();
        for_each_limb(&mut self.data, n, 2, |l, limb| {
            let c = ctx.moduli()[primes[l]].reduce(constants[l]);
            ctx.mul_constant_assign(primes[l], limb, c);
        });
        Ok(())
    }

    /// `self += a · constants[l]` limb by limb (constants: any 64-bit values, reduced here),
    /// in one pass and without a temporary: the inner step of a weighted sum of many
    /// polynomials by public constants. `a` must have `self`'s basis and representation.
    pub fn add_mul_constants_assign(&mut self, a: &Self, constants: &[u64]) -> Result<()> {
        self.check_compatible(a)?;
        if constants.len() != self.primes.len() {
            return Err(MathError::LengthMismatch {
                expected: self.primes.len(),
                found: constants.len(),
            });
        }
        let n = self.degree();
        let moduli = self.moduli();
        for_each_limb(&mut self.data, n, 2, |l, limb| {
            let m = &moduli[l];
            let w = m.shoup(constants[l]);
            for (x, &y) in limb.iter_mut().zip(a.limb(l)) {
                *x = m.add(*x, m.mul_shoup(y, w));
            }
        });
        Ok(())
    }

    /// `a + b` as a new polynomial, in one pass.
    pub fn sum(a: &Self, b: &Self) -> Result<Self> {
        a.check_compatible(b)?;
        let moduli = a.moduli();
        let mut data = Vec::with_capacity(a.data.len());
        for (l, m) in moduli.iter().enumerate() {
            m.extend_sum(&mut data, a.limb(l), b.limb(l));
        }
        Ok(Self {
            ctx: a.ctx.clone(),
            primes: a.primes.clone(),
            repr: a.repr,
            data,
        })
    }

    /// `a - b` as a new polynomial, in one pass.
    pub fn difference(a: &Self, b: &Self) -> Result<Self> {
        a.check_compatible(b)?;
        let moduli = a.moduli();
        let mut data = Vec::with_capacity(a.data.len());
        for (l, m) in moduli.iter().enumerate() {
            m.extend_difference(&mut data, a.limb(l), b.limb(l));
        }
        Ok(Self {
            ctx: a.ctx.clone(),
            primes: a.primes.clone(),
            repr: a.repr,
            data,
        })
    }

    /// Adds the constant polynomial `constants[l]` (per limb) to `self`. In NTT form a
    /// constant is the same in every slot; in coefficient form it is added to `X^0` only.
    pub fn add_constants_assign(&mut self, constants: &[u64]) -> Result<()> {
        if constants.len() != self.primes.len() {
            return Err(MathError::LengthMismatch {
                expected: self.primes.len(),
                found: constants.len(),
            });
        }
        let n = self.degree();
        let moduli = self.moduli();
        let repr = self.repr;
        for_each_limb(&mut self.data, n, 1, |l, limb| {
            let c = moduli[l].reduce(constants[l]);
            match repr {
                Representation::Ntt => limb.iter_mut().for_each(|x| *x = moduli[l].add(*x, c)),
                Representation::Coefficient => limb[0] = moduli[l].add(limb[0], c),
            }
        });
        Ok(())
    }

    /// Converts to NTT form (no-op if already there).
    pub fn to_ntt(&mut self) {
        if self.repr == Representation::Ntt {
            return;
        }
        let n = self.degree();
        let ctx = self.ctx.clone();
        let primes = self.primes.clone();
        for_each_limb(&mut self.data, n, NTT_COST, |l, limb| {
            ctx.ntt_forward(primes[l], limb)
        });
        self.repr = Representation::Ntt;
    }

    /// Converts to coefficient form (no-op if already there).
    pub fn to_coefficient(&mut self) {
        if self.repr == Representation::Coefficient {
            return;
        }
        let n = self.degree();
        let ctx = self.ctx.clone();
        let primes = self.primes.clone();
        for_each_limb(&mut self.data, n, NTT_COST, |l, limb| {
            ctx.ntt_inverse(primes[l], limb)
        });
        self.repr = Representation::Coefficient;
    }

    /// Applies the Galois automorphism `X ↦ X^g` (g odd), in either representation.
    pub fn automorphism(&self, g: u64) -> Result<Self> {
        let n = self.degree();
        let two_n = 2 * n as u64;
        if g.is_multiple_of(2) {
            return Err(MathError::InvalidGaloisElement { element: g, two_n });
        }
        let mut out = Self {
            ctx: self.ctx.clone(),
            primes: self.primes.clone(),
            repr: self.repr,
            data: vec![0; self.data.len()],
        };
        match self.repr {
            Representation::Ntt => {
                let perm = self.ctx.ntt_galois_permutation(g)?;
                out.apply_permutation_from(self, &perm);
            }
            Representation::Coefficient => {
                let ctx = self.ctx.clone();
                let primes = self.primes.clone();
                for_each_limb(&mut out.data, n, 2, |l, limb| {
                    ctx.galois_coefficients(primes[l], g, self.limb(l), limb)
                });
            }
        }
        Ok(out)
    }

    /// A new polynomial `out[j] = self[perm[j]]` limb by limb (the NTT-form Galois action
    /// with a precomputed permutation from [`RingContext::ntt_galois_permutation`]), built
    /// without zeroing a buffer first. `perm` must have N entries below N.
    pub fn permuted(&self, perm: &[u32]) -> Result<Self> {
        let n = self.degree();
        if perm.len() != n || perm.iter().any(|&p| p as usize >= n) {
            return Err(MathError::LengthMismatch {
                expected: n,
                found: perm.len(),
            });
        }
        let mut data = Vec::with_capacity(self.data.len());
        for limb in self.data.chunks(n) {
            data.extend(perm.iter().map(|&p| limb[p as usize]));
        }
        Ok(Self {
            ctx: self.ctx.clone(),
            primes: self.primes.clone(),
            repr: self.repr,
            data,
        })
    }

    /// `self[j] = src[perm[j]]` limb by limb (NTT-form Galois action with a precomputed
    /// permutation from [`RingContext::ntt_galois_permutation`]).
    pub fn apply_permutation_from(&mut self, src: &Self, perm: &[u32]) {
        let n = self.degree();
        for_each_limb(&mut self.data, n, 2, |l, limb| {
            let s = src.limb(l);
            crate::simd::vectorize(|| {
                for (o, &p) in limb.iter_mut().zip(perm) {
                    *o = s.get(p as usize).copied().unwrap_or(0);
                }
            })
        });
    }

    /// A copy over the primes `primes` (prime indices, each present in this polynomial).
    pub fn select_primes(&self, primes: &[usize]) -> Result<Self> {
        let positions = primes
            .iter()
            .map(|p| {
                self.primes
                    .iter()
                    .position(|x| x == p)
                    .ok_or(MathError::BasisMismatch {
                        expected: primes.len(),
                        expected_primes: primes.to_vec(),
                        found: self.primes.len(),
                        found_primes: self.primes.clone(),
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        self.select_limbs(&positions)
    }

    /// Keeps only the first `count` limbs (drops the primes at the end of the basis).
    pub fn truncate_limbs(&mut self, count: usize) -> Result<()> {
        if count > self.primes.len() {
            return Err(MathError::LengthMismatch {
                expected: self.primes.len(),
                found: count,
            });
        }
        self.primes.truncate(count);
        self.data.truncate(count * self.degree());
        Ok(())
    }

    /// A copy restricted to the limbs at positions `positions` of this polynomial's basis.
    pub fn select_limbs(&self, positions: &[usize]) -> Result<Self> {
        let n = self.degree();
        let mut data = Vec::with_capacity(positions.len() * n);
        let mut primes = Vec::with_capacity(positions.len());
        for &p in positions {
            if p >= self.primes.len() {
                return Err(MathError::PrimeIndexOutOfRange {
                    index: p,
                    count: self.primes.len(),
                });
            }
            primes.push(self.primes[p]);
            data.extend_from_slice(self.limb(p));
        }
        Ok(Self {
            ctx: self.ctx.clone(),
            primes,
            repr: self.repr,
            data,
        })
    }

    /// Divides by the last prime of the basis with rounding and drops it (CKKS rescaling,
    /// BFV/CKKS modulus switching): `round(x / q_last)` over the remaining primes. NTT form in
    /// and out; costs one inverse and `ℓ` forward transforms.
    pub fn rescale_by_last(&mut self) -> Result<()> {
        self.require(Representation::Ntt)?;
        let count = self.primes.len();
        if count < 2 {
            return Err(MathError::LengthMismatch {
                expected: 2,
                found: count,
            });
        }
        let n = self.degree();
        let last_prime = self.primes[count - 1];
        let q_last = self.ctx.moduli()[last_prime];
        let mut last = self.limb(count - 1).to_vec();
        self.ctx.ntt_inverse(last_prime, &mut last);
        // r = [x + h]_{q_last} with h = floor(q_last / 2) turns the floor into a rounding.
        let h = q_last.value() / 2;
        q_last.add_constant_slice(&mut last, h);
        self.truncate_limbs(count - 1)?;
        let ctx = self.ctx.clone();
        let primes = self.primes.clone();
        for_each_limb(&mut self.data, n, NTT_COST, |l, limb| {
            let m = ctx.moduli()[primes[l]];
            let h_mod = m.reduce(h);
            let mut t = vec![0u64; last.len()];
            m.reduce_slice(&mut t, &last);
            m.add_constant_slice(&mut t, m.neg(h_mod));
            ctx.ntt_forward(primes[l], &mut t);
            m.sub_assign_slices(limb, &t);
            // The inverse exists: the primes are distinct.
            let inv = m.inv(q_last.value()).unwrap_or(0);
            ctx.mul_constant_assign(primes[l], limb, inv);
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prime::primes_for_bit_sizes;

    fn ctx() -> Arc<RingContext> {
        let m = primes_for_bit_sizes(64, &[50, 40, 40]).unwrap();
        RingContext::new(64, &m).unwrap()
    }

    #[test]
    fn operations_check_basis_and_representation() {
        let c = ctx();
        let mut a = RnsPoly::zero(&c, &[0, 1], Representation::Ntt).unwrap();
        let b = RnsPoly::zero(&c, &[0, 1, 2], Representation::Ntt).unwrap();
        assert!(matches!(
            a.add_assign(&b),
            Err(MathError::BasisMismatch { .. })
        ));
        let d = RnsPoly::zero(&c, &[0, 1], Representation::Coefficient).unwrap();
        assert!(matches!(
            a.mul_assign(&d),
            Err(MathError::RepresentationMismatch { .. })
        ));
        let other = ctx();
        let e = RnsPoly::zero(&other, &[0, 1], Representation::Ntt).unwrap();
        assert!(matches!(a.add_assign(&e), Err(MathError::ContextMismatch)));
        assert!(RnsPoly::zero(&c, &[7], Representation::Ntt).is_err());
    }

    #[test]
    fn rescale_divides_with_rounding() {
        let c = ctx();
        let q2 = c.moduli()[2].value() as i64;
        let coeffs: Vec<i64> = (0..64)
            .map(|k| (k as i64 - 32) * q2 * 1000 + (k as i64 % 5) * (q2 / 4))
            .collect();
        let mut p = RnsPoly::from_signed(&c, &[0, 1, 2], &coeffs).unwrap();
        p.to_ntt();
        p.rescale_by_last().unwrap();
        p.to_coefficient();
        let m0 = c.moduli()[0];
        for (k, &x) in coeffs.iter().enumerate() {
            let expect = (2 * i128::from(x) + i128::from(q2)).div_euclid(2 * i128::from(q2)) as i64;
            assert_eq!(m0.center(p.limb(0)[k]), expect, "k = {k}");
        }
    }

    #[test]
    fn multiplication_matches_signed_convolution() {
        let c = ctx();
        let a: Vec<i64> = (0..64).map(|k| (k % 7) as i64 - 3).collect();
        let b: Vec<i64> = (0..64).map(|k| (k % 5) as i64 - 2).collect();
        let mut expect = vec![0i64; 64];
        for i in 0..64 {
            for j in 0..64 {
                if i + j < 64 {
                    expect[i + j] += a[i] * b[j];
                } else {
                    expect[i + j - 64] -= a[i] * b[j];
                }
            }
        }
        let mut pa = RnsPoly::from_signed(&c, &[0, 1, 2], &a).unwrap();
        let mut pb = RnsPoly::from_signed(&c, &[0, 1, 2], &b).unwrap();
        pa.to_ntt();
        pb.to_ntt();
        let mut prod = RnsPoly::mul(&pa, &pb).unwrap();
        prod.to_coefficient();
        for l in 0..3 {
            let m = c.moduli()[l];
            let got: Vec<i64> = prod.limb(l).iter().map(|&x| m.center(x)).collect();
            assert_eq!(got, expect);
        }
    }
}
