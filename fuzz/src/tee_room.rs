//! Feeds hostile input to everything a data room parses: upload bodies (raw, and a genuine
//! upload with one byte changed — which must never be accepted), signed run/output requests,
//! manifests, party key files, CSV tables, audit logs and room evidence checked by a party.

use std::sync::OnceLock;

use veil_attest::evidence::sim::SimulatedPlatform;
use veil_room::workload::LaunchConfig;
use veil_room::{
    builtin, encode_csv, verify_room_evidence, InputFormat, Manifest, NonceRequest, PartyKey,
    RoomEvidence, RoomServer, RoomSpec, SignedRequest,
};

struct Fixture {
    room: RoomServer,
    manifest: Manifest,
    upload: Vec<u8>,
    evidence: RoomEvidence,
    nonce: [u8; 32],
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let stats = builtin("stats").expect("stats");
        let platform = SimulatedPlatform::from_seed(&[5; 32]);
        let keys: Vec<PartyKey> = ["a", "b"]
            .iter()
            .map(|n| PartyKey::generate(n).expect("key"))
            .collect();
        let text = Manifest::create(
            stats.wat.as_bytes(),
            RoomSpec {
                name: "fuzz".into(),
                file: "builtin:stats".into(),
                input: stats.input,
                output_labels: Vec::new(),
                launch: LaunchConfig::default(),
                parties: keys.iter().map(PartyKey::public).collect(),
                output_to: vec!["a".into()],
                sim_platform_keys: vec![hex::encode(platform.public_key())],
                min_security_version: None,
            },
            0,
        )
        .and_then(|m| m.to_toml())
        .expect("manifest");
        let manifest = Manifest::parse(&text).expect("parse");
        let room =
            RoomServer::launch(&text, stats.wat.as_bytes(), platform, 1, None).expect("room");
        let nonce = [9u8; 32];
        let evidence = room
            .attest(&NonceRequest {
                nonce: veil_attest::util::encode_b64(&nonce),
            })
            .expect("evidence");
        let verified =
            verify_room_evidence(&manifest, &room.room_id(), &nonce, &evidence, 0).expect("verify");
        let (_, upload) =
            veil_room::prepare_upload(&verified, &keys[0], "a.csv", &1.0f64.to_le_bytes())
                .expect("upload");
        Fixture {
            room,
            manifest,
            upload,
            evidence,
            nonce,
        }
    })
}

/// One fuzz input: must never panic.
pub fn run(data: &[u8]) {
    let f = fixture();
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    match mode % 8 {
        0 => {
            // One changed byte of a genuine upload: always refused.
            if rest.len() >= 5 {
                let pos = usize::from(u16::from_le_bytes([rest[0], rest[1]])) % f.upload.len();
                let mut body = f.upload.clone();
                body[pos] ^= rest[2] | 1;
                assert!(
                    f.room.upload(&body).is_err(),
                    "a modified upload was accepted"
                );
            }
        }
        1 => {
            let _ = f.room.upload(rest);
        }
        2 => {
            if let Ok(req) = serde_json::from_slice::<SignedRequest>(rest) {
                let _ = f.room.run(&req);
                let _ = f.room.output(&req);
            }
        }
        3 => {
            let _ = Manifest::parse(&text);
        }
        4 => {
            let _ = PartyKey::from_text(&text);
        }
        5 => {
            for format in [InputFormat::F64Column, InputFormat::F64LabelledRows] {
                let _ = encode_csv(format, &text, None);
                let _ = encode_csv(format, &text, Some("x"));
            }
        }
        6 => {
            let key = ed25519_dalek::SigningKey::from_bytes(&[1; 32]).verifying_key();
            let _ = veil_room::check_audit_text(&text, &key, 3, "00");
        }
        _ => {
            let mut ev = f.evidence.clone();
            match rest.first().map(|b| b % 3) {
                Some(0) => ev.evidence = text.into_owned(),
                Some(1) => ev.workload_key = text.into_owned(),
                _ => ev.audit_key = text.into_owned(),
            }
            let _ = verify_room_evidence(&f.manifest, &f.room.room_id(), &f.nonce, &ev, 0);
        }
    }
}
