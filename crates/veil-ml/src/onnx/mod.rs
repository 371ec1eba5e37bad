//! ONNX import: reads a `.onnx` file into a [`Graph`].
//!
//! The protobuf is decoded with `prost` into the subset of `onnx.proto` the importer needs
//! (hand-written messages, no `protoc`); the file is untrusted input: its size is bounded,
//! every tensor's element count is checked against its data before use, and every problem is
//! an error — [`MlError::UnsupportedOp`] naming the node and operator for an operator Veil
//! does not implement, [`MlError::UnsupportedUse`] for a supported operator used in a way it
//! does not (say which), [`MlError::InvalidModel`] or [`MlError::Decode`] otherwise.
//!
//! The graph must have one data input of shape `[batch, …]` with every non-batch dimension
//! known; weights must be constants (initializers or `Constant` nodes). Import strips the
//! batch axis (see [`crate::ir`]) and folds affine layers (BatchNormalization, Mul/Add by
//! constants) into the linear layer before them ([`Graph::fold_affine`]).

mod proto;

use std::collections::{BTreeMap, HashMap};

use prost::Message;

use crate::error::{MlError, Result};
use crate::ir::{
    element_count, Activation, Aggregate, BranchMode, Conv2d, Graph, GraphBuilder, Op, Pool2d,
    PostTransform, Tensor, Tree, TreeEnsemble, TreeNode, ValueId,
};
use proto::{data_type, AttributeProto, NodeProto, TensorProto};

/// Largest model file the importer reads.
pub const MAX_MODEL_BYTES: usize = 256 << 20;

/// The operators the importer understands, for error messages.
pub const SUPPORTED_OPS: &str = "Gemm, MatMul, Add, Sub, Mul, Div (by constants), Pow(x, 2), \
    Conv (2-D), AveragePool, MaxPool, GlobalAveragePool, BatchNormalization, Flatten, Reshape, \
    Transpose, Relu, Sigmoid, Tanh, Softplus, Softmax, ArgMax, Identity, Dropout, Constant, \
    ai.onnx.ml TreeEnsembleClassifier, ai.onnx.ml TreeEnsembleRegressor";

/// Oldest default-domain opset the importer accepts (operator semantics checked from here).
pub const MIN_OPSET: i64 = 7;
/// Newest default-domain opset the importer accepts.
pub const MAX_OPSET: i64 = 22;

/// What the file says about itself, besides the graph.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelInfo {
    /// ONNX IR version.
    pub ir_version: i64,
    /// Producer name and version (e.g. `pytorch 1.13.0`).
    pub producer: String,
    /// Opset of the default domain.
    pub opset: i64,
    /// Opset of `ai.onnx.ml`, if imported.
    pub ml_opset: Option<i64>,
    /// Number of ONNX nodes in the file.
    pub onnx_nodes: usize,
}

/// An imported model.
#[derive(Clone, Debug, PartialEq)]
pub struct OnnxModel {
    /// The graph (batch axis stripped, affine layers folded).
    pub graph: Graph,
    /// Facts from the file.
    pub info: ModelInfo,
}

/// Reads an ONNX model from a file.
pub fn import_file(path: impl AsRef<std::path::Path>) -> Result<OnnxModel> {
    let path = path.as_ref();
    let len = std::fs::metadata(path)
        .map_err(|e| MlError::Decode {
            reason: format!("{}: {e}", path.display()),
        })?
        .len();
    if len > MAX_MODEL_BYTES as u64 {
        return Err(MlError::Decode {
            reason: format!(
                "{}: {len} bytes, more than {MAX_MODEL_BYTES}",
                path.display()
            ),
        });
    }
    let bytes = std::fs::read(path).map_err(|e| MlError::Decode {
        reason: format!("{}: {e}", path.display()),
    })?;
    import(&bytes)
}

/// Reads an ONNX model from its bytes.
pub fn import(bytes: &[u8]) -> Result<OnnxModel> {
    if bytes.len() > MAX_MODEL_BYTES {
        return Err(MlError::Decode {
            reason: format!("{} bytes, more than {MAX_MODEL_BYTES}", bytes.len()),
        });
    }
    let model = proto::ModelProto::decode(bytes).map_err(|e| MlError::Decode {
        reason: e.to_string(),
    })?;
    let graph = model.graph.as_ref().ok_or_else(|| MlError::Decode {
        reason: "the model has no graph".into(),
    })?;
    let mut opset = None;
    let mut ml_opset = None;
    for o in &model.opset_import {
        match o.domain.as_str() {
            "" | "ai.onnx" => opset = Some(o.version),
            "ai.onnx.ml" => ml_opset = Some(o.version),
            _ => {}
        }
    }
    let opset =
        opset.ok_or_else(|| MlError::invalid("no opset imported for the default domain"))?;
    if !(MIN_OPSET..=MAX_OPSET).contains(&opset) {
        return Err(MlError::invalid(format!(
            "opset {opset} is outside the supported {MIN_OPSET}..={MAX_OPSET}"
        )));
    }
    if model.ir_version < 3 {
        return Err(MlError::invalid(format!(
            "IR version {} (ONNX 1.1 or later is needed)",
            model.ir_version
        )));
    }
    let info = ModelInfo {
        ir_version: model.ir_version,
        producer: format!("{} {}", model.producer_name, model.producer_version)
            .trim()
            .to_string(),
        opset,
        ml_opset,
        onnx_nodes: graph.node.len(),
    };
    let mut graph = Importer::new(graph)?.run(graph, ml_opset)?;
    graph.fold_affine();
    Ok(OnnxModel { graph, info })
}

/// A node's operand: a graph value or a constant.
enum Arg {
    Value(ValueId),
    Const(Tensor),
}

struct Importer {
    b: GraphBuilder,
    consts: HashMap<String, Tensor>,
    values: HashMap<String, ValueId>,
}

/// Context for errors about one node.
struct At<'a> {
    node: &'a NodeProto,
    name: String,
}

impl At<'_> {
    fn unsupported(&self, reason: impl Into<String>) -> MlError {
        MlError::UnsupportedUse {
            node: self.name.clone(),
            op: self.node.op_type.clone(),
            reason: reason.into(),
        }
    }

    fn invalid(&self, reason: impl std::fmt::Display) -> MlError {
        MlError::invalid(format!(
            "node `{}` ({}): {reason}",
            self.name, self.node.op_type
        ))
    }

    fn attr(&self, name: &str) -> Option<&AttributeProto> {
        self.node.attribute.iter().find(|a| a.name == name)
    }

    fn int(&self, name: &str, default: i64) -> i64 {
        self.attr(name).map_or(default, |a| a.i)
    }

    fn float(&self, name: &str, default: f32) -> f32 {
        self.attr(name).map_or(default, |a| a.f)
    }

    fn ints(&self, name: &str) -> Option<&[i64]> {
        self.attr(name).map(|a| a.ints.as_slice())
    }

    fn string(&self, name: &str, default: &str) -> Result<String> {
        match self.attr(name) {
            None => Ok(default.to_string()),
            Some(a) => String::from_utf8(a.s.clone())
                .map_err(|_| self.invalid(format!("attribute `{name}` is not UTF-8"))),
        }
    }

    /// A list of floats given either as `name` (floats) or `name_as_tensor`.
    fn floats(&self, name: &str) -> Result<Option<Vec<f64>>> {
        if let Some(a) = self.attr(&format!("{name}_as_tensor")) {
            let t =
                a.t.as_ref()
                    .ok_or_else(|| self.invalid(format!("`{name}_as_tensor` holds no tensor")))?;
            return Ok(Some(
                load_tensor(t).map_err(|e| self.invalid(e))?.into_data(),
            ));
        }
        Ok(self
            .attr(name)
            .map(|a| a.floats.iter().map(|&f| f64::from(f)).collect()))
    }

    fn usize_of(&self, v: i64, what: &str) -> Result<usize> {
        usize::try_from(v).map_err(|_| self.invalid(format!("{what} {v} is negative")))
    }
}

impl Importer {
    fn new(graph: &proto::GraphProto) -> Result<Self> {
        let mut consts = HashMap::new();
        for t in &graph.initializer {
            consts.insert(
                t.name.clone(),
                load_tensor(t)
                    .map_err(|e| MlError::invalid(format!("initializer `{}`: {e}", t.name)))?,
            );
        }
        let data_inputs: Vec<_> = graph
            .input
            .iter()
            .filter(|i| !consts.contains_key(&i.name))
            .collect();
        let [input] = data_inputs.as_slice() else {
            return Err(MlError::invalid(format!(
                "the model has {} data inputs ({}); Veil runs models with exactly one",
                data_inputs.len(),
                data_inputs
                    .iter()
                    .map(|i| i.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        let tt = input
            .r#type
            .as_ref()
            .and_then(|t| t.tensor_type.as_ref())
            .ok_or_else(|| MlError::invalid(format!("input `{}` is not a tensor", input.name)))?;
        if tt.elem_type != data_type::FLOAT && tt.elem_type != data_type::DOUBLE {
            return Err(MlError::invalid(format!(
                "input `{}` has element type {} (float or double needed)",
                input.name, tt.elem_type
            )));
        }
        let dims = tt.shape.as_ref().map(|s| s.dim.as_slice()).unwrap_or(&[]);
        if dims.len() < 2 {
            return Err(MlError::invalid(format!(
                "input `{}` has rank {}: a [batch, …] input is needed",
                input.name,
                dims.len()
            )));
        }
        let mut shape = Vec::new();
        for (k, d) in dims.iter().enumerate().skip(1) {
            match d.dim_value {
                Some(v) if v > 0 => shape.push(v as usize),
                _ => {
                    return Err(MlError::invalid(format!(
                        "input `{}` dimension {k} is not a known positive size ({:?}); \
                         only the batch axis may be symbolic",
                        input.name,
                        d.dim_param.as_deref().unwrap_or("?")
                    )))
                }
            }
        }
        element_count(&shape)?;
        let b = GraphBuilder::new(&input.name, shape);
        let mut values = HashMap::new();
        values.insert(input.name.clone(), b.input());
        Ok(Self { b, consts, values })
    }

    fn run(mut self, graph: &proto::GraphProto, ml_opset: Option<i64>) -> Result<Graph> {
        for (idx, node) in graph.node.iter().enumerate() {
            let name = if node.name.is_empty() {
                format!("#{idx}")
            } else {
                node.name.clone()
            };
            let at = At { node, name };
            match node.domain.as_str() {
                "" | "ai.onnx" => self.default_op(&at)?,
                "ai.onnx.ml" if ml_opset.is_some() => self.ml_op(&at)?,
                "ai.onnx.ml" => {
                    return Err(at.invalid("uses ai.onnx.ml, which the model does not import"))
                }
                other => {
                    return Err(MlError::UnsupportedOp {
                        node: at.name.clone(),
                        op: node.op_type.clone(),
                        domain: other.to_string(),
                        supported: SUPPORTED_OPS,
                    })
                }
            }
        }
        let mut outputs = Vec::new();
        for o in &graph.output {
            let id = match self.values.get(&o.name) {
                Some(&id) => id,
                None if self.consts.contains_key(&o.name) => {
                    return Err(MlError::invalid(format!(
                        "output `{}` is a constant, not computed from the input",
                        o.name
                    )))
                }
                None => {
                    return Err(MlError::invalid(format!(
                        "output `{}` is produced by no node",
                        o.name
                    )))
                }
            };
            // A declared, fully known output shape must agree with the inferred one.
            let declared: Option<Vec<i64>> = o
                .r#type
                .as_ref()
                .and_then(|t| t.tensor_type.as_ref())
                .and_then(|t| t.shape.as_ref())
                .filter(|s| !s.dim.is_empty())
                .and_then(|s| s.dim.iter().skip(1).map(|d| d.dim_value).collect());
            if let (Some(decl), Some(ours)) = (declared, self.b.shape(id)) {
                let n: i64 = decl.iter().product();
                let m = ours.iter().product::<usize>();
                if decl.iter().all(|&d| d > 0) && n as usize != m {
                    return Err(MlError::invalid(format!(
                        "output `{}` is declared with {n} values per sample, computes {m}",
                        o.name
                    )));
                }
            }
            outputs.push(id);
        }
        self.b.finish(outputs)
    }

    fn arg(&self, at: &At<'_>, k: usize) -> Result<Arg> {
        let name = at
            .node
            .input
            .get(k)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| at.invalid(format!("input {k} is missing")))?;
        if let Some(&v) = self.values.get(name) {
            return Ok(Arg::Value(v));
        }
        if let Some(t) = self.consts.get(name) {
            return Ok(Arg::Const(t.clone()));
        }
        Err(at.invalid(format!(
            "input `{name}` is produced by no earlier node (the graph must be topologically \
             sorted)"
        )))
    }

    fn value(&self, at: &At<'_>, k: usize) -> Result<ValueId> {
        match self.arg(at, k)? {
            Arg::Value(v) => Ok(v),
            Arg::Const(_) => Err(at.unsupported(format!(
                "input {k} is a constant; Veil evaluates operators on data computed from the \
                 model input (fold constant subgraphs before export)"
            ))),
        }
    }

    fn constant(&self, at: &At<'_>, k: usize, what: &str) -> Result<Tensor> {
        match self.arg(at, k)? {
            Arg::Const(t) => Ok(t),
            Arg::Value(_) => Err(at.unsupported(format!(
                "the {what} (input {k}) must be a constant (an initializer); it is computed from \
                 the input"
            ))),
        }
    }

    fn optional_constant(&self, at: &At<'_>, k: usize, what: &str) -> Result<Option<Tensor>> {
        match at.node.input.get(k) {
            Some(n) if !n.is_empty() => self.constant(at, k, what).map(Some),
            _ => Ok(None),
        }
    }

    fn out_name<'n>(&self, at: &'n At<'_>, k: usize) -> Result<&'n str> {
        at.node
            .output
            .get(k)
            .map(String::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| at.invalid(format!("output {k} is missing")))
    }

    fn emit(&mut self, at: &At<'_>, op: Op, inputs: &[ValueId]) -> Result<ValueId> {
        let out = self.out_name(at, 0)?.to_string();
        self.emit_named(at, op, inputs, &out)
    }

    fn emit_named(
        &mut self,
        at: &At<'_>,
        op: Op,
        inputs: &[ValueId],
        out: &str,
    ) -> Result<ValueId> {
        self.check_fresh(at, out)?;
        let id = self.b.add(&at.name, &at.node.op_type, op, inputs, out)?;
        self.values.insert(out.to_string(), id);
        Ok(id)
    }

    /// ONNX names are assigned once: a node may not redefine a value or a constant.
    fn check_fresh(&self, at: &At<'_>, name: &str) -> Result<()> {
        if self.values.contains_key(name) || self.consts.contains_key(name) {
            return Err(at.invalid(format!("redefines `{name}`")));
        }
        Ok(())
    }

    fn shape(&self, id: ValueId) -> Result<Vec<usize>> {
        self.b
            .shape(id)
            .map(<[usize]>::to_vec)
            .ok_or(MlError::Internal("value without a shape"))
    }

    fn default_op(&mut self, at: &At<'_>) -> Result<()> {
        let op = at.node.op_type.as_str();
        match op {
            "Constant" => {
                let t = constant_node(at)?;
                let out = self.out_name(at, 0)?.to_string();
                self.check_fresh(at, &out)?;
                self.consts.insert(out, t);
            }
            "Identity" | "Dropout" => {
                if let Some(mask) = at.node.output.get(1).filter(|m| !m.is_empty()) {
                    return Err(at.unsupported(format!("the mask output `{mask}` is used")));
                }
                let out = self.out_name(at, 0)?.to_string();
                self.check_fresh(at, &out)?;
                match self.arg(at, 0)? {
                    Arg::Value(v) => {
                        self.values.insert(out, v);
                    }
                    Arg::Const(t) => {
                        self.consts.insert(out, t);
                    }
                }
            }
            "Gemm" => self.gemm(at)?,
            "MatMul" => {
                let x = self.value(at, 0)?;
                let w = self.constant(at, 1, "weight matrix")?;
                let xs = self.shape(x)?;
                let [inn, out] = w.shape() else {
                    return Err(at.unsupported(format!(
                        "only [batch, k] × [k, n] products are supported; the weight has shape \
                         {:?}",
                        w.shape()
                    )));
                };
                if xs.len() != 1 {
                    return Err(at.unsupported(format!(
                        "only [batch, k] × [k, n] products are supported; the data has \
                         per-sample shape {xs:?}"
                    )));
                }
                let weight = transpose2(&w, *inn, *out)?;
                self.emit(
                    at,
                    Op::Linear {
                        weight,
                        bias: vec![0.0; *out],
                    },
                    &[x],
                )?;
            }
            "Add" | "Sub" | "Mul" | "Div" => self.arith(at)?,
            "Pow" => {
                let x = self.value(at, 0)?;
                let e = self.constant(at, 1, "exponent")?;
                if e.data() != [2.0] {
                    return Err(at.unsupported(format!(
                        "only Pow(x, 2) is supported, the exponent is {:?}",
                        e.data()
                    )));
                }
                self.emit(at, Op::Square, &[x])?;
            }
            "Conv" => self.conv(at)?,
            "AveragePool" => {
                let x = self.value(at, 0)?;
                let pool = pool2d(at, at.int("count_include_pad", 0) != 0)?;
                self.emit(at, Op::AveragePool(pool), &[x])?;
            }
            "MaxPool" => {
                let x = self.value(at, 0)?;
                if at.node.output.iter().skip(1).any(|o| !o.is_empty()) {
                    return Err(at.unsupported("the Indices output"));
                }
                let pool = pool2d(at, false)?;
                self.emit(at, Op::MaxPool(pool), &[x])?;
            }
            "GlobalAveragePool" => {
                let x = self.value(at, 0)?;
                self.emit(at, Op::GlobalAveragePool, &[x])?;
            }
            "BatchNormalization" => self.batch_norm(at)?,
            "Flatten" => {
                let x = self.value(at, 0)?;
                let xs = self.shape(x)?;
                let rank = xs.len() as i64 + 1;
                let mut axis = at.int("axis", 1);
                if axis < 0 {
                    axis += rank;
                }
                if axis != 1 {
                    return Err(at.unsupported(format!(
                        "Flatten with axis {} mixes the batch axis into the data; only axis 1 \
                         is supported",
                        at.int("axis", 1)
                    )));
                }
                let n = element_count(&xs)?;
                self.emit(at, Op::Reshape { shape: vec![n] }, &[x])?;
            }
            "Reshape" => {
                let x = self.value(at, 0)?;
                let target = self.constant(at, 1, "target shape")?;
                let xs = self.shape(x)?;
                let shape = reshape_target(at, &xs, target.data())?;
                self.emit(at, Op::Reshape { shape }, &[x])?;
            }
            "Transpose" => {
                let x = self.value(at, 0)?;
                let rank = self.shape(x)?.len() + 1;
                let perm: Vec<i64> = match at.ints("perm") {
                    Some(p) => p.to_vec(),
                    None => (0..rank as i64).rev().collect(),
                };
                if perm.first() != Some(&0) {
                    return Err(at.unsupported(format!(
                        "permutation {perm:?} moves the batch axis; only layout changes inside \
                         a sample are supported"
                    )));
                }
                let perm = perm[1..]
                    .iter()
                    .map(|&p| at.usize_of(p - 1, "axis"))
                    .collect::<Result<Vec<_>>>()?;
                self.emit(at, Op::Transpose { perm }, &[x])?;
            }
            "Relu" | "Sigmoid" | "Tanh" | "Softplus" => {
                let act = match op {
                    "Relu" => Activation::Relu,
                    "Sigmoid" => Activation::Sigmoid,
                    "Tanh" => Activation::Tanh,
                    _ => Activation::Softplus,
                };
                let x = self.value(at, 0)?;
                self.emit(at, Op::Activation(act), &[x])?;
            }
            "Softmax" | "ArgMax" => {
                let x = self.value(at, 0)?;
                let xs = self.shape(x)?;
                // Softmax defaults to the class axis (1 before opset 13, -1 after); ArgMax to
                // the batch axis 0, which is refused.
                let axis = at.int("axis", if op == "ArgMax" { 0 } else { 1 });
                if xs.len() != 1 || !(axis == 1 || axis == -1) {
                    return Err(at.unsupported(format!(
                        "only over the class axis of a [batch, k] value (axis 1); axis {axis} \
                         of per-sample shape {xs:?}"
                    )));
                }
                if op == "ArgMax" {
                    if at.int("select_last_index", 0) != 0 {
                        return Err(at.unsupported("select_last_index = 1"));
                    }
                    let labels = (0..xs[0] as i64).collect();
                    self.emit(at, Op::ArgMax { labels }, &[x])?;
                } else {
                    self.emit(at, Op::Softmax, &[x])?;
                }
            }
            _ => {
                return Err(MlError::UnsupportedOp {
                    node: at.name.clone(),
                    op: op.to_string(),
                    domain: "ai.onnx".into(),
                    supported: SUPPORTED_OPS,
                })
            }
        }
        Ok(())
    }

    fn gemm(&mut self, at: &At<'_>) -> Result<()> {
        let x = self.value(at, 0)?;
        let b = self.constant(at, 1, "weight matrix B")?;
        let c = self.optional_constant(at, 2, "bias C")?;
        if at.int("transA", 0) != 0 {
            return Err(
                at.unsupported("transA = 1 (the data would be transposed across the batch)")
            );
        }
        let xs = self.shape(x)?;
        if xs.len() != 1 {
            return Err(at.invalid(format!("A must be [batch, k], has per-sample shape {xs:?}")));
        }
        let alpha = f64::from(at.float("alpha", 1.0));
        let beta = f64::from(at.float("beta", 1.0));
        let [r, s] = b.shape() else {
            return Err(at.invalid(format!("B has shape {:?}, not a matrix", b.shape())));
        };
        let (out, weight) = if at.int("transB", 0) != 0 {
            (*r, b.clone())
        } else {
            (*s, transpose2(&b, *r, *s)?)
        };
        let weight = Tensor::new(
            weight.shape().to_vec(),
            weight.data().iter().map(|w| w * alpha).collect(),
        )?;
        let bias = match c {
            None => vec![0.0; out],
            Some(c) => expand_const(&c, &[out])
                .map_err(|e| at.invalid(format!("C: {e}")))?
                .into_iter()
                .map(|v| v * beta)
                .collect(),
        };
        self.emit(at, Op::Linear { weight, bias }, &[x])?;
        Ok(())
    }

    fn arith(&mut self, at: &At<'_>) -> Result<()> {
        let op = at.node.op_type.as_str();
        let a = self.arg(at, 0)?;
        let b = self.arg(at, 1)?;
        match (a, b) {
            (Arg::Value(x), Arg::Value(y)) => {
                let ir = match op {
                    "Mul" if x == y => {
                        self.emit(at, Op::Square, &[x])?;
                        return Ok(());
                    }
                    "Add" => Op::Add,
                    "Sub" => Op::Sub,
                    "Mul" => Op::Mul,
                    _ => return Err(at.unsupported("division by a value computed from the input")),
                };
                self.emit(at, ir, &[x, y])?;
            }
            (Arg::Value(x), Arg::Const(c)) => {
                let shape = self.shape(x)?;
                let c = expand_const(&c, &shape).map_err(|e| at.unsupported(e))?;
                let (mul, add) = match op {
                    "Add" => (Vec::new(), c),
                    "Sub" => (Vec::new(), c.iter().map(|v| -v).collect()),
                    "Mul" => (c, Vec::new()),
                    _ => {
                        if c.contains(&0.0) {
                            return Err(at.invalid("division by a zero constant"));
                        }
                        (c.iter().map(|v| 1.0 / v).collect(), Vec::new())
                    }
                };
                self.emit(at, Op::Affine { mul, add }, &[x])?;
            }
            (Arg::Const(c), Arg::Value(x)) => {
                let shape = self.shape(x)?;
                let c = expand_const(&c, &shape).map_err(|e| at.unsupported(e))?;
                let (mul, add) = match op {
                    "Add" => (Vec::new(), c),
                    "Sub" => (vec![-1.0; c.len()], c),
                    "Mul" => (c, Vec::new()),
                    _ => return Err(at.unsupported("division of a constant by a value")),
                };
                self.emit(at, Op::Affine { mul, add }, &[x])?;
            }
            (Arg::Const(_), Arg::Const(_)) => {
                return Err(at.unsupported(
                    "both operands are constants; fold constant subgraphs before export",
                ))
            }
        }
        Ok(())
    }

    fn conv(&mut self, at: &At<'_>) -> Result<()> {
        let x = self.value(at, 0)?;
        let w = self.constant(at, 1, "kernel")?;
        let bias = self.optional_constant(at, 2, "bias")?;
        let ws = w.shape().to_vec();
        let [co, _, kh, kw] = ws.as_slice() else {
            return Err(at.unsupported(format!(
                "only 2-D convolutions are supported (kernel of shape {ws:?})"
            )));
        };
        if let Some(k) = at.ints("kernel_shape") {
            if k != [*kh as i64, *kw as i64] {
                return Err(at.invalid(format!("kernel_shape {k:?} but the kernel is {ws:?}")));
            }
        }
        let stride = pair(at, "strides", Some([1, 1]))?;
        let dilation = pair(at, "dilations", Some([1, 1]))?;
        let groups = at.usize_of(at.int("group", 1), "group")?;
        let xs = self.shape(x)?;
        let pads = match at.string("auto_pad", "NOTSET")?.as_str() {
            "NOTSET" => pads(at)?,
            "VALID" => [0; 4],
            mode @ ("SAME_UPPER" | "SAME_LOWER") => {
                let [_, h, wd] = xs.as_slice() else {
                    return Err(at.invalid(format!("input of per-sample shape {xs:?}")));
                };
                let total = |size: usize, k: usize, d: usize, s: usize| {
                    let out = size.div_ceil(s.max(1));
                    ((out - 1) * s + d * (k - 1) + 1).saturating_sub(size)
                };
                let th = total(*h, *kh, dilation[0], stride[0]);
                let tw = total(*wd, *kw, dilation[1], stride[1]);
                let (hb, wb) = if mode == "SAME_UPPER" {
                    (th / 2, tw / 2)
                } else {
                    (th - th / 2, tw - tw / 2)
                };
                [hb, wb, th - hb, tw - wb]
            }
            other => return Err(at.invalid(format!("auto_pad {other}"))),
        };
        let bias = match bias {
            None => vec![0.0; *co],
            Some(b) => b.into_data(),
        };
        let conv = Conv2d {
            weight: w,
            bias,
            stride,
            pads,
            dilation,
            groups,
        };
        self.emit(at, Op::Conv2d(conv), &[x])?;
        Ok(())
    }

    fn batch_norm(&mut self, at: &At<'_>) -> Result<()> {
        if at.int("training_mode", 0) != 0 || at.node.output.iter().skip(1).any(|o| !o.is_empty()) {
            return Err(at.unsupported("training mode (running statistics outputs)"));
        }
        let x = self.value(at, 0)?;
        let scale = self.constant(at, 1, "scale")?;
        let shift = self.constant(at, 2, "bias")?;
        let mean = self.constant(at, 3, "mean")?;
        let var = self.constant(at, 4, "variance")?;
        let eps = f64::from(at.float("epsilon", 1e-5));
        let xs = self.shape(x)?;
        let c = xs.first().copied().unwrap_or(0);
        if [&scale, &shift, &mean, &var].iter().any(|t| t.len() != c) {
            return Err(at.invalid(format!(
                "per-channel parameters must have {c} values (input per-sample shape {xs:?})"
            )));
        }
        let plane = element_count(&xs)? / c.max(1);
        let mut mul = Vec::with_capacity(c * plane);
        let mut add = Vec::with_capacity(c * plane);
        for k in 0..c {
            let v = var.data()[k] + eps;
            if v.is_nan() || v <= 0.0 {
                return Err(at.invalid(format!("variance + epsilon of channel {k} is {v}")));
            }
            let m = scale.data()[k] / v.sqrt();
            let a = shift.data()[k] - mean.data()[k] * m;
            mul.extend(std::iter::repeat_n(m, plane));
            add.extend(std::iter::repeat_n(a, plane));
        }
        self.emit(at, Op::Affine { mul, add }, &[x])?;
        Ok(())
    }

    fn ml_op(&mut self, at: &At<'_>) -> Result<()> {
        let op = at.node.op_type.as_str();
        let classifier = match op {
            "TreeEnsembleClassifier" => true,
            "TreeEnsembleRegressor" => false,
            _ => {
                return Err(MlError::UnsupportedOp {
                    node: at.name.clone(),
                    op: op.to_string(),
                    domain: "ai.onnx.ml".into(),
                    supported: SUPPORTED_OPS,
                })
            }
        };
        let x = self.value(at, 0)?;
        let xs = self.shape(x)?;
        if xs.len() != 1 {
            return Err(at.invalid(format!(
                "input must be [batch, features], has per-sample {xs:?}"
            )));
        }
        let (ensemble, labels) = tree_ensemble(at, xs[0], classifier)?;
        if classifier {
            // Outputs: label (0), scores (1).
            let scores_name = match at.node.output.get(1).filter(|n| !n.is_empty()) {
                Some(n) => n.clone(),
                None => format!("{}:scores", at.name),
            };
            let scores = self.emit_named(at, Op::TreeEnsemble(ensemble), &[x], &scores_name)?;
            if let Some(label) = at.node.output.first().filter(|n| !n.is_empty()) {
                let label = label.clone();
                self.emit_named(at, Op::ArgMax { labels }, &[scores], &label)?;
            }
        } else {
            self.emit(at, Op::TreeEnsemble(ensemble), &[x])?;
        }
        Ok(())
    }
}

/// Builds a tree ensemble from the ONNX-ML attributes; returns it and the class labels
/// (classifiers).
fn tree_ensemble(
    at: &At<'_>,
    n_features: usize,
    classifier: bool,
) -> Result<(TreeEnsemble, Vec<i64>)> {
    let ints = |name: &str| -> Vec<i64> { at.ints(name).map(<[i64]>::to_vec).unwrap_or_default() };
    let tree_ids = ints("nodes_treeids");
    let node_ids = ints("nodes_nodeids");
    let features = ints("nodes_featureids");
    let trues = ints("nodes_truenodeids");
    let falses = ints("nodes_falsenodeids");
    let missing = ints("nodes_missing_value_tracks_true");
    let values = at.floats("nodes_values")?.unwrap_or_default();
    let modes: Vec<String> = at
        .attr("nodes_modes")
        .map(|a| {
            a.strings
                .iter()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect()
        })
        .unwrap_or_default();
    let n = tree_ids.len();
    if n == 0 {
        return Err(at.invalid("the ensemble has no node"));
    }
    for (what, len) in [
        ("nodes_nodeids", node_ids.len()),
        ("nodes_featureids", features.len()),
        ("nodes_truenodeids", trues.len()),
        ("nodes_falsenodeids", falses.len()),
        ("nodes_values", values.len()),
        ("nodes_modes", modes.len()),
    ] {
        if len != n {
            return Err(at.invalid(format!("{what} has {len} entries, nodes_treeids {n}")));
        }
    }
    if !missing.is_empty() && missing.len() != n {
        return Err(at.invalid("nodes_missing_value_tracks_true has the wrong length"));
    }
    let prefix = if classifier { "class" } else { "target" };
    let w_tree = ints(&format!("{prefix}_treeids"));
    let w_node = ints(&format!("{prefix}_nodeids"));
    let w_id = ints(&format!("{prefix}_ids"));
    let w_val = at.floats(&format!("{prefix}_weights"))?.unwrap_or_default();
    if w_node.len() != w_tree.len() || w_id.len() != w_tree.len() || w_val.len() != w_tree.len() {
        return Err(at.invalid(format!("the {prefix}_* leaf arrays have different lengths")));
    }
    let (n_targets, labels) = if classifier {
        if at
            .attr("classlabels_strings")
            .is_some_and(|a| !a.strings.is_empty())
        {
            return Err(at.unsupported(
                "string class labels; export with integer labels (classlabels_int64s)",
            ));
        }
        let labels = ints("classlabels_int64s");
        if labels.is_empty() {
            return Err(at.invalid("no class labels"));
        }
        if labels.len() == 2 && w_id.iter().all(|&c| c == 0) {
            return Err(
                at.unsupported("the binary form with one score column; export both class columns")
            );
        }
        (labels.len(), labels)
    } else {
        let t = at.int("n_targets", 1);
        (at.usize_of(t, "n_targets")?, Vec::new())
    };
    if n_targets == 0 {
        return Err(at.invalid("no target"));
    }
    let aggregate = if classifier {
        Aggregate::Sum
    } else {
        match at.string("aggregate_function", "SUM")?.as_str() {
            "SUM" => Aggregate::Sum,
            "AVERAGE" => Aggregate::Average,
            other => return Err(at.unsupported(format!("aggregate_function {other}"))),
        }
    };
    let post_transform = match at.string("post_transform", "NONE")?.as_str() {
        "NONE" => PostTransform::None,
        "SOFTMAX" => PostTransform::Softmax,
        "LOGISTIC" => PostTransform::Logistic,
        "SOFTMAX_ZERO" => PostTransform::SoftmaxZero,
        other => return Err(at.unsupported(format!("post_transform {other}"))),
    };
    let base_values = at.floats("base_values")?.unwrap_or_default();

    // Group node entries by tree, keyed by (tree, node id).
    let mut trees: BTreeMap<i64, HashMap<i64, usize>> = BTreeMap::new();
    for k in 0..n {
        if trees
            .entry(tree_ids[k])
            .or_default()
            .insert(node_ids[k], k)
            .is_some()
        {
            return Err(at.invalid(format!(
                "tree {} has node id {} twice",
                tree_ids[k], node_ids[k]
            )));
        }
    }
    let mut leaf_weights: HashMap<(i64, i64), Vec<(usize, f64)>> = HashMap::new();
    for k in 0..w_tree.len() {
        let target = at.usize_of(w_id[k], "target id")?;
        if target >= n_targets {
            return Err(at.invalid(format!("leaf weight for target {target} of {n_targets}")));
        }
        leaf_weights
            .entry((w_tree[k], w_node[k]))
            .or_default()
            .push((target, w_val[k]));
    }
    let mut out = Vec::with_capacity(trees.len());
    for (&tid, ids) in &trees {
        // The root is the node no other node points to.
        let mut is_child: HashMap<i64, bool> = HashMap::new();
        for &k in ids.values() {
            if modes[k] != "LEAF" {
                is_child.insert(trues[k], true);
                is_child.insert(falses[k], true);
            }
        }
        let roots: Vec<i64> = ids
            .keys()
            .copied()
            .filter(|id| !is_child.contains_key(id))
            .collect();
        let [root] = roots.as_slice() else {
            return Err(at.invalid(format!("tree {tid} has {} roots", roots.len())));
        };
        // Preorder numbering puts every child after its parent.
        let mut order: Vec<i64> = Vec::new();
        let mut index: HashMap<i64, usize> = HashMap::new();
        let mut stack = vec![*root];
        while let Some(id) = stack.pop() {
            if index.contains_key(&id) {
                return Err(at.invalid(format!("tree {tid} reaches node {id} twice")));
            }
            let &k = ids
                .get(&id)
                .ok_or_else(|| at.invalid(format!("tree {tid} points to missing node {id}")))?;
            index.insert(id, order.len());
            order.push(id);
            if modes[k] != "LEAF" {
                stack.push(falses[k]);
                stack.push(trues[k]);
            }
        }
        let mut nodes = Vec::with_capacity(order.len());
        for id in &order {
            let k = ids[id];
            let mode = match modes[k].as_str() {
                "LEAF" => None,
                "BRANCH_LEQ" => Some(BranchMode::Leq),
                "BRANCH_LT" => Some(BranchMode::Lt),
                "BRANCH_GTE" => Some(BranchMode::Geq),
                "BRANCH_GT" => Some(BranchMode::Gt),
                "BRANCH_EQ" => Some(BranchMode::Eq),
                "BRANCH_NEQ" => Some(BranchMode::Neq),
                other => return Err(at.invalid(format!("node mode {other}"))),
            };
            nodes.push(match mode {
                None => TreeNode::Leaf {
                    weights: leaf_weights.remove(&(tid, *id)).unwrap_or_default(),
                },
                Some(mode) => TreeNode::Branch {
                    feature: at.usize_of(features[k], "feature id")?,
                    threshold: values[k],
                    mode,
                    true_child: index[&trues[k]],
                    false_child: index[&falses[k]],
                    missing_goes_true: missing.get(k).is_some_and(|&m| m != 0),
                },
            });
        }
        out.push(Tree { nodes });
    }
    if let Some(((t, nid), _)) = leaf_weights.iter().next() {
        return Err(at.invalid(format!(
            "leaf weights for tree {t} node {nid}, which is not a leaf"
        )));
    }
    let ensemble = TreeEnsemble {
        n_features,
        n_targets,
        trees: out,
        base_values,
        aggregate,
        post_transform,
    };
    ensemble.check().map_err(|e| at.invalid(e))?;
    Ok((ensemble, labels))
}

fn constant_node(at: &At<'_>) -> Result<Tensor> {
    let a = at
        .node
        .attribute
        .first()
        .ok_or_else(|| at.invalid("a Constant without a value"))?;
    match a.name.as_str() {
        "value" => {
            let t =
                a.t.as_ref()
                    .ok_or_else(|| at.invalid("`value` holds no tensor"))?;
            load_tensor(t).map_err(|e| at.invalid(e))
        }
        "value_float" => Tensor::new(vec![], vec![f64::from(a.f)]),
        "value_floats" => Tensor::new(
            vec![a.floats.len()],
            a.floats.iter().map(|&f| f64::from(f)).collect(),
        ),
        "value_int" => Tensor::new(vec![], vec![a.i as f64]),
        "value_ints" => Tensor::new(
            vec![a.ints.len()],
            a.ints.iter().map(|&i| i as f64).collect(),
        ),
        other => Err(at.unsupported(format!("a Constant given as `{other}`"))),
    }
}

/// Decodes an initializer or attribute tensor (float, double, int32, int64) to `f64`.
fn load_tensor(t: &TensorProto) -> std::result::Result<Tensor, String> {
    if t.data_location == 1 || !t.external_data.is_empty() {
        return Err(
            "weights in external files are not supported; save the model with its \
                    weights inside"
                .into(),
        );
    }
    let shape = t
        .dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| format!("negative dimension {d}")))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let n = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| format!("shape {shape:?} overflows"))?;
    let raw = &t.raw_data;
    let width = match t.data_type {
        data_type::FLOAT | data_type::INT32 => 4,
        data_type::INT64 | data_type::DOUBLE => 8,
        other => {
            return Err(format!(
                "element type {other} (float, double, int32, int64 supported)"
            ))
        }
    };
    let data: Vec<f64> = if !raw.is_empty() {
        // Check the length before allocating anything of size n.
        if n.checked_mul(width) != Some(raw.len()) {
            return Err(format!(
                "shape {shape:?} needs {n} values, raw data has {} bytes",
                raw.len()
            ));
        }
        match t.data_type {
            data_type::FLOAT => raw
                .chunks_exact(4)
                .map(|c| f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
                .collect(),
            data_type::INT32 => raw
                .chunks_exact(4)
                .map(|c| f64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]])))
                .collect(),
            data_type::DOUBLE => raw
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                .collect(),
            _ => raw
                .chunks_exact(8)
                .map(|c| {
                    i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f64
                })
                .collect(),
        }
    } else {
        match t.data_type {
            data_type::FLOAT => t.float_data.iter().map(|&f| f64::from(f)).collect(),
            data_type::INT32 => t.int32_data.iter().map(|&i| f64::from(i)).collect(),
            data_type::DOUBLE => t.double_data.clone(),
            _ => t.int64_data.iter().map(|&i| i as f64).collect(),
        }
    };
    if data.len() != n {
        return Err(format!(
            "shape {shape:?} needs {n} values, has {}",
            data.len()
        ));
    }
    if let Some(bad) = data.iter().find(|v| !v.is_finite()) {
        return Err(format!("non-finite value {bad}"));
    }
    Tensor::new(shape, data).map_err(|e| e.to_string())
}

/// `[r, s]` → its `[s, r]` transpose.
fn transpose2(t: &Tensor, r: usize, s: usize) -> Result<Tensor> {
    let d = t.data();
    let mut out = vec![0.0; r * s];
    for i in 0..r {
        for j in 0..s {
            out[j * r + i] = d[i * s + j];
        }
    }
    Tensor::new(vec![s, r], out)
}

/// Broadcasts a constant against a value of per-sample `shape` (batch axis first in ONNX,
/// numpy rules), returning it expanded to `shape`. The constant may not enlarge the value
/// nor vary along the batch axis.
fn expand_const(c: &Tensor, shape: &[usize]) -> std::result::Result<Vec<f64>, String> {
    let cs = c.shape();
    // ONNX shape of the value: [batch] + shape.
    let full = shape.len() + 1;
    if cs.len() > full || (cs.len() == full && cs[0] != 1) {
        return Err(format!(
            "a constant of shape {cs:?} would broadcast across the batch of a value of per-sample \
             shape {shape:?}"
        ));
    }
    let cs: &[usize] = if cs.len() == full { &cs[1..] } else { cs };
    let offset = shape.len() - cs.len();
    for (k, &d) in cs.iter().enumerate() {
        if d != 1 && d != shape[offset + k] {
            return Err(format!(
                "a constant of shape {:?} does not broadcast to per-sample shape {shape:?}",
                c.shape()
            ));
        }
    }
    let n: usize = shape.iter().product();
    let mut out = Vec::with_capacity(n);
    let mut idx = vec![0usize; shape.len()];
    for _ in 0..n {
        let mut src = 0usize;
        for (k, &d) in cs.iter().enumerate() {
            let i = if d == 1 { 0 } else { idx[offset + k] };
            src = src * d + i;
        }
        out.push(c.data()[src]);
        for a in (0..shape.len()).rev() {
            idx[a] += 1;
            if idx[a] < shape[a] {
                break;
            }
            idx[a] = 0;
        }
    }
    Ok(out)
}

/// A two-element attribute (`kernel_shape`, `strides`, `dilations`).
fn pair(at: &At<'_>, name: &str, default: Option<[usize; 2]>) -> Result<[usize; 2]> {
    match (at.ints(name), default) {
        (Some([a, b]), _) => {
            let (a, b) = (at.usize_of(*a, name)?, at.usize_of(*b, name)?);
            if a == 0 || b == 0 {
                return Err(at.invalid(format!("{name} has a zero entry")));
            }
            Ok([a, b])
        }
        (Some(v), _) => {
            Err(at.unsupported(format!("{name} {v:?}: only 2-D operators are supported")))
        }
        (None, Some(d)) => Ok(d),
        (None, None) => Err(at.invalid(format!("attribute {name} is missing"))),
    }
}

/// The window of an AveragePool or MaxPool node (no ceil mode, no dilation).
fn pool2d(at: &At<'_>, count_include_pad: bool) -> Result<Pool2d> {
    let kernel = pair(at, "kernel_shape", None)?;
    let stride = pair(at, "strides", Some([1, 1]))?;
    let pads = pads(at)?;
    if at.int("ceil_mode", 0) != 0 {
        return Err(at.unsupported("ceil_mode = 1"));
    }
    if at
        .ints("dilations")
        .is_some_and(|d| d.iter().any(|&v| v != 1))
    {
        return Err(at.unsupported("dilated pooling"));
    }
    Ok(Pool2d {
        kernel,
        stride,
        pads,
        count_include_pad,
    })
}

fn pads(at: &At<'_>) -> Result<[usize; 4]> {
    match at.string("auto_pad", "NOTSET")?.as_str() {
        "NOTSET" | "VALID" => {}
        other => return Err(at.unsupported(format!("auto_pad {other}; give explicit pads"))),
    }
    match at.ints("pads") {
        None => Ok([0; 4]),
        Some([a, b, c, d]) => Ok([
            at.usize_of(*a, "pad")?,
            at.usize_of(*b, "pad")?,
            at.usize_of(*c, "pad")?,
            at.usize_of(*d, "pad")?,
        ]),
        Some(v) => Err(at.unsupported(format!("pads {v:?}: only 2-D operators are supported"))),
    }
}

/// The per-sample shape a Reshape produces from an input of per-sample shape `xs`.
fn reshape_target(at: &At<'_>, xs: &[usize], target: &[f64]) -> Result<Vec<usize>> {
    if at.int("allowzero", 0) != 0 && target.contains(&0.0) {
        return Err(at.unsupported("allowzero = 1 with a zero dimension"));
    }
    let n = element_count(xs)?;
    let Some((&first, rest)) = target.split_first() else {
        return Err(at.unsupported("reshape to a scalar"));
    };
    let minus_ones = target.iter().filter(|&&d| d == -1.0).count();
    // The batch axis must stay first: copied (0), inferred (-1, with the rest known) or 1.
    if !(first == 0.0 || first == 1.0 || (first == -1.0 && minus_ones == 1)) {
        return Err(at.unsupported(format!(
            "target shape {target:?} does not keep the batch axis first"
        )));
    }
    let mut shape = Vec::with_capacity(rest.len());
    let mut infer = None;
    for (k, &d) in rest.iter().enumerate() {
        if d == 0.0 {
            shape.push(*xs.get(k).ok_or_else(|| {
                at.invalid(format!(
                    "0 copies axis {} of a rank-{} value",
                    k + 1,
                    xs.len() + 1
                ))
            })?);
        } else if d == -1.0 {
            infer = Some(k);
            shape.push(1);
        } else if d >= 1.0 && d.fract() == 0.0 {
            shape.push(d as usize);
        } else {
            return Err(at.invalid(format!("target dimension {d}")));
        }
    }
    let known = element_count(&shape)?;
    if let Some(k) = infer {
        if known == 0 || n % known != 0 {
            return Err(at.invalid(format!("cannot reshape {xs:?} to {target:?}")));
        }
        shape[k] = n / known;
    }
    if element_count(&shape)? != n {
        return Err(at.invalid(format!("cannot reshape {xs:?} to {target:?}")));
    }
    Ok(shape)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests;

/// One dense layer to export: `y = W·x + b`.
#[derive(Clone, Debug, PartialEq)]
pub struct DenseLayer {
    /// `outputs × inputs`, row-major.
    pub weight: Vec<f64>,
    /// `outputs`.
    pub bias: Vec<f64>,
}

/// Writes a chain of dense layers with ReLU between them as an ONNX model (opset 13, IR 7):
/// input `x` of shape `[N, input_len]`, one `Gemm` (`transB = 1`) per layer, output `scores`
/// of shape `[N, outputs]`. Weights are stored as 32-bit floats (ONNX's `FLOAT`). Fails if a
/// layer's sizes do not chain or a value is not finite.
pub fn export_dense(input_len: usize, layers: &[DenseLayer], producer: &str) -> Result<Vec<u8>> {
    use proto::{
        Dimension, GraphProto, ModelProto, OperatorSetIdProto, TensorShapeProto, TypeProto,
        TypeProtoTensor, ValueInfoProto,
    };
    if layers.is_empty() || input_len == 0 {
        return Err(MlError::invalid(
            "a model to export needs an input and a layer",
        ));
    }
    let value = |name: &str, width: usize| ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TypeProtoTensor {
                elem_type: data_type::FLOAT,
                shape: Some(TensorShapeProto {
                    dim: vec![
                        Dimension {
                            dim_value: None,
                            dim_param: Some("N".into()),
                        },
                        Dimension {
                            dim_value: Some(width as i64),
                            dim_param: None,
                        },
                    ],
                }),
            }),
        }),
    };
    let tensor = |name: String, dims: Vec<i64>, data: &[f64]| TensorProto {
        dims,
        data_type: data_type::FLOAT,
        float_data: data.iter().map(|&v| v as f32).collect(),
        name,
        ..Default::default()
    };
    let mut nodes = Vec::new();
    let mut inits = Vec::new();
    let mut current = "x".to_string();
    let mut width = input_len;
    for (i, layer) in layers.iter().enumerate() {
        let outputs = layer.bias.len();
        if outputs == 0 || layer.weight.len() != outputs * width {
            return Err(MlError::invalid(format!(
                "layer {i}: {} weights and {outputs} biases do not take {width} inputs",
                layer.weight.len()
            )));
        }
        if layer
            .weight
            .iter()
            .chain(&layer.bias)
            .any(|v| !v.is_finite())
        {
            return Err(MlError::invalid(format!("layer {i}: a non-finite weight")));
        }
        let (w, b) = (format!("fc{i}.weight"), format!("fc{i}.bias"));
        inits.push(tensor(
            w.clone(),
            vec![outputs as i64, width as i64],
            &layer.weight,
        ));
        inits.push(tensor(b.clone(), vec![outputs as i64], &layer.bias));
        let last = i + 1 == layers.len();
        let out = if last {
            "scores".to_string()
        } else {
            format!("fc{i}")
        };
        nodes.push(NodeProto {
            input: vec![current.clone(), w, b],
            output: vec![out.clone()],
            name: format!("fc{i}"),
            op_type: "Gemm".into(),
            domain: String::new(),
            attribute: vec![AttributeProto {
                name: "transB".into(),
                r#type: 2,
                i: 1,
                ..Default::default()
            }],
        });
        current = out;
        if !last {
            let relu = format!("relu{i}");
            nodes.push(NodeProto {
                input: vec![current.clone()],
                output: vec![relu.clone()],
                name: relu.clone(),
                op_type: "Relu".into(),
                domain: String::new(),
                attribute: Vec::new(),
            });
            current = relu;
        }
        width = outputs;
    }
    Ok(ModelProto {
        ir_version: 7,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 13,
        }],
        producer_name: producer.into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(GraphProto {
            node: nodes,
            name: "veil-trained".into(),
            initializer: inits,
            input: vec![value("x", input_len)],
            output: vec![value("scores", width)],
        }),
    }
    .encode_to_vec())
}
