//! Intel SGX (quote v3) and TDX (quote v4/v5) verification with `dcap-qvl`, offline, against
//! stored collateral (PCK certificate chain, CRLs, TCB info, QE identity) at a given time.
//!
//! `dcap-qvl` checks the quote's signature by the attestation key, the QE report and its
//! binding of that key, the PCK certificate chain up to Intel's root with revocation, and the
//! platform's TCB level against the signed TCB info. A quote whose platform matches no TCB
//! level, whose collateral has expired or whose signature does not verify is rejected.
//!
//! **Canonical encoding.** Before anything is verified, the quote is walked by its own size
//! fields ([`quote_len`]): header, body (by version and body type), authentication data, and
//! inside it the certification data, each of which must hold exactly its parts. Bytes after
//! the declared end may only be zeros (quote buffers handed out by TDX stacks are
//! zero-padded: the recorded `tdx_quote` carries 70 such bytes) and are not part of what is
//! verified; any other trailing byte, or slack inside a size field, is refused. Without this,
//! one verified quote had many encodings, and a second parser could read the extra bytes as
//! something the verifier never checked.

use std::collections::BTreeMap;

use dcap_qvl::QuoteCollateralV3;

use crate::claims::{TeeKind, VerifiedClaims};
use crate::error::{Result, TeeError};
use crate::evidence::{detect, EvidenceKind, Verifier};

/// Largest quote accepted (real quotes are a few kilobytes).
const MAX_QUOTE_LEN: usize = 64 * 1024;

/// A verifier for SGX and TDX quotes with fixed collateral.
#[derive(Clone, Debug)]
pub struct DcapVerifier {
    collateral: QuoteCollateralV3,
}

impl DcapVerifier {
    /// Reads collateral in the JSON form `dcap-qvl` and Intel's PCCS tooling use.
    pub fn from_collateral_json(json: &str) -> Result<Self> {
        let collateral: QuoteCollateralV3 =
            serde_json::from_str(json).map_err(|e| TeeError::InvalidCollateral(e.to_string()))?;
        Ok(Self { collateral })
    }

    /// A verifier over collateral fetched or built in code (e.g. by
    /// [`crate::pccs::PccsClient::fetch`]).
    pub fn from_collateral(collateral: QuoteCollateralV3) -> Self {
        Self { collateral }
    }

    /// The collateral as JSON, in the form [`DcapVerifier::from_collateral_json`] reads (to
    /// save fetched collateral for offline use).
    pub fn collateral_json(&self) -> Result<String> {
        serde_json::to_string_pretty(&self.collateral)
            .map_err(|e| TeeError::InvalidCollateral(e.to_string()))
    }
}

fn hex48(v: &[u8; 48]) -> String {
    hex::encode(v)
}

/// Parses a quote **without verifying anything** and returns its header and body fields as
/// hex strings, named as Intel's documentation and Confidential Containers' Trustee name them
/// (`mr_td`, `rtmr_0`, `tcb_svn`, `td_attributes`, `report_data`, …; `mr_enclave`,
/// `mr_signer`, … for SGX).
///
/// For inspection and debugging only: nothing here is trustworthy until [`DcapVerifier`]
/// accepted the quote.
pub fn inspect_unverified(quote: &[u8]) -> Result<BTreeMap<String, String>> {
    if quote.len() > MAX_QUOTE_LEN {
        return Err(TeeError::UnknownEvidence(format!(
            "quote of {} bytes exceeds {MAX_QUOTE_LEN}",
            quote.len()
        )));
    }
    let parsed = std::panic::catch_unwind(|| dcap_qvl::quote::Quote::parse(quote))
        .map_err(|_| TeeError::UnknownEvidence("malformed quote (the parser gave up)".into()))?
        .map_err(|e| TeeError::UnknownEvidence(format!("malformed quote: {e:#}")))?;
    let h = &parsed.header;
    let mut f = BTreeMap::new();
    let mut put = |k: &str, v: String| {
        f.insert(k.to_string(), v);
    };
    put("version", hex::encode(h.version.to_le_bytes()));
    put(
        "att_key_type",
        hex::encode(h.attestation_key_type.to_le_bytes()),
    );
    put("tee_type", hex::encode(h.tee_type.to_le_bytes()));
    // Bytes 8..12: QE SVN and PCE SVN for SGX, reserved for TDX.
    let mut svns = h.qe_svn.to_le_bytes().to_vec();
    svns.extend_from_slice(&h.pce_svn.to_le_bytes());
    put(
        if h.tee_type == 0x81 {
            "reserved"
        } else {
            "qe_pce_svn"
        },
        hex::encode(svns),
    );
    put("vendor_id", hex::encode(h.qe_vendor_id));
    put("user_data", hex::encode(h.user_data));
    if let Some(td) = parsed.report.as_td10() {
        put("tcb_svn", hex::encode(td.tee_tcb_svn));
        put("mr_seam", hex48(&td.mr_seam));
        put("mrsigner_seam", hex48(&td.mr_signer_seam));
        put("seam_attributes", hex::encode(td.seam_attributes));
        put("td_attributes", hex::encode(td.td_attributes));
        put("xfam", hex::encode(td.xfam));
        put("mr_td", hex48(&td.mr_td));
        put("mr_config_id", hex48(&td.mr_config_id));
        put("mr_owner", hex48(&td.mr_owner));
        put("mr_owner_config", hex48(&td.mr_owner_config));
        put("rtmr_0", hex48(&td.rt_mr0));
        put("rtmr_1", hex48(&td.rt_mr1));
        put("rtmr_2", hex48(&td.rt_mr2));
        put("rtmr_3", hex48(&td.rt_mr3));
        put("report_data", hex::encode(td.report_data));
    } else if let Some(sgx) = parsed.report.as_sgx() {
        put("cpu_svn", hex::encode(sgx.cpu_svn));
        put("attributes", hex::encode(sgx.attributes));
        put("mr_enclave", hex::encode(sgx.mr_enclave));
        put("mr_signer", hex::encode(sgx.mr_signer));
        put("isv_prod_id", hex::encode(sgx.isv_prod_id.to_le_bytes()));
        put("isv_svn", hex::encode(sgx.isv_svn.to_le_bytes()));
        put("report_data", hex::encode(sgx.report_data));
    }
    Ok(f)
}

/// The `n` bytes at `pos`, advancing it; an error naming `what` if they run past the end.
fn take<'a>(bytes: &'a [u8], pos: &mut usize, n: usize, what: &str) -> Result<&'a [u8]> {
    let end = pos
        .checked_add(n)
        .filter(|&e| e <= bytes.len())
        .ok_or_else(|| {
            TeeError::Rejected(format!(
                "malformed quote: {what} ({n} bytes at offset {pos}) runs past the end"
            ))
        })?;
    let slice = &bytes[*pos..end];
    *pos = end;
    Ok(slice)
}

fn take_u16(bytes: &[u8], pos: &mut usize, what: &str) -> Result<usize> {
    let b = take(bytes, pos, 2, what)?;
    Ok(usize::from(u16::from_le_bytes([b[0], b[1]])))
}

fn take_u32(bytes: &[u8], pos: &mut usize, what: &str) -> Result<usize> {
    let b = take(bytes, pos, 4, what)?;
    usize::try_from(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .map_err(|_| TeeError::Rejected(format!("malformed quote: {what} too large")))
}

fn exactly_consumed(bytes: &[u8], pos: usize, what: &str) -> Result<()> {
    if pos == bytes.len() {
        Ok(())
    } else {
        Err(TeeError::Rejected(format!(
            "malformed quote: {what} declares {} bytes but its parts hold {pos}",
            bytes.len()
        )))
    }
}

/// Certification data: type (u16), size (u32), data. Type 6 (QE report certification data)
/// nests a QE report, its signature, the QE authentication data and certification data of
/// its own, which must fill it exactly.
fn walk_certification_data(bytes: &[u8], pos: &mut usize, depth: u8) -> Result<()> {
    let kind = take_u16(bytes, pos, "certification data type")?;
    let size = take_u32(bytes, pos, "certification data size")?;
    let data = take(bytes, pos, size, "certification data")?;
    if kind == 6 && depth == 0 {
        let mut inner = 0;
        take(data, &mut inner, 384 + 64, "QE report and its signature")?;
        let auth = take_u16(data, &mut inner, "QE authentication data size")?;
        take(data, &mut inner, auth, "QE authentication data")?;
        walk_certification_data(data, &mut inner, depth + 1)?;
        exactly_consumed(data, inner, "the QE report certification data")?;
    }
    Ok(())
}

/// The length of the quote at the start of `bytes`, as its own size fields declare it: the
/// header, the body, and the authentication data, whose nested parts must fill their
/// declared sizes exactly. An error if a part runs past the end or leaves slack.
pub fn quote_len(bytes: &[u8]) -> Result<usize> {
    let mut pos = 0;
    let header = take(bytes, &mut pos, 48, "header")?;
    let version = u16::from_le_bytes([header[0], header[1]]);
    let tee_type = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    let body = match (version, tee_type) {
        (3, 0) | (4, 0) => 384,
        (4, 0x81) => 584,
        (5, _) => {
            let kind = take_u16(bytes, &mut pos, "body type")?;
            let size = take_u32(bytes, &mut pos, "body size")?;
            let expected = match kind {
                1 => 384,
                2 => 584,
                3 => 648,
                other => {
                    return Err(TeeError::Rejected(format!(
                        "malformed quote: unknown body type {other}"
                    )))
                }
            };
            if size != expected {
                return Err(TeeError::Rejected(format!(
                    "malformed quote: body type {kind} is {expected} bytes, not {size}"
                )));
            }
            size
        }
        _ => {
            return Err(TeeError::Rejected(format!(
                "malformed quote: version {version} with TEE type {tee_type:#x}"
            )))
        }
    };
    take(bytes, &mut pos, body, "report body")?;
    let auth_size = take_u32(bytes, &mut pos, "authentication data size")?;
    let auth = take(bytes, &mut pos, auth_size, "authentication data")?;
    let mut inner = 0;
    take(
        auth,
        &mut inner,
        64 + 64,
        "quote signature and attestation key",
    )?;
    if version == 3 {
        take(auth, &mut inner, 384 + 64, "QE report and its signature")?;
        let qe_auth = take_u16(auth, &mut inner, "QE authentication data size")?;
        take(auth, &mut inner, qe_auth, "QE authentication data")?;
        walk_certification_data(auth, &mut inner, 1)?;
    } else {
        walk_certification_data(auth, &mut inner, 0)?;
    }
    exactly_consumed(auth, inner, "the authentication data")?;
    Ok(pos)
}

/// The quote without its zero padding; an error if anything but zeros follows its end.
fn canonical_quote(bytes: &[u8]) -> Result<&[u8]> {
    let end = quote_len(bytes)?;
    let (quote, rest) = bytes.split_at(end);
    if rest.iter().any(|&b| b != 0) {
        return Err(TeeError::Rejected(format!(
            "{} bytes after the end of the quote (its size fields declare {end} bytes; only \
             zero padding may follow)",
            rest.len()
        )));
    }
    Ok(quote)
}

/// `dcap-qvl` reports certificate-path errors in their Rust debug form (`CrlExpired { time:
/// UnixTime(1798761600), next_update: UnixTime(…) }`): say them as sentences, with dates.
pub fn human_reason(msg: &str) -> String {
    use crate::evidence::format_time;
    // (variant, its second time field, sentence with {at} and {limit}).
    const TIMED: [(&str, &str, &str); 3] = [
        (
            "CrlExpired",
            "next_update",
            "a certificate revocation list (CRL) in the collateral expired at {limit}, before \
             the verification time {at}: fetch fresh collateral",
        ),
        (
            "CertExpired",
            "not_after",
            "a certificate expired at {limit}, before the verification time {at}",
        ),
        (
            "CertNotValidYet",
            "not_before",
            "a certificate is valid only from {limit}, after the verification time {at}",
        ),
    ];
    const PLAIN: [(&str, &str); 10] = [
        ("CertRevoked", "a certificate is revoked"),
        (
            "UnknownRevocationStatus",
            "a certificate's revocation status is unknown (no CRL covers it)",
        ),
        ("UnknownIssuer", "a certificate's issuer is not trusted"),
        (
            "InvalidCrlSignatureForPublicKey",
            "a revocation list's signature does not verify",
        ),
        (
            "InvalidSignatureForPublicKey",
            "a signature does not verify with its certificate's key",
        ),
        ("IssuerNotCrlSigner", "a CRL's issuer may not sign CRLs"),
        (
            "InvalidCertValidity",
            "a certificate's validity period is malformed",
        ),
        ("BadDerTime", "a certificate holds a malformed time"),
        ("BadDer", "malformed DER in a certificate or CRL"),
        (
            "UnsupportedSignatureAlgorithm",
            "a signature algorithm is not supported",
        ),
    ];
    let number_after = |text: &str, prefix: &str| -> Option<(u64, usize)> {
        let rest = text.strip_prefix(prefix)?;
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let n = rest.get(..digits)?.parse().ok()?;
        rest.get(digits..)?.strip_prefix(')')?;
        Some((n, prefix.len() + digits + 1))
    };
    let mut out = msg.to_string();
    for (name, field, sentence) in TIMED {
        while let Some(start) = out.find(&format!("{name} {{ time: UnixTime(")) {
            let head = format!("{name} {{ time: ");
            let after_head = start + head.len();
            let Some((at, used)) = number_after(&out[after_head..], "UnixTime(") else {
                break;
            };
            let second = after_head + used;
            let Some((limit, used2)) =
                number_after(&out[second..], &format!(", {field}: UnixTime("))
            else {
                break;
            };
            let Some(end) = out[second + used2..]
                .strip_prefix(" }")
                .map(|_| second + used2 + 2)
            else {
                break;
            };
            let text = sentence
                .replace("{at}", &format_time(at))
                .replace("{limit}", &format_time(limit));
            out.replace_range(start..end, &text);
        }
    }
    for (name, sentence) in PLAIN {
        out = replace_word(&out, name, sentence);
    }
    // Any other time left in debug form.
    while let Some(start) = out.find("UnixTime(") {
        let Some((t, used)) = number_after(&out[start..], "UnixTime(") else {
            break;
        };
        out.replace_range(start..start + used, &format_time(t));
    }
    out
}

/// Replaces `word` where it stands alone (not inside a longer identifier).
fn replace_word(text: &str, word: &str, with: &str) -> String {
    let ident = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(word) {
        let before = rest[..i].chars().next_back();
        let after = rest[i + word.len()..].chars().next();
        out.push_str(&rest[..i]);
        if ident(before) || ident(after) {
            out.push_str(word);
        } else {
            out.push_str(with);
        }
        rest = &rest[i + word.len()..];
    }
    out.push_str(rest);
    out
}

impl Verifier for DcapVerifier {
    fn verify(&self, quote: &[u8], now: u64) -> Result<VerifiedClaims> {
        if quote.len() > MAX_QUOTE_LEN {
            return Err(TeeError::Rejected(format!(
                "quote of {} bytes exceeds {MAX_QUOTE_LEN}",
                quote.len()
            )));
        }
        let kind = detect(quote)?;
        if kind == EvidenceKind::Simulated {
            return Err(TeeError::UnknownEvidence(
                "simulated evidence given to the DCAP verifier".into(),
            ));
        }
        let quote = canonical_quote(quote)?;
        // dcap-qvl parses untrusted input; contain any panic in it as a rejection.
        let result =
            std::panic::catch_unwind(|| dcap_qvl::verify::verify(quote, &self.collateral, now))
                .map_err(|_| TeeError::Rejected("malformed quote (the parser gave up)".into()))?;
        let report = result.map_err(|e| TeeError::Rejected(human_reason(&format!("{e:#}"))))?;
        let mut measurements = BTreeMap::new();
        let claims = if let Some(sgx) = report.report.as_sgx() {
            measurements.insert("mr_enclave".to_string(), hex::encode(sgx.mr_enclave));
            measurements.insert("mr_signer".to_string(), hex::encode(sgx.mr_signer));
            VerifiedClaims {
                tee: TeeKind::Sgx,
                measurements,
                signer: Some(hex::encode(sgx.mr_signer)),
                product_id: Some(sgx.isv_prod_id),
                security_version: Some(sgx.isv_svn),
                // ATTRIBUTES.DEBUG is bit 1 of the first byte.
                debug: sgx.attributes[0] & 0x02 != 0,
                tcb_status: report.status.clone(),
                advisory_ids: report.advisory_ids.clone(),
                report_data: hex::encode(sgx.report_data),
                vmpl: None,
                tcb: BTreeMap::new(),
                signing_key: None,
            }
        } else if let Some(td) = report.report.as_td10() {
            measurements.insert("mr_td".to_string(), hex48(&td.mr_td));
            measurements.insert("rtmr0".to_string(), hex48(&td.rt_mr0));
            measurements.insert("rtmr1".to_string(), hex48(&td.rt_mr1));
            measurements.insert("rtmr2".to_string(), hex48(&td.rt_mr2));
            measurements.insert("rtmr3".to_string(), hex48(&td.rt_mr3));
            measurements.insert("mr_seam".to_string(), hex48(&td.mr_seam));
            measurements.insert("mr_config_id".to_string(), hex48(&td.mr_config_id));
            VerifiedClaims {
                tee: TeeKind::Tdx,
                measurements,
                signer: Some(hex48(&td.mr_signer_seam)),
                product_id: None,
                security_version: None,
                // TDATTRIBUTES.DEBUG is bit 0.
                debug: td.td_attributes[0] & 0x01 != 0,
                tcb_status: report.status.clone(),
                advisory_ids: report.advisory_ids.clone(),
                report_data: hex::encode(td.report_data),
                vmpl: None,
                tcb: BTreeMap::new(),
                signing_key: None,
            }
        } else {
            return Err(TeeError::Internal("verified report is neither SGX nor TDX"));
        };
        if kind == EvidenceKind::SgxQuote && claims.tee != TeeKind::Sgx {
            return Err(TeeError::Rejected(
                "quote header says SGX but the body is a TD report".into(),
            ));
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webpki_debug_forms_become_sentences() {
        let msg = "Failed to verify PCK chain: CrlExpired { time: UnixTime(1798761600), \
                   next_update: UnixTime(1751328000) }";
        let h = human_reason(msg);
        assert!(!h.contains("UnixTime") && !h.contains(" { "), "{h}");
        assert!(
            h.contains("2027-01-01T00:00:00Z") && h.contains("2025-07-01T00:00:00Z"),
            "{h}"
        );
        assert_eq!(
            human_reason("x: CertRevoked"),
            "x: a certificate is revoked"
        );
        assert_eq!(
            human_reason("BadDerTime"),
            "a certificate holds a malformed time"
        );
        assert_eq!(human_reason("NotCertRevokedHere"), "NotCertRevokedHere");
        assert_eq!(human_reason("at UnixTime(0)"), "at 1970-01-01T00:00:00Z");
    }
}
