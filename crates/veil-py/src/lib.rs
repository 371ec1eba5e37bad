//! Veil from Python: the native half of the `veil` package.
//!
//! This crate is a PyO3 extension module that Python imports as `veil._native`; the Python
//! half (`python/veil/`) gives it a TenSEAL- and OpenDP-like surface with numpy arrays and
//! pandas DataFrames. Every long computation (key generation, homomorphic operations, SQL
//! queries) releases the GIL. Every Rust error becomes a Python exception of the protection it
//! comes from ([`errors`]), with the Rust error's message.
//!
//! Build and install it with `pip install ./crates/veil-py` (maturin, from PyPI). The test
//! suite (`cargo test --workspace`) builds it as part of the workspace and runs the Python
//! tests and tutorial notebooks against that build (`tests/python.rs`).

/// mimalloc keeps freed pages for reuse, as in the `veil` binary: homomorphic operations
/// allocate and free many polynomial-sized buffers, which glibc's allocator hands back to the
/// kernel and page-faults in again. Only Rust's allocations in the module use it (Python's
/// objects keep Python's allocator).
#[cfg(not(test))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

// The module is compiled out of the unit-test harness: an extension module leaves Python's
// symbols to the interpreter that loads it, so a test executable could not link it.
#[cfg(not(test))]
mod bfv;
#[cfg(not(test))]
mod dp;
#[cfg(not(test))]
pub mod errors;
#[cfg(not(test))]
mod he;
#[cfg(not(test))]
mod ml;
#[cfg(not(test))]
mod mpc;
#[cfg(not(test))]
mod room;
#[cfg(not(test))]
mod tee;

#[cfg(not(test))]
mod module {
    use pyo3::prelude::*;

    /// `veil._native`: the classes and functions the `veil` package wraps.
    #[pymodule]
    #[pyo3(name = "_native")]
    fn native(m: &Bound<'_, PyModule>) -> PyResult<()> {
        let py = m.py();
        crate::errors::register(m)?;
        let he = PyModule::new(py, "he")?;
        crate::he::register(&he)?;
        crate::bfv::register(&he)?;
        m.add_submodule(&he)?;
        let dp = PyModule::new(py, "dp")?;
        crate::dp::register(&dp)?;
        m.add_submodule(&dp)?;
        let ml = PyModule::new(py, "ml")?;
        crate::ml::register(&ml)?;
        m.add_submodule(&ml)?;
        let tee = PyModule::new(py, "tee")?;
        crate::tee::register(&tee)?;
        m.add_submodule(&tee)?;
        let mpc = PyModule::new(py, "mpc")?;
        crate::mpc::register(&mpc)?;
        m.add_submodule(&mpc)?;
        m.add("__version__", env!("CARGO_PKG_VERSION"))?;
        Ok(())
    }
}

/// Little-endian `f64` bytes (what numpy's `tobytes()` gives for `<f8`) to values.
pub fn f64s_from_le_bytes(bytes: &[u8]) -> Option<Vec<f64>> {
    if !bytes.len().is_multiple_of(8) {
        return None;
    }
    Some(
        bytes
            .chunks_exact(8)
            .map(|c| {
                let mut b = [0u8; 8];
                b.copy_from_slice(c);
                f64::from_le_bytes(b)
            })
            .collect(),
    )
}

/// Values to little-endian `f64` bytes (numpy reads them with `frombuffer(..., '<f8')`).
pub fn f64s_to_le_bytes(values: &[f64]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f64_bytes_round_trip_and_odd_lengths_are_refused() {
        let v = [1.5, -0.0, f64::MAX, 1e-300];
        let b = f64s_to_le_bytes(&v);
        assert_eq!(b.len(), 32);
        assert_eq!(f64s_from_le_bytes(&b), Some(v.to_vec()));
        assert_eq!(f64s_from_le_bytes(&b[..7]), None);
        assert_eq!(f64s_from_le_bytes(&[]), Some(vec![]));
    }
}
