//! # veil-server: every HTTP surface of Veil
//!
//! The domain crates hold the logic and no HTTP: [`veil_attest`] (evidence, claims, policies,
//! tokens, the attestation service's nonces and decisions), [`veil_kbs`] (the secret store and
//! secure key release) and [`veil_room`] (measured WebAssembly workloads and data rooms). This
//! crate puts them on the network:
//!
//! - [`error`]: the one mapping from [`veil_attest::TeeError`] to an HTTP status and body;
//! - [`attest`], [`kbs`], [`room`]: the routers of the attestation service, the key broker and a
//!   data room;
//! - [`app`]: `veil serve` — one process mounting what its configuration enables;
//!   [`mount`]: the attestation service and key broker built from their sections;
//!   [`metrics`]: Prometheus metrics with labels from a closed set; [`openapi`]: the OpenAPI 3
//!   description of what is mounted, generated from the handlers;
//! - [`dp`]: DP SQL for analysts (API tokens, per-analyst budgets, dry runs, JSON and CSV);
//! - [`mpc`]: MPC coordination (sessions, enrollment by certificate request, downloads);
//! - [`inference`]: encrypted inference (clients' public contexts, ciphertexts in and out);
//! - [`auth`]: API tokens, kept as SHA-256 and compared in constant time;
//! - [`client`]: clients of those services (nonce, attest, release, JWKS) and a simulated
//!   workload; [`room::RoomClient`]: a party's client of a room;
//! - [`serve`], [`serve_tls`]: serve a router until shutdown, recording the peer's address;
//!   [`tls`]: the self-signed default, certificates from files, plain HTTP on loopback only.

pub mod app;
pub mod attest;
pub mod auth;
pub mod client;
pub mod console;
pub mod dp;
pub mod error;
pub mod inference;
pub mod kbs;
pub mod metrics;
pub mod mount;
pub mod mpc;
pub mod openapi;
pub mod room;
pub mod tls;

pub use error::{ErrorBody, HttpError};

use veil_attest::Result;

/// The peer's address, when the server was started with [`serve`] (which records it).
pub type Peer = Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>;

/// The IP address of a [`Peer`].
pub fn peer_ip(peer: &Peer) -> Option<std::net::IpAddr> {
    peer.as_ref().map(|p| p.0 .0.ip())
}

/// How long a client may take to send a request's headers before its connection is closed
/// (slowloris).
pub const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// How long a graceful shutdown waits for requests in flight.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

/// Serves `router` on `listener` until `shutdown` resolves, closing connections whose
/// headers take longer than [`HEADER_READ_TIMEOUT`]. Handlers see the peer's address (see
/// [`Peer`]).
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    serve_with(listener, router, shutdown, HEADER_READ_TIMEOUT).await
}

/// [`serve`] with another header-read timeout.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    header_read_timeout: std::time::Duration,
) -> Result<()> {
    let options = ServeOptions {
        header_read_timeout,
        ..ServeOptions::default()
    };
    serve_tls(listener, router, shutdown, options).await
}

/// How [`serve_tls`] serves.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Deadline for a request's headers, and for the TLS handshake.
    pub header_read_timeout: std::time::Duration,
    /// TLS, or plain HTTP when `None`.
    pub tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    /// Open connections one IP address may hold; a connection beyond is closed at once.
    pub max_connections_per_ip: usize,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            header_read_timeout: HEADER_READ_TIMEOUT,
            tls: None,
            max_connections_per_ip: 256,
        }
    }
}

/// Open connections per IP address; a slot is given back when its guard drops.
#[derive(Clone, Default)]
struct PerIp(std::sync::Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>);

struct Slot(PerIp, std::net::IpAddr);

impl PerIp {
    fn take(&self, ip: std::net::IpAddr, max: usize) -> Option<Slot> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(Slot(self.clone(), ip))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut map = (self.0).0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.1);
            }
        }
    }
}

/// Serves `router`, over TLS when `options.tls` is given. HTTP/1.1 through hyper with a
/// timer, so that hyper's header-read timeout is in force (`axum::serve` installs no timer,
/// which leaves a connection that never finishes its headers open for ever); the TLS handshake
/// has the same deadline, and one IP address holds at most `max_connections_per_ip`
/// connections. On `shutdown` the listener closes and requests in flight get up to
/// [`SHUTDOWN_GRACE`] to finish.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    options: ServeOptions,
) -> Result<()> {
    let ServeOptions {
        header_read_timeout,
        tls,
        max_connections_per_ip,
    } = options;
    let per_ip = PerIp::default();
    use hyper_util::rt::{TokioIo, TokioTimer};
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let mut shutdown = std::pin::pin!(shutdown);
    // Every connection task holds a clone of the router and so of the state behind it (a
    // room's locked state directory, a ledger): `serve` returns only once they have ended,
    // so the state is released when it returns and another server may open it.
    let mut connections = tokio::task::JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(slot) = per_ip.take(peer.ip(), max_connections_per_ip.max(1)) else {
            tracing::debug!(peer = %peer.ip(), "too many connections from one address");
            drop(stream);
            continue;
        };
        let app = router
            .clone()
            .layer(axum::Extension(axum::extract::ConnectInfo(peer)));
        let service = hyper_util::service::TowerToHyperService::new(app);
        let http = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(header_read_timeout)
            .clone();
        let watcher = graceful.watcher();
        let acceptor = acceptor.clone();
        connections.spawn(async move {
            let _slot = slot;
            let result = match acceptor {
                None => {
                    watcher
                        .watch(http.serve_connection(TokioIo::new(stream), service))
                        .await
                }
                Some(acceptor) => {
                    // A client that opens a connection and never completes the handshake is
                    // cut off like one that never finishes its headers.
                    let stream =
                        match tokio::time::timeout(header_read_timeout, acceptor.accept(stream))
                            .await
                        {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => {
                                tracing::debug!(error = %e, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!("TLS handshake timed out");
                                return;
                            }
                        };
                    watcher
                        .watch(http.serve_connection(TokioIo::new(stream), service))
                        .await
                }
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    drop(router);
    let drained = async {
        graceful.shutdown().await;
        while connections.join_next().await.is_some() {}
    };
    if tokio::time::timeout(SHUTDOWN_GRACE, drained).await.is_err() {
        tracing::warn!("requests still in flight after the grace period were dropped");
        connections.shutdown().await;
    }
    Ok(())
}
