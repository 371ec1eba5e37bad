//! veil-cli's integration tests, one test binary: each module is one file of `tests/`.
//! (One binary links the crate's dependencies once instead of once per file; run one file's
//! tests with `cargo test -p veil-cli --test integration <file>::`.)

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

mod cli;
mod dp_budget;
mod ml;
mod ml_mpc;
mod mpc_attacks;
mod room_restart;
mod serve;
mod tee_attacks;
