//! `veil demo`: Veil's main job on built-in data, end to end.
//!
//! Homomorphic encryption: a clinic encrypts patients' (normalised) readings and a
//! research partner's model weights are encrypted too; an untrusted server computes a dot
//! product and a sigmoid-approximating polynomial on the ciphertexts; only the clinic decrypts.

use std::time::Instant;

use anyhow::{Context as _, Result};
use clap::Args;
use veil_he::ckks::{CkksContext, CkksParameters, CkksVector, Preset, VectorContext};

use crate::progress;

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Number of patients (at most 4096, the slot count at N = 8192).
    #[arg(long, default_value_t = 4096)]
    pub patients: usize,
}

/// Built-in data: deterministic, realistic-looking normalised readings in [-1, 1].
fn readings(n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| ((i as f64 * 0.618_033_988_7).fract() * 2.0 - 1.0) * 0.9)
        .collect()
}

fn weights(n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| ((i as f64 * 0.414_213_562_3 + 0.1).fract() - 0.5) / n as f64 * 8.0)
        .collect()
}

fn ms(t: Instant) -> String {
    format!("{:.1} ms", t.elapsed().as_secs_f64() * 1e3)
}

pub fn run(args: &DemoArgs) -> Result<()> {
    outln!("== Veil demo: homomorphic encryption (CKKS) ==");
    let params = CkksParameters::preset(Preset::N8192Depth2)?;
    outln!(
        "parameters: {} (N = {}, moduli {:?}, scale 2^{}, {:?}, fingerprint {})",
        Preset::N8192Depth2.name(),
        params.degree(),
        params.bit_sizes(),
        params.scale_bits(),
        params.security(),
        params.fingerprint_hex()
    );
    let n = args.patients;
    if n == 0 || n > params.slots() {
        anyhow::bail!("--patients must be between 1 and {}", params.slots());
    }
    let t = Instant::now();
    let ctx = VectorContext::builder(CkksContext::new(params)?)
        .progress(progress::key_progress(progress::interactive()))
        .build()?;
    outln!(
        "[clinic]  key generation (public, relinearization, {} Galois keys): {}",
        ctx.galois_keys().len(),
        ms(t)
    );

    let x = readings(n);
    let w = weights(n);
    let t = Instant::now();
    let ex = CkksVector::encrypt(&ctx, &x)?;
    let ew = CkksVector::encrypt(&ctx, &w)?;
    let wire = ex.to_bytes().len();
    outln!(
        "[clinic]  encrypt {n} readings and {n} weights: {} ({} KB per ciphertext on the wire)",
        ms(t),
        wire / 1000
    );

    // The server only receives the public context (parameters, public, relinearization and
    // Galois keys): it cannot decrypt.
    let public = ctx.public_to_bytes();
    let server = VectorContext::from_public_bytes(&public, None)?;
    outln!("[clinic]  public context sent to the server: {:.1} MB (keys' uniform halves travel as seeds)", public.len() as f64 / 1e6);
    let sx = CkksVector::from_bytes(&server, &ex.to_bytes())?;
    let sw = CkksVector::from_bytes(&server, &ew.to_bytes())?;
    let t = Instant::now();
    let score = sx.dot(&sw)?;
    outln!("[server]  encrypted dot product (risk score): {}", ms(t));
    let sigmoid = [0.5, 0.197, 0.0, -0.004];
    let t = Instant::now();
    let probs = sx.polyval(&sigmoid)?;
    outln!(
        "[server]  encrypted sigmoid polynomial 0.5 + 0.197x − 0.004x³ on every reading: {}",
        ms(t)
    );
    outln!(
        "[server]  decrypting without the secret key fails: {}",
        score
            .decrypt()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    );

    let score_back = CkksVector::from_bytes(&ctx, &score.to_bytes())?;
    let probs_back = CkksVector::from_bytes(&ctx, &probs.to_bytes())?;
    let t = Instant::now();
    // The clinic holds the key and keeps its results: no noise flooding (results that leave
    // the key holder go through `decrypt`, which floods them; see veil_he::ckks::flooding).
    let got_score = score_back.decrypt_unflooded_for_key_holder_only()?[0];
    let got_probs = probs_back.decrypt_unflooded_for_key_holder_only()?;
    outln!("[clinic]  decrypt results: {}", ms(t));

    let want_score: f64 = x.iter().zip(&w).map(|(a, b)| a * b).sum();
    let want_probs: Vec<f64> = x
        .iter()
        .map(|&v| sigmoid.iter().rev().fold(0.0, |acc, &c| acc * v + c))
        .collect();
    let max_err = got_probs
        .iter()
        .zip(&want_probs)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    outln!();
    outln!(
        "risk score      encrypted {got_score:+.8}   plaintext {want_score:+.8}   error {:.2e}",
        (got_score - want_score).abs()
    );
    outln!(
        "sigmoid[0..4]   encrypted {:?}",
        got_probs
            .iter()
            .take(4)
            .map(|v| format!("{v:.6}"))
            .collect::<Vec<_>>()
    );
    outln!(
        "                plaintext {:?}",
        want_probs
            .iter()
            .take(4)
            .map(|v| format!("{v:.6}"))
            .collect::<Vec<_>>()
    );
    outln!("sigmoid         max error over {n} readings: {max_err:.2e}");
    if (got_score - want_score).abs() > 1e-3 || max_err > 1e-3 {
        anyhow::bail!("decrypted results are outside the expected error bound");
    }
    outln!("\nOK: the server computed on data it never saw.");
    outln!();
    dp_demo(args.patients)
}

/// Differential privacy: local DP telemetry, then budgeted central releases.
fn dp_demo(patients: usize) -> Result<()> {
    use veil_dp::ledger::SqliteLedger;
    use veil_dp::local::{estimate_fraction, BitReporter};
    use veil_dp::mechanisms::LaplaceMechanism;

    outln!("== Veil demo: differential privacy ==");
    // Local DP: every patient's device randomizes "has the symptom" before sending it.
    let epsilon = 1.0;
    let reporter = BitReporter::new(epsilon)?;
    let truth: Vec<bool> = readings(patients).iter().map(|&r| r > 0.3).collect();
    let t = Instant::now();
    let reports = truth
        .iter()
        .map(|&b| reporter.report(b))
        .collect::<veil_dp::Result<Vec<bool>>>()?;
    let est = estimate_fraction(&reports, epsilon)?;
    let true_rate = truth.iter().filter(|&&b| b).count() as f64 / patients as f64;
    let (lo, hi) = est.ci95();
    outln!(
        "[devices] {patients} randomized reports at ε = {epsilon} (local DP): {}",
        ms(t)
    );
    outln!(
        "[server]  symptom prevalence estimate {:.3} (95% CI {lo:.3} … {hi:.3}); true rate {true_rate:.3}",
        est.value
    );

    // Central DP with a budget: the ledger charges before any noise is drawn.
    let dir = std::env::temp_dir().join(format!("veil-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let ledger = SqliteLedger::open(dir.join("budget.db"))?;
    ledger.set_budget("patients", None, 1.0, 1e-6)?;
    let count = LaplaceMechanism::new(1.0, 0.3)?;
    let true_count = truth.iter().filter(|&&b| b).count() as i64;
    for q in 1..=4 {
        let result = veil_dp::release(
            &ledger,
            "patients",
            "analyst",
            "COUNT(symptom)",
            &count.cost(),
            1e-6,
            || count.release_integer(true_count),
        );
        match result {
            Ok(v) => {
                let left = ledger.remaining("patients", None)?;
                outln!(
                    "[analyst] query {q}: noisy count {v} (true {true_count}, ±{:.1} at 95%), ε left {:.2}",
                    count.confidence_half_width(0.05),
                    left.epsilon
                );
            }
            Err(e) => outln!("[analyst] query {q}: refused, nothing charged: {e}"),
        }
    }
    outln!("\nOK: every release was paid for before its noise was drawn.");
    dp_sql_demo(&dir)?;
    std::fs::remove_dir_all(&dir)?;
    outln!();
    cc_demo()?;
    outln!();
    room_demo()?;
    outln!();
    mpc_demo()?;
    outln!();
    ml_demo()
}

/// The committed logistic-regression digits model and test images, embedded so that the demo
/// needs no file of the repository at run time.
const DEMO_MODEL: &[u8] = include_bytes!("../../veil-ml/models/logreg.onnx");
const DEMO_DIGITS: &str = include_str!("../../veil-ml/models/digits_test.csv");
const DEMO_IMAGES: usize = 20;

/// Encrypted inference of a trained model: a client encrypts 8×8 digit images, a server runs
/// the logistic-regression model on the ciphertexts with the public context only, and the
/// client decrypts (with noise flooding); then the same model under MPC, where the owner
/// secret-shares the weights and the client the images.
fn ml_demo() -> Result<()> {
    use veil_ml::he::{CompileOptions, Packing, Plan};
    use veil_ml::mpc::{run_local, MpcOptions, MpcPlan};
    outln!("== Veil demo: inference of a trained model (ONNX) on encrypted and on secret-shared images ==");
    let model = veil_ml::onnx::import(DEMO_MODEL).context("the embedded model")?;
    let mut data = veil_ml::data::LabelledData::from_csv(DEMO_DIGITS, 1.0 / 16.0)?;
    data.samples.truncate(DEMO_IMAGES);
    data.labels.truncate(DEMO_IMAGES);
    let n = data.len();
    let t = Instant::now();
    let plan = Plan::compile(
        &model.graph,
        &CompileOptions {
            calibration: data.samples.clone(),
            ..CompileOptions::default()
        },
    )?;
    let p = plan.parameter_choice();
    outln!(
        "[model owner] logistic regression on 8×8 digits ({}), compiled for CKKS: depth {}, N = {}, moduli {:?}, {} Galois keys ({})",
        model.info.producer,
        plan.depth(),
        p.degree,
        p.moduli_bits,
        plan.rotation_steps().len(),
        ms(t)
    );
    let t = Instant::now();
    let r = crate::ml::he_round_trip(&plan, &model.graph, &data, false)?;
    outln!(
        "[client]  keys: {:.0} ms, public context {:.1} MB; {n} encrypted images of {:.0} kB each",
        r.keygen_s * 1e3,
        r.public_bytes as f64 / 1e6,
        r.query_bytes as f64 / 1e3
    );
    outln!(
        "[server]  ran the model on ciphertexts: {:.1} ms/image; [client] flooded decryption",
        r.eval_s * 1e3 / n as f64
    );
    outln!(
        "[HE]  encrypted predictions agree with the plaintext model on {}/{n} images (accuracy {}/{n}) ({})",
        r.agree,
        r.correct,
        ms(t)
    );
    // Throughput packing: the same images in one query, one ciphertext per pixel.
    let t = Instant::now();
    let batch = Plan::compile(
        &model.graph,
        &CompileOptions {
            packing: Packing::Batch,
            calibration: data.samples.clone(),
            ..CompileOptions::default()
        },
    )?;
    let b = crate::ml::he_round_trip(&batch, &model.graph, &data, false)?;
    outln!(
        "[HE batch] the {n} images in one query (a ciphertext per pixel, up to {} images, no Galois keys, public context {:.1} MB): server {:.0} ms for all, {}/{n} agree ({})",
        batch.samples_per_evaluation(),
        b.public_bytes as f64 / 1e6,
        b.eval_s * 1e3,
        b.agree,
        ms(t)
    );
    let t = Instant::now();
    let (mplan, weights) = MpcPlan::compile(&model.graph, &MpcOptions::default())?;
    let run = run_local(&mplan, &weights, 2, &data.samples, n)?;
    let mut plain = Vec::with_capacity(n);
    for x in &data.samples {
        let out = model.graph.run(x)?;
        plain.push(out.first().map(|o| crate::ml::class_of(o)).unwrap_or(-1));
    }
    let agreeing = |run: &veil_ml::mpc::LocalRun| {
        run.predictions
            .iter()
            .zip(&plain)
            .filter(|(p, l)| p.label == **l)
            .count()
    };
    let agree = agreeing(&run);
    let sent: u64 = run.bytes_sent.iter().sum();
    outln!(
        "[MPC] owner and client share weights and images (2 parties + dealer in this process): {agree}/{n} labels agree with the plaintext model, {:.2} ms/image, {:.1} kB/image ({})",
        run.infer_seconds * 1e3 / n as f64,
        (sent + run.dealer_bytes) as f64 / 1e3 / n as f64,
        ms(t)
    );
    let t = Instant::now();
    let run3 = veil_ml::mpc::run_local_replicated(&mplan, &weights, &data.samples, n)?;
    let agree3 = agreeing(&run3);
    outln!(
        "[MPC] the same with 3 parties and no dealer (replicated shares: any one party learns nothing, any two together everything): {agree3}/{n} labels agree, {:.2} ms/image, {:.1} kB/image ({})",
        run3.infer_seconds * 1e3 / n as f64,
        run3.bytes_sent.iter().sum::<u64>() as f64 / 1e3 / n as f64,
        ms(t)
    );
    // Flooding makes HE predictions random near ties; a few disagreements are possible, many
    // are a bug.
    if 4 * r.agree < 3 * n || 4 * b.agree < 3 * n || 4 * agree < 3 * n || 4 * agree3 < 3 * n {
        anyhow::bail!("protected predictions disagree with the plaintext model");
    }
    outln!(
        "\nOK: the model ran on images the server never saw; only the client read the predictions."
    );
    Ok(())
}

/// DP SQL: an analyst's SQL over a synthetic table, answered with noise and charged to the
/// dataset's budget; a query that would release rows is refused and costs nothing.
fn dp_sql_demo(dir: &std::path::Path) -> Result<()> {
    use veil_dp::ledger::SqliteLedger;
    use veil_dp_sql::{Engine, Metadata, QueryOptions};

    outln!("\n-- DP SQL over a synthetic persons table (embedded DataFusion) --");
    let csv = dir.join("persons.csv");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&csv)?);
    veil_dp_sql::sample::write_persons(&mut out, 20_000, 1)?;
    std::io::Write::flush(&mut out)?;
    drop(out);
    let meta = Metadata::from_toml(veil_dp_sql::sample::PERSONS_METADATA)?;
    let ledger = SqliteLedger::open(dir.join("persons.budget.db"))?;
    // The operator's step: register the dataset's metadata and its total budget.
    ledger.register_with(
        "persons",
        &veil_dp_sql::dataset::metadata_sha256(veil_dp_sql::sample::PERSONS_METADATA.as_bytes()),
        meta.budget.epsilon,
        meta.budget.delta,
        meta.budget.accounting(),
    )?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let engine = Engine::embedded(meta, &[("persons".into(), csv.as_path())]).await?;
        let options = QueryOptions {
            epsilon: 1.0,
            delta: 1e-6,
            ..QueryOptions::default()
        };
        for sql in [
            "SELECT COUNT(*) AS persons, AVG(income) AS mean_income FROM persons WHERE age >= 65",
            "SELECT sex, COUNT(*) AS n, MEDIAN(age) AS median_age FROM persons GROUP BY sex",
            "SELECT state, COUNT(*) AS n FROM persons GROUP BY state ORDER BY n DESC LIMIT 3",
        ] {
            let t = Instant::now();
            let r = engine
                .query(&ledger, "persons", "analyst", sql, options)
                .await?;
            outln!("[analyst] {sql}  ({})", ms(t));
            for line in r.to_table()?.lines() {
                outln!("          {line}");
            }
            let acc: Vec<String> = r
                .accuracy
                .iter()
                .filter_map(|(c, h)| h.map(|h| format!("{c} ±{h:.1}")))
                .collect();
            outln!(
                "          ε {} δ {:e} charged, 95%: {}; ε left {:.1}",
                r.epsilon,
                r.delta,
                acc.join(", "),
                r.remaining_epsilon
            );
        }
        let before = ledger.remaining("persons", None)?;
        match engine
            .query(
                &ledger,
                "persons",
                "analyst",
                "SELECT * FROM persons WHERE age > 80",
                options,
            )
            .await
        {
            Ok(_) => anyhow::bail!("a row-level query was answered"),
            Err(e) => outln!("[analyst] SELECT * … refused: {e}"),
        }
        let after = ledger.remaining("persons", None)?;
        if after.epsilon != before.epsilon {
            anyhow::bail!("a refused query was charged");
        }
        anyhow::Ok(())
    })?;
    outln!("\nOK: SQL answered with noise, every answer charged first; row-level output refused for free.");
    Ok(())
}

/// MPC: three hospitals as separate processes over mutual TLS compute a joint mean and train
/// a small model without showing each other their rows; two of them intersect their patient
/// lists with PSI.
fn mpc_demo() -> Result<()> {
    use crate::mpc::{run_processes, temp_session, Program, ProgramArgs};
    outln!("== Veil demo: secure multi-party computation (3 processes, mutual TLS, a dealer) ==");
    let (dir, config) = temp_session("demo", 3, &["hospital-a", "hospital-b", "hospital-c"])?;
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut columns = Vec::new();
    let mut tables = Vec::new();
    for (i, name) in ["a", "b", "c"].iter().enumerate() {
        let col = dir.join(format!("{name}-glucose.csv"));
        let mut text = "glucose\n".to_string();
        for _ in 0..100 + 50 * i {
            text.push_str(&format!("{:.2}\n", 4.5 + 0.3 * i as f64 + next() * 3.0));
        }
        std::fs::write(&col, text)?;
        columns.push(col);
        let rows = dir.join(format!("{name}-patients.csv"));
        let mut text = "age_z,bmi_z,diabetic\n".to_string();
        for _ in 0..150 {
            let (x1, x2) = (next() * 4.0 - 2.0, next() * 4.0 - 2.0);
            let y = u8::from(1.2 * x1 + 0.8 * x2 - 0.2 + (next() - 0.5) > 0.0);
            text.push_str(&format!("{x1:.3},{x2:.3},{y}\n"));
        }
        std::fs::write(&rows, text)?;
        tables.push(rows);
    }
    let mut program = ProgramArgs {
        program: Program::Stats,
        low: 4.0,
        high: 9.0,
        bins: 5,
        max_abs: 1_000.0,
        epochs: 20,
        rate: 1.0,
        model_owner: None,
        bench_mul: 0,
        bench_lt: 0,
    };
    let t = Instant::now();
    let out = run_processes(&config, &program, &columns, None, true)?;
    let v: serde_json::Value = serde_json::from_str(out[0].trim()).context("party output")?;
    outln!(
        "[3 parties] joint glucose over {} patients: mean {:.3}, std dev {:.3}, histogram {} ({})",
        v["count"],
        v["mean"].as_f64().unwrap_or(f64::NAN),
        v["std_dev"].as_f64().unwrap_or(f64::NAN),
        v["histogram"],
        ms(t)
    );
    program.program = Program::Logreg;
    let t = Instant::now();
    let out = run_processes(&config, &program, &tables, None, true)?;
    let v: serde_json::Value = serde_json::from_str(out[0].trim()).context("party output")?;
    outln!(
        "[3 parties] logistic regression on {} rows nobody pooled: weights {}, bias {:.3}, accuracy on hospital-a's rows {:.1}% ({})",
        v["rows"],
        v["weights"],
        v["bias"].as_f64().unwrap_or(f64::NAN),
        100.0 * v["accuracy_on_my_rows"].as_f64().unwrap_or(f64::NAN),
        ms(t)
    );
    // PSI between two hospitals' patient identifiers.
    let (psi_dir, psi_config) = temp_session("demo-psi", 2, &["hospital-a", "hospital-b"])?;
    let a: Vec<String> = (0..400).map(|i| format!("patient-{}", i * 3)).collect();
    let b: Vec<String> = (0..400).map(|i| format!("patient-{}", i * 5)).collect();
    std::fs::write(psi_dir.join("a.txt"), a.join("\n"))?;
    std::fs::write(psi_dir.join("b.txt"), b.join("\n"))?;
    let exe = std::env::current_exe()?;
    let cfg = psi_config.to_string_lossy().into_owned();
    let sender = std::process::Command::new(&exe)
        .args(["psi", "--role", "sender", "--config", &cfg, "--input"])
        .arg(psi_dir.join("b.txt"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let t = Instant::now();
    let out = std::process::Command::new(&exe)
        .args(["psi", "--role", "receiver", "--config", &cfg, "--input"])
        .arg(psi_dir.join("a.txt"))
        .output()?;
    let _ = sender.wait_with_output();
    if !out.status.success() {
        anyhow::bail!("psi: {}", String::from_utf8_lossy(&out.stderr));
    }
    let common = String::from_utf8_lossy(&out.stdout).lines().count();
    let expected = a.iter().filter(|x| b.contains(x)).count();
    if common != expected {
        anyhow::bail!("psi found {common} common patients, {expected} expected");
    }
    outln!("[PSI] hospital-a learns the {common} patients it shares with hospital-b (multiples of 15); hospital-b learns nothing ({})", ms(t));
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&psi_dir);
    outln!("\nOK: joint results without pooling the data; no party saw another's rows.");
    Ok(())
}

/// Confidential computing: a workload in the (simulated) TEE attests to the attestation
/// service over HTTP, receives a token, and the key broker releases the dataset key wrapped to
/// the key bound in its evidence; a workload with other code gets nothing.
fn cc_demo() -> Result<()> {
    use sha2::{Digest, Sha384};
    use veil_attest::audit::AuditLog;
    use veil_attest::evidence::sim::{SimVerifier, SimulatedPlatform};
    use veil_attest::policy::Policy;
    use veil_attest::service::{AttestationService, Verifiers};
    use veil_attest::token::{TokenAlgorithm, TokenIssuer};
    use veil_kbs::SecretStore;
    use veil_server::client::SimulatedWorkload;

    outln!("== Veil demo: confidential computing (SIMULATED TEE — no hardware protection here) ==");
    let dir = std::env::temp_dir().join(format!("veil-demo-cc-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut seed = zeroize::Zeroizing::new([0u8; 32]);
    rand_core::TryRngCore::try_fill_bytes(&mut rand_core::OsRng, seed.as_mut())
        .map_err(|e| anyhow::anyhow!("no system randomness: {e}"))?;
    let platform_key = SimulatedPlatform::from_seed(&seed).public_key();
    let model_code = b"(module ;; the agreed risk model\n)";
    let measurement: [u8; 48] = Sha384::digest(model_code).into();
    let policy_text = format!(
        "tee = [\"sim\"]\nmin_security_version = 1\n[measurements]\nmeasurement = [\"{}\"]\n",
        hex::encode(measurement)
    );
    outln!(
        "[operator] attestation policy: sim allowed by name, measurement {}…",
        &hex::encode(measurement)[..16]
    );
    let policy = Policy::toml("demo-policy.toml", &policy_text)?;
    let service = AttestationService::new(
        Verifiers {
            sim: vec![SimVerifier::new(&platform_key)?],
            ..Verifiers::default()
        },
        policy,
        TokenIssuer::generate(TokenAlgorithm::ES256)?,
        AuditLog::open(&dir.join("attest-audit.jsonl"))?,
    );
    let store = SecretStore::open(&dir.join("kbs"))?;
    let mut dataset_key = [0u8; 32];
    rand_core::TryRngCore::try_fill_bytes(&mut rand_core::OsRng, &mut dataset_key)
        .map_err(|e| anyhow::anyhow!("no system randomness: {e}"))?;
    store.put(
        "patients-dataset-key",
        &dataset_key,
        "toml",
        "release.toml",
        &policy_text,
        veil_attest::util::unix_now(),
    )?;
    outln!("[hospital] stored patients-dataset-key in the key broker (encrypted at rest)");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let outcome: Result<()> = rt.block_on(async {
        let services = crate::services::LocalServices::start(
            service,
            store,
            AuditLog::open(&dir.join("kbs-audit.jsonl"))?,
        )
        .await?;
        let (attest_url, kbs_url) = (services.attest_url.clone(), services.kbs_url.clone());
        outln!("[services] attestation service {attest_url}, key broker {kbs_url}");

        let t = Instant::now();
        let workload = SimulatedWorkload::new(SimulatedPlatform::from_seed(&seed), measurement, 1);
        let resp = workload.attest(&attest_url).await?;
        outln!(
            "[workload] attested: tee {}, policy {}, token expires in {} s ({})",
            resp.claims.evidence.tee.name(),
            resp.claims.policy.name,
            resp.claims.exp - resp.claims.iat,
            ms(t)
        );
        let t = Instant::now();
        let key = workload
            .fetch_secret(&kbs_url, "patients-dataset-key", &resp.token)
            .await?;
        if key.as_slice() != dataset_key {
            anyhow::bail!("the released key differs from the stored one");
        }
        outln!(
            "[workload] patients-dataset-key released, HPKE-wrapped to the attested key, opened inside ({})",
            ms(t)
        );
        let other: [u8; 48] = Sha384::digest(b"(module ;; something else)").into();
        let intruder = SimulatedWorkload::new(SimulatedPlatform::from_seed(&seed), other, 1);
        match intruder.attest(&attest_url).await {
            Ok(_) => anyhow::bail!("a workload with other code was attested"),
            Err(e) => outln!("[intruder] same platform, other code: refused — {e}"),
        }
        services.stop().await;
        Ok(())
    });
    outcome?;
    for (name, file) in [
        ("attestation", "attest-audit.jsonl"),
        ("key broker", "kbs-audit.jsonl"),
    ] {
        let entries = veil_attest::audit::verify_log(&dir.join(file))?;
        let events: Vec<&str> = entries.iter().map(|e| e.event.as_str()).collect();
        outln!("[audit] {name} log verifies (hash chain intact): {events:?}");
    }
    std::fs::remove_dir_all(&dir)?;
    outln!("\nOK: the key went only to the code the policy names, and only it can open it.");
    Ok(())
}

/// A data room: three hospitals agree on the statistics workload, verify the (simulated) TEE,
/// upload their glucose readings encrypted to it, and two of them receive the joint report;
/// the signed audit log is verified and printed.
fn room_demo() -> Result<()> {
    use std::sync::Arc;
    use veil_attest::evidence::sim::SimulatedPlatform;
    use veil_room::{builtin, decode_output, Manifest, PartyKey, RoomServer, RoomSpec};
    use veil_server::room::RoomClient;

    outln!("== Veil demo: data room (SIMULATED TEE — no hardware protection here) ==");
    let stats = builtin("stats").context("the stats workload ships with veil")?;
    let names = ["hospital-a", "hospital-b", "hospital-c"];
    let keys = names
        .iter()
        .map(|n| PartyKey::generate(n))
        .collect::<veil_attest::Result<Vec<_>>>()?;
    let platform = SimulatedPlatform::generate()?;
    let t = Instant::now();
    let manifest = Manifest::create(
        stats.wat.as_bytes(),
        RoomSpec {
            sim_platform_keys: vec![hex::encode(platform.public_key())],
            min_security_version: Some(1),
            ..RoomSpec::builtin(
                stats,
                "joint glucose study",
                keys.iter().map(PartyKey::public).collect(),
                vec!["hospital-a".into(), "hospital-b".into()],
            )
        },
        veil_attest::util::unix_now(),
    )?;
    let text = manifest.to_toml()?;
    outln!(
        "[parties] manifest agreed: stats workload {}…, parties {}, output to hospital-a, hospital-b",
        &manifest.code.measurement[..16],
        names.join(", ")
    );
    let room = Arc::new(RoomServer::launch(
        &text,
        stats.wat.as_bytes(),
        platform,
        1,
        None,
    )?);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let history = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(veil_server::room::serve(listener, room, async move {
            let _ = rx.await;
        }));
        outln!("[operator] room launched in the simulated TEE at {url}");
        let client = RoomClient::new(&url, &text)?;
        let mut all = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            // Synthetic fasting glucose readings (mmol/L), different per hospital.
            let readings: Vec<f64> = (0..200 + 100 * i)
                .map(|j| 4.2 + 0.4 * i as f64 + ((j * 37 + i * 11) % 50) as f64 * 0.05)
                .collect();
            all.extend_from_slice(&readings);
            let bytes: Vec<u8> = readings.iter().flat_map(|v| v.to_le_bytes()).collect();
            let receipt = client.upload(key, "glucose.csv", &bytes).await?;
            outln!(
                "[{}] verified the room's evidence, uploaded {} readings encrypted to it (receipt for sha256 {}…)",
                key.name(),
                readings.len(),
                &receipt.data_sha256[..12]
            );
        }
        let summary = client.run(&keys[2]).await?;
        outln!("[hospital-c] asked for the run: {} bytes of output, {} fuel", summary.output_bytes, summary.fuel_used);
        let out = client.fetch_output(&keys[0]).await?;
        let values = decode_output(client.manifest(), &out).context("stats output")?;
        let n = all.len() as f64;
        let mean = all.iter().sum::<f64>() / n;
        let got = |name: &str| values.iter().find(|(k, _)| k == name).map_or(f64::NAN, |(_, v)| *v);
        if (got("count") - n).abs() > 0.0 || (got("mean") - mean).abs() > 1e-9 {
            anyhow::bail!("the room's statistics differ from the pooled data's");
        }
        outln!(
            "[hospital-a] joint report: count {}, mean {:.3}, variance {:.4}, min {:.2}, max {:.2}",
            got("count"),
            got("mean"),
            got("variance"),
            got("min"),
            got("max")
        );
        match client.fetch_output(&keys[2]).await {
            Ok(_) => anyhow::bail!("a non-recipient read the output"),
            Err(e) => outln!("[hospital-c] not a recipient: refused — {e}"),
        }
        let entries = client.audit().await?;
        let _ = stop.send(());
        let _ = server.await;
        Ok::<_, anyhow::Error>(entries)
    })?;
    outln!(
        "[audit] room log verifies: {} entries, chain intact, each signed by the attested audit key",
        history.len()
    );
    crate::room::print_history(&history)?;
    outln!("(set-up to output in {})", ms(t));
    outln!("\nOK: the data went only to the agreed code; the output only to its named recipients.");
    Ok(())
}
