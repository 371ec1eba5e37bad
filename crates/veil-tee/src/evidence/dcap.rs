//! Intel SGX (quote v3) and TDX (quote v4/v5) verification with `dcap-qvl`, offline, against
//! stored collateral (PCK certificate chain, CRLs, TCB info, QE identity) at a given time.
//!
//! `dcap-qvl` checks the quote's signature by the attestation key, the QE report and its
//! binding of that key, the PCK certificate chain up to Intel's root with revocation, and the
//! platform's TCB level against the signed TCB info. A quote whose platform matches no TCB
//! level, whose collateral has expired or whose signature does not verify is rejected.

use std::collections::BTreeMap;

use dcap_qvl::QuoteCollateralV3;

use crate::claims::{TeeKind, VerifiedClaims};
use crate::error::{Result, TeeError};
use crate::evidence::{detect, EvidenceKind, Verifier};

/// Largest quote accepted (real quotes are a few kilobytes).
const MAX_QUOTE_LEN: usize = 64 * 1024;

/// A verifier for SGX and TDX quotes with fixed collateral.
#[derive(Clone, Debug)]
pub struct DcapVerifier {
    collateral: QuoteCollateralV3,
}

impl DcapVerifier {
    /// Reads collateral in the JSON form `dcap-qvl` and Intel's PCCS tooling use.
    pub fn from_collateral_json(json: &str) -> Result<Self> {
        let collateral: QuoteCollateralV3 =
            serde_json::from_str(json).map_err(|e| TeeError::InvalidCollateral(e.to_string()))?;
        Ok(Self { collateral })
    }

    /// A verifier over collateral fetched or built in code (e.g. by
    /// [`crate::pccs::PccsClient::fetch`]).
    pub fn from_collateral(collateral: QuoteCollateralV3) -> Self {
        Self { collateral }
    }

    /// The collateral as JSON, in the form [`DcapVerifier::from_collateral_json`] reads (to
    /// save fetched collateral for offline use).
    pub fn collateral_json(&self) -> Result<String> {
        serde_json::to_string_pretty(&self.collateral)
            .map_err(|e| TeeError::InvalidCollateral(e.to_string()))
    }
}

fn hex48(v: &[u8; 48]) -> String {
    hex::encode(v)
}

/// Parses a quote **without verifying anything** and returns its header and body fields as
/// hex strings, named as Intel's documentation and Confidential Containers' Trustee name them
/// (`mr_td`, `rtmr_0`, `tcb_svn`, `td_attributes`, `report_data`, …; `mr_enclave`,
/// `mr_signer`, … for SGX).
///
/// For inspection and debugging only: nothing here is trustworthy until [`DcapVerifier`]
/// accepted the quote.
pub fn inspect_unverified(quote: &[u8]) -> Result<BTreeMap<String, String>> {
    if quote.len() > MAX_QUOTE_LEN {
        return Err(TeeError::UnknownEvidence(format!(
            "quote of {} bytes exceeds {MAX_QUOTE_LEN}",
            quote.len()
        )));
    }
    let parsed = std::panic::catch_unwind(|| dcap_qvl::quote::Quote::parse(quote))
        .map_err(|_| TeeError::UnknownEvidence("malformed quote (the parser gave up)".into()))?
        .map_err(|e| TeeError::UnknownEvidence(format!("malformed quote: {e:#}")))?;
    let h = &parsed.header;
    let mut f = BTreeMap::new();
    let mut put = |k: &str, v: String| {
        f.insert(k.to_string(), v);
    };
    put("version", hex::encode(h.version.to_le_bytes()));
    put(
        "att_key_type",
        hex::encode(h.attestation_key_type.to_le_bytes()),
    );
    put("tee_type", hex::encode(h.tee_type.to_le_bytes()));
    // Bytes 8..12: QE SVN and PCE SVN for SGX, reserved for TDX.
    let mut svns = h.qe_svn.to_le_bytes().to_vec();
    svns.extend_from_slice(&h.pce_svn.to_le_bytes());
    put(
        if h.tee_type == 0x81 {
            "reserved"
        } else {
            "qe_pce_svn"
        },
        hex::encode(svns),
    );
    put("vendor_id", hex::encode(h.qe_vendor_id));
    put("user_data", hex::encode(h.user_data));
    if let Some(td) = parsed.report.as_td10() {
        put("tcb_svn", hex::encode(td.tee_tcb_svn));
        put("mr_seam", hex48(&td.mr_seam));
        put("mrsigner_seam", hex48(&td.mr_signer_seam));
        put("seam_attributes", hex::encode(td.seam_attributes));
        put("td_attributes", hex::encode(td.td_attributes));
        put("xfam", hex::encode(td.xfam));
        put("mr_td", hex48(&td.mr_td));
        put("mr_config_id", hex48(&td.mr_config_id));
        put("mr_owner", hex48(&td.mr_owner));
        put("mr_owner_config", hex48(&td.mr_owner_config));
        put("rtmr_0", hex48(&td.rt_mr0));
        put("rtmr_1", hex48(&td.rt_mr1));
        put("rtmr_2", hex48(&td.rt_mr2));
        put("rtmr_3", hex48(&td.rt_mr3));
        put("report_data", hex::encode(td.report_data));
    } else if let Some(sgx) = parsed.report.as_sgx() {
        put("cpu_svn", hex::encode(sgx.cpu_svn));
        put("attributes", hex::encode(sgx.attributes));
        put("mr_enclave", hex::encode(sgx.mr_enclave));
        put("mr_signer", hex::encode(sgx.mr_signer));
        put("isv_prod_id", hex::encode(sgx.isv_prod_id.to_le_bytes()));
        put("isv_svn", hex::encode(sgx.isv_svn.to_le_bytes()));
        put("report_data", hex::encode(sgx.report_data));
    }
    Ok(f)
}

impl Verifier for DcapVerifier {
    fn verify(&self, quote: &[u8], now: u64) -> Result<VerifiedClaims> {
        if quote.len() > MAX_QUOTE_LEN {
            return Err(TeeError::Rejected(format!(
                "quote of {} bytes exceeds {MAX_QUOTE_LEN}",
                quote.len()
            )));
        }
        let kind = detect(quote)?;
        if kind == EvidenceKind::Simulated {
            return Err(TeeError::UnknownEvidence(
                "simulated evidence given to the DCAP verifier".into(),
            ));
        }
        // dcap-qvl parses untrusted input; contain any panic in it as a rejection.
        let result =
            std::panic::catch_unwind(|| dcap_qvl::verify::verify(quote, &self.collateral, now))
                .map_err(|_| TeeError::Rejected("malformed quote (the parser gave up)".into()))?;
        let report = result.map_err(|e| TeeError::Rejected(format!("{e:#}")))?;
        let mut measurements = BTreeMap::new();
        let claims = if let Some(sgx) = report.report.as_sgx() {
            measurements.insert("mr_enclave".to_string(), hex::encode(sgx.mr_enclave));
            measurements.insert("mr_signer".to_string(), hex::encode(sgx.mr_signer));
            VerifiedClaims {
                tee: TeeKind::Sgx,
                measurements,
                signer: Some(hex::encode(sgx.mr_signer)),
                product_id: Some(sgx.isv_prod_id),
                security_version: Some(sgx.isv_svn),
                // ATTRIBUTES.DEBUG is bit 1 of the first byte.
                debug: sgx.attributes[0] & 0x02 != 0,
                tcb_status: report.status.clone(),
                advisory_ids: report.advisory_ids.clone(),
                report_data: hex::encode(sgx.report_data),
            }
        } else if let Some(td) = report.report.as_td10() {
            measurements.insert("mr_td".to_string(), hex48(&td.mr_td));
            measurements.insert("rtmr0".to_string(), hex48(&td.rt_mr0));
            measurements.insert("rtmr1".to_string(), hex48(&td.rt_mr1));
            measurements.insert("rtmr2".to_string(), hex48(&td.rt_mr2));
            measurements.insert("rtmr3".to_string(), hex48(&td.rt_mr3));
            measurements.insert("mr_seam".to_string(), hex48(&td.mr_seam));
            measurements.insert("mr_config_id".to_string(), hex48(&td.mr_config_id));
            VerifiedClaims {
                tee: TeeKind::Tdx,
                measurements,
                signer: Some(hex48(&td.mr_signer_seam)),
                product_id: None,
                security_version: None,
                // TDATTRIBUTES.DEBUG is bit 0.
                debug: td.td_attributes[0] & 0x01 != 0,
                tcb_status: report.status.clone(),
                advisory_ids: report.advisory_ids.clone(),
                report_data: hex::encode(td.report_data),
            }
        } else {
            return Err(TeeError::Internal("verified report is neither SGX nor TDX"));
        };
        if kind == EvidenceKind::SgxQuote && claims.tee != TeeKind::Sgx {
            return Err(TeeError::Rejected(
                "quote header says SGX but the body is a TD report".into(),
            ));
        }
        Ok(claims)
    }
}
