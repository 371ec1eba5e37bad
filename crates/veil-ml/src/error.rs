//! The crate's error type.

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, MlError>;

/// What went wrong reading, checking or running a model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MlError {
    /// The bytes are not an ONNX model (truncated, not protobuf, too large).
    #[error("not a readable ONNX model: {reason}")]
    Decode {
        /// What the decoder found.
        reason: String,
    },
    /// The model uses an operator that Veil does not implement.
    #[error(
        "node `{node}`: operator `{op}` (domain `{domain}`) is not supported; supported: {supported}"
    )]
    UnsupportedOp {
        /// The node's name (or `#index` when the model leaves it unnamed).
        node: String,
        /// The ONNX operator type.
        op: String,
        /// The operator's domain (`ai.onnx` for the default domain).
        domain: String,
        /// The operators that are supported, for the message.
        supported: &'static str,
    },
    /// A supported operator used in a way Veil does not implement (an attribute value,
    /// a non-constant weight, a layout that is not a pure layout change, …).
    #[error("node `{node}` ({op}): {reason}")]
    UnsupportedUse {
        /// The node's name.
        node: String,
        /// The ONNX operator type.
        op: String,
        /// What is not supported and, where there is one, what to do instead.
        reason: String,
    },
    /// The model is malformed: inconsistent shapes, missing inputs, bad attribute types.
    #[error("invalid model: {reason}")]
    InvalidModel {
        /// What is inconsistent.
        reason: String,
    },
    /// An input given to the executor does not match the model.
    #[error("input does not match the model: {reason}")]
    Input {
        /// Expected versus found.
        reason: String,
    },
    /// The homomorphic-encryption layer failed.
    #[error(transparent)]
    He(#[from] veil_he::HeError),
    /// A bug in this crate: an invariant that should hold did not.
    #[error("internal error (a bug in veil-ml): {0}")]
    Internal(&'static str),
}

impl MlError {
    pub(crate) fn invalid(reason: impl Into<String>) -> Self {
        Self::InvalidModel {
            reason: reason.into(),
        }
    }
}
