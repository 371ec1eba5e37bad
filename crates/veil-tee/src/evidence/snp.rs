//! AMD SEV-SNP attestation reports: the report's signature is checked with the VCEK, and the
//! VCEK's certificate chain up to AMD's public roots (ARK → ASK → VCEK, for the Milan, Genoa
//! and Turin product lines built into the `sev` crate).
//!
//! SNP reports carry the platform's reported TCB but no TCB *status*: judging whether that TCB
//! is current needs AMD's KDS data, so the claims report the TCB version itself.

use std::collections::BTreeMap;

use sev::certs::snp::{builtin, ca, Certificate, Chain, Verifiable};
use sev::firmware::guest::AttestationReport;

use crate::claims::{TeeKind, VerifiedClaims};
use crate::error::{Result, TeeError};
use crate::evidence::Verifier;

/// SNP reports are 1184 bytes; anything much larger is not one.
const MAX_REPORT_LEN: usize = 4096;

/// A verifier for SEV-SNP reports signed by one VCEK.
#[derive(Clone, Debug)]
pub struct SnpVerifier {
    vcek: Certificate,
    /// The chain check (two RSA-4096 and one ECDSA P-384 signature), done once.
    chain: std::sync::OnceLock<Result<()>>,
}

impl SnpVerifier {
    /// A verifier for reports signed by the VCEK in `der` (DER-encoded X.509, as AMD's KDS
    /// serves it).
    pub fn from_vcek_der(der: &[u8]) -> Result<Self> {
        let vcek = Certificate::from_der(der)
            .map_err(|e| TeeError::InvalidCollateral(format!("VCEK: {e}")))?;
        Ok(Self {
            vcek,
            chain: std::sync::OnceLock::new(),
        })
    }

    /// The AMD chain (ARK → ASK) that signs this VCEK, if any built-in product line does.
    fn check_chain(&self) -> Result<()> {
        let lines = [
            (builtin::milan::ark(), builtin::milan::ask()),
            (builtin::genoa::ark(), builtin::genoa::ask()),
            (builtin::turin::ark(), builtin::turin::ask()),
        ];
        for (ark, ask) in lines {
            let (Ok(ark), Ok(ask)) = (ark, ask) else {
                continue;
            };
            let chain = Chain {
                ca: ca::Chain { ark, ask },
                vek: self.vcek.clone(),
            };
            if (&chain).verify().is_ok() {
                return Ok(());
            }
        }
        Err(TeeError::Rejected(
            "the VCEK is not signed by AMD's ARK/ASK for Milan, Genoa or Turin".into(),
        ))
    }
}

impl Verifier for SnpVerifier {
    fn verify(&self, evidence: &[u8], _now: u64) -> Result<VerifiedClaims> {
        if evidence.len() > MAX_REPORT_LEN {
            return Err(TeeError::Rejected(format!(
                "{} bytes is too long for an SNP report",
                evidence.len()
            )));
        }
        let report = std::panic::catch_unwind(|| AttestationReport::from_bytes(evidence))
            .map_err(|_| TeeError::Rejected("malformed SNP report (the parser gave up)".into()))?
            .map_err(|e| TeeError::Rejected(format!("malformed SNP report: {e}")))?;
        self.chain.get_or_init(|| self.check_chain()).clone()?;
        (&self.vcek, &report).verify().map_err(|e| {
            TeeError::Rejected(format!(
                "SNP report signature does not verify with the VCEK: {e}"
            ))
        })?;
        let mut measurements = BTreeMap::new();
        measurements.insert(
            "measurement".to_string(),
            hex::encode(&report.measurement[..]),
        );
        measurements.insert("host_data".to_string(), hex::encode(&report.host_data[..]));
        let t = &report.reported_tcb;
        Ok(VerifiedClaims {
            tee: TeeKind::Snp,
            measurements,
            signer: Some(hex::encode(&report.id_key_digest[..])),
            product_id: None,
            security_version: u16::try_from(report.guest_svn).ok(),
            debug: report.policy.debug_allowed(),
            tcb_status: format!(
                "Reported(bootloader={}, tee={}, snp={}, microcode={})",
                t.bootloader, t.tee, t.snp, t.microcode
            ),
            advisory_ids: Vec::new(),
            report_data: hex::encode(&report.report_data[..]),
        })
    }
}
