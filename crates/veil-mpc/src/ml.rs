//! What parties came for: joint statistics, logistic regression trained on rows split across
//! parties, and inference of a small multi-layer perceptron — all on shares, revealing only
//! the results, to the parties named.

use crate::error::{MpcError, Result};
use crate::protocol::{Exchange, Party, Shared};

/// Joint statistics of the parties' columns (shares; open or reveal what you need).
#[derive(Debug)]
pub struct Statistics {
    /// Number of values (public: every party announces its column's length).
    pub count: usize,
    /// Sum.
    pub sum: Shared,
    /// Mean.
    pub mean: Shared,
    /// Sample variance.
    pub variance: Shared,
    /// Counts per bin of the histogram (ring integers).
    pub histogram: Shared,
}

/// The largest `max_abs` [`Party::statistics`] accepts with `frac_bits` fractional bits:
/// the variance of values in `[-B, B]` is at most `2·B²`, and it must stay below `2^60` ring
/// units, so `B ≤ 2^((59 - f) / 2)` — 2,965,820 at the default 16 bits — and `B · 2^f` must be
/// encodable (below `2^46`).
pub fn max_statistics_bound(frac_bits: u32) -> f64 {
    let by_variance = 2f64.powf((59.0 - f64::from(frac_bits)) / 2.0).floor();
    let by_encoding = 2f64.powi(46 - frac_bits as i32) - 1.0;
    by_variance.min(by_encoding)
}

/// Bits of `(H, L)` in [`Party::mul_public_wide`]: `x = H · 2^SPLIT + L`.
const SPLIT: u32 = 31;
/// Significant bits of the constant in [`Party::mul_public_wide`].
const CONSTANT_BITS: i32 = 29;

impl<E: Exchange> Party<E> {
    /// Concatenates sharings (e.g. the parties' columns or row blocks).
    pub fn concat(&self, parts: &[Shared]) -> Shared {
        Shared::from_share(
            parts
                .iter()
                .flat_map(|s| s.share().iter().copied())
                .collect(),
        )
    }

    /// `x · 2^-s` for `s > 0` (a truncation, one round), `x · 2^-s` exactly for `s ≤ 0`.
    fn shift(&mut self, x: &Shared, s: i64) -> Result<Shared> {
        if s > 0 {
            let bits = u32::try_from(s)
                .map_err(|_| MpcError::InvalidParameter(format!("shift by {s} bits")))?;
            self.truncate_by(x, bits)
        } else if s > -62 {
            self.mul_public_int(x, &vec![1i64 << -s; x.len()])
        } else {
            Err(MpcError::InvalidParameter(format!("shift by {s} bits")))
        }
    }

    /// `x · c` for a public real `c`, for any ring value `|x| < 2^61` whose product fits
    /// (`|x · c| < 2^61`), with a relative error below `2^-28` and an absolute one of at most
    /// 2 units in the last place. Three rounds.
    ///
    /// [`Party::mul_public_scalar`] multiplies by a 21-bit constant before truncating, so it
    /// needs `|x| < 2^41`: a sum of a few thousand salaries is beyond. Here `x` is split into
    /// `H · 2^31 + L` (one truncation gives `H`; `L = x - H · 2^31` is then exact, whatever the
    /// truncation's error, and below `2^32`), and `H · c` and `L · c` are computed separately
    /// with a 29-bit constant: each product stays below `2^62`.
    pub fn mul_public_wide(&mut self, x: &Shared, c: f64) -> Result<Shared> {
        if !c.is_finite() {
            return Err(MpcError::InvalidParameter(format!(
                "cannot multiply by {c}"
            )));
        }
        if c == 0.0 {
            return Ok(Shared::from_share(vec![0; x.len()]));
        }
        // k = c · 2^t with |k| in [2^28, 2^29].
        let t = (f64::from(CONSTANT_BITS) - c.abs().log2()).ceil() as i64;
        if !(-30..=90).contains(&t) {
            return Err(MpcError::InvalidParameter(format!(
                "constant {c} out of range"
            )));
        }
        let k = (c * 2f64.powi(t as i32)).round() as i64;
        let outer = self.begin("mul_public");
        let out = (|| {
            let n = x.len();
            let high = self.truncate_by(x, SPLIT)?;
            let back = self.mul_public_int(&high, &vec![1i64 << SPLIT; n])?;
            let low = self.sub(x, &back)?;
            let high_k = self.mul_public_int(&high, &vec![k; n])?;
            let low_k = self.mul_public_int(&low, &vec![k; n])?;
            let high_c = self.shift(&high_k, t - i64::from(SPLIT))?;
            let low_c = self.shift(&low_k, t)?;
            self.add(&high_c, &low_c)
        })();
        self.end(outer);
        out
    }

    /// Sum, mean, sample variance and a histogram with `bins` equal bins over the public range
    /// `[low, high)` (values outside count in the first or last bin) of `x`, every value of
    /// which must lie in `[-max_abs, max_abs]` (public).
    ///
    /// **Range.** Fixed point leaves little room: a square of a value above `2^(31 - f)`
    /// (32,768 at 16 bits) wraps around the ring, and so would the sum of squares of a few
    /// hundred values near 1,000. So the computation is planned for the declared bound — the
    /// deviations from the mean are scaled down by a public power of two before squaring, and
    /// every scaling by a constant keeps its products below `2^62` — and the bound is
    /// **checked** on the shares: two comparisons per value, in the same batch as the
    /// histogram's, whose count of values outside is opened to every party. If it is not zero
    /// the call fails with [`MpcError::OutOfRange`] (that count is all it reveals); a result
    /// is never a wrapped-around number. `max_abs` may be at most [`max_statistics_bound`]
    /// (2,965,820 at 16 fractional bits): scale larger data (thousands of dollars rather than
    /// dollars).
    ///
    /// **Error.** The mean is within `2^-28` relative plus 2 units in the last place. The
    /// variance loses the low `s` bits of each deviation, with
    /// `s = ⌈(log2 n + 2 · log2(max_abs · 2^f) - 60) / 2⌉` when positive (0 for 300 values
    /// up to 1024, 8 for 900 values up to 100,000, 11 for 450 values up to 10^6): an error of
    /// about `2^(s - f) · σ / √n` (relative `2^-28` besides) — a bound far above the data
    /// costs precision, never correctness.
    pub fn statistics(
        &mut self,
        x: &Shared,
        max_abs: f64,
        low: f64,
        high: f64,
        bins: usize,
    ) -> Result<Statistics> {
        let n = x.len();
        if n < 2 || bins == 0 || low.partial_cmp(&high) != Some(std::cmp::Ordering::Less) {
            return Err(MpcError::InvalidParameter(format!(
                "statistics need at least 2 values, 1 bin and low < high (got {n}, {bins}, [{low}, {high}))"
            )));
        }
        let fixed = self.fixed();
        let limit = max_statistics_bound(fixed.frac_bits());
        // `!(a > b)` rather than `a <= b`: NaN is refused too.
        #[allow(clippy::neg_cmp_op_on_partial_ord, reason = "NaN must fail the check")]
        let unusable = !(max_abs > 0.0) || max_abs > limit;
        if unusable {
            return Err(MpcError::InvalidParameter(format!(
                "max_abs {max_abs} must be positive and at most {limit} with {} fractional bits (scale the data down)",
                fixed.frac_bits()
            )));
        }
        let bound = fixed.encode(max_abs)?;
        let bound_ring = bound as f64;
        if n as f64 * bound_ring >= 2f64.powi(61) {
            return Err(MpcError::InvalidParameter(format!(
                "the sum of {n} values up to max_abs {max_abs} does not fit the ring; lower max_abs"
            )));
        }
        let outer = self.begin("statistics");
        let out = (|| {
            // One batch of comparisons: below[k] = [x < edge_k] for the histogram's inner
            // edges, then [x < -max_abs] and [max_abs < x].
            let width = (high - low) / bins as f64;
            let edges: Vec<f64> = (1..bins).map(|k| low + width * k as f64).collect();
            let mut shifted = Vec::with_capacity(n * (edges.len() + 2));
            for e in &edges {
                let d = self.add_public(x, &vec![-e; n])?;
                shifted.extend_from_slice(d.share());
            }
            let above_low = self.add_public_raw(x, &vec![bound; n])?;
            shifted.extend_from_slice(above_low.share());
            let negated = self.mul_public_int(x, &vec![-1; n])?;
            let below_high = self.add_public_raw(&negated, &vec![bound; n])?;
            shifted.extend_from_slice(below_high.share());
            let bits = self.ltz(&Shared::from_share(shifted))?;
            let (hist_bits, range_bits) = bits.share().split_at(n * edges.len());
            let outside = self.open_raw(&self.sum(&Shared::from_share(range_bits.to_vec())))?;
            match outside.first() {
                Some(0) => {}
                Some(&k) => {
                    return Err(MpcError::OutOfRange {
                        outside: usize::try_from(k).unwrap_or(usize::MAX),
                        max_abs,
                    })
                }
                None => return Err(MpcError::Shape("no count of values outside".into())),
            }
            let counts_below: Vec<u64> = hist_bits
                .chunks(n)
                .map(|c| c.iter().fold(0u64, |a, b| a.wrapping_add(*b)))
                .collect();
            let me = self.id();
            let mut hist = Vec::with_capacity(bins);
            let mut prev = 0u64;
            let total = if me == 0 { n as u64 } else { 0 };
            for upto in counts_below.iter().copied().chain(std::iter::once(total)) {
                hist.push(upto.wrapping_sub(prev));
                prev = upto;
            }

            let sum = self.sum(x);
            let mean = self.mul_public_wide(&sum, 1.0 / n as f64)?;
            // variance = Σ(x - mean)² / (n - 1), on deviations scaled by 2^-s so that the sum
            // of their squares stays below 2^60: Σ(x - mean)² ≤ Σx² ≤ n · bound².
            let spread = ((n as f64).log2() + 2.0 * bound_ring.log2() - 60.0) / 2.0;
            let s = spread.ceil().max(0.0) as i64;
            let m = mean
                .share()
                .first()
                .copied()
                .ok_or_else(|| MpcError::Shape("an empty mean".into()))?;
            let mean_all = Shared::from_share(vec![m; n]);
            let deviation = self.sub(x, &mean_all)?;
            let scaled = self.shift(&deviation, s)?;
            let squares = self.mul_raw(&scaled, &scaled)?;
            // Σ scaled² = Σ(x - mean)² · 2^(2f - 2s): the variance in fixed point is that
            // times 2^(2s - f) / (n - 1).
            let f = i32::try_from(fixed.frac_bits()).unwrap_or(0);
            let c = 2f64.powi(2 * s as i32 - f) / (n as f64 - 1.0);
            let variance = self.mul_public_wide(&self.sum(&squares), c)?;
            Ok(Statistics {
                count: n,
                sum,
                mean,
                variance,
                histogram: Shared::from_share(hist),
            })
        })();
        self.end(outer);
        out
    }

    /// Trains a logistic regression by full-batch gradient descent on `x` (`n × d`
    /// row-major, include a column of ones for a bias) and 0/1 labels `y`, from zero weights,
    /// with learning rate `rate`. Returns the shared weights (`d`).
    pub fn train_logistic_regression(
        &mut self,
        x: &Shared,
        y: &Shared,
        d: usize,
        epochs: usize,
        rate: f64,
    ) -> Result<Shared> {
        let n = y.len();
        if d == 0 || n == 0 || x.len() != n.saturating_mul(d) {
            return Err(MpcError::Shape(format!(
                "{} feature values and {n} labels are not {n} rows of {d}",
                x.len()
            )));
        }
        let outer = self.begin("logreg");
        let out = (|| {
            let mut w = self.constant_raw(&vec![0; d]);
            for _ in 0..epochs {
                let z = self.matmul(x, &w, n, d, 1)?;
                let p = self.sigmoid(&z)?;
                let err = self.sub(&p, y)?;
                let g = self.matmul(&err, x, 1, n, d)?;
                let delta = self.mul_public_scalar(&g, -rate / n as f64)?;
                w = self.add(&w, &delta)?;
            }
            Ok(w)
        })();
        self.end(outer);
        out
    }

    /// One dense layer: `x · W + b` for `x` (`batch × inputs`), `W` (`inputs × outputs`) and
    /// `b` (`outputs`, added to every row).
    pub fn dense(
        &mut self,
        x: &Shared,
        w: &Shared,
        b: &Shared,
        batch: usize,
        inputs: usize,
        outputs: usize,
    ) -> Result<Shared> {
        if b.len() != outputs {
            return Err(MpcError::Shape(format!(
                "bias of {} for {outputs} outputs",
                b.len()
            )));
        }
        let xw = self.matmul(x, w, batch, inputs, outputs)?;
        let bias = Shared::from_share((0..batch).flat_map(|_| b.share().iter().copied()).collect());
        self.add(&xw, &bias)
    }

    /// A two-layer perceptron with ReLU: `relu(x·W1 + b1)·W2 + b2`, then the one-hot argmax of
    /// each row's scores. Returns (scores, one-hot predictions).
    #[allow(clippy::too_many_arguments, reason = "the shapes of two layers")]
    pub fn mlp_predict(
        &mut self,
        x: &Shared,
        layer1: (&Shared, &Shared),
        layer2: (&Shared, &Shared),
        batch: usize,
        inputs: usize,
        hidden: usize,
        classes: usize,
    ) -> Result<(Shared, Shared)> {
        let outer = self.begin("mlp");
        let out = (|| {
            let h = self.dense(x, layer1.0, layer1.1, batch, inputs, hidden)?;
            let h = self.relu(&h)?;
            let scores = self.dense(&h, layer2.0, layer2.1, batch, hidden, classes)?;
            let (_, onehot) = self.max_argmax_groups(&scores, batch, classes)?;
            Ok((scores, onehot))
        })();
        self.end(outer);
        out
    }
}
