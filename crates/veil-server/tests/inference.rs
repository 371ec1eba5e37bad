//! `veil serve`'s encrypted-inference routes over real HTTP: a client gets predictions on data
//! the server never sees, and the routes hold against another client probing context ids,
//! forged and oversized uploads, contexts for the wrong plan, and floods of uploads and
//! evaluations. Each test states the guarantee it checks.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    reason = "tests"
)]

use std::sync::Arc;

use crate::site;
use site::Site;

use serde_json::Value;
use veil_he::ckks::VectorContext;
use veil_ml::he::{CompileOptions, Plan};
use veil_ml::ir::{Graph, GraphBuilder, Op, Tensor};
use veil_server::auth::token_sha256;
use veil_server::inference::{ContextCreated, ModelInfo};

const CLINIC: &str = "veil_clinic_token_0123456789abcdef";
const LAB: &str = "veil_lab_token_0123456789abcdef012";

/// An 8 → 3 linear model with fixed weights.
fn model() -> Graph {
    let weights: Vec<f64> = (0..24).map(|i| f64::from(i % 7) / 7.0 - 0.4).collect();
    let mut g = GraphBuilder::new("x", vec![8]);
    let x = g.input();
    let y = g
        .add(
            "fc",
            "Gemm",
            Op::Linear {
                weight: Tensor::new(vec![3, 8], weights).unwrap(),
                bias: vec![0.5, -0.25, 0.0],
            },
            &[x],
            "y",
        )
        .unwrap();
    g.finish(vec![y]).unwrap()
}

fn plan(precision: f64) -> Plan {
    let options = CompileOptions {
        precision,
        ..CompileOptions::default()
    };
    Plan::compile(&model(), &options).unwrap()
}

fn samples() -> Vec<Vec<f64>> {
    (0..3)
        .map(|k| (0..8).map(|i| f64::from((i * 3 + k) % 10) / 10.0).collect())
        .collect()
}

async fn site(name: &str, limits: &str) -> Site {
    let dir = site::fresh_dir(&format!("infer-{name}"));
    std::fs::write(dir.join("linear.plan"), plan(0.125).to_bytes()).unwrap();
    let config = format!(
        r#"
[[inference.models]]
name = "linear"
plan = "linear.plan"
[[inference.clients]]
name = "clinic"
token_sha256 = "{}"
[[inference.clients]]
name = "lab"
token_sha256 = "{}"
[inference.limits]
{limits}
"#,
        hex::encode(token_sha256(CLINIC)),
        hex::encode(token_sha256(LAB)),
    );
    site::serve(&config, &dir).await
}

fn http() -> reqwest::Client {
    veil_server::client::http_client().unwrap()
}

async fn post_bytes(
    url: &str,
    token: Option<&str>,
    bytes: Vec<u8>,
) -> (reqwest::StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
    let mut req = http()
        .post(url)
        .header("content-type", "application/octet-stream")
        .body(bytes);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    (status, headers, resp.bytes().await.unwrap().to_vec())
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap_or(Value::Null)
}

/// A client's key set for the served plan.
fn keys(plan: &Plan) -> Arc<VectorContext> {
    plan.keygen().unwrap()
}

async fn upload(url: &str, token: &str, ctx: &VectorContext) -> String {
    let (status, _, body) = post_bytes(
        &format!("{url}/inference/models/linear/contexts"),
        Some(token),
        ctx.make_public().public_to_bytes(),
    )
    .await;
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    let created: ContextCreated = serde_json::from_slice(&body).unwrap();
    assert_eq!(created.model, "linear");
    created.context
}

async fn evaluate(
    url: &str,
    token: &str,
    id: &str,
    query: Vec<u8>,
) -> (reqwest::StatusCode, Vec<u8>) {
    let (status, _, body) = post_bytes(
        &format!("{url}/inference/contexts/{id}/evaluate"),
        Some(token),
        query,
    )
    .await;
    (status, body)
}

/// The whole round trip: the client fetches the plan (and checks its hash), makes keys,
/// uploads only the public context, sends ciphertexts, and decrypts answers that agree with
/// the plaintext model within the noise the plan promises.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_gets_predictions_on_data_the_server_never_sees() {
    let s = site("roundtrip", "").await;
    let models: Vec<ModelInfo> = http()
        .get(format!("{}/inference/models", s.url))
        .bearer_auth(CLINIC)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models.len(), 1);
    assert_eq!((models[0].input_len, models[0].output_len), (8, 3));
    let plan_bytes = http()
        .get(format!("{}/inference/models/linear/plan", s.url))
        .bearer_auth(CLINIC)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&plan_bytes)),
        models[0].plan_sha256
    );
    let plan = Plan::from_bytes(&plan_bytes).unwrap();
    // The client gets the plan's shape, not the model: every weight and bias is zero.
    for step in plan.steps() {
        if let veil_ml::he::Step::Affine { rows, bias } = step {
            assert!(rows.iter().flatten().chain(bias).all(|&w| w == 0.0));
        }
    }
    let ctx = keys(&plan);
    let id = upload(&s.url, CLINIC, &ctx).await;
    let xs = samples();
    let query = plan.encrypt_samples(&ctx, &xs).unwrap().to_bytes();
    let (status, answer) = evaluate(&s.url, CLINIC, &id, query).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    let answer = veil_ml::he::EncryptedSamples::from_bytes(&ctx, &answer).unwrap();
    let (outputs, sigma) = plan.decrypt_samples(&answer).unwrap();
    let graph = model();
    assert_eq!(outputs.len(), xs.len());
    for (x, out) in xs.iter().zip(&outputs) {
        let exact = &graph.run(x).unwrap()[0];
        for (u, v) in out.iter().zip(exact) {
            assert!((u - v).abs() < 8.0 * sigma + 1e-3, "{u} vs {v} (σ {sigma})");
        }
    }
    // Forgetting the context: it is gone.
    let resp = http()
        .delete(format!("{}/inference/contexts/{id}", s.url))
        .bearer_auth(CLINIC)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let query = plan.encrypt_samples(&ctx, &xs).unwrap().to_bytes();
    assert_eq!(evaluate(&s.url, CLINIC, &id, query).await.0, 404);
}

/// Another client holding a context id (leaked, guessed, logged) can neither use nor delete
/// it, and its answer is byte-for-byte the answer for an id that never existed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_clients_context_is_indistinguishable_from_a_missing_one() {
    let s = site("owner", "").await;
    let plan = plan(0.125);
    let ctx = keys(&plan);
    let id = upload(&s.url, CLINIC, &ctx).await;
    let query = plan.encrypt_samples(&ctx, &samples()).unwrap().to_bytes();
    let (stolen, stolen_body) = evaluate(&s.url, LAB, &id, query.clone()).await;
    let (missing, missing_body) = evaluate(
        &s.url,
        LAB,
        "00000000000000000000000000000000",
        query.clone(),
    )
    .await;
    assert_eq!((stolen.as_u16(), missing.as_u16()), (404, 404));
    assert_eq!(stolen_body, missing_body);
    let resp = http()
        .delete(format!("{}/inference/contexts/{id}", s.url))
        .bearer_auth(LAB)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    // The owner's context survived both attempts.
    assert_eq!(evaluate(&s.url, CLINIC, &id, query).await.0, 200);
}

/// Every route refuses a missing or forged token with 401 and does no work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_needs_a_valid_token() {
    let s = site("tokens", "").await;
    for token in [None, Some("forged"), Some("")] {
        let mut r = http().get(format!("{}/inference/models", s.url));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        assert_eq!(r.send().await.unwrap().status(), 401);
        let mut r = http().get(format!("{}/inference/models/linear/plan", s.url));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        assert_eq!(r.send().await.unwrap().status(), 401);
        let (status, headers, _) = post_bytes(
            &format!("{}/inference/models/linear/contexts", s.url),
            token,
            vec![0; 64],
        )
        .await;
        assert_eq!(status, 401);
        assert_eq!(headers["www-authenticate"], "Bearer");
    }
}

/// Malformed, truncated, mistyped, oversized and wrong-plan input: a 4xx naming the problem,
/// never a 500 or a panic, and the server keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_uploads_and_queries_get_a_4xx_with_a_reason() {
    let s = site(
        "bad",
        "max_context_bytes = 64000000\nmax_query_bytes = 2000000",
    )
    .await;
    let served = plan(0.125);
    let ctx = keys(&served);
    let good = ctx.make_public().public_to_bytes();
    let contexts = format!("{}/inference/models/linear/contexts", s.url);

    // Garbage, truncation, a flipped magic byte.
    for bytes in [
        vec![0u8; 100],
        good[..good.len() / 2].to_vec(),
        [b"X".as_slice(), &good[1..]].concat(),
    ] {
        let (status, _, body) = post_bytes(&contexts, Some(CLINIC), bytes).await;
        assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
        assert_eq!(json(&body)["kind"], "bad_request");
    }
    // A context made for another plan's parameters is refused at upload, not mid-evaluation.
    let other = plan(1e-4);
    assert_ne!(other.parameter_choice(), served.parameter_choice());
    let (status, _, body) = post_bytes(
        &contexts,
        Some(CLINIC),
        keys(&other).make_public().public_to_bytes(),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        json(&body)["error"]
            .as_str()
            .unwrap()
            .contains("other parameters"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    // Wrong content type; unknown model; too large.
    let resp = http()
        .post(&contexts)
        .bearer_auth(CLINIC)
        .header("content-type", "application/json")
        .body(good.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 415);
    let (status, _, body) = post_bytes(
        &format!("{}/inference/models/nope/contexts", s.url),
        Some(CLINIC),
        good.clone(),
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(json(&body)["kind"], "unknown_model");
    let (status, _, _) = post_bytes(&contexts, Some(CLINIC), vec![0; 64_000_001]).await;
    assert_eq!(status, 413);

    // Queries: garbage, a query over the query limit, samples of the wrong length.
    let id = upload(&s.url, CLINIC, &ctx).await;
    let (status, body) = evaluate(&s.url, CLINIC, &id, b"VEILMLS1\x00garbage".to_vec()).await;
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    let (status, _) = evaluate(&s.url, CLINIC, &id, vec![0; 2_000_001]).await;
    assert_eq!(status, 413);
    let short = veil_ml::he::EncryptedSamples::from_bytes(
        &ctx,
        &served.encrypt_samples(&ctx, &samples()).unwrap().to_bytes(),
    )
    .unwrap();
    assert_eq!(short.samples(), 3);
    let wrong_len = {
        let v = veil_he::ckks::CkksVector::encrypt(&ctx, &[0.5; 5]).unwrap();
        let mut b = b"VEILMLS1\x00".to_vec();
        b.extend(1u64.to_le_bytes());
        b.extend(1u64.to_le_bytes());
        let vb = v.to_bytes();
        b.extend((vb.len() as u64).to_le_bytes());
        b.extend(vb);
        b
    };
    let (status, body) = evaluate(&s.url, CLINIC, &id, wrong_len).await;
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    // Still serving.
    let query = served.encrypt_samples(&ctx, &samples()).unwrap().to_bytes();
    assert_eq!(evaluate(&s.url, CLINIC, &id, query).await.0, 200);
}

/// A client uploading context after context evicts only its own oldest; when all clients
/// together hold the maximum, an upload is refused with 503 and `Retry-After` rather than
/// growing memory without bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contexts_are_bounded_per_client_and_in_total() {
    let s = site("caps", "contexts_per_client = 2\nmax_contexts = 3").await;
    let plan = plan(0.125);
    let ctx = keys(&plan);
    let query = plan.encrypt_samples(&ctx, &samples()).unwrap().to_bytes();
    let lab = upload(&s.url, LAB, &ctx).await;
    let first = upload(&s.url, CLINIC, &ctx).await;
    let second = upload(&s.url, CLINIC, &ctx).await;
    let third = upload(&s.url, CLINIC, &ctx).await;
    assert_eq!(evaluate(&s.url, CLINIC, &first, query.clone()).await.0, 404);
    assert_eq!(
        evaluate(&s.url, CLINIC, &second, query.clone()).await.0,
        200
    );
    assert_eq!(evaluate(&s.url, CLINIC, &third, query.clone()).await.0, 200);
    // The lab's context was not evicted by the clinic's uploads.
    assert_eq!(evaluate(&s.url, LAB, &lab, query.clone()).await.0, 200);
    // Three contexts held: the lab's second upload is refused, with a hint.
    let (status, headers, body) = post_bytes(
        &format!("{}/inference/models/linear/contexts", s.url),
        Some(LAB),
        ctx.make_public().public_to_bytes(),
    )
    .await;
    assert_eq!(status, 503, "{}", String::from_utf8_lossy(&body));
    assert!(headers.contains_key("retry-after"));
}

/// A flood of concurrent evaluations against one worker and a queue of one: the excess is
/// refused at once with 503 and `Retry-After`; every admitted evaluation completes correctly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_evaluations_is_refused_beyond_the_queue() {
    let s = site("flood", "workers = 1\nqueue = 1").await;
    let plan = plan(0.125);
    let ctx = keys(&plan);
    let id = upload(&s.url, CLINIC, &ctx).await;
    // Enough samples that one evaluation takes a while.
    let many: Vec<Vec<f64>> = (0..24).map(|k| samples()[k % 3].clone()).collect();
    let query = plan.encrypt_samples(&ctx, &many).unwrap().to_bytes();
    let mut tasks = Vec::new();
    for _ in 0..12 {
        let (url, id, q) = (s.url.clone(), id.clone(), query.clone());
        tasks.push(tokio::spawn(async move {
            let (status, headers, body) = post_bytes(
                &format!("{url}/inference/contexts/{id}/evaluate"),
                Some(CLINIC),
                q,
            )
            .await;
            (status, headers.contains_key("retry-after"), body)
        }));
    }
    let (mut ok, mut refused) = (0, 0);
    for t in tasks {
        let (status, hint, body) = t.await.unwrap();
        match status.as_u16() {
            200 => {
                let answer = veil_ml::he::EncryptedSamples::from_bytes(&ctx, &body).unwrap();
                assert_eq!(answer.samples(), 24);
                ok += 1;
            }
            503 => {
                assert!(hint);
                refused += 1;
            }
            other => panic!("status {other}: {}", String::from_utf8_lossy(&body)),
        }
    }
    assert!(ok >= 1 && refused >= 1, "ok {ok}, refused {refused}");
}

/// 32 clients at once, each with its own context, evaluating the digits logistic regression
/// (N = 8192) one image per request for `VEIL_LOAD_SECS` seconds (default 3; the figures in
/// docs/benchmarks.md come from 60). Every answer decrypts to the plaintext model's class on
/// a checked sample; nothing is refused (32 clients fit the default queue). Prints p50/p99 and
/// ciphertexts per second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_two_clients_under_sustained_load_at_n_8192() {
    let secs: u64 = std::env::var("VEIL_LOAD_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let models = concat!(env!("CARGO_MANIFEST_DIR"), "/../veil-ml/models");
    let data = veil_ml::data::LabelledData::from_csv(
        &std::fs::read_to_string(format!("{models}/digits_test.csv")).unwrap(),
        0.0625,
    )
    .unwrap();
    let model = veil_ml::onnx::import_file(format!("{models}/logreg.onnx")).unwrap();
    let options = CompileOptions {
        calibration: data.samples[..200].to_vec(),
        ..CompileOptions::default()
    };
    let plan = Plan::compile(&model.graph, &options).unwrap();
    assert_eq!(plan.parameter_choice().degree, 8192);
    let dir = site::fresh_dir("infer-load");
    std::fs::write(dir.join("digits.plan"), plan.to_bytes()).unwrap();
    // 32 distinct clients (one client may hold only `contexts_per_client` contexts).
    let token = |i: usize| format!("veil_load_client_{i:02}_0123456789abcdef");
    let clients: String = (0..32)
        .map(|i| {
            format!(
                "[[inference.clients]]\nname = \"c{i}\"\ntoken_sha256 = \"{}\"\n",
                hex::encode(token_sha256(&token(i)))
            )
        })
        .collect();
    let server = site::serve(
        &format!("[[inference.models]]\nname = \"linear\"\nplan = \"digits.plan\"\n{clients}"),
        &dir,
    )
    .await;
    let url = server.url.clone();

    let ctx = plan.keygen().unwrap();
    let public = ctx.make_public().public_to_bytes();
    let queries: Vec<Vec<u8>> = data.samples[..32]
        .iter()
        .map(|x| {
            plan.encrypt_samples(&ctx, std::slice::from_ref(x))
                .unwrap()
                .to_bytes()
        })
        .collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    let started = std::time::Instant::now();
    let mut tasks = Vec::new();
    for (i, query) in queries.into_iter().enumerate() {
        let (url, public, token) = (url.clone(), public.clone(), token(i));
        tasks.push(tokio::spawn(async move {
            let id = {
                let (status, _, body) = post_bytes(
                    &format!("{url}/inference/models/linear/contexts"),
                    Some(&token),
                    public,
                )
                .await;
                assert_eq!(status, 201);
                serde_json::from_slice::<ContextCreated>(&body)
                    .unwrap()
                    .context
            };
            let mut latencies = Vec::new();
            let mut last = Vec::new();
            while std::time::Instant::now() < deadline || latencies.is_empty() {
                let t = std::time::Instant::now();
                let (status, body) = evaluate(&url, &token, &id, query.clone()).await;
                assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
                latencies.push(t.elapsed().as_secs_f64());
                last = body;
            }
            (i, latencies, last)
        }));
    }
    let mut all = Vec::new();
    let graph = &model.graph;
    for t in tasks {
        let (i, latencies, last) = t.await.unwrap();
        all.extend(latencies);
        let answer = veil_ml::he::EncryptedSamples::from_bytes(&ctx, &last).unwrap();
        let (out, _) = plan.decrypt_samples(&answer).unwrap();
        let exact = graph.run(&data.samples[i]).unwrap();
        let argmax = |v: &[f64]| {
            v.iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .unwrap()
                .0
        };
        let (top, second) = {
            let mut e = exact[0].clone();
            e.sort_by(|a, b| b.total_cmp(a));
            (e[0], e[1])
        };
        // Only a clear margin is a fair check against an encrypted answer's noise.
        if top - second > 2.0 {
            assert_eq!(argmax(&out[0]), argmax(&exact[0]), "sample {i}");
        }
    }
    let wall = started.elapsed().as_secs_f64();
    all.sort_by(f64::total_cmp);
    let q = |p: f64| all[((all.len() - 1) as f64 * p) as usize] * 1e3;
    eprintln!(
        "32 inference clients at N = 8192 for {secs} s: {} ciphertexts, {:.1} ciphertexts/s, \
         p50 {:.0} ms, p99 {:.0} ms",
        all.len(),
        all.len() as f64 / wall,
        q(0.5),
        q(0.99)
    );
    drop(server);
}

/// An operator who registers the client's plan (no weights) by mistake would serve the same
/// constant to every query: refused when the model is added, naming the model.
#[test]
fn a_client_plan_is_not_served() {
    let mut service = veil_server::inference::InferenceService::new(
        veil_server::inference::InferenceLimits::default(),
    );
    let err = service
        .add_model("linear", plan(0.125).without_weights().to_bytes())
        .unwrap_err();
    assert!(
        err.contains("\"linear\"") && err.contains("client plan"),
        "{err}"
    );
    service.add_model("linear", plan(0.125).to_bytes()).unwrap();
}
