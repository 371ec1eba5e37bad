//! Veil's fuzz targets: one module per parser of untrusted input, each with a `run` function
//! that must never panic, whatever bytes it is given.
//!
//! The same functions run two ways:
//! - `cargo fuzz run <target>` (see README.md): the binaries under `fuzz_targets/` hand
//!   libFuzzer's inputs to `run`, with coverage guidance;
//! - `cargo test -p veil-fuzz` (part of the workspace tests, so CI builds and runs every
//!   target on a stable toolchain): `tests/smoke.rs` feeds each target a fixed, seeded set of
//!   pseudo-random inputs and mutations of valid ones.

pub mod ckks_ciphertext;
pub mod ckks_keys;
pub mod dp_sql_query;
pub mod edits;
pub mod mpc_messages;
pub mod onnx_import;
pub mod tee_evidence;
pub mod tee_room;
pub mod tee_service;

/// A target's entry point.
pub type Target = fn(&[u8]);

/// Every target: its name (as `cargo fuzz run` knows it) and its entry point.
pub const TARGETS: &[(&str, Target)] = &[
    ("ckks_ciphertext", ckks_ciphertext::run),
    ("ckks_keys", ckks_keys::run),
    ("dp_sql_query", dp_sql_query::run),
    ("mpc_messages", mpc_messages::run),
    ("onnx_import", onnx_import::run),
    ("tee_evidence", tee_evidence::run),
    ("tee_room", tee_room::run),
    ("tee_service", tee_service::run),
];
