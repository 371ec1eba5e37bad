//! The CKKS context: a parameter set with everything precomputed from it (NTT plans, the
//! encoder's roots of unity, key-switching base converters for every level, CRT tables).
//! Build it once and share it (`Arc`); every key, plaintext and ciphertext refers to it by the
//! parameters' fingerprint.

use std::sync::Arc;

use veil_math::rns::{BaseConverter, CrtComposer};
use veil_math::sampler::{DiscreteGaussian, DEFAULT_SIGMA};
use veil_math::{Modulus, RingContext, ShoupConst};

use crate::ckks::params::{hex8, CkksParameters};
use crate::error::{HeError, Result};

/// Base converters of hybrid key switching at one level.
#[derive(Debug)]
pub(crate) struct LevelKeySwitch {
    /// Per digit: positions (in the extended basis `q_0..q_ℓ, p_0..`) of the digit's primes.
    pub digit_positions: Vec<Vec<usize>>,
    /// Per digit: positions of all other primes of the extended basis.
    pub complement_positions: Vec<Vec<usize>>,
    /// Per digit: converter from the digit's primes to its complement.
    pub mod_up: Vec<BaseConverter>,
    /// Converter from the special primes to `q_0..q_ℓ`.
    pub mod_down: BaseConverter,
    /// `P^{-1} mod q_i` for `i ≤ ℓ`.
    pub p_inv: Vec<ShoupConst>,
}

/// Precomputed roots for the special FFT of the canonical embedding.
#[derive(Debug)]
pub(crate) struct EncoderTables {
    /// `5^j mod 2N` for `j < N/2`.
    pub rot_group: Vec<usize>,
    /// `exp(2πi·k / 2N)` for `k ≤ 2N`, as (re, im).
    pub roots: Vec<(f64, f64)>,
}

/// A CKKS parameter set with its precomputations. Create with [`CkksContext::new`].
#[derive(Debug)]
pub struct CkksContext {
    params: CkksParameters,
    ring: Arc<RingContext>,
    pub(crate) encoder: EncoderTables,
    pub(crate) key_switch: Vec<LevelKeySwitch>,
    pub(crate) crt: Vec<CrtComposer>,
    pub(crate) gaussian: DiscreteGaussian,
    /// `P mod q_i` for every ciphertext prime.
    pub(crate) p_mod_q: Vec<u64>,
    /// `⌊P/2⌋ mod r` for every prime `r` of the context (ciphertext and special).
    pub(crate) half_p_mod: Vec<u64>,
    /// `log2(q_0 ··· q_ℓ)` for every level ℓ (scale checks run on every operation).
    modulus_bits: Vec<f64>,
    /// BGV cores: `t`, `t^{-1} mod p_j` for the special primes and `t mod r` for every prime.
    pub(crate) plain: Option<PlainErrors>,
}

/// Tables of a BGV core, whose errors are multiples of the plaintext modulus `t`.
#[derive(Debug)]
pub(crate) struct PlainErrors {
    pub t: u64,
    /// `t^{-1} mod p_j` for every special prime.
    pub t_inv_special: Vec<u64>,
    /// `t mod r` for every prime of the context (ciphertext and special).
    pub t_mod: Vec<u64>,
}

impl CkksContext {
    /// Precomputes everything for `params`.
    pub fn new(params: CkksParameters) -> Result<Arc<Self>> {
        let n = params.degree();
        let all: Vec<Modulus> = params
            .ciphertext_moduli()
            .iter()
            .chain(params.special_moduli())
            .copied()
            .collect();
        let ring = RingContext::new(n, &all)?;
        let q = params.ciphertext_moduli().to_vec();
        let p = params.special_moduli().to_vec();
        let alpha = params.digit_size();

        let mut key_switch = Vec::with_capacity(q.len());
        for level in 0..q.len() {
            let ext: Vec<Modulus> = q[..=level].iter().chain(&p).copied().collect();
            let mut digit_positions = Vec::new();
            let mut complement_positions = Vec::new();
            let mut mod_up = Vec::new();
            let mut start = 0;
            while start <= level {
                let end = (start + alpha).min(level + 1);
                let digit: Vec<usize> = (start..end).collect();
                let comp: Vec<usize> = (0..ext.len())
                    .filter(|i| !(start..end).contains(i))
                    .collect();
                let from: Vec<Modulus> = digit.iter().map(|&i| ext[i]).collect();
                let to: Vec<Modulus> = comp.iter().map(|&i| ext[i]).collect();
                mod_up.push(BaseConverter::new(&from, &to)?);
                digit_positions.push(digit);
                complement_positions.push(comp);
                start = end;
            }
            let mod_down = BaseConverter::new(&p, &q[..=level])?;
            let p_inv = q[..=level]
                .iter()
                .map(|m| {
                    let pm = p
                        .iter()
                        .fold(1u64, |acc, pi| m.mul(acc, m.reduce(pi.value())));
                    m.inv(pm)
                        .map(|x| m.shoup(x))
                        .ok_or(HeError::Internal("special primes not invertible"))
                })
                .collect::<Result<Vec<_>>>()?;
            key_switch.push(LevelKeySwitch {
                digit_positions,
                complement_positions,
                mod_up,
                mod_down,
                p_inv,
            });
        }
        let p_mod_q = q
            .iter()
            .map(|m| {
                p.iter()
                    .fold(1u64, |acc, pi| m.mul(acc, m.reduce(pi.value())))
            })
            .collect();
        // ⌊P/2⌋ = (P − 1)/2 for odd P: compute P mod r, then (P − 1)·2^{-1} mod r.
        let half_p_mod = all
            .iter()
            .map(|r| {
                let pm = p
                    .iter()
                    .fold(1u64, |acc, pi| r.mul(acc, r.reduce(pi.value())));
                let inv2 = r.inv(2).unwrap_or(0);
                r.mul(r.sub(pm, 1), inv2)
            })
            .collect();
        let crt = (0..q.len())
            .map(|l| CrtComposer::new(&q[..=l]))
            .collect::<veil_math::Result<Vec<_>>>()?;

        let two_n = 2 * n;
        let mut rot_group = Vec::with_capacity(n / 2);
        let mut g = 1usize;
        for _ in 0..n / 2 {
            rot_group.push(g);
            g = g * 5 % two_n;
        }
        let roots = (0..=two_n)
            .map(|k| {
                let a = 2.0 * std::f64::consts::PI * k as f64 / two_n as f64;
                (a.cos(), a.sin())
            })
            .collect();
        let gaussian =
            DiscreteGaussian::new(DEFAULT_SIGMA).ok_or(HeError::Internal("bad sigma"))?;
        let modulus_bits = q
            .iter()
            .scan(0f64, |acc, m| {
                *acc += (m.value() as f64).log2();
                Some(*acc)
            })
            .collect();
        let plain = match params.plain_modulus_of_errors() {
            None => None,
            Some(t) => Some(PlainErrors {
                t,
                t_inv_special: p
                    .iter()
                    .map(|m| {
                        m.inv(m.reduce(t))
                            .ok_or(HeError::Internal("t divides a special prime"))
                    })
                    .collect::<Result<_>>()?,
                t_mod: all.iter().map(|m| m.reduce(t)).collect(),
            }),
        };
        Ok(Arc::new(Self {
            plain,
            params,
            ring,
            encoder: EncoderTables { rot_group, roots },
            key_switch,
            crt,
            gaussian,
            p_mod_q,
            half_p_mod,
            modulus_bits,
        }))
    }

    /// The parameter set.
    pub fn params(&self) -> &CkksParameters {
        &self.params
    }

    /// The ring context (ciphertext primes first, then special primes).
    pub fn ring(&self) -> &Arc<RingContext> {
        &self.ring
    }

    /// Ring degree N.
    pub fn degree(&self) -> usize {
        self.params.degree()
    }

    /// Number of slots, N/2.
    pub fn slots(&self) -> usize {
        self.params.slots()
    }

    /// Highest level L.
    pub fn max_level(&self) -> usize {
        self.params.max_level()
    }

    /// Fingerprint of the parameters.
    pub fn fingerprint(&self) -> [u8; 32] {
        self.params.fingerprint()
    }

    /// Prime indices `0..=level` (the ciphertext basis at `level`).
    pub(crate) fn q_basis(&self, level: usize) -> Vec<usize> {
        (0..=level).collect()
    }

    /// Prime indices of the extended basis `q_0..q_ℓ, p_0..p_{k-1}`.
    pub(crate) fn ext_basis(&self, level: usize) -> Vec<usize> {
        let l_max = self.max_level();
        (0..=level)
            .chain(l_max + 1..l_max + 1 + self.params.special_moduli().len())
            .collect()
    }

    /// All primes (`q_0..q_L, p_0..`).
    pub(crate) fn full_basis(&self) -> Vec<usize> {
        (0..self.ring.num_moduli()).collect()
    }

    /// The Galois element rotating slots left by `step` (negative: right).
    pub fn galois_element_for_step(&self, step: i64) -> u64 {
        let s = step.rem_euclid(self.slots() as i64) as usize;
        // 2N ≤ 2^17: the products of square-and-multiply fit in u64.
        crate::ckks::bootstrap::pow5_mod(s, 2 * self.degree())
    }

    /// The Galois element of complex conjugation, `2N − 1`.
    pub fn conjugation_element(&self) -> u64 {
        2 * self.degree() as u64 - 1
    }

    /// Checks an object's fingerprint against this context.
    pub(crate) fn check_fingerprint(&self, found: &[u8; 32]) -> Result<()> {
        if found != &self.fingerprint() {
            return Err(HeError::ParameterMismatch {
                expected: self.params.fingerprint_hex(),
                found: hex8(found),
            });
        }
        Ok(())
    }

    /// Checks that `scale` is admissible at `level`: finite, at least
    /// [`MIN_SCALE`](crate::ckks::params::MIN_SCALE), and below the modulus `q_0 ··· q_level`
    /// (no value of magnitude ≥ 1/2 could be represented otherwise).
    pub fn check_scale(&self, level: usize, scale: f64) -> Result<()> {
        let modulus_bits = self.modulus_bits_at(level);
        let ok = scale.is_finite()
            && scale >= crate::ckks::params::MIN_SCALE
            && scale.log2() < modulus_bits;
        if !ok {
            return Err(HeError::ScaleOutOfRange {
                scale_bits: if scale > 0.0 { scale.log2() } else { f64::NAN },
                level,
                modulus_bits,
            });
        }
        Ok(())
    }

    /// `log2(q_0 ··· q_level)`.
    pub fn modulus_bits_at(&self, level: usize) -> f64 {
        self.modulus_bits[level.min(self.max_level())]
    }
}
