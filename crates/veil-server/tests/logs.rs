//! The request log: one event per request with the method, the route's pattern, the status
//! and the time. What a client put in the path (an id, a name) or in its headers (a token)
//! never reaches the log.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    reason = "tests"
)]

use std::sync::{Arc, Mutex};

mod site;

/// A writer appending to a shared buffer.
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_log_names_routes_not_what_clients_sent() {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let sink = buf.clone();
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("veil::http=info"))
            .with_ansi(false)
            .with_writer(move || Capture(sink.clone()))
            .finish(),
    )
    .unwrap();
    let token = "veil_operator_secret_token_0123456789";
    let dir = site::fresh_dir("logs");
    let config = format!(
        "[[console.operators]]\nname = \"ops\"\ntoken_sha256 = \"{}\"\n",
        hex::encode(veil_server::auth::token_sha256(token))
    );
    let site = site::serve(&config, &dir).await;
    let http = veil_server::client::http_client().unwrap();
    for path in [
        "/console/api/audit/secret-log-name-4242",
        "/console/api/overview",
        "/no/such/route/secret-path-4242",
    ] {
        http.get(format!("{}{path}", site.url))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
    }
    let r = http
        .request(
            reqwest::Method::from_bytes(b"SECRETVERB").unwrap(),
            format!("{}/health", site.url),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    drop(site);
    let log = String::from_utf8(buf.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 4, "{log}");
    assert!(
        lines[0].contains("route=/console/api/audit/{*source}") && lines[0].contains("status=404")
    );
    assert!(lines[1].contains("route=/console/api/overview") && lines[1].contains("status=200"));
    assert!(lines[2].contains("route=unmatched") && lines[2].contains("status=404"));
    assert!(lines[3].contains("method=other") && lines[3].contains("status=405"));
    for secret in ["secret-log-name", "secret-path", "SECRETVERB", token] {
        assert!(!log.contains(secret), "{secret} reached the log: {log}");
    }
}
