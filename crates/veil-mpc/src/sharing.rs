//! Additive secret sharing over `Z_2^64`.

use rand_core::RngCore;

/// Splits `values` into `n` additive shares (one vector per party), uniformly random except
/// that they sum to `values`.
pub fn share(values: &[u64], n: usize, rng: &mut impl RngCore) -> Vec<Vec<u64>> {
    let mut shares: Vec<Vec<u64>> = (0..n.saturating_sub(1))
        .map(|_| (0..values.len()).map(|_| rng.next_u64()).collect())
        .collect();
    let last = values
        .iter()
        .enumerate()
        .map(|(i, v)| shares.iter().fold(*v, |acc, s| acc.wrapping_sub(s[i])))
        .collect();
    shares.push(last);
    shares
}

/// Adds shares element-wise (reconstruction).
pub fn reconstruct(shares: &[Vec<u64>]) -> Vec<u64> {
    let len = shares.first().map_or(0, Vec::len);
    (0..len)
        .map(|i| {
            shares.iter().fold(0u64, |acc, s| {
                acc.wrapping_add(s.get(i).copied().unwrap_or(0))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::SeedableRng;

    #[test]
    fn shares_reconstruct_and_look_random() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
        let values = [0u64, 1, u64::MAX, 42];
        for n in [2, 3, 5] {
            let s = share(&values, n, &mut rng);
            assert_eq!(s.len(), n);
            assert_eq!(reconstruct(&s), values);
            // Any n-1 shares are independent of the value: the first share of 0 is not 0.
            assert_ne!(s[0][0], 0);
        }
    }
}
