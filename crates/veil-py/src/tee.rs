//! `veil._native.tee`: verification of remote-attestation evidence (SGX, TDX, SEV-SNP, the
//! simulated TEE), a simulated platform for tests and demos, and the clients of the
//! attestation service and the key broker with the workload's HPKE key (the `veil.tee`
//! module wraps them).

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
    m.add_function(wrap_pyfunction!(nonce, m)?)?;
    m.add_function(wrap_pyfunction!(report_data, m)?)?;
    m.add_function(wrap_pyfunction!(attest, m)?)?;
    m.add_function(wrap_pyfunction!(release, m)?)?;
    m.add_class::<WorkloadKey>()?;
    crate::room::register(m)
}

/// Runs one client request to completion on a runtime of its own (the GIL released by the
/// caller).
pub(crate) fn block_on<F: std::future::Future>(f: F) -> PyResult<F::Output> {
    veil_server::client::install_crypto_provider();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| TeeError::new_err(format!("cannot start a client runtime: {e}")))?;
    Ok(rt.block_on(f))
}

/// `GET {service}/nonce`: a fresh single-use nonce (base64url) for the evidence to bind.
#[pyfunction]
fn nonce(py: Python<'_>, service: &str) -> PyResult<String> {
    let r = py.detach(|| block_on(veil_server::client::fetch_nonce(service)))?;
    Ok(r.map_err(tee)?.nonce)
}

/// The 64 bytes of report data the evidence must carry: they bind the service's `nonce`
/// (base64url), the workload's `public_key` (the key secrets are sealed to) and
/// `runtime_data`.
#[pyfunction]
#[pyo3(signature = (nonce, public_key, runtime_data = None))]
fn report_data<'py>(
    py: Python<'py>,
    nonce: &str,
    public_key: &[u8],
    runtime_data: Option<&[u8]>,
) -> PyResult<Bound<'py, PyBytes>> {
    let n = veil_attest::util::decode_b64("nonce", nonce).map_err(tee)?;
    let rd =
        veil_attest::binding::expected_report_data(&n, public_key, runtime_data.unwrap_or(b""));
    Ok(PyBytes::new(py, &rd))
}

/// `POST {service}/attest`: evidence binding `nonce`, `public_key` and `runtime_data` (see
/// [`report_data`]); returns the service's answer as JSON (`token`, `claims`), or raises
/// `TeeError` with the service's reason.
#[pyfunction]
#[pyo3(signature = (service, evidence, nonce, public_key, runtime_data = None))]
fn attest(
    py: Python<'_>,
    service: &str,
    evidence: &[u8],
    nonce: &str,
    public_key: &[u8],
    runtime_data: Option<&[u8]>,
) -> PyResult<String> {
    use veil_attest::util::encode_b64;
    let request = veil_attest::service::AttestRequest {
        evidence: encode_b64(evidence),
        nonce: nonce.to_string(),
        runtime_public_key: encode_b64(public_key),
        runtime_data: runtime_data.map(encode_b64).unwrap_or_default(),
    };
    let r = py.detach(|| block_on(veil_server::client::attest(service, &request)))?;
    serde_json::to_string(&r.map_err(tee)?).map_err(|e| TeeError::new_err(e.to_string()))
}

/// `POST {kbs}/release/{name}` with an attestation `token`: the secret sealed (HPKE) to the
/// public key the token names, as JSON; raises `TeeError` with the broker's reason.
#[pyfunction]
fn release(py: Python<'_>, kbs: &str, name: &str, token: &str) -> PyResult<String> {
    let r = py.detach(|| block_on(veil_server::client::release(kbs, name, token)))?;
    serde_json::to_string(&r.map_err(tee)?).map_err(|e| TeeError::new_err(e.to_string()))
}

/// A workload's HPKE key pair (X25519): its public half goes into the evidence's report data,
/// its private half opens the secrets the key broker releases to it. The private key is
/// zeroized when the object is freed (a copy taken with `private_key()` is Python's).
#[pyclass(frozen, module = "veil._native.tee", name = "WorkloadKey")]
pub struct WorkloadKey {
    inner: veil_kbs::WorkloadKeyPair,
}

#[pymethods]
impl WorkloadKey {
    /// A fresh key pair, or the one whose private key is `private_key` (32 bytes).
    #[new]
    #[pyo3(signature = (private_key = None))]
    fn new(private_key: Option<&[u8]>) -> PyResult<Self> {
        let inner = match private_key {
            Some(k) => veil_kbs::WorkloadKeyPair::from_private_bytes(k).map_err(tee)?,
            None => veil_kbs::WorkloadKeyPair::generate(),
        };
        Ok(Self { inner })
    }

    /// The public key (32 bytes).
    fn public_key<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.public_bytes())
    }

    /// The private key (32 bytes): keep it inside the TEE.
    fn private_key<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.private_bytes())
    }

    /// Opens a released secret (what [`release`] returns: its JSON text, or that parsed into
    /// a dict); raises `TeeError` when it was sealed to another key or altered.
    fn open<'py>(
        &self,
        py: Python<'py>,
        released: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let text: String = match released.extract::<String>() {
            Ok(s) => s,
            Err(_) => py
                .import("json")?
                .call_method1("dumps", (released,))
                .map_err(|_| TeeError::new_err("not a released secret: give release()'s result"))?
                .extract()?,
        };
        let r: veil_kbs::ReleasedSecret = serde_json::from_str(&text)
            .map_err(|e| TeeError::new_err(format!("not a released secret: {e}")))?;
        let secret = self.inner.open(&r).map_err(tee)?;
        Ok(PyBytes::new(py, &secret))
    }
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
