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
    /// A saved plan or an encrypted-samples file is malformed, of another version, or
    /// inconsistent (it is untrusted input: nothing in it is believed unchecked).
    #[error("not a valid {what}: {reason}")]
    Format {
        /// What was being read (`plan`, `encrypted samples`).
        what: &'static str,
        /// What is wrong.
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
    /// A value of the model could leave the fixed-point range of the MPC backend: a product
    /// would reach `2^62` before truncation (or a value would not encode), so the result
    /// could silently wrap around. Nothing is run.
    #[error(
        "node `{node}` ({op}): {what} can reach {bound:.3e} with inputs in [-{input_bound}, {input_bound}], \
         above the fixed-point limit {limit:.3e} ({frac_bits} fractional bits): scale the \
         weights or inputs down, or use fewer fractional bits"
    )]
    FixedPointRange {
        /// The node's name.
        node: String,
        /// The operator.
        op: String,
        /// Which quantity overflows (a product before truncation, an encoded value).
        what: &'static str,
        /// Its worst-case magnitude (interval analysis of the model's weights).
        bound: f64,
        /// The largest magnitude the encoding allows there.
        limit: f64,
        /// The declared bound on the input's magnitude.
        input_bound: f64,
        /// Fractional bits of the encoding.
        frac_bits: u32,
    },
    /// The multi-party computation failed (a party or the dealer stopped, a malformed message,
    /// a parameter out of range).
    #[error(transparent)]
    Mpc(#[from] veil_mpc::MpcError),
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
