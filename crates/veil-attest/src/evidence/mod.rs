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

/// `secs` (Unix seconds) as an RFC 3339 UTC time, e.g. `2030-01-24T17:58:26Z`.
pub fn format_time(secs: u64) -> String {
    // Days to civil date (H. Hinnant's algorithm), valid for every u64 second count.
    let days = i128::from(secs / 86_400);
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i128::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

/// Verifies evidence of one kind.
pub trait Verifier {
    /// Verifies `evidence` as of `now` (Unix seconds) and returns its claims.
    fn verify(&self, evidence: &[u8], now: u64) -> Result<VerifiedClaims>;
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_format_as_rfc3339() {
        assert_eq!(super::format_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::format_time(1_751_328_000), "2025-07-01T00:00:00Z");
        assert_eq!(super::format_time(1_898_013_506), "2030-02-22T17:58:26Z");
        assert_eq!(super::format_time(951_782_400), "2000-02-29T00:00:00Z");
    }
}
