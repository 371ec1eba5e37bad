//! `veil serve` as an operator runs it: a configuration, tokens from `veil serve token`, and
//! a `kill -9` in the middle of a stream of queries. After the restart every answer that was
//! released is still charged, and the budget goes on from where it was.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

use std::io::{BufRead, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

fn ok(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_veil"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "veil {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A `veil serve` process; dropping it sends SIGKILL (no shutdown code runs).
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(config: &Path) -> (Server, String) {
    let (server, url, _) = start_any(config);
    let addr = url
        .strip_prefix("http://")
        .expect("plain HTTP in this test")
        .to_string();
    (server, addr)
}

/// Starts `veil serve`: the server, its URL, and the certificate's fingerprint under TLS.
fn start_any(config: &Path) -> (Server, String, Option<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_veil"))
        .args([
            "serve",
            "--config",
            &config.to_string_lossy(),
            "--listen",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let server = Server(child);
    let mut lines = std::io::BufReader::new(stdout).lines();
    let mut fingerprint = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some((_, f)) = line.split_once("(SHA-256 ") {
            fingerprint = Some(f.trim_end_matches(')').to_string());
        }
        if let Some(url) = line.strip_prefix("veil serve: listening on ") {
            let url = url.trim().to_string();
            std::thread::spawn(move || for _ in lines {});
            return (server, url, fingerprint);
        }
    }
    panic!("veil serve exited without listening");
}

/// One HTTP/1.1 request over a fresh connection: (status, body).
fn http(addr: &str, method: &str, path: &str, token: &str, body: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn remaining(addr: &str, token: &str) -> f64 {
    let (status, body) = http(addr, "GET", "/dp/datasets", token, "");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v[0]["remaining_epsilon"].as_f64().unwrap()
}

#[test]
fn a_server_killed_between_queries_loses_no_charge() {
    let dir = std::env::temp_dir().join(format!("veil-cli-serve-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.to_string_lossy().into_owned();
    ok(&["dp", "sample", "--dir", &d, "--rows", "2000"]);
    let ledger = dir.join("budget.db").to_string_lossy().into_owned();
    let metadata = dir.join("persons.toml").to_string_lossy().into_owned();
    ok(&[
        "dp",
        "dataset",
        "register",
        "--metadata",
        &metadata,
        "--ledger",
        &ledger,
        "--total-epsilon",
        "5",
    ]);
    let minted = ok(&["serve", "token", "alice"]);
    let token = minted
        .lines()
        .find_map(|l| l.split_once("): ").map(|(_, t)| t.trim().to_string()))
        .unwrap();
    let block: String = minted
        .lines()
        .skip_while(|l| !l.starts_with("[[dp.analysts]]"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(!block.contains(&token), "the configuration holds no token");
    let config = dir.join("veil.toml");
    std::fs::write(
        &config,
        format!(
            "[tls]\nmode = \"off\"\n\n[dp]\nledger = \"budget.db\"\n\n[[dp.datasets]]\nmetadata = \"persons.toml\"\n\
             tables = {{ persons = \"persons.csv\" }}\n\n{block}"
        ),
    )
    .unwrap();
    let query =
        r#"{"dataset": "persons", "sql": "SELECT COUNT(*) AS n FROM persons", "epsilon": 1.0}"#;

    let (server, addr) = start(&config);
    assert_eq!(remaining(&addr, &token), 5.0);
    for _ in 0..2 {
        let (status, body) = http(&addr, "POST", "/dp/query", &token, query);
        assert_eq!(status, 200, "{body}");
    }
    drop(server); // kill -9

    let (server, addr) = start(&config);
    assert_eq!(
        remaining(&addr, &token),
        3.0,
        "both released answers are still charged"
    );
    for _ in 0..3 {
        let (status, body) = http(&addr, "POST", "/dp/query", &token, query);
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = http(&addr, "POST", "/dp/query", &token, query);
    assert_eq!(status, 403, "the budget goes on from where it was: {body}");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// With no `[tls]` section the service speaks TLS with a self-signed certificate kept beside
/// the configuration: a client pinning it gets through, a restart serves the same certificate,
/// and plain HTTP gets no answer.
#[test]
fn tls_is_on_by_default_with_a_certificate_kept_across_restarts() {
    let dir = std::env::temp_dir().join(format!("veil-cli-serve-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("veil.toml");
    std::fs::write(&config, "# nothing enabled but /health\n").unwrap();
    let (server, url, fingerprint) = start_any(&config);
    assert!(url.starts_with("https://"), "{url}");
    let fingerprint = fingerprint.expect("the certificate's fingerprint is printed");
    let pem = std::fs::read(dir.join("veil-tls/cert.pem")).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let health = |url: String| {
        let client = veil_server::tls::client_trusting(&pem).unwrap();
        rt.block_on(async move {
            let r = client.get(format!("{url}/health")).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        })
    };
    assert_eq!(health(url.clone()), (200, "ok".to_string()));
    let plain = rt.block_on(async {
        let c = veil_server::client::http_client().unwrap();
        c.get(url.replace("https://", "http://") + "/health")
            .send()
            .await
            .map(|r| r.status().as_u16())
    });
    assert!(plain.map_or(true, |s| s != 200));
    drop(server);
    let (_server, url, again) = start_any(&config);
    assert_eq!(again.as_deref(), Some(fingerprint.as_str()));
    assert_eq!(health(url), (200, "ok".to_string()));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Encrypted inference as a client runs it against `veil serve` (over its default TLS): the
/// plan from the service (without the model's weights), `veil ml keygen|encrypt|decrypt` on
/// the client, the public context and the ciphertexts over HTTPS. The predictions are right on
/// held-out digits although the server saw neither the images nor the answers.
#[test]
fn an_inference_client_uses_the_service_with_the_cli() {
    let dir = std::env::temp_dir().join(format!("veil-cli-serve-ml-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let f = |name: &str| dir.join(name).to_string_lossy().into_owned();
    let models = concat!(env!("CARGO_MANIFEST_DIR"), "/../veil-ml/models");
    let digits = format!("{models}/digits_test.csv");
    ok(&[
        "ml",
        "compile",
        &format!("{models}/logreg.onnx"),
        "--calibration",
        &digits,
        "--out",
        &f("server.plan"),
    ]);
    let minted = ok(&["serve", "token", "clinic", "--for", "inference"]);
    let token = minted
        .lines()
        .find_map(|l| l.split_once("): ").map(|(_, t)| t.trim().to_string()))
        .unwrap();
    let block: String = minted
        .lines()
        .skip_while(|l| !l.starts_with("[[inference.clients]]"))
        .map(|l| format!("{l}\n"))
        .collect();
    let config = dir.join("veil.toml");
    std::fs::write(
        &config,
        format!("[[inference.models]]\nname = \"digits\"\nplan = \"server.plan\"\n\n{block}"),
    )
    .unwrap();
    let (_server, url, _) = start_any(&config);
    let pem = std::fs::read(dir.join("veil-tls/cert.pem")).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = veil_server::tls::client_trusting(&pem).unwrap();
    let get = |path: String| {
        let (c, t) = (client.clone(), token.clone());
        rt.block_on(async move {
            let r = c.get(path).bearer_auth(t).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.bytes().await.unwrap().to_vec()
        })
    };
    let post = |path: String, body: Vec<u8>| {
        let (c, t) = (client.clone(), token.clone());
        rt.block_on(async move {
            let r = c
                .post(path)
                .bearer_auth(t)
                .header("content-type", "application/octet-stream")
                .body(body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let body = r.bytes().await.unwrap().to_vec();
            assert!(status < 300, "{status}: {}", String::from_utf8_lossy(&body));
            body
        })
    };
    let plan = get(format!("{url}/inference/models/digits/plan"));
    assert_ne!(plan, std::fs::read(dir.join("server.plan")).unwrap());
    std::fs::write(dir.join("client.plan"), &plan).unwrap();
    let (cplan, public, secret) = (f("client.plan"), f("c.pub"), f("c.key"));
    ok(&[
        "ml", "keygen", "--plan", &cplan, "--public", &public, "--secret", &secret,
    ]);
    let created = post(
        format!("{url}/inference/models/digits/contexts"),
        std::fs::read(&public).unwrap(),
    );
    let id = serde_json::from_slice::<serde_json::Value>(&created).unwrap()["context"]
        .as_str()
        .unwrap()
        .to_string();
    ok(&[
        "ml",
        "encrypt",
        "--plan",
        &cplan,
        "--public",
        &public,
        "--secret",
        &secret,
        "--data",
        &digits,
        "--limit",
        "30",
        "--out",
        &f("q"),
    ]);
    let answer = post(
        format!("{url}/inference/contexts/{id}/evaluate"),
        std::fs::read(f("q")).unwrap(),
    );
    std::fs::write(f("a"), answer).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_veil"))
        .args([
            "ml",
            "decrypt",
            "--plan",
            &cplan,
            "--public",
            &public,
            "--secret",
            &secret,
            "--answer",
            &f("a"),
            "--labels",
            &digits,
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let accuracy: f64 = stderr
        .split("accuracy: ")
        .nth(1)
        .and_then(|r| r.split('(').nth(1))
        .and_then(|r| r.split('%').next())
        .unwrap()
        .parse()
        .unwrap();
    assert!(accuracy >= 90.0, "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
