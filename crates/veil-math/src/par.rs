//! Limb-level parallelism: operations on RNS polynomials run over their limbs with `rayon`
//! when there is enough work and more than one thread, and sequentially otherwise (so
//! `RAYON_NUM_THREADS=1` measures true single-threaded cost without scheduling overhead).

use rayon::prelude::*;

/// Below this many coefficient-operations an operation stays on the calling thread.
const PARALLEL_THRESHOLD: usize = 1 << 15;

/// Whether an operation touching `work` coefficients with `limbs` limbs should go parallel.
#[inline]
pub fn should_parallelize(work: usize, limbs: usize) -> bool {
    limbs > 1 && work >= PARALLEL_THRESHOLD && rayon::current_num_threads() > 1
}

/// Calls `f(limb_index, limb)` for each `n`-sized limb of `data`, in parallel when worthwhile.
/// `cost` is a rough per-coefficient cost (1 for an addition, ~20 for an NTT).
pub fn for_each_limb<F>(data: &mut [u64], n: usize, cost: usize, f: F)
where
    F: Fn(usize, &mut [u64]) + Sync + Send,
{
    if n == 0 {
        return;
    }
    let limbs = data.len() / n;
    if should_parallelize(data.len() * cost, limbs) {
        data.par_chunks_mut(n)
            .enumerate()
            .for_each(|(i, l)| f(i, l));
    } else {
        data.chunks_mut(n).enumerate().for_each(|(i, l)| f(i, l));
    }
}

/// Runs `f(i)` for `i in 0..count`, in parallel when worthwhile, collecting the results.
pub fn map_range<T, F>(count: usize, work: usize, f: F) -> Vec<T>
where
    T: Send,
    F: Fn(usize) -> T + Sync + Send,
{
    if should_parallelize(work, count) {
        (0..count).into_par_iter().map(f).collect()
    } else {
        (0..count).map(f).collect()
    }
}
