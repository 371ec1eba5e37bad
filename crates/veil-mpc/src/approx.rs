//! Functions by iteration or limits, as CrypTen computes them, on fixed-point shares:
//! `exp` (the limit `(1 + x/2^8)^(2^8)`: 8 squarings), `reciprocal` (Newton–Raphson),
//! `sigmoid` (through `exp` of `-|x|` and a reciprocal on `(1, 2]`), inverse square root and
//! square root (Newton), division.
//!
//! Each is accurate on a stated domain; outside it the result is meaningless (as with every
//! fixed-point MPC framework), so callers scale their data.

use crate::engine::Engine;
use crate::error::{MpcError, Result};
use crate::protocol::{Exchange, Party, Shared};

/// Squarings in [`Party::exp`].
const EXP_SQUARINGS: u32 = 8;
/// Newton iterations of [`Party::reciprocal`].
const RECIPROCAL_ITERATIONS: usize = 10;
/// Largest `|x|` whose magnitude [`Party::sigmoid`] uses as such (beyond, `sigmoid` is 0 or 1
/// to within `e^-200`).
const SIGMOID_CLAMP: f64 = 200.0;

impl<E: Exchange> Party<E> {
    fn fill(&self, x: &Shared, v: f64) -> Vec<f64> {
        vec![v; x.len()]
    }

    /// `e^x` (17 rounds). The relative error is about `x²/512` from the approximation
    /// `(1 + x/256)^256` (under 1% for `|x| ≤ 2.2`, 5% at `|x| = 5`) plus up to 0.4% from
    /// fixed-point rounding (one unit in the last place of `x/256`, amplified by the eight
    /// squarings); for negative `x` the absolute error stays below 0.005. `x` must stay in
    /// `[-256, 10]`.
    pub fn exp(&mut self, x: &Shared) -> Result<Shared> {
        let outer = self.begin("exp");
        let out = exp(self, x);
        self.end(outer);
        out
    }

    /// `1/x` for `x` in `[0.01, 500]` (Newton–Raphson from `3·e^(0.5 - x) + 0.003`; relative
    /// error about `2^-16 · x` from the fixed point).
    pub fn reciprocal(&mut self, x: &Shared) -> Result<Shared> {
        let outer = self.begin("reciprocal");
        let out = (|| {
            let half_minus = {
                let neg = self.mul_public_int(x, &vec![-1; x.len()])?;
                self.add_public(&neg, &self.fill(x, 0.5))?
            };
            let e = self.exp(&half_minus)?;
            let three_e = self.mul_public_int(&e, &vec![3; x.len()])?;
            let y0 = self.add_public(&three_e, &self.fill(x, 0.003))?;
            self.newton_reciprocal(x, y0, RECIPROCAL_ITERATIONS)
        })();
        self.end(outer);
        out
    }

    /// `y ← y · (2 - x·y)`, `iterations` times.
    fn newton_reciprocal(&mut self, x: &Shared, y: Shared, iterations: usize) -> Result<Shared> {
        newton_reciprocal(self, x, y, iterations)
    }

    /// `x / y` element-wise, for `y` in the domain of [`Party::reciprocal`].
    pub fn div(&mut self, x: &Shared, y: &Shared) -> Result<Shared> {
        let r = self.reciprocal(y)?;
        self.mul(x, &r)
    }

    /// The logistic function `1 / (1 + e^-x)` for any `x` (absolute error below 0.002).
    pub fn sigmoid(&mut self, x: &Shared) -> Result<Shared> {
        let outer = self.begin("sigmoid");
        let out = sigmoid(self, x);
        self.end(outer);
        out
    }

    /// `1/√x` for `x` in `[0.1, 100]` (Newton from CrypTen's initial guess
    /// `2.2·e^(-(x/2 + 0.2)) + 0.2 - x/1024`, 8 iterations).
    pub fn inv_sqrt(&mut self, x: &Shared) -> Result<Shared> {
        let outer = self.begin("inv_sqrt");
        let out = (|| {
            let n = x.len();
            let half = self.mul_public(x, &self.fill(x, -0.5))?;
            let arg = self.add_public(&half, &self.fill(x, -0.2))?;
            let e = self.exp(&arg)?;
            let e22 = self.mul_public(&e, &self.fill(x, 2.2))?;
            let lin = self.mul_public(x, &self.fill(x, -1.0 / 1024.0))?;
            let mut y = self.add(&e22, &lin)?;
            y = self.add_public(&y, &self.fill(x, 0.2))?;
            for _ in 0..8 {
                // y ← y · (3 - x·y²) / 2
                let y2 = self.square(&y)?;
                let xy2 = self.mul(x, &y2)?;
                let neg = self.mul_public_int(&xy2, &vec![-1; n])?;
                let t = self.add_public(&neg, &self.fill(x, 3.0))?;
                let half_t = self.mul_public(&t, &self.fill(x, 0.5))?;
                y = self.mul(&y, &half_t)?;
            }
            Ok(y)
        })();
        self.end(outer);
        out
    }

    /// `√x` for `x` in `[0.1, 100]`.
    pub fn sqrt(&mut self, x: &Shared) -> Result<Shared> {
        let outer = self.begin("sqrt");
        let out = self.inv_sqrt(x).and_then(|r| self.mul(x, &r));
        self.end(outer);
        out
    }

    /// The mean of a vector (1 element), dividing by its public length (three rounds;
    /// correct whenever the sum stays below `2^61` ring units, see
    /// [`Party::mul_public_wide`]).
    pub fn mean(&mut self, x: &Shared) -> Result<Shared> {
        if x.is_empty() {
            return Err(MpcError::Shape("the mean of nothing".into()));
        }
        let total = self.sum(x);
        self.mul_public_wide(&total, 1.0 / x.len() as f64)
    }
}

/// `e^x` on any protocol (see [`Party::exp`]).
pub(crate) fn exp<P: Engine>(p: &mut P, x: &P::Share) -> Result<P::Share> {
    let n = P::len(x);
    let small = p.mul_public(x, &vec![1.0 / f64::from(1u32 << EXP_SQUARINGS); n])?;
    let mut y = p.add_public(&small, &vec![1.0; n])?;
    for _ in 0..EXP_SQUARINGS {
        y = p.square(&y)?;
    }
    Ok(y)
}

/// Newton–Raphson iterations `y ← y · (2 − x·y)` towards `1/x`.
pub(crate) fn newton_reciprocal<P: Engine>(
    p: &mut P,
    x: &P::Share,
    mut y: P::Share,
    iterations: usize,
) -> Result<P::Share> {
    let n = P::len(x);
    for _ in 0..iterations {
        let xy = p.mul(x, &y)?;
        let neg = p.mul_public_int(&xy, &vec![-1; n])?;
        let two_minus = p.add_public(&neg, &vec![2.0; n])?;
        y = p.mul(&y, &two_minus)?;
    }
    Ok(y)
}

/// The logistic function on any protocol (see [`Party::sigmoid`]): `s = 1 / (1 + e^-|x|)`
/// by Newton from 0.75, then `s` or `1 − s` by the sign.
pub(crate) fn sigmoid<P: Engine>(p: &mut P, x: &P::Share) -> Result<P::Share> {
    let n = P::len(x);
    // a = |x|, clamped to SIGMOID_CLAMP so that 1 - a/256 stays positive.
    let neg = p.ltz(x)?;
    let two_neg = p.mul_public_int(&neg, &vec![2; n])?;
    let one = p.constant_raw(&vec![1; n]);
    let sign = p.sub(&one, &two_neg)?;
    let a = p.mul_raw(x, &sign)?;
    let over = p.add_public(&a, &vec![-SIGMOID_CLAMP; n])?;
    let excess = p.relu(&over)?;
    let a = p.sub(&a, &excess)?;
    // s = 1 / (1 + e^-a), with 1 + e^-a in (1, 2]: Newton from 0.75 converges fast.
    let minus_a = p.mul_public_int(&a, &vec![-1; n])?;
    let t = exp(p, &minus_a)?;
    let denom = p.add_public(&t, &vec![1.0; n])?;
    let y0 = p.constant(&vec![0.75; n])?;
    let s = newton_reciprocal(p, &denom, y0, 5)?;
    // sigmoid(x) = s for x >= 0, 1 - s for x < 0: s + neg·(1 - 2s).
    let two_s = p.mul_public_int(&s, &vec![2; n])?;
    let one_fp = p.constant(&vec![1.0; n])?;
    let flip = p.sub(&one_fp, &two_s)?;
    let adj = p.mul_raw(&neg, &flip)?;
    p.add(&s, &adj)
}
