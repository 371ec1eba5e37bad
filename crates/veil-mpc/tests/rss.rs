//! The dealer-free three-party protocol against plaintext: inputs, openings, products,
//! matrix products and truncation at the ends of their range, comparisons on the whole
//! ring, ReLU, maxima and argmax; rounds and traffic.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

use veil_mpc::rss::run_local;
use veil_mpc::FixedPoint;

fn xorshift(seed: u64, n: usize) -> Vec<u64> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        })
        .collect()
}

#[test]
fn inputs_openings_and_reveals_for_every_owner() {
    let x: Vec<u64> = xorshift(3, 50);
    for owner in 0..3 {
        let x2 = x.clone();
        let out = run_local(FixedPoint::default(), move |p| {
            let s = p.input_raw(owner, (p.id() == owner).then_some(&x2[..]), x2.len())?;
            let all = p.open_raw(&s)?;
            let to = (owner + 1) % 3;
            let one = p.reveal_to_raw(&s, to)?;
            Ok((p.id(), all, one))
        })
        .unwrap();
        for (id, all, one) in out {
            assert_eq!(all, x);
            assert_eq!(one.is_some(), id == (owner + 1) % 3);
            if let Some(v) = one {
                assert_eq!(v, x);
            }
        }
    }
}

#[test]
fn products_and_truncation_are_exact_to_one_unit() {
    let f = FixedPoint::default();
    let n = 400;
    let mut xs: Vec<f64> = xorshift(5, n)
        .iter()
        .map(|v| ((v >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * 60_000.0)
        .collect();
    let ys: Vec<f64> = xorshift(7, n)
        .iter()
        .map(|v| ((v >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * 60_000.0)
        .collect();
    // The ends of the range: |x·y| just below 2^62 ring units = 2^30 in reals.
    xs[0] = 32_767.0;
    xs[1] = -32_767.0;
    let (x2, y2) = (xs.clone(), ys.clone());
    let out = run_local(f, move |p| {
        let x = p.input(0, (p.id() == 0).then_some(&x2[..]), n)?;
        let y = p.input(2, (p.id() == 2).then_some(&y2[..]), n)?;
        let before = p.stats().rounds;
        let xy = p.mul(&x, &y)?;
        let mul_rounds = p.stats().rounds - before;
        let sq = p.square(&x)?;
        Ok((p.open(&xy)?, p.open(&sq)?, mul_rounds))
    })
    .unwrap();
    let unit = 1.0 / 65536.0;
    for (xy, sq, rounds) in &out {
        assert_eq!(*rounds, 2, "a truncated product takes two rounds");
        for i in 0..n {
            let (a, b) = (
                f.decode(f.encode(xs[i]).unwrap()),
                f.decode(f.encode(ys[i]).unwrap()),
            );
            assert!((xy[i] - a * b).abs() <= unit, "{} vs {}", xy[i], a * b);
            assert!((sq[i] - a * a).abs() <= unit);
        }
    }
}

#[test]
fn matrix_products_send_only_their_output() {
    let (m, k, n) = (20, 64, 10);
    let xs: Vec<f64> = xorshift(11, m * k)
        .iter()
        .map(|v| (v >> 40) as f64 / (1u64 << 24) as f64 - 0.5)
        .collect();
    let ws: Vec<f64> = xorshift(13, k * n)
        .iter()
        .map(|v| (v >> 40) as f64 / (1u64 << 24) as f64 - 0.5)
        .collect();
    let (x2, w2) = (xs.clone(), ws.clone());
    let out = run_local(FixedPoint::default(), move |p| {
        let x = p.input(1, (p.id() == 1).then_some(&x2[..]), m * k)?;
        let w = p.input(0, (p.id() == 0).then_some(&w2[..]), k * n)?;
        let before = p.stats();
        let y = p.matmul(&x, &w, m, k, n)?;
        let after = p.stats();
        Ok((p.open(&y)?, after.bytes_sent - before.bytes_sent))
    })
    .unwrap();
    let total: u64 = out.iter().map(|(_, b)| b).sum();
    // 8 ring elements per output element over all parties, whatever k.
    assert_eq!(total, 8 * 8 * (m * n) as u64);
    for (y, _) in &out {
        for r in 0..m {
            for c in 0..n {
                let want: f64 = (0..k).map(|i| xs[r * k + i] * ws[i * n + c]).sum();
                assert!(
                    (y[r * n + c] - want).abs() < 1e-3,
                    "{} vs {want}",
                    y[r * n + c]
                );
            }
        }
    }
}

#[test]
fn less_than_zero_is_exact_on_the_whole_ring() {
    let mut v: Vec<u64> = vec![0, 1, u64::MAX, 1 << 63, (1 << 63) - 1, 1 << 62];
    v.extend(xorshift(17, 500));
    v.extend(xorshift(19, 200).iter().map(|x| x >> 20));
    v.extend(xorshift(23, 200).iter().map(|x| (x >> 20).wrapping_neg()));
    let v2 = v.clone();
    let out = run_local(FixedPoint::default(), move |p| {
        let x = p.input_raw(1, (p.id() == 1).then_some(&v2[..]), v2.len())?;
        let before = p.stats().rounds;
        let neg = p.ltz(&x)?;
        let rounds = p.stats().rounds - before;
        Ok((p.open_raw(&neg)?, rounds))
    })
    .unwrap();
    for (neg, rounds) in &out {
        assert_eq!(*rounds, 10);
        for (i, x) in v.iter().enumerate() {
            assert_eq!(neg[i], u64::from((*x as i64) < 0), "ltz({})", *x as i64);
        }
    }
}

#[test]
fn relu_maxima_and_argmax_match_plaintext() {
    let xs: Vec<f64> = vec![
        -3.5, 0.0, 2.25, -0.001, 7.0, 7.0, -8.0, 1.5, 0.5, -2.0, 4.0, 3.9,
    ];
    let x2 = xs.clone();
    let out = run_local(FixedPoint::default(), move |p| {
        let x = p.input(2, (p.id() == 2).then_some(&x2[..]), x2.len())?;
        let relu = p.relu(&x)?;
        let max4 = p.max_groups(&x, 3, 4)?;
        let (max3, onehot) = p.max_argmax_groups(&x, 4, 3)?;
        Ok((
            p.open(&relu)?,
            p.open(&max4)?,
            p.open(&max3)?,
            p.open_raw(&onehot)?,
        ))
    })
    .unwrap();
    for (relu, max4, max3, onehot) in &out {
        let q = |v: f64| (v * 65536.0).round() / 65536.0;
        assert_eq!(relu, &xs.iter().map(|v| q(v.max(0.0))).collect::<Vec<_>>());
        let maxes = |w: usize| -> Vec<f64> {
            xs.chunks(w)
                .map(|c| c.iter().map(|&v| q(v)).fold(f64::MIN, f64::max))
                .collect()
        };
        assert_eq!(max4, &maxes(4));
        assert_eq!(max3, &maxes(3));
        // First maximum of each group of 3.
        let want: Vec<u64> = xs
            .chunks(3)
            .flat_map(|c| {
                let best = (0..3).fold(0, |b, i| if c[i] > c[b] { i } else { b });
                (0..3).map(move |i| u64::from(i == best))
            })
            .collect();
        assert_eq!(onehot, &want);
    }
}

#[test]
fn two_or_four_parties_are_refused() {
    for n in [2usize, 4] {
        let err = veil_mpc::memory::run_exchanges(n, std::time::Duration::from_secs(5), |ex| {
            veil_mpc::rss::Rss::new(ex, FixedPoint::default()).map(|_| ())
        })
        .unwrap_err();
        assert!(err.to_string().contains("exactly 3"), "{err}");
    }
}

/// An exchange that keeps a copy of every message this party receives.
struct Recorder {
    inner: veil_mpc::memory::MemoryExchange,
    log: std::sync::Arc<std::sync::Mutex<Vec<Vec<u64>>>>,
}

impl veil_mpc::protocol::Exchange for Recorder {
    fn id(&self) -> usize {
        self.inner.id()
    }
    fn parties(&self) -> usize {
        self.inner.parties()
    }
    fn exchange(
        &mut self,
        phase: &str,
        outgoing: Vec<Vec<u64>>,
    ) -> veil_mpc::Result<Vec<Vec<u64>>> {
        let got = self.inner.exchange(phase, outgoing)?;
        self.log.lock().unwrap().extend(got.iter().cloned());
        Ok(got)
    }
    fn dealer_request(&mut self, request: &veil_mpc::dealer::Request) -> veil_mpc::Result<()> {
        self.inner.dealer_request(request)
    }
    fn dealer_correction(&mut self) -> veil_mpc::Result<Option<Vec<u64>>> {
        self.inner.dealer_correction()
    }
}

/// The attack: each party holds two of the three parts of every sharing; a message that gives
/// it the third part of a secret value reveals that value. Record everything each party
/// receives while a sharing is truncated, multiplied by a public constant, multiplied and
/// compared, and check that no received element completes its parts. (A truncation that
/// forwarded party 0's raw part failed this: party 1 read every value truncated, pooled or
/// scaled.)
#[test]
fn no_single_party_receives_the_missing_part_of_a_secret() {
    let n = 64;
    let secret: Vec<u64> = xorshift(29, n).iter().map(|v| v >> 24).collect();
    let logs: Vec<_> = (0..3)
        .map(|_| std::sync::Arc::new(std::sync::Mutex::new(Vec::new())))
        .collect();
    let (logs2, secret2) = (logs.clone(), secret.clone());
    let parts = veil_mpc::memory::run_exchanges(3, std::time::Duration::from_secs(30), move |ex| {
        let me = veil_mpc::protocol::Exchange::id(&ex);
        let rec = Recorder {
            inner: ex,
            log: logs2[me].clone(),
        };
        let mut p = veil_mpc::rss::Rss::new(rec, FixedPoint::default())?;
        let x = p.input_raw(0, (me == 0).then_some(&secret2[..]), n)?;
        let (a, b) = x.hazmat_parts();
        let mine = (a.to_vec(), b.to_vec());
        let _ = p.truncate_by(&x, 16)?;
        let _ = p.mul_public(&x, &vec![0.3; n])?;
        let _ = p.mul_public_scalar(&x, 0.01)?;
        let _ = p.mul(&x, &x)?;
        let _ = p.ltz(&x)?;
        Ok(mine)
    })
    .unwrap();
    for (party, (a, b)) in parts.iter().enumerate() {
        let received = logs[party].lock().unwrap();
        assert!(!received.is_empty());
        for msg in received.iter() {
            for v in msg {
                for i in 0..n {
                    assert_ne!(
                        v.wrapping_add(a[i]).wrapping_add(b[i]),
                        secret[i],
                        "party {party} received the missing part of element {i}"
                    );
                }
            }
        }
    }
}
