//! Privacy accounting: what a sequence of releases costs in total.
//!
//! - **Pure ε-DP**: costs add up (sequential composition).
//! - **Approximate (ε, δ)-DP**: basic composition adds both; advanced composition
//!   (Dwork–Rothblum–Vadhan) trades a little δ for much less ε over many releases.
//! - **zCDP (ρ)**: ρ adds up, and converts to (ε, δ) with `ε = ρ + 2√(ρ ln(1/δ))`
//!   (Bun–Steinke 2016), which is how Gaussian noise composes best.
//! - **Parallel composition**: releases over disjoint groups of individuals cost the maximum,
//!   not the sum.

use crate::error::{delta, positive, DpError, Result};

/// What one release costs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Cost {
    /// Pure ε-differential privacy.
    Pure {
        /// ε.
        epsilon: f64,
    },
    /// Approximate (ε, δ)-differential privacy.
    Approx {
        /// ε.
        epsilon: f64,
        /// δ.
        delta: f64,
    },
    /// ρ-zero-concentrated differential privacy.
    Zcdp {
        /// ρ.
        rho: f64,
    },
}

impl Cost {
    /// The (ε, δ) this cost amounts to; zCDP costs are converted at `delta_for_zcdp`.
    pub fn to_approx(&self, delta_for_zcdp: f64) -> Result<(f64, f64)> {
        match *self {
            Cost::Pure { epsilon } => Ok((epsilon, 0.0)),
            Cost::Approx { epsilon, delta } => Ok((epsilon, delta)),
            Cost::Zcdp { rho } => Ok((zcdp_to_epsilon(rho, delta_for_zcdp)?, delta_for_zcdp)),
        }
    }
}

/// `ε = ρ + 2√(ρ ln(1/δ))`: the (ε, δ) guarantee implied by ρ-zCDP.
pub fn zcdp_to_epsilon(rho: f64, delta_: f64) -> Result<f64> {
    if !(rho.is_finite() && rho >= 0.0) {
        return Err(DpError::InvalidParameter(format!(
            "ρ must be finite and non-negative, got {rho}"
        )));
    }
    let d = delta("δ", delta_)?;
    if d == 0.0 {
        return Err(DpError::InvalidParameter(
            "zCDP implies (ε, δ)-DP only for δ > 0".into(),
        ));
    }
    Ok(rho + 2.0 * (rho * (1.0 / d).ln()).sqrt())
}

/// The largest ρ whose (ε, δ) conversion stays within `epsilon` (inverse of
/// [`zcdp_to_epsilon`]): `√ρ = √(L + ε) − √L` with `L = ln(1/δ)`.
pub fn epsilon_to_zcdp(epsilon: f64, delta_: f64) -> Result<f64> {
    positive("ε", epsilon)?;
    let d = delta("δ", delta_)?;
    if d == 0.0 {
        return Err(DpError::InvalidParameter(
            "δ must be positive to use zCDP".into(),
        ));
    }
    let l = (1.0 / d).ln();
    let r = (l + epsilon).sqrt() - l.sqrt();
    Ok(r * r)
}

/// Basic sequential composition: sums of ε and of δ.
pub fn compose_basic(costs: &[(f64, f64)]) -> (f64, f64) {
    costs
        .iter()
        .fold((0.0, 0.0), |(e, d), (ce, cd)| (e + ce, d + cd))
}

/// Advanced composition of `k` releases that are each (ε, δ)-DP: for any `slack` δ' > 0 the
/// total is `(ε√(2k ln(1/δ')) + kε(e^ε − 1), kδ + δ')`. Returns whichever of this and basic
/// composition has the smaller ε.
pub fn compose_advanced(k: usize, epsilon: f64, delta_: f64, slack: f64) -> Result<(f64, f64)> {
    positive("ε", epsilon)?;
    delta("δ", delta_)?;
    let s = delta("δ'", slack)?;
    if s == 0.0 {
        return Err(DpError::InvalidParameter(
            "advanced composition needs δ' > 0".into(),
        ));
    }
    let kf = k as f64;
    let adv = epsilon * (2.0 * kf * (1.0 / s).ln()).sqrt() + kf * epsilon * epsilon.exp_m1();
    let basic = kf * epsilon;
    if adv < basic {
        Ok((adv, kf * delta_ + s))
    } else {
        Ok((basic, kf * delta_))
    }
}

/// Parallel composition over disjoint groups: the maximum ε and the maximum δ.
pub fn compose_parallel(costs: &[(f64, f64)]) -> (f64, f64) {
    costs.iter().fold((0.0f64, 0.0f64), |(e, d), (ce, cd)| {
        (e.max(*ce), d.max(*cd))
    })
}

/// Accumulates costs of one kind and reports the total.
#[derive(Clone, Debug, Default)]
pub struct Accountant {
    pure: f64,
    approx: Vec<(f64, f64)>,
    rho: f64,
}

impl Accountant {
    /// An empty accountant.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a release.
    pub fn record(&mut self, cost: Cost) {
        match cost {
            Cost::Pure { epsilon } => self.pure += epsilon,
            Cost::Approx { epsilon, delta } => self.approx.push((epsilon, delta)),
            Cost::Zcdp { rho } => self.rho += rho,
        }
    }

    /// The total as (ε, δ): pure costs and approximate costs compose basically, zCDP costs
    /// compose in ρ and are converted once at `delta_for_zcdp`.
    pub fn total(&self, delta_for_zcdp: f64) -> Result<(f64, f64)> {
        let (ae, ad) = compose_basic(&self.approx);
        let (ze, zd) = if self.rho > 0.0 {
            (zcdp_to_epsilon(self.rho, delta_for_zcdp)?, delta_for_zcdp)
        } else {
            (0.0, 0.0)
        };
        Ok((self.pure + ae + ze, ad + zd))
    }

    /// Total ρ of the zCDP releases.
    pub fn rho(&self) -> f64 {
        self.rho
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zcdp_conversion_round_trips() {
        for (eps, d) in [(1.0, 1e-6), (0.1, 1e-9), (5.0, 1e-5)] {
            let rho = epsilon_to_zcdp(eps, d).unwrap();
            assert!((zcdp_to_epsilon(rho, d).unwrap() - eps).abs() < 1e-12);
        }
        assert!(zcdp_to_epsilon(1.0, 0.0).is_err());
        assert!(epsilon_to_zcdp(-1.0, 1e-6).is_err());
    }

    #[test]
    fn advanced_composition_beats_basic_for_many_small_releases() {
        let (e, d) = compose_advanced(1000, 0.01, 0.0, 1e-6).unwrap();
        assert!(e < 10.0 * 0.25, "ε = {e}");
        assert!((d - 1e-6).abs() < 1e-18);
        // For few large releases basic composition is returned.
        let (e, d) = compose_advanced(2, 1.0, 1e-7, 1e-6).unwrap();
        assert_eq!((e, d), (2.0, 2e-7));
    }

    #[test]
    fn accountant_totals() {
        let mut a = Accountant::new();
        a.record(Cost::Pure { epsilon: 0.5 });
        a.record(Cost::Approx {
            epsilon: 0.25,
            delta: 1e-7,
        });
        a.record(Cost::Zcdp { rho: 0.01 });
        a.record(Cost::Zcdp { rho: 0.01 });
        let (e, d) = a.total(1e-6).unwrap();
        let z = zcdp_to_epsilon(0.02, 1e-6).unwrap();
        assert!((e - (0.75 + z)).abs() < 1e-12);
        assert!((d - (1e-7 + 1e-6)).abs() < 1e-18);
        assert_eq!(compose_parallel(&[(1.0, 0.0), (0.5, 1e-6)]), (1.0, 1e-6));
    }
}
