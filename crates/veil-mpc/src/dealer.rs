//! The dealer: correlated randomness from a third party that sees no data.
//!
//! Every party's part of every item is expanded, in order, from a 32-byte seed (ChaCha20) the
//! dealer gave it; the dealer expands the same streams, so for the first `N - 1` parties
//! nothing but the seed ever crosses the network. The last party's share of each derived value
//! (the product of a triple, the shifted mask of a truncation pair) is a **correction** the
//! dealer computes and sends: one ring element per item.

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use zeroize::Zeroizing;

use crate::error::{MpcError, Result};
use crate::protocol::matmul_plain;

/// Bit widths of the chunks of a comparison mask's low 63 bits, least significant first.
pub const COMPARISON_CHUNKS: [u32; 16] = [4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 3];
/// Elements of one mask's one-hot chunk encodings (`Σ 2^width`).
pub const ONE_HOT_LEN: usize = 15 * 16 + 8;

/// The one-hot encodings of the chunks of `r`'s low 63 bits, concatenated.
pub fn one_hot_chunks(r: u64) -> [u64; ONE_HOT_LEN] {
    let mut out = [0u64; ONE_HOT_LEN];
    let (mut shift, mut offset) = (0u32, 0usize);
    for w in COMPARISON_CHUNKS {
        let v = ((r >> shift) & ((1u64 << w) - 1)) as usize;
        out[offset + v] = 1;
        shift += w;
        offset += 1 << w;
    }
    out
}

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
    /// `n` comparison masks: `r`, the one-hot encoding of each chunk of `r`'s low 63 bits
    /// ([`COMPARISON_CHUNKS`]), and `r`'s top bit.
    Comparison {
        /// How many.
        n: usize,
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
            Self::Comparison { n } => n.saturating_mul(ONE_HOT_LEN + 1),
        }
    }

    fn check(&self) -> Result<()> {
        let total = match *self {
            Self::Triples { n } => n.saturating_mul(3),
            Self::Squares { n } => n.saturating_mul(2),
            Self::MatrixTriple { m, k, n } => m
                .saturating_mul(k)
                .saturating_add(k.saturating_mul(n))
                .saturating_add(m.saturating_mul(n)),
            Self::Comparison { n } => n.saturating_mul(ONE_HOT_LEN + 2),
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
    /// Shares of `r`, of the one-hot chunk encodings of its low 63 bits (`n ×`
    /// [`ONE_HOT_LEN`], element-major), and of its top bit.
    Comparison {
        /// r.
        r: Vec<u64>,
        /// One-hot chunks.
        one_hot: Vec<u64>,
        /// Top bit of r (0 or 1).
        msb: Vec<u64>,
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

/// A party's stream of correlated randomness.
pub struct PartyRandomness {
    prg: ChaCha20Rng,
    last: bool,
}

impl std::fmt::Debug for PartyRandomness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartyRandomness")
            .field("last", &self.last)
            .finish_non_exhaustive()
    }
}

fn draw(prg: &mut ChaCha20Rng, n: usize) -> Vec<u64> {
    (0..n).map(|_| prg.next_u64()).collect()
}

impl PartyRandomness {
    /// The stream of a party from its seed; `last` for the party that receives corrections.
    pub fn new(seed: &[u8; 32], last: bool) -> Self {
        Self {
            prg: ChaCha20Rng::from_seed(*seed),
            last,
        }
    }

    /// Whether this party receives corrections.
    pub fn is_last(&self) -> bool {
        self.last
    }

    /// This party's share of the next item: expanded from the seed, plus the dealer's
    /// correction for the last party.
    pub fn next(&mut self, request: &Request, correction: Option<Vec<u64>>) -> Result<Material> {
        request.check()?;
        let corrected = |len: usize, prg: &mut ChaCha20Rng, last: bool| -> Result<Vec<u64>> {
            if !last {
                return Ok(draw(prg, len));
            }
            match &correction {
                Some(c) if c.len() == request.correction_len() => Ok(c.clone()),
                Some(c) => Err(MpcError::Dealer(format!(
                    "correction of {} elements where {} were expected",
                    c.len(),
                    request.correction_len()
                ))),
                None => Err(MpcError::Dealer("the last party got no correction".into())),
            }
        };
        Ok(match *request {
            Request::Triples { n } => {
                let a = draw(&mut self.prg, n);
                let b = draw(&mut self.prg, n);
                let c = corrected(n, &mut self.prg, self.last)?;
                Material::Triple { a, b, c }
            }
            Request::Squares { n } => {
                let a = draw(&mut self.prg, n);
                let aa = corrected(n, &mut self.prg, self.last)?;
                Material::Square { a, aa }
            }
            Request::MatrixTriple { m, k, n } => {
                let a = draw(&mut self.prg, m * k);
                let b = draw(&mut self.prg, k * n);
                let c = corrected(m * n, &mut self.prg, self.last)?;
                Material::Triple { a, b, c }
            }
            Request::Comparison { n } => {
                let r = draw(&mut self.prg, n);
                let mut both = corrected(n * (ONE_HOT_LEN + 1), &mut self.prg, self.last)?;
                let msb = both.split_off(n * ONE_HOT_LEN);
                Material::Comparison {
                    r,
                    one_hot: both,
                    msb,
                }
            }
            Request::Truncation { n, .. } => {
                let r = draw(&mut self.prg, n);
                let both = corrected(2 * n, &mut self.prg, self.last)?;
                let (shifted, msb) = both.split_at(n);
                Material::Truncation {
                    r,
                    shifted: shifted.to_vec(),
                    msb: msb.to_vec(),
                }
            }
        })
    }
}

/// The dealer: replicas of every party's stream.
pub struct Dealer {
    parties: Vec<ChaCha20Rng>,
}

impl std::fmt::Debug for Dealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dealer")
            .field("parties", &self.parties.len())
            .finish()
    }
}

fn sum_into(total: &mut [u64], part: &[u64]) {
    for (t, p) in total.iter_mut().zip(part) {
        *t = t.wrapping_add(*p);
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

    /// A dealer replaying the given seeds.
    pub fn from_seeds(seeds: &[Seed]) -> Self {
        Self {
            parties: seeds.iter().map(|s| ChaCha20Rng::from_seed(**s)).collect(),
        }
    }

    /// The last party's correction for the next item.
    pub fn correction(&mut self, request: &Request) -> Result<Vec<u64>> {
        request.check()?;
        let last = self.parties.len() - 1;
        match *request {
            Request::Triples { n } => {
                let (mut a, mut b, mut c) = (vec![0u64; n], vec![0u64; n], vec![0u64; n]);
                for (i, prg) in self.parties.iter_mut().enumerate() {
                    sum_into(&mut a, &draw(prg, n));
                    sum_into(&mut b, &draw(prg, n));
                    if i != last {
                        sum_into(&mut c, &draw(prg, n));
                    }
                }
                Ok(a.iter()
                    .zip(&b)
                    .zip(&c)
                    .map(|((a, b), c)| a.wrapping_mul(*b).wrapping_sub(*c))
                    .collect())
            }
            Request::MatrixTriple { m, k, n } => {
                let (mut a, mut b, mut c) =
                    (vec![0u64; m * k], vec![0u64; k * n], vec![0u64; m * n]);
                for (i, prg) in self.parties.iter_mut().enumerate() {
                    sum_into(&mut a, &draw(prg, m * k));
                    sum_into(&mut b, &draw(prg, k * n));
                    if i != last {
                        sum_into(&mut c, &draw(prg, m * n));
                    }
                }
                let ab = matmul_plain(&a, &b, m, k, n);
                Ok(ab.iter().zip(&c).map(|(p, c)| p.wrapping_sub(*c)).collect())
            }
            Request::Squares { n } => {
                let (mut a, mut aa) = (vec![0u64; n], vec![0u64; n]);
                for (i, prg) in self.parties.iter_mut().enumerate() {
                    sum_into(&mut a, &draw(prg, n));
                    if i != last {
                        sum_into(&mut aa, &draw(prg, n));
                    }
                }
                Ok(a.iter()
                    .zip(&aa)
                    .map(|(a, s)| a.wrapping_mul(*a).wrapping_sub(*s))
                    .collect())
            }
            Request::Comparison { n } => {
                let len = n * (ONE_HOT_LEN + 1);
                let (mut r, mut others) = (vec![0u64; n], vec![0u64; len]);
                for (i, prg) in self.parties.iter_mut().enumerate() {
                    sum_into(&mut r, &draw(prg, n));
                    if i != last {
                        sum_into(&mut others, &draw(prg, len));
                    }
                }
                let mut want = Vec::with_capacity(len);
                for r in &r {
                    want.extend_from_slice(&one_hot_chunks(*r));
                }
                want.extend(r.iter().map(|r| r >> 63));
                Ok(want
                    .iter()
                    .zip(&others)
                    .map(|(w, o)| w.wrapping_sub(*o))
                    .collect())
            }
            Request::Truncation { n, frac_bits } => {
                let (mut r, mut shifted, mut msb) = (vec![0u64; n], vec![0u64; n], vec![0u64; n]);
                for (i, prg) in self.parties.iter_mut().enumerate() {
                    sum_into(&mut r, &draw(prg, n));
                    if i != last {
                        sum_into(&mut shifted, &draw(prg, n));
                        sum_into(&mut msb, &draw(prg, n));
                    }
                }
                let mut out: Vec<u64> = r
                    .iter()
                    .zip(&shifted)
                    .map(|(r, s)| (r >> frac_bits).wrapping_sub(*s))
                    .collect();
                out.extend(r.iter().zip(&msb).map(|(r, m)| (r >> 63).wrapping_sub(*m)));
                Ok(out)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn materials(n: usize, req: &Request) -> Vec<Material> {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let (mut dealer, seeds) = Dealer::new(n, &mut rng).unwrap();
        let correction = dealer.correction(req).unwrap();
        seeds
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let last = i == n - 1;
                PartyRandomness::new(s, last)
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

    #[test]
    fn comparison_masks_encode_their_chunks() {
        for n in [2, 3] {
            let m = materials(n, &Request::Comparison { n: 20 });
            fn part(i: usize) -> impl Fn(&Material) -> &Vec<u64> {
                move |x| match x {
                    Material::Comparison { r, one_hot, msb } => [r, one_hot, msb][i],
                    _ => unreachable!(),
                }
            }
            let r = total(&m.iter().map(part(0)).collect::<Vec<_>>());
            let oh = total(&m.iter().map(part(1)).collect::<Vec<_>>());
            let msb = total(&m.iter().map(part(2)).collect::<Vec<_>>());
            for i in 0..20 {
                assert_eq!(
                    &oh[i * ONE_HOT_LEN..(i + 1) * ONE_HOT_LEN],
                    &one_hot_chunks(r[i])
                );
                assert_eq!(msb[i], r[i] >> 63);
            }
        }
        assert_eq!(one_hot_chunks(0).iter().sum::<u64>(), 16);
    }

    #[test]
    fn bad_requests_and_corrections_are_errors() {
        let mut rng = ChaCha20Rng::seed_from_u64(4);
        let (mut dealer, seeds) = Dealer::new(2, &mut rng).unwrap();
        assert!(dealer
            .correction(&Request::Triples { n: MAX_REQUEST })
            .is_err());
        assert!(dealer
            .correction(&Request::Truncation { n: 1, frac_bits: 0 })
            .is_err());
        let mut last = PartyRandomness::new(&seeds[1], true);
        assert!(last.next(&Request::Triples { n: 2 }, None).is_err());
        assert!(last
            .next(&Request::Triples { n: 2 }, Some(vec![1]))
            .is_err());
        assert!(Dealer::new(1, &mut rng).is_err());
    }
}
