//! # veil-mpc: secure multi-party computation
//!
//! Several parties compute on **additive secret shares** over the ring `Z_2^64`: a value `x`
//! is held as `x_0 + x_1 + … + x_{N-1} (mod 2^64)`, each share uniformly random on its own, so
//! no coalition of fewer than all parties learns anything. Reals are fixed-point numbers
//! ([`fixed::FixedPoint`], 16 fractional bits by default) with an exact decode, negative
//! values included.
//!
//! - [`sharing`]: splitting and reconstructing.
//! - [`dealer`]: the "third party providing random masks" — Beaver triples, matrix triples,
//!   truncation pairs, comparison masks with bits and daBits, binary triples. Each party's
//!   part is expanded from a 32-byte seed (ChaCha12); only the last party receives one
//!   correction share per item, and it may ask ahead so the dealer works while it computes.
//! - [`protocol`]: the operations on shared tensors (add, multiply by public, Beaver
//!   multiplication, square, dot and matrix products in one round, sum, fixed-point
//!   truncation with at most one unit of error in the last place, opening to all or to one
//!   party). Protocol code talks to the other parties only through the [`protocol::Exchange`]
//!   trait: it hands over outgoing messages and gets incoming ones; it never touches sockets.
//! - [`compare`]: `<`, `=`, sign, ReLU, max, argmax and max-pooling in a constant number of
//!   rounds (8 per comparison): the dealer's mask comes with its bits as bit-sliced XOR shares
//!   ([`bits`]), combined by a tree of AND gates with binary triples, 64 gates per word.
//! - [`approx`]: exp, reciprocal, division, sigmoid, inverse square root and square root by
//!   limits and Newton iterations.
//! - [`ml`]: joint statistics (sum, mean, variance, histogram), logistic regression trained on
//!   rows split across parties, MLP inference with ReLU.
//! - [`net`]: the real transport — TCP with mutual TLS (rustls), session-hash check at
//!   connection, framed messages with timeouts; [`config`]: `parties.toml` and test certificates.
//! - [`psi`]: private set intersection (or its size only) by Diffie–Hellman over Ristretto255.
//! - [`memory`]: an in-process [`protocol::Exchange`] over channels, one thread per party, for
//!   tests and single-machine use.

pub mod approx;
pub mod bits;
pub mod compare;
pub mod config;
pub mod dealer;
pub mod error;
pub mod fixed;
pub mod memory;
pub mod ml;
pub mod net;
pub mod protocol;
pub mod psi;
pub mod sharing;

pub use error::{MpcError, Result};
pub use fixed::FixedPoint;
