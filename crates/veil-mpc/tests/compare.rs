//! Comparisons and what is built on them, against plaintext, with 2, 3 and 5 parties.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

use veil_mpc::memory::run;
use veil_mpc::FixedPoint;

fn ring_values() -> Vec<u64> {
    let mut v: Vec<u64> = vec![
        0,
        1,
        u64::MAX,
        1 << 63,
        (1 << 63) - 1,
        1 << 62,
        (1u64 << 62).wrapping_neg(),
        65536,
        65536u64.wrapping_neg(),
    ];
    let mut s = 0x1234_5678_9abc_def1u64;
    for _ in 0..300 {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        v.push(s);
        v.push(s >> 20);
        v.push((s >> 20).wrapping_neg());
    }
    v
}

#[test]
fn less_than_zero_and_equality_are_exact_on_the_whole_ring() {
    for n in [2usize, 3, 5] {
        let v = ring_values();
        let v2 = v.clone();
        // Every other value is also compared with itself for equality.
        let out = run(n, FixedPoint::default(), move |p| {
            let x = p.input_raw(0, (p.id() == 0).then_some(&v2[..]), v2.len())?;
            let neg = p.ltz(&x)?;
            let zero = p.eqz(&x)?;
            let lt = p.stats().ops["lt"];
            let eq = p.stats().ops["eq"];
            assert_eq!(eq.rounds, 8, "constant rounds");
            // Bit-sliced: about 38 bytes per comparison to each other party (not 500).
            let per = lt.bytes_sent as f64 / (v2.len() * (p.parties() - 1)) as f64;
            assert!(per <= 40.0, "{per} bytes per comparison");
            Ok((p.open_raw(&neg)?, p.open_raw(&zero)?, lt.rounds))
        })
        .unwrap();
        for (neg, zero, rounds) in &out {
            for (i, x) in v.iter().enumerate() {
                assert_eq!(neg[i], u64::from((*x as i64) < 0), "ltz({})", *x as i64);
                assert_eq!(zero[i], u64::from(*x == 0), "eqz({})", *x as i64);
            }
            assert_eq!(*rounds, 8, "constant rounds");
        }
    }
}

#[test]
fn relu_max_argmax_and_pooling_for_2_3_and_5_parties() {
    for n in [2, 3, 5] {
        relu_max_argmax_and_pooling(n);
    }
}

fn relu_max_argmax_and_pooling(n: usize) {
    let x: Vec<f64> = vec![-3.5, 0.0, 2.25, -0.001, 7.0, 7.0, -8.0, 1.5, 0.5];
    let y: Vec<f64> = vec![1.0, -1.0, 2.25, -0.002, 6.5, 8.0, -9.0, 1.0, 0.75];
    let (x2, y2) = (x.clone(), y.clone());
    let out = run(n, FixedPoint::default(), move |p| {
        let sx = p.input(0, (p.id() == 0).then_some(&x2[..]), x2.len())?;
        let last = p.parties() - 1;
        let sy = p.input(last, (p.id() == last).then_some(&y2[..]), y2.len())?;
        let relu = p.relu(&sx)?;
        let max = p.max2(&sx, &sy)?;
        let lt = p.lt(&sx, &sy)?;
        let eq = p.eq(&sx, &sy)?;
        let sign = p.sign(&sx)?;
        let (m, onehot) = p.argmax(&sx)?;
        // A 3 × 3 image pooled by 2 keeps one window: [-3.5, 0, 7, 7] → 7.
        let pooled = p.max_pool2d(&sx, 3, 3, 2)?;
        Ok((
            p.open(&relu)?,
            p.open(&max)?,
            p.open_raw(&lt)?,
            p.open_raw(&eq)?,
            p.open_raw(&sign)?,
            p.open(&m)?,
            p.open_raw(&onehot)?,
            p.open(&pooled)?,
        ))
    })
    .unwrap();
    for r in &out {
        let q = |v: f64| (v * 65536.0).round() / 65536.0;
        assert_eq!(r.0, x.iter().map(|v| q(v.max(0.0))).collect::<Vec<_>>());
        assert_eq!(
            r.1,
            x.iter()
                .zip(&y)
                .map(|(a, b)| q(a.max(*b)))
                .collect::<Vec<_>>()
        );
        assert_eq!(
            r.2,
            x.iter()
                .zip(&y)
                .map(|(a, b)| u64::from(q(*a) < q(*b)))
                .collect::<Vec<_>>()
        );
        assert_eq!(
            r.3,
            x.iter()
                .zip(&y)
                .map(|(a, b)| u64::from(q(*a) == q(*b)))
                .collect::<Vec<_>>()
        );
        let signs: Vec<i64> = r.4.iter().map(|v| *v as i64).collect();
        assert_eq!(signs, [-1, 0, 1, -1, 1, 1, -1, 1, 1]);
        assert_eq!(r.5, [7.0]);
        assert_eq!(r.6, [0, 0, 0, 0, 1, 0, 0, 0, 0], "the first of two maxima");
        assert_eq!(r.7, [7.0]);
    }
}

#[test]
fn grouped_argmax_and_shapes() {
    let x: Vec<f64> = (0..24).map(|i| ((i * 7) % 11) as f64 - 5.0).collect();
    let x2 = x.clone();
    let out = run(2, FixedPoint::default(), move |p| {
        let s = p.input(1, (p.id() == 1).then_some(&x2[..]), x2.len())?;
        let (m, oh) = p.max_argmax_groups(&s, 4, 6)?;
        assert!(p.max_argmax_groups(&s, 5, 5).is_err());
        assert!(p.max_pool2d(&s, 5, 5, 2).is_err());
        Ok((p.open(&m)?, p.open_raw(&oh)?))
    })
    .unwrap();
    for (m, oh) in &out {
        for g in 0..4 {
            let group = &x[g * 6..(g + 1) * 6];
            let best = group.iter().cloned().fold(f64::MIN, f64::max);
            assert_eq!(m[g], best);
            let first = group.iter().position(|v| *v == best).unwrap();
            for i in 0..6 {
                assert_eq!(oh[g * 6 + i], u64::from(i == first));
            }
        }
    }
}

#[test]
fn max_of_groups_of_every_width_is_exact() {
    for width in [1usize, 2, 3, 4, 5, 9] {
        let groups = 7;
        let mut s = 0x9e37_79b9_7f4a_7c15u64 ^ width as u64;
        let x: Vec<f64> = (0..groups * width)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s >> 40) as f64 / 2f64.powi(24) - 0.5) * 2000.0
            })
            .collect();
        let x2 = x.clone();
        let out = run(2, FixedPoint::default(), move |p| {
            let sx = p.input(0, (p.id() == 0).then_some(&x2[..]), x2.len())?;
            let m = p.max_groups(&sx, groups, width)?;
            assert!(
                p.max_groups(&sx, groups + 1, width).is_err(),
                "shape checked"
            );
            p.open(&m)
        })
        .unwrap();
        let q = |v: f64| (v * 65536.0).round() / 65536.0;
        let want: Vec<f64> = x
            .chunks(width)
            .map(|g| g.iter().map(|&v| q(v)).fold(f64::NEG_INFINITY, f64::max))
            .collect();
        for got in &out {
            assert_eq!(got, &want, "width {width}");
        }
    }
}
