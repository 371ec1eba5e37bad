//! Access to the recorded evidence shared by the integration tests.

#![allow(dead_code, reason = "each test binary uses a part")]

use std::path::PathBuf;

/// The recorded evidence lives beside the repository in `../shared/vectors/` (others'
/// published data, not copied here); `VEIL_VECTORS` points elsewhere. `None`, with a line
/// saying the test is skipped, when it is absent.
pub fn vectors_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("VEIL_VECTORS").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vectors"),
        PathBuf::from,
    );
    if dir.join("dcap").is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "skipped: recorded evidence not found at {} (set VEIL_VECTORS to the shared/vectors folder)",
            dir.display()
        );
        None
    }
}

/// Reads `dcap/sgx_quote`-style names; `None` (test skipped) without the vectors folder.
pub fn vector(name: &str) -> Option<Vec<u8>> {
    let dir = vectors_dir()?;
    match std::fs::read(dir.join(name)) {
        Ok(v) => Some(v),
        Err(e) => panic!("{}: {e}", dir.join(name).display()),
    }
}
