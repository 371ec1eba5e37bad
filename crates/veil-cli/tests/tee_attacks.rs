//! Confidential computing through the `veil` command, as an attacker and as a new user would
//! try it (issue 12, items 13, 15 and 20).

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

/// The recorded evidence committed with veil-attest's tests (`crates/veil-attest/tests/vectors`),
/// or `VEIL_VECTORS`. Missing evidence fails the test: it is part of the repository.
fn vectors() -> Option<String> {
    let dir = std::env::var("VEIL_VECTORS").unwrap_or_else(|_| {
        format!(
            "{}/../veil-attest/tests/vectors",
            env!("CARGO_MANIFEST_DIR")
        )
    });
    assert!(
        std::path::Path::new(&dir).join("dcap").is_dir(),
        "recorded evidence not found at {dir} (set VEIL_VECTORS)"
    );
    Some(dir)
}

/// A server process killed when the test ends.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `veil <args>` and waits for the line announcing its URL on stderr.
fn start_server(args: &[&str], announce: &str) -> (Server, String) {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_veil"))
        .args(args)
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let server = Server(child);
    let mut lines = std::io::BufReader::new(stderr).lines();
    loop {
        let line = lines
            .next()
            .expect("server exited before announcing its address")
            .unwrap();
        if let Some(rest) = line.find(announce).map(|i| &line[i + announce.len()..]) {
            let url = rest.split_whitespace().next().unwrap().to_string();
            std::thread::spawn(move || for _ in lines {});
            return (server, url);
        }
    }
}

fn ok(args: &[&str]) -> String {
    let out = veil(args);
    assert!(
        out.status.success(),
        "veil {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Issue 12, item 15: a party names its upload (the file name) with newlines and terminal
/// escapes; `veil room audit` printed it raw, so the history showed forged, verified-looking
/// entries ("output released to …") and could recolour or erase lines. Every untrusted
/// string is now escaped: one line per entry, no control character reaches the terminal.
#[test]
fn room_audit_output_cannot_be_forged_by_an_upload_label() {
    let dir = std::env::temp_dir().join(format!("veil-cli-forge-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let p = |name: &str| dir.join(name).to_string_lossy().into_owned();
    for name in ["alice", "mallory"] {
        ok(&["room", "keygen", "--party", name, "--dir", &p("")]);
    }
    let text = ok(&["room", "platform", "--out", &p("platform.seed")]);
    let platform_key = text
        .lines()
        .find_map(|l| l.strip_prefix("platform key"))
        .unwrap()
        .trim()
        .to_string();
    ok(&[
        "room",
        "create",
        "--code",
        "builtin:stats",
        "--party",
        "alice",
        "--party",
        "mallory",
        "--keys-dir",
        &p(""),
        "--output-to",
        "alice",
        "--sim-platform-key",
        &platform_key,
        "--out",
        &p("room.toml"),
    ]);
    let (_room, url) = start_server(
        &[
            "room",
            "serve",
            "--manifest",
            &p("room.toml"),
            "--platform-seed-file",
            &p("platform.seed"),
            "--listen",
            "127.0.0.1:0",
            "--audit-log",
            &p("audit.jsonl"),
        ],
        " on ",
    );
    // The label is the file name: newlines, a forged entry, ANSI colour and erase-line codes.
    let forged = "m.csv\n   7  1800000000  output_released  output released to mallory\
                  \x1b[2K\r\x1b[32m   8  1800000001  output_released  output released to eve\x1b[0m";
    std::fs::write(dir.join(forged), "glucose\n4.5\n").unwrap();
    std::fs::write(p("a.csv"), "glucose\n1\n2\n").unwrap();
    let manifest = p("room.toml");
    for (party, file) in [("alice", p("a.csv")), ("mallory", p(forged))] {
        let key = p(&format!("{party}.key"));
        let out = veil(&[
            "room",
            "upload",
            "--url",
            &url,
            "--manifest",
            &manifest,
            "--key",
            &key,
            "--data",
            &file,
        ]);
        assert!(
            out.status.success(),
            "{party}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(!stdout.contains('\x1b'), "{stdout:?}");
        assert_eq!(stdout.lines().count(), 3, "{stdout:?}");
    }
    let text = ok(&["room", "audit", "--url", &url, "--manifest", &manifest]);
    // No control character reaches the terminal.
    assert!(
        !text.chars().any(|c| c.is_control() && c != '\n'),
        "{text:?}"
    );
    // A header line, then exactly one line per entry, none of them a release.
    let lines: Vec<&str> = text.lines().collect();
    let entries: usize = lines[0]
        .strip_prefix("audit log verified: ")
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{text}"));
    assert_eq!(lines.len(), 1 + entries, "{text}");
    for line in &lines[1..] {
        let event = line.split_whitespace().nth(2).unwrap();
        assert_ne!(event, "output_released", "forged entry: {line:?}");
        assert!(!line.starts_with("   7  1800000000"), "{line:?}");
    }
    // The label is still shown, escaped.
    assert!(text.contains(r"m.csv\n   7  1800000000"), "{text}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Issue 12, item 13: `veil attest verify --at` a time outside the VCEK's validity
/// (2023-01-24 to 2030-01-24) accepted the SNP report. A plain date is accepted for `--at`.
#[test]
fn snp_report_is_refused_outside_its_certificates_validity() {
    let Some(v) = vectors() else { return };
    let report = format!("{v}/trustee/snp-test-report.bin");
    let vcek = format!("{v}/trustee/snp-test-vcek.der");
    for at in ["1990-01-01", "2031-01-01T00:00:00Z"] {
        let out = veil(&["attest", "verify", &report, "--vcek", &vcek, "--at", at]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{at}: {stderr}");
        assert!(stderr.contains("not valid"), "{at}: {stderr}");
    }
    let out = veil(&[
        "attest",
        "verify",
        &report,
        "--vcek",
        &vcek,
        "--at",
        "2025-07-01",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Issue 12, item 20: errors printed Rust debug structures
/// (`CrlExpired { time: UnixTime(…), next_update: UnixTime(…) }`); they are sentences with
/// dates.
#[test]
fn attest_errors_are_sentences_not_debug_structures() {
    let Some(v) = vectors() else { return };
    let out = veil(&[
        "attest",
        "verify",
        &format!("{v}/dcap/sgx_quote"),
        "--collateral",
        &format!("{v}/dcap/sgx_quote_collateral.json"),
        "--at",
        "2027-01-01T00:00:00Z",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("UnixTime"), "{stderr}");
    assert!(!stderr.contains(" { "), "{stderr}");
    assert!(stderr.contains("2027-01-01T00:00:00Z"), "{stderr}");
}

/// Issue 12, item 20: a quote with a TCB status other than `UpToDate` (and advisories)
/// verified with exit status 0 and no word on how to gate on it. The status is printed, a
/// note says how to gate, and `--require-up-to-date` exits 1.
#[test]
fn attest_verify_can_gate_on_the_tcb_status() {
    let Some(v) = vectors() else { return };
    let quote = format!("{v}/dcap/sgx_quote");
    let collateral = format!("{v}/dcap/sgx_quote_collateral.json");
    let base = [
        "attest",
        "verify",
        quote.as_str(),
        "--collateral",
        collateral.as_str(),
        "--at",
        "2025-07-01T00:00:00Z",
    ];
    let out = veil(&base);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains("ConfigurationAndSWHardeningNeeded"),
        "{stdout}"
    );
    assert!(stderr.contains("--require-up-to-date"), "{stderr}");
    let mut strict = base.to_vec();
    strict.push("--require-up-to-date");
    let out = veil(&strict);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("ConfigurationAndSWHardeningNeeded") && stderr.contains("UpToDate"),
        "{stderr}"
    );
    // An up-to-date quote passes the same gate.
    let out = veil(&[
        "attest",
        "verify",
        &format!("{v}/dcap/tdx_quote"),
        "--collateral",
        &format!("{v}/dcap/tdx_quote_collateral.json"),
        "--at",
        "2025-07-01T00:00:00Z",
        "--require-up-to-date",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Issue 12, item 20: `veil attest simulate --nonce` took the nonce as text, while the
/// attestation service issues it as base64url: the evidence bound other bytes than the
/// service's nonce. It is read as the service writes it. The two measurements of one module
/// (the file alone; module plus launch limits, as measured workloads and rooms report it)
/// are both printed, each saying what it is.
#[test]
fn attest_simulate_binds_the_services_base64_nonce_and_names_its_measurements() {
    use sha2::Digest as _;
    let dir = std::env::temp_dir().join(format!("veil-cli-sim-nonce-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let workload = dir.join("workload.wat");
    std::fs::write(&workload, "(module)").unwrap();
    let evidence = dir.join("evidence.bin");
    let nonce: Vec<u8> = (0u8..32).map(|i| i.wrapping_mul(37) ^ 0xa5).collect();
    // base64url without padding, as `GET /nonce` returns it.
    let nonce_b64 = veil_attest::util::encode_b64(&nonce);
    let public_key = "aabb";
    let seed = "07".repeat(32);
    let stdout = ok(&[
        "attest",
        "simulate",
        "--workload",
        workload.to_str().unwrap(),
        "--nonce",
        &nonce_b64,
        "--public-key",
        public_key,
        "--platform-seed",
        &seed,
        "--out",
        evidence.to_str().unwrap(),
    ]);
    let key = stdout
        .lines()
        .find_map(|l| l.strip_prefix("platform_key   "))
        .unwrap()
        .to_string();
    let json = ok(&[
        "attest",
        "verify",
        evidence.to_str().unwrap(),
        "--sim-platform-key",
        &key,
        "--format",
        "json",
    ]);
    let claims: serde_json::Value = serde_json::from_str(&json).unwrap();
    let expected = veil_attest::binding::expected_report_data(&nonce, &[0xaa, 0xbb], b"");
    assert_eq!(claims["report_data"], hex::encode(expected), "{stdout}");
    // Both measurements, each named for what it covers.
    let file_sha384 = hex::encode(sha2::Sha384::digest(b"(module)"));
    assert!(stdout.contains(&file_sha384), "{stdout}");
    let launch = stdout
        .lines()
        .find(|l| l.starts_with("launch_measurement"))
        .unwrap_or_else(|| panic!("no launch measurement: {stdout}"));
    assert!(!launch.contains(&file_sha384), "{launch}");
    assert!(stdout.contains("launch limits"), "{stdout}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// Issue 12, item 17: `veil attest verify-log` checks a service's log against the signed
/// head the running service gives: a copy with its tail cut is refused.
#[test]
fn attest_verify_log_refuses_a_cut_copy_of_the_services_log() {
    let dir = std::env::temp_dir().join(format!("veil-cli-head-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let p = |name: &str| dir.join(name).to_string_lossy().into_owned();
    let seed = "07".repeat(32);
    std::fs::write(p("model.wasm"), b"(module)").unwrap();
    let out = ok(&[
        "attest",
        "simulate",
        "--workload",
        &p("model.wasm"),
        "--platform-seed",
        &seed,
        "--out",
        &p("ignored.bin"),
    ]);
    let platform_key = out
        .lines()
        .find_map(|l| l.strip_prefix("platform_key   "))
        .unwrap()
        .to_string();
    std::fs::write(p("policy.toml"), "tee = [\"sim\"]\n").unwrap();
    let (_svc, url) = start_server(
        &[
            "attest",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--policy",
            &p("policy.toml"),
            "--sim-platform-key",
            &platform_key,
            "--signing-key",
            &p("signing.key"),
            "--audit-log",
            &p("audit.jsonl"),
            "--audit-key",
            &p("audit.key"),
        ],
        "attestation service on ",
    );
    for _ in 0..3 {
        ok(&[
            "attest",
            "request",
            "--service",
            &url,
            "--workload",
            &p("model.wasm"),
            "--platform-seed",
            &seed,
        ]);
    }
    let head = format!("{url}/audit/head");
    let out = ok(&["attest", "verify-log", &p("audit.jsonl"), "--head", &head]);
    assert!(out.contains("3 entries"), "{out}");
    let text = std::fs::read_to_string(p("audit.jsonl")).unwrap();
    let cut: String = text.lines().take(2).map(|l| format!("{l}\n")).collect();
    std::fs::write(p("cut.jsonl"), cut).unwrap();
    let out = veil(&["attest", "verify-log", &p("cut.jsonl"), "--head", &head]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cut"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Issue 12, item 13: `veil attest verify --snp-crl FILE` checks revocation against AMD's CRL
/// read offline (refused when tampered, out of date at `--at`, or from another product line),
/// and VLEK-signed reports verify with `--vlek FILE` (and not as a VCEK). `veil attest serve`
/// takes the same CRLs and refuses to start with a bad one.
#[test]
fn attest_verify_reads_amds_crl_and_vlek_reports() {
    let Some(v) = vectors() else { return };
    let report = format!("{v}/trustee/snp-test-report.bin");
    let vcek = format!("{v}/trustee/snp-test-vcek.der");
    let milan = format!("{v}/amd/milan-vcek.crl");
    let genoa = format!("{v}/amd/genoa-vcek.crl");
    let verify = |extra: &[&str], at: &str| {
        let mut args = vec!["attest", "verify", &report, "--vcek", &vcek, "--at", at];
        args.extend_from_slice(extra);
        veil(&args)
    };
    let out = verify(&["--snp-crl", &milan, "--snp-crl", &genoa], "2025-07-01");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("signing_key    vcek"), "{stdout}");
    for (extra, at, why) in [
        (
            &["--snp-crl", milan.as_str()][..],
            "2026-06-01",
            "nextUpdate",
        ),
        (
            &["--snp-crl", genoa.as_str()][..],
            "2025-07-01",
            "ARK-Milan",
        ),
    ] {
        let out = verify(extra, at);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(why), "{stderr}");
    }
    let dir = std::env::temp_dir().join(format!("veil-cli-snp-crl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut crl = std::fs::read(&milan).unwrap();
    crl[210] ^= 1; // a digit of thisUpdate
    let tampered = dir.join("tampered.crl");
    std::fs::write(&tampered, &crl).unwrap();
    let tampered = tampered.to_str().unwrap();
    let out = verify(&["--snp-crl", tampered], "2025-07-01");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("not signed by"), "{stderr}");

    let vlek_report = format!("{v}/trustee/snp-test-vlek-report.bin");
    let vlek = format!("{v}/trustee/snp-test-vlek.der");
    let out = veil(&[
        "attest",
        "verify",
        &vlek_report,
        "--vlek",
        &vlek,
        "--snp-crl",
        &milan,
        "--at",
        "2025-07-01",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("signing_key    vlek"), "{stdout}");
    let out = veil(&[
        "attest",
        "verify",
        &vlek_report,
        "--vcek",
        &vlek,
        "--at",
        "2025-07-01",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("ASK"), "{stderr}");

    // The service refuses to start with a tampered CRL.
    let p = |name: &str| dir.join(name).to_str().unwrap().to_string();
    std::fs::write(p("policy.toml"), "tee = [\"snp\"]\n").unwrap();
    let out = veil(&[
        "attest",
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--policy",
        &p("policy.toml"),
        "--vcek",
        &vcek,
        "--vlek",
        &vlek,
        "--snp-crl",
        tampered,
        "--signing-key",
        &p("signing.key"),
        "--audit-log",
        &p("audit.jsonl"),
        "--audit-key",
        &p("audit.key"),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("not signed by"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}
