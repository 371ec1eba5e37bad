//! Integration tests of the CKKS scheme: every operation decrypts to the plaintext result
//! within its error bound.

mod common;
mod operations;
mod serialization;
mod vector;
