//! End to end over HTTP on loopback: a simulated workload gets a nonce, attests, receives a
//! token and has a secret released to its attested key; every way of getting it wrong is
//! refused with its reason and audited.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

#[path = "../../veil-attest/tests/common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use veil_attest::audit::{verify_log, AuditLog};
use veil_attest::evidence::sim::{SimVerifier, SimulatedPlatform};
use veil_attest::policy::Policy;
use veil_attest::service::{AttestationService, Verifiers};
use veil_attest::token::{TokenAlgorithm, TokenIssuer};
use veil_attest::TeeError;
use veil_kbs::{KeyBroker, SecretStore};
use veil_server::client::{self, SimulatedWorkload};

const GOOD: [u8; 48] = [0x11; 48];
const BAD: [u8; 48] = [0x22; 48];

struct Env {
    attest_url: String,
    kbs_url: String,
    clock: Arc<AtomicU64>,
    dir: std::path::PathBuf,
    platform_seed: [u8; 32],
}

async fn spawn(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(veil_server::serve(listener, router, std::future::pending()));
    format!("http://{addr}")
}

async fn start(name: &str, alg: TokenAlgorithm) -> Env {
    let dir = std::env::temp_dir().join(format!("veil-e2e-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let platform_seed = [9u8; 32];
    let platform = SimulatedPlatform::from_seed(&platform_seed);
    let clock = Arc::new(AtomicU64::new(1_800_000_000));
    let c = clock.clone();
    let policy = Policy::toml(
        "room.toml",
        &format!(
            "tee = [\"sim\"]\nmin_security_version = 2\n[measurements]\nmeasurement = [\"{}\"]\n",
            hex::encode(GOOD)
        ),
    )
    .unwrap();
    let verifiers = Verifiers {
        sim: vec![SimVerifier::new(&platform.public_key()).unwrap()],
        ..Verifiers::default()
    };
    let svc = AttestationService::new(
        verifiers,
        policy,
        TokenIssuer::generate(alg).unwrap(),
        AuditLog::open(&dir.join("attest.jsonl")).unwrap(),
    )
    .with_lifetimes(30, 120)
    .with_clock(Arc::new(move || c.load(Ordering::SeqCst)));
    let attest_url = spawn(veil_server::attest::router(Arc::new(svc))).await;

    let store = SecretStore::open(&dir.join("kbs")).unwrap();
    store
        .put(
            "model-key",
            b"the model key",
            "toml",
            "release.toml",
            &format!(
                "tee = [\"sim\"]\n[measurements]\nmeasurement = [\"{}\"]\n",
                hex::encode(GOOD)
            ),
            0,
        )
        .unwrap();
    store
        .put(
            "other-key",
            b"for another workload",
            "rego",
            "other.rego",
            "package kbs\nimport rego.v1\nallow if input.measurements.measurement == \"00\"\nallow_sim := true\n",
            0,
        )
        .unwrap();
    let jwks_url = format!("{attest_url}/.well-known/jwks.json");
    let verifier = client::fetch_jwks(&jwks_url).await.unwrap();
    let c = clock.clone();
    let broker = KeyBroker::new(
        store,
        verifier,
        Some(veil_server::client::jwks_source(&jwks_url)),
        AuditLog::open(&dir.join("kbs.jsonl")).unwrap(),
    )
    .with_clock(Arc::new(move || c.load(Ordering::SeqCst)));
    let kbs_url = spawn(veil_server::kbs::router(Arc::new(broker))).await;
    Env {
        attest_url,
        kbs_url,
        clock,
        dir,
        platform_seed,
    }
}

fn refused(e: &TeeError, status: u16, needle: &str) {
    match e {
        TeeError::Refused { status: s, reason } => {
            assert_eq!(*s, status, "{reason}");
            assert!(reason.contains(needle), "{reason:?} lacks {needle:?}");
        }
        other => panic!("expected a refusal, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_workload_attests_and_receives_its_key_over_http() {
    for alg in [TokenAlgorithm::ES256, TokenAlgorithm::ES384] {
        let env = start(&format!("flow-{alg:?}"), alg).await;
        let platform = || SimulatedPlatform::from_seed(&env.platform_seed);
        let workload = SimulatedWorkload::new(platform(), GOOD, 3);

        let resp = workload.attest(&env.attest_url).await.unwrap();
        assert_eq!(resp.claims.evidence.tee, veil_attest::TeeKind::Sim);
        assert_eq!(resp.claims.policy.name, "room.toml");
        let secret = workload
            .fetch_secret(&env.kbs_url, "model-key", &resp.token)
            .await
            .unwrap();
        assert_eq!(secret.as_slice(), b"the model key");

        // The wrapped secret is useless to anyone but the attested key.
        let released = client::release(&env.kbs_url, "model-key", &resp.token)
            .await
            .unwrap();
        let eavesdropper = SimulatedWorkload::new(platform(), GOOD, 3);
        assert!(eavesdropper.key().open(&released).is_err());

        // A secret whose policy wants another measurement: refused, with the reason.
        let e = workload
            .fetch_secret(&env.kbs_url, "other-key", &resp.token)
            .await
            .unwrap_err();
        refused(&e, 403, "allow is not true");
        // Unknown secret.
        let e = client::release(&env.kbs_url, "nope", &resp.token)
            .await
            .unwrap_err();
        refused(&e, 404, "no secret named");

        // A measurement not in the policy gets no token, hence nothing.
        let intruder = SimulatedWorkload::new(platform(), BAD, 3);
        let e = intruder.attest(&env.attest_url).await.unwrap_err();
        refused(&e, 403, "measurement measurement");
        // Too old a security version.
        let old = SimulatedWorkload::new(platform(), GOOD, 1);
        refused(
            &old.attest(&env.attest_url).await.unwrap_err(),
            403,
            "security version 1 is below 2",
        );
        // Evidence from an untrusted platform.
        let rogue = SimulatedWorkload::new(SimulatedPlatform::from_seed(&[1; 32]), GOOD, 3);
        refused(
            &rogue.attest(&env.attest_url).await.unwrap_err(),
            403,
            "evidence rejected",
        );

        // A debug-mode TEE (its memory is readable by the host), otherwise identical.
        let nonce = client::fetch_nonce(&env.attest_url).await.unwrap();
        let mut req = workload.attest_request(&nonce.nonce).unwrap();
        let raw_nonce = veil_attest::util::decode_b64("nonce", &nonce.nonce).unwrap();
        let rd = veil_attest::binding::expected_report_data(
            &raw_nonce,
            &workload.key().public_bytes(),
            b"",
        );
        req.evidence = veil_attest::util::encode_b64(&platform().issue(&GOOD, &rd, true, 3));
        refused(
            &client::attest(&env.attest_url, &req).await.unwrap_err(),
            403,
            "debug mode",
        );
        // A replayed nonce.
        let nonce = client::fetch_nonce(&env.attest_url).await.unwrap();
        let req = workload.attest_request(&nonce.nonce).unwrap();
        client::attest(&env.attest_url, &req).await.unwrap();
        refused(
            &client::attest(&env.attest_url, &req).await.unwrap_err(),
            401,
            "replay",
        );
        // Evidence bound to another key than the one presented (a relay attack).
        let nonce = client::fetch_nonce(&env.attest_url).await.unwrap();
        let mut relayed = workload.attest_request(&nonce.nonce).unwrap();
        relayed.runtime_public_key =
            veil_attest::util::encode_b64(&eavesdropper.key().public_bytes());
        refused(
            &client::attest(&env.attest_url, &relayed).await.unwrap_err(),
            403,
            "report data mismatch",
        );
        // An expired nonce.
        let nonce = client::fetch_nonce(&env.attest_url).await.unwrap();
        env.clock.fetch_add(31, Ordering::SeqCst);
        let req = workload.attest_request(&nonce.nonce).unwrap();
        refused(
            &client::attest(&env.attest_url, &req).await.unwrap_err(),
            401,
            "expired",
        );
        // An expired token.
        let fresh = workload.attest(&env.attest_url).await.unwrap();
        env.clock.fetch_add(121, Ordering::SeqCst);
        refused(
            &workload
                .fetch_secret(&env.kbs_url, "model-key", &fresh.token)
                .await
                .unwrap_err(),
            401,
            "expired",
        );
        // A token signed by another key (not the service's).
        let forger = TokenIssuer::generate(alg).unwrap();
        let mut claims = fresh.claims.clone();
        claims.exp += 10_000;
        let forged = forger.sign(&claims).unwrap();
        refused(
            &client::release(&env.kbs_url, "model-key", &forged)
                .await
                .unwrap_err(),
            401,
            "does not trust",
        );
        // Malformed requests are 400s, not crashes.
        let http = client::http_client().unwrap();
        let r = http
            .post(format!("{}/attest", env.attest_url))
            .body("{not json")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 400);
        let r = http
            .post(format!("{}/release/model-key", env.kbs_url))
            .body("[]")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 400);

        // Both audit logs verify and hold every decision.
        let attest_log = verify_log(&env.dir.join("attest.jsonl")).unwrap();
        let issued = attest_log
            .iter()
            .filter(|e| e.event == "token_issued")
            .count();
        let refusals = attest_log
            .iter()
            .filter(|e| e.event == "attestation_refused")
            .count();
        assert_eq!((issued, refusals), (3, 7), "{attest_log:#?}");
        let kbs_log = verify_log(&env.dir.join("kbs.jsonl")).unwrap();
        assert_eq!(
            kbs_log
                .iter()
                .filter(|e| e.event == "secret_released")
                .count(),
            2
        );
        assert!(kbs_log.iter().any(|e| e.event == "release_refused"
            && e.details["reason"].as_str().unwrap().contains("expired")));
        std::fs::remove_dir_all(&env.dir).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_secrets_are_not_released() {
    let env = start("revoke", TokenAlgorithm::ES256).await;
    let workload =
        SimulatedWorkload::new(SimulatedPlatform::from_seed(&env.platform_seed), GOOD, 2);
    let token = workload.attest(&env.attest_url).await.unwrap().token;
    SecretStore::open(&env.dir.join("kbs"))
        .unwrap()
        .revoke("model-key")
        .unwrap();
    refused(
        &workload
            .fetch_secret(&env.kbs_url, "model-key", &token)
            .await
            .unwrap_err(),
        404,
        "revoked",
    );
    std::fs::remove_dir_all(&env.dir).unwrap();
}

#[test]
fn real_sgx_quote_through_the_service_is_judged_by_policy_and_binding() {
    use veil_attest::evidence::dcap::DcapVerifier;
    use veil_attest::service::AttestRequest;
    use veil_attest::util::encode_b64;
    let (Some(quote), Some(collateral)) = (
        common::vector("dcap/sgx_quote"),
        common::vector("dcap/sgx_quote_collateral.json"),
    ) else {
        return;
    };
    let verifier =
        DcapVerifier::from_collateral_json(std::str::from_utf8(&collateral).unwrap()).unwrap();
    let service = |policy: &str| {
        AttestationService::new(
            Verifiers {
                dcap: vec![verifier.clone()],
                verify_at: Some(1_751_328_000),
                ..Verifiers::default()
            },
            Policy::toml("p.toml", policy).unwrap(),
            TokenIssuer::generate(TokenAlgorithm::ES256).unwrap(),
            AuditLog::in_memory(),
        )
    };
    let request = |svc: &AttestationService| AttestRequest {
        evidence: encode_b64(&quote),
        nonce: svc.nonce().unwrap().nonce,
        runtime_public_key: encode_b64(&[7u8; 32]),
        runtime_data: String::new(),
    };
    // The recorded quote does not bind our nonce: refused for that, whatever the policy.
    let strict = service("tee = [\"sgx\"]");
    let err = strict.attest(&request(&strict)).unwrap_err();
    assert_eq!(err, TeeError::BindingMismatch);
    assert_eq!(strict.audit().len(), 1);

    // The policy decision on the real claims: a strict policy refuses the out-of-date TCB
    // status, a policy that accepts it lets it through.
    let claims = serde_json::to_value(
        veil_attest::evidence::Verifier::verify(&verifier, &quote, 1_751_328_000).unwrap(),
    )
    .unwrap();
    let err = Policy::toml("strict.toml", "tee = [\"sgx\"]")
        .unwrap()
        .evaluate(&claims)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("TCB status \"ConfigurationAndSWHardeningNeeded\""),
        "{err}"
    );
    Policy::toml(
        "relaxed.toml",
        "tee = [\"sgx\"]\ntcb_status = [\"UpToDate\", \"ConfigurationAndSWHardeningNeeded\"]",
    )
    .unwrap()
    .evaluate(&claims)
    .unwrap();
    // Without collateral for DCAP, the service says what is missing.
    let none = AttestationService::new(
        Verifiers::default(),
        Policy::toml("p.toml", "").unwrap(),
        TokenIssuer::generate(TokenAlgorithm::ES256).unwrap(),
        AuditLog::in_memory(),
    );
    let err = none.attest(&request(&none)).unwrap_err().to_string();
    assert!(err.contains("collateral"), "{err}");
}

/// Issue 12, item 14: a flood of unauthenticated `GET /nonce` calls used to fill a table of
/// 2^20 outstanding nonces, after which every client got 401 until they expired. Nonces are
/// now stateless (MAC-protected and time-bound), so issuing costs no memory: after the flood
/// a fresh client still attests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nonce_flood_does_not_lock_out_a_well_behaved_client() {
    let platform_seed = [9u8; 32];
    let platform = SimulatedPlatform::from_seed(&platform_seed);
    let policy = Policy::toml(
        "p.toml",
        &format!(
            "tee = [\"sim\"]\n[measurements]\nmeasurement = [\"{}\"]\n",
            hex::encode(GOOD)
        ),
    )
    .unwrap();
    let svc = Arc::new(
        AttestationService::new(
            Verifiers {
                sim: vec![SimVerifier::new(&platform.public_key()).unwrap()],
                ..Verifiers::default()
            },
            policy,
            TokenIssuer::generate(TokenAlgorithm::ES256).unwrap(),
            AuditLog::in_memory(),
        )
        .with_clock(Arc::new(|| 1_800_000_000)),
    );
    let url = spawn(veil_server::attest::router(svc.clone())).await;
    // The flood: more nonces than the old table held, none of them ever used, all within
    // their lifetime (the clock does not move). The same work as 2^20 + 16 `GET /nonce`
    // requests, without the HTTP transport.
    let flood = std::thread::spawn({
        let svc = svc.clone();
        move || {
            for _ in 0..(1usize << 20) + 16 {
                let _ = svc.nonce();
            }
        }
    });
    flood.join().unwrap();
    // Some of it over HTTP too.
    for _ in 0..64 {
        client::fetch_nonce(&url).await.unwrap();
    }
    let workload = SimulatedWorkload::new(SimulatedPlatform::from_seed(&platform_seed), GOOD, 3);
    let resp = workload.attest(&url).await.unwrap();
    assert_eq!(resp.claims.evidence.tee, veil_attest::TeeKind::Sim);
}

fn sim_token_claims(now: u64) -> veil_attest::token::AttestationClaims {
    let workload = veil_kbs::WorkloadKeyPair::generate();
    veil_attest::token::AttestationClaims {
        iss: veil_attest::token::ISSUER.into(),
        iat: now,
        nbf: now,
        exp: now + 300,
        jti: "00".into(),
        evidence: veil_attest::VerifiedClaims {
            tee: veil_attest::TeeKind::Sim,
            measurements: [("measurement".to_string(), hex::encode(GOOD))].into(),
            signer: None,
            product_id: None,
            security_version: Some(3),
            debug: false,
            tcb_status: "Simulated".into(),
            advisory_ids: Vec::new(),
            report_data: "00".repeat(64),
            vmpl: None,
            tcb: Default::default(),
            signing_key: None,
        },
        runtime_public_key: veil_attest::util::encode_b64(&workload.public_bytes()),
        runtime_data: String::new(),
        policy: veil_attest::token::PolicyRef {
            name: "p.toml".into(),
            sha256: "00".repeat(32),
        },
    }
}

/// Issue 12, item 16: a token naming an unknown key id made the broker fetch the JWKS again,
/// for every such token: 20 forged tokens, 20 outbound requests. Refetches are now rate
/// limited (one per interval), and a genuinely rotated key is still picked up after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_key_ids_do_not_make_the_broker_refetch_the_jwks_each_time() {
    let now = 1_800_000_000u64;
    let issuer = TokenIssuer::generate(TokenAlgorithm::ES256).unwrap();
    let served = Arc::new(std::sync::Mutex::new(issuer.jwks()));
    let fetches = Arc::new(AtomicU64::new(0));
    let app = axum::Router::new().route(
        "/jwks.json",
        axum::routing::get({
            let served = served.clone();
            let fetches = fetches.clone();
            move || {
                fetches.fetch_add(1, Ordering::SeqCst);
                let jwks = served.lock().unwrap().clone();
                async move { axum::Json(jwks) }
            }
        }),
    );
    let jwks_url = format!("{}/jwks.json", spawn(app).await);
    let verifier = client::fetch_jwks(&jwks_url).await.unwrap();
    assert_eq!(fetches.load(Ordering::SeqCst), 1);

    let dir = std::env::temp_dir().join(format!("veil-jwks-refetch-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = SecretStore::open(&dir).unwrap();
    store
        .put(
            "model-key",
            b"the model key",
            "toml",
            "p.toml",
            "tee = [\"sim\"]",
            0,
        )
        .unwrap();
    let clock = Arc::new(AtomicU64::new(now));
    let c = clock.clone();
    let broker = KeyBroker::new(
        store,
        verifier,
        Some(veil_server::client::jwks_source(&jwks_url)),
        AuditLog::in_memory(),
    )
    .with_clock(Arc::new(move || c.load(Ordering::SeqCst)));

    // The genuine issuer's token is accepted without any fetch.
    broker
        .release("model-key", &issuer.sign(&sim_token_claims(now)).unwrap())
        .await
        .unwrap();
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
    // 20 tokens, each signed by a fresh key with its own key id.
    for _ in 0..20 {
        let forger = TokenIssuer::generate(TokenAlgorithm::ES256).unwrap();
        let err = broker
            .release("model-key", &forger.sign(&sim_token_claims(now)).unwrap())
            .await
            .unwrap_err();
        assert!(matches!(err, TeeError::TokenRejected(_)), "{err}");
    }
    let after_flood = fetches.load(Ordering::SeqCst);
    assert!(
        after_flood <= 2,
        "{} outbound JWKS fetches for 20 forged tokens",
        after_flood - 1
    );

    // The service rotates its key: once the refetch interval has passed, the broker picks
    // up the new key on the first token that names it.
    let rotated = TokenIssuer::generate(TokenAlgorithm::ES256).unwrap();
    *served.lock().unwrap() = rotated.jwks();
    clock.fetch_add(veil_kbs::JWKS_REFRESH_INTERVAL_SECS, Ordering::SeqCst);
    let now = clock.load(Ordering::SeqCst);
    broker
        .release("model-key", &rotated.sign(&sim_token_claims(now)).unwrap())
        .await
        .unwrap();
    assert_eq!(fetches.load(Ordering::SeqCst), after_flood + 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Issue 12, item 16: a Rego policy that does not define `allow_sim` answered 500 (an
/// evaluation error) for simulated evidence. An undefined rule is false: 403, policy denied.
#[test]
fn a_rego_policy_without_allow_sim_denies_simulated_evidence_with_403() {
    let policy = Policy::rego(
        "no-sim.rego",
        "package kbs\nimport rego.v1\nallow if input.tee == \"sim\"\n",
    )
    .unwrap();
    let err = policy
        .evaluate(&serde_json::json!({"tee": "sim", "debug": false}))
        .unwrap_err();
    assert!(matches!(err, TeeError::PolicyDenied { .. }), "{err:?}");
    assert_eq!(veil_server::error::status_of(&err).as_u16(), 403);
    assert!(err.to_string().contains("allow_sim"), "{err}");
}

/// Issue 12, item 14: when the replay cache (used nonces kept until they expire) is full,
/// the service says so with 503 and `Retry-After`, rather than 401 or forgetting a nonce.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_replay_cache_answers_503_with_retry_after() {
    let platform_seed = [9u8; 32];
    let platform = SimulatedPlatform::from_seed(&platform_seed);
    let svc = AttestationService::new(
        Verifiers {
            sim: vec![SimVerifier::new(&platform.public_key()).unwrap()],
            ..Verifiers::default()
        },
        Policy::toml("p.toml", "tee = [\"sim\"]").unwrap(),
        TokenIssuer::generate(TokenAlgorithm::ES256).unwrap(),
        AuditLog::in_memory(),
    )
    .with_lifetimes(30, 120)
    .with_clock(Arc::new(|| 1_800_000_000))
    .with_replay_capacity(4, 1);
    let url = spawn(veil_server::attest::router(Arc::new(svc))).await;
    let workload = SimulatedWorkload::new(SimulatedPlatform::from_seed(&platform_seed), GOOD, 3);
    workload.attest(&url).await.unwrap();
    // The same peer (127.0.0.1) has used its share of the cache for this nonce lifetime.
    let nonce = client::fetch_nonce(&url).await.unwrap();
    let req = workload.attest_request(&nonce.nonce).unwrap();
    let r = client::http_client()
        .unwrap()
        .post(format!("{url}/attest"))
        .json(&req)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 503);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&retry), "{retry}");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["kind"], "overloaded");
}

/// Issue 12, item 17: the services' logs were hash-chained but unsigned: a copy with its
/// tail cut, or rewritten and re-chained, verified. Entries and heads are now signed
/// (Ed25519), and a copy is checked against a head obtained from the running service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_or_rechained_log_does_not_match_the_services_signed_head() {
    use veil_attest::audit::{verify_against_head, SignedHead};
    let dir = std::env::temp_dir().join(format!("veil-signed-head-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("attest.jsonl");
    let writer = ed25519_dalek::SigningKey::from_bytes(&[5u8; 32]);
    let platform_seed = [9u8; 32];
    let platform = SimulatedPlatform::from_seed(&platform_seed);
    let svc = AttestationService::new(
        Verifiers {
            sim: vec![SimVerifier::new(&platform.public_key()).unwrap()],
            ..Verifiers::default()
        },
        Policy::toml(
            "p.toml",
            &format!(
                "tee = [\"sim\"]\n[measurements]\nmeasurement = [\"{}\"]\n",
                hex::encode(GOOD)
            ),
        )
        .unwrap(),
        TokenIssuer::generate(TokenAlgorithm::ES256).unwrap(),
        AuditLog::open(&path).unwrap().with_signer(writer.clone()),
    )
    .with_clock(Arc::new(|| 1_800_000_000));
    let url = spawn(veil_server::attest::router(Arc::new(svc))).await;
    let good = SimulatedWorkload::new(SimulatedPlatform::from_seed(&platform_seed), GOOD, 3);
    let bad = SimulatedWorkload::new(SimulatedPlatform::from_seed(&platform_seed), BAD, 3);
    good.attest(&url).await.unwrap();
    bad.attest(&url).await.unwrap_err();
    good.attest(&url).await.unwrap();
    let head: SignedHead = client::http_client()
        .unwrap()
        .get(format!("{url}/audit/head"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(head.entries, 3);
    let key = writer.verifying_key();
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        verify_against_head(&text, &head, Some(&key)).unwrap().len(),
        3
    );
    let lines: Vec<&str> = text.lines().collect();

    // The tail cut: the chain is intact, the head says otherwise.
    let cut = lines[..2].join("\n") + "\n";
    assert!(veil_attest::audit::verify_entries(&cut, Some(&key)).is_ok());
    let err = verify_against_head(&cut, &head, Some(&key)).unwrap_err();
    assert!(err.to_string().contains("cut"), "{err}");

    // The refusal rewritten as an issuance and the chain recomputed (by someone without the
    // key, who drops the signatures, or signs with a key of their own).
    let forger = ed25519_dalek::SigningKey::from_bytes(&[6u8; 32]);
    for signer in [None, Some(&forger)] {
        let mut prev = "0".repeat(64);
        let mut rewritten = String::new();
        for (i, line) in lines.iter().enumerate() {
            let mut e: veil_attest::audit::AuditEntry = serde_json::from_str(line).unwrap();
            if i == 1 {
                e.event = "token_issued".into();
            }
            e.prev = prev.clone();
            e.sig = None;
            if let Some(k) = signer {
                use ed25519_dalek::Signer as _;
                let unsigned = serde_json::to_vec(&e).unwrap();
                e.sig = Some(hex::encode(k.sign(&unsigned).to_bytes()));
            }
            let l = serde_json::to_string(&e).unwrap();
            prev = {
                use sha2::Digest as _;
                hex::encode(sha2::Sha256::digest(l.as_bytes()))
            };
            rewritten.push_str(&l);
            rewritten.push('\n');
        }
        // The bare chain verifies: that was the hole.
        assert!(veil_attest::audit::verify_entries(&rewritten, None).is_ok());
        assert!(verify_against_head(&rewritten, &head, Some(&key)).is_err());
    }
    // A head forged by another key does not pass for the writer's.
    let mut forged = head.clone();
    forged.public_key = hex::encode(forger.verifying_key().as_bytes());
    assert!(verify_against_head(&text, &forged, Some(&key)).is_err());
    // The log went on after the head: still consistent with it.
    good.attest(&url).await.unwrap();
    let longer = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        verify_against_head(&longer, &head, Some(&key))
            .unwrap()
            .len(),
        4
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
