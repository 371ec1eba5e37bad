//! The key broker's HTTP routes (`veil kbs serve`).
//!
//! | route | what |
//! |---|---|
//! | `POST /release/{name}` | body `{"token": "<JWT>"}` (or `Authorization: Bearer`) → [`ReleasedSecret`] |
//! | `GET /audit/head` | the audit log's signed head ([`veil_attest::audit::SignedHead`]), if the log is signed |
//! | `GET /health` | `ok` |

use std::sync::Arc;

use axum::extract::{Path as UrlPath, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Json, Router};

use veil_attest::TeeError;
use veil_kbs::{KeyBroker, ReleaseRequest, ReleasedSecret};

use crate::error::HttpError;

/// The broker's HTTP routes.
pub fn router(broker: Arc<KeyBroker>) -> Router {
    Router::new()
        .route("/release/{name}", post(release_route))
        .route(
            "/audit/head",
            get(|State(b): State<Arc<KeyBroker>>| async move {
                b.audit_head().map(Json).map_err(HttpError::from)
            }),
        )
        .route("/health", get(|| async { "ok" }))
        .with_state(broker)
}

/// Releases a secret sealed to the attested key named in the token.
#[utoipa::path(post, path = "/kbs/release/{name}", tag = "key broker",
    params(("name" = String, Path, description = "the secret")),
    request_body(content = Object, description = "{\"token\": \"<JWT>\"} (or Authorization: Bearer)"),
    responses((status = 200, description = "the HPKE-sealed secret", body = Object),
        (status = 401, description = "token refused", body = crate::ErrorBody),
        (status = 403, description = "the release policy refused", body = crate::ErrorBody),
        (status = 404, body = crate::ErrorBody)))]
async fn release_route(
    State(b): State<Arc<KeyBroker>>,
    UrlPath(name): UrlPath<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> std::result::Result<Json<ReleasedSecret>, HttpError> {
    let bearer = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let token = match bearer {
        Some(t) => t,
        None => {
            let req: ReleaseRequest = serde_json::from_slice(&body).map_err(|e| {
                TeeError::BadRequest(format!(
                    "release request: {e} (send {{\"token\": ...}} or Authorization: Bearer)"
                ))
            })?;
            req.token
        }
    };
    Ok(Json(b.release(&name, &token).await?))
}
