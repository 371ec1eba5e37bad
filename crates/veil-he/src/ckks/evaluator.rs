//! Homomorphic operations on ciphertexts.
//!
//! Scales and levels are explicit, as in SEAL: operands of `add` must share level and scale,
//! `multiply` multiplies scales, `rescale` divides by the last prime. Where the user asks for
//! it, [`Evaluator::align`] and [`Evaluator::align_to`] bring two ciphertexts to a common level
//! and scale (the vector API does this automatically).

use std::sync::Arc;

use veil_math::{Representation, RnsPoly};

use crate::ckks::ciphertext::{Ciphertext, Plaintext};
use crate::ckks::context::CkksContext;
use crate::ckks::encoder::CkksEncoder;
use crate::ckks::keys::{GaloisKeys, RelinearizationKey, SwitchingKey};
use crate::ckks::keyswitch;
use crate::error::{HeError, Result};

/// Relative tolerance under which two scales count as equal.
const SCALE_TOLERANCE: f64 = 1e-9;

/// Scales this close are equal up to floating-point rounding.
const EXACT_SCALE_TOLERANCE: f64 = 1e-14;

/// Evaluates operations on ciphertexts of one context.
#[derive(Clone, Debug)]
pub struct Evaluator {
    ctx: Arc<CkksContext>,
    encoder: CkksEncoder,
}

fn scales_close(a: f64, b: f64) -> bool {
    ((a - b) / a.max(b)).abs() < SCALE_TOLERANCE
}

impl Evaluator {
    /// An evaluator for the context.
    pub fn new(ctx: &Arc<CkksContext>) -> Self {
        Self {
            ctx: ctx.clone(),
            encoder: CkksEncoder::new(ctx),
        }
    }

    /// The context.
    pub fn context(&self) -> &Arc<CkksContext> {
        &self.ctx
    }

    /// Checks the parameter fingerprint and that the scale is admissible (a scale set through
    /// [`Ciphertext::set_scale`] is checked here, where it is used).
    fn check(&self, ct: &Ciphertext) -> Result<()> {
        self.ctx.check_fingerprint(&ct.fingerprint)?;
        self.ctx.check_scale(ct.level(), ct.scale)
    }

    /// The scale of a product at `level`, refused when the modulus cannot hold it.
    fn product_scale(&self, level: usize, a: f64, b: f64) -> Result<f64> {
        let scale = a * b;
        self.ctx.check_scale(level, scale)?;
        Ok(scale)
    }

    fn check_pair(&self, a: &Ciphertext, b: &Ciphertext) -> Result<()> {
        self.check(a)?;
        self.check(b)?;
        if a.level() != b.level() {
            return Err(HeError::LevelMismatch {
                left: a.level(),
                right: b.level(),
            });
        }
        if !scales_close(a.scale, b.scale) {
            return Err(HeError::ScaleMismatch {
                left: a.scale.log2(),
                right: b.scale.log2(),
            });
        }
        Ok(())
    }

    fn check_plain(&self, a: &Ciphertext, pt: &Plaintext, same_scale: bool) -> Result<()> {
        self.check(a)?;
        self.ctx.check_fingerprint(&pt.fingerprint)?;
        self.ctx.check_scale(pt.level(), pt.scale)?;
        if a.level() != pt.level() {
            return Err(HeError::LevelMismatch {
                left: a.level(),
                right: pt.level(),
            });
        }
        if same_scale && !scales_close(a.scale, pt.scale) {
            return Err(HeError::ScaleMismatch {
                left: a.scale.log2(),
                right: pt.scale.log2(),
            });
        }
        Ok(())
    }

    fn require_size(ct: &Ciphertext, size: usize) -> Result<()> {
        if ct.parts.len() != size {
            return Err(HeError::WrongCiphertextSize {
                expected: size,
                found: ct.parts.len(),
            });
        }
        Ok(())
    }

    fn unseeded(mut ct: Ciphertext) -> Ciphertext {
        ct.seed = None;
        ct
    }

    // ----- addition -----

    /// Part-wise `a ± b` for ciphertexts of possibly different sizes (2 or 3 parts).
    fn combine(&self, a: &Ciphertext, b: &Ciphertext, subtract: bool) -> Result<Ciphertext> {
        self.check_pair(a, b)?;
        let parts = (0..a.parts.len().max(b.parts.len()))
            .map(|i| match (a.parts.get(i), b.parts.get(i)) {
                (Some(x), Some(y)) if subtract => Ok(RnsPoly::difference(x, y)?),
                (Some(x), Some(y)) => Ok(RnsPoly::sum(x, y)?),
                (Some(x), None) => Ok(x.clone()),
                (None, Some(y)) => {
                    let mut q = y.clone();
                    if subtract {
                        q.neg_assign();
                    }
                    Ok(q)
                }
                (None, None) => Err(HeError::Internal("ciphertext part out of range")),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Ciphertext {
            parts,
            scale: a.scale,
            fingerprint: a.fingerprint,
            seed: None,
        })
    }

    /// `a + b` (same level and scale; sizes may differ).
    pub fn add(&self, a: &Ciphertext, b: &Ciphertext) -> Result<Ciphertext> {
        self.combine(a, b, false)
    }

    /// `a += b`.
    pub fn add_assign(&self, a: &mut Ciphertext, b: &Ciphertext) -> Result<()> {
        self.check_pair(a, b)?;
        for (i, p) in b.parts.iter().enumerate() {
            if i < a.parts.len() {
                a.parts[i].add_assign(p)?;
            } else {
                a.parts.push(p.clone());
            }
        }
        a.seed = None;
        Ok(())
    }

    /// `a − b`.
    pub fn sub(&self, a: &Ciphertext, b: &Ciphertext) -> Result<Ciphertext> {
        self.combine(a, b, true)
    }

    /// `−a`.
    pub fn negate(&self, a: &Ciphertext) -> Result<Ciphertext> {
        self.check(a)?;
        let mut out = a.clone();
        out.parts.iter_mut().for_each(RnsPoly::neg_assign);
        Ok(Self::unseeded(out))
    }

    /// `a + pt` (same level and scale).
    pub fn add_plain(&self, a: &Ciphertext, pt: &Plaintext) -> Result<Ciphertext> {
        self.check_plain(a, pt, true)?;
        let mut out = a.clone();
        out.parts[0].add_assign(&pt.poly)?;
        Ok(Self::unseeded(out))
    }

    /// `a − pt` (same level and scale).
    pub fn sub_plain(&self, a: &Ciphertext, pt: &Plaintext) -> Result<Ciphertext> {
        self.check_plain(a, pt, true)?;
        let mut out = a.clone();
        out.parts[0].sub_assign(&pt.poly)?;
        Ok(Self::unseeded(out))
    }

    /// Adds the real constant `x` to every slot: `round(x · scale)` added to every NTT
    /// coefficient of the first part (a constant polynomial; no plaintext is encoded).
    pub fn add_scalar(&self, a: &Ciphertext, x: f64) -> Result<Ciphertext> {
        self.check(a)?;
        let constants = self.encoder.constant_residues(x, a.scale, a.level())?;
        let mut out = a.clone();
        out.parts[0].add_constants_assign(&constants)?;
        Ok(Self::unseeded(out))
    }

    /// Subtracts the real constant `x` from every slot.
    pub fn sub_scalar(&self, a: &Ciphertext, x: f64) -> Result<Ciphertext> {
        self.add_scalar(a, -x)
    }

    // ----- multiplication -----

    /// `a · pt`; the result's scale is the product of the scales.
    pub fn multiply_plain(&self, a: &Ciphertext, pt: &Plaintext) -> Result<Ciphertext> {
        self.check_plain(a, pt, false)?;
        let scale = self.product_scale(a.level(), a.scale, pt.scale)?;
        let mut out = a.clone();
        for p in out.parts.iter_mut() {
            p.mul_assign(&pt.poly)?;
        }
        out.scale = scale;
        Ok(Self::unseeded(out))
    }

    /// Multiplies every slot by the real constant `x`, encoded at `scale` (result scale
    /// `a.scale · scale`; rescale afterwards).
    pub fn multiply_scalar(&self, a: &Ciphertext, x: f64, scale: f64) -> Result<Ciphertext> {
        self.check(a)?;
        if !x.is_finite() {
            return Err(HeError::NonFiniteValue(x));
        }
        let product_scale = self.product_scale(a.level(), a.scale, scale)?;
        let c = (x * scale).round();
        let mut out = self.multiply_by_integer_f64(a, c)?;
        out.scale = product_scale;
        Ok(out)
    }

    /// `acc += a · x`, with `x` encoded at `scale`: the step of a weighted sum of many
    /// ciphertexts by public reals, rescaled once at the end. `acc` must already have the
    /// product scale `a.scale · scale`, `a`'s level and size (start it with
    /// [`Evaluator::multiply_scalar`]).
    pub fn multiply_scalar_accumulate(
        &self,
        acc: &mut Ciphertext,
        a: &Ciphertext,
        x: f64,
        scale: f64,
    ) -> Result<()> {
        self.check(acc)?;
        self.check(a)?;
        if acc.level() != a.level() {
            return Err(HeError::LevelMismatch {
                left: acc.level(),
                right: a.level(),
            });
        }
        if !x.is_finite() {
            return Err(HeError::NonFiniteValue(x));
        }
        if acc.parts.len() != a.parts.len() {
            return Err(HeError::ShapeMismatch(format!(
                "accumulating a {}-part ciphertext into a {}-part one",
                a.parts.len(),
                acc.parts.len()
            )));
        }
        let product = a.scale * scale;
        if !scales_close(acc.scale, product) {
            return Err(HeError::ScaleMismatch {
                left: acc.scale.log2(),
                right: product.log2(),
            });
        }
        let c = (x * scale).round();
        let consts = self.integer_constants(a, c)?;
        if c == 0.0 {
            return Ok(());
        }
        for (p, q) in acc.parts.iter_mut().zip(&a.parts) {
            p.add_mul_constants_assign(q, &consts)?;
        }
        acc.seed = None;
        Ok(())
    }

    /// Multiplies every slot by an integer given as an integer-valued `f64` (it may exceed
    /// 2^63); the scale is unchanged and no level is used.
    pub fn multiply_integer_f64(&self, a: &Ciphertext, c: f64) -> Result<Ciphertext> {
        self.check(a)?;
        if !c.is_finite() || c.fract() != 0.0 {
            return Err(HeError::NonFiniteValue(c));
        }
        self.multiply_by_integer_f64(a, c)
    }

    /// The integer `c` modulo each of `a`'s primes, refused when it does not fit the modulus
    /// at `a`'s level.
    fn integer_constants(&self, a: &Ciphertext, c: f64) -> Result<Vec<u64>> {
        let bits = self.ctx.modulus_bits_at(a.level());
        if c != 0.0 && c.abs().log2() >= bits - 1.0 {
            return Err(HeError::EncodingOverflow {
                value: c,
                scale_bits: 0.0,
                level: a.level(),
                modulus_bits: bits as u32,
            });
        }
        Ok(a.parts[0]
            .moduli()
            .iter()
            .map(|m| crate::ckks::encoder_reduce_f64(m, c))
            .collect())
    }

    fn multiply_by_integer_f64(&self, a: &Ciphertext, c: f64) -> Result<Ciphertext> {
        let consts = self.integer_constants(a, c)?;
        let mut out = a.clone();
        for p in out.parts.iter_mut() {
            p.mul_constants_assign(&consts)?;
        }
        Ok(Self::unseeded(out))
    }

    /// Multiplies every slot by the integer `c`; the scale is unchanged, no level is used.
    pub fn multiply_integer(&self, a: &Ciphertext, c: i64) -> Result<Ciphertext> {
        self.check(a)?;
        self.multiply_by_integer_f64(a, c as f64)
    }

    /// `a · b` without relinearization (3 parts; scale = product of scales).
    pub fn multiply(&self, a: &Ciphertext, b: &Ciphertext) -> Result<Ciphertext> {
        self.check(a)?;
        self.check(b)?;
        if a.level() != b.level() {
            return Err(HeError::LevelMismatch {
                left: a.level(),
                right: b.level(),
            });
        }
        Self::require_size(a, 2)?;
        Self::require_size(b, 2)?;
        let scale = self.product_scale(a.level(), a.scale, b.scale)?;
        let (a0, a1) = (&a.parts[0], &a.parts[1]);
        let (b0, b1) = (&b.parts[0], &b.parts[1]);
        let outer = || (RnsPoly::mul(a0, b0), RnsPoly::mul(a1, b1));
        let cross = || -> veil_math::Result<RnsPoly> {
            let mut d1 = RnsPoly::mul(a0, b1)?;
            d1.add_mul_assign(a1, b0)?;
            Ok(d1)
        };
        let work = a0.data().len() * 4;
        let ((d0, d2), d1) = if veil_math::par::should_parallelize(work, 2) {
            rayon::join(outer, cross)
        } else {
            (outer(), cross())
        };
        Ok(Ciphertext {
            parts: vec![d0?, d1?, d2?],
            scale,
            fingerprint: a.fingerprint,
            seed: None,
        })
    }

    /// `a²` without relinearization.
    pub fn square(&self, a: &Ciphertext) -> Result<Ciphertext> {
        self.check(a)?;
        Self::require_size(a, 2)?;
        let scale = self.product_scale(a.level(), a.scale, a.scale)?;
        let (a0, a1) = (&a.parts[0], &a.parts[1]);
        let d0 = RnsPoly::mul(a0, a0)?;
        let mut d1 = RnsPoly::mul(a0, a1)?;
        let twice = d1.clone();
        d1.add_assign(&twice)?;
        let d2 = RnsPoly::mul(a1, a1)?;
        Ok(Ciphertext {
            parts: vec![d0, d1, d2],
            scale,
            fingerprint: a.fingerprint,
            seed: None,
        })
    }

    /// Relinearizes a 3-part ciphertext back to 2 parts.
    pub fn relinearize(&self, a: &Ciphertext, rlk: &RelinearizationKey) -> Result<Ciphertext> {
        self.check(a)?;
        if a.parts.len() == 2 {
            return Ok(a.clone());
        }
        Self::require_size(a, 3)?;
        if rlk.0.level < a.level() {
            return Err(HeError::RelinKeyLevel {
                key_level: rlk.0.level,
                level: a.level(),
            });
        }
        let dec = keyswitch::decompose(&self.ctx, &a.parts[2])?;
        let (k0, k1) = keyswitch::apply(&self.ctx, &dec, None, &rlk.0)?;
        let mut c0 = a.parts[0].clone();
        let mut c1 = a.parts[1].clone();
        c0.add_assign(&k0)?;
        c1.add_assign(&k1)?;
        Ok(Ciphertext {
            parts: vec![c0, c1],
            scale: a.scale,
            fingerprint: a.fingerprint,
            seed: None,
        })
    }

    /// `relinearize(a · b)`.
    pub fn multiply_relin(
        &self,
        a: &Ciphertext,
        b: &Ciphertext,
        rlk: &RelinearizationKey,
    ) -> Result<Ciphertext> {
        self.relinearize(&self.multiply(a, b)?, rlk)
    }

    // ----- levels and scales -----

    /// Divides by the last prime: level − 1, scale / q_ℓ.
    pub fn rescale(&self, a: &Ciphertext) -> Result<Ciphertext> {
        self.check(a)?;
        if a.level() == 0 {
            return Err(HeError::OutOfLevels { needed: 1, left: 0 });
        }
        let q_last = self.ctx.params().ciphertext_moduli()[a.level()].value() as f64;
        let scale = a.scale / q_last;
        self.ctx.check_scale(a.level() - 1, scale)?;
        let mut out = a.clone();
        for p in out.parts.iter_mut() {
            p.rescale_by_last()?;
        }
        out.scale = scale;
        Ok(Self::unseeded(out))
    }

    /// Drops the last prime without dividing (level − 1, same scale and value).
    pub fn mod_switch_to_next(&self, a: &Ciphertext) -> Result<Ciphertext> {
        self.check(a)?;
        if a.level() == 0 {
            return Err(HeError::OutOfLevels { needed: 1, left: 0 });
        }
        self.mod_switch_to_level(a, a.level() - 1)
    }

    /// Drops primes down to `level` (same scale and value).
    pub fn mod_switch_to_level(&self, a: &Ciphertext, level: usize) -> Result<Ciphertext> {
        self.check(a)?;
        if level > a.level() {
            return Err(HeError::LevelMismatch {
                left: a.level(),
                right: level,
            });
        }
        let mut out = a.clone();
        for p in out.parts.iter_mut() {
            p.truncate_limbs(level + 1)?;
        }
        Ok(Self::unseeded(out))
    }

    /// Drops a plaintext's primes down to `level`.
    pub fn mod_switch_plain_to_level(&self, pt: &Plaintext, level: usize) -> Result<Plaintext> {
        self.ctx.check_fingerprint(&pt.fingerprint)?;
        if level > pt.level() {
            return Err(HeError::LevelMismatch {
                left: pt.level(),
                right: level,
            });
        }
        let mut out = pt.clone();
        out.poly.truncate_limbs(level + 1)?;
        Ok(out)
    }

    /// Brings `a` to `level` with scale `scale`. If only the level differs, primes are dropped;
    /// if the scale differs too — by any amount more than rounding, since the primes are
    /// dropped anyway — `a` is dropped to `level + 1`, multiplied by the integer
    /// `round(scale · q_{level+1} / a.scale)` and rescaled (relative error ≤ 1/(2·that
    /// integer), about 2^-50 where merely relabelling scales that differ by 10^-9, as the
    /// level scales of a chain do, would be off by that much). At the same level, scales
    /// within a relative 10^-9 pass unchanged.
    pub fn align_to(&self, a: &Ciphertext, level: usize, scale: f64) -> Result<Ciphertext> {
        self.check(a)?;
        if level > a.level() {
            return Err(HeError::LevelMismatch {
                left: a.level(),
                right: level,
            });
        }
        let same = ((a.scale - scale) / a.scale.max(scale)).abs() < EXACT_SCALE_TOLERANCE;
        if same || (level == a.level() && scales_close(a.scale, scale)) {
            return self.mod_switch_to_level(a, level);
        }
        if level == a.level() {
            return Err(HeError::ScaleMismatch {
                left: a.scale.log2(),
                right: scale.log2(),
            });
        }
        let dropped = self.mod_switch_to_level(a, level + 1)?;
        let q = self.ctx.params().ciphertext_moduli()[level + 1].value() as f64;
        let c = (scale * q / a.scale).round();
        if c < 1.0 {
            return Err(HeError::ScaleMismatch {
                left: a.scale.log2(),
                right: scale.log2(),
            });
        }
        let mut out = self.rescale(&self.multiply_by_integer_f64(&dropped, c)?)?;
        out.scale = scale;
        Ok(out)
    }

    /// Aligns two ciphertexts to the lower level and that operand's scale.
    pub fn align(&self, a: &Ciphertext, b: &Ciphertext) -> Result<(Ciphertext, Ciphertext)> {
        self.check(a)?;
        self.check(b)?;
        if a.level() >= b.level() {
            Ok((self.align_to(a, b.level(), b.scale)?, b.clone()))
        } else {
            Ok((a.clone(), self.align_to(b, a.level(), a.scale)?))
        }
    }

    // ----- rotations -----

    fn apply_galois(
        &self,
        a: &Ciphertext,
        g: u64,
        key: &SwitchingKey,
        dec: &keyswitch::Decomposed,
    ) -> Result<Ciphertext> {
        let perm = self.ctx.ring().ntt_galois_permutation(g)?;
        let (k0, k1) =
            keyswitch::apply(&self.ctx, dec, Some(&perm), key).map_err(|e| self.name_step(e, g))?;
        let mut c0 = RnsPoly::zero(self.ctx.ring(), a.parts[0].primes(), Representation::Ntt)?;
        c0.apply_permutation_from(&a.parts[0], &perm);
        c0.add_assign(&k0)?;
        Ok(Ciphertext {
            parts: vec![c0, k1],
            scale: a.scale,
            fingerprint: a.fingerprint,
            seed: None,
        })
    }

    /// One automorphism: permute both parts in NTT form, then key-switch the permuted `c_1`
    /// (cheaper than permuting the decomposed digits, which only pays off when hoisting).
    fn apply_galois_single(
        &self,
        a: &Ciphertext,
        g: u64,
        key: &SwitchingKey,
    ) -> Result<Ciphertext> {
        if key.level() < a.level() {
            return Err(self.name_step(
                HeError::GaloisKeyLevel {
                    step: 0,
                    key_level: key.level(),
                    level: a.level(),
                },
                g,
            ));
        }
        let perm = self.ctx.ring().ntt_galois_permutation(g)?;
        let c1 = a.parts[1].permuted(&perm)?;
        let dec = keyswitch::decompose(&self.ctx, &c1)?;
        drop(c1);
        let (k0, k1) = keyswitch::apply(&self.ctx, &dec, None, key)?;
        let mut c0 = a.parts[0].permuted(&perm)?;
        c0.add_assign(&k0)?;
        Ok(Ciphertext {
            parts: vec![c0, k1],
            scale: a.scale,
            fingerprint: a.fingerprint,
            seed: None,
        })
    }

    /// Applies the automorphism of Galois element `g` with its key.
    pub fn apply_galois_element(
        &self,
        a: &Ciphertext,
        g: u64,
        gk: &GaloisKeys,
    ) -> Result<Ciphertext> {
        self.check(a)?;
        Self::require_size(a, 2)?;
        let key = gk.get(g).ok_or(HeError::MissingGaloisKey {
            step: self.step_of_element(g),
        })?;
        self.apply_galois_single(a, g, key)
    }

    /// Names the rotation step in a key-level error.
    fn name_step(&self, e: HeError, g: u64) -> HeError {
        match e {
            HeError::GaloisKeyLevel {
                key_level, level, ..
            } => HeError::GaloisKeyLevel {
                step: self.step_of_element(g),
                key_level,
                level,
            },
            e => e,
        }
    }

    fn step_of_element(&self, g: u64) -> i64 {
        let slots = self.ctx.slots() as i64;
        (0..slots)
            .find(|&s| self.ctx.galois_element_for_step(s) == g)
            .unwrap_or(0)
    }

    /// Decomposes `step` into rotations whose keys exist (non-adjacent form over ±2^i, or
    /// plain binary in either direction).
    fn rotation_plan(&self, step: i64, gk: &GaloisKeys) -> Result<Vec<i64>> {
        let slots = self.ctx.slots() as i64;
        let s = step.rem_euclid(slots);
        if s == 0 {
            return Ok(vec![]);
        }
        let has = |t: i64| gk.contains(self.ctx.galois_element_for_step(t));
        if has(s) {
            return Ok(vec![s]);
        }
        let mut candidates: Vec<Vec<i64>> = Vec::new();
        // Non-adjacent form.
        let mut naf = Vec::new();
        let mut x = s;
        let mut bit = 1i64;
        while x != 0 {
            if x & 1 == 1 {
                let d = 2 - (x & 3);
                naf.push(d * bit);
                x -= d;
            }
            x >>= 1;
            bit <<= 1;
        }
        candidates.push(
            naf.into_iter()
                .filter(|t| t.rem_euclid(slots) != 0)
                .collect(),
        );
        let binary = |v: i64, sign: i64| {
            (0..63)
                .filter(|i| v >> i & 1 == 1)
                .map(|i| sign * (1i64 << i))
                .collect::<Vec<_>>()
        };
        candidates.push(binary(s, 1));
        candidates.push(binary(slots - s, -1));
        for c in &candidates {
            if c.iter().all(|&t| has(t)) {
                return Ok(c.clone());
            }
        }
        let missing = candidates[0]
            .iter()
            .copied()
            .find(|&t| !has(t))
            .unwrap_or(s);
        Err(HeError::MissingGaloisKey { step: missing })
    }

    /// Rotates the slots left by `step` (negative: right). Uses the step's own key if present,
    /// otherwise composes power-of-two rotations.
    pub fn rotate(&self, a: &Ciphertext, step: i64, gk: &GaloisKeys) -> Result<Ciphertext> {
        self.check(a)?;
        Self::require_size(a, 2)?;
        let plan = self.rotation_plan(step, gk)?;
        let mut out = a.clone();
        for t in plan {
            out = self.apply_galois_element(&out, self.ctx.galois_element_for_step(t), gk)?;
        }
        Ok(Self::unseeded(out))
    }

    /// Many rotations of one ciphertext sharing one decomposition (hoisting). Steps without
    /// their own key fall back to composed rotations.
    pub fn rotate_hoisted(
        &self,
        a: &Ciphertext,
        steps: &[i64],
        gk: &GaloisKeys,
    ) -> Result<Vec<Ciphertext>> {
        self.check(a)?;
        Self::require_size(a, 2)?;
        let slots = self.ctx.slots() as i64;
        let need_dec = steps
            .iter()
            .any(|&s| s.rem_euclid(slots) != 0 && gk.contains(self.ctx.galois_element_for_step(s)));
        let dec = if need_dec {
            Some(keyswitch::decompose(&self.ctx, &a.parts[1])?)
        } else {
            None
        };
        steps
            .iter()
            .map(|&s| {
                if s.rem_euclid(slots) == 0 {
                    return Ok(Self::unseeded(a.clone()));
                }
                let g = self.ctx.galois_element_for_step(s);
                match (gk.get(g), &dec) {
                    (Some(key), Some(dec)) => self.apply_galois(a, g, key, dec),
                    _ => self.rotate(a, s, gk),
                }
            })
            .collect()
    }

    /// Complex conjugation of every slot.
    pub fn conjugate(&self, a: &Ciphertext, gk: &GaloisKeys) -> Result<Ciphertext> {
        self.check(a)?;
        Self::require_size(a, 2)?;
        let g = self.ctx.conjugation_element();
        let key = gk.get(g).ok_or(HeError::MissingConjugationKey)?;
        self.apply_galois_single(a, g, key)
    }

    /// Sum of all slots, replicated in every slot (log2(N/2) rotations by powers of two).
    pub fn sum_slots(&self, a: &Ciphertext, gk: &GaloisKeys) -> Result<Ciphertext> {
        self.check(a)?;
        let mut acc = Self::unseeded(a.clone());
        let mut step = 1i64;
        while (step as usize) < self.ctx.slots() {
            let r = self.rotate(&acc, step, gk)?;
            self.add_assign(&mut acc, &r)?;
            step *= 2;
        }
        Ok(acc)
    }

    /// Inner product `Σ a_i·b_i`, replicated in every slot: multiply, relinearize, rescale,
    /// sum the slots. Uses one level.
    pub fn inner_product(
        &self,
        a: &Ciphertext,
        b: &Ciphertext,
        rlk: &RelinearizationKey,
        gk: &GaloisKeys,
    ) -> Result<Ciphertext> {
        let prod = self.rescale(&self.multiply_relin(a, b, rlk)?)?;
        self.sum_slots(&prod, gk)
    }

    /// Encodes `values` as a plaintext matching `a`'s level at `scale`.
    pub fn encode_for(&self, a: &Ciphertext, values: &[f64], scale: f64) -> Result<Plaintext> {
        self.encoder.encode(values, scale, a.level())
    }
}
