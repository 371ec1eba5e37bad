//! AMD SEV-SNP attestation reports: the report's signature is checked with the VCEK, and the
//! VCEK's certificate chain up to AMD's public roots (ARK → ASK → VCEK, for the Milan, Genoa
//! and Turin product lines built into the `sev` crate).
//!
//! **What is checked, as of the verification time given** (recorded evidence is checked at
//! a fixed past time; a service checks at *now*):
//!
//! - the ARK, the ASK and the VCEK are each within their validity period (a VCEK valid
//!   2023–2030 does not verify a report "as of" 1990 or 2031);
//! - the ARK signs the ASK, the ASK signs the VCEK, the VCEK signs the report (ECDSA P-384);
//! - the report says it was signed by a VCEK (not a VLEK) with ECDSA P-384 SHA-384;
//! - the VCEK was issued for the report's *reported TCB*: its TCB extensions (boot loader,
//!   TEE, SNP firmware, microcode, and FMC on Turin) equal the report's, and its hardware id
//!   (`hwID`) equals the report's chip id (unless the guest policy masked the chip id, which
//!   is then all zeros);
//! - the report is canonically encoded: the unsigned signature field (r and s, 72 bytes each
//!   of which P-384 uses 48, then 368 reserved bytes) holds zeros wherever it holds no
//!   signature, so one report has one encoding.
//!
//! **TCB status.** SNP reports carry a TCB *version*, not a status: whether it is current is
//! a judgement AMD publishes per product line. The verifier takes that judgement as a
//! minimum TCB ([`SnpVerifier::with_min_tcb`], `--snp-min-tcb` in the CLI): the claims say
//! `UpToDate` if every component of the reported TCB is at least the minimum's, `OutOfDate`
//! otherwise, and `Unknown` when no minimum was given — which the default policy
//! (`tcb_status = ["UpToDate"]`) refuses. The reported TCB is the one that matters: the
//! firmware can only derive a VCEK for a TCB at or below its own, so the VCEK's signature
//! proves the platform runs at least the reported TCB. The components are in the claims
//! (`tcb`), and so is the VMPL the report was requested from (`vmpl`; 0 is the most
//! privileged level, where an SVSM or the guest kernel runs).
//!
//! **Not checked:** revocation (AMD's CRL for the ASK/ARK is not read: revoked VCEKs are not
//! refused), and VLEK-signed reports (the VLEK's signer, AMD's ASVK, is not built in; such
//! reports are refused with that reason).

use std::collections::BTreeMap;

use sev::certs::snp::{builtin, ca, Certificate, Chain, Verifiable};
use sev::firmware::guest::AttestationReport;
use x509_cert::der::Decode as _;

use crate::claims::{TeeKind, VerifiedClaims};
use crate::error::{Result, TeeError};
use crate::evidence::Verifier;

/// SNP reports are 1184 bytes; anything much larger is not one.
const MAX_REPORT_LEN: usize = 4096;
/// Where the signature field starts: the report signs bytes 0 to 0x29F.
const SIGNATURE_OFFSET: usize = 0x2a0;
/// The signature algorithm the report must name: ECDSA P-384 with SHA-384.
const SIG_ALGO_ECDSA_P384_SHA384: u32 = 1;

/// An SNP TCB version: the security version numbers of the platform's firmware components.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SnpTcb {
    /// PSP boot loader SVN.
    pub bootloader: u8,
    /// PSP operating system (TEE) SVN.
    pub tee: u8,
    /// SNP firmware SVN.
    pub snp: u8,
    /// Lowest microcode patch level of all cores.
    pub microcode: u8,
    /// FMC firmware SVN (Turin and later).
    pub fmc: Option<u8>,
}

impl SnpTcb {
    fn from_report(t: &sev::firmware::host::TcbVersion) -> Self {
        Self {
            bootloader: t.bootloader,
            tee: t.tee,
            snp: t.snp,
            microcode: t.microcode,
            fmc: t.fmc,
        }
    }

    /// Whether every component is at least `min`'s.
    pub fn meets(&self, min: &SnpTcb) -> bool {
        self.bootloader >= min.bootloader
            && self.tee >= min.tee
            && self.snp >= min.snp
            && self.microcode >= min.microcode
            && match (self.fmc, min.fmc) {
                (_, None) => true,
                (Some(a), Some(b)) => a >= b,
                (None, Some(_)) => false,
            }
    }

    /// The components by name, as in the claims.
    pub fn to_map(&self) -> BTreeMap<String, u64> {
        let mut m = BTreeMap::new();
        m.insert("bootloader".to_string(), u64::from(self.bootloader));
        m.insert("tee".to_string(), u64::from(self.tee));
        m.insert("snp".to_string(), u64::from(self.snp));
        m.insert("microcode".to_string(), u64::from(self.microcode));
        if let Some(f) = self.fmc {
            m.insert("fmc".to_string(), u64::from(f));
        }
        m
    }
}

impl std::str::FromStr for SnpTcb {
    type Err = TeeError;

    /// Reads `bootloader=N,tee=N,snp=N,microcode=N[,fmc=N]`.
    fn from_str(s: &str) -> Result<Self> {
        let bad = |why: String| {
            TeeError::BadRequest(format!(
                "SNP TCB {s:?}: {why} (write bootloader=N,tee=N,snp=N,microcode=N[,fmc=N])"
            ))
        };
        let mut parts: BTreeMap<&str, u8> = BTreeMap::new();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (k, v) = item
                .split_once('=')
                .ok_or_else(|| bad(format!("{item:?} is not NAME=N")))?;
            let v: u8 = v
                .trim()
                .parse()
                .map_err(|_| bad(format!("{v:?} is not a number from 0 to 255")))?;
            if !matches!(k.trim(), "bootloader" | "tee" | "snp" | "microcode" | "fmc") {
                return Err(bad(format!("unknown component {k:?}")));
            }
            parts.insert(k.trim(), v);
        }
        let need = |k: &str| {
            parts
                .get(k)
                .copied()
                .ok_or_else(|| bad(format!("{k} missing")))
        };
        Ok(Self {
            bootloader: need("bootloader")?,
            tee: need("tee")?,
            snp: need("snp")?,
            microcode: need("microcode")?,
            fmc: parts.get("fmc").copied(),
        })
    }
}

/// What the VCEK certificate says beyond its key: validity and AMD's extensions.
#[derive(Clone, Debug)]
struct VcekFacts {
    not_before: u64,
    not_after: u64,
    /// The TCB the VCEK was derived for (absent components: extension missing).
    tcb: BTreeMap<&'static str, u8>,
    /// The chip's hardware id (64 bytes), absent from VLEKs.
    hw_id: Option<Vec<u8>>,
}

/// AMD's VCEK extension OIDs (`1.3.6.1.4.1.3704.1.…`), by TCB component.
const TCB_OIDS: [(&str, &str); 5] = [
    ("bootloader", "1.3.6.1.4.1.3704.1.3.1"),
    ("tee", "1.3.6.1.4.1.3704.1.3.2"),
    ("snp", "1.3.6.1.4.1.3704.1.3.3"),
    ("microcode", "1.3.6.1.4.1.3704.1.3.8"),
    ("fmc", "1.3.6.1.4.1.3704.1.3.9"),
];
const HW_ID_OID: &str = "1.3.6.1.4.1.3704.1.4";

/// A DER INTEGER from 0 to 255 (the SPL extensions' encoding).
fn der_small_uint(v: &[u8]) -> Option<u8> {
    match v {
        [0x02, 1, x] => Some(*x).filter(|x| x & 0x80 == 0),
        [0x02, 2, 0, x] => Some(*x).filter(|x| x & 0x80 != 0),
        _ => None,
    }
}

fn validity(cert: &x509_cert::Certificate) -> (u64, u64) {
    let v = &cert.tbs_certificate.validity;
    (
        v.not_before.to_unix_duration().as_secs(),
        v.not_after.to_unix_duration().as_secs(),
    )
}

fn parse_x509(der: &[u8], what: &str) -> Result<x509_cert::Certificate> {
    x509_cert::Certificate::from_der(der)
        .map_err(|e| TeeError::InvalidCollateral(format!("{what}: {e}")))
}

fn vcek_facts(der: &[u8]) -> Result<VcekFacts> {
    let cert = parse_x509(der, "VCEK")?;
    let (not_before, not_after) = validity(&cert);
    let mut tcb = BTreeMap::new();
    let mut hw_id = None;
    for ext in cert.tbs_certificate.extensions.iter().flatten() {
        let oid = ext.extn_id.to_string();
        let value = ext.extn_value.as_bytes();
        if let Some((name, _)) = TCB_OIDS.iter().find(|(_, o)| *o == oid) {
            let v = der_small_uint(value).ok_or_else(|| {
                TeeError::InvalidCollateral(format!(
                    "VCEK: {name} extension is not a small integer"
                ))
            })?;
            tcb.insert(*name, v);
        } else if oid == HW_ID_OID {
            // An OCTET STRING of 64 bytes; early VCEKs carried the 64 bytes bare.
            hw_id = Some(match value {
                [0x04, 0x40, rest @ ..] if rest.len() == 64 => rest.to_vec(),
                raw if raw.len() == 64 => raw.to_vec(),
                _ => {
                    return Err(TeeError::InvalidCollateral(
                        "VCEK: hwID extension is not 64 bytes".into(),
                    ))
                }
            });
        }
    }
    Ok(VcekFacts {
        not_before,
        not_after,
        tcb,
        hw_id,
    })
}

/// A certificate's validity period, for the chain's certificates.
#[derive(Clone, Debug)]
struct Validity {
    name: &'static str,
    not_before: u64,
    not_after: u64,
}

impl Validity {
    fn check(&self, now: u64) -> Result<()> {
        if now < self.not_before || now > self.not_after {
            return Err(TeeError::Rejected(format!(
                "the {} certificate is not valid at {} (valid from {} to {})",
                self.name,
                crate::evidence::format_time(now),
                crate::evidence::format_time(self.not_before),
                crate::evidence::format_time(self.not_after)
            )));
        }
        Ok(())
    }
}

/// A verifier for SEV-SNP reports signed by one VCEK.
#[derive(Clone, Debug)]
pub struct SnpVerifier {
    vcek: Certificate,
    facts: VcekFacts,
    /// The chain check (two RSA-4096 and one ECDSA P-384 signature), done once; on success,
    /// the ARK's and ASK's validity.
    chain: std::sync::OnceLock<Result<[Validity; 2]>>,
    min_tcb: Option<SnpTcb>,
}

impl SnpVerifier {
    /// A verifier for reports signed by the VCEK in `der` (DER-encoded X.509, as AMD's KDS
    /// serves it).
    pub fn from_vcek_der(der: &[u8]) -> Result<Self> {
        let vcek = Certificate::from_der(der)
            .map_err(|e| TeeError::InvalidCollateral(format!("VCEK: {e}")))?;
        let facts = vcek_facts(der)?;
        Ok(Self {
            vcek,
            facts,
            chain: std::sync::OnceLock::new(),
            min_tcb: None,
        })
    }

    /// Judges the reported TCB against `min`, the oldest TCB still considered current (from
    /// AMD's security bulletins for the product line): `UpToDate` or `OutOfDate` in the
    /// claims instead of `Unknown`.
    #[must_use]
    pub fn with_min_tcb(mut self, min: SnpTcb) -> Self {
        self.min_tcb = Some(min);
        self
    }

    /// The reported TCB of a report, read **without verifying it** (to choose a minimum,
    /// or to inspect).
    pub fn reported_tcb(&self, evidence: &[u8]) -> Result<SnpTcb> {
        Ok(SnpTcb::from_report(&parse_report(evidence)?.reported_tcb))
    }

    /// The AMD chain (ARK → ASK) that signs this VCEK, if any built-in product line does;
    /// the ARK's and the ASK's validity periods.
    fn check_chain(&self) -> Result<[Validity; 2]> {
        let lines = [
            (builtin::milan::ark(), builtin::milan::ask()),
            (builtin::genoa::ark(), builtin::genoa::ask()),
            (builtin::turin::ark(), builtin::turin::ask()),
        ];
        for (ark, ask) in lines {
            let (Ok(ark), Ok(ask)) = (ark, ask) else {
                continue;
            };
            let chain = Chain {
                ca: ca::Chain { ark, ask },
                vek: self.vcek.clone(),
            };
            if (&chain).verify().is_ok() {
                let window = |c: &Certificate, name| -> Result<Validity> {
                    let der = c
                        .to_der()
                        .map_err(|_| TeeError::Internal("a built-in AMD certificate"))?;
                    let (not_before, not_after) = validity(&parse_x509(&der, name)?);
                    Ok(Validity {
                        name,
                        not_before,
                        not_after,
                    })
                };
                return Ok([window(&chain.ca.ark, "ARK")?, window(&chain.ca.ask, "ASK")?]);
            }
        }
        Err(TeeError::Rejected(
            "the VCEK is not signed by AMD's ARK/ASK for Milan, Genoa or Turin".into(),
        ))
    }
}

fn parse_report(evidence: &[u8]) -> Result<AttestationReport> {
    if evidence.len() > MAX_REPORT_LEN {
        return Err(TeeError::Rejected(format!(
            "{} bytes is too long for an SNP report",
            evidence.len()
        )));
    }
    std::panic::catch_unwind(|| AttestationReport::from_bytes(evidence))
        .map_err(|_| TeeError::Rejected("malformed SNP report (the parser gave up)".into()))?
        .map_err(|e| TeeError::Rejected(format!("malformed SNP report: {e}")))
}

/// The unsigned signature field must hold zeros wherever it holds no signature.
fn check_signature_padding(evidence: &[u8]) -> Result<()> {
    let sig = evidence
        .get(SIGNATURE_OFFSET..)
        .ok_or_else(|| TeeError::Rejected("SNP report without a signature".into()))?;
    let padding = [
        (48..72, "r"),
        (72 + 48..144, "s"),
        (144..sig.len(), "reserved"),
    ];
    for (range, part) in padding {
        let bytes = sig.get(range.clone()).unwrap_or_default();
        if let Some(i) = bytes.iter().position(|&b| b != 0) {
            return Err(TeeError::Rejected(format!(
                "non-zero byte at offset {:#x} of the SNP report, in the unsigned padding of \
                 the signature ({part}): not a canonical report",
                SIGNATURE_OFFSET + range.start + i
            )));
        }
    }
    Ok(())
}

impl SnpVerifier {
    /// The report's TCB and chip id against the VCEK's extensions.
    fn check_against_vcek(&self, tcb: &SnpTcb, chip_id: &[u8]) -> Result<()> {
        let reported = tcb.to_map();
        for (name, _) in TCB_OIDS {
            let in_cert = self.facts.tcb.get(name).copied();
            let in_report = reported.get(name).copied();
            match (in_cert, in_report) {
                (Some(c), Some(r)) if u64::from(c) == r => {}
                (None, None) => {}
                // The FMC component exists on Turin only: absent from one side's format.
                (None, Some(_)) | (Some(_), None) if name == "fmc" => {}
                (c, r) => {
                    return Err(TeeError::Rejected(format!(
                        "the report's reported TCB {name} = {} does not match the VCEK's {} \
                         (the VCEK was issued for another TCB)",
                        r.map_or("absent".into(), |v| v.to_string()),
                        c.map_or("absent".into(), |v| v.to_string()),
                    )))
                }
            }
        }
        let masked = chip_id.iter().all(|&b| b == 0);
        match &self.facts.hw_id {
            Some(hw) if !masked && hw.as_slice() != chip_id => Err(TeeError::Rejected(
                "the report's chip id is not the VCEK's hardware id (the VCEK belongs to \
                 another chip)"
                    .into(),
            )),
            None if !masked => Err(TeeError::Rejected(
                "the VCEK carries no hardware id to match the report's chip id".into(),
            )),
            _ => Ok(()),
        }
    }
}

impl Verifier for SnpVerifier {
    fn verify(&self, evidence: &[u8], now: u64) -> Result<VerifiedClaims> {
        let report = parse_report(evidence)?;
        check_signature_padding(evidence)?;
        if report.sig_algo != SIG_ALGO_ECDSA_P384_SHA384 {
            return Err(TeeError::Rejected(format!(
                "SNP report signature algorithm {} is not ECDSA P-384 with SHA-384",
                report.sig_algo
            )));
        }
        match report.key_info.signing_key() {
            0 => {}
            1 => {
                return Err(TeeError::Rejected(
                    "the SNP report is signed by a VLEK, not a VCEK: VLEK-signed reports are \
                     not supported (AMD's ASVK is not built in)"
                        .into(),
                ))
            }
            other => {
                return Err(TeeError::Rejected(format!(
                    "the SNP report names signing key {other} (not a VCEK): it is unsigned"
                )))
            }
        }
        let windows = self.chain.get_or_init(|| self.check_chain()).clone()?;
        for w in &windows {
            w.check(now)?;
        }
        Validity {
            name: "VCEK",
            not_before: self.facts.not_before,
            not_after: self.facts.not_after,
        }
        .check(now)?;
        (&self.vcek, &report).verify().map_err(|e| {
            TeeError::Rejected(format!(
                "SNP report signature does not verify with the VCEK: {e}"
            ))
        })?;
        let tcb = SnpTcb::from_report(&report.reported_tcb);
        self.check_against_vcek(&tcb, &report.chip_id[..])?;
        let mut measurements = BTreeMap::new();
        measurements.insert(
            "measurement".to_string(),
            hex::encode(&report.measurement[..]),
        );
        measurements.insert("host_data".to_string(), hex::encode(&report.host_data[..]));
        let tcb_status = match &self.min_tcb {
            None => "Unknown",
            Some(min) if tcb.meets(min) => "UpToDate",
            Some(_) => "OutOfDate",
        };
        Ok(VerifiedClaims {
            tee: TeeKind::Snp,
            measurements,
            signer: Some(hex::encode(&report.id_key_digest[..])),
            product_id: None,
            security_version: u16::try_from(report.guest_svn).ok(),
            debug: report.policy.debug_allowed(),
            tcb_status: tcb_status.to_string(),
            advisory_ids: Vec::new(),
            report_data: hex::encode(&report.report_data[..]),
            vmpl: Some(report.vmpl),
            tcb: tcb.to_map(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verifier_with(tcb: &[(&'static str, u8)], hw_id: Option<Vec<u8>>) -> SnpVerifier {
        let ark = builtin::milan::ark().unwrap();
        SnpVerifier {
            vcek: ark,
            facts: VcekFacts {
                not_before: 0,
                not_after: u64::MAX,
                tcb: tcb.iter().copied().collect(),
                hw_id,
            },
            chain: std::sync::OnceLock::new(),
            min_tcb: None,
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

    #[test]
    fn small_der_integers() {
        assert_eq!(der_small_uint(&[2, 1, 4]), Some(4));
        assert_eq!(der_small_uint(&[2, 2, 0, 0xd9]), Some(0xd9));
        assert_eq!(der_small_uint(&[2, 1, 0xd9]), None);
        assert_eq!(der_small_uint(&[2, 2, 0, 4]), None);
        assert_eq!(der_small_uint(&[4, 1, 4]), None);
    }
}
