//! Three parties and no dealer: replicated secret sharing (2-out-of-3) over `Z_2^64`.
//!
//! A value `x = x_0 + x_1 + x_2` is held as **pairs**: party `i` holds `(x_i, x_{i+1})`
//! (indices mod 3), so any two parties together can reconstruct it and any one sees two
//! uniformly random ring elements. This is the sharing of ABY3 and Falcon.
//!
//! # Correlated randomness without a dealer
//!
//! At start-up party `i` draws a 32-byte key `k_i` and sends it to party `i − 1`; party `i`
//! then holds `k_i` and `k_{i+1}`. Each key seeds a ChaCha12 stream that the two parties
//! holding it draw in lock step. From them, without a message:
//!
//! - a random sharing: party `i` takes `(F(k_i), F(k_{i+1}))`;
//! - a zero sharing: party `i` takes `α_i = F(k_i) − F(k_{i+1})` (`Σ α_i = 0`), or with XOR
//!   for bits.
//!
//! # Operations
//!
//! | operation | rounds | elements sent per output element (all parties) |
//! |---|---|---|
//! | input by one party | 1 | 2 |
//! | open to all / to one | 1 | 3 / 1 |
//! | add, subtract, multiply by a public integer | 0 | 0 |
//! | ring product (no truncation) | 1 | 3 |
//! | fixed-point product, square, matrix product (truncated) | 2 | 8 |
//! | truncation of a sharing | 2 | 8 |
//! | `[x < 0]`, ReLU | 10, 11 | about 25 |
//!
//! A product is local (`z_i = x_i y_i + x_i y_{i+1} + x_{i+1} y_i + α_i`, a 3-out-of-3
//! sharing) and a matrix product is too: its communication is the size of its **output**,
//! where a Beaver matrix triple opens both inputs.
//!
//! **Truncation** (exact up to one unit in the last place, for `|x| < 2^62`, like the
//! dealer's): party 2 acts as a helper. It draws a uniform mask `r` and gives parties 0 and 1
//! additive shares of `r >> f` and of `r`'s top bit, derived from the key it shares with
//! party 0 plus one correction to party 1; parties 0 and 1 both learn `c = x + 2^62 + r`
//! (uniform), from which `x >> f` follows as in the dealer's protocol; a second round turns
//! their two shares back into pairs, masked by keys party 2 (resp. 1) lacks.
//!
//! **Comparison**: the three parts `x_0, x_1, x_2` are each known to two parties, hence a
//! bitwise XOR sharing of each is local; a carry-save adder (one round of AND gates) reduces
//! them to two words, a Kogge–Stone prefix adder (7 rounds, 64 gates per word at once) gives
//! the top bit of their sum, and two rounds turn that bit into an arithmetic sharing.
//!
//! # Security model
//!
//! **Honest majority, semi-honest**: the three parties follow the protocol; any **one** of
//! them learns nothing beyond its inputs and what is revealed to it (every message it
//! receives is masked by a stream or a value it does not know). **Any two together learn
//! everything** — each holds two of the three parts — so the three parties must be run by
//! three organisations that do not collude. There is no dealer: compared with the dealer
//! family (where the dealer and any one party learn everything), nobody outside the three
//! computing parties is trusted, and the third party may itself bring data. No integrity: a
//! party that deviates can change results undetected (no MACs; malicious security with abort
//! is not implemented).

use rand_chacha::ChaCha12Rng;
use rand_core::{RngCore, SeedableRng};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::error::{MpcError, Result};
use crate::fixed::FixedPoint;
use crate::protocol::{matmul_plain, Exchange, OpStats};

/// This party's pair `(x_i, x_{i+1})` of a replicated sharing (zeroized on drop).
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct Rep {
    a: Vec<u64>,
    b: Vec<u64>,
}

impl std::fmt::Debug for Rep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Rep(len {})", self.a.len())
    }
}

impl Rep {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.a.len()
    }

    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.a.is_empty()
    }

    /// Elements `range` (local).
    pub fn slice(&self, range: std::ops::Range<usize>) -> Rep {
        Rep {
            a: self.a[range.clone()].to_vec(),
            b: self.b[range].to_vec(),
        }
    }

    /// The elements at `idx`, in that order (local).
    pub fn gather(&self, idx: &[usize]) -> Rep {
        Rep {
            a: idx.iter().map(|&k| self.a[k]).collect(),
            b: idx.iter().map(|&k| self.b[k]).collect(),
        }
    }

    /// Elements `idx`, a public zero where `None` (local).
    pub fn gather_or_zero(&self, idx: &[Option<usize>]) -> Rep {
        Rep {
            a: idx.iter().map(|k| k.map_or(0, |k| self.a[k])).collect(),
            b: idx.iter().map(|k| k.map_or(0, |k| self.b[k])).collect(),
        }
    }

    /// **Hazmat, for tests of what a party can see**: this party's two parts `(x_i, x_{i+1})`.
    #[doc(hidden)]
    pub fn hazmat_parts(&self) -> (&[u64], &[u64]) {
        (&self.a, &self.b)
    }

    /// The sharings one after the other (local).
    pub fn concat(parts: &[&Rep]) -> Rep {
        Rep {
            a: parts.iter().flat_map(|p| p.a.iter().copied()).collect(),
            b: parts.iter().flat_map(|p| p.b.iter().copied()).collect(),
        }
    }

    /// Per window, the sum of the elements it lists (local).
    pub fn sum_windows(&self, windows: &[Vec<usize>]) -> Rep {
        let sum = |v: &[u64], w: &[usize]| w.iter().fold(0u64, |acc, &k| acc.wrapping_add(v[k]));
        Rep {
            a: windows.iter().map(|w| sum(&self.a, w)).collect(),
            b: windows.iter().map(|w| sum(&self.b, w)).collect(),
        }
    }

    fn map2(&self, y: &Rep, f: impl Fn(u64, u64) -> u64) -> Rep {
        Rep {
            a: self.a.iter().zip(&y.a).map(|(p, q)| f(*p, *q)).collect(),
            b: self.b.iter().zip(&y.b).map(|(p, q)| f(*p, *q)).collect(),
        }
    }

    fn map(&self, f: impl Fn(u64) -> u64) -> Rep {
        Rep {
            a: self.a.iter().map(|v| f(*v)).collect(),
            b: self.b.iter().map(|v| f(*v)).collect(),
        }
    }
}

/// Offset that makes `|x| < 2^62` non-negative before a truncation.
const OFFSET: u64 = 1 << 62;

/// One of three parties of the dealer-free protocol.
pub struct Rss<E: Exchange> {
    ex: E,
    me: usize,
    fixed: FixedPoint,
    /// Stream of `k_i`, shared with party `i − 1`.
    mine: ChaCha12Rng,
    /// Stream of `k_{i+1}`, shared with party `i + 1`.
    next: ChaCha12Rng,
    /// This party's private randomness (the helper's masks).
    own: ChaCha12Rng,
    stats: OpStats,
}

impl<E: Exchange> std::fmt::Debug for Rss<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Rss(party {} of 3)", self.me)
    }
}

fn draw(rng: &mut ChaCha12Rng, n: usize) -> Vec<u64> {
    let mut out = vec![0u64; n];
    rng.fill_bytes(bytemuck::cast_slice_mut(&mut out));
    out
}

fn os_seed() -> Result<[u8; 32]> {
    let mut seed = [0u8; 32];
    let mut os = rand_core::OsRng;
    rand_core::TryRngCore::try_fill_bytes(&mut os, &mut seed)
        .map_err(|e| MpcError::InvalidParameter(format!("no OS randomness: {e}")))?;
    Ok(seed)
}

impl<E: Exchange> Rss<E> {
    /// Joins a three-party session: exchanges the PRF keys (one round).
    pub fn new(mut ex: E, fixed: FixedPoint) -> Result<Self> {
        if ex.parties() != 3 {
            return Err(MpcError::InvalidParameter(format!(
                "the replicated protocol runs with exactly 3 parties, not {}",
                ex.parties()
            )));
        }
        let me = ex.id();
        let mut key = os_seed()?;
        let words: Vec<u64> = key
            .chunks(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()))
            .collect();
        let mut out = vec![Vec::new(); 3];
        out[(me + 2) % 3] = words;
        let mut incoming = ex.exchange("rss keys", out)?;
        let got = std::mem::take(&mut incoming[(me + 1) % 3]);
        if got.len() != 4 {
            return Err(MpcError::Malformed {
                party: (me + 1) % 3,
                phase: "rss keys".into(),
                why: format!("a key of {} words", got.len()),
            });
        }
        let mut next_key = [0u8; 32];
        for (c, w) in next_key.chunks_mut(8).zip(&got) {
            c.copy_from_slice(&w.to_le_bytes());
        }
        let own = ChaCha12Rng::from_seed(os_seed()?);
        let party = Self {
            ex,
            me,
            fixed,
            mine: ChaCha12Rng::from_seed(key),
            next: ChaCha12Rng::from_seed(next_key),
            own,
            stats: OpStats::default(),
        };
        key.zeroize();
        next_key.zeroize();
        Ok(party)
    }

    /// This party's index (0, 1 or 2).
    pub fn id(&self) -> usize {
        self.me
    }

    /// The fixed-point format.
    pub fn fixed(&self) -> FixedPoint {
        self.fixed
    }

    /// Rounds and bytes sent so far.
    pub fn stats(&self) -> OpStats {
        self.stats
    }

    /// The exchange (to finish a network session).
    pub fn exchange_mut(&mut self) -> &mut E {
        &mut self.ex
    }

    fn round(&mut self, phase: &str, out: Vec<Vec<u64>>) -> Result<Vec<Vec<u64>>> {
        self.stats.rounds += 1;
        self.stats.calls += 1;
        self.stats.bytes_sent += out.iter().map(|m| 8 * m.len() as u64).sum::<u64>();
        self.ex.exchange(phase, out)
    }

    /// One round: sends each `(to, message)`; returns what each party sent.
    fn send(&mut self, phase: &str, sends: Vec<(usize, Vec<u64>)>) -> Result<Vec<Vec<u64>>> {
        let mut out = vec![Vec::new(); 3];
        for (to, msg) in sends {
            out[to] = msg;
        }
        self.round(phase, out)
    }

    /// Party `j`'s message of a round, checked to hold `want` elements.
    fn take(incoming: &mut [Vec<u64>], j: usize, want: usize, phase: &str) -> Result<Vec<u64>> {
        let got = std::mem::take(&mut incoming[j]);
        if got.len() != want {
            return Err(MpcError::Malformed {
                party: j,
                phase: phase.into(),
                why: format!("{} elements where {want} were expected", got.len()),
            });
        }
        Ok(got)
    }

    /// One round: sends each `(to, message)`, returns `from`'s message (of `want` elements).
    fn send_recv(
        &mut self,
        phase: &str,
        sends: Vec<(usize, Vec<u64>)>,
        from: Option<usize>,
        want: usize,
    ) -> Result<Vec<u64>> {
        let mut incoming = self.send(phase, sends)?;
        match from {
            Some(j) => Self::take(&mut incoming, j, want, phase),
            None => Ok(Vec::new()),
        }
    }

    /// Every party announces a length (one round); the lengths in party order.
    pub fn exchange_lengths(&mut self, mine: usize) -> Result<Vec<usize>> {
        let me = self.me;
        let msg = vec![mine as u64];
        let sends = (0..3)
            .filter(|&j| j != me)
            .map(|j| (j, msg.clone()))
            .collect();
        let mut incoming = self.send("lengths", sends)?;
        (0..3)
            .map(|j| {
                if j == me {
                    return Ok(mine);
                }
                match Self::take(&mut incoming, j, 1, "lengths")?.as_slice() {
                    [len] if *len <= crate::dealer::MAX_REQUEST as u64 => Ok(*len as usize),
                    _ => Err(MpcError::Malformed {
                        party: j,
                        phase: "lengths".into(),
                        why: "not a length".into(),
                    }),
                }
            })
            .collect()
    }

    /// Another party's ring elements as this party's input sharing (one round): the owner
    /// passes `values`, the others `None`.
    pub fn input_raw(&mut self, owner: usize, values: Option<&[u64]>, n: usize) -> Result<Rep> {
        if owner > 2 {
            return Err(MpcError::InvalidParameter(format!("party {owner} of 3")));
        }
        let me = self.me;
        if me == owner {
            let x = values.ok_or_else(|| {
                MpcError::InvalidParameter("the owner must give its values".into())
            })?;
            if x.len() != n {
                return Err(MpcError::Shape(format!("{} values for {n}", x.len())));
            }
            let s0 = draw(&mut self.mine, n);
            let s1 = draw(&mut self.next, n);
            let s2: Vec<u64> = (0..n)
                .map(|i| x[i].wrapping_sub(s0[i]).wrapping_sub(s1[i]))
                .collect();
            self.send_recv(
                "input",
                vec![((me + 1) % 3, s2.clone()), ((me + 2) % 3, s2)],
                None,
                0,
            )?;
            Ok(Rep { a: s0, b: s1 })
        } else if me == (owner + 1) % 3 {
            let s1 = draw(&mut self.mine, n);
            let s2 = self.send_recv("input", Vec::new(), Some(owner), n)?;
            Ok(Rep { a: s1, b: s2 })
        } else {
            let s0 = draw(&mut self.next, n);
            let s2 = self.send_recv("input", Vec::new(), Some(owner), n)?;
            Ok(Rep { a: s2, b: s0 })
        }
    }

    /// Fixed-point input (see [`Rss::input_raw`]).
    pub fn input(&mut self, owner: usize, values: Option<&[f64]>, n: usize) -> Result<Rep> {
        let encoded = match values {
            Some(v) if self.me == owner => Some(self.fixed.encode_all(v)?),
            _ => None,
        };
        self.input_raw(owner, encoded.as_deref(), n)
    }

    /// Every party learns the ring elements (one round).
    pub fn open_raw(&mut self, x: &Rep) -> Result<Vec<u64>> {
        let me = self.me;
        let n = x.len();
        let got = self.send_recv(
            "open",
            vec![((me + 1) % 3, x.a.clone())],
            Some((me + 2) % 3),
            n,
        )?;
        Ok((0..n)
            .map(|i| x.a[i].wrapping_add(x.b[i]).wrapping_add(got[i]))
            .collect())
    }

    /// Every party learns the fixed-point values.
    pub fn open(&mut self, x: &Rep) -> Result<Vec<f64>> {
        let raw = self.open_raw(x)?;
        Ok(self.fixed.decode_all(&raw))
    }

    /// Only party `to` learns the ring elements (one round; `Some` there, `None` elsewhere).
    pub fn reveal_to_raw(&mut self, x: &Rep, to: usize) -> Result<Option<Vec<u64>>> {
        if to > 2 {
            return Err(MpcError::InvalidParameter(format!("party {to} of 3")));
        }
        let me = self.me;
        let n = x.len();
        if me == (to + 2) % 3 {
            self.send_recv("reveal", vec![(to, x.a.clone())], None, 0)?;
            return Ok(None);
        }
        if me != to {
            self.send_recv("reveal", Vec::new(), None, 0)?;
            return Ok(None);
        }
        let got = self.send_recv("reveal", Vec::new(), Some((to + 2) % 3), n)?;
        Ok(Some(
            (0..n)
                .map(|i| x.a[i].wrapping_add(x.b[i]).wrapping_add(got[i]))
                .collect(),
        ))
    }

    /// Only party `to` learns the fixed-point values.
    pub fn reveal_to(&mut self, x: &Rep, to: usize) -> Result<Option<Vec<f64>>> {
        Ok(self
            .reveal_to_raw(x, to)?
            .map(|v| self.fixed.decode_all(&v)))
    }

    fn same(x: &Rep, y: &Rep) -> Result<()> {
        if x.len() != y.len() {
            return Err(MpcError::Shape(format!(
                "{} and {} elements",
                x.len(),
                y.len()
            )));
        }
        Ok(())
    }

    /// `x + y` (local).
    pub fn add(&self, x: &Rep, y: &Rep) -> Result<Rep> {
        Self::same(x, y)?;
        Ok(x.map2(y, u64::wrapping_add))
    }

    /// `x − y` (local).
    pub fn sub(&self, x: &Rep, y: &Rep) -> Result<Rep> {
        Self::same(x, y)?;
        Ok(x.map2(y, u64::wrapping_sub))
    }

    /// Public ring elements as a sharing (part 0 holds them; local).
    pub fn constant_raw(&self, c: &[u64]) -> Rep {
        let zero = vec![0u64; c.len()];
        match self.me {
            0 => Rep {
                a: c.to_vec(),
                b: zero,
            },
            2 => Rep {
                a: zero,
                b: c.to_vec(),
            },
            _ => Rep {
                a: zero.clone(),
                b: zero,
            },
        }
    }

    /// Public fixed-point values as a sharing.
    pub fn constant(&self, c: &[f64]) -> Result<Rep> {
        Ok(self.constant_raw(&self.fixed.encode_all(c)?))
    }

    /// `x + c` for public ring elements `c` (local).
    pub fn add_public_raw(&self, x: &Rep, c: &[u64]) -> Result<Rep> {
        if c.len() != x.len() {
            return Err(MpcError::Shape(format!(
                "{} constants for {}",
                c.len(),
                x.len()
            )));
        }
        self.add(x, &self.constant_raw(c))
    }

    /// `x + c` for public reals (local).
    pub fn add_public(&self, x: &Rep, c: &[f64]) -> Result<Rep> {
        self.add_public_raw(x, &self.fixed.encode_all(c)?)
    }

    /// `x · k` for public integers (local).
    pub fn mul_public_int(&self, x: &Rep, k: &[i64]) -> Result<Rep> {
        if k.len() != x.len() {
            return Err(MpcError::Shape(format!(
                "{} factors for {}",
                k.len(),
                x.len()
            )));
        }
        Ok(Rep {
            a: x.a
                .iter()
                .zip(k)
                .map(|(v, k)| v.wrapping_mul(*k as u64))
                .collect(),
            b: x.b
                .iter()
                .zip(k)
                .map(|(v, k)| v.wrapping_mul(*k as u64))
                .collect(),
        })
    }

    /// A fresh arithmetic zero sharing's part `α_i` (3-out-of-3).
    fn zero(&mut self, n: usize) -> Vec<u64> {
        let p = draw(&mut self.mine, n);
        let q = draw(&mut self.next, n);
        p.iter().zip(&q).map(|(p, q)| p.wrapping_sub(*q)).collect()
    }

    /// From a 3-out-of-3 additive sharing back to pairs (one round).
    fn reshare(&mut self, z: Vec<u64>, phase: &str) -> Result<Rep> {
        let me = self.me;
        let n = z.len();
        let got = self.send_recv(
            phase,
            vec![((me + 2) % 3, z.clone())],
            Some((me + 1) % 3),
            n,
        )?;
        Ok(Rep { a: z, b: got })
    }

    /// This party's additive part of `x · y` (local; masked by a zero sharing).
    fn mul_local(&mut self, x: &Rep, y: &Rep) -> Vec<u64> {
        let alpha = self.zero(x.len());
        (0..x.len())
            .map(|i| {
                x.a[i]
                    .wrapping_mul(y.a[i].wrapping_add(y.b[i]))
                    .wrapping_add(x.b[i].wrapping_mul(y.a[i]))
                    .wrapping_add(alpha[i])
            })
            .collect()
    }

    /// Ring product `x · y` element-wise, no truncation (one round).
    pub fn mul_raw(&mut self, x: &Rep, y: &Rep) -> Result<Rep> {
        Self::same(x, y)?;
        let z = self.mul_local(x, y);
        self.reshare(z, "mul")
    }

    /// Fixed-point product (two rounds; the product must stay below `2^62` ring units).
    pub fn mul(&mut self, x: &Rep, y: &Rep) -> Result<Rep> {
        Self::same(x, y)?;
        let z = self.mul_local(x, y);
        self.truncate_additive(z, self.fixed.frac_bits())
    }

    /// Fixed-point square (two rounds).
    pub fn square(&mut self, x: &Rep) -> Result<Rep> {
        self.mul(x, x)
    }

    /// Fixed-point matrix product of `x` (`m × k`, row-major) and `y` (`k × n`): two local
    /// products and a truncation of the `m × n` result (two rounds; traffic proportional to
    /// the output only).
    pub fn matmul(&mut self, x: &Rep, y: &Rep, m: usize, k: usize, n: usize) -> Result<Rep> {
        if x.len() != m.saturating_mul(k) || y.len() != k.saturating_mul(n) {
            return Err(MpcError::Shape(format!(
                "{m} × {k} times {k} × {n} needs {} and {} elements, not {} and {}",
                m.saturating_mul(k),
                k.saturating_mul(n),
                x.len(),
                y.len()
            )));
        }
        let y_sum: Vec<u64> =
            y.a.iter()
                .zip(&y.b)
                .map(|(p, q)| p.wrapping_add(*q))
                .collect();
        let first = matmul_plain(&x.a, &y_sum, m, k, n);
        let second = matmul_plain(&x.b, &y.a, m, k, n);
        let alpha = self.zero(m * n);
        let z: Vec<u64> = (0..m * n)
            .map(|i| first[i].wrapping_add(second[i]).wrapping_add(alpha[i]))
            .collect();
        self.truncate_additive(z, self.fixed.frac_bits())
    }

    /// Divides by `2^bits` (two rounds; error at most one unit; requires `|x| < 2^62`).
    pub fn truncate_by(&mut self, x: &Rep, bits: u32) -> Result<Rep> {
        // Party i's part x_i is known to party i − 1 as well, and party 1 holds the two
        // others: sent as is in the truncation's first round, it would complete party 1's
        // view of x. A fresh zero sharing makes the 3-out-of-3 parts uniformly random.
        let alpha = self.zero(x.len());
        let z =
            x.a.iter()
                .zip(&alpha)
                .map(|(v, r)| v.wrapping_add(*r))
                .collect();
        self.truncate_additive(z, bits)
    }

    /// `x · c` for public reals (`f` fractional bits of `c`; two rounds).
    pub fn mul_public(&mut self, x: &Rep, c: &[f64]) -> Result<Rep> {
        let k: Vec<i64> = self
            .fixed
            .encode_all(c)?
            .into_iter()
            .map(|v| v as i64)
            .collect();
        let p = self.mul_public_int(x, &k)?;
        self.truncate_by(&p, self.fixed.frac_bits())
    }

    /// `x · c` for one public real, keeping about 20 significant bits of `c` (two rounds;
    /// requires `|x · c| < 2^(42 − t)` with `t ≈ 20 − log2|c|`, as the dealer's).
    pub fn mul_public_scalar(&mut self, x: &Rep, c: f64) -> Result<Rep> {
        let Some((k, t)) = self.fixed.scalar_factor(c)? else {
            return Ok(self.constant_raw(&vec![0; x.len()]));
        };
        let p = self.mul_public_int(x, &vec![k; x.len()])?;
        self.truncate_by(&p, t)
    }

    /// Truncation of a 3-out-of-3 additive sharing `z` (party `i` holds `z_i`) by `bits`, to
    /// pairs; party 2 is the helper (see the module documentation). Two rounds.
    fn truncate_additive(&mut self, z: Vec<u64>, bits: u32) -> Result<Rep> {
        if !(1..=62).contains(&bits) {
            return Err(MpcError::InvalidParameter(format!(
                "cannot truncate by {bits} bits"
            )));
        }
        let f = bits;
        let n = z.len();
        let me = self.me;
        // Round 1: parties 0 and 1 learn c = z + r + OFFSET and additive shares of r >> f and
        // of r's top bit.
        let (u, c) = match me {
            2 => {
                let r = draw(&mut self.own, n);
                let s0 = draw(&mut self.next, n);
                let m0 = draw(&mut self.next, n);
                let masked: Vec<u64> = z.iter().zip(&r).map(|(z, r)| z.wrapping_add(*r)).collect();
                let mut to1 = masked.clone();
                to1.extend((0..n).map(|i| (r[i] >> f).wrapping_sub(s0[i])));
                to1.extend((0..n).map(|i| (r[i] >> 63).wrapping_sub(m0[i])));
                self.send_recv("truncate", vec![(0, masked), (1, to1)], None, 0)?;
                (Vec::new(), Vec::new())
            }
            0 => {
                let s0 = draw(&mut self.mine, n);
                let m0 = draw(&mut self.mine, n);
                let mut incoming = self.send("truncate", vec![(1, z.clone())])?;
                let from1 = Self::take(&mut incoming, 1, n, "truncate")?;
                let from2 = Self::take(&mut incoming, 2, n, "truncate")?;
                let c: Vec<u64> = (0..n)
                    .map(|i| {
                        z[i].wrapping_add(from1[i])
                            .wrapping_add(from2[i])
                            .wrapping_add(OFFSET)
                    })
                    .collect();
                let u = (0..n)
                    .map(|i| {
                        let d = u64::from(c[i] >> 63 == 0);
                        (d.wrapping_mul(m0[i]))
                            .wrapping_shl(64 - f)
                            .wrapping_sub(s0[i])
                            .wrapping_add(c[i] >> f)
                            .wrapping_sub(OFFSET >> f)
                    })
                    .collect();
                (u, c)
            }
            _ => {
                let mut incoming = self.send("truncate", vec![(0, z.clone())])?;
                let from0 = Self::take(&mut incoming, 0, n, "truncate")?;
                let from2 = Self::take(&mut incoming, 2, 3 * n, "truncate")?;
                let c: Vec<u64> = (0..n)
                    .map(|i| {
                        z[i].wrapping_add(from0[i])
                            .wrapping_add(from2[i])
                            .wrapping_add(OFFSET)
                    })
                    .collect();
                let (s1, m1) = from2[n..].split_at(n);
                let u = (0..n)
                    .map(|i| {
                        let d = u64::from(c[i] >> 63 == 0);
                        (d.wrapping_mul(m1[i]))
                            .wrapping_shl(64 - f)
                            .wrapping_sub(s1[i])
                    })
                    .collect();
                (u, c)
            }
        };
        drop(c);
        // Round 2: from the additive shares (u at parties 0 and 1) back to pairs.
        match me {
            0 => {
                let w0 = draw(&mut self.mine, n);
                let rho = draw(&mut self.next, n);
                let w1: Vec<u64> = (0..n)
                    .map(|i| u[i].wrapping_sub(w0[i]).wrapping_add(rho[i]))
                    .collect();
                self.send_recv("truncate", vec![(1, w1.clone())], None, 0)?;
                Ok(Rep { a: w0, b: w1 })
            }
            1 => {
                let rho = draw(&mut self.mine, n);
                let w2: Vec<u64> = (0..n).map(|i| u[i].wrapping_sub(rho[i])).collect();
                let w1 = self.send_recv("truncate", vec![(2, w2.clone())], Some(0), n)?;
                Ok(Rep { a: w1, b: w2 })
            }
            _ => {
                let w0 = draw(&mut self.next, n);
                let w2 = self.send_recv("truncate", Vec::new(), Some(1), n)?;
                Ok(Rep { a: w2, b: w0 })
            }
        }
    }

    /// A fresh XOR zero sharing's part (3-out-of-3).
    fn xor_zero(&mut self, n: usize) -> Vec<u64> {
        let p = draw(&mut self.mine, n);
        let q = draw(&mut self.next, n);
        p.iter().zip(&q).map(|(p, q)| p ^ q).collect()
    }

    /// Bitwise AND of XOR-shared words, pairwise over the two lists (one round for all).
    fn and(&mut self, x: &Rep, y: &Rep) -> Result<Rep> {
        let beta = self.xor_zero(x.len());
        let z: Vec<u64> = (0..x.len())
            .map(|i| (x.a[i] & (y.a[i] ^ y.b[i])) ^ (x.b[i] & y.a[i]) ^ beta[i])
            .collect();
        self.reshare(z, "and")
    }

    /// The XOR sharing of part `j` of an arithmetic sharing (known to two parties; local).
    fn part(&self, x: &Rep, j: usize) -> Rep {
        let n = x.len();
        let me = self.me;
        Rep {
            a: if j == me { x.a.clone() } else { vec![0; n] },
            b: if j == (me + 1) % 3 {
                x.b.clone()
            } else {
                vec![0; n]
            },
        }
    }

    /// Shares of `[x < 0]` (0 or 1) for every element: 10 rounds (see the module docs).
    pub fn ltz(&mut self, x: &Rep) -> Result<Rep> {
        let n = x.len();
        let (x0, x1, x2) = (self.part(x, 0), self.part(x, 1), self.part(x, 2));
        // Carry-save: x0 + x1 + x2 = s + (carry << 1) bitwise.
        let s = x0.map2(&x1, |p, q| p ^ q).map2(&x2, |p, q| p ^ q);
        let t = x0.map2(&x1, |p, q| p ^ q);
        let ands = self.and(&Rep::concat(&[&x0, &x2]), &Rep::concat(&[&x1, &t]))?;
        let carry = ands
            .slice(0..n)
            .map2(&ands.slice(n..2 * n), |p, q| p ^ q)
            .map(|v| v << 1);
        // Kogge–Stone on s + carry: only the top bit of the sum is needed.
        let p0 = s.map2(&carry, |p, q| p ^ q);
        let mut g = self.and(&s, &carry)?;
        let mut p = p0.clone();
        for k in [1u32, 2, 4, 8, 16, 32] {
            let g_shift = g.map(|v| v << k);
            if k == 32 {
                let pg = self.and(&p, &g_shift)?;
                g = g.map2(&pg, |a, b| a ^ b);
            } else {
                let p_shift = p.map(|v| v << k);
                let both =
                    self.and(&Rep::concat(&[&p, &p]), &Rep::concat(&[&g_shift, &p_shift]))?;
                g = g.map2(&both.slice(0..n), |a, b| a ^ b);
                p = both.slice(n..2 * n);
            }
        }
        // Top bit: p0[63] ^ carry into bit 63 (= prefix generate of bits 0..62).
        let bit = p0.map2(&g.map(|v| v << 1), |a, b| ((a ^ b) >> 63) & 1);
        self.bit_to_arith(&bit)
    }

    /// An XOR-shared bit (one bit per word) as an arithmetic sharing of 0 or 1 (two rounds):
    /// `b = e ⊕ b_2` with `e = b_0 ⊕ b_1` known to party 0, so `b = e + b_2 − 2·e·b_2`.
    fn bit_to_arith(&mut self, bit: &Rep) -> Result<Rep> {
        let n = bit.len();
        let e_mine = (self.me == 0).then(|| {
            bit.a
                .iter()
                .zip(&bit.b)
                .map(|(p, q)| p ^ q)
                .collect::<Vec<u64>>()
        });
        let e = self.input_raw(0, e_mine.as_deref(), n)?;
        let b2 = self.part(bit, 2);
        let prod = self.mul_raw(&e, &b2)?;
        let sum = self.add(&e, &b2)?;
        self.sub(&sum, &self.mul_public_int(&prod, &vec![2; n])?)
    }

    /// `[x < y]` (10 rounds).
    pub fn lt(&mut self, x: &Rep, y: &Rep) -> Result<Rep> {
        let d = self.sub(x, y)?;
        self.ltz(&d)
    }

    /// `max(x, 0)` (11 rounds).
    pub fn relu(&mut self, x: &Rep) -> Result<Rep> {
        let neg = self.ltz(x)?;
        let one = self.constant_raw(&vec![1; x.len()]);
        let pos = self.sub(&one, &neg)?;
        self.mul_raw(x, &pos)
    }

    /// `b ? x : y` for shared bits `b` (one round).
    pub fn select(&mut self, b: &Rep, x: &Rep, y: &Rep) -> Result<Rep> {
        let d = self.sub(x, y)?;
        let bd = self.mul_raw(b, &d)?;
        self.add(y, &bd)
    }

    /// For each of `groups` groups of `width` consecutive elements, the maximum (a tournament
    /// of `⌈log2 width⌉` levels of 11 rounds).
    pub fn max_groups(&mut self, x: &Rep, groups: usize, width: usize) -> Result<Rep> {
        Ok(self.max_argmax_groups_impl(x, groups, width, false)?.0)
    }

    /// For each group, the maximum and the one-hot position of (the first) maximum.
    pub fn max_argmax_groups(
        &mut self,
        x: &Rep,
        groups: usize,
        width: usize,
    ) -> Result<(Rep, Rep)> {
        self.max_argmax_groups_impl(x, groups, width, true)
    }

    fn max_argmax_groups_impl(
        &mut self,
        x: &Rep,
        groups: usize,
        width: usize,
        positions: bool,
    ) -> Result<(Rep, Rep)> {
        if width == 0 || groups.saturating_mul(width) != x.len() {
            return Err(MpcError::Shape(format!(
                "{} elements are not {groups} groups of {width}",
                x.len()
            )));
        }
        // Candidates per group: values, and (if wanted) one-hot vectors of length `width`.
        let mut values: Vec<Rep> = (0..groups)
            .map(|g| x.slice(g * width..(g + 1) * width))
            .collect();
        let one_hot = |i: usize| {
            let mut v = vec![0u64; width];
            v[i] = 1;
            self.constant_raw(&v)
        };
        let mut index: Vec<Vec<Rep>> = if positions {
            (0..groups)
                .map(|_| (0..width).map(one_hot).collect())
                .collect()
        } else {
            Vec::new()
        };
        let mut len = width;
        while len > 1 {
            let pairs = len / 2;
            let mut a_idx = Vec::new();
            let mut b_idx = Vec::new();
            for g in 0..groups {
                for p in 0..pairs {
                    a_idx.push((g, 2 * p));
                    b_idx.push((g, 2 * p + 1));
                }
            }
            let gather = |list: &[(usize, usize)], vals: &[Rep]| Rep {
                a: list.iter().map(|&(g, i)| vals[g].a[i]).collect(),
                b: list.iter().map(|&(g, i)| vals[g].b[i]).collect(),
            };
            let a = gather(&a_idx, &values);
            let b = gather(&b_idx, &values);
            let a_lt_b = self.lt(&a, &b)?;
            // Select the values and (if wanted) the index vectors in one round.
            let mut bits = vec![a_lt_b.clone()];
            let mut diffs = vec![self.sub(&b, &a)?];
            if positions {
                let m = a_idx.len();
                let rep_bits = Rep {
                    a: (0..m)
                        .flat_map(|k| std::iter::repeat_n(a_lt_b.a[k], width))
                        .collect(),
                    b: (0..m)
                        .flat_map(|k| std::iter::repeat_n(a_lt_b.b[k], width))
                        .collect(),
                };
                let hi: Vec<&Rep> = b_idx.iter().map(|&(g, i)| &index[g][i]).collect();
                let lo: Vec<&Rep> = a_idx.iter().map(|&(g, i)| &index[g][i]).collect();
                let d = self.sub(&Rep::concat(&hi), &Rep::concat(&lo))?;
                bits.push(rep_bits);
                diffs.push(d);
            }
            let bits_all = Rep::concat(&bits.iter().collect::<Vec<_>>());
            let diffs_all = Rep::concat(&diffs.iter().collect::<Vec<_>>());
            let prod = self.mul_raw(&bits_all, &diffs_all)?;
            let m = a_idx.len();
            let new_vals = self.add(&a, &prod.slice(0..m))?;
            let mut next_values = Vec::with_capacity(groups);
            let mut next_index = Vec::with_capacity(groups);
            for g in 0..groups {
                let mut v = new_vals.slice(g * pairs..(g + 1) * pairs);
                let mut idx: Vec<Rep> = Vec::new();
                if positions {
                    for p in 0..pairs {
                        let k = g * pairs + p;
                        let lo = &index[g][2 * p];
                        let off = m + k * width;
                        idx.push(self.add(lo, &prod.slice(off..off + width))?);
                    }
                }
                if len % 2 == 1 {
                    v = Rep::concat(&[&v, &values[g].slice(len - 1..len)]);
                    if positions {
                        idx.push(index[g][len - 1].clone());
                    }
                }
                next_values.push(v);
                next_index.push(idx);
            }
            values = next_values;
            if positions {
                index = next_index;
            }
            len = len.div_ceil(2);
        }
        let max = Rep::concat(&values.iter().collect::<Vec<_>>());
        let onehot = if positions {
            Rep::concat(&index.iter().map(|v| &v[0]).collect::<Vec<_>>())
        } else {
            Rep {
                a: Vec::new(),
                b: Vec::new(),
            }
        };
        Ok((max, onehot))
    }
}

/// Runs `program` as the three parties in threads of this process (no dealer): for tests,
/// benchmarks and single-machine use — it protects nothing by itself.
pub fn run_local<T, F>(fixed: FixedPoint, program: F) -> Result<Vec<T>>
where
    T: Send + 'static,
    F: Fn(&mut Rss<crate::memory::MemoryExchange>) -> Result<T> + Send + Sync + 'static,
{
    crate::memory::run_exchanges(3, std::time::Duration::from_secs(30), move |ex| {
        let mut party = Rss::new(ex, fixed)?;
        program(&mut party)
    })
}
