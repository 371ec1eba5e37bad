//! Criterion benchmarks of attestation: verification latency per evidence kind (real SGX, TDX
//! and SEV-SNP evidence from `../shared/vectors` when present, with its collateral already
//! parsed — "cached collateral"), token signing and verification, policy evaluation, HPKE
//! release. Throughput over HTTP is measured by `veil attest bench`.

#![allow(missing_docs, reason = "criterion macros generate undocumented items")]
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "benchmark setup")]

use std::collections::BTreeMap;
use std::path::PathBuf;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use veil_attest::binding::expected_report_data;
use veil_attest::evidence::dcap::DcapVerifier;
use veil_attest::evidence::sim::{SimVerifier, SimulatedPlatform};
use veil_attest::evidence::snp::SnpVerifier;
use veil_attest::evidence::Verifier;
use veil_attest::policy::Policy;
use veil_attest::token::{
    AttestationClaims, PolicyRef, TokenAlgorithm, TokenIssuer, TokenVerifier,
};
use veil_kbs::{seal_to, WorkloadKeyPair};

const JULY_2025: u64 = 1_751_328_000;

fn vectors() -> Option<PathBuf> {
    let dir = std::env::var_os("VEIL_VECTORS").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vectors"),
        PathBuf::from,
    );
    if dir.join("dcap").is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "recorded evidence not found at {}: hardware evidence benchmarks skipped",
            dir.display()
        );
        None
    }
}

fn verification(c: &mut Criterion) {
    let mut g = c.benchmark_group("verify");
    if let Some(dir) = vectors() {
        let read = |n: &str| std::fs::read(dir.join(n)).unwrap();
        for (name, quote, collateral) in [
            (
                "sgx_dcap_quote_v3",
                "dcap/sgx_quote",
                "dcap/sgx_quote_collateral.json",
            ),
            (
                "tdx_dcap_quote_v4",
                "dcap/tdx_quote",
                "dcap/tdx_quote_collateral.json",
            ),
        ] {
            let q = read(quote);
            let v =
                DcapVerifier::from_collateral_json(&String::from_utf8(read(collateral)).unwrap())
                    .unwrap();
            v.verify(&q, JULY_2025).unwrap();
            g.bench_function(name, |b| {
                b.iter(|| v.verify(black_box(&q), JULY_2025).unwrap())
            });
        }
        let report = read("trustee/snp-test-report.bin");
        let snp = SnpVerifier::from_vcek_der(&read("trustee/snp-test-vcek.der")).unwrap();
        snp.verify(&report, JULY_2025).unwrap();
        g.bench_function("snp_report", |b| {
            b.iter(|| snp.verify(black_box(&report), JULY_2025).unwrap())
        });
    }
    let platform = SimulatedPlatform::from_seed(&[1; 32]);
    let evidence = platform.issue(&[2; 48], &expected_report_data(b"n", b"k", b""), false, 1);
    let sim = SimVerifier::new(&platform.public_key()).unwrap();
    g.bench_function("simulated", |b| {
        b.iter(|| sim.verify(black_box(&evidence), 0).unwrap())
    });
    g.finish();
}

fn claims() -> AttestationClaims {
    AttestationClaims {
        iss: veil_attest::token::ISSUER.into(),
        iat: 1000,
        nbf: 1000,
        exp: 2000,
        jti: "0123456789abcdef0123456789abcdef".into(),
        evidence: veil_attest::VerifiedClaims {
            tee: veil_attest::TeeKind::Sgx,
            measurements: BTreeMap::from([
                ("mr_enclave".into(), "ab".repeat(32)),
                ("mr_signer".into(), "cd".repeat(32)),
            ]),
            signer: Some("cd".repeat(32)),
            product_id: Some(1),
            security_version: Some(3),
            debug: false,
            tcb_status: "UpToDate".into(),
            advisory_ids: vec![],
            report_data: "00".repeat(64),
            vmpl: None,
            tcb: Default::default(),
            signing_key: None,
        },
        runtime_public_key: "A".repeat(43),
        runtime_data: String::new(),
        policy: PolicyRef {
            name: "p.toml".into(),
            sha256: "00".repeat(32),
        },
    }
}

fn tokens_policies_release(c: &mut Criterion) {
    let mut g = c.benchmark_group("token");
    let claims = claims();
    for alg in [TokenAlgorithm::ES256, TokenAlgorithm::ES384] {
        let issuer = TokenIssuer::generate(alg).unwrap();
        let verifier = TokenVerifier::new(&issuer.jwks()).unwrap();
        let token = issuer.sign(&claims).unwrap();
        g.bench_function(format!("sign_{alg:?}"), |b| {
            b.iter(|| issuer.sign(black_box(&claims)).unwrap())
        });
        g.bench_function(format!("verify_{alg:?}"), |b| {
            b.iter(|| verifier.verify(black_box(&token), 1500).unwrap())
        });
    }
    g.finish();

    let mut g = c.benchmark_group("policy");
    let input = serde_json::to_value(&claims.evidence).unwrap();
    let toml = Policy::toml(
        "p.toml",
        &format!(
            "tee = [\"sgx\"]\nmin_security_version = 2\n[measurements]\nmr_enclave = [\"{}\"]\n",
            "ab".repeat(32)
        ),
    )
    .unwrap();
    let rego = Policy::rego(
        "p.rego",
        &format!(
            "package veil\nimport rego.v1\ndefault allow := false\nallow if {{\n input.tee == \"sgx\"\n input.security_version >= 2\n input.measurements.mr_enclave == \"{}\"\n not input.debug\n}}\n",
            "ab".repeat(32)
        ),
    )
    .unwrap();
    toml.evaluate(&input).unwrap();
    rego.evaluate(&input).unwrap();
    g.bench_function("toml_allow_list", |b| {
        b.iter(|| toml.evaluate(black_box(&input)).unwrap())
    });
    g.bench_function("rego", |b| {
        b.iter(|| rego.evaluate(black_box(&input)).unwrap())
    });
    g.finish();

    let mut g = c.benchmark_group("release");
    let workload = WorkloadKeyPair::generate();
    let pk = workload.public_bytes();
    let sealed = seal_to(&pk, "k", &[7; 32]).unwrap();
    g.bench_function("hpke_seal_32B", |b| {
        b.iter(|| seal_to(black_box(&pk), "k", &[7; 32]).unwrap())
    });
    g.bench_function("hpke_open_32B", |b| {
        b.iter(|| workload.open(black_box(&sealed)).unwrap())
    });
    g.finish();
}

criterion_group!(benches, verification, tokens_policies_release);
criterion_main!(benches);
