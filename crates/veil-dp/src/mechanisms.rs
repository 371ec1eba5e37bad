//! Mechanisms, each carrying its privacy map: a mechanism is built from the query's
//! sensitivity and the privacy it may spend, and reports its [`Cost`] before anything is
//! released, so that a ledger can charge it first.

use crate::accountant::{epsilon_to_zcdp, Cost};
use crate::error::{positive, DpError, Result};
use crate::noise::{bernoulli, discrete_gaussian, discrete_laplace, Grid};

/// Snaps `value` to the grid, adds integer noise in grid units, and maps back.
fn release_on_grid(grid: Grid, value: f64, noise: impl FnOnce() -> Result<i64>) -> Result<f64> {
    if !value.is_finite() {
        // No value in the message: it is computed from the data.
        return Err(DpError::InvalidParameter(
            "cannot release a non-finite value (NaN or infinity)".into(),
        ));
    }
    // Never an error for a finite value, whatever its size: whether a release fails must
    // not depend on the data (an error at 2^52 grid steps told an analyst that a count was
    // above 65,536 at large ε). Values beyond ±2^120 steps are clamped, which moves
    // neighbouring values no further apart, so the guarantee holds.
    let n = grid.snap_clamped(value);
    Ok(grid.value_wide(n.saturating_add(i128::from(noise()?))))
}

/// The Laplace mechanism in its floating-point-safe form: discrete Laplace noise on a grid
/// (integer queries: no grid at all). ε-DP for queries of L1 sensitivity `sensitivity`.
#[derive(Clone, Debug)]
pub struct LaplaceMechanism {
    sensitivity: f64,
    epsilon: f64,
    grid: Grid,
    coordinates: u64,
}

impl LaplaceMechanism {
    /// A mechanism spending `epsilon` on a query of L1 sensitivity `sensitivity`.
    pub fn new(sensitivity: f64, epsilon: f64) -> Result<Self> {
        Self::for_vector(sensitivity, epsilon, 1)
    }

    /// A mechanism spending `epsilon` on a vector query (one value per group, each released
    /// with [`LaplaceMechanism::release`]) of L1 sensitivity `sensitivity`, where one person
    /// changes at most `coordinates` of the values. Snapping to the grid can move each changed
    /// value by up to one step, so the noise covers `sensitivity + coordinates` steps, not
    /// `sensitivity + 1`.
    pub fn for_vector(sensitivity: f64, epsilon: f64, coordinates: u64) -> Result<Self> {
        positive("sensitivity", sensitivity)?;
        positive("ε", epsilon)?;
        Ok(Self {
            sensitivity,
            epsilon,
            grid: Grid::for_scale(sensitivity / epsilon),
            coordinates: coordinates.max(1),
        })
    }

    /// What a release costs.
    pub fn cost(&self) -> Cost {
        Cost::Pure {
            epsilon: self.epsilon,
        }
    }

    /// Noise scale on real values: a grid step per changed value is added to the sensitivity
    /// because snapping to the grid can move each value by up to one step.
    pub fn scale(&self) -> f64 {
        (self.sensitivity + self.coordinates as f64 * self.grid.spacing()) / self.epsilon
    }

    /// The grid values are snapped to before noise is added.
    pub fn grid(&self) -> Grid {
        self.grid
    }

    /// Releases a real value.
    pub fn release(&self, value: f64) -> Result<f64> {
        release_on_grid(self.grid, value, || {
            discrete_laplace(self.scale() / self.grid.spacing())
        })
    }

    /// Releases an integer value (for integer sensitivity, e.g. counts): no grid needed.
    pub fn release_integer(&self, value: i64) -> Result<i64> {
        let z = discrete_laplace(self.sensitivity.ceil() / self.epsilon)?;
        Ok(value.saturating_add(z))
    }

    /// Half-width `t` of the `1 − alpha` confidence interval: `P(|noise| > t) ≤ alpha`.
    pub fn confidence_half_width(&self, alpha: f64) -> f64 {
        self.scale() * (1.0 / alpha).ln()
    }
}

/// The Gaussian mechanism with discrete Gaussian noise: ρ-zCDP for queries of L2 sensitivity
/// `sensitivity`, with `σ = sensitivity / √(2ρ)`.
#[derive(Clone, Debug)]
pub struct GaussianMechanism {
    sensitivity: f64,
    rho: f64,
    grid: Grid,
    coordinates: u64,
}

impl GaussianMechanism {
    /// A mechanism spending ρ (zCDP).
    pub fn from_rho(sensitivity: f64, rho: f64) -> Result<Self> {
        Self::for_vector(sensitivity, rho, 1)
    }

    /// A mechanism spending ρ on a vector query (one value per group) of L2 sensitivity
    /// `sensitivity`, where one person changes at most `coordinates` of the values. Snapping
    /// moves each changed value by up to one grid step, which adds at most `√coordinates`
    /// steps to the L2 distance (triangle inequality): σ covers `sensitivity + √coordinates`
    /// steps.
    pub fn for_vector(sensitivity: f64, rho: f64, coordinates: u64) -> Result<Self> {
        positive("sensitivity", sensitivity)?;
        positive("ρ", rho)?;
        let sigma = sensitivity / (2.0 * rho).sqrt();
        Ok(Self {
            sensitivity,
            rho,
            grid: Grid::for_scale(sigma),
            coordinates: coordinates.max(1),
        })
    }

    /// A mechanism whose zCDP guarantee converts to (ε, δ).
    pub fn from_epsilon_delta(sensitivity: f64, epsilon: f64, delta: f64) -> Result<Self> {
        Self::from_rho(sensitivity, epsilon_to_zcdp(epsilon, delta)?)
    }

    /// What a release costs.
    pub fn cost(&self) -> Cost {
        Cost::Zcdp { rho: self.rho }
    }

    /// Noise standard deviation on real values (grid step added to the sensitivity).
    pub fn sigma(&self) -> f64 {
        (self.sensitivity + (self.coordinates as f64).sqrt() * self.grid.spacing())
            / (2.0 * self.rho).sqrt()
    }

    /// The grid values are snapped to before noise is added.
    pub fn grid(&self) -> Grid {
        self.grid
    }

    /// A `t` with `P(noise ≥ t) ≤ p`: the discrete Gaussian is σ²-subgaussian (Canonne,
    /// Kamath, Steinke 2020), so `t = σ √(2 ln(1/p))`.
    pub fn upper_tail(&self, p: f64) -> f64 {
        self.sigma() * (2.0 * (1.0 / p).ln().max(0.0)).sqrt()
    }

    /// Releases a real value.
    pub fn release(&self, value: f64) -> Result<f64> {
        release_on_grid(self.grid, value, || {
            discrete_gaussian(self.sigma() / self.grid.spacing())
        })
    }

    /// Half-width of the 95% confidence interval (1.96 σ).
    pub fn confidence_half_width_95(&self) -> f64 {
        1.96 * self.sigma()
    }
}

/// Randomized response on one bit: reports the truth with probability `e^ε / (1 + e^ε)`.
#[derive(Clone, Debug)]
pub struct RandomizedResponse {
    keep: f64,
}

impl RandomizedResponse {
    /// ε-DP randomized response.
    pub fn new(epsilon: f64) -> Result<Self> {
        positive("ε", epsilon)?;
        Ok(Self {
            keep: 1.0 / (1.0 + (-epsilon).exp()),
        })
    }

    /// Probability of reporting the true bit.
    pub fn keep_probability(&self) -> f64 {
        self.keep
    }

    /// What a response costs: computed from the probability actually used.
    pub fn cost(&self) -> Cost {
        Cost::Pure {
            epsilon: (self.keep / (1.0 - self.keep)).ln(),
        }
    }

    /// Randomizes one bit.
    pub fn randomize(&self, bit: bool) -> Result<bool> {
        Ok(if bernoulli(self.keep)? { bit } else { !bit })
    }
}

/// Report-noisy-max: the index of the largest score after adding discrete Laplace noise of
/// scale `2Δ/ε` to each (ε-DP when every score has sensitivity Δ), the exponential
/// mechanism's practical form.
#[derive(Clone, Debug)]
pub struct ReportNoisyMax {
    sensitivity: f64,
    epsilon: f64,
}

impl ReportNoisyMax {
    /// A selection spending ε on scores of sensitivity `sensitivity`.
    pub fn new(sensitivity: f64, epsilon: f64) -> Result<Self> {
        positive("sensitivity", sensitivity)?;
        positive("ε", epsilon)?;
        Ok(Self {
            sensitivity,
            epsilon,
        })
    }

    /// What a selection costs.
    pub fn cost(&self) -> Cost {
        Cost::Pure {
            epsilon: self.epsilon,
        }
    }

    /// The selected index (`None` for no candidates).
    pub fn select(&self, scores: &[f64]) -> Result<Option<usize>> {
        let noise = LaplaceMechanism::new(2.0 * self.sensitivity, self.epsilon)?;
        let mut best: Option<(usize, f64)> = None;
        for (i, &s) in scores.iter().enumerate() {
            let noisy = noise.release(s)?;
            if best.is_none_or(|(_, b)| noisy > b) {
                best = Some((i, noisy));
            }
        }
        Ok(best.map(|(i, _)| i))
    }
}

/// A DP quantile over declared bounds: `candidates` evenly spaced points in
/// `[lower, upper]`, scored by `−|#{x < c} − q·n|` (sensitivity 1 under adding or removing
/// one record), selected by [`ReportNoisyMax`]. Values outside the bounds are clamped.
pub fn quantile(
    values: &[f64],
    q: f64,
    lower: f64,
    upper: f64,
    candidates: usize,
    epsilon: f64,
) -> Result<f64> {
    if !(0.0..=1.0).contains(&q) {
        return Err(DpError::InvalidParameter(format!(
            "quantile must be in [0, 1], got {q}"
        )));
    }
    if !(lower.is_finite() && upper.is_finite() && lower < upper) {
        return Err(DpError::InvalidParameter(format!(
            "bounds [{lower}, {upper}] are not a finite interval"
        )));
    }
    if candidates < 2 {
        return Err(DpError::InvalidParameter(
            "at least two candidates are needed".into(),
        ));
    }
    let mut sorted: Vec<f64> = values
        .iter()
        .filter(|v| !v.is_nan())
        .map(|v| v.clamp(lower, upper))
        .collect();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len() as f64;
    let step = (upper - lower) / (candidates - 1) as f64;
    let points: Vec<f64> = (0..candidates).map(|i| lower + step * i as f64).collect();
    let scores: Vec<f64> = points
        .iter()
        .map(|&c| {
            let below = sorted.partition_point(|&x| x < c) as f64;
            -(below - q * n).abs()
        })
        .collect();
    let idx = ReportNoisyMax::new(1.0, epsilon)?
        .select(&scores)?
        .ok_or(DpError::Internal("no candidates"))?;
    Ok(points[idx])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two neighbouring vectors, each value moved by `changes[i]`, placed on the grid where
    /// snapping adds the most: returns the snapped L1 and L2 distances in grid steps.
    fn worst_snapping(grid: Grid, changes: &[f64]) -> (f64, f64) {
        let s = grid.spacing();
        let (mut l1, mut l2) = (0.0, 0.0);
        for c in changes {
            let steps = (0..64)
                .map(|j| {
                    let x = f64::from(j) * s / 64.0;
                    (grid.snap_clamped(x + c) - grid.snap_clamped(x)).abs() as f64
                })
                .fold(0.0, f64::max);
            l1 += steps;
            l2 += steps * steps;
        }
        (l1, l2.sqrt())
    }

    /// The audit of the SQL engine's grouped queries: one person changes up to L0 groups'
    /// values, and rounding each to the grid moves each by up to a step. A mechanism sized
    /// for one step (the old `scale`) covered `sensitivity + 1` steps while snapped
    /// neighbours could be almost `sensitivity + L0` apart: ε was exceeded for L0 ≥ 2.
    #[test]
    fn grid_rounding_of_every_changed_value_is_covered() {
        for l0 in [1u64, 2, 5, 40] {
            // 10.3 is no multiple of the grid step: every changed value can gain a step.
            let changes = vec![10.3; l0 as usize];
            let l1_sens: f64 = changes.iter().sum();
            let eps = 0.7;
            let m = LaplaceMechanism::for_vector(l1_sens, eps, l0).unwrap();
            let s = m.grid().spacing();
            assert!((10.3 / s).fract() > 0.01);
            let (l1, _) = worst_snapping(m.grid(), &changes);
            let covered = m.scale() * eps / s;
            assert!(
                l1 <= covered * (1.0 + 1e-12),
                "L0 {l0}: {l1} steps > {covered}"
            );

            let l2_sens = 10.3 * (l0 as f64).sqrt();
            let rho = 0.3;
            let g = GaussianMechanism::for_vector(l2_sens, rho, l0).unwrap();
            let s = g.grid().spacing();
            let (_, l2) = worst_snapping(g.grid(), &changes);
            let covered = g.sigma() * (2.0f64 * rho).sqrt() / s;
            assert!(
                l2 <= covered * (1.0 + 1e-12),
                "L0 {l0}: {l2} steps > {covered}"
            );
        }
    }

    #[test]
    fn laplace_noise_has_the_right_spread_and_cost() {
        let m = LaplaceMechanism::new(1.0, 0.5).unwrap();
        assert_eq!(m.cost(), Cost::Pure { epsilon: 0.5 });
        let n = 4000;
        let outs: Vec<f64> = (0..n).map(|_| m.release(10.0).unwrap() - 10.0).collect();
        let mean = outs.iter().sum::<f64>() / n as f64;
        let var = outs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        // Laplace(b = 2): variance 2b² = 8.
        assert!(mean.abs() < 0.25, "mean {mean}");
        assert!((var - 8.0).abs() < 1.2, "variance {var}");
        let t = m.confidence_half_width(0.05);
        let outside = outs.iter().filter(|x| x.abs() > t).count() as f64 / n as f64;
        assert!(outside < 0.07, "{outside}");
        assert!(LaplaceMechanism::new(1.0, 0.0).is_err());
        assert!(m.release(f64::INFINITY).is_err());
    }

    #[test]
    fn gaussian_noise_has_the_right_spread() {
        let m = GaussianMechanism::from_rho(2.0, 0.5).unwrap();
        let n = 4000;
        let outs: Vec<f64> = (0..n).map(|_| m.release(0.0).unwrap()).collect();
        let var = outs.iter().map(|x| x * x).sum::<f64>() / n as f64;
        // σ = 2/√1 = 2 → variance 4.
        assert!((var - 4.0).abs() < 0.6, "variance {var}");
        let g = GaussianMechanism::from_epsilon_delta(1.0, 1.0, 1e-6).unwrap();
        match g.cost() {
            Cost::Zcdp { rho } => {
                assert!((crate::accountant::zcdp_to_epsilon(rho, 1e-6).unwrap() - 1.0).abs() < 1e-9)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn randomized_response_keeps_the_truth_at_the_right_rate() {
        let rr = RandomizedResponse::new(1.0).unwrap();
        match rr.cost() {
            Cost::Pure { epsilon } => assert!((epsilon - 1.0).abs() < 1e-12),
            other => panic!("{other:?}"),
        }
        let n = 20_000;
        let kept = (0..n).filter(|_| rr.randomize(true).unwrap()).count() as f64 / n as f64;
        let p = rr.keep_probability();
        assert!((kept - p).abs() < 4.5 * (p * (1.0 - p) / n as f64).sqrt());
    }

    #[test]
    fn noisy_max_and_quantiles_find_the_answer() {
        let rnm = ReportNoisyMax::new(1.0, 5.0).unwrap();
        let wins = (0..200)
            .filter(|_| rnm.select(&[1.0, 50.0, 3.0]).unwrap() == Some(1))
            .count();
        assert!(wins > 190);
        assert_eq!(rnm.select(&[]).unwrap(), None);
        let values: Vec<f64> = (0..10_000).map(|i| (i % 100) as f64).collect();
        let med = quantile(&values, 0.5, 0.0, 100.0, 101, 1.0).unwrap();
        assert!((med - 50.0).abs() <= 3.0, "median {med}");
        let p90 = quantile(&values, 0.9, 0.0, 100.0, 101, 1.0).unwrap();
        assert!((p90 - 90.0).abs() <= 3.0, "p90 {p90}");
        assert!(quantile(&values, 1.5, 0.0, 1.0, 10, 1.0).is_err());
        assert!(quantile(&values, 0.5, 1.0, 0.0, 10, 1.0).is_err());
    }
}
