//! Polynomial approximations of activation functions for the CKKS backend.
//!
//! CKKS evaluates additions and products only, so Relu, Sigmoid, Tanh and Softplus are
//! replaced by a polynomial on an input interval `[lo, hi]` the compiler knows (declared, or
//! measured on calibration data, or propagated as intervals from the input range).
//!
//! The polynomial is the **Chebyshev interpolant** of the function at the `d + 1` Chebyshev
//! nodes of `[lo, hi]`, a near-minimax approximation (within a factor `2 + (2/π)·ln(d + 1)` of
//! the best uniform error). It is written in the variable `t = (2x − lo − hi)/(hi − lo)`, which
//! runs over `[-1, 1]`, so every power `t^j` stays bounded by 1 under encryption; the compiler
//! folds the map `x ↦ t` into the affine step before the activation. The degree is the lowest
//! whose **maximum error measured on a dense grid** of the interval ([`GRID_POINTS`] points)
//! meets the requested precision.
//!
//! **Outside `[lo, hi]` the polynomial diverges** (like `t^d`): an input there gets a wrong
//! value, not an error. Calibrated ranges are therefore widened by the calibration margin.

use crate::error::{MlError, Result};
use crate::ir::Activation;

/// Points of the uniform grid on which the approximation error is measured.
pub const GRID_POINTS: usize = 4001;

/// Power-basis coefficients larger than this (in sum of absolute values) lose too much
/// precision under CKKS (they multiply the ciphertext noise): such degrees are not used.
pub const MAX_COEFFICIENT_SUM: f64 = (1u64 << 24) as f64;

/// A polynomial standing for an activation on `[lo, hi]`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PolyApprox {
    /// The function approximated.
    pub activation: Activation,
    /// The graph node it replaces.
    pub node: String,
    /// Lower end of the input interval.
    pub lo: f64,
    /// Upper end of the input interval.
    pub hi: f64,
    /// Degree of the polynomial.
    pub degree: usize,
    /// Power-basis coefficients in `t = (2x − lo − hi)/(hi − lo)`, lowest first.
    pub coeffs: Vec<f64>,
    /// Largest `|p(x) − f(x)|` over the grid of `[lo, hi]`.
    pub max_error: f64,
    /// Smallest and largest value of the polynomial on `[lo, hi]` (grid values widened by
    /// the error).
    pub output_range: (f64, f64),
}

impl PolyApprox {
    /// The degree-`degree` Chebyshev interpolant of `activation` on `[lo, hi]`.
    pub fn fit(
        activation: Activation,
        node: &str,
        lo: f64,
        hi: f64,
        degree: usize,
    ) -> Result<Self> {
        if !(lo.is_finite() && hi.is_finite() && lo < hi) {
            return Err(MlError::Input {
                reason: format!("approximation interval [{lo}, {hi}] of node `{node}`"),
            });
        }
        let n = degree + 1;
        let half = (hi - lo) / 2.0;
        let mid = (hi + lo) / 2.0;
        // Chebyshev coefficients c_j = (2/n) Σ_k f(x_k) T_j(t_k), c_0 halved.
        let nodes: Vec<f64> = (0..n)
            .map(|k| (std::f64::consts::PI * (k as f64 + 0.5) / n as f64).cos())
            .collect();
        let values: Vec<f64> = nodes
            .iter()
            .map(|&t| activation.apply(mid + half * t))
            .collect();
        let mut cheb = vec![0.0; n];
        for (j, c) in cheb.iter_mut().enumerate() {
            let s: f64 = nodes
                .iter()
                .zip(&values)
                .map(|(&t, &f)| f * (j as f64 * t.acos()).cos())
                .sum();
            *c = 2.0 * s / n as f64;
        }
        cheb[0] /= 2.0;
        let coeffs = chebyshev_to_power(&cheb);
        let mut approx = Self {
            activation,
            node: node.to_string(),
            lo,
            hi,
            degree,
            coeffs,
            max_error: 0.0,
            output_range: (0.0, 0.0),
        };
        let (mut err, mut pmin, mut pmax) = (0.0f64, f64::INFINITY, f64::NEG_INFINITY);
        for i in 0..GRID_POINTS {
            let x = lo + (hi - lo) * i as f64 / (GRID_POINTS - 1) as f64;
            let p = approx.eval(x);
            err = err.max((p - activation.apply(x)).abs());
            pmin = pmin.min(p);
            pmax = pmax.max(p);
        }
        approx.max_error = err;
        approx.output_range = (pmin - err, pmax + err);
        Ok(approx)
    }

    /// The lowest-degree interpolant (at most `max_degree`) whose grid error is at most
    /// `precision` and whose coefficients stay below [`MAX_COEFFICIENT_SUM`].
    pub fn for_precision(
        activation: Activation,
        node: &str,
        lo: f64,
        hi: f64,
        precision: f64,
        max_degree: usize,
    ) -> Result<Self> {
        if !(precision.is_finite() && precision > 0.0) {
            return Err(MlError::Input {
                reason: format!("activation precision {precision}"),
            });
        }
        let mut best: Option<Self> = None;
        for degree in 1..=max_degree.max(1) {
            let a = Self::fit(activation, node, lo, hi, degree)?;
            if a.coefficient_sum() > MAX_COEFFICIENT_SUM {
                break;
            }
            if a.max_error <= precision {
                return Ok(a);
            }
            if best.as_ref().is_none_or(|b| a.max_error < b.max_error) {
                best = Some(a);
            }
        }
        let (d, e) = best.map_or((0, f64::INFINITY), |b| (b.degree, b.max_error));
        Err(MlError::UnsupportedUse {
            node: node.to_string(),
            op: activation.name().into(),
            reason: format!(
                "no polynomial of degree ≤ {max_degree} approximates {} on [{lo:.4}, {hi:.4}] \
                 within {precision:e} (best: error {e:.3e} at degree {d}); narrow the input \
                 range (declare it, or calibrate), relax the activation precision or allow a \
                 higher degree",
                activation.name()
            ),
        })
    }

    /// `t = (2x − lo − hi)/(hi − lo)` as `(factor, offset)`: `t = factor·x + offset`.
    pub fn input_map(&self) -> (f64, f64) {
        let s = 2.0 / (self.hi - self.lo);
        (s, -(self.hi + self.lo) / (self.hi - self.lo))
    }

    /// The polynomial at the mapped input `t` (Horner).
    pub fn eval_mapped(&self, t: f64) -> f64 {
        self.coeffs.iter().rev().fold(0.0, |acc, &c| acc * t + c)
    }

    /// The polynomial at `x` (in the activation's own input units).
    pub fn eval(&self, x: f64) -> f64 {
        let (s, o) = self.input_map();
        self.eval_mapped(s * x + o)
    }

    /// `Σ|coeffs|`: the largest value the polynomial or any partial sum of it can take on
    /// `[-1, 1]`, and the factor by which it can amplify the ciphertext noise.
    pub fn coefficient_sum(&self) -> f64 {
        self.coeffs.iter().map(|c| c.abs()).sum()
    }

    /// `(Σ coeffs²)^{1/2}`: about the factor by which the polynomial amplifies independent
    /// noise on its powers (the compiler adds its bits to the scale).
    pub fn coefficient_norm(&self) -> f64 {
        self.coeffs.iter().map(|c| c * c).sum::<f64>().sqrt()
    }

    /// Multiplicative depth of its encrypted evaluation, `⌈log2(degree + 1)⌉` (at least 1).
    pub fn depth(&self) -> usize {
        let mut d = 0;
        while (1usize << d) < self.degree + 1 {
            d += 1;
        }
        d.max(1)
    }
}

/// Converts Chebyshev coefficients to power-basis coefficients (`T_{j+1} = 2t·T_j − T_{j−1}`).
fn chebyshev_to_power(cheb: &[f64]) -> Vec<f64> {
    let n = cheb.len();
    let mut out = vec![0.0; n];
    let mut prev = vec![0.0; n]; // T_{j-1}
    let mut cur = vec![0.0; n]; // T_j
    prev[0] = 1.0;
    if n > 1 {
        cur[1] = 1.0;
    }
    for (j, &c) in cheb.iter().enumerate() {
        let t = if j == 0 { &prev } else { &cur };
        for (o, &v) in out.iter_mut().zip(t.iter()) {
            *o += c * v;
        }
        if j >= 1 && j + 1 < n {
            let mut next = vec![0.0; n];
            for k in 0..n - 1 {
                next[k + 1] += 2.0 * cur[k];
            }
            for (x, &p) in next.iter_mut().zip(&prev) {
                *x -= p;
            }
            prev = std::mem::replace(&mut cur, next);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chebyshev_basis_converts() {
        // T_3 = 4t³ − 3t.
        assert_eq!(
            chebyshev_to_power(&[0.0, 0.0, 0.0, 1.0]),
            vec![0.0, -3.0, 0.0, 4.0]
        );
        assert_eq!(chebyshev_to_power(&[2.0, 1.0]), vec![2.0, 1.0]);
    }

    #[test]
    fn degree_grows_with_precision_and_error_is_met() {
        for act in [Activation::Sigmoid, Activation::Tanh, Activation::Softplus] {
            let loose = PolyApprox::for_precision(act, "n", -4.0, 4.0, 1e-2, 31).unwrap();
            let tight = PolyApprox::for_precision(act, "n", -4.0, 4.0, 1e-4, 31).unwrap();
            assert!(loose.max_error <= 1e-2 && tight.max_error <= 1e-4);
            assert!(tight.degree > loose.degree, "{act:?}");
        }
        let relu = PolyApprox::for_precision(Activation::Relu, "n", -1.0, 1.0, 2e-2, 31).unwrap();
        assert!(relu.max_error <= 2e-2);
    }

    #[test]
    fn a_polynomial_reproduces_itself() {
        // A degree-1 fit of Relu on [0, 2] is exact.
        let a = PolyApprox::fit(Activation::Relu, "n", 0.0, 2.0, 1).unwrap();
        assert!(a.max_error < 1e-12);
        assert!((a.eval(1.5) - 1.5).abs() < 1e-12);
    }
}
