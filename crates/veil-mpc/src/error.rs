//! The error type of `veil-mpc`.

/// What went wrong in a computation.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum MpcError {
    /// A value cannot be encoded in fixed point (not finite, or too large).
    #[error("cannot encode {value} in fixed point with {frac_bits} fractional bits: {why}")]
    Encoding {
        /// The value.
        value: f64,
        /// Fractional bits.
        frac_bits: u32,
        /// Why.
        why: &'static str,
    },
    /// Parameters are out of range.
    #[error("invalid parameter: {0}")]
    InvalidParameter(String),
    /// Operands do not fit together.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// A party sent something that does not fit the protocol (wrong length, missing message).
    #[error("party {party} sent a malformed message in {phase}: {why}")]
    Malformed {
        /// The sender.
        party: usize,
        /// Protocol phase.
        phase: String,
        /// Why.
        why: String,
    },
    /// A party stopped answering or disconnected.
    #[error("party {party} is gone during {phase}: {why}")]
    PartyGone {
        /// The party.
        party: usize,
        /// Protocol phase.
        phase: String,
        /// Why.
        why: String,
    },
    /// A connection could not be set up, or a peer failed the checks (certificate, identity,
    /// configuration).
    #[error("network: {0}")]
    Network(String),
    /// The session configuration is unusable.
    #[error("configuration: {0}")]
    Config(String),
    /// The dealer could not provide correlated randomness.
    #[error("dealer: {0}")]
    Dealer(String),
    /// Values lie outside the range a computation was declared for. Only their number was
    /// revealed (to every party), no value.
    #[error("{outside} values lie outside [-{max_abs}, {max_abs}], the range declared for this computation: declare a larger bound or scale the data")]
    OutOfRange {
        /// How many values lie outside.
        outside: usize,
        /// The declared bound on their magnitude.
        max_abs: f64,
    },
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, MpcError>;
