//! Local differential privacy for telemetry: each client randomizes its own data before it
//! leaves the device, so the collector is never trusted. Server-side estimators are unbiased
//! and report their standard error.
//!
//! - [`BitReporter`] / [`estimate_fraction`]: randomized response on a boolean.
//! - [`UnaryEncoder`] / [`estimate_frequencies`]: a frequency oracle over `d` categories by
//!   optimized unary encoding (Wang et al., USENIX Security 2017).
//! - [`MeanReporter`] / [`estimate_mean`]: 1-bit mean estimation of a bounded value, as in
//!   Microsoft's Windows telemetry (Ding, Kulkarni, Yekhanin, NeurIPS 2017).

use crate::error::{positive, DpError, Result};
use crate::mechanisms::RandomizedResponse;
use crate::noise::bernoulli;

/// An unbiased estimate with its standard error.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Estimate {
    /// The estimate.
    pub value: f64,
    /// Its standard error (analytic).
    pub std_error: f64,
}

impl Estimate {
    /// The 95% confidence interval `value ± 1.96·std_error`.
    pub fn ci95(&self) -> (f64, f64) {
        (
            self.value - 1.96 * self.std_error,
            self.value + 1.96 * self.std_error,
        )
    }
}

/// Client side of randomized response: reports its bit truthfully with probability
/// `e^ε/(1 + e^ε)` (the [`RandomizedResponse`] mechanism, run on the device).
#[derive(Clone, Debug)]
pub struct BitReporter {
    rr: RandomizedResponse,
}

impl BitReporter {
    /// ε-LDP reporter.
    pub fn new(epsilon: f64) -> Result<Self> {
        Ok(Self {
            rr: RandomizedResponse::new(epsilon)?,
        })
    }

    /// The randomized report of `bit`.
    pub fn report(&self, bit: bool) -> Result<bool> {
        self.rr.randomize(bit)
    }
}

/// Server side of randomized response: the fraction of true bits among the clients.
pub fn estimate_fraction(reports: &[bool], epsilon: f64) -> Result<Estimate> {
    let keep = RandomizedResponse::new(epsilon)?.keep_probability();
    let n = reports.len();
    if n == 0 {
        return Err(DpError::InvalidParameter("no reports".into()));
    }
    let f = reports.iter().filter(|&&b| b).count() as f64 / n as f64;
    let d = 2.0 * keep - 1.0;
    let value = (f - (1.0 - keep)) / d;
    // Var(f) = P(1 − P)/n with P = E[f]; estimate P by f.
    let std_error = (f * (1.0 - f) / n as f64).sqrt() / d;
    Ok(Estimate { value, std_error })
}

/// Client side of optimized unary encoding over `categories` values: the one-hot vector with
/// its own bit kept at 1 with probability 1/2 and every other bit set with probability
/// `1/(e^ε + 1)`.
#[derive(Clone, Debug)]
pub struct UnaryEncoder {
    categories: usize,
    q: f64,
}

impl UnaryEncoder {
    /// ε-LDP encoder over `categories` values.
    pub fn new(categories: usize, epsilon: f64) -> Result<Self> {
        positive("ε", epsilon)?;
        if categories < 2 {
            return Err(DpError::InvalidParameter(
                "a frequency oracle needs at least two categories".into(),
            ));
        }
        Ok(Self {
            categories,
            q: 1.0 / (epsilon.exp() + 1.0),
        })
    }

    /// The randomized report of `value` (an index below `categories`).
    pub fn report(&self, value: usize) -> Result<Vec<bool>> {
        if value >= self.categories {
            return Err(DpError::InvalidParameter(format!(
                "category {value} is not below {}",
                self.categories
            )));
        }
        (0..self.categories)
            .map(|i| bernoulli(if i == value { 0.5 } else { self.q }))
            .collect()
    }
}

/// Server side of optimized unary encoding: unbiased estimates of each category's count.
pub fn estimate_frequencies(
    reports: &[Vec<bool>],
    categories: usize,
    epsilon: f64,
) -> Result<Vec<Estimate>> {
    let q = UnaryEncoder::new(categories, epsilon)?.q;
    let n = reports.len() as f64;
    let mut ones = vec![0u64; categories];
    for r in reports {
        if r.len() != categories {
            return Err(DpError::InvalidParameter(format!(
                "a report has {} bits, expected {categories}",
                r.len()
            )));
        }
        for (c, &b) in ones.iter_mut().zip(r) {
            *c += u64::from(b);
        }
    }
    let d = 0.5 - q;
    // Variance of a count estimate is n·q(1−q)/(1/2 − q)² plus a small term in the true count.
    let std_error = (n * q * (1.0 - q)).sqrt() / d;
    Ok(ones
        .iter()
        .map(|&c| Estimate {
            value: (c as f64 - n * q) / d,
            std_error,
        })
        .collect())
}

/// Client side of 1-bit mean estimation for values in `[0, max]`: sends 1 with probability
/// `1/(e^ε+1) + (x/max)·(e^ε−1)/(e^ε+1)`.
#[derive(Clone, Debug)]
pub struct MeanReporter {
    max: f64,
    epsilon: f64,
}

impl MeanReporter {
    /// ε-LDP reporter for values in `[0, max]` (values outside are clamped).
    pub fn new(max: f64, epsilon: f64) -> Result<Self> {
        positive("max", max)?;
        positive("ε", epsilon)?;
        Ok(Self { max, epsilon })
    }

    /// The one-bit report of `x`.
    pub fn report(&self, x: f64) -> Result<bool> {
        if x.is_nan() {
            return Err(DpError::InvalidParameter("cannot report NaN".into()));
        }
        let e = self.epsilon.exp();
        let p = 1.0 / (e + 1.0) + (x.clamp(0.0, self.max) / self.max) * (e - 1.0) / (e + 1.0);
        bernoulli(p.clamp(0.0, 1.0))
    }
}

/// Server side of 1-bit mean estimation: the mean of the clients' values.
pub fn estimate_mean(reports: &[bool], max: f64, epsilon: f64) -> Result<Estimate> {
    MeanReporter::new(max, epsilon)?;
    let n = reports.len();
    if n == 0 {
        return Err(DpError::InvalidParameter("no reports".into()));
    }
    let e = epsilon.exp();
    let ones = reports.iter().filter(|&&b| b).count() as f64;
    let value = max / n as f64 * (ones * (e + 1.0) - n as f64) / (e - 1.0);
    // Each bit has variance ≤ 1/4.
    let std_error = max * (e + 1.0) / (e - 1.0) * 0.5 / (n as f64).sqrt();
    Ok(Estimate { value, std_error })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn randomized_response_estimate_is_unbiased() {
        let eps = 1.0;
        let r = BitReporter::new(eps).unwrap();
        let truth: Vec<bool> = (0..20_000).map(|i| i % 10 < 3).collect();
        let reports: Vec<bool> = truth.iter().map(|&b| r.report(b).unwrap()).collect();
        let est = estimate_fraction(&reports, eps).unwrap();
        assert!((est.value - 0.3).abs() < 4.0 * est.std_error, "{est:?}");
        assert!(est.std_error < 0.02);
    }

    #[test]
    fn frequency_oracle_estimates_counts_within_their_error() {
        let eps = 2.0;
        let enc = UnaryEncoder::new(4, eps).unwrap();
        let truth: Vec<usize> = (0..8_000).map(|i| [0, 0, 1, 3][i % 4]).collect();
        let reports: Vec<Vec<bool>> = truth.iter().map(|&v| enc.report(v).unwrap()).collect();
        let est = estimate_frequencies(&reports, 4, eps).unwrap();
        for (c, expect) in [4000.0, 2000.0, 0.0, 2000.0].iter().enumerate() {
            assert!(
                (est[c].value - expect).abs() < 4.5 * est[c].std_error,
                "category {c}: {:?}",
                est[c]
            );
        }
        assert!(enc.report(4).is_err());
    }

    #[test]
    fn one_bit_mean_is_unbiased_and_its_error_matches_the_bound() {
        let eps = 1.0;
        let max = 100.0;
        let rep = MeanReporter::new(max, eps).unwrap();
        let values: Vec<f64> = (0..2_000).map(|i| (i % 50) as f64 * 2.0).collect();
        let true_mean = values.iter().sum::<f64>() / values.len() as f64;
        // Repeat the whole collection to measure the empirical error.
        let trials = 30;
        let mut errors = Vec::new();
        let mut bound = 0.0;
        for _ in 0..trials {
            let reports: Vec<bool> = values.iter().map(|&v| rep.report(v).unwrap()).collect();
            let est = estimate_mean(&reports, max, eps).unwrap();
            bound = est.std_error;
            errors.push(est.value - true_mean);
        }
        let mean_err = errors.iter().sum::<f64>() / trials as f64;
        let rmse = (errors.iter().map(|e| e * e).sum::<f64>() / trials as f64).sqrt();
        assert!(
            mean_err.abs() < 4.0 * bound / (trials as f64).sqrt(),
            "bias {mean_err}"
        );
        // The analytic bound (every bit at variance 1/4) is an upper bound, and a tight one here.
        assert!(
            rmse < 1.3 * bound && rmse > 0.5 * bound,
            "rmse {rmse} vs bound {bound}"
        );
    }
}
