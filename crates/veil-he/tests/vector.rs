//! Vector tests.
