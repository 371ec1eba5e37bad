//! Approximated functions against `f64`, within their documented error on their domains.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

use veil_mpc::memory::run;
use veil_mpc::FixedPoint;

fn eval(
    parties: usize,
    xs: Vec<f64>,
    f: fn(
        &mut veil_mpc::protocol::Party<veil_mpc::memory::MemoryExchange>,
        &veil_mpc::protocol::Shared,
    ) -> veil_mpc::Result<veil_mpc::protocol::Shared>,
) -> Vec<f64> {
    let out = run(parties, FixedPoint::default(), move |p| {
        let s = p.input(0, (p.id() == 0).then_some(&xs[..]), xs.len())?;
        let y = f(p, &s)?;
        p.open(&y)
    })
    .unwrap();
    out[0].clone()
}

#[test]
fn exp_reciprocal_sigmoid_sqrt_division_for_2_3_and_5_parties() {
    for n in [2, 3, 5] {
        approximations(n);
    }
}

fn approximations(n: usize) {
    let xs: Vec<f64> = (-64..=32).map(|i| f64::from(i) / 4.0).collect();
    let got = eval(n, xs.clone(), |p, s| p.exp(s));
    for (x, g) in xs.iter().zip(&got) {
        let want = x.exp();
        // x²/512 from the approximation, 0.4% from rounding x/256 (see `Party::exp`).
        let tolerance = want * (x * x / 400.0 + 0.01) + 2e-4;
        assert!((g - want).abs() <= tolerance, "exp({x}) = {g}, want {want}");
        if *x <= 0.0 {
            assert!((g - want).abs() <= 5e-3, "exp({x}) = {g}, want {want}");
        }
    }

    let xs: Vec<f64> = vec![0.01, 0.05, 0.3, 1.0, 2.5, 7.0, 33.0, 120.0, 499.0];
    let got = eval(n, xs.clone(), |p, s| p.reciprocal(s));
    for (x, g) in xs.iter().zip(&got) {
        let want = 1.0 / x;
        assert!(
            (g - want).abs() <= 0.01 * want + 3e-4,
            "1/{x} = {g}, want {want}"
        );
    }

    let xs: Vec<f64> = vec![
        -500.0, -40.0, -6.0, -2.0, -0.5, 0.0, 0.25, 1.0, 3.0, 9.0, 300.0,
    ];
    let got = eval(n, xs.clone(), |p, s| p.sigmoid(s));
    for (x, g) in xs.iter().zip(&got) {
        let want = 1.0 / (1.0 + (-x).exp());
        assert!((g - want).abs() <= 2e-3, "sigmoid({x}) = {g}, want {want}");
    }

    let xs: Vec<f64> = vec![0.1, 0.5, 1.0, 2.0, 9.0, 30.0, 100.0];
    let got = eval(n, xs.clone(), |p, s| p.sqrt(s));
    for (x, g) in xs.iter().zip(&got) {
        let want = x.sqrt();
        assert!(
            (g - want).abs() <= 0.01 * want + 1e-3,
            "sqrt({x}) = {g}, want {want}"
        );
    }

    let xs: Vec<f64> = vec![3.0, -4.5, 10.0, 0.0];
    let got = eval(n, xs.clone(), |p, s| p.mean(s));
    assert!((got[0] - 2.125).abs() < 1e-4);

    // Division of shared by shared: x / y = x · (1/y).
    let (num, den) = (vec![3.0, -7.5, 100.0, 0.5], vec![2.0, 0.25, 40.0, 8.0]);
    let (num2, den2) = (num.clone(), den.clone());
    let out = run(n, FixedPoint::default(), move |p| {
        let a = p.input(0, (p.id() == 0).then_some(&num2[..]), num2.len())?;
        let last = p.parties() - 1;
        let b = p.input(last, (p.id() == last).then_some(&den2[..]), den2.len())?;
        let q = p.div(&a, &b)?;
        p.open(&q)
    })
    .unwrap();
    for ((x, y), g) in num.iter().zip(&den).zip(&out[0]) {
        let want = x / y;
        assert!(
            (g - want).abs() <= 0.01 * want.abs() + 2e-3,
            "{x}/{y} = {g}, want {want} ({n} parties)"
        );
    }
}
