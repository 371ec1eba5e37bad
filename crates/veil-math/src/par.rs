//! Limb-level parallelism: operations on RNS polynomials run over their limbs with `rayon`
//! when there is enough work and more than one thread, and sequentially otherwise (so
//! `RAYON_NUM_THREADS=1` measures true single-threaded cost without scheduling overhead).

use rayon::prelude::*;

/// Below this much work per task (in the units of `cost` below: an NTT of 8192 words is
/// 2^18, about 20 µs here), an operation inside the rayon pool stays on its thread. Handing
/// a task to another worker costs tens of microseconds (a wake-up, often through the
/// hypervisor on a small VM). Measured on this project's 2-core machine (server time per
/// image of the digits models, `he_digits`): 2^18 gave logistic regression 6.3 ms, the MLP
/// 17.5 ms and the CNN (N = 16384) 114 ms; 2^19 gave 5.4, 18.7 and 124 ms; the old
/// threshold of 2^15 in total (any split) 8.1, 21.7 and 120 ms.
const MIN_TASK_WORK: usize = 1 << 18;

/// From a thread outside the rayon pool (a program's main thread), a parallel region also
/// blocks the caller and wakes it afterwards: tasks must be this many times larger to pay
/// (measured at N = 8192: splitting a rescale's or a plaintext product's limbs from the main
/// thread made them 10–50% *slower*). A sequence of many operations (a model evaluation)
/// pays less run inside the pool ([`in_pool`]).
const OUTSIDE_POOL_FACTOR: usize = 8;

/// Whether an operation of total `work` split into `tasks` equal tasks (limbs, digits, …)
/// should go parallel: more than one task, each worth a hand-over, and more than one thread.
#[inline]
pub fn should_parallelize(work: usize, tasks: usize) -> bool {
    if tasks < 2 || rayon::current_num_threads() < 2 {
        return false;
    }
    let min = if rayon::current_thread_index().is_some() {
        MIN_TASK_WORK
    } else {
        MIN_TASK_WORK * OUTSIDE_POOL_FACTOR
    };
    work / tasks >= min
}

/// Runs `f` on a thread of the rayon pool (the calling thread if it already is one), so that
/// the parallel regions inside it hand work over without blocking and waking a thread
/// outside the pool each time. For a sequence of many operations (a model evaluation).
pub fn in_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_num_threads() < 2 || rayon::current_thread_index().is_some() {
        return f();
    }
    rayon::scope(|_| f())
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
