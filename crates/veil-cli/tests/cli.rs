//! The `veil` command end to end, as a user runs it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

use std::process::Command;

fn veil(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_veil"))
        .args(args)
        .env("RAYON_NUM_THREADS", "1")
        .output()
        .unwrap()
}

#[test]
fn demo_runs_and_reports_small_errors() {
    let out = veil(&["demo", "--patients", "256"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("OK: the server computed on data it never saw."),
        "{stdout}"
    );
    assert!(
        stdout.contains("needs the secret key"),
        "the server must fail to decrypt: {stdout}"
    );
}

#[test]
fn bench_json_has_every_operation() {
    let out = veil(&["he", "bench", "--degree", "4096", "--runs", "1", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut ops = Vec::new();
    for line in stdout.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["degree"], 4096);
        assert!(v["runs"].as_u64().unwrap() >= 1);
        let op = v["op"].as_str().unwrap().to_string();
        if op == "precision_log2_error" {
            // N = 4096 with scale 2^20 is the low-precision preset.
            assert!(v["value"].as_f64().unwrap() < -5.0);
        } else {
            assert!(v["median_us"].as_f64().unwrap() > 0.0, "{line}");
        }
        ops.push(op);
    }
    for expected in [
        "encode",
        "encrypt_pk",
        "encrypt_sk",
        "decrypt",
        "add",
        "multiply_plain",
        "multiply+relin",
        "rescale",
        "rotate_1",
        "keygen_relin",
        "keygen_galois_1step",
    ] {
        assert!(
            ops.iter().any(|o| o == expected),
            "missing {expected} in {ops:?}"
        );
    }
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    for args in [
        vec!["he", "bench", "--degree", "3000"],
        vec![
            "he",
            "bench",
            "--degree",
            "8192",
            "--moduli",
            "60,40,40,40,40,60",
        ],
        vec!["he", "bench", "--moduli", "sixty"],
        vec!["he", "bench", "--runs", "0"],
        vec!["demo", "--patients", "0"],
    ] {
        let out = veil(&args);
        assert!(!out.status.success(), "{args:?} should fail");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("error"), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
    }
}

/// The recorded evidence beside the repository (`../shared/vectors`), or `VEIL_VECTORS`.
fn vectors() -> Option<String> {
    let dir = std::env::var("VEIL_VECTORS")
        .unwrap_or_else(|_| format!("{}/../../../shared/vectors", env!("CARGO_MANIFEST_DIR")));
    if std::path::Path::new(&dir).join("dcap").is_dir() {
        Some(dir)
    } else {
        eprintln!("skipped: recorded evidence not found at {dir} (set VEIL_VECTORS)");
        None
    }
}

#[test]
fn attest_verify_real_quotes() {
    let Some(v) = vectors() else { return };
    let out = veil(&[
        "attest",
        "verify",
        &format!("{v}/dcap/tdx_quote"),
        "--collateral",
        &format!("{v}/dcap/tdx_quote_collateral.json"),
        "--at",
        "2025-07-01T00:00:00Z",
        "--format",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let claims: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(claims["tee"], "tdx");
    assert_eq!(claims["tcb_status"], "UpToDate");
    // Refused: exit 1, the exact reason on stderr, nothing on stdout.
    let out = veil(&[
        "attest",
        "verify",
        &format!("{v}/dcap/tdx_quote_outdated"),
        "--collateral",
        &format!("{v}/dcap/tdx_quote_outdated_collateral.json"),
        "--at",
        "2026-03-01T00:00:00Z",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("rejected") && stderr.contains("TCB"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
    // SEV-SNP with its VCEK.
    let out = veil(&[
        "attest",
        "verify",
        &format!("{v}/trustee/snp-test-report.bin"),
        "--vcek",
        &format!("{v}/trustee/snp-test-vcek.der"),
        "--format",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let claims: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(claims["tee"], "snp");
    // Missing collateral, bad time, unknown file: errors, not panics.
    for args in [
        vec!["attest", "verify", &format!("{v}/dcap/sgx_quote")],
        vec![
            "attest",
            "verify",
            &format!("{v}/README.md"),
            "--collateral",
            &format!("{v}/dcap/sgx_quote_collateral.json"),
        ],
        vec!["attest", "verify", "/nonexistent", "--at", "yesterday"],
    ] {
        let out = veil(&args.iter().map(|s| s.as_ref()).collect::<Vec<&str>>());
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
    }
}

#[test]
fn attest_simulate_then_verify() {
    let dir = std::env::temp_dir().join(format!("veil-cli-sim-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let workload = dir.join("workload.wat");
    std::fs::write(&workload, "(module)").unwrap();
    let evidence = dir.join("evidence.bin");
    let seed = "07".repeat(32);
    let out = veil(&[
        "attest",
        "simulate",
        "--workload",
        workload.to_str().unwrap(),
        "--nonce",
        "n1",
        "--public-key",
        "aabb",
        "--platform-seed",
        &seed,
        "--out",
        evidence.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let key = stdout
        .lines()
        .find_map(|l| l.strip_prefix("platform_key   "))
        .unwrap()
        .to_string();
    let out = veil(&[
        "attest",
        "verify",
        evidence.to_str().unwrap(),
        "--sim-platform-key",
        &key,
        "--format",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let claims: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(claims["tee"], "sim");
    let wrong = "08".repeat(32);
    let out = veil(&[
        "attest",
        "verify",
        evidence.to_str().unwrap(),
        "--sim-platform-key",
        &wrong,
    ]);
    assert_eq!(out.status.code(), Some(1));
    std::fs::remove_dir_all(dir).unwrap();
}
