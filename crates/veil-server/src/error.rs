//! One mapping from Veil's errors to HTTP: status, a stable `kind`, the body.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;

use veil_attest::TeeError;

/// An error as an HTTP response: a status, a stable `kind`, a reason in words, and for 503 a
/// `Retry-After`. Every route answers errors through this one type.
#[derive(Debug)]
pub struct HttpError {
    /// The status.
    pub status: StatusCode,
    /// The stable machine-readable kind.
    pub kind: &'static str,
    /// The reason, in words.
    pub message: String,
    /// Seconds after which a retry can succeed (503).
    pub retry_after: Option<u64>,
}

impl HttpError {
    /// An error with this status, kind and reason.
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
            retry_after: None,
        }
    }
}

impl From<TeeError> for HttpError {
    fn from(e: TeeError) -> Self {
        let retry_after = match &e {
            TeeError::Overloaded { retry_after, .. } => Some(*retry_after),
            _ => None,
        };
        Self {
            status: status_of(&e),
            kind: kind_of(&e),
            message: e.to_string(),
            retry_after,
        }
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
        let body = json!({ "error": self.message, "kind": self.kind });
        let mut response = (self.status, Json(body)).into_response();
        if let Some(retry_after) = self.retry_after {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(retry_after),
            );
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

/// Error body of every route.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
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
        let response = HttpError::from(e).into_response();
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
