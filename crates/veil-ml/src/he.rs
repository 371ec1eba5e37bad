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

use rayon::prelude::*;
use veil_he::ckks::params::SECURITY_TABLE_128;
use veil_he::ckks::{
    CkksContext, CkksParameters, CkksVector, KeyGenerator, Layout, RotationKeys, VectorContext,
};

use crate::approx::PolyApprox;
use crate::error::{MlError, Result};
use crate::exec::eval;
use crate::ir::{Activation, Graph, Node, Op};

/// How samples are laid out in ciphertexts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Packing {
    /// **Latency**: one sample per ciphertext, its values in the slots (LoLa, TenSEAL). The
    /// smallest query and the lowest latency for one sample; affine layers are
    /// diagonal-method products with rotations (Galois keys).
    #[default]
    Single,
    /// **Throughput**: one ciphertext per input value, up to N/2 samples across the slots
    /// (CryptoNets). An affine layer is a weighted sum of ciphertexts by public constants:
    /// no rotation, no Galois key, and one evaluation serves the whole batch.
    Batch,
}

impl Packing {
    /// `"single"` or `"batch"`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Single => "single",
            Self::Batch => "batch",
        }
    }
}

/// What the compiler is told about the data and the precision wanted.
#[derive(Clone, Debug)]
pub struct CompileOptions {
    /// How samples are packed into ciphertexts.
    pub packing: Packing,
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
    /// Which Galois keys single-packed products use ([`RotationKeys`]): `None` (the
    /// default) lets the compiler choose — [`RotationKeys::Compact`] when a top-level key
    /// switch has four digits or more (one special prime over four or more primes, as at
    /// N = 8192 with depth 3: each top-level key is then as large as the keys of a whole
    /// lower level, and halving their number halves the public context for about 1.5× the
    /// rotations of the first product), [`RotationKeys::Fast`] otherwise.
    pub rotation_keys: Option<RotationKeys>,
}

impl Default for CompileOptions {
    fn default() -> Self {
        Self {
            packing: Packing::Single,
            input_range: (0.0, 1.0),
            calibration: Vec::new(),
            calibration_margin: 2.0,
            precision: 0.125,
            activation_precision: 1e-2,
            max_activation_degree: 31,
            activation_ranges: Vec::new(),
            propagate_activation_ranges: true,
            rotation_keys: None,
        }
    }
}

/// One encrypted step (more kinds may come: match with a wildcard arm).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
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
    /// A tree ensemble's leaf weights: output `ℓ` is `Π σ_k` (or `1 − σ_k` where the flag is
    /// false) over `paths[ℓ]`, the soft decisions on the leaf's path ([`crate::forest`]).
    /// Batch packing only.
    Leaves {
        /// Per leaf: (decision index, whether the true child is taken).
        paths: Vec<Vec<(usize, bool)>>,
    },
}

impl Step {
    /// Input and output lengths of an affine step.
    fn dims(&self) -> Option<(usize, usize)> {
        match self {
            Self::Affine { rows, bias } => Some((rows.len(), bias.len())),
            Self::Square | Self::Polynomial(_) | Self::Leaves { .. } => None,
        }
    }

    /// Levels the step uses.
    fn depth(&self) -> usize {
        match self {
            Self::Affine { .. } | Self::Square => 1,
            Self::Polynomial(p) => p.depth(),
            Self::Leaves { paths } => {
                let longest = paths.iter().map(Vec::len).max().unwrap_or(1);
                let mut d = 0;
                while (1usize << d) < longest {
                    d += 1;
                }
                d
            }
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
    Forest {
        node: String,
        forest: crate::ir::TreeEnsemble,
    },
}

/// The CKKS parameters a plan chose.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
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
    pub(crate) packing: Packing,
    pub(crate) steps: Vec<Step>,
    pub(crate) tail: Vec<ClientOp>,
    pub(crate) input_len: usize,
    pub(crate) output_len: usize,
    pub(crate) bound: f64,
    pub(crate) depth: usize,
    pub(crate) params: ParameterChoice,
    pub(crate) rotation_keys: RotationKeys,
    pub(crate) rotation_steps: Vec<i64>,
}

/// A [`Plan`] whose matrices are encoded for one set of parameters ([`Plan::prepare`]).
pub struct PreparedPlan<'a> {
    plan: &'a Plan,
    matrices: Vec<Option<veil_he::ckks::EncodedMatrix>>,
}

impl std::fmt::Debug for PreparedPlan<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedPlan")
            .field("steps", &self.plan.steps.len())
            .finish_non_exhaustive()
    }
}

impl PreparedPlan<'_> {
    /// [`Plan::evaluate`] with the encoded matrices.
    pub fn evaluate(&self, input: &CkksVector) -> Result<CkksVector> {
        veil_math::par::in_pool(|| self.evaluate_here(input))
    }

    fn evaluate_here(&self, input: &CkksVector) -> Result<CkksVector> {
        let plan = self.plan;
        plan.check_query(input)?;
        let mut v = input.clone();
        for (s, m) in plan.steps.iter().zip(&self.matrices) {
            v = match (s, m) {
                (Step::Affine { bias, .. }, Some(m)) => v.matmul_encoded(m)?.add_plain(bias)?,
                (Step::Square, _) => v.square()?,
                (Step::Polynomial(p), _) => v.polyval(&p.coeffs)?,
                _ => return Err(MlError::Internal("a prepared step without its matrix")),
            };
        }
        Ok(v)
    }
}

/// What the client computes after decryption (it changes no prediction's privacy).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ClientOp {
    Softmax,
    ArgMax { labels: Vec<i64> },
}

impl ClientOp {
    fn op(&self) -> Op {
        match self {
            Self::Softmax => Op::Softmax,
            Self::ArgMax { labels } => Op::ArgMax {
                labels: labels.clone(),
            },
        }
    }
}

/// Encrypted samples as they travel between client and server: one ciphertext per sample
/// ([`Packing::Single`]), or groups of one ciphertext per value, each group holding up to
/// N/2 samples across its slots ([`Packing::Batch`]).
#[derive(Clone, Debug)]
pub struct EncryptedSamples {
    packing: Packing,
    samples: usize,
    vectors: Vec<CkksVector>,
}

/// Magic bytes of [`EncryptedSamples::to_bytes`].
const SAMPLES_MAGIC: &[u8; 8] = b"VEILMLS1";

impl EncryptedSamples {
    /// The packing.
    pub fn packing(&self) -> Packing {
        self.packing
    }

    /// Number of samples.
    pub fn samples(&self) -> usize {
        self.samples
    }

    /// The ciphertexts, in order.
    pub fn vectors(&self) -> &[CkksVector] {
        &self.vectors
    }

    /// A versioned, length-checked encoding: magic, packing, sample count, ciphertext count,
    /// then each ciphertext ([`CkksVector::to_bytes`]) with its length.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = SAMPLES_MAGIC.to_vec();
        out.push(match self.packing {
            Packing::Single => 0,
            Packing::Batch => 1,
        });
        out.extend((self.samples as u64).to_le_bytes());
        out.extend((self.vectors.len() as u64).to_le_bytes());
        for v in &self.vectors {
            let b = v.to_bytes();
            out.extend((b.len() as u64).to_le_bytes());
            out.extend(b);
        }
        out
    }

    /// Reads [`EncryptedSamples::to_bytes`] under `ctx` (every ciphertext is checked against
    /// the context's parameters). Malformed input is an error, never a panic.
    pub fn from_bytes(ctx: &Arc<VectorContext>, bytes: &[u8]) -> Result<Self> {
        let bad = |reason: &str| MlError::Format {
            what: "encrypted samples",
            reason: reason.into(),
        };
        let rest = bytes
            .strip_prefix(SAMPLES_MAGIC.as_slice())
            .ok_or_else(|| bad("not a Veil encrypted-samples file (wrong magic or version)"))?;
        let (&kind, mut rest) = rest.split_first().ok_or_else(|| bad("truncated"))?;
        let packing = match kind {
            0 => Packing::Single,
            1 => Packing::Batch,
            k => return Err(bad(&format!("unknown packing {k}"))),
        };
        let u64_at = |rest: &mut &[u8]| -> Result<u64> {
            let (head, tail) = rest.split_at_checked(8).ok_or_else(|| bad("truncated"))?;
            *rest = tail;
            let mut b = [0u8; 8];
            b.copy_from_slice(head);
            Ok(u64::from_le_bytes(b))
        };
        let samples = usize::try_from(u64_at(&mut rest)?).map_err(|_| bad("sample count"))?;
        let count = usize::try_from(u64_at(&mut rest)?).map_err(|_| bad("ciphertext count"))?;
        // Every ciphertext takes at least its 8-byte length: bound the count before allocating.
        if count == 0 || count > rest.len() / 8 || samples == 0 {
            return Err(bad("no ciphertext, or more than the file can hold"));
        }
        let mut vectors = Vec::with_capacity(count);
        for _ in 0..count {
            let len = usize::try_from(u64_at(&mut rest)?).map_err(|_| bad("length"))?;
            let (head, tail) = rest
                .split_at_checked(len)
                .ok_or_else(|| bad("a ciphertext runs past the end"))?;
            vectors.push(CkksVector::from_bytes(ctx, head)?);
            rest = tail;
        }
        if !rest.is_empty() {
            return Err(bad("trailing bytes"));
        }
        let samples_ok = match packing {
            Packing::Single => samples == count,
            Packing::Batch => vectors.iter().all(|v| v.len() <= ctx.ckks().slots()),
        };
        if !samples_ok {
            return Err(bad("the sample count does not match the ciphertexts"));
        }
        Ok(Self {
            packing,
            samples,
            vectors,
        })
    }
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
        if options.packing == Packing::Single
            && steps.iter().any(|s| matches!(s, Step::Leaves { .. }))
        {
            let node = graph
                .nodes()
                .iter()
                .find(|n| matches!(n.op, Op::TreeEnsemble(_)))
                .map_or_else(|| graph.input().name.clone(), |n| n.name.clone());
            return Err(MlError::UnsupportedUse {
                node,
                op: "TreeEnsemble".into(),
                reason: "tree ensembles run with batch packing (one ciphertext per value): \
                         compile with --pack batch / Packing::Batch"
                    .into(),
            });
        }
        let depth = steps.iter().map(Step::depth).sum::<usize>();
        if depth == 0 {
            return Err(MlError::UnsupportedUse {
                node: graph.input().name.clone(),
                op: "model".into(),
                reason: "the model computes nothing on the input that needs encryption".into(),
            });
        }
        let params = choose_parameters(
            &steps,
            depth,
            bound,
            options.precision,
            options.packing,
            output_len,
        )?;
        // Batch packing rotates nothing: the choice is moot there, recorded as fast.
        let rotation_keys = match options.packing {
            Packing::Batch => RotationKeys::Fast,
            Packing::Single => options
                .rotation_keys
                .unwrap_or_else(|| automatic_rotation_keys(&params)),
        };
        let rotation_steps =
            rotation_steps_for(&steps, options.packing, params.degree / 2, rotation_keys);
        let tail = tail
            .into_iter()
            .map(|n| match n.op {
                Op::Softmax => Ok(ClientOp::Softmax),
                Op::ArgMax { labels } => Ok(ClientOp::ArgMax { labels }),
                _ => Err(MlError::Internal(
                    "a client-side node that is not Softmax/ArgMax",
                )),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            packing: options.packing,
            steps,
            tail,
            input_len,
            output_len,
            bound,
            depth,
            params,
            rotation_keys,
            rotation_steps,
        })
    }

    /// How samples are packed.
    pub fn packing(&self) -> Packing {
        self.packing
    }

    /// Samples one evaluation holds: 1 for [`Packing::Single`], N/2 for [`Packing::Batch`].
    pub fn samples_per_evaluation(&self) -> usize {
        match self.packing {
            Packing::Single => 1,
            Packing::Batch => self.params.degree / 2,
        }
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

    /// The Galois key set its single-packed products use ([`CompileOptions::rotation_keys`]).
    pub fn rotation_keys(&self) -> RotationKeys {
        self.rotation_keys
    }

    /// Rotation steps the plan needs Galois keys for.
    pub fn rotation_steps(&self) -> &[i64] {
        &self.rotation_steps
    }

    /// Each rotation step with the highest ciphertext level it happens at: a product rotates
    /// its input at the input's level, so a key for a later layer only needs that layer's
    /// primes ([`KeyGenerator::galois_keys_at_levels`]), which makes it smaller.
    pub fn rotation_levels(&self) -> Vec<(i64, usize)> {
        if self.packing == Packing::Batch {
            return Vec::new();
        }
        let slots = self.params.degree / 2;
        let mut level = self.depth;
        let mut out: std::collections::BTreeMap<i64, usize> = Default::default();
        for k in 0..self.steps.len() {
            for s in product_rotations(&self.steps, k, slots, self.rotation_keys) {
                let e = out.entry(s).or_insert(level);
                *e = (*e).max(level);
            }
            level = level.saturating_sub(self.steps[k].depth());
        }
        out.into_iter().collect()
    }

    /// The highest level a ciphertext product (x², a polynomial's powers, a forest's product
    /// tree) happens at: the
    /// relinearization key [`Plan::keygen`] makes serves up to it and no higher, which makes
    /// it smaller when the first product comes after a layer or two (0 when there is none).
    pub fn relin_level(&self) -> usize {
        let mut level = self.depth;
        let mut highest = 0;
        for step in &self.steps {
            // Everything but an affine step multiplies ciphertexts (x², a polynomial's
            // powers, a forest's product tree).
            if !matches!(step, Step::Affine { .. }) {
                highest = highest.max(level);
            }
            level = level.saturating_sub(step.depth());
        }
        highest
    }

    /// Checks that `ctx` (a client's public context) was made for this plan: the same CKKS
    /// parameters, and a Galois key at a sufficient level for every rotation the plan performs.
    /// A server calls this once when a client uploads its context, so that evaluation never
    /// fails half-way for want of a key.
    pub fn check_context(&self, ctx: &VectorContext) -> Result<()> {
        let expected = self.parameters()?;
        if ctx.ckks().params().fingerprint() != expected.fingerprint() {
            return Err(MlError::Input {
                reason: format!(
                    "the context was made for other parameters than this plan's (N = {}, \
                     moduli {:?}): make keys for this plan",
                    self.params.degree, self.params.moduli_bits
                ),
            });
        }
        let missing: Vec<i64> = self
            .rotation_levels()
            .into_iter()
            .filter(|&(step, level)| {
                ctx.galois_keys()
                    .get(ctx.ckks().galois_element_for_step(step))
                    .is_none_or(|k| k.level() < level)
            })
            .map(|(step, _)| step)
            .collect();
        if !missing.is_empty() {
            return Err(MlError::Input {
                reason: format!(
                    "the context lacks the Galois keys for rotations {missing:?} that the plan \
                     needs"
                ),
            });
        }
        if ctx.relin_key().level() < self.relin_level() {
            return Err(MlError::Input {
                reason: format!(
                    "the context's relinearization key serves levels up to {}, the plan \
                     multiplies at level {}: make keys for this plan",
                    ctx.relin_key().level(),
                    self.relin_level()
                ),
            });
        }
        Ok(())
    }

    /// The plan with the model's values removed: what a client needs to make keys, encrypt
    /// and decrypt (packing, sizes, parameters, rotations, every step's shape and depth, the
    /// client-side tail) and nothing more. Affine weights and biases, polynomial coefficients
    /// and intervals, and tree decisions are zeroed, keeping their shapes. A server hands
    /// clients this, never the plan it evaluates.
    pub fn without_weights(&self) -> Plan {
        let steps = self
            .steps
            .iter()
            .map(|step| match step {
                Step::Affine { rows, bias } => Step::Affine {
                    rows: rows.iter().map(|r| vec![0.0; r.len()]).collect(),
                    bias: vec![0.0; bias.len()],
                },
                Step::Square => Step::Square,
                Step::Polynomial(p) => Step::Polynomial(PolyApprox {
                    activation: p.activation,
                    node: p.node.clone(),
                    lo: -1.0,
                    hi: 1.0,
                    degree: p.degree,
                    coeffs: vec![0.0; p.coeffs.len()],
                    max_error: 0.0,
                    output_range: (0.0, 0.0),
                }),
                Step::Leaves { paths } => Step::Leaves {
                    paths: paths.iter().map(|p| vec![(0, true); p.len()]).collect(),
                },
            })
            .collect();
        Plan {
            steps,
            ..self.clone()
        }
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
        let rlk = keygen.relin_key_at_level(self.relin_level())?;
        let gk = keygen.galois_keys_at_levels(&self.rotation_levels())?;
        let sk = keygen.secret_key().clone();
        Ok(VectorContext::from_keys(&ctx, pk, Some(sk), rlk, gk)?)
    }

    /// Client side: encrypts one sample — seeded with the secret key when `ctx` holds it
    /// (half the query size), with the public key otherwise.
    pub fn encrypt(&self, ctx: &Arc<VectorContext>, sample: &[f64]) -> Result<CkksVector> {
        self.require_single()?;
        self.check_sample(sample)?;
        self.encrypt_single(ctx, sample)
    }

    /// A single-packed query in the layout the plan's first step takes, seeded when the
    /// context can.
    fn encrypt_single(&self, ctx: &Arc<VectorContext>, sample: &[f64]) -> Result<CkksVector> {
        let seeded = ctx.has_secret_key();
        Ok(match blocked_first(&self.steps) {
            Some((_, cols)) => CkksVector::encrypt_blocked(ctx, sample, cols, seeded)?,
            None => CkksVector::encrypt_replicated(ctx, sample, seeded)?,
        })
    }

    /// A single-packed query has the model's input length and the replicated layout.
    fn check_query(&self, input: &CkksVector) -> Result<()> {
        if input.len() != self.input_len {
            return Err(MlError::Input {
                reason: format!(
                    "an encrypted vector of {} values, the model takes {}",
                    input.len(),
                    self.input_len
                ),
            });
        }
        let expected = query_layout(&self.steps, input.context().ckks().slots())?;
        if input.layout() != expected {
            return Err(MlError::Input {
                reason: format!(
                    "a query laid out {:?}, the plan takes {expected:?} (encrypt it with \
                     Plan::encrypt)",
                    input.layout()
                ),
            });
        }
        Ok(())
    }

    /// Whether the plan carries no model value: every affine step's weights and bias and every
    /// polynomial's coefficients are zero — a client plan ([`Plan::without_weights`]). Its
    /// encrypted evaluation is refused: it would answer every query with the same constant.
    pub fn is_weight_free(&self) -> bool {
        let mut valued = false;
        for step in &self.steps {
            match step {
                Step::Affine { rows, bias } => {
                    valued = true;
                    if rows.iter().flatten().chain(bias).any(|w| *w != 0.0) {
                        return false;
                    }
                }
                Step::Polynomial(p) => {
                    valued = true;
                    if p.coeffs.iter().any(|c| *c != 0.0) {
                        return false;
                    }
                }
                Step::Square | Step::Leaves { .. } => {}
            }
        }
        valued
    }

    /// Refuses to evaluate a client plan on ciphertexts (see [`Plan::is_weight_free`]).
    fn require_weights(&self) -> Result<()> {
        if self.is_weight_free() {
            return Err(MlError::Input {
                reason: "this is a client plan (its weights were removed): only the server's \
                         plan, from `veil ml compile --out`, evaluates queries"
                    .into(),
            });
        }
        Ok(())
    }

    fn require_single(&self) -> Result<()> {
        match self.packing {
            Packing::Single => Ok(()),
            Packing::Batch => Err(MlError::Input {
                reason: "this plan packs a batch of samples across the slots: use \
                         encrypt_samples / evaluate_samples / decrypt_samples"
                    .into(),
            }),
        }
    }

    fn check_sample(&self, sample: &[f64]) -> Result<()> {
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
        Ok(())
    }

    /// Server side: runs the steps on an encrypted sample (needs only public keys).
    pub fn evaluate(&self, input: &CkksVector) -> Result<CkksVector> {
        veil_math::par::in_pool(|| self.evaluate_single(input))
    }

    fn evaluate_single(&self, input: &CkksVector) -> Result<CkksVector> {
        self.require_single()?;
        self.require_weights()?;
        self.check_query(input)?;
        let mut v = input.clone();
        for (k, s) in self.steps.iter().enumerate() {
            v = match s {
                Step::Affine { bias, .. } => {
                    let m = encode_product(
                        input.context(),
                        &self.steps,
                        k,
                        v.level(),
                        self.rotation_keys,
                    )?
                    .ok_or(MlError::Internal("an affine step without its matrix"))?;
                    v.matmul_encoded(&m)?.add_plain(bias)?
                }
                Step::Square => v.square()?,
                Step::Polynomial(p) => v.polyval(&p.coeffs)?,
                Step::Leaves { .. } => {
                    return Err(MlError::Input {
                        reason: "tree ensembles run with batch packing only".into(),
                    })
                }
            };
        }
        Ok(v)
    }

    /// Client side: decrypts with noise flooding (the values may be shared) and applies the
    /// client-side tail (Softmax/ArgMax). Returns the graph output and the flood's standard
    /// deviation.
    pub fn decrypt(&self, result: &CkksVector) -> Result<(Vec<f64>, f64)> {
        self.require_single()?;
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
        for op in &self.tail {
            v = eval(&op.op(), &[v.len()], &[&v])?;
        }
        Ok(v)
    }

    /// Client side: encrypts any number of samples with the plan's packing (one ciphertext
    /// per sample, or one ciphertext per input value for every N/2 samples); seeded with the
    /// secret key (half the bytes) when `ctx` holds it.
    pub fn encrypt_samples(
        &self,
        ctx: &Arc<VectorContext>,
        samples: &[Vec<f64>],
    ) -> Result<EncryptedSamples> {
        if samples.is_empty() {
            return Err(MlError::Input {
                reason: "no sample to encrypt".into(),
            });
        }
        for x in samples {
            self.check_sample(x)?;
        }
        let vectors = match self.packing {
            Packing::Single => samples
                .iter()
                .map(|x| self.encrypt_single(ctx, x))
                .collect::<Result<Vec<_>>>()?,
            Packing::Batch => {
                let per = ctx.ckks().slots();
                let mut out = Vec::new();
                for chunk in samples.chunks(per) {
                    let columns: Vec<Vec<f64>> = (0..self.input_len)
                        .map(|i| chunk.iter().map(|x| x[i]).collect())
                        .collect();
                    out.extend(
                        columns
                            .par_iter()
                            .map(|c| encrypt_query(ctx, c))
                            .collect::<Result<Vec<_>>>()?,
                    );
                }
                out
            }
        };
        Ok(EncryptedSamples {
            packing: self.packing,
            samples: samples.len(),
            vectors,
        })
    }

    /// Server side: encodes the plan's matrices once for `ctx`'s parameters, so that many
    /// single-packed samples are evaluated without re-encoding them (the diagonals of every
    /// affine step, at the level the step runs at).
    pub fn prepare(&self, ctx: &Arc<VectorContext>) -> Result<PreparedPlan<'_>> {
        self.require_single()?;
        self.require_weights()?;
        if ctx.ckks().params().fingerprint() != self.parameters()?.fingerprint() {
            return Err(MlError::Input {
                reason: "the context was made for other parameters than the plan's".into(),
            });
        }
        let mut level = ctx.ckks().max_level();
        let mut matrices = Vec::with_capacity(self.steps.len());
        for k in 0..self.steps.len() {
            matrices.push(encode_product(
                ctx,
                &self.steps,
                k,
                level,
                self.rotation_keys,
            )?);
            level = level.saturating_sub(self.steps[k].depth());
        }
        Ok(PreparedPlan {
            plan: self,
            matrices,
        })
    }

    /// Server side: runs the steps on encrypted samples (public keys only). With
    /// [`Packing::Batch`], the ciphertexts of each group are processed in parallel.
    pub fn evaluate_samples(&self, input: &EncryptedSamples) -> Result<EncryptedSamples> {
        self.require_weights()?;
        self.check_encrypted(input, self.input_len)?;
        let vectors = match self.packing {
            Packing::Single => match input.vectors.first() {
                Some(first) => {
                    let prepared = self.prepare(first.context())?;
                    input
                        .vectors
                        .iter()
                        .map(|v| prepared.evaluate(v))
                        .collect::<Result<Vec<_>>>()?
                }
                None => Vec::new(),
            },
            Packing::Batch => {
                let mut out = Vec::new();
                for group in input.vectors.chunks(self.input_len) {
                    out.extend(self.evaluate_batch(group)?);
                }
                out
            }
        };
        Ok(EncryptedSamples {
            packing: self.packing,
            samples: input.samples,
            vectors,
        })
    }

    /// Client side: flooded decryption of evaluated samples, then the client-side tail.
    /// Returns one output per sample and the largest flood standard deviation.
    pub fn decrypt_samples(&self, result: &EncryptedSamples) -> Result<(Vec<Vec<f64>>, f64)> {
        self.check_encrypted(result, self.output_len)?;
        let mut flood = 0.0f64;
        let mut outputs = Vec::with_capacity(result.samples);
        match self.packing {
            Packing::Single => {
                for v in &result.vectors {
                    let f = v.decrypt_flooded()?;
                    flood = flood.max(f.flood_std);
                    outputs.push(self.finish(f.values)?);
                }
            }
            Packing::Batch => {
                for group in result.vectors.chunks(self.output_len) {
                    let columns = group
                        .par_iter()
                        .map(|v| Ok(v.decrypt_flooded()?))
                        .collect::<Result<Vec<_>>>()?;
                    let n = columns[0].values.len();
                    for c in &columns {
                        flood = flood.max(c.flood_std);
                        if c.values.len() != n {
                            return Err(MlError::Input {
                                reason: "the ciphertexts of a batch hold different counts".into(),
                            });
                        }
                    }
                    for j in 0..n {
                        outputs.push(self.finish(columns.iter().map(|c| c.values[j]).collect())?);
                    }
                }
            }
        }
        if outputs.len() != result.samples {
            return Err(MlError::Input {
                reason: format!(
                    "{} samples decrypted, the answer says {}",
                    outputs.len(),
                    result.samples
                ),
            });
        }
        Ok((outputs, flood))
    }

    /// Checks that encrypted samples fit the plan: packing, ciphertext count and lengths.
    fn check_encrypted(&self, e: &EncryptedSamples, values: usize) -> Result<()> {
        let bad = |reason: String| Err(MlError::Input { reason });
        if e.packing != self.packing {
            return bad(format!(
                "the samples are packed `{}`, the plan `{}`",
                e.packing.name(),
                self.packing.name()
            ));
        }
        match self.packing {
            Packing::Single => {
                if let Some(v) = e.vectors.iter().find(|v| v.len() != values) {
                    return bad(format!(
                        "an encrypted vector of {} values, the plan wants {values}",
                        v.len()
                    ));
                }
            }
            Packing::Batch => {
                let per = self.params.degree / 2;
                let groups = e.samples.div_ceil(per);
                if e.vectors.len() != groups * values {
                    return bad(format!(
                        "{} ciphertexts for {} samples, the plan wants {} ({values} per group \
                         of up to {per} samples)",
                        e.vectors.len(),
                        e.samples,
                        groups * values
                    ));
                }
                for (g, group) in e.vectors.chunks(values).enumerate() {
                    let n = (e.samples - g * per).min(per);
                    if group.iter().any(|v| v.len() != n) {
                        return bad(format!(
                            "group {g} does not hold {n} samples in every ciphertext"
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// One batch group: `input_len` ciphertexts in, `output_len` out.
    fn evaluate_batch(&self, group: &[CkksVector]) -> Result<Vec<CkksVector>> {
        let mut v: Vec<CkksVector> = group.to_vec();
        for step in &self.steps {
            v = match step {
                Step::Affine { rows, bias } => {
                    let refs: Vec<&CkksVector> = v.iter().collect();
                    (0..bias.len())
                        .into_par_iter()
                        .map(|j| {
                            let (w, x): (Vec<f64>, Vec<&CkksVector>) = rows
                                .iter()
                                .zip(&refs)
                                .filter(|(r, _)| r[j] != 0.0)
                                .map(|(r, &x)| (r[j], x))
                                .unzip();
                            if x.is_empty() {
                                // A constant output: 0·x + b.
                                return Ok(CkksVector::linear_combination(
                                    &refs[..1],
                                    &[0.0],
                                    bias[j],
                                )?);
                            }
                            Ok(CkksVector::linear_combination(&x, &w, bias[j])?)
                        })
                        .collect::<Result<Vec<_>>>()?
                }
                Step::Square => v
                    .par_iter()
                    .map(|x| Ok(x.square()?))
                    .collect::<Result<Vec<_>>>()?,
                Step::Polynomial(p) => v
                    .par_iter()
                    .map(|x| Ok(x.polyval(&p.coeffs)?))
                    .collect::<Result<Vec<_>>>()?,
                Step::Leaves { paths } => {
                    // 1 − σ once per decision that some path takes on its false side.
                    let complements: Vec<Option<CkksVector>> = (0..v.len())
                        .into_par_iter()
                        .map(|k| {
                            if paths.iter().flatten().any(|&(j, pos)| j == k && !pos) {
                                Ok(Some(v[k].neg()?.add_scalar(1.0)?))
                            } else {
                                Ok(None)
                            }
                        })
                        .collect::<Result<Vec<_>>>()?;
                    paths
                        .par_iter()
                        .map(|path| {
                            let mut terms: Vec<CkksVector> = path
                                .iter()
                                .map(|&(k, pos)| {
                                    let c = if pos {
                                        Some(&v[k])
                                    } else {
                                        complements[k].as_ref()
                                    };
                                    c.cloned().ok_or(MlError::Internal("a missing complement"))
                                })
                                .collect::<Result<Vec<_>>>()?;
                            // Balanced product tree: ⌈log2 len⌉ levels.
                            while terms.len() > 1 {
                                let mut next = Vec::with_capacity(terms.len().div_ceil(2));
                                let mut it = terms.chunks(2);
                                for pair in &mut it {
                                    next.push(match pair {
                                        [a, b] => a.mul(b)?,
                                        [a] => a.clone(),
                                        _ => return Err(MlError::Internal("empty chunk")),
                                    });
                                }
                                terms = next;
                            }
                            terms
                                .pop()
                                .ok_or(MlError::Internal("a leaf without a path"))
                        })
                        .collect::<Result<Vec<_>>>()?
                }
            };
        }
        Ok(v)
    }
}

/// A query ciphertext: seeded (secret key, half the bytes) when the context can, public-key
/// otherwise.
fn encrypt_query(ctx: &Arc<VectorContext>, values: &[f64]) -> Result<CkksVector> {
    Ok(if ctx.has_secret_key() {
        CkksVector::encrypt_seeded(ctx, values)?
    } else {
        CkksVector::encrypt(ctx, values)?
    })
}

/// The shape of the first step when it is a product: its input is then laid out blocked by
/// the client ([`CkksVector::encrypt_blocked`]), which does its baby steps in the clear.
fn blocked_first(steps: &[Step]) -> Option<(usize, usize)> {
    match steps.first() {
        Some(s @ Step::Affine { .. }) => s.dims(),
        _ => None,
    }
}

/// The layout a single-packed query has: blocked for a first product, replicated otherwise.
fn query_layout(steps: &[Step], slots: usize) -> Result<Layout> {
    Ok(match blocked_first(steps) {
        Some((n, m)) => CkksVector::blocked_layout(slots, n, m)?,
        None => Layout::Replicated,
    })
}

/// How a single-packed plan multiplies at an affine step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Product {
    /// The first step: the client did the baby steps ([`CkksVector::encode_matrix_blocked`]).
    Blocked,
    /// Replicated in, replicated out ([`CkksVector::encode_matrix_replicated`]).
    Replicated,
}

/// The product step `k` of a single-packed plan uses (`None` if it is not an affine step).
fn product_kind(steps: &[Step], k: usize) -> Option<Product> {
    steps.get(k)?.dims()?;
    Some(if k == 0 {
        Product::Blocked
    } else {
        Product::Replicated
    })
}

/// The rotations step `k` makes (at its input's level).
fn product_rotations(steps: &[Step], k: usize, slots: usize, keys: RotationKeys) -> Vec<i64> {
    let Some((i, o)) = steps.get(k).and_then(Step::dims) else {
        return Vec::new();
    };
    let rotations = match product_kind(steps, k) {
        Some(Product::Blocked) => CkksVector::matmul_blocked_rotation_steps_with(slots, i, o, keys),
        Some(Product::Replicated) | None => {
            CkksVector::matmul_replicated_rotation_steps_with(i, o, keys)
        }
    };
    rotations.into_iter().filter(|&s| s != 0).collect()
}

/// Step `k`'s matrix encoded at `level` for the product it uses (`None` if not affine).
fn encode_product(
    ctx: &Arc<VectorContext>,
    steps: &[Step],
    k: usize,
    level: usize,
    keys: RotationKeys,
) -> Result<Option<veil_he::ckks::EncodedMatrix>> {
    let Some(Step::Affine { rows, .. }) = steps.get(k) else {
        return Ok(None);
    };
    let m = match product_kind(steps, k) {
        Some(Product::Blocked) => CkksVector::encode_matrix_blocked(ctx, rows, level)?,
        Some(Product::Replicated) | None => CkksVector::encode_matrix_replicated(ctx, rows, level)?,
    };
    Ok(Some(m.with_rotation_keys(keys)))
}

/// The compiler's choice of [`RotationKeys`] for `params` ([`CompileOptions::rotation_keys`]):
/// compact when a top-level key switch has four digits or more.
fn automatic_rotation_keys(params: &ParameterChoice) -> RotationKeys {
    let primes = params
        .moduli_bits
        .len()
        .saturating_sub(params.special_primes);
    let digits = primes.div_ceil(params.special_primes.max(1));
    if digits >= 4 {
        RotationKeys::Compact
    } else {
        RotationKeys::Fast
    }
}

/// The Galois keys a plan's products need with single packing (none with batch packing):
/// the blocked product's giant steps and block sums for a first product, the replicated
/// diagonal method's rotations for the others.
fn rotation_steps_for(
    steps: &[Step],
    packing: Packing,
    slots: usize,
    keys: RotationKeys,
) -> Vec<i64> {
    if packing == Packing::Batch {
        return Vec::new();
    }
    let mut rotation_steps: Vec<i64> = (0..steps.len())
        .flat_map(|k| product_rotations(steps, k, slots, keys))
        .collect();
    rotation_steps.sort_unstable();
    rotation_steps.dedup();
    rotation_steps
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
    // Values the client holds after decryption: the encrypted output and the tail's values.
    let mut client_values = Vec::new();
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
                    client_values.push(n.inputs[0]);
                }
                client_values.push(n.output);
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
            Op::MaxPool(_) => {
                return Err(unsupported(
                    n,
                    "a maximum is not a polynomial: under HE use AveragePool (MPC runs \
                     MaxPool exactly)"
                        .into(),
                ))
            }
            Op::TreeEnsemble(t) => {
                use crate::ir::PostTransform;
                if let Some(s) = flush(graph, &mut segment, segment_in)? {
                    steps.push(Pending::Ready(s));
                }
                steps.push(Pending::Forest {
                    node: n.name.clone(),
                    forest: t.clone(),
                });
                match t.post_transform {
                    PostTransform::None => {}
                    // Softmax keeps the argmax: the client applies it after decryption.
                    PostTransform::Softmax => {
                        let mut s = n.clone();
                        s.op = Op::Softmax;
                        tail.push(s);
                        encrypted_len = out_len;
                        client_values.push(n.output);
                    }
                    PostTransform::Logistic | PostTransform::SoftmaxZero => {
                        return Err(unsupported(
                            n,
                            "the LOGISTIC and SOFTMAX_ZERO post-transforms are not supported \
                             under encryption"
                                .into(),
                        ))
                    }
                }
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
    // The plan returns the last node's output; other outputs are allowed when the client
    // holds them anyway (the scores before a final ArgMax, as skl2onnx classifiers write).
    let outputs = graph.outputs();
    if !outputs.contains(&current)
        || outputs
            .iter()
            .any(|o| *o != current && !client_values.contains(o))
    {
        return Err(MlError::UnsupportedUse {
            node: graph.input().name.clone(),
            op: "model".into(),
            reason: format!(
                "the HE backend computes the last node's output (and values the client holds \
                 after decryption); the model has {} outputs elsewhere in the graph",
                outputs.len()
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
        Step::Leaves { paths } => crate::forest::leaves_plain(paths, x),
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
        let new_steps = match p {
            Pending::Ready(s) => vec![s],
            Pending::Forest { node, forest } => crate::forest::expand(
                &node,
                &forest,
                &iv,
                options.activation_precision,
                options.max_activation_degree,
            )?,
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
                vec![Step::Polynomial(approx)]
            }
        };
        for step in new_steps {
            // Intervals are kept in both modes: a forest's comparisons are normalized by them.
            iv = interval_step(&step, &iv);
            if calibrated {
                for v in vals.iter_mut() {
                    *v = apply_plain(&step, v);
                    m = v.iter().fold(m, |a, b| a.max(b.abs()));
                }
            } else {
                m = iv.iter().fold(m, |a, &(l, h)| a.max(l.abs()).max(h.abs()));
            }
            steps.push(step);
        }
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
        Step::Leaves { paths } => paths
            .iter()
            .map(|p| {
                let m = p
                    .iter()
                    .map(|&(k, pos)| {
                        let (l, h) = iv.get(k).copied().unwrap_or((0.0, 1.0));
                        let (l, h) = if pos { (l, h) } else { (1.0 - h, 1.0 - l) };
                        l.abs().max(h.abs())
                    })
                    .product::<f64>();
                (-m, m)
            })
            .collect(),
    }
}

/// The key-switching special primes for ciphertext primes `q_bits` under `max_bits`: as many
/// as fit, up to [`MAX_SPECIAL_PRIMES`], each at least as large as every ciphertext prime and
/// together at least as large as each key-switching digit (`dnum = ⌈q/K⌉` digits). More special
/// primes mean fewer digits: a key at level `ℓ` holds `⌈(ℓ+1)/α⌉·(ℓ+1+K)` limbs instead of
/// `(ℓ+1)·(ℓ+2)`, and key switching takes fewer transforms. Returns `(K, bits of each)`.
fn special_primes_for(q_bits: &[u32], max_bits: u32) -> Option<(usize, u32)> {
    let q_total: u32 = q_bits.iter().sum();
    let largest = q_bits.iter().copied().max().unwrap_or(0);
    (1..=MAX_SPECIAL_PRIMES.min(q_bits.len()))
        .rev()
        .find_map(|k| {
            let dnum = q_bits.len().div_ceil(k);
            let alpha = q_bits.len().div_ceil(dnum);
            let digit_bits = q_bits
                .chunks(alpha)
                .map(|c| c.iter().sum::<u32>())
                .max()
                .unwrap_or(0);
            let each = digit_bits.div_ceil(k as u32).max(largest);
            (each <= 60 && q_total + each * k as u32 <= max_bits).then_some((k, each))
        })
}

/// The most special primes [`special_primes_for`] uses.
const MAX_SPECIAL_PRIMES: usize = 3;

/// Chooses N, the chain and the scale for `depth` levels, values up to `bound` and output
/// error `precision`: the smallest 128-bit-secure ring degree whose slots fit the packing.
fn choose_parameters(
    steps: &[Step],
    depth: usize,
    bound: f64,
    precision: f64,
    packing: Packing,
    output_len: usize,
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
    let mut last_error = None;
    for &(degree, max_bits) in SECURITY_TABLE_128.iter() {
        let slots = degree / 2;
        // The flood is proportional to the error's l2 norm over the values one ciphertext
        // releases: a batch ciphertext releases N/2 of them, a single one `output_len`.
        let released_bits = match packing {
            Packing::Single => 0.0,
            Packing::Batch => 0.5 * (slots as f64 / output_len.max(1) as f64).log2().max(0.0),
        };
        let scale_bits = ((bound.max(1.0) / precision).log2()
            + NOISE_OFFSET_BITS
            + amplification.log2().ceil()
            + released_bits)
            .ceil();
        let scale_bits = scale_bits.clamp(20.0, 59.0) as u32;
        let first = scale_bits + bound_bits + FIRST_PRIME_HEADROOM_BITS;
        if first > 60 {
            return Err(MlError::UnsupportedUse {
                node: "model".into(),
                op: "compile".into(),
                reason: format!(
                    "values up to {bound:.3e} at precision {precision:e} need a {first}-bit \
                     first prime (at most 60): ask for less precision or rescale the model"
                ),
            });
        }
        let mut moduli_bits = vec![first];
        moduli_bits.extend(std::iter::repeat_n(scale_bits, depth));
        let Some((special_primes, special_bits)) = special_primes_for(&moduli_bits, max_bits)
        else {
            last_error = Some((scale_bits, moduli_bits.iter().sum::<u32>() + first));
            continue;
        };
        moduli_bits.extend(std::iter::repeat_n(special_bits, special_primes));
        let total_bits: u32 = moduli_bits.iter().sum();
        last_error = Some((scale_bits, total_bits));
        let fits = packing == Packing::Batch
            || steps
                .iter()
                .filter_map(Step::dims)
                .all(|(n, m)| n.next_power_of_two().max(m.next_power_of_two()) <= slots);
        if fits {
            return Ok(ParameterChoice {
                degree,
                moduli_bits,
                special_primes,
                scale_bits,
                total_bits,
            });
        }
    }
    let (scale_bits, total_bits) = last_error.unwrap_or((0, 0));
    Err(MlError::UnsupportedUse {
        node: "model".into(),
        op: "compile".into(),
        reason: format!(
            "depth {depth} at a 2^{scale_bits} scale needs {total_bits} modulus bits or more \
             slots than any 128-bit-secure ring degree offers"
        ),
    })
}

/// The on-disk form of a [`Plan`] (JSON; `f64` values round-trip exactly).
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanFile {
    format: String,
    version: u32,
    packing: Packing,
    input_len: usize,
    output_len: usize,
    value_bound: f64,
    depth: usize,
    parameters: ParameterChoice,
    /// Whether the products use [`RotationKeys::Compact`] (absent in plans saved before
    /// the choice existed: fast).
    #[serde(default)]
    compact_rotation_keys: bool,
    rotation_steps: Vec<i64>,
    steps: Vec<Step>,
    client_side: Vec<ClientOp>,
}

/// `format` of a saved plan.
const PLAN_FORMAT: &str = "veil-ml-plan";
/// Current version of the saved-plan format.
const PLAN_VERSION: u32 = 1;
/// Largest number of values a saved plan's steps may hold (bounds memory on load).
const PLAN_MAX_VALUES: usize = 1 << 26;

impl Plan {
    /// A versioned encoding of the plan (JSON): what the model owner compiles once and the
    /// server reloads with [`Plan::from_bytes`]. It holds the model's weights.
    pub fn to_bytes(&self) -> Vec<u8> {
        let file = PlanFile {
            format: PLAN_FORMAT.into(),
            version: PLAN_VERSION,
            packing: self.packing,
            input_len: self.input_len,
            output_len: self.output_len,
            value_bound: self.bound,
            depth: self.depth,
            parameters: self.params.clone(),
            compact_rotation_keys: self.rotation_keys == RotationKeys::Compact,
            rotation_steps: self.rotation_steps.clone(),
            steps: self.steps.clone(),
            client_side: self.tail.clone(),
        };
        // Serializing plain data with finite floats cannot fail; an empty vector would be
        // refused by `from_bytes`.
        serde_json::to_vec(&file).unwrap_or_default()
    }

    /// Reads a saved plan and validates it as untrusted input: format and version; every
    /// step's shape against the next; finite weights; the depth, the Galois keys and the
    /// 128-bit security of the parameters recomputed, not believed.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let bad = |reason: String| MlError::Format {
            what: "plan",
            reason,
        };
        let file: PlanFile = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        if file.format != PLAN_FORMAT {
            return Err(bad(format!(
                "format `{}`, not `{PLAN_FORMAT}`",
                file.format
            )));
        }
        if file.version != PLAN_VERSION {
            return Err(bad(format!(
                "version {} (this build reads version {PLAN_VERSION})",
                file.version
            )));
        }
        if file.steps.is_empty() || file.input_len == 0 || file.output_len == 0 {
            return Err(bad("no step, or an empty input or output".into()));
        }
        let mut len = file.input_len;
        let mut values = 0usize;
        for (i, step) in file.steps.iter().enumerate() {
            match step {
                Step::Affine { rows, bias } => {
                    if rows.len() != len {
                        return Err(bad(format!(
                            "step {i} takes {} values, the previous step gives {len}",
                            rows.len()
                        )));
                    }
                    if bias.is_empty() || rows.iter().any(|r| r.len() != bias.len()) {
                        return Err(bad(format!("step {i}: rows of different lengths")));
                    }
                    values = values.saturating_add(rows.len().saturating_mul(bias.len()));
                    if values > PLAN_MAX_VALUES {
                        return Err(bad("too many weights".into()));
                    }
                    if rows.iter().flatten().chain(bias).any(|v| !v.is_finite()) {
                        return Err(bad(format!("step {i}: a non-finite weight")));
                    }
                    len = bias.len();
                }
                Step::Square => {}
                Step::Leaves { paths } => {
                    if file.packing != Packing::Batch {
                        return Err(bad(format!("step {i}: leaves need batch packing")));
                    }
                    if paths.is_empty()
                        || paths.iter().any(|p| {
                            p.is_empty() || p.len() > 64 || p.iter().any(|&(k, _)| k >= len)
                        })
                    {
                        return Err(bad(format!("step {i}: a malformed leaf path")));
                    }
                    values = values.saturating_add(paths.iter().map(Vec::len).sum());
                    if values > PLAN_MAX_VALUES {
                        return Err(bad("too many weights".into()));
                    }
                    len = paths.len();
                }
                Step::Polynomial(p) => {
                    if p.coeffs.is_empty()
                        || p.degree + 1 != p.coeffs.len()
                        || p.coeffs.iter().any(|c| !c.is_finite())
                        || !(p.lo.is_finite() && p.hi.is_finite() && p.lo < p.hi)
                    {
                        return Err(bad(format!(
                            "step {i}: a malformed polynomial for `{}`",
                            p.node
                        )));
                    }
                }
            }
        }
        if len != file.output_len {
            return Err(bad(format!(
                "the steps give {len} values, the plan says {}",
                file.output_len
            )));
        }
        let depth = file.steps.iter().map(Step::depth).sum::<usize>();
        if depth != file.depth {
            return Err(bad(format!(
                "depth {} recorded, the steps use {depth}",
                file.depth
            )));
        }
        let p = &file.parameters;
        if !(1..=MAX_SPECIAL_PRIMES).contains(&p.special_primes)
            || p.moduli_bits.len() != depth + 1 + p.special_primes
        {
            return Err(bad(format!(
                "{} moduli with {} special for depth {depth} (the compiler makes the first \
                 prime, one per level, then 1 to {MAX_SPECIAL_PRIMES} special primes)",
                p.moduli_bits.len(),
                p.special_primes
            )));
        }
        if p.total_bits != p.moduli_bits.iter().sum::<u32>() {
            return Err(bad("the total modulus size does not add up".into()));
        }
        if !(file.value_bound.is_finite() && file.value_bound > 0.0) {
            return Err(bad(format!("value bound {}", file.value_bound)));
        }
        let rotation_keys = if file.compact_rotation_keys {
            RotationKeys::Compact
        } else {
            RotationKeys::Fast
        };
        let rotation_steps = rotation_steps_for(
            &file.steps,
            file.packing,
            file.parameters.degree / 2,
            rotation_keys,
        );
        if rotation_steps != file.rotation_steps {
            return Err(bad("the Galois keys do not match the steps".into()));
        }
        for op in &file.client_side {
            if let ClientOp::ArgMax { labels } = op {
                if labels.len() != file.output_len {
                    return Err(bad("ArgMax labels do not match the outputs".into()));
                }
            }
        }
        let plan = Self {
            packing: file.packing,
            steps: file.steps,
            tail: file.client_side,
            input_len: file.input_len,
            output_len: file.output_len,
            bound: file.value_bound,
            depth,
            params: file.parameters,
            rotation_keys,
            rotation_steps,
        };
        // Validates the parameters, 128-bit security included.
        plan.parameters()?;
        Ok(plan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every choice keeps each special prime at least as large as every ciphertext prime, the
    /// special primes together at least as large as each digit, and the total under the bound.
    #[test]
    fn special_primes_cover_the_digits_within_the_security_bound() {
        for (q, max_bits) in [
            (vec![53, 42, 42, 42, 42, 42], 438),
            (vec![49, 40, 40, 40], 218),
            (vec![45, 38], 218),
            (vec![58, 47, 47, 47, 47, 47, 47, 47, 47], 881),
            (vec![50], 109),
        ] {
            let Some((k, each)) = special_primes_for(&q, max_bits) else {
                panic!("no special primes for {q:?} under {max_bits}");
            };
            assert!((1..=MAX_SPECIAL_PRIMES).contains(&k));
            assert!(each <= 60 && each >= *q.iter().max().unwrap());
            let dnum = q.len().div_ceil(k);
            let alpha = q.len().div_ceil(dnum);
            for digit in q.chunks(alpha) {
                assert!(
                    each * k as u32 >= digit.iter().sum::<u32>(),
                    "{q:?}: K = {k}"
                );
            }
            assert!(q.iter().sum::<u32>() + each * k as u32 <= max_bits);
        }
        // The depth-5 chain at N = 16384 gets three (two digits instead of six).
        assert_eq!(
            special_primes_for(&[53, 42, 42, 42, 42, 42], 438),
            Some((3, 53))
        );
        // Nothing fits: the caller tries the next ring degree.
        assert_eq!(special_primes_for(&[60, 60], 109), None);
    }
}
