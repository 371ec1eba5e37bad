//! `GET /openapi.json` describes exactly what the server mounts: every documented operation
//! is routed (it answers something other than "no such route"), sections that are not
//! configured are absent, and the wire types' schemas are in it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    reason = "tests"
)]

use crate::site;
use serde_json::Value;

async fn doc(url: &str) -> Value {
    veil_server::client::http_client()
        .unwrap()
        .get(format!("{url}/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_operation_is_routed_and_nothing_else_is_documented() {
    let dir = site::fresh_dir("openapi");
    std::fs::write(
        dir.join("policy.toml"),
        "tee = [\"sim\"]\n[measurements]\nmeasurement = [\"00\"]\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("m.plan"),
        veil_ml::he::Plan::compile(
            &{
                let mut g = veil_ml::ir::GraphBuilder::new("x", vec![2]);
                let x = g.input();
                let y = g
                    .add(
                        "fc",
                        "Gemm",
                        veil_ml::ir::Op::Linear {
                            weight: veil_ml::ir::Tensor::new(vec![1, 2], vec![1.0, 2.0]).unwrap(),
                            bias: vec![0.0],
                        },
                        &[x],
                        "y",
                    )
                    .unwrap();
                g.finish(vec![y]).unwrap()
            },
            &veil_ml::he::CompileOptions::default(),
        )
        .unwrap()
        .to_bytes(),
    )
    .unwrap();
    let server = site::serve(
        "[console]\n[metrics]\n[mpc]\ndir = \"mpc\"\n[attest]\npolicy = \"policy.toml\"\n[kbs]\n[[inference.models]]\nname = \"m\"\nplan = \"m.plan\"\n",
        &dir,
    )
    .await;
    let full = server.url.clone();
    let d = doc(&full).await;
    assert!(d["openapi"].as_str().unwrap().starts_with("3."));
    let paths = d["paths"].as_object().unwrap();
    for p in [
        "/health",
        "/openapi.json",
        "/metrics",
        "/inference/models",
        "/inference/contexts/{id}/evaluate",
        "/attest/nonce",
        "/kbs/release/{name}",
        "/mpc/sessions/{id}/requests/{seat}",
        "/console/api/overview",
        "/console/api/audit/{source}",
    ] {
        assert!(paths.contains_key(p), "{p} is not documented");
    }
    assert!(!paths.contains_key("/dp/query"), "[dp] is not mounted");
    assert!(d["components"]["schemas"]["ModelInfo"].is_object());
    let http = veil_server::client::http_client().unwrap();
    let mut checked = 0;
    for (path, ops) in paths {
        let concrete = path
            .replace("{id}", "0")
            .replace("{name}", "m")
            .replace("{seat}", "dealer")
            .replace("{file}", "ca.pem")
            .replace("{source}", "attest");
        for method in ops.as_object().unwrap().keys() {
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let r = http
                .request(m, format!("{full}{concrete}"))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            // A routed operation answers (perhaps 4xx for want of a token or a body); an
            // unrouted one is a bare 404/405 without Veil's error body.
            assert!(
                !matches!(status, 404 | 405) || body["kind"].is_string(),
                "{method} {path}: {status} {body}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 14, "{checked}");
    // A server with nothing enabled documents only itself.
    let bare = site::serve("", &dir).await;
    let d = doc(&bare.url).await;
    let paths: Vec<&String> = d["paths"].as_object().unwrap().keys().collect();
    assert_eq!(paths, ["/health", "/openapi.json"]);
    bare.stop_keeping_dir().await;
    drop(server);
}
