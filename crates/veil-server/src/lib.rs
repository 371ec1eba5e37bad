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
//! - [`dp`]: DP SQL for analysts (API tokens, per-analyst budgets, dry runs, JSON and CSV);
//! - [`client`]: clients of those services (nonce, attest, release, JWKS) and a simulated
//!   workload; [`room::RoomClient`]: a party's client of a room;
//! - [`serve`]: serve a router until shutdown, recording the peer's address.

pub mod app;
pub mod attest;
pub mod client;
pub mod dp;
pub mod error;
pub mod kbs;
pub mod room;

pub use error::{ErrorBody, HttpError};

use veil_attest::{Result, TeeError};

/// The peer's address, when the server was started with [`serve`] (which records it).
pub type Peer = Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>;

/// The IP address of a [`Peer`].
pub fn peer_ip(peer: &Peer) -> Option<std::net::IpAddr> {
    peer.as_ref().map(|p| p.0 .0.ip())
}

/// Serves `router` on `listener` until `shutdown` resolves. Handlers see the peer's address
/// (see [`Peer`]).
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
    .map_err(|e| TeeError::Network(format!("server: {e}")))
}
