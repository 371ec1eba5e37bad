//! The attestation service's HTTP routes (`veil attest serve`).
//!
//! | route | what |
//! |---|---|
//! | `GET /nonce` | a fresh single-use nonce and its expiry |
//! | `POST /attest` | [`AttestRequest`] → verify → bind → policy → [`AttestResponse`] (a JWT) |
//! | `GET /.well-known/jwks.json` | the token signing key(s), for relying parties |
//! | `GET /audit/head` | the audit log's signed head ([`veil_attest::audit::SignedHead`]), if the log is signed |
//! | `GET /health` | `ok` |
//!
//! Binary fields are base64url (padding optional). Errors are `{"error": "...", "kind": "..."}`
//! with 400 (malformed), 401 (nonce), 403 (evidence or policy refused), 503 with
//! `Retry-After` (overloaded: see [`veil_attest::service::NonceStore`]) or 500 ([`veil_attest::error`]).

use std::sync::Arc;

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};

use veil_attest::service::{AttestRequest, AttestResponse, AttestationService, NonceResponse};
use veil_attest::token::Jwks;
use veil_attest::TeeError;

use crate::error::HttpError;
use crate::{peer_ip, Peer};

/// The service's HTTP routes.
pub fn router(service: Arc<AttestationService>) -> Router {
    Router::new()
        .route("/nonce", get(nonce_route))
        .route("/attest", post(attest_route))
        .route("/.well-known/jwks.json", get(jwks_route))
        .route(
            "/audit/head",
            get(|State(s): State<Arc<AttestationService>>| async move {
                s.audit_head().map(Json).map_err(HttpError::from)
            }),
        )
        .route("/health", get(|| async { "ok" }))
        .with_state(service)
}

/// A fresh single-use nonce and its expiry.
#[utoipa::path(get, path = "/attest/nonce", tag = "attestation",
    responses((status = 200, body = Object), (status = 503, body = crate::ErrorBody)))]
async fn nonce_route(
    State(s): State<Arc<AttestationService>>,
) -> std::result::Result<Json<NonceResponse>, HttpError> {
    Ok(Json(s.nonce()?))
}

/// The token signing keys, for relying parties.
#[utoipa::path(get, path = "/attest/.well-known/jwks.json", tag = "attestation",
    responses((status = 200, body = Object)))]
async fn jwks_route(State(s): State<Arc<AttestationService>>) -> Json<Jwks> {
    Json(s.jwks())
}

/// Evidence → verification, binding, policy → a token (JWT).
#[utoipa::path(post, path = "/attest/attest", tag = "attestation",
    request_body(content = Object, description = "evidence, nonce, runtime public key (base64url)"),
    responses((status = 200, description = "the token", body = Object),
        (status = 400, body = crate::ErrorBody), (status = 401, description = "nonce refused", body = crate::ErrorBody),
        (status = 403, description = "evidence or policy refused", body = crate::ErrorBody)))]
async fn attest_route(
    State(s): State<Arc<AttestationService>>,
    peer: Peer,
    body: axum::body::Bytes,
) -> std::result::Result<Json<AttestResponse>, HttpError> {
    let req: AttestRequest = serde_json::from_slice(&body)
        .map_err(|e| TeeError::BadRequest(format!("attest request: {e}")))?;
    let client = peer_ip(&peer);
    // Verification is CPU work: keep it off the async workers.
    let out = tokio::task::spawn_blocking(move || s.attest_from(&req, client))
        .await
        .map_err(|_| TeeError::Internal("attestation task failed"))??;
    Ok(Json(out))
}
