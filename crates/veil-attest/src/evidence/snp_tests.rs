//! Unit tests of `snp`.

use super::*;

fn verifier_with(tcb: &[(&'static str, u8)], hw_id: Option<Vec<u8>>) -> SnpVerifier {
    let ark = builtin::milan::ark().unwrap();
    SnpVerifier {
        vek: ark,
        key: SnpSigningKey::Vcek,
        facts: VcekFacts {
            not_before: 0,
            not_after: u64::MAX,
            tcb: tcb.iter().copied().collect(),
            hw_id,
        },
        chain: std::sync::OnceLock::new(),
        min_tcb: None,
        crls: Vec::new(),
        test_roots: None,
    }
}

const TCB: SnpTcb = SnpTcb {
    bootloader: 3,
    tee: 0,
    snp: 8,
    microcode: 115,
    fmc: None,
};

#[test]
fn report_tcb_and_chip_id_must_match_the_vcek() {
    let chip = vec![7u8; 64];
    let full = [
        ("bootloader", 3),
        ("tee", 0),
        ("snp", 8),
        ("microcode", 115),
    ];
    let v = verifier_with(&full, Some(chip.clone()));
    v.check_against_vcek(&TCB, &chip).unwrap();
    // A masked chip id (all zeros) cannot be matched, and is not refused for it.
    v.check_against_vcek(&TCB, &[0u8; 64]).unwrap();
    // The VCEK of another TCB: every component counts.
    for (i, name) in ["bootloader", "tee", "snp", "microcode"].iter().enumerate() {
        let mut other = full;
        other[i].1 += 1;
        let err = verifier_with(&other, Some(chip.clone()))
            .check_against_vcek(&TCB, &chip)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(name) && err.contains("does not match"),
            "{err}"
        );
    }
    // A VCEK missing a TCB extension.
    let err = verifier_with(&full[..3], Some(chip.clone()))
        .check_against_vcek(&TCB, &chip)
        .unwrap_err()
        .to_string();
    assert!(err.contains("microcode"), "{err}");
    // The VCEK of another chip.
    let err = v
        .check_against_vcek(&TCB, &[8u8; 64])
        .unwrap_err()
        .to_string();
    assert!(err.contains("chip id"), "{err}");
}

#[test]
fn tcb_minimums_are_componentwise_and_parse_from_text() {
    let min: SnpTcb = "bootloader=3, tee=0, snp=8, microcode=115".parse().unwrap();
    assert_eq!(min, TCB);
    assert!(TCB.meets(&min));
    let newer = SnpTcb { snp: 9, ..min };
    assert!(!TCB.meets(&newer));
    assert!(!TCB.meets(&SnpTcb {
        fmc: Some(1),
        ..min
    }));
    assert!("bootloader=3,tee=0,snp=8".parse::<SnpTcb>().is_err());
    assert!("bootloader=3,tee=0,snp=8,microcode=999"
        .parse::<SnpTcb>()
        .is_err());
    assert!("bootloader=3,tee=0,snp=8,microcode=1,gpu=2"
        .parse::<SnpTcb>()
        .is_err());
}

fn x509(der: &[u8]) -> x509_cert::Certificate {
    x509_cert::Certificate::from_der(der).unwrap()
}

fn chain_under(ark: &x509_cert::Certificate, serial: &[u8]) -> ChainFacts {
    ChainFacts {
        windows: [0, 1].map(|_| Validity {
            name: "ARK",
            not_before: 0,
            not_after: u64::MAX,
        }),
        ark: ark.tbs_certificate.subject.clone(),
        ark_text: ark.tbs_certificate.subject.to_string(),
        intermediate_serial: serial.to_vec(),
    }
}

const JAN_2025: u64 = 1_735_689_600; // 2025-01-01T00:00:00Z
const JULY_2025: u64 = 1_751_328_000; // 2025-07-01T00:00:00Z

/// The revocation path, which AMD's built-in roots cannot show for a chain we hold: a TEST
/// root (`tests/vectors/amd-test/`, a throwaway key, not AMD's) revokes serial 0f:00:01,
/// and AMD's real Genoa CRL revokes the retired Genoa ASK 02:00:01.
#[test]
fn a_crl_that_lists_the_chains_intermediate_refuses_it() {
    let test_ark = x509(include_bytes!("../../tests/vectors/amd-test/test-ark.der"));
    let crl = SnpCrl::from_der(
        include_bytes!("../../tests/vectors/amd-test/test-ark-revokes-0f0001.crl"),
        std::slice::from_ref(&test_ark),
    )
    .unwrap();
    let crls = [crl];
    let err = check_revocation(
        &chain_under(&test_ark, &[0x0f, 0, 1]),
        "ASK",
        &crls,
        JULY_2025,
    )
    .unwrap_err();
    assert!(
        matches!(err, TeeError::Rejected(_)) && err.to_string().contains("revoked the ASK"),
        "{err}"
    );
    check_revocation(
        &chain_under(&test_ark, &[0x0f, 0, 2]),
        "ASK",
        &crls,
        JULY_2025,
    )
    .unwrap();
    // Without a CRL, revocation is not checked; with one from another root, refused.
    check_revocation(
        &chain_under(&test_ark, &[0x0f, 0, 1]),
        "ASK",
        &[],
        JULY_2025,
    )
    .unwrap();
    let milan_ark = builtin_x509(&builtin::milan::ark().unwrap()).unwrap();
    let err = check_revocation(
        &chain_under(&milan_ark, &[1, 0, 1]),
        "ASK",
        &crls,
        JULY_2025,
    )
    .unwrap_err();
    assert!(err.to_string().contains("no CRL given"), "{err}");

    // AMD's Genoa CRL (current from 2024-10-23 to 2025-11-03) revokes serial 02:00:01.
    let genoa_ark = builtin_x509(&builtin::genoa::ark().unwrap()).unwrap();
    let genoa = [SnpCrl::from_der(
        include_bytes!("../../tests/vectors/amd/genoa-vcek.crl"),
        std::slice::from_ref(&genoa_ark),
    )
    .unwrap()];
    let err = check_revocation(
        &chain_under(&genoa_ark, &[2, 0, 1]),
        "ASK",
        &genoa,
        JAN_2025,
    )
    .unwrap_err();
    assert!(err.to_string().contains("020001"), "{err}");
    // The Genoa ASK built into `sev` (02:00:02) is not revoked.
    let genoa_ask = builtin_x509(&builtin::genoa::ask().unwrap()).unwrap();
    let serial = genoa_ask.tbs_certificate.serial_number.as_bytes();
    assert_eq!(serial, [2, 0, 2]);
    check_revocation(&chain_under(&genoa_ark, serial), "ASK", &genoa, JAN_2025).unwrap();
}

/// A CRL signed by another key than its issuer's is refused, and one checked against a
/// root that did not issue it is not matched to it.
#[test]
fn a_crl_signed_by_another_key_is_refused() {
    let milan_ark = builtin_x509(&builtin::milan::ark().unwrap()).unwrap();
    let impostor = include_bytes!("../../tests/vectors/amd-test/impostor-ark-milan.crl");
    let err = SnpCrl::from_der(impostor, std::slice::from_ref(&milan_ark)).unwrap_err();
    assert!(err.to_string().contains("not signed by"), "{err}");
    let test_crl = include_bytes!("../../tests/vectors/amd-test/test-ark-revokes-0f0001.crl");
    let err = SnpCrl::from_der(test_crl, std::slice::from_ref(&milan_ark)).unwrap_err();
    assert!(err.to_string().contains("not one of AMD's ARKs"), "{err}");
}

/// Revocation looks up the serial of the chain's intermediate: AMD's Milan ASK (01:00:01)
/// for the recorded VCEK, the Milan ASVK (01:01:01) for the recorded VLEK.
#[test]
fn the_chain_check_finds_the_intermediate_that_revocation_looks_up() {
    let vcek = include_bytes!("../../tests/vectors/trustee/snp-test-vcek.der");
    let facts = SnpVerifier::from_vcek_der(vcek)
        .unwrap()
        .check_chain()
        .unwrap();
    assert_eq!(facts.intermediate_serial, [1, 0, 1]);
    assert!(
        facts.ark_text.contains("CN=ARK-Milan"),
        "{}",
        facts.ark_text
    );
    assert_eq!(facts.windows[1].name, "ASK");
    let vlek = include_bytes!("../../tests/vectors/trustee/snp-test-vlek.der");
    let facts = SnpVerifier::from_vlek_der(vlek)
        .unwrap()
        .check_chain()
        .unwrap();
    assert_eq!(facts.intermediate_serial, [1, 1, 1]);
    assert!(
        facts.ark_text.contains("CN=ARK-Milan"),
        "{}",
        facts.ark_text
    );
    assert_eq!(facts.windows[1].name, "ASVK");
}

/// The whole path with a TEST chain (`tests/vectors/amd-test/make.sh`: throwaway keys, not
/// AMD's): ARK-Test → ASK-Test (serial 0f:00:01) → a test VCEK carrying the recorded
/// report's TCB and chip id, and that report re-signed by it. It verifies; with the test
/// root's CRL, which lists 0f:00:01, it is refused as revoked.
#[test]
fn a_report_whose_ask_is_revoked_is_refused() {
    let cert = |der: &[u8]| Certificate::from_der(der).unwrap();
    let ark = cert(include_bytes!("../../tests/vectors/amd-test/test-ark.der"));
    let ask = cert(include_bytes!("../../tests/vectors/amd-test/test-ask.der"));
    let mut v =
        SnpVerifier::from_vcek_der(include_bytes!("../../tests/vectors/amd-test/test-vcek.der"))
            .unwrap();
    v.test_roots = Some(vec![ProductLine {
        ark: ark.clone(),
        ask: ask.clone(),
        asvk: ask,
    }]);
    let report = include_bytes!("../../tests/vectors/amd-test/test-report.bin");
    // The test certificates are valid from when make.sh ran (2026) for 100 years; the
    // test CRL from 2025 to 2035.
    const JAN_2030: u64 = 1_893_456_000;
    let claims = v.verify(report, JAN_2030).unwrap();
    assert_eq!(claims.signing_key.as_deref(), Some("vcek"));
    // AMD's real roots do not sign this chain.
    let err =
        SnpVerifier::from_vcek_der(include_bytes!("../../tests/vectors/amd-test/test-vcek.der"))
            .unwrap()
            .verify(report, JAN_2030)
            .unwrap_err();
    assert!(err.to_string().contains("not signed by AMD"), "{err}");
    let revoking = v
        .clone()
        .with_crl(include_bytes!(
            "../../tests/vectors/amd-test/test-ark-revokes-0f0001.crl"
        ))
        .unwrap();
    let err = revoking.verify(report, JAN_2030).unwrap_err();
    assert!(
        matches!(err, TeeError::Rejected(_))
            && err
                .to_string()
                .contains("revoked the ASK of this chain (serial 0f0001)"),
        "{err}"
    );
    // AMD's CRLs are not from this root: refused when given.
    assert!(v
        .with_crl(include_bytes!("../../tests/vectors/amd/milan-vcek.crl"))
        .is_err());
}

#[test]
fn the_embedded_asvks_are_signed_by_the_built_in_arks() {
    for line in product_lines().unwrap() {
        (&line.ark, &line.asvk).verify().unwrap();
        (&line.ark, &line.ask).verify().unwrap();
    }
}

#[test]
fn small_der_integers() {
    assert_eq!(der_small_uint(&[2, 1, 4]), Some(4));
    assert_eq!(der_small_uint(&[2, 2, 0, 0xd9]), Some(0xd9));
    assert_eq!(der_small_uint(&[2, 1, 0xd9]), None);
    assert_eq!(der_small_uint(&[2, 2, 0, 4]), None);
    assert_eq!(der_small_uint(&[4, 1, 4]), None);
}
