//! RNS base conversion (for key switching's ModUp / ModDown) and exact CRT composition (for
//! decoding).

use crate::error::{MathError, Result};
use crate::modulus::{Modulus, ShoupConst};
use crate::par::for_each_limb;

/// Fast (approximate) base conversion from basis `A = {a_i}` to basis `B = {b_j}`:
/// `x ↦ Σ_i [x_i · (A/a_i)^{-1}]_{a_i} · (A/a_i) mod b_j`.
///
/// The result equals `x + u·A` for some `0 ≤ u < |A|`; key switching is designed so that the
/// `u·A` term either vanishes (ModUp with gadget factors) or becomes a small rounding error
/// (ModDown).
#[derive(Clone, Debug)]
pub struct BaseConverter {
    from: Vec<Modulus>,
    to: Vec<Modulus>,
    /// `(A/a_i)^{-1} mod a_i`, Shoup-prepared.
    inv_hat: Vec<ShoupConst>,
    /// `hat_mod_to[j][i] = (A/a_i) mod b_j`.
    hat_mod_to: Vec<Vec<u64>>,
    /// `A mod b_j`.
    a_mod_to: Vec<u64>,
}

impl BaseConverter {
    /// Precomputes the conversion. The two bases must be disjoint sets of distinct primes.
    pub fn new(from: &[Modulus], to: &[Modulus]) -> Result<Self> {
        if from.is_empty() {
            return Err(MathError::LengthMismatch {
                expected: 1,
                found: 0,
            });
        }
        let mut inv_hat = Vec::with_capacity(from.len());
        for (i, a) in from.iter().enumerate() {
            let mut hat = 1u64;
            for (k, b) in from.iter().enumerate() {
                if k != i {
                    hat = a.mul(hat, a.reduce(b.value()));
                }
            }
            let inv = a.inv(hat).ok_or(MathError::InvalidModulus {
                modulus: a.value(),
                reason: "primes of a basis must be distinct",
            })?;
            inv_hat.push(a.shoup(inv));
        }
        let mut hat_mod_to = Vec::with_capacity(to.len());
        for b in to {
            if from.iter().any(|a| a.value() == b.value()) {
                return Err(MathError::InvalidModulus {
                    modulus: b.value(),
                    reason: "bases of a conversion must be disjoint",
                });
            }
            let row = (0..from.len())
                .map(|i| {
                    from.iter()
                        .enumerate()
                        .filter(|&(k, _)| k != i)
                        .fold(1u64, |acc, (_, a)| b.mul(acc, b.reduce(a.value())))
                })
                .collect();
            hat_mod_to.push(row);
        }
        let a_mod_to = to
            .iter()
            .map(|b| {
                from.iter()
                    .fold(1u64, |acc, a| b.mul(acc, b.reduce(a.value())))
            })
            .collect();
        Ok(Self {
            from: from.to_vec(),
            to: to.to_vec(),
            inv_hat,
            hat_mod_to,
            a_mod_to,
        })
    }

    /// Source basis.
    pub fn from_moduli(&self) -> &[Modulus] {
        &self.from
    }

    /// Target basis.
    pub fn to_moduli(&self) -> &[Modulus] {
        &self.to
    }

    /// Converts coefficient-form limbs `input` (`|A| · n` words) to `output` (`|B| · n` words).
    pub fn convert(&self, n: usize, input: &[u64], output: &mut [u64]) -> Result<()> {
        self.convert_impl(n, input, output, Lift::Plain)
    }

    /// Like [`convert`](Self::convert), but lifts each `[x_i·(A/a_i)^{-1}]_{a_i}` to its
    /// centred representative, so the result is `x + u·A` with `|u| ≤ |A|/2`: the lifted
    /// value is centred around zero. Key switching uses it for ModUp, which halves the noise
    /// the digits contribute.
    pub fn convert_centered(&self, n: usize, input: &[u64], output: &mut [u64]) -> Result<()> {
        self.convert_impl(n, input, output, Lift::Centered)
    }

    /// Exact conversion of the centred value: the result is `x` itself for `x` in
    /// `(−A/2, A/2)` (Halevi–Polyakov–Shoup): the multiple `v = round(Σ_i y_i / a_i)` of `A`
    /// that the fast conversion adds is computed in floating point and subtracted. The
    /// floating-point sum is off by at most `|A|·2^-52`, so the result can be wrong only for
    /// `x` within that fraction of `±A/2` (BFV multiplication relies on this, as SEAL's and
    /// OpenFHE's do).
    pub fn convert_exact(&self, n: usize, input: &[u64], output: &mut [u64]) -> Result<()> {
        self.convert_impl(n, input, output, Lift::Exact)
    }

    /// With a single source prime, converts one limb in place to target prime `j` (centred:
    /// residues above half the source prime stand for negative values): `limb` holds the
    /// source residues on entry and the target residues on return. The allocation-free form
    /// of [`BaseConverter::convert_centered`] for key-switching digits of one prime.
    pub fn convert_single_in_place(
        &self,
        j: usize,
        limb: &mut [u64],
        centered: bool,
    ) -> Result<()> {
        let (Some(from), Some(to), 1) = (self.from.first(), self.to.get(j), self.from.len()) else {
            return Err(MathError::LengthMismatch {
                expected: 1,
                found: self.from.len(),
            });
        };
        to.convert_from_single_in_place(limb, from.value(), centered);
        Ok(())
    }

    fn convert_impl(&self, n: usize, input: &[u64], output: &mut [u64], lift: Lift) -> Result<()> {
        let centered = lift != Lift::Plain;
        if input.len() != self.from.len() * n {
            return Err(MathError::LengthMismatch {
                expected: self.from.len() * n,
                found: input.len(),
            });
        }
        if output.len() != self.to.len() * n {
            return Err(MathError::LengthMismatch {
                expected: self.to.len() * n,
                found: output.len(),
            });
        }
        if self.from.len() == 1 {
            // One source prime: the conversion is a plain reduction of each residue
            // (minus `a` for residues above `a/2` when centring).
            let to = &self.to;
            let a = self.from[0].value();
            for_each_limb(output, n, 2, |j, out| {
                out.copy_from_slice(input);
                to[j].convert_from_single_in_place(out, a, centered);
            });
            return Ok(());
        }
        // y_i = x_i · (A/a_i)^{-1} mod a_i
        let mut y = input.to_vec();
        let from = &self.from;
        let inv_hat = &self.inv_hat;
        for_each_limb(&mut y, n, 2, |i, limb| {
            from[i].mul_shoup_assign_slice(limb, inv_hat[i])
        });
        let k = self.from.len();
        let to = &self.to;
        let hat = &self.hat_mod_to;
        // Centred: how many y_i (of this coefficient) stand for y_i − a_i, counted once for
        // every target prime.
        let counts: Vec<u32> = if lift == Lift::Exact {
            // v = round(Σ_i y_i / a_i): how many times the fast conversion overshoots by A.
            let mut sums = vec![0.5f64; n];
            for (i, a) in from.iter().enumerate() {
                let inv = 1.0 / a.value() as f64;
                let yi = &y[i * n..(i + 1) * n];
                crate::simd::vectorize(|| {
                    for (s, &v) in sums.iter_mut().zip(yi) {
                        *s += v as f64 * inv;
                    }
                });
            }
            sums.into_iter().map(|s| s as u32).collect()
        } else if centered {
            let mut counts = vec![0u32; n];
            for (i, a) in from.iter().enumerate() {
                let half = a.value() / 2;
                let yi = &y[i * n..(i + 1) * n];
                crate::simd::vectorize(|| {
                    for (c, &v) in counts.iter_mut().zip(yi) {
                        *c += u32::from(v > half);
                    }
                });
            }
            counts
        } else {
            Vec::new()
        };
        for_each_limb(output, n, 2 * k, |j, out| {
            let b = &to[j];
            let row = &hat[j];
            // Products are below 2^124: sum them 15 at a time in 128 bits, then reduce.
            out.fill(0);
            let partial = out;
            if k <= 15 {
                // Few source primes (key-switching digits, special primes): one pass, the
                // sum held in registers.
                let ys: Vec<&[u64]> = (0..k).map(|i| &y[i * n..(i + 1) * n]).collect();
                for (c, p) in partial.iter_mut().enumerate() {
                    let mut a = 0u128;
                    for (yi, &h) in ys.iter().zip(row) {
                        a += u128::from(yi[c]) * u128::from(h);
                    }
                    *p = b.reduce_u128(a);
                }
            }
            let mut acc = vec![0u128; if k <= 15 { 0 } else { n }];
            for (chunk_index, chunk) in row.chunks(15).enumerate().filter(|_| k > 15) {
                acc.iter_mut().for_each(|a| *a = 0);
                for (k, &h) in chunk.iter().enumerate() {
                    let i = chunk_index * 15 + k;
                    let yi = &y[i * n..(i + 1) * n];
                    for (a, &v) in acc.iter_mut().zip(yi) {
                        *a += u128::from(v) * u128::from(h);
                    }
                }
                for (p, &a) in partial.iter_mut().zip(&acc) {
                    *p = b.add(*p, b.reduce_u128(a));
                }
            }
            if centered {
                // Subtract A once per overshoot counted above (centred: each y_i above a_i/2
                // stands for y_i − a_i; exact: v = round(Σ y_i / a_i)).
                let a_mod_b = self.a_mod_to[j];
                let table: Vec<u64> = (0..=k as u64)
                    .map(|c| b.mul(b.reduce(c), a_mod_b))
                    .collect();
                for (p, &c) in partial.iter_mut().zip(&counts) {
                    *p = b.sub(*p, table[c as usize]);
                }
            }
        });
        Ok(())
    }
}

/// How a base conversion lifts the source residues.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lift {
    /// `x + u·A`, `0 ≤ u < |A|`.
    Plain,
    /// `x + u·A`, `|u| ≤ |A|/2`.
    Centered,
    /// `x` (the centred representative), up to floating-point ties.
    Exact,
}

/// Exact CRT composition by Garner's mixed-radix algorithm with balanced digits, giving the
/// centred representative in `(-Q/2, Q/2]` as an `f64` without catastrophic cancellation.
#[derive(Clone, Debug)]
pub struct CrtComposer {
    moduli: Vec<Modulus>,
    /// How many leading primes have a product below 2^120 (fast path in `i128`).
    small: usize,
    /// `prefix[i][j] = q_0 ··· q_{j-1} mod q_i` for `j < i`, Shoup-prepared.
    prefix: Vec<Vec<ShoupConst>>,
    /// `(q_0 ··· q_{i-1})^{-1} mod q_i`, Shoup-prepared.
    inv_prefix_shoup: Vec<ShoupConst>,
}

impl CrtComposer {
    /// Precomputes the composition for distinct primes.
    pub fn new(moduli: &[Modulus]) -> Result<Self> {
        let mut inv_prefix = Vec::with_capacity(moduli.len());
        let mut q_mod = Vec::with_capacity(moduli.len());
        for (i, m) in moduli.iter().enumerate() {
            let row: Vec<u64> = moduli[..i].iter().map(|q| m.reduce(q.value())).collect();
            let prefix = row.iter().fold(1u64, |acc, &x| m.mul(acc, x));
            inv_prefix.push(m.inv(prefix).ok_or(MathError::InvalidModulus {
                modulus: m.value(),
                reason: "primes must be distinct",
            })?);
            q_mod.push(row);
        }
        let mut bits = 0u32;
        let small = moduli
            .iter()
            .take_while(|m| {
                bits += m.bits();
                bits <= 120
            })
            .count();
        let prefix = moduli
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let mut p = 1u64;
                (0..i)
                    .map(|j| {
                        let c = m.shoup(p);
                        p = m.mul(p, q_mod[i][j]);
                        c
                    })
                    .collect()
            })
            .collect();
        let inv_prefix_shoup = moduli
            .iter()
            .zip(&inv_prefix)
            .map(|(m, &x)| m.shoup(x))
            .collect();
        Ok(Self {
            moduli: moduli.to_vec(),
            small,
            prefix,
            inv_prefix_shoup,
        })
    }

    /// Balanced mixed-radix digits of `residues` over the first `count` primes.
    fn digits(&self, residues: &[u64], count: usize, digits: &mut Vec<i64>) {
        digits.clear();
        for (i, m) in self.moduli.iter().enumerate().take(count) {
            // s = Σ_{j<i} a_j · (q_0···q_{j-1}) mod q_i
            let mut s = 0u64;
            for (&a, &p) in digits.iter().zip(&self.prefix[i]) {
                s = m.add(s, m.mul_shoup(m.reduce_i64(a), p));
            }
            let a = m.mul_shoup(m.sub(m.reduce(residues[i]), s), self.inv_prefix_shoup[i]);
            digits.push(m.center(a));
        }
    }

    /// Composes residues `x_i = x mod q_i` into the centred value of `x` as `f64`.
    ///
    /// Fast path: when the value fits the leading primes whose product is below 2^120 (the
    /// usual case when decoding CKKS), it is composed in `i128` from those and checked against
    /// every other residue — by CRT uniqueness a match proves it exact. Otherwise the full
    /// mixed-radix composition runs.
    pub fn compose_centered(&self, residues: &[u64], digits: &mut Vec<i64>) -> f64 {
        if self.small > 0 && self.small < self.moduli.len() {
            self.digits(residues, self.small, digits);
            let mut v: i128 = 0;
            for (i, &a) in digits.iter().enumerate().rev() {
                v = v * i128::from(self.moduli[i].value()) + i128::from(a);
            }
            if self.moduli[self.small..]
                .iter()
                .zip(&residues[self.small..])
                .all(|(m, &r)| m.reduce_i128(v) == r)
            {
                return v as f64;
            }
        }
        self.digits(residues, self.moduli.len(), digits);
        let mut v = 0f64;
        for (i, &a) in digits.iter().enumerate().rev() {
            v = v * self.moduli[i].value() as f64 + a as f64;
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prime::primes_for_bit_sizes;

    #[test]
    fn fast_base_conversion_is_exact_up_to_multiples_of_a() {
        let from = primes_for_bit_sizes(16, &[40, 41, 42]).unwrap();
        let to = primes_for_bit_sizes(16, &[50, 51]).unwrap();
        let conv = BaseConverter::new(&from, &to).unwrap();
        let a_prod: u128 = from.iter().map(|m| u128::from(m.value())).product();
        let n = 4;
        let xs: [u128; 4] = [0, 1, 123_456_789_012_345_678_901, a_prod - 1];
        let mut input = vec![0u64; 3 * n];
        for (i, m) in from.iter().enumerate() {
            for (c, &x) in xs.iter().enumerate() {
                input[i * n + c] = (x % u128::from(m.value())) as u64;
            }
        }
        let mut out = vec![0u64; 2 * n];
        conv.convert(n, &input, &mut out).unwrap();
        for (j, b) in to.iter().enumerate() {
            for (c, &x) in xs.iter().enumerate() {
                let got = out[j * n + c];
                let ok = (0..3u128).any(|u| {
                    let v = (x + u * a_prod) % u128::from(b.value());
                    v as u64 == got
                });
                assert!(ok, "coefficient {c} modulo {}", b.value());
            }
        }
        assert!(BaseConverter::new(&from, &from[..1]).is_err());
        // Centred: x + u·A with u in (−|A|, |A|), and for a single prime exactly the centred lift.
        conv.convert_centered(n, &input, &mut out).unwrap();
        for (j, b) in to.iter().enumerate() {
            for (c, &x) in xs.iter().enumerate() {
                let got = out[j * n + c];
                let ok = (-3i128..3).any(|u| {
                    let v = (x as i128 + u * a_prod as i128).rem_euclid(i128::from(b.value()));
                    v as u64 == got
                });
                assert!(ok, "centred coefficient {c} modulo {}", b.value());
            }
        }
        let single = BaseConverter::new(&from[..1], &to).unwrap();
        let a = from[0].value();
        let vals = [0u64, 1, a / 2, a / 2 + 1, a - 1];
        let mut o = vec![0u64; 2 * vals.len()];
        single.convert_centered(vals.len(), &vals, &mut o).unwrap();
        for (c, &x) in vals.iter().enumerate() {
            let centred = if x > a / 2 {
                x as i128 - a as i128
            } else {
                x as i128
            };
            assert_eq!(o[c], to[0].reduce_i128(centred));
        }
    }

    #[test]
    fn exact_conversion_gives_the_centred_value() {
        // Three 40-bit source primes (A ≈ 2^123): values across the whole centred range.
        let from = primes_for_bit_sizes(16, &[40, 41, 42]).unwrap();
        let to = primes_for_bit_sizes(16, &[50, 51, 60]).unwrap();
        let conv = BaseConverter::new(&from, &to).unwrap();
        let a_prod: i128 = from.iter().map(|m| i128::from(m.value())).product();
        let xs: Vec<i128> = vec![
            0,
            1,
            -1,
            a_prod / 2 - (1 << 80),
            -(a_prod / 2) + (1 << 80),
            123_456_789_012_345_678_901,
            -987_654_321_987_654_321_123,
            a_prod / 3,
            -(a_prod / 5),
        ];
        let n = xs.len();
        let mut input = vec![0u64; from.len() * n];
        for (i, m) in from.iter().enumerate() {
            for (c, &x) in xs.iter().enumerate() {
                input[i * n + c] = m.reduce_i128(x);
            }
        }
        let mut out = vec![0u64; to.len() * n];
        conv.convert_exact(n, &input, &mut out).unwrap();
        for (j, b) in to.iter().enumerate() {
            for (c, &x) in xs.iter().enumerate() {
                assert_eq!(
                    out[j * n + c],
                    b.reduce_i128(x),
                    "value {x} modulo {}",
                    b.value()
                );
            }
        }
    }

    #[test]
    fn crt_composition_is_exact_and_centred() {
        let moduli = primes_for_bit_sizes(16, &[60, 40, 40, 60]).unwrap();
        let comp = CrtComposer::new(&moduli).unwrap();
        let mut digits = Vec::new();
        for x in [
            0i128,
            1,
            -1,
            1 << 100,
            -(1 << 100) + 12345,
            987_654_321_987_654_321,
        ] {
            let residues: Vec<u64> = moduli.iter().map(|m| m.reduce_i128(x)).collect();
            let v = comp.compose_centered(&residues, &mut digits);
            assert!((v - x as f64).abs() <= (x as f64).abs() * 1e-15, "{x}: {v}");
        }
    }
}
