//! The operator's web console (`veil serve`, section `[console]`).
//!
//! | route | what |
//! |---|---|
//! | `GET /console/` | the page (HTML, one script, one style sheet; no third-party code) |
//! | `GET /console/api/overview` | datasets with their totals, what is left and the charges per analyst; models; rooms and their state; the audit logs |
//! | `GET /console/api/audit/{source}` | one audit log's text and a head signed now, which the page verifies itself |
//!
//! The API routes need an **operator** token (`[[console.operators]]`, [`crate::auth`]); the
//! page holds it in memory only (no cookie, no storage), so no other site can make a browser
//! spend it (no CSRF). The page's DP query box uses an **analyst** token against
//! `/dp/query`: the console never spends budget on its own authority.
//!
//! What the page renders comes from callers the operator does not control (secret names in
//! the key broker's log, SQL in the charges, room names): it is only ever inserted as text,
//! and the page is served with a Content-Security-Policy that forbids inline script, so
//! markup in the data stays inert.
//!
//! The page verifies each audit log in the browser (WebCrypto): the hash chain, every entry's
//! Ed25519 signature and the signed head (entry count and last hash). That proves the log the
//! page received is the one its writer signed; which key the writer holds is shown for the
//! operator to compare with a key obtained out of band.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use veil_attest::audit::{AuditLog, SignedHead};
use veil_attest::service::AttestationService;
use veil_kbs::KeyBroker;
use veil_room::{RoomServer, RoomStatus};

use crate::auth::Principals;
use crate::dp::DpService;
use crate::error::HttpError;
use crate::inference::{InferenceService, ModelInfo};

const PAGE: &str = include_str!("../console/index.html");
const SCRIPT: &str = include_str!("../console/console.js");
const STYLE: &str = include_str!("../console/console.css");

/// The page's Content-Security-Policy: its own script, style and API only.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

/// A log the console shows.
#[derive(Clone)]
pub enum AuditSource {
    /// The attestation service's log.
    Attest(Arc<AttestationService>),
    /// The key broker's log.
    Kbs(Arc<KeyBroker>),
    /// A data room's log.
    Room(Arc<RoomServer>),
}

impl AuditSource {
    fn log(&self) -> &AuditLog {
        match self {
            Self::Attest(s) => s.audit(),
            Self::Kbs(b) => b.audit(),
            Self::Room(r) => r.audit_log(),
        }
    }
}

/// What the console reads: the mounted services.
#[derive(Default)]
pub struct Console {
    operators: Principals,
    dp: Option<Arc<DpService>>,
    inference: Option<Arc<InferenceService>>,
    rooms: Vec<(String, Arc<RoomServer>)>,
    audit: BTreeMap<String, AuditSource>,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console")
            .field("operators", &self.operators)
            .field("audit", &self.audit.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Console {
    /// A console for `operators`, showing nothing yet.
    pub fn new(operators: Principals) -> Self {
        Self {
            operators,
            ..Self::default()
        }
    }

    /// Shows the DP service's datasets and charges.
    pub fn with_dp(&mut self, dp: Arc<DpService>) {
        self.dp = Some(dp);
    }

    /// Shows the inference service's models.
    pub fn with_inference(&mut self, inference: Arc<InferenceService>) {
        self.inference = Some(inference);
    }

    /// Shows a room (its state and its audit log, as `rooms/{name}`).
    pub fn with_room(&mut self, name: &str, room: Arc<RoomServer>) {
        self.audit
            .insert(format!("rooms/{name}"), AuditSource::Room(room.clone()));
        self.rooms.push((name.to_string(), room));
    }

    /// Shows an audit log under `name` (`attest`, `kbs`).
    pub fn with_audit(&mut self, name: &str, source: AuditSource) {
        self.audit.insert(name.to_string(), source);
    }

    fn overview(&self) -> Result<Overview, HttpError> {
        let mut datasets = Vec::new();
        if let Some(dp) = &self.dp {
            let ledger = dp.ledger();
            for name in dp.dataset_names() {
                let reg = ledger.registration(&name).map_err(ledger_error)?;
                let left = ledger.remaining(&name, None).map_err(ledger_error)?;
                let mut charges: BTreeMap<String, AnalystCharges> = BTreeMap::new();
                for c in ledger.history(&name).map_err(ledger_error)? {
                    let a = charges
                        .entry(c.analyst.clone())
                        .or_insert_with(|| AnalystCharges {
                            analyst: c.analyst.clone(),
                            queries: 0,
                            epsilon: 0.0,
                            delta: 0.0,
                            rho: 0.0,
                            last_query: String::new(),
                            last_at: 0,
                        });
                    a.queries += 1;
                    a.epsilon += c.epsilon;
                    a.delta += c.delta;
                    a.rho += c.rho;
                    if c.at >= a.last_at {
                        a.last_at = c.at;
                        a.last_query = c.note;
                    }
                }
                datasets.push(DatasetOverview {
                    name,
                    total_epsilon: reg.as_ref().map_or(0.0, |r| r.epsilon),
                    total_delta: reg.as_ref().map_or(0.0, |r| r.delta),
                    remaining_epsilon: left.epsilon,
                    remaining_delta: left.delta,
                    remaining_rho: left.rho,
                    accounting: left.accounting.name().to_string(),
                    charges: charges.into_values().collect(),
                });
            }
        }
        let mut rooms = Vec::new();
        for (name, room) in &self.rooms {
            rooms.push(RoomOverview {
                name: name.clone(),
                status: room.status().map_err(HttpError::from)?,
            });
        }
        Ok(Overview {
            datasets,
            models: self
                .inference
                .as_ref()
                .map(|i| i.models())
                .unwrap_or_default(),
            inference_contexts: self.inference.as_ref().map(|i| i.contexts_held()),
            rooms,
            audit_logs: self.audit.keys().cloned().collect(),
        })
    }

    fn audit(&self, source: &str) -> Result<AuditView, HttpError> {
        let log = self
            .audit
            .get(source)
            .ok_or_else(|| {
                HttpError::new(
                    StatusCode::NOT_FOUND,
                    "unknown_log",
                    format!("no audit log {source:?} (the overview lists them)"),
                )
            })?
            .log();
        // The head first: the text read after it holds at least its entries, and the page
        // checks the first `head.entries` lines against it.
        let head = log.signed_head(now())?;
        let text = log.text()?;
        Ok(AuditView {
            source: source.to_string(),
            head,
            text,
        })
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn ledger_error(e: veil_dp::DpError) -> HttpError {
    tracing::error!(error = %e, "console: ledger error");
    HttpError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "ledger_unavailable",
        "the budget ledger is unavailable; retry later",
    )
}

/// `GET /console/api/overview`.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Overview {
    /// The DP datasets.
    pub datasets: Vec<DatasetOverview>,
    /// The inference models.
    #[schema(value_type = Vec<Object>)]
    pub models: Vec<ModelInfo>,
    /// Public contexts held by the inference service (`null`: not mounted).
    pub inference_contexts: Option<usize>,
    /// The data rooms.
    pub rooms: Vec<RoomOverview>,
    /// The audit logs `GET /console/api/audit/{source}` serves.
    pub audit_logs: Vec<String>,
}

/// One dataset in the [`Overview`].
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct DatasetOverview {
    /// The dataset's name.
    pub name: String,
    /// Its registered total ε.
    pub total_epsilon: f64,
    /// Its registered total δ.
    pub total_delta: f64,
    /// ε left (all analysts together).
    pub remaining_epsilon: f64,
    /// δ left.
    pub remaining_delta: f64,
    /// ρ left (zCDP accounting; 0 otherwise).
    pub remaining_rho: f64,
    /// How its budget composes: `approx` or `zcdp`.
    pub accounting: String,
    /// What each analyst spent.
    pub charges: Vec<AnalystCharges>,
}

/// One analyst's charges on a dataset.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct AnalystCharges {
    /// The analyst.
    pub analyst: String,
    /// Answers released.
    pub queries: u64,
    /// ε spent.
    pub epsilon: f64,
    /// δ spent.
    pub delta: f64,
    /// ρ spent (zCDP accounting).
    pub rho: f64,
    /// The latest query's text.
    pub last_query: String,
    /// When it was charged (Unix seconds).
    pub last_at: u64,
}

/// One room in the [`Overview`].
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct RoomOverview {
    /// Its name under `/rooms/`.
    pub name: String,
    /// Its state.
    #[schema(value_type = Object)]
    pub status: RoomStatus,
}

/// `GET /console/api/audit/{source}`.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct AuditView {
    /// The log's name.
    pub source: String,
    /// A head signed when the request was served.
    #[schema(value_type = Object)]
    pub head: SignedHead,
    /// The log (JSON lines).
    pub text: String,
}

/// The console's routes.
pub fn router(console: Arc<Console>) -> Router {
    Router::new()
        .route("/console", get(|| async { redirect() }))
        .route(
            "/console/",
            get(|| async { asset(PAGE, "text/html; charset=utf-8") }),
        )
        .route(
            "/console/console.js",
            get(|| async { asset(SCRIPT, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/console/console.css",
            get(|| async { asset(STYLE, "text/css; charset=utf-8") }),
        )
        .route("/console/api/overview", get(overview_route))
        .route("/console/api/audit/{*source}", get(audit_route))
        .with_state(console)
}

fn redirect() -> Response {
    (
        StatusCode::PERMANENT_REDIRECT,
        [(header::LOCATION, "/console/")],
    )
        .into_response()
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    secure_headers(h);
    r
}

/// The headers every console response carries.
fn secure_headers(h: &mut HeaderMap) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

async fn blocking<T: Send + 'static>(
    console: Arc<Console>,
    f: impl FnOnce(&Console) -> Result<T, HttpError> + Send + 'static,
) -> Result<T, HttpError> {
    tokio::task::spawn_blocking(move || f(&console))
        .await
        .map_err(|_| HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "task"))?
}

fn with_headers(value: impl Serialize) -> Response {
    let mut r = Json(value).into_response();
    secure_headers(r.headers_mut());
    r
}

/// The datasets with their totals, what is left and the charges per analyst; the models;
/// the rooms and their state; the audit logs.
#[utoipa::path(get, path = "/console/api/overview", tag = "console", security(("bearer" = [])),
    responses((status = 200, body = Overview),
        (status = 401, description = "no valid operator token", body = crate::ErrorBody)))]
async fn overview_route(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    let operator = c.operators.owner(&headers)?.to_string();
    tracing::debug!(operator = %operator, "console overview");
    Ok(with_headers(blocking(c, Console::overview).await?))
}

/// One audit log and a head signed now.
#[utoipa::path(get, path = "/console/api/audit/{source}", tag = "console",
    security(("bearer" = [])),
    params(("source" = String, Path, description = "`attest`, `kbs` or `rooms/{name}`")),
    responses((status = 200, body = AuditView),
        (status = 401, description = "no valid operator token", body = crate::ErrorBody),
        (status = 404, body = crate::ErrorBody)))]
async fn audit_route(
    State(c): State<Arc<Console>>,
    Path(source): Path<String>,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    c.operators.owner(&headers)?;
    Ok(with_headers(blocking(c, move |c| c.audit(&source)).await?))
}
