//! The error type of `veil-tee`.

/// Why evidence was rejected or could not be checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TeeError {
    /// The bytes are not a kind of evidence this build can read.
    #[error("unrecognized evidence: {0}")]
    UnknownEvidence(String),
    /// The evidence kind is recognized but its verifier is not compiled in.
    #[error("{0} evidence needs the `{1}` feature of veil-tee")]
    VerifierNotEnabled(&'static str, &'static str),
    /// Verification needs collateral or a trust anchor that was not given.
    #[error("missing {0}")]
    MissingInput(&'static str),
    /// The collateral could not be read.
    #[error("invalid collateral: {0}")]
    InvalidCollateral(String),
    /// The evidence failed verification (signature, certificate chain, revocation, TCB).
    #[error("evidence rejected: {0}")]
    Rejected(String),
    /// The report data does not bind the presented nonce, key and runtime data.
    #[error(
        "report data mismatch: the evidence does not bind this nonce, public key and runtime data"
    )]
    BindingMismatch,
    /// A bug in Veil. Please report it.
    #[error("internal error (a bug in veil-tee): {0}")]
    Internal(&'static str),
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, TeeError>;
