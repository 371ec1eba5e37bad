//! Training on secret shares: mini-batch SGD for logistic regression and multi-layer
//! perceptrons on data that no party pools, with veil-mpc's dealer protocol.
//!
//! # Data splits
//!
//! - [`Split::Rows`] (horizontal): each party holds whole rows — features and labels — of the
//!   same columns (hospitals with different patients). The rows are concatenated in party
//!   order.
//! - [`Split::Columns`] (vertical): every party holds the same rows, aligned beforehand (for
//!   example by a private set intersection on an identifier), and its own columns; exactly one
//!   party holds the labels (a bank holds some features, an insurer others and the outcome).
//!   A row's features are the parties' columns in party order.
//!
//! # What is trained
//!
//! [`Architecture::Logistic`]: one dense layer, one sigmoid per class (one-vs-rest logistic
//! regression; with two classes, plain logistic regression). [`Architecture::Mlp`]: a hidden
//! dense layer with ReLU, then the same output layer. The loss is the per-class logistic
//! loss, whose gradient at the scores is `σ(z) − y` for one-hot `y`. Weights start at zero
//! (logistic regression) or at Glorot-uniform values drawn from the public
//! [`TrainOptions::seed`]; each epoch visits the rows in a permutation drawn from the same
//! seed, in batches of [`TrainOptions::batch_size`] (the last one smaller). The schedule and
//! the initial weights are public; they depend on nothing private but the row count.
//!
//! On shares, per batch: the batch's rows are gathered locally (the permutation is public),
//! forward products are matrix triples, ReLU is exact (`x · [x ≥ 0]`, and the same bit masks
//! the backward pass), σ is veil-mpc's approximation (absolute error below 0.002), gradients
//! are two more matrix products per layer (the transposes are local), and the update
//! `W ← W − (rate / batch) · ∇W` is one product by a public constant. Only the final weights
//! are revealed, to [`TrainOptions::owner`] alone; [`plaintext_sgd`] is the same schedule in
//! `f64` with the exact sigmoid, the reference the tests hold the result to.
//!
//! # Security model
//!
//! veil-mpc's dealer protocol (see [`crate::mpc`]): semi-honest parties and dealer; any
//! coalition short of all parties learns nothing of the others' rows or columns beyond the
//! model revealed to the owner; **the dealer and any one party together see everything**.
//! Revealed to every party: the row count of each party (row split), the column count of
//! each party (column split), which party holds the labels, the number of classes, the
//! architecture and the schedule. The owner learns the trained model, which is a function of
//! everyone's data (a model can memorise training rows; train with differential privacy when
//! that matters — not provided here).
//!
//! # Range
//!
//! Every feature must lie in `[-input_bound, input_bound]` (checked by its holder before it
//! is shared). There is no worst-case range proof for training as there is for inference:
//! a learning rate that makes the weights diverge would wrap around the ring silently. With
//! features in `[-1, 1]`, σ outputs in `[0, 1]`, batch sizes below 2^15 and weights below
//! 2^10, every product stays far inside the 16-fractional-bit encoding; [`train`] checks the
//! options against those bounds.

use veil_mpc::protocol::{Exchange, Party, Shared};
use veil_mpc::FixedPoint;

use crate::error::{MlError, Result};
use crate::onnx::DenseLayer;

/// The model trained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Architecture {
    /// One dense layer (per-class logistic regression).
    Logistic,
    /// A hidden dense layer of `hidden` units with ReLU, then the output layer.
    Mlp {
        /// Hidden units.
        hidden: usize,
    },
}

/// How the training data is split between the parties.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// Each party holds whole rows (features and labels).
    Rows,
    /// Each party holds some columns of the same rows; one party holds the labels.
    Columns,
}

/// The schedule and the model.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrainOptions {
    /// The model.
    pub architecture: Architecture,
    /// Number of classes (labels are `0..classes`).
    pub classes: usize,
    /// Passes over the data.
    pub epochs: usize,
    /// Rows per SGD step.
    pub batch_size: usize,
    /// Learning rate.
    pub learning_rate: f64,
    /// Seed of the initial weights and of each epoch's row order (public).
    pub seed: u64,
    /// Every feature's magnitude is at most this.
    pub input_bound: f64,
    /// The party that receives the trained model.
    pub owner: usize,
    /// The fixed-point encoding.
    pub fixed: FixedPoint,
}

impl Default for TrainOptions {
    /// Logistic regression on 10 classes, 10 epochs of batches of 32, rate 0.5, seed 1,
    /// features in `[-1, 1]`, model to party 0.
    fn default() -> Self {
        Self {
            architecture: Architecture::Logistic,
            classes: 10,
            epochs: 10,
            batch_size: 32,
            learning_rate: 0.5,
            seed: 1,
            input_bound: 1.0,
            owner: 0,
            fixed: FixedPoint::default(),
        }
    }
}

/// One party's part of the training data.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PartyData {
    /// This party's rows (row split) or this party's columns of every row (column split).
    pub features: Vec<Vec<f64>>,
    /// The labels of those rows, if this party holds them (always in a row split with rows;
    /// exactly one party in a column split).
    pub labels: Option<Vec<usize>>,
}

/// A trained model: dense layers with ReLU between them; the scores are logits (apply a
/// sigmoid for per-class probabilities).
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    /// Features per row.
    pub input_len: usize,
    /// The layers, input first.
    pub layers: Vec<DenseLayer>,
}

impl Model {
    /// The scores of one row.
    pub fn scores(&self, x: &[f64]) -> Vec<f64> {
        let mut v = x.to_vec();
        for (i, layer) in self.layers.iter().enumerate() {
            let inn = v.len();
            let mut out = layer.bias.clone();
            for (o, acc) in out.iter_mut().enumerate() {
                *acc += (0..inn)
                    .map(|k| layer.weight[o * inn + k] * v[k])
                    .sum::<f64>();
            }
            if i + 1 < self.layers.len() {
                out.iter_mut().for_each(|z| *z = z.max(0.0));
            }
            v = out;
        }
        v
    }

    /// The predicted class of one row.
    pub fn predict(&self, x: &[f64]) -> usize {
        let s = self.scores(x);
        (0..s.len()).fold(0, |b, i| if s[i] > s[b] { i } else { b })
    }

    /// The model as an ONNX file (Gemm, Relu; 32-bit float weights), for its owner.
    pub fn to_onnx(&self) -> Result<Vec<u8>> {
        crate::onnx::export_dense(self.input_len, &self.layers, "veil-ml train")
    }
}

/// Weights in the training layout: `W` as `inputs × outputs` (row-major) and `b`.
type Layers = Vec<(Vec<f64>, Vec<f64>)>;

/// xorshift64* for the public initial weights and row orders.
struct Public(u64);

impl Public {
    fn new(seed: u64, stream: u64) -> Self {
        Self((seed ^ stream.wrapping_mul(0x9e37_79b9_7f4a_7c15)) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in `[-1, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }
}

/// The layer sizes `(inputs, outputs)`.
fn shapes(d: usize, options: &TrainOptions) -> Vec<(usize, usize)> {
    match options.architecture {
        Architecture::Logistic => vec![(d, options.classes)],
        Architecture::Mlp { hidden } => vec![(d, hidden), (hidden, options.classes)],
    }
}

/// The public initial weights.
fn initial(d: usize, options: &TrainOptions) -> Layers {
    let mut rng = Public::new(options.seed, 1);
    shapes(d, options)
        .into_iter()
        .map(|(i, o)| {
            let w = match options.architecture {
                Architecture::Logistic => vec![0.0; i * o],
                Architecture::Mlp { .. } => {
                    let a = (6.0 / (i + o) as f64).sqrt();
                    (0..i * o).map(|_| a * rng.unit()).collect()
                }
            };
            (w, vec![0.0; o])
        })
        .collect()
}

/// The batches of every epoch, in order.
fn schedule(n: usize, options: &TrainOptions) -> Vec<Vec<usize>> {
    let mut out = Vec::new();
    for epoch in 0..options.epochs {
        let mut rng = Public::new(options.seed, 2 + epoch as u64);
        let mut order: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let j = (rng.next() % (i as u64 + 1)) as usize;
            order.swap(i, j);
        }
        out.extend(
            order
                .chunks(options.batch_size.max(1))
                .map(<[usize]>::to_vec),
        );
    }
    out
}

fn check_options(options: &TrainOptions) -> Result<()> {
    let bad = |reason: String| Err(MlError::Input { reason });
    if options.classes < 2 {
        return bad(format!("{} classes: at least 2 needed", options.classes));
    }
    if options.epochs == 0 || options.batch_size == 0 || options.batch_size > 1 << 15 {
        return bad(format!(
            "{} epochs of batches of {}: both must be positive, batches at most 32768",
            options.epochs, options.batch_size
        ));
    }
    if !(options.learning_rate > 0.0 && options.learning_rate <= 16.0) {
        return bad(format!(
            "learning rate {}: it must be in (0, 16]",
            options.learning_rate
        ));
    }
    if !(options.input_bound > 0.0 && options.input_bound <= 16.0) {
        return bad(format!(
            "input bound {}: it must be in (0, 16] (scale the features)",
            options.input_bound
        ));
    }
    if let Architecture::Mlp { hidden } = options.architecture {
        if hidden == 0 || hidden > 4096 {
            return bad(format!("{hidden} hidden units: 1 to 4096"));
        }
    }
    Ok(())
}

fn one_hot(labels: &[usize], classes: usize) -> Vec<f64> {
    let mut y = vec![0.0; labels.len() * classes];
    for (r, &l) in labels.iter().enumerate() {
        y[r * classes + l] = 1.0;
    }
    y
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// Plain mini-batch SGD with the same initial weights, schedule and loss as [`train`] (exact
/// sigmoid, `f64`): the reference for what the parties compute on shares.
pub fn plaintext_sgd(x: &[Vec<f64>], y: &[usize], options: &TrainOptions) -> Result<Model> {
    check_options(options)?;
    let d = x.first().map_or(0, Vec::len);
    if d == 0 || x.len() != y.len() || x.iter().any(|r| r.len() != d) {
        return Err(MlError::Input {
            reason: "rows of equal, non-zero length and one label per row needed".into(),
        });
    }
    let k = options.classes;
    let mut layers = initial(d, options);
    for batch in schedule(x.len(), options) {
        let step = options.learning_rate / batch.len() as f64;
        let mut grads: Layers = layers
            .iter()
            .map(|(w, b)| (vec![0.0; w.len()], vec![0.0; b.len()]))
            .collect();
        for &r in &batch {
            // Forward, keeping each layer's input.
            let mut acts = vec![x[r].clone()];
            for (li, (w, b)) in layers.iter().enumerate() {
                let a = &acts[li];
                let o = b.len();
                let mut z: Vec<f64> = b.clone();
                for (j, zj) in z.iter_mut().enumerate() {
                    *zj += a
                        .iter()
                        .enumerate()
                        .map(|(i, ai)| ai * w[i * o + j])
                        .sum::<f64>();
                }
                if li + 1 < layers.len() {
                    z.iter_mut().for_each(|v| *v = v.max(0.0));
                }
                acts.push(z);
            }
            // Backward.
            let scores = &acts[layers.len()];
            let mut delta: Vec<f64> = (0..k)
                .map(|c| sigmoid(scores[c]) - f64::from(u8::from(y[r] == c)))
                .collect();
            for li in (0..layers.len()).rev() {
                let a = &acts[li];
                let o = layers[li].1.len();
                let (gw, gb) = &mut grads[li];
                for (i, ai) in a.iter().enumerate() {
                    for (g, dj) in gw[i * o..(i + 1) * o].iter_mut().zip(&delta) {
                        *g += ai * dj;
                    }
                }
                for (g, dj) in gb.iter_mut().zip(&delta) {
                    *g += dj;
                }
                if li > 0 {
                    let w = &layers[li].0;
                    delta = (0..a.len())
                        .map(|i| {
                            if a[i] > 0.0 {
                                (0..o).map(|j| w[i * o + j] * delta[j]).sum()
                            } else {
                                0.0
                            }
                        })
                        .collect();
                }
            }
        }
        for ((w, b), (gw, gb)) in layers.iter_mut().zip(&grads) {
            w.iter_mut().zip(gw).for_each(|(v, g)| *v -= step * g);
            b.iter_mut().zip(gb).for_each(|(v, g)| *v -= step * g);
        }
    }
    Ok(to_model(d, &layers))
}

/// From the training layout (`W` as inputs × outputs) to the exported one (outputs × inputs).
fn to_model(d: usize, layers: &Layers) -> Model {
    Model {
        input_len: d,
        layers: layers
            .iter()
            .map(|(w, b)| {
                let o = b.len();
                let i = w.len() / o.max(1);
                let mut t = vec![0.0; w.len()];
                for r in 0..i {
                    for c in 0..o {
                        t[c * i + r] = w[r * o + c];
                    }
                }
                DenseLayer {
                    weight: t,
                    bias: b.clone(),
                }
            })
            .collect(),
    }
}

/// This party's checks of its own data, before anything is shared.
fn check_data(data: &PartyData, split: Split, options: &TrainOptions) -> Result<()> {
    let bad = |reason: String| Err(MlError::Input { reason });
    let d = data.features.first().map_or(0, Vec::len);
    if let Some(r) = data.features.iter().position(|r| r.len() != d) {
        return bad(format!(
            "row {r} has {} values, row 0 has {d}",
            data.features[r].len()
        ));
    }
    if !data.features.is_empty() && d == 0 {
        return bad("rows without features".into());
    }
    let bound = options.input_bound;
    for (r, row) in data.features.iter().enumerate() {
        if let Some(v) = row.iter().find(|v| v.is_nan() || v.abs() > bound) {
            return bad(format!(
                "row {r} holds {v}, outside the declared range [-{bound}, {bound}]"
            ));
        }
    }
    match (&data.labels, split) {
        (Some(l), _) if l.len() != data.features.len() => {
            return bad(format!(
                "{} labels for {} rows",
                l.len(),
                data.features.len()
            ))
        }
        (None, Split::Rows) if !data.features.is_empty() => {
            return bad("in a row split every party gives the labels of its rows".into())
        }
        _ => {}
    }
    if let Some(l) = data
        .labels
        .as_ref()
        .and_then(|l| l.iter().find(|&&l| l >= options.classes))
    {
        return bad(format!("label {l} with {} classes", options.classes));
    }
    Ok(())
}

/// Gathers rows `idx` of a `_ × width` sharing.
fn rows(x: &[u64], width: usize, idx: &[usize]) -> Vec<u64> {
    let mut out = Vec::with_capacity(idx.len() * width);
    for &r in idx {
        out.extend_from_slice(&x[r * width..(r + 1) * width]);
    }
    out
}

/// The transpose of a `r × c` sharing (local).
fn transpose(x: &[u64], r: usize, c: usize) -> Vec<u64> {
    let mut out = vec![0u64; x.len()];
    for i in 0..r {
        for j in 0..c {
            out[j * r + i] = x[i * c + j];
        }
    }
    out
}

/// Adds `b` (`c`) to every row of a `r × c` sharing.
fn add_rows(x: &Shared, b: &Shared) -> Shared {
    let c = b.len().max(1);
    Shared::from_share(
        x.share()
            .iter()
            .enumerate()
            .map(|(i, v)| v.wrapping_add(b.share()[i % c]))
            .collect(),
    )
}

/// Column sums of a `r × c` sharing.
fn column_sums(x: &Shared, c: usize) -> Shared {
    let mut out = vec![0u64; c];
    for (i, v) in x.share().iter().enumerate() {
        out[i % c] = out[i % c].wrapping_add(*v);
    }
    Shared::from_share(out)
}

/// Shares everyone's data: returns the shared features (`n × d`), one-hot labels (`n × k`),
/// `n` and `d`.
fn share_data<E: Exchange>(
    p: &mut Party<E>,
    data: &PartyData,
    split: Split,
    k: usize,
) -> Result<(Shared, Shared, usize, usize)> {
    let me = p.id();
    let np = p.parties();
    let my_rows = data.features.len();
    let my_cols = data.features.first().map_or(0, Vec::len);
    let rows_of = p.exchange_lengths(my_rows)?;
    let cols_of = p.exchange_lengths(my_cols)?;
    let labels_of = p.exchange_lengths(usize::from(data.labels.is_some()))?;
    let flat: Vec<f64> = data.features.iter().flatten().copied().collect();
    let mismatch = |reason: String| Err(MlError::Input { reason });
    match split {
        Split::Rows => {
            let d = cols_of.iter().copied().max().unwrap_or(0);
            if (0..np).any(|j| rows_of[j] > 0 && cols_of[j] != d) {
                return mismatch(format!("the parties' rows have {cols_of:?} features"));
            }
            let n: usize = rows_of.iter().sum();
            if n == 0 || d == 0 {
                return mismatch("no training row".into());
            }
            let (mut xs, mut ys) = (Vec::new(), Vec::new());
            for (j, &rows) in rows_of.iter().enumerate() {
                let mine = j == me;
                xs.push(p.input(j, mine.then_some(&flat[..]), rows * d)?);
                let y = if mine {
                    data.labels.as_ref().map(|l| one_hot(l, k))
                } else {
                    None
                };
                ys.push(p.input(j, y.as_deref(), rows * k)?);
            }
            Ok((p.concat(&xs), p.concat(&ys), n, d))
        }
        Split::Columns => {
            let n = rows_of[0];
            if n == 0 || rows_of.iter().any(|&r| r != n) {
                return mismatch(format!(
                    "a column split needs the same rows at every party, they hold {rows_of:?}"
                ));
            }
            let holders: Vec<usize> = (0..np).filter(|&j| labels_of[j] == 1).collect();
            let [holder] = holders[..] else {
                return mismatch(format!(
                    "a column split needs exactly one party with the labels, parties {holders:?} have them"
                ));
            };
            let d: usize = cols_of.iter().sum();
            let mut blocks = Vec::with_capacity(np);
            for (j, &c) in cols_of.iter().enumerate() {
                blocks.push(p.input(j, (j == me).then_some(&flat[..]), n * c)?);
            }
            let mut x = Vec::with_capacity(n * d);
            for r in 0..n {
                for (b, &c) in blocks.iter().zip(&cols_of) {
                    x.extend_from_slice(&b.share()[r * c..(r + 1) * c]);
                }
            }
            let y = if me == holder {
                data.labels.as_ref().map(|l| one_hot(l, k))
            } else {
                None
            };
            let y = p.input(holder, y.as_deref(), n * k)?;
            Ok((Shared::from_share(x), y, n, d))
        }
    }
}

/// Trains on shares (every party calls it with its own data); the owner gets `Some(model)`,
/// the others `None`. See the [module documentation](self).
pub fn train<E: Exchange>(
    p: &mut Party<E>,
    data: &PartyData,
    split: Split,
    options: &TrainOptions,
) -> Result<Option<Model>> {
    check_options(options)?;
    if options.owner >= p.parties() {
        return Err(MlError::Input {
            reason: format!("owner {} of {} parties", options.owner, p.parties()),
        });
    }
    if p.fixed() != options.fixed {
        return Err(MlError::Input {
            reason: "the party and the options encode with different fractional bits".into(),
        });
    }
    check_data(data, split, options)?;
    let k = options.classes;
    let (x, y, n, d) = share_data(p, data, split, k)?;
    // Weights in the training layout, shared (the initial values are public: party 0 holds
    // them, the others zeros).
    let mut layers: Vec<(Shared, Shared)> = Vec::new();
    for (w, b) in initial(d, options) {
        layers.push((p.constant(&w)?, p.constant(&b)?));
    }
    let dims = shapes(d, options);
    for batch in schedule(n, options) {
        let bsz = batch.len();
        let xb = rows(x.share(), d, &batch);
        let yb = Shared::from_share(rows(y.share(), k, &batch));
        // Forward: each layer's input, and the ReLU masks.
        let mut acts = vec![Shared::from_share(xb)];
        let mut masks = Vec::new();
        for (li, ((w, b), &(i, o))) in layers.iter().zip(&dims).enumerate() {
            let z = p.matmul(&acts[li], w, bsz, i, o)?;
            let z = add_rows(&z, b);
            if li + 1 < layers.len() {
                let neg = p.ltz(&z)?;
                let one = p.constant_raw(&vec![1; z.len()]);
                let pos = p.sub(&one, &neg)?;
                acts.push(p.mul_raw(&z, &pos)?);
                masks.push(pos);
            } else {
                acts.push(z);
            }
        }
        let scores = acts.pop().ok_or(MlError::Internal("no scores"))?;
        let prob = p.sigmoid(&scores)?;
        let mut delta = p.sub(&prob, &yb)?;
        // Backward: gradients of every layer, scaled in one product at the end.
        let mut grads = Vec::with_capacity(layers.len());
        for li in (0..layers.len()).rev() {
            let (i, o) = dims[li];
            let at = Shared::from_share(transpose(acts[li].share(), bsz, i));
            let gw = p.matmul(&at, &delta, i, bsz, o)?;
            let gb = column_sums(&delta, o);
            if li > 0 {
                let wt = Shared::from_share(transpose(layers[li].0.share(), i, o));
                let back = p.matmul(&delta, &wt, bsz, o, i)?;
                delta = p.mul_raw(&back, &masks[li - 1])?;
            }
            grads.push((gw, gb));
        }
        grads.reverse();
        let flat: Vec<Shared> = grads
            .iter()
            .flat_map(|(gw, gb)| [gw.clone(), gb.clone()])
            .collect();
        let all = p.concat(&flat);
        let step = p.mul_public_scalar(&all, -options.learning_rate / bsz as f64)?;
        let mut at = 0;
        for (w, b) in &mut layers {
            let (lw, lb) = (w.len(), b.len());
            let s = step.share();
            *w = p.add(w, &Shared::from_share(s[at..at + lw].to_vec()))?;
            at += lw;
            *b = p.add(b, &Shared::from_share(s[at..at + lb].to_vec()))?;
            at += lb;
        }
    }
    let mut out: Layers = Vec::new();
    for (w, b) in &layers {
        let both = p.concat(&[w.clone(), b.clone()]);
        if let Some(v) = p.reveal_to(&both, options.owner)? {
            let (w, b) = v.split_at(w.len());
            out.push((w.to_vec(), b.to_vec()));
        }
    }
    Ok((p.id() == options.owner).then(|| to_model(d, &out)))
}

/// Runs [`train`] with one thread per party and the dealer in this process (tests,
/// benchmarks, single-machine use: it protects nothing by itself). Returns the owner's model.
pub fn train_local(parts: &[PartyData], split: Split, options: &TrainOptions) -> Result<Model> {
    let parts = std::sync::Arc::new(parts.to_vec());
    let options = *options;
    let out = veil_mpc::memory::run(parts.len(), options.fixed, move |party| {
        let me = party.id();
        Ok(train(party, &parts[me], split, &options))
    })?;
    let mut model = None;
    let mut first_err = None;
    for r in out {
        match r {
            Ok(Some(m)) => model = Some(m),
            Ok(None) => {}
            Err(e) => {
                let gone = matches!(e, MlError::Mpc(veil_mpc::MpcError::PartyGone { .. }));
                if first_err.is_none() || !gone {
                    first_err = Some(e);
                }
            }
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    model.ok_or(MlError::Internal("the owner got no model"))
}
