//! veil-dp-sql's integration tests, one test binary: each module is one file of `tests/`.
//! (One binary links the crate's dependencies once instead of once per file; run one file's
//! tests with `cargo test -p veil-dp-sql --test integration <file>::`.)

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

mod accounting;
mod attacks;
mod autobounds;
mod engine;
mod gaussian;
