//! Samplers for lattice cryptography, all drawing from one cryptographic RNG passed by the
//! caller (`ChaCha20Rng` seeded from the operating system, or a seeded one in tests):
//! uniform residues, uniform ternary secrets and a centred discrete Gaussian (σ = 3.2 by
//! default, tail-cut at 6σ as in SEAL) sampled by a constant-time cumulative-table scan.

use rand_core::{CryptoRng, RngCore};

use crate::modulus::Modulus;

/// The standard deviation of RLWE errors used by SEAL, OpenFHE and the HE standard.
pub const DEFAULT_SIGMA: f64 = 3.2;

/// Fills `out` with independent uniform values in `[0, q)` (rejection sampling, unbiased).
pub fn uniform_mod<R: RngCore + CryptoRng>(rng: &mut R, m: &Modulus, out: &mut [u64]) {
    let q = m.value();
    let mask = if m.bits() >= 64 {
        u64::MAX
    } else {
        (1u64 << m.bits()) - 1
    };
    for o in out.iter_mut() {
        loop {
            let v = rng.next_u64() & mask;
            if v < q {
                *o = v;
                break;
            }
        }
    }
}

/// Fills `out` with independent uniform values in `{-1, 0, 1}`.
pub fn ternary<R: RngCore + CryptoRng>(rng: &mut R, out: &mut [i64]) {
    let mut buf = [0u8; 64];
    let mut pos = buf.len();
    for o in out.iter_mut() {
        loop {
            if pos == buf.len() {
                rng.fill_bytes(&mut buf);
                pos = 0;
            }
            let b = buf[pos];
            pos += 1;
            // 255 = 3 · 85: bytes below 255 are uniform modulo 3.
            if b < 255 {
                *o = i64::from(b % 3) - 1;
                break;
            }
        }
    }
    buf.iter_mut().for_each(|b| *b = 0);
}

/// Fills `out` with a uniformly random ternary vector of exactly `weight` non-zero entries
/// (each ±1 with probability 1/2, at `weight` distinct uniform positions: a partial
/// Fisher–Yates shuffle with unbiased draws). A `weight` above `out.len()` fills every entry.
pub fn sparse_ternary<R: RngCore + CryptoRng>(rng: &mut R, weight: usize, out: &mut [i64]) {
    let n = out.len();
    out.iter_mut().for_each(|o| *o = 0);
    let mut positions: Vec<usize> = (0..n).collect();
    for i in 0..weight.min(n) {
        let j = i + below(rng, (n - i) as u64) as usize;
        positions.swap(i, j);
        out[positions[i]] = if rng.next_u32() & 1 == 1 { 1 } else { -1 };
    }
    positions.iter_mut().for_each(|p| *p = 0);
}

/// A uniform value in `[0, bound)` (`bound ≥ 1`) by rejection, unbiased.
fn below<R: RngCore + CryptoRng>(rng: &mut R, bound: u64) -> u64 {
    let zone = u64::MAX - u64::MAX % bound;
    loop {
        let v = rng.next_u64();
        if v < zone {
            return v % bound;
        }
    }
}

/// A centred discrete Gaussian sampler over the integers, tail-cut at `6σ`.
#[derive(Clone, Debug)]
pub struct DiscreteGaussian {
    sigma: f64,
    bound: i64,
    /// `thresholds[k] = ⌊2^64 · P(|x| ≤ k)⌋` for `k < bound`.
    thresholds: Vec<u64>,
}

impl DiscreteGaussian {
    /// A sampler for standard deviation `sigma` (must be positive and finite).
    pub fn new(sigma: f64) -> Option<Self> {
        if !(sigma.is_finite() && sigma > 0.0 && sigma < 1e6) {
            return None;
        }
        let bound = (6.0 * sigma).ceil() as i64;
        let weight = |k: i64| (-((k * k) as f64) / (2.0 * sigma * sigma)).exp();
        let total: f64 = (-bound..=bound).map(weight).sum();
        let mut cum = 0.0;
        let mut thresholds = Vec::with_capacity(bound as usize);
        for k in 0..bound {
            cum += if k == 0 { weight(0) } else { 2.0 * weight(k) } / total;
            thresholds.push((cum * 18_446_744_073_709_551_616.0).min(u64::MAX as f64) as u64);
        }
        Some(Self {
            sigma,
            bound,
            thresholds,
        })
    }

    /// The standard deviation.
    pub fn sigma(&self) -> f64 {
        self.sigma
    }

    /// The largest absolute value produced.
    pub fn bound(&self) -> i64 {
        self.bound
    }

    /// The exact probability of `k` under this (tail-cut) distribution.
    pub fn probability(&self, k: i64) -> f64 {
        if k.abs() > self.bound {
            return 0.0;
        }
        let weight = |k: i64| (-((k * k) as f64) / (2.0 * self.sigma * self.sigma)).exp();
        let total: f64 = (-self.bound..=self.bound).map(weight).sum();
        weight(k) / total
    }

    /// Draws one sample. The table scan touches every entry (no data-dependent branch).
    pub fn sample<R: RngCore + CryptoRng>(&self, rng: &mut R) -> i64 {
        let u = rng.next_u64();
        let mut magnitude = 0i64;
        for &t in &self.thresholds {
            magnitude += i64::from(u >= t);
        }
        let sign_bit = (rng.next_u32() & 1) as i64; // 0 or 1
                                                    // (1 - 2·sign)·magnitude; zero stays zero.
        magnitude * (1 - 2 * sign_bit)
    }

    /// Fills `out` with samples.
    pub fn fill<R: RngCore + CryptoRng>(&self, rng: &mut R, out: &mut [i64]) {
        for o in out.iter_mut() {
            *o = self.sample(rng);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    #[test]
    fn sparse_ternary_has_its_weight_at_uniform_positions() {
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let n = 64;
        let mut hits = vec![0u32; n];
        let (mut plus, mut minus) = (0u32, 0u32);
        for _ in 0..4000 {
            let mut v = vec![7i64; n];
            sparse_ternary(&mut rng, 8, &mut v);
            assert_eq!(v.iter().filter(|&&x| x != 0).count(), 8);
            assert!(v.iter().all(|&x| (-1..=1).contains(&x)));
            for (h, &x) in hits.iter_mut().zip(&v) {
                *h += u32::from(x != 0);
                plus += u32::from(x == 1);
                minus += u32::from(x == -1);
            }
        }
        // Each position is hit with probability 8/64: 500 of 4000 expected.
        assert!(hits.iter().all(|&h| (380..=620).contains(&h)), "{hits:?}");
        assert!(plus.abs_diff(minus) < 600, "{plus} vs {minus}");
    }

    /// Pearson χ² statistic of observed counts against expected probabilities.
    fn chi_square(counts: &[u64], probs: &[f64], total: u64) -> f64 {
        counts
            .iter()
            .zip(probs)
            .map(|(&c, &p)| {
                let e = p * total as f64;
                (c as f64 - e).powi(2) / e
            })
            .sum()
    }

    /// A generous upper critical value for χ² with `df` degrees of freedom (p ≈ 1e-6).
    fn critical(df: usize) -> f64 {
        let df = df as f64;
        df + 7.0 * (2.0 * df).sqrt()
    }

    #[test]
    fn uniform_is_uniform() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let m = Modulus::new(97).unwrap();
        let mut out = vec![0u64; 200_000];
        uniform_mod(&mut rng, &m, &mut out);
        let mut counts = vec![0u64; 97];
        out.iter().for_each(|&x| counts[x as usize] += 1);
        let stat = chi_square(&counts, &[1.0 / 97.0; 97], 200_000);
        assert!(stat < critical(96), "χ² = {stat}");
        // A biased sampler (v mod q on 7-bit values) must fail the same test.
        let biased: Vec<u64> = (0..200_000)
            .map(|_| (rng.next_u32() & 127) as u64 % 97)
            .collect();
        let mut bc = vec![0u64; 97];
        biased.iter().for_each(|&x| bc[x as usize] += 1);
        assert!(chi_square(&bc, &[1.0 / 97.0; 97], 200_000) > critical(96));
    }

    #[test]
    fn ternary_is_uniform() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let mut out = vec![0i64; 300_000];
        ternary(&mut rng, &mut out);
        let mut counts = [0u64; 3];
        out.iter().for_each(|&x| counts[(x + 1) as usize] += 1);
        let stat = chi_square(&counts, &[1.0 / 3.0; 3], 300_000);
        assert!(stat < critical(2), "χ² = {stat}");
    }

    #[test]
    fn gaussian_matches_exact_distribution() {
        let g = DiscreteGaussian::new(DEFAULT_SIGMA).unwrap();
        assert_eq!(g.bound(), 20);
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let total = 400_000u64;
        let mut counts = std::collections::BTreeMap::new();
        let mut sum = 0i64;
        let mut sumsq = 0f64;
        for _ in 0..total {
            let x = g.sample(&mut rng);
            assert!(x.abs() <= 20);
            sum += x;
            sumsq += (x * x) as f64;
            *counts.entry(x).or_insert(0u64) += 1;
        }
        // Pool the tails (|x| ≥ 10) so every expected count is large.
        let mut obs = Vec::new();
        let mut probs = Vec::new();
        let tail = |c: &std::collections::BTreeMap<i64, u64>, neg: bool| -> u64 {
            c.iter()
                .filter(|(&k, _)| if neg { k <= -10 } else { k >= 10 })
                .map(|(_, &v)| v)
                .sum()
        };
        obs.push(tail(&counts, true));
        probs.push((10..=20).map(|k| g.probability(-k)).sum());
        for k in -9..=9 {
            obs.push(*counts.get(&k).unwrap_or(&0));
            probs.push(g.probability(k));
        }
        obs.push(tail(&counts, false));
        probs.push((10..=20).map(|k| g.probability(k)).sum());
        let stat = chi_square(&obs, &probs, total);
        assert!(stat < critical(obs.len() - 1), "χ² = {stat}");
        let mean = sum as f64 / total as f64;
        let sd = (sumsq / total as f64 - mean * mean).sqrt();
        assert!(mean.abs() < 0.05, "mean {mean}");
        assert!((sd - 3.2).abs() < 0.05, "σ {sd}");
    }

    #[test]
    fn gaussian_rejects_bad_sigma() {
        assert!(DiscreteGaussian::new(0.0).is_none());
        assert!(DiscreteGaussian::new(f64::NAN).is_none());
    }
}
