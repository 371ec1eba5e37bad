//! MPC coordination (`veil serve`, section `[mpc]`): an organiser creates a session, each
//! participant enrolls its own key through a certificate request, and everyone downloads the
//! session (`ca.pem`, `parties.toml`, the certificates) to run `veil mpc party|dealer`.
//!
//! | route | who | what |
//! |---|---|---|
//! | `POST /mpc/sessions` | organiser token | `{"parties": [names], "base_port"?}` → 201 `{"session", "seats": {seat: enrollment token}}` |
//! | `PUT /mpc/sessions/{id}/requests/{seat}` | that seat's token | the seat's certificate request (`veil mpc keygen`, PEM) → 204 |
//! | `GET /mpc/sessions/{id}` | a seat's token | who is still to enroll; `ready` once all have |
//! | `GET /mpc/sessions/{id}/files/{file}` | a seat's token | `ca.pem`, `parties.toml`, `dealer.pem`, `party-{i}.pem` once ready |
//!
//! Seats are `dealer` and `party-0…`. The organiser receives one enrollment token per seat,
//! once, and hands each to its participant out of band; the service keeps only their SHA-256.
//! A seat takes **one** request: a token that leaks after enrollment cannot swap the seat's
//! key. Private keys never reach the service (participants make them with `veil mpc keygen`);
//! when the last seat has enrolled, the service certifies every request for its seat's role
//! ([`veil_mpc::config::certify`]: the names a request asks for are ignored) and discards the
//! session CA's key, so nobody — the service included — can add or replace a participant
//! later. A session id with a token that is not one of its seats is answered as an unknown
//! session. Sessions live on disk (written atomically): a restart or `kill -9` loses none.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::auth::{token_sha256, Principals};
use crate::error::{ErrorBody, HttpError};

/// Most parties in one session.
pub const MAX_PARTIES: usize = 64;
/// Largest certificate request accepted (bytes).
const MAX_REQUEST: usize = 16 * 1024;

/// `POST /mpc/sessions` body.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSession {
    /// The parties' names, in order (party `i` is seat `party-{i}`).
    pub parties: Vec<String>,
    /// The dealer's port; parties use the next ones (default 7100).
    #[serde(default = "default_base_port")]
    pub base_port: u16,
}

fn default_base_port() -> u16 {
    7100
}

/// `POST /mpc/sessions` answer: the seats' enrollment tokens, shown once.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SessionCreated {
    /// The session's id.
    pub session: String,
    /// Seat (`dealer`, `party-0`, …) → its enrollment token.
    pub seats: BTreeMap<String, String>,
}

/// `GET /mpc/sessions/{id}` answer.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SessionStatus {
    /// The parties' names.
    pub parties: Vec<String>,
    /// Seats that have not sent their request yet.
    pub waiting_for: Vec<String>,
    /// Whether the session's files can be downloaded.
    pub ready: bool,
}

/// What is kept of a session (`session.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Stored {
    organiser: String,
    parties: Vec<String>,
    base_port: u16,
    /// Seat → SHA-256 (hex) of its enrollment token.
    seats: BTreeMap<String, String>,
    enrolled: Vec<String>,
    ready: bool,
}

/// The coordination service: sessions in a directory.
#[derive(Debug)]
pub struct MpcService {
    dir: PathBuf,
    organisers: Principals,
    max_sessions: usize,
    lock: Mutex<()>,
}

fn seats(parties: usize) -> Vec<String> {
    std::iter::once("dealer".to_string())
        .chain((0..parties).map(|i| format!("party-{i}")))
        .collect()
}

fn unknown() -> HttpError {
    HttpError::new(
        StatusCode::NOT_FOUND,
        "unknown_session",
        "no such session for this token",
    )
}

fn storage(e: impl std::fmt::Display) -> HttpError {
    tracing::error!(error = %e, "mpc session storage");
    HttpError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "storage",
        "the session could not be stored",
    )
}

fn bad(why: impl Into<String>) -> HttpError {
    HttpError::new(StatusCode::BAD_REQUEST, "bad_request", why)
}

fn valid_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

fn random_hex() -> Result<String, HttpError> {
    let mut raw = [0u8; 32];
    rand_core::TryRngCore::try_fill_bytes(&mut rand_core::OsRng, &mut raw)
        .map_err(|_| storage("no system randomness"))?;
    Ok(hex::encode(raw))
}

impl MpcService {
    /// A service keeping sessions under `dir`, admitting `organisers`.
    pub fn new(dir: PathBuf, organisers: Principals, max_sessions: usize) -> Result<Self, String> {
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(Self {
            dir,
            organisers,
            max_sessions,
            lock: Mutex::new(()),
        })
    }

    fn guard(&self) -> std::sync::MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn session_dir(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    fn load(&self, id: &str) -> Option<Stored> {
        if !valid_id(id) {
            return None;
        }
        let text = std::fs::read(self.session_dir(id).join("session.json")).ok()?;
        serde_json::from_slice(&text).ok()
    }

    fn save(&self, id: &str, s: &Stored) -> Result<(), HttpError> {
        let bytes = serde_json::to_vec_pretty(s).map_err(storage)?;
        veil_attest::util::write_atomic(&self.session_dir(id), "session.json", &bytes)
            .map_err(storage)
    }

    /// The session `id` and the seat whose token `headers` carry (every seat's hash is
    /// compared, in constant time); an unknown session and a foreign token look the same.
    fn seat(&self, id: &str, headers: &HeaderMap) -> Result<(Stored, String), HttpError> {
        let presented = crate::auth::bearer_sha256(headers).ok_or_else(|| {
            HttpError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a seat's enrollment token is required (Authorization: Bearer <token>)",
            )
        })?;
        let stored = self.load(id).ok_or_else(unknown)?;
        let mut found = None;
        for (seat, hash) in &stored.seats {
            let hash: [u8; 32] = crate::auth::parse_token_hash(hash).unwrap_or([0; 32]);
            if bool::from(hash.ct_eq(&presented)) {
                found = Some(seat.clone());
            }
        }
        let seat = found.ok_or_else(unknown)?;
        Ok((stored, seat))
    }

    fn create(&self, organiser: &str, req: &CreateSession) -> Result<SessionCreated, HttpError> {
        if req.parties.len() < 2 || req.parties.len() > MAX_PARTIES {
            return Err(bad(format!("a session has 2 to {MAX_PARTIES} parties")));
        }
        let mut names = std::collections::BTreeSet::new();
        for n in &req.parties {
            let ok = !n.is_empty()
                && n.len() <= 64
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
            if !ok || !names.insert(n) {
                return Err(bad(format!(
                    "party names are distinct, 1 to 64 of [A-Za-z0-9-_.] ({n:?})"
                )));
            }
        }
        if usize::from(req.base_port) + req.parties.len() > usize::from(u16::MAX) {
            return Err(bad("the ports run out above base_port"));
        }
        let _g = self.guard();
        let count = std::fs::read_dir(&self.dir).map_err(storage)?.count();
        if count >= self.max_sessions {
            let mut e = HttpError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too_many_sessions",
                "the service holds as many sessions as it may",
            );
            e.retry_after = Some(60);
            return Err(e);
        }
        let id = random_hex()?[..32].to_string();
        let dir = self.session_dir(&id);
        std::fs::create_dir_all(dir.join("requests")).map_err(storage)?;
        let mut tokens = BTreeMap::new();
        let mut hashes = BTreeMap::new();
        for seat in seats(req.parties.len()) {
            let token = format!("veil_seat_{}", random_hex()?);
            hashes.insert(seat.clone(), hex::encode(token_sha256(&token)));
            tokens.insert(seat, token);
        }
        self.save(
            &id,
            &Stored {
                organiser: organiser.to_string(),
                parties: req.parties.clone(),
                base_port: req.base_port,
                seats: hashes,
                enrolled: Vec::new(),
                ready: false,
            },
        )?;
        Ok(SessionCreated {
            session: id,
            seats: tokens,
        })
    }

    fn enroll(
        &self,
        id: &str,
        seat: &str,
        headers: &HeaderMap,
        pem: &[u8],
    ) -> Result<(), HttpError> {
        let _g = self.guard();
        let (mut stored, own) = self.seat(id, headers)?;
        if own != seat {
            return Err(HttpError::new(
                StatusCode::FORBIDDEN,
                "wrong_seat",
                "this token enrolls another seat",
            ));
        }
        if stored.enrolled.iter().any(|s| s == seat) {
            return Err(HttpError::new(
                StatusCode::CONFLICT,
                "already_enrolled",
                "this seat has enrolled its key: a seat takes one request",
            ));
        }
        let text = std::str::from_utf8(pem).map_err(|_| bad("the request is not PEM text"))?;
        rcgen::CertificateSigningRequestParams::from_pem(text)
            .map_err(|e| bad(format!("not a valid certificate request: {e}")))?;
        let dir = self.session_dir(id);
        veil_attest::util::write_atomic(&dir.join("requests"), &format!("{seat}.csr"), pem)
            .map_err(storage)?;
        stored.enrolled.push(seat.to_string());
        if stored.enrolled.len() == stored.seats.len() {
            veil_mpc::config::certify(
                &dir.join("out"),
                &stored.parties,
                stored.base_port,
                &dir.join("requests"),
            )
            .map_err(|e| bad(format!("cannot certify the session: {e}")))?;
            stored.ready = true;
        }
        self.save(id, &stored)
    }
}

/// The coordination routes.
pub fn router(service: Arc<MpcService>) -> Router {
    Router::new()
        .route("/mpc/sessions", post(create_route))
        .route("/mpc/sessions/{id}", get(status_route))
        .route("/mpc/sessions/{id}/requests/{seat}", put(enroll_route))
        .route("/mpc/sessions/{id}/files/{file}", get(file_route))
        .with_state(service)
}

/// Creates a session and its seats.
#[utoipa::path(post, path = "/mpc/sessions", tag = "mpc", security(("bearer" = [])),
    request_body = CreateSession,
    responses((status = 201, body = SessionCreated), (status = 400, body = ErrorBody),
        (status = 401, description = "not an organiser", body = ErrorBody),
        (status = 503, description = "too many sessions", body = ErrorBody)))]
async fn create_route(
    State(s): State<Arc<MpcService>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, HttpError> {
    let organiser = s.organisers.owner(&headers)?.to_string();
    let req: CreateSession = crate::dp::json_body(&headers, &body)?;
    let s2 = s.clone();
    let created = tokio::task::spawn_blocking(move || s2.create(&organiser, &req))
        .await
        .map_err(storage)??;
    tracing::info!(session = %created.session, "mpc session created");
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

/// Who is still to enroll.
#[utoipa::path(get, path = "/mpc/sessions/{id}", tag = "mpc", security(("bearer" = [])),
    params(("id" = String, Path, description = "the session")),
    responses((status = 200, body = SessionStatus), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
async fn status_route(
    State(s): State<Arc<MpcService>>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
) -> Result<Json<SessionStatus>, HttpError> {
    let (stored, _) = s.seat(&id, &headers)?;
    let waiting_for = stored
        .seats
        .keys()
        .filter(|seat| !stored.enrolled.contains(seat))
        .cloned()
        .collect();
    Ok(Json(SessionStatus {
        parties: stored.parties,
        waiting_for,
        ready: stored.ready,
    }))
}

/// Enrolls the seat's key: its certificate request (`veil mpc keygen`), once.
#[utoipa::path(put, path = "/mpc/sessions/{id}/requests/{seat}", tag = "mpc",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "the session"),
        ("seat" = String, Path, description = "`dealer` or `party-{i}`")),
    request_body(content = String, description = "the certificate request (PEM)", content_type = "application/x-pem-file"),
    responses((status = 204, description = "enrolled"), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, description = "another seat's token", body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "the seat has enrolled", body = ErrorBody)))]
async fn enroll_route(
    State(s): State<Arc<MpcService>>,
    UrlPath((id, seat)): UrlPath<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<StatusCode, HttpError> {
    if body.len() > MAX_REQUEST {
        return Err(HttpError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            "a certificate request is a few kilobytes",
        ));
    }
    let s2 = s.clone();
    tokio::task::spawn_blocking(move || s2.enroll(&id, &seat, &headers, &body))
        .await
        .map_err(storage)??;
    Ok(StatusCode::NO_CONTENT)
}

/// A file of the certified session: `ca.pem`, `parties.toml`, `dealer.pem`, `party-{i}.pem`.
#[utoipa::path(get, path = "/mpc/sessions/{id}/files/{file}", tag = "mpc",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "the session"), ("file" = String, Path, description = "the file")),
    responses((status = 200, description = "the file", body = String), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "not every seat has enrolled", body = ErrorBody)))]
async fn file_route(
    State(s): State<Arc<MpcService>>,
    UrlPath((id, file)): UrlPath<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    let (stored, _) = s.seat(&id, &headers)?;
    if !stored.ready {
        return Err(HttpError::new(
            StatusCode::CONFLICT,
            "not_ready",
            "not every seat has enrolled yet",
        ));
    }
    let allowed = file == "ca.pem"
        || file == "parties.toml"
        || seats(stored.parties.len())
            .iter()
            .any(|seat| file == format!("{seat}.pem"));
    if !allowed {
        return Err(HttpError::new(
            StatusCode::NOT_FOUND,
            "unknown_file",
            "the files are ca.pem, parties.toml and <seat>.pem",
        ));
    }
    let path: PathBuf = Path::new(&s.session_dir(&id)).join("out").join(&file);
    let bytes = std::fs::read(&path).map_err(storage)?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], bytes).into_response())
}
