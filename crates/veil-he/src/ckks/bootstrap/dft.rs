//! The homomorphic DFT of bootstrapping, factored: the special FFT of the canonical embedding
//! (`z = U·w`, `U[j][c] = ξ^{5^j·c}` with `ξ = e^{iπ/2n}`) is a product of `log2 n` butterfly
//! stages of three cyclic diagonals each, after a bit-reversal. The bit-reversal is left out —
//! EvalMod works slot by slot, so CoeffsToSlots may leave the coefficients in bit-reversed
//! order and SlotsToCoeffs take them so — and consecutive stages are merged into as many
//! matrices as levels are given (a merge of `s` stages has at most `2^{s+1} − 1` diagonals).

use std::collections::BTreeMap;

use num_complex::Complex64;

/// A matrix on vectors of `n` complex values, by its non-zero cyclic diagonals:
/// `M[x][(x + o) mod n] = diagonals[o][x]`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Diagonals {
    pub(crate) n: usize,
    pub(crate) diagonals: BTreeMap<usize, Vec<Complex64>>,
}

/// `5^j mod m`.
pub(crate) fn pow5_mod(j: usize, m: usize) -> u64 {
    let m = m as u64;
    let mut acc = 1u64 % m;
    let mut base = 5u64 % m;
    let mut e = j;
    while e > 0 {
        if e & 1 == 1 {
            acc = acc * base % m;
        }
        base = base * base % m;
        e >>= 1;
    }
    acc
}

/// The butterfly twiddle of stage `len` at position `j < len/2`: `e^{2πi·(5^j mod 4len)/4len}`.
fn twiddle(j: usize, len: usize) -> Complex64 {
    let lenq = 4 * len;
    let e = pow5_mod(j, lenq);
    Complex64::from_polar(1.0, 2.0 * std::f64::consts::PI * e as f64 / lenq as f64)
}

impl Diagonals {
    fn zero(n: usize) -> Self {
        Self {
            n,
            diagonals: BTreeMap::new(),
        }
    }

    fn identity(n: usize) -> Self {
        let mut m = Self::zero(n);
        m.diagonals.insert(0, vec![Complex64::new(1.0, 0.0); n]);
        m
    }

    fn entry(&mut self, offset: usize) -> &mut Vec<Complex64> {
        let n = self.n;
        self.diagonals
            .entry(offset % n)
            .or_insert_with(|| vec![Complex64::new(0.0, 0.0); n])
    }

    /// `self · before` (`before` applied first).
    fn after(&self, before: &Self) -> Self {
        let n = self.n;
        let mut out = Self::zero(n);
        for (&s, a) in &self.diagonals {
            for (&t, b) in &before.diagonals {
                let d = out.entry(s + t);
                for x in 0..n {
                    d[x] += a[x] * b[(x + s) % n];
                }
            }
        }
        out.diagonals
            .retain(|_, d| d.iter().any(|z| z.norm() > 1e-300));
        out
    }

    /// Every entry times `c`.
    pub(crate) fn scaled(mut self, c: f64) -> Self {
        self.diagonals
            .values_mut()
            .for_each(|d| d.iter_mut().for_each(|z| *z *= c));
        self
    }

    /// `M·v` in the clear.
    #[cfg(test)]
    pub(crate) fn apply(&self, v: &[Complex64]) -> Vec<Complex64> {
        let n = self.n;
        (0..n)
            .map(|x| {
                self.diagonals
                    .iter()
                    .map(|(&o, d)| d[x] * v[(x + o) % n])
                    .sum()
            })
            .collect()
    }

    /// The forward butterfly stage of length `len`: on each block of `len`, position
    /// `j < len/2` becomes `u + w_j·v` and position `j + len/2` becomes `u − w_j·v`
    /// (`u`, `v` the values at `j`, `j + len/2`).
    fn forward_stage(n: usize, len: usize) -> Self {
        let half = len / 2;
        let mut m = Self::zero(n);
        for x in 0..n {
            let j = x % len;
            if j < half {
                m.entry(0)[x] = Complex64::new(1.0, 0.0);
                m.entry(half)[x] = twiddle(j, len);
            } else {
                m.entry(n - half)[x] = Complex64::new(1.0, 0.0);
                m.entry(0)[x] = -twiddle(j - half, len);
            }
        }
        m
    }

    /// The inverse of [`forward_stage`](Self::forward_stage): `u = (a + b)/2`,
    /// `v = (a − b)·conj(w_j)/2`.
    fn inverse_stage(n: usize, len: usize) -> Self {
        let half = len / 2;
        let mut m = Self::zero(n);
        for x in 0..n {
            let j = x % len;
            if j < half {
                m.entry(0)[x] = Complex64::new(0.5, 0.0);
                m.entry(half)[x] = Complex64::new(0.5, 0.0);
            } else {
                let w = twiddle(j - half, len).conj() * 0.5;
                m.entry(n - half)[x] = w;
                m.entry(0)[x] = -w;
            }
        }
        m
    }
}

/// How many of `stages` each of `levels` groups takes (the first groups take the extra ones).
fn group_sizes(stages: usize, levels: usize) -> Vec<usize> {
    let levels = levels.clamp(1, stages.max(1));
    (0..levels)
        .map(|g| stages / levels + usize::from(g < stages % levels))
        .collect()
}

/// SlotsToCoeffs without its bit-reversal: `U·P`, as `levels` matrices in the order they
/// are applied (stages of length 2, 4, …, n).
pub(crate) fn slots_to_coeffs(n: usize, levels: usize) -> Vec<Diagonals> {
    let lens: Vec<usize> = (1..=n.trailing_zeros()).map(|s| 1usize << s).collect();
    merge(n, &lens, levels, Diagonals::forward_stage)
}

/// CoeffsToSlots without its bit-reversal: `P·U^{-1}` (stages of length n, …, 4, 2), as
/// `levels` matrices in the order they are applied.
pub(crate) fn coeffs_to_slots(n: usize, levels: usize) -> Vec<Diagonals> {
    let lens: Vec<usize> = (1..=n.trailing_zeros())
        .rev()
        .map(|s| 1usize << s)
        .collect();
    merge(n, &lens, levels, Diagonals::inverse_stage)
}

fn merge(
    n: usize,
    lens: &[usize],
    levels: usize,
    stage: fn(usize, usize) -> Diagonals,
) -> Vec<Diagonals> {
    let mut out = Vec::new();
    let mut rest = lens;
    for size in group_sizes(lens.len(), levels) {
        let (group, tail) = rest.split_at(size);
        rest = tail;
        let mut m = Diagonals::identity(n);
        for &len in group {
            m = stage(n, len).after(&m);
        }
        out.push(m);
    }
    out
}

/// How a matrix is applied by baby-step giant-step: every diagonal offset is `d·unit` with
/// `d = g·baby + i` (`0 ≤ i < baby`; `g` may be negative).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Plan {
    pub(crate) unit: usize,
    pub(crate) baby: usize,
    /// `(offset, g, i)` for every diagonal.
    pub(crate) terms: Vec<(usize, i64, usize)>,
}

impl Plan {
    pub(crate) fn of(m: &Diagonals) -> Self {
        let n = m.n;
        let unit = m
            .diagonals
            .keys()
            .filter(|&&o| o != 0)
            .map(|&o| 1usize << o.trailing_zeros())
            .min()
            .unwrap_or(n)
            .min(n);
        let signed = |o: usize| -> i64 {
            let d = (o / unit) as i64;
            let period = (n / unit) as i64;
            if 2 * d > period {
                d - period
            } else {
                d
            }
        };
        let ds: Vec<i64> = m.diagonals.keys().map(|&o| signed(o)).collect();
        let lo = ds.iter().copied().min().unwrap_or(0);
        let hi = ds.iter().copied().max().unwrap_or(0);
        let range = (hi - lo + 1) as usize;
        let baby = 1usize << range.next_power_of_two().trailing_zeros().div_ceil(2);
        let terms = m
            .diagonals
            .keys()
            .map(|&o| {
                let d = signed(o);
                (
                    o,
                    d.div_euclid(baby as i64),
                    d.rem_euclid(baby as i64) as usize,
                )
            })
            .collect();
        Self { unit, baby, terms }
    }

    /// The rotation steps: babies `i·unit` and giants `g·baby·unit` (non-zero).
    pub(crate) fn steps(&self) -> Vec<i64> {
        let mut steps: Vec<i64> = Vec::new();
        for &(_, g, i) in &self.terms {
            if i != 0 {
                steps.push((i * self.unit) as i64);
            }
            if g != 0 {
                steps.push(g * (self.baby * self.unit) as i64);
            }
        }
        steps.sort_unstable();
        steps.dedup();
        steps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bit_reverse(v: &[Complex64]) -> Vec<Complex64> {
        let n = v.len();
        let bits = n.trailing_zeros();
        (0..n)
            .map(|i| v[i.reverse_bits() >> (usize::BITS - bits)])
            .collect()
    }

    fn dense_u(w: &[Complex64]) -> Vec<Complex64> {
        let n = w.len();
        (0..n)
            .map(|j| {
                (0..n)
                    .map(|c| {
                        let e = (pow5_mod(j, 4 * n) * c as u64) % (4 * n as u64);
                        let xi = Complex64::from_polar(
                            1.0,
                            std::f64::consts::PI * e as f64 / (2 * n) as f64,
                        );
                        w[c] * xi
                    })
                    .sum()
            })
            .collect()
    }

    fn sample(n: usize) -> Vec<Complex64> {
        (0..n)
            .map(|i| Complex64::new((i as f64 * 0.37).sin(), (i as f64 * 0.91).cos()))
            .collect()
    }

    #[test]
    fn the_stages_compose_to_the_special_fft() {
        for n in [2usize, 8, 64] {
            for levels in 1..=n.trailing_zeros() as usize {
                let w = sample(n);
                let want = dense_u(&w);
                let mut got = bit_reverse(&w);
                for m in slots_to_coeffs(n, levels) {
                    got = m.apply(&got);
                }
                let err = got
                    .iter()
                    .zip(&want)
                    .map(|(a, b)| (a - b).norm())
                    .fold(0.0, f64::max);
                assert!(err < 1e-12, "n {n} levels {levels}: {err:e}");
                // And back.
                let mut back = want.clone();
                for m in coeffs_to_slots(n, levels) {
                    back = m.apply(&back);
                }
                let err = back
                    .iter()
                    .zip(bit_reverse(&w))
                    .map(|(a, b)| (a - b).norm())
                    .fold(0.0, f64::max);
                assert!(err < 1e-12, "n {n} levels {levels} inverse: {err:e}");
            }
        }
    }

    #[test]
    fn merged_stages_have_few_diagonals_and_a_compact_plan() {
        let maps = slots_to_coeffs(1 << 12, 4);
        assert_eq!(maps.len(), 4);
        for m in &maps {
            // 3 stages merged: at most 2^4 − 1 diagonals.
            assert!(m.diagonals.len() <= 15, "{}", m.diagonals.len());
            let plan = Plan::of(m);
            assert!(plan.steps().len() <= 8, "{plan:?}");
            for &(o, g, i) in &plan.terms {
                let d = g * plan.baby as i64 + i as i64;
                assert_eq!((d * plan.unit as i64).rem_euclid(1 << 12) as usize, o);
            }
        }
    }
}
