//! AMD SEV-SNP attestation reports: the report's signature is checked with the key that
//! signed it — the chip's VCEK, or a VLEK that AMD issued to a cloud provider — and that key's
//! certificate chain up to AMD's public roots: ARK → ASK → VCEK, or ARK → ASVK → VLEK, for
//! the Milan, Genoa and Turin product lines (the ARKs and ASKs built into the `sev` crate, the
//! ASVKs embedded here from AMD's KDS).
//!
//! **What is checked, as of the verification time given** (recorded evidence is checked at
//! a fixed past time; a service checks at *now*):
//!
//! - the ARK, the ASK (or ASVK) and the VCEK (or VLEK) are each within their validity period
//!   (a VCEK valid 2023–2030 does not verify a report "as of" 1990 or 2031);
//! - the ARK signs the ASK/ASVK, which signs the VCEK/VLEK, which signs the report (ECDSA
//!   P-384); the report says which kind of key signed it, and that must be the kind of
//!   certificate the verifier was given ([`SnpVerifier::from_vcek_der`] or
//!   [`SnpVerifier::from_vlek_der`]); the claims say which (`signing_key`: `vcek`/`vlek`);
//! - the report names ECDSA P-384 SHA-384 as its signature algorithm;
//! - the key was issued for the report's *reported TCB*: the certificate's TCB extensions
//!   (boot loader, TEE, SNP firmware, microcode, and FMC on Turin) equal the report's; for a
//!   VCEK, its hardware id (`hwID`) equals the report's chip id (unless the guest policy
//!   masked the chip id, which is then all zeros). A VLEK belongs to a cloud provider, not to
//!   a chip: it has no `hwID`, and the chip id is **not** checked for VLEK-signed reports;
//! - **revocation**, when given AMD's CRLs ([`SnpVerifier::with_crl`], `--snp-crl` in the
//!   CLI; KDS `/vcek/v1/{product}/crl` and `/vlek/v1/{product}/crl`, read from a file): each
//!   CRL must be signed (RSA-PSS SHA-384) by one of AMD's ARKs and name it as its issuer,
//!   or it is refused when given; at verification, at least one CRL must come from the ARK
//!   of the report's chain, every such CRL must be current at the verification time
//!   (`thisUpdate` ≤ time ≤ `nextUpdate`; a CRL past its `nextUpdate` is **refused**, like
//!   go-sev-guest, which does not use a cached CRL past it, and like the DCAP verifier's
//!   expired CRLs), and none may list the serial number of the chain's ASK/ASVK (whatever
//!   the revocation date). The ARK's CRLs list certificates the ARK issued: the ASKs and
//!   ASVKs. VCEKs and VLEKs are issued by the ASK/ASVK, and AMD publishes no CRL for them
//!   (their serial numbers are not unique — the recorded ones are all 0 — and AMD retires a
//!   VCEK by TCB, not by revocation): their serials are not looked up in the ARK's list;
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
//! **Not checked:** that the CRLs given are the latest AMD published (a CRL inside its
//! window is accepted even if a newer one exists), that a CRL is the VLEK one rather than the
//! VCEK one for VLEK reports (both are the ARK's lists; AMD's carry no extension telling
//! them apart), and the minimum TCB, which is the user's input (it is not fetched from AMD).

use std::collections::BTreeMap;

use sev::certs::snp::{builtin, ca, Certificate, Chain, Verifiable};
use sev::firmware::guest::AttestationReport;
use x509_cert::der::{Decode as _, Encode as _};

use crate::claims::{TeeKind, VerifiedClaims};
use crate::error::{Result, TeeError};
use crate::evidence::Verifier;

/// SNP reports are 1184 bytes; anything much larger is not one.
const MAX_REPORT_LEN: usize = 4096;
/// Where the signature field starts: the report signs bytes 0 to 0x29F.
const SIGNATURE_OFFSET: usize = 0x2a0;
/// The signature algorithm the report must name: ECDSA P-384 with SHA-384.
const SIG_ALGO_ECDSA_P384_SHA384: u32 = 1;
/// AMD's CRLs are under a kilobyte; anything much larger is not one.
const MAX_CRL_LEN: usize = 256 * 1024;
/// RSASSA-PSS, the algorithm of AMD's ARK signatures (with SHA-384, MGF1-SHA-384, salt 48).
const RSA_PSS_OID: &str = "1.2.840.113549.1.1.10";

/// AMD's ASVK certificates, the keys (signed by each product line's ARK) that sign VLEKs.
/// Public data AMD serves at `https://kdsintf.amd.com/vlek/v1/{Milan,Genoa,Turin}/cert_chain`,
/// copied from confidential-containers/trustee @ 78962cd416dcc8a32f9377e0066a28fe21420f69,
/// `deps/verifier/src/snp/{milan,genoa,turin}_ask_ark_asvk.pem` (Apache-2.0; the Milan one is
/// byte for byte go-sev-guest's `verify/trust/ask_ark_milan_vlek.pem`). Each is checked to be
/// signed by the `sev` crate's built-in ARK of its product line before it is used.
const ASVK_MILAN: &[u8] = include_bytes!("amd/asvk-milan.pem");
/// AMD's Genoa ASVK (see [`ASVK_MILAN`]).
const ASVK_GENOA: &[u8] = include_bytes!("amd/asvk-genoa.pem");
/// AMD's Turin ASVK (see [`ASVK_MILAN`]).
const ASVK_TURIN: &[u8] = include_bytes!("amd/asvk-turin.pem");

/// Which kind of AMD key signs a report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnpSigningKey {
    /// The chip's Versioned Chip Endorsement Key, certified by AMD's ASK.
    Vcek,
    /// A Versioned Loaded Endorsement Key, which AMD issues to a cloud provider and the
    /// provider loads into its chips; certified by AMD's ASVK.
    Vlek,
}

impl SnpSigningKey {
    /// `vcek` or `vlek`, as in the claims.
    pub fn name(self) -> &'static str {
        match self {
            Self::Vcek => "vcek",
            Self::Vlek => "vlek",
        }
    }

    fn upper(self) -> &'static str {
        match self {
            Self::Vcek => "VCEK",
            Self::Vlek => "VLEK",
        }
    }

    /// The AMD key that certifies this kind of key.
    fn intermediate(self) -> &'static str {
        match self {
            Self::Vcek => "ASK",
            Self::Vlek => "ASVK",
        }
    }
}

/// One of AMD's product lines: its root and the two keys the root certifies.
#[derive(Clone, Debug)]
struct ProductLine {
    ark: Certificate,
    ask: Certificate,
    asvk: Certificate,
}

/// The built-in product lines (Milan, Genoa, Turin).
fn product_lines() -> Result<Vec<ProductLine>> {
    let builtin = |c: std::io::Result<Certificate>| {
        c.map_err(|_| TeeError::Internal("a built-in AMD certificate does not parse"))
    };
    Ok(vec![
        ProductLine {
            ark: builtin(builtin::milan::ark())?,
            ask: builtin(builtin::milan::ask())?,
            asvk: builtin(Certificate::from_pem(ASVK_MILAN))?,
        },
        ProductLine {
            ark: builtin(builtin::genoa::ark())?,
            ask: builtin(builtin::genoa::ask())?,
            asvk: builtin(Certificate::from_pem(ASVK_GENOA))?,
        },
        ProductLine {
            ark: builtin(builtin::turin::ark())?,
            ask: builtin(builtin::turin::ask())?,
            asvk: builtin(Certificate::from_pem(ASVK_TURIN))?,
        },
    ])
}

/// A built-in certificate as an `x509_cert` certificate (to read its names and dates).
fn builtin_x509(c: &Certificate) -> Result<x509_cert::Certificate> {
    let der = c
        .to_der()
        .map_err(|_| TeeError::Internal("a built-in AMD certificate does not encode"))?;
    x509_cert::Certificate::from_der(&der)
        .map_err(|_| TeeError::Internal("a built-in AMD certificate does not parse"))
}

/// Text from a certificate or CRL, made safe to print (no control characters, bounded).
fn printable(s: &str) -> String {
    s.chars()
        .take(200)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// An AMD certificate revocation list whose signature was checked against one of AMD's ARKs.
#[derive(Clone, Debug)]
pub struct SnpCrl {
    issuer: x509_cert::name::Name,
    issuer_text: String,
    this_update: u64,
    next_update: u64,
    /// Serial numbers (DER integer contents) and revocation times.
    revoked: Vec<(Vec<u8>, u64)>,
}

impl SnpCrl {
    /// Reads a DER CRL and checks that one of `arks` (by issuer name) signed it with
    /// RSA-PSS SHA-384.
    fn from_der(der: &[u8], arks: &[x509_cert::Certificate]) -> Result<Self> {
        let bad = |why: String| TeeError::InvalidCollateral(format!("AMD CRL: {why}"));
        if der.len() > MAX_CRL_LEN {
            return Err(bad(format!("{} bytes is too long for a CRL", der.len())));
        }
        let crl = x509_cert::crl::CertificateList::from_der(der)
            .map_err(|e| bad(format!("not a DER X.509 CRL ({e})")))?;
        let tbs = &crl.tbs_cert_list;
        let issuer_text = printable(&tbs.issuer.to_string());
        let ark = arks
            .iter()
            .find(|a| a.tbs_certificate.subject == tbs.issuer)
            .ok_or_else(|| {
                bad(format!(
                    "issued by {issuer_text}, which is not one of AMD's ARKs (Milan, Genoa, \
                     Turin)"
                ))
            })?;
        if crl.signature_algorithm.oid.to_string() != RSA_PSS_OID
            || tbs.signature != crl.signature_algorithm
        {
            return Err(bad(format!(
                "from {issuer_text}: signed with {} (inside: {}), not RSA-PSS as AMD's ARK signs",
                crl.signature_algorithm.oid, tbs.signature.oid
            )));
        }
        let signed = tbs.to_der().map_err(|e| {
            bad(format!(
                "from {issuer_text}: cannot re-encode its contents ({e})"
            ))
        })?;
        let signature = crl.signature.as_bytes().ok_or_else(|| {
            bad(format!(
                "from {issuer_text}: its signature is not whole bytes"
            ))
        })?;
        let key = ark
            .tbs_certificate
            .subject_public_key_info
            .subject_public_key
            .as_bytes()
            .ok_or(TeeError::Internal("an ARK's public key is not whole bytes"))?;
        ring::signature::UnparsedPublicKey::new(&ring::signature::RSA_PSS_2048_8192_SHA384, key)
            .verify(&signed, signature)
            .map_err(|_| {
                bad(format!(
                    "not signed by {issuer_text} (the RSA-PSS SHA-384 signature does not verify \
                     with that ARK's key): tampered or forged"
                ))
            })?;
        let next_update = tbs.next_update.ok_or_else(|| {
            bad(format!(
                "from {issuer_text}: no nextUpdate (AMD's CRLs have one)"
            ))
        })?;
        Ok(Self {
            issuer: tbs.issuer.clone(),
            issuer_text,
            this_update: tbs.this_update.to_unix_duration().as_secs(),
            next_update: next_update.to_unix_duration().as_secs(),
            revoked: tbs
                .revoked_certificates
                .iter()
                .flatten()
                .map(|r| {
                    (
                        r.serial_number.as_bytes().to_vec(),
                        r.revocation_date.to_unix_duration().as_secs(),
                    )
                })
                .collect(),
        })
    }

    /// Refuses the certificate `serial` (the chain's `role`, issued by this CRL's ARK) if the
    /// list names it, and the list itself if it is not current at `now`.
    fn check(&self, now: u64, serial: &[u8], role: &str) -> Result<()> {
        let t = crate::evidence::format_time;
        if now < self.this_update {
            return Err(TeeError::Rejected(format!(
                "the CRL from {} was issued (thisUpdate {}) after the verification time {}: \
                 give the CRL that was current then",
                self.issuer_text,
                t(self.this_update),
                t(now)
            )));
        }
        if now > self.next_update {
            return Err(TeeError::Rejected(format!(
                "the CRL from {} is out of date at {} (its nextUpdate was {}): fetch the \
                 current one from AMD's KDS",
                self.issuer_text,
                t(now),
                t(self.next_update)
            )));
        }
        if let Some((_, when)) = self.revoked.iter().find(|(s, _)| s.as_slice() == serial) {
            return Err(TeeError::Rejected(format!(
                "AMD revoked the {role} of this chain (serial {}) on {}, per the CRL from {}",
                hex::encode(serial),
                t(*when),
                self.issuer_text
            )));
        }
        Ok(())
    }
}

/// What the chain check established: the validity windows of the ARK and the ASK/ASVK, and
/// what revocation needs.
#[derive(Clone, Debug)]
struct ChainFacts {
    windows: [Validity; 2],
    ark: x509_cert::name::Name,
    ark_text: String,
    /// The ASK's or ASVK's serial number (DER integer contents).
    intermediate_serial: Vec<u8>,
}

/// Checks `chain` against the CRLs given (none given: revocation is not checked).
fn check_revocation(chain: &ChainFacts, role: &str, crls: &[SnpCrl], now: u64) -> Result<()> {
    if crls.is_empty() {
        return Ok(());
    }
    let mut found = false;
    for crl in crls.iter().filter(|c| c.issuer == chain.ark) {
        found = true;
        crl.check(now, &chain.intermediate_serial, role)?;
    }
    if !found {
        return Err(TeeError::Rejected(format!(
            "no CRL given is from {}, the root of this report's chain: whether its {role} is \
             revoked is unknown (give that product line's CRL)",
            chain.ark_text
        )));
    }
    Ok(())
}

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

/// What the VCEK (or VLEK) certificate says beyond its key: validity and AMD's extensions.
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

fn vcek_facts(der: &[u8], what: &str) -> Result<VcekFacts> {
    let cert = parse_x509(der, what)?;
    let (not_before, not_after) = validity(&cert);
    let mut tcb = BTreeMap::new();
    let mut hw_id = None;
    for ext in cert.tbs_certificate.extensions.iter().flatten() {
        let oid = ext.extn_id.to_string();
        let value = ext.extn_value.as_bytes();
        if let Some((name, _)) = TCB_OIDS.iter().find(|(_, o)| *o == oid) {
            let v = der_small_uint(value).ok_or_else(|| {
                TeeError::InvalidCollateral(format!(
                    "{what}: {name} extension is not a small integer"
                ))
            })?;
            tcb.insert(*name, v);
        } else if oid == HW_ID_OID {
            // An OCTET STRING of 64 bytes; early VCEKs carried the 64 bytes bare.
            hw_id = Some(match value {
                [0x04, 0x40, rest @ ..] if rest.len() == 64 => rest.to_vec(),
                raw if raw.len() == 64 => raw.to_vec(),
                _ => {
                    return Err(TeeError::InvalidCollateral(format!(
                        "{what}: hwID extension is not 64 bytes"
                    )))
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

/// A verifier for SEV-SNP reports signed by one VCEK or VLEK.
#[derive(Clone, Debug)]
pub struct SnpVerifier {
    vek: Certificate,
    key: SnpSigningKey,
    facts: VcekFacts,
    /// The chain check (two RSA-4096 and one ECDSA P-384 signature), done once.
    chain: std::sync::OnceLock<Result<ChainFacts>>,
    min_tcb: Option<SnpTcb>,
    crls: Vec<SnpCrl>,
    /// Roots other than AMD's, for tests only (there is no public way to set them).
    test_roots: Option<Vec<ProductLine>>,
}

impl SnpVerifier {
    /// A verifier for reports signed by the VCEK in `der` (DER-encoded X.509, as AMD's KDS
    /// serves it at `/vcek/v1/{product}/{chip id}?…`). It must chain to AMD's ASK.
    pub fn from_vcek_der(der: &[u8]) -> Result<Self> {
        Self::from_der(der, SnpSigningKey::Vcek)
    }

    /// A verifier for reports signed by the VLEK in `der` (DER-encoded X.509, as the cloud
    /// provider or AMD's KDS serves it). It must chain to AMD's ASVK.
    pub fn from_vlek_der(der: &[u8]) -> Result<Self> {
        Self::from_der(der, SnpSigningKey::Vlek)
    }

    fn from_der(der: &[u8], key: SnpSigningKey) -> Result<Self> {
        let vek = Certificate::from_der(der)
            .map_err(|e| TeeError::InvalidCollateral(format!("{}: {e}", key.upper())))?;
        let facts = vcek_facts(der, key.upper())?;
        Ok(Self {
            vek,
            key,
            facts,
            chain: std::sync::OnceLock::new(),
            min_tcb: None,
            crls: Vec::new(),
            test_roots: None,
        })
    }

    /// AMD's product lines, or the test roots.
    fn lines(&self) -> Result<Vec<ProductLine>> {
        match &self.test_roots {
            Some(lines) => Ok(lines.clone()),
            None => product_lines(),
        }
    }

    /// Which kind of key this verifier's certificate is.
    pub fn signing_key(&self) -> SnpSigningKey {
        self.key
    }

    /// Judges the reported TCB against `min`, the oldest TCB still considered current (from
    /// AMD's security bulletins for the product line): `UpToDate` or `OutOfDate` in the
    /// claims instead of `Unknown`.
    #[must_use]
    pub fn with_min_tcb(mut self, min: SnpTcb) -> Self {
        self.min_tcb = Some(min);
        self
    }

    /// Checks revocation against an AMD CRL (DER, as AMD's KDS serves it at
    /// `/vcek/v1/{product}/crl` or `/vlek/v1/{product}/crl`), read offline. The CRL must be
    /// signed by one of AMD's ARKs (refused here otherwise: tampered, forged, or not AMD's).
    /// Call it once per product line the reports may come from; once any CRL is given,
    /// a report is refused unless a CRL from its chain's ARK is current at the verification
    /// time and does not list the chain's ASK/ASVK (see the module documentation).
    pub fn with_crl(mut self, der: &[u8]) -> Result<Self> {
        let arks = self
            .lines()?
            .iter()
            .map(|l| builtin_x509(&l.ark))
            .collect::<Result<Vec<_>>>()?;
        self.crls.push(SnpCrl::from_der(der, &arks)?);
        Ok(self)
    }

    /// The reported TCB of a report, read **without verifying it** (to choose a minimum,
    /// or to inspect).
    pub fn reported_tcb(&self, evidence: &[u8]) -> Result<SnpTcb> {
        Ok(SnpTcb::from_report(&parse_report(evidence)?.reported_tcb))
    }

    /// The AMD chain (ARK → ASK, or ARK → ASVK for a VLEK) that signs this key, if any
    /// built-in product line does.
    fn check_chain(&self) -> Result<ChainFacts> {
        for line in self.lines()? {
            let intermediate = match self.key {
                SnpSigningKey::Vcek => line.ask,
                SnpSigningKey::Vlek => line.asvk,
            };
            let chain = Chain {
                ca: ca::Chain {
                    ark: line.ark,
                    ask: intermediate,
                },
                vek: self.vek.clone(),
            };
            if (&chain).verify().is_ok() {
                let ark = builtin_x509(&chain.ca.ark)?;
                let mid = builtin_x509(&chain.ca.ask)?;
                let window = |c: &x509_cert::Certificate, name| {
                    let (not_before, not_after) = validity(c);
                    Validity {
                        name,
                        not_before,
                        not_after,
                    }
                };
                return Ok(ChainFacts {
                    windows: [window(&ark, "ARK"), window(&mid, self.key.intermediate())],
                    ark_text: printable(&ark.tbs_certificate.subject.to_string()),
                    ark: ark.tbs_certificate.subject,
                    intermediate_serial: mid.tbs_certificate.serial_number.as_bytes().to_vec(),
                });
            }
        }
        Err(TeeError::Rejected(match self.key {
            SnpSigningKey::Vcek => "the VCEK is not signed by AMD's ARK/ASK for Milan, Genoa or \
                                    Turin (a VLEK must be given as a VLEK)"
                .into(),
            SnpSigningKey::Vlek => "the VLEK is not signed by AMD's ARK/ASVK for Milan, Genoa \
                                    or Turin"
                .into(),
        }))
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
    /// The report's TCB and chip id against the VCEK's (or VLEK's) extensions.
    fn check_against_vcek(&self, tcb: &SnpTcb, chip_id: &[u8]) -> Result<()> {
        let key = self.key.upper();
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
                        "the report's reported TCB {name} = {} does not match the {key}'s {} \
                         (the {key} was issued for another TCB)",
                        r.map_or("absent".into(), |v| v.to_string()),
                        c.map_or("absent".into(), |v| v.to_string()),
                    )))
                }
            }
        }
        // A VLEK is the cloud provider's key, loaded into many chips: there is no chip to match.
        if self.key == SnpSigningKey::Vlek {
            return Ok(());
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
        let chain = self.chain.get_or_init(|| self.check_chain()).clone()?;
        let signed_by = match report.key_info.signing_key() {
            0 => SnpSigningKey::Vcek,
            1 => SnpSigningKey::Vlek,
            other => {
                return Err(TeeError::Rejected(format!(
                    "the SNP report names signing key {other} (neither VCEK nor VLEK): it is \
                     unsigned"
                )))
            }
        };
        if signed_by != self.key {
            return Err(TeeError::Rejected(format!(
                "the SNP report says it is signed by a {}, but the certificate given is a {}",
                signed_by.upper(),
                self.key.upper()
            )));
        }
        for w in &chain.windows {
            w.check(now)?;
        }
        Validity {
            name: self.key.upper(),
            not_before: self.facts.not_before,
            not_after: self.facts.not_after,
        }
        .check(now)?;
        check_revocation(&chain, self.key.intermediate(), &self.crls, now)?;
        (&self.vek, &report).verify().map_err(|e| {
            TeeError::Rejected(format!(
                "SNP report signature does not verify with the {}: {e}",
                self.key.upper()
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
            signing_key: Some(self.key.name().to_string()),
        })
    }
}

#[cfg(test)]
#[path = "snp_tests.rs"]
mod tests;
