//! The error type of `veil-math`.

/// Everything that can go wrong in the lattice arithmetic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MathError {
    /// The ring degree is not a supported power of two.
    #[error("ring degree {degree} is not supported: use a power of two between {min} and {max}")]
    UnsupportedDegree {
        /// The degree asked for.
        degree: usize,
        /// Smallest supported degree.
        min: usize,
        /// Largest supported degree.
        max: usize,
    },
    /// A modulus is not usable (not prime, too large, not NTT friendly, zero).
    #[error("modulus {modulus} is not usable: {reason}")]
    InvalidModulus {
        /// The offending modulus.
        modulus: u64,
        /// Why it cannot be used.
        reason: &'static str,
    },
    /// Not enough primes of the requested size exist (q ≡ 1 mod 2N).
    #[error("only {found} NTT-friendly primes of {bits} bits exist for 2N = {two_n}; {needed} were requested")]
    NotEnoughPrimes {
        /// Requested bit size.
        bits: u32,
        /// The NTT order 2N.
        two_n: u64,
        /// How many were requested.
        needed: usize,
        /// How many were found.
        found: usize,
    },
    /// A prime bit size is outside the supported range.
    #[error("prime bit size {bits} is outside the supported range {min}..={max}")]
    PrimeBitsOutOfRange {
        /// Requested bit size.
        bits: u32,
        /// Smallest supported.
        min: u32,
        /// Largest supported.
        max: u32,
    },
    /// Two polynomials do not live over the same RNS basis.
    #[error("RNS basis mismatch: expected {expected} limbs {expected_primes:?}, found {found} limbs {found_primes:?}")]
    BasisMismatch {
        /// Number of limbs expected.
        expected: usize,
        /// Prime indices expected.
        expected_primes: Vec<usize>,
        /// Number of limbs found.
        found: usize,
        /// Prime indices found.
        found_primes: Vec<usize>,
    },
    /// An operation was given a polynomial in the wrong representation.
    #[error("polynomial is in {found:?} form, the operation needs {expected:?} form")]
    RepresentationMismatch {
        /// The form the operation needs.
        expected: crate::poly::Representation,
        /// The form it was given.
        found: crate::poly::Representation,
    },
    /// Two polynomials come from different ring contexts.
    #[error("polynomials come from different ring contexts (different degree or primes)")]
    ContextMismatch,
    /// A Galois element is not an odd residue modulo 2N.
    #[error("Galois element {element} is not odd modulo 2N = {two_n}")]
    InvalidGaloisElement {
        /// The element.
        element: u64,
        /// 2N.
        two_n: u64,
    },
    /// A prime index is outside the context.
    #[error("prime index {index} is outside the context's {count} primes")]
    PrimeIndexOutOfRange {
        /// The index.
        index: usize,
        /// Number of primes in the context.
        count: usize,
    },
    /// A buffer had the wrong length.
    #[error("buffer length {found} does not match the expected {expected}")]
    LengthMismatch {
        /// Expected length.
        expected: usize,
        /// Found length.
        found: usize,
    },
    /// A bug in Veil: an internal invariant did not hold. Please report it.
    #[error("internal error (a bug in veil-math): {0}")]
    Internal(&'static str),
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, MathError>;
