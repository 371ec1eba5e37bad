//! Unit tests of `workload`.

use super::*;

const STATS: &str = include_str!("../workloads/stats.wat");

fn column(values: &[f64]) -> Zeroizing<Vec<u8>> {
    Zeroizing::new(values.iter().flat_map(|v| v.to_le_bytes()).collect())
}

fn floats(bytes: &[u8]) -> Vec<f64> {
    bytes
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

#[test]
fn stats_workload_computes_joint_statistics() {
    let w = Workload::new(STATS.as_bytes(), LaunchConfig::default()).unwrap();
    let a: Vec<f64> = (0..1000).map(|i| f64::from(i) * 0.5).collect();
    let b: Vec<f64> = (0..500).map(|i| 100.0 + f64::from(i)).collect();
    let out = w.run(vec![column(&a), column(&b)]).unwrap();
    let r = floats(&out.output);
    let all: Vec<f64> = a.iter().chain(&b).copied().collect();
    let n = all.len() as f64;
    let mean = all.iter().sum::<f64>() / n;
    let var = all.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    assert_eq!(r[0], n);
    assert!((r[1] - mean).abs() < 1e-9 * mean.abs());
    assert!((r[2] - var).abs() < 1e-9 * var);
    assert_eq!((r[3], r[4]), (0.0, 599.0));
    assert_eq!(r[5..].iter().sum::<f64>(), n);
    let width = 599.0 / 10.0;
    let bin0 = all.iter().filter(|&&x| x < width).count() as f64;
    assert_eq!(r[5], bin0);
    assert!(out.fuel_used > 0);
    // A column that is not whole f64s is the workload's own error.
    let bad = Zeroizing::new(vec![0u8; 7]);
    let err = w.run(vec![bad]).unwrap_err().to_string();
    assert!(err.contains("error code 1"), "{err}");
}

/// Three parties' rows: 3 standardized features, labels from a noisy linear rule.
fn party_rows(party: u64, n: usize) -> Vec<[f64; 4]> {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64 ^ party;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    };
    (0..n)
        .map(|_| {
            let x = [next() * 1.7, next() * 1.7, next() * 1.7];
            let z = 1.5 * x[0] - 2.0 * x[1] + 0.5 * x[2] + 0.3 + 0.8 * next();
            [x[0], x[1], x[2], if z > 0.0 { 1.0 } else { 0.0 }]
        })
        .collect()
}

#[test]
fn logreg_workload_trains_like_plaintext() {
    const LOGREG: &str = include_str!("../workloads/logreg.wat");
    let parties: Vec<Vec<[f64; 4]>> = (0..3).map(|p| party_rows(p, 400)).collect();
    let inputs: Vec<Zeroizing<Vec<u8>>> = parties
        .iter()
        .map(|rows| {
            let mut v = vec![3.0];
            v.extend(rows.iter().flatten());
            column(&v)
        })
        .collect();
    let w = Workload::new(LOGREG.as_bytes(), LaunchConfig::default()).unwrap();
    let out = floats(&w.run(inputs.clone()).unwrap().output);
    assert_eq!(out.len(), 5);
    // The same model trained in plaintext on the pooled rows.
    let rows: Vec<[f64; 4]> = parties.concat();
    let (mut wt, mut b) = ([0.0f64; 3], 0.0f64);
    let n = rows.len() as f64;
    for _ in 0..500 {
        let (mut g, mut gb) = ([0.0f64; 3], 0.0f64);
        for r in &rows {
            let z = b + wt[0] * r[0] + wt[1] * r[1] + wt[2] * r[2];
            let e = 1.0 / (1.0 + (-z).exp()) - r[3];
            for j in 0..3 {
                g[j] += e * r[j];
            }
            gb += e;
        }
        for j in 0..3 {
            wt[j] -= 0.5 * g[j] / n;
        }
        b -= 0.5 * gb / n;
    }
    let acc = rows
        .iter()
        .filter(|r| ((b + wt[0] * r[0] + wt[1] * r[1] + wt[2] * r[2] >= 0.0) as u8 as f64) == r[3])
        .count() as f64
        / n;
    for j in 0..3 {
        assert!(
            (out[j] - wt[j]).abs() < 1e-9,
            "w{j}: {} vs {}",
            out[j],
            wt[j]
        );
    }
    assert!((out[3] - b).abs() < 1e-9);
    assert!((out[4] - acc).abs() <= 0.01, "accuracy {} vs {acc}", out[4]);
    assert!(acc > 0.85, "the model learned the rule: {acc}");
    // Mismatched feature counts are the workload's error, not a crash.
    let mut bad = inputs.clone();
    bad[1] = column(&[2.0, 1.0, 1.0, 0.0]);
    assert!(w.run(bad).is_err());
}

#[test]
fn fuel_memory_and_authority_are_limited() {
    let spin = "(module (memory (export \"memory\") 1) (func (export \"run\") (result i32) (loop $l (br $l)) (i32.const 0)))";
    let w = Workload::new(
        spin.as_bytes(),
        LaunchConfig {
            fuel: 1_000_000,
            ..LaunchConfig::default()
        },
    )
    .unwrap();
    let err = w.run(vec![]).unwrap_err().to_string();
    assert!(err.contains("ran out of fuel"), "{err}");

    let greedy = "(module (memory (export \"memory\") 1) (func (export \"run\") (result i32) (drop (memory.grow (i32.const 100))) (i32.const 0)))";
    let w = Workload::new(
        greedy.as_bytes(),
        LaunchConfig {
            max_memory_bytes: 1 << 20,
            ..LaunchConfig::default()
        },
    )
    .unwrap();
    let err = w.run(vec![]).unwrap_err().to_string();
    assert!(err.contains("memory limit"), "{err}");

    let clock = "(module (import \"veil\" \"clock_ms\" (func $c (result i64))) (memory (export \"memory\") 1) (func (export \"run\") (result i32) (drop (call $c)) (i32.const 0)))";
    let denied = Workload::new(clock.as_bytes(), LaunchConfig::default()).unwrap();
    let err = denied.run(vec![]).unwrap_err().to_string();
    assert!(err.contains("does not grant"), "{err}");
    let granted = LaunchConfig {
        grant_clock: true,
        ..LaunchConfig::default()
    };
    let allowed = Workload::new(clock.as_bytes(), granted).unwrap();
    allowed.run(vec![]).unwrap();
    // Granting the clock changes the measurement.
    assert_ne!(denied.measurement(), allowed.measurement());

    let wasi = "(module (import \"wasi_snapshot_preview1\" \"fd_write\" (func (param i32 i32 i32 i32) (result i32))) (memory (export \"memory\") 1) (func (export \"run\") (result i32) (i32.const 0)))";
    let err = Workload::new(wasi.as_bytes(), LaunchConfig::default())
        .unwrap()
        .run(vec![])
        .unwrap_err()
        .to_string();
    assert!(err.contains("no WASI"), "{err}");
    assert!(Workload::new(b"(module (func", LaunchConfig::default()).is_err());
}

#[test]
fn launch_binds_the_key_and_sealing_follows_the_measurement() {
    use veil_attest::evidence::sim::SimVerifier;
    use veil_attest::evidence::Verifier;
    let platform = SimulatedPlatform::from_seed(&[4; 32]);
    let w = Workload::new(STATS.as_bytes(), LaunchConfig::default()).unwrap();
    let launched = LaunchedWorkload::launch(w.clone(), &platform, 1, b"nonce", b"");
    let claims = SimVerifier::new(&platform.public_key())
        .unwrap()
        .verify(launched.evidence(), 0)
        .unwrap();
    assert_eq!(
        claims.measurements["measurement"],
        hex::encode(w.measurement())
    );
    veil_attest::binding::check_binding(&claims, b"nonce", &launched.public_key(), b"").unwrap();

    // Inputs sealed to the attested key run; sealed data unseals only for the same code.
    let input =
        veil_kbs::seal_to(&launched.public_key(), "input", &column(&[1.0, 2.0, 3.0])).unwrap();
    let out = launched.run_sealed(&[input]).unwrap();
    assert_eq!(floats(&out.output)[1], 2.0);
    // Large uploads: an envelope (HPKE-wrapped AES-256-GCM key).
    let upload = seal_upload(
        &launched.public_key(),
        "hospital-a.csv",
        &column(&[4.0, 6.0]),
    )
    .unwrap();
    assert_eq!(
        floats(
            &launched
                .run_uploads(std::slice::from_ref(&upload))
                .unwrap()
                .output
        )[1],
        5.0
    );
    let mut relabelled = upload.clone();
    relabelled.wrapped_key.name = "hospital-b.csv".into();
    assert!(launched.run_uploads(&[relabelled]).is_err());
    let stranger = LaunchedWorkload::launch(w.clone(), &platform, 1, b"x", b"");
    assert!(stranger.run_uploads(&[upload]).is_err());
    let sealed = launched.seal(b"model state").unwrap();
    let again = LaunchedWorkload::launch(w, &platform, 1, b"other", b"");
    assert_eq!(again.unseal(&sealed).unwrap().as_slice(), b"model state");
    let other_code = Workload::new(
        STATS
            .replace(
                "(memory (export \"memory\") 1)",
                "(memory (export \"memory\") 2)",
            )
            .as_bytes(),
        LaunchConfig::default(),
    )
    .unwrap();
    let other = LaunchedWorkload::launch(other_code, &platform, 1, b"n", b"");
    assert!(other.unseal(&sealed).is_err());
    let other_platform = LaunchedWorkload::launch(
        Workload::new(STATS.as_bytes(), LaunchConfig::default()).unwrap(),
        &SimulatedPlatform::from_seed(&[5; 32]),
        1,
        b"n",
        b"",
    );
    assert!(other_platform.unseal(&sealed).is_err());
    let mut tampered = sealed.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    assert!(again.unseal(&tampered).is_err());
}
