//! Joint statistics, logistic regression across three parties (within one accuracy point of
//! plaintext training on the pooled rows), and MLP inference.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

use veil_mpc::memory::run;
use veil_mpc::FixedPoint;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[test]
fn joint_statistics_of_three_columns() {
    let mut rng = Rng(7);
    let cols: Vec<Vec<f64>> = (0..3)
        .map(|p| {
            (0..100 + 50 * p)
                .map(|_| 20.0 + rng.next() * 60.0)
                .collect()
        })
        .collect();
    let c2 = cols.clone();
    let out = run(3, FixedPoint::default(), move |p| {
        let mut parts = Vec::new();
        for (owner, col) in c2.iter().enumerate() {
            parts.push(p.input(owner, (p.id() == owner).then_some(&col[..]), col.len())?);
        }
        let all = p.concat(&parts);
        let s = p.statistics(&all, 100.0, 20.0, 80.0, 6)?;
        // Only party 0 learns the results.
        Ok((
            p.reveal_to(&s.mean, 0)?,
            p.reveal_to(&s.variance, 0)?,
            p.reveal_to_raw(&s.histogram, 0)?,
            s.count,
        ))
    })
    .unwrap();
    let all: Vec<f64> = cols.concat();
    let q: Vec<f64> = all
        .iter()
        .map(|v| (v * 65536.0).round() / 65536.0)
        .collect();
    let n = q.len() as f64;
    let mean = q.iter().sum::<f64>() / n;
    let var = q.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    let (m, v, h, count) = &out[0];
    assert_eq!(*count, all.len());
    assert!((m.as_ref().unwrap()[0] - mean).abs() < 1e-3);
    assert!(
        (v.as_ref().unwrap()[0] - var).abs() < 0.01 * var,
        "{v:?} vs {var}"
    );
    let mut want = [0u64; 6];
    for x in &q {
        want[(((x - 20.0) / 10.0).floor() as usize).min(5)] += 1;
    }
    assert_eq!(h.as_ref().unwrap(), &want.to_vec());
    assert!(
        out[1].0.is_none() && out[2].2.is_none(),
        "others learn nothing"
    );
}

fn rows(rng: &mut Rng, n: usize) -> Vec<[f64; 4]> {
    (0..n)
        .map(|_| {
            let x = [
                rng.next() * 4.0 - 2.0,
                rng.next() * 4.0 - 2.0,
                rng.next() * 4.0 - 2.0,
            ];
            let z = 1.5 * x[0] - 2.0 * x[1] + 0.5 * x[2] + 0.3 + (rng.next() - 0.5) * 1.5;
            [x[0], x[1], x[2], f64::from(u8::from(z > 0.0))]
        })
        .collect()
}

fn plain_logreg(rows: &[[f64; 4]], epochs: usize, rate: f64) -> [f64; 4] {
    let mut w = [0.0f64; 4];
    let n = rows.len() as f64;
    for _ in 0..epochs {
        let mut g = [0.0f64; 4];
        for r in rows {
            let xs = [r[0], r[1], r[2], 1.0];
            let z: f64 = xs.iter().zip(&w).map(|(a, b)| a * b).sum();
            let e = 1.0 / (1.0 + (-z).exp()) - r[3];
            for j in 0..4 {
                g[j] += e * xs[j];
            }
        }
        for j in 0..4 {
            w[j] -= rate * g[j] / n;
        }
    }
    w
}

fn accuracy(rows: &[[f64; 4]], w: &[f64]) -> f64 {
    rows.iter()
        .filter(|r| {
            let z = r[0] * w[0] + r[1] * w[1] + r[2] * w[2] + w[3];
            (z >= 0.0) == (r[3] == 1.0)
        })
        .count() as f64
        / rows.len() as f64
}

#[test]
fn logistic_regression_on_rows_of_three_parties_matches_plaintext() {
    let mut rng = Rng(11);
    let parts: Vec<Vec<[f64; 4]>> = (0..3).map(|_| rows(&mut rng, 150)).collect();
    let (epochs, rate) = (30, 1.0);
    let p2 = parts.clone();
    let out = run(3, FixedPoint::default(), move |p| {
        let (mut xs, mut ys) = (Vec::new(), Vec::new());
        for (owner, rows) in p2.iter().enumerate() {
            let mine = p.id() == owner;
            let x: Vec<f64> = rows.iter().flat_map(|r| [r[0], r[1], r[2], 1.0]).collect();
            let y: Vec<f64> = rows.iter().map(|r| r[3]).collect();
            xs.push(p.input(owner, mine.then_some(&x[..]), x.len())?);
            ys.push(p.input(owner, mine.then_some(&y[..]), y.len())?);
        }
        let x = p.concat(&xs);
        let y = p.concat(&ys);
        let w = p.train_logistic_regression(&x, &y, 4, epochs, rate)?;
        // The model goes to parties 0 and 2 only.
        Ok((p.reveal_to(&w, 0)?, p.reveal_to(&w, 2)?))
    })
    .unwrap();
    let all: Vec<[f64; 4]> = parts.concat();
    let plain = plain_logreg(&all, epochs, rate);
    let w0 = out[0].0.clone().unwrap();
    assert_eq!(out[2].1.as_ref().unwrap(), &w0);
    assert!(
        out[1].0.is_none() && out[1].1.is_none(),
        "party 1 does not get the model"
    );
    for j in 0..4 {
        assert!(
            (w0[j] - plain[j]).abs() < 0.05,
            "w{j}: {} vs {}",
            w0[j],
            plain[j]
        );
    }
    let (acc_mpc, acc_plain) = (accuracy(&all, &w0), accuracy(&all, &plain));
    assert!(
        (acc_mpc - acc_plain).abs() <= 0.01,
        "{acc_mpc} vs {acc_plain}"
    );
    assert!(acc_plain > 0.8, "the rule was learned: {acc_plain}");
}

#[test]
fn mlp_inference_on_shared_inputs_and_weights() {
    let (batch, inputs, hidden, classes) = (6, 4, 5, 3);
    let mut rng = Rng(5);
    let mut draw = |n: usize| (0..n).map(|_| rng.next() * 2.0 - 1.0).collect::<Vec<f64>>();
    let x = draw(batch * inputs);
    let (w1, b1, w2, b2) = (
        draw(inputs * hidden),
        draw(hidden),
        draw(hidden * classes),
        draw(classes),
    );
    let (x2, w12, b12, w22, b22) = (x.clone(), w1.clone(), b1.clone(), w2.clone(), b2.clone());
    let out = run(2, FixedPoint::default(), move |p| {
        // Party 0 holds the inputs, party 1 the model.
        let sx = p.input(0, (p.id() == 0).then_some(&x2[..]), x2.len())?;
        let m = p.id() == 1;
        let sw1 = p.input(1, m.then_some(&w12[..]), w12.len())?;
        let sb1 = p.input(1, m.then_some(&b12[..]), b12.len())?;
        let sw2 = p.input(1, m.then_some(&w22[..]), w22.len())?;
        let sb2 = p.input(1, m.then_some(&b22[..]), b22.len())?;
        let (scores, onehot) = p.mlp_predict(
            &sx,
            (&sw1, &sb1),
            (&sw2, &sb2),
            batch,
            inputs,
            hidden,
            classes,
        )?;
        Ok((p.reveal_to(&scores, 0)?, p.reveal_to_raw(&onehot, 0)?))
    })
    .unwrap();
    let (scores, onehot) = (out[0].0.clone().unwrap(), out[0].1.clone().unwrap());
    for r in 0..batch {
        let h: Vec<f64> = (0..hidden)
            .map(|j| {
                let v: f64 = (0..inputs)
                    .map(|i| x[r * inputs + i] * w1[i * hidden + j])
                    .sum::<f64>()
                    + b1[j];
                v.max(0.0)
            })
            .collect();
        let s: Vec<f64> = (0..classes)
            .map(|c| (0..hidden).map(|j| h[j] * w2[j * classes + c]).sum::<f64>() + b2[c])
            .collect();
        for c in 0..classes {
            assert!(
                (scores[r * classes + c] - s[c]).abs() < 1e-3,
                "{} vs {}",
                scores[r * classes + c],
                s[c]
            );
        }
        let best = (0..classes).max_by(|a, b| s[*a].total_cmp(&s[*b])).unwrap();
        let got = (0..classes)
            .position(|c| onehot[r * classes + c] == 1)
            .unwrap();
        // Near-ties may differ by fixed-point error; otherwise the class must match.
        if (s[best] - s[got]).abs() > 1e-3 {
            assert_eq!(got, best);
        }
    }
}
