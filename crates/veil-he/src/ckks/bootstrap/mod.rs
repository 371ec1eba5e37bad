//! CKKS bootstrapping: refreshes a ciphertext that has run out of levels.
//!
//! A ciphertext at level 0 decrypts to `m` modulo `q_0` only. Bootstrapping evaluates the
//! decryption homomorphically (Cheon–Han–Kim–Kim–Song 2018, with Chen–Chillotti–Song's
//! improvements):
//!
//! 1. **ModRaise**: the level-0 parts are lifted (centred) to the whole chain `q_0 … q_L`;
//!    the ciphertext now decrypts to `m + q_0·I` for a small integer polynomial `I`
//!    (`|I_i| ≤ K`, [`Bootstrapper::bound`]).
//! 2. **SubSum** (sparse packing, `n < N/2` slots): `log2(N/2n)` rotations project onto the
//!    subring `Z[X^{N/2n}]` the `n` replicated slots live in.
//! 3. **CoeffsToSlots**: the linear map `w = U^H z / n` puts the coefficients in the slots
//!    (`w_c = p_c + i·p_{c+n}`, in bit-reversed order), factored into
//!    [`BootstrapConfig::cts_levels`] sparse matrices ([`dft`]: the special FFT's butterfly
//!    stages, merged), each applied by baby-step giant-step with hoisted rotations; then the
//!    real and imaginary parts are split with one conjugation.
//! 4. **EvalMod**: `x mod 1 ≈ sin(2πx) / 2π`, evaluated as a Taylor polynomial of
//!    `cos(2π(x − 1/4) / 2^r)` followed by `r` double-angle steps `y ← 2y² − 1`.
//! 5. **SlotsToCoeffs**: the map `z = U·w` back, in [`BootstrapConfig::stc_levels`] levels.
//!
//! What it costs in levels is [`BootstrapConfig::depth`]; what is left for computation is
//! [`Bootstrapper::levels_after`]. The messages must be small compared with `q_0 / Δ`:
//! values of magnitude ≤ 1 with the usual 60-bit `q_0` and 50-bit scale (the sine's
//! curvature costs `≈ 2·log2(q_0/Δ) − 2.7` bits of precision at `|x| = 1`).
//!
//! **Limits of this version** (stated, not hidden): the secret key is the scheme's dense
//! uniform ternary one (no sparse-secret encapsulation yet), so `K` grows as `√N` (92 at
//! N = 4096, 364 at N = 2^16) and EvalMod needs `r ≈ log2(2πK/2.3)` double angles (8 and 10).

use std::sync::Arc;

use num_complex::Complex64;
use veil_math::RnsPoly;

pub mod bench;
mod dft;

pub(crate) use dft::pow5_mod;

use crate::ckks::ciphertext::{Ciphertext, Plaintext};
use crate::ckks::context::CkksContext;
use crate::ckks::evaluator::Evaluator;
use crate::ckks::keys::{EncapsulationKeys, SwitchingKey};
use crate::ckks::keyswitch;
use crate::ckks::params::{CkksParameters, SecurityLevel};
use crate::ckks::vector::{CkksVector, Layout, VectorContext};
use crate::error::{HeError, Result};

/// Taylor coefficients are cut once the remainder bound falls below this.
const TAYLOR_TOLERANCE: f64 = 1e-17;

/// How far the EvalMod polynomial's argument may reach, `|2πK / 2^r|` (radians).
const MAX_ARGUMENT: f64 = 2.3;

/// The ephemeral secret's default Hamming weight (as Lattigo's and the paper's parameters).
const DEFAULT_EPHEMERAL_WEIGHT: usize = 32;

/// Standard deviations of `I`'s coefficients covered by the bound `K`.
const SIGMAS: f64 = 6.0;

/// One factor of a linear map, encoded for baby-step giant-step (see [`dft::Plan`]).
struct EncodedStage {
    plan: dft::Plan,
    /// For every giant step `g`, the diagonals `(i, D)` pre-rotated right by `g·baby·unit`.
    giants: Vec<(i64, Vec<(usize, Plaintext)>)>,
}

/// How to bootstrap: the slot count and the levels of the two linear maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootstrapConfig {
    /// Slots refreshed: a power of two ≤ N/2 (the period of a replicated vector, or N/2).
    pub slots: usize,
    /// Levels (factors) of CoeffsToSlots: more levels, fewer diagonals and rotations.
    pub cts_levels: usize,
    /// Levels (factors) of SlotsToCoeffs.
    pub stc_levels: usize,
    /// Sparse-secret encapsulation: the Hamming weight `h` of the ephemeral secret the
    /// ciphertext is switched to before ModRaise (`None`: raise under the dense secret, with
    /// the much larger `K` that implies). Default 32.
    pub ephemeral_weight: Option<usize>,
}

impl BootstrapConfig {
    /// `slots` slots, each map in `⌈log2(slots)/4⌉` levels (4 for N/2 = 2^15 slots, as
    /// OpenFHE's default level budget).
    pub fn new(slots: usize) -> Self {
        let levels = (slots.max(2).trailing_zeros() as usize).div_ceil(4).max(1);
        Self {
            slots,
            cts_levels: levels,
            stc_levels: levels,
            ephemeral_weight: Some(DEFAULT_EPHEMERAL_WEIGHT),
        }
    }

    /// Sets the ephemeral secret's weight (`None`: no encapsulation).
    pub fn ephemeral_weight(mut self, weight: Option<usize>) -> Self {
        self.ephemeral_weight = weight;
        self
    }

    /// Sets the levels of the two maps (each at least 1, at most `log2(slots)`).
    pub fn levels(mut self, cts: usize, stc: usize) -> Self {
        self.cts_levels = cts;
        self.stc_levels = stc;
        self
    }

    fn stages(&self) -> usize {
        self.slots.trailing_zeros() as usize
    }

    fn check(&self, total_slots: usize) -> Result<()> {
        let n = self.slots;
        if !n.is_power_of_two() || n > total_slots || n < 2 {
            return Err(HeError::InvalidParameters(format!(
                "bootstrapping slots must be a power of two between 2 and N/2 = {total_slots}, not {n}"
            )));
        }
        for (name, l) in [
            ("CoeffsToSlots", self.cts_levels),
            ("SlotsToCoeffs", self.stc_levels),
        ] {
            if l == 0 || l > self.stages() {
                return Err(HeError::InvalidParameters(format!(
                    "{name} in {l} levels: between 1 and log2(slots) = {}",
                    self.stages()
                )));
            }
        }
        Ok(())
    }

    /// The bound `K` on `|x| = |m/q_0 + I|`: with an ephemeral secret of weight `h`,
    /// `x = (c_0 + c_1·s')/q_0` is a sum of `h + 1` terms of magnitude ≤ 1/2, so
    /// `K = (h+1)/2` holds always (no failure probability); with the dense secret,
    /// [`dense_secret_bound`].
    fn bound(&self, degree: usize) -> f64 {
        match self.ephemeral_weight {
            Some(h) => (h as f64 + 1.0) / 2.0,
            None => dense_secret_bound(degree),
        }
    }

    /// The EvalMod shape for ring degree `degree`: `(K, r, Taylor degree)`.
    fn evalmod_shape(&self, degree: usize) -> (f64, usize, usize) {
        let bound = self.bound(degree);
        let r = double_angles_for(bound);
        let a = 2.0 * std::f64::consts::PI * bound / f64::from(1u32 << r);
        // The argument reaches a little past `a` (|x| up to K plus the message).
        (bound, r, taylor_degree_for(a * 1.01))
    }

    /// Levels one bootstrapping consumes at ring degree `degree`: CoeffsToSlots, one
    /// scale adjustment, the sine and cosine polynomials, the double angles, one constant,
    /// SlotsToCoeffs. A chain needs this many levels above `q_0` plus those to compute with.
    pub fn depth(&self, degree: usize) -> usize {
        let (_, r, d) = self.evalmod_shape(degree);
        self.cts_levels + 1 + ceil_log2(d + 1) + r + 1 + self.stc_levels
    }

    /// The levels EvalMod starts at and SlotsToCoeffs starts at, on a chain of `max_level`.
    fn levels_on(&self, degree: usize, max_level: usize) -> Result<(usize, usize)> {
        let depth = self.depth(degree);
        if depth > max_level {
            return Err(HeError::OutOfLevels {
                needed: depth,
                left: max_level,
            });
        }
        let (_, r, d) = self.evalmod_shape(degree);
        let evalmod = max_level - self.cts_levels - 1;
        Ok((evalmod, evalmod - ceil_log2(d + 1) - r - 1))
    }

    /// Every rotation step with the highest level it happens at (CoeffsToSlots factor `t` at
    /// `L − t`, SubSum at `L`, SlotsToCoeffs factor `t` below EvalMod), and the level of the
    /// conjugation: keys made for those levels only
    /// ([`KeyGenerator::galois_keys_at_levels_with_progress`](crate::ckks::KeyGenerator::galois_keys_at_levels_with_progress))
    /// are smaller, the more so the lower they serve.
    pub fn key_levels(&self, ckks: &CkksContext) -> Result<(Vec<(i64, usize)>, usize)> {
        let total = ckks.slots();
        self.check(total)?;
        let max_level = ckks.max_level();
        let (evalmod, stc) = self.levels_on(ckks.degree(), max_level)?;
        let n = self.slots;
        let mut pairs = Vec::new();
        for (t, m) in dft::coeffs_to_slots(n, self.cts_levels).iter().enumerate() {
            pairs.extend(
                dft::Plan::of(m)
                    .steps()
                    .into_iter()
                    .map(|s| (s, max_level - t)),
            );
        }
        for (t, m) in dft::slots_to_coeffs(n, self.stc_levels).iter().enumerate() {
            pairs.extend(dft::Plan::of(m).steps().into_iter().map(|s| (s, stc - t)));
        }
        let mut s = n;
        while s < total {
            pairs.push((s as i64, max_level));
            s *= 2;
        }
        Ok((pairs, evalmod))
    }

    /// A 128-bit secure chain for bootstrapping at ring degree `degree` (2^16, or 2^15 for
    /// small configurations): `q_0` of 60 bits, 50-bit primes (scale 2^50) for the
    /// bootstrapping's [`depth`](Self::depth) and as many more levels as the 128-bit bound
    /// leaves, and special primes `P` of 5 × 60 bits at 2^16 (so that `q_0·P` stays within the
    /// encapsulation estimate) or 2 × 60 bits otherwise. Errors if the depth does not fit.
    pub fn secure_parameters(&self, degree: usize) -> Result<CkksParameters> {
        let special: u32 = if degree >= 65536 { 5 } else { 2 };
        let max_bits = crate::ckks::params::SECURITY_TABLE_128
            .iter()
            .find(|(d, _)| *d == degree)
            .map(|&(_, b)| b)
            .ok_or_else(|| {
                HeError::InvalidParameters(format!("no 128-bit bound known for N = {degree}"))
            })?;
        let fixed = 60 + 60 * special;
        let levels = max_bits.saturating_sub(fixed) / 50;
        let depth = self.depth(degree);
        if (levels as usize) < depth + 1 {
            return Err(HeError::InvalidParameters(format!(
                "bootstrapping {} slots takes {depth} levels at N = {degree}; a 128-bit chain there \
                 holds {levels} (N = 65536 is needed)",
                self.slots
            )));
        }
        let mut bits = vec![60u32];
        bits.extend(std::iter::repeat_n(50u32, levels as usize));
        bits.extend(std::iter::repeat_n(60u32, special as usize));
        CkksParameters::builder()
            .degree(degree)
            .moduli_bits(&bits)
            .special_primes(special as usize)
            .scale_bits(50.0)
            .build()
    }

    /// The rotation steps bootstrapping needs (besides conjugation): the baby and giant
    /// steps of every factor of the two maps and the SubSum steps `slots·2^j`. Generate the
    /// keys with [`VectorContextBuilder::rotation_steps`](crate::ckks::vector::VectorContextBuilder::rotation_steps).
    pub fn rotation_steps(&self, total_slots: usize) -> Vec<i64> {
        let n = self.slots;
        let mut steps = Vec::new();
        if self.check(total_slots).is_ok() {
            for m in dft::coeffs_to_slots(n, self.cts_levels)
                .iter()
                .chain(&dft::slots_to_coeffs(n, self.stc_levels))
            {
                steps.extend(dft::Plan::of(m).steps());
            }
            let mut s = n;
            while s < total_slots {
                steps.push(s as i64);
                s *= 2;
            }
        }
        steps.sort_unstable();
        steps.dedup();
        steps
    }
}

/// What a bootstrapping did: levels and timing of each phase.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BootstrapReport {
    /// Level of the refreshed ciphertext.
    pub level_after: usize,
    /// Seconds per phase: ModRaise + SubSum, CoeffsToSlots, EvalMod, SlotsToCoeffs.
    pub seconds: [f64; 4],
}

/// Bootstraps [`CkksVector`]s (and raw ciphertexts) of one context with `n` slots.
///
/// The context's Galois keys must hold [`BootstrapConfig::rotation_steps`] and the conjugation
/// key (build it with [`VectorContextBuilder::rotation_steps`](crate::ckks::vector::VectorContextBuilder::rotation_steps)
/// and [`conjugation(true)`](crate::ckks::vector::VectorContextBuilder::conjugation)).
pub struct Bootstrapper {
    ctx: Arc<VectorContext>,
    slots: usize,
    bound: f64,
    double_angles: usize,
    taylor_degree: usize,
    cts: Vec<EncodedStage>,
    stc: Vec<EncodedStage>,
    config: BootstrapConfig,
    encapsulation: Option<EncapsulationKeys>,
    /// Level the EvalMod polynomial starts at, and the StC map's level.
    evalmod_level: usize,
    stc_level: usize,
}

impl std::fmt::Debug for Bootstrapper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bootstrapper")
            .field("slots", &self.slots)
            .field("bound", &self.bound)
            .field("double_angles", &self.double_angles)
            .field("taylor_degree", &self.taylor_degree)
            .field("depth", &self.depth())
            .finish_non_exhaustive()
    }
}

fn ceil_log2(x: usize) -> usize {
    x.next_power_of_two().trailing_zeros() as usize
}

/// The bound `K` on `|m/q_0 + I|` for the dense ternary secret of degree `degree`: `I`'s
/// coefficients are sums of ~2N/3 products of a uniform residue in `[−1/2, 1/2)` with ±1, of
/// standard deviation `√(N/18)`; `K` covers [`SIGMAS`] of them plus the rounding.
fn dense_secret_bound(degree: usize) -> f64 {
    (SIGMAS * (degree as f64 / 18.0).sqrt() + 1.0).ceil()
}

/// Smallest `r` with `2πK / 2^r ≤ MAX_ARGUMENT`.
fn double_angles_for(bound: f64) -> usize {
    let mut r = 0;
    while 2.0 * std::f64::consts::PI * bound / f64::from(1u32 << r) > MAX_ARGUMENT {
        r += 1;
    }
    r
}

/// Smallest Taylor degree `d` with `a^{d+1} / (d+1)! ≤ TAYLOR_TOLERANCE`.
fn taylor_degree_for(a: f64) -> usize {
    let mut term = a;
    let mut d = 0usize;
    while term > TAYLOR_TOLERANCE {
        d += 1;
        term *= a / (d + 1) as f64;
    }
    d
}

impl Bootstrapper {
    /// Prepares bootstrapping (see [`BootstrapConfig`]): checks the keys and the levels and
    /// encodes the factors of the two linear maps.
    pub fn new(ctx: &Arc<VectorContext>, config: BootstrapConfig) -> Result<Self> {
        let ckks = ctx.ckks();
        let total = ckks.slots();
        config.check(total)?;
        let encapsulation = match config.ephemeral_weight {
            Some(h) => Some(encapsulation_keys(ctx, h)?),
            None => None,
        };
        let gk = ctx.galois_keys();
        if !gk.contains(ckks.conjugation_element()) {
            return Err(HeError::MissingConjugationKey);
        }
        if let Some(&missing) = config
            .rotation_steps(total)
            .iter()
            .find(|&&s| !gk.contains(ckks.galois_element_for_step(s)))
        {
            return Err(HeError::MissingGaloisKey { step: missing });
        }
        let (bound, double_angles, taylor_degree) = config.evalmod_shape(ckks.degree());
        let max_level = ckks.max_level();
        let (evalmod_level, stc_level) = config.levels_on(ckks.degree(), max_level)?;
        let params = ckks.params();
        let q = |l: usize| params.ciphertext_moduli()[l].value() as f64;
        let n = config.slots;
        // CoeffsToSlots, halved (the real part comes back as w + w̄); each factor at scale
        // q_ℓ, so that its rescale gives the input scale back exactly.
        let mut cts = Vec::with_capacity(config.cts_levels);
        for (t, m) in dft::coeffs_to_slots(n, config.cts_levels)
            .into_iter()
            .enumerate()
        {
            let m = if t == 0 { m.scaled(0.5) } else { m };
            let level = max_level - t;
            cts.push(encode_stage(ctx, &m, level, q(level))?);
        }
        // SlotsToCoeffs: each factor lands on the canonical scale of the level below.
        let mut stc = Vec::with_capacity(config.stc_levels);
        for (t, m) in dft::slots_to_coeffs(n, config.stc_levels)
            .into_iter()
            .enumerate()
        {
            let level = stc_level - t;
            let scale = ctx.scale_at(level - 1) * q(level) / ctx.scale_at(level);
            stc.push(encode_stage(ctx, &m, level, scale)?);
        }
        Ok(Self {
            ctx: ctx.clone(),
            slots: n,
            bound,
            double_angles,
            taylor_degree,
            cts,
            stc,
            config,
            encapsulation,
            evalmod_level,
            stc_level,
        })
    }

    /// The context it bootstraps for.
    pub fn context(&self) -> &Arc<VectorContext> {
        &self.ctx
    }

    /// The configuration.
    pub fn config(&self) -> BootstrapConfig {
        self.config
    }

    /// Slots this bootstrapper refreshes.
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// The bound `K` on `|m/q_0 + I|` EvalMod is built for.
    pub fn bound(&self) -> f64 {
        self.bound
    }

    /// Levels one bootstrapping consumes from the top of the chain.
    pub fn depth(&self) -> usize {
        self.ctx.ckks().max_level() - self.levels_after()
    }

    /// The level of a refreshed ciphertext.
    pub fn levels_after(&self) -> usize {
        self.stc_level - self.config.stc_levels
    }

    /// Refreshes a vector: its values come back at level [`levels_after`](Self::levels_after).
    /// A replicated vector must have this bootstrapper's period; a plain one must fill the
    /// slots (`N/2` bootstrapper) or have clean padding and at most `slots` values (it is
    /// replicated first). A plain vector shorter than `N/2` comes back with its padding
    /// cleared, one level lower (see [`levels_after`](Self::levels_after)).
    pub fn bootstrap(&self, v: &CkksVector) -> Result<CkksVector> {
        self.bootstrap_with_report(v).map(|(v, _)| v)
    }

    /// [`bootstrap`](Self::bootstrap), with the time of each phase.
    pub fn bootstrap_with_report(&self, v: &CkksVector) -> Result<(CkksVector, BootstrapReport)> {
        if !Arc::ptr_eq(v.context(), &self.ctx)
            && v.context().ckks().fingerprint() != self.ctx.ckks().fingerprint()
        {
            return Err(HeError::ParameterMismatch {
                expected: self.ctx.ckks().params().fingerprint_hex(),
                found: v.context().ckks().params().fingerprint_hex(),
            });
        }
        let total = self.ctx.ckks().slots();
        let ev = self.ctx.evaluator();
        let ct = match v.layout() {
            Layout::Replicated if v.len().next_power_of_two() == self.slots => {
                v.ciphertext().clone()
            }
            Layout::Plain if self.slots == total => v.ciphertext().clone(),
            Layout::Plain if !v.is_dirty() && v.len() <= self.slots => {
                // Zero padding: replicate the first `slots` slots across all of them.
                let mut acc = v.ciphertext().clone();
                let mut step = self.slots;
                while step < total {
                    let r = ev.rotate(&acc, -(step as i64), self.ctx.galois_keys())?;
                    ev.add_assign(&mut acc, &r)?;
                    step *= 2;
                }
                acc
            }
            layout => {
                return Err(HeError::ShapeMismatch(format!(
                "this bootstrapper refreshes {} slots; a {:?} vector of length {}{} does not fit \
                     (encrypt it replicated with period {}, or keep its padding clean)",
                self.slots,
                layout,
                v.len(),
                if v.is_dirty() {
                    " with dirty padding"
                } else {
                    ""
                },
                self.slots
            )))
            }
        };
        let (out, report) = self.bootstrap_ciphertext_with_report(&ct)?;
        if v.layout() == Layout::Replicated {
            return Ok((
                CkksVector::from_parts(&self.ctx, out, v.len(), true, Layout::Replicated),
                report,
            ));
        }
        let fresh = CkksVector::from_parts(&self.ctx, out, v.len(), v.len() < total, Layout::Plain);
        // A plain vector comes back plain: its padding (copies, or noise where there were
        // zeros) is cleared with the level bootstrapping left, so that it adds, sums and
        // bootstraps again like any plain vector. Without a level left it stays dirty.
        if fresh.is_dirty() && fresh.level() > 0 {
            return Ok((fresh.clean_padding()?, report));
        }
        Ok((fresh, report))
    }

    /// Refreshes a ciphertext whose `n` slots are replicated with period `n` (any level, any
    /// scale; 2 parts). The result is at [`levels_after`](Self::levels_after) with that level's
    /// canonical scale ([`VectorContext::scale_at`]).
    pub fn bootstrap_ciphertext(&self, ct: &Ciphertext) -> Result<Ciphertext> {
        self.bootstrap_ciphertext_with_report(ct).map(|(c, _)| c)
    }

    fn bootstrap_ciphertext_with_report(
        &self,
        ct: &Ciphertext,
    ) -> Result<(Ciphertext, BootstrapReport)> {
        self.run(ct, &mut |_, _, _| {})
    }

    /// Taylor coefficients in `u` of `sin θ` and `cos θ` for the small angle
    /// `θ = 2π·K·u / (ρ·2^r)` (`x = K·u/ρ`, so that `2^r` doublings reach `2πx`).
    fn evalmod_coefficients(&self, rho: f64) -> (Vec<f64>, Vec<f64>) {
        let scale_r = f64::from(1u32 << self.double_angles);
        let alpha = 2.0 * std::f64::consts::PI * self.bound / (rho * scale_r);
        let term = |j: usize| {
            let fact: f64 = (1..=j).map(|t| t as f64).product();
            let sign = if (j / 2).is_multiple_of(2) { 1.0 } else { -1.0 };
            sign * alpha.powi(j as i32) / fact
        };
        let sin = (0..=self.taylor_degree)
            .map(|j| if j % 2 == 1 { term(j) } else { 0.0 })
            .collect();
        let cos = (0..=self.taylor_degree)
            .map(|j| if j % 2 == 0 { term(j) } else { 0.0 })
            .collect();
        (sin, cos)
    }

    /// The bootstrapping, showing `probe` each stage's ciphertext (and a stage parameter).
    fn run(
        &self,
        ct: &Ciphertext,
        probe: &mut dyn FnMut(&str, &Ciphertext, f64),
    ) -> Result<(Ciphertext, BootstrapReport)> {
        let ckks = self.ctx.ckks();
        let ev = self.ctx.evaluator();
        let gk = self.ctx.galois_keys();
        let params = ckks.params();
        let q = |l: usize| params.ciphertext_moduli()[l].value() as f64;
        if ct.size() != 2 {
            return Err(HeError::WrongCiphertextSize {
                expected: 2,
                found: ct.size(),
            });
        }
        let mut report = BootstrapReport::default();
        let mut clock = std::time::Instant::now();
        let mut lap = |report: &mut BootstrapReport, i: usize| {
            report.seconds[i] = clock.elapsed().as_secs_f64();
            clock = std::time::Instant::now();
        };
        let input_scale = ct.scale();
        let mut low = ev.mod_switch_to_level(ct, 0)?;
        if let Some(keys) = &self.encapsulation {
            low = switch_key(ev, &low, &keys.to_sparse)?;
        }
        let total = ckks.slots();
        let k = (total / self.slots) as f64;
        let max_level = ckks.max_level();
        // Declared scale q_0·k·K: the slots then hold (m/q_0 + I)/K after SubSum and CtS.
        let mut raised = mod_raise(ev, &low, q(0) * k * self.bound)?;
        if let Some(keys) = &self.encapsulation {
            raised = switch_key(ev, &raised, &keys.to_dense)?;
        }
        let mut step = self.slots;
        while step < total {
            let r = ev.rotate(&raised, step as i64, gk)?;
            ev.add_assign(&mut raised, &r)?;
            step *= 2;
        }
        lap(&mut report, 0);
        probe("raised", &raised, 0.0);

        // CoeffsToSlots (scale preserved: each factor's diagonals are at scale q_ℓ), then one
        // integer product brings the scale to the canonical one; ρ records how far it lands.
        let mut w = raised;
        for stage in &self.cts {
            w = ev.rescale(&apply_stage(ev, &w, stage, gk)?)?;
        }
        let s1 = w.scale();
        let top = w.level();
        let target = self.ctx.scale_at(top - 1);
        let c = (target * q(top) / s1).round();
        let mut w = ev.rescale(&ev.multiply_integer_f64(&w, c)?)?;
        let rho = s1 * c / q(top) / target;
        w.set_scale(target);
        probe("cts", &w, rho);
        debug_assert_eq!(w.level(), self.evalmod_level);
        let wc = ev.conjugate(&w, gk)?;
        let re = ev.add(&w, &wc)?;
        let mut im = ev.sub(&w, &wc)?;
        im = times_i(ev, &im)?;
        im = ev.negate(&im)?;
        lap(&mut report, 1);
        probe("re", &re, rho);

        // EvalMod on the real parts: re, im hold ρ·x/K with x = m/q_0 + I.
        let r = self.double_angles;
        let (sin, cos) = self.evalmod_coefficients(rho);
        let out_factor = q(0) / (2.0 * std::f64::consts::PI * input_scale);
        let n = self.slots;
        // sin and cos of the small angle, then r doublings of the pair: sin 2θ = 2·sin θ·cos θ,
        // cos 2θ = 1 − 2·sin² θ. Doubling through cos alone (cos 2θ = 2cos² θ − 1) would
        // start from cos θ ≈ 1, where the angle is lost in the second order.
        let eval_mod = |part: Ciphertext| -> Result<Ciphertext> {
            let v = CkksVector::from_parts(&self.ctx, part, n, true, Layout::Replicated);
            if r == 0 {
                return Ok(v
                    .polyval(&sin)?
                    .mul_scalar(out_factor)?
                    .ciphertext()
                    .clone());
            }
            let mut both = v.polyval_many(&[&sin, &cos])?.into_iter();
            let (Some(mut s), Some(mut c)) = (both.next(), both.next()) else {
                return Err(HeError::Internal("two polynomials, two results"));
            };
            for _ in 1..r {
                let sc = s.mul(&c)?;
                let ss = s.square()?;
                s = sc.add(&sc)?;
                c = ss.add(&ss)?.neg()?.add_scalar(1.0)?;
            }
            let sc = s.mul(&c)?;
            Ok(sc.mul_scalar(2.0 * out_factor)?.ciphertext().clone())
        };
        let (re, im) = if veil_math::par::should_parallelize(ckks.degree() * max_level, 2) {
            rayon::join(|| eval_mod(re), || eval_mod(im))
        } else {
            (eval_mod(re), eval_mod(im))
        };
        let (re, im) = (re?, im?);
        probe("evalmod", &re, out_factor);
        let mut coeffs_ct = re;
        ev.add_assign(&mut coeffs_ct, &times_i(ev, &im)?)?;
        lap(&mut report, 2);
        debug_assert_eq!(coeffs_ct.level(), self.stc_level);

        // SlotsToCoeffs: z = U·w, each factor landing on the canonical scale of its level.
        let mut out = coeffs_ct;
        for stage in &self.stc {
            out = ev.rescale(&apply_stage(ev, &out, stage, gk)?)?;
            out.set_scale(self.ctx.scale_at(out.level()));
        }
        lap(&mut report, 3);
        report.level_after = out.level();
        Ok((out, report))
    }
}

/// Encodes one factor at `level` and `scale`: every diagonal tiled over all the slots and
/// pre-rotated for its giant step.
fn encode_stage(
    ctx: &Arc<VectorContext>,
    m: &dft::Diagonals,
    level: usize,
    scale: f64,
) -> Result<EncodedStage> {
    let total = ctx.ckks().slots();
    let n = m.n;
    let plan = dft::Plan::of(m);
    let encoder = crate::ckks::CkksEncoder::new(ctx.ckks());
    let mut giants: Vec<(i64, Vec<(usize, Plaintext)>)> = Vec::new();
    for &(offset, g, i) in &plan.terms {
        let diag = &m.diagonals[&offset];
        let shift = (g * (plan.baby * plan.unit) as i64).rem_euclid(n as i64) as usize;
        // Rotated right by the giant step: D'[x] = D[x − g·b·u].
        let tiled: Vec<Complex64> = (0..total).map(|s| diag[(s % n + n - shift) % n]).collect();
        let pt = encoder.encode_complex(&tiled, scale, level)?;
        match giants.iter_mut().find(|(h, _)| *h == g) {
            Some((_, list)) => list.push((i, pt)),
            None => giants.push((g, vec![(i, pt)])),
        }
    }
    Ok(EncodedStage { plan, giants })
}

/// `Σ_g rot_{g·b·u}(Σ_i D'_{g,i} ⊙ rot_{i·u}(ct))` (not rescaled); the baby rotations that
/// some diagonal uses share one decomposition.
fn apply_stage(
    ev: &Evaluator,
    ct: &Ciphertext,
    stage: &EncodedStage,
    gk: &crate::ckks::GaloisKeys,
) -> Result<Ciphertext> {
    let unit = stage.plan.unit as i64;
    let mut used: Vec<usize> = stage.plan.terms.iter().map(|&(_, _, i)| i).collect();
    used.sort_unstable();
    used.dedup();
    let steps: Vec<i64> = used.iter().map(|&i| i as i64 * unit).collect();
    let rotated = ev.rotate_hoisted(ct, &steps, gk)?;
    let mut babies: Vec<Option<Ciphertext>> = vec![None; stage.plan.baby];
    for (i, r) in used.into_iter().zip(rotated) {
        babies[i] = Some(r);
    }
    let mut acc: Option<Ciphertext> = None;
    for (g, list) in &stage.giants {
        let mut inner: Option<Ciphertext> = None;
        for (i, pt) in list {
            let baby = babies[*i]
                .as_ref()
                .ok_or(HeError::Internal("a diagonal without its baby rotation"))?;
            let term = ev.multiply_plain(baby, pt)?;
            match inner.as_mut() {
                Some(a) => ev.add_assign(a, &term)?,
                None => inner = Some(term),
            }
        }
        let Some(mut inner) = inner else { continue };
        if *g != 0 {
            inner = ev.rotate(&inner, g * stage.plan.baby as i64 * unit, gk)?;
        }
        match acc.as_mut() {
            Some(a) => ev.add_assign(a, &inner)?,
            None => acc = Some(inner),
        }
    }
    acc.ok_or(HeError::Internal("a linear map with no non-zero diagonal"))
}

/// The context's encapsulation keys for weight `h`, refused where the ephemeral secret is
/// not known to be 128-bit secure.
fn encapsulation_keys(ctx: &Arc<VectorContext>, h: usize) -> Result<EncapsulationKeys> {
    let ckks = ctx.ckks();
    let keys = ctx.encapsulation_keys().ok_or_else(|| {
        HeError::InvalidParameters(
            "bootstrapping with an ephemeral sparse secret needs the encapsulation keys: build \
             the context with VectorContextBuilder::bootstrapping (or set ephemeral_weight(None))"
                .into(),
        )
    })?;
    if keys.weight() != h {
        return Err(HeError::InvalidParameters(format!(
            "the context's encapsulation keys are for weight {}, the configuration asks {h}",
            keys.weight()
        )));
    }
    let params = ckks.params();
    if params.security() == SecurityLevel::Bits128 {
        // The key to s' is an RLWE instance with a sparse secret modulo q_0·P only. Accepted
        // where a published estimate covers it (Bossuat–Troncoso-Pastoriza–Hubaux, ePrint
        // 2022/024, h = 32): log2(q_0·P) ≤ 365 at N = 2^16, ≤ 134 at N = 2^15.
        let bits = (params.ciphertext_moduli()[0].value() as f64).log2()
            + params
                .special_moduli()
                .iter()
                .map(|m| (m.value() as f64).log2())
                .sum::<f64>();
        let limit = match ckks.degree() {
            65536 => 365.0,
            32768 => 134.0,
            _ => 0.0,
        };
        if h < 32 || bits > limit {
            return Err(HeError::InvalidParameters(format!(
                "an ephemeral secret of weight {h} modulo q_0·P of {bits:.0} bits at N = {} is not \
                 covered by a 128-bit estimate (h ≥ 32 and log2(q_0·P) ≤ 365 at N = 2^16, ≤ 134 \
                 at N = 2^15); use fewer special primes, ephemeral_weight(None), or insecure \
                 test parameters",
                ckks.degree()
            )));
        }
    }
    Ok(keys.clone())
}

/// Switches a 2-part ciphertext to another secret with `key` (same level and scale).
fn switch_key(ev: &Evaluator, ct: &Ciphertext, key: &SwitchingKey) -> Result<Ciphertext> {
    let ctx = ev.context();
    let dec = keyswitch::decompose(ctx, &ct.parts[1])?;
    let (k0, k1) = keyswitch::apply(ctx, &dec, None, key)?;
    let mut c0 = ct.parts[0].clone();
    c0.add_assign(&k0)?;
    Ok(Ciphertext {
        parts: vec![c0, k1],
        scale: ct.scale,
        fingerprint: ct.fingerprint,
        seed: None,
    })
}

/// Lifts a level-0 ciphertext's parts (centred modulo `q_0`) to the whole chain, declaring
/// `scale`.
fn mod_raise(ev: &Evaluator, ct: &Ciphertext, scale: f64) -> Result<Ciphertext> {
    let ctx = ev.context();
    let q0 = ctx.params().ciphertext_moduli()[0].value();
    let half = q0 / 2;
    let basis = ctx.q_basis(ctx.max_level());
    let mut parts = Vec::with_capacity(ct.parts.len());
    for p in &ct.parts {
        let mut c = p.clone();
        c.to_coefficient();
        let centred: Vec<i64> = c
            .limb(0)
            .iter()
            .map(|&x| {
                if x > half {
                    -((q0 - x) as i64)
                } else {
                    x as i64
                }
            })
            .collect();
        let mut lifted = RnsPoly::from_signed(ctx.ring(), &basis, &centred)?;
        lifted.to_ntt();
        parts.push(lifted);
    }
    ctx.check_scale(ctx.max_level(), scale)?;
    Ok(Ciphertext {
        parts,
        scale,
        fingerprint: ct.fingerprint,
        seed: None,
    })
}

/// Multiplies every slot by `i`: the monomial `X^{N/2}` (exact, no level).
fn times_i(ev: &Evaluator, ct: &Ciphertext) -> Result<Ciphertext> {
    let ctx = ev.context();
    let n = ctx.degree();
    let mut mono = vec![0i64; n];
    mono[n / 2] = 1;
    let primes = ct.parts[0].primes().to_vec();
    let mut m = RnsPoly::from_signed(ctx.ring(), &primes, &mono)?;
    m.to_ntt();
    let mut out = ct.clone();
    for p in out.parts.iter_mut() {
        p.mul_assign(&m)?;
    }
    out.seed = None;
    Ok(out)
}

/// An insecure N = 4096 context for tests: 60-bit `q_0`, `levels` primes of 50 bits (scale
/// 2^50), two 60-bit special primes.
#[cfg(test)]
pub(crate) fn test_context(levels: usize) -> Arc<CkksContext> {
    let mut bits = vec![60];
    bits.extend(std::iter::repeat_n(50, levels));
    bits.extend([60, 60]);
    let params = CkksParameters::builder()
        .degree(4096)
        .moduli_bits(&bits)
        .special_primes(2)
        .scale_bits(50.0)
        .insecure_allow_below_128_bit_security()
        .build()
        .unwrap_or_else(|e| panic!("test parameters: {e}"));
    CkksContext::new(params).unwrap_or_else(|e| panic!("test context: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each stage's error against the same stage computed in the clear from the previous
    /// stage's decryption.
    #[test]
    #[allow(clippy::needless_range_loop, reason = "c is the coefficient index")]
    fn every_stage_is_accurate() {
        let n = 64;
        let config = BootstrapConfig::new(n);
        let ckks = test_context(config.depth(4096) + 1);
        let total = ckks.slots();
        let ctx = VectorContext::builder(ckks.clone())
            .bootstrapping(config)
            .build()
            .unwrap();
        let boot = Bootstrapper::new(&ctx, config).unwrap();
        let x: Vec<f64> = (0..n).map(|i| (i as f64 * 0.77).sin()).collect();
        let v = CkksVector::encrypt_replicated(&ctx, &x, false).unwrap();
        let dec = |ct: &Ciphertext| {
            CkksVector::from_parts(&ctx, ct.clone(), total, false, Layout::Plain)
                .decrypt_complex_for_tests()
                .unwrap()
        };
        let mut z = Vec::new();
        let mut u = Vec::new();
        let mut worst = std::collections::BTreeMap::new();
        let k = boot.bound;
        boot.run(v.ciphertext(), &mut |stage, ct, param| {
            let got = dec(ct);
            match stage {
                "raised" => z = got,
                "cts" => {
                    let rho = param;
                    let mut err = 0f64;
                    let mut big = 0f64;
                    for c in 0..n {
                        let mut w = Complex64::new(0.0, 0.0);
                        for (j, zj) in z.iter().take(n).enumerate() {
                            let e = (dft::pow5_mod(j, 4 * n) * c as u64) % (4 * n as u64);
                            let xi = Complex64::from_polar(
                                1.0,
                                std::f64::consts::PI * e as f64 / (2 * n) as f64,
                            );
                            w += xi.conj() * zj / (2.0 * n as f64);
                        }
                        // CoeffsToSlots leaves the coefficients in bit-reversed order.
                        let slot = c.reverse_bits() >> (usize::BITS - n.trailing_zeros());
                        err = err.max((got[slot] / rho - w).norm());
                        big = big.max(w.re.abs().max(w.im.abs()) * k);
                    }
                    eprintln!("cts: rho {rho}, largest |x| {big}");
                    worst.insert("cts", err);
                }
                "re" => {
                    let rho = param;
                    u = got.iter().map(|c| c.re).collect();
                    worst.insert(
                        "re imaginary",
                        got.iter().map(|c| c.im.abs()).fold(0.0, f64::max),
                    );
                    let coeffs = boot.evalmod_coefficients(rho).0;
                    let pv = CkksVector::from_parts(&ctx, ct.clone(), n, true, Layout::Replicated)
                        .polyval(&coeffs)
                        .unwrap();
                    let p = dec(pv.ciphertext());
                    let r = f64::from(1u32 << boot.double_angles);
                    let mut err = 0f64;
                    let mut approx = 0f64;
                    for (i, ui) in u.iter().enumerate().take(n) {
                        let exact = (2.0 * std::f64::consts::PI * (k * ui / rho) / r).sin();
                        let taylor: f64 = coeffs.iter().rev().fold(0.0, |acc, c| acc * ui + c);
                        err = err.max((p[i].re - taylor).abs());
                        approx = approx.max((taylor - exact).abs());
                    }
                    worst.insert("polyval vs clear polynomial", err);
                    worst.insert("taylor vs cos", approx);
                    u.iter_mut().for_each(|ui| *ui = k * *ui / rho);
                }
                "evalmod" => {
                    let mut err = 0f64;
                    for (i, xi) in u.iter().enumerate().take(n) {
                        let want = param * (2.0 * std::f64::consts::PI * xi).sin();
                        err = err.max((got[i].re - want).abs());
                    }
                    worst.insert("evalmod vs sin of its input", err);
                }
                _ => {}
            }
        })
        .unwrap();
        eprintln!("{worst:#?}");
        let limits = [
            ("cts", 1e-10),
            ("re imaginary", 1e-9),
            ("polyval vs clear polynomial", 2e-11),
            ("taylor vs cos", 1e-15),
            ("evalmod vs sin of its input", 2e-6),
        ];
        for (stage, limit) in limits {
            let err = worst.get(stage).copied().unwrap_or(f64::INFINITY);
            assert!(err < limit, "{stage}: {err:e} ≥ {limit:e}");
        }
    }

    #[test]
    fn the_secure_chain_fits_full_slot_bootstrapping_at_n_65536_only() {
        let config = BootstrapConfig::new(1 << 15);
        // 4 + 1 + 5 + 6 + 1 + 4.
        assert_eq!(config.depth(65536), 21);
        let params = config.secure_parameters(65536).unwrap();
        assert_eq!(params.security(), SecurityLevel::Bits128);
        assert_eq!(params.max_level(), 28);
        assert!(params.total_bits() <= 1772.0);
        // q_0·P within the encapsulation estimate.
        let q0p = (params.ciphertext_moduli()[0].value() as f64).log2()
            + params
                .special_moduli()
                .iter()
                .map(|m| (m.value() as f64).log2())
                .sum::<f64>();
        assert!(q0p <= 365.0, "{q0p}");
        assert!(BootstrapConfig::new(1 << 14)
            .secure_parameters(32768)
            .is_err());
        assert!(config.secure_parameters(8192).is_err());
    }

    #[test]
    fn taylor_degree_meets_the_tolerance() {
        for a in [0.5, 1.0, 2.3] {
            let d = taylor_degree_for(a);
            let fact: f64 = (1..=d + 1).map(|t| t as f64).product();
            assert!(a.powi(d as i32 + 1) / fact <= TAYLOR_TOLERANCE);
        }
    }

    #[test]
    fn double_angles_bring_the_argument_in_range() {
        for k in [10.0, 91.0, 363.0] {
            let r = double_angles_for(k);
            assert!(2.0 * std::f64::consts::PI * k / f64::from(1u32 << r) <= MAX_ARGUMENT);
            assert!(
                r == 0
                    || 2.0 * std::f64::consts::PI * k / f64::from(1u32 << (r - 1)) > MAX_ARGUMENT
            );
        }
    }

    #[test]
    fn rotation_steps_cover_the_maps_and_subsum() {
        let steps = BootstrapConfig::new(64).rotation_steps(2048);
        for s in [64, 128, 1024] {
            assert!(steps.contains(&s), "{s} missing from {steps:?}");
        }
        assert!(!steps.contains(&2048));
        assert!(!steps.contains(&0));
        // Invalid configurations need no keys (and are refused by Bootstrapper::new).
        assert!(BootstrapConfig::new(48).rotation_steps(2048).is_empty());
        assert!(BootstrapConfig::new(64)
            .levels(0, 2)
            .rotation_steps(2048)
            .is_empty());
    }
}
#[cfg(test)]
mod polyval_tests {
    use super::*;

    fn sin_coeffs(d: usize, a: f64) -> Vec<f64> {
        (0..=d)
            .map(|j| {
                if j % 2 == 0 {
                    return 0.0;
                }
                let f: f64 = (1..=j).map(|t| t as f64).product();
                let sign = if (j / 2).is_multiple_of(2) { 1.0 } else { -1.0 };
                sign * a.powi(j as i32) / f
            })
            .collect()
    }

    /// A polynomial deep enough to combine powers from different levels is as exact as a
    /// shallow one: bringing a power down a level re-targets its scale exactly (the level
    /// scales of a chain differ by ~10^-9, which relabelling alone turned into a 7·10^-11
    /// error here, ten times the noise).
    #[test]
    fn polyval_across_levels_is_exact_to_the_noise() {
        let ckks = test_context(18);
        let ctx = VectorContext::builder(ckks.clone()).build().unwrap();
        let u: Vec<f64> = (0..64).map(|i| (i as f64 * 0.77).sin() * 0.2).collect();
        let v = CkksVector::encrypt_replicated(&ctx, &u, false).unwrap();
        let v = v.mul_scalar(1.0).unwrap().mul_scalar(1.0).unwrap();
        let d0 = v.decrypt_unflooded_for_key_holder_only().unwrap();
        for degree in [3, 9, 15, 25] {
            let coeffs = sin_coeffs(degree, 2.26);
            let got = v
                .polyval(&coeffs)
                .unwrap()
                .decrypt_unflooded_for_key_holder_only()
                .unwrap();
            let mut err = 0f64;
            for (g, x) in got.iter().zip(&d0) {
                let want: f64 = coeffs.iter().rev().fold(0.0, |acc, c| acc * x + c);
                err = err.max((g - want).abs());
            }
            assert!(err < 2e-11, "degree {degree}: error {err:e}");
        }
        // Several polynomials over shared powers: each as exact, all at one level.
        let (sin, short) = (sin_coeffs(25, 2.26), sin_coeffs(5, 1.0));
        let both = v.polyval_many(&[&sin, &short]).unwrap();
        assert_eq!(both.len(), 2);
        assert_eq!(both[0].level(), both[1].level());
        assert_eq!(both[0].level(), v.level() - 5);
        for (out, coeffs) in both.iter().zip([&sin, &short]) {
            let got = out.decrypt_unflooded_for_key_holder_only().unwrap();
            for (g, x) in got.iter().zip(&d0) {
                let want: f64 = coeffs.iter().rev().fold(0.0, |acc, c| acc * x + c);
                assert!((g - want).abs() < 2e-11, "{g} vs {want}");
            }
        }
    }
}
