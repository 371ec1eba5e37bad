//! Operations on secret-shared tensors.
//!
//! A [`Party`] holds its shares and its stream of correlated randomness, and runs each
//! operation in rounds: it hands its outgoing messages to an [`Exchange`] and continues with
//! what the other parties sent. Which transport carries them (in-process channels, TCP with
//! TLS) is the exchange's business.
//!
//! Fixed-point multiplication is a Beaver multiplication (one round) followed by a
//! **dealer-assisted truncation** (one round): with a mask `r` from the dealer, together with
//! shares of `r >> f` and of `r`'s top bit, the parties open `c = x + 2^62 + r` — uniformly
//! random, so it reveals nothing — and compute `x >> f` from `c >> f`, `r >> f` and whether the
//! addition wrapped (known from the top bits of `c` and `r`). The result is off by at most one
//! unit in the last place, never by a wrap-around's `2^64 / 2^f` (the failure of the local
//! share shift). It requires `|x| < 2^62` before truncation: products of values below
//! `2^(31 - f)` in magnitude (≈ 32,768 at 16 fractional bits).
//!
//! Before an output is opened ([`Party::open_raw`], [`Party::reveal_to_raw`]) every party
//! confirms that the dealer served the transcript of requests it took itself (one round, one
//! tag from the last party to each other party; see [`crate::dealer`]), unless nothing was
//! taken since the last confirmation.

use std::collections::{BTreeMap, VecDeque};

use rand_chacha::ChaCha20Rng;
use rand_core::{SeedableRng, TryRngCore};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::dealer::{Material, PartyRandomness, Request};
use crate::error::{MpcError, Result};
use crate::fixed::FixedPoint;
use crate::sharing::share;

/// How a party talks to the others and to the dealer. Implementations carry messages; they
/// do not compute.
pub trait Exchange {
    /// This party's index (0-based).
    fn id(&self) -> usize;
    /// Number of parties.
    fn parties(&self) -> usize;
    /// One round: sends `outgoing[j]` to party `j` (this party's own entry and empty vectors
    /// are not sent) and returns what each party sent to this one (own entry empty). Every
    /// party calls it the same number of times, in the same order.
    fn exchange(&mut self, phase: &str, outgoing: Vec<Vec<u64>>) -> Result<Vec<Vec<u64>>>;
    /// Sends `request` to the dealer (the last party does; for the others, whose parts come
    /// from their seeds alone, nothing). The dealer answers requests in the order sent, so
    /// several may be outstanding: the dealer computes the next while the parties work.
    fn dealer_request(&mut self, request: &Request) -> Result<()>;
    /// The dealer's correction for the oldest request not yet answered: `Some` for the last
    /// party, `None` (at once) for the others.
    fn dealer_correction(&mut self) -> Result<Option<Vec<u64>>>;
}

/// This party's additive share of a tensor (zeroized on drop).
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct Shared {
    share: Vec<u64>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Shared(len {})", self.share.len())
    }
}

impl Shared {
    /// A share from its elements (as received from elsewhere).
    pub fn from_share(share: Vec<u64>) -> Self {
        Self { share }
    }

    /// The share's elements (random on their own).
    pub fn share(&self) -> &[u64] {
        &self.share
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.share.len()
    }

    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.share.is_empty()
    }
}

/// Traffic and rounds of one kind of operation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpStats {
    /// Times the operation ran.
    pub calls: u64,
    /// Communication rounds.
    pub rounds: u64,
    /// Bytes this party sent to other parties.
    pub bytes_sent: u64,
    /// Bytes of dealer corrections this party received.
    pub dealer_bytes: u64,
}

/// Per-operation statistics of a party.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// By operation name.
    pub ops: BTreeMap<&'static str, OpStats>,
}

impl Stats {
    /// Everything together.
    pub fn total(&self) -> OpStats {
        self.ops.values().fold(OpStats::default(), |a, b| OpStats {
            calls: a.calls + b.calls,
            rounds: a.rounds + b.rounds,
            bytes_sent: a.bytes_sent + b.bytes_sent,
            dealer_bytes: a.dealer_bytes + b.dealer_bytes,
        })
    }
}

/// Wrapping matrix product of row-major `a` (`m × k`) and `b` (`k × n`) in `Z_2^64`.
/// Rows in parallel (`rayon`) once the product is large enough to be worth it.
pub fn matmul_plain(a: &[u64], b: &[u64], m: usize, k: usize, n: usize) -> Vec<u64> {
    use rayon::prelude::*;
    let mut out = vec![0u64; m * n];
    if n == 0 {
        return out;
    }
    let row = |(i, row): (usize, &mut [u64])| {
        for (l, &x) in a[i * k..(i + 1) * k].iter().enumerate() {
            for (o, &y) in row.iter_mut().zip(&b[l * n..(l + 1) * n]) {
                *o = o.wrapping_add(x.wrapping_mul(y));
            }
        }
    };
    if m * k * n >= 1 << 18 {
        out.par_chunks_mut(n).enumerate().for_each(row);
    } else {
        out.chunks_mut(n).enumerate().for_each(row);
    }
    out
}

fn add_vec(a: &[u64], b: &[u64]) -> Vec<u64> {
    a.iter().zip(b).map(|(x, y)| x.wrapping_add(*y)).collect()
}

fn sub_vec(a: &[u64], b: &[u64]) -> Vec<u64> {
    a.iter().zip(b).map(|(x, y)| x.wrapping_sub(*y)).collect()
}

/// One party of a computation.
pub struct Party<E: Exchange> {
    ex: E,
    rand: PartyRandomness,
    fixed: FixedPoint,
    rng: ChaCha20Rng,
    stats: Stats,
    op: &'static str,
    /// Requests sent to the dealer ahead of the operation that uses them, oldest first.
    prefetched: VecDeque<Request>,
    /// Items of correlated randomness completed at the latest transcript confirmation.
    confirmed: u64,
}

impl<E: Exchange> std::fmt::Debug for Party<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Party")
            .field("id", &self.ex.id())
            .field("parties", &self.ex.parties())
            .finish_non_exhaustive()
    }
}

impl<E: Exchange> Party<E> {
    /// A party using `exchange`, its dealer `seed`, and the fixed-point format.
    pub fn new(exchange: E, seed: &[u8; 32], fixed: FixedPoint) -> Result<Self> {
        let (id, n) = (exchange.id(), exchange.parties());
        if n < 2 || id >= n {
            return Err(MpcError::InvalidParameter(format!(
                "party {id} of {n}: need at least 2 parties and an id below their number"
            )));
        }
        let mut os_seed = [0u8; 32];
        rand_core::OsRng
            .try_fill_bytes(&mut os_seed)
            .map_err(|e| MpcError::InvalidParameter(format!("no system randomness: {e}")))?;
        let rng = ChaCha20Rng::from_seed(os_seed);
        os_seed.zeroize();
        Ok(Self {
            rand: PartyRandomness::new(seed, id, n)?,
            ex: exchange,
            fixed,
            rng,
            stats: Stats::default(),
            op: "other",
            prefetched: VecDeque::new(),
            confirmed: 0,
        })
    }

    /// This party's index.
    pub fn id(&self) -> usize {
        self.ex.id()
    }

    /// Number of parties.
    pub fn parties(&self) -> usize {
        self.ex.parties()
    }

    /// The fixed-point format.
    pub fn fixed(&self) -> FixedPoint {
        self.fixed
    }

    /// Traffic and rounds so far.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The exchange (e.g. to close it).
    pub fn exchange_mut(&mut self) -> &mut E {
        &mut self.ex
    }

    pub(crate) fn begin(&mut self, op: &'static str) -> &'static str {
        let outer = self.op;
        if outer == "other" {
            self.op = op;
            self.stats.ops.entry(op).or_default().calls += 1;
        }
        outer
    }

    pub(crate) fn end(&mut self, outer: &'static str) {
        self.op = outer;
    }

    pub(crate) fn round(&mut self, outgoing: Vec<Vec<u64>>) -> Result<Vec<Vec<u64>>> {
        let me = self.id();
        let bytes: usize = outgoing
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != me)
            .map(|(_, v)| v.len() * 8)
            .sum();
        let entry = self.stats.ops.entry(self.op).or_default();
        entry.rounds += 1;
        entry.bytes_sent += bytes as u64;
        self.ex.exchange(self.op, outgoing)
    }

    /// Asks the dealer now for items that operations about to run will take, in the order
    /// they will take them, so the dealer computes them while this party works.
    pub(crate) fn prefetch(&mut self, requests: &[Request]) -> Result<()> {
        for r in requests {
            r.check()?;
            self.ex.dealer_request(r)?;
            self.prefetched.push_back(r.clone());
        }
        Ok(())
    }

    /// This party's seeded share of the next item (see [`PartyRandomness::seeded`]); the
    /// request goes to the dealer unless it was prefetched. Finish with
    /// [`Party::material_end`] once the masked values are opened.
    pub(crate) fn material_begin(&mut self, request: &Request) -> Result<Material> {
        match self.prefetched.pop_front() {
            Some(r) if r == *request => {}
            Some(r) => {
                return Err(MpcError::Dealer(format!(
                    "out of order: {request:?} taken where {r:?} was prefetched"
                )))
            }
            None => self.ex.dealer_request(request)?,
        }
        self.rand.seeded(request)
    }

    /// Completes `material` with the dealer's correction (the last party).
    pub(crate) fn material_end(
        &mut self,
        request: &Request,
        material: &mut Material,
    ) -> Result<()> {
        let correction = self.ex.dealer_correction()?;
        if let Some(c) = &correction {
            self.stats.ops.entry(self.op).or_default().dealer_bytes += (c.len() * 8) as u64;
        }
        self.rand.complete(request, material, correction)
    }

    /// Confirms the dealer's transcript before an output is opened (one round, when items
    /// were completed since the last confirmation): the last party forwards to each other
    /// party the dealer's tag of the latest completed item, and each compares it with its
    /// own. A last party that asked the dealer for anything else than what this party took
    /// cannot produce the tag; the computation stops with [`MpcError::Dealer`] before this
    /// party sends a share of the output.
    fn confirm_transcript(&mut self) -> Result<()> {
        let completed = self.rand.completed();
        if completed == self.confirmed {
            return Ok(());
        }
        let (n, me) = (self.parties(), self.id());
        let last = n - 1;
        let mut outgoing = vec![Vec::new(); n];
        if me == last {
            for (j, out) in outgoing.iter_mut().enumerate().take(last) {
                let tag = self
                    .rand
                    .transcript_tag(j)
                    .ok_or_else(|| MpcError::Dealer(format!("no transcript tag for party {j}")))?;
                out.push(tag);
            }
        }
        let incoming = self.round(outgoing)?;
        if me != last {
            for (j, got) in incoming.iter().enumerate() {
                if j != me && j != last {
                    self.check_len(j, got.len(), 0)?;
                }
            }
            let Some(&[got]) = incoming.get(last).map(Vec::as_slice) else {
                return Err(MpcError::Malformed {
                    party: last,
                    phase: self.op.into(),
                    why: "no transcript tag".into(),
                });
            };
            if self.rand.transcript_tag(me) != Some(got) {
                return Err(MpcError::Dealer(format!(
                    "the dealer's transcript differs from party {me}'s after {completed} \
                     items: party {last} asked the dealer for other items than the parties took"
                )));
            }
        }
        self.confirmed = completed;
        Ok(())
    }

    pub(crate) fn check_len(&self, party: usize, got: usize, want: usize) -> Result<()> {
        if got == want {
            Ok(())
        } else {
            Err(MpcError::Malformed {
                party,
                phase: self.op.into(),
                why: format!("{got} elements where {want} were expected"),
            })
        }
    }

    /// Broadcasts `mine` and returns the element-wise sum of everyone's (an opening).
    pub(crate) fn open_vec(&mut self, mine: &[u64]) -> Result<Vec<u64>> {
        self.open_with(mine, |t, x| *t = t.wrapping_add(x))
    }

    /// Broadcasts `mine` and folds everyone's into it element-wise with `combine`.
    pub(crate) fn open_with(
        &mut self,
        mine: &[u64],
        combine: fn(&mut u64, u64),
    ) -> Result<Vec<u64>> {
        let n = self.parties();
        let me = self.id();
        let incoming = self.round(
            (0..n)
                .map(|j| if j == me { Vec::new() } else { mine.to_vec() })
                .collect(),
        )?;
        let mut total = mine.to_vec();
        for (j, v) in incoming.iter().enumerate() {
            if j == me {
                continue;
            }
            self.check_len(j, v.len(), mine.len())?;
            for (t, x) in total.iter_mut().zip(v) {
                combine(t, *x);
            }
        }
        Ok(total)
    }

    /// Tells every party how many elements each party will contribute (public sizes): one
    /// round. Returns the lengths in party order.
    pub fn exchange_lengths(&mut self, mine: usize) -> Result<Vec<usize>> {
        let outer = self.begin("lengths");
        let out = (|| {
            let n = self.parties();
            let me = self.id();
            let incoming = self.round(vec![vec![mine as u64]; n])?;
            (0..n)
                .map(|j| {
                    if j == me {
                        return Ok(mine);
                    }
                    match incoming[j].as_slice() {
                        [len] if *len <= crate::dealer::MAX_REQUEST as u64 => Ok(*len as usize),
                        _ => Err(MpcError::Malformed {
                            party: j,
                            phase: "lengths".into(),
                            why: "not a length".into(),
                        }),
                    }
                })
                .collect()
        })();
        self.end(outer);
        out
    }

    /// Secret-shares `values` (ring elements) held by `owner`; the others pass `None` and the
    /// length. One round.
    pub fn input_raw(
        &mut self,
        owner: usize,
        values: Option<&[u64]>,
        len: usize,
    ) -> Result<Shared> {
        let outer = self.begin("input");
        let n = self.parties();
        if owner >= n {
            return Err(MpcError::InvalidParameter(format!("no party {owner}")));
        }
        let out = if self.id() == owner {
            let values = values.ok_or_else(|| {
                MpcError::InvalidParameter("the owner must give its values".into())
            })?;
            if values.len() != len {
                return Err(MpcError::Shape(format!(
                    "{} values where {len} were announced",
                    values.len()
                )));
            }
            let mut shares = share(values, n, &mut self.rng);
            let mine = std::mem::take(&mut shares[owner]);
            self.round(shares)?;
            mine
        } else {
            let incoming = self.round(vec![Vec::new(); n])?;
            let mine = incoming[owner].clone();
            self.check_len(owner, mine.len(), len)?;
            mine
        };
        self.end(outer);
        Ok(Shared::from_share(out))
    }

    /// Secret-shares reals held by `owner` in fixed point. One round.
    pub fn input(&mut self, owner: usize, values: Option<&[f64]>, len: usize) -> Result<Shared> {
        let encoded = values.map(|v| self.fixed.encode_all(v)).transpose()?;
        self.input_raw(owner, encoded.as_deref(), len)
    }

    /// A public constant as a sharing (party 0 holds it).
    pub fn constant_raw(&self, values: &[u64]) -> Shared {
        Shared::from_share(if self.id() == 0 {
            values.to_vec()
        } else {
            vec![0; values.len()]
        })
    }

    /// A public real constant as a sharing.
    pub fn constant(&self, values: &[f64]) -> Result<Shared> {
        Ok(self.constant_raw(&self.fixed.encode_all(values)?))
    }

    fn same_len(x: &Shared, y: &Shared) -> Result<()> {
        if x.len() == y.len() {
            Ok(())
        } else {
            Err(MpcError::Shape(format!(
                "{} and {} elements",
                x.len(),
                y.len()
            )))
        }
    }

    /// `x + y`.
    pub fn add(&self, x: &Shared, y: &Shared) -> Result<Shared> {
        Self::same_len(x, y)?;
        Ok(Shared::from_share(add_vec(&x.share, &y.share)))
    }

    /// `x - y`.
    pub fn sub(&self, x: &Shared, y: &Shared) -> Result<Shared> {
        Self::same_len(x, y)?;
        Ok(Shared::from_share(sub_vec(&x.share, &y.share)))
    }

    /// `x + c` for public ring elements `c`.
    pub fn add_public_raw(&self, x: &Shared, c: &[u64]) -> Result<Shared> {
        if c.len() != x.len() {
            return Err(MpcError::Shape(format!(
                "{} and {} elements",
                x.len(),
                c.len()
            )));
        }
        Ok(if self.id() == 0 {
            Shared::from_share(add_vec(&x.share, c))
        } else {
            x.clone()
        })
    }

    /// `x + c` for public reals.
    pub fn add_public(&self, x: &Shared, c: &[f64]) -> Result<Shared> {
        self.add_public_raw(x, &self.fixed.encode_all(c)?)
    }

    /// `x · k` for public integers `k` (no truncation needed).
    pub fn mul_public_int(&self, x: &Shared, k: &[i64]) -> Result<Shared> {
        if k.len() != x.len() {
            return Err(MpcError::Shape(format!(
                "{} and {} elements",
                x.len(),
                k.len()
            )));
        }
        Ok(Shared::from_share(
            x.share
                .iter()
                .zip(k)
                .map(|(s, k)| s.wrapping_mul(*k as u64))
                .collect(),
        ))
    }

    /// `x · c` for public reals `c` (fixed point; one round for the truncation).
    pub fn mul_public(&mut self, x: &Shared, c: &[f64]) -> Result<Shared> {
        if c.len() != x.len() {
            return Err(MpcError::Shape(format!(
                "{} and {} elements",
                x.len(),
                c.len()
            )));
        }
        let outer = self.begin("mul_public");
        let enc = self.fixed.encode_all(c)?;
        let raw = Shared::from_share(
            x.share
                .iter()
                .zip(&enc)
                .map(|(s, k)| s.wrapping_mul(*k))
                .collect(),
        );
        let out = self.truncate(&raw);
        self.end(outer);
        out
    }

    /// The sum of all elements (a 1-element sharing). Local.
    pub fn sum(&self, x: &Shared) -> Shared {
        Shared::from_share(vec![x.share.iter().fold(0u64, |a, b| a.wrapping_add(*b))])
    }

    /// Opens `x` to every party (one round; one more to confirm the dealer's transcript if
    /// items were completed since the last confirmation, see the [module docs](crate::protocol)).
    pub fn open_raw(&mut self, x: &Shared) -> Result<Vec<u64>> {
        let outer = self.begin("open");
        let out = self
            .confirm_transcript()
            .and_then(|()| self.open_vec(&x.share));
        self.end(outer);
        out
    }

    /// Opens a fixed-point `x` to every party.
    pub fn open(&mut self, x: &Shared) -> Result<Vec<f64>> {
        let raw = self.open_raw(x)?;
        Ok(self.fixed.decode_all(&raw))
    }

    /// Opens `x` to party `to` only (one round, plus the transcript confirmation of
    /// [`Party::open_raw`]): `Some` there, `None` elsewhere.
    pub fn reveal_to_raw(&mut self, x: &Shared, to: usize) -> Result<Option<Vec<u64>>> {
        let n = self.parties();
        if to >= n {
            return Err(MpcError::InvalidParameter(format!("no party {to}")));
        }
        let outer = self.begin("reveal_to");
        let me = self.id();
        let outgoing = (0..n)
            .map(|j| {
                if j == to && j != me {
                    x.share.clone()
                } else {
                    Vec::new()
                }
            })
            .collect();
        let incoming = self
            .confirm_transcript()
            .and_then(|()| self.round(outgoing));
        let out = incoming.and_then(|incoming| {
            if me != to {
                return Ok(None);
            }
            let mut total = x.share.clone();
            for (j, v) in incoming.iter().enumerate() {
                if j != me {
                    self.check_len(j, v.len(), x.len())?;
                    total = add_vec(&total, v);
                }
            }
            Ok(Some(total))
        });
        self.end(outer);
        out
    }

    /// Opens a fixed-point `x` to party `to` only.
    pub fn reveal_to(&mut self, x: &Shared, to: usize) -> Result<Option<Vec<f64>>> {
        Ok(self
            .reveal_to_raw(x, to)?
            .map(|v| self.fixed.decode_all(&v)))
    }

    /// Divides a fixed-point product by `2^f` (one round; error at most one unit in the last
    /// place; requires `|x| < 2^62`).
    pub fn truncate(&mut self, x: &Shared) -> Result<Shared> {
        self.truncate_by(x, self.fixed.frac_bits())
    }

    /// `x · c` for one public real `c`, keeping about 20 significant bits of `c` (where
    /// [`Party::mul_public`] keeps `f` fractional bits: `1/450` would be off by 0.25%). One
    /// round. Requires `|x · c| < 2^(42 - t)` with `t ≈ 20 - log2|c|` (e.g. below 131,072
    /// for `c = 1/450`).
    pub fn mul_public_scalar(&mut self, x: &Shared, c: f64) -> Result<Shared> {
        let Some((k, t)) = self.fixed.scalar_factor(c)? else {
            return Ok(Shared::from_share(vec![0; x.len()]));
        };
        let outer = self.begin("mul_public");
        let raw = Shared::from_share(x.share.iter().map(|s| s.wrapping_mul(k as u64)).collect());
        let out = self.truncate_by(&raw, t);
        self.end(outer);
        out
    }

    /// Divides by `2^bits` (one round; error at most one unit; requires `|x| < 2^62`).
    pub fn truncate_by(&mut self, x: &Shared, bits: u32) -> Result<Shared> {
        let f = bits;
        if !(1..=62).contains(&f) {
            return Err(MpcError::InvalidParameter(format!(
                "cannot truncate by {f} bits"
            )));
        }
        let outer = self.begin("truncate");
        let out = (|| {
            let n = x.len();
            let request = Request::Truncation { n, frac_bits: f };
            let mut material = self.material_begin(&request)?;
            let Material::Truncation { r, .. } = &material else {
                return Err(MpcError::Dealer("wrong material".into()));
            };
            const OFFSET: u64 = 1 << 62;
            let me = self.id();
            let masked: Vec<u64> = x
                .share
                .iter()
                .zip(r)
                .map(|(x, r)| {
                    let v = x.wrapping_add(*r);
                    if me == 0 {
                        v.wrapping_add(OFFSET)
                    } else {
                        v
                    }
                })
                .collect();
            let c = self.open_vec(&masked)?;
            self.material_end(&request, &mut material)?;
            let Material::Truncation { shifted, msb, .. } = material else {
                return Err(MpcError::Dealer("wrong material".into()));
            };
            Ok(Shared::from_share(
                c.iter()
                    .zip(shifted.iter().zip(&msb))
                    .map(|(c, (s, m))| {
                        // The addition wrapped iff r's top bit is set and c's is not.
                        let wrapped = if c >> 63 == 0 { *m } else { 0 };
                        let mut v = wrapped.wrapping_shl(64 - f).wrapping_sub(*s);
                        if me == 0 {
                            v = v.wrapping_add(c >> f).wrapping_sub(OFFSET >> f);
                        }
                        v
                    })
                    .collect(),
            ))
        })();
        self.end(outer);
        out
    }

    /// Ring product `x · y` element-wise (Beaver; one round; no truncation).
    pub fn mul_raw(&mut self, x: &Shared, y: &Shared) -> Result<Shared> {
        Self::same_len(x, y)?;
        let outer = self.begin("mul");
        let out = (|| {
            let n = x.len();
            let request = Request::Triples { n };
            let mut material = self.material_begin(&request)?;
            let Material::Triple { a, b, .. } = &material else {
                return Err(MpcError::Dealer("wrong material".into()));
            };
            let mut mine = Vec::with_capacity(2 * n);
            mine.extend(x.share.iter().zip(a).map(|(x, a)| x.wrapping_sub(*a)));
            mine.extend(y.share.iter().zip(b).map(|(y, b)| y.wrapping_sub(*b)));
            let opened = self.open_vec(&mine)?;
            self.material_end(&request, &mut material)?;
            let Material::Triple { a, b, c } = material else {
                return Err(MpcError::Dealer("wrong material".into()));
            };
            let (d, e) = opened.split_at(n);
            let me = self.id();
            Ok(Shared::from_share(
                (0..n)
                    .map(|i| {
                        let mut z = c[i]
                            .wrapping_add(d[i].wrapping_mul(b[i]))
                            .wrapping_add(e[i].wrapping_mul(a[i]));
                        if me == 0 {
                            z = z.wrapping_add(d[i].wrapping_mul(e[i]));
                        }
                        z
                    })
                    .collect(),
            ))
        })();
        self.end(outer);
        out
    }

    /// Fixed-point `x · y` element-wise (two rounds).
    pub fn mul(&mut self, x: &Shared, y: &Shared) -> Result<Shared> {
        Self::same_len(x, y)?;
        let outer = self.begin("mul");
        let n = x.len();
        let frac_bits = self.fixed.frac_bits();
        let out = self
            .prefetch(&[Request::Triples { n }, Request::Truncation { n, frac_bits }])
            .and_then(|()| self.mul_raw(x, y))
            .and_then(|p| self.truncate(&p));
        self.end(outer);
        out
    }

    /// Fixed-point `x²` element-wise (square pairs: half the traffic of a product; two rounds).
    pub fn square(&mut self, x: &Shared) -> Result<Shared> {
        let outer = self.begin("square");
        let out = (|| {
            let n = x.len();
            let request = Request::Squares { n };
            let frac_bits = self.fixed.frac_bits();
            self.prefetch(&[request.clone(), Request::Truncation { n, frac_bits }])?;
            let mut material = self.material_begin(&request)?;
            let Material::Square { a, .. } = &material else {
                return Err(MpcError::Dealer("wrong material".into()));
            };
            let d = self.open_vec(&sub_vec(&x.share, a))?;
            self.material_end(&request, &mut material)?;
            let Material::Square { a, aa } = material else {
                return Err(MpcError::Dealer("wrong material".into()));
            };
            let me = self.id();
            // x² = (d + a)² = a² + 2·d·a + d².
            let raw = Shared::from_share(
                (0..n)
                    .map(|i| {
                        let mut z = aa[i].wrapping_add(d[i].wrapping_mul(a[i]).wrapping_mul(2));
                        if me == 0 {
                            z = z.wrapping_add(d[i].wrapping_mul(d[i]));
                        }
                        z
                    })
                    .collect(),
            );
            self.truncate(&raw)
        })();
        self.end(outer);
        out
    }

    /// Fixed-point matrix product of `x` (`m × k`, row-major) and `y` (`k × n`) with a matrix
    /// triple: one round for the product, one for the truncation.
    pub fn matmul(
        &mut self,
        x: &Shared,
        y: &Shared,
        m: usize,
        k: usize,
        n: usize,
    ) -> Result<Shared> {
        if x.len() != m.saturating_mul(k) || y.len() != k.saturating_mul(n) {
            return Err(MpcError::Shape(format!(
                "{} × {} times {} × {} needs {} and {} elements, not {} and {}",
                m,
                k,
                k,
                n,
                m * k,
                k * n,
                x.len(),
                y.len()
            )));
        }
        let outer = self.begin("matmul");
        let out = (|| {
            let request = Request::MatrixTriple { m, k, n };
            let frac_bits = self.fixed.frac_bits();
            self.prefetch(&[
                request.clone(),
                Request::Truncation {
                    n: m * n,
                    frac_bits,
                },
            ])?;
            let mut material = self.material_begin(&request)?;
            let Material::Triple { a, b, .. } = &material else {
                return Err(MpcError::Dealer("wrong material".into()));
            };
            let mut mine = sub_vec(&x.share, a);
            mine.extend(sub_vec(&y.share, b));
            let opened = self.open_vec(&mine)?;
            self.material_end(&request, &mut material)?;
            let Material::Triple { a, b, c } = material else {
                return Err(MpcError::Dealer("wrong material".into()));
            };
            let (d, e) = opened.split_at(m * k);
            // Z = C + D·B + A·E (+ D·E at party 0).
            let mut z = add_vec(&c, &matmul_plain(d, &b, m, k, n));
            z = add_vec(&z, &matmul_plain(&a, e, m, k, n));
            if self.id() == 0 {
                z = add_vec(&z, &matmul_plain(d, e, m, k, n));
            }
            self.truncate(&Shared::from_share(z))
        })();
        self.end(outer);
        out
    }

    /// Fixed-point dot product of two vectors (a 1-element sharing; one matrix triple).
    pub fn dot(&mut self, x: &Shared, y: &Shared) -> Result<Shared> {
        Self::same_len(x, y)?;
        let k = x.len();
        let outer = self.begin("dot");
        let out = self.matmul(x, y, 1, k, 1);
        self.end(outer);
        out
    }
}
