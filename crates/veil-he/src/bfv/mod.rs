//! BFV: exact homomorphic arithmetic on vectors of integers modulo a plaintext modulus `t`
//! (counting, voting, lookups, integer statistics), as SEAL's BFV with its batch encoder.
//!
//! BFV shares CKKS's ring, keys and hybrid key switching ([`BfvContext::core`] is a
//! [`CkksContext`](crate::ckks::CkksContext); keys come from
//! [`KeyGenerator`](crate::ckks::KeyGenerator) on it) and adds:
//! - a plaintext modulus `t` (prime, `≡ 1 mod 2N`) and the [`BatchEncoder`]: `N` integers as a
//!   2 × N/2 matrix of slots; row rotations and the row swap are Galois automorphisms;
//! - encryption of `Δ·m` with `Δ = ⌊Q/t⌋`, decryption by exact `round(t·x/Q)` in RNS, the
//!   invariant noise budget as SEAL reports it;
//! - multiplication by the Halevi–Polyakov–Shoup method: exact extension to an auxiliary base,
//!   tensor product, exact scaling by `t/Q` in RNS (no multi-precision arithmetic), then
//!   relinearization with the CKKS key switching;
//! - modulus switching (divide by the last prime with rounding).
//!
//! [`BfvVector`] is the high-level API (TenSEAL's `BFVVector`): encrypt a vector of integers,
//! add, multiply, rotate, sum, dot — with a public noise estimate that refuses to decrypt a
//! result that may be wrong.
//!
//! ```
//! use veil_he::bfv::{BfvContext, BfvParameters, BfvPreset, BfvVector, BfvVectorContext};
//! # fn main() -> veil_he::Result<()> {
//! let ctx = BfvContext::new(BfvParameters::preset(BfvPreset::N8192)?)?;
//! let keys = BfvVectorContext::new(&ctx)?;
//! let votes = BfvVector::encrypt(&keys, &[1, 0, 1, 1])?;
//! let weights = BfvVector::encrypt(&keys, &[3, 5, 7, 9])?;
//! let total = votes.dot(&weights)?; // 3 + 7 + 9, exactly
//! assert_eq!(total.decrypt()?[0], 19);
//! # Ok(()) }
//! ```
//!
//! ## Threat model
//!
//! - **Who computes sees only ciphertexts**: RLWE with the 128-bit table of
//!   HomomorphicEncryption.org (the same check as CKKS, over the ciphertext and special primes;
//!   the auxiliary primes of multiplication never appear in a key or ciphertext). Parameters
//!   below 128 bits are refused unless opted out by name, also when read from bytes.
//! - **Whatever is read is hostile**: ciphertexts, keys and parameters are validated against
//!   the context before use (sizes, levels, coefficient ranges, fingerprints).
//! - **Decryptions are exact or refused.** A correct BFV decryption carries no noise: it is the
//!   message, so releasing it reveals nothing about the key (unlike raw CKKS decryptions, which
//!   Veil floods). What can leak is a *wrong* decryption, or whether one happens: attacks on
//!   exact schemes (Cheon et al., 2024) drive ciphertexts to the edge of decryption failure and
//!   learn the key from the outcome. [`BfvVector`] therefore tracks a public, worst-case-ish
//!   noise estimate from the operations alone and refuses, before touching the key, to decrypt
//!   a result whose estimated budget is gone (a decision that depends on nothing secret); the
//!   low-level [`BfvDecryptor::decrypt`] also refuses when the measured noise is 1/4 or more.
//!   Do not forward decryptions of ciphertexts you did not compute with a known circuit.
//! - **Secrets are zeroized** (the CKKS key machinery, shared).
//! - **Not protected**: a malicious evaluator (it may return any ciphertext), side channels
//!   beyond those CKKS handles.

pub mod bench;
pub mod context;
pub mod encoder;
pub mod evaluator;
pub mod params;
pub mod serialize;
pub mod vector;

#[cfg(test)]
mod tests;

pub use context::BfvContext;
pub use encoder::{BatchEncoder, BfvPlaintext};
pub use evaluator::{BfvCiphertext, BfvDecryptor, BfvEncryptor, BfvEvaluator};
pub use params::{BfvParameters, BfvParametersBuilder, BfvPreset};
pub use vector::{BfvVector, BfvVectorContext};
