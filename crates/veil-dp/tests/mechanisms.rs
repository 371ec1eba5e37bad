//! The mechanisms' noise has the distribution their privacy map assumes (issue 12, item 8).
//!
//! Each test draws samples from a mechanism at ε ≤ 1 and compares them with the exact law
//! the mechanism claims. The samplers draw from the operating system's randomness and cannot
//! be seeded, so every test is a statistical test at a fixed level: it fails falsely with
//! probability at most α = 10⁻⁴ (Dvoretzky–Kiefer–Wolfowitz with Massart's constant, and
//! Hoeffding's inequality for proportions — both hold for any distribution, discrete
//! included). Each test also checks its own power: the same samples are rejected against the
//! law of a mechanism with a wrong scale.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

use veil_dp::accountant::Cost;
use veil_dp::mechanisms::{GaussianMechanism, LaplaceMechanism, ReportNoisyMax};
use veil_dp::noise::Grid;

/// The false-failure probability of every statistical check here.
const ALPHA: f64 = 1e-4;

/// DKW–Massart: `P(sup |F_n − F| > t) ≤ 2e^{−2nt²}`; the `t` at which that is `alpha`.
fn dkw(n: usize, alpha: f64) -> f64 {
    ((2.0 / alpha).ln() / (2.0 * n as f64)).sqrt()
}

/// Kolmogorov–Smirnov distance between integer samples and the CDF `cdf` on the integers.
fn ks(samples: &[i64], cdf: impl Fn(i64) -> f64) -> f64 {
    let mut s = samples.to_vec();
    s.sort_unstable();
    let n = s.len() as f64;
    let mut d: f64 = 0.0;
    let mut i = 0;
    while i < s.len() {
        let x = s[i];
        let mut j = i;
        while j < s.len() && s[j] == x {
            j += 1;
        }
        d = d
            .max((cdf(x) - j as f64 / n).abs())
            .max((cdf(x - 1) - i as f64 / n).abs());
        i = j;
    }
    d
}

/// CDF of the discrete Laplace law `P(x) ∝ exp(−|x|/s)` on the integers.
fn discrete_laplace_cdf(s: f64) -> impl Fn(i64) -> f64 {
    let a = (-1.0 / s).exp();
    move |x: i64| {
        let tail = |m: i64| (-(m as f64) / s).exp() / (1.0 + a);
        if x < 0 {
            tail(-x)
        } else {
            1.0 - tail(x + 1)
        }
    }
}

/// `erfc` (Numerical Recipes' Chebyshev fit, relative error below 1.2·10⁻⁷).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// CDF of the discrete Gaussian law `P(x) ∝ exp(−x²/(2σ²))` for a large σ (here ≈ 2^20):
/// `Φ((x + ½)/σ)`, exact to far below 10⁻⁶ at that σ.
fn discrete_gaussian_cdf(sigma: f64) -> impl Fn(i64) -> f64 {
    move |x: i64| 0.5 * erfc(-(x as f64 + 0.5) / sigma / std::f64::consts::SQRT_2)
}

/// Real-valued Laplace: the value is snapped to the grid `2^k` (`k = ⌊log2(Δ/ε)⌋ − 20`) and
/// discrete Laplace noise of scale `(Δ + 2^k)/ε` (in grid units `(Δ + 2^k)/(ε·2^k)`) is added.
#[test]
fn laplace_release_is_discrete_laplace_on_its_grid() {
    let (sensitivity, epsilon) = (3.0, 0.5);
    let m = LaplaceMechanism::new(sensitivity, epsilon).unwrap();
    let grid = Grid::for_scale(sensitivity / epsilon);
    assert_eq!(grid.exponent, 2 - 20, "⌊log2 6⌋ − 20");
    let step = grid.spacing();
    assert_eq!(m.scale(), (sensitivity + step) / epsilon);
    assert_eq!(m.cost(), Cost::Pure { epsilon });
    assert_eq!(m.confidence_half_width(0.05), m.scale() * 20f64.ln());
    let n = 20_000;
    let value = 10.0; // on the grid: the released value minus it is exactly noise · 2^k
    let units: Vec<i64> = (0..n)
        .map(|_| {
            let noise = (m.release(value).unwrap() - value) / step;
            assert_eq!(noise.fract(), 0.0, "off the grid: {noise}");
            noise as i64
        })
        .collect();
    let t = dkw(n, ALPHA);
    let d = ks(&units, discrete_laplace_cdf(m.scale() / step));
    assert!(d < t, "KS distance {d} ≥ {t}");
    // Power: noise for a 1.5× larger ε is rejected.
    let d = ks(&units, discrete_laplace_cdf(m.scale() / 1.5 / step));
    assert!(d > t, "KS distance to the wrong scale {d} ≤ {t}");
}

/// Integer Laplace (counts): discrete Laplace of scale `⌈Δ⌉/ε`, no grid.
#[test]
fn integer_laplace_is_discrete_laplace() {
    let m = LaplaceMechanism::new(1.0, 0.25).unwrap();
    let n = 20_000;
    let noise: Vec<i64> = (0..n)
        .map(|_| m.release_integer(1_000).unwrap() - 1_000)
        .collect();
    let t = dkw(n, ALPHA);
    let d = ks(&noise, discrete_laplace_cdf(4.0));
    assert!(d < t, "KS distance {d} ≥ {t}");
    let d = ks(&noise, discrete_laplace_cdf(4.0 / 1.5));
    assert!(d > t, "KS distance to the wrong scale {d} ≤ {t}");
    // A fractional sensitivity is rounded up, never down.
    let m = LaplaceMechanism::new(1.5, 1.0).unwrap();
    let noise: Vec<i64> = (0..n).map(|_| m.release_integer(0).unwrap()).collect();
    let d = ks(&noise, discrete_laplace_cdf(2.0));
    assert!(d < t, "KS distance {d} ≥ {t}");
}

/// Gaussian (zCDP): discrete Gaussian on the grid with `σ = (Δ + 2^k)/√(2ρ)`.
#[test]
fn gaussian_release_is_discrete_gaussian_on_its_grid() {
    let (sensitivity, rho) = (2.0, 0.5);
    let m = GaussianMechanism::from_rho(sensitivity, rho).unwrap();
    let grid = Grid::for_scale(sensitivity / (2.0 * rho).sqrt());
    let step = grid.spacing();
    assert_eq!(m.sigma(), (sensitivity + step) / (2.0 * rho).sqrt());
    assert_eq!(m.cost(), Cost::Zcdp { rho });
    let n = 20_000;
    let units: Vec<i64> = (0..n)
        .map(|_| {
            let noise = m.release(0.0).unwrap() / step;
            assert_eq!(noise.fract(), 0.0);
            noise as i64
        })
        .collect();
    let t = dkw(n, ALPHA);
    let d = ks(&units, discrete_gaussian_cdf(m.sigma() / step));
    assert!(d < t, "KS distance {d} ≥ {t}");
    let d = ks(&units, discrete_gaussian_cdf(m.sigma() / 1.5 / step));
    assert!(d > t, "KS distance to the wrong σ {d} ≤ {t}");
}

/// Report-noisy-max adds Laplace noise of scale `2Δ/ε` to each score: between two scores
/// `d` apart, the lower one wins with probability `e^{−d/b}(2 + d/b)/4` (`b = 2Δ/ε`, the
/// difference of two Laplace variables).
#[test]
fn report_noisy_max_selects_with_the_claimed_probability() {
    let (sensitivity, epsilon) = (1.0, 1.0);
    let rnm = ReportNoisyMax::new(sensitivity, epsilon).unwrap();
    assert_eq!(rnm.cost(), Cost::Pure { epsilon });
    let b = LaplaceMechanism::new(2.0 * sensitivity, epsilon)
        .unwrap()
        .scale();
    let gap = 2.0;
    let p = |b: f64| (-gap / b).exp() * (2.0 + gap / b) / 4.0;
    let n = 20_000;
    let low_wins = (0..n)
        .filter(|_| rnm.select(&[0.0, gap]).unwrap() == Some(0))
        .count() as f64
        / n as f64;
    // Hoeffding: P(|p̂ − p| > t) ≤ 2e^{−2nt²} = α.
    let t = dkw(n, ALPHA);
    assert!((low_wins - p(b)).abs() < t, "{low_wins} vs {}", p(b));
    // Power: noise of scale Δ/ε (the factor 2 forgotten) gives a far smaller rate.
    assert!((low_wins - p(b / 2.0)).abs() > t, "{low_wins}");
}
