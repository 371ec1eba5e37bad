//! veil-server's integration tests, one test binary: each module is one file of `tests/`.
//! (One binary links the crate's dependencies once instead of once per file; run one file's
//! tests with `cargo test -p veil-server --test integration <file>::`.)

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

mod browser;
mod console;
mod dp_service;
mod inference;
mod metrics;
mod mpc_coord;
mod openapi;
mod room;
mod serve_room;
mod serve_tee;
mod service;
mod site;
mod tls;
