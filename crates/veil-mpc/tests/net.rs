//! The network runtime over loopback: parties and the dealer with real TCP and mutual TLS
//! (threads here; the CLI tests run them as processes). Unknown certificates and different
//! sessions are refused; a party that disappears stops the others with an error naming it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

use std::path::{Path, PathBuf};
use std::thread;

use veil_mpc::config::{init, SessionConfig};
use veil_mpc::net::{connect_party, run_dealer};
use veil_mpc::protocol::Party;
use veil_mpc::{MpcError, Result};

/// A fresh session in a temp dir with free loopback ports and the given timeout.
fn session(name: &str, parties: usize, timeout: u64) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("veil-mpc-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let names: Vec<String> = (0..parties).map(|i| format!("p{i}")).collect();
    let path = init(&dir, &names, 20000).unwrap();
    let mut config = SessionConfig::load(&path).unwrap();
    config.use_loopback_ports().unwrap();
    config.session.timeout_secs = timeout;
    std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();
    path
}

fn run_session<T: Send + 'static>(
    configs: Vec<PathBuf>,
    dealer_config: &Path,
    programs: Vec<String>,
    f: fn(&mut Party<veil_mpc::net::NetExchange>) -> Result<T>,
) -> (Result<veil_mpc::net::DealerReport>, Vec<Result<T>>) {
    let dc = SessionConfig::load(dealer_config).unwrap();
    let program = programs[programs.len() - 1].clone();
    let dealer = thread::spawn(move || run_dealer(&dc, &program));
    let parties: Vec<_> = configs
        .into_iter()
        .zip(programs)
        .enumerate()
        .map(|(id, (path, program))| {
            thread::spawn(move || {
                let config = SessionConfig::load(&path)?;
                let (ex, seed) = connect_party(&config, id, &program)?;
                let mut party = Party::new(ex, &seed, config.fixed())?;
                let out = f(&mut party)?;
                party.exchange_mut().finish()?;
                Ok(out)
            })
        })
        .collect();
    let results = parties.into_iter().map(|h| h.join().unwrap()).collect();
    (dealer.join().unwrap(), results)
}

fn compute(p: &mut Party<veil_mpc::net::NetExchange>) -> Result<(Vec<f64>, Vec<u64>, u64)> {
    let n = p.parties();
    let values: Vec<f64> = (0..64)
        .map(|i| f64::from(i) - 20.5 + p.id() as f64)
        .collect();
    let mut shares = Vec::new();
    for owner in 0..n {
        shares.push(p.input(owner, (p.id() == owner).then_some(&values[..]), 64)?);
    }
    let prod = p.mul(&shares[0], &shares[1])?;
    let neg = p.ltz(&prod)?;
    let rounds = p.stats().total().rounds;
    Ok((p.open(&prod)?, p.open_raw(&neg)?, rounds))
}

#[test]
fn three_parties_and_a_dealer_over_mutual_tls() {
    let path = session("ok", 3, 30);
    let (dealer, results) = run_session(
        vec![path.clone(), path.clone(), path.clone()],
        &path,
        vec!["test".into(), "test".into(), "test".into()],
        compute,
    );
    let report = dealer.unwrap();
    assert!(
        report.requests >= 3 && report.correction_bytes > 0,
        "{report:?}"
    );
    for r in results {
        let (prod, neg, rounds) = r.unwrap();
        for i in 0..64 {
            let a = f64::from(i as u32) - 20.5;
            let want = a * (a + 1.0);
            assert!(
                (prod[i] - want).abs() <= 2.0 / 65536.0,
                "{} vs {want}",
                prod[i]
            );
            assert_eq!(neg[i], u64::from(want < 0.0));
        }
        assert!(rounds >= 3 + 2 + 6);
    }
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
}

#[test]
fn a_different_session_or_an_unknown_certificate_is_refused() {
    // Party 1 runs another program: both sides refuse, naming the difference.
    let path = session("hash", 2, 3);
    let (_, results) = run_session(
        vec![path.clone(), path.clone()],
        &path,
        vec!["stats".into(), "train".into()],
        compute,
    );
    let e1 = results[1].as_ref().unwrap_err().to_string();
    assert!(e1.contains("different session"), "{e1}");
    assert!(results[0].is_err());
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();

    // Party 1 holds a certificate from another CA (same file, other credentials).
    let a = session("cert-a", 2, 3);
    let b_dir = std::env::temp_dir().join(format!("veil-mpc-cert-b-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&b_dir);
    init(&b_dir, &["p0".into(), "p1".into()], 20000).unwrap();
    std::fs::copy(&a, b_dir.join("parties.toml")).unwrap();
    let (_, results) = run_session(
        vec![a.clone(), b_dir.join("parties.toml")],
        &a,
        vec!["test".into(), "test".into()],
        compute,
    );
    let e0 = results[0].as_ref().unwrap_err().to_string();
    let e1 = results[1].as_ref().unwrap_err().to_string();
    assert!(e0.contains("refused") || e0.contains("in time"), "{e0}");
    assert!(e1.contains("TLS") || e1.contains("certificate"), "{e1}");
    std::fs::remove_dir_all(a.parent().unwrap()).unwrap();
    std::fs::remove_dir_all(&b_dir).unwrap();
}

#[test]
fn a_party_that_disappears_stops_the_others_with_its_name() {
    let path = session("kill", 3, 5);
    let started = std::time::Instant::now();
    let (_, results) = run_session(
        vec![path.clone(), path.clone(), path.clone()],
        &path,
        vec!["test".into(), "test".into(), "test".into()],
        |p| {
            let x = p.input(0, (p.id() == 0).then_some(&[1.0, 2.0][..]), 2)?;
            if p.id() == 2 {
                // Party 2 crashes mid-protocol: its connections close.
                return Err(MpcError::InvalidParameter("killed".into()));
            }
            p.mul(&x, &x)
        },
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    for r in &results[..2] {
        let e = r.as_ref().unwrap_err();
        assert!(matches!(e, MpcError::PartyGone { party: 2, .. }), "{e}");
        assert!(e.to_string().contains("party 2"), "{e}");
    }
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
}

/// Party 1 sends party 0 a frame that is not whole ring elements and party 2 a frame of the
/// wrong round: both stop with an error naming party 1 and the phase, nobody hangs.
fn tampering(p: &mut Party<veil_mpc::net::NetExchange>) -> Result<Vec<usize>> {
    if p.id() == 1 {
        let ex = p.exchange_mut();
        ex.hazmat_send_raw_frame(0, 1, vec![1, 2, 3, 4, 5])?;
        ex.hazmat_send_raw_frame(2, 7, vec![0; 8])?;
        return Ok(Vec::new());
    }
    p.exchange_lengths(5)
}

#[test]
fn a_tampered_frame_stops_every_party_naming_the_sender() {
    let path = session("tamper", 3, 10);
    let started = std::time::Instant::now();
    let (_, results) = run_session(
        vec![path.clone(), path.clone(), path.clone()],
        &path,
        vec!["tamper".into(); 3],
        tampering,
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(8),
        "no hang"
    );
    match &results[0] {
        Err(MpcError::Malformed {
            party: 1,
            phase,
            why,
        }) => {
            assert_eq!(phase, "lengths");
            assert!(why.contains("not whole ring elements"), "{why}");
        }
        other => panic!("party 0: {other:?}"),
    }
    match &results[2] {
        Err(MpcError::Malformed {
            party: 1,
            phase,
            why,
        }) => {
            assert_eq!(phase, "lengths");
            assert!(why.contains("round 7"), "{why}");
        }
        Err(MpcError::PartyGone { party: 1, .. }) => {}
        other => panic!("party 2: {other:?}"),
    }
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}
