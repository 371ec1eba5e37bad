//! Evidence kinds and their verifiers.

#[cfg(feature = "dcap")]
pub mod dcap;
#[cfg(feature = "sim")]
pub mod sim;
#[cfg(feature = "snp")]
pub mod snp;

use crate::claims::VerifiedClaims;
use crate::error::{Result, TeeError};

/// Magic bytes of simulated evidence.
pub const SIM_MAGIC: &[u8; 8] = b"VEILSIM1";

/// The kinds of evidence Veil recognizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvidenceKind {
    /// Intel SGX DCAP quote (version 3).
    SgxQuote,
    /// Intel TDX quote (version 4 or 5).
    TdxQuote,
    /// AMD SEV-SNP attestation report.
    SnpReport,
    /// Veil's simulated TEE report.
    Simulated,
}

/// Detects the kind of evidence from its header.
pub fn detect(evidence: &[u8]) -> Result<EvidenceKind> {
    if evidence.starts_with(SIM_MAGIC) {
        return Ok(EvidenceKind::Simulated);
    }
    if evidence.len() < 48 {
        return Err(TeeError::UnknownEvidence(format!(
            "{} bytes is too short for a quote header",
            evidence.len()
        )));
    }
    // An SNP report is 1184 bytes and starts with a 32-bit version (2, 3 or 5).
    let v32 = u32::from_le_bytes([evidence[0], evidence[1], evidence[2], evidence[3]]);
    if evidence.len() == 1184 && matches!(v32, 2 | 3 | 5) {
        return Ok(EvidenceKind::SnpReport);
    }
    let version = u16::from_le_bytes([evidence[0], evidence[1]]);
    let tee_type = u32::from_le_bytes([evidence[4], evidence[5], evidence[6], evidence[7]]);
    match (version, tee_type) {
        (3, 0) => Ok(EvidenceKind::SgxQuote),
        (4 | 5, 0x81) => Ok(EvidenceKind::TdxQuote),
        (4, 0) => Ok(EvidenceKind::SgxQuote),
        _ => Err(TeeError::UnknownEvidence(format!(
            "quote version {version} with TEE type {tee_type:#x}"
        ))),
    }
}

/// Verifies evidence of one kind.
pub trait Verifier {
    /// Verifies `evidence` as of `now` (Unix seconds) and returns its claims.
    fn verify(&self, evidence: &[u8], now: u64) -> Result<VerifiedClaims>;
}
