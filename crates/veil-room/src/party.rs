//! A party's side, without the network: check the room's evidence against the manifest,
//! prepare uploads, encode inputs, decode outputs, verify the audit log.

use ed25519_dalek::VerifyingKey;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use veil_attest::audit::{verify_entries, AuditEntry};
use veil_attest::binding::check_binding;
use veil_attest::claims::VerifiedClaims;
use veil_attest::error::{Result, TeeError};
use veil_attest::util::{decode_b64, encode_b64};

use crate::manifest::*;
use crate::protocol::*;

/// What a party established about the room.
#[derive(Debug)]
pub struct VerifiedRoom {
    /// The room id.
    pub room_id: [u8; 32],
    /// The attested workload key (X25519) uploads are sealed to.
    pub workload_key: Vec<u8>,
    /// The attested audit key.
    pub audit_key: VerifyingKey,
    /// The verified claims.
    pub claims: VerifiedClaims,
}

/// Checks a room's evidence against a party's manifest: trusted platform, the manifest's
/// measurement, the policy, and the binding of `nonce`, the workload key, the room id and the
/// audit key. Anything else is refused.
pub fn verify_room_evidence(
    manifest: &Manifest,
    room_id: &[u8; 32],
    nonce: &[u8],
    evidence: &RoomEvidence,
    now: u64,
) -> Result<VerifiedRoom> {
    let raw = decode_b64("evidence", &evidence.evidence)?;
    let workload_key = decode_b64("workload_key", &evidence.workload_key)?;
    let audit_key: [u8; 32] = decode_b64("audit_key", &evidence.audit_key)?
        .try_into()
        .map_err(|_| bad("audit_key must be 32 bytes"))?;
    let claims = manifest.verifiers()?.verify(&raw, now)?;
    let measured = claims
        .measurements
        .get("measurement")
        .map_or("(none)", String::as_str);
    if measured != manifest.code.measurement {
        return Err(refused(format!(
            "the room runs code measured {measured}, but your manifest names {}: no data path",
            manifest.code.measurement
        )));
    }
    check_binding(
        &claims,
        nonce,
        &workload_key,
        &runtime_data(room_id, &audit_key),
    )?;
    let input =
        serde_json::to_value(&claims).map_err(|_| TeeError::Internal("claims are not JSON"))?;
    manifest.attestation_policy()?.evaluate(&input)?;
    Ok(VerifiedRoom {
        room_id: *room_id,
        workload_key,
        audit_key: VerifyingKey::from_bytes(&audit_key)
            .map_err(|_| refused("the audit key is not an Ed25519 key"))?,
        claims,
    })
}

/// Encodes a party's CSV table as the workload's input. `column` picks the column of a
/// [`InputFormat::F64Column`] table (by header name); without it the table must have one
/// column.
pub fn encode_csv(format: InputFormat, text: &str, column: Option<&str>) -> Result<Vec<u8>> {
    if format == InputFormat::Raw {
        return Ok(text.as_bytes().to_vec());
    }
    let mut lines = text
        .lines()
        .map(str::trim)
        .enumerate()
        .filter(|(_, l)| !l.is_empty());
    let Some((_, first)) = lines.next() else {
        return Err(bad("the CSV has no rows"));
    };
    let cells = |l: &str| {
        l.split(',')
            .map(str::trim)
            .map(String::from)
            .collect::<Vec<_>>()
    };
    let first_cells = cells(first);
    let is_header = first_cells.iter().any(|c| c.parse::<f64>().is_err());
    let width = first_cells.len();
    let pick = match (format, column) {
        (InputFormat::F64Column, Some(name)) => {
            if !is_header {
                return Err(bad(format!("--column {name}: the CSV has no header row")));
            }
            Some(
                first_cells
                    .iter()
                    .position(|c| c == name)
                    .ok_or_else(|| bad(format!("the CSV has no column {name:?}")))?,
            )
        }
        (InputFormat::F64Column, None) if width == 1 => Some(0),
        (InputFormat::F64Column, None) => {
            return Err(bad(format!(
                "the CSV has {width} columns: name the one to upload (--column)"
            )))
        }
        _ => None,
    };
    if format == InputFormat::F64LabelledRows && width < 2 {
        return Err(bad("labelled rows need at least one feature and a label"));
    }
    let mut out = Vec::new();
    if format == InputFormat::F64LabelledRows {
        out.extend_from_slice(&((width - 1) as f64).to_le_bytes());
    }
    let rows = std::iter::once((0, first))
        .filter(|_| !is_header)
        .chain(lines);
    for (i, line) in rows {
        let row = cells(line);
        if row.len() != width {
            return Err(bad(format!(
                "line {}: {} cells where {width} were expected",
                i + 1,
                row.len()
            )));
        }
        let parse = |c: &str| {
            c.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| bad(format!("line {}: {c:?} is not a finite number", i + 1)))
        };
        match pick {
            Some(j) => out.extend_from_slice(&parse(&row[j])?.to_le_bytes()),
            None => {
                for c in &row {
                    out.extend_from_slice(&parse(c)?.to_le_bytes());
                }
            }
        }
    }
    Ok(out)
}

/// The output as labelled f64 values (`value[i]` where the manifest names none), or `None`
/// when it is not a whole number of f64s.
pub fn decode_output(manifest: &Manifest, output: &[u8]) -> Option<Vec<(String, f64)>> {
    if output.is_empty() || !output.len().is_multiple_of(8) {
        return None;
    }
    Some(
        output
            .chunks_exact(8)
            .enumerate()
            .map(|(i, c)| {
                let mut b = [0u8; 8];
                b.copy_from_slice(c);
                let label = manifest
                    .code
                    .output_labels
                    .get(i)
                    .cloned()
                    .unwrap_or_else(|| format!("value[{i}]"));
                (label, f64::from_le_bytes(b))
            })
            .collect(),
    )
}

/// Verifies a room's audit log text: chain, signatures by `audit_key`, and that it ends at the
/// head the room signed (`entries`, `last_hash`) — nothing dropped from the end.
pub fn check_audit_text(
    log: &str,
    audit_key: &VerifyingKey,
    entries: u64,
    last_hash: &str,
) -> Result<Vec<AuditEntry>> {
    let list = verify_entries(log, Some(audit_key))?;
    if list.len() as u64 != entries || veil_attest::audit::last_hash(log) != last_hash {
        return Err(TeeError::Audit(format!(
            "the log has {} entries but the room signed a head of {entries}: truncated or \
             replaced",
            list.len()
        )));
    }
    Ok(list)
}

/// The body of an upload of `data` by `party` to a verified room: the data sealed to the
/// attested workload key (envelope: HPKE-wrapped AES-256-GCM key), and a header signed by
/// the party that names the room, the label and the data's SHA-256.
pub fn prepare_upload(
    room: &VerifiedRoom,
    party: &PartyKey,
    label: &str,
    data: &[u8],
) -> Result<(UploadHeader, Vec<u8>)> {
    // A random salt travels inside the ciphertext: the signed hash commits to salt ‖ data,
    // so whoever sees headers, receipts or the audit log cannot confirm a guess of
    // low-entropy data by hashing it.
    let mut salted = Zeroizing::new(Vec::with_capacity(SALT_LEN + data.len()));
    salted.resize(SALT_LEN, 0);
    rand_core::TryRngCore::try_fill_bytes(&mut rand_core::OsRng, &mut salted[..])
        .map_err(|_| TeeError::Crypto("no system randomness"))?;
    salted.extend_from_slice(data);
    let sealed = crate::workload::seal_upload(
        &room.workload_key,
        &upload_label(&room.room_id, party.name(), label),
        &salted,
    )?;
    let mut header = UploadHeader {
        room_id: hex::encode(room.room_id),
        party: party.name().into(),
        label: label.into(),
        data_sha256: hex::encode(Sha256::digest(salted.as_slice())),
        wrapped_key: sealed.wrapped_key,
        nonce: hex::encode(sealed.nonce),
        ciphertext_sha256: hex::encode(Sha256::digest(&sealed.ciphertext)),
        signature: String::new(),
    };
    header.signature = party.sign(&header.message());
    let body = upload_body(&header, &sealed.ciphertext)?;
    Ok((header, body))
}

/// A fresh 32-byte nonce for the room's evidence or its audit log, and the request carrying it.
pub fn nonce_request() -> Result<([u8; 32], NonceRequest)> {
    let nonce = random::<32>()?;
    let req = NonceRequest {
        nonce: encode_b64(&nonce),
    };
    Ok((nonce, req))
}

/// Checks that the room at `url` serves the room `room_id` (the party's manifest) names.
pub fn check_room_info(url: &str, room_id: &[u8; 32], info: &RoomInfo) -> Result<()> {
    if info.room_id != hex::encode(room_id) {
        return Err(refused(format!(
            "the room at {url} serves room {}, but your manifest is room {}: no data path",
            short(&info.room_id),
            short(&hex::encode(room_id))
        )));
    }
    Ok(())
}

/// Checks, before anything is sent, that `party`'s key is its key in the manifest and that
/// `data` is within [`MAX_UPLOAD`].
pub fn check_upload(manifest: &Manifest, party: &PartyKey, data: &[u8]) -> Result<()> {
    if party.public() != *manifest.party(party.name())? {
        return Err(refused(format!(
            "this key is not {}'s key in the manifest",
            party.name()
        )));
    }
    if data.len() > MAX_UPLOAD {
        return Err(bad(format!("uploads are limited to {MAX_UPLOAD} bytes")));
    }
    Ok(())
}

/// Checks the room's receipt for an upload: signed by the attested audit key, for this data
/// and this party.
pub fn check_receipt(room: &VerifiedRoom, header: &UploadHeader, receipt: &Receipt) -> Result<()> {
    check_sig(
        &room.audit_key,
        &receipt.message(),
        &receipt.signature,
        "the room's receipt",
    )?;
    if receipt.data_sha256 != header.data_sha256 || receipt.party != header.party {
        return Err(refused("the receipt is for other data"));
    }
    Ok(())
}

/// Checks the output the room released for `req` (signed by the attested audit key, labelled
/// for this room and party) and opens it with `party`'s key.
pub fn open_output(
    room: &VerifiedRoom,
    party: &PartyKey,
    req: &SignedRequest,
    resp: &OutputResponse,
) -> Result<Zeroizing<Vec<u8>>> {
    check_sig(
        &room.audit_key,
        &output_message(&req.room_id, party.name(), &resp.sealed),
        &resp.signature,
        "the room's output",
    )?;
    if resp.sealed.name != output_label(&room.room_id, party.name()) {
        return Err(refused("the output is labelled for another room or party"));
    }
    party.open(&resp.sealed)
}

/// Checks the room's audit report answering `nonce`: the head signed by the attested audit
/// key, then the chain, every entry's signature and the head (no truncation).
pub fn check_audit_report(
    room: &VerifiedRoom,
    nonce: &[u8],
    report: &AuditReport,
) -> Result<Vec<AuditEntry>> {
    check_sig(
        &room.audit_key,
        &audit_head_message(nonce, report.entries, &report.last_hash),
        &report.signature,
        "the audit log's head",
    )?;
    check_audit_text(
        &report.log,
        &room.audit_key,
        report.entries,
        &report.last_hash,
    )
}
