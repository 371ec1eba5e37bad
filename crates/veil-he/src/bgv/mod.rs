//! BGV: exact arithmetic on vectors of integers modulo `t`, the other exact scheme (OpenFHE's
//! and SEAL's BGV), over the same ring, batch encoder and key switching as BFV and CKKS.
//!
//! Where BFV puts the message in the high bits (`Δ·m`), BGV puts it in the low bits: a
//! ciphertext decrypts to `α·m + t·e` with every error a multiple of `t`. So:
//! - the core's keys and encryptions have errors `t·e` (the CKKS core is built with `t`, which
//!   also gives it another fingerprint: BGV keys never mix with BFV's or CKKS's);
//! - key switching's ModDown subtracts `δ = t·[x·t^{-1}]_P` before dividing by `P`, so the
//!   message is untouched and the error stays a multiple of `t`;
//! - multiplication is a plain tensor product (no scaling), and modulus switching (divide by
//!   the last prime, with the same correction) keeps the noise down after each product; it
//!   multiplies the message by `q_ℓ^{-1} mod t`, which the ciphertext records as its
//!   correction factor `α` (OpenFHE's approach) and decryption removes.
//!
//! ```
//! use veil_he::bfv::{BfvParameters, BfvPreset};
//! use veil_he::bgv::{BgvContext, BgvDecryptor, BgvEncryptor, BgvEvaluator};
//! use veil_he::ckks::KeyGenerator;
//! # fn main() -> veil_he::Result<()> {
//! let ctx = BgvContext::new(BfvParameters::builder().build_bgv()?)?;
//! let mut kg = KeyGenerator::new(ctx.core())?;
//! let enc = BgvEncryptor::new(&ctx, kg.public_key()?)?;
//! let dec = BgvDecryptor::new(&ctx, kg.secret_key().clone())?;
//! let ev = BgvEvaluator::new(&ctx);
//! let rlk = kg.relin_key()?;
//! let x = enc.encrypt(&ctx.encoder().encode_signed(&[3, -4, 5])?)?;
//! let y = ev.mod_switch_to_next(&ev.multiply_relin(&x, &x, &rlk)?)?; // x², one level down
//! let got = ctx.encoder().decode_signed(&dec.decrypt(&y)?)?;
//! assert_eq!(&got[..3], &[9, 16, 25]);
//! # Ok(()) }
//! ```
//!
//! Threat model: as BFV's ([`crate::bfv`]): 128-bit parameters, hostile bytes refused,
//! decryptions exact; the decryptor refuses a measured noise of `Q/4` or more. There is no
//! public noise estimate at this low level: forward no decryption of a ciphertext you did
//! not compute with a known circuit.

use std::sync::Arc;

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use veil_math::par::for_each_limb;
use veil_math::rns::BaseConverter;
use veil_math::{Modulus, RnsPoly};

use crate::bfv::serialize::{header, read_header, KIND_BGV_CIPHERTEXT};
use crate::bfv::{BatchEncoder, BfvContext, BfvParameters, BfvPlaintext};
use crate::ckks::{
    Ciphertext, CkksContext, Decryptor, Encryptor, Evaluator, GaloisKeys, Plaintext, PublicKey,
    RelinearizationKey, SecretKey, SymmetricEncryptor,
};
use crate::error::{HeError, Result};

#[cfg(test)]
mod tests;

const NTT_COST: usize = 32;

#[derive(Debug)]
struct BgvLevel {
    /// Decryption: `[x]_t` for the centred `x` over `q_0..q_ℓ`.
    to_t: BaseConverter,
    /// `(Q/q_i)^{-1} mod q_i` and `1/q_i`: `x/Q ≡ Σ_i [x_i·(Q/q_i)^{-1}]_{q_i} / q_i (mod 1)`
    /// gives the phase's size in floating point (the refusal check of decryption).
    hat_inv: Vec<(veil_math::ShoupConst, f64)>,
    /// `t^{-1} mod q_ℓ` (modulus switching from level ℓ).
    t_inv_last: u64,
    /// `q_ℓ^{-1} mod t`: the correction factor modulus switching from level ℓ multiplies in.
    q_last_inv_t: u64,
}

/// A BGV parameter set with its precomputations.
#[derive(Debug)]
pub struct BgvContext {
    exact: Arc<BfvContext>,
    t: Modulus,
    levels: Vec<BgvLevel>,
}

impl BgvContext {
    /// Precomputes everything for BGV parameters (made with
    /// [`BfvParametersBuilder::build_bgv`](crate::bfv::BfvParametersBuilder::build_bgv)).
    pub fn new(params: BfvParameters) -> Result<Arc<Self>> {
        if !params.is_bgv() {
            return Err(HeError::InvalidParameters(
                "these are BFV parameters; build BGV ones with BfvParametersBuilder::build_bgv"
                    .into(),
            ));
        }
        let exact = BfvContext::new_any(params)?;
        let t = exact.params().plain();
        let q = exact.params().core().ciphertext_moduli().to_vec();
        let levels = (0..q.len())
            .map(|l| {
                let ql = q[l];
                let hat_inv = q[..=l]
                    .iter()
                    .enumerate()
                    .map(|(i, qi)| {
                        let hat = q[..=l]
                            .iter()
                            .enumerate()
                            .filter(|&(k, _)| k != i)
                            .fold(1u64, |acc, (_, m)| qi.mul(acc, qi.reduce(m.value())));
                        let inv = qi
                            .inv(hat)
                            .ok_or(HeError::Internal("ciphertext primes are not distinct"))?;
                        Ok((qi.shoup(inv), 1.0 / qi.value() as f64))
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok(BgvLevel {
                    hat_inv,
                    to_t: BaseConverter::new(&q[..=l], &[t])?,
                    t_inv_last: ql
                        .inv(ql.reduce(t.value()))
                        .ok_or(HeError::Internal("t divides a prime"))?,
                    q_last_inv_t: t
                        .inv(t.reduce(ql.value()))
                        .ok_or(HeError::Internal("a prime divides t"))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Arc::new(Self { exact, t, levels }))
    }

    /// The core (ring, keys: make them with [`KeyGenerator::new`](crate::ckks::KeyGenerator)
    /// on it; their errors are multiples of `t`).
    pub fn core(&self) -> &Arc<CkksContext> {
        self.exact.core()
    }

    /// The parameter set.
    pub fn params(&self) -> &BfvParameters {
        self.exact.params()
    }

    /// A batch encoder (the same slot layout as BFV).
    pub fn encoder(&self) -> BatchEncoder {
        BatchEncoder::new(&self.exact)
    }

    /// The exact-scheme context it wraps (encoder tables, slot layout).
    pub(crate) fn exact_context(&self) -> Arc<BfvContext> {
        self.exact.clone()
    }

    /// Ring degree N.
    pub fn degree(&self) -> usize {
        self.exact.degree()
    }

    /// Number of slots (N).
    pub fn slots(&self) -> usize {
        self.exact.slots()
    }

    /// The plaintext modulus `t`.
    pub fn plain_modulus(&self) -> u64 {
        self.t.value()
    }

    /// Highest level.
    pub fn max_level(&self) -> usize {
        self.exact.max_level()
    }

    /// Fingerprint of the parameter set.
    pub fn fingerprint(&self) -> [u8; 32] {
        self.exact.fingerprint()
    }

    fn check(&self, found: &[u8; 32]) -> Result<()> {
        self.exact.check_fingerprint(found)
    }
}

/// A BGV ciphertext: it decrypts to `α·m + t·e` with `α` its correction factor.
#[derive(Clone, Debug)]
pub struct BgvCiphertext {
    inner: Ciphertext,
    correction: u64,
    fingerprint: [u8; 32],
}

impl BgvCiphertext {
    /// Level ℓ.
    pub fn level(&self) -> usize {
        self.inner.level()
    }

    /// Number of parts (2, or 3 before relinearization).
    pub fn size(&self) -> usize {
        self.inner.size()
    }

    /// The correction factor `α` (modulo `t`).
    pub fn correction(&self) -> u64 {
        self.correction
    }

    /// Serializes the ciphertext.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = header(KIND_BGV_CIPHERTEXT, &self.fingerprint);
        v.extend_from_slice(&self.correction.to_le_bytes());
        v.extend(self.inner.to_bytes());
        v
    }

    /// Reads a ciphertext made for `ctx`'s parameters.
    pub fn from_bytes(ctx: &BgvContext, bytes: &[u8]) -> Result<Self> {
        let what = "BGV ciphertext";
        let (fp, rest) = read_header(bytes, KIND_BGV_CIPHERTEXT, what)?;
        ctx.check(&fp)?;
        let (alpha, rest) = rest.split_first_chunk::<8>().ok_or(HeError::Deserialize {
            what,
            reason: "truncated".into(),
        })?;
        let correction = u64::from_le_bytes(*alpha);
        if correction == 0 || correction >= ctx.plain_modulus() {
            return Err(HeError::Deserialize {
                what,
                reason: format!("correction factor {correction} is not a unit modulo t"),
            });
        }
        let inner = Ciphertext::from_bytes(ctx.core(), rest)?;
        if inner.scale() != 1.0 {
            return Err(HeError::Deserialize {
                what,
                reason: "a BGV ciphertext has scale 1".into(),
            });
        }
        Ok(Self {
            inner,
            correction,
            fingerprint: fp,
        })
    }
}

/// `c·m` with centred coefficients over `q_0..q_ℓ`, NTT form, as a core plaintext.
fn lift(ctx: &BgvContext, pt: &BfvPlaintext, level: usize, c: u64) -> Result<Plaintext> {
    ctx.check(&pt.fingerprint)?;
    let t = ctx.t;
    let tv = t.value();
    let signed: Vec<i64> = pt
        .coeffs
        .iter()
        .map(|&x| {
            let v = t.mul(x, c);
            if v > tv / 2 {
                v as i64 - tv as i64
            } else {
                v as i64
            }
        })
        .collect();
    let core = ctx.core();
    let basis: Vec<usize> = (0..=level).collect();
    let mut poly = RnsPoly::from_signed(core.ring(), &basis, &signed)?;
    poly.to_ntt();
    Ok(Plaintext {
        poly,
        scale: 1.0,
        fingerprint: core.fingerprint(),
    })
}

/// Encrypts with the public key or (seeded) the secret key, at the top level, `α = 1`.
#[derive(Clone, Debug)]
pub struct BgvEncryptor {
    ctx: Arc<BgvContext>,
    public: Option<Encryptor>,
    secret: Option<SymmetricEncryptor>,
}

impl BgvEncryptor {
    /// A public-key encryptor.
    pub fn new(ctx: &Arc<BgvContext>, pk: PublicKey) -> Result<Self> {
        Ok(Self {
            ctx: ctx.clone(),
            public: Some(Encryptor::new(ctx.core(), pk)?),
            secret: None,
        })
    }

    /// A secret-key encryptor (seeded ciphertexts, half the size).
    pub fn symmetric(ctx: &Arc<BgvContext>, sk: SecretKey) -> Result<Self> {
        Ok(Self {
            ctx: ctx.clone(),
            public: None,
            secret: Some(SymmetricEncryptor::new(ctx.core(), sk)?),
        })
    }

    /// Encrypts with randomness from the operating system.
    pub fn encrypt(&self, pt: &BfvPlaintext) -> Result<BgvCiphertext> {
        self.encrypt_with_rng(pt, &mut ChaCha20Rng::from_os_rng())
    }

    /// Encrypts with the given RNG.
    pub fn encrypt_with_rng(
        &self,
        pt: &BfvPlaintext,
        rng: &mut ChaCha20Rng,
    ) -> Result<BgvCiphertext> {
        let m = lift(&self.ctx, pt, self.ctx.max_level(), 1)?;
        let inner = match (&self.public, &self.secret) {
            (Some(e), _) => e.encrypt_with_rng(&m, rng)?,
            (None, Some(e)) => e.encrypt_with_rng(&m, rng)?,
            (None, None) => return Err(HeError::Internal("encryptor without a key")),
        };
        Ok(BgvCiphertext {
            inner,
            correction: 1,
            fingerprint: self.ctx.fingerprint(),
        })
    }
}

/// Decrypts BGV ciphertexts and measures their noise.
#[derive(Clone, Debug)]
pub struct BgvDecryptor {
    ctx: Arc<BgvContext>,
    inner: Decryptor,
}

impl BgvDecryptor {
    /// A decryptor for the secret key.
    pub fn new(ctx: &Arc<BgvContext>, sk: SecretKey) -> Result<Self> {
        Ok(Self {
            ctx: ctx.clone(),
            inner: Decryptor::new(ctx.core(), sk)?,
        })
    }

    fn phase(&self, ct: &BgvCiphertext) -> Result<RnsPoly> {
        self.ctx.check(&ct.fingerprint)?;
        let mut x = self.inner.decrypt(&ct.inner)?.poly;
        x.to_coefficient();
        Ok(x)
    }

    /// log2 of the largest `|x|` of the centred phase `x = α·m + t·e`.
    fn noise_log2(&self, x: &RnsPoly, level: usize) -> f64 {
        let crt = &self.ctx.core().crt[level];
        let n = self.ctx.degree();
        let mut residues = vec![0u64; level + 1];
        let mut digits = Vec::with_capacity(level + 1);
        let mut worst = 0f64;
        for c in 0..n {
            for (i, r) in residues.iter_mut().enumerate() {
                *r = x.limb(i)[c];
            }
            worst = worst.max(crt.compose_centered(&residues, &mut digits).abs());
        }
        if worst < 1.0 {
            0.0
        } else {
            worst.log2()
        }
    }

    /// The noise budget in bits: `⌊log2(Q) − log2‖x‖ − 1⌋` for the phase `x` (0 when spent).
    pub fn noise_budget(&self, ct: &BgvCiphertext) -> Result<u32> {
        let x = self.phase(ct)?;
        let q_bits = self.ctx.exact.modulus_bits_at(ct.level());
        Ok((q_bits - self.noise_log2(&x, ct.level()) - 1.0)
            .floor()
            .max(0.0) as u32)
    }

    /// Whether some coefficient of the centred phase has `|x| ≥ Q/4` (floating point: exact
    /// up to `2^-50·Q`, which only moves the threshold by that much).
    fn phase_reaches_quarter(&self, x: &RnsPoly, level: usize) -> bool {
        let hat_inv = &self.ctx.levels[level].hat_inv;
        let moduli = x.moduli();
        let n = self.ctx.degree();
        let mut frac = vec![0f64; n];
        for (i, (m, &(h, inv))) in moduli.iter().zip(hat_inv).enumerate() {
            for (f, &xi) in frac.iter_mut().zip(x.limb(i)) {
                *f += m.mul_shoup(xi, h) as f64 * inv;
            }
        }
        frac.iter().any(|&f| (f - f.round()).abs() >= 0.25)
    }

    /// Decrypts; refuses ([`HeError::NoiseBudgetExhausted`]) when the phase reaches `Q/4`.
    pub fn decrypt(&self, ct: &BgvCiphertext) -> Result<BfvPlaintext> {
        let x = self.phase(ct)?;
        let level = ct.level();
        if self.phase_reaches_quarter(&x, level) {
            return Err(HeError::NoiseBudgetExhausted { level });
        }
        let n = self.ctx.degree();
        let mut coeffs = vec![0u64; n];
        self.ctx.levels[level]
            .to_t
            .convert_exact(n, x.data(), &mut coeffs)?;
        let t = self.ctx.t;
        let inv = t
            .inv(ct.correction)
            .ok_or(HeError::Internal("correction factor is not a unit"))?;
        for c in coeffs.iter_mut() {
            *c = t.mul(*c, inv);
        }
        Ok(BfvPlaintext {
            coeffs,
            fingerprint: self.ctx.fingerprint(),
        })
    }
}

/// Homomorphic operations on BGV ciphertexts.
#[derive(Clone, Debug)]
pub struct BgvEvaluator {
    ctx: Arc<BgvContext>,
    ev: Evaluator,
}

impl BgvEvaluator {
    /// An evaluator for the context.
    pub fn new(ctx: &Arc<BgvContext>) -> Self {
        Self {
            ctx: ctx.clone(),
            ev: Evaluator::new(ctx.core()),
        }
    }

    fn wrap(&self, inner: Ciphertext, correction: u64) -> BgvCiphertext {
        BgvCiphertext {
            inner,
            correction,
            fingerprint: self.ctx.fingerprint(),
        }
    }

    fn check(&self, a: &BgvCiphertext) -> Result<()> {
        self.ctx.check(&a.fingerprint)
    }

    /// `b` rescaled to carry `a`'s correction factor (borrowed when it already does).
    fn aligned<'b>(
        &self,
        a: &BgvCiphertext,
        b: &'b BgvCiphertext,
    ) -> Result<std::borrow::Cow<'b, Ciphertext>> {
        self.check(a)?;
        self.check(b)?;
        if a.correction == b.correction {
            return Ok(std::borrow::Cow::Borrowed(&b.inner));
        }
        let t = self.ctx.t;
        let inv = t
            .inv(b.correction)
            .ok_or(HeError::Internal("correction factor is not a unit"))?;
        Ok(std::borrow::Cow::Owned(
            self.scaled(&b.inner, t.mul(a.correction, inv)),
        ))
    }

    /// `c · k` for a constant `k` modulo `t` (centred).
    fn scaled(&self, c: &Ciphertext, k: u64) -> Ciphertext {
        crate::bfv::evaluator::scale_by_constant(self.ctx.core(), c, k, self.ctx.plain_modulus())
    }

    /// `a + b`.
    pub fn add(&self, a: &BgvCiphertext, b: &BgvCiphertext) -> Result<BgvCiphertext> {
        let b = self.aligned(a, b)?;
        Ok(self.wrap(self.ev.add(&a.inner, &b)?, a.correction))
    }

    /// `a − b`.
    pub fn sub(&self, a: &BgvCiphertext, b: &BgvCiphertext) -> Result<BgvCiphertext> {
        let b = self.aligned(a, b)?;
        Ok(self.wrap(self.ev.sub(&a.inner, &b)?, a.correction))
    }

    /// `−a`.
    pub fn negate(&self, a: &BgvCiphertext) -> Result<BgvCiphertext> {
        self.check(a)?;
        Ok(self.wrap(self.ev.negate(&a.inner)?, a.correction))
    }

    /// `a + m`.
    pub fn add_plain(&self, a: &BgvCiphertext, pt: &BfvPlaintext) -> Result<BgvCiphertext> {
        self.check(a)?;
        let m = lift(&self.ctx, pt, a.level(), a.correction)?;
        Ok(self.wrap(self.ev.add_plain(&a.inner, &m)?, a.correction))
    }

    /// `a · m` (slot-wise).
    pub fn multiply_plain(&self, a: &BgvCiphertext, pt: &BfvPlaintext) -> Result<BgvCiphertext> {
        self.check(a)?;
        let m = lift(&self.ctx, pt, a.level(), 1)?;
        Ok(self.wrap(self.ev.multiply_plain(&a.inner, &m)?, a.correction))
    }

    /// `a · c` in every slot.
    pub fn multiply_scalar(&self, a: &BgvCiphertext, c: i64) -> Result<BgvCiphertext> {
        self.check(a)?;
        let k = c.rem_euclid(self.ctx.plain_modulus() as i64) as u64;
        Ok(self.wrap(self.scaled(&a.inner, k), a.correction))
    }

    /// `a · b` without relinearization (a plain tensor product; follow it with
    /// [`mod_switch_to_next`](Self::mod_switch_to_next) to keep the noise down).
    pub fn multiply(&self, a: &BgvCiphertext, b: &BgvCiphertext) -> Result<BgvCiphertext> {
        self.check(a)?;
        self.check(b)?;
        let inner = if std::ptr::eq(a, b) {
            self.ev.square(&a.inner)?
        } else {
            self.ev.multiply(&a.inner, &b.inner)?
        };
        Ok(self.wrap(inner, self.ctx.t.mul(a.correction, b.correction)))
    }

    /// Relinearizes a 3-part ciphertext.
    pub fn relinearize(
        &self,
        a: &BgvCiphertext,
        rlk: &RelinearizationKey,
    ) -> Result<BgvCiphertext> {
        self.check(a)?;
        Ok(self.wrap(self.ev.relinearize(&a.inner, rlk)?, a.correction))
    }

    /// `relinearize(a · b)`.
    pub fn multiply_relin(
        &self,
        a: &BgvCiphertext,
        b: &BgvCiphertext,
        rlk: &RelinearizationKey,
    ) -> Result<BgvCiphertext> {
        self.relinearize(&self.multiply(a, b)?, rlk)
    }

    /// Rotates both rows left by `step`.
    pub fn rotate_rows(
        &self,
        a: &BgvCiphertext,
        step: i64,
        gk: &GaloisKeys,
    ) -> Result<BgvCiphertext> {
        self.check(a)?;
        Ok(self.wrap(self.ev.rotate(&a.inner, step, gk)?, a.correction))
    }

    /// Swaps the two rows.
    pub fn rotate_columns(&self, a: &BgvCiphertext, gk: &GaloisKeys) -> Result<BgvCiphertext> {
        self.check(a)?;
        Ok(self.wrap(self.ev.conjugate(&a.inner, gk)?, a.correction))
    }

    /// Divides by the last prime (`(c − δ)/q_ℓ` with `δ ≡ c (mod q_ℓ)`, `δ ≡ 0 (mod t)`): the
    /// noise shrinks by `q_ℓ`, the correction factor is multiplied by `q_ℓ^{-1} mod t`.
    pub fn mod_switch_to_next(&self, a: &BgvCiphertext) -> Result<BgvCiphertext> {
        self.check(a)?;
        let level = a.level();
        if level == 0 {
            return Err(HeError::OutOfLevels { needed: 1, left: 0 });
        }
        let tables = &self.ctx.levels[level];
        let ring = self.ctx.core().ring();
        let n = self.ctx.degree();
        let t = self.ctx.plain_modulus();
        let q_last = ring.moduli()[level];
        let mut out = a.inner.clone();
        out.seed = None;
        for part in out.parts.iter_mut() {
            // w = [c·t^{-1}]_{q_ℓ}, centred.
            let mut w = part.limb(level).to_vec();
            ring.ntt_inverse(level, &mut w);
            ring.mul_constant_assign(level, &mut w, tables.t_inv_last);
            let half = q_last.value() / 2;
            part.truncate_limbs(level)?;
            let moduli = part.moduli();
            for_each_limb(part.data_mut(), n, NTT_COST, |i, limb| {
                let m = &moduli[i];
                let q_mod = m.reduce(q_last.value());
                let t_mod = m.reduce(t);
                let mut delta: Vec<u64> = w
                    .iter()
                    .map(|&x| {
                        let r = m.reduce(x);
                        let r = if x > half { m.sub(r, q_mod) } else { r };
                        m.mul(r, t_mod)
                    })
                    .collect();
                ring.ntt_forward(i, &mut delta);
                m.sub_assign_slices(limb, &delta);
                let inv = m.inv(q_mod).unwrap_or(0);
                ring.mul_constant_assign(i, limb, inv);
            });
        }
        let correction = self.ctx.t.mul(a.correction, tables.q_last_inv_t);
        Ok(self.wrap(out, correction))
    }

    /// Switches down to `level`.
    pub fn mod_switch_to_level(&self, a: &BgvCiphertext, level: usize) -> Result<BgvCiphertext> {
        if level > a.level() {
            return Err(HeError::LevelMismatch {
                left: a.level(),
                right: level,
            });
        }
        let mut out = a.clone();
        while out.level() > level {
            out = self.mod_switch_to_next(&out)?;
        }
        Ok(out)
    }
}
