//! Access to the recorded evidence shared by the integration tests.

#![allow(dead_code, reason = "each test binary uses a part")]

use std::path::PathBuf;

/// The recorded evidence is committed with veil-attest's tests in `tests/vectors/` (others'
/// published data, with their licences in `tests/vectors/NOTICE`); `VEIL_VECTORS` points
/// elsewhere. veil-server's tests include this module too, hence the path through `..`.
/// A missing folder is a failure, not a skip: these tests guard the verifiers.
pub fn vectors_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("VEIL_VECTORS").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../veil-attest/tests/vectors"),
        PathBuf::from,
    );
    assert!(
        dir.join("dcap").is_dir(),
        "recorded evidence not found at {} (set VEIL_VECTORS to a copy of tests/vectors)",
        dir.display()
    );
    Some(dir)
}

/// Reads `dcap/sgx_quote`-style names; `None` (test skipped) without the vectors folder.
pub fn vector(name: &str) -> Option<Vec<u8>> {
    let dir = vectors_dir()?;
    match std::fs::read(dir.join(name)) {
        Ok(v) => Some(v),
        Err(e) => panic!("{}: {e}", dir.join(name).display()),
    }
}
