//! The BFV context: the CKKS core (ring, key switching), the plaintext ring modulo `t`, the
//! slot layout of the batch encoder, and per-level tables for scaling by `t/Q` (decryption,
//! multiplication) and exact base extension (multiplication).

use std::sync::Arc;

use veil_math::prime::generate_ntt_primes;
use veil_math::rns::BaseConverter;
use veil_math::{Modulus, RingContext};

use crate::bfv::params::BfvParameters;
use crate::ckks::CkksContext;
use crate::error::{HeError, Result};

/// Bit size of the auxiliary primes multiplication extends ciphertexts to.
const AUX_PRIME_BITS: u32 = 60;

/// `round(t · x / Q) mod T_j` for `x` given by its residues modulo the primes of `Q` (and,
/// for multiplication, of an auxiliary base `B`, which are also the targets `T_j`):
/// the Halevi–Polyakov–Shoup scaling. With `Q̃_i = (Q/q_i)^{-1} mod q_i` and
/// `r_i = t·Q̃_i mod q_i`,
///
/// `t·x/Q ≡ Σ_i x_i·⌊c_i/q_i⌋ + Σ_i x_i·r_i/q_i + x_j·t·Q^{-1}  (mod T_j)`
///
/// where `⌊c_i/q_i⌋ ≡ −r_i·q_i^{-1} (mod T_j)` and the fractions `r_i/q_i` are held to
/// 2^-128, so the rounding is exact unless the true value is within about `L·2^-64` of a half
/// (then it is off by one, which is noise).
#[derive(Debug)]
pub(crate) struct ScaleRound {
    /// `r_i / q_i` as a 128-bit fraction (high word, low word).
    frac: Vec<(u64, u64)>,
    /// `int_mod[j][i] = −r_i·q_i^{-1} mod T_j`.
    int_mod: Vec<Vec<u64>>,
    /// `t·Q^{-1} mod T_j` (multiplication only: the target is also a source prime).
    lambda: Vec<u64>,
    targets: Vec<Modulus>,
}

impl ScaleRound {
    fn new(q: &[Modulus], t: u64, targets: &[Modulus], with_lambda: bool) -> Result<Self> {
        let mut frac = Vec::with_capacity(q.len());
        let mut r = Vec::with_capacity(q.len());
        for (i, qi) in q.iter().enumerate() {
            let hat = q
                .iter()
                .enumerate()
                .filter(|&(k, _)| k != i)
                .fold(1u64, |acc, (_, m)| qi.mul(acc, qi.reduce(m.value())));
            let inv = qi
                .inv(hat)
                .ok_or(HeError::Internal("ciphertext primes are not distinct"))?;
            let ri = qi.mul(qi.reduce(t), inv);
            let qv = u128::from(qi.value());
            let num = u128::from(ri) << 64;
            let hi = num / qv;
            let lo = ((num % qv) << 64) / qv;
            frac.push((hi as u64, lo as u64));
            r.push(ri);
        }
        let mut int_mod = Vec::with_capacity(targets.len());
        let mut lambda = Vec::new();
        for tj in targets {
            let row = q
                .iter()
                .zip(&r)
                .map(|(qi, &ri)| {
                    let inv = tj
                        .inv(tj.reduce(qi.value()))
                        .ok_or(HeError::Internal("a target prime divides Q"))?;
                    Ok(tj.neg(tj.mul(tj.reduce(ri), inv)))
                })
                .collect::<Result<Vec<_>>>()?;
            int_mod.push(row);
            if with_lambda {
                let q_mod = q
                    .iter()
                    .fold(1u64, |acc, m| tj.mul(acc, tj.reduce(m.value())));
                let q_inv = tj
                    .inv(q_mod)
                    .ok_or(HeError::Internal("a target prime divides Q"))?;
                lambda.push(tj.mul(tj.reduce(t), q_inv));
            }
        }
        Ok(Self {
            frac,
            int_mod,
            lambda,
            targets: targets.to_vec(),
        })
    }

    /// Applies the scaling to coefficient-form limbs: `src` holds the `|Q|` limbs of `x` (each
    /// `n` words), `extra` the target limbs of `x` (multiplication) or nothing; `out` receives
    /// one limb per target. Returns, if asked, the largest distance of `t·x/Q` from an integer
    /// over all coefficients, as a fraction of 2^64 (the invariant noise, for decryption).
    pub(crate) fn apply(
        &self,
        n: usize,
        src: &[u64],
        extra: Option<&[u64]>,
        out: &mut [u64],
        track_noise: bool,
    ) -> u64 {
        let l = self.frac.len();
        let mut worst = 0u64;
        for c in 0..n {
            // Σ_i x_i · (hi·2^-64 + lo·2^-128) in 192-bit fixed point: (w2, w1, w0)·2^-128.
            let (mut w0, mut w1, mut w2) = (0u64, 0u64, 0u64);
            for (i, &(hi, lo)) in self.frac.iter().enumerate() {
                let x = u128::from(src[i * n + c]);
                let p_lo = x * u128::from(lo);
                let p_hi = x * u128::from(hi);
                let (s0, c0) = w0.overflowing_add(p_lo as u64);
                w0 = s0;
                let mid = u128::from(w1)
                    + ((p_lo >> 64) as u64 as u128)
                    + (p_hi as u64 as u128)
                    + u128::from(c0);
                w1 = mid as u64;
                w2 = w2
                    .wrapping_add((mid >> 64) as u64)
                    .wrapping_add((p_hi >> 64) as u64);
            }
            let round_up = w1 >> 63;
            let rounded = w2.wrapping_add(round_up);
            if track_noise {
                let dist = if round_up == 1 { w1.wrapping_neg() } else { w1 };
                worst = worst.max(dist);
            }
            for (j, tj) in self.targets.iter().enumerate() {
                let row = &self.int_mod[j];
                let mut acc = u128::from(rounded);
                for i in 0..l {
                    acc += u128::from(src[i * n + c]) * u128::from(row[i]);
                }
                if let Some(e) = extra {
                    acc += u128::from(e[j * n + c]) * u128::from(self.lambda[j]);
                }
                out[j * n + c] = tj.reduce_u128(acc);
            }
        }
        worst
    }
}

/// Per-level tables.
#[derive(Debug)]
pub(crate) struct LevelTables {
    /// `⌊Q_ℓ/t⌋ mod q_i`.
    pub delta: Vec<u64>,
    /// `Q_ℓ mod t`: encryption adds `round((Q_ℓ mod t)·m / t)` to `⌊Q_ℓ/t⌋·m`, so that the
    /// plaintext is `round(Q_ℓ·m/t)` (as SEAL does), which saves `log2(t)` bits of budget.
    pub q_mod_t: u64,
    /// `t mod q_i`.
    pub t_mod_q: Vec<u64>,
    /// Decryption: `round(t·x/Q_ℓ) mod t`.
    pub decrypt: ScaleRound,
    /// Multiplication: exact extension `Q_ℓ → B`.
    pub to_aux: BaseConverter,
    /// Multiplication: `round(t·x/Q_ℓ)` for `x` over `Q_ℓ ∪ B`, onto `B`.
    pub scale: ScaleRound,
    /// Multiplication: exact conversion `B → Q_ℓ`.
    pub from_aux: BaseConverter,
}

/// A BFV parameter set with its precomputations. Create with [`BfvContext::new`].
#[derive(Debug)]
pub struct BfvContext {
    params: BfvParameters,
    core: Arc<CkksContext>,
    plain_ring: Arc<RingContext>,
    /// `slot_index[s]`: the plaintext NTT slot holding batch slot `s` (row-major 2 × N/2).
    pub(crate) slot_index: Vec<u32>,
    pub(crate) levels: Vec<LevelTables>,
    /// The ciphertext primes followed by the auxiliary base `B` (multiplication).
    pub(crate) mul_ring: Arc<RingContext>,
    pub(crate) aux_count: usize,
}

impl BfvContext {
    /// Precomputes everything for `params` (BFV parameters: BGV ones are refused, use
    /// [`BgvContext`](crate::bgv::BgvContext)).
    pub fn new(params: BfvParameters) -> Result<Arc<Self>> {
        if params.is_bgv() {
            return Err(HeError::InvalidParameters(
                "these are BGV parameters; use BgvContext".into(),
            ));
        }
        Self::new_any(params)
    }

    /// Precomputes everything, for BFV or (inside a BGV context) BGV parameters.
    pub(crate) fn new_any(params: BfvParameters) -> Result<Arc<Self>> {
        let core = CkksContext::new(params.core().clone())?;
        let n = params.degree();
        let t = params.plain();
        let plain_ring = RingContext::new(n, &[t])?;
        // Row 0, column c: evaluation at ζ^{5^c}; row 1: at ζ^{-5^c}. X ↦ X^{5^k} then rotates
        // both rows left by k and X ↦ X^{2N-1} swaps them (the CKKS Galois elements).
        let two_n = 2 * n as u64;
        let half = n / 2;
        let mut slot_index = vec![0u32; n];
        let mut g = 1u64;
        for c in 0..half {
            let s0 = plain_ring
                .ntt_slot_of_exponent(g)
                .ok_or(HeError::Internal("plaintext NTT slot layout"))?;
            let s1 = plain_ring
                .ntt_slot_of_exponent(two_n - g)
                .ok_or(HeError::Internal("plaintext NTT slot layout"))?;
            slot_index[c] = s0 as u32;
            slot_index[half + c] = s1 as u32;
            g = g * 5 % two_n;
        }
        let q: Vec<Modulus> = params.core().ciphertext_moduli().to_vec();
        let chain: Vec<u64> = q
            .iter()
            .chain(params.core().special_moduli())
            .map(Modulus::value)
            .chain([t.value()])
            .collect();
        // B > t·N·Q·4 holds the scaled tensor product, and Q·B > 2·N·Q² the tensor itself.
        let need_bits =
            params.ciphertext_modulus_bits() + (t.value() as f64).log2() + (n as f64).log2() + 4.0;
        let aux_count = (need_bits / f64::from(AUX_PRIME_BITS - 1)).ceil() as usize;
        let aux: Vec<Modulus> = generate_ntt_primes(AUX_PRIME_BITS, aux_count, two_n, &chain)?
            .into_iter()
            .map(Modulus::new)
            .collect::<veil_math::Result<_>>()?;
        let mul_moduli: Vec<Modulus> = q.iter().chain(&aux).copied().collect();
        let mul_ring = RingContext::new(n, &mul_moduli)?;
        // Multiplication reuses the NTT-form ciphertext limbs in the second ring: the two rings'
        // transforms must agree (they do, the plan is a function of (N, q)); checked here.
        let probe: Vec<u64> = (0..n as u64).map(|k| k * 7 + 3).collect();
        for i in 0..q.len() {
            let mut a = probe.clone();
            let mut b = probe.clone();
            core.ring().ntt_forward(i, &mut a);
            mul_ring.ntt_forward(i, &mut b);
            if a != b {
                return Err(HeError::Internal("NTT plans of the two rings disagree"));
            }
        }
        let mut levels = Vec::with_capacity(q.len());
        for l in 0..q.len() {
            let ql = &q[..=l];
            let delta = ql
                .iter()
                .map(|qi| {
                    // ⌊Q/t⌋ = (Q − (Q mod t))/t ≡ −(Q mod t)·t^{-1} (mod q_i), as q_i | Q.
                    let q_mod_t = ql
                        .iter()
                        .fold(1u64, |acc, m| t.mul(acc, t.reduce(m.value())));
                    let t_inv = qi
                        .inv(qi.reduce(t.value()))
                        .ok_or(HeError::Internal("t divides a ciphertext prime"))?;
                    Ok(qi.neg(qi.mul(qi.reduce(q_mod_t), t_inv)))
                })
                .collect::<Result<Vec<_>>>()?;
            levels.push(LevelTables {
                delta,
                q_mod_t: ql
                    .iter()
                    .fold(1u64, |acc, m| t.mul(acc, t.reduce(m.value()))),
                t_mod_q: ql.iter().map(|qi| qi.reduce(t.value())).collect(),
                decrypt: ScaleRound::new(ql, t.value(), &[t], false)?,
                to_aux: BaseConverter::new(ql, &aux)?,
                scale: ScaleRound::new(ql, t.value(), &aux, true)?,
                from_aux: BaseConverter::new(&aux, ql)?,
            });
        }
        Ok(Arc::new(Self {
            params,
            core,
            plain_ring,
            slot_index,
            levels,
            mul_ring,
            aux_count,
        }))
    }

    /// The parameter set.
    pub fn params(&self) -> &BfvParameters {
        &self.params
    }

    /// Itself (BGV contexts return the exact-scheme context they wrap): what
    /// [`BatchEncoder::new`](crate::bfv::BatchEncoder::new) takes.
    pub(crate) fn exact_context(self: &Arc<Self>) -> Arc<Self> {
        self.clone()
    }

    /// The CKKS core: ring, key switching. Keys for this context are made with
    /// [`KeyGenerator::new`](crate::ckks::KeyGenerator::new) on it.
    pub fn core(&self) -> &Arc<CkksContext> {
        &self.core
    }

    /// The plaintext ring `Z_t[X]/(X^N + 1)`.
    pub(crate) fn plain_ring(&self) -> &Arc<RingContext> {
        &self.plain_ring
    }

    /// Ring degree N.
    pub fn degree(&self) -> usize {
        self.params.degree()
    }

    /// Number of slots (N).
    pub fn slots(&self) -> usize {
        self.params.slots()
    }

    /// Length of a row of the slot matrix (N/2): row rotations act within rows.
    pub fn row_size(&self) -> usize {
        self.params.degree() / 2
    }

    /// The plaintext modulus `t`.
    pub fn plain_modulus(&self) -> u64 {
        self.params.plain_modulus()
    }

    /// Highest level.
    pub fn max_level(&self) -> usize {
        self.params.max_level()
    }

    /// Fingerprint of the parameter set.
    pub fn fingerprint(&self) -> [u8; 32] {
        self.params.fingerprint()
    }

    /// Errors unless `found` is this context's fingerprint.
    pub(crate) fn check_fingerprint(&self, found: &[u8; 32]) -> Result<()> {
        let mine = self.fingerprint();
        if subtle::ConstantTimeEq::ct_eq(&mine[..], &found[..]).into() {
            Ok(())
        } else {
            Err(HeError::ParameterMismatch {
                expected: crate::ckks::params::hex8(&mine),
                found: crate::ckks::params::hex8(found),
            })
        }
    }

    /// `log2(q_0 ··· q_ℓ)`.
    pub fn modulus_bits_at(&self, level: usize) -> f64 {
        self.core.modulus_bits_at(level)
    }
}
