//! A data room's HTTP routes (`veil room serve`) and a party's HTTP client ([`RoomClient`]).

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use zeroize::Zeroizing;

use veil_attest::audit::AuditEntry;
use veil_attest::util::{system_clock, Clock};
use veil_attest::{Result, TeeError};
use veil_room::*;

use crate::error::HttpError;

/// The room's HTTP routes.
pub fn router(room: Arc<RoomServer>) -> Router {
    Router::new()
        .route("/room", get(info_route))
        .route("/attest", post(attest_route))
        .route(
            "/upload",
            post(upload_route).layer(DefaultBodyLimit::max(MAX_UPLOAD + MAX_HEADER + 64)),
        )
        .route("/run", post(run_route))
        .route("/output", post(output_route))
        .route("/audit", post(audit_route))
        .route("/health", get(|| async { "ok" }))
        .with_state(room)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> std::result::Result<Json<T>, HttpError> {
    let out = tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| TeeError::Internal("room task failed"))??;
    Ok(Json(out))
}

fn json_body<T: serde::de::DeserializeOwned>(what: &str, body: &[u8]) -> Result<T> {
    serde_json::from_slice(body).map_err(|e| TeeError::BadRequest(format!("{what}: {e}")))
}

/// The room id and the manifest it was launched with.
#[utoipa::path(get, path = "/rooms/{name}/room", tag = "rooms",
    params(("name" = String, Path, description = "the room's name in `[[rooms]]`")),
    responses((status = 200, description = "`{room_id, manifest}`", body = Object)))]
async fn info_route(State(r): State<Arc<RoomServer>>) -> Json<RoomInfo> {
    Json(r.info())
}

/// Evidence for a verifier's nonce, binding the room id and its keys.
#[utoipa::path(post, path = "/rooms/{name}/attest", tag = "rooms",
    params(("name" = String, Path, description = "the room's name in `[[rooms]]`")),
    request_body(content = Object, description = "`{nonce}` (16 to 64 random bytes, base64url)"),
    responses((status = 200, description = "evidence, workload key, audit key", body = Object),
        (status = 400, body = crate::ErrorBody)))]
async fn attest_route(
    State(r): State<Arc<RoomServer>>,
    body: axum::body::Bytes,
) -> std::result::Result<Json<RoomEvidence>, HttpError> {
    let req: NonceRequest = json_body("attest request", &body)?;
    blocking(move || r.attest(&req)).await
}

/// A party's sealed, signed upload; answered with a receipt signed by the audit key.
#[utoipa::path(post, path = "/rooms/{name}/upload", tag = "rooms",
    params(("name" = String, Path, description = "the room's name in `[[rooms]]`")),
    request_body(content = String, content_type = "application/octet-stream",
        description = "the upload (`veil room upload` prepares it)"),
    responses((status = 200, description = "the receipt", body = Object),
        (status = 400, body = crate::ErrorBody), (status = 403, body = crate::ErrorBody),
        (status = 409, description = "this party already uploaded", body = crate::ErrorBody)))]
async fn upload_route(
    State(r): State<Arc<RoomServer>>,
    body: axum::body::Bytes,
) -> std::result::Result<Json<Receipt>, HttpError> {
    blocking(move || r.upload(&body)).await
}

/// Runs the workload once every party has uploaded (a party's signed request).
#[utoipa::path(post, path = "/rooms/{name}/run", tag = "rooms",
    params(("name" = String, Path, description = "the room's name in `[[rooms]]`")),
    request_body(content = Object, description = "a signed request"),
    responses((status = 200, description = "the run's summary", body = Object),
        (status = 403, body = crate::ErrorBody), (status = 409, body = crate::ErrorBody)))]
async fn run_route(
    State(r): State<Arc<RoomServer>>,
    body: axum::body::Bytes,
) -> std::result::Result<Json<RunSummary>, HttpError> {
    let req: SignedRequest = json_body("run request", &body)?;
    blocking(move || r.run(&req)).await
}

/// A recipient's output, sealed to its key (a signed request).
#[utoipa::path(post, path = "/rooms/{name}/output", tag = "rooms",
    params(("name" = String, Path, description = "the room's name in `[[rooms]]`")),
    request_body(content = Object, description = "a signed request"),
    responses((status = 200, description = "the sealed output", body = Object),
        (status = 403, body = crate::ErrorBody), (status = 409, body = crate::ErrorBody)))]
async fn output_route(
    State(r): State<Arc<RoomServer>>,
    body: axum::body::Bytes,
) -> std::result::Result<Json<OutputResponse>, HttpError> {
    let req: SignedRequest = json_body("output request", &body)?;
    blocking(move || r.output(&req)).await
}

/// The audit log with a head signed by the attested audit key for the verifier's nonce.
#[utoipa::path(post, path = "/rooms/{name}/audit", tag = "rooms",
    params(("name" = String, Path, description = "the room's name in `[[rooms]]`")),
    request_body(content = Object, description = "`{nonce}`"),
    responses((status = 200, description = "the log and its signed head", body = Object),
        (status = 400, body = crate::ErrorBody)))]
async fn audit_route(
    State(r): State<Arc<RoomServer>>,
    body: axum::body::Bytes,
) -> std::result::Result<Json<AuditReport>, HttpError> {
    let req: NonceRequest = json_body("audit request", &body)?;
    blocking(move || r.audit_report(&req)).await
}

/// A party's client for a room served over HTTP.
#[derive(Clone)]
pub struct RoomClient {
    url: String,
    http: reqwest::Client,
    manifest: Manifest,
    room_id: [u8; 32],
    clock: Clock,
}

impl std::fmt::Debug for RoomClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoomClient")
            .field("url", &self.url)
            .field("room_id", &hex::encode(self.room_id))
            .finish_non_exhaustive()
    }
}

impl RoomClient {
    /// A client for the room at `url` described by `manifest_text` (the party's own copy).
    pub fn new(url: &str, manifest_text: &str) -> Result<Self> {
        Ok(Self {
            url: url.trim_end_matches('/').to_string(),
            http: crate::client::http_client()?,
            manifest: Manifest::parse(manifest_text)?,
            room_id: room_id(manifest_text),
            clock: system_clock(),
        })
    }

    /// Uses `client` for HTTP (e.g. with a longer timeout for large uploads).
    #[must_use]
    pub fn with_http_client(mut self, client: reqwest::Client) -> Self {
        self.http = client;
        self
    }

    /// The room id of the party's manifest.
    pub fn room_id(&self) -> [u8; 32] {
        self.room_id
    }

    /// The party's manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    async fn post<B: Serialize, T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T> {
        let url = format!("{}{path}", self.url);
        let resp = self
            .http
            .post(&url)
            .json(body)
            .send()
            .await
            .map_err(|e| crate::client::net(&url, e))?;
        crate::client::read(&url, resp).await
    }

    /// Checks that the room serves this manifest and that its fresh evidence satisfies it.
    pub async fn verify(&self) -> Result<VerifiedRoom> {
        let url = format!("{}/room", self.url);
        let resp = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| crate::client::net(&url, e))?;
        let info: RoomInfo = crate::client::read(&url, resp).await?;
        check_room_info(&self.url, &self.room_id, &info)?;
        let (nonce, req) = nonce_request()?;
        let evidence: RoomEvidence = self.post("/attest", &req).await?;
        verify_room_evidence(
            &self.manifest,
            &self.room_id,
            &nonce,
            &evidence,
            (self.clock)(),
        )
    }

    /// Verifies the room, then uploads `data` sealed to its attested key and signed by `party`.
    /// Returns the room's signed receipt (checked).
    pub async fn upload(&self, party: &PartyKey, label: &str, data: &[u8]) -> Result<Receipt> {
        check_upload(&self.manifest, party, data)?;
        let room = self.verify().await?;
        let (header, body) = self.prepare_upload(&room, party, label, data)?;
        let url = format!("{}/upload", self.url);
        let resp = self
            .http
            .post(&url)
            .body(body)
            .send()
            .await
            .map_err(|e| crate::client::net(&url, e))?;
        let receipt: Receipt = crate::client::read(&url, resp).await?;
        check_receipt(&room, &header, &receipt)?;
        Ok(receipt)
    }

    /// The body of an upload of `data` by `party` to a verified room (see
    /// [`veil_room::prepare_upload`]).
    pub fn prepare_upload(
        &self,
        room: &VerifiedRoom,
        party: &PartyKey,
        label: &str,
        data: &[u8],
    ) -> Result<(UploadHeader, Vec<u8>)> {
        veil_room::prepare_upload(room, party, label, data)
    }

    /// Asks the room to run (after every party uploaded).
    pub async fn run(&self, party: &PartyKey) -> Result<RunSummary> {
        let req = SignedRequest::new(&self.room_id, party, "run", (self.clock)());
        self.post("/run", &req).await
    }

    /// Verifies the room, fetches the output sealed to `party` and opens it.
    pub async fn fetch_output(&self, party: &PartyKey) -> Result<Zeroizing<Vec<u8>>> {
        let room = self.verify().await?;
        let req = SignedRequest::new(&self.room_id, party, "fetch-output", (self.clock)());
        let resp: OutputResponse = self.post("/output", &req).await?;
        open_output(&room, party, &req, &resp)
    }

    /// Verifies the room, fetches its audit log with a fresh nonce and checks the chain, every
    /// entry's signature by the attested audit key, and the signed head (no truncation).
    pub async fn audit(&self) -> Result<Vec<AuditEntry>> {
        let room = self.verify().await?;
        let (nonce, req) = nonce_request()?;
        let report: AuditReport = self.post("/audit", &req).await?;
        check_audit_report(&room, &nonce, &report)
    }
}

/// Serves a room on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    room: Arc<RoomServer>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    crate::serve(listener, router(room), shutdown).await
}
