//! BFV ciphertexts, encryption, decryption (with the invariant noise budget) and homomorphic
//! arithmetic: add, multiply (Halevi–Polyakov–Shoup scaling), relinearize, rotate rows and
//! columns, modulus switching.
//!
//! A BFV ciphertext is a ciphertext of the CKKS core (same ring, keys and key switching) whose
//! plaintext is `Δ·m` with `Δ = ⌊Q/t⌋`; its scale is 1 and unused.

use std::sync::Arc;

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use rayon::prelude::*;
use veil_math::par::{for_each_limb, map_range, should_parallelize};
use veil_math::{Representation, RnsPoly};

use crate::bfv::context::BfvContext;
use crate::bfv::encoder::BfvPlaintext;
use crate::ckks::{
    Ciphertext, Decryptor, Encryptor, Evaluator, GaloisKeys, Plaintext, PublicKey,
    RelinearizationKey, SecretKey, SymmetricEncryptor,
};
use crate::error::{HeError, Result};

const NTT_COST: usize = 32;

/// A BFV ciphertext: 2 parts (3 right after a multiplication), NTT form over `q_0..q_ℓ`.
#[derive(Clone, Debug)]
pub struct BfvCiphertext {
    pub(crate) inner: Ciphertext,
    pub(crate) fingerprint: [u8; 32],
}

impl BfvCiphertext {
    /// Level ℓ: how many modulus switches are left.
    pub fn level(&self) -> usize {
        self.inner.level()
    }

    /// Number of parts (2, or 3 before relinearization).
    pub fn size(&self) -> usize {
        self.inner.size()
    }

    /// Fingerprint of the BFV parameter set.
    pub fn fingerprint(&self) -> &[u8; 32] {
        &self.fingerprint
    }

    /// Bytes of coefficient data held.
    pub fn memory_bytes(&self) -> usize {
        self.inner.memory_bytes()
    }
}

/// `round(Q_ℓ·m/t) = ⌊Q_ℓ/t⌋·m + round((Q_ℓ mod t)·m/t)` over `q_0..q_ℓ` in NTT form.
fn scaled_plain(ctx: &BfvContext, pt: &BfvPlaintext, level: usize) -> Result<Plaintext> {
    ctx.check_fingerprint(&pt.fingerprint)?;
    let core = ctx.core();
    let basis = core_basis(level);
    let n = ctx.degree();
    let mut poly = RnsPoly::zero(core.ring(), &basis, Representation::Coefficient)?;
    let tables = &ctx.levels[level];
    let delta = &tables.delta;
    let t = u128::from(ctx.plain_modulus());
    let r = u128::from(tables.q_mod_t);
    let correction: Vec<u64> = pt
        .coeffs
        .iter()
        .map(|&c| ((r * u128::from(c) + t / 2) / t) as u64)
        .collect();
    let moduli = poly.moduli();
    for_each_limb(poly.data_mut(), n, NTT_COST, |i, limb| {
        let m = &moduli[i];
        let d = m.shoup(delta[i]);
        for ((o, &c), &k) in limb.iter_mut().zip(&pt.coeffs).zip(&correction) {
            *o = m.add(m.mul_shoup(c, d), m.reduce(k));
        }
        core.ring().ntt_forward(i, limb);
    });
    poly.set_representation_unchecked(Representation::Ntt);
    Ok(Plaintext {
        poly,
        scale: 1.0,
        fingerprint: core.fingerprint(),
    })
}

/// `m` with centred coefficients over `q_0..q_ℓ` in NTT form (for plaintext products).
fn centred_plain(ctx: &BfvContext, pt: &BfvPlaintext, level: usize) -> Result<Plaintext> {
    ctx.check_fingerprint(&pt.fingerprint)?;
    let t = ctx.plain_modulus();
    let signed: Vec<i64> = pt
        .coeffs
        .iter()
        .map(|&c| {
            if c > t / 2 {
                c as i64 - t as i64
            } else {
                c as i64
            }
        })
        .collect();
    let core = ctx.core();
    let mut poly = RnsPoly::from_signed(core.ring(), &core_basis(level), &signed)?;
    poly.to_ntt();
    Ok(Plaintext {
        poly,
        scale: 1.0,
        fingerprint: core.fingerprint(),
    })
}

/// Every part of `c` times the constant `k` modulo `t`, taken centred (so the noise grows by at
/// most `t/2`). Shared by BFV's and BGV's scalar products.
pub(crate) fn scale_by_constant(
    core: &crate::ckks::CkksContext,
    c: &Ciphertext,
    k: u64,
    t: u64,
) -> Ciphertext {
    let k = if k > t / 2 {
        k as i64 - t as i64
    } else {
        k as i64
    };
    let mut out = c.clone();
    out.seed = None;
    let ring = core.ring().clone();
    let n = core.degree();
    for part in out.parts.iter_mut() {
        let moduli = part.moduli();
        let primes = part.primes().to_vec();
        for_each_limb(part.data_mut(), n, 2, |i, limb| {
            ring.mul_constant_assign(primes[i], limb, moduli[i].reduce_i64(k));
        });
    }
    out
}

fn core_basis(level: usize) -> Vec<usize> {
    (0..=level).collect()
}

/// Encrypts BFV plaintexts, with the public key or (seeded, half-size) with the secret key.
#[derive(Clone, Debug)]
pub struct BfvEncryptor {
    ctx: Arc<BfvContext>,
    inner: EncryptWith,
}

#[derive(Clone, Debug)]
enum EncryptWith {
    Public(Encryptor),
    Secret(SymmetricEncryptor),
}

impl BfvEncryptor {
    /// An encryptor for the public key.
    pub fn new(ctx: &Arc<BfvContext>, pk: PublicKey) -> Result<Self> {
        Ok(Self {
            ctx: ctx.clone(),
            inner: EncryptWith::Public(Encryptor::new(ctx.core(), pk)?),
        })
    }

    /// An encryptor with the secret key (ciphertexts are seeded: half the size on the wire).
    pub fn symmetric(ctx: &Arc<BfvContext>, sk: SecretKey) -> Result<Self> {
        Ok(Self {
            ctx: ctx.clone(),
            inner: EncryptWith::Secret(SymmetricEncryptor::new(ctx.core(), sk)?),
        })
    }

    /// The public key, for a public-key encryptor.
    pub fn public_key(&self) -> Option<&PublicKey> {
        match &self.inner {
            EncryptWith::Public(e) => Some(e.public_key()),
            EncryptWith::Secret(_) => None,
        }
    }

    /// Encrypts at the top level with randomness from the operating system.
    pub fn encrypt(&self, pt: &BfvPlaintext) -> Result<BfvCiphertext> {
        self.encrypt_with_rng(pt, &mut ChaCha20Rng::from_os_rng())
    }

    /// Encrypts at the top level with the given RNG.
    pub fn encrypt_with_rng(
        &self,
        pt: &BfvPlaintext,
        rng: &mut ChaCha20Rng,
    ) -> Result<BfvCiphertext> {
        let scaled = scaled_plain(&self.ctx, pt, self.ctx.max_level())?;
        let inner = match &self.inner {
            EncryptWith::Public(e) => e.encrypt_with_rng(&scaled, rng)?,
            EncryptWith::Secret(e) => e.encrypt_with_rng(&scaled, rng)?,
        };
        Ok(BfvCiphertext {
            inner,
            fingerprint: self.ctx.fingerprint(),
        })
    }
}

/// Decrypts BFV ciphertexts and measures their noise.
///
/// Decryption rounds the noise away, so a correct decryption reveals only the message. It is
/// correct while the invariant noise stays below 1/2; [`decrypt`](Self::decrypt) refuses
/// ciphertexts whose measured noise is 1/4 or more (SEAL's noise budget 0), where a wrong
/// result is likely. The measurement cannot see noise that has wrapped past 1/2 (a
/// computation far too deep for its parameters): keep the budget positive by construction
/// (see [`BfvVector`](crate::bfv::BfvVector), which refuses on its public estimate).
#[derive(Clone, Debug)]
pub struct BfvDecryptor {
    ctx: Arc<BfvContext>,
    inner: Decryptor,
}

impl BfvDecryptor {
    /// A decryptor for the secret key.
    pub fn new(ctx: &Arc<BfvContext>, sk: SecretKey) -> Result<Self> {
        Ok(Self {
            ctx: ctx.clone(),
            inner: Decryptor::new(ctx.core(), sk)?,
        })
    }

    /// The secret key (handle with care).
    pub fn secret_key(&self) -> &SecretKey {
        self.inner.secret_key()
    }

    /// `[c_0 + c_1·s (+ c_2·s²)]_Q` in coefficient form.
    fn phase(&self, ct: &BfvCiphertext) -> Result<RnsPoly> {
        self.ctx.check_fingerprint(&ct.fingerprint)?;
        let mut x = self.inner.decrypt(&ct.inner)?.poly;
        x.to_coefficient();
        Ok(x)
    }

    /// Decrypts; refuses ([`HeError::NoiseBudgetExhausted`]) when the noise is 1/4 or more.
    pub fn decrypt(&self, ct: &BfvCiphertext) -> Result<BfvPlaintext> {
        let x = self.phase(ct)?;
        let level = ct.level();
        let n = self.ctx.degree();
        let mut coeffs = vec![0u64; n];
        let worst = self.ctx.levels[level]
            .decrypt
            .apply(n, x.data(), None, &mut coeffs, true);
        if worst >= 1 << 62 {
            return Err(HeError::NoiseBudgetExhausted { level });
        }
        Ok(BfvPlaintext {
            coeffs,
            fingerprint: self.ctx.fingerprint(),
        })
    }

    /// The invariant noise budget in bits, as SEAL reports it: `⌊log2(Q) − log2‖[t·x]_Q‖ − 1⌋`
    /// (0 when exhausted). Each multiplication spends about `log2(t·N)` + a few bits.
    pub fn invariant_noise_budget(&self, ct: &BfvCiphertext) -> Result<u32> {
        let x = self.phase(ct)?;
        let level = ct.level();
        let n = self.ctx.degree();
        let t_mod_q = &self.ctx.levels[level].t_mod_q;
        let crt = &self.ctx.core().crt[level];
        let moduli = x.moduli();
        let mut residues = vec![0u64; level + 1];
        let mut digits = Vec::with_capacity(level + 1);
        let mut worst = 0f64;
        for c in 0..n {
            for (i, r) in residues.iter_mut().enumerate() {
                *r = moduli[i].mul(x.limb(i)[c], t_mod_q[i]);
            }
            worst = worst.max(crt.compose_centered(&residues, &mut digits).abs());
        }
        let q_bits = self.ctx.modulus_bits_at(level);
        let noise_bits = if worst < 1.0 { 0.0 } else { worst.log2() };
        Ok((q_bits - noise_bits - 1.0).floor().max(0.0) as u32)
    }
}

/// Homomorphic operations on BFV ciphertexts.
#[derive(Clone, Debug)]
pub struct BfvEvaluator {
    ctx: Arc<BfvContext>,
    ev: Evaluator,
}

impl BfvEvaluator {
    /// An evaluator for the context.
    pub fn new(ctx: &Arc<BfvContext>) -> Self {
        Self {
            ctx: ctx.clone(),
            ev: Evaluator::new(ctx.core()),
        }
    }

    /// The context.
    pub fn context(&self) -> &Arc<BfvContext> {
        &self.ctx
    }

    fn wrap(&self, inner: Ciphertext) -> BfvCiphertext {
        BfvCiphertext {
            inner,
            fingerprint: self.ctx.fingerprint(),
        }
    }

    fn check(&self, a: &BfvCiphertext) -> Result<()> {
        self.ctx.check_fingerprint(&a.fingerprint)
    }

    /// `a + b` (slot-wise, modulo `t`).
    pub fn add(&self, a: &BfvCiphertext, b: &BfvCiphertext) -> Result<BfvCiphertext> {
        self.check(a)?;
        self.check(b)?;
        Ok(self.wrap(self.ev.add(&a.inner, &b.inner)?))
    }

    /// `a − b`.
    pub fn sub(&self, a: &BfvCiphertext, b: &BfvCiphertext) -> Result<BfvCiphertext> {
        self.check(a)?;
        self.check(b)?;
        Ok(self.wrap(self.ev.sub(&a.inner, &b.inner)?))
    }

    /// `−a`.
    pub fn negate(&self, a: &BfvCiphertext) -> Result<BfvCiphertext> {
        self.check(a)?;
        Ok(self.wrap(self.ev.negate(&a.inner)?))
    }

    /// `a + m`.
    pub fn add_plain(&self, a: &BfvCiphertext, pt: &BfvPlaintext) -> Result<BfvCiphertext> {
        self.check(a)?;
        let p = scaled_plain(&self.ctx, pt, a.level())?;
        Ok(self.wrap(self.ev.add_plain(&a.inner, &p)?))
    }

    /// `a − m`.
    pub fn sub_plain(&self, a: &BfvCiphertext, pt: &BfvPlaintext) -> Result<BfvCiphertext> {
        self.check(a)?;
        let p = scaled_plain(&self.ctx, pt, a.level())?;
        Ok(self.wrap(self.ev.sub_plain(&a.inner, &p)?))
    }

    /// `a · m` (slot-wise). Costs about `log2(N·t/2)` bits of noise budget.
    pub fn multiply_plain(&self, a: &BfvCiphertext, pt: &BfvPlaintext) -> Result<BfvCiphertext> {
        self.check(a)?;
        let p = centred_plain(&self.ctx, pt, a.level())?;
        Ok(self.wrap(self.ev.multiply_plain(&a.inner, &p)?))
    }

    /// `a + c` in every slot.
    pub fn add_scalar(&self, a: &BfvCiphertext, c: i64) -> Result<BfvCiphertext> {
        self.check(a)?;
        let t = self.ctx.plain_modulus();
        let c = c.rem_euclid(t as i64) as u64;
        let mut out = a.inner.clone();
        out.seed = None;
        let delta = &self.ctx.levels[a.level()].delta;
        let n = self.ctx.degree();
        let moduli = out.parts[0].moduli();
        // The constant polynomial c evaluates to c at every NTT point.
        for_each_limb(out.parts[0].data_mut(), n, 1, |i, limb| {
            let m = &moduli[i];
            let v = m.mul(m.reduce(c), delta[i]);
            m.add_constant_slice(limb, v);
        });
        Ok(self.wrap(out))
    }

    /// `a · c` in every slot (`c` taken modulo `t`, centred).
    pub fn multiply_scalar(&self, a: &BfvCiphertext, c: i64) -> Result<BfvCiphertext> {
        self.check(a)?;
        let t = self.ctx.plain_modulus();
        let k = c.rem_euclid(t as i64) as u64;
        Ok(self.wrap(scale_by_constant(self.ctx.core(), &a.inner, k, t)))
    }

    /// Lifts a 2-part input's polynomials to `Q_ℓ ∪ B` (NTT form, in the multiplication ring).
    fn lift(&self, parts: &[&RnsPoly], level: usize) -> Result<Vec<RnsPoly>> {
        let n = self.ctx.degree();
        let q_count = self.ctx.max_level() + 1;
        let k = self.ctx.aux_count;
        let tables = &self.ctx.levels[level];
        let ring = &self.ctx.mul_ring;
        let basis: Vec<usize> = (0..=level).chain(q_count..q_count + k).collect();
        map_range(parts.len(), n * (level + 1 + k) * NTT_COST, |idx| {
            let p = parts[idx];
            let mut coeff = p.clone();
            coeff.to_coefficient();
            let mut data = Vec::with_capacity((level + 1 + k) * n);
            data.extend_from_slice(p.data());
            data.resize((level + 1 + k) * n, 0);
            let (_, ext) = data.split_at_mut((level + 1) * n);
            tables.to_aux.convert_exact(n, coeff.data(), ext)?;
            for_each_limb(ext, n, NTT_COST, |j, limb| {
                ring.ntt_forward(q_count + j, limb)
            });
            Ok(RnsPoly::from_limbs(
                ring,
                &basis,
                Representation::Ntt,
                data,
            )?)
        })
        .into_iter()
        .collect()
    }

    /// `round(t·d/Q_ℓ)` back over `q_0..q_ℓ` (NTT form) for a tensor part `d` over `Q_ℓ ∪ B`.
    fn scale_down(&self, mut d: RnsPoly, level: usize) -> Result<RnsPoly> {
        let n = self.ctx.degree();
        let k = self.ctx.aux_count;
        let tables = &self.ctx.levels[level];
        d.to_coefficient();
        let (q_part, b_part) = d.data().split_at((level + 1) * n);
        let mut y = vec![0u64; k * n];
        tables.scale.apply(n, q_part, Some(b_part), &mut y, false);
        let mut out = vec![0u64; (level + 1) * n];
        tables.from_aux.convert_exact(n, &y, &mut out)?;
        let core_ring = self.ctx.core().ring();
        for_each_limb(&mut out, n, NTT_COST, |i, limb| {
            core_ring.ntt_forward(i, limb)
        });
        Ok(RnsPoly::from_limbs(
            core_ring,
            &core_basis(level),
            Representation::Ntt,
            out,
        )?)
    }

    /// `a · b` without relinearization (3 parts). Costs about `log2(t·N)` + a few bits of
    /// noise budget.
    pub fn multiply(&self, a: &BfvCiphertext, b: &BfvCiphertext) -> Result<BfvCiphertext> {
        self.check(a)?;
        self.check(b)?;
        if a.level() != b.level() {
            return Err(HeError::LevelMismatch {
                left: a.level(),
                right: b.level(),
            });
        }
        for c in [a, b] {
            if c.size() != 2 {
                return Err(HeError::WrongCiphertextSize {
                    expected: 2,
                    found: c.size(),
                });
            }
        }
        let level = a.level();
        let same = std::ptr::eq(a, b);
        let parts: Vec<&RnsPoly> = if same {
            vec![&a.inner.parts[0], &a.inner.parts[1]]
        } else {
            vec![
                &a.inner.parts[0],
                &a.inner.parts[1],
                &b.inner.parts[0],
                &b.inner.parts[1],
            ]
        };
        let lifted = self.lift(&parts, level)?;
        let (a0, a1) = (&lifted[0], &lifted[1]);
        let (b0, b1) = if same {
            (a0, a1)
        } else {
            (&lifted[2], &lifted[3])
        };
        let d0 = RnsPoly::mul(a0, b0)?;
        let d2 = RnsPoly::mul(a1, b1)?;
        let mut d1 = RnsPoly::mul(a0, b1)?;
        if same {
            let twice = d1.clone();
            d1.add_assign(&twice)?;
        } else {
            d1.add_mul_assign(a1, b0)?;
        }
        drop(lifted);
        let work = self.ctx.degree() * d0.num_limbs() * NTT_COST;
        let tensor = vec![d0, d1, d2];
        let parts = if should_parallelize(work, 3) {
            tensor
                .into_par_iter()
                .map(|d| self.scale_down(d, level))
                .collect::<Result<Vec<_>>>()?
        } else {
            tensor
                .into_iter()
                .map(|d| self.scale_down(d, level))
                .collect::<Result<Vec<_>>>()?
        };
        Ok(self.wrap(Ciphertext {
            parts,
            scale: 1.0,
            fingerprint: self.ctx.core().fingerprint(),
            seed: None,
        }))
    }

    /// `a²` without relinearization.
    pub fn square(&self, a: &BfvCiphertext) -> Result<BfvCiphertext> {
        self.multiply(a, a)
    }

    /// Relinearizes a 3-part ciphertext back to 2 parts.
    pub fn relinearize(
        &self,
        a: &BfvCiphertext,
        rlk: &RelinearizationKey,
    ) -> Result<BfvCiphertext> {
        self.check(a)?;
        Ok(self.wrap(self.ev.relinearize(&a.inner, rlk)?))
    }

    /// `relinearize(a · b)`.
    pub fn multiply_relin(
        &self,
        a: &BfvCiphertext,
        b: &BfvCiphertext,
        rlk: &RelinearizationKey,
    ) -> Result<BfvCiphertext> {
        self.relinearize(&self.multiply(a, b)?, rlk)
    }

    /// Rotates both rows of the slot matrix left by `step` (right when negative), composing
    /// the rotation from the Galois keys available (as CKKS rotations do).
    pub fn rotate_rows(
        &self,
        a: &BfvCiphertext,
        step: i64,
        gk: &GaloisKeys,
    ) -> Result<BfvCiphertext> {
        self.check(a)?;
        Ok(self.wrap(self.ev.rotate(&a.inner, step, gk)?))
    }

    /// Swaps the two rows of the slot matrix (needs the conjugation key).
    pub fn rotate_columns(&self, a: &BfvCiphertext, gk: &GaloisKeys) -> Result<BfvCiphertext> {
        self.check(a)?;
        Ok(self.wrap(self.ev.conjugate(&a.inner, gk)?))
    }

    /// Switches to the next level: divides by the last prime with rounding. The noise budget
    /// stays about the same while the ciphertext shrinks and later operations get faster.
    pub fn mod_switch_to_next(&self, a: &BfvCiphertext) -> Result<BfvCiphertext> {
        self.check(a)?;
        if a.level() == 0 {
            return Err(HeError::OutOfLevels { needed: 1, left: 0 });
        }
        let mut out = a.inner.clone();
        out.seed = None;
        for p in out.parts.iter_mut() {
            p.rescale_by_last()?;
        }
        Ok(self.wrap(out))
    }

    /// Switches down to `level`.
    pub fn mod_switch_to_level(&self, a: &BfvCiphertext, level: usize) -> Result<BfvCiphertext> {
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
