//! Encrypted vectors of reals, as TenSEAL users know them.
//!
//! A [`VectorContext`] holds the keys (the secret key only on the data owner's side, see
//! [`VectorContext::make_public`]). A [`CkksVector`] is an encrypted `Vec<f64>` that carries
//! its context; `+ − ×` with another vector, a plain slice or a scalar relinearize, rescale
//! and align levels for the caller.
//!
//! Scale management follows a fixed schedule: a vector at level ℓ always has scale `Δ_ℓ`
//! ([`CkksParameters::level_scale`](crate::ckks::CkksParameters::level_scale)), with
//! `Δ_L ≈ 2^scale_bits` and `Δ_{ℓ−1} = Δ_ℓ² / q_ℓ`, so that operands meeting at a level
//! always agree exactly. The primes are chosen so that this schedule stays on target at every
//! level (for the presets, within 10^-4 bits of `2^scale_bits` at every level, instead of
//! the 12 bits the N = 32768 chain drifted by with SEAL's prime choice). A product whose
//! scale the remaining modulus cannot hold is an error ([`HeError::ScaleOutOfRange`]).
//!
//! **Range and precision.** With a first prime of `b_0` bits and scale `2^S`, values up to
//! `|x| ≤ 2^{b_0 − S − 3}` (2^17 = 131072 for every preset) fit at every level; after `d`
//! successive products of such values by factors in `[−1, 1]`, the error (unflooded) is at
//! most `(d + 1) · |x|max · 2^{−(S − 15)}` — measured at full depth on every preset (the
//! N = 32768 preset: 19 products, values ±131072, error 9·10^-3 against a bound of 8·10^-2).
//! [`CkksVector::decrypt`] adds its flood on top (see [`crate::ckks::flooding`]).
//!
//! Slots past the vector's length are kept at zero whenever an operation allows it; when one
//! cannot (rotations, `sum`), the vector is marked and masked (one level) before the next
//! operation that reads across slots.

use std::sync::Arc;

use crate::ckks::ciphertext::Ciphertext;
use crate::ckks::context::CkksContext;
use crate::ckks::encoder::CkksEncoder;
use crate::ckks::encryptor::{Decryptor, Encryptor};
use crate::ckks::evaluator::Evaluator;
use crate::ckks::flooding::{FloodedValues, NoiseFlooding};
use crate::ckks::keys::{EncapsulationKeys, GaloisKeys, KeyGenerator, RelinearizationKey};
use crate::error::{HeError, Result};

/// Progress callback: `(phase, done, total)`.
pub type ProgressFn = Box<dyn FnMut(&str, usize, usize) + Send>;

/// Keys and helpers shared by [`CkksVector`]s.
pub struct VectorContext {
    ckks: Arc<CkksContext>,
    encoder: CkksEncoder,
    encryptor: Encryptor,
    decryptor: Option<Decryptor>,
    evaluator: Evaluator,
    rlk: RelinearizationKey,
    gk: GaloisKeys,
    level_scales: Vec<f64>,
    flooding: NoiseFlooding,
    encapsulation: Option<EncapsulationKeys>,
    /// The bootstrapper products call when a vector is out of levels (held weakly: it holds
    /// this context).
    auto_bootstrap: std::sync::RwLock<Option<std::sync::Weak<crate::ckks::Bootstrapper>>>,
}

impl std::fmt::Debug for VectorContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VectorContext")
            .field("degree", &self.ckks.degree())
            .field("max_level", &self.ckks.max_level())
            .field("galois_keys", &self.gk.len())
            .field("has_secret_key", &self.decryptor.is_some())
            .finish()
    }
}

/// Builder for [`VectorContext`]: generates all keys.
pub struct VectorContextBuilder {
    ckks: Arc<CkksContext>,
    steps: Vec<i64>,
    conjugation: bool,
    power_of_two: bool,
    bootstrap: Option<crate::ckks::BootstrapConfig>,
    progress: Option<ProgressFn>,
    flooding: NoiseFlooding,
}

impl VectorContextBuilder {
    /// Extra rotation steps to generate keys for, besides the power-of-two steps every
    /// context has (e.g. [`CkksVector::matmul_rotation_steps`] for fast `matmul`).
    pub fn rotation_steps(mut self, steps: &[i64]) -> Self {
        self.steps.extend_from_slice(steps);
        self
    }

    /// Also generate the conjugation key.
    pub fn conjugation(mut self, yes: bool) -> Self {
        self.conjugation = yes;
        self
    }

    /// Noise flooding for [`CkksVector::decrypt`] (default: [`NoiseFlooding::default`],
    /// 30-bit statistical security).
    pub fn decryption_flooding(mut self, flooding: NoiseFlooding) -> Self {
        self.flooding = flooding;
        self
    }

    /// Report key-generation progress.
    pub fn progress(mut self, f: ProgressFn) -> Self {
        self.progress = Some(f);
        self
    }

    /// Also generates what bootstrapping with `config` needs: its rotation keys, the
    /// conjugation key and, for sparse-secret encapsulation, the encapsulation keys
    /// (see [`Bootstrapper`](crate::ckks::Bootstrapper)).
    /// Each key is made for the highest level it serves
    /// ([`BootstrapConfig::key_levels`](crate::ckks::BootstrapConfig::key_levels)).
    pub fn bootstrapping(mut self, config: crate::ckks::BootstrapConfig) -> Self {
        self.bootstrap = Some(config);
        self
    }

    /// Whether to generate the power-of-two rotation keys (`±1, ±2, …, ±N/4`) every context
    /// has by default, from which any rotation is composed (default `true`). A context made
    /// only to bootstrap, or with all its steps listed, can skip them: at N = 2^16 they are
    /// 30 keys of ~200 MB.
    pub fn power_of_two_rotations(mut self, yes: bool) -> Self {
        self.power_of_two = yes;
        self
    }

    /// Generates a fresh secret key and the public, relinearization and Galois keys.
    pub fn build(mut self) -> Result<Arc<VectorContext>> {
        let ctx = self.ckks.clone();
        let mut report = |phase: &str, d: usize, t: usize| {
            if let Some(p) = self.progress.as_mut() {
                p(phase, d, t);
            }
        };
        let mut keygen = KeyGenerator::new(&ctx)?;
        report("public key", 0, 1);
        let pk = keygen.public_key()?;
        report("public key", 1, 1);
        report("relinearization key", 0, 1);
        let rlk = keygen.relin_key()?;
        report("relinearization key", 1, 1);
        let mut steps = if self.power_of_two {
            KeyGenerator::power_of_two_steps(&ctx)
        } else {
            Vec::new()
        };
        steps.extend_from_slice(&self.steps);
        let mut gk = keygen.galois_keys_with_progress(&steps, self.conjugation, &mut |d, t| {
            report("Galois keys", d, t)
        })?;
        if let Some(config) = &self.bootstrap {
            let (pairs, conj_level) = config.key_levels(&ctx)?;
            let missing: Vec<(i64, usize)> = pairs
                .into_iter()
                .filter(|&(s, _)| !gk.contains(ctx.galois_element_for_step(s)))
                .collect();
            let conj = (!gk.contains(ctx.conjugation_element())).then_some(conj_level);
            gk.extend(keygen.galois_keys_at_levels_with_progress(
                &missing,
                conj,
                &mut |d, t| report("bootstrapping keys", d, t),
            )?);
        }
        let encapsulation = match self.bootstrap.and_then(|c| c.ephemeral_weight) {
            Some(h) => {
                report("encapsulation keys", 0, 1);
                let keys = keygen.encapsulation_keys(h)?;
                report("encapsulation keys", 1, 1);
                Some(keys)
            }
            None => None,
        };
        let sk = keygen.secret_key().clone();
        let ctx = VectorContext::from_keys_with(&ctx, pk, Some(sk), rlk, gk, self.flooding)?;
        Ok(match encapsulation {
            Some(keys) => ctx.with_encapsulation_keys(keys),
            None => ctx,
        })
    }
}

impl VectorContext {
    /// Starts building a context (keys are generated by `build`).
    pub fn builder(ckks: Arc<CkksContext>) -> VectorContextBuilder {
        VectorContextBuilder {
            ckks,
            steps: Vec::new(),
            conjugation: false,
            power_of_two: true,
            bootstrap: None,
            progress: None,
            flooding: NoiseFlooding::default(),
        }
    }

    /// A context from existing keys (`sk` is `None` on the computing side).
    pub fn from_keys(
        ckks: &Arc<CkksContext>,
        pk: crate::ckks::keys::PublicKey,
        sk: Option<crate::ckks::keys::SecretKey>,
        rlk: RelinearizationKey,
        gk: GaloisKeys,
    ) -> Result<Arc<Self>> {
        Self::from_keys_with(ckks, pk, sk, rlk, gk, NoiseFlooding::default())
    }

    fn from_keys_with(
        ckks: &Arc<CkksContext>,
        pk: crate::ckks::keys::PublicKey,
        sk: Option<crate::ckks::keys::SecretKey>,
        rlk: RelinearizationKey,
        gk: GaloisKeys,
        flooding: NoiseFlooding,
    ) -> Result<Arc<Self>> {
        ckks.check_fingerprint(rlk.switching_key().fingerprint())?;
        let decryptor = sk.map(|sk| Decryptor::new(ckks, sk)).transpose()?;
        let level_scales: Vec<f64> = (0..=ckks.max_level())
            .map(|l| ckks.params().level_scale(l))
            .collect();
        for (l, &s) in level_scales.iter().enumerate() {
            // A chain whose scale cannot be held at some level is refused up front.
            ckks.check_scale(l, s)?;
        }
        Ok(Arc::new(Self {
            encoder: CkksEncoder::new(ckks),
            encryptor: Encryptor::new(ckks, pk)?,
            decryptor,
            evaluator: Evaluator::new(ckks),
            rlk,
            gk,
            level_scales,
            flooding,
            encapsulation: None,
            auto_bootstrap: std::sync::RwLock::new(None),
            ckks: ckks.clone(),
        }))
    }

    /// From now on, a product (`mul`, `square`, `mul_plain`, `mul_scalar`, `polyval`) of a
    /// vector of this context that has too few levels left bootstraps it with `boot` first.
    /// The context holds `boot` weakly (it holds the context): dropping the last `Arc`
    /// turns automatic bootstrapping off again.
    pub fn set_auto_bootstrap(&self, boot: &Arc<crate::ckks::Bootstrapper>) -> Result<()> {
        if boot.context().ckks().fingerprint() != self.ckks.fingerprint() {
            return Err(HeError::ParameterMismatch {
                expected: self.ckks.params().fingerprint_hex(),
                found: boot.context().ckks().params().fingerprint_hex(),
            });
        }
        if let Ok(mut slot) = self.auto_bootstrap.write() {
            *slot = Some(Arc::downgrade(boot));
        }
        Ok(())
    }

    /// Turns automatic bootstrapping off.
    pub fn clear_auto_bootstrap(&self) {
        if let Ok(mut slot) = self.auto_bootstrap.write() {
            *slot = None;
        }
    }

    fn auto_bootstrapper(&self) -> Option<Arc<crate::ckks::Bootstrapper>> {
        self.auto_bootstrap
            .read()
            .ok()
            .and_then(|slot| slot.as_ref().and_then(std::sync::Weak::upgrade))
    }

    /// The same context with the encapsulation keys bootstrapping with an ephemeral sparse
    /// secret needs ([`KeyGenerator::encapsulation_keys`]).
    pub fn with_encapsulation_keys(&self, keys: EncapsulationKeys) -> Arc<Self> {
        let mut c = self.copy();
        c.encapsulation = Some(keys);
        Arc::new(c)
    }

    /// The encapsulation keys, if this context has them.
    pub fn encapsulation_keys(&self) -> Option<&EncapsulationKeys> {
        self.encapsulation.as_ref()
    }

    fn copy(&self) -> Self {
        Self {
            ckks: self.ckks.clone(),
            encoder: self.encoder.clone(),
            encryptor: self.encryptor.clone(),
            decryptor: self.decryptor.clone(),
            evaluator: self.evaluator.clone(),
            rlk: self.rlk.clone(),
            gk: self.gk.clone(),
            level_scales: self.level_scales.clone(),
            flooding: self.flooding,
            encapsulation: self.encapsulation.clone(),
            auto_bootstrap: std::sync::RwLock::new(None),
        }
    }

    /// The same keys without the secret key, for the party that computes.
    pub fn make_public(&self) -> Arc<Self> {
        let mut c = self.copy();
        c.decryptor = None;
        Arc::new(c)
    }

    /// The same keys with another decryption flooding setting.
    pub fn with_decryption_flooding(&self, flooding: NoiseFlooding) -> Arc<Self> {
        let mut c = self.copy();
        c.flooding = flooding;
        Arc::new(c)
    }

    /// The noise flooding [`CkksVector::decrypt`] applies.
    pub fn decryption_flooding(&self) -> NoiseFlooding {
        self.flooding
    }

    /// Serializes what a computing party needs: the parameters and the public,
    /// relinearization and Galois keys (no secret key), and the encapsulation keys if the
    /// context has them. Read it back with [`VectorContext::from_public_bytes`].
    pub fn public_to_bytes(&self) -> Vec<u8> {
        let mut parts = vec![
            self.ckks.params().to_bytes(),
            self.encryptor.public_key().to_bytes(),
            self.rlk.to_bytes(),
            self.gk.to_bytes(&self.ckks),
        ];
        match &self.encapsulation {
            Some(keys) => {
                parts.push(keys.to_bytes());
                join_length_prefixed(b"VEILCTX2", &parts)
            }
            None => join_length_prefixed(b"VEILCTX1", &parts),
        }
    }

    /// Rebuilds a public context (no secret key) from [`VectorContext::public_to_bytes`];
    /// `secret_key`, if given, must be the serialized secret key of the same parameters
    /// (the data owner's side).
    ///
    /// The bytes come from someone else, so parameters below 128-bit security are refused
    /// (see [`CkksParameters::from_bytes`](crate::ckks::CkksParameters::from_bytes)); a
    /// receiver that wants toy parameters says so with
    /// [`VectorContext::from_public_bytes_insecure_allow_below_128_bit_security`].
    pub fn from_public_bytes(bytes: &[u8], secret_key: Option<&[u8]>) -> Result<Arc<Self>> {
        Self::read_public(bytes, secret_key, false)
    }

    /// Like [`VectorContext::from_public_bytes`], but accepts parameters below 128-bit
    /// security. **Insecure**: for tests and experiments only.
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
        let bad = |r: &str| HeError::Deserialize {
            what: "vector context",
            reason: r.to_string(),
        };
        let (body, count) = match (
            bytes.strip_prefix(b"VEILCTX1"),
            bytes.strip_prefix(b"VEILCTX2"),
        ) {
            (Some(body), _) => (body, 4),
            (_, Some(body)) => (body, 5),
            _ => return Err(bad("bad magic or version")),
        };
        let parts = split_length_prefixed(body, count).map_err(bad)?;
        let params = if allow_insecure {
            crate::ckks::CkksParameters::from_bytes_insecure_allow_below_128_bit_security(parts[0])?
        } else {
            crate::ckks::CkksParameters::from_bytes(parts[0])?
        };
        let ckks = CkksContext::new(params)?;
        let pk = crate::ckks::keys::PublicKey::from_bytes(&ckks, parts[1])?;
        let rlk = RelinearizationKey::from_bytes(&ckks, parts[2])?;
        let gk = GaloisKeys::from_bytes(&ckks, parts[3])?;
        let sk = secret_key
            .map(|b| crate::ckks::keys::SecretKey::from_bytes(&ckks, b))
            .transpose()?;
        let ctx = Self::from_keys(&ckks, pk, sk, rlk, gk)?;
        match parts.get(4) {
            Some(enc) => {
                Ok(ctx.with_encapsulation_keys(EncapsulationKeys::from_bytes(&ckks, enc)?))
            }
            None => Ok(ctx),
        }
    }

    /// The serialized secret key (a zeroizing buffer), if this context holds one.
    pub fn secret_key_bytes(&self) -> Result<Option<zeroize::Zeroizing<Vec<u8>>>> {
        self.decryptor
            .as_ref()
            .map(|d| d.secret_key().to_bytes())
            .transpose()
    }

    /// Whether this context can decrypt.
    pub fn has_secret_key(&self) -> bool {
        self.decryptor.is_some()
    }

    /// The CKKS context.
    pub fn ckks(&self) -> &Arc<CkksContext> {
        &self.ckks
    }

    /// The evaluator.
    pub fn evaluator(&self) -> &Evaluator {
        &self.evaluator
    }

    /// The Galois keys.
    pub fn galois_keys(&self) -> &GaloisKeys {
        &self.gk
    }

    /// The relinearization key (see [`RelinearizationKey::level`] for the levels it serves).
    pub fn relin_key(&self) -> &RelinearizationKey {
        &self.rlk
    }

    /// The scale a vector at `level` has.
    pub fn scale_at(&self, level: usize) -> f64 {
        self.level_scales[level.min(self.level_scales.len() - 1)]
    }
}

/// An encrypted vector of reals.
#[derive(Clone)]
pub struct CkksVector {
    ctx: Arc<VectorContext>,
    ct: Ciphertext,
    len: usize,
    /// Slots at or past `len` may be non-zero.
    dirty: bool,
    /// How the values sit in the slots (`dirty` is set for every layout but the plain one).
    layout: Layout,
}

/// How a [`CkksVector`]'s values sit in the slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// In slots `0..len` (slots past the end zero unless the vector is dirty).
    Plain,
    /// Repeated with period `len.next_power_of_two()` across all the slots; slots
    /// `len..period` of each period may hold anything ([`CkksVector::encrypt_replicated`]).
    Replicated,
    /// The input of one product ([`CkksVector::encrypt_blocked`]): blocks of `block` slots,
    /// block `t` holding the values replicated and rotated left by `t mod babies`.
    Blocked {
        /// Slots per block.
        block: usize,
        /// Distinct rotations, one per block, repeating.
        babies: usize,
    },
}

/// Which Galois keys a matrix product's rotations use: a trade between the size of the
/// public context (the keys a client uploads) and the number of key switches per product.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum RotationKeys {
    /// One key per power-of-two sum stride and per baby and giant step (hoisted baby
    /// steps): the fewest key switches.
    #[default]
    Fast,
    /// Sums over `2^m` strided terms in radix 4 (`x + rot(x + rot(x + rot x))`, one key
    /// per power of four instead of per power of two); baby steps by repeated rotation by 1
    /// and giant steps in Horner form by repeated rotation by the giant stride. About half the
    /// keys (a 64-term sum: 3 keys, 9 key switches instead of 6 keys, 6), for products whose
    /// keys dominate the context.
    Compact,
}

/// A plaintext matrix whose diagonals are encoded once, for many
/// [`CkksVector::matmul_encoded`] products (see [`CkksVector::encode_matrix`]).
#[derive(Clone)]
pub struct EncodedMatrix {
    rows: usize,
    cols: usize,
    g1: usize,
    g2: usize,
    level: usize,
    fingerprint: [u8; 32],
    diagonals: Vec<Option<crate::ckks::Plaintext>>,
    /// The layout of the vectors it multiplies: plain ([`CkksVector::encode_matrix`]),
    /// replicated ([`CkksVector::encode_matrix_replicated`]) or blocked
    /// ([`CkksVector::encode_matrix_blocked`]).
    input: Layout,
    /// The rotation keys replicated and blocked products use.
    keys: RotationKeys,
}

impl EncodedMatrix {
    /// This matrix, multiplying with `keys` (replicated and blocked products; plain-layout
    /// products ignore it). The Galois keys needed are then
    /// [`CkksVector::matmul_replicated_rotation_steps_with`] /
    /// [`CkksVector::matmul_blocked_rotation_steps_with`] for the same choice.
    pub fn with_rotation_keys(mut self, keys: RotationKeys) -> Self {
        self.keys = keys;
        self
    }

    /// The rotation keys its products use.
    pub fn rotation_keys(&self) -> RotationKeys {
        self.keys
    }

    /// Rows and columns.
    pub fn shape(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    /// The level the diagonals are encoded at.
    pub fn level(&self) -> usize {
        self.level
    }
}

impl std::fmt::Debug for EncodedMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncodedMatrix")
            .field("rows", &self.rows)
            .field("cols", &self.cols)
            .field("level", &self.level)
            .finish_non_exhaustive()
    }
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl std::fmt::Debug for CkksVector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CkksVector")
            .field("len", &self.len)
            .field("level", &self.ct.level())
            .finish_non_exhaustive()
    }
}

impl CkksVector {
    /// Encrypts `values` (at most N/2) with the public key.
    pub fn encrypt(ctx: &Arc<VectorContext>, values: &[f64]) -> Result<Self> {
        let level = ctx.ckks.max_level();
        let pt = ctx.encoder.encode(values, ctx.scale_at(level), level)?;
        let ct = ctx.encryptor.encrypt(&pt)?;
        Ok(Self {
            ctx: ctx.clone(),
            ct,
            len: values.len(),
            dirty: false,
            layout: Layout::Plain,
        })
    }

    /// Encrypts `values` **replicated**: repeated with period `p = len.next_power_of_two()`
    /// across all N/2 slots (zeros in `len..p` of each period). This is the layout
    /// [`CkksVector::encode_matrix_replicated`] products take and give: a product needs no
    /// rotation to replicate its input and only `min(p_in, p_out)` diagonals, so a chain of
    /// layers uses fewer rotations and Galois keys. Element-wise operations keep the layout
    /// (plain operands are replicated the same way); anything else first clears the copies
    /// (one level). With `seeded`, encrypts with the secret key as
    /// [`CkksVector::encrypt_seeded`] does.
    pub fn encrypt_replicated(
        ctx: &Arc<VectorContext>,
        values: &[f64],
        seeded: bool,
    ) -> Result<Self> {
        let slots = ctx.ckks.slots();
        if values.is_empty() || values.len() > slots {
            return Err(HeError::ShapeMismatch(format!(
                "{} values to replicate in {slots} slots",
                values.len()
            )));
        }
        let tiled = tile(values, slots);
        let mut v = if seeded {
            Self::encrypt_seeded(ctx, &tiled)?
        } else {
            Self::encrypt(ctx, &tiled)?
        };
        v.len = values.len();
        v.dirty = true;
        v.layout = Layout::Replicated;
        Ok(v)
    }

    /// The layout a product of a vector of `rows` values by a `rows × cols` matrix takes as
    /// input when its baby-step rotations are done by the encrypting client
    /// ([`CkksVector::encrypt_blocked`]): blocks of `B = max(p, q)` slots (`p`, `q` the
    /// powers of two at or above `rows` and `cols`), as many distinct rotations as there are
    /// blocks, up to `min(p, q)`.
    pub fn blocked_layout(slots: usize, rows: usize, cols: usize) -> Result<Layout> {
        let (np, mp) = (rows.next_power_of_two(), cols.next_power_of_two());
        let block = np.max(mp);
        if rows == 0 || cols == 0 || block > slots {
            return Err(HeError::ShapeMismatch(format!(
                "a {rows}×{cols} product does not fit {slots} slots"
            )));
        }
        Ok(Layout::Blocked {
            block,
            babies: (slots / block).min(np.min(mp)),
        })
    }

    /// Encrypts `values` as the input of one product by a `values.len() × cols` matrix
    /// encoded with [`CkksVector::encode_matrix_blocked`]: block `t` of
    /// [`CkksVector::blocked_layout`] holds the values replicated and rotated left by
    /// `t mod babies`. The client thus does the product's baby-step rotations in the clear,
    /// for free, and the server needs neither them nor their Galois keys; the query is still
    /// one ciphertext. Only the product (and element-wise operations without plain
    /// operands) accept such a vector. With `seeded`, encrypts with the secret key.
    pub fn encrypt_blocked(
        ctx: &Arc<VectorContext>,
        values: &[f64],
        cols: usize,
        seeded: bool,
    ) -> Result<Self> {
        let slots = ctx.ckks.slots();
        let layout = Self::blocked_layout(slots, values.len(), cols)?;
        let Layout::Blocked { block, babies } = layout else {
            return Err(HeError::Internal("blocked_layout gave another layout"));
        };
        let (n, np) = (values.len(), values.len().next_power_of_two());
        let slot_values: Vec<f64> = (0..slots)
            .map(|s| {
                let (t, j) = (s / block, s % block);
                let k = (j + t % babies) % np;
                if k < n {
                    values[k]
                } else {
                    0.0
                }
            })
            .collect();
        let mut v = if seeded {
            Self::encrypt_seeded(ctx, &slot_values)?
        } else {
            Self::encrypt(ctx, &slot_values)?
        };
        v.len = n;
        v.dirty = true;
        v.layout = layout;
        Ok(v)
    }

    /// Whether the values are replicated across the slots ([`CkksVector::encrypt_replicated`]).
    pub fn is_replicated(&self) -> bool {
        self.layout == Layout::Replicated
    }

    /// How the values sit in the slots.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Encrypts `values` with the **secret key** (the context must hold it): the uniform half
    /// of the ciphertext is expanded from a 32-byte seed, so [`CkksVector::to_bytes`] is about
    /// half the size of a public-key encryption's. For a client that holds the key and sends
    /// queries; computing on the result is the same.
    pub fn encrypt_seeded(ctx: &Arc<VectorContext>, values: &[f64]) -> Result<Self> {
        let dec = ctx.decryptor.as_ref().ok_or(HeError::MissingSecretKey)?;
        let level = ctx.ckks.max_level();
        let pt = ctx.encoder.encode(values, ctx.scale_at(level), level)?;
        let enc = crate::ckks::SymmetricEncryptor::new(&ctx.ckks, dec.secret_key().clone())?;
        let ct = enc.encrypt(&pt)?;
        Ok(Self {
            ctx: ctx.clone(),
            ct,
            len: values.len(),
            dirty: false,
            layout: Layout::Plain,
        })
    }

    /// Decrypts **for release** (needs the secret key in the context): the values are
    /// flooded with fresh Gaussian noise ([`crate::ckks::flooding`]) so that they may be shared
    /// with anyone, including whoever chose the inputs or ran the computation. Each value's
    /// extra error has the standard deviation [`FloodedValues::flood_std`] that
    /// [`CkksVector::decrypt_flooded`] reports: about `2^{s/2} · 2·√len` times the
    /// ciphertext's own per-value error (2^15 · 2·√len with the default `s = 30`).
    pub fn decrypt(&self) -> Result<Vec<f64>> {
        Ok(self.decrypt_flooded()?.values)
    }

    /// [`CkksVector::decrypt`], with the size of the flood that was added.
    pub fn decrypt_flooded(&self) -> Result<FloodedValues> {
        let dec = self
            .ctx
            .decryptor
            .as_ref()
            .ok_or(HeError::MissingSecretKey)?;
        self.ctx
            .encoder
            .decode_flooded(&dec.decrypt(&self.ct)?, self.len, &self.ctx.flooding)
    }

    /// Decrypts **without** noise flooding: the values carry the ciphertext's exact error,
    /// which together with the inputs reveals a linear equation in the secret key
    /// (Li–Micciancio). Only for results the key holder keeps to itself; anything that leaves
    /// it goes through [`CkksVector::decrypt`].
    pub fn decrypt_unflooded_for_key_holder_only(&self) -> Result<Vec<f64>> {
        let dec = self
            .ctx
            .decryptor
            .as_ref()
            .ok_or(HeError::MissingSecretKey)?;
        let mut v = self.ctx.encoder.decode(&dec.decrypt(&self.ct)?)?;
        v.truncate(self.len);
        Ok(v)
    }

    /// Every slot, complex, without flooding (tests of the bootstrapper's stages).
    #[cfg(test)]
    pub(crate) fn decrypt_complex_for_tests(&self) -> Result<Vec<num_complex::Complex64>> {
        let dec = self
            .ctx
            .decryptor
            .as_ref()
            .ok_or(HeError::MissingSecretKey)?;
        self.ctx.encoder.decode_complex(&dec.decrypt(&self.ct)?)
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the vector is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Levels left (multiplications still possible).
    pub fn level(&self) -> usize {
        self.ct.level()
    }

    /// The ciphertext.
    pub fn ciphertext(&self) -> &Ciphertext {
        &self.ct
    }

    /// The context.
    pub fn context(&self) -> &Arc<VectorContext> {
        &self.ctx
    }

    fn ev(&self) -> &Evaluator {
        &self.ctx.evaluator
    }

    /// Wraps a ciphertext (at its level's canonical scale) as a vector: for the bootstrapper.
    pub(crate) fn from_parts(
        ctx: &Arc<VectorContext>,
        ct: Ciphertext,
        len: usize,
        dirty: bool,
        layout: Layout,
    ) -> Self {
        Self {
            ctx: ctx.clone(),
            ct,
            len,
            dirty: dirty || layout != Layout::Plain,
            layout,
        }
    }

    /// Whether slots past the end may hold anything.
    pub(crate) fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// [`cleaned`](Self::cleaned), for the bootstrapper.
    pub(crate) fn clean_padding(&self) -> Result<Self> {
        self.cleaned()
    }

    /// A vector in the plain layout (not replicated).
    fn with(&self, ct: Ciphertext, len: usize, dirty: bool) -> Self {
        Self {
            ctx: self.ctx.clone(),
            ct,
            len,
            dirty,
            layout: Layout::Plain,
        }
    }

    /// The result of an element-wise operation: same length and layout as `self`.
    fn elementwise(&self, ct: Ciphertext, dirty: bool) -> Self {
        Self {
            ctx: self.ctx.clone(),
            ct,
            len: self.len,
            dirty: dirty || self.layout != Layout::Plain,
            layout: self.layout,
        }
    }

    /// [`CkksVector::elementwise`] after a rescale.
    fn rescaled_elementwise(&self, ct: Ciphertext, dirty: bool) -> Result<Self> {
        let mut out = self.ev().rescale(&ct)?;
        out.set_scale(self.ctx.scale_at(out.level()));
        Ok(self.elementwise(out, dirty))
    }

    fn same_layout(&self, other: &Self) -> Result<()> {
        if self.layout != other.layout {
            return Err(HeError::ShapeMismatch(format!(
                "vectors laid out differently ({:?} and {:?}): encrypt both the same way",
                self.layout, other.layout
            )));
        }
        Ok(())
    }

    fn same_context(&self, other: &Self) -> Result<()> {
        if !Arc::ptr_eq(&self.ctx, &other.ctx)
            && self.ctx.ckks.fingerprint() != other.ctx.ckks.fingerprint()
        {
            return Err(HeError::ParameterMismatch {
                expected: self.ctx.ckks.params().fingerprint_hex(),
                found: other.ctx.ckks.params().fingerprint_hex(),
            });
        }
        Ok(())
    }

    fn same_len(&self, n: usize) -> Result<()> {
        if self.len != n {
            return Err(HeError::ShapeMismatch(format!(
                "vector of length {} with operand of length {n}",
                self.len
            )));
        }
        Ok(())
    }

    /// Brings this vector's ciphertext to `level` (canonical scale).
    fn at_level(&self, level: usize) -> Result<Ciphertext> {
        self.ev()
            .align_to(&self.ct, level, self.ctx.scale_at(level))
    }

    fn aligned(&self, other: &Self) -> Result<(Ciphertext, Ciphertext)> {
        self.same_context(other)?;
        self.same_len(other.len)?;
        self.same_layout(other)?;
        let level = self.level().min(other.level());
        Ok((self.at_level(level)?, other.at_level(level)?))
    }

    fn rescaled(&self, ct: Ciphertext, len: usize, dirty: bool) -> Result<Self> {
        let mut out = self.ev().rescale(&ct)?;
        out.set_scale(self.ctx.scale_at(out.level()));
        Ok(self.with(out, len, dirty))
    }

    fn need_level(&self) -> Result<()> {
        if self.level() == 0 {
            return Err(HeError::OutOfLevels { needed: 1, left: 0 });
        }
        Ok(())
    }

    /// Encodes a plain operand in this vector's layout (replicated if the vector is).
    fn plain(&self, values: &[f64], scale: f64, level: usize) -> Result<crate::ckks::Plaintext> {
        match self.layout {
            Layout::Plain => self.ctx.encoder.encode(values, scale, level),
            Layout::Replicated => {
                self.ctx
                    .encoder
                    .encode(&tile(values, self.ctx.ckks.slots()), scale, level)
            }
            Layout::Blocked { .. } => Err(HeError::ShapeMismatch(
                "a blocked vector only enters a product (CkksVector::encode_matrix_blocked)".into(),
            )),
        }
    }

    /// Zeroes the slots past the end if they may be dirty (uses one level then); a replicated
    /// vector comes back in the plain layout.
    fn cleaned(&self) -> Result<Self> {
        if !self.dirty {
            return Ok(self.clone());
        }
        self.need_level()?;
        let level = self.level();
        let mask =
            self.ctx
                .encoder
                .encode(&vec![1.0; self.len], self.ctx.scale_at(level), level)?;
        self.rescaled(self.ev().multiply_plain(&self.ct, &mask)?, self.len, false)
    }

    // ----- element-wise -----

    /// `self + other`.
    pub fn add(&self, other: &Self) -> Result<Self> {
        let (a, b) = self.aligned(other)?;
        Ok(self.elementwise(self.ev().add(&a, &b)?, self.dirty || other.dirty))
    }

    /// `self − other`.
    pub fn sub(&self, other: &Self) -> Result<Self> {
        let (a, b) = self.aligned(other)?;
        Ok(self.elementwise(self.ev().sub(&a, &b)?, self.dirty || other.dirty))
    }

    /// This vector bootstrapped, if it has fewer than `needed` levels and its context has an
    /// automatic bootstrapper that leaves enough ([`VectorContext::set_auto_bootstrap`]).
    fn refreshed(&self, needed: usize) -> Result<Option<Self>> {
        if self.level() >= needed {
            return Ok(None);
        }
        match self.ctx.auto_bootstrapper() {
            Some(boot) if boot.levels_after() >= needed => boot.bootstrap(self).map(Some),
            _ => Ok(None),
        }
    }

    /// `self × other` (one level).
    pub fn mul(&self, other: &Self) -> Result<Self> {
        if let Some(v) = self.refreshed(1)? {
            return v.mul(other);
        }
        if let Some(o) = other.refreshed(1)? {
            return self.mul(&o);
        }
        let (a, b) = self.aligned(other)?;
        if a.level() == 0 {
            return Err(HeError::OutOfLevels { needed: 1, left: 0 });
        }
        let prod = self.ev().multiply_relin(&a, &b, &self.ctx.rlk)?;
        self.rescaled_elementwise(prod, self.dirty && other.dirty)
    }

    /// `self²` (one level).
    pub fn square(&self) -> Result<Self> {
        if let Some(v) = self.refreshed(1)? {
            return v.square();
        }
        self.need_level()?;
        let sq = self
            .ev()
            .relinearize(&self.ev().square(&self.ct)?, &self.ctx.rlk)?;
        self.rescaled_elementwise(sq, self.dirty)
    }

    /// `−self`.
    pub fn neg(&self) -> Result<Self> {
        Ok(self.elementwise(self.ev().negate(&self.ct)?, self.dirty))
    }

    /// `self + plain`.
    pub fn add_plain(&self, plain: &[f64]) -> Result<Self> {
        self.same_len(plain.len())?;
        let pt = self.plain(plain, self.ct.scale(), self.level())?;
        Ok(self.elementwise(self.ev().add_plain(&self.ct, &pt)?, self.dirty))
    }

    /// `self − plain`.
    pub fn sub_plain(&self, plain: &[f64]) -> Result<Self> {
        self.same_len(plain.len())?;
        let pt = self.plain(plain, self.ct.scale(), self.level())?;
        Ok(self.elementwise(self.ev().sub_plain(&self.ct, &pt)?, self.dirty))
    }

    /// `self × plain` element-wise (one level; also clears the slots past the end).
    pub fn mul_plain(&self, plain: &[f64]) -> Result<Self> {
        self.same_len(plain.len())?;
        if let Some(v) = self.refreshed(1)? {
            return v.mul_plain(plain);
        }
        self.need_level()?;
        let pt = self.plain(plain, self.ctx.scale_at(self.level()), self.level())?;
        self.rescaled_elementwise(self.ev().multiply_plain(&self.ct, &pt)?, false)
    }

    /// `self + x` in every element. When the constant may go into every slot — the vector
    /// fills them, or its padding is dirty anyway, or it is replicated — it is added to the
    /// ciphertext's coefficients directly (no encoding: ~20× cheaper); otherwise a plaintext
    /// with `x` in the first `len` slots and zero past them is encoded, so that the padding
    /// stays zero for sums, dot products and rotations.
    pub fn add_scalar(&self, x: f64) -> Result<Self> {
        let everywhere = match self.layout {
            Layout::Plain => self.dirty || self.len == self.ctx.ckks.slots(),
            Layout::Replicated => true,
            Layout::Blocked { .. } => false,
        };
        if everywhere {
            return Ok(self.elementwise(self.ev().add_scalar(&self.ct, x)?, self.dirty));
        }
        self.add_plain(&vec![x; self.len])
    }

    /// `self − x` in every element (see [`CkksVector::add_scalar`]).
    pub fn sub_scalar(&self, x: f64) -> Result<Self> {
        self.add_scalar(-x)
    }

    /// `self × x` (one level).
    pub fn mul_scalar(&self, x: f64) -> Result<Self> {
        if let Some(v) = self.refreshed(1)? {
            return v.mul_scalar(x);
        }
        self.need_level()?;
        let prod = self
            .ev()
            .multiply_scalar(&self.ct, x, self.ctx.scale_at(self.level()))?;
        self.rescaled_elementwise(prod, self.dirty)
    }

    /// `Σ weights[i]·vectors[i] + bias`, element-wise (one level): the products by public
    /// reals are accumulated at the product scale and rescaled once, so a sum of `k` terms
    /// costs `k` constant multiplications and one rescale, not `k` rescales. Zero weights cost
    /// nothing. The vectors must have the same length and context; they are brought to the
    /// lowest level among them.
    pub fn linear_combination(vectors: &[&Self], weights: &[f64], bias: f64) -> Result<Self> {
        let first = vectors
            .first()
            .ok_or_else(|| HeError::ShapeMismatch("a linear combination of no vectors".into()))?;
        if weights.len() != vectors.len() {
            return Err(HeError::ShapeMismatch(format!(
                "{} weights for {} vectors",
                weights.len(),
                vectors.len()
            )));
        }
        if let Some(&w) = weights.iter().find(|w| !w.is_finite()) {
            return Err(HeError::NonFiniteValue(w));
        }
        if !bias.is_finite() {
            return Err(HeError::NonFiniteValue(bias));
        }
        for v in vectors {
            first.same_context(v)?;
            first.same_len(v.len)?;
            first.same_layout(v)?;
        }
        let level = vectors.iter().map(|v| v.level()).min().unwrap_or(0);
        if level == 0 {
            return Err(HeError::OutOfLevels { needed: 1, left: 0 });
        }
        let scale = first.ctx.scale_at(level);
        let ev = first.ev();
        fn at_level_of(
            v: &CkksVector,
            level: usize,
            scale: f64,
        ) -> Result<std::borrow::Cow<'_, Ciphertext>> {
            if v.level() == level && v.ct.scale() == scale {
                Ok(std::borrow::Cow::Borrowed(&v.ct))
            } else {
                Ok(std::borrow::Cow::Owned(v.at_level(level)?))
            }
        }
        let at = |v| at_level_of(v, level, scale);
        let mut terms = vectors.iter().zip(weights).filter(|(_, &w)| w != 0.0);
        let mut acc = match terms.next() {
            Some((v, &w)) => ev.multiply_scalar(&*at(v)?, w, scale)?,
            None => ev.multiply_scalar(&*at(first)?, 0.0, scale)?,
        };
        for (v, &w) in terms {
            ev.multiply_scalar_accumulate(&mut acc, &*at(v)?, w, scale)?;
        }
        let mut dirty = vectors
            .iter()
            .zip(weights)
            .any(|(v, &w)| w != 0.0 && v.dirty);
        if bias != 0.0 {
            acc = ev.add_scalar(&acc, bias)?;
            dirty = true;
        }
        first.rescaled_elementwise(acc, dirty)
    }

    // ----- reductions -----

    /// Sum of the elements, as a vector of length 1.
    pub fn sum(&self) -> Result<Self> {
        let clean = self.cleaned()?;
        let s = self.ev().sum_slots(&clean.ct, &self.ctx.gk)?;
        Ok(self.with(s, 1, true))
    }

    /// Dot product with another vector, as a vector of length 1 (one level).
    pub fn dot(&self, other: &Self) -> Result<Self> {
        self.mul(other)?.sum()
    }

    /// Dot product with a plain vector (one level).
    pub fn dot_plain(&self, plain: &[f64]) -> Result<Self> {
        self.mul_plain(plain)?.sum()
    }

    /// Cyclic rotation of the elements left by `step` (negative: right). Needs `2·len ≤ N/2`.
    pub fn rotate(&self, step: i64) -> Result<Self> {
        let n = self.len as i64;
        if n == 0 {
            return Ok(self.clone());
        }
        if 2 * self.len > self.ctx.ckks.slots() {
            return Err(HeError::ShapeMismatch(format!(
                "cyclic rotation of {} elements needs 2·len ≤ {} slots",
                self.len,
                self.ctx.ckks.slots()
            )));
        }
        let k = step.rem_euclid(n);
        if k == 0 {
            return Ok(self.clone());
        }
        let clean = self.cleaned()?;
        let rs = self
            .ev()
            .rotate_hoisted(&clean.ct, &[k, k - n], &self.ctx.gk)?;
        let out = self.ev().add(&rs[0], &rs[1])?;
        Ok(self.with(out, self.len, true))
    }

    /// Evaluates the polynomial `Σ coeffs[i]·x^i` on every element with the minimal
    /// multiplicative depth `ceil(log2(degree + 1))`, by baby-step giant-step:
    ///
    /// - baby steps `x^1 … x^{b−1}` (`b = 2^⌈D/2⌉`) and giant steps `x^{2^i}`, each power at
    ///   its own minimal depth;
    /// - the polynomial is split at its largest power of two, `p = q·x^{2^{D−1}} + r`, where
    ///   `q` must fit depth `D−1` and `r` may use depth `D`;
    /// - a part whose degree is below `b` and whose depth budget exceeds its baby powers'
    ///   depth is a leaf: a linear combination of baby steps with integer-scaled constants
    ///   and a single rescale, no ciphertext product.
    ///
    /// The result therefore uses exactly `ceil(log2(degree + 1))` levels, and about
    /// `degree / b + b + log2(degree)` ciphertext multiplications.
    pub fn polyval(&self, coeffs: &[f64]) -> Result<Self> {
        let mut out = self.polyval_many(&[coeffs])?;
        out.pop()
            .ok_or(HeError::Internal("polyval_many returned nothing"))
    }

    /// [`polyval`](Self::polyval) of several polynomials of the same vector, sharing the
    /// powers of `x` (the ciphertext products): all results come out at the same level,
    /// `ceil(log2(d + 1))` below `self` for the largest degree `d`. Two polynomials of degree
    /// 25 cost 13 + 6 products instead of 2 × 13.
    pub fn polyval_many(&self, polys: &[&[f64]]) -> Result<Vec<Self>> {
        let mut trimmed = Vec::with_capacity(polys.len());
        for coeffs in polys {
            if let Some(&bad) = coeffs.iter().find(|c| !c.is_finite()) {
                return Err(HeError::NonFiniteValue(bad));
            }
            let mut coeffs = coeffs.to_vec();
            while coeffs.len() > 1 && coeffs.last() == Some(&0.0) {
                coeffs.pop();
            }
            if coeffs.is_empty() {
                coeffs.push(0.0);
            }
            trimmed.push(coeffs);
        }
        let depth = trimmed
            .iter()
            .map(|c| ceil_log2(c.len()).max(1))
            .max()
            .unwrap_or(1);
        if let Some(v) = self.refreshed(depth)? {
            return v.polyval_many(polys);
        }
        if depth > self.level() {
            return Err(HeError::OutOfLevels {
                needed: depth,
                left: self.level(),
            });
        }
        let baby = 1usize << depth.div_ceil(2);
        let mut powers = PowerCache {
            base: self.clone(),
            powers: Vec::new(),
        };
        trimmed
            .iter()
            .map(|coeffs| {
                let out = self.poly_eval(coeffs, depth, baby, &mut powers)?;
                debug_assert_eq!(out.level(), self.level() - depth);
                Ok(out)
            })
            .collect()
    }

    /// Evaluates `coeffs` (degree < 2^budget) to a vector exactly `budget` levels below `self`.
    fn poly_eval(
        &self,
        coeffs: &[f64],
        budget: usize,
        baby: usize,
        powers: &mut PowerCache,
    ) -> Result<Self> {
        let degree = coeffs.iter().rposition(|&c| c != 0.0).unwrap_or(0);
        if degree < baby && ceil_log2(degree.max(1)) < budget {
            return self.poly_leaf(&coeffs[..=degree], budget, powers);
        }
        // Split at the largest power of two the degree needs; any slack in the budget is
        // spent aligning the result down at the end.
        let need = ceil_log2(degree + 1);
        let split = 1usize << (need - 1);
        let (low, high) = coeffs[..=degree].split_at(split);
        let r = self.poly_eval(low, need, baby, powers)?;
        let q = self.poly_eval(high, need - 1, baby, powers)?;
        let giant = powers.get(split)?;
        let res = q.mul(&giant)?.add(&r)?;
        if need == budget {
            return Ok(res);
        }
        let target = self.level() - budget;
        let ct = res.at_level(target)?;
        Ok(res.elementwise(ct, res.dirty))
    }

    /// `Σ c_j·x^j` from baby steps: each `x^j` is brought to level `T + 1`, multiplied by the
    /// integer `round(c_j · Δ_T · q_{T+1} / scale(x^j))`, summed, and rescaled once to level
    /// `T = level − budget` with the canonical scale.
    fn poly_leaf(&self, coeffs: &[f64], budget: usize, powers: &mut PowerCache) -> Result<Self> {
        let ev = self.ev();
        let target = self.level() - budget;
        let q_next = self.ctx.ckks.params().ciphertext_moduli()[target + 1].value() as f64;
        let leaf_scale = self.ctx.scale_at(target) * q_next;
        let mut acc: Option<Ciphertext> = None;
        let terms: Vec<(usize, f64)> = coeffs
            .iter()
            .enumerate()
            .skip(1)
            .filter(|(_, &c)| c != 0.0)
            .map(|(j, &c)| (j, c))
            .collect();
        // A constant still needs a ciphertext to live in: use x · 0.
        let terms = if terms.is_empty() {
            vec![(1, 0.0)]
        } else {
            terms
        };
        for (j, c) in terms {
            let xj = powers.get(j)?;
            let at = ev.mod_switch_to_level(&xj.ct, target + 1)?;
            let factor = (c * leaf_scale / at.scale()).round();
            let mut term = ev.multiply_integer_f64(&at, factor)?;
            term.set_scale(leaf_scale);
            match acc.as_mut() {
                Some(a) => ev.add_assign(a, &term)?,
                None => acc = Some(term),
            }
        }
        let mut acc = acc.ok_or(HeError::Internal("empty polynomial leaf"))?;
        if coeffs[0] != 0.0 {
            let pt = self.plain(&vec![coeffs[0]; self.len], leaf_scale, target + 1)?;
            acc = ev.add_plain(&acc, &pt)?;
        }
        self.rescaled_elementwise(acc, self.dirty)
    }

    /// Rotation steps `matmul` uses for a `len × cols` matrix; generate keys for them with
    /// [`VectorContextBuilder::rotation_steps`] so every rotation is a single hoisted one.
    pub fn matmul_rotation_steps(len: usize, cols: usize) -> Vec<i64> {
        let g1 = (len as f64).sqrt().ceil().max(1.0) as usize;
        let mut steps: Vec<i64> = (1..g1 as i64).collect();
        let g2 = len.div_ceil(g1);
        steps.extend((1..g2).map(|a| (a * g1) as i64));
        let needed = len + cols.saturating_sub(1);
        let mut filled = len;
        while filled < needed {
            steps.push(-(filled as i64));
            filled *= 2;
        }
        steps
    }

    /// Vector–matrix product `self · M` with a plaintext matrix of `len` rows (one level).
    /// Diagonal method with baby-step/giant-step and hoisted baby rotations. To multiply many
    /// vectors by the same matrix, encode it once with [`CkksVector::encode_matrix`] and use
    /// [`CkksVector::matmul_encoded`].
    pub fn matmul(&self, matrix: &[Vec<f64>]) -> Result<Self> {
        match self.layout {
            Layout::Replicated => {
                let encoded = Self::encode_matrix_replicated(&self.ctx, matrix, self.level())?;
                return self.matmul_encoded(&encoded);
            }
            Layout::Blocked { .. } => {
                let encoded = Self::encode_matrix_blocked(&self.ctx, matrix, self.level())?;
                return self.matmul_encoded(&encoded);
            }
            Layout::Plain => {}
        }
        let level = self.level().saturating_sub(usize::from(self.dirty));
        let encoded = Self::encode_matrix(&self.ctx, matrix, level)?;
        self.matmul_encoded(&encoded)
    }

    /// Encodes the diagonals of `matrix` (`len` rows) for [`CkksVector::matmul_encoded`] on
    /// vectors at `level` (vectors at a lower level use the diagonals with primes dropped; a
    /// vector at a higher level is brought down).
    pub fn encode_matrix(
        ctx: &Arc<VectorContext>,
        matrix: &[Vec<f64>],
        level: usize,
    ) -> Result<EncodedMatrix> {
        let (n, m) = check_matrix(ctx, matrix, level)?;
        let slots = ctx.ckks.slots();
        let needed = n + m - 1;
        let g1 = (n as f64).sqrt().ceil().max(1.0) as usize;
        let g2 = n.div_ceil(g1);
        let mut filled = n;
        while filled < needed {
            filled *= 2;
        }
        if filled > slots || g2 * g1 + m > slots {
            return Err(HeError::ShapeMismatch(format!(
                "a {n}×{m} product needs more than the {slots} slots"
            )));
        }
        let scale = ctx.scale_at(level);
        let diagonals = veil_math::par::map_range(n, n * slots * 8, |i| {
            let a = i / g1;
            // diag_i[j] = M[(j + i) mod n][j], shifted right by a·g1.
            let mut diag = vec![0f64; slots];
            for j in 0..m {
                diag[(j + a * g1) % slots] = matrix[(j + i) % n][j];
            }
            encode_nonzero(ctx, &diag, scale, level)
        })
        .into_iter()
        .collect::<Result<Vec<_>>>()?;
        Ok(EncodedMatrix {
            rows: n,
            cols: m,
            g1,
            g2,
            level,
            fingerprint: ctx.ckks.fingerprint(),
            diagonals,
            input: Layout::Plain,
            keys: RotationKeys::Fast,
        })
    }

    /// The shape of a product of replicated vectors: input period, output period, number of
    /// diagonals, baby and giant steps.
    fn replicated_shape(rows: usize, cols: usize) -> (usize, usize, usize, usize, usize) {
        let (np, mp) = (rows.next_power_of_two(), cols.next_power_of_two());
        let d = np.min(mp);
        let g1 = (d as f64).sqrt().ceil().max(1.0) as usize;
        (np, mp, d, g1, d.div_ceil(g1))
    }

    /// Rotation steps a product of a replicated vector by a `rows × cols` matrix encoded with
    /// [`CkksVector::encode_matrix_replicated`] uses: `g1 − 1` hoisted baby steps, `g2 − 1`
    /// giant steps over the `min(p_in, p_out)` diagonals, and `log2(p_in / p_out)` steps that
    /// fold the partial sums when the product shrinks the vector.
    pub fn matmul_replicated_rotation_steps(rows: usize, cols: usize) -> Vec<i64> {
        Self::matmul_replicated_rotation_steps_with(rows, cols, RotationKeys::Fast)
    }

    /// [`CkksVector::matmul_replicated_rotation_steps`] for a matrix multiplying with `keys`
    /// ([`EncodedMatrix::with_rotation_keys`]): with [`RotationKeys::Compact`], 1 (the baby
    /// steps), the giant stride and the fold's powers of four.
    pub fn matmul_replicated_rotation_steps_with(
        rows: usize,
        cols: usize,
        keys: RotationKeys,
    ) -> Vec<i64> {
        let (np, mp, _, g1, g2) = Self::replicated_shape(rows, cols);
        let fold: Vec<usize> = doubling(mp, np).collect();
        let mut steps: Vec<i64> = match keys {
            RotationKeys::Fast => {
                let mut steps: Vec<i64> = (1..g1 as i64).collect();
                steps.extend((1..g2).map(|a| (a * g1) as i64));
                steps
            }
            RotationKeys::Compact => [(g1 > 1, 1), (g2 > 1, g1 as i64)]
                .into_iter()
                .filter_map(|(used, s)| used.then_some(s))
                .collect(),
        };
        steps.extend(sum_keys(&fold, keys).into_iter().map(|s| s as i64));
        steps.sort_unstable();
        steps.dedup();
        steps
    }

    /// Rotation steps a product of a blocked vector ([`CkksVector::encrypt_blocked`]) by a
    /// `rows × cols` matrix uses on `slots` slots: the giant steps, the block sums and the
    /// fold of a narrowing product.
    pub fn matmul_blocked_rotation_steps(slots: usize, rows: usize, cols: usize) -> Vec<i64> {
        Self::matmul_blocked_rotation_steps_with(slots, rows, cols, RotationKeys::Fast)
    }

    /// [`CkksVector::matmul_blocked_rotation_steps`] for a matrix multiplying with `keys`
    /// ([`EncodedMatrix::with_rotation_keys`]): with [`RotationKeys::Compact`], the block
    /// sums and the fold take one key per power of four.
    pub fn matmul_blocked_rotation_steps_with(
        slots: usize,
        rows: usize,
        cols: usize,
        keys: RotationKeys,
    ) -> Vec<i64> {
        let Ok(Layout::Blocked { block, babies }) = Self::blocked_layout(slots, rows, cols) else {
            return Vec::new();
        };
        let (np, mp, d, _, _) = Self::replicated_shape(rows, cols);
        let mut steps: Vec<i64> = (1..d.div_ceil(babies))
            .map(|a| (a * babies) as i64)
            .collect();
        let sums: Vec<usize> = doubling(block, block * babies)
            .chain(doubling(mp, np))
            .collect();
        steps.extend(sum_keys(&sums, keys).into_iter().map(|s| s as i64));
        steps.sort_unstable();
        steps.dedup();
        steps
    }

    /// Encodes `matrix` (`rows × cols`) for products of **blocked** vectors
    /// ([`CkksVector::encrypt_blocked`]) at `level`: one plaintext per giant step `a`, whose
    /// block `t` holds diagonal `a·babies + t mod babies` of the replicated method
    /// ([`CkksVector::encode_matrix_replicated`]), pre-rotated so that the giant-step
    /// rotations apply to the input (hoisted) rather than to the products.
    pub fn encode_matrix_blocked(
        ctx: &Arc<VectorContext>,
        matrix: &[Vec<f64>],
        level: usize,
    ) -> Result<EncodedMatrix> {
        let (n, m) = check_matrix(ctx, matrix, level)?;
        let slots = ctx.ckks.slots();
        let input = Self::blocked_layout(slots, n, m)?;
        let Layout::Blocked { block, babies } = input else {
            return Err(HeError::Internal("blocked_layout gave another layout"));
        };
        let (np, mp, d, _, _) = Self::replicated_shape(n, m);
        let g2 = d.div_ceil(babies);
        let scale = ctx.scale_at(level);
        let diagonal = |i: usize, j: usize| -> f64 {
            let (r, c) = ((j + i) % np, j % mp);
            if i < d && r < n && c < m {
                matrix[r][c]
            } else {
                0.0
            }
        };
        let plains = veil_math::par::map_range(g2, slots * 16, |a| {
            let shift = a * babies;
            // P'_a[s] = P_a[s + a·babies]; block t of P_a holds diagonal a·babies + t mod
            // babies, shifted right by a·babies within the block.
            let values: Vec<f64> = (0..slots)
                .map(|s| {
                    let s2 = (s + shift) % slots;
                    let (t, j) = (s2 / block, s2 % block);
                    diagonal(shift + t % babies, (j + block - shift % block) % block)
                })
                .collect();
            encode_nonzero(ctx, &values, scale, level)
        })
        .into_iter()
        .collect::<Result<Vec<_>>>()?;
        Ok(EncodedMatrix {
            rows: n,
            cols: m,
            g1: babies,
            g2,
            level,
            fingerprint: ctx.ckks.fingerprint(),
            diagonals: plains,
            input,
            keys: RotationKeys::Fast,
        })
    }

    /// Encodes `matrix` (`rows × cols`) for products of **replicated** vectors
    /// ([`CkksVector::encrypt_replicated`]) at `level`. With `p = rows.next_power_of_two()`
    /// and `q = cols.next_power_of_two()`, diagonal `i < min(p, q)` holds
    /// `M[(j + i) mod p][j mod q]` in slot `j` of every period: a widening product
    /// (`q ≥ p`) is the sum of the `p` diagonals times the rotated input, already replicated
    /// with period `q`; a narrowing one sums `q` diagonals, then folds the `p / q` partial sums
    /// with `log2(p / q)` rotations, which leaves the result replicated with period `q`. No
    /// rotation replicates the input, and the diagonals are summed baby-step/giant-step.
    pub fn encode_matrix_replicated(
        ctx: &Arc<VectorContext>,
        matrix: &[Vec<f64>],
        level: usize,
    ) -> Result<EncodedMatrix> {
        let (n, m) = check_matrix(ctx, matrix, level)?;
        let slots = ctx.ckks.slots();
        let (np, mp, d, g1, g2) = Self::replicated_shape(n, m);
        if np.max(mp) > slots {
            return Err(HeError::ShapeMismatch(format!(
                "a {n}×{m} product of replicated vectors needs more than the {slots} slots"
            )));
        }
        let scale = ctx.scale_at(level);
        let entry = |t: usize, i: usize| -> f64 {
            let (r, c) = ((t + i) % np, t % mp);
            if r < n && c < m {
                matrix[r][c]
            } else {
                0.0
            }
        };
        let diagonals = veil_math::par::map_range(d, slots * 16, |i| {
            // Pre-rotated right by the giant step a·g1: slot j holds d_i[j − a·g1].
            let shift = (i / g1) * g1;
            let diag: Vec<f64> = (0..slots)
                .map(|j| entry((j + slots - shift) % slots, i))
                .collect();
            encode_nonzero(ctx, &diag, scale, level)
        })
        .into_iter()
        .collect::<Result<Vec<_>>>()?;
        Ok(EncodedMatrix {
            rows: n,
            cols: m,
            g1,
            g2,
            level,
            fingerprint: ctx.ckks.fingerprint(),
            diagonals,
            input: Layout::Replicated,
            keys: RotationKeys::Fast,
        })
    }

    /// `self · M` with a matrix encoded by [`CkksVector::encode_matrix`] (one level).
    pub fn matmul_encoded(&self, matrix: &EncodedMatrix) -> Result<Self> {
        let (n, m, g1, g2) = (matrix.rows, matrix.cols, matrix.g1, matrix.g2);
        if self.len != n {
            return Err(HeError::ShapeMismatch(format!(
                "matrix has {n} rows, the vector {} elements",
                self.len
            )));
        }
        if matrix.fingerprint != self.ctx.ckks.fingerprint() {
            return Err(HeError::ParameterMismatch {
                expected: self.ctx.ckks.params().fingerprint_hex(),
                found: hex_of(&matrix.fingerprint),
            });
        }
        self.need_level()?;
        match matrix.input {
            Layout::Replicated => return self.matmul_replicated(matrix),
            Layout::Blocked { .. } => return self.matmul_blocked(matrix),
            Layout::Plain => {}
        }
        let clean = self.cleaned()?;
        let ev = self.ev();
        let gk = &self.ctx.gk;
        // Bring the vector to the matrix's level, or the diagonals to the vector's.
        let mut w = if clean.level() > matrix.level {
            clean.at_level(matrix.level)?
        } else {
            clean.ct.clone()
        };
        let level = w.level();
        if level == 0 {
            return Err(HeError::OutOfLevels { needed: 1, left: 0 });
        }
        let needed = n + m - 1;
        // Replicate v periodically over the first `needed` slots.
        let mut f = n;
        while f < needed {
            let r = ev.rotate(&w, -(f as i64), gk)?;
            ev.add_assign(&mut w, &r)?;
            f *= 2;
        }
        let diagonals = self.diagonals_at(matrix, level)?;
        let acc = self.baby_giant_sum(&w, &diagonals, g1, g2, n, RotationKeys::Fast)?;
        let acc = match acc {
            Some(a) => a,
            // All-zero matrix: the product is zero.
            None => {
                let scale = self.ctx.scale_at(level);
                ev.multiply_plain(&w, &self.ctx.encoder.encode(&[0.0], scale, level)?)?
            }
        };
        self.rescaled(acc, m, false)
    }

    /// `Σ_a rot_{a·g1}(Σ_b diag_{a·g1+b} ⊙ rot_b(w))` over the first `count` diagonals (baby
    /// steps hoisted); `None` when every diagonal is zero.
    fn baby_giant_sum(
        &self,
        w: &Ciphertext,
        diagonals: &[Option<crate::ckks::Plaintext>],
        g1: usize,
        g2: usize,
        count: usize,
        keys: RotationKeys,
    ) -> Result<Option<Ciphertext>> {
        let ev = self.ev();
        let gk = &self.ctx.gk;
        let babies = match keys {
            RotationKeys::Fast => {
                let baby_steps: Vec<i64> = (0..g1 as i64).collect();
                ev.rotate_hoisted(w, &baby_steps, gk)?
            }
            RotationKeys::Compact => {
                // Each baby step is the previous one rotated by 1.
                let mut babies = vec![w.clone()];
                while babies.len() < g1 {
                    let last = babies.last().ok_or(HeError::Internal("no baby step"))?;
                    let next = ev.rotate(last, 1, gk)?;
                    babies.push(next);
                }
                babies
            }
        };
        if keys == RotationKeys::Compact {
            // Horner form over the giant steps: acc ← inner_a + rot(acc, g1), a = g2−1 … 0.
            let mut acc: Option<Ciphertext> = None;
            for a in (0..g2).rev() {
                let inner = self.inner_sum(&babies, diagonals, a, g1, count)?;
                acc = match (acc, inner) {
                    (None, inner) => inner,
                    (Some(acc), inner) => {
                        let mut r = ev.rotate(&acc, g1 as i64, gk)?;
                        if let Some(inner) = inner {
                            ev.add_assign(&mut r, &inner)?;
                        }
                        Some(r)
                    }
                };
            }
            return Ok(acc);
        }
        let mut acc: Option<Ciphertext> = None;
        for a in 0..g2 {
            let Some(inner) = self.inner_sum(&babies, diagonals, a, g1, count)? else {
                continue;
            };
            let rotated = if a == 0 {
                inner
            } else {
                ev.rotate(&inner, (a * g1) as i64, gk)?
            };
            match acc.as_mut() {
                Some(acc) => ev.add_assign(acc, &rotated)?,
                None => acc = Some(rotated),
            }
        }
        Ok(acc)
    }

    /// Giant step `a`'s inner sum `Σ_b diagonal[a·g1 + b] · baby_b` (`None` if every
    /// diagonal of it is zero).
    fn inner_sum(
        &self,
        babies: &[Ciphertext],
        diagonals: &[Option<crate::ckks::Plaintext>],
        a: usize,
        g1: usize,
        count: usize,
    ) -> Result<Option<Ciphertext>> {
        let ev = self.ev();
        let mut inner: Option<Ciphertext> = None;
        for (b, baby) in babies.iter().enumerate() {
            let i = a * g1 + b;
            if i >= count {
                break;
            }
            let Some(pt) = diagonals.get(i).and_then(Option::as_ref) else {
                continue;
            };
            let term = ev.multiply_plain(baby, pt)?;
            match inner.as_mut() {
                Some(acc) => ev.add_assign(acc, &term)?,
                None => inner = Some(term),
            }
        }
        Ok(inner)
    }

    /// The diagonals of `matrix` at `level` (below the level they were encoded at: mod-switched).
    fn diagonals_at<'m>(
        &self,
        matrix: &'m EncodedMatrix,
        level: usize,
    ) -> Result<std::borrow::Cow<'m, [Option<crate::ckks::Plaintext>]>> {
        if level == matrix.level {
            return Ok(std::borrow::Cow::Borrowed(&matrix.diagonals));
        }
        let ev = self.ev();
        Ok(std::borrow::Cow::Owned(
            matrix
                .diagonals
                .iter()
                .map(|d| {
                    d.as_ref()
                        .map(|pt| ev.mod_switch_plain_to_level(pt, level))
                        .transpose()
                })
                .collect::<Result<Vec<_>>>()?,
        ))
    }

    /// [`CkksVector::matmul_encoded`] for a blocked vector and a matrix encoded with
    /// [`CkksVector::encode_matrix_blocked`]: `g2` products by the plaintexts with hoisted
    /// giant-step rotations, then the sum over the `babies` blocks (`log2(babies)`
    /// rotations), then the fold of a narrowing product's partial sums.
    fn matmul_blocked(&self, matrix: &EncodedMatrix) -> Result<Self> {
        let Layout::Blocked { block, babies } = matrix.input else {
            return Err(HeError::Internal("matmul_blocked with another matrix"));
        };
        if self.layout != matrix.input {
            return Err(HeError::ShapeMismatch(format!(
                "this matrix was encoded for vectors laid out {:?} \
                 (CkksVector::encrypt_blocked); the vector is {:?}",
                matrix.input, self.layout
            )));
        }
        let (np, mp, d, _, _) = Self::replicated_shape(matrix.rows, matrix.cols);
        let g2 = d.div_ceil(babies);
        let ev = self.ev();
        let gk = &self.ctx.gk;
        let w = self.input_for(matrix)?;
        let level = w.level();
        let plains = self.diagonals_at(matrix, level)?;
        let giant_steps: Vec<i64> = (0..g2).map(|a| (a * babies) as i64).collect();
        let giants = ev.rotate_hoisted(&w, &giant_steps, gk)?;
        let mut acc: Option<Ciphertext> = None;
        for (giant, pt) in giants.iter().zip(plains.iter()) {
            let Some(pt) = pt else { continue };
            let term = ev.multiply_plain(giant, pt)?;
            match acc.as_mut() {
                Some(acc) => ev.add_assign(acc, &term)?,
                None => acc = Some(term),
            }
        }
        // Sum the blocks' partial products, then fold a narrowing product.
        let strides: Vec<usize> = doubling(block, block * babies)
            .chain(doubling(mp, np))
            .collect();
        self.summed_product(acc, &w, &strides, matrix.keys, matrix.cols)
    }

    /// [`CkksVector::matmul_encoded`] for a replicated vector and a matrix encoded with
    /// [`CkksVector::encode_matrix_replicated`].
    fn matmul_replicated(&self, matrix: &EncodedMatrix) -> Result<Self> {
        if self.layout != Layout::Replicated {
            return Err(HeError::ShapeMismatch(
                "this matrix was encoded for replicated vectors \
                 (CkksVector::encrypt_replicated); the vector is not"
                    .into(),
            ));
        }
        let (np, mp, d, g1, g2) = Self::replicated_shape(matrix.rows, matrix.cols);
        let w = self.input_for(matrix)?;
        let diagonals = self.diagonals_at(matrix, w.level())?;
        let acc = self.baby_giant_sum(&w, &diagonals, g1, g2, d, matrix.keys)?;
        // Fold the p/q partial sums of a narrowing product.
        let strides: Vec<usize> = doubling(mp, np).collect();
        self.summed_product(acc, &w, &strides, matrix.keys, matrix.cols)
    }

    /// This vector's ciphertext brought to `matrix`'s level, which must leave a level.
    fn input_for(&self, matrix: &EncodedMatrix) -> Result<Ciphertext> {
        let w = if self.level() > matrix.level {
            self.at_level(matrix.level)?
        } else {
            self.ct.clone()
        };
        if w.level() == 0 {
            return Err(HeError::OutOfLevels { needed: 1, left: 0 });
        }
        Ok(w)
    }

    /// Finishes a product of replicated output: `acc` (zero if every diagonal was), plus
    /// its rotations by each of `strides` in turn (`x += rot(x, s)`), rescaled. The sums come
    /// before the rescale so that its rounding error is added once, not once per partial sum.
    fn summed_product(
        &self,
        acc: Option<Ciphertext>,
        w: &Ciphertext,
        strides: &[usize],
        keys: RotationKeys,
        cols: usize,
    ) -> Result<Self> {
        let ev = self.ev();
        let mut acc = match acc {
            Some(a) => a,
            None => {
                let level = w.level();
                let scale = self.ctx.scale_at(level);
                ev.multiply_plain(w, &self.ctx.encoder.encode(&[0.0], scale, level)?)?
            }
        };
        for (stride, terms) in sum_plan(strides, keys) {
            // acc ← acc + rot(acc) + … + rot^{terms−1}(acc), in Horner form with one key.
            let mut h = ev.rotate(&acc, stride as i64, &self.ctx.gk)?;
            for _ in 2..terms {
                ev.add_assign(&mut h, &acc)?;
                h = ev.rotate(&h, stride as i64, &self.ctx.gk)?;
            }
            ev.add_assign(&mut acc, &h)?;
        }
        let mut out = ev.rescale(&acc)?;
        out.set_scale(self.ctx.scale_at(out.level()));
        Ok(Self {
            ctx: self.ctx.clone(),
            ct: out,
            len: cols,
            dirty: true,
            layout: Layout::Replicated,
        })
    }

    // ----- serialization -----

    /// Serializes the vector (length, then the ciphertext).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&(self.len as u32).to_le_bytes());
        match self.layout {
            Layout::Plain => v.push(u8::from(self.dirty)),
            Layout::Replicated => v.push(2),
            Layout::Blocked { block, babies } => {
                v.push(3);
                v.extend_from_slice(&(block as u32).to_le_bytes());
                v.extend_from_slice(&(babies as u32).to_le_bytes());
            }
        }
        v.extend_from_slice(&self.ct.to_bytes());
        v
    }

    /// Reads a vector serialized with [`CkksVector::to_bytes`] under the same parameters.
    pub fn from_bytes(ctx: &Arc<VectorContext>, bytes: &[u8]) -> Result<Self> {
        let bad = |r: &str| HeError::Deserialize {
            what: "vector",
            reason: r.to_string(),
        };
        if bytes.len() < 5 {
            return Err(bad("truncated header"));
        }
        let len = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
        if len > ctx.ckks.slots() {
            return Err(bad("length exceeds the slot count"));
        }
        let (dirty, layout, rest) = match bytes[4] {
            0 => (false, Layout::Plain, &bytes[5..]),
            1 => (true, Layout::Plain, &bytes[5..]),
            2 if len > 0 => (true, Layout::Replicated, &bytes[5..]),
            3 if bytes.len() >= 13 && len > 0 => {
                let word = |i: usize| {
                    u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]])
                        as usize
                };
                let layout = Layout::Blocked {
                    block: word(5),
                    babies: word(9),
                };
                // Only a layout some product of this length takes (whatever its width).
                let slots = ctx.ckks.slots();
                let valid = (0..=slots.trailing_zeros())
                    .any(|k| Self::blocked_layout(slots, len, 1 << k).ok() == Some(layout));
                if !valid {
                    return Err(bad("a blocked layout no product takes"));
                }
                (true, layout, &bytes[13..])
            }
            _ => return Err(bad("bad flag")),
        };
        let ct = Ciphertext::from_bytes(&ctx.ckks, rest)?;
        if ct.size() != 2 {
            return Err(bad("vectors hold relinearized (2-part) ciphertexts"));
        }
        if (ct.scale() / ctx.scale_at(ct.level()) - 1.0).abs() > 1e-9 {
            return Err(bad(
                "ciphertext scale does not follow the vector scale schedule",
            ));
        }
        Ok(Self {
            ctx: ctx.clone(),
            ct,
            len,
            dirty,
            layout,
        })
    }
}

/// `values` encoded, or `None` if they are all zero (a diagonal the product skips).
fn encode_nonzero(
    ctx: &VectorContext,
    values: &[f64],
    scale: f64,
    level: usize,
) -> Result<Option<crate::ckks::Plaintext>> {
    if values.iter().all(|&x| x == 0.0) {
        return Ok(None);
    }
    ctx.encoder.encode(values, scale, level).map(Some)
}

/// `from, 2·from, 4·from, …` below `to` (`from` a power of two).
fn doubling(from: usize, to: usize) -> impl Iterator<Item = usize> {
    std::iter::successors(Some(from.max(1)), |&s| s.checked_mul(2)).take_while(move |&s| s < to)
}

/// How a sum over the doubling `strides` (`x += rot(x, s)` for each, in order: the offsets
/// `Σ_i b_i·s_i`, `b_i ∈ {0, 1}`) is done: `(stride, terms)` steps, each
/// `x ← Σ_{k<terms} rot(x, k·stride)` with the single key `stride`. [`RotationKeys::Fast`]
/// keeps one two-term step per stride; [`RotationKeys::Compact`] merges a stride with the
/// next when it is twice it into one four-term step (the same offsets: `{0,s} + {0,2s} =
/// {0,s,2s,3s}`).
fn sum_plan(strides: &[usize], keys: RotationKeys) -> Vec<(usize, usize)> {
    let mut sorted = strides.to_vec();
    if keys == RotationKeys::Fast {
        return sorted.into_iter().map(|s| (s, 2)).collect();
    }
    sorted.sort_unstable();
    let mut plan = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let s = sorted[i];
        if sorted.get(i + 1) == s.checked_mul(2).as_ref() {
            plan.push((s, 4));
            i += 2;
        } else {
            plan.push((s, 2));
            i += 1;
        }
    }
    plan
}

/// The rotation keys [`sum_plan`] uses.
fn sum_keys(strides: &[usize], keys: RotationKeys) -> Vec<usize> {
    sum_plan(strides, keys)
        .into_iter()
        .map(|(s, _)| s)
        .collect()
}

/// A matrix to encode at `level`: rows of one non-zero length, finite entries, a level the
/// parameters have. Returns `(rows, cols)`.
fn check_matrix(ctx: &VectorContext, matrix: &[Vec<f64>], level: usize) -> Result<(usize, usize)> {
    let n = matrix.len();
    let m = matrix.first().map_or(0, Vec::len);
    if n == 0 || m == 0 || matrix.iter().any(|r| r.len() != m) {
        return Err(HeError::ShapeMismatch(
            "matrix rows must all have the same, non-zero length".into(),
        ));
    }
    if let Some(&bad) = matrix.iter().flatten().find(|v| !v.is_finite()) {
        return Err(HeError::NonFiniteValue(bad));
    }
    if level > ctx.ckks.max_level() {
        return Err(HeError::OutOfLevels {
            needed: level,
            left: ctx.ckks.max_level(),
        });
    }
    Ok((n, m))
}

/// `values` repeated with period `values.len().next_power_of_two()` over `slots` slots
/// (zeros fill each period past the values).
fn tile(values: &[f64], slots: usize) -> Vec<f64> {
    let period = values.len().next_power_of_two().max(1);
    let mut out = vec![0.0; slots];
    for chunk in out.chunks_mut(period) {
        let n = chunk.len().min(values.len());
        chunk[..n].copy_from_slice(&values[..n]);
    }
    out
}

/// `ceil(log2(n))` for `n ≥ 1`.
fn ceil_log2(n: usize) -> usize {
    (usize::BITS - (n.max(1) - 1).leading_zeros()) as usize
}

/// Powers `x^j` of one vector, each computed once at its minimal depth `ceil(log2 j)`.
struct PowerCache {
    base: CkksVector,
    powers: Vec<Option<CkksVector>>,
}

impl PowerCache {
    fn get(&mut self, j: usize) -> Result<CkksVector> {
        if j == 1 {
            return Ok(self.base.clone());
        }
        if j == 0 {
            return Err(HeError::Internal("x^0 is not a ciphertext power"));
        }
        if let Some(Some(p)) = self.powers.get(j) {
            return Ok(p.clone());
        }
        let high = 1usize << (usize::BITS - 1 - (j - 1).leading_zeros()); // largest power of two < j
        let p = if high * 2 == j {
            self.get(high)?.square()?
        } else {
            let a = self.get(high)?;
            let b = self.get(j - high)?;
            a.mul(&b)?
        };
        if self.powers.len() <= j {
            self.powers.resize(j + 1, None);
        }
        self.powers[j] = Some(p.clone());
        Ok(p)
    }
}

macro_rules! vector_ops {
    ($tr:ident, $f:ident, $vec:ident, $plain:ident, $scalar:ident) => {
        impl std::ops::$tr<&CkksVector> for &CkksVector {
            type Output = Result<CkksVector>;
            fn $f(self, rhs: &CkksVector) -> Result<CkksVector> {
                self.$vec(rhs)
            }
        }
        impl std::ops::$tr<&[f64]> for &CkksVector {
            type Output = Result<CkksVector>;
            fn $f(self, rhs: &[f64]) -> Result<CkksVector> {
                self.$plain(rhs)
            }
        }
        impl std::ops::$tr<f64> for &CkksVector {
            type Output = Result<CkksVector>;
            fn $f(self, rhs: f64) -> Result<CkksVector> {
                self.$scalar(rhs)
            }
        }
    };
}

vector_ops!(Add, add, add, add_plain, add_scalar);
vector_ops!(Sub, sub, sub, sub_plain, sub_scalar);
vector_ops!(Mul, mul, mul, mul_plain, mul_scalar);

impl std::ops::Neg for &CkksVector {
    type Output = Result<CkksVector>;
    fn neg(self) -> Result<CkksVector> {
        CkksVector::neg(self)
    }
}

/// Splits `body` into exactly `count` parts, each prefixed by its length (u64, little endian),
/// with nothing left over (the layout of serialized vector contexts).
pub(crate) fn split_length_prefixed(
    body: &[u8],
    count: usize,
) -> std::result::Result<Vec<&[u8]>, &'static str> {
    let mut parts = Vec::with_capacity(count);
    let mut rest = body;
    for _ in 0..count {
        let (len, tail) = rest.split_first_chunk::<8>().ok_or("truncated")?;
        let len = usize::try_from(u64::from_le_bytes(*len)).map_err(|_| "length overflow")?;
        if tail.len() < len {
            return Err("truncated");
        }
        let (part, tail) = tail.split_at(len);
        parts.push(part);
        rest = tail;
    }
    if !rest.is_empty() {
        return Err("trailing bytes");
    }
    Ok(parts)
}

/// Joins parts, each prefixed by its length (the inverse of [`split_length_prefixed`]).
pub(crate) fn join_length_prefixed(magic: &[u8], parts: &[Vec<u8>]) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(magic.len() + parts.iter().map(|p| p.len() + 8).sum::<usize>());
    out.extend_from_slice(magic);
    for p in parts {
        out.extend_from_slice(&(p.len() as u64).to_le_bytes());
        out.extend_from_slice(p);
    }
    out
}
