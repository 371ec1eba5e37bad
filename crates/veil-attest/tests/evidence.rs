//! Verification of real recorded SGX/TDX evidence and of simulated evidence, including
//! tampered, truncated and mismatched inputs, which must be rejected for a specific reason.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

use veil_attest::binding::{check_binding, expected_report_data};
use veil_attest::evidence::dcap::DcapVerifier;
use veil_attest::evidence::sim::{SimVerifier, SimulatedPlatform};
use veil_attest::evidence::{detect, EvidenceKind, Verifier};
use veil_attest::{TeeError, TeeKind};

const JULY_2025: u64 = 1_751_328_000; // 2025-07-01T00:00:00Z
const MARCH_2026: u64 = 1_772_323_200; // 2026-03-01T00:00:00Z
const JAN_2027: u64 = 1_798_761_600; // 2027-01-01T00:00:00Z

use crate::common;
use common::{vector, vectors_dir};

fn verifier(name: &str) -> DcapVerifier {
    let json = String::from_utf8(vector(name).unwrap()).unwrap();
    DcapVerifier::from_collateral_json(&json).unwrap()
}

/// Binds the vector or returns from the test (skipped) when the vectors are absent.
macro_rules! vector_or_skip {
    ($name:expr) => {
        match vector($name) {
            Some(v) => v,
            None => return,
        }
    };
}

#[test]
fn real_sgx_quote_verifies_with_its_tcb_status() {
    let quote = vector_or_skip!("dcap/sgx_quote");
    assert_eq!(detect(&quote).unwrap(), EvidenceKind::SgxQuote);
    let claims = verifier("dcap/sgx_quote_collateral.json")
        .verify(&quote, JULY_2025)
        .unwrap();
    assert_eq!(claims.tee, TeeKind::Sgx);
    assert_eq!(claims.tcb_status, "ConfigurationAndSWHardeningNeeded");
    assert_eq!(claims.measurements["mr_enclave"].len(), 64);
    assert_eq!(claims.report_data.len(), 128);
    assert!(claims.product_id.is_some() && claims.security_version.is_some());
    // The same quote after the CRL expired is refused.
    let err = verifier("dcap/sgx_quote_collateral.json")
        .verify(&quote, JAN_2027)
        .unwrap_err();
    assert!(matches!(err, TeeError::Rejected(_)), "{err}");
}

#[test]
fn real_tdx_quotes_verify_or_are_refused_as_recorded() {
    let quote = vector_or_skip!("dcap/tdx_quote");
    assert_eq!(detect(&quote).unwrap(), EvidenceKind::TdxQuote);
    let claims = verifier("dcap/tdx_quote_collateral.json")
        .verify(&quote, JULY_2025)
        .unwrap();
    assert_eq!(claims.tee, TeeKind::Tdx);
    assert_eq!(claims.tcb_status, "UpToDate");
    for m in ["mr_td", "rtmr0", "rtmr1", "rtmr2", "rtmr3"] {
        assert_eq!(claims.measurements[m].len(), 96, "{m}");
    }
    let outdated = vector_or_skip!("dcap/tdx_quote_outdated");
    let err = verifier("dcap/tdx_quote_outdated_collateral.json")
        .verify(&outdated, MARCH_2026)
        .unwrap_err();
    assert!(matches!(err, TeeError::Rejected(_)), "{err}");
}

#[test]
fn tampered_truncated_and_mismatched_evidence_is_rejected() {
    let quote = vector_or_skip!("dcap/sgx_quote");
    let v = verifier("dcap/sgx_quote_collateral.json");
    // A flipped byte in the signed report body (the report data region) breaks the signature.
    let mut flipped = quote.clone();
    flipped[400] ^= 0x01;
    assert!(matches!(
        v.verify(&flipped, JULY_2025),
        Err(TeeError::Rejected(_))
    ));
    // Truncations at many lengths: always an error, never a panic.
    for len in [0, 10, 47, 48, 100, 432, 436, 1000, quote.len() - 1] {
        assert!(v.verify(&quote[..len], JULY_2025).is_err(), "length {len}");
    }
    // The SGX quote with the TDX collateral.
    let tdx_collateral = verifier("dcap/tdx_quote_collateral.json");
    assert!(tdx_collateral.verify(&quote, JULY_2025).is_err());
    // Garbage collateral.
    assert!(matches!(
        DcapVerifier::from_collateral_json("{}"),
        Err(TeeError::InvalidCollateral(_))
    ));
    assert!(matches!(
        detect(b"not a quote at all, just some text padding it out ......"),
        Err(TeeError::UnknownEvidence(_))
    ));
}

#[test]
fn simulated_evidence_verifies_binds_and_says_sim() {
    let platform = SimulatedPlatform::from_seed(&[7u8; 32]);
    let nonce = b"nonce-123";
    let pk = b"workload public key";
    let rd = expected_report_data(nonce, pk, b"");
    let evidence = platform.issue(&[0xab; 48], &rd, false, 3);
    assert_eq!(detect(&evidence).unwrap(), EvidenceKind::Simulated);
    let v = SimVerifier::new(&platform.public_key()).unwrap();
    let claims = v.verify(&evidence, 0).unwrap();
    assert_eq!(claims.tee, TeeKind::Sim);
    assert_eq!(claims.tcb_status, "Simulated");
    assert_eq!(claims.security_version, Some(3));
    assert!(!claims.debug);
    check_binding(&claims, nonce, pk, b"").unwrap();
    assert_eq!(
        check_binding(&claims, b"other nonce", pk, b""),
        Err(TeeError::BindingMismatch)
    );
    assert_eq!(
        check_binding(&claims, nonce, b"another key", b""),
        Err(TeeError::BindingMismatch)
    );
    // Length-prefixing: moving bytes between fields changes the binding.
    assert_ne!(
        expected_report_data(b"ab", b"c", b""),
        expected_report_data(b"a", b"bc", b"")
    );
    // Tampering, truncation and a different platform key are rejected.
    let mut t = evidence.clone();
    t[20] ^= 1;
    assert!(matches!(v.verify(&t, 0), Err(TeeError::Rejected(_))));
    assert!(v.verify(&evidence[..evidence.len() - 1], 0).is_err());
    let other = SimVerifier::new(&SimulatedPlatform::from_seed(&[8u8; 32]).public_key()).unwrap();
    assert!(matches!(
        other.verify(&evidence, 0),
        Err(TeeError::Rejected(_))
    ));
    // The DCAP verifier does not accept simulated evidence.
    if vectors_dir().is_some() {
        assert!(verifier("dcap/sgx_quote_collateral.json")
            .verify(&evidence, JULY_2025)
            .is_err());
    }
}

#[test]
fn real_snp_report_verifies_with_its_vcek_and_bad_chains_are_refused() {
    use veil_attest::evidence::snp::SnpVerifier;
    let report = vector_or_skip!("trustee/snp-test-report.bin");
    assert_eq!(detect(&report).unwrap(), EvidenceKind::SnpReport);
    let v = SnpVerifier::from_vcek_der(&vector_or_skip!("trustee/snp-test-vcek.der")).unwrap();
    let claims = v.verify(&report, JULY_2025).unwrap();
    assert_eq!(claims.tee, TeeKind::Snp);
    assert_eq!(claims.measurements["measurement"].len(), 96);
    assert_eq!(claims.report_data.len(), 128);
    // No minimum TCB given: the status is unknown (the components are in `tcb`).
    assert_eq!(claims.tcb_status, "Unknown");
    assert_eq!(claims.tcb.len(), 4, "{:?}", claims.tcb);
    // A flipped measurement byte breaks the signature.
    let mut tampered = report.clone();
    tampered[0x90] ^= 1;
    assert!(matches!(
        v.verify(&tampered, JULY_2025),
        Err(TeeError::Rejected(_))
    ));
    // Truncated reports and random bytes are errors, not panics.
    for len in [0, 100, 0x2a0, report.len() - 1] {
        assert!(v.verify(&report[..len], JULY_2025).is_err(), "length {len}");
    }
    // A VCEK that AMD did not sign is refused, whichever report it is used with.
    match SnpVerifier::from_vcek_der(&vector_or_skip!("trustee/snp-test-vcek-invalid-legacy.der")) {
        Ok(bad) => assert!(matches!(
            bad.verify(&report, JULY_2025),
            Err(TeeError::Rejected(_))
        )),
        Err(e) => assert!(matches!(e, TeeError::InvalidCollateral(_))),
    }
    // A VLEK-signed report cannot be checked against the VCEK (see the VLEK tests below).
    let vlek_report = vector_or_skip!("trustee/snp-test-vlek-report.bin");
    assert!(v.verify(&vlek_report, JULY_2025).is_err());
}

#[test]
fn trustee_tdx_quote_fields_match_trustees_parsed_claims() {
    use veil_attest::evidence::dcap::inspect_unverified;
    let quote = vector_or_skip!("trustee/tdx_quote_4.dat");
    let expected: serde_json::Value =
        serde_json::from_slice(&vector_or_skip!("trustee/parse_tdx_claims_expected.json")).unwrap();
    assert_eq!(detect(&quote).unwrap(), EvidenceKind::TdxQuote);
    let fields = inspect_unverified(&quote).unwrap();
    let mut compared = 0;
    for part in ["header", "body"] {
        for (name, value) in expected["quote"][part].as_object().unwrap() {
            assert_eq!(
                fields.get(name).map(String::as_str),
                value.as_str(),
                "quote.{part}.{name}"
            );
            compared += 1;
        }
    }
    assert_eq!(compared, 21, "every header and body field compared");
    assert_eq!(
        fields["report_data"],
        expected["report_data"].as_str().unwrap()
    );
    // Trustee reports this TD as a debug TD: TDATTRIBUTES.DEBUG is bit 0.
    let td_attributes = hex::decode(&fields["td_attributes"]).unwrap();
    assert_eq!(
        td_attributes[0] & 1 == 1,
        expected["td_attributes"]["debug"].as_bool().unwrap()
    );

    // The dcap-qvl TDX quote: the fields the verifier vouches for agree with the raw parse.
    let tdx = vector_or_skip!("dcap/tdx_quote");
    let claims = verifier("dcap/tdx_quote_collateral.json")
        .verify(&tdx, JULY_2025)
        .unwrap();
    let raw = inspect_unverified(&tdx).unwrap();
    assert_eq!(claims.measurements["mr_td"], raw["mr_td"]);
    assert_eq!(claims.measurements["rtmr0"], raw["rtmr_0"]);
    assert_eq!(claims.report_data, raw["report_data"]);

    // The other Trustee quotes parse (their collateral is incomplete, so they are not verified).
    for name in ["trustee/tdx_quote_5.dat", "trustee/occlum_quote.dat"] {
        let q = vector_or_skip!(name);
        let f = inspect_unverified(&q).unwrap();
        assert_eq!(f["report_data"].len(), 128, "{name}");
    }
    let sgx = inspect_unverified(&vector_or_skip!("trustee/occlum_quote.dat")).unwrap();
    assert_eq!(sgx["mr_enclave"].len(), 64);
    // Truncations of a parseable quote: errors, never panics.
    for len in [0, 47, 48, 300, 600, quote.len() / 2] {
        assert!(inspect_unverified(&quote[..len]).is_err(), "length {len}");
    }
}

/// Issue 12, item 18: bytes after the end a DCAP quote declares were ignored, so the same
/// verified quote could carry anything behind it. A quote is now read to the length its own
/// size fields declare; what follows may only be zero padding (real TDX quote buffers are
/// zero-padded: the recorded `tdx_quote` carries 70 zero bytes), anything else is refused.
#[test]
fn dcap_quotes_with_bytes_after_their_end_are_refused() {
    for (quote, collateral) in [
        ("dcap/sgx_quote", "dcap/sgx_quote_collateral.json"),
        ("dcap/tdx_quote", "dcap/tdx_quote_collateral.json"),
    ] {
        let quote = vector_or_skip!(quote);
        let v = verifier(collateral);
        let claims = v.verify(&quote, JULY_2025).unwrap();
        for tail in [&b"\x01"[..], b"extra bytes after the quote", b"\0\0\0\x01"] {
            let mut longer = quote.clone();
            longer.extend_from_slice(tail);
            let err = v.verify(&longer, JULY_2025).unwrap_err();
            assert!(
                matches!(err, TeeError::Rejected(_)) && err.to_string().contains("after the end"),
                "{tail:?}: {err}"
            );
        }
        // Zero padding is not a second meaning: the claims are those of the quote.
        let mut padded = quote.clone();
        padded.extend_from_slice(&[0u8; 64]);
        assert_eq!(v.verify(&padded, JULY_2025).unwrap(), claims);
    }
    // A quote whose authentication-data size claims more than its parts hold: the extra
    // bytes inside the signed-over envelope are refused too.
    let quote = vector_or_skip!("dcap/sgx_quote");
    let v = verifier("dcap/sgx_quote_collateral.json");
    let mut inflated = quote.clone();
    let size_at = 48 + 384;
    let size = u32::from_le_bytes(inflated[size_at..size_at + 4].try_into().unwrap());
    inflated[size_at..size_at + 4].copy_from_slice(&(size + 5).to_le_bytes());
    inflated.extend_from_slice(b"smugg");
    let err = v.verify(&inflated, JULY_2025).unwrap_err();
    assert!(matches!(err, TeeError::Rejected(_)), "{err}");
}

/// Issue 12, item 18: the 512-byte signature field of an SNP report holds r and s (72 bytes
/// each, of which a P-384 value uses 48) and 368 reserved bytes; none of it is signed, so
/// non-zero bytes there gave one verified report many encodings. They are now refused.
#[test]
fn snp_reports_with_bytes_in_the_signature_padding_are_refused() {
    use veil_attest::evidence::snp::SnpVerifier;
    let report = vector_or_skip!("trustee/snp-test-report.bin");
    let v = SnpVerifier::from_vcek_der(&vector_or_skip!("trustee/snp-test-vcek.der")).unwrap();
    v.verify(&report, JULY_2025).unwrap();
    const SIG: usize = 0x2a0;
    for offset in [
        SIG + 48,
        SIG + 71,
        SIG + 72 + 48,
        SIG + 143,
        SIG + 144,
        SIG + 300,
        report.len() - 1,
    ] {
        let mut m = report.clone();
        m[offset] ^= 0x5a;
        let err = v.verify(&m, JULY_2025).unwrap_err();
        assert!(
            matches!(err, TeeError::Rejected(_)),
            "offset {offset:#x}: {err}"
        );
    }
}

const JAN_1990: u64 = 631_152_000; // 1990-01-01T00:00:00Z
const JAN_2031: u64 = 1_924_992_000; // 2031-01-01T00:00:00Z

/// Issue 12, item 13: the SNP verifier ignored the verification time: a report whose VCEK is
/// valid from 2023-01-24 to 2030-01-24 verified "as of" 1990 and 2031. The VCEK, ASK and ARK
/// must each be valid at the given time.
#[test]
fn snp_verification_refuses_certificates_outside_their_validity() {
    use veil_attest::evidence::snp::SnpVerifier;
    let report = vector_or_skip!("trustee/snp-test-report.bin");
    let v = SnpVerifier::from_vcek_der(&vector_or_skip!("trustee/snp-test-vcek.der")).unwrap();
    v.verify(&report, JULY_2025).unwrap();
    for at in [JAN_1990, JAN_2031] {
        let err = v.verify(&report, at).unwrap_err();
        assert!(
            matches!(err, TeeError::Rejected(_)) && err.to_string().contains("not valid"),
            "{at}: {err}"
        );
    }
}

/// Issue 12, item 13: the report's reported TCB and chip id are checked against the VCEK's
/// TCB and hwID extensions, the VMPL is a claim, and the TCB status is something a policy can
/// use: `UpToDate` or `OutOfDate` against a minimum TCB the verifier is given, `Unknown`
/// without one (which the default policy refuses).
#[test]
fn snp_claims_carry_vmpl_tcb_and_a_tcb_status_a_policy_can_use() {
    use veil_attest::evidence::snp::{SnpTcb, SnpVerifier};
    let report = vector_or_skip!("trustee/snp-test-report.bin");
    let vcek = vector_or_skip!("trustee/snp-test-vcek.der");
    let v = SnpVerifier::from_vcek_der(&vcek).unwrap();
    let claims = v.verify(&report, JULY_2025).unwrap();
    assert!(claims.vmpl.is_some());
    let reported = v.reported_tcb(&report).unwrap();
    assert_eq!(claims.tcb["snp"], u64::from(reported.snp));
    assert_eq!(claims.tcb_status, "Unknown");
    let default_policy = veil_attest::policy::Policy::toml("p.toml", "tee = [\"snp\"]").unwrap();
    let err = default_policy
        .evaluate(&serde_json::to_value(&claims).unwrap())
        .unwrap_err();
    assert!(err.to_string().contains("TCB status"), "{err}");

    let current = v.clone().with_min_tcb(reported);
    let claims = current.verify(&report, JULY_2025).unwrap();
    assert_eq!(claims.tcb_status, "UpToDate");
    default_policy
        .evaluate(&serde_json::to_value(&claims).unwrap())
        .unwrap();
    let newer = SnpTcb {
        snp: reported.snp + 1,
        ..reported
    };
    let claims = v
        .clone()
        .with_min_tcb(newer)
        .verify(&report, JULY_2025)
        .unwrap();
    assert_eq!(claims.tcb_status, "OutOfDate");
}

// Issue 12, item 13: AMD's certificate revocation lists, read offline from a file.
// `amd/milan-vcek.crl` and `amd/genoa-vcek.crl` are AMD's own CRLs (KDS `/vcek/v1/{Milan,Genoa}/crl`,
// signed by the ARKs with RSA-PSS SHA-384); Milan's lists nothing and is current from
// 2025-05-06 to 2026-05-12, Genoa's revokes the old Genoa ASK (serial 02:00:01).

const MAY_2025: u64 = 1_746_057_600; // 2025-05-01T00:00:00Z, before the Milan CRL's thisUpdate
const JUNE_2026: u64 = 1_780_272_000; // 2026-06-01T00:00:00Z, after the Milan CRL's nextUpdate

fn snp_vcek_verifier() -> Option<veil_attest::evidence::snp::SnpVerifier> {
    let vcek = vector("trustee/snp-test-vcek.der")?;
    Some(veil_attest::evidence::snp::SnpVerifier::from_vcek_der(&vcek).unwrap())
}

#[test]
fn real_amd_crl_verifies_and_does_not_revoke_the_recorded_vcek() {
    let report = vector_or_skip!("trustee/snp-test-report.bin");
    let crl = vector_or_skip!("amd/milan-vcek.crl");
    let Some(v) = snp_vcek_verifier() else { return };
    let checked = v.clone().with_crl(&crl).unwrap();
    let claims = checked.verify(&report, JULY_2025).unwrap();
    assert_eq!(claims, v.verify(&report, JULY_2025).unwrap());
    assert_eq!(claims.signing_key.as_deref(), Some("vcek"));
    // Several CRLs (one per product line): the one from the chain's ARK is used.
    let genoa = vector_or_skip!("amd/genoa-vcek.crl");
    let both = v.clone().with_crl(&genoa).unwrap().with_crl(&crl).unwrap();
    both.verify(&report, JULY_2025).unwrap();
    // Only another product line's CRL: revocation of this chain is not known, refused.
    let err = v
        .with_crl(&genoa)
        .unwrap()
        .verify(&report, JULY_2025)
        .unwrap_err();
    assert!(
        matches!(err, TeeError::Rejected(_)) && err.to_string().contains("ARK-Milan"),
        "{err}"
    );
}

#[test]
fn amd_crl_with_a_flipped_byte_or_another_signer_is_refused() {
    let crl = vector_or_skip!("amd/milan-vcek.crl");
    let Some(v) = snp_vcek_verifier() else { return };
    // Bytes in the signed list (issuer, dates, extensions) and in the signature. The digits
    // of thisUpdate (at 205) and nextUpdate (at 220) still parse: only the signature fails.
    for offset in [100, 180, 200, 210, 225, 230, 300, crl.len() - 1] {
        let mut m = crl.clone();
        m[offset] ^= 0x01;
        match v.clone().with_crl(&m) {
            Err(e @ TeeError::InvalidCollateral(_)) => {
                if [210, 225, crl.len() - 1].contains(&offset) {
                    assert!(e.to_string().contains("not signed by"), "{offset}: {e}");
                }
            }
            Err(other) => panic!("offset {offset}: {other}"),
            Ok(_) => panic!("offset {offset}: a tampered CRL was accepted"),
        }
    }
    // Truncated or garbage: an error, never a panic.
    for len in [0, 1, 10, crl.len() / 2, crl.len() - 1] {
        assert!(v.clone().with_crl(&crl[..len]).is_err(), "length {len}");
    }
    // A CRL that names AMD's ARK-Milan as its issuer but is signed by another (test) key.
    let impostor = vector_or_skip!("amd-test/impostor-ark-milan.crl");
    let err = v.clone().with_crl(&impostor).unwrap_err();
    assert!(
        matches!(err, TeeError::InvalidCollateral(_)) && err.to_string().contains("not signed"),
        "{err}"
    );
    // A CRL from an issuer that is none of AMD's ARKs.
    let other = vector_or_skip!("amd-test/test-ark-revokes-0f0001.crl");
    let err = v.with_crl(&other).unwrap_err();
    assert!(
        matches!(err, TeeError::InvalidCollateral(_)) && err.to_string().contains("ARK-Test"),
        "{err}"
    );
}

/// A CRL is used only inside its window: read at a time past its nextUpdate it is refused
/// (fetch the current one), and so is a CRL issued after the verification time.
#[test]
fn amd_crl_outside_its_update_window_is_refused() {
    let report = vector_or_skip!("trustee/snp-test-report.bin");
    let crl = vector_or_skip!("amd/milan-vcek.crl");
    let Some(v) = snp_vcek_verifier() else { return };
    let checked = v.clone().with_crl(&crl).unwrap();
    for (at, why) in [(JUNE_2026, "nextUpdate"), (MAY_2025, "thisUpdate")] {
        // Without the CRL the report verifies at that time: the CRL is the reason.
        v.verify(&report, at).unwrap();
        let err = checked.verify(&report, at).unwrap_err();
        assert!(
            matches!(err, TeeError::Rejected(_)) && err.to_string().contains(why),
            "{at}: {err}"
        );
    }
}

// VLEK-signed reports: the VLEK (issued by AMD to a cloud provider, here AWS) is signed by
// AMD's ASVK, which the ARK signs.

#[test]
fn real_vlek_report_verifies_through_amds_asvk() {
    use veil_attest::evidence::snp::SnpVerifier;
    let report = vector_or_skip!("trustee/snp-test-vlek-report.bin");
    let vlek = vector_or_skip!("trustee/snp-test-vlek.der");
    let v = SnpVerifier::from_vlek_der(&vlek).unwrap();
    let claims = v.verify(&report, JULY_2025).unwrap();
    assert_eq!(claims.tee, TeeKind::Snp);
    assert_eq!(claims.signing_key.as_deref(), Some("vlek"));
    assert_eq!(claims.tcb.len(), 4, "{:?}", claims.tcb);
    assert!(claims.vmpl.is_some());
    // The ARK-Milan CRL does not list the ASVK.
    let crl = vector_or_skip!("amd/milan-vcek.crl");
    v.clone()
        .with_crl(&crl)
        .unwrap()
        .verify(&report, JULY_2025)
        .unwrap();
    // The VLEK is valid from 2024-12-10 to 2025-12-10.
    let err = v.verify(&report, MARCH_2026).unwrap_err();
    assert!(
        err.to_string().contains("VLEK certificate is not valid"),
        "{err}"
    );
    // A flipped byte in the signed report.
    for offset in [0x48, 0x90, 0x29f] {
        let mut m = report.clone();
        m[offset] ^= 1;
        let err = v.verify(&m, JULY_2025).unwrap_err();
        assert!(matches!(err, TeeError::Rejected(_)), "{offset:#x}: {err}");
    }
}

#[test]
fn vlek_and_vcek_are_not_interchangeable() {
    use veil_attest::evidence::snp::SnpVerifier;
    let vlek_report = vector_or_skip!("trustee/snp-test-vlek-report.bin");
    let vlek = vector_or_skip!("trustee/snp-test-vlek.der");
    let vcek_report = vector_or_skip!("trustee/snp-test-report.bin");
    let vcek = vector_or_skip!("trustee/snp-test-vcek.der");
    // The VLEK presented as a VCEK: the ASK did not sign it.
    let err = SnpVerifier::from_vcek_der(&vlek)
        .unwrap()
        .verify(&vlek_report, JULY_2025)
        .unwrap_err();
    assert!(
        matches!(err, TeeError::Rejected(_)) && err.to_string().contains("ASK"),
        "{err}"
    );
    // The VCEK presented as a VLEK: the ASVK did not sign it.
    let err = SnpVerifier::from_vlek_der(&vcek)
        .unwrap()
        .verify(&vcek_report, JULY_2025)
        .unwrap_err();
    assert!(
        matches!(err, TeeError::Rejected(_)) && err.to_string().contains("ASVK"),
        "{err}"
    );
    // A report checked against the other kind of key: refused for what the report says.
    let err = SnpVerifier::from_vcek_der(&vcek)
        .unwrap()
        .verify(&vlek_report, JULY_2025)
        .unwrap_err();
    assert!(err.to_string().contains("signed by a VLEK"), "{err}");
    let err = SnpVerifier::from_vlek_der(&vlek)
        .unwrap()
        .verify(&vcek_report, JULY_2025)
        .unwrap_err();
    assert!(err.to_string().contains("signed by a VCEK"), "{err}");
}
