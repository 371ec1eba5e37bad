//! `veil serve`'s MPC coordination: an organiser creates a session, each participant enrolls
//! its own key by certificate request, everyone downloads the session, and it runs over mutual
//! TLS. Attacked: enrolling without a token, for another seat, twice (a leaked token swapping
//! a key), with a forged request, with another session's token; downloads before the session
//! is ready or of files outside it; a restart in between.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    reason = "tests"
)]

use std::path::{Path, PathBuf};

use crate::site;
use site::Site;

use serde_json::{json, Value};
use veil_mpc::config::{keygen, SessionConfig};
use veil_server::auth::token_sha256;
use veil_server::mpc::SessionCreated;

const ORGANISER: &str = "veil_organiser_token_0123456789abcdef";

async fn start(dir: &Path) -> Site {
    let config = format!(
        "[mpc]\ndir = \"sessions\"\n[[mpc.organisers]]\nname = \"consortium\"\ntoken_sha256 = \"{}\"\n",
        hex::encode(token_sha256(ORGANISER))
    );
    site::serve(&config, dir).await
}

fn http() -> reqwest::Client {
    veil_server::client::http_client().unwrap()
}

async fn create(url: &str, token: &str) -> (u16, Value) {
    let r = http()
        .post(format!("{url}/mpc/sessions"))
        .bearer_auth(token)
        .json(&json!({ "parties": ["hospital", "lab"] }))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn enroll(url: &str, id: &str, seat: &str, token: &str, pem: &[u8]) -> (u16, Value) {
    let r = http()
        .put(format!("{url}/mpc/sessions/{id}/requests/{seat}"))
        .bearer_auth(token)
        .body(pem.to_vec())
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn fetch(url: &str, id: &str, file: &str, token: &str) -> (u16, Vec<u8>) {
    let r = http()
        .get(format!("{url}/mpc/sessions/{id}/files/{file}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.bytes().await.unwrap().to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_is_built_from_participants_requests_and_runs() {
    let root = site::fresh_dir("mpc-coord");
    let server = start(&root).await;
    let url = server.url.clone();

    // Only an organiser creates sessions.
    assert_eq!(create(&url, "nope").await.0, 401);
    let (status, body) = create(&url, ORGANISER).await;
    assert_eq!(status, 201, "{body}");
    let created: SessionCreated = serde_json::from_value(body).unwrap();
    let id = created.session.clone();
    let seat = |s: &str| created.seats[s].clone();
    assert_eq!(created.seats.len(), 3);

    // Each participant makes its own key; only the request travels.
    let own: Vec<(PathBuf, PathBuf)> = [None, Some(0), Some(1)]
        .into_iter()
        .map(|p| keygen(&root.join(format!("own-{p:?}")), p).unwrap())
        .collect();
    let csr = |i: usize| std::fs::read(&own[i].1).unwrap();

    // Not ready: nothing to download.
    assert_eq!(
        fetch(&url, &id, "parties.toml", &seat("dealer")).await.0,
        409
    );
    // No token; the organiser's token (not a seat); another seat's token; a forged request.
    assert_eq!(enroll(&url, &id, "dealer", "", &csr(0)).await.0, 401);
    assert_eq!(enroll(&url, &id, "dealer", ORGANISER, &csr(0)).await.0, 404);
    let (status, body) = enroll(&url, &id, "dealer", &seat("party-0"), &csr(0)).await;
    assert_eq!((status, body["kind"].as_str()), (403, Some("wrong_seat")));
    let mut forged = csr(0);
    let n = forged.len();
    forged[n / 2] ^= 1;
    let (status, _) = enroll(&url, &id, "dealer", &seat("dealer"), &forged).await;
    assert_eq!(status, 400);
    // The seat stayed open: the real request is accepted, once.
    assert_eq!(
        enroll(&url, &id, "dealer", &seat("dealer"), &csr(0))
            .await
            .0,
        204
    );
    let (status, body) = enroll(&url, &id, "dealer", &seat("dealer"), &csr(1)).await;
    assert_eq!(
        (status, body["kind"].as_str()),
        (409, Some("already_enrolled"))
    );

    // Another session's seat token is answered as an unknown session.
    let (_, other) = create(&url, ORGANISER).await;
    let other_token = other["seats"]["party-0"].as_str().unwrap().to_string();
    let (a, ab) = enroll(&url, &id, "party-0", &other_token, &csr(1)).await;
    let (b, bb) = enroll(
        &url,
        "0123456789abcdef0123456789abcdef",
        "party-0",
        &other_token,
        &csr(1),
    )
    .await;
    assert_eq!((a, &ab), (b, &bb));
    assert_eq!(a, 404);

    // A restart in the middle loses nothing.
    server.stop_keeping_dir().await;
    let server = start(&root).await;
    let url = server.url.clone();
    let status: Value = http()
        .get(format!("{url}/mpc/sessions/{id}"))
        .bearer_auth(seat("party-1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["waiting_for"], json!(["party-0", "party-1"]));

    // Party 0's request asks for the dealer's name: it is certified as party 0 regardless.
    let mut params = rcgen::CertificateParams::new(vec!["dealer.veil-mpc".to_string()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "dealer.veil-mpc");
    let key0 = std::fs::read_to_string(&own[1].0).unwrap();
    let key0 = rcgen::KeyPair::from_pem(&key0).unwrap();
    let greedy = params.serialize_request(&key0).unwrap().pem().unwrap();
    assert_eq!(
        enroll(&url, &id, "party-0", &seat("party-0"), greedy.as_bytes())
            .await
            .0,
        204
    );
    assert_eq!(
        enroll(&url, &id, "party-1", &seat("party-1"), &csr(2))
            .await
            .0,
        204
    );

    // Ready: the session's files, and nothing else of the service's directory.
    let session = root.join("downloaded");
    std::fs::create_dir_all(&session).unwrap();
    for file in [
        "ca.pem",
        "parties.toml",
        "dealer.pem",
        "party-0.pem",
        "party-1.pem",
    ] {
        let (status, bytes) = fetch(&url, &id, file, &seat("party-1")).await;
        assert_eq!(status, 200, "{file}");
        std::fs::write(session.join(file), bytes).unwrap();
    }
    for file in [
        "session.json",
        "party-0.key",
        "..%2Fsession.json",
        "requests%2Fdealer.csr",
    ] {
        assert_eq!(
            fetch(&url, &id, file, &seat("party-1")).await.0,
            404,
            "{file}"
        );
    }
    let pem0 = std::fs::read_to_string(session.join("party-0.pem")).unwrap();
    let der0 = rustls::pki_types::pem::PemObject::from_pem_slice(pem0.as_bytes())
        .map(|c: rustls::pki_types::CertificateDer<'_>| c.to_vec())
        .unwrap();
    let contains = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    assert!(contains(&der0, b"party-0.veil-mpc"));
    assert!(!contains(&der0, b"dealer.veil-mpc"));

    // The session runs over mutual TLS with the participants' own keys.
    for (key, _) in &own {
        std::fs::copy(key, session.join(key.file_name().unwrap())).unwrap();
    }
    let path = session.join("parties.toml");
    let mut config = SessionConfig::load(&path).unwrap();
    config.use_loopback_ports().unwrap();
    config.session.timeout_secs = 10;
    std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();
    let result = tokio::task::spawn_blocking(move || {
        let dc = SessionConfig::load(&path).unwrap();
        let dealer = std::thread::spawn(move || veil_mpc::net::run_dealer(&dc, "t"));
        let parties: Vec<_> = (0..2)
            .map(|id| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let config = SessionConfig::load(&path)?;
                    let (ex, seed) = veil_mpc::net::connect_party(&config, id, "t")?;
                    let mut p = veil_mpc::protocol::Party::new(ex, &seed, config.fixed())?;
                    let x = p.input(0, (id == 0).then_some(&[3.0][..]), 1)?;
                    let y = p.input(1, (id == 1).then_some(&[-2.5][..]), 1)?;
                    let z = p.mul(&x, &y)?;
                    let out = p.open(&z)?;
                    p.exchange_mut().finish()?;
                    Ok::<_, veil_mpc::MpcError>(out[0])
                })
            })
            .collect();
        let outs: Vec<f64> = parties
            .into_iter()
            .map(|h| h.join().unwrap().unwrap())
            .collect();
        dealer.join().unwrap().unwrap();
        outs
    })
    .await
    .unwrap();
    for z in result {
        assert!((z + 7.5).abs() < 1e-3, "{z}");
    }
    drop(server);
}
