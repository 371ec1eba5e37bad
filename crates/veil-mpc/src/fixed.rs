//! Fixed-point encoding of reals in `Z_2^64`.
//!
//! `x` is encoded as `round(x · 2^f)` in two's complement. Decoding reads the ring element as a
//! signed 64-bit integer and divides by `2^f` — exact for every value an encoding can produce,
//! negative values included (a frequently seen bug decodes `2^64 - k` as a huge positive
//! number when it is `-k`).

use crate::error::{MpcError, Result};

/// The default number of fractional bits.
pub const DEFAULT_FRAC_BITS: u32 = 16;

/// Largest magnitude (in ring units) an encoded value may have: products of two encoded
/// values must stay below 2^62 before truncation (see [`crate::protocol`]).
pub const MAX_ENCODED: u64 = 1 << 46;

/// A fixed-point format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FixedPoint {
    frac_bits: u32,
}

impl Default for FixedPoint {
    fn default() -> Self {
        Self {
            frac_bits: DEFAULT_FRAC_BITS,
        }
    }
}

impl FixedPoint {
    /// For `x · c` keeping about 20 significant bits of the public real `c` (where an
    /// encoding keeps `f` fractional bits): the integer `k ≈ c · 2^t` and the truncation
    /// `t ≥ f` that follows the product by `k`. `None` for `c = 0` (the product is zero).
    pub fn scalar_factor(&self, c: f64) -> Result<Option<(i64, u32)>> {
        if c == 0.0 {
            return Ok(None);
        }
        if !c.is_finite() {
            return Err(MpcError::InvalidParameter(format!(
                "cannot multiply by {c}"
            )));
        }
        let t = (20.0 - c.abs().log2())
            .ceil()
            .clamp(f64::from(self.frac_bits), 60.0) as u32;
        let k = (c * (1u64 << t) as f64).round();
        if k.abs() >= (1u64 << 46) as f64 {
            return Err(MpcError::InvalidParameter(format!(
                "constant {c} too large"
            )));
        }
        Ok(Some((k as i64, t)))
    }

    /// A format with `frac_bits` fractional bits (1 to 30).
    pub fn new(frac_bits: u32) -> Result<Self> {
        if !(1..=30).contains(&frac_bits) {
            return Err(MpcError::InvalidParameter(format!(
                "fractional bits must be 1 to 30, not {frac_bits}"
            )));
        }
        Ok(Self { frac_bits })
    }

    /// Fractional bits.
    pub fn frac_bits(&self) -> u32 {
        self.frac_bits
    }

    /// `2^f` as a float.
    pub fn scale(&self) -> f64 {
        (1u64 << self.frac_bits) as f64
    }

    /// Encodes `x` (finite, `|x · 2^f| < 2^46`).
    pub fn encode(&self, x: f64) -> Result<u64> {
        let err = |why| MpcError::Encoding {
            value: x,
            frac_bits: self.frac_bits,
            why,
        };
        if !x.is_finite() {
            return Err(err("not a finite number"));
        }
        let scaled = (x * self.scale()).round();
        if scaled.abs() >= MAX_ENCODED as f64 {
            return Err(err("too large (|x · 2^f| must stay below 2^46)"));
        }
        // |scaled| < 2^46: the conversion to i64 is exact.
        Ok((scaled as i64) as u64)
    }

    /// Encodes a slice.
    pub fn encode_all(&self, xs: &[f64]) -> Result<Vec<u64>> {
        xs.iter().map(|&x| self.encode(x)).collect()
    }

    /// Decodes a ring element (two's complement) exactly.
    pub fn decode(&self, v: u64) -> f64 {
        (v as i64) as f64 / self.scale()
    }

    /// Decodes a slice.
    pub fn decode_all(&self, vs: &[u64]) -> Vec<f64> {
        vs.iter().map(|&v| self.decode(v)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_is_exact_for_negative_values() {
        let fp = FixedPoint::default();
        for x in [-1.0, -0.5, -1e-4, -12345.678, 0.0, 3.25, 1e9] {
            let v = fp.encode(x).unwrap();
            let back = fp.decode(v);
            assert!((back - x).abs() <= 0.5 / fp.scale(), "{x} -> {back}");
        }
        assert_eq!(fp.decode(u64::MAX), -1.0 / 65536.0);
        assert_eq!(fp.decode(fp.encode(-2.5).unwrap()), -2.5);
        assert!(fp.encode(f64::NAN).is_err());
        assert!(fp.encode(1e12).is_err());
        assert!(FixedPoint::new(0).is_err());
        assert!(FixedPoint::new(31).is_err());
    }
}
