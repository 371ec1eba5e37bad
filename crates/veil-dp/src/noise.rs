//! Exact, floating-point-safe noise.
//!
//! Textbook Laplace noise computed as `b·ln(u)` in floating point leaks the true value through
//! the pattern of representable outputs (Mironov, CCS 2012). Veil never does that: noise is an
//! **integer** drawn exactly from the discrete Laplace or discrete Gaussian distribution by
//! OpenDP's samplers (Canonne–Kamath–Steinke 2020, arbitrary-precision rationals, randomness
//! from OpenSSL's `RAND_priv_bytes`), added to the value snapped to a grid of spacing `2^k`.
//! The rounding to the grid can move a value by at most one grid step, which the mechanisms
//! add to the sensitivity.

use dashu::integer::IBig;
use dashu::rational::RBig;

use crate::error::{positive, DpError, Result};

fn rational(name: &str, x: f64) -> Result<RBig> {
    positive(name, x)?;
    RBig::try_from(x)
        .map_err(|_| DpError::InvalidParameter(format!("{name} = {x} is not representable")))
}

fn to_i64(z: IBig) -> Result<i64> {
    i64::try_from(z).map_err(|_| DpError::Sampling("noise sample exceeds 64 bits".into()))
}

/// One sample of the discrete Laplace distribution `P(x) ∝ exp(−|x|/scale)` over the integers.
pub fn discrete_laplace(scale: f64) -> Result<i64> {
    let s = rational("scale", scale)?;
    to_i64(
        opendp::traits::samplers::sample_discrete_laplace(s)
            .map_err(|e| DpError::Sampling(e.to_string()))?,
    )
}

/// One sample of the discrete Gaussian distribution `P(x) ∝ exp(−x²/(2σ²))` over the integers.
pub fn discrete_gaussian(sigma: f64) -> Result<i64> {
    let s = rational("sigma", sigma)?;
    to_i64(
        opendp::traits::samplers::sample_discrete_gaussian(s)
            .map_err(|e| DpError::Sampling(e.to_string()))?,
    )
}

/// `true` with probability exactly `p` (the binary expansion of the `f64`), in constant time.
pub fn bernoulli(p: f64) -> Result<bool> {
    if !(0.0..=1.0).contains(&p) {
        return Err(DpError::InvalidParameter(format!(
            "probability must be in [0, 1], got {p}"
        )));
    }
    opendp::traits::samplers::sample_bernoulli_float(p, true)
        .map_err(|e| DpError::Sampling(e.to_string()))
}

/// A grid of spacing `2^k` for releasing real values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grid {
    /// The exponent `k`.
    pub exponent: i32,
}

impl Grid {
    /// A grid fine enough for noise of the given scale: spacing about `scale / 2^20`.
    pub fn for_scale(scale: f64) -> Self {
        let k = if scale.is_finite() && scale > 0.0 {
            scale.log2().floor() as i32 - 20
        } else {
            -20
        };
        Self {
            exponent: k.clamp(-1000, 1000),
        }
    }

    /// The spacing `2^k`.
    pub fn spacing(&self) -> f64 {
        (f64::from(self.exponent)).exp2()
    }

    /// `round(x / 2^k)` as an integer.
    pub fn snap(&self, x: f64) -> Result<i64> {
        let v = (x / self.spacing()).round();
        if !v.is_finite() || v.abs() >= 2f64.powi(52) {
            return Err(DpError::OutOfRange {
                value: x,
                grid_exponent: self.exponent,
            });
        }
        Ok(v as i64)
    }

    /// `n · 2^k` (exact while `|n| < 2^53`).
    pub fn value(&self, n: i64) -> f64 {
        n as f64 * self.spacing()
    }

    /// Largest magnitude, in grid steps, that [`Grid::snap_clamped`] keeps.
    pub const MAX_STEPS: f64 = (1u128 << 120) as f64;

    /// `round(x / 2^k)` as a wide integer, clamped to ±[`Grid::MAX_STEPS`]: never an error
    /// for a finite `x` (NaN snaps to 0; callers refuse it first). Dividing by a power of
    /// two is exact, so the rounding is the only change; clamping is 1-Lipschitz.
    pub fn snap_clamped(&self, x: f64) -> i128 {
        let v = (x / self.spacing()).round();
        if v.is_nan() {
            return 0;
        }
        v.clamp(-Self::MAX_STEPS, Self::MAX_STEPS) as i128
    }

    /// `n · 2^k`: the exact integer `n` rounded to the nearest double, then scaled by a
    /// power of two — post-processing of an exact value.
    pub fn value_wide(&self, n: i128) -> f64 {
        n as f64 * self.spacing()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kolmogorov–Smirnov distance between the empirical CDF of integer samples and `cdf`.
    fn ks_distance(samples: &mut [i64], cdf: impl Fn(i64) -> f64) -> f64 {
        samples.sort_unstable();
        let n = samples.len() as f64;
        let mut d: f64 = 0.0;
        let mut i = 0;
        while i < samples.len() {
            let x = samples[i];
            let mut j = i;
            while j < samples.len() && samples[j] == x {
                j += 1;
            }
            let below = i as f64 / n;
            let upto = j as f64 / n;
            d = d.max((cdf(x) - upto).abs()).max((cdf(x - 1) - below).abs());
            i = j;
        }
        d
    }

    #[test]
    fn discrete_laplace_matches_its_distribution() {
        let scale = 3.0f64;
        let n = 20_000;
        let mut s: Vec<i64> = (0..n).map(|_| discrete_laplace(scale).unwrap()).collect();
        let a = (-1.0 / scale).exp();
        // P(X ≤ x) for the two-sided geometric distribution with parameter a.
        let cdf = |x: i64| {
            if x < 0 {
                a.powi((-x) as i32) / (1.0 + a)
            } else {
                1.0 - a.powi((x + 1) as i32) / (1.0 + a)
            }
        };
        let d = ks_distance(&mut s, cdf);
        // KS critical value at α = 10⁻⁶ is about 2.7/sqrt(n) (the noise is not seedable: keep
        // the false-alarm rate negligible).
        assert!(d < 2.7 / (n as f64).sqrt(), "KS distance {d}");
        // The test has power: the same samples are far from a Laplace of scale 4.5.
        let b = (-1.0 / 4.5f64).exp();
        let wrong = |x: i64| {
            if x < 0 {
                b.powi((-x) as i32) / (1.0 + b)
            } else {
                1.0 - b.powi((x + 1) as i32) / (1.0 + b)
            }
        };
        let dw = ks_distance(&mut s, wrong);
        assert!(
            dw > 2.7 / (n as f64).sqrt(),
            "KS distance to the wrong law {dw}"
        );
    }

    #[test]
    fn discrete_gaussian_matches_its_distribution() {
        let sigma = 4.0f64;
        let n = 20_000;
        let mut s: Vec<i64> = (0..n).map(|_| discrete_gaussian(sigma).unwrap()).collect();
        let weights: Vec<f64> = (-60..=60)
            .map(|x: i64| (-((x * x) as f64) / (2.0 * sigma * sigma)).exp())
            .collect();
        let total: f64 = weights.iter().sum();
        let cdf = |x: i64| -> f64 {
            let upto = (x.clamp(-61, 60) + 60) as usize;
            weights.iter().take(upto + 1).sum::<f64>() / total
        };
        let d = ks_distance(&mut s, cdf);
        assert!(d < 2.7 / (n as f64).sqrt(), "KS distance {d}");
    }

    #[test]
    fn bernoulli_is_exact_enough_and_checks_its_input() {
        let n = 40_000;
        let hits = (0..n).filter(|_| bernoulli(0.3).unwrap()).count() as f64;
        let p = hits / n as f64;
        let se = (0.3f64 * 0.7 / n as f64).sqrt();
        assert!((p - 0.3).abs() < 4.5 * se, "{p}");
        assert!(bernoulli(1.5).is_err());
        assert!(discrete_laplace(-1.0).is_err());
        assert!(discrete_gaussian(f64::NAN).is_err());
    }

    #[test]
    fn grid_snaps_and_rejects_huge_values() {
        let g = Grid { exponent: -3 };
        assert_eq!(g.snap(1.3).unwrap(), 10);
        assert_eq!(g.value(10), 1.25);
        assert!(g.snap(1e300).is_err());
        assert_eq!(Grid::for_scale(1024.0).exponent, -10);
    }
}
