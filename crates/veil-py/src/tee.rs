//! `veil._native.tee`: verification of remote-attestation evidence (SGX, TDX, SEV-SNP, the
//! simulated TEE) and a simulated platform for tests and demos (the `veil.tee` module wraps
//! them).

use pyo3::prelude::*;
use pyo3::types::PyBytes;
use veil_attest::evidence::dcap::DcapVerifier;
use veil_attest::evidence::sim::{SimVerifier, SimulatedPlatform};
use veil_attest::evidence::snp::{SnpTcb, SnpVerifier};
use veil_attest::evidence::{detect, EvidenceKind, Verifier};

use crate::errors::{tee, TeeError};

/// Adds the functions and classes to the `tee` submodule.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(verify, m)?)?;
    m.add_function(wrap_pyfunction!(evidence_kind, m)?)?;
    m.add_class::<SimulatedTee>()?;
    Ok(())
}

/// What the evidence claims to be: `"sgx"`, `"tdx"`, `"snp"` or `"simulated"` (not a
/// verification).
#[pyfunction]
fn evidence_kind(evidence: &[u8]) -> PyResult<&'static str> {
    Ok(match detect(evidence).map_err(tee)? {
        EvidenceKind::SgxQuote => "sgx",
        EvidenceKind::TdxQuote => "tdx",
        EvidenceKind::SnpReport => "snp",
        EvidenceKind::Simulated => "simulated",
    })
}

/// Verifies evidence at time `at` (Unix seconds) against the trust anchor its kind needs:
/// `collateral` (Intel's collateral JSON) for SGX/TDX, `vcek` or `vlek` (DER) for SEV-SNP
/// (with `snp_min_tcb` such as `"bootloader=3,tee=0,snp=8,microcode=115"`), or
/// `sim_platform_key` (32 bytes) for the simulated TEE. Returns the verified claims as JSON
/// text; anything that does not verify raises `TeeError` with the reason.
#[pyfunction]
#[pyo3(signature = (evidence, at, collateral = None, vcek = None, vlek = None, snp_min_tcb = None, sim_platform_key = None))]
#[allow(
    clippy::too_many_arguments,
    reason = "the Python signature's keyword arguments"
)]
fn verify(
    py: Python<'_>,
    evidence: &[u8],
    at: u64,
    collateral: Option<&str>,
    vcek: Option<&[u8]>,
    vlek: Option<&[u8]>,
    snp_min_tcb: Option<&str>,
    sim_platform_key: Option<&[u8]>,
) -> PyResult<String> {
    let kind = detect(evidence).map_err(tee)?;
    let claims = py.detach(|| -> PyResult<_> {
        match kind {
            EvidenceKind::SgxQuote | EvidenceKind::TdxQuote => {
                let json = collateral.ok_or_else(|| {
                    TeeError::new_err(
                        "SGX/TDX evidence needs collateral= (Intel's collateral JSON for offline \
                         verification)",
                    )
                })?;
                DcapVerifier::from_collateral_json(json)
                    .and_then(|v| v.verify(evidence, at))
                    .map_err(tee)
            }
            EvidenceKind::SnpReport => {
                let mut v = match (vcek, vlek) {
                    (Some(der), _) => SnpVerifier::from_vcek_der(der),
                    (None, Some(der)) => SnpVerifier::from_vlek_der(der),
                    (None, None) => {
                        return Err(TeeError::new_err(
                            "SEV-SNP evidence needs vcek= (the chip's VCEK certificate, DER) \
                             or vlek= (a cloud provider's VLEK certificate, DER)",
                        ))
                    }
                }
                .map_err(tee)?;
                if let Some(min) = snp_min_tcb {
                    let min: SnpTcb = min
                        .parse()
                        .map_err(|e| TeeError::new_err(format!("snp_min_tcb {min:?}: {e}")))?;
                    v = v.with_min_tcb(min);
                }
                v.verify(evidence, at).map_err(tee)
            }
            EvidenceKind::Simulated => {
                let key = sim_platform_key.ok_or_else(|| {
                    TeeError::new_err(
                        "simulated evidence needs sim_platform_key= (the simulated platform's \
                         32-byte public key)",
                    )
                })?;
                let key: &[u8; 32] = key.try_into().map_err(|_| {
                    TeeError::new_err(format!(
                        "sim_platform_key must be 32 bytes, got {}",
                        key.len()
                    ))
                })?;
                SimVerifier::new(key)
                    .and_then(|v| v.verify(evidence, at))
                    .map_err(tee)
            }
        }
    })?;
    serde_json::to_string(&claims).map_err(|e| TeeError::new_err(e.to_string()))
}

/// A simulated TEE platform (no hardware protection): issues evidence that verifies only
/// against its public key. For tests, demos and development without TEE hardware.
#[pyclass(frozen, module = "veil._native.tee", name = "SimulatedTee")]
pub struct SimulatedTee {
    inner: SimulatedPlatform,
}

#[pymethods]
impl SimulatedTee {
    /// A platform with a fresh key (or one derived from a 32-byte `seed`).
    #[new]
    #[pyo3(signature = (seed = None))]
    fn new(seed: Option<&[u8]>) -> PyResult<Self> {
        let inner = match seed {
            Some(s) => {
                let s: &[u8; 32] = s.try_into().map_err(|_| {
                    TeeError::new_err(format!("the seed must be 32 bytes, got {}", s.len()))
                })?;
                SimulatedPlatform::from_seed(s)
            }
            None => SimulatedPlatform::generate().map_err(tee)?,
        };
        Ok(Self { inner })
    }

    /// The platform's public key (the verifier's trust anchor).
    fn public_key<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.public_key())
    }

    /// Evidence for a workload with a 48-byte `measurement` binding 64 bytes of `report_data`.
    #[pyo3(signature = (measurement, report_data, debug = false, svn = 0))]
    fn issue<'py>(
        &self,
        py: Python<'py>,
        measurement: &[u8],
        report_data: &[u8],
        debug: bool,
        svn: u16,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let m: &[u8; 48] = measurement.try_into().map_err(|_| {
            TeeError::new_err(format!(
                "the measurement must be 48 bytes, got {}",
                measurement.len()
            ))
        })?;
        let r: &[u8; 64] = report_data.try_into().map_err(|_| {
            TeeError::new_err(format!(
                "report_data must be 64 bytes, got {}",
                report_data.len()
            ))
        })?;
        Ok(PyBytes::new(py, &self.inner.issue(m, r, debug, svn)))
    }
}
