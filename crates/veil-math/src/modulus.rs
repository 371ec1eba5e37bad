//! Word-size modular arithmetic: Barrett reduction of 128-bit products and Shoup
//! multiplication by precomputed constants.
//!
//! Every [`Modulus`] is an odd integer `q` with `2 ≤ q < 2^62`; values passed to its methods
//! are expected to be reduced (`< q`) unless a method says otherwise.

use crate::error::{MathError, Result};
use crate::simd::vectorize;

/// The largest supported modulus bit size (values must stay below 2^62 so that lazy sums of
/// two reduced values and Shoup products never overflow).
pub const MAX_MODULUS_BITS: u32 = 62;

/// A modulus with precomputed Barrett constants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Modulus {
    q: u64,
    /// floor(2^128 / q), low word.
    ratio_lo: u64,
    /// floor(2^128 / q), high word.
    ratio_hi: u64,
    bits: u32,
}

/// A constant prepared for Shoup multiplication: `w` and `floor(w · 2^64 / q)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShoupConst {
    /// The constant itself (reduced modulo q).
    pub value: u64,
    /// `floor(value · 2^64 / q)`.
    pub quotient: u64,
}

impl Modulus {
    /// Prepares a modulus. Fails for even moduli, `q < 3` or `q ≥ 2^62`.
    pub fn new(q: u64) -> Result<Self> {
        if q < 3 {
            return Err(MathError::InvalidModulus {
                modulus: q,
                reason: "must be at least 3",
            });
        }
        if q.is_multiple_of(2) {
            return Err(MathError::InvalidModulus {
                modulus: q,
                reason: "must be odd",
            });
        }
        if q >> MAX_MODULUS_BITS != 0 {
            return Err(MathError::InvalidModulus {
                modulus: q,
                reason: "must be below 2^62",
            });
        }
        // floor(2^128 / q) = floor((2^128 - 1) / q) because q is odd and does not divide 2^128.
        let ratio = u128::MAX / u128::from(q);
        Ok(Self {
            q,
            ratio_lo: ratio as u64,
            ratio_hi: (ratio >> 64) as u64,
            bits: 64 - q.leading_zeros(),
        })
    }

    /// The modulus value.
    #[inline]
    pub fn value(&self) -> u64 {
        self.q
    }

    /// Number of significant bits of `q`.
    #[inline]
    pub fn bits(&self) -> u32 {
        self.bits
    }

    /// `a + b mod q` (branch-free, vectorizes).
    #[inline]
    pub fn add(&self, a: u64, b: u64) -> u64 {
        let s = a + b;
        s.min(s.wrapping_sub(self.q))
    }

    /// `a - b mod q` (branch-free, vectorizes).
    #[inline]
    pub fn sub(&self, a: u64, b: u64) -> u64 {
        let d = a.wrapping_sub(b);
        d.min(d.wrapping_add(self.q))
    }

    /// `-a mod q`.
    #[inline]
    pub fn neg(&self, a: u64) -> u64 {
        if a == 0 {
            0
        } else {
            self.q - a
        }
    }

    /// Reduces any 64-bit value (single-word Barrett: one high multiplication).
    #[inline]
    pub fn reduce(&self, a: u64) -> u64 {
        // ratio_hi = floor(2^64 / q); the quotient estimate is below the truth by at most 2.
        let est = ((u128::from(a) * u128::from(self.ratio_hi)) >> 64) as u64;
        let mut r = a - est * self.q;
        while r >= self.q {
            r -= self.q;
        }
        r
    }

    /// Reduces any signed 64-bit value to `[0, q)`.
    #[inline]
    pub fn reduce_i64(&self, a: i64) -> u64 {
        let r = self.reduce(a.unsigned_abs());
        if a < 0 {
            self.neg(r)
        } else {
            r
        }
    }

    /// Reduces any signed 128-bit value to `[0, q)`.
    #[inline]
    pub fn reduce_i128(&self, a: i128) -> u64 {
        let r = self.reduce_u128(a.unsigned_abs());
        if a < 0 {
            self.neg(r)
        } else {
            r
        }
    }

    /// Barrett reduction of an arbitrary 128-bit value.
    #[inline]
    pub fn reduce_u128(&self, z: u128) -> u64 {
        let z0 = z as u64;
        let z1 = (z >> 64) as u64;
        // Estimate floor(z · ratio / 2^128) from the partial products that reach the top words.
        let p00_hi = ((u128::from(z0) * u128::from(self.ratio_lo)) >> 64) as u64;
        let p01 = u128::from(z0) * u128::from(self.ratio_hi);
        let p10 = u128::from(z1) * u128::from(self.ratio_lo);
        let mid = u128::from(p00_hi) + u128::from(p01 as u64) + u128::from(p10 as u64);
        let carry = (mid >> 64) as u64;
        let quotient = (z1.wrapping_mul(self.ratio_hi))
            .wrapping_add((p01 >> 64) as u64)
            .wrapping_add((p10 >> 64) as u64)
            .wrapping_add(carry);
        // The estimate is below the true quotient by at most 2.
        let mut r = z0.wrapping_sub(quotient.wrapping_mul(self.q));
        while r >= self.q {
            r -= self.q;
        }
        r
    }

    /// `a · b mod q`.
    #[inline]
    pub fn mul(&self, a: u64, b: u64) -> u64 {
        self.reduce_u128(u128::from(a) * u128::from(b))
    }

    /// Prepares `w` (any 64-bit value) for fast repeated multiplication.
    #[inline]
    pub fn shoup(&self, w: u64) -> ShoupConst {
        let value = self.reduce(w);
        ShoupConst {
            value,
            quotient: ((u128::from(value) << 64) / u128::from(self.q)) as u64,
        }
    }

    /// `a · w mod q` with a Shoup-prepared constant; `a` may be any value below 2^64.
    #[inline]
    pub fn mul_shoup(&self, a: u64, w: ShoupConst) -> u64 {
        let hi = ((u128::from(a) * u128::from(w.quotient)) >> 64) as u64;
        let r = a
            .wrapping_mul(w.value)
            .wrapping_sub(hi.wrapping_mul(self.q));
        if r >= self.q {
            r - self.q
        } else {
            r
        }
    }

    /// `a^e mod q`.
    pub fn pow(&self, a: u64, mut e: u64) -> u64 {
        let mut base = self.reduce(a);
        let mut acc = 1 % self.q;
        while e > 0 {
            if e & 1 == 1 {
                acc = self.mul(acc, base);
            }
            base = self.mul(base, base);
            e >>= 1;
        }
        acc
    }

    /// Multiplicative inverse of `a` modulo `q`, if it exists.
    pub fn inv(&self, a: u64) -> Option<u64> {
        let a = self.reduce(a);
        if a == 0 {
            return None;
        }
        // Extended Euclid over signed 128-bit integers.
        let (mut old_r, mut r) = (i128::from(a), i128::from(self.q));
        let (mut old_s, mut s) = (1i128, 0i128);
        while r != 0 {
            let quot = old_r / r;
            (old_r, r) = (r, old_r - quot * r);
            (old_s, s) = (s, old_s - quot * s);
        }
        if old_r != 1 {
            return None;
        }
        Some(self.reduce_i128(old_s))
    }

    /// Maps `a ∈ [0, q)` to its centred representative in `(-q/2, q/2]`.
    #[inline]
    pub fn center(&self, a: u64) -> i64 {
        if a > self.q / 2 {
            a as i64 - self.q as i64
        } else {
            a as i64
        }
    }

    /// `a·b + c` accumulated lazily: returns the full 128-bit product sum, to be reduced later
    /// with [`Modulus::reduce_u128`].
    #[inline]
    pub fn mul_wide(a: u64, b: u64) -> u128 {
        u128::from(a) * u128::from(b)
    }

    /// Element-wise `out[i] = a[i] · b[i] mod q`.
    pub fn mul_slices(&self, out: &mut [u64], a: &[u64], b: &[u64]) {
        for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
            *o = self.mul(x, y);
        }
    }

    /// Element-wise `a[i] = a[i] + b[i] mod q` (vectorized).
    pub fn add_assign_slices(&self, a: &mut [u64], b: &[u64]) {
        let q = self.q;
        vectorize(|| {
            for (x, &y) in a.iter_mut().zip(b) {
                let s = *x + y;
                *x = s.min(s.wrapping_sub(q));
            }
        })
    }

    /// Element-wise `a[i] = a[i] - b[i] mod q` (vectorized).
    pub fn sub_assign_slices(&self, a: &mut [u64], b: &[u64]) {
        let q = self.q;
        vectorize(|| {
            for (x, &y) in a.iter_mut().zip(b) {
                let d = x.wrapping_sub(y);
                *x = d.min(d.wrapping_add(q));
            }
        })
    }

    /// Appends `a[i] + b[i] mod q` to `out` (vectorized).
    pub fn extend_sum(&self, out: &mut Vec<u64>, a: &[u64], b: &[u64]) {
        let q = self.q;
        let start = out.len();
        out.resize(start + a.len().min(b.len()), 0);
        let dst = &mut out[start..];
        vectorize(|| {
            for ((o, &x), &y) in dst.iter_mut().zip(a).zip(b) {
                let s = x + y;
                *o = s.min(s.wrapping_sub(q));
            }
        })
    }

    /// Appends `a[i] - b[i] mod q` to `out` (vectorized).
    pub fn extend_difference(&self, out: &mut Vec<u64>, a: &[u64], b: &[u64]) {
        let q = self.q;
        let start = out.len();
        out.resize(start + a.len().min(b.len()), 0);
        let dst = &mut out[start..];
        vectorize(|| {
            for ((o, &x), &y) in dst.iter_mut().zip(a).zip(b) {
                let d = x.wrapping_sub(y);
                *o = d.min(d.wrapping_add(q));
            }
        })
    }

    /// `a[i] = a[i] + c mod q` for a reduced constant `c` (vectorized).
    pub fn add_constant_slice(&self, a: &mut [u64], c: u64) {
        let q = self.q;
        vectorize(|| {
            for x in a.iter_mut() {
                let s = *x + c;
                *x = s.min(s.wrapping_sub(q));
            }
        })
    }

    /// In place, `data[i] = x mod q` for residues `x` of another modulus `source` (below
    /// 2^62), read centred when `centered` (`x − source` for `x > source/2`): one pass of
    /// fast base conversion from a single prime (vectorized).
    pub fn convert_from_single_in_place(&self, data: &mut [u64], source: u64, centered: bool) {
        let q = self.q;
        let inv = 1.0 / q as f64;
        let half = if centered { source / 2 } else { u64::MAX };
        let source_mod_q = self.reduce(source);
        let mut body = |small_q: bool| {
            for x in data.iter_mut() {
                let r = reduce_by_float(*x, q, inv, small_q);
                let fix = if *x > half { source_mod_q } else { 0 };
                let d = r.wrapping_sub(fix);
                *x = d.min(d.wrapping_add(q));
            }
        };
        if q < FLOAT_PATH_MIN_Q {
            vectorize(|| body(true))
        } else {
            vectorize(|| body(false))
        }
    }

    /// `out[i] = input[i] mod q` for signed inputs of magnitude below 2^62 (vectorized).
    pub fn reduce_i64_slice(&self, out: &mut [u64], input: &[i64]) {
        let q = self.q;
        let inv = 1.0 / q as f64;
        let mut body = |small_q: bool| {
            for (o, &x) in out.iter_mut().zip(input) {
                let r = reduce_by_float(x.unsigned_abs(), q, inv, small_q);
                // negate for negative inputs (0 stays 0)
                let neg = q.wrapping_sub(r);
                let neg = neg.min(neg.wrapping_sub(q));
                *o = if x < 0 { neg } else { r };
            }
        };
        if q < FLOAT_PATH_MIN_Q {
            vectorize(|| body(true))
        } else {
            vectorize(|| body(false))
        }
    }

    /// Element-wise `a[i] = b[i] - a[i] mod q`.
    pub fn rsub_assign_slices(&self, a: &mut [u64], b: &[u64]) {
        for (x, &y) in a.iter_mut().zip(b) {
            *x = self.sub(y, *x);
        }
    }

    /// Element-wise `a[i] = -a[i] mod q` (vectorized).
    pub fn neg_assign_slice(&self, a: &mut [u64]) {
        let q = self.q;
        vectorize(|| {
            for x in a.iter_mut() {
                // q - x, or 0 for x = 0
                let d = q.wrapping_sub(*x);
                *x = d.min(d.wrapping_sub(q));
            }
        })
    }

    /// Element-wise `a[i] = a[i] · w mod q` with a Shoup constant.
    pub fn mul_shoup_assign_slice(&self, a: &mut [u64], w: ShoupConst) {
        for x in a.iter_mut() {
            *x = self.mul_shoup(*x, w);
        }
    }

    /// `out[i] = input[i] mod q` for inputs below 2^62 (vectorized: the quotient is estimated
    /// in double precision, off by at most one, and corrected).
    pub fn reduce_slice(&self, out: &mut [u64], input: &[u64]) {
        let q = self.q;
        let inv = 1.0 / q as f64;
        if q < FLOAT_PATH_MIN_Q {
            vectorize(|| {
                for (o, &x) in out.iter_mut().zip(input) {
                    *o = reduce_by_float(x, q, inv, true);
                }
            })
        } else {
            vectorize(|| {
                for (o, &x) in out.iter_mut().zip(input) {
                    *o = reduce_by_float(x, q, inv, false);
                }
            })
        }
    }
}

/// 2^52: adding it to a double in `[0, 2^52)` puts the integer part in the mantissa bits.
const TWO_52: f64 = 4_503_599_627_370_496.0;

/// `x` (below 2^32) as a double, exactly, without a conversion instruction: the bits of
/// `2^52 + x` minus 2^52. (Rust's `as` casts between `u64` and `f64` have saturating
/// semantics that LLVM does not vectorize; this form vectorizes.)
#[inline(always)]
fn u32_to_f64(x: u64) -> f64 {
    f64::from_bits(x | TWO_52.to_bits()) - TWO_52
}

/// Moduli at least this large take [`reduce_by_float`]'s conversion-free path.
const FLOAT_PATH_MIN_Q: u64 = 1 << 16;

/// `x mod q` for `x < 2^62`. For `q ≥ 2^16` ([`FLOAT_PATH_MIN_Q`]) the quotient is
/// estimated in double precision (off by at most one either way) and corrected, branch-free
/// and without `as` float conversions, so that it vectorizes (LLVM does not vectorize Rust's
/// saturating casts; this form is 3–5× faster on AVX-512). Smaller moduli (`small_q`, which
/// callers hoist out of their loops) divide exactly: the estimate would be too coarse.
#[inline(always)]
fn reduce_by_float(x: u64, q: u64, inv_q: f64, small_q: bool) -> u64 {
    if small_q {
        // A double's quotient estimate is too coarse for a tiny modulus; divide exactly.
        return x % q;
    }
    let est = {
        // x to within a relative 2^-52; the quotient estimate x/q < 2^46 is then within
        // 1/2 + 2^-6 of the truth, and rounding it (by the 2^52 trick) is off by at most one.
        let xf = u32_to_f64(x >> 32) * 4_294_967_296.0 + u32_to_f64(x & 0xFFFF_FFFF);
        (xf * inv_q + TWO_52)
            .to_bits()
            .wrapping_sub(TWO_52.to_bits())
    };
    let r = x.wrapping_sub(est.wrapping_mul(q)) as i64;
    let r = if r < 0 { r + q as i64 } else { r };
    (if r >= q as i64 { r - q as i64 } else { r }) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PRIMES: [u64; 4] = [
        (0x3fff_ffff_0000_0001 % (1 << 61)) | 1, // odd 61-bit value (not necessarily prime)
        1_152_921_504_606_748_673,               // 60-bit NTT prime
        1_099_511_922_689,                       // 40-bit prime
        65_537,
    ];

    proptest! {
        #[test]
        fn barrett_matches_u128_rem(z in any::<u128>(), i in 0usize..4) {
            let m = Modulus::new(PRIMES[i]).unwrap();
            prop_assert_eq!(u128::from(m.reduce_u128(z)), z % u128::from(PRIMES[i]));
        }

        #[test]
        fn reduce_u64_matches(a in any::<u64>(), i in 0usize..4) {
            let m = Modulus::new(PRIMES[i]).unwrap();
            prop_assert_eq!(m.reduce(a), a % PRIMES[i]);
        }

        #[test]
        fn slice_kernels_match_scalar(v in prop::collection::vec(any::<u64>(), 1..40), i in 0usize..4) {
            let q = PRIMES[i];
            let m = Modulus::new(q).unwrap();
            let a: Vec<u64> = v.iter().map(|x| x % q).collect();
            let b: Vec<u64> = v.iter().rev().map(|x| x % q).collect();
            let mut s = a.clone();
            m.add_assign_slices(&mut s, &b);
            let mut d = a.clone();
            m.sub_assign_slices(&mut d, &b);
            let mut n = a.clone();
            m.neg_assign_slice(&mut n);
            let mut es = Vec::new();
            m.extend_sum(&mut es, &a, &b);
            let mut ed = Vec::new();
            m.extend_difference(&mut ed, &a, &b);
            let signed: Vec<i64> = v.iter().map(|&x| (x as i64) >> 2).collect();
            let mut rs = vec![0u64; signed.len()];
            m.reduce_i64_slice(&mut rs, &signed);
            for (k, &x) in signed.iter().enumerate() {
                prop_assert_eq!(rs[k], m.reduce_i64(x));
            }
            let mut ac = a.clone();
            m.add_constant_slice(&mut ac, b[0]);
            for k in 0..a.len() {
                prop_assert_eq!(ac[k], m.add(a[k], b[0]));
            }
            let small: Vec<u64> = v.iter().map(|x| x >> 2).collect();
            let mut r = vec![0u64; small.len()];
            m.reduce_slice(&mut r, &small);
            for k in 0..a.len() {
                prop_assert_eq!(s[k], m.add(a[k], b[k]));
                prop_assert_eq!(es[k], s[k]);
                prop_assert_eq!(d[k], m.sub(a[k], b[k]));
                prop_assert_eq!(ed[k], d[k]);
                prop_assert_eq!(n[k], m.neg(a[k]));
                prop_assert_eq!(r[k], small[k] % q);
            }
        }

        #[test]
        fn reduce_slices_match_remainders(v in proptest::collection::vec(0u64..1 << 62, 1..70), q in prop::sample::select(vec![3u64, 257, 65_521, 65_537, 1_099_511_922_689, 1_152_921_504_606_748_673])) {
            // Both paths of the float reduction (casts below 2^16, the 2^52 trick above),
            // over the whole input range.
            let m = Modulus::new(q).unwrap();
            let mut r = vec![0u64; v.len()];
            m.reduce_slice(&mut r, &v);
            let signed: Vec<i64> = v.iter().enumerate().map(|(k, &x)| if k % 2 == 0 { x as i64 } else { -(x as i64) }).collect();
            let mut rs = vec![0u64; v.len()];
            m.reduce_i64_slice(&mut rs, &signed);
            for k in 0..v.len() {
                prop_assert_eq!(r[k], v[k] % q);
                prop_assert_eq!(rs[k], (i128::from(signed[k])).rem_euclid(i128::from(q)) as u64);
            }
        }

        #[test]
        fn mul_matches(a in any::<u64>(), b in any::<u64>(), i in 0usize..4) {
            let q = PRIMES[i];
            let m = Modulus::new(q).unwrap();
            let (a, b) = (a % q, b % q);
            prop_assert_eq!(u128::from(m.mul(a, b)), u128::from(a) * u128::from(b) % u128::from(q));
        }

        #[test]
        fn shoup_matches(a in any::<u64>(), w in any::<u64>(), i in 0usize..4) {
            let q = PRIMES[i];
            let m = Modulus::new(q).unwrap();
            let c = m.shoup(w);
            prop_assert_eq!(m.mul_shoup(a, c), m.mul(m.reduce(a), m.reduce(w)));
        }

        #[test]
        fn add_sub_neg_laws(a in any::<u64>(), b in any::<u64>(), i in 0usize..4) {
            let q = PRIMES[i];
            let m = Modulus::new(q).unwrap();
            let (a, b) = (a % q, b % q);
            prop_assert_eq!(m.sub(m.add(a, b), b), a);
            prop_assert_eq!(m.add(a, m.neg(a)), 0);
            prop_assert_eq!(m.reduce_i64(-(a as i64 % 1000)), m.neg(a % 1000 % q));
        }

        #[test]
        fn inverse_is_inverse(a in 1u64..u64::MAX) {
            let q = PRIMES[1];
            let m = Modulus::new(q).unwrap();
            let a = a % q;
            prop_assume!(a != 0);
            let inv = m.inv(a).unwrap();
            prop_assert_eq!(m.mul(a, inv), 1);
        }
    }

    #[test]
    fn rejects_bad_moduli() {
        assert!(Modulus::new(0).is_err());
        assert!(Modulus::new(10).is_err());
        assert!(Modulus::new(1 << 63 | 1).is_err());
    }

    #[test]
    fn pow_and_center() {
        let m = Modulus::new(65_537).unwrap();
        assert_eq!(m.pow(3, 65_536), 1);
        assert_eq!(m.center(65_536), -1);
        assert_eq!(m.center(5), 5);
    }
}
