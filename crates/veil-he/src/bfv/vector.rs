//! [`BfvVector`]: encrypted vectors of integers modulo `t`, TenSEAL's `BFVVector` API, with a
//! public noise estimate that refuses to decrypt a result that may be wrong.

use std::sync::Arc;

use crate::bfv::context::BfvContext;
use crate::bfv::encoder::BatchEncoder;
use crate::bfv::evaluator::{BfvCiphertext, BfvDecryptor, BfvEncryptor, BfvEvaluator};
use crate::bfv::params::BfvParameters;
use crate::ckks::{GaloisKeys, KeyGenerator, PublicKey, RelinearizationKey, SecretKey};

const CONTEXT_MAGIC: &[u8] = b"VBFVCTX1";
use crate::error::{HeError, Result};

/// Keys and helpers for [`BfvVector`]: the key holder's context holds the secret key; a
/// [`public`](Self::public) copy (public, relinearization and Galois keys only) computes.
#[derive(Debug)]
pub struct BfvVectorContext {
    ctx: Arc<BfvContext>,
    encoder: BatchEncoder,
    encryptor: BfvEncryptor,
    pub(crate) decryptor: Option<BfvDecryptor>,
    evaluator: BfvEvaluator,
    rlk: RelinearizationKey,
    pub(crate) gk: GaloisKeys,
}

impl BfvVectorContext {
    /// Generates a secret key, the public and relinearization keys, and Galois keys for every
    /// power-of-two row rotation and the row swap (what [`BfvVector::sum`] and
    /// [`BfvVector::rotate`] need).
    pub fn new(ctx: &Arc<BfvContext>) -> Result<Arc<Self>> {
        let mut kg = KeyGenerator::new(ctx.core())?;
        let pk = kg.public_key()?;
        let rlk = kg.relin_key()?;
        let gk = kg.galois_keys_power_of_two(&mut |_, _| {})?;
        let sk = kg.secret_key().clone();
        Ok(Arc::new(Self {
            ctx: ctx.clone(),
            encoder: BatchEncoder::new(ctx),
            encryptor: BfvEncryptor::new(ctx, pk)?,
            decryptor: Some(BfvDecryptor::new(ctx, sk)?),
            evaluator: BfvEvaluator::new(ctx),
            rlk,
            gk,
        }))
    }

    /// A copy without the secret key, for whoever computes.
    pub fn public(&self) -> Arc<Self> {
        Arc::new(Self {
            ctx: self.ctx.clone(),
            encoder: self.encoder.clone(),
            encryptor: self.encryptor.clone(),
            decryptor: None,
            evaluator: self.evaluator.clone(),
            rlk: self.rlk.clone(),
            gk: self.gk.clone(),
        })
    }

    /// Serializes the public part (parameters, public, relinearization and Galois keys): what
    /// a computing party needs. The secret key is never included.
    pub fn public_to_bytes(&self) -> Vec<u8> {
        let core = self.ctx.core();
        let parts = [
            self.ctx.params().to_bytes(),
            // Always a public-key encryptor here.
            self.encryptor
                .public_key()
                .map(PublicKey::to_bytes)
                .unwrap_or_default(),
            self.rlk.to_bytes(),
            self.gk.to_bytes(core),
        ];
        crate::ckks::vector::join_length_prefixed(CONTEXT_MAGIC, &parts)
    }

    /// The serialized secret key (a zeroizing buffer), if this context holds one.
    pub fn secret_key_bytes(&self) -> Result<Option<zeroize::Zeroizing<Vec<u8>>>> {
        self.decryptor
            .as_ref()
            .map(|d| d.secret_key().to_bytes())
            .transpose()
    }

    /// Rebuilds a context from [`public_to_bytes`](Self::public_to_bytes) and, on the key
    /// holder's side, the secret key. Parameters below 128-bit security are refused.
    pub fn from_public_bytes(bytes: &[u8], secret_key: Option<&[u8]>) -> Result<Arc<Self>> {
        Self::read_public(bytes, secret_key, false)
    }

    /// Like [`from_public_bytes`](Self::from_public_bytes) but accepts parameters below 128-bit
    /// security. **Insecure**: tests and experiments only.
    pub fn from_public_bytes_insecure_allow_below_128_bit_security(
        bytes: &[u8],
        secret_key: Option<&[u8]>,
    ) -> Result<Arc<Self>> {
        Self::read_public(bytes, secret_key, true)
    }

    fn read_public(
        bytes: &[u8],
        secret_key: Option<&[u8]>,
        allow_insecure: bool,
    ) -> Result<Arc<Self>> {
        let bad = |reason: &str| HeError::Deserialize {
            what: "BFV vector context",
            reason: reason.into(),
        };
        let body = bytes
            .strip_prefix(CONTEXT_MAGIC)
            .ok_or_else(|| bad("bad magic or version"))?;
        let parts = crate::ckks::vector::split_length_prefixed(body, 4).map_err(bad)?;
        let params = if allow_insecure {
            BfvParameters::from_bytes_insecure_allow_below_128_bit_security(parts[0])?
        } else {
            BfvParameters::from_bytes(parts[0])?
        };
        let ctx = BfvContext::new(params)?;
        let core = ctx.core();
        let pk = PublicKey::from_bytes(core, parts[1])?;
        let rlk = RelinearizationKey::from_bytes(core, parts[2])?;
        let gk = GaloisKeys::from_bytes(core, parts[3])?;
        let decryptor = secret_key
            .map(|b| BfvDecryptor::new(&ctx, SecretKey::from_bytes(core, b)?))
            .transpose()?;
        Ok(Arc::new(Self {
            encoder: BatchEncoder::new(&ctx),
            encryptor: BfvEncryptor::new(&ctx, pk)?,
            decryptor,
            evaluator: BfvEvaluator::new(&ctx),
            rlk,
            gk,
            ctx,
        }))
    }

    /// Whether this context can decrypt.
    pub fn has_secret_key(&self) -> bool {
        self.decryptor.is_some()
    }

    /// The BFV context.
    pub fn context(&self) -> &Arc<BfvContext> {
        &self.ctx
    }

    /// The low-level evaluator.
    pub fn evaluator(&self) -> &BfvEvaluator {
        &self.evaluator
    }

    fn decryptor(&self) -> Result<&BfvDecryptor> {
        self.decryptor.as_ref().ok_or(HeError::MissingSecretKey)
    }

    /// log2 of the invariant noise of a fresh encryption: `t·8√N / Q` (public-key encryption
    /// divides its noise by the special primes, so what remains is a rounding error times
    /// `‖s‖`; 8√N bounds it with a wide margin).
    fn fresh_noise(&self) -> f64 {
        let n = self.ctx.degree() as f64;
        self.t_bits() + (8.0 * n.sqrt()).log2() - self.ctx.modulus_bits_at(self.ctx.max_level())
    }

    fn t_bits(&self) -> f64 {
        (self.ctx.plain_modulus() as f64).log2()
    }

    /// Noise a key switch (relinearization, rotation) or a modulus switch to `level` adds.
    fn switch_noise(&self, level: usize) -> f64 {
        let n = self.ctx.degree() as f64;
        self.t_bits() + (16.0 * n).log2() - self.ctx.modulus_bits_at(level)
    }
}

/// `log2(2^a + 2^b)`.
fn log_add(a: f64, b: f64) -> f64 {
    let (hi, lo) = if a > b { (a, b) } else { (b, a) };
    hi + (1.0 + (lo - hi).exp2()).log2()
}

/// An encrypted vector of up to N integers modulo `t` (slot-wise arithmetic, as TenSEAL's
/// `BFVVector`). Values are signed, in `(−t/2, t/2]`; results wrap modulo `t`.
#[derive(Clone, Debug)]
pub struct BfvVector {
    ctx: Arc<BfvVectorContext>,
    ct: BfvCiphertext,
    len: usize,
    /// Public estimate of log2 of the invariant noise (an upper bound in practice), or `None`
    /// for a vector read from bytes (its history is unknown).
    noise_log2: Option<f64>,
}

impl BfvVector {
    /// Encrypts `values` (at most N, each in `(−t/2, t/2]`).
    pub fn encrypt(ctx: &Arc<BfvVectorContext>, values: &[i64]) -> Result<Self> {
        let pt = ctx.encoder.encode_signed(values)?;
        Ok(Self {
            ct: ctx.encryptor.encrypt(&pt)?,
            len: values.len(),
            noise_log2: Some(ctx.fresh_noise()),
            ctx: ctx.clone(),
        })
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the vector is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The ciphertext.
    pub fn ciphertext(&self) -> &BfvCiphertext {
        &self.ct
    }

    /// The noise budget (bits) the public estimate leaves, or `None` when unknown (a vector
    /// read from bytes). It depends only on the operations done, never on the key.
    pub fn estimated_noise_budget(&self) -> Option<f64> {
        self.noise_log2.map(|v| (-1.0 - v).max(0.0))
    }

    /// The measured invariant noise budget (bits; needs the secret key). This value depends on
    /// the key: keep it to yourself.
    pub fn noise_budget(&self) -> Result<u32> {
        self.ctx.decryptor()?.invariant_noise_budget(&self.ct)
    }

    /// Decrypts the values (needs the secret key). Refused when the public noise estimate says
    /// the result may be wrong (before the key is touched), or when the measured noise is
    /// 1/4 or more.
    pub fn decrypt(&self) -> Result<Vec<i64>> {
        let dec = self.ctx.decryptor()?;
        if self.noise_log2.is_some_and(|v| v >= -2.0) {
            return Err(HeError::NoiseBudgetExhausted {
                level: self.ct.level(),
            });
        }
        let pt = dec.decrypt(&self.ct)?;
        let mut v = self.ctx.encoder.decode_signed(&pt)?;
        v.truncate(self.len);
        Ok(v)
    }

    fn same_ctx(&self, other: &Self) -> Result<()> {
        if self.len != other.len {
            return Err(HeError::ShapeMismatch(format!(
                "vectors of {} and {} values",
                self.len, other.len
            )));
        }
        Ok(())
    }

    fn with(&self, ct: BfvCiphertext, noise: Option<f64>) -> Self {
        Self {
            ctx: self.ctx.clone(),
            ct,
            len: self.len,
            noise_log2: noise,
        }
    }

    /// Both at the lower of the two levels.
    fn aligned(&self, other: &Self) -> Result<(BfvCiphertext, BfvCiphertext, Option<f64>)> {
        let ev = &self.ctx.evaluator;
        let level = self.ct.level().min(other.ct.level());
        let mut noise = match (self.noise_log2, other.noise_log2) {
            (Some(a), Some(b)) => Some(log_add(a, b)),
            _ => None,
        };
        if self.ct.level() != other.ct.level() {
            noise = noise.map(|v| log_add(v, self.ctx.switch_noise(level)));
        }
        Ok((
            ev.mod_switch_to_level(&self.ct, level)?,
            ev.mod_switch_to_level(&other.ct, level)?,
            noise,
        ))
    }

    /// Slot-wise sum.
    pub fn add(&self, other: &Self) -> Result<Self> {
        self.same_ctx(other)?;
        let (a, b, noise) = self.aligned(other)?;
        Ok(self.with(self.ctx.evaluator.add(&a, &b)?, noise))
    }

    /// Slot-wise difference.
    pub fn sub(&self, other: &Self) -> Result<Self> {
        self.same_ctx(other)?;
        let (a, b, noise) = self.aligned(other)?;
        Ok(self.with(self.ctx.evaluator.sub(&a, &b)?, noise))
    }

    /// Negation.
    pub fn neg(&self) -> Result<Self> {
        Ok(self.with(self.ctx.evaluator.negate(&self.ct)?, self.noise_log2))
    }

    /// Slot-wise product (relinearized). Spends about `log2(t·N)` bits of budget (the estimate
    /// charges `log2(t·N) + 2`).
    pub fn mul(&self, other: &Self) -> Result<Self> {
        self.same_ctx(other)?;
        let (a, b, noise) = self.aligned(other)?;
        let ev = &self.ctx.evaluator;
        let ct = if std::ptr::eq(self, other) {
            ev.relinearize(&ev.square(&a)?, &self.ctx.rlk)?
        } else {
            ev.multiply_relin(&a, &b, &self.ctx.rlk)?
        };
        let n = self.ctx.ctx.degree() as f64;
        let noise = noise.map(|v| {
            log_add(
                v + self.ctx.t_bits() + n.log2() + 1.0,
                self.ctx.switch_noise(a.level()),
            )
        });
        Ok(self.with(ct, noise))
    }

    /// Adds plain values slot-wise (`values.len()` must equal [`len`](Self::len)).
    pub fn add_plain(&self, values: &[i64]) -> Result<Self> {
        self.check_len(values.len())?;
        let pt = self.ctx.encoder.encode_signed(values)?;
        Ok(self.with(
            self.ctx.evaluator.add_plain(&self.ct, &pt)?,
            self.noise_log2,
        ))
    }

    /// Subtracts plain values slot-wise.
    pub fn sub_plain(&self, values: &[i64]) -> Result<Self> {
        self.check_len(values.len())?;
        let pt = self.ctx.encoder.encode_signed(values)?;
        Ok(self.with(
            self.ctx.evaluator.sub_plain(&self.ct, &pt)?,
            self.noise_log2,
        ))
    }

    /// Multiplies by plain values slot-wise. Spends up to `log2(t·√N) + 3` bits of budget.
    pub fn mul_plain(&self, values: &[i64]) -> Result<Self> {
        self.check_len(values.len())?;
        let pt = self.ctx.encoder.encode_signed(values)?;
        let n = self.ctx.ctx.degree() as f64;
        let grow = self.ctx.t_bits() - 1.0 + n.sqrt().log2() + 3.0;
        Ok(self.with(
            self.ctx.evaluator.multiply_plain(&self.ct, &pt)?,
            self.noise_log2.map(|v| v + grow),
        ))
    }

    /// Adds `c` to every value.
    pub fn add_scalar(&self, c: i64) -> Result<Self> {
        let t = self.ctx.ctx.plain_modulus() as i64;
        let c = c.rem_euclid(t);
        let c = if c > t / 2 { c - t } else { c };
        self.add_plain(&vec![c; self.len])
    }

    /// Multiplies every value by `c` (modulo `t`).
    pub fn mul_scalar(&self, c: i64) -> Result<Self> {
        let t = self.ctx.ctx.plain_modulus() as i64;
        let c = c.rem_euclid(t);
        let c = if c > t / 2 { c - t } else { c };
        let grow = (c.unsigned_abs().max(1) as f64).log2();
        Ok(self.with(
            self.ctx.evaluator.multiply_scalar(&self.ct, c)?,
            self.noise_log2.map(|v| v + grow),
        ))
    }

    fn check_len(&self, given: usize) -> Result<()> {
        if given != self.len {
            return Err(HeError::ShapeMismatch(format!(
                "{given} plain values for a vector of {}",
                self.len
            )));
        }
        Ok(())
    }

    /// Rotates left by `step` within the vector's row (values beyond the end come from the
    /// zero padding when the vector is shorter than a row).
    pub fn rotate(&self, step: i64) -> Result<Self> {
        let ct = self
            .ctx
            .evaluator
            .rotate_rows(&self.ct, step, &self.ctx.gk)?;
        let hops = step.unsigned_abs().count_ones().max(1) as f64;
        let noise = self
            .noise_log2
            .map(|v| log_add(v, self.ctx.switch_noise(ct.level()) + hops.log2()));
        Ok(self.with(ct, noise))
    }

    /// The sum of all values, as a vector of length 1.
    pub fn sum(&self) -> Result<Self> {
        let ev = &self.ctx.evaluator;
        let row = self.ctx.ctx.row_size();
        let mut acc = self.ct.clone();
        let mut noise = self.noise_log2;
        let ks = self.ctx.switch_noise(acc.level());
        let mut step = 1usize;
        while step < row {
            let r = ev.rotate_rows(&acc, step as i64, &self.ctx.gk)?;
            acc = ev.add(&acc, &r)?;
            noise = noise.map(|v| log_add(v + 1.0, ks));
            step *= 2;
        }
        if self.len > row {
            let r = ev.rotate_columns(&acc, &self.ctx.gk)?;
            acc = ev.add(&acc, &r)?;
            noise = noise.map(|v| log_add(v + 1.0, ks));
        }
        Ok(Self {
            ctx: self.ctx.clone(),
            ct: acc,
            len: 1,
            noise_log2: noise,
        })
    }

    /// The dot product with another vector, as a vector of length 1.
    pub fn dot(&self, other: &Self) -> Result<Self> {
        self.mul(other)?.sum()
    }

    /// Switches down one level: smaller ciphertext, faster operations, same budget.
    pub fn mod_switch_to_next(&self) -> Result<Self> {
        let ct = self.ctx.evaluator.mod_switch_to_next(&self.ct)?;
        let noise = self
            .noise_log2
            .map(|v| log_add(v, self.ctx.switch_noise(ct.level())));
        Ok(self.with(ct, noise))
    }

    /// Serializes the vector (its length and ciphertext).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = (self.len as u32).to_le_bytes().to_vec();
        v.extend(self.ct.to_bytes());
        v
    }

    /// Reads a vector made for `ctx`'s parameters. Its history is unknown, so it has no public
    /// noise estimate: decryption relies on the measured noise alone.
    pub fn from_bytes(ctx: &Arc<BfvVectorContext>, bytes: &[u8]) -> Result<Self> {
        let bad = |reason: String| HeError::Deserialize {
            what: "BFV vector",
            reason,
        };
        let (len, rest) = bytes
            .split_first_chunk::<4>()
            .ok_or_else(|| bad("truncated".into()))?;
        let len = u32::from_le_bytes(*len) as usize;
        if len > ctx.ctx.slots() {
            return Err(bad(format!(
                "{len} values exceed {} slots",
                ctx.ctx.slots()
            )));
        }
        let ct = BfvCiphertext::from_bytes(&ctx.ctx, rest)?;
        if ct.size() != 2 {
            return Err(bad("a vector's ciphertext has 2 parts".into()));
        }
        Ok(Self {
            ctx: ctx.clone(),
            ct,
            len,
            noise_log2: None,
        })
    }
}
