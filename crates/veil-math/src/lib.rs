//! # veil-math: the lattice arithmetic under Veil's homomorphic encryption
//!
//! Ring-LWE schemes (CKKS, BFV) compute in `R_Q = Z_Q[X]/(X^N + 1)` with `Q` a product of
//! word-sized primes. This crate holds the pieces:
//!
//! - [`Modulus`]: 64-bit modular arithmetic with Barrett reduction of 128-bit products and
//!   Shoup multiplication by precomputed constants.
//! - [`prime`]: NTT-friendly primes `q ≡ 1 (mod 2N)` of a requested bit size, distinct.
//! - [`RingContext`]: the degree and primes, with one negacyclic NTT plan per prime from the
//!   SIMD-optimised `tfhe-ntt` crate (the transform itself is not written here), and the slot
//!   order that makes Galois automorphisms a permutation in NTT form.
//! - [`RnsPoly`]: RNS polynomials that carry their basis and representation
//!   ([`Representation::Coefficient`] or [`Representation::Ntt`]); every operation checks both.
//!   Rescaling by the last prime is [`RnsPoly::rescale_by_last`].
//! - [`rns`]: fast base conversion (ModUp/ModDown of hybrid key switching) and exact CRT
//!   composition for decoding.
//! - [`sampler`]: uniform, ternary and discrete Gaussian samplers from one cryptographic RNG.
//!
//! Work over limbs runs in parallel with `rayon` when it is large enough, and single-threaded
//! otherwise (see [`par`]).
//!
//! ```
//! use veil_math::{prime::primes_for_bit_sizes, RingContext, RnsPoly, Representation};
//! let moduli = primes_for_bit_sizes(1024, &[50, 50]).unwrap();
//! let ctx = RingContext::new(1024, &moduli).unwrap();
//! let mut x = RnsPoly::from_signed(&ctx, &[0, 1], &vec![1; 1024]).unwrap();
//! x.to_ntt();
//! let sq = RnsPoly::mul(&x, &x).unwrap();
//! assert_eq!(sq.representation(), Representation::Ntt);
//! ```

pub mod error;
pub mod modulus;
pub mod par;
pub mod poly;
pub mod prime;
pub mod ring;
pub mod rns;
pub mod sampler;
pub mod simd;

pub use error::{MathError, Result};
pub use modulus::{Modulus, ShoupConst};
pub use poly::{Representation, RnsPoly};
pub use ring::RingContext;
