//! `veil serve` with `[[rooms]]`: a data room mounted at `/rooms/{name}`, its state on disk.
//! The server stops between two parties' uploads and a new one starts on the same state: the
//! room resumes (same id, same audit key), the upload made before the restart still counts
//! and cannot be replaced, and the run computes on everyone's data. The console reports who
//! has uploaded and serves the room's log, signed by the attested audit key.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    reason = "tests"
)]

use veil_attest::evidence::sim::SimulatedPlatform;
use veil_attest::TeeError;
use veil_room::workload::LaunchConfig;
use veil_room::{builtin, decode_output, encode_csv, Manifest, PartyKey, RoomSpec};
use veil_server::room::RoomClient;

use crate::site;

const SEED: [u8; 32] = [7; 32];

fn manifest_text(parties: &[PartyKey]) -> String {
    let b = builtin("stats").unwrap();
    let spec = RoomSpec {
        name: "joint study".into(),
        file: "builtin:stats".into(),
        input: b.input,
        output_labels: b.output_labels.iter().map(|s| (*s).to_string()).collect(),
        launch: LaunchConfig::default(),
        parties: parties.iter().map(PartyKey::public).collect(),
        output_to: vec!["hospital-a".into()],
        sim_platform_keys: vec![hex::encode(
            SimulatedPlatform::from_seed(&SEED).public_key(),
        )],
        min_security_version: Some(1),
    };
    Manifest::create(b.wat.as_bytes(), spec, 1_800_000_000)
        .unwrap()
        .to_toml()
        .unwrap()
}

const CONFIG: &str = "[[rooms]]\nname = \"study\"\nmanifest = \"room.toml\"\n\
                      platform_seed_file = \"platform.seed\"\nstate = \"room-state\"\n";

const OPERATOR: &str = "veil_operator_token_0123456789abcdef";

/// `GET /console/api/{path}` as the operator.
async fn console(site: &site::Site, path: &str) -> serde_json::Value {
    veil_server::client::http_client()
        .unwrap()
        .get(format!("{}/console/api/{path}", site.url))
        .bearer_auth(OPERATOR)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn with_console() -> String {
    format!(
        "{CONFIG}[[console.operators]]\nname = \"ops\"\ntoken_sha256 = \"{}\"\n",
        hex::encode(veil_server::auth::token_sha256(OPERATOR))
    )
}

fn csv(values: &[f64]) -> String {
    std::iter::once("glucose".to_string())
        .chain(values.iter().map(f64::to_string))
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// Two hospitals' keys, and the room's manifest and platform seed written into `dir`.
fn room_files(dir: &std::path::Path) -> (Vec<PartyKey>, String) {
    let keys: Vec<PartyKey> = ["hospital-a", "hospital-b"]
        .iter()
        .map(|n| PartyKey::generate(n).unwrap())
        .collect();
    let text = manifest_text(&keys);
    std::fs::write(dir.join("room.toml"), &text).unwrap();
    std::fs::write(dir.join("platform.seed"), hex::encode(SEED)).unwrap();
    (keys, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mounted_room_resumes_after_a_restart_with_its_uploads() {
    let dir = site::fresh_dir("room");
    let (keys, text) = room_files(&dir);
    let data = [vec![4.0, 5.0, 6.0], vec![7.0, 8.0]];

    let server = site::serve(CONFIG, &dir).await;
    let client = RoomClient::new(&format!("{}/rooms/study", server.url), &text).unwrap();
    let before = client.verify().await.unwrap();
    let input = encode_csv(client.manifest().code.input, &csv(&data[0]), None).unwrap();
    client.upload(&keys[0], "a.csv", &input).await.unwrap();
    server.stop_keeping_dir().await;

    let server = site::serve(&with_console(), &dir).await;
    let client = RoomClient::new(&format!("{}/rooms/study", server.url), &text).unwrap();
    let after = client.verify().await.unwrap();
    let o = console(&server, "overview").await;
    let status = &o["rooms"][0]["status"];
    assert_eq!(o["rooms"][0]["name"], "study");
    assert_eq!(status["parties"][0]["uploaded"], true, "{status}");
    assert_eq!(status["parties"][1]["uploaded"], false, "{status}");
    assert_eq!(status["ran"], false);
    assert!(
        !status.to_string().contains("sha256"),
        "no hash of a party's data"
    );
    assert_eq!(after.room_id, before.room_id);
    assert_eq!(after.audit_key.to_bytes(), before.audit_key.to_bytes());
    // The upload from before the restart stands: it cannot be replaced.
    let again = encode_csv(client.manifest().code.input, &csv(&[1000.0]), None).unwrap();
    let e = client
        .upload(&keys[0], "again.csv", &again)
        .await
        .unwrap_err();
    assert!(matches!(&e, TeeError::Refused { status: 409, .. }), "{e:?}");
    let input = encode_csv(client.manifest().code.input, &csv(&data[1]), None).unwrap();
    client.upload(&keys[1], "b.csv", &input).await.unwrap();
    client.run(&keys[1]).await.unwrap();
    assert_eq!(
        console(&server, "overview").await["rooms"][0]["status"]["ran"],
        true
    );
    // The console serves the room's log, signed by the key the room attested.
    let view = console(&server, "audit/rooms/study").await;
    assert_eq!(
        view["head"]["public_key"],
        hex::encode(after.audit_key.to_bytes())
    );
    let entries =
        veil_attest::audit::verify_entries(view["text"].as_str().unwrap(), Some(&after.audit_key))
            .unwrap();
    assert!(entries.iter().any(|e| e.event == "run"));
    let out = client.fetch_output(&keys[0]).await.unwrap();
    let values = decode_output(client.manifest(), &out).unwrap();
    assert_eq!(values[0], ("count".to_string(), 5.0));
    assert!((values[1].1 - 6.0).abs() < 1e-9, "{values:?}");
    // Only the named recipient reads the output.
    assert!(client.fetch_output(&keys[1]).await.is_err());
    drop(server);
}

/// The restart race CI once lost: a stopped server whose connection tasks still held the
/// router (and so the room's locked state directory) made the next server on the same
/// directory fail with "in use by another room server". Once `serve` returns, the lock is free,
/// however many keep-alive connections were open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_server_has_let_go_of_its_room_state_when_it_returns() {
    let dir = site::fresh_dir("room-release");
    let (_, text) = room_files(&dir);
    let mut server = site::serve(CONFIG, &dir).await;
    for _ in 0..6 {
        let clients: Vec<RoomClient> = (0..4)
            .map(|_| RoomClient::new(&format!("{}/rooms/study", server.url), &text).unwrap())
            .collect();
        for c in &clients {
            c.verify().await.unwrap();
        }
        server.stop_keeping_dir().await;
        // The clients (and their pooled connections) are still alive here.
        server = site::serve(CONFIG, &dir).await;
        drop(clients);
    }
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_room_sections_are_refused_at_start() {
    let dir = site::fresh_dir("room-bad");
    room_files(&dir);
    for config in [
        format!("{CONFIG}{CONFIG}"),
        CONFIG.replace("\"study\"", "\"../x\""),
        CONFIG.replace("platform.seed", "missing.seed"),
    ] {
        let parsed = veil_server::app::ServeConfig::parse(&config).unwrap();
        assert!(
            veil_server::app::router(&parsed, &dir).await.is_err(),
            "{config}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
