//! Integration tests of the CKKS scheme: every operation decrypts to the plaintext result
//! within its error bound.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

mod adversary;
mod bootstrap;
mod common;
mod operations;
mod properties;
mod serialization;
mod vector;
