//! Each participant's private key stays with it (issue 12, item 26): `keygen` writes a key
//! and a certificate request, the organiser's `certify` writes the session from requests
//! alone, and the session runs over mutual TLS with those keys.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

use std::path::Path;
use std::thread;

use veil_mpc::config::{certify, keygen, SessionConfig};
use veil_mpc::net::{connect_party, run_dealer};
use veil_mpc::protocol::Party;

fn files(dir: &Path, ext: &str) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == ext)
        })
        .count()
}

#[test]
fn participants_keep_their_keys_and_the_session_runs() {
    let root = std::env::temp_dir().join(format!("veil-mpc-keys-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    // Each participant, on its own machine: a key and a request.
    let requests = root.join("requests");
    let mut keys = Vec::new();
    for party in [None, Some(0), Some(1)] {
        let own = root.join(format!("own-{party:?}"));
        let (key, csr) = keygen(&own, party).unwrap();
        std::fs::copy(&csr, requests.join(csr.file_name().unwrap()))
            .or_else(|_| {
                std::fs::create_dir_all(&requests)?;
                std::fs::copy(&csr, requests.join(csr.file_name().unwrap()))
            })
            .unwrap();
        keys.push(key);
    }
    // The organiser: certificates from the requests; no private key in the session.
    let session = root.join("session");
    let path = certify(&session, &["a".into(), "b".into()], 20000, &requests).unwrap();
    assert_eq!(files(&session, "key"), 0, "the organiser holds no key");
    assert_eq!(files(&session, "pem"), 4, "CA, dealer, two parties");
    let mut config = SessionConfig::load(&path).unwrap();
    config.use_loopback_ports().unwrap();
    config.session.timeout_secs = 10;
    std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();
    // Each participant puts its own key next to its copy of the session (one copy here).
    for key in &keys {
        std::fs::copy(key, session.join(key.file_name().unwrap())).unwrap();
    }
    let dc = SessionConfig::load(&path).unwrap();
    let dealer = thread::spawn(move || run_dealer(&dc, "t"));
    let parties: Vec<_> = (0..2)
        .map(|id| {
            let path = path.clone();
            thread::spawn(move || {
                let config = SessionConfig::load(&path)?;
                let (ex, seed) = connect_party(&config, id, "t")?;
                let mut p = Party::new(ex, &seed, config.fixed())?;
                let x = p.input(0, (id == 0).then_some(&[3.0][..]), 1)?;
                let y = p.input(1, (id == 1).then_some(&[-2.5][..]), 1)?;
                let z = p.mul(&x, &y)?;
                let out = p.open(&z)?;
                p.exchange_mut().finish()?;
                Ok::<_, veil_mpc::MpcError>(out[0])
            })
        })
        .collect();
    for h in parties {
        let z = h.join().unwrap().unwrap();
        assert!((z + 7.5).abs() < 1e-3, "{z}");
    }
    dealer.join().unwrap().unwrap();
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn a_request_that_does_not_prove_its_key_is_refused() {
    let root = std::env::temp_dir().join(format!("veil-mpc-keys-bad-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    for party in [None, Some(0), Some(1)] {
        keygen(&root, party).unwrap();
    }
    // Flip a byte inside party 1's request (its signature no longer verifies).
    let csr = root.join("party-1.csr");
    let text = std::fs::read_to_string(&csr).unwrap();
    let body: Vec<&str> = text.lines().collect();
    let mut line: Vec<char> = body[3].chars().collect();
    line[10] = if line[10] == 'A' { 'B' } else { 'A' };
    let mut tampered: Vec<String> = body.iter().map(|l| (*l).to_string()).collect();
    tampered[3] = line.into_iter().collect();
    std::fs::write(&csr, tampered.join("\n")).unwrap();
    let e = certify(&root.join("s"), &["a".into(), "b".into()], 20000, &root).unwrap_err();
    assert!(e.to_string().contains("party-1.csr"), "{e}");
    assert!(
        !root.join("s").join("parties.toml").exists(),
        "nothing written"
    );
    let _ = std::fs::remove_dir_all(&root);
}
