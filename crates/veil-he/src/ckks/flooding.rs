//! Noise flooding for decrypted values that leave the key holder.
//!
//! ## The attack (IND-CPA-D, Li–Micciancio, EUROCRYPT 2021)
//!
//! A CKKS decryption returns `m + e`, not `m`: the error `e` stays in the result. Whoever
//! knows `m` (it encrypted its own inputs under the public key, or knows the computation's
//! inputs) and sees the decoded result learns `e` exactly, and `c_0 + c_1·s = Δm + e` is then
//! a linear equation in the secret key `s`. A handful of such results recover `s`. Sharing a
//! raw CKKS decryption is therefore sharing (a piece of) the secret key.
//!
//! ## The defence
//!
//! Before values are released, fresh Gaussian noise is added to each of them, with standard
//! deviation `σ_flood = 2^{s/2} · E`, where `E` is an estimate of the ℓ2 norm of the error
//! in the released values and `s` the *statistical security parameter*
//! ([`NoiseFlooding::statistical_security`]). By the Rényi-divergence argument of Li,
//! Micciancio, Schultz and Sorrell ("Securing approximate homomorphic encryption using
//! differential privacy", CRYPTO 2022), the adversary's view with the error and its view
//! without it (a simulation that needs no key) then differ by a Rényi divergence of order α
//! of at most `exp(α·2^{-s}/2)` per decryption, so a search problem such as recovering the
//! key stays about as hard as without the decryption (success probability at most squared).
//! `t` decryptions of related ciphertexts add their divergences: `s − log2(t)` bits.
//!
//! The default `s = 30` is OpenFHE's default for its `NOISE_FLOODING_DECRYPT` mode. The
//! precision cost is `s/2 + 1 + log2(len)/2` bits on top of the per-value error of the
//! ciphertext (`len` values released). Measured at N = 8192, Δ = 2^40 (flood σ per value):
//! 4096 fresh values 5·10^-3, their squares 8·10^-3, a degree-3 polynomial on 256 values
//! 2·10^-3, the sum of 4096 values (one value, but the error of 12 rotations) 3·10^-2.
//! A 40-bit scale affords that; a larger `s` needs a larger scale (60-bit primes). Choose a
//! larger `s` when results go to many parties or the same ciphertext is decrypted many times.
//!
//! ## The noise estimate
//!
//! `E` is measured on the ciphertext at hand, from the imaginary parts of the decoded slots:
//! real-valued data (everything [`CkksVector`](crate::ckks::CkksVector) encrypts) has a zero
//! imaginary part, so the imaginary parts are pure error, and for error polynomials that are
//! not built to be lopsided they carry as much energy as the real parts. The per-value error
//! energy is the largest of (a) the mean square imaginary part over the released slots,
//! (b) the same over all slots, (c) the rounding error every fresh or rescaled ciphertext has,
//! `N·(1 + 2N/3)/24 / Δ²`; `E` is [`NoiseFlooding::SAFETY_FACTOR`] times the square root
//! of that energy times the number of released values. A message with imaginary content only
//! makes the estimate, and the flood, larger.
//!
//! ## What it does not protect
//!
//! - The [`Plaintext`](crate::ckks::Plaintext) returned by
//!   [`Decryptor::decrypt`](crate::ckks::Decryptor::decrypt) is exact: never share it, nor
//!   values decoded from it with [`CkksEncoder::decode`](crate::ckks::CkksEncoder::decode).
//! - The estimate is a heuristic (like OpenFHE's); an adversary who controls the evaluation
//!   and shapes the error so that its imaginary part vanishes while the real part does not
//!   defeats it. The flood is sized for honestly evaluated circuits whose inputs the adversary
//!   may know and choose.
//! - Floating-point Gaussians (Box–Muller on ChaCha20 output), not a constant-time discrete
//!   sampler: the flood's timing does not depend on the secret key, only on the values.

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

use crate::error::{HeError, Result};

/// How much noise flooding a decryption whose result is shared gets: the statistical
/// security parameter `s` (flood `= 2^{s/2}` × the estimated error). See the
/// [module docs](self) for the threat model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoiseFlooding {
    statistical_security: u32,
}

impl Default for NoiseFlooding {
    fn default() -> Self {
        Self {
            statistical_security: Self::DEFAULT_STATISTICAL_SECURITY,
        }
    }
}

impl NoiseFlooding {
    /// The default statistical security parameter, 30 bits (OpenFHE's default for
    /// `NOISE_FLOODING_DECRYPT`).
    pub const DEFAULT_STATISTICAL_SECURITY: u32 = 30;

    /// Smallest and largest accepted statistical security parameter.
    pub const STATISTICAL_SECURITY_RANGE: (u32, u32) = (20, 80);

    /// Margin on the measured error norm: the flood is sized for an error twice as large as
    /// measured (four times the energy), which covers the estimate's sampling spread and
    /// moderately lopsided errors.
    pub const SAFETY_FACTOR: f64 = 2.0;

    /// Flooding with statistical security `s` bits (20 … 80).
    pub fn new(statistical_security: u32) -> Result<Self> {
        let (lo, hi) = Self::STATISTICAL_SECURITY_RANGE;
        if !(lo..=hi).contains(&statistical_security) {
            return Err(HeError::InvalidParameters(format!(
                "statistical security {statistical_security} must be between {lo} and {hi} bits"
            )));
        }
        Ok(Self {
            statistical_security,
        })
    }

    /// The statistical security parameter `s`.
    pub fn statistical_security(&self) -> u32 {
        self.statistical_security
    }

    /// The flood's standard deviation for released values whose error has ℓ2 norm `error_l2`
    /// (same units as the values): `2^{s/2} · error_l2`.
    pub fn flood_std(&self, error_l2: f64) -> f64 {
        (f64::from(self.statistical_security) / 2.0).exp2() * error_l2
    }
}

/// Decoded values with flooding noise, and what was added to them.
#[derive(Clone, Debug)]
pub struct FloodedValues {
    /// The released values (real parts of the first slots, plus the flood).
    pub values: Vec<f64>,
    /// The estimated ℓ2 norm of the released values' own error (safety factor included).
    pub error_estimate: f64,
    /// Standard deviation of the Gaussian added to each value: the extra error a caller must
    /// expect (about 6 times this bounds every value with overwhelming probability).
    pub flood_std: f64,
}

/// A source of standard normal samples (Box–Muller on 53-bit uniforms from ChaCha20).
pub(crate) struct Gaussian {
    rng: ChaCha20Rng,
    spare: Option<f64>,
}

impl Gaussian {
    /// Seeded from the operating system.
    pub(crate) fn from_os_rng() -> Self {
        Self {
            rng: ChaCha20Rng::from_os_rng(),
            spare: None,
        }
    }

    /// A uniform in `(0, 1]`.
    fn uniform_open0(&mut self) -> f64 {
        ((self.rng.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }

    /// One standard normal sample.
    pub(crate) fn sample(&mut self) -> f64 {
        if let Some(x) = self.spare.take() {
            return x;
        }
        let r = (-2.0 * self.uniform_open0().ln()).sqrt();
        let t = 2.0 * std::f64::consts::PI * self.uniform_open0();
        self.spare = Some(r * t.sin());
        r * t.cos()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_range_and_flood_size() {
        assert!(NoiseFlooding::new(19).is_err());
        assert!(NoiseFlooding::new(81).is_err());
        let f = NoiseFlooding::default();
        assert_eq!(f.statistical_security(), 30);
        assert_eq!(f.flood_std(1.0), 2f64.powi(15));
        let odd = NoiseFlooding::new(31).unwrap();
        assert!((odd.flood_std(1.0) - 2f64.powf(15.5)).abs() < 1e-6);
    }

    #[test]
    fn gaussian_has_unit_variance() {
        let mut g = Gaussian::from_os_rng();
        let n = 200_000;
        let xs: Vec<f64> = (0..n).map(|_| g.sample()).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var - 1.0).abs() < 0.02, "variance {var}");
    }
}
