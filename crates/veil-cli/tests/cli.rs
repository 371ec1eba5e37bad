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
    assert!(
        stdout.contains("only it can open it")
            && stdout.contains("[intruder] same platform, other code: refused"),
        "the CC part must release to the workload and refuse the intruder: {stdout}"
    );
    assert!(
        stdout.contains("OK: the data went only to the agreed code")
            && stdout.contains("[audit] room log verifies"),
        "the data-room part must run and its audit log verify: {stdout}"
    );
    assert!(
        stdout.contains("OK: joint results without pooling the data")
            && stdout.contains("OK: every release was paid for before its noise was drawn."),
        "the MPC and DP parts must run: {stdout}"
    );
    assert!(
        stdout.contains("[HE]  encrypted predictions agree")
            && stdout.contains("OK: the model ran"),
        "the encrypted-inference part must run: {stdout}"
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
fn bfv_and_bgv_bench_json_have_every_operation_and_seal_like_budgets() {
    let out = veil(&[
        "he", "bench", "--scheme", "bfv", "--degree", "4096", "--runs", "1", "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let get = |op: &str| rows.iter().find(|r| r["op"] == op).cloned();
    for op in [
        "encode",
        "encrypt_pk",
        "decrypt",
        "add",
        "multiply_plain",
        "multiply+relin",
        "rotate_rows_1",
        "rotate_columns",
        "mod_switch",
    ] {
        let r = get(op).unwrap_or_else(|| panic!("missing {op} in {stdout}"));
        assert!(r["median_us"].as_f64().unwrap() > 0.0, "{r}");
    }
    // N = 4096, 72-bit Q, 20-bit t: a product spends ~32 bits of a ~40-bit budget.
    let fresh = get("noise_budget_fresh").unwrap()["value"]
        .as_u64()
        .unwrap();
    let after = get("noise_budget_after_multiply").unwrap()["value"]
        .as_u64()
        .unwrap();
    assert!(
        (30..60).contains(&fresh) && after < fresh,
        "{fresh} {after}"
    );
    // BGV: every op, a fresh budget, a product that decrypts (checked inside the bench).
    let out = veil(&[
        "he", "bench", "--scheme", "bgv", "--degree", "4096", "--runs", "1", "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("\"mod_switch\"") && stdout.contains("noise_budget_fresh"));
    let out = veil(&["he", "bench", "--scheme", "bfv", "--ops", "nope"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown BFV operation"));
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
        vec!["he", "bench", "--ops", "bootstrap"],
        vec!["he", "bench", "--ops", "bootstrap,add", "--degree", "65536"],
        vec!["he", "bench", "--slots", "64"],
        vec!["he", "bench", "--scheme", "bfv", "--degree", "2048"],
        vec!["he", "bench", "--scheme", "bfv", "--plain-bits", "50"],
        vec!["demo", "--patients", "0"],
    ] {
        let out = veil(&args);
        assert!(!out.status.success(), "{args:?} should fail");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("error"), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
    }
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
        // An unreachable PCCS (loopback, nothing listening): a clear error.
        vec![
            "attest",
            "verify",
            &format!("{v}/dcap/sgx_quote"),
            "--pccs",
            "http://127.0.0.1:9",
        ],
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
            // Keep draining stderr so the server never blocks on a full pipe.
            std::thread::spawn(move || for _ in lines {});
            return (server, url);
        }
    }
}

#[test]
fn attestation_service_and_key_broker_as_separate_processes() {
    let dir = std::env::temp_dir().join(format!("veil-cli-cc-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let p = |name: &str| dir.join(name).to_string_lossy().into_owned();
    let seed = "07".repeat(32);
    std::fs::write(p("model.wasm"), b"(module ;; agreed model)").unwrap();
    std::fs::write(p("other.wasm"), b"(module ;; something else)").unwrap();
    // The simulated platform's key, and the measurement of the agreed workload.
    let out = veil(&[
        "attest",
        "simulate",
        "--workload",
        &p("model.wasm"),
        "--platform-seed",
        &seed,
        "--out",
        &p("ev.bin"),
    ]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap()
            .trim()
            .to_string()
    };
    let (measurement, platform_key) = (field("measurement"), field("platform_key"));
    let policy = format!("tee = [\"sim\"]\n[measurements]\nmeasurement = [\"{measurement}\"]\n");
    std::fs::write(p("policy.toml"), &policy).unwrap();

    let (_attest, attest_url) = start_server(
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
            "--alg",
            "ES384",
            "--audit-log",
            &p("attest.jsonl"),
        ],
        "attestation service on ",
    );
    let out = veil(&[
        "kbs",
        "put",
        "dataset-key",
        "--store",
        &p("kbs"),
        "--policy",
        &p("policy.toml"),
        "--generate",
        "32",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_kbs, kbs_url) = start_server(
        &[
            "kbs",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--store",
            &p("kbs"),
            "--jwks",
            &format!("{attest_url}/.well-known/jwks.json"),
        ],
        "key broker on ",
    );
    let get = |workload: &str, out_file: &str| {
        veil(&[
            "kbs",
            "get",
            "dataset-key",
            "--kbs",
            &kbs_url,
            "--service",
            &attest_url,
            "--workload",
            &p(workload),
            "--platform-seed",
            &seed,
            "--out",
            &p(out_file),
        ])
    };
    let out = get("model.wasm", "released.key");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(p("released.key")).unwrap().len(), 32);
    // Other code: no token, no key, the reason on stderr.
    let out = get("other.wasm", "stolen.key");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("policy policy.toml denied"), "{stderr}");
    assert!(!std::path::Path::new(&p("stolen.key")).exists());
    // A token on its own, then list and revoke.
    let out = veil(&[
        "attest",
        "request",
        "--service",
        &attest_url,
        "--workload",
        &p("model.wasm"),
        "--platform-seed",
        &seed,
    ]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .split('.')
            .count(),
        3
    );
    let out = veil(&["kbs", "list", "--store", &p("kbs"), "--format", "json"]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["name"], "dataset-key");
    assert_eq!(list[0]["revoked"], false);
    assert!(
        veil(&["kbs", "revoke", "dataset-key", "--store", &p("kbs")])
            .status
            .success()
    );
    let out = get("model.wasm", "after-revoke.key");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("revoked"));
    // Bad input: errors, not panics.
    for args in [
        vec!["kbs", "revoke", "nope", "--store", &p("kbs")],
        vec![
            "kbs",
            "put",
            "x",
            "--store",
            &p("kbs"),
            "--policy",
            &p("missing.toml"),
            "--generate",
            "8",
        ],
        vec![
            "kbs",
            "put",
            "x",
            "--store",
            &p("kbs"),
            "--policy",
            &p("policy.toml"),
        ],
        vec![
            "attest",
            "serve",
            "--policy",
            &p("model.wasm"),
            "--listen",
            "127.0.0.1:0",
        ],
    ] {
        let out = veil(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("error") && !stderr.contains("panicked"),
            "{args:?}: {stderr}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn data_room_with_three_party_processes() {
    let dir = std::env::temp_dir().join(format!("veil-cli-room-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let p = |name: &str| dir.join(name).to_string_lossy().into_owned();
    let ok = |args: &[&str]| {
        let out = veil(args);
        assert!(
            out.status.success(),
            "veil {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let parties = ["hospital-a", "hospital-b", "hospital-c"];
    for name in parties {
        ok(&["room", "keygen", "--party", name, "--dir", &p("")]);
    }
    let text = ok(&["room", "platform", "--out", &p("platform.seed")]);
    let platform_key = text
        .lines()
        .find_map(|l| l.strip_prefix("platform key"))
        .unwrap()
        .trim()
        .to_string();
    let create = |code: &str, out: &str| {
        ok(&[
            "room",
            "create",
            "--code",
            code,
            "--party",
            "hospital-a",
            "--party",
            "hospital-b",
            "--party",
            "hospital-c",
            "--keys-dir",
            &p(""),
            "--output-to",
            "hospital-a,hospital-b",
            "--sim-platform-key",
            &platform_key,
            "--out",
            &p(out),
        ])
    };
    create("builtin:stats", "room.toml");
    create("builtin:logreg", "other-room.toml");
    // Creating over an existing manifest is refused.
    assert!(!veil(&[
        "room",
        "create",
        "--code",
        "builtin:stats",
        "--party",
        "hospital-a",
        "--output-to",
        "hospital-a",
        "--keys-dir",
        &p(""),
        "--sim-platform-key",
        &platform_key,
        "--out",
        &p("room.toml"),
    ])
    .status
    .success());

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
    let client = |cmd: &str, party: Option<&str>, extra: &[&str]| {
        let mut args = vec!["room", cmd, "--url", &url];
        let manifest = p("room.toml");
        args.extend(["--manifest", &manifest]);
        let key = party.map(|n| p(&format!("{n}.key")));
        if let Some(k) = &key {
            args.extend(["--key", k]);
        }
        args.extend(extra);
        veil(&args)
    };
    let out = client("verify", None, &["--format", "json"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["verified"], true);
    assert_eq!(v["claims"]["tee"], "sim");

    // A party holding a manifest for other code gets no data path.
    std::fs::write(p("a.csv"), "id,glucose\n1,5.5\n2,6.5\n3,7.5\n").unwrap();
    let out = veil(&[
        "room",
        "upload",
        "--url",
        &url,
        "--manifest",
        &p("other-room.toml"),
        "--key",
        &p("hospital-a.key"),
        "--data",
        &p("a.csv"),
        "--column",
        "glucose",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no data path"));

    // Each party uploads from its own process.
    std::fs::write(p("b.csv"), "glucose\n4.5\n8.5\n").unwrap();
    std::fs::write(p("c.csv"), "glucose\n10\n").unwrap();
    for (party, file, extra) in [
        ("hospital-a", "a.csv", vec!["--column", "glucose"]),
        ("hospital-b", "b.csv", vec![]),
        ("hospital-c", "c.csv", vec![]),
    ] {
        let data = p(file);
        let mut args = vec!["--data", data.as_str()];
        args.extend(extra);
        let out = client("upload", Some(party), &args);
        assert!(
            out.status.success(),
            "{party}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(client("run", Some("hospital-b"), &[]).status.success());
    // Recipients read the pooled statistics; hospital-c is not a recipient.
    for party in ["hospital-a", "hospital-b"] {
        let out = client("fetch-output", Some(party), &["--format", "json"]);
        assert!(out.status.success());
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["count"], 6.0);
        assert!((v["mean"].as_f64().unwrap() - 42.5 / 6.0).abs() < 1e-12);
        assert_eq!(v["max"], 10.0);
    }
    let out = client("fetch-output", Some("hospital-c"), &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a recipient"));

    let out = client("audit", None, &[]);
    assert!(out.status.success());
    let history = String::from_utf8_lossy(&out.stdout);
    assert!(history.contains("audit log verified"), "{history}");
    for needle in [
        "room_created",
        "hospital-c uploaded c.csv",
        "output released to hospital-b",
    ] {
        assert!(history.contains(needle), "{needle}: {history}");
    }
    // The operator edits the log on disk: every reader notices.
    let log = std::fs::read_to_string(p("audit.jsonl")).unwrap();
    std::fs::write(
        p("audit.jsonl"),
        log.replacen("hospital-c", "hospital-x", 1),
    )
    .unwrap();
    let out = client("audit", None, &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("audit log"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn mpc_parties_as_processes_stats_psi_and_a_killed_party() {
    let dir = std::env::temp_dir().join(format!("veil-cli-mpc-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let p = |name: &str| dir.join(name).to_string_lossy().into_owned();
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    // Sessions on free ports: init writes consecutive ports from --base-port.
    let session = |name: &str, n: usize| {
        let base = loop {
            let b = free();
            if (1..=n as u16).all(|i| std::net::TcpListener::bind(("127.0.0.1", b + i)).is_ok()) {
                break b;
            }
        };
        let out = veil(&[
            "mpc",
            "init",
            "--parties",
            &n.to_string(),
            "--dir",
            &p(name),
            "--base-port",
            &base.to_string(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        p(&format!("{name}/parties.toml"))
    };
    let three = session("s3", 3);
    for (i, values) in ["5.5\n6.5\n7.5\n", "4\n9\n", "10\n"].iter().enumerate() {
        std::fs::write(p(&format!("in{i}.csv")), format!("glucose\n{values}")).unwrap();
    }
    let out = veil(&[
        "mpc",
        "run",
        "--config",
        &three,
        "--program",
        "stats",
        "--low",
        "0",
        "--high",
        "12",
        "--bins",
        "4",
        "--inputs",
        &format!("{},{},{}", p("in0.csv"), p("in1.csv"), p("in2.csv")),
        "--format",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "every party learns the result: {text}");
    for v in &lines {
        assert_eq!(v["count"], 6);
        assert!((v["mean"].as_f64().unwrap() - 42.5 / 6.0).abs() < 1e-4);
        assert_eq!(v["histogram"], serde_json::json!([0, 2, 2, 2]));
    }

    // MLP inference: parties 0 and 1 bring rows, party 2 the model; each learns its own rows'
    // classes only.
    std::fs::write(p("rows0.csv"), "x1,x2\n3,1\n0.5,2\n").unwrap();
    std::fs::write(p("rows1.csv"), "-1,4\n5,-2\n").unwrap();
    std::fs::write(
        p("model.json"),
        r#"{"w1": [[1, 0], [0, 1]], "b1": [0, 0], "w2": [[1, 0], [0, 1]], "b2": [0, 0.25]}"#,
    )
    .unwrap();
    let out = veil(&[
        "mpc",
        "run",
        "--config",
        &three,
        "--program",
        "mlp",
        "--inputs",
        &format!("{},{},{}", p("rows0.csv"), p("rows1.csv"), p("model.json")),
        "--format",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert_eq!(lines[0]["predictions"], serde_json::json!([0, 1]), "{text}");
    assert_eq!(lines[1]["predictions"], serde_json::json!([1, 0]), "{text}");
    assert_eq!(
        lines[2],
        serde_json::json!({"rows_classified": 4}),
        "{text}"
    );
    // scores = relu(x) + b2
    let want = [[3.0, 1.25], [0.5, 2.25]];
    for (row, w) in lines[0]["scores"].as_array().unwrap().iter().zip(want) {
        for (got, w) in row.as_array().unwrap().iter().zip(w) {
            assert!((got.as_f64().unwrap() - w).abs() < 1e-3, "{text}");
        }
    }
    // A model of the wrong shape is refused with the reason.
    std::fs::write(
        p("bad.json"),
        r#"{"w1": [[1], [0, 1]], "b1": [0], "w2": [[1]], "b2": [0]}"#,
    )
    .unwrap();
    let out = veil(&[
        "mpc",
        "run",
        "--config",
        &three,
        "--program",
        "mlp",
        "--inputs",
        &format!("{},{},{}", p("rows0.csv"), p("rows1.csv"), p("bad.json")),
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("inputs × hidden"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A party killed mid-protocol (a long training): the others stop, naming it.
    let spawn = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_veil"))
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let long = ["--program", "logreg", "--epochs", "1000000"];
    for i in 0..3 {
        std::fs::write(p(&format!("train{i}.csv")), "0.5,1\n-0.5,0\n0.25,1\n").unwrap();
    }
    let mut dealer_args = vec!["mpc", "dealer", "--config", &three];
    dealer_args.extend(long);
    let mut dealer = spawn(&dealer_args);
    let mut parties: Vec<_> = (0..3)
        .map(|i| {
            let id = i.to_string();
            let input = p(&format!("train{i}.csv"));
            let mut args = vec!["mpc", "party", "--config", &three, "--id", &id];
            args.extend(long);
            args.extend(["--input", input.as_str()]);
            spawn(&args)
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(700));
    parties[2].kill().unwrap();
    let started = std::time::Instant::now();
    for child in parties.drain(..2) {
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(err.contains("party 2"), "{err}");
    }
    assert!(
        started.elapsed() < std::time::Duration::from_secs(40),
        "no hang"
    );
    let _ = parties[0].wait();
    let _ = dealer.kill();
    let _ = dealer.wait();

    // PSI between two processes.
    let two = session("s2", 2);
    std::fs::write(p("mine.txt"), "ann\nbob\ncat\ndan\n").unwrap();
    std::fs::write(p("theirs.txt"), "cat\neve\nann\nfay\n").unwrap();
    let sender = spawn(&[
        "psi",
        "--role",
        "sender",
        "--config",
        &two,
        "--input",
        &p("theirs.txt"),
    ]);
    let out = veil(&[
        "psi",
        "--role",
        "receiver",
        "--config",
        &two,
        "--input",
        &p("mine.txt"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ann\ncat\n");
    assert!(sender.wait_with_output().unwrap().status.success());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn dp_budget_shows_the_ledger_of_a_metadata_file() {
    let dir = std::env::temp_dir().join(format!("veil-cli-dp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // The sample dataset and its metadata come from `veil dp sample`.
    let d = dir.to_string_lossy().into_owned();
    let out = veil(&["dp", "sample", "--dir", &d, "--rows", "500"]);
    assert!(out.status.success());
    let rows = std::fs::read_to_string(dir.join("persons.csv")).unwrap();
    assert_eq!(rows.lines().count(), 501);
    let meta = dir.join("persons.toml");
    std::fs::write(
        &meta,
        std::fs::read_to_string(&meta)
            .unwrap()
            .replace("epsilon = 10.0", "epsilon = 2.0"),
    )
    .unwrap();
    let m = meta.to_string_lossy().into_owned();
    assert!(veil(&["dp", "dataset", "register", "--metadata", &m])
        .status
        .success());
    let json = |args: &[&str]| {
        let out = veil(args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let v = json(&["dp", "budget", "--metadata", &m, "--format", "json"]);
    assert_eq!(v["dataset"], "persons");
    assert_eq!(v["remaining_epsilon"], 2.0);
    assert_eq!(v["charges"], serde_json::json!([]));
    // The ledger defaults to a SQLite file beside the metadata; charges made there show up.
    let db = dir.join("persons.budget.db");
    assert!(db.exists());
    let ledger = veil_dp::ledger::SqliteLedger::open(&db).unwrap();
    ledger
        .charge(
            "persons",
            "alice",
            0.5,
            1e-7,
            "SELECT COUNT(*) FROM persons",
        )
        .unwrap();
    let v = json(&["dp", "budget", "--metadata", &m, "--format", "json"]);
    assert!((v["remaining_epsilon"].as_f64().unwrap() - 1.5).abs() < 1e-9);
    assert!((v["spent_epsilon"].as_f64().unwrap() - 0.5).abs() < 1e-9);
    assert_eq!(v["charges"][0]["analyst"], "alice");
    let out = veil(&["dp", "budget", "--metadata", &m]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("remaining  ε 1.5") && text.contains("SELECT COUNT(*)"),
        "{text}"
    );
    // Lowering the total and registering again applies; what was spent stays spent.
    std::fs::write(
        &meta,
        std::fs::read_to_string(&meta)
            .unwrap()
            .replace("epsilon = 2.0", "epsilon = 0.4"),
    )
    .unwrap();
    assert!(veil(&["dp", "dataset", "register", "--metadata", &m])
        .status
        .success());
    let v = json(&["dp", "budget", "--metadata", &m, "--format", "json"]);
    assert_eq!(v["remaining_epsilon"], 0.0);
    // Bad metadata: a clear error naming the problem, non-zero exit.
    std::fs::write(&meta, "[budget]\nepsilon = -1\n[table.t]\nprivacy_unit = \"id\"\nmax_rows_per_unit = 1\n[table.t.columns]\nid = { type = \"int\" }\n").unwrap();
    let out = veil(&["dp", "budget", "--metadata", &m]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("[budget] epsilon must be a positive number"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `auto_bounds = true` through the CLI: the dry run announces the estimate and its cost;
/// the first query makes it (its own charge) and says so; the next one — another process —
/// reuses it from the ledger for free.
#[test]
fn dp_query_estimates_automatic_bounds_once_through_the_cli() {
    let dir = std::env::temp_dir().join(format!("veil-cli-auto-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.to_string_lossy().into_owned();
    assert!(veil(&["dp", "sample", "--dir", &d, "--rows", "3000"])
        .status
        .success());
    let text = std::fs::read_to_string(dir.join("persons.toml")).unwrap();
    let auto = text.replace(
        "income = { type = \"float\", lower = 0, upper = 500000 }",
        "income = { type = \"float\", auto_bounds = true }",
    );
    assert_ne!(auto, text);
    let m = dir.join("persons.toml");
    std::fs::write(&m, auto).unwrap();
    let m = m.to_string_lossy().into_owned();
    assert!(veil(&["dp", "dataset", "register", "--metadata", &m])
        .status
        .success());
    let t = format!("persons={}", dir.join("persons.csv").display());
    let q = |extra: &[&str]| {
        let mut args = vec![
            "dp",
            "query",
            "--metadata",
            &m,
            "--table",
            &t,
            "--epsilon",
            "1",
        ];
        args.extend_from_slice(extra);
        args.push("SELECT AVG(income) FROM persons");
        veil(&args)
    };
    let out = q(&["--dry-run"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("estimate   persons.income"), "{text}");
    let spent = || {
        let out = veil(&["dp", "budget", "--metadata", &m, "--format", "json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["spent_epsilon"].as_f64().unwrap()
    };
    assert_eq!(spent(), 0.0);
    let out = q(&[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("a DP estimate made now"), "{text}");
    assert!((spent() - 1.1).abs() < 1e-9);
    let out = q(&["--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["estimated_bounds"][0]["estimated_now"], false, "{v}");
    assert!(
        v["estimated_bounds"][0]["upper"].as_f64().unwrap() >= 65_536.0,
        "{v}"
    );
    assert!((spent() - 2.1).abs() < 1e-9);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn dp_query_answers_refuses_and_charges_through_the_cli() {
    let dir = std::env::temp_dir().join(format!("veil-cli-dpq-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.to_string_lossy().into_owned();
    assert!(
        veil(&["dp", "sample", "--dir", &d, "--rows", "3000", "--parquet"])
            .status
            .success()
    );
    let m = dir.join("persons.toml").to_string_lossy().into_owned();
    assert!(veil(&["dp", "dataset", "register", "--metadata", &m])
        .status
        .success());
    let t = format!("persons={}", dir.join("persons.csv").display());
    let q = |extra: &[&str], sql: &str| {
        let mut args = vec!["dp", "query", "--metadata", &m, "--table", &t];
        args.extend_from_slice(extra);
        args.push(sql);
        veil(&args)
    };
    // JSON: one object with the documented keys.
    let out = q(
        &["--epsilon", "1", "--format", "json"],
        "SELECT sex, COUNT(*) AS n FROM persons GROUP BY sex ORDER BY sex",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for key in [
        "columns",
        "rows",
        "epsilon",
        "delta",
        "remaining_epsilon",
        "remaining_delta",
        "accuracy",
    ] {
        assert!(v.get(key).is_some(), "{key} missing: {v}");
    }
    assert_eq!(v["columns"], serde_json::json!(["sex", "n"]));
    assert_eq!(v["rows"][0][0], "F");
    let n = v["rows"][0][1].as_f64().unwrap() + v["rows"][1][1].as_f64().unwrap();
    assert!((n - 3000.0).abs() < 60.0, "{v}");
    assert_eq!(v["epsilon"], 1.0);
    assert!((v["remaining_epsilon"].as_f64().unwrap() - 9.0).abs() < 1e-9);
    assert!(v["accuracy"]["n"].as_f64().unwrap() > 0.0);
    // The same rows from Parquet.
    let pq = format!("persons={}", dir.join("persons.parquet").display());
    let out = veil(&[
        "dp",
        "query",
        "--metadata",
        &m,
        "--table",
        &pq,
        "--epsilon",
        "1",
        "--format",
        "json",
        "SELECT COUNT(*) AS n, MEDIAN(age) FROM persons WHERE sex = 'F'",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let females = std::fs::read_to_string(dir.join("persons.csv"))
        .unwrap()
        .lines()
        .filter(|l| l.contains(",F,"))
        .count() as f64;
    assert!(
        (v["rows"][0][0].as_f64().unwrap() - females).abs() < 40.0,
        "{v}"
    );
    // Table format prints the cost.
    let out = q(
        &["--epsilon", "0.5"],
        "SELECT AVG(age) FROM persons WHERE income > 20000",
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("cost       ε 0.5"),
        "{text}"
    );
    // A rejected query exits non-zero with the reason and charges nothing.
    let out = q(&["--epsilon", "1"], "SELECT * FROM persons");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("row-level output"), "{err}");
    let out = veil(&["dp", "budget", "--metadata", &m, "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        (v["spent_epsilon"].as_f64().unwrap() - 2.5).abs() < 1e-9,
        "{v}"
    );
    assert_eq!(v["charges"].as_array().unwrap().len(), 3);
    // More than the budget: refused, nothing charged.
    let out = q(&["--epsilon", "9"], "SELECT COUNT(*) FROM persons");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("budget exhausted"));
    // Bad arguments are errors, not panics.
    let count = "SELECT COUNT(*) FROM persons";
    for extra in [
        &["--table", "persons", "--epsilon", "1"][..],
        &["--epsilon", "1"][..],
        &["--table", &t, "--epsilon", "-1"][..],
    ] {
        let mut args = vec!["dp", "query", "--metadata", &m];
        args.extend_from_slice(extra);
        args.push(count);
        let out = veil(&args);
        assert!(!out.status.success(), "{args:?}");
        assert!(
            !String::from_utf8_lossy(&out.stderr).contains("panicked"),
            "{args:?}"
        );
    }
    // A Ballista backend in a veil built without it: refused before anything runs, saying
    // how to get it (the cluster itself is tested in veil-dp-ballista's tests).
    if !cfg!(feature = "ballista") {
        let out = q(
            &["--epsilon", "1", "--backend", "ballista://127.0.0.1:9"],
            "SELECT COUNT(*) AS n FROM persons",
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("--features ballista"),
            "{err}"
        );
    }
    // The same through a live PostgreSQL backend, charged to the same ledger.
    if let Some(server) = veil_dp::testing::PostgresServer::start("cli").unwrap() {
        let psql = |sql: &str| {
            let ok = Command::new("psql")
                .args([
                    "-q",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &server.port.to_string(),
                    "-U",
                    "veil",
                    "-d",
                    "postgres",
                    "-c",
                    sql,
                ])
                .status()
                .unwrap();
            assert!(ok.success(), "{sql}");
        };
        psql(
            "CREATE TABLE persons (person_id bigint, age int, income float8, sex text, state text)",
        );
        psql(&format!(
            "\\copy persons FROM '{}' WITH (FORMAT csv, HEADER true)",
            dir.join("persons.csv").display()
        ));
        let url = format!("postgres://veil@127.0.0.1:{}/postgres", server.port);
        let out = veil(&[
            "dp",
            "query",
            "--metadata",
            &m,
            "--backend",
            &url,
            "--epsilon",
            "1",
            "--format",
            "json",
            "SELECT COUNT(*) AS n FROM persons WHERE age > 40",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(
            (v["remaining_epsilon"].as_f64().unwrap() - 6.5).abs() < 1e-9,
            "{v}"
        );
    } else {
        assert!(
            std::env::var_os("CI").is_none(),
            "PostgreSQL is not installed"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
