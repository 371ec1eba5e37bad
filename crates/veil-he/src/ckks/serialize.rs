//! Serialization.
