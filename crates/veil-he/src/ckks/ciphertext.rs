//! Plaintexts and ciphertexts.

use veil_math::RnsPoly;

/// An encoded (not encrypted) vector: a polynomial in NTT form over `q_0..q_ℓ` with its scale.
#[derive(Clone, Debug)]
pub struct Plaintext {
    pub(crate) poly: RnsPoly,
    pub(crate) scale: f64,
    pub(crate) fingerprint: [u8; 32],
}

impl Plaintext {
    /// Level ℓ (number of primes − 1).
    pub fn level(&self) -> usize {
        self.poly.num_limbs() - 1
    }

    /// The scale Δ the values were multiplied by.
    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// The underlying polynomial.
    pub fn poly(&self) -> &RnsPoly {
        &self.poly
    }

    /// Fingerprint of the parameter set it was made for.
    pub fn fingerprint(&self) -> &[u8; 32] {
        &self.fingerprint
    }
}

/// A CKKS ciphertext: 2 parts `(c_0, c_1)` (3 right after a multiplication, before
/// relinearization), each in NTT form over `q_0..q_ℓ`, with its scale.
///
/// A fresh secret-key encryption remembers the seed of its uniform part, so that it
/// serializes to about half the size; any operation on it produces an unseeded ciphertext.
#[derive(Clone, Debug)]
pub struct Ciphertext {
    pub(crate) parts: Vec<RnsPoly>,
    pub(crate) scale: f64,
    pub(crate) fingerprint: [u8; 32],
    pub(crate) seed: Option<[u8; 32]>,
}

impl Ciphertext {
    /// Level ℓ: how many rescalings are left.
    pub fn level(&self) -> usize {
        self.parts[0].num_limbs() - 1
    }

    /// The current scale.
    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// Sets the scale (for experts: the value decrypts as `m · old/new`).
    pub fn set_scale(&mut self, scale: f64) {
        self.scale = scale;
    }

    /// Number of polynomial parts (2, or 3 before relinearization).
    pub fn size(&self) -> usize {
        self.parts.len()
    }

    /// The polynomial parts.
    pub fn parts(&self) -> &[RnsPoly] {
        &self.parts
    }

    /// Fingerprint of the parameter set it was made for.
    pub fn fingerprint(&self) -> &[u8; 32] {
        &self.fingerprint
    }

    /// Whether it still carries the seed of its uniform part (fresh secret-key encryption).
    pub fn is_seeded(&self) -> bool {
        self.seed.is_some()
    }

    /// Bytes of memory the coefficients occupy: `parts · N · (ℓ+1) · 8`.
    pub fn memory_bytes(&self) -> usize {
        self.parts.iter().map(|p| p.data().len() * 8).sum()
    }
}
