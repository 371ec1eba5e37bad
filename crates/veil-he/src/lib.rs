//! # veil-he: homomorphic encryption
//!
//! Compute on encrypted vectors: the key holder encrypts, an untrusted server computes on
//! ciphertexts, only the key holder can read the result.
//!
//! [`ckks`] implements the CKKS scheme over an RNS modulus chain given as bit sizes, the way
//! SEAL and TenSEAL take it (`[60, 40, 40, 60]`), with 128-bit security enforced unless the
//! caller opts out by name, hybrid key switching, hoisted rotations, seeded secret-key
//! encryption and a compact, validated serialization. [`ckks::CkksVector`] offers the
//! TenSEAL-style vector API. [`bfv`] and [`bgv`] compute exactly on integers modulo a
//! plaintext modulus over the same ring, keys and key switching ([`bfv::BfvVector`] is
//! TenSEAL's `BFVVector`).
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
//! let dot = x.dot(&y)?;
//! // Results that may be shared are flooded with noise (see the threat model below): each
//! // value gets a Gaussian of standard deviation `flood_std` (`decrypt` returns the values).
//! let shared = dot.decrypt_flooded()?;
//! assert!((shared.values[0] - (0.5 + 0.5 - 3.0)).abs() < 8.0 * shared.flood_std);
//! // The key holder keeps its own results exact.
//! let mine = dot.decrypt_unflooded_for_key_holder_only()?;
//! assert!((mine[0] - (0.5 + 0.5 - 3.0)).abs() < 1e-4);
//! # Ok(()) }
//! ```
//!
//! ## Threat model
//!
//! - **Who computes sees only ciphertexts.** Semantic security (RLWE, 128 bits per the
//!   HomomorphicEncryption.org table) against whoever holds the public, relinearization and
//!   Galois keys. Parameters read from bytes are held to 128 bits: a peer cannot ship a toy
//!   ring; only the receiver opts out, by name
//!   (`from_bytes_insecure_allow_below_128_bit_security`).
//! - **Whatever is read is hostile.** Every serialized object is checked against the
//!   parameters before allocation; a scale that is not finite, below 1/2 or not below the
//!   modulus is an error, as is a decode that would produce inf/NaN.
//! - **Results that leave the key holder are flooded** ([`ckks::flooding`]): a raw CKKS
//!   decryption carries its error, which with known inputs gives linear equations in the
//!   secret key (IND-CPA-D, Li–Micciancio 2021). [`ckks::CkksVector::decrypt`] adds Gaussian
//!   noise `2^{s/2}` times the measured error (statistical security `s = 30` by default);
//!   the exact paths are named for the key holder
//!   ([`ckks::CkksVector::decrypt_unflooded_for_key_holder_only`], the low-level
//!   [`ckks::Decryptor`] with [`ckks::CkksEncoder::decode`]).
//! - **Secrets are zeroized**: the secret key, its serialization (built in place at its final
//!   size), and the secret-dependent temporaries of key generation and encryption (`a·s`,
//!   `s²`, the encryption randomness `u`).
//! - **Not protected**: a malicious evaluator (it can return any ciphertext; nothing proves
//!   the computation), side channels beyond the constant-time key comparison and table-scan
//!   Gaussian, and the flooding estimate against errors shaped to hide from it (see
//!   [`ckks::flooding`]).

pub mod bfv;
pub mod bgv;
pub mod ckks;
pub mod error;

pub use error::{HeError, Result};
