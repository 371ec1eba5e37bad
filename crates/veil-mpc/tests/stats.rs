//! Joint statistics at ordinary magnitudes (issue 12, item 23): the variance of a few hundred
//! values in [-1024, 1024] overflowed in its final scaling, the squares of salaries
//! (|x| > 32,768) overflowed before truncation, and a large sum overflowed the mean. Each
//! result must be right to within the documented error, or refused with a clear error —
//! never a wrong number.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

use veil_mpc::memory::run;
use veil_mpc::{FixedPoint, MpcError};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// (mean, variance) as party 0 learns them, for columns split over three parties.
fn joint(cols: Vec<Vec<f64>>, max_abs: f64) -> veil_mpc::Result<(f64, f64, f64)> {
    let out = run(3, FixedPoint::default(), move |p| {
        let mut parts = Vec::new();
        for (owner, col) in cols.iter().enumerate() {
            parts.push(p.input(owner, (p.id() == owner).then_some(&col[..]), col.len())?);
        }
        let all = p.concat(&parts);
        let s = p.statistics(&all, max_abs, -1.0, 1.0, 2)?;
        let v = p.open(&p.concat(&[s.sum, s.mean, s.variance]))?;
        Ok((v[0], v[1], v[2]))
    })?;
    Ok(out[0])
}

/// The exact sum, mean and sample variance of the fixed-point encodings of `cols`.
fn plain(cols: &[Vec<f64>]) -> (f64, f64, f64) {
    let q: Vec<f64> = cols
        .concat()
        .iter()
        .map(|v| (v * 65536.0).round() / 65536.0)
        .collect();
    let n = q.len() as f64;
    let sum: f64 = q.iter().sum();
    let mean = sum / n;
    let var = q.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (sum, mean, var)
}

fn split(values: Vec<f64>) -> Vec<Vec<f64>> {
    let third = values.len() / 3;
    vec![
        values[..third].to_vec(),
        values[third..2 * third].to_vec(),
        values[2 * third..].to_vec(),
    ]
}

fn check(cols: Vec<Vec<f64>>, max_abs: f64) {
    let (sum, mean, var) = plain(&cols);
    let (s, m, v) = joint(cols, max_abs).unwrap();
    assert!((s - sum).abs() <= 1e-3, "sum {s} vs {sum}");
    assert!(
        (m - mean).abs() <= 1e-3 + 1e-9 * mean.abs(),
        "mean {m} vs {mean}"
    );
    assert!(
        (v - var).abs() <= 1e-4 * var + 1e-2,
        "variance {v} vs {var}"
    );
}

#[test]
fn variance_of_300_values_in_plus_minus_1024_is_right() {
    // Σ(x - μ)² ≈ 10^8: beyond the ≈ 5·10^7 where the final scaling used to overflow.
    let mut rng = Rng(11);
    let values: Vec<f64> = (0..300).map(|_| rng.next() * 2048.0 - 1024.0).collect();
    check(split(values), 1024.0);
}

#[test]
fn variance_of_900_salaries_is_right() {
    // |x| > 32,768: the squares used to overflow before truncation.
    let mut rng = Rng(5);
    let values: Vec<f64> = (0..900)
        .map(|_| (40_000.0 + rng.next() * 20_000.0).round())
        .collect();
    check(split(values), 100_000.0);
}

#[test]
fn mean_of_many_large_values_is_right() {
    // Σx ≈ 3·10^8: the mean's scaling by 1/n used to overflow.
    let mut rng = Rng(3);
    let values: Vec<f64> = (0..3000)
        .map(|_| 90_000.0 + rng.next() * 20_000.0)
        .collect();
    check(split(values), 120_000.0);
}

#[test]
fn small_values_keep_their_precision_under_a_loose_bound() {
    // The default bound of the CLI (10^6) on data in [20, 80].
    let mut rng = Rng(7);
    let values: Vec<f64> = (0..450).map(|_| 20.0 + rng.next() * 60.0).collect();
    let cols = split(values);
    let (_, mean, var) = plain(&cols);
    let (_, m, v) = joint(cols, 1e6).unwrap();
    assert!((m - mean).abs() < 1e-3, "{m} vs {mean}");
    assert!((v - var).abs() < 1e-3 * var, "{v} vs {var}");
}

#[test]
fn values_beyond_the_declared_bound_are_refused_not_miscomputed() {
    let mut rng = Rng(9);
    let mut values: Vec<f64> = (0..60).map(|_| rng.next() * 100.0).collect();
    values[17] = 100.5;
    values[40] = -250.0;
    let e = joint(split(values), 100.0).unwrap_err();
    match &e {
        MpcError::OutOfRange { outside, max_abs } => {
            assert_eq!((*outside, *max_abs), (2, 100.0), "{e}");
        }
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().contains("2 values"), "{e}");
    // A bound the fixed-point format cannot carry is refused before anything runs.
    let e = joint(split(vec![1.0; 30]), 1e9).unwrap_err();
    assert!(
        matches!(e, MpcError::InvalidParameter(ref m) if m.contains("max_abs")),
        "{e}"
    );
}

#[test]
fn values_at_the_largest_bound_are_right() {
    // The edge of the documented range: |x| up to max_statistics_bound(16) ≈ 2.97·10^6.
    let bound = veil_mpc::ml::max_statistics_bound(16);
    assert!(bound > 2.9e6, "{bound}");
    let mut rng = Rng(13);
    let values: Vec<f64> = (0..2000)
        .map(|i| {
            let v = (0.9 + 0.1 * rng.next()) * bound;
            if i % 2 == 0 {
                v
            } else {
                -v
            }
        })
        .collect();
    check(split(values), bound);
}

#[test]
fn the_mean_of_large_values_is_right() {
    // `Party::mean` scaled its sum as the statistics did (Σx ≈ 3·10^8 overflowed).
    let mut rng = Rng(17);
    let values: Vec<f64> = (0..3000)
        .map(|_| 90_000.0 + rng.next() * 20_000.0)
        .collect();
    let (_, want, _) = plain(std::slice::from_ref(&values));
    let out = run(2, FixedPoint::default(), move |p| {
        let x = p.input(0, (p.id() == 0).then_some(&values[..]), values.len())?;
        let m = p.mean(&x)?;
        p.open(&m)
    })
    .unwrap();
    assert!((out[0][0] - want).abs() < 1e-3, "{} vs {want}", out[0][0]);
}

#[test]
fn mul_public_wide_keeps_28_bits_across_the_ring() {
    // Ring values up to ±2^60 times constants large and small, as long as the product fits.
    let xs: Vec<i64> = vec![
        0,
        1,
        -1,
        12_345,
        -987_654_321,
        1 << 40,
        -(1 << 45) + 17,
        (1 << 60) - 1,
        -(1 << 60),
    ];
    for c in [1.0 / 3.0, -0.7, 1e-6, 1.0 / 899.0, 3.5, -1000.25] {
        let raw: Vec<u64> = xs
            .iter()
            .map(|&x| {
                let y = x as f64 * c;
                if y.abs() < 2f64.powi(60) {
                    x as u64
                } else {
                    (x >> 12) as u64
                }
            })
            .collect();
        let want: Vec<f64> = raw.iter().map(|&x| x as i64 as f64 * c).collect();
        let got = run(2, FixedPoint::default(), move |p| {
            let x = p.input_raw(0, (p.id() == 0).then_some(&raw[..]), raw.len())?;
            let y = p.mul_public_wide(&x, c)?;
            p.open_raw(&y)
        })
        .unwrap();
        for (g, w) in got[0].iter().zip(&want) {
            let g = *g as i64 as f64;
            assert!(
                (g - w).abs() <= 3.0 + w.abs() * 2f64.powi(-27),
                "c = {c}: {g} vs {w}"
            );
        }
    }
}
