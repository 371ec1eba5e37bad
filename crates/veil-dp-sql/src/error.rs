//! The error type of `veil-dp-sql`.

/// What can go wrong with DP SQL.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SqlError {
    /// The metadata file is unusable; the message names the table and column.
    #[error("metadata: {0}")]
    Metadata(String),
    /// The query was refused before any data was read, and nothing was charged; the message
    /// says why and, where there is one, what to ask instead.
    #[error("query rejected (nothing was charged): {0}")]
    Rejected(String),
    /// The query was refused by a check on the bounds that were estimated for it
    /// (`auto_bounds`): the estimate was charged (and is kept for later queries), the query
    /// was not.
    #[error(
        "query rejected once its automatic bounds were estimated (the estimate was charged and \
         is kept for later queries; the query itself was not charged): {0}"
    )]
    RejectedAfterEstimate(String),
    /// A table could not be registered (missing file, columns that do not match the
    /// metadata, …).
    #[error("table {table:?}: {message}")]
    Table {
        /// The table's name.
        table: String,
        /// What is wrong.
        message: String,
    },
    /// The SQL text does not parse or does not plan (unknown table or column, …); nothing was
    /// charged.
    #[error("invalid SQL (nothing was charged): {0}")]
    Sql(String),
    /// The backend failed while running the bounded query (after the charge).
    #[error("backend error: {0}")]
    Backend(String),
    /// The cluster the statistics run on is unreachable or failed; the message says whether
    /// the query was charged (it never quotes data).
    #[error("cluster: {0}")]
    Cluster(String),
    /// A differential-privacy error (budget, parameters).
    #[error(transparent)]
    Dp(#[from] veil_dp::DpError),
    /// A bug in Veil. Please report it.
    #[error("internal error (a bug in veil-dp-sql): {0}")]
    Internal(String),
}

impl SqlError {
    /// A rejection with its reason.
    pub(crate) fn rejected(reason: impl Into<String>) -> Self {
        SqlError::Rejected(reason.into())
    }
}

impl From<datafusion::error::DataFusionError> for SqlError {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        SqlError::Backend(e.to_string())
    }
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, SqlError>;
