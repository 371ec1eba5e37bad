//! Feeds hostile input to everything the attestation service and the key broker parse from
//! the network or from files: `POST /attest` bodies (decoded and run through the whole
//! decision: nonce, evidence, binding, policy), attestation tokens, JWKS documents, released
//! secrets, TOML and Rego policies, and audit logs.

use std::sync::OnceLock;

use veil_attest::audit::AuditLog;
use veil_attest::evidence::sim::{SimVerifier, SimulatedPlatform};
use veil_attest::policy::Policy;
use veil_attest::service::{AttestRequest, AttestationService, Verifiers};
use veil_attest::token::{TokenAlgorithm, TokenIssuer, TokenVerifier};
use veil_kbs::{ReleasedSecret, WorkloadKeyPair};

struct Fixture {
    service: AttestationService,
    verifier: TokenVerifier,
    key: WorkloadKeyPair,
    rego: Policy,
    toml: Policy,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let platform = SimulatedPlatform::from_seed(&[5; 32]);
        let issuer = TokenIssuer::generate(TokenAlgorithm::ES256).expect("key");
        let verifier = TokenVerifier::new(&issuer.jwks()).expect("jwks");
        let service = AttestationService::new(
            Verifiers {
                sim: vec![SimVerifier::new(&platform.public_key()).expect("key")],
                ..Verifiers::default()
            },
            Policy::toml("p.toml", "tee = [\"sim\"]").expect("policy"),
            issuer,
            AuditLog::in_memory(),
        );
        Fixture {
            service,
            verifier,
            key: WorkloadKeyPair::generate(),
            rego: Policy::rego(
                "p.rego",
                "package p\nimport rego.v1\nallow if input.tee == \"sgx\"\nreasons contains input.tcb_status if true\n",
            )
            .expect("rego"),
            toml: Policy::toml("t.toml", "tee = [\"sgx\"]\n[measurements]\nmr_enclave = [\"aa\"]").expect("toml"),
        }
    })
}

/// One fuzz input: must never panic.
pub fn run(data: &[u8]) {
    let f = fixture();
    let text = String::from_utf8_lossy(data);
    if let Ok(req) = serde_json::from_slice::<AttestRequest>(data) {
        let _ = f.service.attest(&req);
    }
    // A request with a valid nonce and the fuzz input as evidence.
    if let Ok(nonce) = f.service.nonce() {
        let req = AttestRequest {
            evidence: veil_attest::util::encode_b64(data),
            nonce: nonce.nonce,
            runtime_public_key: "AAAA".into(),
            runtime_data: String::new(),
        };
        let _ = f.service.attest(&req);
    }
    let _ = f.verifier.verify(&text, 1_800_000_000);
    let _ = TokenVerifier::from_jwks_json(&text);
    if let Ok(released) = serde_json::from_slice::<ReleasedSecret>(data) {
        let _ = f.key.open(&released);
    }
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = f.rego.evaluate(&value);
        let _ = f.toml.evaluate(&value);
    }
    let _ = Policy::toml("fuzz.toml", &text);
    if data.len() < 2048 {
        let _ = Policy::rego("fuzz.rego", &text);
    }
}
