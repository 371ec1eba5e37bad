//! Data rooms end to end over HTTP on loopback: three parties verify the room, upload signed
//! and encrypted data, one asks for the run, the named recipients read the output; every way
//! of getting it wrong is refused, and the signed audit log detects tampering.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

use std::sync::Arc;

use veil_attest::evidence::sim::SimulatedPlatform;
use veil_attest::TeeError;
use veil_room::workload::LaunchConfig;
use veil_room::{
    builtin, check_audit_text, decode_output, encode_csv, Manifest, PartyKey, RoomServer, RoomSpec,
};
use veil_server::room::RoomClient;

const SEED: [u8; 32] = [7; 32];

fn parties() -> Vec<PartyKey> {
    ["hospital-a", "hospital-b", "hospital-c"]
        .iter()
        .map(|n| PartyKey::generate(n).unwrap())
        .collect()
}

fn spec(parties: &[PartyKey], code: &str, launch: LaunchConfig) -> RoomSpec {
    let b = builtin(code).unwrap();
    RoomSpec {
        name: "joint study".into(),
        file: format!("builtin:{code}"),
        input: b.input,
        output_labels: b.output_labels.iter().map(|s| (*s).to_string()).collect(),
        launch,
        parties: parties.iter().map(PartyKey::public).collect(),
        output_to: vec!["hospital-a".into(), "hospital-b".into()],
        sim_platform_keys: vec![hex::encode(
            SimulatedPlatform::from_seed(&SEED).public_key(),
        )],
        min_security_version: Some(1),
    }
}

fn manifest_text(parties: &[PartyKey], code: &str, launch: LaunchConfig) -> String {
    let wat = builtin(code).unwrap().wat;
    Manifest::create(wat.as_bytes(), spec(parties, code, launch), 1_800_000_000)
        .unwrap()
        .to_toml()
        .unwrap()
}

struct Room {
    url: String,
    server: Arc<RoomServer>,
}

async fn serve(manifest: &str, code: &str, audit: Option<&std::path::Path>) -> Room {
    let server = Arc::new(
        RoomServer::launch(
            manifest,
            builtin(code).unwrap().wat.as_bytes(),
            SimulatedPlatform::from_seed(&SEED),
            1,
            audit,
        )
        .unwrap(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(veil_server::room::serve(
        listener,
        server.clone(),
        std::future::pending(),
    ));
    Room { url, server }
}

fn csv(values: &[f64]) -> String {
    let mut s = "glucose\n".to_string();
    for v in values {
        s.push_str(&format!("{v}\n"));
    }
    s
}

fn refused_status(e: &TeeError) -> u16 {
    match e {
        TeeError::Refused { status, .. } => *status,
        other => panic!("expected an HTTP refusal, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_parties_compute_joint_statistics() {
    let dir = std::env::temp_dir().join(format!("veil-room-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let audit_path = dir.join("audit.jsonl");
    let keys = parties();
    let text = manifest_text(&keys, "stats", LaunchConfig::default());
    let room = serve(&text, "stats", Some(&audit_path)).await;
    // A room's log starts at its launch: an existing file is not continued.
    assert!(RoomServer::launch(
        &text,
        builtin("stats").unwrap().wat.as_bytes(),
        SimulatedPlatform::from_seed(&SEED),
        1,
        Some(&audit_path)
    )
    .is_err());

    let data: Vec<Vec<f64>> = vec![
        (0..300).map(|i| 4.0 + f64::from(i) * 0.01).collect(),
        (0..200).map(|i| 5.0 + f64::from(i) * 0.02).collect(),
        (0..100).map(|i| 9.0 - f64::from(i) * 0.03).collect(),
    ];
    let client = RoomClient::new(&room.url, &text).unwrap();
    let verified = client.verify().await.unwrap();
    assert_eq!(verified.room_id, room.server.room_id());
    assert_eq!(verified.audit_key.to_bytes(), room.server.audit_key());

    // Running before everyone uploaded is refused, naming who is missing.
    let e = client.run(&keys[0]).await.unwrap_err();
    assert_eq!(refused_status(&e), 409, "{e}");
    assert!(
        e.to_string().contains("hospital-a, hospital-b, hospital-c"),
        "{e}"
    );

    let mut receipts = Vec::new();
    for (k, values) in keys.iter().zip(&data) {
        let input = encode_csv(client.manifest().code.input, &csv(values), None).unwrap();
        let receipt = client.upload(k, "glucose.csv", &input).await.unwrap();
        assert_eq!(receipt.party, k.name());
        receipts.push(receipt);
    }
    // A second upload by the same party is refused.
    let e = client
        .upload(&keys[1], "again.csv", b"\0\0\0\0\0\0\0\0")
        .await
        .unwrap_err();
    assert_eq!(refused_status(&e), 409, "{e}");

    let summary = client.run(&keys[2]).await.unwrap();
    assert_eq!(summary.output_to, ["hospital-a", "hospital-b"]);
    let e = client.run(&keys[0]).await.unwrap_err();
    assert!(e.to_string().contains("already ran"), "{e}");

    // The recipients read the statistics of the pooled data.
    let all: Vec<f64> = data.concat();
    let n = all.len() as f64;
    let mean = all.iter().sum::<f64>() / n;
    let var = all.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    for k in &keys[..2] {
        let out = client.fetch_output(k).await.unwrap();
        let values = decode_output(client.manifest(), &out).unwrap();
        assert_eq!(values[0], ("count".to_string(), n));
        assert_eq!(values[1].0, "mean");
        assert!((values[1].1 - mean).abs() < 1e-9);
        assert!((values[2].1 - var).abs() < 1e-9);
        assert_eq!(values[3].1, 4.0);
    }
    // The sealed output opens only with a recipient's own key.
    let now = veil_attest::util::unix_now();
    let resp = room
        .server
        .output(&veil_room::SignedRequest::new(
            &room.server.room_id(),
            &keys[0],
            "fetch-output",
            now,
        ))
        .unwrap();
    assert!(keys[0].open(&resp.sealed).is_ok());
    assert!(keys[1].open(&resp.sealed).is_err());
    assert!(keys[2].open(&resp.sealed).is_err());
    // A request signed by a but claiming to be c, or stale, is refused.
    let mut forged =
        veil_room::SignedRequest::new(&room.server.room_id(), &keys[0], "fetch-output", now);
    forged.party = "hospital-c".into();
    assert!(room.server.output(&forged).is_err());
    let stale =
        veil_room::SignedRequest::new(&room.server.room_id(), &keys[0], "fetch-output", now - 3600);
    assert!(room.server.output(&stale).is_err());
    // hospital-c contributed data but is not a recipient.
    let e = client.fetch_output(&keys[2]).await.unwrap_err();
    assert_eq!(refused_status(&e), 403, "{e}");
    assert!(e.to_string().contains("not a recipient"), "{e}");

    // The audit log tells the whole story, signed by the attested key.
    let entries = client.audit().await.unwrap();
    let events: Vec<&str> = entries.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(events[0], "room_created");
    assert_eq!(events.iter().filter(|e| **e == "upload").count(), 3);
    assert_eq!(events.iter().filter(|e| **e == "run").count(), 1);
    assert_eq!(
        events.iter().filter(|e| **e == "output_released").count(),
        3,
        "a twice (once directly), b once"
    );
    assert_eq!(events.iter().filter(|e| **e == "output_refused").count(), 1);
    assert!(events.contains(&"attestation"));
    let upload = entries.iter().find(|e| e.event == "upload").unwrap();
    let a_input = encode_csv(veil_room::InputFormat::F64Column, &csv(&data[0]), None).unwrap();
    // The log commits to each upload with the hash the party signed and got back in its
    // receipt; it is salted, so the log does not let anyone confirm a guess of the data.
    assert_eq!(upload.details["data_sha256"], receipts[0].data_sha256);
    assert_ne!(
        upload.details["data_sha256"],
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&a_input))
    );

    // Tampering with the log is detected: edit, drop, reorder, truncate, forged signature.
    let log = std::fs::read_to_string(&audit_path).unwrap();
    let (count, head) = room.server.audit_log().head();
    let key = verified.audit_key;
    check_audit_text(&log, &key, count, &head).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    let join = |ls: &[&str]| ls.iter().map(|l| format!("{l}\n")).collect::<String>();
    let edited = lines[3].replacen("\"time\":", "\"time\":1", 1);
    let mut v = lines.clone();
    v[3] = &edited;
    assert!(check_audit_text(&join(&v), &key, count, &head).is_err());
    let mut v = lines.clone();
    v.remove(2);
    assert!(check_audit_text(&join(&v), &key, count, &head).is_err());
    let mut v = lines.clone();
    v.swap(2, 3);
    assert!(check_audit_text(&join(&v), &key, count, &head).is_err());
    let truncated = &lines[..lines.len() - 1];
    let e = check_audit_text(&join(truncated), &key, count, &head).unwrap_err();
    assert!(e.to_string().contains("truncated"), "{e}");
    let stranger = ed25519_dalek::SigningKey::from_bytes(&[3; 32]).verifying_key();
    assert!(check_audit_text(&log, &stranger, count, &head).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_code_or_another_room_gets_no_data_path() {
    let keys = parties();
    let text = manifest_text(&keys, "stats", LaunchConfig::default());
    let room = serve(&text, "stats", None).await;

    // A party whose manifest names other code (so another room id) is refused before upload.
    let other = manifest_text(&keys, "logreg", LaunchConfig::default());
    let client = RoomClient::new(&room.url, &other).unwrap();
    let e = client
        .upload(&keys[0], "x.csv", &[0u8; 8])
        .await
        .unwrap_err();
    assert!(e.to_string().contains("no data path"), "{e}");
    // The evidence itself is checked against the manifest's measurement.
    let mine = Manifest::parse(&text).unwrap();
    let mut wrong = mine.clone();
    wrong.code.measurement = Manifest::parse(&other).unwrap().code.measurement;
    let nonce = [5u8; 32];
    let ev = room
        .server
        .attest(&veil_room::NonceRequest {
            nonce: veil_attest::util::encode_b64(&nonce),
        })
        .unwrap();
    let e = veil_room::verify_room_evidence(&wrong, &room.server.room_id(), &nonce, &ev, 0)
        .unwrap_err();
    assert!(e.to_string().contains("no data path"), "{e}");
    // The right manifest but a stale nonce or another room id: the binding fails.
    assert!(
        veil_room::verify_room_evidence(&mine, &room.server.room_id(), &[6u8; 32], &ev, 0).is_err()
    );
    assert!(veil_room::verify_room_evidence(&mine, &[0u8; 32], &nonce, &ev, 0).is_err());
    // Evidence from an untrusted platform is refused.
    let mut untrusted = mine.clone();
    untrusted.trust.sim_platform_keys = vec![hex::encode([1u8; 32])];
    assert!(
        veil_room::verify_room_evidence(&untrusted, &room.server.room_id(), &nonce, &ev, 0)
            .is_err()
    );
    // Launching the room with a module that is not the manifest's is refused.
    assert!(RoomServer::launch(
        &text,
        builtin("logreg").unwrap().wat.as_bytes(),
        SimulatedPlatform::from_seed(&SEED),
        1,
        None
    )
    .is_err());

    // An upload prepared for one room and replayed into another (same code, same parties).
    let text2 = manifest_text(&keys, "stats", LaunchConfig::default());
    let room2 = serve(&text2, "stats", None).await;
    let client = RoomClient::new(&room.url, &text).unwrap();
    let verified = client.verify().await.unwrap();
    let (_, body) = client
        .prepare_upload(&verified, &keys[0], "a.csv", &1.5f64.to_le_bytes())
        .unwrap();
    let e = room2.server.upload(&body).unwrap_err();
    assert!(e.to_string().contains("replayed into another room"), "{e}");
    let http = reqwest::Client::new();
    let resp = http
        .post(format!("{}/upload", room2.url))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    // A tampered ciphertext, or a header re-signed by nobody, is refused.
    let mut tampered = body.clone();
    *tampered.last_mut().unwrap() ^= 1;
    assert!(room.server.upload(&tampered).is_err());
    let mut forged = body.clone();
    let pos = forged.windows(10).position(|w| w == b"hospital-a").unwrap();
    forged[pos + 9] = b'b';
    assert!(room.server.upload(&forged).is_err());
    assert!(room.server.upload(b"\0\0\0\xffgarbage").is_err());
    // The genuine body is accepted once; replaying it is refused.
    room.server.upload(&body).unwrap();
    let e = room.server.upload(&body).unwrap_err();
    assert!(e.to_string().contains("already uploaded"), "{e}");
    // A party's key that is not the manifest's key cannot upload.
    let impostor = PartyKey::generate("hospital-b").unwrap();
    assert!(client.upload(&impostor, "b.csv", &[0u8; 8]).await.is_err());
    // Nothing but hospital-a's one upload reached the room.
    let uploads = room
        .server
        .audit_log()
        .text()
        .unwrap()
        .lines()
        .filter(|l| l.contains("\"event\":\"upload\""))
        .count();
    assert_eq!(uploads, 1);
}

/// Three parties upload `values` each to a stats room launched with `launch`; the run must
/// be stopped with an error containing `why`, audited, with nothing to fetch.
async fn run_is_stopped(launch: LaunchConfig, values: u32, why: &str) {
    let keys = parties();
    let text = manifest_text(&keys, "stats", launch);
    let room = serve(&text, "stats", None).await;
    let client = RoomClient::new(&room.url, &text).unwrap();
    let column: Vec<u8> = (0..values)
        .flat_map(|i| f64::from(i).to_le_bytes())
        .collect();
    for k in &keys {
        client.upload(k, "big.csv", &column).await.unwrap();
    }
    let e = client.run(&keys[0]).await.unwrap_err();
    assert_eq!(refused_status(&e), 422, "{e}");
    assert!(e.to_string().contains(why), "{e}");
    let entries = client.audit().await.unwrap();
    assert!(entries.iter().any(|e| e.event == "run_failed"));
    // Nothing to fetch.
    assert!(client.fetch_output(&keys[0]).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workload_out_of_fuel_is_stopped_and_audited() {
    let launch = LaunchConfig {
        fuel: 20_000,
        ..LaunchConfig::default()
    };
    run_is_stopped(launch, 10_000, "ran out of fuel").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workload_over_its_memory_limit_is_stopped_and_audited() {
    // 3 × 100k values (2.4 MB) do not fit in 1 MiB of linear memory.
    let launch = LaunchConfig {
        max_memory_bytes: 1 << 20,
        ..LaunchConfig::default()
    };
    run_is_stopped(launch, 100_000, "memory limit").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_parties_train_a_logistic_regression_from_csv() {
    let keys = parties();
    let text = manifest_text(&keys, "logreg", LaunchConfig::default());
    let room = serve(&text, "logreg", None).await;
    let client = RoomClient::new(&room.url, &text).unwrap();
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    };
    for k in &keys {
        let mut csv = "age,bmi,glucose,diabetic\n".to_string();
        for _ in 0..300 {
            let x = [next(), next(), next()];
            let y = u8::from(2.0 * x[0] - x[1] + 0.5 * x[2] + 0.3 * next() > 0.0);
            csv.push_str(&format!("{},{},{},{y}\n", x[0], x[1], x[2]));
        }
        let input = encode_csv(client.manifest().code.input, &csv, None).unwrap();
        client.upload(k, "patients.csv", &input).await.unwrap();
    }
    client.run(&keys[0]).await.unwrap();
    let out = client.fetch_output(&keys[1]).await.unwrap();
    let values = decode_output(client.manifest(), &out).unwrap();
    assert_eq!(values.len(), 5, "3 weights, bias, accuracy");
    let accuracy = values[4].1;
    assert!(accuracy > 0.85, "accuracy {accuracy}");
    assert!(
        values[0].1 > 0.0 && values[1].1 < 0.0,
        "learned the signs: {values:?}"
    );
}

#[test]
fn manifests_party_keys_and_csv_are_validated() {
    let keys = parties();
    let text = manifest_text(&keys, "logreg", LaunchConfig::default());
    let m = Manifest::parse(&text).unwrap();
    assert_eq!(m.parties.len(), 3);
    assert_eq!(Manifest::parse(&m.to_toml().unwrap()).unwrap(), m);
    // Edits that break the manifest are named.
    let bad = text.replace("output_to = [", "output_to = [\"nobody\", ");
    assert!(Manifest::parse(&bad)
        .unwrap_err()
        .to_string()
        .contains("not a party"));
    assert!(Manifest::parse(&text.replace("version = 1", "version = 9")).is_err());
    assert!(Manifest::parse(&format!("{text}\nextra = 1\n")).is_err());
    let mut dup = m.clone();
    dup.parties.push(dup.parties[0].clone());
    assert!(dup.validate().is_err());
    assert!(PartyKey::generate("no spaces").is_err());

    // Party key files round-trip; a damaged one is an error.
    let k = &keys[0];
    let again = PartyKey::from_text(&k.to_text().unwrap()).unwrap();
    assert_eq!(again.public(), k.public());
    assert!(PartyKey::from_text("name = \"x\"").is_err());

    // CSV encodings.
    let rows = encode_csv(
        veil_room::InputFormat::F64LabelledRows,
        "x1,x2,y\n0.5,1,1\n-2,3.5,0\n",
        None,
    )
    .unwrap();
    let f: Vec<f64> = rows
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(f, [2.0, 0.5, 1.0, 1.0, -2.0, 3.5, 0.0]);
    let col = encode_csv(
        veil_room::InputFormat::F64Column,
        "a,b\n1,2\n3,4\n",
        Some("b"),
    )
    .unwrap();
    assert_eq!(col.len(), 16);
    assert_eq!(f64::from_le_bytes(col[8..].try_into().unwrap()), 4.0);
    assert!(encode_csv(veil_room::InputFormat::F64Column, "a,b\n1,2\n", None).is_err());
    assert!(encode_csv(veil_room::InputFormat::F64Column, "a\n1\nx\n", None).is_err());
    assert!(encode_csv(veil_room::InputFormat::F64Column, "a\n1\nNaN\n", None).is_err());
    assert!(encode_csv(veil_room::InputFormat::F64LabelledRows, "1,2\n3\n", None).is_err());
    assert!(encode_csv(veil_room::InputFormat::F64Column, "", None).is_err());
}

// Issue 12, item 19: a room keeps its state in a directory and resumes from it.

fn stats_module() -> &'static [u8] {
    builtin("stats").unwrap().wat.as_bytes()
}

fn open_room(text: &str, dir: &std::path::Path) -> veil_attest::Result<RoomServer> {
    RoomServer::open(
        text,
        stats_module(),
        SimulatedPlatform::from_seed(&SEED),
        1,
        dir,
    )
}

/// `party`'s upload of `values`, prepared against the room's fresh evidence (no HTTP).
fn upload_body(server: &RoomServer, text: &str, party: &PartyKey, values: &[f64]) -> Vec<u8> {
    let nonce = [9u8; 32];
    let ev = server
        .attest(&veil_room::NonceRequest {
            nonce: veil_attest::util::encode_b64(&nonce),
        })
        .unwrap();
    let manifest = Manifest::parse(text).unwrap();
    let verified = veil_room::verify_room_evidence(
        &manifest,
        &server.room_id(),
        &nonce,
        &ev,
        veil_attest::util::unix_now(),
    )
    .unwrap();
    let client = RoomClient::new("http://127.0.0.1:9", text).unwrap();
    let input = encode_csv(manifest.code.input, &csv(values), None).unwrap();
    client
        .prepare_upload(&verified, party, "glucose.csv", &input)
        .unwrap()
        .1
}

fn request(server: &RoomServer, party: &PartyKey, action: &str) -> veil_room::SignedRequest {
    veil_room::SignedRequest::new(
        &server.room_id(),
        party,
        action,
        veil_attest::util::unix_now(),
    )
}

fn state_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("veil-room-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn events(server: &RoomServer) -> Vec<String> {
    let text = server.audit_log().text().unwrap();
    let key = ed25519_dalek::VerifyingKey::from_bytes(&server.audit_key()).unwrap();
    let (n, head) = server.audit_log().head();
    check_audit_text(&text, &key, n, &head)
        .unwrap()
        .into_iter()
        .map(|e| e.event)
        .collect()
}

#[test]
fn a_restarted_room_keeps_its_uploads_and_its_output() {
    let dir = state_dir("restart");
    let keys = parties();
    let text = manifest_text(&keys, "stats", LaunchConfig::default());
    let data: Vec<Vec<f64>> = vec![
        (0..40).map(|i| 4.0 + f64::from(i) * 0.1).collect(),
        (0..30).map(|i| 5.0 + f64::from(i) * 0.2).collect(),
        (0..20).map(|i| 9.0 - f64::from(i) * 0.3).collect(),
    ];

    let server = open_room(&text, &dir).unwrap();
    let audit_key = server.audit_key();
    let receipt = server
        .upload(&upload_body(&server, &text, &keys[0], &data[0]))
        .unwrap();
    // Two rooms on one state directory would diverge: the second is refused.
    let e = open_room(&text, &dir).unwrap_err();
    assert!(e.to_string().contains("in use"), "{e}");
    drop(server);

    // Relaunched from the same directory: same keys, a's upload still there.
    let server = open_room(&text, &dir).unwrap();
    assert_eq!(server.audit_key(), audit_key, "the attested keys survive");
    let e = server.run(&request(&server, &keys[2], "run")).unwrap_err();
    assert!(
        e.to_string()
            .contains("waiting for uploads from hospital-b, hospital-c"),
        "{e}"
    );
    let e = server
        .upload(&upload_body(&server, &text, &keys[0], &data[0]))
        .unwrap_err();
    assert!(e.to_string().contains("already uploaded"), "{e}");
    for (k, values) in keys.iter().zip(&data).skip(1) {
        server
            .upload(&upload_body(&server, &text, k, values))
            .unwrap();
    }
    let summary = server.run(&request(&server, &keys[2], "run")).unwrap();
    drop(server);

    // The output computed before the restart is served after it, unchanged; no second run.
    let server = open_room(&text, &dir).unwrap();
    let e = server.run(&request(&server, &keys[2], "run")).unwrap_err();
    assert!(e.to_string().contains("already ran"), "{e}");
    let resp = server
        .output(&request(&server, &keys[0], "fetch-output"))
        .unwrap();
    let out = keys[0].open(&resp.sealed).unwrap();
    assert_eq!(
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(out.as_slice())),
        summary.output_sha256
    );
    let manifest = Manifest::parse(&text).unwrap();
    let values = decode_output(&manifest, &out).unwrap();
    let all: Vec<f64> = data.concat();
    let n = all.len() as f64;
    assert_eq!(values[0].1, n);
    assert!((values[1].1 - all.iter().sum::<f64>() / n).abs() < 1e-9);

    // One log, one key, across the restarts; a's receipt hash is in it.
    let events = events(&server);
    assert_eq!(events[0], "room_created");
    assert_eq!(events.iter().filter(|e| *e == "resumed").count(), 2);
    assert_eq!(events.iter().filter(|e| *e == "upload").count(), 3);
    assert_eq!(events.iter().filter(|e| *e == "run").count(), 1);
    let log = server.audit_log().text().unwrap();
    assert!(log.contains(&receipt.data_sha256));
    drop(server);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_state_directory_opens_only_for_its_room_code_and_platform() {
    let dir = state_dir("measurement");
    let keys = parties();
    let text = manifest_text(&keys, "stats", LaunchConfig::default());
    let server = open_room(&text, &dir).unwrap();
    server
        .upload(&upload_body(&server, &text, &keys[0], &[1.0, 2.0]))
        .unwrap();
    drop(server);

    // Another manifest (another room, other code) is refused.
    let other = manifest_text(&keys, "logreg", LaunchConfig::default());
    let e = RoomServer::open(
        &other,
        builtin("logreg").unwrap().wat.as_bytes(),
        SimulatedPlatform::from_seed(&SEED),
        1,
        &dir,
    )
    .unwrap_err();
    assert!(e.to_string().contains("room.json"), "{e}");
    // Same manifest, another platform: its sealing key differs.
    let e = RoomServer::open(
        &text,
        stats_module(),
        SimulatedPlatform::from_seed(&[8; 32]),
        1,
        &dir,
    )
    .unwrap_err();
    assert!(e.to_string().contains("platform"), "{e}");

    // Even with the plaintext metadata rewritten to name the other room and its measurement,
    // the sealed keys do not open for other code: the seal is what refuses.
    let meta_path = dir.join("room.json");
    let meta = std::fs::read_to_string(&meta_path).unwrap();
    let mut forged: serde_json::Value = serde_json::from_str(&meta).unwrap();
    forged["room_id"] = hex::encode(veil_room::room_id(&other)).into();
    forged["manifest_sha256"] =
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(other.as_bytes())).into();
    forged["measurement"] = Manifest::parse(&other).unwrap().code.measurement.into();
    std::fs::write(&meta_path, forged.to_string()).unwrap();
    let e = RoomServer::open(
        &other,
        builtin("logreg").unwrap().wat.as_bytes(),
        SimulatedPlatform::from_seed(&SEED),
        1,
        &dir,
    )
    .unwrap_err();
    assert!(e.to_string().contains("do not unseal"), "{e}");
    std::fs::write(&meta_path, &meta).unwrap();
    // The genuine room still resumes.
    let server = open_room(&text, &dir).unwrap();
    assert!(events(&server).contains(&"resumed".to_string()));
    drop(server);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_tampered_cut_or_missing_state_file_stops_the_room_naming_it() {
    let dir = state_dir("tamper");
    let keys = parties();
    let text = manifest_text(&keys, "stats", LaunchConfig::default());
    let server = open_room(&text, &dir).unwrap();
    for (k, v) in keys.iter().zip([1.0, 2.0]) {
        server
            .upload(&upload_body(&server, &text, k, &[v, v + 1.0]))
            .unwrap();
    }
    drop(server);
    let sealed = dir.join("uploads").join("hospital-a.sealed");
    let genuine = std::fs::read(&sealed).unwrap();

    // A flipped bit in a sealed upload.
    let mut bytes = genuine.clone();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&sealed, &bytes).unwrap();
    let e = open_room(&text, &dir).unwrap_err().to_string();
    assert!(e.contains("hospital-a.sealed"), "{e}");
    // Another party's sealed upload in a's place (both sealed by this room).
    std::fs::copy(dir.join("uploads").join("hospital-b.sealed"), &sealed).unwrap();
    let e = open_room(&text, &dir).unwrap_err().to_string();
    assert!(e.contains("hospital-a.sealed"), "{e}");
    // A logged upload whose file is gone.
    std::fs::remove_file(&sealed).unwrap();
    let e = open_room(&text, &dir).unwrap_err().to_string();
    assert!(
        e.contains("hospital-a.sealed") && e.contains("missing"),
        "{e}"
    );
    std::fs::write(&sealed, &genuine).unwrap();

    // The audit log cut by its last line (b's upload is then unlogged, and the log shorter
    // than the head the room signed).
    let log_path = dir.join("audit.jsonl");
    let log = std::fs::read_to_string(&log_path).unwrap();
    let cut: String = log
        .lines()
        .take(log.lines().count() - 1)
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&log_path, &cut).unwrap();
    let e = open_room(&text, &dir).unwrap_err().to_string();
    assert!(e.contains("audit.jsonl"), "{e}");
    // An edited entry.
    std::fs::write(&log_path, log.replacen("hospital-b", "hospital-x", 1)).unwrap();
    let e = open_room(&text, &dir).unwrap_err().to_string();
    assert!(e.contains("audit.jsonl"), "{e}");
    std::fs::write(&log_path, &log).unwrap();

    // A half-written temporary file from a crash is ignored and removed.
    let tmp = dir.join("uploads").join(".hospital-c.sealed.tmp");
    std::fs::write(&tmp, b"VSEAL1 half written").unwrap();
    let server = open_room(&text, &dir).unwrap();
    assert!(!tmp.exists());
    let e = server
        .upload(&upload_body(&server, &text, &keys[1], &[5.0]))
        .unwrap_err();
    assert!(e.to_string().contains("already uploaded"), "{e}");
    drop(server);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Copies a state directory (its files and `uploads/`), as a crash at that moment left it.
fn snapshot(from: &std::path::Path, to: &std::path::Path) {
    let _ = std::fs::remove_dir_all(to);
    for sub in ["", "uploads"] {
        std::fs::create_dir_all(to.join(sub)).unwrap();
        for entry in std::fs::read_dir(from.join(sub)).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_file() {
                std::fs::copy(entry.path(), to.join(sub).join(entry.file_name())).unwrap();
            }
        }
    }
}

#[test]
fn a_crash_between_a_file_and_its_log_entry_resumes_without_loss_or_a_rerun() {
    let dir = state_dir("window");
    let crashed = state_dir("window-crashed");
    let keys = parties();
    let text = manifest_text(&keys, "stats", LaunchConfig::default());
    let server = open_room(&text, &dir).unwrap();
    for (k, v) in keys.iter().zip([1.0, 2.0]) {
        server
            .upload(&upload_body(&server, &text, k, &[v, v + 1.0]))
            .unwrap();
    }
    // The directory as it was before c's upload, plus c's upload file: a crash after the
    // file was written and before its log entry and receipt.
    snapshot(&dir, &crashed);
    server
        .upload(&upload_body(&server, &text, &keys[2], &[3.0, 4.0]))
        .unwrap();
    std::fs::copy(
        dir.join("uploads/hospital-c.sealed"),
        crashed.join("uploads/hospital-c.sealed"),
    )
    .unwrap();
    // Then a crash after the outputs were written, before the run's log entry and answer.
    snapshot(&dir, &dir.with_extension("before-run"));
    let summary = server.run(&request(&server, &keys[0], "run")).unwrap();
    let before_run = dir.with_extension("before-run");
    std::fs::copy(
        dir.join("outputs.sealed"),
        before_run.join("outputs.sealed"),
    )
    .unwrap();
    drop(server);

    // c was never acknowledged: its file is discarded, logged, and c uploads again.
    let server = open_room(&text, &crashed).unwrap();
    assert!(!crashed.join("uploads/hospital-c.sealed").exists());
    let e = server.run(&request(&server, &keys[0], "run")).unwrap_err();
    assert!(
        e.to_string()
            .contains("waiting for uploads from hospital-c"),
        "{e}"
    );
    assert!(events(&server).contains(&"upload_discarded".to_string()));
    server
        .upload(&upload_body(&server, &text, &keys[2], &[3.0, 4.0]))
        .unwrap();
    server.run(&request(&server, &keys[0], "run")).unwrap();
    drop(server);

    // The outputs were computed: they are kept, the run is logged at resume, not redone.
    // A half-written log line from the same crash is cut.
    let mut log = std::fs::OpenOptions::new()
        .append(true)
        .open(before_run.join("audit.jsonl"))
        .unwrap();
    std::io::Write::write_all(&mut log, b"{\"seq\":99,\"time\":1,\"ev").unwrap();
    drop(log);
    let server = open_room(&text, &before_run).unwrap();
    let e = server.run(&request(&server, &keys[0], "run")).unwrap_err();
    assert!(e.to_string().contains("already ran"), "{e}");
    let resp = server
        .output(&request(&server, &keys[1], "fetch-output"))
        .unwrap();
    let out = keys[1].open(&resp.sealed).unwrap();
    assert_eq!(
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(out.as_slice())),
        summary.output_sha256
    );
    let text_log = server.audit_log().text().unwrap();
    assert!(text_log.contains("recovered_at_resume"));
    assert!(text_log.contains("\"cut_partial_entry\":true"));
    drop(server);
    for d in [&dir, &crashed, &before_run] {
        std::fs::remove_dir_all(d).unwrap();
    }
}
