//! The error type of `veil-dp`.

/// Everything that can go wrong when releasing differentially private results.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum DpError {
    /// A parameter is out of its domain (negative ε, δ ≥ 1, empty bounds, …).
    #[error("invalid parameter: {0}")]
    InvalidParameter(String),
    /// The budget cannot pay for the request; nothing was charged.
    #[error(
        "budget exhausted for dataset {dataset:?}{analyst}: requested ε = {requested_epsilon}, δ = {requested_delta}, \
         ρ = {requested_rho}; remaining ε = {remaining_epsilon}, δ = {remaining_delta}, ρ = {remaining_rho} \
         (nothing was charged)"
    )]
    BudgetExhausted {
        /// Dataset name.
        dataset: String,
        /// `" (analyst …)"` when an analyst's own budget was the limit, else empty.
        analyst: String,
        /// ε requested.
        requested_epsilon: f64,
        /// δ requested.
        requested_delta: f64,
        /// ε remaining.
        remaining_epsilon: f64,
        /// δ remaining.
        remaining_delta: f64,
        /// ρ requested (zCDP accounting; 0 otherwise).
        requested_rho: f64,
        /// ρ remaining (zCDP accounting; 0 otherwise).
        remaining_rho: f64,
    },
    /// The ledger has no budget for this dataset.
    #[error("no budget is set for dataset {0:?}; set one with Ledger::set_budget")]
    UnknownDataset(String),
    /// The dataset was never registered in this ledger, so no operator set its total budget.
    #[error(
        "dataset {dataset:?} is not registered in this ledger, so it has no budget: its operator \
         registers the metadata and sets the total budget (`veil dp dataset register --metadata \
         FILE`, or Ledger::register); nothing was charged"
    )]
    NotRegistered {
        /// Dataset name.
        dataset: String,
    },
    /// The metadata presented is not the one the dataset was registered with.
    #[error(
        "the metadata of dataset {dataset:?} is not the registered one (its SHA-256 is {found}, \
         the registered one is {registered}): use the registered file unchanged, or have the \
         operator register this one (`veil dp dataset register`); nothing was charged"
    )]
    MetadataChanged {
        /// Dataset name.
        dataset: String,
        /// SHA-256 (hex) recorded at registration.
        registered: String,
        /// SHA-256 (hex) of the metadata presented.
        found: String,
    },
    /// The ledger's storage failed.
    #[error("budget ledger error: {0}")]
    Ledger(String),
    /// The sampler failed (e.g. the system ran out of entropy).
    #[error("noise sampling failed: {0}")]
    Sampling(String),
    /// A value is too large to be released on the chosen grid.
    #[error("value {value} is too large for the noise grid 2^{grid_exponent}")]
    OutOfRange {
        /// The value.
        value: f64,
        /// The grid exponent.
        grid_exponent: i32,
    },
    /// A bug in Veil. Please report it.
    #[error("internal error (a bug in veil-dp): {0}")]
    Internal(&'static str),
}

impl From<rusqlite::Error> for DpError {
    fn from(e: rusqlite::Error) -> Self {
        DpError::Ledger(e.to_string())
    }
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, DpError>;

/// Checks that `x` is finite and positive.
pub(crate) fn positive(name: &str, x: f64) -> Result<f64> {
    if x.is_finite() && x > 0.0 {
        Ok(x)
    } else {
        Err(DpError::InvalidParameter(format!(
            "{name} must be finite and positive, got {x}"
        )))
    }
}

/// Checks that `x` is a probability in `[0, 1)`.
pub(crate) fn delta(name: &str, x: f64) -> Result<f64> {
    if x.is_finite() && (0.0..1.0).contains(&x) {
        Ok(x)
    } else {
        Err(DpError::InvalidParameter(format!(
            "{name} must be in [0, 1), got {x}"
        )))
    }
}
