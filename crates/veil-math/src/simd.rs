//! Runtime-dispatched vectorization for the hot element-wise loops.
//!
//! The crate is compiled for the baseline x86-64 target, so plain loops only use SSE2.
//! [`vectorize`] runs a closure inside a function compiled for the best instruction set the
//! CPU has (AVX-512, AVX2, …; detected at run time through `pulp`, the same dispatcher
//! `tfhe-ntt` uses), so that LLVM auto-vectorizes the loop for it.

/// Runs `f` compiled for the widest SIMD instruction set available at run time.
#[inline(always)]
pub fn vectorize<R>(f: impl FnOnce() -> R) -> R {
    pulp::Arch::new().dispatch(f)
}
