//! Bit-sliced vectors: the bits of `n` ring elements as 64 *planes* of `⌈n / 64⌉` words each,
//! plane `j` holding bit `j` of every element (element `i` at bit `i mod 64` of word `i / 64`).
//! XOR-shared planes let one 64-bit AND evaluate a gate for 64 elements at once.

use rayon::prelude::*;

/// Words per plane for `n` elements.
pub fn words(n: usize) -> usize {
    n.div_ceil(64)
}

/// Transposes a 64 × 64 bit matrix in place: bit `k` of word `j` becomes bit `j` of word `k`.
/// (Recursive block swap: the off-diagonal 32 × 32 blocks, then 16 × 16 inside each, …)
pub fn transpose64(a: &mut [u64; 64]) {
    let mut j = 32;
    let mut m: u64 = 0x0000_0000_FFFF_FFFF;
    while j != 0 {
        let mut k = 0;
        while k < 64 {
            let t = ((a[k] >> j) ^ a[k + j]) & m;
            a[k] ^= t << j;
            a[k + j] ^= t;
            k = (k + j + 1) & !j;
        }
        j >>= 1;
        m ^= m << j;
    }
}

/// The 64 bit planes of `values` (plane-major: plane `j` is `out[j * w..(j + 1) * w]`).
pub fn to_planes(values: &[u64]) -> Vec<u64> {
    let w = words(values.len());
    let mut blocks: Vec<[u64; 64]> = values
        .par_chunks(64)
        .map(|chunk| {
            let mut b = [0u64; 64];
            b[..chunk.len()].copy_from_slice(chunk);
            transpose64(&mut b);
            b
        })
        .collect();
    let mut out = vec![0u64; 64 * w];
    for (word, b) in blocks.iter_mut().enumerate() {
        for (j, plane_word) in b.iter().enumerate() {
            out[j * w + word] = *plane_word;
        }
    }
    out
}

/// Bit `i` of a plane.
pub fn bit(plane: &[u64], i: usize) -> u64 {
    (plane[i / 64] >> (i % 64)) & 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_matches_the_definition() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut a = [0u64; 64];
        for w in &mut a {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *w = x;
        }
        let before = a;
        transpose64(&mut a);
        for (j, row) in a.iter().enumerate() {
            for (k, col) in before.iter().enumerate() {
                assert_eq!((row >> k) & 1, (col >> j) & 1, "bit ({j}, {k})");
            }
        }
        transpose64(&mut a);
        assert_eq!(a, before, "an involution");
    }

    #[test]
    fn planes_hold_each_elements_bits() {
        let values: Vec<u64> = (0..150u64)
            .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
            .collect();
        let w = words(values.len());
        let planes = to_planes(&values);
        assert_eq!(planes.len(), 64 * w);
        for (i, v) in values.iter().enumerate() {
            for j in 0..64 {
                assert_eq!(bit(&planes[j * w..(j + 1) * w], i), (v >> j) & 1);
            }
        }
        // Padding bits are zero.
        assert_eq!(planes[w - 1] >> (150 % 64), 0);
    }
}
