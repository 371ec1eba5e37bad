//! Vectors.
/// x
pub struct CkksVector;
/// y
pub struct VectorContext;
