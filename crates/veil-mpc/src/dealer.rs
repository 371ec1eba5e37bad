//! The dealer: correlated randomness from a third party that sees no data.
//!
//! Every party's part of every item is expanded (ChaCha12) from a key of its own, which the
//! party derives from the 32-byte seed the dealer gave it; the dealer derives the same keys,
//! so for the first `N - 1` parties nothing but the seed ever crosses the network. The last
//! party's share of each derived value (the product of a triple, the shifted mask of a
//! truncation pair) is a **correction** the dealer computes and sends: one ring element per
//! item, followed by one transcript tag per other party (see below).
//!
//! # Items are bound to the transcript
//!
//! Only the last party talks to the dealer, so the dealer learns which items the others take
//! from the last party's requests alone. Item `i` of party `p` is therefore expanded from
//!
//! ```text
//! h_0 = 0^256,   h_i = SHA-256("veil-mpc/dealer/transcript/v1" ‖ h_{i-1} ‖ request_i)
//! key_{p,i} = SHA-256("veil-mpc/dealer/item-key/v1" ‖ seed_p ‖ h_i)
//! ```
//!
//! where `request_i` is the fixed-length encoding of the item's type and every size. A party
//! hashes the requests *it* takes; the dealer hashes the requests the last party *sent*. When
//! they agree, both expand the same words; when the last party asks for anything else (another
//! type, another size, an extra or a missing item, even long before), the dealer computes the
//! correction from words of a key no party ever uses, so the correction is independent of
//! every mask the other parties hold. The earlier design — one sequential stream per party,
//! advanced by the last party's requests — let a last party shift its requests so that a
//! correction was computed from party 0's mask words (exactly, for a matrix triple with an
//! empty inner dimension; behind one unknown bit for the top bit of a truncation or the
//! additive share of a daBit), and recover party 0's inputs (`tests/dealer_attacks.rs`).
//!
//! With each correction the dealer also sends, for every other party `p`, the tag
//! `SHA-256("veil-mpc/dealer/transcript-tag/v1" ‖ seed_p ‖ h_i)` (64 bits). Before anything
//! is opened as an output ([`crate::protocol::Party::open_raw`],
//! [`crate::protocol::Party::reveal_to_raw`]) the last party forwards to each party the tag of
//! the latest item they completed, and each party compares it with its own: every party
//! confirms that the dealer served exactly the transcript it took, and stops with
//! [`MpcError::Dealer`] otherwise. The last party cannot forge a tag without `seed_p`. This is
//! the "all parties confirm the transcript before output" of SPDZ-style protocols, here for
//! the requests (there are no MACs on the values; see below).
//!
//! # Threat model
//!
//! - **The dealer** is trusted not to collude: it knows every seed, hence every mask, so the
//!   dealer together with any one party learns what every opening hides (all inputs). It sees
//!   the types and sizes of the requests (which every party knows too), never a share or an
//!   opened value (it takes part in no round).
//! - **A party that follows the protocol** (semi-honest) learns nothing beyond the outputs:
//!   every value it sees opened is masked by fresh randomness from the other parties' keys.
//! - **A malicious last party** chooses what to ask the dealer. Whatever it asks, it learns
//!   nothing about the other parties' masks (each correction is either the honest one for an
//!   item all parties agreed on, or independent of every word they use), and a deviation is
//!   detected at the next output opening (before any party sends a share of it).
//! - **Not protected**: correctness. There are no MACs on shares or openings, so any party can
//!   add errors to what it sends (the result is then wrong, undetected), and by such additive
//!   errors make an output a different function of the inputs, which may reveal more than the
//!   intended one. A party can also stop (abort) at any time. Internal openings are not
//!   confirmed, only outputs; a deviation in items no party has completed by the last output
//!   affects nothing that is output and is not reported.

use std::collections::VecDeque;

use rand_chacha::ChaCha12Rng;

/// The stream cipher that expands item keys: ChaCha with 12 rounds, as `rand`'s `StdRng` —
/// the best known attacks reach 7 rounds, and it expands 1.6× faster than ChaCha20, which
/// matters when the parties and the dealer expand tens of megabytes per batched operation.
type Prg = ChaCha12Rng;
use rand_core::{RngCore, SeedableRng};
use rayon::prelude::*;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::bits;
use crate::error::{MpcError, Result};
use crate::protocol::matmul_plain;

/// Largest number of ring elements one request may ask for.
pub const MAX_REQUEST: usize = 1 << 26;

/// What a computation asks the dealer for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// `n` Beaver triples `(a, b, a·b)`.
    Triples {
        /// How many.
        n: usize,
    },
    /// `n` square pairs `(a, a²)`.
    Squares {
        /// How many.
        n: usize,
    },
    /// A matrix triple `(A, B, A·B)` with `A` `m × k` and `B` `k × n`.
    MatrixTriple {
        /// Rows of A.
        m: usize,
        /// Columns of A, rows of B.
        k: usize,
        /// Columns of B.
        n: usize,
    },
    /// `n` comparison masks: `r` (additive shares), the 64 bit planes of `r` (XOR shares, see
    /// [`crate::bits`]), and a random bit `s` per element both as XOR shares (one plane) and
    /// as additive shares (a "daBit": it brings a shared bit from XOR to additive shares).
    Comparison {
        /// How many.
        n: usize,
    },
    /// AND triples on bit-words: `words` words each of XOR-shared `a`, `b` and `c = a & b`
    /// (64 AND gates per word).
    BinaryTriples {
        /// How many words.
        words: usize,
    },
    /// `n` truncation masks `(r, r >> f, msb(r))` for `f` fractional bits.
    Truncation {
        /// How many.
        n: usize,
        /// Bits shifted out.
        frac_bits: u32,
    },
}

impl Request {
    /// Ring elements of the last party's correction.
    pub fn correction_len(&self) -> usize {
        match *self {
            Self::Triples { n } | Self::Squares { n } => n,
            Self::MatrixTriple { m, n, .. } => m.saturating_mul(n),
            Self::Truncation { n, .. } => n.saturating_mul(2),
            Self::Comparison { n } => bits::words(n).saturating_mul(64).saturating_add(n),
            Self::BinaryTriples { words } => words,
        }
    }

    pub(crate) fn check(&self) -> Result<()> {
        let total = match *self {
            Self::Triples { n } => n.saturating_mul(3),
            Self::Squares { n } => n.saturating_mul(2),
            Self::MatrixTriple { m, k, n } => m
                .saturating_mul(k)
                .saturating_add(k.saturating_mul(n))
                .saturating_add(m.saturating_mul(n)),
            Self::Comparison { n } => n
                .saturating_mul(2)
                .saturating_add(bits::words(n).saturating_mul(65)),
            Self::BinaryTriples { words } => words.saturating_mul(3),
            Self::Truncation { n, frac_bits } => {
                if !(1..=62).contains(&frac_bits) {
                    return Err(MpcError::Dealer(format!(
                        "cannot truncate by {frac_bits} bits"
                    )));
                }
                n.saturating_mul(3)
            }
        };
        if total > MAX_REQUEST {
            return Err(MpcError::Dealer(format!(
                "request for {total} elements exceeds {MAX_REQUEST}"
            )));
        }
        Ok(())
    }
}

/// The chained hash of the requests taken so far (`h_i` in the [module docs](crate::dealer)); public.
type Transcript = [u8; 32];

/// Domain of the transcript chain.
const TRANSCRIPT_DOMAIN: &[u8] = b"veil-mpc/dealer/transcript/v1";
/// Domain of the per-item keys.
const ITEM_KEY_DOMAIN: &[u8] = b"veil-mpc/dealer/item-key/v1";
/// Domain of the transcript tags.
const TAG_DOMAIN: &[u8] = b"veil-mpc/dealer/transcript-tag/v1";

impl Request {
    /// The request in the transcript: its type and every size, fixed length.
    fn encode(&self) -> [u8; 25] {
        let (kind, sizes): (u8, [usize; 3]) = match *self {
            Self::Triples { n } => (1, [n, 0, 0]),
            Self::Squares { n } => (2, [n, 0, 0]),
            Self::MatrixTriple { m, k, n } => (3, [m, k, n]),
            Self::Comparison { n } => (4, [n, 0, 0]),
            Self::BinaryTriples { words } => (5, [words, 0, 0]),
            Self::Truncation { n, frac_bits } => (6, [n, frac_bits as usize, 0]),
        };
        let mut out = [0u8; 25];
        out[0] = kind;
        for (chunk, size) in out[1..].chunks_exact_mut(8).zip(sizes) {
            chunk.copy_from_slice(&(size as u64).to_le_bytes());
        }
        out
    }
}

/// The transcript once `request` is taken after `before`.
fn extend_transcript(before: &Transcript, request: &Request) -> Transcript {
    let mut h = Sha256::new();
    h.update(TRANSCRIPT_DOMAIN);
    h.update(before);
    h.update(request.encode());
    h.finalize().into()
}

/// The stream of one item of a party: ChaCha12 keyed by `H(seed ‖ transcript)`.
fn item_stream(seed: &[u8; 32], transcript: &Transcript) -> Prg {
    let mut h = Sha256::new();
    h.update(ITEM_KEY_DOMAIN);
    h.update(seed);
    h.update(transcript);
    let key = Zeroizing::new(<[u8; 32]>::from(h.finalize()));
    Prg::from_seed(*key)
}

/// A party's tag of a transcript (the dealer's proof that it served this transcript).
fn tag(seed: &[u8; 32], transcript: &Transcript) -> u64 {
    let mut h = Sha256::new();
    h.update(TAG_DOMAIN);
    h.update(seed);
    h.update(transcript);
    let digest: [u8; 32] = h.finalize().into();
    let mut word = [0u8; 8];
    word.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(word)
}

/// A party's share of one item of correlated randomness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Material {
    /// Shares of `a`, `b`, `c = a·b` (element-wise, or matrices for a matrix triple).
    Triple {
        /// a.
        a: Vec<u64>,
        /// b.
        b: Vec<u64>,
        /// c.
        c: Vec<u64>,
    },
    /// Shares of `a` and `a²`.
    Square {
        /// a.
        a: Vec<u64>,
        /// a².
        aa: Vec<u64>,
    },
    /// Shares of a comparison mask (see [`Request::Comparison`]).
    Comparison {
        /// r (additive).
        r: Vec<u64>,
        /// The random bits s, one plane (XOR).
        s_bits: Vec<u64>,
        /// The 64 bit planes of r (XOR).
        r_bits: Vec<u64>,
        /// The same bits s as ring elements 0 or 1 (additive).
        s: Vec<u64>,
    },
    /// XOR shares of AND triples on bit-words.
    BinaryTriple {
        /// a.
        a: Vec<u64>,
        /// b.
        b: Vec<u64>,
        /// c = a & b.
        c: Vec<u64>,
    },
    /// Shares of `r`, `r >> f` and `msb(r)`.
    Truncation {
        /// r.
        r: Vec<u64>,
        /// r >> f (logical shift of the whole r).
        shifted: Vec<u64>,
        /// The top bit of r, as 0 or 1.
        msb: Vec<u64>,
    },
}

/// A 32-byte seed (zeroized on drop).
pub type Seed = Zeroizing<[u8; 32]>;

/// Elements per piece of parallel stream expansion.
const CHUNK: usize = 1 << 14;

/// Fills `out` with the stream's next `out.len()` ring elements (little-endian words).
fn fill(prg: &mut Prg, out: &mut [u64]) {
    prg.fill_bytes(bytemuck::cast_slice_mut(out));
    #[cfg(target_endian = "big")]
    for x in out.iter_mut() {
        *x = u64::from_le(*x);
    }
}

/// Fills `out` with the ring elements at `offset` of `prg`'s stream (from its start),
/// without moving `prg` (ChaCha seeks in constant time).
fn expand_at(prg: &Prg, offset: usize, out: &mut [u64]) {
    let mut p = prg.clone();
    p.set_word_pos(2 * offset as u128);
    fill(&mut p, out);
}

/// The stream's next `n` ring elements, expanded in parallel pieces.
fn draw(prg: &mut Prg, n: usize) -> Vec<u64> {
    let mut out = vec![0u64; n];
    let start = prg.get_word_pos();
    let base: &Prg = prg;
    out.par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(i, piece)| {
            let mut p = base.clone();
            p.set_word_pos(start + 2 * (i * CHUNK) as u128);
            fill(&mut p, piece);
        });
    prg.set_word_pos(start + 2 * n as u128);
    out
}

/// How many elements of each kind one request takes from a party's stream: the parts every
/// party expands from its seed come first, then the parts that only the first `N - 1`
/// parties expand (the last party gets them as the dealer's correction).
fn layout(request: &Request) -> (usize, usize) {
    let seeded = match *request {
        Request::Triples { n } => 2 * n,
        Request::Squares { n } | Request::Truncation { n, .. } => n,
        Request::Comparison { n } => n + bits::words(n),
        Request::BinaryTriples { words } => 2 * words,
        Request::MatrixTriple { m, k, n } => m * k + k * n,
    };
    (seeded, request.correction_len())
}

/// A party's correlated randomness: its seed and the transcript of the items it took.
pub struct PartyRandomness {
    seed: Seed,
    id: usize,
    parties: usize,
    transcript: Transcript,
    /// Items taken by [`PartyRandomness::seeded`] and not yet completed: their transcripts.
    pending: VecDeque<Transcript>,
    /// Items completed so far.
    completed: u64,
    /// For the last party, the dealer's tags of the latest completed item, one per other
    /// party; for the others, their own tag of it.
    tags: Vec<u64>,
}

impl std::fmt::Debug for PartyRandomness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartyRandomness")
            .field("id", &self.id)
            .field("parties", &self.parties)
            .field("completed", &self.completed)
            .finish_non_exhaustive()
    }
}

impl PartyRandomness {
    /// The randomness of party `id` of `parties` from its seed (the last party receives
    /// corrections).
    pub fn new(seed: &[u8; 32], id: usize, parties: usize) -> Result<Self> {
        if parties < 2 || id >= parties {
            return Err(MpcError::InvalidParameter(format!(
                "party {id} of {parties}: need at least 2 parties and an id below their number"
            )));
        }
        Ok(Self {
            seed: Zeroizing::new(*seed),
            id,
            parties,
            transcript: [0; 32],
            pending: VecDeque::new(),
            completed: 0,
            tags: Vec::new(),
        })
    }

    /// Whether this party receives corrections.
    pub fn is_last(&self) -> bool {
        self.id == self.parties - 1
    }

    /// Items completed so far (taken by [`PartyRandomness::seeded`] and finished by
    /// [`PartyRandomness::complete`]); the same at every party that follows the program.
    pub fn completed(&self) -> u64 {
        self.completed
    }

    /// The transcript tag of the latest completed item for party `party`: for the last
    /// party, the tag the dealer sent for `party` (to forward to it); for another party, its
    /// own tag, when `party` is itself (to compare with what the last party forwards).
    /// `None` before the first item is completed, or for any other `party`.
    pub fn transcript_tag(&self, party: usize) -> Option<u64> {
        if self.is_last() {
            self.tags.get(party).copied()
        } else if party == self.id {
            self.tags.first().copied()
        } else {
            None
        }
    }

    /// This party's share of the next item as far as its seed gives it: everything for the
    /// first `N - 1` parties; for the last party, the derived parts (`c` of a triple, the
    /// shifted mask and top bit of a truncation, the one-hot chunks and top bit of a
    /// comparison) are left empty until [`PartyRandomness::complete`] adds the correction.
    /// The parts that are opened first (`a`, `b`, `r`) never wait for the dealer.
    pub fn seeded(&mut self, request: &Request) -> Result<Material> {
        request.check()?;
        let (_, corrected) = layout(request);
        let transcript = extend_transcript(&self.transcript, request);
        let mut stream = item_stream(&self.seed, &transcript);
        let prg = &mut stream;
        let mut material = match *request {
            Request::Triples { n } => {
                let a = draw(prg, n);
                let b = draw(prg, n);
                Material::Triple {
                    a,
                    b,
                    c: Vec::new(),
                }
            }
            Request::Squares { n } => Material::Square {
                a: draw(prg, n),
                aa: Vec::new(),
            },
            Request::MatrixTriple { m, k, n } => {
                let a = draw(prg, m * k);
                let b = draw(prg, k * n);
                Material::Triple {
                    a,
                    b,
                    c: Vec::new(),
                }
            }
            Request::Comparison { n } => {
                let r = draw(prg, n);
                let s_bits = draw(prg, bits::words(n));
                Material::Comparison {
                    r,
                    s_bits,
                    r_bits: Vec::new(),
                    s: Vec::new(),
                }
            }
            Request::BinaryTriples { words } => {
                let a = draw(prg, words);
                let b = draw(prg, words);
                Material::BinaryTriple {
                    a,
                    b,
                    c: Vec::new(),
                }
            }
            Request::Truncation { n, .. } => Material::Truncation {
                r: draw(prg, n),
                shifted: Vec::new(),
                msb: Vec::new(),
            },
        };
        if !self.is_last() {
            let derived = draw(prg, corrected);
            Self::place(request, &mut material, derived)?;
        }
        self.transcript = transcript;
        self.pending.push_back(transcript);
        Ok(material)
    }

    /// Adds the dealer's correction (the last party) to what [`PartyRandomness::seeded`]
    /// gave; nothing to add for the other parties. Items complete in the order they were
    /// taken. The last party's correction ends with the dealer's transcript tags, one per
    /// other party, which it keeps to forward (see [`PartyRandomness::transcript_tag`]).
    pub fn complete(
        &mut self,
        request: &Request,
        material: &mut Material,
        correction: Option<Vec<u64>>,
    ) -> Result<()> {
        let Some(transcript) = self.pending.pop_front() else {
            return Err(MpcError::Dealer(
                "an item completed that was never taken".into(),
            ));
        };
        if !self.is_last() {
            return match correction {
                None => {
                    self.tags = vec![tag(&self.seed, &transcript)];
                    self.completed += 1;
                    Ok(())
                }
                Some(_) => Err(MpcError::Dealer(
                    "a correction for a party that expands its own share".into(),
                )),
            };
        }
        let want = request.correction_len();
        let others = self.parties - 1;
        match correction {
            Some(mut c) if c.len() == want.saturating_add(others) => {
                let tags = c.split_off(want);
                Self::place(request, material, c)?;
                self.tags = tags;
                self.completed += 1;
                Ok(())
            }
            Some(c) => Err(MpcError::Dealer(format!(
                "correction of {} elements where {want} and {others} transcript tags were \
                 expected",
                c.len(),
            ))),
            None => Err(MpcError::Dealer("the last party got no correction".into())),
        }
    }

    /// Puts the derived parts (drawn or corrected) into the material.
    fn place(request: &Request, material: &mut Material, mut derived: Vec<u64>) -> Result<()> {
        match (request, material) {
            (
                Request::Triples { .. } | Request::MatrixTriple { .. },
                Material::Triple { c, .. },
            ) => *c = derived,
            (Request::Squares { .. }, Material::Square { aa, .. }) => *aa = derived,
            (Request::Comparison { n }, Material::Comparison { r_bits, s, .. }) => {
                *s = derived.split_off(64 * bits::words(*n));
                *r_bits = derived;
            }
            (Request::BinaryTriples { .. }, Material::BinaryTriple { c, .. }) => *c = derived,
            (Request::Truncation { n, .. }, Material::Truncation { shifted, msb, .. }) => {
                *msb = derived.split_off(*n);
                *shifted = derived;
            }
            _ => return Err(MpcError::Dealer("material does not fit the request".into())),
        }
        Ok(())
    }

    /// This party's share of the next item: expanded from the seed, plus the dealer's
    /// correction for the last party.
    pub fn next(&mut self, request: &Request, correction: Option<Vec<u64>>) -> Result<Material> {
        let mut m = self.seeded(request)?;
        self.complete(request, &mut m, correction)?;
        Ok(m)
    }
}

/// The dealer: every party's seed, and the transcript of the requests served.
pub struct Dealer {
    seeds: Vec<Seed>,
    transcript: Transcript,
}

impl std::fmt::Debug for Dealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dealer")
            .field("parties", &self.seeds.len())
            .finish_non_exhaustive()
    }
}

fn sum_into(total: &mut [u64], part: &[u64]) {
    for (t, p) in total.iter_mut().zip(part) {
        *t = t.wrapping_add(*p);
    }
}

/// The parties' streams of one item, for summing pieces of them.
struct Streams<'a> {
    prgs: &'a [Prg],
}

impl Streams<'_> {
    /// `out` = the sum over the parties (the last one too if `with_last`) of the elements at
    /// `offset` of their streams of this item.
    fn sum(&self, out: &mut [u64], offset: usize, with_last: bool, scratch: &mut Vec<u64>) {
        self.combine(out, offset, with_last, scratch, false);
    }

    /// [`Streams::sum`] with XOR (`xor`) or wrapping addition.
    fn combine(
        &self,
        out: &mut [u64],
        offset: usize,
        with_last: bool,
        scratch: &mut Vec<u64>,
        xor: bool,
    ) {
        out.fill(0);
        scratch.resize(out.len(), 0);
        let last = self.prgs.len() - 1;
        for (i, prg) in self.prgs.iter().enumerate() {
            if i == last && !with_last {
                continue;
            }
            expand_at(prg, offset, &mut scratch[..out.len()]);
            if xor {
                for (t, p) in out.iter_mut().zip(scratch.iter()) {
                    *t ^= *p;
                }
            } else {
                sum_into(out, &scratch[..out.len()]);
            }
        }
    }

    /// [`Streams::sum`] into a new vector, in parallel pieces.
    fn sum_all(&self, len: usize, offset: usize, with_last: bool) -> Vec<u64> {
        self.combine_all(len, offset, with_last, false)
    }

    /// [`Streams::combine`] into a new vector, in parallel pieces.
    fn combine_all(&self, len: usize, offset: usize, with_last: bool, xor: bool) -> Vec<u64> {
        let mut out = vec![0u64; len];
        out.par_chunks_mut(CHUNK)
            .enumerate()
            .for_each_init(Vec::new, |scratch, (i, piece)| {
                self.combine(piece, offset + i * CHUNK, with_last, scratch, xor)
            });
        out
    }
}

impl Dealer {
    /// A dealer for `n` parties (at least 2) and the seeds to give them, from `rng`.
    pub fn new(n: usize, rng: &mut impl rand_core::CryptoRng) -> Result<(Self, Vec<Seed>)> {
        if n < 2 {
            return Err(MpcError::InvalidParameter(format!(
                "MPC needs at least 2 parties, not {n}"
            )));
        }
        let seeds: Vec<Seed> = (0..n)
            .map(|_| {
                let mut s = Zeroizing::new([0u8; 32]);
                rng.fill_bytes(s.as_mut());
                s
            })
            .collect();
        Ok((Self::from_seeds(&seeds), seeds))
    }

    /// A dealer replaying the given seeds (from the start of a session).
    pub fn from_seeds(seeds: &[Seed]) -> Self {
        Self {
            seeds: seeds.to_vec(),
            transcript: [0; 32],
        }
    }

    /// The last party's answer to its next request: the correction
    /// ([`Request::correction_len`] elements) followed by the transcript tag of this item for
    /// each of the other parties, in party order. The request is added to the transcript;
    /// every party's stream of this item is keyed by it (see the [module docs](crate::dealer)), expanded
    /// in pieces, in parallel, and summed piece by piece (nothing the size of the request is
    /// allocated per party).
    pub fn correction(&mut self, request: &Request) -> Result<Vec<u64>> {
        request.check()?;
        let parties = self.seeds.len();
        if parties < 2 {
            return Err(MpcError::InvalidParameter(format!(
                "MPC needs at least 2 parties, not {parties}"
            )));
        }
        let (seeded, corrected) = layout(request);
        let transcript = extend_transcript(&self.transcript, request);
        let prgs: Vec<Prg> = self
            .seeds
            .iter()
            .map(|s| item_stream(s, &transcript))
            .collect();
        let streams = Streams { prgs: &prgs };
        let mut answer = vec![0u64; corrected + parties - 1];
        let (out, tags) = answer.split_at_mut(corrected);
        for (t, seed) in tags.iter_mut().zip(&self.seeds) {
            *t = tag(seed, &transcript);
        }
        match *request {
            Request::Triples { n } => {
                out.par_chunks_mut(CHUNK).enumerate().for_each_init(
                    || {
                        (
                            Vec::new(),
                            vec![0u64; CHUNK],
                            vec![0u64; CHUNK],
                            vec![0u64; CHUNK],
                        )
                    },
                    |(scratch, a, b, c), (i, piece)| {
                        let (lo, len) = (i * CHUNK, piece.len());
                        streams.sum(&mut a[..len], lo, true, scratch);
                        streams.sum(&mut b[..len], n + lo, true, scratch);
                        streams.sum(&mut c[..len], 2 * n + lo, false, scratch);
                        for (j, o) in piece.iter_mut().enumerate() {
                            *o = a[j].wrapping_mul(b[j]).wrapping_sub(c[j]);
                        }
                    },
                );
            }
            Request::Squares { n } => {
                out.par_chunks_mut(CHUNK).enumerate().for_each_init(
                    || (Vec::new(), vec![0u64; CHUNK], vec![0u64; CHUNK]),
                    |(scratch, a, aa), (i, piece)| {
                        let (lo, len) = (i * CHUNK, piece.len());
                        streams.sum(&mut a[..len], lo, true, scratch);
                        streams.sum(&mut aa[..len], n + lo, false, scratch);
                        for (j, o) in piece.iter_mut().enumerate() {
                            *o = a[j].wrapping_mul(a[j]).wrapping_sub(aa[j]);
                        }
                    },
                );
            }
            Request::MatrixTriple { m, k, n } => {
                let a = streams.sum_all(m * k, 0, true);
                let b = streams.sum_all(k * n, m * k, true);
                let c = streams.sum_all(m * n, seeded, false);
                let ab = matmul_plain(&a, &b, m, k, n);
                out.par_iter_mut()
                    .zip(ab.par_iter().zip(&c))
                    .for_each(|(o, (p, c))| *o = p.wrapping_sub(*c));
            }
            Request::Comparison { n } => {
                let w = bits::words(n);
                let r = streams.sum_all(n, 0, true);
                let s_bits = streams.combine_all(w, n, true, true);
                let others_bits = streams.combine_all(64 * w, seeded, false, true);
                let others_s = streams.sum_all(n, seeded + 64 * w, false);
                let planes = bits::to_planes(&r);
                let (corr_bits, corr_s) = out.split_at_mut(64 * w);
                corr_bits
                    .par_iter_mut()
                    .zip(planes.par_iter().zip(&others_bits))
                    .for_each(|(o, (p, q))| *o = p ^ q);
                corr_s
                    .par_iter_mut()
                    .enumerate()
                    .zip(&others_s)
                    .for_each(|((i, o), q)| *o = bits::bit(&s_bits, i).wrapping_sub(*q));
            }
            Request::BinaryTriples { words } => {
                let a = streams.combine_all(words, 0, true, true);
                let b = streams.combine_all(words, words, true, true);
                let c = streams.combine_all(words, 2 * words, false, true);
                out.par_iter_mut()
                    .zip(a.par_iter().zip(&b).zip(&c))
                    .for_each(|(o, ((a, b), c))| *o = (a & b) ^ c);
            }
            Request::Truncation { n, frac_bits } => {
                let (shifted, msb) = out.split_at_mut(n);
                shifted
                    .par_chunks_mut(CHUNK)
                    .zip(msb.par_chunks_mut(CHUNK))
                    .enumerate()
                    .for_each_init(
                        || (Vec::new(), vec![0u64; CHUNK]),
                        |(scratch, r), (i, (s_piece, m_piece))| {
                            let (lo, len) = (i * CHUNK, s_piece.len());
                            streams.sum(&mut r[..len], lo, true, scratch);
                            streams.sum(s_piece, n + lo, false, scratch);
                            streams.sum(m_piece, 2 * n + lo, false, scratch);
                            for (j, r) in r[..len].iter().enumerate() {
                                s_piece[j] = (r >> frac_bits).wrapping_sub(s_piece[j]);
                                m_piece[j] = (r >> 63).wrapping_sub(m_piece[j]);
                            }
                        },
                    );
            }
        }
        self.transcript = transcript;
        Ok(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn materials(n: usize, req: &Request) -> Vec<Material> {
        let mut rng = Prg::seed_from_u64(3);
        let (mut dealer, seeds) = Dealer::new(n, &mut rng).unwrap();
        let correction = dealer.correction(req).unwrap();
        seeds
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let last = i == n - 1;
                PartyRandomness::new(s, i, n)
                    .unwrap()
                    .next(req, last.then(|| correction.clone()))
                    .unwrap()
            })
            .collect()
    }

    fn total(parts: &[&Vec<u64>]) -> Vec<u64> {
        let mut t = vec![0u64; parts[0].len()];
        for p in parts {
            sum_into(&mut t, p);
        }
        t
    }

    #[test]
    fn correlations_hold_for_every_party_count() {
        for n in [2, 3, 5] {
            let m = materials(n, &Request::Triples { n: 64 });
            fn pick(i: usize) -> impl Fn(&Material) -> &Vec<u64> {
                move |x| match x {
                    Material::Triple { a, b, c } => [a, b, c][i],
                    _ => unreachable!(),
                }
            }
            let (a, b, c) = (
                total(&m.iter().map(pick(0)).collect::<Vec<_>>()),
                total(&m.iter().map(pick(1)).collect::<Vec<_>>()),
                total(&m.iter().map(pick(2)).collect::<Vec<_>>()),
            );
            for i in 0..64 {
                assert_eq!(c[i], a[i].wrapping_mul(b[i]));
            }

            let m = materials(n, &Request::MatrixTriple { m: 3, k: 4, n: 2 });
            let (a, b, c) = (
                total(&m.iter().map(pick(0)).collect::<Vec<_>>()),
                total(&m.iter().map(pick(1)).collect::<Vec<_>>()),
                total(&m.iter().map(pick(2)).collect::<Vec<_>>()),
            );
            assert_eq!(c, matmul_plain(&a, &b, 3, 4, 2));

            let m = materials(
                n,
                &Request::Truncation {
                    n: 100,
                    frac_bits: 16,
                },
            );
            fn trip(i: usize) -> impl Fn(&Material) -> &Vec<u64> {
                move |x| match x {
                    Material::Truncation { r, shifted, msb } => [r, shifted, msb][i],
                    _ => unreachable!(),
                }
            }
            let (r, s, msb) = (
                total(&m.iter().map(trip(0)).collect::<Vec<_>>()),
                total(&m.iter().map(trip(1)).collect::<Vec<_>>()),
                total(&m.iter().map(trip(2)).collect::<Vec<_>>()),
            );
            for i in 0..100 {
                assert_eq!(s[i], r[i] >> 16);
                assert_eq!(msb[i], r[i] >> 63);
            }
        }
    }

    fn xor_total(parts: &[&Vec<u64>]) -> Vec<u64> {
        let mut t = vec![0u64; parts[0].len()];
        for p in parts {
            for (t, p) in t.iter_mut().zip(p.iter()) {
                *t ^= p;
            }
        }
        t
    }

    #[test]
    fn comparison_masks_carry_their_bits_and_dabits() {
        for n in [2, 3, 5] {
            let count = 100;
            let m = materials(n, &Request::Comparison { n: count });
            fn part(i: usize) -> impl Fn(&Material) -> &Vec<u64> {
                move |x| match x {
                    Material::Comparison {
                        r,
                        s_bits,
                        r_bits,
                        s,
                    } => [r, s_bits, r_bits, s][i],
                    _ => unreachable!(),
                }
            }
            let r = total(&m.iter().map(part(0)).collect::<Vec<_>>());
            let s_bits = xor_total(&m.iter().map(part(1)).collect::<Vec<_>>());
            let r_bits = xor_total(&m.iter().map(part(2)).collect::<Vec<_>>());
            let s = total(&m.iter().map(part(3)).collect::<Vec<_>>());
            let w = bits::words(count);
            for i in 0..count {
                for j in 0..64 {
                    assert_eq!(bits::bit(&r_bits[j * w..(j + 1) * w], i), (r[i] >> j) & 1);
                }
                assert_eq!(s[i], bits::bit(&s_bits, i), "daBit {i}");
            }
            // The random bits are not all equal.
            assert!(s.contains(&1) && s.contains(&0));

            let m = materials(n, &Request::BinaryTriples { words: 7 });
            fn bt(i: usize) -> impl Fn(&Material) -> &Vec<u64> {
                move |x| match x {
                    Material::BinaryTriple { a, b, c } => [a, b, c][i],
                    _ => unreachable!(),
                }
            }
            let a = xor_total(&m.iter().map(bt(0)).collect::<Vec<_>>());
            let b = xor_total(&m.iter().map(bt(1)).collect::<Vec<_>>());
            let c = xor_total(&m.iter().map(bt(2)).collect::<Vec<_>>());
            for k in 0..7 {
                assert_eq!(c[k], a[k] & b[k]);
            }
        }
    }

    #[test]
    fn bad_requests_and_corrections_are_errors() {
        let mut rng = Prg::seed_from_u64(4);
        let (mut dealer, seeds) = Dealer::new(2, &mut rng).unwrap();
        assert!(dealer
            .correction(&Request::Triples { n: MAX_REQUEST })
            .is_err());
        assert!(dealer
            .correction(&Request::Truncation { n: 1, frac_bits: 0 })
            .is_err());
        let mut last = PartyRandomness::new(&seeds[1], 1, 2).unwrap();
        assert!(last.next(&Request::Triples { n: 2 }, None).is_err());
        assert!(last
            .next(&Request::Triples { n: 2 }, Some(vec![1]))
            .is_err());
        // The correction without its transcript tag.
        assert!(last
            .next(&Request::Triples { n: 2 }, Some(vec![1, 2]))
            .is_err());
        let mut first = PartyRandomness::new(&seeds[0], 0, 2).unwrap();
        let mut m = first.seeded(&Request::Squares { n: 1 }).unwrap();
        assert!(first
            .complete(&Request::Squares { n: 1 }, &mut m, None)
            .is_ok());
        // Nothing left to complete.
        assert!(first
            .complete(&Request::Squares { n: 1 }, &mut m, None)
            .is_err());
        assert!(Dealer::new(1, &mut rng).is_err());
        assert!(Dealer::from_seeds(&seeds[..1])
            .correction(&Request::Triples { n: 1 })
            .is_err());
        assert!(PartyRandomness::new(&seeds[0], 2, 2).is_err());
        assert!(PartyRandomness::new(&seeds[0], 0, 1).is_err());
    }

    /// Two parties and the dealer, over a sequence of items.
    struct Session {
        dealer: Dealer,
        first: PartyRandomness,
        last: PartyRandomness,
    }

    impl Session {
        fn new(seed: u64) -> Self {
            let (dealer, seeds) = Dealer::new(2, &mut Prg::seed_from_u64(seed)).unwrap();
            Self {
                dealer,
                first: PartyRandomness::new(&seeds[0], 0, 2).unwrap(),
                last: PartyRandomness::new(&seeds[1], 1, 2).unwrap(),
            }
        }

        /// Party 0 takes `taken`; the last party asks for `asked` and takes it.
        fn item(&mut self, taken: &Request, asked: &Request) -> (Material, Material) {
            let correction = self.dealer.correction(asked).unwrap();
            (
                self.first.next(taken, None).unwrap(),
                self.last.next(asked, Some(correction)).unwrap(),
            )
        }
    }

    fn triple(m: &Material) -> (&[u64], &[u64], &[u64]) {
        match m {
            Material::Triple { a, b, c } => (a.as_slice(), b.as_slice(), c.as_slice()),
            _ => unreachable!(),
        }
    }

    #[test]
    fn items_in_sequence_keep_their_correlations_and_tags_agree() {
        let mut s = Session::new(5);
        let requests = [
            Request::Truncation {
                n: 10,
                frac_bits: 16,
            },
            Request::Comparison { n: 70 },
            Request::Triples { n: 33 },
        ];
        for r in &requests {
            s.item(r, r);
            assert_eq!(s.first.transcript_tag(0), s.last.transcript_tag(0));
        }
        let (x, y) = s.item(&requests[2], &requests[2]);
        let ((a0, b0, c0), (a1, b1, c1)) = (triple(&x), triple(&y));
        for i in 0..33 {
            let a = a0[i].wrapping_add(a1[i]);
            let b = b0[i].wrapping_add(b1[i]);
            assert_eq!(c0[i].wrapping_add(c1[i]), a.wrapping_mul(b));
        }
        assert_eq!(s.first.completed(), 4);
        assert_eq!(s.first.transcript_tag(0), s.last.transcript_tag(0));
        assert!(s.first.transcript_tag(1).is_none() && s.last.transcript_tag(1).is_none());
    }

    #[test]
    fn a_request_the_others_did_not_take_tells_nothing_of_their_masks() {
        // Party 0 takes 64 triples; the last party asks for a 1 × 0 by 0 × 64 matrix triple,
        // whose product is zero: its correction is minus party 0's words of that item. With
        // streams keyed by the transcript those are words of another item, which party 0 never
        // expands: nothing of a₀, b₀ or c₀.
        let mut s = Session::new(6);
        let asked = Request::MatrixTriple { m: 1, k: 0, n: 64 };
        let correction = s.dealer.correction(&asked).unwrap();
        let mine = s.first.next(&Request::Triples { n: 64 }, None).unwrap();
        let (a0, b0, c0) = triple(&mine);
        for part in [a0, b0, c0] {
            let same = part
                .iter()
                .filter(|w| correction.contains(&w.wrapping_neg()))
                .count();
            assert_eq!(same, 0);
        }
        // The same request after a different earlier one is another item too.
        let mut s = Session::new(7);
        s.item(&Request::Squares { n: 4 }, &Request::Squares { n: 5 });
        let (x, y) = s.item(&Request::Triples { n: 16 }, &Request::Triples { n: 16 });
        let ((a0, b0, c0), (a1, b1, c1)) = (triple(&x), triple(&y));
        let broken = (0..16)
            .filter(|&i| {
                let a = a0[i].wrapping_add(a1[i]);
                let b = b0[i].wrapping_add(b1[i]);
                c0[i].wrapping_add(c1[i]) != a.wrapping_mul(b)
            })
            .count();
        assert_eq!(broken, 16);
        // And the tags tell party 0 that the transcripts differ.
        assert_ne!(s.first.transcript_tag(0), s.last.transcript_tag(0));
    }
}
