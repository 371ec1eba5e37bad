//! The transport against peers that misbehave (issue 12, items 22 and 25), over loopback with
//! real TLS: a silent connection, a session that differs, a party that stops early, frames
//! larger than the session allows, a peer that does not read.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use veil_mpc::config::{init, SessionConfig};
use veil_mpc::net::{connect_party, run_dealer, DealerReport, NetExchange};
use veil_mpc::protocol::Party;
use veil_mpc::{MpcError, Result};

/// A fresh session in a temp dir with free loopback ports, the given timeout, and `edit`
/// applied to the configuration.
fn session(name: &str, parties: usize, timeout: u64, edit: impl Fn(&mut SessionConfig)) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("veil-mpc-att-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let names: Vec<String> = (0..parties).map(|i| format!("p{i}")).collect();
    let path = init(&dir, &names, 20000).unwrap();
    let mut config = SessionConfig::load(&path).unwrap();
    config.use_loopback_ports().unwrap();
    config.session.timeout_secs = timeout;
    edit(&mut config);
    std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();
    path
}

type Program<T> = fn(&mut Party<NetExchange>) -> Result<T>;

fn spawn_dealer(path: &Path, program: &str) -> thread::JoinHandle<Result<DealerReport>> {
    let config = SessionConfig::load(path).unwrap();
    let program = program.to_string();
    thread::spawn(move || run_dealer(&config, &program))
}

/// Party `id` running `f`, ending its session cleanly if `f` succeeds.
fn spawn_party<T: Send + 'static>(
    path: &Path,
    id: usize,
    program: &str,
    f: Program<T>,
) -> thread::JoinHandle<Result<T>> {
    let path = path.to_path_buf();
    let program = program.to_string();
    thread::spawn(move || {
        let config = SessionConfig::load(&path)?;
        let (ex, seed) = connect_party(&config, id, &program)?;
        let mut party = Party::new(ex, &seed, config.fixed())?;
        let out = f(&mut party)?;
        party.exchange_mut().finish()?;
        Ok(out)
    })
}

/// Joins `h`, failing the test if it takes longer than `within`.
fn join_within<T: Send + 'static>(h: thread::JoinHandle<T>, within: Duration, what: &str) -> T {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(h.join());
    });
    match rx.recv_timeout(within) {
        Ok(r) => r.unwrap(),
        Err(_) => panic!("{what} still running after {within:?}: it hangs"),
    }
}

fn square_sum(p: &mut Party<NetExchange>) -> Result<f64> {
    let x = p.input(0, (p.id() == 0).then_some(&[1.5, -2.0, 3.0][..]), 3)?;
    let y = p.mul(&x, &x)?;
    Ok(p.open(&p.sum(&y))?[0])
}

/// Connects to `address` as soon as it listens and then says nothing.
fn silent_connection(address: &str) -> std::net::TcpStream {
    let started = Instant::now();
    loop {
        match std::net::TcpStream::connect(address) {
            Ok(s) => return s,
            Err(_) if started.elapsed() < Duration::from_secs(10) => {
                thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("{address}: {e}"),
        }
    }
}

#[test]
fn a_silent_connection_does_not_hang_the_session() {
    // A credential-less connection to party 0 and one to the dealer, made before the other
    // participants connect, used to hold the session forever (no timeout on the TLS accept).
    let path = session("silent", 2, 3, |_| {});
    let config = SessionConfig::load(&path).unwrap();
    let dealer = spawn_dealer(&path, "t");
    let p0 = spawn_party(&path, 0, "t", square_sum);
    let _quiet_dealer = silent_connection(&config.dealer.address);
    let _quiet_p0 = silent_connection(&config.parties[0].address);
    thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let p1 = spawn_party(&path, 1, "t", square_sum);
    let limit = Duration::from_secs(8);
    // The participants are accepted alongside the silent connections: the session succeeds.
    for h in [p0, p1] {
        let sum = join_within(h, limit, "a party").unwrap();
        assert!((sum - 15.25).abs() < 1e-3, "{sum}");
    }
    join_within(dealer, limit, "the dealer").unwrap();
    assert!(started.elapsed() < limit);
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[test]
fn a_different_session_stops_everyone_in_time_and_quotes_both_values() {
    let path = session("differ", 3, 3, |_| {});
    let started = Instant::now();
    let dealer = spawn_dealer(&path, "stats low=0");
    let parties: Vec<_> = ["stats low=0", "stats low=1", "stats low=0"]
        .iter()
        .enumerate()
        .map(|(id, program)| spawn_party(&path, id, program, square_sum))
        .collect();
    let limit = Duration::from_secs(6);
    let errors: Vec<String> = parties
        .into_iter()
        .map(|h| join_within(h, limit, "a party").unwrap_err().to_string())
        .collect();
    let dealer = join_within(dealer, limit, "the dealer")
        .unwrap_err()
        .to_string();
    assert!(started.elapsed() < limit, "{:?}", started.elapsed());
    // Both sides of the connection between party 0 and party 1 see at once what differs.
    for e in &errors[..2] {
        assert!(
            e.contains("`program: stats low=0`") && e.contains("`program: stats low=1`"),
            "{e}"
        );
    }
    // The dealer hears it from them (an authenticated abort), not from its deadline.
    assert!(dealer.contains("stats low=1"), "{dealer}");
    // Party 2 too, from their abort hellos, if it was up and setting up by then (or else at
    // its deadline).
    assert!(
        errors[2].contains("stats low=1") || errors[2].contains("in time"),
        "{}",
        errors[2]
    );
    let _ = std::fs::remove_dir_all(path.parent().unwrap());

    // A configuration that differs in one value: the line is quoted from both files.
    let a = session("differ-cfg", 2, 3, |_| {});
    let text = std::fs::read_to_string(&a).unwrap();
    let b = a.with_file_name("other.toml");
    std::fs::write(&b, text.replace("timeout_secs = 3", "timeout_secs = 4")).unwrap();
    let dealer = spawn_dealer(&a, "t");
    let p0 = spawn_party(&a, 0, "t", square_sum);
    let p1 = spawn_party(&b, 1, "t", square_sum);
    let e0 = join_within(p0, limit, "party 0").unwrap_err().to_string();
    let e1 = join_within(p1, limit, "party 1").unwrap_err().to_string();
    for e in [&e0, &e1] {
        assert!(
            e.contains("`timeout_secs = 3`") && e.contains("`timeout_secs = 4`"),
            "{e}"
        );
    }
    let _ = join_within(dealer, limit, "the dealer");
    let _ = std::fs::remove_dir_all(a.parent().unwrap());
}

#[test]
fn the_dealer_fails_when_the_last_party_stops_early() {
    // The last party stops in the middle (as a killed one would): the dealer used to take the
    // end of the connection for a clean end and succeed.
    let path = session("early", 2, 3, |_| {});
    let dealer = spawn_dealer(&path, "t");
    let p0 = spawn_party(&path, 0, "t", square_sum);
    let p1 = spawn_party(&path, 1, "t", |p| {
        let x = p.input(0, None, 3)?;
        let _ = p.mul(&x, &x)?;
        Err::<(), _>(MpcError::InvalidParameter("stopped".into()))
    });
    let limit = Duration::from_secs(8);
    let _ = join_within(p1, limit, "party 1");
    let e0 = join_within(p0, limit, "party 0").unwrap_err();
    assert!(matches!(e0, MpcError::PartyGone { party: 1, .. }), "{e0}");
    let e = join_within(dealer, limit, "the dealer").unwrap_err();
    assert!(matches!(e, MpcError::PartyGone { party: 1, .. }), "{e}");
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[test]
fn frames_beyond_the_sessions_limit_are_refused() {
    let path = session("frame", 2, 3, |c| c.session.max_frame_mib = 1);
    let dealer = spawn_dealer(&path, "t");
    // Party 1 sends a 2 MiB frame outside the protocol: party 0 refuses it by its declared
    // length, naming party 1.
    let p0 = spawn_party(&path, 0, "t", |p| p.exchange_lengths(1));
    let p1 = spawn_party(&path, 1, "t", |p| {
        p.exchange_mut()
            .hazmat_send_raw_frame(0, 1, vec![0; 2 << 20])?;
        p.exchange_lengths(1)
    });
    let limit = Duration::from_secs(8);
    match join_within(p0, limit, "party 0") {
        Err(MpcError::Malformed { party: 1, why, .. }) => {
            assert!(why.contains("exceeds the limit"), "{why}");
        }
        other => panic!("{other:?}"),
    }
    let _ = join_within(p1, limit, "party 1");
    let _ = join_within(dealer, limit, "the dealer");
    let _ = std::fs::remove_dir_all(path.parent().unwrap());

    // A party refuses to send what its peers would refuse.
    let path = session("frame-send", 2, 3, |c| c.session.max_frame_mib = 1);
    let dealer = spawn_dealer(&path, "t");
    let big = |p: &mut Party<NetExchange>| {
        let n = 100_000; // 1.6 MB to open for a product
        let x = p.input(0, (p.id() == 0).then_some(&vec![1.0; n][..]), n)?;
        p.mul(&x, &x).map(|_| ())
    };
    let p0 = spawn_party(&path, 0, "t", big);
    let p1 = spawn_party(&path, 1, "t", big);
    for h in [p0, p1] {
        let e = join_within(h, limit, "a party").unwrap_err().to_string();
        assert!(e.contains("max_frame_mib") || e.contains("stopped"), "{e}");
    }
    let _ = join_within(dealer, limit, "the dealer");
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[test]
fn a_peer_that_does_not_read_cannot_grow_the_senders_queue() {
    // Party 1 queues 100 frames of 1 MiB for party 0, which reads nothing for a while: the
    // queues used to grow without bound; now the sender is held back and fails after the
    // timeout.
    let path = session("flood", 2, 2, |_| {});
    let dealer = spawn_dealer(&path, "t");
    let p0 = spawn_party(&path, 0, "t", |_| {
        thread::sleep(Duration::from_secs(4));
        Ok(0usize)
    });
    let p1 = spawn_party(&path, 1, "t", |p| {
        let mut sent = 0usize;
        for _ in 0..100 {
            match p
                .exchange_mut()
                .hazmat_send_raw_frame(0, 1, vec![0; 1 << 20])
            {
                Ok(()) => sent += 1,
                Err(e) => {
                    assert!(e.to_string().contains("read nothing"), "{e}");
                    return Ok(sent);
                }
            }
        }
        Ok(sent)
    });
    let limit = Duration::from_secs(10);
    let sent = join_within(p1, limit, "party 1").unwrap();
    assert!(sent < 40, "{sent} MiB queued for a peer that reads nothing");
    let _ = join_within(p0, limit, "party 0");
    let _ = join_within(dealer, limit, "the dealer");
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}
