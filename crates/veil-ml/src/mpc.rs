//! Secure inference of a model with multi-party computation, on either of veil-mpc's
//! protocol families ([`veil_mpc::Engine`]).
//!
//! The [`ir::Graph`](crate::ir::Graph) of a model runs on secret shares over `Z_2^64`, with
//! the fixed-point encoding of [`veil_mpc::FixedPoint`] (16 fractional bits by default):
//! additive shares held by two or more parties with a dealer ([`run_local`], `veil ml party`),
//! or replicated shares held by exactly three parties and no dealer ([`run_local_replicated`],
//! `veil ml party --protocol replicated`). The plan and the weights are the same for both.
//!
//! # Roles
//!
//! - The **model owner** (one of the parties, [`MpcOptions::owner`]) holds the weights. It
//!   compiles the model ([`MpcPlan::compile`]): the plan it publishes holds the architecture
//!   only (operators, shapes, the declared input range), no weight; the weights stay in its
//!   [`ModelWeights`] and enter the computation as shares ([`MpcPlan::share_model`]).
//! - The **client** ([`MpcOptions::client`]) holds the inputs and secret-shares them
//!   ([`MpcPlan::infer`]); it alone receives the result.
//! - Every party (the owner and the client are parties; more may join as pure compute
//!   parties) runs the same plan on its shares. The **dealer** of veil-mpc, a separate
//!   process, hands out the correlated randomness (matrix triples, square pairs, truncation
//!   pairs, comparison masks) in the dealer family; in the three-party family the parties
//!   make it themselves from pairwise keys (party 2 draws the truncation masks).
//!
//! # What runs how
//!
//! | IR operator | on shares |
//! |---|---|
//! | `Linear` (Gemm, MatMul) | one batched matrix-triple product `X·Wᵀ` per layer (batch × in by in × out), then the shared bias |
//! | `Conv2d` | im2col of the shares (local: stride, padding, dilation, channels), one matrix product per group, shared bias |
//! | `Affine` not folded | Beaver product by the shared factors, shared offsets |
//! | `Add`, `Sub` / `Mul`, `Square` | local / Beaver product, square pair (each followed by a truncation) |
//! | `Relu` | exact: `x · [x ≥ 0]` with veil-mpc's comparison |
//! | `MaxPool` | exact: a tournament of comparisons per window, all windows and samples at once (`⌈log2 k²⌉` levels of 9 rounds) |
//! | `Sigmoid` / `Tanh` | veil-mpc's sigmoid (absolute error below 0.002) / `2·σ(2x) − 1` (below 0.004) |
//! | `AveragePool`, `GlobalAveragePool` | local sums, one product by the public `1/count` |
//! | `Reshape` (Flatten), `Transpose` | a permutation of the shares (local) |
//! | `ArgMax` (or the scores at the end) | a comparison tournament; only the label is revealed |
//! | `Softmax` at the end | applied by the client to revealed scores ([`Reveal::Scores`]) |
//!
//! Anything else (`Softplus`, tree ensembles, `Softmax` or `ArgMax` inside the model) is
//! refused at compilation with [`MlError::UnsupportedOp`] or [`MlError::UnsupportedUse`]
//! naming the node. A batch of samples runs together: the batch is folded into the rows of
//! every matrix product, so a batch costs the rounds of one sample.
//!
//! # Fixed-point range
//!
//! A fixed-point product is exact in the ring but its truncation requires the product to
//! stay below `2^62` ring units, `2^(62 − 2f)` in real units; past it, the result wraps
//! around silently. [`MpcPlan::compile`] therefore bounds every value of the model by
//! interval analysis of the owner's weights from the declared input range
//! ([`MpcOptions::input_bound`]): each matrix product, square, product and pooling division
//! (window sum times the encoded `1/count`) must stay below `2^(61 − 2f)` (one bit of
//! headroom for rounding), each weight must encode. A model that could overflow is refused
//! with [`MlError::FixedPointRange`] naming the node;
//! the bound is worst case, so a model that passes never wraps on inputs in the range. The
//! client checks its inputs against the declared range before sharing them.
//!
//! # Security model
//!
//! With the three-party family, that of [`veil_mpc::rss`]: no dealer, semi-honest parties,
//! any one party learns nothing beyond what is revealed to it, **any two together learn
//! everything**; the roles below are the same. With the dealer family, that of veil-mpc's
//! dealer protocol (`docs/security/mpc.md`, [`veil_mpc`] crate docs):
//!
//! - **Semi-honest** parties and dealer: everyone follows the protocol. Shares carry no
//!   MAC: a party that deviates can change the prediction undetected.
//! - **Collusion**: any coalition of parties short of all of them learns nothing of the
//!   weights (unless it includes the owner) or of the inputs (unless it includes the client)
//!   beyond what is revealed to it. **The dealer together with any one party sees
//!   everything** — weights, inputs, every intermediate value — so the dealer must be run by
//!   someone who colludes with no party (or in an attested TEE).
//! - **Revealed on purpose**, to everyone: the architecture (operators, shapes, the declared
//!   input range), the batch size, and so the traffic pattern; the plan also carries the
//!   worst-case score bound of the range analysis ([`MpcPlan::score_bound`], a function of
//!   the weights' magnitudes). To the client only: the predicted labels ([`Reveal::Label`])
//!   or the scores ([`Reveal::Scores`]; scores reveal much more of the model to a client
//!   that queries it often). The owner (when it is not the client) learns nothing of the
//!   inputs or the results; the other parties nothing at all.
//!
//! # Error
//!
//! With `f` fractional bits each weight and input is rounded to a multiple of `2^-f` (off by
//! at most `2^-(f+1)`), and each truncation is off by at most `2^-f`; the scores of the digits models differ from the
//! plaintext executor's by about `10^-3` at 16 bits (measured in `tests/mpc.rs`).
//!
//! ```
//! # fn main() -> veil_ml::Result<()> {
//! use veil_ml::mpc::{MpcOptions, MpcPlan};
//! let model = veil_ml::onnx::import_file(concat!(env!("CARGO_MANIFEST_DIR"), "/models/mlp.onnx"))?;
//! // The model owner compiles: the plan is public, the weights stay with it.
//! let (plan, weights) = MpcPlan::compile(&model.graph, &MpcOptions::default())?;
//! // Two parties and the dealer as threads of this process; the client asks for 2 images.
//! let images = vec![vec![0.25; 64], vec![0.5; 64]];
//! let run = veil_ml::mpc::run_local(&plan, &weights, 2, &images, 2)?;
//! // Only the client learns the labels: here, those of the plaintext model.
//! for (image, prediction) in images.iter().zip(&run.predictions) {
//!     let logits = &model.graph.run(image)?[0];
//!     let best = (0..10).fold(0, |b, i| if logits[i] > logits[b] { i } else { b });
//!     assert_eq!(prediction.label, best as i64);
//! }
//! # Ok(()) }
//! ```

use std::sync::Arc;
use std::time::Instant;

use veil_mpc::protocol::OpStats;
use veil_mpc::Engine;
use veil_mpc::{FixedPoint, MpcError};

use crate::error::{MlError, Result};
use crate::exec::eval;
use crate::ir::{Activation, Conv2d, Graph, Op, Pool2d, Tensor, ValueId};

/// Weights shared per message by [`MpcPlan::share_model`] (16 MiB of ring elements).
const SHARE_PIECE: usize = 1 << 21;

/// The operators the MPC backend runs, for error messages.
const SUPPORTED: &str = "under MPC: Gemm/MatMul, Conv, BatchNormalization and constant \
    Mul/Add (folded or on shares), Add, Sub, Mul, square, Relu, Sigmoid, Tanh, AveragePool, \
    MaxPool, GlobalAveragePool, Flatten/Reshape, Transpose, and ArgMax/Softmax at the end";

/// What the client learns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reveal {
    /// The predicted label only (a secure argmax; the scores stay shared).
    #[default]
    Label,
    /// The scores (softmax applied by the client if the model ends with one) and the label
    /// the client computes from them.
    Scores,
}

/// How a model is run under MPC.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MpcOptions {
    /// The party holding the weights.
    pub owner: usize,
    /// The party holding the inputs and receiving the result.
    pub client: usize,
    /// What the client receives.
    pub reveal: Reveal,
    /// Declared bound on every input element's magnitude (`|x| ≤ input_bound`); the range
    /// analysis starts from it and the client refuses inputs outside it.
    pub input_bound: f64,
    /// The fixed-point encoding.
    pub fixed: FixedPoint,
}

impl Default for MpcOptions {
    /// Owner party 0, client party 1, label only, inputs in `[-1, 1]`, 16 fractional bits.
    fn default() -> Self {
        Self {
            owner: 0,
            client: 1,
            reveal: Reveal::Label,
            input_bound: 1.0,
            fixed: FixedPoint::default(),
        }
    }
}

/// One operator of the plan, with the public part of its parameters.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum Step {
    /// `[B, inn] · [inn, out] + bias`; parameters `Wᵀ` (`inn × out`) then the bias.
    Linear {
        inn: usize,
        out: usize,
    },
    /// im2col and one product per group; parameters `W_gᵀ` per group then the bias.
    Conv(ConvShape),
    /// `x · mul + add`; parameters `mul` (if any) then `add` (if any).
    Affine {
        has_mul: bool,
        has_add: bool,
    },
    Add,
    Sub,
    Mul,
    Square,
    Relu,
    Sigmoid,
    Tanh,
    /// Per output element, the maximum over its window of input positions (a comparison
    /// tournament).
    MaxPool {
        windows: Vec<Vec<usize>>,
    },
    /// Window sums (per output element, the input positions) then `· 1/count`.
    Pool {
        windows: Vec<Vec<usize>>,
        scale: Vec<f64>,
    },
    /// Output element `i` is input element `map[i]` (Reshape: identity, Transpose).
    Permute {
        map: Option<Vec<usize>>,
    },
}

/// The public shape of a convolution.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ConvShape {
    in_shape: [usize; 3],
    out_shape: [usize; 3],
    kernel: [usize; 2],
    stride: [usize; 2],
    pads: [usize; 4],
    dilation: [usize; 2],
    groups: usize,
}

impl ConvShape {
    fn cig(&self) -> usize {
        self.in_shape[0] / self.groups
    }

    fn cog(&self) -> usize {
        self.out_shape[0] / self.groups
    }

    /// Rows of one group's weight matrix: `cig · kh · kw`.
    fn patch(&self) -> usize {
        self.cig() * self.kernel[0] * self.kernel[1]
    }

    /// For group `g`, the input element (or `None`: padding) at patch column `col` of output
    /// position `(oy, ox)`.
    fn source(&self, g: usize, oy: usize, ox: usize, col: usize) -> Option<usize> {
        let [_, h, w] = self.in_shape;
        let [kh, kw] = self.kernel;
        let k = col / (kh * kw);
        let ky = (col / kw) % kh;
        let kx = col % kw;
        let iy = (oy * self.stride[0] + ky * self.dilation[0]).checked_sub(self.pads[0])?;
        let ix = (ox * self.stride[1] + kx * self.dilation[1]).checked_sub(self.pads[1])?;
        if iy >= h || ix >= w {
            return None;
        }
        Some(((g * self.cig() + k) * h + iy) * w + ix)
    }
}

/// A node of the plan.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanNode {
    name: String,
    step: Step,
    inputs: Vec<ValueId>,
    output: ValueId,
    /// Number of secret parameters (shared by the owner).
    params: usize,
}

/// A model compiled for MPC inference: the architecture, **without the weights** — what
/// every party needs and may know. Made by the owner with [`MpcPlan::compile`].
#[derive(Clone, Debug, PartialEq)]
pub struct MpcPlan {
    nodes: Vec<PlanNode>,
    /// Per-sample element count of each value.
    sizes: Vec<usize>,
    input: ValueId,
    scores: ValueId,
    labels: Vec<i64>,
    softmax: bool,
    options: MpcOptions,
    /// Worst-case magnitude of the scores (interval analysis), or the calibrated one.
    score_bound: f64,
    /// Set when the bounds were measured on samples instead of proven.
    calibration: Option<Calibration>,
}

/// How a plan's value bounds were measured ([`MpcPlan::compile_calibrated`]).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    /// Number of samples measured.
    pub samples: usize,
    /// Factor applied to the measured bounds.
    pub margin: f64,
}

/// The model owner's secret parameters, in the order the plan shares them. Never leaves
/// the owner except as shares.
#[derive(Clone, PartialEq)]
pub struct ModelWeights {
    values: Vec<f64>,
}

impl std::fmt::Debug for ModelWeights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ModelWeights({} values)", self.values.len())
    }
}

impl ModelWeights {
    /// Number of parameters.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether the model has no secret parameter.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

/// This party's shares of the model's parameters, one block per node.
#[derive(Debug)]
pub struct SharedModel<S> {
    blocks: Vec<S>,
}

/// A prediction, as the client receives it.
#[derive(Clone, Debug, PartialEq)]
pub struct Prediction {
    /// The predicted label.
    pub label: i64,
    /// The scores ([`Reveal::Scores`] only), after the model's final softmax if it has one.
    pub scores: Option<Vec<f64>>,
}

fn range_error(
    node: &str,
    op: &str,
    what: &'static str,
    bound: f64,
    limit: f64,
    options: &MpcOptions,
) -> MlError {
    MlError::FixedPointRange {
        node: node.to_string(),
        op: op.to_string(),
        what,
        bound,
        limit,
        input_bound: options.input_bound,
        frac_bits: options.fixed.frac_bits(),
    }
}

fn unsupported(node: &str, op: &str, domain: &str) -> MlError {
    MlError::UnsupportedOp {
        node: node.to_string(),
        op: op.to_string(),
        domain: domain.to_string(),
        supported: SUPPORTED,
    }
}

fn unsupported_use(node: &str, op: &str, reason: impl Into<String>) -> MlError {
    MlError::UnsupportedUse {
        node: node.to_string(),
        op: op.to_string(),
        reason: reason.into(),
    }
}

/// `x < limit`, false for NaN.
fn below(x: f64, limit: f64) -> bool {
    x.partial_cmp(&limit) == Some(std::cmp::Ordering::Less)
}

fn max_of(v: &[f64]) -> f64 {
    v.iter().fold(0.0f64, |a, &b| a.max(b))
}

fn abs_tensor(t: &Tensor) -> Result<Tensor> {
    Tensor::new(
        t.shape().to_vec(),
        t.data().iter().map(|v| v.abs()).collect(),
    )
}

/// The per-sample index map of a layout operator: output element `i` is input element
/// `map[i]`.
fn layout_map(op: &Op, shape: &[usize], n: usize) -> Result<Vec<usize>> {
    let idx: Vec<f64> = (0..n).map(|i| i as f64).collect();
    let moved = eval(op, shape, &[&idx])?;
    // Indices below 2^53 are exact in f64.
    Ok(moved.iter().map(|&v| v as usize).collect())
}

impl MpcPlan {
    /// Compiles `graph` for MPC inference (run by the model owner): checks every operator is
    /// supported, bounds every value by interval analysis from `options.input_bound` and
    /// refuses a model whose fixed-point products could overflow, and splits the model into
    /// the public plan and the owner's secret [`ModelWeights`].
    pub fn compile(graph: &Graph, options: &MpcOptions) -> Result<(Self, ModelWeights)> {
        Self::compile_inner(graph, options, None)
    }

    /// [`MpcPlan::compile`] with value bounds **measured** on `samples` (the largest
    /// magnitude of each value over them, times `margin`) instead of the worst case over the
    /// declared input range. For deep models (a ResNet with random weights) whose worst case
    /// overflows any fixed-point encoding although their actual values are small. **The
    /// guarantee becomes statistical**: an input whose intermediate values exceed the
    /// calibrated ones by more than the margin can wrap around the ring and give a wrong
    /// result without an error. The plan records it ([`MpcPlan::calibration`]), so every
    /// party sees that the owner opted out of the worst-case check.
    pub fn compile_calibrated(
        graph: &Graph,
        options: &MpcOptions,
        samples: &[Vec<f64>],
        margin: f64,
    ) -> Result<(Self, ModelWeights)> {
        if samples.is_empty() || !(margin.is_finite() && margin >= 1.0) {
            return Err(MlError::Input {
                reason: format!(
                    "calibration needs samples ({} given) and a margin of at least 1 ({margin})",
                    samples.len()
                ),
            });
        }
        let mut observed = vec![0.0f64; graph.values().len()];
        for x in samples {
            if let Some(v) = x
                .iter()
                .find(|v| v.is_nan() || v.abs() > options.input_bound)
            {
                return Err(MlError::Input {
                    reason: format!(
                        "a calibration sample holds {v}, outside the declared input range"
                    ),
                });
            }
            for (o, vals) in observed.iter_mut().zip(graph.run_all(x)?) {
                *o = vals.iter().fold(*o, |m, v| m.max(v.abs()));
            }
        }
        let bounds: Vec<f64> = observed.iter().map(|o| o * margin).collect();
        let (mut plan, weights) = Self::compile_inner(graph, options, Some(&bounds))?;
        plan.calibration = Some(Calibration {
            samples: samples.len(),
            margin,
        });
        Ok((plan, weights))
    }

    fn compile_inner(
        graph: &Graph,
        options: &MpcOptions,
        calibrated: Option<&[f64]>,
    ) -> Result<(Self, ModelWeights)> {
        let fixed = options.fixed;
        let f = fixed.frac_bits() as i32;
        // Products before truncation: below 2^62 ring units, one bit of headroom.
        let product_limit = 2f64.powi(61 - 2 * f);
        // Encodable values (weights, inputs): |x · 2^f| < 2^46.
        let encode_limit = 2f64.powi(46 - f);
        let bad_bound =
            !below(0.0, options.input_bound) || !below(options.input_bound, encode_limit);
        if bad_bound {
            return Err(MlError::Input {
                reason: format!(
                    "the declared input bound {} must be positive and below {encode_limit} \
                     with {f} fractional bits",
                    options.input_bound
                ),
            });
        }
        // Operators no position makes supported, before the model's outputs are looked at.
        for node in graph.nodes() {
            match &node.op {
                Op::TreeEnsemble(_) => {
                    return Err(unsupported(&node.name, node.op.name(), "ai.onnx.ml"))
                }
                Op::Activation(Activation::Softplus) => {
                    return Err(unsupported_use(
                        &node.name,
                        node.op.name(),
                        "not supported under MPC yet: veil-mpc has no logarithm \
                         approximation (Relu, Sigmoid and Tanh are)",
                    ))
                }
                _ => {}
            }
        }
        let [output] = graph.outputs() else {
            return Err(MlError::invalid(format!(
                "the MPC backend runs models with one output, this one has {}",
                graph.outputs().len()
            )));
        };
        let producer = |v: ValueId| graph.nodes().iter().position(|n| n.output == v);
        // The tail the client evaluates itself: [Softmax] [ArgMax].
        let mut tail = Vec::new();
        let mut scores = *output;
        let mut labels = None;
        let mut softmax = false;
        if let Some(i) = producer(scores) {
            if let Op::ArgMax { labels: l } = &graph.nodes()[i].op {
                labels = Some(l.clone());
                tail.push(i);
                scores = graph.nodes()[i].inputs[0];
            }
        }
        if let Some(i) = producer(scores) {
            if graph.nodes()[i].op == Op::Softmax {
                softmax = true;
                tail.push(i);
                scores = graph.nodes()[i].inputs[0];
            }
        }
        let sizes: Vec<usize> = graph
            .values()
            .iter()
            .map(|v| v.shape.iter().product())
            .collect();
        let score_len = sizes[scores];
        if score_len == 0 {
            return Err(MlError::invalid("the model's scores are empty"));
        }
        let labels = labels.unwrap_or_else(|| (0..score_len as i64).collect());

        let mut bounds: Vec<Option<Vec<f64>>> = vec![None; graph.values().len()];
        bounds[graph.input_id()] = Some(vec![options.input_bound; sizes[graph.input_id()]]);
        let mut nodes = Vec::new();
        let mut weights = Vec::new();
        for (i, node) in graph.nodes().iter().enumerate() {
            if tail.contains(&i) {
                continue;
            }
            let name = node.name.as_str();
            let op_name = node.op.name();
            let mut args = Vec::with_capacity(node.inputs.len());
            for &v in &node.inputs {
                args.push(
                    bounds[v]
                        .as_deref()
                        .ok_or(MlError::Internal("value read before it is computed"))?,
                );
            }
            let in_shape = graph
                .value(node.inputs[0])
                .map(|v| v.shape.clone())
                .ok_or(MlError::Internal("node input is not a value"))?;
            let out_shape = graph
                .value(node.output)
                .map(|v| v.shape.clone())
                .ok_or(MlError::Internal("node output is not a value"))?;
            let check_weights = |w: &[f64]| -> Result<()> {
                let m = w.iter().fold(0.0f64, |a, &b| a.max(b.abs()));
                if !below(m, encode_limit) {
                    return Err(range_error(
                        name,
                        op_name,
                        "a weight",
                        m,
                        encode_limit,
                        options,
                    ));
                }
                Ok(())
            };
            // Calibrated: the measured bound of this node's output stands for its products.
            let observed = calibrated.map(|c| c[node.output]);
            let check_product = |pre: &[f64], what: &'static str| -> Result<()> {
                let m = observed.unwrap_or_else(|| max_of(pre));
                if !below(m, product_limit) {
                    return Err(range_error(name, op_name, what, m, product_limit, options));
                }
                Ok(())
            };
            let x = args[0];
            let (step, out_bound, params) = match &node.op {
                Op::Linear { weight, bias } => {
                    let inn = x.len();
                    let out = bias.len();
                    check_weights(weight.data())?;
                    check_weights(bias)?;
                    let abs = Op::Linear {
                        weight: abs_tensor(weight)?,
                        bias: vec![0.0; out],
                    };
                    let pre = eval(&abs, &in_shape, &[x])?;
                    check_product(&pre, "the matrix product before truncation")?;
                    let bound = pre.iter().zip(bias).map(|(p, b)| p + b.abs()).collect();
                    // Wᵀ: inn × out.
                    let mut params = Vec::with_capacity(inn * out + out);
                    for k in 0..inn {
                        for o in 0..out {
                            params.push(weight.data()[o * inn + k]);
                        }
                    }
                    params.extend_from_slice(bias);
                    (Step::Linear { inn, out }, bound, params)
                }
                Op::Conv2d(c) => {
                    let (step, params) = conv_step(c, &in_shape, &out_shape)?;
                    check_weights(c.weight.data())?;
                    check_weights(&c.bias)?;
                    let abs = Op::Conv2d(Conv2d {
                        weight: abs_tensor(&c.weight)?,
                        bias: vec![0.0; c.bias.len()],
                        ..c.clone()
                    });
                    let pre = eval(&abs, &in_shape, &[x])?;
                    check_product(&pre, "the convolution's product before truncation")?;
                    let plane = pre.len() / c.bias.len().max(1);
                    let bound = pre
                        .iter()
                        .enumerate()
                        .map(|(k, p)| p + c.bias[k / plane.max(1)].abs())
                        .collect();
                    (step, bound, params)
                }
                Op::Affine { mul, add } => {
                    check_weights(mul)?;
                    check_weights(add)?;
                    let pre: Vec<f64> = if mul.is_empty() {
                        x.to_vec()
                    } else {
                        x.iter().zip(mul).map(|(b, m)| b * m.abs()).collect()
                    };
                    if !mul.is_empty() {
                        check_product(&pre, "the product by the affine factors")?;
                    }
                    let bound = pre
                        .iter()
                        .enumerate()
                        .map(|(k, p)| p + add.get(k).map_or(0.0, |a| a.abs()))
                        .collect();
                    let mut params = mul.clone();
                    params.extend_from_slice(add);
                    (
                        Step::Affine {
                            has_mul: !mul.is_empty(),
                            has_add: !add.is_empty(),
                        },
                        bound,
                        params,
                    )
                }
                Op::Add | Op::Sub => {
                    let bound = x.iter().zip(args[1]).map(|(a, b)| a + b).collect();
                    let step = if node.op == Op::Add {
                        Step::Add
                    } else {
                        Step::Sub
                    };
                    (step, bound, Vec::new())
                }
                Op::Mul => {
                    let pre: Vec<f64> = x.iter().zip(args[1]).map(|(a, b)| a * b).collect();
                    check_product(&pre, "the product before truncation")?;
                    (Step::Mul, pre, Vec::new())
                }
                Op::Square => {
                    let pre: Vec<f64> = x.iter().map(|a| a * a).collect();
                    check_product(&pre, "the square before truncation")?;
                    (Step::Square, pre, Vec::new())
                }
                Op::Activation(Activation::Relu) => (Step::Relu, x.to_vec(), Vec::new()),
                Op::Activation(Activation::Sigmoid) => {
                    (Step::Sigmoid, vec![1.0; x.len()], Vec::new())
                }
                Op::Activation(Activation::Tanh) => {
                    // 2x must encode.
                    let twice: Vec<f64> = x.iter().map(|a| 2.0 * a).collect();
                    check_product(&twice, "twice the input of tanh")?;
                    (Step::Tanh, vec![1.0; x.len()], Vec::new())
                }
                Op::Activation(Activation::Softplus) => {
                    return Err(unsupported_use(
                        name,
                        op_name,
                        "not supported under MPC yet: veil-mpc has no logarithm \
                         approximation (Relu, Sigmoid and Tanh are)",
                    ))
                }
                Op::AveragePool(p) => {
                    let (step, sums) = pool_step(p, &in_shape, &out_shape, x)?;
                    if let Step::Pool { scale, .. } = &step {
                        check_product(
                            &division_products(&sums, scale, fixed.frac_bits()),
                            "the pooling window's sum times 1/count before truncation",
                        )?;
                    }
                    let bound = eval(&node.op, &in_shape, &[x])?;
                    (step, bound, Vec::new())
                }
                Op::MaxPool(p) => {
                    let windows = crate::exec::pool_windows(p, &in_shape);
                    let bound: Vec<f64> = windows
                        .iter()
                        .map(|w| w.iter().fold(0.0f64, |m, &k| m.max(x[k])))
                        .collect();
                    // The tournament compares differences of window values.
                    let twice: Vec<f64> = x.iter().map(|a| 2.0 * a).collect();
                    let limit = 2f64.powi(62 - f);
                    if !below(max_of(&twice), limit) {
                        return Err(range_error(
                            name,
                            op_name,
                            "the difference of two pooled values",
                            max_of(&twice),
                            limit,
                            options,
                        ));
                    }
                    (Step::MaxPool { windows }, bound, Vec::new())
                }
                Op::GlobalAveragePool => {
                    let [c, h, w] = in_shape[..] else {
                        return Err(MlError::Internal("global pooling of a non-[C, H, W] value"));
                    };
                    let plane = h * w;
                    let windows: Vec<Vec<usize>> = (0..c)
                        .map(|ch| (ch * plane..(ch + 1) * plane).collect())
                        .collect();
                    let sums: Vec<f64> = windows
                        .iter()
                        .map(|win| win.iter().map(|&k| x[k]).sum())
                        .collect();
                    let scale = vec![1.0 / plane.max(1) as f64; c];
                    check_product(
                        &division_products(&sums, &scale, fixed.frac_bits()),
                        "the pooling sum times 1/count before truncation",
                    )?;
                    let bound = eval(&node.op, &in_shape, &[x])?;
                    (Step::Pool { windows, scale }, bound, Vec::new())
                }
                Op::Reshape { .. } => (Step::Permute { map: None }, x.to_vec(), Vec::new()),
                Op::Transpose { .. } => {
                    let map = layout_map(&node.op, &in_shape, x.len())?;
                    let bound = map.iter().map(|&k| x[k]).collect();
                    (Step::Permute { map: Some(map) }, bound, Vec::new())
                }
                Op::TreeEnsemble(_) => return Err(unsupported(name, op_name, "ai.onnx.ml")),
                Op::Softmax | Op::ArgMax { .. } => {
                    return Err(unsupported_use(
                        name,
                        op_name,
                        "under MPC only at the end of the model (the client applies it); \
                         not inside it",
                    ))
                }
            };
            let out_bound = match observed {
                Some(o) => vec![o; out_bound.len()],
                None => out_bound,
            };
            bounds[node.output] = Some(out_bound);
            nodes.push(PlanNode {
                name: node.name.clone(),
                step,
                inputs: node.inputs.clone(),
                output: node.output,
                params: params.len(),
            });
            weights.extend(params);
        }
        let score_bound = bounds[scores]
            .as_deref()
            .map(max_of)
            .ok_or(MlError::Internal("the scores are not computed"))?;
        // The argmax compares differences of scores: they must stay inside the ring's sign.
        if !below(2.0 * score_bound, 2f64.powi(62 - f)) {
            return Err(range_error(
                "scores",
                "ArgMax",
                "the difference of two scores",
                2.0 * score_bound,
                2f64.powi(62 - f),
                options,
            ));
        }
        Ok((
            Self {
                nodes,
                sizes,
                input: graph.input_id(),
                scores,
                labels,
                softmax,
                options: *options,
                score_bound,
                calibration: None,
            },
            ModelWeights { values: weights },
        ))
    }

    /// The options the plan was compiled with.
    pub fn options(&self) -> &MpcOptions {
        &self.options
    }

    /// Number of input elements per sample.
    pub fn input_len(&self) -> usize {
        self.sizes[self.input]
    }

    /// Number of scores per sample.
    pub fn score_len(&self) -> usize {
        self.sizes[self.scores]
    }

    /// Worst-case magnitude of the scores on inputs in the declared range (calibrated
    /// plans: the measured one times the margin).
    pub fn score_bound(&self) -> f64 {
        self.score_bound
    }

    /// The owner's check that `graph` is the model this plan was compiled from (same
    /// operators, shapes, options, and for a plan with proven bounds the same score bound),
    /// and its weights in the plan's order. What `veil ml party` runs before the owner
    /// connects.
    pub fn owner_weights(&self, graph: &Graph) -> Result<ModelWeights> {
        let (mine, weights) = match self.calibration {
            None => Self::compile(graph, &self.options)?,
            // The measured bounds are the plan's; only the structure is compared.
            Some(_) => {
                Self::compile_inner(graph, &self.options, Some(&vec![0.0; graph.values().len()]))?
            }
        };
        let same = mine.nodes == self.nodes
            && mine.sizes == self.sizes
            && mine.input == self.input
            && mine.scores == self.scores
            && mine.labels == self.labels
            && mine.softmax == self.softmax
            && (self.calibration.is_some() || mine.score_bound == self.score_bound);
        if !same {
            return Err(MlError::Input {
                reason: "the model does not compile to this plan (another model, or other \
                         options)"
                    .into(),
            });
        }
        Ok(weights)
    }

    /// `Some` when the bounds were measured on samples ([`MpcPlan::compile_calibrated`]):
    /// no worst-case guarantee against wrap-around.
    pub fn calibration(&self) -> Option<Calibration> {
        self.calibration
    }

    /// Number of secret parameters the owner shares.
    pub fn param_count(&self) -> usize {
        self.nodes.iter().map(|n| n.params).sum()
    }

    fn check_party<P: Engine>(&self, party: &P) -> Result<()> {
        let n = party.parties();
        let o = &self.options;
        if o.owner >= n || o.client >= n {
            return Err(MlError::Input {
                reason: format!(
                    "owner {} and client {} must be parties of the {n}",
                    o.owner, o.client
                ),
            });
        }
        if party.fixed() != o.fixed {
            return Err(MlError::Input {
                reason: format!(
                    "the party encodes with {} fractional bits, the plan with {}",
                    party.fixed().frac_bits(),
                    o.fixed.frac_bits()
                ),
            });
        }
        Ok(())
    }

    /// Secret-shares the model's parameters (one round): the owner passes its weights, the
    /// other parties `None`. Done once; the shares serve any number of [`MpcPlan::infer`].
    pub fn share_model<P: Engine>(
        &self,
        party: &mut P,
        weights: Option<&ModelWeights>,
    ) -> Result<SharedModel<P::Share>> {
        self.check_party(party)?;
        let owner = self.options.owner;
        let total = self.param_count();
        let values = if party.id() == owner {
            let w = weights.ok_or_else(|| MlError::Input {
                reason: "the model owner must give the weights".into(),
            })?;
            if w.len() != total {
                return Err(MlError::Input {
                    reason: format!("{} weights for a plan of {total}", w.len()),
                });
            }
            Some(w.values.as_slice())
        } else {
            None
        };
        // In pieces, so that no message exceeds a session's frame limit (64 MiB by default)
        // whatever the model's size.
        let mut pieces = Vec::new();
        for at in (0..total.max(1)).step_by(SHARE_PIECE) {
            let len = SHARE_PIECE.min(total - at);
            let mine = values.map(|v| &v[at..at + len]);
            pieces.push(party.input(owner, mine, len)?);
        }
        let all = P::concat(&pieces.iter().collect::<Vec<_>>());
        let mut blocks = Vec::with_capacity(self.nodes.len());
        let mut at = 0;
        for node in &self.nodes {
            blocks.push(slice::<P>(&all, at, node.params));
            at += node.params;
        }
        Ok(SharedModel { blocks })
    }

    /// Runs a batch of `batch` samples (public): the client passes them, the other parties
    /// `None`. The client gets `Some` predictions, in order; the others `None`.
    pub fn infer<P: Engine>(
        &self,
        party: &mut P,
        model: &SharedModel<P::Share>,
        inputs: Option<&[Vec<f64>]>,
        batch: usize,
    ) -> Result<Option<Vec<Prediction>>> {
        self.check_party(party)?;
        if model.blocks.len() != self.nodes.len() {
            return Err(MlError::Input {
                reason: "the shared model is not this plan's".into(),
            });
        }
        if batch == 0 {
            return Err(MlError::Input {
                reason: "a batch needs at least one sample".into(),
            });
        }
        let client = self.options.client;
        let n = self.input_len();
        let flat = if party.id() == client {
            let inputs = inputs.ok_or_else(|| MlError::Input {
                reason: "the client must give the inputs".into(),
            })?;
            Some(self.flatten_inputs(inputs, batch)?)
        } else {
            None
        };
        let x = party.input(client, flat.as_deref(), batch * n)?;
        let scores = self.evaluate(party, model, x, batch)?;
        let k = self.score_len();
        match self.options.reveal {
            Reveal::Label => {
                let (_, onehot) = party.max_argmax_groups(&scores, batch, k)?;
                // Position = Σ i · onehot_i (local).
                let positions: Vec<i64> = (0..batch).flat_map(|_| 0..k as i64).collect();
                let weighted = party.mul_public_int(&onehot, &positions)?;
                let groups: Vec<Vec<usize>> =
                    (0..batch).map(|b| (b * k..(b + 1) * k).collect()).collect();
                let index = P::sum_windows(&weighted, &groups);
                let Some(opened) = party.reveal_to_raw(&index, client)? else {
                    return Ok(None);
                };
                opened
                    .iter()
                    .map(|&i| {
                        let label = usize::try_from(i)
                            .ok()
                            .and_then(|i| self.labels.get(i))
                            .copied()
                            .ok_or_else(|| {
                                MlError::Mpc(MpcError::Malformed {
                                    party: client,
                                    phase: "argmax".into(),
                                    why: format!("position {i} of {k} scores"),
                                })
                            })?;
                        Ok(Prediction {
                            label,
                            scores: None,
                        })
                    })
                    .collect::<Result<Vec<_>>>()
                    .map(Some)
            }
            Reveal::Scores => {
                let Some(opened) = party.reveal_to(&scores, client)? else {
                    return Ok(None);
                };
                opened
                    .chunks(k.max(1))
                    .map(|s| {
                        let mut best = 0;
                        for (i, &v) in s.iter().enumerate() {
                            if v > s[best] {
                                best = i;
                            }
                        }
                        let label = self
                            .labels
                            .get(best)
                            .copied()
                            .ok_or(MlError::Internal("fewer labels than scores"))?;
                        let scores = if self.softmax {
                            eval(&Op::Softmax, &[k], &[s])?
                        } else {
                            s.to_vec()
                        };
                        Ok(Prediction {
                            label,
                            scores: Some(scores),
                        })
                    })
                    .collect::<Result<Vec<_>>>()
                    .map(Some)
            }
        }
    }

    /// The client's check of its inputs, flattened batch-major.
    fn flatten_inputs(&self, inputs: &[Vec<f64>], batch: usize) -> Result<Vec<f64>> {
        let n = self.input_len();
        if inputs.len() != batch {
            return Err(MlError::Input {
                reason: format!("{} samples for a batch of {batch}", inputs.len()),
            });
        }
        let bound = self.options.input_bound;
        let mut flat = Vec::with_capacity(batch * n);
        for (s, sample) in inputs.iter().enumerate() {
            if sample.len() != n {
                return Err(MlError::Input {
                    reason: format!(
                        "sample {s} has {} values, the model takes {n}",
                        sample.len()
                    ),
                });
            }
            if let Some(v) = sample.iter().find(|v| below(bound, v.abs()) || v.is_nan()) {
                return Err(MlError::Input {
                    reason: format!(
                        "sample {s} holds {v}, outside the declared input range \
                         [-{bound}, {bound}] the model was checked for"
                    ),
                });
            }
            flat.extend_from_slice(sample);
        }
        Ok(flat)
    }

    /// Runs the plan's nodes on the shared batch `x` (`batch × input_len`), returning the
    /// shared scores (`batch × score_len`).
    fn evaluate<P: Engine>(
        &self,
        party: &mut P,
        model: &SharedModel<P::Share>,
        x: P::Share,
        batch: usize,
    ) -> Result<P::Share> {
        let mut remaining = vec![0usize; self.sizes.len()];
        for node in &self.nodes {
            for &i in &node.inputs {
                remaining[i] += 1;
            }
        }
        remaining[self.scores] += 1;
        let mut slots: Vec<Option<P::Share>> = vec![None; self.sizes.len()];
        slots[self.input] = Some(x);
        for (node, params) in self.nodes.iter().zip(&model.blocks) {
            let out = {
                let mut args = Vec::with_capacity(node.inputs.len());
                for &i in &node.inputs {
                    args.push(
                        slots
                            .get(i)
                            .and_then(Option::as_ref)
                            .ok_or(MlError::Internal("value read before it is computed"))?,
                    );
                }
                let in_len = self.sizes[node.inputs[0]];
                let out_len = self.sizes[node.output];
                run_step(party, &node.step, &args, params, batch, in_len, out_len)?
            };
            for &i in &node.inputs {
                remaining[i] = remaining[i].saturating_sub(1);
                if remaining[i] == 0 {
                    slots[i] = None;
                }
            }
            slots[node.output] = Some(out);
        }
        slots[self.scores]
            .take()
            .ok_or(MlError::Internal("the scores are not computed"))
    }
}

/// The on-disk form of an [`MpcPlan`] (JSON): the architecture only, no weight.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct MpcPlanFile {
    format: String,
    version: u32,
    owner: usize,
    client: usize,
    reveal: Reveal,
    input_bound: f64,
    frac_bits: u32,
    sizes: Vec<usize>,
    input: ValueId,
    scores: ValueId,
    labels: Vec<i64>,
    softmax: bool,
    score_bound: f64,
    /// Absent in plans with proven (worst-case) bounds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    calibration: Option<Calibration>,
    nodes: Vec<PlanNode>,
}

/// `format` of a saved MPC plan.
const MPC_PLAN_FORMAT: &str = "veil-ml-mpc-plan";
/// Current version of the saved MPC plan format.
const MPC_PLAN_VERSION: u32 = 1;
/// Largest element count of one value, and of all pooling windows and maps together, that a
/// loaded plan may declare (bounds the memory a forged plan can make a party allocate).
const MPC_PLAN_MAX_ELEMENTS: usize = 1 << 26;

impl MpcPlan {
    /// A versioned encoding of the plan (JSON): what the model owner publishes to the other
    /// parties and the dealer. It holds the architecture, the options and the score bound —
    /// no weight.
    pub fn to_bytes(&self) -> Vec<u8> {
        let o = &self.options;
        let file = MpcPlanFile {
            format: MPC_PLAN_FORMAT.into(),
            version: MPC_PLAN_VERSION,
            owner: o.owner,
            client: o.client,
            reveal: o.reveal,
            input_bound: o.input_bound,
            frac_bits: o.fixed.frac_bits(),
            sizes: self.sizes.clone(),
            input: self.input,
            scores: self.scores,
            labels: self.labels.clone(),
            softmax: self.softmax,
            score_bound: self.score_bound,
            calibration: self.calibration,
            nodes: self.nodes.clone(),
        };
        // Plain data with finite floats: serializing cannot fail; an empty vector would be
        // refused by `from_bytes`.
        serde_json::to_vec_pretty(&file).unwrap_or_default()
    }

    /// Reads a published plan and validates it as untrusted input (a party runs what the
    /// owner published): format and version, every index in range, every node's sizes
    /// consistent with its operator, nodes in evaluation order, bounded sizes. A plan that
    /// passes cannot make a party panic or allocate without bound; it can still describe a
    /// different model than the one the owner claims — the parties see its architecture.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let bad = |reason: String| MlError::Format {
            what: "MPC plan",
            reason,
        };
        let file: MpcPlanFile = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        if file.format != MPC_PLAN_FORMAT {
            return Err(bad(format!(
                "format `{}`, not `{MPC_PLAN_FORMAT}`",
                file.format
            )));
        }
        if file.version != MPC_PLAN_VERSION {
            return Err(bad(format!(
                "version {} (this build reads version {MPC_PLAN_VERSION})",
                file.version
            )));
        }
        let fixed = FixedPoint::new(file.frac_bits).map_err(|e| bad(e.to_string()))?;
        let encode_limit = 2f64.powi(46 - file.frac_bits as i32);
        if !below(0.0, file.input_bound) || !below(file.input_bound, encode_limit) {
            return Err(bad(format!("input bound {}", file.input_bound)));
        }
        if !file.score_bound.is_finite() || file.score_bound < 0.0 {
            return Err(bad(format!("score bound {}", file.score_bound)));
        }
        if let Some(c) = file.calibration {
            if c.samples == 0 || !(c.margin.is_finite() && c.margin >= 1.0) {
                return Err(bad(format!("calibration {c:?}")));
            }
        }
        let plan = Self {
            nodes: file.nodes,
            sizes: file.sizes,
            input: file.input,
            scores: file.scores,
            labels: file.labels,
            softmax: file.softmax,
            options: MpcOptions {
                owner: file.owner,
                client: file.client,
                reveal: file.reveal,
                input_bound: file.input_bound,
                fixed,
            },
            score_bound: file.score_bound,
            calibration: file.calibration,
        };
        plan.validate().map_err(bad)?;
        Ok(plan)
    }

    /// The structural checks of [`MpcPlan::from_bytes`].
    fn validate(&self) -> std::result::Result<(), String> {
        let sizes = &self.sizes;
        let nv = sizes.len();
        if self.input >= nv || self.scores >= nv {
            return Err("the input or the scores are not values of the plan".into());
        }
        if let Some(&s) = sizes.iter().find(|&&s| s > MPC_PLAN_MAX_ELEMENTS) {
            return Err(format!("a value of {s} elements"));
        }
        if sizes[self.input] == 0 || sizes[self.scores] == 0 {
            return Err("an empty input or empty scores".into());
        }
        if self.labels.len() != sizes[self.scores] {
            return Err(format!(
                "{} labels for {} scores",
                self.labels.len(),
                sizes[self.scores]
            ));
        }
        if self.options.owner > 1 << 16 || self.options.client > 1 << 16 {
            return Err("owner or client index out of range".into());
        }
        let mut computed = vec![false; nv];
        computed[self.input] = true;
        let (mut listed, mut total) = (0usize, 0usize);
        for (i, node) in self.nodes.iter().enumerate() {
            let at = |why: String| format!("node {i} (`{}`): {why}", node.name);
            if node.output >= nv || computed[node.output] {
                return Err(at("its output is not a new value of the plan".into()));
            }
            if node.inputs.iter().any(|&v| v >= nv || !computed[v]) {
                return Err(at("reads a value not computed before it".into()));
            }
            let arity = match node.step {
                Step::Add | Step::Sub | Step::Mul => 2,
                _ => 1,
            };
            if node.inputs.len() != arity {
                return Err(at(format!(
                    "{} inputs where its operator takes {arity}",
                    node.inputs.len()
                )));
            }
            let in_len = sizes[node.inputs[0]];
            let out_len = sizes[node.output];
            let same = || -> std::result::Result<(), String> {
                if node.inputs.iter().any(|&v| sizes[v] != out_len) {
                    return Err(at("its input and output sizes differ".into()));
                }
                Ok(())
            };
            let params = match &node.step {
                Step::Linear { inn, out } => {
                    if *inn != in_len || *out != out_len {
                        return Err(at(format!(
                            "a {inn} × {out} product on {in_len} values giving {out_len}"
                        )));
                    }
                    inn.checked_mul(*out).and_then(|p| p.checked_add(*out))
                }
                Step::Conv(c) => {
                    let [ci, h, w] = c.in_shape;
                    let [co, oh, ow] = c.out_shape;
                    let shape_ok = c.groups > 0
                        && ci % c.groups == 0
                        && co % c.groups == 0
                        && ci.checked_mul(h).and_then(|v| v.checked_mul(w)) == Some(in_len)
                        && co.checked_mul(oh).and_then(|v| v.checked_mul(ow)) == Some(out_len)
                        && c.kernel.iter().all(|&k| (1..=1024).contains(&k))
                        && c.stride.iter().all(|&s| (1..=1024).contains(&s))
                        && c.dilation.iter().all(|&d| (1..=1024).contains(&d))
                        && c.pads.iter().all(|&p| p <= 1024)
                        && [h, w, oh, ow].iter().all(|&d| d <= 1 << 16);
                    if !shape_ok {
                        return Err(at("a malformed convolution shape".into()));
                    }
                    let cols = oh * ow * c.patch();
                    if cols > MPC_PLAN_MAX_ELEMENTS {
                        return Err(at("a convolution too large to load".into()));
                    }
                    c.patch().checked_mul(co).and_then(|p| p.checked_add(co))
                }
                Step::Affine { has_mul, has_add } => {
                    same()?;
                    Some(in_len * (usize::from(*has_mul) + usize::from(*has_add)))
                }
                Step::Add
                | Step::Sub
                | Step::Mul
                | Step::Square
                | Step::Relu
                | Step::Sigmoid
                | Step::Tanh
                | Step::Permute { map: None } => {
                    same()?;
                    Some(0)
                }
                Step::MaxPool { windows } => {
                    if windows.len() != out_len {
                        return Err(at("as many windows as outputs needed".into()));
                    }
                    if windows.iter().any(Vec::is_empty) {
                        return Err(at("an empty window".into()));
                    }
                    let width = windows.iter().map(Vec::len).max().unwrap_or(0);
                    listed = listed.saturating_add(width.saturating_mul(out_len));
                    if windows.iter().flatten().any(|&k| k >= in_len) {
                        return Err(at("a window reads past its input".into()));
                    }
                    Some(0)
                }
                Step::Pool { windows, scale } => {
                    if windows.len() != out_len || scale.len() != out_len {
                        return Err(at("as many windows and divisors as outputs needed".into()));
                    }
                    listed = listed.saturating_add(windows.iter().map(Vec::len).sum());
                    if windows.iter().flatten().any(|&k| k >= in_len) {
                        return Err(at("a window reads past its input".into()));
                    }
                    if scale.iter().any(|s| !s.is_finite() || s.abs() > 1.0) {
                        return Err(at("a divisor out of range".into()));
                    }
                    Some(0)
                }
                Step::Permute { map: Some(map) } => {
                    if map.len() != out_len || map.iter().any(|&k| k >= in_len) {
                        return Err(at("a permutation reading past its input".into()));
                    }
                    listed = listed.saturating_add(map.len());
                    Some(0)
                }
            };
            if params != Some(node.params) {
                let want = params.map_or_else(|| "more than fit".into(), |p| p.to_string());
                return Err(at(format!(
                    "{} secret parameters where its shape takes {want}",
                    node.params
                )));
            }
            if listed > MPC_PLAN_MAX_ELEMENTS {
                return Err("too many pooling or permutation entries".into());
            }
            total = total.saturating_add(node.params);
            if total > MPC_PLAN_MAX_ELEMENTS {
                return Err("too many secret parameters".into());
            }
            computed[node.output] = true;
        }
        if !computed[self.scores] {
            return Err("the scores are never computed".into());
        }
        Ok(())
    }
}

/// The public shape and the owner's parameters (`W_gᵀ` per group, then the bias) of a
/// convolution.
fn conv_step(c: &Conv2d, in_shape: &[usize], out_shape: &[usize]) -> Result<(Step, Vec<f64>)> {
    let (&[ci, h, w], &[co, oh, ow], &[_, cig, kh, kw]) = (in_shape, out_shape, c.weight.shape())
    else {
        return Err(MlError::Internal("convolution shapes are not 2-D"));
    };
    let shape = ConvShape {
        in_shape: [ci, h, w],
        out_shape: [co, oh, ow],
        kernel: [kh, kw],
        stride: c.stride,
        pads: c.pads,
        dilation: c.dilation,
        groups: c.groups,
    };
    let cog = shape.cog();
    let patch = cig * kh * kw;
    let mut params = Vec::with_capacity(c.weight.len() + co);
    for g in 0..c.groups {
        for col in 0..patch {
            for o in 0..cog {
                params.push(c.weight.data()[(g * cog + o) * patch + col]);
            }
        }
    }
    params.extend_from_slice(&c.bias);
    Ok((Step::Conv(shape), params))
}

/// The windows, divisors and window-sum bounds of an average pooling.
fn pool_step(
    p: &Pool2d,
    in_shape: &[usize],
    out_shape: &[usize],
    bound: &[f64],
) -> Result<(Step, Vec<f64>)> {
    if in_shape.len() != 3 || out_shape.len() != 3 {
        return Err(MlError::Internal("pooling shapes are not [C, H, W]"));
    }
    let windows = crate::exec::pool_windows(p, in_shape);
    let full = p.kernel[0] * p.kernel[1];
    let scale = windows
        .iter()
        .map(|win| {
            let div = if p.count_include_pad { full } else { win.len() };
            if div == 0 {
                0.0
            } else {
                1.0 / div as f64
            }
        })
        .collect();
    let sums = windows
        .iter()
        .map(|win| win.iter().map(|&k| bound[k]).sum())
        .collect();
    Ok((Step::Pool { windows, scale }, sums))
}

/// Whether a pooling's divisors are all one value, which [`run_step`] then multiplies with
/// about 20 significant bits (`Party::mul_public_scalar`), else with `f` fractional bits
/// (`Party::mul_public`).
fn uniform_scale(scale: &[f64]) -> Option<f64> {
    let c = *scale.first()?;
    scale.iter().all(|&s| s == c).then_some(c)
}

/// The products a pooling's division truncates, in the real units of the product limit
/// `2^(61 − 2f)`: a window sum `s` (ring `s·2^f`) times the encoded divisor — `c·2^t` with
/// `t = ⌈20 − log2 c⌉` clamped to `[f, 60]` for a uniform divisor (veil-mpc's
/// `mul_public_scalar`), `c·2^f` rounded otherwise.
fn division_products(sums: &[f64], scale: &[f64], frac_bits: u32) -> Vec<f64> {
    let f = f64::from(frac_bits);
    match uniform_scale(scale) {
        Some(c) if c != 0.0 => {
            let t = (20.0 - c.abs().log2()).ceil().clamp(f, 60.0);
            let factor = c.abs() * 2f64.powf(t - f);
            sums.iter().map(|s| s * factor).collect()
        }
        _ => sums
            .iter()
            .zip(scale)
            .map(|(s, c)| s * (c.abs() + 2f64.powf(-f)))
            .collect(),
    }
}

/// Elements `at..at + len` of a sharing (local).
fn slice<P: Engine>(x: &P::Share, at: usize, len: usize) -> P::Share {
    let idx: Vec<Option<usize>> = (at..at + len).map(Some).collect();
    P::gather(x, &idx)
}

/// Elements `at..at + len` of a sharing, repeated `batch` times (local).
fn broadcast<P: Engine>(x: &P::Share, at: usize, len: usize, batch: usize) -> P::Share {
    let idx: Vec<Option<usize>> = (0..batch).flat_map(|_| (at..at + len).map(Some)).collect();
    P::gather(x, &idx)
}

/// One step on a batch: `args` are `batch × in_len` sharings (batch-major).
fn run_step<P: Engine>(
    party: &mut P,
    step: &Step,
    args: &[&P::Share],
    params: &P::Share,
    batch: usize,
    in_len: usize,
    out_len: usize,
) -> Result<P::Share> {
    let x = args[0];
    Ok(match step {
        Step::Linear { inn, out } => {
            let wt = slice::<P>(params, 0, inn * out);
            let y = party.matmul(x, &wt, batch, *inn, *out)?;
            party.add(&y, &broadcast::<P>(params, inn * out, *out, batch))?
        }
        Step::Conv(c) => conv(party, c, x, params, batch)?,
        Step::Affine { has_mul, has_add } => {
            let mut y = x.clone();
            let mut at = 0;
            if *has_mul {
                let m = broadcast::<P>(params, 0, in_len, batch);
                y = party.mul(&y, &m)?;
                at = in_len;
            }
            if *has_add {
                y = party.add(&y, &broadcast::<P>(params, at, in_len, batch))?;
            }
            y
        }
        Step::Add => party.add(x, args[1])?,
        Step::Sub => party.sub(x, args[1])?,
        Step::Mul => party.mul(x, args[1])?,
        Step::Square => party.square(x)?,
        Step::Relu => party.relu(x)?,
        Step::Sigmoid => party.sigmoid(x)?,
        Step::Tanh => {
            let n = P::len(x);
            let twice = party.mul_public_int(x, &vec![2; n])?;
            let s = party.sigmoid(&twice)?;
            let s2 = party.mul_public_int(&s, &vec![2; n])?;
            party.add_public(&s2, &vec![-1.0; n])?
        }
        Step::Pool { windows, scale } => {
            let all: Vec<Vec<usize>> = (0..batch)
                .flat_map(|b| {
                    windows
                        .iter()
                        .map(move |w| w.iter().map(|&k| b * in_len + k).collect())
                })
                .collect();
            let sums = P::sum_windows(x, &all);
            match uniform_scale(scale) {
                // One divisor everywhere: keep about 20 significant bits of it.
                Some(c) => party.mul_public_scalar(&sums, c)?,
                _ => {
                    let all: Vec<f64> = (0..batch).flat_map(|_| scale.iter().copied()).collect();
                    party.mul_public(&sums, &all)?
                }
            }
        }
        Step::MaxPool { windows } => {
            // Every window padded to the widest by repeating its first position (the
            // maximum is unchanged), then one tournament for the whole batch.
            let width = windows.iter().map(Vec::len).max().unwrap_or(1);
            let mut idx = Vec::with_capacity(batch * out_len * width);
            for b in 0..batch {
                for win in windows {
                    idx.extend(win.iter().map(|&k| Some(b * in_len + k)));
                    idx.extend(std::iter::repeat_n(
                        Some(b * in_len + win[0]),
                        width - win.len(),
                    ));
                }
            }
            party.max_groups(&P::gather(x, &idx), batch * out_len, width)?
        }
        Step::Permute { map: None } => x.clone(),
        Step::Permute { map: Some(map) } => {
            let idx: Vec<Option<usize>> = (0..batch)
                .flat_map(|b| map.iter().map(move |&k| Some(b * in_len + k)))
                .collect();
            P::gather(x, &idx)
        }
    })
}

/// A convolution on a batch: im2col of the shares (local), one matrix product per group,
/// the shared bias per output channel.
fn conv<P: Engine>(
    party: &mut P,
    c: &ConvShape,
    x: &P::Share,
    params: &P::Share,
    batch: usize,
) -> Result<P::Share> {
    let [ci, h, w] = c.in_shape;
    let [co, oh, ow] = c.out_shape;
    let (in_len, plane) = (ci * h * w, oh * ow);
    let (patch, cog) = (c.patch(), c.cog());
    let rows = batch * plane;
    let mut groups = Vec::with_capacity(c.groups);
    for g in 0..c.groups {
        // Patches: rows (b, oy, ox), columns (k, ky, kx); padding is a public zero.
        let mut cols = Vec::with_capacity(rows * patch);
        for b in 0..batch {
            for oy in 0..oh {
                for ox in 0..ow {
                    for col in 0..patch {
                        cols.push(c.source(g, oy, ox, col).map(|k| b * in_len + k));
                    }
                }
            }
        }
        let wt = slice::<P>(params, g * patch * cog, patch * cog);
        groups.push(party.matmul(&P::gather(x, &cols), &wt, rows, patch, cog)?);
    }
    // Group g's (b, pos) × o  →  [b, g·cog + o, pos].
    let all = P::concat(&groups.iter().collect::<Vec<_>>());
    let mut idx = vec![None; batch * co * plane];
    for g in 0..c.groups {
        for r in 0..rows {
            let (b, pos) = (r / plane, r % plane);
            for o in 0..cog {
                idx[(b * co + g * cog + o) * plane + pos] = Some(g * rows * cog + r * cog + o);
            }
        }
    }
    let out = P::gather(&all, &idx);
    let bias_at = c.groups * patch * cog;
    let bias_idx: Vec<Option<usize>> = (0..batch * co * plane)
        .map(|k| Some(bias_at + (k / plane) % co))
        .collect();
    Ok(party.add(&out, &P::gather(params, &bias_idx))?)
}

/// What a local run ([`run_local`]) measured.
#[derive(Clone, Debug, PartialEq)]
pub struct LocalRun {
    /// The client's predictions, one per input, in order.
    pub predictions: Vec<Prediction>,
    /// Seconds to share the model (once).
    pub share_seconds: f64,
    /// Seconds of inference, all batches together (the client's clock, from its inputs to
    /// its predictions).
    pub infer_seconds: f64,
    /// Bytes each party sent to the other parties during inference.
    pub bytes_sent: Vec<u64>,
    /// Bytes of dealer corrections (received by the last party) during inference.
    pub dealer_bytes: u64,
    /// Communication rounds of inference (each party takes part in every round).
    pub rounds: u64,
}

/// One party's part of a local run: share the model, run the batches, measure.
fn local_party<P: Engine>(
    party: &mut P,
    stats: impl Fn(&P) -> OpStats,
    plan: &MpcPlan,
    weights: &ModelWeights,
    inputs: &[Vec<f64>],
    batch_size: usize,
) -> Result<PartyOut> {
    let (owner, client) = (plan.options.owner, plan.options.client);
    let me = party.id();
    let start = Instant::now();
    let model = plan.share_model(party, (me == owner).then_some(weights))?;
    let share_seconds = start.elapsed().as_secs_f64();
    let before = stats(party);
    let start = Instant::now();
    let mut all = Vec::with_capacity(inputs.len());
    for chunk in inputs.chunks(batch_size) {
        let mine = (me == client).then_some(chunk);
        if let Some(p) = plan.infer(party, &model, mine, chunk.len())? {
            all.extend(p);
        }
    }
    let infer_seconds = start.elapsed().as_secs_f64();
    let after = stats(party);
    let delta = OpStats {
        calls: after.calls - before.calls,
        rounds: after.rounds - before.rounds,
        bytes_sent: after.bytes_sent - before.bytes_sent,
        dealer_bytes: after.dealer_bytes - before.dealer_bytes,
    };
    Ok((
        (me == client).then_some(all),
        share_seconds,
        infer_seconds,
        delta,
    ))
}

/// What the threads of a local run share, once the batch size is checked.
type LocalSetup = (Arc<MpcPlan>, Arc<ModelWeights>, Arc<Vec<Vec<f64>>>);

fn local_setup(
    plan: &MpcPlan,
    weights: &ModelWeights,
    inputs: &[Vec<f64>],
    batch_size: usize,
) -> Result<LocalSetup> {
    if batch_size == 0 {
        return Err(MlError::Input {
            reason: "the batch size must be positive".into(),
        });
    }
    Ok((
        Arc::new(plan.clone()),
        Arc::new(weights.clone()),
        Arc::new(inputs.to_vec()),
    ))
}

/// What each party of a local run returns.
type PartyOut = (Option<Vec<Prediction>>, f64, f64, OpStats);

/// The client's predictions and the totals, or the root cause of a failure (rather than the
/// parties that saw another one stop).
fn collect(results: Vec<Result<PartyOut>>, client: usize) -> Result<LocalRun> {
    let mut outs = Vec::with_capacity(results.len());
    let mut first_err = None;
    for r in results {
        match r {
            Ok(v) => outs.push(v),
            Err(e) => {
                let gone = matches!(e, MlError::Mpc(MpcError::PartyGone { .. }));
                if first_err.is_none() || (!gone && matches!(first_err, Some((true, _)))) {
                    first_err = Some((gone, e));
                }
            }
        }
    }
    if let Some((_, e)) = first_err {
        return Err(e);
    }
    let mut run = LocalRun {
        predictions: Vec::new(),
        share_seconds: 0.0,
        infer_seconds: 0.0,
        bytes_sent: Vec::with_capacity(outs.len()),
        dealer_bytes: 0,
        rounds: 0,
    };
    for (id, (preds, share_s, infer_s, stats)) in outs.into_iter().enumerate() {
        run.bytes_sent.push(stats.bytes_sent);
        run.dealer_bytes += stats.dealer_bytes;
        run.rounds = run.rounds.max(stats.rounds);
        if id == client {
            run.predictions = preds.ok_or(MlError::Internal("the client got no prediction"))?;
            run.share_seconds = share_s;
            run.infer_seconds = infer_s;
        }
    }
    Ok(run)
}

/// Runs the plan with `parties` parties as threads of this process and the dealer in
/// another (veil-mpc's in-memory exchange): the owner shares `weights` once, then the
/// client's `inputs` run in batches of `batch_size`. For tests, benchmarks and single-machine
/// use; every party and the dealer run on this machine, so this protects nothing by itself.
pub fn run_local(
    plan: &MpcPlan,
    weights: &ModelWeights,
    parties: usize,
    inputs: &[Vec<f64>],
    batch_size: usize,
) -> Result<LocalRun> {
    let client = plan.options.client;
    let (plan, weights, inputs) = local_setup(plan, weights, inputs, batch_size)?;
    let results = veil_mpc::memory::run(parties, plan.options.fixed, move |party| {
        Ok(local_party(
            party,
            |p| p.stats().total(),
            &plan,
            &weights,
            &inputs,
            batch_size,
        ))
    })?;
    collect(results, client)
}

/// [`run_local`] with veil-mpc's **dealer-free** three-party protocol
/// ([`veil_mpc::rss`]: replicated shares, honest majority): three parties as threads of this
/// process, no dealer. The plan's owner and client must be among parties 0, 1 and 2.
pub fn run_local_replicated(
    plan: &MpcPlan,
    weights: &ModelWeights,
    inputs: &[Vec<f64>],
    batch_size: usize,
) -> Result<LocalRun> {
    let client = plan.options.client;
    let (plan, weights, inputs) = local_setup(plan, weights, inputs, batch_size)?;
    let results = veil_mpc::rss::run_local(plan.options.fixed, move |party| {
        Ok(local_party(
            party,
            |p| p.stats(),
            &plan,
            &weights,
            &inputs,
            batch_size,
        ))
    })?;
    collect(results, client)
}
