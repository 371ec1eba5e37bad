//! The error type of the confidential-computing crates (`veil-attest`, `veil-kbs`, `veil-room`,
//! `veil-server`).

/// Why evidence was rejected or could not be checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TeeError {
    /// The bytes are not a kind of evidence this build can read.
    #[error("unrecognized evidence: {0}")]
    UnknownEvidence(String),
    /// The evidence kind is recognized but its verifier is not compiled in.
    #[error("{0} evidence needs the `{1}` feature of veil-attest")]
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
    /// The policy refused the claims.
    #[error("policy {policy} denied: {}", reasons.join("; "))]
    PolicyDenied {
        /// The policy's name.
        policy: String,
        /// Every rule that failed.
        reasons: Vec<String>,
    },
    /// A policy could not be read or evaluated.
    #[error("invalid policy: {0}")]
    InvalidPolicy(String),
    /// The nonce is unknown, expired or was already used.
    #[error("nonce rejected: {0}")]
    NonceRejected(String),
    /// An attestation token failed verification.
    #[error("token rejected: {0}")]
    TokenRejected(String),
    /// The key broker holds no (active) secret of this name.
    #[error("no secret named {0:?} (unknown or revoked)")]
    SecretNotFound(String),
    /// The secret store could not be read or written.
    #[error("secret store: {0}")]
    Store(String),
    /// The audit log could not be written, or does not verify.
    #[error("audit log: {0}")]
    Audit(String),
    /// A request was malformed.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// A cryptographic operation failed.
    #[error("cryptographic failure: {0}")]
    Crypto(&'static str),
    /// A server refused the request.
    #[error("refused by the server (HTTP {status}): {reason}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The server's reason.
        reason: String,
    },
    /// A workload could not be compiled, was stopped, or failed.
    #[error("workload: {0}")]
    Workload(String),
    /// A data room refused a party, an upload or a request (identity, signature, manifest,
    /// recipient).
    #[error("room refused: {0}")]
    RoomRefused(String),
    /// A data room cannot do this now (waiting for uploads, already ran, already uploaded).
    #[error("room not ready: {0}")]
    RoomState(String),
    /// A data room's state directory cannot be used: a file is missing, tampered with,
    /// cut, sealed for another room, code or platform, or cannot be written. The room does
    /// not start (or does not act) rather than lose or alter a party's data.
    #[error("room state: {0}")]
    RoomStorage(String),
    /// The server is at capacity for now (HTTP 503 with `Retry-After`); nothing was decided.
    #[error("server overloaded: {reason}; retry in {retry_after} s")]
    Overloaded {
        /// What is full.
        reason: String,
        /// Seconds after which a retry can succeed.
        retry_after: u64,
    },
    /// A network operation failed.
    #[error("network: {0}")]
    Network(String),
    /// A bug in Veil. Please report it.
    #[error("internal error (a bug in Veil's CC stack): {0}")]
    Internal(&'static str),
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, TeeError>;
