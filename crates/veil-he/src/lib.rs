//! # veil-he: homomorphic encryption
//!
//! Compute on encrypted vectors: the key holder encrypts, an untrusted server computes on
//! ciphertexts, only the key holder can read the result.
//!
//! [`ckks`] implements the CKKS scheme over an RNS modulus chain given as bit sizes, the way
//! SEAL and TenSEAL take it (`[60, 40, 40, 60]`), with 128-bit security enforced unless the
//! caller opts out by name, hybrid key switching, hoisted rotations, seeded secret-key
//! encryption and a compact, validated serialization. [`ckks::CkksVector`] offers the
//! TenSEAL-style vector API.
//!
//! ## Design
//!
//! Everything is in NTT form between operations; the NTT itself comes from `tfhe-ntt`
//! through `veil-math`. Parameters are validated once when built, and every key, plaintext and
//! ciphertext carries the parameter fingerprint, so mixing objects from different parameter
//! sets is an error rather than garbage. Scales and levels are explicit in the low-level
//! [`ckks::Evaluator`] (as in SEAL) and automatic in [`ckks::CkksVector`] (as in TenSEAL).
//!
//! ```
//! use veil_he::ckks::{CkksContext, CkksParameters, CkksVector, Preset, VectorContext};
//! # fn main() -> veil_he::Result<()> {
//! let params = CkksParameters::preset(Preset::N8192Depth2)?;
//! let ctx = VectorContext::builder(CkksContext::new(params)?).rotation_steps(&[]).build()?;
//! let x = CkksVector::encrypt(&ctx, &[1.0, 2.0, 3.0])?;
//! let y = CkksVector::encrypt(&ctx, &[0.5, 0.25, -1.0])?;
//! let dot = x.dot(&y)?.decrypt()?;
//! assert!((dot[0] - (0.5 + 0.5 - 3.0)).abs() < 1e-4);
//! # Ok(()) }
//! ```

pub mod ckks;
pub mod error;

pub use error::{HeError, Result};
