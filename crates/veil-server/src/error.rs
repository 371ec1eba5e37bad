//! One mapping from Veil's errors to HTTP: status, a stable `kind`, the body.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;

use veil_attest::TeeError;

/// An error as an HTTP response.
#[derive(Debug)]
pub struct HttpError(pub TeeError);

impl From<TeeError> for HttpError {
    fn from(e: TeeError) -> Self {
        Self(e)
    }
}

/// The HTTP status for an error.
pub fn status_of(e: &TeeError) -> StatusCode {
    match e {
        TeeError::BadRequest(_) | TeeError::UnknownEvidence(_) => StatusCode::BAD_REQUEST,
        TeeError::NonceRejected(_) | TeeError::TokenRejected(_) => StatusCode::UNAUTHORIZED,
        TeeError::SecretNotFound(_) => StatusCode::NOT_FOUND,
        TeeError::Rejected(_)
        | TeeError::BindingMismatch
        | TeeError::PolicyDenied { .. }
        | TeeError::MissingInput(_)
        | TeeError::VerifierNotEnabled(..)
        | TeeError::RoomRefused(_) => StatusCode::FORBIDDEN,
        TeeError::RoomState(_) => StatusCode::CONFLICT,
        TeeError::Workload(_) => StatusCode::UNPROCESSABLE_ENTITY,
        TeeError::Overloaded { .. } => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The `kind` field of an error body.
pub fn kind_of(e: &TeeError) -> &'static str {
    match e {
        TeeError::BadRequest(_) => "bad_request",
        TeeError::UnknownEvidence(_) => "unknown_evidence",
        TeeError::NonceRejected(_) => "nonce_rejected",
        TeeError::TokenRejected(_) => "token_rejected",
        TeeError::SecretNotFound(_) => "secret_not_found",
        TeeError::Rejected(_) => "evidence_rejected",
        TeeError::BindingMismatch => "binding_mismatch",
        TeeError::PolicyDenied { .. } => "policy_denied",
        TeeError::MissingInput(_) | TeeError::VerifierNotEnabled(..) => "not_verifiable",
        TeeError::RoomRefused(_) => "room_refused",
        TeeError::RoomState(_) => "room_state",
        TeeError::Workload(_) => "workload_failed",
        TeeError::Overloaded { .. } => "overloaded",
        _ => "internal",
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let body = json!({ "error": self.0.to_string(), "kind": kind_of(&self.0) });
        let mut response = (status_of(&self.0), Json(body)).into_response();
        if let TeeError::Overloaded { retry_after, .. } = &self.0 {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(*retry_after),
            );
        }
        response
    }
}

/// Error body of both services.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The reason, in words.
    pub error: String,
    /// A stable machine-readable kind (`nonce_rejected`, `policy_denied`, …).
    pub kind: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_replay_cache_is_503_with_a_retry_hint() {
        let e = TeeError::Overloaded {
            reason: "the replay cache is full".into(),
            retry_after: 7,
        };
        assert_eq!(status_of(&e), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(kind_of(&e), "overloaded");
        let response = HttpError(e).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            response.headers().get(axum::http::header::RETRY_AFTER),
            Some(&axum::http::HeaderValue::from(7u64))
        );
    }

    #[test]
    fn refusals_are_4xx_and_internal_errors_500() {
        assert_eq!(status_of(&TeeError::BadRequest("x".into())), 400);
        assert_eq!(status_of(&TeeError::NonceRejected("x".into())), 401);
        assert_eq!(status_of(&TeeError::BindingMismatch), 403);
        assert_eq!(status_of(&TeeError::Internal("x")), 500);
    }
}
