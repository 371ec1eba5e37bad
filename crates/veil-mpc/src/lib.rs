//! # veil-mpc: secure multi-party computation
//!
//! Several parties compute on **additive secret shares** over the ring `Z_2^64`: a value `x`
//! is held as `x_0 + x_1 + … + x_{N-1} (mod 2^64)`, each share uniformly random on its own:
//! any `N - 1` shares together say nothing of `x`. (What that does and does not protect is
//! stated exactly under [Security model](#security-model).) Reals are fixed-point numbers
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
//! - [`rss`]: the **dealer-free** family for exactly three parties — replicated (2-out-of-3)
//!   shares, correlated randomness from pairwise PRF keys, one-round products, matrix products
//!   whose traffic is the size of their output, truncation with party 2 as helper, comparison
//!   by a carry-save and a Kogge–Stone adder on XOR shares. Honest majority: any one party
//!   learns nothing, any two learn everything (its own [security model](rss#security-model)).
//! - [`engine`]: [`Engine`], the operations both families offer, so that a program (model
//!   inference in `veil-ml`) is written once.
//!
//! # Security model
//!
//! This section is the dealer family's; the three-party family's is in [`rss`].
//!
//! - **Semi-honest parties and dealer.** Everyone follows the protocol; what is guaranteed is
//!   that what a party sees — its shares, the masked values opened to everyone, the results
//!   it is given — tells it nothing beyond its own inputs and those results.
//! - **Collusion.** Parties without the dealer: any coalition of up to `N - 1` parties learns
//!   nothing of the others' inputs beyond the results. **The dealer together with any one
//!   party learns everything**: the dealer knows every party's seed, hence every mask, and
//!   every party sees every opened `x - a` (Beaver) and `x + r` (truncation, comparison), so
//!   together they recover every input and every intermediate value. The dealer alone sees
//!   only the last party's requests. The dealer must therefore be run by someone who
//!   colludes with no party (or in an attested TEE).
//! - **No integrity: no MACs.** Shares and openings are not authenticated (there are no
//!   SPDZ-style MACs). A party that adds `δ` to what it sends shifts the opened value by `δ`,
//!   undetected, and with it every result, comparison and histogram count, as it likes. A
//!   party can also give any input it wants (the range check of [`ml`] statistics assumes
//!   honest parties: it protects against honest mistakes and overflow, not against lies).
//!   Results are correct only if every party follows the protocol; whatever the dealer
//!   checks of the requests it serves (see [`dealer`]) protects the masks, not the results.
//! - **Revealed on purpose.** Every party's input sizes; the results, to the parties named;
//!   in [`ml`] statistics, the number of values outside the declared range (to everyone);
//!   in [`psi`], the other side's set size.
//! - **Transport.** Mutual TLS with the session's CA, bounded set-up and resources, failures
//!   attributed to whoever failed ([`net`]). A network attacker can still deny service.
//! - **Keys.** `veil mpc init` writes every participant's private key into one directory —
//!   for a local test, where one person plays every party. In a real session each
//!   participant generates its own key and certificate request and only certificates travel
//!   ([`config::keygen`], [`config::certify`]).

pub mod approx;
pub mod bits;
pub mod compare;
pub mod config;
pub mod dealer;
pub mod engine;
pub mod error;
pub mod fixed;
pub mod memory;
pub mod ml;
pub mod net;
pub mod programs;
pub mod protocol;
pub mod psi;
pub mod rss;
pub mod sharing;

pub use engine::Engine;
pub use error::{MpcError, Result};
pub use fixed::FixedPoint;
