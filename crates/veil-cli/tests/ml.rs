//! `veil ml …` end to end, as a user runs it on the committed digits models.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

use std::process::{Command, Output};

const MODELS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../veil-ml/models");

fn model(name: &str) -> String {
    format!("{MODELS}/{name}.onnx")
}

fn digits() -> String {
    format!("{MODELS}/digits_test.csv")
}

fn veil(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_veil"))
        .args(args)
        .env("RAYON_NUM_THREADS", "1")
        .output()
        .unwrap()
}

fn ok(args: &[&str]) -> String {
    let out = veil(args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "veil {args:?}\nstdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The `k` of the first `… k/n …` after `prefix` on a line.
fn fraction_after(text: &str, prefix: &str) -> (usize, usize) {
    let line = text
        .lines()
        .find(|l| l.contains(prefix))
        .unwrap_or_else(|| panic!("no `{prefix}` in {text}"));
    let rest = &line[line.find(prefix).unwrap() + prefix.len()..];
    let frac = rest.split_whitespace().next().unwrap();
    let (k, n) = frac.split_once('/').unwrap();
    (k.parse().unwrap(), n.parse().unwrap())
}

/// A failure the user can read: exit status 1, an `error:` sentence, no panic.
fn fails_cleanly(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

#[test]
fn inspect_says_the_tree_ensemble_needs_batch_packing_under_he() {
    let out = ok(&["ml", "inspect", &model("forest")]);
    assert!(out.contains("skl2onnx"), "{out}");
    assert!(out.contains("ai.onnx.ml opset"), "{out}");
    let he = out
        .lines()
        .find(|l| l.trim_start().starts_with("he "))
        .unwrap();
    assert!(he.contains("supported with --pack batch only"), "{he}");
    // MPC has no tree ensembles: the node and op are named.
    let mpc = out
        .lines()
        .find(|l| l.trim_start().starts_with("mpc "))
        .unwrap();
    assert!(
        mpc.contains("not supported") && mpc.contains("TreeEnsembleClassifier"),
        "{mpc}"
    );
}

#[test]
fn inspect_lists_nodes_and_supported_backends() {
    let out = ok(&["ml", "inspect", &model("mlp")]);
    assert!(out.contains("Linear") && out.contains("Square"), "{out}");
    assert!(out.contains("[64] -> [32]"), "{out}");
    assert!(out.contains("he   supported"), "{out}");
    assert!(out.contains("mpc  supported"), "{out}");
}

#[test]
fn compile_prints_a_128_bit_plan_for_the_mlp() {
    let out = ok(&["ml", "compile", &model("mlp"), "--input-range", "0,1"]);
    for want in [
        "multiplicative depth: 3",
        "ring degree N = ",
        "moduli: ",
        "security: 128-bit",
        "Galois keys: ",
        "public context (server keys): ",
        "one query (",
        "expected precision",
    ] {
        assert!(out.contains(want), "missing `{want}` in {out}");
    }
    // Calibration gives a plan too.
    let out = ok(&[
        "ml",
        "compile",
        &model("mlp"),
        "--calibration",
        &digits(),
        "--scale",
        "0.0625",
    ]);
    assert!(out.contains("measured on 360 samples"), "{out}");
    assert!(out.contains("security: 128-bit"), "{out}");
    // The same samples as a NumPy array (what `numpy.save` writes: (360, 8, 8) of f8).
    let text = std::fs::read_to_string(digits()).unwrap();
    let values: Vec<f64> = text
        .lines()
        .skip(1)
        .flat_map(|l| l.split(',').skip(1).map(|v| v.parse::<f64>().unwrap()))
        .collect();
    let mut header = "{'descr': '<f8', 'fortran_order': False, 'shape': (360, 8, 8), }".to_string();
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut npy = b"\x93NUMPY\x01\x00".to_vec();
    npy.extend((header.len() as u16).to_le_bytes());
    npy.extend(header.as_bytes());
    npy.extend(values.iter().flat_map(|v| v.to_le_bytes()));
    let path = std::env::temp_dir().join(format!("veil-digits-{}.npy", std::process::id()));
    std::fs::write(&path, &npy).unwrap();
    let from_npy = ok(&[
        "ml",
        "compile",
        &model("mlp"),
        "--calibration",
        path.to_str().unwrap(),
        "--scale",
        "0.0625",
    ]);
    // Same samples, same plan.
    let plan_lines = |o: &str| -> Vec<String> {
        o.lines()
            .filter(|l| l.contains("moduli:") || l.contains("bounded by"))
            .map(String::from)
            .collect()
    };
    assert_eq!(plan_lines(&from_npy), plan_lines(&out), "{from_npy}");
    // A truncated array is a sentence, not a panic.
    std::fs::write(&path, &npy[..npy.len() - 3]).unwrap();
    let bad = veil(&[
        "ml",
        "compile",
        &model("mlp"),
        "--calibration",
        path.to_str().unwrap(),
    ]);
    assert!(fails_cleanly(&bad).contains(".npy"));
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn he_run_on_logreg_agrees_with_plaintext() {
    let out = ok(&[
        "ml",
        "run",
        "--he",
        &model("logreg"),
        "--data",
        &digits(),
        "--limit",
        "20",
        "--pack",
        "single",
    ]);
    assert!(out.contains("latency packing"), "{out}");
    let (agree, n) = fraction_after(&out, "agreement with the plaintext model: ");
    assert_eq!(n, 20, "{out}");
    // Flooding is random: the logits' error has σ ≈ 0.05 here and the top two logits of these
    // images are further apart than that by a wide margin, so 20/20 is the rule; 18/20 leaves
    // room for two unlucky near-ties without letting a broken backend through.
    assert!(agree >= 18, "{out}");
    for want in [
        "per query",
        "per answer",
        "public context for the server: ",
        "ms/sample",
    ] {
        assert!(out.contains(want), "missing `{want}` in {out}");
    }
    assert!(out.contains("kB per query"), "the query size: {out}");
    assert!(out.contains("MB"), "the public context size: {out}");
}

#[test]
fn mpc_run_on_the_mlp_agrees_exactly() {
    let out = ok(&[
        "ml",
        "run",
        "--mpc",
        &model("mlp"),
        "--data",
        &digits(),
        "--limit",
        "12",
        "--batch",
        "5",
    ]);
    assert_eq!(
        fraction_after(&out, "agreement with the plaintext model: "),
        (12, 12),
        "{out}"
    );
    assert!(out.contains("ms/image") && out.contains("B/image"), "{out}");
    let out = ok(&[
        "ml",
        "run",
        "--mpc",
        &model("logreg"),
        "--data",
        &digits(),
        "--limit",
        "6",
        "--parties",
        "3",
        "--reveal",
        "scores",
    ]);
    assert_eq!(
        fraction_after(&out, "agreement with the plaintext model: "),
        (6, 6),
        "{out}"
    );
    assert!(out.contains("largest score error"), "{out}");
}

#[test]
fn bad_inputs_fail_with_a_sentence() {
    let dir = std::env::temp_dir().join(format!("veil-ml-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // A truncated model.
    let bytes = std::fs::read(model("mlp")).unwrap();
    let truncated = dir.join("truncated.onnx");
    std::fs::write(&truncated, &bytes[..bytes.len() / 3]).unwrap();
    let truncated = truncated.to_string_lossy().into_owned();
    for args in [
        vec!["ml", "inspect", truncated.as_str()],
        vec!["ml", "compile", truncated.as_str()],
        vec!["ml", "run", "--he", truncated.as_str(), "--data", "x.csv"],
    ] {
        let err = fails_cleanly(&veil(&args));
        assert!(err.contains("not a readable ONNX model"), "{err}");
    }
    // A missing model and a missing data file.
    let err = fails_cleanly(&veil(&["ml", "inspect", "/nonexistent/model.onnx"]));
    assert!(err.contains("No such file"), "{err}");
    let err = fails_cleanly(&veil(&[
        "ml",
        "run",
        "--mpc",
        &model("logreg"),
        "--data",
        "/nonexistent/data.csv",
    ]));
    assert!(err.contains("cannot read the data file"), "{err}");
    // Bad CSV: a non-number, then the wrong number of features.
    let bad = dir.join("bad.csv");
    std::fs::write(&bad, "label,a,b\n1,0.5,zebra\n").unwrap();
    let err = fails_cleanly(&veil(&[
        "ml",
        "run",
        "--he",
        &model("logreg"),
        "--data",
        &bad.to_string_lossy(),
    ]));
    assert!(err.contains("line 2") && err.contains("zebra"), "{err}");
    std::fs::write(&bad, "label,a,b\n1,0.5,0.25\n").unwrap();
    let err = fails_cleanly(&veil(&[
        "ml",
        "run",
        "--mpc",
        &model("logreg"),
        "--data",
        &bad.to_string_lossy(),
    ]));
    assert!(err.contains("2 features") && err.contains("64"), "{err}");
    // An unsupported model under a backend: exit 1 naming the node and the op.
    let err = fails_cleanly(&veil(&[
        "ml",
        "run",
        "--he",
        &model("forest"),
        "--data",
        &digits(),
        "--limit",
        "2",
    ]));
    assert!(err.contains("TreeEnsemble"), "{err}");
    let err = fails_cleanly(&veil(&["ml", "compile", &model("forest")]));
    assert!(err.contains("TreeEnsembleClassifier"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Throughput packing through `run`: `auto` picks it from 16 samples on.
#[test]
fn he_run_packs_a_batch_automatically() {
    let out = ok(&[
        "ml",
        "run",
        "--he",
        &model("mlp"),
        "--data",
        &digits(),
        "--limit",
        "100",
    ]);
    assert!(out.contains("throughput packing"), "{out}");
    assert!(
        out.contains("0 Galois keys"),
        "no rotation in batch packing: {out}"
    );
    let (agree, n) = fraction_after(&out, "agreement with the plaintext model: ");
    assert_eq!(n, 100, "{out}");
    assert!(agree >= 97, "{out}");
    assert!(out.contains("samples/s"), "{out}");
}

/// The client/server split over files: compile --out, keygen, encrypt, eval (public context
/// only), decrypt with the labels; then what a careless or hostile user gives each step.
#[test]
fn client_and_server_split_over_files() {
    let dir = std::env::temp_dir().join(format!("veil-ml-split-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let f = |name: &str| dir.join(name).to_string_lossy().into_owned();
    for (name, pack) in [("cnn", "batch"), ("logreg", "single")] {
        let plan = f(&format!("{name}-{pack}.plan"));
        // The client gets the plan without the model's weights.
        let client = f(&format!("{name}-{pack}.client"));
        let (public, secret) = (
            f(&format!("{name}-{pack}.pub")),
            f(&format!("{name}-{pack}.key")),
        );
        let (query, answer) = (
            f(&format!("{name}-{pack}.q")),
            f(&format!("{name}-{pack}.a")),
        );
        let out = ok(&[
            "ml",
            "compile",
            &model(name),
            "--calibration",
            &digits(),
            "--pack",
            pack,
            "--out",
            &plan,
            "--client-plan",
            &client,
        ]);
        assert!(out.contains("plan saved to"), "{out}");
        assert!(out.contains("client plan (no weights) saved to"), "{out}");
        ok(&[
            "ml", "keygen", "--plan", &client, "--public", &public, "--secret", &secret,
        ]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&secret).unwrap().permissions().mode();
            assert_eq!(
                mode & 0o077,
                0,
                "the secret key must not be readable by others"
            );
        }
        // The secret key is never overwritten.
        let again = veil(&[
            "ml", "keygen", "--plan", &client, "--public", &public, "--secret", &secret,
        ]);
        fails_cleanly(&again);
        let query_pk = format!("{query}.pk");
        ok(&[
            "ml",
            "encrypt",
            "--plan",
            &client,
            "--public",
            &public,
            "--data",
            &digits(),
            "--limit",
            "40",
            "--out",
            &query_pk,
        ]);
        // With the secret key the query is seeded: about half the bytes.
        let out = ok(&[
            "ml",
            "encrypt",
            "--plan",
            &client,
            "--public",
            &public,
            "--secret",
            &secret,
            "--data",
            &digits(),
            "--limit",
            "40",
            "--out",
            &query,
        ]);
        assert!(out.contains("seeded"), "{out}");
        let (pk_len, seeded_len) = (
            std::fs::metadata(&query_pk).unwrap().len(),
            std::fs::metadata(&query).unwrap().len(),
        );
        assert!(
            seeded_len * 10 < pk_len * 6,
            "seeded {seeded_len} vs {pk_len}"
        );
        // A server given the client's plan would answer a constant: refused.
        let err = fails_cleanly(&veil(&[
            "ml", "eval", "--plan", &client, "--public", &public, "--query", &query, "--out",
            &answer,
        ]));
        assert!(err.contains("client plan"), "{err}");
        let out = ok(&[
            "ml", "eval", "--plan", &plan, "--public", &public, "--query", &query, "--out", &answer,
        ]);
        assert!(out.contains("evaluated 40 sample(s)"), "{out}");
        let out = veil(&[
            "ml",
            "decrypt",
            "--plan",
            &client,
            "--public",
            &public,
            "--secret",
            &secret,
            "--answer",
            &answer,
            "--labels",
            &digits(),
        ]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert_eq!(
            stdout.lines().count(),
            41,
            "a header and a line per sample: {stdout}"
        );
        let accuracy: f64 = stderr
            .split("accuracy: ")
            .nth(1)
            .and_then(|r| r.split('(').nth(1))
            .and_then(|r| r.split('%').next())
            .unwrap()
            .parse()
            .unwrap();
        assert!(accuracy >= 90.0, "{stderr}");
    }
    // Files of one plan do not fit another: refused with a sentence.
    let (cnn, logreg) = (f("cnn-batch.plan"), f("logreg-single.plan"));
    let wrong_ctx = veil(&[
        "ml",
        "eval",
        "--plan",
        &logreg,
        "--public",
        &f("cnn-batch.pub"),
        "--query",
        &f("logreg-single.q"),
        "--out",
        &f("x"),
    ]);
    assert!(fails_cleanly(&wrong_ctx).contains("other parameters"));
    let wrong_query = veil(&[
        "ml",
        "eval",
        "--plan",
        &cnn,
        "--public",
        &f("cnn-batch.pub"),
        "--query",
        &f("logreg-single.q"),
        "--out",
        &f("x"),
    ]);
    fails_cleanly(&wrong_query);
    // A tampered plan, a truncated query, a plan in place of a key: errors, not panics.
    let mut bad = std::fs::read(&logreg).unwrap();
    bad.truncate(bad.len() / 2);
    std::fs::write(f("bad.plan"), &bad).unwrap();
    fails_cleanly(&veil(&[
        "ml",
        "keygen",
        "--plan",
        &f("bad.plan"),
        "--public",
        &f("p"),
        "--secret",
        &f("s"),
    ]));
    let mut q = std::fs::read(f("cnn-batch.q")).unwrap();
    q.truncate(q.len() - 10);
    std::fs::write(f("bad.q"), &q).unwrap();
    fails_cleanly(&veil(&[
        "ml",
        "eval",
        "--plan",
        &cnn,
        "--public",
        &f("cnn-batch.pub"),
        "--query",
        &f("bad.q"),
        "--out",
        &f("x"),
    ]));
    fails_cleanly(&veil(&[
        "ml",
        "decrypt",
        "--plan",
        &cnn,
        "--public",
        &f("cnn-batch.pub"),
        "--secret",
        &cnn,
        "--answer",
        &f("cnn-batch.a"),
    ]));
    // The server is never handed the secret key... and decrypting needs it.
    let no_key = veil(&[
        "ml",
        "decrypt",
        "--plan",
        &cnn,
        "--public",
        &f("cnn-batch.pub"),
        "--secret",
        &f("missing.key"),
        "--answer",
        &f("cnn-batch.a"),
    ]);
    fails_cleanly(&no_key);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The random forest compiles for batch packing and says why not for single.
#[test]
fn forest_compiles_with_batch_packing_only() {
    let out = ok(&[
        "ml",
        "compile",
        &model("forest"),
        "--calibration",
        &digits(),
        "--pack",
        "batch",
        "--precision",
        "0.03",
    ]);
    assert!(out.contains("leaf products"), "{out}");
    assert!(
        out.contains("activation"),
        "the sigmoid's polynomial: {out}"
    );
    assert!(out.contains("Galois keys: 0"), "{out}");
    let single = veil(&[
        "ml",
        "compile",
        &model("forest"),
        "--calibration",
        &digits(),
    ]);
    assert!(fails_cleanly(&single).contains("batch"));
}
