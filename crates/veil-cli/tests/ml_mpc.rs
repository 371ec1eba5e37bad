//! `veil ml compile --mpc | party | dealer`: secure inference with each participant its own
//! process over mutual TLS, as on separate machines — and what a participant holding another
//! plan, another model or out-of-range samples, or a forged plan, gets: a refusal before any
//! share is computed.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

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

fn spawn(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_veil"))
        .args(args)
        .env("RAYON_NUM_THREADS", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("veil-ml-mpc-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn free() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `veil mpc init` of two parties on free ports, with a 10 s peer timeout.
fn session(dir: &Path) -> String {
    session_of(dir, 2)
}

/// `veil mpc init` of `n` parties on free ports, with a 10 s peer timeout.
fn session_of(dir: &Path, n: u16) -> String {
    let base = loop {
        let b = free();
        if (1..=n).all(|i| std::net::TcpListener::bind(("127.0.0.1", b + i)).is_ok()) {
            break b;
        }
    };
    let sdir = dir.join("session");
    let out = veil(&[
        "mpc",
        "init",
        "--parties",
        &n.to_string(),
        "--dir",
        sdir.to_str().unwrap(),
        "--base-port",
        &base.to_string(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let path = sdir.join("parties.toml");
    let t = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, t.replace("timeout_secs = 30", "timeout_secs = 10")).unwrap();
    path.to_string_lossy().into_owned()
}

/// The owner's `veil ml compile --mpc --out`.
fn publish(dir: &Path, name: &str, extra: &[&str]) -> String {
    let plan = dir.join(format!("{name}.plan.json"));
    let mut args = vec!["ml", "compile", "--mpc"];
    let m = model(name);
    args.push(&m);
    args.extend(["--out", plan.to_str().unwrap()]);
    args.extend(extra);
    let out = veil(&args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("architecture only"));
    plan.to_string_lossy().into_owned()
}

fn labels_of(report: &str) -> Option<Vec<i64>> {
    let v: serde_json::Value = serde_json::from_str(report.lines().last().unwrap()).unwrap();
    v.get("labels").map(|l| {
        l.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_i64().unwrap())
            .collect()
    })
}

/// The plaintext model's labels of the first `n` digits test images.
fn plain_labels(name: &str, n: usize) -> Vec<i64> {
    let csv = std::fs::read_to_string(digits()).unwrap();
    let rows: Vec<Vec<f64>> = csv
        .lines()
        .skip(1)
        .take(n)
        .map(|l| {
            l.split(',')
                .skip(1)
                .map(|v| v.parse::<f64>().unwrap() / 16.0)
                .collect()
        })
        .collect();
    let graph = veil_ml::onnx::import_file(model(name)).unwrap().graph;
    rows.iter()
        .map(|x| {
            let s = graph.run(x).unwrap().remove(0);
            (0..s.len()).fold(0, |b, i| if s[i] > s[b] { i } else { b }) as i64
        })
        .collect()
}

#[test]
fn each_participant_a_process_only_the_client_learns_the_labels() {
    let dir = scratch("roles");
    let config = session(&dir);
    let plan = publish(&dir, "cnn", &[]);
    let dealer = spawn(&["ml", "dealer", "--config", &config, "--plan", &plan]);
    let cnn = model("cnn");
    let data = digits();
    let owner = spawn(&[
        "ml", "party", "--config", &config, "--id", "0", "--plan", &plan, "--model", &cnn,
        "--format", "json",
    ]);
    let client = spawn(&[
        "ml", "party", "--config", &config, "--id", "1", "--plan", &plan, "--data", &data,
        "--limit", "40", "--batch", "16", "--format", "json",
    ]);
    let (o, c, d) = (
        owner.wait_with_output().unwrap(),
        client.wait_with_output().unwrap(),
        dealer.wait_with_output().unwrap(),
    );
    for (who, out) in [("owner", &o), ("client", &c), ("dealer", &d)] {
        assert!(out.status.success(), "{who}: {}", text(&out.stderr));
    }
    let owner_report = text(&o.stdout);
    assert_eq!(labels_of(&owner_report), None, "the owner learns no label");
    assert!(!owner_report.contains("scores"), "{owner_report}");
    let got = labels_of(&text(&c.stdout)).unwrap();
    assert_eq!(got, plain_labels("cnn", 40));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A participant given another plan (here: one that reveals the scores instead of the label)
/// cannot join: the plan's hash is part of the session, and both sides stop at connection.
#[test]
fn a_party_with_another_plan_is_refused_at_connection() {
    let dir = scratch("otherplan");
    let config = session(&dir);
    let plan = publish(&dir, "mlp", &[]);
    let other = dir.join("scores.plan.json");
    let out = veil(&[
        "ml",
        "compile",
        "--mpc",
        &model("mlp"),
        "--reveal",
        "scores",
        "--out",
        other.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut dealer = spawn(&["ml", "dealer", "--config", &config, "--plan", &plan]);
    let mlp = model("mlp");
    let data = digits();
    let owner = spawn(&[
        "ml", "party", "--config", &config, "--id", "0", "--plan", &plan, "--model", &mlp,
    ]);
    let client = spawn(&[
        "ml",
        "party",
        "--config",
        &config,
        "--id",
        "1",
        "--plan",
        other.to_str().unwrap(),
        "--data",
        &data,
        "--limit",
        "5",
    ]);
    let c = client.wait_with_output().unwrap();
    let o = owner.wait_with_output().unwrap();
    let _ = dealer.kill();
    let _ = dealer.wait();
    assert!(!c.status.success() && !o.status.success());
    let err = text(&c.stderr);
    assert!(err.contains("program"), "the client says why: {err}");
    assert!(
        text(&c.stdout).is_empty(),
        "no prediction: {}",
        text(&c.stdout)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// What each participant can check alone is checked before it connects: the owner's model
/// against the plan, the client's samples against the plan's range, a forged plan.
#[test]
fn mismatches_are_refused_before_connecting() {
    let dir = scratch("local");
    let config = session(&dir);
    let plan = publish(&dir, "mlp", &[]);
    let refuse = |args: &[&str], want: &str| {
        let out = veil(args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: `{want}` not in {err}");
        assert!(!err.contains("panicked"), "{err}");
    };
    let base = ["ml", "party", "--config", &config, "--plan", &plan];
    let with = |extra: &[&str]| -> Vec<String> {
        base.iter().chain(extra).map(|s| (*s).to_string()).collect()
    };
    let call = |extra: &[&str], want: &str| {
        let args = with(extra);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        refuse(&refs, want);
    };
    // The owner with another model.
    call(
        &["--id", "0", "--model", &model("logreg")],
        "does not compile to the plan",
    );
    // The owner without its model; the client without its samples; roles swapped.
    call(&["--id", "0"], "--model");
    call(&["--id", "1"], "--data");
    call(
        &["--id", "1", "--model", &model("mlp")],
        "does not own the model",
    );
    call(
        &["--id", "0", "--model", &model("mlp"), "--data", &digits()],
        "not the client",
    );
    // Samples outside the declared range [-1, 1]: pixels not scaled.
    call(
        &["--id", "1", "--data", &digits(), "--scale", "1"],
        "outside the plan's input range",
    );
    call(&["--id", "5", "--data", &digits()], "is not a party");
    // A forged plan: a pooling window reading past its input would crash or leak memory.
    let forged = dir.join("forged.json");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&plan).unwrap()).unwrap();
    v["nodes"][0]["step"]["linear"]["inn"] = 1_000_000.into();
    std::fs::write(&forged, serde_json::to_vec(&v).unwrap()).unwrap();
    refuse(
        &[
            "ml",
            "party",
            "--config",
            &config,
            "--plan",
            forged.to_str().unwrap(),
            "--id",
            "1",
            "--data",
            &digits(),
        ],
        "not a usable MPC plan",
    );
    refuse(
        &[
            "ml",
            "dealer",
            "--config",
            &config,
            "--plan",
            forged.to_str().unwrap(),
        ],
        "not a usable MPC plan",
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `veil ml train` on a vertical split: the top half of each image at party 0, the bottom half
/// and the labels at party 1; the owner's ONNX model then runs under MPC.
#[test]
fn train_on_a_column_split_and_run_the_model() {
    let dir = scratch("train");
    let csv = std::fs::read_to_string(digits()).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    let write = |name: &str, cols: std::ops::Range<usize>, rows: &[Vec<&str>]| {
        let mut text = header[cols.clone()].join(",") + "\n";
        for r in rows {
            text += &(r[cols.clone()].join(",") + "\n");
        }
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_string_lossy().into_owned()
    };
    let a = write("a.csv", 1..33, &rows[..300]);
    // Party 1: the label column then pixels 32..64.
    let mut b_text = format!("label,{}\n", header[33..].join(","));
    for r in &rows[..300] {
        b_text += &format!("{},{}\n", r[0], r[33..].join(","));
    }
    let b = dir.join("b.csv");
    std::fs::write(&b, b_text).unwrap();
    let test = write("test.csv", 0..65, &rows[300..]);
    let out = dir.join("model.onnx");
    let run = veil(&[
        "ml",
        "train",
        "--split",
        "columns",
        "--part",
        &a,
        "--part",
        b.to_str().unwrap(),
        "--owner",
        "1",
        "--epochs",
        "5",
        "--batch-size",
        "30",
        "--rate",
        "1",
        "--out",
        out.to_str().unwrap(),
        "--test",
        &test,
    ]);
    let stdout = text(&run.stdout);
    assert!(run.status.success(), "{stdout}{}", text(&run.stderr));
    let line = stdout
        .lines()
        .find(|l| l.contains("largest weight difference"))
        .unwrap();
    let diff: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(diff < 0.05, "{line}");
    let run = veil(&["ml", "run", out.to_str().unwrap(), "--mpc", "--data", &test]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert!(
        text(&run.stdout).contains("agreement with the plaintext model: 60/60"),
        "{}",
        text(&run.stdout)
    );
    // Two files with labels in a column split: refused, naming the rule.
    let run = veil(&[
        "ml",
        "train",
        "--split",
        "columns",
        "--part",
        b.to_str().unwrap(),
        "--part",
        b.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(run.status.code(), Some(1));
    assert!(
        text(&run.stderr).contains("exactly one party"),
        "{}",
        text(&run.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The dealer-free family: three party processes over mutual TLS and no dealer process; the
/// client (party 1) learns the labels, the owner and the third party nothing.
#[test]
fn three_parties_without_a_dealer_over_tls() {
    let dir = scratch("rss");
    let config = session_of(&dir, 3);
    let plan = publish(&dir, "cnn", &[]);
    let cnn = model("cnn");
    let data = digits();
    let common = [
        "ml",
        "party",
        "--config",
        &config,
        "--plan",
        &plan,
        "--protocol",
        "replicated",
    ];
    let with = |extra: &[&str]| -> Vec<String> {
        common
            .iter()
            .chain(extra)
            .map(|s| (*s).to_string())
            .collect()
    };
    let start = |extra: &[&str]| {
        let args = with(extra);
        spawn(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let owner = start(&["--id", "0", "--model", &cnn, "--format", "json"]);
    let client = start(&[
        "--id", "1", "--data", &data, "--limit", "30", "--format", "json",
    ]);
    let third = start(&["--id", "2", "--format", "json"]);
    let outs: Vec<Output> = [owner, client, third]
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    for (id, out) in outs.iter().enumerate() {
        assert!(out.status.success(), "party {id}: {}", text(&out.stderr));
    }
    assert_eq!(labels_of(&text(&outs[0].stdout)), None);
    assert_eq!(labels_of(&text(&outs[2].stdout)), None);
    assert_eq!(
        labels_of(&text(&outs[1].stdout)).unwrap(),
        plain_labels("cnn", 30)
    );
    // The third party sent and received, but saw no dealer: its report shows no dealer bytes.
    let third: serde_json::Value =
        serde_json::from_str(text(&outs[2].stdout).lines().last().unwrap()).unwrap();
    assert_eq!(third["dealer_bytes"], 0);
    assert!(third["bytes_sent"].as_u64().unwrap() > 0);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A participant that runs the dealer family cannot join a replicated session (the protocol
/// is part of the session hash), and the replicated family refuses a two-party session.
#[test]
fn the_protocol_is_part_of_the_session() {
    let dir = scratch("mixed");
    let config = session_of(&dir, 3);
    let plan = publish(&dir, "logreg", &[]);
    let m = model("logreg");
    let data = digits();
    let a = spawn(&[
        "ml",
        "party",
        "--config",
        &config,
        "--plan",
        &plan,
        "--protocol",
        "replicated",
        "--id",
        "0",
        "--model",
        &m,
    ]);
    let b = spawn(&[
        "ml", "party", "--config", &config, "--plan", &plan, "--id", "1", "--data", &data,
        "--limit", "3",
    ]);
    let c = spawn(&[
        "ml",
        "party",
        "--config",
        &config,
        "--plan",
        &plan,
        "--protocol",
        "replicated",
        "--id",
        "2",
    ]);
    let outs: Vec<Output> = [a, b, c]
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    assert!(outs.iter().all(|o| !o.status.success()));
    let err = text(&outs[1].stderr);
    assert!(err.contains("program") || err.contains("protocol"), "{err}");
    assert!(labels_of_any(&text(&outs[1].stdout)).is_none());

    let two = session(&dir.join("two"));
    let out = veil(&[
        "ml",
        "party",
        "--config",
        &two,
        "--plan",
        &plan,
        "--protocol",
        "replicated",
        "--id",
        "0",
        "--model",
        &m,
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("exactly 3 parties"),
        "{}",
        text(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn labels_of_any(report: &str) -> Option<Vec<i64>> {
    report
        .lines()
        .last()
        .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .and_then(|v| {
            v.get("labels").map(|l| {
                l.as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_i64().unwrap())
                    .collect()
            })
        })
}
