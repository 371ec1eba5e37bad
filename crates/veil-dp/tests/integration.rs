//! veil-dp's integration tests, one test binary: each module is one file of `tests/`.
//! (One binary links the crate's dependencies once instead of once per file; run one file's
//! tests with `cargo test -p veil-dp --test integration <file>::`.)

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

mod ledger;
mod mechanisms;
mod zcdp_ledger;
