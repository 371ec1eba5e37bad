//! Serialization tests.
