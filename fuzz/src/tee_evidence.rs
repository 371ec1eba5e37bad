//! Feeds hostile evidence and collateral to the verifiers: raw bytes, and edits of a real
//! recorded SGX quote and TDX quote, SEV-SNP reports (VCEK- and VLEK-signed), AMD's VCEK/VLEK
//! certificates and CRLs, and simulated evidence. Every input must yield claims or an error,
//! never a panic.

use std::sync::OnceLock;

use veil_attest::evidence::dcap::DcapVerifier;
use veil_attest::evidence::sim::{SimVerifier, SimulatedPlatform};
use veil_attest::evidence::snp::SnpVerifier;
use veil_attest::evidence::{detect, Verifier};

use crate::edits;

struct Fixture {
    sgx: DcapVerifier,
    tdx: DcapVerifier,
    sim: SimVerifier,
    snp: SnpVerifier,
    snp_crl: SnpVerifier,
    vlek: SnpVerifier,
    vcek_der: Vec<u8>,
    samples: Vec<Vec<u8>>,
}

const JULY_2025: u64 = 1_751_328_000;

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../crates/veil-attest/tests/vectors"
        );
        let read = |n: &str| std::fs::read(format!("{dir}/{n}")).expect("vector");
        let text = |n: &str| String::from_utf8(read(n)).expect("utf-8");
        let platform = SimulatedPlatform::from_seed(&[3u8; 32]);
        Fixture {
            sgx: DcapVerifier::from_collateral_json(&text("dcap/sgx_quote_collateral.json"))
                .expect("collateral"),
            tdx: DcapVerifier::from_collateral_json(&text("dcap/tdx_quote_collateral.json"))
                .expect("collateral"),
            sim: SimVerifier::new(&platform.public_key()).expect("key"),
            snp: SnpVerifier::from_vcek_der(&read("trustee/snp-test-vcek.der")).expect("vcek"),
            snp_crl: SnpVerifier::from_vcek_der(&read("trustee/snp-test-vcek.der"))
                .and_then(|v| v.with_crl(&read("amd/milan-vcek.crl")))
                .expect("vcek and crl"),
            vlek: SnpVerifier::from_vlek_der(&read("trustee/snp-test-vlek.der")).expect("vlek"),
            vcek_der: read("trustee/snp-test-vcek.der"),
            samples: vec![
                read("dcap/sgx_quote"),
                read("dcap/tdx_quote"),
                read("trustee/snp-test-report.bin"),
                read("trustee/snp-test-vlek-report.bin"),
                read("trustee/snp-test-vcek.der"),
                read("amd/milan-vcek.crl"),
                read("amd/genoa-vcek.crl"),
                platform.issue(&[1; 48], &[2; 64], false, 1),
            ],
        }
    })
}

fn check(f: &Fixture, data: &[u8]) {
    let _ = detect(data);
    let _ = f.sgx.verify(data, JULY_2025);
    let _ = f.tdx.verify(data, JULY_2025);
    let _ = f.sim.verify(data, JULY_2025);
    let _ = f.snp.verify(data, JULY_2025);
    let _ = f.snp_crl.verify(data, JULY_2025);
    let _ = f.vlek.verify(data, JULY_2025);
    // Certificates and CRLs are untrusted input too (`--vcek`, `--vlek`, `--snp-crl`).
    let _ = SnpVerifier::from_vcek_der(data);
    let _ = SnpVerifier::from_vlek_der(data);
    if let Ok(v) = SnpVerifier::from_vcek_der(&f.vcek_der) {
        let _ = v.with_crl(data);
    }
    let _ = veil_attest::evidence::dcap::inspect_unverified(data);
}

/// One fuzz input: must never panic.
pub fn run(data: &[u8]) {
    let f = fixture();
    check(f, data);
    if let Some(obj) = edits::edited(&f.samples, data) {
        check(f, &obj);
    }
}
