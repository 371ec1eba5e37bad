//! `veil serve` over TLS: the self-signed default, pinned by clients; what a client that
//! trusts another certificate, a plain-HTTP client and a client that never completes its
//! handshake get; plain HTTP refused off loopback.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    reason = "tests"
)]

use std::io::Read;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use veil_server::tls::{client_trusting, setup, TlsConfig, TlsMode};

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("veil-tls-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn self_signed() -> TlsConfig {
    TlsConfig::default()
}

/// Starts a TLS server (header/handshake deadline `timeout`) on loopback; returns its port.
async fn start(tls: &veil_server::tls::Tls, timeout: Duration) -> u16 {
    let app = axum::Router::new().route("/health", axum::routing::get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tls.server.clone();
    tokio::spawn(veil_server::serve_tls(
        listener,
        app,
        std::future::pending(),
        veil_server::ServeOptions {
            header_read_timeout: timeout,
            tls: Some(server),
            ..veil_server::ServeOptions::default()
        },
    ));
    port
}

/// The certificate is made on first start and kept: a restart serves the same certificate
/// (clients keep trusting it), and the key file is readable by its owner only.
#[test]
fn the_self_signed_certificate_is_made_once_and_kept() {
    let d = dir("kept");
    let first = setup(&self_signed(), &d, "127.0.0.1:0").unwrap().unwrap();
    let again = setup(&self_signed(), &d, "127.0.0.1:0").unwrap().unwrap();
    assert_eq!(first.fingerprint, again.fingerprint);
    assert_eq!(first.cert_path, d.join("veil-tls/cert.pem"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(d.join("veil-tls/key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "key.pem mode {mode:o}");
    }
    let _ = std::fs::remove_dir_all(&d);
}

/// A client pinning the server's certificate gets through, by name and by address; a client
/// that trusts another certificate (a man in the middle's view reversed: the server is not the
/// one it expects) is refused, and so is a plain-HTTP client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_client_trusting_the_certificate_gets_through() {
    let d = dir("pin");
    let tls = setup(&self_signed(), &d, "127.0.0.1:0").unwrap().unwrap();
    let port = start(&tls, Duration::from_secs(5)).await;
    let pem = std::fs::read(&tls.cert_path).unwrap();
    let client = client_trusting(&pem).unwrap();
    for host in ["localhost", "127.0.0.1"] {
        let r = client
            .get(format!("https://{host}:{port}/health"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), "ok");
    }
    // Another server's self-signed certificate: the handshake fails.
    let other = dir("pin-other");
    let other_tls = setup(&self_signed(), &other, "127.0.0.1:0")
        .unwrap()
        .unwrap();
    assert_ne!(other_tls.fingerprint, tls.fingerprint);
    let stranger = client_trusting(&std::fs::read(&other_tls.cert_path).unwrap()).unwrap();
    assert!(stranger
        .get(format!("https://localhost:{port}/health"))
        .send()
        .await
        .is_err());
    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = veil_server::client::http_client().unwrap();
    let r = plain
        .get(format!("http://127.0.0.1:{port}/health"))
        .send()
        .await;
    assert!(r.is_err() || r.unwrap().status() != 200);
    let _ = std::fs::remove_dir_all(&d);
    let _ = std::fs::remove_dir_all(&other);
}

/// Slowloris before TLS: a client that opens a connection and never sends its ClientHello is
/// cut off at the deadline, not held open for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_completes_the_handshake_is_cut_off() {
    let d = dir("slow");
    let tls = setup(&self_signed(), &d, "127.0.0.1:0").unwrap().unwrap();
    let port = start(&tls, Duration::from_secs(1)).await;
    let closed = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
        let t = Instant::now();
        let mut buf = [0u8; 16];
        // Closed by the server: a read of 0 bytes (or a reset), well before our own timeout.
        let n = s.read(&mut buf);
        (
            matches!(n, Ok(0))
                || n.as_ref().is_err_and(|e| {
                    e.kind() != std::io::ErrorKind::WouldBlock
                        && e.kind() != std::io::ErrorKind::TimedOut
                }),
            t.elapsed(),
        )
    })
    .await
    .unwrap();
    assert!(closed.0, "the connection stayed open ({:?})", closed.1);
    assert!(closed.1 < Duration::from_secs(5), "{:?}", closed.1);
    let _ = std::fs::remove_dir_all(&d);
}

/// Plain HTTP is refused unless the server listens on loopback only; certificate files that
/// are missing or do not match are refused at start with the file named.
#[test]
fn plain_http_off_loopback_and_bad_certificate_files_are_refused() {
    let d = dir("refuse");
    let off = TlsConfig {
        mode: TlsMode::Off,
        ..TlsConfig::default()
    };
    assert!(setup(&off, &d, "127.0.0.1:8080").unwrap().is_none());
    assert!(setup(&off, &d, "[::1]:8080").unwrap().is_none());
    let err = setup(&off, &d, "0.0.0.0:8080").unwrap_err();
    assert!(err.contains("loopback"), "{err}");
    let files = TlsConfig {
        mode: TlsMode::Files,
        ..TlsConfig::default()
    };
    assert!(setup(&files, &d, "0.0.0.0:443")
        .unwrap_err()
        .contains("cert"));
    // A certificate with another server's key.
    let a = setup(&self_signed(), &d.join("a"), "127.0.0.1:0")
        .unwrap()
        .unwrap();
    let b = setup(&self_signed(), &d.join("b"), "127.0.0.1:0")
        .unwrap()
        .unwrap();
    let mixed = TlsConfig {
        mode: TlsMode::Files,
        cert: Some(a.cert_path.clone()),
        key: Some(b.cert_path.with_file_name("key.pem")),
        ..TlsConfig::default()
    };
    let err = setup(&mixed, &d, "0.0.0.0:443").unwrap_err();
    assert!(err.contains("usable certificate"), "{err}");
    let missing = TlsConfig {
        mode: TlsMode::Files,
        cert: Some(d.join("nope.pem")),
        key: Some(d.join("nope.key")),
        ..TlsConfig::default()
    };
    assert!(setup(&missing, &d, "0.0.0.0:443")
        .unwrap_err()
        .contains("nope.pem"));
    let _ = std::fs::remove_dir_all(&d);
}
