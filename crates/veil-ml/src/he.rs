//! The CKKS backend, latency packing: one input per ciphertext.
//!
//! [`Plan::compile`] lowers a [`Graph`] that is a chain of layers into alternating
//! **affine steps** and **squares**:
//!
//! - every run of affine operators between two non-linearities (Linear, Conv2d, Affine,
//!   AveragePool, GlobalAveragePool, Reshape, Transpose) is composed into one matrix and one
//!   bias, read off the plaintext executor on basis vectors, so a convolution followed by a
//!   flatten and a dense layer costs one matrix–vector product and one level;
//! - a matrix–vector product is a diagonal-method product with baby-step/giant-step and
//!   hoisted baby rotations ([`CkksVector::matmul`]); all-zero diagonals cost nothing;
//! - `x·x` is one ciphertext product (one level);
//! - Relu, Sigmoid, Tanh and Softplus become polynomials ([`PolyApprox`], see "Activations"
//!   below), evaluated with [`CkksVector::polyval`] in `⌈log2(d + 1)⌉` levels;
//! - trailing Softmax/ArgMax run on the client after decryption.
//!
//! Parameters follow from the plan: the multiplicative depth, a bound on every intermediate
//! value (measured on calibration data with a safety margin, or propagated as intervals from
//! the declared input range) and the requested output precision give the scale, the first
//! prime and the chain; the smallest ring degree whose 128-bit bound (HomomorphicEncryption.org
//! table) and slot count fit is chosen. Only the Galois keys the products use are generated.
//!
//! The client keeps the secret key ([`Plan::keygen`]), encrypts ([`Plan::encrypt`]) and
//! decrypts with noise flooding ([`Plan::decrypt`]); the server holds the plan and the public
//! context only ([`VectorContext::make_public`]) and runs [`Plan::evaluate`].
//!
//! # Activations
//!
//! An activation is replaced by the Chebyshev interpolant of the lowest degree (at most
//! [`CompileOptions::max_activation_degree`]) whose largest error on a dense grid of its input
//! interval is within [`CompileOptions::activation_precision`] (module [`crate::approx`]).
//! The interval is, in this order: the one declared for the node in
//! [`CompileOptions::activation_ranges`]; the range measured on the calibration data, widened
//! about its centre by [`CompileOptions::calibration_margin`]; the union of the per-element
//! intervals propagated from [`CompileOptions::input_range`]. With
//! [`CompileOptions::propagate_activation_ranges`] off, only declared ranges count and an
//! activation without one is refused with an error naming the node.
//!
//! The polynomial is written in `t = (2x − lo − hi)/(hi − lo) ∈ [-1, 1]`; the map is folded
//! into the affine step before the activation (an identity step is inserted when the
//! activation follows a square or another activation, or reads the input), so it costs no
//! level of its own. The plan's depth counts `⌈log2(d + 1)⌉` levels per activation, the scale
//! gets `log2 ‖coefficients‖₂` extra bits for the noise the polynomial amplifies, and the
//! bounds analysis continues from the polynomial's range on the interval. [`Plan::activations`]
//! reports each node's interval, degree and measured error.
//!
//! **Inputs outside the interval are not detected**: a polynomial diverges outside the range
//! it was fitted on, so such an input gets a meaningless value (interval propagation cannot
//! leave the range; calibrated ranges can, which is why they get a margin).
//!
//! [`Plan::evaluate_plain`] runs the same steps (the same polynomials) in `f64`: comparing it
//! with the encrypted result isolates the CKKS error, and comparing it with the exact model
//! isolates the approximation error.

use std::sync::Arc;

use veil_he::ckks::params::SECURITY_TABLE_128;
use veil_he::ckks::{CkksContext, CkksParameters, CkksVector, KeyGenerator, VectorContext};

use crate::approx::PolyApprox;
use crate::error::{MlError, Result};
use crate::exec::eval;
use crate::ir::{Activation, Graph, Node, Op};

/// What the compiler is told about the data and the precision wanted.
#[derive(Clone, Debug)]
pub struct CompileOptions {
    /// Every input element lies in `[lo, hi]` (used for interval bounds when there is no
    /// calibration data, and to check calibration samples).
    pub input_range: (f64, f64),
    /// Representative inputs; when given, value bounds are measured on them (times
    /// [`CompileOptions::calibration_margin`]) instead of propagated as intervals.
    pub calibration: Vec<Vec<f64>>,
    /// Safety factor on calibrated bounds.
    pub calibration_margin: f64,
    /// Target standard deviation of the error of the decrypted outputs, noise flooding
    /// included (the largest error over many values is a few times this).
    pub precision: f64,
    /// Largest error allowed of each activation's polynomial on its input interval (absolute,
    /// in the activation's output units, measured on a dense grid).
    pub activation_precision: f64,
    /// Highest polynomial degree an activation may use (depth `⌈log2(d + 1)⌉`).
    pub max_activation_degree: usize,
    /// Declared input intervals of activation nodes, by node name; they take precedence over
    /// measured or propagated ranges.
    pub activation_ranges: Vec<(String, (f64, f64))>,
    /// When true (the default), an activation without a declared range gets one from the
    /// calibration data or from intervals propagated from `input_range`; when false, such an
    /// activation is an error (use it when no input range was actually declared).
    pub propagate_activation_ranges: bool,
}

impl Default for CompileOptions {
    fn default() -> Self {
        Self {
            input_range: (0.0, 1.0),
            calibration: Vec::new(),
            calibration_margin: 2.0,
            precision: 0.125,
            activation_precision: 1e-2,
            max_activation_degree: 31,
            activation_ranges: Vec::new(),
            propagate_activation_ranges: true,
        }
    }
}

/// One encrypted step.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// `y = x·M + b` with `M` given as `in` rows of `out` values (the layout of
    /// [`CkksVector::matmul`]).
    Affine {
        /// `in` rows of `out` values.
        rows: Vec<Vec<f64>>,
        /// `out` values.
        bias: Vec<f64>,
    },
    /// `x·x` element-wise.
    Square,
    /// An activation's polynomial, element-wise, on the mapped input `t` the previous
    /// (affine) step produces: `Σ coeffs[j]·t^j` ([`PolyApprox::coeffs`]).
    Polynomial(PolyApprox),
}

impl Step {
    /// Input and output lengths of an affine step.
    fn dims(&self) -> Option<(usize, usize)> {
        match self {
            Self::Affine { rows, bias } => Some((rows.len(), bias.len())),
            Self::Square | Self::Polynomial(_) => None,
        }
    }

    /// Levels the step uses.
    fn depth(&self) -> usize {
        match self {
            Self::Affine { .. } | Self::Square => 1,
            Self::Polynomial(p) => p.depth(),
        }
    }
}

/// A step of the lowered chain before bounds are known.
enum Pending {
    Ready(Step),
    Activation {
        node: String,
        activation: Activation,
    },
}

/// The CKKS parameters a plan chose.
#[derive(Clone, Debug, PartialEq)]
pub struct ParameterChoice {
    /// Ring degree N (N/2 slots).
    pub degree: usize,
    /// Bit sizes of the ciphertext primes then the special prime(s).
    pub moduli_bits: Vec<u32>,
    /// Number of special primes (at the end of `moduli_bits`).
    pub special_primes: usize,
    /// Scale `2^scale_bits`.
    pub scale_bits: u32,
    /// `log2(QP)`, held to the 128-bit bound for `degree`.
    pub total_bits: u32,
}

/// A compiled model: the steps, the parameters and the keys they need.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    steps: Vec<Step>,
    tail: Vec<Node>,
    input_len: usize,
    output_len: usize,
    bound: f64,
    depth: usize,
    params: ParameterChoice,
    rotation_steps: Vec<i64>,
}

/// Measured noise model: the decrypted outputs' error (noise flooding included, at the
/// default 30-bit statistical security) has a standard deviation of about
/// `bound · 2^{NOISE_OFFSET_BITS − scale_bits}` on the digits models (logistic regression at
/// N = 8192, scale 2^35: σ = 0.49 for bound 18.2; MLP, scale 2^38: σ = 0.26 for bound 121).
/// The flood dominates: it is `2^15 · 2√len` times the ciphertext's own error.
const NOISE_OFFSET_BITS: f64 = 30.0;
/// Bits kept above the largest value in the first prime (the bound already has its margin).
const FIRST_PRIME_HEADROOM_BITS: u32 = 2;

impl Plan {
    /// Lowers `graph` and chooses parameters.
    pub fn compile(graph: &Graph, options: &CompileOptions) -> Result<Self> {
        let (pending, tail, input_len, output_len) = lower(graph)?;
        let (lo, hi) = options.input_range;
        if !(lo.is_finite() && hi.is_finite() && lo <= hi) {
            return Err(MlError::Input {
                reason: format!("input range [{lo}, {hi}]"),
            });
        }
        if !(options.precision.is_finite() && options.precision > 0.0) {
            return Err(MlError::Input {
                reason: format!("precision {}", options.precision),
            });
        }
        for x in &options.calibration {
            if x.len() != input_len {
                return Err(MlError::Input {
                    reason: format!(
                        "a calibration sample has {} values, the model takes {input_len}",
                        x.len()
                    ),
                });
            }
        }
        let (steps, bound) = resolve(pending, input_len, options)?;
        let depth = steps.iter().map(Step::depth).sum::<usize>();
        if depth == 0 {
            return Err(MlError::UnsupportedUse {
                node: graph.input().name.clone(),
                op: "model".into(),
                reason: "the model computes nothing on the input that needs encryption".into(),
            });
        }
        let params = choose_parameters(&steps, depth, bound, options.precision)?;
        let mut rotation_steps: Vec<i64> = steps
            .iter()
            .filter_map(Step::dims)
            .flat_map(|(i, o)| CkksVector::matmul_rotation_steps(i, o))
            .filter(|&s| s != 0)
            .collect();
        rotation_steps.sort_unstable();
        rotation_steps.dedup();
        Ok(Self {
            steps,
            tail,
            input_len,
            output_len,
            bound,
            depth,
            params,
            rotation_steps,
        })
    }

    /// The encrypted steps.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// The polynomial that replaced each activation, in order: node, interval, degree,
    /// coefficients and measured approximation error.
    pub fn activations(&self) -> Vec<&PolyApprox> {
        self.steps
            .iter()
            .filter_map(|s| match s {
                Step::Polynomial(p) => Some(p),
                _ => None,
            })
            .collect()
    }

    /// Multiplicative depth (levels used).
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// The bound on intermediate values the parameters were sized for.
    pub fn value_bound(&self) -> f64 {
        self.bound
    }

    /// The chosen parameters.
    pub fn parameter_choice(&self) -> &ParameterChoice {
        &self.params
    }

    /// Rotation steps the plan needs Galois keys for.
    pub fn rotation_steps(&self) -> &[i64] {
        &self.rotation_steps
    }

    /// Number of input values.
    pub fn input_len(&self) -> usize {
        self.input_len
    }

    /// Number of encrypted output values (before the client-side tail).
    pub fn output_len(&self) -> usize {
        self.output_len
    }

    /// The validated `veil-he` parameters.
    pub fn parameters(&self) -> Result<CkksParameters> {
        Ok(CkksParameters::builder()
            .degree(self.params.degree)
            .moduli_bits(&self.params.moduli_bits)
            .special_primes(self.params.special_primes)
            .scale_bits(f64::from(self.params.scale_bits))
            .build()?)
    }

    /// Client side: a fresh secret key and the public, relinearization and Galois keys the
    /// plan needs. Give the server [`VectorContext::make_public`] of the result.
    pub fn keygen(&self) -> Result<Arc<VectorContext>> {
        let ctx = CkksContext::new(self.parameters()?)?;
        let mut keygen = KeyGenerator::new(&ctx)?;
        let pk = keygen.public_key()?;
        let rlk = keygen.relin_key()?;
        let gk = keygen.galois_keys(&self.rotation_steps)?;
        let sk = keygen.secret_key().clone();
        Ok(VectorContext::from_keys(&ctx, pk, Some(sk), rlk, gk)?)
    }

    /// Client side: encrypts one sample.
    pub fn encrypt(&self, ctx: &Arc<VectorContext>, sample: &[f64]) -> Result<CkksVector> {
        if sample.len() != self.input_len {
            return Err(MlError::Input {
                reason: format!(
                    "{} values, the model takes {}",
                    sample.len(),
                    self.input_len
                ),
            });
        }
        if let Some(bad) = sample.iter().find(|v| !v.is_finite()) {
            return Err(MlError::Input {
                reason: format!("non-finite input {bad}"),
            });
        }
        Ok(CkksVector::encrypt(ctx, sample)?)
    }

    /// Server side: runs the steps on an encrypted sample (needs only public keys).
    pub fn evaluate(&self, input: &CkksVector) -> Result<CkksVector> {
        if input.len() != self.input_len {
            return Err(MlError::Input {
                reason: format!(
                    "an encrypted vector of {} values, the model takes {}",
                    input.len(),
                    self.input_len
                ),
            });
        }
        let mut v = input.clone();
        for s in &self.steps {
            v = match s {
                Step::Affine { rows, bias } => v.matmul(rows)?.add_plain(bias)?,
                Step::Square => v.square()?,
                Step::Polynomial(p) => v.polyval(&p.coeffs)?,
            };
        }
        Ok(v)
    }

    /// Client side: decrypts with noise flooding (the values may be shared) and applies the
    /// client-side tail (Softmax/ArgMax). Returns the graph output and the flood's standard
    /// deviation.
    pub fn decrypt(&self, result: &CkksVector) -> Result<(Vec<f64>, f64)> {
        let flooded = result.decrypt_flooded()?;
        let out = self.finish(flooded.values)?;
        Ok((out, flooded.flood_std))
    }

    /// The plan evaluated in plaintext: what [`Plan::evaluate`] then [`Plan::decrypt`]
    /// compute, without encryption.
    pub fn evaluate_plain(&self, sample: &[f64]) -> Result<Vec<f64>> {
        if sample.len() != self.input_len {
            return Err(MlError::Input {
                reason: format!(
                    "{} values, the model takes {}",
                    sample.len(),
                    self.input_len
                ),
            });
        }
        let mut v = sample.to_vec();
        for s in &self.steps {
            v = apply_plain(s, &v);
        }
        self.finish(v)
    }

    fn finish(&self, mut v: Vec<f64>) -> Result<Vec<f64>> {
        if v.len() != self.output_len {
            return Err(MlError::Internal("decrypted output of the wrong length"));
        }
        for n in &self.tail {
            v = eval(&n.op, &[v.len()], &[&v])?;
        }
        Ok(v)
    }
}

/// Splits the graph into encrypted steps and a client-side tail.
#[allow(clippy::type_complexity)]
fn lower(graph: &Graph) -> Result<(Vec<Pending>, Vec<Node>, usize, usize)> {
    let unsupported = |n: &Node, reason: String| MlError::UnsupportedUse {
        node: n.name.clone(),
        op: n.op.name().into(),
        reason,
    };
    let input_len = graph.input().shape.iter().product::<usize>();
    let mut steps = Vec::new();
    let mut tail: Vec<Node> = Vec::new();
    let mut segment: Vec<&Node> = Vec::new();
    let mut current = graph.input_id();
    let mut len = input_len;
    let mut encrypted_len = input_len;
    // Length of the value the pending affine segment starts from.
    let mut segment_in = input_len;
    for n in graph.nodes() {
        if n.inputs.as_slice() != [current] {
            return Err(unsupported(
                n,
                "the latency backend runs chains of layers; this node reads another branch".into(),
            ));
        }
        current = n.output;
        let out_len = graph
            .value(n.output)
            .map(|v| v.shape.iter().product::<usize>())
            .ok_or(MlError::Internal("node output is not a value"))?;
        let client_side = matches!(n.op, Op::Softmax | Op::ArgMax { .. });
        if !tail.is_empty() && !client_side {
            return Err(unsupported(
                n,
                "only Softmax/ArgMax may follow a Softmax/ArgMax (they run on the client)".into(),
            ));
        }
        match &n.op {
            Op::Linear { .. }
            | Op::Conv2d(_)
            | Op::Affine { .. }
            | Op::AveragePool(_)
            | Op::GlobalAveragePool
            | Op::Reshape { .. }
            | Op::Transpose { .. } => {
                if segment.is_empty() {
                    segment_in = len;
                }
                segment.push(n);
            }
            Op::Square => {
                if let Some(s) = flush(graph, &mut segment, segment_in)? {
                    steps.push(Pending::Ready(s));
                }
                steps.push(Pending::Ready(Step::Square));
            }
            Op::Softmax | Op::ArgMax { .. } => {
                if tail.is_empty() {
                    if let Some(s) = flush(graph, &mut segment, segment_in)? {
                        steps.push(Pending::Ready(s));
                    }
                    encrypted_len = len;
                }
                tail.push(n.clone());
            }
            Op::Activation(a) => {
                // The map to [-1, 1] is folded into the affine step before the polynomial;
                // insert an identity one when there is none.
                match flush(graph, &mut segment, segment_in)? {
                    Some(s) => steps.push(Pending::Ready(s)),
                    None => {
                        if !matches!(steps.last(), Some(Pending::Ready(Step::Affine { .. }))) {
                            let rows = (0..len)
                                .map(|i| (0..len).map(|j| f64::from(u8::from(i == j))).collect())
                                .collect();
                            steps.push(Pending::Ready(Step::Affine {
                                rows,
                                bias: vec![0.0; len],
                            }));
                        }
                    }
                }
                steps.push(Pending::Activation {
                    node: n.name.clone(),
                    activation: *a,
                });
            }
            Op::Add | Op::Sub | Op::Mul => {
                return Err(unsupported(
                    n,
                    "operations on two values are not supported yet".into(),
                ))
            }
            Op::TreeEnsemble(_) => {
                return Err(unsupported(
                    n,
                    "tree ensembles are not supported by the latency backend yet".into(),
                ))
            }
        }
        len = out_len;
    }
    if tail.is_empty() {
        if let Some(s) = flush(graph, &mut segment, segment_in)? {
            steps.push(Pending::Ready(s));
        }
        encrypted_len = len;
    }
    if graph.outputs() != [current] {
        return Err(MlError::UnsupportedUse {
            node: graph.input().name.clone(),
            op: "model".into(),
            reason: format!(
                "the latency backend computes one output, the last node's; the model has {}",
                graph.outputs().len()
            ),
        });
    }
    if steps.is_empty() {
        return Err(MlError::UnsupportedUse {
            node: graph.input().name.clone(),
            op: "model".into(),
            reason: "nothing to evaluate under encryption".into(),
        });
    }
    Ok((steps, tail, input_len, encrypted_len))
}

/// Composes a run of affine nodes into one matrix (read off the executor on basis vectors).
fn flush(graph: &Graph, segment: &mut Vec<&Node>, in_len: usize) -> Result<Option<Step>> {
    if segment.is_empty() {
        return Ok(None);
    }
    let run = |x: Vec<f64>| -> Result<Vec<f64>> {
        let mut v = x;
        for n in segment.iter() {
            let shape = graph
                .value(n.inputs[0])
                .map(|v| v.shape.clone())
                .ok_or(MlError::Internal("node input is not a value"))?;
            v = eval(&n.op, &shape, &[&v])?;
        }
        Ok(v)
    };
    let bias = run(vec![0.0; in_len])?;
    let mut rows = Vec::with_capacity(in_len);
    let mut e = vec![0.0; in_len];
    for i in 0..in_len {
        e[i] = 1.0;
        let y = run(e.clone())?;
        e[i] = 0.0;
        rows.push(
            y.iter()
                .zip(&bias)
                .map(|(a, b)| a - b)
                .collect::<Vec<f64>>(),
        );
    }
    segment.clear();
    // A pure layout change of a flat vector (Reshape) is the identity: no level spent.
    let identity = bias.len() == in_len
        && bias.iter().all(|&b| b == 0.0)
        && rows.iter().enumerate().all(|(i, r)| {
            r.iter()
                .enumerate()
                .all(|(j, &v)| v == f64::from(u8::from(i == j)))
        });
    if identity {
        return Ok(None);
    }
    Ok(Some(Step::Affine { rows, bias }))
}

fn apply_plain(step: &Step, x: &[f64]) -> Vec<f64> {
    match step {
        Step::Affine { rows, bias } => {
            let mut y = bias.clone();
            for (xi, row) in x.iter().zip(rows) {
                for (yj, m) in y.iter_mut().zip(row) {
                    *yj += xi * m;
                }
            }
            y
        }
        Step::Square => x.iter().map(|v| v * v).collect(),
        Step::Polynomial(p) => x.iter().map(|&t| p.eval_mapped(t)).collect(),
    }
}

/// Fits each activation's polynomial on its input interval, folds the map to `[-1, 1]` into
/// the affine step before it, and bounds every intermediate value (calibration values times
/// the margin, or intervals propagated from the input range). Returns the steps and the
/// bound.
fn resolve(
    pending: Vec<Pending>,
    input_len: usize,
    options: &CompileOptions,
) -> Result<(Vec<Step>, f64)> {
    let (lo, hi) = options.input_range;
    let calibrated = !options.calibration.is_empty();
    let margin = options.calibration_margin.max(1.0);
    let mut iv = vec![(lo, hi); input_len];
    let mut vals: Vec<Vec<f64>> = options.calibration.clone();
    let mut m = lo.abs().max(hi.abs());
    let mut steps: Vec<Step> = Vec::with_capacity(pending.len());
    for p in pending {
        let step = match p {
            Pending::Ready(s) => s,
            Pending::Activation { node, activation } => {
                let declared = options
                    .activation_ranges
                    .iter()
                    .find(|(n, _)| *n == node)
                    .map(|(_, r)| *r);
                let (mut a, mut b) = match declared {
                    Some(r) => r,
                    None if !options.propagate_activation_ranges => {
                        return Err(MlError::UnsupportedUse {
                            node,
                            op: activation.name().into(),
                            reason: "the input range of this activation is unknown: declare it \
                                     for the node, or declare the model's input range or give \
                                     calibration data and let the compiler derive it"
                                .into(),
                        })
                    }
                    None if calibrated => {
                        let (mn, mx) = vals
                            .iter()
                            .flatten()
                            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
                                (a.min(v), b.max(v))
                            });
                        let (c, h) = ((mn + mx) / 2.0, (mx - mn) / 2.0 * margin);
                        (c - h, c + h)
                    }
                    None => iv
                        .iter()
                        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &(l, h)| {
                            (a.min(l), b.max(h))
                        }),
                };
                if !(a.is_finite() && b.is_finite() && a <= b) {
                    return Err(MlError::Input {
                        reason: format!("input range [{a}, {b}] of activation node `{node}`"),
                    });
                }
                if b - a < 1e-6 {
                    a -= 0.5;
                    b += 0.5;
                }
                let approx = PolyApprox::for_precision(
                    activation,
                    &node,
                    a,
                    b,
                    options.activation_precision,
                    options.max_activation_degree,
                )?;
                let (f, o) = approx.input_map();
                match steps.last_mut() {
                    Some(Step::Affine { rows, bias }) => {
                        rows.iter_mut().flatten().for_each(|v| *v *= f);
                        bias.iter_mut().for_each(|v| *v = *v * f + o);
                    }
                    _ => return Err(MlError::Internal("an activation without an affine step")),
                }
                // The analysis continues on the mapped values.
                iv.iter_mut()
                    .for_each(|(l, h)| (*l, *h) = (*l * f + o, *h * f + o));
                vals.iter_mut().flatten().for_each(|v| *v = *v * f + o);
                Step::Polynomial(approx)
            }
        };
        if calibrated {
            for v in vals.iter_mut() {
                *v = apply_plain(&step, v);
                m = v.iter().fold(m, |a, b| a.max(b.abs()));
            }
        } else {
            iv = interval_step(&step, &iv);
            m = iv.iter().fold(m, |a, &(l, h)| a.max(l.abs()).max(h.abs()));
        }
        steps.push(step);
    }
    Ok((steps, if calibrated { m * margin } else { m }))
}

/// The intervals a step maps per-element intervals to.
fn interval_step(step: &Step, iv: &[(f64, f64)]) -> Vec<(f64, f64)> {
    match step {
        Step::Affine { rows, bias } => {
            let mut out: Vec<(f64, f64)> = bias.iter().map(|&b| (b, b)).collect();
            for (&(l, h), row) in iv.iter().zip(rows) {
                for (o, &w) in out.iter_mut().zip(row) {
                    let (a, b) = (w * l, w * h);
                    o.0 += a.min(b);
                    o.1 += a.max(b);
                }
            }
            out
        }
        Step::Square => iv
            .iter()
            .map(|&(l, h)| {
                if l >= 0.0 {
                    (l * l, h * h)
                } else if h <= 0.0 {
                    (h * h, l * l)
                } else {
                    (0.0, (l * l).max(h * h))
                }
            })
            .collect(),
        // Inputs within the fitted interval (t in [-1, 1]) give values in the polynomial's
        // range there.
        Step::Polynomial(p) => vec![p.output_range; iv.len()],
    }
}

/// Chooses N, the chain and the scale for `depth` levels, values up to `bound` and output
/// error `precision`.
fn choose_parameters(
    steps: &[Step],
    depth: usize,
    bound: f64,
    precision: f64,
) -> Result<ParameterChoice> {
    let bound_bits = bound.max(1.0).log2().ceil() as u32;
    // A polynomial amplifies the (independent) noise of its powers by about the l2 norm of
    // its coefficients.
    let amplification = steps
        .iter()
        .filter_map(|s| match s {
            Step::Polynomial(p) => Some(p.coefficient_norm()),
            _ => None,
        })
        .fold(1.0f64, f64::max);
    let scale_bits =
        ((bound.max(1.0) / precision).log2() + NOISE_OFFSET_BITS + amplification.log2().ceil())
            .ceil();
    let scale_bits = scale_bits.clamp(20.0, 59.0) as u32;
    let first = scale_bits + bound_bits + FIRST_PRIME_HEADROOM_BITS;
    if first > 60 {
        return Err(MlError::UnsupportedUse {
            node: "model".into(),
            op: "compile".into(),
            reason: format!(
                "values up to {bound:.3e} at precision {precision:e} need a {first}-bit first \
                 prime (at most 60): ask for less precision or rescale the model"
            ),
        });
    }
    let mut moduli_bits = vec![first];
    moduli_bits.extend(std::iter::repeat_n(scale_bits, depth));
    // One special prime at least as large as every ciphertext prime (one prime per digit).
    moduli_bits.push(first.max(scale_bits));
    let total_bits: u32 = moduli_bits.iter().sum();
    for &(degree, max_bits) in SECURITY_TABLE_128.iter() {
        if total_bits > max_bits {
            continue;
        }
        let slots = degree / 2;
        let fits = steps.iter().filter_map(Step::dims).all(|(n, m)| {
            let needed = n + m - 1;
            let g1 = (n as f64).sqrt().ceil().max(1.0) as usize;
            let g2 = n.div_ceil(g1);
            let mut filled = n;
            while filled < needed {
                filled *= 2;
            }
            filled <= slots && g1 * g2 + m <= slots
        });
        if fits {
            return Ok(ParameterChoice {
                degree,
                moduli_bits,
                special_primes: 1,
                scale_bits,
                total_bits,
            });
        }
    }
    Err(MlError::UnsupportedUse {
        node: "model".into(),
        op: "compile".into(),
        reason: format!(
            "depth {depth} at a 2^{scale_bits} scale needs {total_bits} modulus bits or more \
             slots than any 128-bit-secure ring degree offers"
        ),
    })
}
