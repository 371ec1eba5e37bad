//! Keys: secret, public, relinearization, Galois (rotations and conjugation), and the
//! generator that makes them.
//!
//! Switching keys use the hybrid (special-prime) form: for each of the `dnum` digits `D_j` of
//! the ciphertext modulus, `(b_j, a_j)` over `Q·P` with
//! `b_j = −a_j·s + e_j + P·[i ∈ D_j]·s'` (limb-wise), so that key switching divides by `P` at
//! the end and the error stays small. The uniform halves `a_j` are generated from a 32-byte
//! seed, which is all that is serialized of them.

use std::collections::BTreeMap;
use std::sync::Arc;

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use veil_math::{sampler, Representation, RnsPoly};

use crate::ckks::context::CkksContext;
use crate::error::{HeError, Result};

/// The secret key `s` (uniform ternary), kept in NTT form over all primes. Zeroized on drop,
/// never printed, compared in constant time.
#[derive(Clone)]
pub struct SecretKey {
    pub(crate) s: RnsPoly,
    pub(crate) fingerprint: [u8; 32],
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey { .. }")
    }
}

impl Zeroize for SecretKey {
    fn zeroize(&mut self) {
        self.s.zeroize();
    }
}

impl Drop for SecretKey {
    fn drop(&mut self) {
        self.zeroize();
    }
}

impl ZeroizeOnDrop for SecretKey {}

impl PartialEq for SecretKey {
    /// Constant-time in the coefficients, and without copying them (a copy grown by
    /// `collect` would leave freed, unzeroized buffers behind).
    fn eq(&self, other: &Self) -> bool {
        bool::from(self.s.data().ct_eq(other.s.data())) && self.fingerprint == other.fingerprint
    }
}

impl SecretKey {
    /// Fingerprint of the parameter set.
    pub fn fingerprint(&self) -> &[u8; 32] {
        &self.fingerprint
    }
}

/// The public key `(b, a) = (−a·s + e, a)` over all primes, special primes included:
/// encryption happens over `Q·P` and divides by `P`, which shrinks the fresh noise to the
/// rounding error (as SEAL does).
#[derive(Clone, Debug)]
pub struct PublicKey {
    pub(crate) b: RnsPoly,
    pub(crate) a: RnsPoly,
    pub(crate) seed: [u8; 32],
    pub(crate) fingerprint: [u8; 32],
}

impl PublicKey {
    /// Fingerprint of the parameter set.
    pub fn fingerprint(&self) -> &[u8; 32] {
        &self.fingerprint
    }
}

/// A key-switching key from some `s'` to `s`: one `(b_j, a_j)` pair per digit. A key made
/// for ciphertexts up to level `ℓ` below the top holds only the digits and limbs those need
/// (`q_0..q_ℓ` and the special primes): keys for rotations that happen low in a computation
/// are that much smaller.
#[derive(Clone, Debug)]
pub struct SwitchingKey {
    pub(crate) b: Vec<RnsPoly>,
    pub(crate) a: Vec<RnsPoly>,
    /// The highest ciphertext level the key serves; its polynomials are over
    /// `ctx.ext_basis(level)`.
    pub(crate) level: usize,
    pub(crate) seed: [u8; 32],
    pub(crate) fingerprint: [u8; 32],
}

impl SwitchingKey {
    /// Number of digits (dnum at the top level, fewer for a key made for lower levels).
    pub fn digits(&self) -> usize {
        self.b.len()
    }

    /// The highest ciphertext level the key serves.
    pub fn level(&self) -> usize {
        self.level
    }

    /// Position of global prime `prime` in the key's basis (`q_0..q_level`, then the
    /// special primes), for a prime of the extended basis at a level the key serves.
    pub(crate) fn limb_position(&self, prime: usize, max_level: usize) -> usize {
        if prime <= self.level {
            prime
        } else {
            prime - (max_level - self.level)
        }
    }

    /// Fingerprint of the parameter set.
    pub fn fingerprint(&self) -> &[u8; 32] {
        &self.fingerprint
    }
}

/// The two keys of sparse-secret encapsulation ([`KeyGenerator::encapsulation_keys`]): public,
/// like the other switching keys.
#[derive(Clone, Debug)]
pub struct EncapsulationKeys {
    pub(crate) to_sparse: SwitchingKey,
    pub(crate) to_dense: SwitchingKey,
    pub(crate) weight: usize,
}

impl EncapsulationKeys {
    /// The ephemeral secret's Hamming weight `h`.
    pub fn weight(&self) -> usize {
        self.weight
    }
}

/// The relinearization key: switches `s²` to `s`.
#[derive(Clone, Debug)]
pub struct RelinearizationKey(pub(crate) SwitchingKey);

impl RelinearizationKey {
    /// The underlying switching key.
    pub fn switching_key(&self) -> &SwitchingKey {
        &self.0
    }

    /// The highest ciphertext level the key relinearizes
    /// ([`KeyGenerator::relin_key_at_level`]).
    pub fn level(&self) -> usize {
        self.0.level
    }
}

/// Galois keys: switching keys from `s(X^g)` to `s`, by Galois element `g`.
#[derive(Clone, Debug, Default)]
pub struct GaloisKeys {
    pub(crate) keys: BTreeMap<u64, SwitchingKey>,
}

impl GaloisKeys {
    /// Whether a key for Galois element `g` is present.
    pub fn contains(&self, g: u64) -> bool {
        self.keys.contains_key(&g)
    }

    /// The Galois elements present.
    pub fn elements(&self) -> impl Iterator<Item = u64> + '_ {
        self.keys.keys().copied()
    }

    /// The key for `g`.
    pub fn get(&self, g: u64) -> Option<&SwitchingKey> {
        self.keys.get(&g)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Adds the keys of `other` (same parameters).
    pub fn extend(&mut self, other: GaloisKeys) {
        self.keys.extend(other.keys);
    }
}

/// Generates a secret key and the keys derived from it. Randomness comes from a
/// `ChaCha20Rng` seeded by the operating system (or the RNG given to
/// [`KeyGenerator::with_rng`]).
pub struct KeyGenerator {
    ctx: Arc<CkksContext>,
    sk: SecretKey,
    rng: ChaCha20Rng,
}

impl std::fmt::Debug for KeyGenerator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyGenerator { .. }")
    }
}

/// Uniform polynomial over `basis` in NTT form from `rng` (deterministic given the RNG state).
pub(crate) fn uniform_poly(
    ctx: &CkksContext,
    basis: &[usize],
    rng: &mut ChaCha20Rng,
) -> Result<RnsPoly> {
    let mut p = RnsPoly::zero(ctx.ring(), basis, Representation::Ntt)?;
    let moduli = p.moduli();
    for (l, m) in moduli.iter().enumerate() {
        sampler::uniform_mod(rng, m, p.limb_mut(l));
    }
    Ok(p)
}

/// A fresh Gaussian error polynomial over `basis`, in NTT form (times `t` in a BGV core).
pub(crate) fn error_poly(
    ctx: &CkksContext,
    basis: &[usize],
    rng: &mut ChaCha20Rng,
) -> Result<RnsPoly> {
    let mut e = Zeroizing::new(vec![0i64; ctx.degree()]);
    ctx.gaussian.fill(rng, &mut e);
    if let Some(plain) = &ctx.plain {
        // BGV: every error is t·e, so that c_0 + c_1·s stays ≡ m (mod t). |e| ≤ ~40 and
        // t < 2^41: no overflow.
        let t = plain.t as i64;
        e.iter_mut().for_each(|x| *x *= t);
    }
    let mut p = RnsPoly::from_signed(ctx.ring(), basis, &e)?;
    p.to_ntt();
    Ok(p)
}

/// A fresh ternary polynomial over `basis`, in NTT form.
pub(crate) fn ternary_poly(
    ctx: &CkksContext,
    basis: &[usize],
    rng: &mut ChaCha20Rng,
) -> Result<RnsPoly> {
    let mut t = Zeroizing::new(vec![0i64; ctx.degree()]);
    sampler::ternary(rng, &mut t);
    let mut p = RnsPoly::from_signed(ctx.ring(), basis, &t)?;
    p.to_ntt();
    Ok(p)
}

impl KeyGenerator {
    /// A generator with a fresh secret key, seeded from the operating system.
    pub fn new(ctx: &Arc<CkksContext>) -> Result<Self> {
        Self::with_rng(ctx, ChaCha20Rng::from_os_rng())
    }

    /// A generator using the given RNG (tests and reproducible experiments).
    pub fn with_rng(ctx: &Arc<CkksContext>, mut rng: ChaCha20Rng) -> Result<Self> {
        let s = ternary_poly(ctx, &ctx.full_basis(), &mut rng)?;
        Ok(Self {
            ctx: ctx.clone(),
            sk: SecretKey {
                s,
                fingerprint: ctx.fingerprint(),
            },
            rng,
        })
    }

    /// A generator for an existing secret key.
    pub fn from_secret_key(ctx: &Arc<CkksContext>, sk: SecretKey) -> Result<Self> {
        ctx.check_fingerprint(&sk.fingerprint)?;
        Ok(Self {
            ctx: ctx.clone(),
            sk,
            rng: ChaCha20Rng::from_os_rng(),
        })
    }

    /// The secret key.
    pub fn secret_key(&self) -> &SecretKey {
        &self.sk
    }

    fn fresh_seed(&mut self) -> [u8; 32] {
        let mut seed = [0u8; 32];
        self.rng.fill_bytes(&mut seed);
        seed
    }

    /// A public key.
    pub fn public_key(&mut self) -> Result<PublicKey> {
        let basis = self.ctx.full_basis();
        let seed = self.fresh_seed();
        let a = uniform_poly(&self.ctx, &basis, &mut ChaCha20Rng::from_seed(seed))?;
        let mut b = error_poly(&self.ctx, &basis, &mut self.rng)?;
        // a·s with a public is as secret as s.
        let mut a_s = Zeroizing::new(RnsPoly::zero(self.ctx.ring(), &basis, Representation::Ntt)?);
        a_s.add_mul_assign_prefix(&a, &self.sk.s)?;
        b.sub_assign(&a_s)?;
        Ok(PublicKey {
            b,
            a,
            seed,
            fingerprint: self.ctx.fingerprint(),
        })
    }

    /// A switching key from `s_prime` (NTT form over all primes) to the secret key.
    pub(crate) fn switching_key(&mut self, s_prime: &RnsPoly) -> Result<SwitchingKey> {
        self.switching_key_at_level(s_prime, self.ctx.max_level())
    }

    /// A switching key from `s_prime` (NTT form over all primes) to the secret key, for
    /// ciphertexts up to `level`.
    pub(crate) fn switching_key_at_level(
        &mut self,
        s_prime: &RnsPoly,
        level: usize,
    ) -> Result<SwitchingKey> {
        let target = Zeroizing::new(self.sk.s.clone());
        self.switching_key_between(s_prime, &target, level)
    }

    /// A switching key from `s_prime` to `target` (both NTT form over all primes), for
    /// ciphertexts up to `level`.
    fn switching_key_between(
        &mut self,
        s_prime: &RnsPoly,
        target: &RnsPoly,
        level: usize,
    ) -> Result<SwitchingKey> {
        let ctx = self.ctx.clone();
        let tables = ctx.key_switch.get(level).ok_or(HeError::OutOfLevels {
            needed: level,
            left: ctx.max_level(),
        })?;
        let basis = ctx.ext_basis(level);
        // The secret key's limbs over the key's basis (a secret copy, zeroized on drop).
        let mut s = Zeroizing::new(RnsPoly::zero(ctx.ring(), &basis, Representation::Ntt)?);
        for (pos, &prime) in basis.iter().enumerate() {
            s.limb_mut(pos).copy_from_slice(target.limb(prime));
        }
        let seed = self.fresh_seed();
        let mut a_rng = ChaCha20Rng::from_seed(seed);
        let mut bs = Vec::with_capacity(tables.digit_positions.len());
        let mut as_ = Vec::with_capacity(tables.digit_positions.len());
        for digit in &tables.digit_positions {
            let a = uniform_poly(&ctx, &basis, &mut a_rng)?;
            let mut b = error_poly(&ctx, &basis, &mut self.rng)?;
            let mut a_s = Zeroizing::new(RnsPoly::zero(ctx.ring(), &basis, Representation::Ntt)?);
            a_s.add_mul_assign_prefix(&a, &s)?;
            b.sub_assign(&a_s)?;
            for &i in digit {
                let m = ctx.ring().moduli()[i];
                let factor = m.shoup(ctx.p_mod_q[i]);
                let sp = s_prime.limb(i);
                for (x, &y) in b.limb_mut(i).iter_mut().zip(sp) {
                    *x = m.add(*x, m.mul_shoup(y, factor));
                }
            }
            bs.push(b);
            as_.push(a);
        }
        Ok(SwitchingKey {
            b: bs,
            a: as_,
            level,
            seed,
            fingerprint: ctx.fingerprint(),
        })
    }

    /// Keys for sparse-secret encapsulation in bootstrapping (Bossuat, Troncoso-Pastoriza and
    /// Hubaux, ePrint 2022/024): a fresh ternary secret `s'` of exactly `weight` non-zero
    /// coefficients, a key switching level-0 ciphertexts from `s` to `s'` and one switching
    /// top-level ciphertexts from `s'` back to `s`. `s'` itself is zeroized when this returns:
    /// nothing else ever needs it.
    pub fn encapsulation_keys(&mut self, weight: usize) -> Result<EncapsulationKeys> {
        let n = self.ctx.degree();
        if weight == 0 || weight > n {
            return Err(HeError::InvalidParameters(format!(
                "an ephemeral secret weight must be between 1 and N = {n}, not {weight}"
            )));
        }
        let mut t = Zeroizing::new(vec![0i64; n]);
        sampler::sparse_ternary(&mut self.rng, weight, &mut t);
        let mut sparse = Zeroizing::new(RnsPoly::from_signed(
            self.ctx.ring(),
            &self.ctx.full_basis(),
            &t,
        )?);
        sparse.to_ntt();
        let dense = Zeroizing::new(self.sk.s.clone());
        let to_sparse = self.switching_key_between(&dense, &sparse, 0)?;
        let to_dense = self.switching_key_between(&sparse, &dense, self.ctx.max_level())?;
        Ok(EncapsulationKeys {
            to_sparse,
            to_dense,
            weight,
        })
    }

    /// The relinearization key (switches `s²` to `s`).
    pub fn relin_key(&mut self) -> Result<RelinearizationKey> {
        self.relin_key_at_level(self.ctx.max_level())
    }

    /// A relinearization key for products of ciphertexts up to `level` only: it holds only
    /// the digits and limbs that level needs, so a computation whose products all happen
    /// below the top level ships a smaller key. Relinearizing above `level` is an error
    /// ([`HeError::RelinKeyLevel`]).
    pub fn relin_key_at_level(&mut self, level: usize) -> Result<RelinearizationKey> {
        if level > self.ctx.max_level() {
            return Err(HeError::OutOfLevels {
                needed: level,
                left: self.ctx.max_level(),
            });
        }
        let s2 = Zeroizing::new(RnsPoly::mul(&self.sk.s, &self.sk.s)?);
        Ok(RelinearizationKey(self.switching_key_at_level(&s2, level)?))
    }

    /// The Galois key for element `g` (odd, modulo 2N).
    pub fn galois_key_for_element(&mut self, g: u64) -> Result<SwitchingKey> {
        let sg = Zeroizing::new(self.sk.s.automorphism(g)?);
        self.switching_key(&sg)
    }

    /// Galois keys for the given rotation steps (positive: left), plus the conjugation key if
    /// asked. `progress(done, total)` is called after each key.
    pub fn galois_keys_with_progress(
        &mut self,
        steps: &[i64],
        conjugation: bool,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<GaloisKeys> {
        let mut elements: Vec<u64> = steps
            .iter()
            .filter(|&&s| s.rem_euclid(self.ctx.slots() as i64) != 0)
            .map(|&s| self.ctx.galois_element_for_step(s))
            .collect();
        if conjugation {
            elements.push(self.ctx.conjugation_element());
        }
        elements.sort_unstable();
        elements.dedup();
        let total = elements.len();
        let mut keys = GaloisKeys::default();
        for (done, g) in elements.into_iter().enumerate() {
            let k = self.galois_key_for_element(g)?;
            keys.keys.insert(g, k);
            progress(done + 1, total);
        }
        Ok(keys)
    }

    /// Galois keys for the given rotation steps (positive: left).
    pub fn galois_keys(&mut self, steps: &[i64]) -> Result<GaloisKeys> {
        self.galois_keys_with_progress(steps, false, &mut |_, _| {})
    }

    /// Galois keys for rotation steps that only happen up to a given ciphertext level:
    /// `(step, level)` pairs (a step listed twice gets the higher level). Each key holds
    /// only the digits and limbs its level needs, so a computation that rotates low in the
    /// chain ships smaller keys; rotating a ciphertext above a key's level is an error
    /// ([`HeError::GaloisKeyLevel`]).
    pub fn galois_keys_at_levels(&mut self, steps: &[(i64, usize)]) -> Result<GaloisKeys> {
        self.galois_keys_at_levels_with_progress(steps, None, &mut |_, _| {})
    }

    /// [`galois_keys_at_levels`](Self::galois_keys_at_levels), plus the conjugation key for
    /// ciphertexts up to `conjugation` if given; `progress(done, total)` after each key.
    pub fn galois_keys_at_levels_with_progress(
        &mut self,
        steps: &[(i64, usize)],
        conjugation: Option<usize>,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<GaloisKeys> {
        let mut levels: BTreeMap<u64, usize> = BTreeMap::new();
        for &(step, level) in steps {
            if step.rem_euclid(self.ctx.slots() as i64) == 0 {
                continue;
            }
            if level > self.ctx.max_level() {
                return Err(HeError::OutOfLevels {
                    needed: level,
                    left: self.ctx.max_level(),
                });
            }
            let g = self.ctx.galois_element_for_step(step);
            let entry = levels.entry(g).or_insert(level);
            *entry = (*entry).max(level);
        }
        if let Some(level) = conjugation {
            if level > self.ctx.max_level() {
                return Err(HeError::OutOfLevels {
                    needed: level,
                    left: self.ctx.max_level(),
                });
            }
            let entry = levels
                .entry(self.ctx.conjugation_element())
                .or_insert(level);
            *entry = (*entry).max(level);
        }
        let total = levels.len();
        let mut keys = GaloisKeys::default();
        for (done, (g, level)) in levels.into_iter().enumerate() {
            let sg = Zeroizing::new(self.sk.s.automorphism(g)?);
            keys.keys
                .insert(g, self.switching_key_at_level(&sg, level)?);
            progress(done + 1, total);
        }
        Ok(keys)
    }

    /// The rotation steps `±1, ±2, ±4, …, ±N/4`: any rotation can be composed from them.
    pub fn power_of_two_steps(ctx: &CkksContext) -> Vec<i64> {
        let slots = ctx.slots() as i64;
        let mut steps = Vec::new();
        let mut s = 1i64;
        while s < slots {
            steps.push(s);
            steps.push(-s);
            s *= 2;
        }
        steps
    }

    /// Galois keys for all power-of-two steps (both directions) and conjugation.
    pub fn galois_keys_power_of_two(
        &mut self,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<GaloisKeys> {
        let steps = Self::power_of_two_steps(&self.ctx);
        self.galois_keys_with_progress(&steps, true, progress)
    }
}
