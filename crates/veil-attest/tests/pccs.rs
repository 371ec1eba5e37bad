//! Collateral fetched from a PCCS (a local stand-in serving Intel's signed collateral for the
//! recorded SGX quote over the PCCS v4 API) verifies the quote exactly like the stored file;
//! a PCCS that tampers with what it serves is caught by the signatures.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

use crate::common;

use axum::http::HeaderMap;
use axum::routing::get;
use axum::Router;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use veil_attest::evidence::dcap::DcapVerifier;
use veil_attest::evidence::Verifier;
use veil_attest::pccs::PccsClient;
use veil_attest::TeeError;

const JULY_2025: u64 = 1_751_328_000;

fn chain_header(name: &'static str, pem: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        name,
        utf8_percent_encode(pem, NON_ALPHANUMERIC)
            .to_string()
            .parse()
            .unwrap(),
    );
    h
}

/// A PCCS serving the collateral in `c`; `tamper` flips a digit of the TCB info it serves.
async fn mock_pccs(c: serde_json::Value, tamper: bool) -> String {
    let s = |k: &str| c[k].as_str().unwrap().to_string();
    let (crl_chain, crl) = (
        s("pck_crl_issuer_chain"),
        hex::decode(s("pck_crl")).unwrap(),
    );
    let mut tcb_info = s("tcb_info");
    if tamper {
        let before = tcb_info.clone();
        tcb_info = tcb_info.replacen(
            "\"tcbEvaluationDataNumber\":1",
            "\"tcbEvaluationDataNumber\":2",
            1,
        );
        tcb_info = tcb_info.replacen("\"version\":3", "\"version\":4", 1);
        assert_ne!(before, tcb_info, "the tampering must change the TCB info");
    }
    let tcb = format!(
        "{{\"tcbInfo\":{tcb_info},\"signature\":\"{}\"}}",
        s("tcb_info_signature")
    );
    let tcb_chain = s("tcb_info_issuer_chain");
    let qe = format!(
        "{{\"enclaveIdentity\":{},\"signature\":\"{}\"}}",
        s("qe_identity"),
        s("qe_identity_signature")
    );
    let qe_chain = s("qe_identity_issuer_chain");
    let root = s("root_ca_crl");
    let app = Router::new()
        .route(
            "/sgx/certification/v4/pckcrl",
            get(move || async move { (chain_header("SGX-PCK-CRL-Issuer-Chain", &crl_chain), crl) }),
        )
        .route(
            "/sgx/certification/v4/tcb",
            get(move || async move { (chain_header("TCB-Info-Issuer-Chain", &tcb_chain), tcb) }),
        )
        .route(
            "/sgx/certification/v4/qe/identity",
            get(move || async move {
                (
                    chain_header("SGX-Enclave-Identity-Issuer-Chain", &qe_chain),
                    qe,
                )
            }),
        )
        .route(
            "/sgx/certification/v4/rootcacrl",
            get(move || async move { root }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collateral_from_a_pccs_verifies_like_the_stored_file() {
    let (Some(quote), Some(json)) = (
        common::vector("dcap/sgx_quote"),
        common::vector("dcap/sgx_quote_collateral.json"),
    ) else {
        return;
    };
    let stored: serde_json::Value = serde_json::from_slice(&json).unwrap();
    let url = mock_pccs(stored.clone(), false).await;
    let client = PccsClient::new(&format!("{url}/sgx/certification/v4/"), None).unwrap();
    let fetched = DcapVerifier::from_collateral(client.fetch(&quote).await.unwrap());
    let from_file =
        DcapVerifier::from_collateral_json(std::str::from_utf8(&json).unwrap()).unwrap();
    assert_eq!(
        fetched.verify(&quote, JULY_2025).unwrap(),
        from_file.verify(&quote, JULY_2025).unwrap()
    );
    // Saved fetched collateral reads back and verifies offline.
    let saved = DcapVerifier::from_collateral_json(&fetched.collateral_json().unwrap()).unwrap();
    saved.verify(&quote, JULY_2025).unwrap();

    // A PCCS that edits the TCB info it serves is caught by Intel's signature.
    let evil = mock_pccs(stored, true).await;
    let tampered = DcapVerifier::from_collateral(
        PccsClient::new(&evil, None)
            .unwrap()
            .fetch(&quote)
            .await
            .unwrap(),
    );
    assert!(matches!(
        tampered.verify(&quote, JULY_2025),
        Err(TeeError::Rejected(_))
    ));

    // The attestation service fetches collateral through the PCCS when it has none stored:
    // the recorded quote then verifies, and is refused only because it does not bind our nonce.
    {
        use veil_attest::audit::AuditLog;
        use veil_attest::pccs::CollateralCache;
        use veil_attest::policy::Policy;
        use veil_attest::service::{AttestRequest, AttestationService, Verifiers};
        use veil_attest::token::{TokenAlgorithm, TokenIssuer};
        use veil_attest::util::encode_b64;
        let svc = std::sync::Arc::new(AttestationService::new(
            Verifiers {
                pccs: Some(CollateralCache::new(client.clone(), 3600)),
                verify_at: Some(JULY_2025),
                ..Verifiers::default()
            },
            Policy::toml("p.toml", "tee = [\"sgx\"]").unwrap(),
            TokenIssuer::generate(TokenAlgorithm::ES256).unwrap(),
            AuditLog::in_memory(),
        ));
        for _ in 0..2 {
            let req = AttestRequest {
                evidence: encode_b64(&quote),
                nonce: svc.nonce().unwrap().nonce,
                runtime_public_key: encode_b64(&[1; 32]),
                runtime_data: String::new(),
            };
            // As the HTTP route does: verification runs on the blocking pool.
            let s = svc.clone();
            let out = tokio::task::spawn_blocking(move || s.attest(&req))
                .await
                .unwrap();
            assert_eq!(out.unwrap_err(), TeeError::BindingMismatch);
        }
    }

    // An unreachable PCCS, a bad URL and a non-quote are errors, not panics.
    let dead = PccsClient::new("http://127.0.0.1:9", None).unwrap();
    assert!(matches!(
        dead.fetch(&quote).await,
        Err(TeeError::Network(_))
    ));
    assert!(PccsClient::new("ftp://x", None).is_err());
    assert!(client.fetch(b"not a quote").await.is_err());
}
