//! The batch encoder: `N` integers modulo `t` as a 2 × N/2 matrix of slots, packed into one
//! plaintext polynomial by the inverse NTT modulo `t` (SEAL's `BatchEncoder`). Slot-wise
//! products of plaintexts are products of polynomials; automorphisms rotate the rows.

use std::sync::Arc;

use crate::bfv::context::BfvContext;
use crate::error::{HeError, Result};

/// A BFV plaintext: a polynomial with coefficients modulo `t` (coefficient form).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BfvPlaintext {
    pub(crate) coeffs: Vec<u64>,
    pub(crate) fingerprint: [u8; 32],
}

impl BfvPlaintext {
    /// The coefficients, each below `t`.
    pub fn coefficients(&self) -> &[u64] {
        &self.coeffs
    }

    /// Fingerprint of the parameter set it was made for.
    pub fn fingerprint(&self) -> &[u8; 32] {
        &self.fingerprint
    }
}

/// Encodes vectors of integers into plaintexts and back.
#[derive(Clone, Debug)]
pub struct BatchEncoder {
    ctx: Arc<BfvContext>,
}

impl BatchEncoder {
    /// An encoder for the context.
    pub fn new(ctx: &Arc<BfvContext>) -> Self {
        Self { ctx: ctx.clone() }
    }

    /// Number of slots (N).
    pub fn slots(&self) -> usize {
        self.ctx.slots()
    }

    /// Encodes up to N values, each below `t` (the rest of the slots are zero). Slot `s` is row
    /// `s / (N/2)`, column `s mod (N/2)`.
    pub fn encode(&self, values: &[u64]) -> Result<BfvPlaintext> {
        let t = self.ctx.plain_modulus();
        if let Some(&v) = values.iter().find(|&&v| v >= t) {
            return Err(HeError::PlainValueOutOfRange {
                value: i128::from(v),
                plain_modulus: t,
            });
        }
        self.encode_reduced(values.iter().copied(), values.len())
    }

    /// Encodes up to N signed values in `(−t/2, t/2]` (stored modulo `t`; decode with
    /// [`decode_signed`](Self::decode_signed)).
    pub fn encode_signed(&self, values: &[i64]) -> Result<BfvPlaintext> {
        let t = self.ctx.plain_modulus() as i64;
        if let Some(&v) = values.iter().find(|&&v| v.unsigned_abs() > (t / 2) as u64) {
            return Err(HeError::PlainValueOutOfRange {
                value: i128::from(v),
                plain_modulus: t as u64,
            });
        }
        self.encode_reduced(values.iter().map(|&v| v.rem_euclid(t) as u64), values.len())
    }

    fn encode_reduced(
        &self,
        values: impl Iterator<Item = u64>,
        len: usize,
    ) -> Result<BfvPlaintext> {
        let n = self.ctx.slots();
        if len > n {
            return Err(HeError::TooManyValues {
                given: len,
                slots: n,
            });
        }
        let mut evals = vec![0u64; n];
        for (s, v) in values.enumerate() {
            evals[self.ctx.slot_index[s] as usize] = v;
        }
        self.ctx.plain_ring().ntt_inverse(0, &mut evals);
        Ok(BfvPlaintext {
            coeffs: evals,
            fingerprint: self.ctx.fingerprint(),
        })
    }

    /// Decodes all N slots (each below `t`).
    pub fn decode(&self, pt: &BfvPlaintext) -> Result<Vec<u64>> {
        self.ctx.check_fingerprint(&pt.fingerprint)?;
        let n = self.ctx.slots();
        if pt.coeffs.len() != n {
            return Err(HeError::ShapeMismatch(format!(
                "a plaintext has {n} coefficients, not {}",
                pt.coeffs.len()
            )));
        }
        let mut evals = pt.coeffs.clone();
        self.ctx.plain_ring().ntt_forward(0, &mut evals);
        Ok(self
            .ctx
            .slot_index
            .iter()
            .map(|&i| evals[i as usize])
            .collect())
    }

    /// Decodes all N slots as signed values in `(−t/2, t/2]`.
    pub fn decode_signed(&self, pt: &BfvPlaintext) -> Result<Vec<i64>> {
        let t = self.ctx.plain_modulus();
        Ok(self
            .decode(pt)?
            .into_iter()
            .map(|v| {
                if v > t / 2 {
                    v as i64 - t as i64
                } else {
                    v as i64
                }
            })
            .collect())
    }
}
