//! The model IR: a typed graph of tensor operations on **one sample**.
//!
//! ONNX graphs carry a batch axis first; the IR strips it (a value of ONNX shape `[N, C, H, W]`
//! has IR shape `[C, H, W]`), because every supported operator acts on samples independently
//! and the encrypted backends choose their own batching (one sample per ciphertext, or one
//! sample per slot). Values are row-major `f64` tensors. Constants (weights, biases, affine
//! factors) live inside the operators that use them, already in the form the executor and the
//! compiler want: a [`Op::Linear`] always holds its `[out, in]` matrix whatever ONNX operator
//! (Gemm with or without `transB`, MatMul) it came from, and an [`Op::Affine`] holds factors
//! expanded to the full sample shape.
//!
//! A [`Graph`] is built node by node through [`GraphBuilder`], which infers and checks every
//! output shape, so a built graph is always shape-consistent and topologically ordered.

use crate::error::{MlError, Result};

/// Index of a value (an edge) in a [`Graph`].
pub type ValueId = usize;

/// A constant tensor: a shape and its row-major values.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    shape: Vec<usize>,
    data: Vec<f64>,
}

impl Tensor {
    /// A tensor of `shape` holding `data` (row-major); the lengths must agree.
    pub fn new(shape: Vec<usize>, data: Vec<f64>) -> Result<Self> {
        let n = element_count(&shape)?;
        if n != data.len() {
            return Err(MlError::invalid(format!(
                "tensor of shape {shape:?} needs {n} values, has {}",
                data.len()
            )));
        }
        Ok(Self { shape, data })
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The values, row-major.
    pub fn data(&self) -> &[f64] {
        &self.data
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether the tensor has no element.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The values, consuming the tensor.
    pub fn into_data(self) -> Vec<f64> {
        self.data
    }
}

/// Product of the dimensions, refusing overflow.
pub(crate) fn element_count(shape: &[usize]) -> Result<usize> {
    shape.iter().try_fold(1usize, |acc, &d| {
        acc.checked_mul(d)
            .ok_or_else(|| MlError::invalid(format!("shape {shape:?} overflows")))
    })
}

/// Element-wise activation functions. The encrypted backends evaluate them as polynomial
/// approximations over a declared input range; the plaintext executor exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Activation {
    /// `max(x, 0)`.
    Relu,
    /// `1 / (1 + e^-x)`.
    Sigmoid,
    /// `tanh(x)`.
    Tanh,
    /// `ln(1 + e^x)`.
    Softplus,
}

impl Activation {
    /// The function's value at `x`.
    pub fn apply(self, x: f64) -> f64 {
        match self {
            Self::Relu => x.max(0.0),
            Self::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            Self::Tanh => x.tanh(),
            // ln(1 + e^x) without overflow for large x.
            Self::Softplus => x.max(0.0) + (-x.abs()).exp().ln_1p(),
        }
    }

    /// The ONNX operator name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Relu => "Relu",
            Self::Sigmoid => "Sigmoid",
            Self::Tanh => "Tanh",
            Self::Softplus => "Softplus",
        }
    }
}

/// A 2-D convolution over a `[C, H, W]` sample.
#[derive(Clone, Debug, PartialEq)]
pub struct Conv2d {
    /// Weights `[out_channels, in_channels / groups, kh, kw]`.
    pub weight: Tensor,
    /// One bias per output channel.
    pub bias: Vec<f64>,
    /// Vertical and horizontal stride.
    pub stride: [usize; 2],
    /// Zero padding: top, left, bottom, right (ONNX `pads` order).
    pub pads: [usize; 4],
    /// Vertical and horizontal dilation.
    pub dilation: [usize; 2],
    /// Channel groups.
    pub groups: usize,
}

/// A 2-D average pooling window over a `[C, H, W]` sample.
#[derive(Clone, Debug, PartialEq)]
pub struct Pool2d {
    /// Window height and width.
    pub kernel: [usize; 2],
    /// Vertical and horizontal stride.
    pub stride: [usize; 2],
    /// Zero padding: top, left, bottom, right.
    pub pads: [usize; 4],
    /// Whether padded positions count in the average's divisor.
    pub count_include_pad: bool,
}

/// How a tree branch compares a feature with its threshold; the branch goes to the "true"
/// child when the comparison holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BranchMode {
    /// `x ≤ t`.
    Leq,
    /// `x < t`.
    Lt,
    /// `x ≥ t`.
    Geq,
    /// `x > t`.
    Gt,
    /// `x = t`.
    Eq,
    /// `x ≠ t`.
    Neq,
}

impl BranchMode {
    /// Whether `x` goes to the true child.
    pub fn holds(self, x: f64, t: f64) -> bool {
        match self {
            Self::Leq => x <= t,
            Self::Lt => x < t,
            Self::Geq => x >= t,
            Self::Gt => x > t,
            Self::Eq => x == t,
            Self::Neq => x != t,
        }
    }
}

/// A node of a decision tree.
#[derive(Clone, Debug, PartialEq)]
pub enum TreeNode {
    /// An inner node.
    Branch {
        /// Input feature index.
        feature: usize,
        /// Threshold.
        threshold: f64,
        /// Comparison.
        mode: BranchMode,
        /// Child index (in the tree's node list) when the comparison holds.
        true_child: usize,
        /// Child index when it does not.
        false_child: usize,
        /// Where a missing (NaN) feature goes: the true child if set.
        missing_goes_true: bool,
    },
    /// A leaf: contributions `(target, weight)` to the ensemble's scores.
    Leaf {
        /// Added to the scores when a sample reaches this leaf.
        weights: Vec<(usize, f64)>,
    },
}

/// One decision tree; node 0 is the root. Children always have larger indices than their
/// parent, so every walk terminates.
#[derive(Clone, Debug, PartialEq)]
pub struct Tree {
    /// The nodes, root first.
    pub nodes: Vec<TreeNode>,
}

/// What is applied to the summed tree scores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PostTransform {
    /// Scores as summed.
    None,
    /// Softmax over the targets.
    Softmax,
    /// Logistic function on each score.
    Logistic,
    /// Softmax where zero scores stay zero.
    SoftmaxZero,
}

/// How tree outputs are combined (regressors; classifiers always sum).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Aggregate {
    /// Sum over trees.
    Sum,
    /// Mean over trees.
    Average,
}

/// An ensemble of decision trees (ONNX-ML `TreeEnsembleClassifier`/`TreeEnsembleRegressor`),
/// producing one score per target.
#[derive(Clone, Debug, PartialEq)]
pub struct TreeEnsemble {
    /// Number of input features the trees read.
    pub n_features: usize,
    /// Number of scores (classes, or regression targets).
    pub n_targets: usize,
    /// The trees.
    pub trees: Vec<Tree>,
    /// Added to the scores before the post-transform (empty: zeros).
    pub base_values: Vec<f64>,
    /// Combination over trees.
    pub aggregate: Aggregate,
    /// Applied to the combined scores.
    pub post_transform: PostTransform,
}

impl TreeEnsemble {
    /// Checks the invariants the evaluators rely on: features below `n_features`, children
    /// after their parent and inside the tree, leaf targets below `n_targets`.
    pub fn check(&self) -> std::result::Result<(), String> {
        if !self.base_values.is_empty() && self.base_values.len() != self.n_targets {
            return Err(format!(
                "{} base values for {} targets",
                self.base_values.len(),
                self.n_targets
            ));
        }
        for (ti, tree) in self.trees.iter().enumerate() {
            if tree.nodes.is_empty() {
                return Err(format!("tree {ti} has no node"));
            }
            for (i, node) in tree.nodes.iter().enumerate() {
                match node {
                    TreeNode::Branch {
                        feature,
                        threshold,
                        true_child,
                        false_child,
                        ..
                    } => {
                        if *feature >= self.n_features {
                            return Err(format!(
                                "tree {ti} node {i} reads feature {feature} of {}",
                                self.n_features
                            ));
                        }
                        if threshold.is_nan() {
                            return Err(format!("tree {ti} node {i} has a NaN threshold"));
                        }
                        for &c in [true_child, false_child] {
                            if c <= i || c >= tree.nodes.len() {
                                return Err(format!(
                                    "tree {ti} node {i} has child {c} (not after it, or \
                                     outside the tree's {} nodes)",
                                    tree.nodes.len()
                                ));
                            }
                        }
                    }
                    TreeNode::Leaf { weights } => {
                        if let Some((k, _)) = weights.iter().find(|(k, _)| *k >= self.n_targets) {
                            return Err(format!(
                                "tree {ti} leaf {i} adds to target {k} of {}",
                                self.n_targets
                            ));
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// An operator of the IR. Shapes below are per sample.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// `y = W·x + b` with `W` of shape `[out, in]`, on an input of `in` elements (any shape);
    /// output `[out]`. Gemm and MatMul with constant weights.
    Linear {
        /// `[out, in]`.
        weight: Tensor,
        /// `out` values.
        bias: Vec<f64>,
    },
    /// 2-D convolution `[C, H, W] → [C', H', W']`.
    Conv2d(Conv2d),
    /// Element-wise `y = x·mul + add`, both expanded to the input's shape (empty: 1 and 0).
    /// Mul/Add/Sub/Div by constants and BatchNormalization import to this, and it is folded
    /// into a preceding [`Op::Linear`] or [`Op::Conv2d`] whenever possible.
    Affine {
        /// Factors (empty: all ones).
        mul: Vec<f64>,
        /// Offsets (empty: all zeros).
        add: Vec<f64>,
    },
    /// Element-wise sum of two values of the same shape.
    Add,
    /// Element-wise difference of two values of the same shape.
    Sub,
    /// Element-wise product of two distinct values of the same shape.
    Mul,
    /// `x·x` (`Mul(x, x)`, `Pow(x, 2)`).
    Square,
    /// Average pooling `[C, H, W] → [C, H', W']`.
    AveragePool(Pool2d),
    /// Max pooling `[C, H, W] → [C, H', W']`; padded positions take no part (ONNX's
    /// `-inf` padding). Every window holds at least one input position.
    MaxPool(Pool2d),
    /// Mean over each channel `[C, H, W] → [C, 1, 1]`.
    GlobalAveragePool,
    /// Same values, another shape (Flatten, Reshape).
    Reshape {
        /// The new shape.
        shape: Vec<usize>,
    },
    /// Permutation of the axes (ONNX Transpose that keeps the batch axis first).
    Transpose {
        /// Output axis `i` is input axis `perm[i]`.
        perm: Vec<usize>,
    },
    /// An element-wise activation.
    Activation(Activation),
    /// A tree ensemble: `[n_features…] → [n_targets]` scores.
    TreeEnsemble(TreeEnsemble),
    /// Softmax over a `[k]` vector of scores. Always evaluated by the client after
    /// decryption (it does not change the argmax).
    Softmax,
    /// Index of the largest score mapped through `labels` (`[k] → [1]`). Always evaluated by
    /// the client after decryption.
    ArgMax {
        /// Label of each position (`0..k` when the model has none).
        labels: Vec<i64>,
    },
}

impl Op {
    /// A short name for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Linear { .. } => "Linear",
            Self::Conv2d(_) => "Conv2d",
            Self::Affine { .. } => "Affine",
            Self::Add => "Add",
            Self::Sub => "Sub",
            Self::Mul => "Mul",
            Self::Square => "Square",
            Self::AveragePool(_) => "AveragePool",
            Self::MaxPool(_) => "MaxPool",
            Self::GlobalAveragePool => "GlobalAveragePool",
            Self::Reshape { .. } => "Reshape",
            Self::Transpose { .. } => "Transpose",
            Self::Activation(a) => a.name(),
            Self::TreeEnsemble(_) => "TreeEnsemble",
            Self::Softmax => "Softmax",
            Self::ArgMax { .. } => "ArgMax",
        }
    }

    /// Number of graph values the operator reads.
    pub fn arity(&self) -> usize {
        match self {
            Self::Add | Self::Sub | Self::Mul => 2,
            _ => 1,
        }
    }

    /// Infers the output shape from the input shapes, checking the operator's constants.
    pub fn output_shape(&self, inputs: &[&[usize]]) -> std::result::Result<Vec<usize>, String> {
        if inputs.len() != self.arity() {
            return Err(format!(
                "takes {} input(s), given {}",
                self.arity(),
                inputs.len()
            ));
        }
        let x = inputs[0];
        let n = x.iter().product::<usize>();
        match self {
            Self::Linear { weight, bias } => {
                let [out, inn] = weight.shape() else {
                    return Err(format!(
                        "weight of shape {:?} is not a matrix",
                        weight.shape()
                    ));
                };
                if *inn != n {
                    return Err(format!(
                        "weight {out}×{inn} applied to an input of {n} elements (shape {x:?})"
                    ));
                }
                if bias.len() != *out {
                    return Err(format!("bias of {} values for {out} outputs", bias.len()));
                }
                Ok(vec![*out])
            }
            Self::Conv2d(c) => conv_shape(c, x),
            Self::Affine { mul, add } => {
                if (!mul.is_empty() && mul.len() != n) || (!add.is_empty() && add.len() != n) {
                    return Err(format!(
                        "affine constants of {} and {} values on {n} elements",
                        mul.len(),
                        add.len()
                    ));
                }
                Ok(x.to_vec())
            }
            Self::Add | Self::Sub | Self::Mul => {
                if inputs[1] != x {
                    return Err(format!(
                        "operands of shapes {x:?} and {:?} (broadcasting between two inputs \
                         is not supported)",
                        inputs[1]
                    ));
                }
                Ok(x.to_vec())
            }
            Self::Square | Self::Activation(_) | Self::Softmax => Ok(x.to_vec()),
            Self::AveragePool(p) => pool_shape(p, x),
            Self::MaxPool(p) => {
                if p.pads[0].max(p.pads[2]) >= p.kernel[0]
                    || p.pads[1].max(p.pads[3]) >= p.kernel[1]
                {
                    return Err(format!(
                        "pads {:?} as large as the {}×{} window leave windows with no input",
                        p.pads, p.kernel[0], p.kernel[1]
                    ));
                }
                pool_shape(p, x)
            }
            Self::GlobalAveragePool => match x {
                [c, _, _] => Ok(vec![*c, 1, 1]),
                _ => Err(format!("needs a [C, H, W] input, given {x:?}")),
            },
            Self::Reshape { shape } => {
                if shape.iter().product::<usize>() != n {
                    return Err(format!("cannot reshape {x:?} to {shape:?}"));
                }
                Ok(shape.clone())
            }
            Self::Transpose { perm } => {
                let mut seen = vec![false; x.len()];
                if perm.len() != x.len() {
                    return Err(format!("permutation {perm:?} of a rank-{} value", x.len()));
                }
                for &p in perm {
                    match seen.get_mut(p) {
                        Some(s) if !*s => *s = true,
                        _ => return Err(format!("{perm:?} is not a permutation")),
                    }
                }
                Ok(perm.iter().map(|&p| x[p]).collect())
            }
            Self::TreeEnsemble(t) => {
                t.check()?;
                if t.n_features > n {
                    return Err(format!(
                        "trees read {} features, the input has {n}",
                        t.n_features
                    ));
                }
                Ok(vec![t.n_targets])
            }
            Self::ArgMax { labels } => {
                if labels.len() != n {
                    return Err(format!("{} labels for {n} scores", labels.len()));
                }
                Ok(vec![1])
            }
        }
    }
}

fn conv_out(size: usize, pad: usize, kernel: usize, dil: usize, stride: usize) -> Option<usize> {
    let eff = dil.checked_mul(kernel.checked_sub(1)?)?.checked_add(1)?;
    let padded = size.checked_add(pad)?;
    if stride == 0 || padded < eff {
        return None;
    }
    Some((padded - eff) / stride + 1)
}

fn conv_shape(c: &Conv2d, x: &[usize]) -> std::result::Result<Vec<usize>, String> {
    let [ci, h, w] = x else {
        return Err(format!("needs a [C, H, W] input, given {x:?}"));
    };
    let [co, cig, kh, kw] = c.weight.shape() else {
        return Err(format!("weight of shape {:?} is not 4-D", c.weight.shape()));
    };
    if c.groups == 0 || ci % c.groups != 0 || co % c.groups != 0 || ci / c.groups != *cig {
        return Err(format!(
            "{ci} input channels, {co} output channels, {} groups, weight {:?}",
            c.groups,
            c.weight.shape()
        ));
    }
    if c.bias.len() != *co {
        return Err(format!("bias of {} values for {co} channels", c.bias.len()));
    }
    let oh = conv_out(*h, c.pads[0] + c.pads[2], *kh, c.dilation[0], c.stride[0]);
    let ow = conv_out(*w, c.pads[1] + c.pads[3], *kw, c.dilation[1], c.stride[1]);
    match (oh, ow) {
        (Some(oh), Some(ow)) => Ok(vec![*co, oh, ow]),
        _ => Err(format!("kernel {kh}×{kw} does not fit the {h}×{w} input")),
    }
}

fn pool_shape(p: &Pool2d, x: &[usize]) -> std::result::Result<Vec<usize>, String> {
    let [c, h, w] = x else {
        return Err(format!("needs a [C, H, W] input, given {x:?}"));
    };
    let oh = conv_out(*h, p.pads[0] + p.pads[2], p.kernel[0], 1, p.stride[0]);
    let ow = conv_out(*w, p.pads[1] + p.pads[3], p.kernel[1], 1, p.stride[1]);
    match (oh, ow) {
        (Some(oh), Some(ow)) if p.kernel[0] > 0 && p.kernel[1] > 0 => Ok(vec![*c, oh, ow]),
        _ => Err(format!(
            "window {}×{} does not fit the {h}×{w} input",
            p.kernel[0], p.kernel[1]
        )),
    }
}

/// A value (edge) of the graph.
#[derive(Clone, Debug, PartialEq)]
pub struct Value {
    /// Its name in the source model.
    pub name: String,
    /// Its per-sample shape.
    pub shape: Vec<usize>,
}

/// An operator applied to values, producing one value.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// Name of the source node (for messages).
    pub name: String,
    /// The operator.
    pub op: Op,
    /// Values read.
    pub inputs: Vec<ValueId>,
    /// Value produced.
    pub output: ValueId,
}

/// A model: one input, nodes in topological order, named outputs.
#[derive(Clone, Debug, PartialEq)]
pub struct Graph {
    values: Vec<Value>,
    input: ValueId,
    nodes: Vec<Node>,
    outputs: Vec<ValueId>,
}

impl Graph {
    /// The input value.
    pub fn input(&self) -> &Value {
        &self.values[self.input]
    }

    /// The input's id.
    pub fn input_id(&self) -> ValueId {
        self.input
    }

    /// The nodes, in evaluation order.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The output values' ids, in the source model's order.
    pub fn outputs(&self) -> &[ValueId] {
        &self.outputs
    }

    /// A value by id.
    pub fn value(&self, id: ValueId) -> Option<&Value> {
        self.values.get(id)
    }

    /// All values.
    pub fn values(&self) -> &[Value] {
        &self.values
    }

    /// How many nodes read each value (graph outputs count as readers).
    pub fn use_counts(&self) -> Vec<usize> {
        let mut uses = vec![0usize; self.values.len()];
        for n in &self.nodes {
            for &i in &n.inputs {
                uses[i] += 1;
            }
        }
        for &o in &self.outputs {
            uses[o] += 1;
        }
        uses
    }

    /// Folds every [`Op::Affine`] whose input is produced by an [`Op::Linear`] (any affine) or
    /// [`Op::Conv2d`] (per-channel affine) read by nothing else into that operator's weights
    /// and bias: BatchNormalization, and Mul/Add by constants after a linear layer, cost
    /// nothing at evaluation. Returns how many were folded.
    pub fn fold_affine(&mut self) -> usize {
        let mut folded = 0;
        loop {
            let uses = self.use_counts();
            let producer: Vec<Option<usize>> = {
                let mut p = vec![None; self.values.len()];
                for (i, n) in self.nodes.iter().enumerate() {
                    p[n.output] = Some(i);
                }
                p
            };
            let mut did = false;
            for i in 0..self.nodes.len() {
                let Op::Affine { mul, add } = &self.nodes[i].op else {
                    continue;
                };
                let src = self.nodes[i].inputs[0];
                let Some(j) = producer[src] else { continue };
                if uses[src] != 1 {
                    continue;
                }
                let (mul, add) = (mul.clone(), add.clone());
                if fold_into(&mut self.nodes[j].op, &self.values[src].shape, &mul, &add) {
                    let out = self.nodes[i].output;
                    self.nodes[j].output = out;
                    self.nodes.remove(i);
                    folded += 1;
                    did = true;
                    break;
                }
            }
            if !did {
                return folded;
            }
        }
    }
}

/// Folds `y = x·mul + add` into `op` (whose output has `shape`); false if it cannot.
fn fold_into(op: &mut Op, shape: &[usize], mul: &[f64], add: &[f64]) -> bool {
    let m = |k: usize| mul.get(k).copied().unwrap_or(1.0);
    let a = |k: usize| add.get(k).copied().unwrap_or(0.0);
    match op {
        Op::Linear { weight, bias } => {
            let inn = weight.shape().get(1).copied().unwrap_or(0);
            for (o, b) in bias.iter_mut().enumerate() {
                let f = m(o);
                for w in &mut weight.data[o * inn..(o + 1) * inn] {
                    *w *= f;
                }
                *b = *b * f + a(o);
            }
            true
        }
        Op::Conv2d(c) => {
            let [ch, h, w] = shape else { return false };
            let plane = h * w;
            // Per-channel only: the constants must not vary inside a channel.
            let per_channel = |v: &[f64]| {
                v.is_empty()
                    || (0..*ch).all(|k| {
                        v[k * plane..(k + 1) * plane]
                            .iter()
                            .all(|&x| x == v[k * plane])
                    })
            };
            if !per_channel(mul) || !per_channel(add) {
                return false;
            }
            let per_out = c.weight.len() / (*ch).max(1);
            for k in 0..*ch {
                let f = m(k * plane);
                for wv in &mut c.weight.data[k * per_out..(k + 1) * per_out] {
                    *wv *= f;
                }
                c.bias[k] = c.bias[k] * f + a(k * plane);
            }
            true
        }
        _ => false,
    }
}

/// Builds a [`Graph`], inferring and checking each node's output shape as it is added.
#[derive(Debug)]
pub struct GraphBuilder {
    values: Vec<Value>,
    input: ValueId,
    nodes: Vec<Node>,
}

impl GraphBuilder {
    /// A graph whose single input is `name` with per-sample `shape`.
    pub fn new(name: &str, shape: Vec<usize>) -> Self {
        Self {
            values: vec![Value {
                name: name.to_string(),
                shape,
            }],
            input: 0,
            nodes: Vec::new(),
        }
    }

    /// The input's id.
    pub fn input(&self) -> ValueId {
        self.input
    }

    /// A value's per-sample shape.
    pub fn shape(&self, id: ValueId) -> Option<&[usize]> {
        self.values.get(id).map(|v| v.shape.as_slice())
    }

    /// Adds node `name` applying `op` to `inputs`, producing a value called `output`.
    /// `source_op` names the model's operator in errors.
    pub fn add(
        &mut self,
        name: &str,
        source_op: &str,
        op: Op,
        inputs: &[ValueId],
        output: &str,
    ) -> Result<ValueId> {
        let mut shapes = Vec::with_capacity(inputs.len());
        for &i in inputs {
            let v = self
                .values
                .get(i)
                .ok_or(MlError::Internal("node input is not a value of the graph"))?;
            shapes.push(v.shape.as_slice());
        }
        let shape = op
            .output_shape(&shapes)
            .map_err(|reason| MlError::InvalidModel {
                reason: format!("node `{name}` ({source_op}): {reason}"),
            })?;
        let id = self.values.len();
        self.values.push(Value {
            name: output.to_string(),
            shape,
        });
        self.nodes.push(Node {
            name: name.to_string(),
            op,
            inputs: inputs.to_vec(),
            output: id,
        });
        Ok(id)
    }

    /// Finishes the graph with the given outputs.
    pub fn finish(self, outputs: Vec<ValueId>) -> Result<Graph> {
        if outputs.is_empty() {
            return Err(MlError::invalid("the model has no output"));
        }
        if outputs.iter().any(|&o| o >= self.values.len()) {
            return Err(MlError::Internal("graph output is not a value"));
        }
        Ok(Graph {
            values: self.values,
            input: self.input,
            nodes: self.nodes,
            outputs,
        })
    }
}
