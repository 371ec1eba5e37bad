//! Encryption (public key, or secret key in seeded form) and decryption.

use std::sync::Arc;

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use zeroize::Zeroizing;

use veil_math::{Representation, RnsPoly};

use crate::ckks::ciphertext::{Ciphertext, Plaintext};
use crate::ckks::context::CkksContext;
use crate::ckks::keys::{error_poly, ternary_poly, uniform_poly, PublicKey, SecretKey};
use crate::ckks::keyswitch::mod_down;
use crate::error::{HeError, Result};

/// Encrypts plaintexts with the public key: `(b·u + e_0 + m, a·u + e_1)`.
#[derive(Clone, Debug)]
pub struct Encryptor {
    ctx: Arc<CkksContext>,
    pk: PublicKey,
}

impl Encryptor {
    /// An encryptor for `pk`.
    pub fn new(ctx: &Arc<CkksContext>, pk: PublicKey) -> Result<Self> {
        ctx.check_fingerprint(&pk.fingerprint)?;
        Ok(Self {
            ctx: ctx.clone(),
            pk,
        })
    }

    /// The public key.
    pub fn public_key(&self) -> &PublicKey {
        &self.pk
    }

    /// Encrypts at the plaintext's level, with randomness from the operating system.
    pub fn encrypt(&self, pt: &Plaintext) -> Result<Ciphertext> {
        self.encrypt_with_rng(pt, &mut ChaCha20Rng::from_os_rng())
    }

    /// Encrypts with the given RNG.
    pub fn encrypt_with_rng(&self, pt: &Plaintext, rng: &mut ChaCha20Rng) -> Result<Ciphertext> {
        self.ctx.check_fingerprint(&pt.fingerprint)?;
        // Encrypt zero over q_0..q_ℓ·P, then divide by P: the noise u·e + e_0 + e_1·s shrinks
        // to a rounding error.
        let level = pt.level();
        let ext = self.ctx.ext_basis(level);
        // u decrypts the ciphertext without the key (c_0 − b·u = m + small): zeroized on drop.
        let u = Zeroizing::new(ternary_poly(&self.ctx, &ext, rng)?);
        let mut c0 = error_poly(&self.ctx, &ext, rng)?;
        let mut c1 = error_poly(&self.ctx, &ext, rng)?;
        c0.add_mul_assign(&self.pk.b.select_primes(&ext)?, &u)?;
        c1.add_mul_assign(&self.pk.a.select_primes(&ext)?, &u)?;
        let mut c0 = mod_down(&self.ctx, c0, level)?;
        let c1 = mod_down(&self.ctx, c1, level)?;
        c0.add_assign(&pt.poly)?;
        Ok(Ciphertext {
            parts: vec![c0, c1],
            scale: pt.scale,
            fingerprint: self.ctx.fingerprint(),
            seed: None,
        })
    }
}

/// Encrypts with the secret key: `(−a·s + e + m, a)` where `a` is expanded from a 32-byte
/// seed; the ciphertext keeps the seed and serializes to half the size.
#[derive(Clone, Debug)]
pub struct SymmetricEncryptor {
    ctx: Arc<CkksContext>,
    sk: SecretKey,
}

impl SymmetricEncryptor {
    /// An encryptor for `sk`.
    pub fn new(ctx: &Arc<CkksContext>, sk: SecretKey) -> Result<Self> {
        ctx.check_fingerprint(&sk.fingerprint)?;
        Ok(Self {
            ctx: ctx.clone(),
            sk,
        })
    }

    /// Encrypts at the plaintext's level, with randomness from the operating system.
    pub fn encrypt(&self, pt: &Plaintext) -> Result<Ciphertext> {
        self.encrypt_with_rng(pt, &mut ChaCha20Rng::from_os_rng())
    }

    /// Encrypts with the given RNG.
    pub fn encrypt_with_rng(&self, pt: &Plaintext, rng: &mut ChaCha20Rng) -> Result<Ciphertext> {
        self.ctx.check_fingerprint(&pt.fingerprint)?;
        let basis = self.ctx.q_basis(pt.level());
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        let a = expand_seeded_a(&self.ctx, &basis, seed)?;
        let mut c0 = error_poly(&self.ctx, &basis, rng)?;
        // a·s with a public is as secret as s.
        let mut a_s = Zeroizing::new(RnsPoly::zero(self.ctx.ring(), &basis, Representation::Ntt)?);
        a_s.add_mul_assign_prefix(&a, &self.sk.s)?;
        c0.sub_assign(&a_s)?;
        c0.add_assign(&pt.poly)?;
        Ok(Ciphertext {
            parts: vec![c0, a],
            scale: pt.scale,
            fingerprint: self.ctx.fingerprint(),
            seed: Some(seed),
        })
    }
}

/// The uniform half of a seeded ciphertext.
pub(crate) fn expand_seeded_a(
    ctx: &CkksContext,
    basis: &[usize],
    seed: [u8; 32],
) -> Result<RnsPoly> {
    uniform_poly(ctx, basis, &mut ChaCha20Rng::from_seed(seed))
}

/// Decrypts ciphertexts: `m = c_0 + c_1·s (+ c_2·s²)`.
///
/// The plaintext is **exact**: it carries the ciphertext's error, which together with the
/// message is a linear equation in the secret key (IND-CPA-D). Keep it, and values decoded
/// from it with [`CkksEncoder::decode`](crate::ckks::CkksEncoder::decode), to the key holder;
/// release values with [`CkksEncoder::decode_flooded`](crate::ckks::CkksEncoder::decode_flooded)
/// (or [`CkksVector::decrypt`](crate::ckks::CkksVector::decrypt)), which floods them.
#[derive(Clone, Debug)]
pub struct Decryptor {
    ctx: Arc<CkksContext>,
    sk: SecretKey,
}

impl Decryptor {
    /// A decryptor for `sk`.
    pub fn new(ctx: &Arc<CkksContext>, sk: SecretKey) -> Result<Self> {
        ctx.check_fingerprint(&sk.fingerprint)?;
        Ok(Self {
            ctx: ctx.clone(),
            sk,
        })
    }

    /// The secret key (handle with care).
    pub fn secret_key(&self) -> &SecretKey {
        &self.sk
    }

    /// Decrypts to a plaintext at the ciphertext's level and scale.
    pub fn decrypt(&self, ct: &Ciphertext) -> Result<Plaintext> {
        self.ctx.check_fingerprint(&ct.fingerprint)?;
        if !(2..=3).contains(&ct.parts.len()) {
            return Err(HeError::WrongCiphertextSize {
                expected: 2,
                found: ct.parts.len(),
            });
        }
        let mut m = ct.parts[0].clone();
        m.add_mul_assign_prefix(&ct.parts[1], &self.sk.s)?;
        if ct.parts.len() == 3 {
            let basis = m.primes().to_vec();
            // Zeroized on every path, early returns included (the whole capacity: the
            // truncated limbs stay in the allocation).
            let mut s = Zeroizing::new(self.sk.s.clone());
            s.truncate_limbs(basis.len())?;
            let s2 = Zeroizing::new(RnsPoly::mul(&s, &s)?);
            m.add_mul_assign_prefix(&ct.parts[2], &s2)?;
        }
        Ok(Plaintext {
            poly: m,
            scale: ct.scale,
            fingerprint: ct.fingerprint,
        })
    }
}
