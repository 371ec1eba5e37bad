//! A versioned, length-checked binary format for parameters, keys, plaintexts and
//! ciphertexts.
//!
//! Every object starts with `b"VEIL"`, a format version, an object kind and the 32-byte
//! parameter fingerprint. Polynomial coefficients are packed to their prime's bit width (a
//! 40-bit prime takes 40 bits per coefficient, not 64), and seeded objects (secret-key
//! ciphertexts, the uniform halves of public and switching keys) store a 32-byte seed instead
//! of their uniform polynomial.
//!
//! Reading checks the header, the fingerprint against the context, every count against the
//! parameters, and the exact remaining length **before** allocating; every coefficient must be
//! reduced modulo its prime. Malformed input is an error, never a panic.

use std::sync::Arc;

use zeroize::Zeroizing;

use veil_math::{Representation, RnsPoly};

use crate::ckks::ciphertext::{Ciphertext, Plaintext};
use crate::ckks::context::CkksContext;
use crate::ckks::encryptor::expand_seeded_a;
use crate::ckks::keys::{
    uniform_poly, GaloisKeys, PublicKey, RelinearizationKey, SecretKey, SwitchingKey,
};
use crate::ckks::params::{CkksParameters, SecurityLevel, SECURITY_TABLE_128};
use crate::error::{HeError, Result};

/// Magic bytes that start every serialized object.
pub const MAGIC: &[u8; 4] = b"VEIL";
/// Current format version.
pub const FORMAT_VERSION: u8 = 1;
/// Size of the common header: magic, version, kind, fingerprint.
pub const HEADER_LEN: usize = 4 + 1 + 1 + 32;

/// What a serialized object is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ObjectKind {
    /// [`CkksParameters`].
    Parameters = 1,
    /// [`Plaintext`].
    Plaintext = 2,
    /// [`Ciphertext`].
    Ciphertext = 3,
    /// [`PublicKey`].
    PublicKey = 4,
    /// [`SecretKey`].
    SecretKey = 5,
    /// [`RelinearizationKey`].
    RelinearizationKey = 6,
    /// [`GaloisKeys`].
    GaloisKeys = 7,
    /// [`EncapsulationKeys`](crate::ckks::EncapsulationKeys).
    EncapsulationKeys = 8,
}

impl ObjectKind {
    fn name(self) -> &'static str {
        match self {
            ObjectKind::Parameters => "parameters",
            ObjectKind::Plaintext => "plaintext",
            ObjectKind::Ciphertext => "ciphertext",
            ObjectKind::PublicKey => "public key",
            ObjectKind::SecretKey => "secret key",
            ObjectKind::RelinearizationKey => "relinearization key",
            ObjectKind::GaloisKeys => "Galois keys",
            ObjectKind::EncapsulationKeys => "encapsulation keys",
        }
    }
}

// ---------- writing ----------

fn header(kind: ObjectKind, fingerprint: &[u8; 32]) -> Vec<u8> {
    let mut v = Vec::with_capacity(HEADER_LEN);
    v.extend_from_slice(MAGIC);
    v.push(FORMAT_VERSION);
    v.push(kind as u8);
    v.extend_from_slice(fingerprint);
    v
}

/// Appends the limbs of `p`, each coefficient on its prime's bit width.
fn write_poly(out: &mut Vec<u8>, p: &RnsPoly) {
    let moduli = p.moduli();
    let mut acc: u128 = 0;
    let mut nbits = 0u32;
    for (l, m) in moduli.iter().enumerate() {
        let b = m.bits();
        for &c in p.limb(l) {
            acc |= u128::from(c) << nbits;
            nbits += b;
            while nbits >= 8 {
                out.push(acc as u8);
                acc >>= 8;
                nbits -= 8;
            }
        }
    }
    if nbits > 0 {
        out.push(acc as u8);
    }
}

/// Bytes taken by a packed polynomial over `bits` (one entry per limb).
fn packed_len(n: usize, bits: &[u32]) -> usize {
    (n * bits.iter().map(|&b| b as usize).sum::<usize>()).div_ceil(8)
}

// ---------- reading ----------

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn err(&self, reason: impl Into<String>) -> HeError {
        HeError::Deserialize {
            what: self.what,
            reason: reason.into(),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or_else(|| self.err("length overflow"))?;
        if end > self.buf.len() {
            return Err(self.err(format!(
                "truncated: need {n} more bytes at offset {}, {} left",
                self.pos,
                self.buf.len() - self.pos
            )));
        }
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn f64(&mut self) -> Result<f64> {
        Ok(f64::from_bits(self.u64()?))
    }

    fn seed(&mut self) -> Result<[u8; 32]> {
        let mut s = [0u8; 32];
        s.copy_from_slice(self.take(32)?);
        Ok(s)
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Requires exactly `n` bytes to remain (checked before any allocation).
    fn expect_remaining(&self, n: usize) -> Result<()> {
        if self.remaining() != n {
            return Err(self.err(format!(
                "expected {n} more bytes, found {}",
                self.remaining()
            )));
        }
        Ok(())
    }

    fn finish(&self) -> Result<()> {
        self.expect_remaining(0)
    }

    /// Reads the header; returns the fingerprint.
    fn header(&mut self, kind: ObjectKind) -> Result<[u8; 32]> {
        if self
            .take(4)
            .map_err(|_| self.err("too short for a header"))?
            != MAGIC
        {
            return Err(self.err("not a Veil object (bad magic)"));
        }
        let version = self.u8()?;
        if version != FORMAT_VERSION {
            return Err(self.err(format!(
                "unsupported format version {version} (this build reads {FORMAT_VERSION})"
            )));
        }
        let k = self.u8()?;
        if k != kind as u8 {
            return Err(self.err(format!("object kind {k} is not a {}", kind.name())));
        }
        self.seed()
    }

    /// Reads a packed polynomial over `basis`.
    fn poly(&mut self, ctx: &CkksContext, basis: &[usize]) -> Result<RnsPoly> {
        let n = ctx.degree();
        let moduli: Vec<_> = basis.iter().map(|&i| ctx.ring().moduli()[i]).collect();
        let bits: Vec<u32> = moduli.iter().map(|m| m.bits()).collect();
        let bytes = self.take(packed_len(n, &bits))?;
        let mut data = vec![0u64; basis.len() * n];
        let mut acc: u128 = 0;
        let mut nbits = 0u32;
        let mut pos = 0usize;
        for (l, m) in moduli.iter().enumerate() {
            let b = m.bits();
            let mask = (1u128 << b) - 1;
            for c in data[l * n..(l + 1) * n].iter_mut() {
                while nbits < b {
                    acc |= u128::from(bytes[pos]) << nbits;
                    pos += 1;
                    nbits += 8;
                }
                let v = (acc & mask) as u64;
                acc >>= b;
                nbits -= b;
                if v >= m.value() {
                    return Err(self.err(format!(
                        "coefficient {v} is not reduced modulo {}",
                        m.value()
                    )));
                }
                *c = v;
            }
        }
        Ok(RnsPoly::from_limbs(
            ctx.ring(),
            basis,
            Representation::Ntt,
            data,
        )?)
    }
}

fn reader<'a>(bytes: &'a [u8], kind: ObjectKind, ctx: &CkksContext) -> Result<Reader<'a>> {
    let mut r = Reader {
        buf: bytes,
        pos: 0,
        what: kind.name(),
    };
    let fp = r.header(kind)?;
    ctx.check_fingerprint(&fp)?;
    Ok(r)
}

fn poly_bits(ctx: &CkksContext, basis: &[usize]) -> Vec<u32> {
    basis
        .iter()
        .map(|&i| ctx.ring().moduli()[i].bits())
        .collect()
}

// ---------- parameters ----------

impl CkksParameters {
    /// Serializes the parameter set (degree, bit sizes, special primes, dnum, scale, security).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = header(ObjectKind::Parameters, &self.fingerprint());
        v.extend_from_slice(&(self.degree() as u32).to_le_bytes());
        v.push(self.bit_sizes().len() as u8);
        v.extend(self.bit_sizes().iter().map(|&b| b as u8));
        v.push(self.special_moduli().len() as u8);
        v.push(self.dnum() as u8);
        v.extend_from_slice(&self.scale_bits().to_bits().to_le_bytes());
        v.push(u8::from(self.security() == SecurityLevel::Insecure));
        v
    }

    /// Reads and re-validates a parameter set received from someone else; the primes
    /// regenerated from it must match the recorded fingerprint.
    ///
    /// Parameters below 128-bit security are refused, whatever the bytes say: the "insecure"
    /// flag is the sender's claim, and only the receiver may accept such parameters, with
    /// [`CkksParameters::from_bytes_insecure_allow_below_128_bit_security`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        Self::read(bytes, false)
    }

    /// Like [`CkksParameters::from_bytes`], but accepts parameters below 128-bit security.
    /// **Insecure**: for tests and experiments whose peer is trusted to pick toy parameters.
    pub fn from_bytes_insecure_allow_below_128_bit_security(bytes: &[u8]) -> Result<Self> {
        Self::read(bytes, true)
    }

    fn read(bytes: &[u8], allow_insecure: bool) -> Result<Self> {
        let mut r = Reader {
            buf: bytes,
            pos: 0,
            what: "parameters",
        };
        let fp = r.header(ObjectKind::Parameters)?;
        let degree = r.u32()? as usize;
        let count = r.u8()? as usize;
        let bits: Vec<u32> = r.take(count)?.iter().map(|&b| u32::from(b)).collect();
        let special = r.u8()? as usize;
        let dnum = r.u8()? as usize;
        let scale_bits = r.f64()?;
        let insecure = match r.u8()? {
            0 => false,
            1 => true,
            x => return Err(r.err(format!("bad security flag {x}"))),
        };
        r.finish()?;
        // Rebuild with the opt-in so that the security level is *computed* here, then decide:
        // the flag in the bytes must agree with it, and only `allow_insecure` (the receiver's
        // choice) lets an insecure set through.
        let params = CkksParameters::builder()
            .degree(degree)
            .moduli_bits(&bits)
            .special_primes(special)
            .dnum(dnum)
            .scale_bits(scale_bits)
            .insecure_allow_below_128_bit_security()
            .build()?;
        let computed_insecure = params.security() == SecurityLevel::Insecure;
        if computed_insecure != insecure {
            return Err(r.err("the security flag does not match the parameters"));
        }
        if computed_insecure && !allow_insecure {
            let total_bits: u32 = bits.iter().sum();
            let max_bits = SECURITY_TABLE_128
                .iter()
                .find(|(d, _)| *d == degree)
                .map_or(0, |&(_, m)| m);
            return Err(HeError::InsecureParameters {
                degree,
                total_bits,
                max_bits,
            });
        }
        if params.fingerprint() != fp {
            return Err(r.err("fingerprint does not match the parameters"));
        }
        Ok(params)
    }
}

// ---------- plaintexts and ciphertexts ----------

fn check_level(r: &Reader<'_>, ctx: &CkksContext, level: usize) -> Result<()> {
    if level > ctx.max_level() {
        return Err(r.err(format!(
            "level {level} exceeds the parameters' maximum {}",
            ctx.max_level()
        )));
    }
    Ok(())
}

fn check_scale(r: &Reader<'_>, ctx: &CkksContext, level: usize, scale: f64) -> Result<()> {
    ctx.check_scale(level, scale)
        .map_err(|e| r.err(format!("invalid scale {scale:e}: {e}")))
}

impl Plaintext {
    /// Serializes the plaintext.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = header(ObjectKind::Plaintext, &self.fingerprint);
        v.push(self.level() as u8);
        v.extend_from_slice(&self.scale.to_bits().to_le_bytes());
        write_poly(&mut v, &self.poly);
        v
    }

    /// Reads a plaintext made for `ctx`'s parameters.
    pub fn from_bytes(ctx: &Arc<CkksContext>, bytes: &[u8]) -> Result<Self> {
        let mut r = reader(bytes, ObjectKind::Plaintext, ctx)?;
        let level = r.u8()? as usize;
        check_level(&r, ctx, level)?;
        let scale = r.f64()?;
        check_scale(&r, ctx, level, scale)?;
        let basis = ctx.q_basis(level);
        r.expect_remaining(packed_len(ctx.degree(), &poly_bits(ctx, &basis)))?;
        let poly = r.poly(ctx, &basis)?;
        Ok(Plaintext {
            poly,
            scale,
            fingerprint: ctx.fingerprint(),
        })
    }
}

impl Ciphertext {
    /// Serializes the ciphertext (seeded ciphertexts store the seed instead of `c_1`).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = header(ObjectKind::Ciphertext, &self.fingerprint);
        v.push(self.level() as u8);
        v.push(self.parts.len() as u8);
        v.extend_from_slice(&self.scale.to_bits().to_le_bytes());
        match (&self.seed, self.parts.len()) {
            (Some(seed), 2) => {
                v.push(1);
                write_poly(&mut v, &self.parts[0]);
                v.extend_from_slice(seed);
            }
            _ => {
                v.push(0);
                for p in &self.parts {
                    write_poly(&mut v, p);
                }
            }
        }
        v
    }

    /// Reads a ciphertext made for `ctx`'s parameters.
    pub fn from_bytes(ctx: &Arc<CkksContext>, bytes: &[u8]) -> Result<Self> {
        let mut r = reader(bytes, ObjectKind::Ciphertext, ctx)?;
        let level = r.u8()? as usize;
        check_level(&r, ctx, level)?;
        let size = r.u8()? as usize;
        if !(2..=3).contains(&size) {
            return Err(r.err(format!("a ciphertext has 2 or 3 parts, not {size}")));
        }
        let scale = r.f64()?;
        check_scale(&r, ctx, level, scale)?;
        let seeded = r.u8()?;
        let basis = ctx.q_basis(level);
        let plen = packed_len(ctx.degree(), &poly_bits(ctx, &basis));
        match seeded {
            1 if size == 2 => {
                r.expect_remaining(plen + 32)?;
                let c0 = r.poly(ctx, &basis)?;
                let seed = r.seed()?;
                let c1 = expand_seeded_a(ctx, &basis, seed)?;
                Ok(Ciphertext {
                    parts: vec![c0, c1],
                    scale,
                    fingerprint: ctx.fingerprint(),
                    seed: Some(seed),
                })
            }
            0 => {
                r.expect_remaining(plen * size)?;
                let parts = (0..size)
                    .map(|_| r.poly(ctx, &basis))
                    .collect::<Result<Vec<_>>>()?;
                Ok(Ciphertext {
                    parts,
                    scale,
                    fingerprint: ctx.fingerprint(),
                    seed: None,
                })
            }
            x => Err(r.err(format!("bad seed flag {x} for a {size}-part ciphertext"))),
        }
    }
}

// ---------- keys ----------

impl PublicKey {
    /// Serializes the public key (`b` packed, `a` as its seed).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = header(ObjectKind::PublicKey, &self.fingerprint);
        v.extend_from_slice(&self.seed);
        write_poly(&mut v, &self.b);
        v
    }

    /// Reads a public key made for `ctx`'s parameters.
    pub fn from_bytes(ctx: &Arc<CkksContext>, bytes: &[u8]) -> Result<Self> {
        let mut r = reader(bytes, ObjectKind::PublicKey, ctx)?;
        let basis = ctx.full_basis();
        r.expect_remaining(32 + packed_len(ctx.degree(), &poly_bits(ctx, &basis)))?;
        let seed = r.seed()?;
        let b = r.poly(ctx, &basis)?;
        let a = expand_seeded_a(ctx, &basis, seed)?;
        Ok(PublicKey {
            b,
            a,
            seed,
            fingerprint: ctx.fingerprint(),
        })
    }
}

impl SecretKey {
    /// Serializes the secret key: its ternary coefficients, 2 bits each. **Handle the bytes
    /// as the secret they are** (they are returned in a zeroizing buffer).
    pub fn to_bytes(&self) -> Result<Zeroizing<Vec<u8>>> {
        let mut s = Zeroizing::new(self.s.clone());
        s.to_coefficient();
        let m0 = s.moduli()[0];
        // Exact capacity up front: a buffer that grows leaves its old, unzeroized copies behind.
        let mut v = Zeroizing::new(Vec::with_capacity(HEADER_LEN + s.degree().div_ceil(4)));
        v.extend_from_slice(&header(ObjectKind::SecretKey, &self.fingerprint));
        let mut byte = 0u8;
        for (k, &c) in s.limb(0).iter().enumerate() {
            let code = match m0.center(c) {
                0 => 0u8,
                1 => 1,
                -1 => 2,
                _ => return Err(HeError::Internal("secret key is not ternary")),
            };
            byte |= code << (2 * (k % 4));
            if k % 4 == 3 {
                v.push(byte);
                byte = 0;
            }
        }
        Ok(v)
    }

    /// Reads a secret key made for `ctx`'s parameters.
    pub fn from_bytes(ctx: &Arc<CkksContext>, bytes: &[u8]) -> Result<Self> {
        let mut r = reader(bytes, ObjectKind::SecretKey, ctx)?;
        let n = ctx.degree();
        r.expect_remaining(n / 4)?;
        let packed = r.take(n / 4)?;
        let mut coeffs = Zeroizing::new(vec![0i64; n]);
        for (k, c) in coeffs.iter_mut().enumerate() {
            *c = match (packed[k / 4] >> (2 * (k % 4))) & 3 {
                0 => 0,
                1 => 1,
                2 => -1,
                _ => return Err(r.err("invalid ternary coefficient code")),
            };
        }
        let mut s = RnsPoly::from_signed(ctx.ring(), &ctx.full_basis(), &coeffs)?;
        s.to_ntt();
        Ok(SecretKey {
            s,
            fingerprint: ctx.fingerprint(),
        })
    }
}

/// Marks a switching key written with its level (the byte after the digit count).
const KEY_LEVEL_FLAG: u8 = 0x80;

fn write_switching_key(v: &mut Vec<u8>, k: &SwitchingKey) {
    v.push(KEY_LEVEL_FLAG | k.b.len() as u8);
    v.push(k.level as u8);
    v.extend_from_slice(&k.seed);
    for b in &k.b {
        write_poly(v, b);
    }
}

/// Bytes of a top-level switching key.
fn switching_key_len(ctx: &CkksContext) -> usize {
    let digits = ctx.params().dnum();
    2 + 32 + digits * packed_len(ctx.degree(), &poly_bits(ctx, &ctx.full_basis()))
}

/// Reads a switching key: the digit count (flagged), the level it serves, the seed of its
/// uniform halves, then its `b` polynomials over the extended basis of that level. The digit
/// count must be the one the parameters give at that level.
fn read_switching_key(r: &mut Reader<'_>, ctx: &CkksContext) -> Result<SwitchingKey> {
    let first = r.u8()?;
    if first & KEY_LEVEL_FLAG == 0 {
        return Err(r.err("a switching key without its level (an older format)"));
    }
    let digits = usize::from(first & !KEY_LEVEL_FLAG);
    let level = usize::from(r.u8()?);
    let tables = ctx.key_switch.get(level).ok_or_else(|| {
        r.err(format!(
            "key for level {level}, the parameters stop at {}",
            ctx.max_level()
        ))
    })?;
    if digits != tables.digit_positions.len() {
        return Err(r.err(format!(
            "key for level {level} has {digits} digits, the parameters use {} there",
            tables.digit_positions.len()
        )));
    }
    let seed = r.seed()?;
    let basis = ctx.ext_basis(level);
    let b = (0..digits)
        .map(|_| r.poly(ctx, &basis))
        .collect::<Result<Vec<_>>>()?;
    let mut rng = <rand_chacha::ChaCha20Rng as rand_core::SeedableRng>::from_seed(seed);
    let a = (0..digits)
        .map(|_| uniform_poly(ctx, &basis, &mut rng))
        .collect::<Result<Vec<_>>>()?;
    Ok(SwitchingKey {
        b,
        a,
        level,
        seed,
        fingerprint: ctx.fingerprint(),
    })
}

impl RelinearizationKey {
    /// Serializes the relinearization key (`a` halves as a seed).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = header(ObjectKind::RelinearizationKey, &self.0.fingerprint);
        write_switching_key(&mut v, &self.0);
        v
    }

    /// Reads a relinearization key made for `ctx`'s parameters.
    pub fn from_bytes(ctx: &Arc<CkksContext>, bytes: &[u8]) -> Result<Self> {
        let mut r = reader(bytes, ObjectKind::RelinearizationKey, ctx)?;
        // A key made for a lower level (`KeyGenerator::relin_key_at_level`) is shorter: the
        // length is checked as it is read.
        if r.remaining() > switching_key_len(ctx) {
            return Err(r.err(format!(
                "{} bytes, a relinearization key takes at most {}",
                r.remaining(),
                switching_key_len(ctx)
            )));
        }
        let key = read_switching_key(&mut r, ctx)?;
        r.finish()?;
        Ok(RelinearizationKey(key))
    }
}

impl crate::ckks::EncapsulationKeys {
    /// Serializes the two encapsulation keys and the ephemeral weight.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = header(ObjectKind::EncapsulationKeys, &self.to_sparse.fingerprint);
        v.extend_from_slice(&(self.weight as u32).to_le_bytes());
        write_switching_key(&mut v, &self.to_sparse);
        write_switching_key(&mut v, &self.to_dense);
        v
    }

    /// Reads encapsulation keys made for `ctx`'s parameters: the key to the sparse secret
    /// serves level 0, the one back serves the top level, the weight is in `1..=N`.
    pub fn from_bytes(ctx: &Arc<CkksContext>, bytes: &[u8]) -> Result<Self> {
        let mut r = reader(bytes, ObjectKind::EncapsulationKeys, ctx)?;
        let weight = r.u32()? as usize;
        if weight == 0 || weight > ctx.degree() {
            return Err(r.err(format!("ephemeral weight {weight} outside 1..=N")));
        }
        let to_sparse = read_switching_key(&mut r, ctx)?;
        let to_dense = read_switching_key(&mut r, ctx)?;
        if to_sparse.level != 0 || to_dense.level != ctx.max_level() {
            return Err(r.err(format!(
                "keys for levels {} and {}, expected 0 and {}",
                to_sparse.level,
                to_dense.level,
                ctx.max_level()
            )));
        }
        r.finish()?;
        Ok(Self {
            to_sparse,
            to_dense,
            weight,
        })
    }
}

impl GaloisKeys {
    /// Serializes all Galois keys.
    pub fn to_bytes(&self, ctx: &CkksContext) -> Vec<u8> {
        let mut v = header(ObjectKind::GaloisKeys, &ctx.fingerprint());
        v.extend_from_slice(&(self.keys.len() as u32).to_le_bytes());
        for (g, k) in &self.keys {
            v.extend_from_slice(&g.to_le_bytes());
            write_switching_key(&mut v, k);
        }
        v
    }

    /// Reads Galois keys made for `ctx`'s parameters.
    pub fn from_bytes(ctx: &Arc<CkksContext>, bytes: &[u8]) -> Result<Self> {
        let mut r = reader(bytes, ObjectKind::GaloisKeys, ctx)?;
        let count = r.u32()? as usize;
        // Keys made for lower levels are shorter, so the total is checked as they are read;
        // each is at least its element, counts and seed.
        if count > r.remaining() / (8 + 2 + 32) {
            return Err(r.err(format!("{count} keys cannot fit {} bytes", r.remaining())));
        }
        let two_n = 2 * ctx.degree() as u64;
        let mut keys = GaloisKeys::default();
        for _ in 0..count {
            let g = r.u64()?;
            if g % 2 == 0 || g >= two_n {
                return Err(r.err(format!("invalid Galois element {g}")));
            }
            let k = read_switching_key(&mut r, ctx)?;
            if keys.keys.insert(g, k).is_some() {
                return Err(r.err(format!("duplicate Galois element {g}")));
            }
        }
        r.finish()?;
        Ok(keys)
    }
}
