//! The attestation service (`veil attest serve`): single-use nonces, evidence verification,
//! policy evaluation and signed attestation tokens, over HTTP (axum).
//!
//! | route | what |
//! |---|---|
//! | `GET /nonce` | a fresh single-use nonce and its expiry |
//! | `POST /attest` | [`AttestRequest`] → verify → bind → policy → [`AttestResponse`] (a JWT) |
//! | `GET /.well-known/jwks.json` | the token signing key(s), for relying parties |
//! | `GET /health` | `ok` |
//!
//! Binary fields are base64url (padding optional). Errors are `{"error": "...", "kind": "..."}`
//! with 400 (malformed), 401 (nonce), 403 (evidence or policy refused) or 500. Every decision,
//! issued or refused, is appended to the audit log before the response is sent.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::audit::AuditLog;
use crate::binding::check_binding;
use crate::claims::VerifiedClaims;
use crate::error::{Result, TeeError};
use crate::evidence::{detect, EvidenceKind, Verifier};
use crate::policy::Policy;
use crate::token::{AttestationClaims, Jwks, TokenIssuer, ISSUER};

/// Largest evidence accepted by the service.
pub const MAX_EVIDENCE_LEN: usize = 64 * 1024;
/// Largest runtime data accepted.
pub const MAX_RUNTIME_DATA_LEN: usize = 16 * 1024;
/// Most outstanding nonces; beyond it, `GET /nonce` answers 503 until some expire.
pub const MAX_OUTSTANDING_NONCES: usize = 1 << 20;

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A clock (Unix seconds); tests substitute their own.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(unix_now)
}

/// Decodes base64url (or standard base64), with or without padding.
pub fn decode_b64(field: &str, text: &str) -> Result<Vec<u8>> {
    let t = text.trim_end_matches('=');
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(t)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(t))
        .map_err(|e| TeeError::BadRequest(format!("{field} is not base64: {e}")))
}

/// Encodes base64url without padding.
pub fn encode_b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The trust anchors the service verifies evidence with.
#[derive(Default)]
pub struct Verifiers {
    /// SGX/TDX collateral sets (feature `dcap`); a quote passes if one of them verifies it.
    #[cfg(feature = "dcap")]
    pub dcap: Vec<crate::evidence::dcap::DcapVerifier>,
    /// SEV-SNP VCEKs (feature `snp`).
    #[cfg(feature = "snp")]
    pub snp: Vec<crate::evidence::snp::SnpVerifier>,
    /// Simulated platform keys.
    pub sim: Vec<crate::evidence::sim::SimVerifier>,
    /// Fetch SGX/TDX collateral from a PCCS when no stored collateral verifies a quote.
    #[cfg(feature = "dcap")]
    pub pccs: Option<crate::pccs::CollateralCache>,
    /// Fixed verification time for DCAP/SNP collateral (recorded evidence); `None`: now.
    pub verify_at: Option<u64>,
}

impl std::fmt::Debug for Verifiers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifiers").finish_non_exhaustive()
    }
}

fn first_success(
    candidates: Vec<&dyn Verifier>,
    evidence: &[u8],
    now: u64,
    missing: &'static str,
) -> Result<VerifiedClaims> {
    let mut first_err = None;
    for v in candidates {
        match v.verify(evidence, now) {
            Ok(c) => return Ok(c),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    Err(first_err.unwrap_or(TeeError::MissingInput(missing)))
}

impl Verifiers {
    /// Verifies evidence of any configured kind.
    pub fn verify(&self, evidence: &[u8], now: u64) -> Result<VerifiedClaims> {
        let at = self.verify_at.unwrap_or(now);
        match detect(evidence)? {
            EvidenceKind::Simulated => first_success(
                self.sim.iter().map(|v| v as &dyn Verifier).collect(),
                evidence,
                now,
                "simulated platform key (the service trusts no simulated platform)",
            ),
            #[cfg(feature = "dcap")]
            EvidenceKind::SgxQuote | EvidenceKind::TdxQuote => {
                let stored = first_success(
                    self.dcap.iter().map(|v| v as &dyn Verifier).collect(),
                    evidence,
                    at,
                    "DCAP collateral (the service was started without --collateral or --pccs)",
                );
                match (&self.pccs, stored) {
                    (_, Ok(claims)) => Ok(claims),
                    (Some(cache), Err(stored_err)) => {
                        let fetched = cache.verifier_for(evidence, now)?;
                        fetched.verify(evidence, at).map_err(|e| {
                            if self.dcap.is_empty() {
                                e
                            } else {
                                TeeError::Rejected(format!("{e} (stored collateral: {stored_err})"))
                            }
                        })
                    }
                    (None, Err(e)) => Err(e),
                }
            }
            #[cfg(feature = "snp")]
            EvidenceKind::SnpReport => first_success(
                self.snp.iter().map(|v| v as &dyn Verifier).collect(),
                evidence,
                at,
                "VCEK certificate (the service was started without --vcek)",
            ),
            #[allow(unreachable_patterns, reason = "reachable when a feature is off")]
            other => Err(TeeError::VerifierNotEnabled(
                match other {
                    EvidenceKind::SnpReport => "SEV-SNP",
                    _ => "SGX/TDX",
                },
                match other {
                    EvidenceKind::SnpReport => "snp",
                    _ => "dcap",
                },
            )),
        }
    }
}

/// Single-use, expiring nonces.
#[derive(Debug, Default)]
pub struct NonceStore {
    inner: Mutex<NonceState>,
}

#[derive(Debug, Default)]
struct NonceState {
    outstanding: HashMap<[u8; 32], u64>,
    /// Used nonces until their expiry, to name replays as such.
    used: HashMap<[u8; 32], u64>,
}

impl NonceStore {
    /// Issues a fresh 32-byte nonce valid until `now + ttl`.
    pub fn issue(&self, now: u64, ttl: u64) -> Result<[u8; 32]> {
        let mut nonce = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce)
            .map_err(|_| TeeError::Crypto("no system randomness"))?;
        let mut s = self
            .inner
            .lock()
            .map_err(|_| TeeError::Internal("nonce store poisoned"))?;
        if s.outstanding.len() >= MAX_OUTSTANDING_NONCES {
            s.outstanding.retain(|_, exp| *exp > now);
            s.used.retain(|_, exp| *exp > now);
            if s.outstanding.len() >= MAX_OUTSTANDING_NONCES {
                return Err(TeeError::NonceRejected(
                    "too many outstanding nonces; retry later".into(),
                ));
            }
        }
        s.outstanding.insert(nonce, now.saturating_add(ttl));
        Ok(nonce)
    }

    /// Consumes `nonce`: succeeds once, before its expiry.
    pub fn consume(&self, nonce: &[u8], now: u64) -> Result<()> {
        let key: [u8; 32] = nonce.try_into().map_err(|_| {
            TeeError::NonceRejected(format!("a nonce is 32 bytes, not {}", nonce.len()))
        })?;
        let mut s = self
            .inner
            .lock()
            .map_err(|_| TeeError::Internal("nonce store poisoned"))?;
        if s.used.len() > MAX_OUTSTANDING_NONCES {
            s.used.retain(|_, exp| *exp > now);
        }
        match s.outstanding.remove(&key) {
            Some(exp) if now < exp => {
                s.used.insert(key, exp);
                Ok(())
            }
            Some(exp) => Err(TeeError::NonceRejected(format!(
                "nonce expired at {exp} (now {now})"
            ))),
            None if s.used.contains_key(&key) => Err(TeeError::NonceRejected(
                "nonce already used (replay)".into(),
            )),
            None => Err(TeeError::NonceRejected(
                "unknown nonce (never issued here, or expired long ago)".into(),
            )),
        }
    }
}

/// `GET /nonce` response.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NonceResponse {
    /// The nonce (base64url, 32 bytes).
    pub nonce: String,
    /// Expiry (Unix seconds).
    pub expires_at: u64,
}

/// `POST /attest` request.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttestRequest {
    /// The evidence (base64url): a quote, an SNP report or simulated evidence.
    pub evidence: String,
    /// The nonce from `GET /nonce`.
    pub nonce: String,
    /// The workload's runtime public key (base64url), bound in the report data.
    pub runtime_public_key: String,
    /// Other runtime data bound in the report data (base64url; default empty).
    #[serde(default)]
    pub runtime_data: String,
}

/// `POST /attest` response.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AttestResponse {
    /// The attestation token (JWT).
    pub token: String,
    /// Its claims, for convenience (the token is authoritative).
    pub claims: AttestationClaims,
}

/// Configuration and state of the attestation service.
pub struct AttestationService {
    verifiers: Verifiers,
    policy: Policy,
    issuer: TokenIssuer,
    nonces: NonceStore,
    audit: AuditLog,
    clock: Clock,
    nonce_ttl: u64,
    token_ttl: u64,
}

impl std::fmt::Debug for AttestationService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttestationService")
            .field("policy", &self.policy)
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl AttestationService {
    /// A service with nonces valid 60 s and tokens valid 5 min, on the system clock.
    pub fn new(verifiers: Verifiers, policy: Policy, issuer: TokenIssuer, audit: AuditLog) -> Self {
        Self {
            verifiers,
            policy,
            issuer,
            nonces: NonceStore::default(),
            audit,
            clock: system_clock(),
            nonce_ttl: 60,
            token_ttl: 300,
        }
    }

    /// Sets how long nonces and tokens stay valid (seconds, at least 1).
    pub fn with_lifetimes(mut self, nonce_ttl: u64, token_ttl: u64) -> Self {
        self.nonce_ttl = nonce_ttl.max(1);
        self.token_ttl = token_ttl.max(1);
        self
    }

    /// Replaces the clock (tests).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The public keys tokens are signed with.
    pub fn jwks(&self) -> Jwks {
        self.issuer.jwks()
    }

    /// The audit log.
    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    /// Issues a nonce.
    pub fn nonce(&self) -> Result<NonceResponse> {
        let now = (self.clock)();
        let nonce = self.nonces.issue(now, self.nonce_ttl)?;
        Ok(NonceResponse {
            nonce: encode_b64(&nonce),
            expires_at: now + self.nonce_ttl,
        })
    }

    /// Verifies, binds and evaluates; returns a token or the reason for refusing. The
    /// decision is in the audit log before this returns.
    pub fn attest(&self, req: &AttestRequest) -> Result<AttestResponse> {
        let now = (self.clock)();
        let outcome = self.decide(req, now);
        let record = match &outcome {
            Ok(r) => (
                "token_issued",
                json!({
                    "jti": r.claims.jti,
                    "tee": r.claims.evidence.tee,
                    "measurements": r.claims.evidence.measurements,
                    "tcb_status": r.claims.evidence.tcb_status,
                    "policy": r.claims.policy,
                    "expires": r.claims.exp,
                }),
            ),
            Err(e) => (
                "attestation_refused",
                json!({ "reason": e.to_string(), "policy": self.policy.reference() }),
            ),
        };
        self.audit.append(now, record.0, record.1)?;
        outcome
    }

    fn decide(&self, req: &AttestRequest, now: u64) -> Result<AttestResponse> {
        if req.evidence.len() > MAX_EVIDENCE_LEN * 4 / 3 + 4 {
            return Err(TeeError::BadRequest(format!(
                "evidence larger than {MAX_EVIDENCE_LEN} bytes"
            )));
        }
        let evidence = decode_b64("evidence", &req.evidence)?;
        let nonce = decode_b64("nonce", &req.nonce)?;
        let public_key = decode_b64("runtime_public_key", &req.runtime_public_key)?;
        let runtime_data = decode_b64("runtime_data", &req.runtime_data)?;
        if public_key.is_empty() || public_key.len() > 1024 {
            return Err(TeeError::BadRequest(
                "runtime_public_key must be 1 to 1024 bytes".into(),
            ));
        }
        if runtime_data.len() > MAX_RUNTIME_DATA_LEN {
            return Err(TeeError::BadRequest(format!(
                "runtime_data larger than {MAX_RUNTIME_DATA_LEN} bytes"
            )));
        }
        // The nonce is spent first: a refused attempt cannot be retried with it.
        self.nonces.consume(&nonce, now)?;
        let claims = self.verifiers.verify(&evidence, now)?;
        check_binding(&claims, &nonce, &public_key, &runtime_data)?;
        let input =
            serde_json::to_value(&claims).map_err(|_| TeeError::Internal("claims are not JSON"))?;
        self.policy.evaluate(&input)?;
        let mut jti = [0u8; 16];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut jti)
            .map_err(|_| TeeError::Crypto("no system randomness"))?;
        let claims = AttestationClaims {
            iss: ISSUER.into(),
            iat: now,
            nbf: now,
            exp: now + self.token_ttl,
            jti: hex::encode(jti),
            evidence: claims,
            runtime_public_key: encode_b64(&public_key),
            runtime_data: encode_b64(&runtime_data),
            policy: self.policy.reference().clone(),
        };
        let token = self.issuer.sign(&claims)?;
        Ok(AttestResponse { token, claims })
    }
}

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
        _ => "internal",
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let body = json!({ "error": self.0.to_string(), "kind": kind_of(&self.0) });
        (status_of(&self.0), Json(body)).into_response()
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

/// The service's HTTP routes.
pub fn router(service: Arc<AttestationService>) -> Router {
    Router::new()
        .route("/nonce", get(nonce_route))
        .route("/attest", post(attest_route))
        .route("/.well-known/jwks.json", get(jwks_route))
        .route("/health", get(|| async { "ok" }))
        .with_state(service)
}

async fn nonce_route(
    State(s): State<Arc<AttestationService>>,
) -> std::result::Result<Json<NonceResponse>, HttpError> {
    Ok(Json(s.nonce()?))
}

async fn jwks_route(State(s): State<Arc<AttestationService>>) -> Json<Jwks> {
    Json(s.jwks())
}

async fn attest_route(
    State(s): State<Arc<AttestationService>>,
    body: axum::body::Bytes,
) -> std::result::Result<Json<AttestResponse>, HttpError> {
    let req: AttestRequest = serde_json::from_slice(&body)
        .map_err(|e| TeeError::BadRequest(format!("attest request: {e}")))?;
    // Verification is CPU work: keep it off the async workers.
    let out = tokio::task::spawn_blocking(move || s.attest(&req))
        .await
        .map_err(|_| TeeError::Internal("attestation task failed"))??;
    Ok(Json(out))
}

/// Serves `router` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| TeeError::Network(format!("server: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_are_single_use_and_expire() {
        let store = NonceStore::default();
        let n = store.issue(100, 10).unwrap();
        store.consume(&n, 105).unwrap();
        let err = store.consume(&n, 106).unwrap_err().to_string();
        assert!(err.contains("replay"), "{err}");
        let m = store.issue(100, 10).unwrap();
        let err = store.consume(&m, 110).unwrap_err().to_string();
        assert!(err.contains("expired"), "{err}");
        let err = store.consume(&[0u8; 32], 100).unwrap_err().to_string();
        assert!(err.contains("unknown"), "{err}");
        assert!(store.consume(&[0u8; 5], 100).is_err());
    }
}
