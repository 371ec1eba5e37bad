//! Python exceptions, one class per protection, all under `veil.VeilError`.
//!
//! The message is the Rust error's `Display`, which names what was wrong and (for the DP
//! engine) states that nothing was charged when that is so.

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

create_exception!(
    veil,
    VeilError,
    PyException,
    "Base class of every error Veil raises."
);
create_exception!(
    veil,
    HeError,
    VeilError,
    "Homomorphic encryption: bad parameters, keys, ciphertexts or operands."
);
create_exception!(
    veil,
    DpError,
    VeilError,
    "Differential privacy: refused queries, bad parameters, ledger errors."
);
create_exception!(
    veil,
    MlError,
    VeilError,
    "Machine learning: a model, plan, sample or encrypted batch that cannot be used."
);
create_exception!(
    veil,
    TeeError,
    VeilError,
    "Confidential computing: evidence that does not verify, or a missing trust anchor."
);
create_exception!(
    veil,
    MpcError,
    VeilError,
    "Secure multi-party computation: a session, a party or an input that fails."
);
create_exception!(
    veil,
    BudgetExhausted,
    DpError,
    "The privacy budget cannot pay for the release; nothing was charged."
);

/// Adds the exception classes to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("VeilError", py.get_type::<VeilError>())?;
    m.add("HeError", py.get_type::<HeError>())?;
    m.add("DpError", py.get_type::<DpError>())?;
    m.add("BudgetExhausted", py.get_type::<BudgetExhausted>())?;
    m.add("MlError", py.get_type::<MlError>())?;
    m.add("TeeError", py.get_type::<TeeError>())?;
    m.add("MpcError", py.get_type::<MpcError>())?;
    Ok(())
}

/// A homomorphic-encryption error as a Python exception.
pub fn he(e: veil_he::HeError) -> PyErr {
    HeError::new_err(e.to_string())
}

/// A differential-privacy error as a Python exception ([`BudgetExhausted`] when the budget
/// could not pay).
pub fn dp(e: veil_dp::DpError) -> PyErr {
    match e {
        veil_dp::DpError::BudgetExhausted { .. } => BudgetExhausted::new_err(e.to_string()),
        other => DpError::new_err(other.to_string()),
    }
}

/// A DP SQL error as a Python exception.
pub fn sql(e: veil_dp_sql::SqlError) -> PyErr {
    match e {
        veil_dp_sql::SqlError::Dp(inner) => dp(inner),
        other => DpError::new_err(other.to_string()),
    }
}

/// A model error as a Python exception (an HE error inside it stays an `HeError`).
pub fn ml(e: veil_ml::MlError) -> PyErr {
    match e {
        veil_ml::MlError::He(inner) => he(inner),
        other => MlError::new_err(other.to_string()),
    }
}

/// An attestation error as a Python exception.
pub fn tee(e: veil_attest::TeeError) -> PyErr {
    TeeError::new_err(e.to_string())
}

/// An MPC error as a Python exception.
pub fn mpc(e: veil_mpc::MpcError) -> PyErr {
    MpcError::new_err(e.to_string())
}
