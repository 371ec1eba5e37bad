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
    xs: Vec<f64>,
    f: fn(
        &mut veil_mpc::protocol::Party<veil_mpc::memory::MemoryExchange>,
        &veil_mpc::protocol::Shared,
    ) -> veil_mpc::Result<veil_mpc::protocol::Shared>,
) -> Vec<f64> {
    let out = run(3, FixedPoint::default(), move |p| {
        let s = p.input(0, (p.id() == 0).then_some(&xs[..]), xs.len())?;
        let y = f(p, &s)?;
        p.open(&y)
    })
    .unwrap();
    out[0].clone()
}

#[test]
fn exp_reciprocal_sigmoid_sqrt() {
    let xs: Vec<f64> = (-64..=32).map(|i| f64::from(i) / 4.0).collect();
    let got = eval(xs.clone(), |p, s| p.exp(s));
    for (x, g) in xs.iter().zip(&got) {
        let want = x.exp();
        let tolerance = want * (x * x / 400.0 + 0.01) + 2e-4;
        assert!((g - want).abs() <= tolerance, "exp({x}) = {g}, want {want}");
        if *x <= 0.0 {
            assert!((g - want).abs() <= 2e-3, "exp({x}) = {g}, want {want}");
        }
    }

    let xs: Vec<f64> = vec![0.01, 0.05, 0.3, 1.0, 2.5, 7.0, 33.0, 120.0, 499.0];
    let got = eval(xs.clone(), |p, s| p.reciprocal(s));
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
    let got = eval(xs.clone(), |p, s| p.sigmoid(s));
    for (x, g) in xs.iter().zip(&got) {
        let want = 1.0 / (1.0 + (-x).exp());
        assert!((g - want).abs() <= 2e-3, "sigmoid({x}) = {g}, want {want}");
    }

    let xs: Vec<f64> = vec![0.1, 0.5, 1.0, 2.0, 9.0, 30.0, 100.0];
    let got = eval(xs.clone(), |p, s| p.sqrt(s));
    for (x, g) in xs.iter().zip(&got) {
        let want = x.sqrt();
        assert!(
            (g - want).abs() <= 0.01 * want + 1e-3,
            "sqrt({x}) = {g}, want {want}"
        );
    }

    let xs: Vec<f64> = vec![3.0, -4.5, 10.0, 0.0];
    let got = eval(xs.clone(), |p, s| p.mean(s));
    assert!((got[0] - 2.125).abs() < 1e-4);
}
