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

    /// Sum, mean, sample variance and a histogram with `bins` equal bins over the public range
    /// `[low, high)` (values outside count in the first or last bin) of `x`.
    pub fn statistics(
        &mut self,
        x: &Shared,
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
        let outer = self.begin("statistics");
        let out = (|| {
            let sum = self.sum(x);
            let mean = self.mul_public_scalar(&sum, 1.0 / n as f64)?;
            // variance = (Σx² - n·mean²) / (n - 1)
            let sq = self.square(x)?;
            let sum_sq = self.sum(&sq);
            let mean_sq = self.square(&mean)?;
            let n_mean_sq = self.mul_public_int(&mean_sq, &[n as i64])?;
            let centered = self.sub(&sum_sq, &n_mean_sq)?;
            let variance = self.mul_public_scalar(&centered, 1.0 / (n as f64 - 1.0))?;
            // below[k] = #{x < edge_k} for the inner edges; all comparisons in one batch.
            let width = (high - low) / bins as f64;
            let edges: Vec<f64> = (1..bins).map(|k| low + width * k as f64).collect();
            let mut shifted = Vec::with_capacity(n * edges.len());
            for e in &edges {
                let d = self.add_public(x, &vec![-e; n])?;
                shifted.extend_from_slice(d.share());
            }
            let below = if edges.is_empty() {
                Shared::from_share(Vec::new())
            } else {
                self.ltz(&Shared::from_share(shifted))?
            };
            let counts_below: Vec<u64> = below
                .share()
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
