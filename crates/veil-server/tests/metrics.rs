//! `veil serve`'s `/metrics`: requests are counted by route pattern, and a client requesting
//! random paths with invented methods cannot grow the series (a cardinality attack on memory
//! and on the monitoring system), nor put what it sends into a label; with a token
//! configured, scraping needs it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    reason = "tests"
)]

use crate::site;
use veil_server::auth::token_sha256;

async fn scrape(url: &str, token: Option<&str>) -> (u16, String) {
    let mut r = veil_server::client::http_client()
        .unwrap()
        .get(format!("{url}/metrics"));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let resp = r.send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_paths_and_methods_do_not_grow_the_series() {
    let server = site::serve("[metrics]\n", &site::fresh_dir("metrics-labels")).await;
    let url = server.url.clone();
    let http = veil_server::client::http_client().unwrap();
    for _ in 0..3 {
        assert_eq!(
            http.get(format!("{url}/health"))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    scrape(&url, None).await;
    for i in 0..300u32 {
        let method = reqwest::Method::from_bytes(format!("X{}", i % 50).as_bytes()).unwrap();
        let path = format!("/secret-{i:08x}/{}", i * 7919);
        let r = http
            .request(method, format!("{url}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
        let r = http.get(format!("{url}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 404);
    }
    let (status, after) = scrape(&url, None).await;
    assert_eq!(status, 200);
    assert!(
        after.contains(
            "veil_http_requests_total{route=\"/health\",method=\"GET\",status=\"200\"} 3"
        ),
        "{after}"
    );
    assert!(after.contains("route=\"unmatched\",method=\"other\",status=\"404\"} 300"));
    assert!(after.contains("route=\"unmatched\",method=\"GET\",status=\"404\"} 300"));
    assert!(
        !after.contains("secret-"),
        "a client's path reached a label"
    );
    // 600 distinct requests made no series of their own: the routes labelled are the two
    // served ones and `unmatched`, whatever the clients sent.
    let routes: std::collections::BTreeSet<&str> = after
        .lines()
        .filter_map(|l| {
            l.split_once("route=\"")
                .map(|(_, r)| r.split('"').next().unwrap())
        })
        .collect();
    assert_eq!(
        routes.into_iter().collect::<Vec<_>>(),
        ["/health", "/metrics", "unmatched"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_scrape_token_is_required() {
    let server = site::serve(
        &format!(
            "[metrics]\ntoken_sha256 = \"{}\"\n",
            hex::encode(token_sha256("scrape-me"))
        ),
        &site::fresh_dir("metrics-token"),
    )
    .await;
    let url = server.url.clone();
    assert_eq!(scrape(&url, None).await.0, 401);
    assert_eq!(scrape(&url, Some("wrong")).await.0, 401);
    let (status, text) = scrape(&url, Some("scrape-me")).await;
    assert_eq!(status, 200);
    assert!(text.contains("veil_http_requests_total"), "{text}");
}
