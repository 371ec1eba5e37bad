//! What verified evidence proves.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The kind of trusted execution environment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TeeKind {
    /// Intel SGX enclave.
    Sgx,
    /// Intel TDX trust domain.
    Tdx,
    /// AMD SEV-SNP confidential VM.
    Snp,
    /// Veil's simulated TEE (software only, **no hardware protection**).
    Sim,
}

impl TeeKind {
    /// The name used in claims and policies.
    pub fn name(self) -> &'static str {
        match self {
            TeeKind::Sgx => "sgx",
            TeeKind::Tdx => "tdx",
            TeeKind::Snp => "snp",
            TeeKind::Sim => "sim",
        }
    }
}

/// Typed claims from evidence that passed verification.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifiedClaims {
    /// Which TEE produced the evidence.
    pub tee: TeeKind,
    /// Code measurements by name (hex): `mr_enclave`, `mr_signer` (SGX); `mr_td`,
    /// `rtmr0..3`, `mr_seam` (TDX); `measurement` (simulated).
    pub measurements: BTreeMap<String, String>,
    /// The signer's identity (hex): MRSIGNER for SGX, MRSIGNERSEAM for TDX.
    pub signer: Option<String>,
    /// Product id (SGX ISV_PROD_ID).
    pub product_id: Option<u16>,
    /// Security version (SGX ISV_SVN, simulated SVN).
    pub security_version: Option<u16>,
    /// Whether the TEE runs in debug mode (its memory is then readable by the host).
    pub debug: bool,
    /// TCB status: from the collateral for SGX/TDX (`UpToDate`, `SWHardeningNeeded`,
    /// `OutOfDate`, …); for SEV-SNP `UpToDate`/`OutOfDate` against the minimum TCB the
    /// verifier was given, `Unknown` without one; `Simulated` for the simulated TEE.
    pub tcb_status: String,
    /// Intel security advisories that apply to the platform.
    pub advisory_ids: Vec<String>,
    /// The 64 bytes of report data the TEE bound into the evidence (hex).
    pub report_data: String,
    /// The privilege level the report was requested from (SEV-SNP VMPL; 0 is the most
    /// privileged). Absent for other TEEs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vmpl: Option<u32>,
    /// The platform's TCB version by component, when the evidence carries one without a
    /// status of its own (SEV-SNP: `bootloader`, `tee`, `snp`, `microcode`, `fmc`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tcb: BTreeMap<String, u64>,
    /// Which kind of key signed the evidence, when the TEE has several (SEV-SNP: `vcek`, the
    /// chip's key, or `vlek`, a key AMD issued to a cloud provider). Absent for other TEEs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key: Option<String>,
}
