//! The web console (`[console]`), attacked and used.
//!
//! Over HTTP: the operator API refuses every token but an operator's (an analyst's included),
//! and the page is served with headers that keep other sites and injected markup out.
//!
//! In a real browser (headless Chromium, see `browser`): an operator loads the console, an
//! analyst previews a query's cost and runs it; what the page shows is compared with what the
//! API returns, as text and as pixels (a screenshot of the page's cell against a screenshot of
//! the same cell holding the API's value). Markup smuggled in through a column alias stays
//! text. The page verifies the attestation service's audit log itself, and reports a log
//! edited on disk as broken.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    reason = "tests"
)]

use std::time::Duration;

use crate::browser;
use crate::site;

use serde_json::{json, Value};
use site::Site;
use veil_dp::ledger::SqliteLedger;
use veil_server::auth::token_sha256;

const OPERATOR: &str = "veil_operator_token_0123456789abcdef";
const ALICE: &str = "veil_alice_token_0123456789abcdef";
const WAIT: Duration = Duration::from_secs(60);

/// `[dp]` with one dataset (total ε = 3, alice ε = 1), `[attest]` and `[console]`.
async fn site(name: &str) -> Site {
    let dir = site::fresh_dir(&format!("console-{name}"));
    let ledger = SqliteLedger::open(dir.join("budget.db")).unwrap();
    site::persons_dataset(&dir, 1_000, 5, &ledger, 3.0);
    std::fs::write(
        dir.join("policy.toml"),
        format!(
            "tee = [\"sim\"]\n[measurements]\nmeasurement = [\"{}\"]\n",
            hex::encode([0x11u8; 48])
        ),
    )
    .unwrap();
    let config = format!(
        r#"
[dp]
ledger = "budget.db"
[[dp.datasets]]
metadata = "persons.toml"
tables = {{ persons = "persons.csv" }}
[[dp.analysts]]
name = "alice"
token_sha256 = "{}"
epsilon = 1.0
[attest]
policy = "policy.toml"
sim_platform_keys = ["{}"]
[[console.operators]]
name = "ops"
token_sha256 = "{}"
"#,
        hex::encode(token_sha256(ALICE)),
        hex::encode(
            veil_attest::evidence::sim::SimulatedPlatform::from_seed(&[9; 32]).public_key()
        ),
        hex::encode(token_sha256(OPERATOR)),
    );
    site::serve(&config, &dir).await
}

async fn get(site: &Site, path: &str, token: Option<&str>) -> reqwest::Response {
    let mut r = veil_server::client::http_client()
        .unwrap()
        .get(format!("{}{path}", site.url));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    r.send().await.unwrap()
}

async fn post(site: &Site, path: &str, token: &str, body: &Value) -> Value {
    veil_server::client::http_client()
        .unwrap()
        .post(format!("{}{path}", site.url))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Two refused attestations: the attestation service's log gets two signed entries.
async fn refuse_two_attestations(site: &Site) {
    for _ in 0..2 {
        let r = veil_server::client::http_client()
            .unwrap()
            .post(format!("{}/attest/attest", site.url))
            .json(&json!({ "evidence": "AAAA", "nonce": "AAAA", "runtime_public_key": "AAAA" }))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_client_error());
    }
}

#[tokio::test]
async fn the_operator_api_answers_operators_only_and_the_page_is_locked_down() {
    let site = site("http").await;
    // No token, a garbage token, an analyst's token: the same 401 and body.
    let mut bodies = Vec::new();
    for token in [None, Some("veil_nonsense"), Some(ALICE), Some("")] {
        for path in ["/console/api/overview", "/console/api/audit/attest"] {
            let r = get(&site, path, token).await;
            assert_eq!(r.status(), 401, "{path} with {token:?}");
            bodies.push(r.text().await.unwrap());
        }
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "{bodies:?}");

    // The operator sees the dataset's totals and the logs; an unknown log is a 404, and a
    // path is a name, not a file.
    let o: Value = get(&site, "/console/api/overview", Some(OPERATOR))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(o["datasets"][0]["name"], "persons");
    assert_eq!(o["datasets"][0]["total_epsilon"], 3.0);
    assert_eq!(o["audit_logs"], json!(["attest"]));
    for path in ["nope", "..%2Fbudget.db", "../../etc/passwd"] {
        let r = get(&site, &format!("/console/api/audit/{path}"), Some(OPERATOR)).await;
        assert!(r.status() == 404, "{path}: {}", r.status());
    }

    // The page, its script and its style: served with a policy that allows only themselves.
    for (path, kind) in [
        ("/console/", "text/html"),
        ("/console/console.js", "text/javascript"),
        ("/console/console.css", "text/css"),
    ] {
        let r = get(&site, path, None).await;
        assert_eq!(r.status(), 200, "{path}");
        let h = r.headers();
        assert!(h["content-type"].to_str().unwrap().starts_with(kind));
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
        assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"));
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["x-frame-options"], "DENY");
        let body = r.text().await.unwrap();
        assert!(
            !body.contains("persons"),
            "{path} holds data without a token"
        );
    }
    // The page has no inline script or style for the policy to forbid.
    let page = get(&site, "/console/", None).await.text().await.unwrap();
    assert!(!page.contains("<script>") && !page.contains("style="));
    assert!(["onload=", "onclick=", "onerror=", "onsubmit="]
        .iter()
        .all(|h| !page.contains(h)));
    let r = get(&site, "/console", None).await;
    assert_eq!(r.status(), 200, "/console redirects to /console/");
}

#[test]
fn a_browser_loads_the_console_previews_and_runs_a_query_and_verifies_the_audit_log() {
    let Some(chromium) = browser::chromium() else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let site = rt.block_on(site("browser"));
    rt.block_on(refuse_two_attestations(&site));
    let mut b = browser::Browser::launch(&chromium, 1200, 2000);
    b.open(&format!("{}/console/", site.url));

    // The operator loads the console: budgets and the verified log.
    b.eval(&format!(
        "document.getElementById('operator-token').value = {}; \
         document.getElementById('load').click(); true",
        json!(OPERATOR)
    ));
    b.wait_for(
        "document.getElementById('status').dataset.state === 'loaded'",
        WAIT,
    );
    assert_eq!(
        b.text("#datasets tr[data-name='persons'] .remaining-epsilon"),
        "3.0000"
    );
    let verdict = b.text("#audit tr[data-source='attest'] .verdict");
    assert!(verdict.starts_with("✓ verified: 2 entries"), "{verdict}");
    let entries = rt.block_on(async {
        get(&site, "/console/api/audit/attest", Some(OPERATOR))
            .await
            .json::<Value>()
            .await
            .unwrap()
    });
    let server_side = veil_attest::audit::verify_entries(entries["text"].as_str().unwrap(), None);
    assert_eq!(
        server_side.unwrap().len(),
        2,
        "the page and the library agree"
    );

    // The analyst previews a query whose column alias is markup.
    let alias = "<img src=x onerror='window.pwned=1'>";
    let sql = format!("SELECT COUNT(*) AS \"{alias}\" FROM persons");
    b.eval(&format!(
        "document.getElementById('analyst-token').value = {}; \
         document.getElementById('query-sql').value = {}; \
         document.getElementById('query-epsilon').value = '0.25'; \
         document.getElementById('dry-run').click(); true",
        json!(ALICE),
        json!(sql)
    ));
    b.wait_for(
        "['previewed', 'error'].includes(document.getElementById('query-section').dataset.state)",
        WAIT,
    );
    assert_eq!(b.text("#query-error"), "", "the dry run failed");
    let query = json!({ "dataset": "persons", "sql": sql, "epsilon": 0.25, "dry_run": true });
    let preview = rt.block_on(post(&site, "/dp/query", ALICE, &query));
    assert_eq!(
        b.text("#preview-epsilon"),
        format!("{:.4}", preview["epsilon"].as_f64().unwrap())
    );
    let accuracy = preview["accuracy"][alias].as_f64().unwrap();
    assert_eq!(
        b.text("#preview-accuracy"),
        format!("{alias} ±{accuracy:.4}"),
        "the page shows the API's accuracy, the alias as text"
    );

    // It runs the query: charged once, and the page shows what the ledger holds.
    b.eval("document.getElementById('run').click(); true");
    b.wait_for(
        "['answered', 'error'].includes(document.getElementById('query-section').dataset.state)",
        WAIT,
    );
    assert_eq!(b.text("#query-error"), "", "the query failed");
    let o: Value = rt.block_on(async {
        get(&site, "/console/api/overview", Some(OPERATOR))
            .await
            .json()
            .await
            .unwrap()
    });
    let d = &o["datasets"][0];
    let remaining = d["remaining_epsilon"].as_f64().unwrap();
    assert!(
        (remaining - 2.75).abs() < 1e-9,
        "charged exactly once: {remaining}"
    );
    assert_eq!(b.text("#answer-remaining"), format!("{remaining:.4}"));
    assert_eq!(b.text("#answer-epsilon"), "0.2500");
    let cell = "#datasets tr[data-name='persons'] .remaining-epsilon";
    assert_eq!(b.text(cell), format!("{remaining:.4}"));
    assert_eq!(d["charges"][0]["analyst"], "alice");
    assert_eq!(
        b.text("#charges tr[data-analyst='alice'] .spent-epsilon"),
        format!("{:.4}", d["charges"][0]["epsilon"].as_f64().unwrap())
    );
    assert_eq!(b.text("#result thead th"), alias);

    // The markup stayed text: no element was made from it and its script never ran.
    assert_eq!(b.eval("document.querySelectorAll('img').length"), json!(0));
    assert_eq!(b.eval("typeof window.pwned"), json!("undefined"));

    // Pixels: the cell as the page drew it equals the same cell drawn with the API's value,
    // and differs when drawn with any other value.
    let shown = b.screenshot(cell);
    let set = |b: &mut browser::Browser, text: String| {
        b.eval(&format!(
            "document.querySelector({}).textContent = {}; true",
            json!(cell),
            json!(text)
        ));
    };
    set(&mut b, format!("{remaining:.4}"));
    assert!(
        shown == b.screenshot(cell),
        "the page draws the API's value"
    );
    set(&mut b, format!("{:.4}", remaining + 0.25));
    assert!(
        shown != b.screenshot(cell),
        "the comparison tells values apart"
    );
    set(&mut b, format!("{remaining:.4}"));
    let page = b.screenshot_page();
    assert!(page.starts_with(b"\x89PNG"));
    std::fs::write(
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("veil-console.png"),
        &page,
    )
    .unwrap();

    // Someone edits the attestation log on disk: the page says which line broke.
    let path = site.dir.join("veil-attest-audit.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    let edited = text.replacen("attestation_refused", "attestation_refusex", 1);
    assert_ne!(text, edited);
    std::fs::write(&path, edited).unwrap();
    b.eval("document.getElementById('load').click(); true");
    b.wait_for(
        "document.getElementById('status').dataset.state === 'loaded' && \
         document.querySelector(\"#audit tr[data-source='attest']\").dataset.verified !== undefined",
        WAIT,
    );
    let verdict = b.text("#audit tr[data-source='attest'] .verdict");
    assert!(
        verdict.starts_with("✗ line 1: the signature does not verify"),
        "{verdict}"
    );
    drop(b);
    drop(site);
}
