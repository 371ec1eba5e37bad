//! The error type of `veil-dp-sql`.

/// What can go wrong with DP SQL.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SqlError {
    /// The metadata file is unusable; the message names the table and column.
    #[error("metadata: {0}")]
    Metadata(String),
    /// A differential-privacy error (budget, parameters).
    #[error(transparent)]
    Dp(#[from] veil_dp::DpError),
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, SqlError>;
