//! Every operation against plaintext, within fixed-point error, with 2, 3 and 5 parties over
//! in-memory channels.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

use std::time::Duration;

use veil_mpc::memory::{run, run_with_timeout};
use veil_mpc::{FixedPoint, MpcError};

const ULP: f64 = 1.0 / 65536.0;

fn xs(n: usize, seed: u64) -> Vec<f64> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * 200.0
        })
        .collect()
}

fn close(got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol,
            "element {i}: {g} vs {w} (tolerance {tol})"
        );
    }
}

#[test]
fn arithmetic_matches_plaintext_for_2_3_and_5_parties() {
    for n in [2usize, 3, 5] {
        let x = xs(257, 1);
        let y = xs(257, 2);
        let (x2, y2) = (x.clone(), y.clone());
        let out = run(n, FixedPoint::default(), move |p| {
            // Party 0 holds x, the last party holds y.
            let last = p.parties() - 1;
            let sx = p.input(0, (p.id() == 0).then_some(&x2[..]), x2.len())?;
            let sy = p.input(last, (p.id() == last).then_some(&y2[..]), y2.len())?;
            let sum = p.add(&sx, &sy)?;
            let diff = p.sub(&sx, &sy)?;
            let prod = p.mul(&sx, &sy)?;
            let sq = p.square(&sx)?;
            let scaled = p.mul_public(&sx, &vec![-0.75; x2.len()])?;
            let shifted = p.add_public(&sx, &vec![1.5; x2.len()])?;
            let dot = p.dot(&sx, &sy)?;
            let total = p.sum(&sx);
            Ok((
                p.open(&sum)?,
                p.open(&diff)?,
                p.open(&prod)?,
                p.open(&sq)?,
                p.open(&scaled)?,
                p.open(&shifted)?,
                p.open(&dot)?,
                p.open(&total)?,
                p.reveal_to(&prod, 1)?,
                p.stats().clone(),
            ))
        })
        .unwrap();
        assert_eq!(out.len(), n);
        for (id, r) in out.iter().enumerate() {
            let q = |v: f64| (v * 65536.0).round() / 65536.0;
            let (qx, qy): (Vec<f64>, Vec<f64>) = (
                x.iter().map(|v| q(*v)).collect(),
                y.iter().map(|v| q(*v)).collect(),
            );
            close(
                &r.0,
                &qx.iter().zip(&qy).map(|(a, b)| a + b).collect::<Vec<_>>(),
                1e-12,
            );
            close(
                &r.1,
                &qx.iter().zip(&qy).map(|(a, b)| a - b).collect::<Vec<_>>(),
                1e-12,
            );
            close(
                &r.2,
                &qx.iter().zip(&qy).map(|(a, b)| a * b).collect::<Vec<_>>(),
                1.01 * ULP,
            );
            close(
                &r.3,
                &qx.iter().map(|a| a * a).collect::<Vec<_>>(),
                1.01 * ULP,
            );
            close(
                &r.4,
                &qx.iter().map(|a| a * -0.75).collect::<Vec<_>>(),
                1.01 * ULP,
            );
            close(&r.5, &qx.iter().map(|a| a + 1.5).collect::<Vec<_>>(), 1e-12);
            let dot: f64 = qx.iter().zip(&qy).map(|(a, b)| a * b).sum();
            close(&r.6, &[dot], 1.01 * ULP);
            close(&r.7, &[qx.iter().sum::<f64>()], 1e-9);
            // Revealed to party 1 only.
            assert_eq!(r.8.is_some(), id == 1);
            if let Some(v) = &r.8 {
                assert_eq!(v, &r.2);
            }
            // A fixed-point product is two rounds; sharing an input is one.
            let stats = &r.9;
            assert_eq!(stats.ops["mul"].rounds, 2);
            assert_eq!(stats.ops["mul"].calls, 1);
            assert_eq!(
                stats.ops["dot"].rounds, 2,
                "dot is one matrix triple and a truncation"
            );
            assert!(stats.total().bytes_sent > 0);
            // Only the last party receives dealer corrections.
            assert_eq!(stats.total().dealer_bytes > 0, id == n - 1);
        }
    }
}

#[test]
fn matrix_products_and_negative_values() {
    let (m, k, n) = (5, 7, 3);
    let a = xs(m * k, 3);
    let b = xs(k * n, 4);
    let (a2, b2) = (a.clone(), b.clone());
    let out = run(3, FixedPoint::default(), move |p| {
        let sa = p.input(0, (p.id() == 0).then_some(&a2[..]), a2.len())?;
        let sb = p.input(1, (p.id() == 1).then_some(&b2[..]), b2.len())?;
        let c = p.matmul(&sa, &sb, m, k, n)?;
        p.open(&c)
    })
    .unwrap();
    let q = |v: f64| (v * 65536.0).round() / 65536.0;
    let mut want = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            want[i * n + j] = (0..k).map(|l| q(a[i * k + l]) * q(b[l * n + j])).sum();
        }
    }
    for r in &out {
        close(r, &want, 1.01 * ULP);
    }
    assert!(
        want.iter().any(|v| *v < 0.0),
        "negative results are covered"
    );
}

#[test]
fn truncation_never_makes_large_errors() {
    // Many products of small negative and positive numbers: the local-shift truncation would
    // occasionally be off by 2^48; the dealer-assisted one is off by at most one ulp.
    let x: Vec<f64> = (0..20_000).map(|i| (i as f64 - 10_000.0) * 0.013).collect();
    let x2 = x.clone();
    let out = run(2, FixedPoint::default(), move |p| {
        let s = p.input(0, (p.id() == 0).then_some(&x2[..]), x2.len())?;
        let y = p.mul_public(&s, &vec![-1.25; x2.len()])?;
        p.open(&y)
    })
    .unwrap();
    let q = |v: f64| (v * 65536.0).round() / 65536.0;
    close(
        &out[0],
        &x.iter().map(|v| q(*v) * -1.25).collect::<Vec<_>>(),
        1.01 * ULP,
    );
}

#[test]
fn a_party_that_stops_is_an_error_for_the_others_not_a_hang() {
    let started = std::time::Instant::now();
    let err = run_with_timeout(3, FixedPoint::default(), Duration::from_millis(500), |p| {
        let s = p.input(0, (p.id() == 0).then_some(&[1.0, 2.0][..]), 2)?;
        if p.id() == 1 {
            return Err(MpcError::InvalidParameter("party 1 quits".into()));
        }
        p.mul(&s, &s)
    })
    .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10));
    let text = err.to_string();
    assert!(text.contains("party 1"), "{text}");
}

#[test]
fn bad_arguments_are_errors() {
    let out = run(2, FixedPoint::default(), |p| {
        let s = p.input(0, (p.id() == 0).then_some(&[1.0, 2.0][..]), 2)?;
        let t = p.input(1, (p.id() == 1).then_some(&[1.0][..]), 1)?;
        Ok((
            p.add(&s, &t).is_err(),
            p.matmul(&s, &t, 2, 2, 2).is_err(),
            p.mul_public(&s, &[1.0]).is_err(),
        ))
    })
    .unwrap();
    assert!(out.iter().all(|r| r.0 && r.1 && r.2));
    assert!(run(1, FixedPoint::default(), |_| Ok(())).is_err());
    // The owner's values must match the announced length.
    assert!(run(2, FixedPoint::default(), |p| {
        p.input(0, (p.id() == 0).then_some(&[1.0, 2.0][..]), 3)
    })
    .is_err());
}

#[test]
fn communication_is_the_protocol_floor() {
    for n in [2usize, 3, 5] {
        let out = run(n, FixedPoint::default(), |p| {
            let len = 1000;
            let v: Vec<u64> = (0..len as u64).collect();
            let x = p.input_raw(0, (p.id() == 0).then_some(&v[..]), len)?;
            let before = p.stats().total();
            p.mul_raw(&x, &x)?;
            let mid = p.stats().total();
            let (m, k, nn) = (8, 16, 4);
            let a = p.input_raw(0, (p.id() == 0).then_some(&v[..m * k]), m * k)?;
            let b = p.input_raw(0, (p.id() == 0).then_some(&v[..k * nn]), k * nn)?;
            let start = p.stats().total();
            p.matmul(&a, &b, m, k, nn)?;
            let end = p.stats().total();
            Ok((
                mid.bytes_sent - before.bytes_sent,
                mid.rounds - before.rounds,
                end.bytes_sent - start.bytes_sent,
                end.rounds - start.rounds,
            ))
        })
        .unwrap();
        for (mul_bytes, mul_rounds, mm_bytes, mm_rounds) in out {
            // Beaver: 2 ring elements per product to each of the n - 1 others, one round.
            assert_eq!(mul_bytes, (2 * (n - 1) * 1000 * 8) as u64);
            assert_eq!(mul_rounds, 1);
            // Matrix triple: (mk + kn) elements, not mkn; then m·n for the truncation.
            assert_eq!(mm_bytes, ((8 * 16 + 16 * 4 + 8 * 4) * (n - 1) * 8) as u64);
            assert_eq!(mm_rounds, 2);
        }
    }
}
