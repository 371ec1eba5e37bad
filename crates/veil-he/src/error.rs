//! The error type of `veil-he`.

use veil_math::MathError;

/// Everything that can go wrong in homomorphic encryption, each with what to do about it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum HeError {
    /// The parameter set is not valid.
    #[error("invalid parameters: {0}")]
    InvalidParameters(String),
    /// The parameter set is below 128-bit security and the caller did not opt in.
    #[error(
        "parameters are below 128-bit security: log2(QP) = {total_bits} bits exceeds {max_bits} for N = {degree} \
         (HomomorphicEncryption.org standard, ternary secret); use fewer/smaller primes or a larger N. Only the \
         party that uses the parameters may opt out, by name: `insecure_allow_below_128_bit_security()` on the \
         builder, `from_bytes_insecure_allow_below_128_bit_security` for received bytes"
    )]
    InsecureParameters {
        /// Ring degree.
        degree: usize,
        /// Sum of all prime bit sizes (ciphertext and special primes).
        total_bits: u32,
        /// Largest secure total for this degree.
        max_bits: u32,
    },
    /// Objects from different parameter sets were mixed.
    #[error(
        "parameter mismatch: object was made for parameter set {found}, this context is {expected}"
    )]
    ParameterMismatch {
        /// Fingerprint of this context's parameters (hex).
        expected: String,
        /// Fingerprint carried by the object (hex).
        found: String,
    },
    /// Two operands have different scales.
    #[error("scale mismatch: 2^{left:.3} vs 2^{right:.3}; rescale first or align the operands (Evaluator::align_to)")]
    ScaleMismatch {
        /// log2 of the left operand's scale.
        left: f64,
        /// log2 of the right operand's scale.
        right: f64,
    },
    /// Two operands are at different levels.
    #[error("level mismatch: {left} vs {right}; mod-switch the higher one down (Evaluator::mod_switch_to_level) or align them")]
    LevelMismatch {
        /// Level of the left operand.
        left: usize,
        /// Level of the right operand.
        right: usize,
    },
    /// Not enough levels left for the computation.
    #[error("out of levels: the operation needs {needed} more level(s), the ciphertext has {left} left; use a longer modulus chain")]
    OutOfLevels {
        /// Levels needed.
        needed: usize,
        /// Levels left.
        left: usize,
    },
    /// A rotation needs a Galois key that was not generated.
    #[error("missing Galois key for rotation step {step}; generate it with KeyGenerator::galois_keys(&[{step}, ..]) or use power-of-two keys")]
    MissingGaloisKey {
        /// The rotation step (or `conjugate` is reported as step 0 with `conjugation: true`).
        step: i64,
    },
    /// A Galois key was made for lower levels than the ciphertext's.
    #[error("the Galois key for rotation step {step} serves levels up to {key_level}, the ciphertext is at level {level}; generate it for higher levels")]
    GaloisKeyLevel {
        /// The rotation step.
        step: i64,
        /// The highest level the key serves.
        key_level: usize,
        /// The ciphertext's level.
        level: usize,
    },
    /// The relinearization key was made for lower levels than the product's.
    #[error("the relinearization key serves levels up to {key_level}, the product is at level {level}; generate it for higher levels")]
    RelinKeyLevel {
        /// The highest level the key serves.
        key_level: usize,
        /// The product's level.
        level: usize,
    },
    /// The conjugation key was not generated.
    #[error(
        "missing conjugation key; generate it with KeyGenerator::galois_keys_with_conjugation"
    )]
    MissingConjugationKey,
    /// A ciphertext has the wrong number of parts for the operation.
    #[error("ciphertext has {found} parts, the operation needs {expected}; relinearize after multiplying")]
    WrongCiphertextSize {
        /// Parts expected.
        expected: usize,
        /// Parts found.
        found: usize,
    },
    /// More values than slots.
    #[error("{given} values do not fit in {slots} slots (N/2); use a larger ring degree or split the vector")]
    TooManyValues {
        /// Number of values given.
        given: usize,
        /// Number of slots.
        slots: usize,
    },
    /// A value cannot be encoded at this scale and level.
    #[error("value {value} at scale 2^{scale_bits:.1} does not fit the modulus at level {level} ({modulus_bits} bits); lower the scale or the values")]
    EncodingOverflow {
        /// The value.
        value: f64,
        /// log2 of the scale.
        scale_bits: f64,
        /// Level.
        level: usize,
        /// Bits of the modulus at that level.
        modulus_bits: u32,
    },
    /// A scale is not finite, below [`MIN_SCALE`](crate::ckks::params::MIN_SCALE), or not below
    /// the modulus at its level (a product's scale too large to hold any value).
    #[error(
        "scale 2^{scale_bits:.3} is out of range at level {level}: a scale must be finite, at least 1/2 and below \
         the modulus (2^{modulus_bits:.1}); rescale earlier, use a smaller scale or a longer modulus chain"
    )]
    ScaleOutOfRange {
        /// log2 of the scale (NaN or ±inf when the scale was not finite or not positive).
        scale_bits: f64,
        /// Level of the object.
        level: usize,
        /// log2 of the modulus `q_0 ··· q_level`.
        modulus_bits: f64,
    },
    /// Decoding produced a non-finite value: the coefficients exceed the floating-point range.
    #[error(
        "decoding at level {level} produced a non-finite value: the plaintext is not a CKKS encoding at this scale \
         (a garbled ciphertext, or one encrypted under another key)"
    )]
    DecodeOverflow {
        /// Level of the plaintext.
        level: usize,
    },
    /// A value is NaN or infinite.
    #[error("cannot encode a non-finite value ({0})")]
    NonFiniteValue(f64),
    /// A secret key is needed but the context has none.
    #[error(
        "this operation needs the secret key, and the context holds none (it was made public)"
    )]
    MissingSecretKey,
    /// A matrix or vector had the wrong shape.
    #[error("shape mismatch: {0}")]
    ShapeMismatch(String),
    /// A BFV value is outside the plaintext range.
    #[error("value {value} is outside the plaintext range of modulus t = {plain_modulus} (0..t, or (−t/2, t/2] signed); use a larger plaintext modulus")]
    PlainValueOutOfRange {
        /// The value.
        value: i128,
        /// The plaintext modulus `t`.
        plain_modulus: u64,
    },
    /// A BFV ciphertext's noise has used up its budget: it no longer decrypts correctly.
    #[error(
        "the ciphertext's noise budget is exhausted (invariant noise ≥ 1/4 at level {level}); its decryption          would be wrong. Use a larger modulus chain (more levels) or a smaller plaintext modulus, multiply less          deeply, or check `noise_budget` before decrypting"
    )]
    NoiseBudgetExhausted {
        /// Level of the ciphertext.
        level: usize,
    },
    /// Serialized data is malformed.
    #[error("cannot deserialize {what}: {reason}")]
    Deserialize {
        /// The object being read.
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// An error of the lattice arithmetic layer.
    #[error(transparent)]
    Math(#[from] MathError),
    /// A bug in Veil: an internal invariant did not hold. Please report it.
    #[error("internal error (a bug in veil-he): {0}")]
    Internal(&'static str),
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, HeError>;
