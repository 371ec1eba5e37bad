//! The bootstrapping benchmark behind `veil he bench --ops bootstrap` and the
//! `bootstrap_bench` example (what `bench/bootstrap_vs_openfhe.py` runs).

use std::time::Instant;

use rand_core::{RngCore, SeedableRng};

use super::{BootstrapConfig, Bootstrapper};
use crate::ckks::vector::{CkksVector, ProgressFn, VectorContext};
use crate::ckks::CkksContext;
use crate::error::{HeError, Result};

/// What one benchmark run measured.
#[derive(Clone, Debug, PartialEq)]
pub struct BootstrapBench {
    /// Ring degree.
    pub degree: usize,
    /// Slots refreshed.
    pub slots: usize,
    /// The modulus chain (bit sizes, special primes last).
    pub moduli_bits: Vec<u32>,
    /// Timed bootstrappings.
    pub runs: usize,
    /// Seconds to generate every key (public, relinearization, bootstrapping, encapsulation).
    pub keygen_s: f64,
    /// Seconds to encode the linear maps ([`Bootstrapper::new`]).
    pub prepare_s: f64,
    /// Median seconds of one bootstrapping.
    pub median_s: f64,
    /// Mean seconds per phase: ModRaise + SubSum, CoeffsToSlots, EvalMod, SlotsToCoeffs.
    pub phases_s: [f64; 4],
    /// Levels one bootstrapping uses.
    pub depth: usize,
    /// Levels left after it.
    pub levels_after: usize,
    /// `−log2` of the largest error over all slots (values uniform in [−1, 1]).
    pub worst_bits: f64,
    /// `−log2` of the mean absolute error.
    pub mean_bits: f64,
    /// Peak resident memory of the process (Linux `VmHWM`), if known.
    pub peak_memory_bytes: Option<u64>,
}

/// Peak resident memory of this process in bytes, if the platform says.
pub fn peak_memory() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Builds the 128-bit chain of [`BootstrapConfig::secure_parameters`] for `slots` slots of
/// ring degree `degree`, generates the keys (without the power-of-two rotation keys), and
/// bootstraps one encrypted vector of values uniform in `[−1, 1]` `runs` times.
pub fn run(
    degree: usize,
    slots: usize,
    runs: usize,
    progress: ProgressFn,
) -> Result<BootstrapBench> {
    if runs == 0 {
        return Err(HeError::InvalidParameters("at least one run".into()));
    }
    let config = BootstrapConfig::new(slots);
    let params = config.secure_parameters(degree)?;
    let moduli_bits = params.bit_sizes().to_vec();
    let ckks = CkksContext::new(params)?;
    let started = Instant::now();
    let ctx = VectorContext::builder(ckks.clone())
        .bootstrapping(config)
        .power_of_two_rotations(false)
        .progress(progress)
        .build()?;
    let keygen_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let boot = Bootstrapper::new(&ctx, config)?;
    let prepare_s = started.elapsed().as_secs_f64();
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(42);
    let x: Vec<f64> = (0..slots)
        .map(|_| (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0)
        .collect();
    let v = if slots == ckks.slots() {
        CkksVector::encrypt(&ctx, &x)?
    } else {
        CkksVector::encrypt_replicated(&ctx, &x, false)?
    };
    let mut totals = Vec::with_capacity(runs);
    let mut phases_s = [0f64; 4];
    let mut last = None;
    for _ in 0..runs {
        let t = Instant::now();
        let (fresh, report) = boot.bootstrap_with_report(&v)?;
        totals.push(t.elapsed().as_secs_f64());
        for (p, s) in phases_s.iter_mut().zip(report.seconds) {
            *p += s / runs as f64;
        }
        last = Some(fresh);
    }
    let out = last.ok_or(HeError::Internal("no bootstrapping run"))?;
    let got = out.decrypt_unflooded_for_key_holder_only()?;
    let errors: Vec<f64> = got.iter().zip(&x).map(|(g, w)| (g - w).abs()).collect();
    let worst = errors.iter().copied().fold(0.0, f64::max);
    let mean = errors.iter().sum::<f64>() / errors.len().max(1) as f64;
    totals.sort_by(f64::total_cmp);
    Ok(BootstrapBench {
        degree,
        slots,
        moduli_bits,
        runs,
        keygen_s,
        prepare_s,
        median_s: totals[totals.len() / 2],
        phases_s,
        depth: boot.depth(),
        levels_after: out.level(),
        worst_bits: -worst.log2(),
        mean_bits: -mean.log2(),
        peak_memory_bytes: peak_memory(),
    })
}
