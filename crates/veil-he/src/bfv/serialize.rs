//! Serialization of BFV parameter sets and ciphertexts: a BFV header (magic, kind, the BFV
//! fingerprint) around the CKKS core's validated encoding, so every check CKKS makes on
//! hostile bytes (sizes before allocation, reduced coefficients, levels, 128-bit parameters)
//! applies, and a CKKS object is never read as a BFV one or the reverse.

use std::sync::Arc;

use crate::bfv::context::BfvContext;
use crate::bfv::evaluator::BfvCiphertext;
use crate::bfv::params::BfvParameters;
use crate::ckks::{Ciphertext, CkksParameters};
use crate::error::{HeError, Result};

const MAGIC: &[u8; 4] = b"VBFV";
const VERSION: u8 = 1;
const KIND_PARAMETERS: u8 = 1;
const KIND_CIPHERTEXT: u8 = 2;
const KIND_BGV_PARAMETERS: u8 = 3;
pub(crate) const KIND_BGV_CIPHERTEXT: u8 = 4;
const HEADER_LEN: usize = 4 + 1 + 1 + 32;

pub(crate) fn header(kind: u8, fingerprint: &[u8; 32]) -> Vec<u8> {
    let mut v = Vec::with_capacity(HEADER_LEN);
    v.extend_from_slice(MAGIC);
    v.push(VERSION);
    v.push(kind);
    v.extend_from_slice(fingerprint);
    v
}

/// Checks the header and returns the recorded fingerprint and the payload.
pub(crate) fn read_header<'a>(
    bytes: &'a [u8],
    kind: u8,
    what: &'static str,
) -> Result<([u8; 32], &'a [u8])> {
    let bad = |reason: &str| HeError::Deserialize {
        what,
        reason: reason.into(),
    };
    if bytes.len() < HEADER_LEN {
        return Err(bad("truncated header"));
    }
    if &bytes[..4] != MAGIC {
        return Err(bad("not a Veil BFV object"));
    }
    if bytes[4] != VERSION {
        return Err(bad("unsupported format version"));
    }
    if bytes[5] != kind {
        return Err(bad("wrong object kind"));
    }
    let mut fp = [0u8; 32];
    fp.copy_from_slice(&bytes[6..HEADER_LEN]);
    Ok((fp, &bytes[HEADER_LEN..]))
}

impl BfvParameters {
    /// Serializes the parameter set.
    pub fn to_bytes(&self) -> Vec<u8> {
        let kind = if self.is_bgv() {
            KIND_BGV_PARAMETERS
        } else {
            KIND_PARAMETERS
        };
        let mut v = header(kind, &self.fingerprint());
        v.extend_from_slice(&self.plain_modulus().to_le_bytes());
        v.extend(self.core().without_error_plain_modulus().to_bytes());
        v
    }

    /// Reads and re-validates a parameter set (BFV or BGV, see
    /// [`is_bgv`](BfvParameters::is_bgv)); below 128-bit security is refused whatever the
    /// bytes say.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        Self::read(bytes, false)
    }

    /// Like [`from_bytes`](Self::from_bytes) but accepts parameters below 128-bit security.
    /// **Insecure**: tests and experiments only.
    pub fn from_bytes_insecure_allow_below_128_bit_security(bytes: &[u8]) -> Result<Self> {
        Self::read(bytes, true)
    }

    fn read(bytes: &[u8], allow_insecure: bool) -> Result<Self> {
        let what = "BFV parameters";
        let bgv = bytes.get(5) == Some(&KIND_BGV_PARAMETERS);
        let kind = if bgv {
            KIND_BGV_PARAMETERS
        } else {
            KIND_PARAMETERS
        };
        let (fp, rest) = read_header(bytes, kind, what)?;
        let (t, core) = rest.split_first_chunk::<8>().ok_or(HeError::Deserialize {
            what,
            reason: "truncated".into(),
        })?;
        let core = if allow_insecure {
            CkksParameters::from_bytes_insecure_allow_below_128_bit_security(core)?
        } else {
            CkksParameters::from_bytes(core)?
        };
        let params = BfvParameters::from_core(core, u64::from_le_bytes(*t), bgv)?;
        if params.fingerprint() != fp {
            return Err(HeError::Deserialize {
                what,
                reason: "the fingerprint does not match the parameters".into(),
            });
        }
        Ok(params)
    }
}

impl BfvCiphertext {
    /// Serializes the ciphertext (a seeded fresh encryption stores its seed, half the size).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = header(KIND_CIPHERTEXT, &self.fingerprint);
        v.extend(self.inner.to_bytes());
        v
    }

    /// Reads a ciphertext made for `ctx`'s parameters.
    pub fn from_bytes(ctx: &Arc<BfvContext>, bytes: &[u8]) -> Result<Self> {
        let (fp, rest) = read_header(bytes, KIND_CIPHERTEXT, "BFV ciphertext")?;
        ctx.check_fingerprint(&fp)?;
        let inner = Ciphertext::from_bytes(ctx.core(), rest)?;
        if inner.scale() != 1.0 {
            return Err(HeError::Deserialize {
                what: "BFV ciphertext",
                reason: "a BFV ciphertext has scale 1 (this is a CKKS ciphertext)".into(),
            });
        }
        Ok(Self {
            inner,
            fingerprint: fp,
        })
    }
}
