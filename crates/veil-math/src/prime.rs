//! NTT-friendly prime generation: primes `q ≡ 1 (mod 2N)` of a requested bit size.

use crate::error::{MathError, Result};
use crate::modulus::Modulus;

/// Smallest prime bit size accepted by [`generate_ntt_primes`].
pub const MIN_PRIME_BITS: u32 = 17;
/// Largest prime bit size accepted by [`generate_ntt_primes`] (as in SEAL).
pub const MAX_PRIME_BITS: u32 = 61;

/// Deterministic Miller–Rabin primality test for 64-bit integers.
pub fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    for p in [2u64, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37] {
        if n.is_multiple_of(p) {
            return n == p;
        }
    }
    let mut d = n - 1;
    let mut s = 0;
    while d.is_multiple_of(2) {
        d /= 2;
        s += 1;
    }
    let mulmod = |a: u64, b: u64| (u128::from(a) * u128::from(b) % u128::from(n)) as u64;
    let powmod = |mut a: u64, mut e: u64| {
        let mut r = 1u64;
        while e > 0 {
            if e & 1 == 1 {
                r = mulmod(r, a);
            }
            a = mulmod(a, a);
            e >>= 1;
        }
        r
    };
    // These bases are a proven deterministic set for all n < 2^64.
    'witness: for a in [2u64, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37] {
        let mut x = powmod(a, d);
        if x == 1 || x == n - 1 {
            continue;
        }
        for _ in 1..s {
            x = mulmod(x, x);
            if x == n - 1 {
                continue 'witness;
            }
        }
        return false;
    }
    true
}

/// Generates `count` distinct primes of exactly `bits` bits with `q ≡ 1 (mod two_n)`, in
/// decreasing order starting just below `2^bits`, skipping any prime in `exclude`.
///
/// This is how SEAL's `CoeffModulus::Create` picks primes for a list of bit sizes.
pub fn generate_ntt_primes(
    bits: u32,
    count: usize,
    two_n: u64,
    exclude: &[u64],
) -> Result<Vec<u64>> {
    if !(MIN_PRIME_BITS..=MAX_PRIME_BITS).contains(&bits) {
        return Err(MathError::PrimeBitsOutOfRange {
            bits,
            min: MIN_PRIME_BITS,
            max: MAX_PRIME_BITS,
        });
    }
    if two_n < 2 || !two_n.is_power_of_two() || two_n >= 1u64 << (bits - 1) {
        return Err(MathError::InvalidModulus {
            modulus: two_n,
            reason: "2N must be a power of two well below 2^bits",
        });
    }
    let lower = 1u64 << (bits - 1);
    let mut found = Vec::with_capacity(count);
    // Largest candidate of the form k·2N + 1 below 2^bits.
    let mut candidate = ((1u64 << bits) - 1) / two_n * two_n + 1;
    while found.len() < count && candidate > lower {
        if is_prime(candidate) && !exclude.contains(&candidate) {
            found.push(candidate);
        }
        candidate -= two_n;
    }
    if found.len() < count {
        return Err(MathError::NotEnoughPrimes {
            bits,
            two_n,
            needed: count,
            found: found.len(),
        });
    }
    Ok(found)
}

/// Generates primes for a list of bit sizes (SEAL's `CoeffModulus::Create(N, bit_sizes)`):
/// all distinct, each `≡ 1 (mod 2N)`, returned in the order of `bit_sizes`.
pub fn primes_for_bit_sizes(degree: usize, bit_sizes: &[u32]) -> Result<Vec<Modulus>> {
    let two_n = 2 * degree as u64;
    let mut out: Vec<u64> = Vec::with_capacity(bit_sizes.len());
    for &bits in bit_sizes {
        let p = generate_ntt_primes(bits, 1, two_n, &out)?;
        out.extend(p);
    }
    out.into_iter().map(Modulus::new).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn miller_rabin_agrees_with_trial_division() {
        let naive = |n: u64| {
            n >= 2
                && (2..)
                    .take_while(|d| d * d <= n)
                    .all(|d| !n.is_multiple_of(d))
        };
        for n in 0..5000u64 {
            assert_eq!(is_prime(n), naive(n), "n = {n}");
        }
        // Known 64-bit values.
        assert!(is_prime(18_446_744_073_709_551_557));
        assert!(!is_prime(18_446_744_073_709_551_555));
        // Strong pseudoprime to many bases.
        assert!(!is_prime(3_825_123_056_546_413_051));
    }

    #[test]
    fn primes_are_ntt_friendly_distinct_and_sized() {
        let n = 1 << 13;
        let ps = primes_for_bit_sizes(n, &[60, 40, 40, 40, 60]).unwrap();
        for (p, bits) in ps.iter().zip([60, 40, 40, 40, 60]) {
            assert_eq!(p.bits(), bits);
            assert_eq!(p.value() % (2 * n as u64), 1);
            assert!(is_prime(p.value()));
        }
        let mut v: Vec<u64> = ps.iter().map(|p| p.value()).collect();
        v.sort_unstable();
        v.dedup();
        assert_eq!(v.len(), 5);
    }

    #[test]
    fn errors_are_reported() {
        assert!(matches!(
            generate_ntt_primes(10, 1, 64, &[]),
            Err(MathError::PrimeBitsOutOfRange { .. })
        ));
        assert!(matches!(
            generate_ntt_primes(20, 1000, 1 << 14, &[]),
            Err(MathError::NotEnoughPrimes { .. })
        ));
    }
}
