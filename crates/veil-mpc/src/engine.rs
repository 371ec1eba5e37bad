//! What a protocol family offers to programs written once for both: [`Engine`], implemented
//! by the dealer family's [`Party`] (additive shares, two or more
//! parties and a dealer) and by the dealer-free [`Rss`] (replicated shares,
//! three parties). Model inference (`veil-ml`) runs on either through it.

use crate::error::Result;
use crate::fixed::FixedPoint;
use crate::protocol::{Exchange, OpStats, Party, Shared};
use crate::rss::{Rep, Rss};

/// Fixed-point arithmetic on secret shares, whatever the protocol.
pub trait Engine {
    /// This party's part of a shared tensor.
    type Share: Clone + Send + std::fmt::Debug;

    /// This party's index.
    fn id(&self) -> usize;
    /// Number of parties.
    fn parties(&self) -> usize;
    /// The fixed-point format.
    fn fixed(&self) -> FixedPoint;
    /// Rounds and bytes so far (the dealer's corrections included for the dealer family).
    fn totals(&self) -> OpStats;
    /// Every party announces a length (one round); the lengths in party order.
    fn exchange_lengths(&mut self, mine: usize) -> Result<Vec<usize>>;

    /// Number of elements of a sharing.
    fn len(x: &Self::Share) -> usize;
    /// Elements `idx` in that order, a public zero for `None` (local).
    fn gather(x: &Self::Share, idx: &[Option<usize>]) -> Self::Share;
    /// Per window, the sum of the elements it lists (local).
    fn sum_windows(x: &Self::Share, windows: &[Vec<usize>]) -> Self::Share;
    /// The sharings one after the other (local).
    fn concat(parts: &[&Self::Share]) -> Self::Share;

    /// `owner`'s fixed-point values, shared (the others pass `None`).
    fn input(&mut self, owner: usize, values: Option<&[f64]>, n: usize) -> Result<Self::Share>;
    /// Public ring elements as a sharing.
    fn constant_raw(&self, c: &[u64]) -> Self::Share;
    /// Public reals as a sharing.
    fn constant(&self, c: &[f64]) -> Result<Self::Share>;
    /// `x + y`.
    fn add(&self, x: &Self::Share, y: &Self::Share) -> Result<Self::Share>;
    /// `x − y`.
    fn sub(&self, x: &Self::Share, y: &Self::Share) -> Result<Self::Share>;
    /// `x + c` for public reals.
    fn add_public(&self, x: &Self::Share, c: &[f64]) -> Result<Self::Share>;
    /// `x · k` for public integers.
    fn mul_public_int(&self, x: &Self::Share, k: &[i64]) -> Result<Self::Share>;
    /// `x · c` for public reals (`f` fractional bits of each `c`).
    fn mul_public(&mut self, x: &Self::Share, c: &[f64]) -> Result<Self::Share>;
    /// `x · c` for one public real (about 20 significant bits of `c`).
    fn mul_public_scalar(&mut self, x: &Self::Share, c: f64) -> Result<Self::Share>;
    /// Ring product (no truncation): for a shared bit times a value.
    fn mul_raw(&mut self, x: &Self::Share, y: &Self::Share) -> Result<Self::Share>;
    /// Fixed-point product.
    fn mul(&mut self, x: &Self::Share, y: &Self::Share) -> Result<Self::Share>;
    /// Fixed-point square.
    fn square(&mut self, x: &Self::Share) -> Result<Self::Share>;
    /// Fixed-point matrix product `m × k` by `k × n`.
    fn matmul(
        &mut self,
        x: &Self::Share,
        y: &Self::Share,
        m: usize,
        k: usize,
        n: usize,
    ) -> Result<Self::Share>;
    /// Shares of `[x < 0]` (0 or 1).
    fn ltz(&mut self, x: &Self::Share) -> Result<Self::Share>;
    /// `max(x, 0)`.
    fn relu(&mut self, x: &Self::Share) -> Result<Self::Share>;
    /// The maximum of each group of `width` consecutive elements.
    fn max_groups(&mut self, x: &Self::Share, groups: usize, width: usize) -> Result<Self::Share>;
    /// The maximum and the one-hot position of the first maximum of each group.
    fn max_argmax_groups(
        &mut self,
        x: &Self::Share,
        groups: usize,
        width: usize,
    ) -> Result<(Self::Share, Self::Share)>;
    /// Only party `to` learns the ring elements.
    fn reveal_to_raw(&mut self, x: &Self::Share, to: usize) -> Result<Option<Vec<u64>>>;
    /// Only party `to` learns the fixed-point values.
    fn reveal_to(&mut self, x: &Self::Share, to: usize) -> Result<Option<Vec<f64>>>;

    /// The logistic function (absolute error below 0.002; see [`crate::approx`]).
    fn sigmoid(&mut self, x: &Self::Share) -> Result<Self::Share>
    where
        Self: Sized,
    {
        crate::approx::sigmoid(self, x)
    }
}

impl<E: Exchange> Engine for Party<E> {
    type Share = Shared;

    fn id(&self) -> usize {
        Party::id(self)
    }
    fn parties(&self) -> usize {
        Party::parties(self)
    }
    fn fixed(&self) -> FixedPoint {
        Party::fixed(self)
    }
    fn totals(&self) -> OpStats {
        self.stats().total()
    }
    fn exchange_lengths(&mut self, mine: usize) -> Result<Vec<usize>> {
        Party::exchange_lengths(self, mine)
    }
    fn len(x: &Shared) -> usize {
        x.len()
    }
    fn gather(x: &Shared, idx: &[Option<usize>]) -> Shared {
        let s = x.share();
        Shared::from_share(idx.iter().map(|k| k.map_or(0, |k| s[k])).collect())
    }
    fn sum_windows(x: &Shared, windows: &[Vec<usize>]) -> Shared {
        let s = x.share();
        Shared::from_share(
            windows
                .iter()
                .map(|w| w.iter().fold(0u64, |a, &k| a.wrapping_add(s[k])))
                .collect(),
        )
    }
    fn concat(parts: &[&Shared]) -> Shared {
        Shared::from_share(
            parts
                .iter()
                .flat_map(|p| p.share().iter().copied())
                .collect(),
        )
    }
    fn input(&mut self, owner: usize, values: Option<&[f64]>, n: usize) -> Result<Shared> {
        Party::input(self, owner, values, n)
    }
    fn constant_raw(&self, c: &[u64]) -> Shared {
        Party::constant_raw(self, c)
    }
    fn constant(&self, c: &[f64]) -> Result<Shared> {
        Party::constant(self, c)
    }
    fn add(&self, x: &Shared, y: &Shared) -> Result<Shared> {
        Party::add(self, x, y)
    }
    fn sub(&self, x: &Shared, y: &Shared) -> Result<Shared> {
        Party::sub(self, x, y)
    }
    fn add_public(&self, x: &Shared, c: &[f64]) -> Result<Shared> {
        Party::add_public(self, x, c)
    }
    fn mul_public_int(&self, x: &Shared, k: &[i64]) -> Result<Shared> {
        Party::mul_public_int(self, x, k)
    }
    fn mul_public(&mut self, x: &Shared, c: &[f64]) -> Result<Shared> {
        Party::mul_public(self, x, c)
    }
    fn mul_public_scalar(&mut self, x: &Shared, c: f64) -> Result<Shared> {
        Party::mul_public_scalar(self, x, c)
    }
    fn mul_raw(&mut self, x: &Shared, y: &Shared) -> Result<Shared> {
        Party::mul_raw(self, x, y)
    }
    fn mul(&mut self, x: &Shared, y: &Shared) -> Result<Shared> {
        Party::mul(self, x, y)
    }
    fn square(&mut self, x: &Shared) -> Result<Shared> {
        Party::square(self, x)
    }
    fn matmul(&mut self, x: &Shared, y: &Shared, m: usize, k: usize, n: usize) -> Result<Shared> {
        Party::matmul(self, x, y, m, k, n)
    }
    fn ltz(&mut self, x: &Shared) -> Result<Shared> {
        Party::ltz(self, x)
    }
    fn relu(&mut self, x: &Shared) -> Result<Shared> {
        Party::relu(self, x)
    }
    fn max_groups(&mut self, x: &Shared, groups: usize, width: usize) -> Result<Shared> {
        Party::max_groups(self, x, groups, width)
    }
    fn max_argmax_groups(
        &mut self,
        x: &Shared,
        groups: usize,
        width: usize,
    ) -> Result<(Shared, Shared)> {
        Party::max_argmax_groups(self, x, groups, width)
    }
    fn reveal_to_raw(&mut self, x: &Shared, to: usize) -> Result<Option<Vec<u64>>> {
        Party::reveal_to_raw(self, x, to)
    }
    fn reveal_to(&mut self, x: &Shared, to: usize) -> Result<Option<Vec<f64>>> {
        Party::reveal_to(self, x, to)
    }
    fn sigmoid(&mut self, x: &Shared) -> Result<Shared> {
        Party::sigmoid(self, x)
    }
}

impl<E: Exchange> Engine for Rss<E> {
    type Share = Rep;

    fn id(&self) -> usize {
        Rss::id(self)
    }
    fn parties(&self) -> usize {
        3
    }
    fn fixed(&self) -> FixedPoint {
        Rss::fixed(self)
    }
    fn totals(&self) -> OpStats {
        self.stats()
    }
    fn exchange_lengths(&mut self, mine: usize) -> Result<Vec<usize>> {
        Rss::exchange_lengths(self, mine)
    }
    fn len(x: &Rep) -> usize {
        x.len()
    }
    fn gather(x: &Rep, idx: &[Option<usize>]) -> Rep {
        x.gather_or_zero(idx)
    }
    fn sum_windows(x: &Rep, windows: &[Vec<usize>]) -> Rep {
        x.sum_windows(windows)
    }
    fn concat(parts: &[&Rep]) -> Rep {
        Rep::concat(parts)
    }
    fn input(&mut self, owner: usize, values: Option<&[f64]>, n: usize) -> Result<Rep> {
        Rss::input(self, owner, values, n)
    }
    fn constant_raw(&self, c: &[u64]) -> Rep {
        Rss::constant_raw(self, c)
    }
    fn constant(&self, c: &[f64]) -> Result<Rep> {
        Rss::constant(self, c)
    }
    fn add(&self, x: &Rep, y: &Rep) -> Result<Rep> {
        Rss::add(self, x, y)
    }
    fn sub(&self, x: &Rep, y: &Rep) -> Result<Rep> {
        Rss::sub(self, x, y)
    }
    fn add_public(&self, x: &Rep, c: &[f64]) -> Result<Rep> {
        Rss::add_public(self, x, c)
    }
    fn mul_public_int(&self, x: &Rep, k: &[i64]) -> Result<Rep> {
        Rss::mul_public_int(self, x, k)
    }
    fn mul_public(&mut self, x: &Rep, c: &[f64]) -> Result<Rep> {
        Rss::mul_public(self, x, c)
    }
    fn mul_public_scalar(&mut self, x: &Rep, c: f64) -> Result<Rep> {
        Rss::mul_public_scalar(self, x, c)
    }
    fn mul_raw(&mut self, x: &Rep, y: &Rep) -> Result<Rep> {
        Rss::mul_raw(self, x, y)
    }
    fn mul(&mut self, x: &Rep, y: &Rep) -> Result<Rep> {
        Rss::mul(self, x, y)
    }
    fn square(&mut self, x: &Rep) -> Result<Rep> {
        Rss::square(self, x)
    }
    fn matmul(&mut self, x: &Rep, y: &Rep, m: usize, k: usize, n: usize) -> Result<Rep> {
        Rss::matmul(self, x, y, m, k, n)
    }
    fn ltz(&mut self, x: &Rep) -> Result<Rep> {
        Rss::ltz(self, x)
    }
    fn relu(&mut self, x: &Rep) -> Result<Rep> {
        Rss::relu(self, x)
    }
    fn max_groups(&mut self, x: &Rep, groups: usize, width: usize) -> Result<Rep> {
        Rss::max_groups(self, x, groups, width)
    }
    fn max_argmax_groups(&mut self, x: &Rep, groups: usize, width: usize) -> Result<(Rep, Rep)> {
        Rss::max_argmax_groups(self, x, groups, width)
    }
    fn reveal_to_raw(&mut self, x: &Rep, to: usize) -> Result<Option<Vec<u64>>> {
        Rss::reveal_to_raw(self, x, to)
    }
    fn reveal_to(&mut self, x: &Rep, to: usize) -> Result<Option<Vec<f64>>> {
        Rss::reveal_to(self, x, to)
    }
}
