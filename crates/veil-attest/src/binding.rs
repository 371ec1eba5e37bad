//! Binding runtime data to evidence: the TEE puts `SHA-512(nonce ‖ public key ‖ other)` (each
//! field length-prefixed, so no two inputs collide) in the 64 bytes of report data, and the
//! verifier recomputes it from what was presented alongside the evidence.

use sha2::{Digest, Sha512};

use crate::claims::VerifiedClaims;
use crate::error::{Result, TeeError};

/// The report data binding `nonce`, `public_key` and `other` runtime data.
pub fn expected_report_data(nonce: &[u8], public_key: &[u8], other: &[u8]) -> [u8; 64] {
    let mut h = Sha512::new();
    h.update(b"veil-report-data-v1");
    for field in [nonce, public_key, other] {
        h.update((field.len() as u64).to_le_bytes());
        h.update(field);
    }
    h.finalize().into()
}

/// Checks that verified claims bind exactly this nonce, public key and runtime data.
pub fn check_binding(
    claims: &VerifiedClaims,
    nonce: &[u8],
    public_key: &[u8],
    other: &[u8],
) -> Result<()> {
    let expected = hex::encode(expected_report_data(nonce, public_key, other));
    // Constant-time comparison is not needed: report data is public.
    if claims.report_data == expected {
        Ok(())
    } else {
        Err(TeeError::BindingMismatch)
    }
}
