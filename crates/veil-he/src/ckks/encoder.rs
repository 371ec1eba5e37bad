//! The CKKS encoder: the canonical embedding evaluated with the special FFT (O(N log N)).
//!
//! A plaintext polynomial `p` with real coefficients encodes the N/2 complex values
//! `z_j = p(ζ^{5^j}) / Δ` where `ζ = e^{iπ/N}` and Δ is the scale. Encoding runs the
//! inverse special FFT on the values, multiplies by Δ and rounds; decoding composes the
//! coefficients from their residues (exactly, by CRT) and runs the forward special FFT.

use std::sync::Arc;

use num_complex::Complex64;
use veil_math::{Representation, RnsPoly};

use crate::ckks::ciphertext::Plaintext;
use crate::ckks::context::CkksContext;
use crate::ckks::flooding::{FloodedValues, Gaussian, NoiseFlooding};
use crate::error::{HeError, Result};

/// Encodes vectors of reals or complex numbers into plaintexts and back.
#[derive(Clone, Debug)]
pub struct CkksEncoder {
    ctx: Arc<CkksContext>,
}

fn bit_reverse<T>(v: &mut [T]) {
    let n = v.len();
    let bits = n.trailing_zeros();
    if bits == 0 {
        return;
    }
    for i in 0..n {
        let j = i.reverse_bits() >> (usize::BITS - bits);
        if i < j {
            v.swap(i, j);
        }
    }
}

impl CkksEncoder {
    /// An encoder for the context.
    pub fn new(ctx: &Arc<CkksContext>) -> Self {
        Self { ctx: ctx.clone() }
    }

    /// Number of slots (N/2).
    pub fn slots(&self) -> usize {
        self.ctx.slots()
    }

    fn root(&self, k: usize) -> Complex64 {
        let (re, im) = self.ctx.encoder.roots[k];
        Complex64::new(re, im)
    }

    /// Forward special FFT: packed coefficients → slot values.
    fn special_fft(&self, vals: &mut [Complex64]) {
        let size = vals.len();
        let m = 2 * self.ctx.degree();
        let rot = &self.ctx.encoder.rot_group;
        bit_reverse(vals);
        let mut len = 2;
        let mut twiddles = Vec::with_capacity(size / 2);
        while len <= size {
            let lenh = len >> 1;
            let lenq = len << 2;
            // lenq and m are powers of two: (r mod lenq)·m/lenq without divisions.
            let shift = (m / lenq).trailing_zeros();
            twiddles.clear();
            twiddles.extend((0..lenh).map(|j| self.root((rot[j] & (lenq - 1)) << shift)));
            for chunk in vals.chunks_exact_mut(len) {
                let (lo, hi) = chunk.split_at_mut(lenh);
                for ((u, v), w) in lo.iter_mut().zip(hi.iter_mut()).zip(&twiddles) {
                    let t = *v * w;
                    *v = *u - t;
                    *u += t;
                }
            }
            len <<= 1;
        }
    }

    /// Inverse special FFT: slot values → packed coefficients.
    fn special_ifft(&self, vals: &mut [Complex64]) {
        let size = vals.len();
        let m = 2 * self.ctx.degree();
        let rot = &self.ctx.encoder.rot_group;
        let mut len = size;
        let mut twiddles = Vec::with_capacity(size / 2);
        while len >= 2 {
            let lenh = len >> 1;
            let lenq = len << 2;
            let shift = (m / lenq).trailing_zeros();
            twiddles.clear();
            twiddles.extend((0..lenh).map(|j| self.root((lenq - (rot[j] & (lenq - 1))) << shift)));
            for chunk in vals.chunks_exact_mut(len) {
                let (lo, hi) = chunk.split_at_mut(lenh);
                for ((u, v), w) in lo.iter_mut().zip(hi.iter_mut()).zip(&twiddles) {
                    let s = *u + *v;
                    *v = (*u - *v) * w;
                    *u = s;
                }
            }
            len >>= 1;
        }
        bit_reverse(vals);
        let inv = 1.0 / size as f64;
        vals.iter_mut().for_each(|v| *v *= inv);
    }

    /// Encodes real values (at most N/2; missing slots are zero) at `scale` and `level`.
    pub fn encode(&self, values: &[f64], scale: f64, level: usize) -> Result<Plaintext> {
        let vals: Vec<Complex64> = values.iter().map(|&x| Complex64::new(x, 0.0)).collect();
        self.encode_complex(&vals, scale, level)
    }

    /// Encodes complex values (at most N/2) at `scale` and `level`.
    pub fn encode_complex(
        &self,
        values: &[Complex64],
        scale: f64,
        level: usize,
    ) -> Result<Plaintext> {
        let slots = self.slots();
        if values.len() > slots {
            return Err(HeError::TooManyValues {
                given: values.len(),
                slots,
            });
        }
        if level > self.ctx.max_level() {
            return Err(HeError::InvalidParameters(format!(
                "level {level} exceeds the maximum {}",
                self.ctx.max_level()
            )));
        }
        if !(scale.is_finite() && scale >= 1.0) {
            return Err(HeError::InvalidParameters(format!(
                "scale {scale} must be finite and at least 1"
            )));
        }
        self.ctx.check_scale(level, scale)?;
        if let Some(bad) = values
            .iter()
            .find(|v| !v.re.is_finite() || !v.im.is_finite())
        {
            return Err(HeError::NonFiniteValue(if bad.re.is_finite() {
                bad.im
            } else {
                bad.re
            }));
        }
        let mut vals = vec![Complex64::new(0.0, 0.0); slots];
        vals[..values.len()].copy_from_slice(values);
        self.special_ifft(&mut vals);
        let n = self.ctx.degree();
        let mut coeffs = vec![0f64; n];
        for (k, v) in vals.iter().enumerate() {
            coeffs[k] = (v.re * scale).round();
            coeffs[k + slots] = (v.im * scale).round();
        }
        self.encode_coefficients(&coeffs, scale, level, values)
    }

    /// Builds the plaintext from integer-valued (f64) coefficients.
    fn encode_coefficients(
        &self,
        coeffs: &[f64],
        scale: f64,
        level: usize,
        values: &[Complex64],
    ) -> Result<Plaintext> {
        let max_abs = coeffs.iter().fold(0f64, |m, c| m.max(c.abs()));
        let modulus_bits = self.ctx.modulus_bits_at(level);
        if max_abs > 0.0 && max_abs.log2() >= modulus_bits - 1.0 {
            let value = values.iter().map(|v| v.norm()).fold(0f64, f64::max);
            return Err(HeError::EncodingOverflow {
                value,
                scale_bits: scale.log2(),
                level,
                modulus_bits: modulus_bits.floor() as u32,
            });
        }
        let basis = self.ctx.q_basis(level);
        let mut poly = RnsPoly::zero(self.ctx.ring(), &basis, Representation::Coefficient)?;
        let n = self.ctx.degree();
        let moduli = poly.moduli();
        veil_math::par::for_each_limb(poly.data_mut(), n, 4, |l, limb| {
            let m = &moduli[l];
            for (o, &c) in limb.iter_mut().zip(coeffs) {
                *o = reduce_f64(m, c);
            }
        });
        poly.to_ntt();
        Ok(Plaintext {
            poly,
            scale,
            fingerprint: self.ctx.fingerprint(),
        })
    }

    /// The residues, modulo each prime of `level`, of the constant polynomial that holds
    /// `value` in every slot at `scale` (`round(value · scale)`): what
    /// [`Evaluator::add_scalar`](crate::ckks::Evaluator::add_scalar) adds to every NTT
    /// coefficient instead of encoding a plaintext. Refuses what [`encode_constant`](Self::encode_constant)
    /// refuses.
    pub fn constant_residues(&self, value: f64, scale: f64, level: usize) -> Result<Vec<u64>> {
        if !value.is_finite() {
            return Err(HeError::NonFiniteValue(value));
        }
        let c = (value * scale).round();
        let modulus_bits = self.ctx.modulus_bits_at(level);
        if c != 0.0 && c.abs().log2() >= modulus_bits - 1.0 {
            return Err(HeError::EncodingOverflow {
                value: value.abs(),
                scale_bits: scale.log2(),
                level,
                modulus_bits: modulus_bits.floor() as u32,
            });
        }
        let moduli = self.ctx.ring().moduli();
        Ok(self
            .ctx
            .q_basis(level)
            .iter()
            .map(|&p| reduce_f64(&moduli[p], c))
            .collect())
    }

    /// Encodes the same real value in every slot (a constant polynomial).
    pub fn encode_constant(&self, value: f64, scale: f64, level: usize) -> Result<Plaintext> {
        if !value.is_finite() {
            return Err(HeError::NonFiniteValue(value));
        }
        let mut coeffs = vec![0f64; self.ctx.degree()];
        coeffs[0] = (value * scale).round();
        self.encode_coefficients(&coeffs, scale, level, &[Complex64::new(value, 0.0)])
    }

    /// Decodes the real parts of the first `len` slots **for release**: adds noise flooding
    /// (see [`crate::ckks::flooding`]) sized from the error measured on this plaintext, so
    /// that the values may leave the key holder. Each value gets an independent Gaussian of
    /// standard deviation [`FloodedValues::flood_std`].
    pub fn decode_flooded(
        &self,
        pt: &Plaintext,
        len: usize,
        flooding: &NoiseFlooding,
    ) -> Result<FloodedValues> {
        let slots = self.slots();
        if len > slots {
            return Err(HeError::TooManyValues { given: len, slots });
        }
        let z = self.decode_complex(pt)?;
        let im2 = |v: &[Complex64]| v.iter().map(|c| c.im * c.im).sum::<f64>();
        let released = if len == 0 {
            0.0
        } else {
            im2(&z[..len]) / len as f64
        };
        let all = im2(&z) / slots as f64;
        // Rounding error of a fresh or rescaled ciphertext, per slot real part:
        // e = r_0 + r_1·s with r uniform in [−1/2, 1/2] and s ternary of weight ≈ 2N/3.
        let n = self.ctx.degree() as f64;
        let floor = n * (1.0 + 2.0 * n / 3.0) / 24.0 / (pt.scale * pt.scale);
        let per_value = released.max(all).max(floor);
        let error_estimate = NoiseFlooding::SAFETY_FACTOR * (len as f64 * per_value).sqrt();
        let flood_std = flooding.flood_std(error_estimate);
        let mut g = Gaussian::from_os_rng();
        let values: Vec<f64> = z[..len]
            .iter()
            .map(|c| c.re + flood_std * g.sample())
            .collect();
        if !flood_std.is_finite() || values.iter().any(|v| !v.is_finite()) {
            return Err(HeError::DecodeOverflow { level: pt.level() });
        }
        Ok(FloodedValues {
            values,
            error_estimate,
            flood_std,
        })
    }

    /// Decodes to the real parts of all N/2 slots. **Exact**: the values carry the
    /// ciphertext's error, which reveals the secret key to anyone who also knows the
    /// message; release values with [`CkksEncoder::decode_flooded`] instead.
    pub fn decode(&self, pt: &Plaintext) -> Result<Vec<f64>> {
        Ok(self.decode_complex(pt)?.into_iter().map(|c| c.re).collect())
    }

    /// Decodes to all N/2 complex slots.
    pub fn decode_complex(&self, pt: &Plaintext) -> Result<Vec<Complex64>> {
        self.ctx.check_fingerprint(&pt.fingerprint)?;
        let level = pt.level();
        self.ctx.check_scale(level, pt.scale)?;
        let mut poly = pt.poly.clone();
        poly.to_coefficient();
        let n = self.ctx.degree();
        let slots = self.slots();
        let crt = self
            .ctx
            .crt
            .get(level)
            .ok_or(HeError::Internal("no CRT table for level"))?;
        let inv_scale = 1.0 / pt.scale;
        let limbs = level + 1;
        const CHUNK: usize = 512;
        let chunks = veil_math::par::map_range(n.div_ceil(CHUNK), n * limbs * 4, |c| {
            let mut residues = vec![0u64; limbs];
            let mut digits = Vec::with_capacity(limbs);
            (c * CHUNK..((c + 1) * CHUNK).min(n))
                .map(|k| {
                    for (l, r) in residues.iter_mut().enumerate() {
                        *r = poly.limb(l)[k];
                    }
                    crt.compose_centered(&residues, &mut digits) * inv_scale
                })
                .collect::<Vec<f64>>()
        });
        let coeffs: Vec<f64> = chunks.into_iter().flatten().collect();
        if coeffs.iter().any(|c| !c.is_finite()) {
            return Err(HeError::DecodeOverflow { level });
        }
        let mut vals: Vec<Complex64> = (0..slots)
            .map(|k| Complex64::new(coeffs[k], coeffs[k + slots]))
            .collect();
        self.special_fft(&mut vals);
        Ok(vals)
    }
}

/// Reduces an integer-valued f64 (any magnitude) modulo `m`, exactly.
pub(crate) fn reduce_f64(m: &veil_math::Modulus, c: f64) -> u64 {
    if c.abs() < 9.2e18 {
        return m.reduce_i64(c as i64);
    }
    // c = ±mantissa · 2^exp exactly.
    let bits = c.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i64 - 1075;
    let mantissa = (bits & ((1u64 << 52) - 1)) | (1u64 << 52);
    let r = m.mul(m.reduce(mantissa), m.pow(2, exp.max(0) as u64));
    if c < 0.0 {
        m.neg(r)
    } else {
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ckks::params::CkksParameters;

    fn small_ctx() -> Arc<CkksContext> {
        let p = CkksParameters::builder()
            .degree(64)
            .moduli_bits(&[60, 40, 60])
            .insecure_allow_below_128_bit_security()
            .build()
            .unwrap();
        CkksContext::new(p).unwrap()
    }

    #[test]
    fn special_fft_is_the_canonical_embedding() {
        let ctx = small_ctx();
        let enc = CkksEncoder::new(&ctx);
        let n = 64;
        let p: Vec<f64> = (0..n).map(|k| ((k * 37 % 11) as f64 - 5.0) / 7.0).collect();
        let mut vals: Vec<Complex64> = (0..n / 2)
            .map(|k| Complex64::new(p[k], p[k + n / 2]))
            .collect();
        enc.special_fft(&mut vals);
        for (j, v) in vals.iter().enumerate() {
            let e = ctx.encoder.rot_group[j];
            let mut naive = Complex64::new(0.0, 0.0);
            for (k, &c) in p.iter().enumerate() {
                let a = std::f64::consts::PI * (k * e) as f64 / n as f64;
                naive += Complex64::new(a.cos(), a.sin()) * c;
            }
            assert!((naive - v).norm() < 1e-12, "slot {j}");
        }
        let mut back = vals.clone();
        enc.special_ifft(&mut back);
        let orig: Vec<Complex64> = (0..n / 2)
            .map(|k| Complex64::new(p[k], p[k + n / 2]))
            .collect();
        for (a, b) in back.iter().zip(&orig) {
            assert!((a - b).norm() < 1e-12);
        }
    }

    #[test]
    fn encode_decode_round_trip_at_every_level() {
        let ctx = small_ctx();
        let enc = CkksEncoder::new(&ctx);
        let values: Vec<Complex64> = (0..32)
            .map(|k| Complex64::new((k as f64).sin() * 3.0, (k as f64).cos()))
            .collect();
        for level in 0..=ctx.max_level() {
            let pt = enc.encode_complex(&values, 2f64.powi(40), level).unwrap();
            let back = enc.decode_complex(&pt).unwrap();
            for (a, b) in back.iter().zip(&values) {
                assert!((a - b).norm() < 1e-9, "level {level}: {a} vs {b}");
            }
        }
        // Very large scale at level 1 (2^90 > 2^64): exact big-coefficient path.
        let pt = enc.encode(&[1.5, -2.25], 2f64.powi(90), 1).unwrap();
        let back = enc.decode(&pt).unwrap();
        assert!((back[0] - 1.5).abs() < 1e-9 && (back[1] + 2.25).abs() < 1e-9);
    }

    #[test]
    fn encoding_errors() {
        let ctx = small_ctx();
        let enc = CkksEncoder::new(&ctx);
        assert!(matches!(
            enc.encode(&[0.0; 33], 1e10, 0),
            Err(HeError::TooManyValues {
                given: 33,
                slots: 32
            })
        ));
        assert!(matches!(
            enc.encode(&[f64::NAN], 1e10, 0),
            Err(HeError::NonFiniteValue(_))
        ));
        assert!(matches!(
            enc.encode(&[1e10], 2f64.powi(55), 0),
            Err(HeError::EncodingOverflow { .. })
        ));
        assert!(enc.encode(&[1.0], 1e10, 5).is_err());
    }
}
